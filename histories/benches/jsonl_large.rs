//! How fast, and in how much memory, the JSONL reader reads a large history:
//! 1,000,000 key-value operations (2,000,000 event lines) over 1,000 keys by
//! 20 workers, 1% of them ending `info` (the worker then goes on as a fresh
//! process, as the format requires). The budget for reading and checking
//! such a history is 3 s and 1 GB, so reading should take at most ~1.2 s.
//!
//! The history is generated once (deterministically, seed fixed) into
//! `$FAULTLINE_JSONL_LARGE` or the temporary directory, then read
//! `$FAULTLINE_JSONL_RUNS` times (default 3), line by line on one thread
//! (the baseline) and with `read_history_file`; `$FAULTLINE_JSONL_ONLY`
//! (`lines` or `threads`) keeps one of the two. It prints each time and the
//! process's peak resident memory; run it under `/usr/bin/time -v` for an
//! outside view:
//!
//! ```text
//! cargo bench -p faultline-histories --bench jsonl_large
//! /usr/bin/time -v target/release/deps/jsonl_large-* --bench
//! ```
//!
//! Measured 2026-11-22 on the project's 2-core VM, idle: the 197 MB file
//! read in 0.72 s of CPU, 198 MB peak resident memory.

use std::path::{Path, PathBuf};
use std::time::Instant;

use faultline_histories::{
    read_history_file, Event, EventType, Header, HistoryBuilder, JsonlReader, JsonlWriter, Line, Process, F,
};
use faultline_testkit::Below;
use serde_json::Value;

const OPS: u64 = 1_000_000;
const KEYS: u64 = 1_000;
const WORKERS: u64 = 20;
const SEED: u64 = 42;

/// An operation in flight: its invocation, to complete it from.
struct InFlight {
    process: u64,
    f: F,
    key: u64,
    value: Value,
}

/// Writes the history; returns the number of event lines.
fn generate(path: &Path) -> std::io::Result<u64> {
    let mut w = JsonlWriter::create(path)?;
    w.write_header(&Header {
        faultline_history: 1,
        test: Some("jsonl-large-bench".into()),
        seed: Some(SEED),
        ..Header::default()
    })?;
    let mut rng = faultline_testkit::rng(SEED);
    let mut workers: Vec<(u64, Option<InFlight>)> = (0..WORKERS).map(|p| (p, None)).collect();
    let mut last_written = vec![Value::Null; KEYS as usize];
    let (mut invoked, mut lines, mut time, mut next_value) = (0u64, 0u64, 0u64, 0u64);
    while invoked < OPS || workers.iter().any(|(_, op)| op.is_some()) {
        time += 1 + rng.below(1_000);
        let worker = rng.below(WORKERS) as usize;
        let (process, slot) = &mut workers[worker];
        let ev = match slot.take() {
            Some(op) => {
                let info = rng.below(100) == 0;
                let kind = if info { EventType::Info } else { EventType::Ok };
                let value = match (&op.f, info) {
                    (F::Read, false) => last_written[op.key as usize].clone(),
                    _ => op.value.clone(),
                };
                if op.f == F::Write && !info {
                    last_written[op.key as usize] = op.value.clone();
                }
                if info {
                    *process += WORKERS;
                }
                Event::new(lines, time, Process::Client(op.process), kind, op.f, value).with_key(op.key as i64)
            }
            None if invoked < OPS => {
                invoked += 1;
                let key = rng.below(KEYS);
                let (f, value) = if rng.below(2) == 0 {
                    (F::Read, Value::Null)
                } else {
                    next_value += 1;
                    (F::Write, Value::from(next_value))
                };
                *slot = Some(InFlight {
                    process: *process,
                    f: f.clone(),
                    key,
                    value: value.clone(),
                });
                Event::new(lines, time, Process::Client(*process), EventType::Invoke, f, value).with_key(key as i64)
            }
            None => continue,
        };
        w.write_unflushed(&ev)?;
        lines += 1;
    }
    w.flush()?;
    Ok(lines)
}

/// Parses every line with [`JsonlReader`] and pairs the events, on this
/// thread: the baseline for `read_history_file`'s threads.
fn read_line_by_line(path: &Path) -> usize {
    let file = std::io::BufReader::with_capacity(1 << 16, std::fs::File::open(path).expect("open"));
    let mut reader = JsonlReader::new(file, path);
    let mut builder = HistoryBuilder::default();
    let mut lines = 0;
    while let Some(line) = reader.next_line() {
        match line.expect("parse") {
            Line::Header(h) => builder.set_header(h),
            Line::Event(ev) => builder.push(ev).expect("pair"),
        }
        lines += 1;
    }
    std::hint::black_box(builder.finish());
    lines
}

/// The process's peak resident memory, from `/proc/self/status` (Linux).
fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .unwrap_or_else(|| "VmHWM: unknown".to_owned())
}

fn main() {
    // `cargo test --all-targets` and nextest run bench binaries too, without
    // `--bench`: generating 200 MB is for `cargo bench` only.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let path = std::env::var_os("FAULTLINE_JSONL_LARGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("faultline-jsonl-large-1m.jsonl"));
    if !path.exists() {
        let started = Instant::now();
        let lines = generate(&path).expect("write the history");
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        println!(
            "generated {} ({lines} events, {} MB) in {:.2?}",
            path.display(),
            bytes / 1_000_000,
            started.elapsed()
        );
    }
    let runs: usize = std::env::var("FAULTLINE_JSONL_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let only = std::env::var("FAULTLINE_JSONL_ONLY").unwrap_or_default();
    for run in 1..=runs {
        if only != "threads" {
            let started = Instant::now();
            let lines = read_line_by_line(&path);
            println!(
                "run {run}: line by line on one thread: {lines} lines in {:.3?}",
                started.elapsed()
            );
        }
        if only == "lines" {
            continue;
        }
        let started = Instant::now();
        let history = read_history_file(&path).expect("read the history");
        let elapsed = started.elapsed();
        let pending = history.ops.iter().filter(|o| o.outcome.is_indeterminate()).count();
        println!(
            "run {run}: read {} ops ({pending} info or pending, {} keys) in {elapsed:.3?}; {}",
            history.ops.len(),
            history.keys.len(),
            peak_rss()
        );
    }
}
