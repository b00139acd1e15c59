//! Knossos's `multi-register`: several named registers read and written
//! together by transactions. The operation is `txn`, whose value is a
//! list of micro-ops `[f, key, value]`, `f` being `read` (or `r`) or
//! `write` (or `w`), as a string or an EDN keyword; keys are any value
//! (integers, strings, keywords), compared as JSON values. A transaction's
//! micro-ops apply in order, so a read after a write of the same register
//! in one transaction sees that write.
//!
//! A single-key `read` or `write` (with its `key`) on the same history is a
//! transaction of one micro-op: faultline's multi-key workload writes one
//! key at a time and reads several at once, and a read of a value written
//! by a single-key write must find that write.
//!
//! Every register starts at the same initial value (`null` unless told).
//! A micro-op read of `null` follows [`NilReads`]: with `Unknown`
//! (Knossos's rule: "nil reads are always legal") it constrains nothing.
//!
//! Outcomes: an ok transaction took effect with the reads it reported; a
//! failed one did nothing; a crashed one may have taken effect once, after
//! its invocation, or never, and its reads are unknown, so only its writes
//! count. A transaction left with nothing to check (only unknown reads) is
//! ignored.
//!
//! Registers are discovered while encoding, so a state (one value id per
//! register) has its length only once every operation is encoded; the
//! checker calls [`Model::init`] after that.

use std::sync::Arc;

use faultline_histories::{single_key_txn, History, Op, Outcome, F};
use serde_json::Value;

use super::{word, NilReads, ValueInterner};
use crate::model::{Effect, Model, ModelError, Role};

/// One micro-op: a register (by slot) and a value id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Micro {
    Read(u32, u32),
    Write(u32, u32),
}

/// What a micro-op must look like, for error messages.
const MICRO_SHAPE: &str = "a list of [\"read\"|\"r\"|\"write\"|\"w\", key, value] micro-ops";

/// The multi-register model.
#[derive(Clone, Debug)]
pub struct MultiRegister {
    nil_reads: NilReads,
    keys: ValueInterner,
    values: ValueInterner,
}

impl MultiRegister {
    /// Registers that all start at `initial`, reading ok reads of null as
    /// `nil_reads` says.
    pub fn new(initial: &Value, nil_reads: NilReads) -> MultiRegister {
        let mut values = ValueInterner::default();
        values.intern(initial);
        MultiRegister {
            nil_reads,
            keys: ValueInterner::default(),
            values,
        }
    }

    /// The micro-ops of `txn` that constrain something; reads only when
    /// `with_reads` (their results were seen).
    fn micro_ops(&mut self, op: &Op, txn: &Value, with_reads: bool) -> Result<Arc<[Micro]>, ModelError> {
        let bad = || ModelError::bad_value("multi-register", op, MICRO_SHAPE, txn);
        let items = txn.as_array().ok_or_else(bad)?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let [f, k, v] = item.as_array().map(Vec::as_slice).ok_or_else(bad)? else {
                return Err(bad());
            };
            let is_read = match word(f) {
                Some("read" | "r") => true,
                Some("write" | "w") => false,
                _ => return Err(bad()),
            };
            if is_read && (!with_reads || self.nil_reads.ignores(v)) {
                continue;
            }
            let (slot, value) = (self.keys.intern(k), self.values.intern(v));
            out.push(if is_read {
                Micro::Read(slot, value)
            } else {
                Micro::Write(slot, value)
            });
        }
        Ok(out.into())
    }
}

/// A single-key `read` or `write` as the invoke and completion values of a
/// one-micro-op transaction ([`single_key_txn`]); `None` for any other
/// operation (this model has no append or cas micro-op).
fn single_key_values(history: &History, op: &Op) -> Option<(Value, Value)> {
    if !matches!(op.f, F::Read | F::Write) {
        return None;
    }
    let key = history.key(op.key?);
    let done = if op.f == F::Read { &op.output } else { &op.input };
    Some((
        single_key_txn(&op.f, key, &op.input)?,
        single_key_txn(&op.f, key, done)?,
    ))
}

fn writes_only(txn: &[Micro]) -> Option<Arc<[Micro]>> {
    let writes: Vec<Micro> = txn.iter().copied().filter(|m| matches!(m, Micro::Write(..))).collect();
    (!writes.is_empty()).then(|| writes.into())
}

