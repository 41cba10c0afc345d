//! Sacred's client for Rust applications, natively (tokio) and in the browser
//! (wasm32), and the core the Python package shares.
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
//! # Platforms
//!
//! Natively, `connect` spawns the connection task on the current tokio
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
//! let frame = session.poll_transmit().unwrap();
//! assert!(matches!(frame[0].command, sacred_proto::Command::Connect(_)));
//! assert_eq!(session.state(), State::Connecting);
//! ```
//!
//! # Layout
//!
//! - `client`: [`Client`] (the handle), [`ClientBuilder`], [`Subscription`].
//! - `driver`: the connection task, for every transport, and the small
//!   `Transport` trait a transport implements.
//! - `dispatch`: requests into the session, events out to handles, for every transport.
//! - `native`: tokio-tungstenite and rustls (not on wasm32).
//! - `web`: the browser's `WebSocket`, timers and `performance.now()` (wasm32 only).
//! - `platform`: which futures must be `Send` ([`SendOutsideWasm`]).
//! - `error`: [`Error`], one opaque type with `is_*` questions.
//! - `session`: [`Session`], the state machine, and [`SessionConfig`].
//! - `event`: what it reports and asks: [`State`], [`Action`], [`Event`], [`RequestError`].
//! - `backoff`: [`Backoff`], the reconnect schedule.
//! - `clock`: the min-RTT server-clock estimate.

mod backoff;
mod client;
mod clock;
mod dispatch;
mod driver;
mod error;
mod event;
mod platform;
mod session;

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
pub use client::{Client, ClientBuilder, ClientEvent, Subscription, SubscriptionEvent};
pub use error::Error;
pub use event::{Action, Event, RequestError, RequestId, State};
pub use platform::{SendOutsideWasm, SyncOutsideWasm};
pub use session::{Session, SessionConfig};
