//! Transactions in the replicated state machine: the micro-operations a
//! transaction's log entry holds, and how one entry is applied.
//!
//! Promise: a transaction's entry is applied atomically, in log order, the
//! same way on every replica: either every write in it takes effect, at the
//! entry's LSN, or none does (the entry is then `Rejected` with the reason,
//! and the client hears `fail`). Its checks run here, at apply time, so
//! every replica reaches the same verdict without talking to the others:
//! - first-committer-wins (snapshot isolation): an entry that names the
//!   snapshot its reads came from aborts when another entry wrote one of
//!   its keys after that snapshot, so of two concurrent writers of a key
//!   the one earlier in the log commits;
//! - an append to a value that is not a list aborts the whole transaction.
//!
//! Reads in the entry (serializable execution, which runs the whole
//! transaction here, in log order) see the state as of the entry,
//! with the transaction's own earlier writes.

use super::{Applied, StateMachine};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// One micro-operation of a transaction, as the log stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "f")]
pub enum TxnOp {
    /// Append `value` to the list at `key` (absent = empty list).
    #[serde(rename = "append")]
    Append { key: String, value: Value },
    /// Read `key`.
    #[serde(rename = "r")]
    Read { key: String },
    /// Overwrite the register at `key`.
    #[serde(rename = "w")]
    Write { key: String, value: Value },
}

impl TxnOp {
    /// The key it touches.
    pub fn key(&self) -> &str {
        match self {
            TxnOp::Append { key, .. } | TxnOp::Read { key } | TxnOp::Write { key, .. } => key,
        }
    }

    /// Whether it changes state.
    pub fn is_write(&self) -> bool {
        !matches!(self, TxnOp::Read { .. })
    }

    /// The history format's (and the wire's) shape, with a read's result
    /// filled in: `["r", k, v]`, `["append", k, v]`, `["w", k, v]`.
    pub fn completed(&self, read: Value) -> Value {
        match self {
            TxnOp::Append { key, value } => json!(["append", key, value]),
            TxnOp::Read { key } => json!(["r", key, read]),
            TxnOp::Write { key, value } => json!(["w", key, value]),
        }
    }
}

/// A transaction's log entry: one entry per committed transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxnCommit {
    /// Snapshot isolation: the applied LSN the transaction read from. A
    /// write to a key that an entry after this LSN wrote aborts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_lsn: Option<u64>,
    /// Micro-ops applied in order: only the writes of a transaction the
    /// leader executed step by step, every op of one executed here.
    pub ops: Vec<TxnOp>,
}

impl TxnCommit {
    /// The keys it writes (with repeats).
    pub fn written_keys(&self) -> impl Iterator<Item = &str> {
        self.ops.iter().filter(|o| o.is_write()).map(TxnOp::key)
    }
}

/// The value `key` takes after appending `value` to `current`; an error
/// when `current` is not a list.
pub fn appended(key: &str, current: Value, value: &Value) -> Result<Value, String> {
    match current {
        Value::Null => Ok(Value::Array(vec![value.clone()])),
        Value::Array(mut list) => {
            list.push(value.clone());
            Ok(Value::Array(list))
        }
        other => Err(format!("append to a non-list value {other} at key {key}")),
    }
}

impl StateMachine {
    /// Applies a transaction's entry at `lsn` (see the module's promise).
    pub(super) fn apply_txn(&mut self, lsn: u64, t: &TxnCommit) -> Applied {
        if let Some(snapshot) = t.snapshot_lsn {
            if let Some(why) = self.write_conflict(t, snapshot) {
                return Applied::Rejected(why);
            }
        }
        let (done, overlay) = match self.execute(&t.ops) {
            Ok(x) => x,
            Err(why) => return Applied::Rejected(why),
        };
        for (key, value) in overlay {
            self.mark_written(&key, lsn);
            self.data.insert(key, value);
        }
        Applied::Txn(Value::Array(done))
    }

    /// Runs `ops` against the current state without changing it: the
    /// micro-ops with reads filled in (the transaction's own earlier
    /// writes included), and the value each written key would take. An
    /// append to a value that is not a list is an error. Writes go to an
    /// overlay first, so an abort halfway leaves no trace.
    pub(super) fn execute(&self, ops: &[TxnOp]) -> Result<(Vec<Value>, BTreeMap<String, Value>), String> {
        let mut overlay: BTreeMap<String, Value> = BTreeMap::new();
        let mut done = Vec::with_capacity(ops.len());
        for op in ops {
            let key = op.key();
            let current = || overlay.get(key).cloned().unwrap_or_else(|| self.get(key));
            let read = match op {
                TxnOp::Read { .. } => current(),
                TxnOp::Write { value, .. } => {
                    overlay.insert(key.to_string(), value.clone());
                    Value::Null
                }
                TxnOp::Append { value, .. } => {
                    let v = appended(key, current(), value)?;
                    overlay.insert(key.to_string(), v);
                    Value::Null
                }
            };
            done.push(op.completed(read));
        }
        Ok((done, overlay))
    }

    /// First-committer-wins: the reason to abort, when a key this entry
    /// writes was written after its snapshot.
    fn write_conflict(&self, t: &TxnCommit, snapshot: u64) -> Option<String> {
        t.written_keys().find_map(|key| {
            let at = *self.written.get(key)?;
            (at > snapshot).then(|| {
                format!(
                    "aborted: first-committer-wins: key {key} was written at lsn {at}, after this transaction's snapshot at lsn {snapshot}"
                )
            })
        })
    }

