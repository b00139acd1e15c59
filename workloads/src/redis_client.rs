//! The `Client` for Redis primary/replica setups: RESP2 over TCP, written by
//! hand on a tokio `TcpStream`, one connection per node.
//!
//! Every value is a string holding its JSON text, lists included (`[1,2]`):
//! a `Request::Read` does not say whether its key is a list, and with one
//! representation one `GET` serves both the register and the list-append
//! workloads, and `MGET` serves snapshots of either.
//!
//! | request | Redis | ok value |
//! |---|---|---|
//! | read | `GET` | the value, null when absent; a list for list keys |
//! | write | `SET key json` | the value written |
//! | cas | `EVAL` of [`CAS_SCRIPT`] (compare the JSON text, set) | `[expected, new]` |
//! | append | `EVAL` of [`APPEND_SCRIPT`] (extend the JSON list text) | the element |
//! | multi-read | `MGET` (one node runs it at once: a snapshot of that node) | `[["r", k, v], ...]` |
//!
//! Routing: writes go to the node the client believes is the primary (at
//! first [`RedisClientConfig::primary`]). Reads go there too under
//! [`RedisReads::Primary`]; under [`RedisReads::Replica`] each read goes to
//! a replica drawn from a seeded RNG (as a client library balancing reads
//! over replicas does), and under [`RedisReads::Home`] to the home node
//! always (the primary itself, if the home node is or becomes it). With [`RedisClientConfig::wait_replicas`] each applied write is
//! followed by `WAIT numreplicas timeout`; the write stays ok whatever WAIT
//! says, even when fewer replicas acknowledged it or WAIT itself failed:
//! the primary applied it, and whether it survives a failover is what the
//! checkers judge (a lost write), not something the client may hide.
//!
//! Failover: a nemesis may promote a replica (`REPLICAOF NO ONE`). When the
//! believed primary answers `-READONLY`, or does not answer at all, the next
//! operation that needs the primary first asks every node `ROLE` (once, each
//! query bounded by the connect timeout) and takes the master with the most
//! connected replicas (then the highest replication offset, then the
//! smallest name). The operation that saw the trouble is not retried.
//!
//! Honesty (see `client.rs`):
//! - fail: nothing was sent (no route, no connection, or a fresh connection
//!   did not answer its `PING`), a cas whose compare did not hold
//!   (`cas-mismatch`), or an error Redis gives only before executing a
//!   command (`READONLY`, `LOADING`, `MASTERDOWN`, `NOREPLICAS`, `OOM`,
//!   `BUSY`, `MISCONF`, ...: see [`DEFINITE_ERRORS`]). The scripts declare
//!   themselves with a `#!lua` shebang, so a replica refuses them whole with
//!   `READONLY`, and they write only as their last step, after every check.
//! - info: a write that may have left and got no whole reply (timeout,
//!   connection lost), any other error reply to a write, a reply of the
//!   wrong shape.
//! - Reads change nothing: every error of theirs is a fail.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::client::{BoxFuture, Client, Completion, Outcome};
use crate::error::WorkloadError;
use crate::request::Request;

/// Largest reply accepted, bulk strings and arrays included.
pub const MAX_REPLY_BYTES: usize = 1 << 20;
/// Deepest nesting of arrays accepted (`ROLE` uses two levels).
const MAX_DEPTH: usize = 4;
/// Most elements in one array.
const MAX_ELEMENTS: usize = 1 << 16;
/// The error of a cas whose compare did not hold (the checkers' `CAS_MISMATCH`).
pub const CAS_MISMATCH: &str = "cas-mismatch";
/// Error prefixes Redis returns only when it refused a command before
/// executing it; `FAULTLINE` is the append script's own refusal.
pub const DEFINITE_ERRORS: [&str; 12] = [
    "READONLY",
    "LOADING",
    "MASTERDOWN",
    "NOREPLICAS",
    "OOM",
    "BUSY",
    "MISCONF",
    "WRONGTYPE",
    "NOSCRIPT",
    "NOAUTH",
    "NOPERM",
    "FAULTLINE",
];

