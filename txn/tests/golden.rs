//! Golden files: each history in `tests/golden/` (JSONL or Jepsen EDN)
//! checked under strict serializability, and what the checker said compared
//! with the `.expected` file beside it: the verdict, the kinds found, the
//! models ruled out, and every cycle's edges. `TXN_GOLDEN_WRITE=1`
//! rewrites the expectations (review the diff before committing it). Keep
//! every history that once found a bug here.

use std::path::{Path, PathBuf};

use faultline_histories::import::read_any;
use faultline_histories::ReadLimits;
use faultline_txn::{check, Analysis, Config};
use serde_json::{json, Value};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// What a golden file pins down: enough to catch a change of meaning,
/// little enough that rewording a sentence needs no rewrite.
fn summary(a: &Analysis) -> Value {
    let cycles: Vec<Value> = a
        .findings
        .anomalies
        .iter()
        .filter(|x| !x.cycle.is_empty())
        .map(|x| {
            let edges: Vec<String> = x
                .cycle
                .iter()
                .map(|s| format!("{} -{}-> {}", s.from, s.edge, s.to))
                .collect();
            json!({"kind": x.kind, "edges": edges})
        })
        .collect();
    json!({
        "valid": a.valid,
        "anomaly_types": a.anomaly_types,
        "ruled_out": a.ruled_out.not,
        "also_ruled_out": a.ruled_out.also_not,
        "cycles": cycles,
        "txns": a.stats.txns,
        "committed": a.stats.committed,
    })
}

#[test]
fn golden_histories_give_their_expected_verdicts() {
    let rewrite = std::env::var("TXN_GOLDEN_WRITE").is_ok_and(|v| v == "1");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("tests/golden")
        .map(|e| e.expect("entry").path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("jsonl" | "edn")))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "golden histories missing: {files:?}");
    let mut failures = Vec::new();
    for f in &files {
        let (h, _) = read_any(f, None, &ReadLimits::default()).expect("readable");
        let got = summary(&check(&h, &Config::default()).expect("checkable"));
        let expected_path = f.with_extension("expected");
        if rewrite {
            let text = serde_json::to_string_pretty(&got).expect("json") + "\n";
            std::fs::write(&expected_path, text).expect("write expectation");
            continue;
        }
        let want: Value = std::fs::read_to_string(&expected_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        if got != want {
            failures.push(format!("{}:\n  want {want}\n  got  {got}", f.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "(TXN_GOLDEN_WRITE=1 rewrites)\n{}",
        failures.join("\n")
    );
}
