//! Turning the searches' results into a [`Verdict`]: one `nonlinearizable`
//! anomaly per offending part, with its evidence and a sentence a person
//! can follow; the reasons of parts that could not be decided; and, on
//! request, one linearization per part.

use std::time::{Duration, Instant};

use faultline_histories::{History, KeyId};
use serde_json::{json, Map, Value};

use super::evidence::{blocked_op, shrink, Deadlines};
use super::part::{Encoded, Part};
use super::search::{search, Budget, Exhausted, Found, SearchOp, Stats};
use super::table::Memory;
use super::unique::AnomalyKind;
use super::Config;
use crate::model::Model;
use crate::{Anomaly, Coverage, OpRef, Verdict};

/// Time allowed to shrink the evidence of one part, on top of the search
/// (always within the check's own deadline), when every anomaly is wanted.
const SHRINK_TIME: Duration = Duration::from_secs(2);

/// Time allowed by default to look for a classic proof of one or two
/// operations, at least: what the search took would leave nothing to the
/// small, fast proofs. Shrinking a larger proof after that gets only half
/// of what the search took (so the first anomaly, not its evidence, decides the
/// time: on Porcupine's small etcd logs the halving re-checks took several
/// times the search).
const SHRINK_TIME_MIN: Duration = Duration::from_millis(1);

/// How hard to shrink a proof.
#[derive(Clone, Copy, Debug)]
pub struct Effort {
    /// Shrink as far as the shrinker goes ([`SHRINK_TIME`]).
    pub exhaustive: bool,
    /// Otherwise, the time allowed: half as long as the check took so far
    /// (see `drive::after_first`).
    pub time: Duration,
}

impl Effort {
    /// The effort for a proof found `elapsed` into the check.
    pub fn new(all_anomalies: bool, elapsed: Duration) -> Effort {
        Effort {
            exhaustive: all_anomalies,
            time: elapsed,
        }
    }

    /// When looking for a classic proof must stop (and the polynomial
    /// check's shrink, which is all classic), within the check's
    /// `deadline`.
    pub fn deadline(self, deadline: Instant) -> Instant {
        deadline.min(Instant::now() + self.time().max(SHRINK_TIME_MIN))
    }

    /// The deadlines of a search's shrink, within the check's `deadline`.
    pub fn deadlines(self, deadline: Instant) -> Deadlines {
        Deadlines {
            classic: self.deadline(deadline),
            rest: deadline.min(Instant::now() + self.time()),
        }
    }

    fn time(self) -> Duration {
        if self.exhaustive {
            SHRINK_TIME
        } else {
            super::drive::after_first(self.time)
        }
    }
}

/// `1.2 s`, `35 ms`, `210 µs`.
pub fn duration(d: Duration) -> String {
    match d.as_micros() {
        us if us >= 1_000_000 => format!("{:.1} s", d.as_secs_f64()),
        us if us >= 1_000 => format!("{} ms", us / 1_000),
        us => format!("{us} µs"),
    }
}

#[derive(Debug)]
enum Kind {
    Valid {
        linearization: Vec<u64>,
    },
    Invalid(Box<Anomaly>),
    Unknown(String),
    /// The model could read none of the part's operations: not checked, not covered.
    Unread(String),
}

/// What one part came to.
#[derive(Debug)]
pub struct PartOutcome {
    label: String,
    key: Option<KeyId>,
    ops: usize,
    stats: Stats,
    kind: Kind,
    /// Positions in `History::ops` the model could read.
    covered: Vec<usize>,
}

/// The names (invoke event indices) of search operations `order`.
fn invoke_indices(history: &History, origin: &[usize], order: &[u32]) -> Vec<u64> {
    order
        .iter()
        .map(|&i| history.ops[origin[i as usize]].invoke_index)
        .collect()
}

impl PartOutcome {
    /// A part not yet decided.
    pub fn new(label: String, key: Option<KeyId>, ops: usize, stats: Stats) -> PartOutcome {
        PartOutcome {
            label,
            key,
            ops,
            stats,
            kind: Kind::Unknown("not searched".into()),
            covered: Vec::new(),
        }
    }

    /// The outcome, having read the operations at `covered`.
    pub fn covering(mut self, covered: Vec<usize>) -> PartOutcome {
        self.covered = covered;
        self
    }

