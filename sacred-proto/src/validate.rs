//! Content rules for a decoded command, checked per message so that one bad
//! command is refused with an error reply while the connection goes on.

use crate::channel::validate_channel;
use crate::code::ErrorCode;
use crate::command::Command;
use crate::info::ClientInfo;
use crate::limits::Limits;
use crate::message::ClientMessage;
use crate::reply::ReplyError;
use crate::trace::validate_traceparent;

/// Why a well-formed command was refused. Every variant is answered with
/// [`ErrorCode::BAD_REQUEST`] and the variant's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// The channel breaks the grammar.
    #[error("invalid channel: {0}")]
    Channel(&'static str),
    /// A field is longer than its limit.
    #[error("{field} is longer than {max} bytes")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its limit.
        max: usize,
    },
    /// `traceparent` is not a W3C Trace Context `traceparent`.
    #[error(
        "traceparent is not a W3C trace context (version-traceid-parentid-flags, lowercase hex of 2, 32, 16 and 2 digits)"
    )]
    Traceparent,
    /// A field that must hold something is empty.
    #[error("{field} must not be empty")]
    Empty {
        /// The field.
        field: &'static str,
    },
}

impl ValidationError {
    /// The error code of the reply.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::BAD_REQUEST
    }
}

impl From<ValidationError> for ReplyError {
    fn from(err: ValidationError) -> ReplyError {
        ReplyError::new(err.code(), err.to_string())
    }
}

impl ClientMessage {
    /// Checks the command's content against `limits`.
    pub fn validate(&self, limits: &Limits) -> Result<(), ValidationError> {
        self.command.validate(limits)
    }
}

impl Command {
    /// Checks the command's content against `limits`: channel grammar,
    /// method and client-info lengths, required fields.
    pub fn validate(&self, limits: &Limits) -> Result<(), ValidationError> {
        match self {
            Command::Connect(connect) => {
                client_info(&connect.client, limits)?;
                connect
                    .subs
                    .iter()
                    .try_for_each(|sub| validate_channel(&sub.channel, limits))
            }
            Command::Subscribe(sub) => validate_channel(&sub.channel, limits),
            Command::Unsubscribe(unsub) => validate_channel(&unsub.channel, limits),
            Command::Publish(publish) => {
                validate_channel(&publish.channel, limits)?;
                publish
                    .traceparent
                    .as_deref()
                    .map_or(Ok(()), validate_traceparent)
            }
            Command::Presence(presence) => validate_channel(&presence.channel, limits),
            Command::History(history) => validate_channel(&history.channel, limits),
            Command::Send(send) => non_empty("to", &send.to),
            Command::Rpc(rpc) => {
                non_empty("method", &rpc.method)?;
                bounded("method", &rpc.method, limits.max_method_bytes)
            }
            Command::Refresh(refresh) => non_empty("token", &refresh.token),
            Command::Pong(_) => Ok(()),
            Command::Search(search) => {
                validate_channel(&search.channel, limits)?;
                bounded("text", &search.text, crate::command::MAX_SEARCH_TEXT_BYTES)
            }
        }
    }
}

fn client_info(info: &ClientInfo, limits: &Limits) -> Result<(), ValidationError> {
    let max = limits.max_client_info_bytes;
    bounded("client.name", &info.name, max)?;
    bounded("client.kind", &info.kind, max)?;
    bounded("client.runtime", &info.runtime, max)?;
    bounded("client.version", &info.version, max)
}

fn non_empty(field: &'static str, value: &str) -> Result<(), ValidationError> {
    if value.is_empty() {
        Err(ValidationError::Empty { field })
    } else {
        Ok(())
    }
}

fn bounded(field: &'static str, value: &str, max: usize) -> Result<(), ValidationError> {
    if value.len() > max {
        Err(ValidationError::TooLong { field, max })
    } else {
        Ok(())
    }
}
