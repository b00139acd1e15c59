//! Conformance with Porcupine's own test suite: every history it ships
//! (fetched by `ci/testdata`, found through `faultline_testdata`) gets the
//! verdict Porcupine asserts for it: `ok` is linearizable, `illegal` is not.
//!
//! The etcd logs are a compare-and-set register starting at nil; the kv logs
//! a key-value store of strings, checked per key and, for the small ones,
//! as one map. Skips with a message when the test data is absent, and fails
//! then if `CI=true`.

use std::path::Path;

use faultline_checkers::linear::{check, Config, ModelSpec, NilReads};
use faultline_checkers::Validity;
use faultline_histories::import::porcupine::{read_etcd_log, read_kv_log};
use faultline_histories::History;
use faultline_testdata::{porcupine, porcupine_expected};

/// The verdict Porcupine asserts.
fn want(linearizable: bool) -> Validity {
    if linearizable {
        Validity::Valid
    } else {
        Validity::Invalid
    }
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
    let Some(dir) = porcupine() else { return };
    let rows = porcupine_expected();
    assert_eq!(rows.len(), 109, "expected.tsv lists 109 histories");
    let mut agree = 0;
    let mut wrong = Vec::new();
    for row in &rows {
        let file = &row.file;
        let (history, model) = load(&dir, file);
        let config = Config {
            model,
            ..Config::default()
        };
        let v = check(&history, &config);
        let want = want(row.linearizable);
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
    let Some(dir) = porcupine() else { return };
    for row in porcupine_expected()
        .iter()
        .filter(|r| r.file.starts_with("kv/c01") || r.file.starts_with("kv/c10"))
    {
        let file = &row.file;
        let (history, model) = load(&dir, file);
        let config = Config {
            model,
            split_by_key: false,
            ..Config::default()
        };
        let v = check(&history, &config);
        assert_eq!(
            v.valid,
            want(row.linearizable),
            "{file} as one map: {:?}",
            v.unknown_reason
        );
    }
}
