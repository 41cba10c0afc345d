//! The test vectors of `docs/protocol-vectors.json`.
//!
//! The file must be exactly what the cases below produce: after a deliberate
//! wire change, rewrite it with `SACRED_BLESS=1 cargo test -p sacred-proto --test vectors`.
//! Independently of the cases, every vector in the file must decode as it says:
//! valid ones to the same messages in both codecs and back to the same bytes,
//! invalid ones to their documented code.

use std::collections::BTreeMap;

use sacred_proto::*;
use serde_json::{Value as Json, json};

/// The W3C Trace Context specification's example `traceparent`.
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol-vectors.json");

enum Messages {
    Client(Vec<ClientMessage>),
    Server(Vec<ServerMessage>),
}

struct Valid {
    name: &'static str,
    description: &'static str,
    messages: Messages,
}

enum Expect {
    Disconnect(DisconnectCode),
    Reply(ErrorCode),
}

struct Invalid {
    name: &'static str,
    description: &'static str,
    server: bool,
    json: Option<Vec<u8>>,
    msgpack: Option<Vec<u8>>,
    expect: Expect,
}

fn client(id: u32, command: impl Into<Command>) -> Messages {
    Messages::Client(vec![ClientMessage::new(id, command)])
}

fn server(message: ServerMessage) -> Messages {
    Messages::Server(vec![message])
}

fn data(json: Json) -> Value {
    Value::from(json)
}

fn peer(id: &str, user: Option<&str>, name: &str, kind: &str, runtime: &str) -> Peer {
    Peer::new(
        id,
        user.map(str::to_owned),
        ClientInfo::new(name, kind, runtime, ""),
    )
}

fn publication(offset: u64, text: &str) -> Publication {
    let mut publication = Publication::new(
        "chat:lobby",
        data(json!({"text": text})),
        1_763_800_000_000 + offset,
    );
    publication.offset = Some(offset);
    publication.epoch = Some("x7Kp".into());
    publication.from = Some(peer(
        "c-2f9a",
        Some("ada"),
        "Ada's laptop",
        "app",
        "browser",
    ));
    publication
}

