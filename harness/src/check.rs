//! Checking a recorded history: choose the checkers that apply, run them,
//! and gather named verdicts. `faultline check` and `faultline run` both come
//! here, so a history recorded by a run and the same file re-checked later
//! get the same verdicts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use faultline_checkers::linear::{self, ModelSpec};
use faultline_checkers::{session, Checker, Validity, Verdict};
use faultline_histories::import::{self, Format};
use faultline_histories::{History, HistoryError, Outcome, F};
use serde::Serialize;
use serde_json::Value;

/// Which model the linearizability checker uses, as the user names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelName {
    Register,
    CasRegister,
    Kv,
    List,
}

impl std::str::FromStr for ModelName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "register" => ModelName::Register,
            "cas-register" => ModelName::CasRegister,
            "kv" => ModelName::Kv,
            "list" => ModelName::List,
            other => {
                return Err(format!(
                    "unknown model {other:?}: expected register, cas-register, kv or list"
                ))
            }
        })
    }
}

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
        checkers: verdicts,
        warnings: history.warnings.clone(),
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
    session: Vec<&'static str>,
}

fn is_linearizable_name(name: &str) -> bool {
    matches!(name, "linearizable" | "linearizability" | "lin")
}

fn plan(history: &History, format: Format, opts: &CheckOptions) -> Result<Plan, CheckError> {
    let Some(names) = &opts.checkers else {
        return Ok(Plan {
            linearizable: linear_model(history, format, opts),
            session: session::applicable(history).iter().map(|c| c.name()).collect(),
        });
    };
    let mut plan = Plan {
        linearizable: None,
        session: Vec::new(),
    };
    for name in names {
        if is_linearizable_name(name) {
            let model = linear_model(history, format, opts).unwrap_or_else(|| model_spec(ModelName::Register, opts));
            plan.linearizable = Some(model);
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

fn model_spec(name: ModelName, opts: &CheckOptions) -> ModelSpec {
    match name {
        ModelName::Register => ModelSpec::Register {
            initial: opts.initial.clone(),
        },
        ModelName::CasRegister => ModelSpec::CasRegister {
            initial: opts.initial.clone(),
        },
        ModelName::Kv => ModelSpec::Kv,
        ModelName::List => ModelSpec::List,
    }
}

/// The model for linearizability: the user's choice, else what the format
/// implies, else what the operations show. `None` when no operation is one
/// a model understands (a history of multi-key transactions only, say).
fn linear_model(history: &History, format: Format, opts: &CheckOptions) -> Option<ModelSpec> {
    if let Some(m) = opts.model {
        return Some(model_spec(m, opts));
    }
    let inferred = match format {
        Format::PorcupineEtcd => ModelName::CasRegister,
        Format::PorcupineKv => ModelName::Kv,
        Format::Jsonl | Format::JepsenEdn => infer_model(history)?,
    };
    Some(model_spec(inferred, opts))
}

/// Looks at what the operations do: appends read back as lists mean the
/// list model, appends read back as strings the key-value model, any cas the
/// compare-and-set register, plain reads and writes the register.
fn infer_model(history: &History) -> Option<ModelName> {
    let mut has_cas = false;
    let mut has_rw = false;
    let mut append_kind = None;
    for op in &history.ops {
        match op.f {
            F::Cas => has_cas = true,
            F::Write => has_rw = true,
            F::Read => {
                has_rw = true;
                if op.outcome == Outcome::Ok {
                    match op.output {
                        Value::Array(_) => append_kind = Some(ModelName::List),
                        Value::String(_) if append_kind.is_none() => append_kind = Some(ModelName::Kv),
                        _ => {}
                    }
                }
            }
            F::Append => append_kind = append_kind.or(Some(ModelName::List)),
            _ => {}
        }
    }
    let has_append = history.ops.iter().any(|o| o.f == F::Append);
    if has_append {
        return append_kind;
    }
    if has_cas {
        return Some(ModelName::CasRegister);
    }
    has_rw.then_some(ModelName::Register)
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
