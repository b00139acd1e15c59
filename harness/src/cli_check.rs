//! `faultline check`: what the user typed, validated into
//! [`CheckOptions`], then one report per file on stdout (a human summary, or
//! one JSON object per line with `--json`). Every number is checked with a
//! message naming its flag before anything runs; a closed stdout ends the
//! output quietly and the exit code is still the verdict's.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use faultline_checkers::{Validity, Verdict};
use faultline_harness::check::{self, CheckOptions, ModelName, Report};
use faultline_harness::check_txn;
use faultline_harness::models;
use faultline_histories::import::Format;
use faultline_histories::ReadLimits;
use serde_json::{json, Value};

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Input format: auto, jsonl, jepsen-edn, porcupine-etcd, porcupine-kv.
    #[arg(long, default_value = "auto")]
    format: String,
    /// Model for linearizability: register, cas-register, multi-register, mutex, set,
    /// unordered-queue, fifo-queue, kv, list (inferred when omitted).
    #[arg(long)]
    model: Option<String>,
    /// Every register's value before any write, as JSON (`0`, `"x"`); null by default.
    #[arg(long)]
    initial: Option<String>,
    /// What a read that returns null means: `unknown` (constrains nothing: Knossos's rule,
    /// the default for Jepsen EDN) or `value` (a read of null: the default otherwise).
    #[arg(long, value_name = "unknown|value")]
    nil_reads: Option<String>,
    /// Time budget of each search, in seconds; past it the verdict is unknown.
    #[arg(long, default_value_t = 60.0)]
    time_limit: f64,
    /// Memory budget of each search, in MiB; past it the verdict is unknown.
    #[arg(long, default_value_t = 1024)]
    memory_limit_mib: u64,
    /// The longest line of input, in MiB; a longer one is an error naming it.
    #[arg(long, default_value_t = ReadLimits::DEFAULT_MAX_LINE_MIB as u64)]
    max_line_mib: u64,
    /// Checkers to run, comma-separated; `auto` is every checker that
    /// applies (the default, unless the history's header names some).
    #[arg(long, value_delimiter = ',')]
    checkers: Option<Vec<String>>,
    /// Consistency model the transactional checker judges (repeatable):
    /// read-uncommitted, read-committed, repeatable-read, snapshot-isolation,
    /// strong-session-snapshot-isolation, strong-snapshot-isolation, serializable,
    /// strong-session-serializable, strict-serializable (the default).
    #[arg(long = "consistency-model", value_name = "MODEL")]
    consistency_models: Vec<String>,
    /// Print one linearization of each valid key.
    #[arg(long)]
    linearization: bool,
    /// Search every key to the end and shrink every proof as far as it goes,
    /// instead of stopping shortly after the first anomaly is proven.
    #[arg(long)]
    all_anomalies: bool,
    /// One JSON object per file, on its own line.
    #[arg(long)]
    json: bool,
    /// Also write the HTML report of the checked file here (one file only).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// History files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// Turns what the user typed into checked options.
fn options(args: &CheckArgs) -> anyhow::Result<CheckOptions> {
    let format = match args.format.as_str() {
        "auto" => None,
        f => Some(f.parse::<Format>().map_err(|e| anyhow::anyhow!("--format: {e}"))?),
    };
    let model = match &args.model {
        Some(m) => Some(m.parse::<ModelName>().map_err(|e| anyhow::anyhow!("--model: {e}"))?),
        None => None,
    };
    let initial = args.initial.as_deref().map_or(Value::Null, models::parse_initial);
    let nil_reads = match &args.nil_reads {
        Some(s) => Some(models::parse_nil_reads(s).map_err(anyhow::Error::msg)?),
        None => None,
    };
    Ok(CheckOptions {
        format,
        model,
        initial,
        nil_reads,
        time_limit: time_limit(args.time_limit)?,
        memory_limit_bytes: memory_limit_bytes(args.memory_limit_mib)?,
        limits: read_limits(args.max_line_mib)?,
        checkers: args.checkers.clone(),
        want_linearization: args.linearization,
        consistency_models: consistency_models(&args.consistency_models)?,
        all_anomalies: args.all_anomalies,
    })
}

/// `--consistency-model`, each checked by name.
fn consistency_models(names: &[String]) -> anyhow::Result<Vec<faultline_txn::Model>> {
    names
        .iter()
        .map(|n| {
            n.parse::<faultline_txn::Model>()
                .map_err(|e| anyhow::anyhow!("--consistency-model: {e}"))
        })
        .collect()
}

/// The longest `--time-limit`: a week, far past any search worth waiting for.
const TIME_LIMIT_MAX_S: f64 = 7.0 * 24.0 * 3600.0;
/// The largest `--memory-limit-mib`: 1 TiB.
const MEMORY_LIMIT_MAX_MIB: u64 = 1 << 20;

