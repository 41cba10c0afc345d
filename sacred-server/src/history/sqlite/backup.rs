//! Backups with SQLite's online backup API, on a schedule with a retention
//! count; restoring one; and the lock that keeps a restore from replacing
//! the file under a running server.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use rusqlite_migration::Migrations;

use super::read::Shared;
use super::{SqliteError, schema};
use crate::history::HistoryError;

/// Backups written on a schedule ([`SqliteBuilder::backups`]): every
/// `every` (default: a day) into `dir` as `history-<unix ms>.db`, keeping the
/// newest `keep` (default: 7). The first is written at start when the newest
/// in `dir` is older than `every`. A backup that fails is logged and counted
/// ([`StoreStats::failed_backups`](crate::StoreStats::failed_backups)); the
/// next is tried at the next interval.
///
/// [`SqliteBuilder::backups`]: super::SqliteBuilder::backups
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backups {
    /// Where backups are written.
    pub dir: PathBuf,
    /// How often.
    pub every: Duration,
    /// How many are kept (the oldest beyond are deleted).
    pub keep: usize,
}

impl Backups {
    /// Daily backups into `dir`, the newest 7 kept.
    pub fn new(dir: impl Into<PathBuf>) -> Backups {
        Backups {
            dir: dir.into(),
            every: Duration::from_secs(24 * 3600),
            keep: 7,
        }
    }

    /// Every `every` instead of daily.
    pub fn every(mut self, every: Duration) -> Backups {
        self.every = every;
        self
    }

    /// Keep the newest `keep` (at least 1).
    pub fn keep(mut self, keep: usize) -> Backups {
        self.keep = keep.max(1);
        self
    }
}

