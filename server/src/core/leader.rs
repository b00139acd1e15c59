//! The leader's side of replication: shipping the log, counting copies,
//! moving the commit LSN, and stepping down without a majority.
//!
//! Promise: the commit LSN moves only as far as the `ack` policy's durable
//! copies allow, only over an entry of the leader's own epoch (Raft's
//! rule), and never back.

use super::{Core, Message, Progress, Role};
use crate::config::{Ack, Failover};
use crate::state::Entry;
use tracing::{debug, info, warn};

impl Core {
    pub(super) fn leader_tick(&mut self) {
        let now = self.now_ms;
        let hb = self.settings().heartbeat_ms;
        let ship = self.settings().async_ship_ms;
        if now.saturating_sub(self.leading.last_heartbeat_ms) >= hb {
            self.replicate(true);
        } else if self.async_shipping() && now.saturating_sub(self.leading.last_ship_ms) >= ship {
            self.replicate(false);
        }
        if self.settings().failover == Failover::Fenced {
            self.check_quorum();
        }
        self.snapshot_lagging_followers();
    }

    /// A fenced leader that has not heard from a majority for an election
    /// timeout steps down, so it stops serving reads and taking writes.
    fn check_quorum(&mut self) {
        let window = self.settings().election_timeout_ms;
        let now = self.now_ms;
        if now.saturating_sub(self.leading.since_ms) < window {
            return;
        }
        let recent = self
            .leading
            .progress
            .values()
            .filter(|p| now.saturating_sub(p.last_ack_ms) < window)
            .count();
        if recent + 1 < self.majority() {
            warn!(node = %self.cfg.node, shard = self.cfg.shard, epoch = self.hard.epoch, lsn = self.log.last_lsn(), "lost contact with a majority; stepping down");
            self.step_down(self.hard.epoch, None);
        }
    }

    /// Highest heartbeat round acknowledged by a majority (self included).
    pub(super) fn confirmed_seq(&self) -> u64 {
        let followers = self.leading.progress.values().map(|p| p.acked_seq);
        kth_largest(followers.chain([self.leading.hb_seq]), self.majority())
    }

    /// Sends entries (or heartbeats) to every follower.
    pub(super) fn replicate(&mut self, heartbeat: bool) {
        let heartbeat = heartbeat || self.reads_need_round();
        self.leading.last_ship_ms = self.now_ms;
        if heartbeat {
            self.leading.hb_seq += 1;
            self.leading.hb_sent_seq = self.leading.hb_seq;
            self.leading.last_heartbeat_ms = self.now_ms;
        }
        // Taken for the loop (and put back) rather than cloned: this runs
        // at the end of every batch on the leader.
        let peers = std::mem::take(&mut self.peers);
        for peer in &peers {
            self.replicate_to(peer, heartbeat);
        }
        self.peers = peers;
    }

    /// `ack=none` is asynchronous replication as PostgreSQL's WAL sender or
    /// MySQL's binlog dump does it: only the part of the log that is already
    /// durable on the leader is shipped, by a sender that wakes up every
    /// `async_ship_ms`, after the client has been answered. That gap is the
    /// replication lag an asynchronous leader's crash loses.
    pub(super) fn async_shipping(&self) -> bool {
        self.settings().ack == Ack::None
    }

    pub(super) fn reads_need_round(&self) -> bool {
        let sent = self.leading.hb_sent_seq;
        self.waiting.leader_reads.iter().any(|r| r.seq > sent)
    }

