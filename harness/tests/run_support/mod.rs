//! Helpers shared by the `run_*` integration tests: the faultline-server
//! binary (built on demand, bounded), a run environment in a temp dir, and a
//! scan of /proc for anything a run left behind.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use faultline_harness::run::db::find_bin;
use faultline_harness::run::RunEnv;

/// The faultline-server binary, built with the same cargo and target dir as
/// these tests if it is not there yet.
pub fn server_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_bin("faultline-server", "FAULTLINE_SERVER_BIN"))
        .clone()
}

/// The faultline-diskfs binary, built on demand like [`server_bin`].
pub fn diskfs_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_bin("faultline-diskfs", "FAULTLINE_DISKFS_BIN"))
        .clone()
}

/// A binary of the workspace (package and binary share `name`), built
/// (bounded) with this test's cargo, profile and target dir when missing.
fn workspace_bin(name: &str, env_var: &str) -> PathBuf {
    if let Ok(p) = find_bin(name, None, env_var) {
        return p;
    }
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "-q", "-p", name, "--bin", name]);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let mut child = cmd
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .spawn()
        .unwrap_or_else(|e| panic!("running cargo build for {name}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "building {name} failed");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("building {name} took more than 600 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    find_bin(name, None, env_var).unwrap_or_else(|e| panic!("{name} after building it: {e}"))
}

/// A run environment whose store is `dir`.
pub fn env(dir: &Path) -> RunEnv {
    RunEnv {
        store_root: dir.to_owned(),
        server_bin: server_bin(),
        progress: false,
        bins: faultline_harness::run::Bins {
            diskfs: Some(diskfs_bin()),
            ..Default::default()
        },
    }
}

/// Processes whose command line mentions `needle` (every node of a run has
/// its store folder in its `--data-dir`).
pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                out.push((pid, cmd));
            }
        }
    }
    out
}

/// The state letter of a process (R, S, T for stopped, ...), if it exists.
pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.trim_start().chars().next()
}

/// Whether network namespaces (root, `ip netns`, `nft`) work here. Without
/// them a test says why and skips; with `CI=true` it fails instead.
pub fn netns_capable() -> bool {
    let why = match faultline_nemesis::netns::available() {
        Ok(()) if on_path("nft") => return true,
        Ok(()) => "the nft command is missing (Debian: nftables)".to_owned(),
        Err(e) => e,
    };
    cannot(&why)
}

/// Whether `program` is on $PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

/// What a `--net netns` run left behind, named after its `netns.json`:
/// namespaces, the bridge, the registration. Empty when all is gone.
pub fn netns_leftovers(run_dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(run_dir.join("netns.json")).expect("a netns run writes netns.json");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let id = v["run_id"].as_str().unwrap().to_owned();
    let mut left = Vec::new();
    for (_, n) in v["nodes"].as_object().unwrap() {
        let ns = n["namespace"].as_str().unwrap();
        if Path::new("/run/netns").join(ns).exists() {
            left.push(format!("namespace {ns}"));
        }
    }
    if Path::new("/sys/class/net").join(format!("fl-{id}")).exists() {
        left.push(format!("bridge fl-{id}"));
    }
    let reg = Path::new(faultline_nemesis::netns::REGISTRY_DIR).join(format!("{id}.json"));
    if reg.exists() {
        left.push(format!("registration {}", reg.display()));
    }
    left
}

/// Whether FUSE mounts work here (root, /dev/fuse, fusermount3). Without
/// them a test says why and skips; with `CI=true` it fails instead.
pub fn fuse_capable() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let why = if !root {
        "FUSE mounts need root"
    } else if !Path::new("/dev/fuse").exists() {
        "/dev/fuse is missing"
    } else if !on_path("fusermount3") {
        "fusermount3 is missing (Debian: fuse3)"
    } else {
        return true;
    };
    cannot(why)
}

