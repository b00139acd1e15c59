//! Linearizability of a register whose written values are unique, in
//! polynomial time (after Gibbons and Korach, 1997), with compare-and-set
//! and crashed writes.
//!
//! When every write and every compare-and-set writes a value of its own
//! (distinct from each other and from the initial value), a read names the
//! one operation whose value it saw: the reads-from relation is known. A
//! linearization is then a sequence of *clusters*, one per value that took
//! effect: the operation that wrote the value, then the reads of it, the
//! cluster lasting until the next cluster's write. A `cas a b` ends the
//! cluster of `a` and starts that of `b`, so the clusters joined by
//! compare-and-sets form chains that must follow each other directly.
//!
//! Give every operation a point strictly inside its interval. Cluster `c`,
//! starting at `t_c` and lasting until the next start, fits exactly when
//! `t_c` lies after its writer's call (`L_c`) and before every return of
//! its operations (`U_c`), and the next start comes after every call of its
//! reads. Starting each cluster as early as it may, the earliest next start
//! after a sequence of clusters is the largest of their `lo_c`, the latest
//! call among each cluster's operations. So an order of the chains works
//! exactly when no chain `e` placed before a chain `d` has `lo_e >= U_d`:
//! "`d` must precede `e` when `U_d <= lo_e`", and the history is
//! linearizable exactly when these precedences have no cycle (the chain of
//! the initial value going first). Two clusters that must each precede the
//! other are Gibbons and Korach's overlapping forward zones.
//!
//! Crashed operations (and the optional ones the evidence shrinker makes)
//! took effect or not: one whose value someone observed did (values are
//! unique, so nothing else could have written it); one nobody observed is
//! left out, which only removes constraints. A value read but never written
//! is a garbage read; two compare-and-sets that both took effect from the
//! same value cannot both have found it.
//!
//! The cycle search takes the chains in order of `lo` and of `U` (a chain
//! with no predecessor is always the first of one of the two orders), so
//! the whole check is O(n log n). Observed failed compare-and-sets
//! (`cas-mismatch`) say "some value but this one", not a reads-from edge:
//! histories with them go to the search.

use std::collections::BTreeSet;

use super::search::SearchOp;
use crate::models::RegisterOp;

/// A time on the event axis: event index + 1, with 0 before everything and
/// `u64::MAX` after everything.
type Time = u64;
const NEVER: Time = u64::MAX;
const BEFORE_ALL: Time = 0;

/// What the polynomial check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unique {
    /// A linearization: indices into the operations, in order.
    Linearizable { order: Vec<u32> },
    /// Not linearizable; `proof` is a set of operations (indices) that
    /// explains why, `kind` names the shape of the anomaly.
    NotLinearizable { proof: Vec<u32>, kind: AnomalyKind },
}

/// The shape of an anomaly, for the sentence that explains it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnomalyKind {
    /// A read of a value no operation wrote.
    GarbageRead,
    /// A read (or compare-and-set) of a value whose write began only after
    /// it ended.
    FutureRead,
    /// Two compare-and-sets that both took effect from the same value.
    DoubleCas,
    /// A read of a value overwritten by an update that ended before the
    /// read began.
    StaleRead,
    /// Clusters whose real-time order contradicts the reads (a stale read
    /// is the simplest).
    Order,
    /// Two reads that saw different values before one update, which took
    /// effect only once (a key-value string read as `ab` and as `cb`).
    IncompatibleOrder,
}

impl AnomalyKind {
    /// Its name in a verdict's details.
    pub fn name(self) -> &'static str {
        match self {
            AnomalyKind::GarbageRead => "garbage-read",
            AnomalyKind::FutureRead => "future-read",
            AnomalyKind::DoubleCas => "double-cas",
            AnomalyKind::StaleRead => "stale-read",
            AnomalyKind::Order => "real-time-order",
            AnomalyKind::IncompatibleOrder => "incompatible-order",
        }
    }
}

