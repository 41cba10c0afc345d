//! `Broker`: how publications reach every node that has subscribers, and
//! where channels' streams live.
//!
//! A node (one `Hub`) keeps its own clients and which of them subscribe to
//! what. What crosses nodes goes through the broker: a publication is
//! appended to its channel's stream and delivered to every interested node,
//! join and leave events likewise, and stream reads (history, recovery) are
//! answered from the broker's stream. `MemoryBroker`, the default, is one
//! node's broker: its streams are a [`HistoryStore`](crate::HistoryStore) and
//! every delivery is to this node.
//!
//! The design follows Centrifugo's broker (publish, subscribe, history, an
//! event handler the node registers) with the presence part split off into
//! [`PresenceStore`](crate::PresenceStore), as Centrifugo splits its
//! presence manager.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use sacred_proto::{Peer, Publication};

use crate::history::{HistoryError, Page, Query, Retention};

mod memory;

pub use memory::MemoryBroker;

/// Why a broker could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// `since` names another epoch, is beyond the stream's newest offset, or
    /// publications after it left the window.
    #[error("unrecoverable position")]
    Unrecoverable,
    /// The broker or its backend is unreachable or failed; the same call may
    /// succeed later. The cause is the source.
    #[error("broker unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl BrokerError {
    /// A failure of the backend, with its cause.
    pub fn unavailable(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> BrokerError {
        BrokerError::Unavailable(cause.into())
    }
}

impl From<HistoryError> for BrokerError {
    fn from(err: HistoryError) -> BrokerError {
        match err {
            HistoryError::Unrecoverable => BrokerError::Unrecoverable,
            HistoryError::Store(cause) => BrokerError::Unavailable(cause),
            unsupported @ HistoryError::Unsupported(_) => {
                BrokerError::Unavailable(unsupported.to_string().into())
            }
        }
    }
}

/// Where a broker delivers what it carries to this node. The hub registers
/// one with [`Broker::attach`] before anything else.
///
/// Calls for one channel come one at a time and in the channel's order
/// (offsets rising by one where the channel has a stream); they must not
/// block: the node queues the pushes to its sockets and returns.
pub trait BrokerEvents: Send + Sync + 'static {
    /// A publication of `channel`, stored if the channel has a stream.
    fn publication(&self, channel: &str, publication: Arc<Publication>);
    /// `peer` subscribed to `channel` (on any node).
    fn join(&self, channel: &str, peer: &Peer);
    /// `peer` unsubscribed from `channel` (on any node).
    fn leave(&self, channel: &str, peer: &Peer);
    /// Deliveries of `channel` (of every channel if `None`) may have been
    /// lost (a pub/sub connection dropped, an offset skipped): its
    /// subscribers here must recover from the stream.
    fn lost(&self, channel: Option<&str>);
}

/// Carries publications, joins and leaves between the nodes of one hub and
/// keeps channels' streams.
///
/// Contract:
/// - `publish` is atomic per channel: the stream append (offset one more than
///   the last, under the stream's epoch) and the delivery to every
///   interested node happen in the same order for every node, so each node
///   sees a channel's publications in offset order. The returned publication
///   carries the offset and epoch it was stored under.
/// - A node receives a channel's events only between its `subscribe` and
///   `unsubscribe` of that channel (the hub subscribes when the first local
///   member comes and unsubscribes when the last goes). Once `subscribe`
///   returned, nothing published after is missed.
/// - `read` answers from the same stream `publish` appends to.
/// - A failure is [`BrokerError::Unavailable`] (clients get a temporary
///   error), never a silent drop or a wait without end.
pub trait Broker: Send + Sync + 'static {
    /// Registers where this node's deliveries go; called once, first.
    fn attach(&self, events: Arc<dyn BrokerEvents>);

    /// Publishes: appends to the channel's stream when `retention` is given
    /// (a namespace with history), then delivers to every interested node.
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        publication: Publication,
        retention: Option<Retention>,
    ) -> BoxFuture<'a, Result<Arc<Publication>, BrokerError>>;

    /// Tells every interested node that `peer` joined `channel`.
    fn join<'a>(
        &'a self,
        channel: &'a str,
        peer: &'a Peer,
    ) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Tells every interested node that `peer` left `channel`.
    fn leave<'a>(
        &'a self,
        channel: &'a str,
        peer: &'a Peer,
    ) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// This node wants `channel`'s events from now on.
    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// This node no longer wants `channel`'s events.
    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Reads `channel`'s stream as `query` asks.
    fn read<'a>(
        &'a self,
        channel: &'a str,
        query: Query,
    ) -> BoxFuture<'a, Result<Page, BrokerError>>;

    /// Whether the broker can serve now (a health check; `/ready` uses it).
    fn is_available(&self) -> bool {
        true
    }
}
