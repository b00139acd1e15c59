//! `ci/merge-junit` on two shards' JUnit files, written as `faultline
//! campaign --junit` writes them: every suite of both ends up under one
//! `<testsuites>`, with totals counted from the cases; a missing or broken
//! input is an error, never a smaller green file.

use std::path::Path;
use std::process::{Command, Output};

use faultline_testdata::{in_ci, repo_root};

/// Shard 1: one suite, two cases, one failing.
const SHARD_1: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="faultline campaign" tests="2" failures="1" errors="0" skipped="0">
  <testsuite name="safe-register" tests="2" failures="1" errors="0" skipped="0">
    <testcase classname="faultline.campaign.safe-register" name="linearizable expected pass"/>
    <testcase classname="faultline.campaign.safe-register" name="lost-writes expected pass"><failure message="expected pass, observed invalid">lost</failure></testcase>
  </testsuite>
</testsuites>
"#;

/// Shard 2: two suites, one erroring, one skipped (its attributes wrong on
/// purpose: the totals come from the cases).
const SHARD_2: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="faultline campaign" tests="9" failures="9" errors="9" skipped="9">
  <testsuite name="follower-reads" tests="1" failures="0" errors="1" skipped="0">
    <testcase classname="faultline.campaign.follower-reads" name="- expected -"><error message="error">cluster would not start</error></testcase>
  </testsuite>
  <testsuite name="power-loss" tests="1" failures="0" errors="0" skipped="1">
    <testcase classname="faultline.campaign.power-loss" name="- expected -"><skipped message="FUSE"/></testcase>
  </testsuite>
</testsuites>
"#;

/// Whether python3 is here; skips (fails in CI) when it is not.
fn have_python() -> bool {
    let found = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(!in_ci(), "CI=true and python3 is missing");
        eprintln!("skipping: python3 is not installed");
    }
    found
}

fn merge(out: &Path, inputs: &[&Path]) -> Output {
    Command::new("python3")
        .arg(repo_root().join("ci/merge-junit"))
        .arg(out)
        .args(inputs)
        .output()
        .expect("running ci/merge-junit")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn two_shards_merge_into_one_file_with_true_totals() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("shard-1.xml"), dir.path().join("shard-2.xml"));
    std::fs::write(&a, SHARD_1).unwrap();
    std::fs::write(&b, SHARD_2).unwrap();
    let out = dir.path().join("merged.xml");
    let o = merge(&out, &[&a, &b]);
    assert!(o.status.success(), "{}", text(&o));
    let xml = std::fs::read_to_string(&out).unwrap();
    let root = xml.lines().find(|l| l.starts_with("<testsuites")).unwrap();
    assert!(
        root.contains("tests=\"4\"")
            && root.contains("failures=\"1\"")
            && root.contains("errors=\"1\"")
            && root.contains("skipped=\"1\""),
        "{xml}"
    );
    assert_eq!(xml.matches("<testsuite ").count(), 3, "{xml}");
    for suite in ["safe-register", "follower-reads", "power-loss"] {
        assert!(xml.contains(&format!("<testsuite name=\"{suite}\"")), "{xml}");
    }
    assert!(xml.contains("cluster would not start") && xml.contains("expected pass, observed invalid"));
    assert!(
        xml.contains(&format!("value=\"{}\"", b.display())),
        "each suite names its source: {xml}"
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("2 files"), "{}", text(&o));
}

#[test]
fn a_missing_or_broken_input_fails_the_merge() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.xml");
    std::fs::write(&good, SHARD_1).unwrap();
    let broken = dir.path().join("broken.xml");
    std::fs::write(&broken, "<testsuites><testsuite>").unwrap();
    let other = dir.path().join("other.xml");
    std::fs::write(&other, "<html/>").unwrap();
    let out = dir.path().join("merged.xml");
    for bad in [dir.path().join("missing.xml"), broken, other] {
        let o = merge(&out, &[&good, &bad]);
        assert_eq!(o.status.code(), Some(1), "{}: {}", bad.display(), text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(&*bad.to_string_lossy()),
            "{}",
            text(&o)
        );
    }
    assert!(!out.exists(), "nothing is written when an input is bad");
}
