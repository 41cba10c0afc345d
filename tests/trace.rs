//! `traceparent` from a `sacred-client` publisher to its subscribers through
//! the real `sacred-server` over loopback (protocol section 14): live, in
//! history and in recovery after a cut, in both codecs; a malformed value is
//! refused by the client before it is sent.

use sacred_client::{Client, HistoryRequest, Publication, SubscriptionEvent};
use sacred_proto::{Codec, ValidationError, Value};
use sacred_server::{Hub, NamespaceOptions};
use sacred_tests::{Proxy, Server, any_port, quick, within};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A hub whose default namespace keeps history, so history and recovery
/// carry publications.
fn with_history() -> sacred_server::HubBuilder {
    let mut namespace = NamespaceOptions::default();
    namespace.history_size = 100;
    Hub::builder().namespace("", namespace)
}

/// The trace id and flags of a `traceparent`: what every hop keeps (the
/// parent id is the server's span when the server traces).
fn trace_of(traceparent: &str) -> (&str, &str) {
    (&traceparent[3..35], &traceparent[53..55])
}

fn assert_same_trace(publication: &Publication) {
    let carried = publication
        .traceparent
        .as_deref()
        .unwrap_or_else(|| panic!("no traceparent on {publication:?}"));
    sacred_proto::validate_traceparent(carried).unwrap();
    assert_eq!(trace_of(carried), trace_of(TRACEPARENT));
}

async fn connect(url: &str, codec: Codec) -> Client {
    within("connect", quick(url, codec).connect())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_subscriber_continues_the_publishers_trace_live_and_from_history() {
    let server = Server::start(with_history(), any_port()).await;
    for codec in Codec::ALL {
        let channel = format!("traced-{codec}").replace('.', "-");
        let subscriber = connect(&server.url(), codec).await;
        let mut subscription = within("subscribe", subscriber.subscribe(&channel))
            .await
            .unwrap();
        let publisher = connect(&server.url(), codec).await;
        within(
            "traced publish",
            publisher.publish_traced(&channel, "traced", TRACEPARENT),
        )
        .await
        .unwrap();
        within("publish", publisher.publish(&channel, "plain"))
            .await
            .unwrap();

        let traced = within("publication", subscription.next_publication())
            .await
            .unwrap();
        assert_eq!(traced.data, Value::from("traced"));
        assert_same_trace(&traced);
        let plain = within("publication", subscription.next_publication())
            .await
            .unwrap();
        assert_eq!(plain.data, Value::from("plain"));
        assert_eq!(plain.traceparent, None, "no traceparent in, none out");

        let history = within("history", subscriber.history(HistoryRequest::new(&channel)))
            .await
            .unwrap();
        let [stored_traced, stored_plain] = &history.publications[..] else {
            panic!("two publications in {history:?}");
        };
        assert_same_trace(stored_traced);
        assert_eq!(stored_plain.traceparent, None);
    }
}

#[tokio::test]
async fn a_recovered_publication_keeps_its_traceparent() {
    let server = Server::start(with_history(), any_port()).await;
    let proxy = Proxy::start(server.addr).await;
    let subscriber = connect(&proxy.url(), Codec::MsgPack).await;
    let mut subscription = within("subscribe", subscriber.subscribe("recovered"))
        .await
        .unwrap();
    let publisher = connect(&server.url(), Codec::Json).await;
    within("publish", publisher.publish("recovered", 1u64))
        .await
        .unwrap();
    within("publication", subscription.next_publication())
        .await
        .unwrap();

    // Offline: the traced publish reaches the subscriber only by recovery.
    let mut states = subscriber.state_changes();
    proxy.set_up(false);
    proxy.cut();
    within(
        "disconnected",
        states.wait_for(|s| *s != sacred_client::State::Connected),
    )
    .await
    .unwrap();
    within(
        "traced publish",
        publisher.publish_traced("recovered", 2u64, TRACEPARENT),
    )
    .await
    .unwrap();
    proxy.set_up(true);

    loop {
        match within("recovery", subscription.recv()).await.unwrap() {
            SubscriptionEvent::Publication(publication) => {
                assert_eq!(publication.data, Value::from(2u64));
                assert_same_trace(&publication);
                break;
            }
            SubscriptionEvent::Resubscribed { recovered } => assert!(recovered),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_malformed_traceparent_is_refused_before_it_is_sent() {
    let server = Server::start(with_history(), any_port()).await;
    let proxy = Proxy::start(server.addr).await;
    let subscriber = connect(&server.url(), Codec::Json).await;
    let mut subscription = within("subscribe", subscriber.subscribe("malformed"))
        .await
        .unwrap();
    let publisher = connect(&proxy.url(), Codec::Json).await;
    let frames = proxy.client_frames();

    let uppercase = TRACEPARENT.to_uppercase();
    let all_zero = format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32));
    for bad in ["", "not-a-trace", uppercase.as_str(), all_zero.as_str()] {
        let err = within(
            "refused publish",
            publisher.publish_traced("malformed", "never", bad),
        )
        .await
        .unwrap_err();
        assert!(err.is_invalid() && !err.is_server(), "{bad:?}: {err}");
        assert!(
            err.to_string()
                .contains(&ValidationError::Traceparent.to_string()),
            "the server's 107 text: {err}"
        );
    }
    assert_eq!(proxy.client_frames(), frames, "nothing reached the wire");

    // The connection goes on: the next publish is the first the subscriber sees.
    within("publish", publisher.publish("malformed", "after"))
        .await
        .unwrap();
    let publication = within("publication", subscription.next_publication())
        .await
        .unwrap();
    assert_eq!(publication.data, Value::from("after"));
}
