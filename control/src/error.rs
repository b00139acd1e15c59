//! Why a process on a node could not be controlled.

use std::path::PathBuf;

/// Why a process on a node could not be controlled.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The program could not be started.
    #[error("starting {program} on {node}: {source}")]
    Spawn {
        /// Node.
        node: String,
        /// Program path.
        program: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A log file or directory could not be created.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path at fault.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A signal could not be delivered.
    #[error("signal {signal} to pid {pid}: {source}")]
    Signal {
        /// Signal name.
        signal: &'static str,
        /// Target process.
        pid: u32,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A command ran past its time limit and was killed.
    #[error("{program} on {node} ran past {timeout_ms} ms and was killed")]
    Timeout {
        /// Node.
        node: String,
        /// Program.
        program: String,
        /// The limit.
        timeout_ms: u64,
    },
    /// A process did not exit within its time limit after being signalled.
    #[error("pid {pid} still running {timeout_ms} ms after SIGKILL")]
    WouldNotDie {
        /// The process.
        pid: u32,
        /// The limit.
        timeout_ms: u64,
    },
}
