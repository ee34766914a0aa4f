//! The OpenAI-compatible `/v1` API end to end: model routing from the body, bodies of
//! megabytes read before routing and re-issued intact, OpenAI-format providers
//! untouched but for `model` (and a stream asked for its usage, which only a client
//! that asked sees), Anthropic translated both ways (streams included).

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{client, fixture, Gateway, MockUpstream, Recorded, Reply};
use serde_json::{json, Value};

const MASTER: &str = "gw-master-v1-test-0123456789abcd";
const ANT_KEY: &str = "sk-ant-provider-v1-test";
const OAI_KEY: &str = "sk-oai-provider-v1-test";

/// Anthropic and OpenAI both served by `mock` under `/v1`.
fn gateway_for(mock: &MockUpstream, yaml: &str) -> Gateway {
    let base = mock.url("/v1");
    Gateway::start(
        yaml,
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("ANTHROPIC_API_KEY", ANT_KEY),
            ("ANTHROPIC_BASE_URL", base.as_str()),
            ("OPENAI_API_KEY", OAI_KEY),
            ("OPENAI_BASE_URL", base.as_str()),
        ],
    )
}

/// A gateway whose only provider is Anthropic at `base`.
fn anthropic_gateway(base: &str) -> Gateway {
    Gateway::start(
        "",
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("ANTHROPIC_API_KEY", ANT_KEY),
            ("ANTHROPIC_BASE_URL", base),
        ],
    )
}

/// A minimal streamed chat request routed to Anthropic.
const ANTHROPIC_STREAM_REQUEST: &[u8] =
    br#"{"model":"anthropic/claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}],"stream":true}"#;

/// Answers like each provider would: Anthropic JSON or SSE on `/v1/messages`,
/// an OpenAI completion on `/v1/chat/completions`, an embedding on `/v1/embeddings`.
fn provider_like(rec: &Recorded) -> Reply {
    let streaming = serde_json::from_slice::<Value>(&rec.body)
        .map(|v| v["stream"] == true)
        .unwrap_or(false);
    match (rec.uri.as_str(), streaming) {
        ("/v1/messages", false) => Reply::json(200, fixture("anthropic/messages.json")),
        ("/v1/messages", true) => sse(fixture("anthropic/messages_stream.txt"), 64, 0),
        ("/v1/chat/completions", _) => Reply::json(200, fixture("openai/chat_completion.json")),
        ("/v1/embeddings", _) => Reply::json(
            200,
            r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5]}]}"#,
        ),
        _ => Reply::json(404, r#"{"error":"no route"}"#),
    }
}

/// `text` as an SSE response in `size`-byte chunks, `pause_ms` apart.
fn sse(text: String, size: usize, pause_ms: u64) -> Reply {
    Reply::Stream {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        chunks: text
            .as_bytes()
            .chunks(size)
            .map(|c| (Duration::from_millis(pause_ms), Bytes::copy_from_slice(c)))
            .collect(),
    }
}

/// A long agent conversation of about `mib` MiB, with fields the gateway does not know.
fn conversation(model: &str, mib: usize) -> Vec<u8> {
    let turn = "x".repeat(64 * 1024);
    let mut messages = vec![json!({"role": "system", "content": "be brief"})];
    for i in 0..mib * 16 {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        messages.push(json!({"role": role, "content": format!("{i}:{turn}")}));
    }
    messages.push(json!({"role": "user", "content": "and now?"}));
    serde_json::to_vec(&json!({
        "model": model,
        "messages": messages,
        "temperature": 0.2,
        "x_vendor_extension": {"keep": [1, 2, 3]},
    }))
    .unwrap()
}

/// Body sizes that take each of the gateway's two ways upstream: proxied by the client's
/// own session (the body fits Pingora's 64 KiB retry buffer), or through a subrequest.
const SMALL_AND_LARGE: [usize; 2] = [0, 100 * 1024];

