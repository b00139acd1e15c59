//! The leaderless (Dynamo-style) and multi-leader replication core: every
//! decision of those modes, with no I/O, no clock and no tasks.
//!
//! Promises (each one is a knob of the lab, see REPLICATION_LAB.md):
//! - **Deterministic.** Like the single-leader [`crate::core`]: [`Input`]s
//!   in (peer messages, client requests, ticks, disk-write completions),
//!   [`Output`]s out (messages, log-writer commands, answers), in order.
//!   Time comes with each input as a [`Clock`]: the monotonic `now_ms` for
//!   the timers (request deadlines, the sloppy-quorum wait, delayed
//!   applies, hint replay, all checked on [`Input::Tick`]) and the node's
//!   wall clock for stamps. Nothing here iterates a hash map, so the same
//!   inputs give the same outputs, which lets `faultline-sim` replay any
//!   schedule from its seed.
//! - Every write carries a last-write-wins [`Stamp`] taken from the
//!   coordinating node's wall clock plus its `clock_offset_ms`; every
//!   replica keeps the value with the newest stamp. Skewed clocks therefore
//!   silently drop writes, exactly as in the real systems.
//! - Leaderless: the coordinator sends a write to the key's `n` preferred
//!   replicas and answers `ok` after `w` durable acknowledgements (else
//!   `unknown`); a read asks the `n` replicas, waits for `r` answers and
//!   returns the newest. `read_repair`, `hinted_handoff` and
//!   `sloppy_quorum` as in Dynamo (see [`coordinator`] and [`hints`]).
//! - Multi-leader: each node applies a write locally, answers once its own
//!   log has it, and ships it to every other node asynchronously (kept as
//!   a hint until delivered), so concurrent writes on two nodes conflict
//!   and last write wins. Reads are local.
//! - Each replica applies other coordinators' writes `replay_delay_ms`
//!   after it stored them ([`replica`]).
//!
//! It asserts the invariants it relies on: nothing is applied before it
//! is durable, a write answered `ok` had `w` acknowledgements, one hint
//! round at a time and the hint store within its bound, time never runs
//! back; and, in debug builds (the check copies the value), that a
//! replica keeps the newest stamp it was given.
//!
//! Split by concern: `replica` (the local log and map), `coordinator`
//! (rounds of client requests), `hints` (hinted handoff), `types` (the
//! inputs and outputs).

mod coordinator;
pub mod hints;
mod replica;
mod types;

use crate::config::{Mode, Settings};
use crate::core::{Answer, Recovered};
use crate::state::{Stamp, StateMachine};
use crate::wal::WalCmd;
use coordinator::{ClientOp, Done, ReadRound, WriteRound};
use hints::{HintRound, Hints};
use replica::{AckTo, Replica};
use std::collections::{BTreeMap, VecDeque};

pub use hints::HINTS_MAX;
pub use types::{Clock, Get, GetResp, Input, Message, Output, Put, PutAck, QuorumConfig, Status};

