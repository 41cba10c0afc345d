//! Where the binary's settings come from: defaults, then a TOML file, then
//! environment variables and flags (which win).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use sacred_server::{ApiKey, HubOptions};
use serde::Deserialize;

/// A Sacred real-time messaging hub.
#[derive(Debug, Parser)]
#[command(version, about)]
pub(crate) struct Cli {
    /// A TOML file with settings (see docs/operations.md).
    #[arg(long, global = true, env = "SACRED_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8000].
    #[arg(long, env = "SACRED_BIND")]
    bind: Option<SocketAddr>,
    /// Log format [default: text].
    #[arg(long, env = "SACRED_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// Accept connections without a token [default: true].
    #[arg(long, env = "SACRED_ALLOW_ANONYMOUS")]
    allow_anonymous: Option<bool>,
    /// An API key as USER:SHA256HEX (repeatable; env: comma-separated).
    #[arg(long = "api-key", env = "SACRED_API_KEYS", value_delimiter = ',', value_parser = parse_key)]
    api_keys: Vec<ApiKey>,
    /// Seconds to drain connections at shutdown [default: 15].
    #[arg(long, env = "SACRED_DRAIN_SECS")]
    drain_secs: Option<u64>,
    /// Seconds an HTTP request may take to send its headers [default: 10].
    #[arg(long, env = "SACRED_HEADER_TIMEOUT_SECS")]
    header_timeout_secs: Option<u64>,
    /// Serve the browser package in this directory under /client/vVERSION/ [default: off].
    #[arg(long, env = "SACRED_CLIENT_DIR")]
    client_dir: Option<PathBuf>,
    /// A Redis shard for several nodes: redis://host:port, or
    /// redis+sentinel://host:port[,host:port...]/master (repeatable; env:
    /// space-separated) [default: none, one node in memory].
    #[arg(long = "broker", env = "SACRED_BROKER", value_delimiter = ' ')]
    broker: Vec<String>,
    /// Durable history for one node: sqlite:PATH [default: none, in memory].
    #[arg(long, global = true, env = "SACRED_STORE")]
    store: Option<String>,
    /// What a publish ack survives with --store: always (fsync every commit)
    /// or periodic (fsync at least every store.sync_interval_ms) [default: periodic].
    #[arg(long, env = "SACRED_STORE_SYNC")]
    store_sync: Option<StoreSync>,
    /// With --store: a cap on the megabytes it uses; past it the least
    /// recently published streams are deleted first [default: none].
    #[arg(long, env = "SACRED_STORE_MAX_MB")]
    store_max_mb: Option<u64>,
    /// With --store: milliseconds between checks for revoked and expired API
    /// keys, whose live connections are then closed with 3500 [default: 5000].
    #[arg(long, env = "SACRED_STORE_KEYS_WATCH_MS")]
    store_keys_watch_ms: Option<u64>,
    /// With --store: days the audit trail is kept in the store [default: 90].
    #[arg(long, env = "SACRED_STORE_AUDIT_RETENTION_DAYS")]
    store_audit_retention_days: Option<u64>,
    /// With --store: write a backup into this directory every
    /// store.backup_interval_secs (daily) [default: no backups].
    #[arg(long, env = "SACRED_STORE_BACKUP_DIR")]
    store_backup_dir: Option<PathBuf>,
    /// A browser origin (scheme://host[:port]) whose pages may connect, or *
    /// for any (repeatable; env: comma-separated) [default: the request's own host].
    #[arg(
        long = "allowed-origin",
        env = "SACRED_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    allowed_origins: Vec<String>,
    /// A proxy address or network (10.0.0.0/8) whose X-Forwarded-For /
    /// Forwarded names the client (repeatable; env: comma-separated) [default: none].
    #[arg(long = "trusted-proxy", env = "SACRED_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    trusted_proxies: Vec<ipnet::IpNet>,
    /// New connections one client address may open per minute; past it HTTP
    /// 429; 0: no limit [default: 5].
    #[arg(long, env = "SACRED_CONNECTIONS_PER_MINUTE")]
    connections_per_minute: Option<u32>,
    /// Connections an address may open at once before the per-minute rate
    /// applies [default: 10].
    #[arg(long, env = "SACRED_CONNECTION_BURST")]
    connection_burst: Option<u32>,
    /// Commands one connection may send per minute; past it error 111, then
    /// close 3007; 0: no limit [default: 100].
    #[arg(long, env = "SACRED_MESSAGES_PER_MINUTE")]
    messages_per_minute: Option<u32>,
    /// Commands a connection may send at once before the per-minute rate
    /// applies [default: the per-minute number].
    #[arg(long, env = "SACRED_MESSAGE_BURST")]
    message_burst: Option<u32>,
    /// Connections one user may hold at once (on every node with a shared
    /// presence store); the next closes with 3504; 0: no limit [default: 5].
    #[arg(long, env = "SACRED_MAX_CONNECTIONS_PER_USER")]
    max_connections_per_user: Option<usize>,
    /// Connections this server holds at most; the next closes with 3504;
    /// 0: no limit [default: 10000].
    #[arg(long, env = "SACRED_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Wrong tokens in a row after which an address is locked out; 0: never
    /// [default: 10].
    #[arg(long, env = "SACRED_LOCKOUT_FAILURES")]
    lockout_failures: Option<u32>,
    /// Seconds the first lockout lasts; each further one doubles, up to
    /// --lockout-max-secs [default: 60].
    #[arg(long, env = "SACRED_LOCKOUT_SECS")]
    lockout_secs: Option<u64>,
    /// The longest lockout, in seconds [default: 3600].
    #[arg(long, env = "SACRED_LOCKOUT_MAX_SECS")]
    lockout_max_secs: Option<u64>,
    /// Accept JWTs signed with HS256 and the secret (at least 32 bytes) in
    /// this file; or give the secret itself in SACRED_JWT_HS256_SECRET [default: off].
    #[arg(long, env = "SACRED_JWT_HS256_SECRET_FILE")]
    jwt_hs256_secret_file: Option<PathBuf>,
    /// Accept JWTs signed with RS256 by this PEM public key's private key [default: off].
    #[arg(long, env = "SACRED_JWT_RS256_PUBLIC_KEY")]
    jwt_rs256_public_key: Option<PathBuf>,
    /// Accept JWTs signed with ES256 (P-256) by this PEM public key's private key [default: off].
    #[arg(long, env = "SACRED_JWT_ES256_PUBLIC_KEY")]
    jwt_es256_public_key: Option<PathBuf>,
    /// Accept JWTs signed (RS256 or ES256) with a key this JWKS URL serves,
    /// by kid [default: off].
    #[arg(long, env = "SACRED_JWT_JWKS_URL")]
    jwt_jwks_url: Option<String>,
    /// With JWTs: the required `iss` [default: any].
    #[arg(long, env = "SACRED_JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// With JWTs: the `aud` tokens must name [default: none; tokens with an aud are refused].
    #[arg(long, env = "SACRED_JWT_AUDIENCE")]
    jwt_audience: Option<String>,
    /// With JWTs: seconds `exp` and `nbf` may be off [default: 30].
    #[arg(long, env = "SACRED_JWT_LEEWAY_SECS")]
    jwt_leeway_secs: Option<u64>,
    /// Serve TLS (wss://, https://) with this PEM certificate chain; needs
    /// --tls-key; reloaded on SIGHUP or when the file changes [default: plain TCP].
    #[arg(long, env = "SACRED_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "SACRED_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Serve the signed admin API under /admin/api, with the secret (at
    /// least 32 bytes) in this file; or give the secret itself in
    /// SACRED_ADMIN_SECRET [default: off].
    #[arg(long, env = "SACRED_ADMIN_SECRET_FILE")]
    admin_secret_file: Option<PathBuf>,
    /// The admin credential's name, which callers send in x-sacred-admin
    /// and the audit trail records [default: admin].
    #[arg(long, env = "SACRED_ADMIN_NAME")]
    admin_name: Option<String>,
    /// Serve the admin dashboard at /admin, logging in with the password
    /// whose argon2id hash (a PHC string, from `sacred-server
    /// admin-password`) is in this file; or give the hash itself in
    /// SACRED_ADMIN_PASSWORD_HASH [default: off].
    #[arg(long, env = "SACRED_ADMIN_PASSWORD_FILE")]
    admin_password_file: Option<PathBuf>,
    /// Mark the dashboard's session cookie Secure (sent over HTTPS only):
    /// say true when a proxy in front ends TLS [default: true with
    /// --tls-cert, else false].
    #[arg(long, env = "SACRED_ADMIN_SECURE_COOKIE")]
    admin_secure_cookie: Option<bool>,
    /// Count and serve /metrics; false installs no recorder, so the hub's
    /// counters cost nothing and /metrics is not served [default: true].
    #[arg(long, env = "SACRED_METRICS")]
    metrics: Option<bool>,
    /// Serve /metrics (with /health and /ready) on this address only, not on
    /// --bind: for scrapers on an internal network [default: /metrics on --bind].
    #[arg(long, env = "SACRED_METRICS_BIND")]
    metrics_bind: Option<SocketAddr>,
    /// Export spans (connect, every command, publish -> broker -> deliver)
    /// to this OpenTelemetry OTLP/HTTP receiver, e.g. http://127.0.0.1:4318
    /// (/v1/traces is added to a URL without a path) [default: off].
    #[arg(long, env = "SACRED_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// The share of traces exported, 0 to 1, chosen by trace id (also of
    /// those a publisher's traceparent marks sampled) [default: 1].
    #[arg(long, env = "SACRED_OTLP_SAMPLE_RATIO")]
    otlp_sample_ratio: Option<f64>,
    /// Milliseconds within which a subscriber's queue must have drained to
    /// count as caught up in sacred_field_coherence [default: 1000].
    #[arg(long, env = "SACRED_COHERENCE_WINDOW_MS")]
    coherence_window_ms: Option<u64>,
    /// What to do instead of serving: store maintenance (see docs/operations.md).
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

/// Store maintenance, on the database `--store` names (while the server
/// runs, except `restore`).
#[derive(Debug, Clone, clap::Subcommand)]
pub(crate) enum Command {
    /// Read a password from standard input and print its argon2id hash,
    /// for --admin-password-file (the dashboard's login).
    AdminPassword,
    /// Write a consistent copy of the store to FILE (safe while the server runs).
    Backup {
        /// The backup file to write.
        file: PathBuf,
    },
    /// Replace the store with the backup FILE (stop the server first).
    Restore {
        /// The backup file to restore.
        file: PathBuf,
    },
    /// Delete every stored publication of CHANNEL (its position stays).
    DeleteHistory {
        /// The channel.
        channel: String,
    },
    /// Delete every stored publication USER published and their last-seen records.
    ForgetUser {
        /// The user id.
        user: String,
    },
    /// Print every stored publication USER published, one JSON object per line.
    ExportUser {
        /// The user id.
        user: String,
    },
    /// Print when USER was last seen, per client kind and runtime, as JSON lines.
    LastSeen {
        /// The user id.
        user: String,
    },
    /// Search CHANNEL's stored history for WORDS; JSON lines, best first.
    Search {
        /// The channel.
        channel: String,
        /// The words to find (all of them; `word*` for a prefix).
        words: String,
        /// At most this many.
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// Skip the first N matches (paging).
        #[arg(long, default_value_t = 0)]
        skip: usize,
    },
    /// Print the store's sizes as JSON (bytes: the file and its WAL together).
    Stats,
    /// Print the store's audit trail as JSON lines, newest first.
    Audit {
        /// Only events of this kind (auth_failure, key_created, admin_call, ...).
        #[arg(long)]
        kind: Option<String>,
        /// Only events about this user.
        #[arg(long)]
        user: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Manage the API keys in the store (safe while the server runs).
    Keys {
        /// What to do.
        #[command(subcommand)]
        action: KeysCommand,
    },
}

/// `sacred-server keys ...`: API keys in the store.
#[derive(Debug, Clone, clap::Subcommand)]
pub(crate) enum KeysCommand {
    /// Create a key; prints its record and its secret (shown once) as JSON.
    Create {
        /// The user the key authenticates as.
        #[arg(long)]
        user: String,
        /// What the key is for.
        #[arg(long)]
        name: String,
        /// The connections' rate tier [default: none].
        #[arg(long)]
        tier: Option<String>,
        /// Days until the key stops working [default: never].
        #[arg(long)]
        expires_in_days: Option<u64>,
    },
    /// List keys (never their secrets) as JSON lines, oldest first.
    List {
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke key ID: refused at once, live connections closed within
    /// store.keys_watch_ms.
    Revoke {
        /// The key's id.
        id: String,
    },
    /// Replace key ID by a new one; the old one works for the grace.
    Rotate {
        /// The key's id.
        id: String,
        /// Seconds the old key keeps working.
        #[arg(long, default_value_t = 86_400)]
        grace_secs: u64,
    },
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Everything the binary runs with.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Settings {
    pub(crate) bind: SocketAddr,
    pub(crate) log_format: LogFormat,
    /// A connection whose HTTP request headers are not complete in this
    /// time is closed (an upgraded WebSocket then has `connect_timeout_ms`).
    #[serde(rename = "header_timeout_secs", with = "secs")]
    pub(crate) header_timeout: Duration,
    /// The built browser package to serve under `/client/v{VERSION}/`.
    pub(crate) client_dir: Option<PathBuf>,
    pub(crate) broker: BrokerSettings,
    pub(crate) store: StoreSettings,
    pub(crate) admin: AdminSettings,
    pub(crate) jwt: JwtSettings,
    pub(crate) tls: TlsSettings,
    pub(crate) metrics: MetricsSettings,
    pub(crate) otlp: OtlpSettings,
    pub(crate) hub: HubOptions,
}

/// `[otlp]`: spans exported to an OpenTelemetry collector (off without an
/// endpoint).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct OtlpSettings {
    /// The OTLP/HTTP receiver's URL.
    pub(crate) endpoint: Option<String>,
    /// The share of traces started here that are exported [default: 1].
    pub(crate) sample_ratio: Option<f64>,
}

impl OtlpSettings {
    /// The exporter's settings, checked, if it is on.
    pub(crate) fn exporter(&self) -> Result<Option<sacred_server::otlp::Otlp>, String> {
        let Some(endpoint) = &self.endpoint else {
            if self.sample_ratio.is_some() {
                return Err("otlp sample_ratio needs an otlp endpoint".into());
            }
            return Ok(None);
        };
        let ratio = self.sample_ratio.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&ratio) {
            return Err(format!(
                "otlp sample_ratio {ratio}: give a number from 0 to 1"
            ));
        }
        let otlp = sacred_server::otlp::Otlp::new(endpoint.clone()).sample_ratio(ratio);
        otlp.traces_url().map_err(|err| err.to_string())?;
        Ok(Some(otlp))
    }
}

/// `[metrics]`: whether and where `/metrics` is served.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct MetricsSettings {
    /// Count and serve `/metrics` [default: true].
    pub(crate) enabled: bool,
    /// A separate address for `/metrics`, `/health` and `/ready` (then not
    /// on `bind`) [default: none, on `bind`].
    pub(crate) bind: Option<SocketAddr>,
}

impl Default for MetricsSettings {
    fn default() -> MetricsSettings {
        MetricsSettings {
            enabled: true,
            bind: None,
        }
    }
}

/// `[tls]`: TLS in the binary (off without a certificate).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct TlsSettings {
    /// The PEM certificate chain, the server's first.
    pub(crate) cert: Option<PathBuf>,
    /// Its PEM private key.
    pub(crate) key: Option<PathBuf>,
}

