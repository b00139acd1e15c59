//! The linearizability checker: does some order of the history's operations,
//! respecting real time, satisfy the sequential [`Model`]?
//!
//! What it promises:
//! - **Sound verdicts.** `Valid` only after a search found a linearization
//!   of every part (it can print one); `Invalid` only after a search
//!   explored every order of some part; otherwise `Unknown` with the reason
//!   (time or memory budget spent, an operation the model cannot read).
//! - **Crashed operations** (`info`, pending) may take effect once at any
//!   time after their invocation, or never; failed ones are ignored except
//!   an observed failed compare-and-set (`error: "cas-mismatch"`).
//! - **Speed.** The history is split by key (P-compositionality) unless
//!   told not to; parts are searched cheapest first (see [`expected_cost`])
//!   on a small pool of threads, each with the Wing–Gong–Lowe search of
//!   [`search`] on interned states. A part that is a register with unique
//!   values (or a key-value string with unique pieces, which translates to
//!   one) is decided in polynomial time instead (see [`unique`]).
//! - **Evidence.** An invalid part names its longest linearizable prefix,
//!   the operation that cannot follow it, and a shrunk set of operations
//!   that alone cannot be linearized (see [`evidence`]).
//! - **The first anomaly decides the time.** One deadline and one memory
//!   budget cover the whole check (searches and evidence). Once a part is
//!   proven non-linearizable, the searches still running may go on for
//!   half as long again as that proof took (at least [`GRACE_MIN`]), parts
//!   not yet started are not started, and the evidence is shrunk within a
//!   budget of the same order; those parts are then reported undecided, so a bad
//!   history does not wait on its hardest key. [`Config::all_anomalies`]
//!   searches every part to the end and shrinks every proof as far as the
//!   shrinker goes.
//!
//! The verdict's coverage (and `ops`, its count) is every operation the
//! model could read, those it judged to constrain nothing (failed
//! operations, reads that never completed) included; an operation the
//! model cannot read (a `txn` on a register) is not covered, and its part
//! is undecided. A part of which the model can read nothing (the
//! transactions of a history checked as registers) is skipped: it is left
//! uncovered, named in `details.unread`, and does not make the verdict
//! unknown.

mod drive;
mod evidence;
#[cfg(test)]
mod kv_unique_tests;
mod part;
mod poly;
mod report;
pub mod search;
pub(crate) mod table;
pub mod unique;
#[cfg(test)]
mod unique_tests;

use std::time::Duration;

use faultline_histories::{History, F};

use crate::model::Model;
pub use crate::models::NilReads;
use crate::models::{Keyed, Kv, List, MultiRegister, Queue, Register, Set};
use crate::{Checker, Verdict};
use drive::drive;
pub use drive::{expected_cost, GRACE_MIN};

/// Which sequential specification to check against. The names are the
/// ones users type (`--model`), Knossos's where Knossos has the model.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelSpec {
    /// `read` / `write` on a register that starts at `initial`.
    Register {
        initial: serde_json::Value,
        nil_reads: NilReads,
    },
    /// A register with `cas [expected, new]` too.
    CasRegister {
        initial: serde_json::Value,
        nil_reads: NilReads,
    },
    /// Knossos's `multi-register`: `txn` of read and write micro-ops over
    /// named registers that all start at `initial`.
    MultiRegister {
        initial: serde_json::Value,
        nil_reads: NilReads,
    },
    /// Knossos's `mutex`: `acquire` and `release`.
    Mutex,
    /// Knossos's `set`: `add` an element, `read` the whole set.
    Set,
    /// Knossos's `unordered-queue`: `enqueue`, `dequeue` any pending element.
    UnorderedQueue,
    /// Knossos's `fifo-queue`: `enqueue`, `dequeue` the oldest element.
    FifoQueue,
    /// Porcupine's key-value strings: `read` (get), `write` (put), `append`.
    Kv,
    /// Lists: `append` an element, `read` the whole list.
    List,
}

