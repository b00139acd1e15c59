//! Latency and throughput over time as inline SVG, with the nemesis's
//! faults as shaded bands behind the data.
//!
//! The plots must stay small at a million operations, so no plot emits an
//! element per operation: latency points are snapped to a grid of pixels
//! and each occupied pixel is one segment of a single `<path>` per outcome
//! (a pixel holding a thousand points costs what one point costs), and
//! throughput is one polyline per outcome over at most [`BUCKETS_MAX`]
//! time buckets. The output is bounded by the plot's pixel count, not by
//! the history.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;

use faultline_histories::{History, Outcome};

use crate::escape::html;
use crate::faults::FaultBand;
use crate::legend::short_name;

/// Plot area, in SVG units (the nodes' charts share the width and the
/// side margins).
pub(crate) const W: f64 = 860.0;
const H: f64 = 220.0;
/// Margins: left (for the y labels), right, top (the legend), bottom (x labels).
pub(crate) const ML: f64 = 56.0;
pub(crate) const MR: f64 = 12.0;
const MT: f64 = 22.0;
const MB: f64 = 30.0;
/// Throughput buckets across the test.
pub const BUCKETS_MAX: usize = 300;
/// Operation types plotted; past it the rarest are left out.
pub const LATENCY_PLOTS_MAX: usize = 8;
/// Most dots per outcome in one latency plot.
pub const DOTS_MAX: usize = 12_000;
/// Time buckets of the quantile lines drawn past [`DOTS_MAX`].
const QUANTILE_BUCKETS: usize = 200;
/// Lowest latency shown, in ms (the log axis needs a floor).
const LATENCY_FLOOR_MS: f64 = 0.01;

/// Fault bands named in one plot; past it the rest are named on hover.
pub const BAND_NAMES_MAX: usize = 60;
/// Width of a band name's character, in SVG units (10 px system font).
const CHAR_W: f64 = 5.5;

/// The outcomes plotted, with their CSS classes.
const OUTCOMES: [(Outcome, &str); 3] = [(Outcome::Ok, "ok"), (Outcome::Fail, "fail"), (Outcome::Info, "info")];

/// A linear or log scale from data to SVG units.
pub(crate) struct Axis {
    pub(crate) lo: f64,
    pub(crate) hi: f64,
    pub(crate) log: bool,
    pub(crate) px_lo: f64,
    pub(crate) px_hi: f64,
}

impl Axis {
    pub(crate) fn at(&self, v: f64) -> f64 {
        let (v, lo, hi) = if self.log {
            (v.max(self.lo).log10(), self.lo.log10(), self.hi.log10())
        } else {
            (v, self.lo, self.hi)
        };
        let span = if hi > lo { hi - lo } else { 1.0 };
        self.px_lo + (v - lo) / span * (self.px_hi - self.px_lo)
    }

    /// Round values to label, about `n` of them.
    pub(crate) fn ticks(&self, n: usize) -> Vec<f64> {
        if self.log {
            let mut t = 10f64.powf(self.lo.log10().floor());
            let mut out = Vec::new();
            while t <= self.hi * 1.0001 && out.len() < 16 {
                if t >= self.lo * 0.9999 {
                    out.push(t);
                }
                t *= 10.0;
            }
            return out;
        }
        let span = (self.hi - self.lo).max(1e-9);
        let raw = span / n.max(1) as f64;
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|s| *s >= raw)
            .unwrap_or(raw);
        let mut t = (self.lo / step).ceil() * step;
        let mut out = Vec::new();
        while t <= self.hi + step * 1e-6 && out.len() < 32 {
            out.push(t);
            t += step;
        }
        out
    }
}

pub(crate) fn fmt_num(v: f64) -> String {
    if v >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_owned()
    }
}

fn time_axis(t_end_s: f64) -> Axis {
    time_axis_between(t_end_s, ML, W - MR)
}

/// Seconds from 0 to `t_end_s` across `[px_lo, px_hi]`.
pub(crate) fn time_axis_between(t_end_s: f64, px_lo: f64, px_hi: f64) -> Axis {
    Axis {
        lo: 0.0,
        hi: t_end_s.max(1e-3),
        log: false,
        px_lo,
        px_hi,
    }
}

/// The time axis at height `y`: a line, round ticks in seconds, and its
/// title with the unit.
pub(crate) fn time_ticks(out: &mut String, x: &Axis, y: f64) {
    let _ = write!(out, "<path class=\"axis\" d=\"M{} {y}H{}\"/>", x.px_lo, x.px_hi);
    for t in x.ticks(10) {
        let _ = write!(
            out,
            "<text class=\"tick\" x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            x.at(t),
            y + 12.0,
            fmt_num(t)
        );
    }
    let _ = write!(
        out,
        "<text class=\"label\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">time (s)</text>",
        (x.px_lo + x.px_hi) / 2.0,
        y + 24.0
    );
}