/// `[jwt]`: JWT authentication (off without a key).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct JwtSettings {
    pub(crate) hs256_secret_file: Option<PathBuf>,
    /// The HS256 secret, from `SACRED_JWT_HS256_SECRET` only.
    #[serde(skip)]
    pub(crate) hs256_secret: Option<Secret>,
    pub(crate) rs256_public_key: Option<PathBuf>,
    pub(crate) es256_public_key: Option<PathBuf>,
    pub(crate) jwks_url: Option<String>,
    pub(crate) issuer: Option<String>,
    pub(crate) audience: Option<String>,
    pub(crate) leeway_secs: Option<u64>,
}

/// Where JWT keys come from.
#[derive(Debug)]
pub(crate) enum JwtKeys {
    Hs256(Secret),
    Rs256(Vec<u8>),
    Es256(Vec<u8>),
    Jwks(String),
}

impl JwtSettings {
    /// The one key source configured, read (files) and checked; `None`: JWT off.
    pub(crate) fn keys(&self) -> Result<Option<JwtKeys>, String> {
        let read = |path: &PathBuf, what: &str| {
            std::fs::read(path)
                .map_err(|err| format!("cannot read the {what} {}: {err}", path.display()))
        };
        let mut sources = Vec::new();
        if let Some(secret) = &self.hs256_secret {
            sources.push(JwtKeys::Hs256(secret.clone()));
        }
        if let Some(path) = &self.hs256_secret_file {
            let mut bytes = read(path, "JWT secret file")?;
            while bytes.last().is_some_and(u8::is_ascii_whitespace) {
                bytes.pop();
            }
            sources.push(JwtKeys::Hs256(Secret(bytes)));
        }
        if let Some(path) = &self.rs256_public_key {
            sources.push(JwtKeys::Rs256(read(path, "RS256 public key")?));
        }
        if let Some(path) = &self.es256_public_key {
            sources.push(JwtKeys::Es256(read(path, "ES256 public key")?));
        }
        if let Some(url) = &self.jwks_url {
            sources.push(JwtKeys::Jwks(url.clone()));
        }
        if sources.len() > 1 {
            return Err("give one JWT key source: an HS256 secret, an RS256 or ES256 public key, or a JWKS URL".into());
        }
        let keys = sources.pop();
        if keys.is_none()
            && (self.issuer.is_some() || self.audience.is_some() || self.leeway_secs.is_some())
        {
            return Err("JWT issuer, audience and leeway need a JWT key (--jwt-hs256-secret-file, --jwt-rs256-public-key, --jwt-es256-public-key or --jwt-jwks-url)".into());
        }
        // Check keys now, so that a bad one stops the start (a JWKS is fetched at start).
        match &keys {
            Some(JwtKeys::Hs256(secret)) => {
                drop(sacred_server::Jwt::hs256(&secret.0).map_err(|err| err.to_string())?)
            }
            Some(JwtKeys::Rs256(pem)) => {
                drop(sacred_server::Jwt::rs256_pem(pem).map_err(|err| err.to_string())?)
            }
            Some(JwtKeys::Es256(pem)) => {
                drop(sacred_server::Jwt::es256_pem(pem).map_err(|err| err.to_string())?)
            }
            Some(JwtKeys::Jwks(url))
                if !(url.starts_with("https://") || url.starts_with("http://")) =>
            {
                return Err(format!("the JWKS URL must be http:// or https://: {url}"));
            }
            _ => {}
        }
        Ok(keys)
    }
}

