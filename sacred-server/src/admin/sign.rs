//! Signed admin requests: HMAC-SHA256 over the method, the path with its
//! query, a timestamp, a nonce and the SHA-256 of the body; accepted within
//! a window of the server's clock, each nonce once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The header naming the admin credential that signed the request.
pub const CREDENTIAL_HEADER: &str = "x-sacred-admin";
/// The header with the request's Unix time in seconds.
pub const TIMESTAMP_HEADER: &str = "x-sacred-timestamp";
/// The header with the request's nonce: 16 to 128 characters of `[A-Za-z0-9_-]`.
pub const NONCE_HEADER: &str = "x-sacred-nonce";
/// The header with the signature: lower-case hex HMAC-SHA256.
pub const SIGNATURE_HEADER: &str = "x-sacred-signature";

/// The shortest admin secret accepted, in bytes (as for HS256 JWT secrets).
pub const MIN_SECRET_BYTES: usize = 32;

/// The text an admin request's signature is computed over: five lines,
/// `METHOD`, `PATH?QUERY`, `TIMESTAMP`, `NONCE` and the lower-case hex SHA-256
/// of the body, joined by `\n`.
pub fn canonical(
    method: &str,
    path_and_query: &str,
    timestamp: u64,
    nonce: &str,
    body: &[u8],
) -> String {
    format!(
        "{}\n{}\n{}\n{}\n{}",
        method.to_ascii_uppercase(),
        path_and_query,
        timestamp,
        nonce,
        hex::encode(Sha256::digest(body))
    )
}

/// The signature of a request (lower-case hex HMAC-SHA256 of
/// [`canonical`]), as a machine caller computes it.
///
/// ```
/// let signature = sacred_server::admin::sign(
///     b"an admin secret of at least 32 bytes!",
///     "GET",
///     "/admin/api/connections",
///     1_767_225_600,
///     "c8a1f0e4d2b64f0a",
///     b"",
/// );
/// assert_eq!(signature.len(), 64);
/// ```
pub fn sign(
    secret: &[u8],
    method: &str,
    path_and_query: &str,
    timestamp: u64,
    nonce: &str,
    body: &[u8],
) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(canonical(method, path_and_query, timestamp, nonce, body).as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `signature` (hex) is the request's, compared in constant time.
pub(crate) fn verify(
    secret: &[u8],
    signature: &str,
    method: &str,
    path_and_query: &str,
    timestamp: u64,
    nonce: &str,
    body: &[u8],
) -> bool {
    let Ok(signature) = hex::decode(signature) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(canonical(method, path_and_query, timestamp, nonce, body).as_bytes());
    mac.verify_slice(&signature).is_ok()
}

/// Whether a nonce has the documented shape.
pub(crate) fn valid_nonce(nonce: &str) -> bool {
    (16..=128).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Nonces seen within the window, so that a captured request cannot be
/// replayed. Only requests whose signature verified are remembered, so only
/// an admin's own calls fill it; it holds at most `capacity` nonces, and a
/// nonce is forgotten once its timestamp has left the window (a replay after
/// that is refused as stale).
#[derive(Debug)]
pub(crate) struct Nonces {
    seen: Mutex<HashMap<String, u64>>,
    window: Duration,
    capacity: usize,
}

/// Why a nonce was not taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NonceRefused {
    /// Used before within the window.
    Replayed,
    /// The cache is full of nonces still in their window.
    Full,
}

impl Nonces {
    pub(crate) fn new(window: Duration, capacity: usize) -> Nonces {
        Nonces {
            seen: Mutex::new(HashMap::new()),
            window,
            capacity,
        }
    }

    /// Takes `nonce` (of credential `who`, sent with `timestamp`) at `now`
    /// (both Unix seconds), unless it was taken before.
    pub(crate) fn take(
        &self,
        who: &str,
        nonce: &str,
        timestamp: u64,
        now: u64,
    ) -> Result<(), NonceRefused> {
        let key = format!("{who}\n{nonce}");
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains_key(&key) {
            return Err(NonceRefused::Replayed);
        }
        if seen.len() >= self.capacity {
            let window = self.window.as_secs();
            seen.retain(|_, at| at.saturating_add(window) >= now);
            if seen.len() >= self.capacity {
                return Err(NonceRefused::Full);
            }
        }
        seen.insert(key, timestamp);
        Ok(())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn a_signature_covers_every_part_of_the_request() {
        let good = sign(
            SECRET,
            "POST",
            "/admin/api/broadcast",
            100,
            "nonce-0000000001",
            b"{}",
        );
        assert!(verify(
            SECRET,
            &good,
            "POST",
            "/admin/api/broadcast",
            100,
            "nonce-0000000001",
            b"{}"
        ));
        assert!(
            verify(
                SECRET,
                &good,
                "post",
                "/admin/api/broadcast",
                100,
                "nonce-0000000001",
                b"{}"
            ),
            "methods are upper-cased"
        );
        for (method, path, ts, nonce, body) in [
            (
                "GET",
                "/admin/api/broadcast",
                100,
                "nonce-0000000001",
                &b"{}"[..],
            ),
            (
                "POST",
                "/admin/api/broadcast?x=1",
                100,
                "nonce-0000000001",
                b"{}",
            ),
            (
                "POST",
                "/admin/api/broadcast",
                101,
                "nonce-0000000001",
                b"{}",
            ),
            (
                "POST",
                "/admin/api/broadcast",
                100,
                "nonce-0000000002",
                b"{}",
            ),
            (
                "POST",
                "/admin/api/broadcast",
                100,
                "nonce-0000000001",
                b"{ }",
            ),
        ] {
            assert!(
                !verify(SECRET, &good, method, path, ts, nonce, body),
                "{method} {path} {ts} {nonce}"
            );
        }
        assert!(!verify(
            b"another secret of thirty-two bytes",
            &good,
            "POST",
            "/admin/api/broadcast",
            100,
            "nonce-0000000001",
            b"{}"
        ));
        assert!(!verify(
            SECRET,
            "not hex",
            "POST",
            "/admin/api/broadcast",
            100,
            "nonce-0000000001",
            b"{}"
        ));
        assert!(!verify(
            SECRET,
            &good[..62],
            "POST",
            "/admin/api/broadcast",
            100,
            "nonce-0000000001",
            b"{}"
        ));
    }

    #[test]
    fn nonces_are_taken_once_and_forgotten_after_the_window() {
        let nonces = Nonces::new(Duration::from_secs(300), 2);
        assert_eq!(nonces.take("admin", "a", 1000, 1000), Ok(()));
        assert_eq!(
            nonces.take("admin", "a", 1000, 1001),
            Err(NonceRefused::Replayed)
        );
        assert_eq!(
            nonces.take("ops", "a", 1000, 1001),
            Ok(()),
            "per credential"
        );
        assert_eq!(
            nonces.take("admin", "b", 1000, 1001),
            Err(NonceRefused::Full),
            "bounded"
        );
        assert_eq!(
            nonces.take("admin", "b", 1400, 1400),
            Ok(()),
            "the old ones left the window"
        );
        assert_eq!(nonces.len(), 1);
        assert!(valid_nonce("0123456789abcdef"));
        assert!(!valid_nonce("short"));
        assert!(!valid_nonce("0123456789abcdef\n"));
    }
}
