//! The classic one- and two-operation anomalies, each planted in a large
//! linearizable history, are reported with exactly their one or two
//! operations: a read of a value nobody wrote (garbage read), a read of a
//! value written only after the read ended (future read), a read of a value
//! overwritten before the read began (stale read). Registers with unique
//! values (the polynomial check) and key-value strings both: with unique
//! values (translated to a register, the polynomial check) and with one
//! value written twice (the search).

use faultline_checkers::linear::{check, Config, ModelSpec, NilReads};
use faultline_checkers::{Validity, Verdict};
use faultline_histories::{Event, EventType, History, Process, F};
use serde_json::{json, Value};

/// splitmix64, so every run builds the same history.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

/// One simulated operation.
#[derive(Clone, Debug)]
struct SimOp {
    f: F,
    key: u64,
    input: Value,
    output: Value,
    call: usize,
    ret: usize,
    applied: bool,
}

/// A linearizable history of `ops` reads and writes of unique values on
/// `keys` keys by `processes` processes, each taking effect at one step
/// between its invoke and its completion. `string` values are for the kv
/// model, numbers for registers (which start at null; kv keys at "").
fn simulate(ops: usize, processes: usize, keys: u64, string: bool, seed: u64) -> Vec<SimOp> {
    let mut rng = Rng(seed);
    let initial = if string { json!("") } else { Value::Null };
    let mut state = vec![initial; keys as usize];
    let mut slots: Vec<Option<usize>> = vec![None; processes];
    let (mut done, mut step, mut fresh) = (Vec::<SimOp>::new(), 0usize, 0u64);
    while done.len() < ops || slots.iter().any(Option::is_some) {
        let p = rng.below(processes as u64) as usize;
        step += 1;
        match slots[p] {
            None if done.len() + slots.iter().flatten().count() < ops => {
                fresh += 1;
                let key = rng.below(keys);
                let (f, input) = match rng.below(2) {
                    0 => (F::Read, Value::Null),
                    _ if string => (F::Write, json!(format!("v{fresh}"))),
                    _ => (F::Write, json!(fresh)),
                };
                done.push(SimOp {
                    f,
                    key,
                    input,
                    output: Value::Null,
                    call: step,
                    ret: 0,
                    applied: false,
                });
                slots[p] = Some(done.len() - 1);
            }
            None => {}
            Some(i) if !done[i].applied => {
                let op = &mut done[i];
                op.applied = true;
                let k = op.key as usize;
                match op.f {
                    F::Read => op.output = state[k].clone(),
                    _ => {
                        state[k] = op.input.clone();
                        op.output = op.input.clone();
                    }
                }
            }
            Some(i) => {
                done[i].ret = step;
                slots[p] = None;
            }
        }
    }
    done
}

/// The history of `ops`, events in the order of their steps, each op on a
/// process of its own (the simulation's processes reuse none).
fn history(ops: &[SimOp]) -> History {
    let mut events: Vec<(usize, Event)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let p = Process::Client(i as u64);
        let key = op.key as i64;
        events.push((
            op.call,
            Event::new(0, 0, p, EventType::Invoke, op.f.clone(), op.input.clone()).with_key(key),
        ));
        events.push((
            op.ret,
            Event::new(0, 0, p, EventType::Ok, op.f.clone(), op.output.clone()).with_key(key),
        ));
    }
    events.sort_by_key(|(step, _)| *step);
    let events = events.into_iter().enumerate().map(|(i, (_, mut e))| {
        e.index = i as u64;
        e.time = i as u64;
        e
    });
    History::from_events(events).expect("well formed")
}

fn register() -> Config {
    Config {
        model: ModelSpec::CasRegister {
            initial: Value::Null,
            nil_reads: NilReads::Value,
        },
        ..Config::default()
    }
}

/// The one anomaly's operations, by their invoke event index.
fn proof(v: &Verdict) -> Vec<u64> {
    assert_eq!(v.valid, Validity::Invalid, "{v:?}");
    let mut ops: Vec<u64> = v.anomalies[0].ops.iter().map(|o| o.index).collect();
    ops.sort_unstable();
    ops
}

