//! The faults in force on a mount, and the gates filesystem operations pass.
//!
//! Every filesystem operation first calls [`Faults::wait_stall`]; every fsync
//! also calls [`Faults::delay_fsync`] and asks [`Faults::fsyncs_fail`]; every
//! write asks [`Faults::writes_fail`]. The waits are condition-variable waits
//! on this module's own mutex only, taken before any filesystem lock, so the
//! control thread can always change or end a fault while operations are held
//! (it never waits behind a stalled operation). Every wait is bounded by
//! [`FAULT_MS_MAX`].

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Longest stall or fsync delay a command may ask for (10 minutes).
pub const FAULT_MS_MAX: u64 = 600_000;

#[derive(Debug, Default)]
struct State {
    stall_until: Option<Instant>,
    fsync_delay_ms: u64,
    fail_writes: bool,
    fail_fsync: bool,
    counters: Counters,
}

/// How often each fault fired since the mount: evidence that a test's fault
/// was not vacuous.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Operations that waited for a stall.
    pub stalled_ops: u64,
    /// Fsyncs that were delayed.
    pub delayed_fsyncs: u64,
    /// Writes failed with EIO.
    pub failed_writes: u64,
    /// Fsyncs failed with EIO.
    pub failed_fsyncs: u64,
}

/// The faults in force, as `status` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FaultStatus {
    /// Milliseconds left of the current stall (0: none).
    pub stall_remaining_ms: u64,
    /// Extra milliseconds every fsync takes (0: none).
    pub fsync_delay_ms: u64,
    /// Whether writes fail with EIO.
    pub fail_writes: bool,
    /// Whether fsyncs fail with EIO.
    pub fail_fsync: bool,
    /// How often each fault fired.
    pub counters: Counters,
}

/// The faults of one mount; shared by the filesystem and the control thread.
#[derive(Debug, Default)]
pub struct Faults {
    state: Mutex<State>,
    /// Signalled whenever a fault is changed, so waiters re-check.
    changed: Condvar,
}

impl Faults {
    /// No faults in force.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a handful of plain fields, valid after any panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds every operation that arrives in the next `ms` milliseconds; 0
    /// ends a stall at once.
    pub fn stall(&self, ms: u64) {
        assert!(ms <= FAULT_MS_MAX, "stall of {ms} ms exceeds {FAULT_MS_MAX}");
        let mut st = self.lock();
        st.stall_until = (ms > 0).then(|| Instant::now() + Duration::from_millis(ms));
        self.changed.notify_all();
    }

    /// Makes every fsync take `ms` milliseconds longer; 0 turns it off.
    pub fn set_fsync_delay(&self, ms: u64) {
        assert!(ms <= FAULT_MS_MAX, "fsync delay of {ms} ms exceeds {FAULT_MS_MAX}");
        self.lock().fsync_delay_ms = ms;
        self.changed.notify_all();
    }

    /// Turns EIO on writes on or off.
    pub fn set_fail_writes(&self, on: bool) {
        self.lock().fail_writes = on;
    }

    /// Turns EIO on fsyncs on or off.
    pub fn set_fail_fsync(&self, on: bool) {
        self.lock().fail_fsync = on;
    }

    /// Ends every fault; held operations proceed.
    pub fn heal(&self) {
        let mut st = self.lock();
        st.stall_until = None;
        st.fsync_delay_ms = 0;
        st.fail_writes = false;
        st.fail_fsync = false;
        self.changed.notify_all();
    }

    /// The faults in force now.
    pub fn status(&self) -> FaultStatus {
        let st = self.lock();
        let now = Instant::now();
        let stall_remaining_ms = st
            .stall_until
            .map_or(0, |u| u.saturating_duration_since(now).as_millis() as u64);
        FaultStatus {
            stall_remaining_ms,
            fsync_delay_ms: st.fsync_delay_ms,
            fail_writes: st.fail_writes,
            fail_fsync: st.fail_fsync,
            counters: st.counters,
        }
    }

    /// Blocks while a stall is in force; returns how long it waited. Bounded:
    /// a stall ends at most [`FAULT_MS_MAX`] after its last renewal.
    pub fn wait_stall(&self) -> Duration {
        let start = Instant::now();
        let mut st = self.lock();
        let mut counted = false;
        while let Some(until) = st.stall_until {
            let now = Instant::now();
            if now >= until {
                st.stall_until = None;
                break;
            }
            if !counted {
                st.counters.stalled_ops += 1;
                counted = true;
            }
            st = self
                .changed
                .wait_timeout(st, until - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        start.elapsed()
    }

    /// Sleeps the fsync delay in force, cut short if it is turned off.
    pub fn delay_fsync(&self) {
        let mut st = self.lock();
        if st.fsync_delay_ms == 0 {
            return;
        }
        st.counters.delayed_fsyncs += 1;
        let deadline = Instant::now() + Duration::from_millis(st.fsync_delay_ms);
        while st.fsync_delay_ms > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = self
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Whether this write must fail (and counts it if so).
    pub fn writes_fail(&self) -> bool {
        let mut st = self.lock();
        st.counters.failed_writes += u64::from(st.fail_writes);
        st.fail_writes
    }

    /// Whether this fsync must fail (and counts it if so).
    pub fn fsyncs_fail(&self) -> bool {
        let mut st = self.lock();
        st.counters.failed_fsyncs += u64::from(st.fail_fsync);
        st.fail_fsync
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn no_stall_means_no_wait() {
        let f = Faults::new();
        assert!(f.wait_stall() < Duration::from_millis(50));
        assert_eq!(f.status().counters.stalled_ops, 0);
    }

    #[test]
    fn a_stall_holds_an_operation_for_its_duration() {
        let f = Faults::new();
        let start = Instant::now();
        f.stall(200);
        f.wait_stall();
        assert!(start.elapsed() >= Duration::from_millis(200));
        assert_eq!(f.status().counters.stalled_ops, 1);
        assert_eq!(f.status().stall_remaining_ms, 0);
    }

    #[test]
    fn heal_releases_a_held_operation_at_once() {
        let f = Arc::new(Faults::new());
        f.stall(FAULT_MS_MAX);
        f.set_fsync_delay(FAULT_MS_MAX);
        let waiter = {
            let f = Arc::clone(&f);
            thread::spawn(move || {
                f.wait_stall();
                f.delay_fsync();
            })
        };
        thread::sleep(Duration::from_millis(100));
        assert!(f.status().stall_remaining_ms > 0);
        f.heal();
        let start = Instant::now();
        waiter.join().unwrap();
        assert!(start.elapsed() < Duration::from_secs(5));
        let st = f.status();
        assert_eq!((st.stall_remaining_ms, st.fsync_delay_ms), (0, 0));
    }

    #[test]
    fn failures_are_counted_only_while_on() {
        let f = Faults::new();
        assert!(!f.writes_fail());
        f.set_fail_writes(true);
        f.set_fail_fsync(true);
        assert!(f.writes_fail() && f.fsyncs_fail());
        f.heal();
        assert!(!f.writes_fail() && !f.fsyncs_fail());
        let c = f.status().counters;
        assert_eq!((c.failed_writes, c.failed_fsyncs), (1, 1));
    }
}
