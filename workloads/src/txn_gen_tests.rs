//! Tests of the transactional generators: a pure function of the seed
//! (and of the order workers are asked in), unique values, keys retired at
//! their cap by all workers' writes together, a stalled worker back on the
//! keys the others write, and the knobs doing what they say.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::*;
use crate::generator::{WorkloadConfig, WorkloadKind};

const WORKERS: usize = 10;

fn config(kind: WorkloadKind) -> WorkloadConfig {
    let cfg = WorkloadConfig::new(kind);
    cfg.validate().unwrap();
    cfg
}

fn ops_of(req: Request) -> Vec<TxnOp> {
    match req {
        Request::Txn { ops } => ops,
        other => panic!("a transactional workload made {other:?}"),
    }
}

/// `n` transactions of worker `worker` alone.
fn txns(cfg: &WorkloadConfig, seed: u64, worker: usize, n: usize) -> Vec<Vec<TxnOp>> {
    let mut g = cfg.generator(seed, worker);
    (0..n).map(|_| ops_of(g.next_op())).collect()
}

fn both() -> [WorkloadConfig; 2] {
    [config(WorkloadKind::TxnListAppend), config(WorkloadKind::TxnRwRegister)]
}

/// Every micro-op of a run's workers sharing their keys, asked in turn for
/// `n` transactions each.
fn all_ops(cfg: &WorkloadConfig, seed: u64, n: usize) -> Vec<(usize, TxnOp)> {
    let mut gens = cfg.generators(seed, WORKERS);
    let mut out = Vec::new();
    for _ in 0..n {
        for (w, g) in gens.iter_mut().enumerate() {
            out.extend(ops_of(g.next_op()).into_iter().map(|op| (w, op)));
        }
    }
    out
}

fn written(op: &TxnOp) -> Option<(&str, i64)> {
    match op {
        TxnOp::Append { key, value } | TxnOp::Write { key, value } => Some((key, *value)),
        TxnOp::Read { .. } => None,
    }
}

#[test]
fn the_same_seed_and_worker_give_the_same_transactions() {
    for cfg in both() {
        assert_eq!(txns(&cfg, 42, 3, 300), txns(&cfg, 42, 3, 300));
        assert_ne!(txns(&cfg, 42, 3, 300), txns(&cfg, 42, 3 + 1, 300));
        assert_ne!(txns(&cfg, 42, 3, 300), txns(&cfg, 43, 3, 300));
        // Workers sharing their keys, asked in a fixed order.
        assert_eq!(all_ops(&cfg, 42, 100), all_ops(&cfg, 42, 100));
        assert_ne!(all_ops(&cfg, 42, 100), all_ops(&cfg, 43, 100));
    }
}

#[test]
fn list_append_appends_and_rw_register_writes() {
    let [la, rw] = both();
    let kinds = |cfg| -> BTreeSet<&'static str> {
        all_ops(cfg, 1, 50)
            .iter()
            .map(|(_, op)| match op {
                TxnOp::Append { .. } => "append",
                TxnOp::Write { .. } => "w",
                TxnOp::Read { .. } => "r",
            })
            .collect()
    };
    assert_eq!(kinds(&la), ["append", "r"].into());
    assert_eq!(kinds(&rw), ["r", "w"].into());
}

#[test]
fn values_are_unique_per_key_across_workers() {
    for cfg in both() {
        let mut seen = HashSet::new();
        let ops = all_ops(&cfg, 7, 400);
        for (_, op) in &ops {
            if let Some((key, value)) = written(op) {
                assert!(seen.insert((key.to_owned(), value)), "{key} = {value} written twice");
            }
        }
        assert!(seen.len() > 1000, "{}", seen.len());
    }
}

#[test]
fn keys_retire_at_their_cap_and_workers_share_them() {
    for cfg in both() {
        let ops = all_ops(&cfg, 9, 500);
        let mut writes: BTreeMap<&str, (u64, BTreeSet<usize>)> = BTreeMap::new();
        for (w, op) in &ops {
            if let Some((key, _)) = written(op) {
                let e = writes.entry(key).or_default();
                e.0 += 1;
                e.1.insert(*w);
            }
        }
        let cap = cfg.txn.max_writes_per_key;
        assert!(
            writes.len() > 20 * cfg.key_count,
            "only {} keys: no rotation",
            writes.len()
        );
        // Every key took exactly the cap, but those still active at the end.
        let short = writes.values().filter(|(n, _)| *n != cap).count();
        assert!(short <= cfg.key_count, "{short} keys retired short of {cap} writes");
        assert!(writes.values().all(|(n, _)| *n <= cap));
        // Keys are written by several workers (contention).
        let shared = writes.values().filter(|(_, ws)| ws.len() >= 3).count();
        assert!(shared * 2 > writes.len(), "{shared} of {} keys shared", writes.len());
    }
}

