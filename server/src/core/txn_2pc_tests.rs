//! A participant shard's side of two-phase commit on a one-node core
//! driven by hand: prepare, commit and abort as log entries; requests that
//! conflict with a prepared lock parked (bounded) rather than proposed;
//! and a prepared piece that outlives a restart, named for recovery and
//! resolved then.

use super::txn_tests::{append, r, Lab};
use super::*;
use crate::state::{Command, TxnOp};
use serde_json::json;

fn prepare(txn: &str, ops: Vec<TxnOp>) -> Op {
    Op::TwoPhase(TwoPhaseOp::Prepare {
        txn: txn.into(),
        home: 0,
        ops,
    })
}

fn resolve(txn: &str, commit: bool) -> Op {
    Op::TwoPhase(TwoPhaseOp::Resolve {
        txn: txn.into(),
        commit,
    })
}

fn read(key: &str) -> Op {
    Op::Read { key: key.into() }
}

#[test]
fn a_prepared_piece_answers_its_reads_and_its_writes_appear_only_at_commit() {
    let mut lab = Lab::new("");
    lab.submit(2, 1, prepare("t1", vec![append("x", 1), r("x"), r("y")]));
    lab.sync(3);
    let a = lab.answer(1);
    assert_eq!(a.outcome, Outcome::Ok, "{a:?}");
    assert_eq!(a.value, json!([["append", "x", 1], ["r", "x", [1]], ["r", "y", null]]));
    assert_eq!(
        lab.core.state().get("x"),
        serde_json::Value::Null,
        "hidden until commit"
    );
    assert!(
        matches!(lab.appended.last().unwrap().cmd, Command::Prepare(_)),
        "logged"
    );
    lab.submit(4, 2, resolve("t1", true));
    lab.sync(5);
    assert_eq!(lab.answer(2).outcome, Outcome::Ok);
    assert_eq!(lab.core.state().get("x"), json!([1]));
    // An aborted piece leaves nothing.
    lab.submit(6, 3, prepare("t2", vec![append("x", 2)]));
    lab.sync(7);
    lab.submit(8, 4, resolve("t2", false));
    lab.sync(9);
    assert_eq!(lab.core.state().get("x"), json!([1]));
    assert!(!lab.core.state().two_phase().has_locks());
}

#[test]
fn a_conflicting_transaction_waits_for_the_lock_and_commits_after_it() {
    let mut lab = Lab::new("");
    lab.submit(2, 1, prepare("t1", vec![append("x", 1)]));
    lab.sync(3);
    let logged = lab.appended.len();
    // A transaction appending to x, and a leader read of x: both wait.
    lab.submit(
        4,
        2,
        Op::Txn {
            ops: vec![append("x", 2)],
        },
    );
    lab.submit(4, 3, read("x"));
    lab.sync(5);
    lab.sync(50);
    assert!(
        !lab.answers.contains_key(&2) && !lab.answers.contains_key(&3),
        "both wait"
    );
    assert_eq!(lab.appended.len(), logged, "the waiting transaction was not proposed");
    lab.submit(60, 4, resolve("t1", true));
    lab.sync(61);
    lab.sync(62);
    lab.sync(63);
    assert_eq!(lab.answer(2).outcome, Outcome::Ok, "{:?}", lab.answer(2));
    assert_eq!(lab.core.state().get("x"), json!([1, 2]), "after the prepared write");
    assert_eq!(lab.answer(3).value, json!([1]), "the read waited for the commit");
}

#[test]
fn a_conflicting_prepare_waits_a_bounded_time_then_fails() {
    let mut lab = Lab::new("");
    lab.submit(2, 1, prepare("t1", vec![r("x")]));
    lab.sync(3);
    lab.submit(4, 2, prepare("t2", vec![append("x", 2)]));
    lab.sync(5);
    assert!(!lab.answers.contains_key(&2), "waits while t1 holds its read lock");
    lab.core.step(4 + PREPARE_LOCK_WAIT_MS, Input::Tick);
    lab.flush(4 + PREPARE_LOCK_WAIT_MS);
    let a = lab.answer(2);
    assert_eq!(a.outcome, Outcome::Fail);
    assert!(
        a.error.as_deref().unwrap().starts_with("aborted: key x is read-locked"),
        "{a:?}"
    );
    // Another reader shares the lock at once.
    lab.submit(200, 3, prepare("t3", vec![r("x")]));
    lab.sync(201);
    assert_eq!(lab.answer(3).outcome, Outcome::Ok);
}

#[test]
fn a_prepared_piece_survives_a_restart_and_is_named_for_recovery_then_resolved() {
    let mut lab = Lab::new("");
    lab.submit(2, 1, prepare("t1", vec![append("x", 1)]));
    lab.sync(3);
    assert_eq!(lab.answer(1).outcome, Outcome::Ok);
    // The disk held the log; the node restarts on it with no decision.
    let rec = Recovered {
        entries: lab.appended.clone(),
        ..Recovered::default()
    };
    let mut lab = Lab::recovered("", rec);
    lab.sync(2);
    assert!(lab.core.state().two_phase().has_locks(), "the replay restored the lock");
    lab.submit(
        3,
        7,
        Op::Txn {
            ops: vec![append("x", 2)],
        },
    );
    lab.sync(4);
    assert!(!lab.answers.contains_key(&7), "and it still holds");
    assert!(lab.core.stale_prepared(5, 1000, 8).is_empty(), "not stale yet");
    assert_eq!(lab.core.stale_prepared(1005, 1000, 8), vec![("t1".to_string(), 0)]);
    // What recovery does: the home's decision (abort), then the resolve.
    let decide = Op::TwoPhase(TwoPhaseOp::Decide {
        txn: "t1".into(),
        commit: false,
    });
    lab.submit(1006, 8, decide);
    lab.sync(1007);
    assert_eq!(lab.answer(8).value, json!(false));
    lab.submit(1008, 9, resolve("t1", false));
    lab.sync(1009);
    lab.sync(1010);
    lab.sync(1011);
    assert!(!lab.core.state().two_phase().has_locks());
    assert_eq!(lab.answer(7).outcome, Outcome::Ok, "the waiting transaction went ahead");
    assert_eq!(
        lab.core.state().get("x"),
        json!([2]),
        "the aborted append never appeared"
    );
}