    fn replicate_to(&mut self, peer: &str, heartbeat: bool) {
        let max_batch = self.settings().max_batch_entries as u64;
        let inflight_max = max_batch * 8;
        let last = if self.async_shipping() {
            self.log.last_lsn().min(self.durable_lsn)
        } else {
            self.log.last_lsn()
        };
        let Some(p) = self.leading.progress.get(peer) else {
            return;
        };
        let (next, matched) = (p.next_lsn, p.match_lsn);
        if next <= self.log.base_lsn() {
            return self.send_snapshot(peer);
        }
        let room = (matched + inflight_max).saturating_sub(next - 1);
        let upto = last.min(next - 1 + max_batch.min(room));
        if upto < next && !heartbeat {
            return;
        }
        let entries: Vec<Entry> = (next..=upto).filter_map(|l| self.log.entry(l).cloned()).collect();
        let prev_lsn = next - 1;
        let msg = Message::Append {
            epoch: self.hard.epoch,
            prev_lsn,
            prev_epoch: self.log.epoch_at(prev_lsn).unwrap_or(0),
            commit_lsn: self.commit_lsn,
            seq: self.leading.hb_seq,
            entries,
        };
        self.send(peer, msg);
        if let Some(p) = self.leading.progress.get_mut(peer) {
            p.next_lsn = upto.max(prev_lsn) + 1;
        }
    }

    fn send_snapshot(&mut self, peer: &str) {
        let timeout = self.settings().election_timeout_ms;
        let now = self.now_ms;
        let Some(snap) = self.snapshot.clone() else {
            return;
        };
        let Some(p) = self.leading.progress.get_mut(peer) else {
            return;
        };
        if p.snapshot_sent_ms.is_some_and(|t| now.saturating_sub(t) < timeout) {
            return;
        }
        p.snapshot_sent_ms = Some(now);
        info!(node = %self.cfg.node, shard = self.cfg.shard, epoch = self.hard.epoch, lsn = snap.lsn, peer, "sending snapshot to lagging follower");
        let msg = Message::Snapshot {
            epoch: self.hard.epoch,
            snapshot: snap,
            seq: self.leading.hb_seq,
        };
        self.send(peer, msg);
    }

    pub(super) fn on_append_resp(
        &mut self,
        from: &str,
        epoch: u64,
        success: bool,
        match_lsn: u64,
        last_lsn: u64,
        seq: u64,
    ) {
        if epoch > self.hard.epoch {
            return self.step_down(epoch, None);
        }
        if epoch < self.hard.epoch || self.role != Role::Leader {
            return;
        }
        let base = self.log.base_lsn();
        let now = self.now_ms;
        let Some(p) = self.leading.progress.get_mut(from) else {
            return;
        };
        p.acked_seq = p.acked_seq.max(seq);
        p.last_ack_ms = now;
        if success {
            if match_lsn > p.match_lsn {
                p.match_lsn = match_lsn;
                p.snapshot_sent_ms = None;
            }
            p.next_lsn = p.next_lsn.max(p.match_lsn + 1);
        } else {
            // Back up to where the follower's log may match; below the
            // snapshot point this turns into a snapshot transfer.
            p.next_lsn = (p.match_lsn + 1).max(p.next_lsn.min(last_lsn + 1));
            if p.next_lsn <= base {
                p.snapshot_sent_ms = None;
            }
        }
    }

    /// Moves the commit LSN as far as the `ack` policy allows.
    pub(super) fn advance_commit(&mut self) {
        let candidate = self.ack_point();
        if candidate <= self.commit_lsn {
            return;
        }
        // Raft's rule: count replicas only for entries of our own epoch.
        if self.log.epoch_at(candidate) != Some(self.hard.epoch) {
            return;
        }
        debug!(node = %self.cfg.node, shard = self.cfg.shard, epoch = self.hard.epoch, lsn = candidate, "commit advanced");
        self.commit_lsn = candidate;
    }

    /// The highest LSN the `ack` policy's durable copies cover.
    pub(super) fn ack_point(&self) -> u64 {
        let own = self.durable_lsn.min(self.log.last_lsn());
        let followers = self.leading.progress.values().map(|p| p.match_lsn);
        match self.settings().ack {
            Ack::None => own,
            Ack::All => followers.fold(own, u64::min),
            Ack::Any(k) => own.min(kth_largest(followers, k)),
            Ack::Majority => kth_largest(followers.chain([own]), self.majority()),
        }
    }

