//! `faultline run` and `faultline campaign`: what the user typed, validated
//! into a `RunConfig` (or a planned campaign), run on a tokio runtime with
//! SIGINT, SIGTERM and SIGHUP wired to a clean stop (a second signal skips
//! the check; once nothing of the run is left to clean, it exits at once),
//! and printed as a table with the seed and the command that reruns the
//! test.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use faultline_harness::run::campaign::record::{CampaignRecord, ListedTest};
use faultline_harness::run::campaign::shard::Shard;
use faultline_harness::run::campaign::{self, Row};
use faultline_harness::run::db::find_server_bin;
use faultline_harness::run::interrupt::Interrupt;
use faultline_harness::run::spec::{self, Origin, RunSpec};
use faultline_harness::run::{report, run_interruptible, Bins, DbConfig, RunConfig, RunEnv, RunOutcome};
use faultline_nemesis::FaultKind;
use tabled::settings::Style;
use tabled::{Table, Tabled};

/// Flags of `faultline run`. With none, the default test: 3 nodes of the
/// safe setting, the register workload, partitions and kills, 30 seconds.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Test name (the store folder); defaults to the workload's name.
    #[arg(long)]
    test: Option<String>,
    /// Cluster size, or the machines to run the nodes on over SSH (host[:port],host[:port],...; n1 first).
    #[arg(long, default_value = "3")]
    nodes: String,
    /// A file naming the machines, one host[:port] per line (# starts a comment); runs over SSH.
    #[arg(long, conflicts_with = "nodes")]
    nodes_file: Option<PathBuf>,
    /// SSH: the user on every machine.
    #[arg(long, default_value = "root")]
    ssh_user: String,
    /// SSH: a private key file (default: the ssh-agent).
    #[arg(long)]
    ssh_key: Option<PathBuf>,
    /// SSH: the port, where a host does not name its own.
    #[arg(long, default_value_t = 22)]
    ssh_port: u16,
    /// SSH: the known_hosts file host keys are checked against (default ~/.ssh/known_hosts).
    #[arg(long)]
    known_hosts: Option<PathBuf>,
    /// SSH: trust machines that known_hosts does not list (their fingerprints are logged). A changed key is refused regardless.
    #[arg(long)]
    accept_unknown_hosts: bool,
    /// SSH: the folder on each machine for the runs' binaries, data and logs.
    #[arg(long, default_value = "/tmp/faultline")]
    remote_dir: PathBuf,
    /// faultline-server settings, k=v,k=v (e.g. 'ack=none,reads=follower,replay_delay_ms=50'); empty is the safe setting.
    #[arg(long, default_value = "")]
    server: String,
    /// Workload: register, list-append, session, multi-key, txn-list-append, txn-rw-register.
    #[arg(long, default_value = "register")]
    workload: String,
    /// Keys in use at once (default: the workload's); for the txn workloads, the active keys.
    #[arg(long)]
    keys: Option<usize>,
    /// Key distribution: uniform, zipf, zipf:S.
    #[arg(long, default_value = "uniform")]
    key_dist: String,
    /// Operation mix, e.g. read=2,write=1,cas=1 (default: the workload's).
    #[arg(long)]
    mix: Option<String>,
    /// Operations a client does on one generation of keys before moving on (0: never).
    #[arg(long)]
    ops_per_key: Option<u64>,
    /// Keys per snapshot read (multi-key).
    #[arg(long)]
    multi_read_keys: Option<usize>,
    /// txn workloads: fewest micro-operations in a transaction (default 1).
    #[arg(long)]
    min_txn_length: Option<usize>,
    /// txn workloads: most micro-operations in a transaction (default 4).
    #[arg(long)]
    max_txn_length: Option<usize>,
    /// txn workloads: writes to a key, all clients together, before it retires (default 16).
    #[arg(long)]
    max_writes_per_key: Option<u64>,
    /// txn workloads: the fraction of micro-operations that are reads, in [0, 1) (default 0.5).
    #[arg(long)]
    read_share: Option<f64>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 10)]
    concurrency: usize,
    /// Total operations per second (0: as fast as the clients go).
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    /// Seconds of workload.
    #[arg(long, visible_alias = "duration", default_value_t = 30.0)]
    time_limit: f64,
    /// Faults, comma-separated: partition, partition-{halves,one,leader,ring,bridge,one-way}, kill, kill-leader, kill-all, pause, pause-leader, failover (Redis), disk-stall, disk-error, lose-unsynced, clock, clock-strobe, none.
    #[arg(long, default_value = "partition,kill")]
    nemesis: String,
    /// Seconds between fault starts and stops.
    #[arg(long, default_value_t = 5.0)]
    nemesis_interval: f64,
    /// The seed of every random choice (default: drawn and printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Milliseconds before an operation is given up as info.
    #[arg(long, default_value_t = 4000)]
    op_timeout_ms: u64,
    /// Quiet milliseconds after healing, before the final reads.
    #[arg(long, default_value_t = 2000)]
    quiet_ms: u64,
    /// Checkers, comma-separated (default: the workload's).
    #[arg(long, value_delimiter = ',')]
    checkers: Vec<String>,
    /// Consistency model the transactional checker judges (repeatable):
    /// read-uncommitted, read-committed, repeatable-read, snapshot-isolation,
    /// strong-session-snapshot-isolation, strong-snapshot-isolation, serializable,
    /// strong-session-serializable, strict-serializable (the default).
    #[arg(long = "consistency-model", value_name = "MODEL")]
    consistency_models: Vec<String>,
    /// Seconds each linearizability search may take before it says unknown.
    #[arg(long, default_value_t = 60.0)]
    check_time_limit: f64,
    /// Clients talk to nodes directly instead of through proxies.
    #[arg(long)]
    direct_clients: bool,
    /// Where reads go: home (one replica per client), any (a replica per read), leader (where writes go), auto (home under reads=sticky, else any).
    #[arg(long, default_value = "auto")]
    read_routing: String,
    /// How nodes are joined: proxy (userspace proxies on loopback, no root; the default) or netns (a network namespace per node, partitions as nftables drops; needs root).
    #[arg(long)]
    net: Option<String>,
    /// The system under test: faultline (the project's server), etcd, redis, or postgres.
    #[arg(long, default_value = "faultline")]
    db: String,
    /// etcd: serializable reads (a member answers from its own state) instead of linearizable ones.
    #[arg(long)]
    etcd_serializable_reads: bool,
    /// Redis: where reads go: primary (the default), replica (one drawn per read) or home (the client's own node).
    #[arg(long)]
    redis_reads: Option<String>,
    /// Redis: WAIT for this many replicas after every write (default 0: no WAIT).
    #[arg(long)]
    redis_wait: Option<u32>,
    /// Redis: the failover nemesis first WAITs for every replica, as a careful operator would.
    #[arg(long)]
    redis_failover_wait: bool,
    /// PostgreSQL: which standbys a commit waits for: off (asynchronous, the default), any:N or first:N (synchronous_standby_names).
    #[arg(long)]
    pg_sync: Option<String>,
    /// PostgreSQL: synchronous_commit: local, remote_write, on (the default) or remote_apply.
    #[arg(long)]
    pg_commit: Option<String>,
    /// PostgreSQL: where reads go: primary (the default), standby (one drawn per read) or home (the client's own node).
    #[arg(long)]
    pg_reads: Option<String>,
    /// PostgreSQL: the isolation level of transactions: read-committed (the default), repeatable-read or serializable.
    #[arg(long)]
    pg_isolation: Option<String>,
    /// PostgreSQL: the failover nemesis stops the old primary first (fenced, the default) or leaves it running (unfenced: split brain).
    #[arg(long)]
    pg_failover: Option<String>,
    /// Put the nodes' data on the disk-fault filesystem even without a disk nemesis.
    #[arg(long)]
    diskfs: bool,
    #[command(flatten)]
    env: EnvArgs,
    /// Print results.json on stdout instead of the table.
    #[arg(long)]
    json: bool,
}

