//! `faultline campaign FILE.toml`: a list of tests, each with its server
//! setting, workload, nemesis, duration and the verdict expected of each
//! checker, run one after the other; the campaign holds when every
//! expectation does.
//!
//! ```toml
//! [defaults]            # applies to every test unless it says otherwise
//! time_limit_s = 20
//!
//! [[test]]
//! name = "safe-partition-kill"
//! server = "ack=majority,failover=fenced,reads=leader"
//! workload = "register"
//! nemesis = "partition,kill"
//! nemesis_interval_s = 4
//! expect = { linearizable = "pass" }
//!
//! [[test]]
//! name = "power-loss"
//! needs = "FUSE: a disk-fault filesystem drops unsynced writes"  # skipped
//! ```
//!
//! An expectation is `pass` (the checker must say valid), `fail` (it must
//! find an anomaly) or `unset` (run and report, expect nothing). Unknown
//! satisfies neither pass nor fail. `expect_anomalies` names the anomaly
//! types the transactional checker must and must never find
//! ([`anomalies`]); a row holds when both kinds of expectation do. A test with `needs` is listed as skipped
//! with its reason. Each test's seed is its own `seed`, else the campaign's
//! seed plus its position, so a campaign reruns exactly from its seed.
//! [`shard`] splits a campaign over runners; [`record`] keeps its folder in
//! the store.

pub mod anomalies;
pub mod record;
pub mod shard;

use std::collections::BTreeMap;
use std::path::Path;

use faultline_checkers::{Validity, Verdict};
use serde::{Deserialize, Serialize};

use self::anomalies::{AnomaliesSpec, AnomalyExpect};
use super::interrupt::Interrupt;
use super::spec::{self, Origin, RunSpec};
use super::{run_interruptible, RunConfig, RunEnv, RunError, RunOutcome};

/// Most tests in one campaign.
pub const MAX_TESTS: usize = 1_000;

/// One test as the file writes it, `[defaults]` applied: the run's keys
/// ([`RunSpec`], the same the CLI's flags become) and the campaign's own.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TestSpec {
    /// The run.
    pub run: RunSpec,
    /// Checker name to `pass`, `fail` or `unset`.
    pub expect: Option<BTreeMap<String, String>>,
    /// Anomaly types a checker must and must never find.
    pub expect_anomalies: Option<AnomaliesSpec>,
    /// Why this test cannot run yet (it is then skipped and listed).
    pub needs: Option<String>,
    /// What the test shows, for people reading the file.
    pub about: Option<String>,
}

/// A campaign file: tables, so `[defaults]` applies key by key before a
/// test is read as a [`TestSpec`].
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignFile {
    /// Values for every test.
    #[serde(default)]
    pub defaults: toml::Table,
    /// The tests, in order.
    #[serde(default)]
    pub test: Vec<toml::Table>,
}

impl CampaignFile {
    /// Test `index` with the defaults under it; the error names the test
    /// and the key (`unknown field `colour``).
    pub fn spec(&self, index: usize) -> Result<TestSpec, String> {
        let mut merged = self.defaults.clone();
        merged.extend(self.test[index].clone());
        let name = match merged.get("name") {
            Some(toml::Value::String(n)) => n.clone(),
            _ => format!("test-{index}"),
        };
        let ctx = |e: toml::de::Error| format!("test {name:?}: {}", e.message());
        let mut take = |key: &str| merged.remove(key);
        let expect = take("expect").map(toml::Value::try_into).transpose().map_err(ctx)?;
        let expect_anomalies = take("expect_anomalies")
            .map(toml::Value::try_into)
            .transpose()
            .map_err(|e| format!("test {name:?}: expect_anomalies: {}", e.message()))?;
        let needs = take("needs").map(toml::Value::try_into).transpose().map_err(ctx)?;
        let about = take("about").map(toml::Value::try_into).transpose().map_err(ctx)?;
        let run = toml::Value::Table(merged).try_into().map_err(ctx)?;
        Ok(TestSpec {
            run,
            expect,
            expect_anomalies,
            needs,
            about,
        })
    }
}

/// What a checker is expected to say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Pass,
    Fail,
    Unset,
}

