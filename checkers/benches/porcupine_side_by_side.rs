//! Faultline's check time on each of the 109 public Porcupine histories,
//! beside Porcupine's minimum from `porcupine-timings.tsv`.
//!
//! Porcupine itself is not installed where this runs: the timings file
//! (Porcupine v1.3.0, Go 1.19, GOMAXPROCS=2, this project's 2-vCPU machine
//! kind, parse excluded) stands for it. Faultline's figure is measured the
//! same way: the minimum check time over `FAULTLINE_ROUNDS` rounds
//! (default 20), parsing excluded, with the default configuration (per-key
//! split, the etcd logs as a compare-and-set register starting at nil).
//!
//! Reproduce: `cargo bench -p faultline-checkers --bench porcupine_side_by_side`
//! (`FAULTLINE_ROUNDS=5` for a quicker table, `FAULTLINE_ONLY=kv/` for the
//! files whose name contains `kv/`). Exits non-zero if a verdict
//! differs from Porcupine's; prints how many files were slower.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use faultline_checkers::linear::{check, Config, ModelSpec, NilReads};
use faultline_checkers::Validity;
use faultline_histories::import::porcupine::{read_etcd_log, read_kv_log};
use faultline_histories::History;

/// One row of the timings file.
struct Row {
    file: String,
    verdict: String,
    porcupine_min_ms: f64,
}

/// The histories (found by `faultline_testdata`: `ci/testdata` fetches them)
/// and Porcupine's per-file timings, which the repository keeps.
fn data_dir() -> Option<PathBuf> {
    faultline_testdata::porcupine()
}

fn timings_file() -> PathBuf {
    faultline_testdata::repo_root().join("testdata/porcupine/porcupine-timings.tsv")
}

fn rows() -> Vec<Row> {
    let text = std::fs::read_to_string(timings_file()).expect("timings file is readable");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("file\t") && !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            Row {
                file: cols[0].to_owned(),
                verdict: cols[2].to_owned(),
                porcupine_min_ms: cols[3].parse().expect("a number of milliseconds"),
            }
        })
        .collect()
}

fn load(dir: &Path, file: &str) -> (History, ModelSpec) {
    let path = dir.join(file);
    if file.starts_with("kv/") {
        return (read_kv_log(&path).expect("kv log imports"), ModelSpec::Kv);
    }
    let model = ModelSpec::CasRegister {
        initial: serde_json::Value::Null,
        nil_reads: NilReads::Value,
    };
    (read_etcd_log(&path).expect("etcd log imports"), model)
}

/// The fastest of `rounds` checks, and the verdict.
fn measure(history: &History, config: &Config, rounds: usize) -> (Duration, Validity) {
    let mut best = Duration::MAX;
    let mut valid = Validity::Unknown;
    for _ in 0..rounds {
        let t = Instant::now();
        let v = check(history, config);
        best = best.min(t.elapsed());
        valid = v.valid;
    }
    (best, valid)
}

fn main() {
    let Some(dir) = data_dir() else {
        return;
    };
    let rounds: usize = std::env::var("FAULTLINE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    println!("Porcupine is not installed here: its column is the minimum from porcupine-timings.tsv.");
    println!("faultline: minimum check time of {rounds} rounds, parse excluded.");
    println!(
        "{:<24} {:>6} {:>9} {:>14} {:>14} {:>8}",
        "file", "ops", "verdict", "faultline_ms", "porcupine_ms", "ratio"
    );
    let (mut slower, mut wrong) = (Vec::new(), Vec::new());
    let only = std::env::var("FAULTLINE_ONLY").unwrap_or_default();
    for row in rows().into_iter().filter(|r| r.file.contains(&only)) {
        let (history, model) = load(&dir, &row.file);
        let config = Config {
            model,
            ..Config::default()
        };
        let (t, valid) = measure(&history, &config, rounds);
        let ms = t.as_secs_f64() * 1e3;
        let want = if row.verdict == "ok" {
            Validity::Valid
        } else {
            Validity::Invalid
        };
        if valid != want {
            wrong.push(row.file.clone());
        }
        if ms > row.porcupine_min_ms {
            slower.push(row.file.clone());
        }
        println!(
            "{:<24} {:>6} {:>9} {:>14.3} {:>14.3} {:>8.2}",
            row.file,
            history.ops.len(),
            format!("{valid:?}").to_lowercase(),
            ms,
            row.porcupine_min_ms,
            row.porcupine_min_ms / ms.max(1e-9)
        );
    }
    println!("slower than Porcupine's minimum: {} file(s) {slower:?}", slower.len());
    assert!(wrong.is_empty(), "verdicts differ from Porcupine's on {wrong:?}");
}
