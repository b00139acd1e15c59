//! `kill -9` of a run, then `faultline clean`: nothing is left.
//!
//! A killed harness takes its local nodes and disk-fault filesystems with
//! it (their parent-death signal), but the dead FUSE mounts, namespaces and
//! bridge stay until `faultline clean`, which finds them through the run's
//! registration under /run/faultline/. Registrations hold absolute paths,
//! so a run started with a relative `--store` is cleaned from any folder.
//! (SSH runs: see run_ssh.rs.) PostgreSQL nodes die with the harness too,
//! though as root the harness starts them as the `postgres` user.
//!
//! Needs root, FUSE (PostgreSQL: Debian's postgresql-15) (and `ip netns` and `nft` for namespaces): elsewhere
//! the tests say why and skip; with `CI=true` they fail instead.

mod run_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use run_support::{
    diskfs_bin, fuse_capable, have_postgres, mounts_under, netns_capable, netns_leftovers, processes_mentioning,
    server_bin, CleanOnDrop,
};

/// A run's harness, killed when the test ends however it ends.
struct Harness(Child);

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a long run with its data on the disk-fault filesystem, from
/// folder `cwd`, storing into `store` (relative to `cwd` or absolute),
/// and waits (bounded) until it records.
fn start(cwd: &Path, store: &Path, net: &str) -> Harness {
    let child = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .current_dir(cwd)
        .args([
            "run",
            "--net",
            net,
            "--time-limit",
            "120",
            "--nemesis",
            "none",
            "--diskfs",
        ])
        .args(["--seed", "3", "--no-progress", "--store"])
        .arg(store)
        .arg("--server-bin")
        .arg(server_bin())
        .arg("--diskfs-bin")
        .arg(diskfs_bin())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut h = Harness(child);
    let history = cwd.join(store).join("latest/history.jsonl");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !history.exists() {
        assert!(h.0.try_wait().unwrap().is_none(), "the run ended early");
        assert!(Instant::now() < deadline, "the run did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    h
}

/// Runs `faultline clean` from `/` (not the run's folder) and returns what
/// it said. Its exit code is not asserted: it is 3 when any run on this
/// machine could not be cleaned, which another test running at the same
/// time may cause on purpose (run_ssh.rs hides a key); what counts is that
/// this run's leftovers are gone.
fn clean() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .current_dir("/")
        .arg("clean")
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(matches!(out.status.code(), Some(0 | 3)), "{said}");
    said
}

/// Kills the harness with SIGKILL; its nodes and filesystems die with it,
/// its mounts (and namespaces) stay. Then `clean` removes them.
fn kill_then_clean(dir: &Path, mut harness: Harness, run: PathBuf) {
    assert_eq!(mounts_under(&run).len(), 3, "mounted while the run runs");
    harness.0.kill().unwrap();
    harness.0.wait().unwrap();
    wait_gone(dir);
    // The mounts stay; but another test's clean, running at the same time,
    // may be the one that removes them: what counts is that they were
    // there and are gone.
    let said = clean();
    assert!(
        mounts_under(&run).is_empty(),
        "clean left mounts: {:?}\n{said}",
        mounts_under(&run)
    );
    if run.join("netns.json").exists() {
        let left = netns_leftovers(&run);
        assert!(left.is_empty(), "clean left: {left:?}\n{said}");
    }
}

/// Every process of the run (nodes, filesystems) dies with the harness:
/// waits, bounded, until none mentions `dir`.
fn wait_gone(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_mentioning(&dir.display().to_string());
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "outlived the killed harness: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn clean_after_kill_9_with_a_relative_store() {
    if !fuse_capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _clean = CleanOnDrop;
    let harness = start(dir.path(), Path::new("store"), "proxy");
    let run = std::fs::canonicalize(dir.path().join("store/latest")).unwrap();
    kill_then_clean(dir.path(), harness, run);
}

#[test]
fn clean_after_kill_9_with_an_absolute_store() {
    if !fuse_capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _clean = CleanOnDrop;
    let store = dir.path().join("store");
    let harness = start(dir.path(), &store, "proxy");
    let run = std::fs::canonicalize(store.join("latest")).unwrap();
    kill_then_clean(dir.path(), harness, run);
}

#[test]
fn clean_after_kill_9_in_namespaces_with_a_relative_store() {
    if !netns_capable() || !fuse_capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _clean = CleanOnDrop;
    let harness = start(dir.path(), Path::new("store"), "netns");
    let run = std::fs::canonicalize(dir.path().join("store/latest")).unwrap();
    assert!(
        !netns_leftovers(&run).is_empty(),
        "the namespaces exist while the run does"
    );
    kill_then_clean(dir.path(), harness, run);
}

/// Kills, when the test ends however it ends, what still mentions the
/// test's folder (a postmaster that outlived its harness would otherwise
/// outlive the test too).
struct KillLeftovers(PathBuf);

impl Drop for KillLeftovers {
    fn drop(&mut self) {
        for (pid, _) in processes_mentioning(&self.0.display().to_string()) {
            let _ = Command::new("kill").args(["-s", "KILL", &pid.to_string()]).status();
        }
    }
}

#[test]
fn postgres_nodes_die_with_a_killed_harness() {
    if !have_postgres() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _kill = KillLeftovers(dir.path().to_path_buf());
    let store = dir.path().join("store");
    let child = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["run", "--db", "postgres", "--time-limit", "120", "--nemesis", "none"])
        .args(["--seed", "3", "--no-progress", "--store"])
        .arg(&store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut harness = Harness(child);
    let history = store.join("latest/history.jsonl");
    let deadline = Instant::now() + Duration::from_secs(120);
    // The cluster is up once a client's operation has completed.
    while !std::fs::read_to_string(&history).is_ok_and(|h| h.contains(r#""type":"ok""#)) {
        assert!(harness.0.try_wait().unwrap().is_none(), "the run ended early");
        assert!(Instant::now() < deadline, "no operation completed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let postmasters = processes_mentioning(&store.display().to_string());
    assert!(
        !postmasters.is_empty(),
        "no PostgreSQL node runs under {}",
        store.display()
    );
    harness.0.kill().unwrap();
    harness.0.wait().unwrap();
    wait_gone(dir.path());
}
