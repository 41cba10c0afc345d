//! The native client: `sacred_client::Client` with Python arguments and
//! results. Every method that talks to the server returns a `Pending`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyList;
use pyo3_async_runtimes::TaskLocals;
use sacred_client::proto::{Codec, HistoryRequest, SearchRequest, StreamPosition};
use sacred_client::{State, Unauthorized};

use crate::error;
use crate::pending::{self, Pending, seconds};
use crate::stream::{Messages, Shared, Subscription};
use crate::types::{History, Peer, PublishResult, SearchResult};
use crate::value;

/// A token provider's failure, for the client: `Unauthorized` stops it.
type TokenFailure = Box<dyn std::error::Error + Send + Sync>;

/// A client of one hub; see `sacred_client.Client` for the Python API.
#[pyclass(frozen, weakref, module = "sacred_client._native")]
pub(crate) struct Client {
    client: sacred_client::Client,
    /// Connection events from before the first connect on.
    events: Arc<Shared<sacred_client::Events>>,
}

#[pymethods]
impl Client {
    /// Checks the settings and starts the client's task, not yet connected.
    #[new]
    #[pyo3(signature = (
        url, *, token = None, get_token = None, name = None, kind = None, runtime = "python",
        version = None, codec = "json", request_timeout = None, connect_timeout = None,
        reconnect_delay = None, max_batch = None, offline_queue = None, offline_deadline = None,
        subscription_buffer = None, message_buffer = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        url: String,
        token: Option<String>,
        get_token: Option<Py<PyAny>>,
        name: Option<String>,
        kind: Option<String>,
        runtime: &str,
        version: Option<String>,
        codec: &str,
        request_timeout: Option<f64>,
        connect_timeout: Option<f64>,
        reconnect_delay: Option<(f64, f64)>,
        max_batch: Option<usize>,
        offline_queue: Option<usize>,
        offline_deadline: Option<f64>,
        subscription_buffer: Option<usize>,
        message_buffer: Option<usize>,
    ) -> PyResult<Client> {
        let mut builder = sacred_client::Client::builder(url).runtime(runtime);
        if let Some(token) = token {
            builder = builder.token(token);
        }
        if let Some(get_token) = get_token {
            // An async provider's coroutine runs on the loop the client was made on.
            // Only a running loop: asking for "the current" one would make one
            // (and leak it) on Python 3.9.
            let locals = match pyo3_async_runtimes::get_running_loop(py) {
                Ok(running) => Some(TaskLocals::new(running).copy_context(py)?),
                Err(_) => None,
            };
            let get_token = Arc::new(get_token);
            builder =
                builder.token_provider(move || fetch_token(Arc::clone(&get_token), locals.clone()));
        }
        if let Some(name) = name {
            builder = builder.name(name);
        }
        if let Some(kind) = kind {
            builder = builder.kind(kind);
        }
        if let Some(version) = version {
            builder = builder.version(version);
        }
        builder = builder.codec(match codec {
            "json" => Codec::Json,
            "msgpack" => Codec::MsgPack,
            other => {
                return Err(error::exception(
                    "ConfigurationError",
                    format!("codec must be \"json\" or \"msgpack\", not {other:?}"),
                    None,
                    false,
                ));
            }
        });
        if let Some(timeout) = request_timeout {
            builder = builder.request_timeout(seconds(timeout)?);
        }
        if let Some(timeout) = connect_timeout {
            builder = builder.connect_timeout(seconds(timeout)?);
        }
        if let Some((min, max)) = reconnect_delay {
            builder = builder.reconnect(seconds(min)?, seconds(max)?);
        }
        if let Some(messages) = max_batch {
            builder = builder.max_batch(messages);
        }
        if offline_queue.is_some() || offline_deadline.is_some() {
            let deadline = offline_deadline.map(seconds).transpose()?;
            builder = builder.offline_queue(
                offline_queue.unwrap_or(1024),
                deadline.unwrap_or(Duration::from_secs(30)),
            );
        }
        if let Some(events) = subscription_buffer {
            builder = builder.subscription_buffer(events);
        }
        if let Some(messages) = message_buffer {
            builder = builder.message_buffer(messages);
        }
        let _runtime = pending::runtime().enter();
        let client = builder.build().map_err(error::to_py)?;
        let events = Shared::new(client.events());
        Ok(Client { client, events })
    }

    /// The id the server assigned to this connection; `None` while not connected.
    #[getter]
    fn id(&self) -> Option<String> {
        self.client.id()
    }

    /// "disconnected", "connecting", "connected" or "closed".
    #[getter]
    fn state(&self) -> &'static str {
        match self.client.state() {
            State::Disconnected => "disconnected",
            State::Connecting => "connecting",
            State::Connected => "connected",
            State::Closed => "closed",
        }
    }

    /// Connects (if not already) and resolves once connected.
    fn connect(&self) -> Pending {
        let client = self.client.clone();
        Pending::new(async move { client.connect().await.map_err(error::to_py) })
    }

    /// Closes for good; resolves once closed.
    fn close(&self) -> Pending {
        let client = self.client.clone();
        Pending::new(async move {
            client.close().await;
            Ok(())
        })
    }

    /// Subscribes; resolves with the `Subscription` once the server confirmed.
    #[pyo3(signature = (channel, join_leave = false))]
    fn subscribe(&self, channel: String, join_leave: bool) -> Pending {
        let client = self.client.clone();
        Pending::new(async move {
            let subscription = client
                .subscribe_with(channel, join_leave)
                .await
                .map_err(error::to_py)?;
            Ok(Subscription::new(subscription))
        })
    }

    /// Publishes, carrying the W3C `traceparent` if given; resolves with the
    /// server's ack.
    #[pyo3(signature = (channel, data, *, traceparent = None))]
    fn publish(
        &self,
        channel: String,
        data: &Bound<'_, PyAny>,
        traceparent: Option<String>,
    ) -> PyResult<Pending> {
        let data = value::from_py(data)?;
        let client = self.client.clone();
        Ok(Pending::new(async move {
            let reply = match traceparent {
                Some(traceparent) => client.publish_traced(channel, data, traceparent).await,
                None => client.publish(channel, data).await,
            };
            Ok(PublishResult::new(reply.map_err(error::to_py)?))
        }))
    }

    /// Sends a direct message to a client by its id.
    fn send(&self, to: String, data: &Bound<'_, PyAny>) -> PyResult<Pending> {
        let data = value::from_py(data)?;
        let client = self.client.clone();
        Ok(Pending::new(async move {
            client.send(to, data).await.map_err(error::to_py)
        }))
    }

    /// Who is subscribed to `channel`.
    fn presence(&self, channel: String) -> Pending {
        let client = self.client.clone();
        Pending::new(async move {
            let peers = client.presence(channel).await.map_err(error::to_py)?;
            Ok(peers.into_iter().map(Peer::new).collect::<Vec<_>>())
        })
    }

    /// A page of the channel's history.
    #[pyo3(signature = (channel, limit = None, since = None, reverse = false))]
    fn history(
        &self,
        channel: String,
        limit: Option<u32>,
        since: Option<(u64, String)>,
        reverse: bool,
    ) -> Pending {
        let mut request = HistoryRequest::new(channel).reverse(reverse);
        if let Some(limit) = limit {
            request = request.limit(limit);
        }
        if let Some((offset, epoch)) = since {
            request = request.since(StreamPosition::new(offset, epoch));
        }
        let client = self.client.clone();
        Pending::new(async move {
            let reply = client.history(request).await.map_err(error::to_py)?;
            Python::attach(|py| Py::new(py, History::new(py, reply)?))
        })
    }

    /// Searches the channel's stored history for words, best match first.
    #[pyo3(signature = (channel, text, limit = None, skip = None))]
    fn search(
        &self,
        channel: String,
        text: String,
        limit: Option<u32>,
        skip: Option<u32>,
    ) -> Pending {
        let mut request = SearchRequest::new(channel, text);
        if let Some(limit) = limit {
            request = request.limit(limit);
        }
        if let Some(skip) = skip {
            request = request.skip(skip);
        }
        let client = self.client.clone();
        Pending::new(async move {
            let reply = client.search(request).await.map_err(error::to_py)?;
            Python::attach(|py| Py::new(py, SearchResult::new(py, reply)?))
        })
    }

    /// Calls an RPC handler of the host; resolves with its answer.
    fn rpc(&self, method: String, data: &Bound<'_, PyAny>) -> PyResult<Pending> {
        let data = value::from_py(data)?;
        let client = self.client.clone();
        Ok(Pending::new(async move {
            let answer = client.rpc(method, data).await.map_err(error::to_py)?;
            Python::attach(|py| value::to_py(py, &answer))
        }))
    }

    /// The server's clock (ms since the Unix epoch), or `None` before the first connect.
    fn server_time(&self) -> Pending {
        let client = self.client.clone();
        Pending::new(async move { Ok(client.server_time().await) })
    }

    /// Resolves `True` once connection events wait (or the client closed),
    /// `False` after `timeout` seconds.
    #[pyo3(signature = (max = 64, timeout = None))]
    fn wait_events(&self, max: usize, timeout: Option<f64>) -> PyResult<Pending> {
        Ok(self.events.wait(max, timeout.map(seconds).transpose()?))
    }

    /// The connection events that wait; `None` once the client is closed.
    #[pyo3(signature = (max = 64))]
    fn take_events<'py>(
        &self,
        py: Python<'py>,
        max: usize,
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        self.events.take(py, max)
    }

    /// A new reader of direct messages.
    fn messages(&self) -> Messages {
        let _runtime = pending::runtime().enter();
        Messages::new(self.client.messages())
    }

    fn __repr__(&self) -> String {
        format!(
            "<sacred_client._native.Client {} id={:?}>",
            self.state(),
            self.client.id()
        )
    }
}

