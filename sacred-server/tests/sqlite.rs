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
        // Offset 300 was delivered; each publisher may have had one publish
        // whose ack the kill cut off after its fan-out.
        assert!(acked.len() >= 300 - 4, "{sync}: {} acked", acked.len());
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
            .options(unlimited())
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

/// Runs `sacred-server ARGS --store sqlite:DB` (a store command) to its end;
/// its exit status and what it printed.
async fn store_command(db: &Path, args: &[&str]) -> (bool, String, String) {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_sacred-server"))
        .args(["--store", &format!("sqlite:{}", db.display())])
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the command ends in time")
        .expect("the command runs");
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// A backup written by `sacred-server backup` while publishes stream in
/// restores (`sacred-server restore`, refused while the server runs) to a
/// server on which a client from before the backup's end recovers, and one
/// that saw later publications is told `recovered: false`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_publishing_restores_to_a_server_whose_clients_recover() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let backup = dir.path().join("backup.db");
    let (mut server, addr) = start(&db, "periodic").await;
    let url = format!("ws://{addr}/ws");
    let (mut publisher, _) = Client::connect(&url, Codec::MsgPack, info("publisher")).await;
    let mut epoch = String::new();
    for n in 0..100 {
        let reply = publish_reply(
            publisher
                .request(PublishRequest::new("feed", Value::from(n)))
                .await,
        );
        epoch = reply.epoch.unwrap();
    }
    let publishing = tokio::spawn(async move {
        for n in 100..1_500 {
            publish_reply(
                publisher
                    .request(PublishRequest::new("feed", Value::from(n)))
                    .await,
            );
        }
    });
    let (ok, _, err) = store_command(&db, &["backup", backup.to_str().unwrap()]).await;
    assert!(ok, "backup: {err}");
    tokio::time::timeout(Duration::from_secs(60), publishing)
        .await
        .expect("publishing ends")
        .unwrap();
    let (ok, _, err) = store_command(&db, &["restore", backup.to_str().unwrap()]).await;
    assert!(!ok, "a running server's store is not restored over");
    assert!(err.contains("in use"), "{err}");

    server.kill().await.unwrap();
    let (ok, _, err) = store_command(&db, &["restore", backup.to_str().unwrap()]).await;
    assert!(ok, "restore: {err}");
    let (_server, addr) = start(&db, "periodic").await;
    let url = format!("ws://{addr}/ws");
    let (mut early, _) = Client::connect(&url, Codec::MsgPack, info("early")).await;
    let mut request = SubscribeRequest::new("feed");
    request.recover = Some(StreamPosition::new(50, epoch.clone()));
    let reply = subscribe_reply(early.request(request).await);
    assert!(
        reply.recovered,
        "a position before the backup's end recovers"
    );
    let top = reply.offset.unwrap();
    assert!((100..=1_500).contains(&top), "the backup's end: {top}");
    let offsets: Vec<u64> = reply
        .publications
        .iter()
        .map(|p| p.offset.unwrap())
        .collect();
    assert_eq!(offsets, (51..=top).collect::<Vec<_>>());
    assert_ne!(
        reply.epoch.as_deref(),
        Some(epoch.as_str()),
        "under a new epoch"
    );
    if top < 1_500 {
        let (mut late, _) = Client::connect(&url, Codec::MsgPack, info("late")).await;
        let mut request = SubscribeRequest::new("feed");
        request.recover = Some(StreamPosition::new(1_500, epoch.clone()));
        let reply = subscribe_reply(late.request(request).await);
        assert!(
            !reply.recovered,
            "what it saw after the backup is gone: it must reload"
        );
    }
}

