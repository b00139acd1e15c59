//! Leaderless (Dynamo-style) and multi-leader replication: the driver of
//! the deterministic [`core`] that makes every decision of those modes.
//!
//! Promises:
//! - The driver is an actor: one task owns the core and hands it client
//!   requests, peer messages, log-writer reports and timer ticks in the
//!   order they come, then carries out the core's outputs in the order
//!   given (messages through the [`Transport`], commands to the log
//!   writer, answers to the waiting clients). It decides nothing about
//!   replication.
//! - Time reaches the core as its [`Clock`]: milliseconds since the actor
//!   started for the timers, and the machine's wall clock for the
//!   last-write-wins stamps (the core adds the node's `clock_offset_ms`).
//! - On the wire the modes speak the leaderless variants of
//!   [`PeerMsg`] (`put`, `put_ack`, `get`, `get_resp`), which carry the
//!   core's own message structs.
//! - Every client hears exactly once: a request the actor cannot take (its
//!   inbox full) is refused at once, one it drops unanswered (it stopped)
//!   is `unknown`; the node bounds the wait with `request_timeout_ms`.

pub mod core;

use self::core::{Clock, Input, LeaderlessCore, Message, Output, QuorumConfig};
use crate::config::Config;
use crate::core::{Op as CoreOp, Recovered, Request};
use crate::group::driver::{self, Repliers};
use crate::group::wire::reply_of;
use crate::protocol::{Op, Reply, ShardStatus, MAX_FRAME_BYTES, REPLY_OVERHEAD_BYTES};
use crate::transport::{PeerMsg, Transport};
use crate::wal::{self, Durable, WalError, WalHandle};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

pub use self::core::{stable_hash, HINTS_MAX};

/// Most requests and peer messages waiting in the actor's inbox.
const INBOX_MAX: usize = 16384;

/// What the actor is asked to do.
enum Msg {
    Client {
        id: u64,
        op: CoreOp,
        reply: oneshot::Sender<Reply>,
    },
    Peer {
        from: String,
        msg: Message,
    },
    Status(oneshot::Sender<ShardStatus>),
}

/// The leaderless / multi-leader engine of one node: a handle on its actor.
pub struct Leaderless {
    node: String,
    tx: mpsc::Sender<Msg>,
}

/// Opens the local replica's log and starts the engine's actor.
pub fn start(cfg: Arc<Config>, transport: Arc<Transport>) -> Result<Arc<Leaderless>, WalError> {
    let rec = wal::recover(&cfg.data_dir, cfg.settings.fsync)?;
    let (durable_tx, durable_rx) = mpsc::unbounded_channel();
    let wal = wal::start_writer(&cfg.data_dir, &rec, cfg.settings.fsync, &cfg.node_id, durable_tx)?;
    let quorum = QuorumConfig {
        node: cfg.node_id.clone(),
        members: cfg.members(),
        settings: cfg.settings.clone(),
        read_bytes_max: MAX_FRAME_BYTES - REPLY_OVERHEAD_BYTES,
    };
    let recovered = Recovered {
        snapshot: rec.snapshot,
        entries: rec.entries,
        hard: rec.hard,
    };
    let started = Instant::now();
    let core = LeaderlessCore::new(quorum, recovered, clock(started));
    info!(node = %cfg.node_id, epoch = 0, lsn = core.status().last_lsn, "replica recovered");
    let actor = Actor {
        node: cfg.node_id.clone(),
        transport,
        wal,
        core,
        started,
        repliers: Repliers::default(),
    };
    let (tx, rx) = mpsc::channel(INBOX_MAX);
    tokio::spawn(driver::run(actor, rx, durable_rx));
    Ok(Arc::new(Leaderless {
        node: cfg.node_id.clone(),
        tx,
    }))
}

/// The core's clock now: monotonic since `started`, and the wall clock.
fn clock(started: Instant) -> Clock {
    Clock {
        now_ms: started.elapsed().as_millis() as u64,
        wall_ms: chrono::Utc::now().timestamp_millis(),
    }
}

impl Leaderless {
    /// Hands a peer message to the actor (awaits inbox space:
    /// back-pressure on the link).
    pub async fn on_peer(&self, from: String, msg: PeerMsg) {
        match from_wire(msg) {
            Ok(msg) => {
                let _ = self.tx.send(Msg::Peer { from, msg }).await;
            }
            Err(other) => {
                warn!(node = %self.node, peer = %from, msg = ?other, "message for another mode ignored")
            }
        }
    }

    /// Serves one client operation.
    pub async fn handle(&self, id: u64, op: Op) -> Reply {
        let op = match op {
            Op::Read { key } => CoreOp::Read { key },
            Op::MultiRead { keys } => CoreOp::MultiRead { keys },
            Op::Write { key, value } => CoreOp::Write { key, value },
            Op::Cas { key, expected, new } => CoreOp::Cas { key, expected, new },
            Op::Append { key, value } => CoreOp::Append { key, value },
            Op::Status => return self.finish(Reply::fail(id, "status is served by the node")),
            Op::Txn { .. } => return self.finish(Reply::fail(id, "leaderless mode does not execute transactions")),
        };
        let (reply, rx) = oneshot::channel();
        if self.tx.try_send(Msg::Client { id, op, reply }).is_err() {
            return self.finish(Reply::fail(id, "server overloaded"));
        }
        match rx.await {
            Ok(reply) => reply,
            Err(_) => self.finish(Reply::unknown(id, "the replica stopped")),
        }
    }

