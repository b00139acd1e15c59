//! The `Db` boundary and its implementation for faultline-server.
//!
//! A `Db` knows how to start, stop, kill, pause and resume the system under
//! test on each node, when the cluster is ready, who leads, and how a
//! client talks to it. It does it through the `Control` of its [`Layout`]
//! (local processes, namespaces, or SSH), so databases and backends combine
//! freely. It also serves the nemesis as its `NodeOps`, which is how kill
//! and pause faults reach the processes. etcd and Redis live in
//! [`super::etcd`] and [`super::redis`].
//!
//! [`ServerDb`] runs one `faultline-server` process per node with its data
//! directory and log in the node's folder (`data/`, `node.log`, appended to
//! across restarts), listening on the address the layout gives and
//! reaching each peer through the address it dials (a proxy under the
//! proxy mesh). Dropping it stops every node.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use faultline_nemesis::runner::BoxFuture;
use faultline_nemesis::{Control, DaemonSpec, NodeOps, NodeOpsError};
use faultline_workloads::server_client::status;
use serde_json::Value;
use tokio::time::Instant;

pub use super::procs::{last_line, make_dir, ProcessSet};

/// Why the cluster could not be set up or driven.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A binary is not where we looked.
    #[error("cannot find the {name} binary (looked at {looked}); {}", install_hint(name))]
    NoBinary {
        /// The program.
        name: String,
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
    /// A setup command on a node (initdb, a base backup) failed.
    #[error("node {node}: `{command}` failed: {detail}")]
    Command {
        /// The node.
        node: String,
        /// The command line.
        command: String,
        /// What it wrote on stderr (its end, when long).
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

/// What a client needs to reach the cluster.
#[derive(Clone, Debug)]
pub struct ClientSpec {
    /// The address to use for each node (a proxy, under the proxy mesh).
    pub routes: BTreeMap<String, SocketAddr>,
    /// The node the client is homed on.
    pub home: String,
    /// Where its reads go (faultline-server; other databases have their own
    /// setting).
    pub routing: faultline_workloads::ReadRouting,
    /// Seeds its random choices.
    pub seed: u64,
    /// How long an operation may take before it is info.
    pub timeout_ms: u64,
}

fn install_hint(name: &str) -> &'static str {
    match name {
        "faultline-server" => "build it with `cargo build --release` or pass --server-bin",
        "faultline-diskfs" => "build it with `cargo build --release` (it sits next to faultline)",
        "etcd" => "install Debian's etcd-server or pass --etcd-bin",
        "redis-server" => "install Debian's redis-server or pass --redis-bin",
        "postgres" => "install Debian's postgresql-15 or pass --pg-bin-dir",
        _ => "install it or put it on $PATH",
    }
}

/// How to start, stop and fault the system under test.
pub trait Db: NodeOps {
    /// The database's name (`faultline`, `etcd`, `redis`).
    fn name(&self) -> &'static str;
    /// A client of this database, one operation in flight at a time.
    fn client(&self, spec: ClientSpec) -> Box<dyn faultline_workloads::Client>;
    /// Every node's status as faultline-server reports it (`role`,
    /// `epoch`, `commit_lsn`, `applied_lsn`), `None` where a node did not
    /// answer; sampled into `status.jsonl`. Empty where the database
    /// reports nothing comparable.
    fn statuses(&self) -> BoxFuture<'_, BTreeMap<String, Option<Value>>> {
        Box::pin(async { BTreeMap::new() })
    }
    /// The nodes' layout and processes, which the provided methods (and
    /// [`forward_process_ops`]) drive.
    fn daemons(&self) -> &Daemons;
    /// How `node`'s process is started: program, flags, environment, log.
    fn daemon_spec(&self, node: &str) -> DaemonSpec;
    /// The folder [`Db::start_all`] makes before starting `node`.
    fn data_dir(&self, node: &str) -> PathBuf {
        self.daemons().layout.dir(node).join("data")
    }
    /// One readiness probe: `Err` says what is still missing.
    fn ready_once(&self) -> BoxFuture<'_, Result<(), String>>;
    /// Node names, in order.
    fn nodes(&self) -> Vec<String> {
        self.daemons().layout.nodes.clone()
    }
    /// The address clients use to reach `node` directly (not via a proxy).
    fn client_addr(&self, node: &str) -> Option<SocketAddr> {
        self.daemons().layout.listen.get(node).copied()
    }
    /// Starts every node that is not running.
    fn start_all(&self) -> Result<(), DbError> {
        let Daemons { layout, procs } = self.daemons();
        for n in &layout.nodes {
            make_dir(layout.control.as_ref(), n, &self.data_dir(n))?;
            procs.start(n, &self.daemon_spec(n))?;
        }
        Ok(())
    }
    /// Waits, at most `timeout`, until every node answers and the cluster can
    /// serve (a leader, where the system has one).
    fn wait_ready(&self, timeout: Duration) -> BoxFuture<'_, Result<(), DbError>> {
        Box::pin(wait_until_ready(&self.daemons().procs, timeout, move || {
            self.ready_once()
        }))
    }
    /// Stops every node (resuming paused ones first) and waits until each is gone.
    fn stop_all(&self) -> Result<(), DbError> {
        self.daemons().procs.stop_all()
    }
    /// Process ids of the running nodes.
    fn pids(&self) -> BTreeMap<String, u32> {
        self.daemons().procs.pids()
    }
    /// A command, run on `node`, that asks the database there for its
    /// clock: it prints the machine's true time, the database's time and
    /// the true time again, in milliseconds since the epoch. A clock fault
    /// is then recorded only once the database reads the clock set. `None`
    /// where the database cannot be asked.
    fn clock_probe(&self, _node: &str) -> Option<faultline_nemesis::CommandSpec> {
        None
    }
}

