//! A connection's outbound path: a queue bounded in bytes that any task fills
//! (replies, fan-out), drained by one writer that sends everything queued with
//! a single flush, and the close signal both halves of the connection watch.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::SinkExt;
use futures_util::stream::SplitSink;
use sacred_proto::{Codec, Disconnect, DisconnectCode, ServerMessage};
use tokio::sync::{mpsc, watch};

/// How long the writer tries to deliver the last frames and the close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Why a connection ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Closing {
    /// The server closes it: push `disconnect`, then a close frame with this code.
    Disconnect(DisconnectCode, String),
    /// The client closed it or the socket failed: nothing more to send.
    PeerGone,
}

/// The sending half, cheap to clone: the connection task, the hub's fan-out and
/// direct sends all hold one.
#[derive(Clone, Debug)]
pub(crate) struct Outbound {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    codec: Codec,
    /// Frames for the writer, in order.
    tx: mpsc::UnboundedSender<Message>,
    /// Bytes queued or held and not yet written; bounded by `max`.
    queued: AtomicUsize,
    max: usize,
    /// While `Some`, frames wait here instead of in `tx` (see [`Outbound::hold`]).
    held: Mutex<Option<Vec<Message>>>,
    /// Set once, by whoever ends the connection first; both halves watch it.
    closing: watch::Sender<Option<Closing>>,
}

impl Outbound {
    /// A queue for a connection speaking `codec`, holding at most `max` bytes.
    pub(crate) fn new(codec: Codec, max: usize) -> (Outbound, mpsc::UnboundedReceiver<Message>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Shared {
            codec,
            tx,
            queued: AtomicUsize::new(0),
            max,
            held: Mutex::new(None),
            closing: watch::Sender::new(None),
        };
        (
            Outbound {
                shared: Arc::new(shared),
            },
            rx,
        )
    }

    pub(crate) fn codec(&self) -> Codec {
        self.shared.codec
    }

    /// Queues a frame. A frame that would take the queue past its bound closes
    /// the connection as a slow consumer instead of growing the queue.
    pub(crate) fn send(&self, frame: Message) {
        if !self.reserve(&frame) {
            return;
        }
        let mut held = self.held();
        match held.as_mut() {
            Some(buffer) => buffer.push(frame),
            // Sent under the lock, so it cannot overtake what `release` flushes.
            None => drop(self.shared.tx.send(frame)),
        }
    }

    /// Counts `frame` against the bound; past it, closes as a slow consumer.
    fn reserve(&self, frame: &Message) -> bool {
        let len = frame_len(frame);
        let queued = self.shared.queued.fetch_add(len, Ordering::AcqRel) + len;
        if queued > self.shared.max {
            self.shared.queued.fetch_sub(len, Ordering::AcqRel);
            self.close(DisconnectCode::SLOW_CONSUMER);
            return false;
        }
        true
    }

    /// Encodes and queues one message.
    pub(crate) fn send_message(&self, message: &ServerMessage) {
        match encode(self.shared.codec, message) {
            Ok(frame) => self.send(frame),
            Err(err) => {
                tracing::error!(%err, "cannot encode a server message");
                self.close(DisconnectCode::SERVER_ERROR);
            }
        }
    }

    /// From now on, frames from every sender wait until [`Outbound::release`].
    pub(crate) fn hold(&self) {
        self.held().get_or_insert_with(Vec::new);
    }

    /// Queues `first`, then everything held since [`Outbound::hold`], in order,
    /// all under the lock so no other frame can come between them.
    pub(crate) fn release(&self, first: &ServerMessage) {
        let frame = match encode(self.shared.codec, first) {
            Ok(frame) => Some(frame).filter(|frame| self.reserve(frame)),
            Err(err) => {
                tracing::error!(%err, "cannot encode a server message");
                self.close(DisconnectCode::SERVER_ERROR);
                None
            }
        };
        let mut held = self.held();
        let waiting = held.take().unwrap_or_default();
        for frame in frame.into_iter().chain(waiting) {
            drop(self.shared.tx.send(frame));
        }
    }

    /// Closes the connection with `code` (the first close wins).
    pub(crate) fn close(&self, code: DisconnectCode) {
        let reason = code.text().unwrap_or("disconnect").to_owned();
        self.set_closing(Closing::Disconnect(code, reason));
    }

