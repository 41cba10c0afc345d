//! Sacred's client for Rust applications, and the core the Python and browser
//! packages share. This release holds the transport-free session core: the
//! protocol state machine that transports drive (sans I/O, like `quinn-proto`).
//!
//! The core consumes what happened (socket opened, frames, close, time, user
//! commands) and produces what to do (open or close the socket, frames to
//! send, when to wake it, events for the application). Reconnect with
//! full-jitter backoff, resubscription with recovery positions in one frame,
//! duplicate removal, heartbeat answers and dead-link detection, the offline
//! queue, batching and the server-clock estimate live here once. Time is a
//! `Duration` since any origin the transport picks, so it runs on wasm32 too.
//!
//! # Example
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
