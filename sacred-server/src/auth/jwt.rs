//! `Jwt`: an [`Authenticator`] for JSON Web Tokens, HS256 with a shared
//! secret, RS256 or ES256 with a PEM public key or the keys a JWKS URL
//! serves (fetched at start, cached, fetched again for an unknown `kid`).
//!
//! Claims: `sub` (required) is the user, `exp` (required) the expiry, `nbf`,
//! `iss` and `aud` are checked when present or configured, with a leeway
//! (30 s by default) for clocks that drift. Optional claims: `info` (an
//! object with `name`, `kind`, `runtime`, `version`, which replace what the
//! client said of itself), `channels` (names or `prefix*`), `tier` (a rate
//! tier), `data` (sent to the client in the connect reply), `jti` (names the
//! credential). A claim of the wrong type refuses the token.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use sacred_proto::{ClientInfo, Value};
use serde::Deserialize;

use super::{AuthError, Authenticator, ConnectContext, Identity};

/// The shortest HS256 secret accepted, in bytes (RFC 7518, 3.2: at least
/// the hash's size).
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// A JWT setting or key that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// The HS256 secret is shorter than [`MIN_HS256_SECRET_BYTES`].
    #[error("the HS256 secret must be at least 32 bytes; it has {0}")]
    ShortSecret(usize),
    /// A PEM key that does not parse as the algorithm's public key.
    #[error("not a {0} public key in PEM: {1}")]
    Key(&'static str, String),
    /// The JWKS URL is not http(s).
    #[error("the JWKS URL must be http:// or https://: {0}")]
    Url(String),
    /// The JWKS could not be fetched or read.
    #[error("cannot fetch the JWKS from {url}: {reason}")]
    Jwks {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
}

/// An [`Authenticator`] for JWTs, HS256, RS256 or ES256. Claims: `sub`
/// (required) is the user, `exp` (required) the expiry, `nbf`, `iss`, `aud`
/// checked with a leeway (30 s); optional `info`, `channels`, `tier`, `data`,
/// `jti`; a claim of the wrong type refuses the token.
///
/// ```
/// use sacred_server::{Hub, Jwt};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let secret = "a secret of thirty-two bytes or more!"; // from a file or the environment
/// let jwt = Jwt::hs256(secret.as_bytes())?
///     .issuer("https://auth.example.com")
///     .audience("sacred");
/// let builder = Hub::builder().authenticator(jwt);
/// # drop(builder);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Jwt {
    keys: Keys,
    validation: Validation,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = match &self.keys {
            Keys::One(_, algorithm) => format!("{algorithm:?}"),
            Keys::Jwks(jwks) => format!("JWKS {}", jwks.url),
        };
        f.debug_struct("Jwt")
            .field("keys", &keys)
            .field("issuer", &self.validation.iss)
            .field("audience", &self.validation.aud)
            .field("leeway_secs", &self.validation.leeway)
            .finish()
    }
}

#[derive(Clone)]
enum Keys {
    One(Arc<DecodingKey>, Algorithm),
    Jwks(Arc<Jwks>),
}

impl Jwt {
    fn with(keys: Keys, algorithms: Vec<Algorithm>) -> Jwt {
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms;
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        // `aud` is checked once an audience is configured; a token naming
        // an audience is refused until then (jsonwebtoken's rule).
        Jwt { keys, validation }
    }

    /// Tokens signed with HS256 and `secret` (at least 32 bytes).
    pub fn hs256(secret: &[u8]) -> Result<Jwt, JwtError> {
        if secret.len() < MIN_HS256_SECRET_BYTES {
            return Err(JwtError::ShortSecret(secret.len()));
        }
        let key = DecodingKey::from_secret(secret)
            .map_err(|err| JwtError::Key("HS256", err.to_string()))?;
        Ok(Jwt::with(
            Keys::One(Arc::new(key), Algorithm::HS256),
            vec![Algorithm::HS256],
        ))
    }

    /// Tokens signed with RS256 by the holder of `pem`'s private key.
    pub fn rs256_pem(pem: &[u8]) -> Result<Jwt, JwtError> {
        let key = DecodingKey::from_rsa_pem(pem)
            .map_err(|err| JwtError::Key("RS256", err.to_string()))?;
        Ok(Jwt::with(
            Keys::One(Arc::new(key), Algorithm::RS256),
            vec![Algorithm::RS256],
        ))
    }

    /// Tokens signed with ES256 (P-256) by the holder of `pem`'s private key.
    pub fn es256_pem(pem: &[u8]) -> Result<Jwt, JwtError> {
        let key =
            DecodingKey::from_ec_pem(pem).map_err(|err| JwtError::Key("ES256", err.to_string()))?;
        Ok(Jwt::with(
            Keys::One(Arc::new(key), Algorithm::ES256),
            vec![Algorithm::ES256],
        ))
    }

