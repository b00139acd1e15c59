//! Benchmarks of the linearizability checker, against the targets set for
//! it (in brackets):
//!
//! - `etcd_all`: all 103 Jepsen etcd logs, checked one after another (< 70 ms);
//! - `kv_c10_{ok,bad}_one_map`: Porcupine's kv c10 histories checked as one
//!   map, without the per-key split (< 300 ms);
//! - `crashed_writes_24_{valid,invalid}`: 24 concurrent crashed writes then
//!   a read (< 1 s; a search that tries orders naively gives up near 20);
//! - `FAULTLINE_BENCH_HEAVY=1`: a generated key-value history of 1,000,000
//!   operations (1,000 keys, 20 processes, 1% crashed), written to a temp
//!   JSONL file, then read and checked once, printing read time, check
//!   time and peak memory (VmHWM) (< 3 s, < 1 GB).
//!
//! Measured on the project's 2-core VM, criterion medians. Idle (load under
//! 1), 2026-11-22: `etcd_all` 22.5 ms, c10-ok 124 ms, c10-bad 177 ms, 24
//! crashed writes 12 us valid / 20 us invalid; the heavy run 1.12 s (read
//! 0.82 s, check 0.30 s), 289 MiB peak. With six other engineers' builds on
//! the same two cores (load 10), 2026-12-05: 78.6 ms, 588 ms, 602 ms, 40 us
//! / 78 us: about 3.5 times slower, the machine's share, not the code's.
//! Porcupine is not run here, so no ratio to it is quoted: its own
//! per-file check times (another run, another day) are in
//! `testdata/porcupine/porcupine-timings.tsv` for a reader who measures
//! faultline the same way.
//!
//! Parsing is outside the timed loop except in the heavy run. The Porcupine
//! data is what `ci/testdata` fetches (found by `faultline_testdata`); its
//! benches are skipped with a message when it is absent.

use std::io::Write;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use faultline_checkers::linear::{check, Config, ModelSpec, NilReads};
use faultline_checkers::Validity;
use faultline_histories::import::porcupine::{read_etcd_log, read_kv_log};
use faultline_histories::{read_history_file, Event, EventType, History, Process, F};
use faultline_testkit::Below;
use serde_json::{json, Value};

fn cas_register() -> Config {
    Config {
        model: ModelSpec::CasRegister {
            initial: Value::Null,
            nil_reads: NilReads::Value,
        },
        ..Config::default()
    }
}

fn etcd(c: &mut Criterion) {
    let Some(dir) = faultline_testdata::porcupine() else {
        eprintln!("skipping etcd bench: no Porcupine data");
        return;
    };
    let logs: Vec<History> = (0..103)
        .map(|i| read_etcd_log(&dir.join(format!("jepsen/etcd_{i:03}.log"))).expect("etcd log"))
        .collect();
    let config = cas_register();
    c.bench_function("etcd_all", |b| {
        b.iter(|| {
            logs.iter()
                .map(|h| check(h, &config).valid == Validity::Valid)
                .filter(|v| *v)
                .count()
        })
    });
}

fn kv_one_map(c: &mut Criterion) {
    let Some(dir) = faultline_testdata::porcupine() else {
        eprintln!("skipping kv bench: no Porcupine data");
        return;
    };
    let mut group = c.benchmark_group("kv_c10");
    group.sample_size(10);
    for name in ["c10-ok", "c10-bad"] {
        let h = read_kv_log(&dir.join(format!("kv/{name}.txt"))).expect("kv log");
        let config = Config {
            model: ModelSpec::Kv,
            split_by_key: false,
            ..Config::default()
        };
        group.bench_function(format!("{name}_one_map"), |b| b.iter(|| check(&h, &config).valid));
    }
    group.finish();
}

/// 24 concurrent writes that all crash, then one read of `read`.
fn crashed_writes(read: u64) -> History {
    let mut events = Vec::new();
    for p in 0..24u64 {
        events.push(Event::new(p, p, Process::Client(p), EventType::Invoke, F::Write, json!(p + 1)).with_key("r"));
    }
    for p in 0..24u64 {
        events.push(
            Event::new(
                24 + p,
                24 + p,
                Process::Client(p),
                EventType::Info,
                F::Write,
                json!(p + 1),
            )
            .with_key("r"),
        );
    }
    events.push(Event::new(48, 48, Process::Client(24), EventType::Invoke, F::Read, Value::Null).with_key("r"));
    events.push(Event::new(49, 49, Process::Client(24), EventType::Ok, F::Read, json!(read)).with_key("r"));
    History::from_events(events).expect("well formed")
}

fn crashed(c: &mut Criterion) {
    let config = Config {
        model: ModelSpec::Register {
            initial: Value::Null,
            nil_reads: NilReads::Value,
        },
        ..Config::default()
    };
    for (name, read) in [("crashed_writes_24_valid", 17), ("crashed_writes_24_invalid", 99)] {
        let h = crashed_writes(read);
        c.bench_function(name, |b| b.iter(|| check(&h, &config).valid));
    }
}

/// An operation in flight in the simulated store.
struct InFlight {
    process: u64,
    key: u64,
    f: &'static str,
    input: String,
    output: Option<String>,
    /// Ends `info`; `applied` says whether it took effect first.
    crash: bool,
    applied: bool,
}

