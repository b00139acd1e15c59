//! A single register holding one JSON value: `read`, `write` and, for the
//! compare-and-set flavour, `cas [expected, new]`.
//!
//! Outcome rules, as `HISTORY_FORMAT.md` and Porcupine's etcd logs define
//! them: an `ok` op is determinate; a `fail` op did nothing and is ignored,
//! except a `cas` that failed with `error == "cas-mismatch"`, which observed
//! that the value was not `expected` at some instant within its interval; a
//! crashed write or cas may take effect once after its invocation, or never;
//! a crashed or failed read constrains nothing. Values are interned per
//! part, so the state is a `u32`.
//!
//! A read that completes ok with `null` follows [`NilReads`]: a read of
//! null (faultline's own histories), or, as Knossos's `register` and
//! `cas-register` have it, a read whose result is unknown, which constrains
//! nothing.

use faultline_histories::{History, Op, Outcome, F};
use serde_json::Value;

use super::{NilReads, ValueInterner};
use crate::model::{Effect, Model, ModelError, Role};

/// The error text with which a failed `cas` reports a comparison that did
/// not hold (Porcupine's etcd importer and faultline's server use it).
pub const CAS_MISMATCH: &str = "cas-mismatch";

/// An encoded register operation; values are interned ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterOp {
    Read(u32),
    Write(u32),
    Cas(u32, u32),
    /// A failed comparison: the value was not this one.
    CasMismatch(u32),
}

/// A register, with `cas` when built by [`Register::cas`].
#[derive(Clone, Debug)]
pub struct Register {
    allow_cas: bool,
    nil_reads: NilReads,
    values: ValueInterner,
}

impl Register {
    /// A read/write register starting at `initial`.
    pub fn new(initial: &Value) -> Register {
        let mut values = ValueInterner::default();
        values.intern(initial);
        Register {
            allow_cas: false,
            nil_reads: NilReads::Value,
            values,
        }
    }

    /// The same register, reading ok reads of null as `nil_reads` says.
    pub fn with_nil_reads(self, nil_reads: NilReads) -> Register {
        Register { nil_reads, ..self }
    }

    /// A compare-and-set register starting at `initial`.
    pub fn cas(initial: &Value) -> Register {
        Register {
            allow_cas: true,
            ..Register::new(initial)
        }
    }

    fn encode_cas(&mut self, op: &Op) -> Result<Role<RegisterOp>, ModelError> {
        let name = self.name();
        let (expected, new) = match &op.input {
            Value::Array(pair) if pair.len() == 2 => (&pair[0], &pair[1]),
            other => return Err(ModelError::bad_value(name, op, "[expected, new]", other)),
        };
        let (a, b) = (self.values.intern(expected), self.values.intern(new));
        Ok(match op.outcome {
            Outcome::Ok => Role::Determinate(RegisterOp::Cas(a, b)),
            Outcome::Fail if op.error.as_deref() == Some(CAS_MISMATCH) => Role::Determinate(RegisterOp::CasMismatch(a)),
            Outcome::Fail => Role::Ignored,
            Outcome::Info | Outcome::Pending => Role::Crashed(RegisterOp::Cas(a, b)),
        })
    }
}

impl Model for Register {
    type State = u32;
    type Op = RegisterOp;

    fn name(&self) -> &'static str {
        if self.allow_cas {
            "cas-register"
        } else {
            "register"
        }
    }

    fn init(&self) -> u32 {
        0
    }

    fn encode(&mut self, _history: &History, op: &Op) -> Result<Role<RegisterOp>, ModelError> {
        match (&op.f, op.outcome) {
            (F::Read, Outcome::Ok) if self.nil_reads.ignores(&op.output) => Ok(Role::Ignored),
            (F::Read, Outcome::Ok) => Ok(Role::Determinate(RegisterOp::Read(self.values.intern(&op.output)))),
            (F::Read, _) => Ok(Role::Ignored),
            (F::Write, Outcome::Ok) => Ok(Role::Determinate(RegisterOp::Write(self.values.intern(&op.input)))),
            (F::Write, Outcome::Fail) => Ok(Role::Ignored),
            (F::Write, _) => Ok(Role::Crashed(RegisterOp::Write(self.values.intern(&op.input)))),
            (F::Cas, _) if self.allow_cas => self.encode_cas(op),
            _ => Err(ModelError::unsupported(self.name(), op)),
        }
    }

    /// Value ids; a step compares them.
    fn small_state(&self, state: &u32) -> Option<u32> {
        Some(*state)
    }

    fn step(&self, state: &u32, op: &RegisterOp) -> Option<u32> {
        match *op {
            RegisterOp::Read(v) => (*state == v).then_some(v),
            RegisterOp::Write(v) => Some(v),
            RegisterOp::Cas(a, b) => (*state == a).then_some(b),
            RegisterOp::CasMismatch(a) => (*state != a).then_some(*state),
        }
    }

    fn effect(&self, op: &RegisterOp) -> Effect {
        match op {
            RegisterOp::Read(_) | RegisterOp::CasMismatch(_) => Effect::ReadOnly,
            RegisterOp::Write(_) => Effect::Overwrite,
            RegisterOp::Cas(..) => Effect::Update,
        }
    }

    fn relax(&self, op: &RegisterOp) -> Option<RegisterOp> {
        match op {
            RegisterOp::Read(_) | RegisterOp::CasMismatch(_) => None,
            other => Some(*other),
        }
    }

    fn register_op(&self, op: &RegisterOp) -> Option<RegisterOp> {
        Some(*op)
    }

    fn describe_state(&self, state: &u32) -> String {
        self.values.value(*state).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cas_steps_only_from_its_expected_value() {
        let mut r = Register::cas(&json!(null));
        let one = r.values.intern(&json!(1));
        let two = r.values.intern(&json!(2));
        assert_eq!(r.step(&one, &RegisterOp::Cas(one, two)), Some(two));
        assert_eq!(r.step(&two, &RegisterOp::Cas(one, two)), None);
        assert_eq!(r.step(&two, &RegisterOp::CasMismatch(one)), Some(two));
        assert_eq!(r.step(&one, &RegisterOp::CasMismatch(one)), None);
        assert_eq!(r.describe_state(&r.init()), "null");
    }

    #[test]
    fn a_nil_read_is_unknown_only_when_asked() {
        let history = History::default();
        let mut read = crate::models::ok_op(F::Read, json!(null), json!(null));
        let mut knossos = Register::cas(&json!(0)).with_nil_reads(NilReads::Unknown);
        assert_eq!(knossos.encode(&history, &read), Ok(Role::Ignored));
        let mut own = Register::cas(&json!(0));
        let null = own.values.intern(&json!(null));
        assert_eq!(
            own.encode(&history, &read),
            Ok(Role::Determinate(RegisterOp::Read(null)))
        );
        read.output = json!(0);
        let zero = knossos.values.intern(&json!(0));
        assert_eq!(
            knossos.encode(&history, &read),
            Ok(Role::Determinate(RegisterOp::Read(zero)))
        );
    }
}
