//! Inference for rw-register keys: what reads show on their own, the
//! version order reads and writes imply, and the ww, wr and rw edges.
//!
//! A register read shows one version, so the order of versions is known
//! only in part. Two facts are used, both sound for any database that
//! installs a transaction's writes after the versions it read: the initial
//! state (null) precedes every write, and a transaction that read `a` and
//! then wrote `b` installed `b` after `a` (Elle's writes-follow-reads). An
//! order with a cycle in it is `cyclic-versions`.

use petgraph::algo::kosaraju_scc;
use petgraph::graph::DiGraph;

use crate::anomaly::{Anomaly, Findings};
use crate::gather::{Gathered, ReadAt};
use crate::graph::{Dsg, Reason, RW, WR, WW};
use crate::list::check_value;
use crate::parse::{FastMap, KeyId, Mop, Status, TxnId, Txns, ValId};

/// Infers one register key: anomalies into `found`, edges into `dsg`.
pub fn infer_key(tx: &Txns, g: &Gathered, k: KeyId, writes: &[ValId], dsg: &mut Dsg, found: &mut Findings) {
    let reads = &g.reads[k as usize];
    // Version pairs a < b, from transactions that read a and then wrote b.
    let mut after: FastMap<ValId, Vec<ValId>> = FastMap::default();
    let mut has_pred: FastMap<ValId, ()> = FastMap::default();
    for r in reads.iter().filter(|r| r.external && r.writes_after) {
        if let (Some(a), Some(b)) = (read_value(tx, r), final_write(tx, r.txn, k)) {
            after.entry(a).or_default().push(b);
            has_pred.insert(b, ());
        }
    }
    cyclic_versions(tx, g, k, &after, found);
    for (&a, bs) in &after {
        for &b in bs {
            if let (Some(wa), Some(wb)) = (live_writer(tx, g, k, a), live_writer(tx, g, k, b)) {
                dsg.data(wa, wb, WW, Reason { key: k, a, b });
            }
        }
    }
    // The first versions: the successors of the initial state.
    let first: Vec<ValId> = writes.iter().copied().filter(|v| !has_pred.contains_key(v)).collect();
    for r in reads.iter().filter(|r| r.external) {
        let v = read_value(tx, r);
        if let Some(v) = v {
            observe(tx, g, k, r, v, dsg, found);
        }
        let next = match v {
            Some(v) => after.get(&v).map_or(&[][..], Vec::as_slice),
            None => &first,
        };
        for &b in next {
            if let Some(wb) = live_writer(tx, g, k, b) {
                dsg.data(r.txn, wb, RW, Reason { key: k, a: r.mop, b });
            }
        }
    }
    lost_updates(tx, k, reads, found);
}

fn read_value(tx: &Txns, r: &ReadAt) -> Option<ValId> {
    match tx.mops[r.mop as usize] {
        Mop::ReadReg { val, .. } => val,
        _ => None,
    }
}

/// The last value transaction `t` wrote to `k`.
fn final_write(tx: &Txns, t: TxnId, k: KeyId) -> Option<ValId> {
    tx.mops_of(t).iter().rev().find_map(|m| match *m {
        Mop::Write { key, val } if key == k => Some(val),
        _ => None,
    })
}

fn live_writer(tx: &Txns, g: &Gathered, k: KeyId, v: ValId) -> Option<TxnId> {
    g.writer(k, v)
        .map(|w| w.txn)
        .filter(|&t| tx.txns[t as usize].status != Status::Aborted)
}

/// An external read of `v`: garbage, aborted or intermediate, else a wr edge.
fn observe(tx: &Txns, g: &Gathered, k: KeyId, r: &ReadAt, v: ValId, dsg: &mut Dsg, found: &mut Findings) {
    check_value(tx, g, k, r.txn, v, found);
    let Some(w) = g.writer(k, v) else {
        return;
    };
    if w.txn == r.txn || tx.txns[w.txn as usize].status == Status::Aborted {
        return;
    }
    if !w.last {
        let why = format!(
            "{} read {} = {}, which {} wrote and then overwrote in the same transaction: it read an \
             intermediate state",
            tx.name(r.txn),
            tx.key_name(k),
            tx.val_name(v),
            tx.name(w.txn)
        );
        found.push(Anomaly::about(tx, "G1b", Some(k), &[w.txn, r.txn], why));
    }
    dsg.data(w.txn, r.txn, WR, Reason { key: k, a: r.mop, b: v });
}

/// A cycle in the inferred order of versions of one key.
fn cyclic_versions(tx: &Txns, g: &Gathered, k: KeyId, after: &FastMap<ValId, Vec<ValId>>, found: &mut Findings) {
    if after.is_empty() {
        return;
    }
    let mut index: FastMap<ValId, u32> = FastMap::default();
    let mut vg: DiGraph<ValId, (), u32> = DiGraph::default();
    let mut node =
        |vg: &mut DiGraph<ValId, (), u32>, v: ValId| *index.entry(v).or_insert_with(|| vg.add_node(v).index() as u32);
    for (&a, bs) in after {
        for &b in bs {
            let (na, nb) = (node(&mut vg, a), node(&mut vg, b));
            vg.add_edge(na.into(), nb.into(), ());
        }
    }
    // Kosaraju's keeps its own stack: a key's versions may chain deep.
    for scc in kosaraju_scc(&vg) {
        let self_loop = scc.len() == 1 && vg.contains_edge(scc[0], scc[0]);
        if scc.len() < 2 && !self_loop {
            continue;
        }
        let vals: Vec<ValId> = scc.iter().map(|n| vg[*n]).collect();
        let txns: Vec<TxnId> = vals.iter().filter_map(|&v| g.writer(k, v).map(|w| w.txn)).collect();
        let names: Vec<String> = vals.iter().map(|&v| tx.val_name(v)).collect();
        let why = format!(
            "the versions {} of {} each follow another (a transaction read one and then wrote the next), so no \
             order of versions exists",
            names.join(", "),
            tx.key_name(k)
        );
        found.push(Anomaly::about(tx, "cyclic-versions", Some(k), &txns, why));
    }
}

/// Two committed transactions that read the same version (null included)
/// and both wrote the key.
fn lost_updates(tx: &Txns, k: KeyId, reads: &[ReadAt], found: &mut Findings) {
    let mut by_version: FastMap<Option<ValId>, TxnId> = FastMap::default();
    for r in reads.iter().filter(|r| r.external && r.writes_after) {
        let v = read_value(tx, r);
        match by_version.get(&v) {
            Some(&first) if first != r.txn => {
                let shown = v.map_or("null".to_owned(), |v| tx.val_name(v));
                let why = format!(
                    "{} and {} both read {} = {} and both wrote it: one write lost the other's update",
                    tx.name(first),
                    tx.name(r.txn),
                    tx.key_name(k),
                    shown
                );
                found.push(Anomaly::about(tx, "lost-update", Some(k), &[first, r.txn], why));
            }
            Some(_) => {}
            None => {
                by_version.insert(v, r.txn);
            }
        }
    }
}
