//! Consistent prefix (Terry 2013): there is one order of all writes such that
//! every read, including a read of several keys at once, sees a prefix of it.
//!
//! The constraints on that order form a graph whose nodes are writes,
//! multi-key reads, and "nothing yet" nodes per key:
//! - each list read orders the elements it shows (a key whose reads agree
//!   contributes its one order once);
//! - each process orders its own writes, in the order it issued them;
//! - a multi-key read `R` comes after every write it saw and before every
//!   write it provably did not see: on a list key, the element after the
//!   ones it shows; on a register, the next write to that key by the process
//!   that wrote the value it saw; on a key it saw empty, every write to it.
//!
//! The order exists exactly when the graph has no cycle. A topological sort
//! over flat arrays decides that (a million-write history has millions of
//! edges, and most histories have no cycle); when it fails, the graph is
//! built in petgraph, its strongly connected components give each cycle,
//! and a breadth-first search the shortest cycle through one of its nodes,
//! which is reported with its reads and writes. Two reads of a list
//! that are not prefixes of one another are reported directly: no order of
//! appends has both as prefixes. At most [`CYCLES_MAX`] cycles are extracted.
//!
//! Coverage: every write (each is a node of the order), every list read,
//! every multi-key read (a transaction of reads only, judged as one
//! snapshot), and the reads of list keys or multi-key reads that did not
//! complete ok (they constrain no order). A single-key read of a register
//! is in no constraint and is not covered; nor is a transaction that
//! writes (its writes are placed one by one, not atomically).

use std::collections::{HashSet, VecDeque};

use faultline_histories::{Op, Outcome, F};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use serde_json::{json, Map};

use super::core::{Core, FxMap, State, Stored, NONE};
use super::explain::{self, Found};
use super::order::{list, Orders};
use super::{Analysis, Judged};
use crate::verdict::Anomaly;

/// Cycles extracted and reported, at most.
pub const CYCLES_MAX: usize = 10;

/// A node of the order graph.
#[derive(Clone, Copy, Debug)]
enum Node {
    Write(u32),
    /// A multi-key read, named by its first read record.
    Snapshot(u32),
    /// Before any write to a key.
    Empty(u32),
    /// Before the appends to a list key that no read shows.
    Unread(u32),
}

/// Why one node precedes another.
#[derive(Clone, Copy, Debug)]
enum Why {
    /// A list read (by record) shows it.
    ListOrder(u32),
    /// One process issued both writes.
    Process,
    /// A multi-key read (by record) saw the write.
    Saw(u32),
    /// A multi-key read (by record) did not see the write.
    Unseen(u32),
    /// A write comes after its key's empty state, or an append no read
    /// shows after the reads that do not show it.
    FirstWrite,
}

type Graph = DiGraph<Node, Why, u32>;

/// The order graph as flat lists: cheap to build and to sort topologically
/// (Kahn's algorithm over a compressed adjacency). It becomes a petgraph
/// graph only when it has a cycle to explain.
#[derive(Default)]
struct Plan {
    nodes: Vec<Node>,
    edges: Vec<(u32, u32, Why)>,
}

impl Plan {
    fn add_node(&mut self, n: Node) -> NodeIndex<u32> {
        self.nodes.push(n);
        NodeIndex::new(self.nodes.len() - 1)
    }

    fn add_edge(&mut self, a: NodeIndex<u32>, b: NodeIndex<u32>, why: Why) {
        self.edges.push((a.index() as u32, b.index() as u32, why));
    }

    /// True when some order puts every edge's source before its target.
    fn acyclic(&self) -> bool {
        let n = self.nodes.len();
        let mut start = vec![0u32; n + 1];
        let mut indegree = vec![0u32; n];
        for &(a, b, _) in &self.edges {
            start[a as usize + 1] += 1;
            indegree[b as usize] += 1;
        }
        for i in 0..n {
            start[i + 1] += start[i];
        }
        let mut fill = start.clone();
        let mut next = vec![0u32; self.edges.len()];
        for &(a, b, _) in &self.edges {
            next[fill[a as usize] as usize] = b;
            fill[a as usize] += 1;
        }
        let mut ready: Vec<u32> = (0..n as u32).filter(|&v| indegree[v as usize] == 0).collect();
        let mut done = 0;
        while let Some(v) = ready.pop() {
            done += 1;
            for &w in &next[start[v as usize] as usize..start[v as usize + 1] as usize] {
                indegree[w as usize] -= 1;
                if indegree[w as usize] == 0 {
                    ready.push(w);
                }
            }
        }
        done == n
    }

    fn graph(&self) -> Graph {
        let mut g = Graph::with_capacity(self.nodes.len(), self.edges.len());
        for &n in &self.nodes {
            g.add_node(n);
        }
        for &(a, b, why) in &self.edges {
            g.add_edge(NodeIndex::new(a as usize), NodeIndex::new(b as usize), why);
        }
        g
    }
}

