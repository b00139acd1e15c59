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

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use faultline_checkers::linear::{check, Config, ModelSpec, NilReads};
use faultline_checkers::Validity;
use faultline_histories::{Event, EventType, History, Op, Outcome, Process, F};
use proptest::prelude::*;
use serde_json::{json, Value};
use support::{brute, cases, one_case, runner, spec_strategy, Reference, Role, Spec};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Register,
    Cas,
    Kv,
    List,
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

/// The completion of a spec with `outcome`: 0 crashed, 1 a cas that
/// failed on its comparison, 2 failed, else ok.
fn complete(kind: Kind, s: &Spec, outcome: u8, f: &F, input: Value) -> (EventType, Value, Option<&'static str>) {
    match outcome {
        0 => (EventType::Info, input, None),
        1 => (EventType::Fail, input, Some("cas-mismatch")),
        2 => (EventType::Fail, input, None),
        _ if *f == F::Read => (EventType::Ok, read_value(kind, s.out), None),
        _ => (EventType::Ok, input, None),
    }
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

impl Reference for Kind {
    type State = State;

    fn f_and_input(self, s: &Spec) -> (F, Value) {
        f_and_input(self, s)
    }

    fn complete(self, s: &Spec, outcome: u8, f: &F, input: Value) -> (EventType, Value, Option<&'static str>) {
        complete(self, s, outcome, f, input)
    }

    fn role(self, op: &Op) -> Role {
        role(op)
    }

    fn apply(self, state: &State, op: &Op, det: bool) -> Vec<State> {
        apply(self, state, op, det).into_iter().collect()
    }

    fn model_spec(self) -> ModelSpec {
        model_spec(self)
    }

    fn label(self) -> String {
        String::new()
    }
}

static VALID: AtomicUsize = AtomicUsize::new(0);
static INVALID: AtomicUsize = AtomicUsize::new(0);
static VALID_CRASHY: AtomicUsize = AtomicUsize::new(0);
static INVALID_CRASHY: AtomicUsize = AtomicUsize::new(0);

/// One case: checker (split and unsplit) against brute force, plus
/// evidence; counts its verdict.
fn counted_case(kind: Kind, keys: u8, specs: &[Spec], choices: &[u8], crash_heavy: bool) -> Result<(), TestCaseError> {
    let expected = one_case(kind, keys, specs, choices, crash_heavy)?;
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
    let mut runner = runner(cases);
    let strategy = (
        0u8..4,
        1u8..=2,
        proptest::collection::vec(spec_strategy(), 1..=max_ops),
        proptest::collection::vec(any::<u8>(), 4..16),
    );
    runner
        .run(&strategy, |(k, keys, specs, choices)| {
            counted_case(kind_of(k), keys, &specs, &choices, crash_heavy)
        })
        .unwrap();
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
