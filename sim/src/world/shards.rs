//! The node layer between the clients and a node's cores: which member
//! serves a request, how a request across shards is split, and what a
//! core's forward means.
//!
//! Promises:
//! - **One shard.** A client's request goes to the node's one core, and a
//!   forward is a certain failure naming the leader (the simulated clients
//!   call the leader themselves, as the harness's client does after a
//!   redirect).
//! - **Several shards (`shards=K`), as the server's node does it.** Keys
//!   go to shards by the server's own routing
//!   ([`faultline_server::node::shard_of`]). A single-key request, or a
//!   transaction whose keys all live on one shard, goes to that shard's
//!   member on the node the client called. A multi-key read is read shard
//!   after shard, in shard order, each piece from that node's member, and
//!   merged (each piece consistent, the whole not a snapshot: the server's
//!   `sharded_multi_read`). A transaction across shards runs under
//!   `shard_txn=none` as one piece per shard, in shard order, each a
//!   transaction of its own shard's group (the server's `txn_in_pieces`):
//!   `ok` when every piece committed, `fail` when none did, `unknown`
//!   otherwise. A member that does not lead its shard forwards the request
//!   to the leader over the simulated network, and the answer comes back
//!   the same way; either may be lost or cut off, and the client then
//!   times out. `shard_txn=2pc` is refused: the simulation has no
//!   two-phase coordinator.

use super::{Event, World};
use crate::cores::Driven;
use faultline_server::config::{Config, Settings, ShardTxn};
use faultline_server::core::{Answer, Op, Outcome, Request};
use faultline_server::node::shard_of;
use faultline_server::state::TxnOp;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, VecDeque};

/// The node layer's tokens start here, far above the clients' (which
/// count from 1), so an answer's token says whose request it was.
const LAYER_TOKENS_FROM: u64 = 1 << 48;

/// Each shard's first leader: the node the server's configuration names
/// for it ([`Config::initial_leader`]: shard s on the (s+1)-th node).
pub(super) fn initial_leaders(names: &[String], settings: &Settings) -> Vec<String> {
    let cfg = Config {
        node_id: names[0].clone(),
        listen: ([127, 0, 0, 1], 0).into(),
        data_dir: std::path::PathBuf::new(),
        peers: names[1..].iter().map(|n| (n.clone(), String::new())).collect(),
        settings: settings.clone(),
    };
    (0..settings.shards.max(1)).map(|s| cfg.initial_leader(s)).collect()
}

/// The node layer's own traffic between nodes.
#[derive(Debug)]
pub(super) enum Hop {
    /// A request forwarded to its shard's leader.
    Forward { to: usize, shard: usize, req: Request },
    /// The leader's answer, back to the node that forwarded it.
    Back { to: usize, token: u64, answer: Answer },
    /// A forward's deadline (the core's `request_timeout_ms`).
    Expire { token: u64 },
}

/// One shard's piece of a split request: the shard, the places of its
/// micro-ops in the whole (transactions), and its operation.
struct Piece {
    shard: usize,
    at: Vec<usize>,
    op: Op,
}

/// A client's request being served piece by piece at `node`.
struct Split {
    node: usize,
    client_token: u64,
    id: u64,
    min_lsn: u64,
    /// Pieces not yet sent, in shard order.
    pending: VecDeque<Piece>,
    /// The piece in flight's places.
    at: Vec<usize>,
    shard: usize,
    /// A multi-key read: the keys read so far, and their values.
    merged: Option<Map<String, Value>>,
    /// A transaction: its micro-ops (each null until its piece answers),
    /// and each piece's outcome.
    done: Vec<Value>,
    outcomes: Vec<(usize, Answer)>,
}

/// What the node layer keeps in flight.
pub(super) struct Layer {
    shards: usize,
    next_token: u64,
    /// Split requests, by the token of their piece in flight.
    splits: BTreeMap<u64, Split>,
    /// Forwarded requests, by token: the node that forwarded each, and
    /// the request's id.
    forwarded: BTreeMap<u64, (usize, u64)>,
}

