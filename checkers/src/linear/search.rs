//! One linearizability search: Wing and Gong's backtracking over the
//! history's call and return events, with Lowe's cache of visited
//! configurations, as Horn and Kroening (and Porcupine) run it, made
//! iterative and bounded.
//!
//! The history part is a doubly-linked list of events in real-time order.
//! At each point the candidates for the next linearized operation are the
//! calls that appear before the first remaining return: those operations
//! started before every pending operation ended. Linearizing one lifts its
//! call and return out of the list; when the first return is reached, the
//! operation it belongs to should have been linearized before it, so the
//! search backtracks. A configuration (set of linearized operations, model
//! state) is explored at most once.
//!
//! Crashed operations have a call and no return (their return is at
//! infinity): they may be linearized at any point after their call, or never,
//! and the search succeeds as soon as every determinate operation is
//! linearized. Two dominance rules keep crashed operations cheap; each skips
//! an order only when another order the search also tries reaches a
//! configuration at least as good:
//!
//! - **No-op crash.** A crashed operation `c` whose step leaves the state
//!   unchanged is skipped. Proof: from prefix `P` (state `s`), `P·c` reaches
//!   `s` again with `c` used up. Any completion `P·c·R` gives the completion
//!   `P·R` (drop `c`: it is optional, and removing an operation from an
//!   order breaks no real-time constraint); and `P·R` is explored from `P`,
//!   since lifting `c` (which has no return) exposed no new candidate.
//! - **Overwritten crash.** If the last linearized operation is a crashed
//!   `c` and the candidate `o` overwrites the state blindly (a register
//!   write, a put), `P·c·o` is skipped. Proof: `o` ignores the state, so
//!   `P·o` reaches the same state as `P·c·o` with `c` still unused; any
//!   completion `P·c·o·R` gives `P·o·R`; and `o` was already a candidate
//!   after `P` (lifting `c` exposes none), so the search tries `P·o` too.
//!
//! Optional operations with a completion (used only to shrink evidence) may
//! take effect within their interval or never: when the search reaches the
//! return of one it has not linearized, it may *skip* it (mark it decided,
//! state unchanged) instead of backtracking. Both rules hold for them too,
//! with one more step in each proof: lifting an optional `c` may expose
//! candidates (those called after its return), but then `c`'s return was
//! the first in the list at `P`, so the search also tries `P·skip(c)`,
//! which reaches the very configuration `P·c` reaches (rule 1) or, followed
//! by `o`, the one `P·c·o` reaches (rule 2); and where lifting `c` exposed
//! nothing, a completion of `P·c·R` gives one of `P` that skips `c` at the
//! first point where its return leads the list, which every completion
//! passes before any operation called after that return.
//!
//! Budgets: wall-clock deadline, a step count (for the small re-checks that
//! shrink evidence) and the shared memory budget. Past any of them the
//! result is [`Found::Unknown`], never a guess.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::table::{zobrist, Charge, Memory, OutOfMemory, StateTable, VisitedSet};
use crate::model::{Effect, Model};

/// One operation as the search sees it.
#[derive(Clone, Debug)]
pub struct SearchOp<O> {
    pub op: O,
    /// Event index of the invocation.
    pub call: u64,
    /// Event index of the completion; `None` for a crashed operation.
    pub ret: Option<u64>,
    /// With a completion: the operation took effect within its interval
    /// *or never* (a relaxed determinate operation, see `evidence`).
    pub optional: bool,
}

impl<O> SearchOp<O> {
    /// True for an operation every linearization must contain.
    pub fn mandatory(&self) -> bool {
        self.ret.is_some() && !self.optional
    }
}

/// A deadline that can be brought forward while searches run: once one
/// part of a history is proven non-linearizable, the others get a short
/// grace period instead of the whole budget.
#[derive(Debug)]
pub struct SoftStop {
    start: Instant,
    /// Nanoseconds after `start`; `u64::MAX` while not set.
    at_ns: AtomicU64,
}

impl SoftStop {
    /// Not set.
    pub fn new() -> SoftStop {
        SoftStop {
            start: Instant::now(),
            at_ns: AtomicU64::new(u64::MAX),
        }
    }

    /// Stops searches `grace` from now (or earlier, if already set so).
    pub fn stop_after(&self, grace: Duration) {
        let at = (self.start.elapsed() + grace).as_nanos().min(u128::from(u64::MAX - 1)) as u64;
        self.at_ns.fetch_min(at, Ordering::Relaxed);
    }

