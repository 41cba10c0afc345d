//! The axum routes a host mounts: `/ws`, `/health`, `/ready`, and
//! `/metrics` when the hub was given a Prometheus handle.

use std::net::SocketAddr;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use sacred_proto::Codec;

use crate::admission::Refused;
use crate::connection::{self, Upgrade};
use crate::hub::Hub;
use crate::telemetry::Refusal;

/// The hard cap tungstenite enforces on one message, far above the protocol
/// limit so that oversize frames reach the hub and get a proper 3506 close.
const TRANSPORT_MESSAGE_CAP: usize = 64 * 1024;

/// Bytes tungstenite reads from the socket at a time. Its buffer is zeroed to
/// this size up front, so it is resident for every connection: tungstenite's
/// default, 128 KiB, made an idle connection cost 138 KB. It grows for a
/// larger frame. (docs/benchmarks.md, "Idle connections".)
const READ_BUFFER: usize = 2 * 1024;

/// Bytes of queued frames tungstenite collects before writing; a burst
/// leaves the buffer at about this capacity, so it bounds what an idle
/// connection keeps after one.
const WRITE_BUFFER: usize = 16 * 1024;

/// `/ws`, the probes and, unless `metrics_apart`, `/metrics`.
pub(crate) fn router(hub: Hub, metrics_apart: bool) -> Router {
    let router = probes(
        Router::new().route("/ws", get(upgrade)),
        &hub,
        !metrics_apart,
    );
    crate::headers::secure(router.with_state(hub))
}

/// `/health`, `/ready` and `/metrics`, for an internal address
/// ([`Hub::metrics_router`]).
pub(crate) fn internal(hub: Hub) -> Router {
    let router = probes(Router::new(), &hub, true);
    crate::headers::secure(router.with_state(hub))
}

/// Adds `/health`, `/ready` and, if `metrics` and the hub has a
/// recorder's handle, `/metrics`.
fn probes(router: Router<Hub>, hub: &Hub, metrics: bool) -> Router<Hub> {
    let router = router
        .route("/health", get(health))
        .route("/ready", get(ready));
    #[cfg(feature = "prometheus")]
    let router = match (&hub.inner.prometheus, metrics) {
        (Some(_), true) => router.route("/metrics", get(crate::prometheus::metrics)),
        _ => router,
    };
    #[cfg(not(feature = "prometheus"))]
    let _ = (hub, metrics);
    router
}

async fn upgrade(
    State(hub): State<Hub>,
    headers: HeaderMap,
    connect_info: Option<Extension<ConnectInfo<SocketAddr>>>,
    ws: WebSocketUpgrade,
) -> Response {
    let metrics = &hub.inner.metrics;
    if !hub.is_ready() {
        metrics.refused(Refusal::Draining);
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    let peer = connect_info.map(|Extension(ConnectInfo(addr))| addr);
    let client = match hub.inner.admission.check(&headers, peer) {
        Ok(client) => client,
        Err(refused) => {
            metrics.refused(match refused {
                Refused::TooMany(_) => Refusal::Rate,
                Refused::LockedOut(_) => Refusal::Lockout,
                Refused::Origin(_) => Refusal::Origin,
            });
            return refused.into_response();
        }
    };
    // Behind a trusted proxy, the address it names (its port unknown: 0).
    let remote_addr = match (peer, client) {
        (Some(peer), Some(ip)) if peer.ip().to_canonical() != ip => Some(SocketAddr::new(ip, 0)),
        _ => peer,
    };
    let offered = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok());
    let codec = match Codec::negotiate(offered) {
        Ok(codec) => codec,
        Err(err) => {
            metrics.refused(Refusal::Subprotocol);
            return (StatusCode::BAD_REQUEST, err.to_string()).into_response();
        }
    };
    let cap = TRANSPORT_MESSAGE_CAP.max(hub.options().limits.max_frame_bytes.saturating_mul(4));
    ws.protocols([codec.subprotocol()])
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(cap)
        .max_frame_size(cap)
        .on_upgrade(move |socket| {
            let upgrade = Upgrade {
                headers,
                remote_addr,
            };
            connection::serve(hub, socket, codec, upgrade)
        })
}

/// Probes are never cached: a stale 200 would hide a node going down.
const NO_STORE: [(header::HeaderName, &str); 1] = [(header::CACHE_CONTROL, "no-store")];

/// Liveness: 200 while the process serves HTTP, whatever its backends say
/// (a restart would not mend them), with the health report as JSON.
async fn health(State(hub): State<Hub>) -> impl IntoResponse {
    (NO_STORE, Json(hub.health()))
}

/// Readiness: 503 while draining, or while the broker or the history store
/// is down, so that a balancer sends new clients elsewhere.
async fn ready(State(hub): State<Hub>) -> impl IntoResponse {
    let (status, text) = if !hub.is_ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    } else if !hub.broker_available() {
        (StatusCode::SERVICE_UNAVAILABLE, "broker unavailable")
    } else if !hub.store_available() {
        (StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
    } else {
        (StatusCode::OK, "ready")
    };
    (status, NO_STORE, text)
}
