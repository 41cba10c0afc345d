//! `SqliteKeys`: API keys with a lifecycle (create, list, rotate, revoke,
//! expire) in the store's SQLite file, and the authenticator that checks them.
//!
//! A secret reads `sk_<id>_<64 hex digits>` (32 random bytes): the id finds
//! the row without a scan, the prefix is what secret scanners look for. Only
//! the SHA-256 of the secret is stored, and compared in constant time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use rand::RngCore;
use rusqlite::{Connection, OptionalExtension, params};
use sacred_proto::DisconnectCode;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{AuthError, Authenticator, ConnectContext, Identity};
use crate::audit::{AuditEvent, AuditKind};
use crate::history::{HistoryError, SqliteError, open_side_connection};
use crate::hub::{Hub, HubInner};
use crate::time::now_ms;

/// How often a key's `last_used_ms` is written at most (a write per
/// connect would be a write per connect under load).
const LAST_USED_EVERY_MS: u64 = 60_000;

/// A key to create: whose, what it is called, its rate tier and expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewKey {
    /// The user the key authenticates as.
    pub user: String,
    /// What the key is for, for people (`"ci"`, `"indexer"`).
    pub name: String,
    /// The connection's rate tier; `None`: the default rate.
    pub tier: Option<String>,
    /// When the key stops working, milliseconds since the Unix epoch; `None`: never.
    pub expires_ms: Option<u64>,
}

impl NewKey {
    /// A key for `user` called `name`, default tier, no expiry.
    pub fn new(user: impl Into<String>, name: impl Into<String>) -> NewKey {
        NewKey {
            user: user.into(),
            name: name.into(),
            tier: None,
            expires_ms: None,
        }
    }

    /// The connections' rate tier.
    #[must_use]
    pub fn tier(mut self, tier: impl Into<String>) -> NewKey {
        self.tier = Some(tier.into());
        self
    }

    /// The key stops working at `expires_ms` (milliseconds since the epoch).
    #[must_use]
    pub fn expires(mut self, expires_ms: u64) -> NewKey {
        self.expires_ms = Some(expires_ms);
        self
    }
}

/// A key as stored: everything but its secret, which is never stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct KeyRecord {
    /// The key's id (the `<id>` of `sk_<id>_...`), also the connection's credential.
    pub id: String,
    /// The user it authenticates as.
    pub user: String,
    /// What it is called.
    pub name: String,
    /// Its rate tier.
    pub tier: Option<String>,
    /// When it was created, milliseconds since the epoch.
    pub created_ms: u64,
    /// When it stops working (for a rotated key, the end of its grace).
    pub expires_ms: Option<u64>,
    /// When it was revoked.
    pub revoked_ms: Option<u64>,
    /// When it last authenticated a connection (to the minute).
    pub last_used_ms: Option<u64>,
    /// The key that replaced it in a rotation.
    pub replaced_by: Option<String>,
}

impl KeyRecord {
    /// Whether the key authenticates at `now_ms`.
    pub fn is_active(&self, now_ms: u64) -> bool {
        self.revoked_ms.is_none() && self.expires_ms.is_none_or(|end| now_ms < end)
    }
}

/// A key just created: its record and its secret, shown this once.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct CreatedKey {
    /// The stored record.
    pub record: KeyRecord,
    /// The secret to give the client (`sk_<id>_...`); not stored anywhere.
    pub secret: String,
}

impl std::fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKey")
            .field("record", &self.record)
            .field("secret", &"<hidden>")
            .finish()
    }
}

struct Inner {
    path: PathBuf,
    connection: Mutex<Connection>,
    /// When each key's `last_used_ms` was last written.
    used: Mutex<HashMap<String, u64>>,
    /// The hub that key changes are audited on, once [`SqliteKeys::watch`] or
    /// [`SqliteKeys::attach`] named it; before that, the log line only.
    hub: OnceLock<Weak<HubInner>>,
    /// Where key changes are recorded without a hub (the CLI).
    log: OnceLock<Arc<dyn crate::audit::AuditLog>>,
}

/// API keys in the store's SQLite file: an [`Authenticator`] and the key
/// manager behind `sacred-server keys` and the admin API. Cheap to clone.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use sacred_server::{NewKey, SqliteKeys};
///
/// let keys = SqliteKeys::open("/var/lib/sacred/store.db")?;
/// let created = keys.create(NewKey::new("indexer", "nightly")).await?;
/// println!("give the client {} (shown once)", created.secret);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteKeys {
    inner: Arc<Inner>,
    actor: Arc<str>,
}

