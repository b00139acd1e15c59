//! What the etcd and Redis client tests share: finding a server binary (a
//! skip locally, a failure under `CI=true`), ports from the OS, bounded waits
//! and a guard over the processes a test starts.
//!
//! Promises: every process started through [`Procs`] is killed by PID when
//! the guard drops, after a SIGCONT for those it paused, so a failing test
//! leaves nothing running; every wait ends by a deadline.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether every binary in `names` is on the PATH. A missing one is a skip,
/// said on stderr, unless `CI=true`, where it is a failure: CI must never
/// pass by testing nothing.
pub fn have_binaries(test: &str, names: &[&str]) -> bool {
    let missing: Vec<&str> = names.iter().copied().filter(|n| which(n).is_none()).collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!("{test}: {} not found on PATH", missing.join(", "));
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why} (CI=true: a missing server is a failure, not a skip)");
    }
    eprintln!("skipping {why}");
    false
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A TCP port the OS just had free on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

/// A deadline for one wait, named for its panic message.
pub struct Deadline {
    at: Instant,
    what: String,
}

impl Deadline {
    /// `limit` from now.
    pub fn after(limit: Duration, what: impl Into<String>) -> Deadline {
        Deadline {
            at: Instant::now() + limit,
            what: what.into(),
        }
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        Instant::now() >= self.at
    }

    /// Sleeps a little; panics once the deadline has passed.
    pub async fn wait(&self) {
        assert!(Instant::now() < self.at, "gave up waiting: {}", self.what);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The processes a test started, killed by PID on drop.
#[derive(Default)]
pub struct Procs {
    children: Vec<(String, Child)>,
    paused: Vec<u32>,
}

impl Procs {
    /// Starts `cmd` with its output in `log`; returns its PID.
    pub fn spawn(&mut self, name: &str, mut cmd: Command, log: &Path) -> u32 {
        let out = File::create(log).expect("create log");
        let err = out.try_clone().expect("clone log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let pid = child.id();
        self.children.push((name.to_owned(), child));
        pid
    }

    /// The PID of the process started as `name`.
    pub fn pid(&self, name: &str) -> u32 {
        self.children
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.id())
            .unwrap_or_else(|| panic!("no process {name}"))
    }

    /// SIGSTOP: the process keeps its sockets (the kernel still accepts
    /// connections) but answers nothing.
    pub fn pause(&mut self, name: &str) {
        let pid = self.pid(name);
        assert!(signal(pid, "STOP"), "kill -s STOP {pid} failed");
        self.paused.push(pid);
    }

    /// SIGCONT.
    pub fn resume(&mut self, name: &str) {
        let pid = self.pid(name);
        assert!(signal(pid, "CONT"), "kill -s CONT {pid} failed");
        self.paused.retain(|p| *p != pid);
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self, name: &str) {
        let pid = self.pid(name);
        if self.paused.contains(&pid) {
            self.resume(name);
        }
        if let Some((_, c)) = self.children.iter_mut().find(|(n, _)| n == name) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        // No panics here: a drop during a failing test's unwinding must not abort.
        for pid in std::mem::take(&mut self.paused) {
            signal(pid, "CONT");
        }
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends `sig` with kill(1); whether it was delivered.
fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// The last lines of a log, for a panic message.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
