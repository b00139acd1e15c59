//! `faultline-server-bench`: write and read throughput and latency of a
//! local 3-node cluster, one row per acknowledgement policy, then one per
//! leaderless or multi-leader setting (`--modes`).
//!
//! It starts real `faultline-server` processes (the binary next to this
//! one) on loopback ports with temporary data directories, drives them with
//! N concurrent clients (each one request at a time) for a fixed time per
//! phase, prints a table, and kills every process it started, also on error.
//! With `--txn-rounds N` it then measures transactions per second of
//! `isolation=serializable` against `isolation=snapshot` (ack=majority,
//! the given fsync), N rounds alternating between the two, each on a
//! fresh cluster.
//! Usage: `faultline-server-bench [--clients 32] [--secs 5]
//! [--acks majority,any:1,none] [--fsync always] [--etcd PATH]
//! [--txn-rounds 0] [--modes 'mode=leaderless,n=3,w=2,r=2;mode=multi_leader']`.

use anyhow::{bail, Context, Result};
use faultline_server::protocol::Outcome;
use faultline_server::Client;
use serde_json::Value;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most seconds a phase may be asked to run.
const PHASE_SECS_MAX: u64 = 120;
/// Most concurrent clients.
const CLIENTS_MAX: usize = 1024;

/// Write and read throughput and latency of a local 3-node cluster of
/// faultline-server, one row per acknowledgement policy, optionally beside
/// a 3-member etcd cluster driven by the same number of clients.
#[derive(clap::Parser)]
#[command(name = "faultline-server-bench")]
struct Opts {
    /// Concurrent clients, each with one request in flight.
    #[arg(long, default_value_t = 32, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=CLIENTS_MAX as u64))]
    clients: usize,
    /// Seconds per phase (writes, then reads).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=PHASE_SECS_MAX))]
    secs: u64,
    /// Acknowledgement policies to measure, one row each.
    #[arg(long, value_delimiter = ',', default_value = "majority,any:1,none")]
    acks: Vec<String>,
    /// The nodes' fsync policy: always, batch or never.
    #[arg(long, default_value = "always")]
    fsync: String,
    /// An etcd binary (Debian's etcd-server: /usr/bin/etcd) to measure in the same run.
    #[arg(long)]
    etcd: Option<PathBuf>,
    /// Rounds of the transaction rows (serializable, then snapshot, each
    /// round); 0 skips them.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=10))]
    txn_rounds: u64,
    /// Skip the single-key rows (with --txn-rounds: transactions only).
    #[arg(long)]
    txn_only: bool,
    /// Leaderless and multi-leader settings to measure, one row each,
    /// separated by `;` (`none` for no such row). Every node coordinates:
    /// the clients talk to n1.
    #[arg(
        long,
        value_delimiter = ';',
        default_value = "mode=leaderless,n=3,w=2,r=2;mode=multi_leader"
    )]
    modes: Vec<String>,
}

/// Child processes killed on drop, whatever happens.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A temporary directory removed on drop.
struct TmpDir(PathBuf);

