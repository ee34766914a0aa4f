//! The metric handles of one config: resolved at most once per config snapshot, then
//! reached by index, so a request neither formats a label nor looks a series up by
//! its label strings (but for `aurora_requests_total`, whose five labels have too many
//! combinations to resolve ahead; its values are borrowed, never formatted).

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwapOption;
use once_cell::sync::Lazy;
use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

use super::labels::{route_index, KnownModels, UpstreamErrorKind, NONE, ROUTE_KINDS};
use super::{Metrics, RequestOutcome};
use crate::config::Config;
use crate::lookup::LookupMap;

/// A provider as the handles know it: an index into the config's instances, `0`
/// for none (`-`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProviderId(usize);

/// Handles of one route.
struct RouteSlot {
    overhead: OnceLock<Histogram>,
    in_flight: OnceLock<IntGauge>,
    /// By [`ProviderId`].
    duration: Vec<OnceLock<Histogram>>,
}

/// Handles of one provider.
#[derive(Default)]
struct ProviderSlot {
    first_byte: OnceLock<Histogram>,
    errors: [OnceLock<IntCounter>; UpstreamErrorKind::ALL.len()],
}

/// Every metric handle a request needs under one config.
pub struct MetricHandles {
    /// The config these were built for (kept for identity, see [`handles_for`]).
    config: Arc<Config>,
    requests: IntCounterVec,
    duration: HistogramVec,
    first_byte: HistogramVec,
    overhead: HistogramVec,
    in_flight: IntGaugeVec,
    upstream_errors: IntCounterVec,
    tokens: IntCounterVec,
    cost: prometheus::CounterVec,
    /// Instance name → index; `provider_names[0]` is `-`.
    provider_ids: LookupMap<Box<str>, usize>,
    provider_names: Vec<Box<str>>,
    models: KnownModels,
    /// By [`route_index`].
    routes: Vec<RouteSlot>,
    /// By [`ProviderId`].
    providers: Vec<ProviderSlot>,
}

impl MetricHandles {
    /// The handles of `metrics` under `config`. Nothing is registered until used, so
    /// a route or provider nobody calls adds no series.
    pub fn new(metrics: &Metrics, config: Arc<Config>) -> Self {
        let mut provider_names: Vec<Box<str>> = vec![NONE.into()];
        provider_names.extend(
            config
                .providers
                .configured()
                .map(|p| p.name.as_str().into()),
        );
        for name in provider_names.iter().skip(1) {
            metrics.provider_configured(name);
        }
        let provider_ids = provider_names
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, name)| (name.clone(), i))
            .collect();
        let routes = ROUTE_KINDS
            .iter()
            .map(|_| RouteSlot {
                overhead: OnceLock::new(),
                in_flight: OnceLock::new(),
                duration: provider_names.iter().map(|_| OnceLock::new()).collect(),
            })
            .collect();
        let providers = provider_names
            .iter()
            .map(|_| ProviderSlot::default())
            .collect();
        Self {
            models: KnownModels::of(&config),
            config,
            requests: metrics.requests.clone(),
            duration: metrics.duration.clone(),
            first_byte: metrics.first_byte.clone(),
            overhead: metrics.overhead.clone(),
            in_flight: metrics.in_flight.clone(),
            upstream_errors: metrics.upstream_errors.clone(),
            tokens: metrics.tokens.clone(),
            cost: metrics.cost.clone(),
            provider_ids,
            provider_names,
            routes,
            providers,
        }
    }

    /// The id of provider instance `name` (`None`: no provider).
    pub fn provider(&self, name: Option<&str>) -> ProviderId {
        ProviderId(
            name.and_then(|n| self.provider_ids.get(n).copied())
                .unwrap_or(0),
        )
    }

    /// The `provider` label of `id`.
    pub fn provider_label(&self, id: ProviderId) -> &str {
        self.provider_names.get(id.0).map_or(NONE, |n| n)
    }

    /// The `model` label of a request routed to `model`.
    pub fn model_label(&self, model: &str) -> Arc<str> {
        self.models.label(model)
    }

    /// The in-flight gauge of `route`; the caller decrements the same gauge it
    /// incremented.
    pub fn in_flight(&self, route: &'static str) -> IntGauge {
        let i = route_index(route);
        self.routes[i]
            .in_flight
            .get_or_init(|| self.in_flight.with_label_values(&[ROUTE_KINDS[i]]))
            .clone()
    }

    /// The gateway's own time on `route` before the provider got the request.
    pub fn observe_overhead(&self, route: &str, seconds: f64) {
        let i = route_index(route);
        self.routes[i]
            .overhead
            .get_or_init(|| self.overhead.with_label_values(&[ROUTE_KINDS[i]]))
            .observe(seconds);
    }

    /// A whole request on `route` to `provider`.
    pub fn observe_duration(&self, route: &str, provider: ProviderId, seconds: f64) {
        let i = route_index(route);
        let Some(slot) = self.routes[i].duration.get(provider.0) else {
            return;
        };
        slot.get_or_init(|| {
            self.duration
                .with_label_values(&[ROUTE_KINDS[i], self.provider_label(provider)])
        })
        .observe(seconds);
    }

    /// The provider's time from the request header to its response header.
    pub fn observe_first_byte(&self, provider: ProviderId, seconds: f64) {
        let Some(slot) = self.providers.get(provider.0) else {
            return;
        };
        slot.first_byte
            .get_or_init(|| {
                self.first_byte
                    .with_label_values(&[self.provider_label(provider)])
            })
            .observe(seconds);
    }

    /// A failed exchange with `provider`.
    pub fn upstream_error(&self, provider: ProviderId, kind: UpstreamErrorKind) {
        let Some(slot) = self.providers.get(provider.0) else {
            return;
        };
        let k = UpstreamErrorKind::ALL
            .iter()
            .position(|x| *x == kind)
            .unwrap_or(0);
        slot.errors[k]
            .get_or_init(|| {
                self.upstream_errors
                    .with_label_values(&[self.provider_label(provider), kind.label()])
            })
            .inc();
    }

    /// Adds an answer's reported tokens, and their cost when the model has a price.
    /// Only kinds that were used get a series.
    pub fn tokens_used(
        &self,
        provider: &str,
        model: &str,
        key: &str,
        usage: &crate::metrics::usage::Usage,
        cost_usd: Option<f64>,
    ) {
        for (kind, n) in usage.by_kind() {
            if n > 0 {
                self.tokens
                    .with_label_values(&[provider, model, key, kind])
                    .inc_by(n);
            }
        }
        if let Some(cost) = cost_usd {
            self.cost
                .with_label_values(&[provider, model, key])
                .inc_by(cost);
        }
    }

    /// Counts a finished request.
    pub fn request_finished(&self, outcome: &RequestOutcome<'_>) {
        self.requests
            .with_label_values(&[
                outcome.route,
                outcome.provider,
                outcome.model,
                outcome.status,
                outcome.key,
            ])
            .inc();
    }
}

