//! Seeded operation generators for the four single-key workloads, and the
//! entry to the two transactional ones ([`crate::txn_gen`]).
//!
//! Each worker (one per concurrent client) has its own generator seeded from
//! (test seed, worker number), so its sequence of operations depends on
//! nothing else: not on timing, not on results. Values are unique per key
//! (`(worker + 1) * 10^9 + n`), so every read names the write it saw.
//!
//! - `register`: read / write / cas on many independent keys; a cas expects
//!   the value this worker last wrote to the key. Keys rotate: after
//!   `ops_per_key` operations a worker moves to a fresh generation of keys,
//!   which keeps each key's history small enough for a linearizability search.
//! - `list-append`: append unique elements, read whole lists.
//! - `session`: a worker writes keys and reads them back (half of its reads
//!   are of the key it wrote last, the rest of any key), through whatever
//!   read routing the server is configured with.
//! - `multi-key`: single-key writes and snapshot reads of several keys at
//!   once (spread over shards when the server has several).
//! - `txn-list-append`, `txn-rw-register`: transactions of micro-operations
//!   (see [`crate::txn_gen`]), read back at the end as read-only
//!   transactions.

use std::collections::BTreeSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::WorkloadError;
use crate::request::Request;
use crate::txn_gen::{self, SharedKeys, TxnConfig, TxnGenerator};

/// Most keys in one workload generation.
pub const MAX_KEY_COUNT: usize = 100_000;
/// Most keys in one snapshot read (the server's limit is 256).
pub const MAX_MULTI_READ_KEYS: usize = 64;
/// Most keys read back per node at the end of a test.
pub const MAX_FINAL_KEYS: usize = 4_096;
/// Keys per final multi-key read.
const FINAL_MULTI_READ_KEYS: usize = 32;
/// Keys per final read-only transaction.
const FINAL_TXN_READ_KEYS: usize = 32;
/// Values of worker `w` are `(w + 1) * VALUE_STRIDE + n`.
pub(crate) const VALUE_STRIDE: i64 = 1_000_000_000;

/// The workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    Register,
    ListAppend,
    Session,
    MultiKey,
    TxnListAppend,
    TxnRwRegister,
}

impl WorkloadKind {
    /// Parses a workload name.
    pub fn parse(s: &str) -> Result<WorkloadKind, WorkloadError> {
        Ok(match s {
            "register" => WorkloadKind::Register,
            "list-append" => WorkloadKind::ListAppend,
            "session" => WorkloadKind::Session,
            "multi-key" => WorkloadKind::MultiKey,
            "txn-list-append" => WorkloadKind::TxnListAppend,
            "txn-rw-register" => WorkloadKind::TxnRwRegister,
            other => return Err(WorkloadError::UnknownWorkload(other.to_owned())),
        })
    }

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Register => "register",
            WorkloadKind::ListAppend => "list-append",
            WorkloadKind::Session => "session",
            WorkloadKind::MultiKey => "multi-key",
            WorkloadKind::TxnListAppend => "txn-list-append",
            WorkloadKind::TxnRwRegister => "txn-rw-register",
        }
    }

    /// Whether its operations are transactions of micro-operations.
    pub fn is_txn(self) -> bool {
        matches!(self, WorkloadKind::TxnListAppend | WorkloadKind::TxnRwRegister)
    }

    fn key_prefix(self) -> &'static str {
        match self {
            WorkloadKind::Register => "r",
            WorkloadKind::ListAppend => "l",
            WorkloadKind::Session => "s",
            WorkloadKind::MultiKey => "m",
            WorkloadKind::TxnListAppend => "a",
            WorkloadKind::TxnRwRegister => "w",
        }
    }

    /// The operations this workload mixes, and their default weights (none
    /// for the transactional workloads: `read_share` mixes their
    /// micro-operations).
    fn default_mix(self) -> Mix {
        let w = |v: &[(OpName, u32)]| Mix { weights: v.to_vec() };
        match self {
            WorkloadKind::Register => w(&[(OpName::Read, 2), (OpName::Write, 1), (OpName::Cas, 1)]),
            WorkloadKind::ListAppend => w(&[(OpName::Read, 1), (OpName::Append, 1)]),
            WorkloadKind::Session => w(&[(OpName::Read, 2), (OpName::Write, 1)]),
            WorkloadKind::MultiKey => w(&[(OpName::MultiRead, 1), (OpName::Write, 1)]),
            WorkloadKind::TxnListAppend | WorkloadKind::TxnRwRegister => w(&[]),
        }
    }
}

