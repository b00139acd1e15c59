//! Driving the workload: one worker per logical client, each with one
//! operation in flight, recording every invoke and completion.
//!
//! A worker that sees `info` retires its process number and goes on under a
//! fresh one (and a fresh session), so no process ever has two operations in
//! flight. Workers pace themselves to their share of the rate, stop at the
//! deadline (letting the operation in flight finish, bounded by the client's
//! timeout) or at once on a stop request (the operation in flight is then
//! recorded as info: we do not know what became of it). After the faults
//! are healed, [`final_reads`] reads every key on every node, marked `final`.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use faultline_histories::{Event, EventType, Process};
use faultline_workloads::{Client, Completion, Generator, Outcome, Request};
use tokio::sync::watch;
use tokio::time::Instant;

use super::store::HistoryLog;

/// Counters the progress line and the report read.
#[derive(Default, Debug)]
pub struct Stats {
    /// Operations invoked.
    pub invoked: AtomicU64,
    /// Completed ok.
    pub ok: AtomicU64,
    /// Completed fail.
    pub fail: AtomicU64,
    /// Completed info.
    pub info: AtomicU64,
}

impl Stats {
    /// Completions so far.
    pub fn completed(&self) -> u64 {
        self.ok.load(Ordering::Relaxed) + self.fail.load(Ordering::Relaxed) + self.info.load(Ordering::Relaxed)
    }

