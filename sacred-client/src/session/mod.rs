//! `Session`: the client's protocol state machine, with no I/O. Transports
//! feed it what happened (the socket opened, frames arrived, it closed, time
//! passed, the user asked for something) and carry out what it asks (open or
//! close the socket, send this frame, wake me at this time). Batching,
//! reconnect, recovery, heartbeats and the offline queue are written and
//! tested here once, for every transport.

mod outgoing;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sacred_proto::{
    ClientInfo, Codec, Command, ConnectRequest, DisconnectCode, ErrorCode, Limits, PongRequest,
    Publication, PublishRequest, Push, RefreshRequest, Reply, ReplyError, ServerMessage,
    StreamPosition, SubscribeReply, SubscribeRequest, UnsubscribeRequest, Value, validate_channel,
};

use crate::backoff::Backoff;
use crate::clock::Clock;
use crate::event::{Action, Event, RequestError, RequestId, State};
use outgoing::Outgoing;

/// What a session is configured with.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SessionConfig {
    /// The token sent with every `connect`.
    pub token: Option<String>,
    /// What the client says about itself.
    pub client: ClientInfo,
    /// The wire format; the session encodes every frame it hands out.
    pub codec: Codec,
    /// The reconnect schedule.
    pub backoff: Backoff,
    /// How long a command waits for its reply (default 5 s).
    pub request_timeout: Duration,
    /// Most messages per frame (default 100; the server's own limit, once
    /// announced, applies too).
    pub max_batch: usize,
    /// Most commands waiting while disconnected (default 100).
    pub offline_queue: usize,
    /// How long a command may wait while disconnected (default 10 s).
    pub offline_deadline: Duration,
    /// Seed of the jitter's random numbers (transports pass a random one).
    pub seed: u64,
    /// Whether a token provider can be asked for new tokens: the session then
    /// asks ([`Action::FetchToken`]) before the connection's token expires.
    pub refresh_tokens: bool,
}

impl Default for SessionConfig {
    fn default() -> SessionConfig {
        SessionConfig {
            token: None,
            client: ClientInfo::default(),
            codec: Codec::Json,
            backoff: Backoff::default(),
            request_timeout: Duration::from_secs(5),
            max_batch: 100,
            offline_queue: 100,
            offline_deadline: Duration::from_secs(10),
            seed: 0,
            refresh_tokens: false,
        }
    }
}

/// Who waits for a reply.
#[derive(Debug)]
enum Purpose {
    /// A user command: its result becomes [`Event::Reply`].
    User(RequestId),
    Connect,
    /// A (re)subscription: its result becomes `Subscribed` or `Unsubscribed`,
    /// unless the subscription it was sent for has been replaced since.
    Subscribe {
        channel: String,
        generation: u64,
    },
    Pong,
    /// Nobody waits (unsubscribe).
    Quiet,
    /// A token refresh: success reschedules the next one.
    Refresh,
}

#[derive(Debug)]
struct Pending {
    purpose: Purpose,
    sent: Duration,
    deadline: Duration,
}

/// One subscription the application holds.
#[derive(Debug)]
struct Subscription {
    join_leave: bool,
    /// The last position delivered; sent as `recover` when resubscribing.
    position: Option<StreamPosition>,
    /// Tells this subscription apart from an earlier one to the same channel,
    /// whose replies may still be on their way.
    generation: u64,
    /// Whether a subscribe for it went out on the current connection.
    sent: bool,
    /// Whether the server confirmed that subscribe. Until then publications
    /// of the channel are dropped: after an unsubscribe and a resubscribe on
    /// one connection, the old subscription's last pushes may still arrive,
    /// and the new one's reply recovers everything after its position.
    confirmed: bool,
    /// Whether delivery is paused because the application fell behind; the
    /// server was told to stop sending, and [`Session::resume`] recovers.
    paused: bool,
}

/// A user command waiting for a connection.
#[derive(Debug)]
struct Queued {
    request: RequestId,
    command: Command,
    deadline: Duration,
}

