//! A real OpenSSH server for the integration tests, one per test.
//!
//! [`Sshd::start`] makes a tempdir with its own ed25519 host key, a client
//! key in `authorized_keys` and a config, picks a free port on 127.0.0.1,
//! starts `sshd -D -e` on it and waits (bounded) until the port accepts. The
//! guard kills that sshd and its connection processes, by pid, when dropped,
//! so a failing test leaves no server behind. Tests run in parallel: each
//! has its own server, port and tempdir.
//!
//! The tests need root (sshd's privilege separation), sshd and ssh-keygen.
//! Without them they skip, saying why, except under `CI=true`, where a
//! missing capability fails the test: CI must never pass by skipping.

#![allow(dead_code)] // each test file uses its own subset

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use faultline_ssh::SshConfig;

/// Where Debian and most distributions put sshd (it must be run by an
/// absolute path, to re-exec itself).
const SSHD: &str = "/usr/sbin/sshd";
/// How long sshd may take to listen.
const LISTEN_TIMEOUT_MS: u64 = 10_000;
/// Attempts at a free port (another process may take the one we picked).
const PORT_ATTEMPTS: usize = 3;

/// Whether the tests can run; `false` after printing why. Under `CI=true` a
/// missing capability panics instead.
pub fn capable(test: &str) -> bool {
    let Some(missing) = missing_capability() else {
        return true;
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: {missing}, and CI=true forbids skipping");
    }
    // Straight to stderr: libtest would swallow eprintln! of a passing test.
    let _ = writeln!(std::io::stderr(), "skipping {test}: {missing}");
    false
}

fn missing_capability() -> Option<String> {
    if !is_root() {
        return Some("not running as root (sshd needs it)".into());
    }
    if !Path::new(SSHD).is_file() {
        return Some(format!("{SSHD} not found (install openssh-server)"));
    }
    for tool in ["ssh-keygen", "timeout", "setsid", "nohup"] {
        if !on_path(tool) {
            return Some(format!("{tool} not on PATH"));
        }
    }
    None
}

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().next().map(|u| u == "0"))
        .unwrap_or(false)
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
}

/// A running sshd; killed on drop.
pub struct Sshd {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Holds keys, config, log, and room for the test's files.
    pub dir: tempfile::TempDir,
    /// A private key the server accepts for root.
    pub client_key: PathBuf,
    /// A known_hosts file with the server's key under `[127.0.0.1]:PORT`.
    pub known_hosts: PathBuf,
    host_key: PathBuf,
    child: Child,
}

