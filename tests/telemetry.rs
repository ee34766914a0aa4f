//! Traces: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, each request is exported as a
//! server span under the client's `traceparent`, with a client span per attempt at
//! the provider whose context the provider receives, carrying the generative AI
//! attributes. An unreachable collector costs requests nothing; its spans are counted
//! as dropped.

mod common;

use std::time::Duration;

use common::otlp::{ExportedSpan, OtlpReceiver, CLIENT, SERVER};
use common::{client, closed_port, fixture, Gateway, MockUpstream, Recorded, Reply, PICKED_PORT};

const MASTER: &str = "gw-master-telemetry-test-0123456789";
const OAI_KEY: &str = "sk-oai-provider-telemetry-test";
const ANT_KEY: &str = "sk-ant-provider-telemetry-test";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn provider_like(rec: &Recorded) -> Reply {
    let streamed = String::from_utf8_lossy(&rec.body).contains(r#""stream":true"#);
    match rec.uri.as_str() {
        "/v1/messages" if streamed => Reply::Full {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            body: fixture("anthropic/messages_stream.txt").into(),
        },
        // A model the provider does not have.
        "/v1/chat/completions" if String::from_utf8_lossy(&rec.body).contains("made-up-") => {
            Reply::json(
                404,
                r#"{"error":{"message":"The model does not exist","type":"invalid_request_error","code":"model_not_found"}}"#,
            )
        }
        "/v1/chat/completions" => Reply::json(200, fixture("openai/chat_completion.json")),
        "/v1/messages" => Reply::json(200, fixture("anthropic/messages.json")),
        _ => Reply::json(404, "{}"),
    }
}

fn gateway(mock: &MockUpstream, extra: &[(&str, &str)]) -> Gateway {
    let base = mock.url("/v1");
    let mut env = vec![
        ("AURORA_MASTER_KEY", MASTER),
        ("OPENAI_API_KEY", OAI_KEY),
        ("OPENAI_BASE_URL", base.as_str()),
        ("ANTHROPIC_API_KEY", ANT_KEY),
        ("ANTHROPIC_BASE_URL", base.as_str()),
    ];
    env.extend_from_slice(extra);
    Gateway::start("", &env)
}

async fn chat(gw: &Gateway, model: &str, traceparent: Option<&str>) -> reqwest::Response {
    let mut req = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#
        ));
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp);
    }
    req.send().await.unwrap()
}

fn one_of_kind(spans: &[ExportedSpan], kind: i32) -> ExportedSpan {
    let found: Vec<_> = spans.iter().filter(|s| s.span.kind == kind).collect();
    assert_eq!(found.len(), 1, "one span of kind {kind}: {spans:#?}");
    found[0].clone()
}

