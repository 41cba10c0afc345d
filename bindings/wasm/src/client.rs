//! The exported client: `sacred_client::Client` with JavaScript arguments
//! and results; every call returns a `Promise`.

use std::time::Duration;

use js_sys::{Array, Function, Promise, Reflect};
use sacred_client::proto::{Codec, HistoryRequest, SearchRequest, StreamPosition};
use sacred_client::{State, Unauthorized};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::{JsFuture, future_to_promise};

use crate::stream::{EventStream, RawMessages, RawSubscription, Shared, object, peer, publication};
use crate::{error, value};

/// A token provider's failure, for the client: `Unauthorized` stops it.
type TokenFailure = Box<dyn std::error::Error + Send + Sync>;

/// A client of one hub; `Client` in `js/index.js` is the API pages use.
#[wasm_bindgen]
#[derive(Debug)]
pub struct RawClient {
    client: sacred_client::Client,
    events: EventStream,
}

/// Reads an optional option of `options`.
fn option(options: &JsValue, key: &str) -> Option<JsValue> {
    Reflect::get(options, &JsValue::from_str(key))
        .ok()
        .filter(|value| !value.is_undefined() && !value.is_null())
}

fn milliseconds(options: &JsValue, key: &str) -> Result<Option<Duration>, JsValue> {
    match option(options, key) {
        None => Ok(None),
        Some(value) => match value.as_f64() {
            Some(ms) if ms.is_finite() && ms >= 0.0 => {
                Ok(Some(Duration::from_secs_f64(ms / 1000.0)))
            }
            _ => Err(error::descriptor(
                "ConfigurationError",
                &format!("{key} must be a number of milliseconds, 0 or more"),
                None,
                false,
            )),
        },
    }
}

fn count(options: &JsValue, key: &str) -> Result<Option<usize>, JsValue> {
    match option(options, key) {
        None => Ok(None),
        Some(value) => match value.as_f64() {
            Some(n) if n.fract() == 0.0 && n >= 1.0 => Ok(Some(n as usize)),
            _ => Err(error::descriptor(
                "ConfigurationError",
                &format!("{key} must be a whole number, 1 or more"),
                None,
                false,
            )),
        },
    }
}

fn string(options: &JsValue, key: &str) -> Option<String> {
    option(options, key).and_then(|value| value.as_string())
}

#[wasm_bindgen]
impl RawClient {
    /// Checks the options and starts the client's task, not yet connected.
    #[wasm_bindgen(constructor)]
    pub fn new(url: String, options: JsValue) -> Result<RawClient, JsValue> {
        let mut builder = sacred_client::Client::builder(url).runtime("browser");
        if let Some(token) = string(&options, "token") {
            builder = builder.token(token);
        }
        if let Some(get_token) = option(&options, "getToken") {
            let get_token: Function = get_token.dyn_into().map_err(|_| {
                error::descriptor(
                    "ConfigurationError",
                    "getToken must be a function",
                    None,
                    false,
                )
            })?;
            builder = builder.token_provider(move || fetch_token(get_token.clone()));
        }
        if let Some(name) = string(&options, "name") {
            builder = builder.name(name);
        }
        if let Some(kind) = string(&options, "kind") {
            builder = builder.kind(kind);
        }
        if let Some(version) = string(&options, "version") {
            builder = builder.version(version);
        }
        builder = builder.codec(match string(&options, "codec").as_deref() {
            None | Some("json") => Codec::Json,
            Some("msgpack") => Codec::MsgPack,
            Some(other) => {
                return Err(error::descriptor(
                    "ConfigurationError",
                    &format!("codec must be \"json\" or \"msgpack\", not {other:?}"),
                    None,
                    false,
                ));
            }
        });
        if let Some(timeout) = milliseconds(&options, "timeout")? {
            builder = builder.request_timeout(timeout);
        }
        if let Some(timeout) = milliseconds(&options, "connectTimeout")? {
            builder = builder.connect_timeout(timeout);
        }
        let min = milliseconds(&options, "minReconnectDelay")?;
        let max = milliseconds(&options, "maxReconnectDelay")?;
        if min.is_some() || max.is_some() {
            builder = builder.reconnect(
                min.unwrap_or(Duration::from_millis(500)),
                max.unwrap_or(Duration::from_secs(20)),
            );
        }
        if let Some(messages) = count(&options, "maxBatch")? {
            builder = builder.max_batch(messages);
        }
        let queue = count(&options, "offlineQueue")?;
        let deadline = milliseconds(&options, "offlineDeadline")?;
        if queue.is_some() || deadline.is_some() {
            builder = builder.offline_queue(
                queue.unwrap_or(1024),
                deadline.unwrap_or(Duration::from_secs(30)),
            );
        }
        if let Some(events) = count(&options, "subscriptionBuffer")? {
            builder = builder.subscription_buffer(events);
        }
        if let Some(messages) = count(&options, "messageBuffer")? {
            builder = builder.message_buffer(messages);
        }
        let client = builder.build().map_err(error::to_js)?;
        let events = Shared::new(client.events());
        Ok(RawClient { client, events })
    }

