//! Clock faults on PostgreSQL, for real. The postmasters run as the
//! `postgres` user (the harness is root) under libfaketime; a clock fault
//! moves one node's clock as the server itself reports it
//! (`clock_timestamp()`) and no other's, is checked by asking the server
//! (a check expecting another offset is refused), and is healed. End to
//! end, clock skew and strobes next to fenced failovers leave a
//! synchronous (`any:1`, `remote_apply`) cluster linearizable with no
//! acknowledged write lost: a single primary with physical replication
//! orders writes by WAL position, not by time.
//!
//! Needs root (PostgreSQL runs as its own user only then, the case the
//! clock's file must reach), Debian's postgresql-15 and libfaketime.
//! Without them the tests say why and skip; with `CI=true` they fail
//! instead. The tests take turns (a lock): each is three servers.

mod run_support;

use std::path::Path;
use std::time::{Duration, Instant};

use faultline_harness::run::pg_options::PgOptions;
use faultline_harness::run::store::Store;
use faultline_harness::run::{Cluster, DbConfig, RunConfig};
use faultline_nemesis::{FaultKind, SurroundingsError};
use faultline_workloads::postgres_client::admin;
use run_support::{cannot, env, faketime_capable, have_postgres, processes_mentioning, run_in, verdict, PG_SYNC};

/// One cluster at a time (held across awaits, hence tokio's).
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Root, PostgreSQL and libfaketime, or why the test skips.
fn capable() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        return cannot("PostgreSQL runs as the postgres user, the case clock faults must reach, only as root");
    }
    have_postgres() && faketime_capable()
}

fn wall_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `node`'s clock as its server tells it, minus true time; `None` while it
/// does not answer.
async fn offset_of(cluster: &Cluster, node: &str) -> Option<i64> {
    let addr = cluster.db.client_addr(node)?;
    let sql = "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint";
    let before = wall_ms();
    let rows = admin(addr, sql, 2_000).await.ok()?;
    let after = wall_ms();
    let db: i64 = rows.first()?.first()?.as_deref()?.parse().ok()?;
    Some(db - (before + after) / 2)
}

/// Waits (bounded) until `node`'s server reads its clock `want_ms` off,
/// give or take 400 ms; returns the last offset seen.
async fn wait_offset(cluster: &Cluster, node: &str, want_ms: i64) -> Option<i64> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let off = offset_of(cluster, node).await;
        if off.is_some_and(|o| (o - want_ms).abs() <= 400) || Instant::now() > deadline {
            return off;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The user id a process runs as (`Uid:` in /proc/<pid>/status).
fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_fault_moves_one_postgres_nodes_clock_and_is_checked() {
    if !capable() {
        return;
    }
    let _turn = TURN.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = RunConfig::new(3);
    cfg.db = DbConfig::Postgres(PgOptions::default());
    cfg.nemesis = vec![FaultKind::Clock];
    let store = Store::create(dir.path(), "pg-clock").unwrap();
    let cluster = Cluster::start(&cfg, &env(dir.path()), &store, 1).await.unwrap();
    for (node, pid) in cluster.db.pids() {
        assert_ne!(uid_of(pid), Some(0), "{node}'s postmaster runs as the postgres user");
    }
    let at_first = wait_offset(&cluster, "n2", 0).await;
    assert!(
        at_first.is_some_and(|o| o.abs() <= 400),
        "true time at first: {at_first:?}"
    );

    cluster.surroundings.set_clock("n2", 4_000).unwrap();
    let checked = cluster.surroundings.check_clock("n2", 4_000).unwrap();
    assert!(
        checked.is_some_and(|o| (o - 4_000).abs() <= 50),
        "the check read {checked:?}"
    );
    let off = wait_offset(&cluster, "n2", 4_000).await;
    assert!(
        off.is_some_and(|o| (o - 4_000).abs() <= 400),
        "n2 is 4 s ahead: {off:?}"
    );
    for other in ["n1", "n3"] {
        let off = wait_offset(&cluster, other, 0).await;
        assert!(off.is_some_and(|o| o.abs() <= 400), "{other} keeps true time: {off:?}");
    }
    // A check expecting another clock than the one set is refused.
    match cluster.surroundings.check_clock("n2", -2_000) {
        Err(SurroundingsError::ClockNotMoved { seen_ms, .. }) => {
            assert!((seen_ms - 4_000).abs() <= 400, "it saw the clock set: {seen_ms}");
        }
        other => panic!("a wrong clock passed the check: {other:?}"),
    }

    cluster.surroundings.set_clock("n2", 0).unwrap();
    let healed = cluster.surroundings.check_clock("n2", 0).unwrap();
    assert!(healed.is_some_and(|o| o.abs() <= 50), "back to true time: {healed:?}");
    cluster.stop().unwrap();
    let left = processes_mentioning(&dir.path().display().to_string());
    assert!(left.is_empty(), "processes left behind: {left:?}");
}

#[test]
fn clock_skew_leaves_a_synchronous_fenced_cluster_linearizable() {
    if !capable() {
        return;
    }
    let _turn = TURN.blocking_lock();
    let dir = tempfile::tempdir().unwrap();
    let faults = [
        "--pg-failover",
        "fenced",
        "--workload",
        "register",
        "--nemesis",
        "failover,clock,clock-strobe",
        "--nemesis-interval",
        "2",
        "--time-limit",
        "16",
        "--seed",
        "11",
    ];
    let db = ["--db", "postgres", "--rate", "300"];
    let (code, r) = run_in(dir.path(), &[&db[..], &PG_SYNC[..], &faults[..]].concat());
    assert_eq!(verdict(&r, "lost-writes"), true, "{r:#}");
    assert_eq!((code, verdict(&r, "linearizable")), (0, true.into()), "{r:#}");
    let fired = |e: &str| r["nemesis"][e].as_u64().unwrap_or(0);
    assert!(fired("start-clock") >= 2 && fired("start-failover") >= 1, "{r:#}");
    assert!(
        r["stats"]["ok"].as_u64().unwrap_or(0) > 100,
        "the cluster served: {r:#}"
    );
    assert_clocks_were_read(dir.path());
    let left = processes_mentioning(&dir.path().display().to_string());
    assert!(left.is_empty(), "processes left behind: {left:?}");
}

/// Every clock fault the history records carries the offsets the servers
/// read, each within 50 ms of the one set.
fn assert_clocks_were_read(store: &Path) {
    let history = find_history(store).expect("a history");
    let text = std::fs::read_to_string(history).unwrap();
    let starts: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["f"] == "start-clock" && e["type"] == "info")
        .collect();
    assert!(!starts.is_empty(), "clock faults in the history");
    for e in starts {
        let v = &e["value"];
        let (set, read) = match v.get("strobe") {
            Some(s) => (s["offset_ms"].as_i64(), s["measured_ms"].as_i64()),
            None => {
                let (node, set) = v["offsets_ms"].as_object().unwrap().iter().next().unwrap();
                (set.as_i64(), v["measured_ms"][node].as_i64())
            }
        };
        let (set, read) = (set.unwrap(), read.unwrap_or_else(|| panic!("no reading in {e}")));
        assert!((set - read).abs() <= 50, "set {set} ms, read {read} ms: {e}");
    }
}

/// The one `history.jsonl` under `store`.
fn find_history(store: &Path) -> Option<std::path::PathBuf> {
    let mut stack = vec![store.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "history.jsonl") {
                return Some(p);
            }
        }
    }
    None
}
