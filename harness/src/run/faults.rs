//! What the run makes of its faults: the kinds that took effect and how
//! often (the table's `faults:` line and `results.json`'s `faults`), the
//! faults that did not (`fault_errors`, which make the run exit 3: it
//! could not run as configured), and the stop that ends the workload at
//! once when a fault fails.

use std::collections::BTreeMap;
use std::future::Future;

use faultline_histories::{EventType, History};
use faultline_nemesis::{FaultKind, NemesisError};
use tokio::sync::watch;

/// The faults of one run.
#[derive(Clone, Debug, Default)]
pub struct FaultSummary {
    /// Faults that took effect, by kind (`partition-halves`, `kill`, ...).
    pub counts: BTreeMap<FaultKind, usize>,
    /// Faults or heals that did not take effect, as messages.
    pub errors: Vec<String>,
}

/// The messages of the nemesis's error and the final heal's, once each
/// (the final heal may fail the same way the plan's last step did).
pub fn errors(fault: Option<NemesisError>, heal: Option<NemesisError>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in [fault, heal].into_iter().flatten() {
        let m = e.to_string();
        if !out.contains(&m) {
            out.push(m);
        }
    }
    out
}

/// The warning results.json and the report carry for a fault error.
pub fn warning(error: &str) -> String {
    format!("could not run as configured: a fault did not take effect: {error}")
}

/// `kill x2, partition-halves x3` (by name), or `none`.
pub fn counts_line(counts: &BTreeMap<FaultKind, usize>) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    let mut named: Vec<(&str, usize)> = counts.iter().map(|(k, n)| (k.name(), *n)).collect();
    named.sort();
    named
        .iter()
        .map(|(k, n)| format!("{k} x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How many nemesis events of each `f` took effect (`info`); failed ones
/// are in `fault_errors` and the history, not counted here.
pub fn event_counts(history: &History) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in history.nemesis.iter().filter(|e| e.kind == EventType::Info) {
        *m.entry(e.f.to_string()).or_default() += 1;
    }
    m
}

/// Awaits `work`, turning `inner` true as soon as `outer` does (a stop
/// request), so the workers and the nemesis, which watch `inner`, also stop
/// when the nemesis aborts the test by turning `inner` true itself.
pub async fn with_stop_forwarded<T>(
    work: impl Future<Output = T>,
    mut outer: watch::Receiver<bool>,
    inner: &watch::Sender<bool>,
) -> T {
    tokio::pin!(work);
    tokio::select! {
        r = &mut work => r,
        Ok(_) = outer.wait_for(|s| *s) => {
            let _ = inner.send(true);
            work.await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_counts_line_names_each_kind_once() {
        let counts: BTreeMap<FaultKind, usize> = [(FaultKind::Kill, 2), (FaultKind::PartitionHalves, 3)].into();
        assert_eq!(counts_line(&counts), "kill x2, partition-halves x3", "by name");
        assert_eq!(counts_line(&BTreeMap::new()), "none");
    }

    #[test]
    fn the_same_failure_twice_is_one_error() {
        let e = || NemesisError::BadSchedule("x".into());
        assert_eq!(errors(Some(e()), Some(e())), vec!["bad schedule: x".to_owned()]);
        assert!(errors(None, None).is_empty());
    }

    #[tokio::test]
    async fn a_stop_request_reaches_the_inner_channel() {
        let (outer_tx, outer) = watch::channel(false);
        let (inner_tx, mut inner) = watch::channel(false);
        let work = async move {
            tokio::time::timeout(Duration::from_secs(10), inner.wait_for(|s| *s))
                .await
                .is_ok()
        };
        let _ = outer_tx.send(true);
        assert!(
            with_stop_forwarded(work, outer, &inner_tx).await,
            "the inner stop turned true"
        );
    }
}
