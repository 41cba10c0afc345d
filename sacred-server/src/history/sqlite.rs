//! `SqliteHistory` (feature `sqlite`): streams in one SQLite database file
//! (WAL mode), so a node's streams, offsets and epochs survive a restart or
//! a crash.
//!
//! - **One writer.** Appends go to a dedicated thread that owns the only
//!   writing connection. It takes every append waiting when it wakes, writes
//!   them in one transaction and commits once, so concurrent publishes share
//!   one commit (and one fsync) instead of paying one each. Each append is
//!   answered after the commit: the ack means the publication is in the
//!   database (see [`Durability`] for what that survives).
//! - **Readers do not block the writer.** Reads run on their own connections
//!   (WAL: readers see the last commit, the writer goes on), off the async
//!   runtime.
//! - **The schema is migrated in place** (rusqlite_migration, the version in
//!   SQLite's `user_version`): a database from an earlier release is
//!   upgraded when opened, one from a later release is refused.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use rusqlite_migration::{M, Migrations};
use sacred_proto::{Publication, Push, StreamPosition};
use tokio::sync::oneshot;

use super::{HistoryError, HistoryStore, Page, Query, Retention};
use crate::stored;

/// The schema, one step per release that changed it; never edit a step
/// that shipped, add one.
const MIGRATIONS: &[M<'static>] = &[M::up(
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
     CREATE TABLE streams (
         id INTEGER PRIMARY KEY,
         channel TEXT NOT NULL UNIQUE,
         epoch TEXT NOT NULL,
         top INTEGER NOT NULL,
         updated_ms INTEGER NOT NULL
     );
     CREATE TABLE publications (
         stream INTEGER NOT NULL REFERENCES streams(id) ON DELETE CASCADE,
         offset INTEGER NOT NULL,
         created_ms INTEGER NOT NULL,
         expires_ms INTEGER NOT NULL,
         user TEXT,
         push BLOB NOT NULL,
         PRIMARY KEY (stream, offset)
     ) WITHOUT ROWID;
     CREATE INDEX publications_by_expiry ON publications(expires_ms);
     CREATE INDEX publications_by_user ON publications(user) WHERE user IS NOT NULL;
     CREATE TABLE generations (bucket INTEGER PRIMARY KEY, n INTEGER NOT NULL);",
)];

/// Buckets of channel names sharing an epoch generation (as in
/// `MemoryHistory`): a channel's next stream starts under its bucket's
/// generation, so a forgotten stream never comes back under an old epoch.
const BUCKETS: u64 = 1024;

/// Appends written in one transaction at most.
const MAX_BATCH: usize = 1024;

/// Idle reading connections kept open.
const MAX_IDLE_READERS: usize = 8;

/// Streams whose position the writer keeps in memory at most.
const MAX_CACHED_STREAMS: usize = 65_536;

/// How often the writer deletes expired publications.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Expired publications deleted per transaction: appends queued meanwhile
/// are written between two such steps, so a large prune never holds them up
/// for long.
const PRUNE_STEP: usize = 500;

/// What an acknowledged publish survives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Every commit is fsynced before the publishes in it are acknowledged
    /// (SQLite `synchronous=FULL`, like Redis's `appendfsync always`): an
    /// acknowledged publication survives a crash of the process and a loss
    /// of power.
    Always,
    /// Commits reach the operating system before the acknowledgement and the
    /// disk at the latest every interval (SQLite `synchronous=NORMAL` and a
    /// checkpoint each interval, like Redis's `appendfsync everysec`): an
    /// acknowledged publication survives a crash of the process; a loss of
    /// power may lose about the last interval's.
    Periodic(Duration),
}

impl Default for Durability {
    /// [`Durability::Periodic`] every second.
    fn default() -> Durability {
        Durability::Periodic(Duration::from_secs(1))
    }
}

