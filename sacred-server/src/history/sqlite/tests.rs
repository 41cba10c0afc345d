use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;
use rusqlite_migration::Migrations;
use sacred_proto::Publication;

use super::schema::MIGRATIONS;
use super::*;
use crate::history::conformance::{self, append, offsets, read};

fn open(dir: &tempfile::TempDir) -> SqliteHistory {
    SqliteHistory::open(dir.path().join("history.db"), Durability::Always).unwrap()
}

fn text(channel: &str, words: &str) -> Publication {
    Publication::new(channel, sacred_proto::Value::from(words), 0)
}

const SEARCHABLE: Retention = Retention {
    size: 100,
    ttl: Duration::from_secs(60),
    searchable: true,
};

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
    assert!(matches!(err, SqliteError::NoDirectory(_)), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
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

/// A file written by the first schema (as release 0.1 wrote it) is
/// upgraded in place: its streams keep offsets and epochs, and what the
/// new schema adds (search, last seen) works on it.
#[tokio::test]
async fn a_database_from_the_previous_schema_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    {
        let mut old = Connection::open(&path).unwrap();
        Migrations::from_slice(&MIGRATIONS[..1])
            .to_latest(&mut old)
            .unwrap();
        old.execute_batch(
            "INSERT INTO meta VALUES ('epoch', 'old0');
             INSERT INTO streams (id, channel, epoch, top, updated_ms) VALUES (1, 'chat', 'old0', 7, 0);",
        )
        .unwrap();
        for offset in 6..=7 {
            let push = crate::stored::encode(text("chat", &format!("hello {offset}"))).unwrap();
            old.execute(
                "INSERT INTO publications (stream, offset, created_ms, expires_ms, user, push)
                 VALUES (1, ?1, 0, ?2, NULL, ?3)",
                rusqlite::params![offset, i64::MAX, push],
            )
            .unwrap();
        }
    }
    let store = SqliteHistory::open(&path, Durability::Always).unwrap();
    let since = sacred_proto::StreamPosition::new(5, "old0");
    let page = read(&store, "chat", Query::new().since(since))
        .await
        .unwrap();
    assert_eq!(offsets(&page), [6, 7]);
    assert_eq!(page.position, sacred_proto::StreamPosition::new(7, "old0"));
    let next = store
        .append("chat", text("chat", "hello migrated"), SEARCHABLE)
        .await
        .unwrap();
    assert_eq!(
        (next.offset, next.epoch.as_deref()),
        (Some(8), Some("old0"))
    );
    let found = store.search("chat", Search::new("hello")).await.unwrap();
    assert_eq!(
        found.total, 1,
        "what was stored before search existed is not indexed"
    );
    let version: usize = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, MIGRATIONS.len());
}

/// Expired publications are deleted from the file while publishing goes
/// on; what has not expired, and every stream's position, stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_deletes_what_expired_while_publishing_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir));
    // Expired as soon as stored: a TTL of zero.
    let gone = Retention::new(10_000, Duration::ZERO).searchable(true);
    for n in 0..1_200 {
        store
            .append("short", text("short", &format!("gone {n}")), gone)
            .await
            .unwrap();
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
    let index: i64 = Connection::open(store.path())
        .unwrap()
        .query_row("SELECT COUNT(*) FROM publication_text", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(
        index, 0,
        "the search index lost the pruned publications too"
    );
}

/// A stream empty and idle past `keep_idle` is forgotten; the channel's
/// next stream starts at 1 under a new epoch.
#[tokio::test]
async fn idle_empty_streams_are_forgotten_under_a_new_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteHistory::builder(dir.path().join("history.db"))
        .keep_idle(Duration::ZERO)
        .open()
        .unwrap();
    let gone = Retention::new(10, Duration::ZERO).searchable(true);
    let first = store.append("idle", text("idle", "x"), gone).await.unwrap();
    append(&store, "busy", 1).await;
    store.prune().await.unwrap();
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.streams, 1, "only `busy` (not empty) stays");
    assert_eq!(
        indexed(&store),
        0,
        "nothing of `idle` is left in the search index"
    );
    let again = store.append("idle", text("idle", "y"), gone).await.unwrap();
    assert_eq!(again.offset, Some(1));
    assert_ne!(again.epoch, first.epoch);
}

