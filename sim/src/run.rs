//! Running one seed, and hunting over seeds: build the world, run it,
//! judge the history with the linearizability checker.
//!
//! Promise: a report says what was judged (operations, faults that took
//! effect) and the verdict with its evidence; a history the checker could
//! not decide is reported unknown, never valid.

use crate::scenario::Scenario;
use faultline_checkers::linear::{self, ModelSpec, NilReads};
use faultline_checkers::session;
use faultline_checkers::Validity;
use faultline_histories::History;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The checker's budget for one history (they are small: a second is
/// plenty, and a bound keeps a pathological one from stalling a hunt).
const CHECK_TIME_LIMIT: Duration = Duration::from_secs(10);
const CHECK_MEMORY_BYTES: usize = 256 << 20;

/// What one seed did.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The seed (rerun with `faultline-sim run --scenario S --seed N`).
    pub seed: u64,
    /// Client operations invoked.
    pub ops: usize,
    /// Faults that took effect.
    pub faults: usize,
    /// Events the world handled.
    pub events: u64,
    /// The linearizability verdict.
    pub valid: Validity,
    /// Invalid: what the checker (or the election check) found.
    pub anomaly: Option<String>,
    /// Unknown: why.
    pub unknown: Option<String>,
    /// A session guarantee the scenario must keep that this history broke
    /// (or could not be judged), said in a sentence.
    pub broken: Option<String>,
    /// Operations the must-hold session checkers judged (transactions,
    /// for a transactional scenario, whose row's model must hold).
    pub session_ops: usize,
    /// Transactional scenarios: every anomaly type the checker found.
    pub kinds: Vec<String>,
    /// Whether the history shows what the scenario looks for: for register
    /// scenarios any invalid history, for transactional ones a type the
    /// row names (any, for a row that names none).
    pub shows: bool,
    /// An anomaly the scenario expects besides non-linearizability
    /// (`must_find`) that this history did not show, said in a sentence.
    pub missing: Option<String>,
}

impl RunReport {
    /// Whether this seed showed every anomaly its scenario expects.
    pub fn found(&self) -> bool {
        self.shows
    }
}

impl RunReport {
    /// The report of `seed`'s run of `ops` operations, not judged yet.
    fn unjudged(seed: u64, ops: usize, finished: &crate::world::Finished) -> RunReport {
        RunReport {
            seed,
            ops,
            faults: finished.faults,
            events: finished.handled,
            valid: Validity::Unknown,
            anomaly: None,
            unknown: None,
            broken: None,
            session_ops: 0,
            kinds: Vec::new(),
            shows: false,
            missing: None,
        }
    }
}

/// Runs `scenario` under `seed` and judges its history.
pub fn run_seed(scenario: &Scenario, seed: u64) -> RunReport {
    let mut finished = crate::world::run_world(scenario, seed);
    let (ops, history) = history_and_ops(seed, std::mem::take(&mut finished.events));
    let mut report = RunReport::unjudged(seed, ops, &finished);
    let split = finished.split_epoch.map(|s| format!("election safety: {s}"));
    match &scenario.txn {
        Some(row) => {
            crate::txn_judge::judge(row, &history, &mut report);
            // Two leaders in one epoch break a fenced row's model too.
            if let Some(split) = split {
                report.valid = Validity::Invalid;
                report.shows = true;
                report.anomaly = Some(split.clone());
                report.broken = Some(split);
            }
        }
        None => judge_registers(scenario, &history, split, &mut report),
    }
    report
}

