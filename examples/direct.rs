//! Direct messages: one client sends to another by its client id; the host
//! decides who may send to whom (here: people write to agents, agents answer;
//! people do not write to each other).
//!
//! Run with: cargo run --example direct

use sacred_client::{Client, MessageEvent};
use sacred_examples::serve_locally;
use sacred_server::{Hub, Refusal};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = Hub::builder().authorize_send(|ctx| async move {
        if ctx.to.info.kind == "agent" || ctx.from.info.kind == "agent" {
            Ok(())
        } else {
            Err(Refusal::permission_denied(
                "people write to agents, not to each other",
            ))
        }
    });
    let (url, _hub) = serve_locally(hub).await?;

    let agent = Client::builder(&url)
        .name("helpdesk")
        .kind("agent")
        .connect()
        .await?;
    let mut inbox = agent.messages();
    let ada = Client::builder(&url)
        .name("ada")
        .kind("app")
        .connect()
        .await?;
    let eve = Client::builder(&url)
        .name("eve")
        .kind("app")
        .connect()
        .await?;

    ada.send(agent.id().unwrap(), "my order is late").await?;
    if let Some(MessageEvent::Message(message)) = inbox.recv().await {
        let from = message.from.expect("sent by a client");
        println!("helpdesk got {:?} from {}", message.data, from.info.name);
        // Answer the sender by its id.
        agent.send(&from.id, "on its way!").await?;
    }
    let mut ada_inbox = ada.messages();
    if let Some(MessageEvent::Message(reply)) = ada_inbox.recv().await {
        println!("ada got {:?}", reply.data);
    }
    let refused = eve
        .send(ada.id().unwrap(), "hello stranger")
        .await
        .unwrap_err();
    println!("eve to ada: {refused}");
    Ok(())
}
