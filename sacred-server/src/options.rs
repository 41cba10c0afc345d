//! `HubOptions` and `NamespaceOptions`: every tunable of a hub, with the
//! defaults the requirements ask for, readable from a TOML file.

use std::collections::BTreeMap;
use std::time::Duration;

use sacred_proto::Limits;
use serde::{Deserialize, Serialize};

/// Who may do something in a namespace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Every connection, anonymous ones included.
    #[default]
    Anyone,
    /// Connections with an authenticated user.
    Authenticated,
    /// No client; only host code (e.g. [`Hub::publish`](crate::Hub::publish)).
    Nobody,
}

/// Options of the channels of one namespace (the part of a channel name
/// before `:`; `""` is the default namespace).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct NamespaceOptions {
    /// Publications kept per channel for history and recovery; 0 turns history off.
    pub history_size: usize,
    /// How long a publication stays in history.
    #[serde(rename = "history_ttl_secs", with = "secs")]
    pub history_ttl: Duration,
    /// Whether `presence` may be asked.
    pub presence: bool,
    /// Whether publications are indexed for full-text search and `search`
    /// may be asked (needs a store that searches: `SqliteHistory`).
    pub search: bool,
    /// Whether subscribers may opt in to `join` and `leave` pushes.
    pub join_leave: bool,
    /// Who may subscribe.
    pub subscribe: Access,
    /// Who may publish from a client.
    pub publish: Access,
}

impl Default for NamespaceOptions {
    /// History of 100 publications for 7 days, presence and join/leave on,
    /// anyone may subscribe and publish.
    fn default() -> NamespaceOptions {
        NamespaceOptions {
            history_size: 100,
            history_ttl: Duration::from_secs(7 * 24 * 3600),
            presence: true,
            search: false,
            join_leave: true,
            subscribe: Access::Anyone,
            publish: Access::Anyone,
        }
    }
}

impl NamespaceOptions {
    /// Keeps `size` publications per channel for `ttl` each (0 turns history,
    /// and with it recovery, off).
    ///
    /// ```
    /// use std::time::Duration;
    /// use sacred_server::{Access, NamespaceOptions};
    ///
    /// let chat = NamespaceOptions::default()
    ///     .history(1000, Duration::from_secs(24 * 3600))
    ///     .presence(false)
    ///     .publish(Access::Authenticated);
    /// # let _ = chat;
    /// ```
    pub fn history(mut self, size: usize, ttl: Duration) -> Self {
        self.history_size = size;
        self.history_ttl = ttl;
        self
    }

    /// Whether `presence` may be asked.
    pub fn presence(mut self, on: bool) -> Self {
        self.presence = on;
        self
    }

    /// Whether publications are indexed for full-text search and clients
    /// may `search` (off by default; needs a store that searches, such as
    /// `SqliteHistory`, and history on).
    pub fn search(mut self, on: bool) -> Self {
        self.search = on;
        self
    }

    /// Whether subscribers may opt in to `join` and `leave` pushes.
    pub fn join_leave(mut self, on: bool) -> Self {
        self.join_leave = on;
        self
    }

    /// Who may subscribe (and read presence and history).
    pub fn subscribe(mut self, access: Access) -> Self {
        self.subscribe = access;
        self
    }

    /// Who may publish from a client.
    pub fn publish(mut self, access: Access) -> Self {
        self.publish = access;
        self
    }
}

/// An API key the built-in authenticator accepts, stored as the SHA-256 of the
/// key (hex), never the key itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ApiKey {
    /// Lower-case hex SHA-256 of the key.
    pub sha256: String,
    /// The user id connections with this key get.
    pub user: String,
}

impl ApiKey {
    /// A key given by its SHA-256 (hex) and the user it authenticates.
    pub fn from_sha256(sha256: impl Into<String>, user: impl Into<String>) -> ApiKey {
        ApiKey {
            sha256: sha256.into().to_ascii_lowercase(),
            user: user.into(),
        }
    }

