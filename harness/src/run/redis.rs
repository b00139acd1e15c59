//! Redis as a `Db`: Debian's redis-server 7, a primary (n1 at first) and
//! its replicas, started by the harness with their data in the run's store.
//!
//! Replicas dial their primary through `Layout::dial`, so under the proxy
//! mesh the replication link runs through a proxy and partitions cut it;
//! in namespaces they dial its address. Persistence is Redis's usual
//! production setting (an append-only file, fsynced every second), so a
//! killed node restarts with what it had written out.
//!
//! Failover is the nemesis's (`--nemesis failover`), as Sentinel or an
//! operator would do it when the primary seems gone (optionally after a
//! `WAIT` for every replica, `--redis-failover-wait`): the primary is cut
//! off from its replicas, the most advanced replica is promoted
//! (`REPLICAOF NO ONE`) and the others are re-pointed at it; the old
//! primary, still reachable by clients, keeps taking writes until the fault
//! ends, when it is made a replica of the new primary and throws away what
//! only it had. Those were acknowledged writes: a lost-writes checker finds
//! them. A killed node restarts in the role it holds now.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use faultline_nemesis::runner::BoxFuture;
use faultline_nemesis::{DaemonSpec, NodeOps, NodeOpsError};
use faultline_workloads::redis_client::admin;
use faultline_workloads::{RedisClient, RedisClientConfig, RedisReads};
use serde_json::{json, Value};

use super::db::{forward_process_ops, ClientSpec, Daemons, Db, Layout};

/// How long one admin command may take.
const ADMIN_TIMEOUT_MS: u64 = 1_000;
/// How long a careful failover waits for the replicas to catch up.
const FAILOVER_WAIT_MS: u64 = 2_000;

/// How clients of a [`RedisDb`] behave.
#[derive(Clone, Copy, Debug)]
pub struct RedisOptions {
    /// Where reads go.
    pub reads: RedisReads,
    /// `WAIT n timeout_ms` after every write.
    pub wait_replicas: Option<(u32, u64)>,
    /// The failover nemesis first sends the primary `WAIT` for every
    /// replica (a careful operator's failover), then cuts and promotes.
    pub failover_wait: bool,
}

/// A Redis primary and its replicas.
pub struct RedisDb {
    bin: PathBuf,
    daemons: Daemons,
    opts: RedisOptions,
    primary: Mutex<String>,
}

impl RedisDb {
    /// Nodes laid out as `layout`, the first the primary; not started yet.
    pub fn new(bin: PathBuf, layout: Layout, opts: RedisOptions) -> RedisDb {
        RedisDb {
            bin,
            primary: Mutex::new(layout.nodes[0].clone()),
            daemons: Daemons::new(layout),
            opts,
        }
    }

    fn layout(&self) -> &Layout {
        &self.daemons.layout
    }

    fn primary(&self) -> String {
        self.primary.lock().expect("primary").clone()
    }

    async fn role(&self, node: &str) -> Option<Value> {
        admin(self.layout().listen[node], &["ROLE"], ADMIN_TIMEOUT_MS)
            .await
            .ok()
    }

    async fn roles(&self) -> BTreeMap<String, Option<Value>> {
        let mut out = BTreeMap::new();
        for n in &self.layout().nodes {
            out.insert(n.clone(), self.role(n).await);
        }
        out
    }

    /// Ready when the primary says `master` and every replica says it is
    /// a `connected` replica. Every node is asked, and the detail names
    /// each one that is not ready with the probe's own error (no reply in
    /// time, connection refused, an error reply): "does not answer" alone
    /// cannot tell a node still starting from one that is gone.
    async fn check_ready(&self) -> Result<(), String> {
        let primary = self.primary();
        let mut problems = Vec::new();
        for node in &self.layout().nodes {
            let role = admin(self.layout().listen[node], &["ROLE"], ADMIN_TIMEOUT_MS).await;
            if let Some(problem) = not_ready(node, node == &primary, role) {
                problems.push(problem);
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        Err(problems.join("; "))
    }

    /// `REPLICAOF` on `node`: of `primary`, or of no one.
    async fn replicaof(&self, node: &str, primary: Option<&str>) -> Result<(), NodeOpsError> {
        let target = primary.map(|p| self.layout().dial(node, p));
        let (host, port) = match target {
            Some(a) => (a.ip().to_string(), a.port().to_string()),
            None => ("NO".to_owned(), "ONE".to_owned()),
        };
        admin(
            self.layout().listen[node],
            &["REPLICAOF", &host, &port],
            ADMIN_TIMEOUT_MS,
        )
        .await
        .map(|_| ())
        .map_err(|e| NodeOpsError::Admin {
            node: node.to_owned(),
            command: format!("REPLICAOF {host} {port}"),
            detail: e.to_string(),
        })
    }

    /// The replica with the highest replication offset (then the first by
    /// name), among those that answer.
    async fn most_advanced_replica(&self, old: &str) -> Option<String> {
        let mut best: Option<(i64, String)> = None;
        for n in self.layout().nodes.iter().filter(|n| *n != old) {
            let Some(role) = self.role(n).await else { continue };
            let offset = role.get(4).and_then(Value::as_i64).unwrap_or(-1);
            if best.as_ref().is_none_or(|(o, _)| offset > *o) {
                best = Some((offset, n.clone()));
            }
        }
        best.map(|(_, n)| n)
    }
}

/// Why a node is not ready, given its answer to ROLE; `None` when it is.
fn not_ready(node: &str, is_primary: bool, role: Result<Value, String>) -> Option<String> {
    let role = match role {
        Ok(role) => role,
        Err(e) => return Some(format!("{node} does not answer ROLE: {e}")),
    };
    let kind = role.get(0).and_then(Value::as_str).unwrap_or("");
    if is_primary && kind != "master" {
        return Some(format!("{node} should be the primary but says {role}"));
    }
    // A replica's ROLE: ["slave", host, port, state, offset].
    if !is_primary && (kind != "slave" || role.get(3).and_then(Value::as_str) != Some("connected")) {
        return Some(format!("{node} is not a connected replica yet: {role}"));
    }
    None
}

/// A node's ROLE in faultline-server's terms, for `status.jsonl`.
fn as_server_status(role: &Value) -> Value {
    match role.get(0).and_then(Value::as_str) {
        Some("master") => json!({"role": "leader", "commit_lsn": role.get(1), "applied_lsn": role.get(1)}),
        Some("slave") => json!({"role": "follower", "applied_lsn": role.get(4)}),
        other => json!({"role": other}),
    }
}

impl NodeOps for RedisDb {
    forward_process_ops!();

    fn leader(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async move { Some(self.primary()) })
    }

    fn promote(&self, old: &str) -> BoxFuture<'_, Result<Value, NodeOpsError>> {
        let old = old.to_owned();
        Box::pin(async move {
            let new = self.most_advanced_replica(&old).await.ok_or(NodeOpsError::NoReplica)?;
            self.replicaof(&new, None).await?;
            *self.primary.lock().expect("primary") = new.clone();
            let mut repointed = Vec::new();
            for n in self.layout().nodes.iter().filter(|n| **n != old && **n != new) {
                match self.replicaof(n, Some(&new)).await {
                    Ok(()) => repointed.push(n.clone()),
                    Err(e) => tracing::warn!(node = %n, error = %e, "not re-pointed"),
                }
            }
            Ok(json!({"old": old, "new": new, "repointed": repointed}))
        })
    }

