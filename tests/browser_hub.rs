//! The hub the browser suite (`sacred-client/tests/browser.rs`) and the
//! Python suite (`bindings/python/tests`) run against, started by
//! `scripts/test` and the pytest fixture: a real `sacred-server` hub on a
//! free loopback port, whose `ws://` URL it prints as its first line, plus
//! RPC methods that let a test in the browser or in Python do what a native
//! test does with a proxy:
//!
//! - `test.kick` `{"channel": C, "code": N}`: disconnects every other client
//!   subscribed to `C` with close code `N` (default 3006, force reconnect)
//!   and returns how many it disconnected.
//! - `test.restart`: replies, then shuts the hub down (migrate advice, drain,
//!   3001) and starts a new one on the same port over the same history store,
//!   as a durable store would outlive a process.
//!
//! - `test.echo`: returns its data.
//!
//! History lives in an SQLite file in the temporary directory (deleted at
//! start if a previous run left one), so the namespace `search` (channels
//! `search:*`) can enable full-text search.
//!
//! Tokens: none is anonymous; `user:<name>` is that user for good;
//! `short:<name>:<ms>` is that user with a token that expires after `<ms>`
//! (so the client must refresh); anything else is refused with 3500.
//!
//! An address to bind may be passed as its argument. It serves until killed.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sacred_proto::{DisconnectCode, Value};
use sacred_server::{
    AuthError, Authenticator, ConnectContext, Durability, Hub, HubBuilder, HubOptions, Identity,
    NamespaceOptions, RpcError, SqliteHistory,
};
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
    let path = std::env::temp_dir().join(format!("sacred-browser-hub-{}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let mut stale = path.clone().into_os_string();
        stale.push(suffix);
        let _ = std::fs::remove_file(stale);
    }
    let history =
        Arc::new(SqliteHistory::open(&path, Durability::default()).expect("a history file"));
    let (control, mut requests) = mpsc::unbounded_channel();
    // An address to bind may be given (to restart on the same port); a free
    // loopback port by default.
    let bind = match std::env::args().nth(1) {
        Some(addr) => addr
            .parse()
            .expect("the argument is an address such as 127.0.0.1:8000"),
        None => SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let mut server = Server::start(hub(&history, &control), bind).await;
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

/// The tokens of the module docs.
struct TestTokens;

impl Authenticator for TestTokens {
    fn authenticate<'a>(
        &'a self,
        request: &'a ConnectContext,
    ) -> BoxFuture<'a, Result<Identity, AuthError>> {
        let identity = match request.token.as_deref() {
            None => Ok(Identity::anonymous()),
            Some(token) => match token.split(':').collect::<Vec<_>>()[..] {
                ["user", name] => Ok(Identity::user(name)),
                ["short", name, ms] => match ms.parse::<u64>() {
                    Ok(ms) => {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |since| since.as_millis() as u64);
                        Ok(Identity::user(name).expires(now + ms))
                    }
                    Err(_) => Err(AuthError::InvalidToken),
                },
                _ => Err(AuthError::InvalidToken),
            },
        };
        Box::pin(std::future::ready(identity))
    }
}

/// A hub with room in its history for the tests' gaps, a short drain, and
/// the two test methods.
fn hub(history: &Arc<SqliteHistory>, control: &mpsc::UnboundedSender<Control>) -> HubBuilder {
    let mut options = HubOptions::default();
    options.drain = Duration::from_millis(100);
    // The test pages are served from other ports than the hub's.
    options.allowed_origins = vec!["*".to_owned()];
    // Every test opens connections from 127.0.0.1, some publish in bulk.
    options.connections_per_minute = 0;
    options.messages_per_minute = 0;
    let mut namespace = NamespaceOptions::default();
    namespace.history_size = 10_000;
    let (kick, restart) = (control.clone(), control.clone());
    Hub::builder()
        .options(options)
        .namespace("", namespace.clone())
        .namespace("search", namespace.search(true))
        .history_store(Arc::clone(history))
        .authenticator(TestTokens)
        .rpc("test.echo", |_, data: Value| async move { Ok(data) })
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
