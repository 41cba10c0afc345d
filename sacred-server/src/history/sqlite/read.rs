//! What the writer and the readers share, and the reads: streams, exports,
//! searches, last seen, statistics. Each runs in one read transaction on a
//! connection of its own (WAL: it sees the last commit, the writer goes on).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use sacred_proto::{Publication, Push, StreamPosition};

use super::{BUCKETS, schema};
use crate::history::{HistoryError, LastSeen, Page, Query, Search, SearchPage, StoreStats};
use crate::stored;

/// Idle reading connections kept open.
const MAX_IDLE_READERS: usize = 8;

/// What the writer, the readers and the backups share.
pub(super) struct Shared {
    pub(super) path: PathBuf,
    /// The database's epoch; every stream's epoch starts with it.
    pub(super) base: String,
    pub(super) generations: Box<[AtomicU32]>,
    /// Reading connections not in use.
    pub(super) readers: Mutex<Vec<Connection>>,
    /// Expired publications deleted since the store opened.
    pub(super) pruned: AtomicU64,
    /// How long the last prune took, once one ran.
    pub(super) last_prune: Mutex<Option<Duration>>,
    /// Streams dropped by the size cap since the store opened.
    pub(super) capped_streams: AtomicU64,
    /// Backups written and failed since the store opened.
    pub(super) backups: AtomicU64,
    pub(super) failed_backups: AtomicU64,
    /// How long the last successful backup took.
    pub(super) last_backup: Mutex<Option<Duration>>,
    /// The size cap, if it has one.
    pub(super) max_bytes: Option<u64>,
}

/// A stream as the `streams` table holds it.
struct StreamRow {
    id: i64,
    epoch: String,
    top: u64,
    /// The epoch and top before a restore: positions up to that top under
    /// that epoch are positions of this stream.
    restored: Option<(String, u64)>,
}

impl Shared {
    pub(super) fn bucket(channel: &str) -> usize {
        (stored::fnv1a(channel.as_bytes()) % BUCKETS) as usize
    }

    /// The epoch a new stream of `channel` gets.
    pub(super) fn epoch_for(&self, channel: &str) -> String {
        match self.generations[Shared::bucket(channel)].load(Ordering::Acquire) {
            0 => self.base.clone(),
            generation => format!("{}.{generation}", self.base),
        }
    }

