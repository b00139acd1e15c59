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

/// Two hard keys (`h1`, `h2`), many easy ones (`e0`...) and, when `bad`,
/// one easy key with a read of a value never appended (`bad`).
fn hard_and_easy(bad: bool) -> History {
    let mut events = Vec::new();
    let mut push = |p: u64, ty: EventType, f: F, v: Value, key: String| {
        let i = events.len() as u64;
        events.push(Event::new(i, i, Process::Client(p), ty, f, v).with_key(key.as_str()));
    };
    // Each hard key as `hard_list(40)`: 40 concurrent appends, then a read
    // with an element never appended.
    for (key, p0) in [("h1", 0u64), ("h2", 100)] {
        for p in 0..40 {
            push(p0 + p, EventType::Invoke, F::Append, json!(p), key.to_owned());
        }
        for p in 0..40 {
            push(p0 + p, EventType::Ok, F::Append, json!(p), key.to_owned());
        }
        let mut seen: Vec<u64> = (0..40).collect();
        seen.push(41);
        push(p0 + 40, EventType::Invoke, F::Read, Value::Null, key.to_owned());
        push(p0 + 40, EventType::Ok, F::Read, json!(seen), key.to_owned());
    }
    for k in 0..50u64 {
        let key = if bad && k == 49 {
            "bad".to_owned()
        } else {
            format!("e{k}")
        };
        let seen = if bad && k == 49 { json!([k, 999]) } else { json!([k]) };
        push(1000, EventType::Invoke, F::Append, json!(k), key.clone());
        push(1000, EventType::Ok, F::Append, json!(k), key.clone());
        push(1000, EventType::Invoke, F::Read, Value::Null, key.clone());
        push(1000, EventType::Ok, F::Read, seen, key);
    }
    History::from_events(events).expect("well formed")
}

#[test]
fn hard_keys_neither_starve_the_easy_ones_nor_hide_an_anomaly() {
    let config = Config {
        time_limit: Duration::from_secs(2),
        threads: 2,
        ..list_config()
    };
    let v = check(&hard_and_easy(false), &config);
    assert_eq!(v.valid, Validity::Unknown);
    let reason = v.unknown_reason.unwrap_or_default();
    // Only the hard keys are undecided, each named with what it ran out of
    // and what deciding it would take; every easy key was checked.
    assert!(reason.contains("key h1") && reason.contains("key h2"), "{reason}");
    assert!(
        reason.contains("ran out of time") && reason.contains("would take more time"),
        "{reason}"
    );
    assert!(!reason.contains("key e"), "{reason}");
    let v = check(&hard_and_easy(true), &config);
    assert_eq!(v.valid, Validity::Invalid, "{:?}", v.unknown_reason);
    assert_eq!(
        v.anomalies[0].key.as_ref().map(ToString::to_string).as_deref(),
        Some("bad")
    );
}
