//! The `Control` boundary: run a daemon or a command on a node, signal it,
//! and move files to and from it.
//!
//! The nemesis's process faults (kill, SIGSTOP) and every database's
//! daemons go through it, so the same code drives a laptop cluster,
//! network namespaces and a rack of machines over SSH. It lives in a crate
//! of its own so that a backend (`faultline-ssh`) implements it without
//! depending on the fault machinery; `faultline-nemesis` re-exports it.
//!
//! - the traits and their specs here ([`Control`], [`Daemon`],
//!   [`DaemonSpec`], [`CommandSpec`], [`Signal`]);
//! - [`local`]: [`LocalControl`], every node this machine, daemons child
//!   processes of the harness;
//! - [`error`]: why a node could not be controlled ([`ControlError`]).
//!
//! Depends on nothing of ours.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

pub mod error;
pub mod local;

pub use error::ControlError;
pub use local::{pid_exists, run_local, spawn_daemon, spawn_tied, LocalControl};

/// The signals the nemesis sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Ask to terminate.
    Term,
    /// Kill at once (a crash).
    Kill,
    /// Freeze (a pause).
    Stop,
    /// Thaw.
    Cont,
}

impl Signal {
    /// The signal number.
    pub(crate) fn raw(self) -> libc::c_int {
        match self {
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
            Signal::Stop => libc::SIGSTOP,
            Signal::Cont => libc::SIGCONT,
        }
    }

    /// The usual name (SIGKILL, ...).
    pub fn name(self) -> &'static str {
        match self {
            Signal::Term => "SIGTERM",
            Signal::Kill => "SIGKILL",
            Signal::Stop => "SIGSTOP",
            Signal::Cont => "SIGCONT",
        }
    }
}

/// A long-running process to start on a node.
#[derive(Clone, Debug)]
pub struct DaemonSpec {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment variables to add.
    pub env: Vec<(String, String)>,
    /// File that receives stdout and stderr, appended to across restarts.
    pub log_file: PathBuf,
}

/// A running daemon. Dropping the handle stops the process.
pub trait Daemon: Send {
    /// Its process id on its node.
    fn pid(&self) -> u32;
    /// Sends a signal.
    fn signal(&mut self, signal: Signal) -> Result<(), ControlError>;
    /// Whether it still runs (reaps it if it exited).
    fn is_running(&mut self) -> bool;
    /// Resumes it if paused, kills it and waits (bounded) until it is gone.
    fn stop(&mut self) -> Result<(), ControlError>;
}

/// A command to run to completion on a node.
#[derive(Clone, Debug)]
pub struct CommandSpec {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Bytes written to its standard input, which is then closed.
    pub stdin: Vec<u8>,
    /// Past this it is killed and the call fails with `Timeout`.
    pub timeout: Duration,
}

impl CommandSpec {
    /// `program args...` with no input, killed past `timeout`.
    pub fn new(program: impl Into<PathBuf>, args: &[&str], timeout: Duration) -> CommandSpec {
        CommandSpec {
            program: program.into(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            stdin: Vec::new(),
            timeout,
        }
    }

    /// The same command fed `input` on its standard input.
    pub fn with_stdin(mut self, input: impl Into<Vec<u8>>) -> CommandSpec {
        self.stdin = input.into();
        self
    }

    /// The command line, for messages.
    pub fn display(&self) -> String {
        std::iter::once(self.program.display().to_string())
            .chain(self.args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Runs processes on nodes and moves files to and from them.
///
/// Paths are the node's own: for local processes and namespaces they are
/// this machine's paths; over SSH they are paths on the remote machine.
pub trait Control: Send + Sync {
    /// Starts a daemon on `node`.
    fn start(&self, node: &str, spec: &DaemonSpec) -> Result<Box<dyn Daemon>, ControlError>;
    /// Runs a command to completion on `node`, killing it past its timeout.
    /// A command that exits non-zero is not an error here: the caller reads
    /// the status.
    fn run(&self, node: &str, cmd: &CommandSpec) -> Result<Output, ControlError>;
    /// Copies a local file to `remote` on `node` (parent folders created),
    /// with permission bits `mode`.
    fn put(&self, node: &str, local: &Path, remote: &Path, mode: u32) -> Result<(), ControlError>;
    /// Copies a file from `node` to a local path.
    fn fetch(&self, node: &str, remote: &Path, local: &Path) -> Result<(), ControlError>;
    /// Whether the nodes see this machine's filesystem (local processes and
    /// namespaces do; remote machines do not), so node paths and store
    /// paths may be the same.
    fn shares_filesystem(&self) -> bool {
        true
    }
}
