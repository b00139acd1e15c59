//! The single-leader replication core: every protocol decision of a
//! replication group (one shard), with no I/O, no clock and no tasks.
//!
//! Promises (each one is a knob of the lab, see REPLICATION_LAB.md):
//! - **Deterministic.** The core is a state machine in the manner of
//!   raft-rs's `RawNode`: [`Input`]s in (peer messages, client requests,
//!   ticks, disk-write completions), [`Output`]s out (messages to send, disk
//!   writes to issue, the vote to persist, client answers). Time is the
//!   `now_ms` passed with each input; the only randomness (election timer
//!   jitter) comes from the seed given to [`Core::new`]. The same inputs
//!   give the same outputs, which is what lets the simulation in
//!   `faultline-sim` replay any schedule from its seed.
//! - **Outputs in order.** The driver must carry out outputs in the order
//!   they come: a [`Output::SaveHardState`] (epoch and vote) comes before
//!   the messages that depend on it, so a vote is durable before it leaves.
//! - Log matching as in Raft: an entry is identified by (lsn, epoch); a
//!   follower accepts entries only after the leader's previous entry
//!   matches, and replaces a conflicting uncommitted suffix (which is how a
//!   deposed leader's unreplicated writes disappear when it rejoins).
//! - A follower reports an entry as matched only once its log writer says
//!   it is durable ([`Input::Durable`]), so `ack=majority,fsync=always`
//!   means "on the disk of a majority".
//! - The commit LSN follows `ack` (all, majority, any:N, none) and only ever
//!   counts entries of the leader's own epoch (Raft's rule), so `majority`
//!   with `failover=fenced` never loses an acknowledged write.
//! - `failover=fenced`: Raft election with pre-vote (vote persisted before
//!   answering, log up-to-date check, lower epochs rejected, a leader steps
//!   down without a majority). `unfenced`: a follower that misses
//!   heartbeats promotes itself without votes (into an epoch dealt to it
//!   alone) and an isolated leader never steps down (split brain). `off`:
//!   the configured leader leads forever.
//! - Reads: `leader` waits for a majority to confirm the leader's epoch
//!   after the read arrived (read index); `follower`/`sticky` answer from
//!   local state; `lsn` waits, bounded, until the session's LSN is applied.
//! - Followers apply committed entries `replay_delay_ms` late.
//!
//! Debug builds assert the invariants the protocol relies on: the epoch
//! never falls, the commit LSN never falls except when a log conflict
//! proves it was never safe (no fencing or a weak `ack`), a leader holds
//! one vote per member at most, and a node acknowledges a write only once
//! the `ack` policy's copies are durable.
//!
//! Split by concern: [`log`] (the in-memory log), `leader` (shipping,
//! commit), `follower` (accepting the leader's log), `election`
//! (pre-votes, votes, roles), `client` (requests, reads, applying), `txn`
//! (isolation levels), `two_phase` (a participant shard's side of
//! two-phase commit).

mod client;
mod election;
mod follower;
mod leader;
pub mod log;
mod mvcc;
mod two_phase;
mod txn;
mod types;

use crate::config::{Failover, Settings};
use crate::state::{Entry, StateMachine};
use crate::wal::{HardState, Snapshot, WalCmd};
use log::Log;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

pub use election::own_epoch_after;
pub use two_phase::{TwoPhaseOp, PARKED_MAX, PREPARE_LOCK_WAIT_MS};
pub use txn::PENDING_TXNS_MAX;
pub use types::{Answer, CoreConfig, Input, Message, Op, Outcome, Output, Recovered, Request, Role, Status};

/// Most writes waiting for commit at once; more are refused (certainly not applied).
pub const PENDING_WRITES_MAX: usize = 65536;
/// Most reads waiting (leader confirmation or LSN catch-up).
pub const PENDING_READS_MAX: usize = 65536;

