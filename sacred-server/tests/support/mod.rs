//! A real server on 127.0.0.1:0 and a wire-level test client built from
//! tokio-tungstenite and sacred-proto alone (not the client crate). Every wait
//! is bounded by `WAIT`, so a hang fails fast.

#![allow(dead_code, unreachable_pub)]

pub mod otlp;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::serve::ListenerExt;
use futures_util::{SinkExt, StreamExt};
use sacred_proto::*;
use sacred_server::{Hub, HubBuilder};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The longest any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(5);

/// Starts the `sacred-server` binary on 127.0.0.1:0 with JSON logs and
/// `args`; returns it and its address once it listens. Its log is read on
/// meanwhile, so it never blocks on a full pipe.
pub async fn spawn_binary<I, S>(args: I) -> (tokio::process::Child, SocketAddr)
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sacred-server"))
        .args(["--bind", "127.0.0.1:0", "--log-format", "json"])
        // Many connections from 127.0.0.1 and bulk publishes: the limits
        // have their own tests.
        .args([
            "--connections-per-minute",
            "0",
            "--messages-per-minute",
            "0",
        ])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let log: serde_json::Value = serde_json::from_str(&line).unwrap();
            if let Some(address) = log["fields"]["address"].as_str() {
                return address.parse().unwrap();
            }
        }
        panic!("the binary exited before listening");
    })
    .await
    .expect("the binary listens in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

pub struct Server {
    pub addr: SocketAddr,
    pub hub: Hub,
    task: JoinHandle<()>,
}

impl Server {
    /// Builds the hub and serves its router alone.
    pub async fn start(builder: HubBuilder) -> Server {
        let (router, hub) = builder.build().expect("valid hub settings");
        Server::serve(router, hub).await
    }

    /// Serves any app (e.g. a host app with the router nested in it).
    pub async fn serve(app: Router, hub: Hub) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let listener = listener.tap_io(|tcp| drop(tcp.set_nodelay(true)));
        // With connect info, as the binary serves: authenticators see the address.
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Server { addr, hub, task }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub codec: Codec,
    next_id: u32,
    replies: HashMap<u32, Result<Reply, ReplyError>>,
    pushes: VecDeque<Push>,
    /// The close code and reason, once the server closed.
    pub close: Option<(u16, String)>,
    /// The `disconnect` push that preceded the close, if any.
    pub disconnect: Option<Disconnect>,
    /// What arrived, in order: `Ok(id)` for a reply, `Err(channel)` for a publication.
    pub arrivals: Vec<Result<u32, String>>,
    /// The messages in each data frame read so far.
    pub frames: Vec<usize>,
}

impl Client {
    /// Opens a WebSocket offering `codec`'s subprotocol.
    pub async fn open(url: &str, codec: Codec) -> Client {
        Client::open_offering(url, Some(codec.subprotocol()))
            .await
            .expect("upgrade accepted")
    }

    /// Opens a WebSocket offering `protocols` (a raw header value, or none).
    pub async fn open_offering(
        url: &str,
        protocols: Option<&str>,
    ) -> Result<Client, tungstenite::Error> {
        Client::open_with_headers(url, protocols, &[]).await
    }

    /// Opens a WebSocket offering `protocols`, with extra request headers.
    pub async fn open_with_headers(
        url: &str,
        protocols: Option<&str>,
        headers: &[(&'static str, &str)],
    ) -> Result<Client, tungstenite::Error> {
        let mut request = url.into_client_request().unwrap();
        if let Some(protocols) = protocols {
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_str(protocols).unwrap(),
            );
        }
        for (name, value) in headers {
            request
                .headers_mut()
                .insert(*name, HeaderValue::from_str(value).unwrap());
        }
        let (ws, response) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
            .await
            .expect("upgrade in time")?;
        let chosen = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok());
        let codec = chosen
            .and_then(Codec::from_subprotocol)
            .unwrap_or(Codec::Json);
        Ok(Client {
            ws,
            codec,
            next_id: 0,
            replies: HashMap::new(),
            pushes: VecDeque::new(),
            close: None,
            disconnect: None,
            arrivals: Vec::new(),
            frames: Vec::new(),
        })
    }

    /// Opens and connects anonymously with `info`.
    pub async fn connect(url: &str, codec: Codec, info: ClientInfo) -> (Client, ConnectReply) {
        let mut client = Client::open(url, codec).await;
        let reply = client
            .connect_with(ConnectRequest::new(None, info))
            .await
            .expect("connect accepted");
        (client, reply)
    }

    pub async fn connect_with(
        &mut self,
        request: ConnectRequest,
    ) -> Result<ConnectReply, ReplyError> {
        match self.request(request).await? {
            Reply::Connect(reply) => Ok(reply),
            other => panic!("not a connect reply: {other:?}"),
        }
    }

    pub fn next_id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    /// Sends messages in one frame (a batch when more than one).
    pub async fn send(&mut self, messages: &[ClientMessage]) {
        let bytes = if messages.len() == 1 {
            self.codec.encode(&messages[0])
        } else {
            self.codec.encode_batch(messages)
        };
        let bytes = bytes.unwrap();
        let frame = match self.codec {
            Codec::Json => Message::text(String::from_utf8(bytes).unwrap()),
            Codec::MsgPack => Message::binary(bytes),
        };
        self.send_raw(frame).await;
    }

    /// Closes the WebSocket with a normal close (1000).
    pub async fn close_normally(&mut self) {
        let normal = tungstenite::protocol::CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        };
        let _ = self.ws.close(Some(normal)).await;
        while self.read().await {}
    }

    /// Closes normally and returns the code of the close frame the server
    /// answered with, if it did.
    pub async fn close_and_hear_back(&mut self) -> Option<u16> {
        self.close_normally().await;
        self.close.as_ref().map(|(code, _)| *code)
    }

    pub async fn send_raw(&mut self, frame: Message) {
        // The server may already have closed; the test then reads the close.
        let _ = self.ws.send(frame).await;
    }

    /// Sends one command and waits for its reply (pushes meanwhile are kept).
    pub async fn request(&mut self, command: impl Into<Command>) -> Result<Reply, ReplyError> {
        let id = self.next_id();
        self.send(&[ClientMessage::new(id, command)]).await;
        self.reply(id).await
    }

    /// Waits for the reply to command `id`.
    pub async fn reply(&mut self, id: u32) -> Result<Reply, ReplyError> {
        match self.try_reply(id).await {
            Some(reply) => reply,
            None => panic!(
                "connection closed while waiting for reply {id}: {:?}",
                self.close
            ),
        }
    }

    /// Sends one command and waits for its reply; `None` if the connection
    /// ends first (a server killed under a client).
    pub async fn try_request(
        &mut self,
        command: impl Into<Command>,
    ) -> Option<Result<Reply, ReplyError>> {
        let id = self.next_id();
        self.send(&[ClientMessage::new(id, command)]).await;
        self.try_reply(id).await
    }

    /// Waits for the reply to command `id`; `None` if the connection ends first.
    pub async fn try_reply(&mut self, id: u32) -> Option<Result<Reply, ReplyError>> {
        loop {
            if let Some(reply) = self.replies.remove(&id) {
                return Some(reply);
            }
            if !self.read().await {
                return None;
            }
        }
    }

    /// The next push (publication, join, ...), in arrival order.
    pub async fn push(&mut self) -> Push {
        loop {
            if let Some(push) = self.pushes.pop_front() {
                return push;
            }
            assert!(
                self.read().await,
                "connection closed while waiting for a push: {:?}",
                self.close
            );
        }
    }

    /// The next publication, skipping pings.
    pub async fn publication(&mut self) -> Publication {
        loop {
            match self.push().await {
                Push::Publication(publication) => return publication,
                Push::Ping(_) => continue,
                other => panic!("expected a publication, got {other:?}"),
            }
        }
    }

    /// Reads until the server closes; returns the close code.
    pub async fn closed(&mut self) -> Option<u16> {
        while self.read().await {}
        self.close.as_ref().map(|(code, _)| *code)
    }

    /// Reads one frame into replies/pushes; false once the connection ended.
    async fn read(&mut self) -> bool {
        let frame = tokio::time::timeout(WAIT, self.ws.next())
            .await
            .expect("the server answers in time");
        let bytes: Vec<u8> = match frame {
            Some(Ok(Message::Text(text))) => text.as_bytes().to_vec(),
            Some(Ok(Message::Binary(bytes))) => bytes.to_vec(),
            Some(Ok(Message::Close(frame))) => {
                self.close = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                if self.close.is_none() {
                    self.close = Some((u16::from(CloseCode::Status), String::new()));
                }
                return false;
            }
            Some(Ok(_)) => return true,
            Some(Err(_)) | None => return false,
        };
        let mut limits = Limits::default();
        limits.max_frame_bytes = 16 << 20;
        let messages: Vec<ServerMessage> = self
            .codec
            .decode(&bytes, &limits)
            .expect("the server sends valid frames");
        self.frames.push(messages.len());
        for message in messages {
            match message {
                ServerMessage::Reply { id, result } => {
                    self.arrivals.push(Ok(id));
                    assert!(
                        self.replies.insert(id, result).is_none(),
                        "two replies to {id}"
                    );
                }
                ServerMessage::Push(Push::Disconnect(disconnect)) => {
                    self.disconnect = Some(disconnect)
                }
                ServerMessage::Push(push) => {
                    if let Push::Publication(publication) = &push {
                        self.arrivals.push(Err(publication.channel.clone()));
                    }
                    self.pushes.push_back(push);
                }
            }
        }
        true
    }
}

