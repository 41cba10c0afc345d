//! How pushes queued for one connection are framed, over real sockets: what
//! is queued together goes as one batch frame, bounded by count and bytes,
//! and `write_delay` gathers what arrives within it. Tokio's clock is paused,
//! so the delays are exact and take no time.

mod support;

use std::time::Duration;

use sacred_proto::*;
use sacred_server::{Hub, HubOptions};
use support::*;

/// A subscriber to `news` on a hub with `options`.
async fn subscriber(options: HubOptions) -> (Server, Client) {
    let server = Server::start(Hub::builder().options(options)).await;
    let (mut client, _) = Client::connect(&server.url(), Codec::Json, info("reader")).await;
    subscribe_reply(client.request(SubscribeRequest::new("news")).await);
    (server, client)
}

/// Publishes `data` to `news` from the test's task, without yielding to the
/// connection's writer between publications (no cooperative budget), so the
/// writer finds them all queued when it runs.
async fn publish_all(server: &Server, data: impl IntoIterator<Item = Value>) {
    tokio::task::unconstrained(async {
        for data in data {
            server.hub.publish("news", data).await.unwrap();
        }
    })
    .await;
}

/// Reads `count` publications; returns their offsets and the messages in
/// each frame they came in.
async fn read(client: &mut Client, count: usize) -> (Vec<u64>, Vec<usize>) {
    let before = client.frames.len();
    let mut offsets = Vec::with_capacity(count);
    for _ in 0..count {
        offsets.push(client.publication().await.offset.unwrap());
    }
    (offsets, client.frames[before..].to_vec())
}

#[tokio::test(start_paused = true)]
async fn pushes_queued_together_go_in_one_frame_of_at_most_100() {
    let (server, mut client) = subscriber(HubOptions::default()).await;
    publish_all(&server, (0..150).map(Value::from)).await;
    let (offsets, frames) = read(&mut client, 150).await;
    assert_eq!(offsets, (1..=150).collect::<Vec<_>>(), "all, in order");
    assert_eq!(frames, [100, 50], "a batch of 100, then one of 50");
}

#[tokio::test(start_paused = true)]
async fn a_batch_frame_ends_near_64_kib_and_a_lone_push_goes_alone() {
    let (server, mut client) = subscriber(HubOptions::default()).await;
    // 20 pushes of some 8 KiB: about 160 KiB, so three frames or more, none
    // of them much over 64 KiB (the test client's frames decode whole).
    let text = "x".repeat(8 * 1024);
    publish_all(&server, (0..20).map(|_| Value::from(text.as_str()))).await;
    let (offsets, frames) = read(&mut client, 20).await;
    assert_eq!(offsets, (1..=20).collect::<Vec<_>>());
    // Seven pushes of 8 KiB and their envelopes fill 64 KiB, the eighth
    // begins the next frame.
    assert_eq!(frames, [7, 7, 6], "160 KiB in frames of about 64 KiB");

    publish_all(&server, [Value::from("alone")]).await;
    let (offsets, frames) = read(&mut client, 1).await;
    assert_eq!((offsets, frames), (vec![21], vec![1]));
}

#[tokio::test(start_paused = true)]
async fn write_delay_gathers_what_arrives_meanwhile_into_one_frame() {
    // Without a delay the writer sends the first push before the second is
    // published; with one, both go together.
    for (delay, expected) in [(Duration::ZERO, 2), (Duration::from_millis(100), 1)] {
        let mut options = HubOptions::default();
        options.write_delay = delay;
        let (server, mut client) = subscriber(options).await;
        server.hub.publish("news", Value::from(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        server.hub.publish("news", Value::from(2)).await.unwrap();
        let (offsets, frames) = read(&mut client, 2).await;
        assert_eq!(offsets, vec![1, 2]);
        assert_eq!(frames.len(), expected, "write_delay {delay:?}");
    }
}
