//! Stopping a run from outside: SIGINT (Ctrl-C), SIGTERM (how CI systems
//! cancel a job) and SIGHUP (a closed terminal) all stop a run the same way.
//!
//! The first signal turns the run's stop channel true: the workload ends,
//! every fault is healed, every process stopped, what was recorded is
//! checked, and the reports say "interrupted by SIGTERM at 12.3 s". A second
//! signal also skips the check (it may take a minute): the surroundings
//! (namespaces, rules, mounts) are still removed, then the run exits. The
//! time is the run's own elapsed time, counted from when its workload began.
//! The binary listens for the signals (`cli_run`) and feeds them here.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::watch;

/// A stop request, by signal or by a caller (a test, a campaign).
#[derive(Clone, Debug)]
pub struct Interrupt {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    stop: watch::Sender<bool>,
    /// The first signal's name and when it came.
    first: Mutex<Option<(&'static str, Instant)>>,
    /// Signals received so far.
    count: AtomicU32,
    /// Every process stopped and the surroundings removed: from here on
    /// nothing of the run is left to clean, and a second signal may exit.
    torn_down: AtomicBool,
}

/// How a run was stopped early, for its reports.
#[derive(Clone, Debug, PartialEq)]
pub struct Interruption {
    /// SIGINT, SIGTERM or SIGHUP; `None` when a caller asked to stop.
    pub signal: Option<String>,
    /// Seconds into the run's workload when it came.
    pub at_s: f64,
    /// Whether the recorded history was checked (a second signal skips it).
    pub checked: bool,
}

impl Interruption {
    /// "interrupted by SIGTERM at 12.3 s".
    pub fn message(&self) -> String {
        let by = self.signal.as_deref().unwrap_or("a stop request");
        let mut m = format!("interrupted by {by} at {:.1} s", self.at_s);
        if !self.checked {
            m += " (a second signal skipped the check)";
        }
        m
    }
}

impl Default for Interrupt {
    fn default() -> Interrupt {
        Interrupt::new()
    }
}

impl Interrupt {
    /// No stop requested yet.
    pub fn new() -> Interrupt {
        let (stop, _) = watch::channel(false);
        Interrupt {
            inner: Arc::new(Inner {
                stop,
                first: Mutex::new(None),
                count: AtomicU32::new(0),
                torn_down: AtomicBool::new(false),
            }),
        }
    }

    /// The channel the run's tasks watch: true once a stop is requested.
    pub fn receiver(&self) -> watch::Receiver<bool> {
        self.inner.stop.subscribe()
    }

    /// Records `signal` (its name, SIGTERM, ...) and asks the run to stop;
    /// returns how many signals came so far (1 for the first).
    pub fn signal(&self, name: &'static str) -> u32 {
        self.inner
            .first
            .lock()
            .expect("interrupt")
            .get_or_insert((name, Instant::now()));
        let n = self.inner.count.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = self.inner.stop.send(true);
        n
    }

    /// Whether a second signal asked to skip the check.
    pub fn skip_check(&self) -> bool {
        self.inner.count.load(Ordering::SeqCst) >= 2
    }

    /// The first signal's name, if one came.
    pub fn first_signal(&self) -> Option<&'static str> {
        self.inner.first.lock().expect("interrupt").map(|(name, _)| name)
    }

    /// Says a run is starting: it has processes and surroundings to clean
    /// up again, so a second signal must not end the process before they
    /// are gone (a campaign shares one `Interrupt` across its runs).
    pub fn begin_run(&self) {
        self.inner.torn_down.store(false, Ordering::SeqCst);
    }

    /// Says the run's processes, rules, namespaces and mounts are gone.
    pub fn mark_torn_down(&self) {
        self.inner.torn_down.store(true, Ordering::SeqCst);
    }

    /// Whether the run has nothing left to clean up (only checking and
    /// reporting remain), so a second signal may end the process at once.
    pub fn torn_down(&self) -> bool {
        self.inner.torn_down.load(Ordering::SeqCst)
    }

    /// How the run was stopped, if it was: by a signal (named, at its time
    /// relative to `start`), or, when `stopped` says the stop channel turned
    /// true without one, by a caller (timed now).
    pub fn interruption(&self, start: Instant, stopped: bool) -> Option<Interruption> {
        let first = *self.inner.first.lock().expect("interrupt");
        let (signal, at) = match first {
            Some((name, at)) => (Some(name.to_owned()), at),
            None if stopped => (None, Instant::now()),
            None => return None,
        };
        Some(Interruption {
            signal,
            at_s: at.saturating_duration_since(start).as_secs_f64(),
            checked: !self.skip_check(),
        })
    }

    /// Forwards a caller's stop channel (campaigns, tests) into this one.
    pub fn follow(&self, mut stop: watch::Receiver<bool>) {
        let me = self.clone();
        tokio::spawn(async move {
            if stop.wait_for(|s| *s).await.is_ok() {
                let _ = me.inner.stop.send(true);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_signal_names_the_interruption_and_a_second_skips_the_check() {
        let i = Interrupt::new();
        let start = Instant::now() - std::time::Duration::from_millis(12_340);
        let rx = i.receiver();
        assert_eq!(i.interruption(start, false), None);
        assert_eq!(i.signal("SIGTERM"), 1);
        assert!(*rx.borrow());
        let first = i.interruption(start, true).unwrap();
        assert_eq!(first.signal.as_deref(), Some("SIGTERM"));
        assert!(
            first.message().starts_with("interrupted by SIGTERM at 12.3"),
            "{}",
            first.message()
        );
        assert!(first.checked);
        assert_eq!(i.signal("SIGINT"), 2);
        let second = i.interruption(start, true).unwrap();
        assert_eq!(second.signal.as_deref(), Some("SIGTERM"), "the first signal names it");
        assert!(!second.checked && i.skip_check());
        assert!(second.message().contains("skipped the check"));
    }

    #[test]
    fn a_stop_without_a_signal_is_a_stop_request() {
        let i = Interrupt::new();
        let m = i.interruption(Instant::now(), true).unwrap();
        assert_eq!(m.signal, None);
        assert!(
            m.message().starts_with("interrupted by a stop request at 0.0 s"),
            "{}",
            m.message()
        );
    }
}