    pub(super) fn reader(&self) -> rusqlite::Result<Connection> {
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

    pub(super) fn put_back(&self, connection: Connection) {
        let mut idle = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_READERS {
            idle.push(connection);
        }
    }

    /// Runs `read` in one read transaction on a pooled connection; a
    /// connection that failed is not put back.
    fn with_reader<T>(
        &self,
        read: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, HistoryError>,
    ) -> Result<T, HistoryError> {
        let mut connection = self.reader().map_err(HistoryError::store)?;
        let outcome = connection
            .transaction()
            .map_err(HistoryError::store)
            .and_then(|transaction| read(&transaction));
        if !matches!(outcome, Err(HistoryError::Store(_))) {
            self.put_back(connection);
        }
        outcome
    }

    pub(super) fn stats(&self) -> Result<StoreStats, HistoryError> {
        let (publications, streams) = self.with_reader(|transaction| {
            let count = |sql: &str| {
                transaction
                    .query_row(sql, [], |row| row.get::<_, i64>(0))
                    .map(|n| n.max(0) as u64)
                    .map_err(HistoryError::store)
            };
            Ok((
                count("SELECT COUNT(*) FROM publications")?,
                count("SELECT COUNT(*) FROM streams")?,
            ))
        })?;
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let size = |path: &Path| std::fs::metadata(path).map_or(0, |m| m.len());
        let locked =
            |value: &Mutex<Option<Duration>>| *value.lock().unwrap_or_else(|p| p.into_inner());
        Ok(StoreStats {
            bytes: size(&self.path) + size(Path::new(&wal)),
            publications,
            streams,
            pruned: self.pruned.load(Ordering::Relaxed),
            last_prune: locked(&self.last_prune),
            capped_streams: self.capped_streams.load(Ordering::Relaxed),
            backups: self.backups.load(Ordering::Relaxed),
            failed_backups: self.failed_backups.load(Ordering::Relaxed),
            last_backup: locked(&self.last_backup),
            max_bytes: self.max_bytes,
        })
    }

    /// Reads `channel` as `query` asks: the stream's position and its
    /// publications from the same commit.
    pub(super) fn read(&self, channel: &str, query: &Query) -> Result<Page, HistoryError> {
        self.with_reader(|transaction| {
            let now = crate::time::now_ms() as i64;
            let Some(stream) = stream(transaction, channel)? else {
                let position = StreamPosition::new(0, self.epoch_for(channel));
                if let Some(since) = &query.since
                    && (since.epoch != position.epoch || since.offset > 0)
                {
                    return Err(HistoryError::Unrecoverable);
                }
                return Ok(Page::new(position, Vec::new()));
            };
            let top = stream.top;
            if let Some(since) = &query.since {
                let oldest: Option<i64> = transaction
                    .query_row(
                        "SELECT MIN(offset) FROM publications WHERE stream = ?1 AND expires_ms > ?2",
                        params![stream.id, now],
                        |row| row.get(0),
                    )
                    .map_err(HistoryError::store)?;
                let oldest = oldest.map_or(top + 1, |o| o as u64);
                let same_stream = since.epoch == stream.epoch
                    || stream.restored.as_ref().is_some_and(|(epoch, restored_top)| {
                        since.epoch == *epoch && since.offset <= *restored_top
                    });
                // All or nothing (docs/protocol.md, 9.3).
                if !same_stream || since.offset > top || since.offset + 1 < oldest {
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
                .query_map(params![stream.id, after, now, limit], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
                })
                .map_err(HistoryError::store)?;
            let publications = of_stream(rows, channel, &stream.epoch)?;
            Ok(Page::new(StreamPosition::new(top, stream.epoch), publications))
        })
    }

    /// Every kept publication `user` published, by channel then offset.
    pub(super) fn export_user(&self, user: &str) -> Result<Vec<Publication>, HistoryError> {
        self.with_reader(|transaction| {
            let now = crate::time::now_ms() as i64;
            let mut statement = transaction
                .prepare(
                    "SELECT s.channel, s.epoch, p.offset, p.push
                     FROM publications p JOIN streams s ON s.id = p.stream
                     WHERE p.user = ?1 AND p.expires_ms > ?2
                     ORDER BY s.channel, p.offset",
                )
                .map_err(HistoryError::store)?;
            let rows = statement
                .query_map(params![user, now], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, i64>(2)?,
                        row.get::<_, Vec<u8>>(3)?,
                    ))
                })
                .map_err(HistoryError::store)?;
            let mut publications = Vec::new();
            for row in rows {
                let (channel, epoch, offset, push) = row.map_err(HistoryError::store)?;
                publications.push(publication(&channel, offset, &epoch, &push)?);
            }
            Ok(publications)
        })
    }

    /// The kept publications of `channel` with every word of the search,
    /// best first (FTS5's bm25 rank), paged.
    pub(super) fn search(
        &self,
        channel: &str,
        search: &Search,
    ) -> Result<SearchPage, HistoryError> {
        self.with_reader(|transaction| {
            let Some(stream) = stream(transaction, channel)? else {
                return Ok(SearchPage::default());
            };
            let Some(expression) = schema::match_expression(stream.id, &search.text) else {
                return Ok(SearchPage::default());
            };
            let now = crate::time::now_ms() as i64;
            let total: i64 = transaction
                .query_row(
                    "SELECT COUNT(*) FROM publication_text
                     JOIN publications p ON p.text_id = publication_text.rowid
                     WHERE publication_text MATCH ?1 AND p.stream = ?2 AND p.expires_ms > ?3",
                    params![expression, stream.id, now],
                    |row| row.get(0),
                )
                .map_err(HistoryError::store)?;
            let mut statement = transaction
                .prepare_cached(
                    "SELECT p.offset, p.push FROM publication_text
                     JOIN publications p ON p.text_id = publication_text.rowid
                     WHERE publication_text MATCH ?1 AND p.stream = ?2 AND p.expires_ms > ?3
                     ORDER BY bm25(publication_text), p.offset DESC LIMIT ?4 OFFSET ?5",
                )
                .map_err(HistoryError::store)?;
            let limit = i64::try_from(search.limit).unwrap_or(i64::MAX);
            let skip = i64::try_from(search.skip).unwrap_or(i64::MAX);
            let rows = statement
                .query_map(params![expression, stream.id, now, limit, skip], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
                })
                .map_err(HistoryError::store)?;
            let publications = of_stream(rows, channel, &stream.epoch)?;
            Ok(SearchPage {
                publications,
                total: total.max(0) as u64,
            })
        })
    }

    /// `user`'s last-seen records, most recently seen first.
    pub(super) fn last_seen(&self, user: &str) -> Result<Vec<LastSeen>, HistoryError> {
        self.with_reader(|transaction| {
            let mut statement = transaction
                .prepare(
                    "SELECT kind, runtime, connected_ms, seen_ms, sessions, messages
                     FROM sessions WHERE user = ?1 ORDER BY seen_ms DESC, kind, runtime",
                )
                .map_err(HistoryError::store)?;
            let rows = statement
                .query_map([user], |row| {
                    Ok(LastSeen {
                        kind: row.get(0)?,
                        runtime: row.get(1)?,
                        connected_ms: row.get::<_, i64>(2)?.max(0) as u64,
                        seen_ms: row.get::<_, i64>(3)?.max(0) as u64,
                        sessions: row.get::<_, i64>(4)?.max(0) as u64,
                        messages: row.get::<_, i64>(5)?.max(0) as u64,
                    })
                })
                .map_err(HistoryError::store)?;
            rows.collect::<Result<_, _>>().map_err(HistoryError::store)
        })
    }
}

