//! The node's side of a shard group under `shard_txn=2pc`: a coordinator's
//! requests to the group and the recovery's question, each bounded.

use super::{GroupHandle, GroupMsg};
use crate::core::TwoPhaseOp;
use crate::protocol::Reply;
use std::time::Duration;
use tokio::sync::oneshot;

impl GroupHandle {
    /// Sends a two-phase commit request and waits (bounded) for its
    /// answer: `unknown` when none came in time.
    pub async fn call_two_phase(&self, id: u64, op: TwoPhaseOp, timeout: Duration) -> Reply {
        let (tx, rx) = oneshot::channel();
        if self.tx.try_send(GroupMsg::TwoPhase { id, op, reply: tx }).is_err() {
            return Reply::fail(id, "server overloaded");
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => reply,
            _ => Reply::unknown(id, "timed out waiting for the shard's leader"),
        }
    }

    /// The pieces this node leads that are prepared and undecided for
    /// `older_than_ms` or longer (empty when the group does not answer).
    pub async fn stale_prepared(&self, older_than_ms: u64, max: usize) -> Vec<(String, u32)> {
        let (tx, rx) = oneshot::channel();
        let msg = GroupMsg::StalePrepared {
            older_than_ms,
            max,
            reply: tx,
        };
        if self.tx.try_send(msg).is_err() {
            return Vec::new();
        }
        let answer = tokio::time::timeout(Duration::from_secs(2), rx).await;
        answer.ok().and_then(Result::ok).unwrap_or_default()
    }
}
