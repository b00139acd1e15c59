//! The one vocabulary of faults, shared by the schedule, the runner, the
//! history and the report.
//!
//! - [`FaultKind`]: a fault a user asks for (`--nemesis` words, campaign
//!   `nemesis` keys, `config.json`); its serde name is the word itself.
//! - [`FaultFamily`]: what a fault does, whatever its target or shape:
//!   every kind belongs to one family, and so does every event.
//! - [`FaultEvent`]: the `f` of a nemesis event in the history
//!   (HISTORY_FORMAT.md): its serde names are the history's `f` names
//!   exactly (`start-partition`, `kill`, `resume`, ...), so histories
//!   written before this type existed read the same, and a reader matches
//!   a whole name, never a prefix.
//!
//! The pairs of STYLE.md (7) live here once: [`FaultEvent::start`] and
//! [`FaultEvent::stop`] of a family, and [`FaultEvent::family`] and
//! [`FaultEvent::opens`] back.

use serde::{Deserialize, Serialize};

use crate::error::NemesisError;
use crate::partition::Shape;

/// A fault the user can ask for with `--nemesis` (or a campaign's
/// `nemesis`); the serde name is the word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// A partition of a random shape.
    Partition,
    /// Random halves.
    PartitionHalves,
    /// One random node cut off.
    PartitionOne,
    /// The leader (found when the step plays) cut off.
    PartitionLeader,
    /// Overlapping majorities, each node seeing a different one.
    PartitionRing,
    /// Two halves joined by one bridge node.
    PartitionBridge,
    /// One direction of some links cut.
    PartitionOneWay,
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
    #[serde(alias = "power-loss")]
    LoseUnsynced,
    /// Set random nodes' clocks off by up to a few seconds; reset later.
    Clock,
    /// Flip one node's clock between true and off, every few milliseconds.
    ClockStrobe,
}

impl FaultKind {
    /// Every kind, in the order `--help` lists them.
    pub const ALL: [FaultKind; 19] = [
        FaultKind::Partition,
        FaultKind::PartitionHalves,
        FaultKind::PartitionOne,
        FaultKind::PartitionLeader,
        FaultKind::PartitionRing,
        FaultKind::PartitionBridge,
        FaultKind::PartitionOneWay,
        FaultKind::Kill,
        FaultKind::KillLeader,
        FaultKind::KillAll,
        FaultKind::Pause,
        FaultKind::PauseLeader,
        FaultKind::Failover,
        FaultKind::DiskStall,
        FaultKind::DiskError,
        FaultKind::DiskSlow,
        FaultKind::LoseUnsynced,
        FaultKind::Clock,
        FaultKind::ClockStrobe,
    ];

