//! `ci/testdata` against a local mirror standing in for GitHub: a clone with
//! no `../shared` fetches Porcupine's histories, verifies every checksum,
//! and refuses a file whose bytes differ from the pinned ones. The mirror is
//! built from the data this machine already has (the same bytes), so the
//! test talks to no network.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use faultline_testdata::{is_complete, porcupine, porcupine_files, repo_root};

/// Whether curl, which the script fetches with, is here; skips (fails in
/// CI) when it is not.
fn have_curl() -> bool {
    let found = Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(!faultline_testdata::in_ci(), "CI=true and curl is missing");
        eprintln!("skipping: curl is not installed");
    }
    found
}

/// A copy of the Porcupine folder, laid out as Porcupine's `test_data/`.
fn mirror_of(data: &Path, into: &Path) -> PathBuf {
    for (_, file) in porcupine_files() {
        let to = into.join(&file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(data.join(&file), &to).unwrap();
    }
    into.to_path_buf()
}

/// Runs the script into `dest` (as `$FAULTLINE_TESTDATA`) from `mirror`.
fn fetch(dest: &Path, mirror: &Path) -> Output {
    Command::new("bash")
        .arg(repo_root().join("ci/testdata"))
        .env("FAULTLINE_TESTDATA", dest)
        .env("FAULTLINE_TESTDATA_BASE_URL", format!("file://{}", mirror.display()))
        .output()
        .expect("running ci/testdata")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_clone_without_shared_fetches_and_verifies_every_file() {
    let Some(data) = porcupine() else { return };
    if !have_curl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mirror = mirror_of(&data, &tmp.path().join("mirror"));
    let dest = tmp.path().join("fetched");
    let out = fetch(&dest, &mirror);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("fetched 109 files"),
        "{}",
        text(&out)
    );
    let fetched = dest.join("porcupine");
    assert!(is_complete(&fetched));
    for (_, file) in porcupine_files() {
        assert_eq!(
            std::fs::read(fetched.join(&file)).unwrap(),
            std::fs::read(data.join(&file)).unwrap(),
            "{file}"
        );
    }
    // Run again: everything verified in place, nothing fetched.
    let again = fetch(&dest, &mirror);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("fetched 0 files"),
        "{}",
        text(&again)
    );
}

#[test]
fn a_file_whose_checksum_differs_is_refused() {
    let Some(data) = porcupine() else { return };
    if !have_curl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mirror = mirror_of(&data, &tmp.path().join("mirror"));
    let victim = "kv/c10-bad.txt";
    let mut bytes = std::fs::read(mirror.join(victim)).unwrap();
    bytes[10] ^= 1;
    std::fs::write(mirror.join(victim), &bytes).unwrap();
    let dest = tmp.path().join("fetched");
    let out = fetch(&dest, &mirror);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("refused {victim}: checksum")), "{}", text(&out));
    // The bad download is not left where a test would read it, and the
    // folder does not count as complete.
    let fetched = dest.join("porcupine");
    assert!(!fetched.join(victim).exists());
    assert!(!fetched.join(format!("{victim}.part")).exists());
    assert!(!is_complete(&fetched));
    assert!(fetched.join("jepsen/etcd_000.log").is_file());
}

#[test]
fn a_damaged_local_copy_is_fetched_again() {
    let Some(data) = porcupine() else { return };
    if !have_curl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mirror = mirror_of(&data, &tmp.path().join("mirror"));
    let dest = tmp.path().join("fetched");
    assert!(fetch(&dest, &mirror).status.success());
    let victim = dest.join("porcupine/jepsen/etcd_002.log");
    std::fs::write(&victim, "damaged\n").unwrap();
    let out = fetch(&dest, &mirror);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("fetched 1 files"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        std::fs::read(data.join("jepsen/etcd_002.log")).unwrap()
    );
}
