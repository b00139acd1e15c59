//! The driver of one single-leader replication group (one shard): it owns
//! the group's sockets (through the [`Transport`]), its write-ahead log,
//! its clock and its timers, and feeds the deterministic
//! [`core`](crate::core) that makes every protocol decision.
//!
//! Promises:
//! - The group is an actor: one task owns the core and handles client
//!   requests, peer messages, log-writer reports and timer ticks in order,
//!   so there are no locks to reason about.
//! - The driver decides nothing about replication: it turns what arrives
//!   into core inputs (time as milliseconds since the group started), and
//!   carries out the core's outputs in the order given (the vote is on
//!   disk before any message that depends on it leaves).
//! - Every client hears exactly once: answers travel by the token the
//!   driver gave the request; a request the core passes on to the leader
//!   is forwarded here, and answered `unknown` if the leader does not
//!   answer within `request_timeout_ms`.

use crate::config::Config;
use crate::core::{self, Answer, Core, CoreConfig, Input, Output, TwoPhaseOp};
use crate::limits::{Budgets, Held, Hold, Outgoing};
use crate::protocol::{
    encode_frame, encode_reply, Op, RawRequest, Reply, Session, ShardStatus, MAX_FRAME_BYTES, REPLY_OVERHEAD_BYTES,
};
use crate::transport::{PeerMsg, Transport};
use crate::wal::{self, Durable, WalError, WalHandle};
use driver::{Actor, Repliers};
use rand::Rng;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tracing::{error, info, warn};
pub(crate) use wire::txn_op;
use wire::{raw_request, reply_of};

pub use crate::core::{PENDING_READS_MAX, PENDING_WRITES_MAX};

pub(crate) mod driver;
mod two_phase;
pub(crate) mod wire;

/// Most client requests waiting in one group's inbox.
pub const GROUP_INBOX_MAX: usize = 16384;

/// What the group is asked to do by the node.
pub enum GroupMsg {
    /// A client request routed to this shard.
    Client {
        /// The request (read or write kind, already validated).
        req: ClientReq,
        /// Where the answer goes.
        reply: ClientReply,
    },
    /// A message from a peer's group for this shard.
    Peer {
        /// Sender.
        from: String,
        /// Message.
        msg: PeerMsg,
    },
    /// A status query.
    Status(oneshot::Sender<ShardStatus>),
    /// A two-phase commit coordinator's request (`shard_txn=2pc`).
    TwoPhase {
        /// The coordinator's request id.
        id: u64,
        /// What to log.
        op: TwoPhaseOp,
        /// Where the answer goes.
        reply: oneshot::Sender<Reply>,
    },
    /// The pieces prepared on this shard, led here, for at least
    /// `older_than_ms` (at most `max`): (transaction, decision's home).
    StalePrepared {
        /// Age bound.
        older_than_ms: u64,
        /// Most to name.
        max: usize,
        /// Where the answer goes.
        reply: oneshot::Sender<Vec<(String, u32)>>,
    },
}

/// A client request as the group sees it.
#[derive(Debug, Clone)]
pub struct ClientReq {
    /// Client's request id.
    pub id: u64,
    /// The operation (read, write, cas, append, multi_read).
    pub op: Op,
    /// Session guarantees.
    pub session: Session,
    /// Whether another node already forwarded it (never forward twice).
    pub forwarded: bool,
}

/// Where the answer to a client request goes.
pub enum ClientReply {
    /// To a task waiting on [`GroupHandle::call`].
    Wait(oneshot::Sender<Reply>),
    /// Encoded, straight onto the client's connection (see [`ConnReply`]).
    Conn(ConnReply),
}