pub fn check(a: &Analysis<'_>) -> Judged {
    let (core, orders) = (&a.core, &a.orders);
    let mut b = Builder::new(core);
    let list_reads = b.list_orders(orders);
    b.process_orders(orders);
    let snapshots = b.snapshots(orders);
    if list_reads == 0 && snapshots == 0 {
        return Judged::NotApplicable("no list reads and no multi-key reads".into());
    }
    let mut found = Found::default();
    cover(core, &mut found);
    divergent_lists(core, orders, &mut found);
    if !b.g.acyclic() {
        let g = b.g.graph();
        for cycle in &find_cycles(&g) {
            found.push(|| report_cycle(core, &g, cycle));
        }
    }
    let mut details = Map::new();
    details.insert("list_reads".into(), json!(list_reads));
    details.insert("multi_key_reads".into(), json!(snapshots));
    details.insert("graph_nodes".into(), json!(b.g.nodes.len()));
    details.insert("graph_edges".into(), json!(b.g.edges.len()));
    Judged::looked(found, details)
}

/// Marks what the order judges; see the module doc.
fn cover(core: &Core<'_>, found: &mut Found) {
    for w in 0..core.writes.len() as u32 {
        found.judged_write(core, w);
    }
    for (r, rec) in core.reads.iter().enumerate() {
        if matches!(rec.stored, Stored::List(..)) {
            found.judged_read(core, r as u32);
        }
    }
    for (i, op) in core.history.ops.iter().enumerate() {
        let judged = match op.f {
            F::Txn => multi_read(op),
            F::Read => op.outcome != Outcome::Ok && op.key.is_some_and(|k| core.list_key[k.0 as usize]),
            _ => false,
        };
        if judged {
            found.covered.insert(i);
        }
    }
}

/// True for a transaction of reads only (a multi-key read), whatever its
/// outcome: ok, it is one snapshot; otherwise it read nothing and
/// constrains no order.
fn multi_read(op: &Op) -> bool {
    let source = if op.outcome == Outcome::Ok {
        &op.output
    } else {
        &op.input
    };
    source.as_array().is_some_and(|ms| {
        !ms.is_empty()
            && ms
                .iter()
                .all(|m| m.as_array().and_then(|a| a.first()).and_then(|f| f.as_str()) == Some("r"))
    })
}

struct Builder<'a, 'h> {
    core: &'a Core<'h>,
    g: Plan,
    empty: FxMap<u32, NodeIndex<u32>>,
    unread: FxMap<u32, NodeIndex<u32>>,
    /// Each key's writes, built on first use by [`Builder::aux_node`].
    by_key: Vec<Vec<u32>>,
}

impl<'a, 'h> Builder<'a, 'h> {
    fn new(core: &'a Core<'h>) -> Self {
        let mut g = Plan {
            nodes: Vec::with_capacity(core.writes.len()),
            edges: Vec::with_capacity(core.writes.len() * 2),
        };
        for w in 0..core.writes.len() as u32 {
            g.add_node(Node::Write(w));
        }
        Builder {
            core,
            g,
            empty: FxMap::default(),
            unread: FxMap::default(),
            by_key: Vec::new(),
        }
    }

    fn edge(&mut self, a: u32, b: u32, why: Why) {
        self.g
            .add_edge(NodeIndex::new(a as usize), NodeIndex::new(b as usize), why);
    }

    /// Orders shown by list reads; returns how many list reads there were.
    fn list_orders(&mut self, orders: &Orders) -> usize {
        let core = self.core;
        let mut seen: HashSet<(u32, u32)> = HashSet::new();
        let mut n = 0;
        for (r, rec) in core.reads.iter().enumerate() {
            let State::List(l) = core.state(r as u32) else { continue };
            n += 1;
            let canon = orders.canon_read[rec.key as usize] == r as u32;
            if !canon && orders.consistent(rec.key) {
                continue;
            }
            for pair in l.windows(2) {
                if canon || seen.insert((pair[0], pair[1])) {
                    self.edge(pair[0], pair[1], Why::ListOrder(r as u32));
                }
            }
        }
        n
    }

    fn process_orders(&mut self, orders: &Orders) {
        for w in 0..self.core.writes.len() as u32 {
            let prev = orders.prev_p[w as usize];
            if prev != NONE {
                self.edge(prev, w, Why::Process);
            }
        }
    }

    /// Adds every multi-key read; returns how many.
    fn snapshots(&mut self, orders: &Orders) -> usize {
        let core = self.core;
        let (mut n, mut start) = (0, 0);
        while start < core.reads.len() {
            let op = core.reads[start].op;
            let end = start + core.reads[start..].iter().take_while(|r| r.op == op).count();
            if core.reads[start].micro != NONE && end - start > 1 {
                n += 1;
                let node = self.g.add_node(Node::Snapshot(start as u32));
                for r in start..end {
                    self.snapshot_key(orders, node, r as u32);
                }
            }
            start = end;
        }
        n
    }

