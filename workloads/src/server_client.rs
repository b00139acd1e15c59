//! The `Client` for faultline-server: the typed wire protocol of
//! `faultline-protocol` (a 4-byte big-endian length, then a JSON object)
//! over TCP, the same types the server decodes.
//!
//! Routing: a client has a home node. Reads go there ([`ReadRouting::Home`],
//! a session sticks to one replica, as `reads=sticky` wants) or to a replica
//! drawn per read from a seeded RNG ([`ReadRouting::Any`], a load-balancing
//! client, as `reads=follower` and leaderless quorums meet them). It follows a `leader_hint` on a `fail` reply at most
//! [`MAX_REDIRECTS`] times; it remembers the leader for later writes (and for
//! reads, once a read has been redirected) and forgets it on any doubt.
//! Sessions: it remembers the highest LSN it saw per shard and sends it, so a
//! `reads=lsn` replica can wait until it has caught up.
//!
//! Honesty: the request is certainly not applied only when no byte of it
//! left (the connection could not be opened, or a fresh connection did not
//! answer its `status` probe) or the server said `fail`.
//! Everything else that goes wrong (timeout, reset, a half reply, a reply to
//! another request, `unknown`) is info, and the connection is dropped so a
//! late reply can never be taken for the next request's. A kept connection
//! the server has closed meanwhile (its idle timeout, or room made for a new
//! connection) is noticed before a request is written to it and replaced,
//! so such a close costs a reconnect rather than an info.

use std::collections::BTreeMap;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::time::Duration;

use faultline_protocol::{self as wire, encode_frame, read_frame, MicroOp, Op, Reply, Session};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::client::{BoxFuture, Client, Completion, Outcome};
use crate::error::WorkloadError;
use crate::request::{Request, TxnOp};

/// Redirects followed within one operation.
pub const MAX_REDIRECTS: usize = 2;
/// Largest reply accepted, checked before it is allocated: the protocol's
/// frame limit.
pub const MAX_REPLY_BYTES: usize = wire::MAX_FRAME_BYTES;

/// How a [`ServerClient`] reaches the cluster.
#[derive(Clone, Debug)]
pub struct ServerClientConfig {
    /// The address to use for each node (a proxy, under the proxy mesh).
    pub routes: BTreeMap<String, SocketAddr>,
    /// The node this client reads from and sends writes to first.
    pub home: String,
    /// Where reads go.
    pub read_routing: ReadRouting,
    /// Seeds the replica draws of `ReadRouting::Any`.
    pub seed: u64,
    /// How long an operation may take before it is info.
    pub timeout_ms: u64,
    /// How long opening a connection may take before the operation fails.
    pub connect_timeout_ms: u64,
}

impl ServerClientConfig {
    /// A client of the nodes at `routes`, homed on `home`, reading there,
    /// with one-second limits; change the fields for anything else.
    pub fn new(routes: BTreeMap<String, SocketAddr>, home: impl Into<String>) -> ServerClientConfig {
        ServerClientConfig {
            routes,
            home: home.into(),
            read_routing: ReadRouting::Home,
            seed: 0,
            timeout_ms: 1_000,
            connect_timeout_ms: 1_000,
        }
    }
}

/// Where a client sends its reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadRouting {
    /// Always the home node.
    Home,
    /// A replica drawn at random for each read.
    Any,
    /// The leader the client knows (where its writes go), else home: a
    /// client of a single-leader database that reads where it writes,
    /// saving the hop a follower takes to forward a leader read.
    Leader,
}

impl ReadRouting {
    /// Parses `home`, `any` or `leader`.
    pub fn parse(s: &str) -> Result<ReadRouting, WorkloadError> {
        match s {
            "home" | "sticky" => Ok(ReadRouting::Home),
            "any" => Ok(ReadRouting::Any),
            "leader" => Ok(ReadRouting::Leader),
            o => Err(WorkloadError::BadConfig(format!(
                "read routing {o:?}: expected home, any or leader"
            ))),
        }
    }
}

