//! `sacred_client._native`: the Rust half of the `sacred_client` Python
//! package. It only translates: reconnect, recovery, batching, the offline
//! queue and the clock are `sacred-client`'s, run on one tokio runtime the
//! module owns. The typed Python facade (`python/sacred_client/`) is what
//! users import; this module's surface is described by `_native.pyi`.
//!
//! Every call that waits returns a `Pending`: `await` it
//! on an asyncio loop, or `wait()` for it from a thread (the blocking API).
//! Neither holds the GIL while the network is waited on, and Python code never
//! runs inside the client's connection task: values are converted, and the
//! token provider's coroutine is scheduled on the caller's event loop.

mod client;
mod error;
mod pending;
mod stream;
mod types;
mod value;

use pyo3::prelude::*;

/// The native module.
#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    pending::configure_runtime();
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    module.add_class::<client::Client>()?;
    module.add_class::<pending::Pending>()?;
    module.add_function(wrap_pyfunction!(pending::settle, module)?)?;
    module.add_class::<stream::Subscription>()?;
    module.add_class::<stream::Messages>()?;
    module.add_class::<types::Publication>()?;
    module.add_class::<types::Peer>()?;
    module.add_class::<types::Message>()?;
    module.add_class::<types::History>()?;
    module.add_class::<types::SearchResult>()?;
    module.add_class::<types::PublishResult>()?;
    Ok(())
}
