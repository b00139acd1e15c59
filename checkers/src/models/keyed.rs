//! [`Keyed`]: a map of independent objects, each following the same inner
//! model, for checking a multi-key history as one object (no per-key split).
//!
//! A state is the vector of the inner states, one per key the history
//! mentions (an operation without a key touches a key of its own). This is
//! the far harder search that P-compositionality avoids; it exists for
//! comparison with checkers that cannot split and for models where keys are
//! not independent. Keys are discovered while encoding, so [`Model::init`]
//! must be called after every operation has been encoded (the checker
//! does).

use crate::linear::table::FxMap;
use std::sync::Arc;

use faultline_histories::{History, KeyId, Op};

use crate::model::{Effect, Model, ModelError, Role};

/// A map from keys to objects of model `M`.
#[derive(Clone, Debug)]
pub struct Keyed<M> {
    inner: M,
    slots: FxMap<Option<KeyId>, u32>,
    names: Vec<String>,
}

impl<M: Model> Keyed<M> {
    /// A map whose every key starts as `inner.init()`.
    pub fn new(inner: M) -> Keyed<M> {
        Keyed {
            inner,
            slots: FxMap::default(),
            names: Vec::new(),
        }
    }

    fn slot(&mut self, history: &History, key: Option<KeyId>) -> u32 {
        if let Some(&s) = self.slots.get(&key) {
            return s;
        }
        let s = self.names.len() as u32;
        self.names.push(
            key.map(|k| history.key(k).to_string())
                .unwrap_or_else(|| "(no key)".into()),
        );
        self.slots.insert(key, s);
        s
    }
}

impl<M: Model> Model for Keyed<M> {
    type State = Arc<[M::State]>;
    type Op = (u32, M::Op);

    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn init(&self) -> Self::State {
        (0..self.names.len()).map(|_| self.inner.init()).collect()
    }

    fn encode(&mut self, history: &History, op: &Op) -> Result<Role<Self::Op>, ModelError> {
        let role = self.inner.encode(history, op)?;
        if matches!(role, Role::Ignored) {
            return Ok(Role::Ignored);
        }
        let slot = self.slot(history, op.key);
        Ok(match role {
            Role::Determinate(o) => Role::Determinate((slot, o)),
            Role::Crashed(o) => Role::Crashed((slot, o)),
            Role::Ignored => Role::Ignored,
        })
    }

    fn step(&self, state: &Self::State, (slot, op): &Self::Op) -> Option<Self::State> {
        let i = *slot as usize;
        let next = self.inner.step(&state[i], op)?;
        if next == state[i] {
            return Some(state.clone());
        }
        let mut v = state.to_vec();
        v[i] = next;
        Some(v.into())
    }

    fn effect(&self, (_, op): &Self::Op) -> Effect {
        // An overwrite of one key keeps the others, so as a whole it updates.
        match self.inner.effect(op) {
            Effect::ReadOnly => Effect::ReadOnly,
            _ => Effect::Update,
        }
    }

    /// Keys are independent objects.
    fn object(&self, (slot, _): &Self::Op) -> u32 {
        *slot
    }

    fn relax(&self, (slot, op): &Self::Op) -> Option<Self::Op> {
        self.inner.relax(op).map(|o| (*slot, o))
    }

    fn describe_state(&self, state: &Self::State) -> String {
        let parts: Vec<String> = self
            .names
            .iter()
            .zip(state.iter())
            .map(|(k, s)| format!("{k}: {}", self.inner.describe_state(s)))
            .collect();
        format!("{{{}}}", parts.join(", "))
    }

    /// The vector, plus what one inner state may hold: a step changes one
    /// key, so a new map state brings at most one new inner state (the
    /// others are shared with the state it came from).
    fn state_heap_bytes(&self, state: &Self::State) -> usize {
        let inner = state.iter().map(|s| self.inner.state_heap_bytes(s)).max().unwrap_or(0);
        state.len() * std::mem::size_of::<M::State>() + inner
    }
}
