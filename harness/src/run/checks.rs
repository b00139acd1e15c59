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

use faultline_checkers::{session, Verdict};
use faultline_histories::import::Format;
use faultline_histories::History;
use faultline_workloads::WorkloadKind;

use crate::check::{self, CheckOptions, ModelName};

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

/// Runs the named checkers through `check::check_history`, the same path
/// as `faultline check`, so a run's history re-checked later gets the same
/// verdicts; a linearizability search gets `time_limit`.
pub fn run_checkers(
    history: &History,
    kind: WorkloadKind,
    names: &[String],
    time_limit: Duration,
) -> Result<BTreeMap<String, Verdict>, String> {
    let opts = CheckOptions {
        model: Some(match kind {
            WorkloadKind::ListAppend => ModelName::List,
            _ => ModelName::CasRegister,
        }),
        time_limit,
        checkers: Some(names.to_vec()),
        ..CheckOptions::default()
    };
    check::check_history(history, Format::Jsonl, &opts)
        .map(|r| r.checkers)
        .map_err(|e| e.to_string())
}
