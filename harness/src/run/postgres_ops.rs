//! What the nemesis does to a PostgreSQL cluster: process faults on whole
//! process groups, and the failover steps (fence, promote, re-point,
//! rewind), each recorded only once it took effect.

use std::collections::BTreeMap;

use faultline_nemesis::runner::BoxFuture;
use faultline_nemesis::{NodeOps, NodeOpsError};
use serde_json::{json, Value};

use super::{lsn, PgFailover, PostgresDb, PROMOTE_WAIT_S};
use crate::run::db::{start_error, Db};

/// A standby's position: the WAL it has received or replayed, the most
/// of the two (promotion replays all it received).
const POSITION_SQL: &str = "SELECT pg_is_in_recovery(), \
     greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())";
/// How long a fenced failover waits, with the old primary cut off,
/// before it fences it: a failover manager's detection time.
const DETECT_MS: u64 = 1_000;
const STATUS_SQL: &str = "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() \
     THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, \
     (SELECT timeline_id FROM pg_control_checkpoint())";

impl PostgresDb {
    /// Every node's state in faultline-server's terms, for `status.jsonl`.
    pub(super) async fn statuses_now(&self) -> BTreeMap<String, Option<Value>> {
        let mut out = BTreeMap::new();
        for n in &self.layout().nodes {
            let row = self.ask(n, STATUS_SQL).await.ok().and_then(|r| r.into_iter().next());
            let status = row.map(|r| {
                let role = if r.first().cloned().flatten().as_deref() == Some("f") {
                    "leader"
                } else {
                    "follower"
                };
                let at = lsn(r.get(1).and_then(|c| c.as_deref()));
                let epoch = r.get(2).and_then(|c| c.as_deref()).and_then(|t| t.parse::<u64>().ok());
                json!({"role": role, "epoch": epoch, "commit_lsn": at, "applied_lsn": at})
            });
            out.insert(n.clone(), status);
        }
        out
    }

    /// The standby (not `old`) with the most WAL, then the first by name.
    async fn most_advanced_standby(&self, old: &str) -> Option<(String, u64)> {
        let mut best: Option<(String, u64)> = None;
        for n in self.layout().nodes.iter().filter(|n| *n != old) {
            let Ok(rows) = self.ask(n, POSITION_SQL).await else {
                continue;
            };
            let Some(row) = rows.first() else { continue };
            if row.first().cloned().flatten().as_deref() != Some("t") {
                continue;
            }
            let at = lsn(row.get(1).and_then(|c| c.as_deref())).unwrap_or(0);
            if best.as_ref().is_none_or(|(_, b)| at > *b) {
                best = Some((n.clone(), at));
            }
        }
        best
    }

    /// `pg_promote()` on `node`, and proof that it left recovery.
    async fn promote_one(&self, node: &str) -> Result<(), NodeOpsError> {
        let sql = format!("SELECT pg_promote(true, {PROMOTE_WAIT_S})");
        let limit = (PROMOTE_WAIT_S + 5) * 1_000;
        let addr = self.layout().listen[node];
        let promoted = faultline_workloads::postgres_client::admin(addr, &sql, limit).await;
        let refused = |detail: String| NodeOpsError::Admin {
            node: node.to_owned(),
            command: sql.clone(),
            detail,
        };
        let rows = promoted.map_err(refused)?;
        let recovery = self.ask(node, "SELECT pg_is_in_recovery()").await?;
        let out_of_recovery = recovery.first().and_then(|r| r.first().cloned().flatten()).as_deref() == Some("f");
        if !out_of_recovery {
            return Err(refused(format!(
                "still in recovery after promotion (pg_promote said {rows:?})"
            )));
        }
        Ok(())
    }

    /// Points the standby `node` at `primary` and reloads its settings.
    async fn repoint(&self, node: &str, primary: &str) -> Result<(), NodeOpsError> {
        let conninfo = self.conninfo(node, primary).replace('\'', "''");
        self.ask(node, &format!("ALTER SYSTEM SET primary_conninfo = '{conninfo}'"))
            .await?;
        self.ask(node, "SELECT pg_reload_conf()").await.map(|_| ())
    }

