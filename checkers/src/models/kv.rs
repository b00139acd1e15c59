//! One key of Porcupine's key-value store: a string, initially `""`, with
//! `read` (get: returns the whole string), `write` (put: replaces it) and
//! `append` (concatenates the argument to the end).
//!
//! Values are strings; a `null` value stands for the empty string (a key
//! never written reads as `""` or as `null`), and a number stands for its
//! decimal text. Crashed reads and failed operations constrain nothing; a
//! crashed put or append may take effect once after its invocation, or
//! never.
//!
//! States are hash-consed without building strings: a state is a node of
//! a tree of appends (its parent state and the piece appended to it), with
//! the string's length and polynomial hash kept beside it, so an append
//! costs a few integer operations and one probe of a table keyed by length
//! and hash, however long the strings grow (building and hashing each new
//! string was half of the check time on Porcupine's c50 histories). States
//! stay canonical, equal strings one id: among the nodes of the probed
//! length and hash, the one this very append made is known by its parent
//! and piece, and any other is compared text by text (the hash only finds
//! candidates, it never decides). Then a get is one integer comparison.
//! The table lives in a `RefCell`: `step` stays a pure function of its
//! arguments (equal inputs, equal ids), the table only remembers what it
//! already computed.

use std::cell::RefCell;

use faultline_histories::{History, Op, Outcome, F};
use serde_json::Value;

use crate::linear::search::SearchOp;
use crate::linear::table::FxMap;
use crate::linear::unique::AsRegister;
use crate::model::{Effect, Model, ModelError, Role};

/// An encoded key-value operation: `Get` and `Put` carry the state (node)
/// of their string, `Append` the id of its piece's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvOp {
    Get(u32),
    Put(u32),
    Append(u32),
}

/// The base of the polynomial hash (odd, so its powers never vanish).
const BASE: u64 = 0x0000_0100_0000_01b3;

/// One distinct text an operation carries.
#[derive(Debug)]
struct Text {
    text: Box<str>,
    hash: u64,
    /// `BASE` to the power of the text's length: appending it multiplies
    /// the hash of the string before by this.
    shift: u64,
}

impl Text {
    fn new(text: &str) -> Text {
        let (hash, shift) = text.bytes().fold((0u64, 1u64), |(h, s), b| {
            (h.wrapping_mul(BASE).wrapping_add(u64::from(b)), s.wrapping_mul(BASE))
        });
        Text {
            text: text.into(),
            hash,
            shift,
        }
    }
}

/// No node.
const NONE: u32 = u32::MAX;

/// One distinct string: `parent`'s string followed by text `piece`.
#[derive(Clone, Copy, Debug)]
struct Node {
    parent: u32,
    piece: u32,
    len: usize,
    hash: u64,
    /// The next node whose length and hash are this one's, or [`NONE`].
    same: u32,
}

/// Every distinct text and string.
#[derive(Debug)]
struct Strings {
    /// Text 0 is `""`.
    texts: Vec<Text>,
    text_ids: FxMap<Box<str>, u32>,
    /// Node 0 is `""`.
    nodes: Vec<Node>,
    /// A key of (length, hash) to the first node that has them.
    by_hash: FxMap<u64, u32>,
    /// Two buffers for comparing strings.
    scratch: (Vec<u8>, Vec<u8>),
}

impl Default for Strings {
    fn default() -> Strings {
        let mut s = Strings {
            texts: Vec::new(),
            text_ids: FxMap::default(),
            nodes: vec![Node {
                parent: NONE,
                piece: 0,
                len: 0,
                hash: 0,
                same: NONE,
            }],
            by_hash: FxMap::default(),
            scratch: (Vec::new(), Vec::new()),
        };
        s.text("");
        s.by_hash.insert(hash_key(0, 0), 0);
        s
    }
}

