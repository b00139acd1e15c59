//! The transactional workloads against the local cluster, judged by the
//! transactional checker: a safe setting (serializable at the leader, reads
//! at the leader) passes under partitions, read committed under contention
//! is caught (G-single or G2-item), and transactions the server aborted are
//! `fail` in the history, each with what it would have done.

mod run_support;

use faultline_harness::run::{run_test, DbConfig, RunConfig, RunOutcome};
use faultline_histories::{History, Outcome, F};
use faultline_workloads::{WorkloadConfig, WorkloadKind};
use run_support::env;
use serde_json::Value;
use tokio::sync::watch;

const SAFE: &str = "ack=majority,failover=fenced,reads=leader,isolation=serializable";

fn config(kind: WorkloadKind, server: &str, seed: u64) -> RunConfig {
    let mut cfg = RunConfig::new(seed);
    cfg.test = format!("{}-{seed}", kind.name());
    cfg.db = DbConfig::faultline(server);
    cfg.workload = WorkloadConfig::new(kind);
    cfg.workload.key_count = 5;
    cfg.time_limit_s = 6.0;
    cfg.rate = 400.0;
    cfg.nemesis = Vec::new();
    cfg.quiet_ms = 500;
    cfg
}

/// A run in a temp dir, the dir kept until the outcome is dropped.
async fn run(cfg: &RunConfig) -> (RunOutcome, History, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (_tx, stop) = watch::channel(false);
    let out = run_test(cfg, &env(dir.path()), stop).await.unwrap();
    let history = faultline_histories::read_history_file(&out.store.join("history.jsonl")).unwrap();
    (out, history, dir)
}

/// The transactional verdict, and how many transactions it looked at.
fn transactional(out: &RunOutcome) -> (&Value, u64) {
    let v = &out.results["checkers"]["transactional"];
    assert!(v.is_object(), "no transactional verdict: {}", out.results["checkers"]);
    (v, v["details"]["stats"]["txns"].as_u64().unwrap_or(0))
}

/// Reads (not final) of lists of two elements or more: the run had
/// concurrent appends to order, not only writes.
fn long_reads(h: &History) -> usize {
    let reads = |op: &faultline_histories::Op| {
        op.output.as_array().map_or(0, |ms| {
            ms.iter()
                .filter(|m| m[0] == "r" && m[2].as_array().is_some_and(|l| l.len() >= 2))
                .count()
        })
    };
    h.ops
        .iter()
        .filter(|op| op.f == F::Txn && !op.is_final)
        .map(reads)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serializable_leader_passes_under_partitions() {
    let mut cfg = config(WorkloadKind::TxnListAppend, SAFE, 21);
    cfg.nemesis = vec![faultline_nemesis::FaultKind::Partition];
    cfg.nemesis_interval_s = 1.5;
    let (out, h, _dir) = run(&cfg).await;
    let (v, txns) = transactional(&out);
    assert_eq!(v["valid"], Value::Bool(true), "{v}");
    let ok = out.results["stats"]["ok"].as_u64().unwrap();
    assert!(ok > 300 && txns >= ok, "{txns} transactions looked at, {ok} ok");
    assert!(long_reads(&h) > 100, "too few reads of long lists");
    // lost-writes and convergence judge the micro-ops of the transactions
    // against the final reads: they looked, and found nothing lost.
    let checkers: Vec<&String> = out.results["checkers"].as_object().unwrap().keys().collect();
    assert_eq!(checkers, ["convergence", "lost-writes", "transactional"]);
    let lost = &out.results["checkers"]["lost-writes"];
    assert_eq!(lost["valid"], Value::Bool(true), "{lost}");
    assert!(lost["details"]["micro_ops_judged"].as_u64().unwrap() > 100, "{lost}");
    assert!(
        out.results["faults"].to_string().contains("partition"),
        "{}",
        out.results["faults"]
    );
    assert_eq!(out.results["valid"], Value::Bool(true), "{}", out.results);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rw_registers_on_a_serializable_leader_pass() {
    let (out, _, _dir) = run(&config(WorkloadKind::TxnRwRegister, SAFE, 22)).await;
    let (v, txns) = transactional(&out);
    assert_eq!(v["valid"], Value::Bool(true), "{v}");
    assert!(txns > 300, "{txns}");
    assert!(v["details"]["stats"]["register_keys"].as_u64() > Some(10), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_under_contention_is_caught() {
    let server = "ack=majority,failover=fenced,reads=leader,isolation=read-committed,txn_step_ms=2";
    let (out, _, _dir) = run(&config(WorkloadKind::TxnListAppend, server, 23)).await;
    let (v, _) = transactional(&out);
    assert_eq!(v["valid"], Value::Bool(false), "{v}");
    let types = v["details"]["anomaly_types"].to_string();
    assert!(
        types.contains("\"G-single\"") || types.contains("\"G2-item\""),
        "{types}"
    );
    assert_eq!(out.exit_code(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_transactions_are_fail_with_what_they_would_have_done_and_why() {
    let server = "ack=majority,failover=fenced,reads=leader,isolation=snapshot,txn_step_ms=2";
    let (out, h, _dir) = run(&config(WorkloadKind::TxnRwRegister, server, 24)).await;
    let failed: Vec<_> = h.ops.iter().filter(|op| op.outcome == Outcome::Fail).collect();
    assert!(
        !failed.is_empty(),
        "snapshot isolation under contention aborted nothing"
    );
    for op in &failed {
        assert!(op.input.as_array().is_some_and(|ms| !ms.is_empty()), "{op:?}");
        assert!(op.error.is_some(), "{op:?}");
    }
    let (v, _) = transactional(&out);
    assert_eq!(
        v["details"]["stats"]["aborted"].as_u64(),
        Some(failed.len() as u64),
        "{v}"
    );
}
