//! The replicated state machine and the log entries that drive it.
//!
//! Promise: applying the same entries in the same order gives the same map
//! and the same results on every replica (no clocks, no randomness here), and
//! the map behaves exactly like a `BTreeMap<String, Value>` under write, cas
//! and append (checked by a proptest against that model). Replication
//! decides the order; this module only applies it.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

mod two_phase;
mod txn;

pub use two_phase::{lock_sets, TwoPhase, TxnPrepare, KEPT_MAX, PREPARED_MAX};
pub use txn::{appended, TxnCommit, TxnOp};

/// A write-side operation as stored in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "c", rename_all = "snake_case")]
pub enum Command {
    /// An entry a new leader appends to commit its epoch.
    Noop,
    /// Overwrite a key.
    Write { key: String, value: Value },
    /// Compare and set (expected null = absent).
    Cas { key: String, expected: Value, new: Value },
    /// Append an element to the list at key.
    Append { key: String, value: Value },
    /// A timestamped write (leaderless and multi-leader): last write wins.
    Put { key: String, value: Value, stamp: Stamp },
    /// A transaction's writes (and, executed in log order, its reads),
    /// applied atomically: the WAL's transaction record.
    Txn(TxnCommit),
    /// Two-phase commit, phase 1: a piece executed and its keys locked,
    /// its writes kept aside (see `state::two_phase`).
    Prepare(TxnPrepare),
    /// Two-phase commit, at the decision's home: the first decision logged
    /// for `txn` stands.
    Decide { txn: String, commit: bool },
    /// Two-phase commit, phase 2: apply (`commit`) or drop a prepared
    /// piece's writes, releasing its locks.
    Resolve { txn: String, commit: bool },
}

/// A last-write-wins timestamp: wall clock (plus the node's offset), then a
/// per-node counter, then the node id, so two stamps never tie.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// Milliseconds since the epoch, as the coordinator's clock said.
    pub ms: i64,
    /// Counter to order writes within one millisecond on one node.
    pub seq: u64,
    /// The coordinating node.
    pub node: String,
}

impl Command {
    /// The key this command touches, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            Command::Noop
            | Command::Txn(_)
            | Command::Prepare(_)
            | Command::Decide { .. }
            | Command::Resolve { .. } => None,
            Command::Write { key, .. }
            | Command::Cas { key, .. }
            | Command::Append { key, .. }
            | Command::Put { key, .. } => Some(key),
        }
    }

    /// Every key it may write (a transaction's, or the one key). A
    /// COMMIT entry's keys are in its prepared piece, not here.
    pub fn written_keys(&self) -> Vec<&str> {
        match self {
            Command::Txn(t) => t.written_keys().collect(),
            other => other.key().into_iter().collect(),
        }
    }
}

/// One log record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Log sequence number, dense from 1.
    pub lsn: u64,
    /// Epoch (term) of the leader that created it.
    pub epoch: u64,
    /// What to apply.
    pub cmd: Command,
}

/// What applying a command did.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// The command took effect.
    Ok,
    /// The command was a no-op because its precondition failed; certain.
    Rejected(String),
    /// A transaction committed (or a piece prepared); its micro-ops with
    /// the reads filled in. For a decision: the one that stands, a bool.
    Txn(Value),
}

/// The key-value map every replica converges on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateMachine {
    data: BTreeMap<String, Value>,
    /// Last-write-wins stamps of keys written by `Put`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    stamps: BTreeMap<String, Stamp>,
    /// The LSN of the last write to each key, for first-committer-wins.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    written: BTreeMap<String, u64>,
    /// Two-phase commit: prepared pieces (their locks), decisions.
    #[serde(default, skip_serializing_if = "TwoPhase::is_empty")]
    two_phase: TwoPhase,
}

impl StateMachine {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a machine from a snapshot's map.
    pub fn from_map(data: BTreeMap<String, Value>) -> Self {
        StateMachine {
            data,
            ..StateMachine::default()
        }
    }

    /// Value and last-write-wins stamp at key (leaderless reads).
    pub fn get_stamped(&self, key: &str) -> (Value, Option<Stamp>) {
        (self.get(key), self.stamps.get(key).cloned())
    }

    /// The map, for snapshots.
    pub fn map(&self) -> &BTreeMap<String, Value> {
        &self.data
    }

    /// Value at key; null when absent.
    pub fn get(&self, key: &str) -> Value {
        self.data.get(key).cloned().unwrap_or(Value::Null)
    }

    /// Applies one command that has no log position (leaderless replicas).
    pub fn apply(&mut self, cmd: &Command) -> Applied {
        self.apply_at(0, cmd)
    }

    /// Applies the command of the log entry at `lsn`, remembering it as
    /// the last write of the keys it changed.
    pub fn apply_at(&mut self, lsn: u64, cmd: &Command) -> Applied {
        let applied = self.apply_cmd(lsn, cmd);
        if lsn > 0 && applied == Applied::Ok {
            if let Some(key) = cmd.key() {
                self.mark_written(key, lsn);
            }
        }
        applied
    }

    /// Records `lsn` as the last write of `key` (no allocation for a key
    /// seen before: this runs for every write).
    fn mark_written(&mut self, key: &str, lsn: u64) {
        match self.written.get_mut(key) {
            Some(at) => *at = lsn,
            None => {
                self.written.insert(key.to_string(), lsn);
            }
        }
    }

