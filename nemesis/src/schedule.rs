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
use crate::partition::{self, Partition, Shape};

/// Most steps one plan may hold.
pub const MAX_STEPS: usize = 100_000;

/// A fault the user can ask for with `--nemesis`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// A partition of a random shape.
    Partition,
    /// A partition of one shape.
    PartitionOf(Shape),
    /// SIGKILL a random node, restart it later.
    Kill,
    /// SIGKILL the leader, restart it later.
    KillLeader,
    /// SIGKILL every node at once, restart them later.
    KillAll,
    /// SIGSTOP a random node, SIGCONT it later.
    Pause,
    /// SIGSTOP the leader, SIGCONT it later.
    PauseLeader,
    /// Cut the primary off, promote a replica; rejoin the old primary later
    /// (databases with operator failover: Redis).
    Failover,
    /// Stall every disk operation of a random node for the fault's length.
    DiskStall,
    /// Fail a random node's writes and fsyncs with EIO.
    DiskError,
    /// Slow a random node's fsyncs down by tens to hundreds of milliseconds.
    DiskSlow,
    /// Power loss: kill every node at once and lose their unsynced writes;
    /// restart them later.
    LoseUnsynced,
    /// Set random nodes' clocks off by up to a few seconds; reset later.
    Clock,
    /// Flip one node's clock between true and off, every few milliseconds.
    ClockStrobe,
}

impl FaultKind {
    /// Every name `--nemesis` accepts.
    pub const NAMES: &'static [&'static str] = &[
        "none",
        "partition",
        "partition-halves",
        "partition-one",
        "partition-leader",
        "partition-ring",
        "partition-bridge",
        "partition-one-way",
        "kill",
        "kill-leader",
        "kill-all",
        "pause",
        "pause-leader",
        "failover",
        "disk-stall",
        "disk-error",
        "disk-slow",
        "lose-unsynced",
        "clock",
        "clock-strobe",
    ];

    /// Parses one name.
    pub fn parse(s: &str) -> Result<FaultKind, NemesisError> {
        Ok(match s {
            "partition" => FaultKind::Partition,
            "partition-halves" => FaultKind::PartitionOf(Shape::Halves),
            "partition-one" => FaultKind::PartitionOf(Shape::IsolateOne),
            "partition-leader" => FaultKind::PartitionOf(Shape::IsolateLeader),
            "partition-ring" => FaultKind::PartitionOf(Shape::MajoritiesRing),
            "partition-bridge" => FaultKind::PartitionOf(Shape::Bridge),
            "partition-one-way" => FaultKind::PartitionOf(Shape::OneWay),
            "kill" => FaultKind::Kill,
            "kill-leader" => FaultKind::KillLeader,
            "kill-all" => FaultKind::KillAll,
            "pause" => FaultKind::Pause,
            "pause-leader" => FaultKind::PauseLeader,
            "failover" => FaultKind::Failover,
            "disk-stall" => FaultKind::DiskStall,
            "disk-error" => FaultKind::DiskError,
            "disk-slow" => FaultKind::DiskSlow,
            "lose-unsynced" | "power-loss" => FaultKind::LoseUnsynced,
            "clock" => FaultKind::Clock,
            "clock-strobe" => FaultKind::ClockStrobe,
            other => return Err(NemesisError::UnknownFault(other.to_owned())),
        })
    }

    /// Whether the fault needs the disk-fault filesystem.
    pub fn needs_disk(self) -> bool {
        matches!(
            self,
            FaultKind::DiskStall | FaultKind::DiskError | FaultKind::DiskSlow | FaultKind::LoseUnsynced
        )
    }

    /// Whether the fault needs libfaketime.
    pub fn needs_clock(self) -> bool {
        matches!(self, FaultKind::Clock | FaultKind::ClockStrobe)
    }

    /// Whether the fault cuts links between nodes.
    pub fn cuts_links(self) -> bool {
        matches!(
            self,
            FaultKind::Partition | FaultKind::PartitionOf(_) | FaultKind::Failover
        )
    }

    /// Parses a comma-separated list; `none` or an empty string is no fault.
    pub fn parse_list(s: &str) -> Result<Vec<FaultKind>, NemesisError> {
        s.split(',')
            .map(str::trim)
            .filter(|w| !w.is_empty() && *w != "none")
            .map(FaultKind::parse)
            .collect()
    }
}

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
    /// Draws a schedule: a fault starts at `interval`, stops at `2 *
    /// interval`, the next starts at `3 * interval`, ... until `duration`.
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
        let count = (duration_ms / interval_ms) as usize;
        if count > MAX_STEPS {
            return Err(NemesisError::BadSchedule(format!(
                "{count} steps exceed {MAX_STEPS}; raise the interval"
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut steps = Vec::with_capacity(count);
        for i in 1..count {
            let at_ms = i as u64 * interval_ms;
            let action = if i % 2 == 1 {
                let kind = *kinds.choose(&mut rng).expect("kinds is not empty");
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
        FaultKind::PartitionOf(shape) => partition(shape, rng),
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

    fn nodes() -> Vec<String> {
        vec!["n1".into(), "n2".into(), "n3".into()]
    }

    #[test]
    fn parses_lists_and_rejects_unknown_words() {
        let k = FaultKind::parse_list("partition, kill,pause").unwrap();
        assert_eq!(k, vec![FaultKind::Partition, FaultKind::Kill, FaultKind::Pause]);
        assert!(FaultKind::parse_list("none").unwrap().is_empty());
        assert!(FaultKind::parse_list("flood").is_err());
        for name in FaultKind::NAMES.iter().filter(|n| **n != "none") {
            FaultKind::parse(name).unwrap();
        }
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
