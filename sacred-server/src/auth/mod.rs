//! `Authenticator`: who a connection is, decided from its `connect` command
//! and the HTTP request that opened the socket.

#[cfg(feature = "jwt")]
pub(crate) mod jwt;
#[cfg(feature = "sqlite")]
pub(crate) mod keys;

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::http::HeaderMap;
use futures_util::future::BoxFuture;
use sacred_proto::{ClientInfo, DisconnectCode, Value};
use sha2::{Digest, Sha256};

/// What an authenticator learned about a connection.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Identity {
    /// The user id; `None` for an anonymous connection.
    pub user: Option<String>,
    /// When the credential expires, milliseconds since the Unix epoch.
    pub expires: Option<u64>,
    /// Application data for the client, sent as the connect reply's `data`.
    pub data: Value,
    /// The rate tier ([`HubOptions::tiers`](crate::HubOptions::tiers));
    /// `None`: the default rate. `"admin"` has none unless configured.
    pub tier: Option<String>,
    /// The channels the connection may subscribe to (and read presence,
    /// history and search of), each a name or a prefix ending in `*`
    /// (`"chat:*"`); `None`: whatever the namespaces and hooks allow.
    pub channels: Option<Vec<String>>,
    /// What the credential says the client is, in place of what the client
    /// said of itself (its non-empty fields replace the client's).
    pub info: Option<ClientInfo>,
    /// Which credential authenticated the connection (an API key's id, a
    /// token's `jti`): [`Hub::disconnect_credential`](crate::Hub::disconnect_credential)
    /// closes the connections it holds when it is revoked. Never the secret itself.
    pub credential: Option<String>,
}

impl Identity {
    /// An anonymous connection.
    pub fn anonymous() -> Identity {
        Identity::default()
    }

    /// A connection authenticated as `user`.
    pub fn user(user: impl Into<String>) -> Identity {
        Identity {
            user: Some(user.into()),
            ..Identity::default()
        }
    }

    /// The credential expires at `expires` (milliseconds since the Unix
    /// epoch): the connection closes with 3004 then unless the client refreshes.
    pub fn expires(mut self, expires: u64) -> Identity {
        self.expires = Some(expires);
        self
    }

    /// Data for the client, sent in the connect reply.
    pub fn data(mut self, data: impl Into<Value>) -> Identity {
        self.data = data.into();
        self
    }

    /// The connection's rate tier ([`HubOptions::tiers`](crate::HubOptions::tiers)).
    pub fn tier(mut self, tier: impl Into<String>) -> Identity {
        self.tier = Some(tier.into());
        self
    }

    /// Limits the channels the connection may use to `channels`: names, or
    /// prefixes ending in `*`.
    pub fn channels<S: Into<String>>(mut self, channels: impl IntoIterator<Item = S>) -> Identity {
        self.channels = Some(channels.into_iter().map(Into::into).collect());
        self
    }

    /// What the credential says the client is: its non-empty fields replace
    /// those the client sent.
    pub fn info(mut self, info: ClientInfo) -> Identity {
        self.info = Some(info);
        self
    }

    /// Names the credential that authenticated the connection (an id, never
    /// the secret), for revocation.
    pub fn credential(mut self, id: impl Into<String>) -> Identity {
        self.credential = Some(id.into());
        self
    }

    /// Whether the identity may use `channel` (see [`Identity::channels`]).
    pub(crate) fn may_use(channels: Option<&[String]>, channel: &str) -> bool {
        channels.is_none_or(|allowed| {
            allowed
                .iter()
                .any(|pattern| match pattern.strip_suffix('*') {
                    Some(prefix) => channel.starts_with(prefix),
                    None => pattern == channel,
                })
        })
    }
}

/// What an [`Authenticator`] is asked about: the credential and description
/// from the `connect` command, and the HTTP request that opened the socket.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ConnectContext {
    /// The token the client sent; `None` for an anonymous connect.
    pub token: Option<String>,
    /// What the client says about itself.
    pub client: ClientInfo,
    /// The connect command's application data.
    pub data: Value,
    /// The peer's socket address, when the host serves the router with
    /// `into_make_service_with_connect_info::<SocketAddr>()` (the
    /// `sacred-server` binary does). Behind a proxy this is the proxy.
    pub remote_addr: Option<SocketAddr>,
    /// The headers of the upgrade request: `Origin`, `Cookie`, `User-Agent`,
    /// whatever a proxy added. Empty for a `refresh`.
    pub headers: HeaderMap,
    /// Whether this is a `refresh` of a connected client's token rather
    /// than a `connect` (then the new identity must name the same user).
    pub refresh: bool,
}

