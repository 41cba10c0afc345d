//! Presence and join/leave: who is subscribed to a channel, and a live feed of
//! who comes and goes for subscribers that opt in.
//!
//! Run with: cargo run --example presence

use sacred_client::{Client, SubscriptionEvent};
use sacred_examples::serve_locally;
use sacred_server::Hub;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (url, _hub) = serve_locally(Hub::builder()).await?;

    let ada = Client::builder(&url).name("ada").connect().await?;
    // `subscribe_with(channel, true)` opts in to join and leave events.
    let mut room = ada.subscribe_with("room", true).await?;

    let bot = Client::builder(&url)
        .name("support-bot")
        .kind("agent")
        .connect()
        .await?;
    let bots_room = bot.subscribe("room").await?;
    for peer in ada.presence("room").await? {
        println!(
            "in the room: {} ({}, {})",
            peer.info.name, peer.info.kind, peer.id
        );
    }
    drop(bots_room); // leaving the channel
    for _ in 0..2 {
        match room.recv().await {
            Some(SubscriptionEvent::Join(peer)) => println!("{} joined", peer.info.name),
            Some(SubscriptionEvent::Leave(peer)) => println!("{} left", peer.info.name),
            other => println!("{other:?}"),
        }
    }
    println!("now in the room: {}", ada.presence("room").await?.len());
    Ok(())
}
