//! How long every session, prefix, lost-write and convergence checker takes,
//! together, on a 1,000,000-operation history (parsing excluded). The target
//! is under 1 s on 2 cores, growing as n log n or better: the run prints the
//! figure for 250,000 and 1,000,000 operations and their ratio, then hands
//! the 1,000,000-operation case to criterion.
//!
//! The history comes from a simulated store (one leader log, two followers
//! that lag, reads routed by log position so the sessions' guarantees hold):
//! register writes and reads, list appends and reads (list keys retire after
//! [`APPENDS_PER_LIST`] appends, as Elle's workloads do), multi-key reads,
//! and final reads of every key on every node. A valid history is the worst
//! case: no checker can stop early.
//!
//! Measured 2026-11-22 on the project's 2-core VM, idle (load under 1):
//! 1,006,524 operations in 634 ms (criterion median; best of five 612 ms,
//! 970 ms of CPU on both threads), 254,073 operations in 125 ms: 4x the
//! operations took 4.9x the time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use faultline_checkers::session;
use faultline_histories::{Event, EventType, History, Process, F};
use faultline_testkit::{Below, TestRng};
use serde_json::{json, Value};

const APPENDS_PER_LIST: usize = 10;
const REGISTER_KEYS: u64 = 1000;
const LIST_KEYS_ACTIVE: u64 = 200;
const CLIENTS: u64 = 100;
const REPLICAS: usize = 3;

/// One entry of the leader's log.
#[derive(Clone)]
enum Entry {
    Write(String, i64),
    Append(String, i64),
}

/// A replica: how far it has applied the log, and the resulting state.
#[derive(Default)]
struct Replica {
    applied: usize,
    registers: HashMap<String, i64>,
    lists: HashMap<String, Vec<i64>>,
}

impl Replica {
    fn catch_up(&mut self, log: &[Entry], upto: usize) {
        while self.applied < upto.min(log.len()) {
            match &log[self.applied] {
                Entry::Write(k, v) => {
                    self.registers.insert(k.clone(), *v);
                }
                Entry::Append(k, v) => self.lists.entry(k.clone()).or_default().push(*v),
            }
            self.applied += 1;
        }
    }

    fn read(&self, k: &str, list: bool) -> Value {
        if list {
            json!(self.lists.get(k).cloned().unwrap_or_default())
        } else {
            self.registers.get(k).map_or(Value::Null, |v| json!(v))
        }
    }
}

struct Gen {
    rng: TestRng,
    log: Vec<Entry>,
    replicas: Vec<Replica>,
    seen: Vec<usize>,
    /// Active list keys and how many appends each has had.
    lists: Vec<(String, usize)>,
    next_list: u64,
    events: Vec<Event>,
    time: u64,
    value: i64,
    /// Faults healed: every read from now on is a final read.
    healed: bool,
}

impl Gen {
    fn new() -> Gen {
        Gen {
            rng: faultline_testkit::rng(42),
            log: Vec::new(),
            replicas: (0..REPLICAS).map(|_| Replica::default()).collect(),
            seen: vec![0; CLIENTS as usize],
            lists: (0..LIST_KEYS_ACTIVE).map(|i| (format!("l{i}"), 0)).collect(),
            next_list: LIST_KEYS_ACTIVE,
            events: Vec::new(),
            time: 0,
            value: 0,
            healed: false,
        }
    }

    fn emit(&mut self, c: u64, f: F, key: Option<&str>, input: Value, output: Value, node: usize) {
        let is_final = self.healed;
        let index = self.events.len() as u64;
        let mut inv = Event::new(
            index,
            self.time,
            Process::Client(c),
            EventType::Invoke,
            f.clone(),
            input,
        );
        let mut ok = Event::new(index + 1, self.time + 500, Process::Client(c), EventType::Ok, f, output);
        if let Some(k) = key {
            inv = inv.with_key(k);
            ok = ok.with_key(k);
        }
        ok.node = Some(format!("n{node}"));
        inv.is_final = is_final;
        ok.is_final = is_final;
        self.events.extend([inv, ok]);
        self.time += 1000;
    }

    /// The replica a read of session `c` goes to: one that has applied what
    /// the session saw, else the leader.
    fn route(&mut self, c: u64) -> usize {
        let r = self.rng.below(REPLICAS as u64) as usize;
        if self.replicas[r].applied >= self.seen[c as usize] {
            r
        } else {
            0
        }
    }

    fn step(&mut self) {
        let lag = 1 + self.rng.below(REPLICAS as u64 - 1) as usize;
        let upto = self.replicas[lag].applied + self.rng.below(4) as usize;
        let log = std::mem::take(&mut self.log);
        self.replicas[lag].catch_up(&log, upto);
        self.log = log;
        let c = self.rng.below(CLIENTS);
        match self.rng.below(20) {
            0..=4 => self.write(c, false),
            5..=7 => self.write(c, true),
            8..=12 => self.read(c, false),
            13..=17 => self.read(c, true),
            _ => self.multi_read(c),
        }
    }

    fn register_key(&mut self) -> String {
        format!("r{}", self.rng.below(REGISTER_KEYS))
    }

    fn list_key(&mut self) -> usize {
        self.rng.below(LIST_KEYS_ACTIVE) as usize
    }

