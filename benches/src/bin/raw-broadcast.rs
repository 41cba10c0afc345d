//! The raw baseline for the fan-out benchmark: what a tokio-tungstenite
//! server does to broadcast, as strongly as the stack allows and with no
//! protocol of its own. Every data message a client sends is relayed, as is,
//! to every other client: the generator sends it the same application
//! payload it gives Sacred's publish, so what Sacred adds (its envelope, its
//! channels, its history) reads as the ratio between the two.
//!
//! Each client has a bounded queue; its writer takes everything queued and
//! sends it with one flush. A sender that finds a queue full waits for room,
//! which slows the publisher's reads: nothing is dropped.
//!
//! Usage: `raw-broadcast [ADDR]` (default `127.0.0.1:0`); prints
//! `ws://ADDR/` on its first line, then serves until killed.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The allocator `sacred-server` uses, so that the comparison is of the servers.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Messages one client's queue holds.
const QUEUE: usize = 4096;

/// Everyone connected: a snapshot that fan-out reads without holding the
/// lock, replaced when someone joins or leaves.
type Clients = Mutex<Arc<Vec<(u64, mpsc::Sender<Message>)>>>;

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
    let clients: Arc<Clients> = Arc::default();
    let ids = AtomicU64::new(0);
    loop {
        let (tcp, _) = listener.accept().await?;
        let id = ids.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(serve(tcp, id, Arc::clone(&clients)));
    }
}

fn update(clients: &Clients, change: impl FnOnce(&mut Vec<(u64, mpsc::Sender<Message>)>)) {
    let mut guard = clients
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut next = Vec::clone(&guard);
    change(&mut next);
    *guard = Arc::new(next);
}

async fn serve(tcp: TcpStream, id: u64, clients: Arc<Clients>) {
    let _ = tcp.set_nodelay(true);
    // The same buffer sizes as Sacred's server, so idle memory compares too.
    let config = WebSocketConfig::default()
        .read_buffer_size(2 * 1024)
        .write_buffer_size(16 * 1024);
    let Ok(socket) =
        tokio_tungstenite::accept_hdr_async_with_config(tcp, echo_subprotocol, Some(config)).await
    else {
        return;
    };
    let (mut write, mut read) = socket.split();
    let (queue, mut inbox) = mpsc::channel(QUEUE);
    update(&clients, |all| all.push((id, queue)));
    let reader = async {
        while let Some(Ok(message)) = read.next().await {
            if !(message.is_text() || message.is_binary()) {
                continue;
            }
            let everyone = Arc::clone(&clients.lock().unwrap_or_else(|p| p.into_inner()));
            for (other, queue) in everyone.iter() {
                if *other == id {
                    continue;
                }
                // Queued without waiting while there is room (an `await` per
                // recipient would hand the thread to the writers one message
                // at a time); only a full queue makes the publisher wait.
                if let Err(mpsc::error::TrySendError::Full(message)) =
                    queue.try_send(message.clone())
                {
                    let _ = queue.send(message).await;
                }
            }
        }
    };
    let writer = async {
        while let Some(first) = inbox.recv().await {
            if write.feed(first).await.is_err() {
                return;
            }
            // Everything already waiting goes out with one flush.
            while let Ok(next) = inbox.try_recv() {
                if write.feed(next).await.is_err() {
                    return;
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
    update(&clients, |all| all.retain(|(other, _)| *other != id));
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
