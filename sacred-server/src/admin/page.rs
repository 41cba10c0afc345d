//! The admin dashboard at `/admin`: a plain page (HTML, one script, one
//! style sheet, compiled into the binary) under a strict Content-Security-
//! Policy, and its login, session and logout routes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;

use super::session::{self, Live, PasswordHashText, Sessions};
use super::{Admin, CSRF_HEADER, failure};
use crate::admission::Admission;
use crate::audit::{AuditEvent, AuditKind};

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/admin.js");
const STYLE: &str = include_str!("page/admin.css");

/// The page's own policy: its script and style sheet from this origin,
/// calls to this origin, nothing inline, nothing framed.
const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The dashboard's login and sessions.
pub(crate) struct Dashboard {
    /// Who the audit trail names for what the dashboard does.
    pub(crate) actor: String,
    pub(crate) password: PasswordHashText,
    pub(crate) sessions: Sessions,
    /// Whether the cookie is marked `Secure` (served over TLS).
    pub(crate) secure: bool,
    /// Password checks at once: argon2 takes a core for tens of
    /// milliseconds, so guesses cannot take every core.
    pub(crate) checking: Arc<tokio::sync::Semaphore>,
}

impl Dashboard {
    /// The live session `id`, if this call may use it: a state-changing
    /// call must carry the session's CSRF token and come from this origin.
    // The refusal is the response itself: once per refused call, off the
    // hot path, so its size does not matter.
    #[allow(clippy::result_large_err)]
    pub(crate) fn check(
        &self,
        admission: &Admission,
        method: &Method,
        headers: &HeaderMap,
        id: &str,
    ) -> Result<Live, Response> {
        let Some(live) = self.sessions.touch(id) else {
            let mut refused = failure(
                StatusCode::UNAUTHORIZED,
                "the session is unknown or expired: log in again",
            );
            self.clear(&mut refused);
            return Err(refused);
        };
        if matches!(method.as_str(), "GET" | "HEAD") {
            return Ok(live);
        }
        let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if !sent.is_some_and(|sent| session::csrf_matches(&live, sent)) {
            return Err(failure(
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token (x-sacred-csrf)",
            ));
        }
        if !admission.origin_allowed(headers) {
            return Err(failure(
                StatusCode::FORBIDDEN,
                "a request from another origin is refused",
            ));
        }
        Ok(live)
    }

    fn clear(&self, response: &mut Response) {
        if let Ok(value) = HeaderValue::from_str(&session::clear_cookie(self.secure)) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
    }
}

/// The session id the request's cookie carries, if any.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(session::cookie_session)
}

/// The page, its assets, and the login, session and logout routes.
pub(crate) fn routes(state: Arc<Admin>) -> Router {
    Router::new()
        .route("/admin", get(index))
        .route("/admin/", get(index))
        .route("/admin/admin.js", get(script))
        .route("/admin/admin.css", get(style))
        .route(
            "/admin/login",
            post(login).layer(DefaultBodyLimit::max(MAX_LOGIN_BODY)),
        )
        .route("/admin/session", get(current))
        .route("/admin/logout", post(logout))
        .layer(
            tower_http::set_header::SetResponseHeaderLayer::if_not_present(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            ),
        )
        .with_state(state)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, PAGE_CSP),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// The largest login body read: a password, not a file.
const MAX_LOGIN_BODY: usize = 4096;

/// The login body, as JSON or as a form.
#[derive(Deserialize)]
struct LoginBody {
    password: String,
}

