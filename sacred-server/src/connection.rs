//! One task per socket: reads frames, enforces the protocol and its timers,
//! executes commands against the hub and queues their replies.
//!
//! Commands of one connection run in order, one at a time; a slow RPC delays
//! the commands sent after it on the same connection, nobody else's.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use axum::http::HeaderMap;
use futures_util::StreamExt;
use futures_util::stream::SplitStream;
use sacred_proto::{
    ClientMessage, Codec, Command, CommandKind, ConnectReply, ConnectRequest, DisconnectCode,
    ErrorCode, Peer, Ping, PongReply, PresenceReply, RefreshReply, RefreshRequest, Reply,
    ReplyError, RpcReply, RpcRequest, SendReply, ServerMessage, SubscribeRequest, UnsubscribeReply,
    Unsubscribed,
};
use tokio::time::{Instant, sleep_until};
use tracing::Instrument;

use crate::audit::{AuditEvent, AuditKind};
use crate::auth::{AuthError, ConnectContext, Identity};
use crate::hooks::{ClientContext, DisconnectContext, guarded};
use crate::hub::Hub;
use crate::id::random_id;
use crate::outbound::{self, Closing, Outbound};
use crate::rpc::RpcContext;
use crate::time::now_ms;
use crate::trace;

/// The channel a command is about, for its span.
fn channel_of(command: &Command) -> Option<&str> {
    match command {
        Command::Subscribe(c) => Some(&c.channel),
        Command::Unsubscribe(c) => Some(&c.channel),
        Command::Publish(c) => Some(&c.channel),
        Command::Presence(c) => Some(&c.channel),
        Command::History(c) => Some(&c.channel),
        Command::Search(c) => Some(&c.channel),
        _ => None,
    }
}

/// What the HTTP request that opened the socket said: kept for the
/// authenticator until `connect`, then dropped (an idle connection does not
/// carry its headers).
#[derive(Debug, Default)]
pub(crate) struct Upgrade {
    pub(crate) headers: HeaderMap,
    pub(crate) remote_addr: Option<SocketAddr>,
}

/// Runs a connection until it closes, then removes it from the hub.
pub(crate) async fn serve(hub: Hub, socket: WebSocket, codec: Codec, upgrade: Upgrade) {
    let (sink, mut stream) = socket.split();
    let outbound = Outbound::new(codec, hub.options().outbound_queue_bytes);
    let writer = tokio::spawn(outbound::write(
        sink,
        outbound.clone(),
        hub.options().write_delay,
        hub.inner.metrics.sent_bytes.clone(),
    ));
    let mut connection = Connection {
        connect_deadline: Instant::now() + hub.options().connect_timeout,
        remote_addr: upgrade.remote_addr,
        upgrade: Some(Box::new(upgrade)),
        hub,
        codec,
        outbound,
        session: None,
        subs: HashSet::new(),
        pong_due: None,
        ping_sent: None,
        peer_close: None,
        rate: None,
    };
    connection.run(&mut stream).await;
    // Boxed, like every step that runs once: the task's size is that of its
    // largest state, and an idle connection should not carry this one's.
    Box::pin(connection.leave()).await;
    let _ = writer.await;
    let (code, reason) = connection.ended();
    connection.hub.inner.metrics.disconnected(code);
    Box::pin(connection.tell_host(code, reason)).await;
}

struct Connection {
    hub: Hub,
    codec: Codec,
    outbound: Outbound,
    /// The upgrade request, until `connect` (boxed: most of its life a
    /// connection has none).
    upgrade: Option<Box<Upgrade>>,
    remote_addr: Option<SocketAddr>,
    /// Set by a successful `connect`.
    session: Option<Session>,
    /// Channels this connection is subscribed to.
    subs: HashSet<String>,
    /// Before `connect`: when the socket is closed as stale.
    connect_deadline: Instant,
    /// After a ping: when the connection is closed unless a command arrives.
    pong_due: Option<Instant>,
    /// When the last ping went, until its pong (the heartbeat round trip).
    ping_sent: Option<Instant>,
    /// The code and reason of the client's close frame, if it sent one.
    peer_close: Option<(u16, String)>,
    /// The command rate limit of the connection's tier, if it has one
    /// (boxed: a connection without a limit carries none).
    rate: Option<Box<Rate>>,
}

/// Refusals in a row after which a flooding connection is closed (3007).
const MAX_REFUSED: u32 = 10;

