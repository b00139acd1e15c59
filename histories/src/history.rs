//! Operations: invocations paired with their completions.
//!
//! Checkers reason about operations, not lines. [`HistoryBuilder`] pairs each
//! completion with the latest invocation of the same process (the rule of
//! `HISTORY_FORMAT.md`) and turns every invocation that never completed into a
//! [`Outcome::Pending`] operation: a crashed operation that may have taken
//! effect at any time after its invocation, or never. Keys and node names are
//! interned, so a million-operation history stays small and checkers can
//! group by key with integer comparisons.

use std::collections::HashMap;

use serde_json::Value;

use crate::error::HistoryError;
use crate::event::{Event, EventType, Key, Process, F};

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Took effect; `output` is its result.
    Ok,
    /// Certainly did not take effect.
    Fail,
    /// Unknown (timeout, lost connection): may have taken effect, or not.
    Info,
    /// Invoked but never completed (the controller stopped first): as
    /// uncertain as `Info`.
    Pending,
}

impl Outcome {
    /// True when the operation may or may not have taken effect.
    pub fn is_indeterminate(self) -> bool {
        matches!(self, Outcome::Info | Outcome::Pending)
    }
}

/// An interned key: an index into [`History::keys`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub u32);

/// An interned node name: an index into [`History::nodes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

/// One client operation: an invocation and how it ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Op {
    pub process: Process,
    pub f: F,
    pub key: Option<KeyId>,
    /// The invocation's `value`: the argument.
    pub input: Value,
    /// The completion's `value`: the result (null for `info` and pending).
    pub output: Value,
    pub outcome: Outcome,
    /// Index of the invoke event in the file.
    pub invoke_index: u64,
    /// Index of the completion event, if there was one.
    pub complete_index: Option<u64>,
    pub invoke_time: u64,
    pub complete_time: Option<u64>,
    pub node: Option<NodeId>,
    pub error: Option<String>,
    /// A read the harness took after healing every fault.
    pub is_final: bool,
}

impl Op {
    /// The value that describes what the operation did: the result when it
    /// completed ok, otherwise the argument it was invoked with.
    pub fn value(&self) -> &Value {
        match self.outcome {
            Outcome::Ok => &self.output,
            _ => &self.input,
        }
    }
}

/// A single-key operation as the micro-ops of a transaction, in the
/// history format's JSON: `read` as `[["r", k, v]]`, `write` as
/// `[["w", k, v]]`, `append` as `[["append", k, v]]`, `cas` as
/// `[["r", k, expected], ["w", k, new]]` (what a compare-and-set reads and
/// writes). `value` is the value of the event that says what happened (a
/// read's is null, unknown, unless it completed ok). `None` for any other
/// function, or a cas whose value is not `[expected, new]`. Checkers that
/// judge transactions use it where single-key operations stand beside them
/// (faultline's multi-key workload writes one key and reads several).
pub fn single_key_txn(f: &F, key: &Key, value: &Value) -> Option<Value> {
    let key = serde_json::to_value(key).ok()?;
    let m = |f: &str, v: &Value| Value::Array(vec![f.into(), key.clone(), v.clone()]);
    Some(Value::Array(match f {
        F::Read => vec![m("r", value)],
        F::Write => vec![m("w", value)],
        F::Append => vec![m("append", value)],
        F::Cas => match value.as_array().map(Vec::as_slice) {
            Some([expected, new]) => vec![m("r", expected), m("w", new)],
            _ => return None,
        },
        _ => return None,
    }))
}

