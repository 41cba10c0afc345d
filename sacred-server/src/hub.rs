//! `Hub`: the handle host code programs against, and what every connection
//! shares: the node (this process's clients and channel members), the broker
//! (publications across nodes, streams) and the presence store.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use sacred_proto::{
    DirectMessage, DisconnectCode, ErrorCode, HistoryReply, HistoryRequest, Migrate, Peer,
    Publication, PublishReply, ReplyError, SearchReply, SearchRequest, ServerMessage,
    SubscribeReply, SubscribeRequest, Value, channel_namespace,
};
use tokio::sync::Notify;
use tracing::Instrument;

use crate::audit::{AuditError, AuditEvent, AuditKind, AuditLog, AuditQuery};
use crate::auth::Authenticator;
use crate::broker::{Broker, BrokerError};
use crate::builder::HubBuilder;
use crate::health::{Health, Tracker};
use crate::history::{
    HistoryError, HistoryStore, LastSeen, Query, Retention, Search, SearchPage, Session, StoreStats,
};
use crate::hooks::{ChannelUse, Hooks, PublishContext, SendContext, SubscribeContext};
use crate::node::{Client, Node, Refused};
use crate::options::{Access, HubOptions, NamespaceOptions};
use crate::outbound::Outbound;
use crate::presence::PresenceStore;
use crate::rpc::RpcHandler;
use crate::telemetry::{Metrics, Refusal, Sample, StoreSample};
use crate::time::now_ms;
use crate::trace;

/// The hub handle: publish from host code, send to one client, read presence,
/// disconnect clients, shut down. Cheap to clone (no need to wrap it in `Arc`).
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<HubInner>,
}

pub(crate) struct HubInner {
    pub(crate) options: HubOptions,
    /// What is checked before an upgrade (origin, client address, rate).
    pub(crate) admission: crate::admission::Admission,
    pub(crate) auth: Arc<dyn Authenticator>,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) presence: Arc<dyn PresenceStore>,
    /// The in-process broker's history store (`None` with another broker,
    /// whose streams are its own).
    pub(crate) history: Option<Arc<dyn HistoryStore>>,
    pub(crate) rpc: HashMap<String, RpcHandler>,
    pub(crate) hooks: Hooks,
    /// Where audit events are kept.
    pub(crate) audit: Arc<dyn AuditLog>,
    /// This process's clients and channel members; the broker delivers to it.
    node: Arc<Node>,
    /// False once shutdown began: `/ready` fails and upgrades are refused.
    ready: AtomicBool,
    /// Woken whenever a client leaves, so shutdown can wait for the drain.
    client_left: Notify,
    /// Connections registered on this node (the `max_connections` count).
    registered: AtomicUsize,
    /// What the hot paths count.
    pub(crate) metrics: Metrics,
    /// Publications accepted here, readable (the `metrics` counters are
    /// write-only): for [`Hub::totals`].
    published: AtomicU64,
    /// Uptime and the backends' last errors, for `/health` and `/ready`.
    pub(crate) health: Tracker,
    /// The recorder `/metrics` renders, when the host gave one.
    #[cfg(feature = "prometheus")]
    pub(crate) prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

/// What the builder assembled a hub from, besides its options.
pub(crate) struct HubParts {
    pub(crate) auth: Arc<dyn Authenticator>,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) presence: Arc<dyn PresenceStore>,
    pub(crate) history: Option<Arc<dyn HistoryStore>>,
    pub(crate) rpc: HashMap<String, RpcHandler>,
    pub(crate) hooks: Hooks,
    pub(crate) audit: Arc<dyn AuditLog>,
    #[cfg(feature = "prometheus")]
    pub(crate) prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

/// A client connected to this node ([`Hub::clients`]).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ConnectedClient {
    /// Its id, user and what it said (or its credential vouched) it is.
    pub peer: Peer,
    /// When it connected, milliseconds since the Unix epoch.
    pub connected_ms: u64,
}

/// How many messages went in and out of this node since the hub started
/// ([`Hub::totals`]); the admin dashboard's messages per second are their
/// differences.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Totals {
    /// Publications accepted by this node (from its clients and host code).
    pub publications: u64,
    /// Publications queued to subscribers on this node (one per subscriber),
    /// whichever node they were published on.
    pub deliveries: u64,
}

/// Why host code could not publish.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PublishError(pub(crate) ReplyError);

impl PublishError {
    /// The error code: 102 (unknown namespace) or 100 (the broker or its
    /// history store failed; temporary).
    pub fn code(&self) -> ErrorCode {
        self.0.error_code()
    }

    /// The error as the protocol carries it.
    pub fn reply_error(&self) -> &ReplyError {
        &self.0
    }
}

/// Why host code could not send to a client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("client {0} is not connected")]
pub struct SendError(pub(crate) String);

