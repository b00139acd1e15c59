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
//! every member answers `Maintenance/Status` (gRPC, through the
//! `etcd-client` crate as the clients are) and one names a leader; the
//! leader is the member whose id is that leader id.

use std::collections::BTreeMap;
use std::path::PathBuf;

use faultline_nemesis::runner::BoxFuture;
use faultline_nemesis::{DaemonSpec, NodeOps};
use faultline_workloads::etcd_client::{member_status, EtcdClient, EtcdClientConfig, MemberStatus};
use serde_json::{json, Value};

use super::db::{forward_process_ops, ClientSpec, Daemons, Db, Layout};

/// How long one status request may take.
const STATUS_TIMEOUT_MS: u64 = 1_000;

/// A cluster of etcd members.
pub struct EtcdDb {
    bin: PathBuf,
    daemons: Daemons,
    serializable_reads: bool,
    token: String,
}

impl EtcdDb {
    /// A cluster laid out as `layout`, not started yet. `token` names the
    /// cluster (the run), so members of two runs can never join each other.
    pub fn new(bin: PathBuf, layout: Layout, serializable_reads: bool, token: String) -> EtcdDb {
        EtcdDb {
            bin,
            daemons: Daemons::new(layout),
            serializable_reads,
            token,
        }
    }

    fn layout(&self) -> &Layout {
        &self.daemons.layout
    }

    fn peer_url(&self, node: &str) -> String {
        format!("http://{}", self.layout().aux[node])
    }

    /// Every member's status, `None` where it did not answer.
    async fn raw_statuses(&self) -> BTreeMap<String, Option<MemberStatus>> {
        let mut asks = tokio::task::JoinSet::new();
        for (name, addr) in &self.layout().listen {
            let (name, addr) = (name.clone(), *addr);
            asks.spawn(async move {
                let s = member_status(addr, STATUS_TIMEOUT_MS).await;
                (name, s.ok())
            });
        }
        let mut out: BTreeMap<String, Option<MemberStatus>> =
            self.layout().nodes.iter().map(|n| (n.clone(), None)).collect();
        while let Some(r) = asks.join_next().await {
            if let Ok((name, s)) = r {
                out.insert(name, s);
            }
        }
        out
    }

    async fn check_ready(&self) -> Result<(), String> {
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
fn etcd_leader(statuses: &BTreeMap<String, Option<MemberStatus>>) -> Option<String> {
    let (_, newest) = statuses
        .iter()
        .filter_map(|(n, s)| s.as_ref().map(|s| (n, s)))
        .max_by_key(|(_, s)| s.raft_term)?;
    let leader = Some(newest.leader).filter(|l| *l != 0)?;
    statuses
        .iter()
        .find(|(_, s)| s.as_ref().map(|s| s.member_id) == Some(leader))
        .map(|(n, _)| n.clone())
}

/// A member's status in faultline-server's terms, for `status.jsonl`.
fn as_server_status(s: &MemberStatus, leader: Option<u64>) -> Value {
    let role = if Some(s.member_id) == leader {
        "leader"
    } else {
        "follower"
    };
    json!({
        "role": role,
        "epoch": s.raft_term,
        "commit_lsn": s.raft_index,
        "applied_lsn": s.raft_applied_index,
    })
}

impl NodeOps for EtcdDb {
    forward_process_ops!();

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
            let leader = etcd_leader(&raw).and_then(|n| raw[&n].as_ref().map(|s| s.member_id));
            raw.into_iter()
                .map(|(n, s)| (n, s.map(|s| as_server_status(&s, leader))))
                .collect()
        })
    }

    fn daemons(&self) -> &Daemons {
        &self.daemons
    }

    fn daemon_spec(&self, node: &str) -> DaemonSpec {
        let dir = self.layout().dir(node);
        let client = format!("http://{}", self.layout().listen[node]);
        let cluster: Vec<String> = self
            .layout()
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

    /// etcd makes its own `data/`; the harness makes the node's folder.
    fn data_dir(&self, node: &str) -> PathBuf {
        self.layout().dir(node).to_owned()
    }

    fn ready_once(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.check_ready())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_is_the_member_named_by_the_newest_term() {
        let s = |member_id: u64, leader: u64, raft_term: u64| {
            Some(MemberStatus {
                member_id,
                leader,
                raft_term,
                raft_index: 9,
                raft_applied_index: 8,
            })
        };
        let mut statuses: BTreeMap<String, Option<MemberStatus>> = [
            ("n1".to_owned(), s(11, 22, 3)),
            ("n2".to_owned(), s(22, 22, 3)),
            ("n3".to_owned(), s(33, 11, 2)),
        ]
        .into();
        assert_eq!(etcd_leader(&statuses).as_deref(), Some("n2"));
        let st = as_server_status(statuses["n2"].as_ref().unwrap(), Some(22));
        assert_eq!(st["role"], "leader");
        assert_eq!(st["epoch"], 3);
        assert_eq!(st["commit_lsn"], 9);
        assert_eq!(st["applied_lsn"], 8);
        assert_eq!(
            as_server_status(statuses["n1"].as_ref().unwrap(), Some(22))["role"],
            "follower"
        );
        statuses.insert("n2".to_owned(), s(22, 0, 4));
        assert_eq!(etcd_leader(&statuses), None, "the newest term knows no leader yet");
    }
}
