//! Writes follow reads (Terry et al. 1994): a write a process issued after
//! reading a value is ordered after that value everywhere both are seen.
//!
//! A write `y` by process `p` depends, on each key `k`, on the newest thing
//! `p` had read of `k` before issuing `y` (the value, or the last element of
//! a list): found for every write in one sweep over the events. The history shows a
//! violation in three ways, each checked here:
//! - registers: a node serves `y`, then later serves the value `y` depended
//!   on on the same key (so that node ordered the value after `y`);
//! - lists whose reads disagree: a read shows `y` without the element it
//!   depended on, or before it (on lists whose reads agree this cannot
//!   happen: the element is in the key's order before `y`);
//! - multi-key reads: a read that sees `y` on one key and, on another key `y`
//!   depended on, a state provably older than the dependency.
//!
//! Limits: [`FORBIDDEN_MAX`] dependencies remembered per (node, key);
//! [`TXN_READS_MAX`] reads of one multi-key read compared pairwise.
//!
//! Coverage: the reads and writes each dependency check compared (never a
//! transaction: its reads are compared one by one).

use std::collections::HashSet;

use serde_json::{json, Map};

use super::core::{Core, Ev, FxMap, State, NONE};
use super::explain::{self, Found};
use super::order::Orders;
use super::{Analysis, Judged};
use crate::verdict::Anomaly;

/// Per (node, key): how many writes-and-dependencies seen are remembered.
pub const FORBIDDEN_MAX: usize = 16;
/// Reads of one multi-key read compared with each other.
pub const TXN_READS_MAX: usize = 32;

/// What a write depended on: the write it must follow and the read that
/// showed it to the writer.
#[derive(Clone, Copy)]
struct Dep {
    x: u32,
    read: u32,
}

/// A pair a multi-key read asks about: read `r2` saw write `y`; read `r1`
/// (of the same operation, another key) must reflect what `y` depended on.
#[derive(Clone, Copy)]
struct Question {
    y: u32,
    r2: u32,
    r1: u32,
    /// The (process, key) number of `y`'s writer and `r1`'s key.
    pk: u32,
}

/// The dependencies of writes, found in one sweep over the events: for each
/// write, its writer's latest read of the same key before it ([`NONE`] if
/// none); and for each [`Question`], in the same order, the writer's latest
/// read of `r1`'s key before it wrote `y`.
struct Deps {
    same: Vec<u32>,
    cross: Vec<u32>,
}

impl Deps {
    fn new(core: &Core<'_>, asked: &[Question]) -> Deps {
        // Write ids follow the event order, so sorting by id sorts by time.
        let mut order: Vec<(u32, u32)> = asked.iter().enumerate().map(|(i, q)| (q.y, i as u32)).collect();
        order.sort_unstable();
        let mut last = vec![NONE; core.pk_count()];
        let mut deps = Deps {
            same: vec![NONE; core.writes.len()],
            cross: vec![NONE; asked.len()],
        };
        let mut q = 0;
        for ev in &core.events {
            match *ev {
                Ev::Read(r) => {
                    last[core.reads[r as usize].pk as usize] = r;
                }
                Ev::Write(y) => {
                    deps.same[y as usize] = last[core.writes[y as usize].pk as usize];
                    while q < order.len() && order[q].0 == y {
                        let i = order[q].1 as usize;
                        deps.cross[i] = last[asked[i].pk as usize];
                        q += 1;
                    }
                }
            }
        }
        deps
    }

    /// What write `y` depended on on its own key, if its writer had read it.
    fn dep(&self, core: &Core<'_>, y: u32) -> Option<Dep> {
        dep_via(core, y, self.same[y as usize])
    }
}

/// What write `y` depended on, given its writer's latest read of a key.
fn dep_via(core: &Core<'_>, y: u32, read: u32) -> Option<Dep> {
    if read == NONE {
        return None;
    }
    let x = match &core.state(read) {
        State::Reg(x) => *x,
        State::List(l) => *l.last()?,
    };
    (x != NONE && !explain::failed(core, x) && x != y).then_some(Dep { x, read })
}

