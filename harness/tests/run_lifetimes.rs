//! A node lives until a recorded fault or the final teardown stops it.
//!
//! The kill nemesis kills a node and later restarts it from whatever task
//! heals the fault. The node's parent-death signal once followed the thread
//! that forked it, and tokio retires idle threads after 10 s: restarted
//! nodes died about 10 s later with no record. Here a run kills and
//! restarts nodes for a minute while the harness samples every node's
//! status twice a second; every sample in which a node did not answer must
//! fall inside one of its recorded kill windows, a restarted node must
//! still answer long after its restart, and at the end every node answers.

mod run_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use run_support::{processes_mentioning, run_json, server_bin};
use serde_json::Value;

/// Grace after a restart before the node must answer again (it opens its
/// store and rejoins; a loaded machine is slow).
const RESTART_GRACE_NS: u64 = 8_000_000_000;
/// A restarted node must be seen answering at least this long after its
/// restart: past the 10 s after which tokio retires an idle thread.
const LIVED_AFTER_RESTART_NS: u64 = 20_000_000_000;

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Each node's windows `[kill, restart + grace]` from the history's
/// nemesis events (`kill`, then `start` of the same node); a kill with no
/// restart runs to the end.
fn kill_windows(history: &[Value]) -> BTreeMap<String, Vec<(u64, u64)>> {
    let mut windows: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for e in history {
        let (Some(f), Some(time)) = (e["f"].as_str(), e["time"].as_u64()) else {
            continue;
        };
        let Some(node) = e["value"]["node"].as_str() else {
            continue;
        };
        let w = windows.entry(node.to_owned()).or_default();
        match f {
            "kill" => w.push((time, u64::MAX)),
            "start" => {
                if let Some(last) = w.last_mut().filter(|l| l.1 == u64::MAX) {
                    last.1 = time + RESTART_GRACE_NS;
                }
            }
            _ => {}
        }
    }
    windows
}

#[test]
fn restarted_nodes_live_until_a_fault_or_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_faultline"));
    cmd.args([
        "run",
        "--nemesis",
        "kill",
        "--nemesis-interval",
        "12",
        "--time-limit",
        "62",
    ])
    .args(["--seed", "5", "--no-progress", "--json", "--store"])
    .arg(&store)
    .arg("--server-bin")
    .arg(server_bin());
    let (code, results) = run_json(&mut cmd);
    let run = std::fs::canonicalize(store.join("latest")).unwrap();
    let left = processes_mentioning(&dir.path().display().to_string());
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(code, 0, "{results:#}");
    let warnings = results["warnings"].to_string();
    assert!(!warnings.contains("exited"), "a node died on its own: {warnings}");

    let history = lines(&run.join("history.jsonl"));
    let windows = kill_windows(&history);
    let restarts: Vec<(String, u64)> = history
        .iter()
        .filter(|e| e["f"] == "start")
        .filter_map(|e| Some((e["value"]["node"].as_str()?.to_owned(), e["time"].as_u64()?)))
        .collect();
    assert!(
        !restarts.is_empty(),
        "the nemesis killed and restarted a node: {windows:?}"
    );

    let samples = lines(&run.join("status.jsonl"));
    let in_window = |node: &str, t: u64| {
        windows
            .get(node)
            .is_some_and(|w| w.iter().any(|(a, b)| (*a..=*b).contains(&t)))
    };
    let silent: Vec<(String, u64)> = samples
        .iter()
        .filter(|s| s.get("role").is_none_or(Value::is_null))
        .filter_map(|s| Some((s["node"].as_str()?.to_owned(), s["time"].as_u64()?)))
        .filter(|(n, t)| !in_window(n, *t))
        .collect();
    assert!(
        silent.is_empty(),
        "nodes silent outside their kill windows {windows:?}: {silent:?}"
    );
    // Not vacuous: a restarted node answered long after its restart.
    let answered = |node: &str, after: u64| {
        samples
            .iter()
            .any(|s| s["node"] == node && s["time"].as_u64() >= Some(after) && !s["role"].is_null())
    };
    assert!(
        restarts.iter().any(|(n, t)| answered(n, t + LIVED_AFTER_RESTART_NS)),
        "no restarted node was seen answering {} s after its restart: {restarts:?}",
        LIVED_AFTER_RESTART_NS / 1_000_000_000
    );
    // And at the end every node answers.
    let last: BTreeMap<&str, &Value> = samples.iter().filter_map(|s| Some((s["node"].as_str()?, s))).collect();
    assert_eq!(last.len(), 3, "{last:?}");
    for (node, s) in last {
        assert!(!s["role"].is_null(), "{node} did not answer at the end: {s}");
    }
}
