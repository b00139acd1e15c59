//! `faultline check` judges one history under several models at once, and a
//! history can hold under a weaker model while breaking a stronger one.
//! These pin the pairs the session goldens document, seen through the path
//! the CLI takes (`check::check_file`).

use std::path::PathBuf;

use faultline_checkers::Validity;
use faultline_harness::check::{check_file, CheckOptions};

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../checkers/tests/golden/session")
        .join(name)
}

fn verdicts(name: &str, checkers: &[&str]) -> Vec<(String, Validity)> {
    let opts = CheckOptions {
        checkers: Some(checkers.iter().map(|s| (*s).to_owned()).collect()),
        ..CheckOptions::default()
    };
    let report = check_file(&golden(name), &opts).expect("the golden history reads");
    report.checkers.into_iter().map(|(n, v)| (n, v.valid)).collect()
}

#[test]
fn read_your_writes_holds_where_linearizability_fails() {
    let v = verdicts("ryw-register-holds-not-linearizable.jsonl", &["linearizable", "ryw"]);
    assert_eq!(
        v,
        vec![
            ("linearizable".to_owned(), Validity::Invalid),
            ("read-your-writes".to_owned(), Validity::Valid),
        ]
    );
}

#[test]
fn monotonic_reads_holds_where_read_your_writes_fails() {
    let v = verdicts("ryw-register-breaks-sticky.jsonl", &["mr", "ryw"]);
    assert_eq!(
        v,
        vec![
            ("monotonic-reads".to_owned(), Validity::Valid),
            ("read-your-writes".to_owned(), Validity::Invalid),
        ]
    );
}

#[test]
fn an_unknown_checker_name_is_an_error_not_a_verdict() {
    let opts = CheckOptions {
        checkers: Some(vec!["serializable".to_owned()]),
        ..CheckOptions::default()
    };
    let err = check_file(&golden("ryw-register-breaks-sticky.jsonl"), &opts).unwrap_err();
    assert!(err.to_string().contains("serializable"), "{err}");
}
