//! The first pass over the transactions: each key's datatype, who wrote
//! each value, the reads of each key, and each transaction's consistency
//! with itself (Elle's `internal`).
//!
//! A read is *external* when its transaction had not yet written the key:
//! only external reads say which version another transaction installed, so
//! only they make wr and rw edges. A later read in the same transaction is
//! checked against what the transaction itself read and wrote before it,
//! and no read may show a value its transaction writes only later
//! (Elle's `future-read`, a cycle of one transaction: G1c).

use crate::anomaly::{Anomaly, Findings};
use crate::error::{shorten, TxnError};
use crate::parse::{KeyId, Mop, Status, TxnId, Txns, ValId};

/// What a key holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Datatype {
    /// Only read, never written: nothing to infer.
    Unknown,
    /// Appends, reads return the whole list.
    List,
    /// Writes of unique values, reads return one value.
    Register,
}

impl Datatype {
    fn name(self) -> &'static str {
        match self {
            Datatype::List => "list-append",
            _ => "rw-register",
        }
    }
}

/// Who wrote a value to a key.
#[derive(Clone, Copy, Debug)]
pub struct Writer {
    pub txn: TxnId,
    /// The transaction's last write to that key: reading any other of its
    /// writes is an intermediate read (G1b).
    pub last: bool,
}

/// A read by a committed transaction.
#[derive(Clone, Copy, Debug)]
pub struct ReadAt {
    pub txn: TxnId,
    /// Global index of the micro-op in `Txns::mops`.
    pub mop: u32,
    /// The transaction had not written the key before this read.
    pub external: bool,
    /// The transaction writes the key after this read.
    pub writes_after: bool,
}

/// The first pass's result.
pub struct Gathered {
    pub datatype: Vec<Datatype>,
    /// Who wrote each value, by value id (which names the key too);
    /// [`Writer::NONE`] for values nobody wrote.
    pub writers: Vec<Writer>,
    /// Reads of committed transactions, by key.
    pub reads: Vec<Vec<ReadAt>>,
}

impl Gathered {
    /// Who wrote `val` to `key`, if anyone did. (A value's id already
    /// names its key; the key keeps call sites honest about which is meant.)
    pub fn writer(&self, _key: KeyId, val: ValId) -> Option<Writer> {
        self.writers
            .get(val as usize)
            .copied()
            .filter(|w| w.txn != Writer::NONE.txn)
    }
}

impl Writer {
    /// No writer.
    pub const NONE: Writer = Writer {
        txn: TxnId::MAX,
        last: false,
    };
}

/// Runs the first pass; checks internal consistency into `found`.
pub fn gather(tx: &Txns, found: &mut Findings) -> Result<Gathered, TxnError> {
    let datatype = datatypes(tx)?;
    let mut g = Gathered {
        writers: vec![Writer::NONE; tx.vals.values.len()],
        reads: vec![Vec::new(); datatype.len()],
        datatype,
    };
    for t in 0..tx.txns.len() as TxnId {
        writers_of(tx, t, &mut g.writers)?;
        if tx.txns[t as usize].status == Status::Committed {
            reads_of(tx, t, &g.datatype, &mut g.reads);
            internal(tx, t, &g.datatype, found);
        }
    }
    Ok(g)
}

/// Each key's datatype, from its writes, then from its reads' shapes.
fn datatypes(tx: &Txns) -> Result<Vec<Datatype>, TxnError> {
    let mut d = vec![Datatype::Unknown; tx.keys.values.len()];
    for (t, txn) in tx.txns.iter().enumerate() {
        for m in tx.mops_of(t as TxnId) {
            let want = match m {
                Mop::Append { .. } => Datatype::List,
                Mop::Write { .. } => Datatype::Register,
                _ => continue,
            };
            let k = m.key() as usize;
            if d[k] != Datatype::Unknown && d[k] != want {
                return Err(TxnError::MixedKey {
                    key: tx.key_name(m.key()),
                    index: txn.invoke_index,
                });
            }
            d[k] = want;
        }
    }
    for (t, txn) in tx.txns.iter().enumerate() {
        for m in tx.mops_of(t as TxnId) {
            let k = m.key() as usize;
            let shape = match m {
                Mop::ReadList { .. } => Datatype::List,
                Mop::ReadReg { val: Some(_), .. } => Datatype::Register,
                _ => continue,
            };
            if d[k] == Datatype::Unknown {
                d[k] = shape;
            } else if d[k] != shape {
                return Err(read_shape(tx, txn.invoke_index, m, d[k]));
            }
        }
    }
    Ok(d)
}

fn read_shape(tx: &Txns, index: u64, m: &Mop, d: Datatype) -> TxnError {
    let got = match *m {
        Mop::ReadList { start, len, .. } => tx.list_name(tx.list(start, len)),
        Mop::ReadReg { val: Some(v), .. } => shorten(&serde_json::Value::String(tx.val_name(v))),
        _ => "null".to_owned(),
    };
    TxnError::ReadShape {
        index,
        key: tx.key_name(m.key()),
        got,
        datatype: d.name(),
    }
}

