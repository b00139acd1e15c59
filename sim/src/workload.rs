//! What the world asks of its clients, whatever they do: the register
//! clients of the replication rows ([`crate::clients`]) and the
//! transactional clients of the isolation rows ([`crate::txn_clients`]).
//!
//! Promise: the world drives every kind of client the same way (wake a
//! client, carry its request to a node, hand it the answer or its
//! timeout), so a transactional schedule faces the same network, disks and
//! faults as a register one; only the requests and the history differ.

use crate::clients::{Clients, Send};
use faultline_histories::Event;
use faultline_server::core::Answer;
use rand::rngs::StdRng;
use std::ops::Range;

/// The clients of one world and the history they record.
pub trait Workload {
    /// The working clients' indices.
    fn workers(&self) -> Range<usize>;
    /// The final readers' indices (they read once the faults are healed).
    fn final_readers(&self) -> Range<usize>;
    /// Whether every final reader has read.
    fn finals_done(&self) -> bool;
    /// Whether final reader `c` has read.
    fn finals_done_for(&self, c: usize) -> bool;
    /// When client `c` goes on, `think_ms` after `now_ms`: workers until
    /// the clients stop at `run_ms`, final readers (every 20 ms) until
    /// they have read; None when it is done.
    fn wake_at(&self, c: usize, now_ms: u64, think_ms: u64, run_ms: u64) -> Option<u64> {
        if self.workers().contains(&c) {
            (now_ms + think_ms < run_ms).then_some(now_ms + think_ms)
        } else {
            (!self.finals_done_for(c)).then_some(now_ms + 20)
        }
    }

    /// The client whose request is `token`, if it still waits for it.
    fn waiting_on(&self, token: u64) -> Option<usize>;
    /// Whether some client waits for an answer from `node` (the world keeps
    /// stepping that node's transactions while one does).
    fn waits_at(&self, _node: usize) -> bool {
        false
    }
    /// Client `c` starts its next operation at `now_ms`.
    fn next_op(&mut self, c: usize, now_ms: u64, rng: &mut StdRng) -> Send;
    /// Client `c` hears `answer` from `node`; returns whether it is free
    /// for its next operation.
    fn complete(&mut self, c: usize, now_ms: u64, node: &str, answer: &Answer, names: &[String]) -> bool;
    /// Client `c`'s request got no answer in time: unknown.
    fn time_out(&mut self, c: usize, now_ms: u64);
    /// The recorded history, in order.
    fn into_events(self: Box<Self>) -> Vec<Event>;
}

impl Workload for Clients {
    fn workers(&self) -> Range<usize> {
        Clients::workers(self)
    }

    fn final_readers(&self) -> Range<usize> {
        Clients::final_readers(self)
    }

    fn finals_done(&self) -> bool {
        Clients::finals_done(self)
    }

    fn finals_done_for(&self, c: usize) -> bool {
        Clients::finals_done_for(self, c)
    }

    fn waiting_on(&self, token: u64) -> Option<usize> {
        Clients::waiting_on(self, token)
    }

    fn next_op(&mut self, c: usize, now_ms: u64, rng: &mut StdRng) -> Send {
        Clients::next_op(self, c, now_ms, rng)
    }

    fn complete(&mut self, c: usize, now_ms: u64, node: &str, answer: &Answer, names: &[String]) -> bool {
        Clients::complete(self, c, now_ms, node, answer, names)
    }

    fn time_out(&mut self, c: usize, now_ms: u64) {
        Clients::time_out(self, c, now_ms);
    }

    fn into_events(self: Box<Self>) -> Vec<Event> {
        Clients::into_events(*self)
    }
}
