//! The polynomial path of a part: when the model is a single register and
//! the part's written values are unique ([`unique::applies`]), the part is
//! decided by [`unique::check`] instead of the search, and its proof is
//! shrunk with the same check as the oracle.
//!
//! Shrinking follows the rule of [`super::evidence`]: operations are never
//! removed, only relaxed (a read dropped, an update made optional), so a
//! set confirmed non-linearizable with everything else relaxed is a proof.
//! The check names a candidate of one to four operations (the garbage read,
//! the two bounds that contradict each other); each of its operations is
//! then relaxed in turn while the violation stays confirmed. Should the
//! candidate not be confirmed, the proof starts from every determinate
//! operation (which the check itself proved) and is halved while time lasts.

use std::time::Instant;

use super::part::Encoded;
use super::search::SearchOp;
use super::table::{Charge, OutOfMemory};
use super::unique::{self, Unique};
use crate::model::Model;
use crate::models::RegisterOp;

/// What the check holds per operation, at most: the operation, its
/// value's cluster, its chain's places in two ordered sets, the order.
const BYTES_PER_OP: usize = 160;

/// A part's operations as a register's, and what the check found (or that
/// the memory budget could not hold it).
pub type Decided = (Vec<SearchOp<RegisterOp>>, Result<Unique, OutOfMemory>);

/// The part's operations as a register's, when the model is one and the
/// polynomial check applies, with the check's answer.
pub fn try_unique<M: Model>(enc: &Encoded<M>, charge: &mut Charge) -> Option<Decided> {
    let ops: Vec<SearchOp<RegisterOp>> = enc
        .ops
        .iter()
        .map(|o| {
            enc.model.register_op(&o.op).map(|op| SearchOp {
                op,
                call: o.call,
                ret: o.ret,
                optional: o.optional,
            })
        })
        .collect::<Option<_>>()?;
    // The register's initial value is interned first: id 0.
    if !unique::applies(&ops, 0) {
        return None;
    }
    let found = charge.add(ops.len() * BYTES_PER_OP).map(|()| unique::check(&ops, 0));
    Some((ops, found))
}

/// `ops` with the determinate operations outside `keep` relaxed.
fn relaxed(ops: &[SearchOp<RegisterOp>], keep: &[bool]) -> Vec<SearchOp<RegisterOp>> {
    ops.iter()
        .zip(keep)
        .filter_map(|(o, &k)| match (k || !o.mandatory(), o.op) {
            (true, _) => Some(o.clone()),
            (false, RegisterOp::Read(_) | RegisterOp::CasMismatch(_)) => None,
            (false, _) => Some(SearchOp {
                optional: true,
                ..o.clone()
            }),
        })
        .collect()
}

/// Whether `keep` alone, everything else relaxed, is not linearizable.
fn confirmed(ops: &[SearchOp<RegisterOp>], keep: &[bool]) -> bool {
    matches!(unique::check(&relaxed(ops, keep), 0), Unique::NotLinearizable { .. })
}

/// A small set of determinate operations of `ops` (not linearizable) that
/// is not linearizable whatever the others did, starting from `candidate`;
/// indices into `ops`.
pub fn shrink(ops: &[SearchOp<RegisterOp>], candidate: &[u32], deadline: Instant) -> Vec<u32> {
    let mut keep = vec![false; ops.len()];
    candidate
        .iter()
        .filter(|&&i| ops[i as usize].mandatory())
        .for_each(|&i| keep[i as usize] = true);
    let from_candidate = keep.iter().any(|&k| k) && confirmed(ops, &keep);
    if !from_candidate {
        keep = ops.iter().map(SearchOp::mandatory).collect();
    }
    let kept: Vec<usize> = (0..ops.len()).filter(|&i| keep[i]).collect();
    let mut chunk = if from_candidate {
        1
    } else {
        kept.len().div_ceil(2).max(1)
    };
    loop {
        for group in kept.chunks(chunk) {
            if Instant::now() >= deadline {
                return indices(&keep);
            }
            try_relax(ops, &mut keep, group);
        }
        if chunk == 1 {
            return indices(&keep);
        }
        chunk = chunk.div_ceil(2);
    }
}

/// Relaxes `group` in `keep` if the violation is confirmed without it.
fn try_relax(ops: &[SearchOp<RegisterOp>], keep: &mut [bool], group: &[usize]) {
    if group.iter().all(|&i| !keep[i]) {
        return;
    }
    let before: Vec<bool> = group.iter().map(|&i| keep[i]).collect();
    group.iter().for_each(|&i| keep[i] = false);
    if !keep.iter().any(|&k| k) || !confirmed(ops, keep) {
        group.iter().zip(before).for_each(|(&i, k)| keep[i] = k);
    }
}

fn indices(keep: &[bool]) -> Vec<u32> {
    (0..keep.len() as u32).filter(|&i| keep[i as usize]).collect()
}
