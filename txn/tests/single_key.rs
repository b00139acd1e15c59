//! Single-key operations beside transactions, as faultline's multi-key
//! workload records them (writes of one key, snapshot reads of several in
//! a `txn`): each single-key operation is a transaction of one micro-op,
//! so a transaction's read of a single-key write finds it. Before, the
//! writes were skipped and every such read was called a garbage read.

use faultline_histories::{Event, EventType, History, Process, F};
use faultline_txn::{check, Config, Validity};
use serde_json::{json, Value};

fn ev(i: u64, p: u64, ty: EventType, f: F, key: Option<&str>, v: Value) -> Event {
    let e = Event::new(i, i * 1_000_000, Process::Client(p), ty, f, v);
    match key {
        Some(k) => e.with_key(k),
        None => e,
    }
}

/// p0 writes x=1, then p1 reads x and y in one txn seeing `x_read`, then
/// p2 reads y alone seeing `y_read`.
fn history(x_read: Value, y_read: Value) -> History {
    use EventType::{Invoke, Ok};
    History::from_events(vec![
        ev(0, 0, Invoke, F::Write, Some("x"), json!(1)),
        ev(1, 0, Ok, F::Write, Some("x"), json!(1)),
        ev(2, 1, Invoke, F::Txn, None, json!([["r", "x", null], ["r", "y", null]])),
        ev(3, 1, Ok, F::Txn, None, json!([["r", "x", x_read], ["r", "y", null]])),
        ev(4, 2, Invoke, F::Read, Some("y"), Value::Null),
        ev(5, 2, Ok, F::Read, Some("y"), y_read),
    ])
    .expect("well formed")
}

fn kinds(h: &History) -> (Validity, Vec<String>) {
    let a = check(h, &Config::default()).expect("checkable");
    (a.valid, a.anomaly_types.clone())
}

#[test]
fn a_transaction_reads_a_single_key_write() {
    assert_eq!(kinds(&history(json!(1), Value::Null)), (Validity::Valid, vec![]));
}

#[test]
fn unwritten_and_stale_values_are_still_found() {
    assert_eq!(
        kinds(&history(json!(2), Value::Null)).1,
        vec!["garbage-read".to_owned()]
    );
    assert_eq!(kinds(&history(json!(1), json!(7))).1, vec!["garbage-read".to_owned()]);
    let (valid, found) = kinds(&history(Value::Null, Value::Null));
    assert_eq!(
        valid,
        Validity::Invalid,
        "x=1 was written before the read began: {found:?}"
    );
}
