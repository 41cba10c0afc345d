//! `SqliteAudit`: the audit trail in the store's SQLite file (table
//! `audit`), written by a thread of its own so that recording never blocks,
//! and pruned past a retention.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use rusqlite::{Connection, params};

use crate::audit::{AuditError, AuditEvent, AuditKind, AuditLog, AuditQuery};
use crate::history::{SqliteError, open_side_connection};

/// Events waiting for the writer at most; past it they are counted and dropped.
const QUEUE: usize = 10_000;
/// Events written in one transaction at most.
const BATCH: usize = 500;
/// How often the writer prunes events past the retention.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The audit trail in the SQLite store, kept for a retention (default 90
/// days, pruned hourly). [`AuditLog::record`] queues the event for a
/// writer thread that inserts in batches; when the queue (10,000 events) is
/// full the event is dropped and counted ([`SqliteAudit::dropped`]) with a
/// warning, rather than the caller kept waiting.
#[derive(Clone)]
pub struct SqliteAudit {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Option<SyncSender<AuditEvent>>,
    thread: Option<std::thread::JoinHandle<()>>,
    reader: Mutex<Connection>,
    retention: Duration,
    dropped: AtomicU64,
}

impl std::fmt::Debug for SqliteAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteAudit")
            .field("retention", &self.inner.retention)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn prune(connection: &Connection, retention: Duration) -> rusqlite::Result<usize> {
    let now = i64::try_from(crate::time::now_ms()).unwrap_or(i64::MAX);
    connection.execute(
        "DELETE FROM audit WHERE at_ms < ?1",
        [now.saturating_sub(ms(retention))],
    )
}

fn write(connection: &mut Connection, events: &[AuditEvent]) -> rusqlite::Result<()> {
    let transaction = connection.transaction()?;
    {
        let mut insert = transaction.prepare_cached(
            "INSERT INTO audit (at_ms, kind, actor, address, user, client, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for event in events {
            insert.execute(params![
                i64::try_from(event.at_ms).unwrap_or(i64::MAX),
                event.kind.as_str(),
                event.actor,
                event.address.map(|address| address.to_string()),
                event.user,
                event.client,
                event.detail,
            ])?;
        }
    }
    transaction.commit()
}

fn writer(mut connection: Connection, queue: Receiver<AuditEvent>, retention: Duration) {
    let mut pruned = Instant::now();
    if let Err(error) = prune(&connection, retention) {
        tracing::warn!(%error, "audit log: pruning failed");
    }
    loop {
        let first = match queue.recv_timeout(PRUNE_EVERY) {
            Ok(event) => Some(event),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut batch: Vec<AuditEvent> = first.into_iter().collect();
        while batch.len() < BATCH {
            match queue.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        if !batch.is_empty()
            && let Err(error) = write(&mut connection, &batch)
        {
            tracing::warn!(%error, events = batch.len(), "audit log: events not written");
        }
        if pruned.elapsed() >= PRUNE_EVERY {
            pruned = Instant::now();
            if let Err(error) = prune(&connection, retention) {
                tracing::warn!(%error, "audit log: pruning failed");
            }
        }
    }
}

impl Drop for Inner {
    /// The queued events are written before the last handle goes (a CLI
    /// command's key change is in the file when it exits).
    fn drop(&mut self) {
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl SqliteAudit {
    /// The trail in the store at `path` (created if needed), kept 90 days.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteAudit, SqliteError> {
        SqliteAudit::open_with(path, Duration::from_secs(90 * 86_400))
    }

    /// The trail in the store at `path`, events older than `retention` pruned.
    pub fn open_with(
        path: impl AsRef<Path>,
        retention: Duration,
    ) -> Result<SqliteAudit, SqliteError> {
        let path = path.as_ref();
        let writes = open_side_connection(path)?;
        let reader = open_side_connection(path)?;
        let (queue, receiver) = std::sync::mpsc::sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("sacred-audit".into())
            .spawn(move || writer(writes, receiver, retention))
            .map_err(|source| SqliteError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok(SqliteAudit {
            inner: Arc::new(Inner {
                queue: Some(queue),
                thread: Some(thread),
                reader: Mutex::new(reader),
                retention,
                dropped: AtomicU64::new(0),
            }),
        })
    }

    /// Events dropped because the writer's queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Deletes the events older than the retention now (the writer does
    /// every hour); how many.
    pub async fn prune(&self) -> Result<usize, AuditError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let reader = inner.reader.lock().unwrap_or_else(|p| p.into_inner());
            prune(&reader, inner.retention)
        })
        .await
        .map_err(|error| AuditError(error.into()))?
        .map_err(|error| AuditError(error.into()))
    }
}

fn query(connection: &Connection, query: &AuditQuery) -> rusqlite::Result<Vec<AuditEvent>> {
    let mut statement = connection.prepare_cached(
        "SELECT at_ms, kind, actor, address, user, client, detail FROM audit
         WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR user = ?2)
           AND (?3 IS NULL OR at_ms < ?3)
         ORDER BY at_ms DESC, id DESC LIMIT ?4",
    )?;
    let rows = statement.query_map(
        params![
            query.kind.map(AuditKind::as_str),
            query.user,
            query
                .before_ms
                .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
            i64::try_from(query.limit).unwrap_or(i64::MAX),
        ],
        |row| {
            let kind: String = row.get(1)?;
            let address: Option<String> = row.get(3)?;
            Ok((
                row.get::<_, i64>(0)?,
                kind,
                row.get::<_, Option<String>>(2)?,
                address,
                row.get::<_, Option<String>>(4)?,
                row.get::<_, Option<String>>(5)?,
                row.get::<_, String>(6)?,
            ))
        },
    )?;
    let mut events = Vec::new();
    for row in rows {
        let (at_ms, kind, actor, address, user, client, detail) = row?;
        // A kind this release does not know (a later one wrote it): skipped.
        let Some(kind) = AuditKind::parse(&kind) else {
            continue;
        };
        let mut event = AuditEvent::new(kind, detail)
            .address(address.and_then(|a| a.parse().ok()))
            .user(user);
        event.at_ms = u64::try_from(at_ms).unwrap_or(0);
        event.actor = actor;
        event.client = client;
        events.push(event);
    }
    Ok(events)
}

impl AuditLog for SqliteAudit {
    fn record(&self, event: AuditEvent) {
        let Some(queue) = &self.inner.queue else {
            return;
        };
        match queue.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let dropped = self.inner.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    tracing::warn!(dropped, "audit log: writer behind, events dropped");
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                tracing::warn!("audit log: writer stopped, event dropped");
            }
        }
    }

    fn query<'a>(
        &'a self,
        wanted: &'a AuditQuery,
    ) -> BoxFuture<'a, Result<Vec<AuditEvent>, AuditError>> {
        let inner = Arc::clone(&self.inner);
        let wanted = wanted.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let reader = inner.reader.lock().unwrap_or_else(|p| p.into_inner());
                query(&reader, &wanted)
            })
            .await
            .map_err(|error| AuditError(error.into()))?
            .map_err(|error| AuditError(error.into()))
        })
    }
}
