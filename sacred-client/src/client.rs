//! `Client`, the cheap handle applications hold, and `Subscription`, a stream
//! of one channel's events. Both talk over channels to the task that owns the
//! connection (the transport's driver), so they are the same on every platform.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use sacred_proto::{
    ClientInfo, Codec, Command, HistoryReply, HistoryRequest, Peer, PresenceRequest, Publication,
    PublishReply, Reply, RpcRequest, SendRequest, Value,
};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::backoff::Backoff;
use crate::dispatch::Dispatch;
use crate::driver::Driver;
use crate::error::Error;
use crate::event::State;
use crate::platform::{BoxedFuture, SendOutsideWasm, SharedFn, SyncOutsideWasm};
use crate::session::{Session, SessionConfig};
use crate::transport;

/// A request from a handle to the driver.
#[derive(Debug)]
pub(crate) enum Op {
    Subscribe {
        channel: String,
        join_leave: bool,
        events: mpsc::UnboundedSender<SubscriptionEvent>,
        ready: oneshot::Sender<Result<bool, Error>>,
    },
    Unsubscribe(String),
    Publish {
        channel: String,
        data: Value,
        reply: oneshot::Sender<Result<Reply, Error>>,
    },
    Request {
        command: Command,
        reply: oneshot::Sender<Result<Reply, Error>>,
    },
    ServerTime(oneshot::Sender<Option<u64>>),
    Close,
}

/// Something that happened to the connection as a whole.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// Connected (again) with this client id.
    Connected {
        /// The id the server assigned.
        client: String,
    },
    /// The connection ended; `reconnect` says whether the client tries again.
    Disconnected {
        /// The close code.
        code: u16,
        /// Whether a reconnect is scheduled.
        reconnect: bool,
    },
    /// A direct message (`send` from another client, or from the host).
    Message {
        /// The sender, or `None` for the server.
        from: Option<Peer>,
        /// The payload.
        data: Value,
    },
}

/// Something that happened in a subscribed channel.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum SubscriptionEvent {
    /// A publication, in offset order, duplicates removed.
    Publication(Publication),
    /// A client joined (if the subscription opted in).
    Join(Peer),
    /// A client left (if the subscription opted in).
    Leave(Peer),
    /// The subscription is active again after a reconnect; if `recovered` is
    /// false some publications were missed: reload what depends on them.
    Resubscribed {
        /// Whether every missed publication was replayed.
        recovered: bool,
    },
    /// The server ended the subscription with this error code; no more events follow.
    Unsubscribed {
        /// Why.
        code: u32,
    },
}

/// Asks the application for a token: before every connect, and before the
/// current token expires.
#[derive(Clone)]
pub(crate) struct TokenProvider(SharedFn<BoxedFuture<Result<String, String>>>);

impl TokenProvider {
    pub(crate) fn fetch(&self) -> BoxedFuture<Result<String, String>> {
        (self.0)()
    }
}

impl fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenProvider")
    }
}

/// Builds a [`Client`]. Setters take and return the builder; invalid settings
/// are reported by [`ClientBuilder::connect`].
#[derive(Debug)]
#[must_use]
pub struct ClientBuilder {
    pub(crate) url: String,
    pub(crate) config: SessionConfig,
    pub(crate) codec: Codec,
    pub(crate) token_provider: Option<TokenProvider>,
    /// What only this target's transport has.
    pub(crate) transport: transport::Options,
}

impl ClientBuilder {
    pub(crate) fn new(url: String) -> ClientBuilder {
        let client = ClientInfo::new(
            "",
            "app",
            "rust",
            concat!("sacred-client/", env!("CARGO_PKG_VERSION")),
        );
        let config = SessionConfig {
            client,
            ..SessionConfig::default()
        };
        ClientBuilder {
            url,
            config,
            codec: Codec::Json,
            token_provider: None,
            transport: transport::Options::default(),
        }
    }

