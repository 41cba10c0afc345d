//! The admin API's key routes (feature `sqlite`): `GET/POST /admin/api/keys`,
//! `DELETE /admin/api/keys/{id}`, `POST /admin/api/keys/{id}/rotate`.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sacred_proto::DisconnectCode;
use serde::Deserialize;

use super::{Admin, Caller, failure};
use crate::auth::keys::{NewKey, SqliteKeys};

/// The longest rotation grace the API accepts: 30 days.
const MAX_GRACE_SECS: u64 = 30 * 86_400;

fn keys(admin: &Admin) -> Result<&SqliteKeys, Box<Response>> {
    admin.keys.as_ref().ok_or_else(|| {
        Box::new(failure(
            StatusCode::NOT_FOUND,
            "no key store (run with --store)",
        ))
    })
}

/// `GET /admin/api/keys?user=`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListParams {
    user: Option<String>,
}

pub(super) async fn list(
    State(admin): State<Arc<Admin>>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let keys = match keys(&admin) {
        Ok(keys) => keys,
        Err(response) => return *response,
    };
    let Query(params) = match params {
        Ok(params) => params,
        Err(err) => return failure(StatusCode::BAD_REQUEST, err.body_text()),
    };
    match keys.list(params.user.as_deref()).await {
        Ok(records) => Json(records).into_response(),
        Err(err) => failure(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
    }
}

/// `POST /admin/api/keys`: `{"user", "name", "tier"?, "expires_ms"?}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBody {
    user: String,
    name: String,
    tier: Option<String>,
    expires_ms: Option<u64>,
}

pub(super) async fn create(
    State(admin): State<Arc<Admin>>,
    Extension(Caller(caller)): Extension<Caller>,
    body: Result<Json<CreateBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let keys = match keys(&admin) {
        Ok(keys) => keys,
        Err(response) => return *response,
    };
    let Json(body) = match body {
        Ok(body) => body,
        Err(err) => return failure(StatusCode::BAD_REQUEST, err.body_text()),
    };
    if body.user.is_empty() || body.name.is_empty() {
        return failure(StatusCode::BAD_REQUEST, "user and name: not empty");
    }
    let mut key = NewKey::new(body.user, body.name);
    key.tier = body.tier;
    key.expires_ms = body.expires_ms;
    match keys.by(caller).create(key).await {
        Ok(created) => (
            StatusCode::CREATED,
            Json(serde_json::json!({ "key": created.record, "secret": created.secret })),
        )
            .into_response(),
        Err(err) => failure(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
    }
}

/// `DELETE /admin/api/keys/{id}`: revoked, its live connections closed now.
pub(super) async fn revoke(
    State(admin): State<Arc<Admin>>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let keys = match keys(&admin) {
        Ok(keys) => keys,
        Err(response) => return *response,
    };
    match keys.by(caller).revoke(&id).await {
        Ok(Some(record)) => {
            let closed = admin
                .hub
                .disconnect_credential(&record.id, DisconnectCode::INVALID_TOKEN);
            Json(serde_json::json!({ "key": record, "disconnected": closed })).into_response()
        }
        Ok(None) => failure(StatusCode::NOT_FOUND, format!("no key {id}")),
        Err(err) => failure(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
    }
}

/// `POST /admin/api/keys/{id}/rotate`: `{"grace_secs": N}` (default 86400).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RotateBody {
    grace_secs: Option<u64>,
}

pub(super) async fn rotate(
    State(admin): State<Arc<Admin>>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Json<RotateBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let keys = match keys(&admin) {
        Ok(keys) => keys,
        Err(response) => return *response,
    };
    let Json(body) = match body {
        Ok(body) => body,
        Err(err) => return failure(StatusCode::BAD_REQUEST, err.body_text()),
    };
    let grace = body.grace_secs.unwrap_or(86_400);
    if grace > MAX_GRACE_SECS {
        return failure(
            StatusCode::BAD_REQUEST,
            format!("grace_secs: at most {MAX_GRACE_SECS}"),
        );
    }
    match keys
        .by(caller)
        .rotate(&id, Duration::from_secs(grace))
        .await
    {
        Ok(Some(created)) => Json(serde_json::json!({
            "key": created.record,
            "secret": created.secret,
            "replaces": id,
        }))
        .into_response(),
        Ok(None) => failure(StatusCode::NOT_FOUND, format!("no active key {id}")),
        Err(err) => failure(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
    }
}
