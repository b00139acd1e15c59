//! What the server answers: one [`Reply`] per request, with one of three
//! honest [`Outcome`]s, and for `status` the node's replication state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The three honest answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Applied (writes) or a true value (reads).
    Ok,
    /// Certainly not applied.
    Fail,
    /// May or may not have been applied.
    Unknown,
}

/// Replication state of one shard's group on one node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardStatus {
    /// Shard number.
    pub shard: u32,
    /// leader, follower, candidate, or replica (leaderless / multi-leader).
    pub role: String,
    /// Current epoch (term).
    pub epoch: u64,
    /// Highest LSN known committed.
    pub commit_lsn: u64,
    /// Highest LSN applied to the state machine.
    pub applied_lsn: u64,
    /// Highest LSN in the local log.
    pub last_lsn: u64,
    /// The leader this node believes in, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// Per-peer lag in LSN, as far as this node knows (the leader knows).
    #[serde(default)]
    pub peer_lag: BTreeMap<String, u64>,
}

/// The `status` answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusInfo {
    /// Replication mode (single_leader, leaderless, multi_leader).
    pub mode: String,
    /// Shard 0's state, flattened for convenience.
    #[serde(flatten)]
    pub main: ShardStatus,
    /// Every shard's state.
    pub shards: Vec<ShardStatus>,
    /// The node's wall clock as it reads it (milliseconds since the epoch,
    /// `clock_offset_ms` included): what its last-write-wins stamps use, so
    /// a clock fault can be seen from outside.
    #[serde(default)]
    pub clock_ms: i64,
}

/// A reply to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The request id.
    pub id: u64,
    /// ok, fail or unknown.
    pub result: Outcome,
    /// Value read (null for an absent key); for multi_read an object key -> value.
    #[serde(default)]
    pub value: Value,
    /// Why it failed or is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// LSN of the write, or the applied LSN the read saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn: Option<u64>,
    /// Shard that served a single-key operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<u32>,
    /// The node that answered.
    #[serde(default)]
    pub node: String,
    /// Where the leader is believed to be, on a redirect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_hint: Option<String>,
    /// Status details for `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusInfo>,
}

impl Reply {
    /// A reply with only the outcome set.
    pub fn new(id: u64, result: Outcome) -> Self {
        Reply {
            id,
            result,
            value: Value::Null,
            error: None,
            lsn: None,
            shard: None,
            node: String::new(),
            leader_hint: None,
            status: None,
        }
    }

    /// A certain failure with a reason.
    pub fn fail(id: u64, error: impl Into<String>) -> Self {
        let mut r = Reply::new(id, Outcome::Fail);
        r.error = Some(error.into());
        r
    }

    /// An unknown outcome with a reason.
    pub fn unknown(id: u64, error: impl Into<String>) -> Self {
        let mut r = Reply::new(id, Outcome::Unknown);
        r.error = Some(error.into());
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparse_reply_decodes_with_defaults() {
        let r: Reply = serde_json::from_str(r#"{"id":4,"result":"fail","leader_hint":"n2"}"#).unwrap();
        assert_eq!((r.id, r.result, r.node.as_str()), (4, Outcome::Fail, ""));
        assert_eq!((r.value, r.leader_hint.as_deref()), (Value::Null, Some("n2")));
        assert!(serde_json::from_str::<Reply>(r#"{"id":4,"result":"maybe"}"#).is_err());
    }

    #[test]
    fn status_flattens_shard_zero() {
        let mut info = StatusInfo {
            mode: "single_leader".into(),
            ..StatusInfo::default()
        };
        info.main.role = "leader".into();
        info.main.epoch = 3;
        let v = serde_json::to_value(&info).unwrap();
        assert_eq!((v["role"].as_str(), v["epoch"].as_u64()), (Some("leader"), Some(3)));
        assert_eq!(serde_json::from_value::<StatusInfo>(v).unwrap(), info);
    }
}
