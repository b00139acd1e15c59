//! PostgreSQL's options of a run, typed: how commits wait for standbys
//! (`--pg-sync`, `--pg-commit`), where reads go (`--pg-reads`), the
//! isolation level of transactions (`--pg-isolation`), and whether the
//! failover nemesis fences the old primary (`--pg-failover`). Parsed once
//! from the words a user writes (the campaign keys are the flags' names
//! with underscores), printed back as the same words for the rerun
//! command.

use faultline_workloads::{PgIsolation, PgReads};
use serde::{Deserialize, Serialize};

use super::spec::{Field, Invalid, RunSpec};

/// `synchronous_standby_names`: which standbys a commit waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "mode", content = "n")]
pub enum PgSync {
    /// Asynchronous replication: no standby is waited for.
    Off,
    /// Quorum commit: any `N` standbys (`ANY N (...)`).
    Any(u32),
    /// Priority commit: the first `N` standbys by name (`FIRST N (...)`).
    First(u32),
}

impl PgSync {
    /// Parses `off`, `any:N` or `first:N`.
    pub fn parse(s: &str) -> Result<PgSync, String> {
        let bad = || format!("{s:?}: expected off, any:N or first:N");
        if s == "off" {
            return Ok(PgSync::Off);
        }
        let (mode, n) = s.split_once(':').ok_or_else(bad)?;
        let n: u32 = n.parse().map_err(|_| bad())?;
        match (mode, n) {
            (_, 0) => Err(format!("{s:?}: N must be at least 1 (off is no standby)")),
            ("any", n) => Ok(PgSync::Any(n)),
            ("first", n) => Ok(PgSync::First(n)),
            _ => Err(bad()),
        }
    }

    /// The word [`PgSync::parse`] reads back.
    pub fn word(self) -> String {
        match self {
            PgSync::Off => "off".into(),
            PgSync::Any(n) => format!("any:{n}"),
            PgSync::First(n) => format!("first:{n}"),
        }
    }

    /// The `synchronous_standby_names` value over `nodes` (every node is
    /// listed: a primary never counts itself, so the list stays right
    /// whichever node is promoted).
    pub fn standby_names(self, nodes: &[String]) -> String {
        let list = nodes.join(",");
        match self {
            PgSync::Off => String::new(),
            PgSync::Any(n) => format!("ANY {n} ({list})"),
            PgSync::First(n) => format!("FIRST {n} ({list})"),
        }
    }

    /// How many standbys a commit waits for.
    pub fn count(self) -> u32 {
        match self {
            PgSync::Off => 0,
            PgSync::Any(n) | PgSync::First(n) => n,
        }
    }
}

/// `synchronous_commit`: how far a synchronous standby must have got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PgCommit {
    /// The primary's own WAL flush only.
    Local,
    /// The standbys wrote the WAL (not flushed).
    RemoteWrite,
    /// The standbys flushed the WAL.
    On,
    /// The standbys replayed it: their reads see the commit.
    RemoteApply,
}

/// What the failover nemesis does with the old primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PgFailover {
    /// Stops it before promoting a standby.
    Fenced,
    /// Leaves it running: clients that still reach it keep writing.
    Unfenced,
}

/// PostgreSQL's options, as `config.json` holds them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgOptions {
    /// Which standbys commits wait for.
    pub sync: PgSync,
    /// How far they must have got.
    pub commit: PgCommit,
    /// Where reads go.
    pub reads: PgReads,
    /// The isolation level of transactions.
    pub isolation: PgIsolation,
    /// Whether the failover nemesis fences the old primary.
    pub failover: PgFailover,
}

impl Default for PgOptions {
    /// PostgreSQL's own defaults: asynchronous, `on`, reads from the
    /// primary, read committed; a fenced failover, as a careful operator's.
    fn default() -> PgOptions {
        PgOptions {
            sync: PgSync::Off,
            commit: PgCommit::On,
            reads: PgReads::Primary,
            isolation: PgIsolation::ReadCommitted,
            failover: PgFailover::Fenced,
        }
    }
}

/// A serde-named word (`remote_apply`, `repeatable-read`).
fn word<T: serde::de::DeserializeOwned>(field: Field, s: &str, expected: &str) -> Result<T, Invalid> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| Invalid::new(field, format!("{s:?}: expected {expected}")))
}

