//! Retries, key turns, pools, cooldowns and fallbacks, against fault-injecting
//! providers on loopback. Each test checks both sides: what the client got, and what
//! every provider received (how many attempts, in which order, with which key).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{client, closed_port, fixture, Gateway, MockUpstream, Recorded, Reply, PICKED_PORT};
use serde_json::Value;

const MASTER: &str = "gw-master-resilience-test-0123456789";
const OAI_KEY: &str = "sk-oai-resilience-test";
const ANT_KEY: &str = "sk-ant-resilience-test";

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
const CHAT_STREAM: &str =
    r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

/// `status` `n` times, then what `then` answers.
fn failing_first(
    n: usize,
    status: u16,
    headers: Vec<(String, String)>,
    then: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    let seen = AtomicUsize::new(0);
    move |rec| {
        if seen.fetch_add(1, Ordering::SeqCst) < n {
            let mut h = headers.clone();
            h.push(("content-type".into(), "application/json".into()));
            Reply::Full {
                status,
                headers: h,
                body: format!(r#"{{"error":{{"message":"failing","code":{status}}}}}"#).into(),
            }
        } else {
            then(rec)
        }
    }
}

/// The gateway at `openai` and `anthropic`, where `gpt-4o-mini` falls back to Claude
/// when its prompt is too long (and only then).
fn mini_overflowing_to_claude(openai: &MockUpstream, anthropic: &MockUpstream) -> Gateway {
    let yaml = "models:\n  fallbacks:\n    gpt-4o-mini: [anthropic/claude-sonnet-4-5]\n  fallbacks_on_context_overflow: [gpt-4o-mini]\n";
    gateway(yaml, &openai.url("/v1"), &anthropic.url("/v1"), &[])
}

/// Answers like OpenAI and Anthropic do, JSON or SSE.
fn provider_like(rec: &Recorded) -> Reply {
    let streamed = String::from_utf8_lossy(&rec.body).contains(r#""stream":true"#);
    let sse = |body: String| Reply::Full {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        body: body.into(),
    };
    match rec.uri.as_str() {
        "/v1/chat/completions" if streamed => sse(fixture("openai/chat_completion_stream.txt")),
        "/v1/chat/completions" => Reply::json(200, fixture("openai/chat_completion.json")),
        "/v1/messages" if streamed => sse(fixture("anthropic/messages_stream.txt")),
        "/v1/messages" => Reply::json(200, fixture("anthropic/messages.json")),
        _ => Reply::json(404, "{}"),
    }
}

fn gateway(yaml: &str, openai: &str, anthropic: &str, extra: &[(&str, &str)]) -> Gateway {
    let mut env = vec![
        ("AURORA_MASTER_KEY", MASTER),
        ("OPENAI_API_KEY", OAI_KEY),
        ("OPENAI_BASE_URL", openai),
        ("ANTHROPIC_API_KEY", ANT_KEY),
        ("ANTHROPIC_BASE_URL", anthropic),
    ];
    env.extend_from_slice(extra);
    Gateway::start(yaml, &env)
}

async fn post(gw: &Gateway, path: &str, body: &str) -> reqwest::Response {
    client()
        .post(gw.url(path))
        .bearer_auth(MASTER)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

const RETRY: &str = "retry:\n  attempts: 2\n  backoff: 10ms\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_answering_503_twice_then_200_is_retried_until_it_answers() {
    // Same format (the body replayed by the proxy), JSON and stream; translated JSON
    // (read whole by the gateway) and translated stream.
    for (model_path, body, upstream_path) in [
        ("gpt-4o-mini", CHAT, "/v1/chat/completions"),
        ("gpt-4o-mini", CHAT_STREAM, "/v1/chat/completions"),
        (
            "anthropic/claude-sonnet-4-5",
            &CHAT.replace("gpt-4o-mini", "anthropic/claude-sonnet-4-5"),
            "/v1/messages",
        ),
        (
            "anthropic/claude-sonnet-4-5",
            &CHAT_STREAM.replace("gpt-4o-mini", "anthropic/claude-sonnet-4-5"),
            "/v1/messages",
        ),
    ] {
        // Past 64 KiB the body goes through a subrequest, which hands each retry back.
        for pad in [0, 70 * 1024] {
            retried_until_answered(model_path, &padded(body, pad), upstream_path).await;
        }
    }
}

async fn retried_until_answered(model_path: &str, body: &str, upstream_path: &str) {
    {
        let mock = MockUpstream::start(failing_first(2, 503, Vec::new(), provider_like)).await;
        let base = mock.url("/v1");
        let gw = gateway(RETRY, &base, &base, &[]);
        let resp = post(&gw, "/v1/chat/completions", body).await;
        assert_eq!(resp.status(), 200, "{model_path} {}", body.len());
        assert_eq!(header(&resp, "x-aurora-attempts"), "3");
        let provider = if upstream_path == "/v1/messages" {
            "anthropic"
        } else {
            "openai"
        };
        assert_eq!(header(&resp, "x-aurora-provider"), provider);
        let text = resp.text().await.unwrap();
        assert!(
            text.contains("Hello") || text.contains("hello") || text.contains("content"),
            "{text}"
        );
        let seen = mock.requests();
        assert_eq!(seen.len(), 3, "{model_path} {}", body.len());
        for rec in &seen {
            assert_eq!(rec.uri, upstream_path);
            assert_eq!(
                rec.body, seen[0].body,
                "every attempt carries the same body"
            );
        }
        let log = gw.wait_for_log("attempts=", 1).await;
        assert!(log.contains(":503:") && log.contains(":200:"), "{log}");
    }
}

/// `body` with a `x_pad` member of `pad` bytes in front (nothing added when 0).
fn padded(body: &str, pad: usize) -> String {
    if pad == 0 {
        return body.to_string();
    }
    format!(r#"{{"x_pad":"{}",{}"#, "p".repeat(pad), &body[1..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_retries_configured_a_failure_reaches_the_client_at_once() {
    let mock = MockUpstream::start(failing_first(2, 503, Vec::new(), provider_like)).await;
    let base = mock.url("/v1");
    let gw = gateway("", &base, &base, &[]);
    let resp = post(&gw, "/v1/chat/completions", CHAT).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(header(&resp, "x-aurora-attempts"), "1");
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_waited_for_up_to_its_limit_and_a_longer_one_answers_at_once() {
    let retry_after = |secs: &str| vec![("retry-after".to_string(), secs.to_string())];
    let mock = MockUpstream::start(failing_first(1, 429, retry_after("1"), provider_like)).await;
    let base = mock.url("/v1");
    let gw = gateway(RETRY, &base, &base, &[]);
    let began = Instant::now();
    let resp = post(&gw, "/v1/chat/completions", CHAT).await;
    assert_eq!(resp.status(), 200);
    assert!(
        began.elapsed() >= Duration::from_millis(900),
        "Retry-After: 1 was waited for ({:?})",
        began.elapsed()
    );
    assert_eq!(mock.requests().len(), 2);

    let mock = MockUpstream::start(failing_first(1, 429, retry_after("3600"), provider_like)).await;
    let base = mock.url("/v1");
    let gw = gateway(RETRY, &base, &base, &[]);
    let began = Instant::now();
    let resp = post(&gw, "/v1/chat/completions", CHAT).await;
    assert_eq!(resp.status(), 429, "answered at once, not waited");
    assert_eq!(header(&resp, "retry-after"), "3600");
    assert!(began.elapsed() < Duration::from_secs(5));
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_always_answers_429_is_passed_over_for_the_good_one() {
    let mock = MockUpstream::start(|rec: &Recorded| {
        if rec.header("authorization") == Some("Bearer sk-over-quota") {
            Reply::json(429, r#"{"error":{"message":"quota"}}"#)
        } else {
            provider_like(rec)
        }
    })
    .await;
    let base = mock.url("/v1");
    // No retries configured: a second key is itself a reason to try again.
    let yaml = format!(
        "providers:\n  openai:\n    api_keys: [sk-over-quota, sk-good]\n    base_url: {base}\n"
    );
    let gw = Gateway::start(&yaml, &[("AURORA_MASTER_KEY", MASTER)]);
    for _ in 0..6 {
        let resp = post(&gw, "/v1/chat/completions", CHAT).await;
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    let keys: Vec<String> = mock
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap_or("").to_string())
        .collect();
    let refused = keys.iter().filter(|k| k.ends_with("sk-over-quota")).count();
    assert_eq!(
        refused, 1,
        "the refused key cools down after one 429: {keys:?}"
    );
    assert_eq!(keys.len(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_on_a_closed_port_shares_nothing_once_it_cools_down() {
    let mock = MockUpstream::start(provider_like).await;
    let closed = format!("http://127.0.0.1:{}/v1", closed_port());
    let yaml = format!(
        "retry:\n  attempts: 1\n  backoff: 1ms\nhealth:\n  failures: 3\n  cooldown: 60s\nproviders:\n  dead:\n    type: openai\n    api_key: sk-dead\n    base_url: {closed}\n    models: [pooled-model]\n  live:\n    type: openai\n    api_key: sk-live\n    base_url: {}\n    models: [pooled-model]\n",
        mock.url("/v1")
    );
    let gw = Gateway::start(
        &yaml,
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("AURORA_METRICS_LISTEN", PICKED_PORT),
        ],
    );
    let metrics_listen = gw.metrics_listen();
    let body = CHAT.replace("gpt-4o-mini", "pooled-model");
    let mut attempts = Vec::new();
    for _ in 0..20 {
        let resp = post(&gw, "/v1/chat/completions", &body).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-aurora-provider"), "live");
        attempts.push(header(&resp, "x-aurora-attempts").to_string());
        resp.bytes().await.unwrap();
    }
    assert_eq!(
        mock.requests().len(),
        20,
        "every request answered by `live`"
    );
    // `dead` was tried until it had failed three times, then no more.
    let retried = attempts.iter().filter(|a| *a == "2").count();
    assert_eq!(retried, 3, "{attempts:?}");
    let scrape = common::scrape(&metrics_listen).await;
    assert!(
        scrape.contains(r#"aurora_upstream_available{provider="dead"} 0"#),
        "{scrape}"
    );
    assert!(scrape.contains(r#"aurora_upstream_available{provider="live"} 1"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_three_failures_an_instance_rests_for_its_cooldown_then_gets_one_probe() {
    let east_hits = Arc::new(AtomicUsize::new(0));
    let hits = Arc::clone(&east_hits);
    let east = MockUpstream::start(move |_| {
        hits.fetch_add(1, Ordering::SeqCst);
        Reply::json(503, r#"{"error":{"message":"down"}}"#)
    })
    .await;
    let west = MockUpstream::start(provider_like).await;
    // `east` weighs so much that it goes first whenever it may be tried.
    let yaml = format!(
        "retry:\n  attempts: 1\n  backoff: 1ms\nhealth:\n  failures: 3\n  cooldown: 2s\nproviders:\n  east:\n    type: openai\n    api_key: sk-east\n    base_url: {}\n    models: [pooled-model]\n    weight: 1000000\n  west:\n    type: openai\n    api_key: sk-west\n    base_url: {}\n    models: [pooled-model]\n    weight: 1\n",
        east.url("/v1"),
        west.url("/v1")
    );
    let gw = Gateway::start(&yaml, &[("AURORA_MASTER_KEY", MASTER)]);
    let body = CHAT.replace("gpt-4o-mini", "pooled-model");
    for _ in 0..6 {
        let resp = post(&gw, "/v1/chat/completions", &body).await;
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    assert_eq!(
        east_hits.load(Ordering::SeqCst),
        3,
        "no traffic while cooling"
    );
    tokio::time::sleep(Duration::from_millis(2200)).await;
    for _ in 0..3 {
        let resp = post(&gw, "/v1/chat/completions", &body).await;
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    assert_eq!(
        east_hits.load(Ordering::SeqCst),
        4,
        "one probe after the cooldown, which failed: cooling again"
    );
    assert_eq!(west.requests().len(), 9);
}

/// A provider that sends the first SSE event of its answer and then resets the
/// connection; it counts the connections it got.
async fn provider_resetting_after_the_first_event() -> (String, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") || !seen.ends_with(b"}") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let event = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n";
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                let chunk = format!("{:x}\r\n{event}\r\n", event.len());
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(chunk.as_bytes()).await;
                let _ = sock.flush().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                // Linger 0: closing now sends a reset.
                let _ = sock.set_zero_linger();
            });
        }
    });
    (base, connections)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_after_its_first_event_is_not_answered_twice() {
    let (base, connections) = provider_resetting_after_the_first_event().await;
    let unused = format!("http://127.0.0.1:{}/v1", closed_port());
    let gw = gateway(RETRY, &base, &unused, &[]);
    let resp = post(&gw, "/v1/chat/completions", CHAT_STREAM).await;
    assert_eq!(resp.status(), 200);
    // The body is cut short: read what came before the cut.
    let mut resp = resp;
    let mut bytes = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        bytes.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("Hel"), "{text}");
    assert!(
        !text.contains("[DONE]"),
        "a cut stream must not look complete"
    );
    assert!(
        text.contains("\n\ndata: {\"error\":"),
        "the route's error event ends it: {text}"
    );
    assert_eq!(
        text.matches("\"role\":\"assistant\"").count(),
        1,
        "one answer, not a second after the first: {text}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "no retry once bytes went out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_translated_model_falls_back_to_another_translated_model_on_the_same_connection() {
    // Both models answer through the translation module: the second attempt's answer is
    // decoded and translated afresh after the first one's header was seen.
    let anthropic = MockUpstream::start(|rec: &Recorded| {
        if String::from_utf8_lossy(&rec.body).contains("claude-first") {
            Reply::json(
                503,
                r#"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"#,
            )
        } else {
            provider_like(rec)
        }
    })
    .await;
    let yaml = "retry:\n  attempts: 1\n  backoff: 1ms\nmodels:\n  fallbacks:\n    anthropic/claude-first: [anthropic/claude-second]\n";
    let gw = gateway(yaml, "http://127.0.0.1:9/v1", &anthropic.url("/v1"), &[]);
    for body in [
        r#"{"model":"anthropic/claude-first","messages":[{"role":"user","content":"hi"}]}"#,
        r#"{"model":"anthropic/claude-first","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        r#"{"model":"anthropic/claude-first","messages":[{"role":"user","content":"again"}]}"#,
    ] {
        let resp = post(&gw, "/v1/chat/completions", body).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-aurora-model"), "claude-second");
        let text = resp.text().await.unwrap();
        assert!(text.contains("chat.completion"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_has_its_compressed_answer_decoded_afresh() {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(fixture("anthropic/messages_stream.txt").as_bytes())
        .unwrap();
    let compressed = bytes::Bytes::from(gz.finish().unwrap());
    // A plain 503, then a stream compressed whatever the request asked for: the retry
    // goes through the proxy, whose decoder saw the 503's header.
    let anthropic = MockUpstream::start(failing_first(1, 503, vec![], move |_| Reply::Full {
        status: 200,
        headers: vec![
            ("content-type".into(), "text/event-stream".into()),
            ("content-encoding".into(), "gzip".into()),
        ],
        body: compressed.clone(),
    }))
    .await;
    let yaml = "retry:\n  attempts: 2\n  backoff: 1ms\n";
    let gw = gateway(yaml, "http://127.0.0.1:9/v1", &anthropic.url("/v1"), &[]);
    let resp = post(
        &gw,
        "/v1/chat/completions",
        r#"{"model":"anthropic/claude-sonnet-4-5","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("content-encoding").is_none());
    let text = resp.text().await.unwrap();
    assert!(text.contains("Hello"), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert_eq!(anthropic.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_the_replay_buffer_falls_back_too() {
    // A body past Pingora's 64 KiB replay buffer goes through subrequests: the
    // fallback must be a new subrequest to the fallback's provider, not the first
    // provider asked again.
    let openai = MockUpstream::start(|_: &Recorded| {
        Reply::json(503, r#"{"error":{"message":"overloaded"}}"#)
    })
    .await;
    let anthropic = MockUpstream::start(provider_like).await;
    let yaml = "models:\n  fallbacks:\n    gpt-4o-mini: [anthropic/claude-sonnet-4-5]\n";
    let gw = gateway(yaml, &openai.url("/v1"), &anthropic.url("/v1"), &[]);
    for (call, stream) in [(1, false), (2, true)] {
        let padded = format!(
            r#"{{"model":"gpt-4o-mini","stream":{stream},"user":"{}","messages":[{{"role":"user","content":"hi"}}]}}"#,
            "u".repeat(100 * 1024)
        );
        let resp = post(&gw, "/v1/chat/completions", &padded).await;
        let status = resp.status();
        let provider = header(&resp, "x-aurora-provider").to_string();
        let text = resp.text().await.unwrap();
        assert_eq!(status, 200, "{text}");
        assert_eq!(provider, "anthropic");
        if stream {
            assert!(text.contains("chat.completion.chunk"), "{text}");
            assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
        } else {
            let answer: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(answer["object"], "chat.completion", "{answer}");
        }
        assert_eq!(
            openai.requests().len(),
            call,
            "the first provider asked once"
        );
        assert_eq!(anthropic.requests().len(), call);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_model_falls_back_to_anthropic_and_answers_in_openai_shape() {
    let openai = MockUpstream::start(|_: &Recorded| {
        Reply::json(503, r#"{"error":{"message":"overloaded"}}"#)
    })
    .await;
    let anthropic = MockUpstream::start(provider_like).await;
    let yaml = "retry:\n  attempts: 1\n  backoff: 1ms\nmodels:\n  fallbacks:\n    gpt-4o-mini: [anthropic/claude-sonnet-4-5]\n";
    let gw = gateway(yaml, &openai.url("/v1"), &anthropic.url("/v1"), &[]);

    let resp = post(&gw, "/v1/chat/completions", CHAT).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-aurora-provider"), "anthropic");
    assert_eq!(header(&resp, "x-aurora-model"), "claude-sonnet-4-5");
    assert_eq!(header(&resp, "x-aurora-attempts"), "3");
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["object"], "chat.completion", "{answer}");
    assert!(answer["choices"][0]["message"]["content"].is_string());

    let resp = post(&gw, "/v1/chat/completions", CHAT_STREAM).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-aurora-provider"), "anthropic");
    let text = resp.text().await.unwrap();
    assert!(text.contains("chat.completion.chunk"), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");

    // Two attempts at OpenAI per request, then one at Anthropic, translated.
    assert_eq!(openai.requests().len(), 4);
    let seen = anthropic.requests();
    assert_eq!(seen.len(), 2);
    for rec in &seen {
        assert_eq!(rec.uri, "/v1/messages");
        assert_eq!(rec.header("x-api-key"), Some(ANT_KEY));
        let body: Value = serde_json::from_slice(&rec.body).unwrap();
        assert_eq!(body["model"], "claude-sonnet-4-5");
        assert!(body["max_tokens"].is_number());
    }
    // The client may turn fallbacks off for one request.
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .header("x-aurora-fallbacks", "none")
        .body(CHAT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(anthropic.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_fall_back_from_anthropic_to_an_openai_model() {
    let anthropic = MockUpstream::start(|_: &Recorded| {
        Reply::json(
            529,
            r#"{"type":"error","error":{"type":"overloaded_error","message":"overloaded"}}"#,
        )
    })
    .await;
    let openai = MockUpstream::start(provider_like).await;
    let yaml = "models:\n  fallbacks:\n    claude-sonnet-4-5: [openai/gpt-4o-mini]\n";
    let gw = gateway(yaml, &openai.url("/v1"), &anthropic.url("/v1"), &[]);
    for stream in [false, true] {
        let body = format!(
            r#"{{"model":"claude-sonnet-4-5","max_tokens":64,"stream":{stream},"messages":[{{"role":"user","content":"hi"}}]}}"#
        );
        let resp = post(&gw, "/v1/messages", &body).await;
        assert_eq!(resp.status(), 200, "stream {stream}");
        assert_eq!(header(&resp, "x-aurora-provider"), "openai");
        let text = resp.text().await.unwrap();
        if stream {
            assert!(text.contains("event: message_stop"), "{text}");
        } else {
            let answer: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(answer["type"], "message", "{answer}");
        }
    }
    assert_eq!(anthropic.requests().len(), 2);
    let seen = openai.requests();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|r| r.uri == "/v1/chat/completions"));
    assert!(seen
        .iter()
        .all(|r| r.header("authorization") == Some(&format!("Bearer {OAI_KEY}"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passthrough_call_tries_again_only_when_no_connection_was_made() {
    // Nothing listens there: each attempt fails to connect, so it is tried again.
    let closed = format!("http://127.0.0.1:{}/v1", closed_port());
    let yaml = format!("retry:\n  attempts: 2\n  backoff: 1ms\nproviders:\n  openai:\n    api_key: {OAI_KEY}\n    base_url: {closed}\n");
    let gw = Gateway::start(&yaml, &[("AURORA_MASTER_KEY", MASTER)]);
    // A Chat body is read whole first (to ask for a stream's usage): one past Pingora's
    // 64 KiB replay buffer goes through a subrequest, which tries again the same way.
    let large = format!(
        r#"{{"model":"gpt-4o-mini","user":"{}","messages":[{{"role":"user","content":"hi"}}]}}"#,
        "u".repeat(100 * 1024)
    );
    for (n, body) in [CHAT, large.as_str()].into_iter().enumerate() {
        let began = Instant::now();
        let resp = post(&gw, "/p/openai/chat/completions", body).await;
        assert_eq!(resp.status(), 502, "nothing listens: every attempt fails");
        assert!(began.elapsed() < Duration::from_secs(10));
        let log = gw.wait_for_log("attempts=", n + 1).await;
        let line = log
            .lines()
            .filter(|l| l.contains("attempts="))
            .nth(n)
            .unwrap();
        assert!(
            line.contains("attempts=openai:connect:") && line.matches(":connect:").count() >= 3,
            "{line}"
        );
    }
    // A provider status on passthrough is the provider's answer, never retried.
    let failing = MockUpstream::start(failing_first(1, 503, Vec::new(), provider_like)).await;
    let yaml = format!(
        "retry:\n  attempts: 2\n  backoff: 1ms\nproviders:\n  openai:\n    api_key: {OAI_KEY}\n    base_url: {}\n",
        failing.url("/v1")
    );
    let gw = Gateway::start(&yaml, &[("AURORA_MASTER_KEY", MASTER)]);
    let resp = post(&gw, "/p/openai/chat/completions", CHAT).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(failing.requests().len(), 1);
    // The client named the provider: a one-attempt answer carries none of the
    // routing headers.
    let resp = post(&gw, "/p/openai/chat/completions", CHAT).await;
    assert_eq!(resp.status(), 200);
    for name in ["x-aurora-provider", "x-aurora-model", "x-aurora-attempts"] {
        assert!(resp.headers().get(name).is_none(), "{name}");
    }
    assert!(resp.headers().get("x-aurora-request-id").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_too_long_falls_back_only_for_models_configured_so() {
    let too_long = r#"{"error":{"message":"This model's maximum context length is 128000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
    let openai = MockUpstream::start(move |_: &Recorded| Reply::json(400, too_long)).await;
    let anthropic = MockUpstream::start(provider_like).await;
    let yaml = "models:\n  fallbacks:\n    gpt-4o-mini: [anthropic/claude-sonnet-4-5]\n    gpt-4o: [anthropic/claude-sonnet-4-5]\n  fallbacks_on_context_overflow: [gpt-4o-mini]\n";
    let gw = gateway(yaml, &openai.url("/v1"), &anthropic.url("/v1"), &[]);

    let resp = post(&gw, "/v1/chat/completions", CHAT).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-aurora-provider"), "anthropic");
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(anthropic.requests().len(), 1);

    // `gpt-4o` has fallbacks, but not for a prompt too long: the 400 is the answer.
    let resp = post(
        &gw,
        "/v1/chat/completions",
        &CHAT.replace("gpt-4o-mini", "gpt-4o"),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "context_length_exceeded");
    assert_eq!(anthropic.requests().len(), 1);
    assert_eq!(openai.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_prompt_too_long_falls_back_and_streams_from_the_fallback() {
    let too_long = r#"{"error":{"message":"This model's maximum context length is 128000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
    let openai = MockUpstream::start(move |_: &Recorded| Reply::json(400, too_long)).await;
    let anthropic = MockUpstream::start(provider_like).await;
    let gw = mini_overflowing_to_claude(&openai, &anthropic);

    let resp = post(&gw, "/v1/chat/completions", CHAT_STREAM).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-aurora-provider"), "anthropic");
    assert_eq!(header(&resp, "x-aurora-attempts"), "2");
    assert!(header(&resp, "content-type").starts_with("text/event-stream"));
    let text = resp.text().await.unwrap();
    assert!(text.contains("chat.completion.chunk"), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert_eq!(openai.requests().len(), 1);
    let seen = anthropic.requests();
    assert_eq!(seen.len(), 1);
    let body: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(body["stream"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_a_model_with_overflow_fallbacks_flows_as_usual_when_it_fits() {
    let openai = MockUpstream::start(provider_like).await;
    let anthropic = MockUpstream::start(provider_like).await;
    let gw = mini_overflowing_to_claude(&openai, &anthropic);

    let resp = post(&gw, "/v1/chat/completions", CHAT_STREAM).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-aurora-provider"), "openai");
    let text = resp.text().await.unwrap();
    // The provider's own stream, byte for byte.
    assert_eq!(text, fixture("openai/chat_completion_stream.txt"));
    assert_eq!(anthropic.requests().len(), 0);

    // Anthropic's stream for a Messages client, likewise.
    let messages = r#"{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let yaml = "models:\n  fallbacks:\n    claude-sonnet-4-5: [openai/gpt-4o-mini]\n  fallbacks_on_context_overflow: [claude-sonnet-4-5]\n";
    let gw = gateway(yaml, &openai.url("/v1"), &anthropic.url("/v1"), &[]);
    let resp = post(&gw, "/v1/messages", messages).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert_eq!(text, fixture("anthropic/messages_stream.txt"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_stream_read_by_the_gateway_is_decoded_to_its_end() {
    // A stream that may fall back is read by the gateway's own exchange. Gzipped, its
    // first piece is the gzip header alone, which decodes to nothing yet: the stream
    // goes on past it, not ended there.
    use std::io::Write;
    let stream = fixture("openai/chat_completion_stream.txt");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(stream.as_bytes()).unwrap();
    let gzipped = bytes::Bytes::from(gz.finish().unwrap());
    let pieces = [
        gzipped.slice(..10),
        gzipped.slice(10..40),
        gzipped.slice(40..),
    ];
    let openai = MockUpstream::start(move |_: &Recorded| Reply::Stream {
        status: 200,
        headers: vec![
            ("content-type".into(), "text/event-stream".into()),
            ("content-encoding".into(), "gzip".into()),
        ],
        chunks: pieces
            .iter()
            .map(|p| (Duration::from_millis(50), p.clone()))
            .collect(),
    })
    .await;
    let anthropic = MockUpstream::start(provider_like).await;
    let gw = mini_overflowing_to_claude(&openai, &anthropic);

    let resp = post(&gw, "/v1/chat/completions", CHAT_STREAM).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-aurora-provider"), "openai");
    assert!(resp.headers().get("content-encoding").is_none());
    assert_eq!(resp.text().await.unwrap(), stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_messages_prompt_too_long_falls_back_to_an_openai_model() {
    let too_long = r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#;
    let anthropic = MockUpstream::start(move |_: &Recorded| Reply::json(400, too_long)).await;
    let openai = MockUpstream::start(provider_like).await;
    let yaml = "models:\n  fallbacks:\n    claude-sonnet-4-5: [openai/gpt-4o-mini]\n  fallbacks_on_context_overflow: [claude-sonnet-4-5]\n";
    let gw = gateway(yaml, &openai.url("/v1"), &anthropic.url("/v1"), &[]);
    let messages = r#"{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

    let resp = post(&gw, "/v1/messages", messages).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-aurora-provider"), "openai");
    let text = resp.text().await.unwrap();
    assert!(text.starts_with("event: message_start"), "{text}");
    assert!(text.contains("event: message_stop"), "{text}");
    assert_eq!(anthropic.requests().len(), 1);
    let seen = openai.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, "/v1/chat/completions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_responses_call_falls_back_unless_it_continues_a_conversation() {
    let openai = MockUpstream::start(|_: &Recorded| {
        Reply::json(503, r#"{"error":{"message":"overloaded"}}"#)
    })
    .await;
    let anthropic = MockUpstream::start(provider_like).await;
    let yaml = "models:\n  fallbacks:\n    gpt-4o-mini: [anthropic/claude-sonnet-4-5]\n";
    let gw = gateway(yaml, &openai.url("/v1"), &anthropic.url("/v1"), &[]);

    let resp = post(
        &gw,
        "/v1/responses",
        r#"{"model":"gpt-4o-mini","input":"hi"}"#,
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-aurora-provider"), "anthropic");
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["object"], "response", "{answer}");
    assert_eq!(answer["status"], "completed", "{answer}");
    // Kept by the gateway as the first model's answer would have been.
    let id = answer["id"].as_str().unwrap().to_string();
    let stored = client()
        .get(gw.url(&format!("/v1/responses/{id}")))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), 200);

    let resp = post(
        &gw,
        "/v1/responses",
        r#"{"model":"gpt-4o-mini","input":"hi","stream":true}"#,
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-aurora-provider"), "anthropic");
    let text = resp.text().await.unwrap();
    assert!(text.contains("event: response.completed"), "{text}");
    assert_eq!(anthropic.requests().len(), 2);

    // A call continuing a conversation OpenAI holds cannot move: its failure stands.
    let resp = post(
        &gw,
        "/v1/responses",
        r#"{"model":"gpt-4o-mini","input":"and?","previous_response_id":"resp_held_by_openai"}"#,
    )
    .await;
    assert_eq!(resp.status(), 503);
    assert_eq!(anthropic.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passthrough_error_status_counts_against_the_instances_health() {
    // A 503 on `/p/` goes to the client as it is; it is no sign the instance is well.
    let mock =
        MockUpstream::start(|_| Reply::json(503, r#"{"error":{"message":"overloaded"}}"#)).await;
    let yaml = format!(
        "retry:\n  attempts: 1\n  backoff: 1ms\nhealth:\n  failures: 1\n  cooldown: 60s\nproviders:\n  openai:\n    api_key: {OAI_KEY}\n    base_url: {}\n",
        mock.url("/v1")
    );
    let gw = Gateway::start(
        &yaml,
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("AURORA_METRICS_LISTEN", PICKED_PORT),
        ],
    );
    let metrics_listen = gw.metrics_listen();
    let resp = post(&gw, "/p/openai/models", "").await;
    assert_eq!(resp.status(), 503);
    assert_eq!(mock.requests().len(), 1, "never retried");
    let scrape = common::scrape(&metrics_listen).await;
    assert!(
        scrape.contains(r#"aurora_upstream_available{provider="openai"} 0"#),
        "{scrape}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_longer_than_sixteen_attempts_ends_with_the_providers_answer() {
    let mock = MockUpstream::start(|_| {
        Reply::json(
            503,
            r#"{"error":{"message":"overloaded by the provider","type":"server_error"}}"#,
        )
    })
    .await;
    let yaml = format!(
        "retry:\n  attempts: 10\n  backoff: 1ms\n  max_backoff: 1ms\nhealth:\n  failures: 1000\nmodels:\n  fallbacks:\n    gpt-4o-mini: [openai/gpt-4o]\nproviders:\n  openai:\n    api_key: {OAI_KEY}\n    base_url: {}\n",
        mock.url("/v1")
    );
    let gw = Gateway::start(&yaml, &[("AURORA_MASTER_KEY", MASTER)]);
    let resp = post(&gw, "/v1/chat/completions", CHAT).await;
    assert_eq!(resp.status(), 503);
    // Eleven tries of the model, eleven of its fallback.
    assert_eq!(header(&resp, "x-aurora-attempts"), "22");
    let text = resp.text().await.unwrap();
    assert!(text.contains("overloaded by the provider"), "{text}");
    assert_eq!(mock.requests().len(), 22);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_during_a_replayed_calls_wait_gets_no_further_attempt() {
    use tokio::io::AsyncWriteExt;
    // The provider asks for 3 s; the client leaves during them.
    let mock = MockUpstream::start(|_| Reply::Full {
        status: 503,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("retry-after".into(), "3".into()),
        ],
        body: bytes::Bytes::from_static(br#"{"error":{"message":"busy"}}"#),
    })
    .await;
    let yaml = format!(
        "retry:\n  attempts: 1\nproviders:\n  openai:\n    api_key: {OAI_KEY}\n    base_url: {}\n",
        mock.url("/v1")
    );
    let gw = Gateway::start(&yaml, &[("AURORA_MASTER_KEY", MASTER)]);
    let mut sock = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {MASTER}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{CHAT}",
        CHAT.len()
    );
    sock.write_all(request.as_bytes()).await.unwrap();
    for _ in 0..100 {
        if !mock.requests().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(mock.requests().len(), 1);
    drop(sock);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        mock.requests().len(),
        1,
        "no attempt for a client that left"
    );
}