    /// The token sent with every connect.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.config.token = Some(token.into());
        self
    }

    /// Asks `provider` for a token before every connect and again before the
    /// token expires (then sent with `refresh`), instead of a fixed token.
    /// A failed fetch counts as a failed connection attempt and is retried.
    /// The provider and its future must be `Send` natively, not in the browser.
    pub fn token_provider<F, Fut, E>(mut self, provider: F) -> Self
    where
        F: Fn() -> Fut + SendOutsideWasm + SyncOutsideWasm + 'static,
        Fut: Future<Output = Result<String, E>> + SendOutsideWasm + 'static,
        E: fmt::Display,
    {
        self.token_provider = Some(TokenProvider(std::sync::Arc::new(move || {
            let token = provider();
            Box::pin(async move { token.await.map_err(|err| err.to_string()) })
        })));
        self.config.refresh_tokens = true;
        self
    }

    /// The client's display name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.client.name = name.into();
        self
    }

    /// What kind of party this is (`agent`, `app`, `service`, ...).
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.config.client.kind = kind.into();
        self
    }

    /// Where the client runs (`rust` by default; `mobile` gets a longer heartbeat).
    pub fn runtime(mut self, runtime: impl Into<String>) -> Self {
        self.config.client.runtime = runtime.into();
        self
    }

    /// The wire format (JSON by default).
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// How long a command waits for its reply (5 s by default).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// The reconnect delay bounds (500 ms to 20 s by default).
    pub fn reconnect(mut self, min: Duration, max: Duration) -> Self {
        self.config.backoff = Backoff::new(min, max);
        self
    }

    /// Most messages in one frame (100 by default).
    pub fn max_batch(mut self, messages: usize) -> Self {
        self.config.max_batch = messages;
        self
    }

    /// Bounds of the offline queue: publishes waiting while disconnected
    /// (100, for up to 10 s each, by default).
    pub fn offline_queue(mut self, capacity: usize, deadline: Duration) -> Self {
        self.config.offline_queue = capacity;
        self.config.offline_deadline = deadline;
        self
    }

    /// Starts the connection task and resolves once connected. It fails if the
    /// settings are invalid or the server refuses the connection for good;
    /// while the server cannot be reached it keeps retrying (bound the wait
    /// with a timeout if needed). Natively the task runs on the current tokio
    /// runtime; in the browser, on the page's event loop.
    pub async fn connect(self) -> Result<Client, Error> {
        self.check()?;
        let transport = transport::Transport::new(&self.transport)?;
        let mut config = self.config;
        config.seed = transport::seed();
        let (ops, ops_rx) = mpsc::unbounded_channel();
        let (state, state_rx) = watch::channel(State::Disconnected);
        let (events, _) = broadcast::channel(256);
        let (connected, is_connected) = oneshot::channel();
        let driver = Driver::new(
            transport,
            self.url,
            self.codec,
            Session::new(config),
            ops_rx,
            Dispatch::new(state, events.clone(), connected),
            self.token_provider,
        );
        transport::spawn(driver.run());
        is_connected.await.map_err(|_| Error::closed())??;
        Ok(Client {
            ops,
            state: state_rx,
            events,
        })
    }

    fn check(&self) -> Result<(), Error> {
        if !(self.url.starts_with("ws://") || self.url.starts_with("wss://")) {
            return Err(Error::builder(format!(
                "{:?} is not a ws:// or wss:// URL",
                self.url
            )));
        }
        if self.config.max_batch == 0 {
            return Err(Error::builder("max_batch must be at least 1"));
        }
        Ok(())
    }
}

/// A connection to a Sacred hub. Cheap to clone, no need to wrap it in `Arc`:
/// every clone talks to the same task, which owns the connection, reconnects
/// it and recovers subscriptions.
#[derive(Clone, Debug)]
pub struct Client {
    pub(crate) ops: mpsc::UnboundedSender<Op>,
    pub(crate) state: watch::Receiver<State>,
    pub(crate) events: broadcast::Sender<ClientEvent>,
}

