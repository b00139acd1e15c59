//! Durable storage of one replication group: write-ahead log, snapshot and
//! hard state (epoch and vote).
//!
//! Promises:
//! - The log file is a sequence of records `[len u32 BE][crc32 u32 BE][JSON
//!   entry]` with dense LSNs. Recovery keeps the longest valid prefix and
//!   truncates a torn or corrupt tail (logged), so a `kill -9` at any moment
//!   leaves a log we can open.
//! - One writer thread owns the file and does group commit: it drains every
//!   pending command, writes them with one `write`, then, under
//!   `fsync=always`, one `fdatasync`, and only then reports the new durable
//!   LSN. Under `batch` it reports after the write and syncs every few ms;
//!   under `never` it never syncs. That report is what acknowledgements wait
//!   for, so the policy is exactly what a client's "ok" is worth.
//! - Snapshots and hard state are written to a temporary file, synced and
//!   renamed, so they are either the old or the new version.
//! - A write or sync of the log that fails ends the process (exit code
//!   [`WAL_FAILED_EXIT_CODE`]): after a failed fsync nothing in memory can be
//!   trusted to be on disk, so the node recovers from its log when restarted.

use crate::state::{Entry, StateMachine};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

/// The exit code of a node whose log could not be written (EX_IOERR).
pub const WAL_FAILED_EXIT_CODE: i32 = 74;
const LOG_FILE: &str = "wal.log";
const SNAPSHOT_FILE: &str = "snapshot.json";
const HARD_STATE_FILE: &str = "hardstate.json";
/// Largest single record accepted on recovery (a frame plus JSON overhead).
const MAX_RECORD_BYTES: usize = 4 << 20;
/// Most commands the writer folds into one group commit.
const MAX_BATCH_COMMANDS: usize = 8192;

/// When the log is synced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FsyncPolicy {
    /// Sync before acknowledging (group commit).
    Always,
    /// Acknowledge after the write; sync every `interval_ms`.
    Batch {
        /// Sync period.
        interval_ms: u64,
    },
    /// Never sync (the OS decides).
    Never,
}

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// An I/O error on a named file.
    #[error("io on {path}: {source}")]
    Io {
        /// File concerned.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A snapshot or hard-state file that does not parse.
    #[error("corrupt {path}: {reason}")]
    Corrupt {
        /// File concerned.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The state machine as of `lsn`, plus the epoch of that entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Last LSN included.
    pub lsn: u64,
    /// Epoch of the entry at `lsn`.
    pub epoch: u64,
    /// The state machine.
    pub state: StateMachine,
}

/// What must survive a crash for elections to be safe.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HardState {
    /// Current epoch (term).
    pub epoch: u64,
    /// Who this node voted for in `epoch`.
    pub voted_for: Option<String>,
}

/// Everything read back at start.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Latest snapshot, if any.
    pub snapshot: Option<Snapshot>,
    /// Log entries after the snapshot, dense.
    pub entries: Vec<Entry>,
    /// Epoch and vote.
    pub hard: HardState,
    /// Byte offset of each entry in the log file (parallel to `entries`).
    offsets: Vec<u64>,
    /// Length of the valid log.
    valid_len: u64,
}

/// Reads snapshot, hard state and log from `dir`, truncating a bad tail.
///
/// Under `fsync=always` a snapshot or hard state that does not parse is
/// corruption, and the node refuses to start. Under `batch` and `never`
/// they were renamed into place without a sync, so after a power loss one
/// may be empty or torn, as on any filesystem: that is the data loss the
/// policy accepts, so it is logged and the file is taken as absent (the node
/// forgets its vote, or its snapshot) rather than keeping the node down.
pub fn recover(dir: &Path, fsync: FsyncPolicy) -> Result<Recovered, WalError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let lenient = fsync != FsyncPolicy::Always;
    let snapshot: Option<Snapshot> = read_json_or_lost(&dir.join(SNAPSHOT_FILE), lenient)?;
    let hard: HardState = read_json_or_lost(&dir.join(HARD_STATE_FILE), lenient)?.unwrap_or_default();
    let base_lsn = snapshot.as_ref().map_or(0, |s| s.lsn);
    let path = dir.join(LOG_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let mut rec = Recovered {
        snapshot,
        hard,
        ..Default::default()
    };
    let valid_len = scan_records(&bytes, base_lsn, &mut rec);
    rec.valid_len = valid_len;
    if valid_len < bytes.len() as u64 {
        warn!(
            path = %path.display(),
            valid_bytes = valid_len,
            file_bytes = bytes.len(),
            "truncating torn or corrupt log tail"
        );
        let f = OpenOptions::new().write(true).open(&path).map_err(io_err(&path))?;
        f.set_len(valid_len).map_err(io_err(&path))?;
        f.sync_all().map_err(io_err(&path))?;
    }
    Ok(rec)
}

