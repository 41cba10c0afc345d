//! The admin API under `/admin/api`: this node's stats, connections,
//! channels and presence; disconnect a client or a user, broadcast, delete a
//! user's data, announce a migration, read the audit trail, and manage API
//! keys. Every call is signed by an admin credential (see [`sign`]) or comes
//! from a logged-in dashboard session with its CSRF token (see [`CSRF_HEADER`]
//! and the page at `/admin`, served only with a password hash), and is
//! recorded in the audit trail.
//!
//! ```no_run
//! use sacred_server::{AdminApi, Hub};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let (realtime, hub) = Hub::builder().build()?;
//! let secret = std::fs::read("/run/secrets/sacred-admin")?;
//! let admin = AdminApi::new(hub.clone()).credential("ops", secret)?;
//! let app = realtime.merge(admin.router());
//! # drop(app);
//! # Ok(())
//! # }
//! ```

mod calls;
#[cfg(feature = "sqlite")]
mod keys;
mod page;
mod session;
mod sign;
mod stats;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, OriginalUri, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde::Serialize;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::audit::{AuditEvent, AuditKind};
use crate::hub::Hub;
pub use session::{CSRF_HEADER, SESSION_COOKIE, hash_password};
use session::{PasswordHashText, SessionLimits, Sessions};
pub use sign::{
    CREDENTIAL_HEADER, MIN_SECRET_BYTES, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER,
    canonical, sign,
};
use sign::{NonceRefused, Nonces};

/// The largest request body the admin API reads.
const MAX_BODY: usize = 64 * 1024;

/// Nonces remembered at most (see the nonce cache's notes).
const MAX_NONCES: usize = 100_000;

/// An admin API setting [`AdminApi`] refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The secret is shorter than [`MIN_SECRET_BYTES`].
    #[error("admin credential {0:?}: the secret must be at least 32 bytes")]
    ShortSecret(String),
    /// The credential name is empty or not printable ASCII.
    #[error("admin credential {0:?}: name it with printable ASCII, no spaces")]
    Name(String),
    /// The dashboard's password hash is not an argon2 PHC string.
    #[error(
        "the admin password hash is not an argon2 PHC string ($argon2id$...): make one with `sacred-server admin-password`"
    )]
    PasswordHash,
}

/// The signed admin API; [`AdminApi::router`] gives its routes.
#[must_use]
pub struct AdminApi {
    hub: Hub,
    /// Secrets by credential name.
    credentials: HashMap<String, Vec<u8>>,
    window: Duration,
    #[cfg(feature = "sqlite")]
    keys: Option<crate::auth::keys::SqliteKeys>,
    /// The dashboard's actor name and password hash (no dashboard without).
    password: Option<(String, PasswordHashText)>,
    sessions: SessionLimits,
    secure_cookies: bool,
    node: String,
}

