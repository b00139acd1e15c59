//! Crashed operations stay cheap: a register with many concurrent writes
//! that all timed out, then reads. Porcupine gives up at 21 such writes
//! (every subset of them is a state); the dominance rules of
//! `linear::search` decide 24 of them at once, both when the reads can be
//! explained and when they cannot.

use std::time::{Duration, Instant};

use faultline_checkers::linear::{check, Config, ModelSpec, NilReads};
use faultline_checkers::Validity;
use faultline_histories::{Event, EventType, History, Process, F};
use serde_json::{json, Value};

/// `writers` concurrent writes of 1, 2, ... that all end `info`, then one
/// read after another of each value in `reads`.
fn crashed_writes_then_reads(writers: u64, reads: &[u64]) -> History {
    let mut events = Vec::new();
    let mut push = |p: u64, ty: EventType, f: F, v: Value| {
        let i = events.len() as u64;
        events.push(Event::new(i, i * 1000, Process::Client(p), ty, f, v).with_key("r"));
    };
    for p in 0..writers {
        push(p, EventType::Invoke, F::Write, json!(p + 1));
    }
    for p in 0..writers {
        push(p, EventType::Info, F::Write, json!(p + 1));
    }
    for &v in reads {
        push(writers, EventType::Invoke, F::Read, Value::Null);
        push(writers, EventType::Ok, F::Read, json!(v));
    }
    History::from_events(events).expect("well formed")
}

fn decide(h: &History) -> (Validity, Duration) {
    let config = Config {
        model: ModelSpec::Register {
            initial: Value::Null,
            nil_reads: NilReads::Value,
        },
        time_limit: Duration::from_secs(20),
        threads: 1,
        ..Config::default()
    };
    let t = Instant::now();
    let v = check(h, &config);
    (v.valid, t.elapsed())
}

#[test]
fn twenty_four_crashed_writes_then_a_read_of_one_of_them() {
    let (v, took) = decide(&crashed_writes_then_reads(24, &[17]));
    eprintln!("24 crashed writes, read of a written value: {v:?} in {took:?}");
    assert_eq!(v, Validity::Valid);
}

#[test]
fn twenty_four_crashed_writes_then_a_read_of_none_of_them() {
    let (v, took) = decide(&crashed_writes_then_reads(24, &[99]));
    eprintln!("24 crashed writes, read of an unwritten value: {v:?} in {took:?}");
    assert_eq!(v, Validity::Invalid);
}

#[test]
fn twenty_four_crashed_writes_then_reads_that_need_distinct_writes() {
    let (v, took) = decide(&crashed_writes_then_reads(24, &[5, 6, 7, 8, 9]));
    eprintln!("24 crashed writes, reads 5 6 7 8 9: {v:?} in {took:?}");
    assert_eq!(v, Validity::Valid);
}

#[test]
fn twenty_four_crashed_writes_cannot_take_effect_twice() {
    let (v, took) = decide(&crashed_writes_then_reads(24, &[5, 6, 5]));
    eprintln!("24 crashed writes, reads 5 6 5: {v:?} in {took:?}");
    assert_eq!(v, Validity::Invalid);
}
