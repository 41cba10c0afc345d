//! The streams the JavaScript layer pumps: a subscription's events, direct
//! messages and connection events, each handed over as an array of plain
//! objects with a `type` (everything already waiting, up to `max`, per
//! Promise), `null` once the stream ended.

use std::rc::Rc;

use js_sys::{Array, Object, Promise, Reflect};
use sacred_client::proto::{Peer, Publication};
use sacred_client::{ClientEvent, MessageEvent, SubscriptionEvent};
use tokio::sync::{Mutex, watch};
use wasm_bindgen::JsValue;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen_futures::future_to_promise;

use crate::{error, json, value};

/// A plain object from key-value pairs.
pub(crate) fn object(entries: &[(&str, JsValue)]) -> JsValue {
    let object = Object::new();
    for (key, value) in entries {
        let _ = Reflect::set(&object, &JsValue::from_str(key), value);
    }
    object.into()
}

fn text(value: &str) -> JsValue {
    JsValue::from_str(value)
}

/// A peer: `{id, user, name, kind, runtime, version}`.
pub(crate) fn peer(peer: Peer) -> JsValue {
    object(&[
        ("id", text(&peer.id)),
        ("user", peer.user.as_deref().map_or(JsValue::NULL, text)),
        ("name", text(&peer.info.name)),
        ("kind", text(&peer.info.kind)),
        ("runtime", text(&peer.info.runtime)),
        ("version", text(&peer.info.version)),
    ])
}

/// A publication: `{type: "publication", channel, data, offset, epoch, publisher, time, traceparent}`.
pub(crate) fn publication(publication: Publication) -> JsValue {
    object(&[
        ("type", text("publication")),
        ("channel", text(&publication.channel)),
        ("data", value::to_js(&publication.data)),
        (
            "offset",
            publication.offset.map_or(JsValue::NULL, value::unsigned),
        ),
        (
            "epoch",
            publication.epoch.as_deref().map_or(JsValue::NULL, text),
        ),
        ("publisher", publication.from.map_or(JsValue::NULL, peer)),
        ("time", value::unsigned(publication.time)),
        (
            "traceparent",
            publication
                .traceparent
                .as_deref()
                .map_or(JsValue::NULL, text),
        ),
    ])
}

/// What a stream of the client can do, and how its items look in JavaScript.
pub(crate) trait Source: 'static {
    type Item;
    fn recv(&mut self) -> impl Future<Output = Option<Self::Item>>;
    fn try_recv(&mut self) -> Option<Self::Item>;
    /// The item as JavaScript, or `None` to leave it out.
    fn to_js(item: Self::Item) -> Option<JsValue>;
    /// Appends the item's JSON to `out` if `JSON.parse` reads it back as
    /// `to_js` builds it; false sends the batch down the object path.
    fn to_json(_item: &Self::Item, _out: &mut Vec<u8>) -> bool {
        false
    }
}

/// A batch for JavaScript: one JSON text if every item has one (see
/// `json.rs`), else an array of objects.
fn batch<S: Source>(items: Vec<S::Item>) -> JsValue {
    let mut out = Vec::with_capacity(256 * items.len());
    out.push(b'[');
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        if !S::to_json(item, &mut out) {
            return objects::<S>(items);
        }
    }
    out.push(b']');
    // serde_json writes UTF-8.
    JsValue::from_str(std::str::from_utf8(&out).unwrap_or("[]"))
}

fn objects<S: Source>(items: Vec<S::Item>) -> JsValue {
    let batch = Array::new();
    for item in items.into_iter().filter_map(S::to_js) {
        batch.push(&item);
    }
    batch.into()
}

/// One stream shared by a JavaScript object; `stop` ends every read.
#[derive(Debug)]
pub(crate) struct Shared<S> {
    source: Mutex<Option<S>>,
    stopped: watch::Sender<bool>,
}

impl<S: Source> Shared<S> {
    pub(crate) fn new(source: S) -> Rc<Shared<S>> {
        Rc::new(Shared {
            source: Mutex::new(Some(source)),
            stopped: watch::Sender::new(false),
        })
    }

    /// The next batch: waits for one item, then takes what else waits, up to `max`.
    pub(crate) fn next_batch(self: &Rc<Self>, max: usize) -> Promise {
        let shared = Rc::clone(self);
        let max = max.max(1);
        future_to_promise(async move {
            let mut stopped = shared.stopped.subscribe();
            let mut source = shared.source.lock().await;
            let Some(stream) = source.as_mut() else {
                return Ok(JsValue::NULL);
            };
            let first = tokio::select! {
                item = stream.recv() => item,
                _ = stopped.wait_for(|stopped| *stopped) => None,
            };
            let Some(first) = first else {
                *source = None;
                return Ok(JsValue::NULL);
            };
            let mut items = vec![first];
            while items.len() < max {
                let Some(item) = stream.try_recv() else { break };
                items.push(item);
            }
            Ok(batch::<S>(items))
        })
    }

    /// Ends the stream; the client's stream is dropped (a subscription: unsubscribed).
    pub(crate) fn stop(self: &Rc<Self>) -> Promise {
        let shared = Rc::clone(self);
        future_to_promise(async move {
            shared.stopped.send_replace(true);
            shared.source.lock().await.take();
            Ok(JsValue::UNDEFINED)
        })
    }
}

impl Source for sacred_client::Subscription {
    type Item = SubscriptionEvent;

    fn recv(&mut self) -> impl Future<Output = Option<SubscriptionEvent>> {
        sacred_client::Subscription::recv(self)
    }

