//! Error and disconnect codes: each number, its text and its meaning, defined once.

use std::fmt;

/// The code of an error reply (`{code, message, temporary}`).
///
/// Codes 100-399 belong to Sacred and are the associated constants below;
/// 400-1999 belong to host applications (RPC handlers, hooks), built with
/// [`ErrorCode::application`]. The wire carries the bare number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrorCode(u32);

/// The code of a disconnect: the WebSocket close code, also pushed as
/// `{"disconnect": {code, reason, reconnect}}` just before the close.
///
/// 3000-3499 and 4000-4499 tell the client to reconnect; 3500-3999 and
/// 4500-4999 tell it not to. 3000-3999 belong to Sacred (the constants below),
/// 4000-4999 to host applications, built with [`DisconnectCode::application`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DisconnectCode(u16);

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $name:ident = $code:literal, $text:literal, temporary: $temporary:literal; )+) => {
        impl ErrorCode {
            $( $(#[$doc])* pub const $name: ErrorCode = ErrorCode($code); )+

            /// Every code Sacred itself defines, in ascending order.
            pub const SERVER_CODES: &'static [ErrorCode] = &[$(ErrorCode::$name),+];

            /// The standard text of a Sacred code; `None` for other codes.
            pub const fn text(self) -> Option<&'static str> {
                match self.0 { $( $code => Some($text), )+ _ => None }
            }

            /// Whether the same command may succeed if retried later
            /// (the `temporary` flag Sacred sets for its own codes).
            pub const fn is_temporary(self) -> bool {
                match self.0 { $( $code => $temporary, )+ _ => false }
            }
        }
    };
}

error_codes! {
    /// Something failed inside the server; retrying may help.
    INTERNAL = 100, "internal server error", temporary: true;
    /// The command needs credentials the connection does not have.
    UNAUTHORIZED = 101, "unauthorized", temporary: false;
    /// The channel's namespace is not configured on this server.
    UNKNOWN_CHANNEL = 102, "unknown channel", temporary: false;
    /// The identity may not do this on this channel.
    PERMISSION_DENIED = 103, "permission denied", temporary: false;
    /// No RPC handler is registered under this method.
    METHOD_NOT_FOUND = 104, "method not found", temporary: false;
    /// The connection already holds a subscription to this channel.
    ALREADY_SUBSCRIBED = 105, "already subscribed", temporary: false;
    /// A configured limit (channels per connection, ...) is reached.
    LIMIT_EXCEEDED = 106, "limit exceeded", temporary: false;
    /// The command is well-formed but its content is invalid (channel grammar, lengths).
    BAD_REQUEST = 107, "bad request", temporary: false;
    /// The feature is off for this channel (history, presence) or on this server.
    NOT_AVAILABLE = 108, "not available", temporary: false;
    /// The connection's token has expired; send `refresh` with a new one.
    TOKEN_EXPIRED = 109, "token expired", temporary: false;
    /// `connect` was sent on a connection that is already connected.
    ALREADY_CONNECTED = 110, "already connected", temporary: false;
    /// The connection sends commands faster than its rate limit allows.
    TOO_MANY_REQUESTS = 111, "too many requests", temporary: true;
    /// The requested `{offset, epoch}` can no longer be served: the epoch changed
    /// or the publications after that offset left the history window.
    UNRECOVERABLE_POSITION = 112, "unrecoverable position", temporary: false;
    /// `unsubscribe` for a channel the connection is not subscribed to.
    NOT_SUBSCRIBED = 113, "not subscribed", temporary: false;
    /// `send` to a client id that is not connected.
    CLIENT_NOT_FOUND = 114, "client not found", temporary: false;
    /// The server gave up waiting (an RPC handler, a store); retrying may help.
    TIMEOUT = 115, "timeout", temporary: true;
}

impl ErrorCode {
    /// The lowest code an application may use.
    pub const APPLICATION_MIN: u32 = 400;
    /// The highest code an application may use.
    pub const APPLICATION_MAX: u32 = 1999;

    /// An application code (400-1999), or `None` outside that range.
    pub const fn application(code: u32) -> Option<ErrorCode> {
        if code >= Self::APPLICATION_MIN && code <= Self::APPLICATION_MAX {
            Some(ErrorCode(code))
        } else {
            None
        }
    }

    /// Reads a code received on the wire; any number is accepted so that
    /// newer servers' codes reach the application unchanged.
    pub const fn from_u32(code: u32) -> ErrorCode {
        ErrorCode(code)
    }

    /// The number on the wire.
    pub const fn as_u32(self) -> u32 {
        self.0
    }

