//! Knossos's models against the obvious: on thousands of small random
//! histories of each model (mutex, set, unordered and FIFO queues,
//! multi-register, and Knossos's cas-register from 0 with nil reads
//! unknown), with ok, failed, crashed and pending operations on one or two
//! keys, the linearizability checker must agree with a brute-force checker
//! that tries every subset of the crashed operations in every order that
//! respects real time. The reference semantics here are written on plain
//! Rust values and share no code with the models; where a crashed
//! operation's effect is not determined (a crashed dequeue of an unordered
//! queue may have taken any element) the brute force tries every choice.
//!
//! As in `linear_brute.rs`, a printed linearization must be one, the proof
//! set of an anomaly must itself be impossible, and both verdicts must be
//! common (the test is not vacuous).

mod support;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};

use faultline_checkers::linear::{ModelSpec, NilReads};
use faultline_histories::{EventType, Op, Outcome, F};
use proptest::prelude::*;
use serde_json::{json, Value};
use support::{cases, one_case, runner, spec_strategy, Reference, Role, Spec};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Mutex,
    Set,
    Unordered,
    Fifo,
    Multi,
    KnossosCas,
}

const KINDS: [Kind; 6] = [
    Kind::Mutex,
    Kind::Set,
    Kind::Unordered,
    Kind::Fifo,
    Kind::Multi,
    Kind::KnossosCas,
];

/// A micro-op of a generated transaction: `(is_read, register, value)`.
fn micro_ops(s: &Spec) -> Vec<(bool, &'static str, u8)> {
    let regs = ["x", "y"];
    let n = 1 + usize::from(s.f % 2);
    (0..n)
        .map(|i| {
            let bits = s.val >> (3 * i);
            (
                bits & 1 == 0,
                regs[usize::from(bits >> 1) % 2],
                (bits >> 2) % 2 + s.out % 2,
            )
        })
        .collect()
}

fn txn_value(s: &Spec, with_results: bool) -> Value {
    let items: Vec<Value> = micro_ops(s)
        .into_iter()
        .enumerate()
        .map(|(i, (read, k, v))| match (read, with_results) {
            (true, false) => json!(["r", k, null]),
            // Reads return 0, 1, 2 or nil, from the spec's `out`.
            (true, true) => match (s.out >> (2 * i)) % 4 {
                3 => json!(["r", k, null]),
                r => json!(["r", k, r]),
            },
            (false, _) => json!(["w", k, v]),
        })
        .collect();
    Value::Array(items)
}

/// A set read: some subset of {0, 1, 2}, spelled as an EDN set or as an
/// array in some order with repeats.
fn set_read(out: u8) -> Value {
    let items: Vec<u8> = (0..3).filter(|i| out & (1 << i) != 0).collect();
    if out & 8 == 0 {
        json!({ "$set": items })
    } else {
        let mut shuffled: Vec<u8> = items.iter().rev().copied().collect();
        shuffled.extend(items.first());
        json!(shuffled)
    }
}

/// The function and argument of a spec under `kind`.
fn f_and_input(kind: Kind, s: &Spec) -> (F, Value) {
    let other = |name: &str| F::Other(name.into());
    match kind {
        Kind::Mutex => (other(["acquire", "release"][usize::from(s.f % 2)]), Value::Null),
        Kind::Set if s.f.is_multiple_of(3) => (F::Read, Value::Null),
        Kind::Set => (other("add"), json!(s.val % 3)),
        Kind::Unordered | Kind::Fifo if s.f.is_multiple_of(2) => (other("dequeue"), Value::Null),
        Kind::Unordered | Kind::Fifo => (other("enqueue"), json!(s.val % 3)),
        Kind::Multi => (F::Txn, txn_value(s, false)),
        Kind::KnossosCas => match s.f % 3 {
            0 => (F::Read, Value::Null),
            1 => (F::Write, json!(s.val % 3)),
            _ => (F::Cas, json!([s.val % 3, s.out % 3])),
        },
    }
}

/// What an ok operation returned.
fn ok_value(kind: Kind, s: &Spec, f: &F, input: &Value) -> Value {
    match (kind, f.as_str()) {
        (Kind::Set, "read") => set_read(s.out),
        (Kind::Unordered | Kind::Fifo, "dequeue") => json!(s.out % 3),
        (Kind::Multi, _) => txn_value(s, true),
        (Kind::KnossosCas, "read") => [json!(null), json!(0), json!(1), json!(2)][usize::from(s.out % 4)].clone(),
        _ => input.clone(),
    }
}

/// The completion of a spec with `outcome`: 0 or 1 crashed, 2 failed,
/// else ok.
fn complete(kind: Kind, s: &Spec, outcome: u8, f: &F, input: Value) -> (EventType, Value, Option<&'static str>) {
    match outcome {
        0 | 1 => (EventType::Info, input, None),
        2 => (EventType::Fail, input, None),
        _ => {
            let out = ok_value(kind, s, f, &input);
            (EventType::Ok, out, None)
        }
    }
}

