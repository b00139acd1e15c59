//! Lost writes and convergence on a transactional history: they judge the
//! micro-ops inside transactions (an acknowledged append inside a committed
//! transaction that no final read holds is a lost write) and say valid only
//! when they looked, while covering no transaction, whose isolation is the
//! transactional checker's to judge. The session guarantees still do not
//! vouch for micro-ops.

use std::collections::BTreeMap;

use faultline_checkers::session::check_all;
use faultline_checkers::{Validity, Verdict};
use faultline_histories::{Event, EventType, History, Process, F};
use serde_json::{json, Value};

/// A history of two committed transactions appending to `x` and `y`, then
/// a final read-only transaction on each of two nodes' worth of processes,
/// returning `finals` (one list of micro-ops per final read).
fn history(finals: &[Value]) -> History {
    let ev = |i: u64, p: u64, kind, v: Value| Event::new(i, i * 10, Process::Client(p), kind, F::Txn, v);
    let mut events = vec![
        ev(0, 0, EventType::Invoke, json!([["append", "x", 1], ["r", "y", null]])),
        ev(1, 0, EventType::Ok, json!([["append", "x", 1], ["r", "y", []]])),
        ev(2, 1, EventType::Invoke, json!([["append", "y", 2], ["append", "x", 3]])),
        ev(3, 1, EventType::Ok, json!([["append", "y", 2], ["append", "x", 3]])),
    ];
    for (n, out) in finals.iter().enumerate() {
        let (i, p) = (4 + 2 * n as u64, 10 + n as u64);
        let read = json!([["r", "x", null], ["r", "y", null]]);
        events.push(Event {
            is_final: true,
            ..ev(i, p, EventType::Invoke, read)
        });
        events.push(Event {
            is_final: true,
            ..ev(i + 1, p, EventType::Ok, out.clone())
        });
    }
    History::from_events(events).unwrap()
}

fn judged(h: &History) -> BTreeMap<&'static str, Verdict> {
    let names = ["lost-writes", "convergence", "read-your-writes", "monotonic-reads"];
    check_all(h, &names).unwrap().into_iter().collect()
}

#[test]
fn a_lost_committed_append_is_a_lost_write() {
    let lost = json!([["r", "x", [1]], ["r", "y", [2]]]);
    let v = &judged(&history(&[lost.clone(), lost]))["lost-writes"];
    assert_eq!(v.valid, Validity::Invalid, "{v:?}");
    assert_eq!(v.anomalies.len(), 1);
    let a = &v.anomalies[0];
    assert_eq!((a.kind.as_str(), a.key.as_deref()), ("lost-write", Some("x")));
    assert_eq!(a.ops[0].index, 2, "the transaction that appended 3");
    assert!(a.explanation.contains("appended 3 to x"), "{}", a.explanation);
}

#[test]
fn kept_appends_are_judged_valid_and_no_transaction_is_covered() {
    let kept = json!([["r", "x", [1, 3]], ["r", "y", [2]]]);
    let verdicts = judged(&history(&[kept.clone(), kept]));
    for name in ["lost-writes", "convergence"] {
        let v = &verdicts[name];
        assert!(v.applies(), "{name} looked at the micro-ops: {v:?}");
        assert_eq!(v.valid, Validity::Valid, "{name}");
        assert!(
            v.details["micro_ops_judged"].as_u64().unwrap() > 0,
            "{name}: {}",
            v.details
        );
        assert!(v.coverage.is_empty(), "{name} covers no transaction");
    }
    assert_eq!(
        verdicts["lost-writes"].details["micro_ops_judged"], 7,
        "3 appends and the 4 reads of the final transactions"
    );
    for name in ["read-your-writes", "monotonic-reads"] {
        assert!(!verdicts[name].applies(), "{name} vouches for no micro-op");
    }
}

#[test]
fn final_reads_that_disagree_do_not_converge() {
    let a = json!([["r", "x", [1, 3]], ["r", "y", [2]]]);
    let b = json!([["r", "x", [3, 1]], ["r", "y", [2]]]);
    let v = &judged(&history(&[a, b]))["convergence"];
    assert_eq!(v.valid, Validity::Invalid, "{v:?}");
    assert_eq!(v.anomalies[0].key.as_deref(), Some("x"));
}
