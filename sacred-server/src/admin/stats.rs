//! The last five minutes of this node in one-second samples (connections,
//! publications in and deliveries out per second), kept server-side so a
//! reloaded dashboard keeps its chart.

use std::collections::VecDeque;
use std::sync::{Mutex, Weak};
use std::time::Duration;

use serde::Serialize;

use crate::hub::{Hub, Totals};

/// Samples kept: five minutes of one per second.
pub(crate) const SAMPLES: usize = 300;

/// One second of this node.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Sample {
    /// When it was taken, milliseconds since the Unix epoch.
    pub(crate) at_ms: u64,
    pub(crate) connections: usize,
    /// Publications accepted in the second before.
    pub(crate) published: u64,
    /// Deliveries queued in the second before.
    pub(crate) delivered: u64,
}

/// The ring of samples and the totals the last one was taken from.
#[derive(Debug, Default)]
pub(crate) struct Samples {
    ring: Mutex<(VecDeque<Sample>, Option<Totals>)>,
}

impl Samples {
    /// Takes a sample from `hub` now: the differences from the last totals.
    pub(crate) fn take(&self, hub: &Hub) {
        let totals = hub.totals();
        let mut ring = self.ring.lock().expect("samples lock");
        let (samples, last) = &mut *ring;
        let before = last.unwrap_or(totals);
        *last = Some(totals);
        if samples.len() == SAMPLES {
            samples.pop_front();
        }
        samples.push_back(Sample {
            at_ms: crate::time::now_ms(),
            connections: hub.connections(),
            published: totals.publications.saturating_sub(before.publications),
            delivered: totals.deliveries.saturating_sub(before.deliveries),
        });
    }

    /// The samples, oldest first.
    pub(crate) fn list(&self) -> Vec<Sample> {
        let ring = self.ring.lock().expect("samples lock");
        ring.0.iter().copied().collect()
    }
}

/// Samples `hub` into `samples` every second until `samples` is dropped
/// (with the admin routes that own it).
pub(crate) async fn sample_every_second(samples: Weak<Samples>, hub: Hub) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(samples) = samples.upgrade() else {
            return;
        };
        samples.take(&hub);
    }
}
