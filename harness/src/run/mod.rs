//! `faultline run`: start a cluster on this machine, drive a workload while
//! a nemesis injects faults, record the history, check it, report.
//!
//! The loop is written against the boundaries of ARCHITECTURE.md so the
//! next steps plug in without rewriting it: the cluster is a [`db::Db`]
//! (faultline-server here), processes go through `Control`, links through
//! `Net` (the userspace proxy mesh here), clients are `Client`s, and the
//! verdicts come from the checkers crate. One seed drives the workload
//! generators, the fault schedule and the proxies' loss draws, and is
//! written to `config.json` with the command that reruns the test.
//!
//! Clean-up is not optional. Every fault is healed when the schedule ends,
//! when a stop is requested (Ctrl-C), and by the nemesis runner's `Drop` on
//! a panic; every node process is stopped by the `Db`'s `Drop` (SIGCONT,
//! then SIGKILL, then reaped) and dies with the harness in any case
//! (`PR_SET_PDEATHSIG`); every proxy closes when the mesh is dropped. Every
//! wait is bounded.

pub mod campaign;
pub mod checks;
pub mod db;
pub mod drive;
pub mod report;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use faultline_checkers::{Validity, Verdict};
use faultline_histories::Header;
use faultline_nemesis::{FaultKind, LocalControl, NemesisRunner, Net, Plan, ProxyMesh};
use faultline_workloads::{Client, ReadRouting, ServerClient, ServerClientConfig, WorkloadConfig};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use db::{Db, DbError, ServerDb, ServerNode};
use drive::{Stats, WorkerCtx};
use store::{HistoryLog, Store};

/// Most nodes in a local cluster.
pub const MAX_NODES: usize = 9;
/// Most concurrent clients.
pub const MAX_CONCURRENCY: usize = 1024;
/// Longest test.
pub const MAX_TIME_LIMIT_S: f64 = 24.0 * 3600.0;
/// How long a cluster may take to become ready.
pub const READY_TIMEOUT_MS: u64 = 30_000;

/// Everything that defines a test, and nothing about where it runs:
/// `config.json` holds it, so a run can be repeated exactly.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunConfig {
    /// The test's name (the store folder).
    pub test: String,
    /// Cluster size.
    pub nodes: usize,
    /// The server's settings (`ack=none,reads=follower,...`).
    pub server: String,
    /// The workload.
    pub workload: WorkloadConfig,
    /// Concurrent clients.
    pub concurrency: usize,
    /// Total operations per second; 0 is as fast as the clients go.
    pub rate: f64,
    /// Seconds of workload.
    pub time_limit_s: f64,
    /// Fault kinds (`--nemesis` words); empty is no faults.
    pub nemesis: Vec<String>,
    /// Seconds between nemesis steps.
    pub nemesis_interval_s: f64,
    /// The seed of every random choice.
    pub seed: u64,
    /// How long an operation may take before it is info.
    pub op_timeout_ms: u64,
    /// Quiet period after healing, before the final reads.
    pub quiet_ms: u64,
    /// Checkers to run; empty is the workload's defaults.
    pub checkers: Vec<String>,
    /// Time budget of each linearizability search, in seconds.
    pub check_time_limit_s: f64,
    /// Route clients through proxies too (they can then be cut as well).
    pub client_proxies: bool,
    /// Where clients send reads: `home`, `any`, or `auto` (home under
    /// `reads=sticky`, any replica otherwise).
    pub read_routing: String,
}

impl RunConfig {
    /// The default test: 3 nodes of the safe setting, the register workload,
    /// partitions and kills every 5 s, 30 s.
    pub fn new(seed: u64) -> RunConfig {
        RunConfig {
            test: "register".into(),
            nodes: 3,
            server: String::new(),
            workload: WorkloadConfig::new(faultline_workloads::WorkloadKind::Register),
            concurrency: 10,
            rate: 500.0,
            time_limit_s: 30.0,
            nemesis: vec!["partition".into(), "kill".into()],
            nemesis_interval_s: 5.0,
            seed,
            op_timeout_ms: 4_000,
            quiet_ms: 2_000,
            checkers: Vec::new(),
            check_time_limit_s: 60.0,
            client_proxies: true,
            read_routing: "auto".into(),
        }
    }

