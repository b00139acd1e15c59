//! Consistency models with Elle's names, what each one forbids, and which
//! models a set of anomalies rules out.
//!
//! Two graphs, both after Elle's `consistency-model` namespace (itself after
//! Adya, Bailis, Cerone and Daudjee): models imply weaker models
//! (strict-serializable implies serializable implies repeatable-read ...),
//! and anomalies imply more general anomalies (G0 implies G1c; G-single
//! implies G-nonadjacent implies G2; an anomaly implies its `-process` and
//! `-realtime` variants). A model forbids the anomalies it names directly,
//! those of every model it implies, and every anomaly that implies one of
//! those.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A consistency model the checker can judge. It is written by its Elle
/// name and read by any name [`FromStr`] takes (a run's `config.json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", try_from = "String")]
pub enum Model {
    ReadUncommitted,
    ReadCommitted,
    RepeatableRead,
    SnapshotIsolation,
    StrongSessionSnapshotIsolation,
    StrongSnapshotIsolation,
    Serializable,
    StrongSessionSerializable,
    StrictSerializable,
}

impl Model {
    /// Every model, weakest first.
    pub const ALL: [Model; 9] = [
        Model::ReadUncommitted,
        Model::ReadCommitted,
        Model::RepeatableRead,
        Model::SnapshotIsolation,
        Model::StrongSessionSnapshotIsolation,
        Model::StrongSnapshotIsolation,
        Model::Serializable,
        Model::StrongSessionSerializable,
        Model::StrictSerializable,
    ];

