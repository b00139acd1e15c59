//! The anomalies section: per checker, the first [`ANOMALIES_FIRST`]
//! anomalies with the operations that prove them, and the rest folded in a
//! `<details>` ("show all N"), so a run with thousands of anomalies still
//! puts the timeline a few screens down. Every operation links to itself
//! on the timeline, and every anomaly to all its operations at once.
//!
//! Bounds: at most [`ANOMALIES_SHOWN_MAX`] anomalies per checker and
//! [`OPS_SHOWN_MAX`] operations per anomaly are tabled (the rest are
//! counted), and a value is cut to [`VALUE_CHARS_MAX`] characters.

use std::fmt::Write;

use faultline_checkers::{verdict::seconds, Anomaly, OpRef, Verdict};

use crate::escape::{html, truncate};
use crate::faults::{active_during, FaultBand};
use crate::ReportInput;

/// Anomalies shown unfolded per checker.
pub const ANOMALIES_FIRST: usize = 3;
/// Anomalies tabled per checker, folded past [`ANOMALIES_FIRST`].
pub const ANOMALIES_SHOWN_MAX: usize = 200;
/// Operations tabled per anomaly.
pub const OPS_SHOWN_MAX: usize = 50;
/// Characters of a value shown in a table cell.
pub const VALUE_CHARS_MAX: usize = 200;

/// The id of a checker's group of anomalies, linked from the summary.
pub fn group_id(checker: &str) -> String {
    format!("anomalies-{checker}")
}

/// The whole section.
pub fn anomalies_section(input: &ReportInput<'_>, bands: &[FaultBand], t_end: u64) -> String {
    let mut out = String::from("<section id=\"anomalies\"><h2>Anomalies</h2>");
    if input.verdicts.values().any(|v| v.anomalies.len() > ANOMALIES_FIRST) {
        let _ = write!(
            out,
            "<p class=\"muted\">The first {ANOMALIES_FIRST} of each checker; \"show all\" opens the rest. \
             Each operation links to itself on the timeline.</p>"
        );
    }
    let mut n = 0usize;
    for (name, v) in input.verdicts {
        n += v.anomalies.len();
        if !v.anomalies.is_empty() {
            out.push_str(&checker_group(name, v, bands, t_end));
        }
        unknown_note(&mut out, name, v);
    }
    if n == 0 {
        out.push_str("<p class=\"muted\">No checker found an anomaly.</p>");
    }
    out.push_str("</section>");
    out
}

/// One checker's anomalies: a heading with the count, the first few, the
/// rest folded.
fn checker_group(name: &str, v: &Verdict, bands: &[FaultBand], t_end: u64) -> String {
    let found = v.anomalies_found();
    let shown = v.anomalies.len().min(ANOMALIES_SHOWN_MAX);
    let mut out = format!(
        "<div class=\"checker-anomalies\" id=\"{}\"><h3>{} <small>{found} {}</small></h3>",
        html(&group_id(name)),
        html(name),
        if found == 1 { "anomaly" } else { "anomalies" }
    );
    for (i, a) in v.anomalies.iter().take(ANOMALIES_FIRST).enumerate() {
        out.push_str(&anomaly(name, i, a, bands, t_end));
    }
    if shown > ANOMALIES_FIRST {
        let _ = write!(
            out,
            "<details class=\"more-anomalies\"><summary>show all {shown} of {name}</summary>",
            name = html(name)
        );
        for (i, a) in v.anomalies.iter().enumerate().take(shown).skip(ANOMALIES_FIRST) {
            out.push_str(&anomaly(name, i, a, bands, t_end));
        }
        out.push_str("</details>");
    }
    if found > shown {
        let _ = write!(
            out,
            "<p class=\"muted\">{} more anomalies not shown ({} kept as evidence in results.json).</p>",
            found - shown,
            v.anomalies.len()
        );
    }
    out.push_str("</div>");
    out
}

fn unknown_note(out: &mut String, name: &str, v: &Verdict) {
    if let Some(r) = &v.unknown_reason {
        let _ = write!(
            out,
            "<p class=\"unknown-note\"><b>{}</b> could not decide: {}</p>",
            html(name),
            html(r)
        );
    }
}

/// The time span the anomaly's operations cover.
fn span(a: &Anomaly, t_end: u64) -> (u64, u64) {
    let from = a.ops.iter().map(|o| o.invoke_time).min().unwrap_or(0);
    let to = a
        .ops
        .iter()
        .map(|o| o.complete_time.unwrap_or(t_end))
        .max()
        .unwrap_or(from);
    (from, to)
}

fn anomaly(checker: &str, i: usize, a: &Anomaly, bands: &[FaultBand], t_end: u64) -> String {
    let id = format!("{checker}-{i}");
    let key = a
        .key
        .as_deref()
        .map(|k| format!(" on key {}", html(k)))
        .unwrap_or_default();
    let (from, to) = span(a, t_end);
    let active = active_during(bands, from, to, t_end);
    let faults = if active.is_empty() {
        "no fault was in force".to_owned()
    } else {
        format!("faults in force: {}", html(&active.join("; ")))
    };
    let indices: Vec<String> = a.ops.iter().take(OPS_SHOWN_MAX).map(|o| o.index.to_string()).collect();
    let mut out = format!(
        "<article class=\"anomaly\" id=\"anomaly-{}\"><h4>{} <small>{}{key}</small></h4>\
         <p class=\"explanation\">{}</p><p class=\"during\">Between {} and {}: {faults}. \
         <a class=\"show\" href=\"#op-{}\" data-ops=\"{}\">show its operations on the timeline</a></p>",
        html(&id),
        html(&a.kind),
        html(checker),
        html(&a.explanation),
        seconds(from),
        seconds(to),
        indices.first().map(String::as_str).unwrap_or("0"),
        indices.join(",")
    );
    // A transactional anomaly's cycle, drawn (nothing for other checkers).
    out.push_str(&crate::cycle::cycle_html(&a.details));
    out.push_str("<table class=\"ops\"><tr><th>op</th><th>process</th><th>f</th><th>key</th><th>input</th><th>output</th><th>outcome</th><th>invoked</th><th>completed</th><th>node</th></tr>");
    for o in a.ops.iter().take(OPS_SHOWN_MAX) {
        out.push_str(&op_row(o));
    }
    out.push_str("</table>");
    if a.ops.len() > OPS_SHOWN_MAX {
        let _ = write!(
            out,
            "<p class=\"muted\">{} more operations.</p>",
            a.ops.len() - OPS_SHOWN_MAX
        );
    }
    out.push_str("</article>");
    out
}

/// One operation; its index links to it on the timeline.
fn op_row(o: &OpRef) -> String {
    let value = |v: &serde_json::Value| html(&truncate(&v.to_string(), VALUE_CHARS_MAX));
    format!(
        "<tr class=\"{}\"><td><a class=\"op\" href=\"#op-{}\" title=\"show on the timeline\">op {}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        o.outcome,
        o.index,
        o.index,
        o.process,
        html(&o.f),
        html(o.key.as_deref().unwrap_or("")),
        value(&o.input),
        value(&o.output),
        o.outcome,
        seconds(o.invoke_time),
        o.complete_time.map(seconds).unwrap_or_else(|| "-".into()),
        html(o.node.as_deref().unwrap_or(""))
    )
}
