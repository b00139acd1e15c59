//! Elections and roles: pre-votes, votes, promotion and stepping down.
//!
//! Promise: the epoch only grows, and is persisted (with the vote) before
//! any message that depends on it; with `failover=fenced` one epoch has at
//! most one leader (a majority of votes, each persisted, at most one per
//! voter and epoch, for an up-to-date log only). `unfenced` promotions take
//! epochs dealt to the promoting node alone ([`own_epoch_after`]).

use super::{Core, Message, Role};
use crate::config::Failover;
use crate::state::Command;
use tracing::{debug, info, warn};

/// The next epoch `node` may promote itself into without votes.
/// Epochs are dealt round-robin to the members, so two followers that
/// promote themselves at the same moment never share one, and
/// (lsn, epoch) still names a single entry even in split brain: the
/// follower of the higher epoch truncates the other's suffix by plain
/// log matching. (Sharing an epoch, the loser kept writes the winner
/// never had, and the replicas never converged.)
pub fn own_epoch_after(members: &[String], node: &str, epoch: u64) -> u64 {
    let n = members.len().max(1) as u64;
    let me = members.iter().position(|m| m == node).unwrap_or(0) as u64;
    let next = epoch + 1;
    next + (me + n - next % n) % n
}

impl Core {
    pub(super) fn on_election_timeout(&mut self) {
        match self.settings().failover {
            Failover::Off => self.reset_election_timer(),
            Failover::Fenced => self.start_prevote(),
            Failover::Unfenced => {
                warn!(node = %self.cfg.node, shard = self.cfg.shard, epoch = self.hard.epoch, lsn = self.log.last_lsn(), "missed heartbeats; promoting myself without votes (unfenced)");
                self.become_leader(own_epoch_after(&self.cfg.members, &self.cfg.node, self.hard.epoch));
            }
        }
    }

    /// The (epoch, lsn) of the last entry: what "up to date" compares.
    fn log_position(&self) -> (u64, u64) {
        (self.log.last_epoch(), self.log.last_lsn())
    }

    /// Asks whether a majority would vote for us before taking a new epoch.
    fn start_prevote(&mut self) {
        self.campaign.prevote_epoch = self.hard.epoch + 1;
        self.campaign.prevotes = vec![self.cfg.node.clone()];
        self.reset_election_timer();
        if self.campaign.prevotes.len() >= self.majority() {
            return self.start_election();
        }
        debug!(node = %self.cfg.node, shard = self.cfg.shard, epoch = self.hard.epoch, lsn = self.log.last_lsn(), "pre-vote");
        let (last_epoch, last_lsn) = self.log_position();
        let msg = Message::PreVote {
            epoch: self.campaign.prevote_epoch,
            last_lsn,
            last_epoch,
        };
        self.send_to_peers(&msg);
    }

    /// Grants a pre-vote when a real vote would be granted and we have not
    /// heard from a live leader within an election timeout (leader
    /// stickiness). Changes no state.
    pub(super) fn on_prevote(&mut self, from: &str, epoch: u64, position: (u64, u64)) {
        if self.settings().failover != Failover::Fenced {
            return;
        }
        let window = self.settings().election_timeout_ms;
        let now = self.now_ms;
        let heard_lately = self
            .following
            .last_leader_contact_ms
            .is_some_and(|t| now.saturating_sub(t) < window && self.leader.is_some());
        let leader_alive = self.role == Role::Leader || heard_lately;
        let up_to_date = position >= self.log_position();
        let granted = epoch > self.hard.epoch && up_to_date && !leader_alive;
        let msg = Message::PreVoteResp {
            epoch,
            granted,
            voter_epoch: self.hard.epoch,
        };
        self.send(from, msg);
    }

    pub(super) fn on_prevote_resp(&mut self, from: &str, epoch: u64, granted: bool, voter_epoch: u64) {
        if !granted && voter_epoch > self.hard.epoch {
            // The voter is in a later epoch than ours: take it (as for any
            // higher epoch), so our next pre-vote asks for one past it. Its
            // vote may then follow our log, should ours be the better one.
            return self.step_down(voter_epoch, None);
        }
        if self.role == Role::Leader || !granted || epoch != self.campaign.prevote_epoch {
            return;
        }
        if epoch != self.hard.epoch + 1 {
            return;
        }
        if !self.campaign.prevotes.iter().any(|v| v == from) {
            self.campaign.prevotes.push(from.to_string());
        }
        if self.campaign.prevotes.len() >= self.majority() {
            self.campaign.prevotes.clear();
            self.start_election();
        }
    }

