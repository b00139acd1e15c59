//! The proxy mesh with real sockets: bytes flow, a cut holds them without a
//! reset, a heal delivers them, one-way cuts are one-way, delays delay, and
//! shutting the mesh down closes every connection.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use faultline_nemesis::{Link, LinkFault, Net, ProxyMesh};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// An echo server that also reports every chunk it receives.
async fn echo_server() -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            let _ = tx.send(buf[..n].to_vec());
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (addr, rx)
}

async fn read_exact_within(s: &mut TcpStream, n: usize, ms: u64) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; n];
    match tokio::time::timeout(Duration::from_millis(ms), s.read_exact(&mut buf)).await {
        Ok(Ok(_)) => Some(buf),
        Ok(Err(e)) => panic!("connection broke: {e}"),
        Err(_) => None,
    }
}

async fn mesh_with_one_node() -> (ProxyMesh, TcpStream, mpsc::UnboundedReceiver<Vec<u8>>) {
    let (addr, rx) = echo_server().await;
    let mesh = ProxyMesh::start(&[("n1".into(), addr)], &["c0".into()], 1)
        .await
        .unwrap();
    let s = TcpStream::connect(mesh.addr("c0", "n1").unwrap()).await.unwrap();
    (mesh, s, rx)
}

#[tokio::test]
async fn bytes_flow_through_a_healthy_link() {
    let (_mesh, mut s, _rx) = mesh_with_one_node().await;
    s.write_all(b"hello").await.unwrap();
    assert_eq!(read_exact_within(&mut s, 5, 2000).await.unwrap(), b"hello");
}

#[tokio::test]
async fn a_cut_holds_bytes_silently_and_a_heal_delivers_them() {
    let (mesh, mut s, mut rx) = mesh_with_one_node().await;
    s.write_all(b"a").await.unwrap();
    assert_eq!(read_exact_within(&mut s, 1, 2000).await.unwrap(), b"a");
    rx.recv().await.unwrap();

    mesh.partition(&BTreeSet::from([Link::new("c0", "n1")])).unwrap();
    s.write_all(b"held").await.unwrap();
    assert!(
        read_exact_within(&mut s, 4, 300).await.is_none(),
        "a cut link delivered bytes"
    );
    assert!(rx.try_recv().is_err(), "the server saw bytes across a cut");
    assert_eq!(mesh.faulty().len(), 1);

    mesh.heal_all().unwrap();
    assert_eq!(read_exact_within(&mut s, 4, 2000).await.unwrap(), b"held");
    assert!(mesh.faulty().is_empty());
}

#[tokio::test]
async fn a_one_way_cut_lets_requests_in_and_holds_replies() {
    let (mesh, mut s, mut rx) = mesh_with_one_node().await;
    mesh.set(&Link::new("n1", "c0"), LinkFault::CUT).unwrap();
    s.write_all(b"ping").await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(2), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen, b"ping", "the request direction is open");
    assert!(
        read_exact_within(&mut s, 4, 300).await.is_none(),
        "the reply direction is cut"
    );
    mesh.heal_all().unwrap();
    assert_eq!(read_exact_within(&mut s, 4, 2000).await.unwrap(), b"ping");
}

#[tokio::test]
async fn a_delay_delays_each_byte() {
    let (mesh, mut s, _rx) = mesh_with_one_node().await;
    let slow = LinkFault {
        delay_ms: 150,
        ..LinkFault::default()
    };
    mesh.set(&Link::new("c0", "n1"), slow).unwrap();
    let t = Instant::now();
    s.write_all(b"x").await.unwrap();
    read_exact_within(&mut s, 1, 2000).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(150), "{:?}", t.elapsed());
    assert!(mesh.set(&Link::new("c0", "n9"), slow).is_err());
    let bad = LinkFault {
        loss: 1.5,
        ..LinkFault::default()
    };
    assert!(mesh.set(&Link::new("c0", "n1"), bad).is_err());
}

#[tokio::test]
async fn node_to_node_links_are_proxied_both_ways() {
    let (a, _ra) = echo_server().await;
    let (b, _rb) = echo_server().await;
    let mesh = ProxyMesh::start(&[("n1".into(), a), ("n2".into(), b)], &[], 2)
        .await
        .unwrap();
    let mut s = TcpStream::connect(mesh.addr("n1", "n2").unwrap()).await.unwrap();
    // n1 -> n2 cut: what n1 sends on its own connection is held.
    mesh.set(&Link::new("n1", "n2"), LinkFault::CUT).unwrap();
    s.write_all(b"q").await.unwrap();
    assert!(read_exact_within(&mut s, 1, 300).await.is_none());
    mesh.heal_all().unwrap();
    assert_eq!(read_exact_within(&mut s, 1, 2000).await.unwrap(), b"q");
    assert!(mesh.addr("n1", "n1").is_none());
}

#[tokio::test]
async fn shutting_the_mesh_down_closes_connections_and_listeners() {
    let (mesh, mut s, _rx) = mesh_with_one_node().await;
    let addr = mesh.addr("c0", "n1").unwrap();
    drop(mesh);
    let mut buf = [0u8; 1];
    let r = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener outlived the mesh"
    );
}
