//! Two-phase commit in the replicated state machine (`shard_txn=2pc`): the
//! log entries of a transaction whose keys live on several shards, and the
//! locks its prepared pieces hold.
//!
//! Promises (every check runs at apply time, so every replica of a shard
//! reaches the same verdict in the same log position):
//! - **Prepare.** A piece's PREPARE entry executes its micro-ops against
//!   the state as of the entry (reads filled in, its own writes seen) and
//!   keeps its writes aside, unapplied: no read can see them. It then
//!   holds its keys until its COMMIT or ABORT entry: a shared lock on the
//!   keys it only reads, an exclusive one on those it writes (strict
//!   two-phase locking). A piece that would take a lock another prepared
//!   piece holds against it is refused (`aborted:`), as is a second
//!   prepare of a transaction this shard already prepared or resolved.
//! - **Everything else respects the locks.** A write, cas or append of a
//!   locked key, and a transaction entry that reads a write-locked key or
//!   writes a locked one, is refused (`aborted:`, certainly not applied).
//!   The leader parks such requests until the locks go (see the core's
//!   `two_phase`), so this refusal is the rare race, not the rule.
//! - **Decide.** The decision's home (the transaction's first shard) keeps
//!   the first decision logged for a transaction and ignores any later
//!   one: the coordinator's commit and a recovery's abort race through one
//!   log, and whichever is first is the decision everybody learns.
//! - **Resolve.** COMMIT applies the prepared writes atomically at the
//!   entry's LSN (they cannot fail: their keys were locked since the
//!   prepare), ABORT drops them; both release the locks. A resolve of a
//!   piece this shard never prepared leaves a tombstone, so a prepare that
//!   arrives late is refused instead of locking keys nobody will release.
//! - **Bounded.** At most [`PREPARED_MAX`] pieces hold locks at once;
//!   decisions and tombstones are kept for the last [`KEPT_MAX`]
//!   transactions (a participant asks about a decision within seconds; one
//!   still prepared after that many later decisions is past any timeout).

use super::txn::TxnOp;
use super::{Applied, Command, StateMachine};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Most pieces prepared and not yet resolved on one shard.
pub const PREPARED_MAX: usize = 4096;
/// Decisions (at a home) and tombstones (at a participant) kept.
pub const KEPT_MAX: usize = 32768;

/// A piece's PREPARE entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxnPrepare {
    /// The transaction's id (unique across the cluster and restarts).
    pub txn: String,
    /// The shard that logs the decision.
    pub home: u32,
    /// Every micro-op of this shard's piece, in the order sent.
    pub ops: Vec<TxnOp>,
}

/// A piece prepared on this shard, holding its locks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prepared {
    /// The shard that logs the decision.
    pub home: u32,
    /// The LSN of its PREPARE entry.
    pub lsn: u64,
    /// Its writes, applied at COMMIT.
    pub writes: Vec<TxnOp>,
    /// Keys it only reads (shared locks).
    pub reads: BTreeSet<String>,
}

impl Prepared {
    fn writes_key(&self, key: &str) -> bool {
        self.writes.iter().any(|o| o.key() == key)
    }

    fn holds(&self, key: &str) -> bool {
        self.reads.contains(key) || self.writes_key(key)
    }
}

/// The two-phase commit part of a shard's replicated state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TwoPhase {
    /// Pieces prepared and not resolved, by transaction.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    prepared: BTreeMap<String, Prepared>,
    /// Home: transaction -> (commit?, LSN of the decision).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    decisions: BTreeMap<String, (bool, u64)>,
    /// Participant: transactions resolved here -> LSN of the resolve.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    resolved: BTreeMap<String, u64>,
}

impl TwoPhase {
    /// Whether there is nothing to keep (a snapshot leaves it out).
    pub fn is_empty(&self) -> bool {
        self.prepared.is_empty() && self.decisions.is_empty() && self.resolved.is_empty()
    }

    /// The pieces prepared and not resolved: (transaction, home).
    pub fn prepared(&self) -> impl Iterator<Item = (&str, u32)> {
        self.prepared.iter().map(|(t, p)| (t.as_str(), p.home))
    }

    /// Whether any piece holds locks.
    pub fn has_locks(&self) -> bool {
        !self.prepared.is_empty()
    }

    /// The decision logged here for `txn`, if any.
    pub fn decision(&self, txn: &str) -> Option<bool> {
        self.decisions.get(txn).map(|(c, _)| *c)
    }