    /// The word that asks for this kind (its serde name).
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Partition => "partition",
            FaultKind::PartitionHalves => "partition-halves",
            FaultKind::PartitionOne => "partition-one",
            FaultKind::PartitionLeader => "partition-leader",
            FaultKind::PartitionRing => "partition-ring",
            FaultKind::PartitionBridge => "partition-bridge",
            FaultKind::PartitionOneWay => "partition-one-way",
            FaultKind::Kill => "kill",
            FaultKind::KillLeader => "kill-leader",
            FaultKind::KillAll => "kill-all",
            FaultKind::Pause => "pause",
            FaultKind::PauseLeader => "pause-leader",
            FaultKind::Failover => "failover",
            FaultKind::DiskStall => "disk-stall",
            FaultKind::DiskError => "disk-error",
            FaultKind::DiskSlow => "disk-slow",
            FaultKind::LoseUnsynced => "lose-unsynced",
            FaultKind::Clock => "clock",
            FaultKind::ClockStrobe => "clock-strobe",
        }
    }

    /// Parses one word, by serde (so it takes exactly what `config.json`
    /// and a campaign take).
    pub fn parse(s: &str) -> Result<FaultKind, NemesisError> {
        serde_json::from_value(serde_json::Value::String(s.to_owned()))
            .map_err(|_| NemesisError::UnknownFault(s.to_owned()))
    }

    /// Parses a comma-separated list; `none` or an empty string is no fault.
    pub fn parse_list(s: &str) -> Result<Vec<FaultKind>, NemesisError> {
        s.split(',')
            .map(str::trim)
            .filter(|w| !w.is_empty() && *w != "none")
            .map(FaultKind::parse)
            .collect()
    }

    /// `partition,kill`, or `none` for no fault: what [`parse_list`]
    /// reads back.
    ///
    /// [`parse_list`]: FaultKind::parse_list
    pub fn list_words(kinds: &[FaultKind]) -> String {
        if kinds.is_empty() {
            return "none".into();
        }
        kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(",")
    }

    /// The shape a partition kind asks for; `None` for a random shape and
    /// for other kinds.
    pub fn shape(self) -> Option<Shape> {
        match self {
            FaultKind::PartitionHalves => Some(Shape::Halves),
            FaultKind::PartitionOne => Some(Shape::IsolateOne),
            FaultKind::PartitionLeader => Some(Shape::IsolateLeader),
            FaultKind::PartitionRing => Some(Shape::MajoritiesRing),
            FaultKind::PartitionBridge => Some(Shape::Bridge),
            FaultKind::PartitionOneWay => Some(Shape::OneWay),
            _ => None,
        }
    }

    /// The partition kind of one shape.
    pub fn of_shape(shape: Shape) -> FaultKind {
        match shape {
            Shape::Halves => FaultKind::PartitionHalves,
            Shape::IsolateOne => FaultKind::PartitionOne,
            Shape::IsolateLeader => FaultKind::PartitionLeader,
            Shape::MajoritiesRing => FaultKind::PartitionRing,
            Shape::Bridge => FaultKind::PartitionBridge,
            Shape::OneWay => FaultKind::PartitionOneWay,
        }
    }

    /// What the fault does.
    pub fn family(self) -> FaultFamily {
        match self {
            FaultKind::Partition
            | FaultKind::PartitionHalves
            | FaultKind::PartitionOne
            | FaultKind::PartitionLeader
            | FaultKind::PartitionRing
            | FaultKind::PartitionBridge
            | FaultKind::PartitionOneWay => FaultFamily::Partition,
            FaultKind::Kill | FaultKind::KillLeader | FaultKind::KillAll => FaultFamily::Kill,
            FaultKind::Pause | FaultKind::PauseLeader => FaultFamily::Pause,
            FaultKind::Failover => FaultFamily::Failover,
            FaultKind::DiskStall => FaultFamily::DiskStall,
            FaultKind::DiskError => FaultFamily::DiskError,
            FaultKind::DiskSlow => FaultFamily::DiskSlow,
            FaultKind::LoseUnsynced => FaultFamily::PowerLoss,
            FaultKind::Clock | FaultKind::ClockStrobe => FaultFamily::Clock,
        }
    }

    /// Whether the fault needs the disk-fault filesystem.
    pub fn needs_disk(self) -> bool {
        self.family().is_disk()
    }

    /// Whether the fault needs libfaketime.
    pub fn needs_clock(self) -> bool {
        self.family() == FaultFamily::Clock
    }

    /// Whether the fault cuts links between nodes.
    pub fn cuts_links(self) -> bool {
        matches!(self.family(), FaultFamily::Partition | FaultFamily::Failover)
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a fault does, whatever its target or shape: the report colours
/// and pairs faults by family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultFamily {
    /// Links cut.
    Partition,
    /// The primary cut off and a replica promoted.
    Failover,
    /// Processes killed.
    Kill,
    /// Processes stopped.
    Pause,
    /// A disk stalled.
    DiskStall,
    /// A disk failing writes and fsyncs.
    DiskError,
    /// A disk with slow fsyncs.
    DiskSlow,
    /// Every node killed with its unsynced writes lost.
    PowerLoss,
    /// Clocks off.
    Clock,
}

impl FaultFamily {
    /// Every family.
    pub const ALL: [FaultFamily; 9] = [
        FaultFamily::Partition,
        FaultFamily::Failover,
        FaultFamily::Kill,
        FaultFamily::Pause,
        FaultFamily::DiskStall,
        FaultFamily::DiskError,
        FaultFamily::DiskSlow,
        FaultFamily::PowerLoss,
        FaultFamily::Clock,
    ];

    /// The family's name (its serde name): the `X` of `start-X`.
    pub fn name(self) -> &'static str {
        match self {
            FaultFamily::Partition => "partition",
            FaultFamily::Failover => "failover",
            FaultFamily::Kill => "kill",
            FaultFamily::Pause => "pause",
            FaultFamily::DiskStall => "disk-stall",
            FaultFamily::DiskError => "disk-error",
            FaultFamily::DiskSlow => "disk-slow",
            FaultFamily::PowerLoss => "power-loss",
            FaultFamily::Clock => "clock",
        }
    }

    /// Whether the family acts on disks (the disk-fault filesystem).
    pub fn is_disk(self) -> bool {
        matches!(
            self,
            FaultFamily::DiskStall | FaultFamily::DiskError | FaultFamily::DiskSlow | FaultFamily::PowerLoss
        )
    }
}

