//! Tests of per-anomaly expectations: how the file's keys are read and
//! checked, and how a verdict's anomaly types meet them (or do not).

use std::time::Duration;

use faultline_checkers::{Anomaly, Verdict};
use serde_json::json;

use super::*;
use crate::run::campaign::{plan_test, CampaignFile, PlannedTest};

/// Plans the only test of a campaign file's text.
fn plan(text: &str) -> Result<PlannedTest, String> {
    let f: CampaignFile = toml::from_str(text).unwrap();
    plan_test(&f.spec(0)?, 0, 1)
}

/// A transactional verdict that found `types` (`unsearched` cut off).
fn verdict(types: &[&str], unsearched: &[&str]) -> Verdict {
    let anomalies = types
        .iter()
        .map(|k| Anomaly::new(k, None, Vec::new(), String::new()))
        .collect();
    let mut v = Verdict::from_anomalies(10, Duration::ZERO, anomalies);
    let cut: Vec<_> = unsearched.iter().map(|k| json!({"kind": k})).collect();
    v.details = json!({"anomaly_types": types, "unsearched": cut});
    v
}

fn expect(any: &[&str], all: &[&str], never: &[&str]) -> AnomalyExpect {
    let own = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect();
    AnomalyExpect {
        found_any: own(any),
        found_all: own(all),
        never: own(never),
    }
}

#[test]
fn the_lists_are_read_once_typed_and_the_checker_is_run() {
    let t = plan(
        r#"[[test]]
        name = "rc"
        workload = "txn-list-append"
        expect_anomalies = { transactional = { found_any = ["G-single", "G2-item"], never = ["G0", "G1c"] } }"#,
    )
    .unwrap();
    let e = &t.expect_anomalies["transactional"];
    assert_eq!(e, &expect(&["G-single", "G2-item"], &[], &["G0", "G1c"]));
    assert!(t.config.checkers.contains(&"transactional".to_owned()));
    assert!(t.expect.is_empty(), "no verdict expected, only types");
}

