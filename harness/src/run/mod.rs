//! `faultline run`: start a cluster, drive a workload while a nemesis
//! injects faults, record the history, check it, report.
//!
//! The loop is written against the boundaries of ARCHITECTURE.md, so the
//! backends and databases plug in without changing it: the cluster
//! ([`cluster::Cluster`]) is a [`db::Db`] (faultline-server, etcd or Redis)
//! placed by a backend (the proxy mesh on loopback, network namespaces, or
//! machines over SSH), processes go through `Control`, links through `Net`,
//! disks and clocks through the nemesis's `Surroundings`, clients are
//! `Client`s, and the verdicts come from the checkers crate. One seed
//! drives the workload generators, the fault schedule and the proxies' loss
//! draws, and is written to `config.json` with the command that reruns the
//! test.
//!
//! Clean-up is not optional. Every fault is healed when the schedule ends,
//! when a stop is requested (SIGINT, SIGTERM, SIGHUP: [`interrupt`]), and
//! by the nemesis runner's `Drop` on a panic; every node process is
//! stopped by its `Db`'s `Drop` (SIGCONT, then SIGKILL, then reaped) and
//! dies with the harness process in any case (`PR_SET_PDEATHSIG`, from a
//! spawner thread that lives as long as the process); proxies close, disks
//! unmount and namespaces go when the cluster is stopped or dropped, and
//! what a killed harness leaves (remote daemons included, [`remote`]) is
//! registered for `faultline clean`. Every wait is bounded.

pub mod campaign;
pub mod checks;
pub mod cluster;
pub mod db;
pub mod drive;
pub mod etcd;
pub mod faults;
pub mod interrupt;
pub mod procs;
pub mod redis;
pub mod remote;
pub mod report;
pub mod runlog;
pub mod store;
pub mod surroundings;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use faultline_checkers::{Validity, Verdict};
use faultline_histories::Header;
use faultline_nemesis::{FaultKind, NemesisRunner, Plan};
use faultline_workloads::{ReadRouting, WorkloadConfig};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

pub use cluster::{Cluster, NETNS_PORTS};

use db::{Db, DbError};
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
    /// Checkers to run; empty is every checker that applies to the history
    /// (`auto` in the list stands for them too).
    pub checkers: Vec<String>,
    /// Time budget of each linearizability search, in seconds.
    pub check_time_limit_s: f64,
    /// Route clients through proxies too (they can then be cut as well).
    pub client_proxies: bool,
    /// Where clients send reads: `home`, `any`, or `auto` (home under
    /// `reads=sticky`, any replica otherwise).
    pub read_routing: String,
    /// How nodes are joined: `proxy` (the userspace proxy mesh on
    /// loopback, no root) or `netns` (a network namespace per node on a
    /// bridge, partitions as nftables drops; root).
    #[serde(default = "default_net")]
    pub net: String,
    /// The system under test: `faultline` (the project's server, tuned by
    /// `server`), `etcd` or `redis`.
    #[serde(default = "default_db")]
    pub db: String,
    /// etcd: serializable (possibly stale, member-local) reads instead of
    /// linearizable ones.
    #[serde(default)]
    pub etcd_serializable_reads: bool,
    /// Redis: where reads go, `primary` or `replica` (the client's home).
    #[serde(default = "default_redis_reads")]
    pub redis_reads: String,
    /// Redis: `WAIT n` replicas after every write (0: no WAIT).
    #[serde(default)]
    pub redis_wait: u32,
    /// Redis: the failover nemesis waits for every replica (`WAIT`) before
    /// it cuts the primary off and promotes one.
    #[serde(default)]
    pub redis_failover_wait: bool,
    /// Put every node's data directory on the disk-fault filesystem even
    /// when no disk fault is asked for (disk nemeses turn it on anyway).
    #[serde(default)]
    pub diskfs: bool,
    /// Machines to run the nodes on, over SSH (`host` or `host:port`, one
    /// per node, n1 first); empty runs them on this machine.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// How to log in to `hosts`.
    #[serde(default)]
    pub ssh: SshSettings,
}

/// How to log in to remote machines. Paths only: no key material.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SshSettings {
    /// The user on every machine.
    pub user: String,
    /// The port, unless a host names its own.
    pub port: u16,
    /// A private key file; none uses the ssh-agent.
    pub key: Option<PathBuf>,
    /// The known_hosts file host keys are checked against (default
    /// `~/.ssh/known_hosts`).
    pub known_hosts: Option<PathBuf>,
    /// Trust hosts that known_hosts does not list.
    pub accept_unknown_hosts: bool,
    /// The folder on each machine that holds the runs' binaries and data.
    pub remote_dir: PathBuf,
}

