//! What the checker found: [`Anomaly`]s with Elle's names, each with the
//! transactions that prove it and, for cycles, every edge as a sentence.
//!
//! A history with one bug often shows it thousands of times; [`Findings`]
//! counts every occurrence but keeps only the first few of each kind as
//! evidence, so a report stays readable and memory stays bounded.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::parse::{TxnId, Txns};

/// How many anomalies of one kind are kept as evidence.
pub const KEPT_PER_KIND: usize = 8;

/// One step of a cycle: an edge from one transaction to the next.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    /// `T<invoke index>` of the source.
    pub from: String,
    /// `T<invoke index>` of the target.
    pub to: String,
    /// Positions of the two transactions in `History::ops`.
    pub from_op: usize,
    pub to_op: usize,
    /// ww, wr, rw, process or realtime.
    pub edge: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Why the edge exists, as a sentence.
    pub explanation: String,
}

/// One anomaly and its proof.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Anomaly {
    /// Elle's name: `G1c`, `G-single-realtime`, `incompatible-order`, ...
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The transactions involved, by name.
    pub txns: Vec<String>,
    /// Their positions in `History::ops`.
    pub ops: Vec<usize>,
    /// One or two sentences a person can follow.
    pub explanation: String,
    /// For cycle anomalies, the cycle, edge by edge, back to its start.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cycle: Vec<Step>,
}

impl Anomaly {
    /// An anomaly proven by transactions `txns` (no cycle).
    pub fn about(tx: &Txns, kind: &str, key: Option<u32>, txns: &[TxnId], explanation: String) -> Anomaly {
        Anomaly {
            kind: kind.to_owned(),
            key: key.map(|k| tx.key_name(k)),
            txns: txns.iter().map(|&t| tx.name(t)).collect(),
            ops: txns.iter().map(|&t| tx.txns[t as usize].op).collect(),
            explanation,
            cycle: Vec::new(),
        }
    }
}

/// A kind whose search ran past its budget: whether a cycle of this kind
/// exists is unknown.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Unsearched {
    pub kind: String,
    /// Transactions in the strongly connected component searched.
    pub component_txns: usize,
    pub explanation: String,
}

/// Everything found, counted by kind, with the first few of each kind kept.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Findings {
    pub anomalies: Vec<Anomaly>,
    /// Every occurrence, by kind.
    pub counts: BTreeMap<String, usize>,
    /// Cycle searches cut off by their budget.
    pub unsearched: Vec<Unsearched>,
}

impl Findings {
    /// Counts `a` and keeps it if fewer than [`KEPT_PER_KIND`] of its kind are.
    pub fn push(&mut self, a: Anomaly) {
        let n = self.counts.entry(a.kind.clone()).or_insert(0);
        *n += 1;
        if *n <= KEPT_PER_KIND {
            self.anomalies.push(a);
        }
    }

    /// True when some anomaly of `kind` was found.
    pub fn has(&self, kind: &str) -> bool {
        self.counts.contains_key(kind)
    }
}
