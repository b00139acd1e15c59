//! Knossos's `set`: `add` puts its value in, `read` returns the whole set.
//!
//! A read's value is `{"$set": [...]}` (a Jepsen `#{...}` as the EDN
//! importer writes it) or a plain JSON array (faultline's JSONL), compared
//! as a set: order and repeats do not matter. Elements are compared as JSON
//! values, so `1`, `"1"` and `{"$keyword": "1"}` are three elements.
//!
//! An ok add took effect; a failed one did not; a crashed one may have,
//! once, after its invocation. Failed and crashed reads constrain nothing,
//! and so does nothing else: a read that returned `null` is not a set and
//! the model says so (Knossos would call such a history invalid; an error
//! makes the verdict unknown instead of guessing).

use std::sync::Arc;

use faultline_histories::{History, Op, Outcome};
use serde_json::Value;

use super::{set_elements, sorted_unique, update_role, ValueInterner};
use crate::model::{Effect, Model, ModelError, Role};

/// An encoded set operation; elements are interned ids, a read's sorted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetOp {
    Add(u32),
    Read(Arc<[u32]>),
}

/// The set model; a state is its elements' ids, sorted.
#[derive(Clone, Debug, Default)]
pub struct Set {
    elements: ValueInterner,
}

impl Set {
    fn read_value(&mut self, op: &Op) -> Result<Arc<[u32]>, ModelError> {
        let Some(items) = set_elements(&op.output) else {
            return Err(ModelError::bad_value(
                "set",
                op,
                "a set ({\"$set\": [...]} or an array)",
                &op.output,
            ));
        };
        Ok(sorted_unique(items.iter().map(|v| self.elements.intern(v)).collect()))
    }
}

impl Model for Set {
    type State = Arc<[u32]>;
    type Op = SetOp;

    fn name(&self) -> &'static str {
        "set"
    }

    fn init(&self) -> Arc<[u32]> {
        Arc::from(Vec::new())
    }

    fn encode(&mut self, _history: &History, op: &Op) -> Result<Role<SetOp>, ModelError> {
        match (op.f.as_str(), op.outcome) {
            ("add", _) => Ok(update_role(op, SetOp::Add(self.elements.intern(&op.input)))),
            ("read", Outcome::Ok) => Ok(Role::Determinate(SetOp::Read(self.read_value(op)?))),
            ("read", _) => Ok(Role::Ignored),
            _ => Err(ModelError::unsupported(self.name(), op)),
        }
    }

    fn step(&self, state: &Arc<[u32]>, op: &SetOp) -> Option<Arc<[u32]>> {
        match op {
            SetOp::Read(seen) => (state == seen).then(|| state.clone()),
            SetOp::Add(e) => match state.binary_search(e) {
                Ok(_) => Some(state.clone()),
                Err(at) => {
                    let mut next = Vec::with_capacity(state.len() + 1);
                    next.extend_from_slice(&state[..at]);
                    next.push(*e);
                    next.extend_from_slice(&state[at..]);
                    Some(next.into())
                }
            },
        }
    }

    fn effect(&self, op: &SetOp) -> Effect {
        match op {
            SetOp::Read(_) => Effect::ReadOnly,
            SetOp::Add(_) => Effect::Update,
        }
    }

    fn relax(&self, op: &SetOp) -> Option<SetOp> {
        match op {
            SetOp::Read(_) => None,
            add => Some(add.clone()),
        }
    }

    fn describe_state(&self, state: &Arc<[u32]>) -> String {
        let items: Vec<Value> = state.iter().map(|e| self.elements.value(*e).clone()).collect();
        serde_json::json!({ "$set": items }).to_string()
    }

    fn state_heap_bytes(&self, state: &Arc<[u32]>) -> usize {
        state.len() * std::mem::size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_twice_is_adding_once() {
        let s = Set::default();
        let one = s.step(&s.init(), &SetOp::Add(3)).unwrap();
        let two = s.step(&one, &SetOp::Add(1)).unwrap();
        assert_eq!(&*two, &[1, 3]);
        assert_eq!(s.step(&two, &SetOp::Add(3)), Some(two.clone()));
        assert_eq!(s.step(&two, &SetOp::Read(Arc::from(vec![1, 3]))), Some(two.clone()));
        assert_eq!(s.step(&two, &SetOp::Read(Arc::from(vec![3]))), None);
    }
}
