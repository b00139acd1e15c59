//! What every simulation test file shares: how many schedules to run and
//! on how many threads.

/// Schedules per scenario: `FAULTLINE_SIM_SEEDS`, 200 by default.
#[allow(dead_code, reason = "each test file is its own crate; not all of them call it")]
pub fn seeds() -> u64 {
    std::env::var("FAULTLINE_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

/// One hunting thread per core.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Fails the test for `scenario` at `seed`, saying `what` went wrong and
/// how to replay the seed.
#[allow(dead_code, reason = "each test file is its own crate; not all of them call it")]
pub fn fail_at(scenario: &str, seed: u64, what: &str, why: Option<&str>) -> ! {
    panic!(
        "{scenario}: {what} at seed {seed} (rerun: cargo run --release -p faultline-sim -- run --scenario {scenario} --seed {seed}): {}",
        why.unwrap_or("-")
    )
}

/// Prints what a hunt over `scenario` did, for the test's log.
#[allow(dead_code, reason = "each test file is its own crate; not all of them call it")]
pub fn log_hunt(scenario: &str, h: &faultline_sim::Hunt) {
    eprintln!(
        "{scenario}: {} schedules in {:.2}s ({:.0}/s), {} ops, {} faults, {} unknown, {} shown, {} judged by the must-hold checkers, types {:?}",
        h.seeds,
        h.elapsed.as_secs_f64(),
        h.per_second(),
        h.ops,
        h.faults,
        h.unknown,
        h.shown,
        h.session_ops,
        h.kinds
    );
}
