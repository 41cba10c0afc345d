//! The browser transport (wasm32): the page's `WebSocket`, `setTimeout`
//! timers (gloo-timers) and `performance.now()` as the session's clock. The
//! connection task runs on the page's event loop (`spawn_local`).

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use gloo_timers::future::TimeoutFuture;
use js_sys::{ArrayBuffer, Uint8Array};
use sacred_proto::Codec;
use tokio::sync::{mpsc, oneshot};
use wasm_bindgen::JsCast;
use wasm_bindgen::JsValue;
use wasm_bindgen::closure::Closure;
use web_sys::{BinaryType, CloseEvent, Event, MessageEvent, Performance, WebSocket};

use crate::driver::{self, Incoming};
use crate::error::Error;

/// The longest browser timer: `setTimeout` fires at once for longer delays.
const MAX_TIMER_MS: f64 = i32::MAX as f64;

/// How much the page's `WebSocket` may hold unsent (`bufferedAmount`) before
/// the next frame waits: the browser's send buffer has no limit of its own,
/// so without one a page that publishes faster than the network carries
/// would grow it without bound. Beyond it, commands wait in the session's
/// queue, each with the caller's pending promise.
const SEND_HIGH_WATER: u32 = 1 << 20;

/// How often a full send buffer is looked at again (the browser has no
/// event for "the buffer drained").
const DRAIN_POLL_MS: u32 = 4;

/// Settings only the browser transport has: none yet (TLS is the browser's).
#[derive(Debug, Default)]
pub(crate) struct Options {}

/// Starts the connection task on the page's event loop.
pub(crate) fn spawn(task: impl Future<Output = ()> + 'static) -> Result<(), Error> {
    wasm_bindgen_futures::spawn_local(task);
    Ok(())
}

/// Resolves after `duration` (the first connect's timeout).
pub(crate) async fn sleep(duration: Duration) {
    TimeoutFuture::new(duration.as_millis().min(MAX_TIMER_MS as u128) as u32).await;
}

/// A random seed for the reconnect jitter (`Math.random`, 2 × 32 bits).
pub(crate) fn seed() -> u64 {
    let half = || (js_sys::Math::random() * f64::from(u32::MAX)) as u64;
    (half() << 32) | half()
}

/// The browser's `WebSocket`.
#[derive(Clone, Debug)]
pub(crate) struct Transport {
    performance: Performance,
    /// `performance.now()` when the client started: the session's time zero.
    origin: f64,
}

impl Transport {
    pub(crate) fn new(_: &Options) -> Result<Transport, Error> {
        // `performance` of the global object, in windows and workers alike.
        let performance =
            js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("performance"))
                .ok()
                .and_then(|value| value.dyn_into::<Performance>().ok())
                .ok_or_else(|| {
                    Error::transport("this JavaScript environment has no `performance`")
                })?;
        let origin = performance.now();
        Ok(Transport {
            performance,
            origin,
        })
    }
}

impl driver::Transport for Transport {
    type Socket = Socket;

    async fn open(self, url: String, codec: Codec) -> Result<Socket, Error> {
        Socket::open(&url, codec)?.opened(&url).await
    }

    fn now(&self) -> Duration {
        Duration::from_secs_f64((self.performance.now() - self.origin).max(0.0) / 1000.0)
    }

    fn sleep_until(&self, at: Duration) -> impl Future<Output = ()> {
        // Rounded up, so the timer never fires before the deadline.
        let millis = (at.saturating_sub(self.now()).as_secs_f64() * 1000.0).ceil();
        TimeoutFuture::new(millis.min(MAX_TIMER_MS) as u32)
    }
}

/// A browser `WebSocket` whose events arrive on a channel.
#[derive(Debug)]
pub(crate) struct Socket {
    ws: WebSocket,
    incoming: mpsc::UnboundedReceiver<Incoming>,
    /// Resolves when the handshake completes.
    open: Option<oneshot::Receiver<()>>,
    /// The event handlers, kept alive as long as the socket is; unset on drop.
    _handlers: Handlers,
}

#[derive(Debug)]
struct Handlers {
    _open: Closure<dyn FnMut(Event)>,
    _message: Closure<dyn FnMut(MessageEvent)>,
    _close: Closure<dyn FnMut(CloseEvent)>,
}

