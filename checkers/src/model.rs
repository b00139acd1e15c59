//! The [`Model`] trait: the sequential specification a history is checked
//! against.
//!
//! A model says what one object (a register, a compare-and-set register, a
//! key-value string, a list, or a map of any of them) does when operations
//! are applied to it one at a time. The linearizability checker asks whether
//! the concurrent history can be explained by *some* sequential order of its
//! operations that respects real time and that this specification accepts.
//!
//! The trait is split in two phases, like stateright's `SequentialSpec` with
//! an encoding step in front:
//!
//! 1. [`Model::encode`] reads each history [`Op`] once, up front, and turns it
//!    into a compact [`Model::Op`] (values interned to integers, for
//!    instance) together with its [`Role`]: determinate (it took effect,
//!    exactly once, between its invocation and its completion), crashed (it
//!    may have taken effect once at any time after its invocation, or never)
//!    or ignored (it constrains nothing). This is where the history's
//!    outcome rules live, so the search never looks at JSON.
//! 2. [`Model::step`] is a pure function: from a state and an encoded
//!    operation, the next state, or `None` when the operation cannot take
//!    effect in that state with the result it reported. The search relies on
//!    this purity: it memoizes `step` and identifies states by equality and
//!    hash, so two states that compare equal must behave the same forever.

use std::fmt::Debug;
use std::hash::Hash;

use faultline_histories::{History, Op};

use crate::linear::search::SearchOp;
use crate::linear::unique::AsRegister;

/// What an operation of the history means to the search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role<O> {
    /// It took effect exactly once between its invocation and completion,
    /// with the result it reported (an `ok` operation, or an observed failed
    /// comparison).
    Determinate(O),
    /// It may have taken effect once at any time after its invocation, or
    /// never; its result is unknown (`info` or pending).
    Crashed(O),
    /// It constrains nothing: it certainly did not take effect (`fail`), or
    /// it is a read whose result was never seen.
    Ignored,
}

/// How an operation changes the state, used by the search to skip orders
/// that provably cannot help (see `linear::search`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Never changes the state (a read, an observed failed comparison).
    ReadOnly,
    /// Sets the state to a value that does not depend on the state before
    /// (a register write, a put). Any operation applied just before it is
    /// forgotten.
    Overwrite,
    /// Anything else (compare-and-set, append).
    Update,
}

/// Why an operation cannot be interpreted by a model.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// The model has no such operation (a `txn` on a register, say).
    #[error("op {index}: the {model} model has no `{f}` operation")]
    Unsupported { index: u64, model: &'static str, f: String },
    /// The operation's value does not have the shape the model needs.
    #[error("op {index}: {model} `{f}` expects {expected}, got {got}")]
    BadValue {
        index: u64,
        model: &'static str,
        f: String,
        expected: &'static str,
        got: String,
    },
}

impl ModelError {
    /// A [`ModelError::BadValue`] about `op`.
    pub fn bad_value(model: &'static str, op: &Op, expected: &'static str, got: &serde_json::Value) -> ModelError {
        ModelError::BadValue {
            index: op.invoke_index,
            model,
            f: op.f.to_string(),
            expected,
            got: got.to_string(),
        }
    }

    /// A [`ModelError::Unsupported`] about `op`.
    pub fn unsupported(model: &'static str, op: &Op) -> ModelError {
        ModelError::Unsupported {
            index: op.invoke_index,
            model,
            f: op.f.to_string(),
        }
    }
}

/// A sequential specification of one object (or of a map of objects); see
/// the module doc for the contract.
///
/// One model value is made per part of the history being checked, so
/// `encode` may intern values into tables of its own; `step`, `effect`,
/// `relax` and the `describe_*` functions must not depend on anything but
/// their arguments and what `encode` recorded.
pub trait Model {
    /// A state of the object. Equal states must have equal futures.
    type State: Clone + Eq + Hash + Debug;
    /// An encoded operation: what it did and, when determinate, what it saw.
    type Op: Clone + Debug;

    /// The model's name in reports: `register`, `cas-register`, `kv`, `list`.
    fn name(&self) -> &'static str;
    /// The state before any operation.
    fn init(&self) -> Self::State;
    /// Reads one operation of `history`; see [`Role`].
    fn encode(&mut self, history: &History, op: &Op) -> Result<Role<Self::Op>, ModelError>;
    /// The state after `op` applied to `state`, or `None` if `op` cannot take
    /// effect there with the result it reported. Pure.
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;
    /// How `op` changes the state.
    fn effect(&self, op: &Self::Op) -> Effect;
    /// The operation as if it had crashed: the same effect, its result
    /// unknown; `None` when it would then constrain nothing (a read). Used
    /// to weaken a history when shrinking evidence: weakening never turns a
    /// linearizable history into a non-linearizable one.
    fn relax(&self, op: &Self::Op) -> Option<Self::Op>;
    /// Which independent object `op` touches. Operations on different
    /// objects must be independent: the state is a product of one state per
    /// object, and an operation reads and changes only its own object's.
    /// Then (Herlihy and Wing's locality) a history is linearizable exactly
    /// when each object's sub-history is, and evidence can be looked for in
    /// one object. Models of a single object keep the default.
    fn object(&self, _op: &Self::Op) -> u32 {
        0
    }
    /// The operation as a register's, when the model is a single register
    /// (the polynomial check of `linear::unique` applies to those).
    fn register_op(&self, _op: &Self::Op) -> Option<crate::models::RegisterOp> {
        None
    }
    /// A part's operations (one object's) as a register's with unique
    /// written values, index for index, for the polynomial check; `None`
    /// where that is not known to decide the part exactly as this model
    /// would. The default maps each operation by [`Model::register_op`];
    /// a model that is not a register overrides it when a whole part can be
    /// translated (the key-value string with unique pieces).
    fn as_register(&self, ops: &[SearchOp<Self::Op>]) -> Option<AsRegister> {
        let ops = ops
            .iter()
            .map(|o| {
                self.register_op(&o.op).map(|op| SearchOp {
                    op,
                    call: o.call,
                    ret: o.ret,
                    optional: o.optional,
                })
            })
            .collect::<Option<_>>()?;
        Some(AsRegister { ops, conflict: None })
    }
    /// The state as a small integer, for models that number their states
    /// themselves (densely, from 0) and whose `step` costs less than a
    /// hash-table probe (it compares and returns such numbers, or keeps
    /// its own table). The search then finds a state's id in an array
    /// indexed by this number instead of hashing the state, and calls
    /// `step` every time instead of memoizing it, which on such models
    /// cost more than the steps it saved. `None` (the default): states
    /// are hashed and steps memoized.
    fn small_state(&self, _state: &Self::State) -> Option<u32> {
        None
    }
    /// A state for people: `4`, `"x 1 0 y"`, `[1, 2]`.
    fn describe_state(&self, state: &Self::State) -> String;
    /// Bytes a state holds outside itself (a string's text), for the
    /// memory budget. Zero for states that are plain integers.
    fn state_heap_bytes(&self, _state: &Self::State) -> usize {
        0
    }
}
