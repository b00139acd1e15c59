//! The settings the simulation tries, with the faults each needs: the
//! rows of the replication lab's ground truth (REPLICATION_LAB.md) that
//! the cores and the node layer between them decide.
//!
//! Promise: a scenario says whether its setting is safe; the simulation
//! must find no anomaly in a safe one under any schedule, and must find the
//! anomaly of an unsafe one within its `find_within` seeds.

pub use crate::txn_scenarios::TxnRow;

/// The kinds of fault a schedule may draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Cut the current leader off from every other node, then heal.
    IsolateLeader,
    /// Cut the nodes into two random halves, then heal.
    RandomHalves,
    /// Kill the current leader (its written but unsynced data survives),
    /// then restart it.
    KillLeader,
    /// Kill a random node, losing what it had not synced, then restart it.
    PowerLossOne,
    /// Kill every node at once, losing what they had not synced, then
    /// restart them.
    PowerLossAll,
    /// Drop a share of messages and delay the rest, then stop.
    Lossy,
    /// Set a random node's wall clock off (ahead or behind), then right
    /// again: last-write-wins stamps follow it (leaderless modes).
    SkewClock,
}

/// Every kind of fault.
pub const ALL_FAULTS: [FaultKind; 6] = [
    FaultKind::IsolateLeader,
    FaultKind::RandomHalves,
    FaultKind::KillLeader,
    FaultKind::PowerLossOne,
    FaultKind::PowerLossAll,
    FaultKind::Lossy,
];

/// One setting of the lab and the faults its schedules draw.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Short name (`--scenario`).
    pub name: &'static str,
    /// The server settings, as `faultline-server --settings` takes them.
    pub settings: String,
    /// The faults a schedule may draw.
    pub faults: Vec<FaultKind>,
    /// Number of nodes.
    pub nodes: usize,
    /// The anomaly the lab expects, or None for the safe setting.
    pub expected: Option<&'static str>,
    /// Unsafe: the anomaly must be found within this many seeds.
    pub find_within: u64,
    /// Session guarantees every schedule must keep, as
    /// `faultline_checkers::session` names them: the cells of the lab's row
    /// that pass although linearizability does not.
    pub must_hold: Vec<&'static str>,
    /// Transactional scenarios: the isolation row the transactional
    /// clients and checker judge (None: register clients, linearizability).
    pub txn: Option<TxnRow>,
    /// Session checkers (as `faultline_checkers::session` names them)
    /// whose anomaly the lab's row expects too: a seed counts as finding
    /// the row's anomaly only when it shows these as well.
    pub must_find: Vec<&'static str>,
    /// The multi-key workload (writes of one key, reads of every key at
    /// once), judged as a multi-register: lab row 13's.
    pub multi_key: bool,
}

/// Timing that keeps a simulated second short: heartbeats, elections and
/// timeouts a few times faster than the server's defaults, in the same
/// proportions.
const TIMING: &str = "heartbeat_ms=20,election_timeout_ms=100,request_timeout_ms=400,read_wait_ms=200,async_ship_ms=10";

fn scenario(
    name: &'static str,
    settings: &str,
    faults: &[FaultKind],
    expected: Option<&'static str>,
    find_within: u64,
) -> Scenario {
    Scenario {
        name,
        settings: format!("{settings},{TIMING}"),
        faults: faults.to_vec(),
        nodes: 3,
        expected,
        find_within,
        must_hold: Vec::new(),
        txn: None,
        must_find: Vec::new(),
        multi_key: false,
    }
}

/// A scenario of transactional clients judged by `row`.
pub(crate) fn transactional(
    name: &'static str,
    settings: &str,
    faults: &[FaultKind],
    expected: Option<&'static str>,
    find_within: u64,
    row: TxnRow,
) -> Scenario {
    Scenario {
        txn: Some(row),
        ..scenario(name, settings, faults, expected, find_within)
    }
}

