//! The `transactional` checker (`txn`): `faultline_txn`'s analysis turned
//! into a [`Verdict`] like every other checker's, so `check`, `run`,
//! `report` and `campaign` show it the same way.
//!
//! The verdict's anomalies are the kinds the chosen consistency models
//! forbid, each with its transactions as evidence and, for cycles, the
//! edges as sentences in `details.cycle`. Kinds found that the models allow
//! (write skew under snapshot isolation) are listed in `details` but do not
//! make the verdict invalid; the models every kind found rules out are in
//! `details.models_ruled_out`.

use std::time::Instant;

use faultline_checkers::{Anomaly, OpRef, Validity, Verdict};
use faultline_histories::{History, F};
use faultline_txn::cycles::{Shape, LEVELS};
use faultline_txn::{Analysis, Config, Model};
use serde_json::{json, Value};

/// The checker's name in reports and on the command line.
pub const NAME: &str = "transactional";

/// True for the names `--checkers` accepts for this checker.
pub fn is_name(name: &str) -> bool {
    matches!(name, NAME | "txn")
}

/// The kinds of anomaly the checker reports that are not cycles: found
/// while inferring each key's versions, whatever the models judged.
const NON_CYCLE_KINDS: [&str; 10] = [
    "G1a",
    "G1b",
    "cyclic-versions",
    "dirty-update",
    "duplicate-elements",
    "future-read",
    "garbage-read",
    "incompatible-order",
    "internal",
    "lost-update",
];

/// Every kind of anomaly the checker can report, by the name it reports:
/// each cycle shape at each level (`G-single`, `G-single-process`,
/// `G-single-realtime`, ...), then the kinds that are not cycles.
pub fn anomaly_kinds() -> Vec<String> {
    let mut kinds: Vec<String> = Shape::ALL
        .iter()
        .flat_map(|s| LEVELS.iter().map(move |(_, suffix)| format!("{}{suffix}", s.name())))
        .collect();
    kinds.extend(NON_CYCLE_KINDS.iter().map(|k| (*k).to_owned()));
    kinds
}

/// Whether judging `models` (strict-serializable when empty) searches for
/// `kind` at all: a cycle that needs process or real-time order is looked
/// for only when a model judged needs those edges.
pub fn searched_for(kind: &str, models: &[Model]) -> bool {
    let default = [Model::StrictSerializable];
    let models = if models.is_empty() { &default[..] } else { models };
    if kind.ends_with("-realtime") {
        models.iter().any(|m| m.needs_realtime_edges())
    } else if kind.ends_with("-process") {
        models.iter().any(|m| m.needs_process_edges())
    } else {
        true
    }
}

/// True when the history holds a transaction: the checker applies.
pub fn applies(history: &History) -> bool {
    history.ops.iter().any(|o| o.f == F::Txn)
}

/// Checks `history` against `models` (strict-serializable when empty).
pub fn check(history: &History, models: &[Model]) -> Verdict {
    let started = Instant::now();
    let config = Config {
        models: if models.is_empty() {
            vec![Model::StrictSerializable]
        } else {
            models.to_vec()
        },
        ..Config::default()
    };
    match faultline_txn::check(history, &config) {
        Ok(analysis) if analysis.stats.txns == 0 => {
            Verdict::not_applicable(started.elapsed(), "no transactions (`\"f\": \"txn\"`) in the history")
        }
        Ok(analysis) => verdict(history, &analysis, started),
        // A transaction the checker cannot read: it vouches for nothing.
        Err(e) => Verdict::unknown(0, started.elapsed(), format!("transactions could not be checked: {e}")),
    }
}