impl TmpDir {
    fn new(tag: &str) -> Result<TmpDir> {
        let p = std::env::temp_dir().join(format!(
            "faultline-bench-{tag}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&p)?;
        Ok(TmpDir(p))
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn server_binary() -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let bin = me.with_file_name("faultline-server");
    if !bin.exists() {
        bail!(
            "{} not found: build it first (cargo build --release -p faultline-server)",
            bin.display()
        );
    }
    Ok(bin)
}

fn start_cluster(settings: &str, dir: &Path) -> Result<(Procs, Vec<String>)> {
    let bin = server_binary()?;
    let ids = ["n1", "n2", "n3"];
    let addrs: Vec<String> = ids
        .iter()
        .map(|_| free_port().map(|p| format!("127.0.0.1:{p}")))
        .collect::<Result<_>>()?;
    let mut procs = Procs(Vec::new());
    for (i, id) in ids.iter().enumerate() {
        let mut cmd = Command::new(&bin);
        cmd.args(["--node", id, "--listen", &addrs[i]])
            .arg("--data-dir")
            .arg(dir.join(id))
            .args(["--settings", settings])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (j, peer) in ids.iter().enumerate() {
            if i != j {
                cmd.args(["--peer", &format!("{peer}={}", addrs[j])]);
            }
        }
        procs.0.push(cmd.spawn().context("starting faultline-server")?);
    }
    Ok((procs, addrs))
}

async fn find_leader(addrs: &[String]) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        for a in addrs {
            if let Ok(mut c) = Client::connect(a, Duration::from_millis(500)).await {
                let r = c.status().await;
                if r.status.is_some_and(|s| s.main.role == "leader") {
                    return Ok(a.clone());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("no leader elected")
}

/// Adds up the clients' counts and latencies; the whole phase's wall time
/// runs from `start` until the last client is done.
async fn gather(tasks: Vec<tokio::task::JoinHandle<Result<Stats>>>, start: Instant) -> Result<Stats> {
    let mut all = Stats::default();
    for t in tasks {
        let s = t.await??;
        all.ok += s.ok;
        all.not_ok += s.not_ok;
        all.lat_us.extend(s.lat_us);
    }
    all.secs = start.elapsed().as_secs_f64();
    Ok(all)
}

#[derive(Default)]
struct Stats {
    ok: usize,
    not_ok: usize,
    lat_us: Vec<u64>,
    secs: f64,
}

impl Stats {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.secs
    }

    fn pct_ms(&mut self, p: f64) -> f64 {
        if self.lat_us.is_empty() {
            return f64::NAN;
        }
        self.lat_us.sort_unstable();
        let i = ((self.lat_us.len() as f64 - 1.0) * p).round() as usize;
        self.lat_us[i] as f64 / 1000.0
    }
}

#[derive(Clone, Copy)]
enum Phase {
    Write,
    Read,
    /// rw-register transactions of 4 micro-ops: read and write two keys.
    Txn,
}

/// The transaction the `Txn` phase sends: two keys read, then written.
fn txn_request(c: usize, i: u64) -> faultline_server::protocol::RawRequest {
    let (a, b) = (format!("c{c}-k{}", i % 64), format!("c{c}-k{}", (i + 1) % 64));
    faultline_server::protocol::RawRequest {
        op: "txn".into(),
        txn: Some(vec![
            serde_json::json!(["r", a, null]),
            serde_json::json!(["w", a, i]),
            serde_json::json!(["r", b, null]),
            serde_json::json!(["w", b, i]),
        ]),
        ..Default::default()
    }
}

/// Runs `clients` closed-loop clients against `addr` for `secs`.
async fn drive(addr: &str, clients: usize, secs: u64, phase: Phase) -> Result<Stats> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let addr = Arc::new(addr.to_string());
    let mut tasks = Vec::new();
    for c in 0..clients {
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let mut stats = Stats::default();
            let mut cl = Client::connect(&addr, Duration::from_secs(5)).await?;
            let mut i = 0u64;
            while Instant::now() < deadline {
                let key = format!("c{c}-k{}", i % 64);
                let t = Instant::now();
                let r = match phase {
                    Phase::Write => cl.write(&key, Value::from(i)).await,
                    Phase::Read => cl.read(&key).await,
                    Phase::Txn => cl.call(txn_request(c, i)).await,
                };
                if r.result == Outcome::Ok {
                    stats.ok += 1;
                    stats.lat_us.push(t.elapsed().as_micros() as u64);
                } else {
                    stats.not_ok += 1;
                }
                i += 1;
            }
            anyhow::Ok(stats)
        }));
    }
    gather(tasks, start).await
}

struct Row {
    name: String,
    write: Stats,
    read: Stats,
}

async fn bench_ack(o: &Opts, ack: &str) -> Result<Row> {
    let dir = TmpDir::new(&ack.replace(':', "-"))?;
    let settings = format!("ack={ack},fsync={},failover=fenced,reads=leader", o.fsync);
    let (_procs, addrs) = start_cluster(&settings, &dir.0)?;
    let leader = find_leader(&addrs).await?;
    // Warm up: links and the leader's first entries.
    drive(&leader, 4, 1, Phase::Write).await?;
    let write = drive(&leader, o.clients, o.secs, Phase::Write).await?;
    let read = drive(&leader, o.clients, o.secs, Phase::Read).await?;
    Ok(Row {
        name: format!("ack={ack} fsync={}", o.fsync),
        write,
        read,
    })
}

