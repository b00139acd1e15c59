//! `faultline run` and `faultline campaign`: what the user typed, validated
//! into a `RunConfig` (or a planned campaign), run on a tokio runtime with
//! Ctrl-C wired to a clean stop, and printed as a table with the seed and
//! the command that reruns the test.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use faultline_harness::run::campaign::{self, Expect, Row};
use faultline_harness::run::db::find_server_bin;
use faultline_harness::run::{report, run_test, RunConfig, RunEnv, RunOutcome};
use faultline_workloads::{KeyDist, Mix, WorkloadConfig, WorkloadKind};
use tabled::settings::Style;
use tabled::{Table, Tabled};
use tokio::sync::watch;

/// Flags of `faultline run`. With none, the default test: 3 nodes of the
/// safe setting, the register workload, partitions and kills, 30 seconds.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Test name (the store folder); defaults to the workload's name.
    #[arg(long)]
    test: Option<String>,
    /// Cluster size.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// faultline-server settings, k=v,k=v (e.g. 'ack=none,reads=follower,replay_delay_ms=50'); empty is the safe setting.
    #[arg(long, default_value = "")]
    server: String,
    /// Workload: register, list-append, session, multi-key.
    #[arg(long, default_value = "register")]
    workload: String,
    /// Keys in use at once (default: the workload's).
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
    /// Concurrent clients.
    #[arg(long, default_value_t = 10)]
    concurrency: usize,
    /// Total operations per second (0: as fast as the clients go).
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    /// Seconds of workload.
    #[arg(long, visible_alias = "duration", default_value_t = 30.0)]
    time_limit: f64,
    /// Faults, comma-separated: partition, partition-{halves,one,leader,ring,bridge,one-way}, kill, kill-leader, kill-all, pause, pause-leader, none.
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
    /// Seconds each linearizability search may take before it says unknown.
    #[arg(long, default_value_t = 60.0)]
    check_time_limit: f64,
    /// Clients talk to nodes directly instead of through proxies.
    #[arg(long)]
    direct_clients: bool,
    /// Where reads go: home (one replica per client), any (a replica per read), auto (home under reads=sticky).
    #[arg(long, default_value = "auto")]
    read_routing: String,
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
    #[command(flatten)]
    env: EnvArgs,
}

fn draw_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (t ^ (u64::from(std::process::id()) << 32)) % 1_000_000_000_000
}

fn config(args: &RunArgs) -> anyhow::Result<RunConfig> {
    let kind = WorkloadKind::parse(&args.workload)?;
    let mut workload = WorkloadConfig::new(kind);
    if let Some(k) = args.keys {
        workload.key_count = k;
    }
    workload.key_dist = KeyDist::parse(&args.key_dist)?;
    if let Some(m) = &args.mix {
        workload.mix = Mix::parse(m)?;
    }
    if let Some(o) = args.ops_per_key {
        workload.ops_per_key = o;
    }
    if let Some(m) = args.multi_read_keys {
        workload.multi_read_keys = m;
    }
    let mut cfg = RunConfig::new(args.seed.unwrap_or_else(draw_seed));
    cfg.test = args.test.clone().unwrap_or_else(|| kind.name().to_owned());
    cfg.nodes = args.nodes;
    cfg.server = args.server.clone();
    cfg.workload = workload;
    cfg.concurrency = args.concurrency;
    cfg.rate = args.rate;
    cfg.time_limit_s = args.time_limit;
    cfg.nemesis = args
        .nemesis
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty() && *w != "none")
        .map(str::to_owned)
        .collect();
    cfg.nemesis_interval_s = args.nemesis_interval;
    cfg.op_timeout_ms = args.op_timeout_ms;
    cfg.quiet_ms = args.quiet_ms;
    cfg.checkers = args.checkers.clone();
    cfg.check_time_limit_s = args.check_time_limit;
    cfg.client_proxies = !args.direct_clients;
    cfg.read_routing = args.read_routing.clone();
    cfg.validate()?;
    Ok(cfg)
}

fn env(args: &EnvArgs) -> anyhow::Result<RunEnv> {
    Ok(RunEnv {
        store_root: args.store.clone(),
        server_bin: find_server_bin(args.server_bin.as_deref())?,
        progress: !args.no_progress,
    })
}

/// A runtime whose stop channel turns true on Ctrl-C.
fn runtime() -> anyhow::Result<(tokio::runtime::Runtime, watch::Receiver<bool>)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let (tx, rx) = watch::channel(false);
    rt.spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nfaultline: interrupted; healing faults and stopping the cluster");
            let _ = tx.send(true);
        }
    });
    Ok((rt, rx))
}

