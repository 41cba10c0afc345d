//! `recover`: how long a client that missed publications takes to catch up.
//! Each round a subscriber notes its position on a fresh channel and leaves,
//! `missed` publications go by, and the subscriber subscribes again asking
//! to recover from its position; the time from sending that subscribe to
//! decoding its reply, which carries every missed publication, is one sample.

use std::time::Instant;

use sacred_proto::{
    Command, PublishRequest, Reply, StreamPosition, SubscribeRequest, UnsubscribeRequest, Value,
};
use serde_json::{Value as Json, json};

use crate::Common;
use crate::stats::Samples;
use crate::wire::{Conn, Error, payload};

/// What `recover` is given.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct Args {
    /// Publications missed before each recovery.
    #[arg(long, default_value_t = 1_000)]
    missed: usize,
    /// Recoveries measured (each on its own channel).
    #[arg(long, default_value_t = 30)]
    rounds: usize,
    /// Bytes of each publication's payload (JSON text).
    #[arg(long, default_value_t = 200)]
    payload: usize,
}

/// Bytes of publishes per batch frame: within the server's default frame
/// limit (10 KiB), with room for each command's envelope.
const FRAME_BUDGET: usize = 8 * 1024;

fn subscribed(reply: Reply) -> Result<sacred_proto::SubscribeReply, Error> {
    match reply {
        Reply::Subscribe(reply) => Ok(reply),
        other => Err(format!("not a subscribe reply: {other:?}")),
    }
}

pub(crate) async fn run(common: &Common, args: &Args) -> Result<Json, Error> {
    let mut subscriber = Conn::start(
        &common.url,
        common.codec,
        common.protocol,
        "recovering",
        common.token.as_deref(),
    )
    .await?;
    let mut publisher = Conn::start(
        &common.url,
        common.codec,
        common.protocol,
        "publisher",
        common.token.as_deref(),
    )
    .await?;
    let mut samples = Samples::default();
    let started = Instant::now();
    for round in 0..args.rounds {
        let channel = format!("recover-{round}-{}", std::process::id());
        let joined = subscribed(
            subscriber
                .call(SubscribeRequest::new(&channel).into())
                .await?,
        )?;
        let position = StreamPosition::new(
            joined.offset.unwrap_or(0),
            joined
                .epoch
                .ok_or("the channel keeps no history (history_size 0?)")?,
        );
        subscriber
            .call(UnsubscribeRequest::new(&channel).into())
            .await?;
        let per_frame = (FRAME_BUDGET / (args.payload + 64)).clamp(1, 100);
        let mut sent = 0;
        while sent < args.missed {
            let n = per_frame.min(args.missed - sent);
            let commands: Vec<Command> = (0..n)
                .map(|i| {
                    let data: serde_json::Value =
                        serde_json::from_str(&payload((sent + i) as u64, args.payload))
                            .expect("the generator's payload is JSON");
                    PublishRequest::new(&channel, Value::from(data)).into()
                })
                .collect();
            publisher.batch(commands).await?;
            sent += n;
        }
        let mut recover = SubscribeRequest::new(&channel);
        recover.recover = Some(position);
        let asked = Instant::now();
        let reply = subscribed(subscriber.call(recover.into()).await?)?;
        samples.record(asked.elapsed().as_nanos() as u64);
        if !reply.recovered || reply.publications.len() != args.missed {
            return Err(format!(
                "round {round}: recovered {} with {} of {} publications",
                reply.recovered,
                reply.publications.len(),
                args.missed
            ));
        }
        subscriber
            .call(UnsubscribeRequest::new(&channel).into())
            .await?;
    }
    Ok(json!({
        "missed": args.missed,
        "rounds": args.rounds,
        "payload_bytes": args.payload,
        "recovery_us": samples.summary(),
        "seconds": started.elapsed().as_secs_f64(),
    }))
}