    /// What snapshot `node` saw and did not see of one key (read record `r`).
    fn snapshot_key(&mut self, orders: &Orders, node: NodeIndex<u32>, r: u32) {
        let core = self.core;
        let rec = &core.reads[r as usize];
        let w = |x: u32| NodeIndex::new(x as usize);
        match &core.state(r) {
            State::List(l) => {
                if let Some(&last) = l.last() {
                    self.g.add_edge(w(last), node, Why::Saw(r));
                }
                if orders.consistent(rec.key) {
                    if let Some(&next) = orders.canon(core, rec.key).get(l.len()) {
                        self.g.add_edge(node, w(next), Why::Unseen(r));
                    }
                    let unread = self.aux_node(orders, rec.key, true);
                    self.g.add_edge(node, unread, Why::Unseen(r));
                }
            }
            State::Reg(x) if *x == NONE => {
                let empty = self.aux_node(orders, rec.key, false);
                self.g.add_edge(node, empty, Why::Unseen(r));
            }
            State::Reg(x) if !explain::failed(core, *x) => {
                self.g.add_edge(w(*x), node, Why::Saw(r));
                let next = orders.next_pk[*x as usize];
                if next != NONE {
                    self.g.add_edge(node, w(next), Why::Unseen(r));
                }
            }
            State::Reg(_) => {}
        }
    }

    /// The node before every write to key `k` (`unread` false) or before
    /// every append to it that no read shows (`unread` true), made on first
    /// use.
    fn aux_node(&mut self, orders: &Orders, k: u32, unread: bool) -> NodeIndex<u32> {
        let table = if unread { &mut self.unread } else { &mut self.empty };
        if let Some(n) = table.get(&k) {
            return *n;
        }
        let n = self.g.add_node(if unread { Node::Unread(k) } else { Node::Empty(k) });
        table.insert(k, n);
        let core = self.core;
        if self.by_key.is_empty() {
            self.by_key = vec![Vec::new(); core.keys.len()];
            for (w, rec) in core.writes.iter().enumerate() {
                self.by_key[rec.key as usize].push(w as u32);
            }
        }
        for &w in &self.by_key[k as usize] {
            let wanted = if unread {
                orders.pos[w as usize] == NONE
            } else {
                orders.prev_pk[w as usize] == NONE
            };
            if wanted && !explain::failed(core, w) {
                self.g.add_edge(n, NodeIndex::new(w as usize), Why::FirstWrite);
            }
        }
        n
    }
}

/// Pairs of list reads that are not prefixes of one another.
fn divergent_lists(core: &Core<'_>, orders: &Orders, found: &mut Found) {
    for (k, c) in orders.conflict.iter().enumerate() {
        let Some(c) = c else { continue };
        found.push(|| {
            let (a, b) = (list(&core.state(c.longest)), list(&core.state(c.other)));
            let at = c.at as usize;
            let sentence = format!(
                "{}; {}: at position {} one shows {} and the other {}, so no single order of appends has both as prefixes.",
                explain::p_read(core, c.longest),
                explain::p_read(core, c.other),
                at,
                explain::show(core.wvalue(a[at])),
                explain::show(core.wvalue(b[at]))
            );
            let mut an = explain::anomaly(
                core,
                "consistent-prefix",
                k as u32,
                &[core.rop(c.longest), core.rop(c.other)],
                sentence,
            );
            an.details = json!({"shape": "divergent-list-reads"});
            an
        });
    }
}

/// One short cycle per strongly connected component of more than one node.
fn find_cycles(g: &Graph) -> Vec<Vec<petgraph::graph::EdgeIndex<u32>>> {
    let mut comp = vec![NONE; g.node_count()];
    let mut cycles = Vec::new();
    for scc in petgraph::algo::kosaraju_scc(g) {
        if scc.len() < 2 || cycles.len() == CYCLES_MAX {
            continue;
        }
        let id = cycles.len() as u32;
        for n in &scc {
            comp[n.index()] = id;
        }
        cycles.push(shortest_cycle(g, &comp, scc[0]));
    }
    cycles
}

