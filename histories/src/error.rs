//! Errors of reading and building histories. Each names where the problem
//! is: the file and line for text formats, the event index for a history
//! whose events do not pair up.

use std::path::PathBuf;

use crate::event::Process;

/// Why a history could not be read or built.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A line (or form) of the file is malformed; `message` names the field.
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A line is longer than the reader's limit
    /// ([`ReadLimits`](crate::limits::ReadLimits)): the file is no history,
    /// or one that needs a higher limit.
    #[error("{}:{line}: line {line} is longer than {} (the limit of one line)", path.display(), size_text(*max_line_bytes))]
    LineTooLong {
        path: PathBuf,
        line: usize,
        max_line_bytes: usize,
    },
    /// A completion arrived for a process with no operation in flight.
    #[error("event index {index}: process {process} completes an operation it never invoked")]
    UnmatchedCompletion { index: u64, process: Process },
    /// A process invoked a second operation while one was still in flight.
    #[error(
        "event index {index}: process {process} invokes while its operation of index {open_index} is still in flight"
    )]
    DoubleInvoke {
        index: u64,
        process: Process,
        open_index: u64,
    },
    /// A completion names another function than its invocation.
    #[error("event index {index}: completion `{completed}` pairs with an invocation of `{invoked}`")]
    MismatchedCompletion {
        index: u64,
        invoked: String,
        completed: String,
    },
}

/// A size in MiB when it is a whole number of them, else in bytes.
fn size_text(bytes: usize) -> String {
    const MIB: usize = 1 << 20;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

impl HistoryError {
    /// Wraps an error about one event into a parse error at a file line, so
    /// the user sees where to look.
    pub fn at_line(self, path: &std::path::Path, line: usize) -> HistoryError {
        match self {
            e @ (HistoryError::Io { .. } | HistoryError::Parse { .. } | HistoryError::LineTooLong { .. }) => e,
            other => HistoryError::Parse {
                path: path.to_owned(),
                line,
                message: other.to_string(),
            },
        }
    }
}
