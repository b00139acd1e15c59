//! Session guarantees, consistent prefix, lost writes and convergence.
//!
//! Definitions follow Terry et al. (1994) for the session guarantees and
//! Terry (2013) for consistent prefix. A session is a process. Workloads
//! write unique values per key, so every read names the write it saw
//! ([`core`]); on list keys a read returns the whole list, so it also shows
//! the order ([`order`]). Each checker here is a plain function of a history
//! and promises:
//!
//! - It reports only what the history proves. "Older" means older in the
//!   order the history forces (list reads, or for registers real time and
//!   the initial value); where that order cannot decide, it says nothing.
//! - Every anomaly names its kind, key, processes and the two to four
//!   operations that prove it, with one sentence.
//! - A checker with nothing to look at (no final reads for `lost-writes`,
//!   no process that read a key twice for `monotonic-reads`, ...) answers
//!   not applicable (`Verdict::not_applicable`: `ops: 0`,
//!   `details.applicable: false`) and says why, so a valid verdict always
//!   means it looked. So does a session guarantee or consistent prefix
//!   that compared only micro-ops of transactions, which it does not
//!   cover: it looked at no operation it vouches for. Lost writes and
//!   convergence do vouch for the micro-ops they compared (an acknowledged
//!   append inside a committed transaction that no final read holds is a
//!   lost write, whatever the isolation level): valid or invalid, with
//!   `details.micro_ops_judged`, though they cover no transaction.
//! - Each verdict's coverage is the operations the checker judged: the
//!   reads and writes its guarantee compared (see each checker). A
//!   transaction is covered only by `consistent-prefix`, and only when it
//!   is a multi-key read, which that checker judges as one snapshot; the
//!   others take a transaction's micro-ops one by one and do not cover it.
//! - Cost is O(n log n) in the size of the history (hashing, sorting and
//!   one topological sort; no search), and every list kept is bounded:
//!   [`explain::ANOMALIES_MAX`] anomalies per checker, [`prefix::CYCLES_MAX`]
//!   cycles, and the per-session windows of `ryw` and `wfr`.
//!
//! Entry points: the [`Checker`] structs (each derives the shared tables on
//! its own); [`check_all`], which derives them once and runs the named
//! checkers on two threads (what `faultline check` uses); [`check_analysis`]
//! for one checker on tables already derived; [`applicable`] and [`by_name`]
//! for the command line.
//!
//! Two judgements are made per node rather than per reader: on registers,
//! monotonic writes and writes-follow-reads are broken only when one node
//! serves a write and later the value it had to follow. A reader that sees
//! them out of order from two nodes has met a stale replica, which is
//! monotonic reads' finding, not a reordering.
//!
//! Anomaly kinds: `read-your-writes`, `monotonic-reads`, `monotonic-writes`,
//! `writes-follow-reads`, `consistent-prefix` (details `shape`: `cycle` or
//! `divergent-list-reads`), `lost-write`, `failed-write-read`,
//! `not-converged`.

pub mod convergence;
pub mod core;
pub mod explain;
pub mod lost;
mod monotonic;
pub mod order;
pub mod prefix;
mod ryw;
mod wfr;

use std::time::{Duration, Instant};

use faultline_histories::History;
use serde_json::{json, Map, Value};

use self::core::Core;
use self::explain::Found;
use self::order::Orders;
use crate::verdict::{Checker, Verdict};

/// The tables every checker here reads, derived once per history.
pub struct Analysis<'h> {
    pub core: Core<'h>,
    pub orders: Orders,
    /// How long deriving them took.
    pub derive_time: Duration,
}

impl<'h> Analysis<'h> {
    /// Derives the tables of `history`.
    pub fn new(history: &'h History) -> Analysis<'h> {
        let start = Instant::now();
        let core = Core::derive(history);
        let orders = Orders::derive(&core);
        Analysis {
            core,
            orders,
            derive_time: start.elapsed(),
        }
    }
}

/// What one checker concluded, before it becomes a [`Verdict`].
pub enum Judged {
    /// Nothing in the history for this checker to judge, and why.
    NotApplicable(String),
    /// It looked at the operations `found.covered` names.
    Looked {
        found: Found,
        /// Set when part of the history could not be judged.
        unknown: Option<String>,
        details: Map<String, Value>,
    },
}

impl Judged {
    /// A judgement with no unknown part.
    pub fn looked(found: Found, details: Map<String, Value>) -> Judged {
        Judged::Looked {
            found,
            unknown: None,
            details,
        }
    }

