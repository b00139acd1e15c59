//! The models the linearizability checker ships: a register (with or
//! without compare-and-set), a key-value string with get / put / append
//! (Porcupine's `kv`), a list with append and whole-list reads, and
//! [`Keyed`], a map of independent objects of any one of them (for checking
//! a history as one object without splitting it by key).
//!
//! Every model interns the JSON values it sees into small integers or
//! shared strings when it encodes the history, so that the search compares
//! and hashes states without touching JSON.

mod keyed;
mod kv;
mod list;
mod register;
mod values;

pub use keyed::Keyed;
pub use kv::Kv;
pub use list::List;
pub use register::{Register, RegisterOp};
pub use values::ValueInterner;
