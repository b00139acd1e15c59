//! The `Db` boundary and its implementation for faultline-server.
//!
//! A `Db` knows how to start, stop, kill, pause and resume the system under
//! test on each node, when the cluster is ready, and who leads. It does it
//! through `Control` (local processes today; namespaces and SSH later), so
//! other databases plug in as other `Db`s. It also serves the nemesis as its
//! `NodeOps`, which is how kill and pause faults reach the processes.
//!
//! [`ServerDb`] runs one `faultline-server` process per node with its data
//! directory and log in the run's store folder (`nodes/<node>/data`,
//! `nodes/<node>/node.log`, appended to across restarts), listening on
//! 127.0.0.1 at a port picked by the OS, and reaching each peer through the
//! address the `Net` gives (a proxy). Dropping it stops every node.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use faultline_nemesis::runner::BoxFuture;
use faultline_nemesis::{Control, Daemon, DaemonSpec, NodeOps, Signal};
use faultline_workloads::server_client::status;
use serde_json::Value;
use tokio::time::Instant;

/// Why the cluster could not be set up or driven.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The server binary is not where we looked.
    #[error("cannot find the faultline-server binary (looked at {looked}); build it with `cargo build -p faultline-server` or pass --server-bin")]
    NoBinary {
        /// The paths tried.
        looked: String,
    },
    /// A port could not be reserved.
    #[error("reserving a port: {0}")]
    Port(#[source] std::io::Error),
    /// A node process could not be controlled.
    #[error("node {node}: {source}")]
    Control {
        /// The node.
        node: String,
        /// What failed.
        #[source]
        source: faultline_nemesis::ControlError,
    },
    /// The cluster did not become ready in time.
    #[error("the cluster was not ready after {timeout_ms} ms: {detail}")]
    NotReady {
        /// The limit.
        timeout_ms: u64,
        /// What was still missing.
        detail: String,
    },
    /// A node exited on its own.
    #[error("node {node} exited: {last_words} (see {})", log.display())]
    Exited {
        /// The node.
        node: String,
        /// Its log.
        log: PathBuf,
        /// The last line of its log.
        last_words: String,
    },
}

/// How to start, stop and fault the system under test.
pub trait Db: NodeOps {
    /// Node names, in order.
    fn nodes(&self) -> Vec<String>;
    /// The address clients use to reach `node` directly (not via a proxy).
    fn client_addr(&self, node: &str) -> Option<SocketAddr>;
    /// Starts every node that is not running.
    fn start_all(&self) -> Result<(), DbError>;
    /// Waits, at most `timeout`, until every node answers and the cluster can
    /// serve (a leader, where the system has one).
    fn wait_ready(&self, timeout: Duration) -> BoxFuture<'_, Result<(), DbError>>;
    /// Stops every node (resuming paused ones first) and waits until each is gone.
    fn stop_all(&self) -> Result<(), DbError>;
    /// Process ids of the running nodes.
    fn pids(&self) -> BTreeMap<String, u32>;
}

/// One node of a faultline-server cluster.
#[derive(Clone, Debug)]
pub struct ServerNode {
    /// Its id (n1, n2, ...).
    pub name: String,
    /// Where it listens.
    pub listen: SocketAddr,
    /// Its folder in the store: `data/` and `node.log`.
    pub dir: PathBuf,
    /// Peer id to the address it dials (a proxy under the proxy mesh).
    pub peers: BTreeMap<String, SocketAddr>,
}

/// A cluster of faultline-server processes.
pub struct ServerDb {
    bin: PathBuf,
    settings: String,
    nodes: Vec<ServerNode>,
    control: Arc<dyn Control>,
    daemons: Mutex<BTreeMap<String, Box<dyn Daemon>>>,
    paused: Mutex<std::collections::BTreeSet<String>>,
}

/// How long one status query may take.
const STATUS_TIMEOUT_MS: u64 = 500;
/// Poll period of readiness waits.
const READY_POLL_MS: u64 = 50;

