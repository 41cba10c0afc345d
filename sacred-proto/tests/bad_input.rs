//! Hostile frames, each refused with its documented error and close code.
//! Small fixed cases also live in `docs/protocol-vectors.json`; these are the
//! ones generated at size (oversize, extreme depth, every truncation point).

use sacred_proto::{
    ClientMessage, Codec, ConnectRequest, DecodeError, DisconnectCode, Limits, PublishRequest,
    ServerMessage, Value,
};

fn decode(codec: Codec, frame: &[u8]) -> Result<Vec<ClientMessage>, DecodeError> {
    codec.decode(frame, &Limits::default())
}

fn publish_frame(codec: Codec, data: Value) -> Vec<u8> {
    codec
        .encode(&ClientMessage::new(
            1,
            PublishRequest::new("chat:lobby", data),
        ))
        .unwrap()
}

/// A string payload sized so the whole frame is exactly `len` bytes.
fn frame_of_len(codec: Codec, len: usize) -> Vec<u8> {
    let base = publish_frame(codec, Value::from("")).len();
    // JSON adds no prefix growth below 10 KiB; MessagePack's str header grows
    // from 1 to 3 bytes past 31 bytes of content.
    let mut pad = len - base;
    let mut frame = publish_frame(codec, Value::from("x".repeat(pad)));
    while frame.len() > len {
        pad -= frame.len() - len;
        frame = publish_frame(codec, Value::from("x".repeat(pad)));
    }
    assert_eq!(frame.len(), len);
    frame
}

#[test]
fn frames_up_to_the_limit_pass_and_one_byte_more_is_too_big() {
    for codec in Codec::ALL {
        let max = Limits::default().max_frame_bytes;
        assert!(decode(codec, &frame_of_len(codec, max)).is_ok(), "{codec}");
        let err = decode(codec, &frame_of_len(codec, max + 1)).unwrap_err();
        assert_eq!(err, DecodeError::TooBig { len: max + 1, max }, "{codec}");
        assert_eq!(err.disconnect_code(), DisconnectCode::MESSAGE_TOO_BIG);
        assert!(!err.disconnect_code().should_reconnect());
    }
}

fn nested(depth: usize) -> Value {
    (0..depth).fold(Value::Null, |inner, _| Value::Array(vec![inner]))
}

#[test]
fn depth_is_bounded_at_exactly_the_limit_in_both_codecs() {
    let limits = Limits::default();
    // A single message is depth 1, its body 2, so data may add max_depth - 2 levels.
    let at_limit = nested(limits.max_depth - 2);
    let over = nested(limits.max_depth - 1);
    for codec in Codec::ALL {
        assert!(
            decode(codec, &publish_frame(codec, at_limit.clone())).is_ok(),
            "{codec}"
        );
        let err = decode(codec, &publish_frame(codec, over.clone())).unwrap_err();
        assert_eq!(
            err,
            DecodeError::TooDeep {
                max: limits.max_depth
            },
            "{codec}"
        );
        assert_eq!(err.disconnect_code(), DisconnectCode::BAD_REQUEST);
    }
}

#[test]
fn extreme_depth_is_refused_without_recursing() {
    // 100,000 levels would overflow the stack of a recursive decoder.
    let mut limits = Limits::default();
    limits.max_frame_bytes = 1 << 20;
    let json = "[".repeat(100_000);
    assert_eq!(
        Codec::Json.decode::<ClientMessage>(json.as_bytes(), &limits),
        Err(DecodeError::TooDeep { max: 32 })
    );
    let msgpack = vec![0x91; 100_000];
    assert_eq!(
        Codec::MsgPack.decode::<ClientMessage>(&msgpack, &limits),
        Err(DecodeError::TooDeep { max: 32 })
    );
}

#[test]
fn batches_are_bounded() {
    let limits = Limits::default();
    for codec in Codec::ALL {
        let pong = ClientMessage::new(1, sacred_proto::PongRequest::new());
        let at_limit = vec![pong.clone(); limits.max_batch];
        let frame = codec.encode_batch(&at_limit).unwrap();
        assert_eq!(
            decode(codec, &frame).unwrap().len(),
            limits.max_batch,
            "{codec}"
        );
        let over = vec![pong; limits.max_batch + 1];
        let frame = codec.encode_batch(&over).unwrap();
        assert_eq!(
            decode(codec, &frame),
            Err(DecodeError::BatchTooLong {
                max: limits.max_batch
            }),
            "{codec}"
        );
    }
}

