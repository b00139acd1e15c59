//! Each isolation level on a one-node core driven by hand: the
//! interleavings that make its permitted anomalies happen, and the ones it
//! must refuse, decided by when the test lets the disk report a commit.

use super::*;
use crate::config::Settings;
use crate::state::{Command, TxnOp};
use crate::wal::Durable;
use serde_json::json;

/// A one-node group (it leads at once, its noop at lsn 1) whose disk
/// reports only when the test says so.
pub(super) struct Lab {
    pub(super) core: Core,
    now_ms: u64,
    pub(super) answers: BTreeMap<u64, Answer>,
    pub(super) appended: Vec<crate::state::Entry>,
}

impl Lab {
    pub(super) fn new(settings: &str) -> Lab {
        Lab::recovered(settings, Recovered::default())
    }

    /// A one-node group restarted on what its disk held.
    pub(super) fn recovered(settings: &str, rec: Recovered) -> Lab {
        let cfg = CoreConfig {
            node: "n1".into(),
            shard: 0,
            members: vec!["n1".into()],
            initial_leader: "n1".into(),
            settings: Settings::parse(&format!("failover=off,{settings}")).unwrap(),
            read_bytes_max: 1 << 20,
        };
        let mut core = Core::new(cfg, rec, 7, 0);
        core.start(0);
        let mut lab = Lab {
            core,
            now_ms: 0,
            answers: BTreeMap::new(),
            appended: Vec::new(),
        };
        lab.sync(1);
        lab
    }

    /// Submits a transaction as request `token` at `at_ms`.
    fn txn(&mut self, at_ms: u64, token: u64, ops: Vec<TxnOp>) {
        self.submit(at_ms, token, Op::Txn { ops });
    }

    /// Submits `op` as request `token` at `at_ms`.
    pub(super) fn submit(&mut self, at_ms: u64, token: u64, op: Op) {
        self.now_ms = at_ms;
        self.core.step(at_ms, Input::Client(Request::new(token, token, op)));
        self.collect();
    }

    /// One batch end at `at_ms`: each transaction due takes a micro-op.
    pub(super) fn flush(&mut self, at_ms: u64) {
        self.now_ms = at_ms;
        self.core.flush(at_ms);
        self.collect();
    }

    /// The disk reports everything appended so far durable, then a batch end.
    pub(super) fn sync(&mut self, at_ms: u64) {
        let lsn = self.core.status().last_lsn;
        self.core.step(at_ms, Input::Durable(Durable { gen: 0, lsn }));
        self.flush(at_ms);
    }

    fn collect(&mut self) {
        for o in self.core.take_outputs() {
            match o {
                Output::Answer { token, answer } => assert!(self.answers.insert(token, answer).is_none()),
                Output::Wal(crate::wal::WalCmd::Append(entries)) => self.appended.extend(entries),
                _ => {}
            }
        }
    }

    /// The answer to `token` (which must have come).
    pub(super) fn answer(&self, token: u64) -> &Answer {
        self.answers
            .get(&token)
            .unwrap_or_else(|| panic!("no answer to {token}"))
    }
}

pub(super) fn r(key: &str) -> TxnOp {
    TxnOp::Read { key: key.into() }
}

fn w(key: &str, v: i64) -> TxnOp {
    TxnOp::Write {
        key: key.into(),
        value: v.into(),
    }
}

pub(super) fn append(key: &str, v: i64) -> TxnOp {
    TxnOp::Append {
        key: key.into(),
        value: v.into(),
    }
}

/// T2 writes x and y and is proposed; T1 reads x before T2 commits and y
/// after. Returns T1's answer (with txn_step_ms=5 to space T1's reads).
fn read_skew_schedule(isolation: &str) -> Answer {
    let mut lab = Lab::new(&format!("isolation={isolation},txn_step_ms=5"));
    lab.txn(1, 2, vec![w("x", 1), w("y", 1)]);
    lab.flush(1);
    lab.flush(6);
    lab.txn(7, 1, vec![r("x"), r("y")]);
    lab.flush(7);
    lab.sync(8);
    assert_eq!(lab.answer(2).outcome, Outcome::Ok, "T2 committed between T1's reads");
    lab.flush(12);
    lab.sync(13);
    lab.answer(1).clone()
}

