//! The one thread that writes: appends in batches, one transaction and one
//! commit per batch; deletions; session records; and the upkeep (pruning,
//! idle streams, the size cap, checkpoints).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use sacred_proto::Publication;
use tokio::sync::oneshot;

use super::Durability;
use super::read::Shared;
use super::schema;
use crate::history::{HistoryError, Retention, Session};
use crate::stored;

/// Appends written in one transaction at most.
const MAX_BATCH: usize = 1024;

/// Streams whose position the writer keeps in memory at most.
const MAX_CACHED_STREAMS: usize = 65_536;

/// How often the writer deletes expired publications, idle streams and old
/// session records.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// How often, while writing, the writer compares the database with its cap.
const CAP_EVERY: Duration = Duration::from_secs(5);

/// Rows deleted per transaction by upkeep: appends queued meanwhile are
/// written between two such steps, so a large prune never holds them up
/// for long.
const PRUNE_STEP: usize = 500;

/// Streams dropped per step when the database is over its cap.
const CAP_STEP: usize = 16;

/// How a deletion or prune is answered.
pub(super) type Reply<T> = oneshot::Sender<Result<T, String>>;

/// What the writer is asked to do. (Appends are the traffic and move
/// through the queue as they are; boxing them would cost one allocation each.)
#[allow(clippy::large_enum_variant)]
pub(super) enum Job {
    Append(Append),
    /// Delete the expired publications now; answers how many went.
    Prune(Reply<u64>),
    /// Delete a channel's publications (its position stays).
    Remove(String, Reply<u64>),
    /// Delete a user's publications and last-seen records.
    ForgetUser(String, Reply<u64>),
    /// Record a connection's session.
    Session(Session),
}

/// One append for the writer.
pub(super) struct Append {
    pub(super) channel: String,
    pub(super) publication: Publication,
    pub(super) retention: Retention,
    pub(super) reply: oneshot::Sender<Result<Arc<Publication>, HistoryError>>,
}

/// The writing thread's state.
pub(super) struct Writer {
    connection: Connection,
    shared: Arc<Shared>,
    /// Streams written to: id, epoch, last offset (as committed, or as in the
    /// transaction being written); at most [`MAX_CACHED_STREAMS`].
    streams: HashMap<String, StreamRow>,
    durability: Durability,
    /// Whether this writer prunes, forgets idle streams and keeps to the cap.
    upkeep: bool,
    max_bytes: Option<u64>,
    keep_idle: Duration,
    /// What the queue held besides appends, not yet done.
    asked: Asked,
}

#[derive(Clone, Debug)]
struct StreamRow {
    id: i64,
    epoch: String,
    top: u64,
}

/// What the writer took from the queue besides appends and sessions.
#[derive(Default)]
struct Asked {
    prunes: Vec<Reply<u64>>,
    /// Deletions, each run after the appends queued before it.
    deletions: std::collections::VecDeque<Job>,
}

impl Writer {
    pub(super) fn new(
        connection: Connection,
        shared: Arc<Shared>,
        durability: Durability,
        upkeep: bool,
        max_bytes: Option<u64>,
        keep_idle: Duration,
    ) -> Writer {
        Writer {
            connection,
            shared,
            streams: HashMap::new(),
            durability,
            upkeep,
            max_bytes,
            keep_idle,
            asked: Asked::default(),
        }
    }

