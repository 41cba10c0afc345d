//! Holding many connections: `idle` (the server's memory per connection) and
//! `connect` (how fast clients connect and subscribe). Each connection gets
//! its own small task as soon as it is up, answering the server's pings so
//! the heartbeat keeps it alive however long the rest takes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::Common;
use crate::stats::{Progress, Samples, rss};
use crate::wire::{Conn, Error};

/// `idle` settings.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct IdleArgs {
    /// Connections to hold.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Connections opened at once.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// Seconds to hold them once all are up (past a heartbeat round).
    #[arg(long, default_value_t = 12)]
    hold: u64,
}

/// `connect` settings.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct ConnectArgs {
    /// Clients to connect.
    #[arg(long, default_value_t = 5_000)]
    clients: usize,
    /// Clients connecting at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

/// Connections being held.
struct Held {
    /// Time each took to connect and subscribe.
    setup: Samples,
    /// Those that failed to come up.
    failed: u64,
    /// How long opening all of them took.
    elapsed: Duration,
    /// Connections up now.
    alive: Arc<AtomicU64>,
    /// Dropping this closes them all.
    _stop: watch::Sender<bool>,
}

/// Opens `n` connections, `concurrency` at a time, each subscribed to one of
/// 64 channels, and leaves each to a task that answers pings until stopped.
async fn open(common: &Common, n: usize, concurrency: usize, label: &str) -> Held {
    let (stop, stopped) = watch::channel(false);
    let alive = Arc::new(AtomicU64::new(0));
    let progress = Progress::start(
        format!("{label} {} {}", common.protocol_name(), common.codec_name()),
        vec![("connected", Arc::clone(&alive))],
    );
    let start = Instant::now();
    let results: Vec<Result<Duration, Error>> = futures_util::stream::iter(0..n)
        .map(|index| {
            let (alive, stopped) = (Arc::clone(&alive), stopped.clone());
            async move {
                let begun = Instant::now();
                let mut conn = Conn::start(
                    &common.url,
                    common.codec,
                    common.protocol,
                    "load-idle",
                    common.token.as_deref(),
                )
                .await?;
                conn.subscribe(&format!("idle-{}", index % 64)).await?;
                let took = begun.elapsed();
                alive.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(hold(conn, alive, stopped));
                Ok(took)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = start.elapsed();
    drop(progress);
    let mut setup = Samples::default();
    let mut failed = 0;
    for result in results {
        match result {
            Ok(took) => setup.record(took.as_nanos() as u64),
            Err(err) => {
                if failed == 0 {
                    eprintln!("first failure: {err}");
                }
                failed += 1;
            }
        }
    }
    Held {
        setup,
        failed,
        elapsed,
        alive,
        _stop: stop,
    }
}

/// Keeps a connection alive: its reads answer the server's pings.
async fn hold(mut conn: Conn, alive: Arc<AtomicU64>, mut stop: watch::Receiver<bool>) {
    loop {
        let received = tokio::select! {
            _ = stop.changed() => break,
            received = conn.recv(false) => received,
        };
        if received.is_err() {
            break;
        }
    }
    alive.fetch_sub(1, Ordering::Relaxed);
}

pub(crate) async fn idle(common: &Common, args: &IdleArgs) -> Result<Value, Error> {
    let before = common.server_rss();
    let held = open(common, args.connections, args.concurrency, "idle").await;
    let up = held.setup.len() as u64;
    let after_connect = common.server_rss();
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    let after_hold = common.server_rss();
    let alive = held.alive.load(Ordering::Relaxed);
    let per_connection = match (before, after_hold) {
        (Some(before), Some(after)) if up > 0 => json!(after.saturating_sub(before) / up),
        _ => Value::Null,
    };
    Ok(json!({
        "connections": args.connections,
        "connected": up,
        "failed": held.failed,
        "alive_after_hold": alive,
        "hold_s": args.hold,
        "server_rss_before_bytes": before,
        "server_rss_connected_bytes": after_connect,
        "server_rss_after_hold_bytes": after_hold,
        "server_bytes_per_connection": per_connection,
        "generator_rss_bytes": rss(std::process::id()),
    }))
}

pub(crate) async fn connect(common: &Common, args: &ConnectArgs) -> Result<Value, Error> {
    let held = open(common, args.clients, args.concurrency, "connect").await;
    let seconds = held.elapsed.as_secs_f64();
    let up = held.setup.len();
    Ok(json!({
        "clients": args.clients,
        "concurrency": args.concurrency,
        "connected": up,
        "failed": held.failed,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "connects_per_s": (up as f64 / seconds).round(),
        "connect_and_subscribe_us": held.setup.summary(),
        "server_rss_bytes": common.server_rss(),
    }))
}