/// An operation name in a mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpName {
    Read,
    Write,
    Cas,
    Append,
    MultiRead,
}

impl OpName {
    fn parse(s: &str) -> Result<OpName, WorkloadError> {
        Ok(match s {
            "read" => OpName::Read,
            "write" => OpName::Write,
            "cas" => OpName::Cas,
            "append" => OpName::Append,
            "multi-read" | "multi_read" => OpName::MultiRead,
            other => {
                return Err(WorkloadError::BadConfig(format!(
                    "unknown operation {other:?} in the mix"
                )))
            }
        })
    }
}

/// Relative weights of operations.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mix {
    /// (operation, weight) pairs.
    pub weights: Vec<(OpName, u32)>,
}

impl Mix {
    /// Parses `read=2,write=1,cas=1`.
    pub fn parse(s: &str) -> Result<Mix, WorkloadError> {
        let mut weights = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, w) = item
                .split_once('=')
                .ok_or_else(|| WorkloadError::BadConfig(format!("expected op=weight, got {item:?}")))?;
            let w: u32 = w
                .parse()
                .map_err(|_| WorkloadError::BadConfig(format!("weight {w:?} is not a number")))?;
            weights.push((OpName::parse(name.trim())?, w));
        }
        Ok(Mix { weights })
    }

    fn total(&self) -> u32 {
        self.weights.iter().map(|(_, w)| w).sum()
    }

    fn draw(&self, rng: &mut ChaCha8Rng) -> OpName {
        let mut x = rng.gen_range(0..self.total());
        for (op, w) in &self.weights {
            if x < *w {
                return *op;
            }
            x -= w;
        }
        unreachable!("x < total")
    }
}

/// How keys are drawn within a generation.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyDist {
    /// Every key as likely.
    Uniform,
    /// Key i with probability proportional to 1 / (i + 1)^s.
    Zipf(f64),
}

impl KeyDist {
    /// Parses `uniform` or `zipf` / `zipf:S`.
    pub fn parse(s: &str) -> Result<KeyDist, WorkloadError> {
        match s {
            "uniform" => Ok(KeyDist::Uniform),
            "zipf" => Ok(KeyDist::Zipf(1.0)),
            _ => match s.strip_prefix("zipf:").map(str::parse::<f64>) {
                Some(Ok(x)) if x > 0.0 && x <= 10.0 => Ok(KeyDist::Zipf(x)),
                _ => Err(WorkloadError::BadConfig(format!(
                    "key distribution {s:?}: expected uniform, zipf or zipf:S with 0 < S <= 10"
                ))),
            },
        }
    }
}

/// A validated workload.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WorkloadConfig {
    /// Which workload.
    pub kind: WorkloadKind,
    /// Keys in use at once (per generation).
    pub key_count: usize,
    /// How keys are drawn.
    pub key_dist: KeyDist,
    /// The operation mix.
    pub mix: Mix,
    /// Operations a worker does before it moves to the next generation of
    /// keys; 0 never rotates.
    pub ops_per_key: u64,
    /// Keys per snapshot read (multi-key).
    pub multi_read_keys: usize,
    /// The transactional workloads' knobs (unused by the others).
    #[serde(default)]
    pub txn: TxnConfig,
}

impl WorkloadConfig {
    /// The defaults of a workload.
    pub fn new(kind: WorkloadKind) -> WorkloadConfig {
        let (key_count, ops_per_key) = match kind {
            WorkloadKind::Register => (8, 60),
            WorkloadKind::ListAppend => (8, 60),
            WorkloadKind::Session => (16, 0),
            WorkloadKind::MultiKey => (8, 0),
            WorkloadKind::TxnListAppend | WorkloadKind::TxnRwRegister => (8, 0),
        };
        WorkloadConfig {
            kind,
            key_count,
            key_dist: KeyDist::Uniform,
            mix: kind.default_mix(),
            ops_per_key,
            multi_read_keys: 4,
            txn: TxnConfig::default(),
        }
    }

