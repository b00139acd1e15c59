//! A transaction whose keys live on several shards, under `shard_txn=2pc`:
//! two-phase commit across the shards' groups, coordinated by the node the
//! client asked, with the decision logged in the first participant shard's
//! group (its "home", as Spanner keeps a transaction's commit record in
//! one participant's Paxos group), so it outlives the coordinator.
//!
//! Promises:
//! - **Phase 1.** Every participant shard's leader logs a PREPARE entry
//!   holding its piece: executed in log order (reads filled in), its writes
//!   kept aside and its keys locked until the decision.
//! - **Decision, durable first.** The decision (commit iff every piece
//!   answered `ok`) is logged at the home before any participant hears it;
//!   the home keeps the first decision logged for a transaction, so a
//!   recovery's abort and the coordinator's commit cannot both stand.
//! - **Phase 2.** Each participant logs COMMIT (applying the prepared
//!   writes atomically at that entry's position) or ABORT.
//! - **The reply.** `ok`, every read filled in, when the decision that
//!   stands is commit; `fail` (reason `aborted: ...`) when it is abort;
//!   `unknown` when the coordinator could not learn it in time. A
//!   coordinator that saw a piece fail knows the decision is abort even
//!   without hearing back from the home: only a coordinator that saw every
//!   piece prepared ever proposes commit.
//! - **Recovery.** Every node looks, every [`RECOVERY_ROUND_MS`] at most,
//!   for pieces its leaders have held prepared for `txn_recovery_ms`, asks
//!   their home for the decision (the home logs abort when there is none:
//!   the coordinator is gone or too slow) and logs it at the participant.
//!   Each round handles at most [`RECOVERY_BATCH_MAX`] pieces per shard
//!   and each request is bounded by the request timeout; what a round
//!   cannot finish the next one retries.

use super::Node;
use crate::core::TwoPhaseOp;
use crate::group::{txn_op, GroupHandle};
use crate::protocol::{MicroOp, Outcome, Reply, Request};
use crate::state::TxnOp;
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// Longest pause between two recovery rounds.
pub const RECOVERY_ROUND_MS: u64 = 500;
/// Most pieces one recovery round resolves per shard.
pub const RECOVERY_BATCH_MAX: usize = 64;

/// One shard's piece: the places of its micro-ops in the whole, and them.
struct Piece {
    shard: usize,
    at: Vec<usize>,
    ops: Vec<TxnOp>,
}

impl Node {
    /// Runs `ops` by two-phase commit (see the module's promises).
    pub(super) async fn txn_two_phase(
        &self,
        groups: &[GroupHandle],
        req: Request,
        ops: Vec<MicroOp>,
        timeout: Duration,
    ) -> Reply {
        let id = req.id;
        let total = ops.len();
        let pieces = self.pieces(ops);
        let Some(home) = pieces.first().map(|p| p.shard) else {
            return Reply::fail(id, "a transaction needs at least one micro-op");
        };
        let txn = self.next_txn_id();
        let prepares = pieces.iter().map(|p| {
            let op = TwoPhaseOp::Prepare {
                txn: txn.clone(),
                home: home as u32,
                ops: p.ops.clone(),
            };
            (p.shard, op)
        });
        let prepared = call_all(groups, prepares.collect(), id, timeout).await;
        let refusal = first_refusal(&pieces, &prepared);
        let decide = TwoPhaseOp::Decide {
            txn: txn.clone(),
            commit: refusal.is_none(),
        };
        let decided = groups[home].call_two_phase(id, decide, timeout).await;
        let commit = match (&decided.result, &decided.value, &refusal) {
            (Outcome::Ok, Value::Bool(c), _) => *c,
            (_, _, Some(_)) => false,
            _ => {
                let why = format!(
                    "2pc: every piece of {txn} prepared but the decision's home (shard {home}) did not answer: {}",
                    decided.error.as_deref().unwrap_or("no reason given")
                );
                return Reply::unknown(id, why);
            }
        };
        let resolves = pieces.iter().map(|p| {
            let op = TwoPhaseOp::Resolve {
                txn: txn.clone(),
                commit,
            };
            (p.shard, op)
        });
        // Waited for (bounded) so the client's next transaction finds the
        // locks gone; a participant that does not answer learns the
        // decision by recovery.
        call_all(groups, resolves.collect(), id, timeout).await;
        if !commit {
            let why = refusal.unwrap_or_else(|| {
                format!("aborted: the decision's home (shard {home}) had already aborted {txn} (recovery)")
            });
            return Reply::fail(id, why);
        }
        let mut reply = Reply::new(id, Outcome::Ok);
        reply.value = Value::Array(assemble(total, &pieces, &prepared));
        reply
    }

    /// Splits `ops` into one piece per shard, shards in ascending order.
    fn pieces(&self, ops: Vec<MicroOp>) -> Vec<Piece> {
        let mut pieces: Vec<Piece> = Vec::new();
        for (i, op) in ops.into_iter().enumerate() {
            let op = txn_op(op);
            let shard = self.shard_of(op.key());
            match pieces.iter_mut().find(|p| p.shard == shard) {
                Some(p) => {
                    p.at.push(i);
                    p.ops.push(op);
                }
                None => pieces.push(Piece {
                    shard,
                    at: vec![i],
                    ops: vec![op],
                }),
            }
        }
        pieces.sort_by_key(|p| p.shard);
        pieces
    }

