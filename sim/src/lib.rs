//! faultline-sim: a deterministic simulation of faultline-server's
//! replication core ([`faultline_server::core`]), in the manner of
//! TigerBeetle's VOPR and turmoil.
//!
//! Several nodes' cores run in one process on simulated time. A seeded
//! scheduler delivers their messages late, out of order or not at all,
//! cuts the network into halves, kills nodes with and without their
//! unsynced writes, and has clients read, write and compare-and-set
//! registers; the history they record is judged by the project's own
//! linearizability checker. The isolation rows ([`scenario::TxnRow`]) have
//! list-append transactions instead, judged by the transactional checker
//! (faultline-txn) against strict serializability and the row's own model.
//!
//! The leaderless and multi-leader modes' core
//! ([`faultline_server::leaderless::core`]) runs in the same world
//! (`world`, generic over the core it drives through `cores::Driven`),
//! where each node's wall clock, which a fault can set ahead or behind,
//! is what last write wins follows; a scenario there may also name session
//! anomalies it must find (lost writes, read-your-writes), judged by
//! `faultline_checkers::session`.
//!
//! With `shards=K` each node runs one core per shard, and a node layer
//! between the clients and the cores (`world::shards`) routes keys, splits
//! multi-key reads and transactions across shards (`shard_txn=none`) and
//! forwards to a shard's leader as the server's node does: lab row 13
//! (consistent prefix broken across shards) and T7 (fractured reads and
//! write cycles across shards).
//!
//! Promises:
//! - **Replayable.** A run is a function of its [`Scenario`] and seed:
//!   `faultline-sim run --scenario NAME --seed N` replays one exactly
//!   (`--history FILE` writes its history for `faultline check`).
//! - **Not vacuous.** Each unsafe scenario's anomaly must be found within
//!   its `find_within` seeds ([`hunt`]), and a run reports how many faults
//!   took effect and how many operations it judged.
//! - **Bounded.** A run stops at a fixed simulated time and event count;
//!   the checker has a time and memory budget (past it, the verdict is
//!   unknown and says so).

mod agenda;
mod clients;
mod cores;
mod disk;
mod links;
mod nemesis;
mod run;
pub mod scenario;
mod txn_clients;
mod txn_judge;
mod txn_scenarios;
mod workload;
mod world;

pub use run::{history_of, hunt, run_seed, Hunt, RunReport};
pub use scenario::{FaultKind, Scenario};
pub use txn_judge::LOST_APPEND;
