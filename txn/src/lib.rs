//! Transactional checking as Elle does it (Kingsbury and Alvaro, VLDB
//! 2020): infer from list-append and rw-register transactions the order of
//! versions of each key, build the dependency graph of the transactions,
//! and report Adya's anomalies as cycles a person can follow.
//!
//! What [`check`] promises:
//!
//! - **Sound.** Every anomaly reported is one the history proves: edges come
//!   only from what reads show (a value read, a list's order), transactions
//!   that crashed (`info`) stand in the graph only where a read proves they
//!   committed, and a failed transaction's write that was read is `G1a`,
//!   never an edge.
//! - **Named as Elle names them**: G0, G1a, G1b, G1c, G-single,
//!   G-nonadjacent, G2-item with their `-process` and `-realtime` variants,
//!   internal, dirty-update, duplicate-elements, incompatible-order,
//!   lost-update, garbage-read, cyclic-versions.
//! - **Judged against consistency models** ([`models::Model`], Elle's names
//!   and implications): the verdict is invalid when an anomaly the chosen
//!   models forbid was found, and lists the models the anomalies rule out.
//! - **Witnesses**: for each strongly connected component and each kind, a
//!   shortest cycle of that kind, each edge explained in a sentence.
//! - **Bounded**: each cycle search has a budget of edge visits; past it the
//!   kind is reported unknown in a component of so many transactions (the
//!   verdict is then unknown for it, never valid).
//!
//! Transactions are held compactly ([`parse::Txns`]: interned keys and
//! values, list reads in one flat vector). [`check`] takes them from a
//! `History`; [`stream::read_file`] reads a JSONL file straight into that
//! form without ever holding the file's JSON values, which is what lets a
//! million transactions be checked in well under a gigabyte
//! ([`check_txns`] then checks them).
//!
//! This crate depends on `histories` only; the harness turns an
//! [`Analysis`] into a checker's verdict.

pub mod anomaly;
pub mod cycles;
pub mod error;
pub mod explain;
pub mod gather;
pub mod graph;
pub mod list;
pub mod models;
pub mod parse;
pub mod register;
pub mod stream;

use std::collections::BTreeSet;

use faultline_histories::History;
use petgraph::graph::NodeIndex;
use serde::Serialize;

pub use anomaly::{Anomaly, Findings, Step, Unsearched};
pub use error::TxnError;
pub use models::{Model, RuledOut, UnknownModel};

use crate::cycles::{Outcome, Search, Shape, LEVELS};
use crate::gather::Datatype;
use crate::graph::Dsg;
use crate::parse::{FastMap, Mop, Status, Txns};

/// What to check and how hard to look.
#[derive(Clone, Debug)]
pub struct Config {
    /// The models to judge; the verdict is invalid when an anomaly one of
    /// them forbids is found.
    pub models: Vec<Model>,
    /// Edge visits allowed to one cycle search (one kind in one component).
    pub search_budget: u64,
    /// Edge visits allowed to all cycle searches together.
    pub total_budget: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            models: vec![Model::StrictSerializable],
            // About a tenth of a second per search and a few seconds in all
            // on one core: a history whose components need more is reported
            // unknown for the kinds not found, never valid.
            search_budget: 1_000_000,
            total_budget: 50_000_000,
        }
    }
}

/// The checker's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Validity {
    Valid,
    Invalid,
    Unknown,
}

/// Counts of what was analysed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    pub txns: usize,
    pub committed: usize,
    pub indeterminate: usize,
    pub aborted: usize,
    pub list_keys: usize,
    pub register_keys: usize,
    pub edges: usize,
    /// Strongly connected components of more than one transaction.
    pub components: usize,
}

/// Everything the checker concluded about one history.
#[derive(Clone, Debug, Serialize)]
pub struct Analysis {
    pub valid: Validity,
    pub models: Vec<Model>,
    pub stats: Stats,
    /// Every kind found, whether or not the chosen models forbid it.
    pub anomaly_types: Vec<String>,
    /// The kinds found that the chosen models forbid: why it is invalid.
    pub forbidden: Vec<String>,
    /// Kinds the chosen models forbid whose search ran past its budget.
    pub unknown_types: Vec<String>,
    /// The models the anomalies found rule out.
    pub ruled_out: RuledOut,
    pub findings: Findings,
    /// Positions in `History::ops` of the transactions analysed.
    #[serde(skip)]
    pub covered_ops: Vec<usize>,
}

/// Checks every `txn` operation of `history`.
pub fn check(history: &History, config: &Config) -> Result<Analysis, TxnError> {
    let tx = parse::parse(history)?;
    check_txns(&tx, config)
}

/// Checks transactions already parsed.
pub fn check_txns(tx: &Txns, config: &Config) -> Result<Analysis, TxnError> {
    let mut found = Findings::default();
    let g = gather::gather(tx, &mut found)?;
    let mut dsg = Dsg::new(tx.txns.len());
    let mut stats = stats(tx, &g.datatype);
    infer(tx, &g, &mut dsg, &mut found);
    let process = config.models.iter().any(|m| m.needs_process_edges());
    if process {
        graph::add_process_edges(tx, &mut dsg);
    }
    let realtime = config.models.iter().any(|m| m.needs_realtime_edges());
    if realtime {
        graph::add_realtime_order(tx, &mut dsg);
    }
    stats.edges = dsg.graph.edge_count();
    let components = cycles::components(&dsg);
    stats.components = components.len();
    if realtime && !components.is_empty() {
        let among: FastMap<u32, ()> = components.iter().flatten().map(|n| (n.index() as u32, ())).collect();
        graph::add_realtime_edges(tx, &mut dsg, &among);
    }
    let levels = 1 + usize::from(process) + usize::from(realtime);
    search_all(tx, &dsg, &components, &LEVELS[..levels], config, &mut found);
    Ok(judge(tx, config, stats, found))
}

