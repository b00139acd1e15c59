//! Which of a run's settings a reader sees first. `config.json` holds
//! every field of the run's configuration (thirty-odd, some of them nested
//! objects, many of them settings of databases the run did not use); the
//! summary shows the ones that say what was tested (db and its own
//! settings, nodes, nemesis, workload, time limit) and folds the rest,
//! flattened to `a.b = value` rows so no raw JSON object is shown. Settings
//! of the databases the run did not use are left out, with a row saying so.
//!
//! The split is by field name and tolerant of shape: a field it does not
//! know is folded, never dropped, so a new setting still reaches the page.

use serde_json::{Map, Value};

/// Databases whose settings are prefixed with their name in `config.json`.
const DBS: [&str; 2] = ["etcd", "redis"];
/// Fields shown on their own elsewhere (heading, seed row, rerun command).
const SHOWN_ELSEWHERE: [&str; 3] = ["test", "seed", "rerun"];
/// Flattened rows at most; a config past it is cut (config.json has all).
const ROWS_MAX: usize = 200;

/// Settings as `(name, value)` rows, in the order shown.
pub type Rows = Vec<(String, String)>;

/// `(shown, folded)` settings of a `config.json`.
pub fn split_settings(config: &Value) -> (Rows, Rows) {
    let Some(obj) = config.as_object() else {
        return (Vec::new(), Vec::new());
    };
    let db = db_name(obj);
    let mut shown = Vec::new();
    let mut folded = Vec::new();
    let mut other_dbs = false;
    for (k, v) in obj.iter().filter(|(k, _)| !SHOWN_ELSEWHERE.contains(&k.as_str())) {
        if other_db(k, &db) {
            other_dbs = true;
        } else if let Some(row) = key_setting(k, v, obj, &db) {
            shown.push(row);
            // A setting shown by its kind (`workload: session`) keeps its
            // details, folded.
            for (inner, value) in v.as_object().into_iter().flatten().filter(|(i, _)| *i != "kind") {
                flatten(&format!("{k}.{inner}"), value, &mut folded);
            }
        } else {
            flatten(k, v, &mut folded);
        }
    }
    folded.truncate(ROWS_MAX);
    if other_dbs {
        folded.push((
            "not shown".into(),
            format!(
                "the settings of databases other than {db}, which this run did not use (config.json has every field)"
            ),
        ));
    }
    (shown, folded)
}

/// The run's database: `db` as a string, or the `kind` of a `db` object.
fn db_name(obj: &Map<String, Value>) -> String {
    match obj.get("db") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(m)) => m.get("kind").and_then(Value::as_str).unwrap_or("faultline").to_owned(),
        _ => "faultline".to_owned(),
    }
}

/// Whether `key` is a setting of a database other than `db`
/// (`redis_wait` when the run tested etcd).
fn other_db(key: &str, db: &str) -> bool {
    DBS.iter()
        .any(|d| *d != db && key.strip_prefix(d).is_some_and(|rest| rest.starts_with('_')))
}

