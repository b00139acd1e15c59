//! The `Client` for etcd 3.4, through its v3 JSON gateway (HTTP/1.1 `POST
//! /v3/kv/range`, `/v3/kv/put`, `/v3/kv/txn`), written by hand on a tokio
//! `TcpStream`: one keep-alive connection per node, responses framed by
//! `Content-Length` or chunked transfer encoding, at most
//! [`MAX_RESPONSE_BYTES`] of body.
//!
//! Keys and values travel base64-encoded; a value is stored as its JSON text
//! (`42`, `[1,2]`), so a read decodes exactly what the history records.
//!
//! | request | etcd | ok value |
//! |---|---|---|
//! | read | range (serializable if configured) | the value, null when absent; a list for list keys |
//! | write | put | the value written |
//! | cas | txn: VALUE == JSON(expected) (absent: CREATE == 0), then put | `[expected, new]` |
//! | append | range, then txn: MOD == its mod_revision (absent: CREATE == 0), then put the longer list | the element |
//! | multi-read | one txn of ranges: one revision, one snapshot | `[["r", k, v], ...]` |
//!
//! Every request goes to the client's home node: etcd forwards proposals to
//! its leader, and a linearizable read is confirmed with the leader by the
//! node itself.
//!
//! Honesty (see `client.rs`):
//! - fail: nothing was sent (no route, the connection could not be opened, or
//!   a fresh connection did not answer its `GET /version` probe: under a
//!   proxy, connecting succeeds even when the node is down), or etcd refused
//!   the request before applying it (gRPC code InvalidArgument or
//!   ResourceExhausted, a plain 4xx from the gateway), or a compare failed:
//!   a cas's is `cas-mismatch` (an observation, as HISTORY_FORMAT.md says), an
//!   append's `append-conflict` (the list changed between its read and its
//!   txn; nothing was written).
//! - info: a write whose request may have left and whose answer did not come
//!   (timeout, connection lost, half a response, an ambiguous server error
//!   such as `etcdserver: request timed out`).
//! - Reads and multi-reads change nothing, so every error of theirs is a
//!   fail; so is any error of an append's first step (its read).
//!
//! A connection that timed out or lost track of the framing is dropped, so a
//! late response is never taken for the next request's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::{BoxFuture, Client, Completion, Outcome};
use crate::error::WorkloadError;
use crate::request::Request;

/// Largest response body accepted; a larger one is a protocol error.
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// Largest response head (status line and headers) accepted.
const MAX_HEAD_BYTES: usize = 16 << 10;
/// The error of a cas whose compare did not hold (the checkers' `CAS_MISMATCH`).
pub const CAS_MISMATCH: &str = "cas-mismatch";
/// The error of an append whose list changed between its read and its txn.
pub const APPEND_CONFLICT: &str = "append-conflict";
/// gRPC codes etcd uses only for requests it rejects before applying them:
/// InvalidArgument (malformed, too large, empty key) and ResourceExhausted
/// (too many requests, no space: the capped applier refuses the write).
const DEFINITE_GRPC_CODES: [i64; 2] = [3, 8];

/// How an [`EtcdClient`] reaches the cluster.
#[derive(Clone, Debug)]
pub struct EtcdClientConfig {
    /// Each node's client address (host:port of `--listen-client-urls`, or a
    /// proxy in front of it).
    pub routes: BTreeMap<String, SocketAddr>,
    /// The node every request goes to.
    pub home: String,
    /// Serve reads from the home node's local state (`serializable: true`)
    /// instead of confirming them with the leader (the default, linearizable).
    pub serializable_reads: bool,
    /// How long one request may take before it is info (or, for a read, fail).
    pub timeout_ms: u64,
    /// How long opening a connection and its probe may take before the
    /// operation fails.
    pub connect_timeout_ms: u64,
}

impl EtcdClientConfig {
    /// Linearizable reads, a 5 s request timeout and a 1 s connect timeout.
    pub fn new(routes: BTreeMap<String, SocketAddr>, home: impl Into<String>) -> EtcdClientConfig {
        EtcdClientConfig {
            routes,
            home: home.into(),
            serializable_reads: false,
            timeout_ms: 5_000,
            connect_timeout_ms: 1_000,
        }
    }