#[tokio::test]
async fn a_request_is_a_server_span_under_the_clients_trace_with_a_child_per_attempt() {
    let mock = MockUpstream::start(provider_like).await;
    let otlp = OtlpReceiver::start().await;
    let endpoint = otlp.endpoint();
    let gw = gateway(&mock, &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())]);

    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let resp = chat(&gw, "gpt-4o-mini", Some(&traceparent)).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();

    let spans = otlp.wait_for(2).await;
    let server = one_of_kind(&spans, SERVER);
    let attempt = one_of_kind(&spans, CLIENT);

    // The client's trace goes on: the request span is its child, the attempt the
    // request span's.
    assert_eq!(server.trace_id(), TRACE_ID);
    assert_eq!(server.parent_span_id(), CLIENT_SPAN);
    assert_eq!(attempt.trace_id(), TRACE_ID);
    assert_eq!(attempt.parent_span_id(), server.span_id());
    assert_eq!(server.service.as_deref(), Some("aurora"));

    // The provider was told the attempt's context, in place of the client's.
    let sent = mock.last();
    assert_eq!(
        sent.header("traceparent"),
        Some(format!("00-{TRACE_ID}-{}-01", attempt.span_id()).as_str())
    );

    assert_eq!(server.span.name, "chat gpt-4o-mini");
    for (key, value) in [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.provider.name", "openai"),
        ("gen_ai.system", "openai"),
        ("gen_ai.request.model", "gpt-4o-mini"),
        ("server.address", "127.0.0.1"),
        ("http.response.status_code", "200"),
        ("http.request.method", "POST"),
        ("aurora.route", "chat_completions"),
        // The fixture's usage: 17 prompt tokens, 4 completion tokens.
        ("gen_ai.usage.input_tokens", "17"),
        ("gen_ai.usage.output_tokens", "4"),
    ] {
        assert_eq!(
            server.attr(key).as_deref(),
            Some(value),
            "request span {key}"
        );
    }
    for (key, value) in [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.provider.name", "openai"),
        ("gen_ai.request.model", "gpt-4o-mini"),
        ("server.address", "127.0.0.1"),
        ("http.response.status_code", "200"),
    ] {
        assert_eq!(
            attempt.attr(key).as_deref(),
            Some(value),
            "attempt span {key}"
        );
    }
    let port = mock.addr.port().to_string();
    assert_eq!(attempt.attr("server.port").as_deref(), Some(port.as_str()));
    // The attempt lies within the request.
    assert!(attempt.span.start_time_unix_nano >= server.span.start_time_unix_nano);
    assert!(attempt.span.end_time_unix_nano <= server.span.end_time_unix_nano);

    // No credential leaves in a span.
    for body in otlp.bodies() {
        for secret in [MASTER, OAI_KEY, ANT_KEY] {
            assert!(
                !body.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} exported"
            );
        }
    }
}

#[tokio::test]
async fn a_translated_answer_read_whole_names_the_model_that_answered() {
    let mock = MockUpstream::start(provider_like).await;
    let otlp = OtlpReceiver::start().await;
    let endpoint = otlp.endpoint();
    let gw = gateway(&mock, &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())]);

    // No traceparent: the gateway starts the trace.
    let resp = chat(&gw, "claude-sonnet-4-5", None).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();

    let spans = otlp.wait_for(2).await;
    let server = one_of_kind(&spans, SERVER);
    let attempt = one_of_kind(&spans, CLIENT);
    assert!(server.span.parent_span_id.is_empty(), "a root span");
    assert_eq!(attempt.parent_span_id(), server.span_id());
    assert_eq!(
        mock.last().header("traceparent"),
        Some(format!("00-{}-{}-01", server.trace_id(), attempt.span_id()).as_str())
    );
    for span in [&server, &attempt] {
        assert_eq!(
            span.attr("gen_ai.provider.name").as_deref(),
            Some("anthropic")
        );
        assert_eq!(
            span.attr("gen_ai.request.model").as_deref(),
            Some("claude-sonnet-4-5")
        );
    }
    // Read from the answer's body, after the attempt (which ends at its header).
    assert_eq!(
        server.attr("gen_ai.response.model").as_deref(),
        Some("claude-sonnet-4-20250514")
    );
    assert_eq!(
        server.attr("gen_ai.usage.input_tokens").as_deref(),
        Some("14")
    );
    assert_eq!(
        server.attr("gen_ai.usage.output_tokens").as_deref(),
        Some("5")
    );
}

#[tokio::test]
async fn a_streamed_answer_names_the_model_that_answered() {
    let mock = MockUpstream::start(provider_like).await;
    let otlp = OtlpReceiver::start().await;
    let endpoint = otlp.endpoint();
    let gw = gateway(&mock, &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())]);

    for (path, body) in [
        (
            "/v1/chat/completions",
            r#"{"model":"anthropic/claude-sonnet-4-5","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        ),
        (
            "/p/anthropic/v1/messages",
            r#"{"model":"claude-sonnet-4-5","max_tokens":10,"stream":true,"messages":[]}"#,
        ),
    ] {
        let resp = client()
            .post(gw.url(path))
            .bearer_auth(MASTER)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        resp.bytes().await.unwrap();
    }

    let spans = otlp.wait_for(4).await;
    let servers: Vec<_> = spans.iter().filter(|s| s.span.kind == SERVER).collect();
    assert_eq!(servers.len(), 2, "{spans:#?}");
    for server in servers {
        // Read from the stream's `message_start` as it passed.
        assert_eq!(
            server.attr("gen_ai.response.model").as_deref(),
            Some("claude-sonnet-4-20250514"),
            "{server:#?}"
        );
    }
}

