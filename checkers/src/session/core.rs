//! The shared core of the session, prefix, lost-write and convergence
//! checkers: every write and every read of a history, decomposed by key and
//! tied to the write it names.
//!
//! Workloads write unique values per key, so a read names the write it saw.
//! [`Core::derive`] walks the operations once, turns reads, writes, cas,
//! appends and transactions into [`WriteRec`]s and [`ReadRec`]s, and resolves
//! every value a read returned to its writer. What it promises:
//!
//! - A read whose value no operation wrote, or that two operations wrote, is
//!   set aside (counted in [`Core::unattributed_reads`]) rather than guessed.
//! - Reads that did not complete `ok` carry no value and are ignored.
//! - Keys inside transactions are interned next to the history's own keys,
//!   so `KeyId(i)` of the history is key `i` here too.
//! - Everything is linear in the size of the history (hashing, no search).
//!
//! The orders derived from this table (list orders, register real-time
//! order) live in [`super::order`].

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use faultline_histories::{History, Key, Op, Outcome, Process, F};
use serde_json::Value;

/// "No such write / read / position": a sentinel that keeps tables flat.
pub const NONE: u32 = u32::MAX;

/// A small, fast hasher for integer-like keys (the FxHash mix). The tables
/// here hash a million small keys; SipHash's protection against crafted
/// inputs buys nothing for a history file and costs a third of the time.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(buf));
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(i as u64);
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(i as u64);
    }
}

/// A `HashMap` with [`FxHasher`].
pub type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Who wrote each (key, value): integers (what workloads write) in a map of
/// their own, anything else by its canonical text (so `5` and `"5"` differ).
/// A value written twice maps to [`AMBIGUOUS`].
#[derive(Default)]
struct Writers {
    ints: FxMap<(u32, i64), u32>,
    texts: FxMap<(u32, Box<str>), u32>,
}

/// The writer of a value that two operations wrote.
const AMBIGUOUS: u32 = u32::MAX - 1;

impl Writers {
    /// Records `id` as the writer; returns the earlier writer if there was one.
    fn insert(&mut self, key: u32, v: &Value, id: u32) -> Option<u32> {
        let slot = match v.as_i64() {
            Some(i) => self.ints.entry((key, i)).or_insert(NONE),
            None => self.texts.entry((key, v.to_string().into())).or_insert(NONE),
        };
        match std::mem::replace(slot, id) {
            NONE => None,
            earlier => {
                *slot = AMBIGUOUS;
                Some(earlier)
            }
        }
    }

    /// The single writer of a value.
    fn get(&self, key: u32, v: &Value) -> Option<u32> {
        let w = match v.as_i64() {
            Some(i) => *self.ints.get(&(key, i))?,
            None => *self.texts.get(&(key, Box::<str>::from(v.to_string())))?,
        };
        (w != AMBIGUOUS).then_some(w)
    }
}

/// One write: a `write`, an `append`, the new value of a `cas`, or a `w` or
/// `append` micro-op of a transaction.
#[derive(Clone, Debug)]
pub struct WriteRec {
    /// Index into `history.ops`.
    pub op: u32,
    pub key: u32,
    /// Index of the micro-op inside a transaction, or [`NONE`].
    pub micro: u32,
    /// Position in [`Core::events`].
    pub ev: u32,
    /// Another operation wrote the same value to the same key: reads of it
    /// cannot name their writer.
    pub ambiguous: bool,
    /// The writing process, interned ([`Core::procs`]).
    pub proc: u32,
    /// When the operation was invoked.
    pub invoke: u64,
    /// When it completed, if it completed ok; `u64::MAX` otherwise (it may
    /// take effect at any time, or never).
    pub done_ok: u64,
    /// It certainly did not take effect.
    pub failed: bool,
    /// Its (process, key) pair, numbered ([`Core::pk_of`]).
    pub pk: u32,
}

/// What a read saw of one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State<'a> {
    /// A register: the write it names, or [`NONE`] for the initial (absent) value.
    Reg(u32),
    /// A list: the appends it shows, in order.
    List(&'a [u32]),
}

