//! A transaction whose keys live on several shards, under `shard_txn=none`:
//! it runs as independent per-shard pieces, one after the other, each a
//! transaction of its own shard's group at the configured isolation.
//!
//! Promise: nothing more than each piece's own guarantee. The pieces
//! commit separately, so another transaction can see one piece and not
//! the other (fractured reads) and cycles can form across shards; that is
//! the anomaly the lab's `shard_txn=none` row must find. The reply is
//! honest about the whole: `ok` when every piece committed (reads filled
//! in, in the order sent), `fail` when none did, and `unknown` otherwise
//! (some piece committed, or may have).

use super::Node;
use crate::group::{ClientReq, GroupHandle};
use crate::protocol::{MicroOp, Op, Outcome, Reply, Request};
use serde_json::Value;
use std::time::Duration;

impl Node {
    /// Runs `ops` as one piece per shard (see the module's promise).
    pub(super) async fn txn_in_pieces(
        &self,
        groups: &[GroupHandle],
        req: Request,
        ops: Vec<MicroOp>,
        timeout: Duration,
    ) -> Reply {
        let mut pieces: Vec<Vec<(usize, MicroOp)>> = vec![Vec::new(); groups.len()];
        for (i, op) in ops.into_iter().enumerate() {
            pieces[self.shard_of(op.key())].push((i, op));
        }
        let mut done: Vec<Value> = Vec::new();
        let mut outcomes = Vec::new();
        for (shard, piece) in pieces.into_iter().enumerate().filter(|(_, p)| !p.is_empty()) {
            let (at, piece): (Vec<usize>, Vec<MicroOp>) = piece.into_iter().unzip();
            let creq = ClientReq {
                id: req.id,
                op: Op::Txn { ops: piece },
                session: req.session.clone(),
                forwarded: false,
            };
            let reply = groups[shard].call(creq, timeout).await;
            if let Value::Array(values) = &reply.value {
                place(&mut done, &at, values);
            }
            outcomes.push((shard, reply));
        }
        whole_reply(req.id, done, outcomes)
    }
}

/// Puts a piece's completed micro-ops back at their places in the whole.
fn place(done: &mut Vec<Value>, at: &[usize], values: &[Value]) {
    for (i, v) in at.iter().zip(values) {
        if done.len() <= *i {
            done.resize(*i + 1, Value::Null);
        }
        done[*i] = v.clone();
    }
}

/// The whole transaction's reply from its pieces' replies.
fn whole_reply(id: u64, done: Vec<Value>, outcomes: Vec<(usize, Reply)>) -> Reply {
    if outcomes.iter().all(|(_, r)| r.result == Outcome::Ok) {
        let mut reply = Reply::new(id, Outcome::Ok);
        reply.value = Value::Array(done);
        return reply;
    }
    if let Some((_, first)) = outcomes.iter().find(|(_, r)| r.result == Outcome::Fail) {
        if outcomes.iter().all(|(_, r)| r.result == Outcome::Fail) {
            return Reply::fail(id, first.error.clone().unwrap_or_default());
        }
    }
    let each: Vec<String> = outcomes
        .iter()
        .map(|(shard, r)| format!("shard {shard}: {:?} {}", r.result, r.error.as_deref().unwrap_or("")))
        .collect();
    let why = format!(
        "shard_txn=none: the pieces ended differently, the transaction may be partly applied ({})",
        each.join("; ")
    );
    Reply::unknown(id, why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(v: Value) -> Reply {
        let mut r = Reply::new(1, Outcome::Ok);
        r.value = v;
        r
    }

    #[test]
    fn the_whole_is_ok_only_when_every_piece_is_and_fail_only_when_none_committed() {
        let mut done = Vec::new();
        place(&mut done, &[0, 2], &[json!(["r", "a", 1]), json!(["w", "c", 3])]);
        place(&mut done, &[1], &[json!(["r", "b", 2])]);
        assert_eq!(
            done,
            vec![json!(["r", "a", 1]), json!(["r", "b", 2]), json!(["w", "c", 3])]
        );
        let both_ok = whole_reply(1, done.clone(), vec![(0, ok(json!([]))), (1, ok(json!([])))]);
        assert_eq!((both_ok.result, both_ok.value), (Outcome::Ok, Value::Array(done)));
        let fail = || Reply::fail(1, "aborted: conflict");
        let none = whole_reply(1, Vec::new(), vec![(0, fail()), (1, fail())]);
        assert_eq!(none.result, Outcome::Fail);
        let part = whole_reply(1, Vec::new(), vec![(0, ok(json!([]))), (1, fail())]);
        assert_eq!(part.result, Outcome::Unknown, "{part:?}");
    }
}
