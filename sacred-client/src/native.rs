//! The native transport: a tokio task that owns the WebSocket (tokio-tungstenite,
//! rustls with the ring provider chosen explicitly) and drives the session.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::CertificateDer;
use sacred_proto::{Codec, Limits, ServerMessage};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::client::{Client, ClientBuilder, Op, TokenProvider};
use crate::dispatch::Dispatch;
use crate::error::Error;
use crate::event::{Action, State};
use crate::session::Session;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
type InFlight<T> = Pin<Box<dyn Future<Output = T> + Send>>;
/// A socket being opened, with the token fetched for it (if a provider is set).
type Opening = InFlight<Result<(Socket, Option<String>), Error>>;

/// How long closing a socket may take before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

impl ClientBuilder {
    /// Starts the connection task and resolves once connected. It fails if the
    /// settings are invalid or the server refuses the connection for good;
    /// while the server cannot be reached it keeps retrying (bound the wait
    /// with `tokio::time::timeout` if needed).
    pub async fn connect(self) -> Result<Client, Error> {
        self.check()?;
        let tls = tls_config(&self.root_certificates)?;
        let mut config = self.config;
        config.seed = rand::random();
        let (ops, ops_rx) = mpsc::unbounded_channel();
        let (state, state_rx) = watch::channel(State::Disconnected);
        let (events, _) = broadcast::channel(256);
        let (connected, is_connected) = oneshot::channel();
        let driver = Driver {
            url: self.url,
            codec: self.codec,
            tls,
            session: Session::new(config),
            start: Instant::now(),
            ops: ops_rx,
            dispatch: Dispatch::new(state, events.clone(), connected),
            socket: None,
            opening: None,
            token_provider: self.token_provider,
            fetching: None,
        };
        tokio::spawn(driver.run());
        is_connected.await.map_err(|_| Error::closed())??;
        Ok(Client {
            ops,
            state: state_rx,
            events,
        })
    }
}