    /// Checks the ranges and that the mix fits the workload.
    pub fn validate(&self) -> Result<(), WorkloadError> {
        let bad = |m: String| Err(WorkloadError::BadConfig(m));
        if self.key_count == 0 || self.key_count > MAX_KEY_COUNT {
            return bad(format!("key count {} not within 1..={MAX_KEY_COUNT}", self.key_count));
        }
        if self.kind.is_txn() {
            return self.txn.validate().map_err(|(_, m)| WorkloadError::BadConfig(m));
        }
        if self.mix.total() == 0 {
            return bad("the operation mix has no weight".into());
        }
        let allowed = self.kind.default_mix();
        for (op, w) in &self.mix.weights {
            if *w > 0 && !allowed.weights.iter().any(|(a, _)| a == op) {
                return bad(format!(
                    "{op:?} is not an operation of the {} workload",
                    self.kind.name()
                ));
            }
        }
        if self.kind == WorkloadKind::MultiKey
            && (self.multi_read_keys < 2 || self.multi_read_keys > MAX_MULTI_READ_KEYS.min(self.key_count))
        {
            return bad(format!(
                "a snapshot read needs 2..={} keys, got {}",
                MAX_MULTI_READ_KEYS.min(self.key_count),
                self.multi_read_keys
            ));
        }
        Ok(())
    }

    /// The generators of a run's `workers` workers under `seed`. The
    /// transactional workloads' share their active keys, which retire after
    /// `max_writes_per_key` writes by all workers together.
    pub fn generators(&self, seed: u64, workers: usize) -> Vec<Generator> {
        let keys = self.shared_keys();
        (0..workers)
            .map(|w| Generator::new(self.clone(), seed, w, keys.clone()))
            .collect()
    }

    /// The generator of worker `worker` under `seed`, alone: its active
    /// keys (transactional workloads) are its own.
    pub fn generator(&self, seed: u64, worker: usize) -> Generator {
        Generator::new(self.clone(), seed, worker, self.shared_keys())
    }

    fn shared_keys(&self) -> SharedKeys {
        SharedKeys::new(self.key_count, self.txn.max_writes_per_key)
    }

    /// The reads the harness takes on every node after healing: every key
    /// touched (at most [`MAX_FINAL_KEYS`], the latest ones), singly or, for
    /// multi-key, as snapshots, for the transactional workloads, as
    /// read-only transactions.
    pub fn final_reads(&self, keys: &BTreeSet<String>) -> Vec<Request> {
        let skip = keys.len().saturating_sub(MAX_FINAL_KEYS);
        let mut latest: Vec<&String> = keys.iter().collect();
        // Keys end in their index; sort by it so "latest" means the newest generation.
        latest.sort_by_key(|k| (k.len(), *k));
        let latest = &latest[skip..];
        match self.kind {
            WorkloadKind::MultiKey => latest
                .chunks(FINAL_MULTI_READ_KEYS)
                .map(|c| Request::MultiRead {
                    keys: c.iter().map(|k| (*k).clone()).collect(),
                })
                .collect(),
            WorkloadKind::TxnListAppend | WorkloadKind::TxnRwRegister => {
                latest.chunks(FINAL_TXN_READ_KEYS).map(txn_gen::read_only).collect()
            }
            _ => latest.iter().map(|k| Request::Read { key: (*k).clone() }).collect(),
        }
    }
}

/// One worker's operation source.
pub struct Generator {
    cfg: WorkloadConfig,
    rng: ChaCha8Rng,
    worker: usize,
    ops: u64,
    next_value: i64,
    zipf_cdf: Vec<f64>,
    /// The key this worker wrote last (session reads it back).
    last_written: Option<String>,
    /// The value this worker last wrote to each key (cas expects it).
    my_values: std::collections::HashMap<String, i64>,
    /// The transactional workloads' generator, which makes every operation.
    txn: Option<TxnGenerator>,
}

impl Generator {
    fn new(cfg: WorkloadConfig, seed: u64, worker: usize, active: SharedKeys) -> Generator {
        let stream = (worker as u64).wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let rng = ChaCha8Rng::seed_from_u64(seed ^ stream);
        let txn = cfg.kind.is_txn().then(|| {
            let appends = cfg.kind == WorkloadKind::TxnListAppend;
            let prefix = cfg.kind.key_prefix();
            let (keys, dist) = (cfg.key_count, cfg.key_dist);
            TxnGenerator::new(
                cfg.txn.clone(),
                appends,
                prefix,
                keys,
                dist,
                rng.clone(),
                worker,
                active,
            )
        });
        Generator {
            zipf_cdf: key_cdf(cfg.key_dist, cfg.key_count),
            txn,
            rng,
            worker,
            ops: 0,
            next_value: 0,
            last_written: None,
            my_values: Default::default(),
            cfg,
        }
    }