/// A [`State`] as stored: a list's elements live in [`Core::elems`], so a
/// million reads do not cost a million allocations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    Reg(u32),
    /// Start and length in [`Core::elems`].
    List(u32, u32),
}

/// One read of one key: a `read`, the expected value of an ok `cas`, or an
/// `r` micro-op of a transaction, that completed ok.
#[derive(Clone, Debug)]
pub struct ReadRec {
    pub op: u32,
    pub key: u32,
    /// The reading process, interned ([`Core::procs`]).
    pub proc: u32,
    /// The node that answered, or [`NONE`].
    pub node: u32,
    /// When the read was invoked and when it completed.
    pub invoke: u64,
    pub done: u64,
    /// A final read, taken after healing.
    pub is_final: bool,
    /// Its (process, key) pair, numbered ([`Core::pk_of`]).
    pub pk: u32,
    pub micro: u32,
    pub ev: u32,
    /// What it saw; see [`Core::state`].
    pub stored: Stored,
}

/// One step of a process, in the order it issued them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ev {
    Read(u32),
    Write(u32),
}

/// Everything the checkers need, derived once from a history.
pub struct Core<'h> {
    pub history: &'h History,
    /// `keys[i]` names key `i`; the history's keys come first.
    pub keys: Vec<Key>,
    /// True for keys that are lists (appended to, or read as arrays).
    pub list_key: Vec<bool>,
    /// Interned processes: `procs[i]` is process `i` of the records.
    pub procs: Vec<Process>,
    pub writes: Vec<WriteRec>,
    pub reads: Vec<ReadRec>,
    /// The elements of every list read, one after another.
    pub elems: Vec<u32>,
    /// `writes[w].failed`, packed tight: checkers ask it of every element
    /// they look at, and a million writes' records do not fit in cache.
    pub write_failed: Vec<bool>,
    /// True when some write failed at all (most histories: none).
    pub any_failed: bool,
    /// Reads and writes in the order operations were invoked; within a
    /// transaction, in micro-op order.
    pub events: Vec<Ev>,
    /// Reads set aside: the value was never written, or written twice.
    pub unattributed_reads: usize,
    /// Operations that took part (read or wrote something).
    pub ops_seen: usize,
    /// How (process, key) pairs are numbered: the per-session state of the
    /// checkers lives in vectors indexed by these numbers.
    pub pairs: Pairs,
    /// Indexes of the final operations (`"final": true`), in order.
    pub final_ops: Vec<u32>,
}

/// A read or write found in one operation, before values are resolved.
struct Raw<'a> {
    op: u32,
    key: u32,
    micro: u32,
    kind: RawKind<'a>,
}