/// The handles of the config most requests use right now.
static CURRENT: Lazy<ArcSwapOption<MetricHandles>> = Lazy::new(ArcSwapOption::empty);

/// The process-wide metrics' handles under `config`: built on the first request that
/// uses a config snapshot (after a reload, once more), shared by every later one.
pub fn handles_for(config: &Arc<Config>) -> Option<Arc<MetricHandles>> {
    let metrics = super::metrics()?;
    if let Some(current) = CURRENT.load_full() {
        if Arc::ptr_eq(&current.config, config) {
            return Some(current);
        }
    }
    let built = Arc::new(MetricHandles::new(metrics, Arc::clone(config)));
    CURRENT.store(Some(Arc::clone(&built)));
    Some(built)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(m: &Metrics) -> String {
        String::from_utf8(m.render()).unwrap()
    }

    #[test]
    fn unused_routes_and_providers_add_no_series() {
        let m = Metrics::new().unwrap();
        let h = MetricHandles::new(&m, Arc::new(Config::default()));
        h.observe_overhead("passthrough", 0.0001);
        let text = render(&m);
        assert!(text.contains(r#"aurora_gateway_overhead_seconds_count{route="passthrough"} 1"#));
        assert!(!text.contains("route=\"messages\""), "{text}");
        assert!(
            !text.contains("aurora_request_duration_seconds_count"),
            "{text}"
        );
    }

    #[test]
    fn an_unconfigured_provider_name_is_counted_as_none() {
        let m = Metrics::new().unwrap();
        let h = MetricHandles::new(&m, Arc::new(Config::default()));
        let id = h.provider(Some("never-configured"));
        assert_eq!(h.provider_label(id), "-");
        h.upstream_error(id, UpstreamErrorKind::Reset);
        h.observe_duration("bogus-route", id, 0.1);
        let text = render(&m);
        assert!(text.contains(r#"aurora_upstream_errors_total{kind="reset",provider="-"} 1"#));
        assert!(text.contains(r#"aurora_request_duration_seconds_count{provider="-",route="-"} 1"#));
    }

    #[test]
    fn in_flight_goes_up_and_back_down_on_the_same_route() {
        let m = Metrics::new().unwrap();
        let h = MetricHandles::new(&m, Arc::new(Config::default()));
        let gauge = h.in_flight("messages");
        gauge.inc();
        assert!(render(&m).contains(r#"aurora_requests_in_flight{route="messages"} 1"#));
        gauge.dec();
        assert!(render(&m).contains(r#"aurora_requests_in_flight{route="messages"} 0"#));
    }
}