impl Socket {
    /// Starts connecting: the browser opens the socket in the background.
    fn open(url: &str, codec: Codec) -> Result<Socket, Error> {
        let ws = WebSocket::new_with_str(url, codec.subprotocol()).map_err(js_error)?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let (opened, open) = oneshot::channel();
        let mut opened = Some(opened);
        let on_open = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            if let Some(opened) = opened.take() {
                let _ = opened.send(());
            }
        });
        let (frames, incoming) = mpsc::unbounded_channel();
        let closes = frames.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let data = event.data();
            let frame = if let Some(text) = data.as_string() {
                Incoming::Text(Bytes::from(text))
            } else if let Some(buffer) = data.dyn_ref::<ArrayBuffer>() {
                Incoming::Binary(Bytes::from(Uint8Array::new(buffer).to_vec()))
            } else {
                // Blobs cannot arrive: the binary type is `arraybuffer`.
                return;
            };
            let _ = frames.send(frame);
        });
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
            // 1006 (no close frame at all) is the browser's name for a dropped
            // socket; natively there is no close then.
            let close = Some((event.code(), event.reason())).filter(|(code, _)| *code != 1006);
            let _ = closes.send(Incoming::Closed(close));
        });
        // An `error` event is always followed by `close`, which says all there is.
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        Ok(Socket {
            ws,
            incoming,
            open: Some(open),
            _handlers: Handlers {
                _open: on_open,
                _message: on_message,
                _close: on_close,
            },
        })
    }

    /// Waits for the handshake; fails if the socket closes first. (The
    /// browser says no more than that: a refused connection, a DNS failure,
    /// a TLS error and an HTTP 404 all look alike to a page.)
    async fn opened(mut self, url: &str) -> Result<Socket, Error> {
        let Some(open) = self.open.take() else {
            return Ok(self);
        };
        tokio::select! {
            biased;
            Ok(()) = open => Ok(self),
            closed = self.incoming.recv() => Err(Error::transport(match closed {
                Some(Incoming::Closed(Some((code, _)))) => format!("cannot open {url}: the socket closed with {code} while opening"),
                _ => format!("cannot open {url}: the connection failed"),
            })),
        }
    }
}

impl driver::Socket for Socket {
    async fn recv(&mut self) -> Incoming {
        // The close handler holds a sender as long as the socket exists.
        self.incoming.recv().await.unwrap_or(Incoming::Closed(None))
    }

    async fn send(&mut self, codec: Codec, frames: Vec<Vec<u8>>) -> Result<(), Error> {
        // The browser buffers and sends in order; there is nothing to flush,
        // only a buffer to keep bounded.
        for bytes in frames {
            if !self.drained().await {
                // Closing: the browser would drop the frame; the close event
                // that follows tells the session why (and its code).
                return Ok(());
            }
            match codec {
                Codec::Json => {
                    let text = String::from_utf8(bytes).map_err(Error::transport)?;
                    self.ws.send_with_str(&text)
                }
                Codec::MsgPack => self.ws.send_with_u8_array(&bytes),
            }
            .map_err(js_error)?;
        }
        Ok(())
    }

    async fn close(self) {
        // Dropping closes with 1000; the browser finishes the handshake.
        drop(self);
    }
}

impl Socket {
    /// Waits until the browser's send buffer is below [`SEND_HIGH_WATER`];
    /// false if the socket stopped being open meanwhile.
    async fn drained(&self) -> bool {
        loop {
            if self.ws.ready_state() != WebSocket::OPEN {
                return false;
            }
            if self.ws.buffered_amount() < SEND_HIGH_WATER {
                return true;
            }
            TimeoutFuture::new(DRAIN_POLL_MS).await;
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // Unset the handlers before their closures are freed: the browser may
        // still fire events at them.
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        if matches!(
            self.ws.ready_state(),
            WebSocket::CONNECTING | WebSocket::OPEN
        ) {
            let _ = self.ws.close_with_code(1000);
        }
    }
}

fn js_error(err: JsValue) -> Error {
    match err.dyn_ref::<js_sys::Error>() {
        Some(err) => Error::transport(String::from(err.message())),
        None => Error::transport(format!("{err:?}")),
    }
}
