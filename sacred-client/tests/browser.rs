//! The client's browser transport in headless Chromium (wasm-bindgen-test),
//! against a real hub: `scripts/test` starts `browser-hub` (tests/browser_hub.rs)
//! and passes its URL at compile time in `SACRED_BROWSER_HUB`. Connect,
//! subscribe, publish with ack in both codecs, and reconnect after the server
//! drops the connection or restarts, with nothing lost or duplicated.
//!
//! Run: `scripts/test`, or by hand with the hub running:
//! `SACRED_BROWSER_HUB=ws://… CHROMEDRIVER=/usr/bin/chromedriver cargo test -p sacred-client --target wasm32-unknown-unknown --test browser`
#![cfg(target_arch = "wasm32")]

use std::future::Future;
use std::time::Duration;

use sacred_client::{Client, ClientBuilder, ClientEvent, State, Subscription, SubscriptionEvent};
use sacred_proto::{Codec, DisconnectCode, Value};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// The longest any single wait may take.
const WAIT: Duration = Duration::from_secs(10);

#[allow(
    clippy::option_env_unwrap,
    reason = "the suite must build without the hub (clippy, docs) and fail clearly without it"
)]
fn hub() -> &'static str {
    option_env!("SACRED_BROWSER_HUB")
        .expect("SACRED_BROWSER_HUB: scripts/test starts browser-hub and sets it")
}

/// A client that reconnects quickly, so the tests spend little time waiting.
fn quick(codec: Codec) -> ClientBuilder {
    Client::builder(hub())
        .codec(codec)
        .name("browser-test")
        .runtime("browser")
        .reconnect(Duration::from_millis(20), Duration::from_millis(200))
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::select! {
        output = future => output,
        () = gloo_timers::future::sleep(WAIT) => panic!("timed out: {what}"),
    }
}

/// A channel name no earlier run against the same hub used.
fn fresh(name: &str) -> String {
    format!("{name}-{}", (js_sys::Math::random() * 1e12) as u64)
}

async fn connect(codec: Codec) -> Client {
    within("connect", quick(codec).connect())
        .await
        .expect("the hub accepts the connection")
}

/// Publishes payloads `from..=to`, each acknowledged.
async fn publish_range(client: &Client, channel: &str, from: u64, to: u64) {
    for n in from..=to {
        within("publish", client.publish(channel, n))
            .await
            .expect("publish acknowledged");
    }
}

