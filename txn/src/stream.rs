//! A JSONL history read straight into [`Txns`], one line at a time.
//!
//! `faultline_histories` reads a file into a `History` that keeps every
//! operation's value as a `serde_json::Value`: for a million transactions
//! that is gigabytes, several times what the checker needs. This reader
//! pairs invocations with completions by the same rules as
//! `HistoryBuilder` (a completion closes its process's open invocation; an
//! invocation never completed is pending) and keeps of each transaction
//! only its interned micro-ops, so memory grows with what the transactions
//! say rather than with JSON's tree of values. Transactions get the same
//! ids and operation positions as [`crate::parse::parse`] gives them from
//! the `History` of the same file.
//!
//! Each line is decoded first by a fast path for the common shape (integer
//! or string keys and values, field names without escapes). A line it does
//! not take is decoded as an [`Event`] exactly as the history reader does
//! (integers past 64 bits included), so the two readers agree on what every
//! well-formed line means. Fields the checker does not use (`node`,
//! `error`, unknown ones) are skipped on the fast path, not validated. A
//! single-key read, write or append is read as one micro-op (a cas takes
//! the slow path), and counts only if the file has transactions
//! ([`crate::parse::parse`]'s rule).

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use faultline_histories::limits::{read_line, LineRead};
use faultline_histories::value::exact_json_integers;
use faultline_histories::{single_key_txn, Event, EventType, Header, HistoryError, Process, ReadLimits, F};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::error::TxnError;
use crate::parse::{txn_value, FastMap, MopF, RawMop, RawVal, Scalar, Status, Txn, TxnId, Txns};

/// What the streaming reader found.
#[derive(Debug)]
pub struct Streamed {
    pub txns: Txns,
    /// Client operations in the file, transactions or not.
    pub ops: usize,
    /// What a person should know: a truncated last line that was dropped.
    pub warnings: Vec<String>,
}

/// Reads the JSONL history at `path`.
pub fn read_file(path: &Path, limits: &ReadLimits) -> Result<Streamed, TxnError> {
    let file = File::open(path).map_err(|source| HistoryError::Io {
        path: path.to_owned(),
        source,
    })?;
    read(BufReader::with_capacity(1 << 16, file), path, limits)
}

/// Reads a JSONL history from `input`; `path` names it in errors. A last
/// line cut short (the writer died mid-line) is dropped with a warning, as
/// the history reader does.
pub fn read<R: BufRead>(mut input: R, path: &Path, limits: &ReadLimits) -> Result<Streamed, TxnError> {
    let mut b = Builder::default();
    let mut buf = Vec::with_capacity(256);
    let mut warnings = Vec::new();
    let mut line = 0usize;
    while read_line(&mut input, &mut buf, path, line + 1, limits)? == LineRead::Line {
        line += 1;
        let complete = buf.last() == Some(&b'\n');
        let text = buf.trim_ascii();
        if text.is_empty() {
            continue;
        }
        match decode(text, line == 1) {
            Ok(None) => {}
            Ok(Some(ev)) => b.push(ev).map_err(|e| at_line(e, path, line))?,
            Err(_) if !complete => {
                warnings.push(format!(
                    "{}:{line}: the last line is truncated (the writer stopped mid-line); dropped it",
                    path.display()
                ));
                break;
            }
            Err(message) => {
                return Err(HistoryError::Parse {
                    path: path.to_owned(),
                    line,
                    message,
                }
                .into())
            }
        }
    }
    b.finish(warnings)
}

fn at_line(e: TxnError, path: &Path, line: usize) -> TxnError {
    match e {
        TxnError::History(h) => TxnError::History(h.at_line(path, line)),
        other => other,
    }
}

/// One client event, as much of it as the checker uses.
struct Ev {
    index: u64,
    time: u64,
    process: Process,
    kind: EventType,
    f: F,
    /// A transaction's micro-ops; an error is raised only if they are used.
    mops: Option<Result<Vec<RawMop>, TxnError>>,
}

/// A line as an event; `None` for the header and the nemesis's events.
fn decode(text: &[u8], first: bool) -> Result<Option<Ev>, String> {
    const TAG: &[u8] = b"\"faultline_history\"";
    if first && text.windows(TAG.len()).any(|w| w == TAG) {
        serde_json::from_slice::<Header>(text).map_err(|e| format!("header: {e}"))?;
        return Ok(None);
    }
    let exact = exact_json_integers(text);
    if exact.is_none() {
        if let Ok(FastEvent(ev)) = serde_json::from_slice::<FastEvent>(text) {
            return Ok(ev);
        }
    }
    let ev: Event = serde_json::from_slice(exact.as_deref().unwrap_or(text)).map_err(|e| e.to_string())?;
    if ev.process == Process::Nemesis {
        return Ok(None);
    }
    let mops = if ev.f == F::Txn {
        Some(txn_value(&ev.value, ev.index))
    } else {
        ev.key
            .as_ref()
            .and_then(|k| single_key_txn(&ev.f, k, &ev.value))
            .map(|v| txn_value(&v, ev.index))
    };
    Ok(Some(Ev {
        index: ev.index,
        time: ev.time,
        process: ev.process,
        kind: ev.kind,
        f: ev.f,
        mops,
    }))
}

