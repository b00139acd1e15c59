//! `faultline report DIR` and `faultline check --report FILE` on a run
//! folder with a planted anomaly: the files appear, carry the verdict, the
//! anomaly's operations and the run's settings, and a report made from
//! `results.json` shows the run's verdicts rather than a re-check.

mod report_support;

use report_support::{run, run_folder};

#[test]
fn report_checks_a_folder_without_results_and_writes_html_and_junit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = run_folder(tmp.path(), "register-partition", "20261122T050000Z");
    let out = run(&["report", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let page = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(page.contains("id=\"verdict\">INVALID<"), "verdict");
    assert!(page.contains("href=\"#op-4\""), "the stale read links to the timeline");
    assert!(page.contains("faults in force: partition"));
    assert!(
        page.contains("faultline run --test register-partition --seed 42"),
        "rerun command"
    );
    assert!(page.contains("href=\"nodes/n1/node.log\""), "node log link");
    assert!(!page.contains("http://") && !page.contains("https://"));
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert!(
        junit.contains("<testcase classname=\"faultline.register-partition\" name=\"linearizable\""),
        "{junit}"
    );
    assert!(junit.contains("<failure type=\"nonlinearizable\""), "{junit}");
    assert!(junit.contains("<property name=\"seed\" value=\"42\"/>"), "{junit}");
}

#[test]
fn report_shows_the_verdicts_of_results_json() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = run_folder(tmp.path(), "t", "20261122T050000Z");
    // The run said unknown (say its search ran out of budget); a re-check
    // would say invalid. The report must show what the run decided.
    std::fs::write(
        dir.join("results.json"),
        r#"{"test":"t","seed":42,"valid":"unknown","stats":{"elapsed_s":12.5},
            "checkers":{"linearizable":{"valid":"unknown","ops":3,"elapsed_ms":60000.0,"anomalies":[],
            "unknown_reason":"search budget of 60 s spent"}},"warnings":["healing: n2 did not restart"]}"#,
    )
    .unwrap();
    let out = run(&["report", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let page = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(page.contains("id=\"verdict\">unknown<"));
    assert!(page.contains("search budget of 60 s spent"));
    assert!(page.contains("healing: n2 did not restart"));
    assert!(page.contains("12.5 s"), "duration from results.json");
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert!(
        junit.contains("<error type=\"unknown\" message=\"search budget of 60 s spent\">"),
        "{junit}"
    );
}

#[test]
fn report_refuses_a_malformed_results_json_with_exit_3() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = run_folder(tmp.path(), "t", "20261122T050000Z");
    std::fs::write(dir.join("results.json"), r#"{"checkers":{"lin":{"valid":"perhaps"}}}"#).unwrap();
    let out = run(&["report", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("checkers.lin.valid"));
    assert!(!dir.join("report.html").exists());
}

#[test]
fn check_report_writes_the_report_of_the_checked_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = run_folder(tmp.path(), "t", "s");
    let out_file = tmp.path().join("r.html");
    let out = run(&[
        "check",
        "--report",
        out_file.to_str().unwrap(),
        dir.join("history.jsonl").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "the check's exit code is kept");
    let page = std::fs::read_to_string(&out_file).unwrap();
    assert!(page.contains("id=\"verdict\">INVALID<") && page.contains("href=\"#op-4\""));
    let two = run(&["check", "--report", "x.html", "a.jsonl", "b.jsonl"]);
    assert_eq!(two.status.code(), Some(3), "--report takes one file");
}
