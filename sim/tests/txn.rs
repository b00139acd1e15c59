//! The isolation rows in the simulation (REPLICATION_LAB.md, T1-T7): each
//! unsafe row keeps its consistency model in every schedule and shows the
//! anomaly types its table names, never those it rules out; a
//! transactional history is the harness's format, read back from its file
//! to the same verdict. `FAULTLINE_SIM_SEEDS` raises the number of
//! schedules (default 200). The safe rows (T3, T4) and the bounds of the
//! unsafe ones are judged with the register rows in `sim.rs`.

use faultline_histories::{read_history_file, EventType, JsonlWriter, ReadLimits, F};
use faultline_sim::{history_of, hunt, run_seed, scenario, Scenario, LOST_APPEND};
use faultline_txn::{check, check_txns, Config, Model};

mod support;
use support::{fail_at, log_hunt, seeds, threads};

fn transactional() -> Vec<Scenario> {
    let all: Vec<Scenario> = scenario::all().into_iter().filter(|s| s.txn.is_some()).collect();
    let rows: Vec<&str> = all.iter().filter_map(|s| s.txn.as_ref()).map(|t| t.row).collect();
    assert_eq!(rows, ["T1", "T2", "T3", "T4", "T5", "T6", "T7"], "the isolation rows");
    all
}

#[test]
fn each_unsafe_isolation_row_keeps_its_model_and_shows_only_its_anomaly_types() {
    let seeds = seeds();
    for s in transactional().into_iter().filter(|s| s.expected.is_some()) {
        let row = s.txn.clone().expect("transactional");
        let h = hunt(&s, 0, seeds, false, threads());
        log_hunt(&format!("{} ({})", s.name, row.row), &h);
        if let Some(r) = &h.first_broken {
            fail_at(s.name, r.seed, "broke its row", r.broken.as_deref());
        }
        assert_eq!(h.unknown, 0, "{}: every history must be decided", s.name);
        assert!(
            h.session_ops as u64 >= seeds * 100,
            "{}: the checker must look: {} transactions in {seeds} schedules",
            s.name,
            h.session_ops
        );
        // What the table says must appear does, in more than a lucky seed;
        // what it says must never appear never does.
        let shown: u64 = row.shows.iter().filter_map(|k| h.kinds.get(*k)).sum();
        assert!(
            row.shows.is_empty() || shown >= seeds / 10,
            "{}: {:?} in only {shown} of {seeds} schedules (found {:?})",
            s.name,
            row.shows,
            h.kinds
        );
        assert!(
            h.shown >= seeds / 10,
            "{}: the anomaly in only {} schedules",
            s.name,
            h.shown
        );
        for never in row.never {
            assert!(
                !h.kinds.contains_key(*never),
                "{}: {never} found: {:?}",
                s.name,
                h.kinds
            );
        }
    }
}

#[test]
fn the_serializable_rows_judge_every_transaction_and_find_nothing_under_any_fault() {
    let seeds = seeds();
    for s in transactional().into_iter().filter(|s| s.expected.is_none()) {
        let h = hunt(&s, 0, seeds, false, threads());
        eprintln!(
            "{}: {} schedules, {} faults, {} transactions judged, types {:?}",
            s.name, h.seeds, h.faults, h.session_ops, h.kinds
        );
        assert!(h.kinds.is_empty(), "{}: found {:?}", s.name, h.kinds);
        assert_eq!((h.invalid, h.unknown, h.broken), (0, 0, 0), "{}", s.name);
        assert!(h.faults as u64 >= seeds, "{}: faults must fire: {}", s.name, h.faults);
        assert!(
            h.session_ops as u64 >= seeds * 100,
            "{}: the checker must look: {} transactions",
            s.name,
            h.session_ops
        );
    }
}

#[test]
fn snapshot_isolation_shows_write_skew_and_never_g_single() {
    let s = scenario::named("txn-snapshot").expect("T2");
    let h = hunt(&s, 0, 50, false, threads());
    assert!(h.kinds.contains_key("G2-item"), "no write skew: {:?}", h.kinds);
    assert!(
        !h.kinds.contains_key("G-single"),
        "read skew under snapshot isolation: {:?}",
        h.kinds
    );
    let r = h.found.expect("found");
    assert!(r.kinds.iter().any(|k| k == "G2-item"), "{:?}", r.kinds);
}

#[test]
fn follower_reads_show_only_cycles_that_need_session_or_real_time_order() {
    let s = scenario::named("txn-follower-reads").expect("T5");
    let h = hunt(&s, 0, 50, false, threads());
    assert!(h.shown > 0, "no stale snapshot found: {:?}", h.kinds);
    for kind in h.kinds.keys() {
        assert!(
            kind.ends_with("-process") || kind.ends_with("-realtime"),
            "{kind}: a cycle of data dependencies alone under serializable follower reads"
        );
    }
}

/// The history file `faultline-sim run --history` writes for a seed.
fn write_history(s: &Scenario, seed: u64, path: &std::path::Path) {
    let mut out = JsonlWriter::create(path).expect("create the history file");
    for event in history_of(s, seed) {
        out.write_event(&event).expect("write an event");
    }
}

#[test]
fn a_transactional_history_is_the_harness_format_and_rechecks_from_its_file() {
    let dir = tempfile::tempdir().expect("a temp dir");
    for s in transactional() {
        let path = dir.path().join(format!("{}.jsonl", s.name));
        write_history(&s, 3, &path);
        let h = read_history_file(&path).expect("the history reads back");
        assert!(
            h.ops.iter().all(|o| o.f == F::Txn && o.key.is_none()),
            "{}: every operation is a keyless txn",
            s.name
        );
        let saw_appends = h.ops.iter().any(|o| {
            o.outcome == faultline_histories::Outcome::Ok
                && o.output.as_array().is_some_and(|ms| {
                    ms.iter()
                        .any(|m| m[0] == "r" && m[2].as_array().is_some_and(|l| !l.is_empty()))
                })
        });
        assert!(saw_appends, "{}: no read saw an appended value", s.name);
        let strict = Config {
            models: vec![Model::StrictSerializable],
            ..Config::default()
        };
        let from_history = check(&h, &strict).expect("checkable");
        let streamed = faultline_txn::stream::read_file(&path, &ReadLimits::default()).expect("streams");
        let from_stream = check_txns(&streamed.txns, &strict).expect("checkable");
        // The lost appends are the simulation's own finding, beside Elle's.
        let ran = run_seed(&s, 3);
        let elle: Vec<String> = ran.kinds.iter().filter(|k| *k != LOST_APPEND).cloned().collect();
        assert_eq!(from_history.anomaly_types, elle, "{}: the file's verdict", s.name);
        assert_eq!(from_stream.anomaly_types, elle, "{}: the streamed file's", s.name);
        let completions = history_of(&s, 3)
            .iter()
            .filter(|e| matches!(e.kind, EventType::Fail | EventType::Info))
            .all(|e| {
                e.value
                    .as_array()
                    .is_some_and(|ms| ms.iter().all(|m| m[0] != "r" || m[2].is_null()))
            });
        assert!(
            completions,
            "{}: a fail or info completion records the invocation",
            s.name
        );
    }
}
