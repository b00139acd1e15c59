//! Fault schedules: which faults a test injects, and when, drawn from the
//! seed before the test starts.
//!
//! `--nemesis partition,kill,pause --nemesis-interval 5` becomes a [`Plan`]:
//! every `interval` the nemesis either starts a fault (drawn among the kinds
//! given) or stops the one it started, so faults and quiet periods alternate
//! as in Jepsen. The plan is a pure function of (kinds, nodes, interval,
//! duration, seed): the same seed gives the same schedule. Targets that only
//! exist at run time (the leader) are named as such and resolved when the
//! step plays.

use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use crate::error::NemesisError;
use crate::fault::{FaultEvent, FaultFamily, FaultKind};
use crate::partition::{self, Partition, Shape};

/// Most steps one plan may hold.
pub const MAX_STEPS: usize = 100_000;

/// Which node a process fault hits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// This node.
    Node(String),
    /// Whoever leads when the step plays.
    Leader,
    /// Every node.
    All,
}

/// One fault, ready to start.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Cut these links.
    Partition(Partition),
    /// Cut the leader (found when the step plays) from everyone.
    PartitionLeader,
    /// SIGKILL, later restart.
    Kill(Target),
    /// SIGSTOP, later SIGCONT.
    Pause(Target),
    /// Cut the primary off and promote a replica; later rejoin the old one.
    Failover,
    /// Stall the node's disk until the fault stops.
    DiskStall(Target),
    /// EIO on the node's writes and fsyncs until the fault stops.
    DiskError(Target),
    /// Every fsync of the node takes `fsync_ms` longer until the fault stops.
    DiskSlow { target: Target, fsync_ms: u64 },
    /// Kill every node at once and drop their unsynced writes; restart later.
    LoseUnsynced,
    /// Each named node's clock this many milliseconds off.
    Clock(BTreeMap<String, i64>),
    /// The node's clock flips between true and `offset_ms` off every `period_ms`.
    ClockStrobe {
        node: String,
        offset_ms: i64,
        period_ms: u64,
    },
}

impl Fault {
    /// The kind that asks for this fault, with the shape or target it was
    /// drawn with (`partition-halves`, `kill-leader`): what the run's table
    /// counts.
    pub fn kind(&self) -> FaultKind {
        let by_target = |node: FaultKind, leader: FaultKind, all: FaultKind, t: &Target| match t {
            Target::Node(_) => node,
            Target::Leader => leader,
            Target::All => all,
        };
        match self {
            Fault::Partition(p) => FaultKind::of_shape(p.shape),
            Fault::PartitionLeader => FaultKind::PartitionLeader,
            Fault::Kill(t) => by_target(FaultKind::Kill, FaultKind::KillLeader, FaultKind::KillAll, t),
            // No kind pauses every node; a pause of all would count as pauses.
            Fault::Pause(t) => by_target(FaultKind::Pause, FaultKind::PauseLeader, FaultKind::Pause, t),
            Fault::Failover => FaultKind::Failover,
            Fault::DiskStall(_) => FaultKind::DiskStall,
            Fault::DiskError(_) => FaultKind::DiskError,
            Fault::DiskSlow { .. } => FaultKind::DiskSlow,
            Fault::LoseUnsynced => FaultKind::LoseUnsynced,
            Fault::Clock(_) => FaultKind::Clock,
            Fault::ClockStrobe { .. } => FaultKind::ClockStrobe,
        }
    }

    /// What the fault does.
    pub fn family(&self) -> FaultFamily {
        self.kind().family()
    }

    /// The nemesis event that starts this fault (HISTORY_FORMAT.md): a
    /// fault that did not take effect is recorded under the same `f` with
    /// the type `fail`.
    pub fn start_event(&self) -> FaultEvent {
        FaultEvent::start(self.family())
    }

    /// The nodes the fault names before it runs (a leader is only known
    /// when the step plays): for logs.
    pub fn named_nodes(&self) -> Vec<String> {
        let mut nodes: Vec<String> = match self {
            Fault::Partition(p) => p.cuts.iter().flat_map(|l| [l.from.clone(), l.to.clone()]).collect(),
            Fault::Kill(Target::Node(n))
            | Fault::Pause(Target::Node(n))
            | Fault::DiskStall(Target::Node(n))
            | Fault::DiskError(Target::Node(n))
            | Fault::DiskSlow {
                target: Target::Node(n),
                ..
            }
            | Fault::ClockStrobe { node: n, .. } => vec![n.clone()],
            Fault::Clock(offsets) => offsets.keys().cloned().collect(),
            _ => Vec::new(),
        };
        nodes.sort();
        nodes.dedup();
        nodes
    }

