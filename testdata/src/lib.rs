//! Where faultline's tests find the data they do not carry: Porcupine's
//! public test histories (its Jepsen etcd logs and kv logs), which
//! `ci/testdata` fetches at a pinned commit and verifies against
//! `ci/testdata.sha256`.
//!
//! Every test and bench that reads that data calls [`porcupine`], so they all
//! look in the same places, in this order (the script writes to the same):
//!
//! 1. `$FAULTLINE_TESTDATA/porcupine`, when the variable is set (then only
//!    there);
//! 2. `../shared/testdata/porcupine` beside the repository;
//! 3. `.testdata/porcupine` in the repository, where `ci/testdata` fetches.
//!
//! A folder counts only when every file the checksum list names is in it.
//! When none does, a test skips with a message saying how to fetch the data,
//! and fails instead when `CI=true`: CI runs `ci/testdata` first, so missing
//! data there is a broken job, never a silent pass.
//!
//! The verdicts Porcupine's own test suite asserts for each history are not
//! Porcupine's files but this project's reading of its tests, so they live
//! here, in `testdata/porcupine/expected.tsv` ([`porcupine_expected`]).
//!
//! The crate's tests are the repository's own: `ci/testdata` against a local
//! mirror, `ci/merge-junit`, and the links of every markdown file.

use std::path::{Path, PathBuf};

/// The variable that names a test-data folder instead of the usual places.
pub const ENV_DIR: &str = "FAULTLINE_TESTDATA";

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate lives in a folder of the repository")
        .to_path_buf()
}

/// The checksum list `ci/testdata` verifies against.
pub fn checksum_file() -> PathBuf {
    repo_root().join("ci/testdata.sha256")
}

/// The files of the checksum list, as `(sha256, path relative to the
/// Porcupine folder)`.
pub fn porcupine_files() -> Vec<(String, String)> {
    let path = checksum_file();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (sum, file) = l
                .split_once(char::is_whitespace)
                .unwrap_or_else(|| panic!("{}: a line without a path: {l:?}", path.display()));
            (sum.to_owned(), file.trim().to_owned())
        })
        .collect()
}

/// The folders [`porcupine`] tries, in order.
pub fn porcupine_candidates() -> Vec<PathBuf> {
    if let Some(dir) = std::env::var_os(ENV_DIR).filter(|d| !d.is_empty()) {
        return vec![PathBuf::from(dir).join("porcupine")];
    }
    let root = repo_root();
    vec![
        root.join("../shared/testdata/porcupine"),
        root.join(".testdata/porcupine"),
    ]
}

/// Whether `dir` holds every file of the checksum list.
pub fn is_complete(dir: &Path) -> bool {
    porcupine_files().iter().all(|(_, f)| dir.join(f).is_file())
}

/// Whether the CI variable says this is a CI job.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The folder of Porcupine's histories, or `None` after printing why the
/// caller skips. Panics when `CI=true` and the data is missing.
pub fn porcupine() -> Option<PathBuf> {
    let candidates = porcupine_candidates();
    if let Some(dir) = candidates.iter().find(|d| is_complete(d)) {
        return Some(dir.clone());
    }
    let looked: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
    let why = format!(
        "Porcupine's test histories are not in {}; run ci/testdata to fetch them",
        looked.join(" nor ")
    );
    assert!(!in_ci(), "CI=true and {why}");
    eprintln!("skipping: {why}");
    None
}

/// One row of `expected.tsv`: a history and the verdict Porcupine's test
/// suite asserts for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    /// The file, relative to the Porcupine folder (`jepsen/etcd_000.log`).
    pub file: String,
    /// `true` when Porcupine calls it linearizable (`ok`), `false` for
    /// `illegal`.
    pub linearizable: bool,
    /// Its number of client operations (invocations, completed or not).
    pub ops: usize,
}

/// The rows of `testdata/porcupine/expected.tsv`, in file order.
pub fn porcupine_expected() -> Vec<Expected> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("porcupine/expected.tsv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| parse_row(l).unwrap_or_else(|| panic!("{}: bad row {l:?}", path.display())))
        .collect()
}

fn parse_row(line: &str) -> Option<Expected> {
    let mut cols = line.split('\t');
    let (file, verdict, ops) = (cols.next()?, cols.next()?, cols.next()?);
    let linearizable = match verdict {
        "ok" => true,
        "illegal" => false,
        _ => return None,
    };
    Some(Expected {
        file: file.to_owned(),
        linearizable,
        ops: ops.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expected_rows_name_every_file_of_the_checksum_list() {
        let rows = porcupine_expected();
        assert_eq!(rows.len(), 109);
        let mut listed: Vec<String> = porcupine_files().into_iter().map(|(_, f)| f).collect();
        let mut expected: Vec<String> = rows.iter().map(|r| r.file.clone()).collect();
        listed.sort();
        expected.sort();
        assert_eq!(listed, expected);
        assert!(rows.iter().any(|r| r.linearizable) && rows.iter().any(|r| !r.linearizable));
    }

    #[test]
    fn a_row_needs_a_known_verdict_and_a_count() {
        assert_eq!(
            parse_row("kv/c01-ok.txt\tok\t60"),
            Some(Expected {
                file: "kv/c01-ok.txt".into(),
                linearizable: true,
                ops: 60
            })
        );
        assert_eq!(parse_row("kv/c01-ok.txt\tmaybe\t60"), None);
        assert_eq!(parse_row("kv/c01-ok.txt\tok"), None);
    }
}