/// Past the cap the least recently published streams go first, counted;
/// the channel comes back under a new epoch.
#[tokio::test]
async fn the_size_cap_drops_the_oldest_streams_first() {
    let dir = tempfile::tempdir().unwrap();
    let cap = 256 * 1024;
    let store = SqliteHistory::builder(dir.path().join("history.db"))
        .durability(Durability::Always)
        .max_bytes(cap)
        .open()
        .unwrap();
    let keep = Retention::new(10_000, Duration::from_secs(60)).searchable(true);
    let oldest = store
        .append("cap:0", text("cap:0", &"x".repeat(2_000)), keep)
        .await
        .unwrap();
    // About 1 MB, four times the cap, one stream after the other; the cap is
    // checked at least every 5 s while writing and at every prune.
    for channel in 1..100 {
        let name = format!("cap:{channel}");
        for _ in 0..5 {
            store
                .append(&name, text(&name, &"x".repeat(2_000)), keep)
                .await
                .unwrap();
        }
    }
    store.prune().await.unwrap();
    let stats = store.stats().await.unwrap();
    assert!(stats.capped_streams > 0, "{stats:?}");
    assert!(stats.streams < 100, "{stats:?}");
    let newest = read(&store, "cap:99", Query::new()).await.unwrap();
    assert_eq!(
        newest.publications.len(),
        5,
        "the newest stream stays whole"
    );
    let back = store
        .append("cap:0", text("cap:0", "again"), keep)
        .await
        .unwrap();
    assert_eq!(back.offset, Some(1), "the oldest was dropped");
    assert_ne!(back.epoch, oldest.epoch);
    let used: i64 = Connection::open(store.path())
        .unwrap()
        .query_row(
            "SELECT (page_count - freelist_count) * page_size FROM pragma_page_count, pragma_freelist_count, pragma_page_size",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!((used as u64) <= cap, "{used} bytes in use");
    let kept: i64 = Connection::open(store.path())
        .unwrap()
        .query_row("SELECT COUNT(*) FROM publications", [], |row| row.get(0))
        .unwrap();
    assert_eq!(
        indexed(&store),
        kept,
        "the index holds the kept publications only"
    );
}

/// Rows in the search index.
fn indexed(store: &SqliteHistory) -> i64 {
    Connection::open(store.path())
        .unwrap()
        .query_row("SELECT COUNT(*) FROM publication_text", [], |row| {
            row.get(0)
        })
        .unwrap()
}

/// A backup that cannot be made current (written by a later release) is
/// refused before anything is replaced.
#[tokio::test]
async fn a_backup_from_a_later_release_leaves_the_database_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    let backup = dir.path().join("backup.db");
    {
        let store = SqliteHistory::open(&path, Durability::Always).unwrap();
        append(&store, "kept", 1).await;
        store.backup(&backup).await.unwrap();
    }
    Connection::open(&backup)
        .unwrap()
        .pragma_update(None, "user_version", MIGRATIONS.len() + 1)
        .unwrap();
    let err = SqliteHistory::restore(&backup, &path).unwrap_err();
    assert!(matches!(err, SqliteError::Schema { .. }), "{err}");
    let store = SqliteHistory::open(&path, Durability::Always).unwrap();
    assert_eq!(
        offsets(&read(&store, "kept", Query::new()).await.unwrap()),
        [1]
    );
    assert!(!dir.path().join("history.db.restoring").exists());
}

