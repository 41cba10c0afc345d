//! `Authenticator`: who a connection is, decided from its `connect` command.

use std::collections::HashMap;

use futures_util::future::BoxFuture;
use sacred_proto::{ClientInfo, DisconnectCode};
use sha2::{Digest, Sha256};

/// What an authenticator learned about a connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Identity {
    /// The user id; `None` for an anonymous connection.
    pub user: Option<String>,
    /// When the credential expires, milliseconds since the Unix epoch.
    pub expires: Option<u64>,
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
            expires: None,
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
    /// The code the connection is closed with.
    pub fn disconnect_code(&self) -> DisconnectCode {
        match self {
            AuthError::InvalidToken => DisconnectCode::INVALID_TOKEN,
            AuthError::Unauthorized => DisconnectCode::UNAUTHORIZED,
            AuthError::PermissionDenied => DisconnectCode::PERMISSION_DENIED,
        }
    }
}

/// Decides who a connection is. Called for `connect` (and `refresh`) with the
/// token the client sent and what it said about itself.
///
/// Implement it to check JWTs, call an identity service, and so on; the hub
/// calls it once per connect and does not cache the answer.
pub trait Authenticator: Send + Sync + 'static {
    /// The identity for `token` (absent for an anonymous client).
    fn authenticate<'a>(
        &'a self,
        token: Option<&'a str>,
        client: &'a ClientInfo,
    ) -> BoxFuture<'a, Result<Identity, AuthError>>;
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
        token: Option<&'a str>,
        _client: &'a ClientInfo,
    ) -> BoxFuture<'a, Result<Identity, AuthError>> {
        let result = match token {
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
        let client = ClientInfo::default();
        futures_util::FutureExt::now_or_never(auth.authenticate(token, &client)).unwrap()
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
}
