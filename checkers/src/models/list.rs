//! One list per key: `append` adds an element at the end, `read` returns
//! the whole list as a JSON array (`null` reads as the empty list).
//!
//! Elements are interned to `u32` ids when the history is encoded, so a
//! state is a vector of integers. Crashed reads and failed operations
//! constrain nothing; a crashed append may take effect once after its
//! invocation, or never.

use std::sync::Arc;

use faultline_histories::{History, Op, Outcome, F};
use serde_json::Value;

use super::ValueInterner;
use crate::model::{Effect, Model, ModelError, Role};

/// An encoded list operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListOp {
    Append(u32),
    Read(Arc<[u32]>),
}

/// The list model.
#[derive(Clone, Debug, Default)]
pub struct List {
    elements: ValueInterner,
}

impl List {
    fn read_value(&mut self, op: &Op) -> Result<Arc<[u32]>, ModelError> {
        match &op.output {
            Value::Null => Ok(Arc::from(Vec::new())),
            Value::Array(items) => Ok(items.iter().map(|v| self.elements.intern(v)).collect()),
            other => Err(ModelError::bad_value("list", op, "a JSON array or null", other)),
        }
    }
}

impl Model for List {
    type State = Arc<[u32]>;
    type Op = ListOp;

    fn name(&self) -> &'static str {
        "list"
    }

    fn init(&self) -> Arc<[u32]> {
        Arc::from(Vec::new())
    }

    fn encode(&mut self, _history: &History, op: &Op) -> Result<Role<ListOp>, ModelError> {
        match (&op.f, op.outcome) {
            (_, Outcome::Fail) => Ok(Role::Ignored),
            (F::Read, Outcome::Ok) => Ok(Role::Determinate(ListOp::Read(self.read_value(op)?))),
            (F::Read, _) => Ok(Role::Ignored),
            (F::Append, Outcome::Ok) => Ok(Role::Determinate(ListOp::Append(self.elements.intern(&op.input)))),
            (F::Append, _) => Ok(Role::Crashed(ListOp::Append(self.elements.intern(&op.input)))),
            _ => Err(ModelError::unsupported(self.name(), op)),
        }
    }

    fn step(&self, state: &Arc<[u32]>, op: &ListOp) -> Option<Arc<[u32]>> {
        match op {
            ListOp::Read(seen) => (state == seen).then(|| state.clone()),
            ListOp::Append(e) => Some(state.iter().copied().chain([*e]).collect()),
        }
    }

    fn effect(&self, op: &ListOp) -> Effect {
        match op {
            ListOp::Read(_) => Effect::ReadOnly,
            ListOp::Append(_) => Effect::Update,
        }
    }

    fn relax(&self, op: &ListOp) -> Option<ListOp> {
        match op {
            ListOp::Read(_) => None,
            other => Some(other.clone()),
        }
    }

    fn describe_state(&self, state: &Arc<[u32]>) -> String {
        let items: Vec<Value> = state.iter().map(|e| self.elements.value(*e).clone()).collect();
        Value::Array(items).to_string()
    }

    fn state_heap_bytes(&self, state: &Arc<[u32]>) -> usize {
        state.len() * 4
    }
}