    /// The read routing in force.
    pub fn routing(&self) -> Result<ReadRouting, RunError> {
        if self.read_routing != "auto" {
            return ReadRouting::parse(&self.read_routing).map_err(|e| RunError::Config(e.to_string()));
        }
        let sticky = self
            .server
            .split(',')
            .any(|kv| kv.trim().replace(' ', "") == "reads=sticky");
        Ok(if sticky { ReadRouting::Home } else { ReadRouting::Any })
    }

    /// Checks every field; returns the fault kinds.
    pub fn validate(&self) -> Result<Vec<FaultKind>, RunError> {
        let bad = |m: String| Err(RunError::Config(m));
        if self.nodes == 0 || self.nodes > MAX_NODES {
            return bad(format!("--nodes must be within 1..={MAX_NODES}"));
        }
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            return bad(format!("--concurrency must be within 1..={MAX_CONCURRENCY}"));
        }
        if !(self.rate >= 0.0 && self.rate.is_finite()) {
            return bad("--rate must be a non-negative number".into());
        }
        if !(self.time_limit_s > 0.0 && self.time_limit_s <= MAX_TIME_LIMIT_S) {
            return bad(format!("--time-limit must be within (0, {MAX_TIME_LIMIT_S}] seconds"));
        }
        if !(self.nemesis_interval_s > 0.0 && self.nemesis_interval_s.is_finite()) {
            return bad("--nemesis-interval must be positive".into());
        }
        if !(self.check_time_limit_s > 0.0 && self.check_time_limit_s.is_finite()) {
            return bad("--check-time-limit must be positive".into());
        }
        if self.op_timeout_ms == 0 || self.op_timeout_ms > 600_000 {
            return bad("--op-timeout-ms must be within 1..=600000".into());
        }
        if self.test.is_empty() || self.test.contains(['/', '\\']) || self.test.starts_with('.') {
            return bad(format!("test name {:?} must be a plain folder name", self.test));
        }
        self.workload.validate().map_err(|e| RunError::Config(e.to_string()))?;
        self.routing()?;
        checks::validate_names(&self.checkers).map_err(RunError::Config)?;
        faultline_server_settings_look_sane(&self.server)?;
        FaultKind::parse_list(&self.nemesis.join(",")).map_err(|e| RunError::Config(e.to_string()))
    }

    /// Node names: n1, n2, ...
    pub fn node_names(&self) -> Vec<String> {
        (1..=self.nodes).map(|i| format!("n{i}")).collect()
    }

    /// The checkers that will run.
    pub fn checker_names(&self) -> Vec<String> {
        if self.checkers.is_empty() {
            checks::default_checkers(self.workload.kind)
        } else {
            self.checkers.clone()
        }
    }

    /// The command that reruns this test.
    pub fn rerun_command(&self) -> String {
        let w = &self.workload;
        let mix: Vec<String> = w
            .mix
            .weights
            .iter()
            .map(|(op, n)| format!("{}={n}", serde_json::to_value(op).unwrap().as_str().unwrap_or("?")))
            .collect();
        let dist = match w.key_dist {
            faultline_workloads::KeyDist::Uniform => "uniform".to_owned(),
            faultline_workloads::KeyDist::Zipf(s) => format!("zipf:{s}"),
        };
        let mut cmd = format!(
            "faultline run --test {} --nodes {} --server '{}' --workload {} --keys {} --key-dist {} --mix {} --ops-per-key {} \
             --concurrency {} --rate {} --time-limit {} --nemesis {} --nemesis-interval {} --op-timeout-ms {} --quiet-ms {} --seed {}",
            self.test,
            self.nodes,
            self.server,
            w.kind.name(),
            w.key_count,
            dist,
            mix.join(","),
            w.ops_per_key,
            self.concurrency,
            self.rate,
            self.time_limit_s,
            if self.nemesis.is_empty() { "none".to_owned() } else { self.nemesis.join(",") },
            self.nemesis_interval_s,
            self.op_timeout_ms,
            self.quiet_ms,
            self.seed
        );
        if w.kind == faultline_workloads::WorkloadKind::MultiKey {
            cmd += &format!(" --multi-read-keys {}", w.multi_read_keys);
        }
        if !self.checkers.is_empty() {
            cmd += &format!(" --checkers {}", self.checkers.join(","));
        }
        if !self.client_proxies {
            cmd += " --direct-clients";
        }
        if self.read_routing != "auto" {
            cmd += &format!(" --read-routing {}", self.read_routing);
        }
        cmd
    }
}

