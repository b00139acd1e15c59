//! The fast session checkers against the obvious ones (STYLE.md, rule 11).
//!
//! Proptest builds small register histories with overlapping operations,
//! indeterminate writes and stale reads, and compares which reads the
//! checkers flag with a brute-force reading of the definitions, pair by
//! pair:
//! - read-your-writes: read `r` by process `p` is flagged exactly when some
//!   earlier ok write of `p` to the key, in another operation, provably
//!   follows the write `r` saw (or `r` saw the initial value);
//! - monotonic reads: read `r` is flagged exactly when some earlier read of
//!   `p` of the key saw a write that the write `r` saw provably precedes.
//!
//! "Provably precedes" is the register order of `HISTORY_FORMAT.md`: write
//! `a` completed ok before write `b` was invoked; the initial value precedes
//! every write.

use std::collections::BTreeSet;

use faultline_checkers::session;
use faultline_histories::{Event, EventType, History, Op, Outcome, Process, F};
use proptest::prelude::*;
use serde_json::{json, Value};

/// One generated operation: process, is-write, value (writes) or index of
/// the write whose value is read (reads; `None`: the initial value), start,
/// length, and whether a write ends `info`.
type Spec = (u64, bool, Option<usize>, u64, u64, bool);

fn spec() -> impl Strategy<Value = Spec> {
    (
        0u64..3,
        any::<bool>(),
        proptest::option::of(0usize..8),
        0u64..40,
        1u64..6,
        proptest::bool::weighted(0.1),
    )
}

/// Builds a valid history: one operation in flight per process (a process's
/// next operation starts after its previous one ended; after an `info` the
/// process is retired and its worker continues as a new process).
fn history(specs: &[Spec]) -> History {
    let mut free_at = [0u64; 3];
    let mut generation = [0u64; 3];
    let mut written = Vec::new();
    let mut ops = Vec::new();
    for (i, &(p, is_write, seen, start, len, info)) in specs.iter().enumerate() {
        let t0 = start.max(free_at[p as usize]) * 10 + i as u64 % 10;
        let t1 = t0 + len * 10;
        free_at[p as usize] = t1 / 10 + 1;
        let process = Process::Client(p + 3 * generation[p as usize]);
        if is_write {
            let v = 100 + i as i64;
            written.push(v);
            let kind = if info { EventType::Info } else { EventType::Ok };
            ops.push((t0, t1, process, F::Write, json!(v), json!(v), kind));
            if info {
                generation[p as usize] += 1;
            }
        } else {
            let v = seen.and_then(|s| written.get(s)).map_or(Value::Null, |v| json!(v));
            ops.push((t0, t1, process, F::Read, Value::Null, v, EventType::Ok));
        }
    }
    let mut events = Vec::new();
    for (t0, t1, process, f, input, output, kind) in ops {
        events.push(Event::new(0, t0, process, EventType::Invoke, f.clone(), input).with_key("x"));
        events.push(Event::new(0, t1, process, kind, f, output).with_key("x"));
    }
    events.sort_by_key(|e| (e.time, e.kind != EventType::Invoke));
    for (i, e) in events.iter_mut().enumerate() {
        e.index = i as u64;
    }
    History::from_events(events).expect("valid by construction")
}

/// The write op whose value a read returned (`None`: initial value or a
/// value nobody wrote, which the checkers set aside).
fn writer<'h>(h: &'h History, read: &Op) -> Option<Option<&'h Op>> {
    if read.output.is_null() {
        return Some(None);
    }
    h.ops
        .iter()
        .find(|w| w.f == F::Write && w.input == read.output)
        .map(Some)
}

/// `a` provably precedes `b` (`None`: the initial value).
fn precedes(a: Option<&Op>, b: &Op) -> bool {
    match a {
        None => true,
        Some(a) => a.outcome == Outcome::Ok && a.complete_time.is_some_and(|t| t < b.invoke_time),
    }
}

fn reads(h: &History) -> Vec<&Op> {
    h.ops
        .iter()
        .filter(|o| o.f == F::Read && o.outcome == Outcome::Ok)
        .collect()
}

fn brute_ryw(h: &History) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    for r in reads(h) {
        let Some(saw) = writer(h, r) else { continue };
        let own = h.ops.iter().filter(|w| {
            w.f == F::Write && w.outcome == Outcome::Ok && w.process == r.process && w.invoke_index < r.invoke_index
        });
        if own
            .into_iter()
            .any(|w| precedes(saw, w) && saw.is_none_or(|s| s.invoke_index != w.invoke_index))
        {
            out.insert(r.invoke_index);
        }
    }
    out
}

fn brute_mr(h: &History) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    let all = reads(h);
    for r in &all {
        let Some(saw) = writer(h, r) else { continue };
        let earlier = all
            .iter()
            .filter(|e| e.process == r.process && e.invoke_index < r.invoke_index);
        for e in earlier {
            if let Some(Some(before)) = writer(h, e) {
                if precedes(saw, before) && saw.is_none_or(|s| s.invoke_index != before.invoke_index) {
                    out.insert(r.invoke_index);
                }
            }
        }
    }
    out
}

/// The reads a checker flagged: the last operation of each anomaly that is
/// a read (the read that went wrong comes after the one it contradicts).
fn flagged(h: &History, name: &str) -> BTreeSet<u64> {
    let (_, v) = session::check_all(h, &[name])
        .expect("known name")
        .pop()
        .expect("one verdict");
    v.anomalies
        .iter()
        .map(|a| {
            let ops: Vec<_> = a.ops.iter().filter(|o| o.f == "read").map(|o| o.index).collect();
            *ops.iter().max().expect("an anomaly names a read")
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn read_your_writes_flags_exactly_what_the_definition_does(specs in proptest::collection::vec(spec(), 1..16)) {
        let h = history(&specs);
        prop_assert_eq!(flagged(&h, "read-your-writes"), brute_ryw(&h));
    }

    #[test]
    fn monotonic_reads_flags_exactly_what_the_definition_does(specs in proptest::collection::vec(spec(), 1..16)) {
        let h = history(&specs);
        prop_assert_eq!(flagged(&h, "monotonic-reads"), brute_mr(&h));
    }
}

/// The generator does produce violations, so the comparisons above are not
/// between two empty sets.
#[test]
fn the_generated_histories_break_both_guarantees_sometimes() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = proptest::collection::vec(spec(), 1..16);
    let (mut ryw, mut mr) = (0, 0);
    for _ in 0..200 {
        let h = history(&strategy.new_tree(&mut runner).expect("a tree").current());
        ryw += usize::from(!brute_ryw(&h).is_empty());
        mr += usize::from(!brute_mr(&h).is_empty());
    }
    assert!(ryw >= 10 && mr >= 10, "violations in 200 histories: ryw {ryw}, mr {mr}");
}
