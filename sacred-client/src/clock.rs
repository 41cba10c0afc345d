//! The server-clock estimate: a min-RTT filter over round-trip samples
//! (pong and connect replies carry server time).

use std::time::Duration;

/// How many recent samples the filter considers.
const WINDOW: usize = 8;

/// Estimates server time from round trips: for each sample the server's time
/// is assumed to be read at the midpoint of the round trip, and the sample
/// with the smallest round trip among recent ones is trusted most.
#[derive(Clone, Debug, Default)]
pub(crate) struct Clock {
    /// Recent samples: (round trip, local time at the midpoint, server time in ms).
    samples: Vec<(Duration, Duration, u64)>,
}

impl Clock {
    /// A command sent at `sent` was answered at `received` with server time `server_ms`.
    pub(crate) fn sample(&mut self, sent: Duration, received: Duration, server_ms: u64) {
        let rtt = received.saturating_sub(sent);
        let midpoint = sent + rtt / 2;
        if self.samples.len() == WINDOW {
            self.samples.remove(0);
        }
        self.samples.push((rtt, midpoint, server_ms));
    }

    /// Server time (ms since the Unix epoch) at local time `now`, if known.
    pub(crate) fn server_time(&self, now: Duration) -> Option<u64> {
        let (_, midpoint, server_ms) = self.samples.iter().min_by_key(|(rtt, _, _)| *rtt)?;
        let elapsed = now.saturating_sub(*midpoint).as_millis() as u64;
        let before = midpoint.saturating_sub(now).as_millis() as u64;
        Some(server_ms.saturating_add(elapsed).saturating_sub(before))
    }

    /// The local time at which the server's clock reads `server_ms`, if known.
    pub(crate) fn local_time(&self, server_ms: u64, now: Duration) -> Option<Duration> {
        let server_now = self.server_time(now)?;
        Some(if server_ms >= server_now {
            now + Duration::from_millis(server_ms - server_now)
        } else {
            now.saturating_sub(Duration::from_millis(server_now - server_ms))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_fastest_round_trip_wins() {
        let mut clock = Clock::default();
        assert_eq!(clock.server_time(MS * 10), None);
        // Server clock = local + 1_000_000 ms. A slow sample whose reply sat in
        // a queue (asymmetric) skews the midpoint; the fast one does not.
        clock.sample(MS * 100, MS * 400, 1_000_000 + 120);
        clock.sample(MS * 500, MS * 510, 1_000_000 + 505);
        assert_eq!(clock.server_time(MS * 1000), Some(1_001_000));
        assert_eq!(clock.local_time(1_002_000, MS * 1000), Some(MS * 2000));
    }

    #[test]
    fn old_samples_leave_the_window() {
        let mut clock = Clock::default();
        clock.sample(Duration::ZERO, MS * 2, 5_001); // a great sample, but old
        for i in 1..=WINDOW as u64 {
            let i = i as u32;
            clock.sample(
                MS * (i * 100),
                MS * (i * 100 + 20),
                5_000 + u64::from(i) * 100 + 10 + 50,
            );
        }
        // Only the later samples (offset +50 ms) remain.
        assert_eq!(clock.server_time(MS * 2000), Some(7_050));
    }
}
