//! A run's store folder in and out: reads what a run left in
//! `store/<test>/<timestamp>/` (`config.json`, `results.json`,
//! `status.jsonl`, `nodes/<node>/*.log`) into a [`RunMeta`] and verdicts,
//! and writes `report.html` and `junit.xml` beside them.
//!
//! `results.json` is read back into [`Verdict`]s by hand, field by field:
//! the checkers' types only serialize, and a report made later from the
//! folder must show the verdicts the run gave, not a re-check. A file that
//! does not have the expected shape is an error naming the field, never a
//! silently empty report. Files are bounded: a JSON file larger than
//! [`JSON_BYTES_MAX`] is refused, and at most [`LOGS_PER_NODE_MAX`] logs
//! per node are linked.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use faultline_checkers::{Anomaly, OpRef, Validity, Verdict};
use faultline_histories::{History, Process};
use serde_json::Value;

use crate::{junit_xml, render_html, JunitSuite, NodeInfo, NodeSample, ReportInput, RunMeta};

/// Largest `config.json` or `results.json` read.
pub const JSON_BYTES_MAX: u64 = 256 << 20;
/// Log files linked per node.
pub const LOGS_PER_NODE_MAX: usize = 20;
/// Nodes listed.
pub const NODES_MAX: usize = 64;
/// Status samples read from `status.jsonl`.
pub const SAMPLES_MAX: usize = 100_000;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file is not JSON.
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A JSON file is larger than [`JSON_BYTES_MAX`].
    #[error("{path}: {bytes} bytes, more than the {JSON_BYTES_MAX} a report reads")]
    TooLarge { path: PathBuf, bytes: u64 },
    /// `results.json` does not have the shape `faultline run` writes.
    #[error("results.json: field `{field}`: {message}")]
    Results { field: String, message: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
    move |source| ReportError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads a JSON file, or `None` when it does not exist.
pub fn read_json(path: &Path) -> Result<Option<Value>, ReportError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    if meta.len() > JSON_BYTES_MAX {
        return Err(ReportError::TooLarge {
            path: path.to_owned(),
            bytes: meta.len(),
        });
    }
    let text = std::fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|source| ReportError::Json {
            path: path.to_owned(),
            source,
        })
}

fn bad(field: &str, message: impl Into<String>) -> ReportError {
    ReportError::Results {
        field: field.to_owned(),
        message: message.into(),
    }
}

fn u64_field(v: &Value, field: &str, at: &str) -> Result<u64, ReportError> {
    v.get(field)
        .and_then(Value::as_u64)
        .ok_or_else(|| bad(&format!("{at}.{field}"), "expected a non-negative integer"))
}

fn opt_u64(v: &Value, field: &str) -> Option<u64> {
    v.get(field).and_then(Value::as_u64)
}

fn opt_str(v: &Value, field: &str) -> Option<String> {
    v.get(field).and_then(Value::as_str).map(str::to_owned)
}

fn validity(v: &Value, at: &str) -> Result<Validity, ReportError> {
    match v {
        Value::Bool(true) => Ok(Validity::Valid),
        Value::Bool(false) => Ok(Validity::Invalid),
        Value::String(s) if s == "unknown" => Ok(Validity::Unknown),
        other => Err(bad(at, format!("expected true, false or \"unknown\", got {other}"))),
    }
}

fn process(v: &Value, at: &str) -> Result<Process, ReportError> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .map(Process::Client)
            .ok_or_else(|| bad(at, "negative process")),
        Value::String(s) if s == "nemesis" => Ok(Process::Nemesis),
        other => Err(bad(at, format!("expected a process, got {other}"))),
    }
}

fn outcome(s: &str, at: &str) -> Result<&'static str, ReportError> {
    Ok(match s {
        "ok" => "ok",
        "fail" => "fail",
        "info" => "info",
        "pending" => "pending",
        other => return Err(bad(at, format!("unknown outcome {other:?}"))),
    })
}

fn op_ref(v: &Value, at: &str) -> Result<OpRef, ReportError> {
    Ok(OpRef {
        index: u64_field(v, "index", at)?,
        complete_index: opt_u64(v, "complete_index"),
        process: process(v.get("process").unwrap_or(&Value::Null), &format!("{at}.process"))?,
        f: opt_str(v, "f").ok_or_else(|| bad(&format!("{at}.f"), "expected a string"))?,
        key: opt_str(v, "key"),
        input: v.get("input").cloned().unwrap_or(Value::Null),
        output: v.get("output").cloned().unwrap_or(Value::Null),
        outcome: outcome(
            v.get("outcome").and_then(Value::as_str).unwrap_or(""),
            &format!("{at}.outcome"),
        )?,
        invoke_time: u64_field(v, "invoke_time", at)?,
        complete_time: opt_u64(v, "complete_time"),
        node: opt_str(v, "node"),
    })
}

