//! `PresenceStore`: who is subscribed to which channel, across every node of
//! a hub; `MemoryPresence` is one node's.

use std::collections::HashMap;

use dashmap::DashMap;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sacred_proto::Peer;

use crate::broker::BrokerError;

/// Keeps each channel's present clients, and each user's connections.
///
/// Contract: `add` records `peer` as present in `channel` (the hub calls it
/// when a subscription in a namespace with presence succeeds) and `remove`
/// forgets it (on unsubscribe and disconnect); `list` and `count` see every
/// node's clients, each once. Likewise `user_connected` and
/// `user_disconnected` (on connect and disconnect of a client with a user)
/// and `user_connections`, which counts a user's connections on every node
/// (the basis of per-user connection limits). A store shared by several nodes must also
/// forget the clients of a node that died, within a bounded time (entries
/// that expire unless their node refreshes them).
pub trait PresenceStore: Send + Sync + 'static {
    /// Records `peer` as present in `channel`.
    fn add<'a>(
        &'a self,
        channel: &'a str,
        peer: &'a Peer,
    ) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Forgets client `client` in `channel`.
    fn remove<'a>(
        &'a self,
        channel: &'a str,
        client: &'a str,
    ) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Everyone present in `channel`.
    fn list<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Vec<Peer>, BrokerError>>;

    /// How many clients are present in `channel`.
    fn count<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>>;

    /// Records that client `client` of `user` is connected.
    fn user_connected<'a>(
        &'a self,
        user: &'a str,
        client: &'a str,
    ) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Forgets client `client` of `user`.
    fn user_disconnected<'a>(
        &'a self,
        user: &'a str,
        client: &'a str,
    ) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// How many connections `user` has.
    fn user_connections<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>>;

    /// How often the node must `add` its present clients (and
    /// `user_connected` its users' clients) again, for a store
    /// whose entries expire (`None`, the default: never).
    fn refresh_interval(&self) -> Option<std::time::Duration> {
        None
    }
}

/// One node's presence, in memory: entries live exactly as long as their
/// subscriptions.
#[derive(Debug, Default)]
pub struct MemoryPresence {
    channels: DashMap<String, HashMap<String, Peer>>,
    users: DashMap<String, std::collections::HashSet<String>>,
}

impl MemoryPresence {
    /// An empty store.
    pub fn new() -> MemoryPresence {
        MemoryPresence::default()
    }
}

impl PresenceStore for MemoryPresence {
    fn add<'a>(
        &'a self,
        channel: &'a str,
        peer: &'a Peer,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.channels
            .entry(channel.to_owned())
            .or_default()
            .insert(peer.id.clone(), peer.clone());
        std::future::ready(Ok(())).boxed()
    }

    fn remove<'a>(
        &'a self,
        channel: &'a str,
        client: &'a str,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        if let Some(mut present) = self.channels.get_mut(channel) {
            present.remove(client);
        }
        // A channel nobody is present in takes no memory.
        self.channels
            .remove_if(channel, |_, present| present.is_empty());
        std::future::ready(Ok(())).boxed()
    }

    fn list<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Vec<Peer>, BrokerError>> {
        let peers = self
            .channels
            .get(channel)
            .map(|present| present.values().cloned().collect())
            .unwrap_or_default();
        std::future::ready(Ok(peers)).boxed()
    }

    fn count<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>> {
        let count = self
            .channels
            .get(channel)
            .map_or(0, |present| present.len());
        std::future::ready(Ok(count)).boxed()
    }

    fn user_connected<'a>(
        &'a self,
        user: &'a str,
        client: &'a str,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.users
            .entry(user.to_owned())
            .or_default()
            .insert(client.to_owned());
        std::future::ready(Ok(())).boxed()
    }

    fn user_disconnected<'a>(
        &'a self,
        user: &'a str,
        client: &'a str,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        if let Some(mut clients) = self.users.get_mut(user) {
            clients.remove(client);
        }
        self.users.remove_if(user, |_, clients| clients.is_empty());
        std::future::ready(Ok(())).boxed()
    }

    fn user_connections<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>> {
        let count = self.users.get(user).map_or(0, |clients| clients.len());
        std::future::ready(Ok(count)).boxed()
    }
}
