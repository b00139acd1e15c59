//! Transactions in the core: how each isolation level executes one.
//!
//! Promises (the ground truth of the lab's isolation rows):
//! - A transaction that writes commits as ONE log entry holding its write
//!   set ([`TxnCommit`]), replicated, acknowledged and applied atomically
//!   like every other write: `ok` once the `ack` policy's copies are
//!   durable, `fail` when it certainly did not commit (with a reason
//!   starting `aborted:` for a conflict), `unknown` when this node cannot
//!   know.
//! - `read-committed` and `snapshot` run at the leader one micro-op per
//!   step (at most one per `flush`, and `txn_step_ms` apart), interleaved
//!   with other transactions and with commits, writes buffered until the
//!   commit entry. Read-committed reads the latest committed version at
//!   the step (never an uncommitted or aborted one: the leader's state
//!   machine holds committed entries only); snapshot reads the versions as
//!   of the applied LSN at its start ([`Versions`]), and its commit entry
//!   carries that LSN so applying it enforces first-committer-wins.
//!   Both read their own writes.
//! - `serializable` and `strict-serializable` put the whole transaction in
//!   one entry and run it when the entry is applied, in log order (ordered
//!   execution at the leader: the log order is a serial order, and the
//!   entry lies between the request and the reply, so it is strict too).
//!   A read-only transaction is one atomic read of a replica's applied
//!   state: confirmed at the leader (read index) under strict-serializable
//!   or `reads=leader`, else from the replica the client asked (serializable
//!   but maybe stale: only real-time anomalies).
//! - Every transaction in flight is bounded: at most [`PENDING_TXNS_MAX`],
//!   each failed (certainly not committed) at its deadline or when the
//!   node stops leading, and the versions kept for snapshots go with them.

use super::mvcc::Versions;
use super::{Answer, Core, Op, Request, Role};
use crate::config::{Isolation, ReadMode};
use crate::protocol::{json_len_capped, reply_too_large};
use crate::state::{appended, Command, TxnCommit, TxnOp};
use serde_json::Value;
use std::collections::BTreeMap;

/// Most transactions executing step by step at once; more are refused.
pub const PENDING_TXNS_MAX: usize = 4096;

/// A transaction executing at the leader, one micro-op per step.
struct ActiveTxn {
    token: u64,
    id: u64,
    ops: Vec<TxnOp>,
    /// The micro-ops done so far, reads filled in.
    done: Vec<Value>,
    /// Its own writes: the value each key would have (read-your-writes).
    own: BTreeMap<String, Value>,
    /// Snapshot isolation: the applied LSN its reads come from.
    snapshot_lsn: Option<u64>,
    next_step_ms: u64,
    deadline_ms: u64,
}

/// What the leader keeps for transactions in flight.
#[derive(Default)]
pub(super) struct Txns {
    active: Vec<ActiveTxn>,
    pub(super) versions: Versions,
}

impl Core {
    /// A transaction request (see the module's promises for the routes).
    pub(super) fn on_client_txn(&mut self, req: Request) {
        let (isolation, reads) = (self.settings().isolation, self.settings().reads);
        if !req.op.is_write() {
            match (isolation, reads) {
                (Isolation::StrictSerializable, _) | (Isolation::Serializable, ReadMode::Leader) => {
                    return self.on_leader_read(req)
                }
                (_, ReadMode::Follower | ReadMode::Sticky) => {
                    let answer = self.local_read(&req);
                    return self.answer(req.token, answer);
                }
                (_, ReadMode::Lsn) => return self.on_lsn_read(req),
                (Isolation::ReadCommitted | Isolation::Snapshot, ReadMode::Leader) => {}
            }
        }
        if self.role != Role::Leader {
            return self.forward_or_fail(req);
        }
        let Op::Txn { ops } = req.op else {
            unreachable!("on_client_txn takes transactions only")
        };
        match isolation {
            Isolation::ReadCommitted | Isolation::Snapshot => self.begin_txn(req.token, req.id, ops),
            Isolation::Serializable | Isolation::StrictSerializable => {
                let commit = TxnCommit {
                    snapshot_lsn: None,
                    ops,
                };
                self.propose(req.token, req.id, Command::Txn(commit), None);
            }
        }
    }

    fn begin_txn(&mut self, token: u64, id: u64, ops: Vec<TxnOp>) {
        if self.txns.active.len() >= PENDING_TXNS_MAX {
            return self.answer(token, Answer::fail(id, "too many transactions in flight"));
        }
        let snapshot_lsn = (self.settings().isolation == Isolation::Snapshot).then_some(self.applied_lsn);
        if let Some(lsn) = snapshot_lsn {
            self.txns.versions.hold(lsn);
        }
        let t = ActiveTxn {
            token,
            id,
            done: Vec::with_capacity(ops.len()),
            ops,
            own: BTreeMap::new(),
            snapshot_lsn,
            next_step_ms: self.now_ms,
            deadline_ms: self.now_ms + self.settings().request_timeout_ms,
        };
        self.txns.active.push(t);
    }

    /// Whether a transaction can take its next micro-op now: the driver
    /// should flush again soon rather than wait for the next input.
    pub fn txn_step_due(&self) -> bool {
        let now = self.now_ms;
        self.role == Role::Leader && self.txns.active.iter().any(|t| t.next_step_ms <= now)
    }

