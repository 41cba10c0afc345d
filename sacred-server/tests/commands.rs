//! Every command of the protocol over a real socket, in both codecs.

mod support;

use std::time::Duration;

use sacred_proto::*;
use sacred_server::{Hub, NamespaceOptions, RpcError};
use support::*;

async fn hub() -> Server {
    let mut no_history = NamespaceOptions::default();
    no_history.history_size = 0;
    let builder = Hub::builder()
        .namespace("chat", NamespaceOptions::default())
        .namespace("live", no_history)
        .rpc("echo", |ctx, data| async move {
            Ok(Value::from(
                serde_json::json!({"caller": ctx.caller.info.name, "data": data.into_json()}),
            ))
        })
        .rpc("fail", |_, _| async {
            Err(RpcError::new(404, "no such thing"))
        })
        .rpc("bytes", |_, _| async {
            Ok(Value::Bytes(vec![0, 1, 2, 255]))
        });
    Server::start(builder).await
}

#[tokio::test]
async fn connect_announces_identity_heartbeat_and_server_time() {
    let server = hub().await;
    for codec in Codec::ALL {
        let (_client, reply) = Client::connect(&server.url(), codec, info("bot")).await;
        assert_eq!(reply.client.len(), 12);
        assert_eq!(reply.ping_interval, 5000);
        assert_eq!(reply.pong_timeout, 10000);
        assert!(reply.version.starts_with("sacred-server/"));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(
            reply.time.abs_diff(now) < 60_000,
            "server time is wall-clock time"
        );
    }
    let mut mobile = info("phone");
    mobile.runtime = "mobile".into();
    let (_client, reply) = Client::connect(&server.url(), Codec::Json, mobile).await;
    assert_eq!(
        reply.ping_interval, 30_000,
        "mobile clients get the longer interval"
    );
}

#[tokio::test]
async fn no_subprotocol_means_json_and_an_unknown_one_is_refused_with_400() {
    let server = hub().await;
    let mut client = Client::open_offering(&server.url(), None).await.unwrap();
    assert_eq!(client.codec, Codec::Json);
    assert!(client.connect_with(ConnectRequest::default()).await.is_ok());

    let err = Client::open_offering(&server.url(), Some("mqtt, sacred.v2.json"))
        .await
        .err()
        .unwrap();
    let tokio_tungstenite::tungstenite::Error::Http(response) = err else {
        panic!("expected an HTTP refusal: {err}")
    };
    assert_eq!(response.status(), 400);
    let body = String::from_utf8(response.body().clone().unwrap_or_default()).unwrap();
    assert!(
        body.contains("sacred.v1.json") && body.contains("mqtt"),
        "{body}"
    );

    let client = Client::open_offering(&server.url(), Some("mqtt, sacred.v1.msgpack"))
        .await
        .unwrap();
    assert_eq!(
        client.codec,
        Codec::MsgPack,
        "the first Sacred subprotocol offered wins"
    );
}

#[tokio::test]
async fn publish_reaches_every_subscriber_in_both_codecs_with_ack_and_position() {
    let server = hub().await;
    let (mut json, _) = Client::connect(&server.url(), Codec::Json, info("json")).await;
    let (mut msgpack, _) = Client::connect(&server.url(), Codec::MsgPack, info("msgpack")).await;
    let (mut publisher, connected) =
        Client::connect(&server.url(), Codec::MsgPack, info("publisher")).await;
    for client in [&mut json, &mut msgpack] {
        let reply = subscribe_reply(client.request(SubscribeRequest::new("chat:lobby")).await);
        assert_eq!(reply.offset, Some(0));
        assert!(!reply.recovered);
    }
    let data = Value::from(serde_json::json!({"text": "hello", "n": 1}));
    let ack = publish_reply(
        publisher
            .request(PublishRequest::new("chat:lobby", data.clone()))
            .await,
    );
    assert_eq!(ack.offset, Some(1));
    for client in [&mut json, &mut msgpack] {
        let publication = client.publication().await;
        assert_eq!(publication.channel, "chat:lobby");
        assert_eq!(publication.data, data);
        assert_eq!(publication.offset, Some(1));
        assert_eq!(publication.epoch, ack.epoch);
        let from = publication
            .from
            .expect("a client publication names its publisher");
        assert_eq!(from.id, connected.client);
        assert_eq!(from.info.name, "publisher");
    }
}