#[test]
fn every_truncation_of_a_valid_frame_is_refused() {
    let mut connect = ConnectRequest::new(
        Some("token".into()),
        sacred_proto::ClientInfo::new("n", "agent", "rust", "1"),
    );
    connect.data = Value::from(serde_json::json!({"a": [1, 2.5, "x", null], "b": {"c": true}}));
    let messages = vec![
        ClientMessage::new(1, connect),
        ClientMessage::new(2, PublishRequest::new("c", Value::Bytes(vec![1, 2, 3]))),
    ];
    for codec in Codec::ALL {
        let frame = codec.encode_batch(&messages).unwrap();
        for cut in 0..frame.len() {
            let err = decode(codec, &frame[..cut]).expect_err("a prefix must not decode");
            assert_eq!(
                err.disconnect_code(),
                DisconnectCode::BAD_REQUEST,
                "{codec} cut at {cut}: {err}"
            );
        }
    }
}

#[test]
fn msgpack_length_lies_are_refused_before_allocation() {
    let lies: &[&[u8]] = &[
        &[0xdd, 0xff, 0xff, 0xff, 0xff],       // array32 of 2^32-1 messages
        &[0xdf, 0x7f, 0xff, 0xff, 0xff],       // map32 of 2^31-1 entries
        &[0x81, 0xa1, b'x', 0xdc, 0xff, 0xff], // array16 of 65535 items, no bytes
        &[0x81, 0xa1, b'x', 0xc6, 0x7f, 0xff, 0xff, 0xff], // bin32 of 2 GiB
        &[0x81, 0xa1, b'x', 0xdb, 0x7f, 0xff, 0xff, 0xff], // str32 of 2 GiB
    ];
    for frame in lies {
        let err = decode(Codec::MsgPack, frame).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::Truncated | DecodeError::BatchTooLong { .. }
            ),
            "{frame:02x?}: {err}"
        );
    }
}

#[test]
fn wrong_direction_is_refused() {
    // A server push arriving at a server, a client command arriving at a client.
    let push = Codec::Json
        .encode(&ServerMessage::push(sacred_proto::Ping::new(1)))
        .unwrap();
    assert!(decode(Codec::Json, &push).is_err());
    let command = Codec::Json
        .encode(&ClientMessage::new(1, sacred_proto::PongRequest::new()))
        .unwrap();
    assert!(
        Codec::Json
            .decode::<ServerMessage>(&command, &Limits::default())
            .is_err()
    );
}

#[test]
fn garbage_is_refused_and_never_panics() {
    // A deterministic sweep of short random-ish frames; the fuzz targets go further.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = (state % 48) as usize;
        let frame: Vec<u8> = (0..len)
            .map(|i| (state.rotate_left(i as u32 * 5) & 0xff) as u8)
            .collect();
        for codec in Codec::ALL {
            let _ = decode(codec, &frame);
            let _ = codec.decode::<ServerMessage>(&frame, &Limits::default());
        }
    }
}

#[test]
fn error_messages_name_the_problem() {
    let cases: &[(&[u8], &str)] = &[
        (br#"{"id":1,"frobnicate":{}}"#, "unknown key `frobnicate`"),
        (br#"{"id":0,"pong":{}}"#, "an id from 1 to 4294967295"),
        (br#"{"pong":{}}"#, "missing field `id`"),
        (br#"{"id":1,"subscribe":{}}"#, "missing field `channel`"),
        (br#"{"id":1,"pong":[]}"#, "a map of named fields"),
        (br#"{"id":1,"pong":{},"pong":{}}"#, "exactly one body"),
        (br#"{"id":1,"id":2,"pong":{}}"#, "duplicate field `id`"),
    ];
    for (frame, needle) in cases {
        let err = decode(Codec::Json, frame).unwrap_err().to_string();
        assert!(err.contains(needle), "{err:?} should mention {needle:?}");
    }
}

#[test]
fn null_reads_as_absent_for_every_optional_field() {
    let frame = br#"{"id":1,"connect":{"token":null,"client":null,"data":null,"subs":null}}"#;
    let decoded = decode(Codec::Json, frame).unwrap();
    assert_eq!(decoded, [ClientMessage::new(1, ConnectRequest::default())]);
    let frame = br#"{"id":2,"subscribe":{"channel":"c","recover":null,"join_leave":null}}"#;
    assert_eq!(
        decode(Codec::Json, frame).unwrap(),
        [ClientMessage::new(
            2,
            sacred_proto::SubscribeRequest::new("c")
        )]
    );
    let frame = br#"{"id":3,"subscribe":{"recovered":null,"publications":null}}"#;
    let decoded: Vec<ServerMessage> = Codec::Json.decode(frame, &Limits::default()).unwrap();
    assert_eq!(
        decoded,
        [ServerMessage::reply(
            3,
            sacred_proto::SubscribeReply::default()
        )]
    );
}

#[test]
fn null_is_refused_for_required_fields() {
    assert!(decode(Codec::Json, br#"{"id":1,"subscribe":{"channel":null}}"#).is_err());
    assert!(decode(Codec::Json, br#"{"id":null,"pong":{}}"#).is_err());
}
