//! `faultline.log`: every `info` event of the harness and its libraries
//! (faults started and healed, nodes started, hosts accepted, warnings)
//! while a run lasts, written into the run's store folder whatever
//! `RUST_LOG` says about the terminal.
//!
//! The binary installs [`layer`] beside its stderr layer; a run opens its
//! file with [`RunLog::open`] and the guard closes it. Until a run opens
//! one (`faultline check`, a campaign between tests) the layer writes
//! nothing. One file is open at a time: a run opened later takes over, and
//! an earlier guard's drop leaves the newer file alone.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use tracing::{Level, Subscriber};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The file name in the store folder.
pub const FILE_NAME: &str = "faultline.log";

/// The open log: which run opened it, and the file.
struct Sink {
    id: u64,
    out: BufWriter<File>,
}

static SINK: Mutex<Option<Sink>> = Mutex::new(None);
/// Whether a file is open, read on every event without taking the lock.
static OPEN: AtomicBool = AtomicBool::new(false);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The layer that writes `info` and above into the open run's file.
pub fn layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_writer(SinkWriter)
        .with_ansi(false)
        .with_filter(filter_fn(|meta| {
            *meta.level() <= Level::INFO && OPEN.load(Ordering::Relaxed)
        }))
}

/// The open `faultline.log` of one run; dropping it flushes and closes it.
pub struct RunLog {
    id: u64,
    path: PathBuf,
}

impl RunLog {
    /// Creates `dir/faultline.log` and sends the layer's lines there. A
    /// file that cannot be created is a warning: the run goes on.
    pub fn open(dir: &Path) -> Option<RunLog> {
        let path = dir.join(FILE_NAME);
        let file = match File::create(&path) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the run's log");
                return None;
            }
        };
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let mut sink = SINK.lock().unwrap_or_else(|p| p.into_inner());
        *sink = Some(Sink {
            id,
            out: BufWriter::new(file),
        });
        OPEN.store(true, Ordering::Relaxed);
        Some(RunLog { id, path })
    }

    /// Where the log is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLog {
    fn drop(&mut self) {
        let mut sink = SINK.lock().unwrap_or_else(|p| p.into_inner());
        if sink.as_ref().is_some_and(|s| s.id == self.id) {
            if let Some(mut s) = sink.take() {
                let _ = s.out.flush();
            }
            OPEN.store(false, Ordering::Relaxed);
        }
    }
}

/// Hands the fmt layer a writer to the open file (or to nowhere).
struct SinkWriter;

impl<'a> MakeWriter<'a> for SinkWriter {
    type Writer = SinkWriter;

    fn make_writer(&'a self) -> SinkWriter {
        SinkWriter
    }
}

impl Write for SinkWriter {
    /// One call per event (the fmt layer formats a line, then writes it);
    /// the line is flushed at once, so a run that dies keeps its log.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut sink = SINK.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = sink.as_mut() {
            s.out.write_all(buf)?;
            s.out.flush()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let mut sink = SINK.lock().unwrap_or_else(|p| p.into_inner());
        match sink.as_mut() {
            Some(s) => s.out.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn info_goes_to_the_open_run_and_debug_and_closed_runs_get_nothing() {
        let subscriber = tracing_subscriber::registry().with(layer());
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("before any run");
            let first = RunLog::open(a.path()).unwrap();
            tracing::info!(fault = "kill", nodes = ?["n1"], "fault started");
            tracing::debug!("too fine for the file");
            let second = RunLog::open(b.path()).unwrap();
            drop(first);
            tracing::warn!("after the first run closed");
            drop(second);
            tracing::info!("after both");
        });
        let a = std::fs::read_to_string(a.path().join(FILE_NAME)).unwrap();
        let b = std::fs::read_to_string(b.path().join(FILE_NAME)).unwrap();
        assert!(a.contains("fault started") && a.contains("fault=\"kill\""), "{a}");
        assert!(!a.contains("too fine") && !a.contains("before any run"), "{a}");
        assert!(b.contains("after the first run closed"), "{b}");
        assert!(!b.contains("after both") && !a.contains("after both"), "{a}{b}");
    }
}
