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
//! Keys retire after about `max_writes_per_key` writes, as Elle's do, which
//! keeps lists short and version orders cheap to infer. Workers share no
//! state (each generator is a pure function of config, seed and worker), so
//! the cap is split: in each generation of keys a worker writes each key at
//! most its share of the cap (the shares of all workers sum to the cap, and
//! are at least one write each), and a write drawn for a key whose share is
//! spent goes to another active key with share left, or becomes a read when
//! none is left. All workers move to the next generation together, after
//! the same number of transactions (`generation_txns`), chosen so that a
//! worker's expected writes in a generation fill its shares: workers that
//! keep the same pace (as `--rate` makes them) contend on the same keys.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::generator::{draw_index, key_cdf, KeyDist, VALUE_STRIDE};
use crate::request::{Request, TxnOp};

/// Most micro-operations in one transaction (the protocol's limit is 256).
pub const MAX_TXN_LENGTH: usize = 64;
/// Most writes to one key before it retires.
pub const MAX_WRITES_PER_KEY: u64 = 1_000_000;

/// The part of its shares a worker's expected writes fill in a generation:
/// below one, so that the shares rarely run out (a write drawn then becomes
/// a read, and the read share would drift above the knob), high enough that
/// keys see most of their writes.
const FILL: f64 = 0.75;

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

    /// Worker `worker`'s share of a key's writes among `workers`: the cap
    /// split as evenly as it goes, at least one write each.
    fn share(&self, worker: usize, workers: usize) -> u64 {
        let workers = workers.max(1) as u64;
        let (base, extra) = (self.max_writes_per_key / workers, self.max_writes_per_key % workers);
        (base + u64::from((worker as u64 % workers) < extra)).max(1)
    }

    /// Transactions per generation of keys, the same for every worker: a
    /// worker's expected writes then fill [`FILL`] of its mean share of
    /// every key.
    fn generation_txns(&self, key_count: usize, workers: usize) -> u64 {
        let mean_share = (self.max_writes_per_key as f64 / workers.max(1) as f64).max(1.0);
        let mean_len = (self.min_length + self.max_length) as f64 / 2.0;
        let writes_per_txn = mean_len * (1.0 - self.read_share);
        ((FILL * key_count as f64 * mean_share / writes_per_txn).floor() as u64).max(1)
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
    txns: u64,
    generation: u64,
    generation_txns: u64,
    share: u64,
    /// This worker's writes to each active key in this generation.
    written: Vec<u64>,
}

impl TxnGenerator {
    /// Worker `worker` of `workers`, seeded from `rng` (the caller's
    /// per-worker stream), drawing keys from `key_count` with `dist`.
    #[allow(clippy::too_many_arguments, reason = "plain settings, named at the one call")]
    pub(crate) fn new(
        cfg: TxnConfig,
        appends: bool,
        prefix: &'static str,
        key_count: usize,
        dist: KeyDist,
        rng: ChaCha8Rng,
        worker: usize,
        workers: usize,
    ) -> TxnGenerator {
        TxnGenerator {
            appends,
            prefix,
            key_count,
            rng,
            worker,
            next_value: 0,
            cdf: key_cdf(dist, key_count),
            txns: 0,
            generation: 0,
            generation_txns: cfg.generation_txns(key_count, workers),
            share: cfg.share(worker, workers),
            written: vec![0; key_count],
            cfg,
        }
    }

    /// The next transaction.
    pub fn next_txn(&mut self) -> Request {
        let generation = self.txns / self.generation_txns;
        if generation != self.generation {
            self.generation = generation;
            self.written.iter_mut().for_each(|w| *w = 0);
        }
        let len = self.rng.gen_range(self.cfg.min_length..=self.cfg.max_length);
        let ops = (0..len).map(|_| self.micro_op()).collect();
        self.txns += 1;
        Request::Txn { ops }
    }

    fn micro_op(&mut self) -> TxnOp {
        let slot = draw_index(&mut self.rng, &self.cdf, self.key_count);
        if self.rng.gen_bool(self.cfg.read_share) {
            return TxnOp::Read { key: self.key(slot) };
        }
        let Some(slot) = self.writable(slot) else {
            // Every key's share is spent until the next generation.
            return TxnOp::Read { key: self.key(slot) };
        };
        self.written[slot] += 1;
        let key = self.key(slot);
        self.next_value += 1;
        let value = (self.worker as i64 + 1) * VALUE_STRIDE + self.next_value;
        match self.appends {
            true => TxnOp::Append { key, value },
            false => TxnOp::Write { key, value },
        }
    }

    /// `slot` if this worker may still write it, else an active key drawn
    /// among those it may, else none.
    fn writable(&mut self, slot: usize) -> Option<usize> {
        if self.written[slot] < self.share {
            return Some(slot);
        }
        let open = self.written.iter().filter(|w| **w < self.share).count();
        if open == 0 {
            return None;
        }
        let nth = self.rng.gen_range(0..open);
        self.written
            .iter()
            .enumerate()
            .filter(|(_, w)| **w < self.share)
            .nth(nth)
            .map(|(i, _)| i)
    }

    fn key(&self, slot: usize) -> String {
        let global = self.generation as usize * self.key_count + slot;
        format!("{}{global}", self.prefix)
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