enum RawKind<'a> {
    /// A written value and whether it is an append.
    Write(&'a Value, bool),
    Read(&'a Value),
}

impl<'h> Core<'h> {
    /// Derives the core of `history`.
    pub fn derive(history: &'h History) -> Core<'h> {
        let scan = scan_ops(history);
        let (raws, ops_seen) = extract_halves(history, &scan.keys);
        let list_key = classify_keys(&scan.keys.keys, &raws);
        let mut core = Core {
            history,
            list_key,
            procs: scan.procs,
            keys: scan.keys.keys,
            writes: Vec::new(),
            reads: Vec::new(),
            elems: Vec::new(),
            write_failed: Vec::new(),
            any_failed: false,
            events: Vec::with_capacity(raws.len()),
            unattributed_reads: 0,
            ops_seen,
            final_ops: scan.final_ops,
            pairs: Pairs::Dense { keys: 0 },
        };
        core.resolve(&raws, &scan.facts);
        core.write_failed = core.writes.iter().map(|w| w.failed).collect();
        core.any_failed = core.write_failed.contains(&true);
        core
    }

    /// Resolves writes and reads, and numbers (process, key) pairs on the
    /// other core meanwhile: numbering needs nothing else.
    fn resolve(&mut self, raws: &[Raw<'h>], facts: &[OpFacts]) {
        let (pks, pairs, read_raws) = std::thread::scope(|scope| {
            let (procs, nkeys) = (self.procs.len(), self.keys.len());
            let numbering = scope.spawn(move || number_pairs(raws, facts, procs, nkeys));
            let writers = self.collect_writes(raws, facts);
            let read_raws = self.collect_reads(raws, &writers, facts);
            let (pks, pairs) = numbering.join().expect("the numbering thread panicked");
            (pks, pairs, read_raws)
        });
        let raw_writes = raws
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s.kind, RawKind::Write(..)));
        for (w, (i, _)) in self.writes.iter_mut().zip(raw_writes) {
            w.pk = pks[i];
        }
        for (r, i) in self.reads.iter_mut().zip(read_raws) {
            r.pk = pks[i as usize];
        }
        self.pairs = pairs;
    }

    fn collect_writes(&mut self, raws: &[Raw<'h>], facts: &[OpFacts]) -> Writers {
        let writes = raws.iter().filter(|s| matches!(s.kind, RawKind::Write(..))).count();
        self.writes.reserve_exact(writes);
        let mut writers = Writers::default();
        writers.ints.reserve(writes);
        for s in raws {
            let RawKind::Write(v, _) = s.kind else { continue };
            let id = self.writes.len() as u32;
            let mut ambiguous = false;
            if let Some(earlier) = writers.insert(s.key, v, id) {
                if earlier != AMBIGUOUS {
                    self.writes[earlier as usize].ambiguous = true;
                }
                ambiguous = true;
            }
            let op = &facts[s.op as usize];
            let done_ok = if op.outcome == Outcome::Ok { op.done } else { u64::MAX };
            self.writes.push(WriteRec {
                op: s.op,
                key: s.key,
                micro: s.micro,
                ev: NONE,
                ambiguous,
                proc: op.proc,
                invoke: op.invoke,
                done_ok,
                failed: op.outcome == Outcome::Fail,
                pk: NONE,
            });
        }
        writers
    }

    /// Resolves reads to writers (the two halves of the history on two
    /// threads) and lays out the event order. Returns the index in `raws` of
    /// each read kept.
    fn collect_reads(&mut self, raws: &[Raw<'h>], writers: &Writers, facts: &[OpFacts]) -> Vec<u32> {
        let mid = raws.len() / 2;
        let ctx = ResolveCtx {
            list_key: &self.list_key,
            writers,
            facts,
        };
        let (first, second) = std::thread::scope(|scope| {
            let second = scope.spawn(|| ctx.run(raws, mid..raws.len()));
            let first = ctx.run(raws, 0..mid);
            (first, second.join().expect("a resolving thread panicked"))
        });
        self.unattributed_reads = first.unattributed + second.unattributed;
        self.reads = first.reads;
        self.elems = first.elems;
        let shift = self.elems.len() as u32;
        self.reads.extend(second.reads.into_iter().map(|mut r| {
            if let Stored::List(at, len) = r.stored {
                r.stored = Stored::List(at + shift, len);
            }
            r
        }));
        self.elems.extend_from_slice(&second.elems);
        let mut read_raws = first.raws;
        read_raws.extend(second.raws);
        self.lay_out_events(raws, &read_raws);
        read_raws
    }

    /// Every write and kept read, in the order of `raws`.
    fn lay_out_events(&mut self, raws: &[Raw<'h>], read_raws: &[u32]) {
        self.events = Vec::with_capacity(self.writes.len() + self.reads.len());
        let (mut w, mut r) = (0usize, 0usize);
        for (i, s) in raws.iter().enumerate() {
            let ev = self.events.len() as u32;
            if matches!(s.kind, RawKind::Write(..)) {
                self.writes[w].ev = ev;
                self.events.push(Ev::Write(w as u32));
                w += 1;
            } else if read_raws.get(r) == Some(&(i as u32)) {
                self.reads[r].ev = ev;
                self.events.push(Ev::Read(r as u32));
                r += 1;
            }
        }
    }

    /// The number of a (process, key) pair, if that pair read or wrote.
    pub fn pk_of(&self, proc: u32, key: u32) -> Option<u32> {
        match &self.pairs {
            Pairs::Dense { keys } => Some(proc * keys + key),
            Pairs::Sparse(ids) => ids.get(&(proc, key)).copied(),
        }
    }

    /// How many pair numbers there are (the size of per-session vectors).
    pub fn pk_count(&self) -> usize {
        match &self.pairs {
            Pairs::Dense { keys } => self.procs.len() * *keys as usize,
            Pairs::Sparse(ids) => ids.len(),
        }
    }

    /// What read `r` saw.
    pub fn state(&self, r: u32) -> State<'_> {
        match self.reads[r as usize].stored {
            Stored::Reg(w) => State::Reg(w),
            Stored::List(at, len) => State::List(&self.elems[at as usize..(at + len) as usize]),
        }
    }

    /// The operation of a write.
    pub fn wop(&self, w: u32) -> &'h Op {
        &self.history.ops[self.writes[w as usize].op as usize]
    }

    /// The operation of a read.
    pub fn rop(&self, r: u32) -> &'h Op {
        &self.history.ops[self.reads[r as usize].op as usize]
    }

    /// The value a write wrote.
    pub fn wvalue(&self, w: u32) -> &'h Value {
        let rec = &self.writes[w as usize];
        let op = self.wop(w);
        match op.f {
            F::Cas => op.input.get(1).unwrap_or(&Value::Null),
            F::Txn => micro(&op.input, rec.micro)
                .and_then(|m| m.get(2))
                .unwrap_or(&Value::Null),
            _ => &op.input,
        }
    }

    /// The value a read returned.
    pub fn rvalue(&self, r: u32) -> &'h Value {
        let rec = &self.reads[r as usize];
        let op = self.rop(r);
        match op.f {
            F::Cas => op.input.get(0).unwrap_or(&Value::Null),
            F::Txn => micro(&op.output, rec.micro)
                .and_then(|m| m.get(2))
                .unwrap_or(&Value::Null),
            _ => &op.output,
        }
    }

    /// The name of key `k`.
    pub fn key(&self, k: u32) -> &Key {
        &self.keys[k as usize]
    }

    /// The process of a write.
    pub fn wproc(&self, w: u32) -> Process {
        self.procs[self.writes[w as usize].proc as usize]
    }

    /// The process of a read.
    pub fn rproc(&self, r: u32) -> Process {
        self.procs[self.reads[r as usize].proc as usize]
    }

    /// True when the write certainly took effect.
    pub fn w_ok(&self, w: u32) -> bool {
        self.writes[w as usize].done_ok != u64::MAX
    }
}

