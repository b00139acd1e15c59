//! The version order of each key, as far as the history forces it.
//!
//! - A list key's order is what its reads show: each read returns the whole
//!   list, so it names the order of every element in it. When every read is
//!   a prefix of the longest one, that read is the key's order and each read
//!   is just a length ([`Orders::pos`] gives every element's place). When
//!   two reads are not prefixes of one another, no single order explains
//!   them: the key is marked inconsistent, the pair is kept as evidence, and
//!   checkers fall back to comparing the reads themselves.
//! - A register key's order is partial: write `a` precedes write `b` only when
//!   `a` completed ok before `b` was invoked (real time), and the initial
//!   (absent) value precedes every write. Writes that overlap, or whose end
//!   is unknown (`info`, pending), are never called older. Checkers that ask
//!   [`Orders::older`] therefore report only what is proven.
//!
//! Also here: each process's own order of writes, per key and overall.

use super::core::{Core, State, NONE};

/// Two reads of a list key that no single order of appends can explain.
#[derive(Clone, Copy, Debug)]
pub struct Conflict {
    /// The longest read of the key.
    pub longest: u32,
    /// A read that is not a prefix of it.
    pub other: u32,
    /// The first position where they differ.
    pub at: u32,
}

/// Per-key orders and per-process write orders.
pub struct Orders {
    /// For list keys whose reads agree: the longest read (the key's order).
    pub canon_read: Vec<u32>,
    /// For list keys: the first pair of reads that disagree, if any.
    pub conflict: Vec<Option<Conflict>>,
    /// Position of each write in its key's order (list keys that agree), or
    /// [`NONE`].
    pub pos: Vec<u32>,
    /// The previous write by the same process to the same key, or [`NONE`].
    pub prev_pk: Vec<u32>,
    /// The next write by the same process to the same key, or [`NONE`].
    pub next_pk: Vec<u32>,
    /// The index of each write among its process's writes to its key.
    pub seq_pk: Vec<u32>,
    /// The previous write by the same process to any key, or [`NONE`].
    pub prev_p: Vec<u32>,
}

impl Orders {
    /// Derives the orders of `core`.
    pub fn derive(core: &Core<'_>) -> Orders {
        let nkeys = core.keys.len();
        let mut o = Orders {
            canon_read: vec![NONE; nkeys],
            conflict: vec![None; nkeys],
            pos: vec![NONE; core.writes.len()],
            prev_pk: vec![NONE; core.writes.len()],
            next_pk: vec![NONE; core.writes.len()],
            seq_pk: vec![0; core.writes.len()],
            prev_p: vec![NONE; core.writes.len()],
        };
        o.list_orders(core);
        o.process_orders(core);
        o
    }

    /// True when list key `k` has one order that every read is a prefix of.
    pub fn consistent(&self, k: u32) -> bool {
        self.conflict[k as usize].is_none() && self.canon_read[k as usize] != NONE
    }

    /// The order of a consistent list key (empty if it was never read).
    pub fn canon<'a>(&self, core: &'a Core<'_>, k: u32) -> &'a [u32] {
        match self.canon_read[k as usize] {
            NONE => &[],
            r => list(&core.state(r)),
        }
    }

    fn list_orders(&mut self, core: &Core<'_>) {
        for (i, r) in core.reads.iter().enumerate() {
            let State::List(l) = core.state(i as u32) else { continue };
            let best = &mut self.canon_read[r.key as usize];
            if *best == NONE || list(&core.state(*best)).len() < l.len() {
                *best = i as u32;
            }
        }
        for (i, r) in core.reads.iter().enumerate() {
            let State::List(l) = core.state(i as u32) else { continue };
            let k = r.key as usize;
            if self.conflict[k].is_some() {
                continue;
            }
            let canon = list(&core.state(self.canon_read[k]));
            if let Some(at) = l.iter().zip(canon).position(|(a, b)| a != b) {
                self.conflict[k] = Some(Conflict {
                    longest: self.canon_read[k],
                    other: i as u32,
                    at: at as u32,
                });
            }
        }
        for k in 0..core.keys.len() as u32 {
            if self.consistent(k) {
                for (p, &w) in self.canon(core, k).iter().enumerate() {
                    self.pos[w as usize] = p as u32;
                }
            }
        }
    }

