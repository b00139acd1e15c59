//! One hot key: a register with unique written values, many processes.
//!
//! - `hot_key_20p_1000`: 20 processes, 1,000 operations (reads, writes,
//!   compare-and-sets), checked under the default budget (target: < 50 ms;
//!   the search alone said unknown at 1 GiB);
//! - `hot_key_64p_1m`: 64 processes, 1,000,000 operations, 1% crashed
//!   (half of them having taken effect), checked once, printing check time
//!   and peak resident memory (target: < 5 s, < 1 GB); then the same
//!   history with one garbage read planted, whose proof must be that read.
//!
//! Reproduce: `cargo bench -p faultline-checkers --bench hot_key`. Each
//! history is a seeded simulation of an atomic register, so it is
//! linearizable and the verdict must be valid.

use std::time::{Duration, Instant};

use faultline_checkers::linear::{check, Config, ModelSpec, NilReads};
use faultline_checkers::Validity;
use faultline_histories::{Event, EventType, History, Outcome, Process, F};
use serde_json::{json, Value};

/// splitmix64.
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

/// An operation in flight.
struct InFlight {
    process: u64,
    f: F,
    input: Value,
    output: Option<Value>,
    crash: bool,
}

/// The register's events: `ops` operations by `clients` processes, each
/// taking effect at one step between its invoke and completion; `crash_pct`
/// percent crash (`info`), half of those having taken effect. Writes and
/// compare-and-sets write fresh values.
fn simulate(ops: u64, clients: u64, crash_pct: u64, seed: u64) -> History {
    let mut rng = Rng(seed);
    let mut state = Value::Null;
    let mut slots: Vec<Option<InFlight>> = (0..clients).map(|_| None).collect();
    let mut process: Vec<u64> = (0..clients).collect();
    let (mut next_process, mut invoked, mut fresh) = (clients, 0u64, 0u64);
    let mut events = Vec::with_capacity(ops as usize * 2);
    let mut push = |p: u64, kind, f: &F, v: Value| {
        let i = events.len() as u64;
        events.push(Event::new(i, i, Process::Client(p), kind, f.clone(), v).with_key("hot"));
    };
    while invoked < ops || slots.iter().any(Option::is_some) {
        let c = rng.below(clients) as usize;
        match slots[c].take() {
            None if invoked < ops => {
                invoked += 1;
                fresh += 1;
                let (f, input) = match rng.below(10) {
                    0..=4 => (F::Read, Value::Null),
                    5..=8 => (F::Write, json!(fresh)),
                    _ => (F::Cas, json!([state.clone(), fresh])),
                };
                push(process[c], EventType::Invoke, &f, input.clone());
                let crash = rng.below(100) < crash_pct;
                slots[c] = Some(InFlight {
                    process: process[c],
                    f,
                    input,
                    output: None,
                    crash,
                });
            }
            None => {}
            Some(mut op) if op.output.is_none() => {
                let applies = !op.crash || rng.below(2) == 0;
                op.output = Some(match op.f {
                    F::Read => state.clone(),
                    F::Write if applies => {
                        state = op.input.clone();
                        op.input.clone()
                    }
                    F::Cas if applies && op.input[0] == state => {
                        state = op.input[1].clone();
                        op.input.clone()
                    }
                    // A compare-and-set that found another value fails.
                    _ => Value::Bool(false),
                });
                slots[c] = Some(op);
            }
            Some(op) => {
                let out = op.output.unwrap_or(Value::Null);
                if op.crash {
                    push(op.process, EventType::Info, &op.f, op.input);
                    process[c] = next_process;
                    next_process += 1;
                } else if out == Value::Bool(false) {
                    push(op.process, EventType::Fail, &op.f, op.input);
                } else {
                    push(op.process, EventType::Ok, &op.f, out);
                }
            }
        }
    }
    History::from_events(events).expect("well formed")
}

fn config() -> Config {
    Config {
        model: ModelSpec::CasRegister {
            initial: Value::Null,
            nil_reads: NilReads::Value,
        },
        ..Config::default()
    }
}

/// Peak resident memory of this process, from `/proc/self/status`.
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

fn small() {
    let h = simulate(1_000, 20, 0, 1);
    let mut best = Duration::MAX;
    for _ in 0..20 {
        let t = Instant::now();
        let v = check(&h, &config());
        best = best.min(t.elapsed());
        assert_eq!(v.valid, Validity::Valid, "{:?}", v.unknown_reason);
    }
    println!(
        "hot_key_20p_1000: {} ops, best of 20 checks {best:.2?} (target < 50 ms)",
        h.ops.len()
    );
}

fn large() {
    let t = Instant::now();
    let h = simulate(1_000_000, 64, 1, 2);
    let crashed = h.ops.iter().filter(|o| o.outcome == Outcome::Info).count();
    println!(
        "hot_key_64p_1m: simulated {} ops ({crashed} crashed) in {:.2?}; peak RSS before the check {:?} MiB",
        h.ops.len(),
        t.elapsed(),
        peak_rss_mib()
    );
    let t = Instant::now();
    let v = check(&h, &config());
    println!(
        "hot_key_64p_1m: check {:.2?} (target < 5 s), verdict {:?}, peak RSS {:?} MiB (target < 1024)",
        t.elapsed(),
        v.valid,
        peak_rss_mib()
    );
    assert_eq!(v.valid, Validity::Valid, "{:?}", v.unknown_reason);
    planted_garbage_read(h);
}

/// The same history with one read in the middle reading a value nobody
/// wrote: found as fast, and the proof is that single read.
fn planted_garbage_read(mut h: History) {
    let middle = h.ops.len() / 2;
    let Some(op) = h.ops[middle..]
        .iter_mut()
        .find(|o| o.f == F::Read && o.outcome == Outcome::Ok)
    else {
        return;
    };
    op.output = json!("never written");
    let t = Instant::now();
    let v = check(&h, &config());
    let proof = v.anomalies.first().map_or(0, |a| a.ops.len());
    println!(
        "hot_key_64p_1m with one garbage read: check {:.2?}, verdict {:?}, proof of {proof} op(s)",
        t.elapsed(),
        v.valid
    );
    assert_eq!((v.valid, proof), (Validity::Invalid, 1));
}

fn main() {
    small();
    large();
}