fn stats(tx: &Txns, d: &[Datatype]) -> Stats {
    let count = |s: Status| tx.txns.iter().filter(|t| t.status == s).count();
    Stats {
        txns: tx.txns.len(),
        committed: count(Status::Committed),
        indeterminate: count(Status::Indeterminate),
        aborted: count(Status::Aborted),
        list_keys: d.iter().filter(|&&d| d == Datatype::List).count(),
        register_keys: d.iter().filter(|&&d| d == Datatype::Register).count(),
        ..Stats::default()
    }
}

/// Per-key inference: anomalies and data edges.
fn infer(tx: &Txns, g: &gather::Gathered, dsg: &mut Dsg, found: &mut Findings) {
    let mut reg_writes: Vec<Vec<u32>> = vec![Vec::new(); g.datatype.len()];
    for (t, txn) in tx.txns.iter().enumerate() {
        if txn.status == Status::Aborted {
            continue;
        }
        for m in tx.mops_of(t as u32) {
            if let Mop::Write { key, val } = *m {
                reg_writes[key as usize].push(val);
            }
        }
    }
    for (k, d) in g.datatype.iter().enumerate() {
        match d {
            Datatype::List => list::infer_key(tx, g, k as u32, dsg, found),
            Datatype::Register => register::infer_key(tx, g, k as u32, &reg_writes[k], dsg, found),
            Datatype::Unknown => {}
        }
    }
}

/// Searches every component for every shape, each at the weakest level
/// (data edges, then process, then real time) where it occurs.
fn search_all(
    tx: &Txns,
    dsg: &Dsg,
    components: &[Vec<NodeIndex<u32>>],
    levels: &[(u8, &str)],
    config: &Config,
    found: &mut Findings,
) {
    let mut spent_total = 0u64;
    for nodes in components {
        let member: FastMap<u32, ()> = nodes.iter().map(|n| (n.index() as u32, ())).collect();
        for shape in Shape::ALL {
            for &(order, suffix) in levels {
                let kind = format!("{}{suffix}", shape.name());
                let budget = config
                    .search_budget
                    .min(config.total_budget.saturating_sub(spent_total));
                let search = Search {
                    dsg,
                    member: &member,
                    shape,
                    order,
                    budget,
                };
                let (outcome, spent) = search.run(nodes);
                spent_total += spent;
                match outcome {
                    Outcome::Absent => continue,
                    Outcome::Found { cycle, shortest } => found.push(cycle_anomaly(tx, dsg, &kind, &cycle, shortest)),
                    Outcome::Exhausted => found.unsearched.push(Unsearched {
                        explanation: format!(
                            "a cycle exists among these {} transactions (one strongly connected component), but the \
                             search for a {kind} cycle stopped after {budget} edge visits: whether one exists is unknown",
                            nodes.len()
                        ),
                        kind,
                        component_txns: nodes.len(),
                    }),
                }
                break;
            }
        }
    }
}

fn cycle_anomaly(tx: &Txns, dsg: &Dsg, kind: &str, cycle: &cycles::Cycle, shortest: bool) -> Anomaly {
    let mut steps = explain::steps(tx, dsg, cycle);
    // Start at the earliest transaction, so a witness reads the same
    // whichever edge the search happened to start from.
    let first = (0..steps.len()).min_by_key(|&i| steps[i].from_op).unwrap_or(0);
    steps.rotate_left(first);
    let names: Vec<String> = steps.iter().map(|s| s.from.clone()).collect();
    let ops: Vec<usize> = steps.iter().map(|s| s.from_op).collect();
    let how = if shortest {
        "a shortest such cycle"
    } else {
        "the shortest found before the search's budget ran out"
    };
    let explanation = format!(
        "{kind} cycle of {} transactions ({how}): {}. {}",
        steps.len(),
        steps
            .iter()
            .map(|s| format!("{} -{}-> {}", s.from, s.edge, s.to))
            .collect::<Vec<_>>()
            .join(", "),
        steps
            .iter()
            .map(|s| s.explanation.clone())
            .collect::<Vec<_>>()
            .join("; ")
    );
    Anomaly {
        kind: kind.to_owned(),
        key: None,
        txns: names,
        ops,
        explanation,
        cycle: steps,
    }
}

/// The verdict from what was found and the chosen models.
fn judge(tx: &Txns, config: &Config, stats: Stats, findings: Findings) -> Analysis {
    let forbidden_by_any = |a: &str| config.models.iter().any(|&m| models::forbidden_by(m, a));
    let anomaly_types: Vec<String> = findings.counts.keys().cloned().collect();
    let forbidden: Vec<String> = anomaly_types.iter().filter(|a| forbidden_by_any(a)).cloned().collect();
    let unknown_types: BTreeSet<String> = findings
        .unsearched
        .iter()
        .map(|u| u.kind.clone())
        .filter(|a| forbidden_by_any(a))
        .collect();
    let valid = if !forbidden.is_empty() {
        Validity::Invalid
    } else if !unknown_types.is_empty() {
        Validity::Unknown
    } else {
        Validity::Valid
    };
    Analysis {
        valid,
        models: config.models.clone(),
        stats,
        ruled_out: models::ruled_out(anomaly_types.iter().map(String::as_str)),
        anomaly_types,
        forbidden,
        unknown_types: unknown_types.into_iter().collect(),
        findings,
        covered_ops: tx.txns.iter().map(|t| t.op).collect(),
    }
}