    /// The verdict; `micro_ops_count` says whether the micro-ops of
    /// transactions it judged count as looked at ([`Kind::judges_micro_ops`]).
    fn into_verdict(self, elapsed: Duration, micro_ops_count: bool) -> Verdict {
        match self {
            Judged::NotApplicable(why) => Verdict::not_applicable(elapsed, why),
            // It compared reads, but every one was a micro-op of a
            // transaction, which it does not judge whole: it looked at no
            // operation, so it vouches for none.
            Judged::Looked {
                found,
                unknown: None,
                mut details,
            } if found.covered.is_empty() && found.total == 0 && !(micro_ops_count && found.micro_ops > 0) => {
                let mut v = Verdict::not_applicable(elapsed, NO_SINGLE_KEY_OPS);
                details.extend(v.details.as_object().cloned().unwrap_or_default());
                v.details = Value::Object(details);
                v
            }
            Judged::Looked {
                found,
                unknown,
                mut details,
            } => {
                let ops = found.covered.len();
                details.insert("applicable".into(), json!(true));
                details.insert("anomalies_found".into(), json!(found.total));
                details.insert("anomalies_reported".into(), json!(found.anomalies.len()));
                if micro_ops_count && found.micro_ops > 0 {
                    details.insert("micro_ops_judged".into(), json!(found.micro_ops));
                }
                let mut v = match unknown {
                    Some(why) if found.total == 0 => Verdict::unknown(ops, elapsed, why),
                    _ => Verdict::from_anomalies(ops, elapsed, found.anomalies),
                }
                .with_coverage(found.covered);
                v.details = Value::Object(details);
                v
            }
        }
    }
}

/// Why a checker of this module that compared only the micro-ops of
/// transactions does not apply.
pub const NO_SINGLE_KEY_OPS: &str =
    "no single-key operations: what it compared lies inside transactions, which the transactional checker judges";

/// The checkers of this module, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    ReadYourWrites,
    MonotonicReads,
    MonotonicWrites,
    WritesFollowReads,
    ConsistentPrefix,
    LostWrites,
    Convergence,
}

const ALL: [Kind; 7] = [
    Kind::ReadYourWrites,
    Kind::MonotonicReads,
    Kind::MonotonicWrites,
    Kind::WritesFollowReads,
    Kind::ConsistentPrefix,
    Kind::LostWrites,
    Kind::Convergence,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::ReadYourWrites => "read-your-writes",
            Kind::MonotonicReads => "monotonic-reads",
            Kind::MonotonicWrites => "monotonic-writes",
            Kind::WritesFollowReads => "writes-follow-reads",
            Kind::ConsistentPrefix => "consistent-prefix",
            Kind::LostWrites => "lost-writes",
            Kind::Convergence => "convergence",
        }
    }

    fn alias(self) -> &'static str {
        match self {
            Kind::ReadYourWrites => "ryw",
            Kind::MonotonicReads => "mr",
            Kind::MonotonicWrites => "mw",
            Kind::WritesFollowReads => "wfr",
            Kind::ConsistentPrefix => "cp",
            Kind::LostWrites => "lost",
            Kind::Convergence => "conv",
        }
    }

    /// Rough order of cost on large histories, costliest first (0).
    fn cost_rank(self) -> u8 {
        match self {
            Kind::WritesFollowReads => 0,
            Kind::ConsistentPrefix => 1,
            Kind::MonotonicReads => 2,
            Kind::MonotonicWrites => 3,
            Kind::ReadYourWrites => 4,
            Kind::LostWrites => 5,
            Kind::Convergence => 6,
        }
    }

    /// Whether the micro-ops of transactions this checker compares count
    /// as looked at: for lost writes and convergence, whose promises hold
    /// whatever the isolation level (an acknowledged append is kept; the
    /// replicas agree at the end). The session guarantees and consistent
    /// prefix would judge a micro-op as an operation of its own, promises
    /// the transaction's isolation level may not make.
    fn judges_micro_ops(self) -> bool {
        matches!(self, Kind::LostWrites | Kind::Convergence)
    }

    fn judge(self, a: &Analysis<'_>) -> Judged {
        match self {
            Kind::ReadYourWrites => ryw::check(a),
            Kind::MonotonicReads => monotonic::check_reads(a),
            Kind::MonotonicWrites => monotonic::check_writes(a),
            Kind::WritesFollowReads => wfr::check(a),
            Kind::ConsistentPrefix => prefix::check(a),
            Kind::LostWrites => lost::check(a),
            Kind::Convergence => convergence::check(a),
        }
    }

    fn boxed(self) -> Box<dyn Checker + Send + Sync> {
        match self {
            Kind::ReadYourWrites => Box::new(ReadYourWrites),
            Kind::MonotonicReads => Box::new(MonotonicReads),
            Kind::MonotonicWrites => Box::new(MonotonicWrites),
            Kind::WritesFollowReads => Box::new(WritesFollowReads),
            Kind::ConsistentPrefix => Box::new(ConsistentPrefix),
            Kind::LostWrites => Box::new(LostWrites),
            Kind::Convergence => Box::new(Convergence),
        }
    }

    fn parse(name: &str) -> Option<Kind> {
        ALL.into_iter().find(|k| k.name() == name || k.alias() == name)
    }
}

