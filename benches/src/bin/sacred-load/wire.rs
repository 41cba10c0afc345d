//! A thin protocol client for load: a tokio-tungstenite socket plus
//! `sacred-proto`'s codecs, with none of `sacred-client`'s machinery (no
//! reconnect, no dedupe, no task per connection beyond the scenario's own),
//! so the generator spends as little of the shared CPU as it can.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use sacred_proto::{
    ClientInfo, ClientMessage, Codec, Command, ConnectRequest, Limits, Peer, PongRequest,
    Publication, Push, Reply, ServerMessage, SubscribeRequest, Value,
};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
pub(crate) type Error = String;

/// What the server at the URL speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Protocol {
    /// A Sacred hub: connect, subscribe, publish commands.
    Sacred,
    /// `raw-broadcast`: every frame is relayed to every other client.
    Raw,
}

/// Nanoseconds since the generator started: publishers stamp payloads with
/// it and subscribers subtract it, all in one process.
pub(crate) fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The payload every publication carries: send time, sequence number, padding.
pub(crate) fn payload(seq: u64, padding: &str) -> Value {
    let mut map = BTreeMap::new();
    map.insert("t".to_owned(), Value::from(now_ns()));
    map.insert("s".to_owned(), Value::from(seq));
    map.insert("p".to_owned(), Value::from(padding));
    Value::Object(map)
}

/// The send time and sequence number of a payload made by [`payload`].
pub(crate) fn stamp(data: &Value) -> Option<(u64, u64)> {
    let Value::Object(map) = data else {
        return None;
    };
    let number = |key: &str| match map.get(key) {
        Some(Value::Number(n)) => n.as_u64(),
        _ => None,
    };
    Some((number("t")?, number("s")?))
}

/// A publication push as a Sacred hub sends it for a client's publish: what
/// the raw baseline's publisher sends, so subscribers get the same bytes.
pub(crate) fn publication_push(channel: &str, seq: u64, data: Value) -> ServerMessage {
    let mut publication = Publication::new(channel, data, 1_790_000_000_000 + seq);
    publication.offset = Some(seq);
    publication.epoch = Some("c3b1f0a2".to_owned());
    publication.from = Some(Peer::new(
        "0190c8f2-7a4e-7c1d-9e5b-2f6a8d3c1e90",
        None,
        client_info("load-publisher"),
    ));
    ServerMessage::push(publication)
}

pub(crate) fn client_info(name: &str) -> ClientInfo {
    ClientInfo::new(name, "service", "rust", "sacred-load/0.1")
}

/// Limits for what the server sends: generous, as in `sacred-client`.
fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_frame_bytes = 64 << 20;
    limits.max_batch = 100_000;
    limits
}

/// One WebSocket connection speaking one codec.
pub(crate) struct Conn {
    pub(crate) socket: Socket,
    pub(crate) codec: Codec,
    next_id: u32,
    limits: Limits,
}

impl Conn {
    /// Opens a socket offering `codec`'s subprotocol, with small buffers
    /// (thousands of these share the machine with the server).
    pub(crate) async fn open(url: &str, codec: Codec) -> Result<Conn, Error> {
        let mut request = url.into_client_request().map_err(|e| e.to_string())?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(codec.subprotocol()),
        );
        let config = WebSocketConfig::default()
            .read_buffer_size(16 * 1024)
            .write_buffer_size(16 * 1024);
        let (socket, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
            .await
            .map_err(|e| format!("connect {url}: {e}"))?;
        Ok(Conn {
            socket,
            codec,
            next_id: 0,
            limits: limits(),
        })
    }

    /// Opens and, for a Sacred hub, sends `connect` and waits for its reply.
    pub(crate) async fn start(
        url: &str,
        codec: Codec,
        protocol: Protocol,
        name: &str,
    ) -> Result<Conn, Error> {
        let mut conn = Conn::open(url, codec).await?;
        if protocol == Protocol::Sacred {
            conn.call(ConnectRequest::new(None, client_info(name)))
                .await?;
        }
        Ok(conn)
    }

    /// Subscribes (Sacred only; the raw server has no channels).
    pub(crate) async fn subscribe(
        &mut self,
        protocol: Protocol,
        channel: &str,
    ) -> Result<(), Error> {
        if protocol == Protocol::Sacred {
            self.call(SubscribeRequest::new(channel)).await?;
        }
        Ok(())
    }

