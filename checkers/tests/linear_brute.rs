//! The fast checker against the obvious one: on thousands of small random
//! histories (registers, compare-and-set registers, key-value strings and
//! lists; one or two keys; several processes; ok, failed, crashed and
//! pending operations), the linearizability checker must agree with a
//! brute-force checker that tries every subset of crashed operations in
//! every order that respects real time, with its own reference semantics on
//! JSON values (it shares no code with the models).
//!
//! Beyond the verdict, it checks the evidence: a printed linearization must
//! be one, and the proof set of an anomaly must itself be impossible to
//! linearize. And it checks that the test is not vacuous: both verdicts must
//! be common.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use faultline_checkers::linear::{check, Config, ModelSpec, NilReads};
use faultline_checkers::Validity;
use faultline_histories::{Event, EventType, History, Op, Outcome, Process, F};
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestRunner};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Register,
    Cas,
    Kv,
    List,
}

/// One generated operation, before scheduling.
#[derive(Clone, Debug)]
struct Spec {
    f: u8,
    key: u8,
    val: u8,
    out: u8,
    outcome: u8,
}

fn kind_of(k: u8) -> Kind {
    [Kind::Register, Kind::Cas, Kind::Kv, Kind::List][k as usize % 4]
}

fn small_value(kind: Kind, v: u8) -> Value {
    match kind {
        Kind::Register | Kind::Cas => json!(v % 3),
        Kind::Kv => json!(["a", "b", "c"][v as usize % 3]),
        Kind::List => json!(v % 4),
    }
}

/// A read result: often one a correct system could return, often not.
fn read_value(kind: Kind, v: u8) -> Value {
    match kind {
        Kind::Register | Kind::Cas => [json!(null), json!(0), json!(1), json!(2)][v as usize % 4].clone(),
        Kind::Kv => json!(["", "a", "b", "ab", "ba", "c", "ac"][v as usize % 7]),
        Kind::List => [
            json!(null),
            json!([]),
            json!([0]),
            json!([1]),
            json!([0, 1]),
            json!([1, 0]),
            json!([2]),
        ][v as usize % 7]
            .clone(),
    }
}

/// The function and argument of a spec under `kind`.
fn f_and_input(kind: Kind, s: &Spec) -> (F, Value) {
    let fs: &[F] = match kind {
        Kind::Register => &[F::Read, F::Write],
        Kind::Cas => &[F::Read, F::Write, F::Cas],
        Kind::Kv => &[F::Read, F::Write, F::Append],
        Kind::List => &[F::Read, F::Append],
    };
    let f = fs[s.f as usize % fs.len()].clone();
    let input = match f {
        F::Read => Value::Null,
        F::Cas => json!([s.val % 3, s.out % 3]),
        _ => small_value(kind, s.val),
    };
    (f, input)
}

