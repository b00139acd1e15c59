//! The leader's multi-version view of committed state: what each key held
//! as of an earlier LSN, for snapshot-isolation reads.
//!
//! Promise: while a snapshot at LSN `s` is registered, [`Versions::read_at`]
//! gives every key's committed value as of `s`. The state machine holds
//! the newest version; for each entry applied after the oldest registered
//! snapshot this keeps the value each key had just before it (an undo
//! chain, tagged with the entry's LSN), so a read at `s` is the value
//! before the first entry after `s` that wrote the key, or the current
//! value when none did. Versions no snapshot needs are dropped as soon as
//! the snapshots that needed them finish, so the chain stays bounded by
//! the transactions in flight (each bounded by its deadline).

use crate::state::{Command, StateMachine};
use serde_json::Value;
use std::collections::BTreeMap;

/// Earlier versions of keys, newest last per key.
#[derive(Debug, Default)]
pub struct Versions {
    /// key -> (lsn of the entry that overwrote it, value before it).
    undo: BTreeMap<String, Vec<(u64, Value)>>,
    /// Registered snapshot LSNs, with how many transactions hold each.
    snapshots: BTreeMap<u64, usize>,
}

impl Versions {
    /// Registers a snapshot at `lsn` (the applied LSN when it is taken).
    pub fn hold(&mut self, lsn: u64) {
        *self.snapshots.entry(lsn).or_default() += 1;
    }

    /// Releases a snapshot taken with [`Versions::hold`], dropping the
    /// versions nobody needs any more.
    pub fn release(&mut self, lsn: u64) {
        if let Some(n) = self.snapshots.get_mut(&lsn) {
            *n -= 1;
            if *n == 0 {
                self.snapshots.remove(&lsn);
            }
        }
        self.prune();
    }

    /// Forgets every snapshot and version (the node stopped leading).
    pub fn clear(&mut self) {
        self.undo.clear();
        self.snapshots.clear();
    }

    /// Whether any snapshot is held (only then are versions kept).
    pub fn recording(&self) -> bool {
        !self.snapshots.is_empty()
    }

    /// Called before `cmd` at `lsn` is applied to `sm`: keeps the values
    /// it is about to overwrite.
    pub fn before_apply(&mut self, lsn: u64, cmd: &Command, sm: &StateMachine) {
        if !self.recording() {
            return;
        }
        for key in cmd.written_keys() {
            let chain = self.undo.entry(key.to_string()).or_default();
            // A key written twice by one entry keeps its value from before.
            if !matches!(chain.last(), Some((at, _)) if *at == lsn) {
                chain.push((lsn, sm.get(key)));
            }
        }
    }

    /// The committed value of `key` as of `lsn`, given the newest in `sm`.
    pub fn read_at(&self, key: &str, lsn: u64, sm: &StateMachine) -> Value {
        debug_assert!(
            self.snapshots.keys().next().is_some_and(|oldest| *oldest <= lsn),
            "reading at {lsn}, a snapshot nobody holds"
        );
        let chain = self.undo.get(key).map(Vec::as_slice).unwrap_or_default();
        let first_after = chain.partition_point(|(at, _)| *at <= lsn);
        match chain.get(first_after) {
            Some((_, before)) => before.clone(),
            None => sm.get(key),
        }
    }

    /// Drops the versions at or below the oldest held snapshot (no read
    /// will ask for them), everything when none is held.
    fn prune(&mut self) {
        let Some(&oldest) = self.snapshots.keys().next() else {
            self.undo.clear();
            return;
        };
        self.undo.retain(|_, chain| {
            let keep_from = chain.partition_point(|(at, _)| *at <= oldest);
            chain.drain(..keep_from);
            !chain.is_empty()
        });
    }

    /// How many versions are kept.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.undo.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write(key: &str, v: i64) -> Command {
        Command::Write {
            key: key.into(),
            value: v.into(),
        }
    }

    /// Applies `cmd` at `lsn` as the core does: versions first.
    fn apply(versions: &mut Versions, sm: &mut StateMachine, lsn: u64, cmd: &Command) {
        versions.before_apply(lsn, cmd, sm);
        sm.apply_at(lsn, cmd);
    }

    #[test]
    fn a_snapshot_reads_the_values_as_of_its_lsn_and_versions_go_with_it() {
        let (mut v, mut sm) = (Versions::default(), StateMachine::new());
        apply(&mut v, &mut sm, 1, &write("x", 1));
        assert_eq!(v.len(), 0, "nothing kept while no snapshot is held");
        v.hold(1);
        apply(&mut v, &mut sm, 2, &write("x", 2));
        apply(&mut v, &mut sm, 3, &write("y", 3));
        v.hold(3);
        apply(&mut v, &mut sm, 4, &write("x", 4));
        assert_eq!(
            (v.read_at("x", 1, &sm), v.read_at("y", 1, &sm)),
            (json!(1), Value::Null)
        );
        assert_eq!((v.read_at("x", 3, &sm), v.read_at("y", 3, &sm)), (json!(2), json!(3)));
        v.release(1);
        assert_eq!(v.len(), 1, "only x's version after lsn 3 remains");
        assert_eq!(v.read_at("x", 3, &sm), json!(2));
        v.release(3);
        assert_eq!(v.len(), 0);
    }
}