/// A connection's command rate: a token bucket, and the refusals in a row.
struct Rate {
    bucket: governor::DefaultDirectRateLimiter,
    refused: u32,
}

impl Rate {
    fn new(tier: crate::options::Tier, clock: &governor::clock::DefaultClock) -> Option<Box<Rate>> {
        let rate = std::num::NonZeroU32::new(tier.messages_per_minute)?;
        let burst = std::num::NonZeroU32::new(tier.message_burst).unwrap_or(rate);
        let quota = governor::Quota::per_minute(rate).allow_burst(burst);
        Some(Box::new(Rate {
            bucket: governor::RateLimiter::direct_with_clock(quota, clock.clone()),
            refused: 0,
        }))
    }
}

struct Session {
    peer: Peer,
    ping_interval: Duration,
    next_ping: Instant,
    /// When the token expires, if it does.
    expires: Option<Instant>,
    /// When it connected, milliseconds since the Unix epoch.
    connected_ms: u64,
    /// Publishes and direct messages accepted from it.
    messages: u64,
    /// The channels its credential allows, if it limits them.
    channels: Option<Vec<String>>,
}

/// What the client said of itself, with the fields its credential vouches
/// for in their place.
fn vouched_info(
    mut said: sacred_proto::ClientInfo,
    vouched: Option<sacred_proto::ClientInfo>,
) -> sacred_proto::ClientInfo {
    if let Some(vouched) = vouched {
        for (field, value) in [
            (&mut said.name, vouched.name),
            (&mut said.kind, vouched.kind),
            (&mut said.runtime, vouched.runtime),
        ] {
            if !value.is_empty() {
                *field = value;
            }
        }
    }
    said
}

/// A far-away instant for timer branches that are switched off.
fn never() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

fn deadline_from_ms(expires_ms: Option<u64>) -> Option<Instant> {
    expires_ms.map(|ms| Instant::now() + Duration::from_millis(ms.saturating_sub(now_ms())))
}