    /// A key given in clear; only its hash is kept.
    pub fn from_plain(key: &str, user: impl Into<String>) -> ApiKey {
        ApiKey::from_sha256(crate::auth::sha256_hex(key), user)
    }
}

/// Every tunable of a hub. The defaults run a working hub with no
/// configuration: anonymous clients allowed, one default namespace with
/// history, presence and join/leave.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct HubOptions {
    /// Bounds on what clients send (frame size 10 KiB, batch, depth, lengths).
    pub limits: Limits,
    /// Milliseconds between pings.
    #[serde(rename = "ping_interval_ms", with = "millis")]
    pub ping_interval: Duration,
    /// Milliseconds between pings for clients whose runtime is `mobile`.
    #[serde(rename = "mobile_ping_interval_ms", with = "millis")]
    pub mobile_ping_interval: Duration,
    /// Milliseconds to wait for a pong before closing with "no pong".
    #[serde(rename = "pong_timeout_ms", with = "millis")]
    pub pong_timeout: Duration,
    /// Milliseconds a new socket has to send `connect` before closing as "stale".
    #[serde(rename = "connect_timeout_ms", with = "millis")]
    pub connect_timeout: Duration,
    /// Bytes a connection's outbound queue may hold before the client is
    /// disconnected as a slow consumer.
    pub outbound_queue_bytes: usize,
    /// Milliseconds a publish waits for a subscriber whose queue is more than
    /// half full to drain, before the subscriber counts as stuck (and is cut
    /// off once its queue is full): flow control for subscribers that are
    /// slower than a burst, not a buffer for those that stopped reading.
    #[serde(rename = "slow_consumer_patience_ms", with = "millis")]
    pub slow_consumer_patience: Duration,
    /// Milliseconds a connection's writer waits, once woken, before it
    /// writes, so that what arrives meanwhile goes in the same frame: fewer
    /// writes (and less CPU) at moderate rates, for this much added latency.
    /// 0, the default, writes at once.
    #[serde(rename = "write_delay_ms", with = "millis")]
    pub write_delay: Duration,
    /// Subscriptions one connection may hold.
    pub max_channels_per_connection: usize,
    /// Most publications one recovery replays; larger gaps are not recovered.
    pub max_recovered: usize,
    /// Milliseconds an RPC handler may take before the caller gets "timeout".
    #[serde(rename = "rpc_timeout_ms", with = "millis")]
    pub rpc_timeout: Duration,
    /// Seconds between the migrate advice and the final close at shutdown.
    #[serde(rename = "drain_secs", with = "secs")]
    pub drain: Duration,
    /// Whether connections without a token are accepted.
    pub allow_anonymous: bool,
    /// API keys the built-in authenticator accepts.
    pub api_keys: Vec<ApiKey>,
    /// Browser origins (`scheme://host[:port]`) whose pages may open a
    /// WebSocket; `"*"` for any. Empty (the default): only pages of the
    /// request's own host. Requests without `Origin` (not from a browser)
    /// always pass. Others get HTTP 403 before the upgrade.
    pub allowed_origins: Vec<String>,
    /// Proxies (addresses or networks, e.g. `10.0.0.0/8`) whose
    /// `X-Forwarded-For` / `Forwarded` headers name the client; the address
    /// of any other peer is the client's own. Default: none.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// New WebSocket connections one client address may open per minute,
    /// refused past it with HTTP 429 and `Retry-After` before the upgrade.
    /// Default 5; 0: no limit. Keyed on the address a trusted proxy names,
    /// and only where the host serves connect info (the binary does).
    pub connections_per_minute: u32,
    /// Connections an address may open at once before the per-minute rate
    /// applies (default 10; 0: the per-minute number).
    pub connection_burst: u32,
    /// Commands one connection may send per minute (a token bucket; `pong`
    /// is free); past it each command is answered with error 111, and after
    /// 10 such refusals in a row the connection is closed with 3007.
    /// Default 100; 0: no limit. [`HubOptions::tiers`] raise or lower it per
    /// identity.
    pub messages_per_minute: u32,
    /// Commands a connection may send at once before the per-minute rate
    /// applies (0: the per-minute number).
    pub message_burst: u32,
    /// Rate tiers by name: an identity of tier `name` (an API key's tier, a
    /// JWT's `tier` claim) gets its rate instead of `messages_per_minute`.
    /// The tier `admin` is built in with no limit (the admin bypass) unless
    /// configured here; an unknown tier gets the default rate.
    pub tiers: BTreeMap<String, Tier>,
    /// Connections one user may hold at once (on every node, when the
    /// presence store is shared); the next is closed with 3504. 0: no limit.
    pub max_connections_per_user: usize,
    /// Connections this server holds at most; the next is closed with 3504.
    /// 0: no limit.
    pub max_connections: usize,
    /// Failed authentications in a row (a wrong token at `connect` or
    /// `refresh`) after which the client's address is locked out; 0: never.
    pub lockout_failures: u32,
    /// How long the first lockout of an address lasts; each further one
    /// doubles, up to `lockout_max`. Meanwhile its upgrades get HTTP 429.
    #[serde(rename = "lockout_secs", with = "secs")]
    pub lockout: Duration,
    /// The longest lockout; an address quiet for this long starts afresh.
    #[serde(rename = "lockout_max_secs", with = "secs")]
    pub lockout_max: Duration,
    /// Milliseconds within which a subscriber's outbound queue must have
    /// drained for it to count as caught up in `sacred_field_coherence`
    /// (default 1000).
    #[serde(rename = "coherence_window_ms", with = "millis")]
    pub coherence_window: Duration,
    /// Options by namespace; channels of other namespaces get "unknown channel".
    pub namespaces: BTreeMap<String, NamespaceOptions>,
}

