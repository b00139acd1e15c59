//! Peer-to-peer messaging between nodes.
//!
//! Promises:
//! - A node sends only on connections it opened itself, to the configured
//!   address of the peer (which may be a fault-injecting proxy), and receives
//!   only on connections it accepted. Cutting one direction of a link at a
//!   proxy therefore silences exactly that direction.
//! - Sending never blocks the caller: each peer has a bounded queue
//!   ([`PEER_QUEUE_MAX`]); when it is full or the link is down, messages are
//!   dropped. Every protocol on top (log shipping, quorums, hints) already
//!   tolerates loss by retrying, as it must on a real network.
//! - A stalled link (a write that does not finish within
//!   [`PEER_WRITE_TIMEOUT_MS`]) is dropped and redialled with backoff.

use crate::core::{Message, TwoPhaseOp};
use crate::leaderless::core::{Get, GetResp, Put, PutAck};
use crate::protocol::{encode_frame, RawRequest, Reply};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// Largest peer frame (log batches and snapshots are bigger than requests).
pub const PEER_MAX_FRAME_BYTES: usize = 64 << 20;
/// Most messages queued for one peer.
pub const PEER_QUEUE_MAX: usize = 8192;
/// A write to a peer taking longer than this means the link is stalled.
pub const PEER_WRITE_TIMEOUT_MS: u64 = 2000;
/// Dial timeout.
pub const PEER_CONNECT_TIMEOUT_MS: u64 = 1000;
/// Backoff bounds between redials.
pub const PEER_BACKOFF_MIN_MS: u64 = 20;
/// Upper bound of the redial backoff.
pub const PEER_BACKOFF_MAX_MS: u64 = 500;
/// Most bytes written to a peer in one batch.
const PEER_WRITE_BATCH_BYTES: usize = 1 << 20;

/// First frame on a peer connection: who is calling.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// The dialling node's id.
    pub hello: String,
}

/// One peer message with its routing header.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// Sender node id.
    pub from: String,
    /// Replication group (shard) it is for.
    pub shard: u32,
    /// The message.
    pub msg: PeerMsg,
}

/// Messages between nodes: the replication core's own (log shipping,
/// votes, snapshots) as the core defines them, and the driver's (forwarded
/// requests, the leaderless modes').
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerMsg {
    /// Between the replication cores of one group.
    Core(Message),
    /// Any node -> leader: a client request forwarded for the client.
    Forward {
        /// Id to match the answer.
        fwd_id: u64,
        /// The client's request.
        request: RawRequest,
    },
    /// Leader -> forwarding node.
    ForwardResp {
        /// Id of the forward.
        fwd_id: u64,
        /// The answer for the client.
        reply: Reply,
    },
    /// Any node -> a shard's leader: a two-phase commit coordinator's
    /// request (`shard_txn=2pc`), answered by a `ForwardResp`.
    TwoPhase {
        /// Id to match the answer.
        fwd_id: u64,
        /// The coordinator's request id.
        id: u64,
        /// What to log.
        op: TwoPhaseOp,
    },
    /// Leaderless / multi-leader: store this timestamped write.
    Put(Put),
    /// The write is durable on the sender.
    PutAck(PutAck),
    /// Leaderless: what do you have at this key?
    Get(Get),
    /// Answer to `Get`.
    GetResp(GetResp),
}

/// Outgoing side of the peer mesh.
pub struct Transport {
    node: String,
    queues: BTreeMap<String, mpsc::Sender<Vec<u8>>>,
}

