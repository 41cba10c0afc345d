//! `churn`: channel names that come and go. Clients subscribe to a stream of
//! distinct channels and leave each at once, as rooms, documents or sessions
//! do; the server's memory must stay flat however many names went by.

use std::time::Instant;

use sacred_proto::{Command, SubscribeRequest, UnsubscribeRequest};
use serde_json::{Value, json};

use crate::wire::{Conn, Error};
use crate::{Common, connect_all};

/// What `churn` is given.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct Args {
    /// Distinct channels, in all, each subscribed once and left.
    #[arg(long, default_value_t = 1_000_000)]
    channels: usize,
    /// Connections doing it side by side.
    #[arg(long, default_value_t = 10)]
    connections: usize,
    /// Channels per frame (a subscribe and an unsubscribe each: 50 fill the
    /// server's default batch of 100 messages).
    #[arg(long, default_value_t = 50)]
    per_frame: usize,
}

/// Subscribes to and leaves `count` channels named `churn-<first + i>`.
async fn churn(conn: &mut Conn, first: usize, count: usize, per_frame: usize) -> Result<(), Error> {
    let mut done = 0;
    while done < count {
        let n = per_frame.min(count - done);
        let mut commands: Vec<Command> = Vec::with_capacity(2 * n);
        for i in 0..n {
            let channel = format!("churn-{}", first + done + i);
            commands.push(SubscribeRequest::new(channel.clone()).into());
            commands.push(UnsubscribeRequest::new(channel).into());
        }
        conn.batch(commands).await?;
        done += n;
    }
    Ok(())
}

pub(crate) async fn run(common: &Common, args: &Args) -> Result<Value, Error> {
    let mut conns = connect_all(common, args.connections, "churn", |_| None).await?;
    let quarter = (args.channels / 4).max(1);
    let per_conn = |round_len: usize| round_len.div_ceil(args.connections.max(1));
    let mut rss = vec![json!({"channels": 0, "server_rss_bytes": common.server_rss()})];
    let started = Instant::now();
    let mut done = 0;
    while done < args.channels {
        let round = quarter.min(args.channels - done);
        let share = per_conn(round);
        let work = conns.iter_mut().enumerate().map(|(i, conn)| {
            let first = done + i * share;
            let count = share.min((done + round).saturating_sub(first));
            churn(conn, first, count, args.per_frame)
        });
        for result in futures_util::future::join_all(work).await {
            result?;
        }
        done += round;
        eprintln!("churn: {done} channels");
        rss.push(json!({"channels": done, "server_rss_bytes": common.server_rss()}));
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(json!({
        "channels": args.channels,
        "connections": args.connections,
        "seconds": (seconds * 10.0).round() / 10.0,
        "channels_per_s": (args.channels as f64 / seconds).round(),
        "server_rss": rss,
    }))
}