#[tokio::test]
async fn spans_still_queued_are_sent_before_the_gateway_exits() {
    let mock = MockUpstream::start(provider_like).await;
    let otlp = OtlpReceiver::start().await;
    let endpoint = otlp.endpoint();
    let mut gw = gateway(&mock, &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())]);

    let resp = chat(&gw, "gpt-4o-mini", None).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    // At once, before the export thread's next batch is due: SIGINT stops at once.
    gw.signal("INT");
    let status = tokio::task::spawn_blocking(move || gw.wait_exit(Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(status.is_some(), "the gateway exits");
    assert_eq!(
        otlp.spans().len(),
        2,
        "the request's spans reached the collector before the exit"
    );
}

#[tokio::test]
async fn a_body_past_the_retry_buffer_keeps_its_attempt_under_the_request_span() {
    let mock = MockUpstream::start(provider_like).await;
    let otlp = OtlpReceiver::start().await;
    let endpoint = otlp.endpoint();
    let gw = gateway(&mock, &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())]);

    // Over 64 KiB: the exchange with the provider runs in a subrequest.
    let long = "x".repeat(100 * 1024);
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .header("content-type", "application/json")
        .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN}-01"))
        .body(format!(
            r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"{long}"}}]}}"#
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();

    let spans = otlp.wait_for(2).await;
    let server = one_of_kind(&spans, SERVER);
    let attempt = one_of_kind(&spans, CLIENT);
    assert_eq!(server.parent_span_id(), CLIENT_SPAN);
    assert_eq!(attempt.parent_span_id(), server.span_id());
    assert_eq!(
        attempt.attr("gen_ai.request.model").as_deref(),
        Some("gpt-4o-mini")
    );
    assert_eq!(
        server.attr("gen_ai.usage.output_tokens").as_deref(),
        Some("4")
    );
    assert_eq!(
        mock.last().header("traceparent"),
        Some(format!("00-{TRACE_ID}-{}-01", attempt.span_id()).as_str())
    );
}

#[tokio::test]
async fn a_passthrough_call_is_traced_with_the_operation_its_path_names() {
    let mock = MockUpstream::start(provider_like).await;
    let otlp = OtlpReceiver::start().await;
    let endpoint = otlp.endpoint();
    let gw = gateway(&mock, &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())]);

    let resp = client()
        .post(gw.url("/p/anthropic/v1/messages"))
        .bearer_auth(MASTER)
        .header("content-type", "application/json")
        .body(r#"{"model":"claude-sonnet-4-5","max_tokens":10,"messages":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    // A health probe makes no span.
    let health = client().get(gw.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let spans = otlp.wait_for(2).await;
    let server = one_of_kind(&spans, SERVER);
    one_of_kind(&spans, CLIENT);
    assert_eq!(server.span.name, "chat");
    assert_eq!(
        server.attr("gen_ai.operation.name").as_deref(),
        Some("chat")
    );
    assert_eq!(
        server.attr("gen_ai.provider.name").as_deref(),
        Some("anthropic")
    );
    assert_eq!(server.attr("aurora.route").as_deref(), Some("passthrough"));
    assert_eq!(
        server.attr("gen_ai.usage.input_tokens").as_deref(),
        Some("14")
    );
}

#[tokio::test]
async fn without_an_endpoint_no_span_is_made_and_the_clients_traceparent_passes_unchanged() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway(&mock, &[]);
    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let resp = chat(&gw, "gpt-4o-mini", Some(&traceparent)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        mock.last().header("traceparent"),
        Some(traceparent.as_str())
    );
}

