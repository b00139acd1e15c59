//! Checking a recorded history: choose the checkers that apply, run them,
//! and gather named verdicts. `faultline check` and `faultline run` both come
//! here, so a history recorded by a run and the same file re-checked later
//! get the same verdicts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use faultline_checkers::linear::{self, ModelSpec, NilReads};
use faultline_checkers::{session, Checker, Validity, Verdict};
use faultline_histories::import::{self, Format};
use faultline_histories::{History, HistoryError};
use serde::Serialize;
use serde_json::Value;

pub use crate::models::ModelName;
use crate::models::{self, ModelChoice, ModelRequest};

/// A validated request to check histories.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// The input format; `None` detects it per file.
    pub format: Option<Format>,
    /// The model for linearizability; `None` infers it from the format and
    /// the operations.
    pub model: Option<ModelName>,
    /// The register's value before any write.
    pub initial: Value,
    /// What a read of null means; `None` goes by the format (see
    /// `models::default_nil_reads`).
    pub nil_reads: Option<NilReads>,
    /// The time budget of each search.
    pub time_limit: Duration,
    /// The memory budget of each search.
    pub memory_limit_bytes: usize,
    /// Checkers by name; `None` runs every checker that applies.
    pub checkers: Option<Vec<String>>,
    /// Ask the linearizability checker for one linearization when valid.
    pub want_linearization: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            format: None,
            model: None,
            initial: Value::Null,
            nil_reads: None,
            time_limit: Duration::from_secs(60),
            memory_limit_bytes: 1 << 30,
            checkers: None,
            want_linearization: false,
        }
    }
}

/// Why a check could not run.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The file could not be read or parsed.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// The user named a checker that does not exist.
    #[error("unknown checker {0:?}: expected one of {1}")]
    UnknownChecker(String, String),
}

/// The verdicts for one history.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub file: PathBuf,
    /// Every checker's verdict combined: invalid beats unknown beats valid.
    pub valid: Validity,
    /// The format the file was read as.
    pub format: String,
    /// The linearizability model and why it was chosen; `None` when the
    /// linearizable checker did not run.
    pub model: Option<ModelChoice>,
    /// Verdicts by checker name, in a stable order.
    pub checkers: BTreeMap<String, Verdict>,
    /// What the reader accepted but a person should know.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Names accepted by `--checkers`, in the order of the docs.
pub const CHECKER_NAMES: &[&str] = &[
    "linearizable",
    "read-your-writes",
    "monotonic-reads",
    "monotonic-writes",
    "writes-follow-reads",
    "consistent-prefix",
    "lost-writes",
    "convergence",
];

/// Reads the file at `path` and checks it.
pub fn check_file(path: &Path, opts: &CheckOptions) -> Result<Report, CheckError> {
    let (history, format) = import::read_any(path, opts.format, &faultline_histories::ReadLimits::default())?;
    let mut report = check_history(&history, format, opts)?;
    report.file = path.to_owned();
    Ok(report)
}

/// Checks a history already in memory.
pub fn check_history(history: &History, format: Format, opts: &CheckOptions) -> Result<Report, CheckError> {
    let plan = plan(history, format, opts)?;
    let mut verdicts = BTreeMap::new();
    let mut warnings = history.warnings.clone();
    warnings.extend(plan.model_warning);
    if let Some(model) = plan.linearizable {
        verdicts.insert("linearizable".to_owned(), linearizable(model, opts).check(history));
    }
    if !plan.session.is_empty() {
        // One pass builds the tables every session checker shares.
        let judged = session::check_all(history, &plan.session)
            .map_err(|e| CheckError::UnknownChecker(e.0, CHECKER_NAMES.join(", ")))?;
        for (name, verdict) in judged {
            // Unasked, a checker that found nothing to judge is left out
            // rather than shown as a pass; asked by name, it is shown as not
            // applicable.
            if opts.checkers.is_none() && !applies(&verdict) {
                continue;
            }
            verdicts.insert(name.to_owned(), verdict);
        }
    }
    let valid = verdicts.values().fold(Validity::Valid, |acc, v| acc.and(v.valid));
    Ok(Report {
        file: PathBuf::new(),
        valid,
        format: format.name().to_owned(),
        model: plan.model,
        checkers: verdicts,
        warnings,
    })
}