fn array<'a>(v: &'a Value, field: &str, at: &str) -> Result<&'a [Value], ReportError> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(bad(&format!("{at}.{field}"), "expected an array")),
    }
}

fn anomaly(v: &Value, at: &str) -> Result<Anomaly, ReportError> {
    let processes = array(v, "processes", at)?
        .iter()
        .map(|p| process(p, &format!("{at}.processes")))
        .collect::<Result<Vec<_>, _>>()?;
    let ops = array(v, "ops", at)?
        .iter()
        .enumerate()
        .map(|(i, o)| op_ref(o, &format!("{at}.ops[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Anomaly {
        kind: opt_str(v, "kind").ok_or_else(|| bad(&format!("{at}.kind"), "expected a string"))?,
        key: opt_str(v, "key"),
        processes,
        ops,
        explanation: opt_str(v, "explanation").unwrap_or_default(),
        details: v.get("details").cloned().unwrap_or(Value::Null),
    })
}

/// One verdict as `faultline run` and `faultline check --json` write it.
pub fn verdict_from_json(v: &Value, at: &str) -> Result<Verdict, ReportError> {
    let anomalies = array(v, "anomalies", at)?
        .iter()
        .enumerate()
        .map(|(i, a)| anomaly(a, &format!("{at}.anomalies[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Verdict {
        valid: validity(v.get("valid").unwrap_or(&Value::Null), &format!("{at}.valid"))?,
        ops: opt_u64(v, "ops").unwrap_or(0) as usize,
        // JSON does not carry coverage: what was left unchecked is in the
        // file's `unchecked`.
        coverage: Default::default(),
        elapsed_ms: v.get("elapsed_ms").and_then(Value::as_f64).unwrap_or(0.0),
        anomalies,
        unknown_reason: opt_str(v, "unknown_reason"),
        details: v.get("details").cloned().unwrap_or(Value::Null),
    })
}

/// The verdicts of a `results.json` (its `checkers` object).
pub fn verdicts_from_results(results: &Value) -> Result<BTreeMap<String, Verdict>, ReportError> {
    let Some(checkers) = results.get("checkers").and_then(Value::as_object) else {
        return Err(bad("checkers", "expected an object of verdicts by checker"));
    };
    checkers
        .iter()
        .map(|(name, v)| Ok((name.clone(), verdict_from_json(v, &format!("checkers.{name}"))?)))
        .collect()
}

/// What the run's folder says about it. Missing files leave fields empty.
pub fn meta_from_store(dir: &Path) -> Result<RunMeta, ReportError> {
    let mut meta = RunMeta::default();
    if let Some(config) = read_json(&dir.join("config.json"))? {
        meta.test = opt_str(&config, "test");
        meta.seed = opt_u64(&config, "seed");
        meta.rerun = opt_str(&config, "rerun");
        (meta.settings, meta.settings_folded) = crate::settings::split_settings(&config);
    }
    if let Some(results) = read_json(&dir.join("results.json"))? {
        meta.test = meta.test.or_else(|| opt_str(&results, "test"));
        meta.seed = meta.seed.or_else(|| opt_u64(&results, "seed"));
        meta.rerun = meta.rerun.or_else(|| opt_str(&results, "rerun"));
        meta.duration_s = results.pointer("/stats/elapsed_s").and_then(Value::as_f64);
        if results.get("interrupted").and_then(Value::as_bool) == Some(true) {
            let by = opt_str(&results, "interrupted_by");
            meta.interrupted = Some(by.unwrap_or_else(|| "interrupted before it finished".into()));
        }
        for e in array(&results, "fault_errors", "")? {
            meta.fault_errors
                .push(e.as_str().map(str::to_owned).unwrap_or_else(|| e.to_string()));
        }
        for w in array(&results, "warnings", "")? {
            meta.warnings
                .push(w.as_str().map(str::to_owned).unwrap_or_else(|| w.to_string()));
        }
        if let Some(u) = results.get("unchecked").and_then(Value::as_object) {
            meta.unchecked = u
                .iter()
                .map(|(f, n)| (f.clone(), n.as_u64().unwrap_or(0) as usize))
                .collect();
        }
    }
    for name in ["history.jsonl", "results.json", "config.json", "junit.xml"] {
        if dir.join(name).is_file() {
            meta.files.push((name.to_owned(), name.to_owned()));
        }
    }
    meta.nodes = nodes_of(dir)?;
    meta.samples = samples_of(&dir.join("status.jsonl"))?;
    Ok(meta)
}

/// `nodes/<node>/` folders and the logs in them, as links from the report.
fn nodes_of(dir: &Path) -> Result<Vec<NodeInfo>, ReportError> {
    let nodes_dir = dir.join("nodes");
    let entries = match std::fs::read_dir(&nodes_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&nodes_dir)(e)),
    };
    let mut nodes = Vec::new();
    for entry in entries.take(NODES_MAX) {
        let entry = entry.map_err(io_err(&nodes_dir))?;
        if !entry.path().is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let mut logs: Vec<String> = std::fs::read_dir(entry.path())
            .map_err(io_err(&entry.path()))?
            .filter_map(Result::ok)
            .filter(|f| f.path().is_file())
            .map(|f| f.file_name().to_string_lossy().into_owned())
            .filter(|f| f.ends_with(".log") || f.ends_with(".txt") || f.ends_with(".out"))
            .map(|f| format!("nodes/{name}/{f}"))
            .collect();
        logs.sort();
        logs.truncate(LOGS_PER_NODE_MAX);
        nodes.push(NodeInfo { name, logs });
    }
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(nodes)
}

