//! The `Client` for PostgreSQL streaming replication: one primary, physical
//! standbys, spoken to with `tokio-postgres`, one connection per node.
//!
//! Two tables (made by the harness, [`SCHEMA`]): `registers (k text
//! primary key, v bigint)` for the register and session workloads, and
//! `lists (k text primary key, v bigint[])` for list-append. A read does
//! not say which kind its key is, so it asks both tables in one statement
//! and returns whichever holds the key (null when neither does).
//!
//! | request | SQL | ok value |
//! |---|---|---|
//! | read | `SELECT` of both tables | the value, a list for list keys, null when absent |
//! | write | `INSERT .. ON CONFLICT DO UPDATE` | the value written |
//! | cas | `UPDATE .. WHERE v = $expected` (`INSERT .. DO NOTHING` from absent) | `[expected, new]` |
//! | append | `INSERT .. ON CONFLICT DO UPDATE SET v = lists.v \|\| EXCLUDED.v` | the element |
//! | multi-read | one `REPEATABLE READ READ ONLY` transaction | `[["r", k, v], ...]` |
//! | txn | `BEGIN ISOLATION LEVEL` [`PgIsolation`], a statement per micro-op, `COMMIT` | the micro-ops, reads filled in |
//!
//! Routing: writes go to the node this client's write connection is open
//! to; a new write connection opens to the node the shared primary pointer
//! ([`PgClientConfig::primary`]) names: the failover manager's answer, as
//! a DNS name or a virtual IP moved by Patroni would be. A connection
//! that still works is kept, so after an unfenced failover the clients
//! that still reach the old primary keep writing there (split brain).
//! Reads follow [`PgReads`].
//!
//! Honesty (see `client.rs`):
//! - fail: nothing was sent (no route, no connection in time), a cas whose
//!   compare did not hold, a statement PostgreSQL refused with an `ERROR`
//!   (its transaction rolled back: serialization failures 40001 and
//!   deadlocks 40P01 among them, and 25006 on a standby), any error of a
//!   transaction before its `COMMIT` was sent (the server rolls back a
//!   transaction whose session ends), and any error of a read.
//! - info: a write whose commit (an autocommit statement, or `COMMIT`)
//!   was sent and got no answer in time, lost its connection, or was
//!   answered `FATAL`/`PANIC` (the session died mid-commit: PostgreSQL
//!   may have committed locally, as it says when a synchronous-replication
//!   wait is cut short).
//!
//! No `statement_timeout` is set: PostgreSQL cancels a commit's wait for
//! its synchronous standbys with only a warning and reports success, which
//! would turn an unreplicated commit into an ok. The client's own timeout
//! drops the connection instead, and the commit is info.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};
use tokio_postgres::{Client as PgConn, NoTls, SimpleQueryMessage};

use crate::client::{BoxFuture, Client, Completion, Outcome};
use crate::error::WorkloadError;
use crate::request::{Request, TxnOp};

/// The tables the workloads use; the harness runs it on the primary.
pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS registers (k text PRIMARY KEY, v bigint NOT NULL);
CREATE TABLE IF NOT EXISTS lists (k text PRIMARY KEY, v bigint[] NOT NULL);";
/// The error of a cas whose compare did not hold (the checkers' `CAS_MISMATCH`).
pub const CAS_MISMATCH: &str = "cas-mismatch";
/// The superuser the harness's `initdb` makes; clients and standbys log in
/// as it (the cluster trusts every connection: it lives for one run).
pub const PG_USER: &str = "postgres";

const READ_SQL: &str = "SELECT (SELECT v FROM registers WHERE k = $1), (SELECT v FROM lists WHERE k = $1)";
const WRITE_SQL: &str = "INSERT INTO registers (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v";
const CAS_SQL: &str = "UPDATE registers SET v = $3 WHERE k = $1 AND v = $2";
const CAS_ABSENT_SQL: &str = "INSERT INTO registers (k, v) VALUES ($1, $2) ON CONFLICT (k) DO NOTHING";
const APPEND_SQL: &str =
    "INSERT INTO lists (k, v) VALUES ($1, ARRAY[$2::bigint]) ON CONFLICT (k) DO UPDATE SET v = lists.v || EXCLUDED.v";
const MULTI_READ_SQL: &str = "SELECT k, v, NULL::bigint[] FROM registers WHERE k = ANY($1) \
     UNION ALL SELECT k, NULL::bigint, v FROM lists WHERE k = ANY($1)";

/// Where a [`PgClient`] sends its reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PgReads {
    /// Where this client writes.
    Primary,
    /// A standby drawn for each read (not the primary the pointer names).
    Standby,
    /// The client's home node, always (sticky reads).
    Home,
}