/// A part's operations as a register's whose written values are unique,
/// index for index (see [`crate::model::Model::as_register`]).
#[derive(Clone, Debug)]
pub struct AsRegister {
    pub ops: Vec<SearchOp<RegisterOp>>,
    /// Two reads (indices) that already prove the part not linearizable,
    /// in a way no register shows (see [`AnomalyKind::IncompatibleOrder`]).
    pub conflict: Option<[u32; 2]>,
}

impl AsRegister {
    /// The register's verdict, or `None` when the check does not apply
    /// (values repeat, or an observed failed compare-and-set).
    pub fn decide(&self) -> Option<Unique> {
        self.applies().then(|| self.check())
    }

    /// Whether the check applies: see [`applies`] (a conflict decides
    /// before it).
    pub fn applies(&self) -> bool {
        self.conflict.is_some() || applies(&self.ops, 0)
    }

    /// The verdict, when the check [applies](AsRegister::applies).
    pub fn check(&self) -> Unique {
        match self.conflict {
            Some(pair) => invalid(pair.to_vec(), AnomalyKind::IncompatibleOrder),
            None => check(&self.ops, 0),
        }
    }
}

/// The shape of a shrunk `proof` of `ops`: a stale read when it is an
/// update and a read of another value that began after the update ended.
pub fn shape(ops: &[SearchOp<RegisterOp>], proof: &[u32], kind: AnomalyKind) -> AnomalyKind {
    let [a, b] = proof else { return kind };
    let (a, b) = (&ops[*a as usize], &ops[*b as usize]);
    let stale = |u: &SearchOp<RegisterOp>, r: &SearchOp<RegisterOp>| match (written(&u.op), r.op) {
        (Some(x), RegisterOp::Read(v)) => x != v && u.ret.is_some_and(|t| t < r.call),
        _ => false,
    };
    if kind == AnomalyKind::Order && (stale(a, b) || stale(b, a)) {
        AnomalyKind::StaleRead
    } else {
        kind
    }
}

/// One value's cluster.
#[derive(Clone, Debug)]
struct Cluster {
    /// The operation that wrote the value (`None`: the initial value, or no
    /// operation wrote it).
    writer: Option<u32>,
    /// The earliest return among its reads, and that read.
    read_ret: (Time, u32),
    /// The latest call among its reads, and that read.
    read_call: (Time, u32),
    has_reads: bool,
    /// Compare-and-sets from this value: (operation, value written).
    cas_out: Vec<(u32, u32)>,
    /// Took effect in every linearization.
    mandatory: bool,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster {
            writer: None,
            read_ret: (NEVER, u32::MAX),
            read_call: (BEFORE_ALL, u32::MAX),
            has_reads: false,
            cas_out: Vec::new(),
            mandatory: false,
        }
    }
}

fn call<O>(op: &SearchOp<O>) -> Time {
    op.call.saturating_add(1)
}

fn ret<O>(op: &SearchOp<O>) -> Time {
    op.ret.map_or(NEVER, |r| r.saturating_add(1).min(NEVER - 1))
}

/// The value each operation writes, if it writes one.
fn written(op: &RegisterOp) -> Option<u32> {
    match *op {
        RegisterOp::Write(v) | RegisterOp::Cas(_, v) => Some(v),
        _ => None,
    }
}

/// Whether the polynomial check applies to `ops` on a register starting
/// at value id `initial`: every written value distinct and not the initial
/// one, and no observed failed compare-and-set.
pub fn applies(ops: &[SearchOp<RegisterOp>], initial: u32) -> bool {
    let mut seen = std::collections::HashSet::with_capacity(ops.len());
    seen.insert(initial);
    ops.iter().all(|o| match o.op {
        RegisterOp::CasMismatch(_) => false,
        ref op => written(op).is_none_or(|v| seen.insert(v)),
    })
}

/// Checks `ops` (for which [`applies`] holds) on a register starting at
/// value id `initial`.
pub fn check(ops: &[SearchOp<RegisterOp>], initial: u32) -> Unique {
    let mut clusters = match Clusters::build(ops, initial) {
        Ok(c) => c,
        Err(bad) => return bad,
    };
    if let Err(bad) = clusters.mark_mandatory() {
        return bad;
    }
    let chains = match clusters.chains() {
        Ok(c) => c,
        Err(bad) => return bad,
    };
    order_chains(&clusters, chains)
}

