//! The leaderless core's inputs and outputs: what a driver (the server's
//! `Leaderless` actor, or the simulation) hands it and carries out for it.
//! Client requests and answers are the single-leader core's own types
//! ([`crate::core::Request`], [`crate::core::Answer`]): a client cannot
//! tell the modes apart by them. The peer [`Message`]s are their own wire
//! form (the leaderless variants of `transport::PeerMsg`).

use crate::config::Settings;
use crate::core::Request;
use crate::state::Stamp;
use crate::wal::{Durable, WalCmd};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The time an input happens at, as two clocks: `now_ms` runs forward
/// only and drives the core's timers; `wall_ms` is the node's wall clock
/// (milliseconds since the Unix epoch, or the simulation's stand-in) that
/// last-write-wins stamps are taken from, before the node's configured
/// `clock_offset_ms` is added. A wall clock may jump either way; the
/// core's timers never look at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// Monotonic milliseconds (since the driver started).
    pub now_ms: u64,
    /// Wall-clock milliseconds.
    pub wall_ms: i64,
}

/// Store this timestamped write (acknowledge with [`PutAck`] once
/// durable, unless `req_id` is 0: a read repair wants no answer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Put {
    /// Request id to acknowledge.
    pub req_id: u64,
    /// Key.
    pub key: String,
    /// Value.
    pub value: Value,
    /// Last-write-wins stamp.
    pub stamp: Stamp,
    /// Sloppy quorum: the replica this write is really for (the receiver
    /// keeps it as a hint and acknowledges at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint_for: Option<String>,
}

/// The write of `req_id` is durable on the sender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PutAck {
    /// Request id.
    pub req_id: u64,
}

/// What do you have at this key?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Get {
    /// Request id.
    pub req_id: u64,
    /// Key.
    pub key: String,
}

/// Answer to [`Get`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GetResp {
    /// Request id.
    pub req_id: u64,
    /// Value (null when absent).
    pub value: Value,
    /// Its stamp (absent when never written).
    pub stamp: Option<Stamp>,
}

/// Messages between the leaderless cores of different nodes. Each is
/// also its wire form: `transport::PeerMsg` carries the same structs in
/// its variants of the same names, so the core and the wire cannot drift.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Put(Put),
    PutAck(PutAck),
    Get(Get),
    GetResp(GetResp),
}

/// What happens to the core.
#[derive(Debug)]
pub enum Input {
    /// Time passed (the driver ticks every few milliseconds): timeouts,
    /// the sloppy-quorum wait, delayed applies and hint replay are
    /// deadlines the core checks on each tick.
    Tick,
    /// A client request.
    Client(Request),
    /// A message from the core of `from`.
    Peer {
        /// Sender.
        from: String,
        /// Message.
        msg: Message,
    },
    /// The log writer made entries durable.
    Durable(Durable),
}

/// What the core asks its driver to do, in order.
#[derive(Debug)]
pub enum Output {
    /// Send `msg` to node `to` (delivery is not assumed).
    Send {
        /// Receiver.
        to: String,
        /// Message.
        msg: Message,
    },
    /// Hand a command to the log writer.
    Wal(WalCmd),
    /// Answer the request named `token`.
    Answer {
        /// The driver's name for the request.
        token: u64,
        /// The answer.
        answer: crate::core::Answer,
    },
}

/// What the core needs to know about its cluster.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    /// This node.
    pub node: String,
    /// Every member, this node included, in the same order on every node
    /// (the ring's order).
    pub members: Vec<String>,
    /// The replication settings (`mode` leaderless or multi-leader; `n`,
    /// `w` and `r` of 0 are taken as the cluster size and its majorities,
    /// as `Config::validate` fills them).
    pub settings: Settings,
    /// Most bytes of values one read may return.
    pub read_bytes_max: usize,
}

/// The node's replication state, as `status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Highest LSN in the local log.
    pub last_lsn: u64,
    /// Every entry up to this LSN is applied.
    pub applied_lsn: u64,
    /// Hints held per owner: how far each is behind this node.
    pub hints: BTreeMap<String, u64>,
}
