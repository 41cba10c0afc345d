//! The node: this process's clients and which of them subscribe to what.
//! It receives what the broker carries (`BrokerEvents`) and queues it to the
//! sockets, encoding each push once per codec.
//!
//! A new subscriber is registered before its stream position is read, with
//! its deliveries buffered; once the position is known, buffered
//! publications it already has (by offset) are dropped and the rest follow
//! its reply. So nothing published around a subscribe is missed, repeated
//! or reordered, whatever the broker's delivery delay.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use dashmap::DashMap;
use sacred_proto::{
    Codec, DisconnectCode, EncodeError, Join, Leave, Peer, Publication, ServerMessage,
};

use crate::broker::{Broker, BrokerError, BrokerEvents};
use crate::outbound::{self, Outbound};
use crate::trace;

/// Congested queues remembered per channel for its publishers to wait on;
/// more are not needed to slow a publisher down.
const MAX_CONGESTED: usize = 64;

/// How long a skipped offset may take to arrive (a reordering) before the
/// channel's subscribers here are told to recover (a loss).
const GAP_PATIENCE: Duration = Duration::from_secs(1);

/// Publications held behind a skipped offset at most; past this, a loss.
const MAX_HELD: usize = 1024;

/// This node's clients and channel members.
pub(crate) struct Node {
    /// Connected clients by client id.
    pub(crate) clients: DashMap<String, Client>,
    /// Channels with members here, by name.
    channels: DashMap<String, Arc<LocalChannel>>,
    /// This node, for the timers it starts (set by the hub).
    this: OnceLock<Weak<Node>>,
    /// Publications queued to members (`sacred_deliveries_total`).
    deliveries: metrics::Counter,
    /// The same count, readable (the `metrics` counter is write-only): for
    /// the admin dashboard's messages out per second.
    pub(crate) delivered: AtomicU64,
}

/// The channels and subscribers of a node, and how many of them are caught
/// up ([`Node::coherence`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Coherence {
    pub(crate) channels: usize,
    pub(crate) subscriptions: usize,
    /// Clients with at least one subscription.
    pub(crate) subscribers: usize,
    /// Of those, the ones whose queue drained within the window.
    pub(crate) caught_up: usize,
}

/// A connected client, as the hub reaches it.
pub(crate) struct Client {
    pub(crate) peer: Peer,
    pub(crate) outbound: Outbound,
    /// The credential it authenticated with ([`crate::Identity::credential`]).
    pub(crate) credential: Option<String>,
    /// When it connected, milliseconds since the Unix epoch.
    pub(crate) connected_ms: u64,
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
    /// What the broker delivered of the channel's stream.
    stream: Stream,
}

/// The channel's stream as delivered here, for gap detection.
#[derive(Default)]
struct Stream {
    epoch: Option<String>,
    last: u64,
    /// Publications that came after a skipped offset, waiting for it.
    held: BTreeMap<u64, Arc<Publication>>,
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
    /// Straight to the socket, skipping offsets at or below `last`; a
    /// publication of another epoch than the member's closes it with 3005.
    Live {
        last: Option<u64>,
        epoch: Option<String>,
    },
}

impl Member {
    /// Whether `publication` goes to this member's socket now.
    fn accepts(&mut self, publication: &Arc<Publication>) -> bool {
        match &mut self.delivery {
            Delivery::Buffering(buffer) => {
                buffer.push(Arc::clone(publication));
                false
            }
            Delivery::Live { last, epoch } => {
                if let (Some(theirs), Some(ours)) = (&publication.epoch, epoch.as_ref())
                    && theirs != ours
                {
                    // The stream was lost and restarted: offsets begin again,
                    // so this member's position means nothing any more.
                    self.outbound.close(DisconnectCode::INSUFFICIENT_STATE);
                    return false;
                }
                match (publication.offset, *last) {
                    (Some(offset), Some(seen)) if offset <= seen => false,
                    (Some(offset), _) => {
                        *last = Some(offset);
                        if epoch.is_none() {
                            epoch.clone_from(&publication.epoch);
                        }
                        true
                    }
                    (None, _) => true,
                }
            }
        }
    }
}

