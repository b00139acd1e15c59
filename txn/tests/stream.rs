//! The streaming reader against the obvious one: a JSONL file read by
//! `stream::read_file` must give the same transactions (ids, positions,
//! statuses, times, micro-ops key by key and value by value) and the same
//! verdict as the file read into a `History` and parsed from there; on the
//! golden files, on lines the fast path leaves to the slow one, and on
//! hundreds of random histories with crashes, failures, other operations
//! and nemesis events mixed in.

use std::path::Path;

use faultline_histories::{read_history_file, Event, EventType, JsonlWriter, Key, Process, ReadLimits, F};
use faultline_testkit::TestRng;
use faultline_txn::parse::{parse, Mop, Txns};
use faultline_txn::{check_txns, stream, Config};
use rand::Rng;
use serde_json::{json, Value};

/// A transaction's every field, with keys and values by what they are
/// (`Int(1)` is not `Json("1")`), not by their ids.
fn render(tx: &Txns) -> Vec<String> {
    (0..tx.txns.len() as u32)
        .map(|t| {
            let x = &tx.txns[t as usize];
            let mops: Vec<String> = tx.mops_of(t).iter().map(|m| mop(tx, m)).collect();
            format!(
                "op {} p {} {:?} invoked {}@{} completed {:?}@{:?}: {}",
                x.op,
                x.process,
                x.status,
                x.invoke_index,
                x.invoke_time,
                x.complete_index,
                x.complete_time,
                mops.join(", ")
            )
        })
        .collect()
}

fn mop(tx: &Txns, m: &Mop) -> String {
    let k = |k: u32| format!("{:?}", tx.keys.get(k));
    let v = |v: u32| format!("{:?}", tx.vals.get(v));
    match *m {
        Mop::Append { key, val } => format!("append {} {}", k(key), v(val)),
        Mop::Write { key, val } => format!("w {} {}", k(key), v(val)),
        Mop::ReadList { key, start, len } => {
            let l: Vec<String> = tx.list(start, len).iter().map(|&x| v(x)).collect();
            format!("r {} [{}]", k(key), l.join(" "))
        }
        Mop::ReadReg { key, val } => format!("r {} {:?}", k(key), val.map(v)),
        Mop::ReadUnknown { key } => format!("r {} ?", k(key)),
    }
}

/// Reads `path` both ways and asserts they agree; returns the transactions.
fn agree(path: &Path) -> Txns {
    let h = read_history_file(path).expect("the history reader reads it");
    let slow = parse(&h).expect("parses");
    let fast = stream::read_file(path, &ReadLimits::default()).expect("the streaming reader reads it");
    assert_eq!(fast.ops, h.ops.len(), "{}", path.display());
    assert_eq!(fast.warnings, h.warnings, "{}", path.display());
    assert_eq!(render(&fast.txns), render(&slow), "{}", path.display());
    let config = Config::default();
    let (a, b) = (check_txns(&fast.txns, &config), check_txns(&slow, &config));
    match (a, b) {
        (Ok(a), Ok(b)) => {
            assert_eq!((a.valid, &a.anomaly_types), (b.valid, &b.anomaly_types));
            assert_eq!(a.findings.counts, b.findings.counts);
            assert_eq!(a.covered_ops, b.covered_ops);
        }
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        (a, b) => panic!("{}: the readers disagree: {a:?} / {b:?}", path.display()),
    }
    fast.txns
}

#[test]
fn the_golden_files_read_alike() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("tests/golden") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "jsonl") {
            let tx = agree(&p);
            assert!(!tx.txns.is_empty(), "{}", p.display());
            n += 1;
        }
    }
    assert!(n >= 3, "golden JSONL files missing");
}

