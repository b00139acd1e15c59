//! The store: one folder per run, `store/<test>/<timestamp>/`, holding
//! `config.json` (everything needed to rerun, seed included), `history.jsonl`
//! (written as the test runs), `results.json`, and `nodes/<node>/` with each
//! node's data and log. `store/latest` points at the newest run.
//!
//! [`HistoryLog`] is the one writer of `history.jsonl`: it stamps each event
//! with the next index and the controller's monotonic time (never
//! decreasing) under one lock, buffers lines, and is flushed on a short
//! timer and at the end, so a controller that dies loses at most the last
//! flush period and leaves a valid prefix.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use faultline_histories::{Event, EventType, Header, JsonlWriter, Process, F};
use faultline_nemesis::{FaultEvent, NemesisError, Recorder};
use serde_json::Value;

/// Runs of the same test started within the same second get a suffix; past
/// this many the store refuses.
const MAX_SAME_SECOND_RUNS: usize = 100;

/// One run's folder.
#[derive(Clone, Debug)]
pub struct Store {
    /// `store/<test>/<timestamp>`.
    pub dir: PathBuf,
}

fn io_ctx(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

impl Store {
    /// Creates `root/<test>/<timestamp>/` and points `root/latest` at it.
    pub fn create(root: &Path, test: &str) -> std::io::Result<Store> {
        let stamp = utc_stamp(SystemTime::now());
        let base = root.join(test);
        std::fs::create_dir_all(&base).map_err(|e| io_ctx(&base, e))?;
        for i in 0..MAX_SAME_SECOND_RUNS {
            let name = if i == 0 { stamp.clone() } else { format!("{stamp}-{i}") };
            let dir = base.join(&name);
            match std::fs::create_dir(&dir) {
                Ok(()) => {
                    let latest = root.join("latest");
                    let _ = std::fs::remove_file(&latest);
                    // A relative link survives moving the store folder.
                    std::os::unix::fs::symlink(Path::new(test).join(&name), &latest).map_err(|e| io_ctx(&latest, e))?;
                    return Ok(Store { dir });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_ctx(&dir, e)),
            }
        }
        Err(std::io::Error::other(format!(
            "more than {MAX_SAME_SECOND_RUNS} runs of {test} in one second"
        )))
    }

    /// A node's folder.
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.dir.join("nodes").join(node)
    }

    /// The history file.
    pub fn history_path(&self) -> PathBuf {
        self.dir.join("history.jsonl")
    }

    /// Writes `name` as pretty JSON.
    pub fn write_json(&self, name: &str, value: &Value) -> std::io::Result<()> {
        let path = self.dir.join(name);
        let text = serde_json::to_string_pretty(value).expect("JSON values serialize");
        std::fs::write(&path, text + "\n").map_err(|e| io_ctx(&path, e))
    }
}

/// `YYYYMMDDTHHMMSSZ` in UTC (the epoch for a time before it).
pub fn utc_stamp(t: SystemTime) -> String {
    utc(t).format("%Y%m%dT%H%M%SZ").to_string()
}

/// `YYYY-MM-DDTHH:MM:SSZ` in UTC, for the history header.
pub fn utc_rfc3339(t: SystemTime) -> String {
    utc(t).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `t` as a UTC date and time, to the second. Times before the epoch
/// (a clock set far back) read as the epoch, as the store always has.
fn utc(t: SystemTime) -> DateTime<Utc> {
    let at = DateTime::<Utc>::from(t.max(UNIX_EPOCH));
    at.with_nanosecond(0).unwrap_or(at)
}

struct LogInner {
    writer: JsonlWriter<BufWriter<File>>,
    last_time_ns: u64,
    error: Option<String>,
}

/// The writer of `history.jsonl`, shared by every worker and the nemesis.
pub struct HistoryLog {
    inner: Mutex<LogInner>,
    start: Instant,
}

impl HistoryLog {
    /// Creates the file and writes its header; time 0 is now.
    pub fn create(path: &Path, header: &Header) -> std::io::Result<HistoryLog> {
        let mut writer = JsonlWriter::create(path).map_err(|e| io_ctx(path, e))?;
        writer.write_header(header).map_err(|e| io_ctx(path, e))?;
        Ok(HistoryLog {
            inner: Mutex::new(LogInner {
                writer,
                last_time_ns: 0,
                error: None,
            }),
            start: Instant::now(),
        })
    }

    /// Nanoseconds since the history started: the clock of every event, so
    /// other records of the run (status samples) line up with operations.
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Stamps `ev` with the next index and the current time, and buffers it.
    pub fn append(&self, mut ev: Event) {
        let mut g = self.inner.lock().expect("history log");
        let now = self.start.elapsed().as_nanos() as u64;
        g.last_time_ns = g.last_time_ns.max(now);
        ev.time = g.last_time_ns;
        ev.index = g.writer.next_index();
        if let Err(e) = g.writer.write_unflushed(&ev) {
            g.error.get_or_insert(e.to_string());
        }
    }

    /// Hands buffered lines to the operating system.
    pub fn flush(&self) {
        let mut g = self.inner.lock().expect("history log");
        if let Err(e) = g.writer.flush() {
            g.error.get_or_insert(e.to_string());
        }
    }

    /// Events written so far.
    pub fn len(&self) -> u64 {
        self.inner.lock().expect("history log").writer.next_index()
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first write error, if any.
    pub fn error(&self) -> Option<String> {
        self.inner.lock().expect("history log").error.clone()
    }
}

impl Recorder for HistoryLog {
    fn record(&self, f: FaultEvent, value: Value) {
        let ev = Event::new(0, 0, Process::Nemesis, EventType::Info, F::parse(f.name()), value);
        self.append(ev);
        // Faults are rare and worth having on disk at once.
        self.flush();
    }

    fn record_failure(&self, f: FaultEvent, value: Value, error: &NemesisError) {
        let mut ev = Event::new(0, 0, Process::Nemesis, EventType::Fail, F::parse(f.name()), value);
        ev.error = Some(error.to_string());
        self.append(ev);
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stamps_are_utc_calendar_dates() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(utc_stamp(t), "20261118T110640Z");
        assert_eq!(utc_rfc3339(t), "2026-11-18T11:06:40Z");
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101T000000Z");
        let leap_day = UNIX_EPOCH + Duration::from_millis(951_782_400_999);
        assert_eq!(utc_rfc3339(leap_day), "2000-02-29T00:00:00Z", "seconds, not rounded up");
        assert_eq!(utc_stamp(UNIX_EPOCH - Duration::from_secs(5)), "19700101T000000Z");
    }

    #[test]
    fn store_folders_and_latest_link() {
        let root = tempfile::tempdir().unwrap();
        let a = Store::create(root.path(), "t").unwrap();
        let b = Store::create(root.path(), "t").unwrap();
        assert_ne!(a.dir, b.dir);
        let latest = std::fs::canonicalize(root.path().join("latest")).unwrap();
        assert_eq!(latest, std::fs::canonicalize(&b.dir).unwrap());
    }

    #[test]
    fn the_log_numbers_events_and_never_goes_back_in_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        let log = HistoryLog::create(&path, &Header::default()).unwrap();
        for _ in 0..3 {
            log.record(FaultEvent::Kill, serde_json::json!({"node": "n1"}));
        }
        log.flush();
        let h = faultline_histories::read_history_file(&path).unwrap();
        assert_eq!(h.nemesis.len(), 3);
        assert!(h
            .nemesis
            .windows(2)
            .all(|w| w[0].time <= w[1].time && w[0].index + 1 == w[1].index));
    }
}