/// The `f` of a nemesis event: a fault starting or ending. The serde names
/// are HISTORY_FORMAT.md's, unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FaultEvent {
    /// Links cut.
    #[serde(rename = "start-partition")]
    StartPartition,
    /// Every link healed.
    #[serde(rename = "stop-partition")]
    StopPartition,
    /// A process killed.
    #[serde(rename = "kill")]
    Kill,
    /// A killed process started again.
    #[serde(rename = "start")]
    Start,
    /// A process stopped (SIGSTOP).
    #[serde(rename = "pause")]
    Pause,
    /// A stopped process continued (SIGCONT).
    #[serde(rename = "resume")]
    Resume,
    /// The primary cut off and a replica promoted.
    #[serde(rename = "start-failover")]
    StartFailover,
    /// The old primary rejoined as a replica.
    #[serde(rename = "stop-failover")]
    StopFailover,
    /// A disk stalled.
    #[serde(rename = "start-disk-stall")]
    StartDiskStall,
    /// A stalled disk healed.
    #[serde(rename = "stop-disk-stall")]
    StopDiskStall,
    /// A disk failing writes and fsyncs.
    #[serde(rename = "start-disk-error")]
    StartDiskError,
    /// A failing disk healed.
    #[serde(rename = "stop-disk-error")]
    StopDiskError,
    /// A disk's fsyncs slowed.
    #[serde(rename = "start-disk-slow")]
    StartDiskSlow,
    /// A slow disk healed.
    #[serde(rename = "stop-disk-slow")]
    StopDiskSlow,
    /// Every node killed, unsynced writes lost.
    #[serde(rename = "start-power-loss")]
    StartPowerLoss,
    /// The nodes of a power loss started again.
    #[serde(rename = "stop-power-loss")]
    StopPowerLoss,
    /// Clocks set off.
    #[serde(rename = "start-clock")]
    StartClock,
    /// Clocks reset.
    #[serde(rename = "stop-clock")]
    StopClock,
}

/// Each event with its family and whether it opens the fault: the one
/// table the pairs are read from.
const EVENTS: [(FaultEvent, FaultFamily, bool); 18] = [
    (FaultEvent::StartPartition, FaultFamily::Partition, true),
    (FaultEvent::StopPartition, FaultFamily::Partition, false),
    (FaultEvent::Kill, FaultFamily::Kill, true),
    (FaultEvent::Start, FaultFamily::Kill, false),
    (FaultEvent::Pause, FaultFamily::Pause, true),
    (FaultEvent::Resume, FaultFamily::Pause, false),
    (FaultEvent::StartFailover, FaultFamily::Failover, true),
    (FaultEvent::StopFailover, FaultFamily::Failover, false),
    (FaultEvent::StartDiskStall, FaultFamily::DiskStall, true),
    (FaultEvent::StopDiskStall, FaultFamily::DiskStall, false),
    (FaultEvent::StartDiskError, FaultFamily::DiskError, true),
    (FaultEvent::StopDiskError, FaultFamily::DiskError, false),
    (FaultEvent::StartDiskSlow, FaultFamily::DiskSlow, true),
    (FaultEvent::StopDiskSlow, FaultFamily::DiskSlow, false),
    (FaultEvent::StartPowerLoss, FaultFamily::PowerLoss, true),
    (FaultEvent::StopPowerLoss, FaultFamily::PowerLoss, false),
    (FaultEvent::StartClock, FaultFamily::Clock, true),
    (FaultEvent::StopClock, FaultFamily::Clock, false),
];

impl FaultEvent {
    /// Every event.
    pub fn all() -> impl Iterator<Item = FaultEvent> {
        EVENTS.iter().map(|(e, _, _)| *e)
    }

    fn row(self) -> (FaultFamily, bool) {
        let (_, family, opens) = EVENTS
            .iter()
            .find(|(e, _, _)| *e == self)
            .expect("every event is in the table");
        (*family, *opens)
    }

    /// The event that starts a fault of `family`.
    pub fn start(family: FaultFamily) -> FaultEvent {
        Self::of(family, true)
    }

    /// The event that ends a fault of `family`.
    pub fn stop(family: FaultFamily) -> FaultEvent {
        Self::of(family, false)
    }