#[tokio::test]
async fn search_is_ranked_paged_and_only_where_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for words in [
        "the deploy failed on node three",
        "lunch at noon",
        "deploy deploy deploy: rolled back",
        "Déployé? no: the DEPLOYMENT is done",
        "deployed at last",
    ] {
        store
            .append("ops", text("ops", words), SEARCHABLE)
            .await
            .unwrap();
    }
    store
        .append(
            "ops",
            text("ops", "deploy unindexed"),
            Retention::new(100, Duration::from_secs(60)),
        )
        .await
        .unwrap();
    store
        .append("other", text("other", "deploy elsewhere"), SEARCHABLE)
        .await
        .unwrap();
    let found = store.search("ops", Search::new("deploy")).await.unwrap();
    let offsets: Vec<_> = found
        .publications
        .iter()
        .map(|p| p.offset.unwrap())
        .collect();
    assert_eq!(found.total, 2, "whole words, one channel, indexed only");
    assert_eq!(
        offsets,
        [3, 1],
        "the publication with the word thrice ranks first"
    );
    let prefix = store.search("ops", Search::new("DEPLOY*")).await.unwrap();
    assert_eq!(prefix.total, 4, "a prefix, any case, without diacritics");
    let second = store
        .search("ops", Search::new("deploy*").limit(3).skip(3))
        .await
        .unwrap();
    assert_eq!(
        (second.total, second.publications.len()),
        (4, 1),
        "the second page"
    );
    let both = store
        .search("ops", Search::new("deploy node"))
        .await
        .unwrap();
    assert_eq!(both.total, 1, "every word");
    assert_eq!(
        store
            .search("ops", Search::new("\"* OR"))
            .await
            .unwrap()
            .total,
        0
    );
    assert_eq!(
        store
            .search("nowhere", Search::new("deploy"))
            .await
            .unwrap()
            .total,
        0
    );
    assert_eq!(store.forget_user("nobody").await.unwrap(), 0);
    assert_eq!(store.remove("ops").await.unwrap(), 6);
    assert_eq!(
        store
            .search("ops", Search::new("deploy*"))
            .await
            .unwrap()
            .total,
        0
    );
}

#[tokio::test]
async fn sessions_give_last_seen_per_kind_and_runtime_until_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let session = |kind: &str, connected_ms, seen_ms, messages| Session {
        user: "ada".to_owned(),
        kind: kind.to_owned(),
        runtime: "python".to_owned(),
        connected_ms,
        seen_ms,
        messages,
    };
    let now = crate::time::now_ms();
    store.record_session(session("agent", now - 30, now - 20, 4));
    store.record_session(session("agent", now - 10, now - 5, 3));
    store.record_session(session("app", now - 100, now - 90, 1));
    // Recorded by the writer in call order, before this append is answered.
    append(&store, "sync", 1).await;
    let seen = store.last_seen("ada").await.unwrap();
    let rows: Vec<_> = seen
        .iter()
        .map(|s| {
            (
                s.kind.as_str(),
                s.connected_ms,
                s.seen_ms,
                s.sessions,
                s.messages,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("agent", now - 10, now - 5, 2, 7),
            ("app", now - 100, now - 90, 1, 1)
        ]
    );
    assert!(store.last_seen("bob").await.unwrap().is_empty());
    store.forget_user("ada").await.unwrap();
    assert!(store.last_seen("ada").await.unwrap().is_empty());
}