/// Parses records into `rec`, returning the length of the valid prefix.
/// Records at or below `base_lsn` (already in the snapshot) are kept in the
/// file but skipped; the first record out of sequence ends the log.
fn scan_records(bytes: &[u8], base_lsn: u64, rec: &mut Recovered) -> u64 {
    let mut pos = 0usize;
    let mut expect_next: Option<u64> = None;
    while let Some((entry, len)) = parse_record(&bytes[pos..]) {
        if let Some(next) = expect_next {
            if entry.lsn != next {
                break;
            }
        } else if entry.lsn > base_lsn + 1 {
            break;
        }
        expect_next = Some(entry.lsn + 1);
        if entry.lsn > base_lsn {
            rec.offsets.push(pos as u64);
            rec.entries.push(entry);
        }
        pos += len;
    }
    pos as u64
}

fn parse_record(bytes: &[u8]) -> Option<(Entry, usize)> {
    if bytes.len() < 8 {
        return None;
    }
    let len = u32::from_be_bytes(bytes[0..4].try_into().ok()?) as usize;
    let crc = u32::from_be_bytes(bytes[4..8].try_into().ok()?);
    if len > MAX_RECORD_BYTES || bytes.len() < 8 + len {
        return None;
    }
    let payload = &bytes[8..8 + len];
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let entry: Entry = serde_json::from_slice(payload).ok()?;
    Some((entry, 8 + len))
}

fn encode_record(entry: &Entry, out: &mut Vec<u8>) {
    let payload = serde_json::to_vec(entry).expect("entries always serialize");
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, WalError> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).map_err(io_err(path))?;
    serde_json::from_slice(&buf).map(Some).map_err(|e| WalError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// [`read_json`], but when `lenient` a file that does not parse is logged
/// and taken as absent (see [`recover`]).
fn read_json_or_lost<T: serde::de::DeserializeOwned>(path: &Path, lenient: bool) -> Result<Option<T>, WalError> {
    match read_json(path) {
        Err(WalError::Corrupt { path, reason }) if lenient => {
            warn!(path = %path.display(), reason, "unsynced file lost its contents; taken as absent");
            Ok(None)
        }
        other => other,
    }
}

/// Writes `value` as JSON atomically: temp file, sync, rename, sync dir.
fn write_json_atomic<T: Serialize>(path: &Path, value: &T, sync: bool) -> Result<(), WalError> {
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec(value).expect("storage types always serialize");
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(&bytes).map_err(io_err(&tmp))?;
    if sync {
        f.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_err(path))?;
    if sync {
        if let Some(dir) = path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
        }
    }
    Ok(())
}

/// Persists epoch and vote; called before answering a vote or taking a new
/// epoch, so a restarted node never votes twice in one epoch.
pub fn save_hard_state(dir: &Path, hard: &HardState, sync: bool) -> Result<(), WalError> {
    write_json_atomic(&dir.join(HARD_STATE_FILE), hard, sync)
}

/// A command for the writer thread, applied in order.
#[derive(Debug)]
pub enum WalCmd {
    /// Append entries (dense, following the current last LSN).
    Append(Vec<Entry>),
    /// Drop every entry with LSN >= `from_lsn`; later reports carry `gen`.
    Truncate {
        /// First LSN removed.
        from_lsn: u64,
        /// Generation of the log after the cut.
        gen: u64,
    },
    /// Store a snapshot and drop the log entries it covers.
    Compact(Box<Snapshot>),
    /// Replace everything by a snapshot received from the leader.
    Install {
        /// The snapshot.
        snapshot: Box<Snapshot>,
        /// Generation of the log after the reset.
        gen: u64,
    },
}

/// What the writer reports back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durable {
    /// Generation of the log this report is about.
    pub gen: u64,
    /// Every entry up to this LSN is as durable as the policy promises.
    pub lsn: u64,
}

/// Handle to the writer thread.
pub struct WalHandle {
    tx: std_mpsc::Sender<WalCmd>,
}