fn holding(s: Scenario, guarantees: &[&'static str]) -> Scenario {
    Scenario {
        must_hold: guarantees.to_vec(),
        ..s
    }
}

fn five_nodes(s: Scenario) -> Scenario {
    Scenario { nodes: 5, ..s }
}

/// Every scenario: the single-leader core's replication rows, then the
/// leaderless core's, then the isolation rows ([`crate::txn_scenarios`]).
pub fn all() -> Vec<Scenario> {
    let mut all = single_leader();
    all.extend(sharded());
    all.extend(quorum());
    all.extend(crate::txn_scenarios::all());
    all
}

/// The safe settings (the lab's safe row, and `ack=any:1` on three nodes,
/// where one follower is a majority) and the unsafe ones whose anomaly the
/// core decides.
fn single_leader() -> Vec<Scenario> {
    use FaultKind::*;
    vec![
        scenario(
            "safe",
            "ack=majority,failover=fenced,reads=leader,fsync=always",
            &ALL_FAULTS,
            None,
            0,
        ),
        scenario(
            "any1-three-nodes",
            "ack=any:1,failover=fenced,reads=leader,fsync=always",
            &[KillLeader, IsolateLeader, RandomHalves],
            None,
            0,
        ),
        five_nodes(scenario(
            "any1-five-nodes",
            "ack=any:1,failover=fenced,reads=leader,fsync=always",
            &[RandomHalves],
            Some("acknowledged writes lost: the leader and one follower cut off from the rest (ack=any:1 of 5)"),
            500,
        )),
        scenario(
            "async-ack-failover",
            "ack=none,failover=fenced,reads=leader,fsync=always",
            &[KillLeader],
            Some("acknowledged writes lost when the leader dies (asynchronous ack + failover)"),
            200,
        ),
        scenario(
            "unfenced-split-brain",
            "ack=none,failover=unfenced,reads=leader,fsync=always",
            &[IsolateLeader],
            Some("split brain: two leaders take writes (unfenced failover)"),
            200,
        ),
        scenario(
            "follower-reads",
            "ack=none,failover=fenced,reads=follower,replay_delay_ms=50,fsync=always",
            &[],
            Some("stale reads from lagging followers"),
            200,
        ),
        // The lab's monotonic reads pass is not promised here: the clients'
        // compare-and-sets are served by the leader, so a session that saw
        // the leader's newest value reads an older one from its own replica
        // next (the session workload of the lab has no compare-and-set).
        scenario(
            "sticky-reads",
            "ack=none,failover=fenced,reads=sticky,replay_delay_ms=50,fsync=always",
            &[],
            Some("stale reads from the session's own lagging replica (sticky reads)"),
            200,
        ),
        holding(
            scenario(
                "lsn-reads",
                "ack=none,failover=fenced,reads=lsn,replay_delay_ms=50,fsync=always",
                &[],
                Some("stale reads: a replica that has the session's LSN may miss other sessions' writes"),
                200,
            ),
            &["read-your-writes", "monotonic-reads"],
        ),
        scenario(
            "fsync-never",
            "ack=majority,failover=fenced,reads=leader,fsync=never",
            &[PowerLossAll],
            Some("acknowledged writes lost to a power loss of every node (fsync=never)"),
            200,
        ),
    ]
}

/// The safe setting on two shards; lab row 13: two shards, each its own
/// group with its own leader and lag, read by the multi-key workload from
/// followers; and its control, the same setting on one shard, where a
/// follower's multi-key read is a prefix of its one log.
fn sharded() -> Vec<Scenario> {
    let row_13 = "shards=2,ack=none,reads=follower,replay_delay_ms=50,failover=off,fsync=always";
    vec![
        // The safe setting on two shards: each key stays linearizable under
        // every fault (a multi-key snapshot is not promised, so the
        // register workload judges each key alone), with requests
        // forwarded between the shards' leaders.
        scenario(
            "two-shards-safe",
            "shards=2,ack=majority,failover=fenced,reads=leader,fsync=always",
            &ALL_FAULTS,
            None,
            0,
        ),
        // The row loses no acknowledged write either.
        multi_key(holding(
            finding(
                scenario(
                    "two-shards-multi-key",
                    row_13,
                    &[],
                    Some("consistent prefix broken: a multi-key read sees one shard's newer write and misses an earlier write on the other shard, which lags"),
                    200,
                ),
                &["consistent-prefix"],
            ),
            &["lost-writes"],
        )),
        multi_key(holding(
            scenario(
                "one-shard-multi-key",
                &row_13.replace("shards=2", "shards=1"),
                &[],
                Some("not linearizable: stale reads from lagging followers (the control of row 13: consistent prefix holds on one shard)"),
                200,
            ),
            &["consistent-prefix", "lost-writes"],
        )),
    ]
}

fn multi_key(s: Scenario) -> Scenario {
    Scenario { multi_key: true, ..s }
}

/// The leaderless and multi-leader rows (10 to 12), driven by the
/// leaderless core in the `QuorumWorld`, and the control of row 10.
fn quorum() -> Vec<Scenario> {
    use FaultKind::*;
    vec![
        finding(
            scenario(
                "leaderless-skew-partitions",
                "mode=leaderless,n=3,w=2,r=2",
                &[RandomHalves, SkewClock],
                Some("acknowledged writes lost: a skewed clock stamps a later write older (last write wins), and partitions let replicas diverge"),
                200,
            ),
            &["lost-writes"],
        ),
        finding(
            scenario(
                "leaderless-w1r1",
                "mode=leaderless,n=3,w=1,r=1,replay_delay_ms=50",
                &[],
                Some("stale reads: one replica's answer, and replicas that apply writes late"),
                200,
            ),
            &["read-your-writes"],
        ),
        // With right clocks, last write wins follows real time, so a lost
        // register write cannot be proven (the lab proves row 12's losses
        // on list-append, where concurrent appends merged by last write
        // wins drop elements): partitions alone show stale reads and lost
        // compare-and-sets, a skewed clock the lost writes.
        scenario(
            "multi-leader-partitions",
            "mode=multi_leader",
            &[RandomHalves],
            Some("not linearizable: both sides of a partition take writes, reads are local"),
            200,
        ),
        finding(
            scenario(
                "multi-leader-skew-partitions",
                "mode=multi_leader",
                &[RandomHalves, SkewClock],
                Some("acknowledged writes lost: both sides of a partition take writes and last write wins by skewed clocks when it heals"),
                200,
            ),
            &["lost-writes"],
        ),
        // The control of row 10: the same quorums with right clocks and no
        // partitions keep every acknowledged write and a session's own
        // writes, though reads may still see a write in flight that a
        // later read misses (not linearizable).
        holding(
            scenario(
                "leaderless-w2r2-quiet",
                "mode=leaderless,n=3,w=2,r=2",
                &[],
                Some("not linearizable: a read sees a write in flight that a later read misses; cas is read-modify-write"),
                200,
            ),
            &["read-your-writes", "lost-writes"],
        ),
    ]
}

fn finding(s: Scenario, anomalies: &[&'static str]) -> Scenario {
    Scenario {
        must_find: anomalies.to_vec(),
        ..s
    }
}

/// The scenario called `name`.
pub fn named(name: &str) -> Option<Scenario> {
    all().into_iter().find(|s| s.name == name)
}
