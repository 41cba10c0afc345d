//! `Hub`: the handle host code programs against, and the state every
//! connection shares: who is connected, who is in which channel, history.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use dashmap::DashMap;
use sacred_proto::{
    Codec, DirectMessage, DisconnectCode, EncodeError, ErrorCode, HistoryReply, HistoryRequest,
    Join, Leave, Migrate, Peer, Publication, PublishReply, ReplyError, ServerMessage,
    SubscribeReply, SubscribeRequest, Value, channel_namespace,
};
use tokio::sync::{Mutex, Notify};

use crate::auth::Authenticator;
use crate::builder::HubBuilder;
use crate::history::{HistoryError, HistoryStore, Query, Retention};
use crate::hooks::{ChannelUse, Hooks, PublishContext, SendContext, SubscribeContext};
use crate::options::{Access, HubOptions, NamespaceOptions};
use crate::outbound::{self, Outbound};
use crate::rpc::RpcHandler;
use crate::time::now_ms;

/// The hub handle: publish from host code, send to one client, read presence,
/// disconnect clients, shut down. Cheap to clone (no need to wrap it in `Arc`).
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<HubInner>,
}

pub(crate) struct HubInner {
    pub(crate) options: HubOptions,
    pub(crate) auth: Arc<dyn Authenticator>,
    pub(crate) history: Arc<dyn HistoryStore>,
    pub(crate) rpc: HashMap<String, RpcHandler>,
    pub(crate) hooks: Hooks,
    /// Connected clients by client id.
    clients: DashMap<String, Client>,
    /// Channels with subscribers (or a publish in progress), by name.
    channels: DashMap<String, Arc<Channel>>,
    /// False once shutdown began: `/ready` fails and upgrades are refused.
    ready: AtomicBool,
    /// Woken whenever a client leaves, so shutdown can wait for the drain.
    client_left: Notify,
}

/// A connected client, as the hub reaches it.
struct Client {
    peer: Peer,
    outbound: Outbound,
}

/// One channel: its members, behind a lock that orders everything that
/// touches the channel (publish, subscribe with recovery, unsubscribe).
struct Channel {
    members: Mutex<Members>,
}

#[derive(Default)]
struct Members {
    by_client: HashMap<String, Member>,
    /// Set when the channel left the map; whoever holds a stale `Arc` retries.
    removed: bool,
}

struct Member {
    peer: Peer,
    outbound: Outbound,
    join_leave: bool,
}

impl Members {
    /// Sends a `join` or `leave` push to the members that opted in.
    fn tell_watchers(&self, push: &ServerMessage) {
        fan_out(
            self.by_client
                .values()
                .filter(|m| m.join_leave)
                .map(|m| &m.outbound),
            |codec| codec.encode(push),
        );
    }
}

/// Why host code could not publish.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PublishError(pub(crate) ReplyError);

impl PublishError {
    /// The error code: 102 (unknown namespace) or 100 (the history store failed).
    pub fn code(&self) -> ErrorCode {
        self.0.error_code()
    }

    /// The error as the protocol carries it.
    pub fn reply_error(&self) -> &ReplyError {
        &self.0
    }
}

/// Why host code could not send to a client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("client {0} is not connected")]
pub struct SendError(pub(crate) String);

impl Hub {
    /// Starts building a hub; see [`HubBuilder`].
    pub fn builder() -> HubBuilder {
        HubBuilder::default()
    }

    pub(crate) fn new(
        options: HubOptions,
        auth: Arc<dyn Authenticator>,
        history: Arc<dyn HistoryStore>,
        rpc: HashMap<String, RpcHandler>,
        hooks: Hooks,
    ) -> Hub {
        let inner = HubInner {
            options,
            auth,
            history,
            rpc,
            hooks,
            clients: DashMap::new(),
            channels: DashMap::new(),
            ready: AtomicBool::new(true),
            client_left: Notify::new(),
        };
        Hub {
            inner: Arc::new(inner),
        }
    }

    /// Publishes `data` to `channel` from host code (no publisher is named).
    /// Namespace access rules do not apply to the host.
    pub async fn publish(&self, channel: &str, data: Value) -> Result<PublishReply, PublishError> {
        let options = self.namespace(channel).map_err(PublishError)?.clone();
        self.publish_as(None, channel, &options, data)
            .await
            .map_err(PublishError)
    }

    /// Sends `data` to one client as a `message` push from the server.
    pub fn send(&self, client: &str, data: Value) -> Result<(), SendError> {
        self.deliver(None, client, data)
            .map_err(|_| SendError(client.to_owned()))
    }

