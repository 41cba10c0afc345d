//! `sacred_client::Error` as the Python exceptions of
//! `sacred_client.exceptions` (defined in Python, so they carry attributes,
//! docstrings and builtin bases such as `TimeoutError`).

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use sacred_client::{Category, Error};

/// The module the exception classes live in.
const EXCEPTIONS: &str = "sacred_client.exceptions";

/// Builds `sacred_client.exceptions.<class>(message, code=..., temporary=...)`.
pub(crate) fn exception(class: &str, message: String, code: Option<u32>, temporary: bool) -> PyErr {
    Python::attach(|py| {
        let build = || -> PyResult<PyErr> {
            let class = py.import(EXCEPTIONS)?.getattr(class)?;
            let options = PyDict::new(py);
            options.set_item("code", code)?;
            options.set_item("temporary", temporary)?;
            Ok(PyErr::from_value(class.call((message,), Some(&options))?))
        };
        build().unwrap_or_else(|err| {
            PyRuntimeError::new_err(format!("sacred_client.exceptions is unusable: {err}"))
        })
    })
}

/// An `OperationTimeoutError` (also a builtin `TimeoutError`).
pub(crate) fn timeout(message: &str) -> PyErr {
    exception("OperationTimeoutError", message.to_owned(), None, true)
}

/// A payload or argument the protocol cannot carry.
pub(crate) fn invalid(message: String) -> PyErr {
    exception("InvalidError", message, None, false)
}

/// The exception class for a client error: the most specific one a caller
/// would catch.
fn class_of(err: &Error) -> &'static str {
    match err.category() {
        Category::Timeout => "OperationTimeoutError",
        Category::TooLarge => "TooLargeError",
        Category::Unauthorized => "UnauthorizedError",
        Category::AlreadySubscribed => "DuplicateSubscriptionError",
        Category::Refused => "RefusedError",
        Category::Closed => "ClientClosedError",
        Category::PermissionDenied => "PermissionDeniedError",
        Category::UnrecoverablePosition => "UnrecoverablePositionError",
        Category::Reply => "ReplyError",
        Category::Disconnected => "DisconnectedError",
        Category::OfflineQueue => "OfflineQueueError",
        Category::Invalid => "InvalidError",
        Category::Token => "TokenError",
        Category::Builder => "ConfigurationError",
        _ => "TransportError",
    }
}

/// The Python exception for `err`.
pub(crate) fn to_py(err: Error) -> PyErr {
    let class = class_of(&err);
    let message = match err.server_message() {
        Some(words) if err.is_server() => words.to_owned(),
        _ => err.to_string(),
    };
    exception(class, message, err.code(), err.is_temporary())
}
