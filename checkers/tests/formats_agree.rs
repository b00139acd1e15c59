//! One history, four files: a random small compare-and-set register history
//! written as faultline JSONL, as a Jepsen EDN vector, as an EDN list and as
//! EDN one form per line, read back with `import::read_any` (the format
//! detected, as `faultline check` does), must give the same operations and
//! the same linearizability verdict four times.
//!
//! The histories: up to three workers, reads, writes and cas over values
//! 0..5, ok, fail and info completions (a worker that saw info goes on as a
//! fresh process, as both formats require), a register starting at 0, and
//! no nil reads (Knossos reads those as unknown, faultline's JSONL as a read
//! of null: a difference of semantics, not of reading). The test is not
//! vacuous: both verdicts must come up.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use faultline_checkers::linear::{check, Config, ModelSpec, NilReads};
use faultline_checkers::Validity;
use faultline_histories::import::{read_any, Format};
use faultline_histories::{Event, EventType, Header, History, JsonlWriter, Process, ReadLimits, F};
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestRunner};
use serde_json::{json, Value};

/// One generated operation: what it does and how it ends.
#[derive(Clone, Debug)]
struct Spec {
    /// 0 read, 1 write, 2 cas.
    f: u8,
    a: u8,
    b: u8,
    /// What an ok read returns.
    read: u8,
    /// 0 and 1 ok, 2 fail, 3 info.
    end: u8,
}

fn spec() -> impl Strategy<Value = Spec> {
    (0u8..3, 0u8..5, 0u8..5, 0u8..5, 0u8..4).prop_map(|(f, a, b, read, end)| Spec { f, a, b, read, end })
}

/// The events of `specs` run by `workers` workers, interleaved by
/// `choices`: each choice invokes the next operation on an idle worker or
/// completes a busy one. Operations left at the end are completed in order.
fn schedule(specs: &[Spec], workers: usize, choices: &[u8]) -> Vec<Event> {
    let mut process: Vec<u64> = (0..workers as u64).collect();
    let mut busy: Vec<Option<&Spec>> = vec![None; workers];
    let mut next = specs.iter();
    let mut events = Vec::new();
    let mut choices = choices.iter().copied().cycle();
    loop {
        let w = choices.next().unwrap_or(0) as usize % workers;
        let event = match busy[w].take() {
            None => match next.next() {
                Some(s) => {
                    busy[w] = Some(s);
                    invocation(s, process[w])
                }
                None => match busy.iter().position(Option::is_some) {
                    Some(open) => {
                        let s = busy[open].take().expect("busy");
                        completion(s, &mut process[open], workers)
                    }
                    None => return events,
                },
            },
            Some(s) => completion(s, &mut process[w], workers),
        };
        let i = events.len() as u64;
        events.push(Event {
            index: i,
            time: 1_000 + 10 * i,
            ..event
        });
    }
}

fn f_of(s: &Spec) -> F {
    [F::Read, F::Write, F::Cas][s.f as usize].clone()
}

fn input_of(s: &Spec) -> Value {
    match s.f {
        0 => Value::Null,
        1 => json!(s.a),
        _ => json!([s.a, s.b]),
    }
}

fn invocation(s: &Spec, process: u64) -> Event {
    Event::new(0, 0, Process::Client(process), EventType::Invoke, f_of(s), input_of(s))
}

/// The completion of `s` by `process`, which an info retires: the worker
/// goes on as `process + workers`.
fn completion(s: &Spec, process: &mut u64, workers: usize) -> Event {
    let (kind, value) = match s.end {
        0 | 1 if s.f == 0 => (EventType::Ok, json!(s.read)),
        0 | 1 => (EventType::Ok, input_of(s)),
        2 => (EventType::Fail, input_of(s)),
        _ => (EventType::Info, input_of(s)),
    };
    let event = Event::new(0, 0, Process::Client(*process), kind, f_of(s), value);
    if kind == EventType::Info {
        *process += workers as u64;
    }
    event
}

