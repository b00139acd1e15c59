//! Convergence: after healing and a quiet period, every replica answers the
//! final read of each key with the same value.
//!
//! The harness takes the final reads (`"final": true`) on every node once
//! faults are healed. This checker groups the ok final reads by key (plain
//! reads and the `r` micro-ops of multi-key reads) and compares their values
//! exactly (a list in another order is another value). One anomaly per key
//! names two final reads that differ. A final read that did not complete ok
//! leaves its replica unexamined, so without any anomaly the verdict is then
//! unknown rather than valid. Linear in the number of final reads.
//!
//! Coverage: the final reads, except multi-key ones (a transaction, whose
//! reads are compared key by key, not judged as a whole).

use std::collections::BTreeMap;

use faultline_histories::{History, Key, Op, Outcome, F};
use serde_json::{json, Map, Value};

use super::explain::{self, Found};
use super::{Analysis, Judged};
use crate::verdict::{seconds, Anomaly, OpRef};

/// One final read of one key.
struct FinalRead<'h> {
    op: &'h Op,
    value: &'h Value,
}

pub fn check(a: &Analysis<'_>) -> Judged {
    let h = a.core.history;
    let finals: Vec<&Op> = a.core.final_ops.iter().map(|&i| &h.ops[i as usize]).collect();
    if finals.is_empty() {
        return Judged::NotApplicable("no final reads (\"final\": true) in the history".into());
    }
    let mut by_key: BTreeMap<Key, Vec<FinalRead<'_>>> = BTreeMap::new();
    let mut unanswered = Vec::new();
    for op in &finals {
        if op.outcome != Outcome::Ok {
            unanswered.push(*op);
            continue;
        }
        for (k, value) in final_values(h, op) {
            by_key.entry(k).or_default().push(FinalRead { op, value });
        }
    }
    let mut found = Found::default();
    for (k, reads) in &by_key {
        if let Some(other) = reads.iter().find(|r| r.value != reads[0].value) {
            found.push(|| report(h, k, &reads[0], other));
        }
    }
    let mut details = Map::new();
    details.insert("keys".into(), json!(by_key.len()));
    details.insert("final_reads".into(), json!(finals.len()));
    details.insert("final_reads_unanswered".into(), json!(unanswered.len()));
    let unknown = unanswered.first().map(|op| {
        format!(
            "final read op {} ({}) did not complete ok: that replica's state is unknown",
            op.invoke_index,
            explain::ended(op)
        )
    });
    for &i in &a.core.final_ops {
        found.judged_op(&a.core, i);
    }
    Judged::Looked {
        found,
        unknown,
        details,
    }
}

/// The keys an ok final operation read, with the values it returned.
fn final_values<'h>(h: &'h History, op: &'h Op) -> Vec<(Key, &'h Value)> {
    match (&op.f, op.key) {
        (F::Read, Some(k)) => vec![(h.key(k).clone(), &op.output)],
        (F::Txn, _) => op
            .output
            .as_array()
            .map(|ms| ms.iter().filter_map(read_micro).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// `["r", key, value]` as a key and its value.
fn read_micro(m: &Value) -> Option<(Key, &Value)> {
    let [f, k, v] = m.as_array()?.as_slice() else {
        return None;
    };
    if f.as_str()? != "r" {
        return None;
    }
    let key = match k {
        Value::String(s) => Key::Str(s.clone()),
        Value::Number(n) => Key::Int(n.as_i64()?),
        _ => return None,
    };
    Some((key, v))
}

fn report(h: &History, k: &Key, a: &FinalRead<'_>, b: &FinalRead<'_>) -> Anomaly {
    let sentence = format!(
        "After healing, {} and {}: the replicas did not converge.",
        phrase(h, k, a),
        phrase(h, k, b)
    );
    Anomaly::new(
        "not-converged",
        Some(k),
        vec![OpRef::new(h, a.op), OpRef::new(h, b.op)],
        sentence,
    )
}

/// `process 9 read k on n1 at 30.100 s (op 900) and saw [1,2]`.
fn phrase(h: &History, k: &Key, r: &FinalRead<'_>) -> String {
    let node = r.op.node.map(|n| format!(" on {}", h.node(n))).unwrap_or_default();
    format!(
        "process {} read {k}{node} at {} (op {}) and saw {}",
        r.op.process,
        seconds(r.op.complete_time.unwrap_or(r.op.invoke_time)),
        r.op.invoke_index,
        explain::show(r.value)
    )
}