/// What every database's nodes share: where they are laid out and the
/// processes running on them. Each [`Db`] embeds one and hands it out
/// through [`Db::daemons`], so starting, stopping and faulting processes
/// is written once for all databases.
pub struct Daemons {
    /// Where the nodes listen and what runs them.
    pub layout: Layout,
    /// The running processes.
    pub procs: ProcessSet,
}

impl Daemons {
    /// The processes of a cluster laid out as `layout`, none started yet.
    pub fn new(layout: Layout) -> Daemons {
        Daemons {
            procs: ProcessSet::new(layout.control.clone(), layout.env.clone(), layout.held.clone()),
            layout,
        }
    }

    /// Starts `node` as `spec` says, refusing a node the layout does not
    /// have: the nemesis's start, which names nodes itself.
    pub fn start(&self, node: &str, spec: impl FnOnce() -> DaemonSpec) -> Result<u32, NodeOpsError> {
        if !self.layout.listen.contains_key(node) {
            return Err(NodeOpsError::UnknownNode { node: node.to_owned() });
        }
        self.procs.start(node, &spec()).map_err(|e| start_error(node, e))
    }
}

/// The [`NodeOps`] methods every [`Db`] answers alike, from its
/// [`Daemons`]: kill, start, pause, resume and running. Expanded inside an
/// `impl NodeOps for ...` block, which then adds what is its own
/// (`leader`, and Redis's failover steps). A macro because `NodeOps` is the
/// nemesis's trait: a blanket implementation for every `Db` is not ours to
/// write.
macro_rules! forward_process_ops {
    () => {
        fn kill(&self, node: &str) -> Result<u32, faultline_nemesis::NodeOpsError> {
            $crate::run::db::Db::daemons(self).procs.kill(node)
        }

        fn start(&self, node: &str) -> Result<u32, faultline_nemesis::NodeOpsError> {
            let spec = || $crate::run::db::Db::daemon_spec(self, node);
            $crate::run::db::Db::daemons(self).start(node, spec)
        }

        fn pause(&self, node: &str) -> Result<u32, faultline_nemesis::NodeOpsError> {
            $crate::run::db::Db::daemons(self).procs.pause(node)
        }

        fn resume(&self, node: &str) -> Result<u32, faultline_nemesis::NodeOpsError> {
            $crate::run::db::Db::daemons(self).procs.resume(node)
        }

        fn running(&self, node: &str) -> bool {
            $crate::run::db::Db::daemons(self).procs.is_running(node)
        }
    };
}
pub(crate) use forward_process_ops;

