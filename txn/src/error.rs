//! Why a history cannot be checked for transactional anomalies at all.
//!
//! A malformed transaction is an error, not an anomaly: the checker cannot
//! say what the database did with an operation it cannot read, so it says
//! which operation and what is wrong with it instead of guessing.

/// A history whose transactions the checker cannot interpret.
#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    /// A `txn` operation's value is not a list of micro-operations.
    #[error("operation {index}: a txn's value must be a list of micro-operations, got {got}")]
    NotAList {
        /// Invoke index of the operation.
        index: u64,
        /// The value, shortened.
        got: String,
    },
    /// A micro-operation is not `[f, key, value]` with a known `f`.
    #[error("operation {index}, micro-op {position}: {why} (got {got})")]
    BadMicroOp {
        /// Invoke index of the operation.
        index: u64,
        /// Position of the micro-op in the transaction.
        position: usize,
        /// What is wrong with it.
        why: &'static str,
        /// The micro-op, shortened.
        got: String,
    },
    /// One key is both appended to and written: neither datatype's rules apply.
    #[error("key {key} is both appended to and written (operation {index}): a key is a list or a register, not both")]
    MixedKey {
        /// The key.
        key: String,
        /// Invoke index of an operation that shows the mix.
        index: u64,
    },
    /// A read's value does not fit its key's datatype (a number read from a list).
    #[error("operation {index}: read of {key} returned {got}, which is not a {datatype} value")]
    ReadShape {
        /// Invoke index of the operation.
        index: u64,
        /// The key.
        key: String,
        /// The value read, shortened.
        got: String,
        /// `list-append` or `rw-register`.
        datatype: &'static str,
    },
    /// Two writes (or appends) put the same value into one key: the checker
    /// relies on every written value being unique per key to know who wrote
    /// what it reads.
    #[error(
        "value {value} is written to key {key} twice (operations {first} and {second}): values must be unique per key"
    )]
    DuplicateWrite {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Invoke index of the first writer.
        first: u64,
        /// Invoke index of the second writer.
        second: u64,
    },
    /// The history file could not be read, or a line of it is not an event
    /// (read by [`crate::stream`]).
    #[error(transparent)]
    History(#[from] faultline_histories::HistoryError),
    /// More transactions or values than the checker's 32-bit indices hold.
    #[error("history too large: more than {limit} {what}")]
    TooLarge {
        /// What overflowed.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
}

/// Shortens a JSON value for an error message.
pub(crate) fn shorten(v: &serde_json::Value) -> String {
    const MAX: usize = 80;
    let s = v.to_string();
    if s.len() <= MAX {
        return s;
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}
