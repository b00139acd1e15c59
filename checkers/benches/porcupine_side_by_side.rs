//! Faultline's check time on each of the 109 public Porcupine histories,
//! beside Porcupine's minimum from `porcupine-timings.tsv`.
//!
//! Porcupine itself is not installed where this runs: the timings file
//! (Porcupine v1.3.0, Go 1.19, GOMAXPROCS=2, this project's 2-vCPU machine
//! kind, parse excluded) stands for it. Faultline's figures are measured
//! the same way (check time, parsing excluded, the default configuration:
//! per-key split, the etcd logs as a compare-and-set register starting at
//! nil) over `FAULTLINE_ROUNDS` rounds (default 20), one file's rounds one
//! after another as Porcupine's were (its timings repeat each file up to
//! 20 times), so both figures are of a warm file.
//!
//! The files are the 109 of `expected.tsv`, whose verdicts each check must
//! give. The table gives per file faultline's median and minimum,
//! Porcupine's minimum and the ratio of Porcupine's minimum to faultline's
//! median (above 1: faultline is faster), then two lines "N of 108 no
//! slower": a file counts when faultline's minimum (first line: like for
//! like, and what a loaded machine disturbs least) or its median (second
//! line) is no slower than Porcupine's minimum. (The timings file has 108
//! rows: Porcupine was not timed on the empty etcd_095, which is checked
//! and listed all the same.)
//!
//! Reproduce: `cargo bench -p faultline-checkers --bench porcupine_side_by_side`
//! (`FAULTLINE_ROUNDS=5` for a quicker table, `FAULTLINE_ONLY=kv/` for the
//! files whose name contains `kv/`). Exits non-zero if a verdict
//! differs from Porcupine's.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use faultline_checkers::linear::{check, Config, ModelSpec, NilReads};
use faultline_checkers::Validity;
use faultline_histories::import::porcupine::{read_etcd_log, read_kv_log};
use faultline_histories::History;

/// One public history: its verdict (`expected.tsv`) and Porcupine's
/// minimum check time (`porcupine-timings.tsv`), which the empty
/// etcd_095 lacks.
struct Row {
    file: String,
    verdict: String,
    porcupine_min_ms: Option<f64>,
}

/// The histories (found by `faultline_testdata`: `ci/testdata` fetches them).
fn data_dir() -> Option<PathBuf> {
    faultline_testdata::porcupine()
}

/// The data lines of a tab-separated file the repository keeps in
/// `testdata/porcupine/`, split into columns.
fn table(name: &str) -> Vec<Vec<String>> {
    let path = faultline_testdata::repo_root().join("testdata/porcupine").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("file\t") && !l.trim().is_empty())
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

fn rows() -> Vec<Row> {
    let timings: std::collections::HashMap<String, f64> = table("porcupine-timings.tsv")
        .into_iter()
        .map(|cols| (cols[0].clone(), cols[3].parse().expect("a number of milliseconds")))
        .collect();
    table("expected.tsv")
        .into_iter()
        .map(|cols| Row {
            porcupine_min_ms: timings.get(&cols[0]).copied(),
            file: cols[0].clone(),
            verdict: cols[1].clone(),
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

/// One file to check, and what was measured of it.
struct Entry {
    row: Row,
    history: History,
    config: Config,
    times: Vec<Duration>,
    valid: Validity,
}

impl Entry {
    fn load(dir: &Path, row: Row) -> Entry {
        let (history, model) = load(dir, &row.file);
        Entry {
            row,
            history,
            config: Config {
                model,
                ..Config::default()
            },
            times: Vec::new(),
            valid: Validity::Unknown,
        }
    }

    /// Checks once, recording the time and the verdict.
    fn measure(&mut self) {
        let t = Instant::now();
        let v = check(&self.history, &self.config);
        self.times.push(t.elapsed());
        self.valid = v.valid;
    }

    fn want(&self) -> Validity {
        if self.row.verdict == "ok" {
            Validity::Valid
        } else {
            Validity::Invalid
        }
    }

    /// Faultline's median and minimum, in milliseconds.
    fn median_min_ms(&self) -> (f64, f64) {
        let mut sorted = self.times.clone();
        sorted.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        (ms(sorted[sorted.len() / 2]), ms(sorted[0]))
    }
}

fn main() {
    let Some(dir) = data_dir() else {
        return;
    };
    let rounds: usize = std::env::var("FAULTLINE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20)
        .max(1);
    let only = std::env::var("FAULTLINE_ONLY").unwrap_or_default();
    let mut entries: Vec<Entry> = rows()
        .into_iter()
        .filter(|r| r.file.contains(&only))
        .map(|r| Entry::load(&dir, r))
        .collect();
    for e in &mut entries {
        (0..rounds).for_each(|_| e.measure());
    }
    print_table(&entries, rounds);
    let wrong: Vec<&str> = entries
        .iter()
        .filter(|e| e.valid != e.want())
        .map(|e| e.row.file.as_str())
        .collect();
    assert!(wrong.is_empty(), "verdicts differ from Porcupine's on {wrong:?}");
}

/// The files where faultline's figure (`pick` of median and minimum) is
/// slower than Porcupine's minimum, and those Porcupine did not time.
fn slower_by(entries: &[Entry], pick: fn((f64, f64)) -> f64) -> (Vec<&str>, Vec<&str>) {
    let (mut slower, mut untimed) = (Vec::new(), Vec::new());
    for e in entries {
        match e.row.porcupine_min_ms {
            Some(p) if pick(e.median_min_ms()) > p => slower.push(e.row.file.as_str()),
            Some(_) => {}
            None => untimed.push(e.row.file.as_str()),
        }
    }
    (slower, untimed)
}

/// The per-file table and the summary lines.
fn print_table(entries: &[Entry], rounds: usize) {
    println!("Porcupine is not installed here: its column is the minimum from porcupine-timings.tsv.");
    println!("faultline: median and minimum check time of {rounds} rounds per file, parse excluded.");
    println!(
        "{:<24} {:>6} {:>9} {:>12} {:>12} {:>14} {:>8}",
        "file", "ops", "verdict", "median_ms", "min_ms", "porcupine_ms", "ratio"
    );
    for e in entries {
        let (median, min) = e.median_min_ms();
        let (porcupine, ratio) = match e.row.porcupine_min_ms {
            Some(p) => (format!("{p:.3}"), format!("{:.2}", p / median.max(1e-9))),
            None => ("-".to_owned(), "-".to_owned()),
        };
        println!(
            "{:<24} {:>6} {:>9} {:>12.3} {:>12.3} {:>14} {:>8}",
            e.row.file,
            e.history.ops.len(),
            format!("{:?}", e.valid).to_lowercase(),
            median,
            min,
            porcupine,
            ratio
        );
    }
    // The minimum against Porcupine's minimum is the like-for-like figure
    // (both the best of their rounds, which a loaded machine only delays);
    // the median is given as well, for an idle machine.
    for (what, pick) in [
        ("minimum", (|(_, min)| min) as fn((f64, f64)) -> f64),
        ("median", |(median, _)| median),
    ] {
        let (slower, untimed) = slower_by(entries, pick);
        println!(
            "{} of {} no slower (faultline's {what} against Porcupine's minimum; not timed by Porcupine: {untimed:?}); \
             slower: {slower:?}",
            entries.len() - slower.len() - untimed.len(),
            entries.len() - untimed.len(),
        );
    }
}