/// The history's error for a `fail` reply. A compare-and-set the server
/// rejected because the value differed is HISTORY_FORMAT's `cas-mismatch`:
/// the server judged it in log order (at apply time), so it observed the
/// value at an instant within the operation, and the linearizability
/// checker may use it as an observation.
fn fail_error(error: Option<String>) -> String {
    match error {
        Some(e) if e.starts_with("cas mismatch") => CAS_MISMATCH.to_owned(),
        Some(e) => e,
        None => "fail".into(),
    }
}

/// The error of a compare-and-set that found another value.
pub const CAS_MISMATCH: &str = "cas-mismatch";

/// A client of faultline-server with one operation in flight.
pub struct ServerClient {
    cfg: ServerClientConfig,
    /// Reads are buffered, so a reply costs one `recv`, not two.
    conns: BTreeMap<String, BufReader<TcpStream>>,
    next_id: u64,
    leader: Option<String>,
    reads_to_leader: bool,
    shard_lsns: Vec<u64>,
    rng: ChaCha8Rng,
}

/// What one exchange with one node gave.
enum Exchange {
    /// The node replied (boxed: a reply is large beside the other variants).
    Reply(Box<Reply>),
    /// Nothing was sent: certainly not applied.
    NotSent(String),
    /// Sent, outcome unknown.
    Lost(String),
}

impl ServerClient {
    /// A client; connections open on first use.
    pub fn new(cfg: ServerClientConfig) -> ServerClient {
        ServerClient {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            cfg,
            conns: BTreeMap::new(),
            next_id: 0,
            leader: None,
            reads_to_leader: false,
            shard_lsns: Vec::new(),
        }
    }

    /// The request as the server's protocol types it, under a fresh id,
    /// with the session's LSNs.
    fn wire_request(&mut self, req: &Request) -> wire::Request {
        self.next_id += 1;
        let session = match self.shard_lsns.first() {
            Some(first) => Session {
                min_lsn: Some(*first),
                shard_lsns: self.shard_lsns.clone(),
            },
            None => Session::default(),
        };
        wire::Request {
            id: self.next_id,
            op: wire_op(req),
            session,
        }
    }

