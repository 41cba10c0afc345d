//! Fan-out: N subscribers on one channel, P publishers. Three ways to drive it:
//!
//! - flat out (closed loop): at most `window` publications per subscriber in
//!   flight (published, not yet received), so queues stay bounded and the
//!   rate is the most the server sustains;
//! - `--open-loop`: publishers send as fast as they can, whatever arrives,
//!   and the run counts what was lost once everything in flight has landed;
//! - `--rate R`: R publications per second in all, for latency.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};

use crate::stats::{Samples, Traffic, TrafficArgs};
use crate::wire::{Conn, Error, now_ns, payload};
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
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Publish as fast as the connection takes, without a window, and count
    /// the deliveries lost.
    #[arg(long)]
    open_loop: bool,
    /// Connect the publishers to this URL (another node of the same hub)
    /// instead of `--url`, so every publication crosses the broker.
    #[arg(long)]
    publish_url: Option<String>,
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

/// Most publications a publisher sends with one write.
const BURST: u32 = 16;

pub(crate) async fn run(common: &Common, args: &Args) -> Result<Value, Error> {
    let subscribers = connect_all(common, args.subscribers, "load-subscriber", |_| {
        Some(CHANNEL.to_owned())
    })
    .await?;
    let publishing = Common {
        url: args
            .publish_url
            .clone()
            .unwrap_or_else(|| common.url.clone()),
        ..common.clone()
    };
    let publishers = connect_all(&publishing, args.publishers, "load-publisher", |_| None).await?;
    let shared = Arc::new(Shared {
        traffic: Traffic::default(),
        slots: Semaphore::new(args.window * args.subscribers),
    });
    // `stop` ends the publishing, `done` the receiving once what was in flight landed.
    let (stop, stopped) = watch::channel(false);
    let (done, finished) = watch::channel(false);
    // One latency sample per publication, from a different subscriber each time.
    let every = args.subscribers as u64;
    let mut receiving = Vec::new();
    for (index, conn) in subscribers.into_iter().enumerate() {
        receiving.push(tokio::spawn(subscribe(
            conn,
            index as u64,
            every,
            Arc::clone(&shared),
            finished.clone(),
        )));
    }
    let mode = if args.rate > 0 {
        Mode::Rate(Duration::from_secs_f64(
            args.publishers as f64 / args.rate as f64,
        ))
    } else if args.open_loop {
        Mode::OpenLoop
    } else {
        Mode::Window(args.subscribers as u32)
    };
    let mut publishing = Vec::new();
    for conn in publishers {
        publishing.push(tokio::spawn(publish(
            conn,
            mode,
            args.traffic.payload,
            Arc::clone(&shared),
            stopped.clone(),
            finished.clone(),
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

    // Publishing stops; what is in flight lands (or is lost) before counting.
    // The publishers stay connected meanwhile (reading their acks), or the
    // server would drop publishes still unread on their sockets.
    let _ = stop.send(true);
    shared.slots.close();
    let expected = || shared.traffic.published.load(Ordering::Relaxed) * args.subscribers as u64;
    let lost = shared.traffic.settle(expected()).await;
    let lost = lost.min(expected());
    let _ = done.send(true);
    for mut task in publishing {
        // A publisher blocked in a send to a server that stopped reading its
        // socket cannot see `done`: it is aborted, so the run still ends.
        if tokio::time::timeout(Duration::from_secs(5), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
    let mut latency = Samples::default();
    for task in receiving {
        latency.merge(task.await.map_err(|e| e.to_string())?);
    }
    Ok(json!({
        "subscribers": args.subscribers,
        "publishers": args.publishers,
        "rate": match mode {
            Mode::Rate(_) => json!(args.rate),
            Mode::OpenLoop => json!("open loop"),
            Mode::Window(_) => json!(format!("max, {} in flight", args.window)),
        },
        "payload_bytes": args.traffic.payload,
        "seconds": measured.seconds,
        "published_per_s": measured.published_per_s,
        "delivered_per_s": measured.delivered_per_s,
        "lost": lost,
        "latency_us": latency.summary(),
        "errors": shared.traffic.errors.load(Ordering::Relaxed),
        "server_rss_bytes": measured.server_rss,
        "server_cpu_ns_per_delivery": measured.cpu["server_cores"]
            .as_f64()
            .map(|cores| (cores * 1e9 / measured.delivered_per_s).round()),
        "cpu": measured.cpu,
        "bound": measured.bound(),
    }))
}

/// How publishers pace themselves.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// A fixed period between publications.
    Rate(Duration),
    /// A delivery slot per subscriber for each publication.
    Window(u32),
    /// No pacing at all.
    OpenLoop,
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
    // Deliveries not yet added to the shared counters: they are added once
    // the frames read so far are handled, not per frame.
    let mut unreported = 0u64;
    loop {
        // One in `every` deliveries is sampled for its latency while measuring.
        let sample = count % every == 0 && shared.traffic.measuring.load(Ordering::Relaxed);
        let received = tokio::select! {
            _ = stop.changed() => return samples,
            received = conn.recv(sample) => received,
        };
        let Ok(received) = received else {
            shared.traffic.errors.fetch_add(1, Ordering::Relaxed);
            return samples;
        };
        if received.deliveries > 0 {
            if let Some(sent) = received.sent_ns {
                samples.record(now_ns().saturating_sub(sent));
            }
            count += received.deliveries;
            unreported += received.deliveries;
        }
        if unreported > 0 && (!conn.has_frame() || unreported >= 256) {
            shared
                .traffic
                .delivered
                .fetch_add(unreported, Ordering::Relaxed);
            shared.slots.add_permits(unreported as usize);
            unreported = 0;
        }
        if received.errors > 0 {
            shared
                .traffic
                .errors
                .fetch_add(received.errors, Ordering::Relaxed);
        }
    }
}

async fn publish(
    mut conn: Conn,
    mode: Mode,
    payload_bytes: usize,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    mut done: watch::Receiver<bool>,
) {
    let mut tick = match mode {
        Mode::Rate(period) => Some(tokio::time::interval(period)),
        Mode::Window(_) | Mode::OpenLoop => None,
    };
    let mut publishing = true;
    loop {
        tokio::select! {
            _ = done.changed() => return,
            _ = stop.changed(), if publishing => publishing = false,
            burst = next_burst(&mut tick, mode, &shared.slots), if publishing => {
                if burst == 0 {
                    publishing = false;
                    continue;
                }
                let frames: Vec<Vec<u8>> = (0..burst)
                    .map(|_| {
                        let seq = shared.traffic.published.fetch_add(1, Ordering::Relaxed) + 1;
                        conn.publish_frame(CHANNEL, &payload(seq, payload_bytes))
                    })
                    .collect();
                if conn.send(&frames).await.is_err() {
                    shared.traffic.errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            // Acks, pings: read so that the server never waits on this socket.
            received = conn.recv(false) => match received {
                Ok(received) => {
                    if received.errors > 0 {
                        shared.traffic.errors.fetch_add(received.errors, Ordering::Relaxed);
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

/// How many publications to send now: one per tick at a fixed rate; as many
/// as there are delivery slots for (up to [`BURST`]) flat out; a burst in
/// open loop. 0 once the run is over.
async fn next_burst(
    tick: &mut Option<tokio::time::Interval>,
    mode: Mode,
    slots: &Semaphore,
) -> u32 {
    match (mode, tick) {
        (Mode::Rate(_), Some(tick)) => {
            tick.tick().await;
            1
        }
        (Mode::Window(subscribers), _) => {
            let Ok(first) = slots.acquire_many(subscribers).await else {
                return 0;
            };
            first.forget();
            let mut burst = 1;
            while burst < BURST {
                match slots.try_acquire_many(subscribers) {
                    Ok(more) => {
                        more.forget();
                        burst += 1;
                    }
                    Err(_) => break,
                }
            }
            burst
        }
        (Mode::OpenLoop, _) => {
            // Yield between bursts, so that the receivers on this thread run too.
            tokio::task::yield_now().await;
            BURST
        }
        (Mode::Rate(_), None) => 0,
    }
}