    fn before_failover(&self, old: &str) -> BoxFuture<'_, Result<Value, NodeOpsError>> {
        let old = old.to_owned();
        Box::pin(async move {
            if !self.opts.failover_wait {
                return Ok(Value::Null);
            }
            let replicas = (self.layout().nodes.len() - 1).to_string();
            let wait = ["WAIT", &replicas, &FAILOVER_WAIT_MS.to_string()];
            let acked = admin(self.layout().listen[&old], &wait, FAILOVER_WAIT_MS + ADMIN_TIMEOUT_MS)
                .await
                .map_err(|e| NodeOpsError::Admin {
                    node: old.clone(),
                    command: wait.join(" "),
                    detail: e.to_string(),
                })?;
            Ok(json!({"wait": {"replicas": replicas, "acknowledged": acked}}))
        })
    }

    fn rejoin(&self, node: &str) -> BoxFuture<'_, Result<Value, NodeOpsError>> {
        let node = node.to_owned();
        Box::pin(async move {
            let primary = self.primary();
            if node == primary {
                return Ok(json!({"node": node, "primary": primary}));
            }
            self.replicaof(&node, Some(&primary)).await?;
            Ok(json!({"node": node, "primary": primary}))
        })
    }
}

impl Db for RedisDb {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn client(&self, spec: ClientSpec) -> Box<dyn faultline_workloads::Client> {
        let mut cfg = RedisClientConfig::new(spec.routes, self.primary(), spec.home);
        cfg.reads = self.opts.reads;
        cfg.wait_replicas = self.opts.wait_replicas;
        cfg.seed = spec.seed;
        cfg.timeout_ms = spec.timeout_ms;
        Box::new(RedisClient::new(cfg).expect("the harness gives every client a route to every node"))
    }

    fn statuses(&self) -> BoxFuture<'_, BTreeMap<String, Option<Value>>> {
        Box::pin(async move {
            self.roles()
                .await
                .into_iter()
                .map(|(n, r)| (n, r.map(|r| as_server_status(&r))))
                .collect()
        })
    }

    fn daemons(&self) -> &Daemons {
        &self.daemons
    }

    fn daemon_spec(&self, node: &str) -> DaemonSpec {
        let dir = self.layout().dir(node);
        let listen = self.layout().listen[node];
        let mut args: Vec<String> = [
            "--port",
            &listen.port().to_string(),
            "--bind",
            &listen.ip().to_string(),
            "--dir",
            &dir.join("data").display().to_string(),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            "",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let primary = self.primary();
        if primary != node {
            let to = self.layout().dial(node, &primary);
            args.extend(["--replicaof".to_owned(), to.ip().to_string(), to.port().to_string()]);
        }
        DaemonSpec {
            program: self.bin.clone(),
            args,
            env: Vec::new(),
            log_file: dir.join("node.log"),
        }
    }

    fn ready_once(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.check_ready())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_names_each_problem_with_the_probe_error() {
        let master = json!(["master", 0, []]);
        let replica = |state: &str| json!(["slave", "127.0.0.1", 7000, state, 0]);
        assert_eq!(not_ready("n1", true, Ok(master.clone())), None);
        assert_eq!(not_ready("n2", false, Ok(replica("connected"))), None);
        let silent = not_ready("n1", true, Err("no reply within 1000 ms".into())).unwrap();
        assert_eq!(silent, "n1 does not answer ROLE: no reply within 1000 ms");
        let syncing = not_ready("n2", false, Ok(replica("sync"))).unwrap();
        assert!(syncing.contains("not a connected replica yet"), "{syncing}");
        let demoted = not_ready("n1", true, Ok(replica("connected"))).unwrap();
        assert!(demoted.contains("should be the primary"), "{demoted}");
        assert!(not_ready("n2", false, Ok(master)).is_some());
    }
}