/// A write waiting for commit.
struct PendingWrite {
    epoch: u64,
    id: u64,
    token: u64,
    deadline_ms: u64,
    /// A transaction executed step by step: its answer (reads filled in).
    value: Option<serde_json::Value>,
}

/// A read waiting for leader confirmation or for an LSN.
struct PendingRead {
    req: Request,
    /// Leader reads: heartbeat round a majority must acknowledge.
    seq: u64,
    /// Leader reads: commit LSN at arrival. LSN reads: the session's LSN.
    lsn: u64,
    deadline_ms: u64,
}

/// Requests waiting for something.
#[derive(Default)]
struct Waiting {
    writes: BTreeMap<u64, PendingWrite>,
    leader_reads: Vec<PendingRead>,
    lsn_reads: Vec<PendingRead>,
}

/// The leader's view of one follower.
struct Progress {
    next_lsn: u64,
    match_lsn: u64,
    acked_seq: u64,
    last_ack_ms: u64,
    snapshot_sent_ms: Option<u64>,
}

/// What only a leader keeps.
#[derive(Default)]
struct Leading {
    progress: BTreeMap<String, Progress>,
    /// Heartbeat rounds: never reset, so followers' echoes stay comparable.
    hb_seq: u64,
    hb_sent_seq: u64,
    last_heartbeat_ms: u64,
    last_ship_ms: u64,
    since_ms: u64,
    last_forced_snapshot_ms: Option<u64>,
}

/// What a follower keeps about its leader.
#[derive(Default)]
struct Following {
    /// Highest LSN known to match the current leader's log.
    verified_lsn: u64,
    reported_match: u64,
    /// Commit LSNs learned and when (replay delay).
    replay_queue: VecDeque<(u64, u64)>,
    last_seq_seen: u64,
    last_leader_contact_ms: Option<u64>,
}

/// Votes being gathered.
#[derive(Default)]
struct Campaign {
    votes: Vec<String>,
    prevotes: Vec<String>,
    prevote_epoch: u64,
}

/// One node's replication core for one group.
pub struct Core {
    cfg: CoreConfig,
    peers: Vec<String>,
    hard: HardState,
    role: Role,
    leader: Option<String>,
    log: Log,
    commit_lsn: u64,
    applied_lsn: u64,
    durable_lsn: u64,
    /// Generation of the log writer's file (bumped at each truncation).
    gen: u64,
    sm: StateMachine,
    snapshot: Option<Arc<Snapshot>>,
    wal_buf: Vec<Entry>,
    waiting: Waiting,
    txns: txn::Txns,
    two_phase: two_phase::TwoPhaseLeader,
    leading: Leading,
    following: Following,
    campaign: Campaign,
    election_deadline_ms: u64,
    rng: StdRng,
    now_ms: u64,
    out: Vec<Output>,
}

impl Core {
    /// A core over what the node recovered, at time `now_ms`, drawing its
    /// timer jitter from `seed`. Call [`Core::start`] next.
    pub fn new(cfg: CoreConfig, rec: Recovered, seed: u64, now_ms: u64) -> Core {
        let peers = cfg.members.iter().filter(|m| **m != cfg.node).cloned().collect();
        let (log, sm, snapshot) = match rec.snapshot {
            Some(s) => (
                Log::new(s.lsn, s.epoch, rec.entries),
                s.state.clone(),
                Some(Arc::new(s)),
            ),
            None => (Log::new(0, 0, rec.entries), StateMachine::new(), None),
        };
        let base = log.base_lsn();
        let durable_lsn = log.last_lsn();
        Core {
            cfg,
            peers,
            hard: rec.hard,
            role: Role::Follower,
            leader: None,
            log,
            commit_lsn: base,
            applied_lsn: base,
            durable_lsn,
            gen: 0,
            sm,
            snapshot,
            wal_buf: Vec::new(),
            waiting: Waiting::default(),
            txns: txn::Txns::default(),
            two_phase: two_phase::TwoPhaseLeader::default(),
            leading: Leading::default(),
            following: Following::default(),
            campaign: Campaign::default(),
            election_deadline_ms: now_ms,
            rng: StdRng::seed_from_u64(seed),
            now_ms,
            out: Vec::new(),
        }
    }

