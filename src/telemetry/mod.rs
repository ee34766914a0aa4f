//! Traces (OpenTelemetry): one span per request and one per attempt at a provider,
//! with the generative AI semantic conventions, exported over OTLP/HTTP (protobuf)
//! when `telemetry.otlp_endpoint` is set. The client's `traceparent` is the request
//! span's parent; the provider gets the attempt's.
//!
//! Tracing is set up once per process, at start ([`install`]). When it is off, every
//! hook returns at its first line: no span is created.

mod attributes;
mod error;
mod export;
mod propagation;
mod request;

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

pub use error::TelemetryError;
pub use request::{
    answer_body, attempt_answered, attempt_began, attempt_failed, handoff, inject,
    request_admitted, request_finished, response_model, subrequest_began, tokens_reported,
    RequestTrace, TraceHandoff,
};

use crate::config::TelemetrySettings;

/// How long the collector has to take one batch.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The tracer and its provider, which must live as long as the process (dropping
/// the provider stops the export).
static TRACING: OnceLock<(SdkTracerProvider, SdkTracer)> = OnceLock::new();

/// Sends the spans still queued, waiting at most `timeout`: called before the
/// process exits. Nothing to do when tracing is off.
pub fn flush(timeout: Duration) {
    if let Some((provider, _)) = TRACING.get() {
        if let Err(e) = provider.shutdown_with_timeout(timeout) {
            log::warn!("spans still queued at exit may be lost: {e}");
        }
    }
}

/// The tracer, when tracing is on.
fn tracer() -> Option<&'static SdkTracer> {
    TRACING.get().map(|(_, tracer)| tracer)
}

/// Switches tracing on as `settings` say: `Ok(false)` when they name no endpoint.
/// The exporter only connects when it first sends, so an unreachable collector does
/// not stop the gateway from starting.
pub fn install(settings: &TelemetrySettings) -> Result<bool, TelemetryError> {
    let Some(url) = settings.otlp_traces_url.as_deref() else {
        return Ok(false);
    };
    if TRACING.get().is_some() {
        return Err(TelemetryError::AlreadyInstalled);
    }
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(EXPORT_TIMEOUT)
        .build()?;
    opentelemetry_sdk::trace::SpanExporter::set_resource(&mut exporter, &resource);
    let dropped = match crate::metrics::metrics() {
        Some(metrics) => metrics.trace_spans_dropped(),
        // Metrics could not be registered: drops are counted where nobody looks.
        None => prometheus::IntCounter::new("trace_spans_dropped_total", "unregistered")?,
    };
    let processor = export::QueuedExport::start(exporter, dropped)?;
    let provider = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_span_processor(processor)
        .build();
    let tracer = provider.tracer("aurora");
    TRACING
        .set((provider, tracer))
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(true)
}
