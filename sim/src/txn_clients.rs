//! The simulated transactional clients: list-append transactions of one to
//! four micro-ops over a few keys, sent to the core as the server's clients
//! send them (one `Op::Txn` request through `Input::Client`), recorded as
//! the harness records `--workload txn-list-append`.
//!
//! Promise: the history is the harness's format for transactions: `f` is
//! `txn`, no key, the invocation's value the micro-ops with every read
//! `null` (`["r", k, null]`, `["append", k, v]`), an `ok` completion's the
//! micro-ops the server returned with the reads filled in, a `fail` or
//! `info` completion's the invocation's again; after `info` the process is
//! retired and the client goes on as a new one. Appended values are unique
//! across the run, so the checker can tell which append each read saw.
//! About half the micro-ops are reads, so some transactions are read-only
//! (and take the read path of `reads=`); writing ones go to the leader.

use crate::clients::Send;
use crate::workload::{Entry, Recorder, Session, Workload};
use faultline_histories::{Event, EventType, F};
use faultline_server::config::ReadMode;
use faultline_server::core::{Answer, Op, Outcome};
use faultline_server::state::TxnOp;
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::Value;
use std::ops::Range;

/// Working clients and the keys they share (few: contention).
pub const WORKERS: usize = 5;
pub const KEYS: usize = 3;
/// Most micro-ops in one transaction.
const LENGTH_MAX: usize = 4;

/// A transaction waiting for its answer.
#[derive(Debug, Clone)]
struct Inflight {
    token: u64,
    /// The node it was sent to.
    node: usize,
    /// The invocation's value, which `fail` and `info` record again.
    invoked: Value,
}

/// One client: its session, what it waits for.
#[derive(Debug, Clone)]
struct TxnClient {
    session: Session,
    inflight: Option<Inflight>,
    /// A final reader that got its answer.
    done: bool,
}

/// The transactional clients and the history they record.
pub struct TxnClients {
    list: Vec<TxnClient>,
    workers: usize,
    keys: Vec<String>,
    nodes: usize,
    reads: ReadMode,
    recorder: Recorder,
    next_value: i64,
}

impl TxnClients {
    /// [`WORKERS`] clients on [`KEYS`] keys of a cluster of `nodes`, and one
    /// final reader that reads every key in one transaction.
    pub fn new(nodes: usize, reads: ReadMode) -> TxnClients {
        let client = |i: usize| TxnClient {
            session: Session::new(i as u64, i >= WORKERS),
            inflight: None,
            done: false,
        };
        TxnClients {
            list: (0..=WORKERS).map(client).collect(),
            workers: WORKERS,
            keys: (0..KEYS).map(|k| format!("k{k}")).collect(),
            nodes,
            reads,
            recorder: Recorder::new(WORKERS + 1),
            next_value: 1,
        }
    }

    /// The micro-ops of client `c`'s next transaction: every key read for
    /// the final reader, else one to four reads and appends of fresh values.
    fn draw(&mut self, c: usize, rng: &mut StdRng) -> Vec<TxnOp> {
        if self.list[c].session.is_final {
            return self.keys.iter().map(|key| TxnOp::Read { key: key.clone() }).collect();
        }
        let length = rng.gen_range(1..=LENGTH_MAX);
        (0..length)
            .map(|_| {
                let key = self.keys[rng.gen_range(0..self.keys.len())].clone();
                if rng.gen_bool(0.5) {
                    return TxnOp::Read { key };
                }
                let value = self.next_value;
                self.next_value += 1;
                TxnOp::Append {
                    key,
                    value: value.into(),
                }
            })
            .collect()
    }

    /// Where client `c` sends a transaction: a writing one (and the final
    /// read, and every one under `reads=leader`) to the leader it believes
    /// in, a read-only one where `reads=` says (the session's own replica
    /// for `sticky`, any replica else).
    fn route(&mut self, c: usize, writes: bool, rng: &mut StdRng) -> usize {
        let any = rng.gen_range(0..self.nodes);
        let session = &mut self.list[c].session;
        if writes || session.is_final || self.reads == ReadMode::Leader {
            return *session.leader_guess.get_or_insert(any);
        }
        if self.reads == ReadMode::Sticky {
            c % self.nodes
        } else {
            any
        }
    }

    /// Records one event of client `c` (a transaction: no key).
    fn record(
        &mut self,
        c: usize,
        now_ms: u64,
        kind: EventType,
        value: Value,
        node: Option<&str>,
        error: Option<String>,
    ) {
        let entry = Entry {
            kind,
            f: F::Txn,
            value,
            key: None,
            node,
            error,
        };
        self.recorder.record(&mut self.list[c].session, now_ms, entry);
    }
}

impl Workload for TxnClients {
    fn workers(&self) -> Range<usize> {
        0..self.workers
    }

    fn final_readers(&self) -> Range<usize> {
        self.workers..self.list.len()
    }

    fn finals_done(&self) -> bool {
        self.list[self.workers..].iter().all(|c| c.done)
    }

    fn finals_done_for(&self, c: usize) -> bool {
        self.list[c].done
    }

    fn waiting_on(&self, token: u64) -> Option<usize> {
        let waits = |c: &TxnClient| c.inflight.as_ref().is_some_and(|i| i.token == token);
        self.list.iter().position(waits)
    }

    fn waits_at(&self, node: usize) -> bool {
        self.list
            .iter()
            .any(|c| c.inflight.as_ref().is_some_and(|i| i.node == node))
    }

    fn next_op(&mut self, c: usize, now_ms: u64, rng: &mut StdRng) -> Send {
        let ops = self.draw(c, rng);
        let writes = ops.iter().any(TxnOp::is_write);
        let node = self.route(c, writes, rng);
        let invoked = Value::Array(ops.iter().map(|op| op.completed(Value::Null)).collect());
        let req = self.recorder.request(&self.list[c].session, Op::Txn { ops });
        self.record(c, now_ms, EventType::Invoke, invoked.clone(), None, None);
        let token = req.token;
        self.list[c].inflight = Some(Inflight { token, node, invoked });
        Send { node, req }
    }

    fn complete(&mut self, c: usize, now_ms: u64, node: &str, answer: &Answer, names: &[String]) -> bool {
        self.list[c].session.learn(answer, names);
        let Some(inflight) = self.list[c].inflight.take() else {
            return false;
        };
        let (kind, value) = match answer.outcome {
            Outcome::Ok => (EventType::Ok, answer.value.clone()),
            Outcome::Fail => (EventType::Fail, inflight.invoked),
            Outcome::Unknown => (EventType::Info, inflight.invoked),
        };
        if kind == EventType::Ok && self.list[c].session.is_final {
            self.list[c].done = true;
        }
        self.record(c, now_ms, kind, value, Some(node), answer.error.clone());
        true
    }

    fn time_out(&mut self, c: usize, now_ms: u64) {
        let Some(inflight) = self.list[c].inflight.take() else {
            return;
        };
        self.list[c].session.leader_guess = None;
        let why = Some("timed out".to_string());
        self.record(c, now_ms, EventType::Info, inflight.invoked, None, why);
    }

    fn into_events(self: Box<Self>) -> Vec<Event> {
        self.recorder.into_events()
    }
}
