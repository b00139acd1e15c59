//! JUnit XML, the format every CI system shows as a test list.
//!
//! One `<testsuite>` per run, one `<testcase>` per checker. An invalid
//! verdict is a `<failure>` whose message is the first anomaly's sentence
//! and whose body lists every anomaly (bounded) with the operations that
//! prove it; an unknown verdict is an `<error>` with the reason, because a
//! checker that could not decide did not pass (exit code 2, not 0). A run
//! stopped early (by SIGTERM, say) adds an errored case `run` that says by
//! what and when, for the same reason; a run whose fault could not be
//! applied or healed adds an errored case `faults`. All
//! text is escaped, and characters XML cannot carry are replaced, so the
//! file always parses.

use std::collections::BTreeMap;
use std::fmt::Write;

use faultline_checkers::{Validity, Verdict};

use crate::escape::{truncate, xml};

/// Anomalies written out per failing checker; the rest are counted.
pub const ANOMALIES_MAX: usize = 100;
/// Operations listed per anomaly.
const OPS_MAX: usize = 20;
/// Longest `message` attribute.
const MESSAGE_CHARS_MAX: usize = 500;
/// The suite property that marks a run stopped early; its value says by
/// what and when. Such a suite gets an errored case `run` besides its
/// checkers, so CI shows the run as not passed whatever they said.
pub const INTERRUPTED_PROPERTY: &str = "interrupted";
/// The suite property that lists faults which could not be applied or
/// healed; such a suite gets an errored case `faults`, since the test did
/// not run as configured (exit 3) whatever its checkers said.
pub const FAULT_ERRORS_PROPERTY: &str = "fault_errors";

/// One run's verdicts, as a test suite.
#[derive(Clone, Debug)]
pub struct JunitSuite<'a> {
    /// The suite's name: the test's name.
    pub name: String,
    pub verdicts: &'a BTreeMap<String, Verdict>,
    /// Properties shown with the suite (seed, rerun command, store folder).
    pub properties: Vec<(String, String)>,
}

#[derive(Default)]
struct Counts {
    tests: usize,
    failures: usize,
    errors: usize,
    skipped: usize,
    time_s: f64,
}

impl Counts {
    fn of(s: &JunitSuite<'_>) -> Counts {
        let verdicts = s.verdicts;
        let mut c = Counts::default();
        let run_errors = run_cases(s).len();
        c.tests += run_errors;
        c.errors += run_errors;
        for v in verdicts.values() {
            c.tests += 1;
            c.time_s += v.elapsed_ms / 1e3;
            match v.valid {
                _ if !v.applies() => c.skipped += 1,
                Validity::Valid => {}
                Validity::Invalid => c.failures += 1,
                Validity::Unknown => c.errors += 1,
            }
        }
        c
    }

    fn add(&mut self, o: &Counts) {
        self.tests += o.tests;
        self.failures += o.failures;
        self.errors += o.errors;
        self.skipped += o.skipped;
        self.time_s += o.time_s;
    }

    fn attrs(&self) -> String {
        format!(
            "tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\"",
            self.tests, self.failures, self.errors, self.skipped, self.time_s
        )
    }
}

