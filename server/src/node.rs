//! A running node: the listener, client and peer connections, and routing of
//! requests to the replication engine (one group per shard, or the
//! leaderless engine).
//!
//! Promises:
//! - One address serves clients and peers; a connection whose first frame is
//!   a peer `Hello` is a peer link, anything else is a client.
//! - Limits: at most `max_connections` connections (at the limit the client
//!   connection idle the longest is closed to admit a new one; when all are
//!   busy the new one is closed, with one log line); a client connection
//!   idle for `idle_timeout_ms` is closed; at most `max_inflight_per_conn`
//!   requests in flight per connection (pipelining; replies carry the
//!   request id), a slot held until the reply is written; bytes in flight
//!   bounded per connection and per node (see `limits`); frames of at most
//!   1 MiB either way: a reply that would be larger is a `fail` saying so.
//! - Bad input gets a `fail` reply (or, for a broken frame, a closed
//!   connection) and one log line; it never reaches the replication state.

use crate::config::{Config, Mode, ShardTxn};
use crate::conns::{Admission, ConnGuard, ConnState, ConnTable};
use crate::group::{self, ClientReq, ConnReply, GroupHandle};
use crate::leaderless::{self, stable_hash, Leaderless};
use crate::limits::{BudgetError, Budgets, Held, Hold, NodeBudget, Outgoing, SMALL_BYTES};
use crate::protocol::{
    decode_request, encode_frame, encode_reply, json_len_capped, read_frame, reply_too_large, MicroOp, Op, Outcome,
    ProtocolError, Reply, Request, StatusInfo, MAX_FRAME_BYTES, REPLY_OVERHEAD_BYTES,
};
use crate::transport::{Envelope, Hello, Transport, PEER_MAX_FRAME_BYTES};
use crate::wal::WalError;
use serde_json::Value;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tracing::{debug, info, warn};

/// A connection's read half behind a buffer: one `recv` takes in every
/// frame that has arrived, where reading a frame straight off the socket
/// costs three (a length byte, the rest of the length, the body).
type FrameReader = BufReader<OwnedReadHalf>;

/// Bytes of that buffer: a few dozen requests or a batch of log entries.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Extra time the node gives an engine beyond the request timeout before it
/// answers `unknown` itself.
const ENGINE_GRACE_MS: u64 = 500;
/// A connection refused for the node's byte budget is not read from for
/// this long.
const REFUSED_PAUSE_MS: u64 = 20;
/// How long a new connection may take to send its first frame.
const FIRST_FRAME_TIMEOUT_MS: u64 = 60_000;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// Storage could not be opened or recovered.
    #[error(transparent)]
    Storage(#[from] WalError),
}

enum Engine {
    Leader(Vec<GroupHandle>),
    Leaderless(Arc<Leaderless>),
}

/// A started node.
pub struct Node {
    cfg: Arc<Config>,
    engine: Engine,
    local_addr: SocketAddr,
    conns: Arc<ConnTable>,
    node_budget: NodeBudget,
    /// `shard_txn=2pc`: drawn at start, part of every transaction id.
    txn_boot: u64,
    /// `shard_txn=2pc`: transactions coordinated since start.
    txn_seq: AtomicU64,
}

