//! Each edge of a witness cycle as a sentence a person can check against
//! the history: "T2 read x = [1 2 3] after T1 appended 3, so T2 read T1's
//! write".

use petgraph::graph::EdgeIndex;

use crate::anomaly::Step;
use crate::graph::{kind_name, Dsg, Reason, PROCESS, RW, WR, WW};
use crate::parse::{Mop, TxnId, Txns};

/// The cycle's edges as steps.
pub fn steps(tx: &Txns, dsg: &Dsg, cycle: &[EdgeIndex<u32>]) -> Vec<Step> {
    cycle.iter().map(|&e| step(tx, dsg, e)).collect()
}

fn step(tx: &Txns, dsg: &Dsg, e: EdgeIndex<u32>) -> Step {
    let (from, to) = dsg.graph.edge_endpoints(e).unwrap_or_default();
    let (from, to) = (from.index() as TxnId, to.index() as TxnId);
    let edge = dsg.graph[e];
    let reason = dsg.reasons.get(edge.reason as usize).copied();
    let explanation = match (edge.kind, reason) {
        (WW | WR | RW, Some(r)) => data(tx, edge.kind, from, to, r),
        (PROCESS, _) => format!(
            "{} and {} ran on process {}, {} first, so {} came after {} in its session",
            tx.name(from),
            tx.name(to),
            tx.txns[from as usize].process,
            tx.name(from),
            tx.name(to),
            tx.name(from)
        ),
        _ => realtime(tx, from, to),
    };
    Step {
        from: tx.name(from),
        to: tx.name(to),
        from_op: tx.txns[from as usize].op,
        to_op: tx.txns[to as usize].op,
        edge: kind_name(edge.kind),
        key: reason
            .filter(|_| edge.kind & (WW | WR | RW) != 0)
            .map(|r| tx.key_name(r.key)),
        explanation,
    }
}

fn realtime(tx: &Txns, from: TxnId, to: TxnId) -> String {
    let (f, t) = (&tx.txns[from as usize], &tx.txns[to as usize]);
    let done = f
        .complete_time
        .map_or(String::new(), |c| format!(" at {:.3} s", c as f64 / 1e9));
    format!(
        "{} completed{done} before {} was invoked (at {:.3} s), so {} came after {} in real time",
        tx.name(from),
        tx.name(to),
        t.invoke_time as f64 / 1e9,
        tx.name(to),
        tx.name(from)
    )
}

/// What a read micro-op returned, as Elle prints it.
fn shown_read(tx: &Txns, mop: u32) -> String {
    match tx.mops[mop as usize] {
        Mop::ReadList { start, len, .. } => tx.list_name(tx.list(start, len)),
        Mop::ReadReg { val: Some(v), .. } => tx.val_name(v),
        Mop::ReadReg { val: None, .. } => "null".to_owned(),
        _ => "?".to_owned(),
    }
}

/// True when the key of reason `r` is a list (the write was an append).
fn is_list(tx: &Txns, from: TxnId, to: TxnId, r: Reason) -> bool {
    [from, to]
        .iter()
        .flat_map(|&t| tx.mops_of(t))
        .any(|m| matches!(m, Mop::Append { key, .. } | Mop::ReadList { key, .. } if *key == r.key))
}

fn data(tx: &Txns, kind: u8, from: TxnId, to: TxnId, r: Reason) -> String {
    let (f, t, k) = (tx.name(from), tx.name(to), tx.key_name(r.key));
    let list = is_list(tx, from, to, r);
    let wrote = |v: u32| {
        if list {
            format!("appended {}", tx.val_name(v))
        } else {
            format!("wrote {k} = {}", tx.val_name(v))
        }
    };
    match kind {
        WW if list => format!(
            "{f} appended {} to {k} and {t} appended {} right after it, so {t} overwrote {f}'s write",
            tx.val_name(r.a),
            tx.val_name(r.b)
        ),
        WW => format!(
            "{f} wrote {k} = {}, and {t} read that version before writing {k} = {}, so {t} overwrote {f}'s write",
            tx.val_name(r.a),
            tx.val_name(r.b)
        ),
        WR => format!(
            "{t} read {k} = {} after {f} {}, so {t} read {f}'s write",
            shown_read(tx, r.a),
            wrote(r.b)
        ),
        _ if list => format!(
            "{f} read {k} = {}, which does not yet hold {}, and {t} {}, so {t} overwrote what {f} read",
            shown_read(tx, r.a),
            tx.val_name(r.b),
            wrote(r.b)
        ),
        _ => format!(
            "{f} read {k} = {}, and {t} {}, a later version, so {t} overwrote what {f} read",
            shown_read(tx, r.a),
            wrote(r.b)
        ),
    }
}