/// What the checkers need of an operation, copied out of [`Op`] once: a
/// million operations' records are too large to walk again and again.
#[derive(Clone, Copy)]
struct OpFacts {
    /// The process, interned.
    proc: u32,
    invoke: u64,
    /// Completion time, or `u64::MAX`.
    done: u64,
    /// The node that answered, or [`NONE`].
    node: u32,
    outcome: Outcome,
    is_final: bool,
}

/// What resolving reads needs, shared by the threads that do it.
#[derive(Clone, Copy)]
struct ResolveCtx<'a> {
    list_key: &'a [bool],
    writers: &'a Writers,
    facts: &'a [OpFacts],
}

/// The reads of part of the history, resolved; list elements in their own
/// arena, positions relative to it.
struct Resolved {
    reads: Vec<ReadRec>,
    elems: Vec<u32>,
    /// Index in `raws` of each read kept.
    raws: Vec<u32>,
    unattributed: usize,
}

impl ResolveCtx<'_> {
    /// Resolves the reads among `raws[range]`.
    fn run<'h>(&self, raws: &[Raw<'h>], range: std::ops::Range<usize>) -> Resolved {
        let part = &raws[range.clone()];
        let elems = part
            .iter()
            .map(|s| match s.kind {
                RawKind::Read(Value::Array(xs)) => xs.len(),
                _ => 0,
            })
            .sum();
        let mut out = Resolved {
            reads: Vec::with_capacity(part.len()),
            elems: Vec::with_capacity(elems),
            raws: Vec::with_capacity(part.len()),
            unattributed: 0,
        };
        // Each list key's latest read: the next read usually repeats it as a
        // prefix, and comparing values in order is cheaper than hashing.
        let mut last_list: Vec<(Option<&'h Value>, u32)> = vec![(None, NONE); self.list_key.len()];
        for (i, s) in part.iter().enumerate() {
            let RawKind::Read(v) = s.kind else { continue };
            let Some(stored) = self.resolve(&mut out, s.key, v, last_list[s.key as usize]) else {
                out.unattributed += 1;
                continue;
            };
            if matches!(stored, Stored::List(..)) {
                last_list[s.key as usize] = (Some(v), out.reads.len() as u32);
            }
            let op = &self.facts[s.op as usize];
            out.raws.push((range.start + i) as u32);
            out.reads.push(ReadRec {
                op: s.op,
                key: s.key,
                proc: op.proc,
                node: op.node,
                invoke: op.invoke,
                done: op.done,
                is_final: op.is_final,
                pk: NONE,
                micro: s.micro,
                ev: NONE,
                stored,
            });
        }
        out
    }

    /// The state a read value names, or `None` when some value in it has no
    /// single writer. `last` is the key's latest list read (its value and
    /// record), whose elements are reused where the new read repeats them.
    fn resolve(&self, out: &mut Resolved, key: u32, v: &Value, last: (Option<&Value>, u32)) -> Option<Stored> {
        if !self.list_key[key as usize] {
            return match v {
                Value::Null => Some(Stored::Reg(NONE)),
                x => self.writers.get(key, x).map(Stored::Reg),
            };
        }
        let start = out.elems.len();
        let xs = match v {
            Value::Null => return Some(Stored::List(start as u32, 0)),
            Value::Array(xs) => xs,
            _ => return None,
        };
        let (before, at): (&[Value], usize) = match last {
            (Some(Value::Array(p)), r) => match out.reads[r as usize].stored {
                Stored::List(at, _) => (p, at as usize),
                Stored::Reg(_) => (&[], 0),
            },
            _ => (&[], 0),
        };
        let same = xs.iter().zip(before).take_while(|(a, b)| a == b).count();
        out.elems.extend_from_within(at..at + same);
        for x in &xs[same..] {
            match self.writers.get(key, x) {
                Some(w) => out.elems.push(w),
                None => {
                    out.elems.truncate(start);
                    return None;
                }
            }
        }
        Some(Stored::List(start as u32, xs.len() as u32))
    }
}