    fn process_orders(&mut self, core: &Core<'_>) {
        let mut last_pk = vec![NONE; core.pk_count()];
        let mut last_p = vec![NONE; core.procs.len()];
        for (i, w) in core.writes.iter().enumerate() {
            if w.failed {
                continue;
            }
            let i = i as u32;
            let prev = std::mem::replace(&mut last_pk[w.pk as usize], i);
            if prev != NONE {
                self.prev_pk[i as usize] = prev;
                self.next_pk[prev as usize] = i;
                self.seq_pk[i as usize] = self.seq_pk[prev as usize] + 1;
            }
            self.prev_p[i as usize] = std::mem::replace(&mut last_p[w.proc as usize], i);
        }
    }

    /// True when register state `a` (a write, or [`NONE`] for the initial
    /// value) is provably older than write `b`: the initial value is older
    /// than any write; a write that completed ok before `b` was invoked is
    /// older than `b`.
    pub fn older(core: &Core<'_>, a: u32, b: u32) -> bool {
        if b == NONE || a == b {
            return false;
        }
        if a == NONE {
            return true;
        }
        core.writes[a as usize].done_ok < core.writes[b as usize].invoke
    }

    /// True when the list read `r` contains write `w`.
    pub fn list_contains(&self, core: &Core<'_>, r: u32, w: u32) -> bool {
        let rec = &core.reads[r as usize];
        let l = list(&core.state(r));
        if self.consistent(rec.key) {
            let p = self.pos[w as usize];
            return p != NONE && (p as usize) < l.len() && core.writes[w as usize].key == rec.key;
        }
        l.contains(&w)
    }
}

/// The elements of a list state (empty for a register state).
pub fn list<'a>(s: &State<'a>) -> &'a [u32] {
    match *s {
        State::List(l) => l,
        State::Reg(_) => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_histories::{Event, EventType, History, Process, F};
    use serde_json::{json, Value};

    fn op(p: u64, f: F, v: Value, t0: u64, t1: u64) -> [Event; 2] {
        let out = if f == F::Read { json!(null) } else { v.clone() };
        [
            Event::new(0, t0, Process::Client(p), EventType::Invoke, f.clone(), out).with_key("x"),
            Event::new(0, t1, Process::Client(p), EventType::Ok, f, v).with_key("x"),
        ]
    }

    /// Events sorted by time and numbered, as a history file holds them.
    fn history(ops: Vec<[Event; 2]>) -> History {
        let mut evs: Vec<Event> = ops.into_iter().flatten().collect();
        evs.sort_by_key(|e| e.time);
        for (i, e) in evs.iter_mut().enumerate() {
            e.index = i as u64;
        }
        History::from_events(evs).unwrap()
    }

    #[test]
    fn registers_are_ordered_only_by_real_time_and_the_initial_value() {
        let h = history(vec![
            op(1, F::Write, json!(1), 0, 10),
            op(2, F::Write, json!(2), 20, 30),
            op(3, F::Write, json!(3), 25, 100),
        ]);
        let c = Core::derive(&h);
        assert!(Orders::older(&c, 0, 1), "1 completed before 2 began");
        assert!(!Orders::older(&c, 1, 0));
        assert!(!Orders::older(&c, 1, 2) && !Orders::older(&c, 2, 1), "2 and 3 overlap");
        assert!(Orders::older(&c, NONE, 0), "the initial value precedes every write");
        assert!(!Orders::older(&c, 0, NONE));
    }

    #[test]
    fn list_reads_that_agree_give_positions_and_those_that_do_not_a_conflict() {
        let h = history(vec![
            op(1, F::Append, json!(1), 0, 10),
            op(2, F::Append, json!(2), 0, 10),
            op(3, F::Read, json!([1, 2]), 20, 30),
            op(4, F::Read, json!([1]), 20, 30),
        ]);
        let c = Core::derive(&h);
        let o = Orders::derive(&c);
        assert!(o.consistent(0));
        assert_eq!((o.pos[0], o.pos[1]), (0, 1));
        let h = history(vec![
            op(1, F::Append, json!(1), 0, 10),
            op(2, F::Append, json!(2), 0, 10),
            op(3, F::Read, json!([1, 2]), 20, 30),
            op(4, F::Read, json!([2]), 20, 30),
        ]);
        let c = Core::derive(&h);
        let o = Orders::derive(&c);
        assert!(!o.consistent(0));
        assert_eq!(o.conflict[0].map(|c| c.at), Some(0));
        assert_eq!(o.pos[0], NONE);
    }
}
