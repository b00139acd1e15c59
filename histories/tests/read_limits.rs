//! Every reader is bounded on any input: `/dev/zero` (an endless line) and
//! overlong lines end in an error naming the line, in every format, and a
//! file read in the wrong format is told apart from an empty history.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use faultline_histories::import::{read_any, Format};
use faultline_histories::{HistoryError, ReadLimits};

fn temp_file(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

const MIB: ReadLimits = ReadLimits {
    max_line_bytes: 1 << 20,
};

#[test]
fn dev_zero_ends_promptly_at_the_limit_in_every_format() {
    let zero = Path::new("/dev/zero");
    if !zero.exists() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "/dev/zero is missing");
        eprintln!("skipped: no /dev/zero");
        return;
    }
    let formats = [None].into_iter().chain(Format::ALL.map(Some));
    for format in formats {
        let started = Instant::now();
        let e = read_any(zero, format, &MIB).unwrap_err();
        assert!(
            matches!(e, HistoryError::LineTooLong { line: 1, max_line_bytes, .. } if max_line_bytes == 1 << 20),
            "{format:?}: {e}"
        );
        assert_eq!(
            e.to_string(),
            "/dev/zero:1: line 1 is longer than 1 MiB (the limit of one line)"
        );
        // Generous for a loaded machine: reading 1 MiB takes milliseconds.
        assert!(started.elapsed() < Duration::from_secs(20), "{format:?}");
    }
}

#[test]
fn an_overlong_line_names_its_number_in_every_format() {
    let long = "x".repeat((1 << 20) + 1);
    let cases = [
        (
            Format::Jsonl,
            format!("{{\"index\":0,\"time\":0,\"process\":0,\"type\":\"invoke\",\"f\":\"read\"}}\n\n{long}\n"),
        ),
        (
            Format::JepsenEdn,
            format!("{{:type :invoke, :f :read, :process 0}}\n\n\"{long}\"\n"),
        ),
        (
            Format::PorcupineEtcd,
            format!("INFO  jepsen.util - 0\t:invoke\t:read\tnil\n\n{long}\n"),
        ),
        (
            Format::PorcupineKv,
            format!("{{:process 0, :type :invoke, :f :get, :key \"5\", :value nil}}\n\n{long}\n"),
        ),
    ];
    for (format, text) in cases {
        let (_dir, path) = temp_file("h", &text);
        for given in [None, Some(format)] {
            let e = read_any(&path, given, &MIB).unwrap_err().to_string();
            assert!(
                e.ends_with("h:3: line 3 is longer than 1 MiB (the limit of one line)"),
                "{format}: {e}"
            );
        }
        // The default limit takes the line (whether it parses is another
        // matter: the JSONL one does not).
        let read = read_any(&path, Some(format), &ReadLimits::default());
        assert!(!matches!(read, Err(HistoryError::LineTooLong { .. })), "{format}");
    }
}

#[test]
fn a_wrong_format_gives_no_operations_and_says_what_it_skipped() {
    let edn = "{:type :invoke, :f :read, :value nil, :process 0}\n{:type :ok, :f :read, :value 1, :process 0}\n";
    let (_dir, path) = temp_file("history.edn", edn);
    let (h, format) = read_any(&path, Some(Format::PorcupineEtcd), &ReadLimits::default()).unwrap();
    assert_eq!((format, h.ops.len(), h.skipped_lines), (Format::PorcupineEtcd, 0, 2));
    // Read in its own format, nothing is skipped.
    let (h, _) = read_any(&path, None, &ReadLimits::default()).unwrap();
    assert_eq!((h.ops.len(), h.skipped_lines), (1, 0));
    // The structured formats refuse a file that is not theirs.
    for wrong in [Format::Jsonl, Format::PorcupineKv] {
        let e = read_any(&path, Some(wrong), &ReadLimits::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("history.edn:1:"), "{wrong}: {e}");
    }
    // An empty file is an empty history, with nothing skipped.
    let (_dir, empty) = temp_file("history.jsonl", "\n\n");
    let (h, format) = read_any(&empty, None, &ReadLimits::default()).unwrap();
    assert_eq!((format, h.ops.len(), h.skipped_lines), (Format::Jsonl, 0, 0));
}
