//! Legends, in plain HTML so they read without script: what the timeline's
//! colours mean (each outcome, an anomaly's operations, each kind of fault
//! the run had), the fault kinds shaded behind the plots, and the list of
//! the run's faults with their times. Also the short name a fault band is
//! labelled with where it is drawn.

use std::collections::BTreeSet;
use std::fmt::Write;

use faultline_checkers::verdict::seconds;

use crate::escape::{html, truncate};
use crate::faults::FaultBand;

/// Faults listed unfolded; a run with more lists them folded.
const FAULTS_LISTED_OPEN_MAX: usize = 12;
/// Faults listed at all (the history may hold thousands).
const FAULTS_LISTED_MAX: usize = 1_000;
/// Characters of a band's short name.
const SHORT_CHARS_MAX: usize = 28;

/// The name written in or beside a band: its label up to the first JSON
/// value (`partition {"cuts":...}` is `partition`, `kill n1` stays whole).
pub fn short_name(label: &str) -> String {
    let cut = label.find([' ', '\t']).filter(|_| label.contains(['{', '[']));
    let head = match cut {
        Some(_) => label.split(['{', '[']).next().unwrap_or(label).trim_end(),
        None => label,
    };
    truncate(if head.is_empty() { label } else { head }, SHORT_CHARS_MAX)
}

/// The fault kinds present, in a stable order, each with its swatch.
fn fault_keys(bands: &[FaultBand]) -> String {
    let kinds: BTreeSet<&'static str> = bands.iter().map(|b| b.class()).collect();
    kinds
        .iter()
        .map(|k| format!("<span class=\"key\"><i class=\"swatch band-{k}\"></i>{k}</span>"))
        .collect()
}

/// The timeline's legend: outcomes, the anomaly outline, and fault kinds.
pub fn timeline_legend(bands: &[FaultBand]) -> String {
    let mut out = String::from(
        "<div class=\"legend\" id=\"tl-legend\"><span class=\"legend-title\">operations:</span>\
         <span class=\"key\"><i class=\"swatch ok\"></i>ok</span>\
         <span class=\"key\"><i class=\"swatch fail\"></i>fail (not applied)</span>\
         <span class=\"key\"><i class=\"swatch info\"></i>info (unknown)</span>\
         <span class=\"key\"><i class=\"swatch pending\"></i>never completed</span>\
         <span class=\"key\" id=\"marked-ops\"><i class=\"swatch marked\"></i>named by an anomaly</span>",
    );
    if !bands.is_empty() {
        let _ = write!(
            out,
            "<span class=\"legend-title\">faults (named in the strip above the lanes):</span>{}",
            fault_keys(bands)
        );
    }
    out.push_str("</div>");
    out
}

/// The legend above the plots: outcomes and the fault kinds shaded.
pub fn plot_legend(bands: &[FaultBand]) -> String {
    let mut out = String::from(
        "<div class=\"legend\" id=\"plot-legend\"><span class=\"legend-title\">outcomes:</span>\
         <span class=\"key\"><i class=\"swatch ok\"></i>ok</span>\
         <span class=\"key\"><i class=\"swatch fail\"></i>fail</span>\
         <span class=\"key\"><i class=\"swatch info\"></i>info</span>",
    );
    if !bands.is_empty() {
        let _ = write!(
            out,
            "<span class=\"legend-title\">shaded, named at the top: faults</span>{}",
            fault_keys(bands)
        );
    }
    out.push_str(
        "<span class=\"legend-note\">time in seconds since the test started; latency on a log scale</span></div>",
    );
    out
}

/// The run's faults with their times: open when there are few, folded
/// when there are many.
pub fn fault_list(bands: &[FaultBand], t_end: u64) -> String {
    if bands.is_empty() {
        return "<p class=\"muted\" id=\"fault-list\">No fault was injected.</p>".to_owned();
    }
    let open = if bands.len() <= FAULTS_LISTED_OPEN_MAX {
        " open"
    } else {
        ""
    };
    let mut out = format!(
        "<details id=\"fault-list\"{open}><summary>{} faults</summary><ul class=\"faults\">",
        bands.len()
    );
    for b in bands.iter().take(FAULTS_LISTED_MAX) {
        let end = match b.end_ns {
            Some(e) if e == b.start_ns => "instant".to_owned(),
            Some(e) => format!("to {}", seconds(e)),
            None => format!("to the end ({}), never healed", seconds(t_end)),
        };
        let name = short_name(&b.label);
        // The whole label only where the name shortened it (the cut links).
        let whole = if name == b.label {
            String::new()
        } else {
            format!(" <span class=\"muted\">{}</span>", html(&b.label))
        };
        let _ = write!(
            out,
            "<li><i class=\"swatch band-{}\"></i><b>{}</b> from {} {end}{whole}</li>",
            b.class(),
            html(&name),
            seconds(b.start_ns),
        );
    }
    if bands.len() > FAULTS_LISTED_MAX {
        let _ = write!(out, "<li>… and {} more</li>", bands.len() - FAULTS_LISTED_MAX);
    }
    out.push_str("</ul></details>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_band_is_named_by_its_fault_not_its_json() {
        assert_eq!(short_name(r#"partition {"cuts":[["n1","n3"]]}"#), "partition");
        assert_eq!(short_name("kill n1"), "kill n1");
        assert_eq!(
            short_name("start-partition FAILED: nft exited 1"),
            "start-partition FAILED: nft …"
        );
        assert_eq!(short_name(r#"clock-bump 5"#), "clock-bump 5");
        assert_eq!(short_name("{\"x\":1}"), "{\"x\":1}");
    }
}
