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
pub mod clock_check;
pub mod cluster;
pub mod config;
pub mod db;
pub mod drive;
pub mod etcd;
pub mod faults;
pub mod interrupt;
pub mod pg_options;
pub mod postgres;
pub mod procs;
pub mod redis;
pub mod remote;
pub mod report;
pub mod runlog;
pub mod spec;
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
use faultline_nemesis::{NemesisRunner, Plan};
use faultline_workloads::ReadRouting;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

pub use cluster::{Cluster, NETNS_PORTS};
pub use config::{
    parse_host, DbConfig, DbKind, NetKind, RunConfig, SshSettings, MAX_CONCURRENCY, MAX_NODES, MAX_TIME_LIMIT_S,
};
pub use spec::{ConfigError, Field, Invalid, Origin, RunSpec};

use db::{Db, DbError};
use drive::{Stats, WorkerCtx};
use store::{HistoryLog, Store};

/// How long a cluster may take to become ready.
pub const READY_TIMEOUT_MS: u64 = 30_000;

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
    /// The folder of PostgreSQL's programs (`postgres`, `initdb`, ...).
    pub postgres: Option<PathBuf>,
    /// faultline-diskfs, the disk-fault filesystem.
    pub diskfs: Option<PathBuf>,
    /// libfaketime's multithreaded library.
    pub faketime: Option<PathBuf>,
}

/// Why a run could not run (exit code 3).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A setting out of range, or that does not fit the others.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// A setting the run could not use (a host that does not parse).
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
    let (plan, store) = prepare(cfg, env)?;
    let _run_log = runlog::RunLog::open(&store.dir);
    tracing::info!(test = %cfg.test, seed = cfg.seed, store = %store.dir.display(), rerun = %cfg.rerun_command(), "run started");
    write_config(cfg, &store)?;

    let cluster = Cluster::start(cfg, env, &store, cfg.concurrency).await?;
    tracing::info!(nodes = ?cluster.nodes, db = cfg.db.kind().name(), net = cfg.net.name(), "cluster ready");
    let (log, stats, runner) = start_recording(cfg, &cluster, &store)?;
    let background = Background::start(cfg, env, &cluster, &store, &log, &stats, &runner);

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
    background.finish().await;
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
    log_outcome(&outcome, &faults_ran);
    Ok(outcome)
}

/// The run's last line in `faultline.log`.
fn log_outcome(outcome: &RunOutcome, faults_ran: &str) {
    tracing::info!(
        valid = ?outcome.valid,
        faults = %faults_ran,
        fault_errors = outcome.fault_errors.len(),
        exit_code = outcome.exit_code(),
        "run checked"
    );
}

/// Checks the configuration, draws the fault schedule and makes the run's
/// folder: everything that can refuse a run before any process starts.
fn prepare(cfg: &RunConfig, env: &RunEnv) -> Result<(Plan, Store), RunError> {
    cfg.validate()?;
    let nodes = cfg.node_names();
    let plan = Plan::draw(&cfg.nemesis, &nodes, cfg.interval_ms(), cfg.duration_ms(), cfg.seed)
        .map_err(|e| RunError::Config(e.to_string()))?;
    let store = Store::create(&env.store_root, &cfg.test)?;
    Ok((plan, store))
}

/// `config.json`: the run's configuration and the command that reruns it.
fn write_config(cfg: &RunConfig, store: &Store) -> Result<(), RunError> {
    let mut config_json = serde_json::to_value(cfg).expect("config serializes");
    config_json["rerun"] = json!(cfg.rerun_command());
    store.write_json("config.json", &config_json)?;
    Ok(())
}

/// The tasks that run beside the workload: the history flusher, the status
/// sampler and the progress line. `finish` stops them and waits.
struct Background {
    done: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Background {
    fn start(
        cfg: &RunConfig,
        env: &RunEnv,
        cluster: &Cluster,
        store: &Store,
        log: &Arc<HistoryLog>,
        stats: &Arc<Stats>,
        runner: &NemesisRunner,
    ) -> Background {
        let (done, done_rx) = watch::channel(false);
        let mut tasks = vec![
            tokio::spawn(flush_periodically(log.clone(), done_rx.clone())),
            tokio::spawn(sample_status(
                cluster.db.clone(),
                log.clone(),
                store.dir.join("status.jsonl"),
                done_rx.clone(),
            )),
        ];
        if env.progress {
            let duration = Duration::from_secs_f64(cfg.time_limit_s);
            tasks.push(tokio::spawn(drive::progress(
                stats.clone(),
                runner.active_faults(),
                duration,
                done_rx,
            )));
        }
        Background { done, tasks }
    }

    async fn finish(self) {
        let _ = self.done.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
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
        extra: checks::header_fields(cfg.workload.kind.name(), &cfg.checkers, &cfg.consistency_models),
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
    let routing = cfg.routing();
    let mut workers = tokio::task::JoinSet::new();
    let generators = cfg.workload.generators(cfg.seed, cfg.concurrency);
    for (w, gen) in generators.into_iter().enumerate() {
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
