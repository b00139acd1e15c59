//! The state machine's side of two-phase commit, entry by entry: what a
//! PREPARE locks and hides, what it refuses, and that COMMIT applies the
//! prepared writes atomically while ABORT leaves no trace.

use super::super::txn::tests::{append, read};
use super::super::{Applied, Command, StateMachine, TxnOp};
use super::*;
use serde_json::json;

fn prepare(txn: &str, ops: Vec<TxnOp>) -> Command {
    Command::Prepare(TxnPrepare {
        txn: txn.into(),
        home: 0,
        ops,
    })
}

fn resolve(txn: &str, commit: bool) -> Command {
    Command::Resolve {
        txn: txn.into(),
        commit,
    }
}

fn rejected(a: &Applied, with: &str) -> bool {
    matches!(a, Applied::Rejected(why) if why.starts_with("aborted:") && why.contains(with))
}

#[test]
fn a_prepared_piece_reads_now_hides_its_writes_and_commits_them_at_the_commit_entry() {
    let mut sm = StateMachine::new();
    sm.apply_at(
        1,
        &Command::Append {
            key: "x".into(),
            value: 0.into(),
        },
    );
    let r = sm.apply_at(2, &prepare("t1", vec![append("x", 1), read("x"), read("y")]));
    assert_eq!(
        r,
        Applied::Txn(json!([["append", "x", 1], ["r", "x", [0, 1]], ["r", "y", null]]))
    );
    assert_eq!(sm.get("x"), json!([0]), "no read sees a prepared write");
    assert_eq!(sm.two_phase().prepared().collect::<Vec<_>>(), vec![("t1", 0)]);
    assert_eq!(sm.apply_at(3, &resolve("t1", true)), Applied::Ok);
    assert_eq!(sm.get("x"), json!([0, 1]));
    assert_eq!(sm.written_at("x"), 3, "written at the commit entry's position");
    assert!(!sm.two_phase().has_locks());
}

#[test]
fn locks_refuse_conflicting_prepares_writes_and_transactions_until_the_abort() {
    let mut sm = StateMachine::new();
    assert!(matches!(
        sm.apply_at(1, &prepare("t1", vec![append("x", 1), read("y")])),
        Applied::Txn(_)
    ));
    // x is write-locked, y read-locked.
    assert!(rejected(
        &sm.apply_at(2, &prepare("t2", vec![read("x")])),
        "write-locked"
    ));
    assert!(rejected(
        &sm.apply_at(3, &prepare("t3", vec![append("y", 3)])),
        "read-locked"
    ));
    assert!(
        matches!(sm.apply_at(4, &prepare("t4", vec![read("y")])), Applied::Txn(_)),
        "shared"
    );
    let write_x = Command::Append {
        key: "x".into(),
        value: 9.into(),
    };
    assert!(rejected(&sm.apply_at(5, &write_x), "t1"));
    let txn = Command::Txn(crate::state::TxnCommit {
        snapshot_lsn: None,
        ops: vec![read("x"), append("z", 1)],
    });
    assert!(rejected(&sm.apply_at(6, &txn), "write-locked"));
    assert_eq!(
        sm.get("z"),
        serde_json::Value::Null,
        "the refused transaction left no trace"
    );
    assert_eq!(sm.apply_at(7, &resolve("t1", false)), Applied::Ok);
    assert_eq!(
        sm.get("x"),
        serde_json::Value::Null,
        "the abort dropped the prepared write"
    );
    assert_eq!(sm.apply_at(8, &write_x), Applied::Ok, "the lock went with the abort");
    assert!(
        rejected(&sm.apply_at(9, &prepare("t1", vec![read("q")])), "already"),
        "no second prepare"
    );
}

#[test]
fn a_resolve_before_its_prepare_leaves_a_tombstone_and_the_first_decision_stands() {
    let mut sm = StateMachine::new();
    assert_eq!(sm.apply_at(1, &resolve("late", false)), Applied::Ok);
    assert!(rejected(
        &sm.apply_at(2, &prepare("late", vec![append("x", 1)])),
        "already"
    ));
    assert!(!sm.two_phase().has_locks());
    let decide = |commit| Command::Decide {
        txn: "t".into(),
        commit,
    };
    assert_eq!(sm.apply_at(3, &decide(false)), Applied::Txn(json!(false)));
    assert_eq!(
        sm.apply_at(4, &decide(true)),
        Applied::Txn(json!(false)),
        "the abort stands"
    );
    assert_eq!(sm.two_phase().decision("t"), Some(false));
}

#[test]
fn prepared_state_survives_a_snapshot_and_old_snapshots_still_load() {
    let mut sm = StateMachine::new();
    sm.apply_at(1, &prepare("t1", vec![append("x", 1)]));
    sm.apply_at(
        2,
        &Command::Decide {
            txn: "t1".into(),
            commit: true,
        },
    );
    let back: StateMachine = serde_json::from_slice(&serde_json::to_vec(&sm).unwrap()).unwrap();
    assert_eq!(back, sm);
    let old: StateMachine = serde_json::from_str(r#"{"data":{"a":1}}"#).unwrap();
    assert!(old.two_phase().is_empty());
}

#[test]
fn decisions_and_tombstones_are_bounded() {
    let mut sm = StateMachine::new();
    for i in 0..(KEPT_MAX as u64 + 10) {
        sm.apply_at(
            i + 1,
            &Command::Decide {
                txn: format!("t{i}"),
                commit: true,
            },
        );
    }
    assert!(sm.two_phase().decisions.len() <= KEPT_MAX);
    assert_eq!(sm.two_phase().decision("t0"), None, "the oldest went first");
    assert_eq!(sm.two_phase().decision(&format!("t{}", KEPT_MAX + 9)), Some(true));
}

#[tokio::test]
async fn two_phase_records_survive_the_wal_beside_older_records() {
    use crate::wal::{recover, start_writer, FsyncPolicy, WalCmd};
    let dir = tempfile::tempdir().unwrap();
    let rec = recover(dir.path(), FsyncPolicy::Always).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let w = start_writer(dir.path(), &rec, FsyncPolicy::Always, "t", tx).unwrap();
    let write = Command::Write {
        key: "x".into(),
        value: 0.into(),
    };
    let cmds = [
        write,
        prepare("n1.a.1", vec![append("x", 1)]),
        Command::Decide {
            txn: "n1.a.1".into(),
            commit: true,
        },
        resolve("n1.a.1", true),
    ];
    let entries: Vec<crate::state::Entry> = cmds
        .into_iter()
        .enumerate()
        .map(|(i, cmd)| crate::state::Entry {
            lsn: i as u64 + 1,
            epoch: 1,
            cmd,
        })
        .collect();
    w.send(WalCmd::Append(entries.clone()));
    let wait = std::time::Duration::from_secs(10);
    while tokio::time::timeout(wait, rx.recv()).await.unwrap().unwrap().lsn < 4 {}
    drop(w);
    assert_eq!(recover(dir.path(), FsyncPolicy::Always).unwrap().entries, entries);
}