/// Where runs execute.
#[derive(Args, Debug)]
pub struct EnvArgs {
    /// The store's root folder.
    #[arg(long, default_value = "store")]
    store: PathBuf,
    /// The faultline-server binary (default: next to faultline, then $PATH).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// No progress line on stderr.
    #[arg(long)]
    no_progress: bool,
    /// The etcd binary (default: $PATH).
    #[arg(long)]
    etcd_bin: Option<PathBuf>,
    /// The redis-server binary (default: $PATH).
    #[arg(long)]
    redis_bin: Option<PathBuf>,
    /// The folder of PostgreSQL's programs (default: /usr/lib/postgresql/15/bin).
    #[arg(long)]
    pg_bin_dir: Option<PathBuf>,
    /// The faultline-diskfs binary (default: next to faultline, then $PATH).
    #[arg(long)]
    diskfs_bin: Option<PathBuf>,
    /// libfaketime's multithreaded library (default: Debian's faketime package's).
    #[arg(long)]
    faketime_lib: Option<PathBuf>,
}

/// Flags of `faultline campaign`.
#[derive(Args, Debug)]
pub struct CampaignArgs {
    /// The campaign file (TOML).
    file: PathBuf,
    /// The campaign's seed; test i uses seed + i unless it names its own.
    #[arg(long)]
    seed: Option<u64>,
    /// Print the rows as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Also write the rows as JUnit XML to this file (one suite per test,
    /// one case per expectation).
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Run shard I of N only: the tests whose number (from 0, in file
    /// order) modulo N is I-1; the N shards together run every test once.
    #[arg(long, value_name = "I/N")]
    shard: Option<Shard>,
    /// List the tests (of the shard) with their numbers and seeds; run none.
    #[arg(long)]
    list: bool,
    #[command(flatten)]
    env: EnvArgs,
}

fn draw_seed() -> u64 {
    let t = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64;
    (t ^ (u64::from(std::process::id()) << 32)) % 1_000_000_000_000
}

/// The machines of `--nodes h1,h2` or `--nodes-file`; empty for a count.
fn hosts(args: &RunArgs) -> anyhow::Result<Vec<String>> {
    let text = match &args.nodes_file {
        Some(f) => std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?,
        None if args.nodes.parse::<usize>().is_ok() => return Ok(Vec::new()),
        None => args.nodes.replace(',', "\n"),
    };
    let hosts: Vec<String> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if hosts.is_empty() {
        bail!("no hosts given");
    }
    Ok(hosts)
}

/// The flags as a [`RunSpec`], the form a campaign's TOML takes too:
/// what the user gave, nothing parsed yet but the host list.
fn spec(args: &RunArgs) -> anyhow::Result<RunSpec> {
    let hosts = hosts(args)?;
    let nodes = match hosts.is_empty() {
        true => Some(
            args.nodes
                .parse()
                .with_context(|| format!("--nodes {:?}: a count, or host names", args.nodes))?,
        ),
        false => None,
    };
    Ok(RunSpec {
        name: args.test.clone(),
        nodes,
        hosts: Some(hosts),
        server: Some(args.server.clone()),
        workload: Some(args.workload.clone()),
        keys: args.keys,
        key_dist: Some(args.key_dist.clone()),
        mix: args.mix.clone(),
        ops_per_key: args.ops_per_key,
        multi_read_keys: args.multi_read_keys,
        min_txn_length: args.min_txn_length,
        max_txn_length: args.max_txn_length,
        max_writes_per_key: args.max_writes_per_key,
        read_share: args.read_share,
        concurrency: Some(args.concurrency),
        rate: Some(args.rate),
        time_limit_s: Some(args.time_limit),
        nemesis: Some(args.nemesis.clone()),
        nemesis_interval_s: Some(args.nemesis_interval),
        seed: args.seed,
        op_timeout_ms: Some(args.op_timeout_ms),
        quiet_ms: Some(args.quiet_ms),
        checkers: (!args.checkers.is_empty()).then(|| args.checkers.clone()),
        consistency_models: (!args.consistency_models.is_empty()).then(|| args.consistency_models.clone()),
        check_time_limit_s: Some(args.check_time_limit),
        direct_clients: Some(args.direct_clients),
        read_routing: Some(args.read_routing.clone()),
        net: args.net.clone(),
        db: Some(args.db.clone()),
        etcd_serializable_reads: args.etcd_serializable_reads.then_some(true),
        redis_reads: args.redis_reads.clone(),
        redis_wait: args.redis_wait,
        redis_failover_wait: args.redis_failover_wait.then_some(true),
        pg_sync: args.pg_sync.clone(),
        pg_commit: args.pg_commit.clone(),
        pg_reads: args.pg_reads.clone(),
        pg_isolation: args.pg_isolation.clone(),
        pg_failover: args.pg_failover.clone(),
        diskfs: Some(args.diskfs),
        ssh_user: Some(args.ssh_user.clone()),
        ssh_port: Some(args.ssh_port),
        ssh_key: args.ssh_key.clone(),
        known_hosts: args.known_hosts.clone(),
        accept_unknown_hosts: Some(args.accept_unknown_hosts),
        remote_dir: Some(args.remote_dir.clone()),
    })
}

/// The flags, parsed and validated; an error names the flag.
fn config(args: &RunArgs) -> anyhow::Result<RunConfig> {
    let seed = args.seed.unwrap_or_else(draw_seed);
    Ok(spec::resolve(&spec(args)?, seed).map_err(|e| e.at(Origin::Cli))?)
}

fn env(args: &EnvArgs) -> anyhow::Result<RunEnv> {
    Ok(RunEnv {
        store_root: args.store.clone(),
        server_bin: find_server_bin(args.server_bin.as_deref())?,
        progress: !args.no_progress,
        bins: Bins {
            etcd: args.etcd_bin.clone(),
            redis: args.redis_bin.clone(),
            postgres: args.pg_bin_dir.clone(),
            diskfs: args.diskfs_bin.clone(),
            faketime: args.faketime_lib.clone(),
        },
    })
}

/// Exit code of a run ended by a second signal after its clean-up: it
/// decided nothing.
const EXIT_INTERRUPTED: i32 = 2;

/// A runtime whose `Interrupt` hears SIGINT, SIGTERM and SIGHUP.
fn runtime() -> anyhow::Result<(tokio::runtime::Runtime, Interrupt)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let interrupt = Interrupt::new();
    rt.block_on(async { listen_for_signals(&interrupt) })
        .context("listening for signals")?;
    Ok((rt, interrupt))
}

