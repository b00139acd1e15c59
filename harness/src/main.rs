//! The `faultline` command: parses arguments, calls the harness library, and
//! maps results to the exit codes of ARCHITECTURE.md (0 valid, 1 anomaly,
//! 2 unknown, 3 the test or check could not run: a usage error too, so that
//! 2 always means "unknown"). Output goes through [`stdout`], so a reader
//! that closes the pipe early does not change the exit code.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// `println!` through [`stdout::line`]: a closed stdout ends output quietly.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::stdout::line(format_args!($($arg)*))
    };
}

mod stdout;

mod cli_check;
mod cli_clean;
mod cli_report;
mod cli_run;
mod cli_serve;

#[derive(Parser)]
#[command(
    name = "faultline",
    version,
    about = "Jepsen-style fault injection and consistency checking"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check recorded histories (faultline JSONL, Jepsen EDN, Porcupine logs).
    Check(cli_check::CheckArgs),
    /// Run a test: start a cluster (local, in namespaces or over SSH), drive a workload under faults, check the history.
    Run(Box<cli_run::RunArgs>),
    /// Run a campaign of tests and compare each checker's verdict with the expected one.
    Campaign(cli_run::CampaignArgs),
    /// Write a run's report.html and junit.xml from its store folder.
    Report(cli_report::ReportArgs),
    /// Serve the store: every run, newest first, with its report, history and logs.
    Serve(cli_serve::ServeArgs),
    /// Remove what runs that died left behind: network namespaces, bridges, disk-fault mounts.
    Clean(cli_clean::CleanArgs),
}

/// The exit code of a command line clap refused; `--help` and `--version`
/// are not refusals and exit 0.
const USAGE_ERROR: u8 = 3;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap's own message, on stderr for errors and stdout for help;
            // a closed pipe while printing help is no error.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { USAGE_ERROR } else { 0 });
        }
    };
    let result: anyhow::Result<u8> = match cli.command {
        Command::Check(args) => cli_check::run(args),
        Command::Run(args) => cli_run::run(*args),
        Command::Campaign(args) => cli_run::campaign(args),
        Command::Report(args) => cli_report::run(args),
        Command::Serve(args) => cli_serve::run(args),
        Command::Clean(args) => cli_clean::run(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("faultline: error: {e:#}");
            ExitCode::from(3)
        }
    }
}
