//! Cycles in the dependency graph, found and named as Elle names them.
//!
//! Every cycle lies inside one strongly connected component, so Kosaraju's
//! algorithm (linear) splits the graph first, and a history without
//! anomalies costs nothing more. Inside a component, each kind of cycle is
//! a breadth-first search over (transaction, a few bits of state) that
//! admits only the edges the kind allows, so the first cycle found is a
//! shortest one of that kind:
//!
//! | kind | edges |
//! |---|---|
//! | G0 | ww only |
//! | G1c | ww and wr, at least one wr |
//! | G-single | exactly one rw |
//! | G-nonadjacent | two or more rw, no two adjacent |
//! | G2-item | two or more rw, some adjacent |
//!
//! each first with data edges alone, then with process edges (`-process`),
//! then with real-time edges too (`-realtime`), and each only inside the
//! strongly connected components of the edges it may use. Each search has a budget of
//! edge visits; past it the kind is reported unknown in a component of so
//! many transactions, never absent.

use petgraph::graph::{EdgeIndex, NodeIndex};
use petgraph::visit::EdgeRef;

use crate::graph::{Dsg, PROCESS, REALTIME, RW, WR, WW};
use crate::parse::FastMap;

/// The shape of a cycle, independent of process and real-time edges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    G0,
    G1c,
    GSingle,
    GNonadjacent,
    G2Item,
}

impl Shape {
    /// Every shape, most severe first.
    pub const ALL: [Shape; 5] = [
        Shape::G0,
        Shape::G1c,
        Shape::GSingle,
        Shape::GNonadjacent,
        Shape::G2Item,
    ];

    /// Elle's name.
    pub fn name(self) -> &'static str {
        match self {
            Shape::G0 => "G0",
            Shape::G1c => "G1c",
            Shape::GSingle => "G-single",
            Shape::GNonadjacent => "G-nonadjacent",
            Shape::G2Item => "G2-item",
        }
    }

    /// The edge kind every cycle of the shape contains: searches start there.
    fn start(self) -> u8 {
        match self {
            Shape::G0 => WW,
            Shape::G1c => WR,
            _ => RW,
        }
    }

    /// Edges other than rw the shape allows.
    fn plain(self) -> u8 {
        match self {
            Shape::G0 => WW,
            _ => WW | WR,
        }
    }
}

/// Which order edges a search may use, in the order they are tried.
pub const LEVELS: [(u8, &str); 3] = [(0, ""), (PROCESS, "-process"), (PROCESS | REALTIME, "-realtime")];

/// The state bits of the search for rw-constrained shapes.
const LAST_RW: u8 = 1;
const TWO_RW: u8 = 2;
const ADJACENT: u8 = 4;

/// Some transactions of a component: as a membership map and as a list.
type Part = (FastMap<u32, ()>, Vec<NodeIndex<u32>>);

/// A search state: (node, bits, parent state, edge in, depth in edges).
type State = (NodeIndex<u32>, u8, u32, EdgeIndex<u32>, u32);

/// A cycle: edges in order, each one's target the next one's source.
pub type Cycle = Vec<EdgeIndex<u32>>;

/// What one search concluded.
pub enum Outcome {
    /// A shortest cycle (or, when the budget ran out after one was found,
    /// the shortest seen; `shortest` says which).
    Found { cycle: Cycle, shortest: bool },
    /// None exists in the component.
    Absent,
    /// The budget ran out before any was found.
    Exhausted,
}

/// The strongly connected components with more than one transaction.
pub fn components(dsg: &Dsg) -> Vec<Vec<NodeIndex<u32>>> {
    // Kosaraju's, whose depth-first searches keep their own stacks: paths
    // here run a million transactions deep (one process's session, the
    // chain of real-time instants), past any thread's stack.
    petgraph::algo::kosaraju_scc(&dsg.graph)
        .into_iter()
        .filter_map(|scc| {
            // Only transactions: the real-time order's instants are a means.
            let txns: Vec<NodeIndex<u32>> = scc.into_iter().filter(|n| n.index() < dsg.txns).collect();
            (txns.len() > 1).then_some(txns)
        })
        .collect()
}

/// One search's view of the graph: the component and the edges allowed.
#[derive(Clone, Copy)]
pub struct Search<'a> {
    pub dsg: &'a Dsg,
    /// Membership of the component being searched.
    pub member: &'a FastMap<u32, ()>,
    pub shape: Shape,
    /// Order edges allowed (see [`LEVELS`]).
    pub order: u8,
    /// Edge visits allowed.
    pub budget: u64,
}

