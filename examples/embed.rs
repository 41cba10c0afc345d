//! A host application that mounts Sacred beside its own routes and layers,
//! and publishes from host code every time someone calls `POST /orders/:id/ship`.
//!
//! Run with: cargo run --example embed
//! Then: cargo run --example watch -- --url ws://127.0.0.1:3000/rt/ws orders:42
//! and:  curl -X POST http://127.0.0.1:3000/orders/42/ship

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use sacred_server::{Hub, NamespaceOptions, Value};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // One value to mount, one to program against.
    let (realtime, hub) = Hub::builder()
        .namespace("orders", NamespaceOptions::default())
        .rpc("orders.count", |_ctx, _data| async {
            Ok(Value::from(42u64))
        })
        .build()?;

    let app = Router::new()
        .route("/", get(|| async { "the shop's own home page" }))
        .route("/orders/{id}/ship", post(ship))
        .with_state(hub.clone())
        .nest("/rt", realtime);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("host app on http://127.0.0.1:3000, Sacred on ws://127.0.0.1:3000/rt/ws");
    let listener = listener.tap_io(|tcp| drop(tcp.set_nodelay(true)));
    // With connect info, Sacred's authenticator and hooks see each client's address.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            hub.shutdown().await;
        })
        .await?;
    Ok(())
}

async fn ship(
    State(hub): State<Hub>,
    Path(id): Path<u64>,
) -> Result<Json<serde_json::Value>, String> {
    let data = Value::from(serde_json::json!({"order": id, "status": "shipped"}));
    let ack = hub
        .publish(&format!("orders:{id}"), data)
        .await
        .map_err(|err| err.to_string())?;
    Ok(Json(serde_json::json!({"published_at_offset": ack.offset})))
}