    fn count(&self, o: Outcome) {
        let c = match o {
            Outcome::Ok => &self.ok,
            Outcome::Fail => &self.fail,
            Outcome::Info => &self.info,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// What every worker shares.
#[derive(Clone)]
pub struct WorkerCtx {
    /// The history.
    pub log: Arc<HistoryLog>,
    /// Counters.
    pub stats: Arc<Stats>,
    /// The next unused process number.
    pub next_process: Arc<AtomicU64>,
    /// When to stop invoking.
    pub deadline: Instant,
    /// Turns true to stop at once.
    pub stop: watch::Receiver<bool>,
    /// Time between a worker's invocations; `None` runs flat out.
    pub period: Option<Duration>,
}

fn invoke_event(process: u64, req: &Request) -> Event {
    let mut ev = Event::new(
        0,
        0,
        Process::Client(process),
        EventType::Invoke,
        req.f(),
        req.invoke_value(),
    );
    ev.key = req.key();
    ev
}

fn completion_event(process: u64, req: &Request, c: Completion, is_final: bool) -> Event {
    let (kind, value) = match c.outcome {
        Outcome::Ok => (EventType::Ok, c.value),
        Outcome::Fail => (EventType::Fail, req.invoke_value()),
        Outcome::Info => (EventType::Info, req.invoke_value()),
    };
    let mut ev = Event::new(0, 0, Process::Client(process), kind, req.f(), value);
    ev.key = req.key();
    ev.node = c.node;
    ev.error = c.error;
    ev.is_final = is_final;
    ev
}

/// Sends one operation and records it; returns its outcome.
async fn one_op(
    log: &HistoryLog,
    stats: &Stats,
    client: &mut dyn Client,
    process: u64,
    req: &Request,
    stop: &mut watch::Receiver<bool>,
    is_final: bool,
) -> Outcome {
    let mut inv = invoke_event(process, req);
    inv.is_final = is_final;
    log.append(inv);
    stats.invoked.fetch_add(1, Ordering::Relaxed);
    let c = tokio::select! {
        c = client.call(req) => c,
        _ = stop.wait_for(|s| *s) => Completion::info(None, "interrupted: the test was stopped with the operation in flight"),
    };
    let outcome = c.outcome;
    stats.count(outcome);
    log.append(completion_event(process, req, c, is_final));
    outcome
}

/// Runs one worker until the deadline or a stop; returns the keys it touched.
pub async fn worker(
    mut gen: Generator,
    mut client: Box<dyn Client>,
    mut process: u64,
    mut ctx: WorkerCtx,
) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut next_at = Instant::now();
    loop {
        if let Some(p) = ctx.period {
            next_at = next_at.max(Instant::now() - p) + p;
            if next_at >= ctx.deadline {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(next_at) => {}
                _ = ctx.stop.wait_for(|s| *s) => break,
            }
        }
        if Instant::now() >= ctx.deadline || *ctx.stop.borrow() {
            break;
        }
        let req = gen.next_op();
        for k in req.keys() {
            if !keys.contains(k) {
                keys.insert(k.to_owned());
            }
        }
        let outcome = one_op(
            &ctx.log,
            &ctx.stats,
            client.as_mut(),
            process,
            &req,
            &mut ctx.stop,
            false,
        )
        .await;
        if outcome == Outcome::Info {
            process = ctx.next_process.fetch_add(1, Ordering::Relaxed);
            client.new_session();
        }
    }
    keys
}

/// Reads `reads` on one node with `client` (homed there), marked final.
pub async fn final_reads(
    log: &HistoryLog,
    stats: &Stats,
    mut client: Box<dyn Client>,
    next_process: &AtomicU64,
    reads: &[Request],
    mut stop: watch::Receiver<bool>,
) {
    let mut process = next_process.fetch_add(1, Ordering::Relaxed);
    for req in reads {
        if *stop.borrow() {
            return;
        }
        let o = one_op(log, stats, client.as_mut(), process, req, &mut stop, true).await;
        if o == Outcome::Info {
            process = next_process.fetch_add(1, Ordering::Relaxed);
            client.new_session();
        }
    }
}

/// How often the progress line is printed where stderr is not a terminal
/// (a CI log): often enough to see a run is alive, rarely enough to read.
const PROGRESS_LOG_EVERY_S: u64 = 10;

/// One progress line: the rate is over the interval since the last line
/// printed (`ops_delta` in `interval`), not over the last tick, and the
/// elapsed time stops at the limit (the final reads run past it).
pub fn progress_line(
    elapsed: Duration,
    total: Duration,
    ops_delta: u64,
    interval: Duration,
    stats: &Stats,
    active_faults: usize,
) -> String {
    let rate = ops_delta as f64 / interval.as_secs_f64().max(1e-3);
    format!(
        "[{:>5.1}s/{:.0}s] {:>7.0} ops/s  ok {}  fail {}  info {}  active faults {}",
        elapsed.min(total).as_secs_f64(),
        total.as_secs_f64(),
        rate,
        stats.ok.load(Ordering::Relaxed),
        stats.fail.load(Ordering::Relaxed),
        stats.info.load(Ordering::Relaxed),
        active_faults,
    )
}

/// The line printed when the run ends: every operation, and the mean
/// rate over the workload (at most the limit).
pub fn final_progress_line(elapsed: Duration, total: Duration, stats: &Stats) -> String {
    let secs = elapsed.min(total).as_secs_f64().max(1e-3);
    let completed = stats.completed();
    format!(
        "[done] {completed} ops in {secs:.1} s, mean {:.0} ops/s  ok {}  fail {}  info {}",
        completed as f64 / secs,
        stats.ok.load(Ordering::Relaxed),
        stats.fail.load(Ordering::Relaxed),
        stats.info.load(Ordering::Relaxed),
    )
}

/// Prints a progress line on stderr once a second (in place on a terminal,
/// every ten seconds otherwise) until `done` turns true, then a final line.
pub async fn progress(
    stats: Arc<Stats>,
    active_faults: Arc<std::sync::atomic::AtomicUsize>,
    total: Duration,
    mut done: watch::Receiver<bool>,
) {
    let tty = std::io::stderr().is_terminal();
    let every = Duration::from_secs(if tty { 1 } else { PROGRESS_LOG_EVERY_S });
    let start = Instant::now();
    let (mut last_at, mut last_ops) = (start, 0u64);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(last_at + every) => {}
            _ = done.wait_for(|d| *d) => break,
        }
        let (now, ops) = (Instant::now(), stats.completed());
        let line = progress_line(
            now - start,
            total,
            ops - last_ops,
            now - last_at,
            &stats,
            active_faults.load(Ordering::Relaxed),
        );
        (last_at, last_ops) = (now, ops);
        if tty {
            eprint!("\r{line}\x1b[K");
        } else {
            eprintln!("{line}");
        }
    }
    let end = final_progress_line(start.elapsed(), total, &stats);
    if tty {
        eprintln!("\r{end}\x1b[K");
    } else {
        eprintln!("{end}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(ok: u64) -> Stats {
        let s = Stats::default();
        s.ok.store(ok, Ordering::Relaxed);
        s
    }

    #[test]
    fn the_rate_is_over_the_printed_interval() {
        let s = stats(2500);
        let line = progress_line(
            Duration::from_secs(10),
            Duration::from_secs(30),
            2500,
            Duration::from_secs(10),
            &s,
            1,
        );
        assert!(line.contains("    250 ops/s"), "{line}");
        assert!(line.starts_with("[ 10.0s/30s]"), "{line}");
    }

    #[test]
    fn elapsed_time_stops_at_the_limit_and_the_final_line_gives_the_mean() {
        let s = stats(7500);
        let line = progress_line(
            Duration::from_secs(41),
            Duration::from_secs(30),
            100,
            Duration::from_secs(10),
            &s,
            0,
        );
        assert!(line.starts_with("[ 30.0s/30s]"), "{line}");
        let end = final_progress_line(Duration::from_secs(45), Duration::from_secs(30), &s);
        assert!(end.contains("7500 ops in 30.0 s, mean 250 ops/s"), "{end}");
    }
}