    /// Everyone subscribed to `channel` now.
    pub async fn presence(&self, channel: &str) -> Vec<Peer> {
        let Some(channel) = self.inner.channels.get(channel).map(|c| Arc::clone(&c)) else {
            return Vec::new();
        };
        let members = channel.members.lock().await;
        members.by_client.values().map(|m| m.peer.clone()).collect()
    }

    /// Disconnects a client with `code`; false if it is not connected.
    pub fn disconnect(&self, client: &str, code: DisconnectCode) -> bool {
        match self.inner.clients.get(client) {
            Some(entry) => {
                entry.outbound.close(code);
                true
            }
            None => false,
        }
    }

    /// How many clients are connected.
    pub fn connections(&self) -> usize {
        self.inner.clients.len()
    }

    /// How many channels have subscribers on this node now. A channel
    /// without subscribers takes no memory in the hub.
    pub fn channels(&self) -> usize {
        self.inner.channels.len()
    }

    /// Whether the hub accepts connections (false once shutdown began).
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    /// Shuts down gracefully: stops accepting connections, pushes `migrate`
    /// advice to every client with a deadline `drain` from now, waits for them
    /// to leave until then, and closes whoever remains with 3001 (shutdown).
    /// A second call, while or after a shutdown runs, returns at once.
    pub async fn shutdown(&self) {
        if !self.inner.ready.swap(false, Ordering::AcqRel) {
            return;
        }
        let drain = self.inner.options.drain;
        let advice = ServerMessage::push(Migrate::new(None, now_ms() + drain.as_millis() as u64));
        for client in self.inner.clients.iter() {
            client.outbound.send_message(&advice);
        }
        let everyone_left = async {
            loop {
                let left = self.inner.client_left.notified();
                if self.inner.clients.is_empty() {
                    return;
                }
                left.await;
            }
        };
        let _ = tokio::time::timeout(drain, everyone_left).await;
        for client in self.inner.clients.iter() {
            client.outbound.close(DisconnectCode::SHUTDOWN);
        }
        tracing::info!(
            remaining = self.inner.clients.len(),
            "drain over; remaining clients closed with 3001"
        );
    }

    pub(crate) fn options(&self) -> &HubOptions {
        &self.inner.options
    }

    /// The options of the channel's namespace, or "unknown channel".
    pub(crate) fn namespace(&self, channel: &str) -> Result<&NamespaceOptions, ReplyError> {
        self.inner
            .options
            .namespaces
            .get(channel_namespace(channel))
            .ok_or_else(|| {
                ReplyError::new(
                    ErrorCode::UNKNOWN_CHANNEL,
                    "unknown channel: its namespace is not configured",
                )
            })
    }

    pub(crate) fn register(&self, peer: &Peer, outbound: Outbound) {
        let client = Client {
            peer: peer.clone(),
            outbound,
        };
        self.inner.clients.insert(peer.id.clone(), client);
    }

    pub(crate) fn unregister(&self, client: &str) {
        self.inner.clients.remove(client);
        self.inner.client_left.notify_waiters();
    }

    /// The live channel named `name`, created if needed.
    fn channel(&self, name: &str) -> Arc<Channel> {
        if let Some(channel) = self.inner.channels.get(name) {
            return Arc::clone(&channel);
        }
        let entry = self.inner.channels.entry(name.to_owned());
        Arc::clone(&entry.or_insert_with(|| {
            Arc::new(Channel {
                members: Mutex::new(Members::default()),
            })
        }))
    }

    /// Drops a channel that has no members left (its lock is held).
    fn forget_if_empty(&self, name: &str, members: &mut Members) {
        if members.by_client.is_empty() && !members.removed {
            members.removed = true;
            self.inner.channels.remove(name);
        }
    }

    /// Checks that `peer` may use `channel` for `purpose`: the namespace
    /// exists, its subscribe rule admits the peer, and the host's subscribe
    /// hook agrees. Presence and history take the same permission as subscribing.
    pub(crate) async fn may_use(
        &self,
        peer: &Peer,
        channel: &str,
        purpose: ChannelUse,
    ) -> Result<&NamespaceOptions, ReplyError> {
        let options = self.namespace(channel)?;
        allowed(options.subscribe, peer)?;
        let context = || SubscribeContext {
            client: peer.clone(),
            channel: channel.to_owned(),
            purpose,
        };
        self.inner
            .hooks
            .may_subscribe(context, self.inner.options.rpc_timeout)
            .await?;
        Ok(options)
    }