/// Feeds SIGINT, SIGTERM and SIGHUP to `interrupt` for as long as the
/// runtime runs, saying on stderr what happens next.
fn listen_for_signals(interrupt: &Interrupt) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let kinds = [
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::hangup(), "SIGHUP"),
    ];
    for (kind, name) in kinds {
        let mut stream = signal(kind)?;
        let interrupt = interrupt.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                on_signal(&interrupt, name);
            }
        });
    }
    Ok(())
}

fn on_signal(interrupt: &Interrupt, name: &'static str) {
    if interrupt.signal(name) == 1 {
        eprintln!("\nfaultline: {name}: healing faults, stopping the cluster, then checking what was recorded");
        return;
    }
    if interrupt.torn_down() {
        // Only the check is left, and it was asked to be skipped.
        eprintln!("\nfaultline: {name} again: nothing of the run is left; exiting without the check");
        std::process::exit(EXIT_INTERRUPTED);
    }
    eprintln!("\nfaultline: {name} again: the check will be skipped; removing namespaces, rules and mounts first");
}

/// `faultline run`.
pub fn run(args: RunArgs) -> anyhow::Result<u8> {
    let cfg = config(&args)?;
    let env = env(&args.env)?;
    let target = match &cfg.db {
        DbConfig::Faultline { server } => format!("server '{server}'"),
        other => other.kind().name().to_owned(),
    };
    eprintln!(
        "faultline: test {} seed {} ({} nodes, {target}, net {}, workload {}, nemesis {}, {} s)",
        cfg.test,
        cfg.seed,
        cfg.nodes,
        cfg.net.name(),
        cfg.workload.kind.name(),
        FaultKind::list_words(&cfg.nemesis),
        cfg.time_limit_s
    );
    let (rt, interrupt) = runtime()?;
    let out = rt.block_on(run_interruptible(&cfg, &env, &interrupt))?;
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&out.results)?);
    } else {
        print_outcome(&cfg, &out);
    }
    Ok(out.exit_code())
}

