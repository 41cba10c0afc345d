//! `ClientBuilder`: every setting of a client, checked by `build()`.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use sacred_proto::{ClientInfo, Codec, Limits};
use tokio::sync::{mpsc, watch};

use crate::backoff::Backoff;
use crate::client::Client;
use crate::dispatch::{Dispatch, SharedStatus};
use crate::driver::Driver;
use crate::error::Error;
use crate::error::TokenFailure;
use crate::event::State;
use crate::op::TokenProvider;
use crate::platform::{SendOutsideWasm, SyncOutsideWasm};
use crate::session::{Session, SessionConfig};
use crate::transport;

/// Builds a [`Client`]. Setters take and return the builder; invalid settings
/// are reported by [`ClientBuilder::build`] (or `connect`), never by a panic.
#[derive(Debug)]
#[must_use]
pub struct ClientBuilder {
    pub(crate) url: String,
    pub(crate) config: SessionConfig,
    pub(crate) token_provider: Option<TokenProvider>,
    connect_timeout: Option<Duration>,
    subscription_buffer: usize,
    message_buffer: usize,
    /// What only this target's transport has.
    pub(crate) transport: transport::Options,
}

impl ClientBuilder {
    pub(crate) fn new(url: String) -> ClientBuilder {
        let client = ClientInfo::new(
            "",
            "app",
            default_runtime(),
            concat!("sacred-client/", env!("CARGO_PKG_VERSION")),
        );
        let config = SessionConfig {
            client,
            ..SessionConfig::default()
        };
        ClientBuilder {
            url,
            config,
            token_provider: None,
            connect_timeout: Some(Duration::from_secs(10)),
            subscription_buffer: 1024,
            message_buffer: 1024,
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
    /// A failed fetch counts as a failed connection attempt and is retried,
    /// except [`Unauthorized`](crate::Unauthorized), which closes the client
    /// (3507): the user may not connect.
    /// The provider and its future must be `Send` natively, not in the browser.
    pub fn token_provider<F, Fut, E>(mut self, provider: F) -> Self
    where
        F: Fn() -> Fut + SendOutsideWasm + SyncOutsideWasm + 'static,
        Fut: Future<Output = Result<String, E>> + SendOutsideWasm + 'static,
        E: fmt::Display + 'static,
    {
        self.token_provider = Some(TokenProvider(std::sync::Arc::new(move || {
            let token = provider();
            Box::pin(async move { token.await.map_err(TokenFailure::new) })
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

    /// Where the client runs (`rust`, or `browser` on wasm32, by default;
    /// `mobile` gets a longer heartbeat).
    pub fn runtime(mut self, runtime: impl Into<String>) -> Self {
        self.config.client.runtime = runtime.into();
        self
    }

    /// The client software's version (`sacred-client/<version>` by default);
    /// bindings and wrappers name themselves here.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.config.client.version = version.into();
        self
    }

    /// The wire format (JSON by default).
    pub fn codec(mut self, codec: Codec) -> Self {
        self.config.codec = codec;
        self
    }

    /// How long a command waits for its reply (5 s by default).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// How long `connect()` waits for the first connection before it fails
    /// with `is_timeout()`, naming why the last attempt failed (that error is
    /// also its `source()`). 10 s by default; `Duration::MAX` waits as long
    /// as attempts fail in a way worth retrying. Each failed attempt is also
    /// reported on [`Client::events`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = (timeout != Duration::MAX).then_some(timeout);
        self
    }

    /// The reconnect delay bounds (500 ms to 20 s by default).
    pub fn reconnect(mut self, min: Duration, max: Duration) -> Self {
        self.config.backoff = Backoff::new(min, max);
        self
    }

    /// Most messages in one frame (100 by default; the server's own limit,
    /// announced when connecting, applies too).
    pub fn max_batch(mut self, messages: usize) -> Self {
        self.config.max_batch = messages;
        self
    }

    /// Bounds of the offline queue: commands waiting while disconnected
    /// (100, for up to 10 s each, by default).
    pub fn offline_queue(mut self, capacity: usize, deadline: Duration) -> Self {
        self.config.offline_queue = capacity;
        self.config.offline_deadline = deadline;
        self
    }

    /// Events each [`Subscription`](crate::Subscription) buffers for a
    /// reader that falls behind (1024 by default). Past it, a channel with
    /// history pauses and recovers; see the `stream` docs of the crate.
    pub fn subscription_buffer(mut self, events: usize) -> Self {
        self.subscription_buffer = events;
        self
    }

    /// Direct messages each [`Messages`](crate::Messages) reader buffers, and
    /// how many wait for the first reader (1024 by default).
    pub fn message_buffer(mut self, messages: usize) -> Self {
        self.message_buffer = messages;
        self
    }

    /// Checks the settings and starts the connection task, not yet connected:
    /// listen to [`Client::events`] first, then [`Client::connect`], and no
    /// event is missed. Natively the task runs on the current tokio runtime
    /// (it is an error to build outside one); in the browser, on the page's
    /// event loop.
    pub fn build(self) -> Result<Client, Error> {
        self.check()?;
        let transport = transport::Transport::new(&self.transport)?;
        let mut config = self.config;
        config.seed = transport::seed();
        let (ops, ops_rx) = mpsc::unbounded_channel();
        let (state, state_rx) = watch::channel(State::Disconnected);
        let status = SharedStatus::default();
        let dispatch = Dispatch::new(state, status.clone(), self.message_buffer);
        let driver = Driver::new(
            transport,
            self.url,
            config.codec,
            Session::new(config),
            ops_rx,
            dispatch,
            self.token_provider,
        );
        transport::spawn(driver.run())?;
        Ok(Client::new(
            ops,
            state_rx,
            status,
            self.connect_timeout,
            self.subscription_buffer,
            self.message_buffer,
        ))
    }

    /// Builds the client and connects it: resolves once connected. It fails
    /// if the settings are invalid, if the server refuses the connection for
    /// good, or after [`ClientBuilder::connect_timeout`]; the client is then
    /// closed. Use [`ClientBuilder::build`] to see connection events from the
    /// first attempt on.
    pub async fn connect(self) -> Result<Client, Error> {
        let client = self.build()?;
        match client.connect().await {
            Ok(()) => Ok(client),
            Err(err) => {
                client.stop();
                Err(err)
            }
        }
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
        if self.subscription_buffer < 2 || self.message_buffer < 2 {
            return Err(Error::builder("buffers must hold at least 2 events"));
        }
        let max = Limits::default().max_client_info_bytes;
        let info = &self.config.client;
        for (field, value) in [
            ("name", &info.name),
            ("kind", &info.kind),
            ("runtime", &info.runtime),
            ("version", &info.version),
        ] {
            if value.len() > max {
                return Err(Error::builder(format!(
                    "{field} is {} bytes; servers accept at most {max}",
                    value.len()
                )));
            }
        }
        Ok(())
    }
}

/// What `runtime` says by default: the browser's client says so.
fn default_runtime() -> &'static str {
    if cfg!(target_arch = "wasm32") {
        "browser"
    } else {
        "rust"
    }
}