impl Transport {
    /// Starts one dialler task per peer.
    pub fn start(node: &str, peers: &BTreeMap<String, String>) -> Arc<Transport> {
        let mut queues = BTreeMap::new();
        for (id, addr) in peers {
            let (tx, rx) = mpsc::channel(PEER_QUEUE_MAX);
            queues.insert(id.clone(), tx);
            let link = Link {
                node: node.to_string(),
                peer: id.clone(),
                addr: addr.clone(),
            };
            tokio::spawn(link.run(rx));
        }
        Arc::new(Transport {
            node: node.to_string(),
            queues,
        })
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Queues a message for `to`; false when dropped (queue full or unknown peer).
    pub fn send(&self, to: &str, shard: u32, msg: PeerMsg) -> bool {
        let Some(q) = self.queues.get(to) else {
            return false;
        };
        let env = Envelope {
            from: self.node.clone(),
            shard,
            msg,
        };
        let frame = encode_frame(&env);
        if frame.len() > PEER_MAX_FRAME_BYTES {
            warn!(node = %self.node, peer = to, bytes = frame.len(), "peer message too large, dropped");
            return false;
        }
        q.try_send(frame).is_ok()
    }
}

struct Link {
    node: String,
    peer: String,
    addr: String,
}

impl Link {
    async fn run(self, mut rx: mpsc::Receiver<Vec<u8>>) {
        let mut backoff_ms = PEER_BACKOFF_MIN_MS;
        let mut was_up = false;
        loop {
            match self.connect().await {
                Ok(stream) => {
                    if !was_up {
                        info!(node = %self.node, peer = %self.peer, addr = %self.addr, "peer link up");
                    }
                    was_up = true;
                    backoff_ms = PEER_BACKOFF_MIN_MS;
                    match self.pump(stream, &mut rx).await {
                        Ok(()) => return,
                        Err(e) => {
                            warn!(node = %self.node, peer = %self.peer, error = %e, "peer link down")
                        }
                    }
                }
                Err(e) => {
                    if was_up {
                        warn!(node = %self.node, peer = %self.peer, error = %e, "peer dial failed");
                    }
                    was_up = false;
                    debug!(node = %self.node, peer = %self.peer, error = %e, "peer dial failed");
                }
            }
            // Messages queued while the link is down are stale: drop them,
            // the protocols above resend what still matters.
            while rx.try_recv().is_ok() {}
            if rx.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
            backoff_ms = (backoff_ms * 2).min(PEER_BACKOFF_MAX_MS);
        }
    }

    async fn connect(&self) -> std::io::Result<TcpStream> {
        let dial = TcpStream::connect(self.addr.as_str());
        let mut stream = tokio::time::timeout(Duration::from_millis(PEER_CONNECT_TIMEOUT_MS), dial)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "dial timeout"))??;
        stream.set_nodelay(true)?;
        let hello = encode_frame(&Hello {
            hello: self.node.clone(),
        });
        self.write_timed(&mut stream, &hello).await?;
        Ok(stream)
    }

    async fn write_timed(&self, stream: &mut TcpStream, buf: &[u8]) -> std::io::Result<()> {
        tokio::time::timeout(Duration::from_millis(PEER_WRITE_TIMEOUT_MS), stream.write_all(buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "peer write stalled"))?
    }

    /// Writes queued frames, batching whatever is ready into one write.
    async fn pump(&self, mut stream: TcpStream, rx: &mut mpsc::Receiver<Vec<u8>>) -> std::io::Result<()> {
        let mut buf = Vec::new();
        loop {
            let Some(first) = rx.recv().await else {
                return Ok(());
            };
            buf.clear();
            buf.extend_from_slice(&first);
            while buf.len() < PEER_WRITE_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(more) => buf.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            self.write_timed(&mut stream, &buf).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Command, Entry, StateMachine};
    use crate::wal::Snapshot;

    fn round_trip(msg: PeerMsg) -> (PeerMsg, serde_json::Value) {
        let env = Envelope {
            from: "n1".into(),
            shard: 2,
            msg,
        };
        let sent = serde_json::to_value(&env).unwrap();
        let back: Envelope = serde_json::from_slice(&encode_frame(&env)[4..]).unwrap();
        assert_eq!((back.from.as_str(), back.shard), ("n1", 2));
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            sent,
            "the message changed on the wire"
        );
        (back.msg, sent)
    }

    #[test]
    fn the_cores_messages_and_the_drivers_cross_the_wire_unchanged() {
        let entry = Entry {
            lsn: 4,
            epoch: 2,
            cmd: Command::Noop,
        };
        let append = Message::Append {
            epoch: 2,
            prev_lsn: 3,
            prev_epoch: 1,
            entries: vec![entry],
            commit_lsn: 3,
            seq: 9,
        };
        let (back, sent) = round_trip(PeerMsg::Core(append));
        assert!(matches!(back, PeerMsg::Core(Message::Append { prev_lsn: 3, ref entries, .. }) if entries.len() == 1));
        assert_eq!(
            sent["msg"]["core"]["t"], "append",
            "the core's message is its own wire form"
        );
        let snapshot = Arc::new(Snapshot {
            lsn: 7,
            epoch: 2,
            state: StateMachine::new(),
        });
        let (back, _) = round_trip(PeerMsg::Core(Message::Snapshot {
            epoch: 2,
            snapshot,
            seq: 1,
        }));
        assert!(matches!(back, PeerMsg::Core(Message::Snapshot { ref snapshot, .. }) if snapshot.lsn == 7));
        let (back, _) = round_trip(PeerMsg::PutAck(PutAck { req_id: 5 }));
        assert!(matches!(back, PeerMsg::PutAck(PutAck { req_id: 5 })));
    }
}
