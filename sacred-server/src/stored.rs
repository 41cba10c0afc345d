//! How pushes are kept outside the process (a Redis stream or pub/sub
//! message, an SQLite row): one MessagePack push frame, read back under
//! limits wide enough for anything a hub accepted; and the stable hash that
//! places channels there (shards, epoch buckets).

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

/// FNV-1a, 64 bits: a hash of a channel name that every process and
/// release computes alike (std's hasher promises neither).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
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
