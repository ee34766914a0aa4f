//! Prometheus metrics, served on the metrics listener (`server.metrics_listen`, no
//! auth) and at `GET /metrics` on the main listener (behind the gateway key).
//!
//! Every label value comes from configuration or a fixed set (see [`labels`]), so the
//! number of series is bounded by the config, whatever clients send. The handles a
//! request needs are resolved once per config snapshot (see [`handles`]).

mod batch_results;
pub mod deferred_answer;
mod gemini_batch;
mod gemini_batch_stream;
pub mod handles;
pub mod labels;
pub mod thread_series;
pub mod usage;
pub mod usage_estimate;
mod usage_object;
pub mod web_searches;

use once_cell::sync::Lazy;
use prometheus::{
    CounterVec, Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub use handles::{handles_for, MetricHandles, ProviderId};
pub use labels::{KnownModels, UpstreamErrorKind};

/// The gateway's metrics.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    first_byte: HistogramVec,
    overhead: HistogramVec,
    in_flight: IntGaugeVec,
    upstream_errors: IntCounterVec,
    reloads: IntCounterVec,
    log_lines_dropped: IntCounter,
    trace_spans_dropped: IntCounter,
    tokens: IntCounterVec,
    cost: CounterVec,
    usage_estimates: IntCounterVec,
    web_searches: IntCounterVec,
    upstream_available: IntGaugeVec,
    limit_store_errors: IntCounter,
    response_owners_unrecorded: IntCounter,
    background_watched: IntGauge,
    background_taken_over: IntCounter,
    /// Instances whose availability series exists (set to 1 when first configured).
    availability_known: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Buckets of whole requests: 1 ms to 10 min (long streams).
const DURATION_BUCKETS: [f64; 18] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0,
];

/// Buckets of a provider's time to its response header: 1 ms to 10 min (reasoning
/// models think before the first byte).
const FIRST_BYTE_BUCKETS: [f64; 17] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    600.0,
];

/// Buckets of the gateway's own time: 10 µs up, to the 60 s a slow client may take to
/// upload a `/v1` body.
const OVERHEAD_BUCKETS: [f64; 18] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 10.0, 60.0,
];

static METRICS: Lazy<Option<Metrics>> = Lazy::new(|| match Metrics::new() {
    Ok(m) => Some(m),
    Err(e) => {
        log::error!("metrics are unavailable: {e}");
        None
    }
});

/// The process-wide metrics, if they could be registered.
pub fn metrics() -> Option<&'static Metrics> {
    METRICS.as_ref()
}

/// One finished client request, every label already bounded.
pub struct RequestOutcome<'a> {
    /// Route label (`passthrough`, `chat_completions`, …).
    pub route: &'a str,
    /// Provider instance, or `-`.
    pub provider: &'a str,
    /// Configured model name, `other`, or `-`.
    pub model: &'a str,
    /// Status sent to the client, from [`labels::status_label`].
    pub status: &'a str,
    /// Gateway key name, `master`, `open` or `caller_key` ([`labels::key_label`]).
    pub key: &'a str,
}

