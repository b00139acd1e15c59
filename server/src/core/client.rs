//! Client requests: writes through the log, the read policies, applying
//! committed entries and answering, expiry, and compaction.
//!
//! Promise: every request the core takes is answered exactly once (by an
//! `Answer` or a `Forward` output), and a write is answered `ok` only after
//! the `ack` policy's copies of it are durable and it was applied; a write
//! whose fate this node cannot know is answered `unknown`.

use super::two_phase::read_blocked;
use super::{Answer, Core, Op, Outcome, Output, PendingRead, PendingWrite, Request, Role};
use super::{PENDING_READS_MAX, PENDING_WRITES_MAX};
use crate::config::ReadMode;
use crate::protocol::{json_len_capped, reply_too_large};
use crate::state::{Applied, Command, Entry};
use crate::wal::{Snapshot, WalCmd};
use serde_json::Value;
use std::sync::Arc;
use tracing::info;

impl Core {
    pub(super) fn on_client(&mut self, req: Request) {
        let Some(req) = self.park_if_locked(req) else {
            return;
        };
        if matches!(req.op, Op::TwoPhase(_)) {
            return self.on_two_phase(req);
        }
        if matches!(req.op, Op::Txn { .. }) {
            return self.on_client_txn(req);
        }
        if req.op.is_write() {
            return self.on_client_write(req);
        }
        match self.settings().reads {
            ReadMode::Leader => self.on_leader_read(req),
            ReadMode::Follower | ReadMode::Sticky => {
                let answer = self.local_read(&req);
                self.answer(req.token, answer);
            }
            ReadMode::Lsn => self.on_lsn_read(req),
        }
    }

    fn on_client_write(&mut self, req: Request) {
        if self.role != Role::Leader {
            return self.forward_or_fail(req);
        }
        let cmd = match req.op {
            Op::Write { key, value } => Command::Write { key, value },
            Op::Cas { key, expected, new } => Command::Cas { key, expected, new },
            Op::Append { key, value } => Command::Append { key, value },
            Op::Read { .. } | Op::MultiRead { .. } | Op::Txn { .. } | Op::TwoPhase(_) => {
                unreachable!("single-key writes only")
            }
        };
        self.propose(req.token, req.id, cmd, None);
    }

    /// Leader: appends `cmd` to the log and waits for its commit to answer
    /// request `token` (with `value` when given, else what applying says).
    pub(super) fn propose(&mut self, token: u64, id: u64, cmd: Command, value: Option<Value>) {
        if self.waiting.writes.len() >= PENDING_WRITES_MAX {
            return self.answer(token, Answer::fail(id, "too many writes in flight"));
        }
        let lsn = self.append_local(cmd);
        let pending = PendingWrite {
            epoch: self.hard.epoch,
            id,
            token,
            deadline_ms: self.now_ms + self.settings().request_timeout_ms,
            value,
        };
        self.waiting.writes.insert(lsn, pending);
    }

    /// Leader: appends a new entry of the current epoch to the log.
    pub(super) fn append_local(&mut self, cmd: Command) -> u64 {
        debug_assert_eq!(self.role, Role::Leader, "only a leader appends its own entries");
        let entry = Entry {
            lsn: self.log.last_lsn() + 1,
            epoch: self.hard.epoch,
            cmd,
        };
        let lsn = entry.lsn;
        self.wal_buf.push(entry.clone());
        self.log.push(entry);
        lsn
    }

    pub(super) fn forward_or_fail(&mut self, req: Request) {
        match self.leader.clone() {
            Some(leader) if !req.forwarded && leader != self.cfg.node => {
                self.out.push(Output::Forward { req, leader });
            }
            leader => {
                let mut answer = Answer::fail(req.id, "not the leader");
                answer.leader_hint = leader;
                self.answer(req.token, answer);
            }
        }
    }

    pub(super) fn local_read(&self, req: &Request) -> Answer {
        let value = match &req.op {
            Op::Read { key } => self.sized_read(std::slice::from_ref(key)).map(|mut v| v.remove(0).1),
            Op::MultiRead { keys } => self.sized_read(keys).map(|v| Value::Object(v.into_iter().collect())),
            Op::Txn { ops } => self.local_txn_read(ops),
            Op::Write { .. } | Op::Cas { .. } | Op::Append { .. } | Op::TwoPhase(_) => Ok(Value::Null),
        };
        match value {
            Ok(value) => Answer {
                value,
                lsn: Some(self.applied_lsn),
                ..Answer::ok(req.id)
            },
            Err(why) => Answer::fail(req.id, why),
        }
    }