fn verdict(history: &History, a: &Analysis, started: Instant) -> Verdict {
    let (forbidden, allowed): (Vec<_>, Vec<_>) =
        a.findings.anomalies.iter().partition(|x| a.forbidden.contains(&x.kind));
    let anomalies: Vec<Anomaly> = forbidden.into_iter().map(|x| anomaly(history, x)).collect();
    let found: usize = a.forbidden.iter().map(|k| a.findings.counts[k]).sum();
    let mut v = Verdict::from_anomalies(0, started.elapsed(), anomalies);
    v.valid = match a.valid {
        faultline_txn::Validity::Valid => Validity::Valid,
        faultline_txn::Validity::Invalid => Validity::Invalid,
        faultline_txn::Validity::Unknown => Validity::Unknown,
    };
    if v.valid == Validity::Unknown {
        let why: Vec<&str> = a
            .findings
            .unsearched
            .iter()
            .filter(|u| a.unknown_types.contains(&u.kind))
            .map(|u| u.explanation.as_str())
            .collect();
        v.unknown_reason = Some(why.join("; "));
    }
    v.details = json!({
        "consistency_models": a.models,
        "anomaly_types": a.anomaly_types,
        "forbidden": a.forbidden,
        "unknown_types": a.unknown_types,
        "models_ruled_out": a.ruled_out,
        "counts": a.findings.counts,
        "anomalies_found": found,
        "allowed_anomalies": allowed,
        "unsearched": a.findings.unsearched,
        "stats": a.stats,
    });
    v.with_coverage(a.covered_ops.iter().copied().collect())
}

/// One of the crate's anomalies as a checker's anomaly: its transactions
/// as operations, its cycle in `details`.
fn anomaly(history: &History, x: &faultline_txn::Anomaly) -> Anomaly {
    let ops = x.ops.iter().map(|&i| OpRef::new(history, &history.ops[i])).collect();
    let mut out = Anomaly::new(&x.kind, None, ops, x.explanation.clone());
    out.key = x.key.clone();
    if !x.cycle.is_empty() {
        out.details = json!({ "txns": x.txns, "cycle": x.cycle });
    } else {
        out.details = json!({ "txns": x.txns });
    }
    out
}

/// The lines a person reads under the checker's verdict: the cycle's edges
/// one per line, then the models ruled out.
pub fn cycle_lines(a: &Anomaly) -> Vec<String> {
    let Some(steps) = a.details.get("cycle").and_then(Value::as_array) else {
        return Vec::new();
    };
    steps
        .iter()
        .map(|s| {
            let get = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("?");
            format!(
                "{} -{}-> {}: {}",
                get("from"),
                get("edge"),
                get("to"),
                get("explanation")
            )
        })
        .collect()
}

/// An anomaly's explanation for a line of its own: for a cycle, its first
/// sentence (the edges' sentences follow one per line, [`cycle_lines`]).
pub fn summary(a: &Anomaly) -> &str {
    if a.details.get("cycle").is_none() {
        return &a.explanation;
    }
    a.explanation
        .split_once(". ")
        .map_or(&a.explanation, |(first, _)| first)
}