    fn of(family: FaultFamily, opens: bool) -> FaultEvent {
        EVENTS
            .iter()
            .find(|(_, f, o)| *f == family && *o == opens)
            .map(|(e, _, _)| *e)
            .expect("every family has a start and a stop")
    }

    /// The family of the fault the event starts or ends.
    pub fn family(self) -> FaultFamily {
        self.row().0
    }

    /// Whether the event starts a fault (`false`: it ends one).
    pub fn opens(self) -> bool {
        self.row().1
    }

    /// The history's `f` name (the serde name).
    pub fn name(self) -> &'static str {
        // serde's names are not `'static`; this table mirrors them and a
        // test holds the two equal.
        match self {
            FaultEvent::StartPartition => "start-partition",
            FaultEvent::StopPartition => "stop-partition",
            FaultEvent::Kill => "kill",
            FaultEvent::Start => "start",
            FaultEvent::Pause => "pause",
            FaultEvent::Resume => "resume",
            FaultEvent::StartFailover => "start-failover",
            FaultEvent::StopFailover => "stop-failover",
            FaultEvent::StartDiskStall => "start-disk-stall",
            FaultEvent::StopDiskStall => "stop-disk-stall",
            FaultEvent::StartDiskError => "start-disk-error",
            FaultEvent::StopDiskError => "stop-disk-error",
            FaultEvent::StartDiskSlow => "start-disk-slow",
            FaultEvent::StopDiskSlow => "stop-disk-slow",
            FaultEvent::StartPowerLoss => "start-power-loss",
            FaultEvent::StopPowerLoss => "stop-power-loss",
            FaultEvent::StartClock => "start-clock",
            FaultEvent::StopClock => "stop-clock",
        }
    }

    /// The event a history's `f` names, by its whole name; `None` for a
    /// nemesis event of another tool (a Jepsen import's `clock-bump`).
    pub fn from_name(f: &str) -> Option<FaultEvent> {
        serde_json::from_value(serde_json::Value::String(f.to_owned())).ok()
    }
}

impl std::fmt::Display for FaultEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_are_their_serde_names_and_parse_back() {
        for k in FaultKind::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), k.name(), "{k:?}");
            assert_eq!(FaultKind::parse(k.name()).unwrap(), k);
        }
        assert_eq!(FaultKind::parse("power-loss").unwrap(), FaultKind::LoseUnsynced);
        assert!(FaultKind::parse("flood").is_err());
        assert!(FaultKind::parse("Kill").is_err(), "names are matched whole and exact");
    }

    #[test]
    fn lists_print_as_they_parse() {
        let kinds = FaultKind::parse_list(" partition-one-way, kill ,none").unwrap();
        assert_eq!(kinds, [FaultKind::PartitionOneWay, FaultKind::Kill]);
        assert_eq!(FaultKind::list_words(&kinds), "partition-one-way,kill");
        assert_eq!(FaultKind::list_words(&[]), "none");
        assert!(FaultKind::parse_list("none").unwrap().is_empty());
    }

    #[test]
    fn event_names_are_the_history_format_names() {
        for e in FaultEvent::all() {
            assert_eq!(serde_json::to_value(e).unwrap(), e.name(), "{e:?}");
            assert_eq!(FaultEvent::from_name(e.name()), Some(e));
        }
        assert_eq!(
            FaultEvent::from_name("start-partition"),
            Some(FaultEvent::StartPartition)
        );
        assert_eq!(FaultEvent::from_name("start-partition-x"), None, "no prefix matching");
        assert_eq!(FaultEvent::from_name("clock-bump"), None);
    }

    #[test]
    fn family_names_are_their_serde_names() {
        for f in FaultFamily::ALL {
            assert_eq!(serde_json::to_value(f).unwrap(), f.name(), "{f:?}");
        }
    }

    #[test]
    fn every_family_has_one_start_and_one_stop() {
        for e in FaultEvent::all() {
            let pair = if e.opens() {
                FaultEvent::start(e.family())
            } else {
                FaultEvent::stop(e.family())
            };
            assert_eq!(pair, e);
        }
        assert_eq!(FaultEvent::stop(FaultFamily::Kill), FaultEvent::Start);
        assert_eq!(FaultEvent::stop(FaultFamily::Pause), FaultEvent::Resume);
        for k in FaultKind::ALL {
            assert!(FaultEvent::start(k.family()).opens());
        }
    }
}
