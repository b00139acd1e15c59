//! Faults that happened, and only those, through the `faultline` binary:
//! a fault that cannot be applied (an `nft` that exits 1) ends the run
//! with exit 3 and its error in the history, results.json and the report;
//! a schedule too short for its faults is refused before anything starts;
//! a run that works counts each fault kind in its table, logs every fault
//! at `info` into its store's `faultline.log` (and on stderr when
//! `RUST_LOG` asks), and its progress ends with a final line.
//!
//! The netns case needs root, `ip netns` and `nft`: elsewhere it says why
//! and skips; with `CI=true` it fails instead.

mod run_support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use run_support::{netns_capable, netns_leftovers, processes_mentioning, server_bin};

fn faultline(store: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_faultline"));
    cmd.args(["run", "--store"])
        .arg(store)
        .arg("--server-bin")
        .arg(server_bin())
        .args(extra);
    cmd
}

/// Runs `cmd` to its end, killing it (by pid) past `within`.
fn output_within(cmd: &mut Command, within: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipes = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut o = Vec::new();
        let _ = pipes.0.read_to_end(&mut o);
        o
    });
    let err = std::thread::spawn(move || {
        let mut e = Vec::new();
        let _ = pipes.1.read_to_end(&mut e);
        e
    });
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("faultline ran past {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn latest(store: &Path) -> PathBuf {
    std::fs::canonicalize(store.join("latest")).unwrap()
}

/// A folder holding an `nft` that says why it fails and exits 1.
fn failing_nft(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let nft = bin.join("nft");
    std::fs::write(
        &nft,
        "#!/bin/sh\necho 'nft: planted failure for the test' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&nft, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

#[allow(
    clippy::too_many_lines,
    reason = "one scenario: a failing nft, then what the history, results, report and junit each say about it"
)]
#[test]
fn a_failing_nft_ends_the_run_with_exit_3_and_the_error_in_history_and_report() {
    if !netns_capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let path = format!(
        "{}:{}",
        failing_nft(dir.path()).display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let args = [
        "--net",
        "netns",
        "--nemesis",
        "partition",
        "--nemesis-interval",
        "1",
        "--time-limit",
        "30",
        "--seed",
        "3",
        "--no-progress",
    ];
    let started = Instant::now();
    let out = output_within(faultline(&store, &args).env("PATH", path), Duration::from_secs(120));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(3), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the run ended at the failure, not at its time limit: {:?}",
        started.elapsed()
    );
    assert!(stdout.contains("could not run as configured"), "{stdout}");
    assert!(stdout.contains("faults: none"), "{stdout}");

    let run = latest(&store);
    let history = std::fs::read_to_string(run.join("history.jsonl")).unwrap();
    let failed = history
        .lines()
        .find(|l| l.contains("\"type\":\"fail\"") && l.contains("\"process\":\"nemesis\""))
        .unwrap_or_else(|| panic!("no failed nemesis event:\n{history}"));
    assert!(failed.contains("\"f\":\"start-partition\""), "{failed}");
    assert!(failed.contains("planted failure for the test"), "{failed}");
    assert!(
        !history.contains("\"type\":\"info\",\"f\":\"start-partition\""),
        "no partition is recorded as done"
    );
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    let errors = results["fault_errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| e.as_str().unwrap().contains("planted failure")),
        "{results:#}"
    );
    assert!(results["faults"].as_object().unwrap().is_empty(), "{results:#}");
    let report = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(
        report.contains("planted failure for the test"),
        "the report shows the error"
    );
    assert!(report.contains("id=\"fault-errors\""), "in a banner of its own");
    let junit = std::fs::read_to_string(run.join("junit.xml")).unwrap();
    assert!(
        junit.contains("<error type=\"faults\"") && junit.contains("planted failure"),
        "CI's test view fails the run: {junit}"
    );
    let log = std::fs::read_to_string(run.join("faultline.log")).unwrap();
    assert!(log.contains("fault did not take effect"), "{log}");

    let left = netns_leftovers(&run);
    assert!(left.is_empty(), "left behind: {left:?}");
    let procs = processes_mentioning(&dir.path().display().to_string());
    assert!(procs.is_empty(), "processes left behind: {procs:?}");
}