/// Each fault band's short name at its top left, where it fits: beside
/// the band when the band is narrow, skipped when it would overlap the
/// previous name, at most [`BAND_NAMES_MAX`] (each band's title names it
/// on hover regardless).
pub(crate) fn band_names(out: &mut String, bands: &[FaultBand], x: &Axis, y: f64, t_end: u64) {
    let mut free_from = f64::MIN;
    let mut named = 0;
    for b in bands {
        let x0 = x.at(b.start_ns as f64 / 1e9) + 2.0;
        if x0 < free_from || named >= BAND_NAMES_MAX || b.end_or(t_end) < b.start_ns {
            continue;
        }
        let name = short_name(&b.label);
        let _ = write!(
            out,
            "<text class=\"band-name band-name-{}\" x=\"{x0:.1}\" y=\"{y:.1}\">{}</text>",
            b.class(),
            html(&name)
        );
        free_from = x0 + name.chars().count() as f64 * CHAR_W + 6.0;
        named += 1;
    }
}

/// Each fault band as a shaded rectangle from `y_top` down `h`, titled
/// with its fault (the latency and throughput plots and the nodes' charts
/// draw them alike).
pub(crate) fn band_rects(out: &mut String, bands: &[FaultBand], x: &Axis, y_top: f64, h: f64, t_end: u64) {
    for b in bands {
        let x0 = x.at(b.start_ns as f64 / 1e9);
        let x1 = x.at(b.end_or(t_end) as f64 / 1e9).max(x0 + 1.0);
        let _ = write!(
            out,
            "<rect class=\"band band-{}\" x=\"{x0:.1}\" y=\"{y_top}\" width=\"{:.1}\" height=\"{h}\"><title>{}</title></rect>",
            b.class(),
            x1 - x0,
            html(&b.label)
        );
    }
}

/// About `n` round values of `y`, each a grid line across the plot with
/// its label in the left margin.
pub(crate) fn y_ticks(out: &mut String, y: &Axis, n: usize) {
    for t in y.ticks(n) {
        let py = y.at(t);
        let _ = write!(
            out,
            "<path class=\"grid\" d=\"M{ML} {py:.1}H{}\"/><text class=\"tick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - MR,
            ML - 4.0,
            py + 3.0,
            fmt_num(t)
        );
    }
}

/// The y axis's title, turned to read upwards, centred on `mid`.
pub(crate) fn y_label(out: &mut String, label: &str, mid: f64) {
    let _ = write!(
        out,
        "<text class=\"label\" x=\"12\" y=\"{mid}\" transform=\"rotate(-90 12 {mid})\" text-anchor=\"middle\">{}</text>",
        html(label)
    );
}

/// Opens an SVG with the fault bands and both axes drawn.
fn frame(out: &mut String, title: &str, x: &Axis, y: &Axis, y_label_text: &str, bands: &[FaultBand], t_end: u64) {
    let _ = write!(
        out,
        "<svg class=\"plot\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\"><title>{}</title>",
        html(title),
        html(title)
    );
    band_rects(out, bands, x, MT, H - MT - MB, t_end);
    let _ = write!(out, "<path class=\"axis\" d=\"M{ML} {MT}V{}H{}\"/>", H - MB, W - MR);
    for t in x.ticks(10) {
        let px = x.at(t);
        let _ = write!(
            out,
            "<text class=\"tick\" x=\"{px:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            H - MB + 14.0,
            fmt_num(t)
        );
    }
    y_ticks(out, y, 5);
    let _ = write!(
        out,
        "<text class=\"label\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">time (s)</text>",
        (ML + W - MR) / 2.0,
        H - 2.0
    );
    y_label(out, y_label_text, (MT + H - MB) / 2.0);
}

/// One latency plot per operation type (read, write, ...), most frequent
/// first, each with ok, fail and info points.
pub fn latency_svgs(history: &History, bands: &[FaultBand], t_end: u64) -> Vec<(String, String)> {
    let mut by_f: BTreeMap<&str, usize> = BTreeMap::new();
    for op in history.ops.iter().filter(|o| o.complete_time.is_some()) {
        *by_f.entry(op.f.as_str()).or_default() += 1;
    }
    let mut fs: Vec<(&str, usize)> = by_f.into_iter().collect();
    fs.sort_by_key(|(f, n)| (std::cmp::Reverse(*n), *f));
    fs.truncate(LATENCY_PLOTS_MAX);
    fs.into_iter()
        .map(|(f, _)| (f.to_owned(), latency_svg(history, f, bands, t_end)))
        .collect()
}