impl Connection {
    async fn run(&mut self, stream: &mut SplitStream<WebSocket>) {
        let mut closing = self.outbound.closing();
        loop {
            // One timer for the earliest deadline: an idle connection's task
            // is smaller than with one `Sleep` per deadline.
            let deadline = self.next_deadline();
            tokio::select! {
                biased;
                _ = outbound::closed(&mut closing) => return,
                frame = stream.next() => match frame {
                    // Boxed: the command's state lives on the heap while it
                    // runs, not in every idle connection's task.
                    Some(Ok(Message::Text(text))) if self.codec == Codec::Json => Box::pin(self.frame(text.as_bytes())).await,
                    Some(Ok(Message::Binary(bytes))) if self.codec == Codec::MsgPack => Box::pin(self.frame(&bytes)).await,
                    Some(Ok(Message::Text(_) | Message::Binary(_))) => {
                        tracing::debug!("frame of the wrong WebSocket type for the negotiated codec");
                        self.outbound.close(DisconnectCode::BAD_REQUEST);
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(frame))) => {
                        // A close frame without a code is 1005, "no status" (RFC 6455, 7.4.1).
                        self.peer_close = Some(frame.map_or((1005, String::new()), |frame| {
                            (frame.code, frame.reason.to_string())
                        }));
                        self.outbound.peer_gone();
                    }
                    Some(Err(err)) => self.transport_error(err),
                    None => self.outbound.peer_gone(),
                },
                _ = sleep_until(deadline.unwrap_or_else(never)), if deadline.is_some() => self.deadline_passed(),
            }
        }
    }

    /// What the WebSocket layer refused before Sacred saw a frame gets the
    /// code the protocol gives it, with a close frame, where the socket can
    /// still carry one: invalid UTF-8 in a text frame is 3501 like any other
    /// undecodable frame, a frame over the transport's cap is 3506 (message
    /// too big). Anything else means the peer is gone.
    fn transport_error(&mut self, err: axum::Error) {
        use tungstenite::error::{Error, ProtocolError};
        let code = match err.into_inner().downcast::<Error>().map(|err| *err) {
            Ok(Error::Utf8(_)) => Some(DisconnectCode::BAD_REQUEST),
            Ok(Error::Capacity(_)) => Some(DisconnectCode::MESSAGE_TOO_BIG),
            Ok(Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => None,
            Ok(Error::Protocol(_)) => Some(DisconnectCode::BAD_REQUEST),
            Ok(_) | Err(_) => None,
        };
        match code {
            Some(code) => {
                tracing::debug!(%code, "frame refused by the WebSocket layer");
                self.outbound.close(code);
            }
            None => self.outbound.peer_gone(),
        }
    }

    /// The earliest of the connect deadline (before `connect`), the pong
    /// deadline, the token's expiry and the next ping.
    fn next_deadline(&self) -> Option<Instant> {
        let connect = self.session.is_none().then_some(self.connect_deadline);
        let expires = self.session.as_ref().and_then(|s| s.expires);
        let next_ping = self.session.as_ref().map(|s| s.next_ping);
        [connect, self.pong_due, expires, next_ping]
            .into_iter()
            .flatten()
            .min()
    }

    /// Acts on the deadlines that passed, most severe first.
    fn deadline_passed(&mut self) {
        let now = Instant::now();
        let passed = |deadline: Option<Instant>| deadline.is_some_and(|at| at <= now);
        if self.session.is_none() && self.connect_deadline <= now {
            self.outbound.close(DisconnectCode::STALE);
        } else if passed(self.pong_due) {
            self.outbound.close(DisconnectCode::NO_PONG);
        } else if passed(self.session.as_ref().and_then(|s| s.expires)) {
            self.outbound.close(DisconnectCode::TOKEN_EXPIRED);
        } else if passed(self.session.as_ref().map(|s| s.next_ping)) {
            self.ping();
        }
    }

    fn ping(&mut self) {
        if let Some(session) = &mut self.session {
            session.next_ping += session.ping_interval;
            self.pong_due
                .get_or_insert_with(|| Instant::now() + self.hub.options().pong_timeout);
            self.ping_sent.get_or_insert_with(Instant::now);
            self.outbound
                .send_message(&ServerMessage::push(Ping::new(now_ms())));
        }
    }

    async fn frame(&mut self, bytes: &[u8]) {
        self.hub
            .inner
            .metrics
            .received_bytes
            .increment(bytes.len() as u64);
        let limits = &self.hub.options().limits;
        let messages = match self.codec.decode::<ClientMessage>(bytes, limits) {
            Ok(messages) => messages,
            Err(err) => {
                tracing::debug!(%err, "refused frame");
                self.outbound.close(err.disconnect_code());
                return;
            }
        };
        // Any command shows the client is alive.
        self.pong_due = None;
        for message in messages {
            if self.outbound.is_closing() {
                return;
            }
            if let Err(err) = message.validate(&self.hub.options().limits) {
                self.outbound
                    .send_message(&ServerMessage::error(message.id, err));
                continue;
            }
            let ClientMessage { id, command } = message;
            if let Command::Connect(connect) = command {
                let started = Instant::now();
                let span = trace::connect_span(&connect.client);
                self.connect(id, connect).instrument(span.clone()).await;
                if let Some(outbound::Closing::Disconnect(code, _)) =
                    &*self.outbound.closing().borrow()
                {
                    trace::refused(&span, u32::from(code.as_u16()));
                }
                let took = started.elapsed();
                self.hub.inner.metrics.command(CommandKind::Connect, took);
                continue;
            }
            let Some(peer) = self.session.as_ref().map(|session| session.peer.clone()) else {
                tracing::debug!("command before connect");
                self.outbound.close(DisconnectCode::BAD_REQUEST);
                return;
            };
            if let (Some(rate), false) = (&mut self.rate, matches!(command, Command::Pong(_))) {
                if rate.bucket.check().is_err() {
                    rate.refused += 1;
                    if rate.refused > MAX_REFUSED {
                        tracing::debug!(client = %peer.id, "closed: it kept sending past its rate");
                        self.outbound.close(DisconnectCode::TOO_MANY_REQUESTS);
                        return;
                    }
                    let metrics = &self.hub.inner.metrics;
                    metrics.rate_limited.increment(1);
                    metrics.error(ErrorCode::TOO_MANY_REQUESTS);
                    self.outbound
                        .send_message(&ServerMessage::error(id, ErrorCode::TOO_MANY_REQUESTS));
                    continue;
                }
                rate.refused = 0;
            }
            self.execute(id, command, peer).await;
        }
    }

    /// Runs a command of a connected client and queues its reply.
    async fn execute(&mut self, id: u32, command: Command, peer: Peer) {
        let kind = command.kind();
        let started = Instant::now();
        // A pong every heartbeat would be most of the spans, and says nothing.
        let span = if kind == CommandKind::Pong {
            tracing::Span::none()
        } else {
            trace::command_span(kind, &peer, channel_of(&command))
        };
        if let Command::Publish(publish) = &command
            && let Some(traceparent) = &publish.traceparent
        {
            trace::continue_trace(&span, traceparent);
        }
        let result = self
            .run_command(command, peer)
            .instrument(span.clone())
            .await;
        let metrics = &self.hub.inner.metrics;
        metrics.command(kind, started.elapsed());
        if let Err(err) = &result {
            metrics.error(err.error_code());
            trace::refused(&span, err.code);
        }
        let reply = ServerMessage::Reply { id, result };
        if kind == CommandKind::Subscribe {
            // Its publications were held behind the reply (see `subscribe`).
            self.outbound.release(&reply);
        } else {
            self.outbound.send_message(&reply);
        }
    }

    /// A command's reply, or why it was refused.
    async fn run_command(&mut self, command: Command, peer: Peer) -> Result<Reply, ReplyError> {
        let message = matches!(command, Command::Publish(_) | Command::Send(_));
        let result = match command {
            Command::Connect(_) => Err(ErrorCode::ALREADY_CONNECTED.into()),
            Command::Subscribe(subscribe) => {
                self.outbound.hold();
                return self.subscribe(&peer, &subscribe).await.map(Reply::from);
            }
            Command::Unsubscribe(unsubscribe) => {
                let result = self.hub.unsubscribe(&peer.id, &unsubscribe.channel).await;
                if result.is_ok() {
                    self.subs.remove(&unsubscribe.channel);
                }
                result.map(|()| UnsubscribeReply::default().into())
            }
            Command::Publish(publish) => self
                .hub
                .publish_from(peer, &publish.channel, publish.data, publish.traceparent)
                .await
                .map(Reply::from),
            Command::Send(send) => self
                .hub
                .send_from(peer, &send.to, send.data)
                .await
                .map(|()| SendReply::default().into()),
            Command::Presence(presence) => match self.may_use(&presence.channel) {
                Ok(()) => self
                    .hub
                    .presence_of(&peer, &presence.channel)
                    .await
                    .map(|clients| {
                        let mut reply = PresenceReply::default();
                        reply.clients = clients;
                        reply.into()
                    }),
                Err(err) => Err(err),
            },
            Command::History(history) => match self.may_use(&history.channel) {
                Ok(()) => self.hub.history_of(&peer, &history).await.map(Reply::from),
                Err(err) => Err(err),
            },
            Command::Rpc(rpc) => self.rpc(peer, rpc).await,
            Command::Pong(_) => {
                if let Some(sent) = self.ping_sent.take() {
                    let rtt = sent.elapsed().as_secs_f64();
                    self.hub.inner.metrics.heartbeat_rtt.record(rtt);
                }
                Ok(PongReply::new(now_ms()).into())
            }
            Command::Refresh(refresh) => self.refresh(&peer, refresh).await,
            Command::Search(search) => match self.may_use(&search.channel) {
                Ok(()) => self.hub.search_of(&peer, &search).await.map(Reply::from),
                Err(err) => Err(err),
            },
        };
        if let (true, Ok(_), Some(session)) = (message, &result, &mut self.session) {
            session.messages += 1;
        }
        result
    }

    async fn connect(&mut self, id: u32, request: ConnectRequest) {
        if self.session.is_some() {
            return self
                .outbound
                .send_message(&ServerMessage::error(id, ErrorCode::ALREADY_CONNECTED));
        }
        let hub = self.hub.clone();
        if let Some(wait) = self
            .ip()
            .and_then(|ip| hub.inner.admission.lockout.locked(ip))
        {
            tracing::debug!(?wait, "connect refused: the address is locked out");
            hub.inner
                .metrics
                .refused(crate::telemetry::Refusal::Lockout);
            return self.outbound.close_with(
                DisconnectCode::TOO_MANY_REQUESTS,
                "this address failed to authenticate too often; retry later",
            );
        }
        let upgrade = self.upgrade.take().unwrap_or_default();
        let context = ConnectContext {
            token: request.token,
            client: request.client,
            data: request.data,
            remote_addr: upgrade.remote_addr,
            headers: upgrade.headers,
            refresh: false,
        };
        let verdict = guarded(
            "authenticator",
            hub.inner.auth.authenticate(&context),
            hub.options().rpc_timeout,
        )
        .await;
        let identity = match verdict {
            Ok(Ok(identity)) => {
                self.authenticated();
                identity
            }
            Ok(Err(err)) => {
                tracing::debug!(%err, "connect refused");
                hub.inner.metrics.refused(crate::telemetry::Refusal::Auth);
                self.failed_authentication(&err, "connect", None);
                return self.outbound.close(err.disconnect_code());
            }
            Err(err) => {
                tracing::warn!(%err, "the authenticator failed");
                return self.outbound.close(DisconnectCode::SERVER_ERROR);
            }
        };
        let client = vouched_info(context.client, identity.info);
        let peer = Peer::new(random_id(12), identity.user, client);
        tracing::Span::current().record("client.id", peer.id.as_str());
        let options = hub.options();
        let ping_interval = if peer.info.runtime == "mobile" {
            options.mobile_ping_interval
        } else {
            options.ping_interval
        };
        let mut reply = ConnectReply::new(
            peer.id.clone(),
            ping_interval.as_millis().try_into().unwrap_or(u32::MAX),
            options
                .pong_timeout
                .as_millis()
                .try_into()
                .unwrap_or(u32::MAX),
            now_ms(),
        );
        reply.version = concat!("sacred-server/", env!("CARGO_PKG_VERSION")).to_owned();
        reply.expires = identity.expires;
        reply.data = identity.data;
        reply.limits = Some(options.limits.clone());
        if let Err(reason) = hub
            .register(&peer, self.outbound.clone(), identity.credential)
            .await
        {
            return self
                .outbound
                .close_with(DisconnectCode::CONNECTION_LIMIT, reason);
        }
        self.rate = Rate::new(
            options.tier(identity.tier.as_deref()),
            &hub.inner.admission.clock,
        );
        self.session = Some(Session {
            peer: peer.clone(),
            ping_interval,
            next_ping: Instant::now() + ping_interval,
            expires: deadline_from_ms(identity.expires),
            connected_ms: now_ms(),
            messages: 0,
            channels: identity.channels,
        });

        self.outbound.hold();
        let mut refused = Vec::new();
        for sub in &request.subs {
            if self.subs.contains(&sub.channel) {
                // Listed twice: subscribed once, the duplicate ignored.
                continue;
            }
            match self.subscribe(&peer, sub).await {
                Ok(result) => drop(reply.subs.insert(sub.channel.clone(), result)),
                Err(err) => refused.push(Unsubscribed::new(
                    sub.channel.clone(),
                    err.error_code(),
                    err.message,
                )),
            }
        }
        self.outbound.release(&ServerMessage::reply(id, reply));
        for unsubscribed in refused {
            self.outbound
                .send_message(&ServerMessage::push(unsubscribed));
        }
        let connected = ClientContext {
            client: peer,
            remote_addr: self.remote_addr,
        };
        hub.inner
            .hooks
            .connected(connected, hub.options().rpc_timeout)
            .await;
    }

    async fn subscribe(
        &mut self,
        peer: &Peer,
        request: &SubscribeRequest,
    ) -> Result<sacred_proto::SubscribeReply, ReplyError> {
        if self.subs.contains(&request.channel) {
            return Err(ErrorCode::ALREADY_SUBSCRIBED.into());
        }
        self.may_use(&request.channel)?;
        if self.subs.len() >= self.hub.options().max_channels_per_connection {
            return Err(ReplyError::new(
                ErrorCode::LIMIT_EXCEEDED,
                "too many subscriptions on this connection",
            ));
        }
        let reply = self.hub.subscribe(peer, &self.outbound, request).await?;
        self.subs.insert(request.channel.clone());
        Ok(reply)
    }

    async fn rpc(&self, caller: Peer, request: RpcRequest) -> Result<Reply, ReplyError> {
        let handler = self.hub.inner.rpc.get(&request.method).cloned();
        let handler = handler.ok_or_else(|| ReplyError::from(ErrorCode::METHOD_NOT_FOUND))?;
        let context = RpcContext {
            caller,
            method: request.method,
        };
        let timeout = self.hub.options().rpc_timeout;
        match guarded("rpc", handler.call(context, request.data), timeout).await? {
            Ok(data) => Ok(RpcReply::new(data).into()),
            Err(err) => Err(err.into()),
        }
    }

    async fn refresh(&mut self, peer: &Peer, request: RefreshRequest) -> Result<Reply, ReplyError> {
        if peer.user.is_none() {
            return Err(ReplyError::new(
                ErrorCode::UNAUTHORIZED,
                "an anonymous connection has no token to refresh: reconnect with a token",
            ));
        }
        let context = ConnectContext {
            token: Some(request.token),
            client: peer.info.clone(),
            remote_addr: self.remote_addr,
            refresh: true,
            ..ConnectContext::default()
        };
        if self
            .ip()
            .and_then(|ip| self.hub.inner.admission.lockout.locked(ip))
            .is_some()
        {
            return Err(ReplyError::new(
                ErrorCode::TOO_MANY_REQUESTS,
                "this address failed to authenticate too often; retry later",
            ));
        }
        let timeout = self.hub.options().rpc_timeout;
        let identity = guarded(
            "authenticator",
            self.hub.inner.auth.authenticate(&context),
            timeout,
        )
        .await?
        .map_err(|err| {
            self.failed_authentication(&err, "refresh", peer.user.as_deref());
            ReplyError::new(ErrorCode::UNAUTHORIZED, err.to_string())
        })?;
        self.authenticated();
        if identity.user != peer.user {
            return Err(ReplyError::new(
                ErrorCode::UNAUTHORIZED,
                "the new token names another user",
            ));
        }
        if let Some(session) = &mut self.session {
            session.expires = deadline_from_ms(identity.expires);
        }
        self.hub.set_credential(&peer.id, identity.credential);
        let mut reply = RefreshReply::default();
        reply.expires = identity.expires;
        Ok(reply.into())
    }

    /// The client's address, when the host serves connect info.
    fn ip(&self) -> Option<IpAddr> {
        self.remote_addr.map(|addr| addr.ip().to_canonical())
    }

    /// Records a refused `connect` or `refresh` in the audit trail, and
    /// counts a wrong token against the client's address (a missing one, or
    /// an identity refused by policy, is not a guess).
    fn failed_authentication(&self, err: &AuthError, during: &str, user: Option<&str>) {
        let ip = self.ip();
        self.hub.inner.metrics.auth_failures.increment(1);
        self.hub.audit(
            AuditEvent::new(AuditKind::AuthFailure, format!("{during}: {err}"))
                .address(ip)
                .user(user),
        );
        if let (AuthError::InvalidToken, Some(ip)) = (err, ip) {
            self.hub.failed_authentication(ip);
        }
    }

    fn authenticated(&self) {
        if let Some(ip) = self.ip() {
            self.hub.inner.admission.lockout.succeeded(ip);
        }
    }

    /// Refuses a channel the connection's credential does not list.
    fn may_use(&self, channel: &str) -> Result<(), ReplyError> {
        let channels = self.session.as_ref().and_then(|s| s.channels.as_deref());
        if Identity::may_use(channels, channel) {
            Ok(())
        } else {
            Err(ReplyError::new(
                ErrorCode::PERMISSION_DENIED,
                "the credential does not allow this channel",
            ))
        }
    }

    /// Leaves every channel and the client registry.
    async fn leave(&mut self) {
        let Some(session) = &self.session else { return };
        for channel in self.subs.drain() {
            let _ = self.hub.unsubscribe(&session.peer.id, &channel).await;
        }
        self.hub.unregister(&session.peer).await;
    }

    /// How the connection ended: the server's close code and reason, the
    /// client's close frame, or 1006 (abnormal closure) without either.
    fn ended(&mut self) -> (u16, String) {
        let closing = self.outbound.closing().borrow().clone();
        match (closing, self.peer_close.take()) {
            (Some(Closing::Disconnect(code, reason)), _) => (code.as_u16(), reason),
            (_, Some(close)) => close,
            _ => (1006, String::new()),
        }
    }

    /// Records the session for last seen and tells the host's
    /// `on_disconnect` hook how the connection ended.
    async fn tell_host(self, code: u16, reason: String) {
        let Some(session) = self.session else { return };
        self.hub
            .record_session(&session.peer, session.connected_ms, session.messages);
        let context = DisconnectContext {
            client: session.peer,
            code,
            reason,
        };
        self.hub
            .inner
            .hooks
            .disconnected(context, self.hub.options().rpc_timeout)
            .await;
    }
}
