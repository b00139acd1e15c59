//! faultline's workloads: what the clients of a test do, and how they talk
//! to the system under test.
//!
//! - [`request`]: one operation as the generator makes it and the history
//!   records it (`f`, `key`, `value` as HISTORY_FORMAT.md says).
//! - [`generator`]: seeded generators for the `register`, `list-append`,
//!   `session` and `multi-key` workloads. A worker's sequence of operations
//!   is a pure function of (workload config, seed, worker number), and every
//!   value written to a key is unique, so a read names the write it saw.
//! - [`txn_gen`]: seeded generators for the transactional workloads,
//!   `txn-list-append` and `txn-rw-register` (Elle's), with their knobs.
//! - [`client`]: the `Client` boundary (send one operation, say honestly
//!   whether it is ok, fail or info) and [`server_client`], its
//!   implementation for faultline-server's framed-JSON protocol.
//! - [`etcd_client`]: a `Client` for etcd through its gRPC API (the
//!   `etcd-client` crate): range, put, txn compares for cas and append, one
//!   txn of ranges for a snapshot.
//! - [`redis_client`]: a `Client` for a Redis primary and its replicas
//!   (the `redis` crate's multiplexed connection): values as JSON text,
//!   Lua scripts for cas and append, optional `WAIT`, and rediscovery of
//!   the primary with `ROLE` after a failover.
//! - [`postgres_client`]: a `Client` for a PostgreSQL primary and its
//!   streaming standbys (tokio-postgres): a table per workload kind,
//!   transactions at a chosen isolation level, writes following the
//!   failover manager's primary pointer.
//!
//! Depends on `faultline-histories` and tokio; the checkers that judge each
//! workload are chosen by the harness.

pub mod client;
pub mod error;
pub mod etcd_client;
pub mod generator;
pub mod postgres_client;
pub mod redis_client;
pub mod request;
pub mod server_client;
pub mod txn_gen;

pub use client::{Client, Completion, Outcome};
pub use error::WorkloadError;
pub use etcd_client::{EtcdClient, EtcdClientConfig};
pub use generator::{Generator, KeyDist, Mix, WorkloadConfig, WorkloadKind};
pub use postgres_client::{PgClient, PgClientConfig, PgIsolation, PgReads};
pub use redis_client::{RedisClient, RedisClientConfig, RedisReads};
pub use request::{Request, TxnOp};
pub use server_client::{ReadRouting, ServerClient, ServerClientConfig};
pub use txn_gen::{TxnConfig, TxnKnob};