impl Default for SshSettings {
    fn default() -> SshSettings {
        SshSettings {
            user: "root".into(),
            port: 22,
            key: None,
            known_hosts: None,
            accept_unknown_hosts: false,
            remote_dir: PathBuf::from("/tmp/faultline"),
        }
    }
}

fn default_net() -> String {
    "proxy".into()
}

fn default_db() -> String {
    "faultline".into()
}

fn default_redis_reads() -> String {
    "primary".into()
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
            net: default_net(),
            db: default_db(),
            etcd_serializable_reads: false,
            redis_reads: default_redis_reads(),
            redis_wait: 0,
            redis_failover_wait: false,
            diskfs: false,
            hosts: Vec::new(),
            ssh: SshSettings::default(),
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
        let net = NetKind::parse(&self.net)?;
        let db = DbKind::parse(&self.db)?;
        faultline_server_settings_look_sane(&self.server)?;
        if db != DbKind::Faultline && !self.server.is_empty() {
            return bad(format!(
                "--server sets faultline-server's settings; it means nothing to {}",
                self.db
            ));
        }
        faultline_workloads::RedisReads::parse(&self.redis_reads).map_err(|e| RunError::Config(e.to_string()))?;
        let kinds = FaultKind::parse_list(&self.nemesis.join(",")).map_err(|e| RunError::Config(e.to_string()))?;
        check_faults_fit(&kinds, db, net)?;
        Plan::check_fits(&kinds, self.interval_ms(), self.duration_ms())
            .map_err(|e| RunError::Config(e.to_string()))?;
        if (net == NetKind::Ssh) == self.hosts.is_empty() {
            return bad("--net ssh goes with a list of hosts (--nodes h1,h2,h3), and a list of hosts with it".into());
        }
        if net == NetKind::Ssh && self.hosts.len() != self.nodes {
            return bad(format!("{} hosts for {} nodes", self.hosts.len(), self.nodes));
        }
        for h in &self.hosts {
            parse_host(h, self.ssh.port).map_err(RunError::Config)?;
        }
        Ok(kinds)
    }

    /// The nemesis interval, in milliseconds.
    pub fn interval_ms(&self) -> u64 {
        (self.nemesis_interval_s * 1000.0) as u64
    }

    /// The workload's length, in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        (self.time_limit_s * 1000.0) as u64
    }

    /// Whether the run mounts the disk-fault filesystem under every node.
    pub fn uses_diskfs(&self) -> bool {
        self.diskfs || self.fault_kinds().iter().any(|k| k.needs_disk())
    }

    /// Whether the nodes run under libfaketime.
    pub fn uses_faketime(&self) -> bool {
        self.fault_kinds().iter().any(|k| k.needs_clock())
    }

    fn fault_kinds(&self) -> Vec<FaultKind> {
        FaultKind::parse_list(&self.nemesis.join(",")).unwrap_or_default()
    }

    /// Node names: n1, n2, ...
    pub fn node_names(&self) -> Vec<String> {
        (1..=self.nodes).map(|i| format!("n{i}")).collect()
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
        if self.net != "proxy" {
            cmd += &format!(" --net {}", self.net);
        }
        if self.db != "faultline" {
            cmd += &format!(" --db {}", self.db);
        }
        if self.etcd_serializable_reads {
            cmd += " --etcd-serializable-reads";
        }
        if self.db == "redis" {
            cmd += &format!(" --redis-reads {}", self.redis_reads);
            if self.redis_wait > 0 {
                cmd += &format!(" --redis-wait {}", self.redis_wait);
            }
            if self.redis_failover_wait {
                cmd += " --redis-failover-wait";
            }
        }
        if self.diskfs {
            cmd += " --diskfs";
        }
        if !self.hosts.is_empty() {
            let ssh = &self.ssh;
            cmd = cmd.replacen(
                &format!("--nodes {}", self.nodes),
                &format!("--nodes {}", self.hosts.join(",")),
                1,
            );
            cmd = cmd.replacen(" --net ssh", "", 1);
            cmd += &format!(" --ssh-user {} --ssh-port {}", ssh.user, ssh.port);
            if let Some(k) = &ssh.key {
                cmd += &format!(" --ssh-key {}", k.display());
            }
            if let Some(k) = &ssh.known_hosts {
                cmd += &format!(" --known-hosts {}", k.display());
            }
            if ssh.accept_unknown_hosts {
                cmd += " --accept-unknown-hosts";
            }
            if ssh.remote_dir != SshSettings::default().remote_dir {
                cmd += &format!(" --remote-dir {}", ssh.remote_dir.display());
            }
        }
        cmd
    }
}

