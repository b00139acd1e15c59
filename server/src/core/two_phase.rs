//! Two-phase commit at a shard's leader (`shard_txn=2pc`): the requests a
//! coordinator sends a participant shard, and the waiting that keeps other
//! requests off a prepared piece's locks.
//!
//! Promises:
//! - A [`TwoPhaseOp`] becomes one log entry of this shard's group
//!   (PREPARE, DECIDE or COMMIT/ABORT, see `state::two_phase`), replicated,
//!   acknowledged and applied like every write: `ok` once the `ack`
//!   policy's copies are durable and it was applied (a prepare's answer
//!   holds its reads, a decide's the decision that stands), `fail` when it
//!   certainly did not take effect, `unknown` when this node cannot know.
//!   A follower forwards it to the leader, like a client write.
//! - **Waiting, bounded.** While a prepared piece holds a key, the leader
//!   parks a request that conflicts with its lock (a write of a locked key,
//!   a transaction reading a write-locked one, another piece's prepare)
//!   instead of proposing it, and proposes it once the lock is gone. A
//!   prepare waits at most [`PREPARE_LOCK_WAIT_MS`] (two coordinators
//!   each holding one shard and waiting for the other's would otherwise
//!   wait out their whole timeout), anything else until its request
//!   timeout; then, or when the node stops leading, it is answered `fail`
//!   (it never reached the log). At most [`PARKED_MAX`] wait at once.
//!   Leader reads of a write-locked key wait the same way (served once the
//!   lock goes, else answered at their deadline): a read must not return
//!   the value from before a transaction whose commit another shard has
//!   already shown (strict serializability across shards).
//! - **Recovery.** [`Core::stale_prepared`] names the pieces this leader
//!   has seen prepared for longer than a bound, so the node can ask their
//!   decision's home and resolve them.

use super::txn::take_due;
use super::{Answer, Core, Op, Request, Role};
use crate::state::{lock_sets, Command, TwoPhase, TxnOp, TxnPrepare};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Most requests parked behind prepared locks at once.
pub const PARKED_MAX: usize = 4096;
/// Longest a prepare waits for another piece's lock before it is refused.
pub const PREPARE_LOCK_WAIT_MS: u64 = 100;

/// What a coordinator asks of a participant shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum TwoPhaseOp {
    /// Phase 1: execute this shard's piece and lock its keys.
    Prepare {
        /// The transaction's id.
        txn: String,
        /// The shard that logs the decision.
        home: u32,
        /// The piece's micro-ops.
        ops: Vec<TxnOp>,
    },
    /// At the decision's home: log `commit` unless a decision stands.
    Decide {
        /// The transaction's id.
        txn: String,
        /// The decision proposed (a recovery proposes abort).
        commit: bool,
    },
    /// Phase 2: apply or drop the prepared piece, releasing its locks.
    Resolve {
        /// The transaction's id.
        txn: String,
        /// Apply (true) or drop.
        commit: bool,
    },
}

impl TwoPhaseOp {
    /// The log entry it becomes.
    fn command(self) -> Command {
        match self {
            TwoPhaseOp::Prepare { txn, home, ops } => Command::Prepare(TxnPrepare { txn, home, ops }),
            TwoPhaseOp::Decide { txn, commit } => Command::Decide { txn, commit },
            TwoPhaseOp::Resolve { txn, commit } => Command::Resolve { txn, commit },
        }
    }
}

/// A request waiting for a lock.
struct Parked {
    req: Request,
    until_ms: u64,
    why: String,
}

/// What the leader keeps for two-phase commit (none of it replicated).
#[derive(Default)]
pub(super) struct TwoPhaseLeader {
    parked: Vec<Parked>,
    /// Prepares proposed and not yet applied: LSN -> (reads, writes).
    proposed: BTreeMap<u64, (BTreeSet<String>, BTreeSet<String>)>,
    /// When this leader first saw each prepared piece.
    seen_ms: BTreeMap<String, u64>,
}

impl Core {
    /// A coordinator's request: one log entry (see the module's promises).
    pub(super) fn on_two_phase(&mut self, req: Request) {
        if self.role != Role::Leader {
            return self.forward_or_fail(req);
        }
        let Op::TwoPhase(op) = req.op else {
            unreachable!("on_two_phase takes two-phase requests only")
        };
        let locks = match &op {
            TwoPhaseOp::Prepare { ops, .. } => Some(lock_sets(ops)),
            _ => None,
        };
        let before = self.log.last_lsn();
        self.propose(req.token, req.id, op.command(), None);
        let lsn = self.log.last_lsn();
        if let (Some(locks), true) = (locks, lsn > before) {
            self.two_phase.proposed.insert(lsn, locks);
        }
    }