fn tls_config(extra_roots: &[Vec<u8>]) -> Result<Arc<rustls::ClientConfig>, Error> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for der in extra_roots {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(|err| Error::builder(format!("invalid root certificate: {err}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| Error::builder(err.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

async fn open(url: String, codec: Codec, tls: Arc<rustls::ClientConfig>) -> Result<Socket, Error> {
    let mut request = url.into_client_request().map_err(Error::transport)?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(codec.subprotocol()),
    );
    let connector = Connector::Rustls(tls);
    let (socket, _) =
        tokio_tungstenite::connect_async_tls_with_config(request, None, true, Some(connector))
            .await
            .map_err(Error::transport)?;
    Ok(socket)
}

/// Limits for frames from the server: replies with history are large.
fn server_limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_frame_bytes = 64 << 20;
    limits.max_batch = 100_000;
    limits.max_depth = 64;
    limits
}

/// What woke the driver.
enum Wake {
    Op(Option<Op>),
    Frame(Option<Result<Message, tungstenite::Error>>),
    Opened(Box<Result<(Socket, Option<String>), Error>>),
    Token(Result<String, String>),
    Timer,
}

/// The task that owns the connection.
struct Driver {
    url: String,
    codec: Codec,
    tls: Arc<rustls::ClientConfig>,
    session: Session,
    /// The session's clock starts here.
    start: Instant,
    /// Requests from every handle.
    ops: mpsc::UnboundedReceiver<Op>,
    /// Hands the session's events to the handles waiting for them.
    dispatch: Dispatch,
    socket: Option<Socket>,
    /// A socket being opened.
    opening: Option<Opening>,
    token_provider: Option<TokenProvider>,
    /// A token being fetched for a refresh.
    fetching: Option<InFlight<Result<String, String>>>,
}

impl Driver {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    async fn run(mut self) {
        self.session.connect(self.now());
        loop {
            self.carry_out().await;
            if self.session.state() == State::Closed
                && self.socket.is_none()
                && self.opening.is_none()
            {
                return;
            }
            let wake = self.session.poll_timeout().map(|at| self.start + at);
            let woke = tokio::select! {
                op = self.ops.recv() => Wake::Op(op),
                frame = next_frame(&mut self.socket) => Wake::Frame(frame),
                opened = resolved(&mut self.opening) => Wake::Opened(Box::new(opened)),
                token = resolved(&mut self.fetching) => Wake::Token(token),
                () = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => Wake::Timer,
            };
            let now = self.now();
            match woke {
                Wake::Op(Some(op)) => {
                    self.dispatch
                        .apply(&mut self.session, self.start.elapsed(), op);
                    // Everything already waiting goes out in the same frame.
                    while let Ok(op) = self.ops.try_recv() {
                        self.dispatch
                            .apply(&mut self.session, self.start.elapsed(), op);
                    }
                }
                // Every handle is gone: nobody can use the connection any more.
                Wake::Op(None) => self.session.close(now),
                Wake::Frame(frame) => self.frame(frame),
                Wake::Opened(opened) => match *opened {
                    Ok((socket, token)) => {
                        if token.is_some() {
                            self.session.set_token(token);
                        }
                        self.socket = Some(socket);
                        self.session.handle_open(now);
                    }
                    // A failed attempt is a close like any other: the session
                    // schedules the retry and the application hears `Disconnected`.
                    Err(_) => self.session.handle_close(now, None),
                },
                Wake::Token(Ok(token)) => self.session.refresh(now, token),
                // The server closes with 3004 at expiry; the reconnect fetches again.
                Wake::Token(Err(_)) => {}
                Wake::Timer => self.session.handle_timeout(now),
            }
        }
    }

    fn frame(&mut self, frame: Option<Result<Message, tungstenite::Error>>) {
        let now = self.now();
        let bytes = match frame {
            Some(Ok(Message::Text(text))) if self.codec == Codec::Json => text.as_bytes().to_vec(),
            Some(Ok(Message::Binary(bytes))) if self.codec == Codec::MsgPack => bytes.to_vec(),
            Some(Ok(Message::Close(close))) => {
                self.socket = None;
                return self
                    .session
                    .handle_close(now, close.map(|c| u16::from(c.code)));
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => return,
            Some(Ok(_)) | Some(Err(_)) | None => {
                self.socket = None;
                return self.session.handle_close(now, None);
            }
        };
        match self.codec.decode::<ServerMessage>(&bytes, &server_limits()) {
            Ok(messages) => self.session.handle_frame(now, messages),
            // A server speaking something else: drop the link and reconnect.
            Err(_) => {
                self.socket = None;
                self.session.handle_close(now, None);
            }
        }
    }

    /// Does what the session asks until it asks nothing more.
    async fn carry_out(&mut self) {
        loop {
            let mut busy = false;
            while let Some(action) = self.session.poll_action() {
                busy = true;
                match action {
                    Action::Open { url } => {
                        let url = url.unwrap_or_else(|| self.url.clone());
                        let (codec, tls, provider) = (
                            self.codec,
                            Arc::clone(&self.tls),
                            self.token_provider.clone(),
                        );
                        self.opening = Some(Box::pin(async move {
                            let token = match provider {
                                Some(provider) => {
                                    Some(provider.fetch().await.map_err(Error::transport)?)
                                }
                                None => None,
                            };
                            Ok((open(url, codec, tls).await?, token))
                        }));
                    }
                    Action::FetchToken => {
                        self.fetching = self.token_provider.as_ref().map(TokenProvider::fetch)
                    }
                    Action::Close => {
                        self.opening = None;
                        if let Some(mut socket) = self.socket.take() {
                            let _ = tokio::time::timeout(CLOSE_GRACE, socket.close(None)).await;
                            self.session.handle_close(self.now(), None);
                        }
                    }
                }
            }
            if self.socket.is_some() && self.transmit().await.is_err() {
                self.socket = None;
                self.session.handle_close(self.now(), None);
                busy = true;
            }
            while let Some(event) = self.session.poll_event() {
                busy = true;
                self.dispatch.route(event);
            }
            if !busy {
                return;
            }
        }
    }

    /// Writes every queued frame, then flushes once.
    async fn transmit(&mut self) -> Result<(), tungstenite::Error> {
        let Some(socket) = self.socket.as_mut() else {
            return Ok(());
        };
        let mut written = false;
        while let Some(batch) = self.session.poll_transmit() {
            let encoded = if batch.len() == 1 {
                self.codec.encode(&batch[0])
            } else {
                self.codec.encode_batch(&batch)
            };
            let Ok(bytes) = encoded else { continue };
            let frame = match self.codec {
                Codec::Json => Message::text(String::from_utf8(bytes).unwrap_or_default()),
                Codec::MsgPack => Message::binary(bytes),
            };
            socket.feed(frame).await?;
            written = true;
        }
        if written {
            socket.flush().await?;
        }
        Ok(())
    }
}

async fn next_frame(socket: &mut Option<Socket>) -> Option<Result<Message, tungstenite::Error>> {
    match socket {
        Some(socket) => socket.next().await,
        None => std::future::pending().await,
    }
}

/// The output of the future in `slot`, which is then emptied; pending while empty.
async fn resolved<T>(slot: &mut Option<InFlight<T>>) -> T {
    let Some(future) = slot.as_mut() else {
        return std::future::pending().await;
    };
    let output = future.await;
    *slot = None;
    output
}
