//! A running node: the listener, client and peer connections, and routing of
//! requests to the replication engine (one group per shard, or the
//! leaderless engine).
//!
//! Promises:
//! - One address serves clients and peers; a connection whose first frame is
//!   a peer `Hello` is a peer link, anything else is a client.
//! - Limits: at most `max_connections` connections (more are closed at once,
//!   with one log line), at most `max_inflight_per_conn` requests in flight
//!   per connection (pipelining; replies carry the request id), frames of at
//!   most 1 MiB from clients.
//! - Bad input gets a `fail` reply (or, for a broken frame, a closed
//!   connection) and one log line; it never reaches the replication state.

use crate::config::{Config, Mode};
use crate::group::{self, ClientReq, ConnReply, GroupHandle};
use crate::leaderless::{self, stable_hash, Leaderless};
use crate::protocol::{
    decode_request, encode_frame, read_frame, Op, Outcome, ProtocolError, Reply, Request, StatusInfo, MAX_FRAME_BYTES,
};
use crate::transport::{Envelope, Hello, Transport, PEER_MAX_FRAME_BYTES};
use crate::wal::WalError;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
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
    Ok(Arc::new(Node {
        cfg,
        engine,
        local_addr,
    }))
}

impl Node {
    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Accepts connections forever, within the connection limit.
    pub async fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        let limit = Arc::new(Semaphore::new(self.cfg.settings.max_connections));
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    warn!(node = %self.cfg.node_id, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                warn!(node = %self.cfg.node_id, %peer, "connection limit reached; closing");
                drop(stream);
                continue;
            };
            let node = self.clone();
            tokio::spawn(async move {
                node.on_connection(stream, peer).await;
                drop(permit);
            });
        }
    }

    async fn on_connection(self: Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let (rd, wr) = stream.into_split();
        let mut rd = BufReader::with_capacity(READ_BUFFER_BYTES, rd);
        let first = tokio::time::timeout(
            Duration::from_millis(FIRST_FRAME_TIMEOUT_MS),
            read_frame(&mut rd, MAX_FRAME_BYTES),
        )
        .await;
        let first = match first {
            Ok(Ok(Some(f))) => f,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                if matches!(e, ProtocolError::FrameTooLarge { .. }) {
                    let reply = self.finish(Reply::fail(0, e.to_string()));
                    let mut wr = wr;
                    let _ = wr.write_all(&encode_frame(&reply)).await;
                }
                return self.log_bad_frame(peer, &e);
            }
            Err(_) => {
                debug!(node = %self.cfg.node_id, %peer, "connection sent nothing; closed");
                return;
            }
        };
        if let Ok(hello) = serde_json::from_slice::<Hello>(&first) {
            return self.peer_loop(hello.hello, rd).await;
        }
        self.client_loop(first, rd, wr, peer).await;
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
            Engine::Leaderless(engine) => {
                let engine = engine.clone();
                tokio::spawn(async move { engine.on_peer(env.from, env.msg).await });
            }
        }
    }

    async fn client_loop(self: Arc<Self>, first: Vec<u8>, mut rd: FrameReader, wr: OwnedWriteHalf, peer: SocketAddr) {
        let max_inflight = self.cfg.settings.max_inflight_per_conn;
        let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(max_inflight);
        tokio::spawn(write_replies(wr, out_rx));
        let inflight = Arc::new(Semaphore::new(max_inflight));
        let mut frame = Some(first);
        loop {
            let body = match frame.take() {
                Some(b) => b,
                None => match read_frame(&mut rd, MAX_FRAME_BYTES).await {
                    Ok(Some(b)) => b,
                    Ok(None) => return,
                    Err(e) => {
                        if matches!(e, ProtocolError::FrameTooLarge { .. }) {
                            let reply = self.finish(Reply::fail(0, e.to_string()));
                            let _ = out_tx.send(encode_frame(&reply)).await;
                        }
                        return self.log_bad_frame(peer, &e);
                    }
                },
            };
            let Ok(permit) = inflight.clone().acquire_owned().await else {
                return;
            };
            let req = match decode_request(&body) {
                Ok(req) => req,
                Err(e) => {
                    warn!(node = %self.cfg.node_id, %peer, error = %e, "bad request");
                    let reply = self.finish(Reply::fail(guess_id(&body), e.to_string()));
                    let _ = out_tx.send(encode_frame(&reply)).await;
                    continue;
                }
            };
            let Some((req, permit)) = self.submit_direct(req, &out_tx, permit) else {
                continue;
            };
            let node = self.clone();
            let out = out_tx.clone();
            tokio::spawn(async move {
                let reply = node.handle(req).await;
                let _ = out.send(encode_frame(&reply)).await;
                drop(permit);
            });
        }
    }

    /// Single-key requests on a single-leader node go to their group with
    /// the connection's answer slot: no task, timer or hop of their own
    /// (the group answers each within its request timeout). Anything else
    /// is handed back, to be served by [`Node::handle`].
    fn submit_direct(
        &self,
        req: Request,
        out: &mpsc::Sender<Vec<u8>>,
        permit: OwnedSemaphorePermit,
    ) -> Option<(Request, OwnedSemaphorePermit)> {
        let Some(group) = self.group_of(&req.op) else {
            return Some((req, permit));
        };
        let id = req.id;
        if let Err(slot) = group.submit(client_req(req), ConnReply::new(out.clone(), id, permit)) {
            slot.send(&self.finish(Reply::fail(id, "server overloaded")));
        }
        None
    }

    /// The group that serves a single-key request on a single-leader node.
    fn group_of(&self, op: &Op) -> Option<&GroupHandle> {
        match (&self.engine, op) {
            (Engine::Leader(_), Op::MultiRead { .. } | Op::Status) | (Engine::Leaderless(_), _) => None,
            (Engine::Leader(groups), op) => Some(&groups[self.shard_of(op_key(op))]),
        }
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
        (stable_hash(key) % self.cfg.settings.shards as u64) as usize
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
            let reply = groups[shard].call(creq, timeout).await;
            if reply.result != Outcome::Ok {
                return reply;
            }
            if let Value::Object(m) = &reply.value {
                merged.extend(m.clone());
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
        let wall_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        reply.status = Some(StatusInfo {
            mode: mode.into(),
            main: shards[0].clone(),
            shards,
            clock_ms: wall_ms + self.cfg.settings.clock_offset_ms,
        });
        reply
    }
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
        Op::MultiRead { .. } | Op::Status => "",
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

async fn write_replies(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Vec<u8>>) {
    let mut buf = Vec::new();
    while let Some(first) = rx.recv().await {
        buf.clear();
        buf.extend_from_slice(&first);
        while let Ok(more) = rx.try_recv() {
            buf.extend_from_slice(&more);
            if buf.len() > MAX_FRAME_BYTES {
                break;
            }
        }
        if wr.write_all(&buf).await.is_err() {
            return;
        }
    }
}
