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
pub(crate) use sqlite::open_side_connection;
#[cfg(feature = "sqlite")]
pub use sqlite::{Backups, Durability, SqliteBuilder, SqliteError, SqliteHistory};

/// How a channel's stream is kept: bounded by size and by age.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retention {
    /// Publications kept at most.
    pub size: usize,
    /// How long each is kept.
    pub ttl: Duration,
    /// Whether the text of each is indexed for [`HistoryStore::search`].
    pub searchable: bool,
}

impl Retention {
    /// Keep at most `size` publications for `ttl` each, not indexed for search.
    pub fn new(size: usize, ttl: Duration) -> Retention {
        Retention {
            size,
            ttl,
            searchable: false,
        }
    }

    /// Index the text of each publication for [`HistoryStore::search`].
    pub fn searchable(mut self, searchable: bool) -> Retention {
        self.searchable = searchable;
        self
    }
}

/// A full-text search of a channel's stored history
/// ([`HistoryStore::search`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Search {
    /// The words to find, all of them, in any order and any case; a word
    /// ending in `*` matches as a prefix. Other punctuation separates words.
    pub text: String,
    /// At most this many hits.
    pub limit: usize,
    /// Hits skipped before the first returned (`limit` times the page number).
    pub skip: usize,
}

impl Default for Search {
    /// No words (nothing matches), the first 10.
    fn default() -> Search {
        Search {
            text: String::new(),
            limit: 10,
            skip: 0,
        }
    }
}

impl Search {
    /// The first 10 publications with every word of `text`, best first.
    pub fn new(text: impl Into<String>) -> Search {
        Search {
            text: text.into(),
            ..Search::default()
        }
    }

    /// At most `limit` hits.
    pub fn limit(mut self, limit: usize) -> Search {
        self.limit = limit;
        self
    }

    /// Skip the first `skip` hits (paging).
    pub fn skip(mut self, skip: usize) -> Search {
        self.skip = skip;
        self
    }
}

/// What a search found: publications best first (with `offset` and `epoch`
/// set), and how many match in all.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct SearchPage {
    /// Publications matching, in rank order, after `skip`, at most `limit`.
    pub publications: Vec<Publication>,
    /// How many publications match in all.
    pub total: u64,
}

/// A connection's session, recorded when it ends
/// ([`HistoryStore::record_session`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Session {
    /// The user (empty for an anonymous connection).
    pub user: String,
    /// The client's kind (`ClientInfo::kind`), possibly empty.
    pub kind: String,
    /// The client's runtime (`ClientInfo::runtime`), possibly empty.
    pub runtime: String,
    /// When it connected, milliseconds since the Unix epoch.
    pub connected_ms: u64,
    /// When it ended (or was last seen), milliseconds since the Unix epoch.
    pub seen_ms: u64,
    /// Messages it sent: publishes and direct messages.
    pub messages: u64,
}

/// When a user was last seen with one kind and runtime of client, and how
/// much it sent over the sessions kept ([`HistoryStore::last_seen`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LastSeen {
    /// The client's kind, possibly empty.
    pub kind: String,
    /// The client's runtime, possibly empty.
    pub runtime: String,
    /// When it last connected, milliseconds since the Unix epoch.
    pub connected_ms: u64,
    /// When it was last seen (its last session ended), milliseconds since the Unix epoch.
    pub seen_ms: u64,
    /// Sessions recorded.
    pub sessions: u64,
    /// Messages sent over those sessions.
    pub messages: u64,
}

/// A store's size and upkeep, for metrics and operators
/// ([`HistoryStore::stats`]). Figures a store does not have are zero or `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Bytes on disk: the database file and its write-ahead log.
    pub bytes: u64,
    /// Publications kept (expired ones not yet pruned included).
    pub publications: u64,
    /// Streams (channels with a position kept).
    pub streams: u64,
    /// Expired publications deleted since the store opened.
    pub pruned: u64,
    /// How long the last prune took, once one ran.
    pub last_prune: Option<Duration>,
    /// Streams dropped, oldest first, because the store reached its size cap.
    pub capped_streams: u64,
    /// Backups written since the store opened.
    pub backups: u64,
    /// Backups that failed since the store opened.
    pub failed_backups: u64,
    /// How long the last successful backup took.
    pub last_backup: Option<Duration>,
    /// The store's size cap, if it has one.
    pub max_bytes: Option<u64>,
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
    /// The store does not do this (e.g. search in memory).
    #[error("the history store does not support {0}")]
    Unsupported(&'static str),
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

    /// Deletes every publication of `channel` and returns how many went. The
    /// stream's position stays: later publications continue its offsets
    /// (a store that forgets empty streams, as `MemoryHistory` forgets
    /// expired ones, may forget it later like any empty stream).
    fn remove<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<u64, HistoryError>> {
        let _ = channel;
        unsupported("deleting a channel's history")
    }

    /// Deletes every publication `user` published, in every channel, and
    /// what the store recorded of their sessions; returns how many
    /// publications went. The offsets of the others do not change.
    fn forget_user<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<u64, HistoryError>> {
        let _ = user;
        unsupported("deleting a user's publications")
    }

    /// Every publication `user` published that is kept, by channel then
    /// offset, with `offset` and `epoch` set.
    fn export_user<'a>(
        &'a self,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Publication>, HistoryError>> {
        let _ = user;
        unsupported("exporting a user's publications")
    }

    /// Full-text search of `channel`'s kept publications (those appended
    /// with [`Retention::searchable`]), best match first.
    fn search<'a>(
        &'a self,
        channel: &'a str,
        search: Search,
    ) -> BoxFuture<'a, Result<SearchPage, HistoryError>> {
        let _ = (channel, search);
        unsupported("search")
    }

    /// Records a connection's session (for [`HistoryStore::last_seen`]);
    /// called by the hub when a connection ends, must not block. The default
    /// keeps nothing.
    fn record_session(&self, session: Session) {
        let _ = session;
    }

    /// When `user` was last seen, per client kind and runtime, newest first.
    fn last_seen<'a>(
        &'a self,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Vec<LastSeen>, HistoryError>> {
        let _ = user;
        unsupported("last seen")
    }

    /// The store's size and upkeep.
    fn stats(&self) -> BoxFuture<'_, Result<StoreStats, HistoryError>> {
        unsupported("statistics")
    }
}

fn unsupported<'a, T: Send + 'a>(what: &'static str) -> BoxFuture<'a, Result<T, HistoryError>> {
    Box::pin(std::future::ready(Err(HistoryError::Unsupported(what))))
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

    fn remove<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<u64, HistoryError>> {
        (**self).remove(channel)
    }

    fn forget_user<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<u64, HistoryError>> {
        (**self).forget_user(user)
    }

    fn export_user<'a>(
        &'a self,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Publication>, HistoryError>> {
        (**self).export_user(user)
    }

    fn search<'a>(
        &'a self,
        channel: &'a str,
        search: Search,
    ) -> BoxFuture<'a, Result<SearchPage, HistoryError>> {
        (**self).search(channel, search)
    }

    fn record_session(&self, session: Session) {
        (**self).record_session(session)
    }

    fn last_seen<'a>(
        &'a self,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Vec<LastSeen>, HistoryError>> {
        (**self).last_seen(user)
    }

    fn stats(&self) -> BoxFuture<'_, Result<StoreStats, HistoryError>> {
        (**self).stats()
    }
}
