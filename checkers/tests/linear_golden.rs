//! Golden files for the linearizability checker, in the style of raft-rs's
//! data-driven tests: each `tests/golden/linear/*.txt` holds a history and,
//! after a `----` line, the verdict and evidence the checker must print.
//! Run with `FAULTLINE_BLESS=1` to rewrite the expectations after a
//! deliberate change (and read the diff before committing it).
//!
//! The history is written one event per line:
//! `p<process> <invoke|ok|fail|info> <f> <key> [<value as JSON> [<error>]]`,
//! event index and time (in milliseconds) being the line's position. Lines
//! before the events may set `model:` (any name `--model` takes),
//! `initial:` (the registers' first value, as JSON), `nil_reads:` (value or
//! unknown), `split:` (true or false) and `memory_limit:` (bytes); `#`
//! starts a comment.

use std::path::{Path, PathBuf};

use faultline_checkers::linear::{check, Config, ModelSpec, NilReads};
use faultline_checkers::Verdict;
use faultline_histories::{Event, EventType, History, Process, F};
use serde_json::{json, Value};

const SEPARATOR: &str = "----";

fn golden_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/linear"))
}

fn event_type(s: &str) -> EventType {
    match s {
        "invoke" => EventType::Invoke,
        "ok" => EventType::Ok,
        "fail" => EventType::Fail,
        "info" => EventType::Info,
        other => panic!("unknown event type {other}"),
    }
}

fn parse_event(index: u64, line: &str) -> Event {
    let mut words = line.split_whitespace();
    let mut next = || words.next().unwrap_or_else(|| panic!("short event line: {line}"));
    let process: u64 = next().trim_start_matches('p').parse().expect("process number");
    let ty = event_type(next());
    let f = F::parse(next());
    let key = next().to_owned();
    let rest: Vec<&str> = line.split_whitespace().skip(4).collect();
    let value: Value = rest
        .first()
        .map_or(Value::Null, |v| serde_json::from_str(v).expect("value is JSON"));
    let mut ev = Event::new(index, index * 1_000_000, Process::Client(process), ty, f, value).with_key(key.as_str());
    ev.error = rest.get(1).map(|e| (*e).to_owned());
    ev
}

/// Reads the input part of a golden file: the config and the history.
fn parse_input(text: &str) -> (Config, History) {
    let mut config = Config {
        threads: 1,
        want_linearization: true,
        ..Config::default()
    };
    let mut events = Vec::new();
    let (mut model_name, mut initial, mut nil_reads) = ("cas-register".to_owned(), Value::Null, NilReads::Value);
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        if let Some((name, value)) = line.split_once(": ") {
            match name {
                "model" => model_name = value.to_owned(),
                "initial" => initial = serde_json::from_str(value).expect("initial is JSON"),
                "nil_reads" => nil_reads = nil_reads_named(value),
                "split" => config.split_by_key = value == "true",
                "memory_limit" => config.memory_limit_bytes = value.parse().expect("bytes"),
                other => panic!("unknown setting {other}"),
            }
            continue;
        }
        events.push(parse_event(events.len() as u64, line));
    }
    config.model = model(&model_name, initial, nil_reads);
    (
        config,
        History::from_events(events).expect("golden history is well formed"),
    )
}

fn nil_reads_named(name: &str) -> NilReads {
    match name {
        "value" => NilReads::Value,
        "unknown" => NilReads::Unknown,
        other => panic!("unknown nil_reads {other}"),
    }
}

fn model(name: &str, initial: Value, nil_reads: NilReads) -> ModelSpec {
    match name {
        "register" => ModelSpec::Register { initial, nil_reads },
        "cas-register" => ModelSpec::CasRegister { initial, nil_reads },
        "multi-register" => ModelSpec::MultiRegister { initial, nil_reads },
        "mutex" => ModelSpec::Mutex,
        "set" => ModelSpec::Set,
        "unordered-queue" => ModelSpec::UnorderedQueue,
        "fifo-queue" => ModelSpec::FifoQueue,
        "kv" => ModelSpec::Kv,
        "list" => ModelSpec::List,
        other => panic!("unknown model {other}"),
    }
}

/// The verdict as the golden file pins it: everything but timings and
/// search statistics, which change with the machine and the algorithm.
fn render(v: &Verdict) -> String {
    let anomalies: Vec<Value> = v
        .anomalies
        .iter()
        .map(|a| {
            json!({
                "kind": a.kind,
                "key": a.key,
                "explanation": a.explanation,
                "ops": a.ops.iter().map(|o| o.describe()).collect::<Vec<_>>(),
                "details": a.details,
            })
        })
        .collect();
    let pinned = json!({
        "valid": v.valid,
        "ops": v.ops,
        "unknown_reason": v.unknown_reason,
        "anomalies": anomalies,
        "linearization": v.details.get("linearization"),
    });
    serde_json::to_string_pretty(&pinned).expect("serializable") + "\n"
}

fn run_file(path: &Path, bless: bool) -> Option<String> {
    let text = std::fs::read_to_string(path).expect("golden file is readable");
    let (input, expected) = text
        .split_once(&format!("\n{SEPARATOR}\n"))
        .expect("golden file has a ---- line");
    let (config, history) = parse_input(input);
    let got = render(&check(&history, &config));
    if bless {
        std::fs::write(path, format!("{input}\n{SEPARATOR}\n{got}")).expect("golden file is writable");
        return None;
    }
    (got != expected).then(|| format!("{}:\n--- expected\n{expected}\n+++ got\n{got}", path.display()))
}

#[test]
fn golden_histories_give_their_pinned_verdicts() {
    let bless = std::env::var("FAULTLINE_BLESS").is_ok_and(|v| v == "1");
    let mut files: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("golden dir exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "golden files missing");
    let diffs: Vec<String> = files.iter().filter_map(|f| run_file(f, bless)).collect();
    assert!(
        diffs.is_empty(),
        "{} golden file(s) differ (FAULTLINE_BLESS=1 rewrites):\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}
