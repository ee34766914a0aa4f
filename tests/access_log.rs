//! `server.access_log`: JSON lines that parse and carry every field, and `off`, which
//! writes none.

mod common;

use std::time::Duration;

use common::{client, fixture, Gateway, MockUpstream, Recorded, Reply};
use serde_json::Value;

const MASTER: &str = "gw-master-access-log-test-012345678";
const OAI_KEY: &str = "sk-oai-provider-access-log-test";

fn provider_like(rec: &Recorded) -> Reply {
    match rec.uri.as_str() {
        "/v1/chat/completions" => Reply::json(200, fixture("openai/chat_completion.json")),
        _ => Reply::json(200, r#"{"object":"list","data":[]}"#),
    }
}

fn gateway(mock: &MockUpstream, access_log: &str) -> Gateway {
    let base = mock.url("/v1");
    Gateway::start(
        "",
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("OPENAI_API_KEY", OAI_KEY),
            ("OPENAI_BASE_URL", base.as_str()),
            ("AURORA_ACCESS_LOG", access_log),
        ],
    )
}

async fn traffic(gw: &Gateway, id: &str) {
    let c = client();
    let listed = c
        .get(gw.url("/p/openai/models?key=query-secret"))
        .bearer_auth(MASTER)
        .header("x-request-id", format!("{id}-passthrough"))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    let chatted = c
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .header("x-request-id", format!("{id}-chat"))
        .header("content-type", "application/json")
        .body(r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi\nthere"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(chatted.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_access_lines_parse_and_carry_every_field() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway(&mock, "json");
    traffic(&gw, "json-log").await;
    let log = gw.wait_for_log("json-log-chat", 1).await;
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| l.contains(r#""target":"aurora::access""#) && l.contains("json-log"))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    for line in &lines {
        for field in [
            "ts",
            "request_id",
            "upstream_request_id",
            "method",
            "path",
            "route",
            "provider",
            "model",
            "key_name",
            "caller",
            "status",
            "upstream_status",
            "duration_ms",
            "first_byte_ms",
            "overhead_ms",
            "bytes_in",
            "bytes_out",
        ] {
            assert!(line.get(field).is_some(), "{field} missing in {line}");
        }
        assert_eq!(line["status"], 200, "{line}");
        assert_eq!(line["key_name"], "master", "{line}");
        assert_eq!(line["provider"], "openai", "{line}");
        assert!(line["first_byte_ms"].as_f64().is_some(), "{line}");
        assert!(line["overhead_ms"].as_f64().is_some(), "{line}");
    }
    let chat = lines
        .iter()
        .find(|l| l["route"] == "chat_completions")
        .unwrap();
    assert_eq!(chat["model"], "gpt-4o");
    assert_eq!(chat["path"], "/v1/chat/completions");
    for secret in [MASTER, OAI_KEY, "query-secret"] {
        assert!(!log.contains(secret), "{secret} leaked into the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_access_lines_name_the_model_key_and_timings() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway(&mock, "text");
    traffic(&gw, "text-log").await;
    let log = gw.wait_for_log("request_id=text-log-chat", 1).await;
    let line = log
        .lines()
        .find(|l| l.contains("request_id=text-log-chat"))
        .unwrap();
    assert!(line.contains(" INFO  aurora::access] "), "{line}");
    for field in [
        "route=chat_completions",
        "provider=openai",
        "model=gpt-4o",
        "key_name=master",
        "caller=master status=200",
        "upstream_status=200",
        "first_byte_ms=",
        "overhead_ms=",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    assert!(!line.contains("first_byte_ms=-"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_off_writes_no_access_line() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway(&mock, "off");
    traffic(&gw, "quiet-log").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = gw.log();
    assert!(!log.contains("aurora::access"), "{log}");
    assert!(!log.contains("quiet-log"), "{log}");
}

/// Answers 429 with `Retry-After: 1` to the first request, then as a provider does.
fn refusing_once_then_provider_like() -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    let refused = std::sync::atomic::AtomicBool::new(false);
    move |rec| {
        if refused.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return provider_like(rec);
        }
        Reply::Full {
            status: 429,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("retry-after".into(), "1".into()),
            ],
            body: r#"{"error":{"message":"slow down"}}"#.into(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_call_past_the_replay_buffer_counts_only_its_first_attempts_overhead() {
    let mock = MockUpstream::start(refusing_once_then_provider_like()).await;
    let base = mock.url("/v1");
    let gw = Gateway::start(
        "retry:\n  attempts: 1\n  backoff: 1ms\n",
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("OPENAI_API_KEY", OAI_KEY),
            ("OPENAI_BASE_URL", base.as_str()),
            ("AURORA_ACCESS_LOG", "json"),
        ],
    );
    // Past 64 KiB: each attempt is a subrequest of its own, the second a second after
    // the first (its `Retry-After`).
    let long = "x".repeat(100 * 1024);
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .header("x-request-id", "retried-large")
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"{long}"}}]}}"#
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    assert_eq!(mock.requests().len(), 2);
    let log = gw.wait_for_log(r#""request_id":"retried-large""#, 1).await;
    let line: Value = log
        .lines()
        .find(|l| l.contains(r#""request_id":"retried-large""#))
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap();
    let duration = line["duration_ms"].as_f64().unwrap();
    let overhead = line["overhead_ms"].as_f64().unwrap();
    assert!(duration >= 900.0, "the retry waited: {line}");
    // The failed attempt and the wait are the provider's time, not the gateway's.
    assert!(overhead < 500.0, "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropics_request_id_header_is_the_upstream_request_id() {
    // Anthropic names its id `request-id`, without the `x-`.
    let mock = MockUpstream::start(|_: &Recorded| Reply::Full {
        status: 200,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("request-id".into(), "req_011CXanthropic".into()),
        ],
        body: fixture("anthropic/messages.json").into(),
    })
    .await;
    let base = mock.url("/v1");
    let gw = Gateway::start(
        "",
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("ANTHROPIC_API_KEY", "sk-ant-provider-access-log-test"),
            ("ANTHROPIC_BASE_URL", base.as_str()),
        ],
    );
    let body = r#"{"model":"anthropic/claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    // Passed as it came, and translated from a Chat Completions call.
    for path in ["/v1/messages", "/v1/chat/completions"] {
        let resp = client()
            .post(gw.url(path))
            .bearer_auth(MASTER)
            .header("x-request-id", format!("anthropic-id{path}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        resp.bytes().await.unwrap();
        let needle = format!("request_id=anthropic-id{path} ");
        let log = gw.wait_for_log(&needle, 1).await;
        let line = log.lines().find(|l| l.contains(&needle)).unwrap();
        assert!(
            line.contains(" upstream_request_id=req_011CXanthropic "),
            "{line}"
        );
    }
}
