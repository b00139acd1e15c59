//! A transactional anomaly's cycle, drawn: transactions as boxes on a
//! circle, each dependency an arrow labelled with its kind and key, and
//! below it every edge as the sentence that proves it.
//!
//! The transactional checker puts the cycle in the anomaly's
//! `details.cycle` (steps with `from`, `to`, `edge`, `key`, `explanation`);
//! anything else draws nothing, so this section stands on its own beside
//! whatever layout the rest of the report has.

use std::fmt::Write as _;

use serde_json::Value;

use crate::escape::html;

/// Cycles longer than this are listed, not drawn: a drawing of more
/// transactions is no easier to follow than the list.
const DRAWN_MAX: usize = 12;

/// One edge of the cycle.
struct Step<'a> {
    from: &'a str,
    to: &'a str,
    edge: &'a str,
    key: Option<&'a str>,
    explanation: &'a str,
}

fn text<'a>(s: &'a Value, k: &str) -> &'a str {
    s.get(k).and_then(Value::as_str).unwrap_or("?")
}

fn steps(details: &Value) -> Vec<Step<'_>> {
    let Some(cycle) = details.get("cycle").and_then(Value::as_array) else {
        return Vec::new();
    };
    cycle
        .iter()
        .map(|s| Step {
            from: text(s, "from"),
            to: text(s, "to"),
            edge: text(s, "edge"),
            key: s.get("key").and_then(Value::as_str),
            explanation: text(s, "explanation"),
        })
        .collect()
}

/// The cycle of an anomaly's `details` as a figure and a list; empty when
/// the anomaly has no cycle.
pub fn cycle_html(details: &Value) -> String {
    let steps = steps(details);
    if steps.is_empty() {
        return String::new();
    }
    let mut out = String::from("<figure class=\"cycle\">");
    if steps.len() <= DRAWN_MAX {
        out.push_str(&svg(&steps));
    }
    out.push_str("<figcaption><ol class=\"cycle-steps\">");
    for s in &steps {
        let _ = write!(
            out,
            "<li><b>{} &rarr;<sub>{}</sub> {}</b>: {}</li>",
            html(s.from),
            html(s.edge),
            html(s.to),
            html(s.explanation)
        );
    }
    out.push_str("</ol></figcaption></figure>");
    out
}

/// The stroke of an edge kind: anti-dependencies dashed, as Elle draws them.
fn stroke(edge: &str) -> (&'static str, &'static str) {
    match edge {
        "rw" => ("#c0392b", "6 4"),
        "wr" => ("#2464b4", "none"),
        "ww" => ("#222222", "none"),
        _ => ("#888888", "2 3"),
    }
}

fn svg(steps: &[Step<'_>]) -> String {
    let n = steps.len() as f64;
    let r = 70.0 + 22.0 * n;
    let (w, h) = (2.0 * r + 160.0, 2.0 * r + 80.0);
    let (cx, cy) = (w / 2.0, h / 2.0);
    let at = |i: usize| {
        let a = std::f64::consts::TAU * i as f64 / n - std::f64::consts::FRAC_PI_2;
        (cx + r * a.cos(), cy + r * a.sin())
    };
    let mut out = format!(
        "<svg class=\"cycle-graph\" viewBox=\"0 0 {w:.0} {h:.0}\" width=\"{w:.0}\" height=\"{h:.0}\" \
         role=\"img\" aria-label=\"dependency cycle\"><defs><marker id=\"cycle-arrow\" viewBox=\"0 0 10 10\" \
         refX=\"10\" refY=\"5\" markerWidth=\"8\" markerHeight=\"8\" orient=\"auto-start-reverse\">\
         <path d=\"M0,0 L10,5 L0,10 z\" fill=\"context-stroke\"/></marker></defs>"
    );
    for (i, s) in steps.iter().enumerate() {
        edge_svg(&mut out, at(i), at((i + 1) % steps.len()), s);
    }
    for (i, s) in steps.iter().enumerate() {
        let (x, y) = at(i);
        let _ = write!(
            out,
            "<g class=\"txn\"><rect x=\"{:.1}\" y=\"{:.1}\" width=\"84\" height=\"28\" rx=\"4\" fill=\"#fff\" \
             stroke=\"#333\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"13\">{}</text></g>",
            x - 42.0,
            y - 14.0,
            y + 5.0,
            html(s.from)
        );
    }
    out.push_str("</svg>");
    out
}

/// A curved arrow from box `a` to box `b`, bent to its left so the two
/// arrows between one pair of transactions do not overlap.
fn edge_svg(out: &mut String, a: (f64, f64), b: (f64, f64), s: &Step<'_>) {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len = (dx * dx + dy * dy).sqrt().max(1.0);
    let (ux, uy) = (dx / len, dy / len);
    // Start and end outside the boxes.
    let (sx, sy) = (a.0 + ux * 44.0, a.1 + uy * 18.0);
    let (ex, ey) = (b.0 - ux * 44.0, b.1 - uy * 18.0);
    let bend = 0.18 * len;
    let (mx, my) = ((sx + ex) / 2.0 + uy * bend, (sy + ey) / 2.0 - ux * bend);
    let (color, dash) = stroke(s.edge);
    let label = match s.key {
        Some(k) => format!("{} {}", s.edge, k),
        None => s.edge.to_owned(),
    };
    let _ = write!(
        out,
        "<path d=\"M{sx:.1},{sy:.1} Q{mx:.1},{my:.1} {ex:.1},{ey:.1}\" fill=\"none\" stroke=\"{color}\" \
         stroke-width=\"1.8\" stroke-dasharray=\"{dash}\" marker-end=\"url(#cycle-arrow)\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"12\" fill=\"{color}\">{}</text>",
        (sx + 2.0 * mx + ex) / 4.0 + uy * 10.0,
        (sy + 2.0 * my + ey) / 4.0 - ux * 10.0,
        html(&label)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_cycle_is_drawn_with_a_box_per_transaction_and_a_labelled_arrow_per_edge() {
        let details = json!({"cycle": [
            {"from": "T1", "to": "T2", "edge": "rw", "key": "x", "explanation": "T1 read x = [] <before> T2"},
            {"from": "T2", "to": "T1", "edge": "wr", "key": "y", "explanation": "T1 read y = [1] after T2 appended 1"},
        ]});
        let out = cycle_html(&details);
        assert_eq!(out.matches("<rect").count(), 2);
        assert_eq!(out.matches("marker-end=").count(), 2);
        assert!(out.contains(">rw x</text>") && out.contains(">wr y</text>"), "{out}");
        assert!(out.contains("&lt;before&gt;"), "explanations are escaped: {out}");
        assert!(out.contains("stroke-dasharray=\"6 4\""), "rw edges are dashed");
    }

    #[test]
    fn no_cycle_draws_nothing_and_a_long_one_is_listed_only() {
        assert_eq!(cycle_html(&Value::Null), "");
        assert_eq!(cycle_html(&json!({"txns": ["T1"]})), "");
        let long: Vec<Value> = (0..20)
            .map(|i| json!({"from": format!("T{i}"), "to": format!("T{}", (i + 1) % 20), "edge": "ww", "explanation": "e"}))
            .collect();
        let out = cycle_html(&json!({ "cycle": long }));
        assert!(!out.contains("<svg") && out.matches("<li>").count() == 20, "{out}");
    }
}
