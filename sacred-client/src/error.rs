//! `Error`: one opaque type for everything a client call can fail with, so new
//! causes (and transport-specific ones) never break callers.

use std::fmt;
use std::sync::Arc;

use sacred_proto::{DisconnectCode, ErrorCode, ReplyError};

use crate::event::RequestError;

/// The cause of an error, kept for [`std::error::Error::source`].
type Source = Arc<dyn std::error::Error + Send + Sync>;

/// Why a client call failed. Ask with the `is_*` methods; the server's error
/// code, if any, is [`Error::code`]; the underlying cause (a TLS or DNS error,
/// the last failed attempt of a connect that timed out) is `source()`.
#[derive(Clone)]
pub struct Error {
    kind: Kind,
    source: Option<Source>,
}

#[derive(Clone, Debug)]
enum Kind {
    Server(ReplyError),
    Timeout,
    ConnectTimeout,
    Disconnected,
    Closed,
    QueueFull,
    Expired,
    TooLarge { bytes: usize, max: usize },
    Invalid(String),
    AlreadySubscribed,
    Refused(u16, String),
    Transport(String),
    Token { message: String, unauthorized: bool },
    Builder(String),
}

impl Error {
    fn new(kind: Kind) -> Error {
        Error { kind, source: None }
    }

    fn with_source(mut self, source: Source) -> Error {
        self.source = Some(source);
        self
    }

    pub(crate) fn refused(code: u16, reason: impl Into<String>) -> Error {
        Error::new(Kind::Refused(code, reason.into()))
    }

    /// A transport failure described in words (the browser gives no more).
    pub(crate) fn transport(what: impl fmt::Display) -> Error {
        Error::new(Kind::Transport(what.to_string()))
    }

