//! The streams Python reads: a subscription's events, direct messages and
//! connection events, each handed over in batches (one asyncio wake-up and
//! one GIL acquisition for everything already waiting, up to `max`): `wait()`
//! resolves once items wait, `take()` returns them.
//!
//! A batch is a `list` of items; `None` means the stream ended. Items are
//! `Publication` / `Message` objects, or tuples for the rarer events:
//! `("join", Peer)`, `("leave", Peer)`, `("resubscribed", recovered)`,
//! `("unsubscribed", code, reason)`, `("lagged", skipped)`, and for the
//! connection `("connecting",)`, `("connected", client_id)`,
//! `("disconnected", code, reason, reconnect)`, `("error", exception)`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pyo3::IntoPyObjectExt;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use sacred_client::{ClientEvent, MessageEvent, SubscriptionEvent};
use tokio::sync::{Mutex, watch};

use crate::error;
use crate::pending::{Pending, seconds};
use crate::types::{Message, Peer, Publication};

/// What a stream of the client can do: wait for the next item, take one
/// that waits already.
pub(crate) trait Source: Send + 'static {
    type Item: Send;
    fn recv(&mut self) -> impl Future<Output = Option<Self::Item>> + Send;
    fn try_recv(&mut self) -> Option<Self::Item>;
    /// The item as Python, or `None` to leave it out.
    fn to_py(py: Python<'_>, item: Self::Item) -> PyResult<Option<Bound<'_, PyAny>>>;
}

/// One stream shared by a Python object, read in two steps so that a
/// cancelled or timed-out wait loses nothing: `wait` moves what arrived into
/// a buffer (without the GIL), `take` converts and hands it over (with it).
pub(crate) struct Shared<S: Source> {
    source: Mutex<Option<S>>,
    /// Received and not yet taken, oldest first.
    ready: std::sync::Mutex<VecDeque<S::Item>>,
    /// The stream ended (and `ready` is all that is left of it).
    ended: AtomicBool,
    stopped: watch::Sender<bool>,
}

impl<S: Source> Shared<S> {
    pub(crate) fn new(source: S) -> Arc<Shared<S>> {
        Arc::new(Shared {
            source: Mutex::new(Some(source)),
            ready: std::sync::Mutex::new(VecDeque::new()),
            ended: AtomicBool::new(false),
            stopped: watch::Sender::new(false),
        })
    }

    fn ready(&self) -> std::sync::MutexGuard<'_, VecDeque<S::Item>> {
        self.ready
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn has_news(&self) -> bool {
        self.ended.load(Ordering::Acquire) || !self.ready().is_empty()
    }

    /// Resolves `True` once something waits to be taken (or the stream
    /// ended), `False` if `timeout` passed first. Waits for one item, then
    /// takes what else waits already, up to `max` in all.
    pub(crate) fn wait(self: &Arc<Self>, max: usize, timeout: Option<Duration>) -> Pending {
        let shared = Arc::clone(self);
        let max = max.max(1);
        Pending::new(async move {
            if shared.has_news() {
                return Ok(true);
            }
            let mut source = shared.source.lock().await;
            if shared.has_news() {
                return Ok(true);
            }
            let Some(stream) = source.as_mut() else {
                shared.ended.store(true, Ordering::Release);
                return Ok(true);
            };
            let mut stopped = shared.stopped.subscribe();
            let expired = async {
                match timeout {
                    Some(limit) => tokio::time::sleep(limit).await,
                    None => std::future::pending().await,
                }
            };
            // Every branch is cancel-safe; nothing is taken from the stream
            // unless it lands in `ready`.
            let first = tokio::select! {
                item = stream.recv() => item,
                _ = stopped.wait_for(|stopped| *stopped) => None,
                () = expired => return Ok(false),
            };
            let Some(first) = first else {
                *source = None;
                shared.ended.store(true, Ordering::Release);
                return Ok(true);
            };
            let mut ready = shared.ready();
            ready.push_back(first);
            while ready.len() < max {
                match stream.try_recv() {
                    Some(item) => ready.push_back(item),
                    None => break,
                }
            }
            Ok(true)
        })
    }