#[tokio::test]
async fn an_unreachable_collector_costs_requests_nothing_but_dropped_spans() {
    let mock = MockUpstream::start(provider_like).await;
    let nobody = format!("http://127.0.0.1:{}", closed_port());
    let gw = gateway(
        &mock,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", nobody.as_str()),
            ("AURORA_METRICS_LISTEN", PICKED_PORT),
        ],
    );
    let metrics_listen = gw.metrics_listen();
    for _ in 0..5 {
        let resp = chat(&gw, "gpt-4o-mini", None).await;
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    // Five requests, two spans each, none of which the collector took.
    let mut dropped = 0.0;
    for _ in 0..200 {
        let text = common::scrape(&metrics_listen).await;
        dropped = text
            .lines()
            .find_map(|l| l.strip_prefix("aurora_trace_spans_dropped_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if dropped >= 10.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(dropped, 10.0);
}

#[tokio::test]
async fn a_client_trace_not_sampled_exports_nothing_and_tells_the_provider_so() {
    let mock = MockUpstream::start(provider_like).await;
    let otlp = OtlpReceiver::start().await;
    let endpoint = otlp.endpoint();
    let gw = gateway(&mock, &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())]);

    let resp = chat(
        &gw,
        "gpt-4o-mini",
        Some(&format!("00-{TRACE_ID}-{CLIENT_SPAN}-00")),
    )
    .await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let sent = mock.last();
    let traceparent = sent.header("traceparent").unwrap();
    assert!(
        traceparent.starts_with(&format!("00-{TRACE_ID}-")),
        "{traceparent}"
    );
    assert!(traceparent.ends_with("-00"), "{traceparent}");
    assert!(!traceparent.contains(CLIENT_SPAN), "{traceparent}");

    // A sampled request after it is exported alone, within the same second or the next.
    let resp = chat(&gw, "gpt-4o-mini", None).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let spans = otlp.wait_for(2).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let spans_later = otlp.spans();
    assert_eq!(spans_later.len(), 2, "{spans_later:#?}");
    assert!(spans.iter().all(|s| s.trace_id() != TRACE_ID));
}

#[tokio::test]
async fn a_made_up_model_names_no_span_and_a_huge_one_is_clipped() {
    let mock = MockUpstream::start(provider_like).await;
    let otlp = OtlpReceiver::start().await;
    let endpoint = otlp.endpoint();
    let gw = gateway(&mock, &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())]);
    let model = format!("gpt-made-up-{}", "x".repeat(64 * 1024));
    let resp = chat(&gw, &model, None).await;
    assert_eq!(resp.status(), 404);
    resp.bytes().await.unwrap();
    let spans = otlp.wait_for(2).await;
    for span in [one_of_kind(&spans, SERVER), one_of_kind(&spans, CLIENT)] {
        assert_eq!(span.span.name, "chat other");
        let attr = span.attr("gen_ai.request.model").unwrap();
        assert!(attr.len() <= 256 + '…'.len_utf8(), "{}", attr.len());
        assert!(attr.starts_with("gpt-made-up-xxx"));
    }
}

#[tokio::test]
async fn a_request_refused_before_any_provider_names_none_in_its_span() {
    let mock = MockUpstream::start(provider_like).await;
    let otlp = OtlpReceiver::start().await;
    let endpoint = otlp.endpoint();
    let gw = gateway(&mock, &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())]);

    // A Chat body held to ask for its stream's usage, which cannot be read: refused
    // by the gateway, its provider chosen and never reached.
    let resp = client()
        .post(gw.url("/p/openai/chat/completions"))
        .bearer_auth(MASTER)
        .header("content-type", "application/json")
        .body(r#"{"model":"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    resp.bytes().await.unwrap();
    assert!(mock.requests().is_empty());

    let spans = otlp.wait_for(1).await;
    let server = one_of_kind(&spans, SERVER);
    for key in [
        "gen_ai.provider.name",
        "gen_ai.system",
        "aurora.provider",
        "server.address",
        "server.port",
    ] {
        assert_eq!(server.attr(key), None, "{key}: {server:#?}");
    }
    assert_eq!(
        server.attr("http.response.status_code").as_deref(),
        Some("400")
    );
}