impl std::fmt::Debug for AdminApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminApi")
            .field("credentials", &self.credentials.keys().collect::<Vec<_>>())
            .field("window", &self.window)
            .field("dashboard", &self.password.as_ref().map(|(name, _)| name))
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl AdminApi {
    /// An admin API on `hub` with no credential yet (every call refused
    /// until one is added) and the default window of 300 s.
    pub fn new(hub: Hub) -> AdminApi {
        AdminApi {
            hub,
            credentials: HashMap::new(),
            window: Duration::from_secs(300),
            #[cfg(feature = "sqlite")]
            keys: None,
            password: None,
            sessions: SessionLimits::default(),
            secure_cookies: false,
            node: "this node".to_owned(),
        }
    }

    /// Serves the dashboard at `/admin`: a login with the password whose
    /// argon2id PHC string is `phc` ([`hash_password`], `sacred-server
    /// admin-password`), then a live view of this node and its actions,
    /// recorded in the audit trail with `name` as the actor.
    pub fn password(mut self, name: impl Into<String>, phc: &str) -> Result<AdminApi, AdminError> {
        let name = name.into();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AdminError::Name(name));
        }
        let hash = PasswordHashText::parse(phc).map_err(|_| AdminError::PasswordHash)?;
        self.password = Some((name, hash));
        Ok(self)
    }

    /// Marks the session cookie `Secure` (set it when serving over TLS).
    pub fn secure_cookies(mut self, secure: bool) -> AdminApi {
        self.secure_cookies = secure;
        self
    }

    /// How the dashboard names this node (e.g. its address): its lists and
    /// numbers are this node's, not the cluster's.
    pub fn node(mut self, label: impl Into<String>) -> AdminApi {
        self.node = label.into();
        self
    }

    /// A dashboard session ends `idle` after its last call (default 30
    /// minutes) and `lifetime` after its login (default 8 hours).
    pub fn session_expiry(mut self, idle: Duration, lifetime: Duration) -> AdminApi {
        self.sessions.idle = idle;
        self.sessions.lifetime = lifetime;
        self
    }

    /// Dashboard sessions kept at most (default 64); a login past it ends
    /// the least recently used.
    pub fn max_sessions(mut self, max: usize) -> AdminApi {
        self.sessions.max = max.max(1);
        self
    }

    /// Serves the API keys in `keys` under `/admin/api/keys` (list, create,
    /// revoke, rotate); key changes are audited with the admin credential
    /// as the actor.
    #[cfg(feature = "sqlite")]
    pub fn keys(mut self, keys: crate::auth::keys::SqliteKeys) -> AdminApi {
        self.keys = Some(keys);
        self
    }

    /// Accepts calls signed with `secret` (at least 32 bytes) under the name
    /// `name`, which the audit trail records as the actor.
    pub fn credential(
        mut self,
        name: impl Into<String>,
        secret: impl Into<Vec<u8>>,
    ) -> Result<AdminApi, AdminError> {
        let name = name.into();
        let secret = secret.into();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AdminError::Name(name));
        }
        if secret.len() < MIN_SECRET_BYTES {
            return Err(AdminError::ShortSecret(name));
        }
        self.credentials.insert(name, secret);
        Ok(self)
    }

    /// How far a request's timestamp may be from the server's clock, either
    /// way (default 300 s).
    pub fn window(mut self, window: Duration) -> AdminApi {
        self.window = window;
        self
    }

    /// The routes, under `/admin/api` (and the dashboard under `/admin`
    /// with a [password](AdminApi::password)); merge them into the app that
    /// serves the hub (serve it with connect info so that failures are
    /// counted against the caller's address). Call it within a tokio
    /// runtime: a task samples the node every second for `/admin/api/stats`.
    pub fn router(self) -> Router {
        let samples = Arc::new(stats::Samples::default());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(stats::sample_every_second(
                Arc::downgrade(&samples),
                self.hub.clone(),
            ))),
            Err(_) => tracing::warn!(
                "the admin API was built outside a tokio runtime: /admin/api/stats keeps no history"
            ),
        }
        let dashboard = self.password.map(|(actor, password)| page::Dashboard {
            actor,
            password,
            sessions: Sessions::new(self.sessions),
            secure: self.secure_cookies,
            checking: Arc::new(tokio::sync::Semaphore::new(2)),
        });
        let state = Arc::new(Admin {
            nonces: Nonces::new(self.window, MAX_NONCES),
            hub: self.hub,
            credentials: self.credentials,
            window: self.window,
            #[cfg(feature = "sqlite")]
            keys: self.keys,
            dashboard,
            samples,
            node: self.node,
        });
        let routes = Router::new()
            .route("/stats", get(calls::stats))
            .route("/connections", get(calls::connections))
            .route("/channels", get(calls::channels))
            .route("/presence", get(calls::presence))
            .route("/migrate", post(calls::migrate))
            .route("/disconnect", post(calls::disconnect))
            .route("/broadcast", post(calls::broadcast))
            .route("/users/{user}", delete(calls::delete_user))
            .route("/audit", get(calls::audit));
        #[cfg(feature = "sqlite")]
        let routes = routes
            .route("/keys", get(keys::list).post(keys::create))
            .route("/keys/{id}", delete(keys::revoke))
            .route("/keys/{id}/rotate", post(keys::rotate));
        let routes = routes
            .fallback(|| async { failure(StatusCode::NOT_FOUND, "no such admin call") })
            .layer(middleware::from_fn_with_state(
                Arc::clone(&state),
                authorized,
            ))
            .layer(SetResponseHeaderLayer::if_not_present(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            ))
            .with_state(Arc::clone(&state));
        // Nested, so that its fallback answers under /admin/api only and
        // the host's other paths stay the host's.
        let mut router = Router::new().nest("/admin/api", routes);
        if state.dashboard.is_some() {
            router = router.merge(page::routes(state));
        }
        crate::headers::secure(router)
    }
}