/// `body` (a JSON object) grown by an unknown field of `pad` bytes.
fn padded(body: &[u8], pad: usize) -> Vec<u8> {
    if pad == 0 {
        return body.to_vec();
    }
    let mut out = format!(r#"{{"x_pad":"{}","#, "p".repeat(pad)).into_bytes();
    out.extend_from_slice(&body[1..]);
    out
}

async fn post(gw: &Gateway, path: &str, body: Vec<u8>) -> reqwest::Response {
    client()
        .post(gw.url(path))
        .bearer_auth(MASTER)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

fn declared_length(rec: &Recorded) -> usize {
    rec.header("content-length").unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_format_body_arrives_byte_identical_but_for_the_model() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway_for(&mock, "");
    let body = conversation("openai/gpt-4o-mini", 3);
    assert!(body.len() > 3 * 1024 * 1024);
    let resp = post(&gw, "/v1/chat/completions", body.clone()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.bytes().await.unwrap(),
        fixture("openai/chat_completion.json").as_bytes()
    );
    let rec = mock.last();
    assert_eq!(rec.uri, "/v1/chat/completions");
    let expected = String::from_utf8(body).unwrap().replacen(
        r#""model":"openai/gpt-4o-mini""#,
        r#""model":"gpt-4o-mini""#,
        1,
    );
    assert_eq!(rec.body, expected.as_bytes());
    assert_eq!(declared_length(&rec), rec.body.len());
    assert!(rec.header("transfer-encoding").is_none());
    assert_eq!(
        rec.header("authorization"),
        Some(format!("Bearer {OAI_KEY}").as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_model_gets_a_translated_body_of_megabytes_intact() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway_for(&mock, "");
    let body = conversation("anthropic/claude-sonnet-4-5", 3);
    let resp = post(&gw, "/v1/chat/completions", body.clone()).await;
    assert_eq!(resp.status(), 200);
    let completion: Value = resp.json().await.unwrap();
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(completion["model"], "anthropic/claude-sonnet-4-5");
    assert_eq!(
        completion["choices"][0]["message"]["content"],
        "Hello World"
    );
    assert_eq!(completion["choices"][0]["finish_reason"], "stop");

    let rec = mock.last();
    assert_eq!(rec.uri, "/v1/messages");
    assert_eq!(declared_length(&rec), rec.body.len());
    assert_eq!(rec.header("x-api-key"), Some(ANT_KEY));
    assert!(rec.header("authorization").is_none());
    assert!(rec.header("anthropic-version").is_some());
    assert_eq!(rec.header("accept-encoding"), Some("identity"));
    let sent: Value = serde_json::from_slice(&rec.body).unwrap();
    let original: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(sent["model"], "claude-sonnet-4-5");
    // No limit named: the model's ceiling, as OpenAI reads a missing one.
    assert_eq!(sent["max_tokens"], 64_000);
    assert_eq!(sent["system"], "be brief");
    let sent_turns = sent["messages"].as_array().unwrap();
    let original_turns = &original["messages"].as_array().unwrap()[1..];
    assert_eq!(sent_turns.len(), original_turns.len());
    for (s, o) in sent_turns.iter().zip(original_turns) {
        assert_eq!(s["role"], o["role"]);
        let text = s["content"]
            .as_str()
            .or_else(|| s["content"][0]["text"].as_str())
            .unwrap();
        assert_eq!(text, o["content"].as_str().unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_of_megabytes_reach_an_openai_format_provider_intact() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway_for(&mock, "");
    let input = "y".repeat(3 * 1024 * 1024);
    let body =
        serde_json::to_vec(&json!({"model": "openai:text-embedding-3-small", "input": input}))
            .unwrap();
    let resp = post(&gw, "/v1/embeddings", body).await;
    assert_eq!(resp.status(), 200);
    let rec = mock.last();
    assert_eq!(rec.uri, "/v1/embeddings");
    assert_eq!(declared_length(&rec), rec.body.len());
    let sent: Value = serde_json::from_slice(&rec.body).unwrap();
    assert_eq!(sent["model"], "text-embedding-3-small");
    assert_eq!(sent["input"].as_str().unwrap().len(), input.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_by_openais_own_model_name_reach_openai() {
    let mock = MockUpstream::start(|rec: &Recorded| {
        match common::mock::provider_rules::openai_embeddings_refusal(rec) {
            Some(refusal) => refusal,
            None => provider_like(rec),
        }
    })
    .await;
    let gw = gateway_for(&mock, "");
    for model in ["text-embedding-3-small", "text-embedding-ada-002"] {
        let body = serde_json::to_vec(&json!({"model": model, "input": "hi"})).unwrap();
        let resp = post(&gw, "/v1/embeddings", body).await;
        assert_eq!(resp.status(), 200, "{model}");
        let rec = mock.last();
        assert_eq!(rec.uri, "/v1/embeddings");
        assert_eq!(
            rec.header("authorization"),
            Some(&*format!("Bearer {OAI_KEY}"))
        );
        let sent: Value = serde_json::from_slice(&rec.body).unwrap();
        assert_eq!(sent["model"], model);
    }
    // Gemini's embedding model is no OpenAI model: it is not sent there.
    let resp = post(
        &gw,
        "/v1/embeddings",
        br#"{"model":"text-embedding-004","input":"hi"}"#.to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_for_an_anthropic_model_are_refused_naming_the_reason() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway_for(&mock, "");
    let resp = post(
        &gw,
        "/v1/embeddings",
        br#"{"model":"anthropic/claude-sonnet-4-5","input":"hi"}"#.to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("OpenAI-format"));
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_stream_is_translated_as_it_arrives() {
    let mock = MockUpstream::start(|rec| {
        if rec.uri == "/v1/messages" {
            // One event per chunk, 150 ms apart.
            let text = fixture("anthropic/messages_stream.txt");
            let events: Vec<(Duration, Bytes)> = text
                .split_inclusive("\n\n")
                .map(|e| (Duration::from_millis(150), Bytes::from(e.to_string())))
                .collect();
            Reply::Stream {
                status: 200,
                headers: vec![("content-type".into(), "text/event-stream".into())],
                chunks: events,
            }
        } else {
            Reply::json(404, "{}")
        }
    })
    .await;
    let gw = gateway_for(&mock, "");
    let body = json!({
        "model": "anthropic/claude-sonnet-4-5",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let mut resp = post(&gw, "/v1/chat/completions", body.to_string().into_bytes()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    let mut first_at = None;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        first_at.get_or_insert_with(Instant::now);
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let sent = mock.chunk_sent_at.lock().unwrap().clone();
    // The first translated chunk reached the client before the provider finished.
    assert!(first_at.unwrap() < *sent.last().unwrap());
    let chunks: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "Hello World");
    assert!(chunks.iter().any(|c| c["usage"]["total_tokens"].is_u64()));
    assert!(text.ends_with("data: [DONE]\n\n"));
    let sent_body: Value = serde_json::from_slice(&mock.last().body).unwrap();
    assert_eq!(sent_body["stream"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_rate_limit_becomes_openai_envelope_keeping_retry_after() {
    let mock = MockUpstream::start(|_| Reply::Full {
        status: 429,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("retry-after".into(), "7".into()),
        ],
        body: Bytes::from_static(
            br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
        ),
    })
    .await;
    let gw = gateway_for(&mock, "");
    let resp = post(
        &gw,
        "/v1/chat/completions",
        ANTHROPIC_STREAM_REQUEST.to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    // A short wait: the SDKs wait for it and retry, as they should.
    assert!(resp.headers().get("x-should-retry").is_none());
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["type"], "rate_limit_error");
    assert_eq!(err["error"]["message"], "slow down");
}

/// A provider's 429 asking for an hour's wait, in its own API's envelope, named by
/// its own API's id header.
fn refusing_for_an_hour(rec: &Recorded) -> Reply {
    let (body, id): (&'static [u8], _) = if rec.uri == "/v1/messages" {
        (
            br#"{"type":"error","error":{"type":"rate_limit_error","message":"daily limit"}}"#,
            ("request-id", "req_anthropic_1"),
        )
    } else {
        (
            br#"{"error":{"type":"requests","code":"rate_limit_exceeded","message":"daily limit"}}"#,
            ("x-request-id", "req_openai_1"),
        )
    };
    Reply::Full {
        status: 429,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("retry-after".into(), "3600".into()),
            (id.0.into(), id.1.into()),
        ],
        body: Bytes::from_static(body),
    }
}

/// A call of each face to a provider of the other API, JSON and streamed: its path,
/// whether it streams, and its body (Chat to Anthropic, Messages to OpenAI).
fn calls_of_the_other_api() -> Vec<(&'static str, bool, String)> {
    let mut calls = Vec::new();
    for stream in [false, true] {
        calls.push((
            "/v1/chat/completions",
            stream,
            format!(
                r#"{{"model":"anthropic/claude-sonnet-4-5","stream":{stream},"messages":[{{"role":"user","content":"hi"}}]}}"#
            ),
        ));
        calls.push((
            "/v1/messages",
            stream,
            format!(
                r#"{{"model":"openai:gpt-4o-mini","max_tokens":16,"stream":{stream},"messages":[{{"role":"user","content":"hi"}}]}}"#
            ),
        ));
    }
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_translated_providers_error_is_named_where_the_clients_sdk_reads_its_id() {
    // A user quotes a failed call's id to its provider: the SDK of the other API reads
    // it under its own header name.
    let mock = MockUpstream::start(refusing_for_an_hour).await;
    let gw = gateway_for(&mock, "");
    for (path, stream, body) in calls_of_the_other_api() {
        let (header, id) = match path {
            "/v1/messages" => ("request-id", "req_openai_1"),
            _ => ("x-request-id", "req_anthropic_1"),
        };
        let resp = post(&gw, path, body.into_bytes()).await;
        assert_eq!(resp.status(), 429, "{path} stream={stream}");
        assert_eq!(resp.headers()[header], id, "{path} stream={stream}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_translated_refusal_to_wait_an_hour_tells_the_client_not_to_retry() {
    // The Anthropic SDKs sleep for whatever `Retry-After` says; a provider of another
    // API cannot tell them not to in their terms, so the gateway does.
    let mock = MockUpstream::start(refusing_for_an_hour).await;
    let gw = gateway_for(&mock, "");
    for (path, stream, body) in calls_of_the_other_api() {
        let resp = post(&gw, path, body.into_bytes()).await;
        assert_eq!(resp.status(), 429, "{path} stream={stream}");
        assert_eq!(resp.headers()["retry-after"], "3600");
        assert_eq!(
            resp.headers()["x-should-retry"],
            "false",
            "{path} stream={stream}"
        );
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["message"], "daily limit", "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_error_event_mid_stream_ends_the_stream_without_done() {
    let mock = MockUpstream::start(|_| {
        let stream = fixture("anthropic/messages_stream.txt");
        let cut = stream.find("event: content_block_stop").unwrap();
        let text = format!(
            "{}event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}}}\n\n",
            &stream[..cut]
        );
        sse(text, 50, 0)
    })
    .await;
    let gw = gateway_for(&mock, "");
    for pad in SMALL_AND_LARGE {
        let body = padded(ANTHROPIC_STREAM_REQUEST, pad);
        let resp = post(&gw, "/v1/chat/completions", body).await;
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        assert!(text.contains("Hello World"), "pad {pad}: {text}");
        let last = text.trim_end().rsplit("\n\n").next().unwrap();
        let err: Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(err["error"]["type"], "provider_error");
        assert_eq!(err["error"]["message"], "Overloaded");
        assert!(!text.contains("[DONE]"));
    }
}

/// A provider whose recorded Anthropic stream ends just before `event`.
async fn anthropic_stream_cut_at(event: &'static str) -> MockUpstream {
    MockUpstream::start(move |_| {
        let stream = fixture("anthropic/messages_stream.txt");
        let cut = stream.find(event).unwrap();
        sse(stream[..cut].to_string(), 40, 0)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_stream_cut_short_ends_with_an_error_chunk() {
    let mock = anthropic_stream_cut_at("event: message_delta").await;
    let gw = gateway_for(&mock, "");
    let resp = post(
        &gw,
        "/v1/chat/completions",
        br#"{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}],"stream":true}"#
            .to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("Hello World"), "{text}");
    assert!(text.contains(r#""error""#), "{text}");
    assert!(!text.contains("[DONE]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_stream_that_loses_only_its_message_stop_ends_with_done() {
    let mock = anthropic_stream_cut_at("event: message_stop").await;
    let gw = gateway_for(&mock, "");
    let resp = post(
        &gw,
        "/v1/chat/completions",
        br#"{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#
            .to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("Hello World"), "{text}");
    assert!(text.contains(r#""finish_reason":"stop""#), "{text}");
    assert!(text.contains(r#""usage":"#), "{text}");
    assert!(!text.contains(r#""error""#), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
}

/// A provider that starts an SSE answer, then drops the connection mid-body.
async fn provider_that_hangs_up_mid_stream() -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        // Read the header and the (small) body before answering.
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") || !seen.ends_with(b"}") {
            let n = sock.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        let stream = fixture("anthropic/messages_stream.txt");
        let part = &stream[..stream.find("event: content_block_stop").unwrap()];
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        let chunk = format!("{:x}\r\n{part}\r\n", part.len());
        sock.write_all(head.as_bytes()).await.unwrap();
        sock.write_all(chunk.as_bytes()).await.unwrap();
        sock.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Dropping the socket cuts the chunked body short.
    });
    (base, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_hanging_up_mid_stream_ends_the_translated_stream_with_an_error() {
    for pad in SMALL_AND_LARGE {
        let (base, provider) = provider_that_hangs_up_mid_stream().await;
        let gw = anthropic_gateway(&base);
        let body = padded(ANTHROPIC_STREAM_REQUEST, pad);
        let resp = post(&gw, "/v1/chat/completions", body).await;
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        provider.await.unwrap();
        assert!(text.contains("Hello World"), "pad {pad}: {text}");
        let last = text.trim_end().rsplit("\n\n").next().unwrap();
        let err: Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(err["error"]["type"], "provider_error");
        assert!(!text.contains("[DONE]"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_anthropic_provider_gets_the_gateway_envelope_untranslated() {
    let port = common::closed_port();
    let base = format!("http://127.0.0.1:{port}/v1");
    let gw = anthropic_gateway(&base);
    let request =
        br#"{"model":"anthropic/claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}"#;
    for pad in SMALL_AND_LARGE {
        let resp = post(&gw, "/v1/chat/completions", padded(request, pad)).await;
        assert_eq!(resp.status(), 502, "pad {pad}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["type"], "provider_error");
        assert!(err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("anthropic"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_client_body_goes_upstream_with_the_exact_length_of_the_prepared_body() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway_for(&mock, "");
    let requests: [&[u8]; 2] = [
        br#"{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#,
        br#"{"model":"anthropic/claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}"#,
    ];
    for request in requests {
        for pad in SMALL_AND_LARGE {
            let body = padded(request, pad);
            // A body of unknown length: the client sends it chunked.
            let parts: Vec<Result<Bytes, std::io::Error>> = body
                .chunks(1000)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let resp = client()
                .post(gw.url("/v1/chat/completions"))
                .bearer_auth(MASTER)
                .header("content-type", "application/json")
                .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                    parts,
                )))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "pad {pad}");
            let completion: Value = resp.json().await.unwrap();
            assert_eq!(completion["object"], "chat.completion");
            let rec = mock.last();
            assert_eq!(declared_length(&rec), rec.body.len(), "pad {pad}");
            assert!(rec.header("transfer-encoding").is_none());
            let sent: Value = serde_json::from_slice(&rec.body).unwrap();
            assert_eq!(sent["messages"].as_array().unwrap().len(), 1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_errors_are_openai_envelopes_before_anything_goes_upstream() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway_for(&mock, "server:\n  body_size_limit: 1KiB\n");
    let cases: Vec<(Vec<u8>, u16, Option<&str>)> = vec![
        (b"{not json".to_vec(), 400, None),
        (br#"{"messages":[]}"#.to_vec(), 400, Some("model")),
        (
            br#"{"model":"anthropic/claude-x","n":2,"messages":[{"role":"user","content":"hi"}]}"#
                .to_vec(),
            400,
            Some("n"),
        ),
        (vec![b' '; 2048], 413, None),
    ];
    for (body, status, param) in cases {
        let resp = post(&gw, "/v1/chat/completions", body).await;
        assert_eq!(resp.status(), status);
        let err: Value = resp.json().await.unwrap();
        assert!(err["error"]["message"].is_string());
        if let Some(param) = param {
            assert_eq!(err["error"]["param"], param);
        }
    }
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_routes_need_the_gateway_key_and_the_right_method() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway_for(&mock, "");
    let c = client();
    let resp = c
        .post(gw.url("/v1/chat/completions"))
        .body(r#"{"model":"openai/gpt-4o"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = c
        .get(gw.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_v1_call_is_logged_once_on_a_reused_client() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway_for(&mock, "");
    let c = client();
    for model in [
        "anthropic/claude-sonnet-4-5",
        "openai/gpt-4o",
        "claude-sonnet-4-5",
    ] {
        let resp = c
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(MASTER)
            .body(
                json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
                    .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{model}");
        assert!(resp.headers().contains_key("x-aurora-request-id"));
        resp.bytes().await.unwrap();
    }
    // Access lines are written after the response, a little later; a later request's
    // line comes after every earlier one, and none is written twice.
    c.get(gw.url("/health")).send().await.unwrap();
    let log = gw.wait_for_log("path=/health", 2).await;
    assert_eq!(log.matches("route=chat_completions").count(), 3, "{log}");
    // The provider's status, seen inside the subrequest, reaches the access line.
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("route=chat_completions") && l.contains("upstream_status=200"))
            .count(),
        3,
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_format_stream_passes_back_byte_identical() {
    let stream = fixture("openai/chat_completion_stream.txt");
    let upstream = stream.clone();
    let mock = MockUpstream::start(move |_| sse(upstream.clone(), 33, 0)).await;
    let gw = gateway_for(&mock, "");
    let resp = post(
        &gw,
        "/v1/chat/completions",
        br#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#
            .to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.text().await.unwrap(), stream);
    assert_eq!(mock.last().uri, "/v1/chat/completions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_provider_answer_is_decoded_before_translation() {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(fixture("anthropic/messages.json").as_bytes())
        .unwrap();
    let compressed = Bytes::from(gz.finish().unwrap());
    // This provider compresses whatever the request asked for.
    let mock = MockUpstream::start(move |_| Reply::Full {
        status: 200,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("content-encoding".into(), "gzip".into()),
        ],
        body: compressed.clone(),
    })
    .await;
    let gw = gateway_for(&mock, "");
    let resp = post(
        &gw,
        "/v1/chat/completions",
        br#"{"model":"anthropic/claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}"#
            .to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("content-encoding").is_none());
    let completion: Value = resp.json().await.unwrap();
    assert_eq!(
        completion["choices"][0]["message"]["content"],
        "Hello World"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_before_the_body_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway_for(&mock, "");
    let body = br#"{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {MASTER}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nexpect: 100-continue\r\n\r\n",
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    // Like curl, send the body only once the gateway says to.
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("no interim response: the client would wait for nothing")
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    s.write_all(body).await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = s.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&chunk[..n]);
            if rest.ends_with(b"}") || rest.windows(4).any(|w| w == b"0\r\n\r") {
                break;
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&rest);
    assert!(text.contains("200 OK"), "{text}");
    let rec = mock.last();
    assert_eq!(rec.body.len(), body.len() - "openai/".len());
    assert!(rec.header("expect").is_none());
}

/// Segments carrying data the socket has received so far (Linux `TCP_INFO`).
fn data_segments_in(sock: &tokio::net::TcpStream) -> u32 {
    use std::os::fd::AsRawFd;
    // SAFETY: `tcp_info` is plain data; getsockopt writes at most `len` bytes into it.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info.tcpi_data_segs_in
}

/// Reads one HTTP/1.1 response from `sock`, framed by `Content-Length` or chunked.
async fn read_one_response(sock: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            let done = match length {
                Some(len) => got.len() >= end + 4 + len,
                None => got.ends_with(b"\r\n0\r\n\r\n"),
            };
            if done {
                return text;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf))
            .await
            .expect("answer stalled")
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
}

/// Sends five translated chat calls on one connection to a gateway in front of
/// `provider`; the data segments each answer came in. Fails if a socket is left
/// corked (the kernel would hold each answer for 200 ms).
async fn data_segments_per_translated_answer(
    provider: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
) -> Vec<u32> {
    use tokio::io::AsyncWriteExt;
    let mock = MockUpstream::start(provider).await;
    let gw = gateway_for(&mock, "");
    let body =
        br#"{"model":"anthropic/claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}"#;
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {MASTER}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
        body.len(),
        String::from_utf8_lossy(body)
    );
    let mut sock = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    sock.set_nodelay(true).unwrap();
    let started = Instant::now();
    let mut per_answer = Vec::new();
    for _ in 0..5 {
        let before = data_segments_in(&sock);
        sock.write_all(request.as_bytes()).await.unwrap();
        let answer = read_one_response(&mut sock).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains(r#""object":"chat.completion""#), "{answer}");
        per_answer.push(data_segments_in(&sock) - before);
    }
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    per_answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_translated_answers_leave_in_one_segment_and_release_the_connection() {
    let per_answer = data_segments_per_translated_answer(provider_like).await;
    assert!(per_answer.iter().all(|&n| n == 1), "{per_answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_translated_answer_larger_than_the_write_buffer_leaves_in_one_segment() {
    // Header and body together are well past what the client connection's write
    // buffer holds: only the cork keeps them in one send.
    let text = "word ".repeat(1200);
    let answer = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 5, "output_tokens": 1200}
    })
    .to_string();
    let per_answer =
        data_segments_per_translated_answer(move |_| Reply::json(200, answer.clone())).await;
    assert!(per_answer.iter().all(|&n| n == 1), "{per_answer:?}");
}

/// The data of every event of an SSE `text`.
fn event_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|e| e.trim().strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_stream_is_asked_for_its_usage_which_only_a_client_that_asked_sees() {
    let mock =
        MockUpstream::start(
            |rec| match common::mock::provider_rules::openai_chat_refusal(rec) {
                Some(refusal) => refusal,
                None => common::mock::provider_rules::openai_chat_stream(rec),
            },
        )
        .await;
    let gw = gateway_for(&mock, "");
    let request = |options: &str| {
        format!(
            r#"{{"model":"openai/gpt-4o-mini","stream":true{options},"messages":[{{"role":"user","content":"hi"}}]}}"#
        )
    };

    // A client that did not ask: the provider is asked, the client never sees the
    // usage-only chunk (code reading `choices[0]` of every chunk keeps working).
    let resp = post(&gw, "/v1/chat/completions", request("").into_bytes()).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
    assert_eq!(sent["model"], "gpt-4o-mini");
    let data = event_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let recorded = event_data(&fixture("openai/chat_completion_stream.txt"));
    assert_eq!(data.len(), recorded.len(), "{text}");
    for chunk in &data[..data.len() - 1] {
        let chunk: Value = serde_json::from_str(chunk).unwrap();
        assert!(!chunk["choices"].as_array().unwrap().is_empty(), "{chunk}");
    }

    // A client that asked: its body goes as it sent it (but for the model), and the
    // usage chunk reaches it.
    let asked = request(r#","stream_options":{"include_usage":true}"#);
    let resp = post(&gw, "/v1/chat/completions", asked.clone().into_bytes()).await;
    let text = resp.text().await.unwrap();
    assert_eq!(
        mock.last().body,
        asked
            .replacen("openai/gpt-4o-mini", "gpt-4o-mini", 1)
            .as_bytes()
    );
    let data = event_data(&text);
    assert_eq!(data.len(), recorded.len() + 1);
    let usage: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["total_tokens"], 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_openai_clients_send_that_claude_refuses_is_made_acceptable() {
    // The mock refuses what Anthropic refuses.
    let mock = MockUpstream::start(|rec| {
        common::mock::provider_rules::anthropic_messages_refusal(rec)
            .unwrap_or_else(|| provider_like(rec))
    })
    .await;
    let gw = anthropic_gateway(&mock.url("/v1"));
    let call = serde_json::json!({"id": "c1", "type": "function",
        "function": {"name": "get_time", "arguments": "{}"}});
    let requests = [
        // A reasoning tool loop's second turn: no signed thinking to send back.
        serde_json::json!({"model": "anthropic/claude-sonnet-4-5", "reasoning_effort": "medium",
            "tools": [{"type": "function", "function": {"name": "get_time"}}],
            "messages": [{"role": "user", "content": "time?"},
                {"role": "assistant", "content": null, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "content": "12:00"}]}),
        // Both sampling knobs, which Claude 4.5 refuses together.
        serde_json::json!({"model": "anthropic/claude-sonnet-4-5", "temperature": 0.7,
            "top_p": 0.9, "messages": [{"role": "user", "content": "hi"}]}),
        // Whitespace stops and parts, and a prefill ending in a newline.
        serde_json::json!({"model": "anthropic/claude-sonnet-4-5", "stop": ["\n"],
            "messages": [{"role": "user", "content": [{"type": "text", "text": " "},
                {"type": "text", "text": "Write a haiku"}]},
                {"role": "assistant", "content": "Haiku:\n"}]}),
    ];
    for body in requests {
        let resp = post(&gw, "/v1/chat/completions", body.to_string().into_bytes()).await;
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert_eq!(status, 200, "{body}\n{text}");
    }
    // A prompt too long reaches the client with OpenAI's code for it.
    let too_long = MockUpstream::start(|_| {
        Reply::json(
            400,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 215000 tokens > 200000 maximum"}}"#,
        )
    })
    .await;
    let gw = anthropic_gateway(&too_long.url("/v1"));
    let resp = post(
        &gw,
        "/v1/chat/completions",
        br#"{"model":"anthropic/claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}"#
            .to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "context_length_exceeded");
}

/// Anthropic as it answers structured outputs (the JSON as the message's text), after
/// refusing what it refuses (an `output_config.format` of any other shape among it).
fn anthropic_structured(rec: &Recorded) -> Reply {
    if let Some(refusal) = common::mock::provider_rules::anthropic_messages_refusal(rec) {
        return refusal;
    }
    let body: Value = serde_json::from_slice(&rec.body).unwrap();
    let mut message: Value = serde_json::from_str(&fixture("anthropic/messages.json")).unwrap();
    if body["output_config"]["format"].is_object() {
        message["content"] = json!([{"type": "text", "text": r#"{"city":"Paris"}"#}]);
    }
    Reply::json(200, message.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_schema_response_format_reaches_claude_as_output_config_format() {
    let mock = MockUpstream::start(anthropic_structured).await;
    let gw = anthropic_gateway(&mock.url("/v1"));
    // What the openai SDK's `beta.chat.completions.parse(response_format=Place)` sends.
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}},
        "required": ["city"], "additionalProperties": false, "title": "Place"});
    let body = json!({"model": "anthropic/claude-sonnet-4-5",
        "messages": [{"role": "user", "content": "Where is the Louvre?"}],
        "response_format": {"type": "json_schema",
            "json_schema": {"name": "Place", "strict": true, "schema": schema}}});
    let resp = post(&gw, "/v1/chat/completions", body.to_string().into_bytes()).await;
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    // The SDK's `.parse()` reads the JSON from the message's content.
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        r#"{"city":"Paris"}"#
    );
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    assert_eq!(
        sent["output_config"],
        json!({"format": {"type": "json_schema", "schema": schema}})
    );
    assert!(sent.get("response_format").is_none(), "{sent}");

    // JSON object mode, which Anthropic has not: a 400 naming the member, nothing sent.
    let sent_before = mock.requests().len();
    let body = json!({"model": "anthropic/claude-sonnet-4-5", "response_format": {"type": "json_object"},
        "messages": [{"role": "user", "content": "JSON please"}]});
    let resp = post(&gw, "/v1/chat/completions", body.to_string().into_bytes()).await;
    assert_eq!(resp.status(), 400);
    let error: Value = resp.json().await.unwrap();
    assert_eq!(error["error"]["param"], "response_format", "{error}");
    assert_eq!(mock.requests().len(), sent_before);
}

/// A gateway whose one provider is Mistral at `mock`'s `/v1`.
fn mistral_gateway(mock: &MockUpstream) -> Gateway {
    let yaml = format!(
        "providers:\n  mistral: {{type: mistral, api_key: sk-mistral-test-0123456789, base_url: '{}'}}\n",
        mock.url("/v1")
    );
    Gateway::start(&yaml, &[("AURORA_MASTER_KEY", MASTER)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_clients_chat_request_reaches_mistral_without_the_members_it_refuses() {
    // Mistral refuses any member it does not define (422) and reports a stream's usage
    // in its last chunk unasked.
    let mock = MockUpstream::start(|rec| {
        if let Some(refusal) = common::mock::provider_rules::mistral_chat_refusal(rec) {
            return refusal;
        }
        let streams = serde_json::from_slice::<Value>(&rec.body).unwrap()["stream"] == true;
        if !streams {
            return Reply::json(200, fixture("openai/chat_completion.json"));
        }
        Reply::sse([
            r#"data: {"id":"m1","object":"chat.completion.chunk","model":"mistral-small-latest","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}"#,
            r#"data: {"id":"m1","object":"chat.completion.chunk","model":"mistral-small-latest","choices":[{"index":0,"delta":{"content":""},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"total_tokens":11,"completion_tokens":2}}"#,
            "data: [DONE]",
        ]
        .map(|e| Bytes::from(format!("{e}\n\n"))))
    })
    .await;
    let gw = mistral_gateway(&mock);
    // What the openai SDKs and agent frameworks send along.
    let body = json!({"model": "mistral/mistral-small-latest", "messages": [{"role": "user", "content": "hi"}],
        "max_completion_tokens": 64, "store": false, "user": "u-1", "metadata": {"run": "r1"},
        "seed": 7, "temperature": 0.2});
    let resp = post(&gw, "/v1/chat/completions", body.to_string().into_bytes()).await;
    let status = resp.status();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap());
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    assert_eq!(
        sent,
        json!({"model": "mistral-small-latest", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 64, "random_seed": 7, "temperature": 0.2})
    );

    // A stream whose client asks for the usage: Mistral reports it unasked, and the
    // gateway counts it.
    let body = json!({"model": "mistral/mistral-small-latest", "stream": true,
        "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "hi"}]});
    let resp = post(&gw, "/v1/chat/completions", body.to_string().into_bytes()).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    assert!(sent.get("stream_options").is_none(), "{sent}");
    assert!(text.contains(r#""completion_tokens":2"#), "{text}");
    gw.wait_for_log("tokens_input=9 tokens_output=2", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_developer_message_reaches_deepseek_as_a_system_one() {
    // DeepSeek refuses the role ("unknown variant `developer`", 422).
    let mock = MockUpstream::start(|rec| {
        common::mock::provider_rules::deepseek_chat_refusal(rec)
            .unwrap_or_else(|| Reply::json(200, fixture("openai/chat_completion.json")))
    })
    .await;
    let yaml = format!(
        "providers:\n  deepseek: {{api_key: sk-deepseek-test-0123456789, base_url: '{}'}}\n",
        mock.url("/v1")
    );
    let gw = Gateway::start(&yaml, &[("AURORA_MASTER_KEY", MASTER)]);
    let body = json!({"model": "deepseek/deepseek-chat", "messages": [
        {"role": "developer", "content": "Be terse."},
        {"role": "user", "content": "hi"}]});
    let resp = post(&gw, "/v1/chat/completions", body.to_string().into_bytes()).await;
    let status = resp.status();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap());
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    assert_eq!(
        sent["messages"],
        json!([{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}])
    );
}

/// Answers like OpenAI's legacy Completions and Moderations would, else like
/// [`provider_like`].
fn openai_legacy_like(rec: &Recorded) -> Reply {
    use common::mock::provider_rules::{openai_completions, openai_moderations};
    match rec.uri.as_str() {
        "/v1/completions" => openai_completions(rec),
        "/v1/moderations" => openai_moderations(rec),
        _ => provider_like(rec),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_completion_reaches_the_models_provider_whole_or_streamed() {
    let mock = MockUpstream::start(openai_legacy_like).await;
    let gw = gateway_for(&mock, "");
    let whole = br#"{"model":"openai/gpt-3.5-turbo-instruct","prompt":"def fib(n):","suffix":"\n","max_tokens":16}"#;
    let resp = post(&gw, "/v1/completions", whole.to_vec()).await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["object"], "text_completion");
    assert_eq!(answer["usage"]["total_tokens"], 22);
    let rec = mock.last();
    assert_eq!(rec.uri, "/v1/completions");
    assert_eq!(
        rec.body,
        String::from_utf8_lossy(whole).replacen(
            "openai/gpt-3.5-turbo-instruct",
            "gpt-3.5-turbo-instruct",
            1
        )
    );

    // A stream is asked for its usage, which a client that did not ask never sees.
    let streamed = br#"{"model":"gpt-3.5-turbo-instruct","prompt":"def fib(n):","stream":true}"#;
    let resp = post(&gw, "/v1/completions", streamed.to_vec()).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
    let data = event_data(&text);
    assert_eq!(data.len(), 3, "{text}");
    assert_eq!(data[2], "[DONE]");
    for chunk in &data[..2] {
        let chunk: Value = serde_json::from_str(chunk).unwrap();
        assert_eq!(chunk["choices"].as_array().unwrap().len(), 1, "{chunk}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_completion_for_an_anthropic_model_is_refused_in_openais_envelope() {
    let mock = MockUpstream::start(openai_legacy_like).await;
    let gw = gateway_for(&mock, "");
    let resp = post(
        &gw,
        "/v1/completions",
        br#"{"model":"claude-sonnet-4-5","prompt":"hi"}"#.to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert_eq!(err["error"]["param"], "model");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("OpenAI-format"));
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderation_goes_to_openai_by_its_model_or_by_default() {
    let mock = MockUpstream::start(openai_legacy_like).await;
    let gw = gateway_for(&mock, "");
    // No model: OpenAI's default, named for the provider.
    let resp = post(&gw, "/v1/moderations", br#"{"input":"hello"}"#.to_vec()).await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["results"][0]["flagged"], false);
    let rec = mock.last();
    assert_eq!(rec.uri, "/v1/moderations");
    assert_eq!(
        rec.body,
        r#"{"model":"omni-moderation-latest","input":"hello"}"#
    );
    // Its own model names route to OpenAI without a prefix.
    let body = br#"{"model":"text-moderation-stable","input":"hello"}"#;
    let resp = post(&gw, "/v1/moderations", body.to_vec()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(mock.last().body, &body[..]);
    // An Anthropic model moderates nothing.
    let resp = post(
        &gw,
        "/v1/moderations",
        br#"{"model":"claude-sonnet-4-5","input":"hello"}"#.to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["param"], "model");
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_redirect_on_a_model_route_is_not_passed_to_the_client() {
    // On `/v1` the provider's paths are not the client's: a `Location` at the provider
    // (maybe an internal address) would take the client, and the gateway key its SDK
    // sends along (the Anthropic SDK keeps `x-api-key` across hosts), there.
    let mock = MockUpstream::start(|rec: &Recorded| Reply::Full {
        status: 307,
        headers: vec![(
            "location".into(),
            format!(
                "http://{}/internal{}",
                rec.header("host").unwrap_or_default(),
                rec.uri
            ),
        )],
        body: Vec::new().into(),
    })
    .await;
    let gw = gateway_for(&mock, "");
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let chat = |model: &str| {
        format!(
            r#"{{"model":"{model}","max_tokens":8,"messages":[{{"role":"user","content":"hi"}}]}}"#
        )
    };
    for (path, body) in [
        ("/v1/chat/completions", chat("gpt-4o-mini")),
        ("/v1/chat/completions", chat("anthropic/claude-sonnet-4-5")),
        ("/v1/messages", chat("anthropic:claude-sonnet-4-5")),
        ("/v1/messages", chat("openai:gpt-4o-mini")),
    ] {
        let resp = c
            .post(gw.url(path))
            .bearer_auth(MASTER)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 307, "{path} {body}");
        assert!(resp.headers().get("location").is_none(), "{path} {body}");
    }
    assert!(mock.requests().len() >= 4);
}
