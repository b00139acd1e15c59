//! The sharded rows in the simulation: lab row 13 (two shards read by
//! multi-key reads from followers break consistent prefix, which one shard
//! keeps) and T7 (`shard_txn=none`: a transaction's pieces commit per
//! shard, so fractured reads and write cycles across shards appear). The
//! keys must really live on both shards, and requests really span them,
//! or the rows would pass for nothing.

use faultline_histories::{EventType, F};
use faultline_server::node::shard_of;
use faultline_sim::{history_of, hunt, scenario};
use serde_json::Value;
use std::collections::BTreeSet;

mod support;
use support::{seeds, threads};

/// The shards the keys of `value`'s micro-ops (`[f, key, v]`) live on,
/// of the reads that saw something or the writes.
fn shards_touched(value: &Value) -> BTreeSet<usize> {
    let micro_ops = value.as_array().into_iter().flatten();
    let seen = micro_ops.filter(|m| m[0] != "r" || !m[2].is_null());
    seen.filter_map(|m| m[1].as_str()).map(|k| shard_of(k, 2)).collect()
}

/// How many ok operations of `name`'s history at `seed` read or wrote on
/// both shards at once.
fn across_both_shards(name: &str, seed: u64) -> usize {
    let s = scenario::named(name).expect("a sharded scenario");
    let events = history_of(&s, seed);
    let ok_txns = events.iter().filter(|e| e.kind == EventType::Ok && e.f == F::Txn);
    ok_txns.filter(|e| shards_touched(&e.value).len() == 2).count()
}

#[test]
fn two_shards_break_consistent_prefix_within_the_bound_and_one_shard_keeps_it() {
    let row = scenario::named("two-shards-multi-key").expect("row 13");
    let h = hunt(&row, 0, row.find_within, true, threads());
    let found = h
        .found
        .as_ref()
        .unwrap_or_else(|| panic!("row 13: nothing in {} seeds", row.find_within));
    let anomaly = found.anomaly.as_deref().unwrap_or_default();
    assert!(
        anomaly.contains("nonlinearizable") && anomaly.contains("consistent-prefix"),
        "row 13 names both: {anomaly}"
    );
    assert!(
        across_both_shards(row.name, found.seed) >= 10,
        "multi-key reads that saw both shards"
    );
    let control = scenario::named("one-shard-multi-key").expect("row 13's control");
    let c = hunt(&control, 0, seeds(), false, threads());
    assert_eq!(
        c.broken, 0,
        "consistent prefix broken on one shard: {:?}",
        c.first_broken
    );
    assert!(
        c.session_ops as u64 >= seeds() * 100,
        "the checker looked: {}",
        c.session_ops
    );
}

#[test]
fn transactions_in_pieces_show_fractured_reads_and_write_cycles_across_shards() {
    let s = scenario::named("txn-two-shards-none").expect("T7");
    let h = hunt(&s, 0, 50, false, threads());
    eprintln!("T7: {} of {} seeds, types {:?}", h.shown, h.seeds, h.kinds);
    let fractured = ["G-single", "G1c"].iter().filter_map(|k| h.kinds.get(*k)).sum::<u64>();
    assert!(
        fractured >= 25,
        "fractured reads (G-single or G1c) in {fractured} of 50: {:?}",
        h.kinds
    );
    let g0 = h.kinds.get("G0").copied().unwrap_or(0);
    assert!(g0 >= 10, "write cycles across shards (G0) in {g0} of 50: {:?}", h.kinds);
    assert_eq!((h.unknown, h.broken), (0, 0), "every history decided, no append lost");
    assert!(
        across_both_shards(s.name, 0) >= 20,
        "committed transactions that spanned both shards"
    );
}