impl Expect {
    /// The word a table shows: `pass`, `fail` or `-`.
    pub fn word(self) -> &'static str {
        match self {
            Expect::Pass => "pass",
            Expect::Fail => "fail",
            Expect::Unset => "-",
        }
    }

    fn parse(s: &str) -> Result<Expect, String> {
        match s {
            "pass" => Ok(Expect::Pass),
            "fail" => Ok(Expect::Fail),
            "unset" | "-" => Ok(Expect::Unset),
            o => Err(format!("expected pass, fail or unset, got {o:?}")),
        }
    }

    /// Whether `observed` meets the expectation.
    pub fn holds(self, observed: Validity) -> bool {
        match self {
            Expect::Pass => observed == Validity::Valid,
            Expect::Fail => observed == Validity::Invalid,
            Expect::Unset => true,
        }
    }

    /// Whether a checker's verdict meets the expectation: one that had
    /// nothing to judge meets only `unset`, since it looked at nothing.
    pub fn met_by(self, v: &Verdict) -> bool {
        match v.applies() {
            true => self.holds(v.valid),
            false => self == Expect::Unset,
        }
    }
}

/// A test ready to run, or to skip.
#[derive(Clone, Debug)]
pub struct PlannedTest {
    /// Its name.
    pub name: String,
    /// The run.
    pub config: RunConfig,
    /// Expectations by checker.
    pub expect: BTreeMap<String, Expect>,
    /// Anomaly types expected, by checker.
    pub expect_anomalies: BTreeMap<String, AnomalyExpect>,
    /// Set when the test is skipped.
    pub skip: Option<String>,
}

/// One row of the campaign's table.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub test: String,
    pub checker: String,
    pub expected: Expect,
    /// valid / invalid / unknown, `skipped` or `error`.
    pub observed: String,
    pub holds: bool,
    pub anomalies: usize,
    /// The anomaly types the checker had to find and never find.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_anomalies: Option<AnomalyExpect>,
    /// The anomaly types it found, for a checker that names them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anomaly_types: Option<Vec<String>>,
    pub seed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Row {
    /// A row of test `t` about `checker`, with no anomalies counted yet.
    fn new(t: &PlannedTest, checker: &str, expected: Expect, observed: String, holds: bool) -> Row {
        Row {
            test: t.name.clone(),
            checker: checker.to_owned(),
            expected,
            observed,
            holds,
            anomalies: 0,
            expected_anomalies: t.expect_anomalies.get(checker).cloned(),
            anomaly_types: None,
            seed: t.config.seed,
            store: None,
            note: None,
        }
    }

    /// What was expected, in a few words: `fail; one of G-single, G2-item;
    /// never G0` (the verdict's word, then the anomaly types).
    pub fn expected_words(&self) -> String {
        match &self.expected_anomalies {
            None => self.expected.word().to_owned(),
            Some(a) if self.expected == Expect::Unset => a.words(),
            Some(a) => format!("{}; {}", self.expected.word(), a.words()),
        }
    }

    /// The anomaly types found, when the checker names them: `found
    /// G-single, G2-item` or `found none`.
    pub fn found_words(&self) -> Option<String> {
        let types = self.anomaly_types.as_ref()?;
        Some(match types.is_empty() {
            true => "found none".to_owned(),
            false => format!("found {}", types.join(", ")),
        })
    }
}

