//! The nemesis's hold on a node's surroundings, for real: a clock fault
//! moves one node's wall clock (as the node itself reports it) and no
//! other's; a disk stall keeps a cluster from acknowledging writes until it
//! is healed; and Ctrl-C in the middle of a stall, in namespaces, leaves no
//! mount, namespace, rule or paused process behind.
//!
//! Clock tests need libfaketime; disk tests need root and FUSE. Without
//! them the tests say why and skip; with `CI=true` they fail instead.

mod run_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use faultline_harness::run::store::Store;
use faultline_harness::run::{Cluster, RunConfig};
use faultline_nemesis::DiskCommand;
use faultline_workloads::server_client::status;
use faultline_workloads::{Outcome, ReadRouting, Request};
use run_support::{
    assert_healed, env, faketime_capable, fuse_capable, interrupt, mounts_under, netns_capable, netns_leftovers,
    processes_mentioning, server_bin, wait_for_event,
};

async fn clock_of(cluster: &Cluster, node: &str) -> i64 {
    let addr = cluster.db.client_addr(node).unwrap();
    let s = status(node, addr, Duration::from_secs(2)).await.unwrap();
    s["clock_ms"].as_i64().expect("status carries clock_ms")
}

fn wall_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Waits (bounded) until `node`'s clock is `want_ms` off true time, give or
/// take `slack_ms`; returns the last offset seen.
async fn wait_offset(cluster: &Cluster, node: &str, want_ms: i64, slack_ms: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let off = clock_of(cluster, node).await - wall_ms();
        if (off - want_ms).abs() <= slack_ms || Instant::now() > deadline {
            return off;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_fault_moves_one_nodes_clock_and_no_other() {
    if !faketime_capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = RunConfig::new(3);
    cfg.nemesis = vec![faultline_nemesis::FaultKind::Clock];
    let store = Store::create(dir.path(), "clock").unwrap();
    let cluster = Cluster::start(&cfg, &env(dir.path()), &store, 1).await.unwrap();
    assert!(
        wait_offset(&cluster, "n1", 0, 500).await.abs() <= 500,
        "true time at first"
    );

    cluster.surroundings.set_clock("n1", 5_000).unwrap();
    let off = wait_offset(&cluster, "n1", 5_000, 500).await;
    assert!((off - 5_000).abs() <= 500, "n1 is 5 s ahead, saw {off} ms");
    let other = wait_offset(&cluster, "n2", 0, 500).await;
    assert!(other.abs() <= 500, "n2 keeps true time, saw {other} ms");

    cluster.surroundings.set_clock("n1", -3_000).unwrap();
    let off = wait_offset(&cluster, "n1", -3_000, 500).await;
    assert!((off + 3_000).abs() <= 500, "n1 is 3 s behind, saw {off} ms");
    cluster.surroundings.set_clock("n1", 0).unwrap();
    assert!(
        wait_offset(&cluster, "n1", 0, 500).await.abs() <= 500,
        "reset to true time"
    );
    cluster.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_disk_holds_writes_until_healed_and_unmounts_at_the_end() {
    if !fuse_capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = RunConfig::new(4);
    cfg.diskfs = true;
    let store = Store::create(dir.path(), "disk").unwrap();
    let cluster = Cluster::start(&cfg, &env(dir.path()), &store, 1).await.unwrap();
    assert_eq!(
        mounts_under(dir.path()).len(),
        3,
        "every node's data is on the disk-fault filesystem"
    );
    let mut client = cluster.client("c0", "n1", ReadRouting::Home, 1, 1_500);
    let write = |v| Request::Write {
        key: "k".into(),
        value: v,
    };
    assert_eq!(client.call(&write(1)).await.outcome, Outcome::Ok);

    for n in ["n1", "n2", "n3"] {
        cluster.surroundings.disk(n, DiskCommand::Stall { ms: 60_000 }).unwrap();
    }
    let stalled = client.call(&write(2)).await;
    assert_ne!(stalled.outcome, Outcome::Ok, "no quorum can fsync: {stalled:?}");
    for n in ["n1", "n2", "n3"] {
        cluster.surroundings.disk(n, DiskCommand::Heal).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let w = client.call(&write(3)).await;
        if w.outcome == Outcome::Ok {
            break;
        }
        assert!(Instant::now() < deadline, "no write after healing: {w:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.stop().unwrap();
    assert!(
        mounts_under(dir.path()).is_empty(),
        "left mounted: {:?}",
        mounts_under(dir.path())
    );
}

#[test]
fn sigint_mid_stall_in_namespaces_leaves_nothing_behind() {
    if !netns_capable() || !fuse_capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut child = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args([
            "run",
            "--net",
            "netns",
            "--time-limit",
            "60",
            "--nemesis",
            "disk-stall,pause",
        ])
        .args(["--nemesis-interval", "1", "--seed", "2", "--no-progress", "--store"])
        .arg(&store)
        .arg("--server-bin")
        .arg(server_bin())
        .arg("--diskfs-bin")
        .arg(run_support::diskfs_bin())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let history = store.join("latest/history.jsonl");
    wait_for_event(&mut child, &history, "start-disk-stall", Duration::from_secs(40));
    let run = std::fs::canonicalize(store.join("latest")).unwrap();
    assert_eq!(mounts_under(&run).len(), 3, "mounted while the run runs");
    let status = interrupt(&mut child, Duration::from_secs(40));
    assert!(status.code().is_some_and(|c| c <= 2), "{status:?}");
    assert_healed(&history, "disk-stall");
    assert!(mounts_under(&run).is_empty(), "left mounted: {:?}", mounts_under(&run));
    let left = netns_leftovers(&run);
    assert!(left.is_empty(), "left behind: {left:?}");
    let procs = processes_mentioning(&dir.path().display().to_string());
    assert!(procs.is_empty(), "processes left behind: {procs:?}");
}