/// Pairs events into transactions as they arrive.
#[derive(Default)]
struct Builder {
    out: Txns,
    /// Client operations invoked so far: the next one's position.
    ops: usize,
    open: FastMap<Process, Open>,
    /// Whether a `txn` was seen: single-key operations count as
    /// transactions only beside real ones (`crate::parse::parse`'s rule).
    saw_txn: bool,
}

/// A process's invocation not yet completed.
struct Open {
    f: F,
    invoke_index: u64,
    /// For a transaction: its slot in `Txns::txns` and what it was invoked with.
    txn: Option<(TxnId, Result<Vec<RawMop>, TxnError>)>,
}

impl Builder {
    fn push(&mut self, ev: Ev) -> Result<(), TxnError> {
        match ev.kind {
            EventType::Invoke => self.invoke(ev),
            _ => self.complete(ev),
        }
    }

    fn invoke(&mut self, ev: Ev) -> Result<(), TxnError> {
        if let Some(prev) = self.open.get(&ev.process) {
            return Err(HistoryError::DoubleInvoke {
                index: ev.index,
                process: ev.process,
                open_index: prev.invoke_index,
            }
            .into());
        }
        self.saw_txn |= ev.f == F::Txn;
        let txn = match ev.mops {
            Some(mops) => {
                self.out.room_for_one()?;
                let id = self.out.txns.len() as TxnId;
                // The slot is taken now, in invocation order, so ids match
                // `parse::parse`'s; the micro-ops come at completion.
                self.out.txns.push(Txn {
                    op: self.ops,
                    process: ev.process,
                    status: Status::Indeterminate,
                    invoke_index: ev.index,
                    complete_index: None,
                    invoke_time: ev.time,
                    complete_time: None,
                    mops: (0, 0),
                });
                Some((id, mops))
            }
            None => None,
        };
        self.ops += 1;
        let open = Open {
            f: ev.f,
            invoke_index: ev.index,
            txn,
        };
        self.open.insert(ev.process, open);
        Ok(())
    }

    fn complete(&mut self, ev: Ev) -> Result<(), TxnError> {
        let Some(open) = self.open.remove(&ev.process) else {
            return Err(HistoryError::UnmatchedCompletion {
                index: ev.index,
                process: ev.process,
            }
            .into());
        };
        if open.f != ev.f {
            return Err(HistoryError::MismatchedCompletion {
                index: ev.index,
                invoked: open.f.to_string(),
                completed: ev.f.to_string(),
            }
            .into());
        }
        let Some((id, invoked)) = open.txn else {
            return Ok(());
        };
        let status = match ev.kind {
            EventType::Ok => Status::Committed,
            EventType::Fail => Status::Aborted,
            _ => Status::Indeterminate,
        };
        // An ok transaction's completion says what its reads returned; any
        // other says nothing, so its invocation stands for it.
        let raw = match (status, ev.mops) {
            (Status::Committed, Some(done)) => done?,
            _ => invoked?,
        };
        let mops = self.out.push_mops(raw, status == Status::Committed)?;
        let t = &mut self.out.txns[id as usize];
        t.status = status;
        t.complete_index = Some(ev.index);
        t.complete_time = Some(ev.time);
        t.mops = mops;
        Ok(())
    }

    /// The transactions; those never completed keep their invocations.
    fn finish(mut self, warnings: Vec<String>) -> Result<Streamed, TxnError> {
        let mut pending: Vec<(TxnId, Result<Vec<RawMop>, TxnError>)> =
            self.open.into_values().filter_map(|o| o.txn).collect();
        pending.sort_unstable_by_key(|(id, _)| *id);
        for (id, invoked) in pending {
            let mops = self.out.push_mops(invoked?, false)?;
            self.out.txns[id as usize].mops = mops;
        }
        Ok(Streamed {
            txns: if self.saw_txn { self.out } else { Txns::default() },
            ops: self.ops,
            warnings,
        })
    }
}

/// The fast path's event: `None` for the nemesis's.
struct FastEvent(Option<Ev>);

impl<'de> Deserialize<'de> for FastEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(FastEventVisitor)
    }
}

struct FastEventVisitor;

