//! One simulated node's disk: what the log writer was asked to do, what it
//! has written (the page cache: survives a process crash), and what it has
//! synced (survives a power loss).
//!
//! Promise: the disk does what `faultline_server::wal`'s writer does with
//! the same commands, and reports durability the same way (after each batch,
//! `Durable { gen, lsn }` of the last entry written), syncing first under
//! `fsync=always` and never under `fsync=never`; a power loss keeps only
//! what was synced, a crash keeps what was written.

use faultline_server::core::Recovered;
use faultline_server::state::Entry;
use faultline_server::wal::{Durable, FsyncPolicy, HardState, Snapshot, WalCmd};
use rand::rngs::StdRng;
use rand::Rng;

/// A disk command the writer has taken (a clonable `WalCmd`).
#[derive(Debug, Clone)]
enum DiskCmd {
    Append(Vec<Entry>),
    Truncate { from_lsn: u64, gen: u64 },
    Compact(Snapshot),
    Install { snapshot: Snapshot, gen: u64 },
}

impl From<WalCmd> for DiskCmd {
    fn from(cmd: WalCmd) -> DiskCmd {
        match cmd {
            WalCmd::Append(entries) => DiskCmd::Append(entries),
            WalCmd::Truncate { from_lsn, gen } => DiskCmd::Truncate { from_lsn, gen },
            WalCmd::Compact(snap) => DiskCmd::Compact(*snap),
            WalCmd::Install { snapshot, gen } => DiskCmd::Install {
                snapshot: *snapshot,
                gen,
            },
        }
    }
}

/// The contents of a log directory.
#[derive(Debug, Clone, Default)]
struct Image {
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
    hard: HardState,
    gen: u64,
}

impl Image {
    fn last_lsn(&self) -> u64 {
        let base = self.snapshot.as_ref().map_or(0, |s| s.lsn);
        self.entries.last().map_or(base, |e| e.lsn)
    }

    fn apply(&mut self, cmd: DiskCmd) {
        match cmd {
            DiskCmd::Append(entries) => {
                // The writer appends after whatever it holds; the core only
                // ever sends the entries that follow its last one.
                let last = self.last_lsn();
                assert!(
                    entries.first().is_none_or(|e| e.lsn == last + 1),
                    "append of {:?} after lsn {last}",
                    entries.first().map(|e| e.lsn)
                );
                self.entries.extend(entries);
            }
            DiskCmd::Truncate { from_lsn, gen } => {
                self.entries.retain(|e| e.lsn < from_lsn);
                self.gen = gen;
            }
            DiskCmd::Compact(snap) => {
                self.entries.retain(|e| e.lsn > snap.lsn);
                self.snapshot = Some(snap);
            }
            DiskCmd::Install { snapshot, gen } => {
                self.entries.clear();
                self.snapshot = (snapshot.lsn > 0).then_some(snapshot);
                self.gen = gen;
            }
        }
    }
}

/// One node's disk.
#[derive(Debug)]
pub struct Disk {
    policy: FsyncPolicy,
    /// Taken by the writer, not yet written (lost by any crash).
    queued: Vec<DiskCmd>,
    /// Written, not yet synced, in order (lost by a power loss); unused
    /// under `fsync=always`.
    unsynced: Vec<DiskCmd>,
    written: Image,
    /// What a power loss keeps; under `fsync=always` that is `written`.
    synced: Image,
    /// The writer is writing (a completion is due).
    writing: bool,
}

impl Disk {
    /// An empty disk synced under `policy`.
    pub fn new(policy: FsyncPolicy) -> Disk {
        Disk {
            policy,
            queued: Vec::new(),
            unsynced: Vec::new(),
            written: Image::default(),
            synced: Image::default(),
            writing: false,
        }
    }

    /// The writer starts on what it took, unless it is already writing or
    /// has nothing to write: how long the write takes (1 to 3 ms, drawn
    /// from `rng`); [`Disk::complete`] when that time has passed.
    pub fn start_write(&mut self, rng: &mut StdRng) -> Option<u64> {
        if self.writing || self.queued.is_empty() {
            return None;
        }
        self.writing = true;
        Some(rng.gen_range(1..=3))
    }

    /// The writer takes a command (it completes at [`Disk::complete`]).
    pub fn take(&mut self, cmd: WalCmd) {
        self.queued.push(cmd.into());
    }

    /// The writer writes what it took (and syncs, by policy) and reports.
    pub fn complete(&mut self) -> Durable {
        self.writing = false;
        if self.syncs_each_write() {
            // Written and synced at once: the written image is the synced
            // one, so it is the only one kept (no copy of each command).
            for cmd in self.queued.drain(..) {
                self.written.apply(cmd);
            }
        } else {
            for cmd in self.queued.drain(..) {
                self.written.apply(cmd.clone());
                self.unsynced.push(cmd);
            }
        }
        Durable {
            gen: self.written.gen,
            lsn: self.written.last_lsn(),
        }
    }

    /// `fsync=always`: every write is synced before it is reported, so
    /// what was written is what a power loss keeps, and `synced` (with
    /// `unsynced`) stays unused.
    fn syncs_each_write(&self) -> bool {
        self.policy == FsyncPolicy::Always
    }

    /// Epoch and vote, written at once (synced unless `fsync=never`), as
    /// `wal::save_hard_state` does.
    pub fn save_hard_state(&mut self, hard: HardState) {
        if self.policy != FsyncPolicy::Never && !self.syncs_each_write() {
            self.synced.hard = hard.clone();
        }
        self.written.hard = hard;
    }

    /// The process dies: what the writer had not written is gone. With
    /// `power_loss`, so is everything not synced.
    pub fn crash(&mut self, power_loss: bool) {
        self.queued.clear();
        self.writing = false;
        if power_loss && !self.syncs_each_write() {
            self.unsynced.clear();
            self.written = self.synced.clone();
        }
    }

    /// What a restarted node recovers (the writer starts a new generation
    /// count, as a restarted writer does).
    pub fn recover(&mut self) -> Recovered {
        self.written.gen = 0;
        self.synced.gen = 0;
        Recovered {
            snapshot: self.written.snapshot.clone(),
            entries: self.written.entries.clone(),
            hard: self.written.hard.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_server::state::Command;

    fn entry(lsn: u64) -> Entry {
        Entry {
            lsn,
            epoch: 1,
            cmd: Command::Noop,
        }
    }

    #[test]
    fn a_power_loss_keeps_only_what_was_synced() {
        let mut never = Disk::new(FsyncPolicy::Never);
        never.take(WalCmd::Append(vec![entry(1), entry(2)]));
        assert_eq!(never.complete(), Durable { gen: 0, lsn: 2 });
        never.crash(false);
        assert_eq!(never.recover().entries.len(), 2, "a crash keeps the page cache");
        never.crash(true);
        assert!(never.recover().entries.is_empty(), "a power loss does not");
        let mut always = Disk::new(FsyncPolicy::Always);
        always.take(WalCmd::Append(vec![entry(1)]));
        always.complete();
        always.take(WalCmd::Append(vec![entry(2)]));
        always.crash(true);
        assert_eq!(always.recover().entries, vec![entry(1)], "synced stays, untaken goes");
    }
}