    fn validate(&self) -> Result<(), WorkloadError> {
        if !self.routes.contains_key(&self.home) {
            return Err(WorkloadError::BadConfig(format!(
                "etcd home node {:?} has no route",
                self.home
            )));
        }
        if self.timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return Err(WorkloadError::BadConfig("etcd client timeouts must be positive".into()));
        }
        Ok(())
    }
}

/// A client of one etcd cluster with one operation in flight.
pub struct EtcdClient {
    cfg: EtcdClientConfig,
    conns: BTreeMap<String, TcpStream>,
}

/// What one HTTP exchange gave.
enum Exchange {
    /// A whole response.
    Reply(HttpResponse),
    /// Nothing was sent: certainly not applied.
    NotSent(String),
    /// Sent, outcome unknown.
    Lost(String),
}

/// What one gateway call gave.
enum Rpc {
    /// 200 with a JSON object that carries a `header`.
    Answer(Map<String, Value>),
    /// The gateway answered with an error; `definite` when etcd certainly
    /// did not apply the request.
    Refused { definite: bool, message: String },
    /// Nothing was sent.
    NotSent(String),
    /// Sent, outcome unknown.
    Lost(String),
}

/// One key's entry in a range response.
struct Kv {
    value: Value,
    mod_revision: i64,
}

impl EtcdClient {
    /// A client; connections open on first use.
    pub fn new(cfg: EtcdClientConfig) -> Result<EtcdClient, WorkloadError> {
        cfg.validate()?;
        Ok(EtcdClient {
            cfg,
            conns: BTreeMap::new(),
        })
    }

    async fn call_inner(&mut self, req: &Request) -> Completion {
        match req {
            Request::Read { key } => self.read(req, key).await,
            Request::Write { key, value } => {
                let body = json!({"key": b64(key.as_bytes()), "value": b64_json(&json!(value))});
                match self.rpc("/v3/kv/put", &body).await {
                    Rpc::Answer(_) => self.ok(req, &Value::Null),
                    other => self.not_ok(other, true),
                }
            }
            Request::Cas { key, expected, new } => {
                let guard = match expected {
                    Some(v) => value_equals(key, &json!(v)),
                    None => absent(key),
                };
                self.guarded_put(req, key, guard, &json!(new), CAS_MISMATCH).await
            }
            Request::Append { key, value } => self.append(req, key, *value).await,
            Request::MultiRead { keys } => self.multi_read(req, keys).await,
            Request::Txn { .. } => Completion::fail(None, "the etcd client does not run transactions"),
        }
    }

    async fn read(&mut self, req: &Request, key: &str) -> Completion {
        let body = range_op(key, self.cfg.serializable_reads);
        let answer = match self.rpc("/v3/kv/range", &body).await {
            Rpc::Answer(m) => m,
            other => return self.not_ok(other, false),
        };
        match first_kv(&answer) {
            Ok(kv) => self.ok(req, &kv.map_or(Value::Null, |kv| kv.value)),
            Err(e) => self.fail(e),
        }
    }

    /// Read the list and its revision, then put the longer list if the key
    /// has not changed since. The read is linearizable whatever the config:
    /// a stale one would only make the compare fail.
    async fn append(&mut self, req: &Request, key: &str, element: i64) -> Completion {
        let answer = match self.rpc("/v3/kv/range", &range_op(key, false)).await {
            Rpc::Answer(m) => m,
            other => return self.not_ok(other, false),
        };
        let (guard, mut list) = match first_kv(&answer) {
            Ok(None) => (absent(key), Vec::new()),
            Ok(Some(Kv {
                value: Value::Array(list),
                mod_revision,
            })) => (mod_equals(key, mod_revision), list),
            Ok(Some(Kv { value, .. })) => return self.fail(format!("append to a non-list value {value}")),
            Err(e) => return self.fail(e),
        };
        list.push(json!(element));
        self.guarded_put(req, key, guard, &Value::Array(list), APPEND_CONFLICT)
            .await
    }