    /// Whether the code is in the applications' range (400-1999).
    pub const fn is_application(self) -> bool {
        self.0 >= Self::APPLICATION_MIN && self.0 <= Self::APPLICATION_MAX
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.text() {
            Some(text) => write!(f, "{} ({text})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

macro_rules! disconnect_codes {
    ($( $(#[$doc:meta])* $name:ident = $code:literal, $text:literal; )+) => {
        impl DisconnectCode {
            $( $(#[$doc])* pub const $name: DisconnectCode = DisconnectCode($code); )+

            /// Every code Sacred itself defines, in ascending order.
            pub const SERVER_CODES: &'static [DisconnectCode] = &[$(DisconnectCode::$name),+];

            /// The standard reason of a Sacred code; `None` for other codes.
            pub const fn text(self) -> Option<&'static str> {
                match self.0 { $( $code => Some($text), )+ _ => None }
            }
        }
    };
}

disconnect_codes! {
    /// The server is shutting down (or moving the client); reconnect, elsewhere if advised.
    SHUTDOWN = 3001, "shutdown";
    /// The client did not read fast enough and its outbound queue overflowed.
    SLOW_CONSUMER = 3002, "slow consumer";
    /// The client did not answer the server's ping in time.
    NO_PONG = 3003, "no pong";
    /// The connection's token expired and was not refreshed; reconnect with a new one.
    TOKEN_EXPIRED = 3004, "token expired";
    /// The server lost state it needs for this connection; reconnect and recover.
    INSUFFICIENT_STATE = 3005, "insufficient state";
    /// The host application asked the client to reconnect.
    FORCE_RECONNECT = 3006, "force reconnect";
    /// The client kept sending after its rate limit was exhausted; reconnect after backoff.
    TOO_MANY_REQUESTS = 3007, "too many requests";
    /// The server failed while serving the connection; reconnect after backoff.
    SERVER_ERROR = 3008, "server error";
    /// The token is invalid (bad signature, unknown key, revoked).
    INVALID_TOKEN = 3500, "invalid token";
    /// A frame could not be decoded or broke the protocol (malformed, truncated,
    /// wrong types, unknown message type, too deep, batch too long, command before connect).
    BAD_REQUEST = 3501, "bad request";
    /// The connection sent no `connect` command within the deadline.
    STALE = 3502, "stale";
    /// The host application disconnected the client for good.
    FORCE_DISCONNECT = 3503, "force disconnect";
    /// Too many connections for this user or this server.
    CONNECTION_LIMIT = 3504, "connection limit";
    /// The identity may not connect.
    PERMISSION_DENIED = 3505, "permission denied";
    /// An inbound frame exceeded the maximum frame size.
    MESSAGE_TOO_BIG = 3506, "message too big";
    /// No credentials were given and this server refuses anonymous connections.
    UNAUTHORIZED = 3507, "unauthorized";
}

impl DisconnectCode {
    /// An application code (4000-4999), or `None` outside that range.
    /// 4000-4499 mean "reconnect", 4500-4999 "do not reconnect".
    pub const fn application(code: u16) -> Option<DisconnectCode> {
        if code >= 4000 && code <= 4999 {
            Some(DisconnectCode(code))
        } else {
            None
        }
    }

    /// Reads a close code received from the transport; any number is accepted.
    pub const fn from_u16(code: u16) -> DisconnectCode {
        DisconnectCode(code)
    }

    /// The number on the wire and in the WebSocket close frame.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// Whether a client that sees this code should reconnect.
    ///
    /// 3000-3499 and 4000-4499: yes. 3500-3999 and 4500-4999: no. Below 3000 the
    /// code is the WebSocket's own (RFC 6455): reconnect, except after 1002, 1003,
    /// 1007, 1008, 1009 and 1010, which say the peer refused what it was sent and a
    /// new connection would repeat it. Anything else: reconnect.
    pub const fn should_reconnect(self) -> bool {
        match self.0 {
            3000..=3499 | 4000..=4499 => true,
            3500..=3999 | 4500..=4999 => false,
            1002 | 1003 | 1007 | 1008 | 1009 | 1010 => false,
            _ => true,
        }
    }
}

impl fmt::Display for DisconnectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.text() {
            Some(text) => write!(f, "{} ({text})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_error_codes_stay_in_their_range() {
        for code in ErrorCode::SERVER_CODES {
            assert!((100..400).contains(&code.as_u32()), "{code}");
            assert!(code.text().is_some());
            assert!(!code.is_application());
        }
    }

    #[test]
    fn server_disconnect_codes_stay_in_their_range_and_ranges_decide_reconnect() {
        for code in DisconnectCode::SERVER_CODES {
            let n = code.as_u16();
            assert!((3000..4000).contains(&n), "{code}");
            assert_eq!(code.should_reconnect(), n < 3500, "{code}");
            // A WebSocket close reason holds at most 123 bytes.
            assert!(code.text().is_some_and(|t| t.len() <= 123));
        }
    }

    #[test]
    fn application_ranges_are_enforced() {
        assert_eq!(ErrorCode::application(399), None);
        assert_eq!(
            ErrorCode::application(400).map(ErrorCode::as_u32),
            Some(400)
        );
        assert_eq!(
            ErrorCode::application(1999).map(ErrorCode::as_u32),
            Some(1999)
        );
        assert_eq!(ErrorCode::application(2000), None);
        assert_eq!(DisconnectCode::application(3999), None);
        assert!(DisconnectCode::application(4499).is_some_and(|c| c.should_reconnect()));
        assert!(DisconnectCode::application(4500).is_some_and(|c| !c.should_reconnect()));
        assert_eq!(DisconnectCode::application(5000), None);
    }

    #[test]
    fn transport_codes_follow_rfc_6455_meaning() {
        assert!(DisconnectCode::from_u16(1001).should_reconnect());
        assert!(DisconnectCode::from_u16(1006).should_reconnect());
        assert!(DisconnectCode::from_u16(1011).should_reconnect());
        assert!(!DisconnectCode::from_u16(1008).should_reconnect());
        assert!(!DisconnectCode::from_u16(1009).should_reconnect());
    }

    #[test]
    fn display_names_the_text() {
        assert_eq!(ErrorCode::BAD_REQUEST.to_string(), "107 (bad request)");
        assert_eq!(ErrorCode::from_u32(1234).to_string(), "1234");
        assert_eq!(DisconnectCode::SHUTDOWN.to_string(), "3001 (shutdown)");
    }
}