/// Schedules the specs into events: at each choice, invoke the next
/// operation on an idle process or complete one in flight.
fn build(kind: Kind, specs: &[Spec], choices: &[u8], keys: u8, crash_heavy: bool) -> History {
    let mut events = Vec::new();
    let mut in_flight: Vec<(u64, usize)> = Vec::new();
    let mut next_process = 3u64;
    let mut idle: Vec<u64> = vec![0, 1, 2];
    let mut next = 0;
    let mut c = choices.iter().cycle();
    while next < specs.len() || !in_flight.is_empty() {
        let choice = *c.next().unwrap_or(&0);
        let invoke = next < specs.len() && !idle.is_empty() && (in_flight.is_empty() || choice.is_multiple_of(2));
        let index = events.len() as u64;
        if invoke {
            let p = idle.remove(choice as usize % idle.len());
            let (f, input) = f_and_input(kind, &specs[next]);
            let key = i64::from(specs[next].key % keys);
            events.push(Event::new(index, index, Process::Client(p), EventType::Invoke, f, input).with_key(key));
            in_flight.push((p, next));
            next += 1;
            continue;
        }
        let (p, i) = in_flight.remove(choice as usize % in_flight.len());
        let s = &specs[i];
        let (f, input) = f_and_input(kind, s);
        let key = i64::from(s.key % keys);
        // Crash-heavy histories turn 4 of the 10 outcomes into info/pending.
        let outcome = match s.outcome % 10 {
            o @ 4..=7 if crash_heavy => [0, 3][o as usize % 2],
            o => o,
        };
        let (ty, value, error) = match outcome {
            0 => (EventType::Info, input, None),
            1 => (EventType::Fail, input, Some("cas-mismatch")),
            2 => (EventType::Fail, input, None),
            3 => {
                // Pending: never completes; the process is retired.
                idle.push(next_process);
                next_process += 1;
                continue;
            }
            _ if f == F::Read => (EventType::Ok, read_value(kind, s.out), None),
            _ => (EventType::Ok, input, None),
        };
        let mut ev = Event::new(index, index, Process::Client(p), ty, f, value).with_key(key);
        ev.error = error.map(str::to_owned);
        events.push(ev);
        if ty == EventType::Info {
            idle.push(next_process);
            next_process += 1;
        } else {
            idle.push(p);
        }
    }
    History::from_events(events).expect("generated histories are well formed")
}

/// How the brute-force checker sees an operation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Det,
    Crashed,
    Ignored,
}

fn role(op: &Op) -> Role {
    match op.outcome {
        Outcome::Ok => Role::Det,
        Outcome::Fail if op.f == F::Cas && op.error.as_deref() == Some("cas-mismatch") => Role::Det,
        Outcome::Fail => Role::Ignored,
        _ if op.f == F::Read => Role::Ignored,
        _ => Role::Crashed,
    }
}

/// The reference semantics: the state of every key, as JSON.
type State = BTreeMap<u32, Value>;

fn initial(kind: Kind) -> Value {
    match kind {
        Kind::Register | Kind::Cas => Value::Null,
        Kind::Kv => json!(""),
        Kind::List => json!([]),
    }
}

/// Applies `op` to `state`; `None` if it cannot take effect there.
fn apply(kind: Kind, state: &State, op: &Op, det: bool) -> Option<State> {
    let key = op.key.map_or(u32::MAX, |k| k.0);
    let cur = state.get(&key).cloned().unwrap_or_else(|| initial(kind));
    let normal = |v: &Value| match (kind, v) {
        (Kind::Kv, Value::Null) => json!(""),
        (Kind::List, Value::Null) => json!([]),
        _ => v.clone(),
    };
    let new = match op.f {
        F::Read => (normal(&op.output) == cur).then(|| cur.clone())?,
        F::Write => op.input.clone(),
        F::Append if kind == Kind::Kv => json!(format!("{}{}", cur.as_str()?, op.input.as_str()?)),
        F::Append => {
            let mut l = cur.as_array()?.clone();
            l.push(op.input.clone());
            Value::Array(l)
        }
        F::Cas => {
            let (a, b) = (&op.input[0], &op.input[1]);
            match (op.outcome, det) {
                (Outcome::Fail, _) => (cur != *a).then(|| cur.clone())?,
                (_, true) => (cur == *a).then(|| b.clone())?,
                // A crashed cas whose comparison fails did nothing.
                (_, false) if cur == *a => b.clone(),
                (_, false) => cur.clone(),
            }
        }
        _ => return None,
    };
    let mut next = state.clone();
    next.insert(key, new);
    Some(next)
}

/// Whether some subset of crashed ops and some order of it and all
/// determinate ops respects real time and the semantics.
fn brute(kind: Kind, ops: &[&Op]) -> bool {
    let roles: Vec<Role> = ops.iter().map(|o| role(o)).collect();
    let mut used = vec![false; ops.len()];
    dfs(kind, ops, &roles, &mut used, &State::new())
}

