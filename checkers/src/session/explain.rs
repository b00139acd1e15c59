//! Evidence a person can read: phrases that name an operation with its index,
//! key, value and time, and the bounded list of anomalies a checker reports.
//!
//! Every sentence a session checker writes is assembled from these phrases,
//! so they all read the same way: "process 7 wrote 12 to k3 (op 881, ok at
//! 3.200 s), then read k3 at 3.400 s (op 902) and saw 9".
//!
//! [`Found`] also gathers what a checker judged (its coverage).

use faultline_histories::{Op, F};
use serde_json::Value;

use super::core::{Core, State, NONE};
use crate::verdict::{outcome_name, seconds, Anomaly, Coverage, OpRef};

/// At most this many anomalies are kept per checker; the rest are counted.
pub const ANOMALIES_MAX: usize = 100;

/// Longest value text put in a sentence.
const VALUE_CHARS_MAX: usize = 60;

/// Anomalies found so far: the first [`ANOMALIES_MAX`] kept, all counted;
/// and the operations judged.
#[derive(Default)]
pub struct Found {
    pub anomalies: Vec<Anomaly>,
    pub total: usize,
    /// The operations the checker judged. A transaction is never covered
    /// through [`Found::judged_read`] or [`Found::judged_write`]: those
    /// judge one micro-op as if it stood alone, not the transaction (its
    /// atomicity, its isolation), so the transaction as a whole was not
    /// checked.
    pub covered: Coverage,
    /// Reads and writes inside transactions the checker judged: counted,
    /// not covered (see [`Found::covered`]). Lost-writes and convergence
    /// vouch for them (an acknowledged append inside a committed
    /// transaction that no final read holds is a lost write, whatever the
    /// isolation level); the other checkers do not.
    pub micro_ops: usize,
}

impl Found {
    /// Records one anomaly, built only if it will be kept.
    pub fn push(&mut self, make: impl FnOnce() -> Anomaly) {
        self.total += 1;
        if self.anomalies.len() < ANOMALIES_MAX {
            self.anomalies.push(make());
        }
    }

    /// Marks operation `op` (a position in `History::ops`) judged; inside
    /// a transaction, counts a micro-op judged (see [`Found::covered`]).
    pub fn judged_op(&mut self, core: &Core<'_>, op: u32) {
        match core.history.ops[op as usize].f {
            F::Txn => self.micro_ops += 1,
            _ => {
                self.covered.insert(op as usize);
            }
        }
    }

    /// Marks the operation of read record `r` judged.
    pub fn judged_read(&mut self, core: &Core<'_>, r: u32) {
        self.judged_op(core, core.reads[r as usize].op);
    }

    /// Marks the operation of write record `w` judged ([`NONE`], the
    /// initial value, is no operation).
    pub fn judged_write(&mut self, core: &Core<'_>, w: u32) {
        if w != NONE {
            self.judged_op(core, core.writes[w as usize].op);
        }
    }
}

/// How an operation ended, with its time: `ok at 3.200 s`.
pub fn ended(op: &Op) -> String {
    match op.complete_time {
        Some(t) => format!("{} at {}", outcome_name(op.outcome), seconds(t)),
        None => format!("pending since {}", seconds(op.invoke_time)),
    }
}

/// A JSON value, shortened for a sentence.
pub fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() <= VALUE_CHARS_MAX {
        return s;
    }
    let cut: String = s.chars().take(VALUE_CHARS_MAX).collect();
    format!("{cut}...")
}

/// `wrote 12 to k3 (op 881, ok at 3.200 s)`, `appended ...` or `changed k3
/// from 9 to 12 with a cas ...`.
pub fn wrote(core: &Core<'_>, w: u32) -> String {
    let op = core.wop(w);
    if op.f == faultline_histories::F::Cas {
        return format!(
            "changed {} from {} to {} with a cas (op {}, {})",
            core.key(core.writes[w as usize].key),
            show(op.input.get(0).unwrap_or(&Value::Null)),
            show(core.wvalue(w)),
            op.invoke_index,
            ended(op)
        );
    }
    let verb = if core.list_key[core.writes[w as usize].key as usize] {
        "appended"
    } else {
        "wrote"
    };
    format!(
        "{verb} {} to {} (op {}, {})",
        show(core.wvalue(w)),
        core.key(core.writes[w as usize].key),
        op.invoke_index,
        ended(op)
    )
}

/// `process 7 wrote 12 to k3 (op 881, ok at 3.200 s)`.
pub fn p_wrote(core: &Core<'_>, w: u32) -> String {
    format!("process {} {}", core.wproc(w), wrote(core, w))
}

/// `read k3 at 3.400 s (op 902) and saw 9`.
pub fn read(core: &Core<'_>, r: u32) -> String {
    let op = core.rop(r);
    let rec = &core.reads[r as usize];
    let saw = match &core.state(r) {
        State::Reg(NONE) => "nothing (the initial value)".to_owned(),
        State::List(l) if l.len() == 1 => format!("{} (1 element)", show(core.rvalue(r))),
        State::List(l) => format!("{} ({} elements)", show(core.rvalue(r)), l.len()),
        State::Reg(_) => show(core.rvalue(r)),
    };
    let at = op.complete_time.unwrap_or(op.invoke_time);
    format!(
        "read {} at {} (op {}{}) and saw {}",
        core.key(rec.key),
        seconds(at),
        op.invoke_index,
        node(core, op),
        saw
    )
}

/// `process 3 read k3 at ...`.
pub fn p_read(core: &Core<'_>, r: u32) -> String {
    format!("process {} {}", core.rproc(r), read(core, r))
}

/// `, on n2` when the operation names its node.
fn node(core: &Core<'_>, op: &Op) -> String {
    match op.node {
        Some(n) => format!(", on {}", core.history.node(n)),
        None => String::new(),
    }
}

/// Operations as evidence, in the order given, without repeats.
pub fn refs(core: &Core<'_>, ops: &[&Op]) -> Vec<OpRef> {
    let mut out: Vec<OpRef> = Vec::with_capacity(ops.len());
    for op in ops {
        if !out.iter().any(|o| o.index == op.invoke_index) {
            out.push(OpRef::new(core.history, op));
        }
    }
    out
}

/// The operation of a write, or `None` for the initial value.
pub fn wop_opt<'h>(core: &Core<'h>, w: u32) -> Option<&'h Op> {
    (w != NONE).then(|| core.wop(w))
}

/// True when a write is known to have failed (it must never be read).
pub fn failed(core: &Core<'_>, w: u32) -> bool {
    core.any_failed && w != NONE && core.write_failed[w as usize]
}

/// An anomaly about key `k` proven by `ops`.
pub fn anomaly(core: &Core<'_>, kind: &str, k: u32, ops: &[&Op], sentence: String) -> Anomaly {
    Anomaly::new(kind, Some(core.key(k)), refs(core, ops), sentence)
}
