//! `faultline run` against a real local cluster: the safe setting passes
//! under partitions and kills, the faults really fire (a killed node's pid
//! is gone, a paused one is stopped, ops fail or time out during a
//! partition), and nothing is left behind afterwards.

mod run_support;

use std::time::Duration;

use faultline_checkers::Validity;
use faultline_harness::run::store::Store;
use faultline_harness::run::{run_test, Cluster, RunConfig};
use faultline_histories::{read_history_file, EventType, Outcome, F};
use faultline_nemesis::control::pid_exists;
use run_support::{env, process_state, processes_mentioning};
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_pause_and_restart_act_on_real_processes() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path());
    let cfg = RunConfig::new(7);
    let store = Store::create(dir.path(), "lifecycle").unwrap();
    let cluster = Cluster::start(&cfg, &env, &store, 1).await.unwrap();
    let pids = cluster.db.pids();
    assert_eq!(pids.len(), 3);

    let killed = cluster.db.kill("n1").unwrap();
    assert_eq!(killed, pids["n1"]);
    assert!(!pid_exists(killed), "a killed node's pid is gone");
    let restarted = cluster.db.start("n1").unwrap();
    assert_ne!(restarted, killed);

    let paused = cluster.db.pause("n2").unwrap();
    assert!(
        eventually(|| process_state(paused) == Some('T')),
        "a paused node is stopped"
    );
    cluster.db.resume("n2").unwrap();
    assert!(eventually(|| process_state(paused) != Some('T')), "a resumed node runs");
    cluster.db.wait_ready(Duration::from_secs(20)).await.unwrap();
    assert!(cluster.db.leader().await.is_some());

    let proxy = cluster.route("c0", "n1").unwrap();
    let all: Vec<u32> = cluster.db.pids().into_values().collect();
    cluster.stop().unwrap();
    for pid in all {
        assert!(!pid_exists(pid), "node pid {pid} outlived the cluster");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        tokio::net::TcpStream::connect(proxy).await.is_err(),
        "a proxy outlived the cluster"
    );
    let n1_log = store.node_dir("n1").join("node.log");
    assert!(
        std::fs::metadata(n1_log).unwrap().len() > 0,
        "the node's log is collected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_safe_setting_passes_under_partitions_and_kills_and_faults_fire() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = RunConfig::new(11);
    cfg.test = "safe".into();
    cfg.time_limit_s = 9.0;
    cfg.nemesis = vec![
        faultline_nemesis::FaultKind::PartitionLeader,
        faultline_nemesis::FaultKind::Kill,
    ];
    cfg.nemesis_interval_s = 1.5;
    cfg.op_timeout_ms = 1000;
    cfg.rate = 300.0;
    cfg.quiet_ms = 1000;
    let (_tx, stop) = watch::channel(false);
    let out = run_test(&cfg, &env(dir.path()), stop).await.unwrap();
    assert_eq!(out.valid, Validity::Valid, "{:#?}", out.results["checkers"]);
    assert_eq!(out.exit_code(), 0);

    let h = read_history_file(&out.store.join("history.jsonl")).unwrap();
    let faults: Vec<String> = h.nemesis.iter().map(|e| e.f.to_string()).collect();
    assert!(faults.iter().any(|f| f == "start-partition"), "{faults:?}");
    assert!(faults.iter().any(|f| f == "stop-partition"), "{faults:?}");
    assert!(faults.iter().any(|f| f == "kill") || faults.iter().filter(|f| *f == "start-partition").count() >= 2);
    assert!(h.nemesis.iter().all(|e| e.kind == EventType::Info));

    // During a partition some operations fail or time out...
    let (from, to) = partition_window(&h);
    let during: Vec<_> = h
        .ops
        .iter()
        .filter(|o| o.invoke_time >= from && o.invoke_time < to)
        .collect();
    assert!(
        during.iter().any(|o| o.outcome != Outcome::Ok),
        "no operation failed or timed out during the partition"
    );
    // ...and the test is not vacuous: operations succeed, reads overlap
    // writes, and every node was read at the end.
    assert!(
        h.ops
            .iter()
            .filter(|o| o.outcome == Outcome::Ok && o.f == F::Write)
            .count()
            > 50
    );
    assert!(
        h.ops
            .iter()
            .filter(|o| o.outcome == Outcome::Ok && o.f == F::Read)
            .count()
            > 50
    );
    let final_nodes: std::collections::BTreeSet<_> =
        h.ops.iter().filter(|o| o.is_final).filter_map(|o| o.node).collect();
    assert!(!final_nodes.is_empty());

    for f in ["config.json", "results.json", "history.jsonl"] {
        assert!(out.store.join(f).exists(), "{f}");
    }
    let config: RunConfig =
        serde_json::from_str(&std::fs::read_to_string(out.store.join("config.json")).unwrap()).unwrap();
    assert_eq!(config, cfg, "config.json holds everything needed to rerun");
    assert!(dir.path().join("latest").exists());
    let left = processes_mentioning(&dir.path().display().to_string());
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Whether `f` holds within a second (signals are delivered asynchronously).
fn eventually(f: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f()
}

/// The first partition's start and stop times.
fn partition_window(h: &faultline_histories::History) -> (u64, u64) {
    let start = h
        .nemesis
        .iter()
        .find(|e| e.f.as_str() == "start-partition")
        .expect("a partition started")
        .time;
    let stop = h
        .nemesis
        .iter()
        .find(|e| e.f.as_str() == "stop-partition" && e.time > start)
        .map_or(u64::MAX, |e| e.time);
    (start, stop)
}
