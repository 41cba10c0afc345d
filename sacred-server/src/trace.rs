//! Spans of the message flow, and the W3C trace context a publish carries to
//! its publications (docs/protocol.md, "Trace context").
//!
//! The spans are at `DEBUG` level under the `sacred_server` target, so they
//! cost a disabled callsite unless a subscriber asks for them (the
//! binary's OTLP exporter does, its log lines do not):
//!
//! - `connect`: `client.id`, `client.name`, `client.kind`, `client.runtime`,
//!   and `error.code` (the close code) when refused.
//! - one per command but `pong`, named after it (`publish`, `subscribe`, ...):
//!   `client.id`, `client.kind`, `channel`, and `error.code` when refused.
//! - `broker.publish` inside `publish`: the broker (and store) accepting it.
//! - `deliver`: a publication reaching this node's subscribers of `channel`,
//!   with `deliveries`; on every node, a child of the publish's span through
//!   the publication's `traceparent`.
//!
//! With the `otlp` feature a publish's `traceparent` becomes the parent of
//! its span, and the publication carries that span's context on; without it
//! (or when no OpenTelemetry layer records the span) the value passes through
//! unchanged.

use sacred_proto::{CommandKind, Peer};
use tracing::Span;
use tracing::field::Empty;

/// The span of a connect; `client.id` is recorded once the client has one.
pub(crate) fn connect_span(info: &sacred_proto::ClientInfo) -> Span {
    tracing::debug_span!(
        "connect",
        client.id = Empty,
        client.name = %info.name,
        client.kind = %info.kind,
        client.runtime = %info.runtime,
        error.code = Empty,
    )
}

/// The span of one command of a connected client, named after the command.
pub(crate) fn command_span(kind: CommandKind, peer: &Peer, channel: Option<&str>) -> Span {
    tracing::debug_span!(
        "command",
        otel.name = kind.name(),
        client.id = %peer.id,
        client.kind = %peer.info.kind,
        channel = channel,
        error.code = Empty,
        otel.status_code = Empty,
    )
}

/// Marks `span` as refused with `code`.
pub(crate) fn refused(span: &Span, code: u32) {
    span.record("error.code", code);
    span.record("otel.status_code", "ERROR");
}

/// The span of a publication handed to the broker.
pub(crate) fn broker_span(channel: &str) -> Span {
    tracing::debug_span!("broker.publish", channel = channel)
}

/// The span of a publication delivered to this node's subscribers.
pub(crate) fn deliver_span(channel: &str, traceparent: Option<&str>) -> Span {
    let span = tracing::debug_span!("deliver", channel = channel, deliveries = Empty);
    if let Some(traceparent) = traceparent {
        continue_trace(&span, traceparent);
    }
    span
}

/// Makes `traceparent` (already validated) the parent of `span`.
#[cfg(feature = "otlp")]
pub(crate) fn continue_trace(span: &Span, traceparent: &str) {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    if span.is_disabled() {
        return;
    }
    let field = |range: std::ops::Range<usize>| traceparent.get(range).unwrap_or_default();
    let (Ok(trace), Ok(parent), Ok(flags)) = (
        TraceId::from_hex(field(3..35)),
        SpanId::from_hex(field(36..52)),
        u8::from_str_radix(field(53..55), 16),
    ) else {
        return;
    };
    let remote = SpanContext::new(
        trace,
        parent,
        TraceFlags::new(flags),
        true,
        TraceState::NONE,
    );
    // Refused only once the span has started, which it has not.
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

/// Without OpenTelemetry there is no span context to continue.
#[cfg(not(feature = "otlp"))]
pub(crate) fn continue_trace(_: &Span, _: &str) {}

/// The `traceparent` a publication carries: `span`'s context when an
/// OpenTelemetry layer records it (the same trace id and flags as the
/// publish's, `span`'s id as the parent), else `incoming` unchanged.
#[cfg(feature = "otlp")]
pub(crate) fn outgoing(span: &Span, incoming: Option<String>) -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    if span.is_disabled() {
        return incoming;
    }
    let context = span.context();
    let span = context.span();
    let span = span.span_context();
    if !span.is_valid() {
        return incoming;
    }
    Some(format!(
        "00-{}-{}-{:02x}",
        span.trace_id(),
        span.span_id(),
        span.trace_flags().to_u8()
    ))
}

/// Without OpenTelemetry the publish's value passes through.
#[cfg(not(feature = "otlp"))]
pub(crate) fn outgoing(_: &Span, incoming: Option<String>) -> Option<String> {
    incoming
}
