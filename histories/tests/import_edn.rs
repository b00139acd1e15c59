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

/// Writes `text` as `name` in a fresh temporary folder.
fn temp_file(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn read_text(text: &str) -> History {
    let (_dir, path) = temp_file("history.edn", text);
    let (h, format) = read_any(&path, None, &ReadLimits::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(format, Format::JepsenEdn);
    h
}

const OPS: [&str; 4] = [
    "{:type :invoke, :f :write, :value 1, :process 0, :time 10, :index 0}",
    "{:type :invoke, :f :read, :value nil, :process 1, :time 11, :index 1}",
    "{:type :ok, :f :write, :value 1, :process 0, :time 20, :index 2}",
    "{:type :ok, :f :read, :value 1, :process 1, :time 21, :index 3}",
];

#[test]
fn a_list_a_vector_and_one_form_per_line_read_alike() {
    let lines = read_text(&(OPS.join("\n") + "\n"));
    assert_eq!(lines.ops.len(), 2);
    assert_eq!(lines.ops[1].output, json!(1));
    let forms = [
        format!("[{}]", OPS.join("\n ")),
        format!("({})\n", OPS.join("\n ")),
        format!("({})", OPS.join(" ")),
        format!("; Jepsen\n(\n{}\n)\n", OPS.join("\n")),
        format!("#_ :skip [{} #_ {{:type :ok}}]", OPS.join(", ")),
    ];
    for text in forms {
        let h = read_text(&text);
        assert_eq!(h.ops, lines.ops, "{text}");
    }
    let (_dir, path) = temp_file("history.edn", &format!("({}", OPS.join("\n")));
    let e = read_any(&path, None, &ReadLimits::default()).unwrap_err().to_string();
    assert!(
        e.ends_with("history.edn:4: the file ends before the `)` that closes the history"),
        "{e}"
    );
}

#[test]
fn a_store_folder_reads_its_history() {
    let (dir, _path) = temp_file("history.edn", &OPS.join("\n"));
    std::fs::write(dir.path().join("results.edn"), "{:valid? true}").unwrap();
    let (h, format) = read_any(dir.path(), None, &ReadLimits::default()).unwrap();
    assert_eq!((h.ops.len(), format), (2, Format::JepsenEdn));
    assert_eq!(detect_format(dir.path()).unwrap(), Format::JepsenEdn);
    let empty = tempfile::tempdir().unwrap();
    let e = read_any(empty.path(), None, &ReadLimits::default())
        .unwrap_err()
        .to_string();
    assert!(e.ends_with("a folder without history.edn or history.jsonl"), "{e}");
}

#[test]
fn mutex_and_queue_operations_keep_their_names() {
    let h = read_text(
        "{:type :invoke, :f :acquire, :value nil, :process 0}\n\
         {:type :ok, :f :acquire, :value nil, :process 0}\n\
         {:type :invoke, :f :release, :value nil, :process 0}\n\
         {:type :fail, :f :release, :value nil, :process 0, :error :not-held}\n\
         {:type :invoke, :f :enqueue, :value 3, :process 1}\n\
         {:type :ok, :f :enqueue, :value 3, :process 1}\n\
         {:type :invoke, :f :dequeue, :value nil, :process 2}\n\
         {:type :ok, :f :dequeue, :value 3, :process 2}\n",
    );
    let ops: Vec<_> = h
        .ops
        .iter()
        .map(|o| (o.f.clone(), o.input.clone(), o.output.clone(), o.outcome))
        .collect();
    let other = |name: &str| F::Other(name.into());
    assert_eq!(
        ops,
        vec![
            (other("acquire"), json!(null), json!(null), Outcome::Ok),
            (other("release"), json!(null), json!(null), Outcome::Fail),
            (other("enqueue"), json!(3), json!(3), Outcome::Ok),
            (other("dequeue"), json!(null), json!(3), Outcome::Ok),
        ]
    );
    assert_eq!(h.ops[1].error.as_deref(), Some("not-held"));
    assert!(h.keys.is_empty());
}

#[test]
fn multi_register_transactions_become_micro_op_arrays() {
    let h = read_text(
        "{:type :invoke, :f :txn, :value [[:read :x nil] [:write :y 2]], :process 0}\n\
         {:type :ok, :f :txn, :value [[:read :x 1] [:write :y 2]], :process 0}\n\
         {:type :invoke, :f :txn, :value ([:r \"k\" nil] [:append k 3] [:w 5 #{1}]), :process 1}\n\
         {:type :ok, :f :txn, :value ([:r \"k\" [1 2]] [:append k 3] [:w 5 #{1}]), :process 1}\n",
    );
    assert!(h.ops.iter().all(|o| o.f == F::Txn));
    assert!(h.keys.is_empty());
    assert_eq!(h.ops[0].input, json!([["read", "x", null], ["write", "y", 2]]));
    assert_eq!(h.ops[0].output, json!([["read", "x", 1], ["write", "y", 2]]));
    assert_eq!(
        h.ops[1].output,
        json!([["r", "k", [1, 2]], ["append", "k", 3], ["w", 5, {"$set": [1]}]])
    );
}

#[test]
fn values_are_told_apart_as_jepsen_tells_them() {
    let write_read = |written: &str, read: &str| {
        let h = read_text(&format!(
            "{{:type :invoke, :f :write, :value {written}, :process 0}}\n\
             {{:type :ok, :f :write, :value {written}, :process 0}}\n\
             {{:type :invoke, :f :read, :value nil, :process 1}}\n\
             {{:type :ok, :f :read, :value {read}, :process 1}}\n"
        ));
        (h.ops[0].input.clone(), h.ops[1].output.clone())
    };
    for (a, b) in [("#{1 2}", "#{2 1}"), ("{:a 1 :b 2}", "{:b 2 :a 1}"), ("(1 2)", "[1 2]")] {
        let (w, r) = write_read(a, b);
        assert_eq!(w, r, "{a} = {b}");
    }
    for (a, b) in [
        ("#{1 2}", "[1 2]"),
        (":a", "\"a\""),
        (":a", "a"),
        ("a", "\"a\""),
        ("18446744073709551616", "18446744073709551617N"),
    ] {
        let (w, r) = write_read(a, b);
        assert_ne!(w, r, "{a} != {b}");
    }
    assert_eq!(
        write_read("18446744073709551616N", "1").0,
        json!({"$int": "18446744073709551616"})
    );
}

#[test]
fn fifty_thousand_discards_and_deep_nesting_are_read_or_refused_without_a_crash() {
    let h = read_text(&format!(
        "{}{}\n{}",
        "#_ ".repeat(50_000),
        ":x ".repeat(50_000),
        OPS.join("\n")
    ));
    assert_eq!(h.ops.len(), 2);
    let (_dir, path) = temp_file("history.edn", &"[".repeat(100_000));
    let e = read_any(&path, None, &ReadLimits::default()).unwrap_err().to_string();
    assert!(e.contains("nested deeper than 256 levels"), "{e}");
}