fn latency_ms(op: &faultline_histories::Op) -> Option<f64> {
    op.complete_time
        .map(|c| (c.saturating_sub(op.invoke_time) as f64 / 1e6).max(LATENCY_FLOOR_MS))
}

fn latency_svg(history: &History, f: &str, bands: &[FaultBand], t_end: u64) -> String {
    let ops = || history.ops.iter().filter(move |o| o.f.as_str() == f);
    let max_ms = ops().filter_map(latency_ms).fold(LATENCY_FLOOR_MS * 10.0, f64::max);
    let min_ms = ops().filter_map(latency_ms).fold(max_ms, f64::min);
    let x = time_axis(t_end as f64 / 1e9);
    let y = Axis {
        lo: 10f64.powf(min_ms.log10().floor()),
        hi: 10f64.powf(max_ms.log10().ceil()),
        log: true,
        px_lo: H - MB,
        px_hi: MT,
    };
    let mut out = String::new();
    frame(&mut out, &format!("{f} latency"), &x, &y, "latency (ms)", bands, t_end);
    for (outcome, class) in OUTCOMES {
        let pts: Vec<(f64, f64)> = ops()
            .filter(|o| o.outcome == outcome)
            .filter_map(|op| latency_ms(op).map(|ms| (x.at(op.invoke_time as f64 / 1e9), y.at(ms))))
            .collect();
        out.push_str(&dots(&pts, class));
    }
    if out.contains(" p99\"") {
        let _ = write!(
            out,
            "<text class=\"tick\" x=\"{}\" y=\"{}\">too many points: median (solid), p99 (dashed), max (dotted)</text>",
            ML,
            MT - 8.0
        );
    }
    band_names(&mut out, bands, &x, MT + 9.0, t_end);
    legend(&mut out);
    out.push_str("</svg>");
    out
}

/// Points as one path of dots, one dot per occupied pixel cell, when at
/// most [`DOTS_MAX`] cells are occupied; past that a scatter is a solid
/// block that hides everything, so the outcome is drawn as quantile lines
/// instead.
fn dots(pts: &[(f64, f64)], class: &str) -> String {
    let mut seen: HashSet<(i32, i32)> = HashSet::new();
    for (px, py) in pts {
        seen.insert((px.round() as i32, py.round() as i32));
        if seen.len() > DOTS_MAX {
            return quantile_lines(pts, class);
        }
    }
    if seen.is_empty() {
        return String::new();
    }
    let mut cells: Vec<(i32, i32)> = seen.into_iter().collect();
    cells.sort_unstable();
    let mut d = String::with_capacity(cells.len() * 10);
    for (cx, cy) in cells {
        let _ = write!(d, "M{cx} {cy}h0");
    }
    format!("<path class=\"dots {class}\" d=\"{d}\"><title>{class}</title></path>")
}

/// The median, 99th percentile and maximum latency of each time bucket,
/// as three lines. Points are `(x, y)` in SVG units, where a smaller `y`
/// is a longer latency.
fn quantile_lines(pts: &[(f64, f64)], class: &str) -> String {
    let (x_lo, x_hi) = (ML, W - MR);
    let width = (x_hi - x_lo) / QUANTILE_BUCKETS as f64;
    let mut buckets: Vec<Vec<f64>> = vec![Vec::new(); QUANTILE_BUCKETS];
    for (px, py) in pts {
        let b = (((px - x_lo) / width) as usize).min(QUANTILE_BUCKETS - 1);
        buckets[b].push(*py);
    }
    let mut lines = [String::new(), String::new(), String::new()];
    for (b, ys) in buckets.iter_mut().enumerate().filter(|(_, ys)| !ys.is_empty()) {
        // Larger y is lower on screen: sort descending so quantiles read upward.
        ys.sort_unstable_by(|a, b| b.total_cmp(a));
        let q = |f: f64| ys[((ys.len() - 1) as f64 * f).round() as usize];
        let x = x_lo + (b as f64 + 0.5) * width;
        for (line, y) in lines.iter_mut().zip([q(0.5), q(0.99), q(1.0)]) {
            let _ = write!(line, "{},{} ", fmt_px(x), fmt_px(y));
        }
    }
    ["p50", "p99", "max"]
        .iter()
        .zip(&lines)
        .map(|(name, pts)| {
            format!(
                "<polyline class=\"line {class} {name}\" points=\"{}\"><title>{class} {name}</title></polyline>",
                pts.trim_end()
            )
        })
        .collect()
}

/// A coordinate with at most one decimal, and none when whole.
fn fmt_px(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r == r.trunc() {
        format!("{}", r as i64)
    } else {
        format!("{r:.1}")
    }
}