    async fn exchange(&mut self, node: &str, id: u64, frame: &[u8]) -> Exchange {
        let Some(addr) = self.cfg.routes.get(node).copied() else {
            return Exchange::NotSent(format!("no route to {node}"));
        };
        let timeout = Duration::from_millis(self.cfg.timeout_ms);
        if self.conns.get(node).is_some_and(|s| !still_open(s)) {
            tracing::debug!(node, "the server closed the kept connection; reconnecting");
            self.conns.remove(node);
        }
        if !self.conns.contains_key(node) {
            let connect = tokio::time::timeout(
                Duration::from_millis(self.cfg.connect_timeout_ms),
                TcpStream::connect(addr),
            );
            match connect.await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    let mut s = BufReader::new(s);
                    if let Err(e) = self.probe(&mut s).await {
                        return Exchange::NotSent(e);
                    }
                    self.conns.insert(node.to_owned(), s);
                }
                Ok(Err(e)) => return Exchange::NotSent(format!("connect: {e}")),
                Err(_) => return Exchange::NotSent("connect timed out".into()),
            }
        }
        let stream = self.conns.get_mut(node).expect("connection just ensured");
        let r = tokio::time::timeout(timeout, round_trip(stream, frame)).await;
        let reply = match r {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                self.conns.remove(node);
                return Exchange::Lost(e);
            }
            Err(_) => {
                self.conns.remove(node);
                return Exchange::Lost(format!("timed out after {} ms", self.cfg.timeout_ms));
            }
        };
        if reply.id != id {
            self.conns.remove(node);
            return Exchange::Lost(format!("reply to request {}, expected {id}", reply.id));
        }
        Exchange::Reply(Box::new(reply))
    }

    /// Asks a fresh connection for `status` before any operation uses it.
    /// Under a proxy, connecting succeeds even when the node is down or cut
    /// off; the probe tells, while the operation has certainly not been
    /// sent, so such an operation is an honest `fail` rather than an `info`.
    async fn probe(&mut self, s: &mut BufReader<TcpStream>) -> Result<(), String> {
        self.next_id += 1;
        let id = self.next_id;
        let frame = encode_frame(&status_request(id).to_raw());
        let limit = Duration::from_millis(self.cfg.connect_timeout_ms);
        match tokio::time::timeout(limit, round_trip(s, &frame)).await {
            Ok(Ok(reply)) if reply.id == id => Ok(()),
            Ok(Ok(_)) => Err("the probe's reply names another request".into()),
            Ok(Err(e)) => Err(format!("the node did not answer a probe: {e}")),
            Err(_) => Err(format!(
                "the node did not answer a probe within {} ms",
                self.cfg.connect_timeout_ms
            )),
        }
    }

    fn note_lsn(&mut self, reply: &Reply) {
        let Some(lsn) = reply.lsn else {
            return;
        };
        let shard = reply.shard.unwrap_or(0) as usize;
        if shard < 64 {
            if self.shard_lsns.len() <= shard {
                self.shard_lsns.resize(shard + 1, 0);
            }
            self.shard_lsns[shard] = self.shard_lsns[shard].max(lsn);
        }
    }

    fn first_target(&mut self, req: &Request) -> String {
        let to_leader = req.is_write() || self.reads_to_leader || self.cfg.read_routing == ReadRouting::Leader;
        match (&self.leader, to_leader) {
            (Some(l), true) => l.clone(),
            _ if !req.is_write() && self.cfg.read_routing == ReadRouting::Any && !self.cfg.routes.is_empty() => {
                let i = self.rng.gen_range(0..self.cfg.routes.len());
                self.cfg.routes.keys().nth(i).expect("i < routes").clone()
            }
            _ => self.cfg.home.clone(),
        }
    }

    async fn call_inner(&mut self, req: &Request) -> Completion {
        let wire = self.wire_request(req);
        let frame = encode_frame(&wire.to_raw());
        let mut node = self.first_target(req);
        for hop in 0..=MAX_REDIRECTS {
            let reply = match self.exchange(&node, wire.id, &frame).await {
                Exchange::Reply(r) => r,
                Exchange::NotSent(e) => {
                    self.leader = None;
                    return Completion::fail(Some(node), e);
                }
                Exchange::Lost(e) => {
                    self.leader = None;
                    return Completion::info(Some(node), e);
                }
            };
            match self.judge(req, &node, hop, *reply) {
                Judged::Done(completion) => return completion,
                Judged::Redirect(to) => node = to,
            }
        }
        unreachable!("the last hop always returns")
    }

    /// What a reply means for the operation: its completion, or the node
    /// to ask next when a follower pointed at its leader.
    fn judge(&mut self, req: &Request, node: &str, hop: usize, reply: Reply) -> Judged {
        let answered_by = if reply.node.is_empty() {
            node.to_owned()
        } else {
            reply.node.clone()
        };
        match reply.result {
            wire::Outcome::Ok => {
                if let Err(why) = txn_reply_fits(req, &reply.value) {
                    // Committed, by the server's word, but what it read is
                    // unreadable: record nothing the checker would trust.
                    return Judged::Done(Completion::info(Some(answered_by), why));
                }
                self.note_lsn(&reply);
                if req.is_write() || self.cfg.read_routing == ReadRouting::Leader {
                    self.leader = Some(answered_by.clone());
                }
                Judged::Done(Completion {
                    outcome: Outcome::Ok,
                    value: req.ok_value(&reply.value),
                    node: Some(answered_by),
                    error: None,
                })
            }
            wire::Outcome::Fail => match reply.leader_hint {
                Some(h) if h != node && hop < MAX_REDIRECTS && self.cfg.routes.contains_key(&h) => {
                    if !req.is_write() {
                        self.reads_to_leader = true;
                    }
                    self.leader = Some(h.clone());
                    Judged::Redirect(h)
                }
                _ => Judged::Done(Completion::fail(Some(answered_by), fail_error(reply.error))),
            },
            wire::Outcome::Unknown => {
                self.leader = None;
                let error = reply.error.unwrap_or_else(|| "unknown".into());
                Judged::Done(Completion::info(Some(answered_by), error))
            }
        }
    }
}

