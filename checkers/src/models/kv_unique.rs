//! One key of the key-value string model as a register whose written
//! values are unique, so that the polynomial check of `linear::unique`
//! decides it instead of the search (which, on Porcupine's c50 histories,
//! cannot decide some keys in minutes).
//!
//! It applies when every put and append of the key carries a piece of
//! text of its own: not empty, distinct from every other piece, and no
//! piece a proper suffix of another (Porcupine's `x P N y` pieces, and
//! faultline's workloads). Then a string splits into pieces in at most one
//! way (read from the end, at most one piece fits), and every string the
//! key can hold is a put's piece or `""`, then appended pieces, each once.
//! So a read names the operation of its last piece (the value it saw), and
//! each append seen in a read with a piece before it names its
//! predecessor: the operation that must have taken effect just before it.
//!
//! The translation, index for index (register values: `0` is `""`,
//! `i + 1` the string operation `i` made):
//! - a put is a write of its own value;
//! - an append some read saw is a compare-and-set from its predecessor's
//!   value (`0` when a read saw it first) to its own;
//! - an append no read saw is a write of its own value: after it the
//!   string ends with a piece nobody read, which only a put can hide, so
//!   what may follow it is what may follow a write nobody read;
//! - a read is a read of its last piece's value (`0` for `""`), or of a
//!   value nobody wrote when no string the key can hold is the one it saw
//!   (it does not split into pieces, a put's piece is not first, a piece
//!   comes twice): a garbage read.
//!
//! Why the verdicts agree: in any order of the operations, the register
//! holds the value of the operation whose piece ends the string (or `0`
//! for `""`), and when some read saw that operation the string is exactly
//! the chain of predecessors up to it. Each step keeps that: a
//! compare-and-set succeeds only from its predecessor's value, where the
//! string is the predecessor's chain; and a read succeeds in one model
//! exactly when it does in the other. The one step that succeeds on the
//! string and not on the register is a seen append placed after another
//! than its predecessor; but then the read that saw it can never succeed
//! (the piece before it is fixed from then on, until a put removes it for
//! good), so no valid order of the string does that.
//!
//! Two reads that name different predecessors of one append cannot both
//! be right (the append took effect once, and what came before it never
//! changes afterwards): the translation names them as a proof of two
//! operations, which no register shows.

use crate::linear::search::SearchOp;
use crate::linear::table::FxMap;
use crate::linear::unique::AsRegister;
use crate::models::kv::{Kv, KvOp};
use crate::models::RegisterOp;

/// No predecessor seen yet.
const UNSEEN: u32 = u32::MAX;

/// The pieces of a key's puts and appends.
struct Pieces {
    /// Each piece's text, to the index of its operation.
    by_text: FxMap<Box<[u8]>, u32>,
    /// The distinct lengths of the pieces, shortest first.
    lens: Vec<usize>,
    /// Whether operation `i` is a put.
    is_put: Vec<bool>,
}

impl Pieces {
    /// The pieces of `ops`, or `None` when one is empty, two are equal or
    /// one is a proper suffix of another.
    fn of(kv: &Kv, ops: &[SearchOp<KvOp>]) -> Option<Pieces> {
        let mut by_text: FxMap<Box<[u8]>, u32> = FxMap::default();
        let mut is_put = vec![false; ops.len()];
        let mut text = Vec::new();
        for (i, o) in ops.iter().enumerate() {
            match o.op {
                KvOp::Put(node) => {
                    kv.spell_state(node, &mut text);
                    is_put[i] = true;
                }
                KvOp::Append(piece) => kv.spell_piece(piece, &mut text),
                KvOp::Get(_) => continue,
            }
            if text.is_empty() || by_text.insert(text.as_slice().into(), i as u32).is_some() {
                return None;
            }
        }
        let mut lens: Vec<usize> = by_text.keys().map(|t| t.len()).collect();
        lens.sort_unstable();
        lens.dedup();
        let pieces = Pieces { by_text, lens, is_put };
        pieces.suffix_free().then_some(pieces)
    }

