//! The raw baseline for the fan-out benchmark: the least a tokio-tungstenite
//! server can do to broadcast. No protocol, no channels, no handshake beyond
//! the WebSocket upgrade: every data message a client sends is relayed, as
//! is, to every other client. The load generator sends it frames already
//! shaped like Sacred's publication pushes, so subscribers do the same work
//! against both servers and Sacred's fan-out reads as a ratio of what its own
//! stack (tokio, tungstenite, loopback TCP) can do on the same machine.
//!
//! Usage: `raw-broadcast [ADDR]` (default `127.0.0.1:0`); prints
//! `ws://ADDR/` on its first line, then serves until killed.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

/// How many messages a slow receiver may fall behind before it skips some.
/// The generator's in-flight window keeps every receiver well within it.
const CAPACITY: usize = 1 << 16;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "ws://{}/", listener.local_addr()?)?;
    stdout.flush()?;
    let (relay, _) = broadcast::channel::<(u64, Message)>(CAPACITY);
    let ids = AtomicU64::new(0);
    loop {
        let (tcp, _) = listener.accept().await?;
        let id = ids.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(serve(tcp, id, relay.clone()));
    }
}

async fn serve(tcp: TcpStream, id: u64, relay: broadcast::Sender<(u64, Message)>) {
    let _ = tcp.set_nodelay(true);
    let Ok(socket) = tokio_tungstenite::accept_hdr_async(tcp, echo_subprotocol).await else {
        return;
    };
    let (mut write, mut read) = socket.split();
    let mut inbox = relay.subscribe();
    let reader = async {
        while let Some(Ok(message)) = read.next().await {
            if message.is_text() || message.is_binary() {
                let _ = relay.send((id, message));
            }
        }
    };
    let writer = async {
        loop {
            let mut message = match inbox.recv().await {
                Ok(message) => Some(message),
                Err(RecvError::Lagged(_)) => None,
                Err(RecvError::Closed) => return,
            };
            // Everything already waiting goes out with one flush.
            loop {
                if let Some((from, frame)) = message.take()
                    && from != id
                    && write.feed(frame).await.is_err()
                {
                    return;
                }
                match inbox.try_recv() {
                    Ok(next) => message = Some(next),
                    Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                    Err(_) => break,
                }
            }
            if write.flush().await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = reader => {},
        () = writer => {},
    }
}

/// Echoes the first offered subprotocol, as a client that offered one requires.
#[allow(
    clippy::result_large_err,
    reason = "the signature of tungstenite's handshake callback"
)]
fn echo_subprotocol(request: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
    if let Some(offered) = request.headers().get("Sec-WebSocket-Protocol") {
        let first = offered
            .to_str()
            .unwrap_or("")
            .split(',')
            .next()
            .unwrap_or("");
        if let Ok(value) = first.trim().parse() {
            response
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", value);
        }
    }
    Ok(response)
}
