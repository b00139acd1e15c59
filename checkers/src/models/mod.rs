//! The models the linearizability checker ships: a register (with or
//! without compare-and-set), a key-value string with get / put / append
//! (Porcupine's `kv`), a list with append and whole-list reads, and
//! Knossos's models (`multi-register`, `mutex`, `set`, `unordered-queue`,
//! `fifo-queue`) with Knossos's semantics; and [`Keyed`], a map of
//! independent objects of any one of them (for checking a history as one
//! object without splitting it by key).
//!
//! Every model interns the JSON values it sees into small integers or
//! shared strings when it encodes the history, so that the search compares
//! and hashes states without touching JSON.
//!
//! Values arrive as faultline's JSON, into which the EDN importer writes
//! what JSON lacks: `{"$set": [...]}` (sorted, de-duplicated),
//! `{"$keyword": "a"}`, `{"$symbol": "a"}`, `{"$int": "digits"}` and
//! `{"$map": [[k, v], ...]}`. Interning compares values as JSON, which
//! keeps those apart from strings and arrays; the set model reads a `$set`
//! (or a plain array) as a set.

mod keyed;
mod kv;
mod kv_unique;
mod list;
mod multi_register;
mod mutex;
mod queue;
mod register;
mod set;
mod values;

pub use keyed::Keyed;
pub use kv::{Kv, KvOp};
pub use list::List;
pub use multi_register::{Micro, MultiRegister};
pub use mutex::{Mutex, MutexOp};
pub use queue::{Queue, QueueOp};
pub use register::{Register, RegisterOp};
pub use set::{Set, SetOp};
pub use values::ValueInterner;

use faultline_histories::{Op, Outcome};
use serde_json::Value;

use crate::model::Role;

/// What a read that completed ok with `null` means to a register model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum NilReads {
    /// The register held null (faultline's JSONL, Porcupine's logs).
    #[default]
    Value,
    /// The result is unknown: the read constrains nothing. Knossos's rule,
    /// and how Jepsen's clients report a read whose answer they lost.
    Unknown,
}

impl NilReads {
    /// True when a read that returned `output` constrains nothing.
    pub fn ignores(self, output: &Value) -> bool {
        self == NilReads::Unknown && output.is_null()
    }

    /// The option's name on the command line: `value`, `unknown`.
    pub fn name(self) -> &'static str {
        match self {
            NilReads::Value => "value",
            NilReads::Unknown => "unknown",
        }
    }
}

/// The role of an update (it changes the state whatever it returned): ok
/// means it took effect, `fail` that it did not, `info` or pending that it
/// may have.
fn update_role<O>(op: &Op, encoded: O) -> Role<O> {
    match op.outcome {
        Outcome::Ok => Role::Determinate(encoded),
        Outcome::Fail => Role::Ignored,
        Outcome::Info | Outcome::Pending => Role::Crashed(encoded),
    }
}

/// The name in a word-like value: a string, or an EDN keyword or symbol as
/// the importer writes them (`{"$keyword": "read"}`).
fn word(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s),
        Value::Object(m) if m.len() == 1 => m.get("$keyword").or_else(|| m.get("$symbol"))?.as_str(),
        _ => None,
    }
}

/// The elements of a value read as a set: `{"$set": [...]}` or a plain
/// array (faultline's JSONL), its order and repeats not mattering.
fn set_elements(v: &Value) -> Option<&[Value]> {
    match v {
        Value::Array(items) => Some(items),
        Value::Object(m) if m.len() == 1 => m.get("$set")?.as_array().map(Vec::as_slice),
        _ => None,
    }
}

/// `ids` sorted and without repeats: the canonical form of a set state.
fn sorted_unique(mut ids: Vec<u32>) -> std::sync::Arc<[u32]> {
    ids.sort_unstable();
    ids.dedup();
    ids.into()
}

/// A client-0 op of `f` that completed ok (invoked at index 0, completed
/// at 1): the op the models' and the search's unit tests encode.
#[cfg(test)]
pub(crate) fn ok_op(f: faultline_histories::F, input: Value, output: Value) -> Op {
    Op {
        process: faultline_histories::Process::Client(0),
        f,
        key: None,
        input,
        output,
        outcome: Outcome::Ok,
        invoke_index: 0,
        complete_index: Some(1),
        invoke_time: 0,
        complete_time: Some(1),
        node: None,
        error: None,
        is_final: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn words_are_strings_keywords_or_symbols() {
        assert_eq!(word(&json!("r")), Some("r"));
        assert_eq!(word(&json!({"$keyword": "read"})), Some("read"));
        assert_eq!(word(&json!({"$symbol": "w"})), Some("w"));
        assert_eq!(word(&json!({"$keyword": "a", "x": 1})), None);
        assert_eq!(word(&json!(1)), None);
    }

    #[test]
    fn sets_are_read_from_both_spellings() {
        assert_eq!(set_elements(&json!({"$set": [1, 2]})), Some(&[json!(1), json!(2)][..]));
        assert_eq!(set_elements(&json!([2, 1])), Some(&[json!(2), json!(1)][..]));
        assert_eq!(set_elements(&json!(null)), None);
        assert_eq!(set_elements(&json!({"$map": []})), None);
        assert_eq!(&*sorted_unique(vec![3, 1, 3]), &[1, 3]);
    }

    #[test]
    fn only_unknown_nil_reads_are_ignored() {
        assert!(NilReads::Unknown.ignores(&Value::Null));
        assert!(!NilReads::Unknown.ignores(&json!(0)));
        assert!(!NilReads::Value.ignores(&Value::Null));
        assert_eq!(NilReads::default(), NilReads::Value);
    }
}
