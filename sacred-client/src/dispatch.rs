//! Between the handles and the session, for every transport: requests from
//! handles go into the session, and the session's events go out to the
//! callers, subscriptions and listeners waiting for them, through bounded
//! outlets (see `stream` for the delivery policy).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use sacred_proto::{DirectMessage, ErrorCode, Publication, Reply, ReplyError, StreamPosition};
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::Error;
use crate::event::{Event, RequestError, RequestId, State};
use crate::op::Op;
use crate::platform::{BoxedFuture, SendOutsideWasm};
use crate::session::Session;
use crate::stream::{ClientEvent, MessageEvent, Offer, Outlet, SubscriptionEvent};

/// A caller waiting for a reply.
type ReplySender = oneshot::Sender<Result<Reply, Error>>;
/// A subscription waiting for its first confirmation: its event sender and
/// the caller of `subscribe`.
type Confirming = (
    mpsc::Sender<SubscriptionEvent>,
    oneshot::Sender<Result<bool, Error>>,
);

/// What the handles read without asking the task: the connection's id, why
/// the client closed for good, why the last attempt failed.
#[derive(Debug, Default)]
pub(crate) struct Status {
    pub(crate) id: Option<String>,
    pub(crate) closed: Option<Error>,
    pub(crate) last_error: Option<Error>,
}

/// `Status`, shared by the task and every handle.
#[derive(Clone, Debug, Default)]
pub(crate) struct SharedStatus(Arc<Mutex<Status>>);

impl SharedStatus {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Status> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An active subscription as the dispatcher feeds it.
#[derive(Debug)]
struct Channel {
    outlet: Outlet<SubscriptionEvent>,
    /// The position of the last publication the application was given.
    delivered: Option<StreamPosition>,
    /// Delivery is paused until the application has read some of its buffer.
    paused: bool,
    /// A resubscription that did not fit the buffer, delivered first once it
    /// has room: `recovered: false` means "reload", so it is never just counted.
    notice: Option<bool>,
}

/// Whose buffer has room again.
#[derive(Debug)]
enum Room {
    Channel(String),
    Listener(u64),
    Inbox(u64),
}

/// Who waits for what the session produces.
pub(crate) struct Dispatch {
    /// The state every handle watches.
    state: watch::Sender<State>,
    status: SharedStatus,
    /// Callers waiting for a reply, by request.
    replies: HashMap<RequestId, ReplySender>,
    /// Active subscriptions, by channel.
    channels: HashMap<String, Channel>,
    /// Subscriptions waiting for their first confirmation.
    confirming: HashMap<String, Confirming>,
    /// Connection-event listeners, by a number of their own.
    listeners: HashMap<u64, Outlet<ClientEvent>>,
    /// Readers of direct messages.
    inboxes: HashMap<u64, Outlet<MessageEvent>>,
    next_reader: u64,
    /// Direct messages that arrived before anyone read them, for the first reader.
    backlog: VecDeque<DirectMessage>,
    /// How many the backlog could not hold.
    backlog_skipped: u64,
    backlog_capacity: usize,
    /// Waits for room in a full buffer.
    rooms: FuturesUnordered<BoxedFuture<Room>>,
}

impl Dispatch {
    pub(crate) fn new(
        state: watch::Sender<State>,
        status: SharedStatus,
        backlog_capacity: usize,
    ) -> Dispatch {
        Dispatch {
            state,
            status,
            replies: HashMap::new(),
            channels: HashMap::new(),
            confirming: HashMap::new(),
            listeners: HashMap::new(),
            inboxes: HashMap::new(),
            next_reader: 0,
            backlog: VecDeque::new(),
            backlog_skipped: 0,
            backlog_capacity,
            rooms: FuturesUnordered::new(),
        }
    }