    /// Leader: one micro-op of every transaction whose turn it is; those
    /// done are committed (or answered, when they wrote nothing).
    pub(super) fn step_txns(&mut self) {
        if self.txns.active.is_empty() || self.role != Role::Leader {
            return;
        }
        let (now, gap) = (self.now_ms, self.settings().txn_step_ms);
        let active = std::mem::take(&mut self.txns.active);
        let mut running = Vec::with_capacity(active.len());
        for mut t in active {
            if t.next_step_ms > now {
                running.push(t);
                continue;
            }
            t.next_step_ms = now + gap;
            match self.txn_step(&mut t) {
                Ok(()) if t.done.len() < t.ops.len() => running.push(t),
                Ok(()) => self.finish_txn(t),
                Err(why) => self.drop_txn(t, &why),
            }
        }
        self.txns.active = running;
    }

    /// Executes the transaction's next micro-op.
    fn txn_step(&self, t: &mut ActiveTxn) -> Result<(), String> {
        let op = &t.ops[t.done.len()];
        let key = op.key();
        let current = match t.own.get(key) {
            Some(v) => v.clone(),
            None => self.committed_read(key, t.snapshot_lsn),
        };
        let read = match op {
            TxnOp::Read { .. } => current,
            TxnOp::Write { value, .. } => {
                t.own.insert(key.to_string(), value.clone());
                Value::Null
            }
            TxnOp::Append { value, .. } => {
                t.own.insert(key.to_string(), appended(key, current, value)?);
                Value::Null
            }
        };
        t.done.push(op.completed(read));
        Ok(())
    }

    /// The committed value of `key`: the latest, or as of a snapshot.
    fn committed_read(&self, key: &str, snapshot_lsn: Option<u64>) -> Value {
        match snapshot_lsn {
            Some(lsn) => self.txns.versions.read_at(key, lsn, &self.sm),
            None => self.sm.get(key),
        }
    }

    /// Commits a transaction whose micro-ops are all done: its writes as
    /// one entry, answered with `done` once committed.
    fn finish_txn(&mut self, t: ActiveTxn) {
        if let Some(lsn) = t.snapshot_lsn {
            // Its reads are done; first-committer-wins needs no versions.
            self.txns.versions.release(lsn);
        }
        let value = Value::Array(t.done);
        if json_len_capped(&value, self.cfg.read_bytes_max).is_none() {
            let why = reply_too_large(&format!("a transaction of {} micro-ops", t.ops.len()));
            return self.answer(t.token, Answer::fail(t.id, why));
        }
        let writes: Vec<TxnOp> = t.ops.into_iter().filter(TxnOp::is_write).collect();
        if writes.is_empty() {
            let answer = Answer {
                value,
                lsn: Some(self.applied_lsn),
                ..Answer::ok(t.id)
            };
            return self.answer(t.token, answer);
        }
        let commit = TxnCommit {
            snapshot_lsn: t.snapshot_lsn,
            ops: writes,
        };
        self.propose(t.token, t.id, Command::Txn(commit), Some(value));
    }

    /// Ends a transaction that will not commit, answering `fail`.
    fn drop_txn(&mut self, t: ActiveTxn, why: &str) {
        if let Some(lsn) = t.snapshot_lsn {
            self.txns.versions.release(lsn);
        }
        self.answer(t.token, Answer::fail(t.id, why));
    }

    /// Fails the transactions past their deadline (none was proposed, so
    /// none committed).
    pub(super) fn expire_txns(&mut self) {
        for t in take_due(&mut self.txns.active, self.now_ms, |t| t.deadline_ms) {
            self.drop_txn(t, "transaction did not finish within request_timeout_ms; not committed");
        }
    }

    /// A node that stops leading fails the transactions it was executing
    /// (none of them reached the log).
    pub(super) fn abandon_txns(&mut self) {
        for t in std::mem::take(&mut self.txns.active) {
            self.answer(
                t.token,
                Answer::fail(t.id, "leadership lost before the transaction committed"),
            );
        }
        self.txns.versions.clear();
    }

    /// A read-only transaction answered from this replica's applied state
    /// at once: every read from the same state, so a consistent snapshot.
    pub(super) fn local_txn_read(&self, ops: &[TxnOp]) -> Result<Value, String> {
        let keys: Vec<String> = ops.iter().map(|o| o.key().to_string()).collect();
        let values = self.sized_read(&keys)?;
        let done = ops.iter().zip(values).map(|(op, (_, v))| op.completed(v));
        Ok(Value::Array(done.collect()))
    }
}

/// Takes out of `items` those whose deadline (`deadline_ms` of each) has
/// come by `now_ms`, keeping the others in their order. Runs at every
/// tick, so the common case (none due) moves nothing.
pub(super) fn take_due<T>(items: &mut Vec<T>, now_ms: u64, deadline_ms: impl Fn(&T) -> u64) -> Vec<T> {
    if items.iter().all(|t| deadline_ms(t) > now_ms) {
        return Vec::new();
    }
    let (due, rest) = std::mem::take(items)
        .into_iter()
        .partition(|t| deadline_ms(t) <= now_ms);
    *items = rest;
    due
}