/// Why the store could not open its database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqliteError {
    /// The file could not be opened, is not an SQLite database, or is not
    /// writable.
    #[error("history database {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The schema could not be brought up to date (a database written by a
    /// later release, or a failed upgrade).
    #[error("history database {path}: schema: {source}")]
    Schema {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite_migration::Error,
    },
}

/// Durable history in an SQLite database file (see the module docs).
pub struct SqliteHistory {
    path: PathBuf,
    writes: mpsc::Sender<Job>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SqliteHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteHistory")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What the writer and the readers share.
struct Shared {
    path: PathBuf,
    /// The database's epoch; every stream's epoch starts with it.
    base: String,
    generations: Box<[AtomicU32]>,
    /// Reading connections not in use.
    readers: Mutex<Vec<Connection>>,
    /// Expired publications deleted since the store opened.
    pruned: AtomicU64,
    /// How long the last prune took, once one ran.
    last_prune: Mutex<Option<Duration>>,
}

/// The store's size and pruning, for metrics and operators
/// ([`SqliteHistory::stats`]).
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
}

/// What the writer is asked to do. (Appends are the traffic and move
/// through the queue as they are; boxing them would cost one allocation each.)
#[allow(clippy::large_enum_variant)]
enum Job {
    Append(Append),
    /// Delete the expired publications now; answers how many went.
    Prune(oneshot::Sender<Result<u64, String>>),
}

/// One append for the writer.
struct Append {
    channel: String,
    publication: Publication,
    retention: Retention,
    reply: oneshot::Sender<Result<Arc<Publication>, HistoryError>>,
}

impl SqliteHistory {
    /// Opens (creating it if need be) the database at `path`, upgrades its
    /// schema, and starts the writer.
    pub fn open(path: impl AsRef<Path>, durability: Durability) -> Result<Self, SqliteError> {
        let path = path.as_ref().to_owned();
        let open_failed = |source| SqliteError::Open {
            path: path.clone(),
            source,
        };
        let mut writer = Connection::open(&path).map_err(open_failed)?;
        configure(&writer, durability).map_err(open_failed)?;
        Migrations::from_slice(MIGRATIONS)
            .to_latest(&mut writer)
            .map_err(|source| SqliteError::Schema {
                path: path.clone(),
                source,
            })?;
        writer
            .execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', ?1)",
                [crate::id::random_id(8)],
            )
            .map_err(open_failed)?;
        let base: String = writer
            .query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |row| {
                row.get(0)
            })
            .map_err(open_failed)?;
        let generations: Box<[AtomicU32]> = (0..BUCKETS).map(|_| AtomicU32::new(0)).collect();
        {
            let mut rows = writer
                .prepare("SELECT bucket, n FROM generations")
                .map_err(open_failed)?;
            let rows = rows
                .query_map([], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, u32>(1)?)))
                .map_err(open_failed)?;
            for row in rows {
                let (bucket, n) = row.map_err(open_failed)?;
                if let Some(generation) = usize::try_from(bucket)
                    .ok()
                    .and_then(|b| generations.get(b))
                {
                    generation.store(n, Ordering::Relaxed);
                }
            }
        }
        let shared = Arc::new(Shared {
            path: path.clone(),
            base,
            generations,
            readers: Mutex::new(Vec::new()),
            pruned: AtomicU64::new(0),
            last_prune: Mutex::new(None),
        });
        // A reader now, so that a file that cannot be read fails here.
        let reader = shared.reader().map_err(open_failed)?;
        shared.put_back(reader);
        let (writes, jobs) = mpsc::channel();
        let writing = Writer {
            connection: writer,
            shared: Arc::clone(&shared),
            streams: HashMap::new(),
            durability,
        };
        std::thread::Builder::new()
            .name("sacred-sqlite-writer".to_owned())
            .spawn(move || writing.run(jobs))
            .map_err(|err| open_failed(rusqlite::Error::ToSqlConversionFailure(err.into())))?;
        Ok(SqliteHistory {
            path,
            writes,
            shared,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Deletes every expired publication now (the writer also does this
    /// every minute) and returns how many went. Appends go on meanwhile:
    /// the deletion proceeds in small steps with their writes in between.
    pub async fn prune(&self) -> Result<u64, HistoryError> {
        let (reply, answer) = oneshot::channel();
        if self.writes.send(Job::Prune(reply)).is_err() {
            return Err(HistoryError::store("the history writer stopped"));
        }
        match answer.await {
            Ok(outcome) => outcome.map_err(HistoryError::store),
            Err(_) => Err(HistoryError::store("the history writer stopped")),
        }
    }

    /// The store's size and pruning (reads the database).
    pub async fn stats(&self) -> Result<StoreStats, HistoryError> {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || shared.stats())
            .await
            .unwrap_or_else(|err| Err(HistoryError::store(err)))
    }

    /// Queues an append to the writer now (the writer takes them in call
    /// order); the future resolves once it is committed.
    fn queue(
        &self,
        channel: &str,
        publication: Publication,
        retention: Retention,
    ) -> BoxFuture<'static, Result<Arc<Publication>, HistoryError>> {
        let (reply, answer) = oneshot::channel();
        let append = Append {
            channel: channel.to_owned(),
            publication,
            retention,
            reply,
        };
        let queued = self.writes.send(Job::Append(append)).is_ok();
        async move {
            if !queued {
                return Err(HistoryError::store("the history writer stopped"));
            }
            answer
                .await
                .unwrap_or_else(|_| Err(HistoryError::store("the history writer stopped")))
        }
        .boxed()
    }
}

