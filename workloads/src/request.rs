//! One operation: what the generator asks for, and how it reads in the
//! history.
//!
//! The mapping to events follows HISTORY_FORMAT.md: a read's invoke value is
//! null and its ok value the value read; a write's is the value written; a
//! cas's is `[expected, new]`; an append's the element; a multi-key read is
//! a `txn` of `["r", key, null]` micro-ops whose ok value fills in each read;
//! a transaction is a `txn` of its micro-ops (`["append", k, v]`,
//! `["r", k, null]`, `["w", k, v]`) whose ok value fills in each read.

use faultline_histories::{Key, F};
use serde_json::{json, Value};

/// An operation a client sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Read one key.
    Read { key: String },
    /// Overwrite one key with a unique value.
    Write { key: String, value: i64 },
    /// Set `key` to `new` if it holds `expected` (`None`: absent).
    Cas {
        key: String,
        expected: Option<i64>,
        new: i64,
    },
    /// Append a unique element to the list at `key`.
    Append { key: String, value: i64 },
    /// Read several keys as one snapshot.
    MultiRead { keys: Vec<String> },
    /// A transaction of list-append and rw-register micro-operations.
    Txn { ops: Vec<TxnOp> },
}

/// One micro-operation of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOp {
    /// Append a unique element to the list at `key`.
    Append { key: String, value: i64 },
    /// Read `key`: a list (list-append), a value (rw-register) or null.
    Read { key: String },
    /// Overwrite the register at `key` with a unique value.
    Write { key: String, value: i64 },
}

impl TxnOp {
    /// The key it touches.
    pub fn key(&self) -> &str {
        match self {
            TxnOp::Append { key, .. } | TxnOp::Read { key } | TxnOp::Write { key, .. } => key,
        }
    }

    /// Whether it changes state.
    pub fn is_write(&self) -> bool {
        !matches!(self, TxnOp::Read { .. })
    }

    /// Its history form with `read` as a read's value (ignored for writes).
    pub fn to_value(&self, read: Value) -> Value {
        match self {
            TxnOp::Append { key, value } => json!(["append", key, value]),
            TxnOp::Read { key } => json!(["r", key, read]),
            TxnOp::Write { key, value } => json!(["w", key, value]),
        }
    }
}

impl Request {
    /// The history's `f`.
    pub fn f(&self) -> F {
        match self {
            Request::Read { .. } => F::Read,
            Request::Write { .. } => F::Write,
            Request::Cas { .. } => F::Cas,
            Request::Append { .. } => F::Append,
            Request::MultiRead { .. } | Request::Txn { .. } => F::Txn,
        }
    }

    /// The history's `key` (none for a multi-key read).
    pub fn key(&self) -> Option<Key> {
        match self {
            Request::Read { key }
            | Request::Write { key, .. }
            | Request::Cas { key, .. }
            | Request::Append { key, .. } => Some(Key::Str(key.clone())),
            Request::MultiRead { .. } | Request::Txn { .. } => None,
        }
    }

    /// The keys the operation touches, each once, in first-touch order.
    pub fn keys(&self) -> Vec<&str> {
        match self {
            Request::Read { key }
            | Request::Write { key, .. }
            | Request::Cas { key, .. }
            | Request::Append { key, .. } => vec![key.as_str()],
            Request::MultiRead { keys } => keys.iter().map(String::as_str).collect(),
            Request::Txn { ops } => {
                let mut keys: Vec<&str> = Vec::with_capacity(ops.len());
                for k in ops.iter().map(TxnOp::key) {
                    if !keys.contains(&k) {
                        keys.push(k);
                    }
                }
                keys
            }
        }
    }

    /// Whether it may change state.
    pub fn is_write(&self) -> bool {
        match self {
            Request::Write { .. } | Request::Cas { .. } | Request::Append { .. } => true,
            Request::Txn { ops } => ops.iter().any(TxnOp::is_write),
            Request::Read { .. } | Request::MultiRead { .. } => false,
        }
    }

    /// The invoke event's value.
    pub fn invoke_value(&self) -> Value {
        match self {
            Request::Read { .. } => Value::Null,
            Request::Write { value, .. } | Request::Append { value, .. } => json!(value),
            Request::Cas { expected, new, .. } => json!([expected, new]),
            Request::MultiRead { keys } => Value::Array(keys.iter().map(|k| json!(["r", k, null])).collect()),
            Request::Txn { ops } => Value::Array(ops.iter().map(|op| op.to_value(Value::Null)).collect()),
        }
    }

    /// The ok event's value, given what the server returned (the value read,
    /// for a multi-key read an object from key to value, for a transaction
    /// its micro-ops in the order sent with each read filled in: the value
    /// read is taken by position, as `["r", k, value]`).
    pub fn ok_value(&self, returned: &Value) -> Value {
        match self {
            Request::Read { .. } => returned.clone(),
            Request::MultiRead { keys } => Value::Array(
                keys.iter()
                    .map(|k| json!(["r", k, returned.get(k).cloned().unwrap_or(Value::Null)]))
                    .collect(),
            ),
            Request::Txn { ops } => Value::Array(
                ops.iter()
                    .enumerate()
                    .map(|(i, op)| op.to_value(returned.get(i).and_then(|m| m.get(2)).cloned().unwrap_or(Value::Null)))
                    .collect(),
            ),
            _ => self.invoke_value(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_follow_the_history_format() {
        let cas = Request::Cas {
            key: "k".into(),
            expected: None,
            new: 3,
        };
        assert_eq!(cas.f(), F::Cas);
        assert_eq!(cas.invoke_value(), json!([null, 3]));
        assert_eq!(cas.ok_value(&Value::Null), json!([null, 3]));
        let r = Request::Read { key: "k".into() };
        assert_eq!(r.invoke_value(), Value::Null);
        assert_eq!(r.ok_value(&json!(7)), json!(7));
        let m = Request::MultiRead {
            keys: vec!["a".into(), "b".into()],
        };
        assert_eq!(m.f(), F::Txn);
        assert_eq!(m.key(), None);
        assert_eq!(m.invoke_value(), json!([["r", "a", null], ["r", "b", null]]));
        assert_eq!(m.ok_value(&json!({"a": 1})), json!([["r", "a", 1], ["r", "b", null]]));
    }

    #[test]
    fn a_transaction_fills_in_its_reads_by_position() {
        let t = Request::Txn {
            ops: vec![
                TxnOp::Append {
                    key: "x".into(),
                    value: 1,
                },
                TxnOp::Read { key: "x".into() },
                TxnOp::Write {
                    key: "y".into(),
                    value: 2,
                },
            ],
        };
        assert_eq!((t.f(), t.key(), t.is_write()), (F::Txn, None, true));
        assert_eq!(t.keys(), vec!["x", "y"]);
        assert_eq!(
            t.invoke_value(),
            json!([["append", "x", 1], ["r", "x", null], ["w", "y", 2]])
        );
        let returned = json!([["append", "x", 1], ["r", "x", [0, 1]], ["w", "y", 2]]);
        assert_eq!(t.ok_value(&returned), returned);
        let read_only = Request::Txn {
            ops: vec![TxnOp::Read { key: "x".into() }],
        };
        assert!(!read_only.is_write());
    }
}
