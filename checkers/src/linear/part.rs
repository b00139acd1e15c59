//! Parts of a history and their encoding for the search.
//!
//! Linearizability is compositional (Herlihy and Wing): a history of
//! independent objects is linearizable exactly when each object's
//! sub-history is. [`partition`] splits by key (or keeps one part holding
//! everything, for models that span keys), and [`encode`] turns a part's
//! operations into the search's compact form, dropping the ones that
//! constrain nothing.

use faultline_histories::{History, KeyId};

use super::search::SearchOp;
use crate::model::{Model, ModelError, Role};

/// The operations of one object (or of the whole history).
#[derive(Clone, Debug)]
pub struct Part {
    /// The key, when the history was split by key and the operations have one.
    pub key: Option<KeyId>,
    /// Indices into `History::ops`, in invocation order.
    pub ops: Vec<usize>,
}

impl Part {
    /// How the part is named in reports: `key k3`, `the history` (split, but
    /// the operations have no key), `the whole history`.
    pub fn label(&self, history: &History, split: bool) -> String {
        match (split, self.key) {
            (false, _) => "the whole history".into(),
            (true, Some(k)) => format!("key {}", history.key(k)),
            (true, None) => "the history".into(),
        }
    }
}

/// Splits `history` by key when `split`, else returns one part.
pub fn partition(history: &History, split: bool) -> Vec<Part> {
    if !split {
        return vec![Part {
            key: None,
            ops: (0..history.ops.len()).collect(),
        }];
    }
    // Part of each key id (slot 0: operations without a key), dense.
    let mut index: Vec<usize> = vec![usize::MAX; history.keys.len() + 1];
    let mut parts: Vec<Part> = Vec::new();
    for (i, op) in history.ops.iter().enumerate() {
        let slot = op.key.map_or(0, |k| k.0 as usize + 1);
        if slot >= index.len() {
            index.resize(slot + 1, usize::MAX);
        }
        if index[slot] == usize::MAX {
            index[slot] = parts.len();
            parts.push(Part {
                key: op.key,
                ops: Vec::new(),
            });
        }
        parts[index[slot]].ops.push(i);
    }
    parts
}

/// A part ready for the search.
pub struct Encoded<M: Model> {
    pub model: M,
    pub ops: Vec<SearchOp<M::Op>>,
    /// For each search operation, its index in `History::ops`.
    pub origin: Vec<usize>,
    /// How many operations the model took into account (before dropping
    /// crashed ones that cannot matter).
    pub considered: usize,
}

/// Encodes the operations of `part` with `model`, adding to `covered` each
/// one the model could read (ignored ones included: read, and judged to
/// constrain nothing). After an operation it cannot read, the rest are
/// still read, for `covered` only, and the first error is returned.
pub fn encode<M: Model>(
    history: &History,
    part: &Part,
    mut model: M,
    covered: &mut Vec<usize>,
) -> Result<Encoded<M>, ModelError> {
    let mut ops = Vec::with_capacity(part.ops.len());
    let mut origin = Vec::with_capacity(part.ops.len());
    let mut first_error = None;
    for &i in &part.ops {
        let op = &history.ops[i];
        let role = match model.encode(history, op) {
            Ok(role) => role,
            Err(e) => {
                first_error.get_or_insert(e);
                continue;
            }
        };
        covered.push(i);
        if first_error.is_some() {
            continue;
        }
        let (encoded, ret) = match role {
            Role::Ignored => continue,
            // An ok op always has a completion; were it missing, a return
            // at infinity still says "took effect, some time after its call".
            Role::Determinate(o) => (o, Some(op.complete_index.unwrap_or(u64::MAX))),
            Role::Crashed(o) => (o, None),
        };
        ops.push(SearchOp {
            op: encoded,
            call: op.invoke_index,
            ret,
            optional: false,
        });
        origin.push(i);
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let considered = ops.len();
    let keep = needed(&ops);
    let mut k = keep.iter();
    origin.retain(|_| *k.next().unwrap_or(&true));
    let mut k = keep.iter();
    ops.retain(|_| *k.next().unwrap_or(&true));
    Ok(Encoded {
        model,
        ops,
        origin,
        considered,
    })
}

/// Which operations can matter: all but the optional ones (crashed, or
/// relaxed) invoked after the last mandatory operation returned. Such an
/// operation can only be linearized after every mandatory one, so dropping
/// it from any linearization leaves a linearization: dropping it changes
/// no verdict.
pub fn needed<O>(ops: &[SearchOp<O>]) -> Vec<bool> {
    let last_ret = ops.iter().filter(|o| o.mandatory()).filter_map(|o| o.ret).max();
    ops.iter()
        .map(|o| o.mandatory() || last_ret.is_some_and(|r| o.call < r))
        .collect()
}