/// Compare-and-set: `KEYS[1]` is set to `ARGV[3]` when it is absent and
/// `ARGV[1]` is `absent`, or when it holds exactly the text `ARGV[2]`.
/// Returns 1 when it set, 0 when the compare did not hold.
pub const CAS_SCRIPT: &str = "#!lua
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == 'absent' then
  if cur then return 0 end
elseif cur ~= ARGV[2] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3])
return 1
";

/// Append: the JSON list text at `KEYS[1]` (absent: empty) gains the element
/// whose JSON text is `ARGV[1]`; text editing, so integers keep every digit.
/// Returns 1, or a `FAULTLINE` error (nothing written) for a non-list.
pub const APPEND_SCRIPT: &str = "#!lua
local cur = redis.call('GET', KEYS[1])
local new
if not cur or cur == '[]' then
  new = '[' .. ARGV[1] .. ']'
elseif string.sub(cur, 1, 1) == '[' and string.sub(cur, -1) == ']' then
  new = string.sub(cur, 1, -2) .. ',' .. ARGV[1] .. ']'
else
  return redis.error_reply('FAULTLINE append to a non-list value')
end
redis.call('SET', KEYS[1], new)
return 1
";

/// Where a [`RedisClient`] sends its reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RedisReads {
    /// The believed primary.
    Primary,
    /// A replica drawn for each read (not the believed primary), as a
    /// client library that balances reads over replicas does.
    Replica,
    /// The home node, always (a session sticks to one replica).
    Home,
}

impl RedisReads {
    /// Parses `primary`, `replica` or `home`.
    pub fn parse(s: &str) -> Result<RedisReads, WorkloadError> {
        match s {
            "primary" => Ok(RedisReads::Primary),
            "replica" => Ok(RedisReads::Replica),
            "home" | "sticky" => Ok(RedisReads::Home),
            o => Err(WorkloadError::BadConfig(format!(
                "redis reads {o:?}: expected primary, replica or home"
            ))),
        }
    }
}

/// How a [`RedisClient`] reaches the nodes.
#[derive(Clone, Debug)]
pub struct RedisClientConfig {
    /// Each node's address (or a proxy in front of it).
    pub routes: BTreeMap<String, SocketAddr>,
    /// The node that is the primary when the client starts.
    pub primary: String,
    /// The node replica reads go to.
    pub home: String,
    /// Where reads go.
    pub reads: RedisReads,
    /// `(numreplicas, timeout_ms)`: send `WAIT` after every applied write.
    pub wait_replicas: Option<(u32, u64)>,
    /// Seeds the replica draws of [`RedisReads::Replica`].
    pub seed: u64,
    /// How long one command may take before it is info (or, for a read, fail).
    pub timeout_ms: u64,
    /// How long opening a connection and its probe may take before the
    /// operation fails; also bounds each `ROLE` query.
    pub connect_timeout_ms: u64,
}

impl RedisClientConfig {
    /// Reads from the primary, no WAIT, a 2 s command timeout and a 1 s
    /// connect timeout.
    pub fn new(routes: BTreeMap<String, SocketAddr>, primary: impl Into<String>, home: impl Into<String>) -> Self {
        RedisClientConfig {
            routes,
            primary: primary.into(),
            home: home.into(),
            reads: RedisReads::Primary,
            wait_replicas: None,
            seed: 0,
            timeout_ms: 2_000,
            connect_timeout_ms: 1_000,
        }
    }

    fn validate(&self) -> Result<(), WorkloadError> {
        for (what, node) in [("primary", &self.primary), ("home", &self.home)] {
            if !self.routes.contains_key(node) {
                return Err(WorkloadError::BadConfig(format!(
                    "redis {what} node {node:?} has no route"
                )));
            }
        }
        if self.timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return Err(WorkloadError::BadConfig(
                "redis client timeouts must be positive".into(),
            ));
        }
        if matches!(self.wait_replicas, Some((_, 0))) {
            // Redis reads `WAIT n 0` as "block until n replicas ack".
            return Err(WorkloadError::BadConfig("a WAIT timeout must be positive".into()));
        }
        Ok(())
    }
}

