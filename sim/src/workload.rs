//! What the world asks of its clients, whatever they do: the register
//! clients of the replication rows ([`crate::clients`]) and the
//! transactional clients of the isolation rows ([`crate::txn_clients`]).
//!
//! Promise: the world drives every kind of client the same way (wake a
//! client, carry its request to a node, hand it the answer or its
//! timeout), so a transactional schedule faces the same network, disks and
//! faults as a register one; only the requests and the history differ.
//! Both keep a client's session ([`Session`]) and record their history
//! ([`Recorder`]) the same way.

use crate::clients::{Clients, Send};
use faultline_histories::{Event, EventType, Process, F};
use faultline_server::core::{Answer, Op, Outcome, Request};
use rand::rngs::StdRng;
use serde_json::Value;
use std::ops::Range;

/// Events a schedule records, about (the history's first allocation).
const EVENTS_EXPECTED: usize = 1024;

/// One client's session: its process in the history, where it believes
/// the leader is, how far it has seen.
#[derive(Debug, Clone)]
pub struct Session {
    pub process: u64,
    pub leader_guess: Option<usize>,
    /// The highest LSN this session has seen (`reads=lsn`).
    pub seen_lsn: u64,
    /// A final reader (it reads once the faults are healed).
    pub is_final: bool,
}

impl Session {
    pub fn new(process: u64, is_final: bool) -> Session {
        Session {
            process,
            leader_guess: None,
            seen_lsn: 0,
            is_final,
        }
    }

    /// What the client learns of the cluster from `answer`: where the
    /// leader is (a failure naming none: it knows no longer), and how far
    /// its session has seen.
    pub fn learn(&mut self, answer: &Answer, names: &[String]) {
        let hint = answer
            .leader_hint
            .as_ref()
            .and_then(|h| names.iter().position(|n| n == h));
        if hint.is_some() {
            self.leader_guess = hint;
        } else if answer.outcome == Outcome::Fail {
            self.leader_guess = None;
        }
        if answer.outcome == Outcome::Ok {
            self.seen_lsn = self.seen_lsn.max(answer.lsn.unwrap_or(0));
        }
    }
}

/// One event to record, besides its client and time.
pub struct Entry<'a> {
    pub kind: EventType,
    pub f: F,
    pub value: Value,
    pub key: Option<&'a str>,
    pub node: Option<&'a str>,
    pub error: Option<String>,
}

/// The history a workload's clients record, and their requests' tokens.
pub struct Recorder {
    events: Vec<Event>,
    next_token: u64,
    /// Clients: a retired process's successor is this many ids on.
    clients: u64,
}

impl Recorder {
    pub fn new(clients: usize) -> Recorder {
        Recorder {
            // A schedule records some 700 events: grown once, not by doubling.
            events: Vec::with_capacity(EVENTS_EXPECTED),
            next_token: 0,
            clients: clients as u64,
        }
    }

    /// `session`'s request for `op`, under a fresh token (its id too).
    pub fn request(&mut self, session: &Session, op: Op) -> Request {
        self.next_token += 1;
        let token = self.next_token;
        Request {
            token,
            id: token,
            op,
            min_lsn: session.seen_lsn,
            forwarded: false,
        }
    }

    /// Records one event of `session` at `now_ms`; after `info` its
    /// process is retired and the client goes on as a new one.
    pub fn record(&mut self, session: &mut Session, now_ms: u64, entry: Entry<'_>) {
        let mut ev = Event::new(
            self.events.len() as u64,
            now_ms * 1_000_000,
            Process::Client(session.process),
            entry.kind,
            entry.f,
            entry.value,
        );
        if let Some(key) = entry.key {
            ev = ev.with_key(key);
        }
        ev.node = entry.node.map(str::to_string);
        ev.error = entry.error;
        ev.is_final = session.is_final;
        self.events.push(ev);
        if entry.kind == EventType::Info {
            session.process += self.clients;
        }
    }

    /// The recorded history, in order.
    pub fn into_events(self) -> Vec<Event> {
        self.events
    }
}

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
