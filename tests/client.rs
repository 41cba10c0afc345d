//! `sacred-client` (native) against the real `sacred-server` over loopback:
//! both codecs, a server restart, connections cut mid-stream, a terminal close
//! code, the offline queue, batching counted at a proxy, a silent server,
//! and search over the SQLite store.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use sacred_client::{Client, ClientEvent, SearchRequest, State, SubscriptionEvent};
use sacred_proto::{Codec, DisconnectCode, Value};
use sacred_server::{Hub, HubOptions, MemoryHistory, NamespaceOptions};
use sacred_tests::{Proxy, Server, any_port, quick, unlimited, within};

/// Takes the client offline: the proxy refuses new connections and cuts the current one.
async fn go_offline(proxy: &Proxy, client: &Client) {
    let mut states = client.state_changes();
    proxy.set_up(false);
    proxy.cut();
    let offline = within("disconnected", states.wait_for(|s| *s != State::Connected))
        .await
        .is_ok();
    assert!(offline);
}

/// Reads publications until payload `last`, checking every payload from
/// `next` arrives exactly once and in order, and that every resubscribe recovered.
async fn expect_sequence(
    subscription: &mut sacred_client::Subscription,
    next: &mut u64,
    last: u64,
) {
    while *next <= last {
        match within("a publication", subscription.recv())
            .await
            .expect("subscribed")
        {
            SubscriptionEvent::Publication(publication) => {
                assert_eq!(
                    publication.data,
                    Value::from(*next),
                    "exactly once, in order"
                );
                *next += 1;
            }
            SubscriptionEvent::Resubscribed { recovered } => {
                assert!(recovered, "a gap within the window must be recovered")
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// A hub whose default namespace keeps enough history for the tests' gaps.
fn roomy_history() -> sacred_server::HubBuilder {
    let mut namespace = NamespaceOptions::default();
    namespace.history_size = 10_000;
    Hub::builder().namespace("", namespace)
}

#[tokio::test]
async fn publish_subscribe_and_calls_work_in_both_codecs() {
    let hub = Hub::builder().rpc("double", |_, data| async move {
        let n = data.into_json().as_u64().unwrap_or(0);
        Ok(Value::from(n * 2))
    });
    let server = Server::start(hub, any_port()).await;
    for codec in Codec::ALL {
        let channel = format!("room-{codec}").replace('.', "-");
        let subscriber = within("connect", quick(&server.url(), codec).connect())
            .await
            .unwrap();
        let mut subscription = within("subscribe", subscriber.subscribe(&channel))
            .await
            .unwrap();
        let publisher = within("connect", quick(&server.url(), codec).connect())
            .await
            .unwrap();
        let ack = within("publish", publisher.publish(&channel, "hello"))
            .await
            .unwrap();
        assert_eq!(ack.offset, Some(1));
        let publication = within("publication", subscription.next_publication())
            .await
            .unwrap();
        assert_eq!(publication.data, Value::from("hello"));
        assert_eq!(
            within("rpc", publisher.rpc("double", 21u64)).await.unwrap(),
            Value::from(42u64)
        );
        assert_eq!(
            within("presence", publisher.presence(&channel))
                .await
                .unwrap()
                .len(),
            1
        );
        let err = within("rpc", publisher.rpc("missing", Value::Null))
            .await
            .unwrap_err();
        assert!(err.is_server() && err.code() == Some(104), "{err}");
        assert!(
            within("server time", publisher.server_time())
                .await
                .is_some()
        );
    }
}

#[tokio::test]
async fn a_server_restart_on_the_same_port_loses_and_duplicates_nothing() {
    // The history store outlives the hub, as a durable store would.
    let history = Arc::new(MemoryHistory::new());
    let mut options = HubOptions::default();
    options.drain = Duration::from_millis(100);
    let first = Server::start(
        Hub::builder()
            .options(options)
            .history_store(Arc::clone(&history)),
        any_port(),
    )
    .await;
    let addr = first.addr;
    let client = within("connect", quick(&first.url(), Codec::MsgPack).connect())
        .await
        .unwrap();
    let mut subscription = within("subscribe", client.subscribe("feed")).await.unwrap();
    for n in 1..=20u64 {
        first.hub.publish("feed", Value::from(n)).await.unwrap();
    }
    let mut next = 1;
    expect_sequence(&mut subscription, &mut next, 10).await;

    first.stop().await;
    let second = Server::start(Hub::builder().history_store(Arc::clone(&history)), addr).await;
    for n in 21..=40u64 {
        second.hub.publish("feed", Value::from(n)).await.unwrap();
    }
    expect_sequence(&mut subscription, &mut next, 40).await;
}

#[tokio::test]
async fn connections_cut_mid_stream_lose_and_duplicate_nothing() {
    let server = Server::start(roomy_history(), any_port()).await;
    let proxy = Proxy::start(server.addr).await;
    let client = within("connect", quick(&proxy.url(), Codec::Json).connect())
        .await
        .unwrap();
    let mut subscription = within("subscribe", client.subscribe("ticks"))
        .await
        .unwrap();
    let hub = server.hub.clone();
    let publisher = tokio::spawn(async move {
        for n in 1..=300u64 {
            hub.publish("ticks", Value::from(n)).await.unwrap();
            if n % 10 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    let mut next = 1;
    for cut_after in [50, 120, 200] {
        expect_sequence(&mut subscription, &mut next, cut_after).await;
        proxy.cut();
    }
    expect_sequence(&mut subscription, &mut next, 300).await;
    publisher.await.unwrap();
}

#[tokio::test]
async fn a_terminal_close_code_stops_reconnecting() {
    let server = Server::start(Hub::builder(), any_port()).await;
    let client = within("connect", quick(&server.url(), Codec::Json).connect())
        .await
        .unwrap();
    let _subscription = within("subscribe", client.subscribe("x")).await.unwrap();
    let me = server.hub.presence("x").await[0].id.clone();
    let mut states = client.state_changes();
    assert!(server.hub.disconnect(&me, DisconnectCode::FORCE_DISCONNECT));
    within("closed", states.wait_for(|s| *s == State::Closed))
        .await
        .unwrap();
    let err = client.publish("x", 1u64).await.unwrap_err();
    assert!(err.is_closed(), "{err}");
    assert_eq!(server.hub.connections(), 0, "no reconnect");
}

#[tokio::test]
async fn refused_credentials_fail_connect() {
    let server = Server::start(Hub::builder().allow_anonymous(false), any_port()).await;
    let err = within("connect", quick(&server.url(), Codec::Json).connect())
        .await
        .unwrap_err();
    assert!(err.is_refused() && err.code() == Some(3507), "{err}");
}

#[tokio::test]
async fn publishes_made_while_disconnected_are_delivered_after_reconnect() {
    let server = Server::start(Hub::builder(), any_port()).await;
    let watcher = within("connect", quick(&server.url(), Codec::Json).connect())
        .await
        .unwrap();
    let mut seen = within("subscribe", watcher.subscribe("inbox"))
        .await
        .unwrap();
    let proxy = Proxy::start(server.addr).await;
    let client = within("connect", quick(&proxy.url(), Codec::Json).connect())
        .await
        .unwrap();
    go_offline(&proxy, &client).await;
    let mut queued = Box::pin(client.publish("inbox", "written offline"));
    assert!(
        (&mut queued).now_or_never().is_none(),
        "waits while disconnected"
    );
    // The driver handles requests in order: once this answers, the publish sits in the queue.
    within("driver", client.server_time()).await;
    proxy.set_up(true);
    let ack = within("ack", queued).await.unwrap();
    assert_eq!(ack.offset, Some(1));
    assert_eq!(
        within("delivery", seen.next_publication())
            .await
            .unwrap()
            .data,
        Value::from("written offline")
    );
}

#[tokio::test]
async fn the_offline_queue_refuses_when_full_and_expires_old_publishes() {
    let server = Server::start(Hub::builder(), any_port()).await;
    let proxy = Proxy::start(server.addr).await;
    let client = within(
        "connect",
        quick(&proxy.url(), Codec::Json)
            .offline_queue(1, Duration::from_millis(200))
            .connect(),
    )
    .await
    .unwrap();
    go_offline(&proxy, &client).await;
    let mut waiting = Box::pin(client.publish("c", 1u64));
    assert!((&mut waiting).now_or_never().is_none());
    within("driver", client.server_time()).await;
    let full = client.publish("c", 2u64).await.unwrap_err();
    assert!(full.is_queue_full(), "{full}");
    let expired = within("expiry", waiting).await.unwrap_err();
    assert!(expired.is_expired(), "{expired}");
}

#[tokio::test]
async fn quick_publishes_leave_in_fewer_frames_than_publishes() {
    let server = Server::start(Hub::builder().options(unlimited()), any_port()).await;
    let proxy = Proxy::start(server.addr).await;
    let client = within("connect", quick(&proxy.url(), Codec::MsgPack).connect())
        .await
        .unwrap();
    let before = proxy.client_frames();
    let publishes: Vec<_> = (0..200u64)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move { client.publish("burst", n).await })
        })
        .collect();
    for publish in publishes {
        within("ack", publish).await.unwrap().unwrap();
    }
    let frames = proxy.client_frames() - before;
    assert!(frames < 200, "200 publishes went out in {frames} frames");
}

#[tokio::test]
async fn a_silent_server_is_detected_as_a_dead_link_and_left() {
    let mut options = HubOptions::default();
    options.ping_interval = Duration::from_millis(100);
    options.pong_timeout = Duration::from_millis(100);
    let server = Server::start(Hub::builder().options(options), any_port()).await;
    let proxy = Proxy::start(server.addr).await;
    let client = within("connect", quick(&proxy.url(), Codec::Json).connect())
        .await
        .unwrap();
    let mut events = client.events();
    proxy.swallow(true);
    loop {
        match within("dead link", events.recv()).await.unwrap() {
            ClientEvent::Disconnected {
                code, reconnect, ..
            } => {
                assert_eq!((code, reconnect), (1006, true));
                break;
            }
            _ => continue,
        }
    }
    proxy.swallow(false);
    loop {
        if let ClientEvent::Connected { .. } = within("reconnect", events.recv()).await.unwrap() {
            break;
        }
    }
}

/// `Client::search` in both codecs against a hub on the SQLite store whose
/// `ops` namespace enables search: ranked, paged, and refused where off.
#[tokio::test]
async fn search_finds_stored_publications_in_both_codecs() {
    let dir = tempfile::tempdir().unwrap();
    let store = sacred_server::SqliteHistory::open(
        dir.path().join("history.db"),
        sacred_server::Durability::default(),
    )
    .unwrap();
    let hub = Hub::builder()
        .namespace("ops", NamespaceOptions::default().search(true))
        .history_store(store);
    let server = Server::start(hub, any_port()).await;
    let publisher = within("connect", quick(&server.url(), Codec::Json).connect())
        .await
        .unwrap();
    for words in [
        "rollback on node 3",
        "lunch",
        "node 4 is fine",
        "rollback done",
        "coffee",
        "standup",
    ] {
        within("publish", publisher.publish("ops:prod", words))
            .await
            .unwrap();
    }
    for codec in Codec::ALL {
        let client = within("connect", quick(&server.url(), codec).connect())
            .await
            .unwrap();
        let found = within(
            "search",
            client.search(SearchRequest::new("ops:prod", "rollback node*")),
        )
        .await
        .unwrap();
        assert_eq!(found.total, 1, "{codec}: every word");
        assert_eq!(
            found.publications[0].data,
            Value::from("rollback on node 3")
        );
        let page = within(
            "search",
            client.search(SearchRequest::new("ops:prod", "node").limit(1).skip(1)),
        )
        .await
        .unwrap();
        assert_eq!(
            (page.total, page.publications.len()),
            (2, 1),
            "{codec}: a page"
        );
        let off = within("search", client.search(SearchRequest::new("chat", "node")))
            .await
            .unwrap_err();
        assert_eq!(off.code(), Some(108), "{codec}: {off}");
    }
}
