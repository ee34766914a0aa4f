//! Prometheus metrics, served at `GET /metrics` (behind the gateway key). Callers are
//! labelled as in the access log: by gateway key name, and a caller's own provider key
//! only by a short hash of it.

use once_cell::sync::Lazy;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// The gateway's metrics.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGauge,
    reloads: IntCounterVec,
}

/// Content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

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

/// One finished client request, as the access log describes it.
pub struct RequestOutcome<'a> {
    /// Route label (`passthrough`, `chat_completions`, …).
    pub route: &'a str,
    /// Provider instance, or `-`.
    pub provider: &'a str,
    /// Status sent to the client (0 when none could be sent).
    pub status: u16,
    /// Caller label (never a credential).
    pub caller: &'a str,
    /// Seconds from arrival to the end of the response.
    pub seconds: f64,
}

impl Metrics {
    fn new() -> prometheus::Result<Self> {
        let registry = Registry::new_custom(Some("aurora".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "requests_total",
                "Client requests by route, provider, status and caller",
            ),
            &["route", "provider", "status", "caller"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "request_duration_seconds",
                "Time from request arrival to the end of the response (streams included)",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
            &["route", "provider"],
        )?;
        let in_flight = IntGauge::new(
            "requests_in_flight",
            "Client requests being served, open streams included",
        )?;
        let reloads = IntCounterVec::new(
            Opts::new("config_reloads_total", "Config reloads by outcome"),
            &["outcome"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        Ok(Self {
            registry,
            requests,
            duration,
            in_flight,
            reloads,
        })
    }

    /// A client request started.
    pub fn request_started(&self) {
        self.in_flight.inc();
    }

    /// A client request that [`Self::request_started`] counted has finished.
    pub fn request_finished(&self, outcome: &RequestOutcome<'_>) {
        self.in_flight.dec();
        let status = outcome.status.to_string();
        self.requests
            .with_label_values(&[outcome.route, outcome.provider, &status, outcome.caller])
            .inc();
        self.duration
            .with_label_values(&[outcome.route, outcome.provider])
            .observe(outcome.seconds);
    }

    /// A config reload was applied (`true`) or refused.
    pub fn reload_finished(&self, applied: bool) {
        let outcome = if applied { "applied" } else { "failed" };
        self.reloads.with_label_values(&[outcome]).inc();
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::warn!("could not encode metrics: {e}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_with_their_labels_and_leave_in_flight() {
        let m = Metrics::new().unwrap();
        m.request_started();
        m.request_finished(&RequestOutcome {
            route: "chat_completions",
            provider: "anthropic",
            status: 200,
            caller: "passthru:0123abcd",
            seconds: 0.2,
        });
        m.reload_finished(false);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains(
            r#"aurora_requests_total{caller="passthru:0123abcd",provider="anthropic",route="chat_completions",status="200"} 1"#
        ), "{text}");
        assert!(text.contains("aurora_requests_in_flight 0"));
        assert!(text.contains(r#"aurora_config_reloads_total{outcome="failed"} 1"#));
        assert!(text.contains("aurora_request_duration_seconds_bucket"));
    }
}
