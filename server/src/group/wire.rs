//! Conversions between the core's client types and the wire's: the core
//! knows nothing of frames, JSON or sessions, the driver speaks both. (Peer
//! messages need none: the core's `Message` is their wire form.)

use crate::core::{self, Answer};
use crate::protocol::{MicroOp, Outcome, RawRequest, Reply, Session};
use crate::state::TxnOp;

/// The wire form of the core's answer.
pub(crate) fn reply_of(a: Answer) -> Reply {
    let outcome = match a.outcome {
        core::Outcome::Ok => Outcome::Ok,
        core::Outcome::Fail => Outcome::Fail,
        core::Outcome::Unknown => Outcome::Unknown,
    };
    let mut r = Reply::new(a.id, outcome);
    r.value = a.value;
    r.error = a.error;
    r.lsn = a.lsn;
    r.leader_hint = a.leader_hint;
    r
}

/// The request as the leader's node will validate it. The session is
/// rebuilt from the one LSN the group's shard needs (all the leader's
/// group reads of it).
pub(super) fn raw_request(req: &core::Request, shard: u32) -> RawRequest {
    let mut shard_lsns = vec![0; shard as usize + 1];
    shard_lsns[shard as usize] = req.min_lsn;
    let session = Session {
        min_lsn: None,
        shard_lsns: if req.min_lsn == 0 { Vec::new() } else { shard_lsns },
    };
    let mut raw = RawRequest {
        id: req.id,
        session: Some(session),
        ..Default::default()
    };
    let (op, key) = match &req.op {
        core::Op::Read { key } => ("read", Some(key)),
        core::Op::Write { key, value } => {
            raw.value = Some(value.clone());
            ("write", Some(key))
        }
        core::Op::Cas { key, expected, new } => {
            raw.expected = Some(expected.clone());
            raw.new = Some(new.clone());
            ("cas", Some(key))
        }
        core::Op::Append { key, value } => {
            raw.value = Some(value.clone());
            ("append", Some(key))
        }
        core::Op::MultiRead { keys } => {
            raw.keys = Some(keys.clone());
            ("multi_read", None)
        }
        core::Op::Txn { ops } => {
            raw.txn = Some(ops.iter().map(|o| o.completed(serde_json::Value::Null)).collect());
            ("txn", None)
        }
        // Forwarded as `PeerMsg::TwoPhase`, never as a client request.
        core::Op::TwoPhase(_) => ("two_phase", None),
    };
    raw.op = op.into();
    raw.key = key.cloned();
    raw
}

/// A transaction's micro-op as the core and the log hold it.
pub(crate) fn txn_op(op: MicroOp) -> TxnOp {
    match op {
        MicroOp::Append { key, value } => TxnOp::Append { key, value },
        MicroOp::Read { key } => TxnOp::Read { key },
        MicroOp::Write { key, value } => TxnOp::Write { key, value },
    }
}
