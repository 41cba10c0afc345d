//! Watch a Sacred hub from a terminal: subscribe to a channel and print every
//! publication, join and leave as a JSON line; or publish one message and exit.
//! It speaks the wire protocol directly (docs/protocol.md) with tokio-tungstenite.
//!
//! Run with: cargo run --example watch -- [--url ws://127.0.0.1:8000/ws] <channel> [message]

use futures_util::{SinkExt, StreamExt};
use sacred_proto::{
    ClientInfo, ClientMessage, Codec, ConnectRequest, Limits, PongRequest, PublishRequest, Push,
    ServerMessage, SubscribeRequest, Value,
};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut url = "ws://127.0.0.1:8000/ws".to_owned();
    if args.first().map(String::as_str) == Some("--url") && args.len() >= 2 {
        url = args.remove(1);
        args.remove(0);
    }
    let Some(channel) = args.first().cloned() else {
        eprintln!("usage: watch [--url URL] <channel> [message to publish]");
        std::process::exit(2);
    };
    let message = (args.len() > 1).then(|| args[1..].join(" "));

    let mut request = url.as_str().into_client_request()?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("sacred.v1.json"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await?;
    let info = ClientInfo::new(
        "watch",
        "app",
        "rust",
        concat!("sacred-examples/", env!("CARGO_PKG_VERSION")),
    );
    let mut commands = vec![ClientMessage::new(1, ConnectRequest::new(None, info))];
    match &message {
        Some(text) => commands.push(ClientMessage::new(
            2,
            PublishRequest::new(&channel, Value::from(text.as_str())),
        )),
        None => {
            let mut subscribe = SubscribeRequest::new(&channel);
            subscribe.join_leave = true;
            commands.push(ClientMessage::new(2, subscribe));
        }
    }
    ws.send(Message::text(String::from_utf8(
        Codec::Json.encode_batch(&commands)?,
    )?))
    .await?;

    let mut limits = Limits::default();
    limits.max_frame_bytes = 16 << 20;
    let mut next_id = 3;
    while let Some(frame) = ws.next().await {
        let text = match frame? {
            Message::Text(text) => text,
            Message::Close(close) => {
                eprintln!("closed by the server: {close:?}");
                break;
            }
            _ => continue,
        };
        for incoming in Codec::Json.decode::<ServerMessage>(text.as_bytes(), &limits)? {
            match incoming {
                ServerMessage::Reply {
                    id: 2,
                    result: Ok(_),
                } if message.is_some() => {
                    println!("published to {channel}");
                    return Ok(());
                }
                ServerMessage::Reply {
                    result: Err(err), ..
                } => {
                    eprintln!("refused: {err}");
                    std::process::exit(1);
                }
                ServerMessage::Reply { id: 2, .. } => {
                    eprintln!("subscribed to {channel}; waiting (Ctrl-C to stop)")
                }
                ServerMessage::Push(Push::Ping(_)) => {
                    let pong = ClientMessage::new(next_id, PongRequest::new());
                    next_id += 1;
                    ws.send(Message::text(String::from_utf8(
                        Codec::Json.encode(&pong)?,
                    )?))
                    .await?;
                }
                ServerMessage::Push(push) => {
                    let line = String::from_utf8(Codec::Json.encode(&ServerMessage::Push(push))?)?;
                    println!("{line}");
                }
                ServerMessage::Reply { .. } => {}
            }
        }
    }
    Ok(())
}
