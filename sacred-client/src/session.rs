//! `Session`: the client's protocol state machine, with no I/O. Transports
//! feed it what happened (the socket opened, frames arrived, it closed, time
//! passed, the user asked for something) and carry out what it asks (open or
//! close the socket, send these messages as one frame, wake me at this time).
//! Batching, reconnect, recovery, heartbeats and the offline queue are written
//! and tested here once, for every transport.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sacred_proto::{
    ClientInfo, ClientMessage, Command, ConnectRequest, DisconnectCode, ErrorCode, PongRequest,
    Publication, PublishRequest, Push, RefreshRequest, Reply, ReplyError, ServerMessage,
    StreamPosition, SubscribeRequest, UnsubscribeRequest, Value,
};

use crate::backoff::Backoff;
use crate::clock::Clock;
use crate::event::{Action, Event, RequestError, RequestId, State};

/// What a session is configured with.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SessionConfig {
    /// The token sent with every `connect`.
    pub token: Option<String>,
    /// What the client says about itself.
    pub client: ClientInfo,
    /// The reconnect schedule.
    pub backoff: Backoff,
    /// How long a command waits for its reply (default 5 s).
    pub request_timeout: Duration,
    /// Most messages per frame (default 100, the server's default limit).
    pub max_batch: usize,
    /// Most publishes waiting while disconnected (default 100).
    pub offline_queue: usize,
    /// How long a publish may wait while disconnected (default 10 s).
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
    /// A (re)subscription: its result becomes `Subscribed` or `Unsubscribed`.
    Subscribe(String),
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

#[derive(Debug)]
struct Subscription {
    join_leave: bool,
    /// The last position delivered; sent as `recover` when resubscribing.
    position: Option<StreamPosition>,
}

#[derive(Debug)]
struct Queued {
    request: RequestId,
    publish: PublishRequest,
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
    pending: HashMap<u32, Pending>,
    subscriptions: BTreeMap<String, Subscription>,
    offline: VecDeque<Queued>,
    outgoing: VecDeque<ClientMessage>,
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
    /// The code of the server's `disconnect` push, until the close arrives.
    disconnect_code: Option<u16>,
    /// When to ask for a new token.
    refresh_at: Option<Duration>,
}

impl Session {
    /// A session that has not started; call [`Session::connect`].
    pub fn new(config: SessionConfig) -> Session {
        Session {
            rng: SmallRng::seed_from_u64(config.seed),
            config,
            state: State::Disconnected,
            next_id: 0,
            next_request: 0,
            pending: HashMap::new(),
            subscriptions: BTreeMap::new(),
            offline: VecDeque::new(),
            outgoing: VecDeque::new(),
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
            disconnect_code: None,
            refresh_at: None,
        }
    }

