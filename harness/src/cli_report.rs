//! `faultline report DIR`: (re)makes a run's `report.html` and `junit.xml`
//! from what its store folder holds, and the `--report FILE` of
//! `faultline check`.
//!
//! The verdicts shown are the run's own, read from `results.json`, so a
//! report made today shows what the nightly run decided; only a folder
//! without `results.json` (a history copied from elsewhere) is checked
//! here, with the same checkers `faultline check` picks. Exit code 0 when
//! the files were written, 3 when they could not be; the verdict's own
//! exit code is `faultline check`'s job.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use faultline_checkers::Verdict;
use faultline_harness::check::{self, CheckOptions, Report};
use faultline_histories::import::{self, Format};
use faultline_report::store::{read_json, verdicts_from_results};
use faultline_report::{render_html, write_run_reports, ReportInput, RunMeta};

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A run's store folder (`store/<test>/<timestamp>`, holding history.jsonl).
    dir: PathBuf,
}

/// Runs the command; returns the exit code.
pub fn run(args: ReportArgs) -> anyhow::Result<u8> {
    let dir = &args.dir;
    let history_path = dir.join("history.jsonl");
    let history = faultline_histories::read_history_file(&history_path)
        .with_context(|| format!("reading {}", history_path.display()))?;
    let verdicts = store_verdicts(dir, &history)?;
    write_run_reports(dir, &history, &verdicts)?;
    outln!("{}", dir.join("report.html").display());
    outln!("{}", dir.join("junit.xml").display());
    Ok(0)
}

/// The run's verdicts from `results.json`, or a fresh check when there is none.
fn store_verdicts(dir: &Path, history: &faultline_histories::History) -> anyhow::Result<BTreeMap<String, Verdict>> {
    if let Some(results) = read_json(&dir.join("results.json"))? {
        return Ok(verdicts_from_results(&results)?);
    }
    let report = check::check_history(history, Format::Jsonl, &CheckOptions::default())?;
    Ok(report.checkers)
}

/// Writes the HTML report of one checked file (`faultline check --report`).
pub fn write_check_report(out: &Path, file: &Path, opts: &CheckOptions, report: &Report) -> anyhow::Result<()> {
    let (history, _) = import::read_any(file, opts.format, &faultline_histories::ReadLimits::default())?;
    // The history's own warnings are shown from the history itself.
    let meta = RunMeta {
        settings: vec![
            ("file".into(), file.display().to_string()),
            ("format".into(), report.format.clone()),
        ],
        unchecked: report.unchecked.clone(),
        ..RunMeta::default()
    };
    let page = render_html(&ReportInput {
        history: &history,
        verdicts: &report.checkers,
        meta: &meta,
    });
    std::fs::write(out, page).with_context(|| format!("writing {}", out.display()))
}