/// The answer slot of one request read from a client connection: the group
/// encodes its reply into the connection's outgoing queue itself, so a
/// request costs no task of its own, no timer and no extra wake-up between
/// the group and the writer (the common path of every read and write).
///
/// Promise: the client hears exactly once. A slot dropped unanswered (the
/// group stopped, say) answers `unknown` on drop. The connection's
/// in-flight slot travels with the reply frame and is released once the
/// frame is written; a large reply takes its bytes from the connection's
/// and the node's budgets, or is answered `fail` when they are spent.
pub struct ConnReply {
    out: mpsc::Sender<Outgoing>,
    id: u64,
    budgets: Arc<Budgets>,
    slot: Option<OwnedSemaphorePermit>,
    /// The request's own bytes, held until it is answered.
    _request: Held,
}

impl ConnReply {
    /// A slot for request `id`, answering on `out`, holding the in-flight
    /// `slot` and the request's bytes.
    pub fn new(
        out: mpsc::Sender<Outgoing>,
        id: u64,
        slot: OwnedSemaphorePermit,
        budgets: Arc<Budgets>,
        request: Held,
    ) -> ConnReply {
        ConnReply {
            out,
            id,
            budgets,
            slot: Some(slot),
            _request: request,
        }
    }

    /// Queues `reply` for the client.
    pub fn send(mut self, reply: &Reply) {
        self.answer(reply);
    }

    fn answer(&mut self, reply: &Reply) {
        let Some(slot) = self.slot.take() else {
            return;
        };
        let mut frame = encode_reply(reply);
        let bytes = match self.budgets.try_take(frame.len()) {
            Ok(held) => held,
            Err(why) => {
                let mut fail = Reply::fail(reply.id, why.to_string());
                fail.node = reply.node.clone();
                frame = encode_frame(&fail);
                Held::default()
            }
        };
        let hold = Hold {
            slot: Some(slot),
            bytes,
        };
        self.push(Outgoing { frame, hold });
    }

    fn push(&self, out: Outgoing) {
        // The queue holds as many frames as the connection has slots, so
        // it is full only while error replies of bad frames wait in it.
        if let Err(mpsc::error::TrySendError::Full(out)) = self.out.try_send(out) {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let tx = self.out.clone();
                rt.spawn(async move {
                    let _ = tx.send(out).await;
                });
            }
        }
    }
}

impl Drop for ConnReply {
    fn drop(&mut self) {
        if self.slot.is_some() {
            let id = self.id;
            self.answer(&Reply::unknown(id, "the server dropped the request"));
        }
    }
}

/// Handle the node uses to talk to a group.
#[derive(Clone)]
pub struct GroupHandle {
    tx: mpsc::Sender<GroupMsg>,
}

impl GroupHandle {
    /// Sends a client request and waits (bounded) for its answer.
    pub async fn call(&self, req: ClientReq, timeout: Duration) -> Reply {
        let id = req.id;
        let is_write = req.op.is_write();
        let (tx, rx) = oneshot::channel();
        let reply = ClientReply::Wait(tx);
        if self.tx.try_send(GroupMsg::Client { req, reply }).is_err() {
            return Reply::fail(id, "server overloaded");
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => reply,
            _ if is_write => Reply::unknown(id, "timed out waiting for replication"),
            _ => Reply::unknown(id, "timed out"),
        }
    }

    /// Hands a request to the group with its answer slot; gives the slot
    /// back when the group's inbox is full (the caller answers).
    pub fn submit(&self, req: ClientReq, slot: ConnReply) -> Result<(), ConnReply> {
        let msg = GroupMsg::Client {
            req,
            reply: ClientReply::Conn(slot),
        };
        match self.tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m)) => match m {
                GroupMsg::Client {
                    reply: ClientReply::Conn(slot),
                    ..
                } => Err(slot),
                _ => unreachable!("the message sent is the one returned"),
            },
        }
    }

    /// Delivers a peer message (awaits inbox space: back-pressure on the link).
    pub async fn deliver(&self, from: String, msg: PeerMsg) {
        let _ = self.tx.send(GroupMsg::Peer { from, msg }).await;
    }

    /// The group's replication state.
    pub async fn status(&self) -> Option<ShardStatus> {
        let (tx, rx) = oneshot::channel();
        self.tx.try_send(GroupMsg::Status(tx)).ok()?;
        tokio::time::timeout(Duration::from_secs(2), rx).await.ok()?.ok()
    }
}