impl ModelSpec {
    /// The model's name, as `--model` takes it and reports print it.
    pub fn name(&self) -> &'static str {
        match self {
            ModelSpec::Register { .. } => "register",
            ModelSpec::CasRegister { .. } => "cas-register",
            ModelSpec::MultiRegister { .. } => "multi-register",
            ModelSpec::Mutex => "mutex",
            ModelSpec::Set => "set",
            ModelSpec::UnorderedQueue => "unordered-queue",
            ModelSpec::FifoQueue => "fifo-queue",
            ModelSpec::Kv => "kv",
            ModelSpec::List => "list",
        }
    }
}

/// How to check.
#[derive(Clone, Debug)]
pub struct Config {
    pub model: ModelSpec,
    /// Check each key on its own (default). Off, the history is one object
    /// (a map of keys), which is much harder.
    pub split_by_key: bool,
    /// Wall-clock budget for the whole check.
    pub time_limit: Duration,
    /// Memory budget for the search tables of the whole check.
    pub memory_limit_bytes: usize,
    /// Worker threads.
    pub threads: usize,
    /// Put one linearization of every part into the verdict's details.
    pub want_linearization: bool,
    /// Search every part to the end and shrink every proof as far as it
    /// goes, instead of stopping shortly after the first anomaly.
    pub all_anomalies: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            model: ModelSpec::CasRegister {
                initial: serde_json::Value::Null,
                nil_reads: NilReads::Value,
            },
            split_by_key: true,
            time_limit: Duration::from_secs(60),
            memory_limit_bytes: 1 << 30,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            want_linearization: false,
            all_anomalies: false,
        }
    }
}

/// The linearizability checker as a [`Checker`].
#[derive(Clone, Debug, Default)]
pub struct Linearizable {
    pub config: Config,
}

impl Checker for Linearizable {
    fn name(&self) -> &'static str {
        "linearizable"
    }

    fn check(&self, history: &History) -> Verdict {
        check(history, &self.config)
    }
}

/// Checks `history` for linearizability under `config`.
pub fn check(history: &History, config: &Config) -> Verdict {
    match &config.model {
        ModelSpec::Register { initial, nil_reads } => {
            check_with(history, config, || Register::new(initial).with_nil_reads(*nil_reads))
        }
        ModelSpec::CasRegister { initial, nil_reads } => {
            check_with(history, config, || Register::cas(initial).with_nil_reads(*nil_reads))
        }
        ModelSpec::MultiRegister { initial, nil_reads } if has_keyless_txn(history) => {
            // Transactions without a key name their registers inside: a
            // single-key read or write of one of those registers must meet
            // them in one search, so neither the split by key nor the map
            // of keys may separate it from them.
            let whole = Config {
                split_by_key: false,
                ..config.clone()
            };
            drive(history, &whole, &|| MultiRegister::new(initial, *nil_reads))
        }
        ModelSpec::MultiRegister { initial, nil_reads } => {
            // Keyed transactions (Jepsen's independent keys): one set of
            // registers per key.
            check_with(history, config, || MultiRegister::new(initial, *nil_reads))
        }
        ModelSpec::Mutex => check_with(history, config, || crate::models::Mutex),
        ModelSpec::Set => check_with(history, config, Set::default),
        ModelSpec::UnorderedQueue => check_with(history, config, Queue::unordered),
        ModelSpec::FifoQueue => check_with(history, config, Queue::fifo),
        ModelSpec::Kv => check_with(history, config, Kv::default),
        ModelSpec::List => check_with(history, config, List::default),
    }
}

/// Whether some transaction carries no key of its own.
fn has_keyless_txn(history: &History) -> bool {
    history.ops.iter().any(|op| op.f == F::Txn && op.key.is_none())
}

/// Checks `history` against the model `make` builds (one per part).
pub fn check_with<M: Model, F: Fn() -> M + Sync>(history: &History, config: &Config, make: F) -> Verdict {
    if config.split_by_key {
        drive(history, config, &make)
    } else {
        drive(history, config, &|| Keyed::new(make()))
    }
}

