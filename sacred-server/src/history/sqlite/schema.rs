//! The database's schema, as migrations, and how every connection is set up.

use std::time::Duration;

use rusqlite::Connection;
use rusqlite_migration::M;

use super::Durability;

/// The schema, one step per release that changed it; never edit a step
/// that shipped, add one. The version is kept in SQLite's `user_version`.
pub(crate) const MIGRATIONS: &[M<'static>] = &[
    // 1: streams and their publications (0.1).
    M::up(
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
    ),
    // 2: full-text search, last seen, restores that keep positions, the
    // size cap's oldest-first order.
    M::up(
        "ALTER TABLE streams ADD COLUMN restored_epoch TEXT;
         ALTER TABLE streams ADD COLUMN restored_top INTEGER;
         CREATE INDEX streams_by_update ON streams(updated_ms);
         ALTER TABLE publications ADD COLUMN text_id INTEGER;
         CREATE INDEX publications_by_text ON publications(text_id) WHERE text_id IS NOT NULL;
         CREATE VIRTUAL TABLE publication_text USING fts5(
             body, stream, content='', contentless_delete=1,
             tokenize='unicode61 remove_diacritics 2'
         );
         CREATE TRIGGER publication_text_deleted AFTER DELETE ON publications
         WHEN old.text_id IS NOT NULL
         BEGIN
             DELETE FROM publication_text WHERE rowid = old.text_id;
         END;
         CREATE TABLE sessions (
             user TEXT NOT NULL,
             kind TEXT NOT NULL,
             runtime TEXT NOT NULL,
             connected_ms INTEGER NOT NULL,
             seen_ms INTEGER NOT NULL,
             sessions INTEGER NOT NULL,
             messages INTEGER NOT NULL,
             PRIMARY KEY (user, kind, runtime)
         ) WITHOUT ROWID;
         CREATE INDEX sessions_by_seen ON sessions(seen_ms);",
    ),
    // 3: API keys (only the SHA-256 of each secret) and the audit trail.
    M::up(
        "CREATE TABLE api_keys (
             id TEXT PRIMARY KEY,
             user TEXT NOT NULL,
             name TEXT NOT NULL,
             tier TEXT,
             hash BLOB NOT NULL,
             created_ms INTEGER NOT NULL,
             expires_ms INTEGER,
             revoked_ms INTEGER,
             last_used_ms INTEGER,
             replaced_by TEXT
         ) WITHOUT ROWID;
         CREATE INDEX api_keys_by_user ON api_keys(user);
         CREATE TABLE audit (
             id INTEGER PRIMARY KEY,
             at_ms INTEGER NOT NULL,
             kind TEXT NOT NULL,
             actor TEXT,
             address TEXT,
             user TEXT,
             client TEXT,
             detail TEXT NOT NULL
         );
         CREATE INDEX audit_by_time ON audit(at_ms);
         CREATE INDEX audit_by_user ON audit(user, at_ms) WHERE user IS NOT NULL;",
    ),
];

/// WAL, the durability's `synchronous` level, foreign keys (a stream's
/// publications go with it), and a wait instead of an error when another
/// connection holds a lock for a moment.
pub(crate) fn configure(connection: &Connection, durability: Durability) -> rusqlite::Result<()> {
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
    // The log is truncated back to this after a checkpoint that emptied it.
    connection.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    Ok(())
}

/// The text of a publication's payload that search indexes: its strings,
/// one per line (numbers, keys and bytes are not text a person searches).
pub(super) fn searchable_text(data: &sacred_proto::Value) -> String {
    fn walk(value: &sacred_proto::Value, out: &mut String) {
        use sacred_proto::Value;
        match value {
            Value::String(text) => {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(text);
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, out)),
            Value::Object(fields) => fields.values().for_each(|item| walk(item, out)),
            _ => {}
        }
    }
    let mut out = String::new();
    walk(data, &mut out);
    out
}

/// Words of a search used at most; the rest are ignored.
pub(super) const MAX_SEARCH_WORDS: usize = 16;

/// An FTS5 query matching every word of `text` in the body of one stream's
/// publications; `None` when `text` has no word. Words are separated by
/// whitespace and each is quoted (a `"` in it doubled), so nothing a user
/// types is FTS5 syntax: FTS5's own tokenizer splits a quoted word further
/// (`node-3` is the phrase `node 3`), as it split the indexed text. A word
/// ending in `*` matches as a prefix when at least 2 characters precede the
/// `*` (a 1-character prefix would scan most of the index); at most
/// [`MAX_SEARCH_WORDS`] words count.
pub(super) fn match_expression(stream: i64, text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split_whitespace()
        .filter_map(|word| {
            let bare = word.trim_end_matches('*');
            if !bare.chars().any(char::is_alphanumeric) {
                return None;
            }
            let quoted = format!("\"{}\"", bare.replace('"', "\"\""));
            let prefix = bare.len() < word.len() && bare.chars().count() >= 2;
            Some(if prefix { quoted + "*" } else { quoted })
        })
        .take(MAX_SEARCH_WORDS)
        .collect();
    if words.is_empty() {
        return None;
    }
    Some(format!(
        "stream : \"{}\" AND body : ({})",
        stream_token(stream),
        words.join(" AND ")
    ))
}

/// The token that names a stream in the search index.
pub(super) fn stream_token(stream: i64) -> String {
    format!("s{stream}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite_migration::Migrations;

    #[test]
    fn the_migrations_are_valid() {
        assert!(Migrations::from_slice(MIGRATIONS).validate().is_ok());
    }

    #[test]
    fn searchable_text_is_the_strings_of_the_payload() {
        let data: sacred_proto::Value = sacred_proto::to_value(&serde_json::json!({
            "text": "hello", "n": 4, "tags": ["red", {"deep": "blue"}]
        }))
        .unwrap();
        assert_eq!(searchable_text(&data), "red\nblue\nhello");
    }

    #[test]
    fn what_users_type_is_never_fts5_syntax() {
        assert_eq!(
            match_expression(7, "Hello wor* NEAR(\"x\") OR - a* node-3"),
            Some(
                "stream : \"s7\" AND body : (\"Hello\" AND \"wor\"* AND \"NEAR(\"\"x\"\")\" \
                 AND \"OR\" AND \"a\" AND \"node-3\")"
                    .to_owned()
            )
        );
        assert_eq!(match_expression(7, " *** ,. "), None);
        let many = "w ".repeat(100);
        let expression = match_expression(7, &many).unwrap();
        assert_eq!(expression.matches("\"w\"").count(), MAX_SEARCH_WORDS);
    }
}