impl Model for MultiRegister {
    type State = Arc<[u32]>;
    type Op = Arc<[Micro]>;

    fn name(&self) -> &'static str {
        "multi-register"
    }

    /// Every register at the initial value (id 0).
    fn init(&self) -> Arc<[u32]> {
        vec![0; self.keys.len()].into()
    }

    fn encode(&mut self, history: &History, op: &Op) -> Result<Role<Arc<[Micro]>>, ModelError> {
        let single = single_key_values(history, op);
        if op.f != F::Txn && single.is_none() {
            return Err(ModelError::unsupported(self.name(), op));
        }
        let (input, output) = single.as_ref().map_or((&op.input, &op.output), |(i, o)| (i, o));
        match op.outcome {
            Outcome::Fail => Ok(Role::Ignored),
            Outcome::Ok => {
                let txn = self.micro_ops(op, output, true)?;
                Ok(if txn.is_empty() {
                    Role::Ignored
                } else {
                    Role::Determinate(txn)
                })
            }
            Outcome::Info | Outcome::Pending => {
                let txn = self.micro_ops(op, input, false)?;
                Ok(if txn.is_empty() {
                    Role::Ignored
                } else {
                    Role::Crashed(txn)
                })
            }
        }
    }

    fn step(&self, state: &Arc<[u32]>, txn: &Arc<[Micro]>) -> Option<Arc<[u32]>> {
        let mut next: Option<Vec<u32>> = None;
        for m in txn.iter() {
            match *m {
                Micro::Read(k, v) => {
                    let now = next.as_ref().map_or(state[k as usize], |n| n[k as usize]);
                    if now != v {
                        return None;
                    }
                }
                Micro::Write(k, v) => next.get_or_insert_with(|| state.to_vec())[k as usize] = v,
            }
        }
        Some(match next {
            Some(n) if n[..] != state[..] => n.into(),
            _ => state.clone(),
        })
    }

    fn effect(&self, txn: &Arc<[Micro]>) -> Effect {
        if txn.iter().any(|m| matches!(m, Micro::Write(..))) {
            Effect::Update
        } else {
            Effect::ReadOnly
        }
    }

    fn relax(&self, txn: &Arc<[Micro]>) -> Option<Arc<[Micro]>> {
        writes_only(txn)
    }

    fn describe_state(&self, state: &Arc<[u32]>) -> String {
        let parts: Vec<String> = state
            .iter()
            .enumerate()
            .map(|(k, v)| format!("{}: {}", self.keys.value(k as u32), self.values.value(*v)))
            .collect();
        format!("{{{}}}", parts.join(", "))
    }

    fn state_heap_bytes(&self, state: &Arc<[u32]>) -> usize {
        state.len() * std::mem::size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn txn(m: &mut MultiRegister, v: Value, nil_ok: bool) -> Arc<[Micro]> {
        let op = crate::models::ok_op(F::Txn, Value::Null, v);
        m.micro_ops(&op, &op.output, nil_ok).unwrap()
    }

    #[test]
    fn reads_see_earlier_writes_of_the_same_transaction() {
        let mut m = MultiRegister::new(&json!(0), NilReads::Unknown);
        let t = txn(&mut m, json!([["w", "x", 1], ["r", "x", 1], ["read", "y", null]]), true);
        assert_eq!(t.len(), 2, "the nil read is unknown");
        let bad = txn(&mut m, json!([["w", "x", 1], ["r", "x", 0]]), true);
        let s = m.init();
        assert_eq!(&*m.step(&s, &t).unwrap(), &[1]);
        assert_eq!(m.step(&s, &bad), None);
        assert_eq!(m.describe_state(&s), "{\"x\": 0}");
    }

    #[test]
    fn keyword_spellings_and_key_kinds_are_read() {
        let mut m = MultiRegister::new(&Value::Null, NilReads::Value);
        let t = txn(
            &mut m,
            json!([[{"$keyword": "write"}, {"$keyword": "x"}, 1], ["r", "x", null], ["r", 2, null]]),
            true,
        );
        assert_eq!(t.len(), 3);
        assert_eq!(m.keys.len(), 3, "keyword :x, string x and 2 are three registers");
        assert_eq!(&*m.step(&m.init(), &t).unwrap(), &[1, 0, 0]);
    }
}
