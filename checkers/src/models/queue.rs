//! Knossos's queues: `enqueue` puts its value in, `dequeue` takes one out
//! and returns it. `unordered-queue` may hand out any pending element (a
//! multiset); `fifo-queue` only the oldest.
//!
//! As in Knossos, a dequeue's value is the element it returned, compared as
//! a JSON value; one that returned `null` took out a `null` (a client that
//! found the queue empty should say `fail`, which Jepsen's clients do).
//!
//! Outcomes: an ok operation took effect; a failed one did not. A crashed
//! enqueue may have taken effect once, after its invocation, or never. A
//! crashed dequeue's element is unknown:
//! - in a FIFO queue it may have taken the head at some instant, so later
//!   dequeues see the next element ([`QueueOp::DequeueHead`]);
//! - in an unordered queue it constrains nothing: taking some element out
//!   only ever forbids later dequeues, never allows one, and nothing reads
//!   the whole queue, so a linearization where it took effect is one where
//!   it did not, and it is dropped.
//!
//! Knossos drops a crashed dequeue from both (its value `nil` never matches
//! an element), which can call a valid FIFO history invalid; the FIFO rule
//! here is the sound one.

use std::sync::Arc;

use faultline_histories::{History, Op, Outcome};
use serde_json::Value;

use super::{update_role, ValueInterner};
use crate::model::{Effect, Model, ModelError, Role};

/// An encoded queue operation; elements are interned ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueOp {
    Enqueue(u32),
    /// Took out this element.
    Dequeue(u32),
    /// Took out the head, whatever it was (a crashed FIFO dequeue).
    DequeueHead,
}

/// A queue: unordered (a sorted multiset of ids) or FIFO (ids oldest
/// first).
#[derive(Clone, Debug)]
pub struct Queue {
    fifo: bool,
    values: ValueInterner,
}

impl Queue {
    /// Knossos's `unordered-queue`.
    pub fn unordered() -> Queue {
        Queue {
            fifo: false,
            values: ValueInterner::default(),
        }
    }

    /// Knossos's `fifo-queue`.
    pub fn fifo() -> Queue {
        Queue {
            fifo: true,
            values: ValueInterner::default(),
        }
    }

    fn encode_dequeue(&mut self, op: &Op) -> Role<QueueOp> {
        match op.outcome {
            Outcome::Ok => Role::Determinate(QueueOp::Dequeue(self.values.intern(&op.output))),
            Outcome::Fail => Role::Ignored,
            Outcome::Info | Outcome::Pending if self.fifo => Role::Crashed(QueueOp::DequeueHead),
            Outcome::Info | Outcome::Pending => Role::Ignored,
        }
    }

    fn enqueue(&self, state: &[u32], e: u32) -> Arc<[u32]> {
        let at = if self.fifo {
            state.len()
        } else {
            state.partition_point(|&x| x <= e)
        };
        let mut next = Vec::with_capacity(state.len() + 1);
        next.extend_from_slice(&state[..at]);
        next.push(e);
        next.extend_from_slice(&state[at..]);
        next.into()
    }

    fn dequeue(&self, state: &[u32], e: u32) -> Option<Arc<[u32]>> {
        let at = if self.fifo {
            (state.first() == Some(&e)).then_some(0)?
        } else {
            state.binary_search(&e).ok()?
        };
        Some(without(state, at))
    }
}

/// `state` without its element at `at`.
fn without(state: &[u32], at: usize) -> Arc<[u32]> {
    state[..at].iter().chain(&state[at + 1..]).copied().collect()
}

impl Model for Queue {
    type State = Arc<[u32]>;
    type Op = QueueOp;

    fn name(&self) -> &'static str {
        if self.fifo {
            "fifo-queue"
        } else {
            "unordered-queue"
        }
    }

    fn init(&self) -> Arc<[u32]> {
        Arc::from(Vec::new())
    }

    fn encode(&mut self, _history: &History, op: &Op) -> Result<Role<QueueOp>, ModelError> {
        match op.f.as_str() {
            "enqueue" => Ok(update_role(op, QueueOp::Enqueue(self.values.intern(&op.input)))),
            "dequeue" => Ok(self.encode_dequeue(op)),
            _ => Err(ModelError::unsupported(self.name(), op)),
        }
    }

    fn step(&self, state: &Arc<[u32]>, op: &QueueOp) -> Option<Arc<[u32]>> {
        match *op {
            QueueOp::Enqueue(e) => Some(self.enqueue(state, e)),
            QueueOp::Dequeue(e) => self.dequeue(state, e),
            QueueOp::DequeueHead => (!state.is_empty()).then(|| without(state, 0)),
        }
    }

    fn effect(&self, _op: &QueueOp) -> Effect {
        Effect::Update
    }

    /// A FIFO dequeue relaxes to taking the head; an unordered one to
    /// nothing (see the module doc).
    fn relax(&self, op: &QueueOp) -> Option<QueueOp> {
        match op {
            QueueOp::Dequeue(_) if self.fifo => Some(QueueOp::DequeueHead),
            QueueOp::Dequeue(_) => None,
            other => Some(*other),
        }
    }

    fn describe_state(&self, state: &Arc<[u32]>) -> String {
        let items: Vec<Value> = state.iter().map(|e| self.values.value(*e).clone()).collect();
        Value::Array(items).to_string()
    }

    fn state_heap_bytes(&self, state: &Arc<[u32]>) -> usize {
        state.len() * std::mem::size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(q: &Queue, ops: &[QueueOp]) -> Option<Arc<[u32]>> {
        ops.iter().try_fold(q.init(), |s, op| q.step(&s, op))
    }

    #[test]
    fn a_fifo_queue_hands_out_the_oldest_first() {
        use QueueOp::*;
        let q = Queue::fifo();
        assert_eq!(
            run(&q, &[Enqueue(1), Enqueue(2), Dequeue(1), Dequeue(2)]).as_deref(),
            Some(&[][..])
        );
        assert_eq!(run(&q, &[Enqueue(1), Enqueue(2), Dequeue(2)]), None);
        assert_eq!(
            run(&q, &[Enqueue(1), Enqueue(2), DequeueHead]).as_deref(),
            Some(&[2][..])
        );
        assert_eq!(run(&q, &[DequeueHead]), None);
    }

    #[test]
    fn an_unordered_queue_is_a_multiset() {
        use QueueOp::*;
        let q = Queue::unordered();
        let two_ones = run(&q, &[Enqueue(1), Enqueue(2), Enqueue(1)]).unwrap();
        assert_eq!(&*two_ones, &[1, 1, 2]);
        assert_eq!(
            run(&q, &[Enqueue(1), Enqueue(2), Dequeue(2), Dequeue(1)]).as_deref(),
            Some(&[][..])
        );
        assert_eq!(run(&q, &[Enqueue(1), Dequeue(1), Dequeue(1)]), None);
        assert_eq!(q.relax(&Dequeue(1)), None);
        assert_eq!(Queue::fifo().relax(&Dequeue(1)), Some(DequeueHead));
    }
}