/// Reads publications until payload `last`, checking every payload from
/// `next` arrives exactly once and in order, and that `resubscribes`
/// resubscribes happen on the way, each recovered. Replayed publications
/// come before the resubscribe's announcement, so it may be the event after `last`.
async fn expect_sequence(
    subscription: &mut Subscription,
    next: &mut u64,
    last: u64,
    resubscribes: usize,
) {
    let mut seen = 0;
    while *next <= last || seen < resubscribes {
        match within("a publication", subscription.recv())
            .await
            .expect("still subscribed")
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
                assert!(
                    recovered,
                    "a gap within the history window must be recovered"
                );
                seen += 1;
                assert!(
                    seen <= resubscribes,
                    "more resubscribes than connections lost"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[wasm_bindgen_test]
async fn connects_subscribes_and_publishes_with_ack_in_both_codecs() {
    for codec in Codec::ALL {
        let channel = fresh(&format!("basic-{}", codec.subprotocol().replace('.', "-")));
        let subscriber = connect(codec).await;
        assert_eq!(subscriber.state(), State::Connected);
        let mut subscription = within("subscribe", subscriber.subscribe(&channel))
            .await
            .unwrap();
        let publisher = connect(codec).await;
        let ack = within("publish", publisher.publish(&channel, "hello"))
            .await
            .unwrap();
        assert_eq!(ack.offset, Some(1));
        let publication = within("publication", subscription.next_publication())
            .await
            .unwrap();
        assert_eq!(publication.data, Value::from("hello"));
        // Bytes travel as `bin` in MessagePack and as base64 in JSON (spec 2.3).
        within(
            "publish",
            publisher.publish(&channel, Value::Bytes(vec![0u8, 1, 254, 255])),
        )
        .await
        .unwrap();
        let publication = within("publication", subscription.next_publication())
            .await
            .unwrap();
        let expected = match codec {
            Codec::Json => Value::from("AAH+/w=="),
            Codec::MsgPack => Value::from(vec![0u8, 1, 254, 255]),
        };
        assert_eq!(publication.data, expected);
        let present = within("presence", publisher.presence(&channel))
            .await
            .unwrap();
        assert_eq!(present.len(), 1);
        assert_eq!(present[0].info.runtime, "browser");
        let err = within("rpc", publisher.rpc("missing", Value::Null))
            .await
            .unwrap_err();
        assert!(err.is_server() && err.code() == Some(104), "{err}");
        within("close", subscriber.close()).await;
        assert_eq!(subscriber.state(), State::Closed);
        within("close", publisher.close()).await;
    }
}

#[wasm_bindgen_test]
async fn a_traceparent_reaches_the_subscriber_and_a_malformed_one_is_refused() {
    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let channel = &fresh("traced");
    let subscriber = connect(Codec::MsgPack).await;
    let mut subscription = within("subscribe", subscriber.subscribe(channel))
        .await
        .unwrap();
    let publisher = connect(Codec::Json).await;
    let err = within(
        "refused publish",
        publisher.publish_traced(channel, "never", TRACEPARENT.to_uppercase()),
    )
    .await
    .unwrap_err();
    assert!(err.is_invalid() && !err.is_server(), "{err}");
    within(
        "traced publish",
        publisher.publish_traced(channel, "traced", TRACEPARENT),
    )
    .await
    .unwrap();
    let publication = within("publication", subscription.next_publication())
        .await
        .unwrap();
    assert_eq!(
        publication.data,
        Value::from("traced"),
        "the refused one never left"
    );
    let carried = publication.traceparent.expect("the publish carried one");
    // Same trace id and flags; the parent id is the server's span when it traces.
    assert_eq!(
        (&carried[3..35], &carried[53..]),
        (&TRACEPARENT[3..35], &TRACEPARENT[53..])
    );
}

#[wasm_bindgen_test]
async fn reconnects_after_the_server_drops_the_connection_losing_nothing() {
    let channel = &fresh("drop");
    let subscriber = connect(Codec::Json).await;
    let mut subscription = within("subscribe", subscriber.subscribe(channel))
        .await
        .unwrap();
    let mut events = subscriber.events();
    let publisher = connect(Codec::Json).await;
    publish_range(&publisher, channel, 1, 10).await;
    let mut next = 1;
    expect_sequence(&mut subscription, &mut next, 10, 0).await;

    let kicked = within(
        "kick",
        publisher.rpc("test.kick", serde_json::json!({ "channel": channel })),
    )
    .await
    .unwrap();
    assert_eq!(kicked, Value::from(1u64));
    // Published while the subscriber is away or coming back.
    publish_range(&publisher, channel, 11, 30).await;
    expect_sequence(&mut subscription, &mut next, 30, 1).await;
    let disconnected = within("disconnected event", events.recv()).await.unwrap();
    let ClientEvent::Disconnected {
        code,
        reason,
        reconnect,
    } = disconnected
    else {
        panic!("expected disconnected, got {disconnected:?}")
    };
    assert_eq!(code, DisconnectCode::FORCE_RECONNECT.as_u16());
    assert_eq!((reason.as_str(), reconnect), ("force reconnect", true));
    assert!(matches!(
        within("connecting event", events.recv()).await.unwrap(),
        ClientEvent::Connecting
    ));
    assert!(matches!(
        within("connected event", events.recv()).await.unwrap(),
        ClientEvent::Connected { .. }
    ));
}

#[wasm_bindgen_test]
async fn a_server_restart_on_the_same_port_loses_and_duplicates_nothing() {
    let channel = &fresh("restart");
    let subscriber = connect(Codec::MsgPack).await;
    let mut subscription = within("subscribe", subscriber.subscribe(channel))
        .await
        .unwrap();
    let publisher = connect(Codec::MsgPack).await;
    publish_range(&publisher, channel, 1, 10).await;
    let mut next = 1;
    expect_sequence(&mut subscription, &mut next, 10, 0).await;

    let mut events = publisher.events();
    within("restart", publisher.rpc("test.restart", Value::Null))
        .await
        .unwrap();
    // A publish in flight when the old hub closes fails with `is_disconnected`
    // (it may or may not have been applied), so publish once the new hub is
    // up; the subscriber may still be away, and recovers what it missed.
    while !matches!(
        within("reconnected", events.recv()).await,
        Some(ClientEvent::Connected { .. })
    ) {}
    publish_range(&publisher, channel, 11, 30).await;
    expect_sequence(&mut subscription, &mut next, 30, 1).await;
}

#[wasm_bindgen_test]
async fn a_terminal_close_code_stops_reconnecting() {
    let channel = &fresh("terminal");
    let subscriber = connect(Codec::Json).await;
    let _subscription = within("subscribe", subscriber.subscribe(channel))
        .await
        .unwrap();
    let publisher = connect(Codec::Json).await;
    let code = DisconnectCode::FORCE_DISCONNECT.as_u16();
    within(
        "kick",
        publisher.rpc(
            "test.kick",
            serde_json::json!({ "channel": channel, "code": code }),
        ),
    )
    .await
    .unwrap();
    let mut states = subscriber.state_changes();
    within("closed", states.wait_for(|state| *state == State::Closed))
        .await
        .unwrap();
    let err = within("publish", subscriber.publish(channel, 1u64))
        .await
        .unwrap_err();
    assert!(err.is_closed(), "{err}");
}
