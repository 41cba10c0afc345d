//! `Error`: one opaque type for everything a client call can fail with, so new
//! causes (and transport-specific ones) never break callers.

use std::fmt;

use sacred_proto::{ErrorCode, ReplyError};

use crate::event::RequestError;

/// Why a client call failed. Ask with the `is_*` methods; the server's error
/// code, if any, is [`Error::code`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    kind: Kind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Server(ReplyError),
    Timeout,
    Disconnected,
    Closed,
    QueueFull,
    Expired,
    Refused(u16, String),
    Transport(String),
    Builder(String),
}

impl Error {
    pub(crate) fn refused(code: u16, reason: impl Into<String>) -> Error {
        Error {
            kind: Kind::Refused(code, reason.into()),
        }
    }

    pub(crate) fn transport(err: impl fmt::Display) -> Error {
        Error {
            kind: Kind::Transport(err.to_string()),
        }
    }

    pub(crate) fn builder(message: impl Into<String>) -> Error {
        Error {
            kind: Kind::Builder(message.into()),
        }
    }

    pub(crate) fn closed() -> Error {
        Error { kind: Kind::Closed }
    }

    /// The server answered with an error reply (see [`Error::code`]).
    pub fn is_server(&self) -> bool {
        matches!(self.kind, Kind::Server(_))
    }

    /// No reply came within the request timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::Timeout)
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

    /// The publish waited in the offline queue past its deadline.
    pub fn is_expired(&self) -> bool {
        matches!(self.kind, Kind::Expired)
    }

    /// The server refused the connection for good (invalid token, ...);
    /// [`Error::code`] is the disconnect code.
    pub fn is_refused(&self) -> bool {
        matches!(self.kind, Kind::Refused(..))
    }

    /// The builder's settings were invalid.
    pub fn is_builder(&self) -> bool {
        matches!(self.kind, Kind::Builder(_))
    }

    /// The server's error code (error replies) or disconnect code (refusals).
    pub fn code(&self) -> Option<u32> {
        match &self.kind {
            Kind::Server(err) => Some(err.code),
            Kind::Refused(code, _) => Some(u32::from(*code)),
            _ => None,
        }
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_temporary(&self) -> bool {
        match &self.kind {
            Kind::Server(err) => err.temporary || ErrorCode::from_u32(err.code).is_temporary(),
            Kind::Timeout | Kind::Disconnected | Kind::Transport(_) => true,
            _ => false,
        }
    }
}

impl From<RequestError> for Error {
    fn from(err: RequestError) -> Error {
        let kind = match err {
            RequestError::Server(reply) => Kind::Server(reply),
            RequestError::Timeout => Kind::Timeout,
            RequestError::Disconnected => Kind::Disconnected,
            RequestError::QueueFull => Kind::QueueFull,
            RequestError::Expired => Kind::Expired,
            RequestError::Closed => Kind::Closed,
        };
        Error { kind }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Server(err) => write!(f, "server error {}: {}", err.code, err.message),
            Kind::Timeout => f.write_str("request timed out"),
            Kind::Disconnected => f.write_str("connection lost before the reply"),
            Kind::Closed => f.write_str("client is closed"),
            Kind::QueueFull => f.write_str("offline queue is full"),
            Kind::Expired => f.write_str("publish expired in the offline queue"),
            Kind::Refused(code, reason) => write!(f, "connection refused with {code}: {reason}"),
            Kind::Transport(err) => write!(f, "transport error: {err}"),
            Kind::Builder(err) => write!(f, "invalid client settings: {err}"),
        }
    }
}

impl std::error::Error for Error {}
