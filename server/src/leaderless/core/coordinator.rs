//! The coordinator: a client request becomes rounds of messages to the
//! key's replicas (a quorum read, a quorum write, or both for cas and
//! append), and an answer.
//!
//! Promises:
//! - Every request is answered exactly once: a read round ends at `r`
//!   answers or its deadline (`request_timeout_ms`), a write round answers
//!   at `w` acknowledgements or its deadline.
//! - A write answered `ok` had `w` acknowledgements from distinct nodes,
//!   each sent only once the write was durable there (or, under
//!   `sloppy_quorum`, once a stand-in holds it as a hint); below `w` it is
//!   `unknown` (some replicas may hold it). Asserted where it is answered.
//! - A read returns the value with the newest stamp among its answers;
//!   `read_repair` writes that value back to older responders.
//! - After answering, a write round keeps listening until its deadline and
//!   then, under `hinted_handoff` (always in multi-leader mode), keeps a
//!   hint for each replica that never acknowledged.
//! - cas and append are read-modify-write here, not atomic: that is what
//!   these systems offer without a consensus path.

use super::hints::Hint;
use super::replica::AckTo;
use super::{Get, LeaderlessCore, Message, Put, Round};
use crate::core::{Answer, Op, Request};
use crate::protocol::{json_len_capped, reply_too_large};
use crate::state::Stamp;
use serde_json::Value;
use std::collections::BTreeSet;
use tracing::debug;

/// A client request being served.
pub(super) struct ClientOp {
    id: u64,
    op: Op,
    /// Multi-key reads: the next key and what was read so far.
    next_key: usize,
    read: serde_json::Map<String, Value>,
    read_bytes: usize,
}

/// A quorum read in flight.
pub(super) struct ReadRound {
    token: u64,
    key: String,
    fallbacks: Vec<String>,
    answers: Vec<(String, Value, Option<Stamp>)>,
    deadline_ms: u64,
    sloppy_at_ms: Option<u64>,
}

/// A write in flight (answered or not: it waits for every target).
pub(super) struct WriteRound {
    /// The request to answer, until it is answered.
    token: Option<u64>,
    key: String,
    value: Value,
    stamp: Stamp,
    targets: Vec<String>,
    fallbacks: Vec<String>,
    acked: BTreeSet<String>,
    need: usize,
    deadline_ms: u64,
    sloppy_at_ms: Option<u64>,
    /// Multi-leader: the local copy comes first, the peers after it.
    local_first: bool,
}

/// A round's end, handed back to its request.
pub(super) enum Done {
    Read(Result<Value, String>),
    Write(Answer),
}

impl LeaderlessCore {
    /// Takes a client request.
    pub(super) fn on_client(&mut self, req: Request) {
        if let Op::Txn { .. } | Op::TwoPhase(_) = req.op {
            let answer = Answer::fail(req.id, "leaderless mode does not execute transactions");
            return self.answer(req.token, answer);
        }
        let op = ClientOp {
            id: req.id,
            op: req.op,
            next_key: 0,
            read: serde_json::Map::new(),
            read_bytes: 0,
        };
        let first = match &op.op {
            Op::Write { key, value } => Err((key.clone(), value.clone())),
            Op::Read { key } | Op::Cas { key, .. } | Op::Append { key, .. } => Ok(Some(key.clone())),
            Op::MultiRead { keys } => Ok(keys.first().cloned()),
            Op::Txn { .. } | Op::TwoPhase(_) => unreachable!("answered above"),
        };
        self.ops.insert(req.token, op);
        match first {
            Ok(Some(key)) => self.start_read(req.token, key),
            Ok(None) => self.done.push_back((req.token, Done::Read(Ok(Value::Null)))),
            Err((key, value)) => self.start_write(req.token, key, value),
        }
    }

    /// Reads `key` for request `token` (multi-leader: from the local store).
    fn start_read(&mut self, token: u64, key: String) {
        if self.multi {
            let value = self.replica.get(&key).0;
            return self.done.push_back((token, Done::Read(Ok(value))));
        }
        let (prefs, fallbacks) = self.ring(&key);
        let req_id = self.next_req_id();
        let round = ReadRound {
            token,
            key: key.clone(),
            fallbacks,
            answers: Vec::new(),
            deadline_ms: self.now_ms + self.timeout_ms(),
            sloppy_at_ms: self.sloppy_at(),
        };
        self.rounds.insert(req_id, Round::Read(round));
        for p in &prefs {
            self.send_get(p, req_id, &key);
        }
    }

