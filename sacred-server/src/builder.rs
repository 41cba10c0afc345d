//! `HubBuilder`: assembles a hub from options and extension points, and hands
//! back the router to mount and the handle to program against.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use sacred_proto::{Limits, Value, validate_channel};

use crate::audit::AuditLog;
use crate::auth::{Authenticator, StaticKeys};
use crate::broker::{Broker, MemoryBroker};
use crate::history::HistoryStore;
use crate::hooks::{
    ClientContext, DisconnectContext, Hooks, PublishContext, Refusal, SendContext,
    SubscribeContext, erase,
};
use crate::hub::Hub;
use crate::options::{ApiKey, HubOptions, NamespaceOptions};
use crate::presence::{MemoryPresence, PresenceStore};
use crate::rpc::{RpcContext, RpcError, RpcHandler};

/// Builds a [`Hub`]. Setters take and return the builder; invalid settings are
/// reported by [`HubBuilder::build`], never by a panic.
///
/// Unless [`HubBuilder::authenticator`] sets one, the built-in [`StaticKeys`]
/// authenticator is used with the options' API keys and anonymous switch.
/// Unless [`HubBuilder::broker`] sets one, the hub is one node with the
/// in-process [`MemoryBroker`], whose streams live in memory (or in the store
/// [`HubBuilder::history_store`] gives); presence lives in memory unless
/// [`HubBuilder::presence_store`] sets a store.
#[derive(Default)]
#[must_use]
pub struct HubBuilder {
    options: HubOptions,
    auth: Option<Arc<dyn Authenticator>>,
    history: Option<Arc<dyn HistoryStore>>,
    broker: Option<Arc<dyn Broker>>,
    presence: Option<Arc<dyn PresenceStore>>,
    rpc: HashMap<String, RpcHandler>,
    hooks: Hooks,
    audit: Option<Arc<dyn AuditLog>>,
    #[cfg(feature = "prometheus")]
    prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Whether the hub's router leaves `/metrics` out (it is served apart).
    metrics_apart: bool,
}

/// A setting [`HubBuilder::build`] refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A namespace name breaks the channel grammar.
    #[error("invalid namespace name {0:?}: use letters, digits and _-.")]
    Namespace(String),
    /// A duration that must be positive is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// An API key hash is not 64 hex characters.
    #[error("API key for user {0:?}: sha256 must be 64 hex characters")]
    ApiKey(String),
    /// The outbound queue cannot hold even one frame.
    #[error("outbound_queue_bytes must be at least limits.max_frame_bytes")]
    QueueTooSmall,
}

impl HubBuilder {
    /// Serves `/metrics` from this Prometheus recorder's handle (see
    /// [`crate::install_prometheus`], which installs one): the hub's
    /// metrics and whatever else the process records. Install the recorder
    /// before building the hub.
    #[cfg(feature = "prometheus")]
    pub fn prometheus(mut self, handle: metrics_exporter_prometheus::PrometheusHandle) -> Self {
        self.prometheus = Some(handle);
        self
    }

    /// Leaves `/metrics` out of the hub's router, to serve it on an
    /// internal address instead ([`Hub::metrics_router`]).
    pub fn metrics_apart(mut self) -> Self {
        self.metrics_apart = true;
        self
    }

    /// Replaces every option at once (e.g. read from a config file).
    pub fn options(mut self, options: HubOptions) -> Self {
        self.options = options;
        self
    }

    /// Sets the options of one namespace (`""` is the default namespace).
    pub fn namespace(mut self, name: impl Into<String>, options: NamespaceOptions) -> Self {
        self.options.namespaces.insert(name.into(), options);
        self
    }

