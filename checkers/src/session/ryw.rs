//! Read your writes (Terry et al. 1994): after a process's write to a key
//! completed ok, every later read of that key by the same process reflects
//! it, or a later write.
//!
//! One pass over each process's steps in issue order, with O(1) state per
//! (process, key):
//! - registers: the process's latest ok write `w`; a later read that returns
//!   the initial value, or a write that completed before `w` was invoked, is
//!   provably older than `w` ([`Orders::older`]). A read of a write that
//!   overlapped `w` proves nothing and is let be.
//! - lists: every element the process appended (ok) must be in its later
//!   reads. On a key whose reads agree on one order that is one comparison
//!   (the appended element with the furthest position against the read's
//!   length); otherwise the latest [`OWN_APPENDS_MAX`] appends are looked up.
//!
//! Covers each read it compared with the process's own writes, and the
//! latest of those writes.

use serde_json::{json, Map};

use super::core::{Core, Ev, FxMap, State, NONE};
use super::explain::{self, Found};
use super::order::Orders;
use super::{Analysis, Judged};

/// On list keys whose reads disagree, how many of a process's latest appends
/// each read is checked against.
pub const OWN_APPENDS_MAX: usize = 256;

/// Every session's own writes, by (process, key) number.
struct Sessions {
    /// Register: the latest own ok write. List, consistent key: the own
    /// append furthest along the key's order ([`NONE`] position counts as
    /// furthest: no read ever showed it). [`NONE`] when there is none.
    need: Vec<u32>,
    /// List, inconsistent key: the latest own appends.
    own: FxMap<u32, Vec<u32>>,
}

pub fn check(a: &Analysis<'_>) -> Judged {
    let (core, orders) = (&a.core, &a.orders);
    let mut sessions = Sessions {
        need: vec![NONE; core.pk_count()],
        own: FxMap::default(),
    };
    let mut found = Found::default();
    let mut checked = 0usize;
    for ev in &core.events {
        match *ev {
            Ev::Write(w) => remember(core, orders, &mut sessions, w),
            Ev::Read(r) => {
                let pk = core.reads[r as usize].pk;
                let need = sessions.need[pk as usize];
                let own = sessions.own.get(&pk).map_or(&[][..], Vec::as_slice);
                if need == NONE && own.is_empty() {
                    continue;
                }
                checked += 1;
                found.judged_read(core, r);
                found.judged_write(core, need);
                // The latest own append is compared with every later read;
                // marking all of them per read would cost up to
                // OWN_APPENDS_MAX a read for what the first read marked.
                if let Some(&w) = own.last() {
                    found.judged_write(core, w);
                }
                if let Some(missed) = violated(core, orders, need, own, r) {
                    found.push(|| report(core, missed, r));
                }
            }
        }
    }
    if checked == 0 {
        return Judged::NotApplicable("no process read a key after writing it".into());
    }
    let mut details = Map::new();
    details.insert("reads_checked".into(), json!(checked));
    Judged::looked(found, details)
}

/// Records an ok write in its process's session.
fn remember(core: &Core<'_>, orders: &Orders, sessions: &mut Sessions, w: u32) {
    if !core.w_ok(w) {
        return;
    }
    let rec = &core.writes[w as usize];
    let (key, pk) = (rec.key, rec.pk as usize);
    if !core.list_key[key as usize] {
        sessions.need[pk] = w;
    } else if orders.consistent(key) || orders.canon_read[key as usize] == NONE {
        let n = sessions.need[pk];
        if n == NONE || orders.pos[w as usize] >= orders.pos[n as usize] {
            sessions.need[pk] = w;
        }
    } else {
        let own = sessions.own.entry(pk as u32).or_default();
        if own.len() == OWN_APPENDS_MAX {
            own.remove(0);
        }
        own.push(w);
    }
}

/// The own write that read `r` provably misses, if any.
fn violated(core: &Core<'_>, orders: &Orders, need: u32, own: &[u32], r: u32) -> Option<u32> {
    let rec = &core.reads[r as usize];
    match core.state(r) {
        State::Reg(x) => {
            if need == NONE {
                return None;
            }
            let own_txn = core.writes[need as usize].op == rec.op;
            (!own_txn && !explain::failed(core, x) && Orders::older(core, x, need)).then_some(need)
        }
        State::List(l) => {
            if need != NONE {
                let p = orders.pos[need as usize];
                if core.writes[need as usize].op != rec.op && (p == NONE || p as usize >= l.len()) {
                    return Some(need);
                }
            }
            own.iter()
                .rev()
                .find(|w| core.writes[**w as usize].op != rec.op && !l.contains(w))
                .copied()
        }
    }
}

fn report(core: &Core<'_>, w: u32, r: u32) -> crate::verdict::Anomaly {
    let rec = &core.reads[r as usize];
    let tail = match &core.state(r) {
        State::Reg(x) if *x == NONE => ", as if it had never written".to_owned(),
        State::Reg(x) => format!(", written by op {} before {} was written", core.wop(*x).invoke_index, {
            explain::show(core.wvalue(w))
        }),
        State::List(_) => format!(", without {}", explain::show(core.wvalue(w))),
    };
    let sentence = format!(
        "{}, then {}{}.",
        explain::p_wrote(core, w),
        explain::read(core, r),
        tail
    );
    let mut ops = vec![core.wop(w), core.rop(r)];
    if let State::Reg(x) = core.state(r) {
        ops.extend(explain::wop_opt(core, x));
    }
    explain::anomaly(core, "read-your-writes", rec.key, &ops, sentence)
}
