//! `MemoryBroker`: one node's broker. Streams are a `HistoryStore`
//! (`MemoryHistory` unless the host gives another); every delivery is to
//! this node, in the stream's order: made while the channel's publish lock
//! is held, or, with a store that queues appends (SQLite), in the order they
//! were queued, each waiting for its turn once its append is done.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sacred_proto::{Peer, Publication};
use tokio::sync::Mutex;

use super::{Broker, BrokerError, BrokerEvents};
use crate::history::{HistoryError, HistoryStore, MemoryHistory, Page, Query, Retention};

/// The in-process broker (see the module docs).
pub struct MemoryBroker {
    history: Arc<dyn HistoryStore>,
    events: OnceLock<Arc<dyn BrokerEvents>>,
    /// One lock per channel with a publish in progress, so that appends and
    /// deliveries of one channel do not interleave; removed when unused.
    publishing: DashMap<String, Arc<Mutex<()>>>,
    /// With a store that queues appends: each channel's turns.
    turns: DashMap<String, Arc<Turns>>,
    /// Whether the store queues appends (until it first says it does not).
    queues: AtomicBool,
}

/// The order of one channel's publishes with a store that assigns offsets
/// on call: a ticket per call, deliveries in ticket order.
#[derive(Debug)]
struct Turns {
    state: std::sync::Mutex<TurnState>,
    /// The ticket whose delivery is next.
    next: tokio::sync::watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct TurnState {
    /// The next call's ticket.
    issued: u64,
    /// The ticket whose delivery is next.
    next: u64,
    /// Tickets given up before their turn (their publish was cancelled).
    abandoned: BTreeSet<u64>,
}

impl Turns {
    fn lock(&self) -> std::sync::MutexGuard<'_, TurnState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends `ticket`'s turn (delivered, failed or abandoned at its turn).
    fn advance(&self, state: &mut TurnState) {
        state.next += 1;
        while state.abandoned.remove(&state.next) {
            state.next += 1;
        }
        self.next.send_replace(state.next);
    }
}

/// A publish's place in its channel's turns; given up if dropped before
/// its turn ended (its task stopped with the runtime), so it never stalls
/// those after it.
struct Ticket {
    turns: Arc<Turns>,
    number: u64,
    done: bool,
}

impl Ticket {
    async fn wait_turn(&self) {
        let mut next = self.turns.next.subscribe();
        // The sender lives in `turns`, which this ticket holds.
        let _ = next.wait_for(|next| *next == self.number).await;
    }

    fn end_turn(mut self) {
        self.done = true;
        let mut state = self.turns.lock();
        self.turns.advance(&mut state);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut state = self.turns.lock();
        if state.next == self.number {
            self.turns.advance(&mut state);
        } else {
            state.abandoned.insert(self.number);
        }
    }
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
            turns: DashMap::new(),
            queues: AtomicBool::new(true),
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

    /// Publishes with a store that queues appends: the append is queued in
    /// ticket order, then a task of its own awaits it outside any lock
    /// (appends to one channel share the store's commits) and delivers it at
    /// its turn, even if this publish is given up meanwhile: what the store
    /// keeps, subscribers receive.
    async fn publish_queued(
        &self,
        channel: &str,
        publication: Publication,
        retention: Retention,
    ) -> Result<Arc<Publication>, BrokerError> {
        let turns = match self.turns.get(channel) {
            Some(turns) => Arc::clone(&turns),
            None => Arc::clone(&*self.turns.entry(channel.to_owned()).or_insert_with(|| {
                Arc::new(Turns {
                    state: std::sync::Mutex::default(),
                    next: tokio::sync::watch::Sender::new(0),
                })
            })),
        };
        let (ticket, appended) = {
            let mut state = turns.lock();
            let appended = self.history.append_queued(channel, publication, retention);
            let number = state.issued;
            state.issued += 1;
            let ticket = Ticket {
                turns: Arc::clone(&turns),
                number,
                done: false,
            };
            (ticket, appended)
        };
        drop(turns);
        let appended = match appended {
            Ok(appended) => appended,
            // Not a queueing store: the usual path, from now on.
            Err(publication) => {
                self.queues.store(false, Ordering::Relaxed);
                ticket.end_turn();
                return self.publish_locked(channel, publication, retention).await;
            }
        };
        let events = self.events().cloned();
        let name = channel.to_owned();
        let delivered = tokio::spawn(async move {
            let stored = appended.await;
            ticket.wait_turn().await;
            if let (Ok(stored), Some(events)) = (&stored, &events) {
                events.publication(&name, Arc::clone(stored));
            }
            ticket.end_turn();
            stored
        });
        let stored = delivered
            .await
            .unwrap_or_else(|err| Err(HistoryError::store(err)));
        // Forgotten once nobody else holds it (the map's reference only).
        self.turns.remove_if(channel, |_, turns| {
            let state = turns.lock();
            Arc::strong_count(turns) == 1 && state.issued == state.next
        });
        Ok(stored?)
    }

    /// Publishes holding the channel's lock until the append is done and
    /// delivered.
    async fn publish_locked(
        &self,
        channel: &str,
        publication: Publication,
        retention: Retention,
    ) -> Result<Arc<Publication>, BrokerError> {
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
            if self.queues.load(Ordering::Relaxed) {
                self.publish_queued(channel, publication, retention).await
            } else {
                self.publish_locked(channel, publication, retention).await
            }
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

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use std::time::Duration;

    use sacred_proto::{Peer, Value};

    use super::*;
    use crate::history::{Durability, SqliteHistory};

    /// Records the offsets delivered, in delivery order.
    #[derive(Default)]
    struct Recorder(std::sync::Mutex<Vec<u64>>);

    impl BrokerEvents for Recorder {
        fn publication(&self, _: &str, publication: Arc<Publication>) {
            self.0.lock().unwrap().push(publication.offset.unwrap());
        }
        fn join(&self, _: &str, _: &Peer) {}
        fn leave(&self, _: &str, _: &Peer) {}
        fn lost(&self, _: Option<&str>) {}
    }

    /// With a store that queues appends, concurrent publishes to one channel
    /// share commits, and their deliveries still come in offset order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_appends_are_delivered_in_offset_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteHistory::open(dir.path().join("h.db"), Durability::Always).unwrap();
        let broker = Arc::new(MemoryBroker::new(store));
        let recorder = Arc::new(Recorder::default());
        broker.attach(Arc::clone(&recorder) as Arc<dyn BrokerEvents>);
        let keep = Some(Retention::new(10_000, Duration::from_secs(60)));
        let publishers = (0..50).map(|p| {
            let broker = Arc::clone(&broker);
            tokio::spawn(async move {
                for n in 0..20 {
                    let publication = Publication::new("hot", Value::from(p * 100 + n), 0);
                    broker.publish("hot", publication, keep).await.unwrap();
                }
            })
        });
        for publisher in publishers {
            publisher.await.unwrap();
        }
        let delivered = recorder.0.lock().unwrap().clone();
        assert_eq!(delivered, (1..=1000).collect::<Vec<u64>>());
        assert!(broker.turns.is_empty(), "no turns left behind");
    }
}