    /// Elle's name.
    pub fn name(self) -> &'static str {
        match self {
            Model::ReadUncommitted => "read-uncommitted",
            Model::ReadCommitted => "read-committed",
            Model::RepeatableRead => "repeatable-read",
            Model::SnapshotIsolation => "snapshot-isolation",
            Model::StrongSessionSnapshotIsolation => "strong-session-snapshot-isolation",
            Model::StrongSnapshotIsolation => "strong-snapshot-isolation",
            Model::Serializable => "serializable",
            Model::StrongSessionSerializable => "strong-session-serializable",
            Model::StrictSerializable => "strict-serializable",
        }
    }

    /// The models this one implies directly.
    fn implies(self) -> &'static [Model] {
        use Model::*;
        match self {
            ReadUncommitted => &[],
            ReadCommitted => &[ReadUncommitted],
            RepeatableRead => &[ReadCommitted],
            SnapshotIsolation => &[ReadCommitted],
            StrongSessionSnapshotIsolation => &[SnapshotIsolation],
            StrongSnapshotIsolation => &[StrongSessionSnapshotIsolation],
            Serializable => &[RepeatableRead, SnapshotIsolation],
            StrongSessionSerializable => &[Serializable, StrongSessionSnapshotIsolation],
            StrictSerializable => &[StrongSessionSerializable, StrongSnapshotIsolation],
        }
    }

    /// The anomalies this model names itself (beyond those of the models it
    /// implies).
    fn forbids(self) -> &'static [&'static str] {
        use Model::*;
        match self {
            ReadUncommitted => &["G0", "duplicate-elements", "cyclic-versions", "garbage-read"],
            ReadCommitted => &["G1"],
            RepeatableRead => &["G1", "G2-item", "lost-update"],
            // Lost update through cursor stability, which SI implies (Adya).
            SnapshotIsolation => &["internal", "G1", "G-nonadjacent", "lost-update"],
            StrongSessionSnapshotIsolation => &["internal", "G1-process", "G-nonadjacent-process"],
            StrongSnapshotIsolation => &["internal", "G1-realtime", "G-nonadjacent-realtime"],
            Serializable => &["internal", "G1", "G2"],
            StrongSessionSerializable => &["G1-process", "G2-process"],
            StrictSerializable => &["G1", "G1c-realtime", "G2-realtime"],
        }
    }

    /// True when judging this model needs process (session) edges.
    pub fn needs_process_edges(self) -> bool {
        closure(&[self]).iter().any(|m| {
            matches!(
                m,
                Model::StrongSessionSerializable | Model::StrongSessionSnapshotIsolation
            )
        })
    }

    /// True when judging this model needs real-time edges.
    pub fn needs_realtime_edges(self) -> bool {
        closure(&[self])
            .iter()
            .any(|m| matches!(m, Model::StrictSerializable | Model::StrongSnapshotIsolation))
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A model name the checker does not know.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown consistency model {0:?}: expected one of {known}", known = known_names())]
pub struct UnknownModel(pub String);

fn known_names() -> String {
    Model::ALL.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ")
}

impl FromStr for Model {
    type Err = UnknownModel;

    /// Elle's names, plus the aliases Elle accepts for the same models.
    fn from_str(s: &str) -> Result<Model, UnknownModel> {
        Ok(match s {
            "strong-serializable" => Model::StrictSerializable,
            "PL-3" | "conflict-serializable" => Model::Serializable,
            "PL-2.99" => Model::RepeatableRead,
            "PL-SI" => Model::SnapshotIsolation,
            "PL-2" => Model::ReadCommitted,
            "PL-1" => Model::ReadUncommitted,
            "PL-SS" => Model::StrictSerializable,
            other => *Model::ALL
                .iter()
                .find(|m| m.name() == other)
                .ok_or_else(|| UnknownModel(other.to_owned()))?,
        })
    }
}

impl TryFrom<String> for Model {
    type Error = UnknownModel;

    fn try_from(s: String) -> Result<Model, UnknownModel> {
        s.parse()
    }
}

/// The anomalies an anomaly implies directly.
fn anomaly_implies(a: &str) -> &'static [&'static str] {
    match a {
        "G0" => &["G1c", "G0-process"],
        "G0-process" => &["G1c-process", "G0-realtime"],
        "G0-realtime" => &["G1c-realtime"],
        "G1a" | "G1b" => &["G1"],
        "G1c" => &["G1", "G1c-process"],
        "G1c-process" => &["G1c-realtime", "G1-process"],
        "G1c-realtime" => &["G1-realtime"],
        "G1" => &["G1-process"],
        "G1-process" => &["G1-realtime"],
        // Every rw edge here is an item anti-dependency (there are no
        // predicate reads), so these cycles are Elle's G-single-item and
        // G-nonadjacent-item: G2-item too, which repeatable read forbids.
        "G-single" => &["G-nonadjacent", "G-single-process"],
        "G-single-process" => &["G-nonadjacent-process", "G-single-realtime"],
        "G-single-realtime" => &["G-nonadjacent-realtime"],
        "G-nonadjacent" => &["G2-item", "G-nonadjacent-process"],
        "G-nonadjacent-process" => &["G2-item-process", "G-nonadjacent-realtime"],
        "G-nonadjacent-realtime" => &["G2-item-realtime"],
        "G2-item" => &["G2", "G2-item-process"],
        "G2-item-process" => &["G2-process", "G2-item-realtime"],
        "G2-item-realtime" => &["G2-realtime"],
        "G2" => &["G2-process"],
        "G2-process" => &["G2-realtime"],
        "incompatible-order" | "dirty-update" => &["G1a"],
        "lost-update" => &["G2-item"],
        // A transaction that read its own later write: a one-transaction G1c.
        "future-read" => &["G1c"],
        _ => &[],
    }
}

/// `models` and every model they imply.
pub fn closure(models: &[Model]) -> BTreeSet<Model> {
    let mut out = BTreeSet::new();
    let mut todo: Vec<Model> = models.to_vec();
    while let Some(m) = todo.pop() {
        if out.insert(m) {
            todo.extend_from_slice(m.implies());
        }
    }
    out
}

/// `a` and every anomaly it implies.
fn implied_anomalies(a: &str) -> BTreeSet<&str> {
    let mut out = BTreeSet::new();
    let mut todo = vec![a];
    while let Some(x) = todo.pop() {
        if out.insert(x) {
            todo.extend_from_slice(anomaly_implies(x));
        }
    }
    out
}

