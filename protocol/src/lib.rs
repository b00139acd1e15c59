//! faultline-server's client wire protocol: the contract between the server
//! and every client of it (the workloads' `ServerClient`, the server's own
//! test client and benchmark).
//!
//! Promise: every byte string a client can send is either decoded into a
//! validated [`Request`] or rejected with a [`ProtocolError`]; nothing here
//! panics or allocates more than [`MAX_FRAME_BYTES`] for one frame. Frames are
//! a 4-byte big-endian length followed by that many bytes of UTF-8 JSON; the
//! same framing carries peer traffic between servers. Replies say `ok`,
//! `fail` (certainly not applied) or `unknown`, because a checker can only be
//! honest when the server is.
//!
//! - [`frame`]: the framing (read, write, encode) and its limit.
//! - [`request`]: what a client asks ([`RawRequest`] on the wire, a validated
//!   [`Request`] after [`decode_request`]) and its session guarantees.
//! - [`txn`]: a transaction's micro-operations ([`MicroOp`]).
//! - [`reply`]: what the server answers ([`Reply`], [`Outcome`], `status`).
//!
//! Depends on nothing of ours; tokio only for its I/O traits.

pub mod error;
pub mod frame;
pub mod reply;
pub mod request;
pub mod txn;

pub use error::ProtocolError;
pub use frame::{encode_frame, read_frame, write_frame, MAX_FRAME_BYTES};
pub use reply::{Outcome, Reply, ShardStatus, StatusInfo};
pub use request::{decode_request, validate, Op, RawRequest, Request, Session, MAX_KEY_BYTES, MAX_MULTI_READ_KEYS};
pub use txn::{parse_txn, MicroOp, MAX_TXN_OPS};