/// Where an answer goes: a local client or a node that forwarded.
enum Replier {
    Local(oneshot::Sender<Reply>),
    Conn(ConnReply),
    Remote { to: String, fwd_id: u64 },
}

impl From<ClientReply> for Replier {
    fn from(reply: ClientReply) -> Replier {
        match reply {
            ClientReply::Wait(tx) => Replier::Local(tx),
            ClientReply::Conn(slot) => Replier::Conn(slot),
        }
    }
}

impl Replier {
    /// Hands `reply` over unchanged; a forwarding node's answer goes back
    /// to the node it came from.
    fn deliver(self, reply: Reply, transport: &Transport, shard: u32) {
        match self {
            Replier::Local(tx) => {
                let _ = tx.send(reply);
            }
            Replier::Conn(slot) => slot.send(&reply),
            Replier::Remote { to, fwd_id } => {
                transport.send(&to, shard, PeerMsg::ForwardResp { fwd_id, reply });
            }
        }
    }
}

/// A request passed on to the leader, waiting for its answer.
struct Forward {
    id: u64,
    replier: Replier,
    deadline: Instant,
}

/// The group actor: the core and what it cannot own (I/O, clock, answer
/// slots).
pub struct Group {
    node: String,
    shard: u32,
    cfg: Arc<Config>,
    transport: Arc<Transport>,
    dir: PathBuf,
    wal: WalHandle,
    core: Core,
    /// The core's clock: milliseconds since this instant.
    started: Instant,
    /// Answer slots of the requests the core holds, by token.
    repliers: Repliers<Replier>,
    forwards: BTreeMap<u64, Forward>,
    next_fwd_id: u64,
}

/// Opens the group's storage, starts its actor and returns its handle.
pub fn start(cfg: Arc<Config>, shard: u32, transport: Arc<Transport>) -> Result<GroupHandle, WalError> {
    let dir = if cfg.settings.shards > 1 {
        cfg.data_dir.join(format!("shard-{shard}"))
    } else {
        cfg.data_dir.clone()
    };
    let rec = wal::recover(&dir, cfg.settings.fsync)?;
    let (durable_tx, durable_rx) = mpsc::unbounded_channel();
    let wal = wal::start_writer(&dir, &rec, cfg.settings.fsync, &cfg.node_id, durable_tx)?;
    let core_cfg = CoreConfig {
        node: cfg.node_id.clone(),
        shard,
        members: cfg.members(),
        initial_leader: cfg.initial_leader(shard as usize),
        settings: cfg.settings.clone(),
        read_bytes_max: MAX_FRAME_BYTES - REPLY_OVERHEAD_BYTES,
    };
    let recovered = core::Recovered {
        snapshot: rec.snapshot,
        entries: rec.entries,
        hard: rec.hard,
    };
    let core = Core::new(core_cfg, recovered, rand::thread_rng().gen(), 0);
    let status = core.status();
    info!(node = %cfg.node_id, shard, epoch = status.epoch, lsn = status.last_lsn, base_lsn = status.commit_lsn, "group recovered");
    let g = Group {
        node: cfg.node_id.clone(),
        shard,
        cfg,
        transport,
        dir,
        wal,
        core,
        started: Instant::now(),
        repliers: Repliers::default(),
        forwards: BTreeMap::new(),
        next_fwd_id: 0,
    };
    let (tx, rx) = mpsc::channel(GROUP_INBOX_MAX);
    tokio::spawn(driver::run(g, rx, durable_rx));
    Ok(GroupHandle { tx })
}