/// Writes a linearizable key-value history of `ops` operations to `out`:
/// `clients` processes on `keys` keys doing get / put / append; each
/// operation takes effect atomically at some point between its invoke and
/// its completion; 1% crash (`info`), half of them having taken effect.
#[allow(
    clippy::too_many_lines,
    reason = "one simulation loop whose steps share the clients' state; split, it would pass that state around"
)]
fn generate(out: &mut impl Write, ops: u64, clients: u64, keys: u64, seed: u64) -> std::io::Result<()> {
    let mut rng = faultline_testkit::rng(seed);
    let mut store: Vec<String> = vec![String::new(); keys as usize];
    let mut slots: Vec<Option<InFlight>> = (0..clients).map(|_| None).collect();
    let mut next_process = clients;
    let mut processes: Vec<u64> = (0..clients).collect();
    let (mut index, mut invoked, mut unique) = (0u64, 0u64, 0u64);
    while invoked < ops || slots.iter().any(Option::is_some) {
        let c = rng.below(clients) as usize;
        index += 1;
        match slots[c].take() {
            None if invoked < ops => {
                invoked += 1;
                unique += 1;
                let key = rng.below(keys);
                let (f, input) = match rng.below(10) {
                    0..=4 => ("read", String::new()),
                    5..=8 => ("write", format!("v{unique}")),
                    _ => ("append", format!("+{unique}")),
                };
                let value = if f == "read" {
                    "null".to_owned()
                } else {
                    format!("\"{input}\"")
                };
                writeln!(
                    out,
                    r#"{{"index":{index},"time":{index},"process":{},"type":"invoke","f":"{f}","key":{key},"value":{value}}}"#,
                    processes[c]
                )?;
                let crash = rng.below(100) == 0;
                slots[c] = Some(InFlight {
                    process: processes[c],
                    key,
                    f,
                    input,
                    output: None,
                    crash,
                    applied: !crash || rng.below(2) == 0,
                });
            }
            None => {}
            Some(mut op) if op.output.is_none() => {
                let k = op.key as usize;
                match op.f {
                    "read" => op.output = Some(store[k].clone()),
                    _ if !op.applied => {}
                    "write" => store[k] = op.input.clone(),
                    _ => store[k].push_str(&op.input),
                }
                op.output.get_or_insert_with(|| op.input.clone());
                slots[c] = Some(op);
            }
            Some(op) => {
                let crashed = op.crash;
                let (ty, value) = if crashed {
                    ("info", format!("\"{}\"", op.input))
                } else {
                    ("ok", format!("\"{}\"", op.output.unwrap_or_default()))
                };
                writeln!(
                    out,
                    r#"{{"index":{index},"time":{index},"process":{},"type":"{ty}","f":"{}","key":{},"value":{value}}}"#,
                    op.process, op.f, op.key
                )?;
                if crashed {
                    processes[c] = next_process;
                    next_process += 1;
                }
            }
        }
    }
    Ok(())
}

/// Peak resident memory of this process, from `/proc/self/status`.
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// CPU time (user + system) this process has used so far, from
/// `/proc/self/stat`, assuming the usual 100 clock ticks per second.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// The 1M-operation run: generate, then time reading and checking once.
fn heavy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("kv-1m.jsonl");
    let t = Instant::now();
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
        generate(&mut out, 1_000_000, 20, 1_000, 42).expect("write history");
        out.flush().expect("flush");
    }
    eprintln!("generated {} in {:.2?}", path.display(), t.elapsed());
    let base = peak_rss_mib();
    let cpu0 = cpu_seconds();
    let t = Instant::now();
    let h = read_history_file(&path).expect("read history");
    let read = t.elapsed();
    let cpu1 = cpu_seconds();
    let config = Config {
        model: ModelSpec::Kv,
        ..Config::default()
    };
    let t = Instant::now();
    let v = check(&h, &config);
    let checked = t.elapsed();
    let cpu2 = cpu_seconds();
    if let (Some(a), Some(b), Some(c)) = (cpu0, cpu1, cpu2) {
        eprintln!("CPU time: read {:.2} s, check {:.2} s (both threads)", b - a, c - b);
    }
    eprintln!(
        "kv 1M ops, {} keys: read {read:.2?}, check {checked:.2?}, total {:.2?}; verdict {:?} ({} ops); peak RSS {:?} MiB (before reading: {:?} MiB)",
        h.keys.len(),
        read + checked,
        v.valid,
        v.ops,
        peak_rss_mib(),
        base
    );
    assert_eq!(v.valid, Validity::Valid, "{:?}", v.unknown_reason);
    planted_bug(h, &config);
}

/// The same history with one read in the middle corrupted: the checker
/// must find it, with small evidence, about as fast.
fn planted_bug(mut h: History, config: &Config) {
    let middle = h.ops.len() / 2;
    let Some(op) = h.ops[middle..]
        .iter_mut()
        .find(|o| o.f == F::Read && o.output.as_str().is_some_and(|s| !s.is_empty()))
    else {
        return;
    };
    op.output = json!("never written");
    let t = Instant::now();
    let v = check(&h, config);
    let a = v.anomalies.first();
    eprintln!(
        "kv 1M ops with one corrupted read: check {:.2?}; verdict {:?}, {} anomalies, proof of {} ops",
        t.elapsed(),
        v.valid,
        v.anomalies.len(),
        a.map_or(0, |a| a.ops.len())
    );
    assert_eq!(v.valid, Validity::Invalid);
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = etcd, kv_one_map, crashed
}

fn main() {
    if std::env::var("FAULTLINE_BENCH_HEAVY").is_ok_and(|v| v == "1") {
        heavy();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