pub fn check(a: &Analysis<'_>) -> Judged {
    let (core, orders) = (&a.core, &a.orders);
    let asked = questions(core);
    let by = Deps::new(core, &asked);
    let mut found = Found::default();
    let checked =
        registers(core, &by, &mut found) + lists(core, orders, &by, &mut found) + multi(a, &asked, &by, &mut found);
    if checked == 0 {
        return Judged::NotApplicable("no write was seen whose writer had read before writing it".into());
    }
    let mut details = Map::new();
    details.insert("dependencies_checked".into(), json!(checked));
    Judged::looked(found, details)
}

/// Covers what one dependency check compared: the read that showed `dep.x`
/// to the writer of `y`, both writes, and the read `r` that showed them.
fn judged(core: &Core<'_>, found: &mut Found, dep: Dep, y: u32, r: u32) {
    found.judged_read(core, dep.read);
    found.judged_write(core, dep.x);
    found.judged_write(core, y);
    found.judged_read(core, r);
}

/// A write `y` seen by read `ry`, whose dependency `dep` must not be seen
/// after it.
#[derive(Clone, Copy)]
struct Forbidden {
    dep: Dep,
    y: u32,
    ry: u32,
    /// When read `ry` completed.
    ry_done: u64,
}

/// Registers, per node: once a node served `y`, a later read from it (invoked
/// after that one completed) must not return what `y` depended on. Two
/// nodes answering out of order only show a stale replica, which is
/// monotonic reads' business; reads without a node are not judged here.
fn registers(core: &Core<'_>, by: &Deps, found: &mut Found) -> usize {
    let mut forbidden: FxMap<(u32, u32), Vec<Forbidden>> = FxMap::default();
    let mut checked = 0;
    for ev in &core.events {
        let Ev::Read(r) = *ev else { continue };
        let rec = &core.reads[r as usize];
        let State::Reg(v) = core.state(r) else { continue };
        if explain::failed(core, v) {
            continue;
        }
        let (node, invoked) = (rec.node, rec.invoke);
        if node == NONE {
            continue;
        }
        let slot = forbidden.entry((node, rec.key)).or_default();
        checked += usize::from(!slot.is_empty());
        if !slot.is_empty() {
            found.judged_read(core, r);
        }
        let before = |f: &&Forbidden| f.ry_done < invoked;
        if let Some(f) = slot.iter().filter(before).find(|f| f.dep.x == v) {
            let f = *f;
            found.push(|| {
                let tail = format!(
                    "{}, and later {}: the same node served {} after {}",
                    explain::p_read(core, f.ry),
                    explain::p_read(core, r),
                    explain::show(core.wvalue(f.dep.x)),
                    explain::show(core.wvalue(f.y))
                );
                report(core, f.dep, f.y, f.ry, r, tail)
            });
        }
        if v == NONE {
            continue;
        }
        if let Some(dep) = by.dep(core, v) {
            if slot.len() == FORBIDDEN_MAX {
                slot.remove(0);
            }
            slot.push(Forbidden {
                dep,
                y: v,
                ry: r,
                ry_done: rec.done,
            });
        }
    }
    checked
}

fn lists(core: &Core<'_>, orders: &Orders, by: &Deps, found: &mut Found) -> usize {
    let mut checked = 0;
    let mut reported: HashSet<(u32, u32)> = HashSet::new();
    for (r, rec) in core.reads.iter().enumerate() {
        let State::List(l) = core.state(r as u32) else { continue };
        if orders.consistent(rec.key) {
            if orders.canon_read[rec.key as usize] == r as u32 {
                checked += consistent_list(core, orders, by, l, r as u32, found);
            }
            continue;
        }
        let at: FxMap<u32, usize> = l.iter().enumerate().map(|(i, w)| (*w, i)).collect();
        for (i, &y) in l.iter().enumerate() {
            let Some(dep) = by.dep(core, y) else { continue };
            checked += 1;
            judged(core, found, dep, y, r as u32);
            if at.get(&dep.x).is_none_or(|&ix| ix > i) && reported.insert((dep.x, y)) {
                found.push(|| {
                    let how = if at.contains_key(&dep.x) { "before" } else { "without" };
                    let tail = format!(
                        "{}: {} {how} {}",
                        explain::p_read(core, r as u32),
                        explain::show(core.wvalue(y)),
                        explain::show(core.wvalue(dep.x))
                    );
                    report(core, dep, y, r as u32, r as u32, tail)
                });
            }
        }
    }
    checked
}

