//! Histories from a simulated replicated store, to show that the session
//! checkers accept what a correct design does and catch what a broken one
//! does.
//!
//! The store is a single leader with an ordered log, acknowledged at once
//! (asynchronous replication), and followers that apply the log late by
//! random amounts. Reads are routed in one of three ways, as
//! `REPLICATION_LAB.md` describes:
//! - `Sticky`: each session always reads the same follower. Monotonic reads
//!   hold (a follower only moves forward); read-your-writes does not.
//! - `Lsn`: a replica that has applied at least the session's last seen log
//!   position, else the leader. Read-your-writes and monotonic reads hold.
//! - `Any`: any replica. Both break.
//!
//! With one log, consistent prefix, monotonic writes and writes-follow-reads
//! hold under every routing (a replica that has a write has everything the
//! log put before it). Proptest drives
//! the correct variants and asserts the guarantee never breaks; a fixed set
//! of seeds drives the broken ones and asserts the anomaly shows up at least
//! sometimes, so the tests are not vacuous.

use faultline_checkers::session;
use faultline_checkers::{Validity, Verdict};
use faultline_histories::{Event, EventType, History, Process, F};
use faultline_testkit::{Below, TestRng};
use proptest::prelude::*;
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug)]
enum Route {
    Sticky,
    Lsn,
    Any,
}

const REPLICAS: usize = 3;
const CLIENTS: u64 = 3;
const KEYS: usize = 2;

struct Sim {
    rng: TestRng,
    route: Route,
    lists: bool,
    /// The leader's log: (key, value).
    log: Vec<(usize, i64)>,
    /// How much of the log each replica has applied; replica 0 leads.
    applied: [usize; REPLICAS],
    /// Each session's last seen log position.
    seen: [usize; CLIENTS as usize],
    events: Vec<Event>,
    time: u64,
}

impl Sim {
    fn new(seed: u64, route: Route, lists: bool) -> Sim {
        Sim {
            rng: faultline_testkit::rng(seed),
            route,
            lists,
            log: Vec::new(),
            applied: [0; REPLICAS],
            seen: [0; CLIENTS as usize],
            events: Vec::new(),
            time: 0,
        }
    }

    fn run(mut self, ops: usize) -> History {
        for _ in 0..ops {
            self.replicate();
            let c = self.rng.below(CLIENTS);
            match self.rng.below(10) {
                0..=3 => self.write(c),
                4 => self.snapshot(c),
                _ => self.read(c),
            }
        }
        History::from_events(self.events).expect("the simulator writes valid histories")
    }

    /// A random follower applies a few more log entries.
    fn replicate(&mut self) {
        let r = 1 + self.rng.below(REPLICAS as u64 - 1) as usize;
        let step = self.rng.below(3) as usize;
        self.applied[r] = (self.applied[r] + step).min(self.log.len());
    }

    fn emit(&mut self, c: u64, f: F, key: Option<usize>, invoke: Value, ok: Value, node: usize) {
        let index = self.events.len() as u64;
        let mut inv = Event::new(
            index,
            self.time,
            Process::Client(c),
            EventType::Invoke,
            f.clone(),
            invoke,
        );
        let mut done = Event::new(index + 1, self.time + 1, Process::Client(c), EventType::Ok, f, ok);
        if let Some(k) = key {
            inv = inv.with_key(format!("k{k}").as_str());
            done = done.with_key(format!("k{k}").as_str());
        }
        done.node = Some(format!("n{node}"));
        self.events.extend([inv, done]);
        self.time += 2;
    }

    fn write(&mut self, c: u64) {
        let k = self.rng.below(KEYS as u64) as usize;
        let v = self.log.len() as i64 + 1;
        self.log.push((k, v));
        self.applied[0] = self.log.len();
        self.seen[c as usize] = self.log.len();
        let f = if self.lists { F::Append } else { F::Write };
        self.emit(c, f, Some(k), json!(v), json!(v), 0);
    }

    /// The replica a read of session `c` goes to.
    fn replica(&mut self, c: u64) -> usize {
        match self.route {
            Route::Sticky => 1 + (c as usize % (REPLICAS - 1)),
            Route::Any => self.rng.below(REPLICAS as u64) as usize,
            Route::Lsn => {
                let r = self.rng.below(REPLICAS as u64) as usize;
                if self.applied[r] >= self.seen[c as usize] {
                    r
                } else {
                    0
                }
            }
        }
    }

    /// Key `k` as replica `r` has it.
    fn state(&self, r: usize, k: usize) -> Value {
        let mut applied = self.log[..self.applied[r]].iter().filter(|(key, _)| *key == k);
        if self.lists {
            Value::Array(applied.map(|(_, v)| json!(v)).collect())
        } else {
            applied.next_back().map_or(Value::Null, |(_, v)| json!(v))
        }
    }

