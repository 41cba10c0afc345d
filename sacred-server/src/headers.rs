//! Security headers on every HTTP response Sacred serves: what a browser
//! must not do with them (sniff a type, frame them, send a referrer on, run
//! anything they name), set only where the response has none, so a host app
//! that sets its own keeps them.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use tower_http::set_header::SetResponseHeaderLayer;

/// The header values, for tests and for hosts that want the same.
pub(crate) const HEADERS: [(HeaderName, &str); 4] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    // Nothing Sacred serves is a page that loads anything: the JSON
    // endpoints and the browser package's files (which pages of other
    // origins import, where a response's CSP does not apply) alike.
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'",
    ),
];

/// `router` with [`HEADERS`] on every response that lacks them.
pub(crate) fn secure<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    HEADERS.into_iter().fold(router, |router, (name, value)| {
        router.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ))
    })
}