    /// A fenced failover's first steps, once the old primary is cut off
    /// from its standbys (the runner's partition): the time a failover
    /// manager takes to notice, then the old primary killed. Under
    /// asynchronous replication it acknowledges writes its standbys never
    /// get in that window; under synchronous replication it cannot. An
    /// unfenced failover skips both: the old primary keeps serving.
    async fn fence(&self, old: &str) -> Result<Value, NodeOpsError> {
        if self.opts.failover == PgFailover::Unfenced {
            return Ok(json!(false));
        }
        tokio::time::sleep(std::time::Duration::from_millis(DETECT_MS)).await;
        match self.kill_group(old) {
            Ok(pid) => Ok(json!({"killed_pid": pid, "after_ms": DETECT_MS})),
            Err(NodeOpsError::NotRunning { .. }) => Ok(json!({"already_down": true})),
            Err(e) => Err(e),
        }
    }

    /// Stops `node` at once: its postmaster killed and reaped, then the
    /// rest of its process group.
    fn kill_group(&self, node: &str) -> Result<u32, NodeOpsError> {
        let pid = self.daemons.procs.kill(node)?;
        self.signal_group(node, pid, "KILL");
        Ok(pid)
    }

    /// Stops the former primary `node`, rewinds it onto the current
    /// primary's history and starts it as a standby.
    fn rewind(&self, node: &str, primary: &str) -> Result<Value, NodeOpsError> {
        let admin_err = |command: &str, e: crate::run::db::DbError| NodeOpsError::Admin {
            node: node.to_owned(),
            command: command.to_owned(),
            detail: e.to_string(),
        };
        let pid = match self.kill_group(node) {
            Ok(pid) => Some(pid),
            Err(NodeOpsError::NotRunning { .. }) => None,
            Err(e) => return Err(e),
        };
        let to = self.layout().dial(node, primary);
        let source = format!(
            "--source-server=host={} port={} user=postgres dbname=postgres",
            to.ip(),
            to.port()
        );
        let args = vec!["-D".to_owned(), self.pgdata(node), source];
        let said = self
            .pg_run(node, "pg_rewind", args, super::SETUP_TIMEOUT_MS)
            .map_err(|e| admin_err("pg_rewind", e))?;
        self.set_standby_files(node, primary)
            .map_err(|e| admin_err("standby.signal", e))?;
        let started = self
            .daemons
            .procs
            .start(node, &self.daemon_spec(node))
            .map_err(|e| start_error(node, e))?;
        Ok(json!({"node": node, "primary": primary, "stopped_pid": pid, "pid": started, "pg_rewind": said.trim()}))
    }
}

impl NodeOps for PostgresDb {
    fn kill(&self, node: &str) -> Result<u32, NodeOpsError> {
        self.kill_group(node)
    }

    fn start(&self, node: &str) -> Result<u32, NodeOpsError> {
        self.daemons.start(node, || self.daemon_spec(node))
    }

    /// SIGSTOP of the postmaster and every backend: sessions freeze too.
    fn pause(&self, node: &str) -> Result<u32, NodeOpsError> {
        let pid = self.daemons.procs.pause(node)?;
        self.signal_group(node, pid, "STOP");
        Ok(pid)
    }

    fn resume(&self, node: &str) -> Result<u32, NodeOpsError> {
        if let Some(pid) = self.pid(node) {
            self.signal_group(node, pid, "CONT");
        }
        self.daemons.procs.resume(node)
    }

    fn running(&self, node: &str) -> bool {
        self.daemons.procs.is_running(node)
    }

    fn leader(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async move { Some(self.primary()) })
    }

    fn promote(&self, old: &str) -> BoxFuture<'_, Result<Value, NodeOpsError>> {
        let old = old.to_owned();
        Box::pin(async move {
            let fenced = self.fence(&old).await?;
            let (new, at) = self.most_advanced_standby(&old).await.ok_or(NodeOpsError::NoReplica)?;
            self.promote_one(&new).await?;
            *self.primary.write().expect("primary") = new.clone();
            let mut repointed = Vec::new();
            for n in self.layout().nodes.iter().filter(|n| **n != old && **n != new) {
                match self.repoint(n, &new).await {
                    Ok(()) => repointed.push(n.clone()),
                    Err(e) => tracing::warn!(node = %n, error = %e, "not re-pointed"),
                }
            }
            Ok(json!({"old": old, "new": new, "new_lsn": at, "repointed": repointed, "fenced": fenced}))
        })
    }

    fn rejoin(&self, node: &str) -> BoxFuture<'_, Result<Value, NodeOpsError>> {
        let node = node.to_owned();
        Box::pin(async move {
            let primary = self.primary();
            if node == primary {
                return Ok(json!({"node": node, "primary": primary}));
            }
            tokio::task::block_in_place(|| self.rewind(&node, &primary))
        })
    }
}