/// A client of one Redis primary and its replicas, one operation in flight.
pub struct RedisClient {
    cfg: RedisClientConfig,
    conns: BTreeMap<String, TcpStream>,
    primary: String,
    /// The primary refused a write as a replica or did not answer: ask
    /// every node `ROLE` before the next operation that needs it.
    rediscover: bool,
    /// Draws the replica of each read under [`RedisReads::Replica`].
    rng: ChaCha8Rng,
}

/// A RESP2 value.
#[derive(Clone, Debug, PartialEq)]
enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

/// What one command on one node gave.
enum Exchange {
    /// A whole reply.
    Reply(Resp),
    /// Nothing was sent: certainly not applied.
    NotSent(String),
    /// Sent, outcome unknown.
    Lost(String),
}

/// What `ROLE` said of a master.
struct Master {
    replicas: usize,
    offset: i64,
}

impl RedisClient {
    /// A client; connections open on first use.
    pub fn new(cfg: RedisClientConfig) -> Result<RedisClient, WorkloadError> {
        cfg.validate()?;
        let cfg_seed = cfg.seed;
        Ok(RedisClient {
            primary: cfg.primary.clone(),
            cfg,
            conns: BTreeMap::new(),
            rediscover: false,
            rng: ChaCha8Rng::seed_from_u64(cfg_seed),
        })
    }

    /// The node the client now takes for the primary.
    pub fn primary(&self) -> &str {
        &self.primary
    }

    async fn call_inner(&mut self, req: &Request) -> Completion {
        if matches!(req, Request::Txn { .. }) {
            return Completion::fail(None, "the Redis client does not run transactions");
        }
        let node = match self.cfg.reads {
            _ if req.is_write() => self.primary_now().await,
            RedisReads::Primary => self.primary_now().await,
            RedisReads::Home => self.cfg.home.clone(),
            RedisReads::Replica => self.any_replica(),
        };
        let to_primary = node == self.primary;
        let cmd = command_of(req);
        let timeout_ms = self.cfg.timeout_ms;
        let exchange = self.exchange(&node, &cmd, timeout_ms).await;
        let completion = match exchange {
            Exchange::Reply(reply) => {
                if to_primary && matches!(&reply, Resp::Error(e) if e.starts_with("READONLY")) {
                    self.rediscover = true;
                }
                self.judge(req, &node, reply)
            }
            Exchange::NotSent(e) => {
                self.rediscover |= to_primary;
                Completion::fail(Some(node.clone()), e)
            }
            Exchange::Lost(e) => {
                self.rediscover |= to_primary;
                if req.is_write() {
                    Completion::info(Some(node.clone()), e)
                } else {
                    Completion::fail(Some(node.clone()), e)
                }
            }
        };
        if req.is_write() && completion.outcome == Outcome::Ok {
            self.wait_for_replicas(&node).await;
        }
        completion
    }

    /// A node other than the believed primary, drawn from the seeded RNG
    /// (the primary itself when it is the only node).
    fn any_replica(&mut self) -> String {
        let replicas: Vec<&String> = self.cfg.routes.keys().filter(|n| **n != self.primary).collect();
        if replicas.is_empty() {
            return self.primary.clone();
        }
        let i = self.rng.gen_range(0..replicas.len());
        replicas[i].clone()
    }

    /// The believed primary, after one round of `ROLE` queries if the last
    /// operation cast doubt on it.
    async fn primary_now(&mut self) -> String {
        if std::mem::take(&mut self.rediscover) {
            self.discover().await;
        }
        self.primary.clone()
    }

