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
//! - `dispatch`: requests into the session, events out to handles, for every transport.
//! - `native`: the tokio transport that drives the session (not on wasm32).
//! - `error`: [`Error`], one opaque type with `is_*` questions.
//! - `session`: [`Session`], the state machine, and [`SessionConfig`].
//! - `event`: what it reports and asks: [`State`], [`Action`], [`Event`], [`RequestError`].
//! - `backoff`: [`Backoff`], the reconnect schedule.
//! - `clock`: the min-RTT server-clock estimate.

mod backoff;
// The handle is shared by every transport; until the browser transport lands
// it is built where a transport exists.
#[cfg(not(target_arch = "wasm32"))]
mod client;
mod clock;
#[cfg(not(target_arch = "wasm32"))]
mod dispatch;
#[cfg(not(target_arch = "wasm32"))]
mod error;
mod event;
#[cfg(not(target_arch = "wasm32"))]
mod native;
mod session;

pub use backoff::Backoff;
#[cfg(not(target_arch = "wasm32"))]
pub use client::{Client, ClientBuilder, ClientEvent, Subscription, SubscriptionEvent};
#[cfg(not(target_arch = "wasm32"))]
pub use error::Error;
pub use event::{Action, Event, RequestError, RequestId, State};
pub use session::{Session, SessionConfig};
