//! `Client`, the cheap handle applications hold. It talks over channels to
//! the task that owns the connection (the transport's driver), so it is the
//! same on every platform.

use std::time::Duration;

use sacred_proto::{
    Command, HistoryReply, HistoryRequest, Peer, PresenceRequest, PublishReply, PublishRequest,
    Reply, RpcRequest, SearchReply, SearchRequest, SendRequest, Value, to_value,
};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::builder::ClientBuilder;
use crate::dispatch::SharedStatus;
use crate::error::Error;
use crate::event::State;
use crate::op::Op;
use crate::stream::{Events, Messages, Subscription};
use crate::transport;

/// Events each [`Client::events`] listener buffers (they are few: connects,
/// disconnects, failed attempts).
const EVENT_BUFFER: usize = 256;

/// A connection to a Sacred hub. Cheap to clone, no need to wrap it in `Arc`:
/// every clone talks to the same task, which owns the connection, reconnects
/// it and recovers subscriptions. Dropping every clone (and every
/// subscription) closes it.
///
/// ```no_run
/// use sacred_client::{Client, ClientEvent};
///
/// # async fn run() -> Result<(), sacred_client::Error> {
/// let client = Client::builder("ws://127.0.0.1:8000/ws").name("bot").build()?;
/// let mut events = client.events(); // before connecting: nothing is missed
/// client.connect().await?;
/// println!("connected as {:?}", client.id());
/// while let Some(event) = events.recv().await {
///     if let ClientEvent::Disconnected { code, reason, .. } = event {
///         eprintln!("lost the connection ({code}: {reason}); reconnecting");
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    ops: mpsc::UnboundedSender<Op>,
    state: watch::Receiver<State>,
    status: SharedStatus,
    connect_timeout: Option<Duration>,
    subscription_buffer: usize,
    message_buffer: usize,
}

/// Takes the expected body out of a reply.
macro_rules! expect {
    ($reply:expr, $kind:ident) => {
        match $reply {
            Reply::$kind(body) => Ok(body),
            other => Err(unexpected(other)),
        }
    };
}

fn unexpected(reply: Reply) -> Error {
    Error::transport(format!("the server answered with a {} reply", reply.kind()))
}

/// Converts a payload to the protocol's value.
fn payload(data: impl Serialize) -> Result<Value, Error> {
    to_value(&data).map_err(Error::invalid)
}