/// Turns one spec into a validated run (a skipped test's values are
/// parsed, not validated: what it needs may be what makes it invalid).
pub fn plan_test(spec: &TestSpec, index: usize, campaign_seed: u64) -> Result<PlannedTest, String> {
    let mut run = spec.run.clone();
    let name = run.name.clone().unwrap_or_else(|| format!("test-{index}"));
    run.name = Some(name.clone());
    let origin = || Origin::Campaign { test: name.clone() };
    let mut expect = BTreeMap::new();
    for (checker, e) in spec.expect.clone().unwrap_or_default() {
        let e = Expect::parse(&e).map_err(|m| format!("test {name:?}: expect: {checker}: {m}"))?;
        expect.insert(checker, e);
    }
    let lists = spec.expect_anomalies.as_ref().and_then(|a| a.transactional.as_ref());
    // Run the checkers that apply (or those the spec names), plus any the
    // expectations name.
    let mut checkers = run
        .checkers
        .clone()
        .unwrap_or_else(|| vec![crate::check::AUTO.to_owned()]);
    let named = expect.keys().map(String::as_str);
    for c in named.chain(lists.map(|_| crate::check_txn::NAME)) {
        if !checkers.iter().any(|x| x == c) {
            checkers.push(c.to_owned());
        }
    }
    run.checkers = Some(checkers);
    let seed = campaign_seed.wrapping_add(index as u64);
    let config = match spec.needs {
        None => spec::resolve(&run, seed),
        Some(_) => spec::parse(&run, seed),
    }
    .map_err(|e| e.at(origin()).to_string())?;
    let mut expect_anomalies = BTreeMap::new();
    if let Some(lists) = lists {
        let checked = lists
            .validate(&config.consistency_models)
            .map_err(|m| format!("test {name:?}: expect_anomalies: {m}"))?;
        expect_anomalies.insert(crate::check_txn::NAME.to_owned(), checked);
    }
    Ok(PlannedTest {
        name,
        config,
        expect,
        expect_anomalies,
        skip: spec.needs.clone(),
    })
}

/// Reads and plans a campaign file.
pub fn load(path: &Path, campaign_seed: u64) -> Result<Vec<PlannedTest>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: CampaignFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if file.test.is_empty() {
        return Err(format!("{}: no [[test]]", path.display()));
    }
    if file.test.len() > MAX_TESTS {
        return Err(format!("{}: more than {MAX_TESTS} tests", path.display()));
    }
    (0..file.test.len())
        .map(|i| plan_test(&file.spec(i)?, i, campaign_seed))
        .collect::<Result<_, String>>()
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs every planned test in order and returns the table rows. A stop
/// request (a signal fed to `interrupt`) ends the campaign after the test in
/// progress has cleaned up; a second one also skips that test's check. The
/// rows say by which signal and when.
pub async fn run_campaign(
    tests: &[PlannedTest],
    env: &RunEnv,
    interrupt: &Interrupt,
    mut on_test: impl FnMut(&PlannedTest, &[Row]),
) -> Vec<Row> {
    let stop = interrupt.receiver();
    let mut rows = Vec::new();
    for t in tests {
        let first = rows.len();
        if let Some(reason) = &t.skip {
            let mut r = Row::new(t, "-", Expect::Unset, "skipped".into(), true);
            r.note = Some(reason.clone());
            rows.push(r);
        } else if *stop.borrow() {
            let mut r = Row::new(t, "-", Expect::Unset, "not run".into(), false);
            r.note = Some(stopped_note(interrupt));
            rows.push(r);
        } else {
            match run_interruptible(&t.config, env, interrupt).await {
                Ok(out) if !out.fault_errors.is_empty() => {
                    // Verdicts over faults that did not happen mean nothing.
                    let mut r = Row::new(t, "-", Expect::Unset, "error".into(), false);
                    r.note = Some(out.fault_errors.join("; "));
                    r.store = Some(out.store.display().to_string());
                    rows.push(r);
                }
                Ok(out) => rows.extend(verdict_rows(t, &out)),
                Err(e) => {
                    let mut r = Row::new(t, "-", Expect::Unset, "error".into(), false);
                    r.note = Some(error_note(&e));
                    rows.push(r);
                }
            }
        }
        on_test(t, &rows[first..]);
    }
    rows
}

/// The rows of a test that ran: one per verdict, then one per expected
/// checker that did not run.
fn verdict_rows(t: &PlannedTest, out: &RunOutcome) -> Vec<Row> {
    let mut rows: Vec<Row> = out
        .verdicts
        .iter()
        .map(|(name, v)| verdict_row(t, out, name, v))
        .collect();
    let expected = t.expect.keys().chain(t.expect_anomalies.keys());
    for name in expected.collect::<std::collections::BTreeSet<_>>() {
        if !out.verdicts.contains_key(name) {
            let e = t.expect.get(name).copied().unwrap_or(Expect::Unset);
            let holds = e == Expect::Unset && !t.expect_anomalies.contains_key(name);
            let mut r = Row::new(t, name, e, "not run".into(), holds);
            r.note = Some("the checker did not run".into());
            rows.push(r);
        }
    }
    rows
}

