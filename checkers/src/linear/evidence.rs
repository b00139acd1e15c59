//! Evidence for a part that cannot be linearized: the longest prefix the
//! search reached, the operation that cannot follow it, and a small set of
//! operations that on its own proves the violation.
//!
//! Shrinking must not invent a violation. Removing an operation from a
//! history can make it non-linearizable (drop the write a read saw), so the
//! shrinker never removes: it *relaxes* determinate operations. A relaxed
//! read constrains nothing and disappears; a relaxed update becomes
//! optional: it took effect within its interval, or never. Relaxing only
//! adds orders, so if the relaxed history is still not linearizable,
//! neither is the original, and the determinate operations left are a
//! proof: they cannot be linearized even if none of the others took effect
//! (or, for the crashed ones, whenever they did). Each relaxation is kept
//! only when a bounded re-check confirms the violation; a re-check that
//! runs out of budget counts as "not confirmed", so the proof only grows
//! less small. Reads are relaxed first: dropping them makes the re-checks
//! cheaper still.
//!
//! One thing is dropped outright: when the model says the operations touch
//! independent objects (a map checked without the per-key split), the
//! shrinker first looks for one object whose sub-history alone is not
//! linearizable; by locality (Herlihy and Wing) that proves the whole, and
//! every re-check after it is a small one.

use std::time::Instant;

use super::part::needed;
use super::search::{search, Budget, Found, SearchOp};
use super::table::Memory;
use crate::model::Model;

/// Steps allowed to each re-check while shrinking, at least (a quarter of
/// the budget left, if more).
pub const RECHECK_STEPS: u64 = 50_000;
/// How many operations are tried beside the blocked one for a proof of
/// two (see `Shrinker::classic`).
pub const CLASSIC_PAIRS: usize = 8;
/// How many of the nearest operations `Shrinker::grow` keeps at first.
const GROW_FIRST: usize = 8;
/// Bounds of the steps allowed to all the re-checks of one part together
/// (see `shrink_budget`).
pub const SHRINK_STEPS_MIN: u64 = 200_000;
pub const SHRINK_STEPS_MAX: u64 = 2_000_000;

/// When a shrink must stop: the classic proofs of one or two operations
/// are looked for until `classic`, a larger proof is cut until `rest`.
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    pub classic: Instant,
    pub rest: Instant,
}

/// The operation that cannot follow the longest prefix: of the determinate
/// operations left out of it, the one that must end first.
pub fn blocked_op<O>(ops: &[SearchOp<O>], longest: &[u32]) -> Option<u32> {
    let mut done = vec![false; ops.len()];
    for &i in longest {
        done[i as usize] = true;
    }
    (0..ops.len() as u32)
        .filter(|&i| !done[i as usize])
        .filter(|&i| ops[i as usize].mandatory())
        .filter_map(|i| ops[i as usize].ret.map(|r| (r, i)))
        .min()
        .map(|(_, i)| i)
}

/// The operations of `ops` in `scope`, with the determinate ones not in
/// `keep` relaxed (and the optional ones that can no longer matter
/// dropped, see [`needed`]).
fn relaxed<M: Model>(model: &M, ops: &[SearchOp<M::Op>], keep: &[bool], scope: &[bool]) -> Vec<SearchOp<M::Op>> {
    // Sized up front and filtered in place: the shrinker builds one of
    // these per re-check, and growing it was a tenth of a small re-check.
    let mut all: Vec<SearchOp<M::Op>> = Vec::with_capacity(ops.len());
    all.extend(
        ops.iter()
            .zip(keep)
            .zip(scope)
            .filter(|(_, &in_scope)| in_scope)
            .filter_map(|((o, &k), _)| match (k, o.ret) {
                (true, _) | (_, None) => Some(o.clone()),
                (false, Some(_)) => model.relax(&o.op).map(|op| SearchOp {
                    op,
                    call: o.call,
                    ret: o.ret,
                    optional: true,
                }),
            }),
    );
    let mut needed = needed(&all).into_iter();
    all.retain(|_| needed.next().unwrap_or(true));
    all
}

