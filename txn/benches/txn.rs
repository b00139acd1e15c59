//! How fast the transactional checker is, as a table: list-append histories
//! of 100,000 and 1,000,000 transactions (4 micro-ops each, 1,000 keys in
//! use at a time, 20 processes), generated from a strict-serializable
//! execution with a fixed seed, then written to JSONL, read back, and
//! checked under strict serializability (the default: every edge kind).
//!
//! `cargo bench -p faultline-txn --bench txn` prints one row per size;
//! `-- 10000 50000` picks other sizes. Peak memory is the process's high
//! water mark (VmHWM) after each size, so sizes run smallest first.
//!
//! As in Jepsen's list-append workload, a key takes at most
//! [`WRITES_PER_KEY`] appends and is then retired for a fresh one, so reads
//! stay short however long the history.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use faultline_histories::{Event, EventType, Process, F};
use faultline_txn::{Config, Validity};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

const KEYS: usize = 1_000;
const PROCESSES: usize = 20;
const MOPS: usize = 4;
const WRITES_PER_KEY: usize = 32;
const SEED: u64 = 15;

/// The keys in use and the state of every key.
struct Db {
    active: Vec<u64>,
    lists: Vec<Vec<u64>>,
    next_key: u64,
    next_value: u64,
}

impl Db {
    fn new() -> Db {
        Db {
            active: (0..KEYS as u64).collect(),
            lists: vec![Vec::new(); KEYS],
            next_key: KEYS as u64,
            next_value: 0,
        }
    }

    /// Chooses the micro-ops of a new transaction (reads not yet known).
    fn plan(&mut self, rng: &mut ChaCha8Rng) -> Vec<(bool, u64, u64)> {
        (0..MOPS)
            .map(|_| {
                let k = self.active[rng.gen_range(0..KEYS)];
                if rng.gen_bool(0.5) {
                    self.next_value += 1;
                    (true, k, self.next_value)
                } else {
                    (false, k, 0)
                }
            })
            .collect()
    }

    /// Runs a transaction at once (its serialization point) and returns
    /// its completed micro-ops.
    fn execute(&mut self, mops: &[(bool, u64, u64)]) -> Value {
        let done = mops
            .iter()
            .map(|&(append, k, v)| {
                let list = &mut self.lists[k as usize];
                if append {
                    list.push(v);
                    json!(["append", k, v])
                } else {
                    json!(["r", k, list])
                }
            })
            .collect();
        for &(append, k, _) in mops {
            if append && self.lists[k as usize].len() >= WRITES_PER_KEY {
                self.retire(k);
            }
        }
        Value::Array(done)
    }

    fn retire(&mut self, k: u64) {
        if let Some(slot) = self.active.iter().position(|&a| a == k) {
            self.active[slot] = self.next_key;
            self.lists.push(Vec::new());
            self.next_key += 1;
        }
    }
}

fn invoked(mops: &[(bool, u64, u64)]) -> Value {
    Value::Array(
        mops.iter()
            .map(|&(append, k, v)| {
                if append {
                    json!(["append", k, v])
                } else {
                    json!(["r", k, null])
                }
            })
            .collect(),
    )
}

/// Writes the events of `n` transactions as JSONL, one at a time (so the
/// generator's memory is not counted in the checker's peak): each process
/// always has one in flight, and a random one of them executes and
/// completes next.
fn generate(n: usize, path: &Path) {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let mut db = Db::new();
    let mut events = Jsonl {
        out: std::io::BufWriter::new(std::fs::File::create(path).expect("bench file")),
        written: 0,
    };
    let push = |events: &mut Jsonl, p: usize, kind, v| {
        let i = events.written;
        events.write(&Event::new(i, i * 1000, Process::Client(p as u64), kind, F::Txn, v));
    };
    let mut flight: Vec<Option<Vec<(bool, u64, u64)>>> = vec![None; PROCESSES];
    let mut invoked_n = 0;
    for (p, slot) in flight.iter_mut().enumerate().take(n) {
        let plan = db.plan(&mut rng);
        push(&mut events, p, EventType::Invoke, invoked(&plan));
        *slot = Some(plan);
        invoked_n += 1;
    }
    while flight.iter().any(Option::is_some) {
        let p = rng.gen_range(0..PROCESSES);
        let Some(plan) = flight[p].take() else { continue };
        let done = db.execute(&plan);
        push(&mut events, p, EventType::Ok, done);
        if invoked_n < n {
            let plan = db.plan(&mut rng);
            push(&mut events, p, EventType::Invoke, invoked(&plan));
            flight[p] = Some(plan);
            invoked_n += 1;
        }
    }
    events.out.flush().expect("flush");
}

/// A JSONL file being written.
struct Jsonl {
    out: std::io::BufWriter<std::fs::File>,
    written: u64,
}

impl Jsonl {
    fn write(&mut self, e: &Event) {
        serde_json::to_writer(&mut self.out, e).expect("write");
        self.out.write_all(b"\n").expect("write");
        self.written += 1;
    }
}

/// A line of /proc/self/status in MiB: `VmHWM` (peak) or `VmRSS` (now).
fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| {
            v.trim_start_matches(':')
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// CPU seconds (user + system) this process has used: on a machine shared
/// with other work, wall time says more about the neighbours.
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command's closing parenthesis, from the state on;
    // utime and stime are the 12th and 13th, in clock ticks (100 per second
    // on Linux).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (tick(11) + tick(12)) / 100.0
}

fn main() {
    let sizes: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() {
        vec![100_000, 1_000_000]
    } else {
        sizes
    };
    let dir = std::env::temp_dir().join(format!("faultline-txn-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    println!(
        "seed {SEED}; {KEYS} keys in use, {WRITES_PER_KEY} appends per key, {PROCESSES} processes, {MOPS} micro-ops"
    );
    println!(
        "{:>9} {:>11} {:>10} {:>12} {:>11} {:>9} {:>12} {:>10} {:>8}",
        "txns", "read jsonl", "txn parse", "parse+check", "(cpu)", "txn/s", "history MiB", "peak MiB", "verdict"
    );
    let mut first: Option<(usize, f64)> = None;
    for n in sizes {
        let path = dir.join(format!("h{n}.jsonl"));
        generate(n, &path);
        let t0 = Instant::now();
        let history = faultline_histories::read_history_file(&path).expect("reads back");
        let read_s = t0.elapsed().as_secs_f64();
        let history_mib = status_mib("VmRSS");
        let (t1, cpu1) = (Instant::now(), cpu_s());
        let txns = faultline_txn::parse::parse(&history).expect("parses");
        let parse_s = t1.elapsed().as_secs_f64();
        let a = faultline_txn::check_txns(&txns, &Config::default()).expect("checkable");
        let check_s = t1.elapsed().as_secs_f64();
        let check_cpu_s = cpu_s() - cpu1;
        assert_eq!(
            a.valid,
            Validity::Valid,
            "a serializable execution: {:?}",
            a.anomaly_types
        );
        println!(
            "{n:>9} {read_s:>10.3}s {parse_s:>9.3}s {check_s:>11.3}s {check_cpu_s:>10.2}s {:>9.0} {history_mib:>12.0} {:>10.0} {:>8?}",
            n as f64 / check_s,
            status_mib("VmHWM"),
            a.valid
        );
        if let Some((n0, t0)) = first {
            println!(
                "{:>9} {:.1}x the transactions took {:.1}x the CPU time (parse+check)",
                "",
                n as f64 / n0 as f64,
                check_cpu_s / t0
            );
        } else {
            first = Some((n, check_cpu_s));
        }
        drop((history, txns));
        let _ = std::fs::remove_file(&path);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