    /// Sets the election timer and, on the configured first leader of a
    /// fresh cluster, takes or asks for the lead.
    pub fn start(&mut self, now_ms: u64) {
        self.set_now(now_ms);
        self.reset_election_timer();
        let first_leader = self.cfg.initial_leader == self.cfg.node;
        match self.settings().failover {
            Failover::Off if first_leader => self.become_leader(self.hard.epoch + 1),
            Failover::Unfenced if first_leader && self.hard.epoch == 0 => {
                self.become_leader(own_epoch_after(&self.cfg.members, &self.cfg.node, 0))
            }
            Failover::Fenced if first_leader && self.hard.epoch == 0 => self.start_election(),
            _ => {}
        }
    }

    /// Handles one input at `now_ms`. Call [`Core::flush`] after a batch.
    pub fn step(&mut self, now_ms: u64, input: Input) {
        self.set_now(now_ms);
        let (epoch, commit_lsn) = (self.hard.epoch, self.commit_lsn);
        match input {
            Input::Tick => self.on_tick(),
            Input::Client(req) => self.on_client(req),
            Input::Peer { from, msg } => self.on_peer(&from, msg),
            Input::Durable(d) => self.on_durable(d),
        }
        debug_assert!(
            self.hard.epoch >= epoch,
            "the epoch fell from {epoch} to {}",
            self.hard.epoch
        );
        debug_assert!(
            self.commit_lsn >= commit_lsn || !self.commit_is_final(),
            "the commit LSN fell from {commit_lsn} to {}",
            self.commit_lsn
        );
    }

    /// Whether the settings promise that a committed entry stays committed
    /// (fencing, a majority's copies, each synced before it counts).
    fn commit_is_final(&self) -> bool {
        let s = self.settings();
        s.failover == Failover::Fenced
            && matches!(s.ack, crate::config::Ack::Majority | crate::config::Ack::All)
            && s.fsync == crate::wal::FsyncPolicy::Always
    }

    /// End of a batch of inputs: write the log, ship it, commit, apply,
    /// answer.
    pub fn flush(&mut self, now_ms: u64) {
        self.set_now(now_ms);
        // Before the log is written, so a transaction that finishes now
        // ships its commit entry in this batch (and a request whose lock
        // went when the last batch applied a COMMIT or ABORT, its entry).
        self.retry_parked();
        self.step_txns();
        self.flush_wal_buf();
        if self.role == Role::Leader {
            // Synchronous policies ship at once (the ack waits for it);
            // asynchronous shipping happens on its own cadence (leader_tick),
            // except for the heartbeat rounds leader reads are waiting on.
            if !self.async_shipping() || self.reads_need_round() {
                self.replicate(false);
            }
            self.advance_commit();
        }
        self.apply_ready();
        self.serve_reads();
    }

