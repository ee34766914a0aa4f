//! Provider timeouts by stage: `first_byte` (request sent → answer header), `idle`
//! (silence inside an answer) and `total` (a whole answer), per provider and per
//! model, on the proxy path and on the gateway's own whole-answer path.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{client, closed_port, fixture, Gateway, MockUpstream, Recorded, Reply};
use serde_json::Value;

const MASTER: &str = "gw-master-timeouts-test-0123456789ab";
const OAI_KEY: &str = "sk-oai-timeouts-test";
const ANT_KEY: &str = "sk-ant-timeouts-test";

fn chat(model: &str, stream: bool) -> String {
    format!(
        r#"{{"model":"{model}","stream":{stream},"messages":[{{"role":"user","content":"hi"}}]}}"#
    )
}

fn gateway(yaml: &str, openai: &str, anthropic: &str) -> Gateway {
    Gateway::start(
        yaml,
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("OPENAI_API_KEY", OAI_KEY),
            ("OPENAI_BASE_URL", openai),
            ("ANTHROPIC_API_KEY", ANT_KEY),
            ("ANTHROPIC_BASE_URL", anthropic),
        ],
    )
}

async fn post(gw: &Gateway, body: String) -> reqwest::Response {
    client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

fn unused_base() -> String {
    format!("http://127.0.0.1:{}/v1", closed_port())
}

/// Answers like OpenAI after `delay`; only the first request is slow.
fn slow_first(delay: Duration) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    let seen = std::sync::atomic::AtomicUsize::new(0);
    move |_| {
        let answer = Reply::json(200, fixture("openai/chat_completion.json"));
        if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Reply::Delayed(delay, Box::new(answer))
        } else {
            answer
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_silent_past_first_byte_is_cut_and_the_retry_answers() {
    let openai = MockUpstream::start(slow_first(Duration::from_secs(20))).await;
    let yaml = "retry:\n  attempts: 1\n  backoff: 1ms\nproviders:\n  openai:\n    timeouts: {first_byte: 300ms}\n";
    let gw = gateway(yaml, &openai.url("/v1"), &unused_base());

    let resp = post(&gw, chat("gpt-4o-mini", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-aurora-attempts"], "2");
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["object"], "chat.completion");
    // The silent attempt was given up, and the request sent again.
    assert_eq!(openai.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_models_own_first_byte_wins_over_its_providers() {
    let openai = MockUpstream::start(|_: &Recorded| {
        Reply::Delayed(
            Duration::from_millis(1500),
            Box::new(Reply::json(200, fixture("openai/chat_completion.json"))),
        )
    })
    .await;
    let yaml = "models:\n  timeouts:\n    gpt-4o-mini: {first_byte: 300ms}\n";
    let gw = gateway(yaml, &openai.url("/v1"), &unused_base());

    let resp = post(&gw, chat("gpt-4o-mini", false)).await;
    assert_eq!(resp.status(), 504);
    let err: Value = resp.json().await.unwrap();
    let message = err["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("timeouts.first_byte"), "{err}");
    assert_eq!(openai.requests().len(), 1, "no retry configured");

    // Another model of the same provider keeps the provider's own (long) wait.
    let resp = post(&gw, chat("gpt-4o", false)).await;
    assert_eq!(resp.status(), 200);
}

/// An Anthropic stream that sends its first events and then nothing, holding the
/// connection open (the senders are kept until the test ends).
fn stalling_anthropic_stream(
    kept: Arc<Mutex<Vec<tokio::sync::mpsc::UnboundedSender<Bytes>>>>,
) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    let start = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}}\n\n",
    );
    stalling_after(kept, start.to_string())
}

/// An event stream that sends `first` and then nothing, holding the connection open
/// (its senders kept in `kept` until the test ends).
fn stalling_after(
    kept: Arc<Mutex<Vec<tokio::sync::mpsc::UnboundedSender<Bytes>>>>,
    first: String,
) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    move |_| {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let _ = tx.send(Bytes::from(first.clone()));
        if let Ok(mut kept) = kept.lock() {
            kept.push(tx);
        }
        Reply::Channel {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            chunks: rx,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_silent_past_idle_ends_with_an_error_event() {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let anthropic = MockUpstream::start(stalling_anthropic_stream(Arc::clone(&kept))).await;
    // A long first-byte wait does not stretch the silence allowed inside a stream.
    let yaml = "providers:\n  anthropic:\n    timeouts: {first_byte: 60s, idle: 400ms}\n";
    let gw = gateway(yaml, &unused_base(), &anthropic.url("/v1"));

    let resp = post(&gw, chat("anthropic/claude-sonnet-4-5", true)).await;
    assert_eq!(resp.status(), 200);
    let text = tokio::time::timeout(Duration::from_secs(20), resp.text())
        .await
        .expect("the stream ends at the idle timeout")
        .unwrap_or_default();
    assert!(text.contains("Hel"), "{text}");
    assert!(
        text.contains(r#""error""#),
        "an error event ends it: {text}"
    );
    assert!(!text.contains("[DONE]"), "{text}");
    assert_eq!(
        anthropic.requests().len(),
        1,
        "no retry once bytes went out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_same_format_stream_silent_past_idle_ends_with_the_routes_error_event() {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let hold = Arc::clone(&kept);
    let openai = MockUpstream::start(move |_: &Recorded| {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let first = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n";
        let _ = tx.send(Bytes::from_static(first.as_bytes()));
        if let Ok(mut kept) = hold.lock() {
            kept.push(tx);
        }
        Reply::Channel {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            chunks: rx,
        }
    })
    .await;
    let timeouts = "providers:\n  openai:\n    timeouts: {idle: 400ms}\n";
    // Proxied by Pingora, and streamed from the gateway's own exchange (a model whose
    // prompt-too-long errors fall back is read that way).
    let overflow = "models:\n  fallbacks:\n    gpt-4o-mini: [anthropic/claude-sonnet-4-5]\n  fallbacks_on_context_overflow: [gpt-4o-mini]\n";
    for yaml in [timeouts.to_string(), format!("{timeouts}{overflow}")] {
        let gw = gateway(&yaml, &openai.url("/v1"), &unused_base());
        let resp = post(&gw, chat("gpt-4o-mini", true)).await;
        assert_eq!(resp.status(), 200);
        let text = tokio::time::timeout(Duration::from_secs(20), resp.text())
            .await
            .expect("the stream ends at the idle timeout")
            .expect("the stream ends cleanly, with an error event");
        assert!(text.contains("Hel"), "{text}");
        assert!(
            text.contains("timeouts.idle"),
            "the error names the timeout: {text}"
        );
        let last = text.trim_end().rsplit("\n\n").next().unwrap_or_default();
        let error: Value = serde_json::from_str(last.trim_start_matches("data: ")).unwrap();
        assert_eq!(error["error"]["type"], "provider_error", "{text}");
        assert!(!text.contains("[DONE]"), "{text}");
    }
    assert_eq!(openai.requests().len(), 2);
    drop(kept);
}

/// OpenAI's Responses stream that names its response, starts the text and then sends
/// nothing, holding the connection open (the senders are kept until the test ends).
fn stalling_responses_stream(
    kept: Arc<Mutex<Vec<tokio::sync::mpsc::UnboundedSender<Bytes>>>>,
) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    stalling_responses_stream_after(kept, "")
}

/// [`stalling_responses_stream`], with `more` sent before it stalls.
fn stalling_responses_stream_after(
    kept: Arc<Mutex<Vec<tokio::sync::mpsc::UnboundedSender<Bytes>>>>,
    more: &'static str,
) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    let start = concat!(
        "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_stalled_1\",\"object\":\"response\",\"created_at\":1,\"status\":\"in_progress\",\"model\":\"gpt-4o-mini\",\"output\":[],\"usage\":null}}\n\n",
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hel\"}\n\n",
    );
    stalling_after(kept, format!("{start}{more}"))
}

/// The text of a `/v1/responses` stream of `gpt-4o-mini` its provider stalled, which
/// the gateway ends at the idle timeout.
async fn stalled_responses_stream(gw: &Gateway) -> String {
    let resp = client()
        .post(gw.url("/v1/responses"))
        .bearer_auth(MASTER)
        .json(&serde_json::json!({"model": "gpt-4o-mini", "input": "hi", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    tokio::time::timeout(Duration::from_secs(20), resp.text())
        .await
        .expect("the stream ends at the idle timeout")
        .expect("the stream ends cleanly")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_responses_stream_silent_past_idle_ends_with_the_error_then_response_failed() {
    // Codex reads a failure from `response.failed` alone: after an error event only, it
    // reports the stream cut and sends the request again, five times.
    let kept = Arc::new(Mutex::new(Vec::new()));
    let openai = MockUpstream::start(stalling_responses_stream(Arc::clone(&kept))).await;
    let timeouts = "providers:\n  openai:\n    timeouts: {idle: 400ms}\n";
    // Proxied by Pingora, and streamed from the gateway's own exchange.
    let overflow = "models:\n  fallbacks:\n    gpt-4o-mini: [anthropic/claude-sonnet-4-5]\n  fallbacks_on_context_overflow: [gpt-4o-mini]\n";
    for yaml in [timeouts.to_string(), format!("{timeouts}{overflow}")] {
        let gw = gateway(&yaml, &openai.url("/v1"), &unused_base());
        let text = stalled_responses_stream(&gw).await;
        assert!(text.contains("Hel"), "{text}");
        let events: Vec<&str> = text.trim_end().rsplit("\n\n").take(2).collect();
        let (failed, error) = (events[0], events[1]);
        // OpenAI's envelope, which the OpenAI SDKs raise, as before.
        let error: Value = serde_json::from_str(error.trim_start_matches("data: ")).unwrap();
        assert_eq!(error["error"]["type"], "provider_error", "{text}");
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("timeouts.idle"), "{text}");
        // Then the response failed, named as its stream named it, with that message.
        let data = failed
            .strip_prefix("event: response.failed\ndata: ")
            .unwrap_or_else(|| panic!("response.failed ends the stream: {text}"));
        let failed: Value = serde_json::from_str(data).unwrap();
        assert_eq!(failed["type"], "response.failed");
        let response = &failed["response"];
        assert_eq!(response["id"], "resp_stalled_1");
        assert_eq!(response["status"], "failed");
        assert_eq!(response["error"]["code"], "server_error");
        assert_eq!(response["error"]["message"], message);
    }
    assert_eq!(openai.requests().len(), 2, "asked once each");
    drop(kept);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_responses_stream_that_completed_before_it_stalled_is_not_failed_after() {
    // One terminal event per response: the provider's own `response.completed` came.
    let completed = "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":2,\"response\":{\"id\":\"resp_stalled_1\",\"object\":\"response\",\"created_at\":1,\"status\":\"completed\",\"model\":\"gpt-4o-mini\",\"output\":[],\"usage\":{\"input_tokens\":5,\"output_tokens\":1,\"total_tokens\":6}}}\n\n";
    let kept = Arc::new(Mutex::new(Vec::new()));
    let openai = MockUpstream::start(stalling_responses_stream_after(
        Arc::clone(&kept),
        completed,
    ))
    .await;
    let yaml = "providers:\n  openai:\n    timeouts: {idle: 400ms}\n";
    let gw = gateway(yaml, &openai.url("/v1"), &unused_base());
    let text = stalled_responses_stream(&gw).await;
    assert!(text.contains("event: response.completed"), "{text}");
    assert!(!text.contains("response.failed"), "{text}");
    drop(kept);
}

/// A JSON answer whose header comes at once and whose body trickles in, a piece every
/// 150 ms: each silence is short, the whole is long.
fn trickling(body: String) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    move |_| {
        let bytes = body.as_bytes();
        let step = bytes.len().div_ceil(8);
        let chunks = bytes
            .chunks(step)
            .map(|c| (Duration::from_millis(150), Bytes::copy_from_slice(c)))
            .collect();
        Reply::Stream {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            chunks,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_translated_answer_past_total_is_504() {
    let anthropic = MockUpstream::start(trickling(fixture("anthropic/messages.json"))).await;
    let yaml = "providers:\n  anthropic:\n    timeouts: {idle: 5s, total: 500ms}\n";
    let gw = gateway(yaml, &unused_base(), &anthropic.url("/v1"));

    let resp = post(&gw, chat("anthropic/claude-sonnet-4-5", false)).await;
    assert_eq!(resp.status(), 504);
    // The provider said 200 and did (and bills) the work: not to be asked again.
    assert_eq!(should_retry(&resp), Some("false"));
    let err: Value = resp.json().await.unwrap();
    let message = err["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("timeouts.total"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_proxied_answer_past_total_is_cut() {
    let openai = MockUpstream::start(trickling(fixture("openai/chat_completion.json"))).await;
    let yaml = "providers:\n  openai:\n    timeouts: {idle: 5s, total: 500ms}\n";
    let gw = gateway(yaml, &openai.url("/v1"), &unused_base());

    let resp = post(&gw, chat("gpt-4o-mini", false)).await;
    // The status went out with the header; the body is cut at the total.
    assert_eq!(resp.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(20), resp.bytes())
        .await
        .expect("the answer ends at the total");
    let whole = body
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    assert!(whole.is_none(), "a cut answer must not parse as whole");

    // A stream of the same provider is not bound by `total`.
    let streamed =
        MockUpstream::start(trickling(fixture("openai/chat_completion_stream.txt"))).await;
    let gw = gateway(yaml, &streamed.url("/v1"), &unused_base());
    let resp = post(&gw, chat("gpt-4o-mini", true)).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_answer_cut_after_its_200_header_is_not_sent_again() {
    // The provider said 200 and did the work: a retry would have it done (and billed)
    // twice. A timeout before any answer is still tried again.
    let anthropic = MockUpstream::start(trickling(fixture("anthropic/messages.json"))).await;
    let yaml = "retry:\n  attempts: 2\n  backoff: 1ms\nproviders:\n  anthropic:\n    timeouts: {idle: 5s, total: 500ms}\n";
    let gw = gateway(yaml, &unused_base(), &anthropic.url("/v1"));
    let resp = post(&gw, chat("anthropic/claude-sonnet-4-5", false)).await;
    assert_eq!(resp.status(), 504);
    resp.bytes().await.unwrap();
    assert_eq!(anthropic.requests().len(), 1, "asked once");
}

fn should_retry(resp: &reqwest::Response) -> Option<&str> {
    resp.headers()
        .get("x-should-retry")
        .and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_after_the_providers_success_tells_the_client_not_to_retry() {
    // The SDKs retry every 5xx: after a 200 the provider did (and bills) the work, so
    // the client is told not to have it done again (an answer past `timeouts.total`:
    // `a_whole_translated_answer_past_total_is_504`). A 200 whose body cannot be
    // translated would fail the same way each time, too.
    let garbled = MockUpstream::start(|_| Reply::json(200, "not json at all")).await;
    let gw = gateway("", &unused_base(), &garbled.url("/v1"));
    let resp = post(&gw, chat("anthropic/claude-sonnet-4-5", false)).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(should_retry(&resp), Some("false"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_before_any_answer_leaves_the_client_free_to_retry() {
    // Nothing reached a provider, or the provider refused: a retry may well succeed.
    let gw = gateway("", &unused_base(), &unused_base());
    let resp = post(&gw, chat("anthropic/claude-sonnet-4-5", false)).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(should_retry(&resp), None);

    let silent = MockUpstream::start(slow_first(Duration::from_secs(5))).await;
    let yaml = "providers:\n  openai:\n    timeouts: {first_byte: 300ms}\n";
    let gw = gateway(yaml, &silent.url("/v1"), &unused_base());
    let resp = post(&gw, chat("gpt-4o-mini", false)).await;
    assert_eq!(resp.status(), 504);
    assert_eq!(should_retry(&resp), None);
}