/// True when anomaly `a` cannot occur under `model` (or any model it implies).
pub fn forbidden_by(model: Model, a: &str) -> bool {
    let forbids: BTreeSet<&str> = closure(&[model])
        .iter()
        .flat_map(|m| m.forbids().iter().copied())
        .collect();
    implied_anomalies(a).iter().any(|x| forbids.contains(x))
}

/// The models a set of anomaly kinds rules out: `not` are the weakest of
/// them (the rest follow), `also_not` the others.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RuledOut {
    pub not: Vec<Model>,
    pub also_not: Vec<Model>,
}

/// Which models the anomalies found rule out.
pub fn ruled_out<'a>(found: impl IntoIterator<Item = &'a str>) -> RuledOut {
    let found: Vec<&str> = found.into_iter().collect();
    let out: BTreeSet<Model> = Model::ALL
        .into_iter()
        .filter(|&m| found.iter().any(|a| forbidden_by(m, a)))
        .collect();
    // The weakest: ruled out, and implying no other ruled-out model.
    let (not, also_not) = out
        .iter()
        .partition(|&&m| closure(&[m]).iter().all(|&w| w == m || !out.contains(&w)));
    RuledOut { not, also_not }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(ms: &[Model]) -> Vec<&str> {
        ms.iter().map(|m| m.name()).collect()
    }

    #[test]
    fn models_round_trip_through_serde_by_name_and_aliases_read_back() {
        for m in Model::ALL {
            let text = serde_json::to_string(&m).unwrap();
            assert_eq!(text, format!("{:?}", m.name()));
            assert_eq!(serde_json::from_str::<Model>(&text).unwrap(), m);
        }
        assert_eq!(
            serde_json::from_str::<Model>("\"PL-SI\"").unwrap(),
            Model::SnapshotIsolation
        );
        let err = serde_json::from_str::<Model>("\"serialisable\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown consistency model"), "{err}");
    }

    #[test]
    fn anomalies_rule_out_the_weakest_models_that_forbid_them() {
        assert_eq!(names(&ruled_out(["G2-item"]).not), ["repeatable-read"]);
        assert_eq!(
            names(&ruled_out(["G-single"]).not),
            ["repeatable-read", "snapshot-isolation"]
        );
        assert_eq!(names(&ruled_out(["G1c"]).not), ["read-committed"]);
        assert_eq!(names(&ruled_out(["G0"]).not), ["read-uncommitted"]);
        assert_eq!(
            names(&ruled_out(["G-single-realtime"]).not),
            ["strong-snapshot-isolation"]
        );
        assert_eq!(
            names(&ruled_out(["G2-item-process"]).not),
            ["strong-session-serializable"]
        );
        assert!(ruled_out(["G2-item"]).also_not.contains(&Model::StrictSerializable));
        assert_eq!(ruled_out(std::iter::empty()), RuledOut::default());
    }

    #[test]
    fn models_forbid_what_they_imply_and_no_more() {
        assert!(forbidden_by(Model::StrictSerializable, "G2-item-realtime"));
        assert!(forbidden_by(Model::Serializable, "G-single"));
        assert!(!forbidden_by(Model::Serializable, "G-single-realtime"));
        assert!(!forbidden_by(Model::SnapshotIsolation, "G2-item"));
        assert!(forbidden_by(Model::SnapshotIsolation, "lost-update"));
        assert!(!forbidden_by(Model::ReadCommitted, "G-single"));
        assert!(forbidden_by(Model::ReadCommitted, "incompatible-order"));
        assert!(!forbidden_by(Model::ReadUncommitted, "G1a"));
        assert!(Model::StrictSerializable.needs_realtime_edges());
        assert!(!Model::Serializable.needs_process_edges());
        assert_eq!("strong-serializable".parse::<Model>(), Ok(Model::StrictSerializable));
        assert!("serialisable".parse::<Model>().is_err());
    }
}
