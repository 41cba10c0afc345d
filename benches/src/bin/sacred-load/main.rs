//! `sacred-load`: drives a running server over loopback and reports one JSON
//! line per scenario on stdout (a progress line goes to stderr while it runs).
//!
//! ```text
//! sacred-load [--url URL] [--codec json|msgpack] [--protocol sacred|raw] [--server-pid PID] <scenario>
//!   fanout    N subscribers on one channel, publishers at a fixed rate or flat out
//!   channels  N clients in pairs, each pair on its own channel (chat-like)
//!   idle      hold N connections and report the server's memory per connection
//!   connect   how fast N clients connect and subscribe
//!   churn     subscribe to and leave N distinct channels; the server's memory as it goes
//! ```
//!
//! `--protocol raw` drives `raw-broadcast`, the stack's own ceiling, and
//! `--protocol socketio` drives `socketioxide-server`, the closest Rust peer
//! (fanout and idle). Every server gets the same application payload.
//! `benches/load.sh` starts the servers and runs every scenario; the figures
//! and what limits them are in `docs/benchmarks.md`.

mod channels;
mod churn;
mod fanout;
mod hold;
mod lean;
mod recover;
mod stats;
mod wire;

use std::fmt;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use futures_util::StreamExt;
use sacred_proto::Codec;
use serde_json::json;

use crate::wire::{Conn, Error, Protocol};

/// Connections opened at once while setting a scenario up.
const CONCURRENCY: usize = 128;

#[derive(Debug, Parser)]
#[command(about = "Load generator for Sacred hubs and the raw broadcast baseline")]
struct Cli {
    /// The server's WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:8000/ws")]
    url: String,
    /// Wire format.
    #[arg(long, value_enum, default_value_t = CodecArg::Json)]
    codec: CodecArg,
    /// What the server speaks.
    #[arg(long, value_enum, default_value_t = Protocol::Sacred)]
    protocol: Protocol,
    /// The server's process id, to report its resident memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Seconds after which the run fails instead of waiting longer (a server
    /// that stopped answering).
    #[arg(long, default_value_t = 300)]
    deadline: u64,
    /// The token every Sacred client connects with (an API key, a JWT);
    /// default: anonymous.
    #[arg(long, env = "SACRED_LOAD_TOKEN")]
    token: Option<String>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum CodecArg {
    Json,
    Msgpack,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// N subscribers on one channel; publishers at a fixed rate or flat out.
    Fanout(fanout::Args),
    /// N clients in pairs, each pair on its own channel, each client publishing.
    Channels(channels::Args),
    /// Hold N connections; report the server's memory per connection.
    Idle(hold::IdleArgs),
    /// Connect and subscribe N clients; report the rate and the time each took.
    Connect(hold::ConnectArgs),
    /// Subscribe to and leave N distinct channels; report the server's memory.
    Churn(churn::Args),
    /// Miss N publications, then recover them; report how long recovery takes.
    Recover(recover::Args),
}

/// What every scenario is given.
#[derive(Clone, Debug)]
pub(crate) struct Common {
    url: String,
    codec: Codec,
    protocol: Protocol,
    server_pid: Option<u32>,
    token: Option<String>,
}

impl Common {
    fn protocol_name(&self) -> &'static str {
        match self.protocol {
            Protocol::Sacred => "sacred",
            Protocol::Raw => "raw",
            Protocol::Socketio => "socketio",
        }
    }

    fn codec_name(&self) -> &'static str {
        match self.codec {
            Codec::Json => "json",
            Codec::MsgPack => "msgpack",
        }
    }

    /// The server's resident memory now, if its pid is known.
    fn server_rss(&self) -> Option<u64> {
        self.server_pid.and_then(stats::rss)
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scenario::Fanout(_) => "fanout",
            Scenario::Channels(_) => "channels",
            Scenario::Idle(_) => "idle",
            Scenario::Connect(_) => "connect",
            Scenario::Churn(_) => "churn",
            Scenario::Recover(_) => "recover",
        })
    }
}

/// How long opening one connection (and its subscribe) may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens `n` connections (`CONCURRENCY` at a time), each subscribed to
/// `channel(index)` if that is `Some`; in index order.
pub(crate) async fn connect_all(
    common: &Common,
    n: usize,
    name: &str,
    channel: impl Fn(usize) -> Option<String>,
) -> Result<Vec<Conn>, Error> {
    let opened: Vec<Result<Conn, Error>> = futures_util::stream::iter(0..n)
        .map(|index| {
            let channel = channel(index);
            let open = async move {
                let mut conn = Conn::start(
                    &common.url,
                    common.codec,
                    common.protocol,
                    name,
                    common.token.as_deref(),
                )
                .await?;
                if let Some(channel) = channel {
                    conn.subscribe(&channel).await?;
                }
                Ok(conn)
            };
            // A server that never answers a handshake fails the run, not hangs it.
            async move {
                tokio::time::timeout(OPEN_TIMEOUT, open)
                    .await
                    .unwrap_or_else(|_| Err(format!("no connection within {OPEN_TIMEOUT:?}")))
            }
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    opened.into_iter().collect()
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // Thousands of sockets: raise the soft descriptor limit to the hard one.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let common = Common {
        url: cli.url,
        codec: match cli.codec {
            CodecArg::Json => Codec::Json,
            CodecArg::Msgpack => Codec::MsgPack,
        },
        protocol: cli.protocol,
        server_pid: cli.server_pid,
        token: cli.token,
    };
    let run = async {
        match &cli.scenario {
            Scenario::Fanout(args) => fanout::run(&common, args).await,
            Scenario::Channels(args) => channels::run(&common, args).await,
            Scenario::Idle(args) => hold::idle(&common, args).await,
            Scenario::Connect(args) => hold::connect(&common, args).await,
            Scenario::Churn(args) => churn::run(&common, args).await,
            Scenario::Recover(args) => recover::run(&common, args).await,
        }
    };
    // Whatever a server does, a run ends: a stuck one fails with this.
    let deadline = Duration::from_secs(cli.deadline);
    let result = tokio::time::timeout(deadline, run)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "the run did not end within {deadline:?} (--deadline)"
            ))
        });
    match result {
        Ok(mut report) => {
            let head = json!({
                "scenario": cli.scenario.to_string(),
                "protocol": common.protocol_name(),
                "codec": common.codec_name(),
            });
            if let (Some(head), Some(body)) = (head.as_object(), report.as_object_mut()) {
                let mut line = head.clone();
                line.append(body);
                report = serde_json::Value::Object(line);
            }
            println!("{report}");
        }
        Err(err) => {
            eprintln!("sacred-load {}: {err}", cli.scenario);
            std::process::exit(1);
        }
    }
}
