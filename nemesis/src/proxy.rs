//! The userspace proxy mesh: the default [`Net`], which needs no root.
//!
//! Every connection an endpoint opens to a node goes through a TCP proxy the
//! harness owns, one proxy per (initiator, node) pair: node n1 reaches n2
//! through the proxy `n1 -> n2`, and client c0 reaches n1 through `c0 -> n1`.
//! Each proxy pumps both directions of each connection; the pump for bytes
//! going from `a` to `b` obeys the fault of the directed [`Link`] `a -> b`.
//!
//! - A cut holds bytes: the pump stops delivering and, once a bounded queue
//!   is full, stops reading, so the sender's TCP window fills exactly as under
//!   a real partition. Nothing is reset and nothing is lost: a frame is never
//!   torn, and after a heal the bytes flow on. Peers see silence and time out.
//! - A delay holds each chunk until it is `delay_ms` old.
//! - A loss makes a chunk wait one retransmission timeout (200 ms, Linux's
//!   minimum RTO) per consecutive loss drawn, which is what TCP does with a
//!   lost segment.
//!
//! Healthy links take a fast path (read, write) with no queue. Proxies listen
//! on 127.0.0.1 at ports the OS picks, and stop (closing every connection)
//! when the mesh is shut down or dropped.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::error::NetError;
use crate::net::{Link, LinkFault, Net};

/// Bytes read per chunk.
const CHUNK_BYTES: usize = 64 * 1024;
/// Bytes a faulty link holds before it stops reading (back-pressure).
const MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;
/// Connections one proxy carries at once; more are closed at accept.
const MAX_CONNECTIONS_PER_PROXY: usize = 1024;
/// How long a proxy waits to reach its node before closing the client side.
const CONNECT_TIMEOUT_MS: u64 = 1_000;
/// The cost of one lost segment: Linux's minimum retransmission timeout.
const RETRANSMIT_MS: u64 = 200;
/// Most consecutive losses drawn for one chunk.
const MAX_CONSECUTIVE_LOSSES: u32 = 6;

/// A mesh of proxies between clients and nodes and between nodes.
pub struct ProxyMesh {
    /// Proxy listen address by (initiator, node).
    addrs: BTreeMap<(String, String), SocketAddr>,
    /// Fault state of every directed link.
    links: BTreeMap<Link, watch::Sender<LinkFault>>,
    /// Accept loops; aborting one closes its connections.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl ProxyMesh {
    /// Starts a proxy for every ordered pair of distinct nodes and for every
    /// (client, node) pair. `nodes` gives each node's real client/peer
    /// address; `seed` drives the loss draws. Must run inside a tokio runtime.
    pub async fn start(nodes: &[(String, SocketAddr)], clients: &[String], seed: u64) -> Result<ProxyMesh, NetError> {
        let mut mesh = ProxyMesh {
            addrs: BTreeMap::new(),
            links: BTreeMap::new(),
            tasks: Mutex::new(Vec::new()),
        };
        let conn_counter = Arc::new(AtomicU64::new(0));
        let initiators: Vec<&String> = nodes.iter().map(|(n, _)| n).chain(clients.iter()).collect();
        for from in initiators {
            for (to, target) in nodes {
                if from == to {
                    continue;
                }
                let up = mesh.link_rx(from, to);
                let down = mesh.link_rx(to, from);
                let listener = TcpListener::bind("127.0.0.1:0")
                    .await
                    .map_err(|source| NetError::Bind {
                        from: from.clone(),
                        to: to.clone(),
                        source,
                    })?;
                let addr = listener.local_addr().map_err(|source| NetError::Bind {
                    from: from.clone(),
                    to: to.clone(),
                    source,
                })?;
                let ctx = ProxyCtx {
                    target: *target,
                    up,
                    down,
                    seed,
                    conn_counter: conn_counter.clone(),
                };
                let task = tokio::spawn(accept_loop(listener, ctx));
                mesh.tasks.lock().expect("proxy task list").push(task);
                mesh.addrs.insert((from.clone(), to.clone()), addr);
            }
        }
        Ok(mesh)
    }

    fn link_rx(&mut self, from: &str, to: &str) -> watch::Receiver<LinkFault> {
        self.links
            .entry(Link::new(from, to))
            .or_insert_with(|| watch::channel(LinkFault::default()).0)
            .subscribe()
    }

    /// The address `from` connects to in order to reach node `to`.
    pub fn addr(&self, from: &str, to: &str) -> Option<SocketAddr> {
        self.addrs.get(&(from.to_owned(), to.to_owned())).copied()
    }

    /// Stops every proxy and closes every connection through them.
    pub fn shutdown(&self) {
        for t in self.tasks.lock().expect("proxy task list").drain(..) {
            t.abort();
        }
    }

    fn sender(&self, link: &Link) -> Result<&watch::Sender<LinkFault>, NetError> {
        self.links.get(link).ok_or_else(|| NetError::UnknownLink {
            from: link.from.clone(),
            to: link.to.clone(),
        })
    }
}

impl Drop for ProxyMesh {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Net for ProxyMesh {
    fn set(&self, link: &Link, fault: LinkFault) -> Result<(), NetError> {
        fault.validate()?;
        self.sender(link)?.send_replace(fault);
        Ok(())
    }