    /// One txn: if `guard` holds, put `value`; a guard that does not hold is
    /// a definite fail with `mismatch` as its error.
    async fn guarded_put(
        &mut self,
        req: &Request,
        key: &str,
        guard: Value,
        value: &Value,
        mismatch: &str,
    ) -> Completion {
        let body = json!({
            "compare": [guard],
            "success": [{"request_put": {"key": b64(key.as_bytes()), "value": b64_json(value)}}],
        });
        match self.rpc("/v3/kv/txn", &body).await {
            // proto3 JSON leaves out a false `succeeded`.
            Rpc::Answer(m) if m.get("succeeded").and_then(Value::as_bool) == Some(true) => self.ok(req, &Value::Null),
            Rpc::Answer(_) => self.fail(mismatch),
            other => self.not_ok(other, true),
        }
    }

    async fn multi_read(&mut self, req: &Request, keys: &[String]) -> Completion {
        let ranges: Vec<Value> = keys
            .iter()
            .map(|k| json!({"request_range": range_op(k, self.cfg.serializable_reads)}))
            .collect();
        let answer = match self.rpc("/v3/kv/txn", &json!({"success": ranges})).await {
            Rpc::Answer(m) => m,
            other => return self.not_ok(other, false),
        };
        match snapshot(&answer, keys) {
            Ok(read) => self.ok(req, &Value::Object(read)),
            Err(e) => self.fail(e),
        }
    }

    fn ok(&self, req: &Request, returned: &Value) -> Completion {
        Completion {
            outcome: Outcome::Ok,
            value: req.ok_value(returned),
            node: Some(self.cfg.home.clone()),
            error: None,
        }
    }

    fn fail(&self, error: impl Into<String>) -> Completion {
        Completion::fail(Some(self.cfg.home.clone()), error)
    }

    /// The end of a call that did not answer; `may_write` when the request
    /// could have changed state had it been applied.
    fn not_ok(&self, rpc: Rpc, may_write: bool) -> Completion {
        let node = Some(self.cfg.home.clone());
        match rpc {
            Rpc::Answer(_) => unreachable!("an answer is handled by the caller"),
            Rpc::NotSent(e) => Completion::fail(node, e),
            Rpc::Refused { definite, message } if definite || !may_write => Completion::fail(node, message),
            Rpc::Refused { message, .. } => Completion::info(node, message),
            Rpc::Lost(e) if may_write => Completion::info(node, e),
            Rpc::Lost(e) => Completion::fail(node, e),
        }
    }

    /// POSTs `body` to the home node's gateway and classifies the response.
    async fn rpc(&mut self, path: &str, body: &Value) -> Rpc {
        let node = self.cfg.home.clone();
        let bytes = serde_json::to_vec(body).expect("requests serialize");
        let resp = match self.exchange(&node, "POST", path, &bytes).await {
            Exchange::Reply(r) => r,
            Exchange::NotSent(e) => return Rpc::NotSent(e),
            Exchange::Lost(e) => return Rpc::Lost(e),
        };
        if resp.status != 200 {
            return refusal(&resp);
        }
        match serde_json::from_slice::<Value>(&resp.body) {
            Ok(Value::Object(m)) if m.get("header").is_some_and(Value::is_object) => Rpc::Answer(m),
            Ok(other) => Rpc::Lost(format!("200 without a response header: {other}")),
            Err(e) => Rpc::Lost(format!("200 with a malformed body: {e}")),
        }
    }

    /// One request and its response on `node`'s keep-alive connection,
    /// opening (and probing) it first when there is none.
    async fn exchange(&mut self, node: &str, method: &str, path: &str, body: &[u8]) -> Exchange {
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
        let request = http_request(method, path, addr, body);
        let limit = Duration::from_millis(self.cfg.timeout_ms);
        match tokio::time::timeout(limit, round_trip(stream, &request)).await {
            Ok(Ok(resp)) => {
                if resp.close {
                    self.conns.remove(node);
                }
                Exchange::Reply(resp)
            }
            Ok(Err(e)) => {
                self.conns.remove(node);
                Exchange::Lost(e)
            }
            Err(_) => {
                self.conns.remove(node);
                Exchange::Lost(format!("timed out after {} ms", self.cfg.timeout_ms))
            }
        }
    }

