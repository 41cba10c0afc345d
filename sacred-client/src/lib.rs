//! Sacred's client for Rust applications, natively (tokio) and in the browser
//! (wasm32), and the core the Python and JavaScript packages are to share.
//!
//! [`Client`] is a cheap `Clone` handle over a task that owns the connection:
//! it reconnects with full-jitter backoff, resubscribes with recovery
//! positions so a subscriber misses and repeats nothing within the history
//! window, batches what is queued during a write, answers heartbeats, detects
//! a dead link, and keeps publishes made while disconnected in a bounded
//! offline queue.
//!
//! ```no_run
//! use sacred_client::{Client, SubscriptionEvent};
//!
//! # async fn run() -> Result<(), sacred_client::Error> {
//! let client = Client::builder("ws://127.0.0.1:8000/ws")
//!     .name("support-bot")
//!     .kind("agent")
//!     .connect()
//!     .await?;
//! let mut lobby = client.subscribe("lobby").await?;
//! client.publish("lobby", "hello").await?; // resolves with the server's ack
//! println!("I am {:?}", client.id());
//! while let Some(event) = lobby.recv().await {
//!     match event {
//!         SubscriptionEvent::Publication(publication) => println!("{:?}", publication.data),
//!         SubscriptionEvent::Resubscribed { recovered: false } => { /* reload: a gap was lost */ }
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Streams: what happens when a reader falls behind
//!
//! Every stream is bounded, so an application that stops reading cannot make
//! the client grow without limit, and none drops anything silently:
//!
//! - A [`Subscription`] to a channel with history that falls behind is paused:
//!   the server stops sending it, and once the application has read half of
//!   what waits, the client resubscribes from the last publication it
//!   delivered. The publications in between arrive, in order, as if nothing
//!   happened; if they left the history window the stream says
//!   [`SubscriptionEvent::Resubscribed`] with `recovered: false` (reload).
//! - Anything else that does not fit (publications of a channel without
//!   history, join and leave events, connection events, direct messages) is
//!   counted, and the count arrives as a `Lagged` event ahead of the next
//!   item, so the application knows how much it missed.
//! - Direct messages that arrive before anyone called [`Client::messages`](crate::Client::messages)
//!   wait for the first reader (as many as the buffer holds).
//!
//! # Trace context
//!
//! [`Client::publish_traced`] carries the W3C `traceparent` of the
//! publisher's span (`00-{trace id}-{span id}-{flags}`, lowercase hex) with
//! the publish, and every subscriber reads it back as
//! [`Publication::traceparent`] (history and recovery included): same trace
//! id and flags, and the parent id of the server's span when the server
//! traces. A subscriber continues the trace by starting its span for the
//! publication as a child of that value. A malformed `traceparent` is refused
//! before it is sent (`is_invalid()`, the server's 107 text).
//!
//! ```no_run
//! # async fn run(client: sacred_client::Client) -> Result<(), sacred_client::Error> {
//! use sacred_client::SubscriptionEvent;
//!
//! let mut orders = client.subscribe("orders").await?;
//! let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
//! client.publish_traced("orders", "shipped", traceparent).await?;
//! if let Some(SubscriptionEvent::Publication(publication)) = orders.recv().await {
//!     assert_eq!(publication.traceparent.as_deref().map(|t| &t[3..35]), Some(&traceparent[3..35]));
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Platforms
//!
//! Natively, `build` (or `connect`) spawns the connection task on the current tokio
//! runtime and speaks tokio-tungstenite with rustls (the ring provider, webpki
//! roots, [`ClientBuilder::add_root_certificate`] for private CAs). On
//! `wasm32-unknown-unknown` the same API drives the page's `WebSocket` on the
//! page's event loop, with the browser's TLS; futures passed in (the token
//! provider) need not be `Send` there ([`SendOutsideWasm`]).
//!
//! # The session core
//!
//! Underneath is [`Session`], the protocol state machine with no I/O (like
//! `quinn-proto`). It consumes what happened (socket opened, frames, close,
//! time, user commands) and produces what to do (open or close the socket,
//! frames to send, when to wake it, events for the application), so reconnect,
//! recovery, batching and the offline queue are written and tested once, in
//! virtual time, for every transport. Time is a `Duration` since any origin
//! the transport picks.
//!
//! ```
//! use std::time::Duration;
//! use sacred_client::{Action, Session, SessionConfig, State};
//!
//! let mut session = Session::new(SessionConfig::default());
//! let now = Duration::ZERO;
//! session.connect(now);
//! assert_eq!(session.poll_action(), Some(Action::Open { url: None }));
//! session.handle_open(now);
//! let frame = session.poll_transmit().unwrap(); // encoded, as it goes on the wire
//! assert!(frame.starts_with(br#"{"id":1,"connect":"#));
//! assert_eq!(session.state(), State::Connecting);
//! ```
//!
//! # Layout
//!
//! - `client`: [`Client`], the handle.
//! - `builder`: [`ClientBuilder`], every setting, checked by `build()`.
//! - `stream`: what the client hands out to read ([`Subscription`],
//!   [`Events`], [`Messages`]), its events, and the delivery policy when a
//!   reader falls behind.
//! - `op`: the requests handles send to the connection task.
//! - `driver`: the connection task, for every transport, and the small
//!   `Transport` trait a transport implements.
//! - `dispatch`: requests into the session, events out to handles, for every transport.
//! - `native`: tokio-tungstenite and rustls (not on wasm32).
//! - `web`: the browser's `WebSocket`, timers and `performance.now()` (wasm32 only).
//! - `platform`: which futures must be `Send` ([`SendOutsideWasm`]).
//! - `error`: [`Error`], one opaque type with `is_*` questions.
//! - `session`: [`Session`], the state machine, [`SessionConfig`], and the
//!   outgoing queue that encodes and batches within the server's limits.
//! - `event`: what it reports and asks: [`State`], [`Action`], [`Event`], [`RequestError`].
//! - `backoff`: [`Backoff`], the reconnect schedule.
//! - `clock`: the min-RTT server-clock estimate.
//!
//! # Logging
//!
//! The client logs through `tracing` (targets under `sacred_client`): failed
//! attempts and disconnects at `warn`/`info`, the rest at `debug`. Nothing is
//! printed unless the application installs a subscriber
//! (`RUST_LOG=sacred_client=debug` with `tracing-subscriber`'s env filter).

