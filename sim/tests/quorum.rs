//! The leaderless and multi-leader scenarios (the lab's rows 10 to 12):
//! their faults take effect, and each finds every anomaly its row expects,
//! named by the checker that proves it, within its bound of seeds. (The
//! general promises, replay included, are `sim.rs`'s, over every scenario.)

use faultline_sim::{hunt, run_seed, scenario, Scenario};

mod support;
use support::threads;

fn quorum_scenarios() -> Vec<Scenario> {
    let all = scenario::all();
    let quorum: Vec<Scenario> = all.into_iter().filter(|s| s.settings.contains("mode=")).collect();
    assert!(
        quorum.len() >= 4,
        "the leaderless rows are in the list: {}",
        quorum.len()
    );
    quorum
}

#[test]
fn each_leaderless_row_shows_every_anomaly_it_expects_within_its_bound() {
    for s in quorum_scenarios() {
        let h = hunt(&s, 0, s.find_within, true, threads());
        let Some(r) = &h.found else {
            panic!("{}: not every expected anomaly in {} seeds", s.name, s.find_within);
        };
        let anomaly = r.anomaly.as_deref().unwrap_or_default();
        assert!(anomaly.contains("nonlinearizable"), "{}: {anomaly}", s.name);
        for checker in &s.must_find {
            assert!(
                anomaly.contains(checker),
                "{}: {checker} not named in {anomaly}",
                s.name
            );
        }
        if !s.faults.is_empty() {
            assert!(h.faults > 0, "{}: no fault took effect in {} seeds", s.name, h.seeds);
        }
        eprintln!("{}: found at seed {} ({} seeds): {anomaly}", s.name, r.seed, h.seeds);
    }
}

#[test]
fn partitions_and_clock_skews_take_effect_in_every_schedule() {
    let s = scenario::named("leaderless-skew-partitions").expect("the scenario of row 10");
    for seed in 0..20 {
        let r = run_seed(&s, seed);
        assert!(r.faults >= 1, "seed {seed}: no fault took effect");
        assert!(r.ops >= 50, "seed {seed}: the clients did little: {} ops", r.ops);
    }
}

#[test]
fn without_faults_the_w1_r1_row_still_finds_its_stale_reads_in_every_seed_tried() {
    let s = scenario::named("leaderless-w1r1").expect("the scenario of row 11");
    let h = hunt(&s, 0, 20, false, threads());
    assert_eq!(h.faults, 0, "row 11 runs without faults");
    assert!(h.shown >= 15, "stale reads in only {} of 20 seeds", h.shown);
}