/// Steps for all the re-checks of a part of `ops` operations whose search
/// took `search_steps`: an eighth of the search, or the square of the
/// part's size (a re-check where many updates became optional explores
/// about that many configurations), within [`SHRINK_STEPS_MIN`] and
/// [`SHRINK_STEPS_MAX`].
fn shrink_budget(search_steps: u64, ops: usize) -> u64 {
    let square = (ops as u64).saturating_mul(ops as u64);
    (search_steps / 8).max(square).clamp(SHRINK_STEPS_MIN, SHRINK_STEPS_MAX)
}

/// Steps for the classic proofs of a part whose search took
/// `search_steps`: a quarter of those, at least [`CLASSIC_STEPS_MIN`]. A
/// classic re-check keeps one or two operations determinate and relaxes
/// the rest; where that explodes (a kv key of hundreds of appends, each
/// now optional), it would otherwise spend the whole shrink on proofs
/// that are not there, and the first anomaly would not decide the time.
fn classic_steps(search_steps: u64) -> u64 {
    (search_steps / 4).max(CLASSIC_STEPS_MIN)
}

/// See [`classic_steps`]: on Porcupine's etcd logs, whose searches take a
/// few hundred steps, every classic proof is confirmed within this many.
pub const CLASSIC_STEPS_MIN: u64 = 20_000;

/// Shrinks the determinate operations of a non-linearizable `ops` to a
/// small set that still proves it; returns a mask over `ops` (true: keep
/// determinate). `must_keep` stays in the set. Tries the classic proofs
/// of one or two operations first; then relaxes everything invoked after
/// `must_keep` returned, narrows to `must_keep` and its nearest
/// operations when they suffice (see `Shrinker::grow`), and relaxes what
/// is left of the reads, then of the updates, each by halving chunks (a
/// simplified ddmin), within [`SHRINK_STEPS_MAX`] steps and `by` (the
/// classic proofs until `by.classic`, the rest until `by.rest`).
pub fn shrink<M: Model>(
    model: &M,
    ops: &[SearchOp<M::Op>],
    must_keep: u32,
    search_steps: u64,
    by: Deadlines,
    memory: &Memory,
) -> Vec<bool> {
    let mut keep: Vec<bool> = ops.iter().map(|o| o.mandatory()).collect();
    let mut shrinker = Shrinker {
        model,
        ops,
        deadline: by.classic,
        memory,
        steps_left: shrink_budget(search_steps, ops.len()),
        scope: vec![true; ops.len()],
    };
    shrinker.narrow_to_one_object(&keep, must_keep);
    if shrinker.classic_within(classic_steps(search_steps), &mut keep, must_keep) {
        return keep;
    }
    shrinker.deadline = by.rest;
    let blocked_ret = ops[must_keep as usize].ret.unwrap_or(u64::MAX);
    let (late, early): (Vec<usize>, Vec<usize>) = (0..ops.len())
        .filter(|&i| keep[i] && shrinker.scope[i] && i != must_keep as usize)
        .partition(|&i| ops[i].call > blocked_ret);
    // The late ones too: when they could not all go at once, some may
    // still go one by one.
    let (reads, updates): (Vec<usize>, Vec<usize>) = early
        .iter()
        .chain(&late)
        .partition(|&&i| model.relax(&ops[i].op).is_none());
    shrinker.try_relax(&mut keep, &late);
    shrinker.grow(&mut keep, must_keep, &early);
    // Only what is still kept is worth a re-check.
    let still = |list: Vec<usize>| list.into_iter().filter(|&i| keep[i]).collect::<Vec<usize>>();
    let (reads, updates) = (still(reads), still(updates));
    shrinker.ddmin(&mut keep, &reads);
    shrinker.ddmin(&mut keep, &updates);
    keep.iter_mut().zip(&shrinker.scope).for_each(|(k, &s)| *k &= s);
    keep
}

