//! Driving a check: the parts of a history on a small pool of workers,
//! cheapest first beside one worker on the costliest, in two rounds so
//! that one hard part neither starves the others nor hides them.
//!
//! In the first round each part may search for a [`FIRST_ROUND_SHARE`] of
//! the time limit and its share of the memory (the limit over the
//! workers); a part that runs out there goes to the second round, which
//! has what is left of the time and the whole memory. So every cheap part
//! is decided before a hard one takes everything, and a hard one that
//! still cannot be decided is named with what it ran out of.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use faultline_histories::History;

use super::part::{encode, partition, Encoded, Part};
use super::report::{self, PartOutcome};
use super::search::{self, Budget, Exhausted, Found, SoftStop};
use super::table::{Charge, Memory};
use super::{poly, unique, Config};
use crate::model::Model;
use crate::Verdict;

/// Once a part is proven non-linearizable, the others may go on for half
/// as long again as the proof took (so that a few more offending keys get
/// reported), but at least this long: a clock's granularity, so that the
/// parts running beside a proof that took no time still get a look.
pub const GRACE_MIN: Duration = Duration::from_micros(50);

/// What is left to the other parts (and to the evidence, see
/// `report::Effort`) once a part was proven non-linearizable after
/// `took`: half of it. The verdict is known by then; what follows only
/// adds to it, so it gets less time than finding the verdict did.
pub fn after_first(took: Duration) -> Duration {
    took / 2
}

/// Below this many operations in all, the check runs on the calling
/// thread: starting threads costs more than such a history takes.
const ONE_THREAD_OPS: usize = 1_000;

/// The share of the memory limit the search tables may be charged: a table
/// that grows holds its old and new storage for a moment, and the
/// allocator and hash tables keep slack that the charges do not count, so
/// the peak resident size stays under the limit when the charged bytes
/// stay under this share (measured: Porcupine's c50 kv history as one map
/// peaks at 1.5 times what its tables were charged).
/// See [`planned_bytes`].
const PLANNED_SHARE_PERCENT: usize = 60;

pub(super) fn planned_bytes(limit: usize) -> usize {
    limit / 100 * PLANNED_SHARE_PERCENT + limit % 100 * PLANNED_SHARE_PERCENT / 100
}

/// What every worker shares.
struct Shared<'a> {
    history: &'a History,
    config: &'a Config,
    deadline: Instant,
    soft: SoftStop,
    memory: Memory,
    start: Instant,
    /// The first part proven non-linearizable, and when (since `start`).
    first_invalid: Mutex<Option<(String, Duration)>>,
}

impl Shared<'_> {
    /// Records that `label` was proven non-linearizable now; unless every
    /// anomaly is wanted, brings the others' stop forward.
    fn proven_invalid(&self, label: &str) {
        let took = self.start.elapsed();
        {
            let mut first = self.first_invalid.lock().unwrap_or_else(|e| e.into_inner());
            first.get_or_insert_with(|| (label.to_owned(), took));
        }
        if !self.config.all_anomalies {
            self.soft.stop_after(after_first(took).max(GRACE_MIN));
        }
    }

    /// Why a part was stopped (or not started): the first anomaly's key
    /// and how long it took.
    fn stop_reason(&self) -> String {
        match &*self.first_invalid.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((label, took)) => format!(
                "the check stopped {} after {label} was proven non-linearizable, half as long again as that took \
                 (--all-anomalies searches every part to the end)",
                report::duration(after_first(*took).max(GRACE_MIN)),
            ),
            None => "the check stopped".into(),
        }
    }
}

/// The parts left, sorted by expected cost: taken from either end.
struct WorkQueue {
    /// The next cheapest and one past the next costliest.
    ends: Mutex<(usize, usize)>,
}

impl WorkQueue {
    fn new(parts: usize) -> WorkQueue {
        WorkQueue {
            ends: Mutex::new((0, parts)),
        }
    }

    /// The next part to check, from the costly end or the cheap one.
    fn take(&self, from_costly: bool) -> Option<usize> {
        let mut ends = self.ends.lock().unwrap_or_else(|e| e.into_inner());
        let (lo, hi) = *ends;
        if lo >= hi {
            return None;
        }
        if from_costly {
            ends.1 -= 1;
            Some(hi - 1)
        } else {
            ends.0 += 1;
            Some(lo)
        }
    }
}