/// `faultline run`.
pub fn run(args: RunArgs) -> anyhow::Result<u8> {
    let cfg = config(&args)?;
    let env = env(&args.env)?;
    eprintln!(
        "faultline: test {} seed {} ({} nodes, server '{}', workload {}, nemesis {}, {} s)",
        cfg.test,
        cfg.seed,
        cfg.nodes,
        cfg.server,
        cfg.workload.kind.name(),
        if cfg.nemesis.is_empty() {
            "none".to_owned()
        } else {
            cfg.nemesis.join(",")
        },
        cfg.time_limit_s
    );
    let (rt, stop) = runtime()?;
    let out = rt.block_on(run_test(&cfg, &env, stop))?;
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out.results)?);
    } else {
        print_outcome(&cfg, &out);
    }
    Ok(out.exit_code())
}

fn print_outcome(cfg: &RunConfig, out: &RunOutcome) {
    println!("{}", report::table(&out.verdicts));
    for a in report::first_anomalies(&out.verdicts) {
        println!("{a}");
    }
    let s = &out.results["stats"];
    println!(
        "{} ops ({} ok, {} fail, {} info) in {:.1} s, {:.0} ops/s",
        s["invoked"],
        s["ok"],
        s["fail"],
        s["info"],
        s["elapsed_s"].as_f64().unwrap_or(0.0),
        s["ops_per_s"].as_f64().unwrap_or(0.0)
    );
    if let Some(w) = out.results["warnings"].as_array().filter(|w| !w.is_empty()) {
        for x in w {
            println!("warning: {}", x.as_str().unwrap_or_default());
        }
    }
    if out.interrupted {
        println!("interrupted: the verdicts judge the history recorded until the stop");
    }
    println!("verdict: {}", report::verdict_word(out.valid));
    println!("seed: {}", cfg.seed);
    println!("store: {}", out.store.display());
    println!("rerun: {}", cfg.rerun_command());
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

fn expect_word(e: Expect) -> &'static str {
    match e {
        Expect::Pass => "pass",
        Expect::Fail => "fail",
        Expect::Unset => "-",
    }
}

/// `faultline campaign`.
pub fn campaign(args: CampaignArgs) -> anyhow::Result<u8> {
    let seed = args.seed.unwrap_or_else(draw_seed);
    let tests = campaign::load(&args.file, seed).map_err(anyhow::Error::msg)?;
    let env = env(&args.env)?;
    eprintln!(
        "faultline: campaign {} seed {seed}: {} tests",
        args.file.display(),
        tests.len()
    );
    let (rt, stop) = runtime()?;
    let rows = rt.block_on(campaign::run_campaign(&tests, &env, stop, |t, rows| {
        let ok = rows.iter().all(|r| r.holds);
        eprintln!(
            "faultline: {} {} ({})",
            t.name,
            if ok { "holds" } else { "DOES NOT HOLD" },
            rows.iter()
                .map(|r| format!("{}={}", r.checker, r.observed))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }));
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    if let Some(path) = &args.junit {
        write_campaign_junit(path, &rows)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print_campaign(&rows, seed, &args.file);
    }
    if rows.iter().any(|r| r.observed == "error") {
        return Ok(3);
    }
    if rows.is_empty() {
        bail!("the campaign ran no test");
    }
    Ok(if rows.iter().all(|r| r.holds) { 0 } else { 1 })
}

fn write_campaign_junit(path: &std::path::Path, rows: &[Row]) -> anyhow::Result<()> {
    let cases: Vec<faultline_report::ExpectationCase> = rows
        .iter()
        .map(|r| faultline_report::ExpectationCase {
            test: r.test.clone(),
            checker: r.checker.clone(),
            expected: expect_word(r.expected).into(),
            observed: r.observed.clone(),
            holds: r.holds,
            detail: [r.note.clone(), r.store.clone()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; "),
        })
        .collect();
    std::fs::write(path, faultline_report::campaign_junit_xml(&cases))
        .with_context(|| format!("writing {}", path.display()))
}

fn print_campaign(rows: &[Row], seed: u64, file: &std::path::Path) {
    let table: Vec<CampaignRow> = rows
        .iter()
        .map(|r| CampaignRow {
            test: r.test.clone(),
            checker: r.checker.clone(),
            expected: expect_word(r.expected).into(),
            observed: match &r.note {
                Some(n) if r.observed != "valid" && r.observed != "invalid" => {
                    format!("{}: {}", r.observed, n.chars().take(70).collect::<String>())
                }
                _ if r.anomalies > 0 => format!("{} ({} anomalies)", r.observed, r.anomalies),
                _ => r.observed.clone(),
            },
            holds: if r.holds { "yes".into() } else { "NO".into() },
        })
        .collect();
    println!("{}", Table::new(table).with(Style::rounded()));
    let held = rows.iter().filter(|r| r.holds).count();
    println!("{held}/{} rows hold", rows.len());
    println!("seed: {seed}");
    println!("rerun: faultline campaign {} --seed {seed}", file.display());
}