/// FNV-1a: a stable hash, the same on every node and every build.
pub fn stable_hash(key: &str) -> u64 {
    key.bytes()
        .fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

/// A round of messages this node is waiting on, by request id.
enum Round {
    Read(ReadRound),
    Write(WriteRound),
    Hints(HintRound),
}

/// One node's leaderless or multi-leader core.
pub struct LeaderlessCore {
    cfg: QuorumConfig,
    multi: bool,
    /// The resolved quorum sizes.
    n: usize,
    w: usize,
    r: usize,
    replica: Replica,
    hints: Hints,
    rounds: BTreeMap<u64, Round>,
    ops: BTreeMap<u64, ClientOp>,
    /// Rounds that ended, for their requests to go on ([`Self::settle`]).
    done: VecDeque<(u64, Done)>,
    next_req: u64,
    stamp_seq: u64,
    now_ms: u64,
    wall_ms: i64,
    out: Vec<Output>,
}

impl LeaderlessCore {
    /// A core over what the node recovered, at `clock`.
    pub fn new(cfg: QuorumConfig, rec: Recovered, clock: Clock) -> LeaderlessCore {
        let size = cfg.members.len();
        assert!(cfg.members.contains(&cfg.node), "the node is one of the members");
        let s = &cfg.settings;
        let n = if s.n == 0 { size } else { s.n };
        let majority = n / 2 + 1;
        let w = if s.w == 0 { majority } else { s.w };
        let r = if s.r == 0 { majority } else { s.r };
        assert!(
            1 <= w && w <= n && 1 <= r && r <= n && n <= size,
            "need 1 <= w, r <= n <= {size}: n={n} w={w} r={r}"
        );
        let replica = Replica::open(rec, s.snapshot_every_entries, s.replay_delay_ms);
        LeaderlessCore {
            multi: s.mode == Mode::MultiLeader,
            n,
            w,
            r,
            replica,
            hints: Hints::default(),
            rounds: BTreeMap::new(),
            ops: BTreeMap::new(),
            done: VecDeque::new(),
            next_req: 1,
            stamp_seq: 0,
            now_ms: clock.now_ms,
            wall_ms: clock.wall_ms,
            out: Vec::new(),
            cfg,
        }
    }

    /// Handles one input at `clock`. Call [`LeaderlessCore::flush`] after
    /// a batch.
    pub fn step(&mut self, clock: Clock, input: Input) {
        self.set_clock(clock);
        match input {
            Input::Tick => self.on_tick(),
            Input::Client(req) => self.on_client(req),
            Input::Peer { from, msg } => self.on_peer(&from, msg),
            Input::Durable(d) => self.on_durable(d.lsn),
        }
        self.settle();
    }

    /// End of a batch of inputs: hands the batch's writes to the log
    /// writer (one group commit) and applies what became due.
    pub fn flush(&mut self, clock: Clock) {
        self.set_clock(clock);
        if let Some(batch) = self.replica.take_wal_batch() {
            self.out.push(Output::Wal(WalCmd::Append(batch)));
        }
        self.apply_due();
    }

    /// Moves the outputs produced so far onto `into`, oldest first.
    pub fn drain_outputs_into(&mut self, into: &mut Vec<Output>) {
        into.append(&mut self.out);
    }

    /// The replication state.
    pub fn status(&self) -> Status {
        let (last_lsn, applied_lsn) = self.replica.lsns();
        Status {
            last_lsn,
            applied_lsn,
            hints: self.hints.per_target(),
        }
    }

    /// The applied state (the simulation compares replicas with it).
    pub fn state(&self) -> &StateMachine {
        self.replica.state()
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.cfg.node
    }

    // ----- shared helpers ----------------------------------------------

    fn set_clock(&mut self, clock: Clock) {
        // A driver's monotonic clock may stall but must not run back; the
        // wall clock may (that is what clock skew is).
        assert!(
            clock.now_ms >= self.now_ms,
            "time ran back from {} to {}",
            self.now_ms,
            clock.now_ms
        );
        self.now_ms = self.now_ms.max(clock.now_ms);
        self.wall_ms = clock.wall_ms;
    }

    fn settings(&self) -> &Settings {
        &self.cfg.settings
    }

    fn timeout_ms(&self) -> u64 {
        self.settings().request_timeout_ms
    }

    /// When a sloppy quorum calls on stand-ins: a quarter of the timeout in.
    fn sloppy_at(&self) -> Option<u64> {
        self.settings()
            .sloppy_quorum
            .then(|| self.now_ms + self.timeout_ms() / 4)
    }

    fn next_req_id(&mut self) -> u64 {
        let id = self.next_req;
        self.next_req += 1;
        id
    }

    /// A stamp from this node's wall clock and offset.
    fn new_stamp(&mut self) -> Stamp {
        self.stamp_seq += 1;
        Stamp {
            ms: self.wall_ms + self.settings().clock_offset_ms,
            seq: self.stamp_seq,
            node: self.cfg.node.clone(),
        }
    }

    /// The key's n preferred replicas, then the other nodes (stand-ins).
    fn ring(&self, key: &str) -> (Vec<String>, Vec<String>) {
        let members = &self.cfg.members;
        let len = members.len();
        let start = (stable_hash(key) % len as u64) as usize;
        let ordered = (0..len).map(|i| members[(start + i) % len].clone());
        let (mut prefs, mut rest) = (Vec::with_capacity(self.n), Vec::new());
        for (i, m) in ordered.enumerate() {
            if i < self.n {
                prefs.push(m);
            } else {
                rest.push(m);
            }
        }
        (prefs, rest)
    }

    fn send(&mut self, to: &str, msg: Message) {
        self.out.push(Output::Send {
            to: to.to_string(),
            msg,
        });
    }

    fn answer(&mut self, token: u64, answer: Answer) {
        self.out.push(Output::Answer { token, answer });
    }

    fn on_tick(&mut self) {
        self.round_tick();
        self.hint_tick();
        self.apply_due();
    }

    fn apply_due(&mut self) {
        if let Some(snap) = self.replica.apply_due(self.now_ms) {
            self.out.push(Output::Wal(WalCmd::Compact(Box::new(snap))));
        }
    }

    fn on_durable(&mut self, lsn: u64) {
        for ack in self.replica.on_durable(lsn, self.now_ms) {
            self.ack_to(ack);
        }
    }

    fn on_peer(&mut self, from: &str, msg: Message) {
        match msg {
            Message::Put(Put {
                req_id,
                key,
                value,
                stamp,
                hint_for,
            }) => {
                if let Some(target) = hint_for {
                    return self.on_hinted_put(
                        from,
                        req_id,
                        hints::Hint {
                            target,
                            key,
                            value,
                            stamp,
                        },
                    );
                }
                let ack = match req_id {
                    0 => AckTo::Nobody,
                    _ => AckTo::Remote {
                        to: from.to_string(),
                        req_id,
                    },
                };
                self.replica.put(key, value, stamp, ack, false, self.now_ms);
            }
            Message::PutAck(PutAck { req_id }) => self.on_put_ack(from, req_id),
            Message::Get(Get { req_id, key }) => {
                let (value, stamp) = self.replica.get(&key);
                self.send(from, Message::GetResp(GetResp { req_id, value, stamp }));
            }
            Message::GetResp(GetResp { req_id, value, stamp }) => self.on_get_resp(from, req_id, value, stamp),
        }
    }
}

#[cfg(test)]
mod tests;