    fn fresh_value(&mut self) -> i64 {
        self.next_value += 1;
        (self.worker as i64 + 1) * VALUE_STRIDE + self.next_value
    }

    fn key_index(&mut self) -> usize {
        draw_index(&mut self.rng, &self.zipf_cdf, self.cfg.key_count)
    }

    fn key_name(&self, index: usize) -> String {
        let generation = match self.cfg.ops_per_key {
            0 => 0,
            n => self.ops / n,
        };
        let global = generation as usize * self.cfg.key_count + index;
        format!("{}{global}", self.cfg.kind.key_prefix())
    }

    fn key(&mut self) -> String {
        let i = self.key_index();
        self.key_name(i)
    }

    /// The next operation.
    pub fn next_op(&mut self) -> Request {
        if let Some(txn) = &mut self.txn {
            return txn.next_txn();
        }
        let op = self.cfg.mix.draw(&mut self.rng);
        let req = match op {
            OpName::Read => {
                let own = self.cfg.kind == WorkloadKind::Session && self.rng.gen_bool(0.5);
                let key = match (&self.last_written, own) {
                    (Some(k), true) => k.clone(),
                    _ => self.key(),
                };
                Request::Read { key }
            }
            OpName::Write => {
                let key = self.key();
                let value = self.fresh_value();
                self.remember_write(&key, value);
                Request::Write { key, value }
            }
            OpName::Cas => {
                let key = self.key();
                let expected = self.my_values.get(&key).copied();
                let new = self.fresh_value();
                self.remember_write(&key, new);
                Request::Cas { key, expected, new }
            }
            OpName::Append => {
                let key = self.key();
                let value = self.fresh_value();
                Request::Append { key, value }
            }
            OpName::MultiRead => {
                let mut idx = BTreeSet::new();
                while idx.len() < self.cfg.multi_read_keys {
                    idx.insert(self.key_index());
                }
                Request::MultiRead {
                    keys: idx.into_iter().map(|i| self.key_name(i)).collect(),
                }
            }
        };
        self.ops += 1;
        req
    }

    fn remember_write(&mut self, key: &str, value: i64) {
        if self.cfg.kind == WorkloadKind::Register {
            // Keys of past generations are never touched again: forget them.
            if self.my_values.len() > 4 * self.cfg.key_count {
                self.my_values.clear();
            }
            self.my_values.insert(key.to_owned(), value);
        }
        self.last_written = Some(key.to_owned());
    }
}

/// The cumulative distribution of key indexes under `dist` (empty for
/// uniform: [`draw_index`] then draws directly).
pub(crate) fn key_cdf(dist: KeyDist, key_count: usize) -> Vec<f64> {
    let KeyDist::Zipf(s) = dist else {
        return Vec::new();
    };
    let w: Vec<f64> = (0..key_count).map(|i| 1.0 / ((i + 1) as f64).powf(s)).collect();
    let total: f64 = w.iter().sum();
    w.iter()
        .scan(0.0, |acc, x| {
            *acc += x / total;
            Some(*acc)
        })
        .collect()
}