/// The `i`th micro-op of a transaction value.
fn micro(v: &Value, i: u32) -> Option<&Value> {
    v.as_array()?.get(i as usize)
}

/// Interns keys: the history's first, then keys found in transactions.
/// Looked up by `&str` or integer, so a micro-op's key is not copied.
pub(crate) struct KeyTable {
    keys: Vec<Key>,
    strs: HashMap<String, u32>,
    ints: FxMap<i64, u32>,
}

impl KeyTable {
    pub(crate) fn new(h: &History) -> KeyTable {
        let mut t = KeyTable {
            keys: h.keys.clone(),
            strs: HashMap::new(),
            ints: FxMap::default(),
        };
        for (i, k) in h.keys.iter().enumerate() {
            match k {
                Key::Str(s) => t.strs.insert(s.clone(), i as u32),
                Key::Int(n) => t.ints.insert(*n, i as u32),
            };
        }
        t
    }

    /// Interns the keys a transaction names, in micro-op order.
    fn intern_txn(&mut self, op: &Op) {
        let source = if op.outcome == Outcome::Ok {
            &op.output
        } else {
            &op.input
        };
        for m in source.as_array().map_or(&[][..], Vec::as_slice) {
            if let Some([_, k, _]) = m.as_array().map(|a| a.as_slice()) {
                self.intern(k);
            }
        }
    }