/// The client's state machine. See the module documentation.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: State,
    rng: SmallRng,
    next_id: u32,
    next_request: u64,
    next_generation: u64,
    pending: HashMap<u32, Pending>,
    subscriptions: BTreeMap<String, Subscription>,
    offline: VecDeque<Queued>,
    outgoing: Outgoing,
    /// What the server accepts: its announcement, or the protocol's defaults
    /// until one arrived.
    limits: Limits,
    /// Whether `limits` came from a server (commands made before the first
    /// connection are checked once they are sent).
    limits_known: bool,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    clock: Clock,
    /// Failed connection attempts since the last success.
    attempt: u32,
    reconnect_at: Option<Duration>,
    /// Nothing received by then means the link is dead.
    dead_link_at: Option<Duration>,
    /// The announced ping interval plus pong timeout.
    liveness: Option<Duration>,
    /// When to move, as the server advised (a random moment before its deadline).
    migrate_at: Option<Duration>,
    /// Where the next connection goes, if the server advised a URL.
    next_url: Option<String>,
    /// The current connection is being closed to move: reconnect at once.
    moving: bool,
    /// The code and reason of the server's `disconnect` push, until the close arrives.
    disconnect: Option<(u16, String)>,
    /// When to ask for a new token.
    refresh_at: Option<Duration>,
}

impl Session {
    /// A session that has not started; call [`Session::connect`].
    pub fn new(config: SessionConfig) -> Session {
        Session {
            rng: SmallRng::seed_from_u64(config.seed),
            outgoing: Outgoing::new(config.codec),
            config,
            state: State::Disconnected,
            next_id: 0,
            next_request: 0,
            next_generation: 0,
            pending: HashMap::new(),
            subscriptions: BTreeMap::new(),
            offline: VecDeque::new(),
            limits: Limits::default(),
            limits_known: false,
            actions: VecDeque::new(),
            events: VecDeque::new(),
            clock: Clock::default(),
            attempt: 0,
            reconnect_at: None,
            dead_link_at: None,
            liveness: None,
            migrate_at: None,
            next_url: None,
            moving: false,
            disconnect: None,
            refresh_at: None,
        }
    }

    /// Where the session is.
    pub fn state(&self) -> State {
        self.state
    }

    /// What the server accepts from this client, as it announced in the
    /// connect reply (the protocol's defaults before the first connection).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The server's time (ms since the Unix epoch) at local time `now`, once known.
    pub fn server_time(&self, now: Duration) -> Option<u64> {
        self.clock.server_time(now)
    }

    /// Replaces the token used by the next connect (from a token provider).
    pub fn set_token(&mut self, token: Option<String>) {
        self.config.token = token;
    }

    /// Sends a new token for the current connection (the answer to
    /// [`Action::FetchToken`]); it is also used by later connects.
    pub fn refresh(&mut self, now: Duration, token: String) {
        self.config.token = Some(token.clone());
        if self.state == State::Connected {
            self.send(now, RefreshRequest::new(token).into(), Purpose::Refresh);
        }
    }

    /// Schedules [`Action::FetchToken`] at 90% of the token's remaining life.
    fn schedule_refresh(&mut self, now: Duration, expires_ms: Option<u64>) {
        self.refresh_at = None;
        if !self.config.refresh_tokens {
            return;
        }
        if let Some(expires) = expires_ms.and_then(|ms| self.clock.local_time(ms, now)) {
            self.refresh_at = Some(now + expires.saturating_sub(now).mul_f64(0.9));
        }
    }

    /// Starts connecting.
    pub fn connect(&mut self, _now: Duration) {
        if self.state == State::Disconnected {
            self.reconnect_at = None;
            self.set_state(State::Connecting);
            self.actions.push_back(Action::Open { url: None });
        }
    }

    /// Closes for good: pending and queued commands fail with `Closed`.
    pub fn close(&mut self, _now: Duration) {
        if self.state == State::Closed {
            return;
        }
        if self.state != State::Disconnected {
            self.actions.push_back(Action::Close);
        }
        self.set_state(State::Closed);
        self.fail_all(RequestError::Closed);
    }

