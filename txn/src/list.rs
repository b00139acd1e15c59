//! Inference for list-append keys: the version order from the longest read,
//! the anomalies reads show on their own, and the ww, wr and rw edges.
//!
//! Appends are of unique values and a read returns the whole list, so a
//! read of `[1 2 3]` shows not one version but the order of three. Every
//! read of a key must then be a prefix of the longest one; one that is not
//! (`incompatible-order`) could not have come from the same timeline, and
//! makes no edge, since it proves nothing about an order it contradicts.

use crate::anomaly::{Anomaly, Findings};
use crate::gather::{list_of, Gathered, ReadAt};
use crate::graph::{Dsg, Reason, RW, WR, WW};
use crate::parse::{FastMap, KeyId, Status, TxnId, Txns, ValId};

/// Infers one list key: anomalies into `found`, edges into `dsg`.
pub fn infer_key(tx: &Txns, g: &Gathered, k: KeyId, dsg: &mut Dsg, found: &mut Findings) {
    let reads = &g.reads[k as usize];
    let Some(longest) = reads.iter().max_by_key(|r| read_list(tx, g, k, r).len()) else {
        return;
    };
    let order = version_order(tx, g, k, longest, found);
    let mut prefix: Vec<bool> = Vec::with_capacity(reads.len());
    for r in reads {
        prefix.push(check_read(tx, g, k, r, longest, &order, found));
    }
    check_versions(tx, g, k, longest.txn, &order, found);
    version_edges(tx, g, k, &order, dsg);
    for (r, &ok) in reads.iter().zip(&prefix) {
        // Internal reads too: without the transaction's own appends they
        // show the version it read, as an external read does.
        if ok {
            read_edges(tx, g, k, r, &order, dsg, found);
        }
    }
    lost_updates(tx, g, k, reads, &prefix, found);
}

/// What a read shows of the versions other transactions installed: an
/// internal read (after the transaction's own appends to the key) without
/// those appends, which are not installed yet. Under read committed the
/// rest may be newer than what the transaction read before, so the whole
/// internal read need not be a version at all.
fn read_list<'a>(tx: &'a Txns, g: &Gathered, k: KeyId, r: &ReadAt) -> &'a [ValId] {
    let mut list = list_of(tx, &tx.mops[r.mop as usize]).unwrap_or(&[]);
    if !r.external {
        while let Some((&last, rest)) = list.split_last() {
            if !matches!(g.writer(k, last), Some(w) if w.txn == r.txn) {
                break;
            }
            list = rest;
        }
    }
    list
}

/// The longest read without repeats; a repeat is `duplicate-elements`.
fn version_order(tx: &Txns, g: &Gathered, k: KeyId, longest: &ReadAt, found: &mut Findings) -> Vec<ValId> {
    let list = read_list(tx, g, k, longest);
    let (order, dup) = dedup(list);
    if let Some(v) = dup {
        duplicate(tx, k, longest, list, v, found);
    }
    order
}

/// `list` without repeats (first occurrence kept), and a repeated value.
fn dedup(list: &[ValId]) -> (Vec<ValId>, Option<ValId>) {
    let mut seen: FastMap<ValId, ()> = FastMap::default();
    let mut out = Vec::with_capacity(list.len());
    let mut dup = None;
    for &v in list {
        if seen.insert(v, ()).is_none() {
            out.push(v);
        } else {
            dup.get_or_insert(v);
        }
    }
    (out, dup)
}

fn duplicate(tx: &Txns, k: KeyId, r: &ReadAt, list: &[ValId], v: ValId, found: &mut Findings) {
    let why = format!(
        "{} read {} = {}, where {} appears more than once",
        tx.name(r.txn),
        tx.key_name(k),
        tx.list_name(list),
        tx.val_name(v)
    );
    found.push(Anomaly::about(tx, "duplicate-elements", Some(k), &[r.txn], why));
}

/// Checks one read against the order; true when it is a prefix of it.
fn check_read(
    tx: &Txns,
    g: &Gathered,
    k: KeyId,
    r: &ReadAt,
    longest: &ReadAt,
    order: &[ValId],
    found: &mut Findings,
) -> bool {
    let list = read_list(tx, g, k, r);
    if order.starts_with(list) {
        return true;
    }
    if std::ptr::eq(r, longest) {
        // Its repeats were reported when the order was taken from it.
        return false;
    }
    let (plain, dup) = dedup(list);
    if let Some(v) = dup {
        duplicate(tx, k, r, list, v, found);
    }
    if !order.starts_with(&plain) {
        let why = format!(
            "{} read {} = {} and {} read {} = {}: neither is a prefix of the other, so they cannot both be \
             versions of one list",
            tx.name(r.txn),
            tx.key_name(k),
            tx.list_name(list),
            tx.name(longest.txn),
            tx.key_name(k),
            tx.list_name(read_list(tx, g, k, longest)),
        );
        found.push(Anomaly::about(
            tx,
            "incompatible-order",
            Some(k),
            &[r.txn, longest.txn],
            why,
        ));
    }
    // Elements outside the order were never checked for who wrote them.
    for &v in plain.iter().filter(|v| !order.contains(v)) {
        check_value(tx, g, k, r.txn, v, found);
    }
    false
}

