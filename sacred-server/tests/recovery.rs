//! Recovery after a gap: all or nothing, race-free against publishes that
//! happen during the resubscribe, with no loss, no duplicate, order kept.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::future::BoxFuture;
use sacred_proto::*;
use sacred_server::{
    Broker, BrokerError, BrokerEvents, Hub, MemoryBroker, NamespaceOptions, Page, Query, Retention,
};
use support::*;

async fn hub(history_size: usize, max_recovered: usize) -> Server {
    let mut chat = NamespaceOptions::default();
    chat.history_size = history_size;
    let mut options = unlimited();
    options.max_recovered = max_recovered;
    Server::start(Hub::builder().options(options).namespace("chat", chat)).await
}

/// Publishes 0, 1, 2, ... to `channel` until told to stop, reporting how many
/// were acked so far on `count`; returns the total.
fn keep_publishing(
    url: String,
    channel: &'static str,
    stop: Arc<AtomicBool>,
    count: tokio::sync::watch::Sender<u64>,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let (mut publisher, _) = Client::connect(&url, Codec::MsgPack, info("publisher")).await;
        let mut n = 0u64;
        while !stop.load(Ordering::Acquire) {
            publish_reply(
                publisher
                    .request(PublishRequest::new(channel, Value::from(n)))
                    .await,
            );
            n += 1;
            count.send_replace(n);
        }
        n
    })
}

/// Collects publications until the one carrying `last` arrives, checking that
/// offsets and payloads run on from `expected` without gap or duplicate.
async fn read_until(client: &mut Client, expected: &mut u64, last: u64) {
    while *expected <= last {
        let publication = client.publication().await;
        assert_eq!(
            publication.data,
            Value::from(*expected),
            "payload out of order"
        );
        assert_eq!(
            publication.offset,
            Some(*expected + 1),
            "offset out of order"
        );
        *expected += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_recovers_every_missed_publication_while_publishing_goes_on() {
    recovers_while_publishing_goes_on(&hub(10_000, 10_000).await).await;
}

/// The same through a broker whose deliveries lag behind its appends, as a
/// broker across a network does: the node must buffer a new subscriber's
/// deliveries while it reads the position, and drop what the reply already
/// covers (without that, this test sees repeated offsets).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_stays_exact_when_deliveries_lag_behind_the_stream() {
    let mut chat = NamespaceOptions::default();
    chat.history_size = 10_000;
    let mut options = unlimited();
    options.max_recovered = 10_000;
    let builder = Hub::builder()
        .options(options)
        .namespace("chat", chat)
        .broker(Lagging::default());
    recovers_while_publishing_goes_on(&Server::start(builder).await).await;
}

/// `MemoryBroker` with its deliveries handed over by another task, a few
/// scheduler turns after the append.
#[derive(Default)]
struct Lagging {
    inner: MemoryBroker,
}

enum Delivery {
    Publication(String, Arc<Publication>),
    Join(String, Peer),
    Leave(String, Peer),
    Lost(Option<String>),
}

struct Forward(tokio::sync::mpsc::UnboundedSender<Delivery>);

impl BrokerEvents for Forward {
    fn publication(&self, channel: &str, publication: Arc<Publication>) {
        let _ = self
            .0
            .send(Delivery::Publication(channel.to_owned(), publication));
    }
    fn join(&self, channel: &str, peer: &Peer) {
        let _ = self
            .0
            .send(Delivery::Join(channel.to_owned(), peer.clone()));
    }
    fn leave(&self, channel: &str, peer: &Peer) {
        let _ = self
            .0
            .send(Delivery::Leave(channel.to_owned(), peer.clone()));
    }
    fn lost(&self, channel: Option<&str>) {
        let _ = self.0.send(Delivery::Lost(channel.map(str::to_owned)));
    }
}

impl Broker for Lagging {
    fn attach(&self, events: Arc<dyn BrokerEvents>) {
        let (forward, mut deliveries) = tokio::sync::mpsc::unbounded_channel();
        self.inner.attach(Arc::new(Forward(forward)));
        tokio::spawn(async move {
            while let Some(delivery) = deliveries.recv().await {
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                match delivery {
                    Delivery::Publication(channel, publication) => {
                        events.publication(&channel, publication)
                    }
                    Delivery::Join(channel, peer) => events.join(&channel, &peer),
                    Delivery::Leave(channel, peer) => events.leave(&channel, &peer),
                    Delivery::Lost(channel) => events.lost(channel.as_deref()),
                }
            }
        });
    }
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        publication: Publication,
        retention: Option<Retention>,
    ) -> BoxFuture<'a, Result<Arc<Publication>, BrokerError>> {
        self.inner.publish(channel, publication, retention)
    }
    fn join<'a>(
        &'a self,
        channel: &'a str,
        peer: &'a Peer,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.inner.join(channel, peer)
    }
    fn leave<'a>(
        &'a self,
        channel: &'a str,
        peer: &'a Peer,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.inner.leave(channel, peer)
    }
    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.inner.subscribe(channel)
    }
    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.inner.unsubscribe(channel)
    }
    fn read<'a>(
        &'a self,
        channel: &'a str,
        query: Query,
    ) -> BoxFuture<'a, Result<Page, BrokerError>> {
        self.inner.read(channel, query)
    }
}