    /// Subscribes to `channel`: now if connected, else once connected. The
    /// outcome arrives as [`Event::Subscribed`] or [`Event::Unsubscribed`],
    /// the first time and after every reconnect alike.
    ///
    /// One subscription per channel: a second one while the first lasts is
    /// refused with [`RequestError::AlreadySubscribed`], and the first goes on.
    pub fn subscribe(
        &mut self,
        now: Duration,
        channel: &str,
        join_leave: bool,
    ) -> Result<(), RequestError> {
        self.usable()?;
        if self.subscriptions.contains_key(channel) {
            return Err(RequestError::AlreadySubscribed);
        }
        validate_channel(channel, &self.limits)
            .map_err(|err| RequestError::Invalid(err.to_string()))?;
        self.next_generation += 1;
        let subscription = Subscription {
            join_leave,
            position: None,
            generation: self.next_generation,
            sent: false,
            confirmed: false,
            paused: false,
        };
        self.subscriptions.insert(channel.to_owned(), subscription);
        if self.state == State::Connected {
            self.send_subscribe(now, channel);
        }
        Ok(())
    }

    /// Unsubscribes from `channel`; nothing of it is delivered afterwards.
    pub fn unsubscribe(&mut self, now: Duration, channel: &str) {
        let Some(subscription) = self.subscriptions.remove(channel) else {
            return;
        };
        if self.state == State::Connected && subscription.sent && !subscription.paused {
            self.send(now, UnsubscribeRequest::new(channel).into(), Purpose::Quiet);
        }
    }

    /// The application cannot take more of `channel` now: stop delivering it,
    /// and have the server stop sending it. `delivered` is the position of
    /// the last publication the application did take: [`Session::resume`]
    /// recovers everything after it, so nothing is lost (within the history
    /// window; beyond it the resubscription reports `recovered: false`).
    pub fn pause(&mut self, now: Duration, channel: &str, delivered: Option<StreamPosition>) {
        let Some(subscription) = self.subscriptions.get_mut(channel) else {
            return;
        };
        if subscription.paused {
            return;
        }
        subscription.paused = true;
        if delivered.is_some() {
            subscription.position = delivered;
        }
        let active = subscription.sent;
        subscription.sent = false;
        if self.state == State::Connected && active {
            self.send(now, UnsubscribeRequest::new(channel).into(), Purpose::Quiet);
        }
    }

    /// The application can take `channel` again: resubscribe from the
    /// position it paused at.
    pub fn resume(&mut self, now: Duration, channel: &str) {
        let Some(subscription) = self.subscriptions.get_mut(channel) else {
            return;
        };
        if !subscription.paused {
            return;
        }
        subscription.paused = false;
        self.next_generation += 1;
        subscription.generation = self.next_generation;
        if self.state == State::Connected {
            self.send_subscribe(now, channel);
        }
    }

    /// Publishes; while disconnected the publish waits in the offline queue.
    pub fn publish(
        &mut self,
        now: Duration,
        channel: &str,
        data: Value,
    ) -> Result<RequestId, RequestError> {
        self.request(now, PublishRequest::new(channel, data).into())
    }

    /// Publishes carrying the W3C `traceparent` of the publisher's span; a
    /// value outside the grammar is refused with [`RequestError::Invalid`].
    pub fn publish_traced(
        &mut self,
        now: Duration,
        channel: &str,
        data: Value,
        traceparent: &str,
    ) -> Result<RequestId, RequestError> {
        let publish = PublishRequest::new(channel, data).with_traceparent(traceparent);
        self.request(now, publish.into())
    }