    /// The next command id.
    pub(crate) fn id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    /// Encodes a message as a frame of this codec's kind.
    pub(crate) fn frame<M: sacred_proto::Message>(&self, message: &M) -> Message {
        let bytes = self.codec.encode(message).expect("load messages encode");
        match self.codec {
            Codec::Json => Message::text(String::from_utf8(bytes).expect("JSON is UTF-8")),
            Codec::MsgPack => Message::binary(bytes),
        }
    }

    /// Sends a command and reads until its reply (answering pings meanwhile).
    async fn call(&mut self, command: impl Into<Command>) -> Result<Reply, Error> {
        let id = self.id();
        let frame = self.frame(&ClientMessage::new(id, command));
        self.socket.send(frame).await.map_err(|e| e.to_string())?;
        loop {
            for message in self.recv().await? {
                match message {
                    ServerMessage::Reply { id: got, result } if got == id => {
                        return result
                            .map_err(|err| format!("error {}: {}", err.code, err.message));
                    }
                    ServerMessage::Push(Push::Ping(_)) => self.pong().await?,
                    _ => {}
                }
            }
        }
    }

    /// Sends commands in one batch frame and reads until the last one's
    /// reply (answering pings meanwhile); fails on any error reply.
    pub(crate) async fn batch(&mut self, commands: Vec<Command>) -> Result<(), Error> {
        let messages: Vec<ClientMessage> = commands
            .into_iter()
            .map(|command| ClientMessage::new(self.id(), command))
            .collect();
        let last = messages.last().map_or(0, |m| m.id);
        let bytes = self
            .codec
            .encode_batch(&messages)
            .map_err(|e| e.to_string())?;
        let frame = match self.codec {
            Codec::Json => Message::text(String::from_utf8(bytes).map_err(|e| e.to_string())?),
            Codec::MsgPack => Message::binary(bytes),
        };
        self.socket.send(frame).await.map_err(|e| e.to_string())?;
        loop {
            for message in self.recv().await? {
                match message {
                    ServerMessage::Reply {
                        result: Err(err), ..
                    } => {
                        return Err(format!("error {}: {}", err.code, err.message));
                    }
                    ServerMessage::Reply { id, .. } if id == last => return Ok(()),
                    ServerMessage::Push(Push::Ping(_)) => self.pong().await?,
                    _ => {}
                }
            }
        }
    }

    /// Answers a ping.
    pub(crate) async fn pong(&mut self) -> Result<(), Error> {
        let id = self.id();
        let frame = self.frame(&ClientMessage::new(id, PongRequest::new()));
        self.socket.send(frame).await.map_err(|e| e.to_string())
    }

    /// The next frame's messages; an error once the socket ends.
    pub(crate) async fn recv(&mut self) -> Result<Vec<ServerMessage>, Error> {
        let frame = self.recv_frame().await?;
        self.decode(&frame)
    }

    /// The next data frame, undecoded; an error once the socket ends.
    pub(crate) async fn recv_frame(&mut self) -> Result<Bytes, Error> {
        loop {
            match self.socket.next().await {
                Some(Ok(Message::Text(text))) => return Ok(Bytes::from(text)),
                Some(Ok(Message::Binary(bytes))) => return Ok(bytes),
                Some(Ok(Message::Close(close))) => {
                    return Err(format!("closed: {:?}", close.map(|c| u16::from(c.code))));
                }
                Some(Ok(_)) => continue,
                Some(Err(err)) => return Err(err.to_string()),
                None => return Err("closed".to_owned()),
            }
        }
    }

    /// Whether a frame is a single publication push, judged by its first
    /// bytes, so receivers count publications without decoding each one.
    pub(crate) fn is_publication(&self, frame: &[u8]) -> bool {
        match self.codec {
            Codec::Json => frame.starts_with(br#"{"publication":"#),
            // A one-entry map (0x81) whose key is the 11-byte str "publication".
            Codec::MsgPack => frame.starts_with(b"\x81\xabpublication"),
        }
    }

    pub(crate) fn decode(&self, bytes: &[u8]) -> Result<Vec<ServerMessage>, Error> {
        self.codec
            .decode::<ServerMessage>(bytes, &self.limits)
            .map_err(|err| err.to_string())
    }
}
