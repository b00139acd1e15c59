//! How fast the transactional checker is, as a table: list-append histories
//! of 100,000 and 1,000,000 transactions (4 micro-ops each, 1,000 keys in
//! use at a time, 20 processes), generated from a strict-serializable
//! execution with a fixed seed, then written to JSONL, streamed back, and
//! checked under strict serializability (the default: every edge kind).
//!
//! `cargo bench -p faultline-txn --bench txn` prints one row per size:
//! seconds to read the file into the checker's form (`parse`) and to check
//! it, CPU seconds for both (on a shared machine wall time says more about
//! the neighbours), the peak resident memory of that size alone, and the
//! CPU time against the first size's; each size is run twice and the run
//! with the least CPU time shown. `-- 10000 50000` picks other sizes;
//! `-- --via-history` reads through a whole `History` first, as
//! `faultline check` does, for comparison.
//!
//! As in Jepsen's list-append workload, a key takes at most
//! [`WRITES_PER_KEY`] appends and is then retired for a fresh one, so reads
//! stay short however long the history.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use faultline_histories::{Event, EventType, Process, ReadLimits, F};
use faultline_testkit::TestRng;
use faultline_txn::{Config, Validity};
use rand::Rng;
use serde_json::{json, Value};

const KEYS: usize = 1_000;
const PROCESSES: usize = 20;
const MOPS: usize = 4;
const WRITES_PER_KEY: usize = 32;
const SEED: u64 = 15;
/// Runs of each size; the table shows the one that took the least CPU.
const RUNS: usize = 2;

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
    fn plan(&mut self, rng: &mut TestRng) -> Vec<(bool, u64, u64)> {
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
    let mut rng = faultline_testkit::rng(SEED);
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

/// Resets the process's peak resident size (VmHWM) to what it holds now,
/// so each size's row shows its own peak (Linux 4.0 and later).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// One row of the table.
struct Row {
    n: usize,
    parse_s: f64,
    check_s: f64,
    cpu_s: f64,
    peak_mib: f64,
}

/// Reads and checks the history at `path`: streamed straight into the
/// checker's compact form, or (`via_history`) through a whole `History`
/// first, as `faultline check` reads any file.
fn measure(n: usize, path: &Path, via_history: bool) -> Row {
    reset_peak();
    let (t0, cpu0) = (Instant::now(), cpu_s());
    let txns = if via_history {
        let history = faultline_histories::read_history_file(path).expect("reads back");
        faultline_txn::parse::parse(&history).expect("parses")
    } else {
        faultline_txn::stream::read_file(path, &ReadLimits::default())
            .expect("reads back")
            .txns
    };
    let parse_s = t0.elapsed().as_secs_f64();
    assert_eq!(txns.txns.len(), n, "every transaction read");
    let t1 = Instant::now();
    let a = faultline_txn::check_txns(&txns, &Config::default()).expect("checkable");
    let check_s = t1.elapsed().as_secs_f64();
    let cpu_s = cpu_s() - cpu0;
    // Not vacuous: a serializable execution, every transaction committed
    // and looked at.
    assert_eq!(a.valid, Validity::Valid, "{:?}", a.anomaly_types);
    assert_eq!((a.stats.committed, a.covered_ops.len()), (n, n));
    assert!(a.stats.edges >= n, "a graph with edges: {}", a.stats.edges);
    Row {
        n,
        parse_s,
        check_s,
        cpu_s,
        peak_mib: status_mib("VmHWM"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let via_history = args.iter().any(|a| a == "--via-history");
    let sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() {
        vec![100_000, 1_000_000]
    } else {
        sizes
    };
    let dir = std::env::temp_dir().join(format!("faultline-txn-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    println!(
        "seed {SEED}; {KEYS} keys in use, {WRITES_PER_KEY} appends per key, {PROCESSES} processes, {MOPS} micro-ops; \
         read {}",
        if via_history {
            "through a whole History"
        } else {
            "streamed from the file"
        }
    );
    println!(
        "{:>9} {:>9} {:>9} {:>9} {:>8} {:>9} {:>9} {:>13}",
        "txns", "parse s", "check s", "total s", "cpu s", "txn/s", "peak MiB", "cpu ratio"
    );
    let mut first: Option<Row> = None;
    for n in sizes {
        let path = dir.join(format!("h{n}.jsonl"));
        generate(n, &path);
        // The faster of two runs: on a machine shared with other work one
        // run's CPU time can swell with its neighbours' cache misses.
        let row = (0..RUNS)
            .map(|_| measure(n, &path, via_history))
            .min_by(|a, b| a.cpu_s.total_cmp(&b.cpu_s))
            .expect("at least one run");
        let total_s = row.parse_s + row.check_s;
        let ratio = first.as_ref().map_or(String::new(), |f| {
            format!("{:.1}x for {:.0}x", row.cpu_s / f.cpu_s, row.n as f64 / f.n as f64)
        });
        println!(
            "{:>9} {:>9.3} {:>9.3} {total_s:>9.3} {:>8.2} {:>9.0} {:>9.0} {ratio:>13}",
            row.n,
            row.parse_s,
            row.check_s,
            row.cpu_s,
            row.n as f64 / total_s,
            row.peak_mib
        );
        first.get_or_insert(row);
        let _ = std::fs::remove_file(&path);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