    fn finish(&self, mut reply: Reply) -> Reply {
        reply.node = self.node.clone();
        reply
    }

    /// Status as a single pseudo-shard.
    pub async fn status(&self) -> ShardStatus {
        let (tx, rx) = oneshot::channel();
        let answered = match self.tx.try_send(Msg::Status(tx)) {
            Ok(()) => tokio::time::timeout(Duration::from_secs(2), rx)
                .await
                .ok()
                .and_then(Result::ok),
            Err(_) => None,
        };
        answered.unwrap_or_else(|| shard_status(0, 0, Default::default()))
    }
}

fn shard_status(last: u64, applied: u64, peer_lag: std::collections::BTreeMap<String, u64>) -> ShardStatus {
    ShardStatus {
        shard: 0,
        role: "replica".into(),
        epoch: 0,
        commit_lsn: last,
        applied_lsn: applied,
        last_lsn: last,
        leader: None,
        peer_lag,
    }
}

/// The wire form of a core message.
fn to_wire(msg: Message) -> PeerMsg {
    match msg {
        Message::Put(m) => PeerMsg::Put(m),
        Message::PutAck(m) => PeerMsg::PutAck(m),
        Message::Get(m) => PeerMsg::Get(m),
        Message::GetResp(m) => PeerMsg::GetResp(m),
    }
}

/// The core message a wire message is, or the message back when it
/// belongs to another mode.
fn from_wire(msg: PeerMsg) -> Result<Message, Box<PeerMsg>> {
    Ok(match msg {
        PeerMsg::Put(m) => Message::Put(m),
        PeerMsg::PutAck(m) => Message::PutAck(m),
        PeerMsg::Get(m) => Message::Get(m),
        PeerMsg::GetResp(m) => Message::GetResp(m),
        other => return Err(Box::new(other)),
    })
}

/// The actor: the core and what it cannot own (I/O, clock, answer slots).
struct Actor {
    node: String,
    transport: Arc<Transport>,
    wal: WalHandle,
    core: LeaderlessCore,
    started: Instant,
    /// Where each request the core holds is answered, by token.
    repliers: Repliers<oneshot::Sender<Reply>>,
}

impl Actor {
    /// Feeds one input to the core ([`driver::run`] carries out what it
    /// asks once the event is handled).
    fn step(&mut self, input: Input) {
        self.core.step(clock(self.started), input);
    }
}

impl driver::Actor for Actor {
    type Msg = Msg;
    type Output = Output;
    /// Most messages handled before the actor flushes the log writer.
    const DRAIN_MAX: usize = 4096;

    fn handle(&mut self, m: Msg) {
        match m {
            Msg::Client { id, op, reply } => {
                let token = self.repliers.hold(reply);
                self.step(Input::Client(Request::new(token, id, op)));
            }
            Msg::Peer { from, msg } => self.step(Input::Peer { from, msg }),
            Msg::Status(tx) => {
                let s = self.core.status();
                let _ = tx.send(shard_status(s.last_lsn, s.applied_lsn, s.hints));
            }
        }
    }

    fn durable(&mut self, d: Durable) {
        self.step(Input::Durable(d));
    }

    fn tick(&mut self) {
        self.step(Input::Tick);
    }

    fn flush_core(&mut self) {
        self.core.flush(clock(self.started));
    }

    fn drain_core_outputs(&mut self, into: &mut Vec<Output>) {
        self.core.drain_outputs_into(into);
    }

    fn writer_stopped(&self) {
        error!(node = %self.node, epoch = 0, lsn = self.core.status().last_lsn, "log writer stopped; replica halts");
    }

    fn carry_out_one(&mut self, output: Output) {
        match output {
            Output::Send { to, msg } => {
                self.transport.send(&to, 0, to_wire(msg));
            }
            Output::Wal(cmd) => {
                self.wal.send(cmd);
            }
            Output::Answer { token, answer } => {
                if let Some(reply) = self.repliers.take(token) {
                    let mut r = reply_of(answer);
                    r.node = self.node.clone();
                    let _ = reply.send(r);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::core::{Put, PutAck};
    use crate::state::Stamp;
    use crate::transport::PeerMsg;

    /// The leaderless messages' wire form is the one the server spoke
    /// before the core existed (struct variants of `PeerMsg`).
    #[test]
    fn the_wire_form_is_unchanged() {
        let stamp = Stamp {
            ms: 5,
            seq: 1,
            node: "n1".into(),
        };
        let put = PeerMsg::Put(Put {
            req_id: 1,
            key: "k".into(),
            value: 1.into(),
            stamp,
            hint_for: None,
        });
        let json = r#"{"put":{"req_id":1,"key":"k","value":1,"stamp":{"ms":5,"seq":1,"node":"n1"}}}"#;
        assert_eq!(serde_json::to_string(&put).unwrap(), json);
        let ack = serde_json::to_string(&PeerMsg::PutAck(PutAck { req_id: 3 })).unwrap();
        assert_eq!(ack, r#"{"put_ack":{"req_id":3}}"#);
        let back: PeerMsg = serde_json::from_str(json).unwrap();
        assert!(matches!(back, PeerMsg::Put(p) if p.hint_for.is_none() && p.key == "k"));
    }
}
