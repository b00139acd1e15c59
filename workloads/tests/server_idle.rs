//! The client against a real faultline-server that closes idle
//! connections: an operation after the server's idle timeout reconnects
//! and completes `ok`, where writing to the closed connection would have
//! made it `info`.
//!
//! The server runs in this test's runtime on a port the OS picks, with its
//! data in a temp dir; both go when the test ends.

use std::net::SocketAddr;
use std::time::Duration;

use faultline_server::config::{Config, Settings};
use faultline_workloads::client::{Client, Outcome};
use faultline_workloads::request::Request;
use faultline_workloads::server_client::status;
use faultline_workloads::{ServerClient, ServerClientConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The server's idle timeout: short, so the test waits little.
const IDLE_TIMEOUT_MS: u64 = 300;
/// How long a node may take to elect itself on a loaded machine.
const READY_TIMEOUT_MS: u64 = 30_000;

/// A one-node server in this runtime, ready to serve.
async fn one_node(dir: &std::path::Path) -> SocketAddr {
    let cfg = Config {
        node_id: "n1".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_owned(),
        peers: Default::default(),
        settings: Settings::parse(&format!("idle_timeout_ms={IDLE_TIMEOUT_MS}")).unwrap(),
    }
    .validate()
    .unwrap();
    let listener = TcpListener::bind(cfg.listen).await.unwrap();
    let node = faultline_server::node::start(cfg, &listener).unwrap();
    let addr = node.local_addr();
    tokio::spawn(node.accept_loop(listener));
    wait_for_leader(addr).await;
    addr
}

async fn wait_for_leader(addr: SocketAddr) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(READY_TIMEOUT_MS);
    loop {
        let s = status("n1", addr, Duration::from_millis(1_000)).await;
        if s.as_ref().is_ok_and(|s| s["role"] == "leader") {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "no leader: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn client(addr: SocketAddr) -> ServerClient {
    let mut cfg = ServerClientConfig::new([("n1".to_owned(), addr)].into(), "n1");
    // Generous: a loaded machine must not turn a slow reply into an info.
    (cfg.timeout_ms, cfg.connect_timeout_ms) = (5_000, 5_000);
    ServerClient::new(cfg)
}

/// The server does close a connection left idle: without that the test
/// below would prove nothing.
async fn assert_server_closes_idle(addr: SocketAddr) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let body = br#"{"id":1,"op":"status"}"#;
    s.write_all(&(body.len() as u32).to_be_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let closed = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    let bound = Duration::from_millis(IDLE_TIMEOUT_MS * 20);
    tokio::time::timeout(bound, closed)
        .await
        .expect("the server closes an idle connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_op_after_the_idle_timeout_completes_ok() {
    let dir = tempfile::tempdir().unwrap();
    let addr = one_node(dir.path()).await;
    assert_server_closes_idle(addr).await;
    let mut c = client(addr);
    for value in 1..=3 {
        let w = c.call(&Request::Write { key: "k".into(), value }).await;
        assert_eq!(w.outcome, Outcome::Ok, "write {value}: {w:?}");
        // Well past the idle timeout: the server has closed the kept
        // connection by now.
        tokio::time::sleep(Duration::from_millis(IDLE_TIMEOUT_MS * 4)).await;
        let r = c.call(&Request::Read { key: "k".into() }).await;
        assert_eq!(
            (r.outcome, r.value.clone()),
            (Outcome::Ok, serde_json::json!(value)),
            "{r:?}"
        );
        tokio::time::sleep(Duration::from_millis(IDLE_TIMEOUT_MS * 4)).await;
    }
}
