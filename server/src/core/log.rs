//! The in-memory replication log: the entries after the snapshot point.
//!
//! Promise: LSNs are dense from `base_lsn + 1` to `last_lsn()`, and the
//! epoch of every position from the snapshot point on is known (the
//! snapshot point's own epoch included), which is all log matching needs.

use crate::state::Entry;
use std::collections::VecDeque;

/// Entries after a snapshot point.
#[derive(Debug, Clone, Default)]
pub struct Log {
    /// Entries up to here live in the snapshot only.
    base_lsn: u64,
    base_epoch: u64,
    entries: VecDeque<Entry>,
}

impl Log {
    /// A log after the snapshot point (`base_lsn`, `base_epoch`).
    pub fn new(base_lsn: u64, base_epoch: u64, entries: Vec<Entry>) -> Log {
        debug_assert!(
            entries
                .iter()
                .enumerate()
                .all(|(i, e)| e.lsn == base_lsn + 1 + i as u64),
            "recovered entries are not dense after {base_lsn}"
        );
        Log {
            base_lsn,
            base_epoch,
            entries: entries.into(),
        }
    }

    /// The snapshot point.
    pub fn base_lsn(&self) -> u64 {
        self.base_lsn
    }

    /// The epoch of the snapshot point.
    pub fn base_epoch(&self) -> u64 {
        self.base_epoch
    }

    /// The last LSN held (the snapshot point when empty).
    pub fn last_lsn(&self) -> u64 {
        self.base_lsn + self.entries.len() as u64
    }

    /// The epoch of the last entry.
    pub fn last_epoch(&self) -> u64 {
        self.entries.back().map_or(self.base_epoch, |e| e.epoch)
    }

    /// Epoch of the entry at `lsn`; None if compacted away or beyond the log.
    pub fn epoch_at(&self, lsn: u64) -> Option<u64> {
        if lsn == self.base_lsn {
            return Some(self.base_epoch);
        }
        self.entry(lsn).map(|e| e.epoch)
    }

    /// The entry at `lsn`, if held.
    pub fn entry(&self, lsn: u64) -> Option<&Entry> {
        if lsn <= self.base_lsn {
            return None;
        }
        self.entries.get((lsn - self.base_lsn - 1) as usize)
    }

    /// Appends the entry that follows the last one.
    pub fn push(&mut self, entry: Entry) {
        assert_eq!(entry.lsn, self.last_lsn() + 1, "log entries must be dense");
        self.entries.push_back(entry);
    }

    /// Drops the entries from `lsn` on (`lsn` past the snapshot point).
    pub fn truncate_from(&mut self, lsn: u64) {
        debug_assert!(lsn > self.base_lsn, "cannot truncate into the snapshot");
        self.entries.truncate((lsn - self.base_lsn - 1) as usize);
    }

    /// Moves the snapshot point to `lsn`, dropping the entries it covers.
    pub fn compact_to(&mut self, lsn: u64, epoch: u64) {
        debug_assert!(lsn >= self.base_lsn && lsn <= self.last_lsn());
        self.entries.drain(..(lsn - self.base_lsn) as usize);
        self.base_lsn = lsn;
        self.base_epoch = epoch;
    }

    /// Replaces everything by an empty log after (`lsn`, `epoch`).
    pub fn reset(&mut self, lsn: u64, epoch: u64) {
        self.entries.clear();
        self.base_lsn = lsn;
        self.base_epoch = epoch;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Command;

    fn entries(from: u64, epochs: &[u64]) -> Vec<Entry> {
        let at = |(i, epoch): (usize, &u64)| Entry {
            lsn: from + i as u64,
            epoch: *epoch,
            cmd: Command::Noop,
        };
        epochs.iter().enumerate().map(at).collect()
    }

    #[test]
    fn positions_and_epochs_follow_the_snapshot_point() {
        let log = Log::new(10, 2, entries(11, &[2, 3, 3]));
        assert_eq!((log.last_lsn(), log.last_epoch()), (13, 3));
        assert_eq!(log.epoch_at(10), Some(2), "the snapshot point's epoch is known");
        assert_eq!(log.epoch_at(9), None, "compacted away");
        assert_eq!(log.epoch_at(12), Some(3));
        assert_eq!(log.epoch_at(14), None, "beyond the log");
        assert!(log.entry(10).is_none());
        assert_eq!(log.entry(11).map(|e| e.lsn), Some(11));
    }

    #[test]
    fn truncation_and_compaction_keep_lsns_dense() {
        let mut log = Log::new(0, 0, entries(1, &[1, 1, 2, 2]));
        log.truncate_from(3);
        assert_eq!((log.last_lsn(), log.last_epoch()), (2, 1));
        log.push(entries(3, &[4]).remove(0));
        log.compact_to(2, 1);
        assert_eq!((log.base_lsn(), log.base_epoch(), log.last_lsn()), (2, 1, 3));
        assert_eq!(log.epoch_at(3), Some(4));
        log.reset(0, 0);
        assert_eq!((log.last_lsn(), log.last_epoch()), (0, 0));
    }

    #[test]
    #[should_panic(expected = "dense")]
    fn a_gap_in_the_log_is_refused() {
        let mut log = Log::new(0, 0, Vec::new());
        log.push(entries(2, &[1]).remove(0));
    }
}