/// Lines the fast path cannot take, beside ones it can: a header, the
/// nemesis, an escaped field name, keys and values that are floats,
/// booleans, maps and integers past 64 bits, a write of null, another
/// operation's value before its `f`, and a crashed transaction.
const ODD: &str = r#"{"faultline_history":1,"test":"odd"}
{"index":0,"time":0,"process":0,"type":"invoke","f":"txn","value":[["append","x",1],["r","y",null]]}
{"index":1,"time":1,"process":"nemesis","type":"info","f":"start-partition","value":{"cut":[["n1"],["n2"]]}}
{"index":2,"time":2,"process":1,"type":"invoke","f":"read","key":"k","value":null}
{"index":3,"time":3,"process":0,"type":"ok","f":"txn","value":[["append","x",1],["r","y",[1.5,true]]]}
{"index":4,"time":4,"process":1,"type":"ok","value":{"a":[1,2]},"f":"read","key":"k"}
{"index":5,"time":5,"process":2,"type":"invoke","f":"txn","value":[["w",2.5,null],["append","big",123456789012345678901234567890]]}
{"index":6,"time":6,"process":2,"type":"ok","f":"txn","value":[["w",2.5,null],["append","big",123456789012345678901234567890]]}
{"index":7,"time":7,"process":3,"type":"invoke","f":"txn","value":[["append","x",18446744073709551615],["r",{"m":1},null]]}
{"index":8,"time":8,"process":4,"type":"invoke","f":"txn","value":[["append","x",2]]}
{"ind\u0065x":9,"time":9,"process":4,"type":"fail","f":"txn","value":null}
{"index":10,"time":10,"process":5,"type":"invoke","f":"txn","value":[["r","x",null],["r","z",null]]}
{"index":11,"time":11,"process":5,"type":"ok","f":"txn","value":[["r","x",[1,18446744073709551615]],["r","z",null]]}
"#;

#[test]
fn lines_the_fast_path_leaves_read_as_the_history_reader_reads_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path().join("odd.jsonl");
    std::fs::write(&p, ODD).expect("write");
    let tx = agree(&p);
    let all = render(&tx).join("\n");
    // Not vacuous: the odd values made it through, and the crashed
    // transaction is there with what it was invoked with.
    for want in [
        "Json(\"1.5\")",
        "Json(\"true\")",
        "Json(\"2.5\")",
        "Json(\"null\")",
        "123456789012345678901234567890",
        "Json(\"18446744073709551615\")",
        "Json(\"{\\\"m\\\":1}\")",
        "op 3 p 3 Indeterminate invoked 7@7 completed None@None",
        "op 4 p 4 Aborted",
    ] {
        assert!(all.contains(want), "{want} missing from\n{all}");
    }
}

#[test]
fn a_truncated_last_line_is_dropped_with_a_warning_and_errors_name_their_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path().join("cut.jsonl");
    let cut = &ODD[..ODD.len() - 20];
    std::fs::write(&p, cut).expect("write");
    let s = agree_streamed(&p);
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    assert!(s.warnings[0].contains(":13:"), "{:?}", s.warnings);
    let twice = "{\"index\":0,\"time\":0,\"process\":0,\"type\":\"invoke\",\"f\":\"txn\",\"value\":[]}\n".repeat(2);
    std::fs::write(&p, twice).expect("write");
    let err = stream::read_file(&p, &ReadLimits::default()).unwrap_err().to_string();
    assert!(err.contains(":2") && err.contains("index 0"), "{err}");
    let long = format!("{}\n", " ".repeat(3 << 20));
    std::fs::write(&p, long).expect("write");
    let limits = ReadLimits::with_max_line_mib(1).expect("limits");
    let err = stream::read_file(&p, &limits).unwrap_err().to_string();
    assert!(err.contains("line 1") || err.contains(":1"), "{err}");
}

fn agree_streamed(p: &Path) -> stream::Streamed {
    agree(p);
    stream::read_file(p, &ReadLimits::default()).expect("reads")
}

