//! `faultline-diskfs`: mount the disk-fault filesystem, or send its control
//! socket one command.
//!
//! ```text
//! faultline-diskfs mount --backing DIR --mountpoint DIR --control SOCKET [--dirty-limit-mib N]
//! faultline-diskfs ctl --control SOCKET <command words...>
//! ```
//!
//! `ctl` prints the reply line and exits 0 on `ok`, 1 on `err`, 3 when no
//! daemon answers within 5 s (cannot connect, or no reply); 2 is a usage
//! error. `mount` exits 0 after an orderly unmount, 1 on failure.

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use faultline_diskfs::daemon::{self, DIRTY_LIMIT_MIB_DEFAULT};
use faultline_diskfs::{send_command, MountConfig, Reply};
use tracing_subscriber::EnvFilter;

/// How long `ctl` waits to connect, and again for the reply.
const CTL_TIMEOUT: Duration = Duration::from_secs(5);

/// `ctl` exit code when no daemon answers.
const EXIT_UNREACHABLE: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "faultline-diskfs",
    version,
    about = "A FUSE filesystem that loses unsynced writes on command"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Mount in the foreground until SIGTERM or SIGINT.
    Mount {
        /// Real directory holding the files.
        #[arg(long)]
        backing: PathBuf,
        /// Where to mount.
        #[arg(long)]
        mountpoint: PathBuf,
        /// Unix socket to serve control commands on.
        #[arg(long)]
        control: PathBuf,
        /// Past this many dirty MiB the oldest dirty file is written back.
        #[arg(long, default_value_t = DIRTY_LIMIT_MIB_DEFAULT)]
        dirty_limit_mib: u64,
    },
    /// Send one command (e.g. `stall 500`, `drop-unsynced`) and print the reply.
    Ctl {
        /// The daemon's control socket.
        #[arg(long)]
        control: PathBuf,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        words: Vec<String>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::Mount {
            backing,
            mountpoint,
            control,
            dirty_limit_mib,
        } => {
            init_tracing();
            let result = MountConfig::new(&backing, &mountpoint, &control, dirty_limit_mib)
                .and_then(|config| daemon::run(&config));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("faultline-diskfs mount: {}", chain(&e));
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Ctl { control, words } => ctl(&control, &words.join(" ")),
    }
}

fn ctl(control: &std::path::Path, line: &str) -> ExitCode {
    match send_command(control, line, CTL_TIMEOUT) {
        Ok(reply) => {
            println!("{reply}");
            if matches!(reply, Reply::Err(_)) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("faultline-diskfs ctl: {}", chain(&e));
            ExitCode::from(EXIT_UNREACHABLE)
        }
    }
}

fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// An error and its causes, `: `-separated (thiserror messages already
/// include their direct source, so repeated text is skipped).
fn chain(e: &dyn Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