/// WAL, the durability's `synchronous` level, and a wait instead of an
/// error when another connection holds a lock for a moment.
fn configure(connection: &Connection, durability: Durability) -> rusqlite::Result<()> {
    connection.busy_timeout(Duration::from_secs(5))?;
    let mode: String = connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode WAL refused (got {mode})"
        )));
    }
    let synchronous = match durability {
        Durability::Always => "FULL",
        Durability::Periodic(_) => "NORMAL",
    };
    connection.pragma_update(None, "synchronous", synchronous)?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

impl Shared {
    fn bucket(channel: &str) -> usize {
        (stored::fnv1a(channel.as_bytes()) % BUCKETS) as usize
    }

    /// The epoch a new stream of `channel` gets.
    fn epoch_for(&self, channel: &str) -> String {
        match self.generations[Shared::bucket(channel)].load(Ordering::Acquire) {
            0 => self.base.clone(),
            generation => format!("{}.{generation}", self.base),
        }
    }

    fn reader(&self) -> rusqlite::Result<Connection> {
        if let Some(connection) = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(connection);
        }
        let connection = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.busy_timeout(Duration::from_secs(5))?;
        Ok(connection)
    }

    fn stats(&self) -> Result<StoreStats, HistoryError> {
        let connection = self.reader().map_err(HistoryError::store)?;
        let count = |sql: &str| {
            connection
                .query_row(sql, [], |row| row.get::<_, i64>(0))
                .map(|n| n.max(0) as u64)
                .map_err(HistoryError::store)
        };
        let publications = count("SELECT COUNT(*) FROM publications")?;
        let streams = count("SELECT COUNT(*) FROM streams")?;
        self.put_back(connection);
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let size = |path: &Path| std::fs::metadata(path).map_or(0, |m| m.len());
        Ok(StoreStats {
            bytes: size(&self.path) + size(Path::new(&wal)),
            publications,
            streams,
            pruned: self.pruned.load(Ordering::Relaxed),
            last_prune: *self.last_prune.lock().unwrap_or_else(|p| p.into_inner()),
        })
    }

    fn put_back(&self, connection: Connection) {
        let mut idle = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_READERS {
            idle.push(connection);
        }
    }

    /// Reads `channel` as `query` asks, in one read transaction (the stream's
    /// position and its publications from the same commit).
    fn read(&self, channel: &str, query: &Query) -> Result<Page, HistoryError> {
        let mut connection = self.reader().map_err(HistoryError::store)?;
        let page = read(&mut connection, channel, query, || self.epoch_for(channel));
        if !matches!(page, Err(HistoryError::Store(_))) {
            self.put_back(connection);
        }
        page
    }
}