#[tokio::test]
async fn a_body_past_the_retry_buffer_is_traced_as_a_small_one_is() {
    let mock = MockUpstream::start(provider_like).await;
    let otlp = OtlpReceiver::start().await;
    let endpoint = otlp.endpoint();
    let base = mock.url("/v1");
    // A model configuration names: spans are named by it.
    let gw = Gateway::start(
        "models:\n  aliases:\n    fast: openai/gpt-4o-mini\n",
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("OPENAI_API_KEY", OAI_KEY),
            ("OPENAI_BASE_URL", base.as_str()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ],
    );
    // Small, then past 64 KiB (the exchange runs in a subrequest).
    for (i, pad) in [0, 100 * 1024].into_iter().enumerate() {
        let content = "x".repeat(pad);
        let resp = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(MASTER)
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"hi{content}"}}]}}"#
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
        let spans = otlp.wait_for(2 * (i + 1)).await;
        let spans = &spans[2 * i..];
        let server = one_of_kind(spans, SERVER);
        let attempt = one_of_kind(spans, CLIENT);
        assert_eq!(server.span.name, "chat gpt-4o-mini", "{pad}");
        assert_eq!(attempt.span.name, "chat gpt-4o-mini", "{pad}");
        assert_eq!(
            server.attr("gen_ai.response.model").as_deref(),
            Some("gpt-4o-mini-2024-07-18"),
            "{pad}"
        );
    }
}

#[tokio::test]
async fn a_passthrough_read_is_no_model_call_and_its_attempt_names_its_method() {
    let mock = MockUpstream::start(provider_like).await;
    let otlp = OtlpReceiver::start().await;
    let endpoint = otlp.endpoint();
    let gw = gateway(&mock, &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())]);

    // Lists stored Chat Completions: a read, not a call of a model.
    let resp = client()
        .get(gw.url("/p/openai/chat/completions"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    resp.bytes().await.unwrap();

    let spans = otlp.wait_for(2).await;
    for span in [one_of_kind(&spans, SERVER), one_of_kind(&spans, CLIENT)] {
        assert_eq!(span.span.name, "GET passthrough", "{span:#?}");
        assert_eq!(span.attr("gen_ai.operation.name"), None, "{span:#?}");
        assert_eq!(span.attr("http.request.method").as_deref(), Some("GET"));
    }
}

#[tokio::test]
async fn estimated_token_counts_are_marked_and_not_given_as_reported() {
    // An OpenAI-compatible server that reports no usage: the call is charged an
    // estimate.
    let mock = MockUpstream::start(|_: &Recorded| {
        Reply::json(
            200,
            r#"{"id":"c1","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, general Kenobi"},"finish_reason":"stop"}]}"#,
        )
    })
    .await;
    let otlp = OtlpReceiver::start().await;
    let endpoint = otlp.endpoint();
    let gw = gateway(&mock, &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())]);
    let resp = chat(&gw, "gpt-4o-mini", None).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();

    let spans = otlp.wait_for(2).await;
    let server = one_of_kind(&spans, SERVER);
    for key in ["gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"] {
        assert_eq!(server.attr(key), None, "{key}: {server:#?}");
    }
    assert_eq!(
        server.attr("aurora.usage.estimated").as_deref(),
        Some("true"),
        "{server:#?}"
    );
    // "Hello there, general Kenobi": 7 tokens.
    assert_eq!(
        server
            .attr("aurora.usage.estimated_output_tokens")
            .as_deref(),
        Some("7")
    );
    assert!(server.attr("aurora.usage.estimated_input_tokens").is_some());
}
