//! Budgets: a search that would take too long or too much memory stops
//! with an `unknown` verdict that says which part ran out of what, never
//! with a guess and never by being killed.

use std::time::{Duration, Instant};

use faultline_checkers::linear::{check, Config, ModelSpec};
use faultline_checkers::Validity;
use faultline_histories::{Event, EventType, History, Process, F};
use serde_json::{json, Value};

/// `n` concurrent appends to one list, then a read that sees them in an
/// order no linearization can produce (the last element never appended):
/// proving that takes every order of the appends.
fn hard_list(n: u64) -> History {
    let mut events = Vec::new();
    let mut push = |p: u64, ty: EventType, f: F, v: Value| {
        let i = events.len() as u64;
        events.push(Event::new(i, i, Process::Client(p), ty, f, v).with_key("l"));
    };
    for p in 0..n {
        push(p, EventType::Invoke, F::Append, json!(p));
    }
    for p in 0..n {
        push(p, EventType::Ok, F::Append, json!(p));
    }
    let mut seen: Vec<u64> = (0..n).collect();
    seen.push(n + 1);
    push(n, EventType::Invoke, F::Read, Value::Null);
    push(n, EventType::Ok, F::Read, json!(seen));
    History::from_events(events).expect("well formed")
}

fn list_config() -> Config {
    Config {
        model: ModelSpec::List,
        threads: 1,
        ..Config::default()
    }
}

#[test]
fn past_its_time_budget_the_verdict_is_unknown() {
    let config = Config {
        time_limit: Duration::from_millis(200),
        ..list_config()
    };
    let t = Instant::now();
    let v = check(&hard_list(40), &config);
    assert!(t.elapsed() < Duration::from_secs(5), "stopped late: {:?}", t.elapsed());
    assert_eq!(v.valid, Validity::Unknown);
    let reason = v.unknown_reason.unwrap_or_default();
    assert!(reason.contains("key l") && reason.contains("time"), "{reason}");
}

#[test]
fn past_its_memory_budget_the_verdict_is_unknown() {
    let config = Config {
        memory_limit_bytes: 8 << 20,
        ..list_config()
    };
    let v = check(&hard_list(40), &config);
    assert_eq!(v.valid, Validity::Unknown);
    let reason = v.unknown_reason.unwrap_or_default();
    assert!(
        reason.contains("key l") && reason.contains("memory (limit 8 MiB)"),
        "{reason}"
    );
}

#[test]
fn the_same_history_small_enough_is_decided() {
    assert_eq!(check(&hard_list(6), &list_config()).valid, Validity::Invalid);
}
