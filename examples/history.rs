//! History: a channel keeps its recent publications (the namespace's
//! `history_size` for `history_ttl`); a client reads the newest few, or
//! everything after a position it saved.
//!
//! Run with: cargo run --example history

use std::time::Duration;

use sacred_client::{Client, HistoryRequest, StreamPosition};
use sacred_examples::serve_locally;
use sacred_server::{Hub, NamespaceOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let news = NamespaceOptions::default().history(50, Duration::from_secs(3600));
    let (url, hub) = serve_locally(Hub::builder().namespace("news", news)).await?;
    for n in 1..=10 {
        hub.publish("news:tech", format!("headline {n}").into())
            .await?;
    }

    let client = Client::builder(&url).name("reader").connect().await?;
    let newest = client
        .history(HistoryRequest::new("news:tech").limit(3).reverse(true))
        .await?;
    println!(
        "the stream is at offset {} (epoch {})",
        newest.offset, newest.epoch
    );
    for publication in &newest.publications {
        println!("newest: #{:?} {:?}", publication.offset, publication.data);
    }
    // A position saved earlier (offset 7 of this epoch): what came after it.
    let saved = StreamPosition::new(7, newest.epoch.clone());
    let since = client
        .history(HistoryRequest::new("news:tech").since(saved))
        .await?;
    let offsets: Vec<_> = since.publications.iter().filter_map(|p| p.offset).collect();
    println!("after offset 7: {offsets:?}");
    // A position from another epoch (the stream was lost) cannot be served.
    let lost = StreamPosition::new(3, "an-old-epoch");
    let err = client
        .history(HistoryRequest::new("news:tech").since(lost))
        .await
        .unwrap_err();
    println!("from a lost stream: {err}");
    Ok(())
}
