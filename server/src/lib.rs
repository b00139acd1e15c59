//! faultline-server: the project's replicated key-value server, a lab of
//! replication strategies (see `shared/docs/REPLICATION_LAB.md`).
//!
//! Promise: each setting behaves as that strategy behaves in real databases,
//! so its anomalies are the real ones, and the safe setting
//! (`ack=majority,failover=fenced,reads=leader,fsync=always`, one shard) is
//! really safe. Modules, bottom up:
//! - [`protocol`]: frames, requests, replies (ok / fail / unknown);
//! - [`state`]: the deterministic state machine and log entries;
//! - [`wal`]: the write-ahead log, snapshots, group commit, recovery;
//! - [`config`]: the validated settings;
//! - [`transport`]: peer messaging over TCP through configured addresses;
//! - [`group`]: single-leader replication (ack, reads, failover) per shard;
//! - [`leaderless`]: Dynamo-style quorums and multi-leader;
//! - [`limits`]: bytes in flight per connection and per node;
//! - [`conns`]: the open connections, the connection limit, idle ones;
//! - [`node`]: listener, connections, routing;
//! - [`client`]: the async client library.

pub mod client;
pub mod config;
pub mod conns;
pub mod core;
pub mod group;
pub mod leaderless;
pub mod limits;
pub mod node;
pub mod protocol;
pub mod state;
pub mod transport;
pub mod wal;

pub use client::{Client, ClientError};
pub use protocol::{Outcome, Reply, StatusInfo};
