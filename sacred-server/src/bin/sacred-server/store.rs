//! The SQLite store: opened from `[store]` for serving, and the maintenance
//! commands (`backup`, `restore`, `delete-history`, `forget-user`,
//! `export-user`, `last-seen`, `search`, `stats`), which work on the same
//! database file while the server runs (SQLite's WAL lets several processes
//! share it), except `restore`, which needs it stopped.

use std::io::Write;
use std::time::Duration;

use sacred_server::{Backups, Durability, HistoryStore, Search, SqliteHistory};
use serde_json::json;

use crate::settings::{Command, StoreSettings, StoreSync};

/// The store `settings` describe, opened; `None` when none is configured.
pub(crate) fn open(
    settings: &StoreSettings,
) -> Result<Option<SqliteHistory>, Box<dyn std::error::Error>> {
    let Some(path) = settings.sqlite_path() else {
        return Ok(None);
    };
    let durability = match settings.sync {
        Some(StoreSync::Always) => Durability::Always,
        _ => Durability::Periodic(Duration::from_millis(
            settings.sync_interval_ms.unwrap_or(1000),
        )),
    };
    let mut builder = SqliteHistory::builder(&path).durability(durability);
    if let Some(mb) = settings.max_mb {
        builder = builder.max_bytes(mb.saturating_mul(1024 * 1024));
    }
    if let Some(secs) = settings.keep_idle_secs {
        builder = builder.keep_idle(Duration::from_secs(secs));
    }
    if let Some(dir) = &settings.backup_dir {
        let mut backups = Backups::new(dir);
        if let Some(secs) = settings.backup_interval_secs {
            backups = backups.every(Duration::from_secs(secs));
        }
        if let Some(keep) = settings.backup_keep {
            backups = backups.keep(keep);
        }
        tracing::info!(dir = %dir.display(), every = ?backups.every, keep = backups.keep, "history backups");
        builder = builder.backups(backups);
    }
    let store = builder.open()?;
    tracing::info!(path = %path.display(), ?durability, max_mb = settings.max_mb, "history: SQLite");
    Ok(Some(store))
}

/// Runs one maintenance command; its output goes to stdout.
pub(crate) async fn run(
    command: Command,
    settings: &StoreSettings,
) -> Result<(), Box<dyn std::error::Error>> {
    let Some(path) = settings.sqlite_path() else {
        return Err(
            "store commands need the store: --store sqlite:PATH (or SACRED_STORE, or [store] url)"
                .into(),
        );
    };
    // Commands never prune, cap or back up the store: the server does.
    let store = || -> Result<SqliteHistory, Box<dyn std::error::Error>> {
        if !path.exists() {
            return Err(format!("no store at {}", path.display()).into());
        }
        Ok(SqliteHistory::builder(&path)
            .durability(Durability::Always)
            .upkeep(false)
            .open()?)
    };
    let mut out = std::io::stdout().lock();
    match command {
        // Answered by main before a store is needed.
        Command::AdminPassword => {
            return Err("admin-password is answered before the store opens".into());
        }
        Command::Restore { file } => {
            SqliteHistory::restore(&file, &path)?;
            eprintln!("restored {} from {}", path.display(), file.display());
        }
        Command::Backup { file } => {
            let took = store()?.backup(&file).await?;
            eprintln!(
                "backed up {} to {} in {took:?}",
                path.display(),
                file.display()
            );
        }
        Command::DeleteHistory { channel } => {
            let removed = store()?.remove(&channel).await?;
            writeln!(out, "{}", json!({ "channel": channel, "deleted": removed }))?;
        }
        Command::ForgetUser { user } => {
            let removed = store()?.forget_user(&user).await?;
            writeln!(out, "{}", json!({ "user": user, "deleted": removed }))?;
        }
        Command::ExportUser { user } => {
            for publication in store()?.export_user(&user).await? {
                writeln!(out, "{}", serde_json::to_string(&publication)?)?;
            }
        }
        Command::LastSeen { user } => {
            for seen in store()?.last_seen(&user).await? {
                let line = json!({
                    "kind": seen.kind,
                    "runtime": seen.runtime,
                    "connected_ms": seen.connected_ms,
                    "seen_ms": seen.seen_ms,
                    "sessions": seen.sessions,
                    "messages": seen.messages,
                });
                writeln!(out, "{line}")?;
            }
        }
        Command::Search {
            channel,
            words,
            limit,
            skip,
        } => {
            let search = Search::new(words).limit(limit).skip(skip);
            let found = store()?.search(&channel, search).await?;
            eprintln!("{} found, {} shown", found.total, found.publications.len());
            for publication in found.publications {
                writeln!(out, "{}", serde_json::to_string(&publication)?)?;
            }
        }
        Command::Keys { action } => crate::keys::run(action, &path, settings).await?,
        Command::Audit { kind, user, limit } => {
            crate::keys::audit(&path, settings, kind, user, limit).await?;
        }
        Command::Stats => {
            // Sizes only: the upkeep counters (pruned, capped, backups) are
            // the server process's own, in its log and Hub::store_stats.
            let stats = store()?.stats().await?;
            let line = json!({
                "bytes": stats.bytes,
                "publications": stats.publications,
                "streams": stats.streams,
            });
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}
