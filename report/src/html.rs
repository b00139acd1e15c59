//! Assembles `report.html`: the summary first (what a person needs in the
//! first screen), then each anomaly with its proof, the timeline, the
//! plots and the nodes. Every section is a small function returning HTML;
//! every piece of text goes through [`escape::html`].
//!
//! Bounds: at most [`ANOMALIES_SHOWN_MAX`] anomalies per checker and
//! [`OPS_SHOWN_MAX`] operations per anomaly are tabled (the rest are
//! counted), and a value is cut to [`VALUE_CHARS_MAX`] characters.

use std::collections::BTreeSet;
use std::fmt::Write;

use faultline_checkers::{verdict::seconds, Anomaly, OpRef, Validity, Verdict};

use crate::escape::{self, html, truncate};
use crate::faults::{active_during, fault_bands, FaultBand};
use crate::timeline::{end_time, timeline_json, Limits};
use crate::{nodes, plots, ReportInput};

/// Anomalies tabled per checker.
pub const ANOMALIES_SHOWN_MAX: usize = 200;
/// Operations tabled per anomaly.
pub const OPS_SHOWN_MAX: usize = 50;
/// Characters of a value shown in a table cell.
pub const VALUE_CHARS_MAX: usize = 200;

const CSS: &str = include_str!("../assets/report.css");
const JS: &str = include_str!("../assets/report.js");

/// The verdict as a word, and the CSS class that colours it.
pub fn verdict_word(v: Validity) -> (&'static str, &'static str) {
    match v {
        Validity::Valid => ("valid", "valid"),
        Validity::Invalid => ("INVALID", "invalid"),
        Validity::Unknown => ("unknown", "unknown"),
    }
}

/// Renders the whole report. Pure: the same input gives the same page.
pub fn render_html(input: &ReportInput<'_>) -> String {
    let h = input.history;
    let bands = fault_bands(h);
    let t_end = end_time(h);
    let said = input.verdicts.values().fold(Validity::Valid, |a, v| a.and(v.valid));
    // Operations no checker looked at leave a history unknown, not valid.
    let overall = match said {
        Validity::Valid if !input.meta.unchecked.is_empty() => Validity::Unknown,
        other => other,
    };
    let (word, class) = if input.verdicts.is_empty() {
        ("unchecked", "unknown")
    } else {
        verdict_word(overall)
    };
    let test = input.meta.test_name(h).unwrap_or_else(|| "history".into());
    let marked = marked_ops(input);
    let data = timeline_json(h, &marked, &bands, &Limits::default());
    let mut out = String::with_capacity(data.len() + (1 << 20));
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} {}: faultline report</title><style>{CSS}</style></head>\
         <body class=\"verdict-{class}\"><header><h1>{} <span class=\"verdict {class}\" id=\"verdict\">{word}</span></h1></header><main>",
        html(&test),
        word,
        html(&test)
    );
    if let Some(why) = &input.meta.interrupted {
        let _ = write!(
            out,
            "<p id=\"interrupted\"><strong>{}</strong>: the verdicts judge the history recorded until then.</p>",
            html(why)
        );
    }
    if !input.meta.fault_errors.is_empty() {
        let _ = write!(
            out,
            "<p id=\"fault-errors\"><strong>could not run as configured</strong>: {}. The history holds only \
             the faults that took effect.</p>",
            html(&input.meta.fault_errors.join("; "))
        );
    }
    out.push_str(&summary(input, t_end));
    out.push_str(&anomalies(input, &bands, t_end));
    out.push_str(&timeline_section(h.ops.len()));
    out.push_str(&plots_section(input, &bands, t_end));
    let _ = write!(
        out,
        "<section id=\"nodes\"><h2>Nodes</h2>{}</section>",
        nodes::nodes_html(&input.meta.nodes, &input.meta.samples, &bands, t_end)
    );
    let _ = writeln!(
        out,
        "</main><script type=\"application/json\" id=\"timeline-data\">{}</script><script>{JS}</script></body></html>",
        escape::json_in_script(&data)
    );
    out
}

/// The invoke indices of every operation an anomaly names.
fn marked_ops(input: &ReportInput<'_>) -> BTreeSet<u64> {
    input
        .verdicts
        .values()
        .flat_map(|v| v.anomalies.iter().take(ANOMALIES_SHOWN_MAX))
        .flat_map(|a| a.ops.iter().take(OPS_SHOWN_MAX))
        .map(|o| o.index)
        .collect()
}

fn summary(input: &ReportInput<'_>, t_end: u64) -> String {
    let mut out = String::from("<section id=\"summary\"><h2>Summary</h2><table class=\"verdicts\"><tr><th>checker</th><th>verdict</th><th>anomalies</th><th>operations</th><th>time</th><th>note</th></tr>");
    for (name, v) in input.verdicts {
        let (word, class) = verdict_word(v.valid);
        let note = v.unknown_reason.as_deref().unwrap_or("");
        let _ = write!(
            out,
            "<tr class=\"{class}\"><td>{}</td><td class=\"verdict {class}\">{word}</td><td>{}</td><td>{}</td><td>{:.0} ms</td><td>{}</td></tr>",
            html(name),
            v.anomalies_found(),
            v.ops,
            v.elapsed_ms,
            html(note)
        );
    }
    if input.verdicts.is_empty() {
        out.push_str("<tr><td colspan=\"6\">No checker applied to this history.</td></tr>");
    }
    out.push_str("</table>");
    out.push_str(&settings(input, t_end));
    out.push_str("</section>");
    out
}

