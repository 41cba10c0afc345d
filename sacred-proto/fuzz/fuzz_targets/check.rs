//! What every decoder target asserts about a frame.

use std::fmt::Debug;

use sacred_proto::{ClientMessage, Codec, Limits, Message, ServerMessage};

/// Decodes `frame` in both directions; whatever decodes must validate without
/// panicking, re-encode, and decode again to the same messages.
pub fn frame(codec: Codec, frame: &[u8]) {
    let limits = Limits::default();
    if let Some(messages) = roundtrip::<ClientMessage>(codec, frame, &limits) {
        for message in &messages {
            let _ = message.validate(&limits);
        }
    }
    roundtrip::<ServerMessage>(codec, frame, &limits);
}

fn roundtrip<M: Message + PartialEq + Debug>(codec: Codec, frame: &[u8], limits: &Limits) -> Option<Vec<M>> {
    let messages: Vec<M> = codec.decode(frame, limits).ok()?;
    let encoded = if messages.len() == 1 { codec.encode(&messages[0]) } else { codec.encode_batch(&messages) };
    let encoded = encoded.expect("decoded messages re-encode");
    // Re-encoding may be longer than the input (1e2 becomes 100.0), never deeper.
    let mut roomy = limits.clone();
    roomy.max_frame_bytes = usize::MAX;
    let again: Vec<M> = codec.decode(&encoded, &roomy).expect("re-encoded frame decodes");
    assert_eq!(again, messages);
    Some(messages)
}
