//! Transactions as the checker sees them: a history's `txn` operations
//! turned into compact [`Txn`]s of [`Mop`]s over interned keys and values.
//!
//! A history of a million transactions holds several million micro-ops and
//! tens of millions of list elements, so nothing here keeps a
//! `serde_json::Value`: keys and values are interned once into `u32` ids
//! ([`Interner`]), list reads live in one flat vector, and each micro-op is
//! sixteen bytes. What a transaction's value means depends on how it ended:
//! an `ok` transaction's completion holds what its reads returned; a `fail`
//! or `info` one carries only its invocation (reads unknown).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use faultline_histories::{single_key_txn, History, Outcome, Process, F};
use serde_json::Value;

use crate::error::{shorten, TxnError};

/// Index of a transaction in [`Txns::txns`].
pub type TxnId = u32;
/// An interned key.
pub type KeyId = u32;
/// An interned value.
pub type ValId = u32;

/// What became of a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Completed ok: it committed, and its reads are known.
    Committed,
    /// `info` or never completed: it may or may not have committed; its
    /// reads are unknown.
    Indeterminate,
    /// `fail`: it certainly did not commit.
    Aborted,
}

/// One micro-operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mop {
    /// `["append", k, v]`.
    Append { key: KeyId, val: ValId },
    /// `["w", k, v]`.
    Write { key: KeyId, val: ValId },
    /// A read of a list: `len` elements of [`Txns::elems`] from `start`.
    ReadList { key: KeyId, start: u32, len: u32 },
    /// A read of a register: `None` is null (the initial, unwritten state).
    ReadReg { key: KeyId, val: Option<ValId> },
    /// A read whose value is unknown: the transaction did not complete ok,
    /// or the read returned null where a list was expected before any
    /// datatype was known.
    ReadUnknown { key: KeyId },
}

impl Mop {
    /// The key the micro-op touches.
    pub fn key(&self) -> KeyId {
        match *self {
            Mop::Append { key, .. }
            | Mop::Write { key, .. }
            | Mop::ReadList { key, .. }
            | Mop::ReadReg { key, .. }
            | Mop::ReadUnknown { key } => key,
        }
    }

    /// True for appends and writes.
    pub fn is_write(&self) -> bool {
        matches!(self, Mop::Append { .. } | Mop::Write { .. })
    }
}

/// One transaction.
#[derive(Clone, Debug)]
pub struct Txn {
    /// Position of the operation in `History::ops`.
    pub op: usize,
    pub process: Process,
    pub status: Status,
    /// Invoke index of the operation: the transaction's name (`T881`).
    pub invoke_index: u64,
    pub complete_index: Option<u64>,
    pub invoke_time: u64,
    pub complete_time: Option<u64>,
    /// Its micro-ops: `Txns::mops[start..end]`.
    pub mops: (u32, u32),
}

/// A scalar as it is interned: integers by value (cheap to hash, the common
/// case), anything else by its JSON text.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scalar {
    Int(i64),
    Json(Box<str>),
}

impl Scalar {
    /// How a JSON scalar is interned.
    pub fn of(v: &Value) -> Scalar {
        match v.as_i64() {
            Some(i) => Scalar::Int(i),
            None => match v {
                // Strings print bare, so keys read as `x`, not `"x"`.
                Value::String(s) => Scalar::Json(s.as_str().into()),
                other => Scalar::Json(other.to_string().into()),
            },
        }
    }
}

impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Json(s) => f.write_str(s),
        }
    }
}

/// A multiplicative hasher for the interner: SipHash costs more than the
/// rest of parsing for integer-heavy histories, and the keys here are not
/// chosen by an adversary who could profit from collisions beyond slowing
/// one check down.
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// A `HashMap` with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// Scalars to dense ids and back: keys, or the values of each key.
///
/// A value's id names the pair (key, value): the same number written to
/// two keys gets two ids, which is all the checker ever compares, and lets
/// it find a value's writer by indexing a vector. Each key has maps of its
/// own, so the maps a read touches are small and stay in cache where one
/// map of every value of a million-transaction history would not; integers,
/// nearly every value in practice, have a map of their own.
#[derive(Default, Debug)]
pub struct Interner {
    ints: Vec<FastMap<i64, u32>>,
    others: Vec<FastMap<Box<str>, u32>>,
    pub values: Vec<Scalar>,
}

