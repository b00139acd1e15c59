//! faultline's history format, the one contract between the harness that
//! records a test and the checkers that judge it.
//!
//! A history is a sequence of [`Event`]s (see `docs/HISTORY_FORMAT.md`): each
//! client operation appears as an `invoke` followed, usually, by an `ok`,
//! `fail` or `info` completion from the same process. [`History`] pairs them
//! into [`Op`]s. What this crate promises:
//!
//! - Reading never loses what was recorded: a truncated last line is reported
//!   and dropped, invocations that never completed become pending (crashed)
//!   operations, and fields this version does not know are kept.
//! - Every parse error names the file, the line and the field at fault.
//! - Other tools' histories (Jepsen's `history.edn`, Porcupine's logs) import
//!   into the same types, so every checker reads them, with values that
//!   compare as the other tool compares them ([`value`], [`import::edn`]).
//! - No input makes a reader panic or grow without end: lines are bounded by
//!   [`ReadLimits`], EDN nesting by a depth, and errors say which line.
//!
//! This crate depends on nothing else of faultline's.

pub mod error;
pub mod event;
pub mod history;
pub mod import;
pub mod jsonl;
pub mod limits;
pub mod value;

pub use error::HistoryError;
pub use event::{Event, EventType, Key, Process, F};
pub use history::{single_key_txn, Header, History, HistoryBuilder, KeyId, NodeId, Op, Outcome};
pub use jsonl::{read_history, read_history_file, JsonlReader, JsonlWriter, Line};
pub use limits::ReadLimits;
