//! The parts of `faultline campaign` that concern its shard and its store:
//! `--list` (the tests a shard takes, none run), and running the tests one
//! at a time so that each one's store folder is printed as it starts and as
//! it ends, with the campaign's own folder (`campaign.json`) rewritten
//! after every test. The flags and the table are in `cli_run`.

use std::path::Path;

use faultline_harness::run::campaign::record::{CampaignRecord, ListedTest};
use faultline_harness::run::campaign::shard::Shard;
use faultline_harness::run::campaign::{self, PlannedTest, Row};
use faultline_harness::run::interrupt::Interrupt;
use faultline_harness::run::RunEnv;

/// Prints the tests `shard` takes, one per line (or as JSON), for `--list`.
pub fn list(file: &Path, shard: Shard, total: usize, tests: &[ListedTest], json: bool) -> anyhow::Result<u8> {
    if json {
        outln!("{}", serde_json::to_string_pretty(tests)?);
        return Ok(0);
    }
    outln!(
        "campaign {} shard {shard}: {} of {total} tests (numbered from 0 in file order; shard I of N takes number % N == I-1)",
        file.display(),
        tests.len()
    );
    for t in tests {
        let what = t
            .skip
            .as_ref()
            .map_or_else(|| "run".to_owned(), |r| format!("skip: {r}"));
        outln!("{}\t{}\tseed {}\t{what}", t.position, t.name, t.seed);
    }
    Ok(0)
}

/// Runs `tests` one after another, printing where each one's store folder
/// is, and adds each one's rows to `record`. A stop request ends the
/// campaign after the test in progress, as `run_campaign` does, and its
/// rows name the signal.
pub fn run_tests(
    rt: &tokio::runtime::Runtime,
    tests: &[(usize, PlannedTest)],
    env: &RunEnv,
    interrupt: &Interrupt,
    record: &mut CampaignRecord,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for (k, (position, t)) in tests.iter().enumerate() {
        if !*interrupt.receiver().borrow() {
            announce(k + 1, tests.len(), *position, t, env);
        }
        let got = rt.block_on(campaign::run_campaign(
            std::slice::from_ref(t),
            env,
            interrupt,
            report_test,
        ));
        // The record is a convenience for readers of the store: a store that
        // stopped taking writes fails the runs themselves, loudly.
        if let Err(e) = record.add_rows(&got) {
            eprintln!("faultline: could not update {}: {e}", record.dir.display());
        }
        rows.extend(got);
    }
    if let Err(e) = record.finish() {
        eprintln!("faultline: could not update {}: {e}", record.dir.display());
    }
    rows
}

/// Says which test starts and under which folder its run will be.
fn announce(k: usize, n: usize, position: usize, t: &PlannedTest, env: &RunEnv) {
    match &t.skip {
        Some(reason) => eprintln!("faultline: [{k}/{n}] test {position} {}: skipped ({reason})", t.name),
        None => eprintln!(
            "faultline: [{k}/{n}] test {position} {}: running, store folder under {}",
            t.name,
            env.store_root.join(&t.name).display()
        ),
    }
}

/// Says how a test ended and where its run's folder is.
fn report_test(t: &PlannedTest, rows: &[Row]) {
    let ok = rows.iter().all(|r| r.holds);
    let outcome: Vec<String> = rows.iter().map(|r| format!("{}={}", r.checker, r.observed)).collect();
    eprintln!(
        "faultline: {} {} ({})",
        t.name,
        if ok { "holds" } else { "DOES NOT HOLD" },
        outcome.join(" ")
    );
    if let Some(store) = rows.iter().find_map(|r| r.store.as_deref()) {
        eprintln!("faultline: {} store: {store}", t.name);
    }
}
