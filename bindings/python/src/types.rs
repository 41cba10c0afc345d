//! What calls and streams hand to Python: frozen classes with read-only
//! attributes, built once per item while the GIL is held for it.

use pyo3::prelude::*;
use pyo3::types::PyList;
use sacred_client::proto;

use crate::value;

/// A string as Python's repr writes it (close enough for the ASCII of ids
/// and names; others are escaped as Rust does).
fn text(value: &str) -> String {
    format!("'{}'", value.escape_default())
}

fn optional(value: Option<&str>) -> String {
    value.map_or_else(|| "None".into(), text)
}

fn number(value: Option<u64>) -> String {
    value.map_or_else(|| "None".into(), |n| n.to_string())
}

/// A client as others see it (publisher of a publication, member in presence).
#[pyclass(frozen, get_all, eq, hash, module = "sacred_client._native")]
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct Peer {
    /// The connection's client id.
    id: String,
    /// The authenticated user, `None` for anonymous connections.
    user: Option<String>,
    /// The name it announced.
    name: String,
    /// Its kind ("app", "agent", "service", ...).
    kind: String,
    /// Its runtime ("python", "rust", "browser", ...).
    runtime: String,
    /// Its version.
    version: String,
}

impl Peer {
    pub(crate) fn new(peer: proto::Peer) -> Peer {
        Peer {
            id: peer.id,
            user: peer.user,
            name: peer.info.name,
            kind: peer.info.kind,
            runtime: peer.info.runtime,
            version: peer.info.version,
        }
    }
}

#[pymethods]
impl Peer {
    fn __repr__(&self) -> String {
        format!(
            "Peer(id={}, user={}, name={}, kind={}, runtime={}, version={})",
            text(&self.id),
            optional(self.user.as_deref()),
            text(&self.name),
            text(&self.kind),
            text(&self.runtime),
            text(&self.version)
        )
    }
}

/// One publication in a channel.
#[pyclass(frozen, get_all, module = "sacred_client._native")]
pub(crate) struct Publication {
    /// The channel.
    channel: String,
    /// The payload, as plain Python values.
    data: Py<PyAny>,
    /// Its offset in the channel's stream (`None` without history).
    offset: Option<u64>,
    /// The stream's epoch (`None` without history).
    epoch: Option<String>,
    /// Who published it (`None` when the host did).
    publisher: Option<Peer>,
    /// When the server accepted it, ms since the Unix epoch.
    time: u64,
    /// The W3C `traceparent` its publish carried (`None` without one).
    traceparent: Option<String>,
}

impl Publication {
    pub(crate) fn new(py: Python<'_>, publication: proto::Publication) -> PyResult<Publication> {
        Ok(Publication {
            data: value::to_py(py, &publication.data)?,
            channel: publication.channel,
            offset: publication.offset,
            epoch: publication.epoch,
            publisher: publication.from.map(Peer::new),
            time: publication.time,
            traceparent: publication.traceparent,
        })
    }
}

#[pymethods]
impl Publication {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Publication(channel={}, offset={}, data={})",
            text(&self.channel),
            number(self.offset),
            self.data.bind(py).repr()?
        ))
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Ok(other) = other.cast::<Publication>() else {
            return Ok(false);
        };
        let other = other.get();
        Ok(self.channel == other.channel
            && self.offset == other.offset
            && self.epoch == other.epoch
            && self.publisher == other.publisher
            && self.time == other.time
            && self.traceparent == other.traceparent
            && self.data.bind(py).eq(other.data.bind(py))?)
    }
}

/// A direct message to this client.
#[pyclass(frozen, get_all, module = "sacred_client._native")]
pub(crate) struct Message {
    /// The payload.
    data: Py<PyAny>,
    /// Who sent it (`None` when the host did).
    sender: Option<Peer>,
}

impl Message {
    pub(crate) fn new(py: Python<'_>, message: proto::DirectMessage) -> PyResult<Message> {
        Ok(Message {
            data: value::to_py(py, &message.data)?,
            sender: message.from.map(Peer::new),
        })
    }
}

#[pymethods]
impl Message {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Message(sender={}, data={})",
            self.sender.as_ref().map_or("None".into(), Peer::__repr__),
            self.data.bind(py).repr()?
        ))
    }
}

/// A page of a channel's history and the stream's position now.
#[pyclass(frozen, get_all, module = "sacred_client._native")]
pub(crate) struct History {
    /// The publications, oldest first (newest first if asked `reverse`).
    publications: Py<PyList>,
    /// The stream's last offset.
    offset: u64,
    /// The stream's epoch.
    epoch: String,
}

impl History {
    pub(crate) fn new(py: Python<'_>, reply: proto::HistoryReply) -> PyResult<History> {
        let publications = PyList::empty(py);
        for publication in reply.publications {
            publications.append(Publication::new(py, publication)?)?;
        }
        Ok(History {
            publications: publications.unbind(),
            offset: reply.offset,
            epoch: reply.epoch,
        })
    }
}

#[pymethods]
impl History {
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "History(offset={}, epoch={}, publications=<{} publications>)",
            self.offset,
            text(&self.epoch),
            self.publications.bind(py).len()
        )
    }
}

/// What a search found: a page of matches, best first, and how many match.
#[pyclass(frozen, get_all, module = "sacred_client._native")]
pub(crate) struct SearchResult {
    /// The matching publications of the page, best first.
    publications: Py<PyList>,
    /// How many publications match in all.
    total: u64,
}

impl SearchResult {
    pub(crate) fn new(py: Python<'_>, reply: proto::SearchReply) -> PyResult<SearchResult> {
        let publications = PyList::empty(py);
        for publication in reply.publications {
            publications.append(Publication::new(py, publication)?)?;
        }
        Ok(SearchResult {
            publications: publications.unbind(),
            total: reply.total,
        })
    }
}

#[pymethods]
impl SearchResult {
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "SearchResult(total={}, publications=<{} publications>)",
            self.total,
            self.publications.bind(py).len()
        )
    }
}

/// The server's ack of a publish: where the publication went in the stream.
#[pyclass(frozen, get_all, eq, hash, module = "sacred_client._native")]
#[derive(PartialEq, Eq, Hash)]
pub(crate) struct PublishResult {
    /// Its offset (`None` for a channel without history).
    offset: Option<u64>,
    /// The stream's epoch (`None` for a channel without history).
    epoch: Option<String>,
}

impl PublishResult {
    pub(crate) fn new(reply: proto::PublishReply) -> PublishResult {
        PublishResult {
            offset: reply.offset,
            epoch: reply.epoch,
        }
    }
}

#[pymethods]
impl PublishResult {
    fn __repr__(&self) -> String {
        format!(
            "PublishResult(offset={}, epoch={})",
            number(self.offset),
            optional(self.epoch.as_deref())
        )
    }
}