impl Client {
    /// Starts building a client for `url` (`ws://` or `wss://`).
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(url.into())
    }

    pub(crate) fn new(
        ops: mpsc::UnboundedSender<Op>,
        state: watch::Receiver<State>,
        status: SharedStatus,
        connect_timeout: Option<Duration>,
        subscription_buffer: usize,
        message_buffer: usize,
    ) -> Client {
        Client {
            ops,
            state,
            status,
            connect_timeout,
            subscription_buffer,
            message_buffer,
        }
    }

    /// Connects (if not already connecting) and resolves once connected.
    ///
    /// It fails if the server refuses the connection for good (`is_refused()`:
    /// an invalid token, anonymous connections refused, ...), if the client is
    /// closed, or after the builder's `connect_timeout`, 10 s by default
    /// (`is_timeout()`, naming the last attempt's error). After a timeout
    /// this handle's client keeps trying in the background (unlike
    /// [`ClientBuilder::connect`], which closes the client it could not
    /// connect); call `connect()` again to wait more, or `close()`.
    /// Attempts that fail in a way worth retrying are retried with backoff
    /// meanwhile, and each is reported on [`Client::events`].
    pub async fn connect(&self) -> Result<(), Error> {
        let _ = self.ops.send(Op::Connect);
        let connected = async {
            let mut state = self.state.clone();
            loop {
                let now = *state.borrow_and_update();
                match now {
                    State::Connected => return Ok(()),
                    State::Closed => return Err(self.closed_error()),
                    State::Disconnected | State::Connecting => {}
                }
                if state.changed().await.is_err() {
                    return Err(self.closed_error());
                }
            }
        };
        let Some(timeout) = self.connect_timeout else {
            return connected.await;
        };
        tokio::select! {
            result = connected => result,
            () = transport::sleep(timeout) => {
                Err(Error::connect_timeout(self.status.lock().last_error.clone()))
            }
        }
    }

    /// Why the client closed for good, if the server said so.
    fn closed_error(&self) -> Error {
        self.status
            .lock()
            .closed
            .clone()
            .unwrap_or_else(Error::closed)
    }

    async fn request(&self, command: impl Into<Command>) -> Result<Reply, Error> {
        let (reply, answer) = oneshot::channel();
        let op = Op::Request {
            command: command.into(),
            reply,
        };
        self.ops.send(op).map_err(|_| Error::closed())?;
        answer.await.map_err(|_| Error::closed())?
    }

    /// Subscribes to `channel`; resolves once the server confirmed it.
    ///
    /// One subscription per channel: while a [`Subscription`] to it is alive,
    /// another `subscribe` fails with `is_already_subscribed()` and the first
    /// goes on. Drop it to subscribe again.
    pub async fn subscribe(&self, channel: impl Into<String>) -> Result<Subscription, Error> {
        self.subscribe_with(channel, false).await
    }

    /// Subscribes, opting in to join and leave events.
    pub async fn subscribe_with(
        &self,
        channel: impl Into<String>,
        join_leave: bool,
    ) -> Result<Subscription, Error> {
        let channel = channel.into();
        let (events, receiver) = mpsc::channel(self.subscription_buffer);
        let (ready, confirmed) = oneshot::channel();
        let op = Op::Subscribe {
            channel: channel.clone(),
            join_leave,
            events,
            ready,
        };
        self.ops.send(op).map_err(|_| Error::closed())?;
        confirmed.await.map_err(|_| Error::closed())??;
        Ok(Subscription::new(channel, receiver, self.ops.clone()))
    }

    /// Publishes and waits for the server's ack. `data` is any serde value:
    /// a `Value`, a string, a number, your own `#[derive(Serialize)]` type.
    /// Bytes: a `Vec<u8>` serialises as a list of numbers, as serde has it;
    /// send `Value::Bytes(vec)`, or a `serde_bytes` field, for MessagePack
    /// `bin` (base64 text for JSON readers). While disconnected the publish
    /// waits in the offline queue.
    pub async fn publish(
        &self,
        channel: impl Into<String>,
        data: impl Serialize,
    ) -> Result<PublishReply, Error> {
        let publish = PublishRequest::new(channel, payload(data)?);
        expect!(self.request(publish).await?, Publish)
    }

    /// Publishes like [`Client::publish`], carrying the W3C `traceparent` of
    /// the publisher's span (`00-{trace id}-{span id}-{flags}`), so that each
    /// subscriber's [`Publication::traceparent`](crate::Publication::traceparent)
    /// continues the same trace. A value outside the W3C grammar is refused
    /// here, before anything is sent (`is_invalid()`, with the text of the
    /// server's 107).
    ///
    /// ```no_run
    /// # async fn run(client: sacred_client::Client) -> Result<(), sacred_client::Error> {
    /// let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    /// client.publish_traced("orders", "shipped", traceparent).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn publish_traced(
        &self,
        channel: impl Into<String>,
        data: impl Serialize,
        traceparent: impl Into<String>,
    ) -> Result<PublishReply, Error> {
        let publish = PublishRequest::new(channel, payload(data)?).with_traceparent(traceparent);
        expect!(self.request(publish).await?, Publish)
    }

    /// Sends `data` to one client by its id (a `message` it reads with
    /// [`Client::messages`]).
    pub async fn send(&self, to: impl Into<String>, data: impl Serialize) -> Result<(), Error> {
        let send = SendRequest::new(to, payload(data)?);
        expect!(self.request(send).await?, Send).map(drop)
    }

    /// Who is subscribed to `channel`.
    pub async fn presence(&self, channel: impl Into<String>) -> Result<Vec<Peer>, Error> {
        let presence = expect!(self.request(PresenceRequest::new(channel)).await?, Presence)?;
        Ok(presence.clients)
    }

    /// Reads a channel's history:
    /// `client.history(HistoryRequest::new("chat:lobby").limit(10).reverse(true))`.
    pub async fn history(&self, request: HistoryRequest) -> Result<HistoryReply, Error> {
        expect!(self.request(request).await?, History)
    }

    /// Searches a channel's stored history for words, best match first
    /// (where the server enables search for the channel's namespace):
    /// `client.search(SearchRequest::new("ops:deploys", "rollback node*").limit(20))`.
    pub async fn search(&self, request: SearchRequest) -> Result<SearchReply, Error> {
        expect!(self.request(request).await?, Search)
    }

    /// Calls an RPC handler of the host; decode the answer with
    /// [`Value::decode`] for a typed result.
    pub async fn rpc(
        &self,
        method: impl Into<String>,
        data: impl Serialize,
    ) -> Result<Value, Error> {
        let rpc = RpcRequest::new(method, payload(data)?);
        Ok(expect!(self.request(rpc).await?, Rpc)?.data)
    }

    /// The server's clock (ms since the Unix epoch), estimated from round trips.
    pub async fn server_time(&self) -> Option<u64> {
        let (reply, answer) = oneshot::channel();
        self.ops.send(Op::ServerTime(reply)).ok()?;
        answer.await.ok().flatten()
    }

    /// The id the server assigned to the current connection; `None` while
    /// not connected. It changes with every reconnect.
    pub fn id(&self) -> Option<String> {
        self.status.lock().id.clone()
    }

    /// The connection state now.
    pub fn state(&self) -> State {
        *self.state.borrow()
    }

    /// A watch of the connection state.
    pub fn state_changes(&self) -> watch::Receiver<State> {
        self.state.clone()
    }

    /// Connection events (connecting, connected, disconnected with code and
    /// reason, failed attempts with their cause) from now on. Ask before
    /// [`Client::connect`] to see the first connection.
    pub fn events(&self) -> Events {
        let (events, receiver) = mpsc::channel(EVENT_BUFFER);
        let _ = self.ops.send(Op::Listen(events));
        Events::new(receiver)
    }

    /// Direct messages to this client (`send` from another client, or from
    /// the host). Every reader gets every message; messages that arrive
    /// before the first reader wait for it (up to the builder's
    /// `message_buffer`).
    pub fn messages(&self) -> Messages {
        let (messages, receiver) = mpsc::channel(self.message_buffer);
        let _ = self.ops.send(Op::Inbox(messages));
        Messages::new(receiver)
    }

    /// Closes the connection for good; pending calls fail with `is_closed()`.
    pub async fn close(&self) {
        self.stop();
        let mut state = self.state.clone();
        let _ = state.wait_for(|s| *s == State::Closed).await.map(drop);
    }

    /// Asks the task to close, without waiting.
    pub(crate) fn stop(&self) {
        let _ = self.ops.send(Op::Close);
    }
}
