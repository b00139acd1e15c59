//! Ctrl-C in the middle of a partition: `faultline run` heals the partition
//! (the history records the stop), stops every node and proxy, still writes
//! its results, and leaves no process behind.

mod run_support;

use std::process::{Command, Stdio};
use std::time::Duration;

use run_support::{assert_healed, interrupt, processes_mentioning, server_bin, wait_for_event};

#[test]
fn sigint_mid_partition_heals_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut child = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args([
            "run",
            "--time-limit",
            "60",
            "--nemesis",
            "partition-halves",
            "--nemesis-interval",
            "1",
        ])
        .args(["--seed", "5", "--no-progress", "--store"])
        .arg(&store)
        .arg("--server-bin")
        .arg(server_bin())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait (bounded) until the partition is in force.
    let history = store.join("latest/history.jsonl");
    wait_for_event(&mut child, &history, "start-partition", Duration::from_secs(30));
    let status = interrupt(&mut child, Duration::from_secs(30));
    assert!(status.code().is_some_and(|c| c <= 2), "{status:?}");
    assert_healed(&history, "partition");
    let results = std::fs::read_to_string(store.join("latest/results.json")).unwrap();
    assert!(results.contains("\"interrupted\": true"));
    let left = processes_mentioning(&dir.path().display().to_string());
    assert!(left.is_empty(), "left behind after SIGINT: {left:?}");
}
