//! Errors of the disk-fault filesystem: a control command that does not
//! parse, a mount that cannot be set up, a control client that cannot reach
//! its daemon.

use std::io;
use std::path::PathBuf;

/// Why a control command line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The line held no words.
    #[error("empty command")]
    Empty,
    /// The first word names no command.
    #[error(
        "unknown command {0:?} (try status, stall, fsync-delay, fail-writes, fail-fsync, drop-unsynced, heal, sync)"
    )]
    Unknown(String),
    /// The command takes one argument and got none.
    #[error("{command} needs an argument")]
    MissingArgument {
        /// The command.
        command: String,
    },
    /// The command got more arguments than it takes.
    #[error("{command}: too many arguments")]
    TooManyArguments {
        /// The command.
        command: String,
    },
    /// A millisecond argument that is not a non-negative integer.
    #[error("{command}: {value:?} is not a number of milliseconds")]
    BadNumber {
        /// The command.
        command: String,
        /// What was given.
        value: String,
    },
    /// A millisecond argument past the bound.
    #[error("{command}: {value} ms is too long (at most {max})")]
    OutOfRange {
        /// The command.
        command: String,
        /// What was given.
        value: u64,
        /// The bound.
        max: u64,
    },
    /// An on/off argument that is neither.
    #[error("{command}: expected on or off, got {value:?}")]
    BadSwitch {
        /// The command.
        command: String,
        /// What was given.
        value: String,
    },
}

/// Why a mount could not be configured, started or served.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The backing or mount directory is missing or not a directory.
    #[error("{role} {path}: {reason}")]
    BadDirectory {
        /// `backing` or `mountpoint`.
        role: &'static str,
        /// The path given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// One directory lies inside the other: the mount would serve itself.
    #[error("backing {backing} and mountpoint {mountpoint} must not contain one another")]
    Nested {
        /// Backing directory.
        backing: PathBuf,
        /// Mount point.
        mountpoint: PathBuf,
    },
    /// The dirty limit is past its bound.
    #[error("dirty limit of {mib} MiB is too large (at most {max})")]
    DirtyLimit {
        /// What was asked.
        mib: u64,
        /// The bound.
        max: u64,
    },
    /// Another daemon answers on the control socket already.
    #[error("control socket {0} is in use by a running daemon")]
    ControlInUse(PathBuf),
    /// The control socket could not be created.
    #[error("binding control socket {path}: {source}")]
    ControlBind {
        /// Socket path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The FUSE mount failed.
    #[error("mounting at {mountpoint}: {source}")]
    Mount {
        /// Mount point.
        mountpoint: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A system call of the daemon's own setup failed (signals, threads).
    #[error("{what}: {source}")]
    Setup {
        /// What was being set up.
        what: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The FUSE session ended with an error.
    #[error("FUSE session failed: {0}")]
    Session(#[source] io::Error),
}

/// Why `ctl` got no reply.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket refused or does not exist.
    #[error("connecting to {path}: {source}")]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Connecting took longer than the bound.
    #[error("connecting to {path}: no answer within {timeout_ms} ms")]
    ConnectTimeout {
        /// Socket path.
        path: PathBuf,
        /// The bound.
        timeout_ms: u64,
    },
    /// Sending the command or reading the reply failed (a timeout included).
    #[error("talking to {path}: {source}")]
    Io {
        /// Socket path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The daemon closed the connection without a reply.
    #[error("{0}: the daemon closed the connection without replying")]
    NoReply(PathBuf),
    /// The reply line did not parse.
    #[error("{path}: {reason}")]
    Malformed {
        /// Socket path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}