/// `--time-limit`: positive, finite, at most [`TIME_LIMIT_MAX_S`].
fn time_limit(seconds: f64) -> anyhow::Result<Duration> {
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= TIME_LIMIT_MAX_S) {
        bail!(
            "--time-limit must be a number of seconds above 0 and at most {TIME_LIMIT_MAX_S} (a week), got {seconds}"
        );
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// `--memory-limit-mib` in bytes: at least 1 MiB, at most [`MEMORY_LIMIT_MAX_MIB`].
fn memory_limit_bytes(mib: u64) -> anyhow::Result<usize> {
    if !(1..=MEMORY_LIMIT_MAX_MIB).contains(&mib) {
        bail!("--memory-limit-mib must be from 1 to {MEMORY_LIMIT_MAX_MIB} (1 TiB), got {mib}");
    }
    usize::try_from(mib << 20)
        .map_err(|_| anyhow::anyhow!("--memory-limit-mib {mib} does not fit this machine's memory"))
}

/// The longest line a reader may hold: from 1 MiB to the memory budget's
/// ceiling, since a line is held whole while it is parsed.
fn read_limits(mib: u64) -> anyhow::Result<ReadLimits> {
    if !(1..=MEMORY_LIMIT_MAX_MIB).contains(&mib) {
        bail!("--max-line-mib must be from 1 to {MEMORY_LIMIT_MAX_MIB} (1 TiB), got {mib}");
    }
    usize::try_from(mib)
        .ok()
        .and_then(ReadLimits::with_max_line_mib)
        .ok_or_else(|| anyhow::anyhow!("--max-line-mib {mib} does not fit this machine's memory"))
}

/// Runs the command; returns the exit code.
pub fn run(args: CheckArgs) -> anyhow::Result<u8> {
    let opts = options(&args)?;
    if args.report.is_some() && args.files.len() != 1 {
        bail!(
            "--report writes the report of one history; got {} files",
            args.files.len()
        );
    }
    let mut validities = Vec::new();
    let mut any_error = false;
    for file in &args.files {
        let result = check::check_file(file, &opts);
        // Each file's text is made whole, then written at once: a reader
        // that closes the pipe stops the output, not the checking.
        let mut text = Vec::new();
        match result {
            Ok(report) => {
                if let Some(path) = &args.report {
                    crate::cli_report::write_check_report(path, file, &opts, &report)?;
                }
                validities.push(report.valid);
                if args.json {
                    print_json(&mut text, &report)?;
                } else {
                    print_human(&mut text, &report)?;
                }
            }
            Err(e) => {
                any_error = true;
                if args.json {
                    writeln!(text, "{}", json!({"file": file, "error": e.to_string()}))?;
                } else {
                    eprintln!("faultline: {}: {e}", file.display());
                }
            }
        }
        crate::stdout::write_all(&text);
    }
    Ok(check::exit_code(validities, any_error))
}

fn print_json(out: &mut impl Write, report: &Report) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, report)?;
    writeln!(out)?;
    Ok(())
}

fn verdict_word(v: Validity) -> &'static str {
    match v {
        Validity::Valid => "valid",
        Validity::Invalid => "INVALID",
        Validity::Unknown => "unknown",
    }
}

fn print_human(out: &mut impl Write, report: &Report) -> anyhow::Result<()> {
    writeln!(
        out,
        "{}: {} ({})",
        report.file.display(),
        verdict_word(report.valid),
        report.format
    )?;
    if let Some(m) = &report.model {
        let nil = m.nil_reads.map(|n| format!("; nil reads: {n}")).unwrap_or_default();
        writeln!(out, "  model: {} ({}{nil})", m.name, m.why)?;
    }
    for w in &report.warnings {
        writeln!(out, "  warning: {w}")?;
    }
    for (name, v) in &report.checkers {
        print_verdict(out, name, v)?;
    }
    for (f, n) in &report.unchecked {
        let hint = report.unchecked_hints.get(f).map_or("", String::as_str);
        let ops = if *n == 1 { "operation" } else { "operations" };
        writeln!(out, "  unchecked: {n} `{f}` {ops} no checker looked at; {hint}")?;
    }
    Ok(())
}

fn print_verdict(out: &mut impl Write, name: &str, v: &Verdict) -> anyhow::Result<()> {
    if let Some(why) = v.not_applicable_why() {
        writeln!(out, "  {name:<20} n/a      (not applicable: {why})")?;
        return Ok(());
    }
    writeln!(
        out,
        "  {name:<20} {:<8} {:>8} ops {:>10.1} ms",
        verdict_word(v.valid),
        v.ops,
        v.elapsed_ms
    )?;
    if let Some(r) = &v.unknown_reason {
        writeln!(out, "    why unknown: {r}")?;
    }
    for a in &v.anomalies {
        writeln!(out, "    {}: {}", a.kind, check_txn::summary(a))?;
        for op in &a.ops {
            writeln!(out, "      {}", op.describe())?;
        }
        for line in check_txn::cycle_lines(a) {
            writeln!(out, "      {line}")?;
        }
    }
    if let Some(line) = check_txn::ruled_out_line(v) {
        writeln!(out, "    {line}")?;
    }
    if v.anomalies_found() > v.anomalies.len() {
        writeln!(
            out,
            "    {} anomalies found in all; the first {} are shown (each is proven on its own).",
            v.anomalies_found(),
            v.anomalies.len()
        )?;
    }
    if !v.details.is_null() && v.valid == Validity::Valid && v.details.get("linearization").is_some() {
        writeln!(out, "    linearization: {}", v.details["linearization"])?;
    }
    Ok(())
}
