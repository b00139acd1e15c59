//! The `Client` for Redis primary/replica setups, through the `redis`
//! crate: one multiplexed connection per node (see [`conn`]).
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
//! always (the primary itself, if the home node is or becomes it). With
//! [`RedisClientConfig::wait_replicas`] each applied write is followed by
//! `WAIT numreplicas timeout`; the write stays ok whatever WAIT says, even
//! when fewer replicas acknowledged it or WAIT itself failed: the primary
//! applied it, and whether it survives a failover is what the checkers
//! judge (a lost write), not something the client may hide.
//!
//! Failover: a nemesis may promote a replica (`REPLICAOF NO ONE`). When the
//! believed primary answers `-READONLY`, or does not answer at all, the next
//! operation that needs the primary first asks every node `ROLE` (once, each
//! query bounded by the connect timeout) and takes the master with the most
//! connected replicas (then the highest replication offset, then the
//! smallest name). The operation that saw the trouble is not retried.
//!
//! Honesty (see `client.rs`):
//! - ok: Redis answered the command with its success reply.
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

mod config;
mod conn;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use redis::{Cmd, Value as Reply};
use serde_json::{Map, Value};
use tokio::task::JoinSet;

use crate::client::{BoxFuture, Client, Completion, Outcome};
use crate::error::WorkloadError;
use crate::request::Request;
use conn::{error_text, Conn};

pub use config::{RedisClientConfig, RedisReads};
pub use conn::admin;

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

/// A client of one Redis primary and its replicas, one operation in flight.
pub struct RedisClient {
    cfg: RedisClientConfig,
    conns: BTreeMap<String, Conn>,
    primary: String,
    /// The primary refused a write as a replica or did not answer: ask
    /// every node `ROLE` before the next operation that needs it.
    rediscover: bool,
    /// Draws the replica of each read under [`RedisReads::Replica`].
    rng: ChaCha8Rng,
}