    /// The LSN of the last write to `key` (0 when unknown).
    pub fn written_at(&self, key: &str) -> u64 {
        self.written.get(key).copied().unwrap_or(0)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::Command;
    use super::*;
    use proptest::prelude::*;

    fn op_strategy() -> impl Strategy<Value = TxnOp> {
        let key = (0u8..4).prop_map(|k| format!("k{k}"));
        prop_oneof![
            (key.clone(), 0i64..9).prop_map(|(key, v)| TxnOp::Append { key, value: v.into() }),
            key.clone().prop_map(|key| TxnOp::Read { key }),
            (key, 0i64..9).prop_map(|(key, v)| TxnOp::Write { key, value: v.into() }),
        ]
    }

    /// The obvious model: run the micro-ops one by one on a copy of the
    /// map, and keep the copy only if none failed.
    fn model_txn(model: &mut BTreeMap<String, Value>, ops: &[TxnOp]) -> Option<Value> {
        let mut copy = model.clone();
        let mut done = Vec::new();
        for op in ops {
            let cur = copy.get(op.key()).cloned().unwrap_or(Value::Null);
            let read = match op {
                TxnOp::Read { .. } => cur,
                TxnOp::Write { key, value } => {
                    copy.insert(key.clone(), value.clone());
                    Value::Null
                }
                TxnOp::Append { key, value } => {
                    let list = appended(key, cur, value).ok()?;
                    copy.insert(key.clone(), list);
                    Value::Null
                }
            };
            done.push(op.completed(read));
        }
        *model = copy;
        Some(Value::Array(done))
    }

    proptest! {
        #[test]
        fn transactions_match_a_one_by_one_model(
            txns in proptest::collection::vec(proptest::collection::vec(op_strategy(), 1..6), 0..40)
        ) {
            let (mut sm, mut model) = (StateMachine::new(), BTreeMap::new());
            for (i, ops) in txns.iter().enumerate() {
                let cmd = Command::Txn(TxnCommit { snapshot_lsn: None, ops: ops.clone() });
                let got = sm.apply_at(i as u64 + 1, &cmd);
                match model_txn(&mut model, ops) {
                    Some(done) => prop_assert_eq!(got, Applied::Txn(done)),
                    None => prop_assert!(matches!(got, Applied::Rejected(_)), "{:?}", got),
                }
                prop_assert_eq!(sm.map(), &model);
            }
        }
    }

    /// An append micro-op (the state tests' shorthand).
    pub(crate) fn append(key: &str, v: i64) -> TxnOp {
        TxnOp::Append {
            key: key.into(),
            value: v.into(),
        }
    }

    /// A read micro-op (the state tests' shorthand).
    pub(crate) fn read(key: &str) -> TxnOp {
        TxnOp::Read { key: key.into() }
    }

    fn txn(snapshot_lsn: Option<u64>, ops: Vec<TxnOp>) -> Command {
        Command::Txn(TxnCommit { snapshot_lsn, ops })
    }

    #[test]
    fn a_transaction_reads_its_own_writes_and_commits_all_at_once() {
        let mut sm = StateMachine::new();
        let r = sm.apply_at(1, &txn(None, vec![append("x", 1), read("x"), append("y", 2)]));
        assert_eq!(
            r,
            Applied::Txn(json!([["append", "x", 1], ["r", "x", [1]], ["append", "y", 2]]))
        );
        assert_eq!((sm.get("x"), sm.get("y")), (json!([1]), json!([2])));
        assert_eq!((sm.written_at("x"), sm.written_at("y")), (1, 1));
    }

    #[test]
    fn an_abort_halfway_leaves_no_trace() {
        let mut sm = StateMachine::new();
        sm.apply_at(
            1,
            &Command::Write {
                key: "s".into(),
                value: 5.into(),
            },
        );
        let r = sm.apply_at(2, &txn(None, vec![append("x", 1), append("s", 2)]));
        assert!(
            matches!(r, Applied::Rejected(ref why) if why.contains("non-list")),
            "{r:?}"
        );
        assert_eq!(sm.get("x"), Value::Null, "the first append did not happen either");
    }

    #[test]
    fn the_first_committer_wins_and_the_second_aborts() {
        let mut sm = StateMachine::new();
        sm.apply_at(
            1,
            &Command::Append {
                key: "x".into(),
                value: 0.into(),
            },
        );
        // Both read the snapshot at lsn 1 and append to x.
        assert!(matches!(
            sm.apply_at(2, &txn(Some(1), vec![append("x", 1)])),
            Applied::Txn(_)
        ));
        let r = sm.apply_at(3, &txn(Some(1), vec![append("x", 2)]));
        assert!(
            matches!(r, Applied::Rejected(ref why) if why.starts_with("aborted: first-committer-wins")),
            "{r:?}"
        );
        // Disjoint keys do not conflict, and a later snapshot does not either.
        assert!(matches!(
            sm.apply_at(4, &txn(Some(1), vec![append("y", 2)])),
            Applied::Txn(_)
        ));
        assert!(matches!(
            sm.apply_at(5, &txn(Some(2), vec![append("x", 3)])),
            Applied::Txn(_)
        ));
        assert_eq!(sm.get("x"), json!([0, 1, 3]));
    }
}
