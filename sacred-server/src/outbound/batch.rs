//! Batch frames: the messages queued for one connection, written into one
//! frame as they are queued (a list of them, `[m1,m2]` in JSON, an array in
//! MessagePack), so that a subscriber that is sent many pushes at once gets
//! one WebSocket frame and one write instead of one per push. A frame that
//! holds a single message is that message alone, as before.

use axum::extract::ws::{Message, Utf8Bytes};
use bytes::Bytes;

/// Most messages in one batch frame: the protocol's default batch limit, which
/// every client accepts at least.
pub(crate) const MAX_MESSAGES: usize = 100;

/// Bytes after which a batch frame is closed and the next one begun: large
/// enough for one write to carry many pushes, small enough to stay one write.
pub(crate) const MAX_BYTES: usize = 64 * 1024;

/// Bytes reserved in front of a MessagePack batch for its array header.
const MSGPACK_HEAD: usize = 5;

/// One message, encoded once for every connection it goes to, and shared:
/// a frame that holds it alone is these very bytes.
#[derive(Clone, Debug)]
pub(crate) enum Encoded {
    /// JSON text.
    Json(Utf8Bytes),
    /// MessagePack.
    MsgPack(Bytes),
}

impl Encoded {
    pub(crate) fn len(&self) -> usize {
        match self {
            Encoded::Json(text) => text.len(),
            Encoded::MsgPack(bytes) => bytes.len(),
        }
    }

    /// The message as a frame of its own.
    fn frame(&self) -> Message {
        match self {
            Encoded::Json(text) => Message::Text(text.clone()),
            Encoded::MsgPack(bytes) => Message::Binary(bytes.clone()),
        }
    }
}

/// A batch frame being filled. The first message is kept as it is (shared,
/// not copied); the copying starts with the second.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    first: Option<Encoded>,
    /// JSON: `[` then the messages joined by `,`.
    text: String,
    /// MessagePack: room for the array header, then the messages.
    bytes: Vec<u8>,
    count: usize,
    len: usize,
}

impl Batch {
    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether `message` still fits in this frame.
    pub(crate) fn fits(&self, message: &Encoded) -> bool {
        self.count == 0 || (self.count < MAX_MESSAGES && self.len + message.len() < MAX_BYTES)
    }

    /// Appends a message (of the codec every message of the batch has).
    pub(crate) fn push(&mut self, message: &Encoded) {
        self.len += message.len();
        self.count += 1;
        if self.count == 1 {
            self.first = Some(message.clone());
            return;
        }
        if let Some(first) = self.first.take() {
            self.append(&first);
        }
        self.append(message);
    }

    fn append(&mut self, message: &Encoded) {
        match message {
            Encoded::Json(text) => {
                self.text.push(if self.text.is_empty() { '[' } else { ',' });
                self.text.push_str(text);
            }
            Encoded::MsgPack(bytes) => {
                if self.bytes.is_empty() {
                    self.bytes.reserve(MSGPACK_HEAD + 2 * bytes.len());
                    self.bytes.resize(MSGPACK_HEAD, 0);
                }
                self.bytes.extend_from_slice(bytes);
            }
        }
    }

    /// The frame, and the batch emptied for the next one.
    pub(crate) fn seal(&mut self) -> Message {
        let count = std::mem::take(&mut self.count);
        self.len = 0;
        if let Some(first) = self.first.take() {
            return first.frame();
        }
        if !self.text.is_empty() {
            let mut text = std::mem::take(&mut self.text);
            text.push(']');
            return Message::Text(Utf8Bytes::from(text));
        }
        // The array header, right-aligned in the room reserved for it.
        let mut bytes = std::mem::take(&mut self.bytes);
        let mut head = Vec::with_capacity(MSGPACK_HEAD);
        let _ = rmp::encode::write_array_len(&mut head, count as u32);
        let start = MSGPACK_HEAD - head.len();
        bytes[start..MSGPACK_HEAD].copy_from_slice(&head);
        Message::Binary(Bytes::from(bytes).slice(start..))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sacred_proto::{Codec, Limits, Ping, ServerMessage};

    fn encoded(codec: Codec, n: u64) -> Encoded {
        let bytes = codec.encode(&ServerMessage::push(Ping::new(n))).unwrap();
        match codec {
            Codec::Json => Encoded::Json(String::from_utf8(bytes).unwrap().into()),
            Codec::MsgPack => Encoded::MsgPack(bytes.into()),
        }
    }

    fn decoded(codec: Codec, frame: Message) -> Vec<ServerMessage> {
        let bytes = match frame {
            Message::Text(text) => text.as_bytes().to_vec(),
            Message::Binary(bytes) => bytes.to_vec(),
            other => panic!("{other:?}"),
        };
        codec.decode(&bytes, &Limits::default()).unwrap()
    }

    #[test]
    fn one_message_travels_alone_and_several_as_a_batch_in_both_codecs() {
        for codec in Codec::ALL {
            let mut batch = Batch::default();
            batch.push(&encoded(codec, 1));
            let single = batch.seal();
            let expected = codec.encode(&ServerMessage::push(Ping::new(1))).unwrap();
            match (&single, codec) {
                (Message::Text(text), Codec::Json) => assert_eq!(text.as_bytes(), &expected[..]),
                (Message::Binary(bytes), Codec::MsgPack) => assert_eq!(&bytes[..], &expected[..]),
                other => panic!("{other:?}"),
            }
            assert!(batch.is_empty());
            for count in [2, 15, 16, 100] {
                for n in 0..count {
                    batch.push(&encoded(codec, n));
                }
                let messages = decoded(codec, batch.seal());
                let times: Vec<u64> = messages
                    .iter()
                    .map(|m| match m {
                        ServerMessage::Push(sacred_proto::Push::Ping(ping)) => ping.time,
                        other => panic!("{other:?}"),
                    })
                    .collect();
                assert_eq!(times, (0..count).collect::<Vec<_>>(), "{codec} {count}");
            }
        }
    }

    #[test]
    fn a_batch_is_closed_at_its_message_and_byte_bounds() {
        let mut batch = Batch::default();
        let small = encoded(Codec::Json, 1);
        for _ in 0..MAX_MESSAGES {
            assert!(batch.fits(&small));
            batch.push(&small);
        }
        assert!(!batch.fits(&small), "a hundred messages at most");
        let mut batch = Batch::default();
        let big = Encoded::Json(format!("\"{}\"", "x".repeat(MAX_BYTES / 2)).into());
        assert!(batch.fits(&big));
        batch.push(&big);
        assert!(!batch.fits(&big), "64 KiB at most, unless alone");
    }
}
