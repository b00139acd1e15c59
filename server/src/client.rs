//! A small async client for the server's protocol.
//!
//! Promise: every call returns a [`Reply`] and never hangs past the timeout.
//! The outcome is honest: `Fail` only when the server said so or the request
//! never left this process (no connection), `Unknown` whenever the request
//! may have reached the server and we did not hear back (timeout, lost
//! connection, garbled reply). The client tracks the session's last seen LSN
//! per shard and sends it with every read, which is what `reads=lsn` needs.

use crate::protocol::{encode_frame, read_frame, Outcome, RawRequest, Reply, Session, MAX_FRAME_BYTES};
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Why a client could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached in time.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// Address dialled.
        addr: String,
        /// Cause.
        reason: String,
    },
}

/// A connection to one node, reconnecting lazily after errors.
pub struct Client {
    addr: String,
    timeout: Duration,
    /// Reads are buffered (one `recv` per reply, not three); writes pass
    /// straight through, one `send` per request.
    stream: Option<BufReader<TcpStream>>,
    next_id: u64,
    session: Session,
}

impl Client {
    /// Connects to `addr` (host:port); `timeout` bounds every later call.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Client, ClientError> {
        let mut c = Client {
            addr: addr.to_string(),
            timeout,
            stream: None,
            next_id: 1,
            session: Session::default(),
        };
        c.dial().await?;
        Ok(c)
    }

    async fn dial(&mut self) -> Result<(), ClientError> {
        let err = |reason: String| ClientError::Connect {
            addr: self.addr.clone(),
            reason,
        };
        let stream = tokio::time::timeout(self.timeout, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| err("timeout".into()))?
            .map_err(|e| err(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        self.stream = Some(BufReader::new(stream));
        Ok(())
    }

    /// The address this client talks to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The session state sent with reads (last LSN seen per shard).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Replaces the session state, e.g. to carry a session to another node.
    pub fn set_session(&mut self, session: Session) {
        self.session = session;
    }

    /// Reads one key (null when absent).
    pub async fn read(&mut self, key: &str) -> Reply {
        self.call(raw("read", Some(key))).await
    }

    /// Overwrites one key.
    pub async fn write(&mut self, key: &str, value: Value) -> Reply {
        let mut r = raw("write", Some(key));
        r.value = Some(value);
        self.call(r).await
    }

    /// Sets `key` to `new` if it holds `expected` (null = absent).
    pub async fn cas(&mut self, key: &str, expected: Value, new: Value) -> Reply {
        let mut r = raw("cas", Some(key));
        r.expected = Some(expected);
        r.new = Some(new);
        self.call(r).await
    }

    /// Appends `value` to the list at `key`.
    pub async fn append(&mut self, key: &str, value: Value) -> Reply {
        let mut r = raw("append", Some(key));
        r.value = Some(value);
        self.call(r).await
    }

    /// Reads several keys; the value is an object key -> value.
    pub async fn multi_read(&mut self, keys: &[String]) -> Reply {
        let mut r = raw("multi_read", None);
        r.keys = Some(keys.to_vec());
        self.call(r).await
    }

    /// The node's replication status (`reply.status`).
    pub async fn status(&mut self) -> Reply {
        self.call(raw("status", None)).await
    }

    /// Sends any request and waits for its reply.
    pub async fn call(&mut self, mut req: RawRequest) -> Reply {
        req.id = self.next_id;
        self.next_id += 1;
        if matches!(req.op.as_str(), "read" | "multi_read") {
            req.session = Some(self.session.clone());
        }
        let id = req.id;
        if self.closed_by_node().await {
            self.stream = None;
        }
        if self.stream.is_none() {
            if let Err(e) = self.dial().await {
                // The request never left: certainly not applied.
                return Reply::fail(id, e.to_string());
            }
        }
        let frame = encode_frame(&req);
        match tokio::time::timeout(self.timeout, self.exchange(&frame, id)).await {
            Ok(Ok(reply)) => {
                self.observe(&reply);
                reply
            }
            Ok(Err(why)) => {
                self.stream = None;
                Reply::unknown(id, why)
            }
            Err(_) => {
                self.stream = None;
                Reply::unknown(id, "timed out")
            }
        }
    }

    /// Whether the node has closed the kept connection (its idle timeout,
    /// or room made for a new client), seen without waiting: the request
    /// then goes on a fresh connection, where its fate is known, instead
    /// of into a closed one, where it would be `unknown`. Best effort: an
    /// end of stream the reactor has not seen yet is missed.
    async fn closed_by_node(&mut self) -> bool {
        let Some(stream) = self.stream.as_mut() else {
            return false;
        };
        if !stream.buffer().is_empty() {
            return false;
        }
        let mut byte = [0u8; 1];
        let mut buf = tokio::io::ReadBuf::new(&mut byte);
        // One poll, no timer (a zero timeout would wait for the timer's
        // next millisecond tick on every request): ready only when bytes
        // or an end of stream are already there.
        let socket = stream.get_mut();
        let peek = std::future::poll_fn(|cx| std::task::Poll::Ready(socket.poll_peek(cx, &mut buf))).await;
        matches!(peek, std::task::Poll::Ready(Ok(0) | Err(_)))
    }

    async fn exchange(&mut self, frame: &[u8], id: u64) -> Result<Reply, String> {
        let stream = self.stream.as_mut().ok_or("not connected")?;
        stream.write_all(frame).await.map_err(|e| e.to_string())?;
        loop {
            let body = read_frame(stream, MAX_FRAME_BYTES)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("connection closed")?;
            let reply: Reply = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
            // Replies to earlier, abandoned requests are skipped.
            if reply.id == id {
                return Ok(reply);
            }
        }
    }

    fn observe(&mut self, reply: &Reply) {
        if reply.result != Outcome::Ok {
            return;
        }
        if let (Some(lsn), Some(shard)) = (reply.lsn, reply.shard) {
            let shard = shard as usize;
            if self.session.shard_lsns.len() <= shard {
                self.session.shard_lsns.resize(shard + 1, 0);
            }
            let slot = &mut self.session.shard_lsns[shard];
            *slot = (*slot).max(lsn);
        }
    }
}

fn raw(op: &str, key: Option<&str>) -> RawRequest {
    RawRequest {
        op: op.to_string(),
        key: key.map(str::to_string),
        ..Default::default()
    }
}
