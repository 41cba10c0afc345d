//! Host hooks: what the host hears about (a client connected, disconnected)
//! and what it decides (who may subscribe to, publish in or send to what),
//! registered on the [`HubBuilder`](crate::HubBuilder) as async closures.
//!
//! A hook runs inside the connection's task, before the command it concerns
//! is answered, bounded by the hub's handler timeout; a hook that panics or
//! times out refuses (error 100 or 115) instead of taking the connection down.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sacred_proto::{ErrorCode, Peer, ReplyError, Value};

/// A host's "no": the error reply a refused command gets.
///
/// ```
/// use sacred_server::Refusal;
///
/// let private = Refusal::permission_denied("user:42 is Ada's own channel");
/// let banned = Refusal::new(451, "banned in this room");
/// # let _ = (private, banned);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    code: ErrorCode,
    message: String,
}

impl Refusal {
    /// A refusal with `code`: one of Sacred's (100-399, e.g. 103 permission
    /// denied, 101 unauthorized) or an application code (400-1999). Other
    /// numbers become 103.
    pub fn new(code: u32, message: impl Into<String>) -> Refusal {
        let code = if (100..=1999).contains(&code) {
            ErrorCode::from_u32(code)
        } else {
            ErrorCode::PERMISSION_DENIED
        };
        Refusal {
            code,
            message: message.into(),
        }
    }

    /// Error 103, permission denied.
    pub fn permission_denied(message: impl Into<String>) -> Refusal {
        Refusal::new(ErrorCode::PERMISSION_DENIED.as_u32(), message)
    }

    /// The code the command is refused with.
    pub fn code(&self) -> ErrorCode {
        self.code
    }
}

impl From<Refusal> for ReplyError {
    fn from(refusal: Refusal) -> ReplyError {
        ReplyError::new(refusal.code, refusal.message)
    }
}

/// A client has connected: given to [`on_connect`](crate::HubBuilder::on_connect).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientContext {
    /// Its client id, user and self-description.
    pub client: Peer,
    /// Its socket address, when the host serves with connect info.
    pub remote_addr: Option<SocketAddr>,
}

/// A client has gone: given to [`on_disconnect`](crate::HubBuilder::on_disconnect).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DisconnectContext {
    /// Its client id, user and self-description.
    pub client: Peer,
    /// The close code: the server's disconnect code when the server closed,
    /// the client's close code when it closed (1000 for a normal close), 1006
    /// when the socket dropped without a close frame.
    pub code: u16,
    /// The close reason, possibly empty.
    pub reason: String,
}

/// Why a client wants a channel: the subscribe hook decides all three.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChannelUse {
    /// `subscribe` (or a connect's `subs`).
    Subscribe,
    /// `presence`: whoever may subscribe may see who is subscribed.
    Presence,
    /// `history`: whoever may subscribe may read what was published.
    History,
}

/// A client asks to subscribe (or read presence or history): given to
/// [`authorize_subscribe`](crate::HubBuilder::authorize_subscribe).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SubscribeContext {
    /// Who asks.
    pub client: Peer,
    /// The channel.
    pub channel: String,
    /// What for.
    pub purpose: ChannelUse,
}

/// A client asks to publish: given to [`authorize_publish`](crate::HubBuilder::authorize_publish).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PublishContext {
    /// Who publishes.
    pub client: Peer,
    /// The channel.
    pub channel: String,
    /// The payload.
    pub data: Value,
}

/// A client asks to send to another: given to [`authorize_send`](crate::HubBuilder::authorize_send).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SendContext {
    /// Who sends.
    pub from: Peer,
    /// The recipient.
    pub to: Peer,
}

/// A registered hook, type-erased.
type Hook<C, R> = Arc<dyn Fn(C) -> BoxFuture<'static, R> + Send + Sync>;

/// Boxes a hook closure and the futures it returns.
pub(crate) fn erase<C, R, F, Fut>(f: F) -> Hook<C, R>
where
    F: Fn(C) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
{
    Arc::new(move |context| Box::pin(f(context)))
}

/// The hooks a host registered; each absent one allows or does nothing.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub(crate) on_connect: Option<Hook<ClientContext, ()>>,
    pub(crate) on_disconnect: Option<Hook<DisconnectContext, ()>>,
    pub(crate) subscribe: Option<Hook<SubscribeContext, Result<(), Refusal>>>,
    pub(crate) publish: Option<Hook<PublishContext, Result<(), Refusal>>>,
    pub(crate) send: Option<Hook<SendContext, Result<(), Refusal>>>,
}

impl Hooks {
    pub(crate) async fn connected(&self, context: ClientContext, timeout: Duration) {
        if let Some(hook) = &self.on_connect {
            let _ = guarded("on_connect", hook(context), timeout).await;
        }
    }

    pub(crate) async fn disconnected(&self, context: DisconnectContext, timeout: Duration) {
        if let Some(hook) = &self.on_disconnect {
            let _ = guarded("on_disconnect", hook(context), timeout).await;
        }
    }

    pub(crate) async fn may_subscribe(
        &self,
        context: impl FnOnce() -> SubscribeContext,
        timeout: Duration,
    ) -> Result<(), ReplyError> {
        match &self.subscribe {
            Some(hook) => decided("authorize_subscribe", hook(context()), timeout).await,
            None => Ok(()),
        }
    }

    pub(crate) async fn may_publish(
        &self,
        context: impl FnOnce() -> PublishContext,
        timeout: Duration,
    ) -> Result<(), ReplyError> {
        match &self.publish {
            Some(hook) => decided("authorize_publish", hook(context()), timeout).await,
            None => Ok(()),
        }
    }

    pub(crate) async fn may_send(
        &self,
        context: impl FnOnce() -> SendContext,
        timeout: Duration,
    ) -> Result<(), ReplyError> {
        match &self.send {
            Some(hook) => decided("authorize_send", hook(context()), timeout).await,
            None => Ok(()),
        }
    }
}

/// Runs host code with a timeout, turning a panic or a timeout into the
/// error the caller answers with.
pub(crate) async fn guarded<T>(
    name: &str,
    future: impl Future<Output = T>,
    timeout: Duration,
) -> Result<T, ReplyError> {
    match tokio::time::timeout(timeout, AssertUnwindSafe(future).catch_unwind()).await {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(_)) => {
            tracing::error!(hook = name, "host code panicked; the command is refused");
            Err(ReplyError::new(
                ErrorCode::INTERNAL,
                "the host's handler failed",
            ))
        }
        Err(_) => {
            tracing::warn!(hook = name, ?timeout, "host code timed out");
            Err(ErrorCode::TIMEOUT.into())
        }
    }
}

async fn decided(
    name: &str,
    decision: impl Future<Output = Result<(), Refusal>>,
    timeout: Duration,
) -> Result<(), ReplyError> {
    guarded(name, decision, timeout)
        .await?
        .map_err(ReplyError::from)
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("on_connect", &self.on_connect.is_some())
            .field("on_disconnect", &self.on_disconnect.is_some())
            .field("authorize_subscribe", &self.subscribe.is_some())
            .field("authorize_publish", &self.publish.is_some())
            .field("authorize_send", &self.send.is_some())
            .finish()
    }
}