/// `[admin]`: the signed admin API (off without a secret).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct AdminSettings {
    /// The credential's name [default: admin].
    pub(crate) name: Option<String>,
    /// A file holding the secret.
    pub(crate) secret_file: Option<PathBuf>,
    /// The secret, from `SACRED_ADMIN_SECRET` (never from the TOML file,
    /// which is often world-readable and committed).
    #[serde(skip)]
    pub(crate) secret: Option<Secret>,
    /// A file holding the dashboard password's argon2id PHC string.
    pub(crate) password_hash_file: Option<PathBuf>,
    /// The PHC string itself, from `SACRED_ADMIN_PASSWORD_HASH`.
    #[serde(skip)]
    pub(crate) password_hash: Option<String>,
    /// Whether the session cookie is `Secure` [default: with TLS].
    pub(crate) secure_cookie: Option<bool>,
}

/// A secret: never printed.
#[derive(Clone, Default)]
pub(crate) struct Secret(pub(crate) Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

impl AdminSettings {
    /// The admin credential (name and secret), if the admin API is on.
    pub(crate) fn credential(&self) -> Result<Option<(String, Secret)>, String> {
        let name = self.name.clone().unwrap_or_else(|| "admin".to_owned());
        let secret = match (&self.secret, &self.secret_file) {
            (Some(_), Some(_)) => {
                return Err(
                    "give the admin secret in SACRED_ADMIN_SECRET or in a file, not both".into(),
                );
            }
            (Some(secret), None) => secret.clone(),
            (None, Some(path)) => {
                let mut bytes = std::fs::read(path).map_err(|err| {
                    format!(
                        "cannot read the admin secret file {}: {err}",
                        path.display()
                    )
                })?;
                // A file written by `echo` ends with a newline that is not part of the secret.
                while bytes.last().is_some_and(u8::is_ascii_whitespace) {
                    bytes.pop();
                }
                Secret(bytes)
            }
            (None, None) => return Ok(None),
        };
        if secret.0.len() < sacred_server::admin::MIN_SECRET_BYTES {
            return Err(format!(
                "the admin secret must be at least {} bytes; it has {} (make one with: openssl rand -hex 32)",
                sacred_server::admin::MIN_SECRET_BYTES,
                secret.0.len()
            ));
        }
        Ok(Some((name, secret)))
    }
}

impl AdminSettings {
    /// The dashboard password's argon2id PHC string, if the dashboard is on.
    pub(crate) fn password_hash(&self) -> Result<Option<String>, String> {
        let hash = match (&self.password_hash, &self.password_hash_file) {
            (Some(_), Some(_)) => {
                return Err(
                    "give the admin password hash in SACRED_ADMIN_PASSWORD_HASH or in a file, not both"
                        .into(),
                );
            }
            (Some(hash), None) => hash.trim().to_owned(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|err| {
                    format!(
                        "cannot read the admin password file {}: {err}",
                        path.display()
                    )
                })?
                .trim()
                .to_owned(),
            (None, None) => return Ok(None),
        };
        if !hash.starts_with("$argon2") {
            return Err(
                "the admin password file must hold an argon2 PHC string ($argon2id$...): \
                 make one with `sacred-server admin-password`"
                    .into(),
            );
        }
        Ok(Some(hash))
    }
}

/// `[store]`: where one node keeps its streams (none: in memory).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct StoreSettings {
    /// `sqlite:PATH`.
    pub(crate) url: Option<String>,
    /// `always` or `periodic` [default: periodic].
    pub(crate) sync: Option<StoreSync>,
    /// With `periodic`: milliseconds between fsyncs [default: 1000].
    pub(crate) sync_interval_ms: Option<u64>,
    /// A cap on the megabytes the database uses [default: none].
    pub(crate) max_mb: Option<u64>,
    /// Seconds an empty stream's position and a user's last-seen record are
    /// kept after their last activity [default: 604800, 7 days].
    pub(crate) keep_idle_secs: Option<u64>,
    /// A directory for scheduled backups [default: none].
    pub(crate) backup_dir: Option<PathBuf>,
    /// Seconds between scheduled backups [default: 86400, daily].
    pub(crate) backup_interval_secs: Option<u64>,
    /// Scheduled backups kept, the oldest deleted [default: 7].
    pub(crate) backup_keep: Option<usize>,
    /// Milliseconds between checks for revoked or expired API keys
    /// [default: 5000].
    pub(crate) keys_watch_ms: Option<u64>,
    /// Days the audit trail is kept [default: 90].
    pub(crate) audit_retention_days: Option<u64>,
}