    /// Leader: parks `req` when it conflicts with a prepared piece's lock
    /// (or answers it when too many wait); hands it back otherwise.
    pub(super) fn park_if_locked(&mut self, req: Request) -> Option<Request> {
        if self.role != Role::Leader {
            return Some(req);
        }
        let Some(why) = self.lock_conflict(&req.op) else {
            return Some(req);
        };
        if self.two_phase.parked.len() >= PARKED_MAX {
            self.answer(req.token, Answer::fail(req.id, why));
            return None;
        }
        let wait_ms = match req.op {
            Op::TwoPhase(_) => PREPARE_LOCK_WAIT_MS,
            _ => self.settings().request_timeout_ms,
        };
        let until_ms = self.now_ms + wait_ms;
        self.two_phase.parked.push(Parked { req, until_ms, why });
        None
    }

    /// Why `op` must wait: a lock it conflicts with, applied or proposed.
    fn lock_conflict(&mut self, op: &Op) -> Option<String> {
        // The path of every write on every leader: nothing to build when
        // no piece is prepared or proposed (always so under shard_txn=none).
        if !self.sm.two_phase().has_locks() && self.two_phase.proposed.is_empty() {
            return None;
        }
        let (reads, writes) = match op {
            Op::Write { key, .. } | Op::Cas { key, .. } | Op::Append { key, .. } => {
                (BTreeSet::new(), BTreeSet::from([key.clone()]))
            }
            Op::Txn { ops } if op.is_write() => lock_sets(ops),
            Op::TwoPhase(TwoPhaseOp::Prepare { ops, .. }) => lock_sets(ops),
            _ => return None,
        };
        let applied = self.applied_lsn;
        self.two_phase.proposed.retain(|lsn, _| *lsn > applied);
        let (r, w) = (reads.iter().map(String::as_str), writes.iter().map(String::as_str));
        if let Some(why) = self.sm.two_phase().conflict(r, w, None) {
            return Some(why);
        }
        let clash = |(lsn, (pr, pw)): (&u64, &(BTreeSet<String>, BTreeSet<String>))| {
            let hit = writes.iter().find(|k| pr.contains(*k) || pw.contains(*k));
            let hit = hit.or_else(|| reads.iter().find(|k| pw.contains(*k)));
            hit.map(|k| format!("aborted: key {k} is locked by the transaction prepared at lsn {lsn}"))
        };
        self.two_phase.proposed.iter().find_map(clash)
    }

    /// Leader: proposes the parked requests whose locks are gone (in the
    /// order they came).
    pub(super) fn retry_parked(&mut self) {
        if self.two_phase.parked.is_empty() {
            return;
        }
        let parked = std::mem::take(&mut self.two_phase.parked);
        for p in parked {
            if self.role == Role::Leader && self.lock_conflict(&p.req.op).is_none() {
                self.on_client(p.req);
            } else {
                self.two_phase.parked.push(p);
            }
        }
    }

    /// Fails the parked requests whose wait is over (never proposed).
    pub(super) fn expire_parked(&mut self) {
        for p in take_due(&mut self.two_phase.parked, self.now_ms, |p| p.until_ms) {
            let why = format!("{} (waited for the lock; not applied)", p.why);
            self.answer(p.req.token, Answer::fail(p.req.id, why));
        }
    }

    /// A node that stops leading fails what it parked (none of it reached
    /// the log) and forgets what it saw.
    pub(super) fn abandon_parked(&mut self) {
        for p in std::mem::take(&mut self.two_phase.parked) {
            let answer = Answer::fail(p.req.id, "leadership lost while waiting for a lock; not applied");
            self.answer(p.req.token, answer);
        }
        self.two_phase.proposed.clear();
        self.two_phase.seen_ms.clear();
    }

    /// Leader: the pieces prepared here that this leader has seen for
    /// `older_than_ms` or longer, at most `max`: (transaction, home).
    pub fn stale_prepared(&mut self, now_ms: u64, older_than_ms: u64, max: usize) -> Vec<(String, u32)> {
        self.set_now(now_ms);
        if self.role != Role::Leader {
            self.two_phase.seen_ms.clear();
            return Vec::new();
        }
        let tp = self.sm.two_phase();
        let seen = &mut self.two_phase.seen_ms;
        seen.retain(|txn, _| tp.prepared().any(|(t, _)| t == txn));
        let mut stale = Vec::new();
        for (txn, home) in tp.prepared() {
            let since = *seen.entry(txn.to_string()).or_insert(now_ms);
            if now_ms.saturating_sub(since) >= older_than_ms && stale.len() < max {
                stale.push((txn.to_string(), home));
            }
        }
        stale
    }
}

/// Whether a leader read of `op` must wait: it reads a key a prepared
/// piece is about to write.
pub(super) fn read_blocked(tp: &TwoPhase, op: &Op) -> bool {
    if !tp.has_locks() {
        return false;
    }
    let none = std::iter::empty();
    match op {
        Op::Read { key } => tp.conflict([key.as_str()], none, None).is_some(),
        Op::MultiRead { keys } => tp.conflict(keys.iter().map(String::as_str), none, None).is_some(),
        Op::Txn { ops } => tp.conflict(ops.iter().map(TxnOp::key), none, None).is_some(),
        _ => false,
    }
}
