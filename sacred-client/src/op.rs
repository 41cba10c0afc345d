//! The protocol between the handles and the connection task: what a handle
//! asks (`Op`, sent over an unbounded channel, answered over a oneshot) and
//! the token provider the task calls. Both sides live on every platform.

use std::fmt;

use sacred_proto::{Command, Reply};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, TokenFailure};
use crate::platform::{BoxedFuture, SharedFn};
use crate::stream::{ClientEvent, MessageEvent, SubscriptionEvent};

/// A request from a handle to the connection task.
#[derive(Debug)]
pub(crate) enum Op {
    /// Start connecting (nothing if already connecting or connected).
    Connect,
    Subscribe {
        channel: String,
        join_leave: bool,
        events: mpsc::Sender<SubscriptionEvent>,
        /// Answered once the server confirmed (or refused) the subscription.
        ready: oneshot::Sender<Result<bool, Error>>,
    },
    Unsubscribe(String),
    /// Any other command, answered with its reply.
    Request {
        command: Command,
        reply: oneshot::Sender<Result<Reply, Error>>,
    },
    ServerTime(oneshot::Sender<Option<u64>>),
    /// A new listener of connection events.
    Listen(mpsc::Sender<ClientEvent>),
    /// A new reader of direct messages.
    Inbox(mpsc::Sender<MessageEvent>),
    Close,
}

/// Asks the application for a token: before every connect, and before the
/// current token expires.
#[derive(Clone)]
pub(crate) struct TokenProvider(pub(crate) SharedFn<BoxedFuture<Result<String, TokenFailure>>>);

impl TokenProvider {
    pub(crate) fn fetch(&self) -> BoxedFuture<Result<String, TokenFailure>> {
        (self.0)()
    }
}

impl fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenProvider")
    }
}
