//! A connection's outbound path: a queue bounded in bytes that any task fills
//! (replies, fan-out), drained by one writer, and the close signal both halves
//! of the connection watch.
//!
//! Messages are copied into the batch frame being filled as they are queued
//! (see `batch`), so a delivery costs a lock, a copy and, when the queue was
//! empty, one wake-up of the writer; the writer takes whatever frames are
//! ready and sends them with one flush.

mod batch;

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::SinkExt;
use futures_util::stream::SplitSink;
use futures_util::task::AtomicWaker;
use sacred_proto::{Codec, Disconnect, DisconnectCode, ServerMessage};
use tokio::sync::{Notify, watch};

use batch::Batch;
pub(crate) use batch::Encoded;

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
    /// Bytes the queue may hold before the client is cut off as a slow consumer.
    max: usize,
    queue: Mutex<Queue>,
    /// Wakes the writer when the queue has something for it, or on the close.
    /// (One waiter, so a waker slot: lighter per wake-up than a `Notify`.)
    ready: AtomicWaker,
    /// Wakes publishers waiting for the queue to drain (see [`Outbound::drain`]).
    drained: Notify,
    /// Set when a wait for this queue to drain timed out: the client is not
    /// merely busy but stuck, and nobody waits for it again until it drains.
    stuck: AtomicBool,
    /// Set once, by whoever ends the connection first; both halves watch it.
    closing: watch::Sender<Option<Closing>>,
}

/// What waits for the writer.
#[derive(Debug, Default)]
struct Queue {
    /// Frames complete and ready, in order.
    sealed: VecDeque<Message>,
    /// The frame being filled, after them.
    open: Batch,
    /// While `Some`, messages wait here instead (see [`Outbound::hold`]).
    held: Option<Vec<Encoded>>,
    /// Bytes queued, held or being written; bounded by `Shared::max`.
    bytes: usize,
    /// Whether the writer has been woken for what is queued.
    woken: bool,
    /// When the writer last wrote everything queued (for the coherence).
    drained_at: Option<tokio::time::Instant>,
}

impl Queue {
    fn append(&mut self, message: &Encoded) {
        if !self.open.fits(message) {
            let frame = self.open.seal();
            self.sealed.push_back(frame);
        }
        self.open.push(message);
    }
}

impl Outbound {
    /// A queue for a connection speaking `codec`, holding at most `max` bytes.
    pub(crate) fn new(codec: Codec, max: usize) -> Outbound {
        let shared = Shared {
            codec,
            max,
            queue: Mutex::new(Queue::default()),
            ready: AtomicWaker::new(),
            drained: Notify::new(),
            stuck: AtomicBool::new(false),
            closing: watch::Sender::new(None),
        };
        Outbound {
            shared: Arc::new(shared),
        }
    }

    pub(crate) fn codec(&self) -> Codec {
        self.shared.codec
    }

    /// Queues an encoded message (of this connection's codec). A message
    /// that would take the queue past its bound closes the connection as a
    /// slow consumer instead of growing the queue. Returns whether the queue
    /// is congested (more than half full, and not known to be stuck): a
    /// publisher then waits for it to [`Outbound::drain`].
    pub(crate) fn send(&self, message: &Encoded) -> bool {
        let len = message.len();
        let (wake, congested) = {
            let mut queue = self.queue();
            if queue.bytes + len > self.shared.max {
                drop(queue);
                self.close(DisconnectCode::SLOW_CONSUMER);
                return false;
            }
            queue.bytes += len;
            let wake = match &mut queue.held {
                Some(held) => {
                    held.push(message.clone());
                    false
                }
                None => {
                    queue.append(message);
                    !std::mem::replace(&mut queue.woken, true)
                }
            };
            (wake, queue.bytes > self.shared.max / 2)
        };
        if wake {
            self.shared.ready.wake();
        }
        congested && !self.shared.stuck.load(Ordering::Relaxed)
    }

