//! Which checkers judge which workload, and running them on a recorded
//! history.
//!
//! - register: linearizable (compare-and-set register, per key);
//! - list-append: lost-writes, consistent-prefix and monotonic-writes (the
//!   list model's linearizability search is run only when asked: with many
//!   indeterminate appends it rarely decides within budget, and the
//!   register workload answers that question cheaply);
//! - session: read-your-writes, monotonic-reads, writes-follow-reads and
//!   linearizable (register);
//! - multi-key: consistent-prefix across keys.
//!
//! The user may name others with `--checkers`.

use std::collections::BTreeMap;
use std::time::Duration;

use faultline_checkers::linear::{self, ModelSpec};
use faultline_checkers::{session, Checker, Verdict};
use faultline_histories::History;
use faultline_workloads::WorkloadKind;

/// The checkers a workload is judged by when the user names none.
pub fn default_checkers(kind: WorkloadKind) -> Vec<String> {
    let names: &[&str] = match kind {
        WorkloadKind::Register => &["linearizable"],
        WorkloadKind::ListAppend => &["lost-writes", "consistent-prefix", "monotonic-writes"],
        WorkloadKind::Session => &[
            "linearizable",
            "read-your-writes",
            "monotonic-reads",
            "writes-follow-reads",
        ],
        WorkloadKind::MultiKey => &["consistent-prefix"],
    };
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn is_linearizable(name: &str) -> bool {
    matches!(name, "linearizable" | "linearizability" | "lin")
}

/// Checks that every name is a checker we have.
pub fn validate_names(names: &[String]) -> Result<(), String> {
    for n in names {
        if !is_linearizable(n) && session::by_name(n).is_none() {
            return Err(format!(
                "unknown checker {n:?} (known: linearizable, {})",
                session::names().join(", ")
            ));
        }
    }
    Ok(())
}

/// Runs the named checkers; a linearizability search gets `time_limit`.
pub fn run_checkers(
    history: &History,
    kind: WorkloadKind,
    names: &[String],
    time_limit: Duration,
) -> Result<BTreeMap<String, Verdict>, String> {
    let mut out = BTreeMap::new();
    let others: Vec<&str> = names
        .iter()
        .filter(|n| !is_linearizable(n))
        .map(String::as_str)
        .collect();
    if names.iter().any(|n| is_linearizable(n)) {
        let model = match kind {
            WorkloadKind::ListAppend => ModelSpec::List,
            _ => ModelSpec::CasRegister {
                initial: serde_json::Value::Null,
            },
        };
        let checker = linear::Linearizable {
            config: linear::Config {
                model,
                time_limit,
                ..linear::Config::default()
            },
        };
        out.insert("linearizable".to_owned(), checker.check(history));
    }
    if !others.is_empty() {
        for (name, verdict) in session::check_all(history, &others).map_err(|e| e.to_string())? {
            out.insert(name.to_owned(), verdict);
        }
    }
    Ok(out)
}