fn read(
    connection: &mut Connection,
    channel: &str,
    query: &Query,
    new_epoch: impl FnOnce() -> String,
) -> Result<Page, HistoryError> {
    let now = crate::time::now_ms() as i64;
    let transaction = connection.transaction().map_err(HistoryError::store)?;
    let stream = transaction
        .query_row(
            "SELECT id, epoch, top FROM streams WHERE channel = ?1",
            [channel],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            },
        )
        .optional()
        .map_err(HistoryError::store)?;
    let Some((id, epoch, top)) = stream else {
        let position = StreamPosition::new(0, new_epoch());
        if let Some(since) = &query.since
            && (since.epoch != position.epoch || since.offset > 0)
        {
            return Err(HistoryError::Unrecoverable);
        }
        return Ok(Page::new(position, Vec::new()));
    };
    let top = top as u64;
    if let Some(since) = &query.since {
        let oldest: Option<i64> = transaction
            .query_row(
                "SELECT MIN(offset) FROM publications WHERE stream = ?1 AND expires_ms > ?2",
                params![id, now],
                |row| row.get(0),
            )
            .map_err(HistoryError::store)?;
        let oldest = oldest.map_or(top + 1, |o| o as u64);
        // All or nothing (docs/protocol.md, 9.3).
        if since.epoch != epoch || since.offset > top || since.offset + 1 < oldest {
            return Err(HistoryError::Unrecoverable);
        }
    }
    let after = query.since.as_ref().map_or(0, |since| since.offset) as i64;
    let limit = query
        .limit
        .map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
    let sql = if query.reverse {
        "SELECT offset, push FROM publications
         WHERE stream = ?1 AND offset > ?2 AND expires_ms > ?3 ORDER BY offset DESC LIMIT ?4"
    } else {
        "SELECT offset, push FROM publications
         WHERE stream = ?1 AND offset > ?2 AND expires_ms > ?3 ORDER BY offset ASC LIMIT ?4"
    };
    let mut statement = transaction
        .prepare_cached(sql)
        .map_err(HistoryError::store)?;
    let rows = statement
        .query_map(params![id, after, now, limit], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
        })
        .map_err(HistoryError::store)?;
    let mut publications = Vec::new();
    for row in rows {
        let (offset, push) = row.map_err(HistoryError::store)?;
        let Some(Push::Publication(mut publication)) = stored::decode(&push) else {
            return Err(HistoryError::store(format!(
                "{channel}: the publication at offset {offset} cannot be decoded"
            )));
        };
        publication.offset = Some(offset as u64);
        publication.epoch = Some(epoch.clone());
        publications.push(publication);
    }
    Ok(Page::new(StreamPosition::new(top, epoch), publications))
}

/// The writing thread's state.
struct Writer {
    connection: Connection,
    shared: Arc<Shared>,
    /// Streams written to: id, epoch, last offset (as committed, or as in the
    /// transaction being written); at most [`MAX_CACHED_STREAMS`].
    streams: HashMap<String, StreamRow>,
    durability: Durability,
}

#[derive(Clone, Debug)]
struct StreamRow {
    id: i64,
    epoch: String,
    top: u64,
}

impl Writer {
    /// Writes batches until every sender is gone, then checkpoints; prunes
    /// every [`PRUNE_EVERY`] and when asked.
    fn run(mut self, jobs: mpsc::Receiver<Job>) {
        let sync_every = match self.durability {
            Durability::Periodic(every) => Some(every.max(Duration::from_millis(1))),
            Durability::Always => None,
        };
        let mut synced = Instant::now();
        let mut unsynced = false;
        let mut next_prune = Instant::now() + PRUNE_EVERY;
        loop {
            let mut deadline = next_prune;
            if let (Some(every), true) = (sync_every, unsynced) {
                deadline = deadline.min(synced + every);
            }
            let first = match jobs.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(job) => Some(job),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut asked = Vec::new();
            if let Some(first) = first {
                unsynced |= self.take_and_write(first, &jobs, &mut asked);
            }
            if !asked.is_empty() || Instant::now() >= next_prune {
                unsynced |= self.prune(&jobs, asked);
                next_prune = Instant::now() + PRUNE_EVERY;
            }
            if unsynced && sync_every.is_some_and(|every| synced.elapsed() >= every) {
                self.checkpoint();
                synced = Instant::now();
                unsynced = false;
            }
        }
        self.checkpoint();
    }

