//! How pushes are kept outside the process (a Redis stream or pub/sub
//! message, an SQLite row): one MessagePack push frame, read back under
//! limits wide enough for anything a hub accepted.

use sacred_proto::{Codec, EncodeError, Limits, Push, ServerMessage};

/// What a stored push may hold when read back: larger than any frame a
/// client may send, so nothing accepted is refused on the way out.
fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_frame_bytes = 64 << 20;
    limits.max_depth = 64;
    limits.max_batch = 1;
    limits
}

/// `push` as one MessagePack frame.
pub(crate) fn encode(push: impl Into<Push>) -> Result<Vec<u8>, EncodeError> {
    Codec::MsgPack.encode(&ServerMessage::push(push))
}

/// The push in `bytes`, or `None` if they hold anything else.
pub(crate) fn decode(bytes: &[u8]) -> Option<Push> {
    match Codec::MsgPack.decode::<ServerMessage>(bytes, &limits()) {
        Ok(mut messages) if messages.len() == 1 => match messages.pop() {
            Some(ServerMessage::Push(push)) => Some(push),
            _ => None,
        },
        _ => None,
    }
}