/// A backup taken while publishing goes on restores to a store where a
/// position up to the backup's end still recovers, a later one does not,
/// and offsets continue; a running store cannot be restored over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_publishing_restores() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    let backup = dir.path().join("backup.db");
    let store = Arc::new(SqliteHistory::open(&path, Durability::default()).unwrap());
    let keep = Retention::new(10_000, Duration::from_secs(60));
    for n in 0..100 {
        store
            .append("live", text("live", &n.to_string()), keep)
            .await
            .unwrap();
    }
    let publishing = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for n in 100..2_000 {
                store
                    .append("live", text("live", &n.to_string()), keep)
                    .await
                    .unwrap();
            }
        })
    };
    store.backup(&backup).await.unwrap();
    publishing.await.unwrap();
    let before = read(&*store, "live", Query::new().limit(0))
        .await
        .unwrap()
        .position;
    assert_eq!(before.offset, 2_000);
    assert!(matches!(
        SqliteHistory::restore(&backup, &path),
        Err(SqliteError::InUse(_))
    ));
    assert_eq!(store.stats().await.unwrap().backups, 1);
    drop(Arc::into_inner(store).unwrap());

    SqliteHistory::restore(&backup, &path).unwrap();
    let store = SqliteHistory::open(&path, Durability::default()).unwrap();
    let restored = read(&store, "live", Query::new().limit(0))
        .await
        .unwrap()
        .position;
    assert!(
        (100..=2_000).contains(&restored.offset),
        "the backup holds what was committed when it began: {}",
        restored.offset
    );
    assert_ne!(restored.epoch, before.epoch, "a new epoch");
    let since = sacred_proto::StreamPosition::new(50, before.epoch.clone());
    let recovered = read(&store, "live", Query::new().since(since))
        .await
        .unwrap();
    assert_eq!(recovered.publications.len() as u64, restored.offset - 50);
    assert_eq!(recovered.position, restored, "recovered onto the new epoch");
    if restored.offset < 2_000 {
        let lost = sacred_proto::StreamPosition::new(restored.offset + 1, before.epoch.clone());
        assert!(matches!(
            read(&store, "live", Query::new().since(lost)).await,
            Err(HistoryError::Unrecoverable)
        ));
    }
    let next = store
        .append("live", text("live", "after"), keep)
        .await
        .unwrap();
    assert_eq!(next.offset, Some(restored.offset + 1));
    assert_eq!(next.epoch, Some(restored.epoch));
    let fresh = read(&store, "never-before", Query::new())
        .await
        .unwrap()
        .position;
    assert_ne!(
        fresh.epoch, before.epoch,
        "channels without a stream get a new base epoch"
    );
}

#[test]
fn a_damaged_backup_is_not_restored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    drop(SqliteHistory::open(&path, Durability::Always).unwrap());
    let backup = dir.path().join("backup.db");
    std::fs::write(
        &backup,
        b"not a database at all, but long enough to look like one?",
    )
    .unwrap();
    assert!(SqliteHistory::restore(&backup, &path).is_err());
    assert!(
        SqliteHistory::open(&path, Durability::Always).is_ok(),
        "left as it was"
    );
}

/// Scheduled backups: the first at once when the newest kept is older than
/// the interval, then only the newest `keep` remain; a failed one is counted.
#[tokio::test]
async fn scheduled_backups_keep_the_newest_and_failures_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    for old in 1..=5 {
        std::fs::write(backups.join(format!("history-{old}.db")), b"old").unwrap();
    }
    std::fs::write(backups.join("notes.txt"), b"not a backup").unwrap();
    let store = SqliteHistory::builder(dir.path().join("history.db"))
        .backups(Backups::new(&backups).keep(3))
        .open()
        .unwrap();
    append(&store, "a", 1).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let names = names(&backups);
        if names.len() == 4
            && !names.iter().any(|n| n.ends_with(".partial"))
            && names.iter().any(|n| n.len() > 14)
        {
            assert!(names.contains(&"history-4.db".to_owned()), "{names:?}");
            assert!(names.contains(&"history-5.db".to_owned()), "{names:?}");
            assert!(names.contains(&"notes.txt".to_owned()), "{names:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled backup: {names:?}"
        );
        tokio::task::yield_now().await;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(store.stats().await.unwrap().backups, 1);
    let nowhere = dir.path().join("missing").join("backup.db");
    assert!(store.backup(&nowhere).await.is_err());
    assert_eq!(store.stats().await.unwrap().failed_backups, 1);
}

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}
