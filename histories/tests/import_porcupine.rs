//! Reads every history Porcupine ships (fetched by `ci/testdata`, found
//! through `faultline_testdata`) and checks each has the number of client
//! operations `expected.tsv` gives.
//!
//! The count convention: `ops` is the number of invocations, completed or
//! not, which is the number of [`faultline_histories::Op`]s a history holds
//! (Porcupine counts operations, each an invocation with its return). The
//! data is not copied into the repository: this test reads it in place,
//! skips with a message when it is absent, and fails then when `CI=true`.

use std::path::Path;
use std::time::Instant;

use faultline_histories::import::porcupine::CAS_MISMATCH;
use faultline_histories::import::{detect_format, read_any, Format};
use faultline_histories::{History, Outcome, ReadLimits};
use faultline_testdata::{porcupine, porcupine_expected};

/// `(file, ops)` rows of `expected.tsv`.
fn expected() -> Vec<(String, usize)> {
    porcupine_expected().into_iter().map(|r| (r.file, r.ops)).collect()
}

fn format_of(file: &str) -> Format {
    if file.starts_with("jepsen/") {
        Format::PorcupineEtcd
    } else {
        Format::PorcupineKv
    }
}

fn read_all(dir: &Path) -> Vec<(String, History, usize)> {
    let rows = expected();
    assert_eq!(rows.len(), 109, "103 etcd logs and 6 kv logs");
    rows.into_iter()
        .map(|(file, ops)| {
            let path = dir.join(&file);
            let format = format_of(&file);
            assert_eq!(detect_format(&path).unwrap(), format, "{file}");
            let (history, read_as) = read_any(&path, None, &ReadLimits::default()).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(read_as, format);
            (file, history, ops)
        })
        .collect()
}

#[test]
fn every_porcupine_history_has_the_expected_number_of_operations() {
    let Some(dir) = porcupine() else { return };
    let started = Instant::now();
    let histories = read_all(&dir);
    eprintln!("read {} histories in {:?}", histories.len(), started.elapsed());
    for (file, history, ops) in &histories {
        assert_eq!(history.ops.len(), *ops, "{file}");
        assert!(history.nemesis.is_empty(), "{file}");
    }
}

#[test]
fn the_etcd_logs_hold_every_kind_of_outcome() {
    let Some(dir) = porcupine() else { return };
    let histories = read_all(&dir);
    let etcd: Vec<&History> = histories
        .iter()
        .filter(|(f, _, _)| f.starts_with("jepsen/"))
        .map(|(_, h, _)| h)
        .collect();
    let ops = || etcd.iter().flat_map(|h| h.ops.iter());
    // Not vacuous: the mapping of each kind of line is exercised.
    assert!(ops().any(|o| o.outcome == Outcome::Fail && o.error.as_deref() == Some(CAS_MISMATCH)));
    assert!(ops().any(|o| o.outcome == Outcome::Info && o.f == faultline_histories::F::Read));
    assert!(ops().any(|o| o.outcome == Outcome::Info && !o.input.is_null()));
    assert!(ops().all(|o| o.key.is_none()));
    let empty = histories.iter().find(|(f, _, _)| f == "jepsen/etcd_095.log").unwrap();
    assert!(empty.1.ops.is_empty());
    let (_, c50, _) = histories.iter().find(|(f, _, _)| f == "kv/c50-ok.txt").unwrap();
    assert!(c50.keys.len() > 1);
}