/// The key of `by_hash` for a string of `len` bytes and hash `hash`.
fn hash_key(len: usize, hash: u64) -> u64 {
    hash ^ (len as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl Strings {
    /// The id of text `s`.
    fn text(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.text_ids.get(s) {
            return id;
        }
        let id = self.texts.len() as u32;
        self.texts.push(Text::new(s));
        self.text_ids.insert(s.into(), id);
        id
    }

    /// The node of string `s`.
    fn intern(&mut self, s: &str) -> u32 {
        let t = self.text(s);
        self.append(0, t)
    }

    /// The node of `state`'s string followed by text `piece`: found by
    /// the concatenation's length and hash among the nodes that have them
    /// (the node made by this very append, or an equal string reached
    /// another way), or new.
    fn append(&mut self, state: u32, piece: u32) -> u32 {
        if piece == 0 {
            return state;
        }
        let (from, t) = (self.nodes[state as usize], &self.texts[piece as usize]);
        let len = from.len + t.text.len();
        let hash = from.hash.wrapping_mul(t.shift).wrapping_add(t.hash);
        let first = self.by_hash.get(&hash_key(len, hash)).copied().unwrap_or(NONE);
        let mut candidate = first;
        while candidate != NONE {
            let c = self.nodes[candidate as usize];
            let made_here = c.parent == state && c.piece == piece;
            if c.len == len && c.hash == hash && (made_here || self.equal(candidate, state, piece)) {
                return candidate;
            }
            candidate = c.same;
        }
        let id = self.nodes.len() as u32;
        self.nodes.push(Node {
            parent: state,
            piece,
            len,
            hash,
            same: first,
        });
        self.by_hash.insert(hash_key(len, hash), id);
        id
    }

    /// Whether node `node`'s string is `state`'s followed by `piece`.
    fn equal(&mut self, node: u32, state: u32, piece: u32) -> bool {
        let (mut a, mut b) = std::mem::take(&mut self.scratch);
        self.spell(node, &mut a);
        self.spell(state, &mut b);
        b.extend_from_slice(self.texts[piece as usize].text.as_bytes());
        let same = a == b;
        self.scratch = (a, b);
        same
    }

    /// Writes node `node`'s string into `out` (cleared first).
    fn spell(&self, node: u32, out: &mut Vec<u8>) {
        out.clear();
        let mut pieces = Vec::new();
        let mut at = node;
        while at != 0 {
            let n = self.nodes[at as usize];
            pieces.push(n.piece);
            at = n.parent;
        }
        for &p in pieces.iter().rev() {
            out.extend_from_slice(self.texts[p as usize].text.as_bytes());
        }
    }
}

/// The key-value string model.
#[derive(Debug, Default)]
pub struct Kv {
    strings: RefCell<Strings>,
}

fn text<'v>(op: &Op, v: &'v Value) -> Result<std::borrow::Cow<'v, str>, ModelError> {
    match v {
        Value::Null => Ok("".into()),
        Value::String(s) => Ok(s.as_str().into()),
        Value::Number(n) => Ok(n.to_string().into()),
        other => Err(ModelError::bad_value("kv", op, "a string", other)),
    }
}

impl Kv {
    /// The state whose string is `v`'s text.
    fn state_of(&self, op: &Op, v: &Value) -> Result<u32, ModelError> {
        Ok(self.strings.borrow_mut().intern(&text(op, v)?))
    }

    /// The text id of `v`'s text.
    fn piece_of(&self, op: &Op, v: &Value) -> Result<u32, ModelError> {
        Ok(self.strings.borrow_mut().text(&text(op, v)?))
    }

    /// Writes the string of state `node` into `out` (cleared first).
    pub(super) fn spell_state(&self, node: u32, out: &mut Vec<u8>) {
        self.strings.borrow().spell(node, out);
    }

    /// Writes text `piece` into `out` (cleared first).
    pub(super) fn spell_piece(&self, piece: u32, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(self.strings.borrow().texts[piece as usize].text.as_bytes());
    }
}

impl Model for Kv {
    type State = u32;
    type Op = KvOp;

