//! The node: this process's clients and which of them subscribe to what.
//! It receives what the broker carries (`BrokerEvents`) and queues it to the
//! sockets, encoding each push once per codec.
//!
//! A new subscriber is registered before its stream position is read, with
//! its deliveries buffered; once the position is known, buffered
//! publications it already has (by offset) are dropped and the rest follow
//! its reply. So nothing published around a subscribe is missed, repeated
//! or reordered, whatever the broker's delivery delay.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use dashmap::DashMap;
use sacred_proto::{
    Codec, DisconnectCode, EncodeError, Join, Leave, Peer, Publication, ServerMessage,
};

use crate::broker::{Broker, BrokerError, BrokerEvents};
use crate::outbound::{self, Outbound};

/// Congested queues remembered per channel for its publishers to wait on;
/// more are not needed to slow a publisher down.
const MAX_CONGESTED: usize = 64;

/// This node's clients and channel members.
#[derive(Default)]
pub(crate) struct Node {
    /// Connected clients by client id.
    pub(crate) clients: DashMap<String, Client>,
    /// Channels with members here, by name.
    channels: DashMap<String, Arc<LocalChannel>>,
}

/// A connected client, as the hub reaches it.
pub(crate) struct Client {
    pub(crate) peer: Peer,
    pub(crate) outbound: Outbound,
}

/// One channel's members on this node.
#[derive(Default)]
pub(crate) struct LocalChannel {
    members: Mutex<Members>,
    /// Whether the broker delivers this channel here. Held while subscribing
    /// or unsubscribing with the broker, so those calls never interleave.
    interest: tokio::sync::Mutex<bool>,
}

#[derive(Default)]
struct Members {
    by_client: HashMap<String, Member>,
    /// Set when the channel left the map; whoever holds a stale `Arc` retries.
    removed: bool,
    /// Queues a delivery found congested, for the publisher to wait on.
    congested: Vec<Outbound>,
}

struct Member {
    peer: Peer,
    outbound: Outbound,
    join_leave: bool,
    delivery: Delivery,
}

/// Where a member's publications go.
enum Delivery {
    /// The subscribe is reading its position: kept until it is known.
    Buffering(Vec<Arc<Publication>>),
    /// Straight to the socket, skipping offsets at or below `last`.
    Live { last: Option<u64> },
}

impl Member {
    /// Whether `publication` goes to this member's socket now.
    fn accepts(&mut self, publication: &Arc<Publication>) -> bool {
        match &mut self.delivery {
            Delivery::Buffering(buffer) => {
                buffer.push(Arc::clone(publication));
                false
            }
            Delivery::Live { last } => match (publication.offset, *last) {
                (Some(offset), Some(seen)) if offset <= seen => false,
                (Some(offset), _) => {
                    *last = Some(offset);
                    true
                }
                (None, _) => true,
            },
        }
    }
}

impl LocalChannel {
    fn members(&self) -> MutexGuard<'_, Members> {
        // A panic while holding the lock leaves the members consistent (every
        // change is a single insert or remove), so a poisoned lock is used as is.
        self.members
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Why a local subscribe could not register.
pub(crate) enum Refused {
    AlreadySubscribed,
}

impl Node {
    pub(crate) fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Registers `peer` as a member of `channel`, its deliveries buffered if
    /// `buffer` (the subscribe reads a position), else live. Returns the
    /// channel, on which [`Node::interest`] and [`Node::go_live`] follow.
    pub(crate) fn add_member(
        &self,
        channel: &str,
        peer: &Peer,
        outbound: &Outbound,
        join_leave: bool,
        buffer: bool,
    ) -> Result<Arc<LocalChannel>, Refused> {
        loop {
            let live = self.local(channel);
            let mut members = live.members();
            if members.removed {
                continue;
            }
            if members.by_client.contains_key(&peer.id) {
                return Err(Refused::AlreadySubscribed);
            }
            let delivery = if buffer {
                Delivery::Buffering(Vec::new())
            } else {
                Delivery::Live { last: None }
            };
            let member = Member {
                peer: peer.clone(),
                outbound: outbound.clone(),
                join_leave,
                delivery,
            };
            members.by_client.insert(peer.id.clone(), member);
            drop(members);
            return Ok(live);
        }
    }

    /// Makes sure the broker delivers `channel` here (the first member asks).
    pub(crate) async fn interest(
        &self,
        live: &LocalChannel,
        channel: &str,
        broker: &dyn Broker,
    ) -> Result<(), BrokerError> {
        let mut interested = live.interest.lock().await;
        if !*interested {
            broker.subscribe(channel).await?;
            *interested = true;
        }
        Ok(())
    }

    /// Ends a member's buffering: publications at or below `position` (the
    /// stream's offset its reply carries) are dropped, the rest queued in order.
    pub(crate) fn go_live(&self, live: &LocalChannel, client: &str, position: Option<u64>) {
        let mut members = live.members();
        let Some(member) = members.by_client.get_mut(client) else {
            return;
        };
        let buffered =
            match std::mem::replace(&mut member.delivery, Delivery::Live { last: position }) {
                Delivery::Buffering(buffered) => buffered,
                Delivery::Live { .. } => Vec::new(),
            };
        for publication in buffered {
            if member.accepts(&publication) {
                let push = member.outbound.codec().encode_publication(&publication);
                match push {
                    Ok(bytes) => {
                        let encoded = outbound::encoded(member.outbound.codec(), bytes);
                        let _ = member.outbound.send(&encoded);
                    }
                    Err(err) => tracing::error!(%err, "cannot encode a publication"),
                }
            }
        }
    }