    /// A short description for logs and the plan listing.
    pub fn describe(&self) -> Value {
        match self {
            Fault::Partition(p) => json!({"partition": p.event_value()}),
            Fault::PartitionLeader => json!({"partition": "isolate-leader"}),
            Fault::Kill(t) => json!({"kill": target_name(t)}),
            Fault::Pause(t) => json!({"pause": target_name(t)}),
            Fault::Failover => json!({"failover": "primary"}),
            Fault::DiskStall(t) => json!({"disk-stall": target_name(t)}),
            Fault::DiskError(t) => json!({"disk-error": target_name(t)}),
            Fault::DiskSlow { target, fsync_ms } => json!({"disk-slow": target_name(target), "fsync_ms": fsync_ms}),
            Fault::LoseUnsynced => json!({"lose-unsynced": "all"}),
            Fault::Clock(offsets) => json!({"clock": offsets}),
            Fault::ClockStrobe {
                node,
                offset_ms,
                period_ms,
            } => json!({"clock-strobe": {"node": node, "offset_ms": offset_ms, "period_ms": period_ms}}),
        }
    }
}

fn target_name(t: &Target) -> String {
    match t {
        Target::Node(n) => n.clone(),
        Target::Leader => "leader".into(),
        Target::All => "all".into(),
    }
}

/// Start or stop a fault.
#[derive(Clone, Debug, PartialEq)]
pub enum StepAction {
    /// Start this fault.
    Start(Fault),
    /// Stop the fault that is running.
    Stop,
}

/// One step of a plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// When, in milliseconds since the workload started.
    pub at_ms: u64,
    /// What.
    pub action: StepAction,
}

/// The whole fault schedule of a test.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Plan {
    /// Steps in time order; starts and stops alternate, starting with a start.
    pub steps: Vec<Step>,
    /// When the plan ends (the workload's duration): a fault started last
    /// stays in force until then.
    pub end_ms: u64,
}

impl Plan {
    /// The shortest workload, in milliseconds, that holds one of each of
    /// `kinds` (duplicates counted once) at `interval_ms`: each fault gets an
    /// interval of quiet before it and an interval in force.
    pub fn shortest_duration_ms(kinds: &[FaultKind], interval_ms: u64) -> u64 {
        2 * distinct(kinds).len() as u64 * interval_ms
    }

    /// Refuses a schedule that could not start every requested kind of
    /// fault within `duration_ms`, naming the shortest time limit (and the
    /// longest interval) that would fit: a test asked for faults must
    /// never pass without them.
    pub fn check_fits(kinds: &[FaultKind], interval_ms: u64, duration_ms: u64) -> Result<(), NemesisError> {
        let needed_ms = Plan::shortest_duration_ms(kinds, interval_ms);
        if kinds.is_empty() || interval_ms == 0 || needed_ms <= duration_ms {
            return Ok(());
        }
        let count = distinct(kinds).len() as u64;
        Err(NemesisError::ScheduleTooShort {
            faults: count as usize,
            interval_ms,
            duration_ms,
            needed_ms,
            interval_max_ms: duration_ms / (2 * count),
        })
    }

