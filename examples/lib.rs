//! Runnable examples for Sacred, one per topic:
//!
//! - `embed`: a host axum app that mounts Sacred under `/rt` beside its own
//!   routes and publishes from host code (`cargo run --example embed`).
//! - `chat`: a terminal chat on `sacred-client`
//!   (`cargo run --example chat -- --name ada lobby`).
//! - `watch`: watch a hub from a terminal, or publish to it
//!   (`cargo run --example watch -- chat:lobby`).