    /// Sends a user command: now if connected, else once connected, waiting
    /// in the offline queue (bounded in count and time) until then.
    ///
    /// A command the server would refuse by closing the connection (bigger
    /// than its frame limit, nested too deep) or answer with 107 is refused
    /// here, before anything is sent.
    pub fn request(&mut self, now: Duration, command: Command) -> Result<RequestId, RequestError> {
        self.usable()?;
        command
            .validate(&self.limits)
            .map_err(|err| RequestError::Invalid(err.to_string()))?;
        if self.state == State::Connected {
            let id = self.next_message_id();
            let encoded = outgoing::encode(self.config.codec, &self.limits, id, command)?;
            let request = self.request_id();
            self.track(now, id, Purpose::User(request));
            self.outgoing.push(encoded);
            return Ok(request);
        }
        if self.offline.len() >= self.config.offline_queue {
            return Err(RequestError::QueueFull);
        }
        if self.limits_known {
            // Checked now against what the server said last time (and again
            // when it is sent, in case the next server says otherwise).
            outgoing::encode(self.config.codec, &self.limits, u32::MAX, command.clone())?;
        }
        let request = self.request_id();
        self.offline.push_back(Queued {
            request,
            command,
            deadline: now + self.config.offline_deadline,
        });
        Ok(request)
    }

    /// The socket is open: connect and resubscribe with positions, in one
    /// frame. Commands that waited go out once the connect is accepted.
    pub fn handle_open(&mut self, now: Duration) {
        if self.state != State::Connecting {
            return;
        }
        let connect = ConnectRequest::new(self.config.token.clone(), self.config.client.clone());
        self.send(now, connect.into(), Purpose::Connect);
        let channels: Vec<String> = self
            .subscriptions
            .iter()
            .filter(|(_, sub)| !sub.paused)
            .map(|(channel, _)| channel.clone())
            .collect();
        for channel in channels {
            self.send_subscribe(now, &channel);
        }
    }

    /// Frames arrived (already decoded).
    pub fn handle_frame(&mut self, now: Duration, messages: Vec<ServerMessage>) {
        if let Some(liveness) = self.liveness {
            self.dead_link_at = Some(now + liveness);
        }
        for message in messages {
            match message {
                ServerMessage::Reply { id, result } => self.reply(now, id, result),
                ServerMessage::Push(push) => self.push(now, push),
            }
        }
    }

    /// The socket closed, with the close frame's code and reason if it had
    /// them, or failed (`None`).
    pub fn handle_close(&mut self, now: Duration, close: Option<(u16, String)>) {
        let (code, reason) = self
            .disconnect
            .take()
            .or(close)
            .unwrap_or_else(|| (1006, String::from("connection lost")));
        self.refresh_at = None;
        // Nothing queued for the old connection may reach the next one ahead of its connect.
        self.outgoing.clear();
        self.dead_link_at = None;
        self.liveness = None;
        for subscription in self.subscriptions.values_mut() {
            subscription.sent = false;
        }
        let in_flight: Vec<_> = self.pending.drain().map(|(_, p)| p.purpose).collect();
        for purpose in in_flight {
            if let Purpose::User(request) = purpose {
                self.events.push_back(Event::Reply {
                    request,
                    result: Err(RequestError::Disconnected),
                });
            }
        }
        if self.state == State::Closed {
            return;
        }
        let reconnect = DisconnectCode::from_u16(code).should_reconnect();
        self.events.push_back(Event::Disconnected {
            code,
            reason,
            reconnect,
        });
        if reconnect {
            self.set_state(State::Disconnected);
            let delay = if std::mem::take(&mut self.moving) {
                Duration::ZERO
            } else {
                self.config.backoff.delay(self.attempt, &mut self.rng)
            };
            self.attempt = self.attempt.saturating_add(1);
            self.reconnect_at = Some(now + delay);
        } else {
            self.set_state(State::Closed);
            self.fail_all(RequestError::Closed);
        }
    }

