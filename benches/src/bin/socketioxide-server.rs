//! The closest Rust peer as a fan-out baseline: a socketioxide server (its
//! defaults, WebSocket transport) with the least a Socket.IO app needs for
//! the benchmark. A client joins a room with `subscribe` (acknowledged, so
//! the generator knows it is in), and every `publish` event's payload goes to
//! everyone in that room as a `publication` event. The generator gives it the
//! same application payload as Sacred and the raw baseline.
//!
//! Usage: `socketioxide-server [ADDR]` (default `127.0.0.1:0`); prints
//! `ws://ADDR` on its first line, then serves until killed.

use std::io::Write;

use axum::serve::ListenerExt;
use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Data, SocketRef};

/// The allocator `sacred-server` uses, so that the comparison is of the servers.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROOM: &str = "bench-fanout";

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let (layer, io) = SocketIo::new_layer();
    io.ns("/", async |socket: SocketRef| {
        socket.on(
            "subscribe",
            async |socket: SocketRef, Data::<String>(room), ack: AckSender| {
                socket.join(room);
                let _ = ack.send(&true);
            },
        );
        socket.on("publish", async |socket: SocketRef, Data::<Value>(data)| {
            let _ = socket.within(ROOM).emit("publication", &data).await;
        });
    });
    let app = axum::Router::new().layer(layer);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "ws://{}", listener.local_addr()?)?;
    stdout.flush()?;
    let listener = listener.tap_io(|tcp| drop(tcp.set_nodelay(true)));
    axum::serve(listener, app).await
}