impl ConnectContext {
    /// A context holding only `token`: what a host's own tests of its
    /// authenticator need.
    pub fn new(token: Option<String>) -> ConnectContext {
        ConnectContext {
            token,
            ..ConnectContext::default()
        }
    }
}

/// Why a connection was refused; each closes with its disconnect code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The token is not valid (closes with 3500).
    #[error("invalid token")]
    InvalidToken,
    /// No token, and anonymous connections are refused (closes with 3507).
    #[error("unauthorized")]
    Unauthorized,
    /// The identity may not connect (closes with 3505).
    #[error("permission denied")]
    PermissionDenied,
}

impl AuthError {
    /// How much a refusal says, for [`Chain`] to return the most telling.
    fn weight(&self) -> u8 {
        match self {
            AuthError::Unauthorized => 0,
            AuthError::InvalidToken => 1,
            AuthError::PermissionDenied => 2,
        }
    }

    /// The code the connection is closed with.
    pub fn disconnect_code(&self) -> DisconnectCode {
        match self {
            AuthError::InvalidToken => DisconnectCode::INVALID_TOKEN,
            AuthError::Unauthorized => DisconnectCode::UNAUTHORIZED,
            AuthError::PermissionDenied => DisconnectCode::PERMISSION_DENIED,
        }
    }
}

/// Decides who a connection is. Called for `connect` (and `refresh`) with
/// the token, what the client said about itself and the request context.
///
/// Implement it to check JWTs, call an identity service, look at a session
/// cookie, and so on; the hub calls it once per connect and does not cache
/// the answer.
///
/// ```
/// use futures_util::future::BoxFuture;
/// use sacred_server::{AuthError, Authenticator, ConnectContext, Identity};
///
/// /// Accepts `Bearer <user>` cookies from one origin (a toy: check a signature in real code).
/// struct SessionCookie;
///
/// impl Authenticator for SessionCookie {
///     fn authenticate<'a>(&'a self, request: &'a ConnectContext) -> BoxFuture<'a, Result<Identity, AuthError>> {
///         Box::pin(async move {
///             let origin = request.headers.get("origin").and_then(|v| v.to_str().ok());
///             if origin != Some("https://app.example.com") {
///                 return Err(AuthError::PermissionDenied);
///             }
///             match request.token.as_deref() {
///                 Some(user) => Ok(Identity::user(user)),
///                 None => Err(AuthError::Unauthorized),
///             }
///         })
///     }
/// }
/// ```
pub trait Authenticator: Send + Sync + 'static {
    /// The identity for this connect (or refresh).
    fn authenticate<'a>(
        &'a self,
        request: &'a ConnectContext,
    ) -> BoxFuture<'a, Result<Identity, AuthError>>;
}

/// Several authenticators asked in turn, for a hub that takes more than one
/// kind of credential (JWTs and API keys, say): the first identity any of
/// them returns is the connection's. If all refuse, the most telling
/// refusal is returned: permission denied over an invalid token over
/// unauthorized, so that a key refused by the JWT check and matched by
/// nothing else is an invalid token, not a missing one.
///
/// ```
/// use sacred_server::{ApiKey, Chain, StaticKeys};
///
/// let keys = StaticKeys::new([ApiKey::from_plain("sk_1", "ada")], false);
/// let service = StaticKeys::new([ApiKey::from_plain("sk_svc", "indexer")], false);
/// let auth = Chain::new().or(keys).or(service);
/// # drop(auth);
/// ```
#[derive(Default)]
pub struct Chain {
    links: Vec<std::sync::Arc<dyn Authenticator>>,
}

impl Chain {
    /// A chain that refuses everything until a link is added.
    pub fn new() -> Chain {
        Chain::default()
    }

    /// Asks `next` after the links already in the chain.
    #[must_use]
    pub fn or(mut self, next: impl Authenticator) -> Chain {
        self.links.push(std::sync::Arc::new(next));
        self
    }