/// A setting a reader needs first, as the row to show, or `None` to fold it.
fn key_setting(key: &str, v: &Value, obj: &Map<String, Value>, db: &str) -> Option<(String, String)> {
    let row = |label: &str, text: String| Some((label.to_owned(), text));
    match key {
        "db" => row("db", scalar_or_kind(v)),
        // The project's server's own settings (`ack=none,reads=follower`).
        "server" if db == "faultline" => row("server settings", text(v, "the safe setting")),
        "nodes" | "hosts" if is_empty(v) => None,
        "nodes" | "hosts" => row(key, text(v, "")),
        "nemesis" => {
            let every = obj.get("nemesis_interval_s").and_then(Value::as_f64);
            let faults = text(v, "none");
            row(
                "nemesis",
                every.map_or(faults.clone(), |s| format!("{faults}, every {s} s")),
            )
        }
        "workload" => row("workload", scalar_or_kind(v)),
        "time_limit_s" => row("time limit", format!("{} s", text(v, ""))),
        k if DBS.iter().any(|d| *d == db && k.starts_with(&format!("{d}_"))) => row(k, text(v, "")),
        _ => None,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// A string as itself, an object by its `kind`, anything else as text.
fn scalar_or_kind(v: &Value) -> String {
    match v {
        Value::Object(m) => m.get("kind").map(|k| text(k, "")).unwrap_or_else(|| text(v, "")),
        other => text(other, ""),
    }
}

/// A value as a person reads it: strings bare, lists of scalars joined by
/// commas, `[name, weight]` pairs as `name=weight`, `empty` for nothing.
fn text(v: &Value, empty: &str) -> String {
    match v {
        Value::Null => empty.to_owned(),
        Value::String(s) if s.is_empty() => empty.to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => empty.to_owned(),
        Value::Array(a) => a.iter().map(item).collect::<Vec<_>>().join(", "),
        // `30.0` reads as `30`: a whole number of seconds is not a float to a reader.
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

fn item(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(pair) if pair.len() == 2 && pair[0].is_string() => {
            format!("{}={}", text(&pair[0], ""), text(&pair[1], ""))
        }
        other => other.to_string(),
    }
}

/// Rows for `key` and everything under it, `a.b.c = value`.
fn flatten(key: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, inner) in m {
                if out.len() >= ROWS_MAX {
                    return;
                }
                flatten(&format!("{key}.{k}"), inner, out);
            }
        }
        other => out.push((key.to_owned(), text(other, "none"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shows_what_was_tested_folds_the_rest_flat_and_leaves_out_other_databases() {
        let config = json!({
            "test": "session", "seed": 7, "rerun": "faultline run",
            "db": "faultline", "server": "ack=none,reads=follower", "nodes": 3, "hosts": [],
            "nemesis": ["partition", "kill"], "nemesis_interval_s": 5.0, "time_limit_s": 30.0,
            "workload": {"kind": "session", "key_count": 16, "mix": {"weights": [["read", 2], ["write", 1]]}},
            "ssh": {"user": "root", "port": 22}, "checkers": [],
            "etcd_serializable_reads": false, "redis_reads": "primary", "net": "proxy",
        });
        let (shown, folded) = split_settings(&config);
        let shown: Vec<(&str, &str)> = shown.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            shown,
            vec![
                ("db", "faultline"),
                ("nemesis", "partition, kill, every 5 s"),
                ("nodes", "3"),
                ("server settings", "ack=none,reads=follower"),
                ("time limit", "30 s"),
                ("workload", "session"),
            ]
        );
        let folded: Vec<String> = folded.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        assert!(
            folded.contains(&"workload.mix.weights = read=2, write=1".to_owned()),
            "{folded:?}"
        );
        assert!(folded.contains(&"ssh.user = root".to_owned()), "{folded:?}");
        assert!(folded.contains(&"checkers = none".to_owned()), "{folded:?}");
        assert!(
            !folded.iter().any(|r| r.contains("redis_reads") || r.contains("etcd_")),
            "{folded:?}"
        );
        assert!(
            folded.last().unwrap().contains("databases other than faultline"),
            "{folded:?}"
        );
        assert!(
            !folded.iter().any(|r| r.contains('{')),
            "no raw JSON object: {folded:?}"
        );
    }

    #[test]
    fn the_tested_databases_own_settings_are_shown_and_the_servers_are_not() {
        let config = json!({"db": "redis", "redis_reads": "replica", "server": "", "etcd_serializable_reads": true});
        let (shown, folded) = split_settings(&config);
        assert_eq!(
            shown,
            vec![
                ("db".to_owned(), "redis".to_owned()),
                ("redis_reads".to_owned(), "replica".to_owned())
            ]
        );
        assert_eq!(folded[0], ("server".to_owned(), "none".to_owned()));
        assert!(folded[1].1.contains("other than redis"));
    }
}