/// "not serializable (nor strict-serializable, ...)" from a verdict's details.
pub fn ruled_out_line(v: &Verdict) -> Option<String> {
    let r = v.details.get("models_ruled_out")?;
    let names = |k: &str| -> Vec<String> {
        r.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let (not, also) = (names("not"), names("also_not"));
    if not.is_empty() {
        return None;
    }
    let also = if also.is_empty() {
        String::new()
    } else {
        format!(" (nor {})", also.join(", "))
    };
    Some(format!("ruled out: {}{also}", not.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{check_history, CheckOptions};
    use faultline_histories::import::Format;
    use faultline_histories::{Event, EventType, Process};

    /// Elle's G1c: two concurrent transactions that each read the other's append.
    fn g1c() -> History {
        let ev = |i: u64, p: u64, kind, v: Value| Event::new(i, i, Process::Client(p), kind, F::Txn, v);
        History::from_events([
            ev(0, 0, EventType::Invoke, json!([["append", "x", 1], ["r", "y", null]])),
            ev(1, 1, EventType::Invoke, json!([["append", "y", 1], ["r", "x", null]])),
            ev(2, 0, EventType::Ok, json!([["append", "x", 1], ["r", "y", [1]]])),
            ev(3, 1, EventType::Ok, json!([["append", "y", 1], ["r", "x", [1]]])),
        ])
        .unwrap()
    }

    #[test]
    fn chosen_for_transactions_and_by_either_name() {
        let h = g1c();
        let auto = check_history(&h, Format::Jsonl, &CheckOptions::default()).unwrap();
        let v = &auto.checkers[NAME];
        assert_eq!((v.valid, v.ops), (Validity::Invalid, 2));
        assert_eq!(auto.valid, Validity::Invalid);
        assert!(auto.warnings.is_empty(), "{:?}", auto.warnings);
        let named = CheckOptions {
            checkers: Some(vec!["txn".to_owned()]),
            ..CheckOptions::default()
        };
        let r = check_history(&h, Format::Jsonl, &named).unwrap();
        assert_eq!(r.checkers.keys().collect::<Vec<_>>(), [NAME]);
        assert!(crate::run::checks::validate_names(&["txn".into(), "transactional".into()]).is_ok());
    }

    #[test]
    fn the_models_chosen_decide_and_the_models_ruled_out_are_named() {
        let v = check(&g1c(), &[Model::ReadUncommitted]);
        assert_eq!(v.valid, Validity::Valid, "read uncommitted allows G1c");
        assert!(v.anomalies.is_empty());
        assert_eq!(v.details["anomaly_types"], json!(["G1c"]));
        assert_eq!(v.coverage.len(), 2);
        let v = check(&g1c(), &[]);
        assert_eq!(v.anomalies[0].kind, "G1c");
        assert_eq!(cycle_lines(&v.anomalies[0]).len(), 2);
        assert_eq!(
            ruled_out_line(&v).unwrap().split(" (").next(),
            Some("ruled out: read-committed")
        );
    }

    #[test]
    fn a_run_s_consistency_models_in_the_header_are_judged_unless_the_user_names_others() {
        use faultline_txn::Model::{ReadCommitted, ReadUncommitted};
        let mut h = g1c();
        h.header = Some(faultline_histories::Header {
            faultline_history: 1,
            extra: crate::run::checks::header_fields("txn", &[], &[ReadUncommitted]),
            ..Default::default()
        });
        let r = check_history(&h, Format::Jsonl, &CheckOptions::default()).unwrap();
        let v = &r.checkers[NAME];
        assert_eq!(v.valid, Validity::Valid, "read uncommitted allows G1c");
        assert_eq!(v.details["consistency_models"], json!(["read-uncommitted"]));
        let opts = CheckOptions {
            consistency_models: vec![ReadCommitted],
            ..CheckOptions::default()
        };
        let r = check_history(&h, Format::Jsonl, &opts).unwrap();
        assert_eq!(r.checkers[NAME].valid, Validity::Invalid, "the user's choice wins");
        h.header.as_mut().unwrap().extra["consistency_models"] = json!(["read-committed", "PL-9"]);
        let r = check_history(&h, Format::Jsonl, &CheckOptions::default()).unwrap();
        assert_eq!(r.checkers[NAME].valid, Validity::Invalid);
        assert!(r.warnings.iter().any(|w| w.contains("PL-9")), "{:?}", r.warnings);
    }

    #[test]
    fn named_on_a_history_without_transactions_it_does_not_apply_and_vouches_for_nothing() {
        let ev = |i: u64, kind, f: F, v: Value| Event::new(i, i, Process::Client(0), kind, f, v).with_key("x");
        let h = History::from_events([
            ev(0, EventType::Invoke, F::Write, json!(1)),
            ev(1, EventType::Ok, F::Write, json!(1)),
        ])
        .unwrap();
        let named = CheckOptions {
            checkers: Some(vec!["txn".to_owned()]),
            ..CheckOptions::default()
        };
        let r = check_history(&h, Format::Jsonl, &named).unwrap();
        let v = &r.checkers[NAME];
        assert!(!v.applies(), "{v:?}");
        assert!(v.not_applicable_why().unwrap().contains("no transactions"));
        assert_eq!(r.valid, Validity::Unknown, "the write was looked at by no checker");
    }

    #[test]
    fn on_transactions_alone_the_single_key_checkers_do_not_apply() {
        // The session checkers compare these micro-ops but cover no
        // operation: named, they say not applicable; unnamed, they are
        // left out. Either way only the transactional checker vouches.
        let mut all = vec!["auto".to_owned()];
        all.extend(faultline_checkers::session::names().iter().map(|n| n.to_string()));
        all.push("linearizable".to_owned());
        let named = CheckOptions {
            checkers: Some(all),
            ..CheckOptions::default()
        };
        let h = g1c();
        for opts in [CheckOptions::default(), named] {
            let r = check_history(&h, Format::Jsonl, &opts).unwrap();
            for (name, v) in &r.checkers {
                if name != NAME {
                    assert!(!v.applies(), "{name} says {:?} over {} ops", v.valid, v.ops);
                }
            }
            assert_eq!(r.checkers[NAME].valid, Validity::Invalid);
        }
        let named = check_history(&h, Format::Jsonl, &opts_naming("consistent-prefix")).unwrap();
        let why = named.checkers["consistent-prefix"].not_applicable_why().unwrap();
        assert!(why.starts_with("no single-key operations"), "{why}");
    }

    /// A transactional run's history whose final reads lack an append
    /// that a committed transaction made: lost-writes, chosen with the
    /// transactional checker, finds it and the file is invalid.
    #[test]
    fn a_lost_committed_append_fails_the_run_s_lost_writes() {
        let ev = |i: u64, p: u64, kind, v: Value| Event::new(i, i, Process::Client(p), kind, F::Txn, v);
        let fin = |e: Event| Event { is_final: true, ..e };
        let read = || json!([["r", "x", null]]);
        let with_final = |seen: Value| {
            let mut h = History::from_events([
                ev(0, 0, EventType::Invoke, json!([["append", "x", 1]])),
                ev(1, 0, EventType::Ok, json!([["append", "x", 1]])),
                ev(2, 1, EventType::Invoke, json!([["append", "x", 2], ["r", "x", null]])),
                ev(3, 1, EventType::Ok, json!([["append", "x", 2], ["r", "x", [1, 2]]])),
                fin(ev(4, 2, EventType::Invoke, read())),
                fin(ev(5, 2, EventType::Ok, json!([["r", "x", seen]]))),
            ])
            .unwrap();
            h.header = Some(faultline_histories::Header {
                faultline_history: 1,
                extra: crate::run::checks::header_fields("txn-list-append", &[], &[]),
                ..Default::default()
            });
            check_history(&h, Format::Jsonl, &CheckOptions::default()).unwrap()
        };
        let lost = with_final(json!([1]));
        let v = &lost.checkers["lost-writes"];
        assert_eq!(v.valid, Validity::Invalid, "{v:?}");
        assert!(v.anomalies[0].explanation.contains("appended 2 to x"), "{v:?}");
        assert_eq!(lost.valid, Validity::Invalid);
        let kept = with_final(json!([1, 2]));
        let v = &kept.checkers["lost-writes"];
        assert!(v.applies() && v.valid == Validity::Valid, "it looked: {v:?}");
        assert_eq!(kept.valid, Validity::Valid, "{:?}", kept.checkers);
    }

    fn opts_naming(name: &str) -> CheckOptions {
        CheckOptions {
            checkers: Some(vec![name.to_owned()]),
            ..CheckOptions::default()
        }
    }

    #[test]
    fn a_malformed_transaction_is_unknown_and_covers_nothing() {
        let ev = |i: u64, kind, v: Value| Event::new(i, i, Process::Client(0), kind, F::Txn, v);
        let h = History::from_events([
            ev(0, EventType::Invoke, json!([["frob", "x", 1]])),
            ev(1, EventType::Ok, json!([["frob", "x", 1]])),
        ])
        .unwrap();
        let v = check(&h, &[]);
        assert_eq!(v.valid, Validity::Unknown);
        assert!(v.unknown_reason.unwrap().contains("unknown micro-op function"));
        assert!(v.coverage.is_empty());
    }
}
