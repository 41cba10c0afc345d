//! Why a frame could not be decoded or encoded.

use crate::code::DisconnectCode;

/// Why a frame was refused. Every variant closes the connection with the
/// [`DisconnectCode`] that [`DecodeError::disconnect_code`] names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame is larger than [`Limits::max_frame_bytes`](crate::Limits).
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooBig {
        /// The frame's size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The frame ends before its value does (or declares more than it holds).
    #[error("frame ends before its value is complete")]
    Truncated,
    /// Arrays and maps nest deeper than [`Limits::max_depth`](crate::Limits).
    #[error("nesting deeper than {max} levels")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// A batch holds more than [`Limits::max_batch`](crate::Limits) messages.
    #[error("batch of more than {max} messages")]
    BatchTooLong {
        /// The limit.
        max: usize,
    },
    /// A batch holds no message.
    #[error("empty batch")]
    EmptyBatch,
    /// Anything else: bad syntax, invalid UTF-8, wrong types, unknown or
    /// missing keys, an id of 0, bytes after the value.
    #[error("invalid frame: {0}")]
    Invalid(Box<str>),
}

impl DecodeError {
    /// The code the connection is closed with.
    pub fn disconnect_code(&self) -> DisconnectCode {
        match self {
            DecodeError::TooBig { .. } => DisconnectCode::MESSAGE_TOO_BIG,
            _ => DisconnectCode::BAD_REQUEST,
        }
    }

    /// Whether the frame ended early, as opposed to holding something invalid.
    pub fn is_truncated(&self) -> bool {
        matches!(self, DecodeError::Truncated)
    }

    pub(crate) fn invalid(message: impl std::fmt::Display) -> DecodeError {
        DecodeError::Invalid(message.to_string().into_boxed_str())
    }
}

/// Why a message could not be encoded. Sacred's own types always encode; this
/// reports a failure of the underlying serializer.
#[derive(Debug, thiserror::Error)]
#[error("encoding failed: {0}")]
pub struct EncodeError(pub(crate) Box<str>);
