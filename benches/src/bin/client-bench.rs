//! The Rust side of the client benchmarks (`benches/clients.py`): Sacred's
//! Rust client as a publisher that keeps a window of publishes in flight, as
//! the baseline subscriber the Python ones are compared with, and as a
//! caller of publish round trips. Prints one JSON line.
//!
//! ```sh
//! client-bench publish --url ws://127.0.0.1:8000/ws --channel bench --count 100000
//! client-bench subscribe --url ws://127.0.0.1:8000/ws --channel bench --count 100000
//! client-bench round-trips --url ws://127.0.0.1:8000/ws --seconds 5
//! ```

use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use sacred_client::{Client, SubscriptionEvent};
use serde_json::json;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Publishes `count` publications of `payload` bytes, `window` at a time.
    Publish {
        #[arg(long)]
        url: String,
        #[arg(long, default_value = "bench")]
        channel: String,
        #[arg(long, default_value_t = 100_000)]
        count: u64,
        #[arg(long, default_value_t = 256)]
        window: usize,
        #[arg(long, default_value_t = 200)]
        payload: usize,
    },
    /// Subscribes, says "subscribed", and counts `count` publications.
    Subscribe {
        #[arg(long)]
        url: String,
        #[arg(long, default_value = "bench")]
        channel: String,
        #[arg(long, default_value_t = 100_000)]
        count: u64,
        /// The subscription's buffer (events); `count` by default, as the
        /// Python subscribers of the benchmark get.
        #[arg(long)]
        buffer: Option<usize>,
    },
    /// Publishes one at a time, each waiting for its ack, for `seconds`.
    RoundTrips {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
}

/// The payload every client of the benchmark publishes: a sequence number
/// and padding to `bytes` of JSON.
fn payload(seq: u64, bytes: usize) -> serde_json::Value {
    let pad = bytes.saturating_sub(30);
    json!({"seq": seq, "pad": "x".repeat(pad)})
}

#[tokio::main]
async fn main() -> Result<(), sacred_client::Error> {
    // The client's own log (RUST_LOG=sacred_client=debug), on stderr.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Publish {
            url,
            channel,
            count,
            window,
            payload: bytes,
        } => {
            let client = Client::builder(url)
                .name("bench-publisher")
                .connect()
                .await?;
            let started = Instant::now();
            let mut in_flight = FuturesUnordered::new();
            for seq in 0..count {
                if in_flight.len() >= window
                    && let Some(acked) = in_flight.next().await
                {
                    acked?;
                }
                in_flight.push(client.publish(channel.clone(), payload(seq, bytes)));
            }
            while let Some(acked) = in_flight.next().await {
                acked?;
            }
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "{}",
                json!({"published": count, "seconds": seconds, "per_s": count as f64 / seconds})
            );
            client.close().await;
        }
        Command::Subscribe {
            url,
            channel,
            count,
            buffer,
        } => {
            let client = Client::builder(url)
                .name("bench-subscriber")
                .subscription_buffer(buffer.unwrap_or(count as usize))
                .connect()
                .await?;
            let mut sub = client.subscribe(channel).await?;
            let mut events = client.events();
            tokio::spawn(async move {
                while let Some(event) = events.recv().await {
                    eprintln!("client-bench: {event:?}");
                }
            });
            println!("subscribed");
            let mut received = 0u64;
            let mut started = None;
            while received < count {
                match tokio::time::timeout(Duration::from_secs(30), sub.recv()).await {
                    Ok(Some(SubscriptionEvent::Publication(_))) => {
                        started.get_or_insert_with(Instant::now);
                        received += 1;
                    }
                    Ok(Some(other)) => eprintln!("client-bench: {other:?}"),
                    Ok(None) | Err(_) => break,
                }
            }
            let seconds = started.map_or(0.0, |at| at.elapsed().as_secs_f64());
            println!(
                "{}",
                json!({"received": received, "seconds": seconds, "per_s": received as f64 / seconds})
            );
            client.close().await;
        }
        Command::RoundTrips { url, seconds } => {
            let client = Client::builder(url).name("bench-caller").connect().await?;
            let until = Instant::now() + Duration::from_secs(seconds);
            let started = Instant::now();
            let mut done = 0u64;
            while Instant::now() < until {
                client.publish("bench-rtt", payload(done, 200)).await?;
                done += 1;
            }
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "{}",
                json!({"round_trips": done, "seconds": seconds, "per_s": done as f64 / seconds})
            );
            client.close().await;
        }
    }
    Ok(())
}
