//! `HistoryStore`: where publications of channels with history are kept, with
//! offsets and epochs; `MemoryHistory` is the in-process default.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sacred_proto::{Publication, StreamPosition};
use tokio::time::Instant;

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

/// Why a store could not serve a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// `since` names another epoch, or publications after it left the window.
    #[error("unrecoverable position")]
    Unrecoverable,
    /// The store failed (connection lost, I/O error).
    #[error("history store failed: {0}")]
    Store(String),
}

/// Keeps the publications of channels with history. Implementations must
/// assign offsets atomically with the append: one more than the stream's last,
/// starting at 1, under an epoch that changes whenever the stream is lost.
///
/// The hub serialises appends and reads of one channel, so an implementation
/// need not order concurrent calls for the same channel itself.
pub trait HistoryStore: Send + Sync + 'static {
    /// Stores `publication` (its `offset`/`epoch` are ignored) and returns the
    /// position it got.
    fn append<'a>(
        &'a self,
        channel: &'a str,
        publication: Publication,
        retention: Retention,
    ) -> BoxFuture<'a, Result<StreamPosition, HistoryError>>;

    /// Reads publications of `channel` as `query` asks.
    fn read<'a>(
        &'a self,
        channel: &'a str,
        query: Query,
    ) -> BoxFuture<'a, Result<Page, HistoryError>>;
}

/// A shared store is a store: lets one store outlive a hub (a restart) or
/// serve several hubs in one process.
impl<T: HistoryStore + ?Sized> HistoryStore for std::sync::Arc<T> {
    fn append<'a>(
        &'a self,
        channel: &'a str,
        publication: Publication,
        retention: Retention,
    ) -> BoxFuture<'a, Result<StreamPosition, HistoryError>> {
        (**self).append(channel, publication, retention)
    }

    fn read<'a>(
        &'a self,
        channel: &'a str,
        query: Query,
    ) -> BoxFuture<'a, Result<Page, HistoryError>> {
        (**self).read(channel, query)
    }
}

/// In-memory history: a ring per channel, bounded by size and age. Streams
/// live as long as the process; a restart starts every stream with a new epoch.
#[derive(Debug, Default)]
pub struct MemoryHistory {
    streams: Mutex<HashMap<String, Stream>>,
}

#[derive(Debug)]
struct Stream {
    epoch: String,
    /// Offset of the newest publication (0: none yet).
    top: u64,
    /// Kept publications with their expiry, oldest first.
    entries: VecDeque<(Publication, Instant)>,
}

impl MemoryHistory {
    /// An empty store.
    pub fn new() -> MemoryHistory {
        MemoryHistory::default()
    }

    fn with_stream<T>(&self, channel: &str, f: impl FnOnce(&mut Stream) -> T) -> T {
        let mut streams = self
            .streams
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let stream = streams.entry(channel.to_owned()).or_insert_with(|| Stream {
            epoch: crate::id::random_id(8),
            top: 0,
            entries: VecDeque::new(),
        });
        let now = Instant::now();
        while stream
            .entries
            .front()
            .is_some_and(|(_, expires)| *expires <= now)
        {
            stream.entries.pop_front();
        }
        f(stream)
    }
}