impl Client {
    /// Whether a publication of `channel` arrived before the reply to `id`.
    pub fn publication_before_reply(&self, id: u32, channel: &str) -> bool {
        let reply = self
            .arrivals
            .iter()
            .position(|a| *a == Ok(id))
            .expect("the reply arrived");
        self.arrivals[..reply]
            .iter()
            .any(|a| a.as_ref().err().map(String::as_str) == Some(channel))
    }
}

/// A plain HTTP/1.1 GET; returns the whole response (status line, headers, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
            .await
            .unwrap();
        let mut response = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut response)
            .await
            .unwrap();
        response
    };
    tokio::time::timeout(WAIT, exchange)
        .await
        .expect("the HTTP answer in time")
}

/// A client description for tests.
pub fn info(name: &str) -> ClientInfo {
    ClientInfo::new(name, "agent", "rust", "test")
}

pub fn subscribe_reply(reply: Result<Reply, ReplyError>) -> SubscribeReply {
    match reply {
        Ok(Reply::Subscribe(reply)) => reply,
        other => panic!("not a subscribe reply: {other:?}"),
    }
}

pub fn publish_reply(reply: Result<Reply, ReplyError>) -> PublishReply {
    match reply {
        Ok(Reply::Publish(reply)) => reply,
        other => panic!("not a publish reply: {other:?}"),
    }
}

/// The error code of a failed reply.
pub fn error_code(reply: Result<Reply, ReplyError>) -> u32 {
    match reply {
        Err(err) => err.code,
        Ok(reply) => panic!("expected an error, got {reply:?}"),
    }
}

pub fn text(value: &str) -> Value {
    Value::from(value)
}

/// Polls `condition` until it holds, failing after [`WAIT`]: for state the
/// hub updates after a socket closes (counts, presence).
pub async fn wait_until<F, Fut>(mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let polled = async {
        while !condition().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(WAIT, polled)
        .await
        .expect("the condition holds in time");
}

/// The default options without the per-address connection rate and the
/// per-connection command rate: for tests that open many connections from
/// 127.0.0.1 or publish in bulk (the limits have their own tests, which
/// start from `HubOptions::default()`).
pub fn unlimited() -> sacred_server::HubOptions {
    let mut options = sacred_server::HubOptions::default();
    options.connections_per_minute = 0;
    options.messages_per_minute = 0;
    options
}