fn stream(
    transaction: &rusqlite::Transaction<'_>,
    channel: &str,
) -> Result<Option<StreamRow>, HistoryError> {
    transaction
        .query_row(
            "SELECT id, epoch, top, restored_epoch, restored_top FROM streams WHERE channel = ?1",
            [channel],
            |row| {
                let restored = match (
                    row.get::<_, Option<String>>(3)?,
                    row.get::<_, Option<i64>>(4)?,
                ) {
                    (Some(epoch), Some(top)) => Some((epoch, top.max(0) as u64)),
                    _ => None,
                };
                Ok(StreamRow {
                    id: row.get(0)?,
                    epoch: row.get(1)?,
                    top: row.get::<_, i64>(2)?.max(0) as u64,
                    restored,
                })
            },
        )
        .optional()
        .map_err(HistoryError::store)
}

/// The publications of rows of one stream's `(offset, push)`.
fn of_stream(
    rows: impl Iterator<Item = rusqlite::Result<(i64, Vec<u8>)>>,
    channel: &str,
    epoch: &str,
) -> Result<Vec<Publication>, HistoryError> {
    rows.map(|row| {
        let (offset, push) = row.map_err(HistoryError::store)?;
        publication(channel, offset, epoch, &push)
    })
    .collect()
}

/// A stored publication, with its place in the stream.
fn publication(
    channel: &str,
    offset: i64,
    epoch: &str,
    push: &[u8],
) -> Result<Publication, HistoryError> {
    let Some(Push::Publication(mut publication)) = stored::decode(push) else {
        return Err(HistoryError::store(format!(
            "{channel}: the publication at offset {offset} cannot be decoded"
        )));
    };
    publication.offset = Some(offset as u64);
    publication.epoch = Some(epoch.to_owned());
    Ok(publication)
}
