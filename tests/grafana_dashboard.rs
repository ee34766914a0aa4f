//! The Grafana dashboard (`conf/grafana/aurora.json`) is valid JSON that Grafana can
//! import, and every series its queries read is one the gateway exports, so renaming
//! or dropping a metric cannot leave the dashboard silently empty.

use std::collections::BTreeSet;
use std::sync::Arc;

use aurora::config::Config;
use aurora::metrics::usage::Usage;
use aurora::metrics::{MetricHandles, Metrics, RequestOutcome, UpstreamErrorKind};
use serde_json::Value;

fn dashboard() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/grafana/aurora.json");
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).expect("the dashboard is valid JSON")
}

/// Every PromQL expression of the dashboard: panel targets and variable queries.
fn queries(dash: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let panels = dash["panels"].as_array().expect("panels");
    for panel in panels.iter().chain(
        panels
            .iter()
            .filter_map(|p| p["panels"].as_array())
            .flatten(),
    ) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push(
                target["expr"]
                    .as_str()
                    .expect("a target's expr")
                    .to_string(),
            );
        }
    }
    for var in dash["templating"]["list"].as_array().expect("templating") {
        if var["type"] == "query" {
            let query = &var["query"];
            let text = query["query"].as_str().or(query.as_str()).expect("a query");
            out.push(text.to_string());
        }
    }
    out
}

/// The `aurora_*` names an expression reads.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("aurora_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// Every metric family the gateway exports, from a scrape of a registry in which
/// each one has been used once.
fn exported_families() -> BTreeSet<String> {
    let m = Metrics::new().unwrap();
    let h = MetricHandles::new(&m, Arc::new(Config::default()));
    h.request_finished(&RequestOutcome {
        route: "chat_completions",
        provider: "-",
        model: "-",
        status: "200",
        key: "open",
    });
    let provider = h.provider(None);
    h.observe_duration("chat_completions", provider, 0.1);
    h.observe_first_byte(provider, 0.1);
    h.observe_overhead("chat_completions", 0.0001);
    h.in_flight("chat_completions").inc();
    h.upstream_error(provider, UpstreamErrorKind::Connect);
    let usage = Usage {
        input: 1,
        output: 1,
        web_searches: 1,
        ..Usage::default()
    };
    h.tokens_used("-", "-", "open", &usage, Some(0.01));
    h.usage_estimated("-", "-", "open");
    m.reload_finished(true);
    m.log_lines_dropped().inc();
    m.trace_spans_dropped().inc();
    m.upstream_available("openai", false);
    m.limit_store_error();
    let text = String::from_utf8(m.render()).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The metric names the source declares (`…::new("name", …)` in `src/metrics/`),
/// with the registry's `aurora_` prefix.
fn declared_families() -> BTreeSet<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/metrics");
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let source = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for ctor in [
            "Opts::new(",
            "IntCounter::new(",
            "Counter::new(",
            "IntGauge::new(",
        ] {
            for (at, _) in source.match_indices(ctor) {
                let after = source[at + ctor.len()..].trim_start();
                if let Some(literal) = after.strip_prefix('"') {
                    if let Some(end) = literal.find('"') {
                        names.insert(format!("aurora_{}", &literal[..end]));
                    }
                }
            }
        }
    }
    names
}

#[test]
fn the_dashboard_is_a_grafana_dashboard_over_prometheus() {
    let dash = dashboard();
    assert_eq!(dash["title"], "Aurora");
    assert!(dash["uid"].is_string());
    let panels = dash["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for panel in panels {
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "ids are unique");
        assert!(panel["gridPos"]["w"].as_u64().unwrap() <= 24);
        if panel["type"] != "row" {
            assert_eq!(panel["datasource"]["uid"], "${datasource}");
            assert!(!panel["targets"].as_array().unwrap().is_empty());
        }
    }
    assert!(queries(&dash).len() > 10);
}

#[test]
fn the_test_scrape_covers_every_metric_the_source_declares() {
    // Without this, a new metric the scrape above forgot would look unexported.
    let exported = exported_families();
    let missing: Vec<_> = declared_families().difference(&exported).cloned().collect();
    assert!(missing.is_empty(), "use {missing:?} in exported_families()");
}

#[test]
fn every_series_the_dashboard_reads_is_one_the_gateway_exports() {
    let exported = exported_families();
    let mut used = BTreeSet::new();
    for expr in queries(&dashboard()) {
        for name in metric_names(&expr) {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| exported.contains(*f)))
                .unwrap_or(&name)
                .to_string();
            assert!(
                exported.contains(&family),
                "`{name}` in `{expr}` is not exported; exported: {exported:?}"
            );
            used.insert(family);
        }
    }
    // The series are all on the dashboard.
    for family in [
        "aurora_requests_total",
        "aurora_request_duration_seconds",
        "aurora_upstream_first_byte_seconds",
        "aurora_gateway_overhead_seconds",
        "aurora_requests_in_flight",
        "aurora_upstream_errors_total",
        "aurora_tokens_total",
        "aurora_cost_usd_total",
    ] {
        assert!(used.contains(family), "{family} has no panel");
    }
}
