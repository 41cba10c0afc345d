//! Envelopes: a message is a map holding an `id` (commands, replies) and one
//! body under its kind's key; a frame holds one message or a list of them.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::command::{Command, CommandKind};
use crate::push::{Push, PushKind};
use crate::reply::{Reply, ReplyError};

/// What a client sends: `{"id": N, "<command>": {...}}`.
///
/// `id` is chosen by the client, from 1 to 2^32-1; the reply echoes it. Keep
/// ids of commands in flight distinct.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientMessage {
    /// Matches the reply to this command; never 0.
    pub id: u32,
    /// What is asked.
    pub command: Command,
}

impl ClientMessage {
    /// A command with its id.
    pub fn new(id: u32, command: impl Into<Command>) -> ClientMessage {
        ClientMessage {
            id,
            command: command.into(),
        }
    }
}

/// What a server sends: a reply (with the command's id) or a push (without).
#[derive(Clone, Debug, PartialEq)]
pub enum ServerMessage {
    /// `{"id": N, "<command>": {...}}` or `{"id": N, "error": {...}}`.
    Reply {
        /// The id of the command this answers.
        id: u32,
        /// The command's result, or the error that refused it.
        result: Result<Reply, ReplyError>,
    },
    /// `{"<push>": {...}}`.
    Push(Push),
}

impl ServerMessage {
    /// A successful reply to command `id`.
    pub fn reply(id: u32, reply: impl Into<Reply>) -> ServerMessage {
        ServerMessage::Reply {
            id,
            result: Ok(reply.into()),
        }
    }

    /// An error reply to command `id`.
    pub fn error(id: u32, error: impl Into<ReplyError>) -> ServerMessage {
        ServerMessage::Reply {
            id,
            result: Err(error.into()),
        }
    }

    /// A push.
    pub fn push(push: impl Into<Push>) -> ServerMessage {
        ServerMessage::Push(push.into())
    }
}

/// A message type a [`Codec`](crate::Codec) can put in and take out of frames:
/// [`ClientMessage`] and [`ServerMessage`]. Sealed.
pub trait Message: Serialize + for<'de> Deserialize<'de> + private::Sealed {}

impl Message for ClientMessage {}
impl Message for ServerMessage {}

mod private {
    pub trait Sealed {}
    impl Sealed for super::ClientMessage {}
    impl Sealed for super::ServerMessage {}
}

const ID: &str = "id";
const ERROR: &str = "error";
const ID_RANGE: &str = "an id from 1 to 4294967295";

impl Serialize for ClientMessage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry(ID, &self.id)?;
        self.command.serialize_entry(&mut map)?;
        map.end()
    }
}

impl Serialize for ServerMessage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ServerMessage::Reply { id, result } => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry(ID, id)?;
                match result {
                    Ok(reply) => reply.serialize_entry(&mut map)?,
                    Err(error) => map.serialize_entry(ERROR, error)?,
                }
                map.end()
            }
            ServerMessage::Push(push) => {
                let mut map = serializer.serialize_map(Some(1))?;
                push.serialize_entry(&mut map)?;
                map.end()
            }
        }
    }
}

/// A key of a client message.
enum ClientKey {
    Id,
    Command(CommandKind),
}

/// A key of a server message.
enum ServerKey {
    Id,
    Error,
    Reply(CommandKind),
    Push(PushKind),
}

/// Reads a map key as a string and names it, without allocating.
struct KeyVisitor<K> {
    from_name: fn(&str) -> Option<K>,
}

impl<'de, K> Visitor<'de> for KeyVisitor<K> {
    type Value = K;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a message key")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<K, E> {
        (self.from_name)(name).ok_or_else(|| {
            E::custom(format_args!(
                "unknown key `{name}`: neither `id` nor a message type of this direction"
            ))
        })
    }
}

impl<'de> Deserialize<'de> for ClientKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        fn from_name(name: &str) -> Option<ClientKey> {
            match name {
                ID => Some(ClientKey::Id),
                _ => CommandKind::from_name(name).map(ClientKey::Command),
            }
        }
        deserializer.deserialize_identifier(KeyVisitor { from_name })
    }
}

impl<'de> Deserialize<'de> for ServerKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        fn from_name(name: &str) -> Option<ServerKey> {
            match name {
                ID => Some(ServerKey::Id),
                ERROR => Some(ServerKey::Error),
                _ => CommandKind::from_name(name)
                    .map(ServerKey::Reply)
                    .or_else(|| PushKind::from_name(name).map(ServerKey::Push)),
            }
        }
        deserializer.deserialize_identifier(KeyVisitor { from_name })
    }
}