    /// Tokens signed (RS256 or ES256) with a key the JWKS at `url` serves,
    /// named by the token's `kid`. The set is fetched now (an error if it
    /// cannot be), again when a token names a `kid` it lacks (at most once
    /// every 10 s, so a flood of made-up `kid`s does not flood the identity
    /// provider), and when it is older than 15 minutes.
    pub async fn jwks(url: impl Into<String>) -> Result<Jwt, JwtError> {
        let jwks = Jwks::fetch_new(url.into()).await?;
        Ok(Jwt::with(
            Keys::Jwks(Arc::new(jwks)),
            vec![Algorithm::RS256, Algorithm::ES256],
        ))
    }

    /// Only tokens whose `iss` is `issuer` (which then is required).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Jwt {
        self.validation.set_issuer(&[issuer.into()]);
        self.validation.required_spec_claims.insert("iss".into());
        self
    }

    /// Only tokens whose `aud` names `audience` (which then is required).
    pub fn audience(mut self, audience: impl Into<String>) -> Jwt {
        self.validation.set_audience(&[audience.into()]);
        self.validation.required_spec_claims.insert("aud".into());
        self
    }

    /// With a JWKS: how often, at most, the set is fetched again for a
    /// `kid` it lacks (default 10 s). No effect with a fixed key.
    pub fn jwks_refetch(self, at_most_every: Duration) -> Jwt {
        if let Keys::Jwks(jwks) = &self.keys {
            let ms = u64::try_from(at_most_every.as_millis()).unwrap_or(u64::MAX);
            jwks.refetch_ms
                .store(ms, std::sync::atomic::Ordering::Relaxed);
        }
        self
    }

    /// How far `exp` and `nbf` may be off, for clocks that drift (default 30 s).
    pub fn leeway(mut self, leeway: Duration) -> Jwt {
        self.validation.leeway = leeway.as_secs();
        self
    }

    /// The identity `token` proves, or why not (logged at debug, never the token).
    async fn check(&self, token: &str) -> Result<Identity, AuthError> {
        // Not three segments: not a JWT (an API key, say); refuse at once.
        if token.bytes().filter(|&b| b == b'.').count() != 2 {
            return Err(AuthError::InvalidToken);
        }
        let header = decode_header(token).map_err(|err| refuse("header", &err))?;
        let (key, validation) = match &self.keys {
            Keys::One(key, _) => (
                Arc::clone(key),
                std::borrow::Cow::Borrowed(&self.validation),
            ),
            Keys::Jwks(jwks) => {
                let key = jwks.key(header.kid.as_deref(), header.alg).await?;
                // jsonwebtoken wants the algorithms of one family per key:
                // this key's (it was looked up for the header's).
                let mut validation = self.validation.clone();
                validation.algorithms = vec![header.alg];
                (key, std::borrow::Cow::Owned(validation))
            }
        };
        let claims = decode::<Claims>(token, &key, &validation)
            .map_err(|err| refuse("claims or signature", &err))?
            .claims;
        let mut identity = Identity::user(claims.sub).expires(claims.exp.saturating_mul(1000));
        if let Some(info) = claims.info {
            identity = identity.info(info);
        }
        if let Some(channels) = claims.channels {
            identity = identity.channels(channels);
        }
        if let Some(tier) = claims.tier {
            identity = identity.tier(tier);
        }
        if let Some(data) = claims.data {
            identity = identity.data(data);
        }
        if let Some(jti) = claims.jti {
            identity = identity.credential(jti);
        }
        Ok(identity)
    }
}

/// A refused token: the reason at debug level, the client told only "invalid token".
fn refuse(what: &str, err: &jsonwebtoken::errors::Error) -> AuthError {
    tracing::debug!(reason = %err, "JWT refused ({what})");
    AuthError::InvalidToken
}

impl Authenticator for Jwt {
    fn authenticate<'a>(
        &'a self,
        request: &'a ConnectContext,
    ) -> BoxFuture<'a, Result<Identity, AuthError>> {
        Box::pin(async move {
            match request.token.as_deref() {
                None => Err(AuthError::Unauthorized),
                Some(token) => self.check(token).await,
            }
        })
    }
}

/// The claims Sacred reads; others are ignored.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    info: Option<ClientInfo>,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    tier: Option<String>,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    jti: Option<String>,
}

