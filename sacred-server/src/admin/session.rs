//! Dashboard sessions: the admin password checked against its argon2id
//! hash, a random session id in an `HttpOnly; SameSite=Strict` cookie, and a
//! CSRF token bound to the session that every state-changing call carries
//! in [`CSRF_HEADER`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, password_hash};
use rand::RngCore;
use subtle::ConstantTimeEq;

/// The cookie that carries the session id.
pub const SESSION_COOKIE: &str = "sacred_admin";
/// The header that carries the session's CSRF token on state-changing calls.
pub const CSRF_HEADER: &str = "x-sacred-csrf";

/// The argon2id PHC string of `password` (default parameters: 19 MiB, two
/// passes), with a random salt: what `sacred-server admin-password` prints.
///
/// ```
/// let hash = sacred_server::admin::hash_password("correct horse battery staple");
/// assert!(hash.starts_with("$argon2id$"));
/// ```
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).expect("16 bytes are a valid salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("the default argon2id parameters hash any password")
        .to_string()
}

/// A checked PHC string (kept as text: `PasswordHash` borrows it).
#[derive(Clone)]
pub(crate) struct PasswordHashText(String);

impl std::fmt::Debug for PasswordHashText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash(redacted)")
    }
}

impl PasswordHashText {
    /// `phc` if it is an argon2 PHC string.
    pub(crate) fn parse(phc: &str) -> Result<PasswordHashText, password_hash::Error> {
        let phc = phc.trim();
        let parsed = PasswordHash::new(phc)?;
        if !parsed.algorithm.as_str().starts_with("argon2") {
            return Err(password_hash::Error::Algorithm);
        }
        Ok(PasswordHashText(phc.to_owned()))
    }

    /// Whether `password` is the one hashed (argon2 compares in constant time).
    pub(crate) fn verify(&self, password: &str) -> bool {
        PasswordHash::new(&self.0).is_ok_and(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
    }
}

/// How long sessions live and how many are kept.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SessionLimits {
    /// A session ends this long after login, however busy.
    pub(crate) lifetime: Duration,
    /// A session ends after this long without a call.
    pub(crate) idle: Duration,
    /// Sessions kept at most; a login past it ends the least recently used.
    pub(crate) max: usize,
}

impl Default for SessionLimits {
    fn default() -> SessionLimits {
        SessionLimits {
            lifetime: Duration::from_secs(8 * 3600),
            idle: Duration::from_secs(30 * 60),
            max: 64,
        }
    }
}

struct Session {
    csrf: String,
    actor: String,
    started: Instant,
    used: Instant,
}

/// The live sessions by id, bounded in count, each ending at its lifetime
/// or after its idle time.
pub(crate) struct Sessions {
    limits: SessionLimits,
    by_id: Mutex<HashMap<String, Session>>,
}

/// A live session, as a call sees it.
#[derive(Clone, Debug)]
pub(crate) struct Live {
    pub(crate) csrf: String,
    pub(crate) actor: String,
}

impl Sessions {
    pub(crate) fn new(limits: SessionLimits) -> Sessions {
        Sessions {
            limits,
            by_id: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn limits(&self) -> SessionLimits {
        self.limits
    }

    /// Starts a session for `actor`: its id (256 random bits, hex) and its
    /// CSRF token.
    pub(crate) fn start(&self, actor: &str) -> (String, String) {
        let (id, csrf) = (random_hex(), random_hex());
        let now = Instant::now();
        let mut by_id = self.by_id.lock().expect("sessions lock");
        by_id.retain(|_, session| self.alive(session, now));
        while by_id.len() >= self.limits.max.max(1) {
            let oldest = by_id
                .iter()
                .min_by_key(|(_, session)| session.used)
                .map(|(id, _)| id.clone());
            match oldest {
                Some(oldest) => drop(by_id.remove(&oldest)),
                None => break,
            }
        }
        by_id.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                actor: actor.to_owned(),
                started: now,
                used: now,
            },
        );
        (id, csrf)
    }

    /// The session `id` if it is live, its idle time started again.
    pub(crate) fn touch(&self, id: &str) -> Option<Live> {
        let now = Instant::now();
        let mut by_id = self.by_id.lock().expect("sessions lock");
        let session = by_id.get_mut(id)?;
        if !self.alive(session, now) {
            by_id.remove(id);
            return None;
        }
        session.used = now;
        Some(Live {
            csrf: session.csrf.clone(),
            actor: session.actor.clone(),
        })
    }

    /// Ends the session `id`; its actor if it was live.
    pub(crate) fn end(&self, id: &str) -> Option<String> {
        let session = self.by_id.lock().expect("sessions lock").remove(id)?;
        Some(session.actor)
    }

    fn alive(&self, session: &Session, now: Instant) -> bool {
        now.duration_since(session.started) < self.limits.lifetime
            && now.duration_since(session.used) < self.limits.idle
    }
}

/// Whether `sent` is the session's token, compared in constant time.
pub(crate) fn csrf_matches(live: &Live, sent: &str) -> bool {
    live.csrf.as_bytes().ct_eq(sent.as_bytes()).into()
}

/// 256 random bits as hex, from the thread's CSPRNG (ChaCha, seeded by the OS).
fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The session id in a `Cookie` header's value, if any.
pub(crate) fn cookie_session(cookies: &str) -> Option<&str> {
    cookies.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == SESSION_COOKIE).then_some(value)
    })
}

/// The `Set-Cookie` value that sets the session (`secure`: over TLS).
pub(crate) fn set_cookie(id: &str, limits: SessionLimits, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/admin; Max-Age={}{}",
        limits.lifetime.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that clears it.
pub(crate) fn clear_cookie(secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/admin; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = PasswordHashText::parse(&hash_password("s3cret")).unwrap();
        assert!(hash.verify("s3cret"));
        assert!(!hash.verify("s3cret "));
        assert!(PasswordHashText::parse("not a hash").is_err());
    }

    #[test]
    fn sessions_are_bounded_and_end() {
        let sessions = Sessions::new(SessionLimits {
            max: 2,
            ..SessionLimits::default()
        });
        let (a, csrf) = sessions.start("ops");
        assert_eq!(a.len(), 64);
        assert!(csrf_matches(&sessions.touch(&a).unwrap(), &csrf));
        let (b, _) = sessions.start("ops");
        let (c, _) = sessions.start("ops");
        assert!(sessions.touch(&a).is_none(), "the least recently used went");
        assert!(sessions.touch(&b).is_some() && sessions.touch(&c).is_some());
        assert_eq!(sessions.end(&b).as_deref(), Some("ops"));
        assert!(sessions.touch(&b).is_none());
        assert_eq!(cookie_session("x=1; sacred_admin=abc; y=2"), Some("abc"));
    }
}