struct Admin {
    hub: Hub,
    credentials: HashMap<String, Vec<u8>>,
    window: Duration,
    nonces: Nonces,
    #[cfg(feature = "sqlite")]
    keys: Option<crate::auth::keys::SqliteKeys>,
    /// The login and its sessions, when the dashboard is on.
    dashboard: Option<page::Dashboard>,
    /// This node's last five minutes, sampled every second.
    samples: Arc<stats::Samples>,
    /// How the dashboard names this node.
    node: String,
}

/// The admin credential that signed the request.
#[derive(Clone, Debug)]
struct Caller(String);

/// A JSON error body.
fn failure(status: StatusCode, message: impl Into<String>) -> Response {
    #[derive(Serialize)]
    struct Failure {
        error: String,
    }
    let body = Failure {
        error: message.into(),
    };
    (status, Json(body)).into_response()
}

/// Checks the caller before any handler runs, and records the call: a
/// signed request ([`sign`]), or a dashboard session's cookie with its CSRF
/// token on every state-changing call (see `session`).
async fn authorized(
    State(admin): State<Arc<Admin>>,
    connect_info: Option<Extension<ConnectInfo<SocketAddr>>>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let ip = connect_info.map(|Extension(ConnectInfo(peer))| {
        admin
            .hub
            .inner
            .admission
            .client_ip(&parts.headers, peer.ip().to_canonical())
    });
    // Nested under /admin/api: the path as the caller sent (and signed) it.
    let uri = parts
        .extensions
        .get::<OriginalUri>()
        .map_or(&parts.uri, |OriginalUri(uri)| uri);
    let target = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned());
    let call = format!("{} {}", parts.method, uri.path());
    if let Some(wait) = ip.and_then(|ip| admin.hub.inner.admission.lockout.locked(ip)) {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut response = failure(
            StatusCode::TOO_MANY_REQUESTS,
            "this address failed to authenticate too often; retry later",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, secs.into());
        return response;
    }
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(_) => {
            return failure(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the body is larger than 64 KiB",
            );
        }
    };
    let session = page::session_cookie(&parts.headers);
    if let (Some(dashboard), Some(id), false) = (
        &admin.dashboard,
        session,
        parts.headers.contains_key(CREDENTIAL_HEADER),
    ) {
        let live = match dashboard.check(
            &admin.hub.inner.admission,
            &parts.method,
            &parts.headers,
            id,
        ) {
            Ok(live) => live,
            Err(refused) => {
                admin.hub.audit(
                    AuditEvent::new(
                        AuditKind::AdminCall,
                        format!("{call} refused (dashboard): {}", refused.status().as_u16()),
                    )
                    .address(ip),
                );
                return refused;
            }
        };
        let changes = !matches!(parts.method.as_str(), "GET" | "HEAD");
        let mut request = Request::from_parts(parts, Body::from(body));
        request.extensions_mut().insert(Caller(live.actor.clone()));
        let response = next.run(request).await;
        // Reads are not recorded: the page polls every second, and its
        // login is (an `admin_session` event).
        if changes {
            admin.hub.audit(
                AuditEvent::new(
                    AuditKind::AdminCall,
                    format!("{call} -> {} (dashboard)", response.status().as_u16()),
                )
                .actor(live.actor)
                .address(ip),
            );
        }
        return response;
    }
    let now = crate::time::now_ms() / 1000;
    let caller = match admin.verify(&parts.headers, parts.method.as_str(), &target, &body, now) {
        Ok(caller) => caller,
        Err(refusal) => {
            admin.refused(ip, &call, &refusal);
            return failure(refusal.status(), refusal.message());
        }
    };
    let mut request = Request::from_parts(parts, Body::from(body));
    request.extensions_mut().insert(Caller(caller.clone()));
    let response = next.run(request).await;
    admin.hub.audit(
        AuditEvent::new(
            AuditKind::AdminCall,
            format!("{call} -> {}", response.status().as_u16()),
        )
        .actor(caller)
        .address(ip),
    );
    response
}

