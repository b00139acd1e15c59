//! Seeded generators for the transactional workloads, `txn-list-append`
//! and `txn-rw-register`, after Elle's (Kingsbury and Alvaro, VLDB 2020).
//!
//! A transaction is `min_length..=max_length` micro-operations, each a read
//! (with probability `read_share`) or a write (an append of a unique
//! element, or a unique register write) of one of `key_count` active keys.
//! Values are unique per key across all workers (`(worker + 1) * 10^9 + n`),
//! so the transactional checker can tell which write every read saw and
//! infer each key's version order.
//!
//! Keys retire after `max_writes_per_key` writes in total, as Elle's do,
//! which keeps lists short and version orders cheap to infer. The active
//! keys are shared by all workers of a run ([`SharedKeys`]): each of the
//! `key_count` slots holds one key, every write counts against the key it
//! went to, and the write that reaches the cap replaces the slot's key with
//! a fresh one. Every worker thus writes the keys that are active now, so a
//! worker that stalled (a partition, a timeout) comes back to the keys the
//! others contend on instead of drifting to keys they left long ago.
//!
//! Each worker's choices (lengths, reads or writes, slots, values) are a
//! pure function of the seed and the worker; which key a slot holds when a
//! worker asks depends on how many writes all workers made before, so the
//! transactions are reproducible from the seed when the workers are asked
//! in a fixed order (one thread, or a simulation), and otherwise follow the
//! run's timing, as Elle's generators do.

use std::sync::{Arc, Mutex};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::generator::{draw_index, key_cdf, KeyDist, VALUE_STRIDE};
use crate::request::{Request, TxnOp};

/// Most micro-operations in one transaction (the protocol's limit is 256).
pub const MAX_TXN_LENGTH: usize = 64;
/// Most writes to one key before it retires.
pub const MAX_WRITES_PER_KEY: u64 = 1_000_000;

/// The knobs of the transactional workloads, Elle's names.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TxnConfig {
    /// Fewest micro-operations in a transaction.
    pub min_length: usize,
    /// Most micro-operations in a transaction.
    pub max_length: usize,
    /// Writes to a key (all workers together) before it retires.
    pub max_writes_per_key: u64,
    /// The fraction of micro-operations that are reads, in `[0, 1)`.
    pub read_share: f64,
}

impl Default for TxnConfig {
    /// Elle's usual shape: 1 to 4 micro-operations, keys retired after 16
    /// writes, reads and writes alike.
    fn default() -> TxnConfig {
        TxnConfig {
            min_length: 1,
            max_length: 4,
            max_writes_per_key: 16,
            read_share: 0.5,
        }
    }
}

/// A knob of [`TxnConfig`], by which an error says what is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnKnob {
    /// `min_length`.
    MinLength,
    /// `max_length`.
    MaxLength,
    /// `max_writes_per_key`.
    MaxWritesPerKey,
    /// `read_share`.
    ReadShare,
}

impl TxnConfig {
    /// Checks the ranges; the error names the knob at fault.
    pub fn validate(&self) -> Result<(), (TxnKnob, String)> {
        let lengths = format!("{}..{}", self.min_length, self.max_length);
        if self.min_length == 0 {
            return Err((TxnKnob::MinLength, "a transaction needs a micro-operation".into()));
        }
        if self.min_length > self.max_length || self.max_length > MAX_TXN_LENGTH {
            return Err((
                TxnKnob::MaxLength,
                format!("transaction lengths {lengths}: need min <= max <= {MAX_TXN_LENGTH}"),
            ));
        }
        if self.max_writes_per_key == 0 || self.max_writes_per_key > MAX_WRITES_PER_KEY {
            return Err((
                TxnKnob::MaxWritesPerKey,
                format!("must be within 1..={MAX_WRITES_PER_KEY}"),
            ));
        }
        if !(0.0..1.0).contains(&self.read_share) {
            return Err((
                TxnKnob::ReadShare,
                "must be within [0, 1): a workload of reads alone has nothing to read".into(),
            ));
        }
        Ok(())
    }
}