    /// Asks `next`, shared, after the links already in the chain.
    #[must_use]
    pub fn or_shared(mut self, next: std::sync::Arc<dyn Authenticator>) -> Chain {
        self.links.push(next);
        self
    }
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("links", &self.links.len())
            .finish()
    }
}

impl Authenticator for Chain {
    fn authenticate<'a>(
        &'a self,
        request: &'a ConnectContext,
    ) -> BoxFuture<'a, Result<Identity, AuthError>> {
        Box::pin(async move {
            let mut refusal = AuthError::Unauthorized;
            for link in &self.links {
                match link.authenticate(request).await {
                    Ok(identity) => return Ok(identity),
                    Err(err) => {
                        if err.weight() > refusal.weight() {
                            refusal = err;
                        }
                    }
                }
            }
            Err(refusal)
        })
    }
}

/// The built-in authenticator: static API keys, kept as SHA-256 hashes, and
/// anonymous connections allowed or refused.
#[derive(Clone, Debug, Default)]
pub struct StaticKeys {
    /// SHA-256 (hex) of each key, to the user it authenticates.
    keys: HashMap<String, String>,
    allow_anonymous: bool,
}

impl StaticKeys {
    /// Keys by SHA-256 hex, and whether connections without a token are allowed.
    pub fn new(keys: impl IntoIterator<Item = crate::ApiKey>, allow_anonymous: bool) -> StaticKeys {
        let keys = keys.into_iter().map(|key| (key.sha256, key.user)).collect();
        StaticKeys {
            keys,
            allow_anonymous,
        }
    }
}

impl Authenticator for StaticKeys {
    fn authenticate<'a>(
        &'a self,
        request: &'a ConnectContext,
    ) -> BoxFuture<'a, Result<Identity, AuthError>> {
        let result = match request.token.as_deref() {
            None if self.allow_anonymous => Ok(Identity::anonymous()),
            None => Err(AuthError::Unauthorized),
            Some(token) => self
                .keys
                .get(&sha256_hex(token))
                .map(Identity::user)
                .ok_or(AuthError::InvalidToken),
        };
        Box::pin(std::future::ready(result))
    }
}

/// Lower-case hex SHA-256 of `text`.
pub(crate) fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ApiKey;

    fn check(auth: &StaticKeys, token: Option<&str>) -> Result<Identity, AuthError> {
        let request = ConnectContext::new(token.map(str::to_owned));
        futures_util::FutureExt::now_or_never(auth.authenticate(&request)).unwrap()
    }

    #[test]
    fn keys_are_matched_by_hash_and_anonymous_follows_the_switch() {
        let auth = StaticKeys::new([ApiKey::from_plain("sk_1", "ada")], false);
        assert!(
            !format!("{auth:?}").contains("sk_1"),
            "the key itself is never kept"
        );
        assert_eq!(check(&auth, Some("sk_1")), Ok(Identity::user("ada")));
        assert_eq!(check(&auth, Some("sk_2")), Err(AuthError::InvalidToken));
        assert_eq!(check(&auth, None), Err(AuthError::Unauthorized));
        let open = StaticKeys::new([], true);
        assert_eq!(check(&open, None), Ok(Identity::anonymous()));
    }

    #[test]
    fn a_chain_takes_the_first_identity_and_the_most_telling_refusal() {
        let chain = Chain::new()
            .or(StaticKeys::new([ApiKey::from_plain("sk_1", "ada")], false))
            .or(StaticKeys::new([ApiKey::from_plain("sk_2", "bob")], false));
        let ask = |token: Option<&str>| {
            let request = ConnectContext::new(token.map(str::to_owned));
            futures_util::FutureExt::now_or_never(chain.authenticate(&request)).unwrap()
        };
        assert_eq!(ask(Some("sk_2")), Ok(Identity::user("bob")));
        assert_eq!(ask(Some("sk_3")), Err(AuthError::InvalidToken));
        assert_eq!(ask(None), Err(AuthError::Unauthorized));
        let empty = Chain::new();
        let request = ConnectContext::new(None);
        assert_eq!(
            futures_util::FutureExt::now_or_never(empty.authenticate(&request)).unwrap(),
            Err(AuthError::Unauthorized)
        );
    }
}
