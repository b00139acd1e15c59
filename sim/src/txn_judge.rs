//! Judging a transactional schedule: the history through faultline-txn
//! against strict serializability, then against the row's own model.
//!
//! Promise: one check finds every type (data-dependency cycles first, then
//! those needing process order, then real time, each kind at the weakest
//! level where it occurs, as Elle does), so the types a weaker model
//! forbids are exactly those found among them ([`models::forbidden_by`]).
//! A history the checker could not read or decide is unknown, never valid;
//! a type the row's model forbids, or one its table names as never
//! appearing, is reported broken with its explanation.
//!
//! Beside Elle's types, one the checker cannot see: [`LOST_APPEND`], an
//! append of a transaction acknowledged `ok` before the final read began
//! and missing from the list that read returned (a committed transaction
//! lost, which a history whose later reads never met the lost value shows
//! no cycle for).

use crate::run::RunReport;
use crate::txn_scenarios::TxnRow;
use faultline_checkers::Validity;
use faultline_histories::{History, Outcome};
use faultline_txn::{models, Analysis, Config, Model};
use serde_json::Value;
use std::collections::BTreeMap;

/// The type of an acknowledged append the final read does not hold.
pub const LOST_APPEND: &str = "lost-append";

/// Most characters of a witness's explanation a report quotes.
const EXPLANATION_CHARS_MAX: usize = 400;

/// Judges `history` for `row`: fills `report`'s verdict (strict
/// serializability's), the types found, whether one the row looks for
/// showed (any, for a row that names none) with its explanation, why it is
/// unknown, what broke the row's model, and the transactions judged.
pub fn judge(row: &TxnRow, history: &History, report: &mut RunReport) {
    let config = Config {
        models: vec![Model::StrictSerializable],
        ..Config::default()
    };
    match faultline_txn::check(history, &config) {
        Ok(mut a) => {
            if let Some(lost) = lost_appends(history) {
                note_lost(&mut a, lost);
            }
            verdict(row, &a, report);
        }
        Err(e) => {
            report.valid = Validity::Unknown;
            report.unknown = Some(format!("transactions could not be checked: {e}"));
            report.broken = Some(format!("undecided: {e}"));
        }
    }
}

fn verdict(row: &TxnRow, a: &Analysis, report: &mut RunReport) {
    report.valid = match a.valid {
        faultline_txn::Validity::Valid => Validity::Valid,
        faultline_txn::Validity::Invalid => Validity::Invalid,
        faultline_txn::Validity::Unknown => Validity::Unknown,
    };
    let looked_for = |k: &str| row.shows.is_empty() || row.shows.contains(&k);
    let shown = a.anomaly_types.iter().find(|k| looked_for(k));
    report.kinds = a.anomaly_types.clone();
    report.shows = report.valid == Validity::Invalid && shown.is_some();
    report.anomaly = shown.map(|k| explain(a, k));
    report.unknown = (!a.unknown_types.is_empty())
        .then(|| format!("the search for {} ran past its budget", a.unknown_types.join(", ")));
    report.broken = broken(row, a);
    report.session_ops = a.stats.txns;
}

/// The first type found that `row` rules out, or the first its model
/// forbids whose search was cut short.
fn broken(row: &TxnRow, a: &Analysis) -> Option<String> {
    let forbids = |k: &str| row.holds.is_some_and(|m| models::forbidden_by(m, k));
    let model = row.holds.map_or("-", Model::name);
    if let Some(k) = a
        .anomaly_types
        .iter()
        .find(|k| row.never.contains(&k.as_str()) || forbids(k))
    {
        return Some(format!("{} ({model} must hold): {}", row.row, explain(a, k)));
    }
    let undecided = a.unknown_types.iter().find(|k| forbids(k))?;
    Some(format!("{} ({model} must hold): {undecided} undecided", row.row))
}

/// `kind`, how often it was found, and its first witness's explanation.
fn explain(a: &Analysis, kind: &str) -> String {
    let count = a.findings.counts.get(kind).copied().unwrap_or(0);
    let first = a.findings.anomalies.iter().find(|x| x.kind == kind);
    let why = first.map_or("", |x| x.explanation.as_str());
    // Witnesses quote whole lists: a line stays readable, the rerun
    // command gives the rest.
    let cut = why
        .char_indices()
        .nth(EXPLANATION_CHARS_MAX)
        .map_or(why.len(), |(i, _)| i);
    let more = if cut < why.len() { " ..." } else { "" };
    format!("{kind} x{count}: {}{more}", &why[..cut])
}

/// The appends acknowledged before the final read began that it does not
/// hold: how many, and the first, said in a sentence. None when there are
/// none, or no final read completed (nothing to compare with).
fn lost_appends(history: &History) -> Option<(usize, String)> {
    let last = history
        .ops
        .iter()
        .filter(|o| o.is_final && o.outcome == Outcome::Ok)
        .max_by_key(|o| o.invoke_time)?;
    let finals: BTreeMap<&str, &Vec<Value>> = micro_ops(&last.output)
        .filter_map(|(f, k, v)| Some((k, v.as_array().filter(|_| f == "r")?)))
        .collect();
    let acked = history
        .ops
        .iter()
        .filter(|o| !o.is_final && o.outcome == Outcome::Ok)
        .filter(|o| o.complete_time.is_some_and(|t| t < last.invoke_time));
    let mut lost = acked.flat_map(|o| {
        micro_ops(&o.output).filter(|&(f, k, v)| f == "append" && finals.get(k).is_some_and(|l| !l.contains(v)))
    });
    let (_, key, value) = lost.next()?;
    let why = format!(
        "the append of {value} to {key} was acknowledged before the final read, which does not hold it: a committed transaction was lost"
    );
    Some((1 + lost.count(), why))
}

/// The micro-ops of a transaction's value, as (function, key, value).
fn micro_ops(value: &Value) -> impl Iterator<Item = (&str, &str, &Value)> {
    value.as_array().into_iter().flatten().filter_map(|m| {
        let [f, k, v] = m.as_array()?.as_slice() else {
            return None;
        };
        Some((f.as_str()?, k.as_str()?, v))
    })
}

/// Adds `lost` appends to the analysis as a type of their own: the
/// history is then not strict serializable (nor anything else).
fn note_lost(a: &mut Analysis, (count, why): (usize, String)) {
    a.anomaly_types.push(LOST_APPEND.to_string());
    a.findings.counts.insert(LOST_APPEND.to_string(), count);
    a.findings.anomalies.push(faultline_txn::Anomaly {
        kind: LOST_APPEND.to_string(),
        key: None,
        txns: Vec::new(),
        ops: Vec::new(),
        explanation: why,
        cycle: Vec::new(),
    });
    a.valid = faultline_txn::Validity::Invalid;
}
