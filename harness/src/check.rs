//! Checking a recorded history: choose the checkers that apply, run them,
//! and gather named verdicts. `faultline check`, `run`, `report` and
//! `campaign` all come here, so a history recorded by a run and the same
//! file re-checked later get the same checkers and the same verdict.
//!
//! Two functions decide everything a caller could otherwise decide
//! differently: [`plan`] chooses the checkers from the history (its
//! operations and header) and the user's explicit choice, never from who
//! calls; [`file_verdict`] combines the verdicts and their coverage into
//! the file's verdict, which is valid only when every completed operation
//! was looked at by some checker and every checker said valid.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use faultline_checkers::linear::{self, ModelSpec, NilReads};
use faultline_checkers::{session, Checker, Coverage, Validity, Verdict};
use faultline_histories::import::{self, Format};
use faultline_histories::{History, HistoryError, Op, Outcome, ReadLimits};
use faultline_txn::Model;
use serde::Serialize;
use serde_json::Value;

use crate::check_txn;
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
    /// Every anomaly, each proof shrunk as far as it goes (see
    /// `linear::Config::all_anomalies`), not just the first.
    pub all_anomalies: bool,
    /// Bounds on what the reader holds (the longest line).
    pub limits: ReadLimits,
    /// The consistency models the transactional checker judges; empty
    /// means those the history's header names (a run records its own),
    /// else strict-serializable.
    pub consistency_models: Vec<Model>,
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
            all_anomalies: false,
            limits: ReadLimits::default(),
            consistency_models: Vec::new(),
        }
    }
}

/// Why a check could not run.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The file could not be read or parsed.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// The history holds no client operation: nothing to check.
    #[error("no operations found reading the history as {format}{detail}")]
    NoOperations {
        /// The format it was read as.
        format: &'static str,
        /// What the reader said about the lines it skipped, if anything.
        detail: String,
    },
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
    /// Completed operations no checker looked at, by `f`: why the file is
    /// unknown even when every checker said valid.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub unchecked: BTreeMap<String, usize>,
    /// For each `f` in `unchecked`, what would check it.
    #[serde(skip)]
    pub unchecked_hints: BTreeMap<String, String>,
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
    check_txn::NAME,
];

/// Reads the file at `path` and checks it.
pub fn check_file(path: &Path, opts: &CheckOptions) -> Result<Report, CheckError> {
    let (history, format) = import::read_any(path, opts.format, &opts.limits)?;
    let mut report = check_history(&history, format, opts)?;
    report.file = path.to_owned();
    Ok(report)
}

/// Checks a history already in memory. A history without a single client
/// operation is an error, not a verdict: nothing was looked at.
pub fn check_history(history: &History, format: Format, opts: &CheckOptions) -> Result<Report, CheckError> {
    if history.ops.is_empty() {
        return Err(CheckError::NoOperations {
            format: format.name(),
            detail: skipped_detail(history),
        });
    }
    let plan = plan(history, format, opts)?;
    let mut verdicts = BTreeMap::new();
    let mut warnings = history.warnings.clone();
    // Transactions no linearizability model reads are the transactional
    // checker's: saying linearizability skipped them would only be noise.
    if !(plan.transactional && plan.linearizable.is_none()) {
        warnings.extend(plan.model_warning);
    }
    if let Some(model) = plan.linearizable {
        let v = linearizable(model, opts).check(history);
        let name = plan.model.as_ref().map_or("chosen", |m| m.name);
        let v = looked_or_not_applicable(v, || format!("no operation the {name} model reads"));
        verdicts.insert("linearizable".to_owned(), v);
    }
    if plan.transactional {
        let models = consistency_models(history, opts, &mut warnings);
        let verdict = check_txn::check(history, &models);
        verdicts.insert(check_txn::NAME.to_owned(), verdict);
    }
    if !plan.session.is_empty() {
        // One pass builds the tables every session checker shares.
        let judged = session::check_all(history, &plan.session)
            .map_err(|e| CheckError::UnknownChecker(e.0, CHECKER_NAMES.join(", ")))?;
        for (name, verdict) in judged {
            // Unless named, a checker that found nothing to judge is left
            // out rather than shown as a pass; named, it is shown as not
            // applicable.
            if !plan.named.contains(&name) && !verdict.applies() {
                continue;
            }
            verdicts.insert(name.to_owned(), verdict);
        }
    }
    let file = file_verdict(history, &verdicts);
    Ok(Report {
        file: PathBuf::new(),
        valid: file.valid,
        format: format.name().to_owned(),
        model: plan.model,
        checkers: verdicts,
        unchecked: file.unchecked.iter().map(|(f, u)| (f.clone(), u.count)).collect(),
        unchecked_hints: file.unchecked.into_iter().map(|(f, u)| (f, u.hint)).collect(),
        warnings,
    })
}

