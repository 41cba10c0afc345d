//! The runtime the module owns, and [`Pending`]: one call into the client,
//! awaited from asyncio or waited for from a thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pyo3::IntoPyObjectExt;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use tokio::runtime::Runtime;

use crate::error;

/// What a call resolves to, already converted to Python.
pub(crate) type Outcome = PyResult<Py<PyAny>>;

/// A call's work, not started until awaited or waited for.
type Work = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// How often a blocking wait looks for a signal (Ctrl-C) to deliver.
const SIGNAL_CHECK: Duration = Duration::from_millis(50);

/// Two worker threads: the client's tasks do little but move bytes, and a
/// Python program rarely holds more than a few clients.
pub(crate) fn configure_runtime() {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .worker_threads(2)
        .thread_name("sacred-client")
        .enable_all();
    pyo3_async_runtimes::tokio::init(builder);
}

/// The module's runtime (built on first use).
pub(crate) fn runtime() -> &'static Runtime {
    pyo3_async_runtimes::tokio::get_runtime()
}

/// A call into the client that has not finished. `await` it on an asyncio
/// event loop, or call `wait()` from a thread that runs none; either once.
#[pyclass(frozen, module = "sacred_client._native")]
pub(crate) struct Pending {
    work: Mutex<Option<Work>>,
}

impl Pending {
    /// Wraps `work`, whose value is converted to Python when it resolves.
    pub(crate) fn new<F, T>(work: F) -> Pending
    where
        F: Future<Output = PyResult<T>> + Send + 'static,
        T: for<'py> IntoPyObject<'py> + Send + 'static,
    {
        let mut work: Work = Box::pin(async move {
            let value = work.await?;
            Python::attach(|py| value.into_py_any(py))
        });
        // Polled once now, so that what the call sends is queued in the
        // order the calls were made, not in the order the runtime's threads
        // happen to poll them (the client's calls send on their first poll).
        let _runtime = runtime().enter();
        let mut first = Context::from_waker(Waker::noop());
        let work = match work.as_mut().poll(&mut first) {
            Poll::Ready(outcome) => Box::pin(std::future::ready(outcome)),
            Poll::Pending => work,
        };
        Pending {
            work: Mutex::new(Some(work)),
        }
    }

    fn take(&self) -> PyResult<Work> {
        self.work
            .lock()
            .map_err(|_| PyRuntimeError::new_err("a call panicked"))?
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("this call was already awaited"))
    }
}

#[pymethods]
impl Pending {
    fn __await__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let work = self.take()?;
        let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
        let future = event_loop.call_method0("create_future")?;
        let resolve = py.import("sacred_client._common")?.getattr("resolve")?;
        let (target, on_loop, resolve) = (
            future.clone().unbind(),
            event_loop.unbind(),
            resolve.unbind(),
        );
        let running = InFlight::start();
        let task = runtime().spawn(async move {
            let outcome = work.await;
            // Every reference to Python is used and dropped here, with the
            // GIL, and the count drops after: once it is zero, no runtime
            // thread touches the interpreter (see `settle`).
            Python::attach(move |py| {
                let (ok, value) = match outcome {
                    Ok(value) => (true, value),
                    Err(err) => (false, err.into_value(py).into_any()),
                };
                // A closed loop refuses the callback; nobody waits any more.
                let _ =
                    on_loop.call_method1(py, "call_soon_threadsafe", (resolve, target, ok, value));
            });
            drop(running);
        });
        // Cancelling the asyncio future drops the work.
        future.call_method1("add_done_callback", (AbortOnCancel(task.abort_handle()),))?;
        future.call_method0("__await__")
    }

    /// Blocks this thread until the call resolves (at most `timeout`
    /// seconds), with the GIL released; a signal such as Ctrl-C interrupts it.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> Outcome {
        let work = self.take()?;
        block(py, work, timeout)
    }

    fn __repr__(&self) -> &'static str {
        "<sacred_client._native.Pending>"
    }
}

/// Calls awaited from asyncio whose work has not finished with Python yet.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// One call awaited from asyncio, counted while it runs.
struct InFlight;

impl InFlight {
    fn start() -> InFlight {
        IN_FLIGHT.fetch_add(1, Ordering::AcqRel);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The done-callback that aborts a call's work when its future is cancelled.
#[pyclass(frozen, module = "sacred_client._native")]
struct AbortOnCancel(tokio::task::AbortHandle);

#[pymethods]
impl AbortOnCancel {
    fn __call__(&self, future: &Bound<'_, PyAny>) -> PyResult<()> {
        if future.call_method0("cancelled")?.is_truthy()? {
            self.0.abort();
        }
        Ok(())
    }
}

/// Waits (the GIL released) until no call awaited from asyncio is still
/// finishing on a runtime thread, at most `timeout` seconds; whether none is.
/// The package calls it at interpreter exit, before finalisation, so that no
/// runtime thread takes the GIL of a dying interpreter.
#[pyfunction]
#[pyo3(signature = (timeout = 2.0))]
pub(crate) fn settle(py: Python<'_>, timeout: f64) -> PyResult<bool> {
    let deadline = std::time::Instant::now() + seconds(timeout)?;
    Ok(py.detach(|| {
        while IN_FLIGHT.load(Ordering::Acquire) > 0 {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }))
}

/// Runs `work` on this thread, the GIL released, checking for signals.
fn block(py: Python<'_>, work: Work, timeout: Option<f64>) -> Outcome {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(PyRuntimeError::new_err(
            "a blocking call from inside the client's runtime (a token provider?) would deadlock",
        ));
    }
    let timeout = timeout.map(seconds).transpose()?;
    // Only the main thread receives signals; elsewhere nothing is checked,
    // so a waiting thread never takes the GIL until its call resolves.
    let main_thread = {
        let threading = py.import("threading")?;
        threading
            .call_method0("current_thread")?
            .is(&threading.call_method0("main_thread")?)
    };
    py.detach(|| {
        runtime().block_on(async move {
            let bounded = async move {
                match timeout {
                    Some(limit) => tokio::time::timeout(limit, work)
                        .await
                        .unwrap_or_else(|_| Err(error::timeout("no answer within the timeout"))),
                    None => work.await,
                }
            };
            let signalled = async {
                if !main_thread {
                    return std::future::pending().await;
                }
                loop {
                    tokio::time::sleep(SIGNAL_CHECK).await;
                    if let Err(err) = Python::attach(|py| py.check_signals()) {
                        return err;
                    }
                }
            };
            tokio::select! {
                outcome = bounded => outcome,
                err = signalled => Err(err),
            }
        })
    })
}

/// A timeout in seconds, as Python APIs take it.
pub(crate) fn seconds(value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        crate::error::exception(
            "ConfigurationError",
            format!("a time must be 0 or more seconds, not {value}"),
            None,
            false,
        )
    })
}
