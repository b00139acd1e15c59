//! Knossos's `mutex`: one lock, free at first, with `acquire` (only when
//! free) and `release` (only when held). Values are not looked at: Knossos's
//! mutex does not say who holds it, only whether someone does.
//!
//! An ok acquire or release took effect; a failed one did not (a lock
//! service that refuses an acquire has not granted it); a crashed one
//! (`info`, pending) may have taken effect once, after its invocation, or
//! never, so a crashed acquire may be the reason a later acquire had to
//! wait, and a history with two ok acquires and no release between them is
//! not linearizable.

use faultline_histories::{History, Op};

use super::update_role;
use crate::model::{Effect, Model, ModelError, Role};

/// An encoded mutex operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MutexOp {
    Acquire,
    Release,
}

/// The mutex model; its state is `true` while the lock is held.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mutex;

impl Model for Mutex {
    type State = bool;
    type Op = MutexOp;

    fn name(&self) -> &'static str {
        "mutex"
    }

    fn init(&self) -> bool {
        false
    }

    fn encode(&mut self, _history: &History, op: &Op) -> Result<Role<MutexOp>, ModelError> {
        let encoded = match op.f.as_str() {
            "acquire" => MutexOp::Acquire,
            "release" => MutexOp::Release,
            _ => return Err(ModelError::unsupported(self.name(), op)),
        };
        Ok(update_role(op, encoded))
    }

    fn step(&self, held: &bool, op: &MutexOp) -> Option<bool> {
        match op {
            MutexOp::Acquire => (!held).then_some(true),
            MutexOp::Release => held.then_some(false),
        }
    }

    fn effect(&self, _op: &MutexOp) -> Effect {
        Effect::Update
    }

    fn relax(&self, op: &MutexOp) -> Option<MutexOp> {
        Some(*op)
    }

    fn describe_state(&self, held: &bool) -> String {
        if *held { "held" } else { "free" }.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_not_acquired_and_a_free_one_not_released() {
        let m = Mutex;
        assert_eq!(m.step(&false, &MutexOp::Acquire), Some(true));
        assert_eq!(m.step(&true, &MutexOp::Acquire), None);
        assert_eq!(m.step(&true, &MutexOp::Release), Some(false));
        assert_eq!(m.step(&false, &MutexOp::Release), None);
        assert_eq!(m.describe_state(&m.init()), "free");
    }
}