    fn write(&mut self, c: u64, list: bool) {
        self.value += 1;
        let v = self.value;
        let (k, entry, f) = if list {
            let i = self.list_key();
            if self.lists[i].1 == APPENDS_PER_LIST {
                self.lists[i] = (format!("l{}", self.next_list), 0);
                self.next_list += 1;
            }
            self.lists[i].1 += 1;
            let k = self.lists[i].0.clone();
            (k.clone(), Entry::Append(k, v), F::Append)
        } else {
            let k = self.register_key();
            (k.clone(), Entry::Write(k, v), F::Write)
        };
        self.log.push(entry);
        let log = std::mem::take(&mut self.log);
        self.replicas[0].catch_up(&log, log.len());
        self.log = log;
        self.seen[c as usize] = self.log.len();
        self.emit(c, f, Some(&k), json!(v), json!(v), 0);
    }

    fn read(&mut self, c: u64, list: bool) {
        let k = if list {
            let i = self.list_key();
            self.lists[i].0.clone()
        } else {
            self.register_key()
        };
        let r = self.route(c);
        let v = self.replicas[r].read(&k, list);
        self.seen[c as usize] = self.seen[c as usize].max(self.replicas[r].applied);
        self.emit(c, F::Read, Some(&k), Value::Null, v, r);
    }

    /// Three registers and a list, from one replica.
    fn multi_read(&mut self, c: u64) {
        let r = self.route(c);
        let i = self.list_key();
        let mut keys: Vec<(String, bool)> = (0..3).map(|_| (self.register_key(), false)).collect();
        keys.push((self.lists[i].0.clone(), true));
        keys.sort();
        keys.dedup();
        let input: Vec<Value> = keys.iter().map(|(k, _)| json!(["r", k, null])).collect();
        let output: Vec<Value> = keys
            .iter()
            .map(|(k, list)| json!(["r", k, self.replicas[r].read(k, *list)]))
            .collect();
        self.seen[c as usize] = self.seen[c as usize].max(self.replicas[r].applied);
        self.emit(c, F::Txn, None, json!(input), json!(output), r);
    }

    /// Heals: every replica catches up, then every key is read on every node.
    fn finals(&mut self) {
        let log = std::mem::take(&mut self.log);
        for r in &mut self.replicas {
            r.catch_up(&log, log.len());
        }
        self.log = log;
        self.healed = true;
        let mut keys: Vec<(String, bool)> = self.replicas[0].registers.keys().map(|k| (k.clone(), false)).collect();
        keys.extend(self.replicas[0].lists.keys().map(|k| (k.clone(), true)));
        keys.sort();
        for (i, (k, list)) in keys.iter().enumerate() {
            for r in 0..REPLICAS {
                let v = self.replicas[r].read(k, *list);
                let c = CLIENTS + (i * REPLICAS + r) as u64 % 64;
                self.emit(c, F::Read, Some(k), Value::Null, v, r);
            }
        }
    }
}

/// A valid history of about `ops` operations, final reads included.
fn history(ops: usize) -> History {
    let mut g = Gen::new();
    // Final reads: about 16,000 keys per million operations, on 3 nodes.
    let finals = ops / 25;
    for _ in 0..ops - finals {
        g.step();
    }
    g.finals();
    History::from_events(g.events).expect("the generator writes valid histories")
}

/// CPU time this process has used (user + system), from `/proc/self/stat`:
/// on a shared machine, wall time alone overstates the cost.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // The kernel's USER_HZ is 100 on every Linux this runs on.
    Some(Duration::from_millis(ticks * 10))
}

/// The machine's one-minute load average, for reading the figures: on a
/// shared machine they are as good as the cores that were free.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// Runs every checker once and returns the wall time; prints each checker's
/// share when `verbose`.
fn timed(h: &History, verbose: bool) -> Duration {
    let cpu = cpu_time();
    let start = Instant::now();
    let verdicts = session::check_all(h, &[]).expect("all names");
    let took = start.elapsed();
    if verbose {
        let cpu = cpu
            .zip(cpu_time())
            .map(|(a, b)| b.saturating_sub(a).as_secs_f64() * 1e3);
        println!(
            "  {} operations: wall {:.0} ms, cpu {:.0} ms (both threads); one thread, phase by phase:",
            h.ops.len(),
            took.as_secs_f64() * 1e3,
            cpu.unwrap_or(f64::NAN)
        );
        let a = session::Analysis::new(h);
        println!("    shared tables: {:.0} ms", a.derive_time.as_secs_f64() * 1e3);
        for name in session::names() {
            let v = session::check_analysis(&a, name).expect("known name");
            println!("    {name}: {:.0} ms", v.elapsed_ms);
        }
    }
    for (name, v) in &verdicts {
        assert_eq!(
            v.valid,
            faultline_checkers::Validity::Valid,
            "{name}: {:?}",
            v.anomalies.first()
        );
    }
    took
}

fn report(h: &History) -> Duration {
    let best = (0..5).map(|i| timed(h, i == 0)).min().expect("five runs");
    println!(
        "session checkers, all together: {} operations in {:.0} ms (best of 5; load average {})",
        h.ops.len(),
        best.as_secs_f64() * 1e3,
        load_average()
    );
    best
}

fn bench(c: &mut Criterion) {
    let small = history(250_000);
    let t_small = report(&small);
    drop(small);
    let big = history(1_000_000);
    let t_big = report(&big);
    println!(
        "4x the operations took {:.2}x the time (n log n would be about 4.4x)",
        t_big.as_secs_f64() / t_small.as_secs_f64()
    );
    if std::env::var_os("SESSION_BENCH_FIGURES_ONLY").is_some() {
        return;
    }
    let mut group = c.benchmark_group("session");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    group.bench_function("all checkers, 1M operations", |b| {
        b.iter(|| session::check_all(&big, &[]).expect("all names"))
    });
    group.finish();
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
