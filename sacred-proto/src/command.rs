//! Commands: what a client asks of the server, each answered by exactly one reply.

use serde::{Deserialize, Serialize};

use crate::info::{ClientInfo, StreamPosition};
use crate::value::Value;

kind_enum! {
    /// The kinds of command; each names the command's key on the wire and the
    /// key of its reply.
    pub enum CommandKind {
        /// `connect`
        Connect = "connect",
        /// `subscribe`
        Subscribe = "subscribe",
        /// `unsubscribe`
        Unsubscribe = "unsubscribe",
        /// `publish`
        Publish = "publish",
        /// `send`
        Send = "send",
        /// `presence`
        Presence = "presence",
        /// `history`
        History = "history",
        /// `rpc`
        Rpc = "rpc",
        /// `pong`
        Pong = "pong",
        /// `refresh`
        Refresh = "refresh",
        /// `search`
        Search = "search",
    }
}

tagged_enum! {
    /// The body of a command; [`ClientMessage`](crate::ClientMessage) adds its id.
    pub enum Command: CommandKind {
        /// Authenticate and describe the client; must be the first command.
        Connect(ConnectRequest),
        /// Join a channel, optionally recovering from a stream position.
        Subscribe(SubscribeRequest),
        /// Leave a channel.
        Unsubscribe(UnsubscribeRequest),
        /// Publish to a channel; the reply is the ack.
        Publish(PublishRequest),
        /// Send data to one client by its id.
        Send(SendRequest),
        /// List who is subscribed to a channel.
        Presence(PresenceRequest),
        /// Read a channel's history.
        History(HistoryRequest),
        /// Call a handler the host application registered by method name.
        Rpc(RpcRequest),
        /// Answer the server's ping; the reply carries server time.
        Pong(PongRequest),
        /// Replace the connection's token before it expires.
        Refresh(RefreshRequest),
        /// Search a channel's stored history for words.
        Search(SearchRequest),
    }
}

/// `connect`: authenticates, describes the client and may subscribe at once.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConnectRequest {
    /// The credential the server's authenticator checks (API key, JWT); absent for anonymous.
    #[serde(
        default,
        deserialize_with = "crate::text::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub token: Option<String>,
    /// What the client says about itself.
    #[serde(
        default,
        deserialize_with = "crate::nullable",
        skip_serializing_if = "ClientInfo::is_empty"
    )]
    pub client: ClientInfo,
    /// Application data for the host's connect hook.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
    /// Channels to subscribe to (and recover) as part of connecting, saving a
    /// round trip after a reconnect. Each gets an entry in the reply's `subs`
    /// or, if refused, an `unsubscribed` push.
    #[serde(
        default,
        deserialize_with = "crate::nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub subs: Vec<SubscribeRequest>,
}

impl ConnectRequest {
    /// A connect with an optional token and the client's description.
    pub fn new(token: Option<String>, client: ClientInfo) -> ConnectRequest {
        ConnectRequest {
            token,
            client,
            ..ConnectRequest::default()
        }
    }
}

/// `subscribe`: one subscription per channel per connection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SubscribeRequest {
    /// The channel, `namespace:name` or `name`.
    #[serde(deserialize_with = "crate::text::string")]
    pub channel: String,
    /// The last position the client saw; asks for every publication after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recover: Option<StreamPosition>,
    /// Opt in to `join` and `leave` pushes for this channel.
    #[serde(
        default,
        deserialize_with = "crate::nullable",
        skip_serializing_if = "crate::is_false"
    )]
    pub join_leave: bool,
}

impl SubscribeRequest {
    /// A plain subscription to `channel`.
    pub fn new(channel: impl Into<String>) -> SubscribeRequest {
        SubscribeRequest {
            channel: channel.into(),
            ..SubscribeRequest::default()
        }
    }

    /// Asks for every publication after `position`.
    pub fn recover(mut self, position: StreamPosition) -> SubscribeRequest {
        self.recover = Some(position);
        self
    }

    /// Opts in (or out) of `join` and `leave` pushes.
    pub fn join_leave(mut self, join_leave: bool) -> SubscribeRequest {
        self.join_leave = join_leave;
        self
    }
}

/// `unsubscribe`: leave a channel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UnsubscribeRequest {
    /// The channel to leave.
    #[serde(deserialize_with = "crate::text::string")]
    pub channel: String,
}

impl UnsubscribeRequest {
    /// Leave `channel`.
    pub fn new(channel: impl Into<String>) -> UnsubscribeRequest {
        UnsubscribeRequest {
            channel: channel.into(),
        }
    }
}

/// `publish`: deliver data to every subscriber of a channel.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PublishRequest {
    /// The channel to publish to.
    #[serde(deserialize_with = "crate::text::string")]
    pub channel: String,
    /// The payload.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
    /// The publisher's W3C `traceparent` (see [`validate_traceparent`]); the
    /// server carries it to the publication, so subscribers continue the
    /// publisher's trace.
    ///
    /// [`validate_traceparent`]: crate::validate_traceparent
    #[serde(
        default,
        deserialize_with = "crate::text::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub traceparent: Option<String>,
}

impl PublishRequest {
    /// Publish `data` to `channel`.
    pub fn new(channel: impl Into<String>, data: Value) -> PublishRequest {
        PublishRequest {
            channel: channel.into(),
            data,
            traceparent: None,
        }
    }

