//! Tests of the transactional generators: a pure function of the seed,
//! unique values, keys retired at their cap while workers share them, and
//! the knobs doing what they say.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::*;
use crate::generator::{WorkloadConfig, WorkloadKind};

const WORKERS: usize = 10;

fn config(kind: WorkloadKind) -> WorkloadConfig {
    let cfg = WorkloadConfig::new(kind);
    cfg.validate().unwrap();
    cfg
}

fn txns(cfg: &WorkloadConfig, seed: u64, worker: usize, n: usize) -> Vec<Vec<TxnOp>> {
    let mut g = cfg.generator(seed, worker, WORKERS);
    (0..n)
        .map(|_| match g.next_op() {
            Request::Txn { ops } => ops,
            other => panic!("a transactional workload made {other:?}"),
        })
        .collect()
}

fn both() -> [WorkloadConfig; 2] {
    [config(WorkloadKind::TxnListAppend), config(WorkloadKind::TxnRwRegister)]
}

/// Every micro-op every worker made, `n` transactions each.
fn all_ops(cfg: &WorkloadConfig, seed: u64, n: usize) -> Vec<(usize, TxnOp)> {
    (0..WORKERS)
        .flat_map(|w| txns(cfg, seed, w, n).into_iter().flatten().map(move |op| (w, op)))
        .collect()
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
        assert_ne!(txns(&cfg, 42, 3, 300), txns(&cfg, 43, 3, 300));
        assert_ne!(txns(&cfg, 42, 3, 300), txns(&cfg, 42, 4, 300));
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
        let most = writes.values().map(|(n, _)| *n).max().unwrap();
        assert!(most <= cap, "a key took {most} writes, cap {cap}");
        assert!(
            writes.len() > 20 * cfg.key_count,
            "only {} keys: no rotation",
            writes.len()
        );
        // Keys fill up (rotation is not so eager that lists stay empty) and
        // are written by several workers (contention).
        let full = writes.values().filter(|(n, _)| *n >= cap / 2).count();
        assert!(full * 2 > writes.len(), "{full} of {} keys half full", writes.len());
        let shared = writes.values().filter(|(_, ws)| ws.len() >= 3).count();
        assert!(shared * 2 > writes.len(), "{shared} of {} keys shared", writes.len());
    }
}

#[test]
fn a_transaction_uses_only_the_active_keys() {
    let cfg = config(WorkloadKind::TxnListAppend);
    for t in txns(&cfg, 5, 0, 400) {
        let gens: BTreeSet<usize> = t
            .iter()
            .map(|op| op.key()[1..].parse::<usize>().unwrap() / cfg.key_count)
            .collect();
        assert_eq!(gens.len(), 1, "one generation per transaction: {t:?}");
    }
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
        // A write whose key shares are spent becomes a read, so the share
        // may run a little over the knob, never under.
        assert!(
            reads >= share - 0.03 && reads <= share + 0.08,
            "read share {share}: measured {reads:.3}"
        );
    }
}

#[test]
fn the_cap_is_split_among_workers_at_least_one_write_each() {
    let cfg = TxnConfig::default();
    let shares: Vec<u64> = (0..10).map(|w| cfg.share(w, 10)).collect();
    assert_eq!(shares.iter().sum::<u64>(), 16);
    assert_eq!((0..40).map(|w| cfg.share(w, 40)).min(), Some(1));
    assert!(cfg.generation_txns(8, 10) >= 1);
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