/// The first line of a faultline history, when present.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Header {
    /// Format version: 1.
    pub faultline_history: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// Fields this version does not know.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// A whole history, ready for checking.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub header: Option<Header>,
    /// Client operations, in the order they were invoked.
    pub ops: Vec<Op>,
    /// The nemesis's events (fault starts and stops), in file order.
    pub nemesis: Vec<Event>,
    /// Interned keys; `KeyId(i)` names `keys[i]`.
    pub keys: Vec<Key>,
    /// Interned node names; `NodeId(i)` names `nodes[i]`.
    pub nodes: Vec<String>,
    /// Things the reader accepted but a person should know (a truncated last
    /// line that was dropped, for instance).
    pub warnings: Vec<String>,
    /// Non-blank lines the reader skipped as noise: lines of a log that
    /// hold no event (an etcd log's other log lines). A history with no
    /// operations and skipped lines was most likely read in the wrong
    /// format; zero for formats that skip nothing.
    pub skipped_lines: usize,
}

impl History {
    /// The key an id names.
    pub fn key(&self, id: KeyId) -> &Key {
        &self.keys[id.0 as usize]
    }

    /// The node name an id names.
    pub fn node(&self, id: NodeId) -> &str {
        &self.nodes[id.0 as usize]
    }

    /// The id of a key, if the history mentions it.
    pub fn key_id(&self, key: &Key) -> Option<KeyId> {
        self.keys.iter().position(|k| k == key).map(|i| KeyId(i as u32))
    }

    /// Builds a history from events in file order.
    pub fn from_events(events: impl IntoIterator<Item = Event>) -> Result<History, HistoryError> {
        let mut b = HistoryBuilder::default();
        for ev in events {
            b.push(ev)?;
        }
        Ok(b.finish())
    }
}

/// Pairs events into operations as they arrive; see the module doc.
#[derive(Default)]
pub struct HistoryBuilder {
    history: History,
    key_ids: HashMap<Key, KeyId>,
    node_ids: HashMap<String, NodeId>,
    /// The open operation of each process: an index into `history.ops`.
    open: HashMap<Process, usize>,
    /// When true, an invocation by a process that already has one open
    /// leaves the earlier one pending instead of failing. Importers of other
    /// tools' logs use it; faultline's own files are held to the rule.
    lenient: bool,
}

impl HistoryBuilder {
    /// A builder that tolerates a process invoking again before its previous
    /// operation completed (that operation is then treated as crashed).
    pub fn lenient() -> HistoryBuilder {
        HistoryBuilder {
            lenient: true,
            ..HistoryBuilder::default()
        }
    }

    /// Sets the header.
    pub fn set_header(&mut self, header: Header) {
        self.history.header = Some(header);
    }

    /// Records a warning to carry into the history.
    pub fn warn(&mut self, warning: String) {
        self.history.warnings.push(warning);
    }

    /// Counts a line the reader skipped as noise.
    pub fn skipped_line(&mut self) {
        self.history.skipped_lines += 1;
    }

    /// Adds the next event in file order.
    pub fn push(&mut self, ev: Event) -> Result<(), HistoryError> {
        if ev.process == Process::Nemesis {
            self.history.nemesis.push(ev);
            return Ok(());
        }
        match ev.kind {
            EventType::Invoke => self.invoke(ev),
            _ => self.complete(ev),
        }
    }

    fn intern_key(&mut self, key: Option<Key>) -> Option<KeyId> {
        let key = key?;
        if let Some(id) = self.key_ids.get(&key) {
            return Some(*id);
        }
        let id = KeyId(self.history.keys.len() as u32);
        self.history.keys.push(key.clone());
        self.key_ids.insert(key, id);
        Some(id)
    }

    fn intern_node(&mut self, node: Option<String>) -> Option<NodeId> {
        let node = node?;
        if let Some(id) = self.node_ids.get(&node) {
            return Some(*id);
        }
        let id = NodeId(self.history.nodes.len() as u32);
        self.history.nodes.push(node.clone());
        self.node_ids.insert(node, id);
        Some(id)
    }

