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