impl Search<'_> {
    /// Searches the component for a shortest cycle of this shape and level.
    /// Also returns the edge visits spent.
    pub fn run(&self, nodes: &[NodeIndex<u32>]) -> (Outcome, u64) {
        let mut spent = 0u64;
        // A cycle of the shape lies inside one strongly connected component
        // of the edges it may use, one holding its start edge: linear to
        // find, and the search looks only there. Without any, none exists;
        // with rw edges this is what keeps a large component whose data
        // edges alone are acyclic (a serializable history's, once process
        // and real-time edges joined its transactions) from costing each
        // rw search a walk of the whole component.
        let Some(inner) = self.cyclic_part(nodes) else {
            return (Outcome::Absent, 0);
        };
        let narrowed = Search {
            member: &inner.0,
            ..*self
        };
        let outcome = narrowed.run_counting(&inner.1, &mut spent);
        (outcome, spent)
    }

    /// The transactions of the component that lie on some cycle of the
    /// allowed edges (rw among them for the shapes that have one), in a
    /// sub-component holding the shape's start edge (any, for G0), or
    /// `None` when there are none.
    fn cyclic_part(&self, nodes: &[NodeIndex<u32>]) -> Option<Part> {
        let start = self.shape.start();
        let allowed = self.shape.plain() | self.order | if start == RW { RW } else { 0 };
        let local: FastMap<u32, u32> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.index() as u32, i as u32))
            .collect();
        let mut sub: petgraph::Graph<(), u8, petgraph::Directed, u32> = petgraph::Graph::default();
        for _ in nodes {
            sub.add_node(());
        }
        for &a in nodes {
            for e in self.dsg.graph.edges(a) {
                let kind = e.weight().kind;
                if let (true, Some(&to)) = (kind & allowed != 0, local.get(&(e.target().index() as u32))) {
                    sub.add_edge(
                        NodeIndex::new(local[&(a.index() as u32)] as usize),
                        NodeIndex::new(to as usize),
                        kind,
                    );
                }
            }
        }
        let mut keep: Vec<NodeIndex<u32>> = Vec::new();
        for scc in petgraph::algo::kosaraju_scc(&sub) {
            let inside: FastMap<u32, ()> = scc.iter().map(|n| (n.index() as u32, ())).collect();
            let cyclic = scc.len() > 1
                && (self.shape == Shape::G0
                    || scc.iter().any(|&n| {
                        sub.edges(n)
                            .any(|e| *e.weight() == start && inside.contains_key(&(e.target().index() as u32)))
                    }));
            if cyclic {
                keep.extend(scc.iter().map(|n| nodes[n.index()]));
            }
        }
        if keep.is_empty() {
            return None;
        }
        let member = keep.iter().map(|n| (n.index() as u32, ())).collect();
        Some((member, keep))
    }

    fn run_counting(&self, nodes: &[NodeIndex<u32>], spent: &mut u64) -> Outcome {
        let mut best: Option<Cycle> = None;
        for &a in nodes {
            for e in self.dsg.graph.edges(a) {
                if e.weight().kind != self.shape.start() || !self.member.contains_key(&(e.target().index() as u32)) {
                    continue;
                }
                let bound = best.as_ref().map_or(usize::MAX, Vec::len);
                match self.through_edge(e.id(), a, e.target(), bound, spent) {
                    Some(c) if c.len() < bound && is_simple(self.dsg, &c) => best = Some(c),
                    _ => {}
                }
                if best.as_ref().is_some_and(|c| c.len() <= 2) {
                    return Outcome::Found {
                        cycle: best.unwrap_or_default(),
                        shortest: true,
                    };
                }
                if *spent > self.budget {
                    return match best {
                        Some(cycle) => Outcome::Found { cycle, shortest: false },
                        None => Outcome::Exhausted,
                    };
                }
            }
        }
        match best {
            Some(cycle) => Outcome::Found { cycle, shortest: true },
            None => Outcome::Absent,
        }
    }

    /// Bits after taking an edge of `kind` in state `bits`, if allowed.
    fn step(&self, bits: u8, kind: u8) -> Option<u8> {
        if kind == RW {
            return match self.shape {
                Shape::GNonadjacent if bits & LAST_RW == 0 => Some(LAST_RW | TWO_RW),
                Shape::G2Item => {
                    Some(LAST_RW | TWO_RW | (bits & ADJACENT) | if bits & LAST_RW != 0 { ADJACENT } else { 0 })
                }
                _ => None,
            };
        }
        (kind & (self.shape.plain() | self.order) != 0).then_some(bits & !LAST_RW)
    }

    /// Whether arriving back at the start in state `bits` closes a cycle
    /// of the shape (the start edge follows the last one).
    fn closes(&self, bits: u8) -> bool {
        match self.shape {
            Shape::GNonadjacent => bits & TWO_RW != 0 && bits & LAST_RW == 0,
            Shape::G2Item => bits & TWO_RW != 0 && bits & (ADJACENT | LAST_RW) != 0,
            _ => true,
        }
    }

    /// A shortest path from `b` back to `a` that closes a cycle through the
    /// start edge, no longer than `bound` edges in all.
    fn through_edge(
        &self,
        start: EdgeIndex<u32>,
        a: NodeIndex<u32>,
        b: NodeIndex<u32>,
        bound: usize,
        spent: &mut u64,
    ) -> Option<Cycle> {
        let init = if self.shape.start() == RW { LAST_RW } else { 0 };
        // (node, bits, parent state, edge in), in BFS order.
        let mut states: Vec<State> = vec![(b, init, u32::MAX, start, 1)];
        let mut seen: FastMap<(u32, u8), ()> = FastMap::default();
        seen.insert((b.index() as u32, init), ());
        let mut head = 0;
        while head < states.len() {
            let (u, bits, _, _, depth) = states[head];
            if depth as usize + 1 >= bound || *spent > self.budget {
                return None;
            }
            for e in self.dsg.graph.edges(u) {
                *spent += 1;
                let v = e.target();
                if !self.member.contains_key(&(v.index() as u32)) {
                    continue;
                }
                let Some(next) = self.step(bits, e.weight().kind) else {
                    continue;
                };
                if v == a {
                    if self.closes(next) {
                        return Some(walk_back(&states, head, e.id()));
                    }
                    continue;
                }
                if seen.insert((v.index() as u32, next), ()).is_none() {
                    states.push((v, next, head as u32, e.id(), depth + 1));
                }
            }
            head += 1;
        }
        None
    }
}