/// Garbage and aborted reads among the versions; dirty updates between them.
fn check_versions(tx: &Txns, g: &Gathered, k: KeyId, reader: TxnId, order: &[ValId], found: &mut Findings) {
    for &v in order {
        check_value(tx, g, k, reader, v, found);
    }
    for pair in order.windows(2) {
        let (Some(a), Some(b)) = (g.writer(k, pair[0]), g.writer(k, pair[1])) else {
            continue;
        };
        let status = |t: TxnId| tx.txns[t as usize].status;
        if a.txn != b.txn && status(a.txn) == Status::Aborted && status(b.txn) != Status::Aborted {
            let why = format!(
                "{} appended {} to {} after {}, which failed, had appended {}: a write built on an aborted one",
                tx.name(b.txn),
                tx.val_name(pair[1]),
                tx.key_name(k),
                tx.name(a.txn),
                tx.val_name(pair[0])
            );
            found.push(Anomaly::about(tx, "dirty-update", Some(k), &[a.txn, b.txn], why));
        }
    }
}

/// A value read: garbage when nobody wrote it, G1a when a failed
/// transaction did.
pub fn check_value(tx: &Txns, g: &Gathered, k: KeyId, reader: TxnId, v: ValId, found: &mut Findings) {
    // Names are formatted only for an anomaly: this runs for every version.
    let key = || tx.key_name(k);
    match g.writer(k, v) {
        None => {
            let why = format!(
                "{} read {} from {}, a value no transaction wrote",
                tx.name(reader),
                tx.val_name(v),
                key()
            );
            found.push(Anomaly::about(tx, "garbage-read", Some(k), &[reader], why));
        }
        Some(w) if tx.txns[w.txn as usize].status == Status::Aborted => {
            let why = format!(
                "{} read {} from {}, written by {}, which failed: an aborted write was read",
                tx.name(reader),
                tx.val_name(v),
                key(),
                tx.name(w.txn)
            );
            found.push(Anomaly::about(tx, "G1a", Some(k), &[w.txn, reader], why));
        }
        Some(_) => {}
    }
}

/// A writer that can stand in the graph: someone wrote it and that
/// transaction did not fail.
fn live_writer(tx: &Txns, g: &Gathered, k: KeyId, v: ValId) -> Option<TxnId> {
    g.writer(k, v)
        .map(|w| w.txn)
        .filter(|&t| tx.txns[t as usize].status != Status::Aborted)
}

/// ww edges between the writers of consecutive versions.
fn version_edges(tx: &Txns, g: &Gathered, k: KeyId, order: &[ValId], dsg: &mut Dsg) {
    let mut prev: Option<(TxnId, ValId)> = None;
    for &v in order {
        let Some(w) = live_writer(tx, g, k, v) else {
            continue;
        };
        if let Some((p, pv)) = prev {
            dsg.data(p, w, WW, Reason { key: k, a: pv, b: v });
        }
        prev = Some((w, v));
    }
}

/// wr from the writer of the last element read, rw to the writer of the
/// next version, and G1b when the element read was not its writer's last.
fn read_edges(tx: &Txns, g: &Gathered, k: KeyId, r: &ReadAt, order: &[ValId], dsg: &mut Dsg, found: &mut Findings) {
    let list = read_list(tx, g, k, r);
    if let Some(&last) = list.last() {
        if let Some(w) = g.writer(k, last) {
            if w.txn != r.txn && !w.last && tx.txns[w.txn as usize].status != Status::Aborted {
                intermediate(tx, k, r, w.txn, list, found);
            }
        }
        if let Some(w) = live_writer(tx, g, k, last) {
            dsg.data(
                w,
                r.txn,
                WR,
                Reason {
                    key: k,
                    a: r.mop,
                    b: last,
                },
            );
        }
    }
    if let Some(&next) = order.get(list.len()) {
        if let Some(w) = live_writer(tx, g, k, next) {
            dsg.data(
                r.txn,
                w,
                RW,
                Reason {
                    key: k,
                    a: r.mop,
                    b: next,
                },
            );
        }
    }
}

fn intermediate(tx: &Txns, k: KeyId, r: &ReadAt, w: TxnId, list: &[ValId], found: &mut Findings) {
    let why = format!(
        "{} read {} = {}, ending in {}'s append of {}, but {} appended more to {} afterwards: it read an \
         intermediate state",
        tx.name(r.txn),
        tx.key_name(k),
        tx.list_name(list),
        tx.name(w),
        tx.val_name(*list.last().unwrap_or(&0)),
        tx.name(w),
        tx.key_name(k)
    );
    found.push(Anomaly::about(tx, "G1b", Some(k), &[w, r.txn], why));
}

/// Two committed transactions that read the same version of the key and
/// both appended to it: one of the appends was made without seeing the
/// other, which no order of the two explains.
fn lost_updates(tx: &Txns, g: &Gathered, k: KeyId, reads: &[ReadAt], prefix: &[bool], found: &mut Findings) {
    let mut by_len: FastMap<usize, TxnId> = FastMap::default();
    for (r, &ok) in reads.iter().zip(prefix) {
        if !(ok && r.external && r.writes_after) {
            continue;
        }
        let list = read_list(tx, g, k, r);
        match by_len.get(&list.len()) {
            Some(&first) if first != r.txn => {
                let why = format!(
                    "{} and {} both read {} = {} and both appended to it: one append lost the other's update",
                    tx.name(first),
                    tx.name(r.txn),
                    tx.key_name(k),
                    tx.list_name(list)
                );
                found.push(Anomaly::about(tx, "lost-update", Some(k), &[first, r.txn], why));
            }
            Some(_) => {}
            None => {
                by_len.insert(list.len(), r.txn);
            }
        }
    }
}