impl Hub {
    /// Starts building a hub; see [`HubBuilder`].
    pub fn builder() -> HubBuilder {
        HubBuilder::default()
    }

    pub(crate) fn new(options: HubOptions, parts: HubParts) -> Hub {
        let HubParts {
            auth,
            broker,
            presence,
            history,
            rpc,
            hooks,
            audit,
            #[cfg(feature = "prometheus")]
            prometheus,
        } = parts;
        let metrics = Metrics::register();
        let node = Node::new(metrics.deliveries.clone());
        broker.attach(Arc::clone(&node) as _);
        let inner = HubInner {
            admission: crate::admission::Admission::new(&options),
            options,
            auth,
            broker,
            presence,
            history,
            rpc,
            hooks,
            audit,
            node,
            ready: AtomicBool::new(true),
            client_left: Notify::new(),
            registered: AtomicUsize::new(0),
            metrics,
            published: AtomicU64::new(0),
            health: Tracker::new(),
            #[cfg(feature = "prometheus")]
            prometheus,
        };
        let inner = Arc::new(inner);
        #[cfg(feature = "prometheus")]
        if let (Some(handle), Ok(runtime)) = (
            inner.prometheus.clone(),
            tokio::runtime::Handle::try_current(),
        ) {
            drop(runtime.spawn(crate::prometheus::upkeep(Arc::downgrade(&inner), handle)));
        }
        if let Some(every) = inner.presence.refresh_interval() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn(refresh_presence(Arc::downgrade(&inner), every))),
                Err(_) => tracing::warn!(
                    "the hub was built outside a tokio runtime: presence entries will not be refreshed"
                ),
            }
        }
        Hub { inner }
    }

    /// Publishes `data` to `channel` from host code (no publisher is named).
    /// Namespace access rules do not apply to the host; the channel name
    /// must still be valid (error 107 otherwise). With the `otlp` feature and
    /// an OpenTelemetry layer recording the current span, the publication
    /// carries that span's `traceparent`.
    pub async fn publish(&self, channel: &str, data: Value) -> Result<PublishReply, PublishError> {
        sacred_proto::validate_channel(channel, &self.inner.options.limits).map_err(|err| {
            PublishError(ReplyError::new(ErrorCode::BAD_REQUEST, err.to_string()))
        })?;
        let options = self.namespace(channel).map_err(PublishError)?.clone();
        let mut publication = Publication::new(channel, data, now_ms());
        publication.traceparent = trace::outgoing(&tracing::Span::current(), None);
        self.publish_as(channel, publication, &options)
            .await
            .map_err(PublishError)
    }

    /// Sends `data` to one client as a `message` push from the server.
    pub fn send(&self, client: &str, data: Value) -> Result<(), SendError> {
        self.deliver(None, client, data)
            .map_err(|_| SendError(client.to_owned()))
    }

    /// Everyone subscribed to `channel` now, on every node, in a namespace
    /// with presence (this node's subscribers where presence is off, or
    /// should the presence store fail).
    pub async fn presence(&self, channel: &str) -> Vec<Peer> {
        if self
            .namespace(channel)
            .is_ok_and(|options| options.presence)
        {
            match self.inner.presence.list(channel).await {
                Ok(peers) => return peers,
                Err(err) => {
                    tracing::warn!(channel, err = %ErrorChain(&err), "presence store failed")
                }
            }
        }
        self.inner.node.local_members(channel)
    }

    /// Disconnects a client with `code`; false if it is not connected here.
    /// Recorded in the audit trail as a forced disconnect by the host.
    pub fn disconnect(&self, client: &str, code: DisconnectCode) -> bool {
        self.disconnect_by("host", client, code)
    }

    /// [`Hub::disconnect`] on behalf of `actor` (an operator's name), as the
    /// audit trail records it.
    pub fn disconnect_by(&self, actor: &str, client: &str, code: DisconnectCode) -> bool {
        let Some(entry) = self.inner.node.clients.get(client) else {
            return false;
        };
        let user = entry.peer.user.clone();
        entry.outbound.close(code);
        drop(entry);
        self.audit(
            AuditEvent::new(
                AuditKind::ForcedDisconnect,
                format!("code {}", code.as_u16()),
            )
            .actor(actor)
            .user(user)
            .client(client),
        );
        true
    }

    /// The clients connected to this node, in no order.
    pub fn clients(&self) -> Vec<ConnectedClient> {
        self.inner
            .node
            .clients
            .iter()
            .map(|entry| ConnectedClient {
                peer: entry.peer.clone(),
                connected_ms: entry.connected_ms,
            })
            .collect()
    }

    /// The channels with subscribers on this node, each with how many, by name.
    pub fn channel_list(&self) -> Vec<(String, usize)> {
        let mut channels = self.inner.node.member_counts();
        channels.sort_unstable();
        channels
    }

    /// Disconnects every connection on this node that authenticated with
    /// `credential` ([`Identity::credential`](crate::Identity::credential)),
    /// as revoking it must; returns how many.
    pub fn disconnect_credential(&self, credential: &str, code: DisconnectCode) -> usize {
        self.disconnect_where(code, |client| {
            client.credential.as_deref() == Some(credential)
        })
    }

    /// Disconnects every connection of `user` on this node; returns how many.
    pub fn disconnect_user(&self, user: &str, code: DisconnectCode) -> usize {
        self.disconnect_where(code, |client| client.peer.user.as_deref() == Some(user))
    }

    fn disconnect_where(&self, code: DisconnectCode, which: impl Fn(&Client) -> bool) -> usize {
        let mut closed = 0;
        for entry in self.inner.node.clients.iter() {
            if which(entry.value()) {
                entry.outbound.close(code);
                closed += 1;
            }
        }
        closed
    }

    /// Records `event` in the audit trail ([`HubBuilder::audit_log`](crate::HubBuilder::audit_log))
    /// and writes it as a log line (target `sacred::audit`).
    pub fn audit(&self, event: AuditEvent) {
        event.log();
        self.inner.audit.record(event);
    }

    /// The audit events `query` asks for, newest first.
    pub async fn audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, AuditError> {
        self.inner.audit.query(query).await
    }

    /// How many times an address was locked out for failing to
    /// authenticate since the hub started (`lockout_failures`).
    pub fn lockouts(&self) -> u64 {
        self.inner.admission.lockout.locks()
    }

    /// Publications in and deliveries out on this node since it started.
    pub fn totals(&self) -> Totals {
        Totals {
            publications: self.inner.published.load(Ordering::Relaxed),
            deliveries: self.inner.node.delivered.load(Ordering::Relaxed),
        }
    }

    /// How many clients are connected.
    pub fn connections(&self) -> usize {
        self.inner.node.clients.len()
    }

    /// How many channels have subscribers on this node now. A channel
    /// without subscribers takes no memory in the hub.
    pub fn channels(&self) -> usize {
        self.inner.node.channel_count()
    }

    /// Deletes every stored publication of `channel` and returns how many
    /// went; the stream's position stays, so subscribers go on.
    pub async fn delete_history(&self, channel: &str) -> Result<u64, HistoryError> {
        self.history_store()?.remove(channel).await
    }

    /// Deletes every stored publication `user` published, in every channel,
    /// and what the store keeps about their sessions (the right to be
    /// forgotten); returns how many publications went. The offsets of the
    /// other publications do not change.
    pub async fn forget_user(&self, user: &str) -> Result<u64, HistoryError> {
        self.history_store()?.forget_user(user).await
    }

    /// Every stored publication `user` published, by channel then offset
    /// (data portability; [`Publication`] serializes as the protocol's JSON).
    pub async fn export_user(&self, user: &str) -> Result<Vec<Publication>, HistoryError> {
        self.history_store()?.export_user(user).await
    }

    /// Full-text search of `channel`'s stored history, best match first
    /// (needs a store that searches, such as `SqliteHistory`, and the
    /// namespace's [`search`](NamespaceOptions::search) on when publishing).
    pub async fn search(&self, channel: &str, search: Search) -> Result<SearchPage, HistoryError> {
        self.history_store()?.search(channel, search).await
    }

    /// When `user` was last seen, per client kind and runtime, and how many
    /// messages they sent (recorded as each connection ends).
    pub async fn last_seen(&self, user: &str) -> Result<Vec<LastSeen>, HistoryError> {
        self.history_store()?.last_seen(user).await
    }

    /// The history store's size and upkeep (bytes, rows, streams, pruning,
    /// backups).
    pub async fn store_stats(&self) -> Result<StoreStats, HistoryError> {
        self.history_store()?.stats().await
    }

    fn history_store(&self) -> Result<&Arc<dyn HistoryStore>, HistoryError> {
        self.inner.history.as_ref().ok_or(HistoryError::Unsupported(
            "this with a broker other than the in-process one",
        ))
    }

    /// Records a connection's session with the history store, if it keeps them.
    pub(crate) fn record_session(&self, peer: &Peer, connected_ms: u64, messages: u64) {
        if let Some(history) = &self.inner.history {
            history.record_session(Session {
                user: peer.user.clone().unwrap_or_default(),
                kind: peer.info.kind.clone(),
                runtime: peer.info.runtime.clone(),
                connected_ms,
                seen_ms: now_ms(),
                messages,
            });
        }
    }

    /// Whether the broker can serve now (always, for the in-process one);
    /// `/ready` answers 503 while it cannot.
    pub fn broker_available(&self) -> bool {
        self.inner.broker.is_available()
    }

    /// Whether the history store serves now, as far as the hub saw (true
    /// without one): `/ready` answers 503 while it does not.
    pub fn store_available(&self) -> bool {
        !self.inner.health.store.is_failing()
    }

    /// The hub's health, as `/health` serves it: uptime, load, and the
    /// state of the broker and the history store with their last errors.
    pub fn health(&self) -> Health {
        let tracker = &self.inner.health;
        // A broker knows whether it is connected; a store is judged by
        // what the hub last saw of it.
        let broker = tracker.broker.report(self.broker_available());
        let store =
            (self.inner.history.as_ref()).map(|_| tracker.store.report(self.store_available()));
        let status = if !self.is_ready() {
            "draining"
        } else if !broker.up || store.as_ref().is_some_and(|store| !store.up) {
            "degraded"
        } else {
            "ok"
        };
        Health {
            status,
            version: env!("CARGO_PKG_VERSION"),
            uptime_secs: tracker.started.elapsed().as_secs(),
            connections: self.connections(),
            channels: self.channels(),
            broker,
            store,
        }
    }

    /// Tells every client here to move to `url` (or to reconnect where it
    /// connected, with `None`) by `at_ms` (milliseconds since the Unix
    /// epoch): the `migrate` push of a blue-green move. Clients reconnect
    /// there at a random moment before then. Returns how many were told.
    pub fn migrate(&self, url: Option<String>, at_ms: u64) -> usize {
        let advice = ServerMessage::push(Migrate::new(url, at_ms));
        let mut told = 0;
        for client in self.inner.node.clients.iter() {
            client.outbound.send_message(&advice);
            told += 1;
        }
        told
    }

    /// A router with `/health`, `/ready` and `/metrics`, to serve on an
    /// internal address that scrapers and probes reach and clients do not
    /// (see [`HubBuilder::metrics_apart`]).
    pub fn metrics_router(&self) -> axum::Router {
        crate::router::internal(self.clone())
    }

    /// Sets the gauges that describe the whole node (connections by kind
    /// and runtime, channels, subscriptions, the field coherence, readiness,
    /// the broker and the store) from the hub's state now, in whatever
    /// `metrics` recorder the process installed. `/metrics` calls it at
    /// each scrape; a host that exports through another recorder (one that
    /// pushes) calls it on its own schedule, e.g. every 10 s.
    pub async fn record_gauges(&self) {
        self.sample().await.record();
    }

    /// The gauges `/metrics` shows, sampled from the hub's state now.
    async fn sample(&self) -> Sample {
        let window = self.inner.options.coherence_window;
        let mut sample = Sample {
            coherence_window: window,
            ready: self.is_ready(),
            broker_up: self.broker_available(),
            lockouts: self.lockouts(),
            uptime: self.inner.health.started.elapsed(),
            ..Sample::default()
        };
        for client in self.inner.node.clients.iter() {
            let info = &client.peer.info;
            let labels = (
                crate::telemetry::kind_label(info),
                crate::telemetry::runtime_label(info),
            );
            *sample.connections.entry(labels).or_default() += 1;
        }
        let coherence = self.inner.node.coherence(window);
        sample.channels = coherence.channels;
        sample.subscriptions = coherence.subscriptions;
        sample.subscribers = coherence.subscribers;
        sample.caught_up = coherence.caught_up;
        if let Some(history) = &self.inner.history {
            let (up, stats) = match history.stats().await {
                Ok(stats) => (self.store_available(), stats),
                Err(err) => {
                    self.inner.health.store.failed(&ErrorChain(&err));
                    (false, StoreStats::default())
                }
            };
            sample.store = Some(StoreSample { up, stats });
        }
        sample
    }

    /// Whether the hub accepts connections (false once shutdown began).
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    /// Shuts down gracefully: stops accepting connections, pushes `migrate`
    /// advice to every client with a deadline `drain` from now, waits for them
    /// to leave until then, and closes whoever remains with 3001 (shutdown).
    /// A second call, while or after a shutdown runs, returns at once.
    pub async fn shutdown(&self) {
        if !self.inner.ready.swap(false, Ordering::AcqRel) {
            return;
        }
        let drain = self.inner.options.drain;
        self.migrate(None, now_ms() + drain.as_millis() as u64);
        let everyone_left = async {
            loop {
                let left = self.inner.client_left.notified();
                if self.inner.node.clients.is_empty() {
                    return;
                }
                left.await;
            }
        };
        let _ = tokio::time::timeout(drain, everyone_left).await;
        for client in self.inner.node.clients.iter() {
            client.outbound.close(DisconnectCode::SHUTDOWN);
        }
        tracing::info!(
            remaining = self.inner.node.clients.len(),
            "drain over; remaining clients closed with 3001"
        );
    }

    pub(crate) fn options(&self) -> &HubOptions {
        &self.inner.options
    }

    /// The options of the channel's namespace, or "unknown channel".
    pub(crate) fn namespace(&self, channel: &str) -> Result<&NamespaceOptions, ReplyError> {
        self.inner
            .options
            .namespaces
            .get(channel_namespace(channel))
            .ok_or_else(|| {
                ReplyError::new(
                    ErrorCode::UNKNOWN_CHANNEL,
                    "unknown channel: its namespace is not configured",
                )
            })
    }

    /// Registers a connected client, unless this server holds
    /// `max_connections` already or its user holds `max_connections_per_user`
    /// (counted on every node by the presence store): then the reason, and
    /// nothing is registered.
    ///
    /// The user's connection is recorded before it is counted, so two
    /// connects racing for the last place cannot both get it (both may be
    /// refused; each client retries later). If the presence store cannot
    /// count, the connection is let in and a warning logged: an outage of
    /// the store does not lock every user out.
    pub(crate) async fn register(
        &self,
        peer: &Peer,
        outbound: Outbound,
        credential: Option<String>,
    ) -> Result<(), &'static str> {
        let max = self.inner.options.max_connections;
        if self.inner.registered.fetch_add(1, Ordering::AcqRel) >= max && max > 0 {
            self.inner.registered.fetch_sub(1, Ordering::AcqRel);
            self.inner.metrics.refused(Refusal::Limit);
            return Err("too many connections on this server");
        }
        self.inner.metrics.accepted(&peer.info);
        let client = Client {
            peer: peer.clone(),
            outbound,
            credential,
            connected_ms: crate::time::now_ms(),
        };
        self.inner.node.clients.insert(peer.id.clone(), client);
        let Some(user) = &peer.user else {
            return Ok(());
        };
        if let Err(err) = self.inner.presence.user_connected(user, &peer.id).await {
            tracing::warn!(err = %ErrorChain(&err), "cannot count a user's connection");
            return Ok(());
        }
        let max = self.inner.options.max_connections_per_user;
        if max == 0 {
            return Ok(());
        }
        match self.inner.presence.user_connections(user).await {
            Ok(held) if held > max => {
                tracing::debug!(user, held, max, "connection refused: the user has enough");
                self.inner.metrics.refused(Refusal::Limit);
                self.unregister(peer).await;
                Err("too many connections for this user")
            }
            Ok(_) => Ok(()),
            Err(err) => {
                tracing::warn!(err = %ErrorChain(&err), "cannot count a user's connections: letting it in");
                Ok(())
            }
        }
    }

    /// Counts a wrong credential from `ip` (a token at connect or refresh, an
    /// admin signature) toward its lockout, and records the lock if this
    /// one imposed it.
    pub(crate) fn failed_authentication(&self, ip: std::net::IpAddr) {
        if let crate::lockout::Failed::Locked(length) = self.inner.admission.lockout.failed(ip) {
            self.audit(
                AuditEvent::new(
                    AuditKind::Lockout,
                    format!("locked out for {} s", length.as_secs()),
                )
                .address(Some(ip)),
            );
        }
    }

    /// A refresh may authenticate with another credential (a rotated key).
    pub(crate) fn set_credential(&self, client: &str, credential: Option<String>) {
        if let Some(mut entry) = self.inner.node.clients.get_mut(client) {
            entry.credential = credential;
        }
    }

    pub(crate) async fn unregister(&self, peer: &Peer) {
        if self.inner.node.clients.remove(&peer.id).is_some() {
            self.inner.registered.fetch_sub(1, Ordering::AcqRel);
        }
        self.inner.client_left.notify_waiters();
        if let Some(user) = &peer.user
            && let Err(err) = self.inner.presence.user_disconnected(user, &peer.id).await
        {
            tracing::warn!(err = %ErrorChain(&err), "cannot uncount a user's connection");
        }
    }

    /// How many connections `user` has now, on every node once a shared
    /// presence store is configured.
    pub async fn user_connections(&self, user: &str) -> Result<usize, BrokerError> {
        self.inner.presence.user_connections(user).await
    }

    /// Checks that `peer` may use `channel` for `purpose`: the namespace
    /// exists, its subscribe rule admits the peer, and the host's subscribe
    /// hook agrees. Presence and history take the same permission as subscribing.
    pub(crate) async fn may_use(
        &self,
        peer: &Peer,
        channel: &str,
        purpose: ChannelUse,
    ) -> Result<&NamespaceOptions, ReplyError> {
        let options = self.namespace(channel)?;
        allowed(options.subscribe, peer)?;
        let context = || SubscribeContext {
            client: peer.clone(),
            channel: channel.to_owned(),
            purpose,
        };
        self.inner
            .hooks
            .may_subscribe(context, self.inner.options.rpc_timeout)
            .await?;
        Ok(options)
    }

    /// Publishes a client's publication, if the namespace and the host allow it.
    pub(crate) async fn publish_from(
        &self,
        peer: Peer,
        channel: &str,
        data: Value,
        traceparent: Option<String>,
    ) -> Result<PublishReply, ReplyError> {
        let options = self.namespace(channel)?;
        allowed(options.publish, &peer)?;
        let data = match &self.inner.hooks.publish {
            None => data,
            Some(_) => {
                // The hook sees the payload; the hub keeps publishing its own.
                let context = || PublishContext {
                    client: peer.clone(),
                    channel: channel.to_owned(),
                    data: data.clone(),
                };
                let timeout = self.inner.options.rpc_timeout;
                self.inner.hooks.may_publish(context, timeout).await?;
                data
            }
        };
        let options = options.clone();
        let mut publication = Publication::new(channel, data, now_ms());
        publication.from = Some(peer);
        // Only a publish that asked for a trace carries one on.
        publication.traceparent = traceparent
            .and_then(|incoming| trace::outgoing(&tracing::Span::current(), Some(incoming)));
        self.publish_as(channel, publication, &options).await
    }

    /// Hands `publication` (of `channel`) to the broker (and the store), then
    /// waits for subscribers that fell behind (flow control).
    pub(crate) async fn publish_as(
        &self,
        channel: &str,
        publication: Publication,
        options: &NamespaceOptions,
    ) -> Result<PublishReply, ReplyError> {
        let retention = (options.history_size > 0).then(|| {
            Retention::new(options.history_size, options.history_ttl).searchable(options.search)
        });
        let started = std::time::Instant::now();
        let stored = self
            .inner
            .broker
            .publish(channel, publication, retention)
            .instrument(trace::broker_span(channel))
            .await;
        let metrics = &self.inner.metrics;
        metrics
            .broker_publish
            .record(started.elapsed().as_secs_f64());
        // With the in-process broker a failure is the history store's.
        let backend = match self.inner.history {
            Some(_) => &self.inner.health.store,
            None => &self.inner.health.broker,
        };
        let stored = match stored {
            Ok(stored) => {
                backend.succeeded();
                metrics.publications.increment(1);
                self.inner.published.fetch_add(1, Ordering::Relaxed);
                stored
            }
            Err(err) => {
                backend.failed(&ErrorChain(&err));
                metrics.broker_errors.increment(1);
                return Err(broker_error(err));
            }
        };
        let mut reply = PublishReply::default();
        reply.offset = stored.offset;
        reply.epoch.clone_from(&stored.epoch);
        // Flow control: the publisher (and what it sends next) waits for
        // subscribers here that fall behind, so none is cut off for merely
        // being slower than it.
        for outbound in self.inner.node.take_congested(channel) {
            outbound
                .drain(self.inner.options.slow_consumer_patience)
                .await;
        }
        Ok(reply)
    }

    /// Sends a client's direct message, if the host allows it.
    pub(crate) async fn send_from(
        &self,
        from: Peer,
        to: &str,
        data: Value,
    ) -> Result<(), ReplyError> {
        if self.inner.hooks.send.is_some() {
            let recipient = self
                .inner
                .node
                .clients
                .get(to)
                .map(|client| client.peer.clone())
                .ok_or_else(|| ReplyError::from(ErrorCode::CLIENT_NOT_FOUND))?;
            let context = || SendContext {
                from: from.clone(),
                to: recipient,
            };
            let timeout = self.inner.options.rpc_timeout;
            self.inner.hooks.may_send(context, timeout).await?;
        }
        self.deliver(Some(from), to, data)
    }

    /// Queues a `message` push to client `to`.
    fn deliver(&self, from: Option<Peer>, to: &str, data: Value) -> Result<(), ReplyError> {
        let client = self
            .inner
            .node
            .clients
            .get(to)
            .ok_or_else(|| ReplyError::from(ErrorCode::CLIENT_NOT_FOUND))?;
        client
            .outbound
            .send_message(&ServerMessage::push(DirectMessage::new(from, data)));
        Ok(())
    }

    /// Subscribes `peer` and returns the reply; the caller holds its outbound
    /// (see `Outbound::hold`) so that the reply precedes live publications.
    ///
    /// The member is registered first, with its deliveries buffered, then the
    /// broker is told (if it is the channel's first here) and the stream
    /// position read: what was published meanwhile is either in the reply
    /// or follows it, once (see `node.rs`).
    pub(crate) async fn subscribe(
        &self,
        peer: &Peer,
        outbound: &Outbound,
        request: &SubscribeRequest,
    ) -> Result<SubscribeReply, ReplyError> {
        let options = self
            .may_use(peer, &request.channel, ChannelUse::Subscribe)
            .await?;
        let channel = request.channel.as_str();
        let node = &self.inner.node;
        let broker = &*self.inner.broker;
        let join_leave = request.join_leave && options.join_leave;
        let buffered = options.history_size > 0;
        let live = node
            .add_member(channel, peer, outbound, join_leave, buffered)
            .map_err(|Refused::AlreadySubscribed| {
                ReplyError::from(ErrorCode::ALREADY_SUBSCRIBED)
            })?;
        let positioned = async {
            node.interest(&live, channel, broker)
                .await
                .map_err(broker_error)?;
            self.position_and_recovery(channel, options, request).await
        };
        let reply = match positioned.await {
            Ok(reply) => reply,
            Err(err) => {
                if node.remove_member(channel, &peer.id).is_some() {
                    node.release(&live, channel, broker).await;
                }
                return Err(err);
            }
        };
        node.go_live(&live, &peer.id, reply.offset, reply.epoch.clone());
        if options.join_leave
            && let Err(err) = broker.join(channel, peer).await
        {
            tracing::warn!(channel, err = %ErrorChain(&err), "cannot announce a join");
        }
        if options.presence
            && let Err(err) = self.inner.presence.add(channel, peer).await
        {
            tracing::warn!(channel, err = %ErrorChain(&err), "cannot record presence");
        }
        Ok(reply)
    }

    /// The stream position for a new subscriber and, if it asked, the
    /// publications it missed: all of them or none.
    async fn position_and_recovery(
        &self,
        channel: &str,
        options: &NamespaceOptions,
        request: &SubscribeRequest,
    ) -> Result<SubscribeReply, ReplyError> {
        let mut reply = SubscribeReply::default();
        if options.history_size == 0 {
            return Ok(reply);
        }
        let broker = &self.inner.broker;
        let max = self.inner.options.max_recovered;
        let recovered = match &request.recover {
            Some(since) => {
                let query = Query {
                    since: Some(since.clone()),
                    limit: Some(max + 1),
                    reverse: false,
                };
                match broker.read(channel, query).await {
                    Ok(page) if page.publications.len() <= max => Some(page),
                    Ok(_) | Err(BrokerError::Unrecoverable) => None,
                    Err(err) => return Err(broker_error(err)),
                }
            }
            None => None,
        };
        let metrics = &self.inner.metrics;
        if request.recover.is_some() {
            match &recovered {
                Some(page) => {
                    metrics.recovered.increment(1);
                    metrics.replayed.increment(page.publications.len() as u64);
                }
                None => metrics.not_recovered.increment(1),
            }
        }
        let page = match recovered {
            Some(page) => {
                reply.recovered = true;
                page
            }
            None => {
                let query = Query {
                    limit: Some(0),
                    ..Query::default()
                };
                broker.read(channel, query).await.map_err(broker_error)?
            }
        };
        reply.offset = Some(page.position.offset);
        reply.epoch = Some(page.position.epoch);
        reply.publications = page.publications;
        Ok(reply)
    }

    pub(crate) async fn unsubscribe(&self, client: &str, channel: &str) -> Result<(), ReplyError> {
        let node = &self.inner.node;
        let (live, peer) = node
            .remove_member(channel, client)
            .ok_or_else(|| ReplyError::from(ErrorCode::NOT_SUBSCRIBED))?;
        let options = self.namespace(channel).ok();
        if options.is_some_and(|options| options.join_leave)
            && let Err(err) = self.inner.broker.leave(channel, &peer).await
        {
            tracing::warn!(channel, err = %ErrorChain(&err), "cannot announce a leave");
        }
        if options.is_some_and(|options| options.presence)
            && let Err(err) = self.inner.presence.remove(channel, client).await
        {
            tracing::warn!(channel, err = %ErrorChain(&err), "cannot remove presence");
        }
        node.release(&live, channel, &*self.inner.broker).await;
        Ok(())
    }

    pub(crate) async fn presence_of(
        &self,
        peer: &Peer,
        channel: &str,
    ) -> Result<Vec<Peer>, ReplyError> {
        if !self.namespace(channel)?.presence {
            return Err(ReplyError::new(
                ErrorCode::NOT_AVAILABLE,
                "presence is off for this namespace",
            ));
        }
        self.may_use(peer, channel, ChannelUse::Presence).await?;
        self.inner
            .presence
            .list(channel)
            .await
            .map_err(broker_error)
    }

    pub(crate) async fn history_of(
        &self,
        peer: &Peer,
        request: &HistoryRequest,
    ) -> Result<HistoryReply, ReplyError> {
        let options = self.namespace(&request.channel)?;
        if options.history_size == 0 {
            return Err(ReplyError::new(
                ErrorCode::NOT_AVAILABLE,
                "history is off for this namespace",
            ));
        }
        self.may_use(peer, &request.channel, ChannelUse::History)
            .await?;
        // Absent, `limit` means every publication kept (at most `history_size`).
        let query = Query {
            since: request.since.clone(),
            limit: request.limit.map(|l| l as usize),
            reverse: request.reverse,
        };
        let page = self
            .inner
            .broker
            .read(&request.channel, query)
            .await
            .map_err(|err| match err {
                BrokerError::Unrecoverable => ErrorCode::UNRECOVERABLE_POSITION.into(),
                err => broker_error(err),
            })?;
        let mut reply = HistoryReply::default();
        reply.offset = page.position.offset;
        reply.epoch = page.position.epoch;
        reply.publications = page.publications;
        Ok(reply)
    }

    /// A client's `search`: where the namespace enables it, for whoever may
    /// subscribe; at most [`MAX_SEARCH_LIMIT`] publications a page.
    pub(crate) async fn search_of(
        &self,
        peer: &Peer,
        request: &SearchRequest,
    ) -> Result<SearchReply, ReplyError> {
        let options = self.namespace(&request.channel)?;
        if !options.search || options.history_size == 0 {
            return Err(ReplyError::new(
                ErrorCode::NOT_AVAILABLE,
                "search is off for this namespace",
            ));
        }
        self.may_use(peer, &request.channel, ChannelUse::History)
            .await?;
        let limit = request
            .limit
            .map_or(10, |l| l as usize)
            .min(MAX_SEARCH_LIMIT);
        let search = Search::new(request.text.clone())
            .limit(limit)
            .skip(request.skip.unwrap_or(0) as usize);
        let page = self
            .search(&request.channel, search)
            .await
            .map_err(|err| match err {
                HistoryError::Unsupported(_) => ReplyError::new(
                    ErrorCode::NOT_AVAILABLE,
                    "this server's history store does not search",
                ),
                err => {
                    tracing::warn!(err = %ErrorChain(&err), "search failed");
                    ReplyError::new(ErrorCode::INTERNAL, "search failed; retry later")
                }
            })?;
        let mut reply = SearchReply::default();
        reply.total = page.total;
        reply.publications = page.publications;
        Ok(reply)
    }
}

