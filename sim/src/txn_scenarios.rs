//! The isolation rows of the replication lab (REPLICATION_LAB.md, T1-T7)
//! as simulation scenarios: list-append transactions against the core at
//! each `isolation=` setting, judged by the transactional checker
//! (faultline-txn).
//!
//! Promise: each row says which anomaly types the hunt looks for (found,
//! judged against strict serializability, within the scenario's
//! `find_within` seeds), which consistency model every schedule must
//! satisfy whatever the faults, and which types the lab's table names as
//! never appearing. The safe rows (serializable and strict-serializable
//! on the leader) look for any anomaly and must find none.

use crate::scenario::{self, FaultKind, Scenario, ALL_FAULTS};
use crate::txn_judge::LOST_APPEND;
use faultline_txn::Model;

/// What the transactional checker must find and must not find in one row.
#[derive(Debug, Clone)]
pub struct TxnRow {
    /// The lab's row (`T1` ...).
    pub row: &'static str,
    /// The model every schedule must satisfy (None: the row promises none).
    pub holds: Option<Model>,
    /// The anomaly types the hunt looks for, judged against strict
    /// serializability; empty: any anomaly (the safe rows, where finding
    /// one fails the test).
    pub shows: &'static [&'static str],
    /// Types the lab's table names as never appearing (its "never" column;
    /// `holds` forbids them too, this says which ones the table promises),
    /// and [`LOST_APPEND`] where the row loses no committed transaction.
    pub never: &'static [&'static str],
}

/// The safe replication settings the isolation rows build on.
const SAFE: &str = "ack=majority,failover=fenced,reads=leader,fsync=always";

/// Every non-cycle and every data-dependency cycle type G1 names
/// (and a lost acknowledged append, which no row on fenced majority
/// replication shows).
const G0_G1: [&str; 5] = ["G0", "G1a", "G1b", "G1c", LOST_APPEND];

/// Cycles that need process or real-time order: what a stale but
/// consistent snapshot of a read-only transaction shows.
const ORDER_CYCLES: [&str; 10] = [
    "G0-process",
    "G1c-process",
    "G-single-process",
    "G-nonadjacent-process",
    "G2-item-process",
    "G0-realtime",
    "G1c-realtime",
    "G-single-realtime",
    "G-nonadjacent-realtime",
    "G2-item-realtime",
];

/// The isolation rows T1-T7 (T8, two-phase commit across shards, needs
/// the server's coordinator, which the simulation does not drive).
pub fn all() -> Vec<Scenario> {
    let mut all = weak_isolation();
    all.extend(on_the_leader());
    all.extend(replicas());
    all.push(across_shards());
    all
}

/// T1 and T2: read-committed and snapshot isolation, under every fault.
fn weak_isolation() -> Vec<Scenario> {
    vec![
        scenario::transactional(
            "txn-read-committed",
            &format!("{SAFE},isolation=read-committed,txn_step_ms=2"),
            &ALL_FAULTS,
            Some("read skew: a read-committed transaction sees half of another (G-single or G2-item)"),
            20,
            TxnRow {
                row: "T1",
                holds: Some(Model::ReadCommitted),
                shows: &["G-single", "G2-item"],
                never: &G0_G1,
            },
        ),
        scenario::transactional(
            "txn-snapshot",
            &format!("{SAFE},isolation=snapshot,txn_step_ms=2"),
            &ALL_FAULTS,
            Some("write skew: two snapshot transactions read the same keys and write different ones (G2-item)"),
            20,
            TxnRow {
                row: "T2",
                holds: Some(Model::SnapshotIsolation),
                shows: &["G2-item"],
                never: &["G0", "G1a", "G1b", "G1c", "G-single", "lost-update", LOST_APPEND],
            },
        ),
    ]
}

/// T3 and T4: serializable and strict-serializable on the leader, safe
/// under every fault.
fn on_the_leader() -> Vec<Scenario> {
    vec![
        scenario::transactional(
            "txn-serializable",
            &format!("{SAFE},isolation=serializable"),
            &ALL_FAULTS,
            None,
            0,
            TxnRow {
                row: "T3",
                holds: Some(Model::StrictSerializable),
                shows: &[],
                never: &[LOST_APPEND],
            },
        ),
        scenario::transactional(
            "txn-strict-serializable",
            &format!("{SAFE},isolation=strict-serializable"),
            &ALL_FAULTS,
            None,
            0,
            TxnRow {
                row: "T4",
                holds: Some(Model::StrictSerializable),
                shows: &[],
                never: &[LOST_APPEND],
            },
        ),
    ]
}

/// T5 and T6: what replication adds (stale followers, unfenced failover).
fn replicas() -> Vec<Scenario> {
    vec![
        scenario::transactional(
            "txn-follower-reads",
            "isolation=serializable,ack=none,failover=fenced,reads=follower,replay_delay_ms=50,fsync=always",
            &[],
            Some("stale snapshots: read-only transactions on lagging followers (cycles that need real-time or process order)"),
            20,
            TxnRow {
                row: "T5",
                holds: Some(Model::Serializable),
                shows: &ORDER_CYCLES,
                never: &["G0", "G1a", "G1b", "G1c", "G-single", "G-nonadjacent", "G2-item", LOST_APPEND],
            },
        ),
        scenario::transactional(
            "txn-unfenced-split-brain",
            "isolation=strict-serializable,ack=none,failover=unfenced,reads=leader,fsync=always",
            &[FaultKind::IsolateLeader],
            Some("committed transactions lost: the old leader's are truncated when the partition heals (lost-append)"),
            20,
            TxnRow {
                row: "T6",
                holds: None,
                shows: &[LOST_APPEND],
                never: &[],
            },
        ),
    ]
}

/// T7: two shards, a transaction across them run as one piece per shard
/// (`shard_txn=none`), each piece strict serializable on its own leader.
fn across_shards() -> Scenario {
    scenario::transactional(
        "txn-two-shards-none",
        &format!("{SAFE},shards=2,shard_txn=none,isolation=strict-serializable"),
        &[],
        Some(
            "fractured reads across shards (G-single or G1c): a transaction's pieces commit one shard after the other",
        ),
        20,
        TxnRow {
            row: "T7",
            holds: None,
            shows: &["G-single", "G1c"],
            never: &[LOST_APPEND],
        },
    )
}