    /// Waits, at most `patience`, until the queue is a quarter full or less,
    /// or the connection closes. This is the hub's flow control: a publisher
    /// that fills a subscriber's queue faster than the subscriber reads waits
    /// for it, instead of the subscriber being cut off, as TCP would make a
    /// sender wait. A subscriber that does not drain within `patience` is
    /// stuck: nobody waits for it again, and it is cut off once its queue is
    /// full.
    pub(crate) async fn drain(&self, patience: Duration) {
        let drained = async {
            loop {
                let notified = self.shared.drained.notified();
                if self.queue().bytes <= self.shared.max / 4 || self.is_closing() {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(patience, drained).await.is_err() {
            self.shared.stuck.store(true, Ordering::Relaxed);
        }
    }

    /// Encodes and queues one message.
    pub(crate) fn send_message(&self, message: &ServerMessage) {
        match encode(self.shared.codec, message) {
            Ok(encoded) => drop(self.send(&encoded)),
            Err(err) => {
                tracing::error!(%err, "cannot encode a server message");
                self.close(DisconnectCode::SERVER_ERROR);
            }
        }
    }

    /// From now on, messages from every sender wait until [`Outbound::release`].
    pub(crate) fn hold(&self) {
        self.queue().held.get_or_insert_with(Vec::new);
    }

    /// Queues `first`, then everything held since [`Outbound::hold`], in order,
    /// all under the lock so no other message can come between them.
    pub(crate) fn release(&self, first: &ServerMessage) {
        let first = match encode(self.shared.codec, first) {
            Ok(first) => first,
            Err(err) => {
                tracing::error!(%err, "cannot encode a server message");
                self.close(DisconnectCode::SERVER_ERROR);
                return;
            }
        };
        let wake = {
            let mut queue = self.queue();
            let waiting = queue.held.take().unwrap_or_default();
            if queue.bytes + first.len() > self.shared.max {
                drop(queue);
                self.close(DisconnectCode::SLOW_CONSUMER);
                return;
            }
            queue.bytes += first.len();
            queue.append(&first);
            for message in &waiting {
                queue.append(message);
            }
            !std::mem::replace(&mut queue.woken, true)
        };
        if wake {
            self.shared.ready.wake();
        }
    }

    /// Everything ready, as frames, and their bytes (which stay counted
    /// until [`Outbound::written`]).
    pub(crate) fn take(&self) -> (Vec<Message>, usize) {
        let mut queue = self.queue();
        queue.woken = false;
        let mut frames: Vec<Message> = queue.sealed.drain(..).collect();
        if !queue.open.is_empty() {
            frames.push(queue.open.seal());
        }
        let held: usize = queue.held.iter().flatten().map(Encoded::len).sum();
        (frames, queue.bytes - held)
    }

    /// Waits until the writer has been woken for something queued, or the
    /// close is decided.
    async fn ready(&self) {
        std::future::poll_fn(|cx| {
            self.shared.ready.register(cx.waker());
            if self.queue().woken || self.is_closing() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }

    /// `bytes` were written.
    fn written(&self, bytes: usize) {
        let left = {
            let mut queue = self.queue();
            queue.bytes = queue.bytes.saturating_sub(bytes);
            if queue.bytes == 0 {
                queue.drained_at = Some(tokio::time::Instant::now());
            }
            queue.bytes
        };
        if left <= self.shared.max / 4 {
            self.shared.stuck.store(false, Ordering::Relaxed);
            self.shared.drained.notify_waiters();
        }
    }

    /// Whether the client is caught up at `now`: nothing waits for it, or
    /// its queue was last empty within `window`. A client that keeps
    /// reading never falls behind by more than a write; one whose queue has
    /// not emptied for longer is out of step.
    pub(crate) fn caught_up(&self, window: Duration, now: tokio::time::Instant) -> bool {
        let queue = self.queue();
        queue.bytes == 0
            || queue
                .drained_at
                .is_some_and(|at| now.saturating_duration_since(at) <= window)
    }

    /// Closes the connection with `code` (the first close wins).
    pub(crate) fn close(&self, code: DisconnectCode) {
        let reason = code.text().unwrap_or("disconnect");
        self.close_with(code, reason);
    }

    /// Closes the connection with `code` and a reason that says more than
    /// the code's text (the first close wins).
    pub(crate) fn close_with(&self, code: DisconnectCode, reason: &str) {
        self.set_closing(Closing::Disconnect(code, reason.to_owned()));
    }

    /// The peer is gone: stop without sending anything.
    pub(crate) fn peer_gone(&self) {
        self.set_closing(Closing::PeerGone);
    }

    fn set_closing(&self, closing: Closing) {
        let decided = self.shared.closing.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(closing);
            true
        });
        if decided {
            // The writer, if it waits for frames, wakes to close.
            self.shared.ready.wake();
        }
    }

    /// A receiver that sees the close once it is decided.
    pub(crate) fn closing(&self) -> watch::Receiver<Option<Closing>> {
        self.shared.closing.subscribe()
    }

    /// Whether the close is decided.
    pub(crate) fn is_closing(&self) -> bool {
        self.shared.closing.borrow().is_some()
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Resolves once the close is decided. (The guard `wait_for` returns is not
/// `Send`; dropping it here keeps callers' futures `Send`.)
pub(crate) async fn closed(closing: &mut watch::Receiver<Option<Closing>>) {
    let _ = closing.wait_for(Option::is_some).await;
}

/// Encodes a message once, for every connection of `codec` it goes to.
pub(crate) fn encode(
    codec: Codec,
    message: &ServerMessage,
) -> Result<Encoded, sacred_proto::EncodeError> {
    codec.encode(message).map(|bytes| encoded(codec, bytes))
}

/// Encoded bytes as the queue takes them.
pub(crate) fn encoded(codec: Codec, bytes: Vec<u8>) -> Encoded {
    match codec {
        Codec::Json => match String::from_utf8(bytes) {
            Ok(text) => Encoded::Json(text.into()),
            // serde_json writes UTF-8 only; were it ever not, the message
            // would still go, with the bad bytes replaced.
            Err(err) => Encoded::Json(String::from_utf8_lossy(err.as_bytes()).into_owned().into()),
        },
        Codec::MsgPack => Encoded::MsgPack(bytes.into()),
    }
}

/// The writer: sends whatever is ready with one flush, until the connection
/// closes; then the last frames (unless the client is a slow consumer), the
/// `disconnect` push and the close frame.
pub(crate) async fn write(
    mut sink: SplitSink<WebSocket, Message>,
    outbound: Outbound,
    delay: Duration,
    sent: metrics::Counter,
) {
    let mut closing = outbound.closing();
    loop {
        // One wait for both: frames to write, or the close (which notifies too).
        if outbound.is_closing() {
            break;
        }
        let (frames, bytes) = outbound.take();
        if frames.is_empty() {
            outbound.ready().await;
            if !delay.is_zero() {
                // What arrives meanwhile joins the frame (write_delay_ms).
                tokio::time::sleep(delay).await;
            }
            continue;
        }
        let batch = async {
            for frame in frames {
                sink.feed(frame).await?;
            }
            sink.flush().await
        };
        let mut batch = std::pin::pin!(batch);
        // Most writes complete at once; only one that waits for the socket
        // also watches for the close, so a stuck client cannot hold it up.
        let written = match std::future::poll_fn(|cx| Poll::Ready(batch.as_mut().poll(cx))).await {
            Poll::Ready(written) => written,
            Poll::Pending => tokio::select! {
                biased;
                _ = closed(&mut closing) => break,
                written = &mut batch => written,
            },
        };
        match written {
            Ok(()) => {
                sent.increment(bytes as u64);
                outbound.written(bytes);
            }
            Err(_) => {
                outbound.peer_gone();
                break;
            }
        }
    }
    let closing = closing.borrow().clone();
    // Boxed: it runs once, and an idle connection's task should not be the
    // size of its last moments.
    Box::pin(goodbye(sink, outbound, closing)).await;
}

/// The end of a connection: the last frames (unless the client is a slow
/// consumer), the `disconnect` push and the close frame, for a close the
/// server decided; the reply to the client's close frame otherwise.
async fn goodbye(
    mut sink: SplitSink<WebSocket, Message>,
    outbound: Outbound,
    closing: Option<Closing>,
) {
    let Some(Closing::Disconnect(code, reason)) = closing else {
        // The client closed: tungstenite has queued the reply to its close
        // frame (RFC 6455, 5.5.1), which closing the sink sends. (If the
        // socket failed instead, this fails at once.)
        let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
        return;
    };
    let last = async {
        if code != DisconnectCode::SLOW_CONSUMER {
            for frame in outbound.take().0 {
                sink.feed(frame).await?;
            }
        }
        let mut push = Disconnect::from(code);
        push.reason.clone_from(&reason);
        if let Ok(encoded) = encode(outbound.codec(), &ServerMessage::push(push)) {
            let mut batch = Batch::default();
            batch.push(&encoded);
            sink.feed(batch.seal()).await?;
        }
        sink.send(Message::Close(Some(CloseFrame {
            code: code.as_u16(),
            reason: Utf8Bytes::from(reason),
        })))
        .await
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, last).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: usize) -> Encoded {
        Encoded::MsgPack(vec![0xc0; len].into())
    }

    #[tokio::test(start_paused = true)]
    async fn a_congested_queue_makes_the_publisher_wait_until_it_drains() {
        let outbound = Outbound::new(Codec::MsgPack, 1000);
        assert!(!outbound.send(&message(400)), "under half full");
        assert!(outbound.send(&message(200)), "past half full: congested");
        let waiting = tokio::spawn({
            let outbound = outbound.clone();
            async move { outbound.drain(Duration::from_secs(10)).await }
        });
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!waiting.is_finished(), "waits while nothing is written");
        // The writer writes everything: the publisher goes on, patience left.
        let (frames, bytes) = outbound.take();
        assert_eq!(frames.len(), 1, "one batch frame");
        outbound.written(bytes);
        tokio::time::timeout(Duration::from_millis(1), waiting)
            .await
            .expect("drained")
            .unwrap();
        assert!(!outbound.shared.stuck.load(Ordering::Relaxed));
    }

    #[tokio::test(start_paused = true)]
    async fn a_subscriber_that_does_not_drain_in_time_is_stuck_and_then_cut_off() {
        let outbound = Outbound::new(Codec::MsgPack, 1000);
        assert!(outbound.send(&message(600)));
        outbound.drain(Duration::from_secs(1)).await;
        assert!(
            !outbound.send(&message(100)),
            "stuck: nobody waits for it again"
        );
        assert!(!outbound.is_closing());
        outbound.send(&message(400));
        assert!(
            outbound.is_closing(),
            "past its bound: cut off as a slow consumer"
        );
    }
}
