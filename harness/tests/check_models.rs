//! `faultline check` judges one history under several models at once, and a
//! history can hold under a weaker model while breaking a stronger one.
//! These pin the pairs the session goldens document, seen through the path
//! the CLI takes (`check::check_file`).
//!
//! And `faultline check` on Jepsen histories of Knossos's models, through
//! the binary: the model is inferred and named with its reason, a broken
//! lock is INVALID (exit 1) and a sound one valid (exit 0), and
//! Knossos-style nil reads are unknown in EDN unless `--nil-reads value`
//! says otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use faultline_checkers::Validity;
use faultline_harness::check::{check_file, CheckOptions};

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../checkers/tests/golden/session")
        .join(name)
}

fn verdicts(name: &str, checkers: &[&str]) -> Vec<(String, Validity)> {
    let opts = CheckOptions {
        checkers: Some(checkers.iter().map(|s| (*s).to_owned()).collect()),
        ..CheckOptions::default()
    };
    let report = check_file(&golden(name), &opts).expect("the golden history reads");
    report.checkers.into_iter().map(|(n, v)| (n, v.valid)).collect()
}

#[test]
fn read_your_writes_holds_where_linearizability_fails() {
    let v = verdicts("ryw-register-holds-not-linearizable.jsonl", &["linearizable", "ryw"]);
    assert_eq!(
        v,
        vec![
            ("linearizable".to_owned(), Validity::Invalid),
            ("read-your-writes".to_owned(), Validity::Valid),
        ]
    );
}

#[test]
fn monotonic_reads_holds_where_read_your_writes_fails() {
    let v = verdicts("ryw-register-breaks-sticky.jsonl", &["mr", "ryw"]);
    assert_eq!(
        v,
        vec![
            ("monotonic-reads".to_owned(), Validity::Valid),
            ("read-your-writes".to_owned(), Validity::Invalid),
        ]
    );
}

#[test]
fn an_unknown_checker_name_is_an_error_not_a_verdict() {
    let opts = CheckOptions {
        checkers: Some(vec!["serializable".to_owned()]),
        ..CheckOptions::default()
    };
    let err = check_file(&golden("ryw-register-breaks-sticky.jsonl"), &opts).unwrap_err();
    assert!(err.to_string().contains("serializable"), "{err}");
}

/// Writes `text` as `name` in `dir`.
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("temp file is writable");
    path
}

fn check(args: &[&str], file: &Path) -> (i32, String, String) {
    let Output { status, stdout, stderr } = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .arg("check")
        .args(args)
        .arg(file)
        .output()
        .expect("faultline runs");
    let code = status.code().expect("faultline exits, not killed");
    let text = |b: Vec<u8>| String::from_utf8(b).expect("utf-8 output");
    (code, text(stdout), text(stderr))
}

/// Jepsen's history lines for `(process, type, f)` in order.
fn edn(events: &[(u32, &str, &str)]) -> String {
    events
        .iter()
        .enumerate()
        .map(|(i, (p, ty, f))| format!("{{:type :{ty}, :f :{f}, :value nil, :process {p}, :time {i}, :index {i}}}\n"))
        .collect()
}

const MODEL_LINE: &str = "model: mutex (every op is acquire or release: mutex)";

#[test]
fn a_double_acquire_is_invalid_and_a_handoff_valid() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = write(
        dir.path(),
        "double.edn",
        &edn(&[
            (0, "invoke", "acquire"),
            (0, "ok", "acquire"),
            (1, "invoke", "acquire"),
            (1, "ok", "acquire"),
            (0, "invoke", "release"),
            (0, "ok", "release"),
        ]),
    );
    let (code, out, err) = check(&[], &bad);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("INVALID") && out.contains(MODEL_LINE), "{out}");

    let good = write(
        dir.path(),
        "handoff.edn",
        &edn(&[
            (0, "invoke", "acquire"),
            (0, "ok", "acquire"),
            (1, "invoke", "acquire"),
            (0, "invoke", "release"),
            (0, "ok", "release"),
            (1, "ok", "acquire"),
            (2, "invoke", "acquire"),
            (2, "info", "acquire"),
        ]),
    );
    let (code, out, err) = check(&[], &good);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("valid") && out.contains(MODEL_LINE), "{out}");

    let (code, out, _) = check(&["--json"], &good);
    assert_eq!(code, 0);
    let report: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(report["model"]["name"], "mutex");
    assert_eq!(report["model"]["why"], "every op is acquire or release: mutex");
    assert_eq!(report["checkers"]["linearizable"]["valid"], true);
}

#[test]
fn knossos_nil_reads_are_unknown_in_edn_unless_told() {
    let dir = tempfile::tempdir().expect("temp dir");
    let history = "\
{:type :invoke, :f :write, :value 3, :process 1, :time 1, :index 0}
{:type :invoke, :f :read, :value nil, :process 0, :time 2, :index 1}
{:type :ok, :f :read, :value nil, :process 0, :time 3, :index 2}
{:type :ok, :f :write, :value 3, :process 1, :time 4, :index 3}
{:type :invoke, :f :cas, :value [3 4], :process 1, :time 5, :index 4}
{:type :ok, :f :cas, :value [3 4], :process 1, :time 6, :index 5}
{:type :invoke, :f :read, :value nil, :process 0, :time 7, :index 6}
{:type :ok, :f :read, :value nil, :process 0, :time 8, :index 7}
";
    let file = write(dir.path(), "cas.edn", history);
    let (code, out, err) = check(&["--initial", "0"], &file);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("model: cas-register (") && out.contains("nil reads: unknown"),
        "{out}"
    );
    let (code, out, err) = check(&["--initial", "0", "--nil-reads", "value"], &file);
    assert_eq!(
        code, 1,
        "read as reads of null, the nil reads cannot be placed: {out}{err}"
    );
    let (code, _, err) = check(&["--nil-reads", "maybe"], &file);
    assert_ne!(code, 0);
    assert!(err.contains("--nil-reads"), "{err}");
}