impl Group {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Feeds one input to the core ([`driver::run`] carries out what it
    /// asks once the event is handled).
    fn step(&mut self, input: Input) {
        self.core.step(self.now_ms(), input);
    }

    /// Hands a request to the core, keeping its answer slot by token.
    fn on_client(&mut self, req: ClientReq, replier: Replier) {
        let op = match req.op {
            Op::Read { key } => core::Op::Read { key },
            Op::MultiRead { keys } => core::Op::MultiRead { keys },
            Op::Write { key, value } => core::Op::Write { key, value },
            Op::Cas { key, expected, new } => core::Op::Cas { key, expected, new },
            Op::Append { key, value } => core::Op::Append { key, value },
            Op::Txn { ops } => core::Op::Txn {
                ops: ops.into_iter().map(txn_op).collect(),
            },
            Op::Status => {
                let why = format!("{} is not a single-shard operation", req.op.name());
                return self.answer(replier, Reply::fail(req.id, why));
            }
        };
        let min_lsn = req.session.min_lsn_for(self.shard as usize);
        self.submit(req.id, op, min_lsn, req.forwarded, replier);
    }

    /// Hands the core a request, keeping its answer slot by token.
    fn submit(&mut self, id: u64, op: core::Op, min_lsn: u64, forwarded: bool, replier: Replier) {
        let token = self.repliers.hold(replier);
        let request = core::Request {
            token,
            id,
            op,
            min_lsn,
            forwarded,
        };
        self.step(Input::Client(request));
    }

    fn on_peer(&mut self, from: String, msg: PeerMsg) {
        match msg {
            PeerMsg::Core(msg) => self.step(Input::Peer { from, msg }),
            PeerMsg::Forward { fwd_id, request } => self.on_forward(from, fwd_id, request),
            PeerMsg::ForwardResp { fwd_id, reply } => self.on_forward_resp(fwd_id, reply),
            PeerMsg::TwoPhase { fwd_id, id, op } => {
                let replier = Replier::Remote { to: from, fwd_id };
                self.submit(id, core::Op::TwoPhase(op), 0, true, replier);
            }
            other => {
                warn!(node = %self.node, shard = self.shard, peer = %from, msg = ?other, "message for another mode ignored");
            }
        }
    }

    fn on_forward(&mut self, from: String, fwd_id: u64, request: RawRequest) {
        let replier = Replier::Remote { to: from, fwd_id };
        match crate::protocol::validate(request) {
            Ok(req) => {
                let req = ClientReq {
                    id: req.id,
                    op: req.op,
                    session: req.session,
                    forwarded: true,
                };
                self.on_client(req, replier)
            }
            Err(e) => self.answer(replier, Reply::fail(0, e.to_string())),
        }
    }

    fn on_forward_resp(&mut self, fwd_id: u64, mut reply: Reply) {
        if let Some(f) = self.forwards.remove(&fwd_id) {
            reply.id = f.id;
            if !matches!(f.replier, Replier::Remote { .. }) {
                f.replier.deliver(reply, &self.transport, self.shard);
            }
        }
    }

    fn expire_forwards(&mut self, now: Instant) {
        let late: Vec<u64> = self
            .forwards
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in late {
            if let Some(f) = self.forwards.remove(&k) {
                self.answer(f.replier, Reply::unknown(f.id, "forward to leader timed out"));
            }
        }
    }

    // ----- carrying out the core's outputs -----------------------------

    fn save_hard_state(&self, hard: &wal::HardState) {
        let sync = self.cfg.settings.fsync != wal::FsyncPolicy::Never;
        if let Err(e) = wal::save_hard_state(&self.dir, hard, sync) {
            // Without a durable vote we could vote twice in one epoch after a
            // crash; stopping is the only safe reaction.
            error!(node = %self.node, shard = self.shard, epoch = hard.epoch, error = %e, "cannot persist epoch and vote; exiting");
            std::process::exit(70);
        }
    }

    fn deliver(&mut self, token: u64, answer: Answer) {
        if let Some(replier) = self.repliers.take(token) {
            self.answer(replier, reply_of(answer));
        }
    }

    /// Passes a request on to the leader; its answer comes back as a
    /// `ForwardResp`.
    fn forward(&mut self, req: core::Request, leader: String) {
        let Some(replier) = self.repliers.take(req.token) else {
            return;
        };
        self.next_fwd_id += 1;
        let fwd_id = self.next_fwd_id;
        let msg = match &req.op {
            core::Op::TwoPhase(op) => PeerMsg::TwoPhase {
                fwd_id,
                id: req.id,
                op: op.clone(),
            },
            _ => PeerMsg::Forward {
                fwd_id,
                request: raw_request(&req, self.shard),
            },
        };
        if !self.transport.send(&leader, self.shard, msg) {
            let mut r = Reply::fail(req.id, "leader unreachable");
            r.leader_hint = Some(leader);
            return self.answer(replier, r);
        }
        let deadline = Instant::now() + Duration::from_millis(self.cfg.settings.request_timeout_ms);
        let forward = Forward {
            id: req.id,
            replier,
            deadline,
        };
        self.forwards.insert(fwd_id, forward);
    }

    fn answer(&self, replier: Replier, mut reply: Reply) {
        reply.node = self.node.clone();
        reply.shard = Some(self.shard);
        // Cheap accessors, not `status()`: this runs for every reply.
        if reply.leader_hint.is_none() && self.core.role() != core::Role::Leader {
            reply.leader_hint = self.core.leader().map(str::to_string);
        }
        replier.deliver(reply, &self.transport, self.shard);
    }

    fn status(&self) -> ShardStatus {
        let s = self.core.status();
        ShardStatus {
            shard: self.shard,
            role: s.role.name().into(),
            epoch: s.epoch,
            commit_lsn: s.commit_lsn,
            applied_lsn: s.applied_lsn,
            last_lsn: s.last_lsn,
            leader: s.leader,
            peer_lag: s.peer_lag,
        }
    }
}

impl Actor for Group {
    type Msg = GroupMsg;
    type Output = Output;
    /// Most messages handled before the actor flushes replication.
    const DRAIN_MAX: usize = 1024;