    /// The peer is gone: stop without sending anything.
    pub(crate) fn peer_gone(&self) {
        self.set_closing(Closing::PeerGone);
    }

    fn set_closing(&self, closing: Closing) {
        self.shared.closing.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(closing);
            true
        });
    }

    /// A receiver that sees the close once it is decided.
    pub(crate) fn closing(&self) -> watch::Receiver<Option<Closing>> {
        self.shared.closing.subscribe()
    }

    /// Whether the close is decided.
    pub(crate) fn is_closing(&self) -> bool {
        self.shared.closing.borrow().is_some()
    }

    fn held(&self) -> MutexGuard<'_, Option<Vec<Message>>> {
        self.shared
            .held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Resolves once the close is decided. (The guard `wait_for` returns is not
/// `Send`; dropping it here keeps callers' futures `Send`.)
pub(crate) async fn closed(closing: &mut watch::Receiver<Option<Closing>>) {
    let _ = closing.wait_for(Option::is_some).await;
}

/// Encodes a message as the frame type its codec uses.
pub(crate) fn encode(
    codec: Codec,
    message: &ServerMessage,
) -> Result<Message, sacred_proto::EncodeError> {
    codec.encode(message).map(|bytes| frame(codec, bytes))
}

/// Encoded bytes as the frame type their codec uses: text for JSON, binary
/// for MessagePack.
pub(crate) fn frame(codec: Codec, bytes: Vec<u8>) -> Message {
    match codec {
        Codec::Json => match String::from_utf8(bytes) {
            Ok(text) => Message::Text(Utf8Bytes::from(text)),
            // serde_json writes UTF-8 only; were it ever not, the frame would
            // still carry the message, with the bad bytes replaced.
            Err(err) => Message::Text(String::from_utf8_lossy(err.as_bytes()).into_owned().into()),
        },
        Codec::MsgPack => Message::Binary(bytes.into()),
    }
}

fn frame_len(frame: &Message) -> usize {
    match frame {
        Message::Text(text) => text.len(),
        Message::Binary(bytes) => bytes.len(),
        _ => 0,
    }
}

/// The writer: sends whatever is queued with one flush per batch, until the
/// connection closes; then the last frames (unless the client is a slow
/// consumer), the `disconnect` push and the close frame.
pub(crate) async fn write(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::UnboundedReceiver<Message>,
    outbound: Outbound,
) {
    let mut closing = outbound.closing();
    loop {
        let first = tokio::select! {
            biased;
            _ = closed(&mut closing) => break,
            frame = rx.recv() => match frame {
                Some(frame) => frame,
                None => break,
            },
        };
        let batch = async {
            let mut bytes = frame_len(&first);
            sink.feed(first).await?;
            while let Ok(frame) = rx.try_recv() {
                bytes += frame_len(&frame);
                sink.feed(frame).await?;
            }
            sink.flush().await?;
            Ok::<_, axum::Error>(bytes)
        };
        tokio::select! {
            biased;
            _ = closed(&mut closing) => break,
            written = batch => match written {
                Ok(bytes) => drop(outbound.shared.queued.fetch_sub(bytes, Ordering::AcqRel)),
                Err(_) => {
                    outbound.peer_gone();
                    break;
                }
            },
        }
    }
    let closing = closing.borrow().clone();
    let Some(Closing::Disconnect(code, reason)) = closing else {
        // The client closed: tungstenite has queued the reply to its close
        // frame (RFC 6455, 5.5.1), which closing the sink sends. (If the
        // socket failed instead, this fails at once.)
        let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
        return;
    };
    let goodbye = async {
        if code != DisconnectCode::SLOW_CONSUMER {
            while let Ok(frame) = rx.try_recv() {
                sink.feed(frame).await?;
            }
        }
        let mut push = Disconnect::from(code);
        push.reason.clone_from(&reason);
        if let Ok(frame) = encode(outbound.codec(), &ServerMessage::push(push)) {
            sink.feed(frame).await?;
        }
        sink.send(Message::Close(Some(CloseFrame {
            code: code.as_u16(),
            reason: reason.into(),
        })))
        .await
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, goodbye).await;
}
