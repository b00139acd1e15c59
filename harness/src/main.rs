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

mod cli_campaign;
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

/// Logs on stderr what `RUST_LOG` asks for (`warn` when it is unset or
/// does not parse), and every `info` event of a run into its store folder's
/// `faultline.log` as well.
fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{EnvFilter, Layer as _};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter);
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(faultline_harness::run::runlog::layer())
        .try_init();
}

fn main() -> ExitCode {
    init_tracing();
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