    /// Carries a handle's request to the session.
    pub(crate) fn apply(&mut self, session: &mut Session, now: Duration, op: Op) {
        match op {
            Op::Connect => session.connect(now),
            Op::Subscribe {
                channel,
                join_leave,
                events,
                ready,
            } => match session.subscribe(now, &channel, join_leave) {
                Ok(()) => drop(self.confirming.insert(channel, (events, ready))),
                Err(err) => drop(ready.send(Err(err.into()))),
            },
            Op::Unsubscribe(channel) => {
                if self.channels.remove(&channel).is_some() {
                    session.unsubscribe(now, &channel);
                }
            }
            Op::Request { command, reply } => match session.request(now, command) {
                Ok(request) => drop(self.replies.insert(request, reply)),
                Err(err) => drop(reply.send(Err(err.into()))),
            },
            Op::ServerTime(reply) => drop(reply.send(session.server_time(now))),
            Op::Listen(events) => {
                self.next_reader += 1;
                self.listeners.insert(self.next_reader, Outlet::new(events));
            }
            Op::Inbox(messages) => self.add_inbox(messages),
            Op::Close => session.close(now),
        }
    }

    /// Resolves when a full buffer has room again; pending while none waits.
    pub(crate) async fn room(&mut self) -> RoomReady {
        match self.rooms.next().await {
            Some(room) => RoomReady(room),
            None => std::future::pending().await,
        }
    }

    /// A buffer has room: report what it skipped, and resume a paused subscription.
    pub(crate) fn room_ready(&mut self, session: &mut Session, now: Duration, room: RoomReady) {
        match room.0 {
            Room::Channel(channel) => {
                let Some(entry) = self.channels.get_mut(&channel) else {
                    return;
                };
                entry.outlet.roomy();
                if let Some(recovered) = entry.notice {
                    match entry
                        .outlet
                        .offer(SubscriptionEvent::Resubscribed { recovered }, sub_lagged)
                    {
                        Offer::Full => {
                            if let Some(wait) = entry.outlet.room() {
                                self.rooms.push(waiting(wait, Room::Channel(channel)));
                            }
                            return;
                        }
                        Offer::Taken | Offer::Gone => entry.notice = None,
                    }
                }
                if std::mem::take(&mut entry.paused) {
                    tracing::debug!(%channel, "the application caught up: recovering");
                    session.resume(now, &channel);
                }
                if entry.outlet.report(sub_lagged) == Offer::Full
                    && let Some(wait) = entry.outlet.room()
                {
                    self.rooms.push(waiting(wait, Room::Channel(channel)));
                }
            }
            Room::Listener(id) => {
                if let Some(outlet) = self.listeners.get_mut(&id) {
                    report(outlet, client_lagged, &self.rooms, Room::Listener(id));
                }
            }
            Room::Inbox(id) => {
                if let Some(outlet) = self.inboxes.get_mut(&id) {
                    report(outlet, message_lagged, &self.rooms, Room::Inbox(id));
                }
            }
        }
    }

    /// Hands one session event to whoever waits for it.
    pub(crate) fn route(&mut self, session: &mut Session, now: Duration, event: Event) {
        match event {
            Event::State(state) => {
                self.state.send_replace(state);
                if state == State::Connecting {
                    self.broadcast(ClientEvent::Connecting);
                }
            }
            Event::Connected(reply) => {
                tracing::info!(client = %reply.client, "connected");
                {
                    let mut status = self.status.lock();
                    status.id = Some(reply.client.clone());
                    status.last_error = None;
                }
                self.broadcast(ClientEvent::Connected {
                    client: reply.client,
                });
            }
            Event::Disconnected {
                code,
                reason,
                reconnect,
            } => {
                if reconnect {
                    tracing::info!(code, %reason, "disconnected; reconnecting");
                } else {
                    tracing::warn!(code, %reason, "disconnected for good");
                }
                {
                    let mut status = self.status.lock();
                    status.id = None;
                    if !reconnect {
                        status.closed = Some(Error::refused(code, reason.clone()));
                    }
                }
                self.broadcast(ClientEvent::Disconnected {
                    code,
                    reason,
                    reconnect,
                });
            }
            Event::Reply { request, result } => {
                if let Some(reply) = self.replies.remove(&request) {
                    let _ = reply.send(result.map_err(Error::from));
                }
            }
            Event::Subscribed { channel, recovered } => {
                self.subscribed(session, now, channel, recovered)
            }
            Event::Unsubscribed {
                channel,
                code,
                reason,
            } => {
                if let Some((_, ready)) = self.confirming.remove(&channel) {
                    let refusal = ReplyError::new(ErrorCode::from_u32(code), reason);
                    let _ = ready.send(Err(RequestError::Server(refusal).into()));
                } else if let Some(mut entry) = self.channels.remove(&channel) {
                    // If the buffer is full, dropping the outlet still ends the stream.
                    let _ = entry
                        .outlet
                        .offer(SubscriptionEvent::Unsubscribed { code, reason }, sub_lagged);
                }
            }
            Event::Publication(publication) => self.publication(session, now, publication),
            Event::Join { channel, client } => {
                self.channel_event(&channel, SubscriptionEvent::Join(client))
            }
            Event::Leave { channel, client } => {
                self.channel_event(&channel, SubscriptionEvent::Leave(client))
            }
            Event::Message { from, data } => self.message(DirectMessage::new(from, data)),
        }
    }