    /// Writes `first` and every append queued behind it in one transaction;
    /// prune requests met on the way go to `asked`. Whether it wrote.
    fn take_and_write(
        &mut self,
        first: Job,
        jobs: &mpsc::Receiver<Job>,
        asked: &mut Vec<oneshot::Sender<Result<u64, String>>>,
    ) -> bool {
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Append(append) => batch.push(append),
                Job::Prune(reply) => asked.push(reply),
            }
            if batch.len() < MAX_BATCH {
                next = jobs.try_recv().ok();
            }
        }
        let wrote = !batch.is_empty();
        if wrote {
            self.write(batch);
        }
        wrote
    }

    /// Deletes expired publications, [`PRUNE_STEP`] per transaction, writing
    /// the appends queued meanwhile between steps; answers `asked` (and any
    /// prune asked meanwhile) with the count. Whether it wrote.
    fn prune(
        &mut self,
        jobs: &mpsc::Receiver<Job>,
        mut asked: Vec<oneshot::Sender<Result<u64, String>>>,
    ) -> bool {
        let started = Instant::now();
        let now = crate::time::now_ms() as i64;
        let mut removed = 0u64;
        let outcome = loop {
            let step = self.connection.execute(
                "DELETE FROM publications WHERE (stream, offset) IN
                 (SELECT stream, offset FROM publications WHERE expires_ms <= ?1 LIMIT ?2)",
                params![now, PRUNE_STEP as i64],
            );
            let deleted = match step {
                Ok(deleted) => deleted,
                Err(err) => break Err(err.to_string()),
            };
            removed += deleted as u64;
            if deleted < PRUNE_STEP {
                break Ok(removed);
            }
            while let Ok(job) = jobs.try_recv() {
                self.take_and_write(job, jobs, &mut asked);
            }
        };
        let took = started.elapsed();
        self.shared.pruned.fetch_add(removed, Ordering::Relaxed);
        *self
            .shared
            .last_prune
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(took);
        match &outcome {
            Ok(removed) if *removed > 0 => {
                tracing::info!(removed, ?took, path = %self.shared.path.display(), "history pruned");
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(%err, path = %self.shared.path.display(), "history prune failed");
            }
        }
        for reply in asked {
            let _ = reply.send(outcome.clone());
        }
        removed > 0
    }

    /// Copies the WAL into the database, fsyncing both (the durability point
    /// of [`Durability::Periodic`]).
    fn checkpoint(&self) {
        if let Err(err) =
            self.connection
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        {
            tracing::warn!(%err, path = %self.shared.path.display(), "history checkpoint failed");
        }
    }

    /// Writes `batch` in one transaction; answers each append after the
    /// commit, or each with the error if it failed (then nothing of the batch
    /// was written).
    fn write(&mut self, batch: Vec<Append>) {
        if self.streams.len() > MAX_CACHED_STREAMS {
            // Bounded: forgotten streams are read back from the file.
            self.streams.clear();
        }
        let (work, replies): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|append| {
                let work = (append.channel, append.publication, append.retention);
                (work, append.reply)
            })
            .unzip();
        match self.write_all(work) {
            Ok(stored) => {
                for (reply, publication) in replies.into_iter().zip(stored) {
                    let _ = reply.send(Ok(publication));
                }
            }
            Err(err) => {
                // Rolled back: the offsets handed out in it were not used;
                // the streams are read back from the file (a rare event:
                // disk full, I/O error).
                self.streams.clear();
                tracing::warn!(%err, path = %self.shared.path.display(), "history write failed");
                let message = err.to_string();
                for reply in replies {
                    let _ = reply.send(Err(HistoryError::store(message.clone())));
                }
            }
        }
    }

    fn write_all(
        &mut self,
        work: Vec<(String, Publication, Retention)>,
    ) -> rusqlite::Result<Vec<Arc<Publication>>> {
        let now = crate::time::now_ms();
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut stored = Vec::with_capacity(work.len());
        for (channel, mut publication, retention) in work {
            let stream = match self.streams.get_mut(&channel) {
                Some(stream) => stream,
                None => {
                    let known = transaction
                        .query_row(
                            "SELECT id, epoch, top FROM streams WHERE channel = ?1",
                            [&channel],
                            |row| {
                                Ok(StreamRow {
                                    id: row.get(0)?,
                                    epoch: row.get(1)?,
                                    top: row.get::<_, i64>(2)? as u64,
                                })
                            },
                        )
                        .optional()?;
                    let row = match known {
                        Some(row) => row,
                        None => {
                            let epoch = self.shared.epoch_for(&channel);
                            transaction.execute(
                                "INSERT INTO streams (channel, epoch, top, updated_ms)
                                 VALUES (?1, ?2, 0, ?3)",
                                params![channel, epoch, now as i64],
                            )?;
                            StreamRow {
                                id: transaction.last_insert_rowid(),
                                epoch,
                                top: 0,
                            }
                        }
                    };
                    self.streams.entry(channel).or_insert(row)
                }
            };
            stream.top += 1;
            publication.offset = None;
            publication.epoch = None;
            let user = publication.from.as_ref().and_then(|from| from.user.clone());
            let push = stored::encode(publication.clone())
                .map_err(|err| rusqlite::Error::ToSqlConversionFailure(err.into()))?;
            let ttl_ms = u64::try_from(retention.ttl.as_millis()).unwrap_or(u64::MAX);
            let expires = now.saturating_add(ttl_ms).min(i64::MAX as u64);
            transaction
                .prepare_cached(
                    "INSERT INTO publications (stream, offset, created_ms, expires_ms, user, push)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    stream.id,
                    stream.top as i64,
                    now as i64,
                    expires as i64,
                    user,
                    push
                ])?;
            let size = retention.size.max(1) as u64;
            if stream.top > size {
                transaction
                    .prepare_cached("DELETE FROM publications WHERE stream = ?1 AND offset <= ?2")?
                    .execute(params![stream.id, (stream.top - size) as i64])?;
            }
            transaction
                .prepare_cached("UPDATE streams SET top = ?2, updated_ms = ?3 WHERE id = ?1")?
                .execute(params![stream.id, stream.top as i64, now as i64])?;
            publication.offset = Some(stream.top);
            publication.epoch = Some(stream.epoch.clone());
            stored.push(Arc::new(publication));
        }
        transaction.commit()?;
        Ok(stored)
    }
}

