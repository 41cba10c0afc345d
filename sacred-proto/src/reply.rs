//! Replies: the server's answer to each command, or the error that refused it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::code::ErrorCode;
use crate::command::CommandKind;
use crate::info::Peer;
use crate::limits::Limits;
use crate::push::Publication;
use crate::value::Value;

tagged_enum! {
    /// The body of a successful reply; its key is the command's key.
    pub enum Reply: CommandKind {
        /// Answers `connect`.
        Connect(ConnectReply),
        /// Answers `subscribe`.
        Subscribe(SubscribeReply),
        /// Answers `unsubscribe`.
        Unsubscribe(UnsubscribeReply),
        /// Answers `publish`: the ack.
        Publish(PublishReply),
        /// Answers `send`.
        Send(SendReply),
        /// Answers `presence`.
        Presence(PresenceReply),
        /// Answers `history`.
        History(HistoryReply),
        /// Answers `rpc`.
        Rpc(RpcReply),
        /// Answers `pong`.
        Pong(PongReply),
        /// Answers `refresh`.
        Refresh(RefreshReply),
        /// Answers `search`.
        Search(SearchReply),
    }
}

/// Answers `connect`: the connection's identity and heartbeat terms.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConnectReply {
    /// The client id the server assigned to this connection.
    #[serde(deserialize_with = "crate::text::string")]
    pub client: String,
    /// The server's name and version, e.g. `"sacred-server/0.1.0"`.
    #[serde(
        default,
        deserialize_with = "crate::text::nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub version: String,
    /// Milliseconds between the server's `ping` pushes.
    pub ping_interval: u32,
    /// Milliseconds the server waits for a `pong` before closing with "no pong".
    pub pong_timeout: u32,
    /// Server time, milliseconds since the Unix epoch.
    pub time: u64,
    /// When the token expires, milliseconds since the Unix epoch; absent if never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
    /// The result of each subscription the connect asked for, by channel.
    #[serde(
        default,
        deserialize_with = "crate::nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub subs: BTreeMap<String, SubscribeReply>,
    /// Application data from the host's connect hook.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
    /// What the server accepts from this client: frame size, batch length,
    /// depth, name lengths. A frame beyond them closes the connection, so a
    /// client checks its commands against them first. Absent: the defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
}

impl ConnectReply {
    /// A reply for client `client` with the heartbeat terms and server time.
    pub fn new(
        client: impl Into<String>,
        ping_interval: u32,
        pong_timeout: u32,
        time: u64,
    ) -> ConnectReply {
        ConnectReply {
            client: client.into(),
            ping_interval,
            pong_timeout,
            time,
            ..ConnectReply::default()
        }
    }
}

/// Answers `subscribe`, and each entry of a connect's `subs`.
///
/// `offset` and `epoch` are the stream's position after `publications` and are
/// present when the channel keeps history. `recovered` says whether every
/// publication after the requested position is in `publications`; when it is
/// false after a recovery request, none are, and the application reloads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SubscribeReply {
    /// The stream's offset after `publications`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The stream's epoch.
    #[serde(
        default,
        deserialize_with = "crate::text::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub epoch: Option<String>,
    /// Whether recovery succeeded: all missed publications follow, in order.
    /// Always written, so that `false` (reload) is visible on the wire.
    #[serde(default, deserialize_with = "crate::nullable")]
    pub recovered: bool,
    /// The missed publications, oldest first.
    #[serde(
        default,
        deserialize_with = "crate::nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub publications: Vec<Publication>,
}

/// Answers `unsubscribe`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UnsubscribeReply {}

/// Answers `publish`: the publication was accepted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PublishReply {
    /// The offset the publication got, when the channel keeps history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The stream's epoch, when the channel keeps history.
    #[serde(
        default,
        deserialize_with = "crate::text::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub epoch: Option<String>,
}

/// Answers `send`: the message was handed to the recipient's connection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SendReply {}

/// Answers `presence`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PresenceReply {
    /// Every client subscribed to the channel, in no particular order.
    #[serde(
        default,
        deserialize_with = "crate::nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub clients: Vec<Peer>,
}

/// Answers `history`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HistoryReply {
    /// The stream's current offset (of its newest publication; 0 if none yet).
    pub offset: u64,
    /// The stream's epoch.
    #[serde(deserialize_with = "crate::text::string")]
    pub epoch: String,
    /// The publications asked for, in the order asked for.
    #[serde(
        default,
        deserialize_with = "crate::nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub publications: Vec<Publication>,
}

/// Answers `search`: the matches asked for, best first, and how many there
/// are in all.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SearchReply {
    /// How many publications match in all (for paging).
    pub total: u64,
    /// The matching publications after `skip`, at most `limit`, best first.
    #[serde(
        default,
        deserialize_with = "crate::nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub publications: Vec<Publication>,
}

/// Answers `rpc` with the handler's result.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RpcReply {
    /// What the handler returned.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
}

impl RpcReply {
    /// A reply carrying `data`.
    pub fn new(data: Value) -> RpcReply {
        RpcReply { data }
    }
}

/// Answers `pong` with the server's clock.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PongReply {
    /// Server time, milliseconds since the Unix epoch.
    pub time: u64,
}

impl PongReply {
    /// A reply carrying server time.
    pub fn new(time: u64) -> PongReply {
        PongReply { time }
    }
}

/// Answers `refresh`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RefreshReply {
    /// When the new token expires, milliseconds since the Unix epoch; absent if never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
}

/// The error that refused a command: `{"id": N, "error": {code, message, temporary}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReplyError {
    /// An [`ErrorCode`]: 100-399 Sacred's, 400-1999 the application's.
    pub code: u32,
    /// A human-readable explanation.
    #[serde(deserialize_with = "crate::text::string")]
    pub message: String,
    /// Whether the same command may succeed if retried later.
    #[serde(default, deserialize_with = "crate::nullable")]
    pub temporary: bool,
}

impl ReplyError {
    /// An error with `code`, `message`, and the code's own `temporary` flag.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ReplyError {
        ReplyError {
            code: code.as_u32(),
            message: message.into(),
            temporary: code.is_temporary(),
        }
    }

    /// The code as an [`ErrorCode`].
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::from_u32(self.code)
    }
}

impl From<ErrorCode> for ReplyError {
    /// An error with the code's standard text as its message.
    fn from(code: ErrorCode) -> ReplyError {
        ReplyError::new(code, code.text().unwrap_or("application error"))
    }
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error {}: {}", self.code, self.message)
    }
}

impl std::error::Error for ReplyError {}
