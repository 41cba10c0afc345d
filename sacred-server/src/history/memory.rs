//! `MemoryHistory`: streams in process memory, sharded by channel, bounded by
//! size and age, and forgotten once everything in them expired.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use dashmap::DashMap;
use futures_util::future::BoxFuture;
use sacred_proto::{Publication, StreamPosition};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{HistoryError, HistoryStore, Page, Query, Retention, StoreStats};

/// Buckets of channel names sharing an epoch generation (see `Shared`).
const BUCKETS: usize = 1024;

/// How often streams whose publications all expired are looked for and
/// forgotten. Expired publications of a stream that is read or appended to
/// go at once; this only bounds how long an idle, empty stream lingers.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// In-memory history: a ring per channel, bounded by size and age.
///
/// - Streams live in a sharded map, so publishes to different channels do not
///   contend (there is no global lock), and each publication is stored once,
///   shared with the fan-out that delivers it.
/// - A channel that was never published to has no stream: subscribing to a
///   million channels leaves nothing behind. Its position is offset 0 and the
///   epoch its first publication will get.
/// - A stream whose publications all expired is forgotten (within 30 s); its
///   next publication starts a new stream, with a new epoch, at offset 1.
/// - A restart of the process loses every stream: streams start again under
///   new epochs, so clients see `recovered: false` and reload.
#[derive(Debug)]
pub struct MemoryHistory {
    shared: Arc<Shared>,
    /// The task that forgets expired streams, started with the first append
    /// (inside the runtime) and stopped when the store is dropped.
    sweeper: OnceLock<Option<Sweeper>>,
}

#[derive(Debug)]
struct Shared {
    streams: DashMap<String, Stream>,
    /// This store's epoch; every stream's epoch starts with it.
    base: String,
    /// A generation per bucket of channel names, bumped whenever a stream of
    /// the bucket is forgotten. A channel's epoch is `base` plus its bucket's
    /// generation, so a forgotten stream comes back under a new epoch while a
    /// channel that never had a stream keeps the epoch its subscribers were
    /// told. (A channel that shares a bucket with a forgotten stream sees its
    /// epoch change too, before its first publication: its subscribers get
    /// `recovered: false` with nothing actually lost, a safe false alarm.)
    generations: Box<[AtomicU32]>,
}

#[derive(Debug)]
struct Stream {
    epoch: String,
    /// Offset of the newest publication.
    top: u64,
    /// Kept publications, oldest first.
    entries: VecDeque<Entry>,
}

#[derive(Debug)]
struct Entry {
    publication: Arc<Publication>,
    expires: Instant,
}

#[derive(Debug)]
struct Sweeper(JoinHandle<()>);

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Default for MemoryHistory {
    fn default() -> MemoryHistory {
        MemoryHistory::new()
    }
}

impl MemoryHistory {
    /// An empty store.
    pub fn new() -> MemoryHistory {
        let shared = Shared {
            streams: DashMap::new(),
            base: crate::id::random_id(8),
            generations: (0..BUCKETS).map(|_| AtomicU32::new(0)).collect(),
        };
        MemoryHistory {
            shared: Arc::new(shared),
            sweeper: OnceLock::new(),
        }
    }

    /// How many streams the store keeps (channels with publications in history).
    pub fn streams(&self) -> usize {
        self.shared.streams.len()
    }

    /// Forgets, now, every stream whose publications all expired. A
    /// background task does this every 30 s; tests and operators may call it.
    pub fn sweep(&self) {
        self.shared.sweep(Instant::now());
    }

    fn start_sweeper(&self) {
        self.sweeper.get_or_init(|| {
            let runtime = tokio::runtime::Handle::try_current().ok()?;
            Some(Sweeper(runtime.spawn(sweep(Arc::downgrade(&self.shared)))))
        });
    }
}

async fn sweep(shared: Weak<Shared>) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.tick().await;
    loop {
        every.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.sweep(Instant::now());
    }
}

impl Shared {
    fn bucket(channel: &str) -> usize {
        let mut hasher = std::hash::DefaultHasher::new();
        channel.hash(&mut hasher);
        (hasher.finish() % BUCKETS as u64) as usize
    }

    /// The epoch a new stream of `channel` gets.
    fn epoch_for(&self, channel: &str) -> String {
        match self.generations[Shared::bucket(channel)].load(Ordering::Acquire) {
            0 => self.base.clone(),
            generation => format!("{}.{generation}", self.base),
        }
    }

