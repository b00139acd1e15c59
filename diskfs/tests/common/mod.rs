//! Helpers of the mount tests: the capability check every test starts with,
//! and [`Mounted`], a daemon on its own tempdir that is always stopped and
//! unmounted when the test ends, failing or not.

#![allow(dead_code)] // Each test binary uses its own subset.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_faultline-diskfs");

/// How long a daemon may take to mount, or to exit after SIGTERM.
pub const START_STOP_BOUND: Duration = Duration::from_secs(15);

/// Whether the machine can mount FUSE filesystems. When it cannot, prints
/// why and returns false (the test then returns); under `CI=true` a missing
/// capability is a failure, never a silent skip.
pub fn fuse_available() -> bool {
    let Some(why) = missing_capability() else { return true };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and the FUSE tests cannot run: {why}");
    }
    eprintln!("skipping: {why}");
    false
}

fn missing_capability() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root (mounting needs it)".into());
    }
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse does not exist".into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if !std::env::split_paths(&path).any(|dir| dir.join("fusermount3").is_file()) {
        return Some("fusermount3 is not on PATH (install fuse3)".into());
    }
    None
}

/// Whether `mountpoint` is a mount point now, per /proc/self/mountinfo.
pub fn is_mounted(mountpoint: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = mountpoint.to_string_lossy();
    info.lines().any(|line| line.split(' ').nth(4) == Some(want.as_ref()))
}

/// What one `ctl` run printed and returned.
#[derive(Debug)]
pub struct CtlOutput {
    /// Exit code (-1: killed by a signal).
    pub code: i32,
    /// The reply line.
    pub stdout: String,
    /// Diagnostics.
    pub stderr: String,
}

/// Runs `faultline-diskfs ctl --control <socket> <words>`.
pub fn ctl_at(socket: &Path, words: &[&str]) -> CtlOutput {
    let out = Command::new(BIN)
        .arg("ctl")
        .arg("--control")
        .arg(socket)
        .args(words)
        .output()
        .expect("run ctl");
    CtlOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    }
}

/// A running `faultline-diskfs mount` on a tempdir of its own.
pub struct Mounted {
    child: Option<Child>,
    /// The real files.
    pub backing: PathBuf,
    /// Where they are mounted.
    pub mnt: PathBuf,
    /// The control socket.
    pub sock: PathBuf,
    log: PathBuf,
    // Last: removed after the daemon is stopped and the mount gone.
    _dir: TempDir,
}

impl Mounted {
    /// Mounts with the default dirty limit.
    pub fn start() -> Mounted {
        Mounted::start_with(&[])
    }

    /// Mounts with extra `mount` arguments; waits until it is mounted and
    /// answers `status`.
    pub fn start_with(extra: &[&str]) -> Mounted {
        let dir = tempfile::Builder::new()
            .prefix("diskfs-test")
            .tempdir()
            .expect("tempdir");
        let (backing, mnt) = (dir.path().join("backing"), dir.path().join("mnt"));
        fs::create_dir(&backing).unwrap();
        fs::create_dir(&mnt).unwrap();
        let (sock, log) = (dir.path().join("ctl.sock"), dir.path().join("daemon.log"));
        let child = Command::new(BIN)
            .args(["mount", "--backing"])
            .arg(&backing)
            .arg("--mountpoint")
            .arg(&mnt)
            .arg("--control")
            .arg(&sock)
            .args(extra)
            .env("RUST_LOG", "faultline_diskfs=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("spawn the daemon");
        let mnt = mnt.canonicalize().unwrap();
        let mut m = Mounted {
            child: Some(child),
            backing,
            mnt,
            sock,
            log,
            _dir: dir,
        };
        m.wait_ready();
        m
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_STOP_BOUND;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("daemon exited early with {status}:\n{}", self.log_text());
            }
            if is_mounted(&self.mnt) && self.ctl(&["status"]).code == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not mounted within {START_STOP_BOUND:?}:\n{}",
                self.log_text()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `ctl` against this daemon.
    pub fn ctl(&self, words: &[&str]) -> CtlOutput {
        ctl_at(&self.sock, words)
    }

    /// Runs a command that must succeed; returns its JSON (or null).
    pub fn ok(&self, words: &[&str]) -> serde_json::Value {
        let out = self.ctl(words);
        assert_eq!(out.code, 0, "ctl {words:?}: {out:?}");
        match out.stdout.strip_prefix("ok") {
            Some("") => serde_json::Value::Null,
            Some(json) => serde_json::from_str(json.trim()).expect("reply json"),
            None => panic!("ctl {words:?} printed {:?}", out.stdout),
        }
    }

    /// The `status` reply.
    pub fn status(&self) -> serde_json::Value {
        self.ok(&["status"])
    }

    /// SIGTERMs the daemon and waits (bounded) for it; falls back to SIGKILL
    /// and to lazy unmounts so nothing is left behind. Returns its exit
    /// status if it exited of its own accord after SIGTERM.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let mut status = child.try_wait().ok().flatten();
        if status.is_none() {
            // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            status = wait_bounded(&mut child, START_STOP_BOUND);
        }
        if status.is_none() {
            eprintln!("daemon ignored SIGTERM for {START_STOP_BOUND:?}; killing it");
            let _ = child.kill();
            let _ = wait_bounded(&mut child, START_STOP_BOUND);
        }
        if is_mounted(&self.mnt) {
            eprintln!("{} still mounted; unmounting lazily", self.mnt.display());
            let _ = Command::new("fusermount3").arg("-u").arg("-z").arg(&self.mnt).status();
            if is_mounted(&self.mnt) {
                let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
            }
        }
        status
    }
}

fn wait_bounded(child: &mut Child, bound: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        thread::sleep(Duration::from_millis(20));
    }
    None
}

impl Drop for Mounted {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            eprintln!("--- daemon log ---\n{}", self.log_text());
        }
    }
}
