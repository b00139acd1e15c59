//! Monotonic reads and monotonic writes (Terry et al. 1994).
//!
//! - Monotonic reads: a process never reads a key's state older than one it
//!   already read. Registers: a read is older when it returns the initial
//!   value after a write, or a write that completed before an earlier-read
//!   write was invoked (the newest earlier read, by invoke time, is the only
//!   one to compare with). Lists: a read that lacks an element the process
//!   already saw (elements are never removed).
//! - Monotonic writes: two writes of one process to a key take effect in the
//!   order it issued them. Lists: a read that shows the later append without
//!   the earlier, or before it. Registers: one node serves the later write
//!   and afterwards the earlier one.
//!
//! Both are single passes with O(1) state per (process, key); lists whose
//! reads disagree on an order are compared read by read.
//!
//! Coverage: monotonic reads covers each read it compared with an earlier
//! one, and that earlier read; monotonic writes covers the two writes of
//! each pair it ordered, and the reads that showed the order.

use std::collections::HashSet;

use serde_json::{json, Map};

use super::core::{Core, Ev, FxMap, State, NONE};
use super::explain::{self, Found};
use super::order::{list, Orders};
use super::{Analysis, Judged};
use crate::verdict::Anomaly;

/// What a process last knew of a key, for monotonic reads.
#[derive(Clone, Copy)]
struct Seen {
    /// The read to compare with: for registers the one that saw the newest
    /// write, for lists the longest (or, when the key's reads disagree, the
    /// previous) read.
    read: u32,
    /// Registers: the newest write seen so far (by invoke time), or [`NONE`].
    best: u32,
}

pub fn check_reads(a: &Analysis<'_>) -> Judged {
    let (core, orders) = (&a.core, &a.orders);
    let mut seen = vec![Seen { read: NONE, best: NONE }; core.pk_count()];
    let mut found = Found::default();
    let mut checked = 0usize;
    for ev in &core.events {
        let Ev::Read(r) = *ev else { continue };
        let rec = &core.reads[r as usize];
        if let State::Reg(x) = core.state(r) {
            if explain::failed(core, x) {
                continue;
            }
        }
        let prev = &mut seen[rec.pk as usize];
        if prev.read == NONE {
            *prev = advance(core, orders, Seen { read: r, best: NONE }, r);
            continue;
        }
        checked += 1;
        found.judged_read(core, r);
        found.judged_read(core, prev.read);
        if let Some(detail) = went_back(core, orders, *prev, r) {
            found.push(|| report_reads(core, *prev, r, detail));
        }
        *prev = advance(core, orders, *prev, r);
    }
    if checked == 0 {
        return Judged::NotApplicable("no process read a key twice".into());
    }
    let mut details = Map::new();
    details.insert("reads_checked".into(), json!(checked));
    Judged::looked(found, details)
}

/// The state to compare later reads with, once `r` has been read.
fn advance(core: &Core<'_>, orders: &Orders, prev: Seen, r: u32) -> Seen {
    let rec = &core.reads[r as usize];
    match &core.state(r) {
        State::Reg(x) => {
            let newer = *x != NONE
                && (prev.best == NONE || core.writes[*x as usize].invoke > core.writes[prev.best as usize].invoke);
            if newer || prev.read == r {
                Seen { read: r, best: *x }
            } else {
                prev
            }
        }
        State::List(l) => {
            let longer = l.len() > list(&core.state(prev.read)).len();
            if !orders.consistent(rec.key) || longer {
                Seen { read: r, best: NONE }
            } else {
                prev
            }
        }
    }
}

/// When read `r` is provably older than what `prev` saw: for lists the
/// element it lacks, for registers [`NONE`].
fn went_back(core: &Core<'_>, orders: &Orders, prev: Seen, r: u32) -> Option<u32> {
    let rec = &core.reads[r as usize];
    match &core.state(r) {
        State::Reg(x) => (prev.best != NONE && Orders::older(core, *x, prev.best)).then_some(NONE),
        State::List(l) => {
            let before = list(&core.state(prev.read));
            if orders.consistent(rec.key) {
                return before.get(l.len()).copied();
            }
            let now: HashSet<u32> = l.iter().copied().collect();
            before.iter().find(|e| !now.contains(e)).copied()
        }
    }
}

fn report_reads(core: &Core<'_>, prev: Seen, r: u32, lacked: u32) -> Anomaly {
    let rec = &core.reads[r as usize];
    let why = match core.state(r) {
        State::List(_) => format!(
            "without {}, which it had already seen",
            explain::show(core.wvalue(lacked))
        ),
        State::Reg(NONE) => "older than what it had already seen".to_owned(),
        State::Reg(x) => format!(
            "older: {} was written by op {}, which completed before op {} (which wrote {}) began",
            explain::show(core.wvalue(x)),
            core.wop(x).invoke_index,
            core.wop(prev.best).invoke_index,
            explain::show(core.wvalue(prev.best))
        ),
    };
    let sentence = format!(
        "{}, then {}: {}.",
        explain::p_read(core, prev.read),
        explain::read(core, r),
        why
    );
    let mut ops = vec![core.rop(prev.read), core.rop(r)];
    if let State::Reg(x) = core.state(r) {
        ops.extend(explain::wop_opt(core, prev.best));
        ops.extend(explain::wop_opt(core, x));
    }
    explain::anomaly(core, "monotonic-reads", rec.key, &ops, sentence)
}