    /// The completion of a command that got a reply.
    fn judge(&mut self, req: &Request, node: &str, reply: Resp) -> Completion {
        let ok = |returned: &Value| Completion {
            outcome: Outcome::Ok,
            value: req.ok_value(returned),
            node: Some(node.to_owned()),
            error: None,
        };
        let node_name = Some(node.to_owned());
        if let Resp::Error(e) = &reply {
            let definite = DEFINITE_ERRORS.iter().any(|p| e.split(' ').next() == Some(*p));
            return if definite || !req.is_write() {
                Completion::fail(node_name, e.clone())
            } else {
                Completion::info(node_name, e.clone())
            };
        }
        let judged = match (req, reply) {
            (Request::Read { .. }, Resp::Bulk(b)) => decode(b.as_deref()).map(|v| ok(&v)),
            (Request::MultiRead { keys }, Resp::Array(Some(items))) => snapshot(keys, items).map(|m| ok(&m)),
            (Request::Write { .. }, Resp::Simple(s)) if s == "OK" => Ok(ok(&Value::Null)),
            (Request::Cas { .. } | Request::Append { .. }, Resp::Int(1)) => Ok(ok(&Value::Null)),
            (Request::Cas { .. }, Resp::Int(0)) => Ok(Completion::fail(node_name.clone(), CAS_MISMATCH)),
            (_, other) => Err(format!("unexpected reply {other:?}")),
        };
        judged.unwrap_or_else(|e| {
            // A reply of the wrong shape: the framing may be off too.
            self.conns.remove(node);
            if req.is_write() {
                Completion::info(node_name, e)
            } else {
                Completion::fail(node_name, e)
            }
        })
    }

    /// `WAIT` after an applied write. Its answer changes nothing about the
    /// write (see the module doc); it is only traced.
    async fn wait_for_replicas(&mut self, node: &str) {
        let Some((want, wait_ms)) = self.cfg.wait_replicas else {
            return;
        };
        let cmd = encode(&[b"WAIT", want.to_string().as_bytes(), wait_ms.to_string().as_bytes()]);
        let limit = self.cfg.timeout_ms.saturating_add(wait_ms);
        match self.exchange(node, &cmd, limit).await {
            Exchange::Reply(Resp::Int(n)) if n >= i64::from(want) => {}
            Exchange::Reply(Resp::Int(n)) => tracing::debug!(node, acked = n, want, "WAIT: fewer replicas acked"),
            Exchange::Reply(other) => tracing::debug!(node, reply = ?other, "WAIT: unexpected reply"),
            Exchange::NotSent(e) | Exchange::Lost(e) => tracing::debug!(node, error = %e, "WAIT failed"),
        }
    }

    /// One round of `ROLE` on every node, concurrently, each bounded by the
    /// connect timeout; keeps the current primary when no node says master.
    async fn discover(&mut self) {
        let limit = Duration::from_millis(self.cfg.connect_timeout_ms);
        let mut asks = JoinSet::new();
        for (name, addr) in self.cfg.routes.clone() {
            asks.spawn(async move {
                let role = tokio::time::timeout(limit, ask_role(addr)).await.ok().flatten();
                (name, role)
            });
        }
        let mut best: Option<(String, Master)> = None;
        while let Some(joined) = asks.join_next().await {
            let Ok((name, Some(m))) = joined else { continue };
            let better = match &best {
                None => true,
                Some((bn, b)) => {
                    (m.replicas, m.offset, std::cmp::Reverse(&name)) > (b.replicas, b.offset, std::cmp::Reverse(bn))
                }
            };
            if better {
                best = Some((name, m));
            }
        }
        match best {
            Some((name, _)) if name != self.primary => {
                tracing::info!(old = %self.primary, new = %name, "redis primary changed");
                self.primary = name;
            }
            Some(_) => {}
            None => tracing::debug!(primary = %self.primary, "no node says it is a master; keeping the primary"),
        }
    }

    /// One command and its reply on `node`'s connection, opening (and
    /// probing) it first when there is none.
    async fn exchange(&mut self, node: &str, cmd: &[u8], timeout_ms: u64) -> Exchange {
        let Some(addr) = self.cfg.routes.get(node).copied() else {
            return Exchange::NotSent(format!("no route to {node}"));
        };
        if self.conns.get(node).is_some_and(peer_closed) {
            self.conns.remove(node);
        }
        if !self.conns.contains_key(node) {
            match self.open(addr).await {
                Ok(s) => self.conns.insert(node.to_owned(), s),
                Err(e) => return Exchange::NotSent(e),
            };
        }
        let stream = self.conns.get_mut(node).expect("connection just ensured");
        match tokio::time::timeout(Duration::from_millis(timeout_ms), round_trip(stream, cmd)).await {
            Ok(Ok(reply)) => Exchange::Reply(reply),
            Ok(Err(e)) => {
                self.conns.remove(node);
                Exchange::Lost(e)
            }
            Err(_) => {
                self.conns.remove(node);
                Exchange::Lost(format!("timed out after {timeout_ms} ms"))
            }
        }
    }

