//! The multi-register model on a history that mixes single-key writes and
//! reads with multi-key `txn` reads, as faultline's multi-key workload
//! records it: a transaction's read of a value a single-key write wrote
//! must find that write (it once did not: single-key operations were left
//! out, and a safe run read as a garbage read).

use faultline_checkers::linear::{check, Config, ModelSpec, NilReads};
use faultline_checkers::Validity;
use faultline_histories::{Event, EventType, History, Process, F};
use serde_json::{json, Value};

fn event(i: u64, p: u64, ty: EventType, f: F, key: Option<&str>, v: Value) -> Event {
    let ev = Event::new(i, i * 1_000_000, Process::Client(p), ty, f, v);
    match key {
        Some(k) => ev.with_key(k),
        None => ev,
    }
}

/// A write of x=1 by p0, then p1's snapshot read of x and y seeing `x_read`,
/// then a single-key read of y by p2 seeing `y_read`.
fn history(x_read: Value, y_read: Value) -> History {
    use EventType::{Invoke, Ok};
    History::from_events(vec![
        event(0, 0, Invoke, F::Write, Some("x"), json!(1)),
        event(1, 0, Ok, F::Write, Some("x"), json!(1)),
        event(2, 1, Invoke, F::Txn, None, json!([["r", "x", null], ["r", "y", null]])),
        event(3, 1, Ok, F::Txn, None, json!([["r", "x", x_read], ["r", "y", null]])),
        event(4, 2, Invoke, F::Read, Some("y"), Value::Null),
        event(5, 2, Ok, F::Read, Some("y"), y_read),
    ])
    .expect("well formed")
}

fn verdict(h: &History) -> (Validity, usize) {
    let config = Config {
        model: ModelSpec::MultiRegister {
            initial: Value::Null,
            nil_reads: NilReads::Value,
        },
        threads: 1,
        ..Config::default()
    };
    let v = check(h, &config);
    (v.valid, v.ops)
}

#[test]
fn a_transaction_reads_what_a_single_key_write_wrote() {
    assert_eq!(verdict(&history(json!(1), Value::Null)), (Validity::Valid, 3));
}

#[test]
fn a_stale_or_unwritten_value_is_still_caught() {
    assert_eq!(
        verdict(&history(Value::Null, Value::Null)).0,
        Validity::Invalid,
        "x=1 was written before the read began"
    );
    assert_eq!(
        verdict(&history(json!(2), Value::Null)).0,
        Validity::Invalid,
        "nobody wrote x=2"
    );
    assert_eq!(
        verdict(&history(json!(1), json!(5))).0,
        Validity::Invalid,
        "nobody wrote y=5"
    );
}
