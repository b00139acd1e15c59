//! The same seed gives the same operation sequence and the same fault
//! schedule, on a real cluster: each client's operations (up to its first
//! indeterminate one, after which its process number changes) and every
//! partition the nemesis started are identical across two runs.

mod run_support;

use std::collections::BTreeMap;

use faultline_harness::run::{run_test, RunConfig};
use faultline_histories::{read_history_file, History, Outcome, Process};
use run_support::env;
use tokio::sync::watch;

fn config(seed: u64) -> RunConfig {
    let mut cfg = RunConfig::new(seed);
    cfg.test = "seeded".into();
    cfg.time_limit_s = 4.0;
    cfg.nemesis = vec![faultline_nemesis::FaultKind::Partition];
    cfg.nemesis_interval_s = 0.7;
    cfg.quiet_ms = 200;
    cfg
}

async fn record(seed: u64, dir: &std::path::Path) -> History {
    let (_tx, stop) = watch::channel(false);
    let out = run_test(&config(seed), &env(dir), stop).await.unwrap();
    read_history_file(&out.store.join("history.jsonl")).unwrap()
}

/// Each initial process's operations (f, key, argument) until its first info.
fn sequences(h: &History, clients: u64) -> BTreeMap<u64, Vec<String>> {
    let mut out: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut done = std::collections::BTreeSet::new();
    for op in &h.ops {
        let Process::Client(p) = op.process else { continue };
        if p >= clients || op.is_final || done.contains(&p) {
            continue;
        }
        out.entry(p).or_default().push(format!(
            "{} {:?} {}",
            op.f,
            op.key.map(|k| h.key(k).to_string()),
            op.input
        ));
        if op.outcome.is_indeterminate() || op.outcome == Outcome::Pending {
            done.insert(p);
        }
    }
    out
}

fn partitions(h: &History) -> Vec<String> {
    h.nemesis
        .iter()
        .filter(|e| e.f.as_str() == "start-partition")
        .map(|e| e.value.to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_replays_operations_and_faults() {
    let dir = tempfile::tempdir().unwrap();
    let a = record(21, dir.path()).await;
    let b = record(21, dir.path()).await;
    let (pa, pb) = (partitions(&a), partitions(&b));
    assert!(pa.len() >= 2, "{pa:?}");
    // A leader-isolating partition names whoever led then; the rest must match.
    let comparable =
        |v: &[String]| -> Vec<String> { v.iter().filter(|s| !s.contains("isolate-leader")).cloned().collect() };
    assert_eq!(comparable(&pa), comparable(&pb));
    let (sa, sb) = (sequences(&a, 10), sequences(&b, 10));
    assert_eq!(sa.len(), 10);
    for (p, ops) in &sa {
        let other = &sb[p];
        let n = ops.len().min(other.len());
        assert!(n > 5, "process {p} did only {n} operations");
        assert_eq!(ops[..n], other[..n], "process {p}");
    }
}