fn next_id<'de, A: MapAccess<'de>>(map: &mut A, seen: &Option<u32>) -> Result<u32, A::Error> {
    if seen.is_some() {
        return Err(de::Error::duplicate_field(ID));
    }
    let id: u32 = map.next_value()?;
    if id == 0 {
        return Err(de::Error::invalid_value(
            de::Unexpected::Unsigned(0),
            &ID_RANGE,
        ));
    }
    Ok(id)
}

fn one_body<T, E: de::Error>(seen: &Option<T>) -> Result<(), E> {
    match seen {
        Some(_) => Err(E::custom("a message holds exactly one body")),
        None => Ok(()),
    }
}

impl<'de> Deserialize<'de> for ClientMessage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ClientMessageVisitor;

        impl<'de> Visitor<'de> for ClientMessageVisitor {
            type Value = ClientMessage;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a client message {\"id\": N, \"<command>\": {...}}")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ClientMessage, A::Error> {
                let mut id = None;
                let mut command = None;
                while let Some(key) = map.next_key()? {
                    match key {
                        ClientKey::Id => id = Some(next_id(&mut map, &id)?),
                        ClientKey::Command(kind) => {
                            one_body(&command)?;
                            command = Some(Command::next_value(kind, &mut map)?);
                        }
                    }
                }
                let id = id.ok_or_else(|| de::Error::missing_field(ID))?;
                let command = command
                    .ok_or_else(|| de::Error::custom("a command message needs a command"))?;
                Ok(ClientMessage { id, command })
            }
        }

        deserializer.deserialize_map(ClientMessageVisitor)
    }
}

impl<'de> Deserialize<'de> for ServerMessage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        enum Body {
            Reply(Result<Reply, ReplyError>),
            Push(Push),
        }

        struct ServerMessageVisitor;

        impl<'de> Visitor<'de> for ServerMessageVisitor {
            type Value = ServerMessage;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a server message (a reply with \"id\" or a push)")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ServerMessage, A::Error> {
                let mut id = None;
                let mut body = None;
                while let Some(key) = map.next_key()? {
                    match key {
                        ServerKey::Id => id = Some(next_id(&mut map, &id)?),
                        ServerKey::Error => {
                            one_body(&body)?;
                            body = Some(Body::Reply(Err(map.next_value::<Named<_>>()?.0)));
                        }
                        ServerKey::Reply(kind) => {
                            one_body(&body)?;
                            body = Some(Body::Reply(Ok(Reply::next_value(kind, &mut map)?)));
                        }
                        ServerKey::Push(kind) => {
                            one_body(&body)?;
                            body = Some(Body::Push(Push::next_value(kind, &mut map)?));
                        }
                    }
                }
                match (id, body) {
                    (Some(id), Some(Body::Reply(result))) => {
                        Ok(ServerMessage::Reply { id, result })
                    }
                    (None, Some(Body::Push(push))) => Ok(ServerMessage::Push(push)),
                    (None, Some(Body::Reply(_))) => Err(de::Error::missing_field(ID)),
                    (Some(_), Some(Body::Push(_))) => {
                        Err(de::Error::custom("a push carries no id"))
                    }
                    (_, None) => Err(de::Error::custom(
                        "a server message needs a reply, an error or a push",
                    )),
                }
            }
        }

        deserializer.deserialize_map(ServerMessageVisitor)
    }
}

/// A message body, read only from a map. Derived structs would also accept a
/// positional array; the protocol has named fields only, so bodies refuse one.
pub(crate) struct Named<T>(pub(crate) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Named<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NamedVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for NamedVisitor<T> {
            type Value = Named<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of named fields")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Named<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Named)
            }
        }

        deserializer.deserialize_map(NamedVisitor(PhantomData))
    }
}

/// The content of a frame: one message (a map) or a batch (a non-empty list).
///
/// Batch length and emptiness are checked before serde runs (see `scan`), so
/// this only decides between the two shapes.
pub(crate) struct Frame<M>(pub(crate) Vec<M>);

impl<'de, M: Deserialize<'de>> Deserialize<'de> for Frame<M> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FrameVisitor<M>(PhantomData<M>);

        impl<'de, M: Deserialize<'de>> Visitor<'de> for FrameVisitor<M> {
            type Value = Frame<M>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a message or a list of messages")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Frame<M>, A::Error> {
                let message = M::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Frame(vec![message]))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Frame<M>, A::Error> {
                // The scanner has already bounded the length by the frame's size.
                let mut messages = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(message) = seq.next_element()? {
                    messages.push(message);
                }
                Ok(Frame(messages))
            }
        }

        deserializer.deserialize_any(FrameVisitor(PhantomData))
    }
}
