//! An unsafe setting is caught: asynchronous acknowledgement with follower
//! reads and a replay delay lets reads see stale values, the linearizability
//! checker proves it with the operations, `faultline run` exits 1, and the
//! cluster is gone afterwards just as after a passing run.

mod run_support;

use faultline_checkers::Validity;
use faultline_harness::run::{run_test, RunConfig};
use run_support::{env, processes_mentioning};
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_follower_reads_are_caught_and_nothing_is_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = RunConfig::new(3);
    cfg.test = "unsafe".into();
    cfg.db = faultline_harness::run::DbConfig::faultline("ack=none,reads=follower,replay_delay_ms=50");
    cfg.time_limit_s = 5.0;
    cfg.nemesis = Vec::new();
    cfg.quiet_ms = 500;
    let (_tx, stop) = watch::channel(false);
    let out = run_test(&cfg, &env(dir.path()), stop).await.unwrap();
    let lin = &out.verdicts["linearizable"];
    assert_eq!(lin.valid, Validity::Invalid, "{:#?}", out.results["checkers"]);
    assert!(
        !lin.anomalies.is_empty() && !lin.anomalies[0].ops.is_empty(),
        "a FAIL names its operations"
    );
    assert_eq!(out.exit_code(), 1);
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.store.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["valid"], serde_json::json!(false));
    let left = processes_mentioning(&dir.path().display().to_string());
    assert!(left.is_empty(), "left behind after a failing checker: {left:?}");
}
