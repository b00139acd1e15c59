//! A run and `faultline check` of the history it recorded choose the same
//! checkers and reach the same verdicts: the run's results.json and
//! junit.xml name every checker the re-check runs, each with the same
//! verdict, and the file's verdict and its unchecked operations agree. Two
//! short runs of the local cluster under partitions: the register workload
//! (every checker chosen from content) and list-append (whose header keeps
//! the list linearizability search out).

mod run_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use faultline_harness::run::{run_test, RunConfig, RunOutcome};
use faultline_workloads::{WorkloadConfig, WorkloadKind};
use run_support::env;
use serde_json::Value;
use tokio::sync::watch;

fn config(kind: WorkloadKind, seed: u64) -> RunConfig {
    let mut cfg = RunConfig::new(seed);
    cfg.test = format!("agree-{}", kind.name());
    cfg.workload = WorkloadConfig::new(kind);
    cfg.time_limit_s = 5.0;
    cfg.nemesis = vec![faultline_nemesis::FaultKind::Partition];
    cfg.nemesis_interval_s = 1.0;
    cfg.quiet_ms = 300;
    cfg
}

/// Each checker's verdict as `true`, `false` or `"unknown"`.
fn validities(checkers: &Value) -> BTreeMap<String, Value> {
    checkers
        .as_object()
        .expect("a map of checkers")
        .iter()
        .map(|(name, v)| (name.clone(), v["valid"].clone()))
        .collect()
}

/// `faultline check --json` of a history: its exit code and JSON line.
fn recheck(history: &Path) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["check", "--json"])
        .arg(history)
        .output()
        .expect("running faultline check");
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("null")
        .to_owned();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_str(&line).expect("one JSON line"),
    )
}

fn assert_agree(out: &RunOutcome) {
    let (code, checked) = recheck(&out.store.join("history.jsonl"));
    let ran = validities(&out.results["checkers"]);
    assert!(!ran.is_empty(), "the run ran no checker: {}", out.results);
    assert_eq!(
        ran,
        validities(&checked["checkers"]),
        "run vs check:\n{}\n{checked}",
        out.results
    );
    assert_eq!(out.results["valid"], checked["valid"]);
    let unchecked = checked
        .get("unchecked")
        .cloned()
        .unwrap_or(Value::Object(Default::default()));
    assert_eq!(out.results["unchecked"], unchecked);
    assert_eq!(i32::from(out.exit_code()), code, "run and check exit codes");
    let junit = std::fs::read_to_string(out.store.join("junit.xml")).expect("junit.xml");
    for name in ran.keys() {
        assert!(
            junit.contains(&format!("name=\"{name}\"")),
            "junit.xml lacks {name}:\n{junit}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_and_a_recheck_of_its_history_agree() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path());
    let (_tx, stop) = watch::channel(false);
    let register = run_test(&config(WorkloadKind::Register, 11), &env, stop.clone())
        .await
        .unwrap();
    assert_agree(&register);
    let ran = validities(&register.results["checkers"]);
    // Not vacuous: the register run is judged by more than one checker,
    // linearizability among them, and it covered every operation.
    assert!(ran.contains_key("linearizable") && ran.len() > 1, "{ran:?}");
    assert_eq!(register.results["unchecked"], serde_json::json!({}));

    let list = run_test(&config(WorkloadKind::ListAppend, 12), &env, stop)
        .await
        .unwrap();
    assert_agree(&list);
    let ran = validities(&list.results["checkers"]);
    assert!(!ran.contains_key("linearizable"), "{ran:?}");
    assert!(
        ran.contains_key("consistent-prefix") && ran.contains_key("lost-writes"),
        "{ran:?}"
    );
}
