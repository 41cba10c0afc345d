//! A terminal chat on `sacred-client`: every line you type is published to a
//! room, and everyone's lines, joins and leaves are printed as they arrive.
//! Disconnects are ridden out: the client reconnects and recovers what it missed.
//!
//! Run with: cargo run --example chat -- [--url ws://127.0.0.1:8000/ws] [--name NAME] [room]

use sacred_client::{Client, SubscriptionEvent};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut url = "ws://127.0.0.1:8000/ws".to_owned();
    let mut name = std::env::var("USER").unwrap_or_else(|_| "guest".into());
    let mut room = "lobby".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--url" => url = args.next().ok_or("--url needs a value")?,
            "--name" => name = args.next().ok_or("--name needs a value")?,
            _ => room = arg,
        }
    }

    let client = Client::builder(&url)
        .name(&name)
        .kind("app")
        .connect()
        .await?;
    let mut subscription = client.subscribe_with(&room, true).await?;
    println!("in {room} as {name}; type a line and press enter (Ctrl-D to leave)");

    let printer = tokio::spawn(async move {
        while let Some(event) = subscription.recv().await {
            match event {
                SubscriptionEvent::Publication(publication) => {
                    let who = publication
                        .from
                        .map(|p| p.info.name)
                        .unwrap_or_else(|| "server".into());
                    let text = publication
                        .data
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("{:?}", publication.data));
                    println!("[{who}] {text}");
                }
                SubscriptionEvent::Join(peer) => println!("* {} joined", peer.info.name),
                SubscriptionEvent::Leave(peer) => println!("* {} left", peer.info.name),
                SubscriptionEvent::Resubscribed { recovered: false } => {
                    println!("* reconnected; some messages were missed")
                }
                SubscriptionEvent::Unsubscribed { code, reason } => {
                    println!("* removed from the room ({code}: {reason})");
                    break;
                }
                _ => {}
            }
        }
    });

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        if let Err(err) = client.publish(&room, line).await {
            eprintln!("* not sent: {err}");
        }
    }
    client.close().await;
    printer.abort();
    Ok(())
}