/// Judges a register schedule: linearizability (or the election check's
/// `split`), then the session guarantees the scenario must keep and the
/// anomalies it must find.
fn judge_registers(scenario: &Scenario, history: &History, split: Option<String>, report: &mut RunReport) {
    let initial = serde_json::Value::Null;
    let nil_reads = NilReads::Value;
    let config = linear::Config {
        // Reads of several keys at once are judged with the writes in one
        // search (Knossos's multi-register), as the lab judges them.
        model: if scenario.multi_key {
            ModelSpec::MultiRegister { initial, nil_reads }
        } else {
            ModelSpec::CasRegister { initial, nil_reads }
        },
        split_by_key: !scenario.multi_key,
        time_limit: CHECK_TIME_LIMIT,
        memory_limit_bytes: CHECK_MEMORY_BYTES,
        threads: 1,
        want_linearization: false,
        // Every key searched to the end: a replayed seed gives the same
        // anomalies, whatever the machine's timing (the first-anomaly
        // grace is timed).
        all_anomalies: true,
    };
    let verdict = linear::check(history, &config);
    (report.broken, report.session_ops) = judge_sessions(scenario, history);
    let found;
    (report.missing, found) = judge_findings(scenario, history);
    report.valid = verdict.valid;
    report.unknown = verdict.unknown_reason.clone();
    report.anomaly = verdict.anomalies.first().map(|a| {
        let key = a.key.as_deref().unwrap_or("-");
        format!("{} on key {key} ({} ops): {}", a.kind, a.ops.len(), a.explanation)
    });
    if let Some(split) = split {
        report.valid = Validity::Invalid;
        report.anomaly = Some(split);
    }
    report.shows = report.valid == Validity::Invalid && report.missing.is_none();
    if let Some(found) = found {
        let linear = report.anomaly.take().unwrap_or_else(|| "linearizable".into());
        report.anomaly = Some(format!("{linear}; {found}"));
    }
}

/// The anomalies `scenario` must find besides non-linearizability, judged
/// on `history`: the first one missing, and what the found ones say.
fn judge_findings(scenario: &Scenario, history: &History) -> (Option<String>, Option<String>) {
    if scenario.must_find.is_empty() {
        return (None, None);
    }
    let verdicts = session::check_all(history, &scenario.must_find).expect("scenarios name known session checkers");
    let missing = verdicts
        .iter()
        .find(|(_, v)| v.valid != Validity::Invalid)
        .map(|(name, v)| format!("{name} {:?}: no anomaly ({} operations judged)", v.valid, v.ops));
    let found: Vec<String> = verdicts
        .iter()
        .filter_map(|(name, v)| {
            let a = v.anomalies.first()?;
            Some(format!(
                "{name}: {} on key {} ({})",
                a.kind,
                a.key.as_deref().unwrap_or("-"),
                a.explanation
            ))
        })
        .collect();
    (missing, (!found.is_empty()).then(|| found.join("; ")))
}

/// The schedule's history and how many operations it invoked.
fn history_and_ops(seed: u64, events: Vec<faultline_histories::Event>) -> (usize, History) {
    let ops = events
        .iter()
        .filter(|e| e.kind == faultline_histories::EventType::Invoke)
        .count();
    let history = History::from_events(events)
        .unwrap_or_else(|e| panic!("seed {seed}: the simulation wrote a malformed history: {e}"));
    (ops, history)
}

/// The session guarantees `scenario` must keep, judged on `history`: the
/// first one broken or undecided, and the operations judged.
fn judge_sessions(scenario: &Scenario, history: &History) -> (Option<String>, usize) {
    if scenario.must_hold.is_empty() {
        return (None, 0);
    }
    let verdicts = session::check_all(history, &scenario.must_hold).expect("scenarios name known session checkers");
    let ops = verdicts.iter().map(|(_, v)| v.ops).sum();
    let broken = verdicts
        .into_iter()
        .find(|(_, v)| v.valid != Validity::Valid)
        .map(|(name, v)| {
            let why = v.anomalies.first().map(|a| a.explanation.clone());
            format!("{name} {:?}: {}", v.valid, why.or(v.unknown_reason).unwrap_or_default())
        });
    (broken, ops)
}

/// The history `scenario` records under `seed` (the same every time: a
/// run replays from its seed), for `faultline check` or a report.
pub fn history_of(scenario: &Scenario, seed: u64) -> Vec<faultline_histories::Event> {
    crate::world::run_world(scenario, seed).events
}