#[tokio::test]
async fn bytes_reach_msgpack_as_bytes_and_json_as_base64() {
    let server = hub().await;
    let (mut json, _) = Client::connect(&server.url(), Codec::Json, info("json")).await;
    let (mut msgpack, _) = Client::connect(&server.url(), Codec::MsgPack, info("msgpack")).await;
    for client in [&mut json, &mut msgpack] {
        subscribe_reply(client.request(SubscribeRequest::new("chat:audio")).await);
    }
    publish_reply(
        msgpack
            .request(PublishRequest::new(
                "chat:audio",
                Value::Bytes(vec![0, 1, 0xfe, 0xff]),
            ))
            .await,
    );
    assert_eq!(
        msgpack.publication().await.data,
        Value::Bytes(vec![0, 1, 0xfe, 0xff])
    );
    assert_eq!(json.publication().await.data, text("AAH+/w=="));
}

#[tokio::test]
async fn unsubscribe_stops_delivery() {
    let server = hub().await;
    let (mut client, _) = Client::connect(&server.url(), Codec::Json, info("a")).await;
    subscribe_reply(client.request(SubscribeRequest::new("live:x")).await);
    assert!(matches!(
        client.request(UnsubscribeRequest::new("live:x")).await,
        Ok(Reply::Unsubscribe(_))
    ));
    // Host publishes after the unsubscribe; only the next channel's publication arrives.
    subscribe_reply(client.request(SubscribeRequest::new("live:y")).await);
    server.hub.publish("live:x", text("missed")).await.unwrap();
    server.hub.publish("live:y", text("seen")).await.unwrap();
    assert_eq!(client.publication().await.data, text("seen"));
}

#[tokio::test]
async fn send_delivers_a_direct_message_naming_the_sender() {
    let server = hub().await;
    let (mut alice, alice_id) = Client::connect(&server.url(), Codec::Json, info("alice")).await;
    let (mut bob, bob_id) = Client::connect(&server.url(), Codec::MsgPack, info("bob")).await;
    let sent = alice
        .request(SendRequest::new(bob_id.client.clone(), text("psst")))
        .await;
    assert!(matches!(sent, Ok(Reply::Send(_))));
    let Push::Message(message) = bob.push().await else {
        panic!("expected a message")
    };
    assert_eq!(message.data, text("psst"));
    assert_eq!(message.from.map(|p| p.id), Some(alice_id.client.clone()));

    server
        .hub
        .send(&alice_id.client, text("from the host"))
        .unwrap();
    let Push::Message(message) = alice.push().await else {
        panic!("expected a message")
    };
    assert_eq!((message.from, message.data), (None, text("from the host")));
}

#[tokio::test]
async fn presence_lists_subscribers_and_join_leave_is_opt_in() {
    let server = hub().await;
    let (mut watcher, watcher_id) =
        Client::connect(&server.url(), Codec::Json, info("watcher")).await;
    let mut opt_in = SubscribeRequest::new("chat:room");
    opt_in.join_leave = true;
    subscribe_reply(watcher.request(opt_in).await);
    let (mut quiet, quiet_id) = Client::connect(&server.url(), Codec::Json, info("quiet")).await;
    subscribe_reply(quiet.request(SubscribeRequest::new("chat:room")).await);
    let Push::Join(join) = watcher.push().await else {
        panic!("expected a join")
    };
    assert_eq!(join.client.id, quiet_id.client);

    let (mut guest, guest_id) = Client::connect(&server.url(), Codec::MsgPack, info("guest")).await;
    subscribe_reply(guest.request(SubscribeRequest::new("chat:room")).await);
    let Push::Join(join) = watcher.push().await else {
        panic!("expected a join")
    };
    assert_eq!(
        (join.channel.as_str(), join.client.id.as_str()),
        ("chat:room", guest_id.client.as_str())
    );
    assert_eq!(join.client.info.name, "guest");

    let Ok(Reply::Presence(presence)) = guest.request(PresenceRequest::new("chat:room")).await
    else {
        panic!()
    };
    let mut names: Vec<_> = presence
        .clients
        .iter()
        .map(|p| p.info.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, ["guest", "quiet", "watcher"]);
    assert!(presence.clients.iter().any(|p| p.id == watcher_id.client));

    drop(guest);
    let Push::Leave(leave) = watcher.push().await else {
        panic!("expected a leave")
    };
    assert_eq!(leave.client.id, guest_id.client);
    assert_eq!(server.hub.presence("chat:room").await.len(), 2);
    // The quiet subscriber did not opt in: its next push is the publication.
    server.hub.publish("chat:room", text("x")).await.unwrap();
    assert_eq!(quiet.publication().await.data, text("x"));
}

