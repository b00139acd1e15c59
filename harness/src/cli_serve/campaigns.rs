//! The campaigns on `faultline serve`'s index: one row per campaign folder
//! (a folder holding `campaign.json`, written by `faultline campaign`),
//! newest first, with its file, shard, seed, how many expectations held
//! (or that it is still running), a link to each test's run where that run
//! is in this store, and links to `campaign.json` and `junit.xml`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use faultline_harness::run::campaign::record::CAMPAIGN_JSON;
use faultline_report::escape::html;
use serde_json::Value;

use super::{file_links, href, is_campaign, read_json, resolve, run_key, subdirs, Run, RUNS_LISTED_MAX};

/// Campaign folders, newest first: `Run`s whose `verdict` is the
/// `campaign.json` document.
fn campaigns(root: &Path) -> Vec<Run> {
    let mut out = Vec::new();
    for (test, tdir) in subdirs(root) {
        for (name, dir) in subdirs(&tdir) {
            if is_campaign(&dir) {
                let doc = read_json(&dir.join(CAMPAIGN_JSON));
                out.push(Run {
                    test: test.clone(),
                    name,
                    dir,
                    verdict: doc,
                });
            }
        }
    }
    out.sort_by(|a, b| run_key(&b.name).cmp(&run_key(&a.name)).then(a.test.cmp(&b.test)));
    out.truncate(RUNS_LISTED_MAX);
    out
}

/// The campaigns table: one row per campaign folder, newest first.
pub(super) fn section(root: &Path) -> String {
    let campaigns = campaigns(root);
    if campaigns.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "<h2>Campaigns</h2><p>{} campaigns, newest first.</p><table><tr><th>started</th><th>file</th>\
         <th>shard</th><th>seed</th><th>expectations</th><th>tests</th><th>files</th></tr>",
        campaigns.len()
    );
    for c in &campaigns {
        let doc = c.verdict.as_ref();
        let field = |k: &str| doc.and_then(|d| d.get(k)).map(json_text).unwrap_or_default();
        let (class, word) = campaign_outcome(doc);
        let _ =
            write!(
            out,
            "<tr class=\"campaign {class}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"v\">{word}</td>\
             <td>{}</td><td>{}</td></tr>",
            html(&c.name),
            html(&field("file")),
            html(&field("shard")),
            html(&field("seed")),
            campaign_test_links(root, doc),
            file_links(root, &c.dir, &[(CAMPAIGN_JSON, "campaign.json"), ("junit.xml", "junit")])
        );
    }
    out.push_str("</table>");
    out
}

/// A JSON scalar as text (strings without quotes).
fn json_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Whether every expectation held so far, and whether the campaign is done.
fn campaign_outcome(doc: Option<&Value>) -> (&'static str, String) {
    let Some(rows) = doc.and_then(|d| d.get("rows")).and_then(Value::as_array) else {
        return ("none", "unreadable".into());
    };
    let held = rows
        .iter()
        .filter(|r| r.get("holds") == Some(&Value::Bool(true)))
        .count();
    let done = doc.and_then(|d| d.get("finished_at")).is_some();
    let class = match (held == rows.len(), done) {
        (false, _) => "invalid",
        (true, true) => "valid",
        (true, false) => "unknown",
    };
    let running = if done { "" } else { ", running" };
    (class, format!("{held}/{} hold{running}", rows.len()))
}

/// A link to each test's run, where its folder is in this store. A row
/// names its run's folder as the campaign saw it (`store/<test>/<stamp>`,
/// maybe on another machine), so the last two parts are looked up here.
fn campaign_test_links(root: &Path, doc: Option<&Value>) -> String {
    let Some(rows) = doc.and_then(|d| d.get("rows")).and_then(Value::as_array) else {
        return String::new();
    };
    let mut links: Vec<String> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for row in rows.iter().take(RUNS_LISTED_MAX) {
        let test = row.get("test").and_then(Value::as_str).unwrap_or("?");
        if !seen.insert(test.to_owned()) {
            continue;
        }
        let run = row
            .get("store")
            .and_then(Value::as_str)
            .and_then(|s| run_in_store(root, s));
        links.push(match run {
            Some(rel) if root.join(&rel).join("report.html").is_file() => {
                format!(
                    "<a href=\"{}\">{}</a>",
                    html(&href(&rel.join("report.html"))),
                    html(test)
                )
            }
            Some(rel) => format!("<a href=\"{}/\">{}</a>", html(&href(&rel)), html(test)),
            None => html(test),
        });
    }
    links.join(" · ")
}

/// `<test>/<stamp>` of a run folder path, when that folder is in the store.
fn run_in_store(root: &Path, store: &str) -> Option<PathBuf> {
    let parts: Vec<&str> = store.rsplit('/').filter(|p| !p.is_empty()).take(2).collect();
    let [stamp, test] = parts[..] else { return None };
    let rel = Path::new(test).join(stamp);
    let real = resolve(root, &href(&rel))?;
    real.is_dir().then_some(rel)
}
