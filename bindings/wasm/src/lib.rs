//! The WebAssembly half of Sacred's browser package. It only translates:
//! reconnect, recovery, batching and the offline queue are `sacred-client`'s
//! browser transport, running on the page's event loop. The JavaScript layer
//! (`js/index.js`, typed by `js/index.d.ts`) is what pages import; it adds the
//! event emitters, async iterators, `AbortSignal`s and error classes that
//! wasm-bindgen cannot express. This module's exports (`Raw*`) are internal.
//!
//! Every call returns a `Promise`. Streams hand over what waits as an array
//! (`nextBatch`), or as the JSON text of one when JSON carries every item
//! exactly (much cheaper to cross; see `json.rs`), `null` once they ended. Errors are plain objects
//! `{kind, message, code, temporary}` that the JavaScript layer turns into
//! its classes, so `instanceof` sees one class per kind whichever module
//! instance raised it.

#[cfg(target_arch = "wasm32")]
mod client;
#[cfg(target_arch = "wasm32")]
mod error;
#[cfg(target_arch = "wasm32")]
mod json;
#[cfg(target_arch = "wasm32")]
mod stream;
#[cfg(target_arch = "wasm32")]
mod value;