impl Metrics {
    /// A fresh set of metrics in its own registry.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new_custom(Some("aurora".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "requests_total",
                "Client requests by route, provider, model, status and gateway key",
            ),
            &["route", "provider", "model", "status", "key"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "request_duration_seconds",
                "Time from request arrival to the end of the response (streams included)",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["route", "provider"],
        )?;
        let first_byte = HistogramVec::new(
            HistogramOpts::new(
                "upstream_first_byte_seconds",
                "Time from the request header handed to the provider to its response header",
            )
            .buckets(FIRST_BYTE_BUCKETS.to_vec()),
            &["provider"],
        )?;
        let overhead = HistogramVec::new(
            HistogramOpts::new(
                "gateway_overhead_seconds",
                "The gateway's own time: request arrival to the request header handed to the provider, plus its work on the answer (response filters, usage reading, translation)",
            )
            .buckets(OVERHEAD_BUCKETS.to_vec()),
            &["route"],
        )?;
        let in_flight = IntGaugeVec::new(
            Opts::new(
                "requests_in_flight",
                "Client requests being served, open streams included",
            ),
            &["route"],
        )?;
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "upstream_errors_total",
                "Failed exchanges with providers by kind (connect, tls, timeout, reset, protocol)",
            ),
            &["provider", "kind"],
        )?;
        let reloads = IntCounterVec::new(
            Opts::new("config_reloads_total", "Config reloads by outcome"),
            &["outcome"],
        )?;
        let log_lines_dropped = IntCounter::new(
            "log_lines_dropped_total",
            "Access lines dropped because the log writer fell behind",
        )?;
        let trace_spans_dropped = IntCounter::new(
            "trace_spans_dropped_total",
            "Spans not exported: the export queue was full or the collector did not take them",
        )?;
        registry.register(Box::new(trace_spans_dropped.clone()))?;
        let tokens = IntCounterVec::new(
            Opts::new(
                "tokens_total",
                "Tokens the providers reported (estimated for a stream whose usage never came), by provider, model, gateway key and kind (input, output, cache_read, cache_write, reasoning)",
            ),
            &["provider", "model", "key", "kind"],
        )?;
        let cost = CounterVec::new(
            Opts::new(
                "cost_usd_total",
                "Cost in US dollars of those answers: at the model's configured price (models.prices), or what the provider said the answer cost when it said and that is more",
            ),
            &["provider", "model", "key"],
        )?;
        let web_searches = IntCounterVec::new(
            Opts::new(
                "web_searches_total",
                "Web searches the models ran, billed per search apart from the tokens, by provider, model and gateway key",
            ),
            &["provider", "model", "key"],
        )?;
        let usage_estimates = IntCounterVec::new(
            Opts::new(
                "usage_estimates_total",
                "Answers charged an estimate of their tokens (a stream whose usage never came, a whole answer its client left, a call its client left before any answer), by provider, model and gateway key",
            ),
            &["provider", "model", "key"],
        )?;
        let upstream_available = IntGaugeVec::new(
            Opts::new(
                "upstream_available",
                "1 while a provider instance is tried, 0 while it cools down after repeated failures (health)",
            ),
            &["provider"],
        )?;
        registry.register(Box::new(upstream_available.clone()))?;
        let background_watched = IntGauge::new(
            "background_work_watched",
            "Background responses and batches this replica polls for their usage",
        )?;
        registry.register(Box::new(background_watched.clone()))?;
        let background_taken_over = IntCounter::new(
            "background_work_taken_over_total",
            "Background responses and batches taken over from replicas that stopped",
        )?;
        registry.register(Box::new(background_taken_over.clone()))?;
        let limit_store_errors = IntCounter::new(
            "limit_store_errors_total",
            "Limit checks and charges the limit store could not answer",
        )?;
        registry.register(Box::new(limit_store_errors.clone()))?;
        let response_owners_unrecorded = IntCounter::new(
            "response_owners_unrecorded_total",
            "Natively served Responses API answers whose owner the response store could not record",
        )?;
        registry.register(Box::new(response_owners_unrecorded.clone()))?;
        registry.register(Box::new(tokens.clone()))?;
        registry.register(Box::new(cost.clone()))?;
        registry.register(Box::new(usage_estimates.clone()))?;
        registry.register(Box::new(web_searches.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(first_byte.clone()))?;
        registry.register(Box::new(overhead.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(log_lines_dropped.clone()))?;
        Ok(Self {
            registry,
            requests,
            duration,
            first_byte,
            overhead,
            in_flight,
            upstream_errors,
            reloads,
            log_lines_dropped,
            trace_spans_dropped,
            tokens,
            cost,
            usage_estimates,
            web_searches,
            upstream_available,
            limit_store_errors,
            response_owners_unrecorded,
            background_watched,
            background_taken_over,
            availability_known: Default::default(),
        })
    }

    /// This replica polls `count` pieces of background work.
    pub fn background_watched(&self, count: usize) {
        self.background_watched
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// `count` pieces of background work were taken over from replicas that stopped.
    pub fn background_taken_over(&self, count: usize) {
        self.background_taken_over
            .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
    }

    /// The limit store could not answer.
    pub fn limit_store_error(&self) {
        self.limit_store_errors.inc();
    }

    /// The owner of a natively served Responses API answer could not be recorded.
    pub fn response_owner_unrecorded(&self) {
        self.response_owners_unrecorded.inc();
    }

    /// Whether `provider` is tried (`true`) or cooling down.
    pub fn upstream_available(&self, provider: &str, available: bool) {
        if let Ok(mut known) = self.availability_known.lock() {
            known.insert(provider.to_string());
        }
        self.upstream_available
            .with_label_values(&[provider])
            .set(i64::from(available));
    }

    /// `provider` is configured: its availability series starts at 1 the first time.
    pub fn provider_configured(&self, provider: &str) {
        let first = self
            .availability_known
            .lock()
            .is_ok_and(|mut known| known.insert(provider.to_string()));
        if first {
            self.upstream_available
                .with_label_values(&[provider])
                .set(1);
        }
    }

    /// A request whose header the gateway cut, answered with `status` (408, 431):
    /// answered before it was routed, as a wrong key is, though it reaches no hook
    /// that counts requests.
    pub fn header_cut(&self, status: u16) {
        let status = labels::status_label(status);
        self.requests
            .with_label_values(&[
                labels::NONE,
                labels::NONE,
                labels::NONE,
                status,
                labels::NONE,
            ])
            .inc();
    }

    /// A config reload was applied (`true`) or refused.
    pub fn reload_finished(&self, applied: bool) {
        let outcome = if applied { "applied" } else { "failed" };
        self.reloads.with_label_values(&[outcome]).inc();
    }

    /// The counter of access lines dropped by a log writer that fell behind.
    pub fn log_lines_dropped(&self) -> IntCounter {
        self.log_lines_dropped.clone()
    }

    /// The counter of spans dropped on their way to the trace collector.
    pub fn trace_spans_dropped(&self) -> IntCounter {
        self.trace_spans_dropped.clone()
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::warn!("could not encode metrics: {e}");
        }
        #[cfg(feature = "alloc-count")]
        out.extend_from_slice(
            format!(
                "# HELP aurora_allocations_total Heap allocations made by the process (alloc-count builds only).\n# TYPE aurora_allocations_total counter\naurora_allocations_total {}\n",
                crate::alloc_count::allocations()
            )
            .as_bytes(),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_with_their_bounded_labels() {
        let m = Metrics::new().unwrap();
        let h = MetricHandles::new(&m, std::sync::Arc::default());
        h.request_finished(&RequestOutcome {
            route: "chat_completions",
            provider: "anthropic",
            model: "other",
            status: labels::status_label(200),
            key: "caller_key",
        });
        m.reload_finished(false);
        m.header_cut(431);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            text.contains(
                r#"aurora_requests_total{key="-",model="-",provider="-",route="-",status="431"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"aurora_requests_total{key="caller_key",model="other",provider="anthropic",route="chat_completions",status="200"} 1"#
        ), "{text}");
        assert!(text.contains(r#"aurora_config_reloads_total{outcome="failed"} 1"#));
        assert!(text.contains("aurora_log_lines_dropped_total 0"));
    }
}
