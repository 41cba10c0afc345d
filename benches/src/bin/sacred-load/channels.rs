//! Many channels, chat-like: clients in pairs, each pair on its own channel,
//! every client publishing at a fixed rate and receiving its pair's messages
//! and its own (two deliveries per publication).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::stats::{Samples, Traffic, TrafficArgs};
use crate::wire::{Conn, Error, Protocol, now_ns, payload};
use crate::{Common, connect_all};

/// `channels` settings.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct Args {
    /// Clients (pairs of them share a channel).
    #[arg(long, default_value_t = 2000)]
    clients: usize,
    /// Publications per second per client.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    #[command(flatten)]
    traffic: TrafficArgs,
}

pub(crate) async fn run(common: &Common, args: &Args) -> Result<Value, Error> {
    if common.protocol != Protocol::Sacred {
        return Err("channels runs against Sacred only; use --protocol sacred".to_owned());
    }
    if args.rate <= 0.0 {
        return Err("--rate must be positive".to_owned());
    }
    let clients = connect_all(common, args.clients, "load-chat", |index| {
        Some(format!("chat-{}", index / 2))
    })
    .await?;
    let shared = Arc::new(Traffic::default());
    let (stop, stopped) = watch::channel(false);
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let mut tasks = Vec::new();
    let n = clients.len();
    for (index, conn) in clients.into_iter().enumerate() {
        // Spread the clients' ticks over one period.
        let first = tokio::time::Instant::now() + period.mul_f64(index as f64 / n as f64);
        tasks.push(tokio::spawn(chat(
            conn,
            index,
            tokio::time::interval_at(first, period),
            args.traffic.payload,
            Arc::clone(&shared),
            stopped.clone(),
        )));
    }
    let label = format!("channels sacred {}", common.codec_name());
    let measured = shared
        .measure(
            label,
            common.server_pid,
            args.traffic.warmup,
            args.traffic.duration,
        )
        .await;
    let _ = stop.send(true);
    let mut latency = Samples::default();
    for task in tasks {
        latency.merge(task.await.map_err(|e| e.to_string())?);
    }
    Ok(json!({
        "clients": args.clients,
        "channels": args.clients.div_ceil(2),
        "rate_per_client": args.rate,
        "payload_bytes": args.traffic.payload,
        "seconds": measured.seconds,
        "published_per_s": measured.published_per_s,
        "delivered_per_s": measured.delivered_per_s,
        "latency_us": latency.summary(),
        "errors": shared.errors.load(Ordering::Relaxed),
        "server_rss_bytes": measured.server_rss,
        "cpu": measured.cpu,
    }))
}

async fn chat(
    mut conn: Conn,
    index: usize,
    mut tick: tokio::time::Interval,
    payload_bytes: usize,
    shared: Arc<Traffic>,
    mut stop: watch::Receiver<bool>,
) -> Samples {
    let channel = format!("chat-{}", index / 2);
    let mut samples = Samples::default();
    loop {
        tokio::select! {
            _ = stop.changed() => return samples,
            _ = tick.tick() => {
                let seq = shared.published.fetch_add(1, Ordering::Relaxed);
                let frame = conn.publish_frame(&channel, &payload(seq, payload_bytes));
                if conn.send(&[frame]).await.is_err() {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    return samples;
                }
            }
            received = conn.recv(shared.measuring.load(Ordering::Relaxed)) => {
                let Ok(received) = received else {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    return samples;
                };
                shared.delivered.fetch_add(received.deliveries, Ordering::Relaxed);
                shared.errors.fetch_add(received.errors, Ordering::Relaxed);
                if let Some(sent) = received.sent_ns {
                    samples.record(now_ns().saturating_sub(sent));
                }
            }
        }
    }
}
