//! Why a frame or request could not be decoded.

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