/// When the store fsyncs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StoreSync {
    /// Every commit, before the acks.
    Always,
    /// Every `sync_interval_ms`.
    Periodic,
}

impl StoreSettings {
    /// The database file `url` names, if any.
    pub(crate) fn sqlite_path(&self) -> Option<PathBuf> {
        self.url
            .as_deref()
            .and_then(|url| url.strip_prefix("sqlite:"))
            .map(PathBuf::from)
    }
}

/// `[broker]`: several nodes on Redis (none: one node, in memory).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct BrokerSettings {
    /// One `redis://` URL per shard.
    pub(crate) urls: Vec<String>,
    /// The prefix of every Redis key [default: sacred].
    pub(crate) prefix: Option<String>,
    /// Seconds a presence entry lives unless its node refreshes it [default: 60].
    pub(crate) presence_ttl_secs: Option<u64>,
    /// Seconds any Redis call may take [default: 2].
    pub(crate) timeout_secs: Option<u64>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            bind: SocketAddr::from(([127, 0, 0, 1], 8000)),
            log_format: LogFormat::Text,
            header_timeout: Duration::from_secs(10),
            client_dir: None,
            broker: BrokerSettings::default(),
            store: StoreSettings::default(),
            admin: AdminSettings::default(),
            jwt: JwtSettings::default(),
            tls: TlsSettings::default(),
            metrics: MetricsSettings::default(),
            otlp: OtlpSettings::default(),
            hub: HubOptions::default(),
        }
    }
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

