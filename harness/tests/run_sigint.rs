//! Ctrl-C in the middle of a partition: `faultline run` heals the partition
//! (the history records the stop), stops every node and proxy, still writes
//! its results, and leaves no process behind.

mod run_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use run_support::{processes_mentioning, server_bin};

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
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&history).unwrap_or_default();
        if text.contains("start-partition") {
            break;
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("no partition started within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("faultline did not exit within 30 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.code().is_some_and(|c| c <= 2), "{status:?}");
    let text = std::fs::read_to_string(&history).unwrap();
    let started = text.rfind("start-partition").unwrap();
    assert!(
        text[started..].contains("stop-partition"),
        "the partition was not healed"
    );
    let results = std::fs::read_to_string(store.join("latest/results.json")).unwrap();
    assert!(results.contains("\"interrupted\": true"));
    let left = processes_mentioning(&dir.path().display().to_string());
    assert!(left.is_empty(), "left behind after SIGINT: {left:?}");
}