/// How the nodes of a local cluster are joined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetKind {
    /// Loopback, every link through a proxy of the harness.
    Proxy,
    /// A network namespace per node, joined by a bridge.
    Netns,
    /// Remote machines over SSH, cut with nftables on each.
    Ssh,
}

impl NetKind {
    /// Parses `proxy`, `netns` or `ssh`.
    pub fn parse(s: &str) -> Result<NetKind, RunError> {
        match s {
            "proxy" => Ok(NetKind::Proxy),
            "netns" => Ok(NetKind::Netns),
            "ssh" => Ok(NetKind::Ssh),
            o => Err(RunError::Config(format!("--net {o:?}: expected proxy, netns or ssh"))),
        }
    }
}

/// `host` or `host:port` (`[v6]:port`), with `port` when none is given.
pub fn parse_host(s: &str, port: u16) -> Result<(String, u16), String> {
    let bad = || format!("host {s:?}: expected host or host:port");
    if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once(']').ok_or_else(bad)?;
        let p = match p.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if p.is_empty() => port,
            None => return Err(bad()),
        };
        return Ok((h.to_owned(), p));
    }
    match s.split_once(':') {
        Some((h, p)) if !h.is_empty() => Ok((h.to_owned(), p.parse().map_err(|_| bad())?)),
        None if !s.is_empty() && !s.contains(char::is_whitespace) => Ok((s.to_owned(), port)),
        _ => Err(bad()),
    }
}

/// The system under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbKind {
    /// faultline-server, the project's own.
    Faultline,
    /// etcd 3.4.
    Etcd,
    /// Redis 7, a primary and replicas.
    Redis,
}

impl DbKind {
    /// Parses `faultline`, `etcd` or `redis`.
    pub fn parse(s: &str) -> Result<DbKind, RunError> {
        match s {
            "faultline" | "faultline-server" => Ok(DbKind::Faultline),
            "etcd" => Ok(DbKind::Etcd),
            "redis" => Ok(DbKind::Redis),
            o => Err(RunError::Config(format!(
                "--db {o:?}: expected faultline, etcd or redis"
            ))),
        }
    }
}

/// Refuses faults the database or backend cannot really inject, so a fault
/// never silently does nothing.
fn check_faults_fit(kinds: &[FaultKind], db: DbKind, net: NetKind) -> Result<(), RunError> {
    let bad = |m: &str| Err(RunError::Config(m.to_owned()));
    let cuts = kinds.iter().any(|k| k.cuts_links());
    if db == DbKind::Etcd && net == NetKind::Proxy && cuts {
        return bad(
            "etcd members dial one advertised peer address each, which a proxy per link cannot sit behind: \
             partitions of etcd need --net netns",
        );
    }
    if kinds.contains(&FaultKind::Failover) && db != DbKind::Redis {
        return bad("the failover nemesis promotes a Redis replica; other databases elect their own leaders");
    }
    if db == DbKind::Etcd && kinds.iter().any(|k| k.needs_clock()) {
        return bad("libfaketime cannot move a Go program's clock (etcd reads time without libc)");
    }
    Ok(())
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
    /// Programs other than faultline-server, where the user named them;
    /// otherwise they are looked for when a run needs them.
    pub bins: Bins,
}

/// Where the other programs a run may need are.
#[derive(Clone, Debug, Default)]
pub struct Bins {
    /// etcd.
    pub etcd: Option<PathBuf>,
    /// redis-server.
    pub redis: Option<PathBuf>,
    /// faultline-diskfs, the disk-fault filesystem.
    pub diskfs: Option<PathBuf>,
    /// libfaketime's multithreaded library.
    pub faketime: Option<PathBuf>,
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
    /// By what and when, when it was.
    pub interruption: Option<interrupt::Interruption>,
    /// Faults that could not be applied or healed: the test could not run
    /// as configured, whatever the checkers say.
    pub fault_errors: Vec<String>,
}

impl RunOutcome {
    /// ARCHITECTURE.md's exit code: 0 valid, 1 anomaly, 2 unknown, 3 the
    /// test could not run as configured (a fault did not take effect). An
    /// interrupted run is 2 unless it found an anomaly: a valid verdict on
    /// part of a test is not a pass.
    pub fn exit_code(&self) -> u8 {
        if !self.fault_errors.is_empty() {
            return 3;
        }
        match self.valid {
            Validity::Invalid => 1,
            _ if self.interrupted => 2,
            Validity::Valid => 0,
            Validity::Unknown => 2,
        }
    }
}

