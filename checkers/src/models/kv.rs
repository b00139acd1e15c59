//! One key of Porcupine's key-value store: a string, initially `""`, with
//! `read` (get: returns the whole string), `write` (put: replaces it) and
//! `append` (concatenates the argument to the end).
//!
//! Values are strings; a `null` value stands for the empty string (a key
//! never written reads as `""` or as `null`), and a number stands for its
//! decimal text. Crashed reads and failed operations constrain nothing; a
//! crashed put or append may take effect once after its invocation, or
//! never. States are shared strings, so cloning one is a reference-count
//! increment; the search interns them, so it hashes each only once.

use std::sync::Arc;

use faultline_histories::{History, Op, Outcome, F};
use serde_json::Value;

use crate::model::{Effect, Model, ModelError, Role};

/// An encoded key-value operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOp {
    Get(Arc<str>),
    Put(Arc<str>),
    Append(Arc<str>),
}

/// The key-value string model.
#[derive(Clone, Debug, Default)]
pub struct Kv;

fn text(op: &Op, v: &Value) -> Result<Arc<str>, ModelError> {
    match v {
        Value::Null => Ok("".into()),
        Value::String(s) => Ok(s.as_str().into()),
        Value::Number(n) => Ok(n.to_string().into()),
        other => Err(ModelError::bad_value("kv", op, "a string", other)),
    }
}

impl Model for Kv {
    type State = Arc<str>;
    type Op = KvOp;

    fn name(&self) -> &'static str {
        "kv"
    }

    fn init(&self) -> Arc<str> {
        "".into()
    }

    fn encode(&mut self, _history: &History, op: &Op) -> Result<Role<KvOp>, ModelError> {
        let crashed = op.outcome.is_indeterminate();
        let encoded = match (&op.f, op.outcome) {
            (_, Outcome::Fail) => return Ok(Role::Ignored),
            (F::Read, Outcome::Ok) => KvOp::Get(text(op, &op.output)?),
            (F::Read, _) => return Ok(Role::Ignored),
            (F::Write, _) => KvOp::Put(text(op, &op.input)?),
            (F::Append, _) => KvOp::Append(text(op, &op.input)?),
            _ => return Err(ModelError::unsupported(self.name(), op)),
        };
        Ok(if crashed {
            Role::Crashed(encoded)
        } else {
            Role::Determinate(encoded)
        })
    }

    fn step(&self, state: &Arc<str>, op: &KvOp) -> Option<Arc<str>> {
        match op {
            KvOp::Get(v) => (state == v).then(|| state.clone()),
            KvOp::Put(v) => Some(v.clone()),
            KvOp::Append(v) if v.is_empty() => Some(state.clone()),
            KvOp::Append(v) => Some(format!("{state}{v}").into()),
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
            other => Some(other.clone()),
        }
    }

    fn describe_state(&self, state: &Arc<str>) -> String {
        Value::String(state.to_string()).to_string()
    }

    fn state_heap_bytes(&self, state: &Arc<str>) -> usize {
        state.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_concatenates_and_get_sees_the_whole_string() {
        let kv = Kv;
        let s = kv.step(&kv.init(), &KvOp::Append("x 1 y".into())).unwrap();
        let s = kv.step(&s, &KvOp::Append("x 2 y".into())).unwrap();
        assert_eq!(&*s, "x 1 yx 2 y");
        assert!(kv.step(&s, &KvOp::Get("x 1 y".into())).is_none());
        assert_eq!(kv.step(&s, &KvOp::Put("z".into())).as_deref(), Some("z"));
    }
}
