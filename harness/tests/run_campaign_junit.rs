//! `faultline campaign --junit FILE` writes one suite per test and one case
//! per expectation, and a case fails exactly when its expectation did not
//! hold: here a safe setting expected to pass, and the same setting wrongly
//! expected to fail, so both outcomes appear in one file.

mod run_support;

use std::process::Command;

#[test]
fn campaign_junit_marks_the_expectation_that_did_not_hold() {
    let dir = tempfile::tempdir().unwrap();
    let campaign = dir.path().join("c.toml");
    std::fs::write(
        &campaign,
        r#"
[defaults]
nodes = 3
concurrency = 4
rate = 200
time_limit_s = 3
nemesis = "none"
quiet_ms = 500

[[test]]
name = "safe-expected-pass"
workload = "register"
expect = { linearizable = "pass" }

[[test]]
name = "safe-wrongly-expected-fail"
workload = "register"
expect = { linearizable = "fail" }
"#,
    )
    .unwrap();
    let junit = dir.path().join("campaign.xml");
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .arg("campaign")
        .arg(&campaign)
        .arg("--junit")
        .arg(&junit)
        .arg("--store")
        .arg(dir.path().join("store"))
        .arg("--server-bin")
        .arg(run_support::server_bin())
        .arg("--no-progress")
        .output()
        .expect("running faultline campaign");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let xml = std::fs::read_to_string(&junit).expect("the JUnit file was written");
    // Every checker the history calls for runs (the same as `faultline
    // check` of it would run): a case each, expected or not; only the wrong
    // expectation fails.
    assert!(
        xml.contains("<testsuites name=\"faultline campaign\"") && xml.contains("failures=\"1\" errors=\"0\""),
        "{xml}"
    );
    assert!(xml.contains("<testsuite name=\"safe-expected-pass\""), "{xml}");
    assert!(xml.contains("name=\"linearizable expected pass\"/>"), "{xml}");
    let suite_failures = xml
        .lines()
        .filter(|l| l.trim_start().starts_with("<testsuite ") && !l.contains("failures=\"0\""))
        .count();
    assert_eq!(suite_failures, 1, "{xml}");
    assert!(xml.contains("expected fail, observed valid"), "{xml}");
}
