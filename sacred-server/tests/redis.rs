//! Several `sacred-server` processes on one real `redis-server` (Debian's
//! package; the test command installs it): publications cross nodes in
//! order, presence and join/leave are the same from every node, and a node
//! killed outright loses nobody's stream: its clients recover on another.
//!
//! Redis listens on a Unix socket in a fresh directory (no port to race
//! for); every node binds 127.0.0.1:0. Every wait is bounded.

#![cfg(feature = "redis")]

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use sacred_proto::*;
use support::*;
use tokio::process::{Child, Command};

/// A `redis-server` of its own, stopped (killed) on drop.
struct Redis {
    child: Child,
    dir: PathBuf,
}

impl Redis {
    async fn start() -> Redis {
        let dir = std::env::temp_dir().join(format!(
            "sacred-redis-{}-{:x}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Redis::start_in(dir, false).await
    }

    /// A `redis-server` on `dir`'s socket; with `aof`, every write is
    /// fsynced to an append-only file in `dir` before it is acknowledged.
    async fn start_in(dir: PathBuf, aof: bool) -> Redis {
        let socket = dir.join("redis.sock");
        let persistence: &[&str] = if aof {
            &["--appendonly", "yes", "--appendfsync", "always"]
        } else {
            &["--appendonly", "no"]
        };
        let child = Command::new("redis-server")
            .args(["--port", "0", "--save", ""])
            .args(persistence)
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server runs (scripts/test installs it)");
        let ready = async {
            while tokio::net::UnixStream::connect(&socket).await.is_err() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(WAIT, ready)
            .await
            .expect("redis-server listens in time");
        Redis { child, dir }
    }

    fn url(&self) -> String {
        format!("redis+unix://{}", self.dir.join("redis.sock").display())
    }

    /// SIGKILL, keeping the directory (and its append-only file); returns it.
    async fn kill(mut self) -> PathBuf {
        self.child.kill().await.unwrap();
        let _ = std::fs::remove_file(self.dir.join("redis.sock"));
        let dir = std::mem::take(&mut self.dir);
        std::mem::forget(self);
        dir
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// One `sacred-server` node on `redis`, with history, presence and join/leave.
struct Node {
    child: Child,
    addr: std::net::SocketAddr,
}

impl Node {
    async fn start(redis: &Redis, presence_ttl_secs: u64) -> Node {
        Node::start_with(redis, presence_ttl_secs, &[]).await
    }

    /// A node with further flags.
    async fn start_with(redis: &Redis, presence_ttl_secs: u64, args: &[&str]) -> Node {
        let config = redis.dir.join(format!("node-{:x}.toml", rand_suffix()));
        std::fs::write(
            &config,
            format!(
                "[broker]\nurls = [\"{}\"]\npresence_ttl_secs = {presence_ttl_secs}\ntimeout_secs = 1\n\n\
                 [hub.namespaces.\"\"]\nhistory_size = 10000\npresence = true\njoin_leave = true\n",
                redis.url()
            ),
        )
        .unwrap();
        let mut flags = vec![std::ffi::OsStr::new("--config"), config.as_os_str()];
        flags.extend(args.iter().map(std::ffi::OsStr::new));
        let (child, addr) = spawn_binary(flags).await;
        Node { child, addr }
    }

    fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// SIGKILL: no drain, no goodbye, nothing cleaned up in Redis.
    async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }
}

async fn subscribe(client: &mut Client, channel: &str, join_leave: bool) -> SubscribeReply {
    let mut request = SubscribeRequest::new(channel);
    request.join_leave = join_leave;
    subscribe_reply(client.request(request).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_on_one_node_receives_every_publication_of_the_others_in_order() {
    let redis = Redis::start().await;
    let (a, b, c) = (
        Node::start(&redis, 60).await,
        Node::start(&redis, 60).await,
        Node::start(&redis, 60).await,
    );
    let (mut reader, _) = Client::connect(&a.url(), Codec::MsgPack, info("reader")).await;
    let first = subscribe(&mut reader, "news", false).await;
    assert_eq!(first.offset, Some(0), "a new stream");
    let (mut on_b, _) = Client::connect(&b.url(), Codec::Json, info("b")).await;
    let (mut on_c, _) = Client::connect(&c.url(), Codec::MsgPack, info("c")).await;
    for n in 0..200u64 {
        let publisher = if n % 2 == 0 { &mut on_b } else { &mut on_c };
        let ack = publish_reply(
            publisher
                .request(PublishRequest::new("news", Value::from(n)))
                .await,
        );
        assert_eq!(
            ack.offset,
            Some(n + 1),
            "offsets come from Redis, one stream"
        );
        assert_eq!(ack.epoch, first.epoch, "the epoch the subscriber was given");
    }
    for n in 0..200u64 {
        let publication = reader.publication().await;
        assert_eq!(
            publication.offset,
            Some(n + 1),
            "in order, nothing lost or repeated"
        );
        assert_eq!(publication.data, Value::from(n));
        let from = publication.from.expect("a publisher");
        assert_eq!(from.info.name, if n % 2 == 0 { "b" } else { "c" });
    }
    // History reads the same stream from any node.
    let mut history = HistoryRequest::new("news");
    history.limit = Some(3);
    history.reverse = true;
    let Ok(Reply::History(page)) = on_b.request(history).await else {
        panic!("history from node b");
    };
    let offsets: Vec<_> = page
        .publications
        .iter()
        .map(|p| p.offset.unwrap())
        .collect();
    assert_eq!(offsets, [200, 199, 198]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_crosses_nodes_with_the_publication() {
    let redis = Redis::start().await;
    let (otlp, mut spans) = support::otlp::receiver().await;
    let endpoint = format!("http://{otlp}");
    let flags = ["--otlp-endpoint", endpoint.as_str(), "--drain-secs", "1"];
    let (a, b) = (
        Node::start_with(&redis, 60, &flags).await,
        Node::start_with(&redis, 60, &flags).await,
    );
    let (mut reader, _) = Client::connect(&a.url(), Codec::MsgPack, info("reader")).await;
    subscribe(&mut reader, "news", false).await;
    let (mut writer, _) = Client::connect(&b.url(), Codec::Json, info("writer")).await;
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let publish = PublishRequest::new("news", Value::from(1u64))
        .with_traceparent(format!("00-{trace}-b7ad6b7169203331-01"));
    publish_reply(writer.request(publish).await);
    let carried = reader
        .publication()
        .await
        .traceparent
        .expect("carried across");
    assert!(carried.starts_with(&format!("00-{trace}-")), "{carried}");
    let server_span = carried[36..52].to_owned();

    for node in [&a, &b] {
        let pid = node.child.id().unwrap().to_string();
        let stopped = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        assert!(stopped.unwrap().success());
    }
    reader.closed().await;
    writer.closed().await;
    for mut node in [a, b] {
        let status = tokio::time::timeout(WAIT * 2, node.child.wait()).await;
        assert!(status.expect("stops in time").unwrap().success());
    }
    let spans = support::otlp::drain(&mut spans);
    let in_trace: Vec<_> = spans
        .iter()
        .map(|(_, span)| span)
        .filter(|span| hex::encode(&span.trace_id) == trace)
        .collect();
    let publish = in_trace
        .iter()
        .find(|span| span.name == "publish")
        .expect("node b's publish span");
    assert_eq!(hex::encode(&publish.span_id), server_span);
    // Node a delivered it: its deliver span is a child of node b's publish.
    let delivered: Vec<_> = in_trace
        .iter()
        .filter(|span| {
            span.name == "deliver"
                && hex::encode(&span.parent_span_id) == server_span
                && support::otlp::attributes(span)["deliveries"] == "1"
        })
        .collect();
    assert_eq!(delivered.len(), 1, "{in_trace:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_and_join_leave_are_the_same_from_every_node() {
    let redis = Redis::start().await;
    let (a, b) = (Node::start(&redis, 60).await, Node::start(&redis, 60).await);
    let (mut watcher, _) = Client::connect(&a.url(), Codec::Json, info("watcher")).await;
    subscribe(&mut watcher, "room", true).await;
    let (mut guest, _) = Client::connect(&b.url(), Codec::MsgPack, info("guest")).await;
    subscribe(&mut guest, "room", false).await;
    match watcher.push().await {
        Push::Join(join) => assert_eq!(join.client.info.name, "guest", "a join on another node"),
        other => panic!("expected a join, got {other:?}"),
    }
    for client in [&mut watcher, &mut guest] {
        let Ok(Reply::Presence(presence)) = client.request(PresenceRequest::new("room")).await
        else {
            panic!("presence");
        };
        let mut names: Vec<_> = presence
            .clients
            .iter()
            .map(|p| p.info.name.clone())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["guest", "watcher"],
            "both nodes' clients, from either"
        );
    }
    guest
        .request(UnsubscribeRequest::new("room"))
        .await
        .expect("unsubscribed");
    match watcher.push().await {
        Push::Leave(leave) => assert_eq!(leave.client.info.name, "guest"),
        other => panic!("expected a leave, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_s_clients_recover_on_another_and_leave_presence() {
    let redis = Redis::start().await;
    let doomed = Node::start(&redis, 2).await;
    let survivor = Node::start(&redis, 2).await;
    let (mut publisher, _) =
        Client::connect(&survivor.url(), Codec::MsgPack, info("publisher")).await;
    let (mut reader, _) = Client::connect(&doomed.url(), Codec::MsgPack, info("reader")).await;
    let first = subscribe(&mut reader, "feed", false).await;
    let mut seen = first.offset.unwrap();
    for n in 0..50u64 {
        publish_reply(
            publisher
                .request(PublishRequest::new("feed", Value::from(n)))
                .await,
        );
    }
    while seen < 50 {
        seen = reader.publication().await.offset.unwrap();
    }
    doomed.kill().await;
    assert!(reader.closed().await.is_none(), "killed: no close frame");
    // Publishing goes on while the reader is away.
    for n in 50..80u64 {
        publish_reply(
            publisher
                .request(PublishRequest::new("feed", Value::from(n)))
                .await,
        );
    }
    let (mut reader, _) = Client::connect(&survivor.url(), Codec::MsgPack, info("reader")).await;
    let mut again = SubscribeRequest::new("feed");
    again.recover = Some(StreamPosition::new(seen, first.epoch.clone().unwrap()));
    let reply = subscribe_reply(reader.request(again).await);
    assert!(
        reply.recovered,
        "the stream lives in Redis, not in the dead node"
    );
    let offsets: Vec<_> = reply
        .publications
        .iter()
        .map(|p| p.offset.unwrap())
        .collect();
    assert_eq!(
        offsets,
        (51..=80).collect::<Vec<_>>(),
        "exactly what was missed"
    );
    // The dead node's client leaves presence once its entry expires.
    let gone = async {
        loop {
            let Ok(Reply::Presence(presence)) =
                publisher.request(PresenceRequest::new("feed")).await
            else {
                panic!("presence");
            };
            let readers = presence
                .clients
                .iter()
                .filter(|p| p.info.name == "reader")
                .count();
            if readers == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), gone)
        .await
        .expect("the dead node's reader leaves presence within its expiry (2 s)");
}

/// Posts `n` publications, checking each is acked.
async fn publish_all(publisher: &mut Client, channel: &str, range: std::ops::Range<u64>) {
    for n in range {
        publish_reply(
            publisher
                .request(PublishRequest::new(channel, Value::from(n)))
                .await,
        );
    }
}

/// Polls `/ready` until it answers `status` (bounded).
async fn ready_becomes(node: &Node, status: &str) {
    let polled = async {
        while !http_get(node.addr, "/ready").await.starts_with(status) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), polled)
        .await
        .unwrap_or_else(|_| panic!("/ready answers {status} in time"));
}

/// Redis dies and comes back: publishes get a temporary error (never a hang),
/// `/ready` says 503 meanwhile and the clients stay connected; once Redis is
/// back, the node resubscribes and its subscribers recover, with
/// `recovered: true` when the stream survived (AOF) and under a new epoch
/// when it did not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_redis_fails_publishes_fail_fast_and_subscribers_recover_when_it_returns() {
    for aof in [true, false] {
        let dir = std::env::temp_dir().join(format!(
            "sacred-redis-{}-{:x}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let redis = Redis::start_in(dir, true).await;
        let node = Node::start(&redis, 60).await;
        let (mut publisher, _) =
            Client::connect(&node.url(), Codec::MsgPack, info("publisher")).await;
        let (mut reader, _) = Client::connect(&node.url(), Codec::MsgPack, info("reader")).await;
        let first = subscribe(&mut reader, "feed", false).await;
        publish_all(&mut publisher, "feed", 0..10).await;
        let mut seen = 0;
        while seen < 10 {
            seen = reader.publication().await.offset.unwrap();
        }
        ready_becomes(&node, "HTTP/1.1 200").await;

        let dir = redis.kill().await;
        let mut refused = 0;
        while refused < 3 {
            let started = std::time::Instant::now();
            let reply = publisher
                .request(PublishRequest::new("feed", Value::from(-1)))
                .await;
            let Err(err) = reply else {
                panic!("a publish while Redis is down must fail");
            };
            assert_eq!(err.code, 100, "{err:?}");
            assert!(err.temporary, "a temporary error: retry later");
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "failed within the timeout, no hang"
            );
            refused += 1;
        }
        ready_becomes(&node, "HTTP/1.1 503").await;

        // Back, with the append-only file (the stream survives) or without.
        if !aof {
            std::fs::remove_file(dir.join("appendonlydir").join("appendonly.aof.1.incr.aof")).ok();
            std::fs::remove_dir_all(dir.join("appendonlydir")).ok();
        }
        let redis = Redis::start_in(dir, aof).await;
        ready_becomes(&node, "HTTP/1.1 200").await;
        assert_eq!(
            reader.closed().await,
            Some(3005),
            "told to recover once pub/sub is back"
        );
        let (mut reader, _) = Client::connect(&node.url(), Codec::MsgPack, info("reader")).await;
        let mut again = SubscribeRequest::new("feed");
        again.recover = Some(StreamPosition::new(seen, first.epoch.clone().unwrap()));
        let reply = subscribe_reply(reader.request(again).await);
        if aof {
            assert!(
                reply.recovered,
                "the stream survived in the append-only file"
            );
            assert_eq!(reply.offset, Some(10));
            assert_eq!(reply.epoch, first.epoch);
        } else {
            assert!(!reply.recovered, "the stream is gone");
            assert_ne!(reply.epoch, first.epoch, "a new epoch: the client reloads");
        }
        publish_all(&mut publisher, "feed", 10..11).await;
        let next = reader.publication().await;
        assert_eq!(next.offset, Some(reply.offset.unwrap() + 1), "live again");
        drop(redis);
    }
}

/// In-process nodes on `redis` (the same code as the binary, reachable for
/// a race test and through the `Hub` API).
async fn in_process_node(redis: &Redis) -> Server {
    in_process_node_with(redis, unlimited()).await
}

async fn in_process_node_with(redis: &Redis, options: sacred_server::HubOptions) -> Server {
    let broker =
        sacred_server::RedisBroker::connect(sacred_server::RedisConfig::new([redis.url()]))
            .await
            .expect("Redis is up");
    let presence = broker.presence();
    let mut namespace = sacred_server::NamespaceOptions::default();
    namespace.history_size = 100_000;
    let builder = sacred_server::Hub::builder()
        .options(options)
        .namespace("", namespace)
        .broker(broker)
        .presence_store(presence);
    Server::start(builder).await
}

/// The recovery race across nodes: subscribers come to node A again and
/// again while node B publishes without pause. Each must see the stream
/// continue exactly after its reply's offset: pub/sub delivers later than
/// the stream append, so a node that did not buffer a new subscriber's
/// deliveries while reading its position, and drop what the reply covers,
/// would repeat publications here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_on_one_node_while_another_publishes_misses_and_repeats_nothing() {
    let redis = Redis::start().await;
    let (a, b) = (in_process_node(&redis).await, in_process_node(&redis).await);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publishing = {
        let (url, stop) = (b.url(), std::sync::Arc::clone(&stop));
        tokio::spawn(async move {
            let (mut publisher, _) = Client::connect(&url, Codec::MsgPack, info("publisher")).await;
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                publish_reply(
                    publisher
                        .request(PublishRequest::new("race", Value::from(n)))
                        .await,
                );
                n += 1;
            }
            n
        })
    };
    let mut position: Option<StreamPosition> = None;
    for round in 0..20 {
        let (mut reader, _) = Client::connect(&a.url(), Codec::MsgPack, info("reader")).await;
        let mut request = SubscribeRequest::new("race");
        request.recover = position.clone();
        let reply = subscribe_reply(reader.request(request).await);
        let mut expected = reply.offset.unwrap();
        if let Some(position) = &position {
            assert!(reply.recovered, "round {round}: within the window");
            let recovered: Vec<_> = reply
                .publications
                .iter()
                .map(|p| p.offset.unwrap())
                .collect();
            assert_eq!(
                recovered,
                (position.offset + 1..=expected).collect::<Vec<_>>(),
                "round {round}: the gap, once"
            );
        }
        for _ in 0..30 {
            let publication = reader.publication().await;
            assert_eq!(
                publication.offset,
                Some(expected + 1),
                "round {round}: no gap, no repeat"
            );
            expected += 1;
        }
        position = Some(StreamPosition::new(expected, reply.epoch.clone().unwrap()));
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    let published = publishing.await.unwrap();
    assert!(
        published > 600,
        "the publisher kept publishing ({published})"
    );
}

/// A graceful shutdown's `migrate` advice moves a client to another node
/// with nothing lost: it reconnects there with its position and recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_moves_a_client_to_another_node_with_nothing_lost() {
    let redis = Redis::start().await;
    let leaving = Node::start(&redis, 60).await;
    let staying = Node::start(&redis, 60).await;
    let (mut publisher, _) = Client::connect(&staying.url(), Codec::Json, info("publisher")).await;
    let (mut reader, _) = Client::connect(&leaving.url(), Codec::Json, info("reader")).await;
    let first = subscribe(&mut reader, "moving", false).await;
    publish_all(&mut publisher, "moving", 0..5).await;
    let mut seen = 0;
    while seen < 5 {
        seen = reader.publication().await.offset.unwrap();
    }
    let pid = leaving.child.id().expect("running").to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    match reader.push().await {
        Push::Migrate(_) => {}
        other => panic!("expected migrate advice, got {other:?}"),
    }
    // Publishing goes on while the reader moves.
    publish_all(&mut publisher, "moving", 5..15).await;
    let (mut moved, _) = Client::connect(&staying.url(), Codec::Json, info("reader")).await;
    let mut again = SubscribeRequest::new("moving");
    again.recover = Some(StreamPosition::new(seen, first.epoch.clone().unwrap()));
    let reply = subscribe_reply(moved.request(again).await);
    assert!(reply.recovered);
    let offsets: Vec<_> = reply
        .publications
        .iter()
        .map(|p| p.offset.unwrap())
        .collect();
    assert_eq!(offsets, (6..=15).collect::<Vec<_>>());
    drop(reader);
}

/// A user's connections are counted by every node together (the basis of
/// per-user limits), and a closed connection stops counting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_s_connections_are_counted_across_nodes() {
    let redis = Redis::start().await;
    let mut options = sacred_server::HubOptions::default();
    options.api_keys = vec![sacred_server::ApiKey::from_plain("ada-key", "ada")];
    let a = in_process_node_with(&redis, options.clone()).await;
    let b = in_process_node_with(&redis, options).await;
    let signed_in = |url: String| async move {
        let mut client = Client::open(&url, Codec::MsgPack).await;
        client
            .connect_with(ConnectRequest::new(Some("ada-key".into()), info("ada")))
            .await
            .expect("a valid key");
        client
    };
    let on_a = signed_in(a.url()).await;
    let mut on_b = signed_in(b.url()).await;
    let (_anonymous, _) = Client::connect(&b.url(), Codec::MsgPack, info("guest")).await;
    for node in [&a, &b] {
        assert_eq!(
            node.hub.user_connections("ada").await.unwrap(),
            2,
            "one on each node"
        );
    }
    on_b.close_normally().await;
    let counted_down = async {
        while a.hub.user_connections("ada").await.unwrap() != 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WAIT, counted_down)
        .await
        .expect("the closed connection stops counting");
    drop(on_a);
}

/// The per-user connection limit holds across nodes: with a limit of 2, a
/// user with one connection on each node is refused a third on either
/// (3504), and gets it once one closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_user_limit_holds_across_nodes() {
    let redis = Redis::start().await;
    let mut options = sacred_server::HubOptions::default();
    options.api_keys = vec![sacred_server::ApiKey::from_plain("ada-key", "ada")];
    options.max_connections_per_user = 2;
    let a = in_process_node_with(&redis, options.clone()).await;
    let b = in_process_node_with(&redis, options).await;
    let connect = |url: String| async move {
        let mut client = Client::open(&url, Codec::MsgPack).await;
        client
            .send(&[ClientMessage::new(
                1,
                ConnectRequest::new(Some("ada-key".into()), info("ada")),
            )])
            .await;
        match client.try_reply(1).await {
            Some(reply) => {
                reply.expect("connected");
                Ok(client)
            }
            None => Err(client.closed().await),
        }
    };
    let mut on_a = connect(a.url()).await.expect("first");
    let _on_b = connect(b.url()).await.expect("second, on the other node");
    for node in [&a, &b] {
        assert_eq!(connect(node.url()).await.err(), Some(Some(3504)));
    }
    on_a.close_normally().await;
    let freed = async {
        while b.hub.user_connections("ada").await.unwrap() != 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WAIT, freed)
        .await
        .expect("counted down");
    assert!(connect(b.url()).await.is_ok(), "the freed place");
}

/// Channels spread over two Redis shards by their names: both shards hold
/// streams, and every channel still crosses nodes in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_are_sharded_over_several_redis_instances() {
    let (first, second) = (Redis::start().await, Redis::start().await);
    let node = || async {
        let config = sacred_server::RedisConfig::new([first.url(), second.url()]);
        let broker = sacred_server::RedisBroker::connect(config)
            .await
            .expect("both shards up");
        let presence = broker.presence();
        Server::start(
            sacred_server::Hub::builder()
                .options(unlimited())
                .broker(broker)
                .presence_store(presence),
        )
        .await
    };
    let (a, b) = (node().await, node().await);
    let channels: Vec<String> = (0..20).map(|n| format!("shard{n}")).collect();
    let (mut reader, _) = Client::connect(&a.url(), Codec::MsgPack, info("reader")).await;
    for channel in &channels {
        subscribe(&mut reader, channel, false).await;
    }
    let (mut writer, _) = Client::connect(&b.url(), Codec::MsgPack, info("writer")).await;
    for channel in &channels {
        publish_all(&mut writer, channel, 0..3).await;
    }
    let mut seen = std::collections::HashMap::<String, u64>::new();
    for _ in 0..channels.len() * 3 {
        let publication = reader.publication().await;
        let last = seen.entry(publication.channel.clone()).or_default();
        assert_eq!(
            publication.offset,
            Some(*last + 1),
            "{}: in order",
            publication.channel
        );
        *last += 1;
    }
    for redis in [&first, &second] {
        let client = redis::Client::open(redis.url()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let keys: u64 = redis::cmd("DBSIZE")
            .query_async(&mut connection)
            .await
            .unwrap();
        assert!(keys > 0, "every shard holds some channels' streams");
    }

    // One shard's Redis restarts: only its channels' subscribers recover.
    let on = |redis: &Redis| {
        let client = redis::Client::open(redis.url()).unwrap();
        let channels = channels.clone();
        async move {
            let mut connection = client.get_multiplexed_async_connection().await.unwrap();
            for channel in channels {
                let held: bool = redis::cmd("EXISTS")
                    .arg(format!("sacred.s.{channel}"))
                    .query_async(&mut connection)
                    .await
                    .unwrap();
                if held {
                    return channel;
                }
            }
            panic!("a channel on every shard");
        }
    };
    let (steady, restarted) = (on(&first).await, on(&second).await);
    let (mut steady_reader, _) = Client::connect(&a.url(), Codec::MsgPack, info("steady")).await;
    subscribe(&mut steady_reader, &steady, false).await;
    let (mut restarted_reader, _) = Client::connect(&a.url(), Codec::MsgPack, info("moved")).await;
    subscribe(&mut restarted_reader, &restarted, false).await;
    let dir = second.kill().await;
    let _second = Redis::start_in(dir, false).await;
    assert_eq!(
        restarted_reader.closed().await,
        Some(3005),
        "the restarted shard's subscribers recover"
    );
    publish_all(&mut writer, &steady, 3..4).await;
    assert_eq!(
        steady_reader.publication().await.offset,
        Some(4),
        "the other shard's subscribers stay, live"
    );
}

/// A free loopback TCP port (Sentinel speaks TCP only): bound, read, freed.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` on a loopback TCP port with `args`, killed on drop.
async fn tcp_redis(port: u16, dir: &std::path::Path, args: &[&str]) -> Child {
    let child = Command::new("redis-server")
        .args(args)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server runs (scripts/test installs it)");
    let ready = async {
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(WAIT, ready)
        .await
        .expect("redis-server listens in time");
    child
}

/// Polls `query` against the Redis (or Sentinel) on `port` until `done`
/// holds for its answer (bounded).
async fn poll_redis<T: redis::FromRedisValue>(
    port: u16,
    query: redis::Cmd,
    done: impl Fn(&T) -> bool,
    what: &str,
) {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let polled = async {
        loop {
            if let Ok(mut connection) = client.get_multiplexed_async_connection().await
                && let Ok(answer) = query.query_async::<T>(&mut connection).await
                && done(&answer)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), polled)
        .await
        .unwrap_or_else(|_| panic!("{what} in time"));
}

/// Redis Sentinel: the master is killed; Sentinel promotes the replica,
/// both nodes move to it, the subscriber is told to recover (the switch's
/// pub/sub messages never arrive) and recovers from the replicated stream
/// with `recovered: true`, and publishing goes on from the new master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_fails_over_and_the_nodes_follow_the_new_master() {
    let dir = std::env::temp_dir().join(format!(
        "sacred-sentinel-{}-{:x}",
        std::process::id(),
        rand_suffix()
    ));
    for sub in ["master", "replica", "sentinel"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let (master_port, replica_port, sentinel_port) = (free_port(), free_port(), free_port());
    let no_persistence = ["--save", "", "--appendonly", "no"];
    let mut master = tcp_redis(master_port, &dir.join("master"), &no_persistence).await;
    let master_address = master_port.to_string();
    let replica_args = [
        &no_persistence[..],
        &["--replicaof", "127.0.0.1", &master_address],
    ]
    .concat();
    let _replica = tcp_redis(replica_port, &dir.join("replica"), &replica_args).await;
    let sentinel_conf = dir.join("sentinel").join("sentinel.conf");
    std::fs::write(
        &sentinel_conf,
        format!(
            "sentinel monitor main 127.0.0.1 {master_port} 1\n\
             sentinel down-after-milliseconds main 500\n\
             sentinel failover-timeout main 3000\n"
        ),
    )
    .unwrap();
    let conf = sentinel_conf.to_str().unwrap();
    let _sentinel = tcp_redis(sentinel_port, &dir.join("sentinel"), &[conf, "--sentinel"]).await;
    // Sentinel must know the replica before it can promote it.
    let mut replicas = redis::cmd("SENTINEL");
    replicas.arg("replicas").arg("main");
    poll_redis::<Vec<redis::Value>>(
        sentinel_port,
        replicas,
        |replicas| !replicas.is_empty(),
        "Sentinel sees the replica",
    )
    .await;

    let url = format!("redis+sentinel://127.0.0.1:{sentinel_port}/main");
    let node = || async {
        let broker = sacred_server::RedisBroker::connect(sacred_server::RedisConfig::new([&url]))
            .await
            .expect("Sentinel names the master");
        let presence = broker.presence();
        let mut namespace = sacred_server::NamespaceOptions::default();
        namespace.history_size = 1000;
        Server::start(
            sacred_server::Hub::builder()
                .options(unlimited())
                .namespace("", namespace)
                .broker(broker)
                .presence_store(presence),
        )
        .await
    };
    let (a, b) = (node().await, node().await);
    let (mut reader, _) = Client::connect(&a.url(), Codec::MsgPack, info("reader")).await;
    let first = subscribe(&mut reader, "feed", false).await;
    let (mut publisher, _) = Client::connect(&b.url(), Codec::MsgPack, info("publisher")).await;
    publish_all(&mut publisher, "feed", 0..10).await;
    for offset in 1..=10 {
        assert_eq!(reader.publication().await.offset, Some(offset));
    }
    // Replication is asynchronous: the test waits until the replica holds
    // all ten before it kills the master (what it lacks would be lost).
    let mut wait = redis::cmd("WAIT");
    wait.arg(1).arg(1000);
    poll_redis::<i64>(
        master_port,
        wait,
        |acked| *acked == 1,
        "the replica caught up",
    )
    .await;

    master.kill().await.unwrap();
    let mut named = redis::cmd("SENTINEL");
    named.arg("get-master-addr-by-name").arg("main");
    let promoted = replica_port.to_string();
    poll_redis::<(String, String)>(
        sentinel_port,
        named,
        |(_, port)| *port == promoted,
        "Sentinel promotes the replica",
    )
    .await;

    // Publishing goes on from the new master: temporary errors until the
    // node has moved, then acks.
    let retried = async {
        loop {
            match publisher
                .request(PublishRequest::new("feed", Value::from(10u64)))
                .await
            {
                Ok(_) => return,
                Err(err) => assert!(err.temporary, "only temporary errors: {err:?}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), retried)
        .await
        .expect("a publish succeeds on the new master");
    assert_eq!(
        reader.closed().await,
        Some(3005),
        "told to recover after the switch"
    );
    let (mut reader, _) = Client::connect(&a.url(), Codec::MsgPack, info("reader")).await;
    let mut again = SubscribeRequest::new("feed");
    again.recover = Some(StreamPosition::new(10, first.epoch.clone().unwrap()));
    let reply = subscribe_reply(reader.request(again).await);
    assert!(reply.recovered, "the replica held the stream");
    assert_eq!(reply.epoch, first.epoch);
    assert_eq!(reply.offset, Some(11));
    assert_eq!(
        reply
            .publications
            .iter()
            .map(|p| p.offset)
            .collect::<Vec<_>>(),
        vec![Some(11)],
        "the publication made after the switch, once"
    );
    publish_all(&mut publisher, "feed", 11..12).await;
    assert_eq!(reader.publication().await.offset, Some(12), "live again");
    let _ = std::fs::remove_dir_all(&dir);
}