    /// The id of a key named inside a micro-op, once interned.
    fn get(&self, v: &Value) -> Option<u32> {
        match v {
            Value::String(s) => self.strs.get(s.as_str()).copied(),
            Value::Number(n) => self.ints.get(&n.as_i64()?).copied(),
            _ => None,
        }
    }

    /// The id of a key named inside a micro-op, if it is a string or integer.
    pub(crate) fn intern(&mut self, v: &Value) -> Option<u32> {
        let found = match v {
            Value::String(s) => self.strs.get(s.as_str()).copied(),
            Value::Number(n) => self.ints.get(&n.as_i64()?).copied(),
            _ => return None,
        };
        if found.is_some() {
            return found;
        }
        let id = self.keys.len() as u32;
        match v {
            Value::String(s) => {
                self.strs.insert(s.clone(), id);
                self.keys.push(Key::Str(s.clone()));
            }
            _ => {
                let n = v.as_i64()?;
                self.ints.insert(n, id);
                self.keys.push(Key::Int(n));
            }
        }
        Some(id)
    }
}

/// The reads and writes of `history.ops[range]`, and how many operations
/// had any.
fn extract<'h>(history: &'h History, range: std::ops::Range<usize>, keys: &KeyTable) -> (Vec<Raw<'h>>, usize) {
    let mut raws = Vec::with_capacity(range.len() + range.len() / 4);
    let mut seen = 0;
    for i in range {
        let before = raws.len();
        raw_steps(i as u32, &history.ops[i], keys, &mut raws);
        seen += usize::from(raws.len() > before);
    }
    (raws, seen)
}

/// The reads and writes operation `i` performed, appended to `out`. Writes
/// are kept whatever their outcome (a failed write must never be read; an
/// indeterminate one may be); reads only when the operation completed ok.
fn raw_steps<'h>(i: u32, op: &'h Op, keys: &KeyTable, out: &mut Vec<Raw<'h>>) {
    let ok = op.outcome == Outcome::Ok;
    let Some(key) = op.key.map(|k| k.0) else {
        if op.f == F::Txn {
            txn_steps(i, op, keys, out);
        }
        return;
    };
    let mut one = |kind| {
        out.push(Raw {
            op: i,
            key,
            micro: NONE,
            kind,
        })
    };
    match op.f {
        F::Read if ok => one(RawKind::Read(&op.output)),
        F::Write => one(RawKind::Write(&op.input, false)),
        F::Append => one(RawKind::Write(&op.input, true)),
        F::Cas => cas_steps(i, op, key, out),
        F::Txn => txn_steps(i, op, keys, out),
        _ => {}
    }
}

/// An ok cas read its expected value and wrote its new one; any other cas
/// only (maybe) wrote.
fn cas_steps<'h>(i: u32, op: &'h Op, key: u32, out: &mut Vec<Raw<'h>>) {
    let Some([expected, new]) = op.input.as_array().map(|a| a.as_slice()) else {
        return;
    };
    if op.outcome == Outcome::Ok {
        out.push(Raw {
            op: i,
            key,
            micro: NONE,
            kind: RawKind::Read(expected),
        });
    }
    out.push(Raw {
        op: i,
        key,
        micro: NONE,
        kind: RawKind::Write(new, false),
    });
}

/// The micro-ops of a transaction: reads from its result (when ok), writes
/// from its argument.
fn txn_steps<'h>(i: u32, op: &'h Op, keys: &KeyTable, out: &mut Vec<Raw<'h>>) {
    let ok = op.outcome == Outcome::Ok;
    let source = if ok { &op.output } else { &op.input };
    let Some(micros) = source.as_array() else {
        return;
    };
    for (m_i, m) in micros.iter().enumerate() {
        let Some([f, k, v]) = m.as_array().map(|a| a.as_slice()) else {
            continue;
        };
        let Some(key) = keys.get(k) else { continue };
        let kind = match f.as_str() {
            Some("r") if ok => RawKind::Read(v),
            Some("w") => RawKind::Write(v, false),
            Some("append") => RawKind::Write(v, true),
            _ => continue,
        };
        out.push(Raw {
            op: i,
            key,
            micro: m_i as u32,
            kind,
        });
    }
}

