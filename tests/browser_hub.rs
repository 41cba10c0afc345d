//! The hub the browser suite (`sacred-client/tests/browser.rs`) runs against,
//! started by `scripts/test`: a real `sacred-server` hub on a free loopback
//! port, whose `ws://` URL it prints as its first line, plus two RPC methods
//! that let a test in the browser do what a native test does with a proxy:
//!
//! - `test.kick` `{"channel": C, "code": N}`: disconnects every other client
//!   subscribed to `C` with close code `N` (default 3006, force reconnect)
//!   and returns how many it disconnected.
//! - `test.restart`: replies, then shuts the hub down (migrate advice, drain,
//!   3001) and starts a new one on the same port over the same history store,
//!   as a durable store would outlive a process.
//!
//! It serves until killed.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sacred_proto::{DisconnectCode, Value};
use sacred_server::{Hub, HubBuilder, HubOptions, MemoryHistory, NamespaceOptions, RpcError};
use sacred_tests::Server;
use tokio::sync::{mpsc, oneshot};

/// What an RPC handler asks of the loop that owns the server.
enum Control {
    Kick {
        channel: String,
        code: DisconnectCode,
        except: String,
        kicked: oneshot::Sender<usize>,
    },
    Restart,
}

#[tokio::main]
async fn main() {
    let history = Arc::new(MemoryHistory::new());
    let (control, mut requests) = mpsc::unbounded_channel();
    let mut server = Server::start(
        hub(&history, &control),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await;
    let addr = server.addr;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{}", server.url()).expect("stdout is writable");
    stdout.flush().expect("stdout is writable");
    while let Some(request) = requests.recv().await {
        match request {
            Control::Kick {
                channel,
                code,
                except,
                kicked,
            } => {
                let mut count = 0;
                for peer in server.hub.presence(&channel).await {
                    if peer.id != except && server.hub.disconnect(&peer.id, code) {
                        count += 1;
                    }
                }
                let _ = kicked.send(count);
            }
            Control::Restart => {
                server.stop().await;
                server = Server::start(hub(&history, &control), addr).await;
            }
        }
    }
}

/// A hub with room in its history for the tests' gaps, a short drain, and
/// the two test methods.
fn hub(history: &Arc<MemoryHistory>, control: &mpsc::UnboundedSender<Control>) -> HubBuilder {
    let mut options = HubOptions::default();
    options.drain = Duration::from_millis(100);
    let mut namespace = NamespaceOptions::default();
    namespace.history_size = 10_000;
    let (kick, restart) = (control.clone(), control.clone());
    Hub::builder()
        .options(options)
        .namespace("", namespace)
        .history_store(Arc::clone(history))
        .rpc("test.kick", move |ctx, data: Value| {
            let control = kick.clone();
            async move {
                let data = data.into_json();
                let channel = data["channel"]
                    .as_str()
                    .ok_or_else(|| RpcError::new(400, "`channel` is required"))?
                    .to_owned();
                let code = data["code"]
                    .as_u64()
                    .and_then(|code| u16::try_from(code).ok())
                    .map_or(DisconnectCode::FORCE_RECONNECT, DisconnectCode::from_u16);
                let (kicked, count) = oneshot::channel();
                let request = Control::Kick {
                    channel,
                    code,
                    except: ctx.caller.id,
                    kicked,
                };
                control
                    .send(request)
                    .map_err(|_| RpcError::new(500, "the hub is stopping"))?;
                let count = count
                    .await
                    .map_err(|_| RpcError::new(500, "the hub is stopping"))?;
                Ok(Value::from(count as u64))
            }
        })
        .rpc("test.restart", move |_, _| {
            let sent = restart.send(Control::Restart).is_ok();
            async move {
                if sent {
                    Ok(Value::Null)
                } else {
                    Err(RpcError::new(500, "the hub is stopping"))
                }
            }
        })
}
