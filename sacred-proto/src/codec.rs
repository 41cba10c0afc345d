//! `Codec`: the two wire formats, chosen per connection by WebSocket subprotocol.

use std::fmt;

use crate::error::{DecodeError, EncodeError};
use crate::limits::Limits;
use crate::message::{Frame, Message};
use crate::push::{Publication, PushKind};
use crate::scan;

/// A wire format. Every frame of a connection uses the one its WebSocket
/// subprotocol named.
///
/// ```
/// use sacred_proto::{ClientMessage, Codec, Limits, SubscribeRequest};
///
/// let message = ClientMessage::new(1, SubscribeRequest::new("chat:lobby"));
/// let frame = Codec::Json.encode(&message)?;
/// assert_eq!(frame, br#"{"id":1,"subscribe":{"channel":"chat:lobby"}}"#);
///
/// let decoded: Vec<ClientMessage> = Codec::Json.decode(&frame, &Limits::default())?;
/// assert_eq!(decoded, [message]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Codec {
    /// `sacred.v1.json`: JSON text in text frames. The default when the client
    /// offers no subprotocol.
    #[default]
    Json,
    /// `sacred.v1.msgpack`: MessagePack with named fields in binary frames.
    MsgPack,
}

/// The client offered subprotocols, none of them Sacred's. The server refuses
/// the upgrade with HTTP 400 and this text as the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unsupported WebSocket subprotocol {offered:?}: this server speaks sacred.v1.json and sacred.v1.msgpack"
)]
pub struct NegotiationError {
    /// What the client offered, as received.
    pub offered: String,
}

impl Codec {
    /// Both codecs, JSON first.
    pub const ALL: [Codec; 2] = [Codec::Json, Codec::MsgPack];