    /// Writes `value` at `key` with a new stamp for request `token`.
    fn start_write(&mut self, token: u64, key: String, value: Value) {
        let stamp = self.new_stamp();
        let req_id = self.next_req_id();
        let (targets, fallbacks, need) = if self.multi {
            (vec![self.cfg.node.clone()], Vec::new(), 1)
        } else {
            let (prefs, fallbacks) = self.ring(&key);
            (prefs, fallbacks, self.w)
        };
        let round = WriteRound {
            token: Some(token),
            key: key.clone(),
            value: value.clone(),
            stamp: stamp.clone(),
            targets: targets.clone(),
            fallbacks,
            acked: BTreeSet::new(),
            need,
            deadline_ms: self.now_ms + self.timeout_ms(),
            sloppy_at_ms: if self.multi { None } else { self.sloppy_at() },
            local_first: self.multi,
        };
        self.rounds.insert(req_id, Round::Write(round));
        for t in targets {
            self.send_put(&t, req_id, key.clone(), value.clone(), stamp.clone(), None);
        }
    }

    /// Sends a write to `to` (this node's own store when `to` is this node).
    pub(super) fn send_put(
        &mut self,
        to: &str,
        req_id: u64,
        key: String,
        value: Value,
        stamp: Stamp,
        hint_for: Option<String>,
    ) {
        if to != self.cfg.node {
            let put = Put {
                req_id,
                key,
                value,
                stamp,
                hint_for,
            };
            return self.send(to, Message::Put(put));
        }
        match hint_for {
            Some(target) => {
                self.add_hint(Hint {
                    target,
                    key,
                    value,
                    stamp,
                });
                self.ack_to(AckTo::Local(req_id));
            }
            None => {
                let ack = if req_id == 0 {
                    AckTo::Nobody
                } else {
                    AckTo::Local(req_id)
                };
                self.replica.put(key, value, stamp, ack, true, self.now_ms);
            }
        }
    }

    fn send_get(&mut self, to: &str, req_id: u64, key: &str) {
        if to == self.cfg.node {
            let (value, stamp) = self.replica.get(key);
            let me = self.cfg.node.clone();
            return self.on_get_resp(&me, req_id, value, stamp);
        }
        let key = key.to_string();
        self.send(to, Message::Get(Get { req_id, key }));
    }

    /// An answer to one of this node's reads.
    pub(super) fn on_get_resp(&mut self, from: &str, req_id: u64, value: Value, stamp: Option<Stamp>) {
        let Some(Round::Read(round)) = self.rounds.get_mut(&req_id) else {
            return;
        };
        if !round.answers.iter().any(|(f, _, _)| f == from) {
            round.answers.push((from.to_string(), value, stamp));
        }
        if round.answers.len() >= self.r {
            self.end_read(req_id);
        }
    }

    /// An acknowledgement of one of this node's writes (or hint rounds).
    pub(super) fn on_put_ack(&mut self, from: &str, req_id: u64) {
        let all_in = match self.rounds.get_mut(&req_id) {
            Some(Round::Write(round)) => {
                round.acked.insert(from.to_string());
                self.after_write_ack(req_id);
                return;
            }
            Some(Round::Hints(round)) => round.on_ack(from),
            Some(Round::Read(_)) | None => return,
        };
        if all_in {
            if let Some(Round::Hints(round)) = self.rounds.remove(&req_id) {
                self.end_hint_round(req_id, round);
            }
        }
    }

    fn after_write_ack(&mut self, req_id: u64) {
        let me = self.cfg.node.clone();
        let Some(Round::Write(round)) = self.rounds.get_mut(&req_id) else {
            return;
        };
        if round.local_first && round.acked.contains(&me) {
            let token = round.token.take();
            self.ship_to_peers(req_id);
            if let Some(token) = token {
                let id = self.ops.get(&token).map_or(0, |o| o.id);
                self.done.push_back((token, Done::Write(Answer::ok(id))));
            }
            return;
        }
        if round.acked.len() >= round.need {
            if let Some(token) = round.token.take() {
                assert!(round.acked.len() >= round.need, "ok below the write quorum");
                let id = self.ops.get(&token).map_or(0, |o| o.id);
                self.done.push_back((token, Done::Write(Answer::ok(id))));
            }
        }
        if round.targets.iter().all(|t| round.acked.contains(t)) {
            self.end_write(req_id);
        }
    }