    /// True once the stop time has passed.
    pub fn passed(&self, now: Instant) -> bool {
        let at = self.at_ns.load(Ordering::Relaxed);
        at != u64::MAX && now.saturating_duration_since(self.start).as_nanos() >= u128::from(at)
    }
}

impl Default for SoftStop {
    fn default() -> SoftStop {
        SoftStop::new()
    }
}

/// The limits of one search.
#[derive(Clone, Copy, Debug)]
pub struct Budget<'a> {
    pub deadline: Instant,
    /// A stop that other parts' results may bring forward.
    pub soft: Option<&'a SoftStop>,
    pub memory: &'a Memory,
    /// At most this many steps (candidate attempts and backtracks).
    pub max_steps: u64,
}

/// Which budget ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exhausted {
    Time,
    /// Stopped early because another part was proven non-linearizable.
    Stopped,
    Memory,
    Steps,
}

/// What a search found.
#[derive(Clone, Debug)]
pub enum Found<S> {
    /// Every determinate operation fits; `order` is a linearization
    /// (indices into the search's operations, crashed ones that took effect
    /// included).
    Linearizable { order: Vec<u32> },
    /// No order works. `longest` is a linearizable prefix with the most
    /// determinate operations, reaching `state`.
    NotLinearizable { longest: Vec<u32>, state: S },
    /// A budget ran out after linearizing at most `longest_det` of the
    /// `determinate` operations.
    Unknown {
        why: Exhausted,
        longest_det: usize,
        determinate: usize,
    },
}

/// Counters, for reports and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub steps: u64,
    pub visited: usize,
    pub states: usize,
}

const HEAD: u32 = 0;
const NO: u32 = u32::MAX;

/// The event list: node 0 is the head, nodes `1..=m` the events in
/// real-time order, node `m + 1` the tail.
struct Events {
    next: Vec<u32>,
    prev: Vec<u32>,
    /// The operation of each event node.
    op: Vec<u32>,
    /// For a call node, its return node (or `NO`); `NO` on return nodes.
    ret_of: Vec<u32>,
    is_call: Vec<bool>,
}

impl Events {
    fn new<O>(ops: &[SearchOp<O>]) -> Events {
        let mut evs: Vec<(u64, bool, u32)> = Vec::with_capacity(ops.len() * 2);
        for (i, o) in ops.iter().enumerate() {
            evs.push((o.call, false, i as u32));
            if let Some(r) = o.ret {
                evs.push((r, true, i as u32));
            }
        }
        // Event indices are distinct (and a call comes before a return of
        // the same index, should a caller give one): no need to compare
        // operation numbers too.
        evs.sort_unstable_by_key(|e| (e.0, e.1));
        let m = evs.len();
        let mut e = Events {
            next: (1..=m as u32 + 1).chain([NO]).collect(),
            prev: [NO].into_iter().chain(0..=m as u32).collect(),
            op: vec![NO; m + 2],
            ret_of: vec![NO; m + 2],
            is_call: vec![false; m + 2],
        };
        let mut call_node = vec![NO; ops.len()];
        for (n, &(_, is_ret, op)) in evs.iter().enumerate() {
            let node = n as u32 + 1;
            e.op[node as usize] = op;
            if is_ret {
                e.ret_of[call_node[op as usize] as usize] = node;
            } else {
                e.is_call[node as usize] = true;
                call_node[op as usize] = node;
            }
        }
        e
    }

    fn unlink(&mut self, n: u32) {
        let (p, x) = (self.prev[n as usize], self.next[n as usize]);
        self.next[p as usize] = x;
        self.prev[x as usize] = p;
    }

    fn relink(&mut self, n: u32) {
        let (p, x) = (self.prev[n as usize], self.next[n as usize]);
        self.next[p as usize] = n;
        self.prev[x as usize] = n;
    }

    fn lift(&mut self, call: u32) {
        self.unlink(call);
        let r = self.ret_of[call as usize];
        if r != NO {
            self.unlink(r);
        }
    }

    fn unlift(&mut self, call: u32) {
        let r = self.ret_of[call as usize];
        if r != NO {
            self.relink(r);
        }
        self.relink(call);
    }
}

/// A linearized (or skipped) operation on the search stack.
#[derive(Clone, Copy, Debug)]
struct Frame {
    /// Its call node.
    node: u32,
    /// The state before it.
    state: u32,
    /// Skipped: an optional operation decided not to take effect.
    skipped: bool,
}

