//! `Limits`: the bounds decoding and validation enforce on what a peer sends.
//! Deserialisable (every field optional) so servers can read it from a config
//! file, and announced to clients in the connect reply.

/// The bounds a receiver enforces. The defaults are the server's for frames
/// from clients; a client decoding server frames should raise
/// `max_frame_bytes`, since history and recovery replies are large.
///
/// The server announces its limits in the connect reply
/// ([`ConnectReply::limits`](crate::ConnectReply::limits)), so a client can
/// refuse locally what the server would refuse by closing the connection.
/// Unknown fields are ignored when reading, as the protocol's evolution rule
/// asks of every object; a configuration loader that wants to catch typos
/// checks for ignored keys itself.
///
/// ```
/// let mut limits = sacred_proto::Limits::default();
/// limits.max_frame_bytes = 64 * 1024;
/// assert_eq!(limits.max_batch, 100);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Limits {
    /// Largest frame accepted, in bytes; larger ones close with "message too big".
    pub max_frame_bytes: usize,
    /// Most messages in one batch.
    pub max_batch: usize,
    /// Deepest nesting of arrays and maps in a frame, counting the envelope:
    /// a single message is depth 1, its body 2, a payload inside it 3
    /// (one more inside a batch).
    pub max_depth: usize,
    /// Longest channel name, in bytes.
    pub max_channel_bytes: usize,
    /// Longest RPC method name, in bytes.
    pub max_method_bytes: usize,
    /// Longest value of each client-info field (name, kind, runtime, version), in bytes.
    pub max_client_info_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_frame_bytes: 10 * 1024,
            max_batch: 100,
            max_depth: 32,
            max_channel_bytes: 255,
            max_method_bytes: 128,
            max_client_info_bytes: 64,
        }
    }
}