    fn name(&self) -> &'static str {
        "kv"
    }

    fn init(&self) -> u32 {
        0
    }

    fn encode(&mut self, _history: &History, op: &Op) -> Result<Role<KvOp>, ModelError> {
        let crashed = op.outcome.is_indeterminate();
        let encoded = match (&op.f, op.outcome) {
            (_, Outcome::Fail) => return Ok(Role::Ignored),
            (F::Read, Outcome::Ok) => KvOp::Get(self.state_of(op, &op.output)?),
            (F::Read, _) => return Ok(Role::Ignored),
            (F::Write, _) => KvOp::Put(self.state_of(op, &op.input)?),
            (F::Append, _) => KvOp::Append(self.piece_of(op, &op.input)?),
            _ => return Err(ModelError::unsupported(self.name(), op)),
        };
        Ok(if crashed {
            Role::Crashed(encoded)
        } else {
            Role::Determinate(encoded)
        })
    }

    /// Node ids; a step compares them or (appends) probes the model's
    /// table of strings once.
    fn small_state(&self, state: &u32) -> Option<u32> {
        Some(*state)
    }

    fn step(&self, state: &u32, op: &KvOp) -> Option<u32> {
        match *op {
            KvOp::Get(v) => (*state == v).then_some(v),
            KvOp::Put(v) => Some(v),
            // Text 0 is the empty string: appending it changes nothing.
            KvOp::Append(0) => Some(*state),
            KvOp::Append(p) => Some(self.strings.borrow_mut().append(*state, p)),
        }
    }

    fn effect(&self, op: &KvOp) -> Effect {
        match op {
            KvOp::Get(_) => Effect::ReadOnly,
            KvOp::Put(_) => Effect::Overwrite,
            KvOp::Append(_) => Effect::Update,
        }
    }

    fn relax(&self, op: &KvOp) -> Option<KvOp> {
        match op {
            KvOp::Get(_) => None,
            other => Some(*other),
        }
    }

    /// With unique pieces, a key is a register (see [`super::kv_unique`]).
    fn as_register(&self, ops: &[SearchOp<KvOp>]) -> Option<AsRegister> {
        super::kv_unique::translate(self, ops)
    }

    fn describe_state(&self, state: &u32) -> String {
        let mut bytes = Vec::new();
        self.strings.borrow().spell(*state, &mut bytes);
        Value::String(String::from_utf8_lossy(&bytes).into_owned()).to_string()
    }

    /// A new state is a node and its entries in two hash tables.
    fn state_heap_bytes(&self, _state: &u32) -> usize {
        std::mem::size_of::<Node>() + 64
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn append_concatenates_and_get_sees_the_whole_string() {
        let kv = Kv::default();
        let (a, b, z, ab) = {
            let mut t = kv.strings.borrow_mut();
            (t.text("x 1 y"), t.text("x 2 y"), t.intern("z"), t.intern("x 1 yx 2 y"))
        };
        let s = kv.step(&kv.init(), &KvOp::Append(a)).unwrap();
        let s = kv.step(&s, &KvOp::Append(b)).unwrap();
        assert_eq!(s, ab);
        assert_eq!(kv.describe_state(&s), "\"x 1 yx 2 y\"");
        assert!(kv.step(&s, &KvOp::Get(z)).is_none());
        assert_eq!(kv.step(&s, &KvOp::Put(z)), Some(z));
    }

    /// The same string by different appends is one state, whichever way
    /// it was reached first.
    #[test]
    fn equal_strings_are_one_state() {
        let kv = Kv::default();
        let mut t = kv.strings.borrow_mut();
        let (a, b, c, ab, bc) = (t.text("a"), t.text("b"), t.text("c"), t.text("ab"), t.text("bc"));
        let mut chain = |pieces: &[u32]| pieces.iter().fold(0, |s, &p| t.append(s, p));
        let (left, right, three) = (chain(&[ab, c]), chain(&[a, bc]), chain(&[a, b, c]));
        assert_eq!((left, right), (three, three));
        assert_eq!(t.intern("abc"), three);
        assert_ne!(t.intern("acb"), three);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]
        /// States against plain strings: two sequences of puts and appends
        /// reach one state exactly when they build one string.
        #[test]
        fn states_are_equal_exactly_when_strings_are(
            runs in proptest::collection::vec(proptest::collection::vec((0u8..2, 0u8..6), 0..6), 2..6)
        ) {
            let words = ["", "a", "b", "ab", "ba", "aab"];
            let kv = Kv::default();
            let mut t = kv.strings.borrow_mut();
            let mut built = Vec::new();
            for run in &runs {
                let (mut state, mut plain) = (0u32, String::new());
                for &(put, w) in run {
                    let word = words[usize::from(w)];
                    if put == 1 {
                        state = t.intern(word);
                        plain = word.to_owned();
                    } else {
                        let piece = t.text(word);
                        state = t.append(state, piece);
                        plain.push_str(word);
                    }
                }
                let mut spelled = Vec::new();
                t.spell(state, &mut spelled);
                prop_assert_eq!(&spelled, plain.as_bytes());
                built.push((state, plain));
            }
            for (s1, p1) in &built {
                for (s2, p2) in &built {
                    prop_assert_eq!(s1 == s2, p1 == p2);
                }
            }
        }
    }
}
