//! Sacred's hub for server authors: build it, mount its axum router in your
//! own app, and program against the [`Hub`] handle; or run the ready
//! `sacred-server` binary. It speaks the protocol of `sacred-proto`
//! (`docs/protocol.md`): connections, channels, presence, history with
//! recovery, direct messages, RPC, heartbeats, graceful shutdown.
//!
//! # Example
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use sacred_server::{Hub, NamespaceOptions};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let (realtime, hub) = Hub::builder()
//!     .namespace("chat", NamespaceOptions::default())
//!     .rpc("time", |_ctx, _data| async { Ok(sacred_proto::Value::from(42u64)) })
//!     .build()?;
//!
//! let app = Router::new()
//!     .route("/", get(|| async { "my app" }))
//!     .nest("/rt", realtime); // clients connect to ws://host/rt/ws
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! let server = tokio::spawn(async move { axum::serve(listener, app).await });
//! hub.publish("chat:lobby", "hello from the host".into()).await?;
//! # server.await??;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - `builder`: [`HubBuilder`], which checks settings and returns `(Router, Hub)`.
//! - `hub`: [`Hub`], the shared state (clients, channels) and host operations.
//! - `connection`: the task per socket: protocol, timers, commands.
//! - `outbound`: the per-connection queue bounded in bytes, and its writer.
//! - `router`: `/ws` (with subprotocol negotiation), `/health` (JSON),
//!   `/ready`, `/metrics`.
//! - `telemetry`, `prometheus`: what the hub counts (the `metrics` facade)
//!   and `/metrics` in Prometheus text; `health`: [`Health`].
//! - `trace`: the spans of connect, commands and the publish path, and the
//!   W3C `traceparent` a publication carries on; `otlp` (feature `otlp`):
//!   their export to an OpenTelemetry collector.
//! - `options`: [`HubOptions`], [`NamespaceOptions`], [`Access`], [`ApiKey`].
//! - `auth`: the [`Authenticator`] extension point, its [`ConnectContext`], [`StaticKeys`].
//! - [`admin`]: the admin API ([`AdminApi`]), how callers sign, and the
//!   dashboard at `/admin` that logs in with a password and calls it.
//! - `admission`, `lockout`: what is checked before an upgrade (origin, the
//!   client's address behind proxies, its connection rate, its lockout).
//! - `audit`: the audit trail ([`AuditLog`], [`MemoryAudit`]): auth failures,
//!   lockouts, key changes, admin calls, forced disconnects.
//! - `hooks`: host hooks ([`HubBuilder::on_connect`], [`HubBuilder::authorize_subscribe`], ...) and [`Refusal`].
//! - `history`: the [`HistoryStore`] extension point, [`MemoryHistory`], and
//!   `SqliteHistory` (feature `sqlite`).
//! - `rpc`: [`RpcContext`] and [`RpcError`] for RPC handlers.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `cli` | yes | the `sacred-server` binary (clap, TOML, hyper's HTTP/1.1 server, log formatting); embedders can turn it off |
//! | `sqlite` | yes | `SqliteHistory`: durable streams for one node in an SQLite file (SQLite compiled in), `--store`; `SqliteKeys`: API keys with a lifecycle in the same file; `SqliteAudit`: the audit trail there |
//! | `prometheus` | yes | `/metrics` in Prometheus text: [`install_prometheus`], [`HubBuilder::prometheus`] |
//! | `redis` | no | `RedisBroker` and `RedisPresence`: several nodes on Redis, `--broker` |
//!
//! # Decisions
//!
//! - Each channel has its own lock. Publishing (history append and fan-out) and
//!   subscribing (history read, registration, reply) take it, so recovery is
//!   race-free and publications reach each subscriber in offset order; there is
//!   no global lock on the publish path.
//! - A publication is stored once and encoded once per codec, and the same bytes
//!   are queued to every subscriber. Each connection's queue is bounded in
//!   bytes; overflow closes the connection with 3002 (slow consumer).
//! - Commands of one connection execute in order, one at a time; host hooks and
//!   RPC handlers run inside that order, bounded by `rpc_timeout`, and a panic in
//!   host code refuses the command (error 100) instead of ending the connection.
//! - Set `TCP_NODELAY` on the listener's sockets (the binary does), and serve
//!   with `into_make_service_with_connect_info::<SocketAddr>()` so that
//!   authenticators see the peer's address.

pub mod admin;
mod admission;
mod audit;
#[cfg(feature = "sqlite")]
mod audit_sqlite;
mod auth;
mod broker;
mod builder;
mod client_files;
mod connection;
mod headers;
mod health;
mod history;
mod hooks;
mod hub;
mod id;
mod lockout;
mod node;
mod options;
#[cfg(feature = "otlp")]
pub mod otlp;
mod outbound;
mod presence;
#[cfg(feature = "prometheus")]
mod prometheus;
#[cfg(feature = "redis")]
mod redis_broker;
mod router;
mod rpc;
#[cfg(any(feature = "redis", feature = "sqlite"))]
mod stored;
mod telemetry;
mod time;
mod trace;

/// The README's examples, compiled (and run where they do not serve) as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

pub use admin::{AdminApi, AdminError};
pub use audit::{AuditError, AuditEvent, AuditKind, AuditLog, AuditQuery, MemoryAudit};
#[cfg(feature = "sqlite")]
pub use audit_sqlite::SqliteAudit;
#[cfg(feature = "jwt")]
pub use auth::jwt::{Jwt, JwtError, MIN_HS256_SECRET_BYTES};
#[cfg(feature = "sqlite")]
pub use auth::keys::{CreatedKey, KeyRecord, NewKey, SqliteKeys};
pub use auth::{AuthError, Authenticator, Chain, ConnectContext, Identity, StaticKeys};
pub use broker::{Broker, BrokerError, BrokerEvents, MemoryBroker};
pub use builder::{BuildError, HubBuilder};
pub use client_files::ClientFiles;
pub use health::{Backend, Health, LastError};
#[cfg(feature = "sqlite")]
pub use history::{Backups, Durability, SqliteBuilder, SqliteError, SqliteHistory};
pub use history::{
    HistoryError, HistoryStore, LastSeen, MemoryHistory, Page, Query, Retention, Search,
    SearchPage, Session, StoreStats,
};
pub use hooks::{
    ChannelUse, ClientContext, DisconnectContext, PublishContext, Refusal, SendContext,
    SubscribeContext,
};
pub use hub::{ConnectedClient, Hub, PublishError, SendError, Totals};
pub use options::{ADMIN_TIER, Access, ApiKey, HubOptions, NamespaceOptions, Tier};
pub use presence::{MemoryPresence, PresenceStore};
#[cfg(feature = "prometheus")]
pub use prometheus::{PrometheusError, install_prometheus};
#[cfg(feature = "redis")]
pub use redis_broker::{RedisBroker, RedisConfig, RedisPresence, RedisSetupError};
pub use rpc::{RpcContext, RpcError};

/// The protocol crate, for everything this crate's API does not re-export.
pub use sacred_proto as proto;
/// The protocol types this crate's API takes and returns, so that one
/// dependency is enough.
pub use sacred_proto::{
    ClientInfo, Codec, DisconnectCode, ErrorCode, Limits, Peer, Publication, PublishReply,
    StreamPosition, Value, ValueError, from_value, to_value,
};
