//! One node's local store in leaderless and multi-leader modes: its log,
//! its last-write-wins map and the delayed apply.
//!
//! Promises:
//! - Every write is logged with the next LSN; it is acknowledged only once
//!   the log writer reports it durable ([`Replica::on_durable`]).
//! - A write is applied once durable and due: a write this node coordinates
//!   (or repairs, or replays from a hint for itself) at once, a write from
//!   another coordinator `replay_delay_ms` after it arrived, so replicas
//!   really differ, as they do when writes reach them at different times.
//!   Last-write-wins puts commute, so applying out of arrival order is
//!   safe; `applied_lsn` stays the highest LSN below which everything is
//!   applied.
//! - The map keeps, per key, the value with the newest stamp it was given
//!   (asserted after every apply).

use crate::core::Recovered;
use crate::state::{Command, Entry, Stamp, StateMachine};
use crate::wal::Snapshot;
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};

/// Where a replica's acknowledgement goes once the write is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum AckTo {
    /// This node's own coordinator, for its request `req_id`.
    Local(u64),
    /// Another node's coordinator.
    Remote { to: String, req_id: u64 },
    /// Nobody waits (a read repair).
    Nobody,
}

/// The local store.
pub(super) struct Replica {
    sm: StateMachine,
    last_lsn: u64,
    applied_lsn: u64,
    durable_lsn: u64,
    base_lsn: u64,
    snapshot_every: u64,
    delay_ms: u64,
    /// Stored but not yet applied, with the time they become due.
    unapplied: VecDeque<(Entry, u64)>,
    /// Acknowledgements waiting for their entry to be durable, by LSN.
    acks: BTreeMap<u64, Vec<AckTo>>,
    /// Entries not yet handed to the log writer.
    wal_buf: Vec<Entry>,
}

impl Replica {
    /// The store as the node recovered it: every recovered entry applied.
    pub(super) fn open(rec: Recovered, snapshot_every: u64, delay_ms: u64) -> Replica {
        let (base_lsn, mut sm) = match rec.snapshot {
            Some(s) => (s.lsn, s.state),
            None => (0, StateMachine::new()),
        };
        for e in &rec.entries {
            sm.apply(&e.cmd);
        }
        let last = rec.entries.last().map_or(base_lsn, |e| e.lsn);
        Replica {
            sm,
            last_lsn: last,
            applied_lsn: last,
            durable_lsn: last,
            base_lsn,
            snapshot_every: snapshot_every.max(1),
            delay_ms,
            unapplied: VecDeque::new(),
            acks: BTreeMap::new(),
            wal_buf: Vec::new(),
        }
    }

    /// Logs a write; `ack` hears once it is durable. `due_now`: apply as
    /// soon as durable (this node's own writes), else after the delay.
    pub(super) fn put(&mut self, key: String, value: Value, stamp: Stamp, ack: AckTo, due_now: bool, now_ms: u64) {
        self.last_lsn += 1;
        let entry = Entry {
            lsn: self.last_lsn,
            epoch: 0,
            cmd: Command::Put { key, value, stamp },
        };
        self.wal_buf.push(entry.clone());
        let due = if due_now { now_ms } else { now_ms + self.delay_ms };
        self.unapplied.push_back((entry, due));
        if ack != AckTo::Nobody {
            self.acks.entry(self.last_lsn).or_default().push(ack);
        }
    }

    /// Value and stamp at `key`, as applied.
    pub(super) fn get(&self, key: &str) -> (Value, Option<Stamp>) {
        self.sm.get_stamped(key)
    }

    /// The entries to hand to the log writer, if any.
    pub(super) fn take_wal_batch(&mut self) -> Option<Vec<Entry>> {
        (!self.wal_buf.is_empty()).then(|| std::mem::take(&mut self.wal_buf))
    }

    /// The log writer made everything up to `lsn` durable: applies what is
    /// due, then returns the acknowledgements that may now leave (applied
    /// first, so a coordinator that answers `ok` reads its own write).
    pub(super) fn on_durable(&mut self, lsn: u64, now_ms: u64) -> Vec<AckTo> {
        assert!(
            lsn <= self.last_lsn,
            "durable {lsn} past the last LSN {}",
            self.last_lsn
        );
        self.durable_lsn = self.durable_lsn.max(lsn.min(self.last_lsn));
        self.apply_due(now_ms);
        let later = self.acks.split_off(&(self.durable_lsn + 1));
        let done = std::mem::replace(&mut self.acks, later);
        done.into_values().flatten().collect()
    }

    /// Applies the entries durable and due at `now_ms`; returns a snapshot
    /// for the log writer to compact into when enough were applied.
    pub(super) fn apply_due(&mut self, now_ms: u64) -> Option<Snapshot> {
        if self.unapplied.is_empty() {
            return None;
        }
        let durable = self.durable_lsn;
        let mut waiting = VecDeque::with_capacity(self.unapplied.len());
        for (e, due) in std::mem::take(&mut self.unapplied) {
            if e.lsn <= durable && due <= now_ms {
                self.apply(&e.cmd);
            } else {
                waiting.push_back((e, due));
            }
        }
        self.unapplied = waiting;
        self.applied_lsn = match self.unapplied.front() {
            Some((e, _)) => e.lsn - 1,
            None => durable,
        };
        assert!(self.applied_lsn <= self.durable_lsn, "applied past durable");
        self.compaction()
    }

    fn apply(&mut self, cmd: &Command) {
        self.sm.apply(cmd);
        if let Command::Put { key, stamp, .. } = cmd {
            // Last write wins: whatever was applied, the key now holds this
            // stamp or a newer one.
            debug_assert!(
                self.sm.get_stamped(key).1.as_ref() >= Some(stamp),
                "replica kept an older stamp for {key}"
            );
        }
    }

    fn compaction(&mut self) -> Option<Snapshot> {
        if self.applied_lsn < self.base_lsn + self.snapshot_every {
            return None;
        }
        self.base_lsn = self.applied_lsn;
        Some(Snapshot {
            lsn: self.applied_lsn,
            epoch: 0,
            state: self.sm.clone(),
        })
    }

    /// (last LSN, applied LSN).
    pub(super) fn lsns(&self) -> (u64, u64) {
        (self.last_lsn, self.applied_lsn)
    }

    /// The applied map.
    pub(super) fn state(&self) -> &StateMachine {
        &self.sm
    }
}
