//! `SqliteHistory` (feature `sqlite`): streams in one SQLite database file
//! (WAL mode), so a node's streams, offsets and epochs survive a restart or
//! a crash.
//!
//! - **One writer.** Appends go to a dedicated thread that owns the only
//!   writing connection. It takes every append waiting when it wakes, writes
//!   them in one transaction and commits once, so concurrent publishes share
//!   one commit (and one fsync) instead of paying one each. Each append is
//!   answered after the commit: the ack means the publication is in the
//!   database (see [`Durability`] for what that survives). Deletions,
//!   pruning, the size cap and session records go through the same thread.
//! - **Readers do not block the writer.** Reads, searches, exports and
//!   backups run on their own connections (WAL: readers see the last commit,
//!   the writer goes on), off the async runtime.
//! - **The schema is migrated in place** (rusqlite_migration, the version in
//!   SQLite's `user_version`): a database from an earlier release is
//!   upgraded when opened, one from a later release is refused.
//! - **Upkeep**: expired publications are deleted every minute in small
//!   steps; streams empty and idle longer than [`SqliteBuilder::keep_idle`]
//!   are forgotten; past [`SqliteBuilder::max_bytes`] the oldest streams go
//!   first; [`Backups`] are written on a schedule with the backup API.

mod backup;
mod read;
mod schema;
#[cfg(test)]
mod tests;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use rusqlite::Connection;
use rusqlite_migration::Migrations;
use sacred_proto::Publication;
use tokio::sync::oneshot;

pub use backup::Backups;

use super::{
    HistoryError, HistoryStore, LastSeen, Page, Query, Retention, Search, SearchPage, Session,
    StoreStats,
};
use read::Shared;
use writer::{Append, Job, Writer};

/// Buckets of channel names sharing an epoch generation (as in
/// `MemoryHistory`): a channel's next stream starts under its bucket's
/// generation, so a forgotten stream never comes back under an old epoch.
const BUCKETS: u64 = 1024;

/// Searches a store runs at once; more wait their turn.
const MAX_SEARCHES: usize = 4;

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

/// Why the store could not open (or restore) its database.
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
    /// The directory that is to hold the database does not exist.
    #[error("history database directory {0} does not exist")]
    NoDirectory(PathBuf),
    /// A file beside the database (its lock, a backup) could not be used.
    #[error("history database {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Another process has the database open (a running server), so it
    /// cannot be restored over.
    #[error("history database {0} is in use (stop the server first)")]
    InUse(PathBuf),
    /// A backup to restore is damaged.
    #[error("backup {path} is damaged: {problem}")]
    Damaged {
        /// The backup file.
        path: PathBuf,
        /// What `PRAGMA integrity_check` found.
        problem: String,
    },
}

/// How to open a [`SqliteHistory`]: its durability, size cap, upkeep and
/// backups. From [`SqliteHistory::builder`].
#[derive(Clone, Debug)]
#[must_use]
pub struct SqliteBuilder {
    path: PathBuf,
    durability: Durability,
    max_bytes: Option<u64>,
    keep_idle: Duration,
    backups: Option<Backups>,
    upkeep: bool,
}

impl SqliteBuilder {
    /// What an acknowledged publish survives (default: [`Durability::Periodic`]
    /// every second).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// A cap on the bytes the database uses (default: none). Past it the
    /// streams least recently published to are deleted, oldest first, until
    /// it uses at most 90% of the cap; each such deletion is logged and
    /// counted ([`StoreStats::capped_streams`]). The file does not shrink:
    /// SQLite reuses the freed pages.
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = Some(bytes);
        self
    }

    /// How long the position of a stream whose publications all expired, and
    /// the last-seen record of a user, are kept after their last activity
    /// (default: 7 days, the default history TTL). A forgotten stream comes
    /// back under a new epoch.
    pub fn keep_idle(mut self, keep_idle: Duration) -> Self {
        self.keep_idle = keep_idle;
        self
    }

    /// Whether this store prunes, forgets idle streams and keeps to the cap
    /// (default: yes). A second process working on a server's database (a
    /// maintenance command) turns it off: the server does the upkeep, and
    /// only it may delete streams, whose positions it caches.
    pub fn upkeep(mut self, upkeep: bool) -> Self {
        self.upkeep = upkeep;
        self
    }

    /// Writes backups on a schedule (default: none).
    pub fn backups(mut self, backups: Backups) -> Self {
        self.backups = Some(backups);
        self
    }

    /// Opens (creating it if need be) the database, upgrades its schema, and
    /// starts the writer (and the backup schedule, if any).
    pub fn open(self) -> Result<SqliteHistory, SqliteError> {
        SqliteHistory::open_with(self)
    }
}

