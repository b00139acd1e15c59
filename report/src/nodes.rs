//! The nodes section: each node's role over time (a strip per node, the
//! epoch written where it changes), its replication lag as a line, and
//! links to its logs. Both charts have a time axis in seconds, the faults
//! shaded behind, and a legend (roles' colours, which line is which node).
//!
//! Samples come from the harness asking each node for its `status` during
//! the run; a node that did not answer shows as a gap, which is itself
//! evidence (killed, paused, cut off). At most [`SAMPLES_MAX`] samples are
//! drawn, and a role strip merges runs of equal samples, so the SVG grows
//! with role changes, not with sampling.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::escape::html;
use crate::faults::FaultBand;
use crate::plots::{band_rects, time_axis_between, time_ticks, y_label, y_ticks, Axis, ML, MR, W};
use crate::{NodeInfo, NodeSample};

/// Samples drawn; more are ignored.
pub const SAMPLES_MAX: usize = 100_000;
const ROW: f64 = 18.0;
const LAG_H: f64 = 120.0;
/// Room under a chart for the time axis and its title.
const AXIS_H: f64 = 30.0;
/// Narrowest role run the epoch is written in.
const EPOCH_LABEL_W: f64 = 44.0;

/// The section's HTML body.
pub fn nodes_html(nodes: &[NodeInfo], samples: &[NodeSample], bands: &[FaultBand], t_end: u64) -> String {
    let mut out = String::new();
    let samples = &samples[..samples.len().min(SAMPLES_MAX)];
    let mut by_node: BTreeMap<&str, Vec<&NodeSample>> = BTreeMap::new();
    for s in samples {
        by_node.entry(s.node.as_str()).or_default().push(s);
    }
    for v in by_node.values_mut() {
        v.sort_by_key(|s| s.time_ns);
    }
    if by_node.is_empty() {
        out.push_str("<p class=\"muted\">No status samples were recorded for this run.</p>");
    } else {
        let t_end = t_end.max(samples.iter().map(|s| s.time_ns).max().unwrap_or(0)).max(1);
        out.push_str(&roles_legend());
        out.push_str(&roles_svg(&by_node, bands, t_end));
        out.push_str(&lag_svg(&by_node, bands, t_end));
    }
    if !nodes.is_empty() {
        out.push_str("<table class=\"nodes\"><tr><th>node</th><th>last role</th><th>last epoch</th><th>logs</th></tr>");
        for n in nodes {
            let last = by_node.get(n.name.as_str()).and_then(|v| v.last());
            let role = last.and_then(|s| s.role.clone()).unwrap_or_else(|| "-".into());
            let epoch = last
                .and_then(|s| s.epoch)
                .map(|e| e.to_string())
                .unwrap_or_else(|| "-".into());
            let logs: Vec<String> = n
                .logs
                .iter()
                .map(|l| format!("<a href=\"{}\">{}</a>", html(l), html(l)))
                .collect();
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                html(&n.name),
                html(&role),
                html(&epoch),
                if logs.is_empty() {
                    "-".to_owned()
                } else {
                    logs.join(" ")
                }
            );
        }
        out.push_str("</table>");
    }
    out
}

fn x_at(t: u64, t_end: u64) -> f64 {
    time_axis(t_end).at(t as f64 / 1e9)
}

fn role_class(role: Option<&str>) -> &'static str {
    match role {
        Some("leader") => "leader",
        Some("follower") => "follower",
        Some("candidate") => "candidate",
        Some(_) => "replica",
        None => "silent",
    }
}

/// The roles' colours, named.
fn roles_legend() -> String {
    let keys: String = [
        ("leader", "leader"),
        ("follower", "follower"),
        ("candidate", "candidate"),
        ("replica", "replica"),
        ("silent", "no answer (killed, paused or cut off)"),
    ]
    .iter()
    .map(|(class, word)| format!("<span class=\"key\"><i class=\"swatch role-{class}\"></i>{word}</span>"))
    .collect();
    format!(
        "<div class=\"legend\" id=\"roles-legend\"><span class=\"legend-title\">role of each node over time \
         (epoch written where it changes):</span>{keys}<span class=\"legend-note\">shaded: faults</span></div>"
    )
}

fn time_axis(t_end: u64) -> Axis {
    time_axis_between(t_end as f64 / 1e9, ML, W - MR)
}

