//! The core's inputs and outputs: what a driver (the server's `Group`, or
//! the simulation) hands it and carries out for it. Client requests and
//! answers know nothing of the wire (the driver converts); the peer
//! [`Message`]s are their own wire form.

use crate::config::Settings;
use crate::state::{Entry, TxnOp};
use crate::wal::{Durable, HardState, Snapshot, WalCmd};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A client operation as the core sees it (already validated).
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Read one key (absent reads as null).
    Read { key: String },
    /// Read several keys at once.
    MultiRead { keys: Vec<String> },
    /// Overwrite one key.
    Write { key: String, value: Value },
    /// Set `key` to `new` if its value equals `expected` (null = absent).
    Cas { key: String, expected: Value, new: Value },
    /// Append `value` to the list at `key`.
    Append { key: String, value: Value },
    /// A transaction of micro-ops, at the configured isolation level.
    Txn { ops: Vec<TxnOp> },
    /// A two-phase commit coordinator's request to this shard.
    TwoPhase(super::TwoPhaseOp),
}

impl Op {
    /// Whether the operation changes state (a transaction with a write).
    pub fn is_write(&self) -> bool {
        match self {
            Op::Write { .. } | Op::Cas { .. } | Op::Append { .. } | Op::TwoPhase(_) => true,
            Op::Txn { ops } => ops.iter().any(TxnOp::is_write),
            Op::Read { .. } | Op::MultiRead { .. } => false,
        }
    }
}

/// A client request handed to the core.
#[derive(Debug, Clone)]
pub struct Request {
    /// The driver's name for this request; answers carry it back.
    pub token: u64,
    /// The client's request id.
    pub id: u64,
    /// What to do.
    pub op: Op,
    /// `reads=lsn`: the LSN this replica must have applied first.
    pub min_lsn: u64,
    /// Whether another node already forwarded it (never forward twice).
    pub forwarded: bool,
}

impl Request {
    /// A request straight from its client (not forwarded), with no
    /// session LSN to wait for.
    pub fn new(token: u64, id: u64, op: Op) -> Request {
        Request {
            token,
            id,
            op,
            min_lsn: 0,
            forwarded: false,
        }
    }
}

/// How a request ended, as the client will hear it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done (a write took effect, a read saw `value`).
    Ok,
    /// Certainly not applied.
    Fail,
    /// Maybe applied, maybe not.
    Unknown,
}

/// The core's answer to a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The client's request id.
    pub id: u64,
    /// ok, fail or unknown.
    pub outcome: Outcome,
    /// The value read (null for writes).
    pub value: Value,
    /// Why it failed or is unknown.
    pub error: Option<String>,
    /// The write's LSN, or the applied LSN a read saw.
    pub lsn: Option<u64>,
    /// Where the leader is believed to be (set by followers).
    pub leader_hint: Option<String>,
}

impl Answer {
    fn new(id: u64, outcome: Outcome, error: Option<String>) -> Answer {
        Answer {
            id,
            outcome,
            value: Value::Null,
            error,
            lsn: None,
            leader_hint: None,
        }
    }

    /// Done.
    pub fn ok(id: u64) -> Answer {
        Answer::new(id, Outcome::Ok, None)
    }

    /// Certainly not applied, because `why`.
    pub fn fail(id: u64, why: impl Into<String>) -> Answer {
        Answer::new(id, Outcome::Fail, Some(why.into()))
    }

    /// Fate unknown, because `why`.
    pub fn unknown(id: u64, why: impl Into<String>) -> Answer {
        Answer::new(id, Outcome::Unknown, Some(why.into()))
    }
}