/// The row of one checker's verdict: it holds when the verdict meets the
/// expectation and the anomaly types found meet theirs.
fn verdict_row(t: &PlannedTest, out: &RunOutcome, name: &str, v: &Verdict) -> Row {
    let e = t.expect.get(name).copied().unwrap_or(Expect::Unset);
    let observed = match v.valid {
        _ if !v.applies() => "n/a",
        Validity::Valid => "valid",
        Validity::Invalid => "invalid",
        Validity::Unknown => "unknown",
    };
    let matched = t.expect_anomalies.get(name).map(|a| a.judge(v));
    let types_held = matched.as_ref().is_none_or(|m| m.holds);
    let mut r = Row::new(
        t,
        name,
        e,
        observed.into(),
        e.met_by(v) && types_held && !out.interrupted,
    );
    r.anomalies = v.anomalies_found();
    r.anomaly_types = matched
        .as_ref()
        .map(|m| m.found.clone())
        .or_else(|| named_types(name, v));
    r.store = Some(out.store.display().to_string());
    r.note = match &out.interruption {
        Some(i) => Some(i.message()),
        None => matched
            .and_then(|m| m.why)
            .or(v.unknown_reason.clone())
            .or(v.not_applicable_why().map(str::to_owned)),
    };
    r
}

/// The types the transactional checker found, shown even when no
/// expectation names them.
fn named_types(name: &str, v: &Verdict) -> Option<Vec<String>> {
    if name != crate::check_txn::NAME || !v.applies() {
        return None;
    }
    let types = v.details.get("anomaly_types")?.as_array()?;
    Some(types.iter().filter_map(|t| t.as_str()).map(str::to_owned).collect())
}

/// Why a test was not run: "the campaign was stopped by SIGTERM".
fn stopped_note(interrupt: &Interrupt) -> String {
    match interrupt.first_signal() {
        Some(name) => format!("the campaign was stopped by {name}"),
        None => "the campaign was stopped".into(),
    }
}