/// The backup thread; stopped (and joined) when dropped.
pub(super) struct Schedule {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Schedule {
    pub(super) fn start(backups: Backups, shared: Arc<Shared>) -> Result<Schedule, SqliteError> {
        let dir = backups.dir.clone();
        let io = |source| SqliteError::Io {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&backups.dir).map_err(io)?;
        let every = backups.every.max(Duration::from_secs(1));
        // Due at once when the newest backup is older than the interval.
        let newest = kept(&backups.dir).map_err(io)?.last().map(|(ms, _)| *ms);
        let age = newest.map_or(Duration::MAX, |ms| {
            Duration::from_millis(crate::time::now_ms().saturating_sub(ms))
        });
        let first = every.saturating_sub(age);
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sacred-sqlite-backup".to_owned())
            .spawn(move || {
                let mut next = Instant::now() + first;
                loop {
                    match stopped.recv_timeout(next.saturating_duration_since(Instant::now())) {
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                    next = Instant::now() + every;
                    let name = format!("history-{}.db", crate::time::now_ms());
                    if shared.backup_counted(&backups.dir.join(name)).is_ok() {
                        prune_backups(&backups);
                    }
                }
            })
            .map_err(io)?;
        Ok(Schedule {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Schedule {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The scheduled backups in `dir`, oldest first, with their time.
fn kept(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let time = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_prefix("history-")?.strip_suffix(".db"))
            .and_then(|ms| ms.parse::<u64>().ok());
        if let Some(time) = time {
            found.push((time, path));
        }
    }
    found.sort();
    Ok(found)
}

/// Deletes the scheduled backups beyond the newest `keep`.
fn prune_backups(backups: &Backups) {
    let found = match kept(&backups.dir) {
        Ok(found) => found,
        Err(err) => {
            tracing::warn!(%err, dir = %backups.dir.display(), "cannot list history backups");
            return;
        }
    };
    let excess = found.len().saturating_sub(backups.keep.max(1));
    for (_, path) in found.into_iter().take(excess) {
        if let Err(err) = std::fs::remove_file(&path) {
            tracing::warn!(%err, path = %path.display(), "cannot delete an old history backup");
        }
    }
}

impl Shared {
    /// [`backup`], logged and counted.
    pub(super) fn backup_counted(&self, destination: &Path) -> Result<Duration, HistoryError> {
        let started = Instant::now();
        match backup(&self.path, destination) {
            Ok(()) => {
                let took = started.elapsed();
                self.backups.fetch_add(1, Ordering::Relaxed);
                *self.last_backup.lock().unwrap_or_else(|p| p.into_inner()) = Some(took);
                tracing::info!(path = %destination.display(), ?took, "history backed up");
                Ok(took)
            }
            Err(err) => {
                self.failed_backups.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    err = %crate::hub::ErrorChain(&err),
                    path = %destination.display(),
                    "history backup failed"
                );
                Err(HistoryError::store(err))
            }
        }
    }
}

/// Copies the database at `source` to `destination` with the backup API in
/// one step (one read transaction: consistent, and in WAL mode it does not
/// hold up the writer), through a temporary file renamed into place.
fn backup(source: &Path, destination: &Path) -> Result<(), SqliteError> {
    let open_failed = |path: &Path| {
        let path = path.to_owned();
        move |source| SqliteError::Open { path, source }
    };
    let mut partial = destination.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let _ = std::fs::remove_file(&partial);
    let from = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(open_failed(source))?;
    from.busy_timeout(Duration::from_secs(5))
        .map_err(open_failed(source))?;
    let copied = (|| {
        let mut to = Connection::open(&partial)?;
        {
            let backup = rusqlite::backup::Backup::new(&from, &mut to)?;
            // Every page in one step: one read transaction, so a writer
            // going on meanwhile cannot make the copy start over.
            while backup.step(-1)? != rusqlite::backup::StepResult::Done {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // A backup is one self-contained file, whatever the source's mode.
        to.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))?;
        Ok(())
    })();
    if let Err(source) = copied {
        let _ = std::fs::remove_file(&partial);
        return Err(SqliteError::Open {
            path: destination.to_owned(),
            source,
        });
    }
    let io = |source| SqliteError::Io {
        path: destination.to_owned(),
        source,
    };
    File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&partial, destination).map_err(io)?;
    if let Some(dir) = destination.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

/// The lock file beside the database.
fn lock_path(path: &Path) -> PathBuf {
    let mut lock = path.as_os_str().to_owned();
    lock.push(".lock");
    PathBuf::from(lock)
}

/// A shared lock on `PATH.lock`, held while a store has the database open
/// (several may: a server and a `sacred-server` subcommand).
pub(super) fn lock_shared(path: &Path) -> Result<File, SqliteError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        return Err(SqliteError::NoDirectory(dir.to_owned()));
    }
    let lock = lock_path(path);
    let io = |source| SqliteError::Io {
        path: lock.clone(),
        source,
    };
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(io)?;
    file.lock_shared().map_err(io)?;
    Ok(file)
}

/// Replaces the database at `path` with `backup` (see
/// [`SqliteHistory::restore`](super::SqliteHistory::restore)).
pub(super) fn restore(backup: &Path, path: &Path) -> Result<(), SqliteError> {
    let lock = lock_path(path);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| SqliteError::Io { path, source }
    };
    let lock_file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(io(&lock))?;
    match lock_file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(SqliteError::InUse(path.to_owned())),
        Err(std::fs::TryLockError::Error(source)) => return Err(io(&lock)(source)),
    }
    // Checked before anything is replaced.
    {
        let checked = Connection::open_with_flags(backup, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|source| SqliteError::Open {
                path: backup.to_owned(),
                source,
            })?;
        let problem: String = checked
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .map_err(|source| SqliteError::Open {
                path: backup.to_owned(),
                source,
            })?;
        if problem != "ok" {
            return Err(SqliteError::Damaged {
                path: backup.to_owned(),
                problem,
            });
        }
    }
    let mut restoring = path.as_os_str().to_owned();
    restoring.push(".restoring");
    let restoring = PathBuf::from(restoring);
    let _ = std::fs::remove_file(&restoring);
    std::fs::copy(backup, &restoring).map_err(io(&restoring))?;
    // Made ready beside the database (schema, epochs) before anything is
    // replaced: a backup that cannot be upgraded leaves the database as it
    // was, and a crash before the rename leaves it too.
    if let Err(err) = prepare(&restoring) {
        let _ = std::fs::remove_file(&restoring);
        return Err(err);
    }
    File::open(&restoring)
        .and_then(|f| f.sync_all())
        .map_err(io(&restoring))?;
    // The old database's log and index must not be applied to the new file.
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        match std::fs::remove_file(PathBuf::from(&side)) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(io(Path::new(&side))(err)),
        }
    }
    std::fs::rename(&restoring, path).map_err(io(path))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
    }
    drop(lock_file);
    tracing::info!(backup = %backup.display(), path = %path.display(), "history restored");
    Ok(())
}

/// Upgrades the schema of the copy at `path` and gives its streams new
/// epochs that remember the old ones up to the backup's end (see
/// `SqliteHistory::restore`), and a new base for streams the backup lacks;
/// leaves it as one self-contained file (rollback journal, not WAL).
fn prepare(path: &Path) -> Result<(), SqliteError> {
    let open_failed = |source| SqliteError::Open {
        path: path.to_owned(),
        source,
    };
    let mut connection = Connection::open(path).map_err(open_failed)?;
    connection
        .query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))
        .map_err(open_failed)?;
    connection
        .pragma_update(None, "synchronous", "FULL")
        .map_err(open_failed)?;
    Migrations::from_slice(schema::MIGRATIONS)
        .to_latest(&mut connection)
        .map_err(|source| SqliteError::Schema {
            path: path.to_owned(),
            source,
        })?;
    let base = crate::id::random_id(8);
    let transaction = connection.transaction().map_err(open_failed)?;
    transaction
        .execute(
            "UPDATE streams SET restored_epoch = epoch, restored_top = top,
             epoch = ?1 || '.r' || id",
            [&base],
        )
        .map_err(open_failed)?;
    transaction
        .execute(
            "INSERT INTO meta (key, value) VALUES ('epoch', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [&base],
        )
        .map_err(open_failed)?;
    transaction.commit().map_err(open_failed)
}
