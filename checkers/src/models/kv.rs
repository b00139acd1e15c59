//! One key of Porcupine's key-value store: a string, initially `""`, with
//! `read` (get: returns the whole string), `write` (put: replaces it) and
//! `append` (concatenates the argument to the end).
//!
//! Values are strings; a `null` value stands for the empty string (a key
//! never written reads as `""` or as `null`), and a number stands for its
//! decimal text. Crashed reads and failed operations constrain nothing; a
//! crashed put or append may take effect once after its invocation, or
//! never.
//!
//! States are hash-consed: every distinct string gets a `u32` id, and an
//! append is memoized on (state id, piece id), so the search compares and
//! hashes integers however long the strings grow. The table lives in a
//! `RefCell`: `step` stays a pure function of its arguments (equal inputs,
//! equal ids), the table only remembers what it already computed.

use std::cell::RefCell;
use std::sync::Arc;

use faultline_histories::{History, Op, Outcome, F};
use serde_json::Value;

use crate::linear::table::FxMap;
use crate::model::{Effect, Model, ModelError, Role};

/// An encoded key-value operation; strings are ids of the model's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvOp {
    Get(u32),
    Put(u32),
    Append(u32),
}

/// Every distinct string seen or built, with memoized appends.
#[derive(Debug, Default)]
struct Strings {
    texts: Vec<Arc<str>>,
    ids: FxMap<Arc<str>, u32>,
    appends: FxMap<u64, u32>,
}

impl Strings {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.texts.len() as u32;
        let text: Arc<str> = s.into();
        self.texts.push(text.clone());
        self.ids.insert(text, id);
        id
    }

    fn append(&mut self, state: u32, piece: u32) -> u32 {
        let key = (u64::from(state) << 32) | u64::from(piece);
        if let Some(&id) = self.appends.get(&key) {
            return id;
        }
        let joined = format!("{}{}", self.texts[state as usize], self.texts[piece as usize]);
        let id = self.intern(&joined);
        self.appends.insert(key, id);
        id
    }
}

/// The key-value string model.
#[derive(Debug)]
pub struct Kv {
    strings: RefCell<Strings>,
}

impl Default for Kv {
    fn default() -> Kv {
        let mut strings = Strings::default();
        strings.intern("");
        Kv {
            strings: RefCell::new(strings),
        }
    }
}

fn text<'v>(op: &Op, v: &'v Value) -> Result<std::borrow::Cow<'v, str>, ModelError> {
    match v {
        Value::Null => Ok("".into()),
        Value::String(s) => Ok(s.as_str().into()),
        Value::Number(n) => Ok(n.to_string().into()),
        other => Err(ModelError::bad_value("kv", op, "a string", other)),
    }
}

impl Kv {
    fn id(&self, op: &Op, v: &Value) -> Result<u32, ModelError> {
        Ok(self.strings.borrow_mut().intern(&text(op, v)?))
    }
}

impl Model for Kv {
    type State = u32;
    type Op = KvOp;

    fn name(&self) -> &'static str {
        "kv"
    }

    fn init(&self) -> u32 {
        0
    }

    fn encode(&mut self, _history: &History, op: &Op) -> Result<Role<KvOp>, ModelError> {
        let crashed = op.outcome.is_indeterminate();
        let encoded = match (&op.f, op.outcome) {
            (_, Outcome::Fail) => return Ok(Role::Ignored),
            (F::Read, Outcome::Ok) => KvOp::Get(self.id(op, &op.output)?),
            (F::Read, _) => return Ok(Role::Ignored),
            (F::Write, _) => KvOp::Put(self.id(op, &op.input)?),
            (F::Append, _) => KvOp::Append(self.id(op, &op.input)?),
            _ => return Err(ModelError::unsupported(self.name(), op)),
        };
        Ok(if crashed {
            Role::Crashed(encoded)
        } else {
            Role::Determinate(encoded)
        })
    }

    fn step(&self, state: &u32, op: &KvOp) -> Option<u32> {
        match *op {
            KvOp::Get(v) => (*state == v).then_some(v),
            KvOp::Put(v) => Some(v),
            // The empty string has id 0: appending it changes nothing.
            KvOp::Append(0) => Some(*state),
            KvOp::Append(p) => Some(self.strings.borrow_mut().append(*state, p)),
        }
    }

    fn effect(&self, op: &KvOp) -> Effect {
        match op {
            KvOp::Get(_) => Effect::ReadOnly,
            KvOp::Put(_) => Effect::Overwrite,
            KvOp::Append(_) => Effect::Update,
        }
    }

    fn relax(&self, op: &KvOp) -> Option<KvOp> {
        match op {
            KvOp::Get(_) => None,
            other => Some(*other),
        }
    }

    fn describe_state(&self, state: &u32) -> String {
        let text = self.strings.borrow().texts[*state as usize].to_string();
        Value::String(text).to_string()
    }

    /// A new state is a new string in the table (plus its memo entry).
    fn state_heap_bytes(&self, state: &u32) -> usize {
        self.strings.borrow().texts[*state as usize].len() + 64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_concatenates_and_get_sees_the_whole_string() {
        let kv = Kv::default();
        let (a, b, z, ab) = {
            let mut t = kv.strings.borrow_mut();
            (
                t.intern("x 1 y"),
                t.intern("x 2 y"),
                t.intern("z"),
                t.intern("x 1 yx 2 y"),
            )
        };
        let s = kv.step(&kv.init(), &KvOp::Append(a)).unwrap();
        let s = kv.step(&s, &KvOp::Append(b)).unwrap();
        assert_eq!(s, ab);
        assert_eq!(kv.describe_state(&s), "\"x 1 yx 2 y\"");
        assert!(kv.step(&s, &KvOp::Get(a)).is_none());
        assert_eq!(kv.step(&s, &KvOp::Put(z)), Some(z));
    }
}
