//! The framing: a 4-byte big-endian length, then that many bytes of JSON.
//!
//! The length is checked against a limit before the body is allocated, so
//! a hostile or garbled prefix costs nothing.

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::ProtocolError;

/// Largest frame accepted, checked before the body is allocated.
pub const MAX_FRAME_BYTES: usize = 1 << 20;

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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[tokio::test]
    async fn a_written_frame_reads_back() {
        let mut buf = Vec::new();
        write_frame(&mut buf, br#"{"id":1}"#).await.unwrap();
        assert_eq!(buf, encode_frame(&serde_json::json!({"id": 1})));
        let mut rd: &[u8] = &buf;
        assert_eq!(
            read_frame(&mut rd, MAX_FRAME_BYTES).await.unwrap().unwrap(),
            br#"{"id":1}"#
        );
        let too_big = vec![b' '; MAX_FRAME_BYTES + 1];
        assert!(matches!(
            write_frame(&mut Vec::new(), &too_big).await,
            Err(ProtocolError::FrameTooLarge { .. })
        ));
    }
}