/// What a hunt over seeds found.
#[derive(Debug, Clone)]
pub struct Hunt {
    /// Seeds run.
    pub seeds: u64,
    /// The first seed whose history showed what the scenario looks for
    /// (for register scenarios: was invalid), if any.
    pub found: Option<RunReport>,
    /// Seeds the checker could not decide.
    pub unknown: u64,
    /// Seeds whose history was invalid.
    pub invalid: u64,
    /// Seeds whose history showed what the scenario looks for.
    pub shown: u64,
    /// Transactional scenarios: in how many seeds each anomaly type was
    /// found.
    pub kinds: std::collections::BTreeMap<String, u64>,
    /// Faults that took effect, over all seeds.
    pub faults: usize,
    /// Operations judged, over all seeds.
    pub ops: usize,
    /// Seeds that broke a session guarantee the scenario must keep.
    pub broken: u64,
    /// The first of them.
    pub first_broken: Option<RunReport>,
    /// Operations the must-hold session checkers judged, over all seeds.
    pub session_ops: usize,
    /// Wall-clock time of the hunt.
    pub elapsed: Duration,
    /// CPU time its threads ran, where the system tells it (Linux): on a
    /// shared machine the wall clock also counts other processes' turns.
    pub cpu: Option<Duration>,
}

impl Hunt {
    /// Schedules run (and judged) per second.
    pub fn per_second(&self) -> f64 {
        self.seeds as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Schedules per second of CPU time: what one thread does on a core
    /// of its own.
    pub fn per_cpu_second(&self) -> Option<f64> {
        self.cpu.map(|cpu| self.seeds as f64 / cpu.as_secs_f64().max(1e-9))
    }
}

/// The calling thread's CPU time so far (Linux's schedstat: nanoseconds
/// on a CPU first), or None where it is not available.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Runs seeds `first..first + max` on `threads` threads, stopping at the
/// first invalid seed when `stop_at_first` (the lowest such seed, whatever
/// the threads' timing, so the figure replays).
pub fn hunt(scenario: &Scenario, first: u64, max: u64, stop_at_first: bool, threads: usize) -> Hunt {
    let start = Instant::now();
    let next = AtomicU64::new(first);
    let lowest_found = AtomicU64::new(u64::MAX);
    let reports = Mutex::new(Vec::new());
    let cpu = Mutex::new(Some(Duration::ZERO));
    let run_seeds = || loop {
        let seed = next.fetch_add(1, Ordering::Relaxed);
        if seed >= first + max || (stop_at_first && seed > lowest_found.load(Ordering::Relaxed)) {
            return;
        }
        let report = run_seed(scenario, seed);
        if report.shows {
            lowest_found.fetch_min(seed, Ordering::Relaxed);
        }
        reports.lock().unwrap_or_else(|e| e.into_inner()).push(report);
    };
    let work = || {
        let before = thread_cpu();
        run_seeds();
        let used = before.zip(thread_cpu()).map(|(b, a)| a.saturating_sub(b));
        let mut total = cpu.lock().unwrap_or_else(|e| e.into_inner());
        *total = total.zip(used).map(|(t, u)| t + u);
    };
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(work);
        }
    });
    let mut reports = reports.into_inner().unwrap_or_else(|e| e.into_inner());
    reports.sort_by_key(|r| r.seed);
    let found_seed = lowest_found.into_inner();
    if stop_at_first {
        reports.retain(|r| r.seed <= found_seed);
    }
    let cpu = cpu.into_inner().unwrap_or_else(|e| e.into_inner());
    summarize(reports, start.elapsed(), cpu)
}

/// The hunt over these seeds' reports.
fn summarize(reports: Vec<RunReport>, elapsed: Duration, cpu: Option<Duration>) -> Hunt {
    let count = |v: Validity| reports.iter().filter(|r| r.valid == v).count() as u64;
    let mut kinds = std::collections::BTreeMap::new();
    for kind in reports.iter().flat_map(|r| &r.kinds) {
        *kinds.entry(kind.clone()).or_insert(0) += 1;
    }
    Hunt {
        seeds: reports.len() as u64,
        unknown: count(Validity::Unknown),
        invalid: count(Validity::Invalid),
        faults: reports.iter().map(|r| r.faults).sum(),
        ops: reports.iter().map(|r| r.ops).sum(),
        broken: reports.iter().filter(|r| r.broken.is_some()).count() as u64,
        first_broken: reports.iter().find(|r| r.broken.is_some()).cloned(),
        session_ops: reports.iter().map(|r| r.session_ops).sum(),
        shown: reports.iter().filter(|r| r.shows).count() as u64,
        kinds,
        found: reports.iter().find(|r| r.shows).cloned(),
        elapsed,
        cpu,
    }
}