    /// Bounds on what clients send.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.options.limits = limits;
        self
    }

    /// Time between pings (clients with runtime `mobile` use the mobile interval).
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.options.ping_interval = interval;
        self
    }

    /// Time to wait for a pong before closing with "no pong".
    pub fn pong_timeout(mut self, timeout: Duration) -> Self {
        self.options.pong_timeout = timeout;
        self
    }

    /// Time a socket has to send `connect`.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options.connect_timeout = timeout;
        self
    }

    /// Time between the migrate advice and the final close at shutdown.
    pub fn drain(mut self, drain: Duration) -> Self {
        self.options.drain = drain;
        self
    }

    /// Whether the built-in authenticator accepts connections without a token.
    pub fn allow_anonymous(mut self, allow: bool) -> Self {
        self.options.allow_anonymous = allow;
        self
    }

    /// An API key the built-in authenticator accepts.
    pub fn api_key(mut self, key: ApiKey) -> Self {
        self.options.api_keys.push(key);
        self
    }

    /// Replaces the built-in authenticator.
    pub fn authenticator(mut self, authenticator: impl Authenticator) -> Self {
        self.auth = Some(Arc::new(authenticator));
        self
    }

    /// Replaces the in-memory history store of the in-process broker
    /// (ignored when [`HubBuilder::broker`] sets a broker, which keeps its
    /// own streams).
    pub fn history_store(mut self, store: impl HistoryStore) -> Self {
        self.history = Some(Arc::new(store));
        self
    }

    /// Replaces the in-process broker: how publications reach other nodes
    /// and where streams live (see [`Broker`]).
    pub fn broker(mut self, broker: impl Broker) -> Self {
        self.broker = Some(Arc::new(broker));
        self
    }

    /// Replaces the in-memory presence store (see [`PresenceStore`]).
    pub fn presence_store(mut self, store: impl PresenceStore) -> Self {
        self.presence = Some(Arc::new(store));
        self
    }

    /// Registers an RPC handler under `method`. It gets the caller and the
    /// data, and returns data or an [`RpcError`] with an application code.
    ///
    /// ```
    /// use sacred_server::{Hub, RpcError};
    /// use sacred_proto::Value;
    ///
    /// let builder = Hub::builder().rpc("echo", |_ctx, data: Value| async move {
    ///     if data.is_null() { Err(RpcError::new(422, "nothing to echo")) } else { Ok(data) }
    /// });
    /// ```
    pub fn rpc<F, Fut>(mut self, method: impl Into<String>, handler: F) -> Self
    where
        F: Fn(RpcContext, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, RpcError>> + Send + 'static,
    {
        self.rpc.insert(method.into(), RpcHandler::new(handler));
        self
    }

    /// Called once a client has connected (after its connect reply is
    /// queued), with its id, identity and address. Awaited before the
    /// client's next command runs.
    ///
    /// ```
    /// let builder = sacred_server::Hub::builder().on_connect(|ctx| async move {
    ///     println!("{} connected as {:?}", ctx.client.id, ctx.client.user);
    /// });
    /// ```
    pub fn on_connect<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(ClientContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks.on_connect = Some(erase(hook));
        self
    }

    /// Called once a connected client has gone and left its channels, with
    /// the close code and reason.
    pub fn on_disconnect<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(DisconnectContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks.on_disconnect = Some(erase(hook));
        self
    }

    /// Decides, per client and channel, who may subscribe; also asked for
    /// `presence` and `history` (whoever may subscribe may see those). Runs
    /// after the namespace's own `subscribe` rule has admitted the client.
    ///
    /// ```
    /// use sacred_server::{Hub, Refusal};
    ///
    /// // `user:<id>` channels are private to their user.
    /// let builder = Hub::builder().authorize_subscribe(|ctx| async move {
    ///     match ctx.channel.strip_prefix("user:") {
    ///         Some(owner) if ctx.client.user.as_deref() != Some(owner) => {
    ///             Err(Refusal::permission_denied("another user's channel"))
    ///         }
    ///         _ => Ok(()),
    ///     }
    /// });
    /// ```
    pub fn authorize_subscribe<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(SubscribeContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Refusal>> + Send + 'static,
    {
        self.hooks.subscribe = Some(erase(hook));
        self
    }

    /// Decides, per client, channel and payload, who may publish. Runs after
    /// the namespace's own `publish` rule; host code publishing through
    /// [`Hub::publish`] is not asked.
    pub fn authorize_publish<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(PublishContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Refusal>> + Send + 'static,
    {
        self.hooks.publish = Some(erase(hook));
        self
    }

    /// Decides who may `send` to whom (both are connected clients). Without
    /// it any client may send to any client id it knows.
    pub fn authorize_send<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(SendContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Refusal>> + Send + 'static,
    {
        self.hooks.send = Some(erase(hook));
        self
    }

    /// Where the audit trail is kept (default: the latest 10,000 events in
    /// memory, [`MemoryAudit`](crate::MemoryAudit)). Every event is also a log line, target `sacred::audit`.
    pub fn audit_log(mut self, audit: impl AuditLog) -> Self {
        self.audit = Some(Arc::new(audit));
        self
    }

    /// Checks the settings and returns the router to mount and the hub handle.
    pub fn build(self) -> Result<(Router, Hub), BuildError> {
        let options = self.options;
        for name in options.namespaces.keys() {
            let probe = format!("{name}:x");
            if !name.is_empty()
                && (name.contains(':') || validate_channel(&probe, &options.limits).is_err())
            {
                return Err(BuildError::Namespace(name.clone()));
            }
        }
        for (name, value) in [
            ("ping_interval", options.ping_interval),
            ("mobile_ping_interval", options.mobile_ping_interval),
            ("pong_timeout", options.pong_timeout),
            ("connect_timeout", options.connect_timeout),
            ("rpc_timeout", options.rpc_timeout),
        ] {
            if value.is_zero() {
                return Err(BuildError::Zero(name));
            }
        }
        for key in &options.api_keys {
            if key.sha256.len() != 64 || !key.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(BuildError::ApiKey(key.user.clone()));
            }
        }
        if options.outbound_queue_bytes < options.limits.max_frame_bytes {
            return Err(BuildError::QueueTooSmall);
        }
        let auth = self.auth.unwrap_or_else(|| {
            Arc::new(StaticKeys::new(
                options.api_keys.iter().cloned(),
                options.allow_anonymous,
            ))
        });
        let (broker, history): (Arc<dyn Broker>, _) = match (self.broker, self.history) {
            (Some(broker), _) => (broker, None),
            (None, history) => {
                let history =
                    history.unwrap_or_else(|| Arc::new(crate::history::MemoryHistory::new()));
                let broker = Arc::new(MemoryBroker::with_shared(Arc::clone(&history)));
                (broker, Some(history))
            }
        };
        let presence = self
            .presence
            .unwrap_or_else(|| Arc::new(MemoryPresence::new()));
        let audit = self
            .audit
            .unwrap_or_else(|| Arc::new(crate::audit::MemoryAudit::new()));
        let parts = crate::hub::HubParts {
            auth,
            broker,
            presence,
            history,
            rpc: self.rpc,
            hooks: self.hooks,
            audit,
            #[cfg(feature = "prometheus")]
            prometheus: self.prometheus,
        };
        let hub = Hub::new(options, parts);
        Ok((crate::router::router(hub.clone(), self.metrics_apart), hub))
    }
}

impl fmt::Debug for HubBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubBuilder")
            .field("options", &self.options)
            .field("rpc", &self.rpc.keys().collect::<Vec<_>>())
            .field("hooks", &self.hooks)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_settings_are_reported_by_build() {
        let err = |builder: HubBuilder| builder.build().err();
        assert_eq!(err(Hub::builder()), None);
        assert_eq!(
            err(Hub::builder().namespace("a:b", NamespaceOptions::default())),
            Some(BuildError::Namespace("a:b".into()))
        );
        assert_eq!(
            err(Hub::builder().ping_interval(Duration::ZERO)),
            Some(BuildError::Zero("ping_interval"))
        );
        assert_eq!(
            err(Hub::builder().api_key(ApiKey::from_sha256("abc", "ada"))),
            Some(BuildError::ApiKey("ada".into()))
        );
    }
}
