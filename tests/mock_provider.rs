//! The mock provider the tests and the load bench share (`tests/common/mock/`): its
//! canned API (paced streams, sizes, errors on demand, held streams, echo) served by
//! the recording server the tests read back, directly and behind the gateway.

mod common;

use std::time::Duration;

use common::mock::canned::{
    failing_model, requested_status, EVENTS_HEADER, MODEL_LIST, PACE_HEADER, SMALL_BYTES,
};
use common::{client, CannedProvider, Gateway, MockUpstream};

const MASTER: &str = "gw-master-test-key-0123456789abcdef";
const OAI_KEY: &str = "sk-oai-provider-test-0123456789abcdef";
const ANT_KEY: &str = "sk-ant-provider-test-0123456789abcdef";

async fn canned(events: usize) -> MockUpstream {
    MockUpstream::start_handler(CannedProvider::new(events, Duration::ZERO)).await
}

/// The `data:` events of an SSE body.
fn events(body: &str) -> usize {
    body.matches("data: ").count()
}

#[test]
fn a_failing_model_in_the_body_names_the_status() {
    let body = format!(r#"{{"model":"{}","messages":[]}}"#, failing_model(429));
    assert_eq!(requested_status(body.as_bytes()), Some(429));
    assert_eq!(requested_status(br#"{"model":"gpt-4o-mini"}"#), None);
    assert_eq!(requested_status(b"mock-status-9x"), None);
    assert_eq!(requested_status(b"mock-status-999"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_stream_sends_what_its_headers_ask_one_event_per_pace_and_is_recorded() {
    let mock = canned(100).await;
    let pace = Duration::from_millis(15);
    let body = client()
        .post(mock.url("/v1/chat/completions"))
        .header(PACE_HEADER, pace.as_millis().to_string())
        .header(EVENTS_HEADER, "3")
        .body(r#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The role chunk, 3 deltas, the finish chunk, the usage chunk and `[DONE]`.
    assert_eq!(events(&body), 7, "{body}");
    assert_eq!(body.matches("the quick brown").count(), 3);
    assert!(body.ends_with("data: [DONE]\n\n"));
    let sent = mock.chunk_sent_at.lock().unwrap().clone();
    assert_eq!(sent.len(), 7);
    for pair in sent.windows(2) {
        assert!(pair[1] - pair[0] >= pace, "{:?}", pair[1] - pair[0]);
    }
    assert_eq!(mock.last().header(EVENTS_HEADER), Some("3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaced_stream_carries_the_configured_events_in_each_api_shape() {
    let mock = canned(4).await;
    let c = client();
    let chat = c
        .post(mock.url("/v1/chat/completions"))
        .body(r#"{"model":"gpt-4o-mini","stream": true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(chat.headers()["content-type"], "text/event-stream");
    assert_eq!(events(&chat.text().await.unwrap()), 4 + 4);
    let messages = c
        .post(mock.url("/v1/messages"))
        .body(r#"{"model":"claude-sonnet-4-5","stream":true}"#)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(messages.matches("content_block_delta").count(), 4 * 2);
    assert!(messages.ends_with("data: {\"type\":\"message_stop\"}\n\n"));
    let whole = c
        .post(mock.url("/v1/messages"))
        .body(r#"{"model":"claude-sonnet-4-5"}"#)
        .send()
        .await
        .unwrap();
    let whole: serde_json::Value = whole.json().await.unwrap();
    assert_eq!(whole["type"], "message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sizes_uploads_and_echoes_are_what_the_bench_relies_on() {
    let mock = canned(1).await;
    let c = client();
    let small = c.get(mock.url("/v1/small")).send().await.unwrap();
    let small = small.text().await.unwrap();
    assert_eq!(small.len(), SMALL_BYTES);
    assert!(small.ends_with(r#""bench":"small"}"#));

    let upload = vec![b'u'; 1 << 20];
    let consumed = c
        .post(mock.url("/v1/consume"))
        .body(upload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(consumed.text().await.unwrap(), r#"{"received":1048576}"#);
    // Counted, never held.
    let rec = mock.last();
    assert_eq!((rec.body_len, rec.body.len()), (1 << 20, 0));

    let echoed = c
        .post(mock.url("/v1/echo"))
        .body(upload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["content-type"], "application/octet-stream");
    assert_eq!(echoed.bytes().await.unwrap(), upload);

    let models = c.get(mock.url("/v1/models")).send().await.unwrap();
    assert_eq!(models.text().await.unwrap(), MODEL_LIST);
    let missing = c.get(mock.url("/v1/nothing")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_come_on_demand_in_the_shape_of_the_api_asked() {
    let mock = canned(1).await;
    let c = client();
    let limited = c.get(mock.url("/v1/status/429")).send().await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "1");
    let limited: serde_json::Value = limited.json().await.unwrap();
    assert_eq!(limited["error"]["type"], "rate_limit_exceeded");

    let body = format!(r#"{{"model":"{}"}}"#, failing_model(529));
    let overloaded = c
        .post(mock.url("/v1/messages"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(overloaded.status(), 529);
    let overloaded: serde_json::Value = overloaded.json().await.unwrap();
    assert_eq!(overloaded["error"]["type"], "overloaded_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stream_sends_one_event_and_stays_open() {
    let mock = canned(1).await;
    let mut idle = client().get(mock.url("/v1/idle")).send().await.unwrap();
    let first = idle.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"event: ping\n"));
    // Nothing more, and no end: the stream is held until the client leaves.
    let next = tokio::time::timeout(Duration::from_millis(100), idle.chunk()).await;
    assert!(next.is_err(), "{next:?}");
}

/// What the load bench measures, end to end: the gateway translating a paced Anthropic
/// stream for a Chat Completions client, the pacing headers passed on to the mock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_passes_the_pacing_on_and_translates_the_paced_stream() {
    let mock = canned(100).await;
    let base = mock.url("/v1");
    let gw = Gateway::start(
        "",
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("ANTHROPIC_API_KEY", ANT_KEY),
            ("ANTHROPIC_BASE_URL", base.as_str()),
            ("OPENAI_API_KEY", OAI_KEY),
            ("OPENAI_BASE_URL", base.as_str()),
        ],
    );
    let body = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .header(PACE_HEADER, "5")
        .header(EVENTS_HEADER, "2")
        .body(r#"{"model":"anthropic/claude-sonnet-4-5","stream":true,"messages":[{"role":"user","content":"Hi"}]}"#)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body.matches("the quick brown").count(), 2, "{body}");
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    let rec = mock.last();
    assert_eq!(rec.path(), "/v1/messages");
    assert_eq!(rec.header(PACE_HEADER), Some("5"));
    assert_eq!(rec.header("x-api-key"), Some(ANT_KEY));
}