fn dfs(kind: Kind, ops: &[&Op], roles: &[Role], used: &mut [bool], state: &State) -> bool {
    let pending_det: Vec<usize> = (0..ops.len()).filter(|&i| roles[i] == Role::Det && !used[i]).collect();
    if pending_det.is_empty() {
        return true;
    }
    for i in 0..ops.len() {
        if used[i] || roles[i] == Role::Ignored {
            continue;
        }
        // i may go next unless a determinate op not yet placed completed
        // before i was invoked.
        let blocked = pending_det
            .iter()
            .any(|&d| d != i && ops[d].complete_index.is_some_and(|c| c < ops[i].invoke_index));
        if blocked {
            continue;
        }
        let Some(next) = apply(kind, state, ops[i], roles[i] == Role::Det) else {
            continue;
        };
        used[i] = true;
        let ok = dfs(kind, ops, roles, used, &next);
        used[i] = false;
        if ok {
            return true;
        }
    }
    false
}

/// Checks that `order` (invoke indices per key) is a linearization.
fn is_linearization(kind: Kind, h: &History, order: &[u64]) -> bool {
    let by_index: BTreeMap<u64, &Op> = h.ops.iter().map(|o| (o.invoke_index, o)).collect();
    let seq: Vec<&Op> = order.iter().map(|i| by_index[i]).collect();
    let mut state = State::new();
    for (pos, op) in seq.iter().enumerate() {
        // Nothing later in the order may have completed before op began.
        if seq[pos + 1..]
            .iter()
            .any(|l| l.complete_index.is_some_and(|c| c < op.invoke_index) && role(l) == Role::Det)
        {
            return false;
        }
        match apply(kind, &state, op, role(op) == Role::Det) {
            Some(s) => state = s,
            None => return false,
        }
    }
    let key = |o: &Op| o.key;
    let keys: Vec<_> = seq.iter().map(|o| key(o)).collect();
    h.ops
        .iter()
        .filter(|o| role(o) == Role::Det && keys.contains(&o.key))
        .all(|o| order.contains(&o.invoke_index))
}

fn spec_strategy() -> impl Strategy<Value = Spec> {
    (any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(f, key, val, out, outcome)| Spec {
        f,
        key,
        val,
        out,
        outcome,
    })
}

fn model_spec(kind: Kind) -> ModelSpec {
    match kind {
        Kind::Register => ModelSpec::Register {
            initial: Value::Null,
            nil_reads: NilReads::Value,
        },
        Kind::Cas => ModelSpec::CasRegister {
            initial: Value::Null,
            nil_reads: NilReads::Value,
        },
        Kind::Kv => ModelSpec::Kv,
        Kind::List => ModelSpec::List,
    }
}

static VALID: AtomicUsize = AtomicUsize::new(0);
static INVALID: AtomicUsize = AtomicUsize::new(0);
static VALID_CRASHY: AtomicUsize = AtomicUsize::new(0);
static INVALID_CRASHY: AtomicUsize = AtomicUsize::new(0);

