//! Every message survives encode then decode in both codecs, alone and in batches.

mod support;

use proptest::collection::vec;
use proptest::prelude::*;
use sacred_proto::{ClientMessage, Codec, ServerMessage, Value};
use support::*;

fn roundtrip<M: sacred_proto::Message + PartialEq + std::fmt::Debug>(codec: Codec, messages: &[M]) {
    let frame = if messages.len() == 1 {
        codec.encode(&messages[0]).unwrap()
    } else {
        codec.encode_batch(messages).unwrap()
    };
    let decoded: Vec<M> = codec.decode(&frame, &roomy()).unwrap();
    assert_eq!(decoded, messages);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn client_messages_roundtrip(json in client_message(false), msgpack in client_message(true)) {
        roundtrip(Codec::Json, &[json]);
        roundtrip(Codec::MsgPack, &[msgpack]);
    }

    #[test]
    fn server_messages_roundtrip(json in server_message(false), msgpack in server_message(true)) {
        roundtrip(Codec::Json, &[json]);
        roundtrip(Codec::MsgPack, &[msgpack]);
    }

    #[test]
    fn batches_roundtrip(client in vec(client_message(false), 1..6), server in vec(server_message(true), 1..6)) {
        for (codec, _) in CODECS {
            roundtrip(codec, &client);
        }
        roundtrip(Codec::MsgPack, &server);
    }

    /// Without bytes, both codecs carry exactly the same message.
    #[test]
    fn codecs_agree(message in server_message(false)) {
        let json: Vec<ServerMessage> = Codec::Json.decode(&Codec::Json.encode(&message).unwrap(), &roomy()).unwrap();
        let msgpack: Vec<ServerMessage> =
            Codec::MsgPack.decode(&Codec::MsgPack.encode(&message).unwrap(), &roomy()).unwrap();
        prop_assert_eq!(json, msgpack);
    }

    /// JSON payloads survive both codecs unchanged.
    #[test]
    fn json_payloads_survive_both_codecs(data in value(false)) {
        let json = data.clone().into_json();
        for (codec, _) in CODECS {
            let message = ClientMessage::new(7, sacred_proto::PublishRequest::new("c", data.clone()));
            let decoded: Vec<ClientMessage> = codec.decode(&codec.encode(&message).unwrap(), &roomy()).unwrap();
            let sacred_proto::Command::Publish(publish) = &decoded[0].command else { panic!("not a publish") };
            prop_assert_eq!(publish.data.clone().into_json(), json.clone());
        }
    }
}

#[test]
fn bytes_cross_to_json_as_base64() {
    let message = ClientMessage::new(
        1,
        sacred_proto::PublishRequest::new("c", Value::Bytes(b"hi\0".to_vec())),
    );
    let frame = Codec::Json.encode(&message).unwrap();
    assert_eq!(
        frame,
        br#"{"id":1,"publish":{"channel":"c","data":"aGkA"}}"#
    );
}
