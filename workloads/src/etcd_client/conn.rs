//! One gRPC connection to one etcd member, through the `etcd-client` crate,
//! and what the client needs to know to classify a request that failed.
//!
//! tonic's channel reconnects by itself when its connection has died, inside
//! the next request. Whether that request left then depends on whether the
//! reconnection worked, which tonic does not say; so the channel dials
//! through our [`Dialer`], which counts the dials that failed. A request
//! during which a dial failed was certainly not sent: tonic fails a request
//! whose connection could not be made before writing any of it, and it
//! dials only when a request asks for a connection (one operation is in
//! flight at a time, so that request is ours).
//!
//! A fresh connection is probed (`Maintenance/Status`) within the connect
//! timeout before it carries an operation: under a proxy, connecting
//! succeeds even when the member is down or paused, and a request that
//! then gets no answer could not be told from one that was lost.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client as Etcd, KvClient};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tonic::transport::{Endpoint, Uri};

/// Dials one member's address and counts the dials that failed.
#[derive(Clone)]
struct Dialer {
    addr: SocketAddr,
    timeout: Duration,
    failed: Arc<AtomicU64>,
    last_error: Arc<Mutex<String>>,
}

impl Dialer {
    /// One TCP connection, bounded by the connect timeout (tonic's own
    /// timeout would drop this future uncounted).
    async fn dial(self) -> std::io::Result<TokioIo<TcpStream>> {
        let attempt = tokio::time::timeout(self.timeout, TcpStream::connect(self.addr)).await;
        let result = match attempt {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection within {} ms", self.timeout.as_millis()),
            )),
        };
        match result {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                Ok(TokioIo::new(stream))
            }
            Err(e) => {
                *self.last_error.lock().expect("dial error") = format!("connect {}: {e}", self.addr);
                self.failed.fetch_add(1, Ordering::SeqCst);
                Err(e)
            }
        }
    }
}

/// A probed connection to one member.
pub(super) struct Conn {
    etcd: Etcd,
    dialer: Dialer,
}

impl Conn {
    /// Connects to `addr` and asks its status, all within `timeout_ms`.
    pub(super) async fn open(addr: SocketAddr, timeout_ms: u64) -> Result<Conn, String> {
        let limit = Duration::from_millis(timeout_ms);
        let open = async {
            let mut conn = Conn::connect(addr, limit).await?;
            conn.etcd
                .status()
                .await
                .map_err(|e| format!("the member did not answer a probe: {e}"))?;
            Ok(conn)
        };
        tokio::time::timeout(limit, open)
            .await
            .unwrap_or_else(|_| Err(format!("connecting and probing did not finish within {timeout_ms} ms")))
    }

    /// An unprobed connection (the channel has made its first connection).
    async fn connect(addr: SocketAddr, limit: Duration) -> Result<Conn, String> {
        let dialer = Dialer {
            addr,
            timeout: limit,
            failed: Arc::new(AtomicU64::new(0)),
            last_error: Arc::new(Mutex::new(String::new())),
        };
        let endpoint =
            Endpoint::from_shared(format!("http://{addr}")).map_err(|e| format!("bad address {addr}: {e}"))?;
        let dial = dialer.clone();
        let channel = endpoint
            .connect_with_connector(tower::service_fn(move |_: Uri| dial.clone().dial()))
            .await
            .map_err(|e| format!("connect {addr}: {}", error_chain(&e)))?;
        let etcd = Etcd::from_channel(etcd_client::Channel::Tonic(channel), None)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        Ok(Conn { etcd, dialer })
    }

    /// The key-value API on this connection.
    pub(super) fn kv(&self) -> KvClient {
        self.etcd.kv_client()
    }

    /// How many dials have failed so far; a request during which this
    /// grew was not sent (see the module doc).
    pub(super) fn failed_dials(&self) -> u64 {
        self.dialer.failed.load(Ordering::SeqCst)
    }

    /// Why the last dial failed.
    pub(super) fn last_dial_error(&self) -> String {
        self.dialer.last_error.lock().expect("dial error").clone()
    }
}

/// What `Maintenance/Status` says of one member: who it is, whom it takes
/// for the leader, and how far its raft log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    /// This member's id.
    pub member_id: u64,
    /// The leader's member id, 0 when the member knows of none.
    pub leader: u64,
    /// The raft term the member is in.
    pub raft_term: u64,
    /// The raft index the member has committed.
    pub raft_index: u64,
    /// The raft index the member has applied.
    pub raft_applied_index: u64,
}

/// Asks the member at `addr` its status on a fresh connection, within
/// `timeout_ms`. For the harness: readiness, the leader, `status.jsonl`.
pub async fn member_status(addr: SocketAddr, timeout_ms: u64) -> Result<MemberStatus, String> {
    let limit = Duration::from_millis(timeout_ms);
    let ask = async {
        let mut conn = Conn::connect(addr, limit).await?;
        let s = conn.etcd.status().await.map_err(|e| format!("status: {e}"))?;
        Ok(MemberStatus {
            member_id: s.header().map_or(0, |h| h.member_id()),
            leader: s.leader(),
            raft_term: s.raft_term(),
            raft_index: s.raft_index(),
            raft_applied_index: s.raft_applied_index(),
        })
    };
    tokio::time::timeout(limit, ask)
        .await
        .unwrap_or_else(|_| Err(format!("no status within {timeout_ms} ms")))
}

/// An error and its sources on one line: tonic's top-level messages
/// ("transport error") say little without them.
pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    // Bounded: error chains are short, and a cycle would be a bug upstream.
    for _ in 0..8 {
        let Some(s) = source else { break };
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}