/// `POST /admin/login`: the password checked against its hash; a session
/// cookie and its CSRF token on success, 401 otherwise (counted toward the
/// address's lockout), 429 while the address is locked out.
async fn login(
    State(admin): State<Arc<Admin>>,
    connect_info: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(dashboard) = &admin.dashboard else {
        return failure(StatusCode::NOT_FOUND, "the dashboard is off");
    };
    let admission = &admin.hub.inner.admission;
    let ip = connect_info.map(|Extension(ConnectInfo(peer))| {
        admission.client_ip(&headers, peer.ip().to_canonical())
    });
    // Without the peer's address (a host serving without connect info)
    // every login shares one lockout: wrong passwords still count.
    let key = ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    if !admission.origin_allowed(&headers) {
        return failure(
            StatusCode::FORBIDDEN,
            "a request from another origin is refused",
        );
    }
    if let Some(refused) = locked_out(admission, key) {
        return refused;
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    let parsed: Result<LoginBody, String> = if json {
        serde_json::from_slice(&body).map_err(|err| err.to_string())
    } else {
        form_urlencoded::parse(&body)
            .find(|(name, _)| name == "password")
            .map(|(_, password)| LoginBody {
                password: password.into_owned(),
            })
            .ok_or_else(|| "no password field".to_owned())
    };
    let Ok(LoginBody { password }) = parsed else {
        return failure(
            StatusCode::BAD_REQUEST,
            "send the password: {\"password\": \"...\"} or password=... as a form",
        );
    };
    // No queue: a check past the bound is refused at once, and the permit
    // goes with the check onto the blocking pool, so a caller that hangs
    // up does not free it while the hash still runs.
    let Ok(permit) = Arc::clone(&dashboard.checking).try_acquire_owned() else {
        let mut busy = failure(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many logins at once; retry in a second",
        );
        busy.headers_mut().insert(header::RETRY_AFTER, 1.into());
        return busy;
    };
    // Guesses sent together all passed the first look: look again now
    // that this one may run.
    if let Some(refused) = locked_out(admission, key) {
        return refused;
    }
    let hash = dashboard.password.clone();
    let right = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        hash.verify(&password)
    })
    .await
    .unwrap_or(false);
    if !right {
        admin.hub.audit(
            AuditEvent::new(AuditKind::AdminSession, "login refused: wrong password").address(ip),
        );
        admin.hub.failed_authentication(key);
        return failure(StatusCode::UNAUTHORIZED, "wrong password");
    }
    admission.lockout.succeeded(key);
    // A login over a live session ends that one: one browser, one session.
    if let Some(old) = session_cookie(&headers) {
        dashboard.sessions.end(old);
    }
    let (id, csrf) = dashboard.sessions.start(&dashboard.actor);
    admin.hub.audit(
        AuditEvent::new(AuditKind::AdminSession, "login")
            .actor(dashboard.actor.clone())
            .address(ip),
    );
    let cookie = session::set_cookie(&id, dashboard.sessions.limits(), dashboard.secure);
    let mut response = session_body(&admin, dashboard, csrf);
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// 429 with `Retry-After` while `key` is locked out.
fn locked_out(admission: &Admission, key: IpAddr) -> Option<Response> {
    let wait = admission.lockout.locked(key)?;
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut response = failure(
        StatusCode::TOO_MANY_REQUESTS,
        format!("this address failed to log in too often; retry in {secs} s"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, secs.into());
    Some(response)
}

/// What the page learns of its session: the CSRF token to send back, who
/// it acts as, and which node it shows.
fn session_body(admin: &Admin, dashboard: &Dashboard, csrf: String) -> Response {
    Json(serde_json::json!({
        "csrf": csrf,
        "actor": dashboard.actor,
        "node": admin.node,
    }))
    .into_response()
}

/// `GET /admin/session`: the session's CSRF token again (after a reload),
/// or 401.
async fn current(State(admin): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    let Some(dashboard) = &admin.dashboard else {
        return failure(StatusCode::NOT_FOUND, "the dashboard is off");
    };
    let Some(id) = session_cookie(&headers) else {
        return failure(StatusCode::UNAUTHORIZED, "log in");
    };
    match dashboard.check(&admin.hub.inner.admission, &Method::GET, &headers, id) {
        Ok(live) => session_body(&admin, dashboard, live.csrf),
        Err(refused) => refused,
    }
}

/// `POST /admin/logout`: the session ended and its cookie cleared.
async fn logout(
    State(admin): State<Arc<Admin>>,
    connect_info: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    let Some(dashboard) = &admin.dashboard else {
        return failure(StatusCode::NOT_FOUND, "the dashboard is off");
    };
    let Some(id) = session_cookie(&headers) else {
        return failure(StatusCode::UNAUTHORIZED, "not logged in");
    };
    if let Err(refused) = dashboard.check(&admin.hub.inner.admission, &Method::POST, &headers, id) {
        return refused;
    }
    let ip = connect_info.map(|Extension(ConnectInfo(peer))| {
        let admission = &admin.hub.inner.admission;
        admission.client_ip(&headers, peer.ip().to_canonical())
    });
    if let Some(actor) = dashboard.sessions.end(id) {
        admin.hub.audit(
            AuditEvent::new(AuditKind::AdminSession, "logout")
                .actor(actor)
                .address(ip),
        );
    }
    let mut response = Json(serde_json::json!({})).into_response();
    dashboard.clear(&mut response);
    response
}