/// Reads `status.jsonl`: one sample a line,
/// `{"time":ns,"node":"n1","role":"leader","epoch":3,"lag":12}` (role,
/// epoch and lag absent when the node did not answer). Lines that are not
/// samples are skipped; at most [`SAMPLES_MAX`] are read.
pub fn samples_of(path: &Path) -> Result<Vec<NodeSample>, ReportError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut out = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(io_err(path))?;
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let (Some(time_ns), Some(node)) = (opt_u64(&v, "time"), opt_str(&v, "node")) else {
            continue;
        };
        out.push(NodeSample {
            time_ns,
            node,
            role: opt_str(&v, "role"),
            epoch: opt_u64(&v, "epoch"),
            lag: opt_u64(&v, "lag"),
        });
        if out.len() >= SAMPLES_MAX {
            break;
        }
    }
    Ok(out)
}

/// The JUnit suite's properties for a run.
pub fn junit_properties(meta: &RunMeta, history: &History) -> Vec<(String, String)> {
    let mut p = Vec::new();
    if let Some(why) = &meta.interrupted {
        p.push((crate::junit::INTERRUPTED_PROPERTY.to_owned(), why.clone()));
    }
    if !meta.fault_errors.is_empty() {
        p.push((
            crate::junit::FAULT_ERRORS_PROPERTY.to_owned(),
            meta.fault_errors.join("; "),
        ));
    }
    if let Some(s) = meta.seed_of(history) {
        p.push(("seed".to_owned(), s.to_string()));
    }
    if let Some(r) = &meta.rerun {
        p.push(("rerun".to_owned(), r.clone()));
    }
    p
}

/// Writes `report.html` and `junit.xml` into `dir`.
pub fn write_store_reports(
    dir: &Path,
    history: &History,
    verdicts: &BTreeMap<String, Verdict>,
    meta: &RunMeta,
) -> Result<(), ReportError> {
    let input = ReportInput {
        history,
        verdicts,
        meta,
    };
    let html_path = dir.join("report.html");
    std::fs::write(&html_path, render_html(&input)).map_err(io_err(&html_path))?;
    let suite = JunitSuite {
        name: meta.test_name(history).unwrap_or_else(|| "history".into()),
        verdicts,
        properties: junit_properties(meta, history),
    };
    let junit_path = dir.join("junit.xml");
    std::fs::write(&junit_path, junit_xml(&[suite])).map_err(io_err(&junit_path))
}