async fn recovers_while_publishing_goes_on(server: &Server) {
    for codec in Codec::ALL {
        let channel: &'static str = if codec == Codec::Json {
            "chat:json"
        } else {
            "chat:msgpack"
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (count, mut published_so_far) = tokio::sync::watch::channel(0);
        let publisher = keep_publishing(server.url(), channel, Arc::clone(&stop), count);

        // Subscribe mid-stream and read a little.
        let (mut subscriber, _) = Client::connect(&server.url(), codec, info("subscriber")).await;
        let first = subscribe_reply(subscriber.request(SubscribeRequest::new(channel)).await);
        assert!(
            !subscriber.publication_before_reply(2, channel),
            "{codec}: no live publication overtakes the reply"
        );
        let epoch = first.epoch.clone().unwrap();
        let mut expected = first.offset.unwrap();
        read_until(&mut subscriber, &mut expected, first.offset.unwrap() + 20).await;

        // Drop the connection; publishing goes on; come back with the position.
        let position = StreamPosition::new(expected, epoch.clone());
        drop(subscriber);
        let gap = expected + 10;
        // `wait_for` returns a read guard; keeping it would block the publisher's sends.
        let waited = tokio::time::timeout(WAIT, published_so_far.wait_for(|n| *n >= gap))
            .await
            .is_ok();
        assert!(
            waited,
            "the publisher keeps publishing while the subscriber is away"
        );
        let (mut subscriber, _) = Client::connect(&server.url(), codec, info("subscriber")).await;
        let mut resubscribe = SubscribeRequest::new(channel);
        resubscribe.recover = Some(position);
        let reply = subscribe_reply(subscriber.request(resubscribe).await);
        assert!(
            !subscriber.publication_before_reply(2, channel),
            "{codec}: no live publication overtakes the reply"
        );
        assert!(
            reply.recovered,
            "{codec}: recovery within the window must succeed"
        );
        assert!(
            reply.publications.len() >= 10,
            "{codec}: the gap was replayed"
        );
        assert_eq!(reply.epoch.as_deref(), Some(epoch.as_str()));
        for publication in &reply.publications {
            assert_eq!(
                publication.offset,
                Some(expected + 1),
                "{codec}: recovered publications in order"
            );
            assert_eq!(publication.data, Value::from(expected));
            expected += 1;
        }
        assert_eq!(
            reply.offset,
            Some(expected),
            "{codec}: the reply's offset is after the recovered ones"
        );

        // Live publications continue exactly after the reply's offset.
        stop.store(true, Ordering::Release);
        let published = publisher.await.unwrap();
        read_until(&mut subscriber, &mut expected, published - 1).await;
        assert_eq!(
            expected, published,
            "{codec}: every publication seen exactly once"
        );
    }
}

#[tokio::test]
async fn recovery_is_all_or_nothing() {
    // A window of 5 publications, and at most 3 replayed.
    let server = hub(5, 3).await;
    let (mut client, _) = Client::connect(&server.url(), Codec::Json, info("c")).await;
    let mut epoch = String::new();
    for n in 1..=8u64 {
        epoch = publish_reply(
            client
                .request(PublishRequest::new("chat:r", Value::from(n)))
                .await,
        )
        .epoch
        .unwrap();
    }
    let recover = |offset: u64, epoch: &str| {
        let mut request = SubscribeRequest::new("chat:r");
        request.recover = Some(StreamPosition::new(offset, epoch));
        request
    };
    let attempt = |request| {
        let url = server.url();
        async move {
            let (mut fresh, _) = Client::connect(&url, Codec::Json, info("r")).await;
            subscribe_reply(fresh.request(request).await)
        }
    };
    let ok = attempt(recover(6, &epoch)).await;
    assert!(ok.recovered);
    assert_eq!(
        ok.publications
            .iter()
            .map(|p| p.offset.unwrap())
            .collect::<Vec<_>>(),
        [7, 8]
    );

    for (why, request) in [
        ("the gap left the window", recover(2, &epoch)),
        ("the gap is larger than the replay cap", recover(4, &epoch)),
        ("the epoch changed", recover(7, "another-epoch")),
    ] {
        let reply = attempt(request).await;
        assert!(!reply.recovered, "{why}");
        assert!(
            reply.publications.is_empty(),
            "{why}: nothing, never part of the gap"
        );
        assert_eq!(
            (reply.offset, reply.epoch.as_deref()),
            (Some(8), Some(epoch.as_str())),
            "{why}"
        );
    }
}

#[tokio::test]
async fn connect_can_subscribe_and_recover_in_one_round_trip() {
    let server = hub(100, 100).await;
    let (mut publisher, _) = Client::connect(&server.url(), Codec::Json, info("p")).await;
    let mut epoch = String::new();
    for n in 1..=3u64 {
        epoch = publish_reply(
            publisher
                .request(PublishRequest::new("chat:c", Value::from(n)))
                .await,
        )
        .epoch
        .unwrap();
    }
    let mut connect = ConnectRequest::new(None, info("returning"));
    let mut sub = SubscribeRequest::new("chat:c");
    sub.recover = Some(StreamPosition::new(1, epoch));
    connect.subs = vec![sub, SubscribeRequest::new("nowhere:x")];
    let mut client = Client::open(&server.url(), Codec::MsgPack).await;
    let reply = client.connect_with(connect).await.unwrap();
    let recovered = &reply.subs["chat:c"];
    assert!(recovered.recovered);
    assert_eq!(recovered.publications.len(), 2);
    assert!(!reply.subs.contains_key("nowhere:x"));
    let Push::Unsubscribed(refused) = client.push().await else {
        panic!("expected an unsubscribed push")
    };
    assert_eq!((refused.channel.as_str(), refused.code), ("nowhere:x", 102));
    publish_reply(
        publisher
            .request(PublishRequest::new("chat:c", Value::from(4u64)))
            .await,
    );
    assert_eq!(client.publication().await.offset, Some(4));
}