#[tokio::test]
async fn history_reads_forward_backward_and_since() {
    let server = hub().await;
    let (mut client, _) = Client::connect(&server.url(), Codec::Json, info("reader")).await;
    let mut epoch = String::new();
    for n in 1..=5u64 {
        let ack = publish_reply(
            client
                .request(PublishRequest::new("chat:h", Value::from(n)))
                .await,
        );
        epoch = ack.epoch.unwrap();
    }
    let offsets = |reply: Result<Reply, ReplyError>| match reply {
        Ok(Reply::History(h)) => (
            h.offset,
            h.publications
                .iter()
                .map(|p| p.offset.unwrap())
                .collect::<Vec<_>>(),
        ),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        offsets(client.request(HistoryRequest::new("chat:h")).await),
        (5, vec![1, 2, 3, 4, 5])
    );
    let mut newest = HistoryRequest::new("chat:h");
    newest.limit = Some(2);
    newest.reverse = true;
    assert_eq!(offsets(client.request(newest).await), (5, vec![5, 4]));
    let mut since = HistoryRequest::new("chat:h");
    since.since = Some(StreamPosition::new(3, epoch));
    assert_eq!(offsets(client.request(since).await), (5, vec![4, 5]));
    let mut position_only = HistoryRequest::new("chat:h");
    position_only.limit = Some(0);
    assert_eq!(offsets(client.request(position_only).await), (5, vec![]));
}

#[tokio::test]
async fn rpc_calls_the_host_handler_with_the_caller() {
    let server = hub().await;
    for codec in Codec::ALL {
        let (mut client, _) = Client::connect(&server.url(), codec, info("caller")).await;
        let Ok(Reply::Rpc(reply)) = client
            .request(RpcRequest::new("echo", Value::from(7u64)))
            .await
        else {
            panic!()
        };
        assert_eq!(
            reply.data.into_json(),
            serde_json::json!({"caller": "caller", "data": 7})
        );
        let err = client
            .request(RpcRequest::new("fail", Value::Null))
            .await
            .unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str(), err.temporary),
            (404, "no such thing", false)
        );
        assert_eq!(
            error_code(client.request(RpcRequest::new("nope", Value::Null)).await),
            104
        );
    }
    let (mut client, _) = Client::connect(&server.url(), Codec::MsgPack, info("caller")).await;
    let Ok(Reply::Rpc(reply)) = client.request(RpcRequest::new("bytes", Value::Null)).await else {
        panic!()
    };
    assert_eq!(reply.data, Value::Bytes(vec![0, 1, 2, 255]));
}

#[tokio::test]
async fn a_slow_rpc_times_out_with_115() {
    let mut options = sacred_server::HubOptions::default();
    options.rpc_timeout = Duration::from_millis(50);
    let builder = Hub::builder().options(options).rpc("slow", |_, _| async {
        std::future::pending::<()>().await;
        Ok(Value::Null)
    });
    let server = Server::start(builder).await;
    let (mut client, _) = Client::connect(&server.url(), Codec::Json, info("impatient")).await;
    let err = client
        .request(RpcRequest::new("slow", Value::Null))
        .await
        .unwrap_err();
    assert_eq!((err.code, err.temporary), (115, true));
}

