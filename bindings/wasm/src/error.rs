//! `sacred_client::Error` as the plain object the JavaScript layer turns
//! into one of its error classes: `{kind, message, code, temporary}`.

use js_sys::{Object, Reflect};
use sacred_client::{Category, Error};
use wasm_bindgen::JsValue;

/// An error descriptor of `kind` (the JavaScript class's name).
pub(crate) fn descriptor(kind: &str, message: &str, code: Option<u32>, temporary: bool) -> JsValue {
    let object = Object::new();
    let set = |key: &str, value: JsValue| {
        // Setting a property of a fresh plain object cannot fail.
        let _ = Reflect::set(&object, &JsValue::from_str(key), &value);
    };
    set("sacredError", JsValue::TRUE);
    set("kind", JsValue::from_str(kind));
    set("message", JsValue::from_str(message));
    set("code", code.map_or(JsValue::NULL, JsValue::from));
    set("temporary", JsValue::from_bool(temporary));
    object.into()
}

/// A payload or argument the protocol cannot carry.
pub(crate) fn invalid(message: impl Into<String>) -> JsValue {
    descriptor("InvalidError", &message.into(), None, false)
}

/// The class a caller would catch for `err`.
fn kind_of(err: &Error) -> &'static str {
    match err.category() {
        Category::Timeout => "TimeoutError",
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

/// The descriptor for a client error.
pub(crate) fn to_js(err: Error) -> JsValue {
    let message = match err.server_message() {
        Some(words) if err.is_server() => words.to_owned(),
        _ => err.to_string(),
    };
    descriptor(kind_of(&err), &message, err.code(), err.is_temporary())
}
