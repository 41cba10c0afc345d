//! `recovered: false`: after a reconnect a client gets every publication it
//! missed, if the channel's history still holds them all. When it does not
//! (a long absence, a small history, a server that lost its streams), the
//! subscription says `Resubscribed { recovered: false }` and the application
//! reloads its state: here, from the channel's history; in an app, often
//! from its own database.
//!
//! Run with: cargo run --example reload

use std::time::Duration;

use sacred_client::{Client, HistoryRequest, SubscriptionEvent, Value};
use sacred_examples::serve_locally;
use sacred_server::{DisconnectCode, Hub, NamespaceOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A history of only 5 publications, so a short absence is enough.
    let small = NamespaceOptions::default().history(5, Duration::from_secs(3600));
    let (gone, mut left) = tokio::sync::mpsc::unbounded_channel();
    let hub = Hub::builder().namespace("", small).on_disconnect(move |_| {
        let gone = gone.clone();
        async move {
            let _ = gone.send(());
        }
    });
    let (url, hub) = serve_locally(hub).await?;

    let client = Client::builder(&url)
        .name("dashboard")
        .reconnect(Duration::from_millis(500), Duration::from_secs(1))
        .connect()
        .await?;
    let mut scores = client.subscribe("scores").await?;
    let mut board: Vec<Value> = Vec::new();
    hub.publish("scores", "1-0".into()).await?;
    if let Some(publication) = scores.next_publication().await {
        board.push(publication.data);
    }

    // The connection drops; 20 publications happen before the client is back.
    let id = client.id().ok_or("connected")?;
    hub.disconnect(&id, DisconnectCode::FORCE_RECONNECT);
    left.recv().await;
    for n in 2..=21 {
        hub.publish("scores", format!("{n}-0").into()).await?;
    }

    loop {
        match scores.recv().await.ok_or("the subscription ended")? {
            SubscriptionEvent::Publication(publication) => board.push(publication.data),
            SubscriptionEvent::Resubscribed { recovered: true } => {
                println!("reconnected; every missed score was replayed");
                break;
            }
            SubscriptionEvent::Resubscribed { recovered: false } => {
                // The gap left the history window: rebuild from what is kept.
                let kept = client.history(HistoryRequest::new("scores")).await?;
                board = kept.publications.into_iter().map(|p| p.data).collect();
                println!(
                    "reconnected without the gap: reloaded {} scores",
                    board.len()
                );
                break;
            }
            other => println!("{other:?}"),
        }
    }
    println!("the board now shows {board:?}");
    Ok(())
}