impl Settings {
    pub(crate) fn load(cli: &Cli) -> Result<Settings, String> {
        let mut settings = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
                Settings::parse(&text)
                    .map_err(|err| format!("invalid config {}: {err}", path.display()))?
            }
            None => Settings::default(),
        };
        if let Some(bind) = cli.bind {
            settings.bind = bind;
        }
        if let Some(format) = cli.log_format {
            settings.log_format = format;
        }
        if let Some(allow) = cli.allow_anonymous {
            settings.hub.allow_anonymous = allow;
        }
        settings.hub.api_keys.extend(cli.api_keys.iter().cloned());
        if !cli.allowed_origins.is_empty() {
            settings
                .hub
                .allowed_origins
                .clone_from(&cli.allowed_origins);
        }
        if !cli.trusted_proxies.is_empty() {
            settings
                .hub
                .trusted_proxies
                .clone_from(&cli.trusted_proxies);
        }
        if let Some(n) = cli.connections_per_minute {
            settings.hub.connections_per_minute = n;
        }
        if let Some(n) = cli.connection_burst {
            settings.hub.connection_burst = n;
        }
        if let Some(n) = cli.messages_per_minute {
            settings.hub.messages_per_minute = n;
        }
        if let Some(n) = cli.message_burst {
            settings.hub.message_burst = n;
        }
        if let Some(n) = cli.max_connections_per_user {
            settings.hub.max_connections_per_user = n;
        }
        if let Some(n) = cli.max_connections {
            settings.hub.max_connections = n;
        }
        if let Some(n) = cli.lockout_failures {
            settings.hub.lockout_failures = n;
        }
        if let Some(secs) = cli.lockout_secs {
            settings.hub.lockout = Duration::from_secs(secs);
        }
        if let Some(secs) = cli.lockout_max_secs {
            settings.hub.lockout_max = Duration::from_secs(secs);
        }
        if let Some(enabled) = cli.metrics {
            settings.metrics.enabled = enabled;
        }
        if let Some(bind) = cli.metrics_bind {
            settings.metrics.bind = Some(bind);
        }
        if let Some(endpoint) = &cli.otlp_endpoint {
            settings.otlp.endpoint = Some(endpoint.clone());
        }
        if let Some(ratio) = cli.otlp_sample_ratio {
            settings.otlp.sample_ratio = Some(ratio);
        }
        if let Some(ms) = cli.coherence_window_ms {
            settings.hub.coherence_window = Duration::from_millis(ms);
        }
        if let Some(secs) = cli.drain_secs {
            settings.hub.drain = Duration::from_secs(secs);
        }
        if let Some(secs) = cli.header_timeout_secs {
            settings.header_timeout = Duration::from_secs(secs);
        }
        if let Some(dir) = &cli.client_dir {
            settings.client_dir = Some(dir.clone());
        }
        if let Some(path) = &cli.admin_secret_file {
            settings.admin.secret_file = Some(path.clone());
        }
        if let Some(name) = &cli.admin_name {
            settings.admin.name = Some(name.clone());
        }
        if let Some(path) = &cli.admin_password_file {
            settings.admin.password_hash_file = Some(path.clone());
        }
        if let Some(secure) = cli.admin_secure_cookie {
            settings.admin.secure_cookie = Some(secure);
        }
        if let Ok(hash) = std::env::var("SACRED_ADMIN_PASSWORD_HASH") {
            settings.admin.password_hash = Some(hash);
        }
        let jwt = &mut settings.jwt;
        for (flag, setting) in [
            (&cli.jwt_hs256_secret_file, &mut jwt.hs256_secret_file),
            (&cli.jwt_rs256_public_key, &mut jwt.rs256_public_key),
            (&cli.jwt_es256_public_key, &mut jwt.es256_public_key),
        ] {
            if let Some(path) = flag {
                *setting = Some(path.clone());
            }
        }
        for (flag, setting) in [
            (&cli.jwt_jwks_url, &mut jwt.jwks_url),
            (&cli.jwt_issuer, &mut jwt.issuer),
            (&cli.jwt_audience, &mut jwt.audience),
        ] {
            if let Some(text) = flag {
                *setting = Some(text.clone());
            }
        }
        if let Some(secs) = cli.jwt_leeway_secs {
            jwt.leeway_secs = Some(secs);
        }
        if let Some(secret) = std::env::var_os("SACRED_JWT_HS256_SECRET") {
            jwt.hs256_secret = Some(Secret(secret.into_encoded_bytes()));
        }
        settings.jwt.keys()?;
        if let Some(cert) = &cli.tls_cert {
            settings.tls.cert = Some(cert.clone());
        }
        if let Some(key) = &cli.tls_key {
            settings.tls.key = Some(key.clone());
        }
        if settings.tls.cert.is_some() != settings.tls.key.is_some() {
            return Err("give both --tls-cert and --tls-key, or neither".into());
        }
        if let Some(secret) = std::env::var_os("SACRED_ADMIN_SECRET") {
            settings.admin.secret = Some(Secret(secret.into_encoded_bytes()));
        }
        if !cli.broker.is_empty() {
            settings.broker.urls.clone_from(&cli.broker);
        }
        for url in &settings.broker.urls {
            let supported = [
                "redis://",
                "rediss://",
                "redis+unix://",
                "unix://",
                "redis+sentinel://",
            ];
            if !supported.iter().any(|scheme| url.starts_with(scheme)) {
                return Err(format!(
                    "broker {url:?}: expected a redis://, redis+unix:// or redis+sentinel:// URL"
                ));
            }
        }
        if let Some(store) = &cli.store {
            settings.store.url = Some(store.clone());
        }
        if let Some(sync) = cli.store_sync {
            settings.store.sync = Some(sync);
        }
        if let Some(mb) = cli.store_max_mb {
            settings.store.max_mb = Some(mb);
        }
        if let Some(ms) = cli.store_keys_watch_ms {
            settings.store.keys_watch_ms = Some(ms);
        }
        if let Some(days) = cli.store_audit_retention_days {
            settings.store.audit_retention_days = Some(days);
        }
        if let Some(dir) = &cli.store_backup_dir {
            settings.store.backup_dir = Some(dir.clone());
        }
        if let Some(url) = &settings.store.url {
            if url.starts_with("sqlite://") {
                return Err(format!(
                    "store {url:?}: write sqlite:PATH, e.g. sqlite:/var/lib/sacred/history.db \
                     (absolute) or sqlite:history.db (relative to the working directory)"
                ));
            }
            match settings.store.sqlite_path() {
                Some(path) if !path.as_os_str().is_empty() => {}
                _ => return Err(format!("store {url:?}: expected sqlite:PATH")),
            }
            if !settings.broker.urls.is_empty() {
                return Err(
                    "--store keeps one node's streams; with --broker, Redis keeps them: give one"
                        .into(),
                );
            }
        }
        if settings.store.audit_retention_days == Some(0) {
            return Err("store audit_retention_days must be greater than zero".into());
        }
        if settings.store.keys_watch_ms == Some(0) {
            return Err("store keys_watch_ms must be greater than zero".into());
        }
        if settings.store.sync_interval_ms == Some(0) {
            return Err("store sync_interval_ms must be greater than zero".into());
        }
        let store = &settings.store;
        let store_settings = store.sync.is_some()
            || store.sync_interval_ms.is_some()
            || store.max_mb.is_some()
            || store.keep_idle_secs.is_some()
            || store.backup_dir.is_some()
            || store.backup_interval_secs.is_some()
            || store.backup_keep.is_some()
            || store.keys_watch_ms.is_some()
            || store.audit_retention_days.is_some();
        if store.url.is_none() && store_settings && cli.command.is_none() {
            return Err(
                "store settings (--store-sync, --store-max-mb, --store-backup-dir, [store] keys) \
                 need a store: --store sqlite:PATH"
                    .into(),
            );
        }
        if store
            .backup_dir
            .as_ref()
            .is_some_and(|dir| dir.as_os_str().is_empty())
        {
            return Err("store backup_dir must name a directory".into());
        }
        if settings.store.keep_idle_secs == Some(0) {
            return Err("store keep_idle_secs must be greater than zero".into());
        }
        if settings.store.max_mb == Some(0) {
            return Err("store max_mb must be greater than zero".into());
        }
        if settings.store.backup_interval_secs == Some(0) || settings.store.backup_keep == Some(0) {
            return Err(
                "store backup_interval_secs and backup_keep must be greater than zero".into(),
            );
        }
        // Read now, so that a missing file or a short secret stops the start.
        settings.admin.credential()?;
        settings.admin.password_hash()?;
        settings.otlp.exporter()?;
        if !settings.metrics.enabled && settings.metrics.bind.is_some() {
            return Err(
                "metrics bind needs metrics enabled (drop --metrics false or --metrics-bind)"
                    .into(),
            );
        }
        if settings.header_timeout.is_zero() {
            return Err("header_timeout_secs must be greater than zero".into());
        }
        Ok(settings)
    }
}

