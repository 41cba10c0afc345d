//! `MemoryBroker`: one node's broker. Streams are a `HistoryStore`
//! (`MemoryHistory` unless the host gives another); every delivery is to
//! this node, made while the channel's publish lock is held, so deliveries
//! follow the stream's order.

use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sacred_proto::{Peer, Publication};
use tokio::sync::Mutex;

use super::{Broker, BrokerError, BrokerEvents};
use crate::history::{HistoryStore, MemoryHistory, Page, Query, Retention};

/// The in-process broker (see the module docs).
pub struct MemoryBroker {
    history: Arc<dyn HistoryStore>,
    events: OnceLock<Arc<dyn BrokerEvents>>,
    /// One lock per channel with a publish in progress, so that appends and
    /// deliveries of one channel do not interleave; removed when unused.
    publishing: DashMap<String, Arc<Mutex<()>>>,
}

impl Default for MemoryBroker {
    fn default() -> MemoryBroker {
        MemoryBroker::new(MemoryHistory::new())
    }
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBroker")
            .field("publishing", &self.publishing.len())
            .finish_non_exhaustive()
    }
}

impl MemoryBroker {
    /// A broker whose streams live in `history`.
    pub fn new(history: impl HistoryStore) -> MemoryBroker {
        MemoryBroker::with_shared(Arc::new(history))
    }

    pub(crate) fn with_shared(history: Arc<dyn HistoryStore>) -> MemoryBroker {
        MemoryBroker {
            history,
            events: OnceLock::new(),
            publishing: DashMap::new(),
        }
    }

    fn events(&self) -> Option<&Arc<dyn BrokerEvents>> {
        self.events.get()
    }

    fn lock_of(&self, channel: &str) -> Arc<Mutex<()>> {
        if let Some(lock) = self.publishing.get(channel) {
            return Arc::clone(&lock);
        }
        Arc::clone(&self.publishing.entry(channel.to_owned()).or_default())
    }

    /// Drops the channel's lock if nobody else holds or waits for it.
    fn release(&self, channel: &str) {
        // The map's reference and the caller's: nobody else.
        self.publishing
            .remove_if(channel, |_, lock| Arc::strong_count(lock) <= 2);
    }
}

impl Broker for MemoryBroker {
    fn attach(&self, events: Arc<dyn BrokerEvents>) {
        let _ = self.events.set(events);
    }

    fn publish<'a>(
        &'a self,
        channel: &'a str,
        publication: Publication,
        retention: Option<Retention>,
    ) -> BoxFuture<'a, Result<Arc<Publication>, BrokerError>> {
        async move {
            let Some(retention) = retention else {
                // No stream, no order to keep: deliver at once.
                let publication = Arc::new(publication);
                if let Some(events) = self.events() {
                    events.publication(channel, Arc::clone(&publication));
                }
                return Ok(publication);
            };
            let lock = self.lock_of(channel);
            let stored = {
                let _order = lock.lock().await;
                let stored = self.history.append(channel, publication, retention).await;
                if let (Ok(stored), Some(events)) = (&stored, self.events()) {
                    events.publication(channel, Arc::clone(stored));
                }
                stored
            };
            self.release(channel);
            drop(lock);
            Ok(stored?)
        }
        .boxed()
    }

    fn join<'a>(
        &'a self,
        channel: &'a str,
        peer: &'a Peer,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        if let Some(events) = self.events() {
            events.join(channel, peer);
        }
        std::future::ready(Ok(())).boxed()
    }

    fn leave<'a>(
        &'a self,
        channel: &'a str,
        peer: &'a Peer,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        if let Some(events) = self.events() {
            events.leave(channel, peer);
        }
        std::future::ready(Ok(())).boxed()
    }

    fn subscribe<'a>(&'a self, _channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        std::future::ready(Ok(())).boxed()
    }

    fn unsubscribe<'a>(&'a self, _channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        std::future::ready(Ok(())).boxed()
    }

    fn read<'a>(
        &'a self,
        channel: &'a str,
        query: Query,
    ) -> BoxFuture<'a, Result<Page, BrokerError>> {
        async move { Ok(self.history.read(channel, query).await?) }.boxed()
    }
}
