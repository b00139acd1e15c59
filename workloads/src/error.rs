//! Errors of building a workload or talking to a node outside an operation.

/// Why a workload could not be built or a node could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// A workload name we do not know.
    #[error(
        "unknown workload {0:?} (known: register, list-append, session, multi-key, txn-list-append, txn-rw-register)"
    )]
    UnknownWorkload(String),
    /// A parameter out of range or malformed.
    #[error("bad workload setting: {0}")]
    BadConfig(String),
    /// Talking to a node failed (status queries, not operations: operations
    /// never fail with an error, they complete with fail or info).
    #[error("{node}: {message}")]
    Node {
        /// The node asked.
        node: String,
        /// What went wrong.
        message: String,
    },
}
