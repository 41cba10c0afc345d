//! Pushes: what the server sends unasked. They carry no id and get no reply.

use serde::{Deserialize, Serialize};

use crate::code::{DisconnectCode, ErrorCode};
use crate::info::Peer;
use crate::value::Value;

kind_enum! {
    /// The kinds of push; each names the push's key on the wire. No push key
    /// is also a command key, so a server message's key alone tells a reply
    /// from a push.
    pub enum PushKind {
        /// `publication`
        Publication = "publication",
        /// `join`
        Join = "join",
        /// `leave`
        Leave = "leave",
        /// `message`
        Message = "message",
        /// `unsubscribed`
        Unsubscribed = "unsubscribed",
        /// `disconnect`
        Disconnect = "disconnect",
        /// `migrate`
        Migrate = "migrate",
        /// `ping`
        Ping = "ping",
    }
}

tagged_enum! {
    /// A push: a server message that is not a reply.
    pub enum Push: PushKind {
        /// Data published to a channel the client is subscribed to.
        Publication(Publication),
        /// A client subscribed to a channel (for subscribers that opted in).
        Join(Join),
        /// A client left a channel (for subscribers that opted in).
        Leave(Leave),
        /// Data sent to this client alone, by another client or by the server.
        Message(DirectMessage),
        /// The server ended one of the client's subscriptions.
        Unsubscribed(Unsubscribed),
        /// The server is about to close the connection, and why.
        Disconnect(Disconnect),
        /// The server will shut down: move before `at`, to `url` if given.
        Migrate(Migrate),
        /// Heartbeat; answer with a `pong` command.
        Ping(Ping),
    }
}

/// A publication in a channel, live or replayed by recovery and history.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Publication {
    /// The channel it was published to.
    #[serde(deserialize_with = "crate::text::string")]
    pub channel: String,
    /// Its offset in the channel's stream; present together with `epoch` when
    /// the channel keeps history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The stream's epoch; a change means the stream was lost and restarted.
    #[serde(
        default,
        deserialize_with = "crate::text::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub epoch: Option<String>,
    /// The payload.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
    /// The publisher, when a client published it (absent when the host did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Peer>,
    /// When the server accepted it, milliseconds since the Unix epoch.
    pub time: u64,
    /// The W3C `traceparent` the publish carried, with the parent id of the
    /// server's span when the server traces (see
    /// [`PublishRequest::traceparent`](crate::PublishRequest::traceparent)).
    #[serde(
        default,
        deserialize_with = "crate::text::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub traceparent: Option<String>,
}

impl Publication {
    /// Reads the payload as a `T` (see [`from_value`](crate::from_value)).
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, crate::ValueError> {
        self.data.decode()
    }

    /// A publication of `data` in `channel` at server time `time`, without
    /// stream position or publisher.
    pub fn new(channel: impl Into<String>, data: Value, time: u64) -> Publication {
        Publication {
            channel: channel.into(),
            data,
            time,
            ..Publication::default()
        }
    }
}

/// A client subscribed to a channel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Join {
    /// The channel.
    #[serde(deserialize_with = "crate::text::string")]
    pub channel: String,
    /// Who joined.
    pub client: Peer,
}

impl Join {
    /// `client` joined `channel`.
    pub fn new(channel: impl Into<String>, client: Peer) -> Join {
        Join {
            channel: channel.into(),
            client,
        }
    }
}

/// A client left a channel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Leave {
    /// The channel.
    #[serde(deserialize_with = "crate::text::string")]
    pub channel: String,
    /// Who left.
    pub client: Peer,
}

impl Leave {
    /// `client` left `channel`.
    pub fn new(channel: impl Into<String>, client: Peer) -> Leave {
        Leave {
            channel: channel.into(),
            client,
        }
    }
}

/// Data for this client alone (`message` on the wire).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DirectMessage {
    /// The sending client; absent when the server (host code) sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Peer>,
    /// The payload.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
}

impl DirectMessage {
    /// A message with `data`, from `from` (or the server when `None`).
    pub fn new(from: Option<Peer>, data: Value) -> DirectMessage {
        DirectMessage { from, data }
    }

    /// Reads the payload as a `T` (see [`from_value`](crate::from_value)).
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, crate::ValueError> {
        self.data.decode()
    }
}

/// The server ended a subscription; the client does not resubscribe on its own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Unsubscribed {
    /// The channel.
    #[serde(deserialize_with = "crate::text::string")]
    pub channel: String,
    /// Why, as an [`ErrorCode`].
    pub code: u32,
    /// Why, in words.
    #[serde(deserialize_with = "crate::text::string")]
    pub reason: String,
}

impl Unsubscribed {
    /// `channel` ended for the reason `code` names.
    pub fn new(
        channel: impl Into<String>,
        code: ErrorCode,
        reason: impl Into<String>,
    ) -> Unsubscribed {
        Unsubscribed {
            channel: channel.into(),
            code: code.as_u32(),
            reason: reason.into(),
        }
    }
}

/// The server is about to close the connection with this code.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Disconnect {
    /// The close code, a [`DisconnectCode`].
    pub code: u16,
    /// Why, in words (also the close frame's reason, at most 123 bytes).
    #[serde(deserialize_with = "crate::text::string")]
    pub reason: String,
    /// Whether the client should reconnect; always the code's range rule.
    pub reconnect: bool,
}

impl From<DisconnectCode> for Disconnect {
    /// The push for `code` with its standard reason.
    fn from(code: DisconnectCode) -> Disconnect {
        Disconnect {
            code: code.as_u16(),
            reason: code.text().unwrap_or("disconnect").to_owned(),
            reconnect: code.should_reconnect(),
        }
    }
}

/// Advice to move: reconnect before `at`, to `url` if given, and recover.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Migrate {
    /// Where to reconnect; absent means the same URL (another node behind it).
    #[serde(
        default,
        deserialize_with = "crate::text::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub url: Option<String>,
    /// The deadline, milliseconds since the Unix epoch; clients spread their
    /// moves with jitter before it.
    pub at: u64,
}

impl Migrate {
    /// Move before `at`, to `url` if given.
    pub fn new(url: Option<String>, at: u64) -> Migrate {
        Migrate { url, at }
    }
}

/// The server's heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Ping {
    /// Server time, milliseconds since the Unix epoch.
    pub time: u64,
}

impl Ping {
    /// A ping at server time `time`.
    pub fn new(time: u64) -> Ping {
        Ping { time }
    }
}
