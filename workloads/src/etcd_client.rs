//! The `Client` for etcd 3.4 and later, through its gRPC API with the
//! `etcd-client` crate (tonic): the API etcd's own users run. One
//! connection to the client's home node, probed when it opens (see
//! [`conn`]).
//!
//! A value is stored as its JSON text (`42`, `[1,2]`), so a read decodes
//! exactly what the history records.
//!
//! | request | etcd | ok value |
//! |---|---|---|
//! | read | Range (serializable if configured) | the value, null when absent; a list for list keys |
//! | write | Put | the value written |
//! | cas | Txn: VALUE == JSON(expected) (absent: CREATE == 0), then Put | `[expected, new]` |
//! | append | Range, then Txn: MOD == its mod_revision (absent: CREATE == 0), then Put the longer list | the element |
//! | multi-read | one Txn of Ranges: one revision, one snapshot | `[["r", k, v], ...]` |
//!
//! Every request goes to the client's home node: etcd forwards proposals to
//! its leader, and a linearizable read is confirmed with the leader by the
//! node itself.
//!
//! Honesty (see `client.rs`):
//! - ok: etcd answered the request (a Txn only when its compare held).
//! - fail: nothing was sent (no route; the connection could not be opened,
//!   or a fresh one did not answer its probe; a reconnection inside the
//!   request failed), or etcd refused the request before applying it (the
//!   gRPC codes of [`DEFINITE_CODES`]), or a compare failed: a cas's is
//!   `cas-mismatch` (an observation, as HISTORY_FORMAT.md says), an append's
//!   `append-conflict` (the list changed between its read and its Txn;
//!   nothing was written).
//! - info: a write whose request may have left and whose answer did not come
//!   (timeout, connection lost), or that etcd answered with a status that
//!   does not rule out its effect (`Unavailable`: `etcdserver: request timed
//!   out`, `leader changed`; `Unknown`, `Internal`, ...).
//! - Reads and multi-reads change nothing, so every error of theirs is a
//!   fail; so is any error of an append's first step (its read).
//!
//! A connection that timed out or lost a request is dropped, and the next
//! operation opens (and probes) a fresh one.

mod conn;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, GetOptions, GetResponse, KvClient, Txn, TxnOp, TxnOpResponse};
use serde_json::{json, Map, Value};
use tonic::Code;

use crate::client::{BoxFuture, Client, Completion, Outcome};
use crate::error::WorkloadError;
use crate::request::Request;
use conn::{error_chain, Conn};

pub use conn::{member_status, MemberStatus};

/// The error of a cas whose compare did not hold (the checkers' `CAS_MISMATCH`).
pub const CAS_MISMATCH: &str = "cas-mismatch";
/// The error of an append whose list changed between its read and its txn.
pub const APPEND_CONFLICT: &str = "append-conflict";
/// gRPC codes etcd gives only for requests it refused before applying
/// them: InvalidArgument (malformed, too large, empty key), FailedPrecondition
/// and OutOfRange (a txn that does not check out, a compacted revision),
/// ResourceExhausted (too many requests, no space: the capped applier
/// refuses the write), PermissionDenied and Unauthenticated (auth refuses
/// before the write applies).
pub const DEFINITE_CODES: [Code; 6] = [
    Code::InvalidArgument,
    Code::FailedPrecondition,
    Code::OutOfRange,
    Code::ResourceExhausted,
    Code::PermissionDenied,
    Code::Unauthenticated,
];

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
    conn: Option<Conn>,
}

/// What one gRPC call gave.
enum Rpc<T> {
    /// etcd's answer.
    Answer(T),
    /// etcd answered with an error status; `definite` when it certainly
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
    /// A client; the connection opens on first use.
    pub fn new(cfg: EtcdClientConfig) -> Result<EtcdClient, WorkloadError> {
        cfg.validate()?;
        Ok(EtcdClient { cfg, conn: None })
    }

