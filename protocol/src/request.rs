//! What a client asks: the request as the wire carries it ([`RawRequest`]),
//! the validated request the server acts on ([`Request`]), and the session
//! guarantees a client sends along ([`Session`]).
//!
//! [`validate`] and [`Request::to_raw`] are inverses: a client builds a
//! typed request and sends its raw form; the server checks the raw form
//! back into the typed one.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ProtocolError;
use crate::txn::{parse_txn, MicroOp};

/// Largest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Most keys in one multi-key read.
pub const MAX_MULTI_READ_KEYS: usize = 256;

/// Session guarantees the client asks for (used by `reads=lsn`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// The last LSN this session saw (single shard or shard 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_lsn: Option<u64>,
    /// The last LSN seen per shard, indexed by shard number.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shard_lsns: Vec<u64>,
}

impl Session {
    /// The LSN a replica of `shard` must have applied before answering.
    pub fn min_lsn_for(&self, shard: usize) -> u64 {
        let per_shard = self.shard_lsns.get(shard).copied().unwrap_or(0);
        let global = if shard == 0 { self.min_lsn.unwrap_or(0) } else { 0 };
        per_shard.max(global)
    }
}

/// What the wire carries, before validation.
///
/// The fields are in alphabetical order on purpose: serde writes them in
/// declaration order, and earlier clients sent a sorted JSON map, so a
/// request encodes to the same bytes it always did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RawRequest {
    /// Expected value for cas (null means absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<Value>,
    /// Client-chosen id echoed in the reply.
    pub id: u64,
    /// Key for single-key operations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Keys for multi_read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<String>>,
    /// New value for cas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
    /// Operation name.
    pub op: String,
    /// Session guarantees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Session>,
    /// Micro-operations of a txn, in the history format's shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn: Option<Vec<Value>>,
    /// Value for write and append.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

/// A validated client operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Read one key (absent reads as null).
    Read { key: String },
    /// Overwrite one key.
    Write { key: String, value: Value },
    /// Set `key` to `new` if its current value equals `expected` (null = absent).
    Cas { key: String, expected: Value, new: Value },
    /// Append `value` to the JSON list at `key` (absent = empty list).
    Append { key: String, value: Value },
    /// Read several keys at once.
    MultiRead { keys: Vec<String> },
    /// A transaction of list-append and rw-register micro-operations,
    /// executed at the isolation level the server is configured with.
    Txn { ops: Vec<MicroOp> },
    /// Report the node's replication state.
    Status,
}

impl Op {
    /// Whether the operation changes state.
    pub fn is_write(&self) -> bool {
        match self {
            Op::Write { .. } | Op::Cas { .. } | Op::Append { .. } => true,
            Op::Txn { ops } => ops.iter().any(MicroOp::is_write),
            Op::Read { .. } | Op::MultiRead { .. } | Op::Status => false,
        }
    }

    /// The operation's name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Read { .. } => "read",
            Op::Write { .. } => "write",
            Op::Cas { .. } => "cas",
            Op::Append { .. } => "append",
            Op::MultiRead { .. } => "multi_read",
            Op::Txn { .. } => "txn",
            Op::Status => "status",
        }
    }
}

/// A validated request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Client-chosen id echoed in the reply.
    pub id: u64,
    /// The operation.
    pub op: Op,
    /// Session guarantees.
    pub session: Session,
}

impl Request {
    /// The request as the wire carries it. A default session is left out
    /// (the server reads a missing one as default); a cas always names its
    /// `expected`, null for absent.
    pub fn to_raw(&self) -> RawRequest {
        let mut raw = RawRequest {
            id: self.id,
            op: self.op.name().to_owned(),
            session: (self.session != Session::default()).then(|| self.session.clone()),
            ..RawRequest::default()
        };
        match &self.op {
            Op::Read { key } => raw.key = Some(key.clone()),
            Op::Write { key, value } | Op::Append { key, value } => {
                raw.key = Some(key.clone());
                raw.value = Some(value.clone());
            }
            Op::Cas { key, expected, new } => {
                raw.key = Some(key.clone());
                raw.expected = Some(expected.clone());
                raw.new = Some(new.clone());
            }
            Op::MultiRead { keys } => raw.keys = Some(keys.clone()),
            Op::Txn { ops } => raw.txn = Some(ops.iter().map(MicroOp::to_value).collect()),
            Op::Status => {}
        }
        raw
    }
}

/// Decodes and validates one frame body.
pub fn decode_request(body: &[u8]) -> Result<Request, ProtocolError> {
    let raw: RawRequest = serde_json::from_slice(body).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    validate(raw)
}

/// Turns a raw request into a checked one.
pub fn validate(raw: RawRequest) -> Result<Request, ProtocolError> {
    let op = match raw.op.as_str() {
        "read" => Op::Read {
            key: need_key("read", raw.key)?,
        },
        "write" => Op::Write {
            key: need_key("write", raw.key)?,
            value: need("write", "value", raw.value)?,
        },
        "cas" => Op::Cas {
            key: need_key("cas", raw.key)?,
            expected: raw.expected.unwrap_or(Value::Null),
            new: need("cas", "new", raw.new)?,
        },
        "append" => Op::Append {
            key: need_key("append", raw.key)?,
            value: need("append", "value", raw.value)?,
        },
        "multi_read" => Op::MultiRead {
            keys: check_keys(need("multi_read", "keys", raw.keys)?)?,
        },
        "txn" => Op::Txn {
            ops: parse_txn(&need("txn", "txn", raw.txn)?)?,
        },
        "status" => Op::Status,
        other => return Err(ProtocolError::UnknownOp(truncate(other, 64))),
    };
    Ok(Request {
        id: raw.id,
        op,
        session: raw.session.unwrap_or_default(),
    })
}

fn need<T>(op: &'static str, field: &'static str, v: Option<T>) -> Result<T, ProtocolError> {
    v.ok_or(ProtocolError::MissingField { op, field })
}

fn need_key(op: &'static str, key: Option<String>) -> Result<String, ProtocolError> {
    let key = need(op, "key", key)?;
    check_key(&key)?;
    Ok(key)
}

pub(crate) fn check_key(key: &str) -> Result<(), ProtocolError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(ProtocolError::Limit(format!(
            "key of {} bytes exceeds {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    Ok(())
}

fn check_keys(keys: Vec<String>) -> Result<Vec<String>, ProtocolError> {
    if keys.len() > MAX_MULTI_READ_KEYS {
        return Err(ProtocolError::Limit(format!(
            "{} keys exceed {MAX_MULTI_READ_KEYS}",
            keys.len()
        )));
    }
    for k in &keys {
        check_key(k)?;
    }
    Ok(keys)
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests;