#[cfg(test)]
mod tests {
    use super::drive::planned_bytes;
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::default();
        assert_eq!(
            c.model,
            ModelSpec::CasRegister {
                initial: serde_json::Value::Null,
                nil_reads: NilReads::Value,
            }
        );
        assert!(c.split_by_key && !c.want_linearization && !c.all_anomalies);
        assert_eq!(c.time_limit, Duration::from_secs(60));
        assert_eq!(c.memory_limit_bytes, 1 << 30);
        assert!(c.threads >= 1);
        assert_eq!(Linearizable::default().name(), "linearizable");
    }

    #[test]
    fn the_planned_share_of_memory_never_overflows() {
        assert_eq!(planned_bytes(1000), 600);
        assert_eq!(
            planned_bytes(1 << 30),
            (1usize << 30) / 100 * 60 + (1usize << 30) % 100 * 60 / 100
        );
        assert!(planned_bytes(usize::MAX) < usize::MAX);
    }

    #[test]
    fn an_empty_history_is_valid() {
        let v = check(&History::default(), &Config::default());
        assert_eq!(v.valid, crate::Validity::Valid);
        assert_eq!(v.ops, 0);
    }

    /// A failed write is covered (read, and judged to constrain nothing);
    /// an operation the model cannot read is not, and leaves its part
    /// undecided.
    #[test]
    fn coverage_is_what_the_model_could_read() {
        use faultline_histories::{Event, EventType, Process, F};
        use serde_json::json;
        let ev = |i: u64, p: u64, kind, f: F, v| Event::new(i, i, Process::Client(p), kind, f, v).with_key("k");
        let h = History::from_events([
            ev(0, 0, EventType::Invoke, F::Write, json!(1)),
            ev(1, 0, EventType::Ok, F::Write, json!(1)),
            ev(2, 1, EventType::Invoke, F::Write, json!(2)),
            ev(3, 1, EventType::Fail, F::Write, json!(2)),
            ev(4, 0, EventType::Invoke, F::Read, json!(null)),
            ev(5, 0, EventType::Ok, F::Read, json!(1)),
        ])
        .unwrap();
        let v = check(&h, &Config::default());
        assert_eq!(v.valid, crate::Validity::Valid);
        assert_eq!((v.ops, v.coverage.len()), (3, 3));
        let h = History::from_events([
            ev(0, 0, EventType::Invoke, F::Write, json!(1)),
            ev(1, 0, EventType::Ok, F::Write, json!(1)),
            ev(2, 1, EventType::Invoke, F::Txn, json!([["r", "k", null]])),
            ev(3, 1, EventType::Ok, F::Txn, json!([["r", "k", 1]])),
        ])
        .unwrap();
        let v = check(&h, &Config::default());
        assert_eq!(v.valid, crate::Validity::Unknown);
        assert!(v.coverage.contains(0) && !v.coverage.contains(1));
        assert_eq!(v.ops, 1);
        // Alone in a part (no key), the transaction is left unread: not
        // covered, and no reason to call the keys that were checked undecided.
        let txn = |i: u64, kind, v| Event::new(i, i, Process::Client(1), kind, F::Txn, v);
        let h = History::from_events([
            ev(0, 0, EventType::Invoke, F::Write, json!(1)),
            ev(1, 0, EventType::Ok, F::Write, json!(1)),
            txn(2, EventType::Invoke, json!([["r", "k", null]])),
            txn(3, EventType::Ok, json!([["r", "k", 1]])),
        ])
        .unwrap();
        let v = check(&h, &Config::default());
        assert_eq!(v.valid, crate::Validity::Valid);
        assert_eq!(v.ops, 1);
        assert!(!v.coverage.contains(1));
        assert_eq!(v.details["unread"].as_array().map(Vec::len), Some(1));
    }
}
