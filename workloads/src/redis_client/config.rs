//! How a [`RedisClient`](super::RedisClient) reaches the nodes and where
//! it sends its reads, checked before any connection opens.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::error::WorkloadError;

/// Where a [`RedisClient`] sends its reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RedisReads {
    /// The believed primary.
    Primary,
    /// A replica drawn for each read (not the believed primary), as a
    /// client library that balances reads over replicas does.
    Replica,
    /// The home node, always (a session sticks to one replica).
    Home,
}

impl RedisReads {
    /// Parses `primary`, `replica` or `home`.
    pub fn parse(s: &str) -> Result<RedisReads, WorkloadError> {
        match s {
            "primary" => Ok(RedisReads::Primary),
            "replica" => Ok(RedisReads::Replica),
            "home" | "sticky" => Ok(RedisReads::Home),
            o => Err(WorkloadError::BadConfig(format!(
                "redis reads {o:?}: expected primary, replica or home"
            ))),
        }
    }
}

/// How a [`RedisClient`] reaches the nodes.
#[derive(Clone, Debug)]
pub struct RedisClientConfig {
    /// Each node's address (or a proxy in front of it).
    pub routes: BTreeMap<String, SocketAddr>,
    /// The node that is the primary when the client starts.
    pub primary: String,
    /// The node replica reads go to.
    pub home: String,
    /// Where reads go.
    pub reads: RedisReads,
    /// `(numreplicas, timeout_ms)`: send `WAIT` after every applied write.
    pub wait_replicas: Option<(u32, u64)>,
    /// Seeds the replica draws of [`RedisReads::Replica`].
    pub seed: u64,
    /// How long one command may take before it is info (or, for a read, fail).
    pub timeout_ms: u64,
    /// How long opening a connection and its probe may take before the
    /// operation fails; also bounds each `ROLE` query.
    pub connect_timeout_ms: u64,
}

impl RedisClientConfig {
    /// Reads from the primary, no WAIT, a 2 s command timeout and a 1 s
    /// connect timeout.
    pub fn new(routes: BTreeMap<String, SocketAddr>, primary: impl Into<String>, home: impl Into<String>) -> Self {
        RedisClientConfig {
            routes,
            primary: primary.into(),
            home: home.into(),
            reads: RedisReads::Primary,
            wait_replicas: None,
            seed: 0,
            timeout_ms: 2_000,
            connect_timeout_ms: 1_000,
        }
    }

    pub(super) fn validate(&self) -> Result<(), WorkloadError> {
        for (what, node) in [("primary", &self.primary), ("home", &self.home)] {
            if !self.routes.contains_key(node) {
                return Err(WorkloadError::BadConfig(format!(
                    "redis {what} node {node:?} has no route"
                )));
            }
        }
        if self.timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return Err(WorkloadError::BadConfig(
                "redis client timeouts must be positive".into(),
            ));
        }
        if matches!(self.wait_replicas, Some((_, 0))) {
            // Redis reads `WAIT n 0` as "block until n replicas ack".
            return Err(WorkloadError::BadConfig("a WAIT timeout must be positive".into()));
        }
        Ok(())
    }
}