/// Where the nodes of a cluster listen, how each reaches the others, and
/// what runs them: the part of a cluster that every database shares and
/// the backend (proxy mesh, namespaces) decides.
#[derive(Clone)]
pub struct Layout {
    /// Node names, in order.
    pub nodes: Vec<String>,
    /// Each node's main address: clients and (for most databases) peers.
    pub listen: BTreeMap<String, SocketAddr>,
    /// A second address of each node's own (etcd's peer port).
    pub aux: BTreeMap<String, SocketAddr>,
    /// `(from, to)`: the address `from` dials to reach `to`'s main address
    /// (a proxy under the proxy mesh, so the link can be cut).
    pub dial: BTreeMap<(String, String), SocketAddr>,
    /// Each node's folder (its `data/` and `node.log`).
    pub dirs: BTreeMap<String, PathBuf>,
    /// Runs the processes.
    pub control: Arc<dyn Control>,
    /// Extra environment per node (libfaketime for the clock nemesis).
    pub env: BTreeMap<String, Vec<(String, String)>>,
    /// Ports the OS picked for the nodes, held until each node starts.
    pub held: HeldPorts,
}

impl Layout {
    /// The folder of `node`.
    pub fn dir(&self, node: &str) -> &Path {
        &self.dirs[node]
    }

    /// What `from` dials to reach `to`.
    pub fn dial(&self, from: &str, to: &str) -> SocketAddr {
        self.dial[&(from.to_owned(), to.to_owned())]
    }
}

/// A cluster of faultline-server processes.
pub struct ServerDb {
    bin: PathBuf,
    settings: String,
    daemons: Daemons,
}

/// How long one status query may take.
const STATUS_TIMEOUT_MS: u64 = 500;
/// Poll period of readiness waits.
pub const READY_POLL_MS: u64 = 50;

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

/// The ports [`reserve_ports`] picked, by node, each held (listening,
/// never accepting) until its node first starts. A node that starts
/// seconds after the run began, as a PostgreSQL standby does after its
/// base backup, would otherwise find its port taken as the ephemeral port
/// of some connection on this busy machine.
#[derive(Clone, Default)]
pub struct HeldPorts(Arc<std::sync::Mutex<BTreeMap<String, Vec<std::net::TcpListener>>>>);

impl HeldPorts {
    /// Holds `ports` for their nodes.
    pub fn new(ports: BTreeMap<String, Vec<std::net::TcpListener>>) -> HeldPorts {
        HeldPorts(Arc::new(std::sync::Mutex::new(ports)))
    }

    /// Lets `node`'s ports go, just before it binds them.
    pub fn release(&self, node: &str) {
        self.0.lock().expect("held ports").remove(node);
    }
}

/// Finds the faultline-server binary: the given path, `$FAULTLINE_SERVER_BIN`,
/// next to the running executable (or its parent folder, for test binaries
/// in `deps/`), then `$PATH`.
pub fn find_server_bin(given: Option<&Path>) -> Result<PathBuf, DbError> {
    find_bin("faultline-server", given, "FAULTLINE_SERVER_BIN")
}

/// The nodes' log filter: `FAULTLINE_NODE_LOG` (as in the server's tests),
/// else `info`. Not the harness's own `RUST_LOG`, which the nodes would
/// otherwise inherit: `RUST_LOG=faultline_nemesis=info` asks to see faults
/// on the terminal, and must not leave every node's log empty.
pub fn node_log_filter() -> String {
    std::env::var("FAULTLINE_NODE_LOG").unwrap_or_else(|_| "info".to_owned())
}