    /// Connects and sends `PING`, within the connect timeout: a node that
    /// accepts (a proxy, a paused process) but does not answer fails the
    /// operation before any of it was sent. Only `+PONG` will do: an error
    /// (`-LOADING`, `-ERR max number of clients reached`) means the
    /// operation would not be served either.
    async fn open(&self, addr: SocketAddr) -> Result<TcpStream, String> {
        let limit = Duration::from_millis(self.cfg.connect_timeout_ms);
        let open = async {
            let mut s = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
            let _ = s.set_nodelay(true);
            match round_trip(&mut s, &encode(&[b"PING"])).await {
                Ok(Resp::Simple(pong)) if pong == "PONG" => Ok(s),
                Ok(other) => Err(format!("the node answered a probe with {other:?}")),
                Err(e) => Err(format!("the node did not answer a probe: {e}")),
            }
        };
        tokio::time::timeout(limit, open).await.unwrap_or_else(|_| {
            Err(format!(
                "connecting and probing did not finish within {} ms",
                self.cfg.connect_timeout_ms
            ))
        })
    }
}

impl Client for RedisClient {
    fn call<'a>(&'a mut self, req: &'a Request) -> BoxFuture<'a, Completion> {
        Box::pin(self.call_inner(req))
    }

    /// Nothing to forget: the client keeps no session state (the believed
    /// primary is knowledge of the cluster, not of a session).
    fn new_session(&mut self) {}
}

/// The command that carries `req`.
fn command_of(req: &Request) -> Vec<u8> {
    let text = |v: i64| v.to_string().into_bytes();
    match req {
        Request::Read { key } => encode(&[b"GET", key.as_bytes()]),
        Request::Write { key, value } => encode(&[b"SET", key.as_bytes(), &text(*value)]),
        Request::Cas { key, expected, new } => {
            let (flag, expected) = match expected {
                Some(v) => ("present", text(*v)),
                None => ("absent", Vec::new()),
            };
            let script = CAS_SCRIPT.as_bytes();
            encode(&[
                b"EVAL",
                script,
                b"1",
                key.as_bytes(),
                flag.as_bytes(),
                &expected,
                &text(*new),
            ])
        }
        Request::Append { key, value } => {
            encode(&[b"EVAL", APPEND_SCRIPT.as_bytes(), b"1", key.as_bytes(), &text(*value)])
        }
        Request::MultiRead { keys } => {
            let mut args: Vec<&[u8]> = vec![b"MGET"];
            args.extend(keys.iter().map(|k| k.as_bytes()));
            encode(&args)
        }
        Request::Txn { .. } => unreachable!("call_inner refuses transactions before encoding"),
    }
}

/// A stored value: JSON text, or null for an absent key.
fn decode(bulk: Option<&[u8]>) -> Result<Value, String> {
    match bulk {
        None => Ok(Value::Null),
        Some(b) => serde_json::from_slice(b).map_err(|e| format!("the stored value is not JSON: {e}")),
    }
}

/// An `MGET` reply as an object from key to value.
fn snapshot(keys: &[String], items: Vec<Resp>) -> Result<Value, String> {
    if items.len() != keys.len() {
        return Err(format!("{} values for {} keys", items.len(), keys.len()));
    }
    let mut read = Map::new();
    for (key, item) in keys.iter().zip(items) {
        let Resp::Bulk(b) = item else {
            return Err(format!("MGET gave {item:?}"));
        };
        read.insert(key.clone(), decode(b.as_deref())?);
    }
    Ok(Value::Object(read))
}

/// Sends one admin command (`ROLE`, `REPLICAOF host port`, `INFO ...`) to
/// the node at `addr` on a fresh connection, within `timeout_ms`, and
/// returns its reply as JSON: simple and bulk strings as strings, integers
/// as numbers, arrays as arrays, nil as null; an error reply is `Err`. For
/// the harness, which starts, promotes and re-points Redis nodes.
pub async fn admin(addr: SocketAddr, args: &[&str], timeout_ms: u64) -> Result<Value, String> {
    let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
        round_trip(&mut s, &encode(&bytes)).await
    };
    match tokio::time::timeout(Duration::from_millis(timeout_ms), exchange).await {
        Ok(Ok(reply)) => resp_json(reply),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("no reply within {timeout_ms} ms")),
    }
}

