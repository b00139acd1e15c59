//! A live node against clients that abuse it: connections that stay idle,
//! replies larger than a frame, pipelined `multi_read`s of large values
//! that are never read. Each test failed before the node bounded these
//! (idle connections locked clients out; a reply over 1 MiB was sent and
//! the project's client called it unknown; 512 pipelined reads took the
//! node up by hundreds of megabytes).

mod common;

use common::*;
use faultline_server::protocol::{Outcome, MAX_FRAME_BYTES};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn frame(body: &serde_json::Value) -> Vec<u8> {
    let body = body.to_string();
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body.as_bytes());
    f
}

/// One node, leading, serving.
async fn one_node(settings: &str) -> Cluster {
    let c = Cluster::start(1, &format!("{settings},{FAST}")).await;
    c.wait_leader(&["n1"]).await;
    c.warm_up().await;
    c
}

/// Writes `count` keys `big0..` of `bytes` each.
async fn write_big_keys(c: &Cluster, count: usize, bytes: usize) -> Vec<String> {
    let mut cl = c.client("n1").await;
    let keys: Vec<String> = (0..count).map(|i| format!("big{i}")).collect();
    for k in &keys {
        let w = cl.write(k, json!("v".repeat(bytes))).await;
        assert_eq!(w.result, Outcome::Ok, "{w:?}");
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_full_of_idle_connections_still_admits_a_client() {
    let c = one_node("max_connections=64").await;
    let addr = c.addr("n1");
    let mut idle = Vec::new();
    for _ in 0..64 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    // Let the node accept them all before the client comes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let mut cl = c.client("n1").await;
    let w = cl.write("k", json!(1)).await;
    assert_eq!(w.result, Outcome::Ok, "a full node locked the client out: {w:?}");
    assert_eq!(cl.read("k").await.value, json!(1));
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // Not vacuous: the node really was full, and made room by closing an
    // idle connection (it sees end of stream).
    let mut closed = 0;
    for s in &mut idle {
        let mut b = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(20), s.read(&mut b)).await {
            closed += 1;
        }
    }
    assert!(closed >= 1, "no idle connection was closed to make room");
    let log = std::fs::read_to_string(c.nodes[0].dir.with_extension("log")).unwrap();
    assert!(
        log.contains("closing the connection idle the longest"),
        "{}",
        c.nodes[0].log_tail()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_after_the_idle_timeout_and_a_busy_one_is_not() {
    let c = one_node("idle_timeout_ms=600").await;
    let addr = c.addr("n1");
    let started = Instant::now();
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    // A client that sends a request every 200 ms is never idle that long.
    let mut busy = c.client("n1").await;
    let mut b = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut b));
    let busy_loop = async {
        for i in 0..10 {
            let w = busy.write("busy", json!(i)).await;
            assert_eq!(w.result, Outcome::Ok, "request {i} on a busy connection: {w:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let (read, ()) = tokio::join!(read, busy_loop);
    assert!(matches!(read, Ok(Ok(0))), "idle connection not closed: {read:?}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(500), "closed too early: {waited:?}");
    // The project's client notices a connection the node closed and sends
    // its next request on a fresh one: ok, not unknown.
    let mut quiet = c.client("n1").await;
    assert_eq!(quiet.write("quiet", json!(1)).await.result, Outcome::Ok);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let w = quiet.write("quiet", json!(2)).await;
    assert_eq!(w.result, Outcome::Ok, "after the idle timeout: {w:?}");
    // A frame begun and never finished counts as idle too.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(&[0, 0, 0, 50, b'{']).await.unwrap();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut b)).await;
    assert!(matches!(read, Ok(Ok(0))), "half a frame held the connection: {read:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_over_the_frame_limit_is_a_clear_fail_not_a_frame_the_client_refuses() {
    let c = one_node("").await;
    // A list grown by appends past the frame limit: each append fits a
    // frame, the whole does not.
    let mut cl = c.client("n1").await;
    let piece = "x".repeat(MAX_FRAME_BYTES / 2);
    for _ in 0..3 {
        assert_eq!(cl.append("list", json!(piece)).await.result, Outcome::Ok);
    }
    let r = cl.read("list").await;
    assert_eq!(r.result, Outcome::Fail, "{:?}", r.error);
    assert!(r.error.as_deref().unwrap_or("").contains("frame limit"), "{r:?}");
    // Two keys that fit one by one but not together.
    let keys = write_big_keys(&c, 2, MAX_FRAME_BYTES * 6 / 10).await;
    let r = cl.multi_read(&keys[..1]).await;
    assert_eq!(r.result, Outcome::Ok, "{:?}", r.error);
    let r = cl.multi_read(&keys).await;
    assert_eq!(r.result, Outcome::Fail, "{:?}", r.error);
    assert!(r.error.as_deref().unwrap_or("").contains("frame limit"), "{r:?}");
    // The same key named many times counts each time.
    let many: Vec<String> = std::iter::repeat_n(keys[0].clone(), 100).collect();
    assert_eq!(cl.multi_read(&many).await.result, Outcome::Fail);
    // The connection is still good.
    assert_eq!(cl.write("after", json!(1)).await.result, Outcome::Ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_multi_reads_nobody_reads_do_not_balloon_the_node() {
    let c = one_node("").await;
    // 8 keys of 120 kB: one multi_read of all of them is a legal reply of
    // about 960 kB.
    let keys = write_big_keys(&c, 8, 120_000).await;
    let pid = c.nodes[0].pid().unwrap();
    let before_kib = rss_kib(pid);
    let addr = c.addr("n1");
    let mut abusers = Vec::new();
    let mut burst = Vec::new();
    for id in 0..64u64 {
        burst.extend(frame(&json!({"id": id, "op": "multi_read", "keys": keys})));
    }
    for _ in 0..8 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(&burst).await.unwrap();
        abusers.push(s);
    }
    // The node works through what it accepts; a well-behaved client is
    // served meanwhile.
    let mut cl = c.client("n1").await;
    let mut peak_kib = before_kib;
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let t = Instant::now();
        let r = cl.read("big0").await;
        assert_eq!(r.result, Outcome::Ok, "{:?}", r.error);
        assert!(t.elapsed() < Duration::from_secs(2), "a read took {:?}", t.elapsed());
        peak_kib = peak_kib.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let grown_mib = peak_kib.saturating_sub(before_kib) / 1024;
    eprintln!(
        "node RSS {} MiB before, {} MiB at peak",
        before_kib / 1024,
        peak_kib / 1024
    );
    // 512 replies of 960 kB are 480 MiB; the node may hold its budgets
    // (4 MiB per connection here) and their transient copies.
    assert!(grown_mib < 150, "node grew by {grown_mib} MiB");
    drop(abusers);
}
