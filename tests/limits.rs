//! The server's limits, announced in the connect reply, kept by the client:
//! a command the server would close the connection for is refused locally,
//! and the connection goes on.

use sacred_client::Value;
use sacred_proto::{Codec, Limits};
use sacred_server::Hub;
use sacred_tests::{Server, any_port, quick, within};

#[tokio::test]
async fn a_publish_over_the_frame_limit_is_refused_locally_and_the_client_stays_connected() {
    let server = Server::start(Hub::builder(), any_port()).await;
    for codec in Codec::ALL {
        let client = within("connect", quick(&server.url(), codec).connect())
            .await
            .unwrap();
        let mut lobby = within("subscribe", client.subscribe("lobby"))
            .await
            .unwrap();
        let err = within("publish", client.publish("lobby", "x".repeat(20_000)))
            .await
            .unwrap_err();
        assert!(err.is_too_large(), "{codec}: {err}");
        assert!(err.to_string().contains("10240"), "{err}");
        let deep = (0..40).fold(Value::Null, |inner, _| Value::Array(vec![inner]));
        let err = within("publish", client.publish("lobby", deep))
            .await
            .unwrap_err();
        assert!(err.is_invalid(), "{codec}: {err}");
        // Still connected: nothing reached the server, which closed nothing.
        within("publish", client.publish("lobby", "small"))
            .await
            .unwrap();
        let publication = within("publication", lobby.next_publication())
            .await
            .unwrap();
        assert_eq!(publication.data, Value::from("small"));
        assert!(client.id().is_some());
    }
}

#[tokio::test]
async fn a_server_with_tighter_limits_is_obeyed_and_batches_fit_them() {
    let mut limits = Limits::default();
    limits.max_frame_bytes = 512;
    limits.max_batch = 4;
    let server = Server::start(Hub::builder().limits(limits), any_port()).await;
    let client = within("connect", quick(&server.url(), Codec::Json).connect())
        .await
        .unwrap();
    let err = within("publish", client.publish("c", "x".repeat(600)))
        .await
        .unwrap_err();
    assert!(err.is_too_large(), "{err}");
    // Many small publishes at once: the batcher packs them within 512 bytes and
    // 4 messages per frame, or the server would close with 3506 or 3501.
    let publishes: Vec<_> = (0..100u64)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move { client.publish("c", format!("{n:0>60}")).await })
        })
        .collect();
    for publish in publishes {
        within("ack", publish).await.unwrap().unwrap();
    }
    assert_eq!(server.hub.connections(), 1);
}
