//! The report's promises, checked on its output: the verdict, the anomaly's
//! sentence and operations are on the page, the page names no URL, hostile
//! values are escaped, and a million-operation report stays under 20 MB.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use faultline_checkers::linear::{Config, Linearizable, ModelSpec, NilReads};
use faultline_checkers::{Anomaly, Checker, OpRef, Validity, Verdict};
use faultline_histories::{Event, EventType, History, Process, F};
use faultline_report::{junit_xml, render_html, JunitSuite, ReportInput, RunMeta};
use serde_json::{json, Value};

fn ev(i: u64, t_ms: u64, p: u64, kind: EventType, f: F, v: Value) -> Event {
    Event::new(i, t_ms * 1_000_000, Process::Client(p), kind, f, v).with_key("x")
}

/// A register history with a stale read during a partition: process 1
/// writes 1 (ok), then process 2 reads null.
fn stale_read() -> History {
    let nem = |i, t_ms: u64, f: &str| {
        Event::new(
            i,
            t_ms * 1_000_000,
            Process::Nemesis,
            EventType::Info,
            F::parse(f),
            json!({"n1": ["n2"]}),
        )
    };
    History::from_events([
        nem(0, 0, "start-partition"),
        ev(1, 1, 1, EventType::Invoke, F::Write, json!(1)),
        ev(2, 2, 1, EventType::Ok, F::Write, json!(1)),
        ev(3, 3, 2, EventType::Invoke, F::Read, json!(null)),
        ev(4, 4, 2, EventType::Ok, F::Read, json!(null)),
        ev(
            5,
            5,
            3,
            EventType::Invoke,
            F::Write,
            json!("</script><script>alert(1)</script>"),
        ),
        ev(
            6,
            6,
            3,
            EventType::Fail,
            F::Write,
            json!("</script><script>alert(1)</script>"),
        ),
        nem(7, 10, "stop-partition"),
    ])
    .unwrap()
}

fn lin() -> Linearizable {
    Linearizable {
        config: Config {
            model: ModelSpec::Register {
                initial: json!(null),
                nil_reads: NilReads::Value,
            },
            time_limit: Duration::from_secs(10),
            ..Config::default()
        },
    }
}

#[test]
fn the_page_shows_the_verdict_the_sentence_and_the_operations_and_names_no_url() {
    let h = stale_read();
    let verdict = lin().check(&h);
    assert_eq!(verdict.valid, Validity::Invalid, "the planted anomaly is found");
    let sentence = verdict.anomalies[0].explanation.clone();
    let mut verdicts = BTreeMap::new();
    verdicts.insert("linearizable".to_owned(), verdict);
    let meta = RunMeta {
        test: Some("register-partition".into()),
        seed: Some(42),
        rerun: Some("faultline run --seed 42".into()),
        ..RunMeta::default()
    };
    let page = render_html(&ReportInput {
        history: &h,
        verdicts: &verdicts,
        meta: &meta,
    });
    assert!(page.contains("id=\"verdict\">INVALID<"), "overall verdict");
    assert!(
        page.contains(&faultline_report::escape::html(&sentence)),
        "the sentence: {sentence}"
    );
    assert!(
        page.contains("href=\"#op-1\"") && page.contains("href=\"#op-3\""),
        "both ops link to the timeline: {}",
        page.split("id=\"anomalies\"")
            .nth(1)
            .unwrap_or("")
            .split("</section>")
            .next()
            .unwrap_or("")
    );
    assert!(page.contains("faults in force: partition"), "the active fault is named");
    assert!(page.contains("faultline run --seed 42"));
    assert!(!page.contains("http://") && !page.contains("https://"), "no URL");
    assert!(
        !page.contains("<script src") && !page.contains("<link "),
        "no external resource"
    );
    assert!(!page.contains("<script>alert(1)"), "hostile values are escaped");
    assert_eq!(
        page.matches("<script").count(),
        2,
        "the data and the code, nothing else"
    );
}

#[test]
fn operations_no_checker_looked_at_make_the_page_unknown_not_valid() {
    let h = stale_read();
    let mut verdicts = BTreeMap::new();
    verdicts.insert("read-your-writes".to_owned(), Verdict::valid(2, Duration::ZERO));
    let render = |meta: &RunMeta| {
        render_html(&ReportInput {
            history: &h,
            verdicts: &verdicts,
            meta,
        })
    };
    assert!(render(&RunMeta::default()).contains("id=\"verdict\">valid<"));
    let meta = RunMeta {
        unchecked: [("acquire".to_owned(), 12)].into(),
        ..RunMeta::default()
    };
    let page = render(&meta);
    assert!(page.contains("id=\"verdict\">unknown<"), "the page's verdict");
    assert!(page.contains("12 `acquire` operations no checker looked at"));
}