#[test]
fn a_bad_list_is_an_error_naming_the_test_and_the_key() {
    let bad = |table: &str| {
        plan(&format!(
            "[[test]]\nname = \"t\"\nworkload = \"txn-list-append\"\nexpect_anomalies = {table}"
        ))
        .unwrap_err()
    };
    let e = bad(r#"{ transactional = { never = ["G1"] } }"#);
    assert!(
        e.starts_with("test \"t\": expect_anomalies: transactional.never: unknown anomaly type \"G1\""),
        "{e}"
    );
    let e = bad(r#"{ transactional = { found_any = ["G2-item"], sometimes = ["G0"] } }"#);
    assert!(
        e.starts_with("test \"t\": expect_anomalies: unknown field `sometimes`"),
        "{e}"
    );
    let e = bad(r#"{ lost-writes = { never = ["lost-write"] } }"#);
    assert!(
        e.contains("unknown field `lost-writes`, expected `transactional`"),
        "{e}"
    );
    let e = bad(r#"{ transactional = {} }"#);
    assert!(e.ends_with("give found_any, found_all or never"), "{e}");
    let e = bad(r#"{ transactional = { found_all = ["G0"], never = ["G0"] } }"#);
    assert!(e.contains("transactional.never: \"G0\" is also expected"), "{e}");
}

#[test]
fn an_order_cycle_the_models_never_search_for_is_refused() {
    let text = |models: &str| {
        format!(
            "[[test]]\nname = \"t\"\nworkload = \"txn-list-append\"\nconsistency_models = [{models}]\n\
             expect_anomalies = {{ transactional = {{ found_any = [\"G-single-realtime\"] }} }}"
        )
    };
    let e = plan(&text("\"serializable\"")).unwrap_err();
    assert!(
        e.starts_with("test \"t\": expect_anomalies: transactional.found_any: \"G-single-realtime\" is never searched"),
        "{e}"
    );
    assert!(plan(&text("\"serializable\", \"strict-serializable\"")).is_ok());
}

#[test]
fn found_any_needs_one_and_never_needs_none() {
    let e = expect(&["G-single", "G2-item"], &[], &["G0", "G1a", "G1b", "G1c"]);
    let m = e.judge(&verdict(&["G2-item", "lost-update"], &[]));
    assert!(m.holds, "{m:?}");
    assert_eq!(m.found, ["G2-item", "lost-update"]);
    let m = e.judge(&verdict(&["G-single", "G1c"], &[]));
    assert!(!m.holds);
    assert_eq!(m.why.as_deref(), Some("found G1c, which must never appear"));
    let m = e.judge(&verdict(&["G-nonadjacent"], &[]));
    assert_eq!(m.why.as_deref(), Some("none of G-single, G2-item found"));
    let m = e.judge(&verdict(&[], &[]));
    assert!(!m.holds, "nothing found fails a found_any");
}

#[test]
fn found_all_needs_every_one() {
    let e = expect(&[], &["G-single", "G1c"], &[]);
    assert!(e.judge(&verdict(&["G1c", "G-single", "G0"], &[])).holds);
    let m = e.judge(&verdict(&["G1c"], &[]));
    assert_eq!(m.why.as_deref(), Some("G-single not found (all of found_all must be)"));
}

#[test]
fn a_search_cut_off_proves_no_absence() {
    let e = expect(&[], &[], &["G-single"]);
    let m = e.judge(&verdict(&[], &["G-single"]));
    assert!(!m.holds);
    assert!(m.why.unwrap().contains("G-single ran past its budget"));
    assert!(
        e.judge(&verdict(&[], &["G2-item"])).holds,
        "a type not named is not asked about"
    );
}

#[test]
fn a_verdict_that_judged_nothing_meets_nothing() {
    let e = expect(&[], &[], &["G0"]);
    let na = Verdict::not_applicable(Duration::ZERO, "no transactions");
    let m = e.judge(&na);
    assert!(!m.holds);
    assert_eq!(m.why.as_deref(), Some("the checker had nothing to judge"));
}

#[test]
fn the_words_say_what_was_expected() {
    let e = expect(&["G-single", "G2-item"], &["G0"], &["G1a"]);
    assert_eq!(e.words(), "one of G-single, G2-item; all of G0; never G1a");
}

#[test]
fn every_kind_the_checker_reports_is_known() {
    let kinds = crate::check_txn::anomaly_kinds();
    for k in [
        "G0",
        "G1c-process",
        "G-single-realtime",
        "G2-item",
        "G1a",
        "lost-update",
        "incompatible-order",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
    }
    assert!(
        !kinds.iter().any(|x| x == "G1" || x == "G2"),
        "aggregates are not reported"
    );
}

#[test]
fn a_row_says_which_anomalies_were_expected_and_which_were_found() {
    let f: CampaignFile = toml::from_str(
        r#"[[test]]
        name = "si"
        workload = "txn-list-append"
        expect = { transactional = "fail" }
        expect_anomalies = { transactional = { found_any = ["G2-item"], never = ["G-single"] } }"#,
    )
    .unwrap();
    let t = plan_test(&f.spec(0).unwrap(), 0, 1).unwrap();
    let found = |types: &[&str]| {
        let anomalies = types
            .iter()
            .map(|k| faultline_checkers::Anomaly::new(k, None, Vec::new(), String::new()))
            .collect();
        let mut v = Verdict::from_anomalies(3, Duration::ZERO, anomalies);
        v.details = serde_json::json!({ "anomaly_types": types });
        let out = crate::run::RunOutcome {
            store: "store/si/1".into(),
            verdicts: [(crate::check_txn::NAME.to_owned(), v)].into(),
            valid: faultline_checkers::Validity::Invalid,
            results: serde_json::Value::Null,
            interrupted: false,
            interruption: None,
            fault_errors: Vec::new(),
        };
        crate::run::campaign::verdict_rows(&t, &out).remove(0)
    };
    let r = found(&["G2-item"]);
    assert!(r.holds, "{r:?}");
    assert_eq!(r.expected_words(), "fail; one of G2-item; never G-single");
    assert_eq!(r.found_words().as_deref(), Some("found G2-item"));
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["expected_anomalies"]["never"], serde_json::json!(["G-single"]));
    assert_eq!(json["anomaly_types"], serde_json::json!(["G2-item"]));
    let r = found(&["G2-item", "G-single"]);
    assert!(
        !r.holds,
        "the checker failed, as expected, but with a type that must never appear"
    );
    assert_eq!(r.note.as_deref(), Some("found G-single, which must never appear"));
}