#[tokio::test]
async fn pong_reply_carries_server_time() {
    let server = hub().await;
    let (mut client, connected) = Client::connect(&server.url(), Codec::Json, info("clock")).await;
    let Ok(Reply::Pong(pong)) = client.request(PongRequest::new()).await else {
        panic!()
    };
    assert!(pong.time >= connected.time);
}

#[tokio::test]
async fn refresh_accepts_a_new_token_for_the_same_user_only() {
    let keys = [
        sacred_server::ApiKey::from_plain("sk_ada_1", "ada"),
        sacred_server::ApiKey::from_plain("sk_ada_2", "ada"),
        sacred_server::ApiKey::from_plain("sk_bob", "bob"),
    ];
    let builder = keys
        .into_iter()
        .fold(Hub::builder().allow_anonymous(false), |b, key| {
            b.api_key(key)
        });
    let server = Server::start(builder).await;
    let mut client = Client::open(&server.url(), Codec::Json).await;
    client
        .connect_with(ConnectRequest::new(Some("sk_ada_1".into()), info("ada")))
        .await
        .unwrap();
    assert!(matches!(
        client.request(RefreshRequest::new("sk_ada_2")).await,
        Ok(Reply::Refresh(_))
    ));
    assert_eq!(
        error_code(client.request(RefreshRequest::new("sk_bob")).await),
        101
    );
    assert_eq!(
        error_code(client.request(RefreshRequest::new("wrong")).await),
        101
    );
}

#[tokio::test]
async fn a_batch_is_answered_command_by_command() {
    let server = hub().await;
    let mut client = Client::open(&server.url(), Codec::MsgPack).await;
    let batch = [
        ClientMessage::new(1, ConnectRequest::new(None, info("batcher"))),
        ClientMessage::new(2, SubscribeRequest::new("chat:b")),
        ClientMessage::new(3, SubscribeRequest::new("chat:$bad")),
        ClientMessage::new(4, PublishRequest::new("chat:b", text("in batch"))),
    ];
    client.send(&batch).await;
    assert!(matches!(client.reply(1).await, Ok(Reply::Connect(_))));
    subscribe_reply(client.reply(2).await);
    assert_eq!(
        error_code(client.reply(3).await),
        107,
        "one bad command does not stop the batch"
    );
    assert_eq!(publish_reply(client.reply(4).await).offset, Some(1));
    assert_eq!(client.publication().await.data, text("in batch"));
}

#[tokio::test]
async fn a_traceparent_reaches_subscribers_and_history_and_a_malformed_one_is_refused() {
    // No OpenTelemetry layer in this process: the value passes through as sent.
    let server = hub().await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (mut watcher, _) = Client::connect(&server.url(), Codec::MsgPack, info("watcher")).await;
    subscribe_reply(watcher.request(SubscribeRequest::new("chat:t")).await);
    let (mut publisher, _) = Client::connect(&server.url(), Codec::Json, info("publisher")).await;
    let traced = PublishRequest::new("chat:t", text("hi")).with_traceparent(traceparent);
    publish_reply(publisher.request(traced).await);
    assert_eq!(
        watcher.publication().await.traceparent.as_deref(),
        Some(traceparent)
    );
    publish_reply(
        publisher
            .request(PublishRequest::new("chat:t", text("plain")))
            .await,
    );
    assert_eq!(watcher.publication().await.traceparent, None);
    match publisher.request(HistoryRequest::new("chat:t")).await {
        Ok(Reply::History(history)) => {
            let carried: Vec<Option<&str>> = history
                .publications
                .iter()
                .map(|p| p.traceparent.as_deref())
                .collect();
            assert_eq!(carried, [Some(traceparent), None]);
        }
        other => panic!("{other:?}"),
    }
    for bad in [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "not a trace",
    ] {
        let refused = publisher
            .request(PublishRequest::new("chat:t", text("x")).with_traceparent(bad))
            .await
            .unwrap_err();
        assert_eq!(refused.code, 107, "{bad}");
        assert!(
            refused.message.contains("traceparent"),
            "{}",
            refused.message
        );
    }
}