impl HistoryStore for SqliteHistory {
    fn append<'a>(
        &'a self,
        channel: &'a str,
        publication: Publication,
        retention: Retention,
    ) -> BoxFuture<'a, Result<Arc<Publication>, HistoryError>> {
        self.queue(channel, publication, retention)
    }

    #[allow(clippy::result_large_err, clippy::type_complexity)]
    fn append_queued(
        &self,
        channel: &str,
        publication: Publication,
        retention: Retention,
    ) -> Result<BoxFuture<'static, Result<Arc<Publication>, HistoryError>>, Publication> {
        Ok(self.queue(channel, publication, retention))
    }

    fn read<'a>(
        &'a self,
        channel: &'a str,
        query: Query,
    ) -> BoxFuture<'a, Result<Page, HistoryError>> {
        let shared = Arc::clone(&self.shared);
        let channel = channel.to_owned();
        async move {
            tokio::task::spawn_blocking(move || shared.read(&channel, &query))
                .await
                .unwrap_or_else(|err| Err(HistoryError::store(err)))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::conformance::{self, append, offsets, read};

    fn open(dir: &tempfile::TempDir) -> SqliteHistory {
        SqliteHistory::open(dir.path().join("history.db"), Durability::Always).unwrap()
    }

    #[tokio::test]
    async fn keeps_the_history_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        for durability in [Durability::Always, Durability::default()] {
            let path = dir.path().join(format!("{durability:?}.db"));
            conformance::run(&SqliteHistory::open(path, durability).unwrap()).await;
        }
    }

    #[tokio::test]
    async fn streams_offsets_and_epochs_outlive_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let quiet = {
            let store = open(&dir);
            for n in 1..=2 {
                append(&store, "kept", n).await;
            }
            read(&store, "quiet", Query::new()).await.unwrap().position
        };
        let store = open(&dir);
        let page = read(&store, "kept", Query::new()).await.unwrap();
        assert_eq!(offsets(&page), [1, 2]);
        let next = append(&store, "kept", 3).await;
        assert_eq!(next.offset, 3, "offsets continue");
        assert_eq!(next.epoch, page.position.epoch, "under the same epoch");
        assert_eq!(
            read(&store, "quiet", Query::new()).await.unwrap().position,
            quiet,
            "a quiet channel's position is stable across a restart too"
        );
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let err = SqliteHistory::open(&path, Durability::Always).unwrap_err();
        let message = crate::hub::ErrorChain(&err).to_string();
        assert!(message.contains("history.db"), "{message}");
        assert!(message.contains("not a database"), "{message}");
    }

    #[test]
    fn a_directory_that_cannot_hold_the_file_is_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("history.db");
        let err = SqliteHistory::open(&path, Durability::Always).unwrap_err();
        assert!(matches!(err, SqliteError::Open { .. }), "{err}");
    }

    #[test]
    fn a_database_from_a_later_release_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        drop(SqliteHistory::open(&path, Durability::Always).unwrap());
        let later = Connection::open(&path).unwrap();
        later
            .pragma_update(None, "user_version", MIGRATIONS.len() + 1)
            .unwrap();
        drop(later);
        let err = SqliteHistory::open(&path, Durability::Always).unwrap_err();
        assert!(matches!(err, SqliteError::Schema { .. }), "{err}");
    }

    /// Expired publications are deleted from the file while publishing goes
    /// on; what has not expired, and every stream's position, stay.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pruning_deletes_what_expired_while_publishing_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(open(&dir));
        // Expired as soon as stored: a TTL of zero.
        let gone = Retention::new(10_000, Duration::ZERO);
        for n in 0..1_200 {
            let publication = Publication::new("short", sacred_proto::Value::from(n), 0);
            store.append("short", publication, gone).await.unwrap();
        }
        let publishing = {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for n in 1..=200 {
                    append(&*store, "kept", n).await;
                }
            })
        };
        let pruned = store.prune().await.unwrap();
        publishing.await.unwrap();
        assert_eq!(pruned, 1_200, "every expired publication, in several steps");
        let kept = read(&*store, "kept", Query::new()).await.unwrap();
        assert_eq!(kept.publications.len(), 3, "the window of `kept` (size 3)");
        assert_eq!(kept.position.offset, 200);
        let short = read(&*store, "short", Query::new()).await.unwrap();
        assert!(short.publications.is_empty());
        assert_eq!(short.position.offset, 1_200, "the position stays");
        let stats = store.stats().await.unwrap();
        assert_eq!(stats.publications, 3);
        assert_eq!(stats.streams, 2);
        assert_eq!(stats.pruned, 1_200);
        assert!(stats.last_prune.is_some());
        assert!(stats.bytes > 0);
        assert_eq!(store.prune().await.unwrap(), 0, "nothing left to prune");
    }

    #[test]
    fn the_migrations_are_valid() {
        assert!(Migrations::from_slice(MIGRATIONS).validate().is_ok());
    }
}