/// One object's state in the reference semantics.
#[derive(Clone, Debug, PartialEq)]
enum Obj {
    Lock(bool),
    Set(BTreeSet<i64>),
    Bag(Vec<i64>),
    Fifo(VecDeque<i64>),
    Regs(BTreeMap<String, Value>),
    Reg(Value),
}

fn initial(kind: Kind) -> Obj {
    match kind {
        Kind::Mutex => Obj::Lock(false),
        Kind::Set => Obj::Set(BTreeSet::new()),
        Kind::Unordered => Obj::Bag(Vec::new()),
        Kind::Fifo => Obj::Fifo(VecDeque::new()),
        Kind::Multi => Obj::Regs(BTreeMap::new()),
        Kind::KnossosCas => Obj::Reg(json!(0)),
    }
}

fn role(kind: Kind, op: &Op) -> Role {
    match op.outcome {
        // Knossos: a read that returned nil might have read anything.
        Outcome::Ok if kind == Kind::KnossosCas && op.f == F::Read && op.output.is_null() => Role::Ignored,
        // A transaction of nil reads only: the same, and it changes nothing.
        Outcome::Ok if kind == Kind::Multi && txn_checks_nothing(&op.output) => Role::Ignored,
        Outcome::Ok => Role::Det,
        Outcome::Fail => Role::Ignored,
        _ if op.f == F::Read => Role::Ignored,
        _ => Role::Crashed,
    }
}

fn txn_checks_nothing(txn: &Value) -> bool {
    let items = txn.as_array().expect("a txn");
    items.iter().all(|m| m[0] == "r" && m[2].is_null())
}

fn int(v: &Value) -> i64 {
    v.as_i64().expect("generated values are integers")
}

/// A set read's elements, from either spelling.
fn read_set(v: &Value) -> BTreeSet<i64> {
    let items = v.get("$set").unwrap_or(v);
    items.as_array().expect("a set read").iter().map(int).collect()
}

fn apply_txn(regs: &BTreeMap<String, Value>, txn: &Value, det: bool) -> Option<BTreeMap<String, Value>> {
    let mut regs = regs.clone();
    for m in txn.as_array().expect("a txn") {
        let (f, k, v) = (m[0].as_str().expect("f"), m[1].as_str().expect("key"), &m[2]);
        let now = regs.get(k).cloned().unwrap_or(json!(0));
        match f {
            "w" => {
                regs.insert(k.to_owned(), v.clone());
            }
            // A crashed transaction's reads are unknown; a nil read too.
            _ if !det || v.is_null() => {}
            _ if now != *v => return None,
            _ => {}
        }
    }
    Some(regs)
}

fn apply_reg(cur: &Value, op: &Op, det: bool) -> Vec<Obj> {
    let next = match op.f {
        F::Read => (det && op.output == *cur).then(|| cur.clone()),
        F::Write => Some(op.input.clone()),
        _ => (op.input[0] == *cur).then(|| op.input[1].clone()),
    };
    next.map(Obj::Reg).into_iter().collect()
}

/// Every state `op` may leave `obj` in (none: it cannot take effect).
fn apply_obj(obj: &Obj, op: &Op, det: bool) -> Vec<Obj> {
    let out = &op.output;
    match (obj, op.f.as_str()) {
        (Obj::Lock(held), "acquire") => (!held).then_some(Obj::Lock(true)).into_iter().collect(),
        (Obj::Lock(held), _) => held.then_some(Obj::Lock(false)).into_iter().collect(),
        (Obj::Set(s), "add") => vec![Obj::Set(s.iter().copied().chain([int(&op.input)]).collect())],
        (Obj::Set(s), _) => (read_set(out) == *s).then(|| obj.clone()).into_iter().collect(),
        (Obj::Bag(b), "enqueue") => {
            let mut b = b.clone();
            b.push(int(&op.input));
            b.sort_unstable();
            vec![Obj::Bag(b)]
        }
        (Obj::Bag(b), _) => (0..b.len())
            .filter(|&i| !det || b[i] == int(out))
            .map(|i| Obj::Bag(b.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, e)| *e).collect()))
            .collect(),
        (Obj::Fifo(q), "enqueue") => {
            let mut q = q.clone();
            q.push_back(int(&op.input));
            vec![Obj::Fifo(q)]
        }
        (Obj::Fifo(q), _) if q.front().is_some_and(|h| !det || *h == int(out)) => {
            vec![Obj::Fifo(q.iter().skip(1).copied().collect())]
        }
        (Obj::Fifo(_), _) => vec![],
        (Obj::Regs(r), _) => apply_txn(r, if det { out } else { &op.input }, det)
            .map(Obj::Regs)
            .into_iter()
            .collect(),
        (Obj::Reg(cur), _) => apply_reg(cur, op, det),
    }
}