    /// Where the session is.
    pub fn state(&self) -> State {
        self.state
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

    /// Subscribes to `channel`: now if connected, else with the next connect.
    /// The outcome arrives as [`Event::Subscribed`] or [`Event::Unsubscribed`],
    /// the first time and after every reconnect alike.
    pub fn subscribe(
        &mut self,
        now: Duration,
        channel: &str,
        join_leave: bool,
    ) -> Result<(), RequestError> {
        self.usable()?;
        self.subscriptions.insert(
            channel.to_owned(),
            Subscription {
                join_leave,
                position: None,
            },
        );
        if self.state == State::Connected {
            let mut command = SubscribeRequest::new(channel);
            command.join_leave = join_leave;
            self.send(now, command.into(), Purpose::Subscribe(channel.to_owned()));
        }
        Ok(())
    }

    /// Unsubscribes from `channel`; nothing of it is delivered afterwards.
    pub fn unsubscribe(&mut self, now: Duration, channel: &str) {
        if self.subscriptions.remove(channel).is_some() && self.state == State::Connected {
            self.send(now, UnsubscribeRequest::new(channel).into(), Purpose::Quiet);
        }
    }

    /// Publishes; while disconnected the publish waits in the offline queue.
    pub fn publish(
        &mut self,
        now: Duration,
        channel: &str,
        data: Value,
    ) -> Result<RequestId, RequestError> {
        self.usable()?;
        let publish = PublishRequest::new(channel, data);
        if self.state == State::Connected {
            let request = self.request_id();
            self.send(now, publish.into(), Purpose::User(request));
            return Ok(request);
        }
        if self.offline.len() >= self.config.offline_queue {
            return Err(RequestError::QueueFull);
        }
        let request = self.request_id();
        self.offline.push_back(Queued {
            request,
            publish,
            deadline: now + self.config.offline_deadline,
        });
        Ok(request)
    }

    /// Sends any other command (send, presence, history, rpc) when connected.
    pub fn request(&mut self, now: Duration, command: Command) -> Result<RequestId, RequestError> {
        self.usable()?;
        if self.state != State::Connected {
            return Err(RequestError::Disconnected);
        }
        let request = self.request_id();
        self.send(now, command, Purpose::User(request));
        Ok(request)
    }

    /// The socket is open: connect, resubscribe with positions, and flush the
    /// offline queue, all in one frame.
    pub fn handle_open(&mut self, now: Duration) {
        if self.state != State::Connecting {
            return;
        }
        let connect = ConnectRequest::new(self.config.token.clone(), self.config.client.clone());
        self.send(now, connect.into(), Purpose::Connect);
        let resubscribe: Vec<_> = self
            .subscriptions
            .iter()
            .map(|(channel, sub)| {
                let mut command = SubscribeRequest::new(channel);
                command.join_leave = sub.join_leave;
                command.recover = sub.position.clone();
                command
            })
            .collect();
        for command in resubscribe {
            let channel = command.channel.clone();
            self.send(now, command.into(), Purpose::Subscribe(channel));
        }
        while let Some(queued) = self.offline.pop_front() {
            self.send(now, queued.publish.into(), Purpose::User(queued.request));
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

    /// The socket closed (with the close frame's code, if any) or failed.
    pub fn handle_close(&mut self, now: Duration, code: Option<u16>) {
        let code = self.disconnect_code.take().or(code).unwrap_or(1006);
        self.refresh_at = None;
        // Nothing queued for the old connection may reach the next one ahead of its connect.
        self.outgoing.clear();
        self.dead_link_at = None;
        self.liveness = None;
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
        self.events
            .push_back(Event::Disconnected { code, reconnect });
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
                    Purpose::Connect => self.actions.push_back(Action::Close),
                    // Resubscribed with the next connection.
                    Purpose::Subscribe(_) | Purpose::Pong | Purpose::Quiet | Purpose::Refresh => {}
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
            self.actions.push_back(Action::Close);
        }
        if self.migrate_at.is_some_and(|at| at <= now) && self.state == State::Connected {
            self.migrate_at = None;
            self.moving = true;
            self.disconnect_code = Some(DisconnectCode::SHUTDOWN.as_u16());
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

    /// The next frame to send: everything queued, up to `max_batch` messages.
    pub fn poll_transmit(&mut self) -> Option<Vec<ClientMessage>> {
        if self.outgoing.is_empty() {
            return None;
        }
        let take = self.outgoing.len().min(self.config.max_batch.max(1));
        Some(self.outgoing.drain(..take).collect())
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

    fn send(&mut self, now: Duration, command: Command, purpose: Purpose) {
        let id = loop {
            self.next_id = self.next_id.checked_add(1).unwrap_or(1);
            if !self.pending.contains_key(&self.next_id) {
                break self.next_id;
            }
        };
        let deadline = now + self.config.request_timeout;
        self.pending.insert(
            id,
            Pending {
                purpose,
                sent: now,
                deadline,
            },
        );
        self.outgoing.push_back(ClientMessage::new(id, command));
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

    fn reply(&mut self, now: Duration, id: u32, result: Result<Reply, ReplyError>) {
        let Some(pending) = self.pending.remove(&id) else {
            return;
        };
        match (pending.purpose, result) {
            (Purpose::Connect, Ok(Reply::Connect(reply))) => {
                self.clock.sample(pending.sent, now, reply.time);
                let liveness = Duration::from_millis(
                    u64::from(reply.ping_interval) + u64::from(reply.pong_timeout),
                );
                self.liveness = Some(liveness);
                self.dead_link_at = Some(now + liveness);
                self.attempt = 0;
                self.schedule_refresh(now, reply.expires);
                self.set_state(State::Connected);
                self.events.push_back(Event::Connected(reply));
            }
            (Purpose::Connect, _) => self.actions.push_back(Action::Close),
            (Purpose::Pong, Ok(Reply::Pong(pong))) => {
                self.clock.sample(pending.sent, now, pong.time)
            }
            (Purpose::Refresh, Ok(Reply::Refresh(reply))) => {
                self.schedule_refresh(now, reply.expires)
            }
            // A refused refresh: the server closes with 3004 at expiry and the
            // reconnect fetches a fresh token.
            (Purpose::Pong | Purpose::Quiet | Purpose::Refresh, _) => {}
            (Purpose::Subscribe(channel), Ok(Reply::Subscribe(reply))) => {
                self.subscribed(channel, reply)
            }
            (Purpose::Subscribe(channel), result) => {
                self.subscriptions.remove(&channel);
                let code = result
                    .err()
                    .map_or(ErrorCode::INTERNAL.as_u32(), |err| err.code);
                self.events.push_back(Event::Unsubscribed { channel, code });
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
    fn subscribed(&mut self, channel: String, reply: sacred_proto::SubscribeReply) {
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
            Push::Join(join) => self.events.push_back(Event::Join {
                channel: join.channel,
                client: join.client,
            }),
            Push::Leave(leave) => self.events.push_back(Event::Leave {
                channel: leave.channel,
                client: leave.client,
            }),
            Push::Message(message) => self.events.push_back(Event::Message {
                from: message.from,
                data: message.data,
            }),
            Push::Unsubscribed(unsubscribed) => {
                self.subscriptions.remove(&unsubscribed.channel);
                self.events.push_back(Event::Unsubscribed {
                    channel: unsubscribed.channel,
                    code: unsubscribed.code,
                });
            }
            Push::Disconnect(disconnect) => self.disconnect_code = Some(disconnect.code),
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

    /// Delivers a publication unless it is a duplicate, and moves the position.
    /// A publication from another epoch means the stream was lost and
    /// restarted: the application hears it as an unrecovered resubscription
    /// (docs/protocol.md 9.4), then gets the publication.
    fn deliver(&mut self, publication: Publication) {
        let Some(sub) = self.subscriptions.get_mut(&publication.channel) else {
            return;
        };
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