    /// Publishes a client's publication, if the namespace and the host allow it.
    pub(crate) async fn publish_from(
        &self,
        peer: Peer,
        channel: &str,
        data: Value,
    ) -> Result<PublishReply, ReplyError> {
        let options = self.namespace(channel)?;
        allowed(options.publish, &peer)?;
        let data = match &self.inner.hooks.publish {
            None => data,
            Some(_) => {
                // The hook sees the payload; the hub keeps publishing its own.
                let context = || PublishContext {
                    client: peer.clone(),
                    channel: channel.to_owned(),
                    data: data.clone(),
                };
                let timeout = self.inner.options.rpc_timeout;
                self.inner.hooks.may_publish(context, timeout).await?;
                data
            }
        };
        let options = options.clone();
        self.publish_as(Some(peer), channel, &options, data).await
    }

    pub(crate) async fn publish_as(
        &self,
        from: Option<Peer>,
        channel: &str,
        options: &NamespaceOptions,
        data: Value,
    ) -> Result<PublishReply, ReplyError> {
        let mut publication = Publication::new(channel, data, now_ms());
        publication.from = from;
        loop {
            let live = self.channel(channel);
            let mut members = live.members.lock().await;
            if members.removed {
                continue;
            }
            let mut reply = PublishReply::default();
            let publication = if options.history_size > 0 {
                let retention = Retention::new(options.history_size, options.history_ttl);
                let stored = self
                    .inner
                    .history
                    .append(channel, publication, retention)
                    .await
                    .map_err(store_error)?;
                reply.offset = stored.offset;
                reply.epoch.clone_from(&stored.epoch);
                stored
            } else {
                Arc::new(publication)
            };
            let congested = fan_out(members.by_client.values().map(|m| &m.outbound), |codec| {
                codec.encode_publication(&publication)
            });
            self.forget_if_empty(channel, &mut members);
            drop(members);
            // Flow control: the publisher (and what it sends next) waits for
            // subscribers that fall behind, so none is cut off for merely
            // being slower than it.
            for outbound in congested {
                outbound
                    .drain(self.inner.options.slow_consumer_patience)
                    .await;
            }
            return Ok(reply);
        }
    }

    /// Sends a client's direct message, if the host allows it.
    pub(crate) async fn send_from(
        &self,
        from: Peer,
        to: &str,
        data: Value,
    ) -> Result<(), ReplyError> {
        if self.inner.hooks.send.is_some() {
            let recipient = self
                .inner
                .clients
                .get(to)
                .map(|client| client.peer.clone())
                .ok_or_else(|| ReplyError::from(ErrorCode::CLIENT_NOT_FOUND))?;
            let context = || SendContext {
                from: from.clone(),
                to: recipient,
            };
            let timeout = self.inner.options.rpc_timeout;
            self.inner.hooks.may_send(context, timeout).await?;
        }
        self.deliver(Some(from), to, data)
    }

    /// Queues a `message` push to client `to`.
    fn deliver(&self, from: Option<Peer>, to: &str, data: Value) -> Result<(), ReplyError> {
        let client = self
            .inner
            .clients
            .get(to)
            .ok_or_else(|| ReplyError::from(ErrorCode::CLIENT_NOT_FOUND))?;
        client
            .outbound
            .send_message(&ServerMessage::push(DirectMessage::new(from, data)));
        Ok(())
    }

    /// Subscribes `peer` and returns the reply; the caller holds its outbound
    /// (see `Outbound::hold`) so that the reply precedes live publications.
    pub(crate) async fn subscribe(
        &self,
        peer: &Peer,
        outbound: &Outbound,
        request: &SubscribeRequest,
    ) -> Result<SubscribeReply, ReplyError> {
        let options = self
            .may_use(peer, &request.channel, ChannelUse::Subscribe)
            .await?;
        loop {
            let live = self.channel(&request.channel);
            let mut members = live.members.lock().await;
            if members.removed {
                continue;
            }
            if members.by_client.contains_key(&peer.id) {
                return Err(ErrorCode::ALREADY_SUBSCRIBED.into());
            }
            let reply = match self
                .position_and_recovery(&request.channel, options, request)
                .await
            {
                Ok(reply) => reply,
                Err(err) => {
                    self.forget_if_empty(&request.channel, &mut members);
                    return Err(err);
                }
            };
            let join_leave = request.join_leave && options.join_leave;
            members.tell_watchers(&ServerMessage::push(Join::new(
                request.channel.clone(),
                peer.clone(),
            )));
            let member = Member {
                peer: peer.clone(),
                outbound: outbound.clone(),
                join_leave,
            };
            members.by_client.insert(peer.id.clone(), member);
            return Ok(reply);
        }
    }

