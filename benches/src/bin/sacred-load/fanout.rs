//! Fan-out: N subscribers on one channel, P publishers at a fixed total rate
//! or flat out. Flat out is closed-loop: at most `window` publications per
//! subscriber are in flight (published, not yet received), so queues stay
//! bounded and the latency is that of the maximum sustainable rate.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::SinkExt;
use sacred_proto::{ClientMessage, PublishRequest, Push, ServerMessage};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};

use crate::stats::{Samples, Traffic, TrafficArgs};
use crate::wire::{Conn, Error, Protocol, now_ns, payload, publication_push, stamp};
use crate::{Common, connect_all};

/// Fan-out settings.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct Args {
    /// Subscribers on the channel.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Publishing connections.
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Publications per second, all publishers together; 0 is flat out.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Flat out: publications in flight per subscriber.
    #[arg(long, default_value_t = 32)]
    window: usize,
    #[command(flatten)]
    traffic: TrafficArgs,
}

/// What every task shares.
struct Shared {
    traffic: Traffic,
    /// Flat out: free in-flight slots, one per delivery owed.
    slots: Semaphore,
}

const CHANNEL: &str = "bench-fanout";

pub(crate) async fn run(common: &Common, args: &Args) -> Result<Value, Error> {
    let subscribers = connect_all(common, args.subscribers, "load-subscriber", |_| {
        Some(CHANNEL.to_owned())
    })
    .await?;
    let publishers = connect_all(common, args.publishers, "load-publisher", |_| None).await?;
    let shared = Arc::new(Shared {
        traffic: Traffic::default(),
        slots: Semaphore::new(args.window * args.subscribers),
    });
    let (stop, stopped) = watch::channel(false);
    // About 8 latency samples per publication, spread over the subscribers:
    // decoding costs the generator CPU it shares with the server.
    let every = args.subscribers.div_ceil(8) as u64;
    let mut receiving = Vec::new();
    for (index, conn) in subscribers.into_iter().enumerate() {
        receiving.push(tokio::spawn(subscribe(
            conn,
            index as u64,
            every,
            Arc::clone(&shared),
            stopped.clone(),
        )));
    }
    let padding = "x".repeat(args.traffic.payload);
    let mut publishing = Vec::new();
    for conn in publishers {
        let period = (args.rate > 0)
            .then(|| Duration::from_secs_f64(args.publishers as f64 / args.rate as f64));
        publishing.push(tokio::spawn(publish(
            conn,
            common.protocol,
            period,
            args.subscribers as u32,
            padding.clone(),
            Arc::clone(&shared),
            stopped.clone(),
        )));
    }

    let label = format!("fanout {} {}", common.protocol_name(), common.codec_name());
    let measured = shared
        .traffic
        .measure(
            label,
            common.server_pid,
            args.traffic.warmup,
            args.traffic.duration,
        )
        .await;

    let _ = stop.send(true);
    shared.slots.close();
    let mut latency = Samples::default();
    for task in receiving {
        latency.merge(task.await.map_err(|e| e.to_string())?);
    }
    for task in publishing {
        let _ = task.await;
    }
    Ok(json!({
        "subscribers": args.subscribers,
        "publishers": args.publishers,
        "rate": if args.rate == 0 { json!("max") } else { json!(args.rate) },
        "payload_bytes": args.traffic.payload,
        "seconds": measured.seconds,
        "published_per_s": measured.published_per_s,
        "delivered_per_s": measured.delivered_per_s,
        "latency_us": latency.summary(),
        "errors": shared.traffic.errors.load(Ordering::Relaxed),
        "server_rss_bytes": measured.server_rss,
        "server_cpu_ns_per_delivery": measured.cpu["server_cores"]
            .as_f64()
            .map(|cores| (cores * 1e9 / measured.delivered_per_s).round()),
        "cpu": measured.cpu,
    }))
}

async fn subscribe(
    mut conn: Conn,
    index: u64,
    every: u64,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Samples {
    let mut samples = Samples::default();
    let mut count = index;
    loop {
        let frame = tokio::select! {
            _ = stop.changed() => return samples,
            frame = conn.recv_frame() => frame,
        };
        let Ok(frame) = frame else {
            shared.traffic.errors.fetch_add(1, Ordering::Relaxed);
            return samples;
        };
        // Publications are counted by their first bytes; one in `every` is
        // decoded for its latency, and everything else is decoded in full.
        if conn.is_publication(&frame) {
            shared.traffic.delivered.fetch_add(1, Ordering::Relaxed);
            shared.slots.add_permits(1);
            count += 1;
            if count % every == 0 && shared.traffic.measuring.load(Ordering::Relaxed) {
                let received = now_ns();
                if let Ok(messages) = conn.decode(&frame)
                    && let Some(ServerMessage::Push(Push::Publication(publication))) =
                        messages.first()
                    && let Some((sent, _)) = stamp(&publication.data)
                {
                    samples.record(received.saturating_sub(sent));
                }
            }
            continue;
        }
        let Ok(messages) = conn.decode(&frame) else {
            shared.traffic.errors.fetch_add(1, Ordering::Relaxed);
            return samples;
        };
        for message in messages {
            match message {
                ServerMessage::Push(Push::Publication(_)) => {
                    shared.traffic.delivered.fetch_add(1, Ordering::Relaxed);
                    shared.slots.add_permits(1);
                }
                ServerMessage::Push(Push::Ping(_)) if conn.pong().await.is_err() => {
                    shared.traffic.errors.fetch_add(1, Ordering::Relaxed);
                    return samples;
                }
                _ => {}
            }
        }
    }
}

async fn publish(
    mut conn: Conn,
    protocol: Protocol,
    period: Option<Duration>,
    subscribers: u32,
    padding: String,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = period.map(tokio::time::interval);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            ready = next_slot(&mut tick, &shared.slots, subscribers) => {
                if !ready {
                    return;
                }
                let seq = shared.traffic.published.fetch_add(1, Ordering::Relaxed) + 1;
                let data = payload(seq, &padding);
                let frame = match protocol {
                    Protocol::Sacred => {
                        let id = conn.id();
                        conn.frame(&ClientMessage::new(id, PublishRequest::new(CHANNEL, data)))
                    }
                    Protocol::Raw => conn.frame(&publication_push(CHANNEL, seq, data)),
                };
                if conn.socket.send(frame).await.is_err() {
                    shared.traffic.errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            messages = conn.recv() => match messages {
                Ok(messages) => {
                    for message in messages {
                        match message {
                            ServerMessage::Reply { result: Err(_), .. } => {
                                shared.traffic.errors.fetch_add(1, Ordering::Relaxed);
                            }
                            ServerMessage::Push(Push::Ping(_)) => {
                                let _ = conn.pong().await;
                            }
                            _ => {}
                        }
                    }
                }
                Err(_) => {
                    shared.traffic.errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
        }
    }
}

/// Waits for the next tick (fixed rate) or for a delivery slot per
/// subscriber (flat out); false once the run is over.
async fn next_slot(
    tick: &mut Option<tokio::time::Interval>,
    slots: &Semaphore,
    subscribers: u32,
) -> bool {
    match tick {
        Some(tick) => {
            tick.tick().await;
            true
        }
        None => match slots.acquire_many(subscribers).await {
            Ok(permits) => {
                permits.forget();
                true
            }
            Err(_) => false,
        },
    }
}
