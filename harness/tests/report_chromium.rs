//! The report opened in a real browser: headless Chromium (Debian's
//! `chromium`) loads `report.html` from disk, runs its script, and dumps
//! the DOM the script produced. We look for the verdict and the anomaly's
//! operations in it, for the marks the script leaves when it finishes
//! (`data-ready`, `data-render-ms`) and when it fails (`data-js-error`),
//! and for console messages or uncaught errors in Chromium's log.
//!
//! The second test times a report of a 1,000,000-operation history: the
//! page must finish its script within 5 s of navigation and weigh under
//! 20 MB. Without Chromium the tests print why and pass, except under
//! CI=true, where a missing browser is a failure (ci/test installs it).

mod report_support;

use std::collections::BTreeMap;
use std::time::Duration;

use faultline_checkers::{Anomaly, OpRef, Verdict};
use faultline_report::{render_html, ReportInput, RunMeta};
use report_support::chromium::{assert_clean, attr, body_tag, chromium, load};
use report_support::{big_history, run, run_folder};

#[test]
fn the_report_opens_in_chromium_with_the_verdict_and_the_anomalys_operations() {
    let Some(browser) = chromium() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = run_folder(tmp.path(), "register-partition", "20261122T050000Z");
    let out = run(&["report", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // With a link to the stale read, as a person following one would open it.
    let l = load(&browser, &dir.join("report.html"), "#op-4");
    assert_clean(&l);
    assert!(l.dom.contains("id=\"verdict\">INVALID<"), "the verdict");
    // The legend counts the marked operations only if the script read them
    // from the embedded data: the write that was lost to the read, and the read.
    let marked = l
        .dom
        .split("id=\"marked-ops\"")
        .nth(1)
        .expect("the legend's marked entry");
    let marked = marked.split("</span>").next().unwrap();
    assert!(marked.contains("data-count=\"2\""), "{marked}");
    assert!(
        l.dom.contains("href=\"#op-2\"") && l.dom.contains("href=\"#op-4\""),
        "the anomaly links to both operations"
    );
    // The timeline zoomed to the linked operation: the view (in µs) is
    // no longer the whole test (0 to 9 ms) but a window around op 4 (3-4 ms).
    let view = attr(&l.dom[l.dom.find("id=\"tl-canvas\"").unwrap()..], "data-view").expect("the view");
    let (v0, v1) = view.split_once(',').unwrap();
    let (v0, v1): (f64, f64) = (v0.parse().unwrap(), v1.parse().unwrap());
    assert!(
        v0 > 1_000.0 && v0 < 3_000.0 && v1 > 4_000.0 && v1 < 7_000.0,
        "view {view}"
    );
    eprintln!(
        "small report: script done {} ms after navigation, chromium wall {:?}",
        attr(body_tag(&l.dom), "data-render-ms").unwrap(),
        l.wall
    );
}

/// The checks above can fail: a page whose data is corrupt is caught.
#[test]
fn a_broken_page_is_caught() {
    let Some(browser) = chromium() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = run_folder(tmp.path(), "t", "20261122T050000Z");
    assert_eq!(run(&["report", dir.to_str().unwrap()]).status.code(), Some(0));
    let page = std::fs::read_to_string(dir.join("report.html")).unwrap();
    let broken = page.replacen("id=\"timeline-data\">{", "id=\"timeline-data\">{,", 1);
    assert_ne!(page, broken);
    std::fs::write(dir.join("report.html"), broken).unwrap();
    let l = load(&browser, &dir.join("report.html"), "");
    let body = body_tag(&l.dom);
    assert!(body.contains("data-js-error") && !body.contains("data-ready"), "{body}");
    assert!(l.log.contains("Uncaught"), "Chromium logs the error");
}

#[test]
fn a_million_operation_report_loads_in_chromium_in_under_5_s_and_weighs_under_20_mb() {
    let Some(browser) = chromium() else { return };
    let h = big_history(1_000_000);
    let (a, b) = (&h.ops[600_000], &h.ops[600_007]);
    let anomaly = Anomaly::new(
        "stale-read",
        None,
        vec![OpRef::new(&h, a), OpRef::new(&h, b)],
        format!(
            "op {} read a value older than the one op {} wrote",
            b.invoke_index, a.invoke_index
        ),
    );
    let mut verdicts = BTreeMap::new();
    verdicts.insert(
        "linearizable".to_owned(),
        Verdict::from_anomalies(h.ops.len(), Duration::ZERO, vec![anomaly]),
    );
    let meta = RunMeta::default();
    let page = render_html(&ReportInput {
        history: &h,
        verdicts: &verdicts,
        meta: &meta,
    });
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("report.html");
    std::fs::write(&path, &page).unwrap();
    assert!(page.len() < 20 << 20, "{} bytes", page.len());
    let l = load(&browser, &path, "");
    assert_clean(&l);
    let ms: u64 = attr(body_tag(&l.dom), "data-render-ms").unwrap().parse().unwrap();
    eprintln!(
        "1M-op report: {:.1} MB, script done {ms} ms after navigation, chromium wall {:?}",
        page.len() as f64 / (1 << 20) as f64,
        l.wall
    );
    assert!(ms < 5_000, "the page took {ms} ms");
    assert!(
        l.dom.contains(&format!("href=\"#op-{}\"", b.invoke_index)),
        "the anomaly links to its op"
    );
    assert!(l.dom.contains("data-count=\"2\""), "the script counted the marked ops");
}