#[test]
fn read_committed_shows_read_skew_and_never_an_uncommitted_write() {
    let t1 = read_skew_schedule("read-committed");
    assert_eq!(t1.outcome, Outcome::Ok);
    // x read before T2 committed (its proposed write was not visible: no
    // G1), y after: a fractured view of T2.
    assert_eq!(t1.value, json!([["r", "x", null], ["r", "y", 1]]));
}

#[test]
fn snapshot_reads_one_snapshot_in_the_same_interleaving() {
    let t1 = read_skew_schedule("snapshot");
    assert_eq!(t1.value, json!([["r", "x", null], ["r", "y", null]]));
}

#[test]
fn serializable_reads_all_or_nothing_of_a_transaction() {
    for iso in ["serializable", "strict-serializable"] {
        let t1 = read_skew_schedule(iso);
        assert_eq!(t1.outcome, Outcome::Ok, "{iso}: {t1:?}");
        let v = &t1.value;
        assert_eq!(v[0][2], v[1][2], "{iso}: T1 saw part of T2: {v}");
    }
}

/// T1 and T2 each read x and y, then T1 writes x and T2 writes y, both
/// running at once. Returns both answers.
fn write_skew_schedule(isolation: &str) -> (Answer, Answer) {
    let mut lab = Lab::new(&format!("isolation={isolation}"));
    lab.txn(2, 1, vec![r("x"), r("y"), w("x", 1)]);
    lab.txn(2, 2, vec![r("x"), r("y"), w("y", 2)]);
    for t in 2..6 {
        lab.flush(t);
    }
    lab.sync(7);
    (lab.answer(1).clone(), lab.answer(2).clone())
}

#[test]
fn snapshot_allows_write_skew() {
    let (t1, t2) = write_skew_schedule("snapshot");
    assert_eq!((t1.outcome, t2.outcome), (Outcome::Ok, Outcome::Ok), "{t1:?} {t2:?}");
    assert_eq!(t1.value, json!([["r", "x", null], ["r", "y", null], ["w", "x", 1]]));
    assert_eq!(t2.value, json!([["r", "x", null], ["r", "y", null], ["w", "y", 2]]));
}

#[test]
fn serializable_refuses_write_skew() {
    let (t1, t2) = write_skew_schedule("serializable");
    assert_eq!((t1.outcome, t2.outcome), (Outcome::Ok, Outcome::Ok));
    // Executed in log order: T2 runs after T1 and sees its write.
    assert_eq!(t2.value, json!([["r", "x", 1], ["r", "y", null], ["w", "y", 2]]));
}

/// Two transactions append to x concurrently, each after reading it.
fn concurrent_appends(isolation: &str) -> Lab {
    let mut lab = Lab::new(&format!("isolation={isolation}"));
    lab.txn(2, 1, vec![r("x"), append("x", 1)]);
    lab.txn(2, 2, vec![r("x"), append("x", 2)]);
    lab.flush(2);
    lab.flush(3);
    lab.sync(4);
    lab
}

#[test]
fn snapshot_aborts_the_second_committer_of_a_key() {
    let lab = concurrent_appends("snapshot");
    assert_eq!(lab.answer(1).outcome, Outcome::Ok);
    let t2 = lab.answer(2);
    assert_eq!(t2.outcome, Outcome::Fail);
    assert!(
        t2.error
            .as_deref()
            .unwrap()
            .starts_with("aborted: first-committer-wins"),
        "{t2:?}"
    );
    assert_eq!(
        lab.core.state().get("x"),
        json!([1]),
        "the aborted append left no trace"
    );
}

#[test]
fn read_committed_lets_both_writers_commit() {
    let lab = concurrent_appends("read-committed");
    assert_eq!(
        (lab.answer(1).outcome, lab.answer(2).outcome),
        (Outcome::Ok, Outcome::Ok)
    );
    assert_eq!(lab.core.state().get("x"), json!([1, 2]));
    // Both read x empty: neither saw the other (a lost update, allowed).
    assert_eq!(lab.answer(2).value[0], json!(["r", "x", null]));
}