/// The JUnit XML document for one or more runs (a campaign is many).
pub fn junit_xml(suites: &[JunitSuite<'_>]) -> String {
    let mut body = String::new();
    let mut total = Counts::default();
    for s in suites {
        let c = Counts::of(s);
        total.add(&c);
        write_suite(&mut body, s, &c);
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"faultline\" {}>\n{body}</testsuites>\n",
        total.attrs()
    )
}

fn write_suite(out: &mut String, s: &JunitSuite<'_>, c: &Counts) {
    let _ = writeln!(out, "  <testsuite name=\"{}\" {}>", xml(&s.name), c.attrs());
    if !s.properties.is_empty() {
        out.push_str("    <properties>\n");
        for (k, v) in &s.properties {
            let _ = writeln!(out, "      <property name=\"{}\" value=\"{}\"/>", xml(k), xml(v));
        }
        out.push_str("    </properties>\n");
    }
    for case in run_cases(s) {
        let _ = write!(
            out,
            "    <testcase classname=\"faultline.{}\" name=\"{}\" time=\"0.000\">\n      \
             <error type=\"{}\" message=\"{}\">{}</error>\n    </testcase>\n",
            xml(&s.name),
            case.name,
            case.kind,
            xml(&truncate(&case.why, MESSAGE_CHARS_MAX)),
            xml(&case.why)
        );
    }
    for (name, v) in s.verdicts {
        write_case(out, &s.name, name, v);
    }
    out.push_str("  </testsuite>\n");
}

/// An errored case about the run itself rather than a checker.
struct RunCase {
    name: &'static str,
    kind: &'static str,
    why: String,
}

/// The run's own errored cases: `run` when it stopped early, `faults` when
/// a fault could not be applied or healed.
fn run_cases(s: &JunitSuite<'_>) -> Vec<RunCase> {
    let mut cases = Vec::new();
    if let Some(why) = property(s, INTERRUPTED_PROPERTY) {
        cases.push(RunCase {
            name: "run",
            kind: "interrupted",
            why: why.to_owned(),
        });
    }
    if let Some(errors) = property(s, FAULT_ERRORS_PROPERTY) {
        cases.push(RunCase {
            name: "faults",
            kind: "faults",
            why: format!("could not run as configured: {errors}"),
        });
    }
    cases
}

/// A suite property's value.
fn property<'a>(s: &'a JunitSuite<'_>, name: &str) -> Option<&'a str> {
    s.properties.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn write_case(out: &mut String, suite: &str, name: &str, v: &Verdict) {
    let _ = write!(
        out,
        "    <testcase classname=\"faultline.{}\" name=\"{}\" time=\"{:.3}\"",
        xml(suite),
        xml(name),
        v.elapsed_ms / 1e3
    );
    match v.valid {
        // A checker with nothing to judge passed nothing: skipped, with why.
        _ if !v.applies() => {
            let why = format!("not applicable: {}", v.not_applicable_why().unwrap_or_default());
            let _ = write!(out, ">\n      <skipped message=\"{}\"/>\n    </testcase>\n", xml(&why));
        }
        Validity::Valid => out.push_str("/>\n"),
        Validity::Invalid => {
            let first = v.anomalies.first();
            let message = first.map(|a| a.explanation.as_str()).unwrap_or("invalid");
            let kind = first.map(|a| a.kind.as_str()).unwrap_or("invalid");
            let _ = write!(
                out,
                ">\n      <failure type=\"{}\" message=\"{}\">{}</failure>\n    </testcase>\n",
                xml(kind),
                xml(&truncate(message, MESSAGE_CHARS_MAX)),
                xml(&failure_body(v))
            );
        }
        Validity::Unknown => {
            let reason = v.unknown_reason.as_deref().unwrap_or("the checker could not decide");
            let _ = write!(
                out,
                ">\n      <error type=\"unknown\" message=\"{}\">{}</error>\n    </testcase>\n",
                xml(&truncate(reason, MESSAGE_CHARS_MAX)),
                xml(reason)
            );
        }
    }
}

/// Every anomaly's sentence and the operations that prove it.
fn failure_body(v: &Verdict) -> String {
    let mut s = String::new();
    for a in v.anomalies.iter().take(ANOMALIES_MAX) {
        let _ = writeln!(s, "{}: {}", a.kind, a.explanation);
        for op in a.ops.iter().take(OPS_MAX) {
            let _ = writeln!(s, "  {}", op.describe());
        }
        if a.ops.len() > OPS_MAX {
            let _ = writeln!(s, "  ... and {} more operations", a.ops.len() - OPS_MAX);
        }
    }
    let shown = v.anomalies.len().min(ANOMALIES_MAX);
    if v.anomalies_found() > shown {
        let _ = writeln!(s, "... and {} more anomalies", v.anomalies_found() - shown);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_checkers::Anomaly;
    use std::time::Duration;

    #[test]
    fn an_interrupted_run_is_an_errored_case_whatever_its_checkers_said() {
        let mut verdicts = BTreeMap::new();
        verdicts.insert("lin".to_owned(), Verdict::valid(3, Duration::from_millis(5)));
        let why = "interrupted by SIGTERM at 12.3 s";
        let x = junit_xml(&[JunitSuite {
            name: "reg".into(),
            verdicts: &verdicts,
            properties: vec![(INTERRUPTED_PROPERTY.into(), why.into())],
        }]);
        assert_eq!(x.matches("<testcase ").count(), 2, "{x}");
        assert!(x.contains("tests=\"2\" failures=\"0\" errors=\"1\""), "{x}");
        assert!(
            x.contains(&format!("<error type=\"interrupted\" message=\"{why}\">")),
            "{x}"
        );
        let plain = junit_xml(&[JunitSuite {
            name: "reg".into(),
            verdicts: &verdicts,
            properties: vec![],
        }]);
        assert!(!plain.contains("interrupted"), "{plain}");
    }

    #[test]
    fn one_case_per_checker_failures_carry_sentences_unknown_is_an_error() {
        let mut verdicts = BTreeMap::new();
        verdicts.insert("lin<&>".to_owned(), Verdict::valid(3, Duration::from_millis(5)));
        let a = Anomaly::new("stale-read", None, vec![], "read 1 after \"2\" & <3>\u{7}".into());
        verdicts.insert(
            "monotonic-reads".to_owned(),
            Verdict::from_anomalies(3, Duration::ZERO, vec![a]),
        );
        verdicts.insert(
            "read-your-writes".to_owned(),
            Verdict::unknown(3, Duration::ZERO, "budget spent".into()),
        );
        let x = junit_xml(&[JunitSuite {
            name: "reg".into(),
            verdicts: &verdicts,
            properties: vec![("seed".into(), "42".into())],
        }]);
        assert_eq!(x.matches("<testcase ").count(), 3);
        assert!(x.contains("tests=\"3\" failures=\"1\" errors=\"1\""), "{x}");
        assert!(x.contains("name=\"lin&lt;&amp;&gt;\""), "{x}");
        assert!(
            x.contains("message=\"read 1 after &quot;2&quot; &amp; &lt;3&gt;\u{FFFD}\""),
            "{x}"
        );
        assert!(x.contains("<error type=\"unknown\" message=\"budget spent\">"), "{x}");
        assert!(x.contains("<property name=\"seed\" value=\"42\"/>"), "{x}");
        assert!(!x.contains('\u{7}'));
    }

    #[test]
    fn a_checker_with_nothing_to_judge_is_skipped_not_passed() {
        let mut verdicts = BTreeMap::new();
        verdicts.insert(
            "lost-writes".to_owned(),
            Verdict::not_applicable(Duration::ZERO, "no final reads"),
        );
        verdicts.insert("lin".to_owned(), Verdict::valid(3, Duration::ZERO));
        let x = junit_xml(&[JunitSuite {
            name: "reg".into(),
            verdicts: &verdicts,
            properties: vec![],
        }]);
        assert!(
            x.contains("tests=\"2\" failures=\"0\" errors=\"0\" skipped=\"1\""),
            "{x}"
        );
        assert!(
            x.contains("<skipped message=\"not applicable: no final reads\"/>"),
            "{x}"
        );
    }
}

/// One expectation of a campaign row: the test case passes when the
/// observed verdict is the expected one (an unsafe setting whose anomaly is
/// found passes; a safe one that shows an anomaly fails).
#[derive(Clone, Debug)]
pub struct ExpectationCase {
    /// The campaign test (the suite).
    pub test: String,
    pub checker: String,
    /// `pass`, `fail` or `-` (reported only).
    pub expected: String,
    /// valid, invalid, unknown, `skipped` or `error`.
    pub observed: String,
    pub holds: bool,
    /// Why, for a row that did not hold or was skipped (a note, the store
    /// folder to open).
    pub detail: String,
}

/// The JUnit XML document of a campaign: one suite per test, one case per
/// expectation. A row that could not run is an `<error>`, one skipped for a
/// missing capability is `<skipped>`, one whose observation differs from
/// its expectation a `<failure>`.
pub fn campaign_junit_xml(cases: &[ExpectationCase]) -> String {
    let mut suites: Vec<(&str, Vec<&ExpectationCase>)> = Vec::new();
    for c in cases {
        match suites.iter_mut().find(|(t, _)| *t == c.test) {
            Some((_, v)) => v.push(c),
            None => suites.push((&c.test, vec![c])),
        }
    }
    let mut body = String::new();
    let (mut tests, mut failures, mut errors, mut skipped) = (0, 0, 0, 0);
    for (test, cases) in &suites {
        let f = cases.iter().filter(|c| is_failure(c)).count();
        let e = cases.iter().filter(|c| c.observed == "error").count();
        let s = cases.iter().filter(|c| c.observed == "skipped").count();
        (tests, failures, errors, skipped) = (tests + cases.len(), failures + f, errors + e, skipped + s);
        let _ = writeln!(
            body,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{f}\" errors=\"{e}\" skipped=\"{s}\">",
            xml(test),
            cases.len()
        );
        for c in cases {
            write_expectation(&mut body, c);
        }
        body.push_str("  </testsuite>\n");
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"faultline campaign\" tests=\"{tests}\" \
         failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\">\n{body}</testsuites>\n"
    )
}

fn is_failure(c: &ExpectationCase) -> bool {
    !c.holds && c.observed != "error" && c.observed != "skipped"
}

fn write_expectation(out: &mut String, c: &ExpectationCase) {
    let _ = write!(
        out,
        "    <testcase classname=\"faultline.campaign.{}\" name=\"{} expected {}\"",
        xml(&c.test),
        xml(&c.checker),
        xml(&c.expected)
    );
    let message = xml(&truncate(
        &format!("expected {}, observed {}: {}", c.expected, c.observed, c.detail),
        MESSAGE_CHARS_MAX,
    ));
    if c.observed == "error" {
        let _ = writeln!(out, ">\n      <error message=\"{message}\"/>\n    </testcase>");
    } else if c.observed == "skipped" {
        let _ = writeln!(out, ">\n      <skipped message=\"{message}\"/>\n    </testcase>");
    } else if is_failure(c) {
        let _ = writeln!(
            out,
            ">\n      <failure type=\"expectation\" message=\"{message}\"/>\n    </testcase>"
        );
    } else {
        out.push_str("/>\n");
    }
}

#[cfg(test)]
mod campaign_tests {
    use super::*;

    fn case(test: &str, expected: &str, observed: &str, holds: bool) -> ExpectationCase {
        ExpectationCase {
            test: test.into(),
            checker: "linearizable".into(),
            expected: expected.into(),
            observed: observed.into(),
            holds,
            detail: "store/x <1>".into(),
        }
    }

    #[test]
    fn a_found_anomaly_that_was_expected_passes_and_a_surprise_fails() {
        let xml = campaign_junit_xml(&[
            case("unsafe", "fail", "invalid", true),
            case("safe", "pass", "invalid", false),
            case("disk", "pass", "skipped", true),
            case("broken", "pass", "error", false),
        ]);
        assert!(
            xml.contains("tests=\"4\" failures=\"1\" errors=\"1\" skipped=\"1\""),
            "{xml}"
        );
        assert!(
            xml.contains("<testsuite name=\"unsafe\" tests=\"1\" failures=\"0\""),
            "{xml}"
        );
        assert!(
            xml.contains("expected pass, observed invalid: store/x &lt;1&gt;"),
            "{xml}"
        );
    }
}
