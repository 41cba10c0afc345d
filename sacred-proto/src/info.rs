//! Who is on the other end: the client's self-description, a peer as others
//! see it, and a position in a channel's stream.

use serde::{Deserialize, Serialize};

/// What a client announces about itself at connect: shown to others in
/// presence, join/leave and publications, and used by the server (runtime
/// `mobile` gets a longer heartbeat interval).
///
/// Every field is free text bounded by [`Limits::max_client_info_bytes`](crate::Limits);
/// the well-known values are listed on each field.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClientInfo {
    /// A display name, e.g. `"support-bot"` or `"Ada's laptop"`.
    #[serde(
        default,
        deserialize_with = "crate::text::nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    /// What kind of party this is: `agent` (an AI agent), `app` (a person's
    /// app), `service` (a backend), or another word the application chooses.
    #[serde(
        default,
        deserialize_with = "crate::text::nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub kind: String,
    /// Where the client runs: `rust`, `python`, `browser`, `mobile`, ...
    #[serde(
        default,
        deserialize_with = "crate::text::nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub runtime: String,
    /// The client's own version, e.g. `"sacred-client/0.1.0"`.
    #[serde(
        default,
        deserialize_with = "crate::text::nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub version: String,
}

impl ClientInfo {
    /// A description with every field set.
    pub fn new(
        name: impl Into<String>,
        kind: impl Into<String>,
        runtime: impl Into<String>,
        version: impl Into<String>,
    ) -> ClientInfo {
        ClientInfo {
            name: name.into(),
            kind: kind.into(),
            runtime: runtime.into(),
            version: version.into(),
        }
    }

    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        self.name.is_empty()
            && self.kind.is_empty()
            && self.runtime.is_empty()
            && self.version.is_empty()
    }
}

/// Another connection as this client sees it: in presence, join/leave, as the
/// sender of a publication or a direct message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Peer {
    /// The connection's client id, assigned by the server in the connect reply.
    #[serde(deserialize_with = "crate::text::string")]
    pub id: String,
    /// The authenticated user id; absent for anonymous connections.
    #[serde(
        default,
        deserialize_with = "crate::text::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub user: Option<String>,
    /// What the client announced about itself.
    #[serde(
        default,
        deserialize_with = "crate::nullable",
        skip_serializing_if = "ClientInfo::is_empty"
    )]
    pub info: ClientInfo,
}

impl Peer {
    /// A peer with a client id, a user (if authenticated) and its self-description.
    pub fn new(id: impl Into<String>, user: Option<String>, info: ClientInfo) -> Peer {
        Peer {
            id: id.into(),
            user,
            info,
        }
    }
}

/// A position in a channel's stream: the offset of the last publication seen
/// and the epoch of the stream it belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StreamPosition {
    /// The offset of the last publication seen; offsets increase by one per publication.
    pub offset: u64,
    /// The stream's epoch; a different epoch means the stream was lost and restarted.
    #[serde(deserialize_with = "crate::text::string")]
    pub epoch: String,
}

impl StreamPosition {
    /// A position from an offset and an epoch.
    pub fn new(offset: u64, epoch: impl Into<String>) -> StreamPosition {
        StreamPosition {
            offset,
            epoch: epoch.into(),
        }
    }
}
