//! Limits per gateway key and per provider, in the memory store: requests per minute,
//! calls at once, token budgets charged from streamed usage, provider quotas; each
//! refusal a 429 in the route's envelope with `Retry-After` and the `x-ratelimit-*`
//! headers.

mod common;

use std::time::Duration;

use common::{client, fixture, sha256_hex, Gateway, MockUpstream, Recorded, Reply};
use serde_json::Value;

const MASTER: &str = "gw-master-limits-test-0123456789abcdef";
/// Managed keys: the key, and the SHA-256 of it the config holds.
const TEAM_KEY: &str = "aur_limits_test_team_key_0123456789abcdef";
const OTHER_KEY: &str = "aur_limits_test_other_key_0123456789abcdef";

fn provider_like(rec: &Recorded) -> Reply {
    let streamed = String::from_utf8_lossy(&rec.body).contains(r#""stream":true"#);
    match rec.uri.as_str() {
        "/v1/messages" if streamed => Reply::Full {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            body: fixture("anthropic/messages_stream.txt").into(),
        },
        "/v1/messages" => Reply::json(200, fixture("anthropic/messages.json")),
        "/v1/chat/completions" => Reply::json(200, fixture("openai/chat_completion.json")),
        _ => Reply::json(404, "{}"),
    }
}

fn gateway(mock: &MockUpstream, extra_yaml: &str, team_limits: &str) -> Gateway {
    let base = mock.url("/v1");
    let yaml = format!(
        "auth:\n  keys:\n    - name: team-a\n      sha256: \"{}\"\n      limits: {team_limits}\n    - name: other\n      sha256: \"{}\"\n{extra_yaml}",
        sha256_hex(TEAM_KEY),
        sha256_hex(OTHER_KEY),
    );
    Gateway::start(
        &yaml,
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("OPENAI_API_KEY", "sk-oai-limits"),
            ("OPENAI_BASE_URL", base.as_str()),
            ("ANTHROPIC_API_KEY", "sk-ant-limits"),
            ("ANTHROPIC_BASE_URL", base.as_str()),
        ],
    )
}

/// [`gateway`] with its usage report served: the gateway and the team key's report URL.
fn reporting_gateway(
    mock: &MockUpstream,
    extra_yaml: &str,
    team_limits: &str,
) -> (Gateway, String) {
    let base = mock.url("/v1");
    let yaml = format!(
        "auth:\n  keys:\n    - name: team-a\n      sha256: \"{}\"\n      limits: {team_limits}\n{extra_yaml}",
        sha256_hex(TEAM_KEY),
    );
    let gw = Gateway::start(
        &yaml,
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("OPENAI_API_KEY", "sk-oai-limits"),
            ("OPENAI_BASE_URL", base.as_str()),
            ("ANTHROPIC_API_KEY", "sk-ant-limits"),
            ("ANTHROPIC_BASE_URL", base.as_str()),
            // The harness turns the listener off unless told where it goes.
            ("AURORA_METRICS_LISTEN", common::PICKED_PORT),
        ],
    );
    let report = format!(
        "http://{}/admin/usage?key=team-a&period=month",
        gw.metrics_listen()
    );
    (gw, report)
}

/// The usage report at `url` once it counts `output` tokens (or after 10 s).
async fn report_with_output(url: &str, output: u64) -> Value {
    let mut report = Value::Null;
    for _ in 0..200 {
        report = common::get_json(url, MASTER).await;
        if report["total"]["tokens"]["output"] == output {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    report
}

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
const MESSAGES: &str = r#"{"model":"anthropic/claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
/// [`MESSAGES`] as Anthropic takes it, through `/p/`.
const MESSAGES_AS_SENT: &str =
    r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;

async fn post(gw: &Gateway, key: &str, path: &str, body: &str) -> reqwest::Response {
    gw.post_json(key, path, body).await
}

/// Waits (at most 10 s) until the provider has received `count` requests.
async fn wait_for_requests(mock: &MockUpstream, count: usize) {
    for _ in 0..500 {
        if mock.requests().len() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "the provider got {} requests, not {count}",
        mock.requests().len()
    );
}

/// The answer to a call of the team key that accepts gzip, which the provider was
/// asked for plainly and the client got plain.
async fn post_accepting_gzip(gw: &Gateway, mock: &MockUpstream, path: &str, body: &str) -> String {
    let resp = client()
        .post(gw.url(path))
        .bearer_auth(TEAM_KEY)
        .header("content-type", "application/json")
        .header("accept-encoding", "gzip, deflate")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{path} {body}");
    assert_eq!(
        mock.last().header("accept-encoding"),
        Some("identity"),
        "{path} {body}"
    );
    assert!(resp.headers().get("content-encoding").is_none(), "{path}");
    resp.text().await.unwrap()
}

/// Asserts `resp` is the refusal of a spent budget: 429, `insufficient_quota`; the
/// client told not to retry unless the period ends within a minute.
async fn assert_budget_spent(resp: reqwest::Response) {
    assert_eq!(resp.status(), 429);
    let wait: u64 = header(&resp, "retry-after").parse().unwrap();
    let should_retry = header(&resp, "x-should-retry");
    assert_eq!(should_retry, if wait > 60 { "false" } else { "" }, "{wait}");
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "insufficient_quota");
}

/// The recorded Anthropic stream, one event every 300 ms: its `message_start` reports
/// 10 input and 3 output tokens well before its end.
fn paced_anthropic_stream() -> Reply {
    let events = fixture("anthropic/messages_stream.txt")
        .split_inclusive("\n\n")
        .map(|e| bytes::Bytes::from(e.to_string()))
        .collect::<Vec<_>>();
    Reply::paced_sse(events, Duration::from_millis(300))
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_gets_its_requests_per_minute_and_then_429s_with_the_headers() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway(&mock, "", "{requests_per_minute: 3}");
    common::clear_of_a_minute_boundary().await;
    for left in ["2", "1", "0"] {
        let resp = post(&gw, TEAM_KEY, "/v1/chat/completions", CHAT).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-ratelimit-limit-requests"), "3");
        assert_eq!(header(&resp, "x-ratelimit-remaining-requests"), left);
        assert!(header(&resp, "x-ratelimit-reset-requests").ends_with('s'));
    }
    let resp = post(&gw, TEAM_KEY, "/v1/chat/completions", CHAT).await;
    assert_eq!(resp.status(), 429);
    assert!(header(&resp, "retry-after").parse::<u64>().unwrap() >= 1);
    assert_eq!(header(&resp, "x-ratelimit-remaining-requests"), "0");
    // Within the minute: the SDKs wait for it and retry, as they should.
    assert!(resp.headers().get("x-should-retry").is_none());
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["type"], "rate_limit_error");
    assert_eq!(err["error"]["code"], "rate_limit_exceeded");

    // /v1/messages refuses in Anthropic's envelope.
    let resp = post(&gw, TEAM_KEY, "/v1/messages", MESSAGES).await;
    assert_eq!(resp.status(), 429);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["type"], "rate_limit_error");

    // Other keys (no limits of their own, no default) and the master key (no
    // `limits.master`) go on.
    for key in [OTHER_KEY, MASTER] {
        let resp = post(&gw, key, "/v1/chat/completions", CHAT).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-ratelimit-limit-requests"), "");
    }
    assert_eq!(
        mock.requests().len(),
        5,
        "refused calls never went upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_key_is_held_to_limits_master_and_left_out_of_the_default() {
    let mock = MockUpstream::start(provider_like).await;
    let limits =
        "limits:\n  default: {requests_per_minute: 1}\n  master: {requests_per_minute: 2}\n";
    let gw = gateway(&mock, limits, "{requests_per_minute: 5}");
    common::clear_of_a_minute_boundary().await;
    for left in ["1", "0"] {
        let resp = post(&gw, MASTER, "/v1/chat/completions", CHAT).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-ratelimit-limit-requests"), "2");
        assert_eq!(header(&resp, "x-ratelimit-remaining-requests"), left);
    }
    let resp = post(&gw, MASTER, "/p/openai/v1/chat/completions", CHAT).await;
    assert_eq!(resp.status(), 429, "the master key past limits.master");
    assert!(header(&resp, "retry-after").parse::<u64>().unwrap() >= 1);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "rate_limit_exceeded");

    // The default holds the key without limits of its own, not the master key's
    // counters; a key with its own limits has its own counters.
    let resp = post(&gw, OTHER_KEY, "/v1/chat/completions", CHAT).await;
    assert_eq!(header(&resp, "x-ratelimit-limit-requests"), "1");
    assert_eq!(header(&resp, "x-ratelimit-remaining-requests"), "0");
    let resp = post(&gw, TEAM_KEY, "/v1/chat/completions", CHAT).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-ratelimit-remaining-requests"), "4");
    assert_eq!(
        mock.requests().len(),
        4,
        "the refused call never went upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_keys_budget_is_charged_from_its_usage_and_the_next_call_refused() {
    let mock = MockUpstream::start(provider_like).await;
    // One answer reports 21 tokens: the first call spends the budget, the next is refused.
    let limits = "limits:\n  master: {budget: {tokens: 20, period: day}}\n";
    let gw = gateway(&mock, limits, "{requests_per_minute: 5}");
    let resp = post(&gw, MASTER, "/v1/chat/completions", CHAT).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    gw.wait_for_log("path=/v1/chat/completions", 1).await;
    assert_budget_spent(post(&gw, MASTER, "/v1/chat/completions", CHAT).await).await;
    assert_eq!(mock.requests().len(), 1);
    // Other keys spend their own.
    let resp = post(&gw, OTHER_KEY, "/v1/chat/completions", CHAT).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anthropic_client_on_p_anthropic_is_refused_in_anthropics_envelope_with_the_headers() {
    // Claude Code pointed at /p/anthropic raises its RateLimitError from this envelope,
    // and waits as `Retry-After` says.
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway(&mock, "", "{requests_per_minute: 1}");
    common::clear_of_a_minute_boundary().await;
    let call = || {
        client()
            .post(gw.url("/p/anthropic/v1/messages"))
            .header("x-api-key", TEAM_KEY)
            .header("anthropic-version", "2023-06-01")
            .header("content-type", "application/json")
            .body(MESSAGES_AS_SENT)
            .send()
    };
    let resp = call().await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = call().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert!(header(&resp, "retry-after").parse::<u64>().unwrap() >= 1);
    assert_eq!(header(&resp, "x-ratelimit-limit-requests"), "1");
    assert_eq!(header(&resp, "x-ratelimit-remaining-requests"), "0");
    assert!(header(&resp, "x-ratelimit-reset-requests").ends_with('s'));
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["type"], "error", "{err}");
    assert_eq!(err["error"]["type"], "rate_limit_error", "{err}");
    assert!(err["error"]["message"].is_string(), "{err}");
    assert_eq!(
        mock.requests().len(),
        1,
        "the refused call never went upstream"
    );
}

/// A provider that tells its quota, as OpenAI and Anthropic do, in every answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_list_tells_a_limited_key_its_windows_without_counting_itself() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway(
        &mock,
        "",
        "{requests_per_minute: 5, tokens_per_minute: 100000}",
    );
    common::clear_of_a_minute_boundary().await;
    let resp = post(&gw, TEAM_KEY, "/v1/chat/completions", CHAT).await;
    assert_eq!(header(&resp, "x-ratelimit-remaining-requests"), "4");
    for path in [
        "/v1/models",
        "/v1/models/gpt-4o-mini",
        "/v1/models",
        "/v1/models",
    ] {
        let resp = client()
            .get(gw.url(path))
            .bearer_auth(TEAM_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(header(&resp, "x-ratelimit-limit-requests"), "5", "{path}");
        // Read, not spent: the list is no call of the key's.
        assert_eq!(
            header(&resp, "x-ratelimit-remaining-requests"),
            "4",
            "{path}"
        );
        assert_eq!(
            header(&resp, "x-ratelimit-limit-tokens"),
            "100000",
            "{path}"
        );
        assert!(header(&resp, "x-ratelimit-reset-requests").ends_with('s'));
    }
}