/// Durable history in an SQLite database file (see the module docs).
pub struct SqliteHistory {
    path: PathBuf,
    writes: mpsc::Sender<Job>,
    /// Joined on drop: the database is closed before the lock is released.
    writer: Option<std::thread::JoinHandle<()>>,
    shared: Arc<Shared>,
    /// Searches running at once at most ([`MAX_SEARCHES`]): each may scan
    /// much of the index, and they share the blocking pool with reads.
    searches: tokio::sync::Semaphore,
    /// Stops the backup schedule when the store is dropped.
    _backups: Option<backup::Schedule>,
    /// A shared lock on `PATH.lock` while the store is open, so a restore
    /// cannot replace the file under a running server.
    _lock: File,
}

impl std::fmt::Debug for SqliteHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteHistory")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Drop for SqliteHistory {
    /// Stops the writer once it wrote what was queued (then checkpoints),
    /// and the backup schedule; the lock goes last, so no restore can begin
    /// while this process still has the file open.
    fn drop(&mut self) {
        drop(std::mem::replace(&mut self.writes, mpsc::channel().0));
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// A connection of its own to the store's file at `path`, for the tables
/// beside the history (API keys, the audit trail): WAL, a busy timeout, the
/// schema brought up to date. Safe while a server has the file open.
pub(crate) fn open_side_connection(path: &Path) -> Result<Connection, SqliteError> {
    let open_failed = |source| SqliteError::Open {
        path: path.to_owned(),
        source,
    };
    let mut connection = Connection::open(path).map_err(open_failed)?;
    schema::configure(&connection, Durability::Always).map_err(open_failed)?;
    Migrations::from_slice(schema::MIGRATIONS)
        .to_latest(&mut connection)
        .map_err(|source| SqliteError::Schema {
            path: path.to_owned(),
            source,
        })?;
    Ok(connection)
}

impl SqliteHistory {
    /// Opens the database at `path` with `durability` and the defaults
    /// otherwise (see [`SqliteHistory::builder`]).
    pub fn open(path: impl AsRef<Path>, durability: Durability) -> Result<Self, SqliteError> {
        SqliteHistory::builder(path).durability(durability).open()
    }

    /// Starts describing the store at `path`.
    pub fn builder(path: impl AsRef<Path>) -> SqliteBuilder {
        SqliteBuilder {
            path: path.as_ref().to_owned(),
            durability: Durability::default(),
            max_bytes: None,
            keep_idle: Duration::from_secs(7 * 24 * 3600),
            backups: None,
            upkeep: true,
        }
    }

    fn open_with(builder: SqliteBuilder) -> Result<Self, SqliteError> {
        let path = builder.path;
        let lock = backup::lock_shared(&path)?;
        let open_failed = |source| SqliteError::Open {
            path: path.clone(),
            source,
        };
        let mut writer = Connection::open(&path).map_err(open_failed)?;
        schema::configure(&writer, builder.durability).map_err(open_failed)?;
        Migrations::from_slice(schema::MIGRATIONS)
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
            capped_streams: AtomicU64::new(0),
            backups: AtomicU64::new(0),
            failed_backups: AtomicU64::new(0),
            last_backup: Mutex::new(None),
            max_bytes: builder.max_bytes,
        });
        // A reader now, so that a file that cannot be read fails here.
        let reader = shared.reader().map_err(open_failed)?;
        shared.put_back(reader);
        let (writes, jobs) = mpsc::channel();
        let writing = Writer::new(
            writer,
            Arc::clone(&shared),
            builder.durability,
            builder.upkeep,
            builder.max_bytes,
            builder.keep_idle,
        );
        let writer = std::thread::Builder::new()
            .name("sacred-sqlite-writer".to_owned())
            .spawn(move || writing.run(jobs))
            .map_err(|source| SqliteError::Io {
                path: path.clone(),
                source,
            })?;
        let backups = match builder.backups {
            Some(backups) => Some(backup::Schedule::start(backups, Arc::clone(&shared))?),
            None => None,
        };
        Ok(SqliteHistory {
            path,
            writes,
            writer: Some(writer),
            shared,
            searches: tokio::sync::Semaphore::new(MAX_SEARCHES),
            _backups: backups,
            _lock: lock,
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
        self.ask(Job::Prune).await
    }

    /// Writes a consistent copy of the database to `destination` while the
    /// store goes on (SQLite's online backup API, in one read transaction, so
    /// publishes are not held up); the file appears whole or not at all.
    /// Returns how long it took. Counted in [`StoreStats`].
    pub async fn backup(&self, destination: impl AsRef<Path>) -> Result<Duration, HistoryError> {
        let shared = Arc::clone(&self.shared);
        let destination = destination.as_ref().to_owned();
        tokio::task::spawn_blocking(move || shared.backup_counted(&destination))
            .await
            .unwrap_or_else(|err| Err(HistoryError::store(err)))
    }

    /// Replaces the database at `path` with the backup at `backup`, checked
    /// first (`PRAGMA integrity_check`), while no process has it open
    /// ([`SqliteError::InUse`] otherwise: stop the server first).
    ///
    /// Streams keep their offsets. Each gets a new epoch, but a client whose
    /// position is at or before the backup's end still recovers: the
    /// restored stream recognises the old epoch up to that offset. A client
    /// that saw later publications (lost with the restore) gets
    /// `recovered: false` rather than different publications under offsets
    /// it already saw.
    pub fn restore(backup: impl AsRef<Path>, path: impl AsRef<Path>) -> Result<(), SqliteError> {
        backup::restore(backup.as_ref(), path.as_ref())
    }

    /// Sends `job` (made with its reply) to the writer and waits for the answer.
    async fn ask<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, String>>) -> Job,
    ) -> Result<T, HistoryError> {
        let (reply, answer) = oneshot::channel();
        if self.writes.send(job(reply)).is_err() {
            return Err(HistoryError::store("the history writer stopped"));
        }
        match answer.await {
            Ok(outcome) => outcome.map_err(HistoryError::store),
            Err(_) => Err(HistoryError::store("the history writer stopped")),
        }
    }

    /// Runs `read` on a reading connection, off the async runtime.
    async fn read_with<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Shared) -> Result<T, HistoryError> + Send + 'static,
    ) -> Result<T, HistoryError> {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || read(&shared))
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
        let channel = channel.to_owned();
        self.read_with(move |shared| shared.read(&channel, &query))
            .boxed()
    }

    fn remove<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<u64, HistoryError>> {
        let channel = channel.to_owned();
        self.ask(move |reply| Job::Remove(channel, reply)).boxed()
    }

    /// Deletes the user's publications everywhere and their last-seen records.
    fn forget_user<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<u64, HistoryError>> {
        let user = user.to_owned();
        self.ask(move |reply| Job::ForgetUser(user, reply)).boxed()
    }

    fn export_user<'a>(
        &'a self,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Publication>, HistoryError>> {
        let user = user.to_owned();
        self.read_with(move |shared| shared.export_user(&user))
            .boxed()
    }

    fn search<'a>(
        &'a self,
        channel: &'a str,
        search: Search,
    ) -> BoxFuture<'a, Result<SearchPage, HistoryError>> {
        let channel = channel.to_owned();
        async move {
            let _permit = self.searches.acquire().await.map_err(HistoryError::store)?;
            self.read_with(move |shared| shared.search(&channel, &search))
                .await
        }
        .boxed()
    }

    fn record_session(&self, session: Session) {
        // A stopped writer only happens as the process ends.
        let _ = self.writes.send(Job::Session(session));
    }

    fn last_seen<'a>(
        &'a self,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Vec<LastSeen>, HistoryError>> {
        let user = user.to_owned();
        self.read_with(move |shared| shared.last_seen(&user))
            .boxed()
    }

    fn stats(&self) -> BoxFuture<'_, Result<StoreStats, HistoryError>> {
        self.read_with(Shared::stats).boxed()
    }
}