#[test]
fn junit_has_one_case_per_checker_with_the_sentence() {
    let h = stale_read();
    let mut verdicts = BTreeMap::new();
    verdicts.insert("linearizable".to_owned(), lin().check(&h));
    verdicts.insert("read-your-writes".to_owned(), Verdict::valid(2, Duration::ZERO));
    let x = junit_xml(&[JunitSuite {
        name: "t".into(),
        verdicts: &verdicts,
        properties: vec![],
    }]);
    assert_eq!(x.matches("<testcase ").count(), 2);
    assert_eq!(x.matches("<failure ").count(), 1);
    assert!(x.contains("op 3 (process 2 read x"), "{x}");
}

/// A register-like history of `n` operations by 10 workers over `n/1000`
/// seconds, with fail and info outcomes (info retires the process), and a
/// partition or a kill every 5 s.
fn big_history(n: u64) -> History {
    let mut evs = Vec::with_capacity(2 * n as usize + 1000);
    let mut idx = 0u64;
    let mut procs: Vec<u64> = (0..10).collect();
    let mut next_proc = 10;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let t_end_ns = n * 1_000_000;
    let mut fault_t = 0;
    for k in 0..n {
        let w = (k % 10) as usize;
        let t = k * 1_000_000;
        while fault_t + 5_000_000_000 <= t {
            fault_t += 5_000_000_000;
            let (start, stop) = if (fault_t / 5_000_000_000) % 2 == 0 {
                ("start-partition", "stop-partition")
            } else {
                ("kill", "start")
            };
            let v = json!({"node": "n2"});
            evs.push(Event::new(
                idx,
                fault_t,
                Process::Nemesis,
                EventType::Info,
                F::parse(start),
                v.clone(),
            ));
            evs.push(Event::new(
                idx + 1,
                fault_t + 2_000_000_000,
                Process::Nemesis,
                EventType::Info,
                F::parse(stop),
                v,
            ));
            idx += 2;
        }
        let r = rnd();
        let f = if r % 2 == 0 { F::Read } else { F::Write };
        let p = Process::Client(procs[w]);
        let key = format!("k{}", r % 100);
        evs.push(Event::new(idx, t, p, EventType::Invoke, f.clone(), json!(k)).with_key(key.as_str()));
        let kind = match r % 100 {
            0 => EventType::Info,
            1..=3 => EventType::Fail,
            _ => EventType::Ok,
        };
        let lat = 100_000 + (r >> 20) % 900_000;
        evs.push(Event::new(idx + 1, t + lat, p, kind, f, json!(k)).with_key(key.as_str()));
        idx += 2;
        if kind == EventType::Info {
            procs[w] = next_proc;
            next_proc += 1;
        }
    }
    // Events must be in time order for the file; the nemesis pairs above are not.
    evs.sort_by_key(|e| (e.time, e.index));
    for (i, e) in evs.iter_mut().enumerate() {
        e.index = i as u64;
    }
    let h = History::from_events(evs).unwrap();
    assert!(h.ops.last().unwrap().invoke_time < t_end_ns);
    h
}

#[test]
fn a_million_operation_report_stays_under_20_mb_and_keeps_the_anomaly_in_detail() {
    let h = big_history(1_000_000);
    let (a, b) = (&h.ops[400_000], &h.ops[400_003]);
    let anomaly = Anomaly::new(
        "stale-read",
        None,
        vec![OpRef::new(&h, a), OpRef::new(&h, b)],
        format!("op {} read a value older than op {}", b.invoke_index, a.invoke_index),
    );
    let mut verdicts = BTreeMap::new();
    verdicts.insert(
        "linearizable".to_owned(),
        Verdict::from_anomalies(h.ops.len(), Duration::ZERO, vec![anomaly]),
    );
    let meta = RunMeta::default();
    let start = Instant::now();
    let page = render_html(&ReportInput {
        history: &h,
        verdicts: &verdicts,
        meta: &meta,
    });
    let took = start.elapsed();
    eprintln!("1M-op report: {} bytes in {took:?}", page.len());
    assert!(page.len() < 20 << 20, "{} bytes", page.len());
    assert!(page.len() > 1 << 20, "the page is not vacuous: {} bytes", page.len());
    let data = page
        .split("id=\"timeline-data\">")
        .nth(1)
        .unwrap()
        .split("</script>")
        .next()
        .unwrap();
    let v: Value = serde_json::from_str(data).unwrap();
    let ops = v["ops"].as_array().unwrap();
    assert!(ops.len() <= 50_000, "{}", ops.len());
    assert!(
        ops.iter().any(|o| o[5] == json!(b.invoke_index)),
        "the anomaly's op is drawn individually"
    );
    assert!(v["cells"].as_array().unwrap().len() / 6 <= 200_000);
}

