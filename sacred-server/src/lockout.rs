//! Lockout: an address that fails authentication again and again (a wrong
//! token at `connect` or `refresh`) is refused for a while, longer each
//! time, whatever it sends meanwhile: guessing keys costs the guesser time.
//!
//! The state is bounded like the connection limiter's: addresses whose lock
//! ended and whose failures are old are forgotten, and past
//! [`MAX_TRACKED`] addresses the oldest state goes (logged).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use tokio::time::Instant;

use crate::options::HubOptions;

/// Addresses tracked at most (see the module docs).
const MAX_TRACKED: usize = 100_000;

/// Failures recorded between two sweeps of forgotten addresses.
const SWEEP_EVERY: u64 = 1024;

/// The lockout policy and the state of the addresses that failed.
#[derive(Debug)]
pub(crate) struct Lockout {
    /// Failures in a row that lock an address; 0: never.
    after: u32,
    /// The first lock's length; each further one doubles it up to `max`.
    first: Duration,
    max: Duration,
    addresses: DashMap<IpAddr, Strikes>,
    failures: AtomicU64,
    /// Locks imposed since start (a counter for operators).
    locks: AtomicU64,
}

#[derive(Clone, Copy, Debug)]
struct Strikes {
    /// Failures since the last success or lock.
    failed: u32,
    /// Locks so far: the next one lasts `first * 2^locks`.
    locks: u32,
    until: Option<Instant>,
    last: Instant,
}

/// What a failure led to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Failed {
    /// Counted; the address may go on trying.
    Counted,
    /// The address is now locked for this long.
    Locked(Duration),
}

impl Lockout {
    pub(crate) fn new(options: &HubOptions) -> Lockout {
        Lockout {
            after: options.lockout_failures,
            first: options.lockout,
            max: options.lockout_max.max(options.lockout),
            addresses: DashMap::new(),
            failures: AtomicU64::new(0),
            locks: AtomicU64::new(0),
        }
    }

    /// How long `ip` stays locked; `None` if it may authenticate.
    pub(crate) fn locked(&self, ip: IpAddr) -> Option<Duration> {
        if self.after == 0 {
            return None;
        }
        let until = self.addresses.get(&ip)?.until?;
        let now = Instant::now();
        (until > now).then(|| until - now)
    }

    /// Records a failed authentication from `ip`.
    pub(crate) fn failed(&self, ip: IpAddr) -> Failed {
        if self.after == 0 {
            return Failed::Counted;
        }
        self.sweep();
        let now = Instant::now();
        let mut entry = self.addresses.entry(ip).or_insert(Strikes {
            failed: 0,
            locks: 0,
            until: None,
            last: now,
        });
        let strikes = entry.value_mut();
        strikes.last = now;
        strikes.failed += 1;
        if strikes.failed < self.after {
            return Failed::Counted;
        }
        let length = self
            .first
            .saturating_mul(1u32 << strikes.locks.min(16))
            .min(self.max);
        strikes.failed = 0;
        strikes.locks += 1;
        strikes.until = Some(now + length);
        let locks = strikes.locks;
        drop(entry);
        self.locks.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            %ip,
            lock = locks,
            secs = length.as_secs(),
            "address locked out after {} failed authentications",
            self.after
        );
        Failed::Locked(length)
    }

    /// Records a successful authentication from `ip`: its failures in a
    /// row start again from zero (its past locks still lengthen the next).
    pub(crate) fn succeeded(&self, ip: IpAddr) {
        if let Some(mut strikes) = self.addresses.get_mut(&ip) {
            strikes.failed = 0;
        }
    }

    /// Locks imposed since the hub started.
    pub(crate) fn locks(&self) -> u64 {
        self.locks.load(Ordering::Relaxed)
    }

    /// Forgets addresses that are not locked and have not failed for the
    /// longest lock: a later failure starts them from the first lock again.
    fn sweep(&self) {
        let n = self.failures.fetch_add(1, Ordering::Relaxed);
        if !n.is_multiple_of(SWEEP_EVERY) && self.addresses.len() < MAX_TRACKED {
            return;
        }
        let now = Instant::now();
        let quiet = self.max;
        self.addresses.retain(|_, strikes| {
            strikes.until.is_some_and(|until| until > now) || now - strikes.last < quiet
        });
        if self.addresses.len() >= MAX_TRACKED {
            tracing::warn!(
                tracked = self.addresses.len(),
                "lockout table full of recently failing addresses: keeping only the locked ones"
            );
            self.addresses
                .retain(|_, strikes| strikes.until.is_some_and(|until| until > now));
        }
        self.addresses.shrink_to_fit();
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.addresses.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lockout(after: u32) -> Lockout {
        let options = HubOptions {
            lockout_failures: after,
            lockout: Duration::from_secs(60),
            lockout_max: Duration::from_secs(600),
            ..HubOptions::default()
        };
        Lockout::new(&options)
    }

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[tokio::test(start_paused = true)]
    async fn failures_in_a_row_lock_for_longer_each_time() {
        let l = lockout(3);
        assert_eq!(l.failed(ip(1)), Failed::Counted);
        l.succeeded(ip(1));
        assert_eq!(l.failed(ip(1)), Failed::Counted);
        assert_eq!(l.failed(ip(1)), Failed::Counted);
        assert_eq!(l.locked(ip(1)), None, "a success reset the count");
        assert_eq!(l.failed(ip(1)), Failed::Locked(Duration::from_secs(60)));
        assert_eq!(l.locked(ip(1)), Some(Duration::from_secs(60)));
        assert_eq!(l.locked(ip(2)), None, "per address");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(l.locked(ip(1)), None);
        for _ in 0..2 {
            assert_eq!(l.failed(ip(1)), Failed::Counted);
        }
        assert_eq!(l.failed(ip(1)), Failed::Locked(Duration::from_secs(120)));
        for _ in 0..20 {
            tokio::time::advance(Duration::from_secs(601)).await;
            for _ in 0..3 {
                l.failed(ip(1));
            }
        }
        assert_eq!(
            l.locked(ip(1)),
            Some(Duration::from_secs(600)),
            "capped at the longest lock"
        );
        assert_eq!(l.locks(), 22);
    }

    #[tokio::test(start_paused = true)]
    async fn off_when_no_failure_count_is_set() {
        let l = lockout(0);
        for _ in 0..100 {
            assert_eq!(l.failed(ip(1)), Failed::Counted);
        }
        assert_eq!(l.locked(ip(1)), None);
        assert_eq!(l.tracked(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_spray_of_failing_addresses_stays_bounded() {
        let l = lockout(5);
        for n in 0..(MAX_TRACKED as u32 + 5_000) {
            l.failed(ip(n));
        }
        assert!(l.tracked() <= MAX_TRACKED, "{} tracked", l.tracked());
        tokio::time::advance(Duration::from_secs(601)).await;
        l.failed(ip(0));
        // The sweep runs every SWEEP_EVERY failures; run up to the next one.
        for n in 0..SWEEP_EVERY as u32 {
            l.failed(ip(n));
        }
        assert!(
            l.tracked() <= SWEEP_EVERY as usize + 1,
            "quiet addresses are forgotten: {} tracked",
            l.tracked()
        );
    }
}