    fn try_recv(&mut self) -> Option<SubscriptionEvent> {
        sacred_client::Subscription::try_recv(self)
    }

    fn to_json(event: &SubscriptionEvent, out: &mut Vec<u8>) -> bool {
        match event {
            SubscriptionEvent::Publication(p) => json::publication(p, out),
            _ => false,
        }
    }

    fn to_js(event: SubscriptionEvent) -> Option<JsValue> {
        Some(match event {
            SubscriptionEvent::Publication(p) => publication(p),
            SubscriptionEvent::Join(p) => object(&[("type", text("join")), ("peer", peer(p))]),
            SubscriptionEvent::Leave(p) => object(&[("type", text("leave")), ("peer", peer(p))]),
            SubscriptionEvent::Resubscribed { recovered } => object(&[
                ("type", text("subscribed")),
                ("recovered", JsValue::from_bool(recovered)),
            ]),
            SubscriptionEvent::Unsubscribed { code, reason } => object(&[
                ("type", text("unsubscribed")),
                ("code", JsValue::from(code)),
                ("reason", text(&reason)),
            ]),
            SubscriptionEvent::Lagged { skipped } => object(&[
                ("type", text("lagged")),
                ("skipped", value::unsigned(skipped)),
            ]),
            _ => return None,
        })
    }
}

impl Source for sacred_client::Messages {
    type Item = MessageEvent;

    fn recv(&mut self) -> impl Future<Output = Option<MessageEvent>> {
        sacred_client::Messages::recv(self)
    }

    fn try_recv(&mut self) -> Option<MessageEvent> {
        sacred_client::Messages::try_recv(self)
    }

    fn to_json(event: &MessageEvent, out: &mut Vec<u8>) -> bool {
        match event {
            MessageEvent::Message(message) => json::message(message, out),
            _ => false,
        }
    }

    fn to_js(event: MessageEvent) -> Option<JsValue> {
        Some(match event {
            MessageEvent::Message(message) => object(&[
                ("type", text("message")),
                ("data", value::to_js(&message.data)),
                ("sender", message.from.map_or(JsValue::NULL, peer)),
            ]),
            MessageEvent::Lagged { skipped } => object(&[
                ("type", text("lagged")),
                ("skipped", value::unsigned(skipped)),
            ]),
            _ => return None,
        })
    }
}

impl Source for sacred_client::Events {
    type Item = ClientEvent;

    fn recv(&mut self) -> impl Future<Output = Option<ClientEvent>> {
        sacred_client::Events::recv(self)
    }

    fn try_recv(&mut self) -> Option<ClientEvent> {
        sacred_client::Events::try_recv(self)
    }

    fn to_js(event: ClientEvent) -> Option<JsValue> {
        Some(match event {
            ClientEvent::Connecting => object(&[("type", text("connecting"))]),
            ClientEvent::Connected { client } => {
                object(&[("type", text("connected")), ("clientId", text(&client))])
            }
            ClientEvent::Disconnected {
                code,
                reason,
                reconnect,
            } => object(&[
                ("type", text("disconnected")),
                ("code", JsValue::from(code)),
                ("reason", text(&reason)),
                ("reconnect", JsValue::from_bool(reconnect)),
            ]),
            ClientEvent::Error(err) => {
                object(&[("type", text("error")), ("error", error::to_js(err))])
            }
            ClientEvent::Lagged { skipped } => object(&[
                ("type", text("lagged")),
                ("skipped", value::unsigned(skipped)),
            ]),
            _ => return None,
        })
    }
}

/// One subscribed channel.
#[wasm_bindgen]
#[derive(Debug)]
pub struct RawSubscription {
    channel: String,
    shared: Rc<Shared<sacred_client::Subscription>>,
}

impl RawSubscription {
    pub(crate) fn new(subscription: sacred_client::Subscription) -> RawSubscription {
        RawSubscription {
            channel: subscription.channel().to_owned(),
            shared: Shared::new(subscription),
        }
    }
}

#[wasm_bindgen]
impl RawSubscription {
    /// The channel.
    #[wasm_bindgen(getter)]
    pub fn channel(&self) -> String {
        self.channel.clone()
    }

    /// Resolves with the events that wait (at least one), `null` once it ended.
    #[wasm_bindgen(js_name = nextBatch)]
    pub fn next_batch(&self, max: usize) -> Promise {
        self.shared.next_batch(max)
    }

    /// Unsubscribes; a read waiting meanwhile resolves with `null`.
    pub fn unsubscribe(&self) -> Promise {
        self.shared.stop()
    }
}

/// Direct messages to the client.
#[wasm_bindgen]
#[derive(Debug)]
pub struct RawMessages {
    shared: Rc<Shared<sacred_client::Messages>>,
}

impl RawMessages {
    pub(crate) fn new(messages: sacred_client::Messages) -> RawMessages {
        RawMessages {
            shared: Shared::new(messages),
        }
    }
}

#[wasm_bindgen]
impl RawMessages {
    /// Resolves with the messages that wait (at least one), `null` once it ended.
    #[wasm_bindgen(js_name = nextBatch)]
    pub fn next_batch(&self, max: usize) -> Promise {
        self.shared.next_batch(max)
    }

    /// Stops reading.
    pub fn close(&self) -> Promise {
        self.shared.stop()
    }
}

/// Connection events, pumped by the JavaScript client.
pub(crate) type EventStream = Rc<Shared<sacred_client::Events>>;
