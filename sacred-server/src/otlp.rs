//! Spans exported to an OpenTelemetry collector over OTLP/HTTP (protobuf),
//! feature `otlp`.
//!
//! [`Otlp::install`] builds the exporter and returns the `tracing` layer to
//! add to your subscriber; Sacred's spans (see the `DEBUG` spans listed in
//! the crate docs) and your own then reach the collector, and a publish's
//! W3C `traceparent` becomes the parent of Sacred's span.
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//!
//! # fn run() -> Result<(), sacred_server::otlp::OtlpError> {
//! let otlp = sacred_server::otlp::Otlp::new("http://127.0.0.1:4318").sample_ratio(0.1);
//! let (layer, guard) = otlp.install()?;
//! tracing_subscriber::registry().with(layer).init();
//! // ... run the hub; dropping `guard` flushes what is still queued.
//! drop(guard);
//! # Ok(())
//! # }
//! ```
//!
//! A host with its own OpenTelemetry setup needs none of this: any
//! `tracing-opentelemetry` layer of the same OpenTelemetry version that lets
//! the `sacred_server` target's `DEBUG` spans through receives them.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Level;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::registry::LookupSpan;

/// The path OTLP/HTTP receivers take traces on.
const TRACES_PATH: &str = "/v1/traces";

/// How long one export may take, also the last one at shutdown: short, so
/// an unreachable collector cannot hold a stopping node past its grace
/// (the drain plus a few seconds).
const EXPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// An exporter setting [`Otlp::install`] refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtlpError {
    /// The endpoint is not an `http://` or `https://` URL.
    #[error("OTLP endpoint {0:?}: give an http:// or https:// URL (e.g. http://127.0.0.1:4318)")]
    Endpoint(String),
    /// The sampling ratio is outside 0..=1.
    #[error("OTLP sample ratio {0}: give a number from 0 to 1")]
    Ratio(f64),
    /// The exporter could not be built.
    #[error("cannot build the OTLP exporter: {0}")]
    Build(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// Where and how spans are exported; see the module docs.
#[derive(Clone, Debug)]
#[must_use]
pub struct Otlp {
    endpoint: String,
    ratio: f64,
    service: String,
}

impl Otlp {
    /// Export to the OTLP/HTTP receiver at `endpoint`: a base URL
    /// (`http://collector:4318`, to which `/v1/traces` is added, as with
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`) or the full traces URL. Every trace is
    /// sampled, under the service name `sacred-server` (`OTEL_SERVICE_NAME`
    /// overrides it).
    pub fn new(endpoint: impl Into<String>) -> Otlp {
        Otlp {
            endpoint: endpoint.into(),
            ratio: 1.0,
            service: std::env::var("OTEL_SERVICE_NAME")
                .unwrap_or_else(|_| "sacred-server".to_owned()),
        }
    }

    /// Exports this share of the traces (0 to 1), chosen by trace id: of
    /// those that start here, and of those a publisher's `traceparent`
    /// marks sampled (one it marks not sampled is not exported).
    pub fn sample_ratio(mut self, ratio: f64) -> Otlp {
        self.ratio = ratio;
        self
    }

    /// The `service.name` of the exported spans.
    pub fn service_name(mut self, name: impl Into<String>) -> Otlp {
        self.service = name.into();
        self
    }

    /// The full URL spans are posted to.
    pub fn traces_url(&self) -> Result<String, OtlpError> {
        let endpoint = self.endpoint.trim_end_matches('/');
        let rest = endpoint
            .strip_prefix("http://")
            .or_else(|| endpoint.strip_prefix("https://"))
            .filter(|rest| !rest.is_empty() && !rest.starts_with('/'))
            .ok_or_else(|| OtlpError::Endpoint(self.endpoint.clone()))?;
        Ok(if rest.contains('/') {
            endpoint.to_owned()
        } else {
            format!("{endpoint}{TRACES_PATH}")
        })
    }

    /// Builds the exporter (a batch processor posting from its own thread)
    /// and returns the layer for a `tracing` subscriber, filtered to
    /// Sacred's `DEBUG` spans and everyone's `INFO` ones, with the guard
    /// that flushes and stops the exporter when dropped.
    pub fn install<S>(&self) -> Result<(impl Layer<S> + use<S>, OtlpGuard), OtlpError>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        if !(0.0..=1.0).contains(&self.ratio) {
            return Err(OtlpError::Ratio(self.ratio));
        }
        let url = self.traces_url()?;
        // The exporter's client speaks https:// on rustls with ring, as the
        // JWKS client does; the first provider installed stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // The blocking HTTP client starts (and at the end stops) its own
        // runtime, which it may not do on a tokio worker: build it aside.
        let build = move || {
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(url)
                .with_timeout(EXPORT_TIMEOUT)
                .build()
        };
        let exporter = std::thread::scope(|scope| scope.spawn(build).join())
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            // A client's traceparent may say "sampled", but the ratio still
            // decides (by trace id, as every service with the same ratio
            // does): no client can make every publish exported.
            .with_sampler(
                Sampler::parent_based(Sampler::TraceIdRatioBased(self.ratio))
                    .with_remote_parent_sampled(Sampler::TraceIdRatioBased(self.ratio)),
            )
            .with_resource(
                Resource::builder()
                    .with_service_name(self.service.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("sacred-server");
        // Sacred's DEBUG spans, not its DEBUG events (which would ride
        // along as span events, naming users); INFO and up of everyone.
        let filter = filter_fn(|meta| {
            if meta.target().starts_with("opentelemetry") {
                // The exporter's own log lines (a failed export) are for
                // the log, not for the exporter.
                false
            } else if meta.target().starts_with("sacred_server") && meta.is_span() {
                *meta.level() <= Level::DEBUG
            } else {
                *meta.level() <= Level::INFO
            }
        });
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(filter);
        Ok((layer, OtlpGuard { provider }))
    }
}

/// Flushes the spans still queued and stops the exporter when dropped
/// (bounded by the export timeout, 3 s).
#[must_use = "dropping the guard stops the exporter"]
pub struct OtlpGuard {
    provider: SdkTracerProvider,
}

impl std::fmt::Debug for OtlpGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpGuard").finish_non_exhaustive()
    }
}

impl Drop for OtlpGuard {
    fn drop(&mut self) {
        let provider = self.provider.clone();
        // As at the build: the blocking client must not stop on a worker.
        let flushed = std::thread::spawn(move || provider.shutdown()).join();
        if let Ok(Err(err)) = flushed {
            eprintln!("sacred-server: OTLP exporter: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_added_to_a_base_url_only() {
        let url = |endpoint: &str| Otlp::new(endpoint).traces_url();
        assert_eq!(url("http://c:4318").unwrap(), "http://c:4318/v1/traces");
        assert_eq!(url("https://c:4318/").unwrap(), "https://c:4318/v1/traces");
        assert_eq!(
            url("http://c/otlp/v1/traces").unwrap(),
            "http://c/otlp/v1/traces"
        );
        for bad in ["c:4318", "ftp://c", "http://", "http:///x"] {
            assert!(matches!(url(bad), Err(OtlpError::Endpoint(_))), "{bad}");
        }
    }
}
