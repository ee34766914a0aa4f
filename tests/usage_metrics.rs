//! Tokens and cost from every answer that reports them, on every route: passthrough
//! JSON and SSE (read as they flow, the bytes unchanged), translated Chat Completions
//! and Messages answers whole and streamed, and the Responses API; counted in
//! `aurora_tokens_total` and `aurora_cost_usd_total` and written on the access line.

mod common;

use std::time::Duration;

use common::{client, fixture, Gateway, MockUpstream, Recorded, Reply, PICKED_PORT};
use serde_json::json;

const MASTER: &str = "gw-master-usage-metrics-test-012345678";
const OAI_KEY: &str = "sk-oai-provider-usage-test";
const ANT_KEY: &str = "sk-ant-provider-usage-test";

fn sse(body: String) -> Reply {
    Reply::Full {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        body: body.into(),
    }
}

fn provider(rec: &Recorded) -> Reply {
    let streamed = String::from_utf8_lossy(&rec.body).contains(r#""stream":true"#);
    match rec.uri.as_str() {
        "/v1/chat/completions" if streamed => {
            // A stream with the usage chunk OpenAI sends for include_usage.
            let usage = r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":30,"completion_tokens":9,"total_tokens":39,"prompt_tokens_details":{"cached_tokens":20},"completion_tokens_details":{"reasoning_tokens":4}}}"#;
            let stream = fixture("openai/chat_completion_stream.txt")
                .replace("data: [DONE]", &format!("{usage}\n\ndata: [DONE]"));
            sse(stream)
        }
        "/v1/chat/completions" => Reply::json(200, fixture("openai/chat_completion.json")),
        "/v1/messages" if streamed => sse(fixture("anthropic/messages_stream.txt")),
        "/v1/messages" => Reply::json(200, fixture("anthropic/messages.json")),
        "/v1/responses" => Reply::json(200, fixture("openai/responses.json")),
        _ => Reply::json(404, "{}"),
    }
}

fn gateway(mock: &MockUpstream) -> Gateway {
    let base = mock.url("/v1");
    let yaml = "models:\n  prices:\n    gpt-4o-mini: {input: 0.15, output: 0.60, cache_read: 0.075}\n    anthropic/claude-sonnet-4-5: {input: 3.0, output: 15.0}\nproviders:\n  anthropic:\n    models: [claude-sonnet-4-5, claude-sonnet-4-20250514]\n  openai:\n    models: [gpt-4o-mini, gpt-4o-mini-2024-07-18]\n";
    Gateway::start(
        yaml,
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("ANTHROPIC_API_KEY", ANT_KEY),
            ("ANTHROPIC_BASE_URL", base.as_str()),
            ("OPENAI_API_KEY", OAI_KEY),
            ("OPENAI_BASE_URL", base.as_str()),
            ("AURORA_METRICS_LISTEN", PICKED_PORT),
        ],
    )
}

async fn post(gw: &Gateway, path: &str, body: serde_json::Value) -> bytes::Bytes {
    let resp = client()
        .post(gw.url(path))
        .bearer_auth(MASTER)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    resp.bytes().await.unwrap()
}