impl Members {
    /// Queues `publication` to every member that takes it, noting
    /// congestion; returns to how many it went.
    fn deliver(&mut self, publication: &Arc<Publication>) -> u64 {
        let mut delivered = 0;
        let congested = fan_out(
            self.by_client.values_mut().filter_map(|m| {
                let accepts = m.accepts(publication);
                delivered += u64::from(accepts);
                accepts.then_some(&m.outbound)
            }),
            |codec| codec.encode_publication(publication),
        );
        let room = MAX_CONGESTED.saturating_sub(self.congested.len());
        self.congested.extend(congested.into_iter().take(room));
        delivered
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
    /// A node that knows itself (for its gap timers), counting its
    /// deliveries on `deliveries`.
    pub(crate) fn new(deliveries: metrics::Counter) -> Arc<Node> {
        let node = Arc::new(Node {
            clients: DashMap::new(),
            channels: DashMap::new(),
            this: OnceLock::new(),
            deliveries,
            delivered: AtomicU64::new(0),
        });
        let _ = node.this.set(Arc::downgrade(&node));
        node
    }

    /// Counts `n` deliveries of one fan-out, once per fan-out (not per member).
    fn delivered(&self, n: u64) {
        self.deliveries.increment(n);
        self.delivered.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Counts channels, subscriptions and subscribers, and the subscribers
    /// whose queue drained within `window` (see [`Outbound::caught_up`]).
    pub(crate) fn coherence(&self, window: Duration) -> Coherence {
        let now = tokio::time::Instant::now();
        let mut seen = std::collections::HashSet::new();
        let mut coherence = Coherence::default();
        let channels: Vec<Arc<LocalChannel>> =
            self.channels.iter().map(|c| Arc::clone(&c)).collect();
        for live in channels {
            let members = live.members();
            if members.by_client.is_empty() {
                continue;
            }
            coherence.channels += 1;
            coherence.subscriptions += members.by_client.len();
            for (client, member) in &members.by_client {
                if seen.insert(client.clone()) {
                    coherence.subscribers += 1;
                    coherence.caught_up += usize::from(member.outbound.caught_up(window, now));
                }
            }
        }
        coherence
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
                Delivery::Live {
                    last: None,
                    epoch: None,
                }
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
            // What was delivered before this subscribe says nothing about
            // what follows it (the channel may have been unsubscribed a
            // moment ago): gap detection starts over.
            live.members().stream = Stream::default();
        }
        Ok(())
    }

    /// Ends a member's buffering: publications at or below `offset` (the
    /// stream's position its reply carries, under `epoch`) are dropped, the
    /// rest queued in order.
    pub(crate) fn go_live(
        &self,
        live: &LocalChannel,
        client: &str,
        offset: Option<u64>,
        epoch: Option<String>,
    ) {
        let mut members = live.members();
        let Some(member) = members.by_client.get_mut(client) else {
            return;
        };
        let buffered = match std::mem::replace(
            &mut member.delivery,
            Delivery::Live {
                last: offset,
                epoch,
            },
        ) {
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

    /// How many are subscribed to each channel on this node: each
    /// channel's lock held for a length read, nobody copied.
    pub(crate) fn member_counts(&self) -> Vec<(String, usize)> {
        let every: Vec<(String, Arc<LocalChannel>)> = self
            .channels
            .iter()
            .map(|c| (c.key().clone(), Arc::clone(c.value())))
            .collect();
        every
            .into_iter()
            .map(|(name, live)| {
                let count = live.members().by_client.len();
                (name, count)
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

    /// After [`GAP_PATIENCE`], checks whether offset `missing` of `channel`
    /// arrived; if not, its subscribers here recover.
    fn check_gap_later(&self, channel: &str, epoch: String, missing: u64) {
        let (Some(node), Ok(runtime)) = (
            self.this.get().cloned(),
            tokio::runtime::Handle::try_current(),
        ) else {
            return;
        };
        let channel = channel.to_owned();
        runtime.spawn(async move {
            tokio::time::sleep(GAP_PATIENCE).await;
            let Some(node) = node.upgrade() else {
                return;
            };
            let Some(live) = node.channels.get(&channel).map(|c| Arc::clone(&c)) else {
                return;
            };
            let still = {
                let members = live.members();
                let stream = &members.stream;
                stream.epoch.as_deref() == Some(epoch.as_str())
                    && stream.last < missing
                    && !stream.held.is_empty()
            };
            if still {
                node.gave_up(&live, &channel);
            }
        });
    }

    /// A publication of `channel` was lost on the way here: its subscribers
    /// recover from the stream (3005), and delivery resumes after what was held.
    fn gave_up(&self, live: &LocalChannel, channel: &str) {
        crate::telemetry::offset_gap();
        let mut members = live.members();
        tracing::warn!(
            channel,
            after = members.stream.last,
            "a publication never arrived: subscribers recover"
        );
        if let Some((&last, _)) = members.stream.held.last_key_value() {
            members.stream.last = last;
        }
        members.stream.held.clear();
        for member in members.by_client.values() {
            member.outbound.close(DisconnectCode::INSUFFICIENT_STATE);
        }
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
        let span = trace::deliver_span(channel, publication.traceparent.as_deref());
        let _entered = span.enter();
        let delivered = |n: u64| {
            self.delivered(n);
            span.record("deliveries", n);
        };
        let mut guard = live.members();
        let members = &mut *guard;
        let (Some(offset), Some(epoch)) = (publication.offset, publication.epoch.as_deref()) else {
            // No stream: nothing to order.
            delivered(members.deliver(&publication));
            return;
        };
        let stream = &mut members.stream;
        if stream.epoch.as_deref() != Some(epoch) {
            // The first delivery here, or a new epoch (members of the old
            // one close themselves when they see it).
            stream.epoch = Some(epoch.to_owned());
            stream.last = offset;
            stream.held.clear();
            delivered(members.deliver(&publication));
            return;
        }
        if offset <= stream.last {
            return; // delivered already
        }
        if offset > stream.last + 1 {
            // A skipped offset: a reordering resolves itself within the
            // patience, a loss does not (see `Node::check_gap`).
            let first = stream.held.is_empty();
            let (epoch, missing) = (epoch.to_owned(), stream.last + 1);
            stream.held.insert(offset, Arc::clone(&publication));
            if stream.held.len() > MAX_HELD {
                drop(guard);
                self.gave_up(&live, channel);
            } else if first {
                self.check_gap_later(channel, epoch, missing);
            }
            return;
        }
        stream.last = offset;
        delivered(members.deliver(&publication));
        while let Some(next) = members.stream.held.remove(&(members.stream.last + 1)) {
            members.stream.last += 1;
            delivered(members.deliver(&next));
        }
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

#[cfg(test)]
mod tests {
    use sacred_proto::{ClientInfo, Value};

    use super::*;

    fn peer(id: &str) -> Peer {
        let mut peer = Peer::default();
        peer.id = id.to_owned();
        peer.info = ClientInfo::default();
        peer
    }

    fn publication(offset: u64, epoch: &str) -> Arc<Publication> {
        let mut publication = Publication::new("c", Value::from(offset), 0);
        publication.offset = Some(offset);
        publication.epoch = Some(epoch.to_owned());
        Arc::new(publication)
    }

    /// The offsets queued to `outbound` so far, in order.
    fn delivered(outbound: &Outbound) -> Vec<u64> {
        let (frames, _) = outbound.take();
        let mut offsets = Vec::new();
        for frame in frames {
            let axum::extract::ws::Message::Text(text) = frame else {
                panic!("JSON frames");
            };
            let value: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
            let messages = match value {
                serde_json::Value::Array(messages) => messages,
                one => vec![one],
            };
            for message in messages {
                offsets.push(message["publication"]["offset"].as_u64().unwrap());
            }
        }
        offsets
    }

    fn member(node: &Node) -> Outbound {
        let outbound = Outbound::new(Codec::Json, 1 << 20);
        assert!(
            node.add_member("c", &peer("m"), &outbound, false, false)
                .is_ok()
        );
        outbound
    }

    #[tokio::test(start_paused = true)]
    async fn a_reordered_offset_is_held_and_delivered_in_order() {
        let node = Node::new(metrics::Counter::noop());
        let outbound = member(&node);
        node.publication("c", publication(1, "e"));
        node.publication("c", publication(3, "e"));
        node.publication("c", publication(4, "e"));
        assert_eq!(delivered(&outbound), [1], "3 and 4 wait for 2");
        node.publication("c", publication(2, "e"));
        assert_eq!(delivered(&outbound), [2, 3, 4]);
        tokio::time::sleep(GAP_PATIENCE * 2).await;
        assert!(!outbound.is_closing(), "a reordering is no loss");
    }

    #[tokio::test(start_paused = true)]
    async fn an_offset_that_never_comes_makes_the_subscribers_recover() {
        let node = Node::new(metrics::Counter::noop());
        let outbound = member(&node);
        node.publication("c", publication(1, "e"));
        node.publication("c", publication(3, "e"));
        tokio::time::sleep(GAP_PATIENCE / 2).await;
        assert!(!outbound.is_closing(), "still within the patience");
        tokio::time::sleep(GAP_PATIENCE).await;
        assert!(
            outbound.is_closing(),
            "closed with 3005: reconnect and recover"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_epoch_closes_members_of_the_old_one() {
        let node = Node::new(metrics::Counter::noop());
        let outbound = member(&node);
        node.publication("c", publication(7, "old"));
        node.publication("c", publication(1, "new"));
        assert!(
            outbound.is_closing(),
            "offsets began again: its position means nothing"
        );
    }
}