impl Interner {
    /// The id of `s` in space `space` (a key, or 0 for keys themselves).
    fn intern_in(&mut self, space: u32, s: Scalar) -> Result<u32, TxnError> {
        let next = u32::try_from(self.values.len()).map_err(|_| TxnError::TooLarge {
            what: "distinct values",
            limit: u64::from(u32::MAX),
        })?;
        let space = space as usize;
        if space >= self.ints.len() {
            self.ints.resize_with(space + 1, FastMap::default);
            self.others.resize_with(space + 1, FastMap::default);
        }
        let s = match s {
            Scalar::Int(i) => {
                let id = *self.ints[space].entry(i).or_insert(next);
                if id == next {
                    self.values.push(Scalar::Int(i));
                }
                return Ok(id);
            }
            Scalar::Json(s) => s,
        };
        if let Some(&id) = self.others[space].get(&s) {
            return Ok(id);
        }
        self.values.push(Scalar::Json(s.clone()));
        self.others[space].insert(s, next);
        Ok(next)
    }

    /// The scalar an id names.
    pub fn get(&self, id: u32) -> &Scalar {
        &self.values[id as usize]
    }
}

/// Every transaction of a history, compactly.
#[derive(Default, Debug)]
pub struct Txns {
    pub txns: Vec<Txn>,
    pub mops: Vec<Mop>,
    /// Elements of every list read, back to back.
    pub elems: Vec<ValId>,
    pub keys: Interner,
    /// Values, per key: a value's id names its key too.
    pub vals: Interner,
}

impl Txns {
    /// The micro-ops of transaction `t`.
    pub fn mops_of(&self, t: TxnId) -> &[Mop] {
        let (a, b) = self.txns[t as usize].mops;
        &self.mops[a as usize..b as usize]
    }

    /// The elements a list read returned.
    pub fn list(&self, start: u32, len: u32) -> &[ValId] {
        &self.elems[start as usize..(start + len) as usize]
    }

    /// A key's printed form.
    pub fn key_name(&self, k: KeyId) -> String {
        self.keys.get(k).to_string()
    }

    /// A value's printed form.
    pub fn val_name(&self, v: ValId) -> String {
        self.vals.get(v).to_string()
    }

    /// A list printed as Elle prints it: `[1 2 3]`.
    pub fn list_name(&self, l: &[ValId]) -> String {
        let parts: Vec<String> = l.iter().map(|&v| self.val_name(v)).collect();
        format!("[{}]", parts.join(" "))
    }

    /// `T<invoke index>`: how reports name a transaction.
    pub fn name(&self, t: TxnId) -> String {
        format!("T{}", self.txns[t as usize].invoke_index)
    }
}

/// A micro-op's function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MopF {
    Append,
    Write,
    Read,
}

impl MopF {
    /// The function a micro-op names, if it is one the checker knows.
    pub fn parse(s: &str) -> Option<MopF> {
        match s {
            "append" => Some(MopF::Append),
            "w" | "write" => Some(MopF::Write),
            "r" | "read" => Some(MopF::Read),
            _ => None,
        }
    }
}

/// A micro-op's value as written in the history, before interning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawVal {
    Null,
    One(Scalar),
    List(Vec<Scalar>),
}

/// A micro-op as written in the history, before interning: what both the
/// reader of a [`History`] and the streaming reader ([`crate::stream`])
/// produce, so the two intern alike.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawMop {
    Append { key: Scalar, val: Scalar },
    Write { key: Scalar, val: Scalar },
    Read { key: Scalar, val: RawVal },
}

impl RawMop {
    /// The micro-op `f` names, from its key and value.
    pub fn new(f: MopF, key: Scalar, val: RawVal) -> Option<RawMop> {
        Some(match (f, val) {
            (MopF::Read, val) => RawMop::Read { key, val },
            (MopF::Append, RawVal::One(val)) => RawMop::Append { key, val },
            (MopF::Write, RawVal::One(val)) => RawMop::Write { key, val },
            _ => return None,
        })
    }

    /// A micro-op from its JSON form `[f, key, value]`. A written value is
    /// interned as [`Scalar::of`] has it, whatever its shape.
    pub fn from_value(m: &Value) -> Result<RawMop, &'static str> {
        let parts = m.as_array().ok_or("a micro-op must be a list [f, key, value]")?;
        let [f, k, v] = parts.as_slice() else {
            return Err("a micro-op must have three elements [f, key, value]");
        };
        let f = f.as_str().ok_or("a micro-op's function must be a string")?;
        let f = MopF::parse(f).ok_or("unknown micro-op function: expected append, r, read, w or write")?;
        let key = Scalar::of(k);
        Ok(match (f, v) {
            (MopF::Append, v) => RawMop::Append {
                key,
                val: Scalar::of(v),
            },
            (MopF::Write, v) => RawMop::Write {
                key,
                val: Scalar::of(v),
            },
            (MopF::Read, Value::Array(items)) => RawMop::Read {
                key,
                val: RawVal::List(items.iter().map(Scalar::of).collect()),
            },
            (MopF::Read, Value::Null) => RawMop::Read { key, val: RawVal::Null },
            (MopF::Read, v) => RawMop::Read {
                key,
                val: RawVal::One(Scalar::of(v)),
            },
        })
    }
}

