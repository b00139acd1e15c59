//! Writes follow reads (Terry et al. 1994): a write a process issued after
//! reading a value is ordered after that value everywhere both are seen.
//!
//! A write `y` by process `p` depends, on each key `k`, on the newest thing
//! `p` had read of `k` before issuing `y` (the value, or the last element of
//! a list): found by binary search in `p`'s reads of `k`. The history shows a
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

use std::collections::HashSet;

use faultline_histories::{NodeId, Process, F};
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

/// Each process's reads of each key, in issue order.
struct ReadsByProcess(FxMap<(Process, u32), Vec<u32>>);

/// What a write depended on: the write it must follow and the read that
/// showed it to the writer.
#[derive(Clone, Copy)]
struct Dep {
    x: u32,
    read: u32,
}

impl ReadsByProcess {
    fn new(core: &Core<'_>) -> ReadsByProcess {
        let mut m: FxMap<(Process, u32), Vec<u32>> = FxMap::default();
        for (r, rec) in core.reads.iter().enumerate() {
            m.entry((core.rproc(r as u32), rec.key)).or_default().push(r as u32);
        }
        ReadsByProcess(m)
    }

    /// What write `y` depended on on key `k`, if its writer had read `k`.
    fn dep(&self, core: &Core<'_>, y: u32, k: u32) -> Option<Dep> {
        let group = self.0.get(&(core.wproc(y), k))?;
        let ev = core.writes[y as usize].ev;
        let i = group.partition_point(|r| core.reads[*r as usize].ev < ev);
        let read = *group.get(i.checked_sub(1)?)?;
        let x = match &core.reads[read as usize].state {
            State::Reg(x) => *x,
            State::List(l) => *l.last()?,
        };
        (x != NONE && !explain::failed(core, x) && x != y).then_some(Dep { x, read })
    }
}

pub fn check(a: &Analysis<'_>) -> Judged {
    let (core, orders) = (&a.core, &a.orders);
    let by = ReadsByProcess::new(core);
    let mut found = Found::default();
    let checked = registers(core, &by, &mut found) + lists(core, orders, &by, &mut found) + multi(a, &by, &mut found);
    if checked == 0 {
        return Judged::NotApplicable("no write was seen whose writer had read before writing it".into());
    }
    let mut details = Map::new();
    details.insert("dependencies_checked".into(), json!(checked));
    Judged::looked(checked, found, details)
}

/// A write `y` seen by read `ry`, whose dependency `dep` must not be seen
/// after it.
#[derive(Clone, Copy)]
struct Forbidden {
    dep: Dep,
    y: u32,
    ry: u32,
}

/// Registers, per node: once a node served `y`, a later read from it (invoked
/// after that one completed) must not return what `y` depended on. Two
/// nodes answering out of order only show a stale replica, which is
/// monotonic reads' business; reads without a node are not judged here.
fn registers(core: &Core<'_>, by: &ReadsByProcess, found: &mut Found) -> usize {
    let mut forbidden: FxMap<(NodeId, u32), Vec<Forbidden>> = FxMap::default();
    let mut checked = 0;
    for ev in &core.events {
        let Ev::Read(r) = *ev else { continue };
        let rec = &core.reads[r as usize];
        let State::Reg(v) = rec.state else { continue };
        if explain::failed(core, v) {
            continue;
        }
        let Some(node) = core.rop(r).node else { continue };
        let invoked = core.rop(r).invoke_time;
        let slot = forbidden.entry((node, rec.key)).or_default();
        checked += usize::from(!slot.is_empty());
        let before = |f: &&Forbidden| core.rop(f.ry).complete_time.is_some_and(|t| t < invoked);
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
        if let Some(dep) = by.dep(core, v, rec.key) {
            if slot.len() == FORBIDDEN_MAX {
                slot.remove(0);
            }
            slot.push(Forbidden { dep, y: v, ry: r });
        }
    }
    checked
}

fn lists(core: &Core<'_>, orders: &Orders, by: &ReadsByProcess, found: &mut Found) -> usize {
    let mut checked = 0;
    let mut reported: HashSet<(u32, u32)> = HashSet::new();
    for (r, rec) in core.reads.iter().enumerate() {
        let State::List(l) = &rec.state else { continue };
        if orders.consistent(rec.key) {
            if orders.canon_read[rec.key as usize] == r as u32 {
                checked += consistent_list(core, orders, by, l, r as u32, found);
            }
            continue;
        }
        let at: FxMap<u32, usize> = l.iter().enumerate().map(|(i, w)| (*w, i)).collect();
        for (i, &y) in l.iter().enumerate() {
            let Some(dep) = by.dep(core, y, rec.key) else { continue };
            checked += 1;
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
fn consistent_list(
    core: &Core<'_>,
    orders: &Orders,
    by: &ReadsByProcess,
    l: &[u32],
    r: u32,
    found: &mut Found,
) -> usize {
    let mut checked = 0;
    for &y in l {
        let Some(dep) = by.dep(core, y, core.reads[r as usize].key) else {
            continue;
        };
        checked += 1;
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

/// Multi-key reads: runs of reads from one transaction.
fn multi(a: &Analysis<'_>, by: &ReadsByProcess, found: &mut Found) -> usize {
    let core = &a.core;
    let mut checked = 0;
    let mut start = 0;
    while start < core.reads.len() {
        let op = core.reads[start].op;
        let end = start + core.reads[start..].iter().take_while(|r| r.op == op).count();
        if core.history.ops[op as usize].f == F::Txn && end - start > 1 {
            checked += snapshot(a, by, start..end.min(start + TXN_READS_MAX), found);
        }
        start = end;
    }
    checked
}

/// One multi-key read: each write it saw against the dependencies of that
/// write on the other keys it read.
fn snapshot(a: &Analysis<'_>, by: &ReadsByProcess, reads: std::ops::Range<usize>, found: &mut Found) -> usize {
    let core = &a.core;
    let mut checked = 0;
    for r2 in reads.clone() {
        let y = match &core.reads[r2].state {
            State::Reg(y) => *y,
            State::List(l) => l.last().copied().unwrap_or(NONE),
        };
        if y == NONE || explain::failed(core, y) {
            continue;
        }
        for r1 in reads.clone() {
            let k1 = core.reads[r1].key;
            if k1 == core.reads[r2].key {
                continue;
            }
            let Some(dep) = by.dep(core, y, k1) else { continue };
            checked += 1;
            if !reflects(a, r1 as u32, dep.x) {
                found.push(|| {
                    let tail = format!(
                        "{}, and in the same operation {}: older than {}",
                        explain::p_read(core, r2 as u32),
                        explain::read(core, r1 as u32),
                        explain::show(core.wvalue(dep.x))
                    );
                    report(core, dep, y, r2 as u32, r1 as u32, tail)
                });
            }
        }
    }
    checked
}

/// True unless read `r` is provably older than write `x` on `x`'s key.
fn reflects(a: &Analysis<'_>, r: u32, x: u32) -> bool {
    match &a.core.reads[r as usize].state {
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
