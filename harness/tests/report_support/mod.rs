//! Shared by the report and serve tests: a run folder as `faultline run`
//! leaves it, with a planted anomaly (a stale read during a partition), and
//! a way to run the `faultline` binary.

#![allow(dead_code)]

pub mod chromium;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `faultline` binary under test.
pub fn faultline() -> Command {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
}

/// Runs `faultline args...`, returning its output.
pub fn run(args: &[&str]) -> Output {
    faultline().args(args).output().expect("faultline runs")
}

/// A register history: process 1 writes 1 (ok) during a partition, then
/// process 2 reads null: not linearizable. Op indices: the write is op 2,
/// the read op 4.
pub const STALE_READ: &str = r#"{"faultline_history":1,"test":"register-partition","seed":42,"nodes":["n1","n2","n3"]}
{"index":0,"time":0,"process":"nemesis","type":"info","f":"start-partition","value":{"n1":["n2","n3"]}}
{"index":1,"time":500000,"process":0,"type":"invoke","f":"read","key":"x","value":null}
{"index":2,"time":1000000,"process":1,"type":"invoke","f":"write","key":"x","value":1}
{"index":3,"time":2000000,"process":1,"type":"ok","f":"write","key":"x","value":1,"node":"n1"}
{"index":4,"time":3000000,"process":2,"type":"invoke","f":"read","key":"x","value":null}
{"index":5,"time":4000000,"process":2,"type":"ok","f":"read","key":"x","value":null,"node":"n2"}
{"index":6,"time":4500000,"process":0,"type":"ok","f":"read","key":"x","value":null,"node":"n3"}
{"index":7,"time":9000000,"process":"nemesis","type":"info","f":"stop-partition","value":{"n1":["n2","n3"]}}
"#;

/// Writes a run folder `root/<test>/<stamp>/` with the stale-read history,
/// a config and a node log; returns the folder.
pub fn run_folder(root: &Path, test: &str, stamp: &str) -> PathBuf {
    let dir = root.join(test).join(stamp);
    std::fs::create_dir_all(dir.join("nodes/n1")).unwrap();
    std::fs::write(dir.join("history.jsonl"), STALE_READ).unwrap();
    std::fs::write(
        dir.join("config.json"),
        r#"{"test":"register-partition","seed":42,"nodes":3,"rerun":"faultline run --test register-partition --seed 42"}"#,
    )
    .unwrap();
    std::fs::write(dir.join("nodes/n1/node.log"), "n1 started\n").unwrap();
    dir
}

/// A register-like history of `n` operations by 10 workers, one invocation
/// a millisecond, with fail and info outcomes (info retires the process,
/// its worker goes on as a fresh one) and a partition or a kill of 2 s
/// every 5 s: the shape of a long nightly run, made in memory.
pub fn big_history(n: u64) -> faultline_histories::History {
    use faultline_histories::{Event, EventType, History, Process, F};
    use serde_json::json;
    let mut evs = Vec::with_capacity(2 * n as usize + 1000);
    let mut procs: Vec<u64> = (0..10).collect();
    let mut next_proc = 10;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut fault_t = 0;
    for k in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let (w, t) = ((k % 10) as usize, k * 1_000_000);
        while fault_t + 5_000_000_000 <= t {
            fault_t += 5_000_000_000;
            let (start, stop) = if (fault_t / 5_000_000_000) & 1 == 0 {
                ("start-partition", "stop-partition")
            } else {
                ("kill", "start")
            };
            let v = json!({"node": "n2"});
            let nem = |t, f: &str| Event::new(0, t, Process::Nemesis, EventType::Info, F::parse(f), v.clone());
            evs.push(nem(fault_t, start));
            evs.push(nem(fault_t + 2_000_000_000, stop));
        }
        let f = if x & 1 == 0 { F::Read } else { F::Write };
        let p = Process::Client(procs[w]);
        let key = format!("k{}", x % 100);
        evs.push(Event::new(0, t, p, EventType::Invoke, f.clone(), json!(k)).with_key(key.as_str()));
        let kind = match x % 100 {
            0 => EventType::Info,
            1..=3 => EventType::Fail,
            _ => EventType::Ok,
        };
        let latency = 100_000 + (x >> 20) % 900_000;
        evs.push(Event::new(0, t + latency, p, kind, f, json!(k)).with_key(key.as_str()));
        if kind == EventType::Info {
            procs[w] = next_proc;
            next_proc += 1;
        }
    }
    // Index in time order, as the harness's writer does.
    evs.sort_by_key(|e| e.time);
    for (i, e) in evs.iter_mut().enumerate() {
        e.index = i as u64;
    }
    History::from_events(evs).expect("a well-formed history")
}