    /// The outputs produced so far, oldest first (the core forgets them).
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.out)
    }

    /// Moves the outputs produced so far onto `into`, oldest first.
    pub fn drain_outputs_into(&mut self, into: &mut Vec<Output>) {
        into.append(&mut self.out);
    }

    /// The replication state.
    pub fn status(&self) -> Status {
        let last = self.log.last_lsn();
        let peer_lag = if self.role == Role::Leader {
            let lag = |p: &Progress| last.saturating_sub(p.match_lsn);
            self.leading.progress.iter().map(|(n, p)| (n.clone(), lag(p))).collect()
        } else {
            BTreeMap::new()
        };
        Status {
            role: self.role,
            epoch: self.hard.epoch,
            commit_lsn: self.commit_lsn,
            applied_lsn: self.applied_lsn,
            last_lsn: last,
            leader: self.leader.clone(),
            peer_lag,
        }
    }

    /// The role (cheaper than [`Core::status`]).
    pub fn role(&self) -> Role {
        self.role
    }

    /// The leader this node believes in, if any.
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.hard.epoch
    }

    /// The applied state (the simulation compares replicas with it).
    pub fn state(&self) -> &StateMachine {
        &self.sm
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.cfg.node
    }

    // ----- shared helpers ----------------------------------------------

    fn set_now(&mut self, now_ms: u64) {
        // A driver's clock may stall but must not run back.
        debug_assert!(now_ms >= self.now_ms, "time ran back from {} to {now_ms}", self.now_ms);
        self.now_ms = self.now_ms.max(now_ms);
    }

    fn settings(&self) -> &Settings {
        &self.cfg.settings
    }

    fn majority(&self) -> usize {
        self.cfg.members.len() / 2 + 1
    }

    fn send(&mut self, to: &str, msg: Message) {
        self.out.push(Output::Send {
            to: to.to_string(),
            msg,
        });
    }

    fn send_to_peers(&mut self, msg: &Message) {
        for i in 0..self.peers.len() {
            let to = self.peers[i].clone();
            self.out.push(Output::Send { to, msg: msg.clone() });
        }
    }

    fn persist_hard_state(&mut self) {
        self.out.push(Output::SaveHardState(self.hard.clone()));
    }

    fn reset_election_timer(&mut self) {
        let base = self.settings().election_timeout_ms;
        let ms = self.rng.gen_range(base..=base * 2);
        self.election_deadline_ms = self.now_ms + ms;
    }

    fn flush_wal_buf(&mut self) {
        if !self.wal_buf.is_empty() {
            let batch = std::mem::take(&mut self.wal_buf);
            self.out.push(Output::Wal(WalCmd::Append(batch)));
        }
    }

    /// Answers `token`, naming the leader when this node is not it.
    fn answer(&mut self, token: u64, mut answer: Answer) {
        if answer.leader_hint.is_none() && self.role != Role::Leader {
            answer.leader_hint = self.leader.clone();
        }
        self.out.push(Output::Answer { token, answer });
    }

    fn on_tick(&mut self) {
        match self.role {
            Role::Leader => self.leader_tick(),
            Role::Follower | Role::Candidate => {
                if self.now_ms >= self.election_deadline_ms {
                    self.on_election_timeout();
                }
            }
        }
        self.expire();
    }

    fn on_peer(&mut self, from: &str, msg: Message) {
        match msg {
            Message::Append {
                epoch,
                prev_lsn,
                prev_epoch,
                entries,
                commit_lsn,
                seq,
            } => self.on_append(
                from,
                follower::Append {
                    epoch,
                    prev_lsn,
                    prev_epoch,
                    entries,
                    commit_lsn,
                    seq,
                },
            ),
            Message::AppendResp {
                epoch,
                success,
                match_lsn,
                last_lsn,
                seq,
            } => self.on_append_resp(from, epoch, success, match_lsn, last_lsn, seq),
            Message::Vote {
                epoch,
                last_lsn,
                last_epoch,
            } => self.on_vote(from, epoch, (last_epoch, last_lsn)),
            Message::VoteResp { epoch, granted } => self.on_vote_resp(from, epoch, granted),
            Message::PreVote {
                epoch,
                last_lsn,
                last_epoch,
            } => self.on_prevote(from, epoch, (last_epoch, last_lsn)),
            Message::PreVoteResp {
                epoch,
                granted,
                voter_epoch,
            } => self.on_prevote_resp(from, epoch, granted, voter_epoch),
            Message::Snapshot { epoch, snapshot, seq } => self.on_snapshot(from, epoch, &snapshot, seq),
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod txn_2pc_tests;
#[cfg(test)]
mod txn_tests;