/// Binds the listen address, opens storage, calls `on_bound` with the
/// address actually bound (port 0 picks a free one), and serves until the
/// process ends.
pub async fn run(cfg: Config, on_bound: impl FnOnce(SocketAddr)) -> Result<(), NodeError> {
    let listener = TcpListener::bind(cfg.listen).await.map_err(|source| NodeError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let node = start(cfg, &listener)?;
    on_bound(node.local_addr());
    node.accept_loop(listener).await;
    Ok(())
}

/// Opens storage and starts the replication engine for a bound listener.
pub fn start(cfg: Config, listener: &TcpListener) -> Result<Arc<Node>, NodeError> {
    let local_addr = listener.local_addr().map_err(|source| NodeError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let cfg = Arc::new(cfg);
    let transport = Transport::start(&cfg.node_id, &cfg.peers);
    let engine = match cfg.settings.mode {
        Mode::SingleLeader => {
            let mut groups = Vec::new();
            for shard in 0..cfg.settings.shards as u32 {
                groups.push(group::start(cfg.clone(), shard, transport.clone())?);
            }
            Engine::Leader(groups)
        }
        Mode::Leaderless | Mode::MultiLeader => Engine::Leaderless(leaderless::start(cfg.clone(), transport)?),
    };
    info!(node = %cfg.node_id, addr = %local_addr, settings = ?cfg.settings, "node started");
    let conns = ConnTable::new(cfg.settings.max_connections, cfg.settings.max_inflight_per_conn);
    let node_budget = NodeBudget::new(cfg.settings.node_bytes_max);
    let node = Arc::new(Node {
        cfg,
        engine,
        local_addr,
        conns,
        node_budget,
        txn_boot: rand::random(),
        txn_seq: AtomicU64::new(0),
    });
    if let (Engine::Leader(groups), ShardTxn::TwoPc) = (&node.engine, node.cfg.settings.shard_txn) {
        tokio::spawn(node.clone().recover_prepared(groups.clone()));
    }
    Ok(node)
}

impl Node {
    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Accepts connections forever, within the connection limit (see
    /// [`ConnTable`]: at the limit the longest idle client makes room).
    pub async fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors, typically: wait for some
                    // to close rather than spin.
                    warn!(node = %self.cfg.node_id, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let guard = match self.conns.admit() {
                Admission::Admitted(guard) => guard,
                Admission::Replaced { guard, idle_ms } => {
                    info!(node = %self.cfg.node_id, %peer, idle_ms, "connection limit reached; closing the connection idle the longest to admit a new one");
                    guard
                }
                Admission::Refused => {
                    warn!(node = %self.cfg.node_id, %peer, "connection limit reached and every connection is busy; closing");
                    drop(stream);
                    continue;
                }
            };
            let node = self.clone();
            tokio::spawn(async move { node.on_connection(stream, peer, guard).await });
        }
    }

    async fn on_connection(self: Arc<Self>, stream: TcpStream, peer: SocketAddr, guard: ConnGuard) {
        let _ = stream.set_nodelay(true);
        let state = guard.state().clone();
        let (rd, wr) = stream.into_split();
        let mut rd = BufReader::with_capacity(READ_BUFFER_BYTES, rd);
        let first_wait = self.idle_timeout().min(Duration::from_millis(FIRST_FRAME_TIMEOUT_MS));
        let first = match next_frame(&mut rd, &mut Watch::new(&state, first_wait, None)).await {
            Next::Frame(f) => f,
            Next::End(why) => {
                return debug!(node = %self.cfg.node_id, %peer, why, "connection closed before its first frame")
            }
            Next::Bad(e) => {
                if matches!(e, ProtocolError::FrameTooLarge { .. }) {
                    let reply = self.finish(Reply::fail(0, e.to_string()));
                    let (mut wr, frame) = (wr, encode_frame(&reply));
                    let _ = tokio::time::timeout(self.idle_timeout(), wr.write_all(&frame)).await;
                }
                return self.log_bad_frame(peer, &e);
            }
        };
        if let Ok(hello) = serde_json::from_slice::<Hello>(&first) {
            state.set_peer();
            return self.peer_loop(hello.hello, rd).await;
        }
        self.client_loop(first, rd, wr, peer, state).await;
        drop(guard);
    }

    fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.settings.idle_timeout_ms)
    }

    fn log_bad_frame(&self, peer: SocketAddr, e: &ProtocolError) {
        warn!(node = %self.cfg.node_id, %peer, error = %e, "bad frame; closing connection");
    }

    async fn peer_loop(self: Arc<Self>, from: String, mut rd: FrameReader) {
        if !self.cfg.peers.contains_key(&from) {
            warn!(node = %self.cfg.node_id, peer = %from, "unknown peer; closing");
            return;
        }
        loop {
            let frame = match read_frame(&mut rd, PEER_MAX_FRAME_BYTES).await {
                Ok(Some(f)) => f,
                Ok(None) => return,
                Err(e) => {
                    warn!(node = %self.cfg.node_id, peer = %from, error = %e, "peer link broken");
                    return;
                }
            };
            let env: Envelope = match serde_json::from_slice(&frame) {
                Ok(env) => env,
                Err(e) => {
                    warn!(node = %self.cfg.node_id, peer = %from, error = %e, "undecodable peer message; closing");
                    return;
                }
            };
            self.deliver(env).await;
        }
    }

    async fn deliver(&self, env: Envelope) {
        match &self.engine {
            Engine::Leader(groups) => match groups.get(env.shard as usize) {
                Some(g) => g.deliver(env.from, env.msg).await,
                None => {
                    warn!(node = %self.cfg.node_id, peer = %env.from, shard = env.shard, "message for a shard we do not have")
                }
            },
            Engine::Leaderless(engine) => engine.on_peer(env.from, env.msg).await,
        }
    }

    /// Serves one client connection: reads requests (pipelined, within the
    /// in-flight and byte limits) until the client leaves, goes idle,
    /// stops reading its replies, or is closed to make room.
    async fn client_loop(
        self: Arc<Self>,
        first: Vec<u8>,
        mut rd: FrameReader,
        wr: OwnedWriteHalf,
        peer: SocketAddr,
        state: Arc<ConnState>,
    ) {
        let idle = self.idle_timeout();
        let (out_tx, out_rx) = mpsc::channel::<Outgoing>(self.cfg.settings.max_inflight_per_conn);
        tokio::spawn(write_replies(wr, out_rx, idle));
        // Shared by the connection's requests through one Arc of its own:
        // cloning the node-wide parts per request would contend.
        let budgets = Arc::new(Budgets::new(self.cfg.settings.conn_bytes_max, &self.node_budget));
        let mut watch = Watch::new(&state, idle, Some(&out_tx));
        let mut frame = Some(first);
        loop {
            let body = match frame.take() {
                Some(b) => b,
                None => match next_frame(&mut rd, &mut watch).await {
                    Next::Frame(b) => b,
                    Next::End(why) => return debug!(node = %self.cfg.node_id, %peer, why, "client connection closed"),
                    Next::Bad(e) => {
                        if matches!(e, ProtocolError::FrameTooLarge { .. }) {
                            let reply = self.finish(Reply::fail(0, e.to_string()));
                            let _ = out_tx.send(Outgoing::bare(encode_frame(&reply))).await;
                        }
                        return self.log_bad_frame(peer, &e);
                    }
                },
            };
            state.touch();
            // Every slot taken means as many replies unwritten: the client
            // is not reading them. Wait for it, within the idle timeout.
            let slot = match tokio::time::timeout(idle, state.inflight().clone().acquire_owned()).await {
                Ok(Ok(slot)) => slot,
                _ => return debug!(node = %self.cfg.node_id, %peer, "client reads no replies; closing"),
            };
            let req = match decode_request(&body) {
                Ok(req) => req,
                Err(e) => {
                    warn!(node = %self.cfg.node_id, %peer, error = %e, "bad request");
                    let reply = Reply::fail(guess_id(&body), e.to_string());
                    self.queue(&out_tx, reply, slot).await;
                    continue;
                }
            };
            let held = match self.reserve(&req, body.len(), &budgets, idle).await {
                Ok(held) => held,
                Err(why) => {
                    debug!(node = %self.cfg.node_id, %peer, error = %why, "request refused");
                    self.queue(&out_tx, Reply::fail(req.id, why.to_string()), slot).await;
                    if matches!(why, BudgetError::Node { .. }) {
                        // Clients that retry at once would keep the node
                        // busy refusing them, at the expense of the others.
                        tokio::time::sleep(Duration::from_millis(REFUSED_PAUSE_MS)).await;
                    }
                    continue;
                }
            };
            drop(body);
            self.dispatch(req, &out_tx, slot, &budgets, held);
        }
    }

    /// Queues a small reply the connection's own loop makes (a refusal).
    async fn queue(&self, out: &mpsc::Sender<Outgoing>, reply: Reply, slot: OwnedSemaphorePermit) {
        let hold = Hold {
            slot: Some(slot),
            bytes: Held::default(),
        };
        let frame = encode_frame(&self.finish(reply));
        let _ = out.send(Outgoing { frame, hold }).await;
    }

    /// Takes the bytes a request may hold before it is served: its own
    /// body when large, and for a read the node serves itself (a
    /// `multi_read`, or any read without a leader) the largest reply it
    /// could build, so no reply is built that the budgets could not hold.
    async fn reserve(
        &self,
        req: &Request,
        body_bytes: usize,
        budgets: &Budgets,
        wait: Duration,
    ) -> Result<Held, BudgetError> {
        let request_bytes = if body_bytes > SMALL_BYTES { body_bytes } else { 0 };
        let served_here = self.group_of(&req.op).is_none();
        let reply_bytes = match req.op {
            Op::Read { .. } | Op::MultiRead { .. } | Op::Txn { .. } if served_here => MAX_FRAME_BYTES + 4,
            _ => 0,
        };
        budgets.take(request_bytes + reply_bytes, wait).await
    }

    /// Hands a request to its group (single-key requests, answered through
    /// the connection's slot), or to a task of its own.
    fn dispatch(
        self: &Arc<Self>,
        req: Request,
        out: &mpsc::Sender<Outgoing>,
        slot: OwnedSemaphorePermit,
        budgets: &Arc<Budgets>,
        held: Held,
    ) {
        let Some((req, slot, mut held)) = self.submit_direct(req, out, slot, budgets, held) else {
            return;
        };
        let node = self.clone();
        let out = out.clone();
        tokio::spawn(async move {
            let reply = node.handle(req).await;
            let frame = encode_reply(&reply);
            // The reservation covered the largest reply; keep what this
            // one needs until it is written.
            held.shrink_to(frame.len());
            let hold = Hold {
                slot: Some(slot),
                bytes: held,
            };
            let _ = out.send(Outgoing { frame, hold }).await;
        });
    }

    /// Single-key requests on a single-leader node go to their group with
    /// the connection's answer slot: no task, timer or hop of their own
    /// (the group answers each within its request timeout). Anything else
    /// is handed back, to be served by [`Node::handle`].
    fn submit_direct(
        &self,
        req: Request,
        out: &mpsc::Sender<Outgoing>,
        slot: OwnedSemaphorePermit,
        budgets: &Arc<Budgets>,
        held: Held,
    ) -> Option<(Request, OwnedSemaphorePermit, Held)> {
        let Some(group) = self.group_of(&req.op) else {
            return Some((req, slot, held));
        };
        let id = req.id;
        let answer = ConnReply::new(out.clone(), id, slot, budgets.clone(), held);
        if let Err(answer) = group.submit(client_req(req), answer) {
            answer.send(&self.finish(Reply::fail(id, "server overloaded")));
        }
        None
    }

    /// The group that serves a single-key request on a single-leader node.
    fn group_of(&self, op: &Op) -> Option<&GroupHandle> {
        match (&self.engine, op) {
            (Engine::Leader(groups), Op::Txn { ops }) => self.txn_shard(ops).map(|s| &groups[s]),
            (Engine::Leader(_), Op::MultiRead { .. } | Op::Status) | (Engine::Leaderless(_), _) => None,
            (Engine::Leader(groups), op) => Some(&groups[self.shard_of(op_key(op))]),
        }
    }

    /// The one shard every key of a transaction lives on, if there is one.
    fn txn_shard(&self, ops: &[MicroOp]) -> Option<usize> {
        let first = self.shard_of(ops.first()?.key());
        ops.iter().all(|o| self.shard_of(o.key()) == first).then_some(first)
    }

    fn finish(&self, mut reply: Reply) -> Reply {
        if reply.node.is_empty() {
            reply.node = self.cfg.node_id.clone();
        }
        reply
    }

    /// Serves one validated request.
    pub async fn handle(&self, req: Request) -> Reply {
        let id = req.id;
        let timeout = Duration::from_millis(self.cfg.settings.request_timeout_ms + ENGINE_GRACE_MS);
        let reply = match (&self.engine, req.op.clone()) {
            (_, Op::Status) => self.status(id).await,
            (Engine::Leaderless(_), Op::Txn { .. }) => Reply::fail(
                id,
                "transactions need mode=single_leader; this node replicates without a leader",
            ),
            (Engine::Leader(groups), Op::Txn { ops }) => match self.cfg.settings.shard_txn {
                ShardTxn::TwoPc => self.txn_two_phase(groups, req, ops, timeout).await,
                ShardTxn::None => self.txn_in_pieces(groups, req, ops, timeout).await,
            },
            (Engine::Leader(groups), Op::MultiRead { keys }) => {
                self.sharded_multi_read(groups, req, keys, timeout).await
            }
            (Engine::Leader(_), _) => match self.group_of(&req.op) {
                Some(group) => group.call(client_req(req), timeout).await,
                None => Reply::fail(id, "no group serves this request"),
            },
            (Engine::Leaderless(engine), op) => {
                let is_write = op.is_write();
                match tokio::time::timeout(timeout, engine.handle(id, op)).await {
                    Ok(r) => r,
                    Err(_) if is_write => Reply::unknown(id, "timed out"),
                    Err(_) => Reply::fail(id, "read timed out"),
                }
            }
        };
        self.finish(reply)
    }

    fn shard_of(&self, key: &str) -> usize {
        shard_of(key, self.cfg.settings.shards)
    }

    /// Reads each shard's keys from that shard's group, one shard after the
    /// other: each part is consistent, the whole is not a snapshot.
    async fn sharded_multi_read(
        &self,
        groups: &[GroupHandle],
        req: Request,
        keys: Vec<String>,
        timeout: Duration,
    ) -> Reply {
        let key_count = keys.len();
        let mut merged_bytes = 0;
        let mut by_shard: Vec<Vec<String>> = vec![Vec::new(); groups.len()];
        for k in keys {
            by_shard[self.shard_of(&k)].push(k);
        }
        let mut merged = serde_json::Map::new();
        let mut last = None;
        for (shard, keys) in by_shard.into_iter().enumerate() {
            if keys.is_empty() {
                continue;
            }
            let creq = ClientReq {
                id: req.id,
                op: Op::MultiRead { keys },
                session: req.session.clone(),
                forwarded: false,
            };
            let mut reply = groups[shard].call(creq, timeout).await;
            if reply.result != Outcome::Ok {
                return reply;
            }
            // Each shard's part fits a frame; the parts together may not.
            let room = (MAX_FRAME_BYTES - REPLY_OVERHEAD_BYTES).saturating_sub(merged_bytes);
            match json_len_capped(&reply.value, room) {
                Some(n) => merged_bytes += n,
                None => return Reply::fail(req.id, reply_too_large(&format!("reading {key_count} keys"))),
            }
            if let Value::Object(m) = std::mem::take(&mut reply.value) {
                merged.extend(m);
            }
            last = Some(reply);
        }
        let mut reply = last.unwrap_or_else(|| Reply::new(req.id, Outcome::Ok));
        reply.value = Value::Object(merged);
        if groups.len() > 1 {
            reply.lsn = None;
            reply.shard = None;
        }
        reply
    }

    async fn status(&self, id: u64) -> Reply {
        let (mode, shards) = match &self.engine {
            Engine::Leader(groups) => {
                let mut out = Vec::new();
                for g in groups {
                    match g.status().await {
                        Some(s) => out.push(s),
                        None => return Reply::unknown(id, "group did not answer"),
                    }
                }
                ("single_leader", out)
            }
            Engine::Leaderless(engine) => {
                let mode = if self.cfg.settings.mode == Mode::MultiLeader {
                    "multi_leader"
                } else {
                    "leaderless"
                };
                (mode, vec![engine.status().await])
            }
        };
        let mut reply = Reply::new(id, Outcome::Ok);
        let wall_ms = chrono::Utc::now().timestamp_millis();
        reply.status = Some(StatusInfo {
            mode: mode.into(),
            main: shards[0].clone(),
            shards,
            clock_ms: wall_ms + self.cfg.settings.clock_offset_ms,
        });
        reply
    }
}