/// False when a checker says it had nothing to judge in this history
/// (`details.applicable == false`).
pub fn applies(v: &Verdict) -> bool {
    v.details.get("applicable").and_then(Value::as_bool) != Some(false)
}

/// What to run: the linearizability model, if any, and the session-family
/// checkers by their canonical names.
struct Plan {
    linearizable: Option<ModelSpec>,
    /// The report's account of the model.
    model: Option<ModelChoice>,
    /// Why linearizability was not checked, when no model fits.
    model_warning: Option<String>,
    session: Vec<&'static str>,
}

fn is_linearizable_name(name: &str) -> bool {
    matches!(name, "linearizable" | "linearizability" | "lin")
}

fn plan(history: &History, format: Format, opts: &CheckOptions) -> Result<Plan, CheckError> {
    let Some(names) = &opts.checkers else {
        let mut plan = Plan {
            linearizable: None,
            model: None,
            model_warning: None,
            session: session::applicable(history).iter().map(|c| c.name()).collect(),
        };
        plan.set_model(models::decide(history, format, &model_request(opts), false), history);
        return Ok(plan);
    };
    let mut plan = Plan {
        linearizable: None,
        model: None,
        model_warning: None,
        session: Vec::new(),
    };
    for name in names {
        if is_linearizable_name(name) {
            plan.set_model(models::decide(history, format, &model_request(opts), true), history);
            continue;
        }
        let checker =
            session::by_name(name).ok_or_else(|| CheckError::UnknownChecker(name.clone(), CHECKER_NAMES.join(", ")))?;
        if !plan.session.contains(&checker.name()) {
            plan.session.push(checker.name());
        }
    }
    Ok(plan)
}

fn linearizable(model: ModelSpec, opts: &CheckOptions) -> linear::Linearizable {
    linear::Linearizable {
        config: linear::Config {
            model,
            time_limit: opts.time_limit,
            memory_limit_bytes: opts.memory_limit_bytes,
            want_linearization: opts.want_linearization,
            ..linear::Config::default()
        },
    }
}

impl Plan {
    /// Takes the model decision; a history with operations but no model
    /// that reads them says why in a warning.
    fn set_model(&mut self, decision: models::Decision, history: &History) {
        self.linearizable = decision.spec;
        self.model = decision.choice;
        self.model_warning = decision
            .none_why
            .filter(|_| !history.ops.is_empty())
            .map(|why| format!("linearizability not checked: {why}"));
    }
}

fn model_request(opts: &CheckOptions) -> ModelRequest {
    ModelRequest {
        model: opts.model,
        initial: opts.initial.clone(),
        nil_reads: opts.nil_reads,
    }
}

/// The exit code of ARCHITECTURE.md for a set of results: 3 if any file
/// could not be checked, else 1 if any is invalid, else 2 if any is unknown.
pub fn exit_code(validities: impl IntoIterator<Item = Validity>, any_error: bool) -> u8 {
    if any_error {
        return 3;
    }
    match validities.into_iter().fold(Validity::Valid, Validity::and) {
        Validity::Valid => 0,
        Validity::Invalid => 1,
        Validity::Unknown => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_architecture() {
        use Validity::*;
        assert_eq!(exit_code([Valid, Valid], false), 0);
        assert_eq!(exit_code([Valid, Unknown], false), 2);
        assert_eq!(exit_code([Unknown, Invalid], false), 1);
        assert_eq!(exit_code([Valid], true), 3);
    }
}