fn settings(input: &ReportInput<'_>, t_end: u64) -> String {
    let (h, m) = (input.history, input.meta);
    let mut rows: Vec<(String, String)> = Vec::new();
    if let Some(t) = m.test_name(h) {
        rows.push(("test".into(), t));
    }
    let seed = m
        .seed_of(h)
        .map(|s| s.to_string())
        .unwrap_or_else(|| "not recorded".into());
    rows.push(("seed".into(), seed));
    let started = m
        .started_at
        .clone()
        .or_else(|| h.header.as_ref().and_then(|x| x.started_at.clone()));
    if let Some(s) = started {
        rows.push(("started".into(), s));
    }
    let duration = m
        .duration_s
        .map(|d| format!("{d:.1} s"))
        .unwrap_or_else(|| seconds(t_end));
    rows.push(("duration".into(), duration));
    let faults = h.nemesis.len();
    rows.push((
        "history".into(),
        format!(
            "{} operations, {} nemesis events, {} keys",
            h.ops.len(),
            faults,
            h.keys.len()
        ),
    ));
    rows.extend(m.settings.iter().cloned());
    let mut out = String::from("<table class=\"settings\">");
    for (k, v) in rows {
        let _ = write!(out, "<tr><th>{}</th><td>{}</td></tr>", html(&k), html(&v));
    }
    out.push_str("</table>");
    if let Some(r) = &m.rerun {
        let _ = write!(
            out,
            "<p>Rerun it:</p><pre class=\"rerun\"><code>{}</code></pre>",
            html(r)
        );
    }
    if !m.files.is_empty() {
        let links: Vec<String> = m
            .files
            .iter()
            .map(|(l, href)| format!("<a href=\"{}\">{}</a>", html(href), html(l)))
            .collect();
        let _ = write!(out, "<p class=\"files\">Files: {}</p>", links.join(" · "));
    }
    let unchecked: Vec<String> = m
        .unchecked
        .iter()
        .map(|(f, n)| format!("{n} `{f}` operations no checker looked at: the verdict cannot be valid"))
        .collect();
    let warnings: Vec<&String> = unchecked.iter().chain(&m.warnings).chain(&h.warnings).collect();
    if !warnings.is_empty() {
        out.push_str("<ul class=\"warnings\">");
        for w in warnings {
            let _ = write!(out, "<li>{}</li>", html(w));
        }
        out.push_str("</ul>");
    }
    out
}

fn anomalies(input: &ReportInput<'_>, bands: &[FaultBand], t_end: u64) -> String {
    let mut out = String::from("<section id=\"anomalies\"><h2>Anomalies</h2>");
    let mut n = 0usize;
    for (name, v) in input.verdicts {
        n += v.anomalies.len();
        for (i, a) in v.anomalies.iter().take(ANOMALIES_SHOWN_MAX).enumerate() {
            out.push_str(&anomaly(name, i, a, bands, t_end));
        }
        let shown = v.anomalies.len().min(ANOMALIES_SHOWN_MAX);
        if v.anomalies_found() > shown {
            let _ = write!(
                out,
                "<p class=\"muted\">{}: {} more anomalies not shown ({} kept as evidence in results.json).</p>",
                html(name),
                v.anomalies_found() - shown,
                v.anomalies.len()
            );
        }
        unknown_note(&mut out, name, v);
    }
    if n == 0 {
        out.push_str("<p class=\"muted\">No checker found an anomaly.</p>");
    }
    out.push_str("</section>");
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
        "<article class=\"anomaly\" id=\"anomaly-{}\"><h3>{} <small>{}{key}</small></h3>\
         <p class=\"explanation\">{}</p><p class=\"during\">Between {} and {}: {faults}. \
         <a class=\"show\" href=\"#op-{}\" data-ops=\"{}\">show on the timeline</a></p>",
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

fn op_row(o: &OpRef) -> String {
    let value = |v: &serde_json::Value| html(&truncate(&v.to_string(), VALUE_CHARS_MAX));
    format!(
        "<tr class=\"{}\"><td><a class=\"op\" href=\"#op-{}\">op {}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
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

fn timeline_section(ops: usize) -> String {
    format!(
        "<section id=\"timeline\"><h2>Timeline</h2>\
         <p class=\"muted\">{ops} operations, one lane per process (processes that never overlap share one). \
         Wheel or +/− to zoom, drag to pan, hover for an operation. Shaded bands are faults; \
         operations an anomaly names are outlined in red.</p>\
         <div class=\"controls\"><button type=\"button\" id=\"tl-in\">+</button>\
         <button type=\"button\" id=\"tl-out\">−</button><button type=\"button\" id=\"tl-reset\">whole test</button>\
         <span id=\"tl-range\"></span></div>\
         <div id=\"tl-wrap\"><canvas id=\"tl-canvas\" width=\"900\" height=\"200\"></canvas>\
         <div id=\"tl-tip\" hidden></div></div><p id=\"tl-info\" class=\"muted\"></p>\
         <div id=\"marked-ops\"></div></section>"
    )
}

fn plots_section(input: &ReportInput<'_>, bands: &[FaultBand], t_end: u64) -> String {
    let h = input.history;
    let mut out = String::from("<section id=\"plots\"><h2>Throughput and latency</h2>");
    out.push_str(&plots::throughput_svg(h, bands, t_end));
    for (f, svg) in plots::latency_svgs(h, bands, t_end) {
        let _ = write!(out, "<h3>{} latency</h3>{svg}", html(&f));
    }
    out.push_str("</section>");
    out
}