/// What the reader said about the lines it skipped, for the error of a
/// history with no operations: how many it skipped as noise, and its
/// warnings, if any.
fn skipped_detail(history: &History) -> String {
    let mut said = Vec::new();
    if history.skipped_lines > 0 {
        said.push(format!(
            "{} line(s) skipped as not in this format: a file in another format needs `--format`",
            history.skipped_lines
        ));
    }
    said.extend(history.warnings.iter().cloned());
    if said.is_empty() {
        return " (an empty file, a header only, or no line in that format: a file in another format needs \
                `--format`)"
            .to_owned();
    }
    format!(" ({})", said.join("; "))
}

/// A verdict that says valid yet covers no operation looked at nothing it
/// judges: it becomes not applicable (`why`), so that it vouches for
/// nothing. Checkers that know why say so themselves; this is the net
/// under those that do not.
fn looked_or_not_applicable(v: Verdict, why: impl FnOnce() -> String) -> Verdict {
    if v.valid == Validity::Valid && v.coverage.is_empty() && v.applies() {
        let elapsed = Duration::from_secs_f64(v.elapsed_ms / 1e3);
        return Verdict::not_applicable(elapsed, why());
    }
    v
}

/// A file's verdict, computed from its checkers' verdicts and coverage.
#[derive(Clone, Debug, PartialEq)]
pub struct FileVerdict {
    pub valid: Validity,
    /// Completed operations no checker looked at, by `f`.
    pub unchecked: BTreeMap<String, Unchecked>,
}

/// Operations of one `f` that no checker looked at.
#[derive(Clone, Debug, PartialEq)]
pub struct Unchecked {
    pub count: usize,
    /// What would check them ([`coverage_hint`]).
    pub hint: String,
}

/// The file's verdict: invalid if any checker found an anomaly; otherwise
/// valid only if every checker said valid and every completed (ok, fail,
/// info) operation was looked at by at least one of them; else unknown,
/// with the operations no checker covered named by `f`. Operations that
/// never completed need no checker: they may never have happened.
pub fn file_verdict(history: &History, verdicts: &BTreeMap<String, Verdict>) -> FileVerdict {
    let mut covered = Coverage::new();
    for v in verdicts.values() {
        covered.union_with(&v.coverage);
    }
    let mut uncovered: BTreeMap<String, Vec<&Op>> = BTreeMap::new();
    for (i, op) in history.ops.iter().enumerate() {
        if op.outcome != Outcome::Pending && !covered.contains(i) {
            uncovered.entry(op.f.to_string()).or_default().push(op);
        }
    }
    let said = verdicts.values().fold(Validity::Valid, |acc, v| acc.and(v.valid));
    let valid = match said {
        Validity::Valid if !uncovered.is_empty() => Validity::Unknown,
        other => other,
    };
    let unchecked = uncovered
        .into_iter()
        .map(|(f, ops)| {
            let hint = coverage_hint(&f, &ops);
            (f, Unchecked { count: ops.len(), hint })
        })
        .collect();
    FileVerdict { valid, unchecked }
}

/// What would check operations of `f` that no checker looked at: the flag
/// to give, or why nothing can yet. One table, to extend as checkers come.
pub fn coverage_hint(f: &str, ops: &[&Op]) -> String {
    let flag = |s: &str| format!("check them with `{s}`");
    match f {
        "acquire" | "release" => flag("--model mutex"),
        "txn" if ops.iter().any(|op| txn_appends(op)) => flag("--checkers transactional"),
        "txn" => flag("--checkers transactional (or --model multi-register)"),
        "add" => flag("--model set"),
        "enqueue" | "dequeue" => flag("--model unordered-queue (or fifo-queue)"),
        "read" | "write" | "cas" => flag("--checkers linearizable --model register (or cas-register)"),
        "append" => flag("--checkers linearizable --model list, or consistent-prefix and lost-writes"),
        other => format!("no checker knows what `{other}` does"),
    }
}

/// True when a transaction holds an append micro-op.
fn txn_appends(op: &Op) -> bool {
    [&op.input, &op.output].into_iter().any(|v| {
        v.as_array().is_some_and(|ms| {
            ms.iter()
                .any(|m| m.as_array().and_then(|a| a.first()).and_then(Value::as_str) == Some("append"))
        })
    })
}

