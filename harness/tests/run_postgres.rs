//! PostgreSQL as a target, end to end through `faultline run`: short
//! versions of the PostgreSQL rows of `ci/campaigns/real.toml`.
//!
//! - asynchronous replication with a (fenced) failover loses
//!   acknowledged writes;
//! - `any:1` with `remote_apply` and a fenced failover loses none and
//!   stays linearizable through the primary;
//! - an unfenced failover (split brain) loses writes and serves
//!   non-linearizable reads;
//! - reads from standbys under asynchronous replication break
//!   read-your-writes and monotonic reads; sticky reads keep monotonic
//!   reads under partitions, kills and pauses.
//!
//! Needs Debian's postgresql-15. Without it the tests say why and skip;
//! with `CI=true` they fail instead. The runs take turns (a lock): each
//! is three PostgreSQL servers and their clients on a shared machine.

mod run_support;

use std::path::Path;
use std::sync::Mutex;

use run_support::{have_postgres, processes_mentioning, run_in, run_json, verdict, FAILOVERS, PG_SYNC};

/// One cluster at a time.
static TURN: Mutex<()> = Mutex::new(());

/// A store folder for one test; `None` (the test skips) without
/// PostgreSQL.
fn store() -> Option<tempfile::TempDir> {
    have_postgres().then(|| tempfile::tempdir().unwrap())
}

/// Runs `faultline run --db postgres args...` with `--json`, one run at a
/// time; returns the exit code and results.json.
fn run(store: &Path, args: &[&str]) -> (i32, serde_json::Value) {
    let _turn = TURN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let args: Vec<&str> = ["--db", "postgres", "--rate", "300"]
        .iter()
        .chain(args)
        .copied()
        .collect();
    run_in(store, &args)
}

fn fired(results: &serde_json::Value, event: &str) -> u64 {
    results["nemesis"][event].as_u64().unwrap_or(0)
}

/// No postmaster names the store, and no PostgreSQL process works in a
/// folder under it (a backend's working folder is its data folder).
fn assert_nothing_left(dir: &Path) {
    let procs = processes_mentioning(&dir.display().to_string());
    assert!(procs.is_empty(), "processes left behind: {procs:?}");
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let working: Vec<String> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            std::fs::read_link(e.path().join("cwd"))
                .ok()
                .map(|cwd| (e.file_name(), cwd))
        })
        .filter(|(_, cwd)| cwd.starts_with(&canonical))
        .map(|(pid, cwd)| format!("{} in {}", pid.to_string_lossy(), cwd.display()))
        .collect();
    assert!(working.is_empty(), "processes left working in the store: {working:?}");
}

#[test]
fn an_async_failover_loses_acknowledged_writes_and_a_quorum_one_does_not() {
    let Some(dir) = store() else { return };
    let (code, r) = run(
        dir.path(),
        &[&FAILOVERS[..], &["--workload", "list-append", "--seed", "4"]].concat(),
    );
    assert_eq!((code, verdict(&r, "lost-writes")), (1, false.into()), "{r:#}");
    assert!(fired(&r, "start-failover") >= 1, "{r:#}");
    let fenced = ["--pg-failover", "fenced", "--workload", "register", "--seed", "5"];
    let (code, r) = run(dir.path(), &[&FAILOVERS[..], &PG_SYNC[..], &fenced[..]].concat());
    assert_eq!(verdict(&r, "lost-writes"), true, "{r:#}");
    assert_eq!((code, verdict(&r, "linearizable")), (0, true.into()), "{r:#}");
    assert!(fired(&r, "start-failover") >= 1, "the failover fired: {r:#}");
    assert!(
        r["stats"]["ok"].as_u64().unwrap_or(0) > 100,
        "the cluster served: {r:#}"
    );
    assert_nothing_left(dir.path());
}

#[test]
fn an_unfenced_failover_is_a_split_brain() {
    let Some(dir) = store() else { return };
    let (code, r) = run(
        dir.path(),
        &[
            &FAILOVERS[..],
            &["--pg-failover", "unfenced", "--workload", "register", "--seed", "6"],
        ]
        .concat(),
    );
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(verdict(&r, "lost-writes"), false, "{r:#}");
    assert_eq!(verdict(&r, "linearizable"), false, "{r:#}");
    assert!(fired(&r, "stop-failover") >= 1, "the old primary rejoined: {r:#}");
    assert_nothing_left(dir.path());
}

#[test]
fn standby_reads_break_session_guarantees_and_sticky_reads_stay_monotonic() {
    let Some(dir) = store() else { return };
    let session = ["--workload", "session", "--nemesis-interval", "2", "--time-limit", "12"];
    let (code, r) = run(
        dir.path(),
        &[
            &session[..],
            &[
                "--pg-reads",
                "standby",
                "--nemesis",
                "partition-one,partition-halves",
                "--seed",
                "7",
            ],
        ]
        .concat(),
    );
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(verdict(&r, "read-your-writes"), false, "{r:#}");
    assert_eq!(verdict(&r, "monotonic-reads"), false, "{r:#}");
    let (_, r) = run(
        dir.path(),
        &[
            &session[..],
            &["--pg-reads", "home"],
            &PG_SYNC[..],
            &["--nemesis", "partition-one,kill,pause", "--seed", "8"],
        ]
        .concat(),
    );
    assert_eq!(verdict(&r, "monotonic-reads"), true, "{r:#}");
    assert!(fired(&r, "kill") >= 1 && fired(&r, "pause") >= 1, "{r:#}");
    assert_nothing_left(dir.path());
}

/// The default store is the relative folder `store`: as root, the folders
/// above each node's folder are opened to the postgres user from the
/// folder's absolute path (walking a relative one up never reaches `/`).
#[test]
fn a_store_given_as_a_relative_path_runs() {
    let Some(dir) = store() else { return };
    let _turn = TURN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (code, r) = run_json(
        std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
            .current_dir(dir.path())
            .args(["run", "--db", "postgres", "--rate", "200", "--time-limit", "4"])
            .args(["--workload", "register", "--nemesis", "none"])
            .args(["--json", "--no-progress", "--store", "store"]),
    );
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(verdict(&r, "linearizable"), true, "{r:#}");
    assert_nothing_left(dir.path());
}