    fn read(&mut self, c: u64) {
        let k = self.rng.below(KEYS as u64) as usize;
        let r = self.replica(c);
        let v = self.state(r, k);
        self.seen[c as usize] = self.seen[c as usize].max(self.applied[r]);
        self.emit(c, F::Read, Some(k), Value::Null, v, r);
    }

    /// A read of every key at once, from one replica.
    fn snapshot(&mut self, c: u64) {
        let r = self.replica(c);
        let invoke: Vec<Value> = (0..KEYS).map(|k| json!(["r", format!("k{k}"), null])).collect();
        let ok: Vec<Value> = (0..KEYS)
            .map(|k| json!(["r", format!("k{k}"), self.state(r, k)]))
            .collect();
        self.seen[c as usize] = self.seen[c as usize].max(self.applied[r]);
        self.emit(c, F::Txn, None, Value::Array(invoke), Value::Array(ok), r);
    }
}

const OPS: usize = 60;

fn verdict(h: &History, name: &str) -> Verdict {
    let mut all = session::check_all(h, &[name]).expect("known name");
    all.pop().expect("one verdict").1
}

/// Valid and (for the session guarantees) actually looked.
fn holds(h: &History, name: &str) -> Result<(), TestCaseError> {
    let v = verdict(h, name);
    prop_assert_eq!(
        v.valid,
        Validity::Valid,
        "{}: {:?}",
        name,
        v.anomalies.first().map(|a| &a.explanation)
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn sticky_routing_never_shows_a_monotonic_reads_anomaly(seed in any::<u64>(), lists in any::<bool>()) {
        let h = Sim::new(seed, Route::Sticky, lists).run(OPS);
        holds(&h, "monotonic-reads")?;
        holds(&h, "consistent-prefix")?;
    }

    #[test]
    fn lsn_routing_never_shows_read_your_writes_or_monotonic_reads_anomalies(seed in any::<u64>(), lists in any::<bool>()) {
        let h = Sim::new(seed, Route::Lsn, lists).run(OPS);
        holds(&h, "read-your-writes")?;
        holds(&h, "monotonic-reads")?;
        holds(&h, "monotonic-writes")?;
        holds(&h, "consistent-prefix")?;
    }

    #[test]
    fn one_leader_log_never_breaks_consistent_prefix_or_write_order(seed in any::<u64>(), lists in any::<bool>()) {
        let h = Sim::new(seed, Route::Any, lists).run(OPS);
        holds(&h, "consistent-prefix")?;
        holds(&h, "monotonic-writes")?;
        holds(&h, "writes-follow-reads")?;
    }
}

/// How many of `runs` seeded histories of a routing show `name` invalid, and
/// how many it judged at all.
fn caught(route: Route, lists: bool, name: &str, runs: u64) -> (usize, usize) {
    let (mut invalid, mut looked) = (0, 0);
    for seed in 0..runs {
        let h = Sim::new(seed, route, lists).run(OPS);
        let v = verdict(&h, name);
        invalid += usize::from(v.valid == Validity::Invalid);
        looked += usize::from(v.details["applicable"] == Value::Bool(true));
    }
    (invalid, looked)
}

#[test]
fn broken_routings_are_caught_sometimes() {
    for lists in [false, true] {
        let (mr, _) = caught(Route::Any, lists, "monotonic-reads", 40);
        assert!(
            mr > 0,
            "reads from any replica never broke monotonic reads (lists: {lists})"
        );
        let (ryw, _) = caught(Route::Any, lists, "read-your-writes", 40);
        assert!(
            ryw > 0,
            "reads from any replica never broke read-your-writes (lists: {lists})"
        );
        let (ryw, _) = caught(Route::Sticky, lists, "read-your-writes", 40);
        assert!(
            ryw > 0,
            "sticky followers never broke read-your-writes (lists: {lists})"
        );
    }
}

#[test]
fn the_correct_routings_were_judged_not_skipped() {
    for lists in [false, true] {
        let (bad, looked) = caught(Route::Lsn, lists, "read-your-writes", 20);
        assert_eq!(bad, 0);
        assert!(looked >= 18, "read-your-writes judged only {looked} of 20 histories");
        let (bad, looked) = caught(Route::Sticky, lists, "monotonic-reads", 20);
        assert_eq!(bad, 0);
        assert!(looked >= 18, "monotonic-reads judged only {looked} of 20 histories");
        let (_, looked) = caught(Route::Sticky, lists, "consistent-prefix", 20);
        assert!(looked >= 18, "consistent-prefix judged only {looked} of 20 histories");
    }
}