    /// Leader: a follower more than `snapshot_lag_entries` behind is
    /// rebuilt from a snapshot instead of the log (at most one forced
    /// snapshot per election timeout), like a full resync once a
    /// replication backlog is exceeded.
    fn snapshot_lagging_followers(&mut self) {
        let max_lag = self.settings().snapshot_lag_entries;
        if max_lag == 0 || self.applied_lsn <= self.log.base_lsn() {
            return;
        }
        let window = self.settings().election_timeout_ms;
        let now = self.now_ms;
        if self
            .leading
            .last_forced_snapshot_ms
            .is_some_and(|t| now.saturating_sub(t) < window)
        {
            return;
        }
        let (last, base) = (self.log.last_lsn(), self.log.base_lsn());
        let lagging = self
            .leading
            .progress
            .iter()
            .find(|(_, p)| last.saturating_sub(p.match_lsn) > max_lag && p.next_lsn > base)
            .map(|(peer, p)| (peer.clone(), p.match_lsn));
        let Some((peer, match_lsn)) = lagging else {
            return;
        };
        info!(node = %self.cfg.node, shard = self.cfg.shard, epoch = self.hard.epoch, lsn = last, peer = %peer, match_lsn, "follower too far behind; snapshot instead of log");
        self.leading.last_forced_snapshot_ms = Some(now);
        self.compact();
        if let Some(p) = self.leading.progress.get_mut(&peer) {
            p.next_lsn = p.next_lsn.min(p.match_lsn + 1);
        }
    }

    /// A fresh view of every follower, for a new leadership.
    pub(super) fn fresh_progress(&self) -> std::collections::BTreeMap<String, Progress> {
        let next = self.log.last_lsn() + 1;
        let fresh = |p: &String| {
            let prog = Progress {
                next_lsn: next,
                match_lsn: 0,
                acked_seq: 0,
                last_ack_ms: self.now_ms,
                snapshot_sent_ms: None,
            };
            (p.clone(), prog)
        };
        self.peers.iter().map(fresh).collect()
    }
}

/// Values sorted on the stack by [`kth_largest`]; a larger group sorts a
/// copy on the heap.
const KTH_ON_STACK: usize = 8;

/// The `k`-th largest of `values` (counting from 1), or 0 when there are
/// fewer than `k`. It runs after every batch on a leader, so a group of a
/// handful of members sorts them on the stack instead of in a new vector.
fn kth_largest(values: impl Iterator<Item = u64> + Clone, k: usize) -> u64 {
    let mut small = [0u64; KTH_ON_STACK];
    let mut n = 0;
    for v in values.clone() {
        if n == KTH_ON_STACK {
            return kth_of(&mut values.collect::<Vec<u64>>(), k);
        }
        small[n] = v;
        n += 1;
    }
    kth_of(&mut small[..n], k)
}

fn kth_of(values: &mut [u64], k: usize) -> u64 {
    values.sort_unstable_by(|a, b| b.cmp(a));
    k.checked_sub(1).and_then(|i| values.get(i)).copied().unwrap_or(0)
}

#[cfg(test)]
mod kth_tests {
    use super::kth_largest;

    #[test]
    fn kth_largest_is_the_sorted_position() {
        let values = [5u64, 1, 9, 5, 3];
        let mut sorted = values.to_vec();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        for k in 1..=values.len() {
            assert_eq!(kth_largest(values.iter().copied(), k), sorted[k - 1], "k = {k}");
        }
        assert_eq!(kth_largest(values.iter().copied(), 6), 0, "fewer values than k");
        assert_eq!(kth_largest(std::iter::empty(), 1), 0);
        let many: Vec<u64> = (0..20).map(|i| (i * 7) % 20).collect();
        assert_eq!(
            kth_largest(many.iter().copied(), 3),
            17,
            "more values than the stack holds"
        );
    }
}
