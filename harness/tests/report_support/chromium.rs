//! Headless Chromium (Debian's `chromium`) for the report's browser tests:
//! find it (a skip with a message outside CI, a failure under CI=true),
//! load a page and dump the DOM its script produced, or take a screenshot.
//! Every run of the browser has a fresh profile in a temp dir and a bound
//! on its time; past the bound it is killed by its PID and the test fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one Chromium run may take before the test gives up on it: the
/// CI machine shares its two cores with every other test.
pub const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(120);

/// The browser, or `None` (with a message) when it is absent outside CI.
pub fn chromium() -> Option<PathBuf> {
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
pub struct Loaded {
    /// stdout: the DOM after scripts, with `--dump-dom`.
    pub dom: String,
    /// stderr: Chromium's log, console messages included.
    pub log: String,
    pub wall: Duration,
}

/// Runs headless Chromium on `file://page#fragment` with `args` added.
pub fn run_chromium(browser: &Path, page: &Path, fragment: &str, args: &[String]) -> Loaded {
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
        .args(args)
        .arg(&url)
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

/// The DOM of `page` after its scripts ran.
pub fn load(browser: &Path, page: &Path, fragment: &str) -> Loaded {
    run_chromium(browser, page, fragment, &["--dump-dom".to_owned()])
}

/// The DOM of `page` in a window of `width` x `height` pixels.
pub fn load_sized(browser: &Path, page: &Path, width: u32, height: u32) -> Loaded {
    run_chromium(
        browser,
        page,
        "",
        &[format!("--window-size={width},{height}"), "--dump-dom".to_owned()],
    )
}

/// A screenshot of the top `height` pixels of `page`, `width` wide, into
/// `png`; panics when Chromium wrote no image.
pub fn screenshot(browser: &Path, page: &Path, png: &Path, width: u32, height: u32) {
    let _ = std::fs::remove_file(png);
    let l = run_chromium(
        browser,
        page,
        "",
        &[
            format!("--window-size={width},{height}"),
            "--hide-scrollbars".to_owned(),
            format!("--screenshot={}", png.display()),
        ],
    );
    let bytes = std::fs::metadata(png).map(|m| m.len()).unwrap_or(0);
    assert!(bytes > 1_000, "no screenshot at {}: {}", png.display(), l.log);
}

/// The page's script finished and nothing complained. The marks are
/// attributes of `<body>` (the script's own text mentions them too).
pub fn assert_clean(l: &Loaded) {
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

pub fn body_tag(dom: &str) -> &str {
    let at = dom.find("<body").expect("a body");
    &dom[at..at + dom[at..].find('>').expect("a whole tag")]
}

pub fn attr(dom: &str, name: &str) -> Option<String> {
    let at = dom.find(&format!("{name}=\""))? + name.len() + 2;
    Some(dom[at..].split('"').next()?.to_owned())
}