/// Reserves `n` distinct ports on 127.0.0.1 by binding port 0. Hold the
/// listeners while the proxies bind (so the OS cannot hand them a node's
/// port) and drop them just before the nodes start; another process could
/// take a port in that instant, the node would then fail to start and the
/// run would say so.
pub fn reserve_ports(n: usize) -> Result<Vec<std::net::TcpListener>, DbError> {
    (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .map_err(DbError::Port)
}

/// Finds the faultline-server binary: the given path, `$FAULTLINE_SERVER_BIN`,
/// next to the running executable (or its parent folder, for test binaries
/// in `deps/`), then `$PATH`.
pub fn find_server_bin(given: Option<&Path>) -> Result<PathBuf, DbError> {
    let mut tried = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = given {
        candidates.push(p.to_owned());
    }
    if let Some(p) = std::env::var_os("FAULTLINE_SERVER_BIN") {
        candidates.push(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            candidates.push(dir.join("faultline-server"));
            if let Some(up) = dir.parent() {
                candidates.push(up.join("faultline-server"));
            }
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("faultline-server")));
    }
    for c in candidates {
        if c.is_file() {
            return Ok(c);
        }
        tried.push(c.display().to_string());
        if given.is_some() && tried.len() == 1 {
            break;
        }
    }
    tried.truncate(4);
    Err(DbError::NoBinary {
        looked: tried.join(", "),
    })
}

impl ServerDb {
    /// A cluster of `nodes`, not started yet.
    pub fn new(bin: PathBuf, settings: String, nodes: Vec<ServerNode>, control: Arc<dyn Control>) -> ServerDb {
        ServerDb {
            bin,
            settings,
            nodes,
            control,
            daemons: Mutex::new(BTreeMap::new()),
            paused: Mutex::new(Default::default()),
        }
    }

    fn node(&self, name: &str) -> Result<&ServerNode, String> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| format!("no node named {name}"))
    }

    fn spec(&self, n: &ServerNode) -> DaemonSpec {
        let mut args = vec![
            "--node".to_owned(),
            n.name.clone(),
            "--listen".to_owned(),
            n.listen.to_string(),
            "--data-dir".to_owned(),
            n.dir.join("data").display().to_string(),
            "--settings".to_owned(),
            self.settings.clone(),
        ];
        for (peer, addr) in &n.peers {
            args.push("--peer".to_owned());
            args.push(format!("{peer}={addr}"));
        }
        DaemonSpec {
            program: self.bin.clone(),
            args,
            env: Vec::new(),
            log_file: n.dir.join("node.log"),
        }
    }

    fn start_node(&self, name: &str) -> Result<u32, DbError> {
        let n = self.node(name).expect("start_node is called with known names");
        let mut daemons = self.daemons.lock().expect("daemons");
        if let Some(d) = daemons.get_mut(name) {
            if d.is_running() {
                return Ok(d.pid());
            }
        }
        let d = self
            .control
            .start(name, &self.spec(n))
            .map_err(|source| DbError::Control {
                node: name.to_owned(),
                source,
            })?;
        let pid = d.pid();
        daemons.insert(name.to_owned(), d);
        Ok(pid)
    }

    fn signal(&self, node: &str, sig: Signal) -> Result<u32, String> {
        let mut daemons = self.daemons.lock().expect("daemons");
        let d = daemons
            .get_mut(node)
            .filter(|d| d.pid() > 0)
            .ok_or_else(|| format!("{node} is not running"))?;
        if !d.is_running() {
            return Err(format!("{node} is not running"));
        }
        d.signal(sig).map_err(|e| e.to_string())?;
        Ok(d.pid())
    }

    /// Every node's status, `None` where it did not answer.
    pub async fn statuses(&self) -> BTreeMap<String, Option<Value>> {
        let mut asks = tokio::task::JoinSet::new();
        for n in &self.nodes {
            let (name, addr) = (n.name.clone(), n.listen);
            asks.spawn(async move {
                let s = status(&name, addr, Duration::from_millis(STATUS_TIMEOUT_MS)).await;
                (name, s.ok())
            });
        }
        let mut out: BTreeMap<String, Option<Value>> = self.nodes.iter().map(|n| (n.name.clone(), None)).collect();
        while let Some(r) = asks.join_next().await {
            if let Ok((name, s)) = r {
                out.insert(name, s);
            }
        }
        out
    }

    async fn ready_once(&self) -> Result<(), String> {
        let statuses = self.statuses().await;
        let silent: Vec<&String> = statuses.iter().filter(|(_, s)| s.is_none()).map(|(n, _)| n).collect();
        if !silent.is_empty() {
            return Err(format!("no status from {silent:?}"));
        }
        let single_leader = statuses
            .values()
            .flatten()
            .any(|s| s.get("mode").and_then(Value::as_str) == Some("single_leader"));
        if single_leader && leader_of(&statuses).is_none() {
            return Err("no node is leader".into());
        }
        Ok(())
    }

    fn log_of(&self, node: &str) -> PathBuf {
        self.node(node).map(|n| n.dir.join("node.log")).unwrap_or_default()
    }

    fn exited_node(&self) -> Option<String> {
        let mut daemons = self.daemons.lock().expect("daemons");
        daemons
            .iter_mut()
            .find_map(|(n, d)| (!d.is_running()).then(|| n.clone()))
    }
}

