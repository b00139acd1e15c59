//! The client wire protocol: framing, requests and replies.
//!
//! Promise: every byte string a client can send is either decoded into a
//! validated [`Request`] or rejected with a [`ProtocolError`]; nothing here
//! panics or allocates more than [`MAX_FRAME_BYTES`] for one frame. Frames are
//! a 4-byte big-endian length followed by that many bytes of UTF-8 JSON; the
//! same framing carries peer traffic (see `transport`). Replies say `ok`,
//! `fail` (certainly not applied) or `unknown`, because a checker can only be
//! honest when the server is.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame accepted, checked before the body is allocated.
pub const MAX_FRAME_BYTES: usize = 1 << 20;
/// Largest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Most keys in one multi-key read.
pub const MAX_MULTI_READ_KEYS: usize = 256;

/// Why a frame or request could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The length prefix announced more bytes than allowed.
    #[error("frame of {len_bytes} bytes exceeds the limit of {max_bytes}")]
    FrameTooLarge {
        /// Announced length.
        len_bytes: usize,
        /// Limit in force.
        max_bytes: usize,
    },
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed mid-frame")]
    Truncated,
    /// An I/O error on the socket.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The body is not a JSON object of the expected shape.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The operation name is not one we serve.
    #[error("unknown operation {0:?}")]
    UnknownOp(String),
    /// A field the operation needs is missing.
    #[error("operation {op} needs field {field}")]
    MissingField {
        /// Operation name.
        op: &'static str,
        /// Missing field.
        field: &'static str,
    },
    /// A field breaks a limit (key size, key count).
    #[error("limit exceeded: {0}")]
    Limit(String),
}

/// Reads one frame. `Ok(None)` means a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_bytes: usize,
) -> Result<Option<Vec<u8>>, ProtocolError> {
    let mut len_buf = [0u8; 4];
    match reader.read(&mut len_buf[..1]).await? {
        0 => return Ok(None),
        _ => {
            if let Err(e) = reader.read_exact(&mut len_buf[1..]).await {
                return Err(eof_as_truncated(e));
            }
        }
    }
    let len_bytes = u32::from_be_bytes(len_buf) as usize;
    if len_bytes > max_bytes {
        return Err(ProtocolError::FrameTooLarge { len_bytes, max_bytes });
    }
    let mut body = vec![0u8; len_bytes];
    reader.read_exact(&mut body).await.map_err(eof_as_truncated)?;
    Ok(Some(body))
}

fn eof_as_truncated(e: std::io::Error) -> ProtocolError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        ProtocolError::Truncated
    } else {
        ProtocolError::Io(e)
    }
}

/// Writes one frame (length prefix and body) without flushing.
pub async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, body: &[u8]) -> Result<(), ProtocolError> {
    if body.len() > MAX_FRAME_BYTES {
        return Err(ProtocolError::FrameTooLarge {
            len_bytes: body.len(),
            max_bytes: MAX_FRAME_BYTES,
        });
    }
    writer.write_all(&(body.len() as u32).to_be_bytes()).await?;
    writer.write_all(body).await?;
    Ok(())
}

