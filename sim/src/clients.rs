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
//!
//! The multi-key flavour ([`Clients::multi_key`], the harness's `--workload
//! multi-key`) writes one key at a time and reads every key at once (a
//! `txn` of reads, keyless, as the harness records a multi-key read), and
//! never compare-and-sets.

use crate::workload::{Entry, Recorder, Session};
use faultline_histories::{Event, EventType, F};
use faultline_server::config::ReadMode;
use faultline_server::core::{Answer, Op, Outcome, Request};
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};

/// What a client is doing.
#[derive(Debug, Clone)]
struct Inflight {
    token: u64,
    f: F,
    /// The key (number), none for a multi-key read.
    key_no: Option<usize>,
    /// The invocation's value: an ok write or cas completes with it.
    input: Value,
}

/// One client: its session, what it waits for.
#[derive(Debug, Clone)]
struct Client {
    session: Session,
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
    /// The multi-key flavour: reads of every key at once, no cas.
    multi_reads: bool,
    recorder: Recorder,
    next_value: i64,
    written: Vec<Vec<i64>>,
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
            session: Session::new(i as u64, i >= workers),
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
            multi_reads: false,
            recorder: Recorder::new(workers + keys),
            next_value: 1,
            written: vec![Vec::new(); keys],
        }
    }

    /// The multi-key flavour of [`Clients::new`]: half the operations read
    /// every key at once, the rest write one.
    pub fn multi_key(workers: usize, keys: usize, nodes: usize, reads: ReadMode) -> Clients {
        Clients {
            multi_reads: true,
            ..Clients::new(workers, keys, nodes, reads)
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

    /// The client whose request is `token`, if it still waits for it.
    pub fn waiting_on(&self, token: u64) -> Option<usize> {
        let waits = |c: &Client| c.inflight.as_ref().is_some_and(|i| i.token == token);
        self.list.iter().position(waits)
    }

    /// The recorded history, in order.
    pub fn into_events(self) -> Vec<Event> {
        self.recorder.into_events()
    }

    /// Client `c` starts its next operation at `now_ms`.
    pub fn next_op(&mut self, c: usize, now_ms: u64, rng: &mut StdRng) -> Send {
        let key_no = match self.list[c].final_key {
            Some(k) => k,
            None => rng.gen_range(0..self.keys.len()),
        };
        let roll = if self.list[c].final_key.is_some() {
            0
        } else {
            rng.gen_range(0..10)
        };
        let (f, op, value, key_no) = match roll {
            0..=4 if self.multi_reads => self.multi_read(),
            0..=3 => (F::Read, Op::Read { key: self.key(key_no) }, Value::Null, Some(key_no)),
            _ if roll <= 7 || self.multi_reads => self.write(key_no),
            _ => self.cas(key_no, rng),
        };
        let node = self.target(c, &op, rng);
        let req = self.recorder.request(&self.list[c].session, op);
        let token = req.token;
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

    fn key(&self, key_no: usize) -> String {
        self.keys[key_no].clone()
    }

    /// A read of every key at once, as the harness invokes one.
    fn multi_read(&self) -> (F, Op, Value, Option<usize>) {
        let value = Value::Array(self.keys.iter().map(|k| json!(["r", k, null])).collect());
        let op = Op::MultiRead {
            keys: self.keys.clone(),
        };
        (F::Txn, op, value, None)
    }

    fn write(&mut self, key_no: usize) -> (F, Op, Value, Option<usize>) {
        let v = self.fresh_value(key_no);
        let op = Op::Write {
            key: self.key(key_no),
            value: v.into(),
        };
        (F::Write, op, json!(v), Some(key_no))
    }

    fn cas(&mut self, key_no: usize, rng: &mut StdRng) -> (F, Op, Value, Option<usize>) {
        let old = &self.written[key_no];
        let expected = if old.is_empty() {
            Value::Null
        } else {
            json!(old[rng.gen_range(0..old.len())])
        };
        let new = self.fresh_value(key_no);
        let value = json!([expected, new]);
        let op = Op::Cas {
            key: self.key(key_no),
            expected,
            new: new.into(),
        };
        (F::Cas, op, value, Some(key_no))
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
            _ if to_leader => *self.list[c].session.leader_guess.get_or_insert(random),
            ReadMode::Sticky => c % self.nodes,
            _ => random,
        }
    }

    /// Client `c` hears `answer` from `node`. Returns whether it is free
    /// for its next operation.
    pub fn complete(&mut self, c: usize, now_ms: u64, node: &str, answer: &Answer, names: &[String]) -> bool {
        self.list[c].session.learn(answer, names);
        let Some(inflight) = self.list[c].inflight.take() else {
            return false;
        };
        let (kind, value, error) = match answer.outcome {
            Outcome::Ok if inflight.f == F::Txn => (EventType::Ok, self.snapshot_read(&answer.value), None),
            Outcome::Ok if inflight.f == F::Read => (EventType::Ok, answer.value.clone(), None),
            Outcome::Ok => (EventType::Ok, inflight.input, None),
            Outcome::Fail => (EventType::Fail, Value::Null, Some(fail_reason(&inflight.f, answer))),
            Outcome::Unknown => (EventType::Info, Value::Null, answer.error.clone()),
        };
        // A final reader only reads (its key, or every key at once).
        if kind == EventType::Ok && self.list[c].final_key.is_some() {
            self.list[c].done = true;
        }
        self.record(c, now_ms, kind, inflight.f, inflight.key_no, value, Some(node), error);
        true
    }

    /// A multi-key read's answer (key to value) as the history holds it:
    /// the micro-ops in the order invoked, each read filled in.
    fn snapshot_read(&self, read: &Value) -> Value {
        let value_of = |k: &String| read.get(k.as_str()).cloned().unwrap_or(Value::Null);
        Value::Array(self.keys.iter().map(|k| json!(["r", k, value_of(k)])).collect())
    }

    /// Client `c`'s request `token` got no answer in time: unknown.
    pub fn time_out(&mut self, c: usize, now_ms: u64) {
        let Some(inflight) = self.list[c].inflight.take() else {
            return;
        };
        self.list[c].session.leader_guess = None;
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

    /// Records one event of client `c`.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        c: usize,
        now_ms: u64,
        kind: EventType,
        f: F,
        key_no: Option<usize>,
        value: Value,
        node: Option<&str>,
        error: Option<String>,
    ) {
        let entry = Entry {
            kind,
            f,
            value,
            key: key_no.map(|k| self.keys[k].as_str()),
            node,
            error,
        };
        self.recorder.record(&mut self.list[c].session, now_ms, entry);
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
