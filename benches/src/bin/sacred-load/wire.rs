//! A thin protocol client for load over [`Lean`]: it speaks Sacred (connect,
//! subscribe, publish commands, pongs), the raw baseline (frames relayed as
//! they are) and Socket.IO (Engine.IO v4 over WebSocket), and counts
//! deliveries by their first bytes, decoding only what it must, so that the
//! generator spends as little of the machine as it can per delivery.

use std::sync::OnceLock;
use std::time::Instant;

use sacred_proto::{
    ClientInfo, ClientMessage, Codec, Command, ConnectRequest, Limits, PongRequest, PublishRequest,
    Push, Reply, ServerMessage, SubscribeRequest, Value,
};

use crate::lean::{BINARY, Frame, Lean, TEXT, find};

pub(crate) type Error = String;

/// What the server at the URL speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Protocol {
    /// A Sacred hub: connect, subscribe, publish commands.
    Sacred,
    /// `raw-broadcast`: every frame is relayed to every other client.
    Raw,
    /// `socketioxide-server`: Socket.IO rooms (Engine.IO v4, WebSocket transport).
    Socketio,
}

/// Nanoseconds since the generator started: publishers stamp payloads with
/// it and subscribers subtract it, all in one process.
pub(crate) fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The application payload every publication carries, as JSON text of
/// exactly `bytes` bytes (at least 40): send time, sequence number, padding.
/// Every server is given these same bytes to deliver.
pub(crate) fn payload(seq: u64, bytes: usize) -> String {
    let head = format!(r#"{{"t":{},"s":{seq},"p":""#, now_ns());
    let pad = bytes.saturating_sub(head.len() + 2);
    let mut text = String::with_capacity(bytes);
    text.push_str(&head);
    text.extend(std::iter::repeat_n('x', pad));
    text.push_str("\"}");
    text
}

/// The send time stamped in a payload made by [`payload`], found in any
/// frame that carries it as JSON text (servers may reorder its keys).
fn stamp_in(frame: &[u8]) -> Option<u64> {
    let at = find(frame, br#""t":"#)? + 4;
    let digits = frame[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&frame[at..at + digits])
        .ok()?
        .parse()
        .ok()
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

/// What one frame brought.
#[derive(Debug, Default)]
pub(crate) struct Received {
    /// Publications delivered.
    pub(crate) deliveries: u64,
    /// The send time of the first, when asked for.
    pub(crate) sent_ns: Option<u64>,
    /// Error replies.
    pub(crate) errors: u64,
}

/// One connection to a server of any protocol.
#[derive(Debug)]
pub(crate) struct Conn {
    lean: Lean,
    pub(crate) codec: Codec,
    protocol: Protocol,
    next_id: u32,
    limits: Limits,
}

impl Conn {
    /// Opens a connection and, for Sacred and Socket.IO, does their handshake.
    pub(crate) async fn start(
        url: &str,
        codec: Codec,
        protocol: Protocol,
        name: &str,
        token: Option<&str>,
    ) -> Result<Conn, Error> {
        let (url, subprotocol) = match protocol {
            Protocol::Sacred | Protocol::Raw => (url.to_owned(), Some(codec.subprotocol())),
            Protocol::Socketio => (
                format!(
                    "{}/socket.io/?EIO=4&transport=websocket",
                    url.trim_end_matches('/')
                ),
                None,
            ),
        };
        let lean = Lean::connect(&url, subprotocol).await?;
        let mut conn = Conn {
            lean,
            codec,
            protocol,
            next_id: 0,
            limits: limits(),
        };
        match protocol {
            Protocol::Sacred => {
                conn.call(ConnectRequest::new(token.map(str::to_owned), client_info(name)).into())
                    .await?;
            }
            Protocol::Raw => {}
            Protocol::Socketio => {
                // Engine.IO open packet, then the Socket.IO connect to "/".
                conn.expect_text(b"0").await?;
                conn.lean
                    .send(TEXT, b"40")
                    .await
                    .map_err(|e| e.to_string())?;
                conn.expect_text(b"40").await?;
            }
        }
        Ok(conn)
    }

    /// Reads text frames (answering Engine.IO pings) until one starting with `prefix`.
    async fn expect_text(&mut self, prefix: &[u8]) -> Result<(), Error> {
        loop {
            let frame = self.lean.next().await?;
            let text = self.lean.payload(&frame);
            if text.starts_with(prefix) {
                return Ok(());
            }
            if text == b"2" {
                self.lean
                    .send(TEXT, b"3")
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
    }

    /// Subscribes to `channel` (joins the room); nothing for the raw server.
    pub(crate) async fn subscribe(&mut self, channel: &str) -> Result<(), Error> {
        match self.protocol {
            Protocol::Sacred => self
                .call(SubscribeRequest::new(channel).into())
                .await
                .map(drop),
            Protocol::Raw => Ok(()),
            Protocol::Socketio => {
                // With an ack (id 1), so that the room is joined when this returns.
                let event = format!(r#"421["subscribe","{channel}"]"#);
                self.lean
                    .send(TEXT, event.as_bytes())
                    .await
                    .map_err(|e| e.to_string())?;
                self.expect_text(b"431").await
            }
        }
    }

    /// The next command id.
    fn id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    /// The frame that publishes `payload` (JSON text) to `channel`, without
    /// waiting for anything.
    pub(crate) fn publish_frame(&mut self, channel: &str, payload: &str) -> Vec<u8> {
        match (self.protocol, self.codec) {
            (Protocol::Sacred, Codec::Json) => format!(
                r#"{{"id":{},"publish":{{"channel":"{channel}","data":{payload}}}}}"#,
                self.id()
            )
            .into_bytes(),
            (Protocol::Sacred, Codec::MsgPack) => {
                let data: serde_json::Value =
                    serde_json::from_str(payload).expect("the generator's payload is JSON");
                let publish = PublishRequest::new(channel, Value::from(data));
                Codec::MsgPack
                    .encode(&ClientMessage::new(self.id(), publish))
                    .expect("load messages encode")
            }
            (Protocol::Raw, _) => payload.as_bytes().to_vec(),
            (Protocol::Socketio, _) => format!(r#"42["publish",{payload}]"#).into_bytes(),
        }
    }

    fn opcode(&self) -> u8 {
        match (self.protocol, self.codec) {
            (Protocol::Socketio, _) | (_, Codec::Json) => TEXT,
            (_, Codec::MsgPack) => BINARY,
        }
    }

    /// Sends frames made by [`Conn::publish_frame`] with one write.
    pub(crate) async fn send(&mut self, frames: &[Vec<u8>]) -> Result<(), Error> {
        let opcode = self.opcode();
        self.lean
            .send_all(opcode, frames)
            .await
            .map_err(|e| e.to_string())
    }

    /// Sends a command and reads until its reply (answering pings meanwhile).
    pub(crate) async fn call(&mut self, command: Command) -> Result<Reply, Error> {
        let id = self.id();
        let frame = self
            .codec
            .encode(&ClientMessage::new(id, command))
            .map_err(|e| e.to_string())?;
        self.send(&[frame]).await?;
        loop {
            let frame = self.lean.next().await?;
            for message in self.decode(&frame)? {
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
        let frame = self
            .codec
            .encode_batch(&messages)
            .map_err(|e| e.to_string())?;
        self.send(&[frame]).await?;
        loop {
            let frame = self.lean.next().await?;
            for message in self.decode(&frame)? {
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

    /// Answers a Sacred ping.
    async fn pong(&mut self) -> Result<(), Error> {
        let id = self.id();
        let frame = self
            .codec
            .encode(&ClientMessage::new(id, PongRequest::new()))
            .map_err(|e| e.to_string())?;
        self.send(&[frame]).await
    }

    fn decode(&self, frame: &Frame) -> Result<Vec<ServerMessage>, Error> {
        self.codec
            .decode::<ServerMessage>(self.lean.payload(frame), &self.limits)
            .map_err(|err| err.to_string())
    }

    /// Whether the next [`Conn::recv`] has a frame without waiting.
    pub(crate) fn has_frame(&self) -> bool {
        self.lean.has_frame()
    }

    /// Reads the next frame and counts the publications it delivers (by their
    /// first bytes: a frame is decoded only when it holds something else);
    /// with `sample`, the first one's send time too. Answers pings.
    /// Cancel-safe.
    pub(crate) async fn recv(&mut self, sample: bool) -> Result<Received, Error> {
        let frame = self.lean.next().await?;
        let bytes = self.lean.payload(&frame);
        let mut received = Received::default();
        match self.protocol {
            Protocol::Raw => {
                received.deliveries = 1;
                if sample {
                    received.sent_ns = stamp_in(bytes);
                }
            }
            Protocol::Socketio => {
                if bytes.starts_with(br#"42["publication","#) {
                    received.deliveries = 1;
                    if sample {
                        received.sent_ns = stamp_in(bytes);
                    }
                } else if bytes == b"2" {
                    self.lean
                        .send(TEXT, b"3")
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
            Protocol::Sacred => match (self.codec, publications(self.codec, bytes)) {
                // Acks and other replies that are not errors: nothing to count.
                (Codec::Json, None)
                    if bytes.starts_with(br#"{"id":"#) && find(bytes, br#""error":"#).is_none() => {
                }
                (Codec::Json, Some(n)) => {
                    received.deliveries = n;
                    if sample {
                        received.sent_ns = stamp_in(bytes);
                    }
                }
                (Codec::MsgPack, Some(n)) if !sample => received.deliveries = n,
                _ => {
                    let mut pong = false;
                    for message in self.decode(&frame)? {
                        match message {
                            ServerMessage::Push(Push::Publication(publication)) => {
                                received.deliveries += 1;
                                if sample && received.sent_ns.is_none() {
                                    received.sent_ns = stamp_of(&publication.data);
                                }
                            }
                            ServerMessage::Push(Push::Ping(_)) => pong = true,
                            ServerMessage::Reply { result: Err(_), .. } => received.errors += 1,
                            _ => {}
                        }
                    }
                    if pong {
                        self.pong().await?;
                    }
                }
            },
        }
        Ok(received)
    }
}

/// How many publications a frame holds if it holds nothing else, judged by
/// its bytes: a single push starts with its key; a JSON batch of them is
/// counted by that key. Anything else (a batch with a ping, a reply) is
/// decoded by the caller.
fn publications(codec: Codec, frame: &[u8]) -> Option<u64> {
    match codec {
        Codec::Json => {
            if frame.starts_with(br#"{"publication":"#) {
                return Some(1);
            }
            if frame.first() != Some(&b'[') {
                return None;
            }
            // One pass: every `{"p` is a publication, a ping, or a key of
            // the payload (`{"p":` in the generator's own payload).
            let mut count = 0;
            for at in memchr::memmem::find_iter(frame, br#"{"p"#) {
                match frame.get(at + 3) {
                    Some(b'u') => count += 1,
                    Some(b'i') => return None,
                    _ => {}
                }
            }
            (count > 0).then_some(count)
        }
        // A one-entry map (0x81) whose key is the 11-byte str "publication",
        // alone or in an array (fixarray, array 16 or array 32).
        Codec::MsgPack => {
            const PUBLICATION: &[u8] = b"\x81\xabpublication";
            if frame.starts_with(PUBLICATION) {
                return Some(1);
            }
            if !matches!(frame.first(), Some(0x90..=0x9f | 0xdc | 0xdd)) {
                return None;
            }
            if memchr::memmem::find(frame, b"\x81\xa4ping").is_some() {
                return None;
            }
            let count = memchr::memmem::find_iter(frame, PUBLICATION).count() as u64;
            (count > 0).then_some(count)
        }
    }
}

/// The send time in a decoded payload made by [`payload`].
fn stamp_of(data: &Value) -> Option<u64> {
    match data {
        Value::Object(map) => match map.get("t") {
            Some(Value::Number(n)) => n.as_u64(),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_the_size_asked_for_and_carry_their_stamp() {
        let text = payload(7, 200);
        assert_eq!(text.len(), 200);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["s"], 7);
        assert_eq!(stamp_in(text.as_bytes()), value["t"].as_u64());
    }

    #[test]
    fn msgpack_batches_are_counted_by_their_bytes() {
        use sacred_proto::{Ping, Publication};
        let publication = |time| {
            let mut p = Publication::new("c", Value::from(1), time);
            p.offset = Some(time);
            ServerMessage::push(p)
        };
        let two = Codec::MsgPack
            .encode_batch(&[publication(1), publication(2)])
            .unwrap();
        assert_eq!(publications(Codec::MsgPack, &two), Some(2));
        let one = Codec::MsgPack.encode(&publication(1)).unwrap();
        assert_eq!(publications(Codec::MsgPack, &one), Some(1));
        let mixed = Codec::MsgPack
            .encode_batch(&[publication(1), ServerMessage::push(Ping::new(2))])
            .unwrap();
        assert_eq!(publications(Codec::MsgPack, &mixed), None);
    }

    #[test]
    fn publications_are_counted_by_their_bytes() {
        let one = br#"{"publication":{"channel":"c","data":{"t":1},"time":1}}"#;
        assert_eq!(publications(Codec::Json, one), Some(1));
        let two = br#"[{"publication":{"channel":"c","time":1}},{"publication":{"channel":"c","time":2}}]"#;
        assert_eq!(publications(Codec::Json, two), Some(2));
        let mixed = br#"[{"publication":{"channel":"c","time":1}},{"ping":{"time":2}}]"#;
        assert_eq!(
            publications(Codec::Json, mixed),
            None,
            "decoded, to answer the ping"
        );
        assert_eq!(publications(Codec::Json, br#"{"id":1,"publish":{}}"#), None);
    }
}
