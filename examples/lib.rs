//! Runnable examples for Sacred, one per topic. Each opens with its run
//! command; those that need a hub start one of their own on a free port, so
//! they run as they are and exit when done.
//!
//! - `embed`: a host axum app that mounts Sacred under `/rt` beside its own
//!   routes and publishes from host code (`cargo run --example embed`).
//! - `chat`: a terminal chat on `sacred-client`
//!   (`cargo run --example chat -- --name ada lobby`).
//! - `watch`: watch a hub from a terminal, or publish to it
//!   (`cargo run --example watch -- chat:lobby`).
//! - `rpc`: typed RPC calls and application error codes (`cargo run --example rpc`).
//! - `presence`: who is in a channel, joins and leaves (`cargo run --example presence`).
//! - `history`: reading a channel's history (`cargo run --example history`).
//! - `direct`: messages to one client, and who may send to whom (`cargo run --example direct`).
//! - `auth`: an authenticator in the host, a token provider in the client,
//!   private per-user channels (`cargo run --example auth`).
//! - `reload`: what to do with `recovered: false` (`cargo run --example reload`).
//! - `content`: content checks in the publish hook (script injection, field
//!   sizes), refused with application codes (`cargo run --example content`).

use std::net::SocketAddr;

use sacred_server::{Hub, HubBuilder};

/// Serves `builder`'s hub on a free loopback port, in the background, as a
/// host app would with `axum::serve`; returns its `ws://` URL and handle.
pub async fn serve_locally(
    builder: HubBuilder,
) -> Result<(String, Hub), Box<dyn std::error::Error>> {
    let (router, hub) = builder.build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}/ws", listener.local_addr()?);
    let app = router.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, hub))
}