pub fn check_writes(a: &Analysis<'_>) -> Judged {
    let (core, orders) = (&a.core, &a.orders);
    let mut found = Found::default();
    let mut checked = consistent_lists(core, orders, &mut found);
    checked += inconsistent_lists(core, orders, &mut found);
    checked += registers(core, orders, &mut found);
    if checked == 0 {
        return Judged::NotApplicable("no process wrote a key twice where a read could show the order".into());
    }
    let mut details = Map::new();
    details.insert("pairs_checked".into(), json!(checked));
    Judged::looked(found, details)
}

/// Lists whose reads agree: the later append must come after the earlier in
/// the key's order, whenever any read showed the later one.
fn consistent_lists(core: &Core<'_>, orders: &Orders, found: &mut Found) -> usize {
    let mut checked = 0;
    for (b, rec) in core.writes.iter().enumerate() {
        let (b, k) = (b as u32, rec.key);
        let a = orders.prev_pk[b as usize];
        if a == NONE || !core.list_key[k as usize] || !orders.consistent(k) || orders.pos[b as usize] == NONE {
            continue;
        }
        checked += 1;
        found.judged_write(core, a);
        found.judged_write(core, b);
        found.judged_read(core, orders.canon_read[k as usize]);
        if orders.pos[a as usize] == NONE || orders.pos[a as usize] > orders.pos[b as usize] {
            found.push(|| report_writes(core, a, b, orders.canon_read[k as usize], None));
        }
    }
    checked
}

/// Lists whose reads disagree: every read is checked on its own.
fn inconsistent_lists(core: &Core<'_>, orders: &Orders, found: &mut Found) -> usize {
    let mut checked = 0;
    let mut reported: HashSet<(u32, u32)> = HashSet::new();
    for (r, rec) in core.reads.iter().enumerate() {
        let State::List(l) = core.state(r as u32) else { continue };
        if orders.consistent(rec.key) {
            continue;
        }
        let at: FxMap<u32, usize> = l.iter().enumerate().map(|(i, w)| (*w, i)).collect();
        for (i, &b) in l.iter().enumerate() {
            let a = orders.prev_pk[b as usize];
            if a == NONE {
                continue;
            }
            checked += 1;
            found.judged_write(core, a);
            found.judged_write(core, b);
            found.judged_read(core, r as u32);
            if at.get(&a).is_none_or(|&ia| ia > i) && reported.insert((a, b)) {
                found.push(|| report_writes(core, a, b, r as u32, None));
            }
        }
    }
    checked
}

/// Registers: a node that served a process's later write and then, to a read
/// invoked after that one completed, its earlier one. (A reader that sees
/// them in that order from two nodes shows stale replicas, which is
/// monotonic reads' business, not a write order.) Reads without a node are
/// not judged here.
fn registers(core: &Core<'_>, orders: &Orders, found: &mut Found) -> usize {
    let mut newest: FxMap<(u32, u32, u32), (u32, u32)> = FxMap::default();
    let mut checked = 0;
    for ev in &core.events {
        let Ev::Read(r) = *ev else { continue };
        let State::Reg(x) = core.state(r) else {
            continue;
        };
        if x == NONE || explain::failed(core, x) {
            continue;
        }
        let node = core.reads[r as usize].node;
        if node == NONE {
            continue;
        }
        let slot = (node, core.reads[r as usize].key, core.writes[x as usize].proc);
        match newest.get_mut(&slot) {
            None => {
                newest.insert(slot, (x, r));
            }
            Some((y, ry)) => {
                checked += 1;
                found.judged_read(core, r);
                found.judged_read(core, *ry);
                found.judged_write(core, x);
                found.judged_write(core, *y);
                let after = core.reads[*ry as usize].done < core.reads[r as usize].invoke;
                if orders.seq_pk[x as usize] < orders.seq_pk[*y as usize] && after {
                    let (y, ry) = (*y, *ry);
                    found.push(|| report_writes(core, x, y, r, Some(ry)));
                } else if orders.seq_pk[x as usize] > orders.seq_pk[*y as usize] {
                    *y = x;
                    *ry = r;
                }
            }
        }
    }
    checked
}

/// `a` was written before `b` by one process, yet read `r` (after `rb`,
/// which saw `b`, for registers) shows otherwise.
fn report_writes(core: &Core<'_>, a: u32, b: u32, r: u32, rb: Option<u32>) -> Anomaly {
    let k = core.writes[b as usize].key;
    let shows = match rb {
        Some(rb) => format!(
            "{}, and later {}, from the same node",
            explain::p_read(core, rb),
            explain::p_read(core, r)
        ),
        None => {
            let how = if orders_contains(core, r, a) {
                "before"
            } else {
                "without"
            };
            format!(
                "{}: {} {how} {}",
                explain::p_read(core, r),
                explain::show(core.wvalue(b)),
                explain::show(core.wvalue(a))
            )
        }
    };
    let sentence = format!(
        "{}, then {}; but {}.",
        explain::p_wrote(core, a),
        explain::wrote(core, b),
        shows
    );
    let mut ops = vec![core.wop(a), core.wop(b)];
    ops.extend(rb.map(|rb| core.rop(rb)));
    ops.push(core.rop(r));
    explain::anomaly(core, "monotonic-writes", k, &ops, sentence)
}

fn orders_contains(core: &Core<'_>, r: u32, w: u32) -> bool {
    list(&core.state(r)).contains(&w)
}