/// The shortest cycle through `start`, within its component: a breadth-first
/// search that stops when an edge leads back to `start`.
fn shortest_cycle(g: &Graph, comp: &[u32], start: NodeIndex<u32>) -> Vec<petgraph::graph::EdgeIndex<u32>> {
    let id = comp[start.index()];
    let mut parent: FxMap<u32, petgraph::graph::EdgeIndex<u32>> = FxMap::default();
    let mut queue = VecDeque::from([start]);
    while let Some(u) = queue.pop_front() {
        for e in g.edges(u) {
            let v = e.target();
            if comp[v.index()] != id {
                continue;
            }
            if v == start {
                let mut path = vec![e.id()];
                let mut at = u;
                while at != start {
                    let pe = parent[&(at.index() as u32)];
                    path.push(pe);
                    at = g.edge_endpoints(pe).expect("edge exists").0;
                }
                path.reverse();
                return path;
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = parent.entry(v.index() as u32) {
                slot.insert(e.id());
                queue.push_back(v);
            }
        }
    }
    unreachable!("a node of a strongly connected component of two or more nodes lies on a cycle")
}

fn report_cycle(core: &Core<'_>, g: &Graph, cycle: &[petgraph::graph::EdgeIndex<u32>]) -> Anomaly {
    let mut steps = Vec::with_capacity(cycle.len());
    let mut ops: Vec<&Op> = Vec::new();
    let mut keys = HashSet::new();
    for &e in cycle {
        let (a, b) = g.edge_endpoints(e).expect("edge exists");
        let (na, nb) = (g[a], g[b]);
        for n in [na, nb] {
            match n {
                Node::Write(w) => {
                    ops.push(core.wop(w));
                    keys.insert(core.writes[w as usize].key);
                }
                Node::Snapshot(r) => ops.push(core.rop(r)),
                Node::Empty(_) | Node::Unread(_) => {}
            }
        }
        if let Why::ListOrder(r) = g[e] {
            ops.push(core.rop(r));
        }
        steps.push(step(core, na, nb, g[e]));
    }
    let sentence = format!(
        "No single order of writes lets every read see a prefix of it: {}; and so round again.",
        steps.join("; ")
    );
    let key = (keys.len() == 1).then(|| core.key(*keys.iter().next().expect("one key")));
    let mut an = Anomaly::new("consistent-prefix", key, explain::refs(core, &ops), sentence);
    an.details = json!({"shape": "cycle", "length": cycle.len()});
    an
}

/// One edge of a cycle in words.
fn step(core: &Core<'_>, a: Node, b: Node, why: Why) -> String {
    let name = |n: Node| match n {
        Node::Write(w) => format!(
            "{} on {}",
            explain::show(core.wvalue(w)),
            core.key(core.writes[w as usize].key)
        ),
        Node::Snapshot(r) => format!("read op {}", core.rop(r).invoke_index),
        Node::Empty(k) | Node::Unread(k) => format!("{}", core.key(k)),
    };
    match why {
        Why::ListOrder(r) => format!(
            "read op {} shows {} before {}",
            core.rop(r).invoke_index,
            name(a),
            name(b)
        ),
        Why::Process => {
            let (Node::Write(x), Node::Write(y)) = (a, b) else {
                unreachable!("process edges join writes")
            };
            format!(
                "process {} wrote {} (op {}) before {} (op {})",
                core.wproc(x),
                name(a),
                core.wop(x).invoke_index,
                name(b),
                core.wop(y).invoke_index
            )
        }
        Why::Saw(r) => format!("read op {} saw {}", core.rop(r).invoke_index, name(a)),
        Why::Unseen(r) => match b {
            Node::Empty(k) => format!("read op {} saw no write to {}", core.rop(r).invoke_index, core.key(k)),
            Node::Unread(k) => format!(
                "read op {} did not see the appends to {} no read shows",
                core.rop(r).invoke_index,
                core.key(k)
            ),
            _ => format!("read op {} did not see {}", core.rop(r).invoke_index, name(b)),
        },
        Why::FirstWrite => format!("{} is one of them", name(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn plan(n: u32, edges: &[(u32, u32)]) -> Plan {
        let mut p = Plan::default();
        for w in 0..n {
            p.add_node(Node::Write(w));
        }
        for &(a, b) in edges {
            p.add_edge(NodeIndex::new(a as usize), NodeIndex::new(b as usize), Why::Process);
        }
        p
    }

    proptest! {
        /// The flat topological sort agrees with petgraph's on small graphs.
        #[test]
        fn flat_sort_agrees_with_petgraph(n in 1u32..12, raw in proptest::collection::vec((0u32..12, 0u32..12), 0..30)) {
            let edges: Vec<(u32, u32)> = raw.into_iter().map(|(a, b)| (a % n, b % n)).collect();
            let p = plan(n, &edges);
            prop_assert_eq!(p.acyclic(), petgraph::algo::toposort(&p.graph(), None).is_ok());
        }
    }

    #[test]
    fn a_cycle_is_found_and_is_short() {
        let p = plan(4, &[(0, 1), (1, 2), (2, 3), (3, 1)]);
        assert!(!p.acyclic());
        let cycles = find_cycles(&p.graph());
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].len(), 3);
    }
}