/// A list whose reads agree, through its longest read `r` (= its order
/// `l`): each element must come after the one its appender had read last.
/// A read that showed it could not have shown the other way round, so this
/// holds unless values repeat; it is checked all the same, as cheaply.
fn consistent_list(core: &Core<'_>, orders: &Orders, by: &Deps, l: &[u32], r: u32, found: &mut Found) -> usize {
    let mut checked = 0;
    for &y in l {
        let Some(dep) = by.dep(core, y) else {
            continue;
        };
        checked += 1;
        judged(core, found, dep, y, r);
        let (px, py) = (orders.pos[dep.x as usize], orders.pos[y as usize]);
        if px == NONE || px > py {
            found.push(|| {
                let tail = format!(
                    "{}: {} before {}",
                    explain::p_read(core, r),
                    explain::show(core.wvalue(y)),
                    explain::show(core.wvalue(dep.x))
                );
                report(core, dep, y, r, r, tail)
            });
        }
    }
    checked
}

/// The multi-key reads: runs of read records from one transaction (at most
/// [`TXN_READS_MAX`] of each).
fn snapshots(core: &Core<'_>) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < core.reads.len() {
        let op = core.reads[start].op;
        let end = start + core.reads[start..].iter().take_while(|r| r.op == op).count();
        if core.reads[start].micro != NONE && end - start > 1 {
            out.push(start..end.min(start + TXN_READS_MAX));
        }
        start = end;
    }
    out
}

/// The write a read of a snapshot saw last, if it is one to judge.
fn seen_last(core: &Core<'_>, r: usize) -> Option<u32> {
    let y = match &core.state(r as u32) {
        State::Reg(y) => *y,
        State::List(l) => l.last().copied().unwrap_or(NONE),
    };
    (y != NONE && !explain::failed(core, y)).then_some(y)
}

/// The questions multi-key reads ask, in order: only those whose writer
/// ever touched the other key (otherwise it cannot have read it before).
fn questions(core: &Core<'_>) -> Vec<Question> {
    let mut asked = Vec::new();
    for reads in snapshots(core) {
        for r2 in reads.clone() {
            let Some(y) = seen_last(core, r2) else { continue };
            let proc = core.writes[y as usize].proc;
            for r1 in reads.clone() {
                let k1 = core.reads[r1].key;
                if k1 == core.reads[r2].key {
                    continue;
                }
                if let Some(pk) = core.pk_of(proc, k1) {
                    asked.push(Question {
                        y,
                        r2: r2 as u32,
                        r1: r1 as u32,
                        pk,
                    });
                }
            }
        }
    }
    asked
}

/// Multi-key reads: a read that saw `y` on one key and, on another key `y`
/// depended on, a state provably older than the dependency.
fn multi(a: &Analysis<'_>, asked: &[Question], by: &Deps, found: &mut Found) -> usize {
    let core = &a.core;
    let mut checked = 0;
    for (q, &read) in asked.iter().zip(&by.cross) {
        let Some(dep) = dep_via(core, q.y, read) else { continue };
        checked += 1;
        judged(core, found, dep, q.y, q.r1);
        found.judged_read(core, q.r2);
        if !reflects(a, q.r1, dep.x) {
            found.push(|| {
                let tail = format!(
                    "{}, and in the same operation {}: older than {}",
                    explain::p_read(core, q.r2),
                    explain::read(core, q.r1),
                    explain::show(core.wvalue(dep.x))
                );
                report(core, dep, q.y, q.r2, q.r1, tail)
            });
        }
    }
    checked
}

/// True unless read `r` is provably older than write `x` on `x`'s key.
fn reflects(a: &Analysis<'_>, r: u32, x: u32) -> bool {
    match &a.core.state(r) {
        State::Reg(v) => !Orders::older(&a.core, *v, x),
        State::List(_) => a.orders.list_contains(&a.core, r, x),
    }
}

/// `dep.read` showed `dep.x` to the writer of `y`; `tail` says how other
/// reads show `y` not after `dep.x`.
fn report(core: &Core<'_>, dep: Dep, y: u32, ry: u32, r: u32, tail: String) -> Anomaly {
    let sentence = format!(
        "{}, then {}; but {}.",
        explain::p_read(core, dep.read),
        explain::wrote(core, y),
        tail
    );
    let k = core.writes[y as usize].key;
    let ops = [core.rop(dep.read), core.wop(y), core.rop(ry), core.rop(r)];
    explain::anomaly(core, "writes-follow-reads", k, &ops, sentence)
}
