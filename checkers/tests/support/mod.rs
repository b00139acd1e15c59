//! What the brute-force tests (`linear_brute.rs`, `linear_brute_models.rs`)
//! share: the random operations and how they are scheduled into a history,
//! the brute-force checker that tries every subset of crashed operations in
//! every order that respects real time, the check of a printed
//! linearization, and one case of checker against brute force. Each test
//! brings its own reference semantics as a [`Reference`]; none of this
//! shares code with the models.

use faultline_checkers::linear::{check, Config, ModelSpec};
use faultline_checkers::Validity;
use faultline_histories::{Event, EventType, History, Op, Process, F};
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestRunner};
use serde_json::Value;
use std::collections::BTreeMap;

/// One generated operation, before scheduling.
#[derive(Clone, Debug)]
pub struct Spec {
    pub f: u8,
    pub key: u8,
    pub val: u8,
    pub out: u8,
    pub outcome: u8,
}

pub fn spec_strategy() -> impl Strategy<Value = Spec> {
    (any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(f, key, val, out, outcome)| Spec {
        f,
        key,
        val,
        out,
        outcome,
    })
}

/// How many cases to run: `FAULTLINE_PROPTEST_CASES`, else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("FAULTLINE_PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default)
}

/// A runner of `cases` cases that persists no failures.
pub fn runner(cases: u32) -> TestRunner {
    TestRunner::new(PtConfig {
        cases,
        failure_persistence: None,
        ..PtConfig::default()
    })
}

/// How the brute-force checker sees an operation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    Det,
    Crashed,
    Ignored,
}

/// One test's kinds of object: how their operations are generated and the
/// reference semantics the brute force runs them on.
pub trait Reference: Copy + std::fmt::Debug {
    /// The states of every key.
    type State: Clone + Default;

    /// The function and argument of a spec.
    fn f_and_input(self, s: &Spec) -> (F, Value);

    /// The completion of an operation whose (crash-heavy adjusted) outcome
    /// is `outcome` (never 3, pending): its type, value and error.
    fn complete(self, s: &Spec, outcome: u8, f: &F, input: Value) -> (EventType, Value, Option<&'static str>);

    fn role(self, op: &Op) -> Role;

    /// Every state `op` may leave `state` in (none: it cannot take effect).
    fn apply(self, state: &Self::State, op: &Op, det: bool) -> Vec<Self::State>;

    /// The checker's model of this kind.
    fn model_spec(self) -> ModelSpec;

    /// What a failed verdict's message begins with.
    fn label(self) -> String;
}

/// Schedules the specs into events: at each choice, invoke the next
/// operation on an idle process or complete one in flight.
pub fn build<K: Reference>(kind: K, specs: &[Spec], choices: &[u8], keys: u8, crash_heavy: bool) -> History {
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
            let (f, input) = kind.f_and_input(&specs[next]);
            let key = i64::from(specs[next].key % keys);
            events.push(Event::new(index, index, Process::Client(p), EventType::Invoke, f, input).with_key(key));
            in_flight.push((p, next));
            next += 1;
            continue;
        }
        let (p, i) = in_flight.remove(usize::from(choice) % in_flight.len());
        let s = &specs[i];
        let (f, input) = kind.f_and_input(s);
        let key = i64::from(s.key % keys);
        // Crash-heavy histories turn 4 of the 10 outcomes into info/pending.
        let outcome = match s.outcome % 10 {
            o @ 4..=7 if crash_heavy => [0, 3][usize::from(o) % 2],
            o => o,
        };
        if outcome == 3 {
            // Pending: never completes; the process is retired.
            idle.push(next_process);
            next_process += 1;
            continue;
        }
        let (ty, value, error) = kind.complete(s, outcome, &f, input);
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

/// Whether some subset of crashed ops and some order of it and all
/// determinate ops respects real time and the semantics.
pub fn brute<K: Reference>(kind: K, ops: &[&Op]) -> bool {
    let roles: Vec<Role> = ops.iter().map(|o| kind.role(o)).collect();
    let mut used = vec![false; ops.len()];
    dfs(kind, ops, &roles, &mut used, &K::State::default())
}

fn dfs<K: Reference>(kind: K, ops: &[&Op], roles: &[Role], used: &mut [bool], state: &K::State) -> bool {
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
        for next in kind.apply(state, ops[i], roles[i] == Role::Det) {
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
pub fn is_linearization<K: Reference>(kind: K, h: &History, order: &[u64]) -> bool {
    let by_index: BTreeMap<u64, &Op> = h.ops.iter().map(|o| (o.invoke_index, o)).collect();
    let seq: Vec<&Op> = order.iter().map(|i| by_index[i]).collect();
    let mut states = vec![K::State::default()];
    for (pos, op) in seq.iter().enumerate() {
        // Nothing later in the order may have completed before op began.
        if seq[pos + 1..]
            .iter()
            .any(|l| l.complete_index.is_some_and(|c| c < op.invoke_index) && kind.role(l) == Role::Det)
        {
            return false;
        }
        let det = kind.role(op) == Role::Det;
        states = states.iter().flat_map(|s| kind.apply(s, op, det)).collect();
        if states.is_empty() {
            return false;
        }
    }
    let keys: Vec<_> = seq.iter().map(|o| o.key).collect();
    h.ops
        .iter()
        .filter(|o| kind.role(o) == Role::Det && keys.contains(&o.key))
        .all(|o| order.contains(&o.invoke_index))
}

/// One case: checker (split and unsplit) against brute force, plus
/// evidence. Returns the brute force's verdict (true: linearizable).
pub fn one_case<K: Reference>(
    kind: K,
    keys: u8,
    specs: &[Spec],
    choices: &[u8],
    crash_heavy: bool,
) -> Result<bool, TestCaseError> {
    let h = build(kind, specs, choices, keys, crash_heavy);
    let all: Vec<&Op> = h.ops.iter().collect();
    let expected = brute(kind, &all);
    for split in [true, false] {
        let config = Config {
            model: kind.model_spec(),
            split_by_key: split,
            threads: 1,
            want_linearization: true,
            ..Config::default()
        };
        let v = check(&h, &config);
        let want = if expected { Validity::Valid } else { Validity::Invalid };
        prop_assert_eq!(v.valid, want, "{}split={} history: {:#?}", kind.label(), split, h.ops);
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
    Ok(expected)
}
