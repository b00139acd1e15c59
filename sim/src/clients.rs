//! The simulated clients: register reads, writes and compare-and-sets on a
//! few keys, one operation at a time per process, recorded as a history in
//! the project's format.
//!
//! Promise: every event is recorded as the harness would record it: an
//! `invoke` before the request leaves, then `ok` (took effect, with the
//! value read), `fail` (certainly not applied: refused, not the leader, no
//! connection) or `info` (unknown: timed out, or the server said unknown),
//! after which the process is retired and the client goes on as a new one.
//! Written values are unique, so a lost write is visible to a later read.

use faultline_histories::{Event, EventType, Process, F};
use faultline_server::config::ReadMode;
use faultline_server::core::{Answer, Op, Outcome, Request};
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};

/// Events a schedule records, about (the history's first allocation).
const EVENTS_EXPECTED: usize = 1024;

/// What a client is doing.
#[derive(Debug, Clone)]
struct Inflight {
    token: u64,
    f: F,
    key_no: usize,
    /// The invocation's value: an ok write or cas completes with it.
    input: Value,
}

/// One client: a process id, its guess of the leader, its session.
#[derive(Debug, Clone)]
struct Client {
    process: u64,
    leader_guess: Option<usize>,
    /// `reads=lsn`: the highest LSN this session has seen.
    seen_lsn: u64,
    inflight: Option<Inflight>,
    /// A final reader: the key (number) it reads after the faults are healed.
    final_key: Option<usize>,
    /// A final reader that got its answer.
    done: bool,
}

/// The clients and the history they record.
pub struct Clients {
    list: Vec<Client>,
    workers: usize,
    /// The keys' names (`k0`, `k1`, ...), made once.
    keys: Vec<String>,
    nodes: usize,
    reads: ReadMode,
    events: Vec<Event>,
    next_value: i64,
    written: Vec<Vec<i64>>,
    next_token: u64,
}

/// A request to send: to which node, and the request.
pub struct Send {
    pub node: usize,
    pub req: Request,
}

impl Clients {
    /// `workers` clients on `keys` keys of a cluster of `nodes`, plus one
    /// final reader per key.
    pub fn new(workers: usize, keys: usize, nodes: usize, reads: ReadMode) -> Clients {
        let client = |i: usize| Client {
            process: i as u64,
            leader_guess: None,
            seen_lsn: 0,
            inflight: None,
            final_key: (i >= workers).then(|| i - workers),
            done: false,
        };
        Clients {
            list: (0..workers + keys).map(client).collect(),
            workers,
            keys: (0..keys).map(|k| format!("k{k}")).collect(),
            nodes,
            reads,
            // A schedule records some 700 events: grown once, not by doubling.
            events: Vec::with_capacity(EVENTS_EXPECTED),
            next_value: 1,
            written: vec![Vec::new(); keys],
            next_token: 0,
        }
    }

    /// The working clients' indices.
    pub fn workers(&self) -> std::ops::Range<usize> {
        0..self.workers
    }

    /// The final readers' indices.
    pub fn final_readers(&self) -> std::ops::Range<usize> {
        self.workers..self.list.len()
    }

    /// Whether every final reader has read its key.
    pub fn finals_done(&self) -> bool {
        self.final_readers().all(|c| self.list[c].done)
    }

    /// Whether final reader `c` has read its key.
    pub fn finals_done_for(&self, c: usize) -> bool {
        self.list[c].done
    }

    /// When client `c` goes on, `think_ms` after `now_ms`: workers until
    /// the clients stop at `run_ms`, final readers (every 20 ms) until
    /// they have read; None when it is done.
    pub fn wake_at(&self, c: usize, now_ms: u64, think_ms: u64, run_ms: u64) -> Option<u64> {
        if self.workers().contains(&c) {
            (now_ms + think_ms < run_ms).then_some(now_ms + think_ms)
        } else {
            (!self.finals_done_for(c)).then_some(now_ms + 20)
        }
    }

    /// The client whose request is `token`, if it still waits for it.
    pub fn waiting_on(&self, token: u64) -> Option<usize> {
        let waits = |c: &Client| c.inflight.as_ref().is_some_and(|i| i.token == token);
        self.list.iter().position(waits)
    }

    /// The recorded history, in order.
    pub fn into_events(self) -> Vec<Event> {
        self.events
    }