    /// The values at `keys`, each measured before it is copied: a read
    /// whose reply would not fit in a frame is refused having copied at
    /// most a frame's worth (a `multi_read` naming a large value many
    /// times would otherwise build a reply of hundreds of megabytes for a
    /// request of a few dozen bytes).
    pub(super) fn sized_read(&self, keys: &[String]) -> Result<Vec<(String, Value)>, String> {
        let room = self.cfg.read_bytes_max;
        let too_large = || reply_too_large(&format!("reading {} keys", keys.len()));
        let mut total = 0;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            // Quotes, colon and comma around each key.
            total += key.len() + 4;
            let value = self.sm.map().get(key);
            total += match value {
                None => 4,
                Some(v) => json_len_capped(v, room.saturating_sub(total)).ok_or_else(too_large)?,
            };
            if total > room {
                return Err(too_large());
            }
            out.push((key.clone(), value.cloned().unwrap_or(Value::Null)));
        }
        Ok(out)
    }

    pub(super) fn on_leader_read(&mut self, req: Request) {
        if self.role != Role::Leader {
            return self.forward_or_fail(req);
        }
        if self.waiting.leader_reads.len() >= PENDING_READS_MAX {
            return self.answer(req.token, Answer::fail(req.id, "too many reads in flight"));
        }
        let read = PendingRead {
            req,
            seq: self.leading.hb_seq + 1,
            lsn: self.commit_lsn,
            deadline_ms: self.now_ms + self.settings().request_timeout_ms,
        };
        self.waiting.leader_reads.push(read);
    }

    pub(super) fn on_lsn_read(&mut self, req: Request) {
        let min_lsn = req.min_lsn;
        if self.applied_lsn >= min_lsn {
            let answer = self.local_read(&req);
            return self.answer(req.token, answer);
        }
        if self.waiting.lsn_reads.len() >= PENDING_READS_MAX {
            return self.answer(req.token, Answer::fail(req.id, "too many reads in flight"));
        }
        let read = PendingRead {
            req,
            seq: 0,
            lsn: min_lsn,
            deadline_ms: self.now_ms + self.settings().read_wait_ms,
        };
        self.waiting.lsn_reads.push(read);
    }

    /// Answers the reads whose conditions now hold.
    pub(super) fn serve_reads(&mut self) {
        // Each partition below is guarded by a look first: this runs after
        // every batch, and most batches answer no read.
        let applied = self.applied_lsn;
        if self.waiting.lsn_reads.iter().any(|r| applied >= r.lsn) {
            let (ready, wait) = std::mem::take(&mut self.waiting.lsn_reads)
                .into_iter()
                .partition(|r| applied >= r.lsn);
            self.waiting.lsn_reads = wait;
            self.answer_reads(ready);
        }
        if self.role != Role::Leader || self.waiting.leader_reads.is_empty() {
            return;
        }
        // The leader must have committed an entry of its own epoch, so its
        // commit LSN covers every write acknowledged by earlier leaders.
        if self.log.epoch_at(self.commit_lsn) != Some(self.hard.epoch) {
            return;
        }
        let confirmed = self.confirmed_seq();
        let locks = self.sm.two_phase();
        let ready = |r: &PendingRead| r.seq <= confirmed && applied >= r.lsn && !read_blocked(locks, &r.req.op);
        if !self.waiting.leader_reads.iter().any(ready) {
            return;
        }
        let (ready, wait) = std::mem::take(&mut self.waiting.leader_reads)
            .into_iter()
            .partition(ready);
        self.waiting.leader_reads = wait;
        self.answer_reads(ready);
    }

    fn answer_reads(&mut self, ready: Vec<PendingRead>) {
        for r in ready {
            let answer = self.local_read(&r.req);
            self.answer(r.req.token, answer);
        }
    }

    /// Answers the requests whose deadline passed.
    pub(super) fn expire(&mut self) {
        let now = self.now_ms;
        let expired: Vec<u64> = self
            .waiting
            .writes
            .iter()
            .filter(|(_, w)| w.deadline_ms <= now)
            .map(|(l, _)| *l)
            .collect();
        for lsn in expired {
            if let Some(w) = self.waiting.writes.remove(&lsn) {
                let answer = Answer {
                    lsn: Some(lsn),
                    ..Answer::unknown(w.id, "timed out waiting for replication")
                };
                self.answer(w.token, answer);
            }
        }
        self.expire_reads();
        self.expire_txns();
        self.expire_parked();
    }

    fn expire_reads(&mut self) {
        let now = self.now_ms;
        let expired = |r: &PendingRead| r.deadline_ms <= now;
        if !self
            .waiting
            .leader_reads
            .iter()
            .chain(&self.waiting.lsn_reads)
            .any(expired)
        {
            return;
        }
        let (dead, live): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting.leader_reads)
            .into_iter()
            .partition(|r| r.deadline_ms <= now);
        self.waiting.leader_reads = live;
        for r in dead {
            self.answer(
                r.req.token,
                Answer::unknown(r.req.id, "leadership not confirmed in time"),
            );
        }
        let (dead, live): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting.lsn_reads)
            .into_iter()
            .partition(|r| r.deadline_ms <= now);
        self.waiting.lsn_reads = live;
        for r in dead {
            let answer = Answer {
                leader_hint: self.leader.clone(),
                ..Answer::fail(r.req.id, "replica has not applied the session's LSN")
            };
            self.answer(r.req.token, answer);
        }
    }

    /// A leader that stops leading cannot know the fate of its pending
    /// writes (a new leader may still commit them): they become unknown.
    pub(super) fn abandon_pending(&mut self) {
        for (_, w) in std::mem::take(&mut self.waiting.writes) {
            self.answer(w.token, Answer::unknown(w.id, "leadership lost"));
        }
        for r in std::mem::take(&mut self.waiting.leader_reads) {
            self.answer(r.req.token, Answer::fail(r.req.id, "leadership lost before the read"));
        }
        self.abandon_txns();
        self.abandon_parked();
        self.leading.progress.clear();
    }

    /// Writes at `lsn` and later whose entries were truncated: unknown.
    pub(super) fn forget_writes_from(&mut self, lsn: u64) {
        let gone = self.waiting.writes.split_off(&lsn);
        for (_, w) in gone {
            self.answer(w.token, Answer::unknown(w.id, "entry truncated"));
        }
    }

    // ----- applying ------------------------------------------------------

    /// Applies committed entries: at once on the leader, `replay_delay_ms`
    /// after learning the commit on a follower.
    pub(super) fn apply_ready(&mut self) {
        let target = if self.role == Role::Leader || self.settings().replay_delay_ms == 0 {
            self.following.replay_queue.clear();
            self.commit_lsn
        } else {
            self.delayed_apply_target()
        };
        self.apply_to(target.min(self.commit_lsn));
    }

    fn delayed_apply_target(&mut self) -> u64 {
        let delay = self.settings().replay_delay_ms;
        let now = self.now_ms;
        let mut target = self.applied_lsn;
        while let Some((lsn, at)) = self.following.replay_queue.front() {
            if now.saturating_sub(*at) < delay {
                break;
            }
            target = target.max(*lsn);
            self.following.replay_queue.pop_front();
        }
        target
    }

    pub(super) fn apply_to(&mut self, target: u64) {
        while self.applied_lsn < target {
            let lsn = self.applied_lsn + 1;
            // Applied in place: the log and the state machine are apart.
            let Some(entry) = self.log.entry(lsn) else {
                break;
            };
            let epoch = entry.epoch;
            self.txns.versions.before_apply(lsn, &entry.cmd, &self.sm);
            let result = self.sm.apply_at(lsn, &entry.cmd);
            self.applied_lsn = lsn;
            self.reply_applied(lsn, epoch, result);
        }
        self.maybe_compact();
    }

    fn reply_applied(&mut self, lsn: u64, epoch: u64, result: Applied) {
        let Some(w) = self.waiting.writes.remove(&lsn) else {
            return;
        };
        if w.epoch != epoch {
            // Our entry was replaced by another leader's: outcome unknown to us.
            return self.answer(w.token, Answer::unknown(w.id, "entry replaced by another leader"));
        }
        let mut answer = match result {
            Applied::Ok => Answer::ok(w.id),
            Applied::Txn(done) => Answer {
                value: w.value.unwrap_or(done),
                ..Answer::ok(w.id)
            },
            Applied::Rejected(why) => Answer::fail(w.id, why),
        };
        debug_assert!(
            answer.outcome != Outcome::Ok || self.ack_point() >= lsn,
            "acknowledging lsn {lsn} beyond the ack policy's durable copies ({})",
            self.ack_point()
        );
        answer.lsn = Some(lsn);
        self.answer(w.token, answer);
    }

    fn maybe_compact(&mut self) {
        let every = self.settings().snapshot_every_entries;
        if self.applied_lsn >= self.log.base_lsn() + every {
            self.compact();
        }
    }

    /// Snapshots the state machine at the applied LSN and drops the log
    /// before it (memory and disk).
    pub(super) fn compact(&mut self) {
        let lsn = self.applied_lsn;
        let epoch = self.log.epoch_at(lsn).unwrap_or(self.log.base_epoch());
        let snap = Arc::new(Snapshot {
            lsn,
            epoch,
            state: self.sm.clone(),
        });
        self.log.compact_to(lsn, epoch);
        self.snapshot = Some(snap.clone());
        self.out.push(Output::Wal(WalCmd::Compact(Box::new((*snap).clone()))));
        info!(node = %self.cfg.node, shard = self.cfg.shard, epoch = self.hard.epoch, lsn, "snapshot taken");
    }
}