    /// Time passed: expire what is due.
    pub fn handle_timeout(&mut self, now: Duration) {
        let expired: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(Pending { purpose, .. }) = self.pending.remove(&id) {
                match purpose {
                    Purpose::User(request) => self.events.push_back(Event::Reply {
                        request,
                        result: Err(RequestError::Timeout),
                    }),
                    // An unanswered connect is a dead attempt.
                    Purpose::Connect => self.close_link("the server did not answer the connect"),
                    // Resubscribed with the next connection.
                    Purpose::Subscribe { .. }
                    | Purpose::Pong
                    | Purpose::Quiet
                    | Purpose::Refresh => {}
                }
            }
        }
        while self.offline.front().is_some_and(|q| q.deadline <= now) {
            if let Some(queued) = self.offline.pop_front() {
                self.events.push_back(Event::Reply {
                    request: queued.request,
                    result: Err(RequestError::Expired),
                });
            }
        }
        if self.dead_link_at.is_some_and(|at| at <= now) {
            self.dead_link_at = None;
            let silence = self.liveness.unwrap_or_default().as_millis();
            self.close_link(&format!(
                "nothing from the server for {silence} ms: a dead link"
            ));
        }
        if self.migrate_at.is_some_and(|at| at <= now) && self.state == State::Connected {
            self.migrate_at = None;
            self.moving = true;
            let shutdown = DisconnectCode::SHUTDOWN;
            self.disconnect = Some((shutdown.as_u16(), "moving as the server advised".into()));
            self.actions.push_back(Action::Close);
        }
        if self.refresh_at.is_some_and(|at| at <= now) && self.state == State::Connected {
            self.refresh_at = None;
            self.actions.push_back(Action::FetchToken);
        }
        if self.reconnect_at.is_some_and(|at| at <= now) && self.state == State::Disconnected {
            self.reconnect_at = None;
            self.set_state(State::Connecting);
            self.actions.push_back(Action::Open {
                url: self.next_url.take(),
            });
        }
    }

    /// When to call [`Session::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let pending = self.pending.values().map(|p| p.deadline);
        let offline = self.offline.front().map(|q| q.deadline);
        let connected = |at: Option<Duration>| at.filter(|_| self.state == State::Connected);
        let timers = [
            self.dead_link_at,
            self.reconnect_at,
            connected(self.migrate_at),
            connected(self.refresh_at),
        ];
        pending
            .chain(offline)
            .chain(timers.into_iter().flatten())
            .min()
    }

    /// The next frame to send, encoded: everything queued that fits in one
    /// frame, within `max_batch` and the server's limits.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.outgoing
            .next_frame(&self.limits, self.config.max_batch)
    }

    /// The next thing the transport should do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn usable(&self) -> Result<(), RequestError> {
        if self.state == State::Closed {
            Err(RequestError::Closed)
        } else {
            Ok(())
        }
    }

    fn request_id(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    /// A command id that no command in flight uses.
    fn next_message_id(&mut self) -> u32 {
        loop {
            self.next_id = self.next_id.checked_add(1).unwrap_or(1);
            if !self.pending.contains_key(&self.next_id) {
                return self.next_id;
            }
        }
    }

    fn track(&mut self, now: Duration, id: u32, purpose: Purpose) {
        let deadline = now + self.config.request_timeout;
        self.pending.insert(
            id,
            Pending {
                purpose,
                sent: now,
                deadline,
            },
        );
    }

    /// Queues one of the session's own commands (connect, subscribe, pong...).
    fn send(&mut self, now: Duration, command: Command, purpose: Purpose) {
        let id = self.next_message_id();
        match outgoing::encode(self.config.codec, &self.limits, id, command) {
            Ok(encoded) => {
                self.track(now, id, purpose);
                self.outgoing.push(encoded);
            }
            // Only a connect with a token bigger than the server accepts can
            // get here: the server would close for it, so the attempt fails.
            Err(err) => {
                tracing::warn!(
                    ?err,
                    "a command of the session does not fit the server's limits"
                );
                if matches!(purpose, Purpose::Connect) {
                    self.close_link("the connect command is larger than the server accepts");
                }
            }
        }
    }

    fn send_subscribe(&mut self, now: Duration, channel: &str) {
        let Some(subscription) = self.subscriptions.get_mut(channel) else {
            return;
        };
        subscription.sent = true;
        subscription.confirmed = false;
        let command = SubscribeRequest::new(channel).join_leave(subscription.join_leave);
        let command = match subscription.position.clone() {
            Some(position) => command.recover(position),
            None => command,
        };
        let purpose = Purpose::Subscribe {
            channel: channel.to_owned(),
            generation: subscription.generation,
        };
        self.send(now, command.into(), purpose);
    }

    /// Asks the transport to close the link for `why` (reported with 1006,
    /// as a link that failed, and followed by a reconnect).
    fn close_link(&mut self, why: &str) {
        self.disconnect
            .get_or_insert_with(|| (1006, why.to_owned()));
        self.actions.push_back(Action::Close);
    }

    fn set_state(&mut self, state: State) {
        if self.state != state {
            self.state = state;
            self.events.push_back(Event::State(state));
        }
    }

    fn fail_all(&mut self, error: RequestError) {
        self.reconnect_at = None;
        self.outgoing.clear();
        for (_, pending) in self.pending.drain() {
            if let Purpose::User(request) = pending.purpose {
                self.events.push_back(Event::Reply {
                    request,
                    result: Err(error.clone()),
                });
            }
        }
        for queued in self.offline.drain(..) {
            self.events.push_back(Event::Reply {
                request: queued.request,
                result: Err(error.clone()),
            });
        }
    }

    /// The connect was accepted: take the server's terms, then send what
    /// waited for a connection, checked against the limits it announced.
    fn connected(&mut self, now: Duration, sent: Duration, reply: sacred_proto::ConnectReply) {
        self.clock.sample(sent, now, reply.time);
        let liveness =
            Duration::from_millis(u64::from(reply.ping_interval) + u64::from(reply.pong_timeout));
        self.liveness = Some(liveness);
        self.dead_link_at = Some(now + liveness);
        self.attempt = 0;
        self.limits = reply.limits.clone().unwrap_or_default();
        self.limits_known = true;
        self.schedule_refresh(now, reply.expires);
        // The reply first, so that whoever sees the state `Connected` also
        // finds the client id it carries.
        self.events.push_back(Event::Connected(reply));
        self.set_state(State::Connected);
        let unsent: Vec<String> = self
            .subscriptions
            .iter()
            .filter(|(_, sub)| !sub.sent && !sub.paused)
            .map(|(channel, _)| channel.clone())
            .collect();
        for channel in unsent {
            self.send_subscribe(now, &channel);
        }
        while let Some(queued) = self.offline.pop_front() {
            let id = self.next_message_id();
            match outgoing::encode(self.config.codec, &self.limits, id, queued.command) {
                Ok(encoded) => {
                    self.track(now, id, Purpose::User(queued.request));
                    self.outgoing.push(encoded);
                }
                Err(err) => self.events.push_back(Event::Reply {
                    request: queued.request,
                    result: Err(err),
                }),
            }
        }
    }

    fn reply(&mut self, now: Duration, id: u32, result: Result<Reply, ReplyError>) {
        let Some(pending) = self.pending.remove(&id) else {
            return;
        };
        match (pending.purpose, result) {
            (Purpose::Connect, Ok(Reply::Connect(reply))) => {
                self.connected(now, pending.sent, reply)
            }
            (Purpose::Connect, result) => {
                let why = match result {
                    Err(err) => format!("the server refused the connect: {err}"),
                    Ok(reply) => format!("a {} reply to the connect", reply.kind()),
                };
                self.close_link(&why);
            }
            (Purpose::Pong, Ok(Reply::Pong(pong))) => {
                self.clock.sample(pending.sent, now, pong.time)
            }
            (Purpose::Refresh, Ok(Reply::Refresh(reply))) => {
                self.schedule_refresh(now, reply.expires)
            }
            // A refused refresh: the server closes with 3004 at expiry and the
            // reconnect fetches a fresh token.
            (Purpose::Pong | Purpose::Quiet | Purpose::Refresh, _) => {}
            (
                Purpose::Subscribe {
                    channel,
                    generation,
                },
                result,
            ) => {
                let current = self
                    .subscriptions
                    .get(&channel)
                    .is_some_and(|sub| sub.generation == generation && !sub.paused);
                if !current {
                    // For a subscription that was replaced, paused or dropped since.
                    return;
                }
                match result {
                    Ok(Reply::Subscribe(reply)) => self.subscribed(channel, reply),
                    other => {
                        let error = match other {
                            Err(error) => error,
                            Ok(reply) => ReplyError::new(
                                ErrorCode::INTERNAL,
                                format!("a {} reply to a subscribe", reply.kind()),
                            ),
                        };
                        self.subscriptions.remove(&channel);
                        self.events.push_back(Event::Unsubscribed {
                            channel,
                            code: error.code,
                            reason: error.message,
                        });
                    }
                }
            }
            (Purpose::User(request), result) => {
                self.events.push_back(Event::Reply {
                    request,
                    result: result.map_err(RequestError::Server),
                });
            }
        }
    }

    /// A subscription is active: replayed publications first, then the
    /// announcement; its position is the stream's position after them.
    fn subscribed(&mut self, channel: String, reply: SubscribeReply) {
        if let Some(sub) = self.subscriptions.get_mut(&channel) {
            sub.confirmed = true;
        }
        for publication in reply.publications {
            self.deliver(publication);
        }
        if let (Some(sub), Some(offset), Some(epoch)) = (
            self.subscriptions.get_mut(&channel),
            reply.offset,
            reply.epoch,
        ) {
            sub.position = Some(StreamPosition::new(offset, epoch));
        }
        self.events.push_back(Event::Subscribed {
            channel,
            recovered: reply.recovered,
        });
    }

    fn push(&mut self, now: Duration, push: Push) {
        match push {
            Push::Publication(publication) => self.deliver(publication),
            Push::Ping(_) => self.send(now, PongRequest::new().into(), Purpose::Pong),
            Push::Join(join) if self.delivering(&join.channel) => {
                self.events.push_back(Event::Join {
                    channel: join.channel,
                    client: join.client,
                })
            }
            Push::Leave(leave) if self.delivering(&leave.channel) => {
                self.events.push_back(Event::Leave {
                    channel: leave.channel,
                    client: leave.client,
                })
            }
            Push::Join(_) | Push::Leave(_) => {}
            Push::Message(message) => self.events.push_back(Event::Message {
                from: message.from,
                data: message.data,
            }),
            Push::Unsubscribed(unsubscribed) => {
                if self.subscriptions.remove(&unsubscribed.channel).is_some() {
                    self.events.push_back(Event::Unsubscribed {
                        channel: unsubscribed.channel,
                        code: unsubscribed.code,
                        reason: unsubscribed.reason,
                    });
                }
            }
            Push::Disconnect(disconnect) => {
                self.disconnect = Some((disconnect.code, disconnect.reason))
            }
            Push::Migrate(migrate) => {
                // Move at a random moment before the deadline, spreading clients.
                let deadline = self.clock.local_time(migrate.at, now).unwrap_or(now);
                let window = deadline.saturating_sub(now).as_millis() as u64;
                self.migrate_at =
                    Some(now + Duration::from_millis(self.rng.random_range(0..=window)));
                self.next_url = migrate.url;
            }
        }
    }

    /// Whether events of `channel` go to the application now.
    fn delivering(&self, channel: &str) -> bool {
        self.subscriptions
            .get(channel)
            .is_some_and(|sub| sub.confirmed && !sub.paused)
    }

    /// Delivers a publication unless it is a duplicate, and moves the position.
    /// A publication from another epoch means the stream was lost and
    /// restarted: the application hears it as an unrecovered resubscription
    /// (docs/protocol.md 9.4), then gets the publication.
    fn deliver(&mut self, publication: Publication) {
        let Some(sub) = self.subscriptions.get_mut(&publication.channel) else {
            return;
        };
        if sub.paused || !sub.confirmed {
            return;
        }
        if let (Some(offset), Some(epoch)) = (publication.offset, publication.epoch.as_ref()) {
            match &sub.position {
                Some(position) if position.epoch == *epoch && offset <= position.offset => return,
                Some(position) if position.epoch != *epoch => {
                    let channel = publication.channel.clone();
                    self.events.push_back(Event::Subscribed {
                        channel,
                        recovered: false,
                    });
                }
                _ => {}
            }
            sub.position = Some(StreamPosition::new(offset, epoch.clone()));
        }
        self.events.push_back(Event::Publication(publication));
    }
}
