//! What `/health` reports and `/ready` decides from: the hub's uptime and
//! load, and the state of its backends (the broker, the history store)
//! with the last error each gave.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;

use crate::time::now_ms;

/// The health of a hub, as `/health` serves it in JSON ([`crate::Hub::health`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Health {
    /// `ok`; `degraded` while a backend is down; `draining` once shutdown began.
    pub status: &'static str,
    /// The server's version.
    pub version: &'static str,
    /// Seconds since the hub was built.
    pub uptime_secs: u64,
    /// Clients connected to this node.
    pub connections: usize,
    /// Channels with subscribers on this node.
    pub channels: usize,
    /// The broker (publications across nodes; on one node, in process).
    pub broker: Backend,
    /// The history store, where this node keeps one (none when the broker
    /// keeps its own streams).
    pub store: Option<Backend>,
}

/// One backend's state in [`Health`].
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Backend {
    /// Whether it serves now.
    pub up: bool,
    /// The last error it gave, if any since the hub was built.
    pub last_error: Option<LastError>,
}

/// A backend's last error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LastError {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What it said.
    pub message: String,
}

/// What the hub tracks for its health report.
#[derive(Debug)]
pub(crate) struct Tracker {
    pub(crate) started: Instant,
    pub(crate) broker: BackendState,
    pub(crate) store: BackendState,
}

impl Tracker {
    pub(crate) fn new() -> Tracker {
        Tracker {
            started: Instant::now(),
            broker: BackendState::default(),
            store: BackendState::default(),
        }
    }
}

/// A backend is down from its failure until an operation succeeds, or
/// until it has not failed for this long (nothing may try it meanwhile:
/// a node out of its balancer gets no publishes).
const DOWN_FOR_MS: u64 = 10_000;

/// Whether a backend's last operation failed, and its last error.
#[derive(Debug, Default)]
pub(crate) struct BackendState {
    /// When it last failed (milliseconds since the epoch); 0 once it succeeded.
    failed_at: AtomicU64,
    last_error: Mutex<Option<LastError>>,
}

impl BackendState {
    /// An operation succeeded: the backend is up. (One load on the hot path.)
    pub(crate) fn succeeded(&self) {
        if self.failed_at.load(Ordering::Relaxed) != 0 {
            self.failed_at.store(0, Ordering::Relaxed);
        }
    }

    /// An operation failed with `err`.
    pub(crate) fn failed(&self, err: &dyn std::fmt::Display) {
        let at_ms = now_ms().max(1);
        self.failed_at.store(at_ms, Ordering::Relaxed);
        *self
            .last_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(LastError {
            at_ms,
            message: err.to_string(),
        });
    }

    /// Whether it failed and has not recovered.
    pub(crate) fn is_failing(&self) -> bool {
        let at = self.failed_at.load(Ordering::Relaxed);
        at != 0 && now_ms().saturating_sub(at) < DOWN_FOR_MS
    }

    /// The backend's state: whether it is `up`, and its last error.
    pub(crate) fn report(&self, up: bool) -> Backend {
        Backend {
            up,
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
        }
    }
}