fn valid() -> Vec<Valid> {
    let mut connect = ConnectRequest::new(
        Some("sk_live_0123456789abcdef".into()),
        ClientInfo::new("support-bot", "agent", "python", "sacred-client/0.1.0"),
    );
    connect.data = data(json!({"locale": "en"}));
    let mut recover = SubscribeRequest::new("chat:lobby");
    recover.recover = Some(StreamPosition::new(41, "x7Kp"));
    connect.subs = vec![recover.clone()];

    let mut subscribe_full = recover.clone();
    subscribe_full.join_leave = true;

    let mut history = HistoryRequest::new("chat:lobby");
    history.since = Some(StreamPosition::new(40, "x7Kp"));
    history.limit = Some(10);
    history.reverse = true;

    let mut connect_reply = ConnectReply::new("c-8d1e", 5_000, 10_000, 1_763_800_000_000);
    connect_reply.version = "sacred-server/0.1.0".into();
    connect_reply.expires = Some(1_763_803_600_000);
    connect_reply.limits = Some(Limits::default());
    let mut recovered = SubscribeReply::default();
    recovered.offset = Some(43);
    recovered.epoch = Some("x7Kp".into());
    recovered.recovered = true;
    recovered.publications = vec![publication(42, "hello"), publication(43, "anyone here?")];
    connect_reply.subs = BTreeMap::from([("chat:lobby".to_owned(), recovered.clone())]);

    let mut lost = SubscribeReply::default();
    lost.offset = Some(7);
    lost.epoch = Some("Q2zt".into());

    let mut ack = PublishReply::default();
    ack.offset = Some(44);
    ack.epoch = Some("x7Kp".into());

    let mut presence = PresenceReply::default();
    presence.clients = vec![
        peer("c-2f9a", Some("ada"), "Ada's laptop", "app", "browser"),
        peer("c-8d1e", None, "support-bot", "agent", "python"),
    ];

    let mut history_reply = HistoryReply::default();
    history_reply.offset = 43;
    history_reply.epoch = "x7Kp".into();
    history_reply.publications = vec![publication(43, "anyone here?"), publication(42, "hello")];

    let search = SearchRequest::new("ops:deploys", "rollback node*")
        .limit(2)
        .skip(2);
    let mut search_reply = SearchReply::default();
    search_reply.total = 5;
    search_reply.publications = vec![
        publication(31, "rollback on node 3"),
        publication(17, "nodes 1-4: rollback done"),
    ];
    for found in &mut search_reply.publications {
        found.channel = "ops:deploys".into();
    }

    let mut refreshed = RefreshReply::default();
    refreshed.expires = Some(1_763_807_200_000);

    let mut traced_publication = publication(44, "hello");
    traced_publication.traceparent =
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-53995c3f42cd8ad8-01".into());
    let mut anonymous_publication = Publication::new(
        "news",
        data(json!(["a", 1, 2.5, null, true])),
        1_763_800_000_000,
    );
    anonymous_publication.from = None;

    let bot = peer("c-8d1e", None, "support-bot", "agent", "python");

    vec![
        Valid {
            name: "connect-anonymous",
            description: "The smallest connect: no token, no client info.",
            messages: client(1, ConnectRequest::default()),
        },
        Valid {
            name: "connect-full",
            description: "Connect with a token, client info, connect data and a subscription to recover.",
            messages: client(1, connect),
        },
        Valid {
            name: "subscribe",
            description: "A plain subscription.",
            messages: client(2, SubscribeRequest::new("chat:lobby")),
        },
        Valid {
            name: "subscribe-recover",
            description: "Subscribe and recover everything after offset 41 of epoch x7Kp, with join/leave pushes.",
            messages: client(3, subscribe_full),
        },
        Valid {
            name: "unsubscribe",
            description: "Leave a channel.",
            messages: client(4, UnsubscribeRequest::new("chat:lobby")),
        },
        Valid {
            name: "publish",
            description: "Publish a JSON object.",
            messages: client(
                5,
                PublishRequest::new("chat:lobby", data(json!({"text": "hello"}))),
            ),
        },
        Valid {
            name: "publish-traced",
            description: "Publish with the publisher's W3C traceparent, which the publications carry on.",
            messages: client(
                5,
                PublishRequest::new("chat:lobby", data(json!({"text": "hello"})))
                    .with_traceparent(TRACEPARENT),
            ),
        },
        Valid {
            name: "publish-bytes",
            description: "Publish raw bytes: MessagePack bin, a base64 string in JSON.",
            messages: client(
                6,
                PublishRequest::new("audio:room-1", Value::Bytes(vec![0x00, 0x01, 0xfe, 0xff])),
            ),
        },
        Valid {
            name: "send",
            description: "Send data to one client by id.",
            messages: client(7, SendRequest::new("c-2f9a", data(json!({"ping": 1})))),
        },
        Valid {
            name: "presence",
            description: "Ask who is in a channel.",
            messages: client(8, PresenceRequest::new("chat:lobby")),
        },
        Valid {
            name: "history",
            description: "The 10 newest publications after offset 40, newest first.",
            messages: client(9, history),
        },
        Valid {
            name: "rpc",
            description: "Call a host handler.",
            messages: client(
                10,
                RpcRequest::new("weather.get", data(json!({"city": "Lyon"}))),
            ),
        },
        Valid {
            name: "pong",
            description: "Answer a ping.",
            messages: client(11, PongRequest::new()),
        },
        Valid {
            name: "refresh",
            description: "Replace the token.",
            messages: client(12, RefreshRequest::new("sk_live_fedcba9876543210")),
        },
        Valid {
            name: "search",
            description: "The second page of two: publications with `rollback` and a word starting with `node`.",
            messages: client(13, search),
        },
        Valid {
            name: "client-batch",
            description: "A batch: resubscribe and publish in one frame.",
            messages: Messages::Client(vec![
                ClientMessage::new(13, recover),
                ClientMessage::new(
                    14,
                    PublishRequest::new("chat:lobby", data(json!({"text": "back"}))),
                ),
            ]),
        },
        Valid {
            name: "connect-reply",
            description: "Connected, with heartbeat terms and a recovered subscription.",
            messages: server(ServerMessage::reply(1, connect_reply)),
        },
        Valid {
            name: "subscribe-reply-recovered",
            description: "Recovery succeeded: the two missed publications, in order.",
            messages: server(ServerMessage::reply(3, recovered)),
        },
        Valid {
            name: "subscribe-reply-not-recovered",
            description: "Recovery failed (the epoch changed): no publications, the app reloads.",
            messages: server(ServerMessage::reply(3, lost)),
        },
        Valid {
            name: "unsubscribe-reply",
            description: "Unsubscribed.",
            messages: server(ServerMessage::reply(4, UnsubscribeReply::default())),
        },
        Valid {
            name: "publish-reply",
            description: "The publish ack with the offset the publication got.",
            messages: server(ServerMessage::reply(5, ack)),
        },
        Valid {
            name: "send-reply",
            description: "Sent.",
            messages: server(ServerMessage::reply(7, SendReply::default())),
        },
        Valid {
            name: "presence-reply",
            description: "Two clients in the channel, one anonymous.",
            messages: server(ServerMessage::reply(8, presence)),
        },
        Valid {
            name: "history-reply",
            description: "History, newest first.",
            messages: server(ServerMessage::reply(9, history_reply)),
        },
        Valid {
            name: "rpc-reply",
            description: "The handler's result.",
            messages: server(ServerMessage::reply(
                10,
                RpcReply::new(data(json!({"celsius": 21.5}))),
            )),
        },
        Valid {
            name: "pong-reply",
            description: "Server time for the clock estimate.",
            messages: server(ServerMessage::reply(11, PongReply::new(1_763_800_005_000))),
        },
        Valid {
            name: "refresh-reply",
            description: "The new token's expiry.",
            messages: server(ServerMessage::reply(12, refreshed)),
        },
        Valid {
            name: "search-reply",
            description: "Five match in all; the third and fourth best.",
            messages: server(ServerMessage::reply(13, search_reply)),
        },
        Valid {
            name: "error-reply",
            description: "A command refused by the server.",
            messages: server(ServerMessage::error(
                2,
                ReplyError::new(ErrorCode::PERMISSION_DENIED, "permission denied"),
            )),
        },
        Valid {
            name: "error-reply-application",
            description: "An RPC handler's own error code.",
            messages: server(ServerMessage::error(
                10,
                ReplyError::new(ErrorCode::application(404).unwrap(), "no such city"),
            )),
        },
        Valid {
            name: "push-publication",
            description: "A live publication.",
            messages: server(ServerMessage::push(publication(44, "hi all"))),
        },
        Valid {
            name: "push-publication-traced",
            description: "A publication continuing its publisher's trace: the same trace id, the parent id of the server's span.",
            messages: server(ServerMessage::push(traced_publication)),
        },
        Valid {
            name: "push-publication-plain",
            description: "A publication in a channel without history, from host code.",
            messages: server(ServerMessage::push(anonymous_publication)),
        },
        Valid {
            name: "push-join",
            description: "A client joined.",
            messages: server(ServerMessage::push(Join::new("chat:lobby", bot.clone()))),
        },
        Valid {
            name: "push-leave",
            description: "A client left.",
            messages: server(ServerMessage::push(Leave::new("chat:lobby", bot.clone()))),
        },
        Valid {
            name: "push-message",
            description: "A direct message from another client.",
            messages: server(ServerMessage::push(DirectMessage::new(
                Some(bot.clone()),
                data(json!({"ping": 1})),
            ))),
        },
        Valid {
            name: "push-unsubscribed",
            description: "The server ended a subscription.",
            messages: server(ServerMessage::push(Unsubscribed::new(
                "chat:lobby",
                ErrorCode::PERMISSION_DENIED,
                "permission revoked",
            ))),
        },
        Valid {
            name: "push-disconnect",
            description: "Sent just before closing with code 3001.",
            messages: server(ServerMessage::push(Disconnect::from(
                DisconnectCode::SHUTDOWN,
            ))),
        },
        Valid {
            name: "push-migrate",
            description: "Move to another node before the deadline.",
            messages: server(ServerMessage::push(Migrate::new(
                Some("wss://rt-2.example.com/ws".into()),
                1_763_800_015_000,
            ))),
        },
        Valid {
            name: "push-ping",
            description: "The heartbeat.",
            messages: server(ServerMessage::push(Ping::new(1_763_800_005_000))),
        },
        Valid {
            name: "server-batch",
            description: "A batch: a reply and a push in one frame.",
            messages: Messages::Server(vec![
                ServerMessage::reply(14, PublishReply::default()),
                ServerMessage::push(Ping::new(1_763_800_005_000)),
            ]),
        },
        Valid {
            name: "server-batch-pushes",
            description: "What was queued for one connection, sent together: two publications and a join.",
            messages: Messages::Server(vec![
                ServerMessage::push(publication(44, "hi all")),
                ServerMessage::push(publication(45, "anyone?")),
                ServerMessage::push(Join::new("chat:lobby", bot.clone())),
            ]),
        },
    ]
}