/// Runs one checker on its own: derives the tables, then judges.
fn check_one(kind: Kind, history: &History) -> Verdict {
    let start = Instant::now();
    let a = Analysis::new(history);
    kind.judge(&a).into_verdict(start.elapsed(), kind.judges_micro_ops())
}

macro_rules! checker {
    ($(#[$doc:meta])* $ty:ident, $kind:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default)]
        pub struct $ty;

        impl Checker for $ty {
            fn name(&self) -> &'static str {
                Kind::$kind.name()
            }
            fn check(&self, history: &History) -> Verdict {
                check_one(Kind::$kind, history)
            }
        }
    };
}

checker!(
    /// After a process's write to a key completed ok, every later read of
    /// that key by the process reflects it or a later write.
    ReadYourWrites,
    ReadYourWrites
);
checker!(
    /// A process never reads a key's state provably older than one it
    /// already read.
    MonotonicReads,
    MonotonicReads
);
checker!(
    /// Two writes of one process to a key take effect in the order it issued
    /// them, as list reads and register reads show.
    MonotonicWrites,
    MonotonicWrites
);
checker!(
    /// A write a process issued after reading a value is ordered after that
    /// value wherever both are seen.
    WritesFollowReads,
    WritesFollowReads
);
checker!(
    /// One order of all writes such that every read, single- or multi-key,
    /// sees a prefix of it.
    ConsistentPrefix,
    ConsistentPrefix
);
checker!(
    /// Acknowledged writes the final reads do not contain, and failed writes
    /// that were read.
    LostWrites,
    LostWrites
);
checker!(
    /// After healing and a quiet period every replica returns the same value
    /// for each key.
    Convergence,
    Convergence
);

/// Looks a checker up by its name or a short alias (ryw, mr, mw, wfr, cp,
/// lost, conv).
pub fn by_name(name: &str) -> Option<Box<dyn Checker + Send + Sync>> {
    Kind::parse(name).map(Kind::boxed)
}

/// The names of every checker here, in report order.
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|k| k.name()).collect()
}

/// Every checker of this module whose operations appear in the history:
/// convergence and lost-writes when final reads exist; consistent-prefix when
/// there are list reads or multi-key reads; each session checker when some
/// process does what it judges (reads a key after writing it, reads a key
/// twice, writes a key twice, writes after reading).
pub fn applicable(history: &History) -> Vec<Box<dyn Checker + Send + Sync>> {
    let shape = Shape::of(history);
    ALL.into_iter()
        .filter(|k| match k {
            Kind::LostWrites | Kind::Convergence => shape.finals,
            Kind::ConsistentPrefix => shape.list_or_multi_reads,
            Kind::ReadYourWrites => shape.write_then_read,
            Kind::MonotonicReads => shape.read_twice,
            Kind::MonotonicWrites => shape.wrote_twice,
            Kind::WritesFollowReads => shape.read_then_write,
        })
        .map(Kind::boxed)
        .collect()
}

/// A checker name that is neither a name nor an alias of this module's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown checker `{0}`; known: read-your-writes (ryw), monotonic-reads (mr), monotonic-writes (mw), writes-follow-reads (wfr), consistent-prefix (cp), lost-writes (lost), convergence (conv)")]
pub struct UnknownChecker(pub String);