impl<'de> Visitor<'de> for FastEventVisitor {
    type Value = FastEvent;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a history event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FastEvent, A::Error> {
        let (mut index, mut time, mut process, mut kind, mut f, mut mops) = (None, None, None, None, None, None);
        let (mut key, mut single) = (None, None);
        while let Some(name) = map.next_key::<&str>()? {
            match name {
                "index" => index = Some(map.next_value::<u64>()?),
                "time" => time = Some(map.next_value::<u64>()?),
                "process" => process = Some(map.next_value::<Process>()?),
                "type" => kind = Some(map.next_value::<EventType>()?),
                "f" => f = Some(F::parse(map.next_value::<&str>()?)),
                "key" => key = Some(map.next_value::<FastScalar>()?.0),
                // A single-key read, write or append is one micro-op
                // (`faultline_histories::single_key_txn`; a cas goes the slow way).
                "value" if matches!(f, Some(F::Read | F::Write | F::Append)) => {
                    single = Some(map.next_value::<FastVal>()?.0);
                }
                "value" if matches!(f, Some(F::Cas)) => return Err(de::Error::custom("a cas goes the slow way")),
                // A value that is not a transaction's is not looked at.
                "value" if f.as_ref().is_some_and(|f| *f != F::Txn) => {
                    map.next_value::<IgnoredAny>()?;
                }
                "value" => mops = Some(map.next_value::<Vec<FastMop>>()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let missing = || de::Error::custom("a field the fast path needs is missing");
        let process = process.ok_or_else(missing)?;
        if process == Process::Nemesis {
            return Ok(FastEvent(None));
        }
        let f = f.ok_or_else(missing)?;
        let mops = match (&f, mops) {
            (F::Txn, Some(m)) => Some(Ok(m.into_iter().map(|m| m.0).collect())),
            (F::Txn, None) => return Err(missing()),
            _ => single_mop(&f, key, single)?.map(|m| Ok(vec![m])),
        };
        Ok(FastEvent(Some(Ev {
            index: index.ok_or_else(missing)?,
            time: time.ok_or_else(missing)?,
            process,
            kind: kind.ok_or_else(missing)?,
            f,
            mops,
        })))
    }
}

/// A single-key operation's micro-op on the fast path: `None` when it has
/// no key or is not a read, write or append.
fn single_mop<E: de::Error>(f: &F, key: Option<Scalar>, val: Option<RawVal>) -> Result<Option<RawMop>, E> {
    let mf = match f {
        F::Read => MopF::Read,
        F::Write => MopF::Write,
        F::Append => MopF::Append,
        _ => return Ok(None),
    };
    let Some(key) = key else { return Ok(None) };
    // A write of null or of a list goes the slow way, as in a txn.
    RawMop::new(mf, key, val.unwrap_or(RawVal::Null))
        .map(Some)
        .ok_or_else(|| E::custom("a written value is not a scalar"))
}

/// A micro-op on the fast path: `[f, key, value]` with scalars that are
/// integers or strings.
struct FastMop(RawMop);

impl<'de> Deserialize<'de> for FastMop {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(FastMopVisitor)
    }
}

struct FastMopVisitor;

impl<'de> Visitor<'de> for FastMopVisitor {
    type Value = FastMop;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a micro-op [f, key, value]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FastMop, A::Error> {
        let short = || de::Error::custom("a micro-op has three elements");
        let f = seq.next_element::<&str>()?.ok_or_else(short)?;
        let f = MopF::parse(f).ok_or_else(|| de::Error::custom("unknown micro-op function"))?;
        let key = seq.next_element::<FastScalar>()?.ok_or_else(short)?.0;
        let val = seq.next_element::<FastVal>()?.ok_or_else(short)?.0;
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(short());
        }
        // A write of null or of a list goes the slow way, which interns it
        // by its JSON text.
        RawMop::new(f, key, val)
            .map(FastMop)
            .ok_or_else(|| de::Error::custom("a written value is not a scalar"))
    }
}

/// An integer or a string, as [`Scalar::of`] interns it.
struct FastScalar(Scalar);

impl<'de> Deserialize<'de> for FastScalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FastScalarVisitor)
    }
}

struct FastScalarVisitor;

impl Visitor<'_> for FastScalarVisitor {
    type Value = FastScalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer or a string")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<FastScalar, E> {
        Ok(FastScalar(Scalar::Int(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<FastScalar, E> {
        Ok(FastScalar(match i64::try_from(v) {
            Ok(i) => Scalar::Int(i),
            Err(_) => Scalar::Json(v.to_string().into()),
        }))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<FastScalar, E> {
        Ok(FastScalar(Scalar::Json(v.into())))
    }
}

/// A micro-op's value on the fast path: null, a scalar, or a list of them.
struct FastVal(RawVal);

impl<'de> Deserialize<'de> for FastVal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FastValVisitor)
    }
}

struct FastValVisitor;

impl<'de> Visitor<'de> for FastValVisitor {
    type Value = FastVal;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("null, an integer, a string or a list of them")
    }

    fn visit_unit<E: de::Error>(self) -> Result<FastVal, E> {
        Ok(FastVal(RawVal::Null))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<FastVal, E> {
        FastScalarVisitor.visit_i64(v).map(|s| FastVal(RawVal::One(s.0)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<FastVal, E> {
        FastScalarVisitor.visit_u64(v).map(|s| FastVal(RawVal::One(s.0)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<FastVal, E> {
        FastScalarVisitor.visit_str(v).map(|s| FastVal(RawVal::One(s.0)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FastVal, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(FastScalar(s)) = seq.next_element()? {
            items.push(s);
        }
        Ok(FastVal(RawVal::List(items)))
    }
}
