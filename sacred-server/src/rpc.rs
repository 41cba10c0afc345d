//! RPC handlers the host registers by method name, and what they receive.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use sacred_proto::{ErrorCode, Peer, ReplyError, Value};

/// Who is calling: passed to every RPC handler.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RpcContext {
    /// The caller's connection, user and self-description.
    pub caller: Peer,
    /// The method called.
    pub method: String,
}

/// An application error from an RPC handler, sent to the caller as
/// `{"error": {code, message, temporary}}`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RpcError {
    code: ErrorCode,
    message: String,
    temporary: bool,
}

impl RpcError {
    /// An error with an application code (400-1999); codes outside that range
    /// are replaced by 400, since 100-399 are Sacred's.
    pub fn new(code: u32, message: impl Into<String>) -> RpcError {
        let code =
            ErrorCode::application(code).unwrap_or(ErrorCode::from_u32(ErrorCode::APPLICATION_MIN));
        RpcError {
            code,
            message: message.into(),
            temporary: false,
        }
    }

    /// Marks the error as temporary: the caller may retry.
    pub fn temporary(mut self) -> RpcError {
        self.temporary = true;
        self
    }
}

impl From<RpcError> for ReplyError {
    fn from(err: RpcError) -> ReplyError {
        let mut reply = ReplyError::new(err.code, err.message);
        reply.temporary = err.temporary;
        reply
    }
}

/// What a handler returns, boxed.
type RpcFuture = BoxFuture<'static, Result<Value, RpcError>>;

/// A registered handler, type-erased.
#[derive(Clone)]
pub(crate) struct RpcHandler(Arc<dyn Fn(RpcContext, Value) -> RpcFuture + Send + Sync>);

impl RpcHandler {
    pub(crate) fn new<F, Fut>(handler: F) -> RpcHandler
    where
        F: Fn(RpcContext, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, RpcError>> + Send + 'static,
    {
        RpcHandler(Arc::new(move |ctx, data| Box::pin(handler(ctx, data))))
    }

    pub(crate) fn call(
        &self,
        ctx: RpcContext,
        data: Value,
    ) -> BoxFuture<'static, Result<Value, RpcError>> {
        (self.0)(ctx, data)
    }
}

impl fmt::Debug for RpcHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RpcHandler")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_outside_the_application_range_become_400() {
        assert_eq!(ReplyError::from(RpcError::new(404, "x")).code, 404);
        assert_eq!(ReplyError::from(RpcError::new(103, "x")).code, 400);
        assert!(ReplyError::from(RpcError::new(503, "busy").temporary()).temporary);
    }
}