/// The last non-empty line of a log (at most its last 4 KiB are read).
fn last_line(path: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return "no log".into();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(4096)));
    let mut tail = String::new();
    let _ = f.read_to_string(&mut tail);
    tail.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("empty log")
        .to_owned()
}

/// The node that says it leads (the highest epoch wins when several do).
pub fn leader_of(statuses: &BTreeMap<String, Option<Value>>) -> Option<String> {
    statuses
        .iter()
        .filter_map(|(n, s)| s.as_ref().map(|s| (n, s)))
        .filter(|(_, s)| s.get("role").and_then(Value::as_str) == Some("leader"))
        .max_by_key(|(_, s)| s.get("epoch").and_then(Value::as_u64).unwrap_or(0))
        .map(|(n, _)| n.clone())
}

impl NodeOps for ServerDb {
    fn kill(&self, node: &str) -> Result<u32, String> {
        let pid = self.signal(node, Signal::Cont)?;
        self.signal(node, Signal::Kill)?;
        self.paused.lock().expect("paused").remove(node);
        // Reap it, bounded, so a test that looks for the pid sees it gone.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut daemons = self.daemons.lock().expect("daemons");
        if let Some(d) = daemons.get_mut(node) {
            while d.is_running() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        Ok(pid)
    }

    fn start(&self, node: &str) -> Result<u32, String> {
        self.node(node)?;
        self.start_node(node).map_err(|e| e.to_string())
    }

    fn pause(&self, node: &str) -> Result<u32, String> {
        let pid = self.signal(node, Signal::Stop)?;
        self.paused.lock().expect("paused").insert(node.to_owned());
        Ok(pid)
    }

    fn resume(&self, node: &str) -> Result<u32, String> {
        let pid = self.signal(node, Signal::Cont)?;
        self.paused.lock().expect("paused").remove(node);
        Ok(pid)
    }

    fn leader(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async move { leader_of(&self.statuses().await) })
    }
}

impl Db for ServerDb {
    fn nodes(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    fn client_addr(&self, node: &str) -> Option<SocketAddr> {
        self.node(node).ok().map(|n| n.listen)
    }

    fn start_all(&self) -> Result<(), DbError> {
        for n in &self.nodes {
            std::fs::create_dir_all(n.dir.join("data")).map_err(|source| DbError::Control {
                node: n.name.clone(),
                source: faultline_nemesis::ControlError::Io {
                    path: n.dir.clone(),
                    source,
                },
            })?;
            self.start_node(&n.name)?;
        }
        Ok(())
    }

    fn wait_ready(&self, timeout: Duration) -> BoxFuture<'_, Result<(), DbError>> {
        Box::pin(async move {
            let deadline = Instant::now() + timeout;
            loop {
                if let Some(node) = self.exited_node() {
                    let log = self.log_of(&node);
                    let last_words = last_line(&log);
                    return Err(DbError::Exited { node, log, last_words });
                }
                let detail = match self.ready_once().await {
                    Ok(()) => return Ok(()),
                    Err(d) => d,
                };
                if Instant::now() >= deadline {
                    return Err(DbError::NotReady {
                        timeout_ms: timeout.as_millis() as u64,
                        detail,
                    });
                }
                tokio::time::sleep(Duration::from_millis(READY_POLL_MS)).await;
            }
        })
    }

    fn stop_all(&self) -> Result<(), DbError> {
        let mut daemons = std::mem::take(&mut *self.daemons.lock().expect("daemons"));
        self.paused.lock().expect("paused").clear();
        let mut first_err = None;
        for (node, d) in daemons.iter_mut() {
            if let Err(source) = d.stop() {
                first_err.get_or_insert(DbError::Control {
                    node: node.clone(),
                    source,
                });
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn pids(&self) -> BTreeMap<String, u32> {
        let mut daemons = self.daemons.lock().expect("daemons");
        daemons
            .iter_mut()
            .filter_map(|(n, d)| d.is_running().then(|| (n.clone(), d.pid())))
            .collect()
    }
}

impl Drop for ServerDb {
    fn drop(&mut self) {
        if let Err(e) = self.stop_all() {
            tracing::error!(error = %e, "stopping the cluster");
        }
    }
}