/// Why a call was refused before it ran.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// A header is missing or malformed.
    Malformed(&'static str),
    /// No such credential, or the signature does not match.
    BadSignature,
    /// The timestamp is outside the window.
    Stale,
    /// The nonce was used before.
    Replayed,
    /// Too many calls within the window.
    Busy,
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::Malformed(_) => StatusCode::BAD_REQUEST,
            Refusal::BadSignature | Refusal::Stale | Refusal::Replayed => StatusCode::UNAUTHORIZED,
            Refusal::Busy => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn message(&self) -> String {
        match self {
            Refusal::Malformed(what) => (*what).to_owned(),
            Refusal::BadSignature => "the signature does not match".to_owned(),
            Refusal::Stale => {
                "the timestamp is outside the accepted window; check the clock".to_owned()
            }
            Refusal::Replayed => {
                "this nonce was used before: sign each request with a new one".to_owned()
            }
            Refusal::Busy => "too many admin calls within the window; retry later".to_owned(),
        }
    }
}

impl Admin {
    /// The credential that signed the request, or why it is refused.
    fn verify(
        &self,
        headers: &HeaderMap,
        method: &str,
        target: &str,
        body: &Bytes,
        now: u64,
    ) -> Result<String, Refusal> {
        let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        let who = text(CREDENTIAL_HEADER).ok_or(Refusal::Malformed(
            "sign the request: x-sacred-admin, x-sacred-timestamp, x-sacred-nonce and x-sacred-signature",
        ))?;
        let timestamp = text(TIMESTAMP_HEADER)
            .and_then(|t| t.parse::<u64>().ok())
            .ok_or(Refusal::Malformed("x-sacred-timestamp: Unix seconds"))?;
        let nonce = text(NONCE_HEADER)
            .filter(|nonce| sign::valid_nonce(nonce))
            .ok_or(Refusal::Malformed(
                "x-sacred-nonce: 16 to 128 of A-Z a-z 0-9 - _",
            ))?;
        let signature = text(SIGNATURE_HEADER)
            .ok_or(Refusal::Malformed("x-sacred-signature: hex HMAC-SHA256"))?;
        let Some(secret) = self.credentials.get(who) else {
            return Err(Refusal::BadSignature);
        };
        if !sign::verify(secret, signature, method, target, timestamp, nonce, body) {
            return Err(Refusal::BadSignature);
        }
        if now.abs_diff(timestamp) > self.window.as_secs() {
            return Err(Refusal::Stale);
        }
        match self.nonces.take(who, nonce, timestamp, now) {
            Ok(()) => Ok(who.to_owned()),
            Err(NonceRefused::Replayed) => Err(Refusal::Replayed),
            Err(NonceRefused::Full) => Err(Refusal::Busy),
        }
    }

    /// Records a refused call; a bad signature counts against the address
    /// as a failed authentication (and may lock it out).
    fn refused(&self, ip: Option<IpAddr>, call: &str, refusal: &Refusal) {
        self.hub.audit(
            AuditEvent::new(
                AuditKind::AdminCall,
                format!("{call} refused: {}", refusal.message()),
            )
            .address(ip),
        );
        if let (Refusal::BadSignature, Some(ip)) = (refusal, ip) {
            self.hub.failed_authentication(ip);
        }
    }
}
