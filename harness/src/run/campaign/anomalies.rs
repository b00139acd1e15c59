//! Per-anomaly expectations of a campaign test: which anomaly types the
//! transactional checker must find and which it must never find, so that a
//! row of the ground-truth table ("G2-item must appear, G-single never")
//! is checked as written, not only as "the checker fails".
//!
//! ```toml
//! expect_anomalies = { transactional = { found_any = ["G-single", "G2-item"], never = ["G0", "G1a", "G1b", "G1c"] } }
//! ```
//!
//! - `found_any`: at least one of these types is found;
//! - `found_all`: every one of these types is found;
//! - `never`: none of these types is found, and the search for each of them
//!   ran to the end (a search cut off by its budget proves no absence).
//!
//! The types are those the checker reports, whatever the consistency models
//! judged (`details.anomaly_types`: write skew is found under snapshot
//! isolation too, only allowed). Names are checked when the file is read:
//! an unknown type, or a `-process` / `-realtime` cycle the test's models
//! never search for, is an error naming the test and the key, since such an
//! expectation could never be met (or never fail).

use std::collections::BTreeSet;

use faultline_checkers::Verdict;
use faultline_txn::Model;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::check_txn;

/// `expect_anomalies` as the file writes it: per checker, and only the
/// transactional checker names its anomalies by type.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomaliesSpec {
    pub transactional: Option<AnomalyLists>,
}

/// One checker's lists, as written.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyLists {
    #[serde(default)]
    pub found_any: Vec<String>,
    #[serde(default)]
    pub found_all: Vec<String>,
    #[serde(default)]
    pub never: Vec<String>,
}

/// A checked expectation on the anomaly types one checker finds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AnomalyExpect {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub found_any: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub found_all: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub never: Vec<String>,
}

/// What a run's verdict showed against an [`AnomalyExpect`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnomalyMatch {
    pub holds: bool,
    /// Every type found, sorted.
    pub found: Vec<String>,
    /// Why it does not hold, when it does not.
    pub why: Option<String>,
}

impl AnomalyLists {
    /// Checks the names against what the transactional checker reports
    /// when it judges `models`; the error names the key at fault.
    pub fn validate(&self, models: &[Model]) -> Result<AnomalyExpect, String> {
        if self.found_any.is_empty() && self.found_all.is_empty() && self.never.is_empty() {
            return Err("transactional: give found_any, found_all or never".into());
        }
        let known = check_txn::anomaly_kinds();
        for (key, list) in self.lists() {
            for kind in list {
                known_kind(&known, kind, models).map_err(|m| format!("transactional.{key}: {m}"))?;
            }
        }
        let expected: BTreeSet<&String> = self.found_any.iter().chain(&self.found_all).collect();
        if let Some(both) = self.never.iter().find(|k| expected.contains(k)) {
            return Err(format!("transactional.never: {both:?} is also expected to be found"));
        }
        Ok(AnomalyExpect {
            found_any: self.found_any.clone(),
            found_all: self.found_all.clone(),
            never: self.never.clone(),
        })
    }

    fn lists(&self) -> [(&'static str, &Vec<String>); 3] {
        [
            ("found_any", &self.found_any),
            ("found_all", &self.found_all),
            ("never", &self.never),
        ]
    }
}

/// Ok when the checker reports `kind` and searches for it under `models`.
fn known_kind(known: &[String], kind: &str, models: &[Model]) -> Result<(), String> {
    if !known.iter().any(|k| k == kind) {
        return Err(format!(
            "unknown anomaly type {kind:?}: the transactional checker reports {}",
            known.join(", ")
        ));
    }
    if !check_txn::searched_for(kind, models) {
        return Err(format!(
            "{kind:?} is never searched for under the test's consistency_models (none of them needs process or \
             real-time order): add one that does, such as strict-serializable"
        ));
    }
    Ok(())
}

impl AnomalyExpect {
    /// Judges a verdict of the checker: the types it found against the
    /// lists. A verdict that judged nothing meets no expectation.
    pub fn judge(&self, v: &Verdict) -> AnomalyMatch {
        let found = found_types(v);
        let why = match v.applies() {
            false => Some("the checker had nothing to judge".to_owned()),
            true => self.mismatch(&found, &unsearched_types(v)),
        };
        AnomalyMatch {
            holds: why.is_none(),
            found: found.into_iter().collect(),
            why,
        }
    }

    /// Why `found` (with `unsearched` types undecided) does not meet the
    /// lists, or `None` when it does.
    fn mismatch(&self, found: &BTreeSet<String>, unsearched: &BTreeSet<String>) -> Option<String> {
        let mut why = Vec::new();
        let seen: Vec<&String> = self.never.iter().filter(|k| found.contains(*k)).collect();
        if !seen.is_empty() {
            why.push(format!("found {}, which must never appear", join(&seen)));
        }
        let undecided: Vec<&String> = self.never.iter().filter(|k| unsearched.contains(*k)).collect();
        if !undecided.is_empty() {
            why.push(format!(
                "the search for {} ran past its budget: whether it appears is unknown",
                join(&undecided)
            ));
        }
        let missing: Vec<&String> = self.found_all.iter().filter(|k| !found.contains(*k)).collect();
        if !missing.is_empty() {
            why.push(format!("{} not found (all of found_all must be)", join(&missing)));
        }
        if !self.found_any.is_empty() && !self.found_any.iter().any(|k| found.contains(k)) {
            why.push(format!(
                "none of {} found",
                join(&self.found_any.iter().collect::<Vec<_>>())
            ));
        }
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// The expectation in a few words: `one of G-single, G2-item; never G0, G1a`.
    pub fn words(&self) -> String {
        let mut parts = Vec::new();
        let list = |v: &Vec<String>| join(&v.iter().collect::<Vec<_>>());
        if !self.found_any.is_empty() {
            parts.push(format!("one of {}", list(&self.found_any)));
        }
        if !self.found_all.is_empty() {
            parts.push(format!("all of {}", list(&self.found_all)));
        }
        if !self.never.is_empty() {
            parts.push(format!("never {}", list(&self.never)));
        }
        parts.join("; ")
    }
}

fn join(kinds: &[&String]) -> String {
    kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
}

/// The types the checker found, allowed by its models or not: the
/// transactional checker lists them in `details.anomaly_types`.
fn found_types(v: &Verdict) -> BTreeSet<String> {
    strings(v.details.get("anomaly_types"))
        .chain(v.anomalies.iter().map(|a| a.kind.clone()))
        .collect()
}

/// The types whose search was cut off by its budget (`details.unsearched`).
fn unsearched_types(v: &Verdict) -> BTreeSet<String> {
    let list = v.details.get("unsearched").and_then(Value::as_array);
    list.into_iter()
        .flatten()
        .filter_map(|u| u.get("kind").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

fn strings(v: Option<&Value>) -> impl Iterator<Item = String> + '_ {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
}

#[cfg(test)]
#[path = "anomalies_tests.rs"]
mod tests;