/// The invoke event index of `ops[i]` in `history(ops)`: each op has a
/// process of its own.
fn invoke_index(h: &History, i: usize) -> u64 {
    let p = Process::Client(i as u64);
    h.ops
        .iter()
        .find(|o| o.process == p)
        .expect("the op is in the history")
        .invoke_index
}

/// A read in the second half, of a key that saw writes.
fn late_read(ops: &[SimOp]) -> usize {
    (ops.len() / 2..ops.len())
        .find(|&i| ops[i].f == F::Read && !ops[i].output.is_null())
        .expect("a late read")
}

/// Makes one write of the key of `ops[r]` whose value nobody read write
/// the value of another write of that key instead: the history stays what
/// it was (nobody saw the value it replaces), but its values repeat, so
/// the key goes to the search.
fn repeat_a_value(ops: &mut [SimOp], r: usize) {
    let key = ops[r].key;
    let read = |v: &Value| ops.iter().any(|o| o.f == F::Read && &o.output == v);
    let writes: Vec<usize> = (0..ops.len())
        .filter(|&i| ops[i].f == F::Write && ops[i].key == key)
        .collect();
    let unseen = *writes
        .iter()
        .find(|&&w| !read(&ops[w].input))
        .expect("a write nobody read");
    let other = *writes.iter().find(|&&w| w != unseen).expect("another write");
    let value = ops[other].input.clone();
    (ops[unseen].input, ops[unseen].output) = (value.clone(), value);
}

#[test]
fn a_garbage_read_is_reported_alone() {
    let kv = Config {
        model: ModelSpec::Kv,
        ..Config::default()
    };
    for (string, repeat, config) in [(false, false, register()), (true, false, kv.clone()), (true, true, kv)] {
        let mut ops = simulate(20_000, 20, if string { 100 } else { 1 }, string, 7);
        let r = late_read(&ops);
        if repeat {
            repeat_a_value(&mut ops, r);
        }
        assert_eq!(check(&history(&ops), &config).valid, Validity::Valid);
        ops[r].output = if string { json!("never written") } else { json!(-1) };
        let h = history(&ops);
        let v = check(&h, &config);
        assert_eq!(
            proof(&v),
            vec![invoke_index(&h, r)],
            "string values: {string}, one repeated: {repeat}"
        );
        let polynomial = v.anomalies[0].details.get("algorithm").is_some();
        assert_eq!(polynomial, !repeat, "{:?}", v.anomalies[0].details);
    }
}

#[test]
fn a_read_from_the_future_is_reported_alone() {
    let mut ops = simulate(20_000, 20, 1, false, 11);
    let r = late_read(&ops);
    let w = (0..ops.len())
        .find(|&w| ops[w].f == F::Write && ops[w].call > ops[r].ret)
        .expect("a write invoked after the read");
    ops[r].output = ops[w].input.clone();
    let h = history(&ops);
    assert_eq!(proof(&check(&h, &register())), vec![invoke_index(&h, r)]);
}

#[test]
fn a_stale_read_is_reported_with_the_write_that_overwrote_it() {
    let mut ops = simulate(20_000, 20, 1, false, 13);
    let r = late_read(&ops);
    let ended_before = |i: usize, t: usize| ops[i].f == F::Write && ops[i].ret < t;
    let w2 = (0..ops.len())
        .filter(|&i| ended_before(i, ops[r].call))
        .max_by_key(|&i| ops[i].ret)
        .expect("w2");
    let w1 = (0..ops.len())
        .filter(|&i| ended_before(i, ops[w2].call))
        .max_by_key(|&i| ops[i].ret)
        .expect("w1");
    ops[r].output = ops[w1].input.clone();
    let h = history(&ops);
    let v = check(&h, &register());
    let got = proof(&v);
    assert_eq!(got.len(), 2, "{v:?}");
    let read = invoke_index(&h, r);
    assert!(got.contains(&read), "{got:?} misses the read {read}");
    let other = got.iter().find(|&&i| i != read).expect("the other op");
    let other = h.ops.iter().find(|o| o.invoke_index == *other).expect("in the history");
    assert_eq!(other.f, F::Write);
    assert!(
        other.complete_index < Some(read),
        "the write ended before the read began"
    );
    assert!(
        v.anomalies[0].explanation.contains("stale read"),
        "{}",
        v.anomalies[0].explanation
    );
}
