//! The connection task, for every transport: it owns the session and the
//! socket, feeds the session what happened and carries out what it asks.
//! A transport ([`Transport`]) only opens sockets, moves frames and keeps
//! time; the native one is tokio-tungstenite, the browser's is `WebSocket`.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use sacred_proto::{Codec, DisconnectCode, Limits, ServerMessage};
use tokio::sync::mpsc;

use crate::dispatch::{Dispatch, RoomReady};
use crate::error::{Error, TokenFailure};
use crate::event::{Action, State};
use crate::op::{Op, TokenProvider};
use crate::platform::{BoxedFuture, SendOutsideWasm};
use crate::session::Session;

/// Opens sockets and keeps time for the driver.
pub(crate) trait Transport: Clone + SendOutsideWasm + 'static {
    /// An open WebSocket.
    type Socket: Socket;

    /// Opens a socket to `url` offering `codec`'s subprotocol; resolves once
    /// the handshake is done. Takes a clone, so the attempt owns what it needs.
    fn open(
        self,
        url: String,
        codec: Codec,
    ) -> impl Future<Output = Result<Self::Socket, Error>> + SendOutsideWasm + 'static;

    /// The session's clock: time since an origin the transport picked.
    fn now(&self) -> Duration;

    /// Resolves at `at` on the session's clock.
    fn sleep_until(&self, at: Duration) -> impl Future<Output = ()> + SendOutsideWasm;
}

/// An open WebSocket.
pub(crate) trait Socket: SendOutsideWasm + 'static {
    /// The next data frame, or how the socket ended.
    fn recv(&mut self) -> impl Future<Output = Incoming> + SendOutsideWasm;

    /// Sends `frames` (encoded by the session) in order, one WebSocket message
    /// each: text for JSON, binary for MessagePack. Writes them all before
    /// flushing once.
    fn send(
        &mut self,
        codec: Codec,
        frames: Vec<Vec<u8>>,
    ) -> impl Future<Output = Result<(), Error>> + SendOutsideWasm;

    /// Closes with 1000, waiting a short grace for the peer.
    fn close(self) -> impl Future<Output = ()> + SendOutsideWasm;
}

/// What a socket received.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A text message.
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// The socket ended, with the peer's close code and reason if it sent them.
    Closed(Option<(u16, String)>),
}

/// Limits for frames from the server: replies with history are large.
fn limits_for_server_frames() -> Limits {
    let mut limits = Limits::default();
    limits.max_frame_bytes = 64 << 20;
    limits.max_batch = 100_000;
    limits.max_depth = 64;
    limits
}

/// A socket being opened, with the token fetched for it.
type Opening<S> = BoxedFuture<Result<(S, Option<String>), Error>>;

/// What woke the driver.
enum Wake<S> {
    Op(Option<Op>),
    Frame(Incoming),
    Opened(Result<(S, Option<String>), Error>),
    Token(Result<String, TokenFailure>),
    Room(RoomReady),
    Timer,
}

/// The task that owns the connection.
pub(crate) struct Driver<T: Transport> {
    transport: T,
    url: String,
    codec: Codec,
    session: Session,
    /// Requests from every handle.
    ops: mpsc::UnboundedReceiver<Op>,
    /// Hands the session's events to the handles waiting for them.
    dispatch: Dispatch,
    socket: Option<T::Socket>,
    /// A socket being opened, with the token fetched for it (if a provider is set).
    opening: Option<Opening<T::Socket>>,
    token_provider: Option<TokenProvider>,
    /// A token being fetched for a refresh.
    fetching: Option<BoxedFuture<Result<String, TokenFailure>>>,
    /// The bounds frames from the server are decoded with.
    server_frames: Limits,
}

impl<T: Transport> Driver<T> {
    pub(crate) fn new(
        transport: T,
        url: String,
        codec: Codec,
        session: Session,
        ops: mpsc::UnboundedReceiver<Op>,
        dispatch: Dispatch,
        token_provider: Option<TokenProvider>,
    ) -> Driver<T> {
        Driver {
            transport,
            url,
            codec,
            session,
            ops,
            dispatch,
            socket: None,
            opening: None,
            token_provider,
            fetching: None,
            server_frames: limits_for_server_frames(),
        }
    }

    /// Runs until the session is closed and the socket is gone. It connects
    /// when a handle asks ([`Op::Connect`]).
    pub(crate) async fn run(mut self) {
        loop {
            self.carry_out().await;
            if self.session.state() == State::Closed
                && self.socket.is_none()
                && self.opening.is_none()
            {
                return;
            }
            let wake = self.session.poll_timeout();
            let woke = tokio::select! {
                op = self.ops.recv() => Wake::Op(op),
                frame = next_frame(&mut self.socket) => Wake::Frame(frame),
                opened = resolved(&mut self.opening) => Wake::Opened(opened),
                token = resolved(&mut self.fetching) => Wake::Token(token),
                room = self.dispatch.room() => Wake::Room(room),
                () = timer(&self.transport, wake) => Wake::Timer,
            };
            let now = self.transport.now();
            match woke {
                Wake::Op(Some(op)) => {
                    self.dispatch.apply(&mut self.session, now, op);
                    // Everything already waiting goes out in the same frame.
                    while let Ok(op) = self.ops.try_recv() {
                        self.dispatch.apply(&mut self.session, now, op);
                    }
                }
                // Every handle is gone: nobody can use the connection any more.
                Wake::Op(None) => self.session.close(now),
                Wake::Frame(frame) => self.frame(now, frame),
                Wake::Opened(Ok((socket, token))) => {
                    if token.is_some() {
                        self.session.set_token(token);
                    }
                    self.socket = Some(socket);
                    self.session.handle_open(now);
                }
                // A failed attempt is a close like any other: the session
                // schedules the retry; the application hears why, then `Disconnected`.
                Wake::Opened(Err(err)) => {
                    let close = (Self::close_code(&err), err.to_string());
                    self.dispatch.failed(err);
                    self.session.handle_close(now, Some(close));
                }
                Wake::Token(Ok(token)) => self.session.refresh(now, token),
                // The server closes with 3004 at expiry; the reconnect fetches
                // again. A provider that says `Unauthorized` ends the client now.
                Wake::Token(Err(failure)) => {
                    let err = Error::token(failure);
                    let close = (Self::close_code(&err), err.to_string());
                    self.dispatch.failed(err);
                    if close.0 != 1006 {
                        if let Some(socket) = self.socket.take() {
                            socket.close().await;
                        }
                        self.session.handle_close(now, Some(close));
                    }
                }
                Wake::Room(room) => self.dispatch.room_ready(&mut self.session, now, room),
                Wake::Timer => self.session.handle_timeout(now),
            }
        }
    }