/// A transaction's micro-ops from its JSON value; `index` names the
/// operation in errors.
pub fn txn_value(value: &Value, index: u64) -> Result<Vec<RawMop>, TxnError> {
    let list = value.as_array().ok_or_else(|| TxnError::NotAList {
        index,
        got: shorten(value),
    })?;
    list.iter()
        .enumerate()
        .map(|(position, m)| {
            RawMop::from_value(m).map_err(|why| TxnError::BadMicroOp {
                index,
                position,
                why,
                got: shorten(m),
            })
        })
        .collect()
}

impl Txns {
    /// Interns `raw` as the micro-ops of a transaction; `known_reads` is
    /// false when its reads hold nothing (it did not complete ok). Returns
    /// the range of [`Txns::mops`] they took.
    pub fn push_mops(&mut self, raw: Vec<RawMop>, known_reads: bool) -> Result<(u32, u32), TxnError> {
        if self.mops.len() + raw.len() > u32::MAX as usize / 2 || self.elems.len() > u32::MAX as usize / 2 {
            return Err(TxnError::TooLarge {
                what: "micro-ops or list elements",
                limit: u64::from(u32::MAX / 2),
            });
        }
        let start = self.mops.len() as u32;
        for m in raw {
            let mop = self.intern_mop(m, known_reads)?;
            self.mops.push(mop);
        }
        Ok((start, self.mops.len() as u32))
    }

    fn intern_mop(&mut self, m: RawMop, known_reads: bool) -> Result<Mop, TxnError> {
        Ok(match m {
            RawMop::Append { key, val } => {
                let key = self.keys.intern_in(0, key)?;
                let val = self.vals.intern_in(key, val)?;
                Mop::Append { key, val }
            }
            RawMop::Write { key, val } => {
                let key = self.keys.intern_in(0, key)?;
                let val = self.vals.intern_in(key, val)?;
                Mop::Write { key, val }
            }
            RawMop::Read { key, val } => {
                let key = self.keys.intern_in(0, key)?;
                self.intern_read(key, val, known_reads)?
            }
        })
    }

    fn intern_read(&mut self, key: KeyId, val: RawVal, known_reads: bool) -> Result<Mop, TxnError> {
        Ok(match val {
            _ if !known_reads => Mop::ReadUnknown { key },
            RawVal::Null => Mop::ReadReg { key, val: None },
            RawVal::One(v) => Mop::ReadReg {
                key,
                val: Some(self.vals.intern_in(key, v)?),
            },
            RawVal::List(items) => {
                let start = self.elems.len() as u32;
                for item in items {
                    let id = self.vals.intern_in(key, item)?;
                    self.elems.push(id);
                }
                Mop::ReadList {
                    key,
                    start,
                    len: self.elems.len() as u32 - start,
                }
            }
        })
    }

    /// Checks there is room for one more transaction.
    pub fn room_for_one(&self) -> Result<(), TxnError> {
        if u32::try_from(self.txns.len() + 1).is_err() {
            return Err(TxnError::TooLarge {
                what: "transactions",
                limit: u64::from(u32::MAX),
            });
        }
        Ok(())
    }
}

/// What became of an operation that ended with `outcome`.
pub fn status_of(outcome: Outcome) -> Status {
    match outcome {
        Outcome::Ok => Status::Committed,
        Outcome::Fail => Status::Aborted,
        Outcome::Info | Outcome::Pending => Status::Indeterminate,
    }
}

/// Reads every `txn` operation of `history`; other operations are left for
/// other checkers. When the history has transactions, its single-key
/// `read`, `write`, `append` and `cas` operations are transactions too
/// ([`faultline_histories::single_key_txn`]): faultline's multi-key workload writes one key at a
/// time and reads several in a `txn`, and a read of such a write must find
/// it, never call it a garbage read. A history without transactions gives
/// none (its registers are for the other checkers, whose values need not be
/// unique).
pub fn parse(history: &History) -> Result<Txns, TxnError> {
    let mut out = Txns::default();
    if !history.ops.iter().any(|op| op.f == F::Txn) {
        return Ok(out);
    }
    for (i, op) in history.ops.iter().enumerate() {
        let single;
        let value = if op.f == F::Txn {
            op.value()
        } else {
            match op.key.and_then(|k| single_key_txn(&op.f, history.key(k), op.value())) {
                Some(v) => {
                    single = v;
                    &single
                }
                None => continue,
            }
        };
        out.room_for_one()?;
        let status = status_of(op.outcome);
        let raw = txn_value(value, op.invoke_index)?;
        let mops = out.push_mops(raw, status == Status::Committed)?;
        out.txns.push(Txn {
            op: i,
            process: op.process,
            status,
            invoke_index: op.invoke_index,
            complete_index: op.complete_index,
            invoke_time: op.invoke_time,
            complete_time: op.complete_time,
            mops,
        });
    }
    Ok(out)
}
