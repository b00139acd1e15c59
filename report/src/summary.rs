//! The summary: the verdict of each checker (linking to its anomalies),
//! the settings that say what was tested with the command that reruns it,
//! the files of the run and its warnings, and every other setting folded
//! in a `<details>` a reader opens only when they need it.

use std::fmt::Write;

use faultline_checkers::verdict::seconds;

use crate::anomalies::group_id;
use crate::escape::html;
use crate::html::verdict_word;
use crate::ReportInput;

/// The whole section.
pub fn summary_section(input: &ReportInput<'_>, t_end: u64) -> String {
    let mut out = String::from("<section id=\"summary\"><h2>Summary</h2><div class=\"summary-grid\">");
    out.push_str(&verdicts_table(input));
    out.push_str(&key_settings(input, t_end));
    out.push_str("</div>");
    out.push_str(&rerun_files_warnings(input));
    out.push_str(&folded_settings(input));
    out.push_str("</section>");
    out
}

fn verdicts_table(input: &ReportInput<'_>) -> String {
    let mut out = String::from(
        "<table class=\"verdicts\"><tr><th>checker</th><th>verdict</th><th>anomalies</th>\
         <th>operations</th><th>time</th><th>note</th></tr>",
    );
    for (name, v) in input.verdicts {
        let (word, class) = match v.applies() {
            true => verdict_word(v.valid),
            // Not green: the checker looked at nothing.
            false => ("n/a", "unknown"),
        };
        let note = v.unknown_reason.as_deref().or(v.not_applicable_why()).unwrap_or("");
        let found = v.anomalies_found();
        let count = if v.anomalies.is_empty() {
            found.to_string()
        } else {
            format!("<a href=\"#{}\">{found}</a>", html(&group_id(name)))
        };
        let _ = write!(
            out,
            "<tr class=\"{class}\"><td>{}</td><td class=\"verdict {class}\">{word}</td><td>{count}</td><td>{}</td><td>{:.0} ms</td><td>{}</td></tr>",
            html(name),
            v.ops,
            v.elapsed_ms,
            html(note)
        );
    }
    if input.verdicts.is_empty() {
        out.push_str("<tr><td colspan=\"6\">No checker applied to this history.</td></tr>");
    }
    out.push_str("</table>");
    out
}

/// Test, seed, time, size of the history, the settings that matter, and
/// the checkers that judged it.
fn key_settings(input: &ReportInput<'_>, t_end: u64) -> String {
    let (h, m) = (input.history, input.meta);
    let mut rows: Vec<(String, String)> = Vec::new();
    if let Some(t) = m.test_name(h) {
        rows.push(("test".into(), t));
    }
    let seed = m.seed_of(h).map(|s| s.to_string());
    rows.push(("seed".into(), seed.unwrap_or_else(|| "not recorded".into())));
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
    rows.extend(m.settings.iter().cloned());
    if !input.verdicts.is_empty() {
        let names: Vec<&str> = input.verdicts.keys().map(String::as_str).collect();
        rows.push(("checkers".into(), names.join(", ")));
    }
    rows.push((
        "history".into(),
        format!(
            "{} operations, {} nemesis events, {} keys",
            h.ops.len(),
            h.nemesis.len(),
            h.keys.len()
        ),
    ));
    let mut out = String::from("<table class=\"settings\" id=\"settings\">");
    for (k, v) in rows {
        let _ = write!(out, "<tr><th>{}</th><td>{}</td></tr>", html(&k), html(&v));
    }
    out.push_str("</table>");
    out
}

fn rerun_files_warnings(input: &ReportInput<'_>) -> String {
    let (h, m) = (input.history, input.meta);
    let mut out = String::new();
    if let Some(r) = &m.rerun {
        let _ = write!(
            out,
            "<p class=\"rerun-label\">Rerun it:</p><pre class=\"rerun\"><code>{}</code></pre>",
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

/// Every other setting, closed until opened.
fn folded_settings(input: &ReportInput<'_>) -> String {
    let rows = &input.meta.settings_folded;
    if rows.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "<details id=\"settings-more\"><summary>all other settings ({})</summary><table class=\"settings\">",
        rows.len()
    );
    for (k, v) in rows {
        let _ = write!(out, "<tr><th>{}</th><td>{}</td></tr>", html(k), html(v));
    }
    out.push_str("</table></details>");
    out
}