    /// What waits, as Python objects (at most `max`); `None` once the
    /// stream ended and everything was taken.
    pub(crate) fn take<'py>(
        &self,
        py: Python<'py>,
        max: usize,
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        let items: Vec<S::Item> = {
            let mut ready = self.ready();
            let count = ready.len().min(max.max(1));
            ready.drain(..count).collect()
        };
        if items.is_empty() && self.ended.load(Ordering::Acquire) {
            return Ok(None);
        }
        let list = PyList::empty(py);
        for item in items {
            if let Some(object) = S::to_py(py, item)? {
                list.append(object)?;
            }
        }
        Ok(Some(list))
    }

    /// Ends the stream: waiting reads see the end, and the client's stream
    /// is dropped (for a subscription: unsubscribed).
    pub(crate) async fn stop(&self) {
        self.stopped.send_replace(true);
        self.source.lock().await.take();
        self.ended.store(true, Ordering::Release);
    }
}

fn tuple<'py, const N: usize>(
    py: Python<'py>,
    items: [Bound<'py, PyAny>; N],
) -> PyResult<Option<Bound<'py, PyAny>>> {
    Ok(Some(PyTuple::new(py, items)?.into_any()))
}

fn object<'py, T: IntoPyObject<'py>>(py: Python<'py>, value: T) -> PyResult<Bound<'py, PyAny>> {
    value.into_bound_py_any(py)
}

impl Source for sacred_client::Subscription {
    type Item = SubscriptionEvent;

    fn recv(&mut self) -> impl Future<Output = Option<SubscriptionEvent>> + Send {
        sacred_client::Subscription::recv(self)
    }

    fn try_recv(&mut self) -> Option<SubscriptionEvent> {
        sacred_client::Subscription::try_recv(self)
    }

    fn to_py(py: Python<'_>, event: SubscriptionEvent) -> PyResult<Option<Bound<'_, PyAny>>> {
        match event {
            SubscriptionEvent::Publication(publication) => {
                Ok(Some(object(py, Publication::new(py, publication)?)?))
            }
            SubscriptionEvent::Join(peer) => {
                tuple(py, [object(py, "join")?, object(py, Peer::new(peer))?])
            }
            SubscriptionEvent::Leave(peer) => {
                tuple(py, [object(py, "leave")?, object(py, Peer::new(peer))?])
            }
            SubscriptionEvent::Resubscribed { recovered } => {
                tuple(py, [object(py, "resubscribed")?, object(py, recovered)?])
            }
            SubscriptionEvent::Unsubscribed { code, reason } => tuple(
                py,
                [
                    object(py, "unsubscribed")?,
                    object(py, code)?,
                    object(py, reason)?,
                ],
            ),
            SubscriptionEvent::Lagged { skipped } => {
                tuple(py, [object(py, "lagged")?, object(py, skipped)?])
            }
            _ => Ok(None),
        }
    }
}

impl Source for sacred_client::Messages {
    type Item = MessageEvent;

    fn recv(&mut self) -> impl Future<Output = Option<MessageEvent>> + Send {
        sacred_client::Messages::recv(self)
    }

    fn try_recv(&mut self) -> Option<MessageEvent> {
        sacred_client::Messages::try_recv(self)
    }

    fn to_py(py: Python<'_>, event: MessageEvent) -> PyResult<Option<Bound<'_, PyAny>>> {
        match event {
            MessageEvent::Message(message) => Ok(Some(object(py, Message::new(py, message)?)?)),
            MessageEvent::Lagged { skipped } => {
                tuple(py, [object(py, "lagged")?, object(py, skipped)?])
            }
            _ => Ok(None),
        }
    }
}

impl Source for sacred_client::Events {
    type Item = ClientEvent;

    fn recv(&mut self) -> impl Future<Output = Option<ClientEvent>> + Send {
        sacred_client::Events::recv(self)
    }

    fn try_recv(&mut self) -> Option<ClientEvent> {
        sacred_client::Events::try_recv(self)
    }

    fn to_py(py: Python<'_>, event: ClientEvent) -> PyResult<Option<Bound<'_, PyAny>>> {
        match event {
            ClientEvent::Connecting => tuple(py, [object(py, "connecting")?]),
            ClientEvent::Connected { client } => {
                tuple(py, [object(py, "connected")?, object(py, client)?])
            }
            ClientEvent::Disconnected {
                code,
                reason,
                reconnect,
            } => tuple(
                py,
                [
                    object(py, "disconnected")?,
                    object(py, code)?,
                    object(py, reason)?,
                    object(py, reconnect)?,
                ],
            ),
            ClientEvent::Error(err) => tuple(
                py,
                [
                    object(py, "error")?,
                    error::to_py(err).into_value(py).into_bound(py).into_any(),
                ],
            ),
            ClientEvent::Lagged { skipped } => {
                tuple(py, [object(py, "lagged")?, object(py, skipped)?])
            }
            _ => Ok(None),
        }
    }
}

/// One subscribed channel.
#[pyclass(frozen, module = "sacred_client._native")]
pub(crate) struct Subscription {
    channel: String,
    shared: Arc<Shared<sacred_client::Subscription>>,
}

impl Subscription {
    pub(crate) fn new(subscription: sacred_client::Subscription) -> Subscription {
        Subscription {
            channel: subscription.channel().to_owned(),
            shared: Shared::new(subscription),
        }
    }
}

#[pymethods]
impl Subscription {
    /// The channel.
    #[getter]
    fn channel(&self) -> &str {
        &self.channel
    }

    /// Resolves `True` once events wait (or the subscription ended), `False`
    /// after `timeout` seconds.
    #[pyo3(signature = (max = 256, timeout = None))]
    fn wait(&self, max: usize, timeout: Option<f64>) -> PyResult<Pending> {
        Ok(self.shared.wait(max, timeout.map(seconds).transpose()?))
    }

    /// The events that wait, at most `max`; `None` once it ended.
    #[pyo3(signature = (max = 256))]
    fn take<'py>(&self, py: Python<'py>, max: usize) -> PyResult<Option<Bound<'py, PyList>>> {
        self.shared.take(py, max)
    }

    /// Unsubscribes; a read waiting meanwhile returns the end.
    fn unsubscribe(&self) -> Pending {
        let shared = Arc::clone(&self.shared);
        Pending::new(async move {
            shared.stop().await;
            Ok(())
        })
    }

    fn __repr__(&self) -> String {
        format!("<sacred_client._native.Subscription {:?}>", self.channel)
    }
}

/// Direct messages to the client.
#[pyclass(frozen, module = "sacred_client._native")]
pub(crate) struct Messages {
    shared: Arc<Shared<sacred_client::Messages>>,
}

impl Messages {
    pub(crate) fn new(messages: sacred_client::Messages) -> Messages {
        Messages {
            shared: Shared::new(messages),
        }
    }
}

#[pymethods]
impl Messages {
    /// Resolves `True` once messages wait (or the stream ended), `False`
    /// after `timeout` seconds.
    #[pyo3(signature = (max = 256, timeout = None))]
    fn wait(&self, max: usize, timeout: Option<f64>) -> PyResult<Pending> {
        Ok(self.shared.wait(max, timeout.map(seconds).transpose()?))
    }

    /// The messages that wait, at most `max`; `None` once it ended.
    #[pyo3(signature = (max = 256))]
    fn take<'py>(&self, py: Python<'py>, max: usize) -> PyResult<Option<Bound<'py, PyList>>> {
        self.shared.take(py, max)
    }

    /// Stops reading; a read waiting meanwhile returns the end.
    fn close(&self) -> Pending {
        let shared = Arc::clone(&self.shared);
        Pending::new(async move {
            shared.stop().await;
            Ok(())
        })
    }
}