    /// A part whose operations the model could not read.
    pub fn error(label: String, reason: String) -> PartOutcome {
        PartOutcome {
            kind: Kind::Unknown(reason),
            ..PartOutcome::new(label, None, 0, Stats::default())
        }
    }

    /// A part of which the model could read no operation.
    pub fn unread(label: String, reason: String) -> PartOutcome {
        PartOutcome {
            kind: Kind::Unread(format!("{label}: {reason}")),
            ..PartOutcome::new(label, None, 0, Stats::default())
        }
    }

    /// A part no worker reached (a worker panicked).
    pub fn never_ran(history: &History, part: &Part, split: bool) -> PartOutcome {
        let label = part.label(history, split);
        let reason = format!("{label}: not checked (a worker thread failed)");
        PartOutcome::error(label, reason)
    }

    /// The search found `order`.
    pub fn valid<M: Model>(&mut self, enc: &Encoded<M>, order: &[u32], history: &History) {
        self.kind = Kind::Valid {
            linearization: invoke_indices(history, &enc.origin, order),
        };
    }

    /// Stopped because another part's anomaly decided the time.
    pub fn stopped(&mut self, reason: &str, longest_det: usize, determinate: usize) {
        self.kind = Kind::Unknown(format!(
            "{}: not decided: {reason} (it had linearized at most {longest_det} of {determinate} determinate \
             operations)",
            self.label
        ));
    }

    /// A budget ran out.
    pub fn unknown(&mut self, why: Exhausted, longest_det: usize, determinate: usize, config: &Config) {
        let (what, takes) = match why {
            Exhausted::Time => (
                format!("time (limit {:.1} s)", config.time_limit.as_secs_f64()),
                "more time (--time-limit)",
            ),
            Exhausted::Memory => (
                format!("memory (limit {})", bytes(config.memory_limit_bytes)),
                "more memory (--memory-limit-mib)",
            ),
            Exhausted::Steps => ("its step limit".to_owned(), "more steps"),
            Exhausted::Stopped => ("the time another part's anomaly left it".to_owned(), "--all-anomalies"),
        };
        self.kind = Kind::Unknown(format!(
            "{}: the search ran out of {what} after linearizing at most {longest_det} of {determinate} \
             determinate operations ({} configurations visited); deciding it would take {takes}, or a history \
             of this key with fewer concurrent operations",
            self.label, self.stats.visited
        ));
    }

    /// No order works: builds the anomaly with its evidence.
    pub fn invalid<M: Model>(
        &mut self,
        enc: &Encoded<M>,
        longest: &[u32],
        state: &M::State,
        history: &History,
        shrink_by: Deadlines,
        memory: &Memory,
    ) {
        let Some(blocked) = blocked_op(&enc.ops, longest) else {
            self.kind = Kind::Unknown(format!(
                "{}: internal error: no operation blocks the search",
                self.label
            ));
            return;
        };
        let mut keep = shrink(&enc.model, &enc.ops, blocked, self.stats.steps, shrink_by, memory);
        if refuted_alone(&enc.model, &enc.ops, &keep, shrink_by.classic, memory) {
            // Cannot happen if the shrinker is right; fall back to every
            // determinate operation, which the main search proved.
            keep = enc.ops.iter().map(|o| o.mandatory()).collect();
        }
        let proof: Vec<u32> = (0..enc.ops.len() as u32).filter(|&i| keep[i as usize]).collect();
        let op_ref = |i: u32| OpRef::new(history, &history.ops[enc.origin[i as usize]]);
        let refs: Vec<OpRef> = proof.iter().map(|&i| op_ref(i)).collect();
        let state_text = enc.model.describe_state(state);
        let explanation = explain(
            &self.label,
            longest.len(),
            &abbreviate(&state_text),
            &op_ref(blocked),
            &refs,
        );
        let key = self.key.map(|k| history.key(k));
        let mut anomaly = Anomaly::new("nonlinearizable", key, refs, explanation);
        anomaly.details = json!({
            "longest_prefix": invoke_indices(history, &enc.origin, longest),
            "prefix_state": state_text,
            "blocked_op": op_ref(blocked).index,
            "proof_ops": invoke_indices(history, &enc.origin, &proof),
            "relaxed_ops": enc.ops.len() - proof.len(),
        });
        self.kind = Kind::Invalid(Box::new(anomaly));
    }
}

