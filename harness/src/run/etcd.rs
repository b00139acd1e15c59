//! etcd as a `Db`: a cluster of Debian's etcd 3.4 started by the harness,
//! one member per node, with its data in the run's store.
//!
//! Each member listens for clients on its main address and for peers on
//! its second one (`Layout::aux`). etcd names each member by one peer URL
//! that every other member dials, so the proxy mesh (a proxy per directed
//! link) cannot sit between members: partitions of etcd need a backend
//! where nodes have addresses of their own (`--net netns`, or SSH), and
//! the run refuses them otherwise. Clients still go through their proxies.
//!
//! A restarted member finds its data directory and rejoins with the flags
//! it started with (etcd ignores the `--initial-*` ones then). Readiness:
//! every member answers `/v3/maintenance/status` and one names a leader;
//! the leader is the member whose id is that leader id.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use faultline_nemesis::runner::BoxFuture;
use faultline_nemesis::{DaemonSpec, NodeOps, NodeOpsError};
use faultline_workloads::etcd_client::{admin_post, EtcdClient, EtcdClientConfig};
use serde_json::{json, Value};

use super::db::{make_dir, start_error, wait_until_ready, ClientSpec, Db, DbError, Layout, ProcessSet};

/// How long one status request may take.
const STATUS_TIMEOUT_MS: u64 = 1_000;

/// A cluster of etcd members.
pub struct EtcdDb {
    bin: PathBuf,
    layout: Layout,
    serializable_reads: bool,
    token: String,
    procs: ProcessSet,
}

impl EtcdDb {
    /// A cluster laid out as `layout`, not started yet. `token` names the
    /// cluster (the run), so members of two runs can never join each other.
    pub fn new(bin: PathBuf, layout: Layout, serializable_reads: bool, token: String) -> EtcdDb {
        EtcdDb {
            bin,
            procs: ProcessSet::new(layout.control.clone(), layout.env.clone()),
            layout,
            serializable_reads,
            token,
        }
    }

    fn peer_url(&self, node: &str) -> String {
        format!("http://{}", self.layout.aux[node])
    }

    fn spec(&self, node: &str) -> DaemonSpec {
        let dir = self.layout.dir(node);
        let client = format!("http://{}", self.layout.listen[node]);
        let cluster: Vec<String> = self
            .layout
            .nodes
            .iter()
            .map(|n| format!("{n}={}", self.peer_url(n)))
            .collect();
        let args = [
            ("--name", node.to_owned()),
            ("--data-dir", dir.join("data").display().to_string()),
            ("--listen-client-urls", client.clone()),
            ("--advertise-client-urls", client),
            ("--listen-peer-urls", self.peer_url(node)),
            ("--initial-advertise-peer-urls", self.peer_url(node)),
            ("--initial-cluster", cluster.join(",")),
            ("--initial-cluster-state", "new".to_owned()),
            ("--initial-cluster-token", self.token.clone()),
            ("--heartbeat-interval", "100".to_owned()),
            ("--election-timeout", "1000".to_owned()),
        ];
        DaemonSpec {
            program: self.bin.clone(),
            args: args.iter().flat_map(|(k, v)| [(*k).to_owned(), v.clone()]).collect(),
            env: Vec::new(),
            log_file: dir.join("node.log"),
        }
    }

    /// Every member's `/v3/maintenance/status`, `None` where it did not answer.
    async fn raw_statuses(&self) -> BTreeMap<String, Option<Value>> {
        let mut asks = tokio::task::JoinSet::new();
        for (name, addr) in &self.layout.listen {
            let (name, addr) = (name.clone(), *addr);
            asks.spawn(async move {
                let s = admin_post(addr, "/v3/maintenance/status", &json!({}), STATUS_TIMEOUT_MS).await;
                (name, s.ok())
            });
        }
        let mut out: BTreeMap<String, Option<Value>> = self.layout.nodes.iter().map(|n| (n.clone(), None)).collect();
        while let Some(r) = asks.join_next().await {
            if let Ok((name, s)) = r {
                out.insert(name, s);
            }
        }
        out
    }

    async fn ready_once(&self) -> Result<(), String> {
        let statuses = self.raw_statuses().await;
        let silent: Vec<&String> = statuses.iter().filter(|(_, s)| s.is_none()).map(|(n, _)| n).collect();
        if !silent.is_empty() {
            return Err(format!("no status from {silent:?}"));
        }
        if etcd_leader(&statuses).is_none() {
            return Err("no member is leader".into());
        }
        Ok(())
    }
}