/// Writes `report.html` and `junit.xml` into a run's folder from what the
/// folder holds (config, results, node logs, status samples) and the
/// run's history and verdicts, already in memory: the one call at the end
/// of `faultline run`.
pub fn write_run_reports(
    dir: &Path,
    history: &History,
    verdicts: &BTreeMap<String, Verdict>,
) -> Result<(), ReportError> {
    let mut meta = meta_from_store(dir)?;
    if !meta.files.iter().any(|(name, _)| name == "junit.xml") {
        meta.files.push(("junit.xml".into(), "junit.xml".into()));
    }
    write_store_reports(dir, history, verdicts, &meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_histories::Outcome;
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn verdicts_round_trip_through_results_json() {
        let h = History::from_events([faultline_histories::Event::new(
            0,
            5,
            Process::Client(3),
            faultline_histories::EventType::Invoke,
            faultline_histories::F::Write,
            json!(1),
        )
        .with_key("k")])
        .unwrap();
        assert_eq!(h.ops[0].outcome, Outcome::Pending);
        let a = Anomaly::new("lost-write", None, vec![OpRef::new(&h, &h.ops[0])], "gone".into());
        let mut verdicts = BTreeMap::new();
        verdicts.insert(
            "lost-writes".to_owned(),
            Verdict::from_anomalies(1, Duration::from_millis(2), vec![a]),
        );
        verdicts.insert("x".to_owned(), Verdict::unknown(1, Duration::ZERO, "budget".into()));
        let results = json!({ "checkers": verdicts });
        let back = verdicts_from_results(&results).unwrap();
        assert_eq!(back, verdicts);
    }

    #[test]
    fn a_malformed_verdict_names_its_field() {
        let err = verdicts_from_results(&json!({"checkers": {"lin": {"valid": "maybe"}}})).unwrap_err();
        assert!(err.to_string().contains("checkers.lin.valid"), "{err}");
        let err = verdicts_from_results(
            &json!({"checkers": {"lin": {"valid": false, "anomalies": [{"kind": "x", "ops": [{"index": 1}]}]}}}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("checkers.lin.anomalies[0].ops[0]"), "{err}");
    }

    #[test]
    fn an_interrupted_run_is_marked_in_both_reports() {
        let dir = tempfile::tempdir().unwrap();
        let why = "interrupted by SIGTERM at 12.3 s";
        let results = json!({"test": "t", "interrupted": true, "interrupted_by": why, "checkers": {}});
        std::fs::write(dir.path().join("results.json"), results.to_string()).unwrap();
        let h = History::from_events([]).unwrap();
        write_run_reports(dir.path(), &h, &BTreeMap::new()).unwrap();
        let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
        assert!(
            html.contains(&format!("<p id=\"interrupted\"><strong>{why}</strong>")),
            "report.html"
        );
        let junit = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
        assert!(
            junit.contains(&format!("<error type=\"interrupted\" message=\"{why}\">")),
            "{junit}"
        );
        // A run that was not interrupted says nothing of the kind.
        let plain = tempfile::tempdir().unwrap();
        std::fs::write(plain.path().join("results.json"), json!({"test": "t"}).to_string()).unwrap();
        write_run_reports(plain.path(), &h, &BTreeMap::new()).unwrap();
        let html = std::fs::read_to_string(plain.path().join("report.html")).unwrap();
        assert!(!html.contains("id=\"interrupted\""));
        assert!(!html.contains("id=\"fault-errors\""));
        let junit = std::fs::read_to_string(plain.path().join("junit.xml")).unwrap();
        assert!(!junit.contains("type=\"faults\""), "{junit}");
    }

    #[test]
    fn a_run_whose_fault_failed_is_marked_in_both_reports() {
        let dir = tempfile::tempdir().unwrap();
        let err = "start-partition: nft exited with status 1";
        let results = json!({"test": "t", "fault_errors": [err], "checkers": {"linearizable": {"valid": true}}});
        std::fs::write(dir.path().join("results.json"), results.to_string()).unwrap();
        let h = History::from_events([]).unwrap();
        write_run_reports(dir.path(), &h, &BTreeMap::new()).unwrap();
        let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
        assert!(html.contains("<p id=\"fault-errors\">"), "report.html");
        assert!(html.contains(err), "report.html names the error");
        let junit = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
        assert!(junit.contains("name=\"faults\""), "{junit}");
        assert!(
            junit.contains(&format!(
                "<error type=\"faults\" message=\"could not run as configured: {err}\">"
            )),
            "{junit}"
        );
    }

    #[test]
    fn status_samples_skip_what_is_not_a_sample() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.jsonl");
        std::fs::write(
            &path,
            "{\"time\":5,\"node\":\"n1\",\"role\":\"leader\",\"epoch\":3,\"lag\":0}\nnot json\n{\"node\":\"n2\"}\n{\"time\":9,\"node\":\"n2\"}\n",
        )
        .unwrap();
        let s = samples_of(&path).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].role.as_deref(), Some("leader"));
        assert_eq!((s[1].node.as_str(), s[1].role.clone()), ("n2", None));
        assert!(samples_of(&dir.path().join("absent")).unwrap().is_empty());
    }
}
