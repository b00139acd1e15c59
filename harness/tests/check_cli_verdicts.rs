//! `faultline check` as a user meets it: a file is valid only when every
//! completed operation was looked at; operations no checker reads make it
//! unknown (exit 2) and are named with what would check them; a file with
//! no operations, a wrong `--format`, a refused command line or a bad
//! number is an error (exit 3); and a reader that closes stdout early
//! leaves the verdict's exit code and an empty stderr.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A temp dir holding the test's files, removed when dropped.
struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().expect("a temp dir"))
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.path().join(name);
        std::fs::write(&p, text).expect("writing a test history");
        p
    }
}

fn faultline(args: &[&str], files: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        .args(files)
        .output()
        .expect("running faultline")
}

/// Exit code, the JSON line of `--json`, and stderr.
fn check_json(args: &[&str], file: &Path) -> (i32, Value, String) {
    let mut all = vec!["check", "--json"];
    all.extend_from_slice(args);
    let out = faultline(&all, &[file]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(stdout.lines().next().unwrap_or("null")).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const REGISTER: &str = r#"{"faultline_history": 1}
{"index":0,"time":0,"process":0,"f":"write","key":"x","type":"invoke","value":1}
{"index":1,"time":10,"process":0,"f":"write","key":"x","type":"ok","value":1}
{"index":2,"time":20,"process":1,"f":"read","key":"x","type":"invoke","value":null}
{"index":3,"time":30,"process":1,"f":"read","key":"x","type":"ok","value":1}
{"index":4,"time":40,"process":0,"f":"write","key":"x","type":"invoke","value":2}
{"index":5,"time":50,"process":0,"f":"write","key":"x","type":"fail","value":2}
"#;

const MUTEX_EDN: &str = "{:type :invoke, :f :acquire, :process 0, :value nil, :index 0}
{:type :ok, :f :acquire, :process 0, :value nil, :index 1}
{:type :invoke, :f :acquire, :process 1, :value nil, :index 2}
{:type :invoke, :f :release, :process 0, :value nil, :index 3}
{:type :ok, :f :release, :process 0, :value nil, :index 4}
{:type :ok, :f :acquire, :process 1, :value nil, :index 5}
";

/// Elle's G1c: each transaction read the other's append.
const ELLE_G1C_EDN: &str = "{:type :invoke, :f :txn, :value [[:append 1 1] [:r 2 nil]], :process 0, :index 0}
{:type :invoke, :f :txn, :value [[:append 2 1] [:r 1 nil]], :process 1, :index 1}
{:type :ok, :f :txn, :value [[:append 1 1] [:r 2 [1]]], :process 0, :index 2}
{:type :ok, :f :txn, :value [[:append 2 1] [:r 1 [1]]], :process 1, :index 3}
";

#[test]
fn a_fully_covered_register_history_is_valid() {
    let d = Dir::new();
    let (code, json, stderr) = check_json(&[], &d.file("r.jsonl", REGISTER));
    assert_eq!(code, 0, "{json} {stderr}");
    assert_eq!(json["valid"], Value::Bool(true));
    assert_eq!(json["checkers"]["linearizable"]["ops"], 3, "{json}");
    assert!(json.get("unchecked").is_none(), "{json}");
}

#[test]
fn a_mutex_history_is_checked_as_a_mutex_and_named_unchecked_under_another_model() {
    let d = Dir::new();
    let f = d.file("mutex.edn", MUTEX_EDN);
    // Inferred from its operations: the mutex model looks at every one.
    let (code, json, _) = check_json(&[], &f);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["model"]["name"], "mutex", "{json}");
    assert!(json.get("unchecked").is_none(), "{json}");
    // Told to use a register, no checker reads acquire or release: unknown,
    // never valid, naming them and the flag that would check them.
    let (code, json, _) = check_json(&["--model", "register"], &f);
    assert_eq!(code, 2, "{json}");
    assert_eq!(json["valid"], "unknown");
    assert_eq!(json["unchecked"]["acquire"], 2, "{json}");
    assert_eq!(json["unchecked"]["release"], 1, "{json}");
    let human = faultline(&["check", "--model", "register"], &[&f]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert_eq!(human.status.code(), Some(2));
    assert!(text.contains("unknown"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("unchecked: 2 `acquire`") && l.contains("--model mutex")),
        "{text}"
    );
}

#[test]
fn an_elle_g1c_history_is_invalid_under_the_transactional_checker() {
    let d = Dir::new();
    let f = d.file("g1c.edn", ELLE_G1C_EDN);
    let (code, json, _) = check_json(&[], &f);
    assert_eq!(code, 1, "{json}");
    let txn = &json["checkers"]["transactional"];
    assert_eq!(txn["valid"], Value::Bool(false), "{json}");
    assert_eq!(txn["ops"], 2, "{json}");
    assert_eq!(txn["anomalies"][0]["kind"], "G1c", "{json}");
    let cycle = txn["anomalies"][0]["details"]["cycle"].as_array().expect("a cycle");
    assert_eq!(cycle.len(), 2, "{json}");
    assert!(cycle.iter().all(|s| s["edge"] == "wr"), "{json}");
    assert_eq!(txn["details"]["models_ruled_out"]["not"][0], "read-committed", "{json}");
    // Read uncommitted allows G1c: valid, the anomaly still listed.
    let (code, json, _) = check_json(&["--consistency-model", "read-uncommitted"], &f);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["checkers"]["txn"], Value::Null);
    assert_eq!(
        json["checkers"]["transactional"]["details"]["anomaly_types"][0], "G1c",
        "{json}"
    );
    let human = faultline(&["check"], &[&f]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("T0 read 2 = [1] after T1 appended 1, so T0 read T1's write"),
        "{text}"
    );
    assert!(text.contains("ruled out: read-committed"), "{text}");
}

#[test]
fn without_the_transactional_checker_an_elle_history_is_unknown_and_says_which_flag() {
    let d = Dir::new();
    let f = d.file("g1c.edn", ELLE_G1C_EDN);
    let (code, json, _) = check_json(&["--checkers", "consistent-prefix"], &f);
    assert_eq!(code, 2, "{json}");
    assert_eq!(json["unchecked"]["txn"], 2, "{json}");
    let human = faultline(&["check", "--checkers", "consistent-prefix"], &[&f]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("--checkers transactional"), "{text}");
    let bad = faultline(&["check", "--consistency-model", "serialisable"], &[&f]);
    assert_eq!(bad.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--consistency-model"));
}

#[test]
fn a_history_of_only_unknown_operations_is_unknown() {
    let d = Dir::new();
    let text = r#"{"index":0,"time":0,"process":0,"f":"frobnicate","key":"x","type":"invoke","value":1}
{"index":1,"time":5,"process":0,"f":"frobnicate","key":"x","type":"ok","value":1}
"#;
    let (code, json, _) = check_json(&[], &d.file("odd.jsonl", text));
    assert_eq!(code, 2, "{json}");
    assert_eq!(json["unchecked"]["frobnicate"], 1, "{json}");
}

#[test]
fn files_without_operations_are_errors_naming_the_format() {
    let d = Dir::new();
    let cases = [
        ("empty.jsonl", "", "jsonl"),
        ("header.jsonl", "{\"faultline_history\": 1}\n", "jsonl"),
    ];
    for (name, text, format) in cases {
        let (code, json, _) = check_json(&[], &d.file(name, text));
        assert_eq!(code, 3, "{name}: {json}");
        let err = json["error"].as_str().unwrap_or_default();
        assert!(err.contains("no operations") && err.contains(format), "{name}: {err}");
    }
    // A faultline history read as Porcupine's etcd log: every line is noise.
    let f = d.file("r.jsonl", REGISTER);
    let (code, json, _) = check_json(&["--format", "porcupine-etcd"], &f);
    assert_eq!(code, 3, "{json}");
    let err = json["error"].as_str().unwrap_or_default();
    assert!(err.contains("porcupine-etcd"), "{json}");
    assert!(
        err.contains("7 line(s) skipped"),
        "says how many lines it passed over: {json}"
    );
    // And in human form, on stderr.
    let out = faultline(&["check", "--format", "porcupine-etcd"], &[&f]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("porcupine-etcd"));
}

#[test]
fn usage_errors_exit_3_with_clap_s_message_and_help_exits_0() {
    let out = faultline(&["check", "--no-such-flag"], &[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
    let out = faultline(&["check"], &[]);
    assert_eq!(out.status.code(), Some(3), "FILES is required");
    let out = faultline(&["check", "--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--time-limit"));
    assert_eq!(faultline(&["--version"], &[]).status.code(), Some(0));
}

#[test]
fn every_number_is_checked_with_a_message_naming_its_flag() {
    let d = Dir::new();
    let f = d.file("r.jsonl", REGISTER);
    let bad = [
        ("--time-limit", "1e30"),
        ("--time-limit", "0"),
        ("--time-limit", "-1"),
        ("--time-limit", "NaN"),
        ("--time-limit", "inf"),
        ("--memory-limit-mib", "0"),
        ("--memory-limit-mib", "-5"),
        ("--memory-limit-mib", "99999999999999999999999"),
        ("--max-line-mib", "0"),
        ("--max-line-mib", "99999999999"),
    ];
    for (flag, value) in bad {
        let arg = format!("{flag}={value}");
        let out = faultline(&["check", &arg], &[&f]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{arg}: {stderr}");
        assert!(stderr.contains(flag), "{arg}: {stderr}");
        assert!(!stderr.contains("panicked"), "{arg}: {stderr}");
    }
    let out = faultline(&["check", "--time-limit=0.5", "--memory-limit-mib=64"], &[&f]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A valid register history large enough that its JSON line (with a
/// linearization) is far longer than a pipe's buffer.
fn long_register_history(ops: u64) -> String {
    let mut s = String::from("{\"faultline_history\": 1}\n");
    for i in 0..ops {
        let (f, v) = if i % 2 == 0 { ("write", i) } else { ("read", i - 1) };
        let inv = if f == "write" { v.to_string() } else { "null".into() };
        s += &format!(
            "{{\"index\":{},\"time\":{},\"process\":0,\"f\":\"{f}\",\"key\":\"x\",\"type\":\"invoke\",\"value\":{inv}}}\n",
            2 * i,
            20 * i
        );
        s += &format!(
            "{{\"index\":{},\"time\":{},\"process\":0,\"f\":\"{f}\",\"key\":\"x\",\"type\":\"ok\",\"value\":{v}}}\n",
            2 * i + 1,
            20 * i + 10
        );
    }
    s
}

#[test]
fn a_reader_that_closes_stdout_early_leaves_the_verdict_s_exit_code() {
    let d = Dir::new();
    let big = d.file("big.jsonl", &long_register_history(40_000));
    let elle = d.file("g1c.edn", ELLE_G1C_EDN);
    let mut child = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["check", "--json", "--linearization"])
        .args([&big, &big, &elle])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning faultline");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    // Read the start of the first line only (it is longer than the pipe's
    // buffer, so faultline is still writing it), then close the pipe.
    let mut start = vec![0u8; 16];
    std::io::Read::read_exact(&mut stdout, &mut start).expect("the first bytes of the first line");
    assert!(start.starts_with(b"{\"file\""), "{}", String::from_utf8_lossy(&start));
    drop(stdout);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting for faultline") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("faultline did not end within 120 s of its stdout closing");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("piped stderr"), &mut stderr).unwrap();
    // Valid, valid, invalid (Elle's G1c): the checking went on after the
    // pipe closed.
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr, "", "a closed stdout is a normal end");
}

#[test]
fn the_long_history_really_overflows_a_pipe() {
    // The test above is vacuous unless the first line outgrows a pipe's
    // buffer (64 KiB on Linux): check that it does.
    let d = Dir::new();
    let big = d.file("big.jsonl", &long_register_history(40_000));
    let out = faultline(&["check", "--json", "--linearization"], &[&big]);
    assert_eq!(out.status.code(), Some(0));
    let first = BufReader::new(&out.stdout[..]).lines().next().unwrap().unwrap();
    assert!(first.len() > 128 << 10, "first line only {} bytes", first.len());
}

#[test]
fn a_line_past_max_line_mib_is_an_error_naming_it() {
    let d = Dir::new();
    let mut text = String::from(REGISTER);
    let long_value = "x".repeat((1 << 20) + 16);
    text.push_str(&format!(
        "{{\"index\":99,\"time\":99,\"process\":9,\"type\":\"invoke\",\"f\":\"write\",\"value\":\"{long_value}\"}}\n"
    ));
    let f = d.file("long.jsonl", &text);
    let line = text.lines().count();
    let out = faultline(&["check", "--max-line-mib", "1"], &[&f]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&format!("line {line}")), "names the line: {stderr}");
    // The default limit (256 MiB) reads the same file.
    let out = faultline(&["check"], &[&f]);
    assert_ne!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
}