/// A rate tier: the command rate of connections whose identity names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Tier {
    /// Commands per minute; 0: no limit.
    pub messages_per_minute: u32,
    /// Commands at once before the rate applies (0: the per-minute number).
    pub message_burst: u32,
}

impl Tier {
    /// `per_minute` commands a minute, `burst` at once (0: `per_minute`).
    pub fn new(per_minute: u32, burst: u32) -> Tier {
        Tier {
            messages_per_minute: per_minute,
            message_burst: burst,
        }
    }

    /// No limit: what the built-in `admin` tier is.
    pub fn unlimited() -> Tier {
        Tier::default()
    }
}

impl HubOptions {
    /// The rate tier an identity of tier `name` gets (`None`: the default
    /// `messages_per_minute` / `message_burst`).
    pub(crate) fn tier(&self, name: Option<&str>) -> Tier {
        let default = Tier::new(self.messages_per_minute, self.message_burst);
        match name {
            None => default,
            Some(name) => match self.tiers.get(name) {
                Some(tier) => *tier,
                None if name == ADMIN_TIER => Tier::unlimited(),
                None => {
                    tracing::debug!(tier = name, "unknown tier: the default rate applies");
                    default
                }
            },
        }
    }
}

/// The built-in tier without a command rate.
pub const ADMIN_TIER: &str = "admin";

impl Default for HubOptions {
    fn default() -> HubOptions {
        HubOptions {
            limits: Limits::default(),
            ping_interval: Duration::from_secs(5),
            mobile_ping_interval: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            outbound_queue_bytes: 1 << 20,
            slow_consumer_patience: Duration::from_secs(1),
            write_delay: Duration::ZERO,
            max_channels_per_connection: 128,
            max_recovered: 1000,
            rpc_timeout: Duration::from_secs(10),
            drain: Duration::from_secs(15),
            allow_anonymous: true,
            api_keys: Vec::new(),
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            connections_per_minute: 5,
            connection_burst: 10,
            messages_per_minute: 100,
            message_burst: 0,
            tiers: BTreeMap::new(),
            max_connections_per_user: 5,
            max_connections: 10_000,
            lockout_failures: 10,
            lockout: Duration::from_secs(60),
            lockout_max: Duration::from_secs(3600),
            coherence_window: Duration::from_secs(1),
            namespaces: BTreeMap::from([(String::new(), NamespaceOptions::default())]),
        }
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis().try_into().unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}
