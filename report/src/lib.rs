//! faultline's verdict report: the page a person reads when a run goes red,
//! and the JUnit file a CI system reads.
//!
//! [`render_html`] turns a history and its named verdicts into one
//! self-contained `report.html` that reads at a glance: a sticky
//! navigation bar (summary, anomalies, timeline, plots, nodes); a summary
//! (verdict per checker, the settings that matter, seed, duration and the
//! command that reruns it, the other settings folded); per checker the
//! first few anomalies with the operations that prove them, their sentence
//! and the faults in force at that moment, the rest folded; a zoomable
//! timeline of operations with lanes labelled by process, the nemesis's
//! faults as named bands and the anomalous operations marked; latency and
//! throughput plots as SVG; per-node roles and lag; a legend beside every
//! chart. What it promises:
//!
//! - It reads without scrolling through noise: the page's height is bounded
//!   by the few anomalies shown per checker, not by how many were found.
//! - The page needs nothing but itself: CSS, script and data are inline; it
//!   names no URL with a scheme, so it opens offline and from a CI artifact.
//! - It stays fast at any size: the timeline keeps at most 50,000
//!   operations individually (all of a small history; the windows around
//!   anomalies and fault starts of a large one) and counts the rest into a
//!   bounded grid, and the plots are bounded by pixels, so a
//!   million-operation report stays a few megabytes.
//! - Text from the history is escaped everywhere; a value cannot inject
//!   markup or script.
//!
//! [`junit_xml`] writes one test case per checker. [`store`] reads a run's
//! folder and writes both files into it. The crate depends on the history
//! and checker crates only, and does no I/O except in [`store`].

mod anomalies;
mod cycle;
pub mod escape;
pub mod faults;
mod html;
pub mod junit;
mod legend;
mod nodes;
pub mod plots;
mod settings;
pub mod store;
mod summary;
pub mod timeline;

use std::collections::BTreeMap;

use faultline_checkers::Verdict;
use faultline_histories::History;

pub use html::render_html;
pub use junit::{campaign_junit_xml, junit_xml, ExpectationCase, JunitSuite};
pub use store::{write_run_reports, write_store_reports, ReportError};

/// Everything a report shows.
#[derive(Clone, Copy, Debug)]
pub struct ReportInput<'a> {
    pub history: &'a History,
    /// Verdicts by checker name.
    pub verdicts: &'a BTreeMap<String, Verdict>,
    /// What is known about the run; a history checked on its own has little.
    pub meta: &'a RunMeta,
}

/// What is known about the run that recorded the history.
#[derive(Clone, Debug, Default)]
pub struct RunMeta {
    /// The test's name; the history header's when `None`.
    pub test: Option<String>,
    /// The seed; the history header's when `None`.
    pub seed: Option<u64>,
    /// When the run started (RFC 3339); the header's when `None`.
    pub started_at: Option<String>,
    /// Wall time of the run.
    pub duration_s: Option<f64>,
    /// The command that reruns the test.
    pub rerun: Option<String>,
    /// The settings that matter to a reader (db, nemesis, workload, ...),
    /// shown in the summary.
    pub settings: Vec<(String, String)>,
    /// The rest of the settings, folded away under the ones shown.
    pub settings_folded: Vec<(String, String)>,
    /// Things a person should know (history truncated, healing failed, ...).
    pub warnings: Vec<String>,
    /// How the run was stopped early ("interrupted by SIGTERM at 12.3 s"),
    /// when it was.
    pub interrupted: Option<String>,
    /// Faults that could not be applied or healed: the run could not run
    /// as configured (exit 3), whatever its checkers said.
    pub fault_errors: Vec<String>,
    /// Completed operations no checker looked at, by `f` (the file's
    /// `unchecked`): with any, the history is not valid, only unknown.
    pub unchecked: BTreeMap<String, usize>,
    /// Files of the run, as (label, link relative to the report).
    pub files: Vec<(String, String)>,
    /// The cluster's nodes and their logs.
    pub nodes: Vec<NodeInfo>,
    /// The nodes' `status` as the harness sampled it over time.
    pub samples: Vec<NodeSample>,
}

/// One node of the cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeInfo {
    pub name: String,
    /// Its log files, as links relative to the report.
    pub logs: Vec<String>,
}

/// One answer of a node to `status`, at a time of the test.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeSample {
    /// Nanoseconds since the test started, on the history's clock.
    pub time_ns: u64,
    pub node: String,
    /// leader, follower, candidate, replica; `None` when it did not answer.
    pub role: Option<String>,
    pub epoch: Option<u64>,
    /// How far behind the leader it is, in log entries.
    pub lag: Option<u64>,
}

impl RunMeta {
    /// The test's name, from the run or the history's header.
    pub fn test_name(&self, history: &History) -> Option<String> {
        self.test
            .clone()
            .or_else(|| history.header.as_ref().and_then(|h| h.test.clone()))
    }

    /// The seed, from the run or the history's header.
    pub fn seed_of(&self, history: &History) -> Option<u64> {
        self.seed.or_else(|| history.header.as_ref().and_then(|h| h.seed))
    }
}