impl Client {
    /// Starts building a client for `url` (`ws://` or `wss://`).
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(url.into())
    }

    async fn call(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<Reply, Error>>) -> Op,
    ) -> Result<Reply, Error> {
        let (reply, answer) = oneshot::channel();
        self.ops.send(op(reply)).map_err(|_| Error::closed())?;
        answer.await.map_err(|_| Error::closed())?
    }

    async fn request(&self, command: impl Into<Command>) -> Result<Reply, Error> {
        let command = command.into();
        self.call(|reply| Op::Request { command, reply }).await
    }

    /// Subscribes to `channel`; resolves once the server confirmed it.
    pub async fn subscribe(&self, channel: impl Into<String>) -> Result<Subscription, Error> {
        self.subscribe_with(channel, false).await
    }

    /// Subscribes, opting in to join and leave events.
    pub async fn subscribe_with(
        &self,
        channel: impl Into<String>,
        join_leave: bool,
    ) -> Result<Subscription, Error> {
        let channel = channel.into();
        let (events, receiver) = mpsc::unbounded_channel();
        let (ready, confirmed) = oneshot::channel();
        let op = Op::Subscribe {
            channel: channel.clone(),
            join_leave,
            events,
            ready,
        };
        self.ops.send(op).map_err(|_| Error::closed())?;
        confirmed.await.map_err(|_| Error::closed())??;
        Ok(Subscription {
            channel,
            events: receiver,
            ops: self.ops.clone(),
        })
    }

    /// Publishes and waits for the server's ack. While disconnected the
    /// publish waits in the offline queue.
    pub async fn publish(
        &self,
        channel: impl Into<String>,
        data: impl Into<Value>,
    ) -> Result<PublishReply, Error> {
        let (channel, data) = (channel.into(), data.into());
        match self
            .call(|reply| Op::Publish {
                channel,
                data,
                reply,
            })
            .await?
        {
            Reply::Publish(ack) => Ok(ack),
            other => Err(Error::transport(format!(
                "unexpected reply {:?}",
                other.kind()
            ))),
        }
    }

    /// Sends data to one client by id.
    pub async fn send(&self, to: impl Into<String>, data: impl Into<Value>) -> Result<(), Error> {
        self.request(SendRequest::new(to, data.into()))
            .await
            .map(drop)
    }

    /// Who is subscribed to `channel`.
    pub async fn presence(&self, channel: impl Into<String>) -> Result<Vec<Peer>, Error> {
        match self.request(PresenceRequest::new(channel)).await? {
            Reply::Presence(presence) => Ok(presence.clients),
            other => Err(Error::transport(format!(
                "unexpected reply {:?}",
                other.kind()
            ))),
        }
    }

    /// Reads a channel's history.
    pub async fn history(&self, request: HistoryRequest) -> Result<HistoryReply, Error> {
        match self.request(request).await? {
            Reply::History(history) => Ok(history),
            other => Err(Error::transport(format!(
                "unexpected reply {:?}",
                other.kind()
            ))),
        }
    }

    /// Calls an RPC handler of the host.
    pub async fn rpc(
        &self,
        method: impl Into<String>,
        data: impl Into<Value>,
    ) -> Result<Value, Error> {
        match self.request(RpcRequest::new(method, data.into())).await? {
            Reply::Rpc(rpc) => Ok(rpc.data),
            other => Err(Error::transport(format!(
                "unexpected reply {:?}",
                other.kind()
            ))),
        }
    }

    /// The server's clock (ms since the Unix epoch), estimated from round trips.
    pub async fn server_time(&self) -> Option<u64> {
        let (reply, answer) = oneshot::channel();
        self.ops.send(Op::ServerTime(reply)).ok()?;
        answer.await.ok().flatten()
    }

    /// The connection state now.
    pub fn state(&self) -> State {
        *self.state.borrow()
    }

    /// A watch of the connection state.
    pub fn state_changes(&self) -> watch::Receiver<State> {
        self.state.clone()
    }

    /// Connection-wide events (connected, disconnected, direct messages) from now on.
    pub fn events(&self) -> broadcast::Receiver<ClientEvent> {
        self.events.subscribe()
    }

    /// Closes the connection for good; pending calls fail with `is_closed()`.
    pub async fn close(&self) {
        let _ = self.ops.send(Op::Close);
        let mut state = self.state.clone();
        let _ = state.wait_for(|s| *s == State::Closed).await.map(drop);
    }
}

/// One subscribed channel: a [`Stream`] of its events. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    channel: String,
    events: mpsc::UnboundedReceiver<SubscriptionEvent>,
    ops: mpsc::UnboundedSender<Op>,
}

impl Subscription {
    /// The channel.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The next event; `None` once the subscription ended.
    pub async fn recv(&mut self) -> Option<SubscriptionEvent> {
        self.events.recv().await
    }

    /// The next publication, skipping other events; `None` once it ended.
    pub async fn next_publication(&mut self) -> Option<Publication> {
        loop {
            match self.events.recv().await? {
                SubscriptionEvent::Publication(publication) => return Some(publication),
                SubscriptionEvent::Unsubscribed { .. } => return None,
                _ => continue,
            }
        }
    }
}

impl Stream for Subscription {
    type Item = SubscriptionEvent;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<SubscriptionEvent>> {
        self.events.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self
            .ops
            .send(Op::Unsubscribe(std::mem::take(&mut self.channel)));
    }
}