    fn sweep(&self, now: Instant) {
        self.streams.retain(|channel, stream| {
            stream.expire(now);
            let keep = !stream.entries.is_empty();
            if !keep {
                self.generations[Shared::bucket(channel)].fetch_add(1, Ordering::AcqRel);
            }
            keep
        });
    }
}

impl Stream {
    fn expire(&mut self, now: Instant) {
        while self.entries.front().is_some_and(|e| e.expires <= now) {
            self.entries.pop_front();
        }
    }

    fn position(&self) -> StreamPosition {
        StreamPosition::new(self.top, self.epoch.clone())
    }

    /// The offset every publication after `since` must start at to be served:
    /// all or nothing (docs/protocol.md, 9.3).
    fn check(&self, since: &StreamPosition) -> Result<u64, HistoryError> {
        let oldest = self
            .entries
            .front()
            .and_then(|e| e.publication.offset)
            .unwrap_or(self.top + 1);
        if since.epoch != self.epoch || since.offset > self.top || since.offset + 1 < oldest {
            return Err(HistoryError::Unrecoverable);
        }
        Ok(since.offset)
    }
}

impl HistoryStore for MemoryHistory {
    fn append<'a>(
        &'a self,
        channel: &'a str,
        mut publication: Publication,
        retention: Retention,
    ) -> BoxFuture<'a, Result<Arc<Publication>, HistoryError>> {
        self.start_sweeper();
        let now = Instant::now();
        let streams = &self.shared.streams;
        // Looked up by reference first: the key is only allocated for a new stream.
        let mut stream = match streams.get_mut(channel) {
            Some(stream) => stream,
            None => streams.entry(channel.to_owned()).or_insert_with(|| Stream {
                epoch: self.shared.epoch_for(channel),
                top: 0,
                entries: VecDeque::new(),
            }),
        };
        stream.expire(now);
        stream.top += 1;
        publication.offset = Some(stream.top);
        publication.epoch = Some(stream.epoch.clone());
        let publication = Arc::new(publication);
        stream.entries.push_back(Entry {
            publication: Arc::clone(&publication),
            expires: now + retention.ttl,
        });
        while stream.entries.len() > retention.size {
            stream.entries.pop_front();
        }
        Box::pin(std::future::ready(Ok(publication)))
    }

    fn read<'a>(
        &'a self,
        channel: &'a str,
        query: Query,
    ) -> BoxFuture<'a, Result<Page, HistoryError>> {
        Box::pin(std::future::ready(self.read_now(channel, &query)))
    }

    /// Empties the stream; its position stays until the stream is forgotten
    /// as an expired one is (within 30 s), after which the channel starts
    /// again under a new epoch.
    fn remove<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<u64, HistoryError>> {
        let removed = self
            .shared
            .streams
            .get_mut(channel)
            .map_or(0, |mut stream| {
                let removed = stream.entries.len() as u64;
                stream.entries.clear();
                removed
            });
        Box::pin(std::future::ready(Ok(removed)))
    }

    fn forget_user<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<u64, HistoryError>> {
        let mut removed = 0;
        for mut stream in self.shared.streams.iter_mut() {
            let before = stream.entries.len();
            stream
                .entries
                .retain(|entry| !published_by(&entry.publication, user));
            removed += (before - stream.entries.len()) as u64;
        }
        Box::pin(std::future::ready(Ok(removed)))
    }

    fn export_user<'a>(
        &'a self,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Publication>, HistoryError>> {
        let now = Instant::now();
        let mut found: Vec<Arc<Publication>> = Vec::new();
        for stream in self.shared.streams.iter() {
            found.extend(
                stream
                    .entries
                    .iter()
                    .filter(|entry| entry.expires > now && published_by(&entry.publication, user))
                    .map(|entry| Arc::clone(&entry.publication)),
            );
        }
        found.sort_by(|a, b| (&a.channel, a.offset).cmp(&(&b.channel, b.offset)));
        let publications = found.iter().map(|p| Publication::clone(p)).collect();
        Box::pin(std::future::ready(Ok(publications)))
    }

    /// Streams and publications kept (`bytes` is 0: nothing is on disk).
    fn stats(&self) -> BoxFuture<'_, Result<StoreStats, HistoryError>> {
        let streams = self.shared.streams.len() as u64;
        let publications = self
            .shared
            .streams
            .iter()
            .map(|stream| stream.entries.len() as u64)
            .sum();
        Box::pin(std::future::ready(Ok(StoreStats {
            streams,
            publications,
            ..StoreStats::default()
        })))
    }
}