    /// The same publish carrying the W3C `traceparent` of the publisher's span.
    pub fn with_traceparent(mut self, traceparent: impl Into<String>) -> PublishRequest {
        self.traceparent = Some(traceparent.into());
        self
    }
}

/// `send`: deliver data to one client, which receives a `message` push.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SendRequest {
    /// The recipient's client id.
    #[serde(deserialize_with = "crate::text::string")]
    pub to: String,
    /// The payload.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
}

impl SendRequest {
    /// Send `data` to the client with id `to`.
    pub fn new(to: impl Into<String>, data: Value) -> SendRequest {
        SendRequest {
            to: to.into(),
            data,
        }
    }
}

/// `presence`: who is subscribed to a channel now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PresenceRequest {
    /// The channel.
    #[serde(deserialize_with = "crate::text::string")]
    pub channel: String,
}

impl PresenceRequest {
    /// Presence of `channel`.
    pub fn new(channel: impl Into<String>) -> PresenceRequest {
        PresenceRequest {
            channel: channel.into(),
        }
    }
}

/// `history`: read publications kept for a channel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HistoryRequest {
    /// The channel.
    #[serde(deserialize_with = "crate::text::string")]
    pub channel: String,
    /// Only publications after this position; its epoch must be the stream's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<StreamPosition>,
    /// At most this many publications; absent means the server's maximum,
    /// `0` asks for the stream position alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Newest first instead of oldest first.
    #[serde(
        default,
        deserialize_with = "crate::nullable",
        skip_serializing_if = "crate::is_false"
    )]
    pub reverse: bool,
}

impl HistoryRequest {
    /// The history of `channel`, oldest first, up to the server's maximum.
    ///
    /// ```
    /// use sacred_proto::{HistoryRequest, StreamPosition};
    ///
    /// let newest_ten = HistoryRequest::new("chat:lobby").limit(10).reverse(true);
    /// let missed = HistoryRequest::new("chat:lobby").since(StreamPosition::new(41, "x7Kp"));
    /// # let _ = (newest_ten, missed);
    /// ```
    pub fn new(channel: impl Into<String>) -> HistoryRequest {
        HistoryRequest {
            channel: channel.into(),
            ..HistoryRequest::default()
        }
    }

    /// Only publications after `position` (whose epoch must be the stream's).
    pub fn since(mut self, position: StreamPosition) -> HistoryRequest {
        self.since = Some(position);
        self
    }

    /// At most `limit` publications; `0` asks for the stream position alone.
    pub fn limit(mut self, limit: u32) -> HistoryRequest {
        self.limit = Some(limit);
        self
    }

    /// Newest first (the newest `limit`) instead of oldest first.
    pub fn reverse(mut self, reverse: bool) -> HistoryRequest {
        self.reverse = reverse;
        self
    }
}

/// The longest `text` a `search` may carry, in bytes.
pub const MAX_SEARCH_TEXT_BYTES: usize = 1024;

/// `search`: full-text search of a channel's stored history, best match
/// first, in pages.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SearchRequest {
    /// The channel.
    #[serde(deserialize_with = "crate::text::string")]
    pub channel: String,
    /// The words to find, all of them, in any order and any case; a word
    /// ending in `*` matches as a prefix. At most [`MAX_SEARCH_TEXT_BYTES`].
    #[serde(deserialize_with = "crate::text::string")]
    pub text: String,
    /// At most this many publications; absent means 10, the server may
    /// cap it (the reference server at 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Matches skipped before the first returned (paging: `limit` times
    /// the page number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip: Option<u32>,
}

impl SearchRequest {
    /// The first 10 publications of `channel` with every word of `text`.
    ///
    /// ```
    /// use sacred_proto::SearchRequest;
    ///
    /// let second_page = SearchRequest::new("ops:deploys", "rollback node*").limit(20).skip(20);
    /// # let _ = second_page;
    /// ```
    pub fn new(channel: impl Into<String>, text: impl Into<String>) -> SearchRequest {
        SearchRequest {
            channel: channel.into(),
            text: text.into(),
            ..SearchRequest::default()
        }
    }

    /// At most `limit` publications.
    pub fn limit(mut self, limit: u32) -> SearchRequest {
        self.limit = Some(limit);
        self
    }

    /// Skip the first `skip` matches.
    pub fn skip(mut self, skip: u32) -> SearchRequest {
        self.skip = Some(skip);
        self
    }
}

/// `rpc`: call a handler the host registered under `method`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RpcRequest {
    /// The handler's name.
    #[serde(deserialize_with = "crate::text::string")]
    pub method: String,
    /// The argument.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
}

impl RpcRequest {
    /// Call `method` with `data`.
    pub fn new(method: impl Into<String>, data: Value) -> RpcRequest {
        RpcRequest {
            method: method.into(),
            data,
        }
    }
}

/// `pong`: the answer to a `ping` push. Its reply carries server time, so each
/// heartbeat also gives the client a round-trip sample for its clock estimate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PongRequest {}

impl PongRequest {
    /// A pong.
    pub fn new() -> PongRequest {
        PongRequest {}
    }
}

/// `refresh`: replace the connection's token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RefreshRequest {
    /// The new token.
    #[serde(deserialize_with = "crate::text::string")]
    pub token: String,
}

impl RefreshRequest {
    /// Refresh with `token`.
    pub fn new(token: impl Into<String>) -> RefreshRequest {
        RefreshRequest {
            token: token.into(),
        }
    }
}