impl Sshd {
    /// Starts a server; `None` (having said why) when the machine cannot.
    pub fn start(test: &str) -> Option<Sshd> {
        if !capable(test) {
            return None;
        }
        std::fs::create_dir_all("/run/sshd").expect("sshd's privilege separation folder");
        let dir = tempfile::tempdir().expect("tempdir");
        let host_key = keygen(dir.path(), "host_ed25519");
        let client_key = keygen(dir.path(), "client_ed25519");
        std::fs::copy(pub_path(&client_key), dir.path().join("authorized_keys")).expect("authorized_keys");
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let config = write_config(dir.path(), &host_key);
            let mut child = spawn_sshd(dir.path(), &config, port);
            if wait_listening(&mut child, port) {
                let known_hosts = dir.path().join("known_hosts");
                let entry = format!("[127.0.0.1]:{port} {}\n", public_key(&host_key));
                std::fs::write(&known_hosts, entry).expect("known_hosts");
                return Some(Sshd {
                    port,
                    dir,
                    client_key,
                    known_hosts,
                    host_key,
                    child,
                });
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("sshd would not listen; its log:\n{}", read_log(dir.path()));
    }

    /// A config for node `n1` on this server: root, the client key, the
    /// server's known_hosts, short timeouts.
    pub fn config(&self) -> SshConfig {
        let mut config = SshConfig::new("root").with_node("n1", "127.0.0.1", self.port);
        config.key = Some(self.client_key.clone());
        config.known_hosts = self.known_hosts.clone();
        config.connect_timeout = Duration::from_secs(5);
        config.command_timeout = Duration::from_secs(10);
        config
    }

    /// A path in the test's tempdir.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A new ed25519 key pair in the tempdir, not authorized anywhere.
    pub fn other_key(&self, name: &str) -> PathBuf {
        keygen(self.dir.path(), name)
    }

    /// The `ssh-ed25519 AAAA...` public half of a key made by [`Sshd::other_key`].
    pub fn public_key_of(&self, key: &Path) -> String {
        public_key(key)
    }

    /// The host key's `SHA256:...` fingerprint, as `ssh-keygen -l` prints it.
    pub fn host_fingerprint(&self) -> String {
        let out = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(pub_path(&self.host_key))
            .output()
            .expect("running ssh-keygen -l");
        let listing = String::from_utf8_lossy(&out.stdout).into_owned();
        listing.split_whitespace().nth(1).expect("a fingerprint").to_owned()
    }

    /// sshd's own log so far, for failure messages.
    pub fn log(&self) -> String {
        read_log(self.dir.path())
    }
}

impl Sshd {
    /// Kills the server's connection processes, as a server restart or a
    /// network failure would end every open session; the listener stays.
    pub fn drop_connections(&self) {
        for pid in children_of(self.child.id()) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Connection processes run in their own sessions: kill them by parent
        // pid first, then the listener.
        self.drop_connections();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .stdin(Stdio::null())
        .status()
        .expect("running ssh-keygen");
    assert!(status.success(), "ssh-keygen failed for {name}");
    key
}

fn pub_path(key: &Path) -> PathBuf {
    key.with_extension("pub")
}

/// `ssh-ed25519 AAAA...`, without the comment.
fn public_key(key: &Path) -> String {
    let line = std::fs::read_to_string(pub_path(key)).expect("public key");
    line.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding port 0");
    listener.local_addr().expect("local addr").port()
}

fn write_config(dir: &Path, host_key: &Path) -> PathBuf {
    let config = dir.join("sshd_config");
    let text = format!(
        "ListenAddress 127.0.0.1\n\
         HostKey {host_key}\n\
         PidFile {dir}/sshd.pid\n\
         AuthorizedKeysFile {dir}/authorized_keys\n\
         StrictModes no\n\
         UsePAM no\n\
         PermitRootLogin prohibit-password\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UseDNS no\n\
         Subsystem sftp internal-sftp\n\
         LogLevel VERBOSE\n",
        host_key = host_key.display(),
        dir = dir.display(),
    );
    std::fs::write(&config, text).expect("sshd_config");
    config
}

fn spawn_sshd(dir: &Path, config: &Path, port: u16) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("sshd.log"))
        .expect("sshd log");
    Command::new(SSHD)
        .args(["-D", "-e", "-p", &port.to_string(), "-f"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("starting sshd")
}

/// Waits until `port` accepts, `false` if sshd exits or time runs out.
fn wait_listening(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_millis(LISTEN_TIMEOUT_MS);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return false;
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn read_log(dir: &Path) -> String {
    let mut log = String::new();
    if let Ok(mut f) = std::fs::File::open(dir.join("sshd.log")) {
        let _ = f.read_to_string(&mut log);
    }
    log
}

/// Pids whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| proc_stat(*pid).is_some_and(|(_, ppid)| ppid == parent))
        .collect()
}

/// State letter and parent pid from `/proc/PID/stat`.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(") ")?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` is a live process (a zombie is not).
pub fn alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| state != 'Z')
}

/// The `State:` line of `/proc/PID/status` (`T (stopped)`, `S (sleeping)`).
pub fn state(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("State:"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Live processes whose command line is exactly `argv`.
pub fn processes_running(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want) && alive(*pid))
        .collect()
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes; its last
/// value.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
