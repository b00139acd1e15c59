//! One operation: what the generator asks for, and how it reads in the
//! history.
//!
//! The mapping to events follows HISTORY_FORMAT.md: a read's invoke value is
//! null and its ok value the value read; a write's is the value written; a
//! cas's is `[expected, new]`; an append's the element; a multi-key read is
//! a `txn` of `["r", key, null]` micro-ops whose ok value fills in each read.

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
}

impl Request {
    /// The history's `f`.
    pub fn f(&self) -> F {
        match self {
            Request::Read { .. } => F::Read,
            Request::Write { .. } => F::Write,
            Request::Cas { .. } => F::Cas,
            Request::Append { .. } => F::Append,
            Request::MultiRead { .. } => F::Txn,
        }
    }

    /// The history's `key` (none for a multi-key read).
    pub fn key(&self) -> Option<Key> {
        match self {
            Request::Read { key }
            | Request::Write { key, .. }
            | Request::Cas { key, .. }
            | Request::Append { key, .. } => Some(Key::Str(key.clone())),
            Request::MultiRead { .. } => None,
        }
    }

    /// The keys the operation touches.
    pub fn keys(&self) -> Vec<&str> {
        match self {
            Request::Read { key }
            | Request::Write { key, .. }
            | Request::Cas { key, .. }
            | Request::Append { key, .. } => vec![key.as_str()],
            Request::MultiRead { keys } => keys.iter().map(String::as_str).collect(),
        }
    }

    /// Whether it may change state.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Request::Write { .. } | Request::Cas { .. } | Request::Append { .. }
        )
    }

    /// The invoke event's value.
    pub fn invoke_value(&self) -> Value {
        match self {
            Request::Read { .. } => Value::Null,
            Request::Write { value, .. } | Request::Append { value, .. } => json!(value),
            Request::Cas { expected, new, .. } => json!([expected, new]),
            Request::MultiRead { keys } => Value::Array(keys.iter().map(|k| json!(["r", k, null])).collect()),
        }
    }

    /// The ok event's value, given what the server returned (the value read,
    /// or for a multi-key read an object from key to value).
    pub fn ok_value(&self, returned: &Value) -> Value {
        match self {
            Request::Read { .. } => returned.clone(),
            Request::MultiRead { keys } => Value::Array(
                keys.iter()
                    .map(|k| json!(["r", k, returned.get(k).cloned().unwrap_or(Value::Null)]))
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
}
