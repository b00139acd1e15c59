//! A node's surroundings: the disk under its data directory and the clock
//! it reads, which the disk and clock nemeses fault.
//!
//! - [`Disks`]: every node's `data/` is a mount of `faultline-diskfs`, the
//!   disk-fault filesystem, passing through to `disk/` beside it. Its
//!   control socket takes `stall`, `fail-writes`, `drop-unsynced`, ...; the
//!   nemesis sends them with `faultline-diskfs ctl` run on the node through
//!   `Control`, so the same code works on local nodes, in namespaces and on
//!   remote machines. Mounts are recorded for `faultline clean` before they
//!   are made, and unmounted at the end (SIGTERM, then SIGKILL and a lazy
//!   unmount if the filesystem would not go).
//! - [`Clocks`]: every node runs under libfaketime, reading its offset from
//!   a file of its own (`faketime.rc`, rewritten atomically), so the
//!   nemesis moves one node's clock without restarting it. Only programs
//!   that read time through libc are affected (not Go's etcd). The file
//!   is world-readable (a database may run as a user of its own). Where
//!   the database can tell its time (PostgreSQL's `clock_timestamp()`),
//!   every move is checked by asking it, so a clock fault is recorded
//!   only once the database reads the clock set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use faultline_nemesis::{
    CommandSpec, Control, ControlError, Daemon, DaemonSpec, DiskCommand, Signal, Surroundings, SurroundingsError,
};
use serde_json::Value;

use super::clock_check;
use super::db::DbError;

/// How long one `faultline-diskfs ctl` may take.
const CTL_TIMEOUT_MS: u64 = 10_000;
/// How long a filesystem may take to mount.
const MOUNT_TIMEOUT_MS: u64 = 15_000;
/// How long a filesystem may take to unmount itself after SIGTERM.
const UNMOUNT_GRACE_MS: u64 = 3_000;
/// The longest Unix socket path (sun_path holds 108 bytes, NUL included).
const SOCKET_PATH_MAX: usize = 100;

fn db_err(node: &str, source: ControlError) -> DbError {
    DbError::Control {
        node: node.to_owned(),
        source,
    }
}

fn other(node: &str, message: String) -> DbError {
    db_err(
        node,
        ControlError::Io {
            path: PathBuf::from(node),
            source: std::io::Error::other(message),
        },
    )
}

/// One node's disk-fault filesystem.
struct Disk {
    daemon: Box<dyn Daemon>,
    mountpoint: PathBuf,
    socket: PathBuf,
}

/// The disk-fault filesystems of a cluster, one per node.
pub struct Disks {
    control: Arc<dyn Control>,
    bin: PathBuf,
    disks: Mutex<BTreeMap<String, Disk>>,
    registration: Option<faultline_nemesis::netns::MountRecord>,
}

/// Where `node`'s control socket goes: in its folder when the path is short
/// enough for a Unix socket, else in /tmp under a name derived from it.
fn socket_path(node: &str, dir: &Path) -> PathBuf {
    let p = dir.join("diskfs.sock");
    if p.as_os_str().len() <= SOCKET_PATH_MAX {
        return p;
    }
    let h = dir
        .display()
        .to_string()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
    std::env::temp_dir().join(format!("fl-{h:016x}-{node}.sock"))
}

impl Disks {
    /// Mounts a disk-fault filesystem at every node's `data/` (backed by
    /// `disk/`) and waits, bounded, until each answers on its socket.
    pub async fn mount(
        control: Arc<dyn Control>,
        bin: &Path,
        dirs: &BTreeMap<String, PathBuf>,
    ) -> Result<Disks, DbError> {
        let registration = if control.shares_filesystem() {
            let points: Vec<PathBuf> = dirs.values().map(|d| d.join("data")).collect();
            Some(faultline_nemesis::netns::MountRecord::create(&points).map_err(|e| other("store", e.to_string()))?)
        } else {
            None
        };
        let disks = Disks {
            control,
            bin: bin.to_owned(),
            disks: Mutex::new(BTreeMap::new()),
            registration,
        };
        for (node, dir) in dirs {
            disks.mount_one(node, dir)?;
        }
        for node in dirs.keys() {
            disks.wait_mounted(node).await?;
        }
        Ok(disks)
    }

    fn mount_one(&self, node: &str, dir: &Path) -> Result<(), DbError> {
        let (backing, mountpoint, socket) = (dir.join("disk"), dir.join("data"), socket_path(node, dir));
        for d in [&backing, &mountpoint] {
            super::procs::make_dir(self.control.as_ref(), node, d)?;
        }
        let _ = std::fs::remove_file(&socket);
        let spec = DaemonSpec {
            program: self.bin.clone(),
            args: vec![
                "mount".into(),
                "--backing".into(),
                backing.display().to_string(),
                "--mountpoint".into(),
                mountpoint.display().to_string(),
                "--control".into(),
                socket.display().to_string(),
            ],
            env: Vec::new(),
            log_file: dir.join("diskfs.log"),
        };
        let daemon = self.control.start(node, &spec).map_err(|e| db_err(node, e))?;
        self.disks.lock().expect("disks").insert(
            node.to_owned(),
            Disk {
                daemon,
                mountpoint,
                socket,
            },
        );
        Ok(())
    }