    pub(super) fn start_election(&mut self) {
        self.hard.epoch += 1;
        self.hard.voted_for = Some(self.cfg.node.clone());
        self.persist_hard_state();
        self.role = Role::Candidate;
        self.leader = None;
        self.campaign.votes = vec![self.cfg.node.clone()];
        self.reset_election_timer();
        info!(node = %self.cfg.node, shard = self.cfg.shard, epoch = self.hard.epoch, lsn = self.log.last_lsn(), "starting election");
        if self.campaign.votes.len() >= self.majority() {
            return self.become_leader(self.hard.epoch);
        }
        let (last_epoch, last_lsn) = self.log_position();
        let msg = Message::Vote {
            epoch: self.hard.epoch,
            last_lsn,
            last_epoch,
        };
        self.send_to_peers(&msg);
    }

    pub(super) fn on_vote(&mut self, from: &str, epoch: u64, position: (u64, u64)) {
        if self.settings().failover != Failover::Fenced {
            return;
        }
        if epoch > self.hard.epoch {
            self.step_down(epoch, None);
        }
        let up_to_date = position >= self.log_position();
        let free = self.hard.voted_for.is_none() || self.hard.voted_for.as_deref() == Some(from);
        let granted = epoch == self.hard.epoch && free && up_to_date;
        if granted {
            self.hard.voted_for = Some(from.to_string());
            // Persist the vote before it leaves this node.
            self.persist_hard_state();
            self.reset_election_timer();
        }
        debug!(node = %self.cfg.node, shard = self.cfg.shard, epoch = self.hard.epoch, lsn = self.log.last_lsn(), candidate = from, granted, "vote requested");
        let msg = Message::VoteResp {
            epoch: self.hard.epoch,
            granted,
        };
        self.send(from, msg);
    }

    pub(super) fn on_vote_resp(&mut self, from: &str, epoch: u64, granted: bool) {
        if epoch > self.hard.epoch {
            return self.step_down(epoch, None);
        }
        if self.role != Role::Candidate || epoch != self.hard.epoch || !granted {
            return;
        }
        if !self.campaign.votes.iter().any(|v| v == from) {
            self.campaign.votes.push(from.to_string());
        }
        debug_assert!(
            self.campaign.votes.len() <= self.cfg.members.len(),
            "more votes than members"
        );
        if self.campaign.votes.len() >= self.majority() {
            self.become_leader(self.hard.epoch);
        }
    }

    pub(super) fn become_leader(&mut self, epoch: u64) {
        debug_assert!(epoch >= self.hard.epoch, "promotion into past epoch {epoch}");
        if epoch != self.hard.epoch {
            self.hard.epoch = epoch;
            self.hard.voted_for = Some(self.cfg.node.clone());
            self.persist_hard_state();
        }
        self.role = Role::Leader;
        self.leader = Some(self.cfg.node.clone());
        self.leading.since_ms = self.now_ms;
        self.leading.progress = self.fresh_progress();
        // Everything committed so far must become visible before we serve.
        self.following.replay_queue.clear();
        let commit = self.commit_lsn;
        self.apply_to(commit);
        let lsn = self.append_local(Command::Noop);
        info!(node = %self.cfg.node, shard = self.cfg.shard, epoch, lsn, "became leader");
        self.replicate(true);
    }

    /// Leaves the leader or candidate role (or adopts a higher epoch).
    pub(super) fn step_down(&mut self, epoch: u64, leader: Option<String>) {
        if epoch > self.hard.epoch {
            self.hard.epoch = epoch;
            self.hard.voted_for = None;
            self.persist_hard_state();
        }
        let was_leader = self.role == Role::Leader;
        self.role = Role::Follower;
        self.leader = leader;
        self.following.verified_lsn = 0;
        self.following.reported_match = 0;
        // A new epoch's leader counts its own heartbeat rounds.
        self.following.last_seq_seen = 0;
        self.reset_election_timer();
        if was_leader {
            info!(node = %self.cfg.node, shard = self.cfg.shard, epoch, lsn = self.log.last_lsn(), "stepped down");
            self.abandon_pending();
        }
    }
}
