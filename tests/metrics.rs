//! Prometheus metrics: the metrics listener answers without a key while the main
//! listener's `/metrics` needs the master key, a scrape after scripted traffic shows exactly the
//! requests sent, and no client input can add a series.

mod common;

use std::collections::BTreeSet;

use common::{client, fixture, raw_request, Gateway, MockUpstream, Recorded, Reply, PICKED_PORT};

const MASTER: &str = "gw-master-metrics-test-012345678";
const OAI_KEY: &str = "sk-oai-provider-metrics-test";
const ANT_KEY: &str = "sk-ant-provider-metrics-test";

/// OpenAI and Anthropic answers, JSON or a stream as the request asks.
fn provider_like(rec: &Recorded) -> Reply {
    let streamed = String::from_utf8_lossy(&rec.body).contains(r#""stream":true"#);
    match rec.uri.as_str() {
        "/v1/models" => Reply::json(200, fixture("openai/models.json")),
        "/v1/chat/completions" => Reply::json(200, fixture("openai/chat_completion.json")),
        "/v1/messages" if streamed => Reply::Full {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            body: fixture("anthropic/messages_stream.txt").into(),
        },
        "/v1/messages" => Reply::json(200, fixture("anthropic/messages.json")),
        _ => Reply::json(404, "{}"),
    }
}

/// A gateway with its metrics listener on a port of its own; OpenAI and Anthropic on
/// `mock`, one alias and one listed model.
fn gateway(mock: &MockUpstream, extra: &[(&str, &str)]) -> Gateway {
    let base = mock.url("/v1");
    let yaml = "models:\n  aliases:\n    fast: openai/gpt-4o-mini\nproviders:\n  anthropic:\n    models: [claude-sonnet-4-5]\n  openai: {}\n";
    let mut env = vec![
        ("AURORA_MASTER_KEY", MASTER),
        ("ANTHROPIC_API_KEY", ANT_KEY),
        ("ANTHROPIC_BASE_URL", base.as_str()),
        ("OPENAI_BASE_URL", base.as_str()),
        ("AURORA_METRICS_LISTEN", PICKED_PORT),
    ];
    if !extra.iter().any(|(k, _)| *k == "OPENAI_API_KEY") {
        env.push(("OPENAI_API_KEY", OAI_KEY));
    }
    env.extend_from_slice(extra);
    Gateway::start(yaml, &env)
}

async fn scrape(metrics_port: u16) -> String {
    let resp = client()
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

/// A scrape once `requests` requests (readiness probes aside) are counted: a request
/// is counted when it has been logged, just after its client has the whole answer.
async fn scrape_after(metrics_port: u16, requests: f64) -> String {
    for _ in 0..250 {
        let text = scrape(metrics_port).await;
        if sum_of(&text, "aurora_requests_total", &[]) >= requests {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!(
        "{requests} requests were never counted: {}",
        scrape(metrics_port).await
    )
}

async fn post(gw: &Gateway, path: &str, body: &str) -> u16 {
    client()
        .post(gw.url(path))
        .bearer_auth(MASTER)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The samples of `metric` (name and labels → value), readiness probes left out.
fn samples(text: &str, metric: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) || l.starts_with(&format!("{metric} ")))
        .filter(|l| !l.contains(r#"route="health""#))
        .map(str::to_string)
        .collect()
}

/// The value of the one sample whose line starts with `prefix`.
fn value(text: &str, prefix: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` in\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_scrape_after_scripted_traffic_shows_exactly_the_requests_sent() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway(&mock, &[]);
    let port = gw.metrics_port();
    let c = client();
    for _ in 0..2 {
        let resp = c
            .get(gw.url("/p/openai/models"))
            .bearer_auth(MASTER)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let chat = |model: &str, stream: bool| {
        format!(
            r#"{{"model":"{model}","stream":{stream},"max_tokens":16,"messages":[{{"role":"user","content":"hi"}}]}}"#
        )
    };
    // Native, by alias; translated to Anthropic, JSON and stream.
    assert_eq!(
        post(&gw, "/v1/chat/completions", &chat("fast", false)).await,
        200
    );
    assert_eq!(
        post(
            &gw,
            "/v1/chat/completions",
            &chat("anthropic/claude-sonnet-4-5", false)
        )
        .await,
        200
    );
    assert_eq!(
        post(
            &gw,
            "/v1/chat/completions",
            &chat("claude-sonnet-4-5", true)
        )
        .await,
        200
    );
    // Native Anthropic; translated to OpenAI with a model nobody configured.
    assert_eq!(
        post(&gw, "/v1/messages", &chat("claude-sonnet-4-5", false)).await,
        200
    );
    assert_eq!(
        post(&gw, "/v1/messages", &chat("openai/gpt-unlisted", false)).await,
        200
    );
    // Refused before routing.
    let refused = c.get(gw.url("/p/openai/models")).send().await.unwrap();
    assert_eq!(refused.status(), 401);

    let text = scrape_after(port, 8.0).await;
    let expected: BTreeSet<String> = [
        r#"aurora_requests_total{key="-",model="-",provider="-",route="-",status="401"} 1"#,
        r#"aurora_requests_total{key="master",model="-",provider="openai",route="passthrough",status="200"} 2"#,
        r#"aurora_requests_total{key="master",model="gpt-4o-mini",provider="openai",route="chat_completions",status="200"} 1"#,
        r#"aurora_requests_total{key="master",model="claude-sonnet-4-5",provider="anthropic",route="chat_completions",status="200"} 2"#,
        r#"aurora_requests_total{key="master",model="claude-sonnet-4-5",provider="anthropic",route="messages",status="200"} 1"#,
        r#"aurora_requests_total{key="master",model="other",provider="openai",route="messages",status="200"} 1"#,
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    assert_eq!(samples(&text, "aurora_requests_total"), expected, "{text}");
    // Every exchange with a provider timed, once.
    let first_byte = "aurora_upstream_first_byte_seconds_count";
    assert_eq!(
        value(&text, &format!(r#"{first_byte}{{provider="openai"}}"#)),
        4.0
    );
    assert_eq!(
        value(&text, &format!(r#"{first_byte}{{provider="anthropic"}}"#)),
        3.0
    );
    let overhead = "aurora_gateway_overhead_seconds_count";
    assert_eq!(
        value(&text, &format!(r#"{overhead}{{route="passthrough"}}"#)),
        2.0
    );
    assert_eq!(
        value(&text, &format!(r#"{overhead}{{route="chat_completions"}}"#)),
        3.0
    );
    assert_eq!(
        value(&text, &format!(r#"{overhead}{{route="messages"}}"#)),
        2.0
    );
    let duration = "aurora_request_duration_seconds_count";
    assert_eq!(
        value(
            &text,
            &format!(r#"{duration}{{provider="anthropic",route="chat_completions"}}"#)
        ),
        2.0
    );
    for line in samples(&text, "aurora_requests_in_flight") {
        assert!(line.ends_with(" 0"), "{line}");
    }
    assert!(!text.contains("aurora_upstream_errors_total{"), "{text}");
    assert!(text.contains("aurora_log_lines_dropped_total 0"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_listener_needs_no_key_and_the_main_listener_needs_one() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway(&mock, &[]);
    let port = gw.metrics_port();
    let c = client();
    let resp = c
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let unknown = c
        .get(format!("http://127.0.0.1:{port}/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    assert_eq!(
        c.get(gw.url("/metrics")).send().await.unwrap().status(),
        401
    );
    let behind_key = c
        .get(gw.url("/metrics"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(behind_key.status(), 200);
    let text = behind_key.text().await.unwrap();
    assert!(text.contains("aurora_requests_total"), "{text}");
    for secret in [MASTER, OAI_KEY, ANT_KEY] {
        assert!(!text.contains(secret));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managed_key_cannot_read_every_keys_usage_from_the_main_listeners_metrics() {
    let mock = MockUpstream::start(provider_like).await;
    let base = mock.url("/v1");
    let tenant = "gw-tenant-metrics-test-0123456789";
    let yaml = format!(
        "auth:\n  keys:\n    - name: team-a\n      sha256: \"{}\"\n",
        common::sha256_hex(tenant)
    );
    let gw = Gateway::start(
        &yaml,
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("OPENAI_API_KEY", OAI_KEY),
            ("OPENAI_BASE_URL", base.as_str()),
        ],
    );
    let c = client();
    let asked = c
        .get(gw.url("/metrics"))
        .bearer_auth(tenant)
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), 403);
    let said = asked.text().await.unwrap();
    assert!(!said.contains("aurora_requests_total"), "{said}");
    let master = c
        .get(gw.url("/metrics"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(master.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_client_keys_and_model_names_add_no_series() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway(&mock, &[("OPENAI_API_KEY", "!PASSTHRU")]);
    let port = gw.metrics_port();
    let c = client();
    let send = |i: usize| {
        let c = c.clone();
        let passthrough = gw.url("/p/openai/models");
        let chat = gw.url("/v1/chat/completions");
        async move {
            let key = format!("sk-caller-{i}");
            let listed = c
                .get(passthrough)
                .bearer_auth(MASTER)
                .header("x-provider-api-key", &key)
                .send()
                .await
                .unwrap();
            assert_eq!(listed.status(), 200);
            let body = format!(
                r#"{{"model":"openai/model-{i}","messages":[{{"role":"user","content":"hi"}}]}}"#
            );
            let chatted = c
                .post(chat)
                .bearer_auth(MASTER)
                .header("x-provider-api-key", &key)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(chatted.status(), 200);
        }
    };
    send(0).await;
    let series = |text: &str| -> BTreeSet<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series.to_string()))
            .collect()
    };
    let before = series(&scrape_after(port, 2.0).await);
    for i in 1..=500 {
        send(i).await;
    }
    let text = scrape_after(port, 1002.0).await;
    let after = series(&text);
    eprintln!(
        "series after 1 caller: {}; after 501 callers and models: {}",
        before.len(),
        after.len()
    );
    let added: Vec<&String> = after.difference(&before).collect();
    assert!(added.is_empty(), "series added: {added:?}");
    assert_eq!(before.len(), after.len());
    assert_eq!(
        value(
            &text,
            r#"aurora_requests_total{key="master",model="other",provider="openai",route="chat_completions",status="200"}"#
        ),
        501.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_provider_counts_one_connect_error_per_request_on_every_path() {
    // Nothing listens on port 9.
    let gw = Gateway::start(
        "",
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("OPENAI_API_KEY", OAI_KEY),
            ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
            ("ANTHROPIC_API_KEY", ANT_KEY),
            ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/v1"),
            ("AURORA_METRICS_LISTEN", PICKED_PORT),
        ],
    );
    let port = gw.metrics_port();
    let passthrough = client()
        .get(gw.url("/p/openai/models"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(passthrough.status(), 502);
    let chat = |model: &str, content: &str| {
        format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"{content}"}}]}}"#)
    };
    let large = "x".repeat(100 * 1024);
    // The client's own session, a subrequest (a body past 64 KiB), and the gateway's
    // own exchange for a translated whole answer.
    for body in [
        chat("gpt-4o", "hi"),
        chat("gpt-4o", &large),
        chat("claude-sonnet-4-5", "hi"),
    ] {
        assert_eq!(post(&gw, "/v1/chat/completions", &body).await, 502);
    }
    let text = scrape_after(port, 4.0).await;
    let errors: BTreeSet<String> = [
        r#"aurora_upstream_errors_total{kind="connect",provider="anthropic"} 1"#,
        r#"aurora_upstream_errors_total{kind="connect",provider="openai"} 3"#,
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    assert_eq!(
        samples(&text, "aurora_upstream_errors_total"),
        errors,
        "{text}"
    );
    // Tried and not reached: the requests are their provider's all the same.
    let failed = |provider: &str| {
        let provider = format!(r#"provider="{provider}""#);
        sum_of(
            &text,
            "aurora_requests_total",
            &[&provider, r#"status="502""#],
        )
    };
    assert_eq!(failed("openai"), 3.0, "{text}");
    assert_eq!(failed("anthropic"), 1.0, "{text}");
}

/// The sum of the samples of `metric` whose labels hold every one of `labels`.
fn sum_of(text: &str, metric: &str, labels: &[&str]) -> f64 {
    samples(text, metric)
        .iter()
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A reload brings new metric handles, and with them each worker thread's table of
/// labelled series is started anew: the requests after it count on in the series the
/// ones before it began.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_tokens_count_on_in_their_series_across_a_reload() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway(&mock, &[]);
    let port = gw.metrics_port();
    let chat = r#"{"model":"fast","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    let route = r#"route="chat_completions""#;
    for _ in 0..3 {
        assert_eq!(post(&gw, "/v1/chat/completions", chat).await, 200);
    }
    let before = scrape_after(port, 3.0).await;
    assert_eq!(sum_of(&before, "aurora_requests_total", &[route]), 3.0);
    let output = [r#"kind="output""#, r#"provider="openai""#];
    // The recorded answer reports 4 completion tokens.
    assert_eq!(sum_of(&before, "aurora_tokens_total", &output), 12.0);

    let config = std::fs::read_to_string(gw.config_path()).unwrap();
    let alias = "    fast: openai/gpt-4o-mini\n";
    assert!(config.contains(alias), "{config}");
    gw.write_config(&config.replace(alias, &format!("{alias}    quick: openai/gpt-4o-mini\n")));
    gw.signal("HUP");
    gw.wait_for_log("config reloaded:", 1).await;

    for _ in 0..3 {
        assert_eq!(post(&gw, "/v1/chat/completions", chat).await, 200);
    }
    let after = scrape_after(port, 6.0).await;
    assert_eq!(
        samples(&after, "aurora_requests_total"),
        samples(&before, "aurora_requests_total")
            .iter()
            .map(|l| l.replace(" 3", " 6"))
            .collect::<BTreeSet<_>>(),
        "the same series, counted on"
    );
    assert_eq!(sum_of(&after, "aurora_tokens_total", &output), 24.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_gateway_refuses_after_choosing_its_provider_names_no_provider() {
    let mock = MockUpstream::start(provider_like).await;
    let base = mock.url("/v1");
    // The provider's own quota: one request a minute.
    let gw = Gateway::start(
        "providers:\n  openai:\n    limits: {requests_per_minute: 1}\n",
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("OPENAI_API_KEY", OAI_KEY),
            ("OPENAI_BASE_URL", base.as_str()),
            ("AURORA_METRICS_LISTEN", PICKED_PORT),
        ],
    );
    let port = gw.metrics_port();
    let chat = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(post(&gw, "/v1/chat/completions", chat).await, 200);
    // Past the quota: refused by the gateway, on `/v1` and on `/p/`.
    assert_eq!(post(&gw, "/v1/chat/completions", chat).await, 429);
    assert_eq!(post(&gw, "/p/openai/chat/completions", chat).await, 429);
    assert_eq!(mock.requests().len(), 1);

    let text = scrape_after(port, 3.0).await;
    let requests = "aurora_requests_total";
    let count = |labels: &[&str]| sum_of(&text, requests, labels);
    assert_eq!(
        count(&[r#"provider="openai""#, r#"status="200""#]),
        1.0,
        "{text}"
    );
    assert_eq!(
        count(&[r#"provider="-""#, r#"status="429""#]),
        2.0,
        "{text}"
    );
    assert_eq!(
        count(&[r#"provider="openai""#, r#"status="429""#]),
        0.0,
        "{text}"
    );
    let duration = "aurora_request_duration_seconds_count";
    for route in ["chat_completions", "passthrough"] {
        assert_eq!(
            value(
                &text,
                &format!(r#"{duration}{{provider="-",route="{route}"}}"#)
            ),
            1.0,
            "{text}"
        );
    }
    let log = gw.wait_for_log(" status=429 ", 2).await;
    for line in log.lines().filter(|l| l.contains(" status=429 ")) {
        assert!(line.contains(" provider=- "), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cors_preflight_is_counted_as_its_access_line_names_it() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway(
        &mock,
        &[("AURORA_CORS_ALLOW_ORIGINS", "https://app.example")],
    );
    let port = gw.metrics_port();
    let preflight = client()
        .request(reqwest::Method::OPTIONS, gw.url("/v1/chat/completions"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header("x-request-id", "preflight-counted")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    let log = gw.wait_for_log("request_id=preflight-counted ", 1).await;
    let line = log
        .lines()
        .find(|l| l.contains("request_id=preflight-counted "))
        .unwrap();
    assert!(line.contains(" route=- provider=- "), "{line}");
    // Its line written, the request is in the metrics already.
    let text = scrape(port).await;
    assert_eq!(
        value(
            &text,
            r#"aurora_requests_total{key="-",model="-",provider="-",route="-",status="204"}"#
        ),
        1.0,
        "{text}"
    );
    for line in samples(&text, "aurora_requests_in_flight") {
        assert!(line.ends_with(" 0"), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_header_cut_for_its_time_or_size_is_counted() {
    let mock = MockUpstream::start(provider_like).await;
    let base = mock.url("/v1");
    let gw = Gateway::start(
        "server:\n  header_timeout: 1s\n  max_header_bytes: 8KiB\n",
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("OPENAI_API_KEY", OAI_KEY),
            ("OPENAI_BASE_URL", base.as_str()),
            ("AURORA_METRICS_LISTEN", PICKED_PORT),
        ],
    );
    let port = gw.metrics_port();
    // A header that never ends, and one past the cap.
    let unfinished = raw_request(&gw.addr(), "GET /v1/models HTTP/1.1\r\nHost: t\r\n").await;
    assert_eq!(unfinished.status, 408, "{unfinished:?}");
    let padding = "a".repeat(16 * 1024);
    let oversized = format!("GET /v1/models HTTP/1.1\r\nHost: t\r\nX-Pad: {padding}\r\n\r\n");
    let oversized = raw_request(&gw.addr(), &oversized).await;
    assert_eq!(oversized.status, 431, "{oversized:?}");

    let text = scrape_after(port, 2.0).await;
    for status in [408, 431] {
        let series = format!(
            r#"aurora_requests_total{{key="-",model="-",provider="-",route="-",status="{status}"}}"#
        );
        assert_eq!(value(&text, &series), 1.0, "{text}");
    }
}
