//! Reads the hand-made Jepsen histories in `tests/data`: an independent
//! register history written one operation per line and as one vector (the
//! same operations, so the two must read alike), and a list-append history
//! of transactions.

use std::path::{Path, PathBuf};

use faultline_histories::import::edn::{read_jepsen_edn, EdnOptions};
use faultline_histories::import::{detect_format, read_any, Format};
use faultline_histories::{EventType, History, Key, Outcome, Process, ReadLimits, F};
use serde_json::json;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn read(name: &str) -> History {
    read_jepsen_edn(&data(name), &EdnOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn an_independent_register_history_becomes_keyed_operations() {
    let h = read("jepsen-register-independent.edn");
    assert_eq!(h.keys, vec![Key::Int(1), Key::Int(2), Key::Str("k".into())]);
    let summary: Vec<_> = h
        .ops
        .iter()
        .map(|o| {
            (
                o.process,
                o.f.clone(),
                h.key(o.key.unwrap()).clone(),
                o.input.clone(),
                o.outcome,
            )
        })
        .collect();
    let p = Process::Client;
    assert_eq!(
        summary,
        vec![
            (p(0), F::Write, Key::Int(1), json!(3), Outcome::Ok),
            (p(1), F::Read, Key::Int(2), json!(null), Outcome::Ok),
            (p(0), F::Cas, Key::Int(1), json!([3, 4]), Outcome::Info),
            (p(1), F::Cas, Key::Int(2), json!([0, 1]), Outcome::Fail),
            (p(5), F::Read, Key::Int(1), json!(null), Outcome::Ok),
            (p(1), F::Write, Key::Str("k".into()), json!(7), Outcome::Pending),
        ]
    );
    assert_eq!(h.ops[4].output, json!(4));
    assert_eq!(h.ops[2].error.as_deref(), Some("timeout"));
    assert_eq!(h.ops[3].error.as_deref(), Some("precondition failed"));
    assert_eq!((h.ops[2].invoke_index, h.ops[2].invoke_time), (4, 3000));
    assert_eq!(h.node(h.ops[0].node.unwrap()), "n1");
    let nemesis: Vec<_> = h
        .nemesis
        .iter()
        .map(|e| (e.kind, e.f.to_string(), e.value.clone()))
        .collect();
    assert_eq!(
        nemesis,
        vec![
            (
                EventType::Info,
                "start-partition".to_owned(),
                json!({"$keyword": "majority"})
            ),
            (EventType::Info, "stop-partition".to_owned(), json!(null)),
        ]
    );
    assert!(h.nemesis.iter().all(|e| e.key.is_none()));
}

#[test]
fn the_vector_form_reads_like_one_operation_per_line() {
    let lines = read("jepsen-register-independent.edn");
    let vector = read("jepsen-register-independent-vector.edn");
    assert_eq!(lines.ops, vector.ops);
    assert_eq!(lines.nemesis, vector.nemesis);
    assert_eq!(lines.keys, vector.keys);
}

#[test]
fn independence_can_be_forced_off() {
    let path = data("jepsen-register-independent.edn");
    let h = read_jepsen_edn(
        &path,
        &EdnOptions {
            independent: Some(false),
            ..EdnOptions::default()
        },
    )
    .unwrap();
    assert!(h.keys.is_empty());
    assert_eq!(h.ops[2].input, json!([1, [3, 4]]));
}

#[test]
fn txn_micro_ops_become_json_arrays() {
    let h = read("jepsen-list-append.edn");
    assert!(h.keys.is_empty(), "two-micro-op transactions are no [key value] tuples");
    assert_eq!(h.ops.len(), 2);
    assert!(h.ops.iter().all(|o| o.f == F::Txn && o.outcome == Outcome::Ok));
    assert_eq!(h.ops[0].input, json!([["append", 1, 2], ["r", 1, null]]));
    assert_eq!(h.ops[0].output, json!([["append", 1, 2], ["r", 1, [2]]]));
    assert_eq!(h.ops[1].output, json!([["r", 1, [2]], ["w", 2, 3]]));
}

#[test]
fn the_fixtures_are_detected_as_jepsen_edn() {
    for name in [
        "jepsen-register-independent.edn",
        "jepsen-register-independent-vector.edn",
        "jepsen-list-append.edn",
    ] {
        assert_eq!(detect_format(&data(name)).unwrap(), Format::JepsenEdn, "{name}");
        assert_eq!(
            read_any(&data(name), None, &ReadLimits::default()).unwrap().1,
            Format::JepsenEdn
        );
    }
}