/// A cheap check of the settings string's shape (`k=v,k=v`); the server
/// validates the meaning and a bad value stops the run at start.
fn faultline_server_settings_look_sane(s: &str) -> Result<(), RunError> {
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        if !item.contains('=') || item.contains(char::is_whitespace) {
            return Err(RunError::Config(format!("--server: expected key=value, got {item:?}")));
        }
    }
    Ok(())
}

/// Where and how a run executes; not part of the test's definition.
#[derive(Clone, Debug)]
pub struct RunEnv {
    /// The store's root folder.
    pub store_root: PathBuf,
    /// The faultline-server binary.
    pub server_bin: PathBuf,
    /// Print the progress line.
    pub progress: bool,
}

/// Why a run could not run (exit code 3).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A setting out of range.
    #[error("bad configuration: {0}")]
    Config(String),
    /// The store could not be written.
    #[error("store: {0}")]
    Store(#[from] std::io::Error),
    /// The cluster could not be started.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The proxies could not be started.
    #[error(transparent)]
    Net(#[from] faultline_nemesis::NetError),
    /// The history could not be read back.
    #[error("reading the history back: {0}")]
    History(#[from] faultline_histories::HistoryError),
    /// A checker could not run.
    #[error("checking: {0}")]
    Check(String),
}

/// What a run found.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// The run's store folder.
    pub store: PathBuf,
    /// Verdicts by checker.
    pub verdicts: BTreeMap<String, Verdict>,
    /// All verdicts combined.
    pub valid: Validity,
    /// `results.json`.
    pub results: Value,
    /// Stopped early by a stop request.
    pub interrupted: bool,
}

impl RunOutcome {
    /// ARCHITECTURE.md's exit code: 0 valid, 1 anomaly, 2 unknown.
    pub fn exit_code(&self) -> u8 {
        match self.valid {
            Validity::Valid => 0,
            Validity::Invalid => 1,
            Validity::Unknown => 2,
        }
    }
}

/// A running cluster: nodes, proxies, and how clients reach each node.
pub struct Cluster {
    /// The proxies (`Net`).
    pub mesh: Arc<ProxyMesh>,
    /// The nodes (`Db`).
    pub db: Arc<ServerDb>,
    /// Node names.
    pub nodes: Vec<String>,
    client_proxies: bool,
}

impl Cluster {
    /// Starts `cfg.nodes` faultline-server nodes with their folders under
    /// `store`, every peer link through the proxy mesh, and waits until the
    /// cluster is ready. Clients `c0..c{clients}` and `final` get proxies.
    pub async fn start(cfg: &RunConfig, env: &RunEnv, store: &Store, clients: usize) -> Result<Cluster, RunError> {
        let nodes = cfg.node_names();
        let reserved = db::reserve_ports(nodes.len())?;
        let addrs: Vec<(String, SocketAddr)> = nodes
            .iter()
            .zip(&reserved)
            .map(|(n, l)| l.local_addr().map(|a| (n.clone(), a)))
            .collect::<Result<_, _>>()
            .map_err(DbError::Port)?;
        let client_names: Vec<String> = (0..clients)
            .map(|i| format!("c{i}"))
            .chain(["final".to_owned()])
            .collect();
        let mesh = Arc::new(ProxyMesh::start(&addrs, &client_names, cfg.seed).await?);
        let server_nodes = addrs
            .iter()
            .map(|(n, a)| ServerNode {
                name: n.clone(),
                listen: *a,
                dir: store.node_dir(n),
                peers: nodes
                    .iter()
                    .filter(|p| *p != n)
                    .map(|p| (p.clone(), mesh.addr(n, p).expect("every node pair has a proxy")))
                    .collect(),
            })
            .collect();
        let db = Arc::new(ServerDb::new(
            env.server_bin.clone(),
            cfg.server.clone(),
            server_nodes,
            Arc::new(LocalControl),
        ));
        drop(reserved);
        db.start_all()?;
        db.wait_ready(Duration::from_millis(READY_TIMEOUT_MS)).await?;
        Ok(Cluster {
            mesh,
            db,
            nodes,
            client_proxies: cfg.client_proxies,
        })
    }

    /// Routes for client endpoint `me`: through its proxies, or direct.
    pub fn routes(&self, me: &str) -> BTreeMap<String, SocketAddr> {
        self.nodes
            .iter()
            .map(|n| {
                let addr = if self.client_proxies {
                    self.mesh.addr(me, n)
                } else {
                    self.db.client_addr(n)
                };
                (n.clone(), addr.expect("every client has a route to every node"))
            })
            .collect()
    }

    /// A client for endpoint `me`, homed on `home`, reading as `routing`
    /// says (replica draws seeded by `seed`).
    pub fn client(&self, me: &str, home: &str, routing: ReadRouting, seed: u64, timeout_ms: u64) -> Box<dyn Client> {
        Box::new(ServerClient::new(ServerClientConfig {
            routes: self.routes(me),
            home: home.to_owned(),
            read_routing: routing,
            seed,
            timeout_ms,
            connect_timeout_ms: 1_000,
        }))
    }

    /// Stops the nodes and the proxies.
    pub fn stop(&self) -> Result<(), RunError> {
        let r = self.db.stop_all();
        self.mesh.shutdown();
        Ok(r?)
    }
}

/// Runs one test. `stop` turning true (Ctrl-C) ends the workload at once;
/// faults are healed and the cluster stopped in every case.
pub async fn run_test(cfg: &RunConfig, env: &RunEnv, stop: watch::Receiver<bool>) -> Result<RunOutcome, RunError> {
    let kinds = cfg.validate()?;
    let nodes = cfg.node_names();
    let duration = Duration::from_secs_f64(cfg.time_limit_s);
    let plan = Plan::draw(
        &kinds,
        &nodes,
        (cfg.nemesis_interval_s * 1000.0) as u64,
        duration.as_millis() as u64,
        cfg.seed,
    )
    .map_err(|e| RunError::Config(e.to_string()))?;
    let store = Store::create(&env.store_root, &cfg.test)?;
    let mut config_json = serde_json::to_value(cfg).expect("config serializes");
    config_json["rerun"] = json!(cfg.rerun_command());
    store.write_json("config.json", &config_json)?;

    let cluster = Cluster::start(cfg, env, &store, cfg.concurrency).await?;
    let (log, stats, runner) = start_recording(cfg, &cluster, &store)?;
    let (done_tx, done_rx) = watch::channel(false);
    let flusher = tokio::spawn(flush_periodically(log.clone(), done_rx.clone()));
    let sampler = tokio::spawn(sample_status(
        cluster.db.clone(),
        log.clone(),
        store.dir.join("status.jsonl"),
        done_rx.clone(),
    ));
    let progress = env.progress.then(|| {
        tokio::spawn(drive::progress(
            stats.clone(),
            runner.active_faults(),
            duration,
            done_rx.clone(),
        ))
    });

    let start = Instant::now();
    let next_process = Arc::new(AtomicU64::new(cfg.concurrency as u64));
    let keys = run_phase(
        cfg,
        &cluster,
        &runner,
        &plan,
        &log,
        &stats,
        &next_process,
        start,
        stop.clone(),
    )
    .await;
    let heal_error = runner.heal_all().err();
    let interrupted = *stop.borrow();
    let mut warnings = Vec::new();
    if let Some(e) = &heal_error {
        warnings.push(format!("healing: {e}"));
    }
    if !interrupted {
        final_phase(
            cfg,
            &cluster,
            &log,
            &stats,
            &next_process,
            &keys,
            stop.clone(),
            &mut warnings,
        )
        .await;
    }
    let _ = done_tx.send(true);
    let _ = flusher.await;
    let _ = sampler.await;
    if let Some(p) = progress {
        let _ = p.await;
    }
    log.flush();
    drop(runner);
    cluster.stop()?;
    if let Some(e) = log.error() {
        return Err(RunError::Store(std::io::Error::other(format!(
            "writing the history: {e}"
        ))));
    }
    let elapsed = start.elapsed();
    finish(cfg, &store, &stats, elapsed, interrupted, warnings)
}

/// What a workload-only phase did (for the overhead benchmark).
#[derive(Clone, Copy, Debug)]
pub struct PhaseStats {
    /// Operations completed (ok, fail or info).
    pub completed: u64,
    /// Of which ok.
    pub ok: u64,
    /// Wall time of the phase.
    pub elapsed: Duration,
}

impl PhaseStats {
    /// Completed operations per second.
    pub fn ops_per_s(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Opens the history (its header written) and the nemesis runner that
/// records faults into it: how every phase that records starts, so a run
/// and the overhead benchmark record the same way.
fn start_recording(
    cfg: &RunConfig,
    cluster: &Cluster,
    store: &Store,
) -> Result<(Arc<HistoryLog>, Arc<Stats>, NemesisRunner), RunError> {
    let header = Header {
        faultline_history: 1,
        test: Some(cfg.test.clone()),
        seed: Some(cfg.seed),
        started_at: Some(store::utc_rfc3339(SystemTime::now())),
        nodes: cluster.nodes.clone(),
        extra: Default::default(),
    };
    let log = Arc::new(HistoryLog::create(&store.history_path(), &header)?);
    let runner = NemesisRunner::new(
        cluster.mesh.clone() as Arc<dyn Net>,
        cluster.db.clone(),
        log.clone(),
        cluster.nodes.clone(),
        cfg.seed,
    );
    Ok((log, Arc::new(Stats::default()), runner))
}

/// Drives `cfg`'s workload on a running cluster for `cfg.time_limit_s`,
/// without faults, recording the history into `store` exactly as a run
/// does (the same workers, generators, clients and history writer). The
/// overhead benchmark compares it with a bare client loop.
pub async fn drive_workload(cfg: &RunConfig, cluster: &Cluster, store: &Store) -> Result<PhaseStats, RunError> {
    cfg.validate()?;
    let (log, stats, runner) = start_recording(cfg, cluster, store)?;
    let (done_tx, done_rx) = watch::channel(false);
    let flusher = tokio::spawn(flush_periodically(log.clone(), done_rx));
    let (_stop_tx, stop) = watch::channel(false);
    let next_process = Arc::new(AtomicU64::new(cfg.concurrency as u64));
    let start = Instant::now();
    run_phase(
        cfg,
        cluster,
        &runner,
        &Plan::default(),
        &log,
        &stats,
        &next_process,
        start,
        stop,
    )
    .await;
    let elapsed = start.elapsed();
    let _ = done_tx.send(true);
    let _ = flusher.await;
    if let Some(e) = log.error() {
        return Err(RunError::Store(std::io::Error::other(format!(
            "writing the history: {e}"
        ))));
    }
    Ok(PhaseStats {
        completed: stats.completed(),
        ok: stats.ok.load(Ordering::Relaxed),
        elapsed,
    })
}

/// The workload and the nemesis, side by side; returns the keys touched.
#[allow(clippy::too_many_arguments)]
async fn run_phase(
    cfg: &RunConfig,
    cluster: &Cluster,
    runner: &NemesisRunner,
    plan: &Plan,
    log: &Arc<HistoryLog>,
    stats: &Arc<Stats>,
    next_process: &Arc<AtomicU64>,
    start: Instant,
    stop: watch::Receiver<bool>,
) -> BTreeSet<String> {
    let duration = Duration::from_secs_f64(cfg.time_limit_s);
    let period = (cfg.rate > 0.0).then(|| Duration::from_secs_f64(cfg.concurrency as f64 / cfg.rate));
    let ctx = WorkerCtx {
        log: log.clone(),
        stats: stats.clone(),
        next_process: next_process.clone(),
        deadline: start + duration,
        stop: stop.clone(),
        period,
    };
    let routing = cfg.routing().unwrap_or(ReadRouting::Home);
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..cfg.concurrency {
        let gen = cfg.workload.generator(cfg.seed, w);
        let home = &cluster.nodes[w % cluster.nodes.len()];
        let seed = cfg.seed ^ (w as u64 + 1).wrapping_mul(0xa076_1d64_78bd_642f);
        let client = cluster.client(&format!("c{w}"), home, routing, seed, cfg.op_timeout_ms);
        workers.spawn(drive::worker(gen, client, w as u64, ctx.clone()));
    }
    let nemesis = async {
        if let Err(e) = runner.run(plan, start, stop.clone()).await {
            tracing::warn!(error = %e, "the nemesis reported an error");
        }
    };
    let collect = async {
        let mut keys = BTreeSet::new();
        while let Some(r) = workers.join_next().await {
            match r {
                Ok(k) => keys.extend(k),
                Err(e) => tracing::error!(error = %e, "a worker died"),
            }
        }
        keys
    };
    let ((), keys) = tokio::join!(nemesis, collect);
    keys
}

/// After healing: a quiet period, the cluster ready again, and the final
/// reads of every key on every node.
#[allow(clippy::too_many_arguments)]
async fn final_phase(
    cfg: &RunConfig,
    cluster: &Cluster,
    log: &Arc<HistoryLog>,
    stats: &Arc<Stats>,
    next_process: &Arc<AtomicU64>,
    keys: &BTreeSet<String>,
    mut stop: watch::Receiver<bool>,
    warnings: &mut Vec<String>,
) {
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(cfg.quiet_ms)) => {}
        _ = stop.wait_for(|s| *s) => return,
    }
    if let Err(e) = cluster.db.wait_ready(Duration::from_millis(READY_TIMEOUT_MS)).await {
        warnings.push(format!("before the final reads: {e}"));
    }
    let reads = cfg.workload.final_reads(keys);
    for node in &cluster.nodes {
        // Final reads ask each node itself.
        let client = cluster.client("final", node, ReadRouting::Home, cfg.seed, cfg.op_timeout_ms);
        drive::final_reads(log, stats, client, next_process, &reads, stop.clone()).await;
    }
}

/// How often every node's `status` is sampled while a test runs.
const STATUS_SAMPLE_MS: u64 = 500;
/// Samples written at most (a line a node and a sample), so a long run's
/// `status.jsonl` stays small.
const STATUS_LINES_MAX: u64 = 100_000;

/// Samples every node's `status` until `done` into `path`, one line a node
/// and a sample on the history's clock: `{"time","node","role","epoch",
/// "commit_lsn","applied_lsn","lag"}`, where `lag` is how many LSNs the
/// node has applied fewer than the highest commit any node reports. A node
/// that did not answer (killed, paused, cut off) gets only time and node.
/// The report draws role, epoch and lag over time from it.
async fn sample_status(db: Arc<ServerDb>, log: Arc<HistoryLog>, path: PathBuf, mut done: watch::Receiver<bool>) {
    let Ok(file) = std::fs::File::create(&path) else {
        tracing::warn!(path = %path.display(), "cannot write status samples");
        return;
    };
    let mut out = std::io::BufWriter::new(file);
    let mut written = 0u64;
    while written < STATUS_LINES_MAX {
        let statuses = db.statuses().await;
        let time = log.now_ns();
        for line in status_lines(time, &statuses) {
            let _ = writeln!(out, "{line}");
            written += 1;
        }
        let _ = out.flush();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(STATUS_SAMPLE_MS)) => {}
            _ = done.wait_for(|d| *d) => break,
        }
    }
}