#[test]
fn a_transaction_commits_as_one_entry_and_reads_its_own_writes() {
    for iso in ["read-committed", "snapshot", "serializable"] {
        let mut lab = Lab::new(&format!("isolation={iso}"));
        lab.txn(2, 1, vec![append("x", 1), r("x"), w("y", 5), r("y")]);
        for t in 2..7 {
            lab.flush(t);
        }
        lab.sync(8);
        let t1 = lab.answer(1);
        assert_eq!(
            t1.value,
            json!([["append", "x", 1], ["r", "x", [1]], ["w", "y", 5], ["r", "y", 5]]),
            "{iso}"
        );
        let txns: Vec<_> = lab
            .appended
            .iter()
            .filter(|e| matches!(e.cmd, Command::Txn(_)))
            .collect();
        assert_eq!(txns.len(), 1, "{iso}: one log entry per transaction");
    }
}

#[test]
fn a_transaction_not_committed_by_its_deadline_or_leadership_fails() {
    let mut lab = Lab::new("isolation=snapshot,request_timeout_ms=100,txn_step_ms=1000");
    lab.txn(2, 1, vec![r("x"), w("x", 1)]);
    lab.flush(2);
    lab.core.step(200, Input::Tick);
    lab.collect();
    let t1 = lab.answer(1);
    assert_eq!(
        t1.outcome,
        Outcome::Fail,
        "never proposed, so certainly not committed: {t1:?}"
    );
    assert_eq!(lab.core.txns.versions.len(), 0, "the snapshot's versions went with it");
}

#[test]
fn follower_reads_serve_a_read_only_transaction_from_the_replica() {
    let mut lab = Lab::new("isolation=serializable,reads=follower");
    lab.txn(2, 1, vec![w("x", 1)]);
    lab.flush(2);
    lab.txn(3, 2, vec![r("x")]);
    assert_eq!(
        lab.answer(2).value,
        json!([["r", "x", null]]),
        "answered at once, before the commit"
    );
    lab.sync(4);
    assert_eq!(lab.answer(1).outcome, Outcome::Ok);
    // Strict serializability sends the same read through the leader's read index.
    let mut strict = Lab::new("isolation=strict-serializable,reads=follower");
    strict.txn(2, 1, vec![r("x")]);
    assert!(!strict.answers.contains_key(&1), "waits for the leader's confirmation");
    strict.flush(3);
    assert_eq!(strict.answer(1).outcome, Outcome::Ok);
}

#[tokio::test]
async fn a_transaction_entry_survives_the_wal_and_replays_to_the_same_state() {
    use crate::wal::{self, FsyncPolicy, WalCmd};
    let mut lab = Lab::new("isolation=snapshot");
    lab.txn(2, 1, vec![append("x", 1), w("y", 2)]);
    lab.flush(2);
    lab.flush(3);
    lab.sync(4);
    assert_eq!(lab.answer(1).outcome, Outcome::Ok);
    let dir = tempfile::tempdir().unwrap();
    let rec = wal::recover(dir.path(), FsyncPolicy::Always).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let writer = wal::start_writer(dir.path(), &rec, FsyncPolicy::Always, "t", tx).unwrap();
    let last = lab.appended.last().unwrap().lsn;
    writer.send(WalCmd::Append(lab.appended.clone()));
    loop {
        let d = tokio::time::timeout(std::time::Duration::from_secs(30), rx.recv()).await;
        if d.expect("the writer reports in time").expect("writer alive").lsn >= last {
            break;
        }
    }
    drop(writer);
    let rec = wal::recover(dir.path(), FsyncPolicy::Always).unwrap();
    assert_eq!(
        rec.entries, lab.appended,
        "the transaction record reads back as written"
    );
    let mut sm = crate::state::StateMachine::new();
    for e in &rec.entries {
        sm.apply_at(e.lsn, &e.cmd);
    }
    assert_eq!(&sm, lab.core.state(), "replaying the log rebuilds the same state");
    assert_eq!(sm.get("x"), json!([1]));
}

#[test]
fn records_written_before_transactions_still_read() {
    let old = r#"{"lsn":3,"epoch":1,"cmd":{"c":"append","key":"k","value":1}}"#;
    let e: crate::state::Entry = serde_json::from_str(old).unwrap();
    assert_eq!(e.cmd.key(), Some("k"));
    let new = serde_json::to_string(&Command::Txn(crate::state::TxnCommit {
        snapshot_lsn: Some(2),
        ops: vec![append("x", 1)],
    }))
    .unwrap();
    assert_eq!(
        new,
        r#"{"c":"txn","snapshot_lsn":2,"ops":[{"f":"append","key":"x","value":1}]}"#
    );
}
