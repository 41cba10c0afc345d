//! The SQLite store with the real file, through the `sacred-server` binary:
//! a server killed outright (SIGKILL) while publishers stream acknowledged
//! publishes, restarted on the same file, serves every acknowledged
//! publication to a recovering subscriber, exactly once, in order, under the
//! same epoch; in both durability modes.

#![cfg(feature = "sqlite")]

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use sacred_proto::*;
use support::*;

async fn start(db: &Path, sync: &str) -> (tokio::process::Child, std::net::SocketAddr) {
    let config = db.with_extension("toml");
    std::fs::write(&config, "[hub.namespaces.\"\"]\nhistory_size = 100000\n").unwrap();
    let store = format!("sqlite:{}", db.display());
    spawn_binary([
        "--config",
        config.to_str().unwrap(),
        "--store",
        &store,
        "--store-sync",
        sync,
    ])
    .await
}

/// Publishes distinct values until its connection breaks; returns what was
/// acknowledged: value -> (offset, epoch).
async fn publish_until_killed(url: String, base: u64) -> HashMap<u64, (u64, String)> {
    let (mut publisher, _) = Client::connect(&url, Codec::MsgPack, info("publisher")).await;
    let mut acked = HashMap::new();
    for n in base.. {
        let Some(reply) = publisher
            .try_request(PublishRequest::new("feed", Value::from(n)))
            .await
        else {
            break;
        };
        let reply = reply.expect("acknowledged until the kill");
        let Reply::Publish(reply) = reply else {
            panic!("a publish reply: {reply:?}");
        };
        acked.insert(n, (reply.offset.unwrap(), reply.epoch.unwrap()));
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_restarts_with_every_acknowledged_publication() {
    let dir = tempfile::tempdir().unwrap();
    for sync in ["always", "periodic"] {
        let db = dir.path().join(format!("{sync}.db"));
        let (mut server, addr) = start(&db, sync).await;
        let url = format!("ws://{addr}/ws");
        let publishers: Vec<_> = (0..4u64)
            .map(|p| tokio::spawn(publish_until_killed(url.clone(), p * 1_000_000)))
            .collect();
        // Kill once a few hundred publishes were acknowledged, mid-stream.
        let (mut watcher, _) = Client::connect(&url, Codec::MsgPack, info("watcher")).await;
        subscribe_reply(watcher.request(SubscribeRequest::new("feed")).await);
        let counted = async { while watcher.publication().await.offset.unwrap() < 300 {} };
        tokio::time::timeout(Duration::from_secs(30), counted)
            .await
            .expect("publishes flow");
        server.kill().await.unwrap();
        let mut acked = HashMap::new();
        for publisher in publishers {
            let done = tokio::time::timeout(WAIT, publisher).await;
            acked.extend(done.expect("the publisher sees the kill").unwrap());
        }
        assert!(acked.len() >= 300, "{sync}: {} acked", acked.len());
        let epoch = acked.values().next().unwrap().1.clone();

        let (_server, addr) = start(&db, sync).await;
        let url = format!("ws://{addr}/ws");
        let (mut reader, _) = Client::connect(&url, Codec::MsgPack, info("reader")).await;
        let mut request = SubscribeRequest::new("feed");
        request.recover = Some(StreamPosition::new(0, epoch.clone()));
        let reply = subscribe_reply(reader.request(request).await);
        assert!(reply.recovered, "{sync}: recovered from the file");
        assert_eq!(
            reply.epoch.as_deref(),
            Some(epoch.as_str()),
            "{sync}: same epoch"
        );
        let offsets: Vec<u64> = reply
            .publications
            .iter()
            .map(|p| p.offset.unwrap())
            .collect();
        let top = reply.offset.unwrap();
        assert_eq!(
            offsets,
            (1..=top).collect::<Vec<_>>(),
            "{sync}: in order, once each"
        );
        let stored: HashMap<u64, u64> = reply
            .publications
            .iter()
            .map(|p| (p.decode::<u64>().unwrap(), p.offset.unwrap()))
            .collect();
        assert_eq!(stored.len(), offsets.len(), "{sync}: no value twice");
        for (value, (offset, acked_epoch)) in &acked {
            assert_eq!(acked_epoch, &epoch);
            assert_eq!(
                stored.get(value),
                Some(offset),
                "{sync}: acknowledged {value} at {offset} is there"
            );
        }
        // And the stream goes on from there.
        let (mut publisher, _) = Client::connect(&url, Codec::MsgPack, info("publisher")).await;
        let next = publish_reply(
            publisher
                .request(PublishRequest::new("feed", Value::from(-1)))
                .await,
        );
        assert_eq!(next.offset, Some(top + 1));
    }
}

/// Many publishers on one channel at once: the appends share the store's
/// commits (the broker holds the channel only around each call), and the
/// subscriber still receives every publication once, in offset order, as
/// do the acks; a publish given up midway (its future dropped) is still
/// delivered, and stalls none of those after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_to_one_channel_arrive_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = sacred_server::SqliteHistory::open(
        dir.path().join("history.db"),
        sacred_server::Durability::Always,
    )
    .unwrap();
    let mut namespace = sacred_server::NamespaceOptions::default();
    namespace.history_size = 10_000;
    let server = Server::start(
        sacred_server::Hub::builder()
            .namespace("", namespace)
            .history_store(store),
    )
    .await;
    let (mut reader, _) = Client::connect(&server.url(), Codec::MsgPack, info("reader")).await;
    subscribe_reply(reader.request(SubscribeRequest::new("hot")).await);
    // Given up after one poll: queued in the store, its ack not awaited (a
    // commit takes longer than a poll; were it done already, the checks
    // below hold all the same).
    let abandoned = server.hub.publish("hot", Value::from(-1));
    let _ = futures_util::FutureExt::now_or_never(abandoned);
    let publishers = (0..50).map(|p| {
        let hub = server.hub.clone();
        tokio::spawn(async move {
            let mut offsets = Vec::new();
            for n in 0..20 {
                let reply = hub.publish("hot", Value::from(p * 100 + n)).await.unwrap();
                offsets.push(reply.offset.unwrap());
            }
            offsets
        })
    });
    let mut acked = Vec::new();
    for publisher in publishers {
        let offsets = tokio::time::timeout(Duration::from_secs(30), publisher)
            .await
            .expect("no publish stalls")
            .unwrap();
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "one publisher's acks rise"
        );
        acked.extend(offsets);
    }
    acked.sort_unstable();
    acked.dedup();
    assert_eq!(acked.len(), 1000, "every ack its own offset");
    let last = server.hub.publish("hot", Value::from(-2)).await.unwrap();
    let top = last.offset.unwrap();
    assert_eq!(top, 1002, "the given-up publish was kept");
    for offset in 1..=top {
        let publication = reader.publication().await;
        assert_eq!(
            publication.offset,
            Some(offset),
            "every offset once, in order"
        );
    }
}
