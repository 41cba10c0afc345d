//! The admin API's calls: what each reads from or does to the hub, once
//! the caller is authorized (signed, or a dashboard session).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use sacred_proto::{DisconnectCode, Value};
use serde::{Deserialize, Serialize};

use super::{Admin, Caller, failure};
use crate::audit::{AuditEvent, AuditKind, AuditQuery};

/// `GET /admin/api/stats`: this node's numbers now and its last five minutes.
pub(super) async fn stats(State(admin): State<Arc<Admin>>) -> Response {
    let totals = admin.hub.totals();
    Json(serde_json::json!({
        "node": admin.node,
        "connections": admin.hub.connections(),
        "channels": admin.hub.channels(),
        "publications": totals.publications,
        "deliveries": totals.deliveries,
        "lockouts": admin.hub.lockouts(),
        "uptime_secs": admin.hub.health().uptime_secs,
        "samples": admin.samples.list(),
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PresenceParams {
    channel: String,
}

/// `GET /admin/api/presence?channel=NAME`: who is subscribed (every node's
/// subscribers in a namespace with presence, this node's otherwise).
pub(super) async fn presence(
    State(admin): State<Arc<Admin>>,
    params: Result<Query<PresenceParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(params) = match params {
        Ok(params) => params,
        Err(err) => return failure(StatusCode::BAD_REQUEST, err.body_text()),
    };
    let peers: Vec<serde_json::Value> = admin
        .hub
        .presence(&params.channel)
        .await
        .into_iter()
        .map(|peer| {
            serde_json::json!({
                "id": peer.id,
                "user": peer.user,
                "name": peer.info.name,
                "kind": peer.info.kind,
                "runtime": peer.info.runtime,
            })
        })
        .collect();
    Json(peers).into_response()
}

/// `POST /admin/api/migrate`: every client here told to move.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MigrateBody {
    /// Where to (`ws://` or `wss://`); none: reconnect where they are.
    url: Option<String>,
    /// By when, milliseconds since the Unix epoch.
    at_ms: u64,
}

pub(super) async fn migrate(
    State(admin): State<Arc<Admin>>,
    Extension(Caller(caller)): Extension<Caller>,
    body: Result<Json<MigrateBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(err) => return failure(StatusCode::BAD_REQUEST, err.body_text()),
    };
    if let Some(url) = &body.url
        && !(url.starts_with("ws://") || url.starts_with("wss://"))
    {
        return failure(StatusCode::BAD_REQUEST, "url: a ws:// or wss:// URL");
    }
    let to = body
        .url
        .clone()
        .unwrap_or_else(|| "where they are".to_owned());
    let told = admin.hub.migrate(body.url, body.at_ms);
    // The strongest action there is: every client goes where this says.
    admin.hub.audit(
        AuditEvent::new(
            AuditKind::AdminCall,
            format!(
                "migrate: {told} clients told to reconnect to {to} by {}",
                body.at_ms
            ),
        )
        .actor(caller),
    );
    Json(serde_json::json!({ "told": told })).into_response()
}

/// A connected client, as the admin API lists it.
#[derive(Serialize)]
pub(super) struct ClientView {
    id: String,
    user: Option<String>,
    name: String,
    kind: String,
    runtime: String,
    connected_ms: u64,
}

pub(super) async fn connections(State(admin): State<Arc<Admin>>) -> Json<Vec<ClientView>> {
    let mut clients: Vec<ClientView> = admin
        .hub
        .clients()
        .into_iter()
        .map(|client| ClientView {
            id: client.peer.id,
            user: client.peer.user,
            name: client.peer.info.name,
            kind: client.peer.info.kind,
            runtime: client.peer.info.runtime,
            connected_ms: client.connected_ms,
        })
        .collect();
    clients.sort_by_key(|client| client.connected_ms);
    Json(clients)
}

#[derive(Serialize)]
pub(super) struct ChannelView {
    channel: String,
    subscribers: usize,
}

pub(super) async fn channels(State(admin): State<Arc<Admin>>) -> Json<Vec<ChannelView>> {
    let channels = admin
        .hub
        .channel_list()
        .into_iter()
        .map(|(channel, subscribers)| ChannelView {
            channel,
            subscribers,
        })
        .collect();
    Json(channels)
}

/// `POST /admin/api/disconnect`: one client, or every connection of a user.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DisconnectBody {
    client: Option<String>,
    user: Option<String>,
    /// The close code (default 3503 force disconnect: the client does not reconnect).
    code: Option<u16>,
}

pub(super) async fn disconnect(
    State(admin): State<Arc<Admin>>,
    Extension(Caller(caller)): Extension<Caller>,
    body: Result<Json<DisconnectBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(err) => return failure(StatusCode::BAD_REQUEST, err.body_text()),
    };
    let code = match body.code {
        None => DisconnectCode::FORCE_DISCONNECT,
        Some(code) if (3000..5000).contains(&code) => DisconnectCode::from_u16(code),
        Some(_) => {
            return failure(
                StatusCode::BAD_REQUEST,
                "code: a close code from 3000 to 4999",
            );
        }
    };
    let disconnected = match (body.client, body.user) {
        (Some(client), None) => usize::from(admin.hub.disconnect_by(&caller, &client, code)),
        (None, Some(user)) => {
            let closed = admin.hub.disconnect_user(&user, code);
            admin.hub.audit(
                AuditEvent::new(
                    AuditKind::ForcedDisconnect,
                    format!("{closed} connections, code {}", code.as_u16()),
                )
                .actor(caller)
                .user(Some(user)),
            );
            closed
        }
        _ => return failure(StatusCode::BAD_REQUEST, "name either a client or a user"),
    };
    Json(serde_json::json!({ "disconnected": disconnected })).into_response()
}