impl Layer {
    pub(super) fn new(settings: &Settings) -> Layer {
        let shards = settings.shards.max(1);
        assert!(
            shards == 1 || settings.shard_txn == ShardTxn::None,
            "the simulation has no two-phase coordinator: shard_txn=2pc is not simulated"
        );
        Layer {
            shards,
            next_token: LAYER_TOKENS_FROM,
            splits: BTreeMap::new(),
            forwarded: BTreeMap::new(),
        }
    }

    /// Whether `token` names a request the layer split or forwarded.
    pub(super) fn owns(&self, token: u64) -> bool {
        self.splits.contains_key(&token) || self.forwarded.contains_key(&token)
    }

    /// Whether a piece the layer sent waits at `node`.
    pub(super) fn waits_at(&self, node: usize) -> bool {
        self.splits.values().any(|s| s.node == node)
    }

    /// `node` died: what it was splitting is gone (its clients time out).
    pub(super) fn crashed(&mut self, node: usize) {
        self.splits.retain(|_, s| s.node != node);
    }

    /// The shard that serves `op` alone, or None when it spans shards.
    fn shard_of_op(&self, op: &Op) -> Option<usize> {
        let keys: Vec<&str> = match op {
            Op::Read { key } | Op::Write { key, .. } | Op::Cas { key, .. } | Op::Append { key, .. } => vec![key],
            Op::Txn { ops } => ops.iter().map(TxnOp::key).collect(),
            Op::MultiRead { .. } | Op::TwoPhase(_) => return None,
        };
        let first = shard_of(keys.first()?, self.shards);
        keys.iter().all(|k| shard_of(k, self.shards) == first).then_some(first)
    }

    /// `op`'s pieces, one per shard it touches, in shard order.
    fn pieces(&self, op: Op) -> VecDeque<Piece> {
        let mut by_shard: Vec<Piece> = (0..self.shards)
            .map(|shard| Piece {
                shard,
                at: Vec::new(),
                op: Op::MultiRead { keys: Vec::new() },
            })
            .collect();
        match op {
            Op::MultiRead { keys } => {
                for key in keys {
                    let piece = &mut by_shard[shard_of(&key, self.shards)];
                    if let Op::MultiRead { keys } = &mut piece.op {
                        keys.push(key);
                    }
                }
            }
            Op::Txn { ops } => {
                for (i, op) in ops.into_iter().enumerate() {
                    let piece = &mut by_shard[shard_of(op.key(), self.shards)];
                    piece.at.push(i);
                    match &mut piece.op {
                        Op::Txn { ops } => ops.push(op),
                        other => *other = Op::Txn { ops: vec![op] },
                    }
                }
            }
            other => unreachable!("only multi-key reads and transactions are split: {other:?}"),
        }
        let touched = |p: &Piece| !matches!(&p.op, Op::MultiRead { keys } if keys.is_empty());
        by_shard.into_iter().filter(touched).collect()
    }
}

impl<C: Driven> World<C> {
    /// A client's request reaches `node`.
    pub(super) fn client_request(&mut self, node: usize, req: Request) {
        if self.layer.shards == 1 {
            return self.serve_at(node, 0, req);
        }
        if let Some(shard) = self.layer.shard_of_op(&req.op) {
            return self.serve_at(node, shard, req);
        }
        if !self.is_up(node) {
            let answer = Answer::fail(req.id, "connection refused");
            return self.answered(node, req.token, &answer);
        }
        let multi_read = matches!(req.op, Op::MultiRead { .. });
        let length = match &req.op {
            Op::Txn { ops } => ops.len(),
            _ => 0,
        };
        let split = Split {
            node,
            client_token: req.token,
            id: req.id,
            min_lsn: req.min_lsn,
            pending: self.layer.pieces(req.op),
            at: Vec::new(),
            shard: 0,
            merged: multi_read.then(Map::new),
            done: vec![Value::Null; length],
            outcomes: Vec::new(),
        };
        self.next_piece(split);
    }