/// Keys from a JWKS URL, by `kid`.
struct Jwks {
    url: String,
    /// A `kid` the set lacks is looked for again at most this often (ms).
    refetch_ms: std::sync::atomic::AtomicU64,
    client: reqwest::Client,
    keys: RwLock<Fetched>,
    /// Held while fetching, so that concurrent misses fetch once.
    fetching: tokio::sync::Mutex<()>,
}

struct Fetched {
    keys: HashMap<String, (Arc<DecodingKey>, Algorithm)>,
    /// When the set was last fetched.
    at: Instant,
    /// When a fetch was last tried, whether or not it worked.
    tried: Instant,
}

/// A `kid` the set lacks is looked for again at most this often.
const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(10);
/// A set older than this is fetched again at the next token.
const REFRESH_AFTER: Duration = Duration::from_secs(15 * 60);
/// A JWKS fetch may take this long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

impl Jwks {
    async fn fetch_new(url: String) -> Result<Jwks, JwtError> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(JwtError::Url(url));
        }
        // reqwest's rustls is built without a provider: use ring, unless the
        // process installed one already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|err| JwtError::Jwks {
                url: url.clone(),
                reason: err.to_string(),
            })?;
        let keys = fetch(&client, &url)
            .await
            .map_err(|reason| JwtError::Jwks {
                url: url.clone(),
                reason,
            })?;
        tracing::info!(%url, keys = keys.len(), "JWKS fetched");
        Ok(Jwks {
            url,
            refetch_ms: std::sync::atomic::AtomicU64::new(REFETCH_AT_MOST_EVERY.as_millis() as u64),
            client,
            keys: RwLock::new(Fetched {
                keys,
                at: Instant::now(),
                tried: Instant::now(),
            }),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// The key for `kid`, fetching the set again if it lacks it (or is old).
    async fn key(&self, kid: Option<&str>, alg: Algorithm) -> Result<Arc<DecodingKey>, AuthError> {
        let Some(kid) = kid else {
            tracing::debug!("JWT refused: no kid, and the keys come from a JWKS");
            return Err(AuthError::InvalidToken);
        };
        let (found, fresh, tried) = self.lookup(kid, alg);
        match found {
            Some(key) if fresh => return Ok(key),
            _ if tried < self.refetch() => return found.ok_or_else(|| unknown(kid)),
            _ => {}
        }
        {
            let _fetching = self.fetching.lock().await;
            // Another token may have fetched while this one waited.
            if self.lookup(kid, alg).2 >= self.refetch() {
                let result = fetch(&self.client, &self.url).await;
                let mut held = self.keys.write().unwrap_or_else(|p| p.into_inner());
                held.tried = Instant::now();
                match result {
                    Ok(keys) => {
                        tracing::info!(url = %self.url, keys = keys.len(), "JWKS fetched again");
                        held.keys = keys;
                        held.at = Instant::now();
                    }
                    Err(reason) => {
                        tracing::warn!(url = %self.url, %reason, "cannot fetch the JWKS again: keeping the keys held")
                    }
                }
            }
        }
        self.lookup(kid, alg).0.ok_or_else(|| unknown(kid))
    }

    fn refetch(&self) -> Duration {
        Duration::from_millis(self.refetch_ms.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The key for `kid` if held for `alg`, whether the set is fresh, and
    /// how long ago a fetch was last tried.
    fn lookup(&self, kid: &str, alg: Algorithm) -> (Option<Arc<DecodingKey>>, bool, Duration) {
        let held = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let key = held
            .keys
            .get(kid)
            .filter(|(_, algorithm)| *algorithm == alg)
            .map(|(key, _)| Arc::clone(key));
        (key, held.at.elapsed() < REFRESH_AFTER, held.tried.elapsed())
    }
}

fn unknown(kid: &str) -> AuthError {
    tracing::debug!(
        kid,
        "JWT refused: no key with this kid and algorithm in the JWKS"
    );
    AuthError::InvalidToken
}

/// The RS256 and ES256 keys the JWKS at `url` serves, by `kid`; keys of
/// other types or without a `kid` are skipped.
async fn fetch(
    client: &reqwest::Client,
    url: &str,
) -> Result<HashMap<String, (Arc<DecodingKey>, Algorithm)>, String> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|err| err.to_string())?;
    let response = response.error_for_status().map_err(|err| err.to_string())?;
    let set: JwkSet = response
        .json()
        .await
        .map_err(|err| format!("not a JWKS: {err}"))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = &jwk.common.key_id else {
            continue;
        };
        let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
            (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
                if ec.curve == EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            _ => continue,
        };
        match DecodingKey::from_jwk(jwk) {
            Ok(key) => {
                keys.insert(kid.clone(), (Arc::new(key), algorithm));
            }
            Err(err) => tracing::warn!(kid, %err, "JWKS key skipped"),
        }
    }
    Ok(keys)
}
