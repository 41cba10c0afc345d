//! The reconnect schedule: exponential backoff with full jitter that stays in
//! force at the cap (docs/protocol.md, section 13):
//! `delay(n) = min(max, min + uniform(0, min(max, min * 2^n)))`.
//!
//! Written out rather than taken from `backon`: backon's jitter adds
//! `uniform(0, current)` on top of the exponential delay (so attempt 1 waits
//! 2-4 x min, not 1-3 x min, and the cap can be exceeded), and its value is a
//! retry executor that sleeps, which a transport-free core must not do.

use std::time::Duration;

use rand::Rng;

/// Bounds of the reconnect delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backoff {
    /// The shortest delay, and the base of the exponent (default 500 ms).
    pub min: Duration,
    /// The longest delay (default 20 s).
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            min: Duration::from_millis(500),
            max: Duration::from_secs(20),
        }
    }
}

impl Backoff {
    /// Bounds `min` and `max` (`max` is raised to `min` if smaller).
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
        }
    }

    /// The delay before attempt `attempt` (0 for the first retry).
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let min = self.min.as_millis() as u64;
        let max = self.max.as_millis() as u64;
        // min * 2^n, computed wide enough not to overflow for any attempt.
        let spread = (u128::from(min) << attempt.min(64)).min(u128::from(max)) as u64;
        let jitter = if spread == 0 {
            0
        } else {
            rng.random_range(0..=spread)
        };
        Duration::from_millis(min.saturating_add(jitter).min(max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn delays_follow_the_formula_and_stay_jittered_at_the_cap() {
        let backoff = Backoff::default();
        let mut rng = SmallRng::seed_from_u64(7);
        for attempt in 0..40 {
            let spread = (500u64 << attempt.min(20)).min(20_000);
            let samples: Vec<u64> = (0..200)
                .map(|_| backoff.delay(attempt, &mut rng).as_millis() as u64)
                .collect();
            let (lo, hi) = (samples.iter().min().unwrap(), samples.iter().max().unwrap());
            assert!(
                *lo >= 500 && *hi <= (500 + spread).min(20_000),
                "attempt {attempt}: {lo}..{hi}"
            );
            // Jitter stays in force: delays differ, even at the cap.
            assert!(
                hi - lo > spread.min(19_500) / 4,
                "attempt {attempt}: {lo}..{hi} is not spread"
            );
        }
    }

    #[test]
    fn first_retry_waits_between_min_and_twice_min() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let mut rng = SmallRng::seed_from_u64(1);
        for _ in 0..100 {
            let delay = backoff.delay(0, &mut rng);
            assert!((Duration::from_millis(100)..=Duration::from_millis(200)).contains(&delay));
        }
    }
}
