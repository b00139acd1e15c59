//! The polynomial path of a part: when the model gives the part as a
//! register's ([`Model::as_register`]: a register, or a key-value string
//! whose pieces are unique) and the written values are unique
//! ([`super::unique::applies`]), the part is decided by
//! [`super::unique::check`] instead of the search, and its proof is shrunk
//! with the same translation and check as the oracle.
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
use super::unique::Unique;
use crate::model::Model;
use crate::models::RegisterOp;

/// What the check holds per operation, at most: the operation, its
/// value's cluster, its chain's places in two ordered sets, the order.
const BYTES_PER_OP: usize = 160;

/// A part's operations as a register's, and what the check found (or that
/// the memory budget could not hold it).
pub type Decided = (Vec<SearchOp<RegisterOp>>, Result<Unique, OutOfMemory>);

/// The part's operations as a register's, when the model can give them
/// ([`Model::as_register`]) and the polynomial check applies, with the
/// check's answer.
pub fn try_unique<M: Model>(enc: &Encoded<M>, charge: &mut Charge) -> Option<Decided> {
    let translated = enc.model.as_register(&enc.ops)?;
    if !translated.applies() {
        return None;
    }
    let found = charge
        .add(translated.ops.len() * BYTES_PER_OP)
        .map(|()| translated.check());
    Some((translated.ops, found))
}

/// `ops` with the determinate operations outside `keep` relaxed (by the
/// model's own rule: a read dropped, an update made optional).
fn relaxed<M: Model>(model: &M, ops: &[SearchOp<M::Op>], keep: &[bool]) -> Vec<SearchOp<M::Op>> {
    ops.iter()
        .zip(keep)
        .filter_map(|(o, &k)| match (k || !o.mandatory(), model.relax(&o.op)) {
            (true, _) => Some(o.clone()),
            (false, None) => None,
            (false, Some(op)) => Some(SearchOp {
                op,
                call: o.call,
                ret: o.ret,
                optional: true,
            }),
        })
        .collect()
}

/// Whether `keep` alone, everything else relaxed, is not linearizable: the
/// relaxed part is translated afresh (what a read observed decides the
/// translation, and relaxing drops reads), then checked.
fn confirmed<M: Model>(model: &M, ops: &[SearchOp<M::Op>], keep: &[bool]) -> bool {
    model
        .as_register(&relaxed(model, ops, keep))
        .and_then(|t| t.decide())
        .is_some_and(|found| matches!(found, Unique::NotLinearizable { .. }))
}

/// A small set of determinate operations of `ops` (not linearizable) that
/// is not linearizable whatever the others did, starting from `candidate`;
/// indices into `ops`.
pub fn shrink<M: Model>(enc: &Encoded<M>, candidate: &[u32], deadline: Instant) -> Vec<u32> {
    let (model, ops) = (&enc.model, enc.ops.as_slice());
    let mut keep = vec![false; ops.len()];
    candidate
        .iter()
        .filter(|&&i| ops[i as usize].mandatory())
        .for_each(|&i| keep[i as usize] = true);
    let from_candidate = keep.iter().any(|&k| k) && confirmed(model, ops, &keep);
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
            try_relax(model, ops, &mut keep, group);
        }
        if chunk == 1 {
            return indices(&keep);
        }
        chunk = chunk.div_ceil(2);
    }
}

/// Relaxes `group` in `keep` if the violation is confirmed without it.
fn try_relax<M: Model>(model: &M, ops: &[SearchOp<M::Op>], keep: &mut [bool], group: &[usize]) {
    if group.iter().all(|&i| !keep[i]) {
        return;
    }
    let before: Vec<bool> = group.iter().map(|&i| keep[i]).collect();
    group.iter().for_each(|&i| keep[i] = false);
    if !keep.iter().any(|&k| k) || !confirmed(model, ops, keep) {
        group.iter().zip(before).for_each(|(&i, k)| keep[i] = k);
    }
}

fn indices(keep: &[bool]) -> Vec<u32> {
    (0..keep.len() as u32).filter(|&i| keep[i as usize]).collect()
}