/// The isolation level of transactions and multi-key reads' siblings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PgIsolation {
    /// PostgreSQL's default.
    ReadCommitted,
    /// Snapshot isolation.
    RepeatableRead,
    /// Serializable snapshot isolation.
    Serializable,
}

impl PgIsolation {
    /// The SQL words.
    pub fn sql(self) -> &'static str {
        match self {
            PgIsolation::ReadCommitted => "READ COMMITTED",
            PgIsolation::RepeatableRead => "REPEATABLE READ",
            PgIsolation::Serializable => "SERIALIZABLE",
        }
    }
}

/// How a [`PgClient`] reaches the nodes.
#[derive(Clone, Debug)]
pub struct PgClientConfig {
    /// Each node's address (or a proxy in front of it).
    pub routes: BTreeMap<String, SocketAddr>,
    /// The node new write connections go to, moved by failovers.
    pub primary: Arc<RwLock<String>>,
    /// The node home reads go to.
    pub home: String,
    /// Where reads go.
    pub reads: PgReads,
    /// The isolation level of transactions.
    pub isolation: PgIsolation,
    /// Seeds the standby draws of [`PgReads::Standby`].
    pub seed: u64,
    /// How long one operation may take before it is info (or, before its
    /// commit was sent, fail).
    pub timeout_ms: u64,
    /// How long opening a connection may take.
    pub connect_timeout_ms: u64,
}

impl PgClientConfig {
    fn validate(&self) -> Result<(), WorkloadError> {
        let primary = self.primary.read().expect("primary pointer").clone();
        for (what, node) in [("primary", &primary), ("home", &self.home)] {
            if !self.routes.contains_key(node) {
                return Err(WorkloadError::BadConfig(format!(
                    "postgres {what} node {node:?} has no route"
                )));
            }
        }
        if self.timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return Err(WorkloadError::BadConfig(
                "postgres client timeouts must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// A client of one PostgreSQL primary and its standbys, one operation in
/// flight.
pub struct PgClient {
    cfg: PgClientConfig,
    conns: BTreeMap<String, PgConn>,
    /// The node the write connection is open to, while it works.
    writer: Option<String>,
    rng: ChaCha8Rng,
}

/// How one attempt went wrong.
#[derive(Debug)]
enum Trouble {
    /// Certainly not applied.
    Fail(String),
    /// Perhaps applied.
    Info(String),
}

impl PgClient {
    /// A client; connections open on first use.
    pub fn new(cfg: PgClientConfig) -> Result<PgClient, WorkloadError> {
        cfg.validate()?;
        Ok(PgClient {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            cfg,
            conns: BTreeMap::new(),
            writer: None,
        })
    }

    fn pointer(&self) -> String {
        self.cfg.primary.read().expect("primary pointer").clone()
    }

    /// The node this operation goes to.
    fn target(&mut self, req: &Request) -> String {
        let writer = self.writer.clone().unwrap_or_else(|| self.pointer());
        if req.is_write() {
            return writer;
        }
        match self.cfg.reads {
            PgReads::Primary => writer,
            PgReads::Home => self.cfg.home.clone(),
            PgReads::Standby => {
                let primary = self.pointer();
                let standbys: Vec<&String> = self.cfg.routes.keys().filter(|n| **n != primary).collect();
                if standbys.is_empty() {
                    return primary;
                }
                standbys[self.rng.gen_range(0..standbys.len())].clone()
            }
        }
    }

    async fn call_inner(&mut self, req: &Request) -> Completion {
        let node = self.target(req);
        let limit = Duration::from_millis(self.cfg.timeout_ms);
        let isolation = self.cfg.isolation;
        let Some(conn) = self.connection(&node).await else {
            return Completion::fail(Some(node), "no connection");
        };
        let commit_sent = AtomicBool::new(false);
        let result = match tokio::time::timeout(limit, execute(conn, req, isolation, &commit_sent)).await {
            Ok(r) => r,
            Err(_) => Err(Committing::timed_out(limit, commit_sent.load(Ordering::SeqCst))),
        };
        match result {
            Ok(returned) => Completion {
                outcome: Outcome::Ok,
                value: req.ok_value(&returned),
                node: Some(node),
                error: None,
            },
            Err(c) => self.trouble(req, &node, c),
        }
    }

    /// The completion of an operation that went wrong; a connection that
    /// may be broken or mid-transaction is dropped.
    fn trouble(&mut self, req: &Request, node: &str, c: Committing) -> Completion {
        let trouble = classify(req.is_write(), &c);
        if c.drop_connection {
            self.conns.remove(node);
            if self.writer.as_deref() == Some(node) {
                self.writer = None;
            }
        }
        match trouble {
            Trouble::Fail(e) => Completion::fail(Some(node.to_owned()), e),
            Trouble::Info(e) => Completion::info(Some(node.to_owned()), e),
        }
    }

    /// The open connection to `node`, or a new one (bounded by the connect
    /// timeout); `None` when it cannot be had.
    async fn connection(&mut self, node: &str) -> Option<&PgConn> {
        if self.conns.get(node).is_some_and(PgConn::is_closed) {
            self.conns.remove(node);
        }
        if !self.conns.contains_key(node) {
            let addr = *self.cfg.routes.get(node)?;
            let conn = connect(addr, self.cfg.connect_timeout_ms).await.ok()?;
            self.conns.insert(node.to_owned(), conn);
        }
        if self.writer.is_none() && node == self.pointer() {
            self.writer = Some(node.to_owned());
        }
        self.conns.get(node)
    }
}

impl Client for PgClient {
    fn call<'a>(&'a mut self, req: &'a Request) -> BoxFuture<'a, Completion> {
        Box::pin(self.call_inner(req))
    }

    fn new_session(&mut self) {
        self.conns.clear();
        self.writer = None;
    }
}

/// Opens a connection to `addr` as [`PG_USER`], its driver on a task of
/// its own (it ends when the connection does).
pub async fn connect(addr: SocketAddr, timeout_ms: u64) -> Result<PgConn, String> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(addr.ip().to_string())
        .port(addr.port())
        .user(PG_USER)
        .dbname("postgres")
        .application_name("faultline-client")
        .connect_timeout(Duration::from_millis(timeout_ms));
    let limit = Duration::from_millis(timeout_ms);
    let (client, conn) = match tokio::time::timeout(limit, cfg.connect(NoTls)).await {
        Ok(r) => r.map_err(|e| e.to_string())?,
        Err(_) => return Err(format!("no connection within {timeout_ms} ms")),
    };
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "postgres connection ended");
        }
    });
    Ok(client)
}