fn error_note(e: &RunError) -> String {
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_and_tests_override_them() {
        let text = r#"
            [defaults]
            time_limit_s = 12
            nemesis = "kill"
            [[test]]
            name = "a"
            expect = { linearizable = "pass" }
            [[test]]
            name = "b"
            workload = "session"
            nemesis = "none"
            expect = { read-your-writes = "fail", monotonic-reads = "unset" }
            [[test]]
            name = "c"
            needs = "FUSE"
        "#;
        let f: CampaignFile = toml::from_str(text).unwrap();
        let planned: Vec<PlannedTest> = (0..f.test.len())
            .map(|i| plan_test(&f.spec(i).unwrap(), i, 100).unwrap())
            .collect();
        assert_eq!(planned[0].config.time_limit_s, 12.0);
        assert_eq!(planned[0].config.nemesis, vec![faultline_nemesis::FaultKind::Kill]);
        assert_eq!(planned[0].config.seed, 100);
        assert!(planned[1].config.nemesis.is_empty());
        assert_eq!(planned[1].expect["read-your-writes"], Expect::Fail);
        assert!(planned[1].config.checkers.contains(&"read-your-writes".to_owned()));
        assert_eq!(planned[2].skip.as_deref(), Some("FUSE"));
    }

    #[test]
    fn rejects_unknown_fields_and_expectations() {
        let f: CampaignFile = toml::from_str("[[test]]\nname = \"a\"\ncolour = 1").unwrap();
        let e = f.spec(0).unwrap_err();
        assert!(e.starts_with("test \"a\": unknown field `colour`"), "{e}");
        assert!(toml::from_str::<CampaignFile>("[colours]").is_err());
        let spec = TestSpec {
            expect: Some([("linearizable".to_owned(), "maybe".to_owned())].into()),
            ..TestSpec::default()
        };
        assert!(plan_test(&spec, 0, 1).is_err());
    }

    #[test]
    fn a_bad_value_is_named_by_test_and_key() {
        let f: CampaignFile = toml::from_str("[defaults]\ntime_limit_s = 0\n[[test]]\nname = \"short\"").unwrap();
        let e = plan_test(&f.spec(0).unwrap(), 0, 1).unwrap_err();
        assert!(e.starts_with("test \"short\": time_limit_s: must be within"), "{e}");
        let f: CampaignFile = toml::from_str("[[test]]\nname = \"n\"\nnemesis = \"flood\"").unwrap();
        let e = plan_test(&f.spec(0).unwrap(), 0, 1).unwrap_err();
        assert!(e.starts_with("test \"n\": nemesis: unknown fault \"flood\""), "{e}");
    }

    #[test]
    fn consistency_models_are_typed_and_a_bad_one_is_named_by_test_and_key() {
        let text = r#"
            [[test]]
            name = "si"
            consistency_models = ["snapshot-isolation", "PL-2"]
            [[test]]
            name = "one"
            consistency_model = ["serializable"]
            [[test]]
            name = "bad"
            consistency_models = ["serialisable"]
        "#;
        use faultline_txn::Model;
        let f: CampaignFile = toml::from_str(text).unwrap();
        let plan = |i: usize| plan_test(&f.spec(i).unwrap(), i, 1);
        let models = plan(0).unwrap().config.consistency_models;
        assert_eq!(models, [Model::SnapshotIsolation, Model::ReadCommitted]);
        assert_eq!(plan(1).unwrap().config.consistency_models, [Model::Serializable]);
        let e = plan(2).unwrap_err();
        assert!(
            e.starts_with("test \"bad\": consistency_models: unknown consistency model \"serialisable\""),
            "{e}"
        );
    }

    #[test]
    fn the_transactional_workloads_and_their_knobs_are_keys() {
        let text = r#"
            [[test]]
            name = "rc"
            workload = "txn-list-append"
            server = "isolation=read-committed"
            keys = 5
            min_txn_length = 2
            max_txn_length = 6
            max_writes_per_key = 32
            read_share = 0.25
            expect = { transactional = "fail" }
            [[test]]
            name = "on-redis"
            db = "redis"
            workload = "txn-rw-register"
            [[test]]
            name = "mixed"
            workload = "txn-rw-register"
            ops_per_key = 10
        "#;
        let f: CampaignFile = toml::from_str(text).unwrap();
        let rc = plan_test(&f.spec(0).unwrap(), 0, 1).unwrap();
        let w = &rc.config.workload;
        assert_eq!((w.kind.name(), w.key_count), ("txn-list-append", 5));
        assert_eq!(
            (w.txn.min_length, w.txn.max_length, w.txn.max_writes_per_key),
            (2, 6, 32)
        );
        assert_eq!(w.txn.read_share, 0.25);
        assert_eq!(rc.expect["transactional"], Expect::Fail);
        let e = plan_test(&f.spec(1).unwrap(), 1, 1).unwrap_err();
        assert!(
            e.starts_with("test \"on-redis\": workload: txn-rw-register needs a database"),
            "{e}"
        );
        let e = plan_test(&f.spec(2).unwrap(), 2, 1).unwrap_err();
        assert!(e.starts_with("test \"mixed\": ops_per_key: means nothing"), "{e}");
    }

    #[test]
    fn unknown_meets_no_expectation() {
        assert!(!Expect::Pass.holds(Validity::Unknown));
        assert!(!Expect::Fail.holds(Validity::Unknown));
        assert!(Expect::Unset.holds(Validity::Unknown));
        assert!(Expect::Fail.holds(Validity::Invalid));
    }

    #[test]
    fn a_checker_that_did_not_apply_meets_no_pass() {
        let na = Verdict::not_applicable(std::time::Duration::ZERO, "no final reads");
        assert!(!Expect::Pass.met_by(&na));
        assert!(!Expect::Fail.met_by(&na));
        assert!(Expect::Unset.met_by(&na));
        let valid = Verdict::valid(1, std::time::Duration::ZERO);
        assert!(Expect::Pass.met_by(&valid));
    }

    #[test]
    fn the_shipped_campaigns_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/campaigns");
        for f in ["smoke.toml", "lab.toml", "real.toml"] {
            let p = root.join(f);
            if p.exists() {
                load(&p, 1).unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }
}