impl WalHandle {
    /// Queues a command; false if the writer has died (a fatal disk error).
    pub fn send(&self, cmd: WalCmd) -> bool {
        self.tx.send(cmd).is_ok()
    }
}

/// Starts the writer thread on `dir` with the recovered log layout.
pub fn start_writer(
    dir: &Path,
    rec: &Recovered,
    policy: FsyncPolicy,
    node: &str,
    notify: mpsc::UnboundedSender<Durable>,
) -> Result<WalHandle, WalError> {
    let path = dir.join(LOG_FILE);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    file.seek(SeekFrom::Start(rec.valid_len)).map_err(io_err(&path))?;
    // The log file may have just been created: make its directory entry
    // durable too, or a power loss could lose the whole synced file.
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
    let base_lsn = rec.snapshot.as_ref().map_or(0, |s| s.lsn);
    let first_lsn = rec.entries.first().map_or(base_lsn + 1, |e| e.lsn);
    let mut writer = Writer {
        dir: dir.to_path_buf(),
        path,
        file,
        policy,
        first_lsn,
        offsets: rec.offsets.clone(),
        len: rec.valid_len,
        gen: 0,
        last_sync: Instant::now(),
        dirty: false,
        node: node.to_string(),
    };
    let (tx, rx) = std_mpsc::channel();
    std::thread::Builder::new()
        .name(format!("wal-{node}"))
        .spawn(move || writer.run(rx, notify))
        .map_err(io_err(dir))?;
    Ok(WalHandle { tx })
}

struct Writer {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    policy: FsyncPolicy,
    /// LSN of `offsets[0]`.
    first_lsn: u64,
    offsets: Vec<u64>,
    len: u64,
    gen: u64,
    last_sync: Instant,
    dirty: bool,
    node: String,
}

impl Writer {
    fn last_lsn(&self) -> u64 {
        self.first_lsn + self.offsets.len() as u64 - 1
    }