/// Runs `sql` (one or more statements) on a fresh connection to `addr`,
/// the whole bounded by `timeout_ms`; returns each row's columns as text.
/// The harness's admin queries (readiness, promotion, status).
pub async fn admin(addr: SocketAddr, sql: &str, timeout_ms: u64) -> Result<Vec<Vec<Option<String>>>, String> {
    let limit = Duration::from_millis(timeout_ms);
    let run = async {
        let conn = connect(addr, timeout_ms).await?;
        let msgs = conn.simple_query(sql).await.map_err(|e| describe(&e))?;
        let rows = msgs.iter().filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect()),
            _ => None,
        });
        Ok(rows.collect())
    };
    tokio::time::timeout(limit, run)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout_ms} ms")))
}

/// An error, and whether the commit had been sent when it came.
#[derive(Debug)]
struct Committing {
    /// The error's text.
    error: String,
    /// `ERROR` from the server: the statement (and its transaction) was
    /// rolled back.
    refused: bool,
    /// The commit (an autocommit write, or `COMMIT`) had been sent.
    commit_sent: bool,
    /// The connection may be broken or inside a transaction.
    drop_connection: bool,
}

impl Committing {
    fn of(e: &tokio_postgres::Error, commit_sent: bool) -> Committing {
        let refused = e.as_db_error().is_some_and(|d| d.severity() == "ERROR");
        Committing {
            error: describe(e),
            refused,
            commit_sent,
            // After an ERROR the session is fine, but a transaction may be
            // left aborted: dropping the connection is the simple sure way.
            drop_connection: true,
        }
    }

    /// No answer in time; `commit_sent` says whether the commit had left
    /// (a transaction timed out before its `COMMIT` is rolled back when
    /// its connection is dropped).
    fn timed_out(limit: Duration, commit_sent: bool) -> Committing {
        Committing {
            error: format!("no answer within {} ms", limit.as_millis()),
            refused: false,
            commit_sent,
            drop_connection: true,
        }
    }

    fn mismatch() -> Committing {
        Committing {
            error: CAS_MISMATCH.into(),
            refused: true,
            commit_sent: true,
            drop_connection: false,
        }
    }
}

/// Fail or info, for a write or a read (see the module doc).
fn classify(is_write: bool, c: &Committing) -> Trouble {
    if !is_write || c.refused || !c.commit_sent {
        Trouble::Fail(c.error.clone())
    } else {
        Trouble::Info(c.error.clone())
    }
}

