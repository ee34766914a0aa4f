//! The metric handles of one config: resolved at most once per config snapshot, then
//! reached by index, so a request neither formats a label nor looks a series up by
//! its label strings in the registry (but for `aurora_requests_total` and the token
//! counters, whose labels have too many combinations to resolve ahead: each worker
//! thread keeps those it used, see [`super::thread_series`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwapOption;
use once_cell::sync::Lazy;
use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

use super::labels::{route_index, KnownModels, UpstreamErrorKind, NONE, ROUTE_KINDS};
use super::thread_series::{with_thread_series, UsageSeries};
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
    /// Unique to these handles: the threads' tables of series belong to one set.
    id: u64,
    requests: IntCounterVec,
    duration: HistogramVec,
    first_byte: HistogramVec,
    overhead: HistogramVec,
    in_flight: IntGaugeVec,
    upstream_errors: IntCounterVec,
    tokens: IntCounterVec,
    cost: prometheus::CounterVec,
    usage_estimates: IntCounterVec,
    web_searches: IntCounterVec,
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
        // Starts at 1: a thread's tables not yet used belong to 0.
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Self {
            models: KnownModels::of(&config),
            config,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            requests: metrics.requests.clone(),
            duration: metrics.duration.clone(),
            first_byte: metrics.first_byte.clone(),
            overhead: metrics.overhead.clone(),
            in_flight: metrics.in_flight.clone(),
            upstream_errors: metrics.upstream_errors.clone(),
            tokens: metrics.tokens.clone(),
            cost: metrics.cost.clone(),
            usage_estimates: metrics.usage_estimates.clone(),
            web_searches: metrics.web_searches.clone(),
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

    /// An answer was charged an estimate of its tokens (counted by [`Self::tokens_used`]
    /// too). Rare, so its series is looked up each time.
    pub fn usage_estimated(&self, provider: &str, model: &str, key: &str) {
        self.usage_estimates
            .with_label_values(&[provider, model, key])
            .inc();
    }

    /// Adds an answer's reported tokens, its web searches, and their cost when it is
    /// known. Only kinds that were used get a series.
    pub fn tokens_used(
        &self,
        provider: &str,
        model: &str,
        key: &str,
        usage: &crate::metrics::usage::Usage,
        cost_usd: Option<f64>,
    ) {
        let labels = [provider, model, key];
        if usage.web_searches > 0 {
            // Rare: its series is looked up each time.
            self.web_searches
                .with_label_values(&labels)
                .inc_by(usage.web_searches);
        }
        let counted = with_thread_series(self.id, |t| {
            let series = t.usage.get_or_make(labels, UsageSeries::default);
            for ((kind, n), slot) in usage.by_kind().into_iter().zip(&mut series.tokens) {
                if n > 0 {
                    slot.get_or_insert_with(|| {
                        self.tokens.with_label_values(&[provider, model, key, kind])
                    })
                    .inc_by(n);
                }
            }
            if let Some(cost) = cost_usd {
                series
                    .cost
                    .get_or_insert_with(|| self.cost.with_label_values(&labels))
                    .inc_by(cost);
            }
        });
        if counted.is_some() {
            return;
        }
        // Without the thread's table (the thread is exiting). Written out again rather
        // than shared with the loop above through a closure: sharing it left the common
        // path un-inlined, 12 ns slower per request (`cargo bench --bench proxy -- metrics`).
        for (kind, n) in usage.by_kind() {
            if n > 0 {
                self.tokens
                    .with_label_values(&[provider, model, key, kind])
                    .inc_by(n);
            }
        }
        if let Some(cost) = cost_usd {
            self.cost.with_label_values(&labels).inc_by(cost);
        }
    }

    /// Counts a finished request.
    pub fn request_finished(&self, outcome: &RequestOutcome<'_>) {
        let labels = [
            outcome.route,
            outcome.provider,
            outcome.model,
            outcome.status,
            outcome.key,
        ];
        let series = || self.requests.with_label_values(&labels);
        if with_thread_series(self.id, |t| t.requests.get_or_make(labels, series).inc()).is_none() {
            series().inc();
        }
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

    fn outcome(key: &str) -> RequestOutcome<'_> {
        RequestOutcome {
            route: "passthrough",
            provider: "openai",
            model: "-",
            status: "200",
            key,
        }
    }

    #[test]
    fn a_thread_counts_into_the_series_its_labels_name() {
        let m = Metrics::new().unwrap();
        let h = MetricHandles::new(&m, Arc::new(Config::default()));
        h.request_finished(&outcome("team-a"));
        h.request_finished(&outcome("team-b"));
        h.request_finished(&outcome("team-a"));
        let text = render(&m);
        assert!(text.contains(r#"aurora_requests_total{key="team-a",model="-",provider="openai",route="passthrough",status="200"} 2"#), "{text}");
        assert!(text.contains(r#"aurora_requests_total{key="team-b",model="-",provider="openai",route="passthrough",status="200"} 1"#), "{text}");
    }

    #[test]
    fn handles_of_another_registry_count_into_their_own_series() {
        let (m1, m2) = (Metrics::new().unwrap(), Metrics::new().unwrap());
        let h1 = MetricHandles::new(&m1, Arc::new(Config::default()));
        let h2 = MetricHandles::new(&m2, Arc::new(Config::default()));
        let usage = crate::metrics::usage::Usage {
            input: 3,
            output: 5,
            web_searches: 2,
            ..Default::default()
        };
        for h in [&h1, &h2, &h1] {
            h.request_finished(&outcome("team-a"));
            h.tokens_used("openai", "gpt-4o", "team-a", &usage, Some(0.5));
        }
        let (one, two) = (render(&m1), render(&m2));
        let requests = |n| {
            format!(
                r#"aurora_requests_total{{key="team-a",model="-",provider="openai",route="passthrough",status="200"}} {n}"#
            )
        };
        let output = |n| {
            format!(
                r#"aurora_tokens_total{{key="team-a",kind="output",model="gpt-4o",provider="openai"}} {n}"#
            )
        };
        let cost = |n| {
            format!(r#"aurora_cost_usd_total{{key="team-a",model="gpt-4o",provider="openai"}} {n}"#)
        };
        for (text, times) in [(&one, 2), (&two, 1)] {
            assert!(text.contains(&requests(times)), "{text}");
            assert!(text.contains(&output(5 * times)), "{text}");
            assert!(text.contains(&cost(0.5 * times as f64)), "{text}");
            let searches = format!(
                r#"aurora_web_searches_total{{key="team-a",model="gpt-4o",provider="openai"}} {}"#,
                2 * times
            );
            assert!(text.contains(&searches), "{text}");
            assert!(
                !text.contains("kind=\"reasoning\""),
                "an unused kind has no series: {text}"
            );
        }
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