/// A leaderless or multi-leader setting: every node takes writes, so the
/// clients go to the first.
async fn bench_mode(o: &Opts, mode: &str) -> Result<Row> {
    let dir = TmpDir::new("modes")?;
    let settings = format!("{mode},fsync={}", o.fsync);
    let (_procs, addrs) = start_cluster(&settings, &dir.0)?;
    let node = wait_serving(&addrs[0]).await?;
    drive(&node, 4, 1, Phase::Write).await?;
    let write = drive(&node, o.clients, o.secs, Phase::Write).await?;
    let read = drive(&node, o.clients, o.secs, Phase::Read).await?;
    Ok(Row {
        name: settings,
        write,
        read,
    })
}

/// `addr` once it answers its status.
async fn wait_serving(addr: &str) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(mut c) = Client::connect(addr, Duration::from_millis(500)).await {
            if c.status().await.status.is_some() {
                return Ok(addr.to_string());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{addr} never answered its status")
}

/// Transactions per second at `isolation` on a fresh cluster.
async fn bench_txn(o: &Opts, isolation: &str) -> Result<Stats> {
    let dir = TmpDir::new(isolation)?;
    let settings = format!(
        "ack=majority,fsync={},failover=fenced,reads=leader,isolation={isolation}",
        o.fsync
    );
    let (_procs, addrs) = start_cluster(&settings, &dir.0)?;
    let leader = find_leader(&addrs).await?;
    drive(&leader, 4, 1, Phase::Txn).await?;
    drive(&leader, o.clients, o.secs, Phase::Txn).await
}

/// The transaction rows, alternating the two levels round by round so
/// the machine's drift touches both alike.
async fn txn_rows(o: &Opts) -> Result<()> {
    let mut rows = Vec::new();
    for round in 1..=o.txn_rounds {
        for isolation in ["serializable", "snapshot"] {
            eprintln!("benchmarking transactions, isolation={isolation}, round {round} ...");
            rows.push((round, isolation, bench_txn(o, isolation).await?));
        }
    }
    println!(
        "transactions of 4 micro-ops (r a, w a, r b, w b), ack=majority fsync={}, {} clients",
        o.fsync, o.clients
    );
    println!("| round | isolation | txns/s | p50 ms | p99 ms | not ok |");
    println!("|---|---|---|---|---|---|");
    for (round, isolation, mut s) in rows {
        let (rate, p50, p99) = (s.rate(), s.pct_ms(0.5), s.pct_ms(0.99));
        println!(
            "| {round} | {isolation} | {rate:.0} | {p50:.2} | {p99:.2} | {} |",
            s.not_ok
        );
    }
    Ok(())
}

fn print_table(rows: &mut [Row], clients: usize) {
    println!("3 nodes on loopback, {clients} concurrent clients, one request at a time each");
    println!("| setting | writes/s | write p50 ms | write p99 ms | not ok | reads/s | read p50 ms | read p99 ms |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows.iter_mut() {
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {} | {:.0} | {:.2} | {:.2} |",
            r.name,
            r.write.rate(),
            r.write.pct_ms(0.5),
            r.write.pct_ms(0.99),
            r.write.not_ok + r.read.not_ok,
            r.read.rate(),
            r.read.pct_ms(0.5),
            r.read.pct_ms(0.99),
        );
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let o = <Opts as clap::Parser>::parse();
    let mut rows = Vec::new();
    let acks = if o.txn_only { &[][..] } else { &o.acks[..] };
    // `--acks ''` measures the other rows only.
    for ack in acks.iter().filter(|a| !a.is_empty()) {
        eprintln!("benchmarking ack={ack} ...");
        rows.push(bench_ack(&o, ack).await?);
    }
    let modes = o.modes.iter().filter(|m| !o.txn_only && m.as_str() != "none");
    for mode in modes {
        eprintln!("benchmarking {mode} ...");
        rows.push(bench_mode(&o, mode).await?);
    }
    if let Some(etcd) = o.etcd.as_ref().filter(|_| !o.txn_only) {
        eprintln!("benchmarking etcd at {} ...", etcd.display());
        rows.push(etcd_bench::run(etcd, o.clients, o.secs).await?);
    }
    if !rows.is_empty() {
        print_table(&mut rows, o.clients);
    }
    if o.txn_rounds > 0 {
        txn_rows(&o).await?;
    }
    Ok(())
}

mod etcd_bench {
    //! The same closed loop against a local 3-member etcd cluster, through
    //! etcd's gRPC API with the `etcd-client` crate (the way etcd's users
    //! reach it): each client has a connection of its own, as each of our
    //! server's clients has, and all of them talk to the leader, as ours
    //! do. Writes are `Put`, reads linearizable `Range`s.
    use super::*;
    use etcd_client::Client as Etcd;

    fn start(etcd: &Path, dir: &Path) -> Result<(Procs, Vec<String>)> {
        let ids = ["e1", "e2", "e3"];
        let client: Vec<String> = ids
            .iter()
            .map(|_| free_port().map(|p| format!("127.0.0.1:{p}")))
            .collect::<Result<_>>()?;
        let peer: Vec<String> = ids
            .iter()
            .map(|_| free_port().map(|p| format!("127.0.0.1:{p}")))
            .collect::<Result<_>>()?;
        let initial: Vec<String> = ids
            .iter()
            .zip(&peer)
            .map(|(id, p)| format!("{id}=http://{p}"))
            .collect();
        let mut procs = Procs(Vec::new());
        for (i, id) in ids.iter().enumerate() {
            let child = Command::new(etcd)
                .args(["--name", id])
                .arg("--data-dir")
                .arg(dir.join(id))
                .args(["--listen-client-urls", &format!("http://{}", client[i])])
                .args(["--advertise-client-urls", &format!("http://{}", client[i])])
                .args(["--listen-peer-urls", &format!("http://{}", peer[i])])
                .args(["--initial-advertise-peer-urls", &format!("http://{}", peer[i])])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-state", "new"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting etcd")?;
            procs.0.push(child);
        }
        Ok((procs, client))
    }

    async fn connect(addr: &str) -> Result<Etcd> {
        let opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(5));
        Etcd::connect([format!("http://{addr}")], Some(opts))
            .await
            .with_context(|| format!("connecting to etcd at {addr}"))
    }

    async fn drive(addr: &str, clients: usize, secs: u64, write: bool) -> Result<Stats> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..clients {
            let addr = addr.to_string();
            tasks.push(tokio::spawn(async move {
                let mut st = Stats::default();
                let mut etcd = connect(&addr).await?;
                let mut i = 0u64;
                while Instant::now() < deadline {
                    let key = format!("c{c}-k{}", i % 64);
                    let t = Instant::now();
                    let ok = if write {
                        etcd.put(key, i.to_string(), None).await.is_ok()
                    } else {
                        etcd.get(key, None).await.is_ok()
                    };
                    if ok {
                        st.ok += 1;
                        st.lat_us.push(t.elapsed().as_micros() as u64);
                    } else {
                        st.not_ok += 1;
                    }
                    i += 1;
                }
                anyhow::Ok(st)
            }));
        }
        gather(tasks, start).await
    }

    /// The leader's client address, once a write has gone through: the
    /// member whose id is the leader its status names.
    async fn wait_leader(addrs: &[String]) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            for a in addrs {
                if let Some(leader) = leader_if(a).await {
                    return Ok(leader);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("etcd cluster never became ready")
    }

    /// `addr` if that member is the leader and takes a write.
    async fn leader_if(addr: &str) -> Option<String> {
        let mut etcd = connect(addr).await.ok()?;
        let status = etcd.status().await.ok()?;
        let me = status.header()?.member_id();
        if status.leader() != me {
            return None;
        }
        etcd.put("w", "1", None).await.ok()?;
        Some(addr.to_owned())
    }

    pub async fn run(etcd: &Path, clients: usize, secs: u64) -> Result<Row> {
        let dir = TmpDir::new("etcd")?;
        let (_procs, addrs) = start(etcd, &dir.0)?;
        let addr = wait_leader(&addrs).await?;
        // Warm up, as for our server: connections and the first entries.
        drive(&addr, 4, 1, true).await?;
        let write = drive(&addr, clients, secs, true).await?;
        let read = drive(&addr, clients, secs, false).await?;
        Ok(Row {
            name: "etcd (3 members, gRPC, default: fsync, linearizable reads)".into(),
            write,
            read,
        })
    }
}
