//! What a checker says about a history: a [`Verdict`] with evidence.
//!
//! A verdict is never a bare boolean. `Invalid` carries [`Anomaly`]s, each
//! naming the smallest set of operations that proves it and a sentence a
//! person can follow; `Unknown` carries the reason the checker could not
//! decide (budget spent, history incomplete). A malformed history is not a
//! verdict at all: it is an error before any checker runs.
//!
//! Every verdict also carries its [`Coverage`]: which operations the checker
//! looked at. A verdict that never set it covered nothing, so a checker that
//! forgets to say what it judged leaves operations unchecked (and the file's
//! verdict unknown) rather than vouching for them.

use std::time::Duration;

use faultline_histories::{History, Key, Op, Outcome, Process};
use serde::{Serialize, Serializer};

/// The three answers a checker can give.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Validity {
    Valid,
    Invalid,
    /// The checker could not decide; see [`Verdict::unknown_reason`].
    Unknown,
}

impl Validity {
    /// Combines verdicts of parts: any invalid part makes the whole invalid;
    /// otherwise any unknown part makes it unknown.
    pub fn and(self, other: Validity) -> Validity {
        use Validity::*;
        match (self, other) {
            (Invalid, _) | (_, Invalid) => Invalid,
            (Unknown, _) | (_, Unknown) => Unknown,
            _ => Valid,
        }
    }
}

/// Serialized as `true`, `false` or `"unknown"`, the contract of
/// `faultline check --json`.
impl Serialize for Validity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Validity::Valid => s.serialize_bool(true),
            Validity::Invalid => s.serialize_bool(false),
            Validity::Unknown => s.serialize_str("unknown"),
        }
    }
}

/// One operation named as evidence, with everything a reader needs to find
/// it in the history and on a timeline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OpRef {
    /// Index of the invoke event: the operation's name in the history.
    pub index: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub complete_index: Option<u64>,
    #[serde(serialize_with = "ser_process")]
    pub process: Process,
    pub f: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The argument on invoke.
    pub input: serde_json::Value,
    /// The result, for operations that completed ok.
    pub output: serde_json::Value,
    /// ok, fail, info or pending.
    pub outcome: &'static str,
    /// Nanoseconds since the test started.
    pub invoke_time: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub complete_time: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

fn ser_process<S: Serializer>(p: &Process, s: S) -> Result<S::Ok, S::Error> {
    p.serialize(s)
}

impl OpRef {
    /// Names an operation of `history`.
    pub fn new(history: &History, op: &Op) -> OpRef {
        OpRef {
            index: op.invoke_index,
            complete_index: op.complete_index,
            process: op.process,
            f: op.f.to_string(),
            key: op.key.map(|k| history.key(k).to_string()),
            input: op.input.clone(),
            output: op.output.clone(),
            outcome: outcome_name(op.outcome),
            invoke_time: op.invoke_time,
            complete_time: op.complete_time,
            node: op.node.map(|n| history.node(n).to_owned()),
        }
    }

    /// A short human description: `op 881 (process 7 write 12 to k3, ok at 3.2 s)`.
    pub fn describe(&self) -> String {
        let key = self.key.as_deref().map(|k| format!(" {k}")).unwrap_or_default();
        let end = match self.complete_time {
            Some(t) => format!("{} at {}", self.outcome, seconds(t)),
            None => format!("{}, invoked at {}", self.outcome, seconds(self.invoke_time)),
        };
        let value = if self.outcome == "ok" {
            &self.output
        } else {
            &self.input
        };
        format!(
            "op {} (process {} {}{} {}, {})",
            self.index, self.process, self.f, key, value, end
        )
    }
}

/// The name of an outcome as it appears in reports.
pub fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "ok",
        Outcome::Fail => "fail",
        Outcome::Info => "info",
        Outcome::Pending => "pending",
    }
}

/// Formats nanoseconds since the start of a test as seconds: `3.214 s`.
pub fn seconds(ns: u64) -> String {
    format!("{:.3} s", ns as f64 / 1e9)
}

