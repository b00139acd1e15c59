//! Bad input against a live node, and a live node against a `BTreeMap`
//! model under random operations.

mod common;

use common::*;
use faultline_server::protocol::{Outcome, Reply};
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestRunner};
use rand::Rng;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends raw bytes and returns whatever comes back before the node closes
/// the connection or 500 ms pass.
async fn send_raw(addr: &str, bytes: &[u8], close_after: bool) -> Vec<u8> {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return Vec::new();
    };
    let _ = s.write_all(bytes).await;
    if close_after {
        return Vec::new();
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_millis(500), s.read_to_end(&mut out)).await;
    out
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

fn first_reply(bytes: &[u8]) -> Option<Reply> {
    if bytes.len() < 4 {
        return None;
    }
    let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
    serde_json::from_slice(bytes.get(4..4 + len)?).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_never_crashes_a_live_node() {
    let mut c = Cluster::start(3, &format!("max_connections=64,{FAST}")).await;
    let ids = c.ids();
    let all: Vec<&str> = ids.iter().map(String::as_str).collect();
    let leader = c.wait_leader(&all).await;
    let addr = c.addr(&leader);
    // Malformed JSON in a good frame: a fail reply.
    let r = first_reply(&send_raw(&addr, &frame(b"{not json"), false).await).unwrap();
    assert_eq!(r.result, Outcome::Fail);
    // Unknown operation: a fail reply carrying the request id.
    let body = json!({"id": 77, "op": "drop_database"}).to_string();
    let r = first_reply(&send_raw(&addr, &frame(body.as_bytes()), false).await).unwrap();
    assert_eq!((r.id, r.result), (77, Outcome::Fail));
    // Missing fields.
    let body = json!({"id": 78, "op": "cas", "key": "a"}).to_string();
    let r = first_reply(&send_raw(&addr, &frame(body.as_bytes()), false).await).unwrap();
    assert_eq!((r.id, r.result), (78, Outcome::Fail));
    // A frame announcing 4 GiB: refused before allocation, connection closed.
    let r = first_reply(&send_raw(&addr, &[0xff, 0xff, 0xff, 0xff, 1, 2, 3], false).await);
    assert_eq!(r.map(|r| r.result), Some(Outcome::Fail));
    // A huge value (over the frame limit).
    let big = json!({"id": 1, "op": "write", "key": "a", "value": "x".repeat(2 << 20)});
    let _ = send_raw(&addr, &frame(big.to_string().as_bytes()), false).await;
    // Half a frame, then the client disconnects.
    let _ = send_raw(&addr, &[0, 0, 0, 100, b'{', b'"'], true).await;
    // A peer hello from a stranger, and a real peer name followed by junk.
    let _ = send_raw(&addr, &frame(br#"{"hello":"mallory"}"#), false).await;
    let mut junk = frame(br#"{"hello":"n2"}"#);
    junk.extend(frame(b"\x00\x01garbage"));
    let _ = send_raw(&addr, &junk, false).await;
    // Random bytes, seeded.
    let seed = 0x5eed_u64;
    eprintln!("garbage seed {seed}");
    let mut rng = faultline_testkit::rng(seed);
    for _ in 0..40 {
        let len = rng.gen_range(0..300);
        let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let _ = send_raw(&addr, &bytes, rng.gen_bool(0.5)).await;
    }
    // More connections than the limit: the extra ones are closed. They are
    // held until the node has refused one: dropped at once, the node could
    // accept each after the one before had already gone, never over the limit.
    let log_path = c.nodes[c.idx(&leader)].dir.with_extension("log");
    let mut held = Vec::new();
    for _ in 0..80 {
        if let Ok(s) = TcpStream::connect(&addr).await {
            held.push(s);
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .contains("connection limit reached")
    {
        assert!(std::time::Instant::now() < deadline, "no connection was refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(held);
    // The node is alive and serves.
    let i = c.idx(&leader);
    assert!(c.nodes[i].is_running(), "node died:\n{}", c.nodes[i].log_tail());
    let mut cl = c.client(&leader).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let w = cl.write("after", json!("garbage")).await;
        if w.result == Outcome::Ok {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no service: {w:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cl.read("after").await.value, json!("garbage"));
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("bad request"));
    c.kill(&leader);
}

#[derive(Debug, Clone)]
enum ModelOp {
    Write(u8, i64),
    Cas(u8, Option<i64>, i64),
    Append(u8, i64),
    Read(u8),
}

fn op_strategy() -> impl Strategy<Value = ModelOp> {
    prop_oneof![
        (0u8..3, 0i64..4).prop_map(|(k, v)| ModelOp::Write(k, v)),
        (0u8..3, proptest::option::of(0i64..4), 0i64..4).prop_map(|(k, e, v)| ModelOp::Cas(k, e, v)),
        (3u8..5, 0i64..4).prop_map(|(k, v)| ModelOp::Append(k, v)),
        (0u8..5).prop_map(ModelOp::Read),
    ]
}

#[test]
fn live_node_matches_btreemap_model() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cluster = rt.block_on(Cluster::start(1, FAST));
    rt.block_on(cluster.wait_leader(&["n1"]));
    let mut runner = TestRunner::new(PtConfig {
        cases: 24,
        ..PtConfig::default()
    });
    let case = std::sync::atomic::AtomicU64::new(0);
    let result = runner.run(&proptest::collection::vec(op_strategy(), 1..40), |ops| {
        let prefix = format!("c{}-", case.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
        rt.block_on(async {
            let mut cl = cluster.client("n1").await;
            let mut model: BTreeMap<String, Value> = BTreeMap::new();
            for op in &ops {
                check_one(&mut cl, &mut model, &prefix, op).await?;
            }
            Ok(())
        })
    });
    drop(cluster);
    result.unwrap();
}

async fn check_one(
    cl: &mut faultline_server::Client,
    model: &mut BTreeMap<String, Value>,
    prefix: &str,
    op: &ModelOp,
) -> Result<(), TestCaseError> {
    match op {
        ModelOp::Write(k, v) => {
            let key = format!("{prefix}{k}");
            prop_assert_eq!(cl.write(&key, int(*v)).await.result, Outcome::Ok);
            model.insert(key, int(*v));
        }
        ModelOp::Cas(k, e, v) => {
            let key = format!("{prefix}{k}");
            let expected = e.map(int).unwrap_or(Value::Null);
            let r = cl.cas(&key, expected.clone(), int(*v)).await;
            let current = model.get(&key).cloned().unwrap_or(Value::Null);
            if current == expected {
                prop_assert_eq!(r.result, Outcome::Ok);
                model.insert(key, int(*v));
            } else {
                prop_assert_eq!(r.result, Outcome::Fail);
            }
        }
        ModelOp::Append(k, v) => {
            let key = format!("{prefix}{k}");
            prop_assert_eq!(cl.append(&key, int(*v)).await.result, Outcome::Ok);
            let list = model.entry(key).or_insert_with(|| Value::Array(vec![]));
            list.as_array_mut().unwrap().push(int(*v));
        }
        ModelOp::Read(k) => {
            let key = format!("{prefix}{k}");
            let r = cl.read(&key).await;
            prop_assert_eq!(r.result, Outcome::Ok);
            prop_assert_eq!(r.value, model.get(&key).cloned().unwrap_or(Value::Null));
        }
    }
    Ok(())
}
