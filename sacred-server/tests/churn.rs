//! Memory stays bounded when channel names churn: a channel subscribed once
//! and left behind leaves nothing in the hub or in the history store.

mod support;

use std::sync::Arc;

use sacred_proto::*;
use sacred_server::{Hub, MemoryHistory};
use support::*;

#[tokio::test]
async fn channels_subscribed_once_leave_nothing_behind() {
    let store = Arc::new(MemoryHistory::new());
    let (gone, mut left) = tokio::sync::mpsc::unbounded_channel();
    let hub = Hub::builder()
        .options(unlimited())
        .history_store(Arc::clone(&store))
        .on_disconnect(move |_| {
            let gone = gone.clone();
            async move {
                let _ = gone.send(());
            }
        });
    let server = Server::start(hub).await;
    let (mut client, _) = Client::connect(&server.url(), Codec::MsgPack, info("churn")).await;
    // 20,000 distinct channels, each subscribed once (50 per frame) and left.
    for round in 0..400 {
        let mut batch = Vec::new();
        for i in 0..50 {
            let channel = format!("room-{round}-{i}");
            let id = client.next_id();
            batch.push(ClientMessage::new(
                id,
                SubscribeRequest::new(channel.clone()),
            ));
            let id = client.next_id();
            batch.push(ClientMessage::new(id, UnsubscribeRequest::new(channel)));
        }
        let last = batch.last().unwrap().id;
        client.send(&batch).await;
        assert!(matches!(
            client.reply(last).await,
            Ok(Reply::Unsubscribe(_))
        ));
    }
    // One channel published to keeps its stream; the others have none.
    subscribe_reply(client.request(SubscribeRequest::new("kept")).await);
    publish_reply(client.request(PublishRequest::new("kept", text("x"))).await);
    assert_eq!(
        server.hub.channels(),
        1,
        "only the channel still subscribed"
    );
    assert_eq!(store.streams(), 1, "only the channel with a publication");
    // A subscriber that disconnects leaves its channels too (the hook runs
    // once it has left them).
    drop(client);
    tokio::time::timeout(WAIT, left.recv()).await.unwrap();
    assert_eq!(server.hub.channels(), 0);
}