impl PartOutcome {
    /// The polynomial check of unique values proved the part not
    /// linearizable; `proof` (indices into the search operations) is
    /// confirmed to prove it on its own.
    pub fn proven<M: Model>(&mut self, enc: &Encoded<M>, proof: &[u32], kind: AnomalyKind, history: &History) {
        let op_ref = |i: u32| OpRef::new(history, &history.ops[enc.origin[i as usize]]);
        let refs: Vec<OpRef> = proof.iter().map(|&i| op_ref(i)).collect();
        let explanation = explain_proof(&self.label, kind, &refs);
        let key = self.key.map(|k| history.key(k));
        let mut anomaly = Anomaly::new("nonlinearizable", key, refs, explanation);
        anomaly.details = json!({
            "algorithm": "unique values (polynomial)",
            "shape": kind.name(),
            "proof_ops": invoke_indices(history, &enc.origin, proof),
            "relaxed_ops": enc.ops.len() - proof.len(),
        });
        self.kind = Kind::Invalid(Box::new(anomaly));
    }
}

/// The sentence of an anomaly the polynomial check proved.
fn explain_proof(label: &str, kind: AnomalyKind, proof: &[OpRef]) -> String {
    let why = match (kind, proof.len()) {
        (AnomalyKind::GarbageRead, 1) => "read a value that no operation wrote (a garbage read)",
        (AnomalyKind::FutureRead, 1) => "saw a value whose write began only after it ended (a read from the future)",
        (AnomalyKind::DoubleCas, _) => {
            "both took effect from one value, which only one operation ever wrote (only one could find it)"
        }
        (AnomalyKind::StaleRead, _) => {
            "contradict each other: the read saw a value that the update, which ended before the read began, had \
             already overwritten (a stale read)"
        }
        (AnomalyKind::IncompatibleOrder, _) => {
            "saw different values before the same update, which took effect only once (incompatible orders)"
        }
        _ => "cannot be put in any order that respects real time and the values the reads saw",
    };
    let these = match proof.len() {
        1 => "this operation".to_owned(),
        n => format!("these {n} operations"),
    };
    format!(
        "on {label}, {these} {why}, whether or not any of the other operations on {label} took effect (each at a \
         time it could have): {}.",
        listed(proof)
    )
}

/// Operations named in a sentence; the table lists them all.
const LISTED_MAX: usize = 4;

/// The first few operations of `proof`, then how many more.
fn listed(proof: &[OpRef]) -> String {
    let mut text: Vec<String> = proof.iter().take(LISTED_MAX).map(OpRef::describe).collect();
    if proof.len() > LISTED_MAX {
        text.push(format!("and {} more (see the table)", proof.len() - LISTED_MAX));
    }
    text.join("; ")
}

/// Steps for the sanity check of a proof set.
const SANITY_STEPS: u64 = 100_000;

/// True when the kept determinate operations alone, with nothing else,
/// turn out linearizable. They cannot if the shrinker is right (the
/// relaxed history it confirmed allows every order this one does), so this
/// is a cheap guard, bounded: running out of budget refutes nothing.
fn refuted_alone<M: Model>(
    model: &M,
    ops: &[SearchOp<M::Op>],
    keep: &[bool],
    deadline: Instant,
    memory: &Memory,
) -> bool {
    let alone: Vec<SearchOp<M::Op>> = ops
        .iter()
        .zip(keep)
        .filter(|(_, &k)| k)
        .map(|(o, _)| o.clone())
        .collect();
    let budget = Budget {
        deadline,
        soft: None,
        memory,
        max_steps: SANITY_STEPS,
    };
    matches!(search(model, &alone, budget).0, Found::Linearizable { .. })
}

/// Longest state text quoted whole in an explanation; `details` keeps it all.
const STATE_TEXT_MAX: usize = 160;

/// `text`, or its start and end around an ellipsis when it is long.
fn abbreviate(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= STATE_TEXT_MAX {
        return text.to_owned();
    }
    let head: String = chars[..STATE_TEXT_MAX / 2].iter().collect();
    let tail: String = chars[chars.len() - STATE_TEXT_MAX / 4..].iter().collect();
    format!("{head} … {tail} ({} characters)", chars.len())
}