    /// Sends `split`'s next piece, or answers its client when none is left.
    fn next_piece(&mut self, mut split: Split) {
        let Some(piece) = split.pending.pop_front() else {
            let answer = whole_answer(&mut split);
            return self.answered(split.node, split.client_token, &answer);
        };
        self.layer.next_token += 1;
        let token = self.layer.next_token;
        let req = Request {
            token,
            id: split.id,
            op: piece.op,
            min_lsn: split.min_lsn,
            forwarded: false,
        };
        let (node, shard) = (split.node, piece.shard);
        split.at = piece.at;
        split.shard = shard;
        self.layer.splits.insert(token, split);
        self.serve_at(node, shard, req);
    }

    /// `node` answered `token`, a request the layer owns: a forwarded one
    /// goes back to the node that forwarded it; a piece joins its whole.
    pub(super) fn layer_answered(&mut self, node: usize, token: u64, answer: &Answer) {
        if let Some((origin, _)) = self.layer.forwarded.remove(&token) {
            let back = Hop::Back {
                to: origin,
                token,
                answer: answer.clone(),
            };
            return self.hop(node, origin, back);
        }
        let Some(mut split) = self.layer.splits.remove(&token) else {
            return;
        };
        if let Some(merged) = split.merged.as_mut() {
            if answer.outcome != Outcome::Ok {
                let client_token = split.client_token;
                return self.answered(split.node, client_token, answer);
            }
            if let Value::Object(part) = &answer.value {
                merged.extend(part.clone());
            }
        } else {
            // Each completed micro-op back at its place in the whole.
            if let Value::Array(values) = &answer.value {
                for (&i, v) in split.at.iter().zip(values) {
                    split.done[i] = v.clone();
                }
            }
            split.outcomes.push((split.shard, answer.clone()));
        }
        self.next_piece(split);
    }

    /// `node`'s member of `shard` does not lead it: with one shard the
    /// client hears so; with several the node forwards the request, as the
    /// server's group does (a leader it cannot reach, cut off or down, is
    /// a certain failure at once; an answer that does not come back within
    /// the request timeout is unknown).
    pub(super) fn forward(&mut self, node: usize, shard: usize, mut req: Request, leader: String) {
        let to = self.names.iter().position(|n| *n == leader);
        let reachable = |w: &Self, to: usize| !w.net.is_cut(node, to) && w.is_up(to);
        let (true, Some(to)) = (self.layer.shards > 1, to.filter(|&to| reachable(self, to))) else {
            let why = if self.layer.shards > 1 {
                "leader unreachable"
            } else {
                "not the leader"
            };
            let mut answer = Answer::fail(req.id, why);
            answer.leader_hint = Some(leader);
            return self.answered(node, req.token, &answer);
        };
        self.layer.forwarded.insert(req.token, (node, req.id));
        let expire = Hop::Expire { token: req.token };
        self.schedule(
            self.now + self.settings.request_timeout_ms,
            Event::Shards(Box::new(expire)),
        );
        req.forwarded = true;
        self.hop(node, to, Hop::Forward { to, shard, req });
    }

    /// Carries `hop` from `from` to `to` over the links (lost when cut).
    fn hop(&mut self, from: usize, to: usize, hop: Hop) {
        if let Some(delay) = self.net.delay(from, to, &mut self.rng) {
            self.schedule(self.now + delay, Event::Shards(Box::new(hop)));
        }
    }

    /// A hop reaches its node; a node that is down hears nothing.
    pub(super) fn hop_arrives(&mut self, hop: Hop) {
        match hop {
            Hop::Forward { to, shard, req } if self.is_up(to) => self.serve_at(to, shard, req),
            Hop::Back { to, token, answer } if self.is_up(to) => self.answered(to, token, &answer),
            Hop::Expire { token } => {
                let Some((origin, id)) = self.layer.forwarded.remove(&token) else {
                    return;
                };
                if self.is_up(origin) {
                    let answer = Answer::unknown(id, "forward to leader timed out");
                    self.answered(origin, token, &answer);
                }
            }
            Hop::Forward { .. } | Hop::Back { .. } => {}
        }
    }
}