impl std::fmt::Debug for SqliteKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteKeys")
            .field("path", &self.inner.path)
            .field("actor", &self.actor)
            .finish()
    }
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn to_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn from_i64(ms: Option<i64>) -> Option<u64> {
    ms.map(|ms| u64::try_from(ms).unwrap_or(0))
}

/// The id in a token of the key format, and whether it is one.
fn key_id(token: &str) -> Option<&str> {
    let (id, secret) = token.strip_prefix("sk_")?.split_once('_')?;
    let valid = !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_alphanumeric())
        && secret.len() == 64
        && secret.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then_some(id)
}

const COLUMNS: &str =
    "id, user, name, tier, created_ms, expires_ms, revoked_ms, last_used_ms, replaced_by";

fn record(row: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRecord> {
    Ok(KeyRecord {
        id: row.get(0)?,
        user: row.get(1)?,
        name: row.get(2)?,
        tier: row.get(3)?,
        created_ms: from_i64(Some(row.get(4)?)).unwrap_or(0),
        expires_ms: from_i64(row.get(5)?),
        revoked_ms: from_i64(row.get(6)?),
        last_used_ms: from_i64(row.get(7)?),
        replaced_by: row.get(8)?,
    })
}

fn get(connection: &Connection, id: &str) -> rusqlite::Result<Option<KeyRecord>> {
    connection
        .query_row(
            &format!("SELECT {COLUMNS} FROM api_keys WHERE id = ?1"),
            [id],
            record,
        )
        .optional()
}

fn insert(connection: &Connection, key: &NewKey, now: u64) -> rusqlite::Result<CreatedKey> {
    let id = crate::id::random_id(16);
    let mut random = [0u8; 32];
    rand::rng().fill_bytes(&mut random);
    let secret = format!("sk_{id}_{}", hex::encode(random));
    connection.execute(
        "INSERT INTO api_keys (id, user, name, tier, hash, created_ms, expires_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            id,
            key.user,
            key.name,
            key.tier,
            hash(&secret).as_slice(),
            to_i64(now),
            key.expires_ms.map(to_i64)
        ],
    )?;
    let record = KeyRecord {
        id,
        user: key.user.clone(),
        name: key.name.clone(),
        tier: key.tier.clone(),
        created_ms: now,
        expires_ms: key.expires_ms,
        revoked_ms: None,
        last_used_ms: None,
        replaced_by: None,
    };
    Ok(CreatedKey { record, secret })
}

