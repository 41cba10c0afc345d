//! `HistoryStore`: where publications of channels with history are kept, with
//! offsets and epochs; `MemoryHistory` is the in-process default.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sacred_proto::{Publication, StreamPosition};

#[cfg(test)]
mod conformance;
mod memory;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use memory::MemoryHistory;
#[cfg(feature = "sqlite")]
pub use sqlite::{Durability, SqliteError, SqliteHistory, StoreStats};

/// How a channel's stream is kept: bounded by size and by age.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retention {
    /// Publications kept at most.
    pub size: usize,
    /// How long each is kept.
    pub ttl: Duration,
}

impl Retention {
    /// Keep at most `size` publications for `ttl` each.
    pub fn new(size: usize, ttl: Duration) -> Retention {
        Retention { size, ttl }
    }
}

/// What to read from a stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Query {
    /// Only publications after this position; its epoch must be the stream's.
    pub since: Option<StreamPosition>,
    /// At most this many publications (`None`: all kept).
    pub limit: Option<usize>,
    /// Newest first.
    pub reverse: bool,
}

/// The result of a read: the stream's position and the publications asked for.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Page {
    /// The stream's position (offset of its newest publication, 0 if none).
    pub position: StreamPosition,
    /// The publications, with `offset` and `epoch` set, in the order asked for.
    pub publications: Vec<Publication>,
}

impl Page {
    /// A page: the stream's position and the publications read.
    pub fn new(position: StreamPosition, publications: Vec<Publication>) -> Page {
        Page {
            position,
            publications,
        }
    }
}

impl Query {
    /// Everything kept, oldest first.
    pub fn new() -> Query {
        Query::default()
    }

    /// Only publications after `position`.
    pub fn since(mut self, position: StreamPosition) -> Query {
        self.since = Some(position);
        self
    }

    /// At most `limit` publications.
    pub fn limit(mut self, limit: usize) -> Query {
        self.limit = Some(limit);
        self
    }

    /// Newest first.
    pub fn reverse(mut self, reverse: bool) -> Query {
        self.reverse = reverse;
        self
    }
}

/// Why a store could not serve a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// `since` names another epoch, is beyond the stream's newest offset, or
    /// publications after it left the window.
    #[error("unrecoverable position")]
    Unrecoverable,
    /// The store failed (connection lost, I/O error); the cause is the source.
    #[error("history store failed")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl HistoryError {
    /// A failure of the store, with its cause.
    pub fn store(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> HistoryError {
        HistoryError::Store(cause.into())
    }
}

/// Keeps the publications of channels with history. Implementations must
/// assign offsets atomically with the append: one more than the stream's last,
/// starting at 1, under an epoch that changes whenever the stream is lost.
///
/// A stream that has no publication yet (never published to, or forgotten
/// after everything in it expired) still has a position: offset 0 and the
/// epoch its first publication will get, so a subscriber that joined before
/// that publication continues seamlessly.
///
/// The broker ([`MemoryBroker`](crate::MemoryBroker)) serialises the appends
/// of one channel, so an implementation need not order concurrent appends
/// for the same channel itself; a read may run while an append does, and
/// must see the stream before or after it, never half of it.
pub trait HistoryStore: Send + Sync + 'static {
    /// Stores `publication`, setting its `offset` and `epoch` (whatever they
    /// held), and returns it as stored: the hub sends that very publication
    /// to the subscribers, so the payload is never copied on the way.
    fn append<'a>(
        &'a self,
        channel: &'a str,
        publication: Publication,
        retention: Retention,
    ) -> BoxFuture<'a, Result<Arc<Publication>, HistoryError>>;

    /// Reads publications of `channel` as `query` asks.
    fn read<'a>(
        &'a self,
        channel: &'a str,
        query: Query,
    ) -> BoxFuture<'a, Result<Page, HistoryError>>;

    /// For a store that queues appends to a writer taking them in call
    /// order: queues `publication` now (its place in the stream is fixed by
    /// the order of these calls) and returns a future, borrowing nothing,
    /// that resolves as [`HistoryStore::append`]'s would. The broker then
    /// holds a channel only around the call, so appends to one channel can
    /// share a commit, and still delivers them in offset order. The default
    /// does not queue and gives the publication back.
    // The `Err` is the caller's own publication handed back, not an error
    // to propagate: boxing it would cost every publish an allocation.
    #[allow(clippy::result_large_err, clippy::type_complexity)]
    fn append_queued(
        &self,
        channel: &str,
        publication: Publication,
        retention: Retention,
    ) -> Result<BoxFuture<'static, Result<Arc<Publication>, HistoryError>>, Publication> {
        let _ = (channel, retention);
        Err(publication)
    }
}

/// A shared store is a store: lets one store outlive a hub (a restart) or
/// serve several hubs in one process.
impl<T: HistoryStore + ?Sized> HistoryStore for Arc<T> {
    fn append<'a>(
        &'a self,
        channel: &'a str,
        publication: Publication,
        retention: Retention,
    ) -> BoxFuture<'a, Result<Arc<Publication>, HistoryError>> {
        (**self).append(channel, publication, retention)
    }

    fn read<'a>(
        &'a self,
        channel: &'a str,
        query: Query,
    ) -> BoxFuture<'a, Result<Page, HistoryError>> {
        (**self).read(channel, query)
    }

    #[allow(clippy::result_large_err, clippy::type_complexity)]
    fn append_queued(
        &self,
        channel: &str,
        publication: Publication,
        retention: Retention,
    ) -> Result<BoxFuture<'static, Result<Arc<Publication>, HistoryError>>, Publication> {
        (**self).append_queued(channel, publication, retention)
    }
}
