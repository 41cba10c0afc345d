//! What a session says and hears besides frames: its state, the actions it
//! asks of a transport, the events it reports, and why a request failed.

use sacred_proto::{ConnectReply, Peer, Publication, Reply, ReplyError, Value};

/// Where the session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Not connected; a reconnect may be scheduled.
    Disconnected,
    /// A socket is opening or the connect command is in flight.
    Connecting,
    /// Connected: commands flow.
    Connected,
    /// Closed for good (by the user, or by a code that says not to reconnect).
    Closed,
}

/// What the transport should do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open a socket, to `url` if given (migrate advice), else the configured URL.
    Open {
        /// Where to, when the server advised a move.
        url: Option<String>,
    },
    /// Close the socket (the transport reports back with `handle_close`).
    Close,
    /// Ask the token provider for a new token and pass it to
    /// [`Session::refresh`](crate::Session::refresh): the current one expires soon.
    FetchToken,
}

/// Identifies a user command; its result comes back as [`Event::Reply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// Why a user command failed without a reply from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// The server refused it.
    Server(ReplyError),
    /// No reply within the request timeout.
    Timeout,
    /// The connection was lost before the reply; the command may or may not
    /// have been applied.
    Disconnected,
    /// The session is closed.
    Closed,
    /// The offline queue is full.
    QueueFull,
    /// It waited in the offline queue past its deadline.
    Expired,
    /// Encoded, it is larger than the server accepts (which would close the
    /// connection): nothing was sent.
    TooLarge {
        /// The command's size in bytes.
        bytes: usize,
        /// The server's limit.
        max: usize,
    },
    /// Its content breaks the protocol's rules (a channel's grammar, a name's
    /// length, nesting deeper than the server accepts, a payload that cannot
    /// be encoded): nothing was sent.
    Invalid(String),
    /// The channel is already subscribed; the existing subscription goes on.
    AlreadySubscribed,
}

/// What the application should hear about.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The state changed.
    State(State),
    /// Connected (again), with the server's terms.
    Connected(ConnectReply),
    /// The connection ended (or an attempt failed) with this code; `reconnect`
    /// says whether the session tries again.
    Disconnected {
        /// The close code (1006 when the socket just dropped or never opened).
        code: u16,
        /// Why, as the server or the socket said.
        reason: String,
        /// Whether a reconnect is scheduled.
        reconnect: bool,
    },
    /// A subscription is (again) active. After a reconnect, `recovered` says
    /// whether every missed publication was replayed; if false, reload.
    Subscribed {
        /// The channel.
        channel: String,
        /// Whether missed publications were all replayed.
        recovered: bool,
    },
    /// A publication of a subscribed channel, duplicates removed, in order.
    Publication(Publication),
    /// A client joined a channel (subscriptions that opted in).
    Join {
        /// The channel.
        channel: String,
        /// Who.
        client: Peer,
    },
    /// A client left a channel.
    Leave {
        /// The channel.
        channel: String,
        /// Who.
        client: Peer,
    },
    /// A direct message.
    Message {
        /// The sender, or `None` for the server.
        from: Option<Peer>,
        /// The payload.
        data: Value,
    },
    /// The server ended or refused a subscription; it is not resubscribed.
    Unsubscribed {
        /// The channel.
        channel: String,
        /// The error code that says why.
        code: u32,
        /// The server's words.
        reason: String,
    },
    /// The result of a user command.
    Reply {
        /// Which command.
        request: RequestId,
        /// Its reply, or why there is none.
        result: Result<Reply, RequestError>,
    },
}