/// Records who wrote each value of transaction `t`, and which write is its
/// last to each key.
fn writers_of(tx: &Txns, t: TxnId, writers: &mut [Writer]) -> Result<(), TxnError> {
    let mops = tx.mops_of(t);
    for (i, m) in mops.iter().enumerate() {
        let (Mop::Append { key, val } | Mop::Write { key, val }) = *m else {
            continue;
        };
        let last = !mops[i + 1..].iter().any(|n| n.is_write() && n.key() == key);
        let prev = std::mem::replace(&mut writers[val as usize], Writer { txn: t, last });
        if prev.txn != Writer::NONE.txn {
            return Err(TxnError::DuplicateWrite {
                key: tx.key_name(key),
                value: tx.val_name(val),
                first: tx.txns[prev.txn as usize].invoke_index,
                second: tx.txns[t as usize].invoke_index,
            });
        }
    }
    Ok(())
}

/// Files the reads of committed transaction `t` under their keys.
fn reads_of(tx: &Txns, t: TxnId, d: &[Datatype], reads: &mut [Vec<ReadAt>]) {
    let (start, _) = tx.txns[t as usize].mops;
    let mops = tx.mops_of(t);
    for (i, m) in mops.iter().enumerate() {
        if !matches!(m, Mop::ReadList { .. } | Mop::ReadReg { .. }) {
            continue;
        }
        let k = m.key();
        if d[k as usize] == Datatype::Unknown {
            continue;
        }
        let writes = |ms: &[Mop]| ms.iter().any(|n| n.is_write() && n.key() == k);
        reads[k as usize].push(ReadAt {
            txn: t,
            mop: start + i as u32,
            external: !writes(&mops[..i]),
            writes_after: writes(&mops[i + 1..]),
        });
    }
}

/// What a read of a list returned: reads of null on a list key mean the
/// empty list, as Jepsen's list-append clients record an absent key.
pub fn list_of<'a>(tx: &'a Txns, m: &Mop) -> Option<&'a [ValId]> {
    match *m {
        Mop::ReadList { start, len, .. } => Some(tx.list(start, len)),
        Mop::ReadReg { val: None, .. } => Some(&[]),
        _ => None,
    }
}

/// Elle's `internal`: each read after the first of a key must show what
/// the transaction read before plus what it wrote since; a first read
/// after the transaction's own writes must show those writes.
fn internal(tx: &Txns, t: TxnId, d: &[Datatype], found: &mut Findings) {
    let mops = tx.mops_of(t);
    for (i, m) in mops.iter().enumerate() {
        let k = m.key();
        let problem = match d[k as usize] {
            Datatype::List => internal_list(tx, &mops[..i], m),
            Datatype::Register => internal_register(tx, &mops[..i], m),
            Datatype::Unknown => None,
        };
        if let Some(why) = future_read(tx, &mops[i + 1..], m) {
            let name = tx.name(t);
            found.push(Anomaly::about(
                tx,
                "future-read",
                Some(k),
                &[t],
                format!("{name} {why}: it read its own write before making it"),
            ));
        }
        if let Some(why) = problem {
            let name = tx.name(t);
            let key = tx.key_name(k);
            found.push(Anomaly::about(
                tx,
                "internal",
                Some(k),
                &[t],
                format!("{name} is inconsistent with itself on {key}: {why}"),
            ));
        }
    }
}

/// A read that shows a value its own transaction writes only later.
fn future_read(tx: &Txns, after: &[Mop], m: &Mop) -> Option<String> {
    let k = m.key();
    let shows = |v: ValId| match *m {
        Mop::ReadList { start, len, .. } => tx.list(start, len).contains(&v),
        Mop::ReadReg { val, .. } => val == Some(v),
        _ => false,
    };
    after.iter().find_map(|n| match *n {
        Mop::Append { key, val } | Mop::Write { key, val } if key == k && shows(val) => Some(format!(
            "read {} from {}, a value it wrote later in the same transaction",
            tx.val_name(val),
            tx.key_name(k)
        )),
        _ => None,
    })
}

fn internal_list(tx: &Txns, before: &[Mop], m: &Mop) -> Option<String> {
    let read = list_of(tx, m)?;
    let k = m.key();
    let mut own: Vec<ValId> = Vec::new();
    let mut prior: Option<&[ValId]> = None;
    for p in before.iter().rev().filter(|p| p.key() == k) {
        match *p {
            Mop::Append { val, .. } => own.push(val),
            _ => {
                if let Some(l) = list_of(tx, p) {
                    prior = Some(l);
                    break;
                }
            }
        }
    }
    own.reverse();
    match prior {
        Some(p) => {
            let want: Vec<ValId> = p.iter().chain(&own).copied().collect();
            (want != read).then(|| {
                format!(
                    "it read {} but had read {} and appended {} since",
                    tx.list_name(read),
                    tx.list_name(p),
                    tx.list_name(&own)
                )
            })
        }
        None => (!read.ends_with(&own)).then(|| {
            format!(
                "it read {} after appending {}, which the read does not end with",
                tx.list_name(read),
                tx.list_name(&own)
            )
        }),
    }
}

fn internal_register(tx: &Txns, before: &[Mop], m: &Mop) -> Option<String> {
    let Mop::ReadReg { val: got, .. } = *m else {
        return None;
    };
    let k = m.key();
    let show = |v: Option<ValId>| v.map_or("null".to_owned(), |v| tx.val_name(v));
    for p in before.iter().rev().filter(|p| p.key() == k) {
        match *p {
            Mop::Write { val, .. } => {
                return (got != Some(val)).then(|| format!("it read {} after writing {}", show(got), tx.val_name(val)));
            }
            Mop::ReadReg { val, .. } => {
                return (got != val).then(|| format!("it read {} after reading {}", show(got), show(val)));
            }
            _ => {}
        }
    }
    None
}