    /// A failed attempt's cause, for the listeners and for `connect()`.
    pub(crate) fn failed(&mut self, error: Error) {
        tracing::warn!(%error, "connection attempt failed");
        self.status.lock().last_error = Some(error.clone());
        self.broadcast(ClientEvent::Error(error));
    }

    fn subscribed(
        &mut self,
        session: &mut Session,
        now: Duration,
        channel: String,
        recovered: bool,
    ) {
        if let Some((events, ready)) = self.confirming.remove(&channel) {
            if ready.send(Ok(recovered)).is_err() {
                // The caller stopped waiting: nobody holds this subscription.
                session.unsubscribe(now, &channel);
                return;
            }
            let entry = Channel {
                outlet: Outlet::new(events),
                delivered: None,
                paused: false,
                notice: None,
            };
            self.channels.insert(channel, entry);
            return;
        }
        let Some(entry) = self.channels.get_mut(&channel) else {
            return;
        };
        if entry.paused && recovered {
            // The resubscription after the pause says it again.
            return;
        }
        let notice = SubscriptionEvent::Resubscribed { recovered };
        if entry.notice.is_some() || entry.outlet.offer(notice, sub_lagged) == Offer::Full {
            // Kept (a "reload" wins over an "all recovered") until there is room.
            entry.notice = Some(entry.notice.unwrap_or(true) && recovered);
            if let Some(wait) = entry.outlet.room() {
                self.rooms.push(waiting(wait, Room::Channel(channel)));
            }
        }
    }

    fn publication(&mut self, session: &mut Session, now: Duration, publication: Publication) {
        let Some(entry) = self.channels.get_mut(&publication.channel) else {
            return;
        };
        if entry.paused {
            // Recovered when the subscription resumes.
            return;
        }
        let position = match (publication.offset, &publication.epoch) {
            (Some(offset), Some(epoch)) => Some(StreamPosition::new(offset, epoch.clone())),
            _ => None,
        };
        let channel = publication.channel.clone();
        // Nothing overtakes a resubscription notice still waiting for room.
        let offered = if entry.notice.is_some() {
            Offer::Full
        } else {
            entry
                .outlet
                .offer(SubscriptionEvent::Publication(publication), sub_lagged)
        };
        match offered {
            Offer::Taken => {
                if position.is_some() {
                    entry.delivered = position;
                }
            }
            Offer::Full if position.is_some() => {
                // A channel with history: stop the flow, recover it later.
                tracing::debug!(%channel, "the application fell behind: pausing the subscription");
                entry.paused = true;
                session.pause(now, &channel, entry.delivered.clone());
                if let Some(wait) = entry.outlet.room() {
                    self.rooms.push(waiting(wait, Room::Channel(channel)));
                }
            }
            Offer::Full => {
                entry.outlet.skip();
                if let Some(wait) = entry.outlet.room() {
                    self.rooms.push(waiting(wait, Room::Channel(channel)));
                }
            }
            // The handle was dropped; its unsubscribe is on the way.
            Offer::Gone => {}
        }
    }

