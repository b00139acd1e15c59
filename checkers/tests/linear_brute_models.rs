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

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};

use faultline_checkers::linear::{check, Config, ModelSpec, NilReads};
use faultline_checkers::Validity;
use faultline_histories::{Event, EventType, History, Op, Outcome, Process, F};
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestRunner};
use serde_json::{json, Value};

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

/// One generated operation, before scheduling.
#[derive(Clone, Debug)]
struct Spec {
    f: u8,
    key: u8,
    val: u8,
    out: u8,
    outcome: u8,
}

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
            let p = idle.remove(usize::from(choice) % idle.len());
            let (f, input) = f_and_input(kind, &specs[next]);
            let key = i64::from(specs[next].key % keys);
            events.push(Event::new(index, index, Process::Client(p), EventType::Invoke, f, input).with_key(key));
            in_flight.push((p, next));
            next += 1;
            continue;
        }
        let (p, i) = in_flight.remove(usize::from(choice) % in_flight.len());
        let s = &specs[i];
        let (f, input) = f_and_input(kind, s);
        let key = i64::from(s.key % keys);
        let outcome = match s.outcome % 10 {
            o @ 4..=7 if crash_heavy => [0, 3][usize::from(o) % 2],
            o => o,
        };
        let (ty, value) = match outcome {
            0 | 1 => (EventType::Info, input),
            2 => (EventType::Fail, input),
            3 => {
                // Pending: never completes; the process is retired.
                idle.push(next_process);
                next_process += 1;
                continue;
            }
            _ => {
                let out = ok_value(kind, s, &f, &input);
                (EventType::Ok, out)
            }
        };
        events.push(Event::new(index, index, Process::Client(p), ty, f, value).with_key(key));
        if ty == EventType::Info {
            idle.push(next_process);
            next_process += 1;
        } else {
            idle.push(p);
        }
    }
    History::from_events(events).expect("generated histories are well formed")
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

/// How the brute-force checker sees an operation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Det,
    Crashed,
    Ignored,
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

/// Whether some subset of crashed ops and some order of it and all
/// determinate ops respects real time and the semantics.
fn brute(kind: Kind, ops: &[&Op]) -> bool {
    let roles: Vec<Role> = ops.iter().map(|o| role(kind, o)).collect();
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
        let blocked = pending_det
            .iter()
            .any(|&d| d != i && ops[d].complete_index.is_some_and(|c| c < ops[i].invoke_index));
        if blocked {
            continue;
        }
        for next in apply(kind, state, ops[i], roles[i] == Role::Det) {
            used[i] = true;
            let ok = dfs(kind, ops, roles, used, &next);
            used[i] = false;
            if ok {
                return true;
            }
        }
    }
    false
}

/// Checks that `order` (invoke indices of one key) is a linearization.
fn is_linearization(kind: Kind, h: &History, order: &[u64]) -> bool {
    let by_index: BTreeMap<u64, &Op> = h.ops.iter().map(|o| (o.invoke_index, o)).collect();
    let seq: Vec<&Op> = order.iter().map(|i| by_index[i]).collect();
    let mut states = vec![State::new()];
    for (pos, op) in seq.iter().enumerate() {
        if seq[pos + 1..]
            .iter()
            .any(|l| l.complete_index.is_some_and(|c| c < op.invoke_index) && role(kind, l) == Role::Det)
        {
            return false;
        }
        let det = role(kind, op) == Role::Det;
        states = states.iter().flat_map(|s| apply(kind, s, op, det)).collect();
        if states.is_empty() {
            return false;
        }
    }
    let keys: Vec<_> = seq.iter().map(|o| o.key).collect();
    h.ops
        .iter()
        .filter(|o| role(kind, o) == Role::Det && keys.contains(&o.key))
        .all(|o| order.contains(&o.invoke_index))
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

fn spec_strategy() -> impl Strategy<Value = Spec> {
    (any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(f, key, val, out, outcome)| Spec {
        f,
        key,
        val,
        out,
        outcome,
    })
}

/// Verdicts seen, by crash-heaviness and kind: `[valid, invalid]`.
static SEEN: [[[AtomicUsize; 2]; 6]; 2] = [const { [const { [const { AtomicUsize::new(0) }; 2] }; 6] }; 2];

fn seen(kind: Kind, crash_heavy: bool) -> &'static [AtomicUsize; 2] {
    &SEEN[usize::from(crash_heavy)][KINDS.iter().position(|&x| x == kind).unwrap_or(0)]
}

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
        prop_assert_eq!(v.valid, want, "{:?} split={} history: {:#?}", kind, split, h.ops);
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
    seen(kind, crash_heavy)[usize::from(!expected)].fetch_add(1, Ordering::Relaxed);
    Ok(())
}

fn cases(default: u32) -> u32 {
    std::env::var("FAULTLINE_PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default)
}

/// Runs `cases` random cases of `kind` with up to `max_ops` operations,
/// and checks that both verdicts came up often enough.
fn run_kind(kind: Kind, cases: u32, max_ops: usize, crash_heavy: bool) {
    let mut runner = TestRunner::new(PtConfig {
        cases,
        failure_persistence: None,
        ..PtConfig::default()
    });
    let strategy = (
        1u8..=2,
        proptest::collection::vec(spec_strategy(), 1..=max_ops),
        proptest::collection::vec(any::<u8>(), 4..16),
    );
    runner
        .run(&strategy, |(keys, specs, choices)| {
            one_case(kind, keys, &specs, &choices, crash_heavy)
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