impl HistoryStore for MemoryHistory {
    fn append<'a>(
        &'a self,
        channel: &'a str,
        mut publication: Publication,
        retention: Retention,
    ) -> BoxFuture<'a, Result<StreamPosition, HistoryError>> {
        let position = self.with_stream(channel, |stream| {
            stream.top += 1;
            publication.offset = Some(stream.top);
            publication.epoch = Some(stream.epoch.clone());
            stream
                .entries
                .push_back((publication, Instant::now() + retention.ttl));
            while stream.entries.len() > retention.size {
                stream.entries.pop_front();
            }
            StreamPosition::new(stream.top, stream.epoch.clone())
        });
        Box::pin(std::future::ready(Ok(position)))
    }

    fn read<'a>(
        &'a self,
        channel: &'a str,
        query: Query,
    ) -> BoxFuture<'a, Result<Page, HistoryError>> {
        let page = self.with_stream(channel, |stream| {
            let position = StreamPosition::new(stream.top, stream.epoch.clone());
            let after = match &query.since {
                None => 0,
                Some(since) => {
                    // The first kept offset; every offset after `since` must still be kept.
                    let oldest = stream
                        .entries
                        .front()
                        .map_or(stream.top + 1, |(p, _)| p.offset.unwrap_or(0));
                    if since.epoch != stream.epoch
                        || since.offset > stream.top
                        || since.offset + 1 < oldest
                    {
                        return Err(HistoryError::Unrecoverable);
                    }
                    since.offset
                }
            };
            let matching = stream
                .entries
                .iter()
                .map(|(p, _)| p)
                .filter(|p| p.offset.unwrap_or(0) > after);
            let limit = query.limit.unwrap_or(usize::MAX);
            let publications = if query.reverse {
                matching.rev().take(limit).cloned().collect()
            } else {
                matching.take(limit).cloned().collect()
            };
            Ok(Page {
                position,
                publications,
            })
        });
        Box::pin(std::future::ready(page))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use sacred_proto::Value;

    const KEEP: Retention = Retention {
        size: 3,
        ttl: Duration::from_secs(60),
    };

    fn append(store: &MemoryHistory, n: i64) -> StreamPosition {
        store
            .append("c", Publication::new("c", Value::from(n), 0), KEEP)
            .now_or_never()
            .unwrap()
            .unwrap()
    }

    fn read(store: &MemoryHistory, query: Query) -> Result<Page, HistoryError> {
        store.read("c", query).now_or_never().unwrap()
    }

    fn offsets(page: &Page) -> Vec<u64> {
        page.publications
            .iter()
            .map(|p| p.offset.unwrap())
            .collect()
    }

    #[test]
    fn offsets_increase_from_one_and_size_bounds_the_window() {
        let store = MemoryHistory::new();
        let first = append(&store, 1);
        assert_eq!(first.offset, 1);
        for n in 2..=5 {
            append(&store, n);
        }
        let page = read(&store, Query::default()).unwrap();
        assert_eq!(page.position, StreamPosition::new(5, first.epoch.clone()));
        assert_eq!(offsets(&page), [3, 4, 5]);
        let newest = read(
            &store,
            Query {
                limit: Some(2),
                reverse: true,
                ..Query::default()
            },
        )
        .unwrap();
        assert_eq!(offsets(&newest), [5, 4]);
    }

    #[test]
    fn since_is_all_or_nothing() {
        let store = MemoryHistory::new();
        let epoch = (1..=5).map(|n| append(&store, n)).last().unwrap().epoch;
        let since = |offset| Query {
            since: Some(StreamPosition::new(offset, epoch.clone())),
            ..Query::default()
        };
        assert_eq!(offsets(&read(&store, since(2)).unwrap()), [3, 4, 5]);
        assert_eq!(offsets(&read(&store, since(5)).unwrap()), Vec::<u64>::new());
        // Offset 2 left the window: 1 cannot be recovered from.
        assert_eq!(read(&store, since(1)), Err(HistoryError::Unrecoverable));
        assert_eq!(read(&store, since(6)), Err(HistoryError::Unrecoverable));
        let other = Query {
            since: Some(StreamPosition::new(4, "other")),
            ..Query::default()
        };
        assert_eq!(read(&store, other), Err(HistoryError::Unrecoverable));
    }

    #[tokio::test(start_paused = true)]
    async fn publications_expire_after_their_ttl() {
        let store = MemoryHistory::new();
        let epoch = append(&store, 1).epoch;
        tokio::time::advance(Duration::from_secs(30)).await;
        append(&store, 2);
        tokio::time::advance(Duration::from_secs(31)).await;
        let page = read(&store, Query::default()).unwrap();
        assert_eq!(offsets(&page), [2]);
        let since = Query {
            since: Some(StreamPosition::new(0, epoch)),
            ..Query::default()
        };
        assert_eq!(
            read(&store, since),
            Err(HistoryError::Unrecoverable),
            "offset 1 expired"
        );
    }
}
