//! Helpers for the workspace's end-to-end tests: a real hub on loopback, and a
//! TCP proxy between client and hub that the test can cut, close, silence and
//! count frames at.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::serve::ListenerExt;
use sacred_server::{Hub, HubBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The longest any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// Any free port on loopback.
pub fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Waits for `future`, failing the test with `what` after [`WAIT`].
pub async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// The default hub options without the per-connection command rate, for
/// tests that publish in bulk (the rate has its own tests in sacred-server).
pub fn unlimited() -> sacred_server::HubOptions {
    let mut options = sacred_server::HubOptions::default();
    options.messages_per_minute = 0;
    options
}

/// A client that reconnects quickly, so tests spend little time waiting.
pub fn quick(url: &str, codec: sacred_proto::Codec) -> sacred_client::ClientBuilder {
    sacred_client::Client::builder(url)
        .codec(codec)
        .name("test")
        .reconnect(Duration::from_millis(20), Duration::from_millis(100))
}

/// A hub serving on loopback.
#[derive(Debug)]
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its handle.
    pub hub: Hub,
    task: JoinHandle<()>,
}

impl Server {
    /// Serves `builder`'s hub on `addr` (port 0 for any).
    pub async fn start(builder: HubBuilder, addr: SocketAddr) -> Server {
        let (router, hub) = builder.build().expect("valid hub settings");
        let listener = TcpListener::bind(addr).await.expect("the port is free");
        let addr = listener.local_addr().unwrap();
        let listener = listener.tap_io(|tcp| drop(tcp.set_nodelay(true)));
        let task = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Server { addr, hub, task }
    }

    /// `ws://` URL of the hub.
    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Shuts the hub down (clients get 3001) and stops listening.
    pub async fn stop(mut self) {
        self.hub.shutdown().await;
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TCP proxy in front of a hub.
#[derive(Debug)]
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    control: Arc<Control>,
    task: JoinHandle<()>,
}

#[derive(Debug)]
struct Control {
    target: SocketAddr,
    /// While false, new connections are closed at once.
    up: AtomicBool,
    /// While true, bytes from the hub are dropped (a silent server).
    swallow: AtomicBool,
    /// Bumped to cut every current connection.
    cuts: watch::Sender<u64>,
    /// WebSocket data frames sent by clients.
    client_frames: AtomicUsize,
}

impl Proxy {
    /// A proxy forwarding to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let control = Arc::new(Control {
            target,
            up: AtomicBool::new(true),
            swallow: AtomicBool::new(false),
            cuts: watch::Sender::new(0),
            client_frames: AtomicUsize::new(0),
        });
        let shared = Arc::clone(&control);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if shared.up.load(Ordering::Acquire) {
                    tokio::spawn(relay(client, Arc::clone(&shared)));
                }
            }
        });
        Proxy {
            addr,
            control,
            task,
        }
    }

    /// `ws://` URL through the proxy.
    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Cuts every current connection.
    pub fn cut(&self) {
        self.control.cuts.send_modify(|n| *n += 1);
    }

    /// Refuses (false) or accepts (true) new connections.
    pub fn set_up(&self, up: bool) {
        self.control.up.store(up, Ordering::Release);
    }

    /// Drops (true) or forwards (false) everything the hub sends.
    pub fn swallow(&self, on: bool) {
        self.control.swallow.store(on, Ordering::Release);
    }

    /// WebSocket data frames clients sent so far.
    pub fn client_frames(&self) -> usize {
        self.control.client_frames.load(Ordering::Acquire)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(client: TcpStream, control: Arc<Control>) {
    let Ok(server) = TcpStream::connect(control.target).await else {
        return;
    };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let mut cuts = control.cuts.subscribe();
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = async {
        let mut counter = FrameCounter::default();
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let n = client_read.read(&mut buffer).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            let frames = counter.feed(&buffer[..n]);
            control.client_frames.fetch_add(frames, Ordering::AcqRel);
            server_write.write_all(&buffer[..n]).await?;
        }
    };
    let downstream = async {
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let n = server_read.read(&mut buffer).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            if !control.swallow.load(Ordering::Acquire) {
                client_write.write_all(&buffer[..n]).await?;
            }
        }
    };
    tokio::select! {
        _ = upstream => {},
        _ = downstream => {},
        _ = cuts.changed() => {},
    }
}

/// Counts WebSocket data frames in a client-to-server byte stream: skips the
/// HTTP upgrade request, then walks frame headers (client frames are masked).
#[derive(Debug, Default)]
struct FrameCounter {
    handshake_done: bool,
    pending: Vec<u8>,
    /// Payload bytes of the current frame still to skip.
    skip: usize,
}

impl FrameCounter {
    fn feed(&mut self, bytes: &[u8]) -> usize {
        self.pending.extend_from_slice(bytes);
        if !self.handshake_done {
            let Some(end) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                return 0;
            };
            self.pending.drain(..end + 4);
            self.handshake_done = true;
        }
        let mut frames = 0;
        loop {
            if self.skip > 0 {
                let n = self.skip.min(self.pending.len());
                self.pending.drain(..n);
                self.skip -= n;
                if self.skip > 0 {
                    return frames;
                }
            }
            let [first, second, ..] = self.pending[..] else {
                return frames;
            };
            let (header, len) = match second & 0x7f {
                126 if self.pending.len() >= 4 => (
                    4,
                    usize::from(u16::from_be_bytes([self.pending[2], self.pending[3]])),
                ),
                127 if self.pending.len() >= 10 => (
                    10,
                    u64::from_be_bytes(self.pending[2..10].try_into().unwrap()) as usize,
                ),
                126 | 127 => return frames,
                short => (2, usize::from(short)),
            };
            let mask = if second & 0x80 != 0 { 4 } else { 0 };
            if self.pending.len() < header + mask {
                return frames;
            }
            if matches!(first & 0x0f, 1 | 2) {
                frames += 1;
            }
            self.pending.drain(..header + mask);
            self.skip = len;
        }
    }
}