    /// Client `c` starts its next operation at `now_ms`.
    pub fn next_op(&mut self, c: usize, now_ms: u64, rng: &mut StdRng) -> Send {
        let key_no = match self.list[c].final_key {
            Some(k) => k,
            None => rng.gen_range(0..self.keys.len()),
        };
        let key = self.keys[key_no].clone();
        let roll = if self.list[c].final_key.is_some() {
            0
        } else {
            rng.gen_range(0..10)
        };
        let (f, op, value) = match roll {
            0..=3 => (F::Read, Op::Read { key }, Value::Null),
            4..=7 => {
                let v = self.fresh_value(key_no);
                let op = Op::Write { key, value: v.into() };
                (F::Write, op, json!(v))
            }
            _ => {
                let old = &self.written[key_no];
                let expected = if old.is_empty() {
                    Value::Null
                } else {
                    json!(old[rng.gen_range(0..old.len())])
                };
                let new = self.fresh_value(key_no);
                let value = json!([expected, new]);
                let op = Op::Cas {
                    key,
                    expected,
                    new: new.into(),
                };
                (F::Cas, op, value)
            }
        };
        let node = self.target(c, &op, rng);
        self.next_token += 1;
        let token = self.next_token;
        let req = Request {
            token,
            id: token,
            op,
            min_lsn: self.list[c].seen_lsn,
            forwarded: false,
        };
        self.record(
            c,
            now_ms,
            EventType::Invoke,
            f.clone(),
            key_no,
            value.clone(),
            None,
            None,
        );
        self.list[c].inflight = Some(Inflight {
            token,
            f,
            key_no,
            input: value,
        });
        Send { node, req }
    }

    fn fresh_value(&mut self, key_no: usize) -> i64 {
        let v = self.next_value;
        self.next_value += 1;
        self.written[key_no].push(v);
        v
    }

    /// Where the request goes: the leader as far as the client knows for
    /// writes and leader reads, any replica (or the session's own) else.
    fn target(&mut self, c: usize, op: &Op, rng: &mut StdRng) -> usize {
        let random = rng.gen_range(0..self.nodes);
        let to_leader = op.is_write() || self.reads == ReadMode::Leader || self.list[c].final_key.is_some();
        match self.reads {
            _ if to_leader => *self.list[c].leader_guess.get_or_insert(random),
            ReadMode::Sticky => c % self.nodes,
            _ => random,
        }
    }

    /// Client `c` hears `answer` from `node`. Returns whether it is free
    /// for its next operation.
    pub fn complete(&mut self, c: usize, now_ms: u64, node: &str, answer: &Answer, names: &[String]) -> bool {
        let hint = answer
            .leader_hint
            .as_ref()
            .and_then(|h| names.iter().position(|n| n == h));
        let cl = &mut self.list[c];
        match (answer.outcome, hint) {
            (_, Some(h)) => cl.leader_guess = Some(h),
            (Outcome::Fail, None) => cl.leader_guess = None,
            _ => {}
        }
        if let Some(lsn) = answer.lsn.filter(|_| answer.outcome == Outcome::Ok) {
            cl.seen_lsn = cl.seen_lsn.max(lsn);
        }
        let Some(inflight) = cl.inflight.take() else {
            return false;
        };
        let (kind, value, error) = match answer.outcome {
            Outcome::Ok if inflight.f == F::Read => (EventType::Ok, answer.value.clone(), None),
            Outcome::Ok => (EventType::Ok, inflight.input, None),
            Outcome::Fail => (EventType::Fail, Value::Null, Some(fail_reason(&inflight.f, answer))),
            Outcome::Unknown => (EventType::Info, Value::Null, answer.error.clone()),
        };
        if inflight.f == F::Read && kind == EventType::Ok && self.list[c].final_key.is_some() {
            self.list[c].done = true;
        }
        self.record(c, now_ms, kind, inflight.f, inflight.key_no, value, Some(node), error);
        true
    }

    /// Client `c`'s request `token` got no answer in time: unknown.
    pub fn time_out(&mut self, c: usize, now_ms: u64) {
        let Some(inflight) = self.list[c].inflight.take() else {
            return;
        };
        self.list[c].leader_guess = None;
        let why = Some("timed out".to_string());
        self.record(
            c,
            now_ms,
            EventType::Info,
            inflight.f,
            inflight.key_no,
            Value::Null,
            None,
            why,
        );
    }

    /// Records one event; after `info` the process is retired.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        c: usize,
        now_ms: u64,
        kind: EventType,
        f: F,
        key_no: usize,
        value: Value,
        node: Option<&str>,
        error: Option<String>,
    ) {
        let clients = self.list.len() as u64;
        let cl = &mut self.list[c];
        let mut ev = Event::new(
            self.events.len() as u64,
            now_ms * 1_000_000,
            Process::Client(cl.process),
            kind,
            f,
            value,
        )
        .with_key(self.keys[key_no].as_str());
        ev.node = node.map(str::to_string);
        ev.error = error;
        ev.is_final = cl.final_key.is_some();
        self.events.push(ev);
        if kind == EventType::Info {
            cl.process += clients;
        }
    }
}

/// The error text of a failed compare-and-set that observed another value,
/// as the checkers' register model reads it (and the harness's client
/// writes it).
const CAS_MISMATCH: &str = "cas-mismatch";

/// The error a failed operation records: a compare-and-set that found
/// another value says so in the checkers' words (it observed the value).
fn fail_reason(f: &F, answer: &Answer) -> String {
    let error = answer.error.clone().unwrap_or_default();
    if *f == F::Cas && error.starts_with("cas mismatch") {
        return CAS_MISMATCH.to_string();
    }
    error
}