    /// A transport failure with its cause as `source()`. (The browser
    /// transport has only words, so only tests use it there.)
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) fn transport_cause(
        what: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::new(Kind::Transport(what.into())).with_source(Arc::new(cause))
    }

    pub(crate) fn token(failure: TokenFailure) -> Error {
        Error::new(Kind::Token {
            message: failure.message,
            unauthorized: failure.unauthorized,
        })
    }

    pub(crate) fn builder(message: impl Into<String>) -> Error {
        Error::new(Kind::Builder(message.into()))
    }

    pub(crate) fn invalid(message: impl fmt::Display) -> Error {
        Error::new(Kind::Invalid(message.to_string()))
    }

    pub(crate) fn closed() -> Error {
        Error::new(Kind::Closed)
    }

    /// The first connect did not succeed in time; `last` is why the last
    /// attempt failed, if one did.
    pub(crate) fn connect_timeout(last: Option<Error>) -> Error {
        let error = Error::new(Kind::ConnectTimeout);
        match last {
            Some(last) => error.with_source(Arc::new(last)),
            None => error,
        }
    }

    /// The server answered with an error reply (see [`Error::code`]).
    pub fn is_server(&self) -> bool {
        matches!(self.kind, Kind::Server(_))
    }

    /// No reply came within the request timeout, or the first connect within
    /// its timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::Timeout | Kind::ConnectTimeout)
    }

    /// The connection was lost before the reply; the command may have been applied.
    pub fn is_disconnected(&self) -> bool {
        matches!(self.kind, Kind::Disconnected)
    }

    /// The client is closed (by `close()`, or by a code that says not to reconnect).
    pub fn is_closed(&self) -> bool {
        matches!(self.kind, Kind::Closed | Kind::Refused(..))
    }

    /// The offline queue was full.
    pub fn is_queue_full(&self) -> bool {
        matches!(self.kind, Kind::QueueFull)
    }

    /// The command waited in the offline queue past its deadline.
    pub fn is_expired(&self) -> bool {
        matches!(self.kind, Kind::Expired)
    }

    /// The command is larger than the server accepts (its announced
    /// `max_frame_bytes`); nothing was sent, and the connection goes on.
    pub fn is_too_large(&self) -> bool {
        matches!(self.kind, Kind::TooLarge { .. })
    }

    /// The command breaks the protocol's rules (a channel's grammar, a name's
    /// length, nesting too deep, a payload that cannot be encoded, such as an
    /// integer beyond 64 bits); nothing was sent.
    pub fn is_invalid(&self) -> bool {
        matches!(self.kind, Kind::Invalid(_))
    }

    /// The channel is already subscribed by this client; the existing
    /// subscription is untouched. Drop it first to subscribe again.
    pub fn is_already_subscribed(&self) -> bool {
        matches!(self.kind, Kind::AlreadySubscribed)
    }

    /// The server refused the connection for good (invalid token, ...);
    /// [`Error::code`] is the disconnect code.
    pub fn is_refused(&self) -> bool {
        matches!(self.kind, Kind::Refused(..))
    }

    /// A connection attempt failed: the socket could not be opened (refused,
    /// DNS, TLS, an HTTP answer other than the upgrade, such as 404 on a wrong
    /// path) or broke. The client retries these.
    pub fn is_transport(&self) -> bool {
        matches!(self.kind, Kind::Transport(_))
    }

    /// The token provider failed (its error is in the message); the client
    /// retries like a failed attempt, unless the provider said [`Unauthorized`].
    pub fn is_token(&self) -> bool {
        matches!(self.kind, Kind::Token { .. })
    }

    /// The user may not connect: the token provider returned [`Unauthorized`],
    /// the server closed with 3507 (unauthorized) or 3500 (invalid token),
    /// or answered error 101. The client retries none of the first three.
    pub fn is_unauthorized(&self) -> bool {
        match &self.kind {
            Kind::Token { unauthorized, .. } => *unauthorized,
            Kind::Refused(code, _) => [DisconnectCode::UNAUTHORIZED, DisconnectCode::INVALID_TOKEN]
                .contains(&DisconnectCode::from_u16(*code)),
            Kind::Server(err) => err.code == ErrorCode::UNAUTHORIZED.as_u32(),
            _ => false,
        }
    }

    /// The builder's settings were invalid.
    pub fn is_builder(&self) -> bool {
        matches!(self.kind, Kind::Builder(_))
    }

    /// The server's error code (error replies) or disconnect code
    /// (refusals); 105 for a subscribe refused locally as a duplicate, the
    /// code the server would have answered.
    pub fn code(&self) -> Option<u32> {
        match &self.kind {
            Kind::Server(err) => Some(err.code),
            Kind::Refused(code, _) => Some(u32::from(*code)),
            Kind::AlreadySubscribed => Some(ErrorCode::ALREADY_SUBSCRIBED.as_u32()),
            _ => None,
        }
    }

    /// The server's own words: an error reply's message, or a refusal's close reason.
    pub fn server_message(&self) -> Option<&str> {
        match &self.kind {
            Kind::Server(err) => Some(&err.message),
            Kind::Refused(_, reason) => Some(reason),
            _ => None,
        }
    }

    /// What the error is about, the most specific first (see [`Category`]).
    pub fn category(&self) -> Category {
        if self.is_timeout() {
            Category::Timeout
        } else if self.is_too_large() {
            Category::TooLarge
        } else if self.is_unauthorized() {
            Category::Unauthorized
        } else if self.is_already_subscribed() {
            Category::AlreadySubscribed
        } else if self.is_refused() {
            Category::Refused
        } else if self.is_closed() {
            Category::Closed
        } else if self.is_server() {
            match self.code().map(ErrorCode::from_u32) {
                Some(ErrorCode::PERMISSION_DENIED) => Category::PermissionDenied,
                Some(ErrorCode::UNRECOVERABLE_POSITION) => Category::UnrecoverablePosition,
                _ => Category::Reply,
            }
        } else if self.is_disconnected() {
            Category::Disconnected
        } else if self.is_queue_full() || self.is_expired() {
            Category::OfflineQueue
        } else if self.is_invalid() {
            Category::Invalid
        } else if self.is_token() {
            Category::Token
        } else if self.is_builder() {
            Category::Builder
        } else {
            Category::Transport
        }
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_temporary(&self) -> bool {
        match &self.kind {
            Kind::Server(err) => err.temporary || ErrorCode::from_u32(err.code).is_temporary(),
            Kind::Timeout
            | Kind::ConnectTimeout
            | Kind::Disconnected
            | Kind::Transport(_)
            | Kind::Token {
                unauthorized: false,
                ..
            }
            | Kind::QueueFull
            | Kind::Expired => true,
            _ => false,
        }
    }
}

/// What an error is about, the most specific first: for code that maps the
/// client's errors onto its own types (the Python and browser packages'
/// exception classes), so the order of the `is_*` checks lives here once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Category {
    /// [`Error::is_timeout`].
    Timeout,
    /// [`Error::is_too_large`].
    TooLarge,
    /// [`Error::is_unauthorized`] (also refused or a reply, which it wins over).
    Unauthorized,
    /// [`Error::is_already_subscribed`].
    AlreadySubscribed,
    /// [`Error::is_refused`], other than unauthorized.
    Refused,
    /// [`Error::is_closed`], not refused.
    Closed,
    /// A reply with 103.
    PermissionDenied,
    /// A reply with 112.
    UnrecoverablePosition,
    /// Any other error reply ([`Error::is_server`]).
    Reply,
    /// [`Error::is_disconnected`].
    Disconnected,
    /// [`Error::is_queue_full`] or [`Error::is_expired`].
    OfflineQueue,
    /// [`Error::is_invalid`].
    Invalid,
    /// [`Error::is_token`], not unauthorized.
    Token,
    /// [`Error::is_builder`].
    Builder,
    /// [`Error::is_transport`], and anything else.
    Transport,
}

