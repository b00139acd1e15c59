//! The fault schedule of one world: windows drawn from the seed, each a
//! fault that starts and stops (turmoil's paired verbs), and every fault
//! healed when the clients stop.
//!
//! Promise: a fault counts only when it took effect (a leader to kill was
//! there, a node to crash was running); windows never overlap, so each
//! heal undoes exactly its own fault.

use crate::scenario::FaultKind;
use rand::rngs::StdRng;
use rand::Rng;

/// What a fault acts on: a simulated cluster ([`crate::world::World`],
/// whichever core it drives).
pub(crate) trait Cluster {
    fn node_count(&self) -> usize;
    fn rng(&mut self) -> &mut StdRng;
    /// The node that leads, where there is one.
    fn leader(&self) -> Option<usize>;
    /// Cuts every link between `side` and the other nodes (empty: heal).
    fn partition(&mut self, side: &[usize]);
    fn crash(&mut self, node: usize, power_loss: bool);
    fn restart(&mut self, node: usize);
    fn set_lossy(&mut self, drop_percent: u32, delay_max_ms: u64);
    /// Sets `node`'s wall clock `offset_ms` off (None: every clock right
    /// again); false when the cluster's nodes read no wall clock.
    fn skew_clock(&mut self, skew: Option<(usize, i64)>) -> bool;
}

/// How far a skewed clock is off, either way (ms).
const SKEW_MS: (i64, i64) = (50, 1_000);

/// One step of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A fault starts.
    Begin(FaultKind),
    /// It stops: links heal, killed nodes restart, loss ends.
    End(FaultKind),
    /// The clients have stopped: everything heals.
    HealAll,
}

/// A world's schedule: (simulated ms, step), in time order.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub steps: Vec<(u64, Fault)>,
}

/// Shortest and longest fault window, and the gap between windows.
const WINDOW_MS: (u64, u64) = (100, 500);
const GAP_MS: (u64, u64) = (50, 300);

impl Plan {
    /// Windows of faults drawn from `kinds` until `run_ms`, then a heal.
    pub fn draw(kinds: &[FaultKind], run_ms: u64, rng: &mut StdRng) -> Plan {
        let mut steps = Vec::new();
        if kinds.is_empty() {
            return Plan { steps };
        }
        let mut t = rng.gen_range(50..=GAP_MS.1);
        while t + WINDOW_MS.0 < run_ms {
            let kind = kinds[rng.gen_range(0..kinds.len())];
            let end = (t + rng.gen_range(WINDOW_MS.0..=WINDOW_MS.1)).min(run_ms);
            steps.push((t, Fault::Begin(kind)));
            steps.push((end, Fault::End(kind)));
            t = end + rng.gen_range(GAP_MS.0..=GAP_MS.1);
        }
        steps.push((run_ms, Fault::HealAll));
        Plan { steps }
    }
}

/// Carries out `fault` in `world`; true when it took effect.
pub fn apply(world: &mut impl Cluster, fault: &Fault) -> bool {
    match fault {
        Fault::Begin(kind) => begin(world, *kind),
        Fault::End(kind) => {
            end(world, *kind);
            false
        }
        Fault::HealAll => {
            heal_all(world);
            false
        }
    }
}

fn begin(world: &mut impl Cluster, kind: FaultKind) -> bool {
    let n = world.node_count();
    match kind {
        FaultKind::IsolateLeader => match world.leader() {
            Some(l) => {
                world.partition(&[l]);
                true
            }
            None => false,
        },
        FaultKind::RandomHalves => {
            let size = world.rng().gen_range(1..=n / 2);
            let mut side: Vec<usize> = (0..n).collect();
            for i in 0..size {
                let j = world.rng().gen_range(i..n);
                side.swap(i, j);
            }
            side.truncate(size);
            world.partition(&side);
            true
        }
        FaultKind::KillLeader => match world.leader() {
            Some(l) => {
                world.crash(l, false);
                true
            }
            None => false,
        },
        FaultKind::PowerLossOne => {
            let node = world.rng().gen_range(0..n);
            world.crash(node, true);
            true
        }
        FaultKind::PowerLossAll => {
            for node in 0..n {
                world.crash(node, true);
            }
            true
        }
        FaultKind::Lossy => {
            world.set_lossy(20, 30);
            true
        }
        FaultKind::SkewClock => {
            let node = world.rng().gen_range(0..n);
            let ms = world.rng().gen_range(SKEW_MS.0..=SKEW_MS.1);
            let offset = if world.rng().gen_bool(0.5) { ms } else { -ms };
            world.skew_clock(Some((node, offset)))
        }
    }
}

fn end(world: &mut impl Cluster, kind: FaultKind) {
    match kind {
        FaultKind::IsolateLeader | FaultKind::RandomHalves => world.partition(&[]),
        FaultKind::KillLeader | FaultKind::PowerLossOne | FaultKind::PowerLossAll => {
            for node in 0..world.node_count() {
                world.restart(node);
            }
        }
        FaultKind::Lossy => world.set_lossy(0, 3),
        FaultKind::SkewClock => {
            world.skew_clock(None);
        }
    }
}

fn heal_all(world: &mut impl Cluster) {
    world.partition(&[]);
    world.skew_clock(None);
    world.set_lossy(0, 3);
    for node in 0..world.node_count() {
        world.restart(node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::ALL_FAULTS;
    use rand::SeedableRng;

    #[test]
    fn windows_pair_up_never_overlap_and_everything_heals_at_the_end() {
        for seed in 0..200 {
            let plan = Plan::draw(&ALL_FAULTS, 1_000, &mut StdRng::seed_from_u64(seed));
            let (last, windows) = plan.steps.split_last().unwrap();
            assert_eq!(*last, (1_000, Fault::HealAll), "seed {seed}");
            assert!(!windows.is_empty(), "seed {seed}: no fault at all");
            let mut previous_end = 0;
            for pair in windows.chunks(2) {
                let [(start, Fault::Begin(a)), (end, Fault::End(b))] = pair else {
                    panic!("seed {seed}: unpaired {pair:?}");
                };
                assert_eq!(a, b);
                assert!(
                    previous_end < *start && start < end && *end <= 1_000,
                    "seed {seed}: {pair:?}"
                );
                previous_end = *end;
            }
        }
        let none = Plan::draw(&[], 1_000, &mut StdRng::seed_from_u64(1));
        assert!(none.steps.is_empty(), "a scenario without faults gets none");
    }
}
