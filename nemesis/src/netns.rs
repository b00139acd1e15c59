//! Network namespaces: every node gets a network stack of its own, joined to
//! the others by a bridge, so partitions are real packet drops (through
//! [`crate::nft::NftNet`]) rather than a proxy holding bytes.
//!
//! Layout for run id `ab12cd` and nodes n1..nk:
//! - a bridge `fl-ab12cd` in this (the harness's) namespace with address
//!   `10.A.B.1/24`, so the harness's clients reach every node directly;
//! - per node a namespace `fl-ab12cd-n1` whose `eth0` is one end of a veth
//!   pair (the other end, `flab12cdn1`, is a port of the bridge), with
//!   address `10.A.B.(i+1)` and its own loopback.
//!
//! The subnet is picked so that it overlaps no route or address of this
//! machine and no other live run; the choice happens under a lock file so
//! parallel runs never pick the same one. Every run is written to the
//! registry (`/run/faultline/<id>.json`, with the harness's pid) *before*
//! anything is created, so [`clean_leftovers`] (`faultline clean`) can remove
//! what a run that died left behind, and leaves live runs alone. Runs on
//! this machine's disk-fault filesystem register their mounts the same way
//! ([`MountRecord`], absolute paths), and runs over SSH their machines and
//! every daemon they start there ([`RemoteRecord`]), which the harness's
//! `faultline clean` stops over SSH ([`clean_leftovers_with`]).
//! [`NetnsCluster`] tears everything down when dropped.
//!
//! [`NetnsControl`] starts processes inside a node's namespace (setns(2)
//! between fork and exec) and is otherwise [`crate::LocalControl`]: the
//! filesystem is shared, so store paths are node paths.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::control::{self, CommandSpec, Control, Daemon, DaemonSpec, LocalControl};
use crate::error::{ControlError, NetError};

/// Where runs are registered.
pub const REGISTRY_DIR: &str = "/run/faultline";
/// Prefix of every name a run gives (namespaces, bridge, veths).
pub const NAME_PREFIX: &str = "fl";
/// How long one `ip` command may take.
const IP_TIMEOUT_MS: u64 = 10_000;
/// Subnets tried before giving up.
const SUBNET_TRIES: u32 = 64;

/// What a run created, as the registry records it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Registration {
    /// The run id.
    pub id: String,
    /// The harness process that owns it.
    pub pid: u32,
    /// That process's start time (clock ticks after boot), so a reused pid
    /// is not taken for the harness.
    #[serde(default)]
    pub start_ticks: u64,
    /// The bridge.
    pub bridge: String,
    /// The subnet's first three octets.
    pub subnet: [u8; 3],
    /// Node name to namespace name.
    pub namespaces: BTreeMap<String, String>,
    /// FUSE mountpoints of the run (disk faults), unmounted on clean-up.
    /// Absolute, as the mount table lists them, whatever folder `faultline
    /// clean` runs from.
    #[serde(default)]
    pub mounts: Vec<PathBuf>,
    /// The remote machines of a run over SSH and what it started there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteRun>,
}

/// How to reach a run's remote machines and what runs there, so `faultline
/// clean` can stop the daemons of a run whose harness died. Paths only: no
/// key material.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RemoteRun {
    /// The user on every machine.
    pub user: String,
    /// The private key file (absolute); none uses the ssh-agent.
    pub key: Option<PathBuf>,
    /// The known_hosts file (absolute); none is the default.
    pub known_hosts: Option<PathBuf>,
    /// Whether the run trusted hosts known_hosts does not list.
    pub accept_unknown_hosts: bool,
    /// Node name to its machine.
    pub nodes: BTreeMap<String, RemoteNode>,
}

/// One remote machine of a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RemoteNode {
    /// Host name or address.
    pub host: String,
    /// SSH port.
    pub port: u16,
    /// The node's folder there (its data, logs and mounts).
    pub dir: PathBuf,
    /// Every daemon started there, recorded before it is started.
    pub daemons: Vec<RemoteDaemon>,
}

/// A daemon of a run on a remote machine.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RemoteDaemon {
    /// The program, as started (its process's first argument).
    pub program: PathBuf,
    /// The file its pid is written to beside its log.
    pub pid_file: PathBuf,
    /// Its pid once started (the pid file has the latest one).
    pub pid: Option<u32>,
}