/// Finds a program: the given path, then `$env_var`, then next to the
/// running executable (or its parent folder), then `$PATH`.
pub fn find_bin(name: &str, given: Option<&Path>, env_var: &str) -> Result<PathBuf, DbError> {
    let mut tried = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = given {
        candidates.push(p.to_owned());
    }
    if let Some(p) = std::env::var_os(env_var) {
        candidates.push(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            candidates.push(dir.join(name));
            if let Some(up) = dir.parent() {
                candidates.push(up.join(name));
            }
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join(name)));
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
        name: name.to_owned(),
        looked: tried.join(", "),
    })
}

impl ServerDb {
    /// A cluster laid out as `layout`, not started yet.
    pub fn new(bin: PathBuf, settings: String, layout: Layout) -> ServerDb {
        ServerDb {
            bin,
            settings,
            daemons: Daemons::new(layout),
        }
    }

    /// Every node's status, `None` where it did not answer.
    pub async fn statuses_now(&self) -> BTreeMap<String, Option<Value>> {
        let mut asks = tokio::task::JoinSet::new();
        for (name, addr) in &self.daemons.layout.listen {
            let (name, addr) = (name.clone(), *addr);
            asks.spawn(async move {
                let s = status(&name, addr, Duration::from_millis(STATUS_TIMEOUT_MS)).await;
                (name, s.ok())
            });
        }
        let mut out: BTreeMap<String, Option<Value>> =
            self.daemons.layout.nodes.iter().map(|n| (n.clone(), None)).collect();
        while let Some(r) = asks.join_next().await {
            if let Ok((name, s)) = r {
                out.insert(name, s);
            }
        }
        out
    }

    async fn check_ready(&self) -> Result<(), String> {
        let statuses = self.statuses_now().await;
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
}

/// Waits, at most `timeout`, until `ready` says yes, failing early when a
/// node of `procs` has exited on its own. Every `Db`'s `wait_ready`.
pub async fn wait_until_ready<'a, F, Fut>(procs: &'a ProcessSet, timeout: Duration, ready: F) -> Result<(), DbError>
where
    F: Fn() -> Fut + 'a,
    Fut: std::future::Future<Output = Result<(), String>> + 'a,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some((node, log)) = procs.exited() {
            let last_words = last_line(&log);
            return Err(DbError::Exited { node, log, last_words });
        }
        let detail = match ready().await {
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
}

/// A node that would not start, as the nemesis takes it.
pub fn start_error(node: &str, e: DbError) -> NodeOpsError {
    NodeOpsError::Start {
        node: node.to_owned(),
        source: Box::new(e),
    }
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
    forward_process_ops!();

    fn leader(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async move { leader_of(&self.statuses_now().await) })
    }
}

impl Db for ServerDb {
    fn name(&self) -> &'static str {
        "faultline"
    }

    fn client(&self, spec: ClientSpec) -> Box<dyn faultline_workloads::Client> {
        Box::new(faultline_workloads::ServerClient::new(
            faultline_workloads::ServerClientConfig {
                routes: spec.routes,
                home: spec.home,
                read_routing: spec.routing,
                seed: spec.seed,
                timeout_ms: spec.timeout_ms,
                connect_timeout_ms: 1_000,
            },
        ))
    }

    fn statuses(&self) -> BoxFuture<'_, BTreeMap<String, Option<Value>>> {
        Box::pin(self.statuses_now())
    }

    fn daemons(&self) -> &Daemons {
        &self.daemons
    }

    fn daemon_spec(&self, node: &str) -> DaemonSpec {
        let layout = &self.daemons.layout;
        let dir = layout.dir(node);
        let mut args = vec![
            "--node".to_owned(),
            node.to_owned(),
            "--listen".to_owned(),
            layout.listen[node].to_string(),
            "--data-dir".to_owned(),
            dir.join("data").display().to_string(),
            "--settings".to_owned(),
            self.settings.clone(),
        ];
        for peer in layout.nodes.iter().filter(|p| *p != node) {
            args.push("--peer".to_owned());
            args.push(format!("{peer}={}", layout.dial(node, peer)));
        }
        DaemonSpec {
            program: self.bin.clone(),
            args,
            env: vec![("RUST_LOG".to_owned(), node_log_filter())],
            log_file: dir.join("node.log"),
        }
    }

    fn ready_once(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.check_ready())
    }
}
