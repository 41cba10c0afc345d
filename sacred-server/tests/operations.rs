//! What an operator sees: `/metrics` (counters moving with real traffic,
//! labels bounded, the field coherence falling when a subscriber stops
//! reading), `/health` as JSON with the backends' state, `/ready` following
//! the store and the drain, and `/metrics` on an internal router.
//!
//! The process has one metrics recorder, shared by every hub in it, so the
//! tests here take turns (`TURN`) and compare counters before and after.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use metrics_exporter_prometheus::PrometheusHandle;
use sacred_proto::*;
use sacred_server::{HistoryError, HistoryStore, Hub, MemoryHistory, Page, Query, Retention};
use support::*;

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The process's Prometheus recorder, installed once.
fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| sacred_server::install_prometheus().expect("the first recorder"))
        .clone()
}

/// The samples of a scrape, as `name{labels}` -> value.
struct Scrape(Vec<(String, f64)>);

impl Scrape {
    async fn of(addr: std::net::SocketAddr) -> Scrape {
        let response = http_get(addr, "/metrics").await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(
            response.contains("content-type: text/plain; version=0.0.4"),
            "{response}"
        );
        let body = response.split_once("\r\n\r\n").unwrap().1;
        let samples = body
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').unwrap();
                (series.to_owned(), value.parse().unwrap())
            })
            .collect();
        Scrape(samples)
    }

    /// The value of the one series named exactly `series`, 0 if absent.
    fn get(&self, series: &str) -> f64 {
        self.0
            .iter()
            .find(|(name, _)| name == series)
            .map_or(0.0, |(_, value)| *value)
    }

    fn series(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(name, _)| name.as_str())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_real_traffic_with_bounded_labels() {
    let _turn = TURN.lock().await;
    let server = Server::start(Hub::builder().options(unlimited()).prometheus(recorder())).await;
    let before = Scrape::of(server.addr).await;

    let (mut reader, _) = Client::connect(
        &server.url(),
        Codec::MsgPack,
        ClientInfo::new("reader", "agent", "python", "t"),
    )
    .await;
    // A client describing itself with words no label may take.
    let (mut writer, _) = Client::connect(
        &server.url(),
        Codec::Json,
        ClientInfo::new("<script>", "<script>alert(1)</script>", "user-1234", "t"),
    )
    .await;
    subscribe_reply(reader.request(SubscribeRequest::new("room")).await);
    for n in 0..5 {
        publish_reply(
            writer
                .request(PublishRequest::new("room", Value::from(n)))
                .await,
        );
    }
    for _ in 0..5 {
        reader.publication().await;
    }
    let refused = writer
        .request(PublishRequest::new("nowhere:x", Value::from(0)))
        .await;
    assert_eq!(error_code(refused), 102);

    let now = Scrape::of(server.addr).await;
    let delta = |series: &str| now.get(series) - before.get(series);
    assert_eq!(
        now.get(r#"sacred_connections{kind="agent",runtime="python"}"#),
        1.0
    );
    assert_eq!(
        now.get(r#"sacred_connections{kind="other",runtime="other"}"#),
        1.0
    );
    assert_eq!(
        delta(r#"sacred_connections_accepted_total{kind="other",runtime="other"}"#),
        1.0
    );
    assert_eq!(delta(r#"sacred_commands_total{command="publish"}"#), 6.0);
    assert_eq!(delta(r#"sacred_commands_total{command="connect"}"#), 2.0);
    assert_eq!(delta(r#"sacred_errors_total{code="102"}"#), 1.0);
    assert_eq!(delta("sacred_publications_total"), 5.0);
    assert_eq!(delta("sacred_deliveries_total"), 5.0);
    assert!(delta("sacred_received_bytes_total") > 0.0);
    assert!(delta("sacred_sent_bytes_total") > 0.0);
    assert!(delta(r#"sacred_command_duration_seconds_count{command="subscribe"}"#) >= 1.0);
    assert_eq!(now.get("sacred_channels"), 1.0);
    assert_eq!(now.get("sacred_subscriptions"), 1.0);
    assert_eq!(now.get("sacred_field_coherence"), 1.0);
    assert_eq!(now.get("sacred_broker_up"), 1.0);
    assert_eq!(
        now.get(&format!(
            r#"sacred_build_info{{version="{}"}}"#,
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    for series in now.series() {
        let labels = series.split_once('{').map_or("", |(_, labels)| labels);
        assert!(
            !labels.contains("script") && !labels.contains("user-1234") && !labels.contains("room"),
            "no client's words, user or channel in a label: {series}"
        );
    }

    writer.close_normally().await;
    let ended = wait_for(server.addr, |scrape| {
        scrape.get(r#"sacred_disconnects_total{code="1000"}"#)
            > before.get(r#"sacred_disconnects_total{code="1000"}"#)
    })
    .await;
    assert_eq!(
        ended.get(r#"sacred_connections{kind="other",runtime="other"}"#),
        0.0
    );
}

/// A subscriber that stops reading falls out of step: its queue does not
/// drain within the window, and the coherence drops to the share that
/// keeps up; once it reads again, the field is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_coherence_falls_when_a_subscriber_stops_reading() {
    let _turn = TURN.lock().await;
    let mut options = unlimited();
    options.coherence_window = Duration::from_millis(50);
    // Room for everything: the stalled reader is behind, not cut off.
    options.outbound_queue_bytes = 64 << 20;
    options.slow_consumer_patience = Duration::from_millis(10);
    let server = Server::start(Hub::builder().options(options).prometheus(recorder())).await;
    let (mut keeps_up, _) = Client::connect(&server.url(), Codec::MsgPack, info("fast")).await;
    let (mut stalls, _) = Client::connect(&server.url(), Codec::MsgPack, info("stalled")).await;
    let (mut publisher, _) = Client::connect(&server.url(), Codec::MsgPack, info("pub")).await;
    subscribe_reply(keeps_up.request(SubscribeRequest::new("feed")).await);
    subscribe_reply(stalls.request(SubscribeRequest::new("feed")).await);

    // Far more than the loopback socket buffers hold, read by one only.
    let payload = Value::from("x".repeat(8000));
    let count = 2000;
    let reading = tokio::spawn(async move {
        for _ in 0..count {
            keeps_up.publication().await;
        }
        keeps_up
    });
    for _ in 0..count {
        publish_reply(
            publisher
                .request(PublishRequest::new("feed", payload.clone()))
                .await,
        );
    }
    let mut keeps_up = tokio::time::timeout(WAIT * 4, reading)
        .await
        .expect("the fast reader keeps up")
        .unwrap();
    let behind = wait_for(server.addr, |s| s.get("sacred_field_coherence") < 1.0).await;
    assert_eq!(behind.get("sacred_subscribers"), 2.0);
    assert_eq!(behind.get("sacred_field_coherence"), 0.5);
    assert_eq!(behind.get("sacred_field_coherence_window_seconds"), 0.05);

    for _ in 0..count {
        stalls.publication().await;
    }
    wait_for(server.addr, |s| s.get("sacred_field_coherence") == 1.0).await;
    keeps_up.close_normally().await;
}

/// Scrapes until `condition` holds (bounded by [`WAIT`]).
async fn wait_for(addr: std::net::SocketAddr, condition: impl Fn(&Scrape) -> bool) -> Scrape {
    let polled = async {
        loop {
            let scrape = Scrape::of(addr).await;
            if condition(&scrape) {
                return scrape;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WAIT, polled)
        .await
        .expect("the metrics show it in time")
}

/// A history store that fails on demand: the hub's view of a store that
/// lost its disk.
#[derive(Clone, Default)]
struct Failing {
    store: Arc<MemoryHistory>,
    failing: Arc<AtomicBool>,
}

impl HistoryStore for Failing {
    fn append<'a>(
        &'a self,
        channel: &'a str,
        publication: Publication,
        retention: Retention,
    ) -> BoxFuture<'a, Result<Arc<Publication>, HistoryError>> {
        if self.failing.load(Ordering::SeqCst) {
            return Box::pin(async { Err(HistoryError::store("disk I/O error")) });
        }
        self.store.append(channel, publication, retention)
    }

    fn read<'a>(
        &'a self,
        channel: &'a str,
        query: Query,
    ) -> BoxFuture<'a, Result<Page, HistoryError>> {
        self.store.read(channel, query)
    }
}

fn json_body(response: &str) -> serde_json::Value {
    serde_json::from_str(response.split_once("\r\n\r\n").unwrap().1).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_names_the_store_and_its_last_error_and_ready_follows_it() {
    let _turn = TURN.lock().await;
    let store = Failing::default();
    let server = Server::start(
        Hub::builder()
            .options(unlimited())
            .history_store(store.clone()),
    )
    .await;
    let (mut client, _) = Client::connect(&server.url(), Codec::Json, info("c")).await;
    let health = json_body(&http_get(server.addr, "/health").await);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(health["connections"], 1);
    assert_eq!(health["broker"]["up"], true);
    assert_eq!(health["store"]["up"], true);
    assert!(health["store"]["last_error"].is_null());

    store.failing.store(true, Ordering::SeqCst);
    let refused = client
        .request(PublishRequest::new("room", Value::from(1)))
        .await;
    assert_eq!(error_code(refused), 100);
    let response = http_get(server.addr, "/ready").await;
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(response.ends_with("store unavailable"), "{response}");
    let response = http_get(server.addr, "/health").await;
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "alive, though degraded"
    );
    let health = json_body(&response);
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["store"]["up"], false);
    let error = health["store"]["last_error"]["message"].as_str().unwrap();
    assert!(error.contains("disk I/O error"), "{error}");

    store.failing.store(false, Ordering::SeqCst);
    publish_reply(
        client
            .request(PublishRequest::new("room", Value::from(2)))
            .await,
    );
    assert!(
        http_get(server.addr, "/ready")
            .await
            .starts_with("HTTP/1.1 200")
    );
    let health = json_body(&http_get(server.addr, "/health").await);
    assert_eq!(health["status"], "ok");
    assert!(
        health["store"]["last_error"]["message"].is_string(),
        "the last error stays on record"
    );

    let hub = server.hub.clone();
    let shutdown = tokio::spawn(async move { hub.shutdown().await });
    wait_until(|| async {
        json_body(&http_get(server.addr, "/health").await)["status"] == "draining"
    })
    .await;
    assert!(
        http_get(server.addr, "/ready")
            .await
            .starts_with("HTTP/1.1 503")
    );
    client.close_normally().await;
    tokio::time::timeout(WAIT, shutdown).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_apart_serves_them_on_the_internal_router_only() {
    let _turn = TURN.lock().await;
    let (router, hub) = Hub::builder()
        .prometheus(recorder())
        .metrics_apart()
        .build()
        .unwrap();
    let internal = Server::serve(hub.metrics_router(), hub.clone()).await;
    let public = Server::serve(router, hub).await;
    assert!(
        http_get(public.addr, "/metrics")
            .await
            .starts_with("HTTP/1.1 404")
    );
    assert!(
        http_get(public.addr, "/ready")
            .await
            .starts_with("HTTP/1.1 200")
    );
    let scrape = Scrape::of(internal.addr).await;
    assert_eq!(scrape.get("sacred_ready"), 1.0);
    assert!(
        http_get(internal.addr, "/health")
            .await
            .starts_with("HTTP/1.1 200")
    );
}

#[tokio::test]
async fn the_binary_counts_and_serves_metrics_unless_told_not_to() {
    let (_on, addr) = spawn_binary(Vec::<&str>::new()).await;
    let page = http_get(addr, "/metrics").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("sacred_build_info"), "{page}");
    let (_off, addr) = spawn_binary(["--metrics", "false"]).await;
    let page = http_get(addr, "/metrics").await;
    assert!(page.starts_with("HTTP/1.1 404"), "{page}");
    assert!(http_get(addr, "/ready").await.starts_with("HTTP/1.1 200"));
}
