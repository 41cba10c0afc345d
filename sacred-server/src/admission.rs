//! Admission: what is checked before a WebSocket upgrade, so a refused
//! client costs an HTTP response, not a connection: the client's real
//! address (behind trusted proxies), its `Origin`, how often its address
//! opens connections, and whether that address is locked out for failing to
//! authenticate ([`Lockout`]).

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

use crate::lockout::Lockout;
use crate::options::HubOptions;

/// Addresses the connection limiter tracks at most; past it, addresses not
/// seen for a minute are forgotten, and if that is not enough, all are
/// (logged): a spray of addresses cannot exhaust memory.
const MAX_TRACKED: usize = 100_000;

/// Checks between two sweeps of the limiter's idle addresses.
const SWEEP_EVERY: u64 = 4096;

/// The checks made before an upgrade (see the module docs).
pub(crate) struct Admission {
    trusted_proxies: Vec<IpNet>,
    origins: Origins,
    /// The per-address limiter and its quota (to start afresh when full).
    per_ip: Option<(RwLock<DefaultKeyedRateLimiter<IpAddr>>, Quota)>,
    checks: AtomicU64,
    /// Addresses that failed to authenticate too often.
    pub(crate) lockout: Lockout,
    /// The clock every connection's command bucket reads: making one per
    /// connection (quanta calibrates it) cost a third of the connect rate.
    pub(crate) clock: DefaultClock,
}

/// Which `Origin` headers may open a WebSocket.
enum Origins {
    /// The request's own host (the default): a page served by the same host
    /// and port. Requests without `Origin` (not from a browser) pass.
    SameHost,
    /// Any origin (`"*"` configured).
    Any,
    /// These origins exactly (`scheme://host[:port]`, any case), and
    /// requests without `Origin`.
    List(Vec<String>),
}

/// Why an upgrade was refused, as the HTTP response says it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The address opened too many connections; retry after this long.
    TooMany(Duration),
    /// A browser page of an origin that may not connect.
    Origin(String),
    /// The address is locked out for failed authentications this long.
    LockedOut(Duration),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::TooMany(wait) => {
                too_many(wait, "too many connections from this address; retry later")
            }
            Refused::LockedOut(wait) => too_many(
                wait,
                "this address failed to authenticate too often; retry later",
            ),
            Refused::Origin(origin) => (
                StatusCode::FORBIDDEN,
                format!("origin {origin} may not connect"),
            )
                .into_response(),
        }
    }
}

/// HTTP 429 with `Retry-After` (whole seconds, at least 1).
fn too_many(wait: Duration, text: &'static str) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, secs.to_string())],
        text,
    )
        .into_response()
}

impl Admission {
    pub(crate) fn new(options: &HubOptions) -> Admission {
        let origins = if options.allowed_origins.iter().any(|o| o == "*") {
            Origins::Any
        } else if options.allowed_origins.is_empty() {
            Origins::SameHost
        } else {
            Origins::List(
                options
                    .allowed_origins
                    .iter()
                    .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                    .collect(),
            )
        };
        let per_ip = NonZeroU32::new(options.connections_per_minute).map(|rate| {
            let burst = NonZeroU32::new(options.connection_burst).unwrap_or(rate);
            let quota = Quota::per_minute(rate).allow_burst(burst);
            (RwLock::new(RateLimiter::dashmap(quota)), quota)
        });
        Admission {
            trusted_proxies: options.trusted_proxies.clone(),
            origins,
            per_ip,
            checks: AtomicU64::new(0),
            lockout: Lockout::new(options),
            clock: DefaultClock::default(),
        }
    }

    /// Checks an upgrade request from `peer`; the client's address (behind
    /// trusted proxies, the one they name) when it may go on.
    pub(crate) fn check(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Result<Option<IpAddr>, Refused> {
        self.check_origin(headers)?;
        let client = peer.map(|peer| self.client_ip(headers, peer.ip()));
        if let Some(wait) = client.and_then(|ip| self.lockout.locked(ip)) {
            tracing::debug!(ip = ?client, ?wait, "connection refused: address locked out");
            return Err(Refused::LockedOut(wait));
        }
        if let (Some((limiter, quota)), Some(ip)) = (&self.per_ip, client) {
            self.sweep(limiter, *quota);
            let verdict = limiter
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .check_key(&ip);
            if let Err(not_until) = verdict {
                let wait = not_until.wait_time_from(self.clock.now());
                tracing::debug!(%ip, ?wait, "connection refused: too many from this address");
                return Err(Refused::TooMany(wait));
            }
        }
        Ok(client)
    }

    /// Whether the request's `Origin`, if it sent one, is allowed: the
    /// rule the WebSocket upgrade follows (`--allowed-origin`, else the
    /// host the request was sent to).
    pub(crate) fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        self.check_origin(headers).is_ok()
    }