/// What one reply decided.
enum Judged {
    /// The operation is complete.
    Done(Completion),
    /// Ask this node next.
    Redirect(String),
}

/// The server's operation for a workload request. A cas of an absent
/// value expects null, as the protocol reads it.
fn wire_op(req: &Request) -> Op {
    match req {
        Request::Read { key } => Op::Read { key: key.clone() },
        Request::Write { key, value } => Op::Write {
            key: key.clone(),
            value: json!(value),
        },
        Request::Cas { key, expected, new } => Op::Cas {
            key: key.clone(),
            expected: json!(expected),
            new: json!(new),
        },
        Request::Append { key, value } => Op::Append {
            key: key.clone(),
            value: json!(value),
        },
        Request::MultiRead { keys } => Op::MultiRead { keys: keys.clone() },
        Request::Txn { ops } => Op::Txn {
            ops: ops.iter().map(micro_op).collect(),
        },
    }
}

/// Whether an ok reply to a transaction is its micro-ops in the order sent
/// (the same function, key and written value each; reads filled in). A
/// reply of another shape could put a read the server never made into the
/// history, so it is refused.
fn txn_reply_fits(req: &Request, returned: &Value) -> Result<(), String> {
    let Request::Txn { ops } = req else {
        return Ok(());
    };
    let bad = |why: String| Err(format!("malformed txn reply: {why}"));
    let Some(got) = returned.as_array() else {
        return bad(format!("expected a list of micro-ops, got {returned}"));
    };
    if got.len() != ops.len() {
        return bad(format!("{} micro-ops for the {} sent", got.len(), ops.len()));
    }
    for (i, (op, m)) in ops.iter().zip(got).enumerate() {
        let sent = op.to_value(Value::Null);
        let fits = match m.as_array().map(Vec::as_slice) {
            Some([f, k, v]) => f == &sent[0] && k == &sent[1] && (!op.is_write() || v == &sent[2]),
            _ => false,
        };
        if !fits {
            return bad(format!("micro-op {i} came back as {m}, sent {sent}"));
        }
    }
    Ok(())
}

fn micro_op(op: &TxnOp) -> MicroOp {
    match op {
        TxnOp::Append { key, value } => MicroOp::Append {
            key: key.clone(),
            value: (*value).into(),
        },
        TxnOp::Read { key } => MicroOp::Read { key: key.clone() },
        TxnOp::Write { key, value } => MicroOp::Write {
            key: key.clone(),
            value: (*value).into(),
        },
    }
}

fn status_request(id: u64) -> wire::Request {
    wire::Request {
        id,
        op: Op::Status,
        session: Session::default(),
    }
}

/// Whether a kept connection can still carry a request: nothing is
/// waiting to be read (a stray byte means the stream is out of step) and
/// the server has not closed it. A non-blocking peek asks the socket
/// itself, so a close is seen however long ago it came and whether or not
/// the runtime has polled the socket since.
fn still_open(stream: &BufReader<TcpStream>) -> bool {
    if !stream.buffer().is_empty() {
        return false;
    }
    let mut byte = [MaybeUninit::<u8>::uninit()];
    match socket2::SockRef::from(stream.get_ref()).peek(&mut byte) {
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        Ok(_) => false,
    }
}

