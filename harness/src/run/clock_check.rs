//! Checking that a clock fault took effect: the database on the node is
//! asked for its time (a probe command run there, which PostgreSQL answers
//! with `clock_timestamp()`) between two readings of the machine's true
//! time, and the fault counts only when that reading shows the offset set,
//! sharply enough to rule out the clock it replaced.
//!
//! The true time is read on the node itself, not on the controller, so
//! the check holds on remote machines whose true clocks differ a little
//! from the controller's.

use std::time::{Duration, Instant};

use faultline_nemesis::{CommandSpec, Control, SurroundingsError};

/// How long a clock check may keep asking a node (a standby just
/// restarted refuses connections until it is consistent).
const CLOCK_CHECK_TIMEOUT_MS: u64 = 20_000;
/// Pause between two readings of a node's clock.
const CLOCK_CHECK_POLL_MS: u64 = 200;
/// How far off a reading may be when the clock did not move (a heal of a
/// clock already true): it must only show the clock where it should be.
const CLOCK_ERROR_UNMOVED_MS: i64 = 500;
/// What libfaketime's and `date`'s millisecond rounding may add.
const CLOCK_ROUNDING_MS: i64 = 2;

/// One reading of a node's clock as its database tells it.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Reading {
    /// The database's time minus the true time at the middle of the window.
    offset_ms: i64,
    /// How far that may be off: half the window, plus rounding.
    error_ms: i64,
}

impl Reading {
    /// A probe's output: true time, the database's time, true time again,
    /// each in milliseconds since the epoch.
    fn parse(out: &str) -> Option<Reading> {
        let words: Vec<i64> = out.split_whitespace().map(|w| w.parse().ok()).collect::<Option<_>>()?;
        let [before, db, after] = words[..] else {
            return None;
        };
        let window = after.checked_sub(before).filter(|w| *w >= 0)?;
        Some(Reading {
            offset_ms: db - (before + window / 2),
            error_ms: (window + 1) / 2 + CLOCK_ROUNDING_MS,
        })
    }

    /// Whether the reading shows the clock moved from `from_ms` to `to_ms`
    /// off: `to_ms` within its error, which is too small to take in
    /// `from_ms` as well. (A clock fault moves a clock at least 100 ms, so
    /// a loaded machine's slow probe still fits under half of that.)
    fn shows(&self, from_ms: i64, to_ms: i64) -> bool {
        let allowed = if from_ms == to_ms {
            CLOCK_ERROR_UNMOVED_MS
        } else {
            ((from_ms - to_ms).abs() - 1) / 2
        };
        self.error_ms <= allowed && (self.offset_ms - to_ms).abs() <= self.error_ms
    }
}

/// Runs `probe` on `node` until a reading shows the clock moved from
/// `from()` (read afresh each time: a strobe may still move it) to
/// `want_ms` off, for at most [`CLOCK_CHECK_TIMEOUT_MS`]; returns the
/// offset read, or the last reason it did not show.
pub fn await_offset(
    control: &dyn Control,
    node: &str,
    probe: &CommandSpec,
    from: impl Fn() -> i64,
    want_ms: i64,
) -> Result<i64, SurroundingsError> {
    let deadline = Instant::now() + Duration::from_millis(CLOCK_CHECK_TIMEOUT_MS);
    loop {
        let last = match read_clock(control, node, probe) {
            Ok(r) if r.shows(from(), want_ms) => return Ok(r.offset_ms),
            Ok(r) => SurroundingsError::ClockNotMoved {
                node: node.to_owned(),
                want_ms,
                seen_ms: r.offset_ms,
                error_ms: r.error_ms,
            },
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        std::thread::sleep(Duration::from_millis(CLOCK_CHECK_POLL_MS));
    }
}

/// Runs `probe` on `node` once.
fn read_clock(control: &dyn Control, node: &str, probe: &CommandSpec) -> Result<Reading, SurroundingsError> {
    let out = control.run(node, probe)?;
    let said = String::from_utf8_lossy(&out.stdout);
    match Reading::parse(&said) {
        Some(r) if out.status.success() => Ok(r),
        _ => Err(SurroundingsError::Refused {
            node: node.to_owned(),
            command: format!("reading the database's clock ({})", probe.display()),
            detail: format!("{} {}", said.trim(), String::from_utf8_lossy(&out.stderr).trim())
                .trim()
                .to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_is_the_offset_at_the_windows_middle() {
        let r = Reading::parse("1000\n3010\n1020\n").unwrap();
        assert_eq!(
            r,
            Reading {
                offset_ms: 2000,
                error_ms: 12
            }
        );
        assert_eq!(Reading::parse("1000 990 1000").unwrap().offset_ms, -10);
        assert_eq!(Reading::parse("1020 3010 1000"), None, "time ran backwards");
        assert_eq!(Reading::parse("1000 3010"), None);
        assert_eq!(Reading::parse("psql: error"), None);
    }

    #[test]
    fn a_reading_shows_a_move_only_when_sharp_enough_to_rule_out_the_old_clock() {
        let r = |offset_ms, error_ms| Reading { offset_ms, error_ms };
        assert!(r(95, 10).shows(0, 100));
        assert!(!r(95, 10).shows(0, 200), "off by more than its error");
        assert!(!r(100, 60).shows(0, 100), "could as well be the true clock");
        assert!(r(100, 49).shows(0, 100));
        assert!(!r(100, 49).shows(100, 10), "a 90 ms move needs under 45 ms");
        assert!(r(2_900, 400).shows(0, 3_000), "a long move tolerates a slow probe");
        assert!(r(30, 300).shows(0, 0), "an unmoved clock needs only to be right");
        assert!(!r(30, 600).shows(0, 0));
    }
}