/// The value of the one series whose line starts with `series`.
fn value(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_cost_are_counted_on_every_route_and_passthrough_is_untouched() {
    let mock = MockUpstream::start(provider).await;
    let gw = gateway(&mock);
    let metrics_port = gw.metrics_port();
    let hi = json!([{"role": "user", "content": "hi"}]);

    // Passthrough: Anthropic SSE (10 in, 5 out) and OpenAI JSON (17 in, 4 out).
    let streamed = post(
        &gw,
        "/p/anthropic/v1/messages",
        json!({"model": "claude-sonnet-4-5", "max_tokens": 8, "stream": true, "messages": hi}),
    )
    .await;
    assert_eq!(
        streamed,
        fixture("anthropic/messages_stream.txt").as_bytes()
    );
    let whole = post(
        &gw,
        "/p/openai/chat/completions",
        json!({"model": "gpt-4o-mini", "messages": hi}),
    )
    .await;
    assert_eq!(whole, fixture("openai/chat_completion.json").as_bytes());
    // Translated: Chat client of Anthropic, whole (14 in, 5 out) and streamed (10, 5).
    post(
        &gw,
        "/v1/chat/completions",
        json!({"model": "anthropic/claude-sonnet-4-5", "messages": hi}),
    )
    .await;
    post(
        &gw,
        "/v1/chat/completions",
        json!({"model": "anthropic/claude-sonnet-4-5", "stream": true, "messages": hi}),
    )
    .await;
    // A body over 64 KiB goes through a subrequest, which hands its usage back (10, 5).
    let long = json!([{"role": "user", "content": "x".repeat(70 * 1024)}]);
    post(
        &gw,
        "/v1/chat/completions",
        json!({"model": "anthropic/claude-sonnet-4-5", "stream": true, "messages": long}),
    )
    .await;
    // Messages client of OpenAI, streamed with cached and reasoning tokens:
    // 30 prompt of which 20 cached, 9 completion of which 4 reasoning.
    post(
        &gw,
        "/v1/messages",
        json!({"model": "openai/gpt-4o-mini", "max_tokens": 8, "stream": true, "messages": hi}),
    )
    .await;
    // The Responses API, native (17 in, 5 out).
    post(
        &gw,
        "/v1/responses",
        json!({"model": "openai/gpt-4o-mini", "input": "hi"}),
    )
    .await;

    // Each request is counted before its access line is written.
    let log = gw.wait_for_log("tokens_input=", 7).await;
    let scrape = common::scrape(&format!("127.0.0.1:{metrics_port}")).await;
    let tokens = |provider: &str, model: &str, kind: &str| {
        value(
            &scrape,
            &format!(
                r#"aurora_tokens_total{{key="master",kind="{kind}",model="{model}",provider="{provider}"}}"#
            ),
        )
    };
    // Passthrough reads no request body: its model is the one the answer names.
    let dated_claude = "claude-sonnet-4-20250514";
    assert_eq!(
        tokens("anthropic", dated_claude, "input"),
        Some(10.0),
        "{scrape}"
    );
    assert_eq!(tokens("anthropic", dated_claude, "output"), Some(5.0));
    assert_eq!(
        tokens("openai", "gpt-4o-mini-2024-07-18", "input"),
        Some(17.0)
    );
    assert_eq!(
        tokens("openai", "gpt-4o-mini-2024-07-18", "output"),
        Some(4.0)
    );
    assert!(
        !scrape.contains(r#"model="-",provider="anthropic",route="passthrough""#),
        "{scrape}"
    );
    assert!(log.contains("model=claude-sonnet-4-20250514"), "{log}");
    let claude = "claude-sonnet-4-5";
    assert_eq!(
        tokens("anthropic", claude, "input"),
        Some(14.0 + 10.0 + 10.0)
    );
    assert_eq!(tokens("anthropic", claude, "output"), Some(5.0 + 5.0 + 5.0));
    assert_eq!(tokens("anthropic", claude, "cache_read"), None);
    let gpt = "gpt-4o-mini";
    assert_eq!(tokens("openai", gpt, "input"), Some(10.0 + 17.0));
    assert_eq!(tokens("openai", gpt, "output"), Some(9.0 + 5.0));
    assert_eq!(tokens("openai", gpt, "cache_read"), Some(20.0));
    assert_eq!(tokens("openai", gpt, "reasoning"), Some(4.0));

    let cost = |provider: &str, model: &str| {
        value(
            &scrape,
            &format!(
                r#"aurora_cost_usd_total{{key="master",model="{model}",provider="{provider}"}}"#
            ),
        )
        .unwrap()
    };
    let claude_cost = (34.0 * 3.0 + 15.0 * 15.0) / 1e6;
    assert!((cost("anthropic", claude) - claude_cost).abs() < 1e-12);
    let gpt_cost = (27.0 * 0.15 + 14.0 * 0.60 + 20.0 * 0.075) / 1e6;
    assert!((cost("openai", gpt) - gpt_cost).abs() < 1e-12);

    // The access line says it too.
    assert!(log.contains("tokens_input=10 tokens_output=9 tokens_cache_read=20 tokens_cache_write=0 tokens_reasoning=4"), "{log}");
    assert!(log.contains("cost_usd="), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_without_usage_or_in_an_encoding_the_gateway_cannot_decode_add_no_tokens() {
    // A gzipped answer is decoded and read (see `limits`); one in zstd, which the
    // gateway does not decode, passes as it came and is not read, though its bytes
    // here are the plain answer with its usage.
    let mock = MockUpstream::start(|rec: &Recorded| match rec.uri.as_str() {
        "/v1/models" => Reply::json(200, fixture("openai/models.json")),
        _ => Reply::Full {
            status: 200,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("content-encoding".into(), "zstd".into()),
            ],
            body: fixture("openai/chat_completion.json").into(),
        },
    })
    .await;
    let gw = gateway(&mock);
    let metrics_port = gw.metrics_port();
    for path in ["/p/openai/models", "/p/openai/chat/completions"] {
        let resp = client()
            .get(gw.url(path))
            .bearer_auth(MASTER)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let labelled = resp.headers().get("content-encoding").cloned();
        let body = resp.bytes().await.unwrap();
        if path.ends_with("completions") {
            assert_eq!(labelled.unwrap(), "zstd", "labelled as it came");
            assert_eq!(body, fixture("openai/chat_completion.json").as_bytes());
        }
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let scrape = common::scrape(&format!("127.0.0.1:{metrics_port}")).await;
    assert!(!scrape.contains("aurora_tokens_total{"), "{scrape}");
    assert!(!scrape.contains("aurora_cost_usd_total{"), "{scrape}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_reports_no_usage_is_counted_as_estimated() {
    // A provider that ignores `include_usage`: the stream ends without its usage, and
    // is charged (and counted) an estimate, which the metrics tell apart.
    let mock = MockUpstream::start(|_| sse(fixture("openai/chat_completion_stream.txt"))).await;
    let gw = gateway(&mock);
    let metrics_port = gw.metrics_port();
    let body = json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    post(&gw, "/p/openai/chat/completions", body).await;
    let line = gw.wait_for_log("path=/p/openai/chat/completions", 1).await;
    assert!(line.contains(" tokens_output=4 "), "{line}");
    assert!(line.contains(" tokens_estimated=true"), "{line}");
    let scrape = common::scrape(&format!("127.0.0.1:{metrics_port}")).await;
    assert_eq!(
        value(&scrape, "aurora_usage_estimates_total{"),
        Some(1.0),
        "{scrape}"
    );
    assert_eq!(
        value(
            &scrape,
            r#"aurora_tokens_total{key="master",kind="output",model="gpt-4o-mini-2024-07-18",provider="openai"}"#
        ),
        Some(4.0),
        "{scrape}"
    );
    // The usage report tells the estimated requests apart too.
    let url = format!("http://127.0.0.1:{metrics_port}/admin/usage?key=master&period=day");
    let report = common::get_json(&url, MASTER).await;
    assert_eq!(report["total"]["requests"], 1, "{report}");
    assert_eq!(report["total"]["requests_estimated"], 1, "{report}");
    assert_eq!(report["total"]["tokens"]["output"], 4, "{report}");
}