    fn frame(&mut self, now: Duration, frame: Incoming) {
        let bytes = match (frame, self.codec) {
            (Incoming::Text(bytes), Codec::Json) | (Incoming::Binary(bytes), Codec::MsgPack) => {
                bytes
            }
            (Incoming::Closed(close), _) => {
                self.socket = None;
                return self.session.handle_close(now, close);
            }
            // The wrong kind of frame for the codec: the server speaks
            // something else; drop the link and reconnect.
            (Incoming::Text(_) | Incoming::Binary(_), _) => {
                return self.unreadable(now, "a frame of the wrong type for the codec".into());
            }
        };
        match self
            .codec
            .decode::<ServerMessage>(&bytes, &self.server_frames)
        {
            Ok(messages) => self.session.handle_frame(now, messages),
            Err(err) => self.unreadable(now, format!("an unreadable frame from the server: {err}")),
        }
    }

    /// The server sent something this client cannot read: report it, drop
    /// the link and reconnect.
    fn unreadable(&mut self, now: Duration, what: String) {
        self.socket = None;
        self.dispatch.failed(Error::transport(&what));
        self.session.handle_close(now, Some((1006, what)));
    }

    /// Does what the session asks until it asks nothing more.
    async fn carry_out(&mut self) {
        loop {
            let mut busy = false;
            while let Some(action) = self.session.poll_action() {
                busy = true;
                match action {
                    Action::Open { url } => self.open(url.unwrap_or_else(|| self.url.clone())),
                    Action::FetchToken => {
                        self.fetching = self.token_provider.as_ref().map(TokenProvider::fetch)
                    }
                    Action::Close => {
                        self.opening = None;
                        if let Some(socket) = self.socket.take() {
                            socket.close().await;
                            // The session closed it, and knows why.
                            self.session.handle_close(self.transport.now(), None);
                        }
                    }
                }
            }
            if self.socket.is_some()
                && let Err(err) = self.transmit().await
            {
                self.socket = None;
                let reason = err.to_string();
                self.dispatch.failed(err);
                self.session
                    .handle_close(self.transport.now(), Some((1006, reason)));
                busy = true;
            }
            while let Some(event) = self.session.poll_event() {
                busy = true;
                let now = self.transport.now();
                self.dispatch.route(&mut self.session, now, event);
            }
            if !busy {
                return;
            }
        }
    }

    /// The close a failed attempt counts as: 3507 (unauthorized, not
    /// retried) if the token provider said so, else 1006 (retried).
    fn close_code(err: &Error) -> u16 {
        if err.is_unauthorized() {
            DisconnectCode::UNAUTHORIZED.as_u16()
        } else {
            1006
        }
    }

    /// Starts opening a socket, fetching a token for it first if a provider is set.
    fn open(&mut self, url: String) {
        let (transport, codec, provider) = (
            self.transport.clone(),
            self.codec,
            self.token_provider.clone(),
        );
        self.opening = Some(Box::pin(async move {
            let token = match provider {
                Some(provider) => Some(provider.fetch().await.map_err(Error::token)?),
                None => None,
            };
            Ok((transport.open(url, codec).await?, token))
        }));
    }

    /// Sends every frame the session has ready, with one flush.
    async fn transmit(&mut self) -> Result<(), Error> {
        let Some(socket) = self.socket.as_mut() else {
            return Ok(());
        };
        let frames: Vec<Vec<u8>> = std::iter::from_fn(|| self.session.poll_transmit()).collect();
        if frames.is_empty() {
            return Ok(());
        }
        socket.send(self.codec, frames).await
    }
}

async fn next_frame<S: Socket>(socket: &mut Option<S>) -> Incoming {
    match socket {
        Some(socket) => socket.recv().await,
        None => std::future::pending().await,
    }
}

/// Resolves at `wake` on the session's clock; pending if there is nothing to wake for.
async fn timer<T: Transport>(transport: &T, wake: Option<Duration>) {
    match wake {
        Some(at) => transport.sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The output of the future in `slot`, which is then emptied; pending while empty.
async fn resolved<T>(slot: &mut Option<BoxedFuture<T>>) -> T {
    let Some(future) = slot.as_mut() else {
        return std::future::pending().await;
    };
    let output = future.await;
    *slot = None;
    output
}
