//! Hinted handoff: writes kept for replicas that did not acknowledge them
//! (or, on a sloppy quorum's stand-in, for their real owner), replayed in
//! rounds until the owner acknowledges.
//!
//! Promises:
//! - At most [`HINTS_MAX`] hints are kept; past it the oldest is dropped
//!   (and logged): a bounded store, as Dynamo's is.
//! - One replay round at a time, of at most [`HINT_ROUND_MAX`] hints, every
//!   [`HINT_PERIOD_MS`]; a hint is forgotten only when every hint of its
//!   round for the same owner was acknowledged (an owner that acknowledged
//!   some of them is asked again for all, which last write wins makes
//!   harmless).

use super::replica::AckTo;
use super::{LeaderlessCore, Message, PutAck};
use crate::state::Stamp;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use tracing::{debug, warn};

/// Most hints kept for unreachable replicas; the oldest are dropped beyond.
pub const HINTS_MAX: usize = 100_000;
/// Most hints replayed per round.
pub const HINT_ROUND_MAX: usize = 1000;
/// Time between two replay rounds.
pub const HINT_PERIOD_MS: u64 = 200;
/// How long a round waits for the owners' acknowledgements.
pub const HINT_ROUND_WAIT_MS: u64 = 500;

/// A write kept for `target`.
#[derive(Debug, Clone)]
pub(super) struct Hint {
    pub target: String,
    pub key: String,
    pub value: Value,
    pub stamp: Stamp,
}

/// One replay round in flight.
pub(super) struct HintRound {
    /// Hints sent, per owner.
    sent: BTreeMap<String, usize>,
    /// Acknowledgements heard, per owner.
    acks: BTreeMap<String, usize>,
    /// The round's hints, by (owner, key, stamp).
    batch: BTreeSet<(String, String, Stamp)>,
    deadline_ms: u64,
}

impl HintRound {
    /// Counts an acknowledgement; true when every owner has acknowledged
    /// all its hints (the round may end early).
    pub(super) fn on_ack(&mut self, from: &str) -> bool {
        if let Some(n) = self.acks.get_mut(from) {
            *n += 1;
        }
        self.sent.iter().all(|(t, n)| self.acks.get(t) >= Some(n))
    }

    pub(super) fn due(&self, now_ms: u64) -> bool {
        now_ms >= self.deadline_ms
    }
}

/// The hint store.
#[derive(Default)]
pub(super) struct Hints {
    list: VecDeque<Hint>,
    /// The request id of the round in flight.
    round: Option<u64>,
    next_round_ms: u64,
}

impl Hints {
    /// Hints held per owner.
    pub(super) fn per_target(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for h in &self.list {
            *out.entry(h.target.clone()).or_insert(0) += 1;
        }
        out
    }
}

impl LeaderlessCore {
    /// Keeps a write for `hint.target`.
    pub(super) fn add_hint(&mut self, hint: Hint) {
        let hints = &mut self.hints.list;
        if hints.len() >= HINTS_MAX {
            hints.pop_front();
            warn!(node = %self.cfg.node, "hint store full; oldest hint dropped");
        }
        hints.push_back(hint);
        assert!(self.hints.list.len() <= HINTS_MAX, "the hint store past its bound");
    }

    /// Tick: starts a replay round when one is due and none is in flight.
    pub(super) fn hint_tick(&mut self) {
        if self.hints.round.is_some() || self.now_ms < self.hints.next_round_ms {
            return;
        }
        self.hints.next_round_ms = self.now_ms + HINT_PERIOD_MS;
        if self.hints.list.is_empty() {
            return;
        }
        let batch: Vec<Hint> = self.hints.list.iter().take(HINT_ROUND_MAX).cloned().collect();
        let req_id = self.next_req_id();
        let mut round = HintRound {
            sent: BTreeMap::new(),
            acks: BTreeMap::new(),
            batch: BTreeSet::new(),
            deadline_ms: self.now_ms + HINT_ROUND_WAIT_MS,
        };
        for h in batch {
            *round.sent.entry(h.target.clone()).or_insert(0) += 1;
            round.acks.entry(h.target.clone()).or_insert(0);
            round.batch.insert((h.target.clone(), h.key.clone(), h.stamp.clone()));
            self.send_put(&h.target, req_id, h.key, h.value, h.stamp, None);
        }
        self.hints.round = Some(req_id);
        self.rounds.insert(req_id, super::Round::Hints(round));
    }

    /// A round ended (all acknowledged, or its wait is over): forgets the
    /// hints of every owner that acknowledged all of its own.
    pub(super) fn end_hint_round(&mut self, req_id: u64, round: HintRound) {
        assert_eq!(self.hints.round, Some(req_id), "one hint round at a time");
        self.hints.round = None;
        let caught_up: BTreeSet<&String> = round
            .sent
            .iter()
            .filter(|(t, n)| round.acks.get(*t) >= Some(n))
            .map(|(t, _)| t)
            .collect();
        let delivered = |h: &Hint| {
            caught_up.contains(&h.target)
                && round
                    .batch
                    .contains(&(h.target.clone(), h.key.clone(), h.stamp.clone()))
        };
        let before = self.hints.list.len();
        self.hints.list.retain(|h| !delivered(h));
        let gone = before - self.hints.list.len();
        if gone > 0 {
            debug!(node = %self.cfg.node, delivered = gone, left = self.hints.list.len(), "hints delivered");
        }
    }

    /// A stand-in keeps a sloppy-quorum write for its real owner and
    /// acknowledges at once (the hint is what it stores).
    pub(super) fn on_hinted_put(&mut self, from: &str, req_id: u64, hint: Hint) {
        self.add_hint(hint);
        self.ack_to(AckTo::Remote {
            to: from.to_string(),
            req_id,
        });
    }

    /// Sends the acknowledgement of a durable (or hinted) write.
    pub(super) fn ack_to(&mut self, ack: AckTo) {
        match ack {
            AckTo::Local(req_id) => {
                let me = self.cfg.node.clone();
                self.on_put_ack(&me, req_id);
            }
            AckTo::Remote { to, req_id } => self.send(&to, Message::PutAck(PutAck { req_id })),
            AckTo::Nobody => {}
        }
    }
}