fn print_outcome(cfg: &RunConfig, out: &RunOutcome) {
    outln!("{}", report::table(&out.verdicts));
    if let Some(i) = &out.interruption {
        outln!("{}: the verdicts judge the history recorded until then", i.message());
    }
    for a in report::first_anomalies(&out.verdicts) {
        outln!("{a}");
    }
    let s = &out.results["stats"];
    outln!(
        "{} ops ({} ok, {} fail, {} info) in {:.1} s, {:.0} ops/s",
        s["invoked"],
        s["ok"],
        s["fail"],
        s["info"],
        s["elapsed_s"].as_f64().unwrap_or(0.0),
        s["ops_per_s"].as_f64().unwrap_or(0.0)
    );
    outln!("faults: {}", report::faults_line(&out.results));
    if let Some(w) = out.results["warnings"].as_array().filter(|w| !w.is_empty()) {
        for x in w {
            outln!("warning: {}", x.as_str().unwrap_or_default());
        }
    }
    if out.interrupted && out.interruption.is_none() {
        outln!("interrupted: the verdicts judge the history recorded until the stop");
    }
    if let Some(u) = out.results["unchecked"].as_object() {
        for (f, n) in u {
            outln!("unchecked: {n} `{f}` operations no checker looked at");
        }
    }
    if !out.fault_errors.is_empty() {
        outln!(
            "verdict: could not run as configured (exit 3): {} fault(s) did not take effect",
            out.fault_errors.len()
        );
    } else if out.interrupted {
        outln!("verdict: {} (interrupted)", report::verdict_word(out.valid));
    } else {
        outln!("verdict: {}", report::verdict_word(out.valid));
    }
    outln!("seed: {}", cfg.seed);
    outln!("store: {}", out.store.display());
    outln!("rerun: {}", cfg.rerun_command());
}

