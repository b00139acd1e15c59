//! Conformance with Porcupine's own test suite: every history it ships
//! (`shared/testdata/porcupine`, see its README) gets the verdict Porcupine
//! asserts for it: `ok` is linearizable, `illegal` is not.
//!
//! The etcd logs are a compare-and-set register starting at nil; the kv logs
//! a key-value store of strings, checked per key and, for the small ones,
//! as one map. Skips with a message when the test data is absent, and fails
//! then if `CI=true`.

use std::path::{Path, PathBuf};

use faultline_checkers::linear::{check, Config, ModelSpec, NilReads};
use faultline_checkers::Validity;
use faultline_histories::import::porcupine::{read_etcd_log, read_kv_log};
use faultline_histories::History;

fn data_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata/porcupine"));
    if dir.join("expected.tsv").exists() {
        return Some(dir);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(
        !ci,
        "CI=true but the Porcupine test data is missing at {}",
        dir.display()
    );
    eprintln!("skipping: Porcupine test data not found at {}", dir.display());
    None
}

/// The rows of `expected.tsv`: file, expected verdict.
fn expected(dir: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dir.join("expected.tsv")).expect("expected.tsv is readable");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            (cols[0].to_owned(), cols[1].to_owned())
        })
        .collect()
}

fn load(dir: &Path, file: &str) -> (History, ModelSpec) {
    let path = dir.join(file);
    if file.starts_with("kv/") {
        (read_kv_log(&path).expect("kv log imports"), ModelSpec::Kv)
    } else {
        let h = read_etcd_log(&path).expect("etcd log imports");
        (
            h,
            ModelSpec::CasRegister {
                initial: serde_json::Value::Null,
                nil_reads: NilReads::Value,
            },
        )
    }
}

#[test]
fn every_porcupine_history_gets_porcupines_verdict() {
    let Some(dir) = data_dir() else { return };
    let rows = expected(&dir);
    assert_eq!(rows.len(), 109, "expected.tsv lists 109 histories");
    let mut agree = 0;
    let mut wrong = Vec::new();
    for (file, want) in &rows {
        let (history, model) = load(&dir, file);
        let config = Config {
            model,
            ..Config::default()
        };
        let v = check(&history, &config);
        let want = if want == "ok" {
            Validity::Valid
        } else {
            Validity::Invalid
        };
        if v.valid == want {
            agree += 1;
        } else {
            wrong.push(format!(
                "{file}: want {want:?}, got {:?} {:?}",
                v.valid, v.unknown_reason
            ));
        }
        if want == Validity::Invalid {
            assert!(
                !v.anomalies.is_empty() && !v.anomalies[0].ops.is_empty(),
                "{file}: evidence"
            );
        }
    }
    assert!(wrong.is_empty(), "{agree} of {} agree; wrong: {wrong:#?}", rows.len());
    eprintln!("{agree} of {} Porcupine histories agree", rows.len());
}

#[test]
fn small_kv_histories_checked_as_one_map_agree_too() {
    let Some(dir) = data_dir() else { return };
    for (file, want) in expected(&dir)
        .iter()
        .filter(|(f, _)| f.starts_with("kv/c01") || f.starts_with("kv/c10"))
    {
        let (history, model) = load(&dir, file);
        let config = Config {
            model,
            split_by_key: false,
            ..Config::default()
        };
        let v = check(&history, &config);
        let want = if want == "ok" {
            Validity::Valid
        } else {
            Validity::Invalid
        };
        assert_eq!(v.valid, want, "{file} as one map: {:?}", v.unknown_reason);
    }
}