/// The longest prefix seen so far, kept in amortized constant time per
/// step: `common` is how much of `best` the current stack still shares.
struct Longest {
    best: Vec<Frame>,
    best_det: usize,
    best_state: u32,
    common: usize,
}

impl Longest {
    fn on_pop(&mut self, depth: usize) {
        self.common = self.common.min(depth);
    }

    fn on_push(&mut self, stack: &[Frame], det: usize, state: u32) {
        if det <= self.best_det {
            return;
        }
        self.best.truncate(self.common);
        self.best.extend_from_slice(&stack[self.common..]);
        self.common = stack.len();
        self.best_det = det;
        self.best_state = state;
    }
}

/// The mutable state of one search.
struct Search<'a, 'm, M: Model> {
    ops: &'a [SearchOp<M::Op>],
    crashed: Vec<bool>,
    optional: Vec<bool>,
    effects: Vec<Effect>,
    events: Events,
    /// The call node of each operation.
    call_node: Vec<u32>,
    table: StateTable<'m, M>,
    visited: VisitedSet,
    bits: Vec<u64>,
    /// Zobrist keys of the operations, and the hash of `bits`.
    keys: Vec<u64>,
    bits_hash: u64,
    stack: Vec<Frame>,
    state: u32,
    determinate: usize,
    remaining_det: usize,
    longest: Longest,
    stats: Stats,
}

/// Searches for a linearization of `ops` under `model`.
pub fn search<M: Model>(model: &M, ops: &[SearchOp<M::Op>], budget: Budget) -> (Found<M::State>, Stats) {
    let mut charge = Charge::new(budget.memory);
    let determinate = ops.iter().filter(|o| o.mandatory()).count();
    let result = Search::new(model, ops, &mut charge).and_then(|mut s| {
        let found = s.run(budget, &mut charge);
        Ok((found?, s.stats()))
    });
    match result {
        Ok((found, stats)) => (found, stats),
        Err(OutOfMemory) => (
            Found::Unknown {
                why: Exhausted::Memory,
                longest_det: 0,
                determinate,
            },
            Stats::default(),
        ),
    }
}

/// Whether the clock says to stop, and why.
fn out_of_time(budget: Budget) -> Option<Exhausted> {
    let now = Instant::now();
    if now >= budget.deadline {
        return Some(Exhausted::Time);
    }
    budget.soft.filter(|s| s.passed(now)).map(|_| Exhausted::Stopped)
}

/// Steps between two looks at the clock.
const CLOCK_EVERY: u64 = 1 << 10;

impl<'a, 'm, M: Model> Search<'a, 'm, M> {
    fn new(model: &'m M, ops: &'a [SearchOp<M::Op>], charge: &mut Charge) -> Result<Self, OutOfMemory> {
        let words = ops.len().div_ceil(64).max(1);
        charge.add(ops.len() * 64)?;
        let events = Events::new(ops);
        let mut call_node = vec![NO; ops.len()];
        for (node, &is_call) in events.is_call.iter().enumerate() {
            if is_call {
                call_node[events.op[node] as usize] = node as u32;
            }
        }
        let determinate = ops.iter().filter(|o| o.mandatory()).count();
        Ok(Search {
            ops,
            crashed: ops.iter().map(|o| o.ret.is_none()).collect(),
            optional: ops.iter().map(|o| o.ret.is_some() && o.optional).collect(),
            effects: ops.iter().map(|o| model.effect(&o.op)).collect(),
            events,
            call_node,
            table: StateTable::new(model, charge)?,
            visited: VisitedSet::new(words, charge)?,
            bits: vec![0; words],
            keys: (0..ops.len() as u64).map(zobrist).collect(),
            bits_hash: 0,
            stack: Vec::with_capacity(ops.len()),
            state: 0,
            determinate,
            remaining_det: determinate,
            longest: Longest {
                best: Vec::new(),
                best_det: 0,
                best_state: 0,
                common: 0,
            },
            stats: Stats::default(),
        })
    }

    fn stats(&self) -> Stats {
        Stats {
            visited: self.visited.len(),
            states: self.table.len(),
            ..self.stats
        }
    }

    fn flip(&mut self, op: u32) {
        self.bits[op as usize / 64] ^= 1 << (op % 64);
        self.bits_hash ^= self.keys[op as usize];
    }