/// What to run: the linearizability model, if any, and the session-family
/// checkers by their canonical names; `named` are those asked for by name.
struct Plan {
    linearizable: Option<ModelSpec>,
    /// The report's account of the model.
    model: Option<ModelChoice>,
    /// Why linearizability was not checked, when no model fits.
    model_warning: Option<String>,
    session: Vec<&'static str>,
    named: Vec<&'static str>,
    /// Run the transactional checker.
    transactional: bool,
}

fn is_linearizable_name(name: &str) -> bool {
    matches!(name, "linearizable" | "linearizability" | "lin")
}

/// The word in a list of checkers that stands for every checker that
/// applies (`--checkers auto,monotonic-writes`).
pub const AUTO: &str = "auto";

/// Chooses the checkers: the user's list (`--checkers`) when given, else
/// the list the history's header names (a run records the `--checkers` it
/// was given), else every checker that applies to what the history holds.
/// `auto` in a list stands for that automatic choice. The choice depends on
/// the history and explicit flags only, so `run`, `check`, `report` and
/// `campaign` agree.
fn plan(history: &History, format: Format, opts: &CheckOptions) -> Result<Plan, CheckError> {
    let names = match &opts.checkers {
        Some(names) => names.clone(),
        None => header_checkers(history).unwrap_or_else(|| vec![AUTO.to_owned()]),
    };
    let mut plan = Plan {
        linearizable: None,
        model: None,
        model_warning: None,
        session: Vec::new(),
        named: Vec::new(),
        transactional: false,
    };
    for name in &names {
        if name == AUTO {
            if linearizability_by_default(history) && plan.linearizable.is_none() {
                plan.set_model(models::decide(history, format, &model_request(opts), false), history);
            }
            plan.transactional |= check_txn::applies(history);
            let txn_workload = is_txn_workload(history);
            for c in session::applicable(history) {
                if txn_workload && !TXN_WORKLOAD_SESSION_CHECKERS.contains(&c.name()) {
                    continue;
                }
                if !plan.session.contains(&c.name()) {
                    plan.session.push(c.name());
                }
            }
            continue;
        }
        if is_linearizable_name(name) {
            plan.set_model(models::decide(history, format, &model_request(opts), true), history);
            plan.named.push("linearizable");
            continue;
        }
        if check_txn::is_name(name) {
            plan.transactional = true;
            plan.named.push(check_txn::NAME);
            continue;
        }
        let checker =
            session::by_name(name).ok_or_else(|| CheckError::UnknownChecker(name.clone(), CHECKER_NAMES.join(", ")))?;
        if !plan.session.contains(&checker.name()) {
            plan.session.push(checker.name());
        }
        plan.named.push(checker.name());
    }
    Ok(plan)
}

/// The header key under which a run records its workload.
pub const HEADER_WORKLOAD: &str = "workload";
/// The header key under which a run records the checkers it was asked for.
pub const HEADER_CHECKERS: &str = "checkers";

/// The header key under which a run records the consistency models the
/// transactional checker judges.
pub const HEADER_CONSISTENCY_MODELS: &str = "consistency_models";

/// The consistency models to judge: the user's, else those the history's
/// header names, else none (the checker's default). A name in the header
/// that this version does not know is left out with a warning.
fn consistency_models(history: &History, opts: &CheckOptions, warnings: &mut Vec<String>) -> Vec<Model> {
    if !opts.consistency_models.is_empty() {
        return opts.consistency_models.clone();
    }
    let header = history
        .header
        .as_ref()
        .and_then(|h| h.extra.get(HEADER_CONSISTENCY_MODELS));
    let names = header.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let mut models = Vec::new();
    for name in names {
        match name.as_str().map(str::parse::<Model>) {
            Some(Ok(m)) => models.push(m),
            _ => warnings.push(format!(
                "the header's consistency model {name} is not one this version knows: ignored"
            )),
        }
    }
    models
}

/// The checkers a history's header asks for, if it names any.
fn header_checkers(history: &History) -> Option<Vec<String>> {
    let list = history.header.as_ref()?.extra.get(HEADER_CHECKERS)?.as_array()?;
    let names: Vec<String> = list.iter().filter_map(Value::as_str).map(str::to_owned).collect();
    (!names.is_empty()).then_some(names)
}

/// The workload a run's header names, if any.
fn header_workload(history: &History) -> Option<&str> {
    history
        .header
        .as_ref()
        .and_then(|h| h.extra.get(HEADER_WORKLOAD))
        .and_then(Value::as_str)
}