/// A value's serde name.
fn name<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        other => unreachable!("a unit variant serializes as its name, got {other:?}"),
    }
}

/// The PostgreSQL options a spec gives (defaults where it gives none).
pub fn parse(spec: &RunSpec) -> Result<PgOptions, Invalid> {
    let mut o = PgOptions::default();
    if let Some(s) = &spec.pg_sync {
        o.sync = PgSync::parse(s).map_err(|m| Invalid::new(Field::PgSync, m))?;
    }
    if let Some(s) = &spec.pg_commit {
        o.commit = word(Field::PgCommit, s, "local, remote_write, on or remote_apply")?;
    }
    if let Some(s) = &spec.pg_reads {
        o.reads = word(Field::PgReads, s, "primary, standby or home")?;
    }
    if let Some(s) = &spec.pg_isolation {
        o.isolation = word(Field::PgIsolation, s, "read-committed, repeatable-read or serializable")?;
    }
    if let Some(s) = &spec.pg_failover {
        o.failover = word(Field::PgFailover, s, "fenced or unfenced")?;
    }
    Ok(o)
}

/// Which PostgreSQL options a spec names (refused for other databases).
pub fn given(spec: &RunSpec) -> Vec<Field> {
    [
        (Field::PgSync, spec.pg_sync.is_some()),
        (Field::PgCommit, spec.pg_commit.is_some()),
        (Field::PgReads, spec.pg_reads.is_some()),
        (Field::PgIsolation, spec.pg_isolation.is_some()),
        (Field::PgFailover, spec.pg_failover.is_some()),
    ]
    .into_iter()
    .filter_map(|(f, g)| g.then_some(f))
    .collect()
}

/// Checks the options against the cluster size: a quorum larger than
/// the standbys would block every commit.
pub fn validate(o: &PgOptions, nodes: usize) -> Result<(), Invalid> {
    let standbys = nodes.saturating_sub(1) as u32;
    if o.sync.count() > standbys {
        return Err(Invalid::new(
            Field::PgSync,
            format!(
                "{} waits for more standbys than the {standbys} there are",
                o.sync.word()
            ),
        ));
    }
    Ok(())
}

/// The flags that give `o` back.
pub fn args(o: &PgOptions) -> Vec<(&'static str, String)> {
    vec![
        ("--pg-sync", o.sync.word()),
        ("--pg-commit", name(&o.commit)),
        ("--pg-reads", name(&o.reads)),
        ("--pg-isolation", name(&o.isolation)),
        ("--pg-failover", name(&o.failover)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_words_parse_and_print_back() {
        for w in ["off", "any:1", "first:2"] {
            assert_eq!(PgSync::parse(w).unwrap().word(), w);
        }
        for bad in ["any", "any:0", "some:1", "first:x", ""] {
            assert!(PgSync::parse(bad).is_err(), "{bad:?}");
        }
        let nodes = ["n1".to_owned(), "n2".to_owned()];
        assert_eq!(PgSync::Any(1).standby_names(&nodes), "ANY 1 (n1,n2)");
        assert_eq!(PgSync::Off.standby_names(&nodes), "");
    }

    #[test]
    fn every_option_parses_from_its_printed_flags() {
        let o = PgOptions {
            sync: PgSync::First(2),
            commit: PgCommit::RemoteApply,
            reads: PgReads::Standby,
            isolation: PgIsolation::RepeatableRead,
            failover: PgFailover::Unfenced,
        };
        let a = args(&o);
        let get = |flag: &str| a.iter().find(|(f, _)| *f == flag).map(|(_, v)| v.clone());
        let spec = RunSpec {
            pg_sync: get("--pg-sync"),
            pg_commit: get("--pg-commit"),
            pg_reads: get("--pg-reads"),
            pg_isolation: get("--pg-isolation"),
            pg_failover: get("--pg-failover"),
            ..RunSpec::default()
        };
        assert_eq!(parse(&spec).unwrap(), o);
        assert_eq!(given(&spec).len(), 5);
        assert_eq!(validate(&o, 3), Ok(()));
        assert_eq!(validate(&o, 2).unwrap_err().field, Field::PgSync);
    }
}
