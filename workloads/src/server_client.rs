//! The `Client` for faultline-server: its framed-JSON protocol (a 4-byte
//! big-endian length, then a JSON object) over TCP.
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
//! late reply can never be taken for the next request's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::client::{BoxFuture, Client, Completion, Outcome};
use crate::error::WorkloadError;
use crate::request::Request;

/// Redirects followed within one operation.
pub const MAX_REDIRECTS: usize = 2;
/// Largest reply accepted, checked before it is allocated.
pub const MAX_REPLY_BYTES: usize = 1 << 20;

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
    /// The node replied.
    Reply(Map<String, Value>),
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

    fn body(&mut self, req: &Request) -> Value {
        self.next_id += 1;
        let mut m = match req {
            Request::Read { key } => json!({"op": "read", "key": key}),
            Request::Write { key, value } => json!({"op": "write", "key": key, "value": value}),
            Request::Cas { key, expected, new } => json!({"op": "cas", "key": key, "expected": expected, "new": new}),
            Request::Append { key, value } => json!({"op": "append", "key": key, "value": value}),
            Request::MultiRead { keys } => json!({"op": "multi_read", "keys": keys}),
        };
        m["id"] = json!(self.next_id);
        if let Some(first) = self.shard_lsns.first() {
            m["session"] = json!({"min_lsn": first, "shard_lsns": self.shard_lsns});
        }
        m
    }

    async fn exchange(&mut self, node: &str, body: &Value) -> Exchange {
        let Some(addr) = self.cfg.routes.get(node).copied() else {
            return Exchange::NotSent(format!("no route to {node}"));
        };
        let timeout = Duration::from_millis(self.cfg.timeout_ms);
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
        let r = tokio::time::timeout(timeout, round_trip(stream, body)).await;
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
        if reply.get("id") != body.get("id") {
            self.conns.remove(node);
            return Exchange::Lost(format!(
                "reply to request {:?}, expected {}",
                reply.get("id"),
                body["id"]
            ));
        }
        Exchange::Reply(reply)
    }

    /// Asks a fresh connection for `status` before any operation uses it.
    /// Under a proxy, connecting succeeds even when the node is down or cut
    /// off; the probe tells, while the operation has certainly not been
    /// sent, so such an operation is an honest `fail` rather than an `info`.
    async fn probe(&mut self, s: &mut BufReader<TcpStream>) -> Result<(), String> {
        self.next_id += 1;
        let body = json!({"id": self.next_id, "op": "status"});
        let limit = Duration::from_millis(self.cfg.connect_timeout_ms);
        match tokio::time::timeout(limit, round_trip(s, &body)).await {
            Ok(Ok(reply)) if reply.get("id") == body.get("id") => Ok(()),
            Ok(Ok(_)) => Err("the probe's reply names another request".into()),
            Ok(Err(e)) => Err(format!("the node did not answer a probe: {e}")),
            Err(_) => Err(format!(
                "the node did not answer a probe within {} ms",
                self.cfg.connect_timeout_ms
            )),
        }
    }

    fn note_lsn(&mut self, reply: &Map<String, Value>) {
        let Some(lsn) = reply.get("lsn").and_then(Value::as_u64) else {
            return;
        };
        let shard = reply.get("shard").and_then(Value::as_u64).unwrap_or(0) as usize;
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
        let body = self.body(req);
        let mut node = self.first_target(req);
        for hop in 0..=MAX_REDIRECTS {
            let reply = match self.exchange(&node, &body).await {
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
            let answered_by = reply
                .get("node")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map_or_else(|| node.clone(), str::to_owned);
            let error = reply.get("error").and_then(Value::as_str).map(str::to_owned);
            match reply.get("result").and_then(Value::as_str) {
                Some("ok") => {
                    self.note_lsn(&reply);
                    if req.is_write() || self.cfg.read_routing == ReadRouting::Leader {
                        self.leader = Some(answered_by.clone());
                    }
                    let returned = reply.get("value").cloned().unwrap_or(Value::Null);
                    return Completion {
                        outcome: Outcome::Ok,
                        value: req.ok_value(&returned),
                        node: Some(answered_by),
                        error: None,
                    };
                }
                Some("fail") => {
                    let hint = reply.get("leader_hint").and_then(Value::as_str).map(str::to_owned);
                    match hint {
                        Some(h) if h != node && hop < MAX_REDIRECTS && self.cfg.routes.contains_key(&h) => {
                            if !req.is_write() {
                                self.reads_to_leader = true;
                            }
                            self.leader = Some(h.clone());
                            node = h;
                        }
                        _ => {
                            return Completion::fail(Some(answered_by), fail_error(error));
                        }
                    }
                }
                Some("unknown") => {
                    self.leader = None;
                    return Completion::info(Some(answered_by), error.unwrap_or_else(|| "unknown".into()));
                }
                other => {
                    self.conns.remove(&node);
                    return Completion::info(Some(answered_by), format!("reply without a known result: {other:?}"));
                }
            }
        }
        unreachable!("the last hop always returns")
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

/// Writes one frame and reads one reply frame.
async fn round_trip(stream: &mut BufReader<TcpStream>, body: &Value) -> Result<Map<String, Value>, String> {
    let bytes = serde_json::to_vec(body).expect("requests serialize");
    let mut frame = Vec::with_capacity(bytes.len() + 4);
    frame.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    frame.extend_from_slice(&bytes);
    stream.write_all(&frame).await.map_err(|e| format!("send: {e}"))?;
    let mut len = [0u8; 4];
    stream
        .read_exact(&mut len)
        .await
        .map_err(|e| format!("connection lost: {e}"))?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_REPLY_BYTES {
        return Err(format!("reply of {len} bytes exceeds {MAX_REPLY_BYTES}"));
    }
    let mut buf = vec![0u8; len];
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|e| format!("connection lost mid-reply: {e}"))?;
    match serde_json::from_slice(&buf) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(format!("reply is not an object: {other}")),
        Err(e) => Err(format!("malformed reply: {e}")),
    }
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
        round_trip(&mut s, &json!({"id": 0, "op": "status"})).await
    };
    let reply = tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| err(format!("status timed out after {} ms", timeout.as_millis())))?
        .map_err(err)?;
    if reply.get("result").and_then(Value::as_str) != Some("ok") {
        return Err(err(format!("status answered {}", Value::Object(reply))));
    }
    Ok(reply.get("status").cloned().unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A node that answers each request with `reply(request)`.
    async fn node(reply: fn(Value) -> Option<Value>) -> SocketAddr {
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

    fn client(addr: SocketAddr) -> ServerClient {
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
