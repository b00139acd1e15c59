//! The direct serialization graph (Adya's DSG) plus the session and
//! real-time orders: one node per transaction, one edge per dependency.
//!
//! Data edges (ww, wr, rw) carry a [`Reason`] (the key and the values that
//! prove them) so a witness cycle can be explained in sentences without
//! re-running inference; order edges (process, realtime) are explained from
//! the transactions alone. Reasons live in one vector beside the graph, so
//! an edge costs a few words even in a history of a million transactions.

use std::collections::VecDeque;

use petgraph::graph::{DiGraph, NodeIndex};

use crate::parse::{KeyId, Status, TxnId, Txns};

/// Edge kinds, one bit each, so a search can allow a set of them.
pub const WW: u8 = 1;
/// The target read the source's write.
pub const WR: u8 = 2;
/// The target overwrote the version the source read (anti-dependency).
pub const RW: u8 = 4;
/// Same process, source first.
pub const PROCESS: u8 = 8;
/// The source completed before the target was invoked.
pub const REALTIME: u8 = 16;

/// The name of an edge kind in reports.
pub fn kind_name(kind: u8) -> &'static str {
    match kind {
        WW => "ww",
        WR => "wr",
        RW => "rw",
        PROCESS => "process",
        _ => "realtime",
    }
}

/// One edge: its kind and, for data edges, an index into [`Dsg::reasons`].
#[derive(Clone, Copy, Debug)]
pub struct Edge {
    pub kind: u8,
    pub reason: u32,
}

/// What proves a data edge. The meaning of `a` and `b` depends on the
/// edge's kind (see `explain`): for ww the two values written in order; for
/// wr and rw the global index of the read micro-op and the value written.
#[derive(Clone, Copy, Debug)]
pub struct Reason {
    pub key: KeyId,
    pub a: u32,
    pub b: u32,
}

/// The graph and the reasons of its data edges.
pub struct Dsg {
    pub graph: DiGraph<(), Edge, u32>,
    pub reasons: Vec<Reason>,
    /// Nodes below this index are transactions; any above are the
    /// real-time order's instants ([`add_realtime_order`]).
    pub txns: usize,
}

impl Dsg {
    /// A graph with one node per transaction and no edges.
    pub fn new(txns: usize) -> Dsg {
        let mut graph = DiGraph::with_capacity(txns, txns * 4);
        for _ in 0..txns {
            graph.add_node(());
        }
        Dsg {
            graph,
            reasons: Vec::new(),
            txns,
        }
    }

    /// Adds a data edge; self-edges are dropped (a transaction depending
    /// on itself is no cycle between transactions).
    pub fn data(&mut self, from: TxnId, to: TxnId, kind: u8, reason: Reason) {
        if from == to {
            return;
        }
        let r = self.reasons.len() as u32;
        self.reasons.push(reason);
        self.graph.add_edge(
            NodeIndex::new(from as usize),
            NodeIndex::new(to as usize),
            Edge { kind, reason: r },
        );
    }

    fn order(&mut self, from: TxnId, to: TxnId, kind: u8) {
        self.graph.add_edge(
            NodeIndex::new(from as usize),
            NodeIndex::new(to as usize),
            Edge { kind, reason: u32::MAX },
        );
    }
}

/// Process edges: each committed transaction to the next transaction of
/// its process that did not fail. Only committed transactions have
/// outgoing ones: one that crashed may have taken effect after anything
/// its process did later.
pub fn add_process_edges(tx: &Txns, dsg: &mut Dsg) {
    let mut last: std::collections::HashMap<faultline_histories::Process, TxnId> = Default::default();
    for (i, t) in tx.txns.iter().enumerate() {
        if t.status == Status::Aborted {
            continue;
        }
        let i = i as TxnId;
        if let Some(prev) = last.insert(t.process, i) {
            if tx.txns[prev as usize].status == Status::Committed {
                dsg.order(prev, i, PROCESS);
            }
        }
    }
}

/// The real-time order in linear size, for finding components: one node
/// per completion, chained in file order; each committed transaction points
/// to its completion's node, and each node to the transactions invoked
/// after it (before the next completion). A path from T to U exists exactly
/// when T completed before U was invoked. Searches then use explicit edges
/// among the transactions of components only ([`add_realtime_edges`]), so a
/// history without anomalies never pays for the quadratic-ish relation.
pub fn add_realtime_order(tx: &Txns, dsg: &mut Dsg) {
    let mut last: Option<NodeIndex<u32>> = None;
    for (_, t, done) in realtime_events(tx, None) {
        let t = NodeIndex::new(t as usize);
        if done {
            let instant = dsg.graph.add_node(());
            dsg.graph.add_edge(t, instant, ORDER_EDGE);
            if let Some(prev) = last {
                dsg.graph.add_edge(prev, instant, ORDER_EDGE);
            }
            last = Some(instant);
        } else if let Some(prev) = last {
            dsg.graph.add_edge(prev, t, ORDER_EDGE);
        }
    }
}

const ORDER_EDGE: Edge = Edge {
    kind: REALTIME,
    reason: u32::MAX,
};

/// Invocations and completions of the transactions that may have
/// committed (only those in `among`, when given), in file order:
/// (file index, transaction, is completion).
fn realtime_events(tx: &Txns, among: Option<&crate::parse::FastMap<u32, ()>>) -> Vec<(u64, TxnId, bool)> {
    let mut events: Vec<(u64, TxnId, bool)> = Vec::new();
    for (i, t) in tx.txns.iter().enumerate() {
        if t.status == Status::Aborted || among.is_some_and(|m| !m.contains_key(&(i as u32))) {
            continue;
        }
        events.push((t.invoke_index, i as TxnId, false));
        if let (Status::Committed, Some(c)) = (t.status, t.complete_index) {
            events.push((c, i as TxnId, true));
        }
    }
    events.sort_unstable();
    events
}

/// Real-time edges among the transactions `among`, transitively reduced
/// the way Elle does: a committed transaction T gets an edge to each
/// transaction invoked after T completed, but only while T is on the
/// frontier, that is, until some transaction invoked after T's completion
/// has itself completed (that one's edges then stand for T's). "Before"
/// compares positions in the file, which is the order in which the
/// recorder saw the events, so equal timestamps never invent an order.
/// Real time is transitive, so restricting it to `among` loses no order
/// between two of them.
pub fn add_realtime_edges(tx: &Txns, dsg: &mut Dsg, among: &crate::parse::FastMap<u32, ()>) {
    let events = realtime_events(tx, Some(among));
    // Completed transactions on the frontier with their completion's file
    // index, in the order they completed. A transaction invoked at index i
    // saw exactly the entries that completed before i, a prefix; when it
    // completes, that prefix leaves the frontier.
    let mut frontier: VecDeque<(u64, TxnId)> = VecDeque::new();
    for (index, t, done) in events {
        if done {
            let invoked = tx.txns[t as usize].invoke_index;
            while frontier.front().is_some_and(|&(c, _)| c < invoked) {
                frontier.pop_front();
            }
            frontier.push_back((index, t));
        } else {
            for &(_, f) in &frontier {
                dsg.order(f, t, REALTIME);
            }
        }
    }
}
