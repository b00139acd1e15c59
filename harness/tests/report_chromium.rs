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
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use faultline_checkers::{Anomaly, OpRef, Verdict};
use faultline_report::{render_html, ReportInput, RunMeta};
use report_support::{big_history, run, run_folder};

/// How long one Chromium run may take before the test gives up on it.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(120);

/// The browser, or `None` (with a message) when it is absent outside CI.
fn chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
        if found.is_some() {
            return found;
        }
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("chromium is not installed; CI must install it (apt-get install chromium)");
    }
    eprintln!("SKIPPED: chromium is not installed (apt-get install chromium); the report's browser tests did not run");
    None
}

/// What Chromium made of a page.
struct Loaded {
    dom: String,
    log: String,
    wall: Duration,
}

fn load(browser: &Path, page: &Path, fragment: &str) -> Loaded {
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}{fragment}", page.display());
    let start = Instant::now();
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--dump-dom", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    // Read both pipes on threads so a chatty log cannot block the browser.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || std::io::read_to_string(&mut out).unwrap_or_default());
    let err_t = std::thread::spawn(move || std::io::read_to_string(&mut err).unwrap_or_default());
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > CHROMIUM_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {CHROMIUM_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let wall = start.elapsed();
    Loaded {
        dom: out_t.join().unwrap(),
        log: err_t.join().unwrap(),
        wall,
    }
}

/// The page's script finished and nothing complained. The marks are
/// attributes of `<body>` (the script's own text mentions them too).
fn assert_clean(l: &Loaded) {
    let body = body_tag(&l.dom);
    assert!(body.contains("data-ready=\"1\""), "the script did not finish: {body}");
    assert!(!body.contains("data-js-error"), "the script failed: {body}");
    let complaints: Vec<&str> = l
        .log
        .lines()
        .filter(|line| line.contains(":CONSOLE") || line.contains("Uncaught"))
        .collect();
    assert!(complaints.is_empty(), "console messages: {complaints:#?}");
}

fn body_tag(dom: &str) -> &str {
    let at = dom.find("<body").expect("a body");
    &dom[at..at + dom[at..].find('>').expect("a whole tag")]
}

fn attr(dom: &str, name: &str) -> Option<String> {
    let at = dom.find(&format!("{name}=\""))? + name.len() + 2;
    Some(dom[at..].split('"').next()?.to_owned())
}

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
    // The list of marked operations exists only if the script built it from
    // the embedded data: the write that was lost to the read, and the read.
    let marked = l.dom.split("id=\"marked-ops\"").nth(1).expect("the marked list");
    let marked = marked.split("</div>").next().unwrap();
    assert!(marked.contains("data-count=\"2\""), "{marked}");
    assert!(
        marked.contains(">op 2</button>") && marked.contains(">op 4</button>"),
        "{marked}"
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
        l.dom.contains(&format!(">op {}</button>", b.invoke_index)),
        "the anomaly's op is listed"
    );
}