fn roles_svg(by_node: &BTreeMap<&str, Vec<&NodeSample>>, bands: &[FaultBand], t_end: u64) -> String {
    let strips = ROW * by_node.len() as f64 + 4.0;
    let h = strips + AXIS_H;
    let mut out = format!("<svg class=\"plot roles\" viewBox=\"0 0 {W} {h}\" role=\"img\" aria-label=\"node roles\">");
    band_rects(&mut out, bands, &time_axis(t_end), 0.0, strips, t_end);
    for (row, (node, samples)) in by_node.iter().enumerate() {
        let y = row as f64 * ROW + 2.0;
        let _ = write!(
            out,
            "<text class=\"tick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            ML - 4.0,
            y + 12.0,
            html(node)
        );
        role_runs(&mut out, samples, y, t_end);
    }
    time_ticks(&mut out, &time_axis(t_end), strips);
    out.push_str("</svg>");
    out
}

/// One node's strip: a rectangle per run of equal (role, epoch) samples,
/// the epoch written in it where it changes and there is room.
fn role_runs(out: &mut String, samples: &[&NodeSample], y: f64, t_end: u64) {
    let mut i = 0;
    let mut last_epoch = None;
    while i < samples.len() {
        let s = samples[i];
        let mut j = i + 1;
        while j < samples.len() && samples[j].role == s.role && samples[j].epoch == s.epoch {
            j += 1;
        }
        let end = samples.get(j).map(|n| n.time_ns).unwrap_or(samples[j - 1].time_ns);
        let (x0, x1) = (x_at(s.time_ns, t_end), x_at(end, t_end));
        let what = format!(
            "{} epoch {}",
            s.role.as_deref().unwrap_or("no answer"),
            s.epoch.map(|e| e.to_string()).unwrap_or_else(|| "?".into())
        );
        let _ = write!(
            out,
            "<rect class=\"role {}\" x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{}\"><title>{}</title></rect>",
            role_class(s.role.as_deref()),
            (x1 - x0).max(1.0),
            ROW - 4.0,
            html(&what)
        );
        if s.epoch.is_some() && s.epoch != last_epoch && x1 - x0 >= EPOCH_LABEL_W {
            let _ = write!(
                out,
                "<text class=\"epoch\" x=\"{:.1}\" y=\"{:.1}\">epoch {}</text>",
                x0 + 3.0,
                y + 10.5,
                s.epoch.unwrap_or(0)
            );
            last_epoch = s.epoch;
        }
        i = j;
    }
}

/// Which node each lag line is, by colour.
fn lag_legend(by_node: &BTreeMap<&str, Vec<&NodeSample>>) -> String {
    let keys: String = by_node
        .keys()
        .enumerate()
        .map(|(k, node)| {
            format!(
                "<span class=\"key\"><i class=\"swatch node{}\"></i>{}</span>",
                k % 6,
                html(node)
            )
        })
        .collect();
    format!(
        "<div class=\"legend\" id=\"lag-legend\"><span class=\"legend-title\">replication lag, in log entries \
         behind the leader:</span>{keys}</div>"
    )
}

fn lag_svg(by_node: &BTreeMap<&str, Vec<&NodeSample>>, bands: &[FaultBand], t_end: u64) -> String {
    let max_lag = by_node.values().flatten().filter_map(|s| s.lag).max();
    let Some(max_lag) = max_lag else {
        return String::new();
    };
    let y = Axis {
        lo: 0.0,
        hi: max_lag.max(1) as f64,
        log: false,
        px_lo: LAG_H,
        px_hi: 8.0,
    };
    let mut out = lag_legend(by_node);
    let _ = write!(
        out,
        "<svg class=\"plot lag\" viewBox=\"0 0 {W} {}\" role=\"img\" aria-label=\"replication lag\">",
        LAG_H + AXIS_H
    );
    band_rects(&mut out, bands, &time_axis(t_end), 0.0, LAG_H, t_end);
    y_ticks(&mut out, &y, 4);
    let _ = write!(out, "<path class=\"axis\" d=\"M{ML} 8V{LAG_H}\"/>");
    y_label(&mut out, "lag (entries)", LAG_H / 2.0);
    for (k, (node, samples)) in by_node.iter().enumerate() {
        let pts: Vec<String> = samples
            .iter()
            .filter_map(|s| s.lag.map(|l| (s.time_ns, l)))
            .map(|(t, l)| format!("{:.1},{:.1}", x_at(t, t_end), y.at(l as f64)))
            .collect();
        let _ = write!(
            out,
            "<polyline class=\"line node{}\" points=\"{}\"><title>{} lag</title></polyline>",
            k % 6,
            pts.join(" "),
            html(node)
        );
    }
    time_ticks(&mut out, &time_axis(t_end), LAG_H);
    out.push_str("</svg>");
    out
}