/// Runs one test. `stop` turning true (Ctrl-C) ends the workload at once;
/// faults are healed and the cluster stopped in every case.
pub async fn run_test(cfg: &RunConfig, env: &RunEnv, stop: watch::Receiver<bool>) -> Result<RunOutcome, RunError> {
    let interrupt = interrupt::Interrupt::new();
    interrupt.follow(stop);
    run_interruptible(cfg, env, &interrupt).await
}

/// [`run_test`] stopped by `interrupt`: the first stop ends the workload,
/// heals and stops everything, and the history recorded so far is checked;
/// a second one skips the check (the surroundings are removed all the
/// same). The outcome says by which signal and when.
pub async fn run_interruptible(
    cfg: &RunConfig,
    env: &RunEnv,
    interrupt: &interrupt::Interrupt,
) -> Result<RunOutcome, RunError> {
    interrupt.begin_run();
    let stop = interrupt.receiver();
    let kinds = cfg.validate()?;
    let nodes = cfg.node_names();
    let duration = Duration::from_secs_f64(cfg.time_limit_s);
    let plan = Plan::draw(&kinds, &nodes, cfg.interval_ms(), cfg.duration_ms(), cfg.seed)
        .map_err(|e| RunError::Config(e.to_string()))?;
    let store = Store::create(&env.store_root, &cfg.test)?;
    let _run_log = runlog::RunLog::open(&store.dir);
    tracing::info!(test = %cfg.test, seed = cfg.seed, store = %store.dir.display(), rerun = %cfg.rerun_command(), "run started");
    let mut config_json = serde_json::to_value(cfg).expect("config serializes");
    config_json["rerun"] = json!(cfg.rerun_command());
    store.write_json("config.json", &config_json)?;

    let cluster = Cluster::start(cfg, env, &store, cfg.concurrency).await?;
    tracing::info!(nodes = ?cluster.nodes, db = %cfg.db, net = %cfg.net, "cluster ready");
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
    let (keys, fault_error) = run_phase(
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
    // The rate is over the workload, not the quiet period and final reads.
    let workload_elapsed = start.elapsed();
    let heal_error = runner.heal_all().await.err();
    let interrupted = *stop.borrow();
    let mut warnings = Vec::new();
    let fault_errors = faults::errors(fault_error, heal_error);
    warnings.extend(fault_errors.iter().map(|e| faults::warning(e)));
    // A run whose faults did not all happen ends here: final reads would
    // only lengthen a test that could not run as configured.
    if !interrupted && fault_errors.is_empty() {
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
    let fault_counts = runner.fault_counts();
    drop(runner);
    cluster.stop()?;
    interrupt.mark_torn_down();
    if let Some(e) = log.error() {
        return Err(RunError::Store(std::io::Error::other(format!(
            "writing the history: {e}"
        ))));
    }
    let elapsed = workload_elapsed;
    let interruption = interrupt.interruption(start.into_std(), *stop.borrow());
    let faults_ran = faults::counts_line(&fault_counts);
    let faults = faults::FaultSummary {
        counts: fault_counts,
        errors: fault_errors,
    };
    let outcome = finish(cfg, &store, &stats, elapsed, interruption, warnings, faults)?;
    tracing::info!(
        valid = ?outcome.valid,
        faults = %faults_ran,
        fault_errors = outcome.fault_errors.len(),
        exit_code = outcome.exit_code(),
        "run checked"
    );
    Ok(outcome)
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
        extra: checks::header_fields(cfg.workload.kind.name(), &cfg.checkers),
    };
    let log = Arc::new(HistoryLog::create(&store.history_path(), &header)?);
    let runner = NemesisRunner::new(
        cluster.net.clone(),
        cluster.db.clone(),
        log.clone(),
        cluster.nodes.clone(),
        cfg.seed,
    )
    .with_surroundings(cluster.surroundings.clone());
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
    let _ = run_phase(
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

/// The workload and the nemesis, side by side; returns the keys touched,
/// and the nemesis's error when a fault did not take effect (which stops
/// the workload at once).
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
    outer_stop: watch::Receiver<bool>,
) -> (BTreeSet<String>, Option<faultline_nemesis::NemesisError>) {
    let (abort, stop) = watch::channel(*outer_stop.borrow());
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
        let r = runner.run(plan, start, stop.clone()).await;
        if let Err(e) = &r {
            tracing::error!(error = %e, "a fault did not take effect; stopping the test");
            let _ = abort.send(true);
        }
        r.err()
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
    let work = async { tokio::join!(nemesis, collect) };
    let (fault_error, keys) = faults::with_stop_forwarded(work, outer_stop, &abort).await;
    (keys, fault_error)
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
async fn sample_status(db: Arc<dyn Db>, log: Arc<HistoryLog>, path: PathBuf, mut done: watch::Receiver<bool>) {
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
    interruption: Option<interrupt::Interruption>,
    mut warnings: Vec<String>,
    faults: faults::FaultSummary,
) -> Result<RunOutcome, RunError> {
    let history = faultline_histories::read_history_file(&store.history_path())?;
    warnings.extend(history.warnings.iter().cloned());
    let checked = interruption.as_ref().is_none_or(|i| i.checked);
    let (valid, verdicts, unchecked) = if checked {
        let report = checks::check_run_history(&history, Duration::from_secs_f64(cfg.check_time_limit_s))
            .map_err(RunError::Check)?;
        (report.valid, report.checkers, report.unchecked)
    } else {
        // No checker ran: nothing was shown valid.
        (Validity::Unknown, BTreeMap::new(), BTreeMap::new())
    };
    let interrupted = interruption.is_some();
    let completed = stats.completed();
    let events = faults::event_counts(&history);
    let results = json!({
        "test": cfg.test,
        "seed": cfg.seed,
        "valid": valid,
        "interrupted": interrupted,
        "interrupted_by": interruption.as_ref().map(interrupt::Interruption::message),
        "checkers": verdicts,
        "unchecked": unchecked,
        "stats": {
            "invoked": stats.invoked.load(Ordering::Relaxed),
            "ok": stats.ok.load(Ordering::Relaxed),
            "fail": stats.fail.load(Ordering::Relaxed),
            "info": stats.info.load(Ordering::Relaxed),
            "elapsed_s": elapsed.as_secs_f64(),
            "ops_per_s": completed as f64 / elapsed.as_secs_f64().max(1e-9),
        },
        "nemesis": events,
        "faults": faults.counts,
        "fault_errors": faults.errors,
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
        interruption,
        fault_errors: faults.errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_take_an_optional_port() {
        assert_eq!(parse_host("10.0.0.1", 22), Ok(("10.0.0.1".into(), 22)));
        assert_eq!(parse_host("vm2:2222", 22), Ok(("vm2".into(), 2222)));
        assert_eq!(parse_host("[fd00::1]:2200", 22), Ok(("fd00::1".into(), 2200)));
        assert_eq!(parse_host("[fd00::1]", 22), Ok(("fd00::1".into(), 22)));
        for bad in ["", ":22", "vm:port", "two words", "[fd00::1"] {
            assert!(parse_host(bad, 22).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn faults_that_cannot_fire_are_refused() {
        let mut cfg = RunConfig::new(1);
        cfg.db = "etcd".into();
        cfg.nemesis = vec!["partition".into()];
        assert!(cfg.validate().is_err(), "etcd partitions behind proxies");
        cfg.net = "netns".into();
        assert!(cfg.validate().is_ok());
        cfg.nemesis = vec!["clock".into()];
        assert!(cfg.validate().is_err(), "libfaketime cannot move Go's clock");
        cfg.db = "faultline".into();
        cfg.nemesis = vec!["failover".into()];
        assert!(cfg.validate().is_err(), "failover is Redis's");
        cfg.db = "redis".into();
        assert!(cfg.validate().is_ok());
        cfg.server = "ack=none".into();
        assert!(cfg.validate().is_err(), "--server means nothing to Redis");
    }

    #[test]
    fn ssh_runs_name_their_hosts_in_the_rerun_command() {
        let mut cfg = RunConfig::new(1);
        cfg.net = "ssh".into();
        cfg.hosts = vec!["a".into(), "b:2222".into(), "c".into()];
        cfg.ssh.key = Some("/k/id".into());
        cfg.validate().unwrap();
        let cmd = cfg.rerun_command();
        assert!(cmd.contains("--nodes a,b:2222,c "), "{cmd}");
        assert!(cmd.contains("--ssh-key /k/id"), "{cmd}");
        assert!(!cmd.contains("--net"), "{cmd}");
        cfg.hosts.pop();
        assert!(cfg.validate().is_err(), "two hosts for three nodes");
    }
}