/// The data lifecycle through the binary while the server runs: a user's
/// publications exported as JSON lines, then forgotten (the others keep
/// their offsets) with their last-seen record; a channel's history deleted
/// with its position kept; search where the namespace enables it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_is_exported_and_forgotten_and_a_channel_deleted_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let config = dir.path().join("sacred.toml");
    std::fs::write(
        &config,
        "[hub.namespaces.chat]\nhistory_size = 1000\nsearch = true\n",
    )
    .unwrap();
    let key = |user: &str| sacred_server::ApiKey::from_plain(&format!("{user}-key"), user);
    let (_server, addr) = spawn_binary([
        "--config".to_owned(),
        config.display().to_string(),
        "--store".to_owned(),
        format!("sqlite:{}", db.display()),
        "--api-key".to_owned(),
        format!("ada:{}", key("ada").sha256),
        "--api-key".to_owned(),
        format!("bob:{}", key("bob").sha256),
    ])
    .await;
    let url = format!("ws://{addr}/ws");
    let signed_in = |user: &'static str| {
        let url = url.clone();
        async move {
            let mut client = Client::open(&url, Codec::Json).await;
            let mut client_info = info(user);
            client_info.kind = "agent".to_owned();
            client_info.runtime = "rust".to_owned();
            client
                .connect_with(ConnectRequest::new(
                    Some(format!("{user}-key")),
                    client_info,
                ))
                .await
                .expect("a valid key");
            client
        }
    };
    let mut ada = signed_in("ada").await;
    let mut bob = signed_in("bob").await;
    for (n, channel) in ["chat:a", "chat:b", "chat:a"].into_iter().enumerate() {
        publish_reply(
            ada.request(PublishRequest::new(
                channel,
                text(&format!("ada says hello {n}")),
            ))
            .await,
        );
        publish_reply(
            bob.request(PublishRequest::new(
                channel,
                text(&format!("bob says hi {n}")),
            ))
            .await,
        );
    }
    ada.close_normally().await;

    let (ok, out, err) = store_command(&db, &["export-user", "ada"]).await;
    assert!(ok, "{err}");
    let exported = json_lines(&out);
    let found: Vec<_> = exported
        .iter()
        .map(|p| {
            (
                p["channel"].as_str().unwrap(),
                p["offset"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(found, [("chat:a", 1), ("chat:a", 3), ("chat:b", 1)]);
    assert_eq!(exported[0]["data"], "ada says hello 0");
    assert_eq!(exported[0]["from"]["user"], "ada");

    let (ok, out, err) = store_command(&db, &["search", "chat:a", "HELLO"]).await;
    assert!(ok, "{err}");
    assert_eq!(json_lines(&out).len(), 2, "ada's two in chat:a: {out}");

    // The session is recorded as the server finishes the connection.
    let deadline = std::time::Instant::now() + WAIT;
    let seen = loop {
        let (ok, out, err) = store_command(&db, &["last-seen", "ada"]).await;
        assert!(ok, "{err}");
        if let Some(seen) = json_lines(&out).pop() {
            break seen;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ada's session is recorded"
        );
    };
    assert_eq!(
        (seen["kind"].as_str(), seen["runtime"].as_str()),
        (Some("agent"), Some("rust"))
    );
    assert_eq!(seen["messages"], 3);
    assert_eq!(seen["sessions"], 1);

    let (ok, out, err) = store_command(&db, &["forget-user", "ada"]).await;
    assert!(ok, "{err}");
    assert_eq!(json_lines(&out)[0]["deleted"], 3);
    let (_, out, _) = store_command(&db, &["last-seen", "ada"]).await;
    assert!(out.is_empty(), "forgotten: {out}");
    let history = |channel: &'static str| HistoryRequest::new(channel);
    let Ok(Reply::History(a)) = bob.request(history("chat:a")).await else {
        panic!("history of chat:a");
    };
    let offsets: Vec<_> = a.publications.iter().map(|p| p.offset.unwrap()).collect();
    assert_eq!(offsets, [2, 4], "bob's keep their offsets");
    assert_eq!(a.offset, 4);

    let (ok, out, err) = store_command(&db, &["delete-history", "chat:b"]).await;
    assert!(ok, "{err}");
    assert_eq!(json_lines(&out)[0]["deleted"], 1);
    let Ok(Reply::History(b)) = bob.request(history("chat:b")).await else {
        panic!("history of chat:b");
    };
    assert!(b.publications.is_empty());
    assert_eq!(b.offset, 2, "the position stays");
    let next = publish_reply(
        bob.request(PublishRequest::new("chat:b", text("again")))
            .await,
    );
    assert_eq!(next.offset, Some(3));

    let (ok, out, err) = store_command(&db, &["stats"]).await;
    assert!(ok, "{err}");
    assert_eq!(json_lines(&out)[0]["streams"], 2);
    // --store after the command, as docs/operations.md writes it.
    let after = tokio::process::Command::new(env!("CARGO_BIN_EXE_sacred-server"))
        .args(["stats", "--store", &format!("sqlite:{}", db.display())])
        .output();
    let after = tokio::time::timeout(Duration::from_secs(30), after)
        .await
        .unwrap()
        .unwrap();
    assert!(
        after.status.success(),
        "{}",
        String::from_utf8_lossy(&after.stderr)
    );
    let (ok, _, err) = store_command(&dir.path().join("missing.db"), &["stats"]).await;
    assert!(!ok);
    assert!(err.contains("no store at"), "{err}");
}

/// `search` from a client, in both codecs: ranked and paged where the
/// namespace enables it on the SQLite store; 108 where it is off or the
/// store does not search; 107 for a text over 1024 bytes.
#[tokio::test]
async fn clients_search_where_the_namespace_enables_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = sacred_server::SqliteHistory::open(
        dir.path().join("history.db"),
        sacred_server::Durability::Always,
    )
    .unwrap();
    let server = Server::start(
        sacred_server::Hub::builder()
            .namespace(
                "ops",
                sacred_server::NamespaceOptions::default().search(true),
            )
            .history_store(store),
    )
    .await;
    // Enough publications without the word that it is a rare one (a word in
    // half of them would carry no weight in the ranking).
    for words in [
        "deploy failed",
        "lunch",
        "deploy deploy rolled back",
        "deployed",
        "coffee",
        "standup at ten",
        "retro notes",
        "holiday",
    ] {
        server.hub.publish("ops:prod", text(words)).await.unwrap();
    }
    server.hub.publish("chat", text("deploy")).await.unwrap();
    for codec in [Codec::Json, Codec::MsgPack] {
        let (mut client, _) = Client::connect(&server.url(), codec, info("searcher")).await;
        let found = |reply| match reply {
            Ok(Reply::Search(reply)) => reply,
            other => panic!("a search reply: {other:?}"),
        };
        let best = found(
            client
                .request(SearchRequest::new("ops:prod", "deploy"))
                .await,
        );
        assert_eq!(best.total, 2);
        let offsets: Vec<_> = best
            .publications
            .iter()
            .map(|p| p.offset.unwrap())
            .collect();
        assert_eq!(offsets, [3, 1], "{codec:?}: best first");
        let page = found(
            client
                .request(SearchRequest::new("ops:prod", "deploy*").limit(2).skip(2))
                .await,
        );
        assert_eq!(
            (page.total, page.publications.len()),
            (3, 1),
            "{codec:?}: the last page"
        );
        let off = client.request(SearchRequest::new("chat", "deploy")).await;
        assert_eq!(
            error_code(off),
            108,
            "{codec:?}: search is off in the default namespace"
        );
        let long = client
            .request(SearchRequest::new("ops:prod", "a".repeat(1025)))
            .await;
        assert_eq!(error_code(long), 107, "{codec:?}");
    }
    let memory = Server::start(sacred_server::Hub::builder().namespace(
        "ops",
        sacred_server::NamespaceOptions::default().search(true),
    ))
    .await;
    let (mut client, _) = Client::connect(&memory.url(), Codec::Json, info("searcher")).await;
    let unsupported = client
        .request(SearchRequest::new("ops:prod", "deploy"))
        .await;
    assert_eq!(
        error_code(unsupported),
        108,
        "the memory store does not search"
    );
}