/// `POST /admin/api/broadcast`: a publication from the host.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BroadcastBody {
    channel: String,
    data: Value,
}

pub(super) async fn broadcast(
    State(admin): State<Arc<Admin>>,
    Extension(Caller(caller)): Extension<Caller>,
    body: Result<Json<BroadcastBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(err) => return failure(StatusCode::BAD_REQUEST, err.body_text()),
    };
    match admin.hub.publish(&body.channel, body.data).await {
        Ok(reply) => {
            let at = reply
                .offset
                .map(|o| format!(" at offset {o}"))
                .unwrap_or_default();
            admin.hub.audit(
                AuditEvent::new(
                    AuditKind::AdminCall,
                    format!("broadcast to {}{at}", body.channel),
                )
                .actor(caller),
            );
            Json(reply).into_response()
        }
        Err(err) => failure(StatusCode::BAD_REQUEST, err.to_string()),
    }
}

/// `DELETE /admin/api/users/{user}`: the user's connections closed, their
/// publications and last-seen records deleted.
pub(super) async fn delete_user(
    State(admin): State<Arc<Admin>>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(user): Path<String>,
) -> Response {
    let disconnected = admin
        .hub
        .disconnect_user(&user, DisconnectCode::FORCE_DISCONNECT);
    match admin.hub.forget_user(&user).await {
        Ok(publications) => {
            admin.hub.audit(
                AuditEvent::new(
                    AuditKind::UserDataDeleted,
                    format!("{publications} publications, {disconnected} connections closed"),
                )
                .actor(caller)
                .user(Some(user)),
            );
            Json(serde_json::json!({
                "publications": publications,
                "disconnected": disconnected,
            }))
            .into_response()
        }
        Err(err) => failure(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
    }
}

/// `GET /admin/api/audit?kind=&user=&before=&limit=`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditParams {
    kind: Option<String>,
    user: Option<String>,
    before: Option<u64>,
    limit: Option<usize>,
}

pub(super) async fn audit(
    State(admin): State<Arc<Admin>>,
    params: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(params) = match params {
        Ok(params) => params,
        Err(err) => return failure(StatusCode::BAD_REQUEST, err.body_text()),
    };
    let mut query = AuditQuery::new().limit(params.limit.unwrap_or(100).min(1000));
    if let Some(kind) = params.kind {
        match AuditKind::parse(&kind) {
            Some(kind) => query = query.kind(kind),
            None => {
                return failure(
                    StatusCode::BAD_REQUEST,
                    format!("kind: no such kind {kind:?}"),
                );
            }
        }
    }
    if let Some(user) = params.user {
        query = query.user(user);
    }
    if let Some(before) = params.before {
        query = query.before(before);
    }
    match admin.hub.audit_events(&query).await {
        Ok(events) => Json(events).into_response(),
        Err(err) => failure(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
    }
}
