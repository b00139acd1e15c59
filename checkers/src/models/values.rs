//! Interning JSON values into dense `u32` ids, so that model states are
//! integers that compare and hash in one instruction.
//!
//! Two values get the same id exactly when they are equal JSON values
//! (`serde_json::Value`'s equality: `1` and `1.0` differ, object key order
//! does not matter).

use crate::linear::table::FxMap;

use serde_json::Value;

/// The canonical form a value is interned under.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Canon {
    Null,
    Bool(bool),
    Int(i64),
    Str(Box<str>),
    /// Anything else, by its JSON text (objects serialize with sorted keys).
    Json(Box<str>),
}

fn canon(v: &Value) -> Canon {
    match v {
        Value::Null => Canon::Null,
        Value::Bool(b) => Canon::Bool(*b),
        Value::Number(n) if n.is_i64() => Canon::Int(n.as_i64().unwrap_or_default()),
        Value::String(s) => Canon::Str(s.as_str().into()),
        other => Canon::Json(other.to_string().into()),
    }
}

/// A table of distinct values; ids count up from 0 in order of first sight.
#[derive(Clone, Debug, Default)]
pub struct ValueInterner {
    ids: FxMap<Canon, u32>,
    values: Vec<Value>,
}

impl ValueInterner {
    /// The id of `v`, allocating one on first sight.
    pub fn intern(&mut self, v: &Value) -> u32 {
        let key = canon(v);
        if let Some(&id) = self.ids.get(&key) {
            return id;
        }
        let id = self.values.len() as u32;
        self.values.push(v.clone());
        self.ids.insert(key, id);
        id
    }

    /// The value an id names.
    pub fn value(&self, id: u32) -> &Value {
        &self.values[id as usize]
    }

    /// How many distinct values were seen.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True before any value was interned.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_values_share_an_id() {
        let mut t = ValueInterner::default();
        let a = t.intern(&json!({"a": 1, "b": [1, 2]}));
        let b = t.intern(&json!({"b": [1, 2], "a": 1}));
        assert_eq!(a, b);
        assert_ne!(t.intern(&json!(1)), t.intern(&json!("1")));
        assert_ne!(t.intern(&json!(null)), t.intern(&json!(false)));
        assert_eq!(t.value(a), &json!({"a": 1, "b": [1, 2]}));
    }
}