    /// A transaction id no other coordinator, before or after a restart,
    /// gives out: node, a random number drawn at start, a counter.
    fn next_txn_id(&self) -> String {
        let n = self.txn_seq.fetch_add(1, Ordering::Relaxed);
        format!("{}.{:x}.{n}", self.cfg.node_id, self.txn_boot)
    }

    /// Resolves the pieces this node's leaders have held prepared too long
    /// (see the module's promise), round after round, forever.
    pub(super) async fn recover_prepared(self: Arc<Self>, groups: Vec<GroupHandle>) {
        let s = &self.cfg.settings;
        let (older_than_ms, timeout) = (s.txn_recovery_ms, Duration::from_millis(s.request_timeout_ms));
        let round = Duration::from_millis((older_than_ms / 4).clamp(10, RECOVERY_ROUND_MS));
        loop {
            tokio::time::sleep(round).await;
            for (shard, g) in groups.iter().enumerate() {
                for (txn, home) in g.stale_prepared(older_than_ms, RECOVERY_BATCH_MAX).await {
                    self.recover_one(&groups, shard, txn, home as usize, timeout).await;
                }
            }
        }
    }

    /// Asks `home` for the decision on `txn` (abort when none was logged)
    /// and logs it at `shard`.
    async fn recover_one(&self, groups: &[GroupHandle], shard: usize, txn: String, home: usize, timeout: Duration) {
        let node = &self.cfg.node_id;
        let Some(home_group) = groups.get(home) else {
            return warn!(node = %node, shard, txn, home, "prepared piece names a shard this node does not have");
        };
        let ask = TwoPhaseOp::Decide {
            txn: txn.clone(),
            commit: false,
        };
        let decided = home_group.call_two_phase(0, ask, timeout).await;
        let Value::Bool(commit) = decided.value else {
            return warn!(node = %node, shard, txn, home, error = ?decided.error, "recovery: the decision's home did not answer; next round retries");
        };
        let resolve = TwoPhaseOp::Resolve {
            txn: txn.clone(),
            commit,
        };
        let done = groups[shard].call_two_phase(0, resolve, timeout).await;
        info!(node = %node, shard, txn, home, commit, result = ?done.result, "recovery: resolved a prepared piece");
    }
}

/// Sends each `(shard, op)` to its shard's group at once and waits for
/// every answer (each bounded by `timeout`), in the order given.
async fn call_all(groups: &[GroupHandle], calls: Vec<(usize, TwoPhaseOp)>, id: u64, timeout: Duration) -> Vec<Reply> {
    let tasks: Vec<_> = calls
        .into_iter()
        .map(|(shard, op)| {
            let g = groups[shard].clone();
            tokio::spawn(async move { g.call_two_phase(id, op, timeout).await })
        })
        .collect();
    let mut replies = Vec::with_capacity(tasks.len());
    for t in tasks {
        let reply = t
            .await
            .unwrap_or_else(|e| Reply::unknown(id, format!("2pc call failed: {e}")));
        replies.push(reply);
    }
    replies
}

/// Why the transaction must abort: the first piece that did not prepare.
fn first_refusal(pieces: &[Piece], prepared: &[Reply]) -> Option<String> {
    let (p, r) = pieces.iter().zip(prepared).find(|(_, r)| r.result != Outcome::Ok)?;
    let why = r.error.as_deref().unwrap_or("no reason given");
    let why = why.strip_prefix("aborted: ").unwrap_or(why);
    Some(format!("aborted: shard {} did not prepare: {why}", p.shard))
}

/// The whole transaction's micro-ops, each piece's back at its places.
fn assemble(total: usize, pieces: &[Piece], prepared: &[Reply]) -> Vec<Value> {
    let mut done = vec![Value::Null; total];
    for (p, r) in pieces.iter().zip(prepared) {
        if let Value::Array(values) = &r.value {
            for (i, v) in p.at.iter().zip(values) {
                done[*i] = v.clone();
            }
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn piece(shard: usize, at: Vec<usize>) -> Piece {
        Piece {
            shard,
            at,
            ops: Vec::new(),
        }
    }

    fn ok(v: Value) -> Reply {
        let mut r = Reply::new(1, Outcome::Ok);
        r.value = v;
        r
    }

    #[test]
    fn the_reads_go_back_to_their_places_and_the_first_refusal_names_its_shard() {
        let pieces = [piece(0, vec![0, 2]), piece(1, vec![1])];
        let prepared = [
            ok(json!([["r", "a", [1]], ["append", "c", 3]])),
            ok(json!([["r", "b", null]])),
        ];
        assert_eq!(
            assemble(3, &pieces, &prepared),
            vec![
                json!(["r", "a", [1]]),
                json!(["r", "b", null]),
                json!(["append", "c", 3])
            ]
        );
        assert_eq!(first_refusal(&pieces, &prepared), None);
        let refused = [
            ok(json!([])),
            Reply::fail(1, "aborted: key b is write-locked by prepared transaction t"),
        ];
        let why = first_refusal(&pieces, &refused).unwrap();
        assert_eq!(
            why,
            "aborted: shard 1 did not prepare: key b is write-locked by prepared transaction t"
        );
        let unknown = [Reply::unknown(1, "timed out"), ok(json!([]))];
        assert!(first_refusal(&pieces, &unknown)
            .unwrap()
            .starts_with("aborted: shard 0"));
    }
}