    async fn wait_mounted(&self, node: &str) -> Result<(), DbError> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(MOUNT_TIMEOUT_MS);
        loop {
            let last = match self.ctl(node, &["status"]) {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(other(
                    node,
                    format!("the disk-fault filesystem did not answer within {MOUNT_TIMEOUT_MS} ms: {last}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Control socket of each node.
    pub fn sockets(&self) -> DiskCtl {
        DiskCtl {
            bin: self.bin.clone(),
            sockets: self
                .disks
                .lock()
                .expect("disks")
                .iter()
                .map(|(n, d)| (n.clone(), d.socket.clone()))
                .collect(),
        }
    }

    fn ctl(&self, node: &str, words: &[&str]) -> Result<Value, SurroundingsError> {
        self.sockets().ctl(self.control.as_ref(), node, words)
    }

    /// Unmounts every filesystem: healed first (a stalled one would hold up
    /// its own unmount), asked to go with SIGTERM, then killed and lazily
    /// unmounted if it would not. Tries every node; returns the first error.
    pub fn unmount_all(&self) -> Result<(), DbError> {
        let disks = std::mem::take(&mut *self.disks.lock().expect("disks"));
        let ctl = DiskCtl {
            bin: self.bin.clone(),
            sockets: disks.iter().map(|(n, d)| (n.clone(), d.socket.clone())).collect(),
        };
        let mut first = None;
        for (node, mut disk) in disks {
            let _ = ctl.ctl(self.control.as_ref(), &node, &["heal"]);
            if let Err(e) = self.unmount_one(&node, &mut disk) {
                first.get_or_insert(e);
            }
        }
        if first.is_none() {
            if let Some(r) = &self.registration {
                r.remove();
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn unmount_one(&self, node: &str, disk: &mut Disk) -> Result<(), DbError> {
        let _ = disk.daemon.signal(Signal::Term);
        let deadline = std::time::Instant::now() + Duration::from_millis(UNMOUNT_GRACE_MS);
        while disk.daemon.is_running() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        disk.daemon.stop().map_err(|e| db_err(node, e))?;
        let _ = std::fs::remove_file(&disk.socket);
        if !self.control.shares_filesystem() {
            let point = disk.mountpoint.display().to_string();
            let cmd = CommandSpec::new(
                "sh",
                &["-c", "! mountpoint -q \"$0\" || umount -l \"$0\"", &point],
                ctl_timeout(),
            );
            self.control.run(node, &cmd).map_err(|e| db_err(node, e))?;
            return Ok(());
        }
        faultline_nemesis::netns::unmount(&disk.mountpoint).map_err(|e| other(node, e.to_string()))
    }
}

impl Drop for Disks {
    fn drop(&mut self) {
        if let Err(e) = self.unmount_all() {
            tracing::error!(error = %e, "unmounting the disk-fault filesystems");
        }
    }
}

fn ctl_timeout() -> Duration {
    Duration::from_millis(CTL_TIMEOUT_MS)
}

/// How to reach each node's disk-fault filesystem.
#[derive(Clone, Debug)]
pub struct DiskCtl {
    bin: PathBuf,
    sockets: BTreeMap<String, PathBuf>,
}

impl DiskCtl {
    /// Runs `faultline-diskfs ctl --control SOCKET words...` on `node`;
    /// `ok [json]` is the JSON (null without), anything else the reason.
    fn ctl(&self, control: &dyn Control, node: &str, words: &[&str]) -> Result<Value, SurroundingsError> {
        let socket = self
            .sockets
            .get(node)
            .ok_or_else(|| SurroundingsError::UnknownNode {
                node: node.to_owned(),
                what: "disk-fault filesystem",
            })?
            .display()
            .to_string();
        let mut args = vec!["ctl", "--control", socket.as_str()];
        args.extend_from_slice(words);
        let out = control.run(node, &CommandSpec::new(&self.bin, &args, ctl_timeout()))?;
        let said = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            return Err(SurroundingsError::Refused {
                node: node.to_owned(),
                command: format!("faultline-diskfs ctl {}", words.join(" ")),
                detail: format!("{said} {err}").trim().to_owned(),
            });
        }
        let rest = said.strip_prefix("ok").map(str::trim).unwrap_or(&said);
        Ok(serde_json::from_str(rest).unwrap_or(Value::Null))
    }
}

/// libfaketime under every node, with an offset file each.
pub struct Clocks {
    lib: PathBuf,
    files: BTreeMap<String, PathBuf>,
    control: Arc<dyn Control>,
    /// By node, a command that asks the database for its clock (see
    /// [`Clocks::probed_by`]); none where the database cannot tell.
    probes: BTreeMap<String, CommandSpec>,
    /// By node, the offsets of its last move (from, to), so a check knows
    /// which clock it must tell the new one from.
    moves: Mutex<BTreeMap<String, (i64, i64)>>,
}

/// Where Debian puts the multithreaded libfaketime.
const FAKETIME_CANDIDATES: [&str; 3] = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/faketime/libfaketimeMT.so.1",
];

impl Clocks {
    /// Offset files (true time at first) for every node, and the library
    /// (`given`, or Debian's `faketime` package's).
    pub fn new(
        control: Arc<dyn Control>,
        dirs: &BTreeMap<String, PathBuf>,
        given: Option<&Path>,
    ) -> Result<Clocks, DbError> {
        let local = control.shares_filesystem();
        let lib = match given {
            Some(p) => p.to_owned(),
            None => FAKETIME_CANDIDATES
                .iter()
                .map(PathBuf::from)
                .find(|p| !local || p.is_file())
                .ok_or_else(|| DbError::NoBinary {
                    name: "libfaketime".into(),
                    looked: FAKETIME_CANDIDATES.join(", "),
                })?,
        };
        let clocks = Clocks {
            lib,
            files: dirs.iter().map(|(n, d)| (n.clone(), d.join("faketime.rc"))).collect(),
            control,
            probes: BTreeMap::new(),
            moves: Mutex::new(BTreeMap::new()),
        };
        for node in dirs.keys() {
            super::procs::make_dir(clocks.control.as_ref(), node, &dirs[node])?;
            clocks.set(node, 0).map_err(|e| other(node, e.to_string()))?;
        }
        Ok(clocks)
    }

    /// The same clocks, each move checked with the command `probe` gives
    /// for the node: run on the node, it prints three integers, the
    /// node's true time in milliseconds since the epoch, the database's
    /// time, and the true time again.
    pub fn probed_by(mut self, probe: impl Fn(&str) -> Option<CommandSpec>) -> Clocks {
        self.probes = self.files.keys().filter_map(|n| Some((n.clone(), probe(n)?))).collect();
        self
    }

    /// The environment that puts a node under libfaketime, by node. Only
    /// the wall clock moves (`DONT_FAKE_MONOTONIC`): timers and timeouts
    /// keep real time, as a skewed machine's do.
    pub fn env(&self) -> BTreeMap<String, Vec<(String, String)>> {
        self.files
            .iter()
            .map(|(n, f)| {
                let vars = vec![
                    ("LD_PRELOAD".to_owned(), self.lib.display().to_string()),
                    ("FAKETIME_TIMESTAMP_FILE".to_owned(), f.display().to_string()),
                    ("FAKETIME_NO_CACHE".to_owned(), "1".to_owned()),
                    ("FAKETIME_DONT_FAKE_MONOTONIC".to_owned(), "1".to_owned()),
                ];
                (n.clone(), vars)
            })
            .collect()
    }

    /// Writes `node`'s offset file atomically (libfaketime may read it at
    /// any instant).
    fn set(&self, node: &str, offset_ms: i64) -> Result<(), SurroundingsError> {
        let file = self.files.get(node).ok_or_else(|| SurroundingsError::UnknownNode {
            node: node.to_owned(),
            what: "clock",
        })?;
        self.note_move(node, offset_ms);
        let text = faketime_offset(offset_ms);
        if self.control.shares_filesystem() {
            return write_readable(file, &format!("{text}\n"))
                .map_err(|source| ControlError::Io {
                    path: file.clone(),
                    source,
                })
                .map_err(SurroundingsError::from);
        }
        let path = file.display().to_string();
        let script = "umask 022 && printf '%s\\n' \"$0\" > \"$1.$$.tmp\" && mv -f \"$1.$$.tmp\" \"$1\"";
        let cmd = CommandSpec::new("sh", &["-c", script, &text, &path], ctl_timeout());
        let out = self.control.run(node, &cmd)?;
        if out.status.success() {
            Ok(())
        } else {
            Err(SurroundingsError::Refused {
                node: node.to_owned(),
                command: format!("writing {path}"),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }
}

impl Clocks {
    /// Remembers that `node`'s clock goes from where it was to `offset_ms`.
    fn note_move(&self, node: &str, offset_ms: i64) {
        let mut moves = self.moves.lock().expect("clock moves");
        let from = moves.get(node).map_or(0, |(_, to)| *to);
        moves.insert(node.to_owned(), (from, offset_ms));
    }

    /// Asks the database on `node` for its clock until it reads the offset
    /// set (bounded); the offset read, or `None` without a probe.
    fn check(&self, node: &str, want_ms: i64) -> Result<Option<i64>, SurroundingsError> {
        let Some(probe) = self.probes.get(node) else {
            return Ok(None);
        };
        let from = || self.moves.lock().expect("clock moves").get(node).map_or(0, |m| m.0);
        clock_check::await_offset(self.control.as_ref(), node, probe, from, want_ms).map(Some)
    }
}

/// Writes `text` to `file` through a temporary beside it, renamed over
/// it (atomic for readers), readable by every user whatever the umask: the
/// database may run as its own user.
fn write_readable(file: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    // A temporary name of this write's own: a clock strobe and a clock
    // fault may move one node's clock at once, and with one shared name
    // the second rename finds its file already renamed away.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let tmp = file.with_extension(format!("{}.{n}.tmp", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&tmp, file)
}

/// libfaketime's relative offset in seconds: `+1.250`, `-0.100`, `+0.000`.
fn faketime_offset(offset_ms: i64) -> String {
    let sign = if offset_ms < 0 { '-' } else { '+' };
    let abs = offset_ms.unsigned_abs();
    format!("{sign}{}.{:03}", abs / 1000, abs % 1000)
}

/// The nemesis's handle on disks and clocks.
pub struct NodeSurroundings {
    control: Arc<dyn Control>,
    disks: Option<DiskCtl>,
    clocks: Option<Clocks>,
}

impl NodeSurroundings {
    /// Disks and clocks as far as the run set them up.
    pub fn new(control: Arc<dyn Control>, disks: Option<DiskCtl>, clocks: Option<Clocks>) -> NodeSurroundings {
        NodeSurroundings { control, disks, clocks }
    }
}

impl Surroundings for NodeSurroundings {
    fn disk(&self, node: &str, cmd: DiskCommand) -> Result<Value, SurroundingsError> {
        let disks = self.disks.as_ref().ok_or(SurroundingsError::NoDisks)?;
        let ms;
        let words: Vec<&str> = match cmd {
            DiskCommand::Stall { ms: m } => {
                ms = m.to_string();
                vec!["stall", ms.as_str()]
            }
            DiskCommand::SlowFsync { ms: m } => {
                ms = m.to_string();
                vec!["fsync-delay", ms.as_str()]
            }
            DiskCommand::Errors => {
                disks.ctl(self.control.as_ref(), node, &["fail-writes", "on"])?;
                vec!["fail-fsync", "on"]
            }
            DiskCommand::DropUnsynced => vec!["drop-unsynced"],
            DiskCommand::Heal => vec!["heal"],
        };
        disks.ctl(self.control.as_ref(), node, &words)
    }

    fn has_disks(&self) -> bool {
        self.disks.is_some()
    }

    fn set_clock(&self, node: &str, offset_ms: i64) -> Result<(), SurroundingsError> {
        self.clocks
            .as_ref()
            .ok_or(SurroundingsError::NoClocks)?
            .set(node, offset_ms)
    }

    fn check_clock(&self, node: &str, offset_ms: i64) -> Result<Option<i64>, SurroundingsError> {
        self.clocks
            .as_ref()
            .ok_or(SurroundingsError::NoClocks)?
            .check(node, offset_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_writers_of_one_clock_file_both_succeed() {
        // A clock strobe and a clock fault on one node write its file at
        // once; each write must land whole, neither may fail.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("faketime.rc");
        std::thread::scope(|s| {
            let writers: Vec<_> = (0..2)
                .map(|w| {
                    let file = &file;
                    s.spawn(move || (0..300).try_for_each(|i| write_readable(file, &format!("+{w}.{i:03}\n"))))
                })
                .collect();
            for w in writers {
                w.join().unwrap().unwrap();
            }
        });
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text == "+0.299\n" || text == "+1.299\n", "{text:?}");
    }

    #[test]
    fn offsets_are_written_as_libfaketime_reads_them() {
        assert_eq!(faketime_offset(1250), "+1.250");
        assert_eq!(faketime_offset(-100), "-0.100");
        assert_eq!(faketime_offset(0), "+0.000");
        assert_eq!(faketime_offset(-4007), "-4.007");
    }

    #[test]
    fn long_folders_get_short_socket_paths() {
        let short = socket_path("n1", Path::new("/tmp/s/n1"));
        assert_eq!(short, Path::new("/tmp/s/n1/diskfs.sock"));
        let deep = PathBuf::from(format!("/tmp/{}/n1", "x".repeat(120)));
        let p = socket_path("n1", &deep);
        assert!(p.as_os_str().len() <= SOCKET_PATH_MAX, "{}", p.display());
        assert_eq!(p, socket_path("n1", &deep), "the same folder gives the same socket");
    }
}