/// One case: checker (split and unsplit) against brute force, plus evidence.
fn one_case(kind: Kind, keys: u8, specs: &[Spec], choices: &[u8], crash_heavy: bool) -> Result<(), TestCaseError> {
    let h = build(kind, specs, choices, keys, crash_heavy);
    let all: Vec<&Op> = h.ops.iter().collect();
    let expected = brute(kind, &all);
    for split in [true, false] {
        let config = Config {
            model: model_spec(kind),
            split_by_key: split,
            threads: 1,
            want_linearization: true,
            ..Config::default()
        };
        let v = check(&h, &config);
        let want = if expected { Validity::Valid } else { Validity::Invalid };
        prop_assert_eq!(v.valid, want, "split={} history: {:#?}", split, h.ops);
        if expected {
            let lin = v.details["linearization"].as_object().cloned().unwrap_or_default();
            for order in lin.values() {
                let order: Vec<u64> = serde_json::from_value(order.clone()).unwrap_or_default();
                prop_assert!(
                    is_linearization(kind, &h, &order),
                    "bad linearization {:?}: {:#?}",
                    order,
                    h.ops
                );
            }
            continue;
        }
        for a in &v.anomalies {
            let proof: Vec<&Op> = h
                .ops
                .iter()
                .filter(|o| a.ops.iter().any(|r| r.index == o.invoke_index))
                .collect();
            prop_assert!(!proof.is_empty());
            prop_assert!(
                !brute(kind, &proof),
                "proof set is linearizable: {:?} in {:#?}",
                a.ops,
                h.ops
            );
        }
    }
    let counter = match (crash_heavy, expected) {
        (false, true) => &VALID,
        (false, false) => &INVALID,
        (true, true) => &VALID_CRASHY,
        (true, false) => &INVALID_CRASHY,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Runs `cases` random cases of up to `max_ops` operations.
fn run_cases(cases: u32, max_ops: usize, crash_heavy: bool) {
    let mut runner = TestRunner::new(PtConfig {
        cases,
        failure_persistence: None,
        ..PtConfig::default()
    });
    let strategy = (
        0u8..4,
        1u8..=2,
        proptest::collection::vec(spec_strategy(), 1..=max_ops),
        proptest::collection::vec(any::<u8>(), 4..16),
    );
    runner
        .run(&strategy, |(k, keys, specs, choices)| {
            one_case(kind_of(k), keys, &specs, &choices, crash_heavy)
        })
        .unwrap();
}

fn cases(default: u32) -> u32 {
    std::env::var("FAULTLINE_PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default)
}

#[test]
fn checker_agrees_with_brute_force_on_small_histories() {
    let n = cases(3000);
    run_cases(n, 7, false);
    let (valid, invalid) = (VALID.load(Ordering::Relaxed), INVALID.load(Ordering::Relaxed));
    eprintln!("{valid} linearizable, {invalid} not");
    assert!(valid * 10 > n as usize, "too few linearizable cases: {valid}");
    assert!(invalid * 10 > n as usize, "too few non-linearizable cases: {invalid}");
}

/// Most operations crashed: the dominance rules of the search are at work
/// in nearly every case.
#[test]
fn checker_agrees_with_brute_force_when_most_operations_crashed() {
    let n = cases(1500);
    run_cases(n, 8, true);
    let (valid, invalid) = (
        VALID_CRASHY.load(Ordering::Relaxed),
        INVALID_CRASHY.load(Ordering::Relaxed),
    );
    eprintln!("crash-heavy: {valid} linearizable, {invalid} not");
    assert!(valid * 20 > n as usize, "too few linearizable cases: {valid}");
    assert!(invalid * 20 > n as usize, "too few non-linearizable cases: {invalid}");
}

/// A regression found while writing the dominance rules: a crashed write
/// followed by a blind write must still let a read see the crashed value.
#[test]
fn a_crashed_write_seen_by_a_read_is_linearizable() {
    let ev = |i: u64, p: u64, ty: EventType, f: F, v: Value| Event::new(i, i, Process::Client(p), ty, f, v).with_key(0);
    let h = History::from_events([
        ev(0, 0, EventType::Invoke, F::Write, json!(1)),
        ev(1, 1, EventType::Invoke, F::Write, json!(2)),
        ev(2, 1, EventType::Ok, F::Write, json!(2)),
        ev(3, 2, EventType::Invoke, F::Read, json!(null)),
        ev(4, 2, EventType::Ok, F::Read, json!(1)),
    ])
    .unwrap();
    let config = Config {
        model: ModelSpec::Register {
            initial: Value::Null,
            nil_reads: NilReads::Value,
        },
        ..Config::default()
    };
    assert_eq!(check(&h, &config).valid, Validity::Valid);
    assert!(brute(Kind::Register, &h.ops.iter().collect::<Vec<_>>()));
}