/// `1 operation`, `3 operations`.
fn operations(n: usize) -> String {
    if n == 1 {
        "1 operation".to_owned()
    } else {
        format!("{n} operations")
    }
}

/// The sentence of a `nonlinearizable` anomaly.
fn explain(label: &str, prefix_len: usize, state: &str, blocked: &OpRef, proof: &[OpRef]) -> String {
    let these = match proof.len() {
        1 => "This operation alone cannot".to_owned(),
        n => format!("These {n} operations cannot"),
    };
    format!(
        "on {label}, after linearizing {} (the longest linearizable prefix, which leaves the state at {state}), \
         no order that respects real time can place {}. {these} be linearized, whether or not any of the \
         other operations on {label} took effect (each at a time it could have): {}.",
        operations(prefix_len),
        blocked.describe(),
        listed(proof)
    )
}

/// `1.0 GiB`, `12 MiB`, `100 bytes`.
fn bytes(n: usize) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / f64::from(1u32 << 30)),
        n if n >= 1 << 20 => format!("{} MiB", n >> 20),
        n => format!("{n} bytes"),
    }
}

fn key_name(history: &History, key: Option<KeyId>, split: bool) -> String {
    match key {
        Some(k) => history.key(k).to_string(),
        None if split => "(no key)".into(),
        None => "*".into(),
    }
}

/// Combines the parts into one verdict.
pub fn verdict(history: &History, config: &Config, mut parts: Vec<PartOutcome>, elapsed: Duration) -> Verdict {
    parts.sort_by_key(|p| p.key);
    let coverage: Coverage = parts.iter().flat_map(|p| p.covered.iter().copied()).collect();
    let ops = coverage.len();
    let mut anomalies = Vec::new();
    let mut unknown = Vec::new();
    let mut unread = Vec::new();
    let mut linearization = Map::new();
    for p in &mut parts {
        match std::mem::replace(&mut p.kind, Kind::Unknown(String::new())) {
            Kind::Valid { linearization: l } => {
                linearization.insert(key_name(history, p.key, config.split_by_key), json!(l));
            }
            Kind::Invalid(a) => anomalies.push(*a),
            Kind::Unknown(reason) => unknown.push(reason),
            Kind::Unread(reason) => unread.push(reason),
        }
    }
    let mut details = json!({
        "parts": parts.len(),
        "steps": parts.iter().map(|p| p.stats.steps).sum::<u64>(),
        "configurations": parts.iter().map(|p| p.stats.visited).sum::<usize>(),
        // Of the operations covered, those that constrain the search.
        "constraining_ops": parts.iter().map(|p| p.ops).sum::<usize>(),
    });
    if config.want_linearization {
        details["linearization"] = Value::Object(linearization);
    }
    if !unread.is_empty() {
        details["unread"] = json!(unread);
    }
    if !anomalies.is_empty() {
        if !unknown.is_empty() {
            details["undecided"] = json!(unknown);
        }
        let mut v = Verdict::from_anomalies(ops, elapsed, anomalies).with_coverage(coverage);
        v.details = details;
        return v;
    }
    let mut v = if unknown.is_empty() {
        Verdict::valid(ops, elapsed)
    } else {
        Verdict::unknown(ops, elapsed, summarize(&unknown))
    }
    .with_coverage(coverage);
    v.details = details;
    v
}

/// At most a few reasons, then how many more.
fn summarize(reasons: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut s = reasons.iter().take(SHOWN).cloned().collect::<Vec<_>>().join("; ");
    if reasons.len() > SHOWN {
        s.push_str(&format!("; and {} more parts undecided", reasons.len() - SHOWN));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_states_are_abbreviated_in_sentences() {
        assert_eq!(abbreviate("\"x 1 y\""), "\"x 1 y\"");
        let long = "ab".repeat(200);
        let short = abbreviate(&long);
        assert!(short.len() < 200 && short.ends_with("(400 characters)"), "{short}");
        assert_eq!(operations(1), "1 operation");
        assert_eq!(operations(3), "3 operations");
        assert_eq!(bytes(100), "100 bytes");
        assert_eq!(bytes(8 << 20), "8 MiB");
        assert_eq!(bytes(1 << 30), "1.0 GiB");
    }
}