mod backoff;
mod builder;
mod client;
mod clock;
mod dispatch;
mod driver;
mod error;
mod event;
mod op;
mod platform;
mod session;
mod stream;

// The one `cfg` line between targets: which transport drives the session.
#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(not(target_arch = "wasm32"))]
use native as transport;
#[cfg(target_arch = "wasm32")]
mod web;
#[cfg(target_arch = "wasm32")]
use web as transport;

pub use backoff::Backoff;
pub use builder::ClientBuilder;
pub use client::Client;
pub use error::{Category, Error, Unauthorized};
pub use event::{Action, Event, RequestError, RequestId, State};
pub use platform::{SendOutsideWasm, SyncOutsideWasm};
pub use session::{Session, SessionConfig};
pub use stream::{ClientEvent, Events, MessageEvent, Messages, Subscription, SubscriptionEvent};

/// The protocol crate, for everything the client's API does not re-export.
pub use sacred_proto as proto;
/// The protocol types the client's API takes and returns, so that one
/// dependency is enough.
pub use sacred_proto::{
    ClientInfo, Codec, DirectMessage, DisconnectCode, ErrorCode, HistoryReply, HistoryRequest,
    Limits, Peer, Publication, PublishReply, ReplyError, SearchReply, SearchRequest,
    StreamPosition, Value, ValueError, from_value, to_value,
};
