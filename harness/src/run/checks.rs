//! Checking a run's history: the same choice and the same file verdict as
//! `faultline check`, so re-checking `history.jsonl` later gives the run's
//! checkers and the run's verdict.
//!
//! A run does not choose checkers for its workload: it records in the
//! history's header what the choice depends on (its workload, and the
//! `--checkers` and `--consistency-model`s it was given, if any) and lets `check::check_history`
//! choose from the history, as it does for any file. So the list-append
//! workload's rule (no list linearizability search unless asked: with many
//! indeterminate appends it rarely decides within budget) is a property of
//! its histories, not of the command that checks them.

use std::time::Duration;

use faultline_checkers::session;
use faultline_histories::import::Format;
use faultline_histories::History;
use serde_json::{json, Map, Value};

use faultline_txn::Model;

use crate::check::{self, CheckOptions, Report, AUTO, HEADER_CHECKERS, HEADER_CONSISTENCY_MODELS, HEADER_WORKLOAD};

fn is_linearizable(name: &str) -> bool {
    matches!(name, "linearizable" | "linearizability" | "lin")
}

/// Checks that every name is a checker we have (or `auto`).
pub fn validate_names(names: &[String]) -> Result<(), String> {
    for n in names {
        if n != AUTO && !is_linearizable(n) && !crate::check_txn::is_name(n) && session::by_name(n).is_none() {
            return Err(format!(
                "unknown checker {n:?} (known: auto, linearizable, transactional, {})",
                session::names().join(", ")
            ));
        }
    }
    Ok(())
}

/// The header fields a run writes so that the history alone decides its
/// checkers: the workload, the checkers asked for (none: automatic) and
/// the consistency models the transactional checker judges (none: its
/// default).
pub fn header_fields(workload: &str, checkers: &[String], models: &[Model]) -> Map<String, Value> {
    let mut extra = Map::new();
    extra.insert(HEADER_WORKLOAD.to_owned(), json!(workload));
    if !checkers.is_empty() {
        extra.insert(HEADER_CHECKERS.to_owned(), json!(checkers));
    }
    if !models.is_empty() {
        extra.insert(HEADER_CONSISTENCY_MODELS.to_owned(), json!(models));
    }
    extra
}

/// Checks a run's history through `check::check_history`, the path of
/// `faultline check`; a linearizability search gets `time_limit`.
pub fn check_run_history(history: &History, time_limit: Duration) -> Result<Report, String> {
    let opts = CheckOptions {
        time_limit,
        ..CheckOptions::default()
    };
    check::check_history(history, Format::Jsonl, &opts).map_err(|e| e.to_string())
}