/// A guess at how hard a part is to search, to search the cheap ones
/// first: its operations times the most that are ever open at once (the
/// search branches over the concurrent ones), more for crashed ones,
/// which stay open to the end.
pub fn expected_cost(history: &History, part: &Part) -> u64 {
    let mut events: Vec<(u64, i32)> = Vec::with_capacity(part.ops.len() * 2);
    let mut crashed = 0u64;
    for &i in &part.ops {
        let op = &history.ops[i];
        events.push((op.invoke_index, 1));
        match op.complete_index {
            Some(c) => events.push((c, -1)),
            None => crashed += 1,
        }
    }
    events.sort_unstable();
    let (mut open, mut widest) = (0i64, 0i64);
    for (_, d) in events {
        open += i64::from(d);
        widest = widest.max(open);
    }
    (part.ops.len() as u64).saturating_mul(widest.max(1) as u64 + crashed)
}

pub(super) fn drive<M: Model, F: Fn() -> M + Sync>(history: &History, config: &Config, make: &F) -> Verdict {
    let start = Instant::now();
    let mut parts = partition(history, config.split_by_key);
    if parts.len() > 1 {
        parts.sort_by_cached_key(|p| expected_cost(history, p));
    }
    let shared = Shared {
        history,
        config,
        deadline: start + config.time_limit,
        soft: SoftStop::new(),
        memory: Memory::new(planned_bytes(config.memory_limit_bytes)),
        start,
        first_invalid: Mutex::new(None),
    };
    let outcomes: Vec<Mutex<Option<PartOutcome>>> = parts.iter().map(|_| Mutex::new(None)).collect();
    let threads = if history.ops.len() < ONE_THREAD_OPS {
        1
    } else {
        config.threads.clamp(1, parts.len().max(1))
    };
    let first = Round {
        deadline: shared.deadline.min(start + config.time_limit / FIRST_ROUND_SHARE),
        // With one worker its share is the whole budget: nothing to retry.
        part_memory: (threads > 1).then(|| shared.memory.limit() / threads),
    };
    let all: Vec<usize> = (0..parts.len()).collect();
    let deferred = run_round(&shared, &parts, &all, &first, threads, make, &outcomes);
    let second = Round {
        deadline: shared.deadline,
        part_memory: None,
    };
    run_round(&shared, &parts, &deferred, &second, threads, make, &outcomes);
    let outcomes = outcomes
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .zip(&parts)
        .map(|(o, p)| o.unwrap_or_else(|| PartOutcome::never_ran(history, p, config.split_by_key)))
        .collect();
    report::verdict(history, config, outcomes, start.elapsed())
}

/// The first round's share of the time limit: each part may search for
/// the limit over this in the first round.
pub const FIRST_ROUND_SHARE: u32 = 4;

/// The limits of one round for each part.
struct Round {
    deadline: Instant,
    /// A memory budget of this many bytes for each part, or (`None`) the
    /// check's shared budget.
    part_memory: Option<usize>,
}