    fn apply_cmd(&mut self, lsn: u64, cmd: &Command) -> Applied {
        if let Some(why) = self.two_phase.blocks(cmd) {
            return Applied::Rejected(why);
        }
        match cmd {
            Command::Txn(t) => self.apply_txn(lsn, t),
            Command::Prepare(p) => self.apply_prepare(lsn, p),
            Command::Decide { txn, commit } => self.apply_decide(lsn, txn, *commit),
            Command::Resolve { txn, commit } => self.apply_resolve(lsn, txn, *commit),
            Command::Noop => Applied::Ok,
            Command::Write { key, value } => {
                self.data.insert(key.clone(), value.clone());
                Applied::Ok
            }
            Command::Cas { key, expected, new } => self.cas(key, expected, new),
            Command::Append { key, value } => self.append(key, value),
            Command::Put { key, value, stamp } => self.put(key, value, stamp),
        }
    }

    fn put(&mut self, key: &str, value: &Value, stamp: &Stamp) -> Applied {
        if let Some(old) = self.stamps.get(key) {
            if old >= stamp {
                return Applied::Rejected("an equal or newer write is already stored".into());
            }
        }
        self.stamps.insert(key.to_string(), stamp.clone());
        self.data.insert(key.to_string(), value.clone());
        Applied::Ok
    }

    fn cas(&mut self, key: &str, expected: &Value, new: &Value) -> Applied {
        let current = self.get(key);
        if &current != expected {
            return Applied::Rejected(format!("cas mismatch: current value is {current}"));
        }
        self.data.insert(key.to_string(), new.clone());
        Applied::Ok
    }

    fn append(&mut self, key: &str, value: &Value) -> Applied {
        match self.data.get_mut(key) {
            None => {
                self.data.insert(key.to_string(), Value::Array(vec![value.clone()]));
                Applied::Ok
            }
            Some(Value::Array(list)) => {
                list.push(value.clone());
                Applied::Ok
            }
            Some(other) => Applied::Rejected(format!("append to a non-list value {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum ModelOp {
        Write(u8, i64),
        Cas(u8, Option<i64>, i64),
        Append(u8, i64),
    }

    fn op_strategy() -> impl Strategy<Value = ModelOp> {
        prop_oneof![
            (0u8..4, 0i64..5).prop_map(|(k, v)| ModelOp::Write(k, v)),
            (0u8..4, proptest::option::of(0i64..5), 0i64..5).prop_map(|(k, e, v)| ModelOp::Cas(k, e, v)),
            (4u8..6, 0i64..5).prop_map(|(k, v)| ModelOp::Append(k, v)),
        ]
    }

    fn to_cmd(op: &ModelOp) -> Command {
        match op {
            ModelOp::Write(k, v) => Command::Write {
                key: format!("k{k}"),
                value: (*v).into(),
            },
            ModelOp::Cas(k, e, v) => Command::Cas {
                key: format!("k{k}"),
                expected: e.map(Value::from).unwrap_or(Value::Null),
                new: (*v).into(),
            },
            ModelOp::Append(k, v) => Command::Append {
                key: format!("k{k}"),
                value: (*v).into(),
            },
        }
    }

    /// The obvious model: a BTreeMap of integers and lists.
    fn model_step(model: &mut BTreeMap<String, Value>, op: &ModelOp) -> bool {
        match op {
            ModelOp::Write(k, v) => {
                model.insert(format!("k{k}"), (*v).into());
                true
            }
            ModelOp::Cas(k, e, v) => {
                let key = format!("k{k}");
                let cur = model.get(&key).cloned();
                if cur == e.map(Value::from) {
                    model.insert(key, (*v).into());
                    true
                } else {
                    false
                }
            }
            ModelOp::Append(k, v) => {
                let list = model.entry(format!("k{k}")).or_insert_with(|| Value::Array(vec![]));
                list.as_array_mut().unwrap().push((*v).into());
                true
            }
        }
    }

    proptest! {
        #[test]
        fn matches_btreemap_model(ops in proptest::collection::vec(op_strategy(), 0..200)) {
            let mut sm = StateMachine::new();
            let mut model = BTreeMap::new();
            for op in &ops {
                let applied = sm.apply(&to_cmd(op));
                let expect_ok = model_step(&mut model, op);
                prop_assert_eq!(applied == Applied::Ok, expect_ok);
                prop_assert_eq!(sm.map(), &model);
            }
            // A snapshot round trip keeps everything.
            let json = serde_json::to_vec(&sm).unwrap();
            let back: StateMachine = serde_json::from_slice(&json).unwrap();
            prop_assert_eq!(back, sm);
        }
    }

    #[test]
    fn append_to_scalar_is_rejected() {
        let mut sm = StateMachine::new();
        sm.apply(&Command::Write {
            key: "a".into(),
            value: 1.into(),
        });
        let r = sm.apply(&Command::Append {
            key: "a".into(),
            value: 2.into(),
        });
        assert!(matches!(r, Applied::Rejected(_)));
        assert_eq!(sm.get("a"), Value::from(1));
    }
}