fn legend(out: &mut String) {
    for (i, (_, class)) in OUTCOMES.iter().enumerate() {
        let lx = W - MR - 150.0 + i as f64 * 50.0;
        let _ = write!(
            out,
            "<rect class=\"key {class}\" x=\"{lx}\" y=\"{}\" width=\"8\" height=\"8\"/><text class=\"tick\" x=\"{}\" y=\"{}\">{class}</text>",
            MT - 16.0,
            lx + 11.0,
            MT - 8.0
        );
    }
}

/// Completed operations per second, per outcome.
pub fn throughput_svg(history: &History, bands: &[FaultBand], t_end: u64) -> String {
    let t_end_s = t_end as f64 / 1e9;
    // Four buckets a second, but never fewer than 20, so a short test still draws lines.
    let buckets = BUCKETS_MAX.min(((t_end_s * 4.0).ceil() as usize).max(20));
    let width_s = (t_end_s / buckets as f64).max(1e-6);
    let mut counts = vec![[0u64; 3]; buckets];
    for op in &history.ops {
        let (Some(c), Some(k)) = (op.complete_time, OUTCOMES.iter().position(|(o, _)| *o == op.outcome)) else {
            continue;
        };
        let b = ((c as f64 / 1e9 / width_s) as usize).min(buckets - 1);
        counts[b][k] += 1;
    }
    let peak = counts.iter().flat_map(|c| c.iter()).copied().max().unwrap_or(0) as f64 / width_s;
    let x = time_axis(t_end_s);
    let y = Axis {
        lo: 0.0,
        hi: peak.max(1.0) * 1.05,
        log: false,
        px_lo: H - MB,
        px_hi: MT,
    };
    let mut out = String::new();
    frame(&mut out, "throughput", &x, &y, "ops/s", bands, t_end);
    for (k, (_, class)) in OUTCOMES.iter().enumerate() {
        let mut pts = String::new();
        for (b, c) in counts.iter().enumerate() {
            let px = x.at((b as f64 + 0.5) * width_s);
            let py = y.at(c[k] as f64 / width_s);
            let _ = write!(pts, "{px:.1},{py:.1} ");
        }
        let _ = write!(out, "<polyline class=\"line {class}\" points=\"{}\"/>", pts.trim_end());
    }
    band_names(&mut out, bands, &x, MT + 9.0, t_end);
    legend(&mut out);
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_histories::{Event, EventType, Process, F};
    use serde_json::json;

    fn history(n: u64) -> History {
        let mut evs = Vec::new();
        for k in 0..n {
            let (p, t) = (k % 4, k * 1_000_000);
            let done = if k % 10 == 0 { EventType::Fail } else { EventType::Ok };
            evs.push(Event::new(
                2 * k,
                t,
                Process::Client(p),
                EventType::Invoke,
                F::Read,
                json!(null),
            ));
            evs.push(Event::new(
                2 * k + 1,
                t + (k % 97) * 10_000,
                Process::Client(p),
                done,
                F::Read,
                json!(1),
            ));
        }
        History::from_events(evs).unwrap()
    }

    #[test]
    fn plot_size_is_bounded_by_pixels_not_by_operations() {
        let small = history(1_000);
        let big = history(200_000);
        let s = latency_svgs(&small, &[], 1_000_000_000)[0].1.len();
        let b = latency_svgs(&big, &[], 200_000_000_000)[0].1.len();
        assert!(b < 500_000, "{b} bytes");
        assert!(b < s * 40, "small {s} big {b}");
        let big_svg = &latency_svgs(&big, &[], 200_000_000_000)[0].1;
        assert!(big_svg.contains("line ok p99"), "dense outcomes become quantile lines");
        assert!(
            !s_has_quantiles(&latency_svgs(&small, &[], 1_000_000_000)[0].1),
            "sparse ones stay dots"
        );
        let t = throughput_svg(&big, &[], 200_000_000_000);
        assert!(t.contains("class=\"line fail\""));
        assert!(t.len() < 50_000, "{}", t.len());
    }

    fn s_has_quantiles(svg: &str) -> bool {
        svg.contains(" p99\"")
    }

    #[test]
    fn ticks_are_round_and_inside_the_range() {
        let a = Axis {
            lo: 0.0,
            hi: 37.0,
            log: false,
            px_lo: 0.0,
            px_hi: 100.0,
        };
        assert_eq!(a.ticks(4), vec![0.0, 10.0, 20.0, 30.0]);
        let l = Axis {
            lo: 0.1,
            hi: 100.0,
            log: true,
            px_lo: 0.0,
            px_hi: 100.0,
        };
        assert_eq!(l.ticks(5).len(), 4);
    }
}