#[derive(Tabled)]
struct CampaignRow {
    test: String,
    checker: String,
    expected: String,
    observed: String,
    #[tabled(rename = "holds")]
    holds: String,
}

/// `faultline campaign`.
pub fn campaign(args: CampaignArgs) -> anyhow::Result<u8> {
    let seed = args.seed.unwrap_or_else(draw_seed);
    let shard = args.shard.unwrap_or(Shard::WHOLE);
    let all = campaign::load(&args.file, seed).map_err(anyhow::Error::msg)?;
    let total = all.len();
    let tests = shard.select(all);
    let listed: Vec<ListedTest> = tests.iter().map(|(p, t)| ListedTest::of(*p, t)).collect();
    if args.list {
        return crate::cli_campaign::list(&args.file, shard, total, &listed, args.json);
    }
    let env = env(&args.env)?;
    eprintln!(
        "faultline: campaign {} seed {seed} shard {shard}: {} of {total} tests",
        args.file.display(),
        tests.len()
    );
    let mut record = CampaignRecord::create(&env.store_root, &args.file, seed, shard, listed)
        .with_context(|| format!("creating the campaign's folder in {}", env.store_root.display()))?;
    eprintln!("faultline: campaign folder: {}", record.dir.display());
    let (rt, interrupt) = runtime()?;
    let rows = crate::cli_campaign::run_tests(&rt, &tests, &env, &interrupt, &mut record);
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    write_campaign_junit(&record.dir.join("junit.xml"), &rows)?;
    if let Some(path) = &args.junit {
        write_campaign_junit(path, &rows)?;
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print_campaign(&rows, seed, &campaign::record::rerun_command(&args.file, seed, shard));
    }
    if rows.iter().any(|r| r.observed == "error") {
        return Ok(3);
    }
    if let Some(signal) = interrupt.first_signal() {
        // Some expectations were never tested: not a pass, not a failure.
        eprintln!("faultline: the campaign was stopped by {signal}");
        return Ok(EXIT_INTERRUPTED as u8);
    }
    if rows.is_empty() {
        bail!("the campaign ran no test (shard {shard} of {total} tests)");
    }
    Ok(if rows.iter().all(|r| r.holds) { 0 } else { 1 })
}

fn write_campaign_junit(path: &std::path::Path, rows: &[Row]) -> anyhow::Result<()> {
    let cases: Vec<faultline_report::ExpectationCase> = rows
        .iter()
        .map(|r| faultline_report::ExpectationCase {
            test: r.test.clone(),
            checker: r.checker.clone(),
            expected: r.expected_words(),
            observed: r.observed.clone(),
            holds: r.holds,
            detail: [r.found_words(), r.note.clone(), r.store.clone()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; "),
        })
        .collect();
    std::fs::write(path, faultline_report::campaign_junit_xml(&cases))
        .with_context(|| format!("writing {}", path.display()))
}

fn print_campaign(rows: &[Row], seed: u64, rerun: &str) {
    let table: Vec<CampaignRow> = rows
        .iter()
        .map(|r| CampaignRow {
            test: r.test.clone(),
            checker: r.checker.clone(),
            expected: r.expected_words(),
            observed: match &r.note {
                Some(n) if r.observed != "valid" && r.observed != "invalid" => {
                    format!("{}: {}", r.observed, n.chars().take(70).collect::<String>())
                }
                _ => observed_words(r),
            },
            holds: if r.holds { "yes".into() } else { "NO".into() },
        })
        .collect();
    outln!("{}", Table::new(table).with(Style::rounded()));
    let held = rows.iter().filter(|r| r.holds).count();
    outln!("{held}/{} rows hold", rows.len());
    outln!("seed: {seed}");
    outln!("rerun: {rerun}");
}

/// `invalid (12 anomalies): found G-single, G2-item`, or what of it applies.
fn observed_words(r: &Row) -> String {
    let mut w = r.observed.clone();
    if r.anomalies > 0 {
        w.push_str(&format!(" ({} anomalies)", r.anomalies));
    }
    if let Some(found) = r.found_words() {
        w.push_str(&format!(": {found}"));
    }
    w
}

#[cfg(test)]
#[path = "cli_run_tests.rs"]
mod tests;