impl Settings {
    /// Reads a TOML file's text. Every key must be known: a typo is an error,
    /// not a setting silently left at its default (some sections, such as
    /// `[hub.limits]`, are also read from the wire, where unknown fields are
    /// ignored, so the check is made here rather than by each type).
    fn parse(text: &str) -> Result<Settings, String> {
        let deserializer = toml::Deserializer::parse(text).map_err(|err| err.to_string())?;
        let mut unknown = Vec::new();
        let settings = serde_ignored::deserialize(deserializer, |path| {
            unknown.push(path.to_string());
        })
        .map_err(|err| err.to_string())?;
        if !unknown.is_empty() {
            return Err(format!("unknown setting {}", unknown.join(", ")));
        }
        Ok(settings)
    }
}

/// A network (`10.0.0.0/8`) or one address (`10.0.0.1`).
fn parse_net(text: &str) -> Result<ipnet::IpNet, String> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{text:?} is not an address or network (10.0.0.0/8)"))
}

fn parse_key(text: &str) -> Result<ApiKey, String> {
    let (user, sha256) = text.split_once(':').ok_or("expected USER:SHA256HEX")?;
    Ok(ApiKey::from_sha256(sha256, user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags() {
        let dir = std::env::temp_dir().join(format!("sacred-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("sacred.toml");
        std::fs::write(
            &file,
            r#"
bind = "127.0.0.1:9000"
log_format = "json"
[hub]
ping_interval_ms = 2000
[hub.limits]
max_frame_bytes = 20480
[hub.namespaces.chat]
history_size = 10
presence = false
[[hub.api_keys]]
sha256 = "a665a45920422f9d417e4867efdc4fb8a04a1f3fff1fa07e998e86f7f7a27ae3"
user = "ada"
"#,
        )
        .unwrap();
        let cli = Cli::parse_from([
            "sacred-server",
            "--config",
            file.to_str().unwrap(),
            "--bind",
            "127.0.0.1:9100",
        ]);
        let settings = Settings::load(&cli).unwrap();
        assert_eq!(
            settings.bind,
            "127.0.0.1:9100".parse().unwrap(),
            "flags win over the file"
        );
        assert_eq!(settings.log_format, LogFormat::Json);
        assert_eq!(
            settings.hub.ping_interval,
            std::time::Duration::from_secs(2)
        );
        assert_eq!(settings.hub.limits.max_frame_bytes, 20480);
        assert_eq!(
            settings.hub.limits.max_batch, 100,
            "unset limits keep their defaults"
        );
        assert_eq!(settings.hub.namespaces["chat"].history_size, 10);
        assert!(!settings.hub.namespaces["chat"].presence);
        assert_eq!(settings.hub.api_keys[0].user, "ada");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn broker_urls_keep_their_commas_and_unknown_schemes_are_refused() {
        let sentinel = "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/main";
        let cli = Cli::parse_from(["sacred-server", "--broker", sentinel]);
        let settings = Settings::load(&cli).unwrap();
        assert_eq!(settings.broker.urls, [sentinel], "one shard, not two");
        let cli = Cli::parse_from(["sacred-server", "--broker", "redis://a:1 redis://b:2"]);
        let settings = Settings::load(&cli).unwrap();
        assert_eq!(settings.broker.urls, ["redis://a:1", "redis://b:2"]);
        let cli = Cli::parse_from(["sacred-server", "--broker", "http://a:1"]);
        let err = Settings::load(&cli).unwrap_err();
        assert!(err.contains("redis+sentinel://"), "{err}");
    }

    #[test]
    fn store_settings_without_a_store_and_odd_store_urls_are_refused() {
        let load = |args: &[&str]| {
            let cli = Cli::parse_from(std::iter::once("sacred-server").chain(args.iter().copied()));
            Settings::load(&cli)
        };
        let err = load(&["--store-max-mb", "5"]).unwrap_err();
        assert!(err.contains("need a store"), "{err}");
        let err = load(&["--store-backup-dir", "/tmp/b"]).unwrap_err();
        assert!(err.contains("need a store"), "{err}");
        let err = load(&["--store", "sqlite://history.db"]).unwrap_err();
        assert!(err.contains("sqlite:PATH"), "{err}");
        let err = load(&["--store", "postgres://db"]).unwrap_err();
        assert!(err.contains("sqlite:PATH"), "{err}");
        let ok = load(&["--store", "sqlite:history.db", "--store-max-mb", "5"]).unwrap();
        assert_eq!(ok.store.max_mb, Some(5));
    }

    #[test]
    fn the_keys_watch_interval_needs_a_store_and_is_positive() {
        let load = |args: &[&str]| {
            let cli = Cli::parse_from(std::iter::once("sacred-server").chain(args.iter().copied()));
            Settings::load(&cli)
        };
        assert_eq!(
            load(&[]).unwrap().store.keys_watch_ms,
            None,
            "default: 5000 in main.rs"
        );
        let err = load(&["--store-keys-watch-ms", "100"]).unwrap_err();
        assert!(err.contains("need a store"), "{err}");
        let err = load(&["--store", "sqlite:h.db", "--store-keys-watch-ms", "0"]).unwrap_err();
        assert!(err.contains("keys_watch_ms"), "{err}");
        let ok = load(&["--store", "sqlite:h.db", "--store-keys-watch-ms", "100"]).unwrap();
        assert_eq!(ok.store.keys_watch_ms, Some(100));
        let err = load(&[
            "--store",
            "sqlite:h.db",
            "--store-audit-retention-days",
            "0",
        ])
        .unwrap_err();
        assert!(err.contains("audit_retention_days"), "{err}");
        let ok = load(&[
            "--store",
            "sqlite:h.db",
            "--store-audit-retention-days",
            "7",
        ])
        .unwrap();
        assert_eq!(ok.store.audit_retention_days, Some(7));
    }

    #[test]
    fn admission_flags_and_keys() {
        let cli = Cli::parse_from([
            "sacred-server",
            "--allowed-origin",
            "https://a.example,https://b.example",
            "--trusted-proxy",
            "10.0.0.0/8",
            "--trusted-proxy",
            "192.0.2.1",
            "--connections-per-minute",
            "5",
            "--connection-burst",
            "10",
            "--max-connections-per-user",
            "2",
            "--max-connections",
            "50000",
            "--lockout-failures",
            "3",
            "--lockout-secs",
            "30",
            "--lockout-max-secs",
            "900",
        ]);
        let settings = Settings::load(&cli).unwrap();
        assert_eq!(
            settings.hub.allowed_origins,
            ["https://a.example", "https://b.example"]
        );
        let proxies: Vec<String> = settings
            .hub
            .trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(proxies, ["10.0.0.0/8", "192.0.2.1/32"]);
        assert_eq!(
            (
                settings.hub.connections_per_minute,
                settings.hub.connection_burst
            ),
            (5, 10)
        );
        let hub = &settings.hub;
        assert_eq!(
            (hub.max_connections_per_user, hub.max_connections),
            (2, 50_000)
        );
        assert_eq!(
            (hub.lockout_failures, hub.lockout, hub.lockout_max),
            (3, Duration::from_secs(30), Duration::from_secs(900))
        );
        let file = Settings::parse(
            "[hub]\nallowed_origins = [\"*\"]\ntrusted_proxies = [\"10.0.0.0/8\"]\nconnections_per_minute = 5\n",
        )
        .unwrap();
        assert_eq!(file.hub.allowed_origins, ["*"]);
        assert_eq!(file.hub.connections_per_minute, 5);
        assert!(Cli::try_parse_from(["sacred-server", "--trusted-proxy", "nope"]).is_err());
    }

    #[test]
    fn the_admin_secret_is_read_checked_and_never_printed() {
        let dir = std::env::temp_dir().join(format!("sacred-admin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, "0123456789abcdef0123456789abcdef\n").unwrap();
        let cli = Cli::parse_from([
            "sacred-server",
            "--admin-secret-file",
            file.to_str().unwrap(),
        ]);
        let settings = Settings::load(&cli).unwrap();
        let (name, secret) = settings.admin.credential().unwrap().unwrap();
        assert_eq!(name, "admin");
        assert_eq!(
            secret.0, b"0123456789abcdef0123456789abcdef",
            "without the newline"
        );
        assert!(!format!("{settings:?}").contains("0123456789abcdef"));
        std::fs::write(&file, "too short").unwrap();
        let err = Settings::load(&cli).unwrap_err();
        assert!(err.contains("at least 32 bytes; it has 9"), "{err}");
        assert!(
            Settings::parse("[admin]\nsecret = \"x\"").is_err(),
            "never in TOML"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_admin_password_hash_is_read_from_a_file_or_toml_and_checked() {
        let dir = std::env::temp_dir().join(format!("sacred-admin-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("admin.hash");
        let phc = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
        std::fs::write(&file, format!("{phc}\n")).unwrap();
        let cli = Cli::parse_from([
            "sacred-server",
            "--admin-password-file",
            file.to_str().unwrap(),
        ]);
        let settings = Settings::load(&cli).unwrap();
        assert_eq!(
            settings.admin.password_hash().unwrap().as_deref(),
            Some(phc)
        );
        assert_eq!(
            settings.admin.credential().unwrap().map(|(n, _)| n),
            None,
            "no secret needed"
        );
        std::fs::write(&file, "hunter2").unwrap();
        let err = Settings::load(&cli).unwrap_err();
        assert!(err.contains("sacred-server admin-password"), "{err}");
        let toml = Settings::parse(&format!(
            "[admin]\npassword_hash_file = \"{}\"",
            file.display()
        ))
        .unwrap();
        assert_eq!(
            toml.admin.password_hash_file.as_deref(),
            Some(file.as_path())
        );
        assert!(
            Settings::parse("[admin]\npassword_hash = \"x\"").is_err(),
            "the hash itself only from the environment"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Settings::parse("bnd = \"x\"").unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
        let err = Settings::parse("[hub.limits]\nmax_frame_byte = 1").unwrap_err();
        assert_eq!(err, "unknown setting hub.limits.max_frame_byte");
    }
}
