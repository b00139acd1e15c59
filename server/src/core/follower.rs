//! The follower's side of replication: accepting a leader, matching and
//! merging its log, truncating a conflicting suffix, installing snapshots,
//! and reporting what is durable.
//!
//! Promise: a follower reports as matched only entries that are both
//! durable on its disk and known to match the current leader's log, and
//! drops committed entries only when the settings allow losing them (no
//! fencing, or an `ack` weaker than a majority).

use super::{Core, Message, Output, Role};
use crate::config::{Ack, Failover};
use crate::state::{Entry, StateMachine};
use crate::wal::{Durable, Snapshot, WalCmd};
use std::sync::Arc;
use tracing::{error, info, warn};

/// An `Append` message's fields.
pub(super) struct Append {
    pub epoch: u64,
    pub prev_lsn: u64,
    pub prev_epoch: u64,
    pub entries: Vec<Entry>,
    pub commit_lsn: u64,
    pub seq: u64,
}

impl Core {
    pub(super) fn on_durable(&mut self, d: Durable) {
        if d.gen != self.gen {
            return;
        }
        self.durable_lsn = d.lsn.min(self.log.last_lsn());
        if self.role != Role::Leader {
            self.report_match(false);
        }
    }

    /// Follower: tells the leader how far its log is durable and matching.
    fn report_match(&mut self, force: bool) {
        let Some(to) = self.leader.clone() else {
            return;
        };
        let m = self.durable_lsn.min(self.following.verified_lsn);
        if !force && m <= self.following.reported_match {
            return;
        }
        self.following.reported_match = self.following.reported_match.max(m);
        let msg = Message::AppendResp {
            epoch: self.hard.epoch,
            success: true,
            match_lsn: m,
            last_lsn: self.log.last_lsn(),
            seq: self.following.last_seq_seen,
        };
        // The leader's name is already a copy: no second one for `send`.
        self.out.push(Output::Send { to, msg });
    }

    /// Accepts a message from a leader of `epoch`; false if it is stale.
    fn accept_leader(&mut self, from: &str, epoch: u64) -> bool {
        if epoch < self.hard.epoch {
            return false;
        }
        if self.role == Role::Leader && epoch == self.hard.epoch {
            // Never expected: fenced elections have one winner per epoch
            // and unfenced promotions take epochs of their own. Should it
            // happen, the higher id keeps the role.
            if from < self.cfg.node.as_str() {
                return false;
            }
            warn!(node = %self.cfg.node, shard = self.cfg.shard, epoch, peer = from, "another leader in my epoch; yielding");
        }
        if epoch > self.hard.epoch || self.role != Role::Follower {
            self.step_down(epoch, Some(from.to_string()));
        }
        if self.leader.as_deref() != Some(from) {
            info!(node = %self.cfg.node, shard = self.cfg.shard, epoch, leader = from, "following new leader");
            self.leader = Some(from.to_string());
            self.following.verified_lsn = 0;
            self.following.reported_match = 0;
            // Heartbeat rounds are counted per leader: echoing the old
            // leader's (higher) round to the new one would confirm its
            // leader reads without a round of its own.
            self.following.last_seq_seen = 0;
        }
        self.following.last_leader_contact_ms = Some(self.now_ms);
        self.reset_election_timer();
        true
    }

    pub(super) fn on_append(&mut self, from: &str, m: Append) {
        if !self.accept_leader(from, m.epoch) {
            return self.reject(from, m.seq);
        }
        self.following.last_seq_seen = self.following.last_seq_seen.max(m.seq);
        if m.prev_lsn > self.log.last_lsn() {
            return self.reject(from, m.seq);
        }
        if m.prev_lsn >= self.log.base_lsn() && self.log.epoch_at(m.prev_lsn) != Some(m.prev_epoch) {
            return self.reject_at(from, m.seq, m.prev_lsn.saturating_sub(1));
        }
        let last_new = m.prev_lsn + m.entries.len() as u64;
        if !self.merge_entries(m.entries) {
            // Rewound to an empty state: start again from the beginning.
            return self.reject_at(from, m.seq, 0);
        }
        let base = self.log.base_lsn();
        self.following.verified_lsn = self.following.verified_lsn.max(last_new.max(base));
        let new_commit = m.commit_lsn.min(last_new.max(base));
        if new_commit > self.commit_lsn {
            self.commit_lsn = new_commit;
            self.following.replay_queue.push_back((new_commit, self.now_ms));
        }
        self.report_match(true);
    }

    /// Appends what is new and replaces a conflicting suffix. False when
    /// the node had to rewind instead (nothing merged).
    fn merge_entries(&mut self, entries: Vec<Entry>) -> bool {
        let mut fresh = Vec::new();
        for e in entries {
            if e.lsn <= self.log.base_lsn() {
                continue;
            }
            if !fresh.is_empty() || e.lsn > self.log.last_lsn() {
                fresh.push(e);
                continue;
            }
            if self.log.epoch_at(e.lsn) != Some(e.epoch) {
                if !self.truncate_from(e.lsn) {
                    // We rewound to an empty state; the leader resends.
                    return false;
                }
                fresh.push(e);
            }
        }
        for e in &fresh {
            self.log.push(e.clone());
        }
        self.wal_buf.extend(fresh);
        true
    }