/// Whether the automatic choice includes linearizability. Not for a
/// history its header says the list-append workload recorded: its many
/// indeterminate appends make the list model's search rarely decide within
/// budget, and consistent-prefix and lost-writes judge the same operations
/// (`--checkers auto,linearizable` asks for it all the same). Nor for the
/// transactional workloads, which the transactional checker judges.
fn linearizability_by_default(history: &History) -> bool {
    header_workload(history) != Some("list-append") && !is_txn_workload(history)
}

/// Whether the header says a transactional workload recorded the history.
fn is_txn_workload(history: &History) -> bool {
    header_workload(history).is_some_and(|w| w.starts_with("txn-"))
}

/// The checkers of the session family the automatic choice keeps for a
/// transactional workload: those of the final reads (acknowledged appends
/// and writes lost, replicas that disagree at the end), which mean the same
/// whatever the isolation level. The others (read-your-writes, monotonic
/// reads, consistent prefix...) would judge each micro-operation as an
/// operation of its own, promises the consistency model chosen for the
/// transactional checker may not make (serializable allows a process's
/// later transaction to read an earlier state), so they run only when
/// named.
const TXN_WORKLOAD_SESSION_CHECKERS: [&str; 2] = ["lost-writes", "convergence"];

fn linearizable(model: ModelSpec, opts: &CheckOptions) -> linear::Linearizable {
    linear::Linearizable {
        config: linear::Config {
            model,
            time_limit: opts.time_limit,
            memory_limit_bytes: opts.memory_limit_bytes,
            want_linearization: opts.want_linearization,
            all_anomalies: opts.all_anomalies,
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

    use faultline_histories::{Event, EventType, Process, F};
    use serde_json::json;

    /// Ops: 0 write ok, 1 read ok, 2 write never completed.
    fn history() -> History {
        let ev = |i: u64, p: u64, kind, f: F, v| Event::new(i, i, Process::Client(p), kind, f, v).with_key("k");
        History::from_events([
            ev(0, 0, EventType::Invoke, F::Write, json!(1)),
            ev(1, 0, EventType::Ok, F::Write, json!(1)),
            ev(2, 1, EventType::Invoke, F::Read, json!(null)),
            ev(3, 1, EventType::Ok, F::Read, json!(1)),
            ev(4, 2, EventType::Invoke, F::Write, json!(2)),
        ])
        .unwrap()
    }

    fn verdicts(vs: Vec<(&str, Verdict)>) -> BTreeMap<String, Verdict> {
        vs.into_iter().map(|(n, v)| (n.to_owned(), v)).collect()
    }

    fn covering(valid: Validity, ops: &[usize]) -> Verdict {
        let mut v = Verdict::valid(0, Duration::ZERO).with_coverage(ops.iter().copied().collect());
        v.valid = valid;
        v
    }

    #[test]
    fn a_checker_that_covers_nothing_vouches_for_nothing() {
        let h = history();
        // Says valid, claims 3 ops, but set no coverage: the default.
        let f = file_verdict(&h, &verdicts(vec![("forgetful", Verdict::valid(3, Duration::ZERO))]));
        assert_eq!(f.valid, Validity::Unknown);
        assert_eq!(f.unchecked["write"].count, 1, "the pending write needs no checker");
        assert_eq!(f.unchecked["read"].count, 1);
        let f = file_verdict(&h, &BTreeMap::new());
        assert_eq!(f.valid, Validity::Unknown, "no checker at all");
    }

    #[test]
    fn valid_needs_every_completed_op_covered_by_some_checker_that_said_valid() {
        let h = history();
        let split = verdicts(vec![
            ("a", covering(Validity::Valid, &[0])),
            ("b", covering(Validity::Valid, &[1])),
        ]);
        let f = file_verdict(&h, &split);
        assert_eq!((f.valid, f.unchecked.len()), (Validity::Valid, 0));
        let one_unknown = verdicts(vec![
            ("a", covering(Validity::Valid, &[0, 1])),
            ("b", covering(Validity::Unknown, &[])),
        ]);
        assert_eq!(file_verdict(&h, &one_unknown).valid, Validity::Unknown);
        let invalid_and_gaps = verdicts(vec![("a", covering(Validity::Invalid, &[0]))]);
        let f = file_verdict(&h, &invalid_and_gaps);
        assert_eq!(f.valid, Validity::Invalid, "an anomaly is an anomaly, gaps or not");
        assert_eq!(f.unchecked["read"].count, 1);
    }

    #[test]
    fn hints_name_the_flag_or_say_nothing_can_check_it_yet() {
        let h = history();
        let op = &h.ops[0];
        assert!(coverage_hint("acquire", &[op]).contains("--model mutex"));
        assert!(coverage_hint("txn", &[op]).contains("--model multi-register"));
        let mut append = op.clone();
        append.input = json!([["append", 1, 2], ["r", 1, null]]);
        let hint = coverage_hint("txn", &[op, &append]);
        assert!(
            hint.contains("--checkers transactional") && !hint.contains("multi-register"),
            "{hint}"
        );
        assert!(coverage_hint("frobnicate", &[op]).contains("frobnicate"));
    }

    #[test]
    fn a_history_without_operations_is_an_error_naming_its_format() {
        let err = check_history(&History::default(), Format::PorcupineKv, &CheckOptions::default()).unwrap_err();
        assert!(err.to_string().contains("porcupine-kv"), "{err}");
        let mut h = History::default();
        h.warnings.push("12 lines skipped".into());
        let err = check_history(&h, Format::Jsonl, &CheckOptions::default()).unwrap_err();
        assert!(err.to_string().contains("12 lines skipped"), "{err}");
    }

    #[test]
    fn the_list_append_workload_s_header_leaves_out_the_list_search() {
        let ev = |i: u64, kind, f: F, v| Event::new(i, i, Process::Client(0), kind, f, v).with_key("l");
        let mut h = History::from_events([
            ev(0, EventType::Invoke, F::Append, json!(1)),
            ev(1, EventType::Ok, F::Append, json!(1)),
            ev(2, EventType::Invoke, F::Read, json!(null)),
            ev(3, EventType::Ok, F::Read, json!([1])),
        ])
        .unwrap();
        let opts = CheckOptions::default();
        assert!(plan(&h, Format::Jsonl, &opts).unwrap().linearizable.is_some());
        h.header = Some(faultline_histories::Header {
            faultline_history: 1,
            extra: crate::run::checks::header_fields("list-append", &[], &[]),
            ..Default::default()
        });
        let p = plan(&h, Format::Jsonl, &opts).unwrap();
        assert!(p.linearizable.is_none());
        assert!(p.session.contains(&"consistent-prefix"), "{:?}", p.session);
        // A run's explicit choice, recorded in the header, is the default.
        let checkers = ["auto".to_owned(), "linearizable".to_owned()];
        h.header.as_mut().unwrap().extra = crate::run::checks::header_fields("list-append", &checkers, &[]);
        assert!(plan(&h, Format::Jsonl, &opts).unwrap().linearizable.is_some());
    }

    #[test]
    fn a_transactional_workload_s_header_chooses_the_transactional_checker_and_the_final_reads() {
        let ev = |i: u64, p: u64, kind, v: Value| Event::new(i, i, Process::Client(p), kind, F::Txn, v);
        let fin = |e: Event| Event { is_final: true, ..e };
        let mut h = History::from_events([
            ev(0, 0, EventType::Invoke, json!([["append", "a0", 1], ["r", "a0", null]])),
            ev(1, 0, EventType::Ok, json!([["append", "a0", 1], ["r", "a0", [1]]])),
            ev(2, 0, EventType::Invoke, json!([["r", "a0", null]])),
            ev(3, 0, EventType::Ok, json!([["r", "a0", [1]]])),
            fin(ev(4, 1, EventType::Invoke, json!([["r", "a0", null]]))),
            fin(ev(5, 1, EventType::Ok, json!([["r", "a0", [1]]]))),
        ])
        .unwrap();
        let opts = CheckOptions::default();
        let p = plan(&h, Format::Jsonl, &opts).unwrap();
        assert!(p.transactional);
        assert!(
            p.session.len() > 2,
            "without the header, every checker that applies: {:?}",
            p.session
        );
        h.header = Some(faultline_histories::Header {
            faultline_history: 1,
            extra: crate::run::checks::header_fields("txn-list-append", &[], &[]),
            ..Default::default()
        });
        let p = plan(&h, Format::Jsonl, &opts).unwrap();
        assert!(p.transactional && p.linearizable.is_none());
        assert_eq!(p.session, ["lost-writes", "convergence"]);
        let report = check_history(&h, Format::Jsonl, &opts).unwrap();
        assert_eq!(report.valid, Validity::Valid, "{:?}", report.checkers);
        assert_eq!(report.checkers[check_txn::NAME].coverage.len(), 3);
    }

    #[test]
    fn exit_codes_follow_the_architecture() {
        use Validity::*;
        assert_eq!(exit_code([Valid, Valid], false), 0);
        assert_eq!(exit_code([Valid, Unknown], false), 2);
        assert_eq!(exit_code([Unknown, Invalid], false), 1);
        assert_eq!(exit_code([Valid], true), 3);
    }
}
