//! One connection to one Redis node through the `redis` crate: a
//! `MultiplexedConnection` over a TCP stream we open ourselves, its driver
//! task spawned by us so that we can see when it has ended.
//!
//! The driver ends when the node closes the connection (or the connection
//! breaks): a kept connection whose driver has ended is replaced before it
//! carries an operation, so a write is not sent into a connection known to
//! be dead (best effort: it sees what the reactor has seen; a connection
//! that dies unseen ends the write as info, never as a wrong fail).
//!
//! The stream under it counts what it reads since the last command was
//! sent: a reply past [`MAX_REPLY_BYTES`] breaks the connection (the
//! command then ends as lost), so a runaway server cannot grow our memory.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Cmd, RedisConnectionInfo, Value};
use serde_json::Value as Json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Largest reply accepted (what one command's answer may take on the wire).
pub const MAX_REPLY_BYTES: usize = 1 << 20;

/// A probed connection and its driver.
pub(super) struct Conn {
    mux: MultiplexedConnection,
    driver: JoinHandle<()>,
    /// Bytes read since the last command was sent.
    read: Arc<AtomicUsize>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Conn {
    /// Connects and sends `PING`, within `timeout_ms`: a node that accepts
    /// (a proxy, a paused process) but does not answer fails the operation
    /// before any of it was sent. Only `PONG` will do: an error (`LOADING`,
    /// `max number of clients reached`) means the operation would not be
    /// served either.
    pub(super) async fn open(addr: SocketAddr, timeout_ms: u64) -> Result<Conn, String> {
        let open = async {
            let mut conn = Conn::connect(addr).await?;
            match conn.send(&redis::cmd("PING")).await {
                Ok(Value::SimpleString(pong)) if pong == "PONG" => Ok(conn),
                Ok(other) => Err(format!("the node answered a probe with {other:?}")),
                Err(e) => Err(format!("the node did not answer a probe: {e}")),
            }
        };
        tokio::time::timeout(Duration::from_millis(timeout_ms), open)
            .await
            .unwrap_or_else(|_| Err(format!("connecting and probing did not finish within {timeout_ms} ms")))
    }

    /// An unprobed connection. No setup commands: RESP2, database 0, no
    /// `CLIENT SETINFO`, so nothing is sent before the first command.
    async fn connect(addr: SocketAddr) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let info = RedisConnectionInfo::default().set_skip_set_lib_name();
        // The caller bounds every command; the crate's own timeouts stay off.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(None)
            .set_response_timeout(None);
        let read = Arc::new(AtomicUsize::new(0));
        let capped = Capped {
            inner: stream,
            read: read.clone(),
        };
        let (mux, driver) = MultiplexedConnection::new_with_config(&info, capped, config)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        Ok(Conn {
            mux,
            driver: tokio::spawn(driver),
            read,
        })
    }

    /// Whether the driver still runs (the node has not closed the connection).
    pub(super) fn alive(&self) -> bool {
        !self.driver.is_finished()
    }

    /// One command and its reply; an error reply is `Ok(Value::ServerError)`.
    pub(super) async fn send(&mut self, cmd: &Cmd) -> Result<Value, redis::RedisError> {
        self.read.store(0, Ordering::SeqCst);
        self.mux.send_packed_command(cmd).await
    }
}

/// A stream that fails its reads once more than [`MAX_REPLY_BYTES`] have
/// come in since `read` was last reset (one command is in flight at a time,
/// so that is one reply).
struct Capped<S> {
    inner: S,
    read: Arc<AtomicUsize>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Capped<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if self.read.fetch_add(n, Ordering::SeqCst) + n > MAX_REPLY_BYTES {
            let e = format!("a reply exceeds {MAX_REPLY_BYTES} bytes");
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Capped<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Sends one admin command (`ROLE`, `REPLICAOF host port`, `INFO ...`) to
/// the node at `addr` on a fresh connection, within `timeout_ms`, and
/// returns its reply as JSON: simple and bulk strings as strings, integers
/// as numbers, arrays as arrays, nil as null; an error reply is `Err`. For
/// the harness, which starts, promotes and re-points Redis nodes.
pub async fn admin(addr: SocketAddr, args: &[&str], timeout_ms: u64) -> Result<Json, String> {
    let mut cmd = redis::cmd(args.first().copied().unwrap_or("PING"));
    for a in args.iter().skip(1) {
        cmd.arg(*a);
    }
    let exchange = async {
        let mut conn = Conn::connect(addr).await?;
        conn.send(&cmd).await.map_err(|e| e.to_string())
    };
    match tokio::time::timeout(Duration::from_millis(timeout_ms), exchange).await {
        Ok(Ok(reply)) => as_json(reply),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("no reply within {timeout_ms} ms")),
    }
}

/// A reply as JSON; an error reply (anywhere in it) is `Err`.
pub(super) fn as_json(v: Value) -> Result<Json, String> {
    Ok(match v {
        Value::Nil => Json::Null,
        Value::Int(i) => Json::from(i),
        Value::BulkString(b) => Json::String(String::from_utf8_lossy(&b).into_owned()),
        Value::SimpleString(s) => Json::String(s),
        Value::Okay => Json::String("OK".into()),
        Value::Array(items) | Value::Set(items) => {
            Json::Array(items.into_iter().map(as_json).collect::<Result<_, _>>()?)
        }
        Value::ServerError(e) => return Err(error_text(&e)),
        // RESP3 types, which a RESP2 connection never gets.
        other => Json::String(format!("{other:?}")),
    })
}

/// An error reply as Redis wrote it (`READONLY You can't write ...`).
pub(super) fn error_text(e: &redis::ServerError) -> String {
    match e.details() {
        Some(details) => format!("{} {details}", e.code()),
        None => e.code().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_reply_past_the_bound_breaks_the_stream_and_a_reset_starts_over() {
        let (mut server, client) = tokio::io::duplex(64 << 10);
        let read = Arc::new(AtomicUsize::new(0));
        let mut capped = Capped {
            inner: client,
            read: read.clone(),
        };
        let writer = tokio::spawn(async move {
            let chunk = vec![b'x'; 64 << 10];
            // Bounded: a little more than the cap, then the test is done.
            for _ in 0..(MAX_REPLY_BYTES / chunk.len() + 2) {
                if server.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        });
        let mut buf = vec![0u8; 64 << 10];
        let mut total = 0;
        let err = loop {
            match capped.read(&mut buf).await {
                Ok(0) => panic!("the writer stopped before the cap"),
                Ok(n) => total += n,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(total <= MAX_REPLY_BYTES, "read {total} bytes before failing");
        read.store(0, Ordering::SeqCst);
        assert!(capped.read(&mut buf).await.is_ok(), "a new command may read again");
        writer.abort();
    }
}
