//! The server's side of the client wire protocol.
//!
//! The contract itself (framing, requests, replies) is the
//! `faultline-protocol` crate, shared with every client; it is re-exported
//! here so the server's modules name it in one place. What stays here is
//! the server's own business: keeping each reply it builds within the frame
//! limit, counting before it copies values into a reply.

pub use faultline_protocol::*;

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
pub fn json_len_capped<T: serde::Serialize + ?Sized>(value: &T, cap_bytes: usize) -> Option<usize> {
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

/// What is sent instead of a reply too large for a frame. Never `fail`: an
/// `ok` reply may be a committed transaction's (under serializable its
/// reads are known only once applied), so the client is told `unknown`,
/// which is true of whatever the reply was for.
fn oversized(reply: &Reply) -> Reply {
    let mut unknown = Reply::unknown(reply.id, reply_too_large("the reply"));
    unknown.node = reply.node.clone();
    unknown
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn lengths_are_counted_up_to_a_cap() {
        let v = serde_json::json!({"a": [1, 2, 3], "b": "xyz"});
        let exact = serde_json::to_vec(&v).unwrap().len();
        assert_eq!(json_len_capped(&v, exact), Some(exact));
        assert_eq!(json_len_capped(&v, exact - 1), None);
    }

    #[test]
    fn a_reply_over_the_frame_limit_becomes_unknown_never_a_fail() {
        let mut big = Reply::new(9, Outcome::Ok);
        big.value = Value::String("x".repeat(MAX_FRAME_BYTES));
        big.node = "n1".into();
        let frame = encode_reply(&big);
        let back: Reply = serde_json::from_slice(&frame[4..]).unwrap();
        assert_eq!((back.id, back.result, back.node.as_str()), (9, Outcome::Unknown, "n1"));
        assert!(back.error.unwrap().contains("frame limit"));
        let mut fits = Reply::new(10, Outcome::Ok);
        fits.value = Value::String("x".repeat(MAX_FRAME_BYTES - 2 * REPLY_OVERHEAD_BYTES));
        let frame = encode_reply(&fits);
        assert_eq!(frame, encode_frame(&fits), "the same bytes as an unchecked encoding");
        let back: Reply = serde_json::from_slice(&frame[4..]).unwrap();
        assert_eq!(back.result, Outcome::Ok);
    }
}