/// Encodes a value as a frame body plus length prefix, ready to write.
pub fn encode_frame<T: Serialize>(msg: &T) -> Vec<u8> {
    let body = serde_json::to_vec(msg).expect("protocol types always serialize");
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Room a reply's fields other than its value take (id, result, lsn,
/// node, error), with margin.
pub const REPLY_OVERHEAD_BYTES: usize = 512;

/// Counts bytes written and refuses past a cap.
struct CappedCounter {
    bytes: usize,
    cap_bytes: usize,
}

impl std::io::Write for CappedCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes += buf.len();
        if self.bytes > self.cap_bytes {
            return Err(std::io::Error::other("over the cap"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The length of `value` as JSON, or `None` when it is over `cap_bytes`.
/// Nothing is built and the count stops at the cap, so asking about a
/// huge value costs no memory and at most `cap_bytes` of work: the node
/// asks before it copies values into a reply.
pub fn json_len_capped<T: Serialize + ?Sized>(value: &T, cap_bytes: usize) -> Option<usize> {
    let mut counter = CappedCounter { bytes: 0, cap_bytes };
    serde_json::to_writer(&mut counter, value).ok()?;
    Some(counter.bytes)
}

/// The error of a reply that would not fit in a frame.
pub fn reply_too_large(what: &str) -> String {
    format!("{what} would exceed the frame limit of {MAX_FRAME_BYTES} bytes; ask for less at a time")
}

/// A frame being written, refused past a cap.
struct CappedFrame {
    buf: Vec<u8>,
    cap_bytes: usize,
}

impl std::io::Write for CappedFrame {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.cap_bytes {
            return Err(std::io::Error::other("over the frame limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Encodes a reply as a frame. A reply that would exceed the frame limit
/// (which the project's clients enforce too) becomes a `fail` saying so;
/// the encoding stops at the limit, so no larger frame is ever built.
pub fn encode_reply(reply: &Reply) -> Vec<u8> {
    let mut frame = CappedFrame {
        buf: Vec::with_capacity(256),
        cap_bytes: MAX_FRAME_BYTES + 4,
    };
    frame.buf.extend_from_slice(&[0; 4]);
    if serde_json::to_writer(&mut frame, reply).is_err() {
        return encode_frame(&oversized(reply));
    }
    let len = (frame.buf.len() - 4) as u32;
    frame.buf[..4].copy_from_slice(&len.to_be_bytes());
    frame.buf
}

fn oversized(reply: &Reply) -> Reply {
    let mut fail = Reply::fail(reply.id, reply_too_large("the reply"));
    fail.node = reply.node.clone();
    fail
}

/// Session guarantees the client asks for (used by `reads=lsn`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// The last LSN this session saw (single shard or shard 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_lsn: Option<u64>,
    /// The last LSN seen per shard, indexed by shard number.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shard_lsns: Vec<u64>,
}

impl Session {
    /// The LSN a replica of `shard` must have applied before answering.
    pub fn min_lsn_for(&self, shard: usize) -> u64 {
        let per_shard = self.shard_lsns.get(shard).copied().unwrap_or(0);
        let global = if shard == 0 { self.min_lsn.unwrap_or(0) } else { 0 };
        per_shard.max(global)
    }
}

/// What the wire carries, before validation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RawRequest {
    /// Client-chosen id echoed in the reply.
    pub id: u64,
    /// Operation name.
    pub op: String,
    /// Key for single-key operations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Value for write and append.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Expected value for cas (null means absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<Value>,
    /// New value for cas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
    /// Keys for multi_read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<String>>,
    /// Session guarantees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Session>,
}

/// A validated client operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Read one key (absent reads as null).
    Read { key: String },
    /// Overwrite one key.
    Write { key: String, value: Value },
    /// Set `key` to `new` if its current value equals `expected` (null = absent).
    Cas { key: String, expected: Value, new: Value },
    /// Append `value` to the JSON list at `key` (absent = empty list).
    Append { key: String, value: Value },
    /// Read several keys at once.
    MultiRead { keys: Vec<String> },
    /// Report the node's replication state.
    Status,
}

impl Op {
    /// Whether the operation changes state.
    pub fn is_write(&self) -> bool {
        matches!(self, Op::Write { .. } | Op::Cas { .. } | Op::Append { .. })
    }
}

/// A validated request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Client-chosen id echoed in the reply.
    pub id: u64,
    /// The operation.
    pub op: Op,
    /// Session guarantees.
    pub session: Session,
}

/// Decodes and validates one frame body.
pub fn decode_request(body: &[u8]) -> Result<Request, ProtocolError> {
    let raw: RawRequest = serde_json::from_slice(body).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    validate(raw)
}

/// Turns a raw request into a checked one.
pub fn validate(raw: RawRequest) -> Result<Request, ProtocolError> {
    let op = match raw.op.as_str() {
        "read" => Op::Read {
            key: need_key("read", raw.key)?,
        },
        "write" => Op::Write {
            key: need_key("write", raw.key)?,
            value: need("write", "value", raw.value)?,
        },
        "cas" => Op::Cas {
            key: need_key("cas", raw.key)?,
            expected: raw.expected.unwrap_or(Value::Null),
            new: need("cas", "new", raw.new)?,
        },
        "append" => Op::Append {
            key: need_key("append", raw.key)?,
            value: need("append", "value", raw.value)?,
        },
        "multi_read" => Op::MultiRead {
            keys: check_keys(need("multi_read", "keys", raw.keys)?)?,
        },
        "status" => Op::Status,
        other => return Err(ProtocolError::UnknownOp(truncate(other, 64))),
    };
    Ok(Request {
        id: raw.id,
        op,
        session: raw.session.unwrap_or_default(),
    })
}

fn need<T>(op: &'static str, field: &'static str, v: Option<T>) -> Result<T, ProtocolError> {
    v.ok_or(ProtocolError::MissingField { op, field })
}

fn need_key(op: &'static str, key: Option<String>) -> Result<String, ProtocolError> {
    let key = need(op, "key", key)?;
    check_key(&key)?;
    Ok(key)
}

fn check_key(key: &str) -> Result<(), ProtocolError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(ProtocolError::Limit(format!(
            "key of {} bytes exceeds {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    Ok(())
}

fn check_keys(keys: Vec<String>) -> Result<Vec<String>, ProtocolError> {
    if keys.len() > MAX_MULTI_READ_KEYS {
        return Err(ProtocolError::Limit(format!(
            "{} keys exceed {MAX_MULTI_READ_KEYS}",
            keys.len()
        )));
    }
    for k in &keys {
        check_key(k)?;
    }
    Ok(keys)
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

/// The three honest answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Applied (writes) or a true value (reads).
    Ok,
    /// Certainly not applied.
    Fail,
    /// May or may not have been applied.
    Unknown,
}

/// Replication state of one shard's group on one node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardStatus {
    /// Shard number.
    pub shard: u32,
    /// leader, follower, candidate, or replica (leaderless / multi-leader).
    pub role: String,
    /// Current epoch (term).
    pub epoch: u64,
    /// Highest LSN known committed.
    pub commit_lsn: u64,
    /// Highest LSN applied to the state machine.
    pub applied_lsn: u64,
    /// Highest LSN in the local log.
    pub last_lsn: u64,
    /// The leader this node believes in, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// Per-peer lag in LSN, as far as this node knows (the leader knows).
    #[serde(default)]
    pub peer_lag: BTreeMap<String, u64>,
}

/// The `status` answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusInfo {
    /// Replication mode (single_leader, leaderless, multi_leader).
    pub mode: String,
    /// Shard 0's state, flattened for convenience.
    #[serde(flatten)]
    pub main: ShardStatus,
    /// Every shard's state.
    pub shards: Vec<ShardStatus>,
    /// The node's wall clock as it reads it (milliseconds since the epoch,
    /// `clock_offset_ms` included): what its last-write-wins stamps use, so
    /// a clock fault can be seen from outside.
    #[serde(default)]
    pub clock_ms: i64,
}

/// A reply to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The request id.
    pub id: u64,
    /// ok, fail or unknown.
    pub result: Outcome,
    /// Value read (null for an absent key); for multi_read an object key -> value.
    #[serde(default)]
    pub value: Value,
    /// Why it failed or is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// LSN of the write, or the applied LSN the read saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn: Option<u64>,
    /// Shard that served a single-key operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<u32>,
    /// The node that answered.
    #[serde(default)]
    pub node: String,
    /// Where the leader is believed to be, on a redirect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_hint: Option<String>,
    /// Status details for `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusInfo>,
}

impl Reply {
    /// A reply with only the outcome set.
    pub fn new(id: u64, result: Outcome) -> Self {
        Reply {
            id,
            result,
            value: Value::Null,
            error: None,
            lsn: None,
            shard: None,
            node: String::new(),
            leader_hint: None,
            status: None,
        }
    }

    /// A certain failure with a reason.
    pub fn fail(id: u64, error: impl Into<String>) -> Self {
        let mut r = Reply::new(id, Outcome::Fail);
        r.error = Some(error.into());
        r
    }

    /// An unknown outcome with a reason.
    pub fn unknown(id: u64, error: impl Into<String>) -> Self {
        let mut r = Reply::new(id, Outcome::Unknown);
        r.error = Some(error.into());
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_each_op() {
        let r = decode_request(br#"{"id":1,"op":"write","key":"a","value":3}"#).unwrap();
        assert_eq!(
            r.op,
            Op::Write {
                key: "a".into(),
                value: 3.into()
            }
        );
        let r = decode_request(br#"{"id":2,"op":"cas","key":"a","new":4}"#).unwrap();
        assert!(matches!(
            r.op,
            Op::Cas {
                expected: Value::Null,
                ..
            }
        ));
        let r = decode_request(br#"{"id":3,"op":"multi_read","keys":["a","b"],"session":{"min_lsn":7}}"#).unwrap();
        assert_eq!(r.session.min_lsn_for(0), 7);
        assert!(decode_request(br#"{"id":3,"op":"status"}"#).is_ok());
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(decode_request(b"\xff\x00"), Err(ProtocolError::Malformed(_))));
        assert!(matches!(
            decode_request(br#"{"id":1,"op":"drop_table"}"#),
            Err(ProtocolError::UnknownOp(_))
        ));
        assert!(matches!(
            decode_request(br#"{"id":1,"op":"write","key":"a"}"#),
            Err(ProtocolError::MissingField { .. })
        ));
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        let body = format!(r#"{{"id":1,"op":"read","key":"{long}"}}"#);
        assert!(matches!(decode_request(body.as_bytes()), Err(ProtocolError::Limit(_))));
    }

    proptest::proptest! {
        /// The same property as the cargo-fuzz target, on every `cargo test`:
        /// arbitrary bytes never panic the decoder or the frame reader.
        #[test]
        fn decoder_survives_random_bytes(data in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode_request(&data);
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let mut rd: &[u8] = &data;
                for _ in 0..64 {
                    match read_frame(&mut rd, MAX_FRAME_BYTES).await {
                        Ok(Some(body)) => { let _ = decode_request(&body); }
                        _ => break,
                    }
                }
            });
        }

        /// Structured garbage: JSON objects with random ops and fields.
        #[test]
        fn decoder_survives_random_json(op in "[a-z_]{0,12}", key in proptest::option::of(".{0,20}"), id in proptest::num::u64::ANY) {
            let body = serde_json::json!({"id": id, "op": op, "key": key, "keys": [key]});
            if let Ok(req) = decode_request(body.to_string().as_bytes()) {
                proptest::prop_assert_eq!(req.id, id);
            }
        }
    }

    #[test]
    fn lengths_are_counted_up_to_a_cap() {
        let v = serde_json::json!({"a": [1, 2, 3], "b": "xyz"});
        let exact = serde_json::to_vec(&v).unwrap().len();
        assert_eq!(json_len_capped(&v, exact), Some(exact));
        assert_eq!(json_len_capped(&v, exact - 1), None);
    }

    #[test]
    fn a_reply_over_the_frame_limit_becomes_a_fail() {
        let mut big = Reply::new(9, Outcome::Ok);
        big.value = Value::String("x".repeat(MAX_FRAME_BYTES));
        big.node = "n1".into();
        let frame = encode_reply(&big);
        let back: Reply = serde_json::from_slice(&frame[4..]).unwrap();
        assert_eq!((back.id, back.result, back.node.as_str()), (9, Outcome::Fail, "n1"));
        assert!(back.error.unwrap().contains("frame limit"));
        let mut fits = Reply::new(10, Outcome::Ok);
        fits.value = Value::String("x".repeat(MAX_FRAME_BYTES - 2 * REPLY_OVERHEAD_BYTES));
        let frame = encode_reply(&fits);
        assert_eq!(frame, encode_frame(&fits), "the same bytes as an unchecked encoding");
        let back: Reply = serde_json::from_slice(&frame[4..]).unwrap();
        assert_eq!(back.result, Outcome::Ok);
    }

    #[tokio::test]
    async fn frame_limit_is_checked_before_reading() {
        let mut data: &[u8] = &[0xff, 0xff, 0xff, 0xff, 1, 2];
        assert!(matches!(
            read_frame(&mut data, MAX_FRAME_BYTES).await,
            Err(ProtocolError::FrameTooLarge { .. })
        ));
        let mut half: &[u8] = &[0, 0, 0, 9, b'{'];
        assert!(matches!(
            read_frame(&mut half, MAX_FRAME_BYTES).await,
            Err(ProtocolError::Truncated)
        ));
        let mut empty: &[u8] = &[];
        assert!(read_frame(&mut empty, MAX_FRAME_BYTES).await.unwrap().is_none());
    }
}
