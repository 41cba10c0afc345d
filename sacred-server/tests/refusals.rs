//! Every error reply and every close code the server can send, provoked on
//! purpose: bad commands, bad frames, bad credentials, a flood.

mod support;

use std::time::Duration;

use sacred_proto::*;
use sacred_server::{Access, ApiKey, Hub, HubOptions, NamespaceOptions};
use support::*;
use tokio_tungstenite::tungstenite::Message;

async fn hub() -> Server {
    let mut quiet = NamespaceOptions::default();
    quiet.history_size = 0;
    quiet.presence = false;
    let mut members = NamespaceOptions::default();
    members.subscribe = Access::Authenticated;
    members.publish = Access::Authenticated;
    let mut broadcast = NamespaceOptions::default();
    broadcast.publish = Access::Nobody;
    let mut options = unlimited();
    options.max_channels_per_connection = 2;
    let builder = Hub::builder()
        .options(options)
        .namespace("quiet", quiet)
        .namespace("members", members)
        .namespace("news", broadcast)
        .api_key(ApiKey::from_plain("sk_ada", "ada"));
    Server::start(builder).await
}

#[tokio::test]
async fn command_errors_carry_their_documented_codes() {
    let server = hub().await;
    let (mut client, _) = Client::connect(&server.url(), Codec::Json, info("tester")).await;
    assert_eq!(
        error_code(client.request(SubscribeRequest::new("nowhere:x")).await),
        102,
        "unknown namespace"
    );
    assert_eq!(
        error_code(client.request(SubscribeRequest::new("members:x")).await),
        101,
        "anonymous may not: it lacks credentials"
    );
    assert_eq!(
        error_code(
            client
                .request(PublishRequest::new("news:x", text("no")))
                .await
        ),
        103,
        "nobody may"
    );
    subscribe_reply(client.request(SubscribeRequest::new("a")).await);
    assert_eq!(
        error_code(client.request(SubscribeRequest::new("a")).await),
        105,
        "already subscribed"
    );
    subscribe_reply(client.request(SubscribeRequest::new("b")).await);
    assert_eq!(
        error_code(client.request(SubscribeRequest::new("c")).await),
        106,
        "channel limit"
    );
    assert_eq!(
        error_code(client.request(SubscribeRequest::new("chat:#x")).await),
        107,
        "reserved character"
    );
    assert_eq!(
        error_code(client.request(PresenceRequest::new("quiet:x")).await),
        108,
        "presence off"
    );
    assert_eq!(
        error_code(client.request(HistoryRequest::new("quiet:x")).await),
        108,
        "history off"
    );
    assert_eq!(
        error_code(client.request(ConnectRequest::default()).await),
        110,
        "already connected"
    );
    let mut lost = HistoryRequest::new("a");
    lost.since = Some(StreamPosition::new(3, "not-the-epoch"));
    assert_eq!(
        error_code(client.request(lost).await),
        112,
        "unrecoverable position"
    );
    assert_eq!(
        error_code(client.request(UnsubscribeRequest::new("z")).await),
        113,
        "not subscribed"
    );
    assert_eq!(
        error_code(
            client
                .request(SendRequest::new("nobody-here", text("?")))
                .await
        ),
        114,
        "no such client"
    );
    let err = client
        .request(RpcRequest::new("", Value::Null))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code, err.message.as_str()),
        (107, "method must not be empty")
    );
    // Still connected after all of that.
    assert!(matches!(
        client.request(PongRequest::new()).await,
        Ok(Reply::Pong(_))
    ));
}

#[tokio::test]
async fn an_authenticated_user_passes_where_anonymous_does_not() {
    let server = hub().await;
    let mut client = Client::open(&server.url(), Codec::MsgPack).await;
    client
        .connect_with(ConnectRequest::new(Some("sk_ada".into()), info("ada")))
        .await
        .unwrap();
    subscribe_reply(client.request(SubscribeRequest::new("members:x")).await);
    let presence = server.hub.presence("members:x").await;
    assert_eq!(presence[0].user.as_deref(), Some("ada"));
}

async fn closed_with(
    server: &Server,
    codec: Codec,
    frames: Vec<Message>,
) -> (Option<u16>, Option<Disconnect>) {
    let mut client = Client::open(&server.url(), codec).await;
    for frame in frames {
        client.send_raw(frame).await;
    }
    let code = client.closed().await;
    (code, client.disconnect)
}

/// A text frame with any bytes, valid UTF-8 or not.
fn raw_text(payload: &[u8]) -> Message {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    Message::Frame(Frame::message(
        payload.to_vec(),
        OpCode::Data(Data::Text),
        true,
    ))
}