    fn is_mandatory(&self, op: u32) -> bool {
        !self.crashed[op as usize] && !self.optional[op as usize]
    }

    /// The outcome once the search stopped for lack of budget.
    fn unknown(&self, why: Exhausted) -> Found<M::State> {
        Found::Unknown {
            why,
            longest_det: self.longest.best_det,
            determinate: self.determinate,
        }
    }

    /// The operations of `frames` that took effect, in order.
    fn order(&self, frames: &[Frame]) -> Vec<u32> {
        frames
            .iter()
            .filter(|f| !f.skipped)
            .map(|f| self.events.op[f.node as usize])
            .collect()
    }

    fn run(&mut self, budget: Budget, charge: &mut Charge) -> Result<Found<M::State>, OutOfMemory> {
        let mut node = self.events.next[HEAD as usize];
        while self.remaining_det > 0 {
            self.stats.steps += 1;
            if self.stats.steps.is_multiple_of(CLOCK_EVERY) {
                if let Some(why) = out_of_time(budget) {
                    return Ok(self.unknown(why));
                }
            }
            if self.stats.steps > budget.max_steps {
                return Ok(self.unknown(Exhausted::Steps));
            }
            let attempt = if self.events.is_call[node as usize] {
                self.try_call(node, charge)
            } else {
                self.try_skip(node, charge)
            };
            node = match attempt {
                Ok(true) => self.events.next[HEAD as usize],
                Ok(false) if self.events.is_call[node as usize] => self.events.next[node as usize],
                Ok(false) => match self.backtrack() {
                    Some(next) => next,
                    None => return Ok(self.not_linearizable()),
                },
                Err(OutOfMemory) => return Ok(self.unknown(Exhausted::Memory)),
            };
        }
        Ok(Found::Linearizable {
            order: self.order(&self.stack),
        })
    }

    /// Whether a dominance rule (module doc) skips linearizing `op` next.
    fn dominated(&self, op: u32, next_state: u32) -> bool {
        if self.may_omit(op) && next_state == self.state {
            return true;
        }
        match self.stack.last() {
            Some(top) if !top.skipped && self.effects[op as usize] == Effect::Overwrite => {
                self.may_omit(self.events.op[top.node as usize])
            }
            _ => false,
        }
    }

    /// Crashed or optional: an operation no linearization needs.
    fn may_omit(&self, op: u32) -> bool {
        self.crashed[op as usize] || self.optional[op as usize]
    }

    /// Marks `op` decided with state `next`, if that configuration is new.
    fn push(&mut self, node: u32, op: u32, next: u32, skipped: bool, charge: &mut Charge) -> Result<bool, OutOfMemory> {
        self.flip(op);
        if !self.visited.insert(&self.bits, self.bits_hash, next, charge)? {
            self.flip(op);
            return Ok(false);
        }
        self.stack.push(Frame {
            node,
            state: self.state,
            skipped,
        });
        self.state = next;
        self.events.lift(node);
        if self.is_mandatory(op) {
            self.remaining_det -= 1;
        }
        let det = self.determinate - self.remaining_det;
        self.longest.on_push(&self.stack, det, next);
        Ok(true)
    }

    /// Tries to linearize the call at `node` next; true if it did.
    fn try_call(&mut self, node: u32, charge: &mut Charge) -> Result<bool, OutOfMemory> {
        let op = self.events.op[node as usize];
        let Some(next) = self.table.step(self.state, op, &self.ops[op as usize].op, charge)? else {
            return Ok(false);
        };
        if self.dominated(op, next) {
            return Ok(false);
        }
        self.push(node, op, next, false, charge)
    }

    /// At the return `node` of an operation not yet linearized: skips it if
    /// it is optional; true if it did.
    fn try_skip(&mut self, node: u32, charge: &mut Charge) -> Result<bool, OutOfMemory> {
        let op = self.events.op[node as usize];
        if !self.optional[op as usize] {
            return Ok(false);
        }
        self.push(self.call_node[op as usize], op, self.state, true, charge)
    }

    /// Undoes the last linearized operation (and the skips above it, which
    /// had no alternative); the node to try after it, or `None` when there
    /// is nothing left to undo.
    fn backtrack(&mut self) -> Option<u32> {
        loop {
            let frame = self.stack.pop()?;
            let op = self.events.op[frame.node as usize];
            self.flip(op);
            self.state = frame.state;
            self.events.unlift(frame.node);
            if self.is_mandatory(op) {
                self.remaining_det += 1;
            }
            self.longest.on_pop(self.stack.len());
            if !frame.skipped {
                return Some(self.events.next[frame.node as usize]);
            }
        }
    }