    /// Why reading `reads` and writing `writes` must wait for (or be
    /// refused by) a prepared piece other than `except`'s: a write-locked
    /// read, or a locked write.
    pub fn conflict<'a>(
        &self,
        reads: impl IntoIterator<Item = &'a str>,
        writes: impl IntoIterator<Item = &'a str>,
        except: Option<&str>,
    ) -> Option<String> {
        if self.prepared.is_empty() {
            return None;
        }
        let others = || self.prepared.iter().filter(|(t, _)| Some(t.as_str()) != except);
        let locked =
            |key: &str, how: &str, by: &str| format!("aborted: key {key} is {how}-locked by prepared transaction {by}");
        for key in writes {
            if let Some((t, p)) = others().find(|(_, p)| p.holds(key)) {
                let how = if p.writes_key(key) { "write" } else { "read" };
                return Some(locked(key, how, t));
            }
        }
        for key in reads {
            if let Some((t, _)) = others().find(|(_, p)| p.writes_key(key)) {
                return Some(locked(key, "write", t));
            }
        }
        None
    }

    /// The conflict of a command that is not part of two-phase commit
    /// (see the module's promise).
    pub fn blocks(&self, cmd: &Command) -> Option<String> {
        if self.prepared.is_empty() {
            return None;
        }
        match cmd {
            Command::Write { key, .. } | Command::Cas { key, .. } | Command::Append { key, .. } => {
                self.conflict([], [key.as_str()], None)
            }
            Command::Txn(t) => {
                let reads = t.ops.iter().filter(|o| !o.is_write()).map(TxnOp::key);
                self.conflict(reads, t.written_keys(), None)
            }
            _ => None,
        }
    }
}

/// The keys a piece reads only and the keys it writes.
pub fn lock_sets(ops: &[TxnOp]) -> (BTreeSet<String>, BTreeSet<String>) {
    let writes: BTreeSet<String> = ops
        .iter()
        .filter(|o| o.is_write())
        .map(|o| o.key().to_string())
        .collect();
    let reads = ops
        .iter()
        .map(TxnOp::key)
        .filter(|k| !writes.contains(*k))
        .map(str::to_string)
        .collect();
    (reads, writes)
}

/// Keeps the newest `KEPT_MAX` of a map of transaction -> LSN-bearing
/// values, dropping the oldest by LSN.
fn keep_newest<V>(map: &mut BTreeMap<String, V>, lsn_of: impl Fn(&V) -> u64) {
    if map.len() <= KEPT_MAX {
        return;
    }
    let mut by_lsn: Vec<(u64, String)> = map.iter().map(|(t, v)| (lsn_of(v), t.clone())).collect();
    by_lsn.sort_unstable();
    let drop = map.len() - KEPT_MAX / 2;
    for (_, t) in by_lsn.into_iter().take(drop) {
        map.remove(&t);
    }
}

impl StateMachine {
    /// The two-phase commit state (locks, decisions).
    pub fn two_phase(&self) -> &TwoPhase {
        &self.two_phase
    }

    /// Applies a PREPARE entry at `lsn` (see the module's promise).
    pub(super) fn apply_prepare(&mut self, lsn: u64, p: &TxnPrepare) -> Applied {
        let tp = &self.two_phase;
        if tp.prepared.contains_key(&p.txn) || tp.resolved.contains_key(&p.txn) {
            return Applied::Rejected(format!(
                "aborted: transaction {} was already prepared or resolved on this shard",
                p.txn
            ));
        }
        if tp.prepared.len() >= PREPARED_MAX {
            return Applied::Rejected(format!("aborted: {PREPARED_MAX} transactions already prepared here"));
        }
        let (reads, writes) = lock_sets(&p.ops);
        let conflict = tp.conflict(
            reads.iter().map(String::as_str),
            writes.iter().map(String::as_str),
            None,
        );
        if let Some(why) = conflict {
            return Applied::Rejected(why);
        }
        let done = match self.execute(&p.ops) {
            Ok((done, _)) => done,
            Err(why) => return Applied::Rejected(format!("aborted: {why}")),
        };
        let prepared = Prepared {
            home: p.home,
            lsn,
            writes: p.ops.iter().filter(|o| o.is_write()).cloned().collect(),
            reads,
        };
        self.two_phase.prepared.insert(p.txn.clone(), prepared);
        Applied::Txn(Value::Array(done))
    }

    /// Applies a decision at `lsn`: the first one logged for `txn` stands.
    /// The result is the decision that stands (`true`: commit), as
    /// `Applied::Txn(Value::Bool(_))`.
    pub(super) fn apply_decide(&mut self, lsn: u64, txn: &str, commit: bool) -> Applied {
        let decisions = &mut self.two_phase.decisions;
        let stands = match decisions.get(txn) {
            Some((c, _)) => *c,
            None => {
                decisions.insert(txn.to_string(), (commit, lsn));
                keep_newest(decisions, |(_, at)| *at);
                commit
            }
        };
        Applied::Txn(Value::Bool(stands))
    }

    /// Applies a COMMIT (`commit`) or ABORT entry for `txn` at `lsn`.
    pub(super) fn apply_resolve(&mut self, lsn: u64, txn: &str, commit: bool) -> Applied {
        let tp = &mut self.two_phase;
        tp.resolved.insert(txn.to_string(), lsn);
        keep_newest(&mut tp.resolved, |at| *at);
        let Some(p) = tp.prepared.remove(txn) else {
            return Applied::Ok;
        };
        if !commit {
            return Applied::Ok;
        }
        match self.execute(&p.writes) {
            Ok((_, overlay)) => {
                for (key, value) in overlay {
                    self.mark_written(&key, lsn);
                    self.data.insert(key, value);
                }
                Applied::Ok
            }
            // Cannot happen: the keys were locked since the prepare
            // checked these writes against the same values.
            Err(why) => Applied::Rejected(format!("prepared writes no longer apply: {why}")),
        }
    }
}

#[cfg(test)]
mod tests;