/// The member whose id is the leader id the highest-term member reports.
fn etcd_leader(statuses: &BTreeMap<String, Option<Value>>) -> Option<String> {
    let term = |s: &Value| s.get("raftTerm").and_then(num);
    let (_, newest) = statuses
        .iter()
        .filter_map(|(n, s)| s.as_ref().map(|s| (n, s)))
        .max_by_key(|(_, s)| term(s).unwrap_or(0))?;
    let leader = newest.get("leader").and_then(num).filter(|l| *l != 0)?;
    statuses
        .iter()
        .find(|(_, s)| s.as_ref().and_then(member_id) == Some(leader))
        .map(|(n, _)| n.clone())
}

/// etcd's JSON gateway writes 64-bit numbers as strings.
fn num(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn member_id(s: &Value) -> Option<u64> {
    s.get("header").and_then(|h| h.get("member_id")).and_then(num)
}

/// A member's status in faultline-server's terms, for `status.jsonl`.
fn as_server_status(s: &Value, leader: Option<u64>) -> Value {
    let role = if member_id(s).is_some() && member_id(s) == leader {
        "leader"
    } else {
        "follower"
    };
    json!({
        "role": role,
        "epoch": s.get("raftTerm").and_then(num),
        "commit_lsn": s.get("raftIndex").and_then(num),
        "applied_lsn": s.get("raftAppliedIndex").and_then(num).or_else(|| s.get("raftIndex").and_then(num)),
    })
}

impl NodeOps for EtcdDb {
    fn kill(&self, node: &str) -> Result<u32, NodeOpsError> {
        self.procs.kill(node)
    }

    fn start(&self, node: &str) -> Result<u32, NodeOpsError> {
        if !self.layout.listen.contains_key(node) {
            return Err(NodeOpsError::UnknownNode { node: node.to_owned() });
        }
        self.procs
            .start(node, &self.spec(node))
            .map_err(|e| start_error(node, e))
    }

    fn pause(&self, node: &str) -> Result<u32, NodeOpsError> {
        self.procs.pause(node)
    }

    fn resume(&self, node: &str) -> Result<u32, NodeOpsError> {
        self.procs.resume(node)
    }

    fn running(&self, node: &str) -> bool {
        self.procs.is_running(node)
    }

    fn leader(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async move { etcd_leader(&self.raw_statuses().await) })
    }
}

impl Db for EtcdDb {
    fn name(&self) -> &'static str {
        "etcd"
    }

    fn client(&self, spec: ClientSpec) -> Box<dyn faultline_workloads::Client> {
        let mut cfg = EtcdClientConfig::new(spec.routes, spec.home);
        cfg.serializable_reads = self.serializable_reads;
        cfg.timeout_ms = spec.timeout_ms;
        Box::new(EtcdClient::new(cfg).expect("the harness gives every client a route to its home node"))
    }

    fn statuses(&self) -> BoxFuture<'_, BTreeMap<String, Option<Value>>> {
        Box::pin(async move {
            let raw = self.raw_statuses().await;
            let leader = etcd_leader(&raw).and_then(|n| raw[&n].as_ref().and_then(member_id));
            raw.into_iter()
                .map(|(n, s)| (n, s.map(|s| as_server_status(&s, leader))))
                .collect()
        })
    }

    fn nodes(&self) -> Vec<String> {
        self.layout.nodes.clone()
    }

    fn client_addr(&self, node: &str) -> Option<SocketAddr> {
        self.layout.listen.get(node).copied()
    }

    fn start_all(&self) -> Result<(), DbError> {
        for n in &self.layout.nodes {
            make_dir(self.layout.control.as_ref(), n, self.layout.dir(n))?;
            self.procs.start(n, &self.spec(n))?;
        }
        Ok(())
    }

    fn wait_ready(&self, timeout: Duration) -> BoxFuture<'_, Result<(), DbError>> {
        Box::pin(wait_until_ready(&self.procs, timeout, move || self.ready_once()))
    }

    fn stop_all(&self) -> Result<(), DbError> {
        self.procs.stop_all()
    }

    fn pids(&self) -> BTreeMap<String, u32> {
        self.procs.pids()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_is_the_member_named_by_the_newest_term() {
        let s = |id: &str, leader: &str, term: &str| {
            Some(json!({"header": {"member_id": id}, "leader": leader, "raftTerm": term, "raftIndex": "9"}))
        };
        let statuses: BTreeMap<String, Option<Value>> = [
            ("n1".to_owned(), s("11", "22", "3")),
            ("n2".to_owned(), s("22", "22", "3")),
            ("n3".to_owned(), s("33", "11", "2")),
        ]
        .into();
        assert_eq!(etcd_leader(&statuses).as_deref(), Some("n2"));
        let st = as_server_status(statuses["n2"].as_ref().unwrap(), Some(22));
        assert_eq!(st["role"], "leader");
        assert_eq!(st["epoch"], 3);
        assert_eq!(st["commit_lsn"], 9);
    }
}
