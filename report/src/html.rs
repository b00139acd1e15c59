//! Assembles `report.html`: a sticky header with the verdict and a
//! navigation bar, then the summary (what a person needs in the first
//! screen), the anomalies (a few per checker, the rest folded), the
//! timeline, the plots and the nodes. Every section is a small function
//! returning HTML; every piece of text goes through [`escape::html`].

use std::collections::BTreeSet;
use std::fmt::Write;

use faultline_checkers::Validity;

use crate::anomalies::{self, ANOMALIES_SHOWN_MAX, OPS_SHOWN_MAX};
use crate::escape::{self, html};
use crate::faults::{fault_bands, FaultBand};
use crate::timeline::{end_time, timeline_json, Limits};
use crate::{legend, nodes, plots, summary, ReportInput};

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

/// The page's verdict word and class: every checker's, and unknown when
/// operations went unchecked (they leave a history unknown, not valid).
fn overall(input: &ReportInput<'_>) -> (&'static str, &'static str) {
    if input.verdicts.is_empty() {
        return ("unchecked", "unknown");
    }
    let said = input.verdicts.values().fold(Validity::Valid, |a, v| a.and(v.valid));
    match said {
        Validity::Valid if !input.meta.unchecked.is_empty() => verdict_word(Validity::Unknown),
        other => verdict_word(other),
    }
}

/// Renders the whole report. Pure: the same input gives the same page.
pub fn render_html(input: &ReportInput<'_>) -> String {
    let h = input.history;
    let bands = fault_bands(h);
    let t_end = end_time(h);
    let (word, class) = overall(input);
    let test = input.meta.test_name(h).unwrap_or_else(|| "history".into());
    let data = timeline_json(h, &marked_ops(input), &bands, &Limits::default());
    let mut out = String::with_capacity(data.len() + (1 << 20));
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} {}: faultline report</title><style>{CSS}</style></head>\
         <body class=\"verdict-{class}\">",
        html(&test),
        word,
    );
    out.push_str(&header(input, &test, word, class));
    out.push_str("<main>");
    out.push_str(&banners(input));
    out.push_str(&summary::summary_section(input, t_end));
    out.push_str(&anomalies::anomalies_section(input, &bands, t_end));
    out.push_str(&timeline_section(h.ops.len(), &bands, t_end));
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

/// The sticky header: the test, its verdict, and a link to each section
/// (with the number of anomalies, so "is it red and why" is one glance).
fn header(input: &ReportInput<'_>, test: &str, word: &str, class: &str) -> String {
    let found: usize = input.verdicts.values().map(|v| v.anomalies_found()).sum();
    let links = [
        ("summary", "Summary".to_owned()),
        ("anomalies", format!("Anomalies <span class=\"count\">{found}</span>")),
        ("timeline", "Timeline".to_owned()),
        ("plots", "Plots".to_owned()),
        ("nodes", "Nodes".to_owned()),
    ];
    let mut out = format!(
        "<header id=\"top\"><h1>{} <span class=\"verdict {class}\" id=\"verdict\">{word}</span></h1>\
         <nav id=\"nav\" aria-label=\"sections\">",
        html(test)
    );
    for (id, text) in links {
        let _ = write!(out, "<a href=\"#{id}\">{text}</a>");
    }
    out.push_str("</nav></header>");
    out
}

/// Warnings that change how every verdict reads: the run was stopped
/// early, or a fault could not be applied or healed.
fn banners(input: &ReportInput<'_>) -> String {
    let mut out = String::new();
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

/// The timeline's frame; the script draws it from the embedded data. The
/// legends and the list of faults are plain HTML, readable without script.
fn timeline_section(ops: usize, bands: &[FaultBand], t_end: u64) -> String {
    format!(
        "<section id=\"timeline\"><h2>Timeline</h2>\
         <p class=\"muted\">{ops} operations, one lane per process (processes that never overlap share one, \
         labelled on the left). Wheel or +/− to zoom, drag to pan, hover for an operation; an anomaly's \
         links zoom to its operations.</p>{}\
         <div class=\"controls\"><button type=\"button\" id=\"tl-in\">+</button>\
         <button type=\"button\" id=\"tl-out\">−</button><button type=\"button\" id=\"tl-reset\">whole test</button>\
         <span id=\"tl-range\"></span></div>\
         <div id=\"tl-wrap\"><canvas id=\"tl-canvas\" width=\"900\" height=\"200\"></canvas>\
         <div id=\"tl-bands\"></div><div id=\"tl-tip\" hidden></div></div>\
         <noscript><p class=\"muted\">The timeline is drawn by the page's script; the faults are listed below.</p></noscript>\
         <p id=\"tl-info\" class=\"muted\"></p>{}</section>",
        legend::timeline_legend(bands),
        legend::fault_list(bands, t_end)
    )
}

fn plots_section(input: &ReportInput<'_>, bands: &[FaultBand], t_end: u64) -> String {
    let h = input.history;
    let mut out = String::from("<section id=\"plots\"><h2>Throughput and latency</h2>");
    out.push_str(&legend::plot_legend(bands));
    out.push_str("<h3>Throughput</h3>");
    out.push_str(&plots::throughput_svg(h, bands, t_end));
    for (f, svg) in plots::latency_svgs(h, bands, t_end) {
        let _ = write!(out, "<h3>{} latency</h3>{svg}", html(&f));
    }
    out.push_str("</section>");
    out
}
