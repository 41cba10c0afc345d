//! Payloads as Rust types and direct messages: serde types in and out of
//! publications, RPC and `send`, bytes kept as bytes, the server's error
//! text kept, and no direct message dropped without the reader being told.

use sacred_client::{MessageEvent, Value};
use sacred_proto::Codec;
use sacred_server::Hub;
use sacred_tests::{Server, any_port, quick, within};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Move {
    piece: String,
    to: (u8, u8),
    #[serde(with = "serde_bytes")]
    signature: Vec<u8>,
}

#[tokio::test]
async fn typed_payloads_travel_both_codecs_bytes_included() {
    let hub = Hub::builder().rpc("double", |_, data| async move {
        let n: u64 = data.decode().unwrap_or(0);
        Ok(Value::from(n * 2))
    });
    let server = Server::start(hub, any_port()).await;
    for (sender_codec, reader_codec) in
        [(Codec::MsgPack, Codec::Json), (Codec::Json, Codec::MsgPack)]
    {
        let reader = within("connect", quick(&server.url(), reader_codec).connect())
            .await
            .unwrap();
        let mut board = within("subscribe", reader.subscribe("board"))
            .await
            .unwrap();
        let sender = within("connect", quick(&server.url(), sender_codec).connect())
            .await
            .unwrap();
        let sent = Move {
            piece: "knight".into(),
            to: (2, 5),
            signature: vec![0, 1, 254, 255],
        };
        within("publish", sender.publish("board", &sent))
            .await
            .unwrap();
        let publication = within("publication", board.next_publication())
            .await
            .unwrap();
        let got: Move = publication.decode().unwrap();
        assert_eq!(got, sent, "{sender_codec} -> {reader_codec}");
        // A `Value` is published as it is: bytes arrive as bytes in
        // MessagePack and as base64 text in JSON.
        let bytes = Value::Bytes(vec![0, 1, 254, 255]);
        within("publish", sender.publish("board", &bytes))
            .await
            .unwrap();
        let publication = within("publication", board.next_publication())
            .await
            .unwrap();
        // (JSON has no bytes: a JSON sender's bytes are base64 text for everyone.)
        let expected = match (sender_codec, reader_codec) {
            (Codec::MsgPack, Codec::MsgPack) => bytes,
            _ => Value::from("AAH+/w=="),
        };
        assert_eq!(
            publication.data, expected,
            "{sender_codec} -> {reader_codec}"
        );
        let doubled: u64 = within("rpc", sender.rpc("double", 21))
            .await
            .unwrap()
            .decode()
            .unwrap();
        assert_eq!(doubled, 42);
        // `()` is no argument at all.
        assert_eq!(
            within("rpc", sender.rpc("double", ())).await.unwrap(),
            Value::from(0u64)
        );
    }
}

#[tokio::test]
async fn what_cannot_be_carried_is_refused_before_sending() {
    let server = Server::start(Hub::builder(), any_port()).await;
    let client = within("connect", quick(&server.url(), Codec::Json).connect())
        .await
        .unwrap();
    let err = within("publish", client.publish("c", u128::MAX))
        .await
        .unwrap_err();
    assert!(
        err.is_invalid() && err.to_string().contains("64 bits"),
        "{err}"
    );
    let err = within("publish", client.publish("c", f64::NAN))
        .await
        .unwrap_err();
    assert!(err.is_invalid(), "{err}");
    // The server's own words reach the application.
    let err = within("subscribe", client.subscribe("nowhere:x"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(102));
    assert!(
        err.to_string().contains("namespace is not configured"),
        "{err}"
    );
}

#[tokio::test]
async fn direct_messages_wait_for_their_reader_and_lag_is_reported() {
    let server = Server::start(Hub::builder(), any_port()).await;
    let reader = quick(&server.url(), Codec::Json)
        .message_buffer(4)
        .connect();
    let reader = within("connect", reader).await.unwrap();
    let to = reader.id().unwrap();
    let sender = within("connect", quick(&server.url(), Codec::Json).connect())
        .await
        .unwrap();
    // Ten messages before anyone reads: four wait, six are counted.
    for n in 0..10u64 {
        within("send", sender.send(&to, n)).await.unwrap();
    }
    // The reader's client has them once a round trip of its own is done.
    within("round trip", reader.presence("lobby"))
        .await
        .unwrap();
    let mut inbox = reader.messages();
    let mut seen = Vec::new();
    let mut skipped = 0;
    while seen.len() as u64 + skipped < 10 {
        match within("a message", inbox.recv()).await.unwrap() {
            MessageEvent::Message(message) => seen.push(message.data.decode::<u64>().unwrap()),
            MessageEvent::Lagged { skipped: n } => skipped += n,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, [0, 1, 2, 3], "the oldest waited, in order");
    assert_eq!(skipped, 6, "the rest were counted, not lost silently");
    // From now on a reader that keeps up gets everything.
    within("send", sender.send(&to, "live")).await.unwrap();
    let MessageEvent::Message(live) = within("a message", inbox.recv()).await.unwrap() else {
        panic!("expected a message")
    };
    assert_eq!(live.data, Value::from("live"));
    assert_eq!(live.from.unwrap().id, sender.id().unwrap());
}