/// One thing a checker found wrong, with its proof.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Anomaly {
    /// What kind: `nonlinearizable`, `read-your-writes`, `lost-write`, ...
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(serialize_with = "ser_processes")]
    pub processes: Vec<Process>,
    /// The smallest set of operations that proves it.
    pub ops: Vec<OpRef>,
    /// One or two sentences a person can follow.
    pub explanation: String,
    /// Checker-specific detail (for linearizability: the longest prefix that
    /// could be linearized), for reports and tools.
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

fn ser_processes<S: Serializer>(ps: &[Process], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(ps.iter())
}

impl Anomaly {
    /// An anomaly of `kind` about `key`, proven by `ops`; processes are taken
    /// from the operations.
    pub fn new(kind: &str, key: Option<&Key>, ops: Vec<OpRef>, explanation: String) -> Anomaly {
        let mut processes: Vec<Process> = ops.iter().map(|o| o.process).collect();
        processes.sort();
        processes.dedup();
        Anomaly {
            kind: kind.to_owned(),
            key: key.map(|k| k.to_string()),
            processes,
            ops,
            explanation,
            details: serde_json::Value::Null,
        }
    }
}

/// Which operations of a history a checker looked at: a set of positions in
/// `History::ops`. "Looked at" means read and judged, even when judged to
/// constrain nothing (a failed write); an operation the checker could not
/// interpret is not covered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    words: Vec<u64>,
    len: usize,
}

impl Coverage {
    /// Covers nothing.
    pub fn new() -> Coverage {
        Coverage::default()
    }

    /// Marks operation `i` as looked at; true if it was not already.
    pub fn insert(&mut self, i: usize) -> bool {
        let (w, bit) = (i / 64, 1u64 << (i % 64));
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        let fresh = self.words[w] & bit == 0;
        self.words[w] |= bit;
        self.len += usize::from(fresh);
        fresh
    }

    /// Whether operation `i` was looked at.
    pub fn contains(&self, i: usize) -> bool {
        self.words.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// How many operations were looked at.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing was looked at.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds every operation `other` covers.
    pub fn union_with(&mut self, other: &Coverage) {
        if other.words.len() > self.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= *b;
        }
        self.len = self.words.iter().map(|w| w.count_ones() as usize).sum();
    }
}

impl FromIterator<usize> for Coverage {
    fn from_iter<I: IntoIterator<Item = usize>>(iter: I) -> Coverage {
        let mut c = Coverage::new();
        for i in iter {
            c.insert(i);
        }
        c
    }
}

/// What one checker concluded about one history.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub valid: Validity,
    /// How many operations the checker looked at: `coverage.len()` for a
    /// verdict made by a checker (one read back from JSON has no coverage).
    pub ops: usize,
    /// Which operations the checker looked at. Not in JSON: `ops` counts
    /// them, and the file's verdict names what no checker covered.
    #[serde(skip)]
    pub coverage: Coverage,
    pub elapsed_ms: f64,
    pub anomalies: Vec<Anomaly>,
    /// Why the answer is unknown; set only when `valid` is `Unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown_reason: Option<String>,
    /// Checker-specific results (a linearization, per-key statistics, ...).
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

impl Verdict {
    /// A valid verdict after looking at `ops` operations.
    pub fn valid(ops: usize, elapsed: Duration) -> Verdict {
        Verdict {
            valid: Validity::Valid,
            ops,
            coverage: Coverage::new(),
            elapsed_ms: elapsed.as_secs_f64() * 1e3,
            anomalies: Vec::new(),
            unknown_reason: None,
            details: serde_json::Value::Null,
        }
    }

    /// Valid if `anomalies` is empty, invalid otherwise.
    pub fn from_anomalies(ops: usize, elapsed: Duration, anomalies: Vec<Anomaly>) -> Verdict {
        let mut v = Verdict::valid(ops, elapsed);
        if !anomalies.is_empty() {
            v.valid = Validity::Invalid;
        }
        v.anomalies = anomalies;
        v
    }