/// A key index in `0..key_count`, drawn by `cdf` ([`key_cdf`]).
pub(crate) fn draw_index(rng: &mut ChaCha8Rng, cdf: &[f64], key_count: usize) -> usize {
    if cdf.is_empty() {
        return rng.gen_range(0..key_count);
    }
    let x: f64 = rng.gen();
    cdf.partition_point(|c| *c < x).min(key_count - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn ops(cfg: &WorkloadConfig, seed: u64, worker: usize, n: usize) -> Vec<Request> {
        let mut g = cfg.generator(seed, worker);
        (0..n).map(|_| g.next_op()).collect()
    }

    fn all_kinds() -> Vec<WorkloadConfig> {
        ["register", "list-append", "session", "multi-key"]
            .into_iter()
            .map(|k| WorkloadConfig::new(WorkloadKind::parse(k).unwrap()))
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        for cfg in all_kinds() {
            cfg.validate().unwrap();
            assert_eq!(ops(&cfg, 42, 3, 500), ops(&cfg, 42, 3, 500), "{:?}", cfg.kind);
            assert_ne!(ops(&cfg, 42, 3, 500), ops(&cfg, 43, 3, 500), "{:?}", cfg.kind);
            assert_ne!(ops(&cfg, 42, 3, 500), ops(&cfg, 42, 4, 500), "{:?}", cfg.kind);
        }
    }

    #[test]
    fn written_values_are_unique_across_workers() {
        for cfg in all_kinds() {
            let mut seen = HashSet::new();
            for w in 0..8 {
                for op in ops(&cfg, 7, w, 300) {
                    let v = match op {
                        Request::Write { value, .. } | Request::Append { value, .. } => value,
                        Request::Cas { new, .. } => new,
                        _ => continue,
                    };
                    assert!(seen.insert(v), "{v} written twice");
                }
            }
            assert!(!seen.is_empty());
        }
    }

    #[test]
    fn register_mixes_its_operations_and_rotates_keys() {
        let cfg = WorkloadConfig::new(WorkloadKind::Register);
        let o = ops(&cfg, 1, 0, 400);
        let count = |f: fn(&Request) -> bool| o.iter().filter(|r| f(r)).count();
        assert!(count(|r| matches!(r, Request::Read { .. })) > 100);
        assert!(count(|r| matches!(r, Request::Write { .. })) > 50);
        assert!(count(|r| matches!(r, Request::Cas { expected: Some(_), .. })) > 10);
        let first_gen: BTreeSet<&str> = o[..60].iter().flat_map(|r| r.keys()).collect();
        let later_gen: BTreeSet<&str> = o[60..120].iter().flat_map(|r| r.keys()).collect();
        assert!(first_gen.is_disjoint(&later_gen));
    }

    #[test]
    fn session_reads_back_what_it_wrote() {
        let cfg = WorkloadConfig::new(WorkloadKind::Session);
        let o = ops(&cfg, 5, 0, 300);
        let read_back = o
            .windows(2)
            .filter(|w| matches!((&w[0], &w[1]), (Request::Write { key: a, .. }, Request::Read { key: b }) if a == b))
            .count();
        assert!(read_back > 10, "{read_back}");
    }

    #[test]
    fn multi_key_reads_distinct_keys() {
        let cfg = WorkloadConfig::new(WorkloadKind::MultiKey);
        for op in ops(&cfg, 2, 1, 200) {
            if let Request::MultiRead { keys } = op {
                let distinct: BTreeSet<_> = keys.iter().collect();
                assert_eq!(distinct.len(), cfg.multi_read_keys);
            }
        }
    }

    #[test]
    fn zipf_favours_the_first_keys() {
        let mut cfg = WorkloadConfig::new(WorkloadKind::Session);
        cfg.key_dist = KeyDist::parse("zipf:1.5").unwrap();
        cfg.mix = Mix::parse("write=1").unwrap();
        let o = ops(&cfg, 3, 0, 2000);
        let hot = o.iter().filter(|r| r.keys() == vec!["s0"]).count();
        let cold = o.iter().filter(|r| r.keys() == vec!["s15"]).count();
        assert!(hot > 10 * cold.max(1), "hot {hot} cold {cold}");
    }

    #[test]
    fn rejects_bad_configs() {
        let mut cfg = WorkloadConfig::new(WorkloadKind::Register);
        cfg.mix = Mix::parse("append=1").unwrap();
        assert!(cfg.validate().is_err());
        assert!(Mix::parse("read").is_err());
        assert!(KeyDist::parse("zipf:0").is_err());
        assert!(WorkloadKind::parse("bank").is_err());
        cfg = WorkloadConfig::new(WorkloadKind::MultiKey);
        cfg.multi_read_keys = 1;
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn final_reads_cover_the_latest_keys() {
        let keys: BTreeSet<String> = (0..10).map(|i| format!("m{i}")).collect();
        let cfg = WorkloadConfig::new(WorkloadKind::MultiKey);
        let reads = cfg.final_reads(&keys);
        assert_eq!(reads.len(), 1);
        let cfg = WorkloadConfig::new(WorkloadKind::Register);
        assert_eq!(cfg.final_reads(&keys).len(), 10);
    }
}
