//! Lost writes: a write or append acknowledged `ok` that the final reads
//! (taken after every fault is healed, `"final": true`) do not contain; and
//! its mirror, a write that failed definitely (`fail`) yet was read.
//!
//! - Lists: an ok append is lost when no final read of its key contains it.
//! - Registers: a final read shows one value, so an ok write is lost only
//!   when it is provably newer than what every final read returned: it was
//!   invoked after the newest of those values' writes had completed (or the
//!   final reads returned the initial value). When a final read returns a
//!   write of unknown end (`info`, pending), nothing is provably newer and the
//!   key is not judged. One anomaly per key names the earliest such write;
//!   `details.lost_on_key` counts them all.
//! - Keys without a final read are not judged (counted in the details).
//!
//! Coverage: the ok writes of each key judged, every failed write (each
//! was looked for in the reads), and the final reads.
//!
//! Linear in the number of reads and writes.

use std::collections::HashSet;

use faultline_histories::Outcome;
use serde_json::{json, Map};

use super::core::{Core, FxMap, State, NONE};
use super::explain::{self, Found};
use super::order::list;
use super::{Analysis, Judged};
use crate::verdict::Anomaly;

pub fn check(a: &Analysis<'_>) -> Judged {
    let core = &a.core;
    if core.final_ops.is_empty() {
        return Judged::NotApplicable("no final reads (\"final\": true) in the history".into());
    }
    let mut finals: FxMap<u32, Vec<u32>> = FxMap::default();
    for (r, rec) in core.reads.iter().enumerate() {
        if rec.is_final {
            finals.entry(rec.key).or_default().push(r as u32);
        }
    }
    let mut found = Found::default();
    let failed_read = failed_writes_read(core, &mut found);
    for (w, &failed) in core.write_failed.iter().enumerate() {
        if failed {
            found.judged_write(core, w as u32);
        }
    }
    let (mut judged, mut unjudged_keys) = (0usize, 0usize);
    let mut by_key: FxMap<u32, Vec<u32>> = FxMap::default();
    for (w, rec) in core.writes.iter().enumerate() {
        if core.w_ok(w as u32) {
            by_key.entry(rec.key).or_default().push(w as u32);
        }
    }
    let mut keys: Vec<u32> = by_key.keys().copied().collect();
    keys.sort_unstable();
    for k in keys {
        let Some(fs) = finals.get(&k) else {
            unjudged_keys += 1;
            continue;
        };
        let writes = &by_key[&k];
        judged += writes.len();
        for &w in writes {
            found.judged_write(core, w);
        }
        if core.list_key[k as usize] {
            lost_appends(core, writes, fs, &mut found);
        } else if !lost_register_writes(core, k, writes, fs, &mut found) {
            unjudged_keys += 1;
        }
    }
    let final_reads: usize = finals.values().map(Vec::len).sum();
    if final_reads == 0 {
        let mut details = Map::new();
        details.insert("failed_writes_read".into(), json!(failed_read));
        return Judged::Looked {
            found,
            unknown: Some("no final read completed ok with a value the checker could attribute".into()),
            details,
        };
    }
    let mut details = Map::new();
    details.insert("acknowledged_writes_judged".into(), json!(judged));
    details.insert("final_reads".into(), json!(final_reads));
    details.insert("keys_not_judged".into(), json!(unjudged_keys));
    details.insert("failed_writes_read".into(), json!(failed_read));
    for rs in finals.values() {
        for &r in rs {
            found.judged_read(core, r);
        }
    }
    Judged::looked(found, details)
}

/// Failed writes that some read saw; returns how many.
fn failed_writes_read(core: &Core<'_>, found: &mut Found) -> usize {
    let mut reported: HashSet<u32> = HashSet::new();
    if !core.any_failed {
        return 0;
    }
    for (r, rec) in core.reads.iter().enumerate() {
        let state = core.state(r as u32);
        let seen: &[u32] = match &state {
            State::Reg(x) => std::slice::from_ref(x),
            State::List(l) => l,
        };
        for &w in seen {
            if explain::failed(core, w) && reported.insert(w) {
                found.push(|| {
                    let sentence = format!(
                        "{}, which failed, yet {}, which includes it.",
                        explain::p_wrote(core, w),
                        explain::p_read(core, r as u32)
                    );
                    explain::anomaly(
                        core,
                        "failed-write-read",
                        rec.key,
                        &[core.wop(w), core.rop(r as u32)],
                        sentence,
                    )
                });
            }
        }
    }
    reported.len()
}

/// Ok appends no final read of their key contains.
fn lost_appends(core: &Core<'_>, writes: &[u32], finals: &[u32], found: &mut Found) {
    let present: HashSet<u32> = finals.iter().flat_map(|r| list(&core.state(*r))).copied().collect();
    for &w in writes {
        if !present.contains(&w) {
            found.push(|| {
                let r = finals[0];
                let sentence = format!(
                    "{}, but no final read of {} contains it ({} final reads, e.g. {}).",
                    explain::p_wrote(core, w),
                    core.key(core.writes[w as usize].key),
                    finals.len(),
                    explain::p_read(core, r)
                );
                explain::anomaly(
                    core,
                    "lost-write",
                    core.writes[w as usize].key,
                    &[core.wop(w), core.rop(r)],
                    sentence,
                )
            });
        }
    }
}

/// Ok register writes provably newer than every final value. Returns false
/// when the key cannot be judged.
fn lost_register_writes(core: &Core<'_>, k: u32, writes: &[u32], finals: &[u32], found: &mut Found) -> bool {
    // The newest final value: the one whose write completed last.
    let mut newest: Option<(u64, u32)> = None;
    for &r in finals {
        let State::Reg(x) = core.state(r) else {
            return false;
        };
        let t = match x {
            NONE => 0,
            x if core.wop(x).outcome == Outcome::Ok => core.wop(x).complete_time.unwrap_or(u64::MAX),
            _ => return false,
        };
        if newest.is_none_or(|(nt, _)| t >= nt) {
            newest = Some((t, r));
        }
    }
    let Some((_, r)) = newest else { return false };
    let State::Reg(x) = core.state(r) else {
        return false;
    };
    let lost: Vec<u32> = writes
        .iter()
        .copied()
        .filter(|&w| super::order::Orders::older(core, x, w))
        .collect();
    let Some(&first) = lost.iter().min_by_key(|&&w| core.wop(w).invoke_time) else {
        return true;
    };
    found.push(|| report_register(core, k, first, r, x, lost.len()));
    true
}

fn report_register(core: &Core<'_>, k: u32, w: u32, r: u32, x: u32, count: usize) -> Anomaly {
    let after = match x {
        NONE => String::new(),
        x => format!(
            ", after {} was written (op {}, {})",
            explain::show(core.wvalue(x)),
            core.wop(x).invoke_index,
            explain::ended(core.wop(x))
        ),
    };
    let sentence = format!(
        "{}{}; yet in the final reads, {}: the acknowledged write is lost.",
        explain::p_wrote(core, w),
        after,
        explain::p_read(core, r),
    );
    let mut ops = vec![core.wop(w), core.rop(r)];
    ops.extend(explain::wop_opt(core, x));
    let mut an = explain::anomaly(core, "lost-write", k, &ops, sentence);
    an.details = json!({"lost_on_key": count});
    an
}
