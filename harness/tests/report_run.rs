//! Every `faultline run` leaves `report.html` and `junit.xml` in its store
//! folder: a short real run (a local cluster under partitions) and a look
//! at what the two files say about it.

mod run_support;

use faultline_harness::run::{run_test, RunConfig};
use run_support::env;
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_writes_its_report_and_junit_beside_its_results() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = RunConfig::new(5);
    cfg.test = "reported".into();
    cfg.time_limit_s = 3.0;
    cfg.nemesis = vec![faultline_nemesis::FaultKind::Partition];
    cfg.nemesis_interval_s = 1.0;
    cfg.op_timeout_ms = 1000;
    cfg.rate = 200.0;
    cfg.quiet_ms = 500;
    let (_tx, stop) = watch::channel(false);
    let out = run_test(&cfg, &env(dir.path()), stop).await.unwrap();
    let page = std::fs::read_to_string(out.store.join("report.html")).expect("report.html");
    let junit = std::fs::read_to_string(out.store.join("junit.xml")).expect("junit.xml");
    let word = match out.exit_code() {
        0 => "valid",
        1 => "INVALID",
        _ => "unknown",
    };
    assert!(
        page.contains(&format!("id=\"verdict\">{word}<")),
        "the run's verdict is the page's"
    );
    assert!(page.contains("faultline run --test reported"), "the rerun command");
    assert!(
        page.contains("\"partition\""),
        "the partitions are bands on the timeline"
    );
    assert!(page.contains("href=\"nodes/n1/node.log\""), "node logs are linked");
    let samples = std::fs::read_to_string(out.store.join("status.jsonl")).expect("status.jsonl");
    let leaders = samples
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a sample is JSON"))
        .filter(|s| s["role"] == "leader" && s["epoch"].as_u64().is_some() && s["lag"].as_u64().is_some())
        .count();
    assert!(
        leaders > 0,
        "the nodes' status was sampled while the test ran:\n{samples}"
    );
    assert!(junit.contains("name=\"linearizable\""), "{junit}");
    assert!(junit.contains("<property name=\"seed\" value=\"5\"/>"), "{junit}");
}
