//! Connection lifecycle over real sockets: heartbeat, slow consumers, token
//! expiry, host-initiated disconnects and the graceful shutdown sequence.
//! Timers are configured short; tests wait for events, never for time.

mod support;

use std::time::Duration;

use futures_util::future::BoxFuture;
use sacred_proto::*;
use sacred_server::{AuthError, Authenticator, ConnectContext, Hub, HubOptions, Identity};
use support::*;

fn quick_heartbeat() -> HubOptions {
    let mut options = HubOptions::default();
    options.ping_interval = Duration::from_millis(50);
    options.pong_timeout = Duration::from_millis(150);
    options
}

#[tokio::test]
async fn pings_arrive_pongs_keep_the_connection_and_silence_closes_it() {
    let server = Server::start(Hub::builder().options(quick_heartbeat())).await;
    let (mut silent, _) = Client::connect(&server.url(), Codec::MsgPack, info("silent")).await;
    assert_eq!(silent.closed().await, Some(3003), "no pong");
    let disconnect = silent.disconnect.expect("a disconnect push first");
    assert!(disconnect.reconnect, "3003 asks the client to reconnect");

    // A client that answers every ping stays, many pong timeouts later.
    let (mut polite, connected) = Client::connect(&server.url(), Codec::Json, info("polite")).await;
    assert_eq!((connected.ping_interval, connected.pong_timeout), (50, 150));
    for _ in 0..10 {
        let Push::Ping(ping) = polite.push().await else {
            panic!("expected a ping")
        };
        assert!(ping.time >= connected.time);
        assert!(matches!(
            polite.request(PongRequest::new()).await,
            Ok(Reply::Pong(_))
        ));
    }
    assert_eq!(server.hub.connections(), 1);
}

#[tokio::test]
async fn a_subscriber_that_does_not_read_is_cut_off_and_the_others_get_everything() {
    let mut options = HubOptions::default();
    options.outbound_queue_bytes = 64 * 1024;
    let server = Server::start(Hub::builder().options(options)).await;
    let (mut stalled, _) = Client::connect(&server.url(), Codec::MsgPack, info("stalled")).await;
    subscribe_reply(stalled.request(SubscribeRequest::new("firehose")).await);
    let (mut reader, _) = Client::connect(&server.url(), Codec::MsgPack, info("reader")).await;
    subscribe_reply(reader.request(SubscribeRequest::new("firehose")).await);

    // `stalled` reads nothing; `reader` keeps up. Publish until the hub drops
    // `stalled` (the socket buffers fill first, then its 64 KiB queue).
    let payload = Value::Bytes(vec![7; 8 * 1024]);
    let mut published = 0u64;
    while server.hub.connections() == 2 {
        assert!(
            published < 100_000,
            "the stalled subscriber was never cut off"
        );
        server
            .hub
            .publish("firehose", payload.clone())
            .await
            .unwrap();
        published += 1;
        assert_eq!(reader.publication().await.offset, Some(published));
    }
    assert_eq!(
        stalled.closed().await.unwrap_or(3002),
        3002,
        "slow consumer, if the close frame got through"
    );
    if let Some(disconnect) = stalled.disconnect {
        assert_eq!((disconnect.code, disconnect.reconnect), (3002, true));
    }
}

/// Accepts every token, valid for `ttl` from now.
struct ShortLived {
    ttl: Duration,
}

impl Authenticator for ShortLived {
    fn authenticate<'a>(
        &'a self,
        request: &'a ConnectContext,
    ) -> BoxFuture<'a, Result<Identity, AuthError>> {
        let token = request.token.as_deref();
        let expires = std::time::SystemTime::now() + self.ttl;
        let mut identity = Identity::user(token.unwrap_or("anon"));
        identity.expires = Some(
            expires
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64,
        );
        Box::pin(std::future::ready(Ok(identity)))
    }
}