    /// Writes batches until every sender is gone, then checkpoints; with
    /// upkeep, prunes every [`PRUNE_EVERY`] and keeps to the cap; prunes when
    /// asked.
    pub(super) fn run(mut self, jobs: mpsc::Receiver<Job>) {
        let sync_every = match self.durability {
            Durability::Periodic(every) => Some(every.max(Duration::from_millis(1))),
            Durability::Always => None,
        };
        let never = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        let mut synced = Instant::now();
        let mut unsynced = false;
        let mut next_prune = if self.upkeep {
            Instant::now() + PRUNE_EVERY
        } else {
            never
        };
        let mut next_cap = Instant::now();
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
            if let Some(first) = first {
                unsynced |= self.take_and_write(first, &jobs);
            }
            while let Some(deletion) = self.asked.deletions.pop_front() {
                unsynced |= self.delete(deletion, &jobs);
            }
            if !self.asked.prunes.is_empty() || Instant::now() >= next_prune {
                unsynced |= self.prune(&jobs);
                if self.upkeep {
                    next_prune = Instant::now() + PRUNE_EVERY;
                }
                next_cap = Instant::now() + CAP_EVERY;
            }
            if unsynced && self.upkeep && self.max_bytes.is_some() && Instant::now() >= next_cap {
                self.keep_to_cap(&jobs);
                next_cap = Instant::now() + CAP_EVERY;
            }
            if unsynced && sync_every.is_some_and(|every| synced.elapsed() >= every) {
                self.checkpoint();
                synced = Instant::now();
                unsynced = false;
            }
        }
        self.checkpoint();
    }

    /// Writes `first` and every append (and session) queued behind it in one
    /// transaction; prunes and deletions met on the way wait in `asked`.
    /// Whether it wrote.
    fn take_and_write(&mut self, first: Job, jobs: &mpsc::Receiver<Job>) -> bool {
        let mut batch = Vec::new();
        let mut sessions = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Append(append) => batch.push(append),
                Job::Session(session) => sessions.push(session),
                Job::Prune(reply) => self.asked.prunes.push(reply),
                deletion @ (Job::Remove(..) | Job::ForgetUser(..)) => {
                    // Later appends must not overtake it: stop the batch here.
                    self.asked.deletions.push_back(deletion);
                    break;
                }
            }
            if batch.len() < MAX_BATCH {
                next = jobs.try_recv().ok();
            }
        }
        let wrote = !batch.is_empty() || !sessions.is_empty();
        if wrote {
            self.write(batch, sessions);
        }
        wrote
    }

    /// Writes the appends queued now (between two steps of a long deletion
    /// or prune, so publishing goes on); deletions met wait their turn.
    fn write_queued(&mut self, jobs: &mpsc::Receiver<Job>) {
        while let Ok(job) = jobs.try_recv() {
            self.take_and_write(job, jobs);
        }
    }

    /// Runs `step` (one bounded DELETE, returning the rows it deleted) until
    /// it deletes fewer than [`PRUNE_STEP`], writing queued appends between
    /// steps; the rows deleted in all.
    fn in_steps(
        &mut self,
        jobs: &mpsc::Receiver<Job>,
        mut step: impl FnMut(&Connection) -> rusqlite::Result<usize>,
    ) -> rusqlite::Result<u64> {
        let mut removed = 0u64;
        loop {
            let deleted = step(&self.connection)?;
            removed += deleted as u64;
            if deleted < PRUNE_STEP {
                return Ok(removed);
            }
            self.write_queued(jobs);
        }
    }

    /// Runs a deletion, in steps, and answers it. Whether it wrote.
    fn delete(&mut self, job: Job, jobs: &mpsc::Receiver<Job>) -> bool {
        let (outcome, reply) = match job {
            Job::Remove(channel, reply) => {
                // What was published before the request, not what comes after.
                let outcome = self
                    .connection
                    .query_row(
                        "SELECT id, top FROM streams WHERE channel = ?1",
                        [&channel],
                        |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)),
                    )
                    .optional()
                    .and_then(|stream| match stream {
                        None => Ok(0),
                        Some((id, top)) => self.in_steps(jobs, |connection| {
                            connection.execute(
                                "DELETE FROM publications WHERE (stream, offset) IN
                                 (SELECT stream, offset FROM publications
                                  WHERE stream = ?1 AND offset <= ?2 LIMIT ?3)",
                                params![id, top, PRUNE_STEP as i64],
                            )
                        }),
                    });
                if let Ok(removed) = &outcome {
                    tracing::info!(channel, removed, "history of a channel deleted");
                }
                (outcome, reply)
            }
            Job::ForgetUser(user, reply) => {
                let outcome = self
                    .in_steps(jobs, |connection| {
                        connection.execute(
                            "DELETE FROM publications WHERE (stream, offset) IN
                             (SELECT stream, offset FROM publications WHERE user = ?1 LIMIT ?2)",
                            params![user, PRUNE_STEP as i64],
                        )
                    })
                    .and_then(|removed| {
                        self.connection
                            .execute("DELETE FROM sessions WHERE user = ?1", [&user])
                            .map(|_| removed)
                    });
                if let Ok(removed) = &outcome {
                    // The user id is not logged: the point is to forget it.
                    tracing::info!(removed, "a user's publications deleted");
                }
                (outcome, reply)
            }
            _ => return false,
        };
        let outcome = outcome.map_err(|err| err.to_string());
        let wrote = outcome.is_ok();
        let _ = reply.send(outcome);
        wrote
    }

    /// Deletes expired publications in steps, writing the appends queued
    /// meanwhile between steps; with upkeep, then streams empty and idle
    /// past `keep_idle` and session records as old, then keeps to the cap.
    /// Answers the prunes asked (and any asked meanwhile) with the count.
    /// Whether it wrote.
    fn prune(&mut self, jobs: &mpsc::Receiver<Job>) -> bool {
        let started = Instant::now();
        let now = crate::time::now_ms() as i64;
        let outcome = self
            .in_steps(jobs, |connection| {
                connection.execute(
                    "DELETE FROM publications WHERE (stream, offset) IN
                     (SELECT stream, offset FROM publications WHERE expires_ms <= ?1 LIMIT ?2)",
                    params![now, PRUNE_STEP as i64],
                )
            })
            .map_err(|err| err.to_string());
        let idle = if self.upkeep {
            let keep_idle = i64::try_from(self.keep_idle.as_millis()).unwrap_or(i64::MAX);
            let idle = self.forget_idle(now.saturating_sub(keep_idle));
            self.keep_to_cap(jobs);
            idle
        } else {
            Ok(0)
        };
        let removed = *outcome.as_ref().unwrap_or(&0);
        let took = started.elapsed();
        self.shared.pruned.fetch_add(removed, Ordering::Relaxed);
        *self
            .shared
            .last_prune
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(took);
        match (&outcome, &idle) {
            (Err(err), _) | (_, Err(err)) => {
                tracing::warn!(%err, path = %self.shared.path.display(), "history prune failed");
            }
            (Ok(removed), Ok(streams)) if *removed > 0 || *streams > 0 => {
                tracing::info!(removed, idle_streams = streams, ?took, path = %self.shared.path.display(), "history pruned");
            }
            _ => {}
        }
        for reply in std::mem::take(&mut self.asked.prunes) {
            let _ = reply.send(outcome.clone());
        }
        removed > 0
    }

    /// Forgets streams with no publication left and no append since
    /// `before`, and session records not seen since; how many streams went.
    fn forget_idle(&mut self, before: i64) -> Result<u64, String> {
        let idle: Vec<(i64, String)> = self
            .connection
            .prepare(
                "SELECT id, channel FROM streams WHERE updated_ms <= ?1
                 AND NOT EXISTS (SELECT 1 FROM publications WHERE stream = streams.id)
                 LIMIT ?2",
            )
            .and_then(|mut statement| {
                statement
                    .query_map(params![before, PRUNE_STEP as i64], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })?
                    .collect()
            })
            .map_err(|err| err.to_string())?;
        let forgotten = idle.len() as u64;
        self.drop_streams(idle).map_err(|err| err.to_string())?;
        self.connection
            .execute("DELETE FROM sessions WHERE seen_ms <= ?1", [before])
            .map_err(|err| err.to_string())?;
        Ok(forgotten)
    }

    /// Deletes `streams` with their publications, in one transaction; each
    /// bucket they were in gets a new generation, so each channel's next
    /// stream starts under a new epoch.
    fn drop_streams(&mut self, streams: Vec<(i64, String)>) -> rusqlite::Result<()> {
        if streams.is_empty() {
            return Ok(());
        }
        let transaction = self.connection.transaction()?;
        let mut bumped = Vec::new();
        for (id, channel) in &streams {
            transaction.execute("DELETE FROM streams WHERE id = ?1", [id])?;
            let bucket = Shared::bucket(channel);
            let n: u32 = transaction.query_row(
                "INSERT INTO generations (bucket, n) VALUES (?1, 1)
                 ON CONFLICT (bucket) DO UPDATE SET n = n + 1 RETURNING n",
                [bucket as i64],
                |row| row.get(0),
            )?;
            bumped.push((bucket, n));
        }
        transaction.commit()?;
        for (bucket, n) in bumped {
            self.shared.generations[bucket].fetch_max(n, Ordering::AcqRel);
        }
        for (_, channel) in &streams {
            self.streams.remove(channel);
        }
        Ok(())
    }

    /// Bytes in use: pages holding data (free pages are reused, not returned).
    fn used_bytes(&self) -> rusqlite::Result<u64> {
        let pragma = |name: &str| {
            self.connection
                .query_row(&format!("PRAGMA {name}"), [], |row| row.get::<_, i64>(0))
                .map(|n| n.max(0) as u64)
        };
        let pages = pragma("page_count")?.saturating_sub(pragma("freelist_count")?);
        Ok(pages * pragma("page_size")?)
    }

    /// Past the cap, drops the streams least recently appended to until the
    /// database uses at most 90% of it, writing queued appends between
    /// steps; stops early if a step frees nothing (the space is then the
    /// search index's, freed as it merges). Logged and counted.
    fn keep_to_cap(&mut self, jobs: &mpsc::Receiver<Job>) {
        let Some(cap) = self.max_bytes else {
            return;
        };
        let target = cap / 10 * 9;
        let mut dropped = 0u64;
        let outcome: rusqlite::Result<()> = (|| {
            let mut used = self.used_bytes()?;
            if used <= cap {
                return Ok(());
            }
            while used > target {
                let oldest: Vec<(i64, String)> = self
                    .connection
                    .prepare_cached(
                        "SELECT id, channel FROM streams ORDER BY updated_ms, id LIMIT ?1",
                    )?
                    .query_map([CAP_STEP as i64], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                if oldest.is_empty() {
                    break;
                }
                dropped += oldest.len() as u64;
                self.drop_streams(oldest)?;
                let now = self.used_bytes()?;
                if now >= used {
                    break;
                }
                used = now;
                self.write_queued(jobs);
            }
            Ok(())
        })();
        if dropped > 0 {
            self.shared
                .capped_streams
                .fetch_add(dropped, Ordering::Relaxed);
            tracing::warn!(
                streams = dropped,
                cap,
                path = %self.shared.path.display(),
                "history store reached its size cap: the oldest streams were deleted"
            );
        }
        if let Err(err) = outcome {
            tracing::warn!(%err, path = %self.shared.path.display(), "history size cap check failed");
        }
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

    /// Writes `batch` and `sessions` in one transaction; answers each append
    /// after the commit, or each with the error if it failed (then nothing of
    /// the batch was written).
    fn write(&mut self, batch: Vec<Append>, sessions: Vec<Session>) {
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
        match self.write_all(work, &sessions) {
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
        sessions: &[Session],
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
                            // Another process may have moved the bucket on.
                            let bucket = Shared::bucket(&channel);
                            let stored: Option<u32> = transaction
                                .prepare_cached("SELECT n FROM generations WHERE bucket = ?1")?
                                .query_row([bucket as i64], |row| row.get(0))
                                .optional()?;
                            if let Some(n) = stored {
                                self.shared.generations[bucket].fetch_max(n, Ordering::AcqRel);
                            }
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
            let text_id = match retention.searchable {
                true => index_text(&transaction, stream.id, &publication)?,
                false => None,
            };
            let push = stored::encode(publication.clone())
                .map_err(|err| rusqlite::Error::ToSqlConversionFailure(err.into()))?;
            let ttl_ms = u64::try_from(retention.ttl.as_millis()).unwrap_or(u64::MAX);
            let expires = now.saturating_add(ttl_ms).min(i64::MAX as u64);
            transaction
                .prepare_cached(
                    "INSERT INTO publications
                     (stream, offset, created_ms, expires_ms, user, push, text_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    stream.id,
                    stream.top as i64,
                    now as i64,
                    expires as i64,
                    user,
                    push,
                    text_id
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
        for session in sessions {
            transaction
                .prepare_cached(
                    "INSERT INTO sessions (user, kind, runtime, connected_ms, seen_ms, sessions, messages)
                     VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6)
                     ON CONFLICT (user, kind, runtime) DO UPDATE SET
                         connected_ms = max(connected_ms, excluded.connected_ms),
                         seen_ms = max(seen_ms, excluded.seen_ms),
                         sessions = sessions + 1,
                         messages = messages + excluded.messages",
                )?
                .execute(params![
                    session.user,
                    session.kind,
                    session.runtime,
                    session.connected_ms.min(i64::MAX as u64) as i64,
                    session.seen_ms.min(i64::MAX as u64) as i64,
                    session.messages.min(i64::MAX as u64) as i64
                ])?;
        }
        transaction.commit()?;
        Ok(stored)
    }
}

/// Indexes the text of `publication` for search; its row id in the index,
/// or `None` when it has no text.
fn index_text(
    transaction: &rusqlite::Transaction<'_>,
    stream: i64,
    publication: &Publication,
) -> rusqlite::Result<Option<i64>> {
    let text = schema::searchable_text(&publication.data);
    if text.is_empty() {
        return Ok(None);
    }
    transaction
        .prepare_cached("INSERT INTO publication_text (body, stream) VALUES (?1, ?2)")?
        .execute(params![text, schema::stream_token(stream)])?;
    Ok(Some(transaction.last_insert_rowid()))
}