/// The JSON and MessagePack forms of an invalid frame; either may be absent.
type Forms = (Option<Vec<u8>>, Option<Vec<u8>>);

/// A JSON text whose MessagePack twin is derived by transcoding it.
fn both(json: &str) -> Forms {
    let value: Json = serde_json::from_str(json).expect("vector JSON parses");
    (
        Some(json.as_bytes().to_vec()),
        Some(rmp_serde::to_vec_named(&value).expect("transcodes")),
    )
}

/// `{"id":1,"publish":{"channel":"c","data":<data>}}` in MessagePack.
fn publish_msgpack(data: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x82, 0xa2, b'i', b'd', 0x01, 0xa7];
    frame.extend(b"publish");
    frame.extend([0x82, 0xa7]);
    frame.extend(b"channel");
    frame.extend([0xa1, b'c', 0xa4]);
    frame.extend(b"data");
    frame.extend(data);
    frame
}

fn json_only(json: &[u8]) -> Forms {
    (Some(json.to_vec()), None)
}

fn msgpack_only(bytes: &[u8]) -> Forms {
    (None, Some(bytes.to_vec()))
}

fn invalid() -> Vec<Invalid> {
    use Expect::{Disconnect as Close, Reply as Error};
    let bad = DisconnectCode::BAD_REQUEST;
    let deep = format!(
        r#"{{"id":1,"publish":{{"channel":"c","data":{}1{}}}}}"#,
        "[".repeat(31),
        "]".repeat(31)
    );
    let long_search = format!(
        r#"{{"id":1,"search":{{"channel":"ops","text":"{}"}}}}"#,
        "a".repeat(1025)
    );
    let long_method = format!(r#"{{"id":1,"rpc":{{"method":"{}"}}}}"#, "m".repeat(129));
    let long_name = format!(
        r#"{{"id":1,"connect":{{"client":{{"name":"{}"}}}}}}"#,
        "n".repeat(65)
    );
    let cases: Vec<(&str, &str, bool, Forms, Expect)> = vec![
        (
            "id-zero",
            "Ids run from 1; 0 is refused.",
            false,
            both(r#"{"id":0,"pong":{}}"#),
            Close(bad),
        ),
        (
            "id-missing",
            "A command without an id.",
            false,
            both(r#"{"pong":{}}"#),
            Close(bad),
        ),
        (
            "id-wrong-type",
            "The id is a string.",
            false,
            both(r#"{"id":"1","pong":{}}"#),
            Close(bad),
        ),
        (
            "id-too-large",
            "The id does not fit 32 bits.",
            false,
            both(r#"{"id":4294967296,"pong":{}}"#),
            Close(bad),
        ),
        (
            "command-missing",
            "An id and no command.",
            false,
            both(r#"{"id":1}"#),
            Close(bad),
        ),
        (
            "command-unknown",
            "An unknown command key.",
            false,
            both(r#"{"id":1,"frobnicate":{}}"#),
            Close(bad),
        ),
        (
            "command-two",
            "Two commands in one message.",
            false,
            both(r#"{"id":1,"pong":{},"refresh":{"token":"t"}}"#),
            Close(bad),
        ),
        (
            "command-push-key",
            "A push key sent by a client.",
            false,
            both(r#"{"id":1,"publication":{"channel":"c","time":1}}"#),
            Close(bad),
        ),
        (
            "field-missing",
            "subscribe without its channel.",
            false,
            both(r#"{"id":1,"subscribe":{}}"#),
            Close(bad),
        ),
        (
            "field-wrong-type",
            "A channel that is a number.",
            false,
            both(r#"{"id":1,"subscribe":{"channel":7}}"#),
            Close(bad),
        ),
        (
            "body-not-a-map",
            "A command body that is a list.",
            false,
            both(r#"{"id":1,"pong":[]}"#),
            Close(bad),
        ),
        (
            "top-level-scalar",
            "A frame that is a string.",
            false,
            both(r#""hello""#),
            Close(bad),
        ),
        (
            "batch-empty",
            "An empty batch.",
            false,
            both("[]"),
            Close(bad),
        ),
        (
            "batch-of-scalars",
            "A batch whose element is not a message.",
            false,
            both("[1]"),
            Close(bad),
        ),
        (
            "too-deep",
            "Nesting of 33 levels (the limit is 32).",
            false,
            both(&deep),
            Close(bad),
        ),
        (
            "json-truncated",
            "A frame cut short.",
            false,
            json_only(br#"{"id":1,"pong":{}"#),
            Close(bad),
        ),
        (
            "json-trailing",
            "Something after the value.",
            false,
            json_only(br#"{"id":1,"pong":{}} x"#),
            Close(bad),
        ),
        (
            "json-invalid-utf8",
            "Invalid UTF-8 inside a string.",
            false,
            json_only(b"{\"id\":1,\"refresh\":{\"token\":\"\xff\"}}"),
            Close(bad),
        ),
        (
            "json-syntax",
            "Not JSON.",
            false,
            json_only(b"{id:1}"),
            Close(bad),
        ),
        (
            "msgpack-truncated",
            "A map that declares two entries and holds one.",
            false,
            msgpack_only(&[0x82, 0xa2, b'i', b'd', 0x01]),
            Close(bad),
        ),
        (
            "msgpack-huge-length",
            "A map32 declaring 4294967295 entries in a 6-byte frame.",
            false,
            msgpack_only(&[0xdf, 0xff, 0xff, 0xff, 0xff, 0x00]),
            Close(bad),
        ),
        (
            "msgpack-huge-string",
            "A str32 declaring 4 GiB.",
            false,
            msgpack_only(&[0x81, 0xdb, 0xff, 0xff, 0xff, 0xff, b'i']),
            Close(bad),
        ),
        (
            "msgpack-ext",
            "An extension type.",
            false,
            msgpack_only(&[
                0x82, 0xa2, b'i', b'd', 0x01, 0xa4, b'p', b'o', b'n', b'g', 0xd4, 0x01, 0x00,
            ]),
            Close(bad),
        ),
        (
            "msgpack-reserved",
            "The reserved marker 0xc1.",
            false,
            msgpack_only(&[0xc1]),
            Close(bad),
        ),
        (
            "msgpack-invalid-utf8",
            "A str holding invalid UTF-8.",
            false,
            msgpack_only(&[0x82, 0xa2, b'i', b'd', 0x01, 0xa1, 0xff, 0x80]),
            Close(bad),
        ),
        (
            "msgpack-int-key",
            "A map key that is not a string.",
            false,
            msgpack_only(&[0x82, 0xa2, b'i', b'd', 0x01, 0x01, 0x80]),
            Close(bad),
        ),
        (
            "msgpack-bin-key",
            "A message key sent as bin instead of str: keys are strings.",
            false,
            msgpack_only(&[
                0x82, 0xa2, b'i', b'd', 0x01, 0xc4, 0x04, b'p', b'o', b'n', b'g', 0x80,
            ]),
            Close(bad),
        ),
        (
            "msgpack-bin-string",
            "A channel sent as bin instead of str: protocol strings are str.",
            false,
            msgpack_only(&[
                0x82, 0xa2, b'i', b'd', 0x01, 0xa9, b's', b'u', b'b', b's', b'c', b'r', b'i', b'b',
                b'e', 0x81, 0xa7, b'c', b'h', b'a', b'n', b'n', b'e', b'l', 0xc4, 0x01, b'c',
            ]),
            Close(bad),
        ),
        (
            "msgpack-bin-payload-key",
            "A payload object whose key is bin: payload objects have string keys too.",
            false,
            msgpack_only(&publish_msgpack(&[0x81, 0xc4, 0x01, b'a', 0x01])),
            Close(bad),
        ),
        (
            "msgpack-nan",
            "A payload float that is NaN: numbers are finite.",
            false,
            msgpack_only(&publish_msgpack(&[0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0])),
            Close(bad),
        ),
        (
            "msgpack-infinity",
            "A payload float32 that is +infinity.",
            false,
            msgpack_only(&publish_msgpack(&[0xca, 0x7f, 0x80, 0, 0])),
            Close(bad),
        ),
        (
            "msgpack-float-id",
            "An id that is the float 1.0: integer fields take integers only.",
            false,
            msgpack_only(&[
                0x82, 0xa2, b'i', b'd', 0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0xa4, b'p', b'o', b'n',
                b'g', 0x80,
            ]),
            Close(bad),
        ),
        (
            "json-float-id",
            "An id written 1.0: integer fields take integers only, not numbers with a fraction.",
            false,
            json_only(br#"{"id":1.0,"pong":{}}"#),
            Close(bad),
        ),
        (
            "json-exponent-id",
            "An id written 1e0: an exponent makes a number a float.",
            false,
            json_only(br#"{"id":1e0,"pong":{}}"#),
            Close(bad),
        ),
        (
            "json-integer-beyond-64-bits",
            "A payload integer of 2^64: integers must fit 64 bits (signed or unsigned).",
            false,
            json_only(br#"{"id":1,"publish":{"channel":"c","data":18446744073709551616}}"#),
            Close(bad),
        ),
        (
            "msgpack-trailing",
            "Bytes after the value.",
            false,
            msgpack_only(&[
                0x82, 0xa2, b'i', b'd', 0x01, 0xa4, b'p', b'o', b'n', b'g', 0x80, 0xc0,
            ]),
            Close(bad),
        ),
        (
            "reply-without-id",
            "A server reply that lost its id.",
            true,
            both(r#"{"publish":{}}"#),
            Close(bad),
        ),
        (
            "push-with-id",
            "A server push that carries an id.",
            true,
            both(r#"{"id":3,"ping":{"time":1}}"#),
            Close(bad),
        ),
        (
            "channel-reserved",
            "A well-formed command whose channel uses a reserved character.",
            false,
            both(r#"{"id":1,"subscribe":{"channel":"chat:$secret"}}"#),
            Error(ErrorCode::BAD_REQUEST),
        ),
        (
            "channel-empty-namespace",
            "A channel starting with ':'.",
            false,
            both(r#"{"id":1,"publish":{"channel":":x","data":1}}"#),
            Error(ErrorCode::BAD_REQUEST),
        ),
        (
            "traceparent-malformed",
            "A publish whose traceparent is not W3C Trace Context (an all-zero trace id).",
            false,
            both(
                r#"{"id":1,"publish":{"channel":"c","data":1,"traceparent":"00-00000000000000000000000000000000-00f067aa0ba902b7-01"}}"#,
            ),
            Error(ErrorCode::BAD_REQUEST),
        ),
        (
            "traceparent-not-text",
            "A traceparent that is a number, not a string.",
            false,
            both(r#"{"id":1,"publish":{"channel":"c","traceparent":7}}"#),
            Close(bad),
        ),
        (
            "channel-non-ascii",
            "Channels are ASCII.",
            false,
            both(r#"{"id":1,"subscribe":{"channel":"café"}}"#),
            Error(ErrorCode::BAD_REQUEST),
        ),
        (
            "method-too-long",
            "An RPC method of 129 bytes (the limit is 128).",
            false,
            both(&long_method),
            Error(ErrorCode::BAD_REQUEST),
        ),
        (
            "client-name-too-long",
            "A client name of 65 bytes (the limit is 64).",
            false,
            both(&long_name),
            Error(ErrorCode::BAD_REQUEST),
        ),
        (
            "search-text-too-long",
            "A search text of 1025 bytes (the limit is 1024).",
            false,
            both(&long_search),
            Error(ErrorCode::BAD_REQUEST),
        ),
        (
            "send-empty-recipient",
            "send with an empty client id.",
            false,
            both(r#"{"id":1,"send":{"to":"","data":1}}"#),
            Error(ErrorCode::BAD_REQUEST),
        ),
    ];
    cases
        .into_iter()
        .map(
            |(name, description, server, (json, msgpack), expect)| Invalid {
                name,
                description,
                server,
                json,
                msgpack,
                expect,
            },
        )
        .collect()
}

fn encode(messages: &Messages, codec: Codec) -> Vec<u8> {
    match messages {
        Messages::Client(m) if m.len() == 1 => codec.encode(&m[0]),
        Messages::Client(m) => codec.encode_batch(m),
        Messages::Server(m) if m.len() == 1 => codec.encode(&m[0]),
        Messages::Server(m) => codec.encode_batch(m),
    }
    .expect("vectors encode")
}

#[derive(serde::Serialize)]
struct ValidOut {
    name: &'static str,
    description: &'static str,
    direction: &'static str,
    json: String,
    msgpack: String,
}

#[derive(serde::Serialize)]
struct InvalidOut {
    name: &'static str,
    description: &'static str,
    direction: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    json: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    json_hex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    msgpack: Option<String>,
    error: BTreeMap<&'static str, u32>,
}

#[derive(serde::Serialize)]
struct FileOut {
    protocol: &'static str,
    about: &'static str,
    limits: BTreeMap<&'static str, usize>,
    valid: Vec<ValidOut>,
    invalid: Vec<InvalidOut>,
}

fn render() -> String {
    let limits = Limits::default();
    let direction = |server: bool| if server { "server" } else { "client" };
    let valid = valid()
        .iter()
        .map(|case| ValidOut {
            name: case.name,
            description: case.description,
            direction: direction(matches!(case.messages, Messages::Server(_))),
            json: String::from_utf8(encode(&case.messages, Codec::Json)).unwrap(),
            msgpack: hex::encode(encode(&case.messages, Codec::MsgPack)),
        })
        .collect();
    let invalid = invalid()
        .iter()
        .map(|case| {
            let text = case
                .json
                .as_deref()
                .map(|j| std::str::from_utf8(j).map_err(|_| hex::encode(j)));
            InvalidOut {
                name: case.name,
                description: case.description,
                direction: direction(case.server),
                json: text.clone().and_then(|t| t.ok().map(str::to_owned)),
                json_hex: text.and_then(|t| t.err()),
                msgpack: case.msgpack.as_ref().map(hex::encode),
                error: match case.expect {
                    Expect::Disconnect(code) => {
                        BTreeMap::from([("disconnect", u32::from(code.as_u16()))])
                    }
                    Expect::Reply(code) => BTreeMap::from([("reply", code.as_u32())]),
                },
            }
        })
        .collect();
    let file = FileOut {
        protocol: "sacred.v1",
        about: "Test vectors for docs/protocol.md. Each valid vector is one frame in both formats: `json` is the text frame, `msgpack` the binary frame in hex; both decode to the same messages (bytes excepted: MessagePack bin is a base64 string in JSON). Each invalid vector must be refused: `disconnect` is the close code for a frame that cannot be decoded, `reply` the error code for a well-formed command whose content is invalid. Limits are the defaults listed here.",
        limits: BTreeMap::from([
            ("max_frame_bytes", limits.max_frame_bytes),
            ("max_batch", limits.max_batch),
            ("max_depth", limits.max_depth),
            ("max_channel_bytes", limits.max_channel_bytes),
            ("max_method_bytes", limits.max_method_bytes),
            ("max_client_info_bytes", limits.max_client_info_bytes),
        ]),
        valid,
        invalid,
    };
    serde_json::to_string_pretty(&file).unwrap() + "\n"
}

#[test]
fn file_is_what_the_cases_produce() {
    let rendered = render();
    if std::env::var_os("SACRED_BLESS").is_some() {
        std::fs::write(FILE, &rendered).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(FILE).unwrap_or_default();
    assert!(
        on_disk == rendered,
        "docs/protocol-vectors.json is stale; after a deliberate wire change run \
         SACRED_BLESS=1 cargo test -p sacred-proto --test vectors"
    );
}

fn load() -> Json {
    // While blessing, another test may be rewriting the file: read what it writes.
    let text = if std::env::var_os("SACRED_BLESS").is_some() {
        render()
    } else {
        std::fs::read_to_string(FILE).expect("vector file exists")
    };
    serde_json::from_str(&text).expect("vector file is JSON")
}

fn decode_as<M: Message + PartialEq + std::fmt::Debug>(
    json: &[u8],
    msgpack: &[u8],
    name: &str,
) -> (Vec<M>, Vec<M>) {
    let limits = Limits::default();
    let a: Vec<M> = Codec::Json
        .decode(json, &limits)
        .unwrap_or_else(|e| panic!("{name}: json: {e}"));
    let b: Vec<M> = Codec::MsgPack
        .decode(msgpack, &limits)
        .unwrap_or_else(|e| panic!("{name}: msgpack: {e}"));
    let reencode = |codec: Codec, m: &[M]| {
        if m.len() == 1 {
            codec.encode(&m[0])
        } else {
            codec.encode_batch(m)
        }
    };
    assert_eq!(
        reencode(Codec::Json, &a).unwrap(),
        json,
        "{name}: json re-encodes to the same bytes"
    );
    assert_eq!(
        reencode(Codec::MsgPack, &b).unwrap(),
        msgpack,
        "{name}: msgpack re-encodes to the same bytes"
    );
    (a, b)
}

#[test]
fn valid_vectors_decode_alike_in_both_codecs() {
    let file = load();
    let cases = valid();
    let vectors = file["valid"].as_array().unwrap();
    assert_eq!(vectors.len(), cases.len());
    for (vector, case) in vectors.iter().zip(&cases) {
        let name = vector["name"].as_str().unwrap();
        let json = vector["json"].as_str().unwrap().as_bytes();
        let msgpack = hex::decode(vector["msgpack"].as_str().unwrap()).unwrap();
        let has_bytes = name.ends_with("bytes");
        match &case.messages {
            Messages::Client(expected) => {
                let (a, b) = decode_as::<ClientMessage>(json, &msgpack, name);
                assert_eq!(&b, expected, "{name}");
                if !has_bytes {
                    assert_eq!(a, b, "{name}");
                }
            }
            Messages::Server(expected) => {
                let (a, b) = decode_as::<ServerMessage>(json, &msgpack, name);
                assert_eq!(&b, expected, "{name}");
                assert_eq!(a, b, "{name}");
            }
        }
    }
}

/// What refusing `frame` looks like: a close code if it does not decode, else
/// (client frames only) the error code validation answers with.
fn refusal(frame: &[u8], codec: Codec, server: bool) -> Json {
    let limits = Limits::default();
    if server {
        let err = codec
            .decode::<ServerMessage>(frame, &limits)
            .expect_err("a valid vector in the invalid list");
        return json!({"disconnect": err.disconnect_code().as_u16()});
    }
    match codec.decode::<ClientMessage>(frame, &limits) {
        Err(err) => json!({"disconnect": err.disconnect_code().as_u16()}),
        Ok(messages) => {
            assert_eq!(messages.len(), 1);
            let err = messages[0]
                .validate(&limits)
                .expect_err("a valid vector in the invalid list");
            json!({"reply": err.code().as_u32()})
        }
    }
}

#[test]
fn invalid_vectors_are_refused_with_their_code() {
    let file = load();
    for vector in file["invalid"].as_array().unwrap() {
        let name = vector["name"].as_str().unwrap();
        let server = vector["direction"] == "server";
        let json = vector["json"]
            .as_str()
            .map(|t| t.as_bytes().to_vec())
            .or_else(|| vector["json_hex"].as_str().map(|h| hex::decode(h).unwrap()));
        let msgpack = vector["msgpack"].as_str().map(|h| hex::decode(h).unwrap());
        assert!(json.is_some() || msgpack.is_some(), "{name}");
        for (codec, frame) in [(Codec::Json, json), (Codec::MsgPack, msgpack)] {
            let Some(frame) = frame else { continue };
            let got = std::panic::catch_unwind(|| refusal(&frame, codec, server))
                .unwrap_or_else(|_| panic!("{name} ({codec}) was not refused"));
            assert_eq!(got, vector["error"], "{name} ({codec})");
        }
    }
}