    /// The WebSocket subprotocol that selects this codec.
    pub const fn subprotocol(self) -> &'static str {
        match self {
            Codec::Json => "sacred.v1.json",
            Codec::MsgPack => "sacred.v1.msgpack",
        }
    }

    /// The codec a subprotocol names (exact, case-sensitive match).
    pub fn from_subprotocol(name: &str) -> Option<Codec> {
        Codec::ALL
            .into_iter()
            .find(|codec| codec.subprotocol() == name)
    }

    /// Picks the codec for a connection from the `Sec-WebSocket-Protocol`
    /// header values the client sent (each may list several, comma-separated).
    ///
    /// The first Sacred subprotocol in the client's order wins; no subprotocol
    /// at all means JSON; subprotocols offered but none Sacred's is an error.
    ///
    /// ```
    /// use sacred_proto::Codec;
    ///
    /// assert_eq!(Codec::negotiate(["mqtt, sacred.v1.msgpack, sacred.v1.json"]), Ok(Codec::MsgPack));
    /// assert_eq!(Codec::negotiate([]), Ok(Codec::Json));
    /// assert!(Codec::negotiate(["sacred.v2.json"]).is_err());
    /// ```
    pub fn negotiate<'a>(
        headers: impl IntoIterator<Item = &'a str>,
    ) -> Result<Codec, NegotiationError> {
        let mut offered = Vec::new();
        for token in headers
            .into_iter()
            .flat_map(|value| value.split(','))
            .map(str::trim)
        {
            if token.is_empty() {
                continue;
            }
            if let Some(codec) = Codec::from_subprotocol(token) {
                return Ok(codec);
            }
            offered.push(token);
        }
        if offered.is_empty() {
            Ok(Codec::Json)
        } else {
            Err(NegotiationError {
                offered: offered.join(", "),
            })
        }
    }

    /// Whether frames are binary (MessagePack) rather than text (JSON).
    pub const fn is_binary(self) -> bool {
        matches!(self, Codec::MsgPack)
    }

    /// Encodes one message as a frame.
    pub fn encode<M: Message>(self, message: &M) -> Result<Vec<u8>, EncodeError> {
        let mut frame = Vec::with_capacity(128);
        self.encode_to(message, &mut frame)?;
        Ok(frame)
    }

    /// Encodes a batch as one frame; a batch holds at least one message.
    pub fn encode_batch<M: Message>(self, messages: &[M]) -> Result<Vec<u8>, EncodeError> {
        if messages.is_empty() {
            return Err(EncodeError("a batch holds at least one message".into()));
        }
        let mut frame = Vec::with_capacity(128 * messages.len());
        self.encode_to(messages, &mut frame)?;
        Ok(frame)
    }

    fn encode_to<T: serde::Serialize + ?Sized>(
        self,
        value: &T,
        frame: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        match self {
            Codec::Json => serde_json::to_writer(frame, value).map_err(encode_error),
            Codec::MsgPack => rmp_serde::encode::write_named(frame, value).map_err(encode_error),
        }
    }

    /// Checks a frame's structure as [`Codec::decode`] does before serde reads
    /// it (size, nesting depth, batch length, declared lengths, UTF-8, string
    /// map keys, integer ranges), without decoding it, and returns how deep it
    /// nests (1 for a message without nested objects).
    ///
    /// A sender checks what it encoded against the receiver's limits, so that
    /// it can refuse locally what the receiver would refuse by closing.
    ///
    /// ```
    /// use sacred_proto::{ClientMessage, Codec, DecodeError, Limits, PublishRequest, Value};
    ///
    /// let mut limits = Limits::default();
    /// let frame = Codec::Json.encode(&ClientMessage::new(1, PublishRequest::new("c", Value::from("hi"))))?;
    /// assert_eq!(Codec::Json.check(&frame, &limits), Ok(2));
    /// limits.max_frame_bytes = 16;
    /// assert!(matches!(Codec::Json.check(&frame, &limits), Err(DecodeError::TooBig { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check(self, frame: &[u8], limits: &Limits) -> Result<usize, DecodeError> {
        if frame.len() > limits.max_frame_bytes {
            return Err(DecodeError::TooBig {
                len: frame.len(),
                max: limits.max_frame_bytes,
            });
        }
        match self {
            Codec::Json => scan::json(frame, limits),
            Codec::MsgPack => scan::msgpack(frame, limits),
        }
    }

    /// The bytes a batch of `messages` adds to the sum of its encoded
    /// messages: the list's brackets and commas in JSON, the array header in
    /// MessagePack; 0 for a single message, which travels without a list.
    pub const fn batch_overhead(self, messages: usize) -> usize {
        match (self, messages) {
            (_, 0 | 1) => 0,
            (Codec::Json, n) => n + 1,
            (Codec::MsgPack, n) if n <= 15 => 1,
            (Codec::MsgPack, n) if n <= u16::MAX as usize => 3,
            (Codec::MsgPack, _) => 5,
        }
    }

    /// The frame that carries messages encoded one by one (each with
    /// [`Codec::encode`]): the message itself if there is one, else a batch
    /// of [`Codec::batch_overhead`] more bytes than the messages. Lets a sender
    /// bound a batch by bytes while encoding every message once.
    ///
    /// ```
    /// use sacred_proto::{ClientMessage, Codec, PongRequest};
    ///
    /// for codec in Codec::ALL {
    ///     let messages = [ClientMessage::new(1, PongRequest::new()), ClientMessage::new(2, PongRequest::new())];
    ///     let encoded: Vec<Vec<u8>> = messages.iter().map(|m| codec.encode(m)).collect::<Result<_, _>>()?;
    ///     let frame = codec.join(&encoded);
    ///     assert_eq!(frame, codec.encode_batch(&messages)?);
    ///     assert_eq!(frame.len(), encoded[0].len() + encoded[1].len() + codec.batch_overhead(2));
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join<B: AsRef<[u8]>>(self, encoded: &[B]) -> Vec<u8> {
        if let [one] = encoded {
            return one.as_ref().to_vec();
        }
        let body: usize = encoded.iter().map(|m| m.as_ref().len()).sum();
        let mut frame = Vec::with_capacity(body + self.batch_overhead(encoded.len()));
        match self {
            Codec::Json => {
                frame.push(b'[');
                for (i, message) in encoded.iter().enumerate() {
                    if i > 0 {
                        frame.push(b',');
                    }
                    frame.extend_from_slice(message.as_ref());
                }
                frame.push(b']');
            }
            Codec::MsgPack => {
                let len = u32::try_from(encoded.len()).unwrap_or(u32::MAX);
                // Writing into a Vec cannot fail.
                let _ = rmp::encode::write_array_len(&mut frame, len);
                for message in encoded {
                    frame.extend_from_slice(message.as_ref());
                }
            }
        }
        frame
    }

    /// Encodes the push `{"publication": ...}` from a borrowed publication,
    /// byte for byte what encoding a [`ServerMessage`](crate::ServerMessage)
    /// holding it gives: a server fans out a stored publication without
    /// copying its payload into a message first.
    ///
    /// ```
    /// use sacred_proto::{Codec, Publication, ServerMessage, Value};
    ///
    /// let publication = Publication::new("news", Value::from("hi"), 1);
    /// for codec in Codec::ALL {
    ///     assert_eq!(
    ///         codec.encode_publication(&publication)?,
    ///         codec.encode(&ServerMessage::push(publication.clone()))?
    ///     );
    /// }
    /// # Ok::<(), sacred_proto::EncodeError>(())
    /// ```
    pub fn encode_publication(self, publication: &Publication) -> Result<Vec<u8>, EncodeError> {
        /// `{"publication": <borrowed>}`.
        struct Push<'a>(&'a Publication);

        impl serde::Serialize for Push<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry(PushKind::Publication.name(), self.0)?;
                map.end()
            }
        }

        let mut frame = Vec::with_capacity(128);
        self.encode_to(&Push(publication), &mut frame)?;
        Ok(frame)
    }

    /// Decodes a frame into its messages (one, or each of a batch, in order).
    ///
    /// The frame is accepted whole or refused whole: size first, then
    /// structure (depth, batch length, declared lengths), then types. Content
    /// rules (channel grammar, lengths) are checked per message by
    /// [`ClientMessage::validate`](crate::ClientMessage::validate), so one bad
    /// command gets an error reply while the rest of its batch proceeds.
    pub fn decode<M: Message>(self, frame: &[u8], limits: &Limits) -> Result<Vec<M>, DecodeError> {
        if frame.len() > limits.max_frame_bytes {
            return Err(DecodeError::TooBig {
                len: frame.len(),
                max: limits.max_frame_bytes,
            });
        }
        let Frame(messages) = match self {
            Codec::Json => {
                scan::json(frame, limits)?;
                serde_json::from_slice(frame).map_err(|err| {
                    if err.is_eof() {
                        DecodeError::Truncated
                    } else {
                        DecodeError::invalid(err)
                    }
                })?
            }
            Codec::MsgPack => {
                scan::msgpack(frame, limits)?;
                rmp_serde::from_slice(frame).map_err(DecodeError::invalid)?
            }
        };
        Ok(messages)
    }
}

fn encode_error(err: impl fmt::Display) -> EncodeError {
    EncodeError(err.to_string().into_boxed_str())
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.subprotocol())
    }
}