impl SqliteKeys {
    /// Opens the keys in the SQLite store at `path` (the file `--store
    /// sqlite:PATH` names), creating the file and its tables if needed.
    /// Safe beside a server that has the file open.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteKeys, SqliteError> {
        let path = path.as_ref().to_owned();
        let connection = open_side_connection(&path)?;
        Ok(SqliteKeys {
            inner: Arc::new(Inner {
                path,
                connection: Mutex::new(connection),
                used: Mutex::new(HashMap::new()),
                hub: OnceLock::new(),
                log: OnceLock::new(),
            }),
            actor: Arc::from("host"),
        })
    }

    /// The same keys, with changes audited as made by `actor` (an admin
    /// credential's name, `"cli"`); the default is `"host"`.
    #[must_use]
    pub fn by(&self, actor: impl Into<String>) -> SqliteKeys {
        SqliteKeys {
            inner: Arc::clone(&self.inner),
            actor: Arc::from(actor.into()),
        }
    }

    /// Audits key changes on `hub` ([`Hub::audit`]); [`SqliteKeys::watch`] does this too.
    pub fn attach(&self, hub: &Hub) {
        let _ = self.inner.hub.set(Arc::downgrade(&hub.inner));
    }

    fn audit(&self, kind: AuditKind, record: &KeyRecord, detail: String) {
        let event = AuditEvent::new(kind, detail)
            .actor(&*self.actor)
            .user(Some(&record.user));
        match self.inner.hub.get().and_then(Weak::upgrade) {
            Some(inner) => Hub { inner }.audit(event),
            None => {
                event.log();
                if let Some(log) = self.inner.log.get() {
                    log.record(event);
                }
            }
        }
    }

    /// Records key changes in `log` when no hub is attached (a command-line
    /// tool beside the server: `sacred-server keys`).
    pub fn audit_to(&self, log: impl crate::audit::AuditLog) {
        let _ = self.inner.log.set(Arc::new(log));
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, HistoryError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let mut connection = inner
                .connection
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            job(&mut connection)
        })
        .await
        .map_err(HistoryError::store)?
        .map_err(HistoryError::store)
    }

    /// Creates a key; its secret is in the answer and nowhere else.
    pub async fn create(&self, key: NewKey) -> Result<CreatedKey, HistoryError> {
        let created = self
            .run(move |connection| insert(connection, &key, now_ms()))
            .await?;
        self.audit(
            AuditKind::KeyCreated,
            &created.record,
            format!("key {} ({})", created.record.id, created.record.name),
        );
        Ok(created)
    }

    /// The keys of `user`, or all, oldest first; revoked and expired ones too.
    pub async fn list(&self, user: Option<&str>) -> Result<Vec<KeyRecord>, HistoryError> {
        let user = user.map(str::to_owned);
        self.run(move |connection| {
            let mut statement = connection.prepare(&format!(
                "SELECT {COLUMNS} FROM api_keys WHERE ?1 IS NULL OR user = ?1
                 ORDER BY created_ms, id"
            ))?;
            let rows = statement.query_map([user], record)?;
            rows.collect()
        })
        .await
    }

    /// The key `id`, if there is one.
    pub async fn get(&self, id: &str) -> Result<Option<KeyRecord>, HistoryError> {
        let id = id.to_owned();
        self.run(move |connection| get(connection, &id)).await
    }

    /// Revokes `id` at once for new connects (live ones close within the
    /// [`SqliteKeys::watch`] interval); `None`: no such key. Revoking a
    /// revoked key keeps its first revocation time.
    pub async fn revoke(&self, id: &str) -> Result<Option<KeyRecord>, HistoryError> {
        let id = id.to_owned();
        let record = self
            .run(move |connection| {
                connection.execute(
                    "UPDATE api_keys SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
                    params![id, to_i64(now_ms())],
                )?;
                get(connection, &id)
            })
            .await?;
        if let Some(record) = &record {
            self.audit(
                AuditKind::KeyRevoked,
                record,
                format!("key {} ({})", record.id, record.name),
            );
        }
        Ok(record)
    }

    /// Replaces `id` with a new key for the same user, name and tier (and
    /// expiry); the old one keeps working for `grace`, then is refused.
    /// `None`: no such key, or it is no longer active.
    pub async fn rotate(
        &self,
        id: &str,
        grace: Duration,
    ) -> Result<Option<CreatedKey>, HistoryError> {
        let old_id = id.to_owned();
        let id = id.to_owned();
        let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        let created = self
            .run(move |connection| {
                let transaction = connection.transaction()?;
                let now = now_ms();
                let Some(old) = get(&transaction, &id)? else {
                    return Ok(None);
                };
                if !old.is_active(now) {
                    return Ok(None);
                }
                let mut key = NewKey::new(old.user.clone(), old.name.clone());
                key.tier = old.tier.clone();
                key.expires_ms = old.expires_ms;
                let created = insert(&transaction, &key, now)?;
                let end = now.saturating_add(grace_ms);
                let end = old.expires_ms.map_or(end, |expires| expires.min(end));
                transaction.execute(
                    "UPDATE api_keys SET expires_ms = ?2, replaced_by = ?3 WHERE id = ?1",
                    params![id, to_i64(end), created.record.id],
                )?;
                transaction.commit()?;
                Ok(Some(created))
            })
            .await?;
        if let Some(created) = &created {
            self.audit(
                AuditKind::KeyRotated,
                &created.record,
                format!(
                    "key {old_id} replaced by {} ({}), grace {} s",
                    created.record.id,
                    created.record.name,
                    grace.as_secs()
                ),
            );
        }
        Ok(created)
    }

    /// Starts a task that closes, every `every`, the live connections (3500)
    /// whose key was revoked or expired (its rotation grace over, too),
    /// whoever changed it: this process, the CLI, another server on the file.
    /// Also audits key changes on `hub`. Holds no handle that keeps the hub
    /// alive: the task ends when the hub is dropped.
    pub fn watch(&self, hub: &Hub, every: Duration) {
        self.attach(hub);
        let inner = Arc::clone(&self.inner);
        let weak = Arc::downgrade(&hub.inner);
        let every = every.max(Duration::from_millis(10));
        let overlap = u64::try_from(every.as_millis()).unwrap_or(u64::MAX);
        tokio::spawn(async move {
            let mut since: u64 = 0;
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(hub) = weak.upgrade().map(|inner| Hub { inner }) else {
                    break;
                };
                let now = now_ms();
                let from = since.saturating_sub(overlap.saturating_mul(2));
                let inner = Arc::clone(&inner);
                let dead = tokio::task::spawn_blocking(move || -> rusqlite::Result<Vec<String>> {
                    let connection = inner
                        .connection
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let mut statement = connection.prepare_cached(
                        "SELECT id FROM api_keys
                         WHERE revoked_ms >= ?1
                            OR (expires_ms >= ?1 AND expires_ms <= ?2)",
                    )?;
                    let rows = statement
                        .query_map(params![to_i64(from), to_i64(now)], |row| row.get(0))?;
                    rows.collect()
                })
                .await;
                match dead {
                    Ok(Ok(ids)) => {
                        for id in ids {
                            hub.disconnect_credential(&id, DisconnectCode::INVALID_TOKEN);
                        }
                        since = now;
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "API keys: could not read revocations");
                    }
                    Err(_) => break,
                }
            }
        });
    }

    /// The key a token names, checked: active and the secret's hash equal.
    fn check(&self, token: &str) -> Result<KeyRecord, AuthError> {
        let id = key_id(token).ok_or(AuthError::InvalidToken)?;
        let connection = self
            .inner
            .connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let row = connection
            .query_row(
                &format!("SELECT {COLUMNS}, hash FROM api_keys WHERE id = ?1"),
                [id],
                |row| Ok((record(row)?, row.get::<_, Vec<u8>>(9)?)),
            )
            .optional()
            .map_err(|error| {
                tracing::warn!(%error, "API keys: lookup failed");
                AuthError::InvalidToken
            })?;
        let Some((record, stored)) = row else {
            return Err(AuthError::InvalidToken);
        };
        let now = now_ms();
        let equal: bool = hash(token).as_slice().ct_eq(&stored).into();
        if !equal || !record.is_active(now) {
            return Err(AuthError::InvalidToken);
        }
        let mut used = self
            .inner
            .used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let last = used.get(&record.id).copied().or(record.last_used_ms);
        if last.is_none_or(|last| now.saturating_sub(last) >= LAST_USED_EVERY_MS) {
            used.insert(record.id.clone(), now);
            if let Err(error) = connection.execute(
                "UPDATE api_keys SET last_used_ms = ?2 WHERE id = ?1",
                params![record.id, to_i64(now)],
            ) {
                tracing::warn!(%error, "API keys: could not note a key's use");
            }
        }
        Ok(record)
    }
}