/// An event as Jepsen writes it.
fn edn_of(e: &Event) -> String {
    let Process::Client(p) = e.process else {
        unreachable!("no nemesis events here")
    };
    format!(
        "{{:type :{}, :f :{}, :value {}, :process {p}, :time {}, :index {}}}",
        e.kind.as_str(),
        e.f,
        edn_value(&e.value),
        e.time,
        e.index
    )
}

/// The EDN of the values these histories hold: nil, integers, pairs.
fn edn_value(v: &Value) -> String {
    match v {
        Value::Null => "nil".to_owned(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(edn_value).collect();
            format!("[{}]", items.join(" "))
        }
        other => other.to_string(),
    }
}

/// The four files of one history, in `dir`.
fn write_all(dir: &Path, events: &[Event]) -> Vec<(std::path::PathBuf, Format)> {
    let jsonl = dir.join("history.jsonl");
    let mut w = JsonlWriter::create(&jsonl).unwrap();
    w.write_header(&Header {
        faultline_history: 1,
        ..Header::default()
    })
    .unwrap();
    for e in events {
        w.write_event(e).unwrap();
    }
    let forms: Vec<String> = events.iter().map(edn_of).collect();
    let mut files = vec![(jsonl, Format::Jsonl)];
    let texts = [
        ("vector.edn", format!("[{}]\n", forms.join("\n "))),
        ("list.edn", format!("({})\n", forms.join("\n "))),
        (
            "lines.edn",
            forms.iter().fold(String::new(), |mut out, f| {
                let _ = writeln!(out, "{f}");
                out
            }),
        ),
    ];
    for (name, text) in texts {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        files.push((path, Format::JepsenEdn));
    }
    files
}

fn verdict(h: &History) -> Validity {
    let config = Config {
        model: ModelSpec::CasRegister {
            initial: 0.into(),
            nil_reads: NilReads::Value,
        },
        threads: 1,
        time_limit: Duration::from_secs(30),
        ..Config::default()
    };
    check(h, &config).valid
}

#[test]
fn jsonl_and_three_edn_forms_read_alike_and_judge_alike() {
    let valid = AtomicUsize::new(0);
    let invalid = AtomicUsize::new(0);
    let mut runner = TestRunner::new(PtConfig {
        cases: 200,
        failure_persistence: None,
        ..PtConfig::default()
    });
    let strategy = (
        proptest::collection::vec(spec(), 1..7),
        1usize..4,
        proptest::collection::vec(any::<u8>(), 1..16),
    );
    runner
        .run(&strategy, |(specs, workers, choices)| {
            let events = schedule(&specs, workers, &choices);
            let dir = tempfile::tempdir().unwrap();
            let mut read = Vec::new();
            for (path, format) in write_all(dir.path(), &events) {
                let (h, read_as) =
                    read_any(&path, None, &ReadLimits::default()).map_err(|e| TestCaseError::fail(format!("{e}")))?;
                prop_assert_eq!(read_as, format, "{}", path.display());
                read.push((path, h));
            }
            let (_, first) = &read[0];
            prop_assert_eq!(first.ops.len(), specs.len());
            let first_verdict = verdict(first);
            for (path, h) in &read[1..] {
                prop_assert_eq!(&h.ops, &first.ops, "{}", path.display());
                prop_assert!(h.keys.is_empty(), "{}", path.display());
                prop_assert_eq!(verdict(h), first_verdict, "{}", path.display());
            }
            match first_verdict {
                Validity::Valid => valid.fetch_add(1, Ordering::Relaxed),
                Validity::Invalid => invalid.fetch_add(1, Ordering::Relaxed),
                Validity::Unknown => return Err(TestCaseError::fail("unknown verdict on a tiny history")),
            };
            Ok(())
        })
        .unwrap();
    let (valid, invalid) = (valid.into_inner(), invalid.into_inner());
    eprintln!("{valid} valid, {invalid} invalid");
    assert!(valid >= 20 && invalid >= 20, "{valid} valid, {invalid} invalid");
}
