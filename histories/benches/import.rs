//! How fast the importers read: all 103 etcd logs of Porcupine (the target
//! is well under 50 ms in total), its largest kv log, and a generated Jepsen
//! `history.edn` of 20,000 lines. The Porcupine data (fetched by
//! `ci/testdata`, found by `faultline_testdata`) is read into memory first,
//! so the figures are parse time (`_from_disk` adds opening and reading the
//! files); those benches are skipped with a message when it is absent.

use std::hint::black_box;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion};
use faultline_histories::import::edn::{parse_jepsen_edn, EdnOptions};
use faultline_histories::import::porcupine::{parse_etcd_log, parse_kv_log, read_etcd_log};

/// The etcd logs as `(path, bytes)`, in name order.
fn etcd_logs(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir.join("jepsen"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn porcupine(c: &mut Criterion) {
    let Some(dir) = faultline_testdata::porcupine() else {
        return;
    };
    let logs = etcd_logs(&dir);
    assert_eq!(logs.len(), 103);
    c.bench_function("porcupine/etcd_all_103_logs", |b| {
        b.iter(|| {
            for (path, bytes) in &logs {
                black_box(parse_etcd_log(&bytes[..], path).unwrap());
            }
        })
    });
    c.bench_function("porcupine/etcd_all_103_logs_from_disk", |b| {
        b.iter(|| {
            for (path, _) in &logs {
                black_box(read_etcd_log(path).unwrap());
            }
        })
    });
    let kv = dir.join("kv/c50-bad.txt");
    let bytes = std::fs::read(&kv).unwrap();
    c.bench_function("porcupine/kv_c50_bad", |b| {
        b.iter(|| black_box(parse_kv_log(&bytes[..], &kv).unwrap()))
    });
}

/// A jepsen.independent register history: `ops` operations over 100 keys
/// by 10 processes, each invoked and completed on the next line.
fn jepsen_history(ops: usize) -> String {
    let mut text = String::new();
    for i in 0..ops {
        let (p, k, t) = (i % 10, i % 100, i * 1000);
        let (f, v) = if i % 2 == 0 {
            ("write", i.to_string())
        } else {
            ("read", "nil".into())
        };
        text.push_str(&format!(
            "{{:type :invoke, :f :{f}, :value [{k} {v}], :process {p}, :time {t}, :index {}}}\n",
            2 * i
        ));
        text.push_str(&format!(
            "{{:type :ok, :f :{f}, :value [{k} {i}], :process {p}, :time {}, :index {}}}\n",
            t + 500,
            2 * i + 1
        ));
    }
    text
}

fn jepsen_edn(c: &mut Criterion) {
    let text = jepsen_history(10_000);
    let path = Path::new("history.edn");
    c.bench_function("jepsen_edn/20k_lines", |b| {
        b.iter(|| black_box(parse_jepsen_edn(Cursor::new(text.as_bytes()), path, &EdnOptions::default()).unwrap()))
    });
}

criterion_group!(benches, porcupine, jepsen_edn);
criterion_main!(benches);