    fn check_origin(&self, headers: &HeaderMap) -> Result<(), Refused> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().unwrap_or("").to_ascii_lowercase();
        let allowed = match &self.origins {
            Origins::Any => true,
            Origins::List(list) => list.contains(&origin),
            Origins::SameHost => {
                let host = headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_ascii_lowercase);
                let origin_host = origin.split_once("://").map(|(_, rest)| rest);
                host.is_some() && origin_host == host.as_deref()
            }
        };
        if allowed {
            Ok(())
        } else {
            tracing::debug!(origin, "connection refused: origin not allowed");
            Err(Refused::Origin(origin))
        }
    }

    /// The client's address: `peer` unless it is a trusted proxy, then the
    /// nearest address the proxies name (`X-Forwarded-For`, else
    /// `Forwarded: for=`) that is not itself a trusted proxy.
    pub(crate) fn client_ip(&self, headers: &HeaderMap, peer: IpAddr) -> IpAddr {
        if !self.trusted(peer) {
            return peer;
        }
        let mut hops: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|hop| parse_hop(hop.trim()))
            .collect();
        if hops.is_empty() {
            hops = headers
                .get_all(header::FORWARDED)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .filter_map(|element| {
                    element.split(';').find_map(|pair| {
                        let (key, value) = pair.trim().split_once('=')?;
                        key.eq_ignore_ascii_case("for")
                            .then(|| parse_hop(value.trim_matches('"')))
                            .flatten()
                    })
                })
                .collect();
        }
        // From the nearest hop outwards: the first the proxies did not add.
        hops.into_iter()
            .rev()
            .find(|hop| !self.trusted(*hop))
            .unwrap_or(peer)
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// Keeps the limiter's state bounded (see [`MAX_TRACKED`]).
    fn sweep(&self, limiter: &RwLock<DefaultKeyedRateLimiter<IpAddr>>, quota: Quota) {
        let n = self.checks.fetch_add(1, Ordering::Relaxed);
        {
            let current = limiter.read().unwrap_or_else(|p| p.into_inner());
            if !n.is_multiple_of(SWEEP_EVERY) && current.len() < MAX_TRACKED {
                return;
            }
            current.retain_recent();
            if current.len() < MAX_TRACKED {
                current.shrink_to_fit();
                return;
            }
        }
        let mut full = limiter.write().unwrap_or_else(|p| p.into_inner());
        if full.len() >= MAX_TRACKED {
            tracing::warn!(
                tracked = full.len(),
                "connection limiter full of recent addresses: forgetting them all"
            );
            *full = RateLimiter::dashmap(quota);
        }
    }
}

/// An address as a proxy writes it: `1.2.3.4`, `1.2.3.4:5678`,
/// `[2001:db8::1]:443`, `2001:db8::1`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    hop.parse::<SocketAddr>()
        .ok()
        .map(|addr| addr.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(configure: impl FnOnce(&mut HubOptions)) -> Admission {
        let mut options = HubOptions::default();
        configure(&mut options);
        Admission::new(&options)
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_client_address_is_taken_from_trusted_proxies_only() {
        let a = admission(|o| o.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()]);
        let forwarded = headers(&[("x-forwarded-for", "203.0.113.7, 10.0.0.2")]);
        assert_eq!(a.client_ip(&forwarded, ip("10.0.0.1")), ip("203.0.113.7"));
        assert_eq!(
            a.client_ip(&forwarded, ip("198.51.100.1")),
            ip("198.51.100.1"),
            "an untrusted peer's header is ignored"
        );
        let spoofed = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.7")]);
        assert_eq!(
            a.client_ip(&spoofed, ip("10.0.0.1")),
            ip("203.0.113.7"),
            "what the client wrote before the first trusted hop is not believed"
        );
        let standard = headers(&[("forwarded", "for=\"[2001:db8::1]:443\";proto=https")]);
        assert_eq!(a.client_ip(&standard, ip("10.0.0.1")), ip("2001:db8::1"));
        assert_eq!(
            a.client_ip(&HeaderMap::new(), ip("10.0.0.1")),
            ip("10.0.0.1")
        );
        let mapped = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            a.client_ip(&forwarded, mapped),
            ip("203.0.113.7"),
            "v4-mapped peers"
        );
    }

    #[test]
    fn origins_are_the_same_host_by_default_or_as_configured() {
        let same = admission(|_| {});
        let page = |origin: &str| headers(&[("host", "chat.example:8000"), ("origin", origin)]);
        assert!(same.check_origin(&page("http://chat.example:8000")).is_ok());
        assert!(same.check_origin(&page("HTTP://CHAT.example:8000")).is_ok());
        assert_eq!(
            same.check_origin(&page("https://evil.example")),
            Err(Refused::Origin("https://evil.example".into()))
        );
        assert!(
            same.check_origin(&headers(&[("host", "x")])).is_ok(),
            "not a browser"
        );
        let listed = admission(|o| o.allowed_origins = vec!["https://app.example/".into()]);
        assert!(listed.check_origin(&page("https://app.example")).is_ok());
        assert!(
            listed
                .check_origin(&page("http://chat.example:8000"))
                .is_err()
        );
        let any = admission(|o| o.allowed_origins = vec!["*".into()]);
        assert!(any.check_origin(&page("https://evil.example")).is_ok());
    }

    #[test]
    fn an_address_gets_its_burst_then_waits() {
        let a = admission(|o| {
            o.connections_per_minute = 5;
            o.connection_burst = 3;
        });
        let peer: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        for _ in 0..3 {
            assert!(a.check(&HeaderMap::new(), Some(peer)).is_ok());
        }
        let Err(Refused::TooMany(wait)) = a.check(&HeaderMap::new(), Some(peer)) else {
            panic!("the fourth within the burst is refused");
        };
        assert!(
            wait > Duration::from_secs(5) && wait <= Duration::from_secs(12),
            "{wait:?}"
        );
        let other: SocketAddr = "192.0.2.2:5000".parse().unwrap();
        assert!(
            a.check(&HeaderMap::new(), Some(other)).is_ok(),
            "per address"
        );
    }

    #[test]
    fn a_spray_of_addresses_keeps_the_limiter_bounded() {
        let a = admission(|o| o.connections_per_minute = 5);
        for n in 0..(MAX_TRACKED as u32 + 20_000) {
            let peer = SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + n), 1));
            let _ = a.check(&HeaderMap::new(), Some(peer));
        }
        let tracked = a.per_ip.as_ref().unwrap().0.read().unwrap().len();
        assert!(tracked <= MAX_TRACKED, "{tracked} addresses tracked");
    }
}