    fn partition(&self, cuts: &BTreeSet<Link>) -> Result<(), NetError> {
        for link in cuts {
            self.sender(link)?;
        }
        for (link, tx) in &self.links {
            let cut = cuts.contains(link);
            tx.send_if_modified(|f| std::mem::replace(&mut f.cut, cut) != cut);
        }
        Ok(())
    }

    fn heal_all(&self) -> Result<(), NetError> {
        for tx in self.links.values() {
            tx.send_if_modified(|f| !std::mem::take(f).is_healthy());
        }
        Ok(())
    }

    fn faulty(&self) -> Vec<(Link, LinkFault)> {
        self.links
            .iter()
            .map(|(l, tx)| (l.clone(), *tx.borrow()))
            .filter(|(_, f)| !f.is_healthy())
            .collect()
    }
}

/// What one proxy needs to serve a connection.
struct ProxyCtx {
    target: SocketAddr,
    up: watch::Receiver<LinkFault>,
    down: watch::Receiver<LinkFault>,
    seed: u64,
    conn_counter: Arc<AtomicU64>,
}

async fn accept_loop(listener: TcpListener, ctx: ProxyCtx) {
    let mut conns = JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of descriptors or similar: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        while conns.try_join_next().is_some() {}
        if conns.len() >= MAX_CONNECTIONS_PER_PROXY {
            tracing::warn!(target = %ctx.target, "proxy connection limit reached; closing a new connection");
            continue;
        }
        let n = ctx.conn_counter.fetch_add(1, Ordering::Relaxed);
        let rng = ChaCha8Rng::seed_from_u64(ctx.seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        conns.spawn(serve(client, ctx.target, ctx.up.clone(), ctx.down.clone(), rng));
    }
}

async fn serve(
    client: TcpStream,
    target: SocketAddr,
    up: watch::Receiver<LinkFault>,
    down: watch::Receiver<LinkFault>,
    mut rng: ChaCha8Rng,
) {
    let connect = tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), TcpStream::connect(target));
    let Ok(Ok(server)) = connect.await else {
        return; // the node is down: the client sees its connection close
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (crd, cwr) = client.into_split();
    let (srd, swr) = server.into_split();
    let rng_down = ChaCha8Rng::seed_from_u64(rng.gen());
    tokio::join!(pump(crd, swr, up, rng), pump(srd, cwr, down, rng_down));
}

/// One chunk waiting on a faulty link.
struct Held {
    read_at: Instant,
    penalty: Duration,
    bytes: Vec<u8>,
}

/// Copies bytes from `rd` to `wr` under the link's fault until either side
/// closes.
async fn pump(
    mut rd: OwnedReadHalf,
    mut wr: OwnedWriteHalf,
    mut fault: watch::Receiver<LinkFault>,
    mut rng: ChaCha8Rng,
) {
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut queue: VecDeque<Held> = VecDeque::new();
    let mut queued_bytes = 0usize;
    let mut eof = false;
    loop {
        let f = *fault.borrow_and_update();
        if eof && queue.is_empty() {
            let _ = wr.shutdown().await;
            return;
        }
        if queue.is_empty() && f.is_healthy() {
            tokio::select! {
                r = rd.read(&mut buf) => match r {
                    Ok(0) | Err(_) => eof = true,
                    Ok(n) => if wr.write_all(&buf[..n]).await.is_err() { return },
                },
                changed = fault.changed() => if changed.is_err() { return },
            }
            continue;
        }
        let head_ready = queue
            .front()
            .map(|h| h.read_at + h.penalty + Duration::from_millis(f.delay_ms));
        let can_deliver = head_ready.is_some() && !f.cut;
        let far = Instant::now() + Duration::from_secs(3600);
        tokio::select! {
            r = rd.read(&mut buf), if !eof && queued_bytes < MAX_QUEUED_BYTES => match r {
                Ok(0) | Err(_) => eof = true,
                Ok(n) => {
                    queued_bytes += n;
                    queue.push_back(Held { read_at: Instant::now(), penalty: loss_penalty(&mut rng, f.loss), bytes: buf[..n].to_vec() });
                }
            },
            _ = tokio::time::sleep_until(head_ready.unwrap_or(far)), if can_deliver => {
                let held = queue.pop_front().expect("a head to deliver");
                queued_bytes -= held.bytes.len();
                if wr.write_all(&held.bytes).await.is_err() { return }
            },
            changed = fault.changed() => if changed.is_err() { return },
        }
    }
}

/// The retransmission wait of a chunk on a link that loses `loss` of its
/// segments.
fn loss_penalty(rng: &mut ChaCha8Rng, loss: f64) -> Duration {
    let mut losses = 0;
    while loss > 0.0 && losses < MAX_CONSECUTIVE_LOSSES && rng.gen::<f64>() < loss {
        losses += 1;
    }
    Duration::from_millis(RETRANSMIT_MS * u64::from(losses))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_penalty_is_bounded_and_zero_without_loss() {
        let mut rng = faultline_testkit::rng(1);
        assert_eq!(loss_penalty(&mut rng, 0.0), Duration::ZERO);
        let max = Duration::from_millis(RETRANSMIT_MS * u64::from(MAX_CONSECUTIVE_LOSSES));
        assert_eq!(loss_penalty(&mut rng, 1.0), max);
        let some = (0..1000)
            .filter(|_| loss_penalty(&mut rng, 0.5) > Duration::ZERO)
            .count();
        assert!((350..650).contains(&some), "{some}");
    }
}