/// The whole request's answer from its pieces': a multi-key read's merged
/// values (no one LSN: several groups answered); a transaction's `ok` when
/// every piece committed, `fail` when none did, `unknown` otherwise.
fn whole_answer(split: &mut Split) -> Answer {
    if let Some(merged) = split.merged.take() {
        let mut answer = Answer::ok(split.id);
        answer.value = Value::Object(merged);
        return answer;
    }
    let outcomes = &split.outcomes;
    if outcomes.iter().all(|(_, a)| a.outcome == Outcome::Ok) {
        let mut answer = Answer::ok(split.id);
        answer.value = Value::Array(std::mem::take(&mut split.done));
        return answer;
    }
    if outcomes.iter().all(|(_, a)| a.outcome == Outcome::Fail) {
        let why = outcomes[0].1.error.clone().unwrap_or_default();
        return Answer::fail(split.id, why);
    }
    let piece = |(shard, a): &(usize, Answer)| format!("shard {shard} {:?}", a.outcome);
    let each = outcomes.iter().map(piece).collect::<Vec<_>>().join(", ");
    Answer::unknown(
        split.id,
        format!("shard_txn=none: the transaction may be partly applied ({each})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn split(outcomes: Vec<(usize, Answer)>) -> Split {
        Split {
            node: 0,
            client_token: 1,
            id: 1,
            min_lsn: 0,
            pending: VecDeque::new(),
            at: Vec::new(),
            shard: 0,
            merged: None,
            done: vec![json!(["r", "k0", [1]]), json!(["append", "k1", 2])],
            outcomes,
        }
    }

    #[test]
    fn a_transaction_is_ok_only_when_every_piece_is_and_fails_only_when_none_committed() {
        let fail = || Answer::fail(1, "aborted: conflict");
        let both = whole_answer(&mut split(vec![(0, Answer::ok(1)), (1, Answer::ok(1))]));
        assert_eq!(both.outcome, Outcome::Ok);
        assert_eq!(both.value, json!([["r", "k0", [1]], ["append", "k1", 2]]));
        let none = whole_answer(&mut split(vec![(0, fail()), (1, fail())]));
        assert_eq!(
            (none.outcome, none.error.as_deref()),
            (Outcome::Fail, Some("aborted: conflict"))
        );
        let part = whole_answer(&mut split(vec![(0, Answer::ok(1)), (1, fail())]));
        assert_eq!(part.outcome, Outcome::Unknown, "{part:?}");
    }

    #[test]
    fn requests_split_by_the_servers_routing_in_shard_order_with_their_places() {
        let settings = Settings::parse("shards=2").expect("settings");
        let layer = Layer::new(&settings);
        let key = |k: &str| k.to_string();
        let ops = ["k0", "k1", "k2"].map(|k| TxnOp::Read { key: key(k) }).to_vec();
        let pieces = layer.pieces(Op::Txn { ops });
        let shape: Vec<(usize, Vec<usize>)> = pieces.iter().map(|p| (p.shard, p.at.clone())).collect();
        let want: Vec<(usize, Vec<usize>)> = [0, 1]
            .into_iter()
            .map(|s| {
                (
                    s,
                    (0..3)
                        .filter(|i| shard_of(&format!("k{i}"), 2) == s)
                        .collect::<Vec<usize>>(),
                )
            })
            .filter(|(_, at)| !at.is_empty())
            .collect();
        assert_eq!(shape, want);
        assert_eq!(pieces.len(), 2, "k0..k2 live on both shards");
        let read = layer.pieces(Op::MultiRead {
            keys: vec![key("k1"), key("k0")],
        });
        let keys: Vec<&Op> = read.iter().map(|p| &p.op).collect();
        assert_eq!(
            keys,
            [
                &Op::MultiRead { keys: vec![key("k0")] },
                &Op::MultiRead { keys: vec![key("k1")] }
            ]
        );
        assert_eq!(layer.shard_of_op(&Op::Read { key: key("k1") }), Some(shard_of("k1", 2)));
    }
}