    /// How many anomalies the checker found. Checkers that find thousands
    /// keep only the first few as evidence (`anomalies`) and record the
    /// whole count in `details.anomalies_found`; a count shown to a person
    /// must be this one, not the length of the evidence.
    pub fn anomalies_found(&self) -> usize {
        self.details
            .get("anomalies_found")
            .and_then(serde_json::Value::as_u64)
            .map_or(self.anomalies.len(), |n| n as usize)
            .max(self.anomalies.len())
    }

    /// The verdict with `coverage` as what it looked at; `ops` becomes its count.
    pub fn with_coverage(mut self, coverage: Coverage) -> Verdict {
        self.ops = coverage.len();
        self.coverage = coverage;
        self
    }

    /// The verdict of a checker that found nothing in the history to judge
    /// (no transactions for the transactional checker, no final reads for
    /// lost-writes, ...): it covers no operation and says why in
    /// `details.why` beside `details.applicable: false`. Its validity stays
    /// `Valid` only so that it leaves the file's verdict alone; every report
    /// shows it as not applicable, never as valid, and it meets no `pass`
    /// expectation.
    pub fn not_applicable(elapsed: Duration, why: impl Into<String>) -> Verdict {
        let mut v = Verdict::valid(0, elapsed);
        v.details = serde_json::json!({"applicable": false, "why": why.into()});
        v
    }

    /// False for a verdict of a checker that had nothing to judge
    /// ([`Verdict::not_applicable`]).
    pub fn applies(&self) -> bool {
        self.details.get("applicable").and_then(serde_json::Value::as_bool) != Some(false)
    }

    /// Why the checker had nothing to judge, when it had not.
    pub fn not_applicable_why(&self) -> Option<&str> {
        if self.applies() {
            return None;
        }
        Some(
            self.details
                .get("why")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("nothing to judge"),
        )
    }

    /// An unknown verdict with its reason.
    pub fn unknown(ops: usize, elapsed: Duration, reason: String) -> Verdict {
        let mut v = Verdict::valid(ops, elapsed);
        v.valid = Validity::Unknown;
        v.unknown_reason = Some(reason);
        v
    }
}

/// A checker: a plain function from a history to a verdict.
pub trait Checker {
    /// The name used in reports and on the command line (`linearizable`,
    /// `read-your-writes`, ...).
    fn name(&self) -> &'static str;
    /// Judges the history.
    fn check(&self, history: &History) -> Verdict;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_serializes_as_the_cli_contract_says() {
        assert_eq!(serde_json::to_string(&Validity::Valid).unwrap(), "true");
        assert_eq!(serde_json::to_string(&Validity::Invalid).unwrap(), "false");
        assert_eq!(serde_json::to_string(&Validity::Unknown).unwrap(), "\"unknown\"");
    }

    #[test]
    fn the_count_found_outlives_the_evidence_kept() {
        let a = Anomaly {
            kind: "lost-write".into(),
            key: None,
            processes: Vec::new(),
            ops: Vec::new(),
            explanation: String::new(),
            details: serde_json::Value::Null,
        };
        let mut v = Verdict::from_anomalies(10, Duration::ZERO, vec![a.clone(), a]);
        assert_eq!(v.anomalies_found(), 2);
        v.details = serde_json::json!({"anomalies_found": 2198});
        assert_eq!(v.anomalies_found(), 2198);
    }

    #[test]
    fn coverage_counts_each_operation_once() {
        let mut c: Coverage = [3, 70, 3].into_iter().collect();
        assert_eq!(c.len(), 2);
        assert!(c.contains(3) && c.contains(70) && !c.contains(4) && !c.contains(1000));
        assert!(!c.insert(70));
        c.union_with(&[1, 3, 200].into_iter().collect());
        assert_eq!(c.len(), 4);
        let v = Verdict::valid(99, Duration::ZERO).with_coverage(c);
        assert_eq!(v.ops, 4);
        assert!(Verdict::valid(0, Duration::ZERO).coverage.is_empty());
    }

    #[test]
    fn invalid_dominates_unknown_dominates_valid() {
        use Validity::*;
        assert_eq!(Valid.and(Unknown), Unknown);
        assert_eq!(Unknown.and(Invalid), Invalid);
        assert_eq!(Valid.and(Valid), Valid);
    }
}