/// The re-checks of one shrink and their shared budget.
struct Shrinker<'a, M: Model> {
    model: &'a M,
    ops: &'a [SearchOp<M::Op>],
    deadline: Instant,
    memory: &'a Memory,
    steps_left: u64,
    /// The operations still looked at; the others are dropped, which is
    /// sound only for whole independent objects (see [`Model::object`]).
    scope: Vec<bool>,
}

impl<M: Model> Shrinker<'_, M> {
    /// When the operations touch several independent objects, keeps only
    /// the first object (that of `blocked`, then the busiest) whose
    /// sub-history is confirmed not linearizable on its own: by locality
    /// that alone proves the whole history is not.
    fn narrow_to_one_object(&mut self, keep: &[bool], blocked: u32) {
        let objects: Vec<u32> = self.ops.iter().map(|o| self.model.object(&o.op)).collect();
        let mut counts: std::collections::BTreeMap<u32, usize> = std::collections::BTreeMap::new();
        objects.iter().for_each(|&o| *counts.entry(o).or_default() += 1);
        if counts.len() < 2 {
            return;
        }
        let first = objects[blocked as usize];
        let mut order: Vec<u32> = counts.keys().copied().filter(|&o| o != first).collect();
        order.sort_by_key(|o| std::cmp::Reverse(counts[o]));
        for object in std::iter::once(first).chain(order) {
            if !self.has_budget() {
                return;
            }
            let scope: Vec<bool> = objects.iter().map(|&o| o == object).collect();
            if self.confirmed(keep, &scope) {
                self.scope = scope;
                return;
            }
        }
    }

    /// [`Shrinker::classic`] within at most `steps` of the shrink's steps.
    fn classic_within(&mut self, steps: u64, keep: &mut Vec<bool>, blocked: u32) -> bool {
        let total = self.steps_left;
        let allowed = steps.min(total);
        self.steps_left = allowed;
        let found = self.classic(keep, blocked);
        self.steps_left = total - (allowed - self.steps_left);
        found
    }

    /// The classic small proofs first: the blocked operation alone (a read
    /// of a value never written, or written only later), then with one
    /// other determinate operation, nearest first (a read of a value
    /// overwritten before it began: a stale read), at most
    /// [`CLASSIC_PAIRS`] of them. True with `keep` set to such a proof;
    /// otherwise `keep` may have narrowed to the blocked operation and
    /// those candidates, when together they are confirmed.
    fn classic(&mut self, keep: &mut Vec<bool>, blocked: u32) -> bool {
        if !self.scope[blocked as usize] || !self.has_budget() {
            return false;
        }
        let mut alone = vec![false; self.ops.len()];
        alone[blocked as usize] = true;
        let scope = self.scope.clone();
        if self.confirmed(&alone, &scope) {
            *keep = alone;
            return true;
        }
        let mut near: Vec<usize> = (0..self.ops.len())
            .filter(|&i| i != blocked as usize && self.ops[i].mandatory() && self.scope[i])
            .collect();
        near.sort_by_key(|&i| self.distance(i, blocked));
        near.truncate(CLASSIC_PAIRS);
        // Keeping more operations determinate only removes orders, so if
        // the blocked one with all the candidates together can be
        // linearized, so can it with any one of them: one re-check instead
        // of one per pair. (Only when that re-check says so: one that ran
        // out of budget proves nothing, and the pairs are tried, being
        // smaller.) If it is confirmed, that group is where the rest of the
        // shrinking starts.
        let mut group = alone.clone();
        near.iter().for_each(|&i| group[i] = true);
        let group_confirmed = match self.recheck(&group, &scope) {
            Some(false) => return false,
            Some(true) => true,
            None => false,
        };
        for i in near {
            if !self.has_budget() {
                break;
            }
            let mut pair = alone.clone();
            pair[i] = true;
            if self.confirmed(&pair, &scope) {
                *keep = pair;
                return true;
            }
        }
        if group_confirmed {
            *keep = group;
        }
        false
    }

    /// Proofs are usually a few operations near the blocked one: keeps
    /// determinate only the blocked operation and its `k` nearest of
    /// `early`, for k = 8, 16, 32, ..., and takes the first such set that is
    /// confirmed. A handful of re-checks then leaves `ddmin` a small set
    /// to cut, instead of halving every read and update of the part.
    fn grow(&mut self, keep: &mut Vec<bool>, blocked: u32, early: &[usize]) {
        let mut near: Vec<usize> = early.iter().copied().filter(|&i| keep[i]).collect();
        near.sort_by_key(|&i| self.distance(i, blocked));
        let mut k = GROW_FIRST;
        while k < near.len() && self.has_budget() {
            let mut trial = vec![false; self.ops.len()];
            trial[blocked as usize] = true;
            near[..k].iter().for_each(|&i| trial[i] = true);
            let scope = std::mem::take(&mut self.scope);
            let confirmed = self.confirmed(&trial, &scope);
            self.scope = scope;
            if confirmed {
                *keep = trial;
                return;
            }
            k *= 2;
        }
    }

    /// How far operation `i` is from `blocked` in real time: the gap
    /// between one's end and the other's start, whichever is smaller.
    fn distance(&self, i: usize, blocked: u32) -> u64 {
        let (o, b) = (&self.ops[i], &self.ops[blocked as usize]);
        o.ret
            .unwrap_or(u64::MAX)
            .abs_diff(b.call)
            .min(o.call.abs_diff(b.ret.unwrap_or(u64::MAX)))
    }

    /// Whether the history restricted to `scope`, with `keep` determinate
    /// and the rest relaxed, is confirmed not linearizable.
    fn confirmed(&mut self, keep: &[bool], scope: &[bool]) -> bool {
        self.recheck(keep, scope) == Some(true)
    }

    /// The re-check behind [`Shrinker::confirmed`]: `Some(true)` confirmed
    /// not linearizable, `Some(false)` linearizable, `None` out of budget.
    fn recheck(&mut self, keep: &[bool], scope: &[bool]) -> Option<bool> {
        let budget = Budget {
            deadline: self.deadline,
            soft: None,
            memory: self.memory,
            max_steps: RECHECK_STEPS.max(self.steps_left / 4).min(self.steps_left),
        };
        let (found, stats) = search(self.model, &relaxed(self.model, self.ops, keep, scope), budget);
        self.steps_left = self.steps_left.saturating_sub(stats.steps.max(1));
        match found {
            Found::NotLinearizable { .. } => Some(true),
            Found::Linearizable { .. } => Some(false),
            Found::Unknown { .. } => None,
        }
    }

    /// Relaxes what it can of `candidates`: halves, quarters, ... singles.
    fn ddmin(&mut self, keep: &mut Vec<bool>, candidates: &[usize]) {
        let mut chunk = candidates.len().div_ceil(2).max(1);
        loop {
            for group in candidates.chunks(chunk) {
                if !self.has_budget() {
                    return;
                }
                self.try_relax(keep, group);
            }
            if chunk == 1 {
                return;
            }
            chunk = chunk.div_ceil(2);
        }
    }

    fn has_budget(&self) -> bool {
        self.steps_left > 0 && Instant::now() < self.deadline
    }

    /// Relaxes `group` in `keep` if the violation is confirmed without it.
    fn try_relax(&mut self, keep: &mut Vec<bool>, group: &[usize]) {
        if group.iter().all(|&i| !keep[i]) || !self.has_budget() {
            return;
        }
        let mut trial = keep.clone();
        group.iter().for_each(|&i| trial[i] = false);
        let scope = std::mem::take(&mut self.scope);
        if self.confirmed(&trial, &scope) {
            *keep = trial;
        }
        self.scope = scope;
    }
}