/// What one command on one node gave.
enum Exchange {
    /// A whole reply (perhaps an error reply).
    Reply(Reply),
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
        let timeout_ms = self.cfg.timeout_ms;
        let exchange = self.exchange(&node, &command_of(req), timeout_ms).await;
        let completion = match exchange {
            Exchange::Reply(reply) => {
                if to_primary && error_code(&reply) == Some("READONLY") {
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
    fn judge(&mut self, req: &Request, node: &str, reply: Reply) -> Completion {
        let ok = |returned: &Value| Completion {
            outcome: Outcome::Ok,
            value: req.ok_value(returned),
            node: Some(node.to_owned()),
            error: None,
        };
        let node_name = Some(node.to_owned());
        if let Reply::ServerError(e) = &reply {
            let definite = DEFINITE_ERRORS.contains(&e.code());
            let text = error_text(e);
            return if definite || !req.is_write() {
                Completion::fail(node_name, text)
            } else {
                Completion::info(node_name, text)
            };
        }
        let judged = match (req, reply) {
            (Request::Read { .. }, Reply::Nil) => Ok(ok(&Value::Null)),
            (Request::Read { .. }, Reply::BulkString(b)) => decode(Some(&b)).map(|v| ok(&v)),
            (Request::MultiRead { keys }, Reply::Array(items)) => snapshot(keys, items).map(|m| ok(&m)),
            (Request::Write { .. }, Reply::Okay) => Ok(ok(&Value::Null)),
            (Request::Cas { .. } | Request::Append { .. }, Reply::Int(1)) => Ok(ok(&Value::Null)),
            (Request::Cas { .. }, Reply::Int(0)) => Ok(Completion::fail(node_name.clone(), CAS_MISMATCH)),
            (_, other) => Err(format!("unexpected reply {other:?}")),
        };
        judged.unwrap_or_else(|e| {
            // A reply of the wrong shape: whatever answered is not what we
            // think, so the connection goes.
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
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(want).arg(wait_ms);
        let limit = self.cfg.timeout_ms.saturating_add(wait_ms);
        match self.exchange(node, &cmd, limit).await {
            Exchange::Reply(Reply::Int(n)) if n >= i64::from(want) => {}
            Exchange::Reply(Reply::Int(n)) => tracing::debug!(node, acked = n, want, "WAIT: fewer replicas acked"),
            Exchange::Reply(other) => tracing::debug!(node, reply = ?other, "WAIT: unexpected reply"),
            Exchange::NotSent(e) | Exchange::Lost(e) => tracing::debug!(node, error = %e, "WAIT failed"),
        }
    }

    /// One round of `ROLE` on every node, concurrently, each bounded by the
    /// connect timeout; keeps the current primary when no node says master.
    async fn discover(&mut self) {
        let limit_ms = self.cfg.connect_timeout_ms;
        let mut asks = JoinSet::new();
        for (name, addr) in self.cfg.routes.clone() {
            asks.spawn(async move { (name, ask_role(addr, limit_ms).await) });
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
    /// probing) it first when there is none or its driver has ended.
    async fn exchange(&mut self, node: &str, cmd: &Cmd, timeout_ms: u64) -> Exchange {
        let Some(addr) = self.cfg.routes.get(node).copied() else {
            return Exchange::NotSent(format!("no route to {node}"));
        };
        if self.conns.contains_key(node) {
            // Two turns of the scheduler: in the first it polls the I/O
            // driver, which wakes the connection's driver task if the node
            // has closed the connection; in the second that task has run and
            // ended. Then `alive` tells a close the kernel had already seen.
            for _ in 0..2 {
                tokio::task::yield_now().await;
            }
        }
        if self.conns.get(node).is_some_and(|c| !c.alive()) {
            self.conns.remove(node);
        }
        if !self.conns.contains_key(node) {
            match Conn::open(addr, self.cfg.connect_timeout_ms).await {
                Ok(c) => self.conns.insert(node.to_owned(), c),
                Err(e) => return Exchange::NotSent(e),
            };
        }
        let conn = self.conns.get_mut(node).expect("connection just ensured");
        let ended = tokio::time::timeout(Duration::from_millis(timeout_ms), conn.send(cmd)).await;
        let lost = match ended {
            Ok(Ok(reply)) => return Exchange::Reply(reply),
            Ok(Err(e)) => format!("connection lost: {e}"),
            Err(_) => format!("timed out after {timeout_ms} ms"),
        };
        self.conns.remove(node);
        Exchange::Lost(lost)
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

/// The code of an error reply (`READONLY`, `ERR`, ...).
fn error_code(reply: &Reply) -> Option<&str> {
    match reply {
        Reply::ServerError(e) => Some(e.code()),
        _ => None,
    }
}

/// The command that carries `req`.
fn command_of(req: &Request) -> Cmd {
    match req {
        Request::Read { key } => redis::cmd("GET").arg(key).clone(),
        Request::Write { key, value } => redis::cmd("SET").arg(key).arg(value.to_string()).clone(),
        Request::Cas { key, expected, new } => {
            let (flag, expected) = match expected {
                Some(v) => ("present", v.to_string()),
                None => ("absent", String::new()),
            };
            redis::cmd("EVAL")
                .arg(CAS_SCRIPT)
                .arg(1)
                .arg(key)
                .arg(flag)
                .arg(expected)
                .arg(new.to_string())
                .clone()
        }
        Request::Txn { .. } => unreachable!("call_inner refuses transactions before encoding"),
        Request::Append { key, value } => redis::cmd("EVAL")
            .arg(APPEND_SCRIPT)
            .arg(1)
            .arg(key)
            .arg(value.to_string())
            .clone(),
        Request::MultiRead { keys } => redis::cmd("MGET").arg(keys).clone(),
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
fn snapshot(keys: &[String], items: Vec<Reply>) -> Result<Value, String> {
    if items.len() != keys.len() {
        return Err(format!("{} values for {} keys", items.len(), keys.len()));
    }
    let mut read = Map::new();
    for (key, item) in keys.iter().zip(items) {
        let value = match item {
            Reply::Nil => Value::Null,
            Reply::BulkString(b) => decode(Some(&b))?,
            other => return Err(format!("MGET gave {other:?}")),
        };
        read.insert(key.clone(), value);
    }
    Ok(Value::Object(read))
}

/// Asks one node `ROLE` on a fresh connection within `timeout_ms`: `Some`
/// when it is a master.
async fn ask_role(addr: SocketAddr, timeout_ms: u64) -> Option<Master> {
    let role = admin(addr, &["ROLE"], timeout_ms).await.ok()?;
    as_master(&role)
}

/// A master's `ROLE` reply: `["master", offset, [[host, port, offset], ...]]`.
fn as_master(role: &Value) -> Option<Master> {
    if role.get(0)?.as_str()? != "master" {
        return None;
    }
    Some(Master {
        offset: role.get(1)?.as_i64()?,
        replicas: role.get(2)?.as_array()?.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn commands_carry_the_json_text_of_values() {
        let cas = command_of(&Request::Cas {
            key: "k".into(),
            expected: None,
            new: 5,
        });
        let args: Vec<String> = cas
            .args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                _ => "not a plain argument".into(),
            })
            .collect();
        assert_eq!(args[0], "EVAL");
        assert_eq!(args[2..], ["1", "k", "absent", "", "5"]);
        let m = command_of(&Request::MultiRead {
            keys: vec!["a".into(), "b".into()],
        });
        assert_eq!(m.args_iter().count(), 3, "MGET a b");
    }

    #[test]
    fn shapes_snapshots_and_values() {
        let keys = ["a".to_owned(), "b".to_owned()];
        let items = vec![Reply::BulkString(b"[1,2]".to_vec()), Reply::Nil];
        let read = snapshot(&keys, items).unwrap();
        let req = Request::MultiRead { keys: keys.to_vec() };
        assert_eq!(req.ok_value(&read), json!([["r", "a", [1, 2]], ["r", "b", null]]));
        assert!(snapshot(&keys, vec![Reply::Nil]).is_err());
        assert!(snapshot(&keys, vec![Reply::Nil, Reply::Int(3)]).is_err());
        assert!(decode(Some(b"nope")).is_err());
    }

    /// A reply as the crate parses it off the wire.
    fn reply(wire: &[u8]) -> Reply {
        redis::parse_redis_value(wire).expect("a well-formed reply")
    }

    #[test]
    fn judges_each_reply_by_what_it_proves() {
        let routes = [("n1".to_owned(), ([127, 0, 0, 1], 1).into())].into();
        let mut c = RedisClient::new(RedisClientConfig::new(routes, "n1", "n1")).unwrap();
        let w = Request::Write {
            key: "k".into(),
            value: 1,
        };
        let r = Request::Read { key: "k".into() };
        let cas = Request::Cas {
            key: "k".into(),
            expected: Some(1),
            new: 2,
        };
        let cases: [(&Request, &[u8], Outcome, Option<&str>); 10] = [
            (&w, b"+OK\r\n", Outcome::Ok, None),
            (&r, b"$1\r\n7\r\n", Outcome::Ok, None),
            (&r, b"$-1\r\n", Outcome::Ok, None),
            (&cas, b":0\r\n", Outcome::Fail, Some(CAS_MISMATCH)),
            (
                &w,
                b"-READONLY You can't write against a read only replica.\r\n",
                Outcome::Fail,
                Some("READONLY You can't write against a read only replica."),
            ),
            (
                &cas,
                b"-NOREPLICAS Not enough good replicas to write.\r\n",
                Outcome::Fail,
                Some("NOREPLICAS Not enough good replicas to write."),
            ),
            // An error Redis may give after acting: the write may have applied.
            (
                &w,
                b"-ERR something went wrong\r\n",
                Outcome::Info,
                Some("ERR something went wrong"),
            ),
            (
                &r,
                b"-ERR something went wrong\r\n",
                Outcome::Fail,
                Some("ERR something went wrong"),
            ),
            // A reply of the wrong shape: unknown for a write, a fail for a read.
            (&w, b":5\r\n", Outcome::Info, None),
            (&r, b":5\r\n", Outcome::Fail, None),
        ];
        for (req, wire, want, error) in cases {
            let done = c.judge(req, "n1", reply(wire));
            assert_eq!(done.outcome, want, "{req:?} {done:?}");
            if let Some(e) = error {
                assert_eq!(done.error.as_deref(), Some(e), "{req:?}");
            }
        }
    }

    #[test]
    fn reads_roles() {
        let m = as_master(&json!(["master", 42, [["127.0.0.1", "7001", "40"]]])).unwrap();
        assert_eq!((m.offset, m.replicas), (42, 1));
        assert!(as_master(&json!(["slave", "127.0.0.1", 7000, "connected", 0])).is_none());
        assert!(as_master(&json!("nonsense")).is_none());
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
