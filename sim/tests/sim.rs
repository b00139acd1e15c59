//! The simulation's own promises: the safe settings pass every schedule,
//! each unsafe setting's anomaly is found within its bound of seeds, and a
//! seed replays exactly. `FAULTLINE_SIM_SEEDS` raises the number of safe
//! schedules (default 200).

use faultline_checkers::Validity;
use faultline_histories::JsonlWriter;
use faultline_sim::{history_of, hunt, run_seed, scenario, Scenario};

mod support;
use support::{fail_at, log_hunt, seeds as safe_seeds, threads};

#[test]
fn the_safe_settings_pass_every_schedule_and_their_faults_fire() {
    let seeds = safe_seeds();
    for safe in scenario::all().into_iter().filter(|s| s.expected.is_none()) {
        let h = hunt(&safe, 0, seeds, false, threads());
        log_hunt(safe.name, &h);
        if let Some(r) = &h.found {
            fail_at(safe.name, r.seed, "failed", r.anomaly.as_deref());
        }
        assert_eq!(h.unknown, 0, "every {} history must be decided", safe.name);
        assert!(
            h.faults as u64 >= seeds,
            "faults must fire: {} in {seeds} schedules",
            h.faults
        );
        assert!(
            h.ops as u64 >= seeds * 50,
            "clients must work: {} ops in {seeds} schedules",
            h.ops
        );
    }
}

#[test]
fn each_unsafe_setting_is_caught_within_its_bound() {
    for s in scenario::all().into_iter().filter(|s| s.expected.is_some()) {
        let h = hunt(&s, 0, s.find_within, true, threads());
        let Some(r) = &h.found else {
            panic!(
                "{}: no anomaly in {} seeds; expected {}",
                s.name,
                s.find_within,
                s.expected.unwrap_or("-")
            );
        };
        eprintln!(
            "{}: found after {} seeds ({:.0} schedules/s), rerun with --scenario {} --seed {}: {}",
            s.name,
            h.seeds,
            h.per_second(),
            s.name,
            r.seed,
            r.anomaly.as_deref().unwrap_or("-")
        );
    }
}

#[test]
fn the_session_guarantees_an_unsafe_setting_keeps_hold_in_every_schedule() {
    let seeds = safe_seeds();
    for s in scenario::all().into_iter().filter(|s| !s.must_hold.is_empty()) {
        let h = hunt(&s, 0, seeds, false, threads());
        if let Some(r) = &h.first_broken {
            let what = format!("{} broken", s.must_hold.join(" and "));
            fail_at(s.name, r.seed, &what, r.broken.as_deref());
        }
        assert!(
            h.session_ops as u64 >= seeds * 20,
            "{}: the session checkers must look: {} operations in {seeds} schedules",
            s.name,
            h.session_ops
        );
        assert!(h.shown > 0, "{}: the row's anomaly must show too", s.name);
    }
}

#[test]
fn a_seed_replays_exactly() {
    for s in scenario::all() {
        let a = run_seed(&s, 7);
        let b = run_seed(&s, 7);
        let summary = |r: &faultline_sim::RunReport| {
            let judged = (r.valid, r.anomaly.clone(), r.kinds.clone(), r.broken.clone());
            (r.ops, r.faults, r.events, judged)
        };
        assert_eq!(summary(&a), summary(&b), "{} seed 7 ran twice differently", s.name);
        assert_ne!(
            a.valid,
            Validity::Unknown,
            "{} seed 7 undecided: {:?}",
            s.name,
            a.unknown
        );
    }
}

/// The history file `faultline-sim run --history` would write for a seed.
fn history_bytes(s: &Scenario, seed: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    {
        let mut out = JsonlWriter::new(&mut bytes);
        for event in history_of(s, seed) {
            out.write_unflushed(&event).expect("writing to memory");
        }
    }
    bytes
}

#[test]
fn a_seed_replays_its_history_byte_for_byte_on_any_thread() {
    for s in scenario::all() {
        let first = history_bytes(&s, 11);
        assert!(
            first.len() > 10_000,
            "{}: a history of {} bytes is too small to show anything",
            s.name,
            first.len()
        );
        // Two replays at once on other threads: nothing is shared between
        // worlds, so they write the same bytes as the first.
        let again: Vec<Vec<u8>> = std::thread::scope(|scope| {
            let runs: Vec<_> = (0..2).map(|_| scope.spawn(|| history_bytes(&s, 11))).collect();
            runs.into_iter().map(|r| r.join().expect("replay thread")).collect()
        });
        for bytes in again {
            assert!(bytes == first, "{} seed 11 replayed a different history", s.name);
        }
        assert!(
            history_bytes(&s, 12) != first,
            "{}: seeds 11 and 12 gave the same history: the seed drives nothing",
            s.name
        );
    }
}