impl Authenticator for SqliteKeys {
    fn authenticate<'a>(
        &'a self,
        request: &'a ConnectContext,
    ) -> BoxFuture<'a, Result<Identity, AuthError>> {
        Box::pin(async move {
            let Some(token) = request.token.clone() else {
                return Err(AuthError::Unauthorized);
            };
            if key_id(&token).is_none() {
                return Err(AuthError::InvalidToken);
            }
            let keys = self.clone();
            // A refusal is audited by the hub (`auth_failure`), with the address.
            let record = tokio::task::spawn_blocking(move || keys.check(&token))
                .await
                .map_err(|_| AuthError::InvalidToken)??;
            let mut identity = Identity::user(record.user).credential(record.id);
            if let Some(tier) = record.tier {
                identity = identity.tier(tier);
            }
            if let Some(expires) = record.expires_ms {
                identity = identity.expires(expires);
            }
            Ok(identity)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::key_id;

    #[test]
    fn only_the_key_format_names_an_id() {
        let secret = "0".repeat(64);
        assert_eq!(key_id(&format!("sk_abc123_{secret}")), Some("abc123"));
        assert_eq!(key_id("sk_abc123_short"), None);
        assert_eq!(key_id(&format!("sk__{secret}")), None);
        assert_eq!(key_id("eyJhbGciOi.x.y"), None);
        assert_eq!(key_id(&format!("sk_a-b_{secret}")), None);
    }
}