fn published_by(publication: &Publication, user: &str) -> bool {
    publication
        .from
        .as_ref()
        .and_then(|from| from.user.as_deref())
        == Some(user)
}

impl MemoryHistory {
    fn read_now(&self, channel: &str, query: &Query) -> Result<Page, HistoryError> {
        let Some(mut stream) = self.shared.streams.get_mut(channel) else {
            // No stream: offset 0 under the epoch its first publication gets.
            let position = StreamPosition::new(0, self.shared.epoch_for(channel));
            if let Some(since) = &query.since
                && (since.epoch != position.epoch || since.offset != 0)
            {
                return Err(HistoryError::Unrecoverable);
            }
            return Ok(Page {
                position,
                publications: Vec::new(),
            });
        };
        stream.expire(Instant::now());
        let after = match &query.since {
            Some(since) => stream.check(since)?,
            None => 0,
        };
        let limit = query.limit.unwrap_or(usize::MAX);
        let matching = stream
            .entries
            .iter()
            .filter(|e| e.publication.offset.unwrap_or(0) > after)
            .map(|e| Arc::clone(&e.publication));
        let shared: Vec<Arc<Publication>> = if query.reverse {
            matching.rev().take(limit).collect()
        } else {
            matching.take(limit).collect()
        };
        let position = stream.position();
        drop(stream);
        // Copied out of the store after its lock is released.
        let publications = shared.iter().map(|p| Publication::clone(p)).collect();
        Ok(Page {
            position,
            publications,
        })
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
        searchable: false,
    };

    fn append_to(store: &MemoryHistory, channel: &str, n: i64) -> StreamPosition {
        let stored = store
            .append(channel, Publication::new(channel, Value::from(n), 0), KEEP)
            .now_or_never()
            .unwrap()
            .unwrap();
        StreamPosition::new(stored.offset.unwrap(), stored.epoch.clone().unwrap())
    }

    fn append(store: &MemoryHistory, n: i64) -> StreamPosition {
        append_to(store, "c", n)
    }

    fn read_from(store: &MemoryHistory, channel: &str, query: Query) -> Result<Page, HistoryError> {
        store.read(channel, query).now_or_never().unwrap()
    }

    fn read(store: &MemoryHistory, query: Query) -> Result<Page, HistoryError> {
        read_from(store, "c", query)
    }

    fn since(position: StreamPosition) -> Query {
        Query {
            since: Some(position),
            ..Query::default()
        }
    }

    fn offsets(page: &Page) -> Vec<u64> {
        page.publications
            .iter()
            .map(|p| p.offset.unwrap())
            .collect()
    }

    #[tokio::test]
    async fn keeps_the_history_store_contract() {
        crate::history::conformance::run(&MemoryHistory::new()).await;
    }

    #[test]
    fn reading_a_quiet_channel_creates_no_stream() {
        let store = MemoryHistory::new();
        read_from(&store, "quiet", Query::default()).unwrap();
        assert_eq!(store.streams(), 0);
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
        assert!(
            matches!(
                read(&store, since(StreamPosition::new(0, epoch))),
                Err(HistoryError::Unrecoverable)
            ),
            "offset 1 expired"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_stream_is_forgotten_and_comes_back_under_a_new_epoch() {
        let store = MemoryHistory::new();
        let old = append(&store, 1);
        append_to(&store, "busy", 1);
        tokio::time::advance(Duration::from_secs(59)).await;
        append_to(&store, "busy", 2);
        tokio::time::advance(Duration::from_secs(2)).await;
        // The background sweep forgets "c" (everything in it expired), not "busy".
        tokio::time::advance(SWEEP_EVERY).await;
        tokio::task::yield_now().await;
        assert_eq!(store.streams(), 1);
        let now = read(&store, Query::default()).unwrap().position;
        assert_eq!(now.offset, 0);
        assert_ne!(
            now.epoch, old.epoch,
            "a forgotten stream does not come back as itself"
        );
        assert!(matches!(
            read(&store, since(old)),
            Err(HistoryError::Unrecoverable)
        ));
        assert_eq!(append(&store, 2), StreamPosition::new(1, now.epoch));
    }

    #[test]
    fn each_publication_is_stored_once_and_shared() {
        let store = MemoryHistory::new();
        let stored = store
            .append(
                "c",
                Publication::new("c", Value::from("x".repeat(1000)), 0),
                KEEP,
            )
            .now_or_never()
            .unwrap()
            .unwrap();
        assert_eq!(
            Arc::strong_count(&stored),
            2,
            "the store and the caller share it"
        );
    }
}