    fn start(&mut self) {
        self.core.start(self.now_ms());
    }

    fn handle(&mut self, msg: GroupMsg) {
        match msg {
            GroupMsg::Client { req, reply } => self.on_client(req, reply.into()),
            GroupMsg::Peer { from, msg } => self.on_peer(from, msg),
            GroupMsg::Status(tx) => {
                let _ = tx.send(self.status());
            }
            GroupMsg::TwoPhase { id, op, reply } => {
                self.submit(id, core::Op::TwoPhase(op), 0, false, Replier::Local(reply));
            }
            GroupMsg::StalePrepared {
                older_than_ms,
                max,
                reply,
            } => {
                let _ = reply.send(self.core.stale_prepared(self.now_ms(), older_than_ms, max));
            }
        }
    }

    fn durable(&mut self, d: Durable) {
        self.step(Input::Durable(d));
    }

    fn tick(&mut self) {
        self.step(Input::Tick);
        self.expire_forwards(Instant::now());
    }

    fn flush_core(&mut self) {
        self.core.flush(self.now_ms());
    }

    fn drain_core_outputs(&mut self, into: &mut Vec<Output>) {
        self.core.drain_outputs_into(into);
    }

    fn step_due(&self) -> bool {
        self.core.txn_step_due()
    }

    fn writer_stopped(&self) {
        error!(node = %self.node, shard = self.shard, "log writer stopped; group halts");
    }

    fn carry_out_one(&mut self, output: Output) {
        match output {
            Output::Send { to, msg } => {
                self.transport.send(&to, self.shard, PeerMsg::Core(msg));
            }
            Output::Wal(cmd) => {
                self.wal.send(cmd);
            }
            Output::SaveHardState(hard) => self.save_hard_state(&hard),
            Output::Answer { token, answer } => self.deliver(token, answer),
            Output::Forward { req, leader } => self.forward(req, leader),
        }
    }
}

#[cfg(test)]
mod tests;