/// The active keys of a run, one per slot, shared by all its workers.
#[derive(Clone, Debug)]
pub struct SharedKeys {
    inner: Arc<Mutex<ActiveKeys>>,
}

/// The state behind [`SharedKeys`].
#[derive(Debug)]
struct ActiveKeys {
    /// The key id each slot holds.
    ids: Vec<u64>,
    /// Writes to each slot's key so far.
    writes: Vec<u64>,
    /// The id the next fresh key takes.
    next_id: u64,
    /// Writes a key takes before it retires.
    cap: u64,
}

impl SharedKeys {
    /// `key_count` slots holding keys `0..key_count`, each retired after
    /// `max_writes_per_key` writes.
    pub fn new(key_count: usize, max_writes_per_key: u64) -> SharedKeys {
        let active = ActiveKeys {
            ids: (0..key_count as u64).collect(),
            writes: vec![0; key_count],
            next_id: key_count as u64,
            cap: max_writes_per_key.max(1),
        };
        SharedKeys {
            inner: Arc::new(Mutex::new(active)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ActiveKeys> {
        // A worker that panicked holding the lock left counts, not a broken
        // invariant: every update below is complete before it unlocks.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The key slot `slot` holds, to read.
    fn read(&self, slot: usize) -> u64 {
        self.lock().ids[slot]
    }

    /// The key slot `slot` holds, to write: the write is counted, and the
    /// one that reaches the cap retires the key (the slot takes a fresh one).
    fn write(&self, slot: usize) -> u64 {
        let mut a = self.lock();
        let id = a.ids[slot];
        a.writes[slot] += 1;
        if a.writes[slot] >= a.cap {
            a.ids[slot] = a.next_id;
            a.next_id += 1;
            a.writes[slot] = 0;
        }
        id
    }
}

/// One worker's source of transactions.
pub struct TxnGenerator {
    cfg: TxnConfig,
    /// List-append (appends) or rw-register (writes).
    appends: bool,
    prefix: &'static str,
    key_count: usize,
    rng: ChaCha8Rng,
    worker: usize,
    next_value: i64,
    cdf: Vec<f64>,
    keys: SharedKeys,
}

impl TxnGenerator {
    /// Worker `worker`, seeded from `rng` (the caller's per-worker stream),
    /// drawing slots of `keys` (`key_count` of them) with `dist`.
    #[allow(clippy::too_many_arguments, reason = "plain settings, named at the one call")]
    pub(crate) fn new(
        cfg: TxnConfig,
        appends: bool,
        prefix: &'static str,
        key_count: usize,
        dist: KeyDist,
        rng: ChaCha8Rng,
        worker: usize,
        keys: SharedKeys,
    ) -> TxnGenerator {
        TxnGenerator {
            appends,
            prefix,
            key_count,
            rng,
            worker,
            next_value: 0,
            cdf: key_cdf(dist, key_count),
            keys,
            cfg,
        }
    }

    /// The next transaction.
    pub fn next_txn(&mut self) -> Request {
        let len = self.rng.gen_range(self.cfg.min_length..=self.cfg.max_length);
        let ops = (0..len).map(|_| self.micro_op()).collect();
        Request::Txn { ops }
    }

    fn micro_op(&mut self) -> TxnOp {
        let slot = draw_index(&mut self.rng, &self.cdf, self.key_count);
        if self.rng.gen_bool(self.cfg.read_share) {
            return TxnOp::Read {
                key: self.name(self.keys.read(slot)),
            };
        }
        let key = self.name(self.keys.write(slot));
        self.next_value += 1;
        let value = (self.worker as i64 + 1) * VALUE_STRIDE + self.next_value;
        match self.appends {
            true => TxnOp::Append { key, value },
            false => TxnOp::Write { key, value },
        }
    }

    fn name(&self, id: u64) -> String {
        format!("{}{id}", self.prefix)
    }
}

/// A read-only transaction of `keys` (a final read).
pub fn read_only(keys: &[&String]) -> Request {
    Request::Txn {
        ops: keys.iter().map(|k| TxnOp::Read { key: (*k).clone() }).collect(),
    }
}

#[cfg(test)]
#[path = "txn_gen_tests.rs"]
mod tests;
