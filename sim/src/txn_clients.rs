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
use crate::workload::Workload;
use faultline_histories::{Event, EventType, Process, F};
use faultline_server::config::ReadMode;
use faultline_server::core::{Answer, Op, Outcome, Request};
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
/// Events a schedule records, about (the history's first allocation).
const EVENTS_EXPECTED: usize = 1024;

/// A transaction waiting for its answer.
#[derive(Debug, Clone)]
struct Inflight {
    token: u64,
    /// The node it was sent to.
    node: usize,
    /// The invocation's value, which `fail` and `info` record again.
    invoked: Value,
}

/// One client: a process id, its guess of the leader, its session.
#[derive(Debug, Clone)]
struct TxnClient {
    process: u64,
    leader_guess: Option<usize>,
    /// The highest LSN this session has seen (`reads=lsn`).
    seen_lsn: u64,
    inflight: Option<Inflight>,
    /// Reads every key once the faults are healed, then stops.
    is_final: bool,
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
    events: Vec<Event>,
    next_value: i64,
    next_token: u64,
}

impl TxnClients {
    /// [`WORKERS`] clients on [`KEYS`] keys of a cluster of `nodes`, and one
    /// final reader that reads every key in one transaction.
    pub fn new(nodes: usize, reads: ReadMode) -> TxnClients {
        let client = |i: usize| TxnClient {
            process: i as u64,
            leader_guess: None,
            seen_lsn: 0,
            inflight: None,
            is_final: i >= WORKERS,
            done: false,
        };
        TxnClients {
            list: (0..=WORKERS).map(client).collect(),
            workers: WORKERS,
            keys: (0..KEYS).map(|k| format!("k{k}")).collect(),
            nodes,
            reads,
            events: Vec::with_capacity(EVENTS_EXPECTED),
            next_value: 1,
            next_token: 0,
        }
    }

    /// The micro-ops of client `c`'s next transaction: every key read for
    /// the final reader, else one to four reads and appends of fresh values.
    fn draw(&mut self, c: usize, rng: &mut StdRng) -> Vec<TxnOp> {
        if self.list[c].is_final {
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
        let cl = &mut self.list[c];
        if writes || cl.is_final || self.reads == ReadMode::Leader {
            return *cl.leader_guess.get_or_insert(any);
        }
        if self.reads == ReadMode::Sticky {
            c % self.nodes
        } else {
            any
        }
    }

    /// Records one event of client `c`; after `info` the process is retired.
    fn record(
        &mut self,
        c: usize,
        now_ms: u64,
        kind: EventType,
        value: Value,
        node: Option<&str>,
        error: Option<String>,
    ) {
        let processes = self.list.len() as u64;
        let cl = &mut self.list[c];
        let index = self.events.len() as u64;
        let mut ev = Event::new(
            index,
            now_ms * 1_000_000,
            Process::Client(cl.process),
            kind,
            F::Txn,
            value,
        );
        ev.node = node.map(str::to_string);
        ev.error = error;
        ev.is_final = cl.is_final;
        self.events.push(ev);
        if kind == EventType::Info {
            cl.process += processes;
        }
    }

    /// What client `c` learns of the cluster from `answer`: where the
    /// leader is, and how far its session has seen.
    fn learn(&mut self, c: usize, answer: &Answer, names: &[String]) {
        let cl = &mut self.list[c];
        let hint = answer
            .leader_hint
            .as_ref()
            .and_then(|h| names.iter().position(|n| n == h));
        if hint.is_some() {
            cl.leader_guess = hint;
        } else if answer.outcome == Outcome::Fail {
            cl.leader_guess = None;
        }
        if answer.outcome == Outcome::Ok {
            cl.seen_lsn = cl.seen_lsn.max(answer.lsn.unwrap_or(0));
        }
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
        self.next_token += 1;
        let token = self.next_token;
        let req = Request {
            token,
            id: token,
            op: Op::Txn { ops },
            min_lsn: self.list[c].seen_lsn,
            forwarded: false,
        };
        self.record(c, now_ms, EventType::Invoke, invoked.clone(), None, None);
        self.list[c].inflight = Some(Inflight { token, node, invoked });
        Send { node, req }
    }

    fn complete(&mut self, c: usize, now_ms: u64, node: &str, answer: &Answer, names: &[String]) -> bool {
        self.learn(c, answer, names);
        let Some(inflight) = self.list[c].inflight.take() else {
            return false;
        };
        let (kind, value) = match answer.outcome {
            Outcome::Ok => (EventType::Ok, answer.value.clone()),
            Outcome::Fail => (EventType::Fail, inflight.invoked),
            Outcome::Unknown => (EventType::Info, inflight.invoked),
        };
        if kind == EventType::Ok && self.list[c].is_final {
            self.list[c].done = true;
        }
        self.record(c, now_ms, kind, value, Some(node), answer.error.clone());
        true
    }

    fn time_out(&mut self, c: usize, now_ms: u64) {
        let Some(inflight) = self.list[c].inflight.take() else {
            return;
        };
        self.list[c].leader_guess = None;
        let why = Some("timed out".to_string());
        self.record(c, now_ms, EventType::Info, inflight.invoked, None, why);
    }

    fn into_events(self: Box<Self>) -> Vec<Event> {
        self.events
    }
}