impl Client for ServerClient {
    fn call<'a>(&'a mut self, req: &'a Request) -> BoxFuture<'a, Completion> {
        Box::pin(self.call_inner(req))
    }

    fn new_session(&mut self) {
        self.shard_lsns.clear();
    }
}

/// Writes one request frame and reads one reply frame.
async fn round_trip(stream: &mut BufReader<TcpStream>, frame: &[u8]) -> Result<Reply, String> {
    stream.write_all(frame).await.map_err(|e| format!("send: {e}"))?;
    let body = match read_frame(stream, MAX_REPLY_BYTES).await {
        Ok(Some(body)) => body,
        Ok(None) => return Err("connection lost: closed before a reply".into()),
        Err(wire::ProtocolError::Truncated) => return Err("connection lost mid-reply".into()),
        Err(e) => return Err(format!("connection lost: {e}")),
    };
    serde_json::from_slice(&body).map_err(|e| format!("malformed reply: {e}"))
}

/// Asks one node for its `status` (role, epoch, LSNs, leader) directly,
/// bounded by `timeout`.
pub async fn status(node: &str, addr: SocketAddr, timeout: Duration) -> Result<Value, WorkloadError> {
    let err = |message: String| WorkloadError::Node {
        node: node.to_owned(),
        message,
    };
    let ask = async {
        let s = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
        let mut s = BufReader::new(s);
        round_trip(&mut s, &encode_frame(&status_request(0).to_raw())).await
    };
    let reply = tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| err(format!("status timed out after {} ms", timeout.as_millis())))?
        .map_err(err)?;
    if reply.result != wire::Outcome::Ok {
        let answer = serde_json::to_string(&reply).expect("replies serialize");
        return Err(err(format!("status answered {answer}")));
    }
    Ok(reply
        .status
        .map_or(Value::Null, |s| serde_json::to_value(s).expect("a status serializes")))
}