    /// The stream position for a new subscriber and, if it asked, the
    /// publications it missed: all of them or none.
    async fn position_and_recovery(
        &self,
        channel: &str,
        options: &NamespaceOptions,
        request: &SubscribeRequest,
    ) -> Result<SubscribeReply, ReplyError> {
        let mut reply = SubscribeReply::default();
        if options.history_size == 0 {
            return Ok(reply);
        }
        let history = &self.inner.history;
        let max = self.inner.options.max_recovered;
        let recovered = match &request.recover {
            Some(since) => {
                let query = Query {
                    since: Some(since.clone()),
                    limit: Some(max + 1),
                    reverse: false,
                };
                match history.read(channel, query).await {
                    Ok(page) if page.publications.len() <= max => Some(page),
                    Ok(_) | Err(HistoryError::Unrecoverable) => None,
                    Err(err) => return Err(store_error(err)),
                }
            }
            None => None,
        };
        let page = match recovered {
            Some(page) => {
                reply.recovered = true;
                page
            }
            None => {
                let query = Query {
                    limit: Some(0),
                    ..Query::default()
                };
                history.read(channel, query).await.map_err(store_error)?
            }
        };
        reply.offset = Some(page.position.offset);
        reply.epoch = Some(page.position.epoch);
        reply.publications = page.publications;
        Ok(reply)
    }

    pub(crate) async fn unsubscribe(&self, client: &str, channel: &str) -> Result<(), ReplyError> {
        let Some(live) = self.inner.channels.get(channel).map(|c| Arc::clone(&c)) else {
            return Err(ErrorCode::NOT_SUBSCRIBED.into());
        };
        let mut members = live.members.lock().await;
        let member = members
            .by_client
            .remove(client)
            .ok_or_else(|| ReplyError::from(ErrorCode::NOT_SUBSCRIBED))?;
        members.tell_watchers(&ServerMessage::push(Leave::new(channel, member.peer)));
        self.forget_if_empty(channel, &mut members);
        Ok(())
    }

    pub(crate) async fn presence_of(
        &self,
        peer: &Peer,
        channel: &str,
    ) -> Result<Vec<Peer>, ReplyError> {
        if !self.namespace(channel)?.presence {
            return Err(ReplyError::new(
                ErrorCode::NOT_AVAILABLE,
                "presence is off for this namespace",
            ));
        }
        self.may_use(peer, channel, ChannelUse::Presence).await?;
        Ok(self.presence(channel).await)
    }

    pub(crate) async fn history_of(
        &self,
        peer: &Peer,
        request: &HistoryRequest,
    ) -> Result<HistoryReply, ReplyError> {
        let options = self.namespace(&request.channel)?;
        if options.history_size == 0 {
            return Err(ReplyError::new(
                ErrorCode::NOT_AVAILABLE,
                "history is off for this namespace",
            ));
        }
        self.may_use(peer, &request.channel, ChannelUse::History)
            .await?;
        // Absent, `limit` means every publication kept (at most `history_size`).
        let query = Query {
            since: request.since.clone(),
            limit: request.limit.map(|l| l as usize),
            reverse: request.reverse,
        };
        let page = self
            .inner
            .history
            .read(&request.channel, query)
            .await
            .map_err(|err| match err {
                HistoryError::Unrecoverable => ErrorCode::UNRECOVERABLE_POSITION.into(),
                err => store_error(err),
            })?;
        let mut reply = HistoryReply::default();
        reply.offset = page.position.offset;
        reply.epoch = page.position.epoch;
        reply.publications = page.publications;
        Ok(reply)
    }
}

/// Whether `peer` passes `access`: an anonymous client where a user is
/// needed gets 101 (unauthorized), anyone where nobody may gets 103.
pub(crate) fn allowed(access: Access, peer: &Peer) -> Result<(), ReplyError> {
    match access {
        Access::Anyone => Ok(()),
        Access::Authenticated if peer.user.is_some() => Ok(()),
        Access::Authenticated => Err(ReplyError::new(
            ErrorCode::UNAUTHORIZED,
            "this namespace is for authenticated users",
        )),
        Access::Nobody => Err(ReplyError::new(
            ErrorCode::PERMISSION_DENIED,
            "no client may do this in this namespace",
        )),
    }
}

/// Sends one push to many connections, encoding it once per codec; returns
/// the connections whose queues are congested.
fn fan_out<'a>(
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

fn store_error(err: HistoryError) -> ReplyError {
    tracing::warn!(err = %ErrorChain(&err), "history store failed");
    ReplyError::new(ErrorCode::INTERNAL, "history store failed")
}

/// Shows an error with its whole `source()` chain, for logs.
pub(crate) struct ErrorChain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("connections", &self.inner.clients.len())
            .field("channels", &self.inner.channels.len())
            .field("ready", &self.is_ready())
            .finish()
    }
}