    /// Draws a schedule: a fault starts at `interval`, stops at `2 *
    /// interval`, the next starts at `3 * interval`, ... until `duration`.
    /// The first starts take each requested kind once (in an order drawn
    /// from the seed), so every kind runs; later ones are drawn at random.
    pub fn draw(
        kinds: &[FaultKind],
        nodes: &[String],
        interval_ms: u64,
        duration_ms: u64,
        seed: u64,
    ) -> Result<Plan, NemesisError> {
        if kinds.is_empty() {
            return Ok(Plan {
                steps: Vec::new(),
                end_ms: duration_ms,
            });
        }
        if nodes.is_empty() {
            return Err(NemesisError::BadSchedule("faults need at least one node".into()));
        }
        if interval_ms == 0 {
            return Err(NemesisError::BadSchedule(
                "the nemesis interval must be positive".into(),
            ));
        }
        Plan::check_fits(kinds, interval_ms, duration_ms)?;
        let count = (duration_ms / interval_ms) as usize;
        if count > MAX_STEPS {
            return Err(NemesisError::BadSchedule(format!(
                "{count} steps exceed {MAX_STEPS}; raise the interval"
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut first_round = distinct(kinds);
        first_round.shuffle(&mut rng);
        let mut first_round = first_round.into_iter();
        let mut steps = Vec::with_capacity(count);
        for i in 1..count {
            let at_ms = i as u64 * interval_ms;
            let action = if i % 2 == 1 {
                let kind = match first_round.next() {
                    Some(k) => k,
                    None => *kinds.choose(&mut rng).expect("kinds is not empty"),
                };
                StepAction::Start(draw_fault(kind, nodes, &mut rng))
            } else {
                StepAction::Stop
            };
            steps.push(Step { at_ms, action });
        }
        Ok(Plan {
            steps,
            end_ms: duration_ms,
        })
    }
}

/// `kinds` without repeats, in their first order.
fn distinct(kinds: &[FaultKind]) -> Vec<FaultKind> {
    let mut out: Vec<FaultKind> = Vec::with_capacity(kinds.len());
    for k in kinds {
        if !out.contains(k) {
            out.push(*k);
        }
    }
    out
}

const RANDOM_SHAPES: [Shape; 6] = [
    Shape::Halves,
    Shape::IsolateOne,
    Shape::IsolateLeader,
    Shape::MajoritiesRing,
    Shape::Bridge,
    Shape::OneWay,
];

fn draw_fault(kind: FaultKind, nodes: &[String], rng: &mut ChaCha8Rng) -> Fault {
    let partition = |shape: Shape, rng: &mut ChaCha8Rng| match shape {
        Shape::IsolateLeader => Fault::PartitionLeader,
        s => Fault::Partition(partition::draw(s, nodes, rng)),
    };
    let node = |rng: &mut ChaCha8Rng| Target::Node(nodes.choose(rng).expect("nodes is not empty").clone());
    match kind {
        FaultKind::Partition => {
            let shape = *RANDOM_SHAPES.choose(rng).expect("shapes");
            partition(shape, rng)
        }
        FaultKind::PartitionHalves
        | FaultKind::PartitionOne
        | FaultKind::PartitionLeader
        | FaultKind::PartitionRing
        | FaultKind::PartitionBridge
        | FaultKind::PartitionOneWay => partition(kind.shape().expect("a partition kind has a shape"), rng),
        FaultKind::Kill => Fault::Kill(node(rng)),
        FaultKind::KillLeader => Fault::Kill(Target::Leader),
        FaultKind::KillAll => Fault::Kill(Target::All),
        FaultKind::Pause => Fault::Pause(node(rng)),
        FaultKind::PauseLeader => Fault::Pause(Target::Leader),
        FaultKind::Failover => Fault::Failover,
        FaultKind::DiskStall => Fault::DiskStall(node(rng)),
        FaultKind::DiskError => Fault::DiskError(node(rng)),
        FaultKind::DiskSlow => Fault::DiskSlow {
            target: node(rng),
            fsync_ms: rng.gen_range(20..=500),
        },
        FaultKind::LoseUnsynced => Fault::LoseUnsynced,
        FaultKind::Clock => Fault::Clock(draw_offsets(nodes, rng)),
        FaultKind::ClockStrobe => Fault::ClockStrobe {
            node: nodes.choose(rng).expect("nodes is not empty").clone(),
            offset_ms: signed(rng, CLOCK_OFFSET_MAX_MS),
            period_ms: rng.gen_range(10..=200),
        },
    }
}

/// The most a clock fault sets a clock off, either way.
pub const CLOCK_OFFSET_MAX_MS: i64 = 5_000;

/// A non-zero offset of at least 100 ms and at most `max` ms, either way.
fn signed(rng: &mut ChaCha8Rng, max: i64) -> i64 {
    let magnitude = rng.gen_range(100..=max);
    if rng.gen_bool(0.5) {
        magnitude
    } else {
        -magnitude
    }
}

/// Offsets for a random non-empty subset of the nodes (one node keeps true
/// time when there are several, so the skew is between nodes).
fn draw_offsets(nodes: &[String], rng: &mut ChaCha8Rng) -> BTreeMap<String, i64> {
    let mut shuffled = nodes.to_vec();
    shuffled.shuffle(rng);
    let count = if nodes.len() > 1 {
        rng.gen_range(1..nodes.len())
    } else {
        1
    };
    shuffled
        .into_iter()
        .take(count)
        .map(|n| {
            let off = signed(rng, CLOCK_OFFSET_MAX_MS);
            (n, off)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn nodes() -> Vec<String> {
        vec!["n1".into(), "n2".into(), "n3".into()]
    }

    /// The names of the faults the plan starts, in plan order.
    fn started_names(p: &Plan) -> Vec<String> {
        p.steps
            .iter()
            .filter_map(|s| match &s.action {
                StepAction::Start(f) => Some(f.kind().name().to_owned()),
                StepAction::Stop => None,
            })
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_another_seed_another() {
        let kinds = FaultKind::parse_list("partition,kill,pause").unwrap();
        let a = Plan::draw(&kinds, &nodes(), 1000, 60_000, 5).unwrap();
        let b = Plan::draw(&kinds, &nodes(), 1000, 60_000, 5).unwrap();
        let c = Plan::draw(&kinds, &nodes(), 1000, 60_000, 6).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn starts_and_stops_alternate_within_the_duration() {
        let kinds = FaultKind::parse_list("kill").unwrap();
        let p = Plan::draw(&kinds, &nodes(), 5000, 30_000, 1).unwrap();
        assert_eq!(p.steps.len(), 5);
        for (i, s) in p.steps.iter().enumerate() {
            assert_eq!(s.at_ms, (i as u64 + 1) * 5000);
            assert_eq!(matches!(s.action, StepAction::Start(_)), i % 2 == 0);
        }
        assert!(p.steps.last().unwrap().at_ms < 30_000);
        assert_eq!(p.end_ms, 30_000, "a fault started last lasts until the end");
    }

    #[test]
    fn a_schedule_too_short_for_one_of_each_fault_is_refused_with_the_limit_that_fits() {
        let slow = FaultKind::parse_list("disk-slow").unwrap();
        let err = Plan::draw(&slow, &nodes(), 5000, 8000, 1).unwrap_err();
        assert!(
            matches!(err, NemesisError::ScheduleTooShort { needed_ms: 10_000, .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.contains("at least 10 s") && msg.contains("at most 4 s"), "{msg}");
        let p = Plan::draw(&slow, &nodes(), 4000, 8000, 1).unwrap();
        assert!(
            matches!(p.steps[0].action, StepAction::Start(Fault::DiskSlow { .. })),
            "{p:?}"
        );
        // Repeated words count once; three kinds at 2 s need 12 s.
        let three = FaultKind::parse_list("partition,kill,pause,kill").unwrap();
        assert_eq!(Plan::shortest_duration_ms(&three, 2000), 12_000);
        assert!(Plan::check_fits(&three, 2000, 11_999).is_err());
        Plan::check_fits(&three, 2000, 12_000).unwrap();
        Plan::check_fits(&[], 5000, 1).unwrap();
    }

    #[test]
    fn the_first_starts_take_each_kind_once_for_every_seed() {
        let kinds = FaultKind::parse_list("partition-halves,kill,pause,disk-slow").unwrap();
        for seed in 0..50 {
            let p = Plan::draw(&kinds, &nodes(), 1000, 8000, seed).unwrap();
            let names: BTreeSet<String> = started_names(&p).into_iter().collect();
            let want: BTreeSet<String> = ["partition-halves", "kill", "pause", "disk-slow"]
                .map(String::from)
                .into();
            assert_eq!(names, want, "seed {seed}");
        }
    }

    #[test]
    fn fault_names_are_the_words_that_ask_for_them() {
        let kinds =
            FaultKind::parse_list("partition-ring,kill-leader,kill-all,pause,lose-unsynced,clock-strobe").unwrap();
        let p = Plan::draw(&kinds, &nodes(), 1000, 12_000, 3).unwrap();
        let mut names = started_names(&p);
        names.sort();
        assert_eq!(
            names,
            [
                "clock-strobe",
                "kill-all",
                "kill-leader",
                "lose-unsynced",
                "partition-ring",
                "pause"
            ]
        );
    }

    #[test]
    fn a_mixed_schedule_uses_every_kind() {
        let kinds = FaultKind::parse_list("partition,kill,pause").unwrap();
        let p = Plan::draw(&kinds, &nodes(), 1000, 200_000, 2).unwrap();
        let has = |f: fn(&Fault) -> bool| {
            p.steps
                .iter()
                .any(|s| matches!(&s.action, StepAction::Start(x) if f(x)))
        };
        assert!(has(|f| matches!(f, Fault::Partition(_) | Fault::PartitionLeader)));
        assert!(has(|f| matches!(f, Fault::Kill(_))));
        assert!(has(|f| matches!(f, Fault::Pause(_))));
    }
}