#[test]
fn nodes_show_roles_epochs_lag_and_log_links() {
    use faultline_report::{NodeInfo, NodeSample};
    let h = stale_read();
    let sample = |t_ms: u64, node: &str, role: Option<&str>, epoch, lag| NodeSample {
        time_ns: t_ms * 1_000_000,
        node: node.into(),
        role: role.map(str::to_owned),
        epoch,
        lag,
    };
    let meta = RunMeta {
        nodes: vec![NodeInfo {
            name: "n1".into(),
            logs: vec!["nodes/n1/node.log".into()],
        }],
        samples: vec![
            sample(0, "n1", Some("leader"), Some(1), Some(0)),
            sample(5, "n1", None, None, None),
            sample(0, "n2", Some("follower"), Some(1), Some(7)),
            sample(5, "n2", Some("leader"), Some(2), Some(0)),
        ],
        ..RunMeta::default()
    };
    let verdicts = BTreeMap::new();
    let page = render_html(&ReportInput {
        history: &h,
        verdicts: &verdicts,
        meta: &meta,
    });
    let nodes = page
        .split("id=\"nodes\"")
        .nth(1)
        .unwrap()
        .split("</section>")
        .next()
        .unwrap();
    assert!(
        nodes.contains("class=\"role leader\"") && nodes.contains("class=\"role silent\""),
        "{nodes}"
    );
    assert!(nodes.contains("leader epoch 2"), "{nodes}");
    assert!(nodes.contains("<title>n2 lag</title>"), "{nodes}");
    assert!(nodes.contains("href=\"nodes/n1/node.log\""), "{nodes}");
    assert!(page.contains("id=\"verdict\">unchecked<"), "no checker is not a pass");
}

/// The page of a run with many anomalies reads at a glance: a navigation
/// bar to every section, per checker the first three anomalies with the
/// rest folded under "show all", the settings that matter shown and the
/// rest folded, legends, and the faults named on the plots.
#[test]
fn many_anomalies_are_folded_past_the_first_few_and_the_settings_past_the_ones_that_matter() {
    let h = stale_read();
    let proof = lin().check(&h).anomalies[0].clone();
    let mut verdicts = BTreeMap::new();
    verdicts.insert(
        "linearizable".to_owned(),
        Verdict::from_anomalies(2, Duration::ZERO, vec![proof; 40]),
    );
    let meta = RunMeta {
        settings: vec![("db".into(), "faultline".into())],
        settings_folded: vec![("ssh.user".into(), "root".into())],
        ..RunMeta::default()
    };
    let page = render_html(&ReportInput {
        history: &h,
        verdicts: &verdicts,
        meta: &meta,
    });
    let nav = page
        .split("<nav id=\"nav\"")
        .nth(1)
        .unwrap()
        .split("</nav>")
        .next()
        .unwrap();
    for id in ["summary", "anomalies", "timeline", "plots", "nodes"] {
        assert!(nav.contains(&format!("href=\"#{id}\"")), "{nav}");
        assert!(page.contains(&format!("<section id=\"{id}\"")), "{id}");
    }
    let group = page.split("id=\"anomalies-linearizable\"").nth(1).unwrap();
    let (open, folded) = group
        .split_once("<details class=\"more-anomalies\">")
        .expect("the rest is folded");
    assert_eq!(
        open.matches("<article class=\"anomaly\"").count(),
        3,
        "the first three are open"
    );
    assert!(
        folded.starts_with("<summary>show all 40 of linearizable</summary>"),
        "{}",
        &folded[..80]
    );
    let folded = folded.split("</details>").next().unwrap();
    assert_eq!(folded.matches("<article class=\"anomaly\"").count(), 37);
    let (shown, more) = page
        .split_once("<details id=\"settings-more\">")
        .expect("settings folded");
    assert!(shown.contains("<th>db</th><td>faultline</td>") && !shown.contains("ssh.user"));
    assert!(more.contains("<th>ssh.user</th><td>root</td>"));
    for legend in ["id=\"tl-legend\"", "id=\"plot-legend\""] {
        assert!(page.contains(legend), "{legend}");
    }
    assert!(page.contains("<span class=\"key\"><i class=\"swatch band-partition\"></i>partition</span>"));
    let plots = page.split("id=\"plots\"").nth(1).unwrap();
    assert!(plots.contains(">partition</text>"), "the band is named in the plots");
    assert!(
        !page.contains("createElement(\"button\")") && !page.contains("class=\"marked-op\""),
        "no wall of operation buttons"
    );
}