#[test]
fn a_stalled_worker_comes_back_to_the_keys_the_others_write() {
    let cfg = TxnConfig::default();
    let keys = SharedKeys::new(5, cfg.max_writes_per_key);
    let rng = |w: u64| <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(w);
    let gen = |w: usize| {
        TxnGenerator::new(
            cfg.clone(),
            true,
            "a",
            5,
            KeyDist::Uniform,
            rng(w as u64),
            w,
            keys.clone(),
        )
    };
    let (mut stalled, mut busy) = (gen(0), gen(1));
    stalled.next_txn();
    for _ in 0..2_000 {
        busy.next_txn();
    }
    let active: BTreeSet<String> = keys.lock().ids.iter().map(|id| format!("a{id}")).collect();
    let back: BTreeSet<String> = ops_of(stalled.next_txn())
        .iter()
        .map(|op| op.key().to_owned())
        .collect();
    assert!(back.is_subset(&active), "{back:?} not among the active keys {active:?}");
    let min_active = keys.lock().ids.iter().copied().min().unwrap();
    assert!(min_active > 100, "the busy worker retired keys: {min_active}");
}

#[test]
fn a_key_retires_on_the_write_that_reaches_the_cap() {
    let keys = SharedKeys::new(2, 3);
    assert_eq!((keys.write(0), keys.write(0), keys.read(0)), (0, 0, 0));
    assert_eq!(keys.write(0), 0, "the third write still goes to key 0");
    assert_eq!((keys.read(0), keys.write(1), keys.write(0)), (2, 1, 2));
}

#[test]
fn lengths_and_read_share_follow_the_knobs() {
    for share in [0.0, 0.2, 0.5, 0.8] {
        let mut cfg = config(WorkloadKind::TxnRwRegister);
        cfg.txn.read_share = share;
        (cfg.txn.min_length, cfg.txn.max_length) = (2, 6);
        let ts: Vec<Vec<TxnOp>> = (0..WORKERS).flat_map(|w| txns(&cfg, 3, w, 300)).collect();
        let lens: BTreeSet<usize> = ts.iter().map(Vec::len).collect();
        assert_eq!(lens, (2..=6).collect(), "read share {share}");
        let ops: Vec<&TxnOp> = ts.iter().flatten().collect();
        let reads = ops.iter().filter(|op| !op.is_write()).count() as f64 / ops.len() as f64;
        assert!((reads - share).abs() <= 0.03, "read share {share}: measured {reads:.3}");
    }
}

#[test]
fn bad_knobs_are_named() {
    let bad = |f: fn(&mut TxnConfig)| {
        let mut c = TxnConfig::default();
        f(&mut c);
        c.validate().unwrap_err().0
    };
    assert_eq!(bad(|c| c.min_length = 0), TxnKnob::MinLength);
    assert_eq!(bad(|c| c.min_length = 5), TxnKnob::MaxLength);
    assert_eq!(bad(|c| c.max_length = MAX_TXN_LENGTH + 1), TxnKnob::MaxLength);
    assert_eq!(bad(|c| c.max_writes_per_key = 0), TxnKnob::MaxWritesPerKey);
    assert_eq!(bad(|c| c.read_share = 1.0), TxnKnob::ReadShare);
    assert_eq!(bad(|c| c.read_share = f64::NAN), TxnKnob::ReadShare);
    let mut cfg = config(WorkloadKind::TxnListAppend);
    cfg.txn.read_share = -0.1;
    assert!(cfg.validate().is_err());
}

#[test]
fn final_reads_are_read_only_transactions_of_every_key() {
    let keys: BTreeSet<String> = (0..70).map(|i| format!("a{i}")).collect();
    let reads = config(WorkloadKind::TxnListAppend).final_reads(&keys);
    assert_eq!(reads.len(), 3);
    let mut read = BTreeSet::new();
    for r in &reads {
        assert!(matches!(r, Request::Txn { .. }) && !r.is_write(), "{r:?}");
        read.extend(r.keys().into_iter().map(str::to_owned));
    }
    assert_eq!(read, keys);
}