#[tokio::test]
async fn an_expired_token_closes_with_3004_unless_refreshed() {
    let server = Server::start(Hub::builder().authenticator(ShortLived {
        ttl: Duration::from_millis(300),
    }))
    .await;
    let mut client = Client::open(&server.url(), Codec::Json).await;
    let reply = client
        .connect_with(ConnectRequest::new(Some("ada".into()), info("ada")))
        .await
        .unwrap();
    assert!(reply.expires.is_some());
    assert_eq!(client.closed().await, Some(3004));
    assert!(
        client.disconnect.unwrap().reconnect,
        "reconnect with a new token"
    );
}

#[tokio::test]
async fn the_host_disconnects_a_client_with_its_own_code() {
    let server = Server::start(Hub::builder()).await;
    let (mut client, connected) = Client::connect(&server.url(), Codec::Json, info("victim")).await;
    assert!(server.hub.disconnect(
        &connected.client,
        DisconnectCode::application(4501).unwrap()
    ));
    assert_eq!(client.closed().await, Some(4501));
    assert!(!client.disconnect.unwrap().reconnect);
    assert!(
        !server
            .hub
            .disconnect("gone", DisconnectCode::FORCE_DISCONNECT)
    );
}

#[tokio::test]
async fn shutdown_turns_ready_off_advises_migration_drains_then_closes_with_3001() {
    let mut options = HubOptions::default();
    options.drain = Duration::from_millis(300);
    let server = Server::start(Hub::builder().options(options)).await;
    assert!(
        http_get(server.addr, "/ready")
            .await
            .starts_with("HTTP/1.1 200")
    );
    assert!(
        http_get(server.addr, "/health")
            .await
            .starts_with("HTTP/1.1 200")
    );

    let (mut stays, _) = Client::connect(&server.url(), Codec::Json, info("stays")).await;
    let (mut leaves, _) = Client::connect(&server.url(), Codec::MsgPack, info("leaves")).await;
    let hub = server.hub.clone();
    let shutdown = tokio::spawn(async move { hub.shutdown().await });

    let Push::Migrate(advice) = stays.push().await else {
        panic!("expected migrate advice")
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        advice.at > now && advice.at <= now + 300,
        "the deadline is the drain period away"
    );
    assert!(
        http_get(server.addr, "/ready")
            .await
            .starts_with("HTTP/1.1 503"),
        "not ready while draining"
    );
    assert!(
        http_get(server.addr, "/health")
            .await
            .starts_with("HTTP/1.1 200"),
        "still alive while draining"
    );
    assert!(
        Client::open_offering(&server.url(), Some("sacred.v1.json"))
            .await
            .is_err(),
        "no new connections"
    );

    // One client follows the advice; the other stays until the end.
    let Push::Migrate(_) = leaves.push().await else {
        panic!("expected migrate advice")
    };
    drop(leaves);
    assert_eq!(stays.closed().await, Some(3001));
    let disconnect = stays.disconnect.expect("a disconnect push first");
    assert_eq!(
        (
            disconnect.code,
            disconnect.reason.as_str(),
            disconnect.reconnect
        ),
        (3001, "shutdown", true)
    );
    tokio::time::timeout(WAIT, shutdown)
        .await
        .expect("shutdown finishes after the drain")
        .unwrap();
    assert_eq!(server.hub.connections(), 0);
}

#[tokio::test]
async fn a_client_that_closes_gets_a_close_frame_back() {
    let server = Server::start(Hub::builder()).await;
    let (mut client, _) = Client::connect(&server.url(), Codec::Json, info("leaving")).await;
    assert_eq!(
        client.close_and_hear_back().await,
        Some(1000),
        "RFC 6455: the close is answered"
    );
}

#[tokio::test]
async fn a_channel_listed_twice_in_connect_subs_is_subscribed_once() {
    let server = Server::start(Hub::builder()).await;
    let mut client = Client::open(&server.url(), Codec::Json).await;
    let mut connect = ConnectRequest::new(None, info("twice"));
    connect.subs = vec![
        SubscribeRequest::new("lobby"),
        SubscribeRequest::new("lobby"),
    ];
    let reply = client.connect_with(connect).await.unwrap();
    assert_eq!(reply.subs.len(), 1);
    server
        .hub
        .publish("lobby", Value::from("one"))
        .await
        .unwrap();
    // Had the duplicate been refused, an `unsubscribed` push would come first.
    assert_eq!(client.publication().await.data, Value::from("one"));
}