/// The clusters of one history, indexed by value id.
struct Clusters<'a> {
    ops: &'a [SearchOp<RegisterOp>],
    initial: u32,
    by_value: Vec<Cluster>,
}

fn invalid(mut proof: Vec<u32>, kind: AnomalyKind) -> Unique {
    proof.sort_unstable();
    proof.dedup();
    proof.retain(|&i| i != u32::MAX);
    Unique::NotLinearizable { proof, kind }
}

impl<'a> Clusters<'a> {
    /// Groups the operations by value; a garbage read is an error.
    fn build(ops: &'a [SearchOp<RegisterOp>], initial: u32) -> Result<Clusters<'a>, Unique> {
        let values = ops
            .iter()
            .map(|o| match o.op {
                RegisterOp::Read(v) | RegisterOp::Write(v) | RegisterOp::CasMismatch(v) => v,
                RegisterOp::Cas(a, b) => a.max(b),
            })
            .chain([initial])
            .max()
            .unwrap_or(0) as usize;
        let mut by_value = vec![Cluster::new(); values + 1];
        for (i, o) in ops.iter().enumerate() {
            let i = i as u32;
            match o.op {
                RegisterOp::Read(v) => {
                    let c = &mut by_value[v as usize];
                    c.has_reads = true;
                    c.read_ret = c.read_ret.min((ret(o), i));
                    c.read_call = c.read_call.max((call(o), i));
                }
                RegisterOp::Write(v) => by_value[v as usize].writer = Some(i),
                RegisterOp::Cas(a, b) => {
                    by_value[b as usize].writer = Some(i);
                    by_value[a as usize].cas_out.push((i, b));
                }
                RegisterOp::CasMismatch(_) => {}
            }
        }
        let clusters = Clusters { ops, initial, by_value };
        clusters.garbage_read()?;
        Ok(clusters)
    }

    /// A read of a value nobody wrote, or a determinate compare-and-set
    /// from one.
    fn garbage_read(&self) -> Result<(), Unique> {
        for (v, c) in self.by_value.iter().enumerate() {
            if c.writer.is_some() || v as u32 == self.initial {
                continue;
            }
            if c.has_reads {
                return Err(invalid(vec![c.read_ret.1], AnomalyKind::GarbageRead));
            }
            if let Some(&(op, _)) = c.cas_out.iter().find(|(op, _)| self.ops[*op as usize].mandatory()) {
                return Err(invalid(vec![op], AnomalyKind::GarbageRead));
            }
        }
        Ok(())
    }

    /// The values in an order where each comes after the value its
    /// compare-and-set read (roots first); values no root reaches (under a
    /// value nobody wrote, or on a cycle of compare-and-sets) are left out.
    fn roots_first(&self) -> Vec<u32> {
        let mut order = Vec::with_capacity(self.by_value.len());
        for (v, c) in self.by_value.iter().enumerate() {
            let root = v as u32 == self.initial
                || c.writer
                    .is_some_and(|w| matches!(self.ops[w as usize].op, RegisterOp::Write(_)));
            if root {
                order.push(v as u32);
            }
        }
        let mut i = 0;
        while i < order.len() {
            let v = order[i] as usize;
            order.extend(self.by_value[v].cas_out.iter().map(|&(_, b)| b));
            i += 1;
        }
        order
    }

    /// Marks the values that took effect in every linearization: written by
    /// a determinate operation, read, or read by a compare-and-set that
    /// took effect. One that no write can reach is an error.
    fn mark_mandatory(&mut self) -> Result<(), Unique> {
        let order = self.roots_first();
        let mut reached = vec![false; self.by_value.len()];
        for &v in order.iter().rev() {
            reached[v as usize] = true;
            let c = &self.by_value[v as usize];
            let by_op = c.writer.is_some_and(|w| self.ops[w as usize].mandatory());
            let by_child = c.cas_out.iter().any(|&(_, b)| self.by_value[b as usize].mandatory);
            self.by_value[v as usize].mandatory = by_op || c.has_reads || by_child;
        }
        for (v, c) in self.by_value.iter().enumerate() {
            let needed = c.has_reads || c.writer.is_some_and(|w| self.ops[w as usize].mandatory());
            if !reached[v] && needed && c.writer.is_some() {
                // Written only by a compare-and-set from a value no write
                // reaches (a cycle of them): it cannot have happened.
                return Err(invalid(vec![self.witness(v as u32)], AnomalyKind::GarbageRead));
            }
        }
        Ok(())
    }

    /// One determinate operation that shows value `v` took effect: its
    /// writer if determinate, else a read of it, else a witness of the
    /// value a compare-and-set from it wrote.
    fn witness(&self, v: u32) -> u32 {
        let mut v = v;
        for _ in 0..self.by_value.len() {
            let c = &self.by_value[v as usize];
            if let Some(w) = c.writer.filter(|&w| self.ops[w as usize].mandatory()) {
                return w;
            }
            if c.has_reads {
                return c.read_ret.1;
            }
            match c.cas_out.iter().find(|(_, b)| self.by_value[*b as usize].mandatory) {
                Some(&(_, b)) => v = b,
                None => break,
            }
        }
        u32::MAX
    }

    /// The mandatory compare-and-set out of `v`, if one; two are an error.
    fn next_in_chain(&self, v: u32) -> Result<Option<u32>, Unique> {
        let mut out = self.by_value[v as usize]
            .cas_out
            .iter()
            .filter(|(_, b)| self.by_value[*b as usize].mandatory);
        let first = out.next().map(|&(_, b)| b);
        if let Some(&(_, second)) = out.next() {
            let proof = vec![self.witness(first.unwrap_or(second)), self.witness(second)];
            return Err(invalid(proof, AnomalyKind::DoubleCas));
        }
        Ok(first)
    }

    /// The chains of mandatory clusters, the initial value's first.
    fn chains(&self) -> Result<Vec<Chain>, Unique> {
        let mut chains = Vec::new();
        for v in self.roots_first() {
            let c = &self.by_value[v as usize];
            let is_root = v == self.initial
                || c.writer
                    .is_some_and(|w| matches!(self.ops[w as usize].op, RegisterOp::Write(_)));
            if !is_root || !(c.mandatory || v == self.initial) {
                continue;
            }
            let chain = self.chain_from(v)?;
            if v == self.initial {
                chains.insert(0, chain);
            } else {
                chains.push(chain);
            }
        }
        Ok(chains)
    }

    /// Follows the mandatory compare-and-sets from root `v`, checking that
    /// each cluster fits after those before it in the chain.
    fn chain_from(&self, root: u32) -> Result<Chain, Unique> {
        let mut chain = Chain {
            values: Vec::new(),
            lo: (BEFORE_ALL, u32::MAX),
            up: (NEVER, u32::MAX),
        };
        let mut v = Some(root);
        while let Some(value) = v {
            let c = &self.by_value[value as usize];
            let (l, u) = match c.writer {
                Some(w) => {
                    let op = &self.ops[w as usize];
                    ((call(op), w), (ret(op), w).min(c.read_ret))
                }
                None => ((BEFORE_ALL, u32::MAX), c.read_ret),
            };
            let start = chain.lo.max(l);
            if start.0 >= u.0 && start.1 == l.1 {
                // The value was written only after an operation that saw
                // it had ended: that operation alone proves it.
                return Err(invalid(vec![u.1], AnomalyKind::FutureRead));
            }
            if start.0 >= u.0 {
                return Err(invalid(vec![start.1, u.1], AnomalyKind::Order));
            }
            chain.up = chain.up.min(u);
            chain.lo = start.max(c.read_call);
            chain.values.push(value);
            v = self.next_in_chain(value)?;
            if chain.values.len() > self.by_value.len() {
                break;
            }
        }
        Ok(chain)
    }

    /// The operations of the clusters of `chain`, in a linearizable order:
    /// each writer, then its reads by call.
    fn linearize(&self, chain: &Chain, reads: &[Vec<u32>], order: &mut Vec<u32>) {
        for &v in &chain.values {
            if let Some(w) = self.by_value[v as usize].writer {
                order.push(w);
            }
            order.extend(&reads[v as usize]);
        }
    }
}

/// Clusters that follow each other directly, from a write (or the initial
/// value) along compare-and-sets.
#[derive(Debug)]
struct Chain {
    values: Vec<u32>,
    /// The earliest the next chain may start after it, and the operation
    /// that says so.
    lo: (Time, u32),
    /// The chain must start before this, and the operation that says so.
    up: (Time, u32),
}

/// Orders the chains (the first, the initial value's, stays first) so that
/// no chain placed before another has `lo` at or past the other's `up`.
fn order_chains(clusters: &Clusters, chains: Vec<Chain>) -> Unique {
    let (first, rest) = match chains.split_first() {
        Some(split) => split,
        None => return Unique::Linearizable { order: Vec::new() },
    };
    if let Some(late) = rest.iter().find(|c| c.up.0 <= first.lo.0) {
        return invalid(vec![first.lo.1, late.up.1], AnomalyKind::Order);
    }
    let mut by_lo: BTreeSet<((Time, u32), usize)> = rest.iter().enumerate().map(|(i, c)| (c.lo, i)).collect();
    let mut by_up: BTreeSet<((Time, u32), usize)> = rest.iter().enumerate().map(|(i, c)| (c.up, i)).collect();
    let mut sequence = vec![first];
    while let Some(&(_, a)) = by_lo.first() {
        let next = [Some(a), by_up.first().map(|&(_, b)| b)]
            .into_iter()
            .flatten()
            .find(|&x| is_source(rest, &by_up, x));
        let Some(x) = next else {
            return invalid(cycle_ops(rest, &by_up, a), AnomalyKind::Order);
        };
        by_lo.remove(&(rest[x].lo, x));
        by_up.remove(&(rest[x].up, x));
        sequence.push(&rest[x]);
    }
    let mut reads: Vec<Vec<u32>> = vec![Vec::new(); clusters.by_value.len()];
    let mut by_call: Vec<u32> = (0..clusters.ops.len() as u32).collect();
    by_call.sort_by_key(|&i| clusters.ops[i as usize].call);
    for i in by_call {
        if let RegisterOp::Read(v) = clusters.ops[i as usize].op {
            reads[v as usize].push(i);
        }
    }
    let mut order = Vec::with_capacity(clusters.ops.len());
    for chain in sequence {
        clusters.linearize(chain, &reads, &mut order);
    }
    Unique::Linearizable { order }
}

/// The chain with the earliest `up` other than `x`.
fn earliest_other(by_up: &BTreeSet<((Time, u32), usize)>, x: usize) -> Option<usize> {
    by_up.iter().map(|&(_, i)| i).find(|&i| i != x)
}

/// Whether nothing left must precede chain `x`.
fn is_source(chains: &[Chain], by_up: &BTreeSet<((Time, u32), usize)>, x: usize) -> bool {
    earliest_other(by_up, x).is_none_or(|y| chains[x].lo.0 < chains[y].up.0)
}

/// When no chain left can go first, every one has a predecessor (the
/// other with the earliest `up`): walks those from `start` to a cycle and
/// returns the operations that set the bounds along it.
fn cycle_ops(chains: &[Chain], by_up: &BTreeSet<((Time, u32), usize)>, start: usize) -> Vec<u32> {
    let mut seen = vec![usize::MAX; chains.len()];
    let mut path = Vec::new();
    let mut x = start;
    while seen[x] == usize::MAX {
        seen[x] = path.len();
        path.push(x);
        match earliest_other(by_up, x) {
            Some(y) => x = y,
            None => break,
        }
    }
    let cycle = &path[seen[x].min(path.len())..];
    cycle.iter().flat_map(|&c| [chains[c].lo.1, chains[c].up.1]).collect()
}