    fn invoke(&mut self, ev: Event) -> Result<(), HistoryError> {
        if let Some(&prev) = self.open.get(&ev.process) {
            if !self.lenient {
                return Err(HistoryError::DoubleInvoke {
                    index: ev.index,
                    process: ev.process,
                    open_index: self.history.ops[prev].invoke_index,
                });
            }
        }
        let key = self.intern_key(ev.key);
        let node = self.intern_node(ev.node);
        self.open.insert(ev.process, self.history.ops.len());
        self.history.ops.push(Op {
            process: ev.process,
            f: ev.f,
            key,
            input: ev.value,
            output: Value::Null,
            outcome: Outcome::Pending,
            invoke_index: ev.index,
            complete_index: None,
            invoke_time: ev.time,
            complete_time: None,
            node,
            error: ev.error,
            is_final: ev.is_final,
        });
        Ok(())
    }

    fn complete(&mut self, ev: Event) -> Result<(), HistoryError> {
        let Some(i) = self.open.remove(&ev.process) else {
            return Err(HistoryError::UnmatchedCompletion {
                index: ev.index,
                process: ev.process,
            });
        };
        let node = self.intern_node(ev.node);
        let op = &mut self.history.ops[i];
        if op.f != ev.f {
            return Err(HistoryError::MismatchedCompletion {
                index: ev.index,
                invoked: op.f.to_string(),
                completed: ev.f.to_string(),
            });
        }
        op.outcome = match ev.kind {
            EventType::Ok => Outcome::Ok,
            EventType::Fail => Outcome::Fail,
            _ => Outcome::Info,
        };
        op.output = if op.outcome == Outcome::Ok {
            ev.value
        } else {
            Value::Null
        };
        op.complete_index = Some(ev.index);
        op.complete_time = Some(ev.time);
        op.node = node.or(op.node);
        op.error = ev.error.or(op.error.take());
        op.is_final |= ev.is_final;
        Ok(())
    }

    /// The history; operations still open stay [`Outcome::Pending`].
    pub fn finish(self) -> History {
        self.history
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(i: u64, p: u64, kind: EventType, f: F, v: Value) -> Event {
        Event::new(i, i * 10, Process::Client(p), kind, f, v).with_key("x")
    }

    #[test]
    fn pairs_completions_and_keeps_crashed_ops_pending() {
        let h = History::from_events([
            ev(0, 1, EventType::Invoke, F::Write, json!(1)),
            ev(1, 2, EventType::Invoke, F::Read, json!(null)),
            ev(2, 1, EventType::Ok, F::Write, json!(1)),
            ev(3, 3, EventType::Invoke, F::Write, json!(2)),
            ev(4, 3, EventType::Info, F::Write, json!(2)),
        ])
        .unwrap();
        assert_eq!(h.ops.len(), 3);
        assert_eq!(h.ops[0].outcome, Outcome::Ok);
        assert_eq!(h.ops[0].complete_time, Some(20));
        assert_eq!(h.ops[1].outcome, Outcome::Pending);
        assert_eq!(h.ops[2].outcome, Outcome::Info);
        assert_eq!(h.ops[2].value(), &json!(2));
        assert_eq!(h.keys, vec![Key::Str("x".into())]);
    }

    #[test]
    fn rejects_a_completion_without_invocation() {
        let err = History::from_events([ev(0, 1, EventType::Ok, F::Write, json!(1))]).unwrap_err();
        assert!(err.to_string().contains("index 0"), "{err}");
    }

    #[test]
    fn rejects_two_open_operations_on_one_process_unless_lenient() {
        let evs = [
            ev(0, 1, EventType::Invoke, F::Write, json!(1)),
            ev(1, 1, EventType::Invoke, F::Write, json!(2)),
        ];
        assert!(History::from_events(evs.clone()).is_err());
        let mut b = HistoryBuilder::lenient();
        for e in evs {
            b.push(e).unwrap();
        }
        let h = b.finish();
        assert_eq!(h.ops.len(), 2);
        assert!(h.ops.iter().all(|o| o.outcome == Outcome::Pending));
    }
}