    /// The id the server assigned; `undefined` while not connected.
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> Option<String> {
        self.client.id()
    }

    /// "disconnected", "connecting", "connected" or "closed".
    #[wasm_bindgen(getter)]
    pub fn state(&self) -> String {
        match self.client.state() {
            State::Disconnected => "disconnected",
            State::Connecting => "connecting",
            State::Connected => "connected",
            State::Closed => "closed",
        }
        .into()
    }

    /// Connects (if not already); resolves once connected.
    pub fn connect(&self) -> Promise {
        let client = self.client.clone();
        future_to_promise(async move {
            client.connect().await.map_err(error::to_js)?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Closes for good; resolves once closed.
    pub fn close(&self) -> Promise {
        let client = self.client.clone();
        future_to_promise(async move {
            client.close().await;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Subscribes; resolves with a `RawSubscription` once confirmed.
    pub fn subscribe(&self, channel: String, join_leave: bool) -> Promise {
        let client = self.client.clone();
        future_to_promise(async move {
            let subscription = client
                .subscribe_with(channel, join_leave)
                .await
                .map_err(error::to_js)?;
            Ok(RawSubscription::new(subscription).into())
        })
    }

    /// Publishes, carrying the W3C `traceparent` if given; resolves with
    /// `{offset, epoch}`.
    pub fn publish(&self, channel: String, data: JsValue, traceparent: Option<String>) -> Promise {
        let client = self.client.clone();
        let data = value::from_js(&data);
        future_to_promise(async move {
            let data = data?;
            let reply = match traceparent {
                Some(traceparent) => client.publish_traced(channel, data, traceparent).await,
                None => client.publish(channel, data).await,
            };
            let reply = reply.map_err(error::to_js)?;
            Ok(object(&[
                (
                    "offset",
                    reply.offset.map_or(JsValue::NULL, value::unsigned),
                ),
                (
                    "epoch",
                    reply
                        .epoch
                        .as_deref()
                        .map_or(JsValue::NULL, JsValue::from_str),
                ),
            ]))
        })
    }

    /// Sends a direct message to a client by its id.
    pub fn send(&self, to: String, data: JsValue) -> Promise {
        let client = self.client.clone();
        let data = value::from_js(&data);
        future_to_promise(async move {
            client.send(to, data?).await.map_err(error::to_js)?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Who is subscribed to `channel`: an array of peers.
    pub fn presence(&self, channel: String) -> Promise {
        let client = self.client.clone();
        future_to_promise(async move {
            let peers = client.presence(channel).await.map_err(error::to_js)?;
            Ok(peers.into_iter().map(peer).collect::<Array>().into())
        })
    }

    /// A page of history: `{publications, offset, epoch}`.
    pub fn history(
        &self,
        channel: String,
        limit: Option<u32>,
        since_offset: Option<f64>,
        since_epoch: Option<String>,
        reverse: bool,
    ) -> Promise {
        let mut request = HistoryRequest::new(channel).reverse(reverse);
        if let Some(limit) = limit {
            request = request.limit(limit);
        }
        if let (Some(offset), Some(epoch)) = (since_offset, since_epoch) {
            request = request.since(StreamPosition::new(offset as u64, epoch));
        }
        let client = self.client.clone();
        future_to_promise(async move {
            let reply = client.history(request).await.map_err(error::to_js)?;
            let publications: Array = reply.publications.into_iter().map(publication).collect();
            Ok(object(&[
                ("publications", publications.into()),
                ("offset", value::unsigned(reply.offset)),
                ("epoch", JsValue::from_str(&reply.epoch)),
            ]))
        })
    }

    /// Searches a channel's stored history for words, best match first:
    /// `{publications, total}`.
    pub fn search(
        &self,
        channel: String,
        text: String,
        limit: Option<u32>,
        skip: Option<u32>,
    ) -> Promise {
        let mut request = SearchRequest::new(channel, text);
        if let Some(limit) = limit {
            request = request.limit(limit);
        }
        if let Some(skip) = skip {
            request = request.skip(skip);
        }
        let client = self.client.clone();
        future_to_promise(async move {
            let reply = client.search(request).await.map_err(error::to_js)?;
            let publications: Array = reply.publications.into_iter().map(publication).collect();
            Ok(object(&[
                ("publications", publications.into()),
                ("total", value::unsigned(reply.total)),
            ]))
        })
    }

    /// Calls an RPC handler of the host; resolves with its answer.
    pub fn rpc(&self, method: String, data: JsValue) -> Promise {
        let client = self.client.clone();
        let data = value::from_js(&data);
        future_to_promise(async move {
            let answer = client.rpc(method, data?).await.map_err(error::to_js)?;
            Ok(value::to_js(&answer))
        })
    }

    /// The server's clock (ms since the Unix epoch), `null` before the first connect.
    #[wasm_bindgen(js_name = serverTime)]
    pub fn server_time(&self) -> Promise {
        let client = self.client.clone();
        future_to_promise(async move {
            Ok(client
                .server_time()
                .await
                .map_or(JsValue::NULL, value::unsigned))
        })
    }

    /// Resolves with the connection events that wait, `null` once closed.
    #[wasm_bindgen(js_name = nextEvents)]
    pub fn next_events(&self, max: usize) -> Promise {
        self.events.next_batch(max)
    }

    /// A new reader of direct messages.
    pub fn messages(&self) -> RawMessages {
        RawMessages::new(self.client.messages())
    }
}

/// Asks the page's token provider; a rejection whose `name` is
/// `UnauthorizedError` stops the client.
async fn fetch_token(get_token: Function) -> Result<String, TokenFailure> {
    let returned = get_token
        .call0(&JsValue::NULL)
        .map_err(|err| refusal(&err))?;
    let token = match returned.dyn_into::<Promise>() {
        Ok(promise) => JsFuture::from(promise).await.map_err(|err| refusal(&err))?,
        Err(token) => token,
    };
    token
        .as_string()
        .ok_or_else(|| "getToken must resolve with a string".into())
}

fn refusal(err: &JsValue) -> TokenFailure {
    let name = Reflect::get(err, &"name".into())
        .ok()
        .and_then(|name| name.as_string());
    let message = Reflect::get(err, &"message".into())
        .ok()
        .and_then(|message| message.as_string())
        .or_else(|| err.as_string())
        .unwrap_or_else(|| "getToken failed".into());
    if name.as_deref() == Some("UnauthorizedError") {
        Box::new(Unauthorized::new(message))
    } else {
        format!("getToken threw: {message}").into()
    }
}