/// Above this many (process, key) combinations, pairs are numbered through
/// a hash table instead of arithmetically.
pub const DENSE_PAIRS_MAX: usize = 1 << 22;

/// How (process, key) pairs are numbered.
pub enum Pairs {
    /// `process * keys + key`: every combination has a number (few
    /// processes and keys; no hashing).
    Dense { keys: u32 },
    /// The pairs that occur, numbered in order of first sight.
    Sparse(FxMap<(u32, u32), u32>),
}

/// Numbers the (process, key) pair of every step: the number of each step,
/// and the numbering.
fn number_pairs(raws: &[Raw<'_>], facts: &[OpFacts], procs: usize, keys: usize) -> (Vec<u32>, Pairs) {
    if procs.saturating_mul(keys) <= DENSE_PAIRS_MAX {
        let pks = raws
            .iter()
            .map(|s| facts[s.op as usize].proc * keys as u32 + s.key)
            .collect();
        return (pks, Pairs::Dense { keys: keys as u32 });
    }
    let mut ids: FxMap<(u32, u32), u32> = FxMap::default();
    let pks = raws
        .iter()
        .map(|s| {
            let next = ids.len() as u32;
            *ids.entry((facts[s.op as usize].proc, s.key)).or_insert(next)
        })
        .collect();
    (pks, Pairs::Sparse(ids))
}

/// What one pass over the operations finds: every key interned, the final
/// reads, the processes in order of appearance, and each op's facts.
struct Scan {
    keys: KeyTable,
    final_ops: Vec<u32>,
    procs: Vec<Process>,
    facts: Vec<OpFacts>,
}

fn scan_ops(history: &History) -> Scan {
    let mut keys = KeyTable::new(history);
    let mut final_ops = Vec::new();
    let mut proc_ids: FxMap<Process, u32> = FxMap::default();
    let mut procs = Vec::new();
    let mut facts = Vec::with_capacity(history.ops.len());
    for (i, op) in history.ops.iter().enumerate() {
        if op.f == F::Txn {
            keys.intern_txn(op);
        }
        if op.is_final {
            final_ops.push(i as u32);
        }
        let proc = *proc_ids.entry(op.process).or_insert_with(|| {
            procs.push(op.process);
            procs.len() as u32 - 1
        });
        facts.push(OpFacts {
            proc,
            invoke: op.invoke_time,
            done: op.complete_time.unwrap_or(u64::MAX),
            node: op.node.map_or(NONE, |n| n.0),
            outcome: op.outcome,
            is_final: op.is_final,
        });
    }
    Scan {
        keys,
        final_ops,
        procs,
        facts,
    }
}

/// Every key is interned, so the two halves of the history can be taken
/// apart on two threads; returns the raw reads and writes in order, and how
/// many operations were looked at.
fn extract_halves<'h>(history: &'h History, keys: &KeyTable) -> (Vec<Raw<'h>>, usize) {
    let mid = history.ops.len() / 2;
    let (mut first, second) = std::thread::scope(|scope| {
        let second = scope.spawn(|| extract(history, mid..history.ops.len(), keys));
        let first = extract(history, 0..mid, keys);
        (first, second.join().expect("an extracting thread panicked"))
    });
    let ops_seen = first.1 + second.1;
    first.0.extend(second.0);
    (first.0, ops_seen)
}