    /// Whether no piece is a proper suffix of another.
    fn suffix_free(&self) -> bool {
        self.by_text.keys().all(|t| {
            self.lens
                .iter()
                .take_while(|&&l| l < t.len())
                .all(|&l| !self.by_text.contains_key(&t[t.len() - l..]))
        })
    }

    /// Splits `s` into pieces, from the end: `out` gets their operations
    /// in the string's order; false when `s` does not split.
    fn split(&self, s: &[u8], out: &mut Vec<u32>) -> bool {
        out.clear();
        let mut end = s.len();
        while end > 0 {
            let found = self
                .lens
                .iter()
                .take_while(|&&l| l <= end)
                .find_map(|&l| self.by_text.get(&s[end - l..end]).map(|&op| (op, l)));
            let Some((op, l)) = found else { return false };
            out.push(op);
            end -= l;
        }
        out.reverse();
        true
    }
}

/// What the reads say, gathered read by read.
struct Seen {
    /// The register value of each operation's predecessor, [`UNSEEN`]
    /// while no read saw it.
    preds: Vec<u32>,
    /// The read that named it.
    named_by: Vec<u32>,
    /// When a read was last found to hold each operation (repeats).
    stamp: Vec<u32>,
    /// The next value nobody writes (for a garbage read).
    garbage: u32,
    conflict: Option<[u32; 2]>,
}

impl Seen {
    fn new(ops: usize) -> Seen {
        Seen {
            preds: vec![UNSEEN; ops],
            named_by: vec![u32::MAX; ops],
            stamp: vec![u32::MAX; ops],
            garbage: ops as u32 + 1,
            conflict: None,
        }
    }

    /// The value read `read` saw, its string split into `pieces`; records
    /// the predecessors it names.
    fn read(&mut self, read: u32, pieces: &[u32], is_put: &[bool]) -> u32 {
        let Some(&last) = pieces.last() else { return 0 };
        let mut possible = true;
        for (k, &op) in pieces.iter().enumerate() {
            possible &= (k == 0 || !is_put[op as usize]) && self.stamp[op as usize] != read;
            self.stamp[op as usize] = read;
        }
        if !possible {
            self.garbage += 1;
            return self.garbage - 1;
        }
        for (k, &op) in pieces.iter().enumerate() {
            let pred = match k {
                0 if is_put[op as usize] => continue,
                0 => 0,
                _ => pieces[k - 1] + 1,
            };
            self.name(op, pred, read);
        }
        last + 1
    }

    /// Read `read` says `op`'s predecessor is value `pred`.
    fn name(&mut self, op: u32, pred: u32, read: u32) {
        let i = op as usize;
        if self.preds[i] == UNSEEN {
            (self.preds[i], self.named_by[i]) = (pred, read);
        } else if self.preds[i] != pred && self.conflict.is_none() {
            self.conflict = Some([self.named_by[i], read]);
        }
    }
}

/// `ops` (one key's) as a register's, when the pieces allow it (module
/// doc); `None` otherwise.
pub fn translate(kv: &Kv, ops: &[SearchOp<KvOp>]) -> Option<AsRegister> {
    let pieces = Pieces::of(kv, ops)?;
    let mut seen = Seen::new(ops.len());
    let (mut text, mut split) = (Vec::new(), Vec::new());
    let mut read_values = vec![0u32; ops.len()];
    for (i, o) in ops.iter().enumerate() {
        if let KvOp::Get(node) = o.op {
            kv.spell_state(node, &mut text);
            read_values[i] = if pieces.split(&text, &mut split) {
                seen.read(i as u32, &split, &pieces.is_put)
            } else {
                seen.garbage += 1;
                seen.garbage - 1
            };
        }
    }
    let register = ops
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let own = i as u32 + 1;
            let op = match o.op {
                KvOp::Get(_) => RegisterOp::Read(read_values[i]),
                KvOp::Append(_) if seen.preds[i] != UNSEEN => RegisterOp::Cas(seen.preds[i], own),
                KvOp::Put(_) | KvOp::Append(_) => RegisterOp::Write(own),
            };
            SearchOp {
                op,
                call: o.call,
                ret: o.ret,
                optional: o.optional,
            }
        })
        .collect();
    Some(AsRegister {
        ops: register,
        conflict: seen.conflict,
    })
}