/// An error's SQLSTATE and message, or its description.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} {}: {}", d.severity(), d.code().code(), d.message()),
        None => e.to_string(),
    }
}

/// Runs one request on `conn`; the value `Request::ok_value` takes.
/// `commit_sent` is set just before a commit leaves (an autocommit write,
/// or a transaction's `COMMIT`), so a timeout can tell which side it fell.
async fn execute(
    conn: &PgConn,
    req: &Request,
    isolation: PgIsolation,
    commit_sent: &AtomicBool,
) -> Result<Value, Committing> {
    let sent = |e: tokio_postgres::Error| Committing::of(&e, true);
    if matches!(
        req,
        Request::Write { .. } | Request::Append { .. } | Request::Cas { .. }
    ) {
        commit_sent.store(true, Ordering::SeqCst);
    }
    match req {
        Request::Read { key } => read_one(conn, key).await.map_err(|e| Committing::of(&e, false)),
        Request::Write { key, value } => conn
            .execute(WRITE_SQL, &[key, value])
            .await
            .map(|_| Value::Null)
            .map_err(sent),
        Request::Append { key, value } => conn
            .execute(APPEND_SQL, &[key, value])
            .await
            .map(|_| Value::Null)
            .map_err(sent),
        Request::Cas { key, expected, new } => {
            let n = match expected {
                Some(e) => conn.execute(CAS_SQL, &[key, e, new]).await,
                None => conn.execute(CAS_ABSENT_SQL, &[key, new]).await,
            };
            match n.map_err(sent)? {
                1 => Ok(Value::Null),
                _ => Err(Committing::mismatch()),
            }
        }
        Request::MultiRead { keys } => multi_read(conn, keys).await,
        Request::Txn { ops } => transaction(conn, ops, isolation, commit_sent).await,
    }
}

/// A key's value: the register's, the list's, or null.
async fn read_one(conn: &PgConn, key: &str) -> Result<Value, tokio_postgres::Error> {
    let row = conn.query_one(READ_SQL, &[&key]).await?;
    let register: Option<i64> = row.get(0);
    let list: Option<Vec<i64>> = row.get(1);
    Ok(match (register, list) {
        (Some(v), _) => json!(v),
        (None, Some(l)) => json!(l),
        (None, None) => Value::Null,
    })
}

/// Several keys in one repeatable-read transaction: one snapshot.
async fn multi_read(conn: &PgConn, keys: &[String]) -> Result<Value, Committing> {
    let early = |e: tokio_postgres::Error| Committing::of(&e, false);
    conn.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(early)?;
    let rows = conn.query(MULTI_READ_SQL, &[&keys]).await.map_err(early)?;
    conn.batch_execute("COMMIT").await.map_err(early)?;
    let mut out = Map::new();
    for row in rows {
        let (k, v, l): (String, Option<i64>, Option<Vec<i64>>) = (row.get(0), row.get(1), row.get(2));
        out.insert(k, v.map_or_else(|| json!(l), |v| json!(v)));
    }
    Ok(Value::Object(out))
}

/// One SQL transaction at `isolation`: a statement per micro-op, then
/// `COMMIT`; the micro-ops with each read filled in.
async fn transaction(
    conn: &PgConn,
    ops: &[TxnOp],
    isolation: PgIsolation,
    commit_sent: &AtomicBool,
) -> Result<Value, Committing> {
    let early = |e: tokio_postgres::Error| Committing::of(&e, false);
    let read_only = if ops.iter().any(TxnOp::is_write) {
        ""
    } else {
        " READ ONLY"
    };
    let begin = format!("BEGIN ISOLATION LEVEL {}{read_only}", isolation.sql());
    conn.batch_execute(&begin).await.map_err(early)?;
    let mut done = Vec::with_capacity(ops.len());
    for op in ops {
        let read = match op {
            TxnOp::Read { key } => read_one(conn, key).await.map_err(early)?,
            TxnOp::Append { key, value } => conn
                .execute(APPEND_SQL, &[key, value])
                .await
                .map(|_| Value::Null)
                .map_err(early)?,
            TxnOp::Write { key, value } => conn
                .execute(WRITE_SQL, &[key, value])
                .await
                .map(|_| Value::Null)
                .map_err(early)?,
        };
        done.push(op.to_value(read));
    }
    commit_sent.store(true, Ordering::SeqCst);
    conn.batch_execute("COMMIT")
        .await
        .map_err(|e| Committing::of(&e, true))?;
    Ok(Value::Array(done))
}

#[cfg(test)]
#[path = "postgres_client_tests.rs"]
mod tests;