/// The most publications one `search` returns.
pub(crate) const MAX_SEARCH_LIMIT: usize = 100;

/// Whether `peer` passes `access`: an anonymous client where a user is
/// needed gets 101 (unauthorized), anyone where nobody may gets 103.
pub(crate) fn allowed(access: Access, peer: &Peer) -> Result<(), ReplyError> {
    match access {
        Access::Anyone => Ok(()),
        Access::Authenticated if peer.user.is_some() => Ok(()),
        Access::Authenticated => Err(ReplyError::new(
            ErrorCode::UNAUTHORIZED,
            "this namespace is for authenticated users",
        )),
        Access::Nobody => Err(ReplyError::new(
            ErrorCode::PERMISSION_DENIED,
            "no client may do this in this namespace",
        )),
    }
}

/// Re-adds this node's present clients every `every`, for a presence store
/// whose entries expire; ends with the hub.
async fn refresh_presence(hub: std::sync::Weak<HubInner>, every: std::time::Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(inner) = hub.upgrade() else {
            return;
        };
        let users: Vec<Peer> = inner
            .node
            .clients
            .iter()
            .filter(|client| client.peer.user.is_some())
            .map(|client| client.peer.clone())
            .collect();
        for peer in users {
            let user = peer.user.as_deref().unwrap_or_default();
            if let Err(err) = inner.presence.user_connected(user, &peer.id).await {
                tracing::warn!(err = %ErrorChain(&err), "cannot refresh a user's connection");
            }
        }
        for (channel, peers) in inner.node.all_members() {
            let presence = inner
                .options
                .namespaces
                .get(channel_namespace(&channel))
                .is_some_and(|options| options.presence);
            if !presence {
                continue;
            }
            for peer in peers {
                if let Err(err) = inner.presence.add(&channel, &peer).await {
                    tracing::warn!(channel, err = %ErrorChain(&err), "cannot refresh presence");
                }
            }
        }
    }
}

fn broker_error(err: BrokerError) -> ReplyError {
    tracing::warn!(err = %ErrorChain(&err), "broker failed");
    match err {
        BrokerError::Unrecoverable => ErrorCode::UNRECOVERABLE_POSITION.into(),
        _ => ReplyError::new(ErrorCode::INTERNAL, "broker unavailable; retry later"),
    }
}

/// Shows an error with its whole `source()` chain, for logs.
pub(crate) struct ErrorChain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("connections", &self.inner.node.clients.len())
            .field("channels", &self.inner.node.channel_count())
            .field("ready", &self.is_ready())
            .finish()
    }
}
