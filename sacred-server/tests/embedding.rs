//! The router mounted inside a host's own app: under a prefix, beside the
//! host's routes and behind its layers, with the hub driven from host code.

mod support;

use axum::Router;
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use sacred_proto::*;
use sacred_server::{Hub, NamespaceOptions};
use support::*;

async fn stamp(request: axum::extract::Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert("x-host", HeaderValue::from_static("mine"));
    response
}

#[tokio::test]
async fn the_router_works_under_a_prefix_beside_host_routes_and_layers() {
    let (realtime, hub) = Hub::builder()
        .namespace("orders", NamespaceOptions::default())
        .build()
        .unwrap();
    let app = Router::new()
        .route("/", get(|| async { "host home" }))
        .nest("/rt", realtime)
        .layer(middleware::from_fn(stamp));
    let server = Server::serve(app, hub.clone()).await;

    let home = http_get(server.addr, "/").await;
    assert!(
        home.contains("host home") && home.contains("x-host: mine"),
        "{home}"
    );
    let health = http_get(server.addr, "/rt/health").await;
    assert!(
        health.starts_with("HTTP/1.1 200") && health.contains("x-host: mine"),
        "{health}"
    );

    let url = format!("ws://{}/rt/ws", server.addr);
    let (mut client, connected) = Client::connect(&url, Codec::Json, info("shop")).await;
    subscribe_reply(client.request(SubscribeRequest::new("orders:42")).await);

    // The host publishes, reads presence and messages one client.
    let ack = hub
        .publish(
            "orders:42",
            Value::from(serde_json::json!({"status": "shipped"})),
        )
        .await
        .unwrap();
    let publication = client.publication().await;
    assert_eq!((publication.offset, publication.from), (ack.offset, None));
    assert_eq!(hub.presence("orders:42").await[0].id, connected.client);
    hub.send(&connected.client, Value::from("thanks")).unwrap();
    let Push::Message(message) = client.push().await else {
        panic!("expected a message")
    };
    assert_eq!(message.data, Value::from("thanks"));
    assert!(hub.send("nobody", Value::Null).is_err());
    let refused = hub.publish("unknown:x", Value::Null).await.unwrap_err();
    assert_eq!(
        refused.code(),
        ErrorCode::UNKNOWN_CHANNEL,
        "unknown namespaces are refused for the host too"
    );
}
