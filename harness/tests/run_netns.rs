//! `faultline run --net netns`: each node in a network namespace of its
//! own, partitions as nftables drops. A run of the safe setting under
//! partitions is valid, the partitions really cost operations, and nothing
//! is left behind, after a normal end and after Ctrl-C mid-partition.
//!
//! Needs root, `ip netns` and `nft`: elsewhere the tests say why and skip;
//! with `CI=true` they fail instead.

mod run_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use run_support::{
    assert_healed, interrupt, netns_capable, netns_leftovers, processes_mentioning, server_bin, wait_for_event,
};

fn faultline(store: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_faultline"));
    cmd.args(["run", "--net", "netns", "--no-progress", "--store"])
        .arg(store)
        .arg("--server-bin")
        .arg(server_bin())
        .args(extra);
    cmd
}

fn latest(store: &Path) -> PathBuf {
    std::fs::canonicalize(store.join("latest")).unwrap()
}

#[test]
fn a_netns_run_of_the_safe_setting_is_valid_and_leaves_nothing() {
    if !netns_capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let out = faultline(
        &store,
        &[
            "--time-limit",
            "10",
            "--nemesis",
            "partition-halves,partition-one-way",
            "--nemesis-interval",
            "2",
            "--seed",
            "11",
            "--json",
        ],
    )
    .stderr(Stdio::inherit())
    .output()
    .unwrap();
    let results: serde_json::Value = serde_json::from_slice(&out.stdout).expect("results on stdout");
    assert_eq!(out.status.code(), Some(0), "{results:#}");
    assert_eq!(results["valid"], true);
    let stats = &results["stats"];
    let lost = stats["fail"].as_u64().unwrap() + stats["info"].as_u64().unwrap();
    assert!(lost > 0, "partitions cost no operation at all: {stats}");
    assert!(
        results["nemesis"]["start-partition"].as_u64().unwrap() >= 1,
        "{results:#}"
    );
    let run = latest(&store);
    let history = std::fs::read_to_string(run.join("history.jsonl")).unwrap();
    assert!(history.contains("\"stop-partition\""));
    let left = netns_leftovers(&run);
    assert!(left.is_empty(), "left behind: {left:?}");
    let procs = processes_mentioning(&dir.path().display().to_string());
    assert!(procs.is_empty(), "processes left behind: {procs:?}");
}

#[test]
fn sigint_mid_partition_removes_rules_namespaces_and_processes() {
    if !netns_capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut child = faultline(
        &store,
        &[
            "--time-limit",
            "60",
            "--nemesis",
            "partition-halves",
            "--nemesis-interval",
            "1",
            "--seed",
            "5",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let history = store.join("latest/history.jsonl");
    wait_for_event(&mut child, &history, "start-partition", Duration::from_secs(30));
    let run = latest(&store);
    assert!(
        !netns_leftovers(&run).is_empty(),
        "the namespaces exist while the run does"
    );
    let status = interrupt(&mut child, Duration::from_secs(30));
    assert!(status.code().is_some_and(|c| c <= 2), "{status:?}");
    assert_healed(&history, "partition");
    let left = netns_leftovers(&run);
    assert!(left.is_empty(), "left behind after SIGINT: {left:?}");
    let procs = processes_mentioning(&dir.path().display().to_string());
    assert!(procs.is_empty(), "processes left behind: {procs:?}");
}

#[test]
fn faultline_clean_removes_what_a_killed_run_left_and_spares_a_live_one() {
    if !netns_capable() || !run_support::fuse_capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (dead_store, live_store) = (dir.path().join("dead"), dir.path().join("live"));
    let spawn = |store: &Path| {
        faultline(
            store,
            &["--time-limit", "120", "--nemesis", "none", "--diskfs", "--seed", "3"],
        )
        .arg("--diskfs-bin")
        .arg(run_support::diskfs_bin())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
    };
    let mut dead = spawn(&dead_store);
    let mut live = spawn(&live_store);
    for store in [&dead_store, &live_store] {
        let deadline = Instant::now() + Duration::from_secs(40);
        while !store.join("latest/history.jsonl").exists() {
            assert!(Instant::now() < deadline, "the run did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // Asserted while the run lives: once it is dead, another test's clean
    // running at the same time may remove what it left before ours does.
    let dead_run = latest(&dead_store);
    assert!(!netns_leftovers(&dead_run).is_empty(), "the run has namespaces");
    assert!(!run_support::mounts_under(&dead_run).is_empty(), "and mounts");
    // The harness dies without a chance to clean up: its nodes and their
    // filesystems die with it, the namespaces and mounts stay.
    dead.kill().unwrap();
    dead.wait().unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .arg("clean")
        .output()
        .unwrap();
    // Not its exit code nor "removed run": another test's clean at the
    // same time may remove this run, or fail on purpose on its own.
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(matches!(out.status.code(), Some(0 | 3)), "{said}");
    let left = netns_leftovers(&dead_run);
    assert!(left.is_empty(), "clean left: {left:?}");
    assert!(run_support::mounts_under(&dead_run).is_empty(), "clean left mounts");

    let live_run = latest(&live_store);
    assert!(!netns_leftovers(&live_run).is_empty(), "a live run was cleaned");
    assert_eq!(
        run_support::mounts_under(&live_run).len(),
        3,
        "a live run's mounts were touched"
    );
    let _ = Command::new("kill").args(["-INT", &live.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(40);
    while live.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = live.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = live.wait();
    assert!(netns_leftovers(&live_run).is_empty());
}