/// A key is a list when something appends to it or reads it as an array.
fn classify_keys(keys: &[Key], raws: &[Raw<'_>]) -> Vec<bool> {
    let mut list = vec![false; keys.len()];
    for s in raws {
        match s.kind {
            RawKind::Write(_, true) | RawKind::Read(Value::Array(_)) => list[s.key as usize] = true,
            _ => {}
        }
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_histories::{Event, EventType};
    use serde_json::json;

    fn ev(i: u64, p: u64, kind: EventType, f: F, k: &str, v: Value) -> Event {
        Event::new(i, i * 10, Process::Client(p), kind, f, v).with_key(k)
    }

    #[test]
    fn resolves_reads_to_their_writers_and_sets_aside_the_rest() {
        let h = History::from_events([
            ev(0, 1, EventType::Invoke, F::Write, "x", json!(1)),
            ev(1, 1, EventType::Ok, F::Write, "x", json!(1)),
            ev(2, 1, EventType::Invoke, F::Read, "x", json!(null)),
            ev(3, 1, EventType::Ok, F::Read, "x", json!(1)),
            ev(4, 1, EventType::Invoke, F::Read, "x", json!(null)),
            ev(5, 1, EventType::Ok, F::Read, "x", json!(99)),
            ev(6, 1, EventType::Invoke, F::Append, "l", json!(7)),
            ev(7, 1, EventType::Ok, F::Append, "l", json!(7)),
            ev(8, 1, EventType::Invoke, F::Read, "l", json!(null)),
            ev(9, 1, EventType::Ok, F::Read, "l", json!([7])),
        ])
        .unwrap();
        let c = Core::derive(&h);
        assert_eq!(c.writes.len(), 2);
        assert_eq!(c.reads.len(), 2);
        assert_eq!(c.state(0), State::Reg(0));
        assert_eq!(c.state(1), State::List(&[1]));
        assert_eq!(c.unattributed_reads, 1);
        assert_eq!(c.list_key, vec![false, true]);
        assert_eq!(c.events.len(), 4);
    }

    #[test]
    fn transaction_keys_are_interned_after_the_histories_keys() {
        let h = History::from_events([
            Event::new(
                0,
                0,
                Process::Client(1),
                EventType::Invoke,
                F::Txn,
                json!([["w", "a", 1], ["w", 5, 2]]),
            ),
            Event::new(
                1,
                1,
                Process::Client(1),
                EventType::Ok,
                F::Txn,
                json!([["w", "a", 1], ["w", 5, 2]]),
            ),
            Event::new(
                2,
                2,
                Process::Client(2),
                EventType::Invoke,
                F::Txn,
                json!([["r", "a", null], ["r", 5, null]]),
            ),
            Event::new(
                3,
                3,
                Process::Client(2),
                EventType::Ok,
                F::Txn,
                json!([["r", "a", 1], ["r", 5, null]]),
            ),
        ])
        .unwrap();
        let c = Core::derive(&h);
        assert_eq!(c.keys, vec![Key::Str("a".into()), Key::Int(5)]);
        assert_eq!(c.state(0), State::Reg(0));
        assert_eq!(c.state(1), State::Reg(NONE));
        assert_eq!(c.rvalue(0), &json!(1));
        assert_eq!(c.wvalue(1), &json!(2));
    }

    #[test]
    fn pairs_are_numbered_by_arithmetic_when_few_and_by_table_past_the_limit() {
        let v = json!(1);
        let raw = |op, key| Raw {
            op,
            key,
            micro: NONE,
            kind: RawKind::Read(&v),
        };
        let raws = [raw(0, 5), raw(1, 5), raw(0, 7)];
        let facts = OpFacts {
            proc: 3,
            invoke: 0,
            done: 1,
            node: NONE,
            outcome: Outcome::Ok,
            is_final: false,
        };
        let facts = [facts, facts];
        let (pks, pairs) = number_pairs(&raws, &facts, 4, 8);
        assert_eq!(pks, vec![29, 29, 31]);
        assert!(matches!(pairs, Pairs::Dense { keys: 8 }));
        let (pks, pairs) = number_pairs(&raws, &facts, 1 << 20, 1 << 10);
        assert_eq!(pks, vec![0, 0, 1]);
        assert!(matches!(pairs, Pairs::Sparse(ref ids) if ids.len() == 2));
    }
}