/// A random history: processes invoke transactions over a few list and
/// register keys (and sometimes a single-key read, write, cas or append,
/// which count as transactions beside them), which end ok, fail, info
/// or never; the nemesis speaks now and then.
fn random_history(rng: &mut TestRng, path: &Path) {
    let mut w = JsonlWriter::create(path).expect("create");
    let mut open: Vec<Option<(F, Value, Option<Key>)>> = vec![None; 4];
    let mut next_val = 0u64;
    for _ in 0..rng.gen_range(1..40) {
        let p = rng.gen_range(0..open.len());
        if rng.gen_bool(0.05) {
            let ev = Event::new(0, 0, Process::Nemesis, EventType::Info, F::parse("kill"), json!(["n1"]));
            w.append(ev).expect("write");
        }
        let (kind, f, v, key) = match open[p].take() {
            None => {
                let (f, v, key) = plan(rng, &mut next_val);
                open[p] = Some((f.clone(), v.clone(), key.clone()));
                (EventType::Invoke, f, v, key)
            }
            Some((f, v, key)) => {
                let kind = [EventType::Ok, EventType::Ok, EventType::Fail, EventType::Info][rng.gen_range(0..4)];
                let done = if f == F::Read || f == F::Txn {
                    complete(rng, &v)
                } else {
                    v
                };
                (kind, f, done, key)
            }
        };
        let mut ev = Event::new(0, rng.gen_range(0..1000), Process::Client(p as u64), kind, f, v);
        ev.key = key;
        w.append(ev).expect("write");
    }
    w.flush().expect("flush");
}

/// A transaction (or, one time in five, a single-key operation, with its
/// key) as invoked.
fn plan(rng: &mut TestRng, next_val: &mut u64) -> (F, Value, Option<Key>) {
    if rng.gen_bool(0.2) {
        *next_val += 2;
        let v = *next_val;
        return match rng.gen_range(0..5) {
            0 => (F::Read, Value::Null, None),
            1 => (F::Read, Value::Null, Some(Key::from("r0"))),
            2 => (F::Write, json!(v), Some(Key::from("r1"))),
            3 => (F::Cas, json!([v - 10, v]), Some(Key::from("r0"))),
            _ => (F::Append, json!(v), Some(Key::from(0))),
        };
    }
    let mops: Vec<Value> = (0..rng.gen_range(1..4))
        .map(|_| {
            let list = rng.gen_bool(0.5);
            let key = if list {
                json!(rng.gen_range(0..3))
            } else {
                json!(format!("r{}", rng.gen_range(0..2)))
            };
            *next_val += 1;
            match rng.gen_range(0..2) {
                0 if list => json!(["append", key, *next_val]),
                0 => json!(["w", key, *next_val]),
                _ => json!(["r", key, null]),
            }
        })
        .collect();
    (F::Txn, Value::Array(mops), None)
}

/// Reads filled in with something plausible: a list, a number or null.
fn complete(rng: &mut TestRng, invoked: &Value) -> Value {
    let Some(mops) = invoked.as_array() else {
        return json!(rng.gen_range(0..5));
    };
    let filled = mops
        .iter()
        .map(|m| match m[0].as_str() {
            Some("r") if m[1].is_string() => {
                let v = if rng.gen_bool(0.5) {
                    Value::Null
                } else {
                    json!(rng.gen_range(0..50))
                };
                json!(["r", m[1], v])
            }
            Some("r") => {
                let l: Vec<u64> = (0..rng.gen_range(0..4)).map(|_| rng.gen_range(0..50)).collect();
                json!(["r", m[1], l])
            }
            _ => m.clone(),
        })
        .collect();
    Value::Array(filled)
}

#[test]
fn random_histories_read_alike() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rng = faultline_testkit::rng(7);
    let (mut txns, mut errors) = (0, 0);
    for i in 0..300 {
        let p = dir.path().join(format!("r{i}.jsonl"));
        random_history(&mut rng, &p);
        let h = read_history_file(&p).expect("readable");
        txns += agree(&p).txns.len();
        errors += usize::from(check_txns(&parse(&h).expect("parses"), &Config::default()).is_err());
        std::fs::remove_file(&p).expect("remove");
    }
    // Not vacuous: many transactions compared, and most histories
    // checkable (random reads sometimes make a history malformed, such as
    // a list read from a register key: both readers must say so alike).
    assert!(txns > 1000, "{txns} transactions");
    assert!(errors < 150, "{errors} of 300 histories could not be checked");
}