/// One node's place in the namespaces.
#[derive(Clone, Debug)]
pub struct NetnsNode {
    /// The namespace's name.
    pub namespace: String,
    /// The bridge-side end of its veth pair.
    pub veth: String,
    /// Its address.
    pub ip: Ipv4Addr,
}

/// The namespaces, veths and bridge of one run.
pub struct NetnsCluster {
    reg: Registration,
    nodes: BTreeMap<String, NetnsNode>,
    torn_down: AtomicBool,
}

/// A run id: six hex digits from the pid and the clock.
pub fn new_run_id() -> String {
    let t = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64;
    let mixed = (t ^ (u64::from(std::process::id()) << 20)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    format!("{:06x}", mixed >> 40)
}

fn setup_err(what: impl Into<String>, detail: impl Into<String>) -> NetError {
    NetError::Setup {
        what: what.into(),
        detail: detail.into(),
    }
}

/// Runs `ip args...` on this machine; a non-zero exit is an error.
fn ip(args: &[&str]) -> Result<String, NetError> {
    let spec = CommandSpec::new("ip", args, Duration::from_millis(IP_TIMEOUT_MS));
    let out = LocalControl
        .run("host", &spec)
        .map_err(|e| setup_err(spec.display(), e.to_string()))?;
    if !out.status.success() {
        return Err(setup_err(
            spec.display(),
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl NetnsCluster {
    /// Creates the bridge and one namespace per node, registered under `id`.
    /// On any error what was made so far is removed.
    pub fn create(id: &str, nodes: &[String]) -> Result<NetnsCluster, NetError> {
        if nodes.is_empty() || nodes.len() > 200 {
            return Err(setup_err("namespaces", "between 1 and 200 nodes"));
        }
        if !id.chars().all(|c| c.is_ascii_alphanumeric()) || id.len() > 8 {
            return Err(setup_err(
                "namespaces",
                format!("run id {id:?} must be up to 8 letters or digits"),
            ));
        }
        std::fs::create_dir_all(REGISTRY_DIR).map_err(|e| setup_err(REGISTRY_DIR, e.to_string()))?;
        let lock = lock_registry()?;
        let subnet = pick_subnet(id)?;
        let reg = Registration {
            id: id.to_owned(),
            pid: std::process::id(),
            start_ticks: start_ticks(std::process::id()).unwrap_or(0),
            bridge: format!("{NAME_PREFIX}-{id}"),
            subnet,
            namespaces: nodes
                .iter()
                .map(|n| (n.clone(), format!("{NAME_PREFIX}-{id}-{n}")))
                .collect(),
            mounts: Vec::new(),
            remote: None,
        };
        write_registration(&reg)?;
        drop(lock);
        let cluster = NetnsCluster {
            nodes: nodes
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let node = NetnsNode {
                        namespace: reg.namespaces[n].clone(),
                        veth: format!("{NAME_PREFIX}{id}{n}"),
                        ip: Ipv4Addr::new(10, subnet[1], subnet[2], i as u8 + 2),
                    };
                    (n.clone(), node)
                })
                .collect(),
            reg,
            torn_down: AtomicBool::new(false),
        };
        // On an error, `cluster`'s Drop removes whatever was made.
        cluster.build()?;
        Ok(cluster)
    }

    fn build(&self) -> Result<(), NetError> {
        let s = self.reg.subnet;
        let bridge = self.reg.bridge.as_str();
        ip(&["link", "add", bridge, "type", "bridge"])?;
        ip(&["addr", "add", &format!("10.{}.{}.1/24", s[1], s[2]), "dev", bridge])?;
        ip(&["link", "set", bridge, "up"])?;
        for node in self.nodes.values() {
            let ns = node.namespace.as_str();
            ip(&["netns", "add", ns])?;
            ip(&[
                "link", "add", &node.veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ])?;
            ip(&["link", "set", &node.veth, "master", bridge, "up"])?;
            ip(&["-n", ns, "addr", "add", &format!("{}/24", node.ip), "dev", "eth0"])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// The run id.
    pub fn id(&self) -> &str {
        &self.reg.id
    }

    /// Node name to its address.
    pub fn addrs(&self) -> BTreeMap<String, Ipv4Addr> {
        self.nodes.iter().map(|(n, x)| (n.clone(), x.ip)).collect()
    }

    /// One node's place.
    pub fn node(&self, name: &str) -> Option<&NetnsNode> {
        self.nodes.get(name)
    }

    /// The bridge's address: where the nodes see the harness's packets come from.
    pub fn bridge_ip(&self) -> Ipv4Addr {
        let s = self.reg.subnet;
        Ipv4Addr::new(10, s[1], s[2], 1)
    }

    /// A `Control` that runs processes inside the nodes' namespaces.
    pub fn control(&self) -> NetnsControl {
        NetnsControl {
            namespaces: self
                .nodes
                .iter()
                .map(|(n, x)| (n.clone(), netns_path(&x.namespace)))
                .collect(),
        }
    }

    /// Records a FUSE mountpoint of this run, so `faultline clean` unmounts
    /// it should the run die.
    pub fn register_mount(&mut self, path: &Path) -> Result<(), NetError> {
        self.reg.mounts.push(absolute(path));
        write_registration(&self.reg)
    }

    /// Removes every namespace, veth and the bridge, then the registration.
    /// Idempotent; tries every step and returns the first error.
    pub fn teardown(&self) -> Result<(), NetError> {
        if self.torn_down.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let r = remove_registered(&self.reg);
        if r.is_ok() {
            let _ = std::fs::remove_file(registration_path(&self.reg.id));
        }
        r
    }
}

impl Drop for NetnsCluster {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            tracing::error!(error = %e, "tearing the namespaces down");
        }
    }
}

fn netns_path(ns: &str) -> PathBuf {
    Path::new("/run/netns").join(ns)
}

fn registration_path(id: &str) -> PathBuf {
    Path::new(REGISTRY_DIR).join(format!("{id}.json"))
}

fn write_registration(reg: &Registration) -> Result<(), NetError> {
    let path = registration_path(&reg.id);
    let tmp = path.with_extension("tmp");
    let body = serde_json::to_vec_pretty(reg).expect("a registration serializes");
    std::fs::write(&tmp, body)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| setup_err(path.display().to_string(), e.to_string()))
}

/// An exclusive lock on the registry while a subnet is chosen and recorded.
fn lock_registry() -> Result<File, NetError> {
    let path = Path::new(REGISTRY_DIR).join("lock");
    let f = File::create(&path).map_err(|e| setup_err(path.display().to_string(), e.to_string()))?;
    // SAFETY: flock(2) on a file descriptor we own; no memory is shared.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    if rc != 0 {
        return Err(setup_err("registry lock", std::io::Error::last_os_error().to_string()));
    }
    Ok(f)
}

/// Every registered run.
pub fn registrations() -> Vec<Registration> {
    let Ok(dir) = std::fs::read_dir(REGISTRY_DIR) else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect()
}

/// When process `pid` started, in clock ticks after boot (field 22 of
/// /proc/PID/stat).
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; count from after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the harness that registered `reg` still runs.
fn owner_alive(reg: &Registration) -> bool {
    control::pid_exists(reg.pid) && (reg.start_ticks == 0 || start_ticks(reg.pid) == Some(reg.start_ticks))
}

/// A /24 in 10.0.0.0/8 that no route, address or live run uses.
fn pick_subnet(id: &str) -> Result<[u8; 3], NetError> {
    let routes = ip(&["-4", "-o", "route", "show", "table", "all"])?;
    let addrs = ip(&["-4", "-o", "addr", "show"])?;
    let taken: Vec<[u8; 3]> = registrations()
        .into_iter()
        .filter(owner_alive)
        .map(|r| r.subnet)
        .collect();
    let seed = u32::from_str_radix(id, 16).unwrap_or(0x5eed);
    for i in 0..SUBNET_TRIES {
        let h = seed
            .wrapping_add(i.wrapping_mul(0x9e37_79b9))
            .wrapping_mul(2_654_435_761);
        let candidate = [10, 100 + (h >> 24) as u8 % 100, (h >> 16) as u8];
        let net = Ipv4Addr::new(10, candidate[1], candidate[2], 0);
        if taken.contains(&candidate) || overlaps_any(net, &routes) || overlaps_any(net, &addrs) {
            continue;
        }
        return Ok(candidate);
    }
    Err(setup_err(
        "a subnet",
        format!("no free /24 in 10.100-199.x.0 after {SUBNET_TRIES} tries"),
    ))
}

/// Whether any `a.b.c.d[/len]` in `text` (other than a default route)
/// overlaps the /24 at `net`.
fn overlaps_any(net: Ipv4Addr, text: &str) -> bool {
    text.split_whitespace()
        .filter_map(parse_cidr)
        .any(|(addr, len)| len > 0 && overlaps(net, 24, addr, len))
}

fn parse_cidr(word: &str) -> Option<(Ipv4Addr, u8)> {
    let (a, len) = match word.split_once('/') {
        Some((a, l)) => (a, l.parse().ok()?),
        None => (word, 32),
    };
    let addr: Ipv4Addr = a.parse().ok()?;
    (len <= 32).then_some((addr, len))
}

fn overlaps(a: Ipv4Addr, alen: u8, b: Ipv4Addr, blen: u8) -> bool {
    let len = alen.min(blen);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
    (u32::from(a) & mask) == (u32::from(b) & mask)
}

/// Removes what `reg` names; tries every step, returns the first error.
/// Processes still inside a namespace are killed first (a namespace whose
/// name is gone lives on while a process holds it).
fn remove_registered(reg: &Registration) -> Result<(), NetError> {
    let mut first = None;
    for m in &reg.mounts {
        if let Err(e) = unmount(m) {
            first.get_or_insert(e);
        }
    }
    for ns in reg.namespaces.values() {
        if !netns_path(ns).exists() {
            continue;
        }
        if let Ok(pids) = ip(&["netns", "pids", ns]) {
            for pid in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
                // SAFETY: kill(2) has no memory-safety preconditions. SIGCONT
                // first: a paused process must not outlive the run.
                unsafe {
                    libc::kill(pid, libc::SIGCONT);
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        if let Err(e) = ip(&["netns", "del", ns]) {
            first.get_or_insert(e);
        }
    }
    if !reg.bridge.is_empty() && Path::new("/sys/class/net").join(&reg.bridge).exists() {
        if let Err(e) = ip(&["link", "del", &reg.bridge]) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// `path` made absolute the way the mount table spells it: from the
/// current folder, with the parent's symbolic links resolved where it
/// exists (the last part may be a dead FUSE mount, which cannot be
/// resolved). A registration compared with the mount table later, from
/// another folder, must not hold a relative path.
pub fn absolute(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    match (abs.parent(), abs.file_name()) {
        (Some(dir), Some(name)) => std::fs::canonicalize(dir).map_or(abs.clone(), |d| d.join(name)),
        _ => abs,
    }
}

/// A registration of this process with nothing in it yet, under `id`.
fn own_registration(id: String) -> Registration {
    Registration {
        id,
        pid: std::process::id(),
        start_ticks: start_ticks(std::process::id()).unwrap_or(0),
        bridge: String::new(),
        subnet: [0; 3],
        namespaces: BTreeMap::new(),
        mounts: Vec::new(),
        remote: None,
    }
}

/// Writes a registration of this process made by `fill`, under a new id
/// ending in `suffix`; returns the id.
fn register_own(suffix: char, fill: impl FnOnce(&mut Registration)) -> Result<String, NetError> {
    std::fs::create_dir_all(REGISTRY_DIR).map_err(|e| setup_err(REGISTRY_DIR, e.to_string()))?;
    let id = format!("{}{suffix}", new_run_id());
    let _lock = lock_registry()?;
    let mut reg = own_registration(id.clone());
    fill(&mut reg);
    write_registration(&reg)?;
    Ok(id)
}

/// A run's disk-fault mounts in the registry, so `faultline clean` can
/// unmount them should the run die. Made before the mounts are.
#[derive(Debug)]
pub struct MountRecord {
    id: String,
}

impl MountRecord {
    /// Registers `points` (made absolute) as mounts of this process.
    pub fn create(points: &[PathBuf]) -> Result<MountRecord, NetError> {
        let id = register_own('d', |reg| reg.mounts = points.iter().map(|p| absolute(p)).collect())?;
        Ok(MountRecord { id })
    }

    /// Forgets the mounts (they are gone).
    pub fn remove(&self) {
        let _ = std::fs::remove_file(registration_path(&self.id));
    }
}

/// A run's remote machines in the registry, and every daemon started on
/// them, so `faultline clean` can stop what a run that died left running
/// there. Made before anything is uploaded or started.
///
/// Dropped, it forgets the run, unless [`RemoteRecord::keep`] said that
/// something could not be stopped: then `faultline clean` still sees it.
#[derive(Debug)]
pub struct RemoteRecord {
    id: String,
    remote: std::sync::Mutex<RemoteRun>,
    keep: AtomicBool,
}

impl RemoteRecord {
    /// Registers `remote` (its key and known_hosts paths made absolute) as
    /// this process's.
    pub fn create(mut remote: RemoteRun) -> Result<RemoteRecord, NetError> {
        remote.key = remote.key.as_deref().map(absolute);
        remote.known_hosts = remote.known_hosts.as_deref().map(absolute);
        let id = register_own('s', |reg| reg.remote = Some(remote.clone()))?;
        Ok(RemoteRecord {
            id,
            remote: std::sync::Mutex::new(remote),
            keep: AtomicBool::new(false),
        })
    }

    /// Records a daemon about to start on `node` (before it starts, so a
    /// harness killed mid-start leaves its pid file on record); returns
    /// its index for [`RemoteRecord::started`].
    pub fn starting(&self, node: &str, daemon: RemoteDaemon) -> Result<usize, NetError> {
        self.update(|r| {
            let n = r.nodes.entry(node.to_owned()).or_default();
            n.daemons.push(daemon);
            n.daemons.len() - 1
        })
    }

    /// Records the pid of daemon `index` on `node`.
    pub fn started(&self, node: &str, index: usize, pid: u32) -> Result<(), NetError> {
        self.update(|r| {
            if let Some(d) = r.nodes.get_mut(node).and_then(|n| n.daemons.get_mut(index)) {
                d.pid = Some(pid);
            }
        })
    }

    fn update<T>(&self, change: impl FnOnce(&mut RemoteRun) -> T) -> Result<T, NetError> {
        let mut remote = self.remote.lock().expect("remote record");
        let out = change(&mut remote);
        let mut reg = own_registration(self.id.clone());
        reg.remote = Some(remote.clone());
        write_registration(&reg)?;
        Ok(out)
    }

    /// Keeps the registration when dropped: something it lists may still
    /// run (a daemon that could not be stopped, a machine not reached).
    pub fn keep(&self) {
        self.keep.store(true, Ordering::SeqCst);
    }
}

impl Drop for RemoteRecord {
    fn drop(&mut self) {
        if !self.keep.load(Ordering::SeqCst) {
            let _ = std::fs::remove_file(registration_path(&self.id));
        }
    }
}

/// Unmounts a FUSE mountpoint if it is mounted (lazily: a stalled
/// filesystem must not hang the clean-up).
pub fn unmount(path: &Path) -> Result<(), NetError> {
    if !is_mounted(path) {
        return Ok(());
    }
    let p = path.display().to_string();
    let spec = CommandSpec::new("umount", &["-l", &p], Duration::from_millis(IP_TIMEOUT_MS));
    let out = LocalControl
        .run("host", &spec)
        .map_err(|e| setup_err(&p, e.to_string()))?;
    if !out.status.success() && is_mounted(path) {
        return Err(setup_err(
            format!("unmounting {p}"),
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    Ok(())
}

/// Whether `path` is a mountpoint (per /proc/self/mounts).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    let want = path.display().to_string();
    mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .any(|m| m.replace("\\040", " ") == want)
}

/// What `faultline clean` found and did.
#[derive(Debug, Default)]
pub struct CleanReport {
    /// Runs removed (their harness had died).
    pub removed: Vec<String>,
    /// Runs left alone (their harness is alive).
    pub alive: Vec<String>,
    /// Names found without a registration, removed.
    pub strays: Vec<String>,
    /// What was stopped or removed on remote machines.
    pub remote: Vec<String>,
    /// What could not be removed.
    pub errors: Vec<String>,
}

/// Stops what a dead run left on its remote machines: given the run's
/// record and the hosts that live runs still use, says what it did, or
/// why it could not (naming the host).
pub type RemoteCleaner<'a> = dyn FnMut(&RemoteRun, &[String]) -> Result<Vec<String>, String> + 'a;

/// [`clean_leftovers_with`] for runs on this machine only: registrations
/// of runs over SSH are left for `faultline clean`, which can log in.
pub fn clean_leftovers() -> CleanReport {
    clean_some_leftovers(None)
}

/// Removes the namespaces, bridges and mounts of every registered run whose
/// harness is no longer alive, stops with `remote` what such a run left on
/// remote machines, and removes any `fl-*` namespace or bridge that no
/// registration claims (a run that died between creating and recording).
pub fn clean_leftovers_with(remote: &mut RemoteCleaner<'_>) -> CleanReport {
    clean_some_leftovers(Some(remote))
}

/// [`clean_leftovers_with`]; without `remote`, runs over SSH are skipped.
fn clean_some_leftovers(remote: Option<&mut RemoteCleaner<'_>>) -> CleanReport {
    let mut report = CleanReport::default();
    // Under the registry lock: a run registers (under the lock) before it
    // creates anything, so every namespace that exists now and that no
    // registration read here claims is truly a stray, never a run that is
    // just starting.
    let _lock = match std::fs::create_dir_all(REGISTRY_DIR)
        .map_err(|e| setup_err(REGISTRY_DIR, e.to_string()))
        .and_then(|()| lock_registry())
    {
        Ok(lock) => lock,
        Err(e) => {
            report.errors.push(e.to_string());
            return report;
        }
    };
    let regs = registrations();
    clean_dead_runs(&regs, remote, &mut report);
    let claimed = |name: &str| {
        regs.iter()
            .any(|r| name.starts_with(&format!("{NAME_PREFIX}-{}", r.id)))
    };
    remove_stray_namespaces(&claimed, &mut report);
    remove_stray_bridges(&claimed, &mut report);
    report
}

/// Removes what each registered run whose harness died left (on remote
/// machines through `remote`, when given), and its registration.
fn clean_dead_runs(regs: &[Registration], mut remote: Option<&mut RemoteCleaner<'_>>, report: &mut CleanReport) {
    let live_hosts: Vec<String> = regs
        .iter()
        .filter(|r| owner_alive(r))
        .flat_map(|r| r.remote.iter().flat_map(|x| x.nodes.values().map(|n| n.host.clone())))
        .collect();
    for reg in regs {
        if owner_alive(reg) {
            report.alive.push(reg.id.clone());
            continue;
        }
        if let Some(run) = &reg.remote {
            let Some(remote) = remote.as_mut() else {
                continue;
            };
            match remote(run, &live_hosts) {
                Ok(lines) => report
                    .remote
                    .extend(lines.into_iter().map(|l| format!("{}: {l}", reg.id))),
                Err(e) => {
                    report.errors.push(format!("{}: {e}", reg.id));
                    continue;
                }
            }
        }
        match remove_registered(reg) {
            Ok(()) => {
                let _ = std::fs::remove_file(registration_path(&reg.id));
                report.removed.push(reg.id.clone());
            }
            Err(e) => report.errors.push(format!("{}: {e}", reg.id)),
        }
    }
}

/// Removes every `fl-*` namespace no registration claims.
fn remove_stray_namespaces(claimed: &dyn Fn(&str) -> bool, report: &mut CleanReport) {
    for ns in ip(&["netns", "list"]).unwrap_or_default().lines() {
        let name = ns.split_whitespace().next().unwrap_or("");
        if is_run_name(name) && !claimed(name) {
            let stray = Registration {
                id: String::new(),
                pid: 0,
                start_ticks: 0,
                bridge: String::new(),
                subnet: [0; 3],
                namespaces: [(String::new(), name.to_owned())].into(),
                mounts: Vec::new(),
                remote: None,
            };
            match remove_registered(&stray) {
                Ok(()) => report.strays.push(name.to_owned()),
                Err(e) => report.errors.push(format!("{name}: {e}")),
            }
        }
    }
}

/// Removes every `fl-*` bridge no registration claims.
fn remove_stray_bridges(claimed: &dyn Fn(&str) -> bool, report: &mut CleanReport) {
    for line in ip(&["-o", "link", "show", "type", "bridge"])
        .unwrap_or_default()
        .lines()
    {
        let name = line.split(':').nth(1).map(str::trim).unwrap_or("");
        if is_run_name(name) && !claimed(name) {
            match ip(&["link", "del", name]) {
                Ok(_) => report.strays.push(name.to_owned()),
                Err(e) => report.errors.push(format!("{name}: {e}")),
            }
        }
    }
}

/// `fl-` followed by six hex digits, then nothing or `-node`.
fn is_run_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("fl-") else {
        return false;
    };
    let id: String = rest.chars().take_while(|c| *c != '-').collect();
    id.len() == 6 && id.chars().all(|c| c.is_ascii_hexdigit())
}

/// Runs processes inside the nodes' namespaces.
#[derive(Clone, Debug)]
pub struct NetnsControl {
    namespaces: BTreeMap<String, PathBuf>,
}

impl NetnsControl {
    fn enter(&self, node: &str, cmd: &mut Command) -> Result<File, ControlError> {
        let path = self.namespaces.get(node).ok_or_else(|| ControlError::Io {
            path: PathBuf::from(node),
            source: std::io::Error::other(format!("no namespace for node {node}")),
        })?;
        let ns = File::open(path).map_err(|source| ControlError::Io {
            path: path.clone(),
            source,
        })?;
        enter_netns(cmd, ns.as_raw_fd());
        Ok(ns)
    }
}

/// Makes `cmd` join the network namespace open at `fd` before it execs.
fn enter_netns(cmd: &mut Command, fd: RawFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and calls only
    // setns(2), which is async-signal-safe; `fd` stays open in the parent
    // until spawn returns (the caller holds the File).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

impl Control for NetnsControl {
    fn start(&self, node: &str, spec: &DaemonSpec) -> Result<Box<dyn Daemon>, ControlError> {
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args).envs(spec.env.iter().cloned());
        let _ns = self.enter(node, &mut cmd)?;
        control::spawn_daemon(node, cmd, spec)
    }

    fn run(&self, node: &str, spec: &CommandSpec) -> Result<Output, ControlError> {
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args);
        let _ns = self.enter(node, &mut cmd)?;
        control::run_local(node, &mut cmd, spec)
    }

    fn put(&self, node: &str, local: &Path, remote: &Path, mode: u32) -> Result<(), ControlError> {
        LocalControl.put(node, local, remote, mode)
    }

    fn fetch(&self, node: &str, remote: &Path, local: &Path) -> Result<(), ControlError> {
        LocalControl.fetch(node, remote, local)
    }
}

/// Whether this process may create network namespaces (root, `ip` present).
pub fn available() -> Result<(), String> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("network namespaces need root".into());
    }
    match ip(&["netns", "list"]) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("`ip netns` does not work here: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_arithmetic() {
        let net = Ipv4Addr::new(10, 150, 7, 0);
        assert!(overlaps(net, 24, Ipv4Addr::new(10, 150, 7, 9), 32));
        assert!(overlaps(net, 24, Ipv4Addr::new(10, 0, 0, 0), 8));
        assert!(!overlaps(net, 24, Ipv4Addr::new(10, 150, 8, 0), 24));
        assert!(overlaps_any(net, "10.150.0.0/16 dev eth0 proto kernel"));
        assert!(!overlaps_any(
            net,
            "default via 172.17.0.1 dev eth0\n172.17.0.0/16 dev eth0"
        ));
    }

    #[test]
    fn run_names_are_recognised() {
        assert!(is_run_name("fl-ab12cd"));
        assert!(is_run_name("fl-ab12cd-n1"));
        assert!(!is_run_name("fl-xyz"));
        assert!(!is_run_name("docker0"));
        assert_eq!(new_run_id().len(), 6);
    }
}