    /// Removes `client` from `channel`'s members; its peer if it was one.
    pub(crate) fn remove_member(
        &self,
        channel: &str,
        client: &str,
    ) -> Option<(Arc<LocalChannel>, Peer)> {
        let live = self.channels.get(channel).map(|c| Arc::clone(&c))?;
        let member = live.members().by_client.remove(client)?;
        Some((live, member.peer))
    }

    /// Forgets `channel` if it has no members left, telling the broker.
    pub(crate) async fn release(&self, live: &LocalChannel, channel: &str, broker: &dyn Broker) {
        let mut interested = live.interest.lock().await;
        if !live.members().by_client.is_empty() {
            return;
        }
        if *interested {
            if let Err(err) = broker.unsubscribe(channel).await {
                tracing::warn!(channel, err = %crate::hub::ErrorChain(&err), "broker unsubscribe failed");
            }
            *interested = false;
        }
        // Whoever joined while the broker was told stays; the next to leave
        // releases again.
        let mut members = live.members();
        if members.by_client.is_empty() && !members.removed {
            members.removed = true;
            self.channels.remove(channel);
        }
    }

    /// The publishers' share of congested queues of `channel`.
    pub(crate) fn take_congested(&self, channel: &str) -> Vec<Outbound> {
        match self.channels.get(channel) {
            Some(live) => std::mem::take(&mut live.members().congested),
            None => Vec::new(),
        }
    }

    /// Every channel with members here and their peers (presence refresh).
    pub(crate) fn all_members(&self) -> Vec<(String, Vec<Peer>)> {
        let every: Vec<(String, Arc<LocalChannel>)> = self
            .channels
            .iter()
            .map(|c| (c.key().clone(), Arc::clone(c.value())))
            .collect();
        every
            .into_iter()
            .map(|(name, live)| {
                let peers = live
                    .members()
                    .by_client
                    .values()
                    .map(|m| m.peer.clone())
                    .collect();
                (name, peers)
            })
            .collect()
    }

    /// Everyone subscribed to `channel` on this node.
    pub(crate) fn local_members(&self, channel: &str) -> Vec<Peer> {
        match self.channels.get(channel) {
            Some(live) => live
                .members()
                .by_client
                .values()
                .map(|m| m.peer.clone())
                .collect(),
            None => Vec::new(),
        }
    }

    /// The live channel named `name`, created if needed.
    fn local(&self, name: &str) -> Arc<LocalChannel> {
        if let Some(channel) = self.channels.get(name) {
            return Arc::clone(&channel);
        }
        Arc::clone(&self.channels.entry(name.to_owned()).or_default())
    }

    /// Sends a `join` or `leave` push to the members that opted in, except `peer` itself.
    fn tell_watchers(&self, channel: &str, peer: &Peer, push: &ServerMessage) {
        let Some(live) = self.channels.get(channel).map(|c| Arc::clone(&c)) else {
            return;
        };
        let members = live.members();
        fan_out(
            members
                .by_client
                .values()
                .filter(|m| m.join_leave && m.peer.id != peer.id)
                .map(|m| &m.outbound),
            |codec| codec.encode(push),
        );
    }
}

impl BrokerEvents for Node {
    fn publication(&self, channel: &str, publication: Arc<Publication>) {
        let Some(live) = self.channels.get(channel).map(|c| Arc::clone(&c)) else {
            return;
        };
        let mut members = live.members();
        let members = &mut *members;
        let congested = fan_out(
            members
                .by_client
                .values_mut()
                .filter_map(|m| m.accepts(&publication).then_some(&m.outbound)),
            |codec| codec.encode_publication(&publication),
        );
        let room = MAX_CONGESTED.saturating_sub(members.congested.len());
        members.congested.extend(congested.into_iter().take(room));
    }

    fn join(&self, channel: &str, peer: &Peer) {
        let push = ServerMessage::push(Join::new(channel, peer.clone()));
        self.tell_watchers(channel, peer, &push);
    }

    fn leave(&self, channel: &str, peer: &Peer) {
        let push = ServerMessage::push(Leave::new(channel, peer.clone()));
        self.tell_watchers(channel, peer, &push);
    }

    fn lost(&self, channel: Option<&str>) {
        // The protocol recovers whole connections: a client closed with
        // 3005 reconnects and resubscribes from its positions.
        let close = |live: &LocalChannel| {
            for member in live.members().by_client.values() {
                member.outbound.close(DisconnectCode::INSUFFICIENT_STATE);
            }
        };
        match channel {
            Some(channel) => {
                if let Some(live) = self.channels.get(channel).map(|c| Arc::clone(&c)) {
                    close(&live);
                }
            }
            None => {
                let every: Vec<Arc<LocalChannel>> =
                    self.channels.iter().map(|c| Arc::clone(&c)).collect();
                for live in every {
                    close(&live);
                }
            }
        }
    }
}

/// Sends one push to many connections, encoding it once per codec; returns
/// the connections whose queues are congested.
pub(crate) fn fan_out<'a>(
    targets: impl Iterator<Item = &'a Outbound>,
    encode: impl Fn(Codec) -> Result<Vec<u8>, EncodeError>,
) -> Vec<Outbound> {
    let mut congested = Vec::new();
    let mut encoded: [Option<outbound::Encoded>; 2] = [None, None];
    for outbound in targets {
        let codec = outbound.codec();
        let slot = &mut encoded[usize::from(codec == Codec::MsgPack)];
        if slot.is_none() {
            match encode(codec) {
                Ok(bytes) => *slot = Some(outbound::encoded(codec, bytes)),
                Err(err) => {
                    tracing::error!(%err, "cannot encode a push");
                    return congested;
                }
            }
        }
        if let Some(message) = slot
            && outbound.send(message)
        {
            congested.push(outbound.clone());
        }
    }
    congested
}