/// Whether libfaketime is installed. Without it a test says why and skips;
/// with `CI=true` it fails instead.
pub fn faketime_capable() -> bool {
    let lib = Path::new("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1");
    if lib.is_file() || cfg!(not(target_arch = "x86_64")) {
        return true;
    }
    let why = "libfaketime is missing (Debian: faketime)";
    cannot(why)
}

/// Mountpoints under `dir` (per /proc/self/mounts).
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let prefix = dir.display().to_string();
    mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| m.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

/// A test that lacks `why` says so and skips (returns false); with
/// `CI=true`, where every capability is installed, it fails instead.
pub fn cannot(why: &str) -> bool {
    assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true and {why}");
    eprintln!("skipping: {why}");
    false
}

/// Whether `program` (from Debian's `package`) is installed; see [`cannot`].
pub fn have(program: &str, package: &str) -> bool {
    on_path(program) || cannot(&format!("{program} is missing (Debian: {package})"))
}

/// Whether Debian's PostgreSQL 15 is installed; see [`cannot`].
pub fn have_postgres() -> bool {
    Path::new("/usr/lib/postgresql/15/bin/postgres").is_file()
        || cannot("/usr/lib/postgresql/15/bin/postgres is missing (Debian: postgresql-15)")
}

/// PostgreSQL settings under which a failover loses no acknowledged
/// write: a commit waits until one standby (`any:1`) has applied it.
pub const PG_SYNC: [&str; 4] = ["--pg-sync", "any:1", "--pg-commit", "remote_apply"];

/// A failover every 3 s of a 12 s run.
pub const FAILOVERS: [&str; 6] = ["--nemesis", "failover", "--nemesis-interval", "3", "--time-limit", "12"];

/// Runs a `faultline run ... --json` command; returns its exit code and the
/// results it printed.
pub fn run_json(cmd: &mut Command) -> (i32, serde_json::Value) {
    let out = cmd.stderr(std::process::Stdio::inherit()).output().unwrap();
    let results = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!("no results: {}", String::from_utf8_lossy(&out.stdout));
    });
    (out.status.code().unwrap_or(-1), results)
}

/// Runs `faultline run args... --json` into `store` with the test's
/// faultline-server; returns the exit code and results.json.
pub fn run_in(store: &Path, args: &[&str]) -> (i32, serde_json::Value) {
    run_json(
        Command::new(env!("CARGO_BIN_EXE_faultline"))
            .arg("run")
            .args(args)
            .args(["--json", "--no-progress", "--store"])
            .arg(store)
            .arg("--server-bin")
            .arg(server_bin()),
    )
}

/// A checker's `valid` in a run's results.
pub fn verdict(results: &serde_json::Value, checker: &str) -> serde_json::Value {
    results["checkers"][checker]["valid"].clone()
}

/// Waits (bounded by `within`) until the history at `history` records
/// `event`; kills `child` and panics if it does not, or if `child` exits.
pub fn wait_for_event(child: &mut Child, history: &Path, event: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while !std::fs::read_to_string(history).unwrap_or_default().contains(event) {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no {event} within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `child` SIGINT and waits (bounded by `within`) until it exits.
pub fn interrupt(child: &mut Child, within: Duration) -> ExitStatus {
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("faultline did not exit within {within:?} of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts that the history's last `start-X` event has its `stop-X` after it.
pub fn assert_healed(history: &Path, fault: &str) {
    let text = std::fs::read_to_string(history).unwrap();
    let started = text.rfind(&format!("start-{fault}")).expect("the fault started");
    assert!(
        text[started..].contains(&format!("stop-{fault}")),
        "the {fault} was not healed"
    );
}

/// Runs `faultline clean` when dropped during a panic, so a test that
/// fails with a killed harness leaves no namespace or mount behind.
/// Declare it before the harness's guard, so it drops after the harness is
/// killed. (Not on success: a clean then could remove, under another test
/// running at the same time, the leftovers that test is about to check.)
pub struct CleanOnDrop;

impl Drop for CleanOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let _ = Command::new(env!("CARGO_BIN_EXE_faultline"))
            .current_dir("/")
            .arg("clean")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}
