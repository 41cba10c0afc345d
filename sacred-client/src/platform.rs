//! The one thing besides the transport that differs between targets: whether
//! futures and callbacks must be `Send`. Natively the connection task runs on
//! a multi-threaded tokio runtime, so they must; in the browser everything
//! runs on one thread and JavaScript values are never `Send`.

use std::future::Future;
use std::pin::Pin;

/// `Send` on native targets, nothing on wasm32 (where futures holding
/// JavaScript values are not `Send`). Implemented for every type that qualifies.
#[cfg(not(target_arch = "wasm32"))]
pub trait SendOutsideWasm: Send {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + ?Sized> SendOutsideWasm for T {}

/// `Send` on native targets, nothing on wasm32 (where futures holding
/// JavaScript values are not `Send`). Implemented for every type that qualifies.
#[cfg(target_arch = "wasm32")]
pub trait SendOutsideWasm {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> SendOutsideWasm for T {}

/// `Sync` on native targets, nothing on wasm32. Implemented for every type
/// that qualifies.
#[cfg(not(target_arch = "wasm32"))]
pub trait SyncOutsideWasm: Sync {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Sync + ?Sized> SyncOutsideWasm for T {}

/// `Sync` on native targets, nothing on wasm32. Implemented for every type
/// that qualifies.
#[cfg(target_arch = "wasm32")]
pub trait SyncOutsideWasm {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> SyncOutsideWasm for T {}

/// A boxed future the connection task can hold: `Send` where it must be.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) type BoxedFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A boxed future the connection task can hold: `Send` where it must be.
#[cfg(target_arch = "wasm32")]
pub(crate) type BoxedFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// A shared callback the connection task can hold: `Send + Sync` where it must be.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) type SharedFn<T> = std::sync::Arc<dyn Fn() -> T + Send + Sync>;

/// A shared callback the connection task can hold: `Send + Sync` where it must be.
#[cfg(target_arch = "wasm32")]
pub(crate) type SharedFn<T> = std::sync::Arc<dyn Fn() -> T>;