/// The cycle ending in state `at` then `last`, from the start edge on.
fn walk_back(states: &[State], at: usize, last: EdgeIndex<u32>) -> Cycle {
    let mut edges = vec![last];
    let mut i = at as u32;
    while i != u32::MAX {
        let (_, _, parent, edge, _) = states[i as usize];
        edges.push(edge);
        i = parent;
    }
    edges.reverse();
    edges
}

/// True when no transaction appears twice: a walk through a transaction
/// twice is two cycles, each of which its own search finds.
pub fn is_simple(dsg: &Dsg, cycle: &Cycle) -> bool {
    let mut seen: FastMap<u32, ()> = FastMap::default();
    cycle.iter().all(|&e| {
        let (from, _) = dsg.graph.edge_endpoints(e).unwrap_or_default();
        seen.insert(from.index() as u32, ()).is_none()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Edge, Reason};

    /// A chain of `n` transactions, each overwriting the last (ww) and
    /// overwriting what the one before the last read (rw): acyclic on data
    /// edges, joined into one component by a process edge from the last
    /// back to the first, as a stale follower's session joins a
    /// serializable history.
    fn chain_closed_by_a_session(n: u32) -> Dsg {
        let mut dsg = Dsg::new(n as usize);
        let reason = Reason { key: 0, a: 0, b: 0 };
        for i in 0..n - 1 {
            dsg.data(i, i + 1, WW, reason);
            if i + 2 < n {
                dsg.data(i, i + 2, RW, reason);
            }
        }
        let session = Edge {
            kind: PROCESS,
            reason: u32::MAX,
        };
        dsg.graph
            .add_edge(NodeIndex::new(n as usize - 1), NodeIndex::new(0), session);
        dsg
    }

    /// A 600-transaction component with no data cycle is decided at once
    /// (it once cost each rw search a walk of the whole component, past
    /// the budget: unknown), and the process-order cycle is still found.
    #[test]
    fn a_component_acyclic_on_its_data_edges_is_decided_without_a_search() {
        let dsg = chain_closed_by_a_session(600);
        let nodes = components(&dsg).pop().expect("one component");
        assert_eq!(nodes.len(), 600);
        let member: FastMap<u32, ()> = nodes.iter().map(|n| (n.index() as u32, ())).collect();
        for shape in [Shape::GSingle, Shape::GNonadjacent, Shape::G2Item] {
            let search = Search {
                dsg: &dsg,
                member: &member,
                shape,
                order: 0,
                budget: 1_000,
            };
            assert!(matches!(search.run(&nodes).0, Outcome::Absent), "{shape:?}");
        }
        let session = Search {
            dsg: &dsg,
            member: &member,
            shape: Shape::GSingle,
            order: PROCESS,
            budget: 100_000,
        };
        assert!(matches!(session.run(&nodes).0, Outcome::Found { .. }));
    }
}