    fn run(&mut self, rx: std_mpsc::Receiver<WalCmd>, notify: mpsc::UnboundedSender<Durable>) {
        loop {
            let first = match self.next_command(&rx) {
                Ok(Some(cmd)) => cmd,
                Ok(None) => continue,
                Err(()) => return,
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH_COMMANDS {
                match rx.try_recv() {
                    Ok(cmd) => batch.push(cmd),
                    Err(_) => break,
                }
            }
            if let Err(e) = self.process(batch) {
                // A node that cannot write its log must not acknowledge
                // anything again, and after a failed fsync the kernel may
                // have dropped the unwritten pages, so nothing in memory can
                // be trusted to be on disk. As PostgreSQL does on a failed
                // fsync, the node exits (EX_IOERR) and comes back, when
                // restarted, from what its log really holds.
                error!(node = %self.node, error = %e, "write-ahead log failed; exiting to recover from the log");
                std::process::exit(WAL_FAILED_EXIT_CODE);
            }
            let report = Durable {
                gen: self.gen,
                lsn: self.last_lsn(),
            };
            if notify.send(report).is_err() {
                return;
            }
        }
    }

    /// Waits for a command; under `batch` wakes up to sync on time.
    fn next_command(&mut self, rx: &std_mpsc::Receiver<WalCmd>) -> Result<Option<WalCmd>, ()> {
        match self.policy {
            FsyncPolicy::Batch { interval_ms } => match rx.recv_timeout(Duration::from_millis(interval_ms.max(1))) {
                Ok(cmd) => Ok(Some(cmd)),
                Err(std_mpsc::RecvTimeoutError::Timeout) => {
                    self.sync_if_due(true);
                    Ok(None)
                }
                Err(std_mpsc::RecvTimeoutError::Disconnected) => Err(()),
            },
            _ => rx.recv().map(Some).map_err(|_| ()),
        }
    }

    fn process(&mut self, batch: Vec<WalCmd>) -> Result<(), WalError> {
        let mut buf = Vec::new();
        for cmd in batch {
            match cmd {
                WalCmd::Append(entries) => self.encode_appends(&entries, &mut buf),
                WalCmd::Truncate { from_lsn, gen } => {
                    self.flush_buf(&mut buf)?;
                    self.truncate_from(from_lsn)?;
                    self.gen = gen;
                }
                WalCmd::Compact(snap) => {
                    self.flush_buf(&mut buf)?;
                    self.compact(&snap)?;
                }
                WalCmd::Install { snapshot, gen } => {
                    self.flush_buf(&mut buf)?;
                    self.install(&snapshot)?;
                    self.gen = gen;
                }
            }
        }
        self.flush_buf(&mut buf)?;
        match self.policy {
            FsyncPolicy::Always => self.sync()?,
            FsyncPolicy::Batch { .. } => self.sync_if_due(false),
            FsyncPolicy::Never => {}
        }
        Ok(())
    }

    fn encode_appends(&mut self, entries: &[Entry], buf: &mut Vec<u8>) {
        for e in entries {
            debug_assert_eq!(e.lsn, self.last_lsn() + 1, "log must stay dense");
            self.offsets.push(self.len + buf.len() as u64);
            encode_record(e, buf);
        }
    }

    fn flush_buf(&mut self, buf: &mut Vec<u8>) -> Result<(), WalError> {
        if buf.is_empty() {
            return Ok(());
        }
        self.file.write_all(buf).map_err(io_err(&self.path))?;
        self.len += buf.len() as u64;
        self.dirty = true;
        buf.clear();
        Ok(())
    }

    fn sync(&mut self) -> Result<(), WalError> {
        if self.dirty {
            self.file.sync_data().map_err(io_err(&self.path))?;
            self.dirty = false;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    fn sync_if_due(&mut self, timer_fired: bool) {
        let FsyncPolicy::Batch { interval_ms } = self.policy else {
            return;
        };
        let due = self.last_sync.elapsed() >= Duration::from_millis(interval_ms);
        if timer_fired || due {
            if let Err(e) = self.sync() {
                error!(node = %self.node, error = %e, "periodic log sync failed");
            }
        }
    }

    fn truncate_from(&mut self, from_lsn: u64) -> Result<(), WalError> {
        if from_lsn > self.last_lsn() {
            return Ok(());
        }
        let idx = from_lsn.saturating_sub(self.first_lsn) as usize;
        let cut = self.offsets.get(idx).copied().unwrap_or(0);
        self.file.set_len(cut).map_err(io_err(&self.path))?;
        self.file.seek(SeekFrom::Start(cut)).map_err(io_err(&self.path))?;
        self.offsets.truncate(idx);
        self.len = cut;
        self.file.sync_data().map_err(io_err(&self.path))?;
        info!(node = %self.node, lsn = from_lsn, "log truncated");
        Ok(())
    }

    /// Writes the snapshot, then rewrites the log without the covered prefix.
    fn compact(&mut self, snap: &Snapshot) -> Result<(), WalError> {
        self.sync()?;
        write_json_atomic(&self.dir.join(SNAPSHOT_FILE), snap, true)?;
        let keep_from = snap.lsn + 1;
        if keep_from <= self.first_lsn {
            return Ok(());
        }
        let idx = ((keep_from - self.first_lsn) as usize).min(self.offsets.len());
        let cut = self.offsets.get(idx).copied().unwrap_or(self.len);
        let mut tail = Vec::new();
        self.file.seek(SeekFrom::Start(cut)).map_err(io_err(&self.path))?;
        (&self.file)
            .take(self.len - cut)
            .read_to_end(&mut tail)
            .map_err(io_err(&self.path))?;
        let tmp = self.path.with_extension("tmp");
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&tail).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, &self.path).map_err(io_err(&self.path))?;
        self.reopen()?;
        self.offsets = self.offsets[idx..].iter().map(|o| o - cut).collect();
        self.first_lsn = keep_from;
        self.len = tail.len() as u64;
        info!(node = %self.node, lsn = snap.lsn, epoch = snap.epoch, "log compacted into snapshot");
        Ok(())
    }

    fn install(&mut self, snap: &Snapshot) -> Result<(), WalError> {
        write_json_atomic(&self.dir.join(SNAPSHOT_FILE), snap, true)?;
        self.file.set_len(0).map_err(io_err(&self.path))?;
        self.file.sync_all().map_err(io_err(&self.path))?;
        self.reopen()?;
        self.offsets.clear();
        self.first_lsn = snap.lsn + 1;
        self.len = 0;
        info!(node = %self.node, lsn = snap.lsn, epoch = snap.epoch, "snapshot installed");
        Ok(())
    }

    fn reopen(&mut self) -> Result<(), WalError> {
        self.file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(io_err(&self.path))?;
        self.file.seek(SeekFrom::End(0)).map_err(io_err(&self.path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Command;

    fn entry(lsn: u64) -> Entry {
        Entry {
            lsn,
            epoch: 1,
            cmd: Command::Write {
                key: format!("k{lsn}"),
                value: lsn.into(),
            },
        }
    }

    async fn wait_for(rx: &mut mpsc::UnboundedReceiver<Durable>, lsn: u64) -> Durable {
        loop {
            let d = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("writer reported in time")
                .expect("writer alive");
            if d.lsn >= lsn {
                return d;
            }
        }
    }

    #[tokio::test]
    async fn append_truncate_compact_recover() {
        let dir = tempfile::tempdir().unwrap();
        let rec = recover(dir.path(), FsyncPolicy::Always).unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let w = start_writer(dir.path(), &rec, FsyncPolicy::Always, "t", tx).unwrap();
        w.send(WalCmd::Append((1..=10).map(entry).collect()));
        assert_eq!(wait_for(&mut rx, 10).await.lsn, 10);
        w.send(WalCmd::Truncate { from_lsn: 8, gen: 1 });
        w.send(WalCmd::Append(vec![entry(8)]));
        let d = wait_for(&mut rx, 8).await;
        assert_eq!(d, Durable { gen: 1, lsn: 8 });
        let snap = Snapshot {
            lsn: 5,
            epoch: 1,
            state: StateMachine::new(),
        };
        w.send(WalCmd::Compact(Box::new(snap.clone())));
        w.send(WalCmd::Append(vec![entry(9)]));
        wait_for(&mut rx, 9).await;
        drop(w);
        let rec = recover(dir.path(), FsyncPolicy::Always).unwrap();
        assert_eq!(rec.snapshot, Some(snap));
        let lsns: Vec<u64> = rec.entries.iter().map(|e| e.lsn).collect();
        assert_eq!(lsns, vec![6, 7, 8, 9]);
    }

    #[tokio::test]
    async fn batch_and_never_policies_report_without_waiting_for_sync() {
        for policy in [FsyncPolicy::Batch { interval_ms: 5 }, FsyncPolicy::Never] {
            let dir = tempfile::tempdir().unwrap();
            let rec = recover(dir.path(), FsyncPolicy::Always).unwrap();
            let (tx, mut rx) = mpsc::unbounded_channel();
            let w = start_writer(dir.path(), &rec, policy, "t", tx).unwrap();
            w.send(WalCmd::Append((1..=3).map(entry).collect()));
            assert_eq!(wait_for(&mut rx, 3).await.lsn, 3);
            drop(w);
            assert_eq!(recover(dir.path(), FsyncPolicy::Always).unwrap().entries.len(), 3);
        }
    }

    #[test]
    fn torn_tail_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        for lsn in 1..=3 {
            encode_record(&entry(lsn), &mut bytes);
        }
        let good = bytes.len();
        encode_record(&entry(4), &mut bytes);
        bytes.truncate(bytes.len() - 3);
        fs::write(dir.path().join(LOG_FILE), &bytes).unwrap();
        let rec = recover(dir.path(), FsyncPolicy::Always).unwrap();
        assert_eq!(rec.entries.len(), 3);
        assert_eq!(fs::metadata(dir.path().join(LOG_FILE)).unwrap().len(), good as u64);
    }

    #[test]
    fn corrupt_record_ends_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        for lsn in 1..=3 {
            encode_record(&entry(lsn), &mut bytes);
        }
        let last = bytes.len() - 2;
        bytes[last] ^= 0xff;
        fs::write(dir.path().join(LOG_FILE), &bytes).unwrap();
        let rec = recover(dir.path(), FsyncPolicy::Always).unwrap();
        assert_eq!(rec.entries.len(), 2);
    }

    #[test]
    fn an_emptied_hard_state_is_corruption_only_when_it_was_synced() {
        // A power loss after an unsynced rename leaves the file empty.
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(HARD_STATE_FILE), b"").unwrap();
        fs::write(dir.path().join(SNAPSHOT_FILE), b"{\"ls").unwrap();
        let err = recover(dir.path(), FsyncPolicy::Always).unwrap_err();
        assert!(matches!(err, WalError::Corrupt { .. }), "{err}");
        let rec = recover(dir.path(), FsyncPolicy::Never).unwrap();
        assert_eq!(rec.hard, HardState::default());
        assert!(rec.snapshot.is_none());
    }
}