#[test]
fn a_schedule_too_short_for_its_faults_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let args = ["--nemesis", "disk-slow", "--time-limit", "8", "--no-progress"];
    let out = output_within(&mut faultline(&store, &args), Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("at least 10 s"),
        "names the time limit that fits: {stderr}"
    );
    assert!(!store.exists(), "nothing started: no store folder");

    let args = [
        "--nemesis",
        "partition,kill,pause",
        "--nemesis-interval",
        "2",
        "--time-limit",
        "11",
    ];
    let out = output_within(&mut faultline(&store, &args), Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("at least 12 s"), "{stderr}");
}

#[allow(
    clippy::too_many_lines,
    reason = "one scenario: a run, then its table, log and progress lines each checked in turn"
)]
#[test]
fn a_run_counts_its_faults_logs_them_and_ends_its_progress_with_a_total() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let args = [
        "--nemesis",
        "partition-halves,kill",
        "--nemesis-interval",
        "2",
        "--time-limit",
        "12",
        "--rate",
        "200",
        "--seed",
        "4",
    ];
    let mut cmd = faultline(&store, &args);
    cmd.env("RUST_LOG", "faultline_nemesis=info");
    let out = output_within(&mut cmd, Duration::from_secs(180));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");

    // The table counts each kind; results.json says the same.
    let run = latest(&store);
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    let faults = &results["faults"];
    let (halves, kills) = (
        faults["partition-halves"].as_u64().unwrap_or(0),
        faults["kill"].as_u64().unwrap_or(0),
    );
    assert!(halves >= 1 && kills >= 1, "{results:#}");
    let line = format!("faults: kill x{kills}, partition-halves x{halves}");
    assert!(stdout.contains(&line), "{line} in:\n{stdout}");

    // Every fault start and stop is an info event, in the file and, as
    // RUST_LOG=faultline_nemesis=info asks, on stderr.
    let log = std::fs::read_to_string(run.join("faultline.log")).unwrap();
    for want in [
        "fault started",
        "fault healed",
        "fault=\"kill\"",
        "fault=\"start-partition\"",
        "nodes=",
    ] {
        assert!(log.contains(want), "{want} not in faultline.log:\n{log}");
    }
    assert!(
        stderr.contains("fault started") && stderr.contains("fault=\"kill\""),
        "{stderr}"
    );

    // Progress on a pipe: a line at 10 s, over those 10 s, and a total.
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with('[')).collect();
    let at_ten = lines
        .iter()
        .find(|l| l.starts_with("[ 10."))
        .unwrap_or_else(|| panic!("no line at 10 s: {lines:?}"));
    let rate: f64 = at_ten
        .split("ops/s")
        .next()
        .unwrap()
        .rsplit(']')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let count = |word: &str| -> f64 {
        let after = at_ten.split(&format!("  {word} ")).nth(1).unwrap();
        after.split_whitespace().next().unwrap().parse().unwrap()
    };
    let mean = (count("ok") + count("fail") + count("info")) / 10.0;
    assert!(
        rate > 0.0 && (rate - mean).abs() <= 0.15 * mean,
        "the first line's rate is over its 10 s ({mean:.0} ops/s), not over its last second: {at_ten}"
    );
    let done = lines.last().unwrap();
    let completed = ["ok", "fail", "info"]
        .iter()
        .map(|k| results["stats"][k].as_u64().unwrap())
        .sum::<u64>();
    assert!(
        done.starts_with(&format!("[done] {completed} ops in ")),
        "{done} vs {completed}"
    );
    for l in &lines[..lines.len() - 1] {
        let secs: f64 = l[1..].split('s').next().unwrap().trim().parse().unwrap();
        assert!(secs <= 12.0, "elapsed past the limit: {l}");
    }
}