/// What calling the token provider gave.
enum Called {
    /// A token, from a plain function.
    Token(String),
    /// A coroutine's result to wait for, running on the client's loop.
    Awaiting(Pin<Box<dyn Future<Output = PyResult<Py<PyAny>>> + Send>>),
}

/// Asks the Python token provider: called on a thread of its own (it may
/// block), and if it returns an awaitable, that runs on the client's loop.
async fn fetch_token(
    get_token: Arc<Py<PyAny>>,
    locals: Option<TaskLocals>,
) -> Result<String, TokenFailure> {
    let called = tokio::task::spawn_blocking(move || {
        Python::attach(|py| {
            let result = get_token.bind(py).call0()?;
            if !result.hasattr("__await__")? {
                return Ok(Called::Token(result.extract::<String>()?));
            }
            let Some(locals) = locals else {
                return Err(PyValueError::new_err(
                    "get_token returned an awaitable, but the client was made outside an event loop",
                ));
            };
            let awaiting = pyo3_async_runtimes::into_future_with_locals(&locals, result)?;
            Ok(Called::Awaiting(Box::pin(awaiting)))
        })
    })
    .await
    .map_err(|err| format!("get_token did not finish: {err}"))?;
    match called.map_err(refusal)? {
        Called::Token(token) => Ok(token),
        Called::Awaiting(awaiting) => {
            let token = awaiting.await.map_err(refusal)?;
            Python::attach(|py| token.extract::<String>(py)).map_err(refusal)
        }
    }
}

/// What a provider that raised means: `UnauthorizedError` stops the client.
fn refusal(err: PyErr) -> TokenFailure {
    Python::attach(|py| {
        let unauthorized = py
            .import("sacred_client.exceptions")
            .and_then(|module| module.getattr("UnauthorizedError"))
            .is_ok_and(|class| err.get_type(py).is_subclass(&class).unwrap_or(false));
        let words = err
            .value(py)
            .str()
            .map(|s| s.to_string())
            .unwrap_or_default();
        if unauthorized {
            Box::new(Unauthorized::new(words)) as TokenFailure
        } else {
            format!(
                "get_token raised {}: {words}",
                err.get_type(py)
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            )
            .into()
        }
    })
}