mod shard_txn;
mod two_phase;

/// The shard of `shards` that holds `key` (the simulation routes by it
/// too, so its shards hold the keys the server's do).
pub fn shard_of(key: &str, shards: usize) -> usize {
    (stable_hash(key) % shards as u64) as usize
}

/// A client's request as its group sees it (not forwarded yet).
fn client_req(req: Request) -> ClientReq {
    ClientReq {
        id: req.id,
        op: req.op,
        session: req.session,
        forwarded: false,
    }
}

fn op_key(op: &Op) -> &str {
    match op {
        Op::Read { key } | Op::Write { key, .. } | Op::Cas { key, .. } | Op::Append { key, .. } => key,
        Op::MultiRead { .. } | Op::Txn { .. } | Op::Status => "",
    }
}

/// Best effort: the id of a request we could not decode, so the client can
/// match the failure; 0 when there is none.
fn guess_id(body: &[u8]) -> u64 {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("id").and_then(Value::as_u64))
        .unwrap_or(0)
}

/// How a wait for the next frame ended.
enum Next {
    /// A whole frame.
    Frame(Vec<u8>),
    /// The connection is done, for the reason given.
    End(&'static str),
    /// A broken frame.
    Bad(ProtocolError),
}

/// What a connection's reader waits on besides its socket, kept for the
/// connection's life: creating a timer per frame costs a lock on the
/// runtime's timer wheel per request, shared by every connection.
struct Watch<'a> {
    state: &'a ConnState,
    idle: Duration,
    tick: Pin<Box<tokio::time::Sleep>>,
    out: Option<&'a mpsc::Sender<Outgoing>>,
}