    async fn call_inner(&mut self, req: &Request) -> Completion {
        match req {
            Request::Read { key } => self.read(req, key).await,
            Request::Write { key, value } => {
                let text = json_text(&json!(value));
                let key = key.clone();
                match self.rpc(|mut kv| async move { kv.put(key, text, None).await }).await {
                    Rpc::Answer(_) => self.ok(req, &Value::Null),
                    other => self.not_ok(other, true),
                }
            }
            Request::Cas { key, expected, new } => {
                let guard = match expected {
                    Some(v) => Compare::value(key.as_str(), CompareOp::Equal, json_text(&json!(v))),
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
        let answer = match self.range(key, self.cfg.serializable_reads).await {
            Rpc::Answer(r) => r,
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
        let answer = match self.range(key, false).await {
            Rpc::Answer(r) => r,
            other => return self.not_ok(other, false),
        };
        let (guard, mut list) = match first_kv(&answer) {
            Ok(None) => (absent(key), Vec::new()),
            Ok(Some(Kv {
                value: Value::Array(list),
                mod_revision,
            })) => (Compare::mod_revision(key, CompareOp::Equal, mod_revision), list),
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
        guard: Compare,
        value: &Value,
        mismatch: &str,
    ) -> Completion {
        let txn = Txn::new()
            .when([guard])
            .and_then([TxnOp::put(key, json_text(value), None)]);
        match self.rpc(|mut kv| async move { kv.txn(txn).await }).await {
            Rpc::Answer(r) if r.succeeded() => self.ok(req, &Value::Null),
            Rpc::Answer(_) => self.fail(mismatch),
            other => self.not_ok(other, true),
        }
    }

    async fn multi_read(&mut self, req: &Request, keys: &[String]) -> Completion {
        let ranges: Vec<TxnOp> = keys
            .iter()
            .map(|k| TxnOp::get(k.as_str(), Some(get_options(self.cfg.serializable_reads))))
            .collect();
        let txn = Txn::new().and_then(ranges);
        let answer = match self.rpc(|mut kv| async move { kv.txn(txn).await }).await {
            Rpc::Answer(r) => r,
            other => return self.not_ok(other, false),
        };
        let ranges: Vec<Option<GetResponse>> = answer
            .op_responses()
            .into_iter()
            .map(|r| match r {
                TxnOpResponse::Get(g) => Some(g),
                _ => None,
            })
            .collect();
        match snapshot(ranges, keys) {
            Ok(read) => self.ok(req, &Value::Object(read)),
            Err(e) => self.fail(e),
        }
    }

    async fn range(&mut self, key: &str, serializable: bool) -> Rpc<GetResponse> {
        let key = key.to_owned();
        self.rpc(|mut kv| async move { kv.get(key, Some(get_options(serializable))).await })
            .await
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
    fn not_ok<T>(&self, rpc: Rpc<T>, may_write: bool) -> Completion {
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

    /// Runs `call` on the home node's connection (opening and probing one
    /// first when there is none) within the request timeout, and classifies
    /// its end. Any end but an answer or a definite refusal drops the
    /// connection: it may be stuck, and a fresh one is probed.
    async fn rpc<T, F, Fut>(&mut self, call: F) -> Rpc<T>
    where
        F: FnOnce(KvClient) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        if let Err(e) = self.ensure_connection().await {
            return Rpc::NotSent(e);
        }
        let conn = self.conn.as_ref().expect("connection just ensured");
        let failed_before = conn.failed_dials();
        let limit = Duration::from_millis(self.cfg.timeout_ms);
        let ended = tokio::time::timeout(limit, call(conn.kv())).await;
        let rpc = match ended {
            Ok(Ok(answer)) => return Rpc::Answer(answer),
            Ok(Err(_)) if conn.failed_dials() > failed_before => {
                Rpc::NotSent(format!("reconnecting failed: {}", conn.last_dial_error()))
            }
            Ok(Err(etcd_client::Error::GRpcStatus(status))) => refusal(&status),
            Ok(Err(e)) => Rpc::Lost(error_chain(&e)),
            Err(_) => Rpc::Lost(format!("timed out after {} ms", self.cfg.timeout_ms)),
        };
        if !matches!(rpc, Rpc::Refused { definite: true, .. }) {
            self.conn = None;
        }
        rpc
    }

    /// Opens and probes the home node's connection if there is none.
    async fn ensure_connection(&mut self) -> Result<(), String> {
        if self.conn.is_none() {
            let home = &self.cfg.home;
            let addr: SocketAddr = *self.cfg.routes.get(home).ok_or_else(|| format!("no route to {home}"))?;
            self.conn = Some(Conn::open(addr, self.cfg.connect_timeout_ms).await?);
        }
        Ok(())
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

/// A gRPC status etcd (or the transport under it) answered with. Only a
/// status etcd sent is definite: tonic also makes statuses of transport
/// errors (an HTTP/2 GOAWAY with ENHANCE_YOUR_CALM becomes
/// ResourceExhausted), and those carry their cause as a source.
fn refusal<T>(status: &tonic::Status) -> Rpc<T> {
    let from_etcd = std::error::Error::source(status).is_none();
    Rpc::Refused {
        definite: from_etcd && DEFINITE_CODES.contains(&status.code()),
        message: format!("grpc {:?}: {}", status.code(), status.message()),
    }
}

fn json_text(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("values serialize")
}

fn get_options(serializable: bool) -> GetOptions {
    if serializable {
        GetOptions::new().with_serializable()
    } else {
        GetOptions::new()
    }
}

/// Holds when `key` is absent (never created, or deleted).
fn absent(key: &str) -> Compare {
    Compare::create_revision(key, CompareOp::Equal, 0)
}

/// The first entry of a range response, its value decoded from JSON text.
fn first_kv(range: &GetResponse) -> Result<Option<Kv>, String> {
    let Some(kv) = range.kvs().first() else {
        return Ok(None);
    };
    let value = serde_json::from_slice(kv.value()).map_err(|e| format!("the stored value is not JSON: {e}"))?;
    Ok(Some(Kv {
        value,
        mod_revision: kv.mod_revision(),
    }))
}

/// The values of a txn of ranges (`None` where a response was not a
/// range), keyed by key.
fn snapshot(ranges: Vec<Option<GetResponse>>, keys: &[String]) -> Result<Map<String, Value>, String> {
    if ranges.len() != keys.len() {
        return Err(format!("{} range responses for {} keys", ranges.len(), keys.len()));
    }
    let mut read = Map::new();
    for (key, range) in keys.iter().zip(ranges) {
        let range = range.ok_or("a txn response is not a range")?;
        read.insert(key.clone(), first_kv(&range)?.map_or(Value::Null, |kv| kv.value));
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_before_applying_are_definite() {
        let definite = |code: Code| {
            matches!(
                refusal::<()>(&tonic::Status::new(code, "x")),
                Rpc::Refused { definite: true, .. }
            )
        };
        assert!(definite(Code::InvalidArgument), "etcdserver: key is not provided");
        assert!(definite(Code::ResourceExhausted), "etcdserver: too many requests");
        assert!(
            definite(Code::FailedPrecondition),
            "etcdserver: duplicate key given in txn request"
        );
        let mut transport = tonic::Status::new(Code::ResourceExhausted, "h2 protocol error");
        transport.set_source(std::sync::Arc::new(std::io::Error::other("GOAWAY ENHANCE_YOUR_CALM")));
        assert!(
            !matches!(refusal::<()>(&transport), Rpc::Refused { definite: true, .. }),
            "a status the transport made is not etcd's refusal"
        );
        for ambiguous in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Cancelled,
            Code::Unknown,
            Code::Internal,
            Code::Aborted,
        ] {
            assert!(!definite(ambiguous), "{ambiguous:?} does not rule out an effect");
        }
    }

    #[test]
    fn writes_are_info_unless_certainly_unapplied_and_reads_always_fail() {
        let routes = [("n1".to_owned(), ([127, 0, 0, 1], 1).into())].into();
        let c = EtcdClient::new(EtcdClientConfig::new(routes, "n1")).unwrap();
        let refused = |definite| Rpc::<()>::Refused {
            definite,
            message: "grpc".into(),
        };
        let cases = [
            (Rpc::NotSent("connect".into()), true, Outcome::Fail),
            (refused(true), true, Outcome::Fail),
            (refused(false), true, Outcome::Info),
            (refused(false), false, Outcome::Fail),
            (Rpc::Lost("timed out".into()), true, Outcome::Info),
            (Rpc::Lost("timed out".into()), false, Outcome::Fail),
        ];
        for (rpc, may_write, want) in cases {
            let done = c.not_ok(rpc, may_write);
            assert_eq!(done.outcome, want, "{done:?} (may write: {may_write})");
            assert_eq!(done.node.as_deref(), Some("n1"));
        }
    }

    #[test]
    fn snapshots_need_one_range_per_key() {
        let keys = ["a".to_owned(), "b".to_owned()];
        assert!(snapshot(vec![None], &keys).is_err());
        assert!(snapshot(vec![None, None], &keys).is_err());
        assert!(snapshot(Vec::new(), &[]).unwrap().is_empty());
    }

    #[test]
    fn rejects_a_home_without_a_route() {
        let cfg = EtcdClientConfig::new(BTreeMap::new(), "n1");
        assert!(EtcdClient::new(cfg).is_err());
    }
}