fn provider_telling_its_quota(rec: &Recorded) -> Reply {
    let Reply::Full {
        status,
        mut headers,
        body,
    } = provider_like(rec)
    else {
        unreachable!("provider_like answers whole")
    };
    for (name, value) in [
        ("x-ratelimit-limit-requests", "10000"),
        ("x-ratelimit-remaining-requests", "9999"),
        ("x-ratelimit-reset-requests", "6ms"),
        ("x-ratelimit-limit-tokens", "30000000"),
        ("x-ratelimit-remaining-tokens", "29999990"),
        ("x-ratelimit-reset-tokens", "0s"),
        ("anthropic-ratelimit-tokens-remaining", "400000"),
    ] {
        headers.push((name.into(), value.into()));
    }
    Reply::Full {
        status,
        headers,
        body,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_keys_answer_never_carries_the_providers_own_rate_headers() {
    let mock = MockUpstream::start(provider_telling_its_quota).await;
    let gw = gateway(&mock, "", "{requests_per_minute: 60}");
    common::clear_of_a_minute_boundary().await;
    // A body past 64 KiB goes through a subrequest, which answers the client.
    let padded = format!(
        r#"{{"model":"gpt-4o-mini","user":"{}","messages":[{{"role":"user","content":"hi"}}]}}"#,
        "u".repeat(100 * 1024)
    );
    for (path, body) in [
        ("/v1/chat/completions", CHAT),
        ("/v1/chat/completions", padded.as_str()),
        ("/p/openai/chat/completions", CHAT),
        ("/p/anthropic/v1/messages", MESSAGES),
    ] {
        let resp = post(&gw, TEAM_KEY, path, body).await;
        assert_eq!(resp.status(), 200, "{path}");
        // The key's own window, and none of the operator's quota beside it.
        assert_eq!(header(&resp, "x-ratelimit-limit-requests"), "60", "{path}");
        for quota in [
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
            "anthropic-ratelimit-tokens-remaining",
        ] {
            assert_eq!(header(&resp, quota), "", "{path}: {quota}");
        }
    }
    // A key without limits is told what the provider said.
    let resp = post(&gw, OTHER_KEY, "/p/openai/chat/completions", CHAT).await;
    assert_eq!(header(&resp, "x-ratelimit-limit-tokens"), "30000000");
    assert_eq!(header(&resp, "x-ratelimit-limit-requests"), "10000");

    // A key with limits calling with its own provider key (`!PASSTHRU`) hears of its
    // own account's quota.
    let own = format!(
        "providers:\n  byok:\n    type: openai\n    api_key: \"!PASSTHRU\"\n    base_url: {}\n",
        mock.url("/v1")
    );
    let gw = gateway(&mock, &own, "{requests_per_minute: 60}");
    let resp = client()
        .post(gw.url("/p/byok/chat/completions"))
        .bearer_auth(TEAM_KEY)
        .header("x-provider-api-key", "sk-caller-own-0123456789")
        .header("content-type", "application/json")
        .body(CHAT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-ratelimit-limit-tokens"), "30000000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpriced_model_name_cannot_forge_a_log_line() {
    // The model the answer names (a server's text), which has no price.
    let mock = MockUpstream::start(|_: &Recorded| {
        Reply::json(
            200,
            r#"{"id":"c","object":"chat.completion","model":"x\n[2026-01-01T00:00:00Z INFO  aurora::access] FORGED status=200","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#,
        )
    })
    .await;
    let gw = gateway(&mock, "", "{budget: {usd: 10, period: day}}");
    let resp = post(&gw, TEAM_KEY, "/p/openai/chat/completions", CHAT).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !gw.log().contains("has no price") && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = gw.log();
    assert!(log.contains(r"model `x\n[2026-01-01"), "{log}");
    for line in log.lines() {
        assert!(!line.starts_with("[2026-01-01"), "forged line: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_the_replay_buffer_carries_the_headers_too() {
    // A body past Pingora's 64 KiB replay buffer goes through a subrequest, whose
    // answer is the one the client gets.
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway(&mock, "", "{requests_per_minute: 5}");
    common::clear_of_a_minute_boundary().await;
    let large = format!(
        r#"{{"model":"gpt-4o-mini","user":"{}","messages":[{{"role":"user","content":"hi"}}]}}"#,
        "u".repeat(100 * 1024)
    );
    for (path, left) in [
        ("/v1/chat/completions", "4"),
        ("/p/openai/chat/completions", "3"),
    ] {
        let resp = post(&gw, TEAM_KEY, path, &large).await;
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(header(&resp, "x-ratelimit-limit-requests"), "5", "{path}");
        assert_eq!(
            header(&resp, "x-ratelimit-remaining-requests"),
            left,
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_at_its_calls_at_once_is_refused_until_one_ends() {
    let mock = MockUpstream::start(|rec: &Recorded| {
        Reply::Delayed(Duration::from_millis(800), Box::new(provider_like(rec)))
    })
    .await;
    let gw = gateway(&mock, "", "{concurrent: 2}");
    let gw = std::sync::Arc::new(gw);
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let gw = std::sync::Arc::clone(&gw);
            tokio::spawn(async move {
                post(&gw, TEAM_KEY, "/p/openai/chat/completions", CHAT)
                    .await
                    .status()
            })
        })
        .collect();
    // Both calls hold their slots once the provider has them.
    wait_for_requests(&mock, 2).await;
    let third = post(&gw, TEAM_KEY, "/p/openai/chat/completions", CHAT).await;
    assert_eq!(third.status(), 429);
    let err: Value = third.json().await.unwrap();
    assert_eq!(err["error"]["code"], "rate_limit_exceeded");
    for call in slow {
        assert_eq!(call.await.unwrap(), 200);
    }
    let after = post(&gw, TEAM_KEY, "/p/openai/chat/completions", CHAT).await;
    assert_eq!(after.status(), 200, "the slots came back");
    assert_eq!(mock.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_budget_is_charged_from_streamed_usage_and_the_next_call_refused() {
    let mock = MockUpstream::start(provider_like).await;
    // The recorded stream reports its usage; the budget is a little more than one
    // answer's tokens, so the second call goes over and the third is refused.
    let gw = gateway(&mock, "", "{budget: {tokens: 20, period: month}}");
    let stream = r#"{"model":"claude-sonnet-4-5","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    for _ in 0..2 {
        let resp = post(&gw, TEAM_KEY, "/p/anthropic/v1/messages", stream).await;
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    // The charge comes before the access line, once the answer has ended.
    gw.wait_for_log("path=/p/anthropic/v1/messages", 2).await;
    assert_budget_spent(post(&gw, TEAM_KEY, "/p/anthropic/v1/messages", stream).await).await;
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_stream_that_did_not_ask_for_its_usage_is_charged_all_the_same() {
    // OpenAI reports a Chat stream's usage only when asked: the gateway asks for it,
    // on `/v1` and on `/p/`, or a key could stream past its budget uncounted.
    let mock = MockUpstream::start(|rec| {
        if rec.uri == "/v1/chat/completions"
            && rec.body.windows(13).any(|w| w == br#""stream":true"#)
        {
            common::mock::provider_rules::openai_chat_stream(rec)
        } else {
            provider_like(rec)
        }
    })
    .await;
    let stream =
        r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    for (path, calls) in [
        ("/v1/chat/completions", 1),
        ("/p/openai/chat/completions", 2),
    ] {
        // One answer reports 21 tokens: the first call goes over, the second is refused.
        let gw = gateway(&mock, "", "{budget: {tokens: 20, period: month}}");
        let resp = post(&gw, TEAM_KEY, path, stream).await;
        assert_eq!(resp.status(), 200, "{path}");
        let text = resp.text().await.unwrap();
        assert!(!text.contains(r#""choices":[]"#), "{path}: {text}");
        gw.wait_for_log(&format!("path={path}"), 1).await;
        assert_budget_spent(post(&gw, TEAM_KEY, path, stream).await).await;
        assert_eq!(mock.requests().len(), calls, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asked_for_usage_is_read_and_hidden_even_from_a_provider_that_compresses() {
    use std::io::Write;
    // This provider compresses its stream whatever the request accepts.
    let mock = MockUpstream::start(|rec| {
        let Reply::Stream {
            status,
            mut headers,
            chunks,
        } = common::mock::provider_rules::openai_chat_stream(rec)
        else {
            unreachable!("a stream")
        };
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        for (_, chunk) in &chunks {
            gz.write_all(chunk).unwrap();
        }
        headers.push(("content-encoding".into(), "gzip".into()));
        Reply::Full {
            status,
            headers,
            body: gz.finish().unwrap().into(),
        }
    })
    .await;
    let stream =
        r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    for path in ["/v1/chat/completions", "/p/openai/chat/completions"] {
        let gw = gateway(&mock, "", "{budget: {tokens: 20, period: month}}");
        let text = post_accepting_gzip(&gw, &mock, path, stream).await;
        assert!(text.ends_with("data: [DONE]\n\n"), "{path}: {text}");
        assert!(!text.contains(r#""choices":[]"#), "{path}: {text}");
        gw.wait_for_log(&format!("path={path}"), 1).await;
        // The usage was read and charged.
        assert_budget_spent(post(&gw, TEAM_KEY, path, stream).await).await;
    }
}

/// `reply`, gzipped when `rec` accepts gzip, as OpenAI and Anthropic answer SDKs that
/// say they do (a stream's chunks are sent as one body).
fn gzipped_when_accepted(rec: &Recorded, reply: Reply) -> Reply {
    use std::io::Write;
    if !rec
        .header("accept-encoding")
        .is_some_and(|a| a.contains("gzip"))
    {
        return reply;
    }
    let (status, mut headers, plain) = match reply {
        Reply::Full {
            status,
            headers,
            body,
        } => (status, headers, body.to_vec()),
        Reply::Stream {
            status,
            headers,
            chunks,
        } => (
            status,
            headers,
            chunks.iter().flat_map(|(_, c)| c.to_vec()).collect(),
        ),
        other => return other,
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).unwrap();
    headers.push(("content-encoding".into(), "gzip".into()));
    Reply::Full {
        status,
        headers,
        body: gz.finish().unwrap().into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_a_client_accepts_compressed_is_charged_all_the_same() {
    // SDKs accept gzip, and providers compress what is accepted: read as it came, such
    // an answer's usage could not be charged, on any route the gateway does not
    // translate.
    let mock = MockUpstream::start(|rec| gzipped_when_accepted(rec, provider_like(rec))).await;
    let stream = r#"{"model":"claude-sonnet-4-5","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let whole = r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    let on_v1 = r#"{"model":"anthropic/claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    for (path, body) in [
        ("/p/anthropic/v1/messages", whole),
        ("/p/anthropic/v1/messages", stream),
        ("/v1/messages", on_v1),
        ("/v1/chat/completions", CHAT),
    ] {
        // Any usage spends this budget.
        let gw = gateway(&mock, "", "{budget: {tokens: 1, period: month}}");
        let calls = mock.requests().len();
        let text = post_accepting_gzip(&gw, &mock, path, body).await;
        assert!(text.contains("usage"), "{path} {body}: {text}");
        gw.wait_for_log(&format!("path={path}"), 1).await;
        let next = post(&gw, TEAM_KEY, path, body).await;
        if path == "/v1/messages" {
            // Anthropic's envelope.
            assert_eq!(next.status(), 429);
            let err: Value = next.json().await.unwrap();
            assert_eq!(err["error"]["type"], "rate_limit_error");
        } else {
            assert_budget_spent(next).await;
        }
        assert_eq!(mock.requests().len(), calls + 1, "{path} {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_compressed_unasked_is_decoded_and_charged() {
    // This provider compresses whatever the request accepts, and even when it accepts
    // nothing but identity.
    let mock = MockUpstream::start(|rec| {
        let mut gzip_anyway = rec.clone();
        gzip_anyway
            .headers
            .insert("accept-encoding", http::HeaderValue::from_static("gzip"));
        gzipped_when_accepted(&gzip_anyway, provider_like(rec))
    })
    .await;
    let whole = r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    for path in ["/p/anthropic/v1/messages", "/v1/chat/completions"] {
        let body = if path.starts_with("/p/") { whole } else { CHAT };
        let gw = gateway(&mock, "", "{budget: {tokens: 1, period: month}}");
        let resp = post(&gw, TEAM_KEY, path, body).await;
        assert_eq!(resp.status(), 200, "{path}");
        assert!(resp.headers().get("content-encoding").is_none(), "{path}");
        let answer: Value = resp.json().await.unwrap();
        assert!(answer["usage"].is_object(), "{path}: {answer}");
        gw.wait_for_log(&format!("path={path}"), 1).await;
        assert_budget_spent(post(&gw, TEAM_KEY, path, body).await).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passthrough_chat_call_is_priced_by_the_model_its_answer_named_whatever_its_size() {
    // A `/p/` body is not routed on: its cost is priced by the model the answer names.
    // A body past Pingora's 64 KiB replay buffer goes through a subrequest, whose
    // answer the main request prices and logs.
    let mock = MockUpstream::start(common::mock::provider_rules::openai_chat_stream).await;
    let prices =
        "models:\n  prices:\n    openai/gpt-4o-mini-2024-07-18: {input: 1000, output: 1000}\n";
    let stream = |pad: usize| {
        format!(
            r#"{{"model":"gpt-4o-mini","stream":true,"user":"{}","messages":[{{"role":"user","content":"hi"}}]}}"#,
            "u".repeat(pad)
        )
    };
    for body in [stream(0), stream(100 * 1024)] {
        // One answer's 21 tokens cost $0.021.
        let gw = gateway(&mock, prices, "{budget: {usd: 0.01, period: month}}");
        let resp = post(&gw, TEAM_KEY, "/p/openai/chat/completions", &body).await;
        assert_eq!(resp.status(), 200);
        assert!(resp.text().await.unwrap().ends_with("data: [DONE]\n\n"));
        let line = gw.wait_for_log("path=/p/openai/chat/completions", 1).await;
        assert!(line.contains("model=gpt-4o-mini-2024-07-18"), "{line}");
        let next = post(&gw, TEAM_KEY, "/p/openai/chat/completions", &body).await;
        assert_budget_spent(next).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_priced_as_the_model_that_answered_else_as_the_one_asked_for() {
    // The provider bills the model that answered: a fallback it chose (OpenRouter's
    // `models`), a snapshot. One the price table lacks is priced as the model asked
    // for, not as free. Each answer's 21 tokens cost $0.021 at the dear price.
    let mock = MockUpstream::start(|rec: &Recorded| {
        let answer = fixture("openai/chat_completion.json");
        match rec.uri.as_str() {
            "/v1/unpriced/chat/completions" => Reply::json(
                200,
                answer.replace("gpt-4o-mini-2024-07-18", "gpt-4o-mini-variant-unpriced"),
            ),
            _ => Reply::json(200, answer),
        }
    })
    .await;
    let prices = "models:\n  prices:\n    gpt-4o-mini: {input: 0.001, output: 0.001}\n    gpt-4o-mini-2024-07-18: {input: 1000, output: 1000}\n    gpt-4o: {input: 1000, output: 1000}\n";
    let budget = "{budget: {usd: 0.01, period: month}}";
    // Asked for the cheap model, answered by the dear one.
    let gw = gateway(&mock, prices, budget);
    let resp = post(&gw, TEAM_KEY, "/v1/chat/completions", CHAT).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    gw.wait_for_log("path=/v1/chat/completions", 1).await;
    assert_budget_spent(post(&gw, TEAM_KEY, "/v1/chat/completions", CHAT).await).await;
    // Through `/p/`, answered by a model without a price: priced as the body's.
    let base = mock.url("/v1/unpriced");
    let yaml = format!(
        "{prices}providers:\n  dear:\n    type: openai\n    base_url: {base}\n    api_key: sk-dear\nauth:\n  keys:\n    - name: team-a\n      sha256: \"{}\"\n      limits: {budget}\n",
        sha256_hex(TEAM_KEY),
    );
    let gw = Gateway::start(&yaml, &[("AURORA_MASTER_KEY", MASTER)]);
    let path = "/p/dear/chat/completions";
    let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
    let resp = post(&gw, TEAM_KEY, path, body).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let line = gw.wait_for_log(&format!("path={path}"), 1).await;
    assert!(
        line.contains("model=gpt-4o-mini-variant-unpriced"),
        "{line}"
    );
    assert_budget_spent(post(&gw, TEAM_KEY, path, body).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_own_error_answers_carry_the_keys_rate_headers() {
    // A limited key's call the gateway answers with an error of its own (no provider
    // could be reached; a body it refuses): OpenAI's clients read the headers on every
    // answer.
    let dead = format!("http://127.0.0.1:{}/v1", common::closed_port());
    let yaml = format!(
        "auth:\n  keys:\n    - name: team-a\n      sha256: \"{}\"\n      limits: {{requests_per_minute: 10}}\n",
        sha256_hex(TEAM_KEY),
    );
    let gw = Gateway::start(
        &yaml,
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("OPENAI_API_KEY", "sk-oai-limits"),
            ("OPENAI_BASE_URL", dead.as_str()),
        ],
    );
    let calls = [
        ("/v1/chat/completions", CHAT, 502, "9"),
        ("/p/openai/chat/completions", CHAT, 502, "8"),
        (
            "/v1/chat/completions",
            r#"{"model":"gpt-4o-mini","messages":"#,
            400,
            "7",
        ),
    ];
    for (path, body, status, left) in calls {
        let resp = post(&gw, TEAM_KEY, path, body).await;
        assert_eq!(resp.status(), status, "{path}");
        assert_eq!(header(&resp, "x-ratelimit-limit-requests"), "10", "{path}");
        assert_eq!(
            header(&resp, "x-ratelimit-remaining-requests"),
            left,
            "{path}"
        );
        assert!(!header(&resp, "x-ratelimit-reset-requests").is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_refused_before_its_admission_carries_the_keys_rate_headers_counting_nothing() {
    // A wrong method, a path no route serves, a declared body past the limit: refused
    // before the key's limits are counted, each still tells the key its windows.
    let mock = MockUpstream::start(provider_like).await;
    let limit = "server:\n  body_size_limit: 1KiB\n";
    let gw = gateway(&mock, limit, "{requests_per_minute: 10}");
    common::clear_of_a_minute_boundary().await;
    let too_large = format!(
        r#"{{"model":"gpt-4o-mini","user":"{}","messages":[]}}"#,
        "u".repeat(2048)
    );
    let refusals = [
        (client().get(gw.url("/v1/chat/completions")), 405),
        (client().post(gw.url("/v1/no-such-route")).body("{}"), 404),
        (
            client()
                .post(gw.url("/v1/chat/completions"))
                .header("content-type", "application/json")
                .body(too_large),
            413,
        ),
    ];
    for (request, status) in refusals {
        let resp = request.bearer_auth(TEAM_KEY).send().await.unwrap();
        assert_eq!(resp.status(), status);
        assert_eq!(
            header(&resp, "x-ratelimit-limit-requests"),
            "10",
            "{status}"
        );
        assert_eq!(
            header(&resp, "x-ratelimit-remaining-requests"),
            "10",
            "{status}: nothing counted"
        );
        assert!(
            header(&resp, "x-ratelimit-reset-requests").ends_with('s'),
            "{status}"
        );
    }
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_counts_against_the_quota_of_the_provider_it_goes_to() {
    // OpenAI fails every call, which falls back to Anthropic: each call counts against
    // Anthropic's quota, and its tokens are charged to Anthropic, which answered, not
    // to OpenAI.
    let mock = MockUpstream::start(|rec: &Recorded| match rec.uri.as_str() {
        "/v1/chat/completions" => Reply::json(503, r#"{"error":{"message":"overloaded"}}"#),
        _ => provider_like(rec),
    })
    .await;
    let yaml = "models:\n  fallbacks:\n    gpt-4o-mini: [anthropic/claude-sonnet-4-5]\nproviders:\n  openai:\n    limits: {tokens_per_minute: 1}\n  anthropic:\n    limits: {requests_per_minute: 3}\n";
    // A body past 64 KiB goes through subrequests, each attempt one of its own.
    let padded = format!(
        r#"{{"model":"gpt-4o-mini","user":"{}","messages":[{{"role":"user","content":"hi"}}]}}"#,
        "u".repeat(100 * 1024)
    );
    for body in [CHAT, padded.as_str()] {
        let gw = gateway(&mock, yaml, "{requests_per_minute: 100}");
        for call in 1..=3 {
            let resp = post(&gw, TEAM_KEY, "/v1/chat/completions", body).await;
            let status = resp.status();
            assert_eq!(status, 200, "call {call}: {}", resp.text().await.unwrap());
        }
        let refused = post(&gw, TEAM_KEY, "/v1/chat/completions", body).await;
        assert_eq!(refused.status(), 429);
        let text = refused.text().await.unwrap();
        assert!(text.contains("provider `anthropic`"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_at_the_same_provider_counts_against_its_quota() {
    // OpenAI refuses the first call it sees (429): the gateway tries it again there,
    // and both count against the provider's quota of 2 a minute.
    let yaml = "retry:\n  attempts: 1\n  backoff: 1ms\nproviders:\n  openai:\n    limits: {requests_per_minute: 2}\n";
    let padded = format!(
        r#"{{"model":"gpt-4o-mini","user":"{}","messages":[{{"role":"user","content":"hi"}}]}}"#,
        "u".repeat(100 * 1024)
    );
    let translated = r#"{"model":"openai/gpt-4o-mini","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    // In the proxy's own loop, through subrequests (a body past 64 KiB), and in the
    // gateway's own exchange (a translated answer read whole).
    for (path, body) in [
        ("/v1/chat/completions", CHAT),
        ("/v1/chat/completions", padded.as_str()),
        ("/v1/messages", translated),
    ] {
        let seen = std::sync::atomic::AtomicUsize::new(0);
        let mock = MockUpstream::start(move |rec: &Recorded| {
            if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                Reply::json(429, r#"{"error":{"message":"quota"}}"#)
            } else {
                provider_like(rec)
            }
        })
        .await;
        let gw = gateway(&mock, yaml, "{requests_per_minute: 100}");
        common::clear_of_a_minute_boundary().await;
        let resp = post(&gw, TEAM_KEY, path, body).await;
        let attempts = header(&resp, "x-aurora-attempts");
        let status = resp.status();
        let shown = resp.text().await.unwrap();
        assert_eq!(status, 200, "{path}: {shown}");
        assert_eq!(attempts, "2");
        let refused = post(&gw, TEAM_KEY, path, body).await;
        assert_eq!(refused.status(), 429);
        let text = refused.text().await.unwrap();
        assert!(text.contains("provider `openai`"), "{text}");
        assert_eq!(mock.requests().len(), 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_to_another_model_at_the_same_provider_counts_there() {
    // gpt-4o-mini fails, and falls back to gpt-4o at the same provider: two requests
    // against its quota of 2 a minute.
    let mock = MockUpstream::start(|rec: &Recorded| {
        if String::from_utf8_lossy(&rec.body).contains("gpt-4o-mini") {
            Reply::json(503, r#"{"error":{"message":"overloaded"}}"#)
        } else {
            provider_like(rec)
        }
    })
    .await;
    let yaml = "models:\n  fallbacks:\n    gpt-4o-mini: [openai/gpt-4o]\nproviders:\n  openai:\n    limits: {requests_per_minute: 2}\n";
    let gw = gateway(&mock, yaml, "{requests_per_minute: 100}");
    common::clear_of_a_minute_boundary().await;
    let resp = post(&gw, TEAM_KEY, "/v1/chat/completions", CHAT).await;
    assert_eq!(header(&resp, "x-aurora-attempts"), "2");
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let refused = post(&gw, TEAM_KEY, "/v1/chat/completions", CHAT).await;
    assert_eq!(refused.status(), 429);
    let text = refused.text().await.unwrap();
    assert!(text.contains("provider `openai`"), "{text}");
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_refused_before_the_provider_are_not_in_the_usage_report() {
    let mock = MockUpstream::start(provider_like).await;
    let (gw, report) = reporting_gateway(
        &mock,
        "providers:\n  openai:\n    limits: {requests_per_minute: 1}\n",
        "{requests_per_minute: 100}",
    );
    common::clear_of_a_minute_boundary().await;
    let served = post(&gw, TEAM_KEY, "/v1/chat/completions", CHAT).await;
    assert_eq!(served.status(), 200);
    served.bytes().await.unwrap();
    // Refused by the provider's quota, on `/v1` and on `/p/`.
    let refused = post(&gw, TEAM_KEY, "/v1/chat/completions", CHAT).await;
    assert_eq!(refused.status(), 429);
    let bad = post(&gw, TEAM_KEY, "/p/openai/chat/completions", CHAT).await;
    assert_eq!(bad.status(), 429);
    let report = report_with_output(&report, 4).await;
    assert_eq!(report["total"]["requests"], 1, "{report}");
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passthrough_request_the_gateway_refuses_uses_none_of_the_providers_quota() {
    // OpenAI's quota allows two requests a minute. Bodies the gateway reads and
    // refuses (a Chat body held to ask for its stream's usage that is not JSON), and a
    // credential minted past the limits, never reach OpenAI: the quota is left whole
    // for the calls that do.
    let mock = MockUpstream::start(provider_like).await;
    let yaml = "providers:\n  openai:\n    limits: {requests_per_minute: 2}\n";
    let gw = gateway(&mock, yaml, "{requests_per_minute: 100}");
    common::clear_of_a_minute_boundary().await;
    for _ in 0..2 {
        let refused = post(&gw, TEAM_KEY, "/p/openai/chat/completions", "not json").await;
        assert_eq!(refused.status(), 400);
    }
    let minted = post(&gw, TEAM_KEY, "/p/openai/realtime/client_secrets", "{}").await;
    assert_eq!(minted.status(), 403);
    assert!(mock.requests().is_empty(), "nothing reached the provider");
    for call in 1..=2 {
        let resp = post(&gw, TEAM_KEY, "/p/openai/chat/completions", CHAT).await;
        assert_eq!(
            resp.status(),
            200,
            "call {call}: {}",
            resp.text().await.unwrap()
        );
    }
    let refused = post(&gw, TEAM_KEY, "/p/openai/chat/completions", CHAT).await;
    assert_eq!(refused.status(), 429, "the quota still holds");
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_no_connection_was_made_counts_once_against_the_providers_quota() {
    // Nothing reaches a provider that cannot be connected to: the retry is the same
    // request against its quota of 2 a minute, not another one.
    let dead = format!("http://127.0.0.1:{}/v1", common::closed_port());
    let yaml = format!(
        "auth:\n  keys:\n    - name: team-a\n      sha256: \"{}\"\nretry:\n  attempts: 1\n  backoff: 1ms\nproviders:\n  openai:\n    limits: {{requests_per_minute: 2}}\n",
        sha256_hex(TEAM_KEY),
    );
    for path in ["/p/openai/chat/completions", "/v1/chat/completions"] {
        let gw = Gateway::start(
            &yaml,
            &[
                ("AURORA_MASTER_KEY", MASTER),
                ("OPENAI_API_KEY", "sk-oai-limits"),
                ("OPENAI_BASE_URL", dead.as_str()),
            ],
        );
        common::clear_of_a_minute_boundary().await;
        for call in 1..=2 {
            let resp = post(&gw, TEAM_KEY, path, CHAT).await;
            assert_eq!(resp.status(), 502, "{path} {call}");
        }
        let needle = format!(" path={path} ");
        let log = gw.wait_for_log(&needle, 2).await;
        let tried_twice = log
            .lines()
            .filter(|l| l.contains(&needle) && l.matches(":connect:").count() == 2);
        assert_eq!(tried_twice.count(), 2, "{log}");
        let refused = post(&gw, TEAM_KEY, path, CHAT).await;
        assert_eq!(refused.status(), 429, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_with_the_gateways_key_is_held_to_what_a_budgeted_key_may_ask() {
    // The caller's own key (`!PASSTHRU`) may ask for the `image_generation` tool at
    // `byok`; refused there (429), the call falls back to `openai`, which would bill
    // the images to the gateway's key: not for a key held to a budget.
    let mock = MockUpstream::start(|rec: &Recorded| match rec.uri.as_str() {
        "/byok/v1/responses" => Reply::json(429, r#"{"error":{"message":"quota"}}"#),
        "/v1/responses" => Reply::json(200, fixture("openai/responses.json")),
        _ => Reply::json(404, "{}"),
    })
    .await;
    let yaml = format!(
        "models:\n  fallbacks:\n    byok/gpt-4o-mini: [openai/gpt-4o-mini]\nproviders:\n  byok:\n    type: openai\n    api_key: \"!PASSTHRU\"\n    base_url: {}\n",
        mock.url("/byok/v1")
    );
    let gw = gateway(&mock, &yaml, "{budget: {usd: 5, period: month}}");
    let images =
        r#"{"model":"byok/gpt-4o-mini","input":"a cat","tools":[{"type":"image_generation"}]}"#;
    // A body past 64 KiB goes through subrequests, each attempt one of its own.
    let padded = format!(
        r#"{{"model":"byok/gpt-4o-mini","user":"{}","input":"a cat","tools":[{{"type":"image_generation"}}]}}"#,
        "u".repeat(100 * 1024)
    );
    for body in [images, padded.as_str()] {
        let resp = client()
            .post(gw.url("/v1/responses"))
            .bearer_auth(TEAM_KEY)
            .header("x-provider-api-key", "sk-callers-own")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let err: Value = resp.json().await.unwrap();
        assert_eq!(status, 403, "{err}");
        assert_eq!(err["error"]["code"], "not_allowed", "{err}");
    }
    let uris: Vec<String> = mock.requests().iter().map(|r| r.uri.clone()).collect();
    assert!(!uris.is_empty(), "the caller's own key was tried");
    assert!(
        uris.iter().all(|u| u == "/byok/v1/responses"),
        "never at the gateway's key: {uris:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_input_of_an_attempt_given_up_on_is_charged_to_the_provider_that_had_it() {
    // OpenAI has the call and is slow: the gateway gives up at its first byte and
    // falls back to Anthropic, which answers (14 + 5 tokens). OpenAI may finish and
    // bill the call: its input is OpenAI's to count, not Anthropic's.
    let mock = MockUpstream::start(|rec: &Recorded| match rec.uri.as_str() {
        "/v1/chat/completions" => {
            Reply::Delayed(Duration::from_secs(5), Box::new(provider_like(rec)))
        }
        _ => provider_like(rec),
    })
    .await;
    let yaml = "models:\n  fallbacks:\n    gpt-4o-mini: [anthropic/claude-sonnet-4-5]\nproviders:\n  openai:\n    timeouts: {first_byte: 300ms}\n    limits: {tokens_per_minute: 100}\n  anthropic:\n    limits: {tokens_per_minute: 100}\n";
    let gw = gateway(&mock, yaml, "{requests_per_minute: 100}");
    common::clear_of_a_minute_boundary().await;
    let question = "a question long enough to cost tokens ".repeat(40);
    let body = format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"{question}"}}]}}"#
    );
    let resp = post(&gw, TEAM_KEY, "/v1/chat/completions", &body).await;
    assert_eq!(header(&resp, "x-aurora-provider"), "anthropic");
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    gw.wait_for_log(" path=/v1/chat/completions ", 1).await;
    // OpenAI's window holds the input it was given up on (some 380 tokens)...
    let openai = post(&gw, TEAM_KEY, "/p/openai/chat/completions", CHAT).await;
    assert_eq!(openai.status(), 429);
    let text = openai.text().await.unwrap();
    assert!(text.contains("provider `openai`"), "{text}");
    // ...and Anthropic's only what it answered.
    let anthropic = post(&gw, TEAM_KEY, "/p/anthropic/v1/messages", MESSAGES_AS_SENT).await;
    let status = anthropic.status();
    assert_eq!(status, 200, "{}", anthropic.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_out_of_quota_is_passed_over_for_the_fallback() {
    // OpenAI's quota allows one call a minute: the next goes to the model's fallback,
    // not back to the client as a 429; with no fallback left, the 429 is the client's.
    let mock = MockUpstream::start(provider_like).await;
    let yaml = "models:\n  fallbacks:\n    gpt-4o-mini: [anthropic/claude-sonnet-4-5]\nproviders:\n  openai:\n    limits: {requests_per_minute: 1}\n  anthropic:\n    limits: {requests_per_minute: 1}\n";
    let padded = format!(
        r#"{{"model":"gpt-4o-mini","user":"{}","messages":[{{"role":"user","content":"hi"}}]}}"#,
        "u".repeat(100 * 1024)
    );
    let streamed =
        r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    for body in [CHAT, streamed, padded.as_str()] {
        let gw = gateway(&mock, yaml, "{requests_per_minute: 100}");
        for expected in ["openai", "anthropic"] {
            let resp = post(&gw, TEAM_KEY, "/v1/chat/completions", body).await;
            let provider = header(&resp, "x-aurora-provider");
            let attempts = header(&resp, "x-aurora-attempts");
            let status = resp.status();
            let text = resp.text().await.unwrap();
            assert_eq!(status, 200, "{text}");
            assert_eq!(provider, expected, "{text}");
            if expected == "anthropic" {
                assert_eq!(attempts, "2", "the quota's refusal is an attempt");
            }
        }
        let refused = post(&gw, TEAM_KEY, "/v1/chat/completions", body).await;
        assert_eq!(refused.status(), 429);
        let text = refused.text().await.unwrap();
        assert!(text.contains("provider `anthropic`"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_moved_past_a_provider_out_of_quota_is_read_as_its_new_provider_needs() {
    // Moved from OpenAI (passed as it is) to Anthropic (translated), a whole answer is
    // read whole before the client gets anything: one that cannot be translated is a
    // 502, not a 200 carrying an error.
    let mock = MockUpstream::start(|rec: &Recorded| match rec.uri.as_str() {
        "/v1/messages" => Reply::json(200, r#"{"type":"message","content":"#),
        _ => provider_like(rec),
    })
    .await;
    let yaml = "models:\n  fallbacks:\n    gpt-4o-mini: [anthropic/claude-sonnet-4-5]\nproviders:\n  openai:\n    limits: {requests_per_minute: 1}\n";
    let gw = gateway(&mock, yaml, "{requests_per_minute: 100}");
    assert_eq!(
        post(&gw, TEAM_KEY, "/v1/chat/completions", CHAT)
            .await
            .status(),
        200
    );
    let moved = post(&gw, TEAM_KEY, "/v1/chat/completions", CHAT).await;
    let status = moved.status();
    let text = moved.text().await.unwrap();
    assert_eq!(status, 502, "{text}");
}

/// Gemini and Ollama pointed at their own APIs on `mock` (`gemini-own`, at
/// `…/v1beta`; `ollama-own`, at the root), passthrough on.
fn own_api_providers(mock: &MockUpstream) -> String {
    format!(
        "server:\n  enabled_passthrough_providers: [gemini-own, ollama-own]\nproviders:\n  gemini-own:\n    type: gemini\n    api_key: gem-test-key\n    base_url: '{}'\n  ollama-own:\n    type: ollama\n    base_url: '{}'\n",
        mock.url("/v1beta"),
        mock.url(""),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn geminis_and_ollamas_own_apis_are_charged_through_passthrough() {
    // Providers pointed at their own APIs rather than their OpenAI-compatible ones:
    // Gemini reports `usageMetadata`, Ollama its counts at the top of its answer or of
    // the last line of a stream.
    let gemini = r#"{"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":12,"totalTokenCount":22},"modelVersion":"gemini-2.5-flash"}"#;
    let ollama_lines = concat!(
        "{\"model\":\"llama3.2\",\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}\n",
        "{\"model\":\"llama3.2\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"prompt_eval_count\":10,\"eval_count\":12}\n",
    );
    let mock = MockUpstream::start(move |rec: &Recorded| match rec.uri.as_str() {
        "/v1beta/models/gemini-2.5-flash:generateContent" => Reply::json(200, gemini),
        "/api/chat" => Reply::Full {
            status: 200,
            headers: vec![("content-type".into(), "application/x-ndjson".into())],
            body: ollama_lines.into(),
        },
        _ => Reply::json(404, "{}"),
    })
    .await;
    let providers = own_api_providers(&mock);
    let calls = [
        (
            "/p/gemini-own/models/gemini-2.5-flash:generateContent",
            r#"{"contents":[{"parts":[{"text":"hi"}]}]}"#,
        ),
        (
            "/p/ollama-own/api/chat",
            r#"{"model":"llama3.2","messages":[{"role":"user","content":"hi"}]}"#,
        ),
    ];
    for (path, body) in calls {
        // 22 tokens spend a budget of 20.
        let gw = gateway(&mock, &providers, "{budget: {tokens: 20, period: month}}");
        let resp = post(&gw, TEAM_KEY, path, body).await;
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert_eq!(status, 200, "{path}: {text}");
        let line = gw.wait_for_log(&format!("path={path}"), 1).await;
        assert!(line.contains("tokens_input=10 tokens_output=12"), "{line}");
        assert_budget_spent(post(&gw, TEAM_KEY, path, body).await).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gemini_call_cannot_hide_its_usage_behind_googles_system_parameters() {
    // Google answers only the members `fields` (or `X-Goog-FieldMask`) names, and
    // `alt=proto` in protobuf: a client asking so would get its answer without the
    // usage the gateway charges. They never reach Google.
    let whole = r#"{"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":12,"totalTokenCount":22},"modelVersion":"gemini-2.5-flash"}"#;
    let mock = MockUpstream::start(move |rec: &Recorded| {
        let masked = rec.uri.contains("fields=")
            || rec.uri.contains("alt=proto")
            || rec.headers.contains_key("x-goog-fieldmask");
        match rec.uri.split('?').next() {
            Some("/v1beta/models/gemini-2.5-flash:generateContent") if masked => Reply::json(
                200,
                r#"{"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"}}]}"#,
            ),
            Some("/v1beta/models/gemini-2.5-flash:generateContent") => Reply::json(200, whole),
            _ => Reply::json(404, "{}"),
        }
    })
    .await;
    let providers = own_api_providers(&mock);
    let gw = gateway(&mock, &providers, "{budget: {tokens: 1000, period: month}}");
    let body = r#"{"contents":[{"parts":[{"text":"hi"}]}]}"#;
    let path = "/p/gemini-own/models/gemini-2.5-flash:generateContent";
    for (query, mask) in [
        ("?fields=candidates", None),
        ("?%24fields=candidates&alt=proto", None),
        ("", Some("candidates")),
    ] {
        let mut rb = client()
            .post(gw.url(&format!("{path}{query}")))
            .bearer_auth(TEAM_KEY)
            .header("content-type", "application/json")
            .body(body);
        if let Some(mask) = mask {
            rb = rb.header("x-goog-fieldmask", mask);
        }
        let resp = rb.send().await.unwrap();
        assert_eq!(resp.status(), 200, "{query}");
        resp.bytes().await.unwrap();
        let rec = mock.last();
        assert_eq!(rec.uri, "/v1beta/models/gemini-2.5-flash:generateContent");
        assert!(!rec.headers.contains_key("x-goog-fieldmask"));
    }
    let lines = gw.wait_for_log(&format!("path={path}"), 3).await;
    assert_eq!(
        lines.matches("tokens_input=10 tokens_output=12").count(),
        3,
        "{lines}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_answer_without_a_usage_the_gateway_reads_is_charged_an_estimate() {
    // Google answers a request in JSPB (`application/json+protobuf`, arrays of
    // arrays) or protobuf in kind: no `usageMetadata` the gateway can read, so such a
    // call was free. It is now charged an estimate: its input by the request's size,
    // its output by the answer's (its text, when it is JSON the gateway reads); an
    // embedding call, its input alone, as Google bills it.
    let jspb =
        r#"[[[[[["Hello there, general Kenobi"]],"model"],1]],[10,12,22],"gemini-2.5-flash"]"#;
    let proto = bytes::Bytes::from(vec![0x0au8; 400]);
    let answered_proto = proto.clone();
    let embedding = r#"{"embedding":{"values":[0.0123,-0.0456,0.0789,0.0111,-0.0222,0.0333]}}"#;
    let typed = |content_type: &str, body: bytes::Bytes| Reply::Full {
        status: 200,
        headers: vec![("content-type".into(), content_type.into())],
        body,
    };
    let mock = MockUpstream::start(move |rec: &Recorded| match rec.uri.as_str() {
        "/v1beta/models/gemini-2.5-flash:generateContent" => {
            match rec.headers.get("content-type").map(|v| v.to_str().unwrap()) {
                Some("application/json+protobuf") => {
                    typed("application/json+protobuf", jspb.into())
                }
                _ => typed("application/x-protobuf", answered_proto.clone()),
            }
        }
        "/v1beta/models/text-embedding-004:embedContent" => Reply::json(200, embedding),
        // An OpenAI-compatible server that reports no usage.
        "/v1/chat/completions" => Reply::json(
            200,
            r#"{"id":"c1","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, general Kenobi"},"finish_reason":"stop"}]}"#,
        ),
        _ => Reply::json(404, "{}"),
    })
    .await;
    let providers = own_api_providers(&mock);
    let gw = gateway(
        &mock,
        &providers,
        "{budget: {tokens: 100000, period: month}}",
    );
    let jspb_request = r#"[[[[["Tell me something of some length, please"]],"user"]]]"#;
    let embed_request = r#"{"content":{"parts":[{"text":"a sentence to embed, of some length"}]}}"#;
    let calls = [
        (
            "models/gemini-2.5-flash:generateContent",
            "application/json+protobuf",
            jspb_request.to_string(),
            (jspb_request.len().div_ceil(4), jspb.len().div_ceil(4)),
        ),
        (
            "models/gemini-2.5-flash:generateContent",
            "application/x-protobuf",
            "\n\x02hi".to_string(),
            // A model's request is its prompt, whatever its type.
            (1, proto.len().div_ceil(4)),
        ),
        (
            "models/text-embedding-004:embedContent",
            "application/json",
            embed_request.to_string(),
            (embed_request.len().div_ceil(4), 0),
        ),
    ];
    for (i, (endpoint, content_type, body, (input, output))) in calls.into_iter().enumerate() {
        let path = format!("/p/gemini-own/{endpoint}");
        let resp = client()
            .post(gw.url(&path))
            .bearer_auth(TEAM_KEY)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{content_type}");
        resp.bytes().await.unwrap();
        // Each call's access line, in order.
        let log = gw.wait_for_log(" path=/p/gemini-own/", i + 1).await;
        let line = log
            .lines()
            .filter(|l| l.contains(" path=/p/gemini-own/"))
            .nth(i)
            .unwrap();
        let expected = format!("tokens_input={input} tokens_output={output} ");
        assert!(
            line.contains(&expected),
            "{content_type}: {expected} in {line}"
        );
        assert!(line.contains("tokens_estimated=true"), "{line}");
    }
    // On `/v1` too, passed as it came or translated (Messages to an OpenAI-format
    // provider, read whole by the gateway): the output of its text ("Hello there,
    // general Kenobi", 7 tokens), the input of the request the gateway read.
    for path in ["/v1/chat/completions", "/v1/messages"] {
        let resp = client()
            .post(gw.url(path))
            .bearer_auth(TEAM_KEY)
            .json(&serde_json::json!({
                "model": "openai:gpt-4o-mini",
                "max_tokens": 64,
                "messages": [{"role": "user", "content": "Tell me something of some length"}],
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        resp.bytes().await.unwrap();
        let needle = format!(" path={path} ");
        let log = gw.wait_for_log(&needle, 1).await;
        let line = log.lines().find(|l| l.contains(&needle)).unwrap();
        assert!(line.contains(" tokens_output=7 "), "{line}");
        assert!(!line.contains(" tokens_input=0 "), "{line}");
        assert!(line.contains("tokens_estimated=true"), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gemini_or_ollama_stream_the_client_leaves_before_its_counts_is_charged_an_estimate() {
    // Every Gemini chunk reports a running count (the prompt's and 3 tokens of
    // output, here) until the one that finishes; Ollama counts only in its last line.
    // A client reading the text and leaving before those was charged that running
    // count, or nothing. Its output is now estimated from the text: "Hello there,
    // general Kenobi", 7 tokens.
    let gemini_chunk = |text: &str, finish: &str, usage: &str| {
        bytes::Bytes::from(format!(
            "data: {{\"candidates\":[{{\"content\":{{\"parts\":[{{\"text\":\"{text}\"}}],\"role\":\"model\"}}{finish},\"index\":0}}],\"usageMetadata\":{usage},\"modelVersion\":\"gemini-2.5-flash\"}}\r\n\r\n"
        ))
    };
    let running = r#"{"promptTokenCount":10,"candidatesTokenCount":3,"totalTokenCount":13}"#;
    let gemini = vec![
        gemini_chunk("Hello there, ", "", running),
        gemini_chunk("general Kenobi", "", running),
        gemini_chunk(
            "!",
            r#","finishReason":"STOP""#,
            r#"{"promptTokenCount":10,"candidatesTokenCount":12,"totalTokenCount":22}"#,
        ),
    ];
    let ollama_line = |content: &str, end: &str| {
        bytes::Bytes::from(format!(
            "{{\"model\":\"llama3.2\",\"message\":{{\"role\":\"assistant\",\"content\":\"{content}\"}},\"done\":{end}}}\n"
        ))
    };
    let ollama = vec![
        ollama_line("Hello there, ", "false"),
        ollama_line("general Kenobi", "false"),
        ollama_line("", r#"true,"prompt_eval_count":10,"eval_count":12"#),
    ];
    let pace = Duration::from_millis(200);
    let mock = MockUpstream::start(move |rec: &Recorded| {
        let (content_type, chunks) = match rec.uri.as_str() {
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse" => {
                ("text/event-stream", gemini.clone())
            }
            "/api/chat" => ("application/x-ndjson", ollama.clone()),
            _ => return Reply::json(404, "{}"),
        };
        Reply::Stream {
            status: 200,
            headers: vec![("content-type".into(), content_type.into())],
            chunks: chunks.into_iter().map(|c| (pace, c)).collect(),
        }
    })
    .await;
    let providers = own_api_providers(&mock);
    let calls = [
        // The input reported, 10, and the output estimated, 7, spend 15; the running
        // count, 13, would not.
        (
            "/p/gemini-own/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            r#"{"contents":[{"parts":[{"text":"hi"}]}]}"#,
            15,
        ),
        // The output estimated spends 5.
        (
            "/p/ollama-own/api/chat",
            r#"{"model":"llama3.2","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
            5,
        ),
    ];
    for (path, body, budget) in calls {
        let gw = gateway(
            &mock,
            &providers,
            &format!("{{budget: {{tokens: {budget}, period: month}}}}"),
        );
        let mut resp = post(&gw, TEAM_KEY, path, body).await;
        assert_eq!(resp.status(), 200, "{path}");
        let mut read = String::new();
        while !read.contains("Kenobi") {
            let chunk = resp.chunk().await.unwrap().expect("the stream went on");
            read.push_str(&String::from_utf8_lossy(&chunk));
        }
        drop(resp);
        // The log names the path without its query.
        let logged = path.split('?').next().unwrap_or(path);
        let line = gw.wait_for_log(&format!("path={logged} "), 1).await;
        assert!(line.contains(" tokens_output=7 "), "{path}: {line}");
        assert!(line.contains(" tokens_estimated=true"), "{path}: {line}");
        assert_budget_spent(post(&gw, TEAM_KEY, path, body).await).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dated_model_an_answer_names_costs_what_the_model_it_dates_costs() {
    // Asked for `gpt-4o-mini`, OpenAI answers `gpt-4o-mini-2024-07-18`; the operator
    // priced `gpt-4o-mini`. A USD budget must not count such calls free.
    let mock = MockUpstream::start(provider_like).await;
    let prices = "models:\n  prices:\n    gpt-4o-mini: {input: 1000, output: 1000}\n";
    // One answer's 21 tokens cost $0.021.
    let gw = gateway(&mock, prices, "{budget: {usd: 0.01, period: month}}");
    let resp = post(&gw, TEAM_KEY, "/p/openai/chat/completions", CHAT).await;
    assert_eq!(resp.status(), 200);
    let line = gw.wait_for_log("path=/p/openai/chat/completions", 1).await;
    assert!(line.contains("model=gpt-4o-mini-2024-07-18"), "{line}");
    assert_budget_spent(post(&gw, TEAM_KEY, "/p/openai/chat/completions", CHAT).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_too_large_to_hold_is_charged_all_the_same() {
    // Many embeddings: 9 MiB of vectors, the model and the usage after them.
    let vectors = vec!["[0.0123,-0.98]"; 9 * 1024 * 1024 / 15].join(",");
    let answer = format!(
        r#"{{"object":"list","data":[{vectors}],"model":"text-embedding-3-small","usage":{{"prompt_tokens":8,"total_tokens":8}}}}"#
    );
    let len = answer.len();
    let mock = MockUpstream::start(move |_| Reply::json(200, answer.clone())).await;
    let gw = gateway(&mock, "", "{budget: {tokens: 1, period: month}}");
    let body = r#"{"model":"text-embedding-3-small","input":["hi"]}"#;
    let resp = post(&gw, TEAM_KEY, "/p/openai/embeddings", body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().len(), len);
    gw.wait_for_log("path=/p/openai/embeddings", 1).await;
    assert!(
        gw.log().contains("model=text-embedding-3-small"),
        "{}",
        gw.log()
    );
    assert_budget_spent(post(&gw, TEAM_KEY, "/p/openai/embeddings", body).await).await;
}

/// A provider answering 48 MiB of embeddings, the usage in their last bytes: more
/// than the connections buffer, so a client can read the vectors and leave before
/// the usage passes.
fn embeddings_of_48_mib() -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    let vectors = vec!["[0.0123,-0.98]"; 48 * 1024 * 1024 / 15].join(",");
    let answer = bytes::Bytes::from(format!(
        r#"{{"object":"list","data":[{vectors}],"model":"text-embedding-3-small","usage":{{"prompt_tokens":8,"total_tokens":8}}}}"#
    ));
    move |_| Reply::json(200, answer.clone())
}

/// Reads the first MiB of a successful answer, and leaves.
async fn read_a_mebibyte_and_leave(mut resp: reqwest::Response) {
    assert_eq!(resp.status(), 200);
    let mut read = 0;
    while read < 1024 * 1024 {
        read += resp
            .chunk()
            .await
            .unwrap()
            .expect("the answer went on")
            .len();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_answer_the_client_leaves_before_its_usage_is_charged_an_estimate() {
    // Estimated: no output text, the input by the request's size (a `/p/` body is not
    // read), 77 bytes: 20 tokens.
    let mock = MockUpstream::start(embeddings_of_48_mib()).await;
    let gw = gateway(&mock, "", "{budget: {tokens: 5, period: month}}");
    let body = r#"{"model":"text-embedding-3-small","input":["what the client wants embedded"]}"#;
    read_a_mebibyte_and_leave(post(&gw, TEAM_KEY, "/p/openai/embeddings", body).await).await;
    let line = gw.wait_for_log("path=/p/openai/embeddings", 1).await;
    assert!(line.contains(" tokens_input=20 "), "{line}");
    assert!(line.contains(" tokens_estimated=true"), "{line}");
    assert_budget_spent(post(&gw, TEAM_KEY, "/p/openai/embeddings", body).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_call_whose_large_answer_the_client_leaves_is_charged_an_estimate() {
    // A body past Pingora's 64 KiB replay buffer goes through a subrequest, and the
    // main request settles as soon as its client leaves: what the subrequest shared
    // while the answer was under way counts. The input is estimated from the body
    // read (100 inputs of 1,000 characters: 25,000 tokens and more).
    let mock = MockUpstream::start(embeddings_of_48_mib()).await;
    let gw = gateway(&mock, "", "{budget: {tokens: 20000, period: month}}");
    let inputs = vec![format!("\"{}\"", "w".repeat(1000)); 100].join(",");
    let body = format!(r#"{{"model":"openai/text-embedding-3-small","input":[{inputs}]}}"#);
    read_a_mebibyte_and_leave(post(&gw, TEAM_KEY, "/v1/embeddings", &body).await).await;
    let line = gw.wait_for_log("path=/v1/embeddings", 1).await;
    assert!(line.contains(" tokens_estimated=true"), "{line}");
    assert_budget_spent(post(&gw, TEAM_KEY, "/v1/embeddings", &body).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_answer_cut_by_anything_but_the_client_is_not_estimated() {
    // The provider sends part of an answer and goes quiet; the gateway gives up on it
    // at the read timeout. The client got a document cut short, of no use to it: not
    // charged.
    let part = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,"#;
    let mock = MockUpstream::start(move |_| Reply::Held {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        chunks: vec![bytes::Bytes::from_static(part.as_bytes())],
    })
    .await;
    let extra = "providers:\n  openai:\n    timeouts: {read: 300ms}\n";
    let gw = gateway(&mock, extra, "{budget: {tokens: 1, period: month}}");
    let body = r#"{"model":"text-embedding-3-small","input":["what the client wants embedded"]}"#;
    let resp = post(&gw, TEAM_KEY, "/p/openai/embeddings", body).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.is_err(), "the answer was cut");
    let line = gw.wait_for_log("path=/p/openai/embeddings", 1).await;
    assert!(!line.contains("tokens_"), "{line}");
    let again = post(&gw, TEAM_KEY, "/p/openai/embeddings", body).await;
    assert_eq!(again.status(), 200, "nothing was charged");
}

/// An embeddings call whose body the gateway passes unread: 77 bytes, 20 tokens by
/// its size.
const EMBED: &str =
    r#"{"model":"text-embedding-3-small","input":["what the client wants embedded"]}"#;

/// Sends `body` to `path` as the team key, and leaves as soon as the provider has the
/// call, before any answer.
async fn leave_before_the_answer(gw: &Gateway, mock: &MockUpstream, path: &str, body: &str) {
    let before = mock.requests().len();
    let call = tokio::spawn(post_owned(gw.url(path), body.to_string()));
    wait_for_requests(mock, before + 1).await;
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled(), "{path}: answered");
}

/// Sends `body` to `path` as the team key, and leaves once the answer's header came.
async fn leave_after_the_header(gw: &Gateway, path: &str, body: &str) -> u16 {
    let resp = post(gw, TEAM_KEY, path, body).await;
    resp.status().as_u16()
}

async fn post_owned(url: String, body: String) -> reqwest::Response {
    client()
        .post(url)
        .bearer_auth(TEAM_KEY)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// The access line of the request to `path`, once it is written.
async fn access_line(gw: &Gateway, path: &str) -> String {
    let needle = format!("path={path} ");
    let log = gw.wait_for_log(&needle, 1).await;
    log.lines()
        .find(|l| l.contains(&needle))
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_the_client_leaves_before_its_answer_is_charged_its_input() {
    // The provider works for 3 s and bills the input whatever the client does; a
    // client leaving once the provider has the call must not have had it for nothing.
    // Estimated as for a whole answer cut short: from the body the gateway read
    // (`/v1`), else by the body's size.
    let mock = MockUpstream::start(|rec| {
        Reply::Delayed(Duration::from_secs(3), Box::new(provider_like(rec)))
    })
    .await;
    // Past Pingora's 64 KiB replay buffer, a `/v1` body goes through a subrequest.
    let inputs = vec![format!("\"{}\"", "w".repeat(1000)); 100].join(",");
    let large = format!(r#"{{"model":"openai/text-embedding-3-small","input":[{inputs}]}}"#);
    for (path, body, input) in [
        ("/p/openai/embeddings", EMBED, Some(20)),
        ("/v1/chat/completions", CHAT, None),
        ("/v1/embeddings", large.as_str(), None),
    ] {
        let gw = gateway(&mock, "", "{budget: {tokens: 1, period: month}}");
        leave_before_the_answer(&gw, &mock, path, body).await;
        let line = access_line(&gw, path).await;
        assert!(line.contains(" status=0 "), "{line}");
        assert!(line.contains(" tokens_estimated=true"), "{line}");
        assert!(line.contains(" tokens_output=0 "), "{line}");
        match input {
            Some(n) => assert!(line.contains(&format!(" tokens_input={n} ")), "{line}"),
            None => assert!(!line.contains(" tokens_input=0 "), "{line}"),
        }
        assert_budget_spent(post(&gw, TEAM_KEY, path, body).await).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_left_while_its_answer_is_only_white_space_is_charged_its_input() {
    // Some providers send the header at once and white space while the model works.
    let mock = MockUpstream::start(|_| Reply::Held {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        chunks: vec![bytes::Bytes::from_static(b"\n \n")],
    })
    .await;
    let gw = gateway(&mock, "", "{budget: {tokens: 1, period: month}}");
    assert_eq!(
        leave_after_the_header(&gw, "/p/openai/embeddings", EMBED).await,
        200
    );
    let line = access_line(&gw, "/p/openai/embeddings").await;
    assert!(line.contains(" tokens_input=20 "), "{line}");
    assert!(line.contains(" tokens_estimated=true"), "{line}");
    assert_budget_spent(post(&gw, TEAM_KEY, "/p/openai/embeddings", EMBED).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_left_before_its_first_event_is_charged_the_input_the_gateway_read() {
    // The stream's header came, and nothing after it. As for any stream left, the
    // input counts from a body the gateway read, never by its size (one of images
    // would count as thousands of tokens): a key held to tokens or a budget has every
    // `/p/` model call's body read (a Chat body is for every key, to ask for its
    // usage), so that a Responses stream left before its usage is not free. A key
    // held to the number of its calls only has a Responses body go as it comes.
    let mock = MockUpstream::start(|_| Reply::held_sse(vec![])).await;
    let chat = r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"what the client wants answered at length"}]}"#;
    let responses = r#"{"model":"gpt-4o-mini","stream":true,"input":"what the client wants answered at length"}"#;
    // Past Pingora's 64 KiB retry buffer, a held body goes through a subrequest.
    let large = format!(
        r#"{{"model":"gpt-4o-mini","stream":true,"user":"{}","input":"hi"}}"#,
        "u".repeat(100 * 1024)
    );
    let spent_tokens = "{budget: {tokens: 1, period: month}}";
    let counted_calls = "{requests_per_minute: 100}";
    for (path, body, limits, charged) in [
        ("/p/openai/chat/completions", chat, spent_tokens, true),
        ("/p/openai/responses", responses, spent_tokens, true),
        ("/p/openai/responses", large.as_str(), spent_tokens, true),
        ("/p/openai/responses", responses, counted_calls, false),
    ] {
        let gw = gateway(&mock, "", limits);
        assert_eq!(leave_after_the_header(&gw, path, body).await, 200);
        let line = access_line(&gw, path).await;
        assert_eq!(line.contains(" tokens_estimated=true"), charged, "{line}");
        if limits == spent_tokens {
            assert_budget_spent(post(&gw, TEAM_KEY, path, body).await).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_left_that_no_provider_worked_on_is_not_charged() {
    // Nothing is billed for a failure, a body the provider got only part of, a call
    // that asks no model (counting tokens), or an attempt that never reached a
    // provider (the client leaving while the gateway waits to try again).
    let mock = MockUpstream::start(|rec| match rec.uri.as_str() {
        "/v1/embeddings" => Reply::Held {
            status: 400,
            headers: vec![("content-type".into(), "application/json".into())],
            chunks: vec![bytes::Bytes::from_static(br#"{"error":"#)],
        },
        "/v1/messages/count_tokens" => Reply::Delayed(
            Duration::from_secs(3),
            Box::new(Reply::json(200, r#"{"input_tokens":12}"#)),
        ),
        _ => Reply::json(200, r#"{"object":"list","data":[]}"#),
    })
    .await;
    let closed = format!("http://127.0.0.1:{}/v1", common::closed_port());
    let extra = format!(
        "retry:\n  attempts: 2\n  backoff: 30s\n  max_backoff: 60s\nproviders:\n  gone:\n    type: anthropic\n    api_key: sk-ant-gone\n    base_url: {closed}\n    models: [claude-gone-1]\n"
    );
    let gw = gateway(&mock, &extra, "{budget: {tokens: 1, period: month}}");
    assert_eq!(
        leave_after_the_header(&gw, "/p/openai/embeddings", EMBED).await,
        400
    );
    let line = access_line(&gw, "/p/openai/embeddings").await;
    assert!(!line.contains("tokens_"), "a failure: {line}");

    let count =
        r#"{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"count these"}]}"#;
    leave_before_the_answer(&gw, &mock, "/p/anthropic/v1/messages/count_tokens", count).await;
    let line = access_line(&gw, "/p/anthropic/v1/messages/count_tokens").await;
    assert!(!line.contains("tokens_"), "counting tokens: {line}");

    // Translated to Anthropic, the call is answered whole; the provider refuses the
    // connection, and the client leaves while the gateway waits to try again (waits of
    // up to 30 s, then 60 s, with full jitter: both under the second the client
    // stays, once in about 3,600 runs, where waits of up to 5 s did so once in 50).
    let gone = r#"{"model":"gone/claude-gone-1","messages":[{"role":"user","content":"hi"}]}"#;
    let call = tokio::spawn(post_owned(gw.url("/v1/chat/completions"), gone.to_string()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    call.abort();
    let line = access_line(&gw, "/v1/chat/completions").await;
    assert!(line.contains(" status=0 "), "{line}");
    assert!(
        !line.contains("tokens_"),
        "never reached a provider: {line}"
    );

    let mut sock = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let request = format!(
        "POST /p/openai/embeddings?part HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {TEAM_KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{EMBED}",
        EMBED.len() + 1000,
    );
    tokio::io::AsyncWriteExt::write_all(&mut sock, request.as_bytes())
        .await
        .unwrap();
    // The provider gets the header and the body so far; the rest never comes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(sock);
    let log = gw.wait_for_log("path=/p/openai/embeddings", 2).await;
    let line = log
        .lines()
        .filter(|l| l.contains("path=/p/openai/embeddings "))
        .nth(1)
        .unwrap();
    assert!(
        !line.contains(" overhead_ms=- "),
        "it went upstream: {line}"
    );
    assert!(!line.contains("tokens_"), "a body cut short: {line}");
    // A budget spent refuses even a write that bills no tokens.
    let again = post(&gw, TEAM_KEY, "/p/openai/files", EMBED).await;
    assert_eq!(again.status(), 200, "nothing was charged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_the_client_leaves_is_charged_what_it_reported_by_then() {
    // The client stops reading after `message_start` (a chat UI's stop button).
    let mock = MockUpstream::start(|_| paced_anthropic_stream()).await;
    let gw = gateway(&mock, "", "{budget: {tokens: 12, period: month}}");
    let stream = r#"{"model":"claude-sonnet-4-5","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let mut resp = post(&gw, TEAM_KEY, "/p/anthropic/v1/messages", stream).await;
    assert_eq!(resp.status(), 200);
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("message_start"));
    drop(resp);
    gw.wait_for_log("path=/p/anthropic/v1/messages", 1).await;
    // Counted under the model its answer named (a passthrough body is not read).
    assert!(
        gw.log().contains("model=claude-sonnet-4-20250514"),
        "{}",
        gw.log()
    );
    // The 13 tokens reported were charged.
    assert_budget_spent(post(&gw, TEAM_KEY, "/p/anthropic/v1/messages", stream).await).await;
}

/// The recorded Chat stream as it comes when its usage was asked for, one event
/// every 200 ms: its usage comes in a chunk of its own after the one that finishes.
fn paced_chat_stream_with_usage() -> Reply {
    let usage = r#"data: {"id":"chatcmpl-x","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}"#;
    let stream = fixture("openai/chat_completion_stream.txt")
        .replace("data: [DONE]", &format!("{usage}\n\ndata: [DONE]"));
    let events = stream
        .split_inclusive("\n\n")
        .map(|e| bytes::Bytes::from(e.to_string()))
        .collect::<Vec<_>>();
    Reply::paced_sse(events, Duration::from_millis(200))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_the_client_leaves_before_its_usage_is_charged_an_estimate() {
    // The client reads the whole answer and leaves on its last content chunk, before
    // the chunk with the usage: without an estimate, a key held to tokens or a budget
    // would stream for nothing. Estimated: the request's text (its model, "user" and
    // "hi", 5 tokens; 51,200 for the large one) and the answer's ("Hello, World!" in
    // 4 chunks, 4 tokens).
    let mock = MockUpstream::start(|_| paced_chat_stream_with_usage()).await;
    let stream = |content: &str| {
        format!(
            r#"{{"model":"gpt-4o-mini","stream":true,"messages":[{{"role":"user","content":"{content}"}}]}}"#
        )
    };
    let large = stream(&"x".repeat(200 * 1024));
    for (path, body) in [
        ("/p/openai/chat/completions", stream("hi")),
        ("/v1/chat/completions", stream("hi")),
        ("/v1/chat/completions", large),
    ] {
        let gw = gateway(&mock, "", "{budget: {tokens: 5, period: month}}");
        let mut resp = post(&gw, TEAM_KEY, path, &body).await;
        assert_eq!(resp.status(), 200, "{path}");
        let mut read = String::new();
        while !read.contains(r#""finish_reason":"stop""#) {
            let chunk = resp.chunk().await.unwrap().expect("the stream went on");
            read.push_str(&String::from_utf8_lossy(&chunk));
        }
        drop(resp);
        let line = gw.wait_for_log(&format!("path={path}"), 1).await;
        assert!(line.contains(" tokens_output=4 "), "{path}: {line}");
        assert!(line.contains(" tokens_estimated=true"), "{path}: {line}");
        assert_budget_spent(post(&gw, TEAM_KEY, path, &body).await).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_call_the_client_leaves_is_charged_what_its_subrequest_read() {
    // A body past Pingora's retry buffer goes upstream from a subrequest; the client
    // leaves after the first chunk, and the main request settles without waiting for
    // the subrequest to notice.
    let mock = MockUpstream::start(|_| paced_anthropic_stream()).await;
    let gw = gateway(&mock, "", "{budget: {tokens: 12, period: month}}");
    let large = format!(
        r#"{{"model":"anthropic/claude-sonnet-4-5","stream":true,"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(200 * 1024)
    );
    let mut resp = post(&gw, TEAM_KEY, "/v1/chat/completions", &large).await;
    assert_eq!(resp.status(), 200);
    resp.chunk().await.unwrap().unwrap();
    drop(resp);
    gw.wait_for_log("path=/v1/chat/completions", 1).await;
    // The 13 tokens reported were charged.
    assert_budget_spent(post(&gw, TEAM_KEY, "/v1/chat/completions", &large).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_stored_responses_counts_against_the_keys_requests_and_the_providers_quota() {
    // `GET /v1/responses/{id}` goes on to OpenAI for a response OpenAI keeps, for the
    // key that made it there (or the master key, for one the gateway has no record
    // of): a request like any other, for the key's rate and the provider's quota alike.
    let mock =
        MockUpstream::start(|_| Reply::json(200, r#"{"id":"resp_x","object":"response"}"#)).await;
    let make = r#"{"model":"openai/gpt-4o","input":"hi"}"#;
    common::clear_of_a_minute_boundary().await;
    let gw = gateway(&mock, "", "{requests_per_minute: 2}");
    assert_eq!(
        post(&gw, TEAM_KEY, "/v1/responses", make).await.status(),
        200
    );
    assert_eq!(
        get(&gw, TEAM_KEY, "/v1/responses/resp_x").await.status(),
        200
    );
    let again = get(&gw, TEAM_KEY, "/v1/responses/resp_x").await;
    assert_eq!(again.status(), 429, "the key's minute is spent");
    let quota = "providers:\n  openai:\n    limits: {requests_per_minute: 2}\n";
    let gw = gateway(&mock, quota, "{requests_per_minute: 100}");
    assert_eq!(
        post(&gw, TEAM_KEY, "/v1/responses", make).await.status(),
        200
    );
    assert_eq!(
        get(&gw, MASTER, "/v1/responses/resp_unrecorded")
            .await
            .status(),
        200
    );
    let again = get(&gw, TEAM_KEY, "/v1/responses/resp_x").await;
    assert_eq!(again.status(), 429, "the provider's quota is spent");
    assert_eq!(mock.requests().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_response_the_gateway_answers_itself_carries_the_keys_rate_headers() {
    // Translated and stored here, its reads are answered by the gateway, not a
    // provider: every answer to a key with limits carries its `x-ratelimit-*` all the
    // same.
    let mock = MockUpstream::start(provider_like).await;
    common::clear_of_a_minute_boundary().await;
    let gw = gateway(&mock, "", "{requests_per_minute: 10}");
    let body = r#"{"model":"anthropic/claude-sonnet-4-5","input":"hi"}"#;
    let made = post(&gw, TEAM_KEY, "/v1/responses", body).await;
    assert_eq!(made.status(), 200);
    let id = made.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let read = get(&gw, TEAM_KEY, &format!("/v1/responses/{id}")).await;
    assert_eq!(read.status(), 200);
    assert_eq!(header(&read, "x-ratelimit-limit-requests"), "10");
    assert_eq!(header(&read, "x-ratelimit-remaining-requests"), "8");
    let deleted = client()
        .delete(gw.url(&format!("/v1/responses/{id}")))
        .bearer_auth(TEAM_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(header(&deleted, "x-ratelimit-limit-requests"), "10");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_quota_holds_whoever_calls_and_default_limits_cover_keys_without_their_own() {
    let mock = MockUpstream::start(provider_like).await;
    let extra = "limits:\n  default: {requests_per_minute: 1}\nproviders:\n  openai:\n    limits: {requests_per_minute: 2}\n";
    let gw = gateway(&mock, extra, "{requests_per_minute: 100}");
    common::clear_of_a_minute_boundary().await;
    assert_eq!(
        post(&gw, MASTER, "/v1/chat/completions", CHAT)
            .await
            .status(),
        200
    );
    assert_eq!(
        post(&gw, TEAM_KEY, "/v1/chat/completions", CHAT)
            .await
            .status(),
        200
    );
    let resp = post(&gw, MASTER, "/v1/chat/completions", CHAT).await;
    assert_eq!(resp.status(), 429, "the provider's quota is spent");
    // The quota is not the caller's: its numbers are not told as the caller's limits.
    assert!(resp.headers().get("retry-after").is_some());
    assert_eq!(header(&resp, "x-ratelimit-limit-requests"), "");
    let team = post(&gw, TEAM_KEY, "/v1/chat/completions", CHAT).await;
    assert_eq!(team.status(), 429);
    assert_eq!(header(&team, "x-ratelimit-limit-requests"), "100");
    let err: Value = resp.json().await.unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("provider `openai`"),
        "{err}"
    );
    // `other` has no limits of its own: the default allows it one call a minute.
    assert_eq!(
        post(&gw, OTHER_KEY, "/p/anthropic/v1/messages", MESSAGES)
            .await
            .status(),
        200
    );
    assert_eq!(
        post(&gw, OTHER_KEY, "/p/anthropic/v1/messages", MESSAGES)
            .await
            .status(),
        429
    );
}

/// A gateway whose key `team-a` calls OpenAI on `mock`, with `models` (YAML, before
/// the keys), the master key given as `master` says, and its metrics listener, which
/// serves the usage report, on a port of its own.
fn usage_gateway(mock: &MockUpstream, models: &str, master: (&str, &str)) -> Gateway {
    let base = mock.url("/v1");
    let yaml = format!(
        "{models}auth:\n  keys:\n    - name: team-a\n      sha256: \"{}\"\n",
        sha256_hex(TEAM_KEY)
    );
    let env = [
        master,
        ("OPENAI_API_KEY", "sk-oai-limits"),
        ("OPENAI_BASE_URL", base.as_str()),
        // The harness turns the listener off unless told where it goes.
        ("AURORA_METRICS_LISTEN", common::PICKED_PORT),
    ];
    Gateway::start(&yaml, &env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usage_report_gives_a_keys_requests_tokens_and_cost_per_model() {
    let mock = MockUpstream::start(provider_like).await;
    let models = "models:\n  limits:\n    gpt-4o-mini: {max_output_tokens: 1000}\n  prices:\n    gpt-4o-mini: {input: 1.0, output: 2.0}\n";
    let gw = usage_gateway(&mock, models, ("AURORA_MASTER_KEY", MASTER));
    let listen = gw.metrics_listen();
    for _ in 0..2 {
        assert_eq!(
            post(&gw, TEAM_KEY, "/v1/chat/completions", CHAT)
                .await
                .status(),
            200
        );
    }
    // Usage is recorded before the access line is written.
    gw.wait_for_log("path=/v1/chat/completions", 2).await;
    let url = format!("http://{listen}/admin/usage?key=team-a&period=month");
    let refused = client()
        .get(&url)
        .bearer_auth(TEAM_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "the report is for the master key");
    let report = common::get_json(&url, MASTER).await;
    let model = &report["models"]["gpt-4o-mini"];
    assert_eq!(model["requests"], 2, "{report}");
    // The recorded completion reports 17 input and 4 output tokens.
    assert_eq!(model["tokens"]["input"], 34);
    assert_eq!(model["tokens"]["output"], 8);
    let cost = (34.0 * 1.0 + 8.0 * 2.0) / 1e6;
    assert!(
        (report["total"]["cost_usd"].as_f64().unwrap() - cost).abs() < 1e-9,
        "{report}"
    );

    // `aurora usage` asks the same listener, with the same config and master key.
    let env = [
        ("AURORA_MASTER_KEY", MASTER),
        ("AURORA_METRICS_LISTEN", listen.as_str()),
    ];
    let printed = common::usage_cli::usage_printed(&gw.config_path(), &env, "team-a", 2).await;
    assert_eq!(printed["models"]["gpt-4o-mini"]["requests"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usage_report_is_kept_from_caches_and_says_a_name_no_key_goes_by() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = usage_gateway(&mock, "", ("AURORA_MASTER_KEY", MASTER));
    let listen = gw.metrics_listen();
    let url = |key: &str| format!("http://{listen}/admin/usage?key={key}&period=month");
    let c = client();

    let read = c
        .get(url("team-a"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200, "a key left idle reports zeros");
    assert_eq!(read.headers()["cache-control"], "no-store");
    let unauthorized = c.get(url("team-a")).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);
    assert_eq!(unauthorized.headers()["www-authenticate"], "Bearer");
    let posted = c
        .post(url("team-a"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 405);
    assert_eq!(posted.headers()["allow"], "GET, HEAD");
    let head = c
        .head(url("team-a"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);

    // A name mistyped is not shown as a key that used nothing.
    let mistyped = c
        .get(url("team-aa"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(mistyped.status(), 404);
    let said = mistyped.text().await.unwrap();
    assert!(said.contains("no key is named `team-aa`"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usage_command_finds_the_master_key_where_the_gateway_does() {
    let mock = MockUpstream::start(provider_like).await;
    let dir = common::scratch_dir();
    let key_file = dir.join("master_key");
    std::fs::write(&key_file, format!("{MASTER}\n")).unwrap();
    let key_file = key_file.to_str().unwrap().to_string();
    let gw = usage_gateway(&mock, "", ("AURORA_MASTER_KEY_FILE", &key_file));
    assert_eq!(
        post(&gw, TEAM_KEY, "/v1/chat/completions", CHAT)
            .await
            .status(),
        200
    );
    let listen = gw.metrics_listen();
    // The key only in the file the gateway was given, as its service unit passes it.
    let env = [
        ("AURORA_MASTER_KEY_FILE", key_file.as_str()),
        ("AURORA_METRICS_LISTEN", listen.as_str()),
    ];
    let printed = common::usage_cli::usage_printed(&gw.config_path(), &env, "team-a", 1).await;
    assert_eq!(printed["total"]["requests"], 1, "{printed}");

    // Or only in the config, as `server.master_key_file`.
    let config = dir.join("cli.yaml");
    std::fs::write(
        &config,
        format!("server:\n  master_key_file: {key_file}\n  metrics_listen: {listen}\n"),
    )
    .unwrap();
    let printed = common::usage_cli::usage_printed(&config, &[], "team-a", 1).await;
    assert_eq!(printed["total"]["requests"], 1, "{printed}");
}

/// A Responses API response as OpenAI keeps it, under `id`, run in the background or
/// not: the recorded answer, 17 input and 5 output tokens.
fn stored_response(id: &str, background: bool) -> Reply {
    let body = fixture("openai/responses.json")
        .replace(
            "resp_0d8b81b7c805508d0069a31431b68c8194af45c94a6952706b",
            id,
        )
        .replace(
            r#""background": false"#,
            &format!(r#""background": {background}"#),
        );
    Reply::json(200, body)
}

/// A `DELETE` of `path` by the team key.
async fn delete(gw: &Gateway, path: &str) -> reqwest::Response {
    client()
        .delete(gw.url(path))
        .bearer_auth(TEAM_KEY)
        .send()
        .await
        .unwrap()
}

async fn get(gw: &Gateway, key: &str, path: &str) -> reqwest::Response {
    client()
        .get(gw.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_read_again_is_not_charged_again_and_a_background_one_is_charged_once() {
    let mock = MockUpstream::start(|rec| match (rec.method.as_str(), rec.uri.as_str()) {
        ("POST", "/v1/responses") | ("GET", "/v1/responses/resp_made") => {
            stored_response("resp_made", false)
        }
        // Started with `background: true`, whose answer said only "queued": its
        // usage comes with the first read that finds it complete.
        ("GET", "/v1/responses/resp_bg") => stored_response("resp_bg", true),
        _ => provider_like(rec),
    })
    .await;
    // Each answer reports 22 tokens.
    let gw = gateway(&mock, "", "{budget: {tokens: 60, period: month}}");
    let call = r#"{"model":"gpt-4o-mini","input":"hi"}"#;
    assert_eq!(
        post(&gw, TEAM_KEY, "/p/openai/responses", call)
            .await
            .status(),
        200
    );
    for path in [
        "/p/openai/responses/resp_made",
        "/p/openai/responses/resp_bg",
    ] {
        for _ in 0..3 {
            let resp = get(&gw, TEAM_KEY, path).await;
            assert_eq!(resp.status(), 200, "{path}");
            resp.bytes().await.unwrap();
        }
    }
    // The call, and the background response once: 44 of 60. Charged for every read,
    // the key would be refused here; its reads not charged at all, it would not be
    // after the next call.
    gw.wait_for_log("path=/p/openai/responses/resp_bg", 3).await;
    assert_eq!(
        post(&gw, TEAM_KEY, "/p/openai/responses", call)
            .await
            .status(),
        200
    );
    gw.wait_for_log("path=/p/openai/responses ", 2).await;
    assert_budget_spent(post(&gw, TEAM_KEY, "/p/openai/responses", call).await).await;
    // Only the reads that charged say what they were charged.
    let log = gw.log();
    let charged_reads = log
        .lines()
        .filter(|l| l.contains("method=GET") && l.contains("tokens_input=17"))
        .count();
    assert_eq!(charged_reads, 1, "{log}");
}

/// The background response `resp_bg` as OpenAI answers the call that starts it, and
/// its polls while at work: no usage yet.
fn background_under_way(status: &str) -> Reply {
    let body = fixture("openai/responses.json")
        .replace(
            "resp_0d8b81b7c805508d0069a31431b68c8194af45c94a6952706b",
            "resp_bg",
        )
        .replace(r#""background": false"#, r#""background": true"#)
        .replacen(
            r#""status": "completed""#,
            &format!(r#""status": "{status}""#),
            1,
        );
    let usage_at = body.find(r#""usage": {"#).unwrap();
    let usage_end = usage_at + body[usage_at..].find("\n  }").unwrap() + 4;
    Reply::json(
        200,
        format!("{}\"usage\": null{}", &body[..usage_at], &body[usage_end..]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_work_never_read_back_is_charged_by_the_gateways_own_poll() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let response_polls = AtomicUsize::new(0);
    let batch_polls = AtomicUsize::new(0);
    let mock = MockUpstream::start(move |rec| match (rec.method.as_str(), rec.uri.as_str()) {
        ("POST", "/v1/responses") => background_under_way("queued"),
        // At work for two polls, then ended: 17 input and 5 output tokens.
        ("GET", "/v1/responses/resp_bg") if response_polls.fetch_add(1, Ordering::SeqCst) < 2 => {
            background_under_way("in_progress")
        }
        ("GET", "/v1/responses/resp_bg") => stored_response("resp_bg", true),
        ("POST", "/v1/batches") => batch_object("batch_new", "validating", "file-new"),
        // 1,000 input and 200 output tokens once it has ended.
        ("GET", "/v1/batches/batch_new") if batch_polls.fetch_add(1, Ordering::SeqCst) < 1 => {
            batch_object("batch_new", "in_progress", "file-new")
        }
        ("GET", "/v1/batches/batch_new") => batch_object("batch_new", "completed", "file-new"),
        _ => provider_like(rec),
    })
    .await;
    let (gw, report_url) = reporting_gateway(
        &mock,
        "limits:\n  poll_background: 100ms\n",
        "{budget: {tokens: 1230, period: month}}",
    );
    let started = [
        (
            "/p/openai/responses",
            r#"{"model":"gpt-4o-mini","input":"hi","background":true}"#,
        ),
        (
            "/p/openai/batches",
            r#"{"input_file_id":"file-in","endpoint":"/v1/chat/completions","completion_window":"24h"}"#,
        ),
    ];
    for (path, body) in started {
        let resp = post(&gw, TEAM_KEY, path, body).await;
        assert_eq!(resp.status(), 200, "{path}");
        resp.bytes().await.unwrap();
    }
    // Both watched, as the metrics say, until their polls settle them.
    let listen = gw.metrics_listen();
    let watched = |scrape: &str| {
        scrape
            .lines()
            .find_map(|l| l.strip_prefix("aurora_background_work_watched "))
            .map(str::to_string)
    };
    let (mut both, mut settled) = (false, false);
    for _ in 0..500 {
        let now = watched(&common::scrape(&listen).await);
        both |= now.as_deref() == Some("2");
        settled = both && now.as_deref() == Some("0");
        if settled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(both && settled, "watched: two, then none");
    // The client never reads either back; the gateway's poll finds both ended and
    // charges them: 1,017 input and 205 output tokens, the batch's at its price.
    let report = report_with_output(&report_url, 205).await;
    assert_eq!(report["total"]["tokens"]["input"], 1017, "{report}");
    assert_eq!(report["total"]["tokens"]["output"], 205, "{report}");
    // Polled with the provider key that started the work, never the client's.
    let polls: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert_eq!(
        polls.len(),
        5,
        "two at work, then ended; one at work, then ended"
    );
    for poll in &polls {
        assert_eq!(poll.header("authorization"), Some("Bearer sk-oai-limits"));
    }
    // A read of the response now is charged nothing more.
    let resp = get(&gw, TEAM_KEY, "/p/openai/responses/resp_bg").await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let read = access_line(&gw, "/p/openai/responses/resp_bg").await;
    assert!(!read.contains("tokens_input="), "{read}");
    // 1,222 of the 1,230 tokens spent: one more call passes, the next is refused.
    assert_eq!(
        post(&gw, TEAM_KEY, "/v1/chat/completions", CHAT)
            .await
            .status(),
        200
    );
    gw.wait_for_log("path=/v1/chat/completions ", 1).await;
    assert_budget_spent(post(&gw, TEAM_KEY, "/v1/chat/completions", CHAT).await).await;
    // Polled no more once charged.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let gets = mock.requests().iter().filter(|r| r.method == "GET").count();
    assert_eq!(gets, 6, "the five polls and the client's read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_work_is_charged_before_its_delete_and_a_stream_left_not_twice() {
    use std::sync::atomic::{AtomicBool, Ordering};
    const STREAMED: &str = "resp_0b7e83747d2b84440069a31433ab1881998d8036ef3db1ef03";
    let deleted = AtomicBool::new(false);
    let stream = fixture("openai/responses_stream.txt")
        .replace(r#""background":false"#, r#""background":true"#)
        .split_inclusive("\n\n")
        .map(|e| bytes::Bytes::from(e.to_string()))
        .collect::<Vec<_>>();
    let mock = MockUpstream::start(move |rec| match (rec.method.as_str(), rec.uri.as_str()) {
        ("POST", "/v1/responses") if String::from_utf8_lossy(&rec.body).contains("stream") => {
            Reply::paced_sse(stream.clone(), Duration::from_millis(150))
        }
        ("POST", "/v1/responses") => background_under_way("queued"),
        ("DELETE", "/v1/responses/resp_bg") => {
            deleted.store(true, Ordering::SeqCst);
            Reply::json(
                200,
                r#"{"id":"resp_bg","object":"response.deleted","deleted":true}"#,
            )
        }
        ("GET", "/v1/responses/resp_bg") if deleted.load(Ordering::SeqCst) => Reply::json(
            404,
            r#"{"error":{"message":"not found","type":"invalid_request_error"}}"#,
        ),
        // Both ended once read: 17 input and 5 output tokens each.
        ("GET", "/v1/responses/resp_bg") => stored_response("resp_bg", true),
        ("GET", path) if path == format!("/v1/responses/{STREAMED}") => {
            stored_response(STREAMED, true)
        }
        _ => provider_like(rec),
    })
    .await;
    let (gw, report_url) = reporting_gateway(
        &mock,
        "limits:\n  poll_background: 1s\n",
        "{budget: {tokens: 100000, period: month}}",
    );
    // A caller's organization and project do not scope the gateway's key (see
    // `passthrough::a_caller_picks_no_organization_or_project_of_the_gateways_key`):
    // the start goes without them, and so do its polls.
    let resp = client()
        .post(gw.url("/p/openai/responses"))
        .bearer_auth(TEAM_KEY)
        .header("content-type", "application/json")
        .header("openai-organization", "org-test")
        .header("openai-project", "proj-test")
        .body(r#"{"model":"gpt-4o-mini","input":"hi","background":true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    // Deleted before the first poll: read, and charged, before the delete goes on.
    let resp = delete(&gw, "/p/openai/responses/resp_bg").await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let calls: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| r.uri == "/v1/responses/resp_bg")
        .collect();
    assert_eq!(
        calls.iter().map(|r| r.method.as_str()).collect::<Vec<_>>(),
        ["GET", "DELETE"]
    );
    let start = mock
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.uri == "/v1/responses")
        .unwrap();
    for sent in [&start, &calls[0]] {
        assert_eq!(sent.header("openai-organization"), None);
        assert_eq!(sent.header("openai-project"), None);
    }
    // A background stream the client leaves after its first text: charged an estimate
    // then, and the rest of its usage once the poll finds it ended.
    let mut resp = client()
        .post(gw.url("/p/openai/responses"))
        .bearer_auth(TEAM_KEY)
        .header("content-type", "application/json")
        .body(r#"{"model":"gpt-4o-mini","input":"hi","background":true,"stream":true}"#)
        .send()
        .await
        .unwrap();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("output_text.delta") {
        seen.extend_from_slice(&resp.chunk().await.unwrap().unwrap());
    }
    drop(resp);
    let left = access_line(&gw, "/p/openai/responses").await;
    let streamed_polled = format!("/v1/responses/{STREAMED}");
    for _ in 0..200 {
        if mock.requests().iter().any(|r| r.uri == streamed_polled) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = common::get_json(&report_url, MASTER).await;
    // Each once, whole: 34 input and 10 output tokens, however much of the stream's
    // was charged when the client left.
    assert_eq!(report["total"]["tokens"]["input"], 34, "{report} {left}");
    assert_eq!(report["total"]["tokens"]["output"], 10, "{report} {left}");
}

/// Anthropic's message batch `msgbatch_poll` in `status`.
fn message_batch(status: &str) -> Reply {
    Reply::json(
        200,
        format!(
            r#"{{"id":"msgbatch_poll","type":"message_batch","processing_status":"{status}","request_counts":{{"processing":0,"succeeded":2,"errored":0,"canceled":0,"expired":0}},"ended_at":null,"created_at":"2026-12-06T09:00:00Z","expires_at":"2026-12-07T09:00:00Z","cancel_initiated_at":null,"results_url":null}}"#
        ),
    )
}

/// Reads `path` at `gw` as the team, and checks its access line charged nothing.
async fn read_again_charges_nothing(gw: &Gateway, path: &str) {
    let resp = get(gw, TEAM_KEY, path).await;
    assert_eq!(resp.status(), 200, "{path}");
    resp.bytes().await.unwrap();
    let read = access_line(gw, path).await;
    assert!(!read.contains("tokens_input="), "{read}");
}

/// The paths `mock` was asked to `GET`, in order.
fn get_uris(mock: &MockUpstream) -> Vec<String> {
    mock.requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.uri)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_batch_never_read_back_is_charged_from_its_results() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let polls = AtomicUsize::new(0);
    let results = [
        result_line("a", "claude-sonnet-4-5", 600),
        result_line("b", "claude-haiku-4-5", 400),
    ]
    .join("\n");
    let mock = MockUpstream::start(move |rec| match (rec.method.as_str(), rec.uri.as_str()) {
        ("POST", "/v1/messages/batches") => message_batch("in_progress"),
        ("GET", "/v1/messages/batches/msgbatch_poll")
            if polls.fetch_add(1, Ordering::SeqCst) < 1 =>
        {
            message_batch("in_progress")
        }
        ("GET", "/v1/messages/batches/msgbatch_poll") => message_batch("ended"),
        ("GET", "/v1/messages/batches/msgbatch_poll/results") => results_reply(&results),
        _ => provider_like(rec),
    })
    .await;
    let (gw, report_url) = reporting_gateway(&mock, "limits:\n  poll_background: 100ms\nmodels:\n  prices:\n    claude-sonnet-4-5: {input: 3.0, output: 15.0}\n    claude-haiku-4-5: {input: 1.0, output: 5.0}\n", "{budget: {usd: 10, period: month}}");
    let create = r#"{"requests":[{"custom_id":"a","params":{"model":"claude-sonnet-4-5","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}}]}"#;
    let resp = post(&gw, TEAM_KEY, "/p/anthropic/v1/messages/batches", create).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let report = report_with_output(&report_url, 200).await;
    // Its two lines, each model at its own price, halved as batches are billed:
    // (600 × $3 + 100 × $15 + 400 × $1 + 100 × $5) / 1M / 2.
    assert_eq!(report["total"]["tokens"]["input"], 1000, "{report}");
    assert_eq!(report["total"]["tokens"]["output"], 200, "{report}");
    let cost = report["total"]["cost_usd"].as_f64().unwrap();
    assert!((cost - 0.0021).abs() < 1e-9, "{report}");
    // Read by the client after: charged nothing more.
    read_again_charges_nothing(
        &gw,
        "/p/anthropic/v1/messages/batches/msgbatch_poll/results",
    )
    .await;
    assert_eq!(
        get_uris(&mock),
        [
            "/v1/messages/batches/msgbatch_poll",
            "/v1/messages/batches/msgbatch_poll",
            "/v1/messages/batches/msgbatch_poll/results",
            "/v1/messages/batches/msgbatch_poll/results",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_object_reports_no_usage_is_charged_from_its_output_file() {
    // OpenAI's batches made before September 2025, and other providers' OpenAI-style
    // batches, say what they used only in their output file, a line per request:
    // the poll reads it when nobody does.
    use std::sync::atomic::{AtomicUsize, Ordering};
    let polls = AtomicUsize::new(0);
    let object = |status: &str, file: &str| {
        Reply::json(
            200,
            format!(
                r#"{{"id":"batch_unreported","object":"batch","endpoint":"/v1/chat/completions","input_file_id":"file-in","completion_window":"24h","status":"{status}","output_file_id":{file},"request_counts":{{"total":2,"completed":2,"failed":0}}}}"#
            ),
        )
    };
    let mock = MockUpstream::start(move |rec| match (rec.method.as_str(), rec.uri.as_str()) {
        ("POST", "/v1/batches") => object("validating", "null"),
        ("GET", "/v1/batches/batch_unreported") if polls.fetch_add(1, Ordering::SeqCst) < 1 => {
            object("in_progress", "null")
        }
        ("GET", "/v1/batches/batch_unreported") => object("completed", r#""file-out-2""#),
        ("GET", "/v1/files/file-out-2/content") => batch_output_file(),
        _ => provider_like(rec),
    })
    .await;
    let (gw, report_url) = reporting_gateway(
        &mock,
        "limits:\n  poll_background: 100ms\n",
        "{budget: {tokens: 100000, period: month}}",
    );
    let create = r#"{"input_file_id":"file-in","endpoint":"/v1/chat/completions","completion_window":"24h"}"#;
    let resp = post(&gw, TEAM_KEY, "/p/openai/batches", create).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let report = report_with_output(&report_url, 200).await;
    assert_eq!(report["total"]["tokens"]["input"], 1000, "{report}");
    assert_eq!(report["total"]["tokens"]["output"], 200, "{report}");
    // Read by the client after: charged nothing more.
    read_again_charges_nothing(&gw, "/p/openai/files/file-out-2/content").await;
    assert_eq!(
        get_uris(&mock),
        [
            "/v1/batches/batch_unreported",
            "/v1/batches/batch_unreported",
            "/v1/files/file-out-2/content",
            "/v1/files/file-out-2/content",
        ]
    );
}

/// A Gemini batch's operation: `batches/{id}` in `state`, `output` in its metadata.
fn gemini_batch(id: &str, state: &str, output: &str) -> Reply {
    Reply::json(
        200,
        format!(
            r#"{{"name":"batches/{id}","metadata":{{"@type":"type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch","model":"models/gemini-2.5-flash","displayName":"d","createTime":"2026-12-06T09:00:00Z","batchStats":{{"requestCount":"2"}},"state":"{state}","name":"batches/{id}"{output}}}}}"#
        ),
    )
}

/// A `generateContent` answer of `input` and `output` tokens, as a batch holds it.
fn gemini_response(input: u64, output: u64) -> String {
    format!(
        r#"{{"response":{{"candidates":[{{"content":{{"parts":[{{"text":"Hi"}}],"role":"model"}},"finishReason":"STOP","index":0}}],"usageMetadata":{{"promptTokenCount":{input},"candidatesTokenCount":{output},"totalTokenCount":{}}},"modelVersion":"gemini-2.5-flash"}},"metadata":{{"key":"r{input}"}}}}"#,
        input + output
    )
}

/// A Gemini batch's output (in its operation's metadata) inlining `responses`.
fn inlined_output(responses: &[String]) -> String {
    format!(
        r#","output":{{"inlinedResponses":{{"inlinedResponses":[{}]}}}}"#,
        responses.join(",")
    )
}

/// A gateway whose `gemini-own` provider (with `providers` around it: see
/// [`own_api_providers`]) is polled after `poll`, the team's tokens budgeted, and its
/// usage report's address.
fn gemini_batch_gateway(mock: &MockUpstream, providers: &str, poll: &str) -> (Gateway, String) {
    let extra = format!("{providers}limits:\n  poll_background: {poll}\n");
    reporting_gateway(mock, &extra, "{budget: {tokens: 1000000, period: month}}")
}

/// Makes a Gemini batch at `gemini-own` as the team.
async fn make_gemini_batch(gw: &Gateway) {
    let create = r#"{"batch":{"displayName":"d","inputConfig":{"requests":{"requests":[]}}}}"#;
    let path = "/p/gemini-own/models/gemini-2.5-flash:batchGenerateContent";
    let resp = post(gw, TEAM_KEY, path, create).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gemini_batch_never_read_back_is_charged_from_its_inlined_responses_or_its_file() {
    // Gemini's batches (`models/{model}:batchGenerateContent`) report what they used
    // only in their responses, inlined in the batch's operation once it has ended or
    // in a file it names: the poll reads them when nobody does, at half price.
    use std::sync::atomic::{AtomicUsize, Ordering};
    let polls = AtomicUsize::new(0);
    let inlined = format!(
        r#","output":{{"inlinedResponses":{{"inlinedResponses":[{},{}]}}}}"#,
        gemini_response(100, 10),
        gemini_response(200, 20)
    );
    let file_lines = format!(
        "{}\n{}\n",
        r#"{"key":"a","response":{"candidates":[],"usageMetadata":{"promptTokenCount":600,"candidatesTokenCount":60},"modelVersion":"gemini-2.5-flash"}}"#,
        r#"{"key":"b","response":{"candidates":[],"usageMetadata":{"promptTokenCount":400,"candidatesTokenCount":40},"modelVersion":"gemini-2.5-flash"}}"#
    );
    let mock = MockUpstream::start(move |rec| {
        let path = rec.uri.split('?').next().unwrap_or_default();
        match (rec.method.as_str(), path) {
            ("POST", "/v1beta/models/gemini-2.5-flash:batchGenerateContent")
                if rec.body.windows(6).any(|w| w == b"inline") =>
            {
                gemini_batch("gb-inline", "BATCH_STATE_PENDING", "")
            }
            ("POST", "/v1beta/models/gemini-2.5-flash:batchGenerateContent") => {
                gemini_batch("gb-file", "BATCH_STATE_PENDING", "")
            }
            ("GET", "/v1beta/batches/gb-inline") if polls.fetch_add(1, Ordering::SeqCst) < 1 => {
                gemini_batch("gb-inline", "BATCH_STATE_RUNNING", "")
            }
            ("GET", "/v1beta/batches/gb-inline") => {
                gemini_batch("gb-inline", "BATCH_STATE_SUCCEEDED", &inlined)
            }
            ("GET", "/v1beta/batches/gb-file") => gemini_batch(
                "gb-file",
                "BATCH_STATE_SUCCEEDED",
                r#","output":{"responsesFile":"files/batch-gb-file"}"#,
            ),
            ("GET", "/v1beta/files/batch-gb-file:download") => results_reply(&file_lines),
            _ => Reply::json(404, r#"{"error":{"code":404,"status":"NOT_FOUND"}}"#),
        }
    })
    .await;
    let extra = format!(
        "{}limits:\n  poll_background: 100ms\nmodels:\n  prices:\n    gemini-2.5-flash: {{input: 1.0, output: 10.0}}\n",
        own_api_providers(&mock)
    );
    let (gw, report_url) = reporting_gateway(&mock, &extra, "{budget: {usd: 10, period: month}}");
    for name in ["inline", "file"] {
        let create = format!(
            r#"{{"batch":{{"displayName":"{name}","inputConfig":{{"requests":{{"requests":[{{"request":{{"contents":[{{"parts":[{{"text":"hi"}}]}}]}}}}]}}}}}}}}"#
        );
        let path = "/p/gemini-own/models/gemini-2.5-flash:batchGenerateContent";
        let resp = post(&gw, TEAM_KEY, path, &create).await;
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    let report = report_with_output(&report_url, 130).await;
    assert_eq!(report["total"]["tokens"]["input"], 1300, "{report}");
    assert_eq!(report["total"]["tokens"]["output"], 130, "{report}");
    // (1,300 × $1 + 130 × $10) / 1M, halved as batches are billed.
    let cost = report["total"]["cost_usd"].as_f64().unwrap();
    assert!((cost - 0.0013).abs() < 1e-9, "{report}");
    // Read by the client after: charged nothing more.
    read_again_charges_nothing(&gw, "/p/gemini-own/batches/gb-inline").await;
    read_again_charges_nothing(&gw, "/p/gemini-own/files/batch-gb-file:download").await;
    let report = common::get_json(&report_url, MASTER).await;
    assert_eq!(report["total"]["tokens"]["output"], 130, "{report}");
    let file_reads = get_uris(&mock)
        .iter()
        .filter(|uri| uri.starts_with("/v1beta/files/batch-gb-file:download"))
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(
        file_reads,
        [
            "/v1beta/files/batch-gb-file:download?alt=media",
            "/v1beta/files/batch-gb-file:download"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_output_read_or_gone_before_the_poll_is_not_read_again() {
    // One batch's output the client read before the poll found the batch ended: not
    // downloaded again. Another's is gone (404): the batch is let go, not polled for
    // two days.
    use std::sync::atomic::{AtomicUsize, Ordering};
    let polls = AtomicUsize::new(0);
    let object = |id: &str, status: &str, file: &str| {
        Reply::json(
            200,
            format!(
                r#"{{"id":"{id}","object":"batch","endpoint":"/v1/chat/completions","status":"{status}","output_file_id":{file}}}"#
            ),
        )
    };
    let mock = MockUpstream::start(move |rec| match (rec.method.as_str(), rec.uri.as_str()) {
        ("POST", "/v1/batches") if rec.body.windows(4).any(|w| w == b"read") => {
            object("batch_read", "validating", "null")
        }
        ("POST", "/v1/batches") => object("batch_gone", "validating", "null"),
        ("GET", "/v1/batches/batch_read") if polls.fetch_add(1, Ordering::SeqCst) < 2 => {
            object("batch_read", "in_progress", "null")
        }
        ("GET", "/v1/batches/batch_read") => object("batch_read", "completed", r#""file-read""#),
        ("GET", "/v1/batches/batch_gone") => object("batch_gone", "completed", r#""file-gone""#),
        ("GET", "/v1/files/file-read/content") => batch_output_file(),
        ("GET", "/v1/files/file-gone/content") => Reply::json(
            404,
            r#"{"error":{"message":"No such File object: file-gone","type":"invalid_request_error"}}"#,
        ),
        _ => provider_like(rec),
    })
    .await;
    let (gw, report_url) = reporting_gateway(
        &mock,
        "limits:\n  poll_background: 100ms\n",
        "{budget: {tokens: 100000, period: month}}",
    );
    for metadata in ["read", "gone"] {
        let create = format!(
            r#"{{"input_file_id":"file-in","endpoint":"/v1/chat/completions","completion_window":"24h","metadata":{{"k":"{metadata}"}}}}"#
        );
        let resp = post(&gw, TEAM_KEY, "/p/openai/batches", &create).await;
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    let resp = get(&gw, TEAM_KEY, "/p/openai/files/file-read/content").await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    // Charged once, by the client's read.
    let report = report_with_output(&report_url, 200).await;
    assert_eq!(report["total"]["tokens"]["input"], 1000, "{report}");
    let gets = |uri: &str| {
        mock.requests()
            .into_iter()
            .filter(|r| r.method == "GET" && r.uri == uri)
            .count()
    };
    for _ in 0..100 {
        if gets("/v1/batches/batch_read") >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Room for the polls that would follow: 100 ms, then 200, 400, 800.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(gets("/v1/batches/batch_read"), 3);
    assert_eq!(gets("/v1/files/file-read/content"), 1);
    assert_eq!(gets("/v1/batches/batch_gone"), 1);
    assert_eq!(gets("/v1/files/file-gone/content"), 1);
    let report = common::get_json(&report_url, MASTER).await;
    assert_eq!(report["total"]["tokens"]["output"], 200, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_work_whose_key_was_rotated_out_is_read_with_the_new_one() {
    // The provider key that started the work is replaced by a reload, and revoked:
    // the poll, refused with it, reads the work with the key configured now.
    use std::sync::atomic::{AtomicBool, Ordering};
    let revoked = std::sync::Arc::new(AtomicBool::new(false));
    let now_revoked = std::sync::Arc::clone(&revoked);
    let mock = MockUpstream::start(move |rec| {
        let bearer = rec
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        match (rec.method.as_str(), rec.uri.as_str()) {
            ("POST", "/v1/responses") => background_under_way("queued"),
            ("GET", "/v1/responses/resp_bg") if bearer == "Bearer sk-oai-new-0123456789" => {
                stored_response("resp_bg", true)
            }
            // At work while the old key is good.
            ("GET", "/v1/responses/resp_bg") if !now_revoked.load(Ordering::SeqCst) => {
                background_under_way("in_progress")
            }
            ("GET", "/v1/responses/resp_bg") => Reply::json(
                401,
                r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#,
            ),
            _ => provider_like(rec),
        }
    })
    .await;
    let yaml = |key: &str| {
        format!(
            "limits:\n  poll_background: 100ms\nproviders:\n  openai:\n    api_key: {key}\n    base_url: '{}'\nauth:\n  keys:\n    - name: team-a\n      sha256: \"{}\"\n      limits: {{budget: {{tokens: 1000, period: month}}}}\n",
            mock.url("/v1"),
            sha256_hex(TEAM_KEY),
        )
    };
    let gw = Gateway::start(
        &yaml("sk-oai-old-0123456789"),
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("AURORA_METRICS_LISTEN", common::PICKED_PORT),
        ],
    );
    let report_url = format!(
        "http://{}/admin/usage?key=team-a&period=month",
        gw.metrics_listen()
    );
    let resp = post(
        &gw,
        TEAM_KEY,
        "/p/openai/responses",
        r#"{"model":"gpt-4o-mini","input":"hi","background":true}"#,
    )
    .await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let polled = || {
        mock.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.uri == "/v1/responses/resp_bg")
            .count()
    };
    while polled() < 1 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.write_config(&yaml("sk-oai-new-0123456789"));
    gw.signal("HUP");
    gw.wait_for_log("config reloaded:", 1).await;
    revoked.store(true, Ordering::SeqCst);
    let report = report_with_output(&report_url, 5).await;
    assert_eq!(report["total"]["tokens"]["input"], 17, "{report}");
    assert_eq!(report["total"]["tokens"]["output"], 5, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_batch_deleted_before_its_poll_is_charged_first() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let deleted = AtomicBool::new(false);
    let results = result_line("a", "claude-sonnet-4-5", 600);
    let mock = MockUpstream::start(move |rec| match (rec.method.as_str(), rec.uri.as_str()) {
        ("POST", "/v1/messages/batches?beta=true") => message_batch("in_progress"),
        ("DELETE", "/v1/messages/batches/msgbatch_poll?beta=true") => {
            deleted.store(true, Ordering::SeqCst);
            Reply::json(
                200,
                r#"{"id":"msgbatch_poll","type":"message_batch_deleted"}"#,
            )
        }
        (_, _) if deleted.load(Ordering::SeqCst) => Reply::json(404, "{}"),
        ("GET", "/v1/messages/batches/msgbatch_poll?beta=true") => message_batch("ended"),
        ("GET", "/v1/messages/batches/msgbatch_poll/results?beta=true") => results_reply(&results),
        _ => Reply::json(404, "{}"),
    })
    .await;
    let (gw, report_url) = reporting_gateway(
        &mock,
        "limits:\n  poll_background: 1h\n",
        "{budget: {tokens: 100000, period: month}}",
    );
    // Made as Anthropic's SDK makes its beta batches, with a query.
    let create = r#"{"requests":[{"custom_id":"a","params":{"model":"claude-sonnet-4-5","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}}]}"#;
    let resp = post(
        &gw,
        TEAM_KEY,
        "/p/anthropic/v1/messages/batches?beta=true",
        create,
    )
    .await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    // Ended, and deleted by its client long before the first poll is due: read first.
    let resp = delete(
        &gw,
        "/p/anthropic/v1/messages/batches/msgbatch_poll?beta=true",
    )
    .await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let calls: Vec<_> = mock
        .requests()
        .into_iter()
        .skip(1)
        .map(|r| format!("{} {}", r.method, r.uri))
        .collect();
    assert_eq!(
        calls,
        [
            "GET /v1/messages/batches/msgbatch_poll?beta=true",
            "GET /v1/messages/batches/msgbatch_poll/results?beta=true",
            "DELETE /v1/messages/batches/msgbatch_poll?beta=true",
        ]
    );
    let report = common::get_json(&report_url, MASTER).await;
    assert_eq!(report["total"]["tokens"]["input"], 600, "{report}");
    assert_eq!(report["total"]["tokens"]["output"], 100, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gemini_batch_whose_operation_is_too_large_to_hold_is_charged_as_it_passes() {
    // Its responses, inlined twice over (its metadata's output and the operation's
    // result), make the operation 20 MiB: read as it passes, each response summed once.
    let text = "x".repeat(3 << 20);
    let big = |input: u64| {
        format!(
            r#"{{"response":{{"candidates":[{{"content":{{"parts":[{{"text":"{text}"}}],"role":"model"}},"finishReason":"STOP"}}],"usageMetadata":{{"promptTokenCount":{input},"candidatesTokenCount":50}},"modelVersion":"gemini-2.5-flash"}}}}"#
        )
    };
    let list = format!(
        r#"{{"inlinedResponses":[{},{},{}]}}"#,
        big(100),
        big(200),
        big(300)
    );
    let output = format!(r#","output":{{"inlinedResponses":{list}}}"#);
    let ended = gemini_batch("gb-big", "BATCH_STATE_SUCCEEDED", &output);
    let Reply::Full { body, .. } = ended else {
        panic!("a whole reply");
    };
    let mut operation = body.to_vec();
    operation.pop();
    operation.extend_from_slice(
        format!(r#","done":true,"response":{{"@type":"x","inlinedResponses":{list}}}}}"#)
            .as_bytes(),
    );
    let operation = bytes::Bytes::from(operation);
    assert!(operation.len() > 16 << 20);
    let mock = MockUpstream::start(move |rec| match (rec.method.as_str(), rec.uri.as_str()) {
        ("POST", "/v1beta/models/gemini-2.5-flash:batchGenerateContent") => {
            gemini_batch("gb-big", "BATCH_STATE_PENDING", "")
        }
        ("GET", "/v1beta/batches/gb-big") => Reply::Full {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: operation.clone(),
        },
        _ => Reply::json(404, "{}"),
    })
    .await;
    let (gw, report_url) = gemini_batch_gateway(&mock, &own_api_providers(&mock), "100ms");
    make_gemini_batch(&gw).await;
    let report = report_with_output(&report_url, 150).await;
    assert_eq!(report["total"]["tokens"]["input"], 600, "{report}");
    assert_eq!(report["total"]["tokens"]["output"], 150, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gemini_responses_file_read_at_another_project_does_not_charge_the_batch() {
    // Whoever uploads a file to Gemini names it: a file named as a batch's responses
    // file, in another project (another provider key), read there first, is charged
    // as that file, and the batch's own responses are charged all the same.
    use std::sync::atomic::{AtomicUsize, Ordering};
    let polls = AtomicUsize::new(0);
    let line = |input: u64| {
        format!(
            r#"{{"key":"a","response":{{"usageMetadata":{{"promptTokenCount":{input},"candidatesTokenCount":1}},"modelVersion":"gemini-2.5-flash"}}}}"#
        )
    };
    let (real, planted) = (line(900), line(1));
    let mock = MockUpstream::start(move |rec| {
        let path = rec.uri.split('?').next().unwrap_or_default();
        match (rec.method.as_str(), path) {
            ("POST", "/v1beta/models/gemini-2.5-flash:batchGenerateContent") => {
                gemini_batch("gb-f", "BATCH_STATE_PENDING", "")
            }
            ("GET", "/v1beta/batches/gb-f") if polls.fetch_add(1, Ordering::SeqCst) < 1 => {
                gemini_batch("gb-f", "BATCH_STATE_RUNNING", "")
            }
            ("GET", "/v1beta/batches/gb-f") => gemini_batch(
                "gb-f",
                "BATCH_STATE_SUCCEEDED",
                r#","output":{"responsesFile":"files/batch-out"}"#,
            ),
            ("GET", "/v1beta/files/batch-out:download") => results_reply(&real),
            ("GET", "/b/v1beta/files/batch-out:download") => results_reply(&planted),
            _ => Reply::json(404, "{}"),
        }
    })
    .await;
    let providers = format!(
        "{}  gemini-b:\n    type: gemini\n    api_key: gem-b-key\n    base_url: '{}'\n",
        own_api_providers(&mock).replace(
            "[gemini-own, ollama-own]",
            "[gemini-own, ollama-own, gemini-b]"
        ),
        mock.url("/b/v1beta"),
    );
    let (gw, report_url) = gemini_batch_gateway(&mock, &providers, "500ms");
    make_gemini_batch(&gw).await;
    // Before the poll finds the batch ended, the other project's file is read.
    let resp = get(&gw, TEAM_KEY, "/p/gemini-b/files/batch-out:download").await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let report = report_with_output(&report_url, 2).await;
    assert_eq!(report["total"]["tokens"]["input"], 901, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gemini_responses_file_is_charged_once_whichever_of_its_providers_keys_reads_it() {
    // A provider's keys are used in turn, and all reach one project: the batch made
    // with one and its file read with the other are one output, charged once.
    use std::sync::atomic::{AtomicUsize, Ordering};
    let polls = AtomicUsize::new(0);
    let line = r#"{"key":"a","response":{"usageMetadata":{"promptTokenCount":900,"candidatesTokenCount":1},"modelVersion":"gemini-2.5-flash"}}"#;
    let mock = MockUpstream::start(move |rec| {
        let path = rec.uri.split('?').next().unwrap_or_default();
        match (rec.method.as_str(), path) {
            ("POST", "/v1beta/models/gemini-2.5-flash:batchGenerateContent") => {
                gemini_batch("gb-k", "BATCH_STATE_PENDING", "")
            }
            ("GET", "/v1beta/batches/gb-k") if polls.fetch_add(1, Ordering::SeqCst) < 1 => {
                gemini_batch("gb-k", "BATCH_STATE_RUNNING", "")
            }
            ("GET", "/v1beta/batches/gb-k") => gemini_batch(
                "gb-k",
                "BATCH_STATE_SUCCEEDED",
                r#","output":{"responsesFile":"files/batch-k"}"#,
            ),
            ("GET", "/v1beta/files/batch-k:download") => results_reply(line),
            _ => Reply::json(404, "{}"),
        }
    })
    .await;
    let providers = own_api_providers(&mock).replace(
        "api_key: gem-test-key",
        "api_keys: [gem-key-one, gem-key-two]",
    );
    let (gw, report_url) = gemini_batch_gateway(&mock, &providers, "500ms");
    make_gemini_batch(&gw).await;
    let resp = get(&gw, TEAM_KEY, "/p/gemini-own/files/batch-k:download").await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    // The poll finds the batch ended, and its file read already.
    for _ in 0..100 {
        if get_uris(&mock)
            .iter()
            .filter(|u| u.contains("batches/gb-k"))
            .count()
            >= 2
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let keys: Vec<_> = mock
        .requests()
        .iter()
        .filter_map(|r| r.header("x-goog-api-key").map(str::to_string))
        .collect();
    assert!(keys.iter().any(|k| k == "gem-key-one") && keys.iter().any(|k| k == "gem-key-two"));
    let report = common::get_json(&report_url, MASTER).await;
    assert_eq!(report["total"]["tokens"]["input"], 900, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gemini_batch_deleted_before_its_poll_is_charged_first() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let deleted = AtomicBool::new(false);
    let inlined = inlined_output(&[gemini_response(600, 100)]);
    let mock = MockUpstream::start(move |rec| match (rec.method.as_str(), rec.uri.as_str()) {
        ("POST", "/v1beta/models/gemini-2.5-flash:batchGenerateContent") => {
            gemini_batch("gb-del", "BATCH_STATE_PENDING", "")
        }
        ("DELETE", "/v1beta/batches/gb-del") => {
            deleted.store(true, Ordering::SeqCst);
            Reply::json(200, "{}")
        }
        (_, _) if deleted.load(Ordering::SeqCst) => Reply::json(404, "{}"),
        ("GET", "/v1beta/batches/gb-del") => {
            gemini_batch("gb-del", "BATCH_STATE_SUCCEEDED", &inlined)
        }
        _ => Reply::json(404, "{}"),
    })
    .await;
    let (gw, report_url) = gemini_batch_gateway(&mock, &own_api_providers(&mock), "1h");
    make_gemini_batch(&gw).await;
    // Ended, and deleted by its client long before the first poll is due: read first.
    let resp = delete(&gw, "/p/gemini-own/batches/gb-del").await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let calls: Vec<_> = mock
        .requests()
        .into_iter()
        .skip(1)
        .map(|r| format!("{} {}", r.method, r.uri))
        .collect();
    assert_eq!(
        calls,
        [
            "GET /v1beta/batches/gb-del",
            "DELETE /v1beta/batches/gb-del"
        ]
    );
    let report = common::get_json(&report_url, MASTER).await;
    assert_eq!(report["total"]["tokens"]["input"], 600, "{report}");
    assert_eq!(report["total"]["tokens"]["output"], 100, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gemini_batch_still_running_is_not_deleted_before_it_ends() {
    // Deleting a Gemini batch does not stop it (Google goes on, and bills it), and
    // its usage could never be read after: the delete waits for its end.
    use std::sync::atomic::{AtomicBool, Ordering};
    let ended = AtomicBool::new(false);
    let inlined = inlined_output(&[gemini_response(600, 100)]);
    let mock = MockUpstream::start(move |rec| match (rec.method.as_str(), rec.uri.as_str()) {
        ("POST", "/v1beta/models/gemini-2.5-flash:batchGenerateContent") => {
            gemini_batch("gb-run", "BATCH_STATE_PENDING", "")
        }
        ("POST", "/v1beta/batches/gb-run:cancel") => {
            ended.store(true, Ordering::SeqCst);
            Reply::json(200, "{}")
        }
        ("GET", "/v1beta/batches/gb-run") if ended.load(Ordering::SeqCst) => {
            gemini_batch("gb-run", "BATCH_STATE_CANCELLED", &inlined)
        }
        ("GET", "/v1beta/batches/gb-run") => gemini_batch("gb-run", "BATCH_STATE_RUNNING", ""),
        ("DELETE", "/v1beta/batches/gb-run") => Reply::json(200, "{}"),
        _ => Reply::json(404, "{}"),
    })
    .await;
    let (gw, report_url) = gemini_batch_gateway(&mock, &own_api_providers(&mock), "1h");
    make_gemini_batch(&gw).await;
    let resp = delete(&gw, "/p/gemini-own/batches/gb-run").await;
    assert_eq!(resp.status(), 409);
    let error: Value = resp.json().await.unwrap();
    assert_eq!(error["error"]["code"], "work_still_running", "{error}");
    assert!(!mock.requests().iter().any(|r| r.method == "DELETE"));
    // Cancelled, it has ended: charged before its delete, which goes on.
    let resp = post(&gw, TEAM_KEY, "/p/gemini-own/batches/gb-run:cancel", "{}").await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let resp = delete(&gw, "/p/gemini-own/batches/gb-run").await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let report = common::get_json(&report_url, MASTER).await;
    assert_eq!(report["total"]["tokens"]["input"], 600, "{report}");
    assert_eq!(report["total"]["tokens"]["output"], 100, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_whose_works_usage_cannot_be_read_is_refused_not_sent() {
    let mock = MockUpstream::start(|rec| match (rec.method.as_str(), rec.uri.as_str()) {
        ("POST", "/v1/responses") => background_under_way("queued"),
        // The provider cannot say how the response stands.
        ("GET", "/v1/responses/resp_bg") => Reply::json(503, r#"{"error":{"message":"busy"}}"#),
        ("DELETE", _) => Reply::json(200, r#"{"id":"resp_bg","deleted":true}"#),
        _ => provider_like(rec),
    })
    .await;
    let gw = gateway(
        &mock,
        "limits:\n  poll_background: 1h\n",
        "{budget: {tokens: 100000, period: month}}",
    );
    let resp = post(
        &gw,
        TEAM_KEY,
        "/p/openai/responses",
        r#"{"model":"gpt-4o-mini","input":"hi","background":true}"#,
    )
    .await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    gw.wait_for_log("path=/p/openai/responses ", 1).await;
    let resp = delete(&gw, "/p/openai/responses/resp_bg").await;
    // Deleted, it could never be read again: the client is asked to send it again.
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "5");
    assert!(mock.requests().iter().all(|r| r.method != "DELETE"));
}

/// OpenAI batch `id` in `status`, its output in `file`: 1,000 input and 200 output
/// tokens used so far.
fn batch_object(id: &str, status: &str, file: &str) -> Reply {
    Reply::json(
        200,
        format!(
            r#"{{"id":"{id}","object":"batch","endpoint":"/v1/chat/completions","model":"gpt-4o-mini","errors":null,"input_file_id":"file-in","completion_window":"24h","status":"{status}","output_file_id":"{file}","request_counts":{{"total":2,"completed":2,"failed":0}},"usage":{{"input_tokens":1000,"input_tokens_details":{{"cached_tokens":0}},"output_tokens":200,"output_tokens_details":{{"reasoning_tokens":0}},"total_tokens":1200}},"metadata":null}}"#
        ),
    )
}

/// An OpenAI batch's output file: two answers, 1,000 input and 200 output tokens.
fn batch_output_file() -> Reply {
    let line = |id: &str, prompt: u64| {
        format!(
            r#"{{"id":"batch_req_{id}","custom_id":"{id}","response":{{"status_code":200,"request_id":"req_{id}","body":{{"id":"chatcmpl-{id}","object":"chat.completion","model":"gpt-4o-mini","choices":[{{"index":0,"message":{{"role":"assistant","content":"Hi"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":{prompt},"completion_tokens":100,"total_tokens":{}}}}}}},"error":null}}"#,
            prompt + 100
        )
    };
    Reply::Full {
        status: 200,
        headers: vec![("content-type".into(), "application/octet-stream".into())],
        body: format!("{}\n{}\n", line("a", 600), line("b", 400)).into(),
    }
}

/// One line of an Anthropic message batch's results: request `id` answered by
/// `model` with `input` tokens in and 100 out.
fn result_line(id: &str, model: &str, input: u64) -> String {
    format!(
        r#"{{"custom_id":"{id}","result":{{"type":"succeeded","message":{{"id":"msg_{id}","type":"message","role":"assistant","model":"{model}","content":[{{"type":"text","text":"Bonjour"}}],"stop_reason":"end_turn","usage":{{"input_tokens":{input},"output_tokens":100}}}}}}}}"#
    )
}

/// A batch's `results`, whole, as Anthropic serves them.
fn results_reply(results: &str) -> Reply {
    Reply::Full {
        status: 200,
        headers: vec![("content-type".into(), "application/binary".into())],
        body: format!("{results}\n").into(),
    }
}

/// The access lines of `path`, in order.
fn lines_of(gw: &Gateway, path: &str) -> Vec<String> {
    let needle = format!("path={path} ");
    gw.log()
        .lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_charged_once_at_half_price_by_the_first_read_that_finds_it_ended() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let polls = AtomicUsize::new(0);
    let results = [
        result_line("a", "claude-sonnet-4-5", 600),
        r#"{"custom_id":"b","result":{"type":"errored","error":{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}}}"#.to_string(),
        result_line("c", "claude-haiku-4-5", 400),
    ]
    .join("\n");
    let mock = MockUpstream::start(move |rec| match rec.uri.as_str() {
        // The first poll finds the batch at work, the others ended.
        "/v1/batches/batch_abc" if polls.fetch_add(1, Ordering::SeqCst) == 0 => {
            batch_object("batch_abc", "in_progress", "file-out")
        }
        "/v1/batches/batch_abc" => batch_object("batch_abc", "completed", "file-out"),
        "/v1/batches/batch_two" => batch_object("batch_two", "completed", "file-two"),
        "/v1/files/file-out/content" | "/v1/files/file-two/content" => batch_output_file(),
        "/v1/messages/batches/msgbatch_1/results" => results_reply(&results),
        _ => provider_like(rec),
    })
    .await;
    let prices = "models:\n  prices:\n    gpt-4o-mini: {input: 1.0, output: 2.0}\n    claude-sonnet-4-5: {input: 3.0, output: 15.0}\n    claude-haiku-4-5: {input: 1.0, output: 5.0}\n";
    let gw = gateway(&mock, prices, "{budget: {usd: 1, period: month}}");
    for (path, reads) in [
        ("/p/openai/batches/batch_abc", 4),
        // Its output, charged with its object already.
        ("/p/openai/files/file-out/content", 1),
        // Another batch's output read first, then its object.
        ("/p/openai/files/file-two/content", 2),
        ("/p/openai/batches/batch_two", 1),
        ("/p/anthropic/v1/messages/batches/msgbatch_1/results", 3),
    ] {
        for _ in 0..reads {
            let resp = get(&gw, TEAM_KEY, path).await;
            assert_eq!(resp.status(), 200, "{path}");
            resp.bytes().await.unwrap();
        }
        gw.wait_for_log(&format!("path={path} "), reads).await;
    }
    // OpenAI's batch: the poll at work and the reads after the first that found it
    // ended are charged nothing; that one is charged its tokens at half price.
    let charged = |line: &String| line.contains("tokens_input=");
    // The reads of `path` charged, as `expected` says, each charged one its 1,000
    // input and 200 output tokens at half price.
    let assert_charged = |path: &str, expected: &[bool]| {
        let lines = lines_of(&gw, path);
        assert_eq!(
            lines.iter().map(charged).collect::<Vec<_>>(),
            expected,
            "{lines:?}"
        );
        for line in lines.iter().filter(|l| charged(l)) {
            assert!(
                line.contains("tokens_input=1000 tokens_output=200 "),
                "{line}"
            );
            assert!(line.contains("cost_usd=0.000700"), "{line}");
        }
    };
    assert_charged("/p/openai/batches/batch_abc", &[false, true, false, false]);
    // An OpenAI batch's output file is the same output as its object, whichever is
    // read first.
    assert_charged("/p/openai/files/file-out/content", &[false]);
    assert_charged("/p/openai/files/file-two/content", &[true, false]);
    assert!(!charged(&lines_of(&gw, "/p/openai/batches/batch_two")[0]));
    // Anthropic's results: the sum of their lines, once, at half price.
    let reads = lines_of(&gw, "/p/anthropic/v1/messages/batches/msgbatch_1/results");
    assert_eq!(
        reads.iter().map(charged).collect::<Vec<_>>(),
        [true, false, false],
        "{reads:?}"
    );
    assert!(
        reads[0].contains("tokens_input=1000 tokens_output=200 "),
        "{}",
        reads[0]
    );
    // A batch may mix models, each priced as its own: (600 × $3 + 100 × $15) / 1M
    // for Sonnet's line, (400 × $1 + 100 × $5) / 1M for Haiku's, halved.
    assert!(reads[0].contains("cost_usd=0.002100"), "{}", reads[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_results_are_asked_for_whole_and_a_range_is_charged_as_a_part() {
    let line = result_line("a", "claude-sonnet-4-5", 600);
    let range = format!("{line}\n{}", &line[..40]);
    let mock = MockUpstream::start(move |rec| match rec.uri.as_str() {
        // A provider that answers a range whatever it was asked.
        "/v1/messages/batches/msgbatch_r/results" => Reply::Full {
            status: 206,
            headers: vec![
                ("content-type".into(), "application/binary".into()),
                (
                    "content-range".into(),
                    format!("bytes 0-{}/9999", range.len() - 1),
                ),
            ],
            body: range.clone().into(),
        },
        _ => provider_like(rec),
    })
    .await;
    let gw = gateway(&mock, "", "{budget: {tokens: 100000, period: month}}");
    let path = "/p/anthropic/v1/messages/batches/msgbatch_r/results";
    for _ in 0..2 {
        let resp = client()
            .get(gw.url(path))
            .bearer_auth(TEAM_KEY)
            .header("range", "bytes=0-200")
            .header("if-range", "\"etag\"")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 206);
        resp.bytes().await.unwrap();
        let asked = mock.last();
        assert_eq!(
            asked.header("range"),
            None,
            "the results are asked for whole"
        );
        assert_eq!(asked.header("if-range"), None);
    }
    gw.wait_for_log(&format!("path={path} "), 2).await;
    // Each range is charged the line it holds whole, and none is taken for the whole.
    let reads = lines_of(&gw, path);
    for read in &reads {
        assert!(
            read.contains("tokens_input=600 tokens_output=100 "),
            "{read}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_mixing_models_is_reported_under_each_model() {
    let results = [
        result_line("a", "claude-sonnet-4-5", 600),
        result_line("b", "claude-haiku-4-5", 400),
        result_line("c", "claude-sonnet-4-5", 50),
    ]
    .join("\n");
    let mock = MockUpstream::start(move |rec| match rec.uri.as_str() {
        "/v1/messages/batches/msgbatch_m/results" => results_reply(&results),
        _ => provider_like(rec),
    })
    .await;
    let base = mock.url("/v1");
    let yaml = format!(
        "models:\n  prices:\n    claude-sonnet-4-5: {{input: 3.0, output: 15.0}}\n    claude-haiku-4-5: {{input: 1.0, output: 5.0}}\nauth:\n  keys:\n    - name: team-a\n      sha256: \"{}\"\n",
        sha256_hex(TEAM_KEY)
    );
    let gw = Gateway::start(
        &yaml,
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("ANTHROPIC_API_KEY", "sk-ant-limits"),
            ("ANTHROPIC_BASE_URL", base.as_str()),
            ("AURORA_METRICS_LISTEN", common::PICKED_PORT),
        ],
    );
    let listen = gw.metrics_listen();
    let path = "/p/anthropic/v1/messages/batches/msgbatch_m/results";
    let resp = get(&gw, TEAM_KEY, path).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    gw.wait_for_log(&format!("path={path} "), 1).await;
    let url = format!("http://{listen}/admin/usage?key=team-a&period=month");
    let report = common::get_json(&url, MASTER).await;
    let (sonnet, haiku) = (
        &report["models"]["claude-sonnet-4-5"],
        &report["models"]["claude-haiku-4-5"],
    );
    assert_eq!(sonnet["tokens"]["input"], 650, "{report}");
    assert_eq!(sonnet["tokens"]["output"], 200, "{report}");
    assert_eq!(haiku["tokens"]["input"], 400, "{report}");
    assert_eq!(report["total"]["requests"], 1, "one read: {report}");
    // Each at half its own price.
    let cost = |v: &Value| v["cost_usd"].as_f64().unwrap();
    assert!(
        (cost(sonnet) - (650.0 * 3.0 + 200.0 * 15.0) / 2e6).abs() < 1e-9,
        "{report}"
    );
    assert!(
        (cost(haiku) - (400.0 * 1.0 + 100.0 * 5.0) / 2e6).abs() < 1e-9,
        "{report}"
    );
    // The token metrics likewise.
    let scrape = common::scrape(&listen).await;
    for (model, input) in [("claude-haiku-4-5", 400), ("claude-sonnet-4-5", 650)] {
        let series = format!(
            r#"aurora_tokens_total{{key="team-a",kind="input",model="{model}",provider="anthropic"}} {input}"#
        );
        assert!(scrape.contains(&series), "{series}\n{scrape}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_with_limits_cannot_mint_a_credential_that_escapes_them() {
    // A Realtime client secret is used at the provider directly: every call made with
    // it would be free of the key's limits and budget.
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway(&mock, "", "{budget: {usd: 5, period: month}}");
    let mint = |key: &'static str, endpoint: &'static str| {
        client()
            .post(gw.url(&format!("/p/openai/{endpoint}")))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(r#"{"session":{"type":"realtime","model":"gpt-realtime"}}"#)
            .send()
    };
    for endpoint in [
        "realtime/client_secrets",
        "v1/realtime/sessions",
        "chatkit/sessions",
    ] {
        let refused = mint(TEAM_KEY, endpoint).await.unwrap();
        assert_eq!(refused.status(), 403, "{endpoint}");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_allowed", "{body}");
    }
    assert!(mock.requests().is_empty(), "nothing was minted");
    // A caller held to no limits mints as the provider lets it.
    assert_eq!(
        mint(MASTER, "realtime/client_secrets")
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        mint(OTHER_KEY, "realtime/client_secrets")
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budgeted_key_with_its_own_provider_key_has_any_work_done() {
    // `!PASSTHRU`: the provider bills the caller's own key, not the gateway's, so the
    // gateway's limits on what it cannot meter do not stand in the way.
    let mock = MockUpstream::start(provider_like).await;
    let own = format!(
        "providers:\n  byok:\n    type: openai\n    api_key: \"!PASSTHRU\"\n    base_url: {}\n",
        mock.url("/v1")
    );
    let gw = gateway(&mock, &own, "{budget: {usd: 5, period: month}}");
    let send = |provider: &str, key: Option<&'static str>| {
        let mut request = client()
            .post(gw.url(&format!("/p/{provider}/images/generations")))
            .bearer_auth(TEAM_KEY)
            .header("content-type", "application/json")
            .body(r#"{"model":"gpt-image-1","prompt":"a cat"}"#);
        if let Some(key) = key {
            request = request.header("x-provider-api-key", key);
        }
        request.send()
    };
    let before = mock.requests().len();
    let own_key = send("byok", Some("sk-caller-own-0123456789"))
        .await
        .unwrap();
    assert_eq!(own_key.status(), 404, "on to the provider");
    assert_eq!(mock.requests().len(), before + 1);
    // The gateway's key for the same work: refused.
    assert_eq!(send("openai", None).await.unwrap().status(), 403);
    assert_eq!(mock.requests().len(), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_held_to_tokens_or_a_budget_cannot_have_unmetered_work_done() {
    // Images, speech, video, fine-tuning, Assistants runs, Z.ai's async chat: billed by
    // measures the gateway cannot read, they would spend the provider's money past the
    // key's budget. Model calls, batches and what bills no tokens still pass.
    let mock = MockUpstream::start(provider_like).await;
    let limited = [
        "{budget: {usd: 5, period: month}}",
        "{tokens_per_minute: 100000}",
    ];
    for limits in limited {
        let gw = gateway(&mock, "", limits);
        let send = |method: reqwest::Method, key: &'static str, endpoint: &'static str| {
            client()
                .request(method, gw.url(&format!("/p/openai/{endpoint}")))
                .bearer_auth(key)
                .header("content-type", "application/json")
                .body(r#"{"model":"m","prompt":"a cat","input":"hi","messages":[]}"#)
                .send()
        };
        let before = mock.requests().len();
        for (method, endpoint) in [
            (reqwest::Method::POST, "images/generations"),
            (reqwest::Method::POST, "audio/speech"),
            (reqwest::Method::POST, "videos"),
            (reqwest::Method::POST, "fine_tuning/jobs"),
            (reqwest::Method::POST, "threads/thread_1/runs"),
            (reqwest::Method::POST, "async/chat/completions"),
            (reqwest::Method::POST, "v1/containers"),
            (reqwest::Method::PATCH, "cachedContents/c1"),
            // Model calls by any method but `POST`, or one a lenient server reads so.
            (reqwest::Method::PUT, "chat/completions"),
            (
                reqwest::Method::from_bytes(b"post").unwrap(),
                "chat/completions",
            ),
            (reqwest::Method::POST, "threads/thread_1/runs;x"),
            // A model call the meter, reading the path as written, would not know.
            (reqwest::Method::POST, "responses;x"),
        ] {
            let refused = send(method.clone(), TEAM_KEY, endpoint).await.unwrap();
            assert_eq!(refused.status(), 403, "{limits}: {method} {endpoint}");
            let body: Value = refused.json().await.unwrap();
            assert_eq!(body["error"]["code"], "not_allowed", "{body}");
        }
        assert_eq!(
            mock.requests().len(),
            before,
            "{limits}: nothing unmetered went"
        );
        // Metered, free, or only read: on to the provider.
        let chat = send(reqwest::Method::POST, TEAM_KEY, "chat/completions").await;
        assert_eq!(chat.unwrap().status(), 200, "{limits}");
        for (method, endpoint) in [
            (reqwest::Method::POST, "batches"),
            (reqwest::Method::POST, "files"),
            (reqwest::Method::POST, "messages/count_tokens"),
            (reqwest::Method::POST, "batches/batch_1/cancel"),
            (reqwest::Method::GET, "videos/video_1/content"),
            (reqwest::Method::DELETE, "videos/video_1"),
        ] {
            let passed = send(method.clone(), TEAM_KEY, endpoint).await.unwrap();
            assert_eq!(passed.status(), 404, "{limits}: {method} {endpoint}");
        }
        assert_eq!(mock.requests().len(), before + 7, "{limits}");
    }
    // Held to the number of its calls only, or to nothing: the provider decides.
    let gw = gateway(&mock, "", "{requests_per_minute: 100}");
    let before = mock.requests().len();
    for key in [TEAM_KEY, OTHER_KEY, MASTER] {
        let images = client()
            .post(gw.url("/p/openai/images/generations"))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(r#"{"model":"gpt-image-1","prompt":"a cat"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(images.status(), 404, "{key}");
    }
    assert_eq!(mock.requests().len(), before + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budgeted_keys_model_call_body_is_read_whatever_type_it_says() {
    // Servers read JSON without a type: a body sent as none, or as text, is read all
    // the same (so a stream left early is charged its input); one the gateway cannot
    // read, or compressed, is refused before it goes upstream.
    let mock = MockUpstream::start(|_| Reply::held_sse(vec![])).await;
    let gw = gateway(&mock, "", "{budget: {tokens: 1, period: month}}");
    let path = "/p/openai/responses";
    let body = r#"{"model":"gpt-4o-mini","stream":true,"input":"what the client wants answered at length"}"#;
    let send =
        |content_type: Option<&'static str>, encoding: Option<&'static str>, body: &'static str| {
            let mut req = client().post(gw.url(path)).bearer_auth(TEAM_KEY).body(body);
            if let Some(t) = content_type {
                req = req.header("content-type", t);
            }
            if let Some(e) = encoding {
                req = req.header("content-encoding", e);
            }
            req.send()
        };
    let refusals = [
        (
            Some("application/json"),
            Some("gzip"),
            body,
            "unsupported_content_encoding",
        ),
        (
            Some("text/plain"),
            None,
            "not json",
            "invalid_request_error",
        ),
        (
            None,
            None,
            r#"{"model":"m","model":"n"}"#,
            "invalid_request_error",
        ),
    ];
    for (content_type, encoding, sent, code) in refusals {
        let refused = send(content_type, encoding, sent).await.unwrap();
        assert_eq!(
            refused.status(),
            400,
            "{content_type:?} {encoding:?} {sent}"
        );
        let err: Value = refused.json().await.unwrap();
        let said = [&err["error"]["code"], &err["error"]["type"]];
        assert!(said.iter().any(|v| *v == code), "{err}");
    }
    // A type that names protobuf, at a provider other than Gemini or only in a
    // parameter: read all the same, and held to what a budgeted key may ask.
    let images = r#"{"model":"gpt-4o-mini","input":"a cat","tools":[{"type":"image_generation"}]}"#;
    for content_type in ["application/json; x=protobuf", "application/x-protobuf"] {
        let refused = send(Some(content_type), None, images).await.unwrap();
        assert_eq!(refused.status(), 403, "{content_type}");
    }
    assert!(mock.requests().is_empty(), "nothing went upstream");
    // No type: read, and its stream, left, is charged its input.
    let left = send(None, None, body).await.unwrap();
    assert_eq!(left.status(), 200);
    drop(left);
    // After the five refusals' lines.
    let log = gw.wait_for_log(&format!("path={path} "), 6).await;
    let line = log
        .lines()
        .find(|l| l.contains(&format!("path={path} ")) && l.contains(" status=200 "))
        .unwrap();
    assert!(line.contains(" tokens_estimated=true"), "{line}");
    assert_budget_spent(post(&gw, TEAM_KEY, path, body).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_held_to_tokens_or_a_budget_cannot_ask_for_work_billed_apart() {
    // xAI's `deferred`: the call answers with an id, and the completion is collected
    // by a read (`GET chat/deferred-completion/{id}`), which is charged nothing. And
    // the Responses API's `image_generation` tool, whose images are billed apart from
    // the answer's usage.
    let mock = MockUpstream::start(provider_like).await;
    let deferred =
        r#"{"model":"gpt-4o-mini","deferred":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let twice = r#"{"model":"gpt-4o-mini","deferred":false,"messages":[],"deferred":true}"#;
    let images = r#"{"model":"gpt-4o-mini","input":"a cat","tools":[{"type":"image_generation"}]}"#;
    let gw = gateway(&mock, "", "{budget: {usd: 5, period: month}}");
    for (path, body) in [
        ("/v1/chat/completions", deferred),
        ("/p/openai/chat/completions", deferred),
        ("/p/openai/chat/completions", twice),
        ("/p/openai/responses", images),
        ("/v1/responses", images),
    ] {
        let refused = post(&gw, TEAM_KEY, path, body).await;
        assert_eq!(refused.status(), 403, "{path}: {body}");
        let err: Value = refused.json().await.unwrap();
        assert_eq!(err["error"]["code"], "not_allowed", "{err}");
    }
    assert!(mock.requests().is_empty(), "nothing went upstream");
    // Not deferred, or a caller held to nothing: on to the provider.
    let plain = r#"{"model":"gpt-4o-mini","deferred":false,"messages":[]}"#;
    assert_eq!(
        post(&gw, TEAM_KEY, "/v1/chat/completions", plain)
            .await
            .status(),
        200
    );
    for path in ["/v1/chat/completions", "/p/openai/chat/completions"] {
        assert_eq!(
            post(&gw, OTHER_KEY, path, deferred).await.status(),
            200,
            "{path}"
        );
    }
    assert_eq!(mock.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_the_gateway_stopped_waiting_for_is_charged_its_input() {
    // The provider has the call and is slow; the gateway's time runs out (504) and,
    // on `/v1`, it tries once more. The provider may finish each attempt and bill it:
    // each is charged its input, so a key cannot spend a budget on calls too slow to
    // answer. A body past 64 KiB goes through subrequests, one per attempt.
    let slow =
        |rec: &Recorded| Reply::Delayed(Duration::from_secs(5), Box::new(provider_like(rec)));
    let chat = |words: usize| {
        let question = "a question long enough to cost tokens ".repeat(words);
        format!(
            r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"{question}"}}]}}"#
        )
    };
    let yaml = "retry:\n  attempts: 1\n  backoff: 1ms\nproviders:\n  openai:\n    timeouts: {first_byte: 300ms, idle: 300ms}\n";
    let input_charged = |gw: &Gateway, path: &str| {
        let log = gw.log();
        let line = log
            .lines()
            .rfind(|l| l.contains(&format!(" path={path} ")))
            .unwrap_or_default()
            .to_string();
        let tokens = line
            .split(" tokens_input=")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse::<u64>().ok());
        assert!(line.contains("tokens_estimated=true"), "{line}");
        tokens.unwrap_or_else(|| panic!("no input charged: {line}"))
    };
    for words in [6, 2_000] {
        let body = chat(words);
        let mut one_attempt = 0;
        for (path, attempts) in [
            ("/p/openai/chat/completions", 1),
            ("/v1/chat/completions", 2),
        ] {
            let mock = MockUpstream::start(slow).await;
            let gw = gateway(&mock, yaml, "{budget: {tokens: 1000000, period: month}}");
            let given_up = post(&gw, TEAM_KEY, path, &body).await;
            assert_eq!(given_up.status(), 504, "{path}");
            // A body past 64 KiB is not tried again after a timeout: it streamed to
            // the provider through a subrequest.
            let made = mock.requests().len();
            if words == 6 {
                assert_eq!(made, attempts, "{path}");
            }
            gw.wait_for_log(&format!(" path={path} "), 1).await;
            let input = input_charged(&gw, path);
            if path.starts_with("/p/") {
                one_attempt = input;
                assert!(input > 0, "{path}");
            } else {
                assert_eq!(
                    input,
                    made as u64 * one_attempt,
                    "{path}, {} bytes: each attempt",
                    body.len()
                );
            }
        }
    }
    // Refused once spent, at either route.
    let mock = MockUpstream::start(slow).await;
    let gw = gateway(&mock, yaml, "{budget: {tokens: 40, period: month}}");
    let body = chat(6);
    assert_eq!(
        post(&gw, TEAM_KEY, "/p/openai/chat/completions", &body)
            .await
            .status(),
        504
    );
    assert_budget_spent(post(&gw, TEAM_KEY, "/v1/chat/completions", &body).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gemini_call_whose_answer_names_no_model_is_priced_by_its_path() {
    // A JSPB answer names no model the gateway reads: its estimate is priced as the
    // model the path names, so a USD budget is spent by it.
    let jspb = r#"[[[[[["Hello there, general Kenobi"]],"model"],1]]]"#;
    let mock = MockUpstream::start(move |_: &Recorded| Reply::Full {
        status: 200,
        headers: vec![("content-type".into(), "application/json+protobuf".into())],
        body: jspb.into(),
    })
    .await;
    let yaml = format!(
        "{}models:\n  prices:\n    gemini-2.5-flash: {{input: 100000, output: 100000}}\n",
        own_api_providers(&mock)
    );
    let gw = gateway(&mock, &yaml, "{budget: {usd: 1, period: month}}");
    let call = || {
        client()
            .post(gw.url("/p/gemini-own/models/gemini-2.5-flash:generateContent"))
            .bearer_auth(TEAM_KEY)
            .header("content-type", "application/json+protobuf")
            .body(r#"[[[[["Tell me something of some length, please"]],"user"]]]"#)
            .send()
    };
    let first = call().await.unwrap();
    assert_eq!(first.status(), 200);
    first.bytes().await.unwrap();
    let log = gw.wait_for_log(" path=/p/gemini-own/", 1).await;
    assert!(log.contains(" cost_usd="), "{log}");
    assert_budget_spent(call().await.unwrap()).await;
}

/// An Anthropic answer that ran `searches` web searches, with its 10 input and 5
/// output tokens.
fn searched_message(searches: u64) -> String {
    format!(
        r#"{{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{{"type":"text","text":"From the web."}}],"stop_reason":"end_turn","usage":{{"input_tokens":10,"output_tokens":5,"server_tool_use":{{"web_search_requests":{searches},"web_fetch_requests":0}}}}}}"#
    )
}

/// A Responses stream that starts two web searches at once and finishes seconds
/// later, its usage and output in its last event.
fn searching_responses_stream() -> Reply {
    let event =
        |name: &str, data: &str| bytes::Bytes::from(format!("event: {name}\ndata: {data}\n\n"));
    let added = |i: u32| {
        event(
            "response.output_item.added",
            &format!(
                r#"{{"type":"response.output_item.added","output_index":{i},"item":{{"id":"ws_{i}","type":"web_search_call","status":"in_progress"}}}}"#
            ),
        )
    };
    let soon = Duration::from_millis(20);
    Reply::Stream {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        chunks: vec![
            (
                soon,
                event(
                    "response.created",
                    r#"{"type":"response.created","response":{"id":"resp_1","object":"response","status":"in_progress","model":"gpt-5","output":[],"usage":null}}"#,
                ),
            ),
            (soon, added(0)),
            (soon, added(1)),
            (
                Duration::from_secs(5),
                event(
                    "response.completed",
                    r#"{"type":"response.completed","response":{"id":"resp_1","object":"response","status":"completed","model":"gpt-5","output":[{"id":"ws_0","type":"web_search_call","status":"completed"},{"id":"ws_1","type":"web_search_call","status":"completed"}],"usage":{"input_tokens":10,"output_tokens":5}}}"#,
                ),
            ),
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_usd_budget_counts_the_web_searches_a_call_ran() {
    // Providers bill each web search apart from the tokens ($10 per 1,000 at
    // Anthropic and OpenAI): without counting them, a key held to a USD budget
    // searches for free. The tokens are priced at nothing here, so only searches
    // can spend the budget: three cost $0.03, two $0.02.
    let mock = MockUpstream::start(|rec: &Recorded| match rec.uri.as_str() {
        "/v1/messages" => Reply::json(200, searched_message(3)),
        "/v1/responses" => searching_responses_stream(),
        "/v1/chat/completions" => Reply::json(
            200,
            fixture("openai/chat_completion.json")
                .replace("gpt-4o-mini-2024-07-18", "gpt-4o-search-preview-2025-03-11"),
        ),
        _ => Reply::json(404, "{}"),
    })
    .await;
    let prices = "models:\n  prices:\n    claude-sonnet-4-5: {input: 0, output: 0, web_search: 10}\n    gpt-5: {input: 0, output: 0, web_search: 10}\n    gpt-4o-search-preview: {input: 0, output: 0, web_search: 10}\n";
    let messages = r#"{"model":"claude-sonnet-4-5","max_tokens":64,"tools":[{"type":"web_search_20250305","name":"web_search"}],"messages":[{"role":"user","content":"news?"}]}"#;
    let (gw, report) = reporting_gateway(&mock, prices, "{budget: {usd: 0.02, period: month}}");
    let path = "/p/anthropic/v1/messages";
    let resp = post(&gw, TEAM_KEY, path, messages).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let line = gw.wait_for_log(&format!("path={path}"), 1).await;
    assert!(line.contains(" web_searches=3 "), "{line}");
    assert!(line.contains(" cost_usd=0.030000"), "{line}");
    let report = report_with_output(&report, 5).await;
    assert_eq!(report["total"]["web_searches"], 3, "{report}");
    assert_eq!(report["models"]["claude-sonnet-4-5"]["web_searches"], 3);
    assert!((report["total"]["cost_usd"].as_f64().unwrap() - 0.03).abs() < 1e-9);
    let scrape = common::scrape(&gw.metrics_listen()).await;
    assert!(
        scrape.contains(r#"aurora_web_searches_total{key="team-a",model="claude-sonnet-4-5",provider="anthropic"} 3"#),
        "{scrape}"
    );
    assert_budget_spent(post(&gw, TEAM_KEY, path, messages).await).await;

    // A stream left while its searches run, long before its usage: charged the
    // searches it started.
    let gw = gateway(&mock, prices, "{budget: {usd: 0.015, period: month}}");
    let path = "/p/openai/responses";
    let body = r#"{"model":"gpt-5","stream":true,"tools":[{"type":"web_search"}],"input":"news?"}"#;
    let mut resp = post(&gw, TEAM_KEY, path, body).await;
    assert_eq!(resp.status(), 200);
    let mut read = String::new();
    while read.matches("web_search_call").count() < 2 {
        let chunk = resp.chunk().await.unwrap().expect("the stream went on");
        read.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(resp);
    let line = gw.wait_for_log(&format!("path={path}"), 1).await;
    assert!(line.contains(" web_searches=2 "), "{line}");
    assert!(line.contains(" tokens_estimated=true"), "{line}");
    assert_budget_spent(post(&gw, TEAM_KEY, path, body).await).await;

    // OpenAI's Chat search models search on every call, which no answer counts.
    let gw = gateway(&mock, prices, "{budget: {usd: 0.005, period: month}}");
    let body = r#"{"model":"gpt-4o-search-preview","web_search_options":{},"messages":[{"role":"user","content":"news?"}]}"#;
    let resp = post(&gw, TEAM_KEY, "/v1/chat/completions", body).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let line = gw.wait_for_log("path=/v1/chat/completions", 1).await;
    assert!(line.contains(" web_searches=1 "), "{line}");
    assert_budget_spent(post(&gw, TEAM_KEY, "/v1/chat/completions", body).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_usd_budget_counts_what_the_provider_says_a_call_cost() {
    // xAI says each answer's cost (`cost_in_usd_ticks`, its tools' fees included),
    // OpenRouter too (`cost`, in dollars): a call costs that when it is more than its
    // price, or when the model has none.
    let mock = MockUpstream::start(|rec: &Recorded| {
        let usage = match rec.uri.as_str() {
            // $0.03, ten billion ticks to the dollar.
            "/v1/xai/chat/completions" => r#""cost_in_usd_ticks":300000000"#,
            _ => r#""cost":0.03,"is_byok":false"#,
        };
        Reply::json(
            200,
            format!(
                r#"{{"id":"c1","object":"chat.completion","model":"grok-4","choices":[{{"index":0,"message":{{"role":"assistant","content":"hi"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,{usage}}}}}"#
            ),
        )
    })
    .await;
    let budget = "{budget: {usd: 0.02, period: month}}";
    let body = r#"{"model":"grok-4","messages":[{"role":"user","content":"hi"}]}"#;
    for (provider, prices) in [
        (
            "xai",
            "models:\n  prices:\n    grok-4: {input: 1, output: 1}\n",
        ),
        ("openrouter", ""),
    ] {
        let base = mock.url(&format!("/v1/{provider}"));
        let yaml = format!(
            "{prices}providers:\n  {provider}:\n    type: openai\n    base_url: {base}\n    api_key: sk-{provider}\nauth:\n  keys:\n    - name: team-a\n      sha256: \"{}\"\n      limits: {budget}\n",
            sha256_hex(TEAM_KEY),
        );
        let gw = Gateway::start(&yaml, &[("AURORA_MASTER_KEY", MASTER)]);
        let path = format!("/p/{provider}/chat/completions");
        let resp = post(&gw, TEAM_KEY, &path, body).await;
        assert_eq!(resp.status(), 200, "{provider}");
        resp.bytes().await.unwrap();
        let line = gw.wait_for_log(&format!("path={path}"), 1).await;
        assert!(line.contains(" cost_usd=0.030000"), "{provider}: {line}");
        assert_budget_spent(post(&gw, TEAM_KEY, &path, body).await).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_completion_is_metered_input_and_output_against_the_keys_budget() {
    let mock = MockUpstream::start(common::mock::provider_rules::openai_completions).await;
    for body in [
        r#"{"model":"gpt-3.5-turbo-instruct","prompt":"def fib(n):"}"#,
        r#"{"model":"gpt-3.5-turbo-instruct","prompt":"def fib(n):","stream":true}"#,
    ] {
        // 22 tokens spend a budget of 20.
        let gw = gateway(&mock, "", "{budget: {tokens: 20, period: month}}");
        let resp = post(&gw, TEAM_KEY, "/v1/completions", body).await;
        assert_eq!(resp.status(), 200, "{body}");
        resp.bytes().await.unwrap();
        let line = access_line(&gw, "/v1/completions").await;
        assert!(line.contains("tokens_input=10 tokens_output=12"), "{line}");
        assert!(line.contains(" route=completions "), "{line}");
        assert_budget_spent(post(&gw, TEAM_KEY, "/v1/completions", body).await).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderation_counts_as_a_request_and_no_tokens() {
    let mock = MockUpstream::start(common::mock::provider_rules::openai_moderations).await;
    let body = r#"{"input":"hello"}"#;
    let gw = gateway(&mock, "", "{requests_per_minute: 1}");
    common::clear_of_a_minute_boundary().await;
    let resp = post(&gw, TEAM_KEY, "/v1/moderations", body).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let line = access_line(&gw, "/v1/moderations").await;
    assert!(line.contains(" route=moderations "), "{line}");
    assert!(
        !line.contains("tokens_input=") || line.contains("tokens_input=0 "),
        "{line}"
    );
    let resp = post(&gw, TEAM_KEY, "/v1/moderations", body).await;
    assert_eq!(resp.status(), 429);

    // Free only at OpenAI's own API (this OpenAI is elsewhere): a key held to tokens
    // is not let run it where it may bill unseen.
    let gw = gateway(&mock, "", "{budget: {tokens: 1000, period: month}}");
    let resp = post(&gw, TEAM_KEY, "/v1/moderations", body).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_whole_answer_outlasted_total_before_a_word_of_it_is_charged_its_input() {
    // Some providers (OpenRouter among them) send a non-streamed answer's header at
    // once and white space while the model works. Past `timeouts.total` with nothing
    // but white space passed, the provider still does the work and bills it: the call
    // is charged its input, as one the gateway stopped waiting for before its header.
    let padding = |_: &Recorded| Reply::Stream {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        chunks: (0..30)
            .map(|_| (Duration::from_millis(100), bytes::Bytes::from_static(b"\n")))
            .collect(),
    };
    let yaml = "providers:\n  openai:\n    timeouts: {first_byte: 5s, idle: 5s, total: 500ms}\n";
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a question that costs tokens"}]}"#;
    for path in ["/p/openai/chat/completions", "/v1/chat/completions"] {
        let mock = MockUpstream::start(padding).await;
        let gw = gateway(&mock, yaml, "{budget: {tokens: 5, period: month}}");
        let cut = post(&gw, TEAM_KEY, path, body).await;
        // Nothing the client could use came: however it ends, it is not an answer.
        let _ = cut.bytes().await;
        let line = access_line(&gw, path).await;
        assert!(line.contains("tokens_estimated=true"), "{path}: {line}");
        assert!(!line.contains(" tokens_input=0 "), "{path}: {line}");
        // The estimate spent the budget: the next call is refused.
        assert_budget_spent(post(&gw, TEAM_KEY, path, body).await).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_call_gives_its_slot_back_while_its_unread_body_still_comes() {
    // The gateway answers a call itself (here: an endpoint handing out a credential,
    // refused for a key with limits) before reading its body. The connection is not
    // kept for the body's rest: a client trickling a large body after its answer must
    // not hold its key's call slot, and so its other calls at 429.
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway(&mock, "", "{concurrent: 1}");
    let mut sock = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let head = format!(
        "POST /p/openai/realtime/sessions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {TEAM_KEY}\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\n\r\n{{\"model\":"
    );
    tokio::io::AsyncWriteExt::write_all(&mut sock, head.as_bytes())
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read(&mut sock, &mut answer),
    )
    .await
    .expect("answered before the body")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]).to_lowercase();
    assert!(answer.starts_with("http/1.1 403"), "{answer}");
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");

    // The client still holds its end open; the key's next call runs.
    let chat = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let next = post(&gw, TEAM_KEY, "/p/openai/chat/completions", chat).await;
    assert_eq!(next.status(), 200);
    drop(sock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerank_that_reports_only_its_total_spends_a_token_budget() {
    // vLLM's rerank reports `{"total_tokens": N}` alone: the documents it read.
    let mock = MockUpstream::start(|rec: &Recorded| match rec.uri.as_str() {
        "/v1/rerank" => Reply::json(
            200,
            r#"{"id":"rerank-1","model":"bge-reranker","results":[],"usage":{"total_tokens":500}}"#,
        ),
        _ => Reply::json(404, "{}"),
    })
    .await;
    let yaml = format!(
        "providers:\n  local:\n    type: vllm\n    base_url: '{}'\nserver:\n  enabled_passthrough_providers: [local]\n",
        mock.url("/v1")
    );
    let gw = gateway(&mock, &yaml, "{budget: {tokens: 100, period: day}}");
    let rerank = r#"{"model":"bge-reranker","query":"q","documents":["a","b"]}"#;
    assert_eq!(
        post(&gw, TEAM_KEY, "/p/local/rerank", rerank)
            .await
            .status(),
        200
    );
    let line = access_line(&gw, "/p/local/rerank").await;
    assert!(line.contains(" tokens_input=500 "), "{line}");
    assert_budget_spent(post(&gw, TEAM_KEY, "/p/local/rerank", rerank).await).await;
}