/// What a token provider returns when the user may not connect at all (the
/// session was revoked, the account is gone): the client stops, closed with
/// 3507 (unauthorized), instead of retrying with backoff as it does for any
/// other error of the provider. Return it as the provider's error type, or
/// boxed in a `Box<dyn Error + Send + Sync>` beside other errors.
///
/// ```no_run
/// use sacred_client::{Client, Unauthorized};
///
/// # fn run() -> Result<(), sacred_client::Error> {
/// let client = Client::builder("ws://127.0.0.1:8000/ws")
///     .token_provider(|| async { Err::<String, _>(Unauthorized::new("signed out")) })
///     .build()?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unauthorized(String);

impl Unauthorized {
    /// Says why, in words the application's log will show.
    pub fn new(reason: impl Into<String>) -> Unauthorized {
        Unauthorized(reason.into())
    }

    /// Why.
    pub fn reason(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Unauthorized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unauthorized: {}", self.0)
    }
}

impl std::error::Error for Unauthorized {}

/// A token provider's failure as the connection task sees it.
#[derive(Clone, Debug)]
pub(crate) struct TokenFailure {
    pub(crate) message: String,
    pub(crate) unauthorized: bool,
}

impl TokenFailure {
    /// Whatever the provider failed with; [`Unauthorized`], on its own or
    /// boxed as a `Box<dyn Error + Send + Sync>`, stops the client.
    pub(crate) fn new<E: fmt::Display + 'static>(err: E) -> TokenFailure {
        let any = &err as &dyn std::any::Any;
        let refused = any.downcast_ref::<Unauthorized>().or_else(|| {
            any.downcast_ref::<Box<dyn std::error::Error + Send + Sync>>()
                .and_then(|boxed| boxed.downcast_ref::<Unauthorized>())
        });
        TokenFailure {
            message: match refused {
                Some(refused) => refused.0.clone(),
                None => err.to_string(),
            },
            unauthorized: refused.is_some(),
        }
    }
}

impl From<RequestError> for Error {
    fn from(err: RequestError) -> Error {
        Error::new(match err {
            RequestError::Server(reply) => Kind::Server(reply),
            RequestError::Timeout => Kind::Timeout,
            RequestError::Disconnected => Kind::Disconnected,
            RequestError::QueueFull => Kind::QueueFull,
            RequestError::Expired => Kind::Expired,
            RequestError::Closed => Kind::Closed,
            RequestError::TooLarge { bytes, max } => Kind::TooLarge { bytes, max },
            RequestError::Invalid(message) => Kind::Invalid(message),
            RequestError::AlreadySubscribed => Kind::AlreadySubscribed,
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Server(err) => {
                let code = ErrorCode::from_u32(err.code);
                if code.text() == Some(err.message.as_str()) {
                    write!(f, "server error {code}")
                } else {
                    write!(f, "server error {code}: {}", err.message)
                }
            }
            Kind::Timeout => f.write_str("request timed out"),
            Kind::ConnectTimeout => match &self.source {
                Some(last) => write!(f, "connect timed out; the last attempt: {last}"),
                None => f.write_str("connect timed out before any attempt ended"),
            },
            Kind::Disconnected => f.write_str("connection lost before the reply"),
            Kind::Closed => f.write_str("client is closed"),
            Kind::QueueFull => f.write_str("offline queue is full"),
            Kind::Expired => f.write_str("command expired in the offline queue"),
            Kind::TooLarge { bytes, max } => write!(
                f,
                "command of {bytes} bytes is larger than the server accepts ({max} bytes)"
            ),
            Kind::Invalid(message) => write!(f, "invalid command: {message}"),
            Kind::AlreadySubscribed => f.write_str("already subscribed to this channel"),
            Kind::Refused(code, reason) => write!(f, "connection refused with {code}: {reason}"),
            Kind::Transport(err) => write!(f, "transport error: {err}"),
            Kind::Token {
                message,
                unauthorized: true,
            } => write!(f, "token provider refused: {message}"),
            Kind::Token { message, .. } => write!(f, "token provider failed: {message}"),
            Kind::Builder(err) => write!(f, "invalid client settings: {err}"),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Error");
        debug.field("kind", &self.kind);
        if let Some(source) = &self.source {
            debug.field("source", &source.to_string());
        }
        debug.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn messages_carry_the_server_text_and_causes_stay_reachable() {
        let refused = RequestError::Server(ReplyError::new(
            ErrorCode::UNKNOWN_CHANNEL,
            "unknown channel: its namespace is not configured",
        ));
        let err = Error::from(refused);
        assert_eq!(
            err.to_string(),
            "server error 102 (unknown channel): unknown channel: its namespace is not configured"
        );
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let attempt = Error::transport_cause("cannot connect to 127.0.0.1:1", io);
        let timeout = Error::connect_timeout(Some(attempt));
        assert!(timeout.is_timeout() && timeout.is_temporary());
        let cause = timeout.source().unwrap();
        assert_eq!(
            cause.to_string(),
            "transport error: cannot connect to 127.0.0.1:1"
        );
        assert_eq!(cause.source().unwrap().to_string(), "refused");
    }
}
