//! Sacred's wire protocol, the crate `sacred-server` and `sacred-client` (and
//! through it the Python and browser packages) depend on: message types, the
//! JSON and MessagePack codecs, validation, and the error and close codes.
//! It has no runtime and builds for `wasm32-unknown-unknown`.
//!
//! `docs/protocol.md` in the repository is the normative specification; this
//! crate is its reference implementation, and `docs/protocol-vectors.json`
//! holds test vectors other implementations can check themselves against.
//!
//! # Example
//!
//! A server decodes a client's frame, checks each command and answers it:
//!
//! ```
//! use sacred_proto::{ClientMessage, Codec, Command, Limits, PublishReply, ServerMessage};
//!
//! let limits = Limits::default();
//! let frame = br#"[{"id":1,"publish":{"channel":"chat:lobby","data":{"text":"hi"}}},
//!                  {"id":2,"publish":{"channel":"$secret","data":1}}]"#;
//!
//! let mut replies = Vec::new();
//! for message in Codec::Json.decode::<ClientMessage>(frame, &limits)? {
//!     let reply = match message.validate(&limits) {
//!         Err(err) => ServerMessage::error(message.id, err),
//!         Ok(()) => match message.command {
//!             Command::Publish(_) => ServerMessage::reply(message.id, PublishReply::default()),
//!             _ => unreachable!("only publishes in this example"),
//!         },
//!     };
//!     replies.push(reply);
//! }
//! let out = Codec::Json.encode_batch(&replies)?;
//! assert_eq!(
//!     String::from_utf8(out)?,
//!     r#"[{"id":1,"publish":{}},{"id":2,"error":{"code":107,"message":"invalid channel: reserved character ($ # * >)","temporary":false}}]"#
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//!
//! - `message`: the envelopes [`ClientMessage`] and [`ServerMessage`], and frames of one or many.
//! - `command`, `reply`, `push`: the bodies, one struct per message kind.
//! - `info`: [`ClientInfo`], [`Peer`], [`StreamPosition`].
//! - `value`: [`Value`], the payload type (JSON values plus bytes).
//! - `codec`: [`Codec`], subprotocol negotiation, encode and decode.
//! - `scan`: the structural pass that bounds a frame before serde reads it.
//! - `limits`, `channel`, `validate`: [`Limits`], the channel grammar, per-command checks.
//! - `code`, `error`: [`ErrorCode`], [`DisconnectCode`], [`DecodeError`], [`EncodeError`].
//!
//! # Feature flags
//!
//! None: the crate is small and always complete.

use serde::Deserialize as _;

#[macro_use]
mod macros;

mod channel;
mod code;
mod codec;
mod command;
mod error;
mod info;
mod limits;
mod message;
mod push;
mod reply;
mod scan;
mod text;
mod trace;
mod validate;
mod value;

pub use channel::{channel_namespace, validate_channel};
pub use code::{DisconnectCode, ErrorCode};
pub use codec::{Codec, NegotiationError};
pub use command::{
    Command, CommandKind, ConnectRequest, HistoryRequest, MAX_SEARCH_TEXT_BYTES, PongRequest,
    PresenceRequest, PublishRequest, RefreshRequest, RpcRequest, SearchRequest, SendRequest,
    SubscribeRequest, UnsubscribeRequest,
};
pub use error::{DecodeError, EncodeError};
pub use info::{ClientInfo, Peer, StreamPosition};
pub use limits::Limits;
pub use message::{ClientMessage, Message, ServerMessage};
pub use push::{
    DirectMessage, Disconnect, Join, Leave, Migrate, Ping, Publication, Push, PushKind,
    Unsubscribed,
};
pub use reply::{
    ConnectReply, HistoryReply, PongReply, PresenceReply, PublishReply, RefreshReply, Reply,
    ReplyError, RpcReply, SearchReply, SendReply, SubscribeReply, UnsubscribeReply,
};
pub use trace::{MAX_TRACEPARENT_BYTES, TRACEPARENT_LEN, validate_traceparent};
pub use validate::ValidationError;
pub use value::{Number, Value, ValueError, from_value, to_value};

/// For `skip_serializing_if` on boolean fields that default to false.
fn is_false(b: &bool) -> bool {
    !*b
}

/// For optional fields that are not `Option`s: `null` reads as absent, i.e.
/// the default, as `docs/protocol.md` (2.1) requires.
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + serde::Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}