/// Checks `which` of `parts` on `threads` workers, filling `outcomes`;
/// returns the parts that ran out of the round's own limits (not the
/// check's), for the next round.
fn run_round<M: Model, F: Fn() -> M + Sync>(
    shared: &Shared,
    parts: &[Part],
    which: &[usize],
    round: &Round,
    threads: usize,
    make: &F,
    outcomes: &[Mutex<Option<PartOutcome>>],
) -> Vec<usize> {
    let queue = WorkQueue::new(which.len());
    let deferred = Mutex::new(Vec::new());
    let work = |from_costly: bool| {
        while let Some(at) = queue.take(from_costly) {
            let i = which[at];
            let outcome = if shared.soft.passed(Instant::now()) {
                // Another part's anomaly decided the time: not started, so
                // not covered either.
                let label = parts[i].label(shared.history, shared.config.split_by_key);
                PartOutcome::error(label.clone(), format!("{label}: not checked: {}", shared.stop_reason()))
            } else {
                let (outcome, again) = check_part(shared, &parts[i], make(), round);
                if again {
                    deferred.lock().unwrap_or_else(|e| e.into_inner()).push(i);
                }
                outcome
            };
            *outcomes[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
        }
    };
    if threads == 1 || which.len() == 1 {
        // One part or one thread: no thread to start.
        work(false);
    } else {
        std::thread::scope(|scope| {
            // One worker takes the costliest parts first, so that the
            // longest search does not start last and run alone; the others
            // take the cheapest, where an anomaly is found soonest.
            for t in 0..threads {
                let work = &work;
                scope.spawn(move || work(t == 0));
            }
        });
    }
    let mut deferred = deferred.into_inner().unwrap_or_else(|e| e.into_inner());
    deferred.sort_unstable();
    deferred
}

/// Encodes and searches one part within `round`, and builds its evidence;
/// true with it when the part ran out of the round's own limits.
fn check_part<M: Model>(shared: &Shared, part: &Part, model: M, round: &Round) -> (PartOutcome, bool) {
    let label = part.label(shared.history, shared.config.split_by_key);
    let mut covered = Vec::new();
    let enc = match encode(shared.history, part, model, &mut covered) {
        Ok(e) => e,
        Err(err) if covered.is_empty() => {
            // Not one operation the model can read: the part is left
            // uncovered, for the file's verdict to name, rather than
            // undecided.
            return (PartOutcome::unread(label, err.to_string()), false);
        }
        Err(err) => {
            let reason = format!("cannot check {label}: {err}");
            return (PartOutcome::error(label, reason).covering(covered), false);
        }
    };
    let local;
    let memory = match round.part_memory {
        Some(bytes) => {
            local = Memory::new(bytes);
            &local
        }
        None => &shared.memory,
    };
    let mut charge = Charge::new(memory);
    match poly::try_unique(&enc, &mut charge) {
        Some(decided) => polynomial(shared, part, &label, &enc, decided, covered, round),
        None => searched(shared, part, &label, &enc, covered, round, memory),
    }
}

/// The part decided by the polynomial check of unique values.
fn polynomial<M: Model>(
    shared: &Shared,
    part: &Part,
    label: &str,
    enc: &Encoded<M>,
    (ops, found): poly::Decided,
    covered: Vec<usize>,
    round: &Round,
) -> (PartOutcome, bool) {
    let stats = search::Stats {
        steps: ops.len() as u64,
        ..search::Stats::default()
    };
    let mut out = PartOutcome::new(label.to_owned(), part.key, enc.considered, stats).covering(covered);
    match found {
        Ok(unique::Unique::Linearizable { order }) => out.valid(enc, &order, shared.history),
        Ok(unique::Unique::NotLinearizable { proof, kind }) => {
            shared.proven_invalid(label);
            let effort = report::Effort::new(shared.config.all_anomalies, shared.start.elapsed());
            let proof = poly::shrink(enc, &proof, effort.deadline(shared.deadline));
            out.proven(enc, &proof, unique::shape(&ops, &proof, kind), shared.history);
        }
        Err(_) => {
            let determinate = enc.ops.iter().filter(|o| o.mandatory()).count();
            out.unknown(Exhausted::Memory, 0, determinate, shared.config);
            return (out, round.part_memory.is_some());
        }
    }
    (out, false)
}

/// The part decided (or not) by the search.
fn searched<M: Model>(
    shared: &Shared,
    part: &Part,
    label: &str,
    enc: &Encoded<M>,
    covered: Vec<usize>,
    round: &Round,
    memory: &Memory,
) -> (PartOutcome, bool) {
    let budget = Budget {
        deadline: round.deadline,
        soft: Some(&shared.soft),
        memory,
        max_steps: u64::MAX,
    };
    let (found, stats) = search::search(&enc.model, &enc.ops, budget);
    let mut out = PartOutcome::new(label.to_owned(), part.key, enc.considered, stats).covering(covered);
    let mut again = false;
    match found {
        Found::Linearizable { order } => out.valid(enc, &order, shared.history),
        Found::NotLinearizable { longest, state } => {
            shared.proven_invalid(label);
            let effort = report::Effort::new(shared.config.all_anomalies, shared.start.elapsed());
            let shrink_by = effort.deadlines(shared.deadline);
            out.invalid(enc, &longest, &state, shared.history, shrink_by, memory)
        }
        Found::Unknown {
            why: Exhausted::Stopped,
            longest_det,
            determinate,
        } => out.stopped(&shared.stop_reason(), longest_det, determinate),
        Found::Unknown {
            why,
            longest_det,
            determinate,
        } => {
            // Out of this round's limits but not the check's: again in the
            // next round, with more.
            again = match why {
                Exhausted::Time => round.deadline < shared.deadline,
                Exhausted::Memory => round.part_memory.is_some(),
                _ => false,
            };
            out.unknown(why, longest_det, determinate, shared.config)
        }
    }
    (out, again)
}
