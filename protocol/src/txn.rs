//! A transaction on the wire: a list of micro-operations, each a JSON array
//! in the history format's shape (`["append", k, v]`, `["r", k, null]`,
//! `["w", k, v]`), so a client can put what it sent and what came back into
//! the history without translating it.
//!
//! The request carries the micro-ops with reads as null; an `ok` reply's
//! value is the same list with each read filled in (a list for list-append
//! keys, the register's value for rw-register keys, null for an absent
//! key), in the order sent.

use serde_json::{json, Value};

use crate::error::ProtocolError;
use crate::request::check_key;

/// Most micro-operations in one transaction.
pub const MAX_TXN_OPS: usize = 256;

/// One micro-operation of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum MicroOp {
    /// Append `value` to the list at `key`.
    Append { key: String, value: Value },
    /// Read `key` (a list, a register value, or null when absent).
    Read { key: String },
    /// Overwrite the register at `key`.
    Write { key: String, value: Value },
}

impl MicroOp {
    /// The key it touches.
    pub fn key(&self) -> &str {
        match self {
            MicroOp::Append { key, .. } | MicroOp::Read { key } | MicroOp::Write { key, .. } => key,
        }
    }

    /// Whether it changes state.
    pub fn is_write(&self) -> bool {
        !matches!(self, MicroOp::Read { .. })
    }

    /// Its wire form, reads as `["r", k, null]`.
    pub fn to_value(&self) -> Value {
        match self {
            MicroOp::Append { key, value } => json!(["append", key, value]),
            MicroOp::Read { key } => json!(["r", key, null]),
            MicroOp::Write { key, value } => json!(["w", key, value]),
        }
    }

    /// Its wire form with a read's result filled in (`read` is ignored for
    /// writes): what an ok reply carries.
    pub fn completed(&self, read: Value) -> Value {
        match self {
            MicroOp::Read { key } => json!(["r", key, read]),
            other => other.to_value(),
        }
    }

    /// Parses one micro-op; `index` names it in the error.
    pub fn from_value(index: usize, v: &Value) -> Result<MicroOp, ProtocolError> {
        let bad = |why: &str| ProtocolError::Malformed(format!("txn micro-op {index}: {why}"));
        let parts = v.as_array().ok_or_else(|| bad("not an array"))?;
        if parts.len() != 3 {
            return Err(bad("needs 3 elements [f, key, value]"));
        }
        let key = parts[1].as_str().ok_or_else(|| bad("key is not a string"))?.to_owned();
        check_key(&key)?;
        let value = parts[2].clone();
        match parts[0].as_str() {
            Some("append") => Ok(MicroOp::Append { key, value }),
            Some("w") => Ok(MicroOp::Write { key, value }),
            Some("r") if value.is_null() => Ok(MicroOp::Read { key }),
            Some("r") => Err(bad("a read's value must be null")),
            _ => Err(bad("f is not one of append, r, w")),
        }
    }
}

/// Parses and bounds a transaction's micro-ops.
pub fn parse_txn(ops: &[Value]) -> Result<Vec<MicroOp>, ProtocolError> {
    if ops.is_empty() {
        return Err(ProtocolError::Malformed("txn has no micro-ops".into()));
    }
    if ops.len() > MAX_TXN_OPS {
        return Err(ProtocolError::Limit(format!(
            "txn of {} micro-ops exceeds {MAX_TXN_OPS}",
            ops.len()
        )));
    }
    ops.iter().enumerate().map(|(i, v)| MicroOp::from_value(i, v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_ops_round_trip_and_reads_fill_in() {
        let ops = vec![json!(["append", "x", 1]), json!(["r", "x", null]), json!(["w", "y", 2])];
        let parsed = parse_txn(&ops).unwrap();
        assert_eq!(parsed.iter().map(MicroOp::to_value).collect::<Vec<_>>(), ops);
        assert_eq!(parsed[1].completed(json!([1])), json!(["r", "x", [1]]));
        assert_eq!(parsed[0].completed(json!([9])), json!(["append", "x", 1]));
        assert!(parsed[0].is_write() && !parsed[1].is_write());
    }

    #[test]
    fn bad_micro_ops_name_their_index() {
        let err = parse_txn(&[json!(["r", "x", null]), json!(["cas", "x", 1])]).unwrap_err();
        assert!(err.to_string().contains("micro-op 1"), "{err}");
        assert!(parse_txn(&[json!(["r", "x", 3])]).is_err());
        assert!(parse_txn(&[json!(["r", 5, null])]).is_err());
        assert!(parse_txn(&[]).is_err());
        let many = vec![json!(["r", "x", null]); MAX_TXN_OPS + 1];
        assert!(matches!(parse_txn(&many), Err(ProtocolError::Limit(_))));
    }
}