    fn not_linearizable(&self) -> Found<M::State> {
        Found::NotLinearizable {
            longest: self.order(&self.longest.best),
            state: self.table.state(self.longest.best_state).clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The search, with crashed and optional operations, against brute
    //! force over every subset of omittable operations in every order that
    //! respects real time.

    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::models::{Register, RegisterOp};

    fn register() -> Register {
        let mut r = Register::cas(&serde_json::Value::Null);
        // Ids 1..=3 name the values 0..=2 (id 0 is the initial null).
        let h = faultline_histories::History::default();
        for v in 0..3 {
            let op = crate::models::ok_op(
                faultline_histories::F::Write,
                serde_json::json!(v),
                serde_json::json!(v),
            );
            crate::model::Model::encode(&mut r, &h, &op).unwrap();
        }
        r
    }

    fn brute(model: &Register, ops: &[SearchOp<RegisterOp>], used: &mut Vec<bool>, state: u32) -> bool {
        // i may go next unless an undecided op (one to place, or optional
        // and not yet dropped) returned before i was called.
        let open = |i: usize, used: &[bool]| {
            !ops.iter()
                .enumerate()
                .any(|(j, o)| j != i && !used[j] && o.ret.is_some_and(|r| r < ops[i].call))
        };
        if (0..ops.len()).all(|i| used[i] || !ops[i].mandatory()) {
            return true;
        }
        for i in 0..ops.len() {
            if used[i] || !open(i, used) {
                continue;
            }
            // An omittable op may also be dropped here for good: mark it
            // used without effect, if nothing forces it to have happened.
            let omittable = !ops[i].mandatory();
            if let Some(next) = model.step(&state, &ops[i].op) {
                used[i] = true;
                if brute(model, ops, used, next) {
                    return true;
                }
                used[i] = false;
            }
            if omittable {
                used[i] = true;
                let ok = brute(model, ops, used, state);
                used[i] = false;
                if ok {
                    return true;
                }
            }
        }
        false
    }

    fn op_strategy() -> impl Strategy<Value = (u8, u8, u8, u8, u8)> {
        (0u8..4, 1u8..4, 0u8..4, 0u8..12, 0u8..6)
    }

    fn build(specs: &[(u8, u8, u8, u8, u8)]) -> Vec<SearchOp<RegisterOp>> {
        specs
            .iter()
            .map(|&(f, a, b, start, len)| {
                let op = match f {
                    0 => RegisterOp::Read(u32::from(a % 4)),
                    1 => RegisterOp::Write(u32::from(a)),
                    2 => RegisterOp::Cas(u32::from(a), u32::from(b % 3 + 1)),
                    _ => RegisterOp::CasMismatch(u32::from(a)),
                };
                let call = u64::from(start) * 2;
                let (ret, optional) = match len {
                    0 => (None, false),
                    1 if !matches!(op, RegisterOp::Read(_) | RegisterOp::CasMismatch(_)) => {
                        (Some(call + 1 + u64::from(b) * 2), true)
                    }
                    _ => (Some(call + 1 + u64::from(len) * 2), false),
                };
                SearchOp {
                    op,
                    call,
                    ret,
                    optional,
                }
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn search_agrees_with_brute_force(specs in proptest::collection::vec(op_strategy(), 1..7)) {
            let model = register();
            let mut ops = build(&specs);
            // Event indices must be distinct: spread them by position.
            for (i, o) in ops.iter_mut().enumerate() {
                o.call = o.call * 16 + i as u64;
                o.ret = o.ret.map(|r| r * 16 + i as u64 + 8);
            }
            let memory = Memory::new(1 << 26);
            let budget = Budget {
                deadline: Instant::now() + Duration::from_secs(10),
                soft: None,
                memory: &memory,
                max_steps: u64::MAX,
            };
            let (found, _) = search(&model, &ops, budget);
            let expected = brute(&model, &ops, &mut vec![false; ops.len()], 0);
            match found {
                Found::Linearizable { .. } => prop_assert!(expected, "{:?}", ops),
                Found::NotLinearizable { .. } => prop_assert!(!expected, "{:?}", ops),
                Found::Unknown { .. } => prop_assert!(false, "undecided"),
            }
        }
    }
}