fn connect_frame() -> Message {
    Message::text(r#"{"id":1,"connect":{}}"#)
}

#[tokio::test]
async fn bad_frames_close_with_their_code_after_a_disconnect_push() {
    let server = hub().await;
    let oversize = format!(
        r#"{{"id":2,"publish":{{"channel":"a","data":"{}"}}}}"#,
        "x".repeat(10 * 1024)
    );
    let cases: Vec<(&str, Codec, Vec<Message>, u16)> = vec![
        (
            "oversize",
            Codec::Json,
            vec![connect_frame(), Message::text(oversize)],
            3506,
        ),
        (
            "malformed",
            Codec::Json,
            vec![connect_frame(), Message::text("{not json")],
            3501,
        ),
        (
            "unknown command",
            Codec::Json,
            vec![connect_frame(), Message::text(r#"{"id":2,"frob":{}}"#)],
            3501,
        ),
        (
            "before connect",
            Codec::Json,
            vec![Message::text(r#"{"id":1,"subscribe":{"channel":"a"}}"#)],
            3501,
        ),
        (
            "wrong frame type",
            Codec::Json,
            vec![Message::binary(vec![0x80])],
            3501,
        ),
        (
            "msgpack length lie",
            Codec::MsgPack,
            vec![Message::binary(vec![0xdf, 0xff, 0xff, 0xff, 0xff])],
            3501,
        ),
        (
            "too deep",
            Codec::Json,
            vec![Message::text("[".repeat(40))],
            3501,
        ),
        (
            "id zero",
            Codec::Json,
            vec![Message::text(r#"{"id":0,"connect":{}}"#)],
            3501,
        ),
        (
            // The WebSocket layer refuses this before Sacred sees a frame.
            "invalid UTF-8 in a text frame",
            Codec::Json,
            vec![
                connect_frame(),
                raw_text(b"{\"id\":2,\"pong\":{\"x\":\"\xff\"}}"),
            ],
            3501,
        ),
        (
            // Above the transport's cap (64 KiB here): refused by the WebSocket layer too.
            "far beyond the frame limit",
            Codec::Json,
            vec![connect_frame(), raw_text(&vec![b' '; 200 * 1024])],
            3506,
        ),
        (
            "bin where a string belongs",
            Codec::MsgPack,
            vec![Message::binary(vec![
                0x82, 0xa2, b'i', b'd', 0x01, 0xa7, b'c', b'o', b'n', b'n', b'e', b'c', b't', 0x81,
                0xa5, b't', b'o', b'k', b'e', b'n', 0xc4, 0x01, b't',
            ])],
            3501,
        ),
    ];
    for (name, codec, frames, expected) in cases {
        let (code, disconnect) = closed_with(&server, codec, frames).await;
        assert_eq!(code, Some(expected), "{name}");
        let disconnect = disconnect.unwrap_or_else(|| panic!("{name}: no disconnect push"));
        assert_eq!(
            (disconnect.code, disconnect.reconnect),
            (expected, false),
            "{name}"
        );
    }
    assert_eq!(server.hub.connections(), 0);
}

#[tokio::test]
async fn credentials_are_checked_at_connect() {
    let open = hub().await;
    let closed = Server::start(Hub::builder().allow_anonymous(false)).await;
    let mut bad_key = Client::open(&open.url(), Codec::Json).await;
    bad_key
        .send(&[ClientMessage::new(
            1,
            ConnectRequest::new(Some("sk_wrong".into()), info("x")),
        )])
        .await;
    assert_eq!(bad_key.closed().await, Some(3500), "invalid token");
    let mut anonymous = Client::open(&closed.url(), Codec::Json).await;
    anonymous
        .send(&[ClientMessage::new(1, ConnectRequest::default())])
        .await;
    assert_eq!(anonymous.closed().await, Some(3507), "anonymous refused");
}

#[tokio::test]
async fn a_socket_that_never_connects_is_closed_as_stale() {
    let mut options = HubOptions::default();
    options.connect_timeout = Duration::from_millis(100);
    let server = Server::start(Hub::builder().options(options)).await;
    let mut silent = Client::open(&server.url(), Codec::Json).await;
    assert_eq!(silent.closed().await, Some(3502));
}

#[tokio::test]
async fn a_flood_is_served_in_full_and_in_order() {
    // With the command rate off: every accepted publish is acked and
    // delivered, none lost, none reordered, and the server stays up.
    let server = hub().await;
    let (mut subscriber, _) = Client::connect(&server.url(), Codec::MsgPack, info("sub")).await;
    subscribe_reply(subscriber.request(SubscribeRequest::new("flood")).await);
    let (mut flooder, _) = Client::connect(&server.url(), Codec::MsgPack, info("flood")).await;
    const BATCHES: u32 = 50;
    for batch in 0..BATCHES {
        let messages: Vec<_> = (0..100)
            .map(|i| {
                ClientMessage::new(
                    1000 + batch * 100 + i,
                    PublishRequest::new("flood", Value::from(u64::from(batch * 100 + i))),
                )
            })
            .collect();
        flooder.send(&messages).await;
    }
    for id in 1000..1000 + BATCHES * 100 {
        publish_reply(flooder.reply(id).await);
    }
    for n in 0..u64::from(BATCHES * 100) {
        let publication = subscriber.publication().await;
        assert_eq!(publication.data, Value::from(n));
    }
}

/// A connection past its command rate: each command over the burst is
/// answered with 111, and after ten refusals in a row it is closed with
/// 3007; another connection is not affected. Both codecs.
#[tokio::test]
async fn a_flood_past_the_command_rate_gets_111_then_3007() {
    let mut options = HubOptions::default();
    options.messages_per_minute = 1;
    options.message_burst = 5;
    let server = Server::start(Hub::builder().options(options)).await;
    for codec in [Codec::Json, Codec::MsgPack] {
        let (mut flooder, _) = Client::connect(&server.url(), codec, info("flooder")).await;
        let first = flooder.next_id();
        let flood: Vec<ClientMessage> = (0..20)
            .map(|n| ClientMessage::new(first + n, PublishRequest::new("room", Value::from(n))))
            .collect();
        flooder.send(&flood).await;
        for id in first..first + 5 {
            assert!(
                flooder.reply(id).await.is_ok(),
                "{codec:?}: within the burst"
            );
        }
        for id in first + 5..first + 15 {
            assert_eq!(
                error_code(flooder.reply(id).await),
                111,
                "{codec:?}: over the rate"
            );
        }
        assert_eq!(
            flooder.closed().await,
            Some(3007),
            "{codec:?}: kept flooding"
        );
        let (mut calm, _) = Client::connect(&server.url(), codec, info("calm")).await;
        publish_reply(
            calm.request(PublishRequest::new("room", Value::from(1)))
                .await,
        );
    }
}