    fn channel_event(&mut self, channel: &str, event: SubscriptionEvent) {
        let Some(entry) = self.channels.get_mut(channel) else {
            return;
        };
        if entry.notice.is_some() || entry.outlet.offer(event, sub_lagged) == Offer::Full {
            entry.outlet.skip();
            if let Some(wait) = entry.outlet.room() {
                self.rooms
                    .push(waiting(wait, Room::Channel(channel.to_owned())));
            }
        }
    }

    fn broadcast(&mut self, event: ClientEvent) {
        let rooms = &self.rooms;
        self.listeners.retain(|id, outlet| {
            let offer = outlet.offer(event.clone(), client_lagged);
            overflowed(offer, outlet, rooms, Room::Listener(*id))
        });
    }

    fn message(&mut self, message: DirectMessage) {
        if self.inboxes.is_empty() {
            if self.backlog.len() < self.backlog_capacity {
                self.backlog.push_back(message);
            } else {
                self.backlog_skipped += 1;
            }
            return;
        }
        let rooms = &self.rooms;
        self.inboxes.retain(|id, outlet| {
            let offer = outlet.offer(MessageEvent::Message(message.clone()), message_lagged);
            overflowed(offer, outlet, rooms, Room::Inbox(*id))
        });
    }

    /// A new reader of direct messages; the first gets what waited for one.
    fn add_inbox(&mut self, messages: mpsc::Sender<MessageEvent>) {
        let mut outlet = Outlet::new(messages);
        for message in self.backlog.drain(..) {
            if outlet.offer(MessageEvent::Message(message), message_lagged) == Offer::Full {
                outlet.skip();
            }
        }
        for _ in 0..std::mem::take(&mut self.backlog_skipped) {
            outlet.skip();
        }
        self.next_reader += 1;
        let id = self.next_reader;
        if outlet.report(message_lagged) == Offer::Full
            && let Some(wait) = outlet.room()
        {
            self.rooms.push(waiting(wait, Room::Inbox(id)));
        }
        self.inboxes.insert(id, outlet);
    }
}

/// A room that opened up (see [`Dispatch::room`]).
#[derive(Debug)]
pub(crate) struct RoomReady(Room);

/// After an offer to a listener: a full buffer counts the item and waits for
/// room to report it. Whether the listener is still there.
fn overflowed<T: SendOutsideWasm + 'static>(
    offer: Offer,
    outlet: &mut Outlet<T>,
    rooms: &FuturesUnordered<BoxedFuture<Room>>,
    room: Room,
) -> bool {
    match offer {
        Offer::Taken => true,
        Offer::Full => {
            outlet.skip();
            if let Some(wait) = outlet.room() {
                rooms.push(waiting(wait, room));
            }
            true
        }
        Offer::Gone => false,
    }
}

/// A listener's buffer has room: report what it skipped (waiting again if
/// even that does not fit).
fn report<T: SendOutsideWasm + 'static>(
    outlet: &mut Outlet<T>,
    lag: fn(u64) -> T,
    rooms: &FuturesUnordered<BoxedFuture<Room>>,
    room: Room,
) {
    outlet.roomy();
    if outlet.report(lag) == Offer::Full
        && let Some(wait) = outlet.room()
    {
        rooms.push(waiting(wait, room));
    }
}

fn waiting(wait: BoxedFuture<()>, room: Room) -> BoxedFuture<Room> {
    Box::pin(async move {
        wait.await;
        room
    })
}

fn sub_lagged(skipped: u64) -> SubscriptionEvent {
    SubscriptionEvent::Lagged { skipped }
}

fn client_lagged(skipped: u64) -> ClientEvent {
    ClientEvent::Lagged { skipped }
}

fn message_lagged(skipped: u64) -> MessageEvent {
    MessageEvent::Lagged { skipped }
}

impl std::fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatch")
            .field("replies", &self.replies.len())
            .field("channels", &self.channels.len())
            .field("confirming", &self.confirming.len())
            .field("listeners", &self.listeners.len())
            .field("inboxes", &self.inboxes.len())
            .field("backlog", &self.backlog.len())
            .field("rooms", &self.rooms.len())
            .finish()
    }
}
