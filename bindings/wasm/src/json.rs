//! Batches as JSON text: the fast way across the boundary.
//!
//! Building a JavaScript object from WebAssembly costs a call and a string
//! decode per key and per string value; a publication took a dozen of each.
//! Instead, a batch whose every item reads back exactly through `JSON.parse`
//! is written as one JSON array, decoded once and parsed by the engine's own
//! parser. An item that JSON would change (bytes, which must arrive as a
//! `Uint8Array`; integers beyond 2^53, which must arrive as `bigint`) sends
//! its batch down the object path of `stream.rs` instead.

use sacred_client::proto::{DirectMessage, Number, Peer, Publication, Value};
use serde::Serialize;

/// The largest integer a JavaScript number holds exactly.
const MAX_SAFE: u64 = (1 << 53) - 1;

/// Whether `JSON.parse` of this value's JSON gives what `value::to_js` gives.
pub(crate) fn exact(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(_) | Value::String(_) => true,
        Value::Number(n) => safe_number(n),
        Value::Bytes(_) => false,
        Value::Array(items) => items.iter().all(exact),
        Value::Object(map) => map.values().all(exact),
    }
}

fn safe_number(n: &Number) -> bool {
    if let Some(n) = n.as_u64() {
        n <= MAX_SAFE
    } else if let Some(n) = n.as_i64() {
        n.unsigned_abs() <= MAX_SAFE
    } else {
        true
    }
}

/// A peer as `stream::peer` builds it.
#[derive(Serialize)]
struct PeerJson<'a> {
    id: &'a str,
    user: Option<&'a str>,
    name: &'a str,
    kind: &'a str,
    runtime: &'a str,
    version: &'a str,
}

impl<'a> From<&'a Peer> for PeerJson<'a> {
    fn from(peer: &'a Peer) -> PeerJson<'a> {
        PeerJson {
            id: &peer.id,
            user: peer.user.as_deref(),
            name: &peer.info.name,
            kind: &peer.info.kind,
            runtime: &peer.info.runtime,
            version: &peer.info.version,
        }
    }
}

/// A publication as `stream::publication` builds it.
#[derive(Serialize)]
struct PublicationJson<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    channel: &'a str,
    data: &'a Value,
    offset: Option<u64>,
    epoch: Option<&'a str>,
    publisher: Option<PeerJson<'a>>,
    time: u64,
    traceparent: Option<&'a str>,
}

/// Appends the publication's JSON to `out`; false (and `out` unusable) if
/// JSON would not carry it exactly.
pub(crate) fn publication(publication: &Publication, out: &mut Vec<u8>) -> bool {
    if publication.time > MAX_SAFE
        || publication.offset.is_some_and(|offset| offset > MAX_SAFE)
        || !exact(&publication.data)
    {
        return false;
    }
    let json = PublicationJson {
        kind: "publication",
        channel: &publication.channel,
        data: &publication.data,
        offset: publication.offset,
        epoch: publication.epoch.as_deref(),
        publisher: publication.from.as_ref().map(PeerJson::from),
        time: publication.time,
        traceparent: publication.traceparent.as_deref(),
    };
    serde_json::to_writer(out, &json).is_ok()
}

/// A direct message as `stream.rs` builds it.
#[derive(Serialize)]
struct MessageJson<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    data: &'a Value,
    sender: Option<PeerJson<'a>>,
}

/// Appends the message's JSON to `out`; false if JSON would not carry it exactly.
pub(crate) fn message(message: &DirectMessage, out: &mut Vec<u8>) -> bool {
    if !exact(&message.data) {
        return false;
    }
    let json = MessageJson {
        kind: "message",
        data: &message.data,
        sender: message.from.as_ref().map(PeerJson::from),
    };
    serde_json::to_writer(out, &json).is_ok()
}