/// The states of every key.
type State = BTreeMap<u32, Obj>;

fn apply(kind: Kind, state: &State, op: &Op, det: bool) -> Vec<State> {
    let key = op.key.map_or(u32::MAX, |k| k.0);
    let cur = state.get(&key).cloned().unwrap_or_else(|| initial(kind));
    apply_obj(&cur, op, det)
        .into_iter()
        .map(|o| {
            let mut next = state.clone();
            next.insert(key, o);
            next
        })
        .collect()
}

fn model_spec(kind: Kind) -> ModelSpec {
    match kind {
        Kind::Mutex => ModelSpec::Mutex,
        Kind::Set => ModelSpec::Set,
        Kind::Unordered => ModelSpec::UnorderedQueue,
        Kind::Fifo => ModelSpec::FifoQueue,
        Kind::Multi => ModelSpec::MultiRegister {
            initial: json!(0),
            nil_reads: NilReads::Unknown,
        },
        Kind::KnossosCas => ModelSpec::CasRegister {
            initial: json!(0),
            nil_reads: NilReads::Unknown,
        },
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
        role(self, op)
    }

    fn apply(self, state: &State, op: &Op, det: bool) -> Vec<State> {
        apply(self, state, op, det)
    }

    fn model_spec(self) -> ModelSpec {
        model_spec(self)
    }

    fn label(self) -> String {
        format!("{self:?} ")
    }
}

/// Verdicts seen, by crash-heaviness and kind: `[valid, invalid]`.
static SEEN: [[[AtomicUsize; 2]; 6]; 2] = [const { [const { [const { AtomicUsize::new(0) }; 2] }; 6] }; 2];

fn seen(kind: Kind, crash_heavy: bool) -> &'static [AtomicUsize; 2] {
    &SEEN[usize::from(crash_heavy)][KINDS.iter().position(|&x| x == kind).unwrap_or(0)]
}

/// One case: checker (split and unsplit) against brute force, plus
/// evidence; counts its verdict.
fn counted_case(kind: Kind, keys: u8, specs: &[Spec], choices: &[u8], crash_heavy: bool) -> Result<(), TestCaseError> {
    let expected = one_case(kind, keys, specs, choices, crash_heavy)?;
    seen(kind, crash_heavy)[usize::from(!expected)].fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Runs `cases` random cases of `kind` with up to `max_ops` operations,
/// and checks that both verdicts came up often enough.
fn run_kind(kind: Kind, cases: u32, max_ops: usize, crash_heavy: bool) {
    let mut runner = runner(cases);
    let strategy = (
        1u8..=2,
        proptest::collection::vec(spec_strategy(), 1..=max_ops),
        proptest::collection::vec(any::<u8>(), 4..16),
    );
    runner
        .run(&strategy, |(keys, specs, choices)| {
            counted_case(kind, keys, &specs, &choices, crash_heavy)
        })
        .unwrap();
    let counts = seen(kind, crash_heavy);
    let (valid, invalid) = (counts[0].load(Ordering::Relaxed), counts[1].load(Ordering::Relaxed));
    eprintln!("{kind:?} (crash-heavy: {crash_heavy}): {valid} linearizable, {invalid} not");
    assert!(
        valid * 20 > cases as usize,
        "{kind:?}: too few linearizable cases: {valid}"
    );
    assert!(
        invalid * 20 > cases as usize,
        "{kind:?}: too few non-linearizable cases: {invalid}"
    );
}

#[test]
fn mutex_agrees_with_brute_force() {
    run_kind(Kind::Mutex, cases(1500), 7, false);
}

#[test]
fn set_agrees_with_brute_force() {
    run_kind(Kind::Set, cases(1500), 7, false);
}

#[test]
fn unordered_queue_agrees_with_brute_force() {
    run_kind(Kind::Unordered, cases(1500), 7, false);
}

#[test]
fn fifo_queue_agrees_with_brute_force() {
    run_kind(Kind::Fifo, cases(1500), 7, false);
}

#[test]
fn multi_register_agrees_with_brute_force() {
    run_kind(Kind::Multi, cases(1500), 7, false);
}

/// Knossos's cas-register from 0 with nil reads unknown: every history the
/// brute force (Knossos's rule) calls linearizable, the checker does too.
#[test]
fn knossos_cas_register_agrees_with_brute_force() {
    run_kind(Kind::KnossosCas, cases(1500), 7, false);
}

/// Most operations crashed, for every kind: crashed dequeues, acquires and
/// transactions in nearly every case.
#[test]
fn every_model_agrees_with_brute_force_when_most_operations_crashed() {
    for kind in KINDS {
        run_kind(kind, cases(400), 8, true);
    }
}
