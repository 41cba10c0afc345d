//! Tracing to OpenTelemetry, end to end: the `sacred-server` binary exports
//! its spans over OTLP/HTTP to a receiver this test serves on loopback, and a
//! publish's W3C `traceparent` carries one trace from the publisher through
//! the server to the subscriber.

mod support;

use opentelemetry_proto::tonic::trace::v1::Span;
use sacred_proto::*;
use support::otlp::{attributes, drain, receiver};
use support::*;

/// The publisher's span: W3C Trace Context's own example.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PUBLISHER_SPAN: &str = "00f067aa0ba902b7";

fn stop(child: &tokio::process::Child) {
    let pid = child.id().expect("still running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn one_trace_follows_a_publication_from_its_publisher_to_its_subscriber() {
    let (otlp, mut spans) = receiver().await;
    let endpoint = format!("http://{otlp}");
    let (mut child, addr) = spawn_binary(["--otlp-endpoint", &endpoint, "--drain-secs", "1"]).await;
    let url = format!("ws://{addr}/ws");

    let (mut watcher, watcher_reply) = Client::connect(
        &url,
        Codec::Json,
        ClientInfo::new("watcher", "agent", "rust", "1"),
    )
    .await;
    subscribe_reply(watcher.request(SubscribeRequest::new("traced")).await);
    let (mut publisher, publisher_reply) = Client::connect(
        &url,
        Codec::MsgPack,
        ClientInfo::new("pub", "service", "python", "1"),
    )
    .await;

    let traceparent = format!("00-{TRACE}-{PUBLISHER_SPAN}-01");
    let publish = PublishRequest::new("traced", text("hello")).with_traceparent(&traceparent);
    publish_reply(publisher.request(publish).await);
    let carried = watcher.publication().await.traceparent.expect("carried on");
    let fields: Vec<&str> = carried.split('-').collect();
    assert_eq!(fields.len(), 4, "{carried}");
    assert_eq!(
        (fields[0], fields[1], fields[3]),
        ("00", TRACE, "01"),
        "{carried}"
    );
    assert_ne!(
        fields[2], PUBLISHER_SPAN,
        "the server's span is the new parent"
    );
    let server_span = fields[2].to_owned();

    // A publish without one starts no trace on the wire; a malformed one is refused.
    publish_reply(
        publisher
            .request(PublishRequest::new("traced", text("plain")))
            .await,
    );
    assert_eq!(watcher.publication().await.traceparent, None);
    let bad = PublishRequest::new("traced", text("x")).with_traceparent("00-abc-def-01");
    assert_eq!(error_code(publisher.request(bad).await), 107);
    // A refused command is a span with its code.
    let refused = error_code(
        publisher
            .request(SubscribeRequest::new("unknown:room"))
            .await,
    );
    assert_eq!(refused, 102, "no such namespace");

    publisher.close_normally().await;
    watcher.close_normally().await;
    stop(&child);
    let status = tokio::time::timeout(WAIT * 2, child.wait())
        .await
        .expect("the binary stops in time")
        .unwrap();
    assert!(status.success(), "{status}");

    // The exporter flushed at exit: every span is in the channel now.
    let mut all = Vec::new();
    for (service, span) in drain(&mut spans) {
        assert_eq!(service, "sacred-server");
        all.push(span);
    }
    let named = |name: &str| -> Vec<&Span> { all.iter().filter(|s| s.name == name).collect() };
    let hex = hex::encode;

    // The publish: a child of the publisher's span, with its fields.
    let publish = named("publish")
        .into_iter()
        .find(|s| hex(&s.trace_id) == TRACE)
        .unwrap_or_else(|| panic!("no traced publish span in {:?}", names(&all)));
    assert_eq!(hex(&publish.parent_span_id), PUBLISHER_SPAN);
    assert_eq!(hex(&publish.span_id), server_span);
    let fields = attributes(publish);
    assert_eq!(fields["client.id"], publisher_reply.client);
    assert_eq!(fields["client.kind"], "service");
    assert_eq!(fields["channel"], "traced");

    // Its broker step, and the delivery to this node's subscriber.
    let broker = named("broker.publish")
        .into_iter()
        .find(|s| hex(&s.trace_id) == TRACE)
        .expect("a broker.publish span in the trace");
    assert_eq!(hex(&broker.parent_span_id), server_span);
    let deliver = named("deliver")
        .into_iter()
        .find(|s| hex(&s.trace_id) == TRACE)
        .expect("a deliver span in the trace");
    assert_eq!(hex(&deliver.parent_span_id), server_span);
    assert_eq!(attributes(deliver)["deliveries"], "1");
    assert_eq!(attributes(deliver)["channel"], "traced");

    // Connects name the client; every command has its span.
    let connects: Vec<String> = named("connect")
        .iter()
        .map(|s| attributes(s)["client.id"].clone())
        .collect();
    assert!(connects.contains(&watcher_reply.client), "{connects:?}");
    assert!(connects.contains(&publisher_reply.client), "{connects:?}");
    let connect = attributes(named("connect")[0]);
    assert!(["agent", "service"].contains(&connect["client.kind"].as_str()));
    let subscribe = named("subscribe");
    assert!(
        subscribe
            .iter()
            .any(|s| attributes(s).get("error.code") == Some(&refused.to_string())),
        "the refused subscribe is marked: {subscribe:?}"
    );
    assert!(
        subscribe.iter().any(|s| {
            let fields = attributes(s);
            fields["client.id"] == watcher_reply.client && !fields.contains_key("error.code")
        }),
        "the watcher's subscribe: {subscribe:?}"
    );
}

fn names(spans: &[Span]) -> Vec<&str> {
    spans.iter().map(|s| s.name.as_str()).collect()
}

#[tokio::test]
async fn an_otlp_endpoint_that_is_not_a_url_stops_the_start() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sacred-server"))
        .args(["--bind", "127.0.0.1:0", "--otlp-endpoint", "collector:4318"])
        .output();
    let output = tokio::time::timeout(WAIT, output).await.unwrap().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("give an http:// or https:// URL"),
        "{stderr}"
    );
}
