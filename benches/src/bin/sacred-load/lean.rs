//! A lean WebSocket client for load: the HTTP upgrade and RFC 6455 framing
//! over a plain `TcpStream`, reading frames in place in one buffer per
//! connection, so that receiving costs the generator no allocation per
//! frame. The generator must be cheaper per delivery than the servers it
//! measures, or the figures are its own.

use std::io;
use std::ops::Range;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// WebSocket opcodes used here.
pub(crate) const TEXT: u8 = 0x1;
pub(crate) const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// Bytes read from the socket at a time (the buffer grows for larger frames).
const READ_CHUNK: usize = 16 * 1024;

/// A data frame in the read buffer: where its payload is.
#[derive(Clone, Debug)]
pub(crate) struct Frame {
    payload: Range<usize>,
}

/// One WebSocket connection.
#[derive(Debug)]
pub(crate) struct Lean {
    stream: TcpStream,
    buf: Vec<u8>,
    /// `buf[start..end]` holds bytes read and not yet parsed.
    start: usize,
    end: usize,
    /// Bytes of the frame handed out last, dropped at the next read.
    consumed: usize,
    /// Frames to write, assembled here before one `write_all`.
    out: Vec<u8>,
    /// The masking key's source (client frames must be masked).
    mask: u32,
}

impl Lean {
    /// Opens a WebSocket to `ws://host:port/path` offering `subprotocol`.
    pub(crate) async fn connect(url: &str, subprotocol: Option<&str>) -> Result<Lean, String> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| format!("{url}: only ws:// URLs"))?;
        let (host, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/"),
        };
        let stream = TcpStream::connect(host)
            .await
            .map_err(|err| format!("connect {host}: {err}"))?;
        stream.set_nodelay(true).map_err(|err| err.to_string())?;
        let mut lean = Lean {
            stream,
            buf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
            consumed: 0,
            out: Vec::with_capacity(1024),
            mask: 0x9e37_79b9,
        };
        let protocol = subprotocol
            .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{protocol}\r\n"
        );
        lean.stream
            .write_all(request.as_bytes())
            .await
            .map_err(|err| err.to_string())?;
        // The response head; what follows it is the first frames.
        loop {
            if let Some(at) = find(&lean.buf[..lean.end], b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&lean.buf[..at]).into_owned();
                if !head.starts_with("HTTP/1.1 101") {
                    return Err(format!(
                        "upgrade refused: {}",
                        head.lines().next().unwrap_or("")
                    ));
                }
                lean.start = at + 4;
                return Ok(lean);
            }
            lean.fill().await.map_err(|err| err.to_string())?;
        }
    }

    /// Reads more bytes into the buffer, making room first.
    async fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 && self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                self.buf.resize(self.buf.len() * 2, 0);
            }
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.end += n;
        Ok(())
    }

    /// The next data frame. Pings are answered and pongs skipped on the way;
    /// a close frame ends the connection (an error naming its code).
    /// Cancel-safe: what was read stays in the buffer.
    pub(crate) async fn next(&mut self) -> Result<Frame, String> {
        self.start += std::mem::take(&mut self.consumed);
        loop {
            match self.parse() {
                Some((opcode, payload, len)) => match opcode {
                    TEXT | BINARY => {
                        self.consumed = len;
                        return Ok(Frame { payload });
                    }
                    PING => {
                        let data = self.buf[payload].to_vec();
                        self.start += len;
                        self.send(PONG, &data)
                            .await
                            .map_err(|err| err.to_string())?;
                    }
                    CLOSE => {
                        let code = (payload.len() >= 2).then(|| {
                            u16::from_be_bytes([
                                self.buf[payload.start],
                                self.buf[payload.start + 1],
                            ])
                        });
                        return Err(format!("closed: {code:?}"));
                    }
                    _ => self.start += len,
                },
                None => self.fill().await.map_err(|err| err.to_string())?,
            }
        }
    }

    /// Whether another complete frame is already in the buffer (the next
    /// [`Lean::next`] will not wait for the socket).
    pub(crate) fn has_frame(&self) -> bool {
        let start = self.start + self.consumed;
        start < self.end && self.parse_at(start).is_some()
    }

    /// The payload of `frame`, valid until the next read.
    pub(crate) fn payload(&self, frame: &Frame) -> &[u8] {
        &self.buf[frame.payload.clone()]
    }

    /// A complete frame at the start of the buffer: opcode, payload range,
    /// total length. (Servers do not fragment these frames, nor mask them.)
    fn parse(&self) -> Option<(u8, Range<usize>, usize)> {
        self.parse_at(self.start)
    }

    fn parse_at(&self, start: usize) -> Option<(u8, Range<usize>, usize)> {
        let bytes = &self.buf[start..self.end];
        let [first, second, ..] = *bytes else {
            return None;
        };
        let (header, len) = match second & 0x7f {
            126 => (
                4,
                u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?) as usize,
            ),
            127 => (
                10,
                u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?) as usize,
            ),
            short => (2, usize::from(short)),
        };
        if bytes.len() < header + len {
            return None;
        }
        let payload = start + header..start + header + len;
        Some((first & 0x0f, payload, header + len))
    }

    /// Sends one masked frame.
    pub(crate) async fn send(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        self.out.clear();
        self.queue(opcode, payload);
        self.stream.write_all(&self.out).await
    }

    /// Sends several frames of one opcode with one write.
    pub(crate) async fn send_all(&mut self, opcode: u8, payloads: &[Vec<u8>]) -> io::Result<()> {
        self.out.clear();
        for payload in payloads {
            self.queue(opcode, payload);
        }
        self.stream.write_all(&self.out).await
    }

    fn queue(&mut self, opcode: u8, payload: &[u8]) {
        self.out.push(0x80 | opcode);
        match payload.len() {
            len @ 0..=125 => self.out.push(0x80 | len as u8),
            len @ 126..=0xffff => {
                self.out.push(0x80 | 126);
                self.out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                self.out.push(0x80 | 127);
                self.out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        // xorshift: a different key per frame is all RFC 6455 asks of a client here.
        self.mask ^= self.mask << 13;
        self.mask ^= self.mask >> 17;
        self.mask ^= self.mask << 5;
        let key = self.mask.to_be_bytes();
        self.out.extend_from_slice(&key);
        self.out
            .extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    }
}

/// Where `needle` first occurs in `haystack`.
pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}
