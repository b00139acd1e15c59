//! Interning JSON values into dense `u32` ids, so that model states are
//! integers that compare and hash in one instruction.
//!
//! Two values get the same id exactly when they are equal JSON values
//! (`serde_json::Value`'s equality: `1` and `1.0` differ, object key order
//! does not matter), with EDN's unordered collections as the importer
//! writes them compared whatever their order: `{"$set": [...]}` as a set
//! and `{"$map": [[k, v], ...]}` as a map.

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
        other => Canon::Json(normal(other).to_string().into()),
    }
}

/// `v` with the elements of every `$set` and the entries of every `$map`
/// sorted by their own normal text (and a set's repeats dropped), so two
/// spellings of one set or map print alike. The importer already sorts
/// them; this keeps interning right for any other writer. Recursion is
/// bounded by the value's depth, which the readers bound.
fn normal(v: &Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.iter().map(normal).collect()),
        Value::Object(m) if m.len() == 1 => match m.iter().next() {
            Some((tag, Value::Array(items))) if tag == "$set" || tag == "$map" => {
                let mut texts: Vec<(String, Value)> = items
                    .iter()
                    .map(|i| {
                        let n = normal(i);
                        (n.to_string(), n)
                    })
                    .collect();
                texts.sort_by(|a, b| a.0.cmp(&b.0));
                if tag == "$set" {
                    texts.dedup_by(|a, b| a.0 == b.0);
                }
                let sorted = texts.into_iter().map(|(_, n)| n).collect();
                Value::Object([(tag.clone(), Value::Array(sorted))].into_iter().collect())
            }
            _ => Value::Object(m.iter().map(|(k, x)| (k.clone(), normal(x))).collect()),
        },
        Value::Object(m) => Value::Object(m.iter().map(|(k, x)| (k.clone(), normal(x))).collect()),
        other => other.clone(),
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

    #[test]
    fn edn_sets_and_maps_are_equal_whatever_their_order() {
        let mut t = ValueInterner::default();
        let a = t.intern(&json!({"$set": [1, 2, {"$set": [3, 4]}]}));
        let b = t.intern(&json!({"$set": [{"$set": [4, 3]}, 2, 1, 2]}));
        assert_eq!(a, b);
        let m = t.intern(&json!([{"$map": [[1, "a"], [{"$keyword": "k"}, 2]]}]));
        let n = t.intern(&json!([{"$map": [[{"$keyword": "k"}, 2], [1, "a"]]}]));
        assert_eq!(m, n);
        assert_ne!(t.intern(&json!({"$set": [1, 2]})), t.intern(&json!([1, 2])));
        assert_ne!(t.intern(&json!({"$keyword": "a"})), t.intern(&json!("a")));
        assert_ne!(
            t.intern(&json!({"$int": "18446744073709551616"})),
            t.intern(&json!({"$int": "18446744073709551617"}))
        );
    }
}
