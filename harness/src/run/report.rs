//! The end of a run on the terminal: a table of checkers and verdicts, the
//! seed, the store folder and the exact command that reruns the test.

use std::collections::BTreeMap;

use faultline_checkers::{Validity, Verdict};
use tabled::settings::Style;
use tabled::{Table, Tabled};

#[derive(Tabled)]
struct Row {
    checker: String,
    verdict: String,
    anomalies: String,
    ops: usize,
    #[tabled(rename = "time")]
    time: String,
}

/// A short word for a validity.
pub fn verdict_word(v: Validity) -> &'static str {
    match v {
        Validity::Valid => "valid",
        Validity::Invalid => "INVALID",
        Validity::Unknown => "unknown",
    }
}

fn anomalies_cell(v: &Verdict) -> String {
    if let Some(why) = v.not_applicable_why() {
        return why.chars().take(60).collect();
    }
    if let Some(r) = &v.unknown_reason {
        return r.chars().take(60).collect();
    }
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &v.anomalies {
        *kinds.entry(a.kind.as_str()).or_default() += 1;
    }
    if kinds.is_empty() {
        return "-".into();
    }
    let (found, kept) = (v.anomalies_found(), v.anomalies.len());
    if found > kept && kinds.len() == 1 {
        let kind = kinds.keys().next().expect("one kind");
        return format!("{found} {kind} ({kept} shown)");
    }
    let cell = kinds
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    if found > kept {
        return format!("{cell} ({found} found in all)");
    }
    cell
}

/// The verdict table.
pub fn table(verdicts: &BTreeMap<String, Verdict>) -> String {
    let rows: Vec<Row> = verdicts
        .iter()
        .map(|(name, v)| Row {
            checker: name.clone(),
            verdict: if v.applies() { verdict_word(v.valid) } else { "n/a" }.into(),
            anomalies: anomalies_cell(v),
            ops: v.ops,
            time: format!("{:.0} ms", v.elapsed_ms),
        })
        .collect();
    Table::new(rows).with(Style::rounded()).to_string()
}

/// The table's `faults:` line from `results.json`: each kind of fault
/// that took effect and how often (`partition-halves x3, kill x2`).
pub fn faults_line(results: &serde_json::Value) -> String {
    let counts: BTreeMap<faultline_nemesis::FaultKind, usize> =
        serde_json::from_value(results["faults"].clone()).unwrap_or_default();
    super::faults::counts_line(&counts)
}

/// The first anomaly of each invalid checker, explained, for the terminal.
pub fn first_anomalies(verdicts: &BTreeMap<String, Verdict>) -> Vec<String> {
    verdicts
        .iter()
        .filter_map(|(name, v)| v.anomalies.first().map(|a| (name, a, v.anomalies_found())))
        .map(|(name, a, n)| {
            let ops: Vec<String> = a.ops.iter().take(4).map(|o| o.describe()).collect();
            format!(
                "{name}: {} ({n} in all)\n    {}\n    {}",
                a.kind,
                a.explanation,
                ops.join("\n    ")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_checkers::Anomaly;
    use std::time::Duration;

    fn anomaly(kind: &str) -> Anomaly {
        Anomaly {
            kind: kind.into(),
            key: None,
            processes: Vec::new(),
            ops: Vec::new(),
            explanation: String::new(),
            details: serde_json::Value::Null,
        }
    }

    #[test]
    fn the_cell_counts_what_was_found_not_what_was_kept() {
        let mut v = Verdict::from_anomalies(9, Duration::ZERO, vec![anomaly("lost-write"); 3]);
        assert_eq!(anomalies_cell(&v), "3 lost-write");
        v.details = serde_json::json!({"anomalies_found": 2198});
        assert_eq!(anomalies_cell(&v), "2198 lost-write (3 shown)");
        v.anomalies.push(anomaly("resurrected-write"));
        assert_eq!(
            anomalies_cell(&v),
            "3 lost-write, 1 resurrected-write (2198 found in all)"
        );
    }
}