#[cfg(test)]
#[path = "server_client_txn_tests.rs"]
mod txn_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A node that answers each request with `reply(request)`.
    pub(super) async fn node(reply: fn(Value) -> Option<Value>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    loop {
                        let mut len = [0u8; 4];
                        if s.read_exact(&mut len).await.is_err() {
                            return;
                        }
                        let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
                        s.read_exact(&mut buf).await.unwrap();
                        let Some(r) = reply(serde_json::from_slice(&buf).unwrap()) else {
                            continue; // silence: the client must time out
                        };
                        let body = serde_json::to_vec(&r).unwrap();
                        s.write_all(&(body.len() as u32).to_be_bytes()).await.unwrap();
                        s.write_all(&body).await.unwrap();
                    }
                });
            }
        });
        addr
    }

    pub(super) fn client(addr: SocketAddr) -> ServerClient {
        ServerClient::new(ServerClientConfig {
            routes: [("n1".to_owned(), addr)].into(),
            home: "n1".into(),
            read_routing: ReadRouting::Home,
            seed: 1,
            timeout_ms: 300,
            connect_timeout_ms: 300,
        })
    }

    #[tokio::test]
    async fn maps_ok_fail_and_unknown_honestly() {
        let addr = node(|req| {
            let result = match req["key"].as_str() {
                Some("ok") => "ok",
                Some("fail") => "fail",
                _ => "unknown",
            };
            if req["op"] == "cas" {
                return Some(json!({"id": req["id"], "result": "fail", "error": "cas mismatch: current value is 3"}));
            }
            Some(json!({"id": req["id"], "result": result, "value": 5, "node": "n1", "lsn": 9}))
        })
        .await;
        let mut c = client(addr);
        let ok = c.call(&Request::Read { key: "ok".into() }).await;
        assert_eq!((ok.outcome, ok.value), (Outcome::Ok, json!(5)));
        assert_eq!(c.shard_lsns, vec![9]);
        let fail = c.call(&Request::Read { key: "fail".into() }).await;
        assert_eq!(fail.outcome, Outcome::Fail);
        let unknown = c
            .call(&Request::Write {
                key: "u".into(),
                value: 1,
            })
            .await;
        assert_eq!(unknown.outcome, Outcome::Info);
        let cas = Request::Cas {
            key: "fail".into(),
            expected: Some(1),
            new: 2,
        };
        let mismatch = c.call(&cas).await;
        assert_eq!(mismatch.outcome, Outcome::Fail);
        assert_eq!(
            mismatch.error.as_deref(),
            Some(CAS_MISMATCH),
            "an observation, as HISTORY_FORMAT says"
        );
        c.new_session();
        assert!(c.shard_lsns.is_empty());
    }

    #[tokio::test]
    async fn a_timeout_is_info_and_an_unreachable_node_is_fail() {
        let write = Request::Write {
            key: "k".into(),
            value: 1,
        };
        let stalls = node(|req| (req["op"] == "status").then(|| json!({"id": req["id"], "result": "ok"}))).await;
        let mut c = client(stalls);
        let t = c.call(&write).await;
        assert_eq!(t.outcome, Outcome::Info, "{t:?}");
        assert!(c.conns.is_empty(), "a timed-out connection must be dropped");

        // Reachable (a proxy accepts) but the node never answers: the probe
        // fails before the operation is sent.
        let silent = node(|_| None).await;
        let mut c = client(silent);
        let p = c.call(&write).await;
        assert_eq!(p.outcome, Outcome::Fail, "{p:?}");

        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let mut c = client(closed);
        let f = c
            .call(&Request::Write {
                key: "k".into(),
                value: 1,
            })
            .await;
        assert_eq!(f.outcome, Outcome::Fail, "{f:?}");
    }

    #[tokio::test]
    async fn follows_a_leader_hint() {
        let follower =
            node(|req| Some(json!({"id": req["id"], "result": "fail", "leader_hint": "n2", "node": "n1"}))).await;
        let leader = node(|req| Some(json!({"id": req["id"], "result": "ok", "node": "n2"}))).await;
        let mut c = ServerClient::new(ServerClientConfig {
            routes: [("n1".to_owned(), follower), ("n2".to_owned(), leader)].into(),
            home: "n1".into(),
            read_routing: ReadRouting::Home,
            seed: 1,
            timeout_ms: 300,
            connect_timeout_ms: 300,
        });
        let w = c
            .call(&Request::Write {
                key: "k".into(),
                value: 1,
            })
            .await;
        assert_eq!((w.outcome, w.node.as_deref()), (Outcome::Ok, Some("n2")));
        assert_eq!(
            c.first_target(&Request::Write {
                key: "k".into(),
                value: 2
            }),
            "n2"
        );
    }

    #[tokio::test]
    async fn any_routing_spreads_reads_and_home_routing_sticks() {
        let a = node(|req| Some(json!({"id": req["id"], "result": "ok", "node": "n1"}))).await;
        let b = node(|req| Some(json!({"id": req["id"], "result": "ok", "node": "n2"}))).await;
        let routes: BTreeMap<String, SocketAddr> = [("n1".to_owned(), a), ("n2".to_owned(), b)].into();
        for (routing, expect_both) in [(ReadRouting::Any, true), (ReadRouting::Home, false)] {
            let mut c = ServerClient::new(ServerClientConfig {
                routes: routes.clone(),
                home: "n1".into(),
                read_routing: routing,
                seed: 3,
                timeout_ms: 300,
                connect_timeout_ms: 300,
            });
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..20 {
                seen.insert(c.call(&Request::Read { key: "k".into() }).await.node.unwrap());
            }
            assert_eq!(seen.len() == 2, expect_both, "{routing:?}: {seen:?}");
        }
    }
}