    /// Multi-leader: the local copy is durable (or its wait is over), so
    /// the write goes to every other node, kept as a hint until they have it.
    fn ship_to_peers(&mut self, req_id: u64) {
        let peers: Vec<String> = self
            .cfg
            .members
            .iter()
            .filter(|m| **m != self.cfg.node)
            .cloned()
            .collect();
        let deadline_ms = self.now_ms + self.timeout_ms();
        let Some(Round::Write(round)) = self.rounds.get_mut(&req_id) else {
            return;
        };
        round.local_first = false;
        round.targets = peers.clone();
        round.acked.clear();
        round.deadline_ms = deadline_ms;
        let (key, value, stamp) = (round.key.clone(), round.value.clone(), round.stamp.clone());
        for p in &peers {
            self.send_put(p, req_id, key.clone(), value.clone(), stamp.clone(), None);
        }
    }

    /// Tick: rounds past their deadline end, sloppy quorums call stand-ins.
    pub(super) fn round_tick(&mut self) {
        let now = self.now_ms;
        let mut late = Vec::new();
        let mut sloppy = Vec::new();
        for (req_id, round) in self.rounds.iter_mut() {
            let (deadline_ms, sloppy_at) = match round {
                Round::Read(r) => (r.deadline_ms, &mut r.sloppy_at_ms),
                Round::Write(w) => (w.deadline_ms, &mut w.sloppy_at_ms),
                Round::Hints(h) => (if h.due(now) { now } else { u64::MAX }, &mut None),
            };
            if deadline_ms <= now {
                late.push(*req_id);
            } else if sloppy_at.is_some_and(|at| at <= now) {
                *sloppy_at = None;
                sloppy.push(*req_id);
            }
        }
        for req_id in sloppy {
            self.call_stand_ins(req_id);
        }
        for req_id in late {
            self.round_timed_out(req_id);
        }
    }

    fn round_timed_out(&mut self, req_id: u64) {
        match self.rounds.get_mut(&req_id) {
            Some(Round::Read(_)) => self.end_read(req_id),
            Some(Round::Write(w)) if w.local_first => {
                if let Some(token) = w.token.take() {
                    let id = self.ops.get(&token).map_or(0, |o| o.id);
                    let answer = Answer::unknown(id, "local log did not confirm in time");
                    self.done.push_back((token, Done::Write(answer)));
                }
                self.ship_to_peers(req_id);
            }
            Some(Round::Write(_)) => self.end_write(req_id),
            Some(Round::Hints(_)) => {
                if let Some(Round::Hints(round)) = self.rounds.remove(&req_id) {
                    self.end_hint_round(req_id, round);
                }
            }
            None => {}
        }
    }

    /// Sloppy quorum: nodes outside the preference list stand in.
    fn call_stand_ins(&mut self, req_id: u64) {
        match self.rounds.get(&req_id) {
            Some(Round::Read(r)) => {
                let want = self.r.saturating_sub(r.answers.len());
                let stand_ins: Vec<String> = r.fallbacks.iter().take(want).cloned().collect();
                let key = r.key.clone();
                for s in stand_ins {
                    self.send_get(&s, req_id, &key);
                }
            }
            Some(Round::Write(w)) => {
                let missing = w.targets.iter().filter(|t| !w.acked.contains(*t)).cloned();
                let pairs: Vec<(String, String)> = w.fallbacks.iter().cloned().zip(missing).collect();
                let (key, value, stamp) = (w.key.clone(), w.value.clone(), w.stamp.clone());
                for (stand_in, owner) in pairs {
                    self.send_put(
                        &stand_in,
                        req_id,
                        key.clone(),
                        value.clone(),
                        stamp.clone(),
                        Some(owner),
                    );
                }
            }
            Some(Round::Hints(_)) | None => {}
        }
    }

    /// A read round ends: the newest answer, or a failure below `r`.
    fn end_read(&mut self, req_id: u64) {
        let Some(Round::Read(round)) = self.rounds.remove(&req_id) else {
            return;
        };
        if round.answers.len() < self.r {
            let why = format!("read quorum not reached: {} of {}", round.answers.len(), self.r);
            return self.done.push_back((round.token, Done::Read(Err(why))));
        }
        let newest = round
            .answers
            .iter()
            .max_by(|a, b| a.2.cmp(&b.2))
            .map(|(_, v, s)| (v.clone(), s.clone()))
            .unwrap_or((Value::Null, None));
        if self.cfg.settings.read_repair {
            self.repair(&round.key, &newest, &round.answers);
        }
        self.done.push_back((round.token, Done::Read(Ok(newest.0))));
    }