/// Messages between the cores of one group on different nodes. This is
/// also their wire form: the transport carries it as is
/// (`transport::PeerMsg::Core`), so the core and the wire cannot drift.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Message {
    /// Leader -> follower: log entries (a heartbeat when empty).
    Append {
        /// Leader's epoch.
        epoch: u64,
        /// LSN just before `entries`.
        prev_lsn: u64,
        /// Epoch of the entry at `prev_lsn`.
        prev_epoch: u64,
        /// Entries to append.
        entries: Vec<Entry>,
        /// Leader's commit LSN.
        commit_lsn: u64,
        /// Heartbeat round, echoed back (read-index confirmation).
        seq: u64,
    },
    /// Follower -> leader: result of an append or snapshot.
    AppendResp {
        /// Follower's epoch.
        epoch: u64,
        /// Whether the log matched at `prev_lsn`.
        success: bool,
        /// Highest LSN durable and known to match the leader's log.
        match_lsn: u64,
        /// Follower's last LSN, a hint for where to resume.
        last_lsn: u64,
        /// Echo of the heartbeat round.
        seq: u64,
    },
    /// Candidate -> all: vote for me in `epoch`.
    Vote {
        /// New epoch.
        epoch: u64,
        /// Candidate's last LSN.
        last_lsn: u64,
        /// Epoch of the candidate's last entry.
        last_epoch: u64,
    },
    /// Voter -> candidate.
    VoteResp {
        /// Voter's epoch.
        epoch: u64,
        /// Whether the vote is granted.
        granted: bool,
    },
    /// Would-be candidate -> all: would you vote for me in `epoch`? Nobody
    /// changes state for it (pre-vote), so a node cut off from the cluster
    /// does not inflate epochs and depose a healthy leader when it returns.
    PreVote {
        /// The epoch the sender would campaign in.
        epoch: u64,
        /// Sender's last LSN.
        last_lsn: u64,
        /// Epoch of the sender's last entry.
        last_epoch: u64,
    },
    /// Answer to `PreVote`.
    PreVoteResp {
        /// The epoch asked about.
        epoch: u64,
        /// Whether a real vote would be granted.
        granted: bool,
        /// The voter's own epoch. A refused sender adopts it when higher:
        /// else a node with the better log but the lower epoch asks
        /// forever for an epoch the other has already passed.
        voter_epoch: u64,
    },
    /// Leader -> lagging follower: the whole state at an LSN (shared, not
    /// copied, between the leader's followers and its own log).
    Snapshot {
        /// Leader's epoch.
        epoch: u64,
        /// The snapshot.
        snapshot: Arc<Snapshot>,
        /// Heartbeat round.
        seq: u64,
    },
}

/// What happens to the core.
#[derive(Debug)]
pub enum Input {
    /// Time passed (the driver ticks every few milliseconds).
    Tick,
    /// A client request (local, or forwarded by another node).
    Client(Request),
    /// A message from the core of `from`.
    Peer { from: String, msg: Message },
    /// The log writer made entries durable.
    Durable(Durable),
}

/// What the core asks its driver to do, in order.
#[derive(Debug)]
pub enum Output {
    /// Send `msg` to node `to` (delivery is not assumed).
    Send { to: String, msg: Message },
    /// Hand a command to the log writer.
    Wal(WalCmd),
    /// Persist epoch and vote before carrying out any later output.
    SaveHardState(HardState),
    /// Answer the request named `token`.
    Answer { token: u64, answer: Answer },
    /// Not the leader: pass `req` on to `leader`, which answers it.
    Forward { req: Request, leader: String },
}

/// What the core needs to know about its cluster.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// This node.
    pub node: String,
    /// The shard this group replicates (for logs).
    pub shard: u32,
    /// Every member, this node included.
    pub members: Vec<String>,
    /// The node that leads at first.
    pub initial_leader: String,
    /// The replication settings.
    pub settings: Settings,
    /// Most bytes of values one read may return.
    pub read_bytes_max: usize,
}

/// What the node recovered from its disk.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    /// The newest snapshot.
    pub snapshot: Option<Snapshot>,
    /// The log after the snapshot.
    pub entries: Vec<Entry>,
    /// Epoch and vote.
    pub hard: HardState,
}

/// The group's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Follower,
    Candidate,
    Leader,
}

impl Role {
    /// As `status` reports it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        }
    }
}

/// The replication state, as `status` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub role: Role,
    pub epoch: u64,
    pub commit_lsn: u64,
    pub applied_lsn: u64,
    pub last_lsn: u64,
    pub leader: Option<String>,
    /// Leader only: how far each follower is behind, in LSNs.
    pub peer_lag: BTreeMap<String, u64>,
}