/// One sample line per node; see [`sample_status`].
fn status_lines(time: u64, statuses: &BTreeMap<String, Option<Value>>) -> Vec<Value> {
    let lsn = |s: &Value, f: &str| s.get(f).and_then(Value::as_u64);
    let top_commit = statuses.values().flatten().filter_map(|s| lsn(s, "commit_lsn")).max();
    statuses
        .iter()
        .map(|(node, s)| match s {
            Some(s) => json!({
                "time": time,
                "node": node,
                "role": s.get("role"),
                "epoch": lsn(s, "epoch"),
                "commit_lsn": lsn(s, "commit_lsn"),
                "applied_lsn": lsn(s, "applied_lsn"),
                "lag": top_commit.zip(lsn(s, "applied_lsn")).map(|(t, a)| t.saturating_sub(a)),
            }),
            None => json!({"time": time, "node": node}),
        })
        .collect()
}

async fn flush_periodically(log: Arc<HistoryLog>, mut done: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => log.flush(),
            _ = done.wait_for(|d| *d) => break,
        }
    }
    log.flush();
}

/// Reads the history back, checks it, writes `results.json`.
fn finish(
    cfg: &RunConfig,
    store: &Store,
    stats: &Stats,
    elapsed: Duration,
    interrupted: bool,
    mut warnings: Vec<String>,
) -> Result<RunOutcome, RunError> {
    let history = faultline_histories::read_history_file(&store.history_path())?;
    warnings.extend(history.warnings.iter().cloned());
    let names = cfg.checker_names();
    let verdicts = checks::run_checkers(
        &history,
        cfg.workload.kind,
        &names,
        Duration::from_secs_f64(cfg.check_time_limit_s),
    )
    .map_err(RunError::Check)?;
    let valid = verdicts.values().fold(Validity::Valid, |acc, v| acc.and(v.valid));
    let completed = stats.completed();
    let faults: BTreeMap<String, usize> = history.nemesis.iter().fold(BTreeMap::new(), |mut m, e| {
        *m.entry(e.f.to_string()).or_default() += 1;
        m
    });
    let results = json!({
        "test": cfg.test,
        "seed": cfg.seed,
        "valid": valid,
        "interrupted": interrupted,
        "checkers": verdicts,
        "stats": {
            "invoked": stats.invoked.load(Ordering::Relaxed),
            "ok": stats.ok.load(Ordering::Relaxed),
            "fail": stats.fail.load(Ordering::Relaxed),
            "info": stats.info.load(Ordering::Relaxed),
            "elapsed_s": elapsed.as_secs_f64(),
            "ops_per_s": completed as f64 / elapsed.as_secs_f64().max(1e-9),
        },
        "nemesis": faults,
        "warnings": warnings,
        "store": store.dir,
        "rerun": cfg.rerun_command(),
    });
    store.write_json("results.json", &results)?;
    // report.html and junit.xml beside it; one that cannot be written is a
    // warning, not a failed run.
    if let Err(e) = faultline_report::write_run_reports(&store.dir, &history, &verdicts) {
        tracing::warn!(error = %e, "writing report.html and junit.xml");
    }
    Ok(RunOutcome {
        store: store.dir.clone(),
        verdicts,
        valid,
        results,
        interrupted,
    })
}