impl<'a> Watch<'a> {
    fn new(state: &'a ConnState, idle: Duration, out: Option<&'a mpsc::Sender<Outgoing>>) -> Watch<'a> {
        Watch {
            state,
            idle,
            tick: Box::pin(tokio::time::sleep(idle)),
            out,
        }
    }

    /// Whether the connection should end now; else sets the next tick at
    /// the moment it could have been idle for `idle`.
    fn idle_now(&mut self) -> bool {
        let quiet = self.state.quiet_for();
        if quiet >= self.idle && self.state.is_idle() {
            return true;
        }
        let wait = self.idle.saturating_sub(quiet).max(Duration::from_millis(1));
        let wait = if quiet >= self.idle { self.idle } else { wait };
        self.tick.as_mut().reset(tokio::time::Instant::now() + wait);
        false
    }
}

/// Waits for the next frame, ending the connection when it is asked to
/// make room, when it has been idle for the idle timeout (nothing in
/// flight and nothing received), when its writer gave up (the client
/// stopped reading), or when a frame, once begun, does not arrive whole
/// within the idle timeout.
async fn next_frame(rd: &mut FrameReader, watch: &mut Watch<'_>) -> Next {
    if watch.out.is_some_and(|o| o.is_closed()) {
        return Next::End("the client stopped reading replies");
    }
    // Frames already buffered (a pipelining client) need no waiting.
    if rd.buffer().is_empty() {
        loop {
            // `fill_buf` is cancel-safe: losing the race loses no bytes.
            let ready = tokio::select! {
                biased;
                _ = watch.state.evicted() => return Next::End("closed to admit a new client"),
                r = rd.fill_buf() => r.map(|b| b.is_empty()),
                _ = &mut watch.tick => {
                    if watch.idle_now() {
                        return Next::End("idle");
                    }
                    if watch.out.is_some_and(|o| o.is_closed()) {
                        return Next::End("the client stopped reading replies");
                    }
                    continue;
                }
            };
            match ready {
                Ok(true) => return Next::End("closed by the client"),
                Ok(false) => break,
                Err(e) => return Next::Bad(e.into()),
            }
        }
    }
    match tokio::time::timeout(watch.idle, read_frame(rd, MAX_FRAME_BYTES)).await {
        Ok(Ok(Some(f))) => Next::Frame(f),
        Ok(Ok(None)) => Next::End("closed by the client"),
        Ok(Err(e)) => Next::Bad(e),
        Err(_) => Next::End("a frame took longer than the idle timeout to arrive"),
    }
}

/// Writes queued replies, batching whatever is ready into one write. A
/// write that makes no progress for `stall` (a client that does not read)
/// ends the connection; each frame's slot and bytes are released once it
/// is written.
async fn write_replies(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Outgoing>, stall: Duration) {
    let mut buf = Vec::new();
    let mut holds = Vec::new();
    while let Some(first) = rx.recv().await {
        buf.clear();
        buf.extend_from_slice(&first.frame);
        holds.push(first.hold);
        while buf.len() <= MAX_FRAME_BYTES {
            match rx.try_recv() {
                Ok(more) => {
                    buf.extend_from_slice(&more.frame);
                    holds.push(more.hold);
                }
                Err(_) => break,
            }
        }
        match tokio::time::timeout(stall, wr.write_all(&buf)).await {
            Ok(Ok(())) => holds.clear(),
            _ => return,
        }
        // A large batch's buffer is not kept for the connection's life.
        if buf.capacity() > READ_BUFFER_BYTES {
            buf = Vec::new();
        }
    }
}