fn resp_json(r: Resp) -> Result<Value, String> {
    Ok(match r {
        Resp::Simple(s) => Value::String(s),
        Resp::Error(e) => return Err(e),
        Resp::Int(i) => Value::from(i),
        Resp::Bulk(None) | Resp::Array(None) => Value::Null,
        Resp::Bulk(Some(b)) => Value::String(String::from_utf8_lossy(&b).into_owned()),
        Resp::Array(Some(items)) => Value::Array(items.into_iter().map(resp_json).collect::<Result<_, _>>()?),
    })
}

/// Asks one node `ROLE` on a fresh connection: `Some` when it is a master.
async fn ask_role(addr: SocketAddr) -> Option<Master> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let Resp::Array(Some(items)) = round_trip(&mut s, &encode(&[b"ROLE"])).await.ok()? else {
        return None;
    };
    match items.as_slice() {
        [Resp::Bulk(Some(role)), Resp::Int(offset), Resp::Array(replicas), ..] if role == b"master" => Some(Master {
            replicas: replicas.as_ref().map_or(0, Vec::len),
            offset: *offset,
        }),
        _ => None,
    }
}

/// Whether a kept connection can no longer be used: the peer closed it, or
/// sent bytes nobody asked for. Best effort (it sees what the reactor has
/// seen); a connection that dies unseen ends as info, never as a wrong fail.
fn peer_closed(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.try_read(&mut byte) {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// A command as a RESP array of bulk strings.
fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Writes one command and reads its reply.
async fn round_trip(stream: &mut TcpStream, cmd: &[u8]) -> Result<Resp, String> {
    stream.write_all(cmd).await.map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 8192];
    loop {
        if let Some((reply, used)) = parse(&buf, 0)? {
            if used != buf.len() {
                return Err("bytes past the reply: the connection is out of step".into());
            }
            return Ok(reply);
        }
        if buf.len() > MAX_REPLY_BYTES {
            return Err(format!("reply exceeds {MAX_REPLY_BYTES} bytes"));
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("connection lost: {e}"))?;
        if n == 0 {
            return Err(if buf.is_empty() {
                "connection closed before any reply".into()
            } else {
                "connection closed mid-reply".into()
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Parses one RESP2 value from the front of `buf`: `Ok(None)` while it is
/// incomplete, with the bytes it used once whole.
fn parse(buf: &[u8], depth: usize) -> Result<Option<(Resp, usize)>, String> {
    let Some(line_len) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() > MAX_REPLY_BYTES {
            return Err(format!("a reply line exceeds {MAX_REPLY_BYTES} bytes"));
        }
        return Ok(None);
    };
    if line_len == 0 {
        return Err("an empty reply line".into());
    }
    let line = String::from_utf8_lossy(&buf[1..line_len]).into_owned();
    let after = line_len + 2;
    let number = || line.parse::<i64>().map_err(|_| format!("bad number {line:?}"));
    let value = match buf[0] {
        b'+' => Resp::Simple(line),
        b'-' => Resp::Error(line),
        b':' => Resp::Int(number()?),
        b'$' => return parse_bulk(buf, after, number()?),
        b'*' => return parse_array(buf, after, number()?, depth),
        other => return Err(format!("unknown reply type {:?}", other as char)),
    };
    Ok(Some((value, after)))
}

fn parse_bulk(buf: &[u8], start: usize, len: i64) -> Result<Option<(Resp, usize)>, String> {
    if len == -1 {
        return Ok(Some((Resp::Bulk(None), start)));
    }
    let len = usize::try_from(len)
        .ok()
        .filter(|n| *n <= MAX_REPLY_BYTES)
        .ok_or_else(|| format!("bulk length {len} out of bounds"))?;
    if buf.len() < start + len + 2 {
        return Ok(None);
    }
    if &buf[start + len..start + len + 2] != b"\r\n" {
        return Err("a bulk string does not end with CRLF".into());
    }
    Ok(Some((
        Resp::Bulk(Some(buf[start..start + len].to_vec())),
        start + len + 2,
    )))
}

fn parse_array(buf: &[u8], start: usize, len: i64, depth: usize) -> Result<Option<(Resp, usize)>, String> {
    if len == -1 {
        return Ok(Some((Resp::Array(None), start)));
    }
    let len = usize::try_from(len)
        .ok()
        .filter(|n| *n <= MAX_ELEMENTS)
        .ok_or_else(|| format!("array length {len} out of bounds"))?;
    if depth >= MAX_DEPTH {
        return Err(format!("arrays nested deeper than {MAX_DEPTH}"));
    }
    let mut items = Vec::with_capacity(len.min(64));
    let mut pos = start;
    for _ in 0..len {
        let Some((item, used)) = parse(&buf[pos..], depth + 1)? else {
            return Ok(None);
        };
        items.push(item);
        pos += used;
    }
    Ok(Some((Resp::Array(Some(items)), pos)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_every_reply_type_byte_by_byte() {
        let wire = b"*5\r\n+OK\r\n-READONLY no\r\n:-3\r\n$-1\r\n*2\r\n$3\r\na\r\n\r\n*-1\r\n";
        for cut in 0..wire.len() {
            assert_eq!(parse(&wire[..cut], 0).unwrap(), None, "cut at {cut}");
        }
        let (reply, used) = parse(wire, 0).unwrap().unwrap();
        assert_eq!(used, wire.len());
        assert_eq!(
            reply,
            Resp::Array(Some(vec![
                Resp::Simple("OK".into()),
                Resp::Error("READONLY no".into()),
                Resp::Int(-3),
                Resp::Bulk(None),
                Resp::Array(Some(vec![Resp::Bulk(Some(b"a\r\n".to_vec())), Resp::Array(None)])),
            ]))
        );
    }

    #[test]
    fn rejects_what_it_cannot_bound() {
        assert!(parse(format!("${}\r\n", MAX_REPLY_BYTES + 1).as_bytes(), 0).is_err());
        assert!(parse(format!("*{}\r\n", MAX_ELEMENTS + 1).as_bytes(), 0).is_err());
        assert!(parse(b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", 0).is_err());
        assert!(parse(b"$1\r\nab\r\n", 0).is_err());
        assert!(parse(b"?\r\n", 0).is_err());
        assert!(parse(b":x\r\n", 0).is_err());
    }

    #[test]
    fn encodes_commands_as_bulk_arrays() {
        assert_eq!(encode(&[b"GET", b"k"]), b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        let cas = command_of(&Request::Cas {
            key: "k".into(),
            expected: None,
            new: 5,
        });
        let (parsed, _) = parse(&cas, 0).unwrap().unwrap();
        let Resp::Array(Some(args)) = parsed else { panic!() };
        assert_eq!(args[4], Resp::Bulk(Some(b"absent".to_vec())));
        assert_eq!(args[6], Resp::Bulk(Some(b"5".to_vec())));
    }

    #[test]
    fn shapes_snapshots_and_values() {
        let keys = ["a".to_owned(), "b".to_owned()];
        let items = vec![Resp::Bulk(Some(b"[1,2]".to_vec())), Resp::Bulk(None)];
        let read = snapshot(&keys, items).unwrap();
        let req = Request::MultiRead { keys: keys.to_vec() };
        assert_eq!(req.ok_value(&read), json!([["r", "a", [1, 2]], ["r", "b", null]]));
        assert!(snapshot(&keys, vec![Resp::Bulk(None)]).is_err());
        assert!(decode(Some(b"nope")).is_err());
    }

    #[test]
    fn rejects_unknown_nodes_and_read_modes() {
        let cfg = RedisClientConfig::new(BTreeMap::new(), "n1", "n1");
        assert!(RedisClient::new(cfg).is_err());
        let mut cfg = RedisClientConfig::new([("n1".to_owned(), ([127, 0, 0, 1], 1).into())].into(), "n1", "n1");
        cfg.wait_replicas = Some((1, 0));
        assert!(RedisClient::new(cfg).is_err());
        assert!(RedisReads::parse("any").is_err());
        assert_eq!(RedisReads::parse("replica").unwrap(), RedisReads::Replica);
    }
}