    /// Writes the newest value back to replicas that answered with older.
    fn repair(&mut self, key: &str, newest: &(Value, Option<Stamp>), answers: &[(String, Value, Option<Stamp>)]) {
        let Some(stamp) = &newest.1 else {
            return;
        };
        for (from, _, s) in answers {
            if s.as_ref() < Some(stamp) {
                debug!(node = %self.cfg.node, peer = %from, key, "read repair");
                self.send_put(from, 0, key.to_string(), newest.0.clone(), stamp.clone(), None);
            }
        }
    }

    /// A write round is over: answers `unknown` if it never reached `w`,
    /// and keeps hints for the targets that never acknowledged.
    fn end_write(&mut self, req_id: u64) {
        let Some(Round::Write(round)) = self.rounds.remove(&req_id) else {
            return;
        };
        if let Some(token) = round.token {
            let id = self.ops.get(&token).map_or(0, |o| o.id);
            let why = format!("write quorum not reached: {} of {}", round.acked.len(), round.need);
            self.done.push_back((token, Done::Write(Answer::unknown(id, why))));
        }
        if !(self.cfg.settings.hinted_handoff || self.multi) {
            return;
        }
        for target in round.targets.into_iter().filter(|t| !round.acked.contains(t)) {
            let (key, value, stamp) = (round.key.clone(), round.value.clone(), round.stamp.clone());
            self.add_hint(Hint {
                target,
                key,
                value,
                stamp,
            });
        }
    }

    /// Hands finished rounds back to their requests until none is left
    /// (a queue, not recursion: a multi-key read served locally finishes
    /// one round per key in one go).
    pub(super) fn settle(&mut self) {
        while let Some((token, done)) = self.done.pop_front() {
            match done {
                Done::Read(result) => self.after_read(token, result),
                Done::Write(answer) => {
                    self.ops.remove(&token);
                    self.answer(token, answer);
                }
            }
        }
    }

    /// The next step of request `token` once its read ended.
    fn after_read(&mut self, token: u64, result: Result<Value, String>) {
        let Some(op) = self.ops.get_mut(&token) else {
            return;
        };
        let id = op.id;
        let current = match result {
            Ok(v) => v,
            Err(why) => return self.finish(token, Answer::fail(id, why)),
        };
        match &op.op {
            Op::Read { .. } => self.finish(token, ok_value(id, current)),
            Op::MultiRead { .. } => self.multi_read_next(token, current),
            Op::Cas { key, expected, new } => {
                if current != *expected {
                    let why = format!("cas mismatch: current value is {current}");
                    return self.finish(token, Answer::fail(id, why));
                }
                let (key, new) = (key.clone(), new.clone());
                self.start_write(token, key, new);
            }
            Op::Append { key, value } => {
                let list = match current {
                    Value::Null => vec![value.clone()],
                    Value::Array(mut l) => {
                        l.push(value.clone());
                        l
                    }
                    other => {
                        return self.finish(token, Answer::fail(id, format!("append to a non-list value {other}")))
                    }
                };
                let key = key.clone();
                self.start_write(token, key, Value::Array(list));
            }
            Op::Write { .. } | Op::Txn { .. } | Op::TwoPhase(_) => {
                unreachable!("writes and transactions do not read first")
            }
        }
    }

    /// Multi-key reads read each key in turn; one that would not fit in a
    /// reply frame fails at once.
    fn multi_read_next(&mut self, token: u64, value: Value) {
        let room = self.cfg.read_bytes_max;
        let Some(op) = self.ops.get_mut(&token) else {
            return;
        };
        let Op::MultiRead { keys } = &op.op else {
            unreachable!("a multi-key read");
        };
        let (id, count) = (op.id, keys.len());
        if let Some(key) = keys.get(op.next_key).cloned() {
            op.read_bytes += key.len() + 4;
            match json_len_capped(&value, room.saturating_sub(op.read_bytes)) {
                Some(n) => op.read_bytes += n,
                None => {
                    let why = reply_too_large(&format!("reading {count} keys"));
                    return self.finish(token, Answer::fail(id, why));
                }
            }
            op.read.insert(key, value);
            op.next_key += 1;
        }
        match keys.get(op.next_key).cloned() {
            Some(next) => self.start_read(token, next),
            None => {
                let read = std::mem::take(&mut op.read);
                self.finish(token, ok_value(id, Value::Object(read)));
            }
        }
    }

    fn finish(&mut self, token: u64, answer: Answer) {
        self.ops.remove(&token);
        self.answer(token, answer);
    }
}

fn ok_value(id: u64, value: Value) -> Answer {
    let mut a = Answer::ok(id);
    a.value = value;
    a
}
