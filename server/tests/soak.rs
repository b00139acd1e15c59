//! Soak: one node holding 5,000 connections while abusive clients pipeline
//! `multi_read`s of large values (half of them never read a reply), and a
//! well-behaved client keeps being served with bounded latency. The node's
//! resident memory stays under [`RSS_BOUND_MIB`] throughout.
//!
//! Needs 5,000 file descriptors in this process and in the node: the test
//! raises its soft limit to the hard one (the node does the same at
//! start) and, when the hard limit is too low, says so and skips; with
//! `CI=true` it fails instead.

mod common;

use common::*;
use faultline_server::protocol::Outcome;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connections held open at once.
const CONNECTIONS: usize = 5_000;
/// Of those, clients pipelining large `multi_read`s.
const ABUSERS: usize = 100;
/// Requests each abuser keeps in flight per burst.
const PIPELINE: u64 = 16;
/// How long the abuse lasts.
const ABUSE_SECS: u64 = 15;
/// The node's resident memory must stay under this. Before the node
/// bounded bytes in flight, 64 pipelined requests on each of 8 connections
/// took it past 600 MiB. Now: the node's budget of 64 MiB of large
/// replies (each also copied once into its connection's write buffer),
/// about 12 KiB per open connection, and the data (1 MB). Measured
/// 171 MiB at peak on a loaded 2-core machine.
const RSS_BOUND_MIB: u64 = 300;
/// The well-behaved client's slowest request may take this long on a
/// loaded 2-core machine.
const LATENCY_BOUND_MS: u128 = 2_000;

/// Raises this process's open-files limit to `needed`; false when the hard
/// limit forbids it.
fn raise_fd_limit(needed: u64) -> bool {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 || lim.rlim_max < needed {
        return false;
    }
    lim.rlim_cur = lim.rlim_max;
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 }
}

fn frame(body: &serde_json::Value) -> Vec<u8> {
    let body = body.to_string();
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body.as_bytes());
    f
}

/// What the abusers saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    refused: AtomicU64,
}

/// Sends bursts of pipelined `multi_read`s until `stop`; reads the replies
/// when `reads` (counting them), else never reads and just keeps sending
/// (bounded by the socket: once the node stops reading, writes stall).
async fn abuse(mut s: TcpStream, burst: Arc<Vec<u8>>, reads: bool, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    while !stop.load(Ordering::Relaxed) {
        let send = tokio::time::timeout(Duration::from_secs(1), s.write_all(&burst)).await;
        if !matches!(send, Ok(Ok(()))) {
            if !reads {
                // The node stopped reading us: hold the connection open.
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            return;
        }
        if !reads {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        for _ in 0..PIPELINE {
            let mut len = [0u8; 4];
            if s.read_exact(&mut len).await.is_err() {
                return;
            }
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            if s.read_exact(&mut body).await.is_err() {
                return;
            }
            let head = String::from_utf8_lossy(&body[..body.len().min(64)]).into_owned();
            let counter = if head.contains(r#""result":"ok""#) {
                &tally.ok
            } else {
                &tally.refused
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Opens `n` connections (loopback connects take microseconds each).
async fn open_many(addr: &str, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(TcpStream::connect(addr).await.expect("connect"));
    }
    out
}

/// Descriptors the node has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[allow(
    clippy::too_many_lines,
    reason = "one soak scenario whose phases share the node, the connections and the measurements"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_connections_and_pipelined_multi_reads_leave_a_client_served_and_memory_bounded() {
    if !raise_fd_limit(CONNECTIONS as u64 + 500) {
        let msg = format!(
            "soak skipped: cannot raise the open-files limit to {}",
            CONNECTIONS + 500
        );
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        eprintln!("{msg}");
        return;
    }
    let c = Cluster::start(1, &format!("max_connections={},{FAST}", CONNECTIONS + 100)).await;
    c.wait_leader(&["n1"]).await;
    c.warm_up().await;
    let pid = c.nodes[0].pid().unwrap();
    let addr = c.addr("n1");
    // 8 keys of 120 kB: each multi_read's reply is about 960 kB.
    let keys: Vec<String> = (0..8).map(|i| format!("big{i}")).collect();
    let mut setup = c.client("n1").await;
    for k in &keys {
        assert_eq!(setup.write(k, json!("v".repeat(120_000))).await.result, Outcome::Ok);
    }
    let before_kib = rss_kib(pid);
    let conns = open_many(&addr, CONNECTIONS).await;
    // The node accepts them all (bounded wait: it accepts thousands a second).
    let deadline = Instant::now() + Duration::from_secs(20);
    while open_fds(pid) < CONNECTIONS {
        assert!(
            Instant::now() < deadline,
            "the node holds only {} descriptors",
            open_fds(pid)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let idle_kib = rss_kib(pid);
    let mut burst = Vec::new();
    for id in 0..PIPELINE {
        burst.extend(frame(&json!({"id": id, "op": "multi_read", "keys": keys})));
    }
    let burst = Arc::new(burst);
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut conns = conns.into_iter();
    let mut abusers = Vec::new();
    for i in 0..ABUSERS {
        let s = conns.next().unwrap();
        let task = abuse(s, burst.clone(), i % 2 == 0, stop.clone(), tally.clone());
        abusers.push(tokio::spawn(task));
    }
    let held: Vec<TcpStream> = conns.collect();
    // The well-behaved client, on a connection of its own, throughout.
    let mut cl = c.client("n1").await;
    let mut peak_kib = idle_kib;
    let mut slowest_ms = 0;
    let mut served = 0u64;
    let until = Instant::now() + Duration::from_secs(ABUSE_SECS);
    while Instant::now() < until {
        let t = Instant::now();
        let w = cl.write("good", json!(served)).await;
        assert_eq!(w.result, Outcome::Ok, "write {served}: {w:?}");
        let r = cl.read("good").await;
        assert_eq!((r.result, r.value.clone()), (Outcome::Ok, json!(served)), "{r:?}");
        slowest_ms = slowest_ms.max(t.elapsed().as_millis());
        served += 1;
        peak_kib = peak_kib.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for a in abusers {
        a.abort();
    }
    let mib = |kib: u64| kib / 1024;
    eprintln!(
        "soak: RSS {} MiB before, {} MiB with {CONNECTIONS} connections, {} MiB at peak; \
         good client {served} write+read pairs, slowest {slowest_ms} ms; abusers {} ok, {} refused",
        mib(before_kib),
        mib(idle_kib),
        mib(peak_kib),
        tally.ok.load(Ordering::Relaxed),
        tally.refused.load(Ordering::Relaxed),
    );
    assert!(
        mib(peak_kib) < RSS_BOUND_MIB,
        "node RSS peaked at {} MiB",
        mib(peak_kib)
    );
    assert!(slowest_ms < LATENCY_BOUND_MS, "the good client waited {slowest_ms} ms");
    // Not vacuous: the connections were all open and held by the node, the
    // abusers were served large replies, and the good client ran throughout.
    assert_eq!(held.len(), CONNECTIONS - ABUSERS);
    assert!(
        open_fds(pid) >= CONNECTIONS,
        "the node dropped connections: {} open",
        open_fds(pid)
    );
    assert!(tally.ok.load(Ordering::Relaxed) > 0, "no abusive multi_read was served");
    assert!(served >= 20, "the good client made only {served} round trips");
    let status = cl.status().await;
    assert_eq!(status.result, Outcome::Ok);
    drop(held);
}