/// Runs the named checkers (names or aliases; all of them when `names` is
/// empty) on `history`, deriving the shared tables once and spreading the
/// checkers over two threads, costliest first. Returns `(name, verdict)` in
/// the order asked, or the first unknown name as the error. Each verdict's
/// time includes the shared derivation.
pub fn check_all(history: &History, names: &[&str]) -> Result<Vec<(&'static str, Verdict)>, UnknownChecker> {
    let kinds: Vec<Kind> = if names.is_empty() {
        ALL.to_vec()
    } else {
        names
            .iter()
            .map(|n| Kind::parse(n).ok_or_else(|| UnknownChecker((*n).to_owned())))
            .collect::<Result<_, _>>()?
    };
    let a = Analysis::new(history);
    let judge = |k: Kind| {
        let start = Instant::now();
        (
            k.name(),
            k.judge(&a)
                .into_verdict(a.derive_time + start.elapsed(), k.judges_micro_ops()),
        )
    };
    // The costliest first, pulled by two threads as they free up.
    let mut queue: Vec<usize> = (0..kinds.len()).collect();
    queue.sort_by_key(|&i| kinds[i].cost_rank());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let at = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(&i) = queue.get(at) else { break };
            done.push((i, judge(kinds[i])));
        }
        done
    };
    let mut out: Vec<(usize, (&'static str, Verdict))> = std::thread::scope(|s| {
        let other = s.spawn(work);
        let mut mine = work();
        mine.extend(other.join().expect("a checker thread panicked"));
        mine
    });
    out.sort_by_key(|(i, _)| *i);
    Ok(out.into_iter().map(|(_, v)| v).collect())
}

/// Runs one checker (by name or alias) on tables already derived, on this
/// thread; the verdict's time is the checker's own. `None` for an unknown
/// name.
pub fn check_analysis(a: &Analysis<'_>, name: &str) -> Option<Verdict> {
    let kind = Kind::parse(name)?;
    let start = Instant::now();
    Some(kind.judge(a).into_verdict(start.elapsed(), kind.judges_micro_ops()))
}

/// What kinds of operations a history holds, from one cheap pass.
struct Shape {
    finals: bool,
    list_or_multi_reads: bool,
    /// Some process read a key after writing it (read-your-writes).
    write_then_read: bool,
    /// Some process read a key twice (monotonic reads).
    read_twice: bool,
    /// Some process wrote a key twice (monotonic writes).
    wrote_twice: bool,
    /// Some process wrote a key after reading one (writes-follow-reads).
    read_then_write: bool,
}

impl Shape {
    fn of(history: &History) -> Shape {
        use faultline_histories::Outcome;
        let mut s = Shape {
            finals: false,
            list_or_multi_reads: false,
            write_then_read: false,
            read_twice: false,
            wrote_twice: false,
            read_then_write: false,
        };
        let mut keys = core::KeyTable::new(history);
        let mut wrote: core::FxMap<(faultline_histories::Process, u32), ()> = core::FxMap::default();
        let mut read: core::FxMap<(faultline_histories::Process, u32), ()> = core::FxMap::default();
        let mut readers: core::FxMap<faultline_histories::Process, ()> = core::FxMap::default();
        for op in &history.ops {
            s.finals |= op.is_final;
            if op.outcome != Outcome::Ok {
                continue;
            }
            let steps = op_keys(op, &mut keys);
            let reads = steps.iter().filter(|(r, _, _)| *r).count();
            for (is_read, k, list) in steps {
                s.list_or_multi_reads |= is_read && (list || reads > 1);
                if is_read {
                    s.write_then_read |= wrote.contains_key(&(op.process, k));
                    s.read_twice |= read.insert((op.process, k), ()).is_some();
                    readers.insert(op.process, ());
                } else {
                    s.wrote_twice |= wrote.insert((op.process, k), ()).is_some();
                    s.read_then_write |= readers.contains_key(&op.process);
                }
            }
        }
        s
    }
}

