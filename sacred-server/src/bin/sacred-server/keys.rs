//! `sacred-server keys ...`: API keys in the store's SQLite file, and the
//! server side: the authenticator chain with them and their watch task.
//! Safe while the server runs (the file is shared through SQLite's WAL).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sacred_server::{
    AuditKind, AuditLog, AuditQuery, Authenticator, Chain, Hub, HubOptions, NewKey, SqliteAudit,
    SqliteKeys, StaticKeys,
};
use serde_json::json;

use crate::settings::{KeysCommand, StoreSettings};

/// How often the server checks for revoked and expired keys unless
/// `store.keys_watch_ms` says otherwise.
const WATCH_DEFAULT: Duration = Duration::from_secs(5);

/// The audit trail in the store at `path`, with the configured retention.
pub(crate) fn audit_log(
    path: &Path,
    settings: &StoreSettings,
) -> Result<SqliteAudit, Box<dyn std::error::Error>> {
    let days = settings.audit_retention_days.unwrap_or(90);
    Ok(SqliteAudit::open_with(
        path,
        Duration::from_secs(days.saturating_mul(86_400)),
    )?)
}

/// `sacred-server audit`: the store's audit trail as JSON lines, newest first.
pub(crate) async fn audit(
    path: &Path,
    settings: &StoreSettings,
    kind: Option<String>,
    user: Option<String>,
    limit: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut query = AuditQuery::new().limit(limit);
    if let Some(kind) = kind {
        let kind =
            AuditKind::parse(&kind).ok_or_else(|| format!("no audit event kind {kind:?}"))?;
        query = query.kind(kind);
    }
    if let Some(user) = user {
        query = query.user(user);
    }
    let events = audit_log(path, settings)?.query(&query).await?;
    let mut out = std::io::stdout().lock();
    for event in events {
        writeln!(out, "{}", serde_json::to_string(&event)?)?;
    }
    Ok(())
}

/// The keys in the configured store, if any.
pub(crate) fn open(
    settings: &StoreSettings,
) -> Result<Option<SqliteKeys>, Box<dyn std::error::Error>> {
    match settings.sqlite_path() {
        Some(path) => Ok(Some(SqliteKeys::open(path)?)),
        None => Ok(None),
    }
}

/// The authenticator chain: `first` (the JWT check, if any), the store's API
/// keys when there is a store,
/// then the keys from the configuration (with `allow_anonymous`).
pub(crate) fn chain(first: Chain, keys: Option<&SqliteKeys>, options: &HubOptions) -> Chain {
    let mut chain = first;
    if let Some(keys) = keys {
        chain = chain.or(keys.clone());
    }
    let configured: Arc<dyn Authenticator> = Arc::new(StaticKeys::new(
        options.api_keys.iter().cloned(),
        options.allow_anonymous,
    ));
    chain.or_shared(configured)
}

/// Starts closing the live connections of revoked and expired keys.
pub(crate) fn watch(keys: &SqliteKeys, hub: &Hub, settings: &StoreSettings) {
    let every = settings
        .keys_watch_ms
        .map_or(WATCH_DEFAULT, Duration::from_millis);
    keys.watch(hub, every);
    tracing::info!(?every, "API keys: SQLite store, watching for revocations");
}

/// Runs one `keys` command on the store at `path`; its output goes to stdout.
pub(crate) async fn run(
    action: KeysCommand,
    path: &Path,
    settings: &StoreSettings,
) -> Result<(), Box<dyn std::error::Error>> {
    let keys = SqliteKeys::open(path)?.by("cli");
    keys.audit_to(audit_log(path, settings)?);
    let mut out = std::io::stdout().lock();
    match action {
        KeysCommand::Create {
            user,
            name,
            tier,
            expires_in_days,
        } => {
            let mut key = NewKey::new(user, name);
            if let Some(tier) = tier {
                key = key.tier(tier);
            }
            if let Some(days) = expires_in_days {
                let now = u64::try_from(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)?
                        .as_millis(),
                )?;
                key = key.expires(now.saturating_add(days.saturating_mul(86_400_000)));
            }
            let created = keys.create(key).await?;
            let line = json!({ "key": created.record, "secret": created.secret });
            writeln!(out, "{line}")?;
            eprintln!("the secret is shown this once: only its hash is stored");
        }
        KeysCommand::List { user } => {
            for record in keys.list(user.as_deref()).await? {
                writeln!(out, "{}", serde_json::to_string(&record)?)?;
            }
        }
        KeysCommand::Revoke { id } => match keys.revoke(&id).await? {
            Some(record) => writeln!(out, "{}", serde_json::to_string(&record)?)?,
            None => return Err(format!("no key {id}").into()),
        },
        KeysCommand::Rotate { id, grace_secs } => {
            match keys.rotate(&id, Duration::from_secs(grace_secs)).await? {
                Some(created) => {
                    let line =
                        json!({ "key": created.record, "secret": created.secret, "replaces": id });
                    writeln!(out, "{line}")?;
                    eprintln!("the secret is shown this once: only its hash is stored");
                }
                None => return Err(format!("no active key {id}").into()),
            }
        }
    }
    Ok(())
}