    /// Connects and asks `GET /version`, all within the connect timeout, so
    /// that a node that accepts but cannot answer fails the operation before
    /// anything of it was sent.
    async fn open(&self, addr: SocketAddr) -> Result<TcpStream, String> {
        let limit = Duration::from_millis(self.cfg.connect_timeout_ms);
        let open = async {
            let mut s = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
            let _ = s.set_nodelay(true);
            let probe = round_trip(&mut s, &http_request("GET", "/version", addr, &[]))
                .await
                .map_err(|e| format!("the node did not answer a probe: {e}"))?;
            if probe.status != 200 {
                return Err(format!("the node answered a probe with http {}", probe.status));
            }
            if probe.close {
                return Err("the node closed the connection after its probe".into());
            }
            Ok(s)
        };
        tokio::time::timeout(limit, open).await.unwrap_or_else(|_| {
            Err(format!(
                "connecting and probing did not finish within {} ms",
                self.cfg.connect_timeout_ms
            ))
        })
    }
}

impl Client for EtcdClient {
    fn call<'a>(&'a mut self, req: &'a Request) -> BoxFuture<'a, Completion> {
        Box::pin(self.call_inner(req))
    }

    /// Nothing to forget: the client keeps no session state (every request
    /// goes to the home node, which etcd keeps consistent by itself).
    fn new_session(&mut self) {}
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn b64_json(v: &Value) -> String {
    b64(&serde_json::to_vec(v).expect("values serialize"))
}

fn range_op(key: &str, serializable: bool) -> Value {
    json!({"key": b64(key.as_bytes()), "serializable": serializable})
}

/// Holds when `key` exists with exactly the JSON text of `v`. etcd's VALUE
/// compare on an absent key never holds.
fn value_equals(key: &str, v: &Value) -> Value {
    json!({"target": "VALUE", "result": "EQUAL", "key": b64(key.as_bytes()), "value": b64_json(v)})
}

/// Holds when `key` is absent (never created, or deleted).
fn absent(key: &str) -> Value {
    json!({"target": "CREATE", "result": "EQUAL", "key": b64(key.as_bytes()), "create_revision": "0"})
}

/// Holds when `key` was last modified at `rev`.
fn mod_equals(key: &str, rev: i64) -> Value {
    json!({"target": "MOD", "result": "EQUAL", "key": b64(key.as_bytes()), "mod_revision": rev.to_string()})
}

/// An int64 field, which proto3 JSON writes as a string.
fn int_field(m: &Map<String, Value>, name: &str) -> Option<i64> {
    match m.get(name)? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// The first entry of a range response, its value decoded from JSON text.
fn first_kv(range: &Map<String, Value>) -> Result<Option<Kv>, String> {
    let Some(kvs) = range.get("kvs") else {
        return Ok(None);
    };
    let Some(first) = kvs.as_array().ok_or("kvs is not a list")?.first() else {
        return Ok(None);
    };
    let kv = first.as_object().ok_or("a kv is not an object")?;
    let raw = kv.get("value").and_then(Value::as_str).unwrap_or("");
    let bytes = B64
        .decode(raw)
        .map_err(|e| format!("the stored value is not base64: {e}"))?;
    let value = serde_json::from_slice(&bytes).map_err(|e| format!("the stored value is not JSON: {e}"))?;
    let mod_revision = int_field(kv, "mod_revision").ok_or("a kv without mod_revision")?;
    Ok(Some(Kv { value, mod_revision }))
}

/// The values of a txn of ranges, keyed by key.
fn snapshot(txn: &Map<String, Value>, keys: &[String]) -> Result<Map<String, Value>, String> {
    let responses = txn
        .get("responses")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if responses.len() != keys.len() {
        return Err(format!("{} range responses for {} keys", responses.len(), keys.len()));
    }
    let mut read = Map::new();
    for (key, resp) in keys.iter().zip(responses) {
        let range = resp
            .get("response_range")
            .and_then(Value::as_object)
            .ok_or("a txn response is not a range")?;
        read.insert(key.clone(), first_kv(range)?.map_or(Value::Null, |kv| kv.value));
    }
    Ok(read)
}

/// A non-200 response: etcd's `{"error", "message", "code"}`, or the
/// gateway's own plain-text 4xx (no route, bad method), which never reached
/// etcd.
fn refusal(resp: &HttpResponse) -> Rpc {
    let parsed: Option<Map<String, Value>> = serde_json::from_slice(&resp.body).ok();
    let code = parsed.as_ref().and_then(|m| m.get("code")).and_then(Value::as_i64);
    let text = parsed
        .as_ref()
        .and_then(|m| m.get("message").or_else(|| m.get("error")))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(&resp.body[..resp.body.len().min(200)]).into_owned());
    let definite = match code {
        Some(c) => DEFINITE_GRPC_CODES.contains(&c),
        None => (400..500).contains(&resp.status),
    };
    Rpc::Refused {
        definite,
        message: format!("http {}: {}", resp.status, text.trim()),
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

/// POSTs `body` to `path` of the etcd gateway at `addr` on a fresh
/// connection, within `timeout_ms`, and returns the JSON of a 200 response.
/// For the harness: `/v3/maintenance/status` tells a member's id, the
/// leader's, the raft term and index.
pub async fn admin_post(addr: SocketAddr, path: &str, body: &Value, timeout_ms: u64) -> Result<Value, String> {
    let bytes = serde_json::to_vec(body).expect("requests serialize");
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
        round_trip(&mut s, &http_request("POST", path, addr, &bytes)).await
    };
    let resp = match tokio::time::timeout(Duration::from_millis(timeout_ms), exchange).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(format!("no response within {timeout_ms} ms")),
    };
    if resp.status != 200 {
        return Err(format!("HTTP {}: {}", resp.status, String::from_utf8_lossy(&resp.body)));
    }
    serde_json::from_slice(&resp.body).map_err(|e| format!("malformed body: {e}"))
}

fn http_request(method: &str, path: &str, host: SocketAddr, body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n");
    if !body.is_empty() {
        r.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    r.push_str("\r\n");
    let mut bytes = r.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Writes one request and reads its response.
async fn round_trip(stream: &mut TcpStream, request: &[u8]) -> Result<HttpResponse, String> {
    stream.write_all(request).await.map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        if let Some((mut resp, used)) = parse_response(&buf, false)? {
            // Bytes past the response belong to nothing we sent.
            resp.close |= used < buf.len();
            return Ok(resp);
        }
        if buf.len() > MAX_HEAD_BYTES + MAX_RESPONSE_BYTES {
            return Err(format!("response exceeds {MAX_RESPONSE_BYTES} bytes"));
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("connection lost: {e}"))?;
        if n == 0 {
            return match parse_response(&buf, true)? {
                Some((mut resp, _)) => {
                    resp.close = true;
                    Ok(resp)
                }
                None if buf.is_empty() => Err("connection closed before any response".into()),
                None => Err("connection closed mid-response".into()),
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One HTTP response.
#[derive(Debug, PartialEq)]
struct HttpResponse {
    status: u16,
    body: Vec<u8>,
    /// The connection cannot carry another request.
    close: bool,
}

/// How a response's body ends.
#[derive(Debug, PartialEq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// A parsed status line and headers.
#[derive(Debug)]
struct Head {
    status: u16,
    framing: Framing,
    close: bool,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses one response from the front of `buf`: `Ok(None)` while it is
/// incomplete, with the bytes it used once it is whole. `eof`: the peer has
/// closed, which ends a body framed by nothing else. Interim (1xx)
/// responses are skipped.
fn parse_response(buf: &[u8], eof: bool) -> Result<Option<(HttpResponse, usize)>, String> {
    let mut start = 0;
    loop {
        let Some(head_len) = find(&buf[start..], b"\r\n\r\n") else {
            if buf.len() - start > MAX_HEAD_BYTES {
                return Err(format!("response head exceeds {MAX_HEAD_BYTES} bytes"));
            }
            return Ok(None);
        };
        let text = std::str::from_utf8(&buf[start..start + head_len]).map_err(|_| "response head is not UTF-8")?;
        let head = parse_head(text)?;
        let body_start = start + head_len + 4;
        if (100..200).contains(&head.status) {
            start = body_start;
            continue;
        }
        let rest = &buf[body_start..];
        let body = match head.framing {
            Framing::Length(n) => (rest.len() >= n).then(|| (rest[..n].to_vec(), n)),
            Framing::Chunked => parse_chunked(rest)?,
            Framing::UntilClose if eof => Some((rest.to_vec(), rest.len())),
            Framing::UntilClose => None,
        };
        return Ok(body.map(|(body, used)| {
            let close = head.close || head.framing == Framing::UntilClose;
            (
                HttpResponse {
                    status: head.status,
                    body,
                    close,
                },
                body_start + used,
            )
        }));
    }
}

fn parse_head(text: &str) -> Result<Head, String> {
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1 response: {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut length = None;
    let mut chunked = false;
    let mut close = version == "HTTP/1.0";
    for line in lines {
        let (name, value) = line.split_once(':').ok_or_else(|| format!("bad header {line:?}"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value.parse().map_err(|_| format!("bad content-length {value:?}"))?;
            if n > MAX_RESPONSE_BYTES {
                return Err(format!("response of {n} bytes exceeds {MAX_RESPONSE_BYTES}"));
            }
            if length.is_some_and(|l| l != n) {
                return Err("conflicting content-length headers".into());
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if !value.to_ascii_lowercase().ends_with("chunked") {
                return Err(format!("unsupported transfer-encoding {value:?}"));
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            let v = value.to_ascii_lowercase();
            close = v.contains("close") || (close && !v.contains("keep-alive"));
        }
    }
    let framing = match (chunked, length) {
        (true, _) => Framing::Chunked,
        _ if status == 204 || status == 304 || (100..200).contains(&status) => Framing::Length(0),
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::UntilClose,
    };
    Ok(Head { status, framing, close })
}

/// Parses a chunked body (and its trailers) from the front of `buf`.
fn parse_chunked(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let Some(line_len) = find(&buf[pos..], b"\r\n") else {
            return incomplete(buf.len() - pos);
        };
        let line = std::str::from_utf8(&buf[pos..pos + line_len]).map_err(|_| "chunk size is not UTF-8")?;
        let digits = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(digits, 16).map_err(|_| format!("bad chunk size {line:?}"))?;
        if size > MAX_RESPONSE_BYTES - body.len() {
            return Err(format!("chunked response exceeds {MAX_RESPONSE_BYTES} bytes"));
        }
        pos += line_len + 2;
        if size == 0 {
            return Ok(trailers_end(&buf[pos..])?.map(|used| (body, pos + used)));
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err("a chunk does not end with CRLF".into());
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        pos += size + 2;
    }
}

/// The bytes of the trailer section (header lines, then an empty line).
fn trailers_end(buf: &[u8]) -> Result<Option<usize>, String> {
    let mut pos = 0;
    loop {
        let Some(line_len) = find(&buf[pos..], b"\r\n") else {
            return incomplete(buf.len() - pos);
        };
        pos += line_len + 2;
        if line_len == 0 {
            return Ok(Some(pos));
        }
    }
}

/// Not whole yet, unless a line has grown past any sensible length.
fn incomplete<T>(pending: usize) -> Result<Option<T>, String> {
    if pending > MAX_HEAD_BYTES {
        return Err(format!("a line of the response exceeds {MAX_HEAD_BYTES} bytes"));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_content_length_response_byte_by_byte() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        for cut in 0..wire.len() {
            assert_eq!(parse_response(&wire[..cut], false).unwrap(), None, "cut at {cut}");
        }
        let (resp, used) = parse_response(wire, false).unwrap().unwrap();
        assert_eq!(
            (resp.status, resp.body.as_slice(), resp.close, used),
            (200, &b"{}"[..], false, wire.len())
        );
    }

    #[test]
    fn parses_a_chunked_response_with_trailers() {
        let wire = b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\nTrailer: X\r\n\r\n\
                     4;ext=1\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\nGrpc-Trailer-Content-Type: application/grpc\r\n\r\n";
        for cut in 0..wire.len() {
            assert_eq!(parse_response(&wire[..cut], false).unwrap(), None, "cut at {cut}");
        }
        let (resp, used) = parse_response(wire, false).unwrap().unwrap();
        assert_eq!(
            (resp.status, resp.body.as_slice(), used),
            (400, &b"{\"a\":1}"[..], wire.len())
        );
    }

    #[test]
    fn skips_interim_responses_and_reads_unframed_bodies_to_the_end() {
        let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nbody";
        assert_eq!(parse_response(wire, false).unwrap(), None);
        let (resp, _) = parse_response(wire, true).unwrap().unwrap();
        assert_eq!(
            (resp.status, resp.body.as_slice(), resp.close),
            (200, &b"body"[..], true)
        );
        let close = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
        assert!(parse_response(close, false).unwrap().unwrap().0.close);
    }

    #[test]
    fn rejects_what_it_cannot_bound() {
        let big = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", MAX_RESPONSE_BYTES + 1);
        assert!(parse_response(big.as_bytes(), false).is_err());
        let chunk = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
            MAX_RESPONSE_BYTES + 1
        );
        assert!(parse_response(chunk.as_bytes(), false).is_err());
        assert!(parse_response(&vec![b'x'; MAX_HEAD_BYTES + 1], false).is_err());
        assert!(parse_response(b"SPDY/3 200 OK\r\n\r\n", false).is_err());
        assert!(parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            false
        )
        .is_err());
    }

    #[test]
    fn decodes_kvs_and_snapshots() {
        let range = json!({"header": {}, "kvs": [{"key": b64(b"k"), "mod_revision": "7", "value": b64(b"[1,2]")}]});
        let kv = first_kv(range.as_object().unwrap()).unwrap().unwrap();
        assert_eq!((kv.value, kv.mod_revision), (json!([1, 2]), 7));
        assert!(first_kv(json!({"header": {}}).as_object().unwrap()).unwrap().is_none());
        let bad = json!({"kvs": [{"value": b64(b"not json"), "mod_revision": "1"}]});
        assert!(first_kv(bad.as_object().unwrap()).is_err());
        let txn = json!({"responses": [{"response_range": range}, {"response_range": {"header": {}}}]});
        let keys = ["a".to_owned(), "b".to_owned()];
        assert_eq!(
            Value::Object(snapshot(txn.as_object().unwrap(), &keys).unwrap()),
            json!({"a": [1, 2], "b": null})
        );
        assert!(snapshot(txn.as_object().unwrap(), &keys[..1]).is_err());
    }

    #[test]
    fn only_validation_and_exhaustion_errors_are_definite() {
        let resp = |status: u16, body: &str| HttpResponse {
            status,
            body: body.as_bytes().to_vec(),
            close: false,
        };
        let definite = |r: Rpc| matches!(r, Rpc::Refused { definite: true, .. });
        assert!(definite(refusal(&resp(
            400,
            r#"{"message":"etcdserver: key is not provided","code":3}"#
        ))));
        assert!(definite(refusal(&resp(
            429,
            r#"{"message":"etcdserver: too many requests","code":8}"#
        ))));
        assert!(!definite(refusal(&resp(
            503,
            r#"{"message":"etcdserver: request timed out","code":14}"#
        ))));
        assert!(definite(refusal(&resp(404, "Not Found"))));
        assert!(!definite(refusal(&resp(502, "Bad Gateway"))));
    }

    #[test]
    fn rejects_a_home_without_a_route() {
        let cfg = EtcdClientConfig::new(BTreeMap::new(), "n1");
        assert!(EtcdClient::new(cfg).is_err());
    }
}