/// The keys an ok operation reads (`true`) and writes (`false`), and
/// whether the value read is a list.
fn op_keys(op: &faultline_histories::Op, keys: &mut core::KeyTable) -> Vec<(bool, u32, bool)> {
    use faultline_histories::F;
    if op.f == F::Txn {
        let micros = op.output.as_array().map_or(&[][..], Vec::as_slice);
        return micros
            .iter()
            .filter_map(|m| {
                let [f, k, v] = m.as_array()?.as_slice() else {
                    return None;
                };
                let k = keys.intern(k)?;
                Some((f.as_str()? == "r", k, v.is_array()))
            })
            .collect();
    }
    let Some(k) = op.key else { return Vec::new() };
    match op.f {
        F::Read => vec![(true, k.0, op.output.is_array())],
        F::Write | F::Append => vec![(false, k.0, false)],
        F::Cas => vec![(true, k.0, false), (false, k.0, false)],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_histories::{Event, EventType, Process, F};
    use serde_json::json;

    fn op(i: u64, p: u64, f: F, invoke: Value, ok: Value) -> [Event; 2] {
        [
            Event::new(2 * i, 10 * i, Process::Client(p), EventType::Invoke, f.clone(), invoke).with_key("k"),
            Event::new(2 * i + 1, 10 * i + 5, Process::Client(p), EventType::Ok, f, ok).with_key("k"),
        ]
    }

    fn names(h: &History) -> Vec<&'static str> {
        applicable(h).iter().map(|c| c.name()).collect()
    }

    /// Coverage is what each checker compared: read-your-writes the read
    /// and the write it had to reflect; consistent-prefix every write and
    /// a multi-key read as a snapshot; no checker a transaction that
    /// writes (its writes are taken one by one, never as a transaction);
    /// a checker with nothing to judge, nothing.
    #[test]
    fn each_checker_covers_what_it_compared_and_no_writing_transaction() {
        let txn = |i: u64, p: u64, kind, v: Value| Event::new(i, i * 10, Process::Client(p), kind, F::Txn, v);
        let h = History::from_events(
            [
                op(0, 0, F::Write, json!(1), json!(1)).to_vec(),
                op(1, 0, F::Read, json!(null), json!(1)).to_vec(),
                vec![
                    txn(4, 1, EventType::Invoke, json!([["r", "k", null], ["r", "j", null]])),
                    txn(5, 1, EventType::Ok, json!([["r", "k", 1], ["r", "j", null]])),
                    txn(6, 2, EventType::Invoke, json!([["w", "j", 5], ["r", "k", null]])),
                    txn(7, 2, EventType::Ok, json!([["w", "j", 5], ["r", "k", 1]])),
                ],
            ]
            .concat(),
        )
        .unwrap();
        let verdicts: std::collections::BTreeMap<_, _> = check_all(&h, &[]).unwrap().into_iter().collect();
        let covered = |name: &str| -> Vec<usize> { (0..4).filter(|&i| verdicts[name].coverage.contains(i)).collect() };
        assert_eq!(covered("read-your-writes"), vec![0, 1]);
        assert_eq!(covered("consistent-prefix"), vec![0, 2]);
        assert_eq!(
            covered("lost-writes"),
            Vec::<usize>::new(),
            "no final reads: nothing judged"
        );
        for (name, v) in &verdicts {
            assert!(!v.coverage.contains(3), "{name} covered a transaction that writes");
            assert_eq!(v.ops, v.coverage.len(), "{name}");
        }
    }

    /// A regression: monotonic reads was offered only when a process read
    /// its own write, so a history of readers that never write went unjudged.
    #[test]
    fn each_session_checker_applies_when_its_pattern_occurs() {
        let readers_only = History::from_events(
            [
                op(0, 0, F::Write, json!(1), json!(1)),
                op(1, 1, F::Read, json!(null), json!(1)),
                op(2, 1, F::Read, json!(null), json!(1)),
            ]
            .concat(),
        )
        .unwrap();
        assert_eq!(names(&readers_only), vec!["monotonic-reads"]);
        let writer_reads = History::from_events(
            [
                op(0, 0, F::Read, json!(null), json!(null)),
                op(1, 0, F::Write, json!(1), json!(1)),
                op(2, 0, F::Write, json!(2), json!(2)),
                op(3, 0, F::Read, json!(null), json!(2)),
            ]
            .concat(),
        )
        .unwrap();
        assert_eq!(
            names(&writer_reads),
            vec![
                "read-your-writes",
                "monotonic-reads",
                "monotonic-writes",
                "writes-follow-reads"
            ]
        );
    }
}
