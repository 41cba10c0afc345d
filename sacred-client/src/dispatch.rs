//! Between the handles and the session, for every transport: requests from
//! handles go into the session, and the session's events go back to the
//! callers, subscriptions and listeners waiting for them.

use std::collections::HashMap;
use std::time::Duration;

use sacred_proto::{ErrorCode, Reply, ReplyError};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::client::{ClientEvent, Op, SubscriptionEvent};
use crate::error::Error;
use crate::event::{Event, RequestError, RequestId, State};
use crate::session::Session;

/// A caller waiting for a reply.
type ReplySender = oneshot::Sender<Result<Reply, Error>>;
/// A subscription waiting for its first confirmation: its event sender and
/// the caller of `subscribe`.
type Confirming = (
    mpsc::UnboundedSender<SubscriptionEvent>,
    oneshot::Sender<Result<bool, Error>>,
);

/// Who waits for what the session produces.
#[derive(Debug)]
pub(crate) struct Dispatch {
    /// The state every handle watches.
    state: watch::Sender<State>,
    /// Connection-wide events for whoever listens.
    events: broadcast::Sender<ClientEvent>,
    /// Callers waiting for a reply, by request.
    replies: HashMap<RequestId, ReplySender>,
    /// Active subscriptions' event senders, by channel.
    subscriptions: HashMap<String, mpsc::UnboundedSender<SubscriptionEvent>>,
    /// Subscriptions waiting for their first confirmation.
    confirming: HashMap<String, Confirming>,
    /// `connect()` waiting for the first connection.
    connected: Option<oneshot::Sender<Result<(), Error>>>,
}

impl Dispatch {
    pub(crate) fn new(
        state: watch::Sender<State>,
        events: broadcast::Sender<ClientEvent>,
        connected: oneshot::Sender<Result<(), Error>>,
    ) -> Dispatch {
        Dispatch {
            state,
            events,
            replies: HashMap::new(),
            subscriptions: HashMap::new(),
            confirming: HashMap::new(),
            connected: Some(connected),
        }
    }

    /// Carries a handle's request to the session.
    pub(crate) fn apply(&mut self, session: &mut Session, now: Duration, op: Op) {
        match op {
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
                if self.subscriptions.remove(&channel).is_some() {
                    session.unsubscribe(now, &channel);
                }
            }
            Op::Publish {
                channel,
                data,
                reply,
            } => match session.publish(now, &channel, data) {
                Ok(request) => drop(self.replies.insert(request, reply)),
                Err(err) => drop(reply.send(Err(err.into()))),
            },
            Op::Request { command, reply } => match session.request(now, command) {
                Ok(request) => drop(self.replies.insert(request, reply)),
                Err(err) => drop(reply.send(Err(err.into()))),
            },
            Op::ServerTime(reply) => drop(reply.send(session.server_time(now))),
            Op::Close => session.close(now),
        }
    }

    /// Hands one session event to whoever waits for it.
    pub(crate) fn route(&mut self, event: Event) {
        match event {
            Event::State(state) => drop(self.state.send_replace(state)),
            Event::Connected(reply) => {
                let _ = self.events.send(ClientEvent::Connected {
                    client: reply.client,
                });
                if let Some(connected) = self.connected.take() {
                    let _ = connected.send(Ok(()));
                }
            }
            Event::Disconnected { code, reconnect } => {
                let _ = self
                    .events
                    .send(ClientEvent::Disconnected { code, reconnect });
                if !reconnect && let Some(connected) = self.connected.take() {
                    let reason = sacred_proto::DisconnectCode::from_u16(code)
                        .text()
                        .unwrap_or("refused");
                    let _ = connected.send(Err(Error::refused(code, reason)));
                }
            }
            Event::Reply { request, result } => {
                if let Some(reply) = self.replies.remove(&request) {
                    let _ = reply.send(result.map_err(Error::from));
                }
            }
            Event::Subscribed { channel, recovered } => {
                if let Some((events, ready)) = self.confirming.remove(&channel) {
                    self.subscriptions.insert(channel, events);
                    let _ = ready.send(Ok(recovered));
                } else if let Some(events) = self.subscriptions.get(&channel) {
                    let _ = events.send(SubscriptionEvent::Resubscribed { recovered });
                }
            }
            Event::Unsubscribed { channel, code } => {
                if let Some((_, ready)) = self.confirming.remove(&channel) {
                    let refusal =
                        ReplyError::new(ErrorCode::from_u32(code), "subscription refused");
                    let _ = ready.send(Err(RequestError::Server(refusal).into()));
                } else if let Some(events) = self.subscriptions.remove(&channel) {
                    let _ = events.send(SubscriptionEvent::Unsubscribed { code });
                }
            }
            Event::Publication(publication) => {
                if let Some(events) = self.subscriptions.get(&publication.channel) {
                    let _ = events.send(SubscriptionEvent::Publication(publication));
                }
            }
            Event::Join { channel, client } => {
                if let Some(events) = self.subscriptions.get(&channel) {
                    let _ = events.send(SubscriptionEvent::Join(client));
                }
            }
            Event::Leave { channel, client } => {
                if let Some(events) = self.subscriptions.get(&channel) {
                    let _ = events.send(SubscriptionEvent::Leave(client));
                }
            }
            Event::Message { from, data } => {
                drop(self.events.send(ClientEvent::Message { from, data }))
            }
        }
    }
}