    /// Whether losing committed entries would break the settings' promise.
    fn fenced_majority(&self) -> bool {
        self.settings().failover == Failover::Fenced && matches!(self.settings().ack, Ack::Majority | Ack::All)
    }

    /// Drops entries from `lsn` on. Returns false when they were already
    /// applied and the node had to rewind to an empty state instead.
    fn truncate_from(&mut self, lsn: u64) -> bool {
        let dropped = self.log.last_lsn() + 1 - lsn;
        if lsn <= self.commit_lsn {
            // Only possible without fencing (or with ack policies weaker than
            // a majority): the new leader's history lacks writes this node
            // committed. They are lost, as in the real systems.
            let commit_lsn = self.commit_lsn;
            if self.fenced_majority() {
                error!(node = %self.cfg.node, shard = self.cfg.shard, epoch = self.hard.epoch, lsn, commit_lsn, "leader's log conflicts with committed entries");
                // Only with every write synced is this impossible: under
                // fsync=never or batch a power loss may forget a quorum's copies.
                debug_assert!(
                    !self.commit_is_final(),
                    "fenced majority: entry {lsn} <= commit {commit_lsn} conflicts"
                );
            } else {
                warn!(node = %self.cfg.node, shard = self.cfg.shard, epoch = self.hard.epoch, lsn, commit_lsn, dropped, "discarding committed entries the new leader never had");
            }
        }
        self.flush_wal_buf();
        if lsn <= self.applied_lsn {
            self.rewind();
            return false;
        }
        warn!(node = %self.cfg.node, shard = self.cfg.shard, epoch = self.hard.epoch, lsn, dropped, "truncating suffix that conflicts with the leader");
        self.log.truncate_from(lsn);
        self.commit_lsn = self.commit_lsn.min(lsn - 1);
        self.following.replay_queue.retain(|(l, _)| *l < lsn);
        self.gen += 1;
        self.durable_lsn = self.durable_lsn.min(lsn - 1);
        self.following.verified_lsn = self.following.verified_lsn.min(lsn - 1);
        let gen = self.gen;
        self.out.push(Output::Wal(WalCmd::Truncate { from_lsn: lsn, gen }));
        self.forget_writes_from(lsn);
        true
    }

    /// Forgets everything (state, log, snapshot) so the leader rebuilds this
    /// replica from its log or a snapshot: the only way to undo writes that
    /// were applied but are not in the new leader's history.
    fn rewind(&mut self) {
        warn!(node = %self.cfg.node, shard = self.cfg.shard, epoch = self.hard.epoch, lsn = self.applied_lsn, "rewinding to an empty state to follow the new leader");
        let empty = Snapshot {
            lsn: 0,
            epoch: 0,
            state: StateMachine::new(),
        };
        self.install_state(Arc::new(empty));
        self.following.verified_lsn = 0;
    }

    /// Replaces log and state by a snapshot (durably, through the writer).
    fn install_state(&mut self, snap: Arc<Snapshot>) {
        self.wal_buf.clear();
        self.log.reset(snap.lsn, snap.epoch);
        self.commit_lsn = snap.lsn;
        self.applied_lsn = snap.lsn;
        self.following.verified_lsn = snap.lsn;
        self.following.replay_queue.clear();
        self.sm = snap.state.clone();
        self.gen += 1;
        self.durable_lsn = 0;
        self.snapshot = if snap.lsn > 0 { Some(snap.clone()) } else { None };
        let gen = self.gen;
        let snapshot = Box::new((*snap).clone());
        self.out.push(Output::Wal(WalCmd::Install { snapshot, gen }));
        // Writes this node took as a leader and that the snapshot replaced.
        self.forget_writes_from(snap.lsn + 1);
    }

    fn reject(&mut self, from: &str, seq: u64) {
        self.reject_at(from, seq, self.log.last_lsn());
    }

    fn reject_at(&mut self, from: &str, seq: u64, hint: u64) {
        let msg = Message::AppendResp {
            epoch: self.hard.epoch,
            success: false,
            match_lsn: 0,
            last_lsn: hint.min(self.log.last_lsn()),
            seq,
        };
        self.send(from, msg);
    }

    pub(super) fn on_snapshot(&mut self, from: &str, epoch: u64, snap: &Arc<Snapshot>, seq: u64) {
        if !self.accept_leader(from, epoch) {
            return self.reject(from, seq);
        }
        self.following.last_seq_seen = self.following.last_seq_seen.max(seq);
        if snap.lsn <= self.commit_lsn {
            self.following.verified_lsn = self.following.verified_lsn.max(snap.lsn);
            return self.report_match(true);
        }
        info!(node = %self.cfg.node, shard = self.cfg.shard, epoch, lsn = snap.lsn, "installing snapshot from leader");
        self.install_state(snap.clone());
    }
}
