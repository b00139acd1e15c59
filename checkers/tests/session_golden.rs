//! Golden histories for the session, prefix, lost-write and convergence
//! checkers: every `tests/golden/session/NAME.jsonl` is checked by all of
//! them, and the verdicts (pretty JSON, `elapsed_ms` zeroed) must equal
//! `NAME.expected`. `FAULTLINE_BLESS=1` rewrites the expectations.
//!
//! A blessed file can still be wrong, so the name also states the answer of
//! the checker it is about: `ALIAS-FORM-holds...` must be valid for checker
//! ALIAS, `...-breaks...` invalid, `...-unknown...` unknown.

use std::path::{Path, PathBuf};

use faultline_checkers::session;
use faultline_checkers::Validity;
use faultline_histories::{read_history_file, History};
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/session")
}

fn histories() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("golden directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "golden histories missing: {}", files.len());
    files
}

fn load(path: &Path) -> History {
    read_history_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// All verdicts of a history as the JSON the expectation holds.
fn verdicts(h: &History) -> Value {
    let mut out = serde_json::Map::new();
    for (name, mut v) in session::check_all(h, &[]).expect("known names") {
        v.elapsed_ms = 0.0;
        out.insert(name.to_owned(), serde_json::to_value(&v).expect("verdict serializes"));
    }
    Value::Object(out)
}

/// The checker a golden file is about and the answer its name promises;
/// `None` for not applicable (`-na`).
fn promise(stem: &str) -> (&'static str, Option<Validity>) {
    let alias = stem.split('-').next().expect("a name");
    let name = session::by_name(alias)
        .unwrap_or_else(|| panic!("{stem}: unknown checker alias {alias}"))
        .name();
    let validity = if stem.contains("-holds") {
        Some(Validity::Valid)
    } else if stem.contains("-breaks") {
        Some(Validity::Invalid)
    } else if stem.contains("-unknown") {
        Some(Validity::Unknown)
    } else if stem.contains("-na") {
        None
    } else {
        panic!("{stem}: the name must say holds, breaks, unknown or na")
    };
    (name, validity)
}

fn validity_of(json: &Value) -> Validity {
    match &json["valid"] {
        Value::Bool(true) => Validity::Valid,
        Value::Bool(false) => Validity::Invalid,
        _ => Validity::Unknown,
    }
}

#[test]
fn golden_histories_give_their_expected_verdicts() {
    let bless = std::env::var_os("FAULTLINE_BLESS").is_some_and(|v| v == "1");
    let mut failures = Vec::new();
    for path in histories() {
        let stem = path.file_stem().expect("stem").to_string_lossy().into_owned();
        let got = verdicts(&load(&path));
        let (name, want) = promise(&stem);
        let applies = got[name]["details"]["applicable"] != Value::Bool(false);
        let kept = match want {
            Some(want) => validity_of(&got[name]) == want && applies,
            None => !applies,
        };
        if !kept {
            failures.push(format!(
                "{stem}: {name} should be {want:?} (None: not applicable), got {}",
                got[name]
            ));
        }
        let text = serde_json::to_string_pretty(&got).expect("json") + "\n";
        let expected = path.with_extension("expected");
        if bless {
            std::fs::write(&expected, &text).expect("write expectation");
            continue;
        }
        match std::fs::read_to_string(&expected) {
            Ok(want) if want == text => {}
            Ok(_) => failures.push(format!("{stem}: verdicts differ from {}:\n{text}", expected.display())),
            Err(_) => failures.push(format!("{stem}: no {}; run with FAULTLINE_BLESS=1", expected.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn each_checker_alone_agrees_with_check_all() {
    for path in histories() {
        let h = load(&path);
        let all = session::check_all(&h, &[]).expect("known names");
        for (name, together) in all {
            let alone = session::by_name(name).expect("by name").check(&h);
            assert_eq!(alone.valid, together.valid, "{}: {name}", path.display());
            assert_eq!(alone.anomalies, together.anomalies, "{}: {name}", path.display());
        }
    }
}

#[test]
fn names_and_aliases_resolve_to_the_same_checker() {
    let pairs = [
        ("read-your-writes", "ryw"),
        ("monotonic-reads", "mr"),
        ("monotonic-writes", "mw"),
        ("writes-follow-reads", "wfr"),
        ("consistent-prefix", "cp"),
        ("lost-writes", "lost"),
        ("convergence", "conv"),
    ];
    for (name, alias) in pairs {
        assert_eq!(session::by_name(name).expect("name").name(), name);
        assert_eq!(session::by_name(alias).expect("alias").name(), name);
    }
    assert!(session::by_name("linearizable").is_none());
    assert!(session::check_all(&History::default(), &["nope"]).is_err());
}

#[test]
fn applicable_follows_the_operations_in_the_file() {
    let names = |stem: &str| -> Vec<&'static str> {
        let h = load(&dir().join(format!("{stem}.jsonl")));
        session::applicable(&h).iter().map(|c| c.name()).collect()
    };
    assert_eq!(
        names("lost-list-breaks"),
        ["consistent-prefix", "lost-writes", "convergence"],
        "no process both wrote and read a key"
    );
    assert_eq!(
        names("ryw-register-breaks"),
        ["read-your-writes", "monotonic-writes"],
        "no process reads a key twice or writes after reading"
    );
    assert!(names("cp-register-breaks").contains(&"consistent-prefix"));
}

#[test]
fn a_checker_with_nothing_to_judge_says_so() {
    let h = load(&dir().join("ryw-list-holds.jsonl"));
    for name in ["lost-writes", "convergence"] {
        let v = session::by_name(name).expect("name").check(&h);
        assert_eq!(v.valid, Validity::Valid);
        assert_eq!(v.ops, 0);
        assert_eq!(v.details["applicable"], Value::Bool(false), "{name}");
        assert!(v.details["why"].as_str().is_some_and(|w| w.contains("final")));
    }
}
