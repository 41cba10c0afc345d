//! Subscriptions that hold their promises: one per channel, a second refused
//! without harm to the first, and a reader that falls behind losing nothing
//! (recovered from history) or told how much it missed (no history).

use std::time::Duration;

use futures_util::FutureExt;
use sacred_client::{Client, SubscriptionEvent};
use sacred_proto::{Codec, Value};
use sacred_server::{Hub, NamespaceOptions};
use sacred_tests::{Server, any_port, quick, unlimited, within};

#[tokio::test]
async fn a_second_subscribe_is_refused_and_the_first_keeps_receiving() {
    let server = Server::start(Hub::builder(), any_port()).await;
    let client = within("connect", quick(&server.url(), Codec::Json).connect())
        .await
        .unwrap();
    let mut live = within("subscribe", client.subscribe("news")).await.unwrap();
    let err = within("subscribe again", client.subscribe("news"))
        .await
        .unwrap_err();
    assert!(err.is_already_subscribed(), "{err}");
    within("publish", client.publish("news", "still here"))
        .await
        .unwrap();
    let publication = within("publication", live.next_publication())
        .await
        .unwrap();
    assert_eq!(publication.data, Value::from("still here"));
    // Dropped, it can be subscribed again; and later subscribes keep working.
    drop(live);
    let mut again = within("resubscribe", client.subscribe("news"))
        .await
        .unwrap();
    within("publish", client.publish("news", "again"))
        .await
        .unwrap();
    let publication = within("publication", again.next_publication())
        .await
        .unwrap();
    assert_eq!(publication.data, Value::from("again"));
    assert_eq!(server.hub.presence("news").await.len(), 1);
}

#[tokio::test]
async fn a_reader_that_falls_behind_on_a_channel_with_history_loses_nothing() {
    let history = NamespaceOptions::default().history(10_000, Duration::from_secs(600));
    let builder = Hub::builder().options(unlimited()).namespace("", history);
    let server = Server::start(builder, any_port()).await;
    for codec in Codec::ALL {
        let channel = format!("feed-{}", codec.is_binary());
        let reader = quick(&server.url(), codec).subscription_buffer(8).connect();
        let reader = within("connect", reader).await.unwrap();
        let mut slow = within("subscribe", reader.subscribe(&channel))
            .await
            .unwrap();
        // 500 publications while the reader reads nothing: far beyond its buffer.
        for n in 1..=500u64 {
            server.hub.publish(&channel, Value::from(n)).await.unwrap();
        }
        let mut next = 1;
        while next <= 500 {
            match within("an event", slow.recv()).await.unwrap() {
                SubscriptionEvent::Publication(publication) => {
                    assert_eq!(
                        publication.data,
                        Value::from(next),
                        "{codec}: in order, once"
                    );
                    next += 1;
                }
                SubscriptionEvent::Resubscribed { recovered } => {
                    assert!(recovered, "{codec}: the gap is within history")
                }
                other => panic!("{codec}: unexpected {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn a_reader_that_falls_behind_without_history_is_told_how_much_it_missed() {
    let plain = NamespaceOptions::default().history(0, Duration::from_secs(1));
    let server = Server::start(Hub::builder().namespace("", plain), any_port()).await;
    let reader = quick(&server.url(), Codec::Json)
        .subscription_buffer(4)
        .connect();
    let reader = within("connect", reader).await.unwrap();
    let mut slow = within("subscribe", reader.subscribe("ticks"))
        .await
        .unwrap();
    for n in 1..=50u64 {
        server.hub.publish("ticks", Value::from(n)).await.unwrap();
    }
    let (mut delivered, mut skipped) = (0u64, 0u64);
    while delivered + skipped < 50 {
        match within("an event", slow.recv()).await.unwrap() {
            SubscriptionEvent::Publication(_) => delivered += 1,
            SubscriptionEvent::Lagged { skipped: n } => skipped += n,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        delivered + skipped,
        50,
        "every publication delivered or counted"
    );
    assert!(skipped > 0, "the buffer of 4 overflowed");
}

#[tokio::test]
async fn a_subscribe_abandoned_before_its_reply_leaves_nothing_subscribed() {
    let server = Server::start(Hub::builder(), any_port()).await;
    let client: Client = within("connect", quick(&server.url(), Codec::Json).connect())
        .await
        .unwrap();
    // Asked, then dropped before the server's reply could arrive.
    let mut pending = Box::pin(client.subscribe("gone"));
    assert!((&mut pending).now_or_never().is_none());
    drop(pending);
    // Requests are handled in order: by now the subscribe and its answer are through.
    within("round trip", client.rpc("missing", ()))
        .await
        .unwrap_err();
    within("round trip", client.presence("gone")).await.unwrap();
    let mut fresh = within("subscribe", client.subscribe("gone")).await.unwrap();
    within("publish", client.publish("gone", 1u64))
        .await
        .unwrap();
    assert!(
        within("publication", fresh.next_publication())
            .await
            .is_some()
    );
}
