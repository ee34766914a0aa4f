//! The Anthropic-native `/v1/messages` face: provider-prefixed models, Anthropic-format
//! providers (of any vendor) served byte for byte, OpenAI-format providers translated,
//! and every gateway error in Anthropic's envelope.

mod common;

use bytes::Bytes;
use common::{client, closed_port, fixture, Gateway, MockUpstream, Recorded, Reply};
use serde_json::Value;

const MASTER: &str = "gw-master-messages-test-012345678";
const ANT_KEY: &str = "sk-ant-provider-messages-test";
const OAI_KEY: &str = "sk-oai-provider-messages-test";
const ZAI_KEY: &str = "zai-provider-messages-test";

fn provider_like(rec: &Recorded) -> Reply {
    match rec.uri.as_str() {
        "/v1/messages" => Reply::json(200, fixture("anthropic/messages.json")),
        "/v1/messages/count_tokens" => Reply::json(200, r#"{"input_tokens":12}"#),
        "/v1/chat/completions" => Reply::json(200, fixture("openai/chat_completion.json")),
        "/zai/messages" => Reply::json(200, fixture("anthropic/messages.json")),
        _ => Reply::json(404, "{}"),
    }
}

/// Anthropic, OpenAI and an Anthropic-format Z.ai endpoint, all on `mock`.
fn gateway_for(mock: &MockUpstream) -> Gateway {
    let yaml = format!(
        "providers:\n  zai:\n    base_url: '{}'\n    format: anthropic\n",
        mock.url("/zai")
    );
    let base = mock.url("/v1");
    Gateway::start(
        &yaml,
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("ANTHROPIC_API_KEY", ANT_KEY),
            ("ANTHROPIC_BASE_URL", base.as_str()),
            ("OPENAI_API_KEY", OAI_KEY),
            ("OPENAI_BASE_URL", base.as_str()),
            ("ZAI_API_KEY", ZAI_KEY),
        ],
    )
}

async fn post(gw: &Gateway, path: &str, body: &str) -> reqwest::Response {
    client()
        .post(gw.url(path))
        .header("x-api-key", MASTER)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "test-beta-1")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_format_body_and_answer_pass_byte_for_byte_but_for_the_model() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway_for(&mock);
    let body = r#"{ "model" : "anthropic:claude-sonnet-4-5", "max_tokens":64,
        "messages":[{"role":"user","content":"caf\u00e9"}], "x_future": [1, {"a":null}] }"#;
    let resp = post(&gw, "/v1/messages", body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.bytes().await.unwrap(),
        fixture("anthropic/messages.json").as_bytes()
    );
    let rec = mock.last();
    assert_eq!(rec.uri, "/v1/messages");
    assert_eq!(
        rec.body,
        body.replace("anthropic:claude-sonnet-4-5", "claude-sonnet-4-5")
            .as_bytes()
    );
    assert_eq!(rec.header("x-api-key"), Some(ANT_KEY));
    assert_eq!(rec.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(rec.header("anthropic-beta"), Some("test-beta-1"));
    assert!(rec.header("authorization").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_anthropic_provider_of_another_vendor_gets_x_api_key_and_messages_path() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway_for(&mock);
    let resp = post(
        &gw,
        "/v1/messages",
        r#"{"model":"zai/glm-4.6","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(resp.status(), 200);
    let rec = mock.last();
    assert_eq!(rec.uri, "/zai/messages");
    assert_eq!(rec.header("x-api-key"), Some(ZAI_KEY));
    assert!(rec.header("authorization").is_none());
    let sent: Value = serde_json::from_slice(&rec.body).unwrap();
    assert_eq!(sent["model"], "glm-4.6");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_format_provider_gets_a_translated_request_and_answers_as_anthropic() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway_for(&mock);
    let resp = post(
        &gw,
        "/v1/messages",
        r#"{"model":"openai:gpt-4o-mini","max_tokens":32,"system":"be brief","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(resp.status(), 200);
    let msg: Value = resp.json().await.unwrap();
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["role"], "assistant");
    assert!(msg["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(msg["content"][0]["type"], "text");
    let rec = mock.last();
    assert_eq!(rec.uri, "/v1/chat/completions");
    assert_eq!(
        rec.header("authorization"),
        Some(format!("Bearer {OAI_KEY}").as_str())
    );
    let sent: Value = serde_json::from_slice(&rec.body).unwrap();
    assert_eq!(sent["model"], "gpt-4o-mini");
    assert_eq!(sent["messages"][0]["content"], "be brief");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_tokens_goes_to_the_anthropic_format_provider() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway_for(&mock);
    let resp = post(
        &gw,
        "/v1/messages/count_tokens",
        r#"{"model":"anthropic/claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), r#"{"input_tokens":12}"#);
    assert_eq!(mock.last().uri, "/v1/messages/count_tokens");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_errors_on_messages_use_the_anthropic_envelope() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway_for(&mock);
    let no_key = client()
        .post(gw.url("/v1/messages"))
        .body("{}")
        .send()
        .await
        .unwrap();
    let mut cases: Vec<(reqwest::Response, u16, &str)> =
        vec![(no_key, 401, "authentication_error")];
    for model in ["::x", ":x", "x:"] {
        let body = format!(r#"{{"model":"{model}","max_tokens":1,"messages":[]}}"#);
        let resp = post(&gw, "/v1/messages", &body).await;
        cases.push((resp, 400, "invalid_request_error"));
    }
    let resp = post(
        &gw,
        "/v1/messages/count_tokens",
        r#"{"model":"openai/gpt-4o","messages":[]}"#,
    )
    .await;
    cases.push((resp, 400, "invalid_request_error"));
    for (resp, status, kind) in cases {
        assert_eq!(resp.status(), status);
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["type"], "error");
        assert_eq!(err["error"]["type"], kind);
        assert!(err["error"]["message"].is_string());
    }
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_provider_on_messages_is_an_anthropic_api_error() {
    let closed = format!("http://127.0.0.1:{}/v1", closed_port());
    let gw = Gateway::start(
        "",
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("OPENAI_API_KEY", OAI_KEY),
            ("OPENAI_BASE_URL", closed.as_str()),
        ],
    );
    let resp = post(
        &gw,
        "/v1/messages",
        r#"{"model":"openai:gpt-4o","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(resp.status(), 502);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["type"], "api_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_stream_cut_short_ends_with_an_anthropic_error_event() {
    let stream = fixture("openai/chat_completion_stream.txt");
    let cut = stream.find("\n\n").unwrap() + 2;
    let partial = Bytes::from(stream[..cut].to_string());
    let mock = MockUpstream::start(move |_| Reply::Stream {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        chunks: vec![(std::time::Duration::ZERO, partial.clone())],
    })
    .await;
    let gw = Gateway::start(
        "",
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("OPENAI_API_KEY", OAI_KEY),
            ("OPENAI_BASE_URL", mock.url("/v1").as_str()),
        ],
    );
    let resp = post(
        &gw,
        "/v1/messages",
        r#"{"model":"openai:gpt-4o","max_tokens":8,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.starts_with("event: message_start"), "{text}");
    assert!(text.contains("event: error"), "{text}");
    assert!(!text.contains("message_stop"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_key_anthropic_provider_forwards_the_callers_own_key_on_messages() {
    let mock = MockUpstream::start(provider_like).await;
    let base = mock.url("/v1");
    let gw = Gateway::start(
        "",
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("ANTHROPIC_API_KEY", "!PASSTHRU"),
            ("ANTHROPIC_BASE_URL", base.as_str()),
        ],
    );
    let body = r#"{"model":"claude-sonnet-4-5","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#;
    // Gateway key as Bearer, the caller's own provider key as X-Api-Key.
    let resp = client()
        .post(gw.url("/v1/messages"))
        .bearer_auth(MASTER)
        .header("x-api-key", "sk-ant-callers-own-key")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let rec = mock.last();
    assert_eq!(rec.header("x-api-key"), Some("sk-ant-callers-own-key"));
    assert!(rec.header("authorization").is_none());
    // Without a key of its own the caller is refused, in Anthropic's envelope.
    let resp = client()
        .post(gw.url("/v1/messages"))
        .bearer_auth(MASTER)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["type"], "authentication_error");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("anthropic"));
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_to_mistral_is_not_asked_for_the_usage_it_reports_unasked() {
    // Mistral refuses `stream_options` (422) and ends its stream with the usage.
    let mock = MockUpstream::start(|rec| {
        if let Some(refusal) = common::mock::provider_rules::mistral_chat_refusal(rec) {
            return refusal;
        }
        Reply::sse([
            r#"data: {"id":"m1","object":"chat.completion.chunk","model":"mistral-small-latest","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}"#,
            r#"data: {"id":"m1","object":"chat.completion.chunk","model":"mistral-small-latest","choices":[{"index":0,"delta":{"content":""},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"total_tokens":11,"completion_tokens":2}}"#,
            "data: [DONE]",
        ]
        .map(|e| bytes::Bytes::from(format!("{e}\n\n"))))
    })
    .await;
    let yaml = format!(
        "providers:\n  mistral: {{type: mistral, api_key: sk-mistral-test-0123456789, base_url: '{}'}}\n",
        mock.url("/v1")
    );
    let gw = Gateway::start(&yaml, &[("AURORA_MASTER_KEY", MASTER)]);
    let resp = post(
        &gw,
        "/v1/messages",
        r#"{"model":"mistral:mistral-small-latest","max_tokens":32,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    assert_eq!(sent["stream"], true);
    assert!(sent.get("stream_options").is_none(), "{sent}");
    assert!(text.contains("event: message_stop"), "{text}");
    assert!(text.contains(r#""output_tokens":2"#), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_anthropics_request_too_large() {
    let mock = MockUpstream::start(provider_like).await;
    let base = mock.url("/v1");
    let gw = Gateway::start(
        "",
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("ANTHROPIC_API_KEY", ANT_KEY),
            ("ANTHROPIC_BASE_URL", base.as_str()),
            ("BODY_SIZE_LIMIT", "1KiB"),
        ],
    );
    let body = format!(
        r#"{{"model":"anthropic:claude-sonnet-4-5","max_tokens":8,"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(2048)
    );
    let resp = post(&gw, "/v1/messages", &body).await;
    assert_eq!(resp.status(), 413);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "request_too_large", "{v}");
    assert!(mock.requests().is_empty());
}

/// A Claude Code turn after one tool call: `metadata.user_id`, thinking, a tool use
/// and its result.
fn claude_code_tool_loop(model: &str) -> String {
    serde_json::json!({
        "model": model, "max_tokens": 512, "metadata": {"user_id": "user_abc_account_x_session_y"},
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        "tools": [{"name": "Bash", "description": "Run a command",
            "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}],
        "messages": [
            {"role": "user", "content": "list the files"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "I should run ls.", "signature": ""},
                {"type": "tool_use", "id": "call_1", "name": "Bash", "input": {"command": "ls"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "a.txt"}]}
        ]
    })
    .to_string()
}

fn chat_answer() -> Reply {
    Reply::json(200, fixture("openai/chat_completion.json"))
}

/// A gateway whose one provider, `entry` (its YAML after the name), is at `mock`'s
/// `path`.
fn one_provider_at(mock: &MockUpstream, name: &str, entry: &str, path: &str) -> Gateway {
    let yaml = format!(
        "providers:\n  {name}: {{{entry}, base_url: '{}'}}\n",
        mock.url(path)
    );
    Gateway::start(&yaml, &[("AURORA_MASTER_KEY", MASTER)])
}

/// What the provider got for a Claude Code tool loop on `model`, which it accepted.
async fn sent_for_tool_loop(gw: &Gateway, mock: &MockUpstream, model: &str) -> Value {
    let resp = post(gw, "/v1/messages", &claude_code_tool_loop(model)).await;
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{model}: {text}");
    serde_json::from_slice(&mock.last().body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistral_is_sent_no_member_it_refuses_from_a_claude_code_turn() {
    let mock = MockUpstream::start(|rec| {
        common::mock::provider_rules::mistral_chat_refusal(rec).unwrap_or_else(chat_answer)
    })
    .await;
    let entry = "type: mistral, api_key: sk-mistral-test-0123456789";
    let gw = one_provider_at(&mock, "mistral", entry, "/v1");
    let sent = sent_for_tool_loop(&gw, &mock, "mistral:devstral-medium").await;
    assert!(sent.get("user").is_none(), "{sent}");
    assert!(
        sent["messages"][2].get("reasoning_content").is_none(),
        "{sent}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_codes_text_images_and_system_notes_after_tool_results_reach_mistral_in_its_order() {
    // Mistral refuses a user message after a tool message (400, code 3230), and a
    // system message after an assistant one.
    let mock = MockUpstream::start(|rec| {
        common::mock::provider_rules::mistral_chat_refusal(rec).unwrap_or_else(chat_answer)
    })
    .await;
    let entry = "type: mistral, api_key: sk-mistral-test-0123456789";
    let gw = one_provider_at(&mock, "mistral", entry, "/v1");
    let png = "iVBORw0KGgoAAAANSUhEUg==";
    let body = serde_json::json!({"model": "mistral:devstral-medium", "max_tokens": 512,
    "tools": [{"name": "Read", "input_schema": {"type": "object"}}],
    "messages": [
        {"role": "user", "content": "read a.txt"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "a.txt"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "hello"},
            {"type": "text", "text": "<system-reminder>Keep going.</system-reminder>"}]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_2", "name": "Read", "input": {"file_path": "b.png"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}}]}]},
        {"role": "assistant", "content": "A cat."},
        {"role": "system", "content": "The user switched models."},
        {"role": "user", "content": "thanks"}
    ]});
    let resp = post(&gw, "/v1/messages", &body.to_string()).await;
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    let messages = sent["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        [
            "user",
            "assistant",
            "tool",
            "assistant",
            "tool",
            "assistant",
            "user",
            "assistant",
            "user",
            "user"
        ]
    );
    // The reminder is read right after the result it came with.
    assert_eq!(
        messages[2]["content"],
        "hello\n\n<system-reminder>Keep going.</system-reminder>"
    );
    assert_eq!(messages[6]["content"][1]["type"], "image_url");
    assert_eq!(messages[8]["content"], "The user switched models.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_codes_tool_call_ids_reach_mistral_as_nine_letters_and_digits() {
    // Mistral refuses any other id (400, code 3280); Claude Code's are `toolu_…`.
    let mock = MockUpstream::start(|rec| {
        common::mock::provider_rules::mistral_chat_refusal(rec).unwrap_or_else(chat_answer)
    })
    .await;
    let entry = "type: mistral, api_key: sk-mistral-test-0123456789";
    let gw = one_provider_at(&mock, "mistral", entry, "/v1");
    let mut body: Value =
        serde_json::from_str(&claude_code_tool_loop("mistral:devstral-medium")).unwrap();
    let id = "toolu_01A09q90qw90lq917835lq9";
    body["messages"][1]["content"][1]["id"] = id.into();
    body["messages"][2]["content"][0]["tool_use_id"] = id.into();
    let resp = post(&gw, "/v1/messages", &body.to_string()).await;
    let status = resp.status();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap());
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    let call_id = sent["messages"][2]["tool_calls"][0]["id"].as_str().unwrap();
    assert_eq!(call_id.len(), 9, "{sent}");
    assert_eq!(sent["messages"][3]["tool_call_id"], call_id, "{sent}");
    // The next turn sends the same conversation again: the same id.
    post(&gw, "/v1/messages", &body.to_string()).await;
    let again: Value = serde_json::from_slice(&mock.last().body).unwrap();
    assert_eq!(again["messages"][2]["tool_calls"][0]["id"], call_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistral_refusal_reaches_the_client_with_its_own_words() {
    let mock = MockUpstream::start(|_rec| {
        Reply::json(
            400,
            r#"{"object":"error","message":"Prompt contains 160907 tokens, too large for model with 131072 maximum context length","type":"invalid_request_invalid_args","param":null,"code":"3051"}"#,
        )
    })
    .await;
    let entry = "type: mistral, api_key: sk-mistral-test-0123456789";
    let gw = one_provider_at(&mock, "mistral", entry, "/v1");
    let resp = post(
        &gw,
        "/v1/messages",
        &claude_code_tool_loop("mistral:devstral-medium"),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("160907 tokens"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deepseek_tool_loop_sends_thinking_back_as_reasoning_content() {
    let mock = MockUpstream::start(|rec| {
        common::mock::provider_rules::deepseek_chat_refusal(rec).unwrap_or_else(chat_answer)
    })
    .await;
    let gw = one_provider_at(
        &mock,
        "deepseek",
        "api_key: sk-deepseek-test-0123456789",
        "/v1",
    );
    let sent = sent_for_tool_loop(&gw, &mock, "deepseek:deepseek-reasoner").await;
    let assistant = &sent["messages"][2];
    assert_eq!(assistant["role"], "assistant", "{sent}");
    assert_eq!(assistant["reasoning_content"], "I should run ls.");
    assert_eq!(assistant["tool_calls"][0]["id"], "call_1");
    // Other chat servers are not sent the member.
    let openai = MockUpstream::start(|rec| {
        common::mock::provider_rules::openai_chat_refusal(rec).unwrap_or_else(chat_answer)
    })
    .await;
    let gw = one_provider_at(&openai, "openai", &format!("api_key: {OAI_KEY}"), "/v1");
    let sent = sent_for_tool_loop(&gw, &openai, "openai:gpt-4o").await;
    assert!(
        sent["messages"][2].get("reasoning_content").is_none(),
        "{sent}"
    );
    assert_eq!(sent["user"], "user_abc_account_x_session_y");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_loop_whose_thinking_was_not_kept_continues_on_deepseek() {
    // DeepSeek's thinking mode refuses a tool-call turn without `reasoning_content`;
    // a turn begun on another model, or whose thinking came redacted, has none.
    let mock = MockUpstream::start(|rec| {
        common::mock::provider_rules::deepseek_chat_refusal(rec).unwrap_or_else(chat_answer)
    })
    .await;
    let gw = one_provider_at(
        &mock,
        "deepseek",
        "api_key: sk-deepseek-test-0123456789",
        "/v1",
    );
    let mut body: Value =
        serde_json::from_str(&claude_code_tool_loop("deepseek:deepseek-reasoner")).unwrap();
    body["messages"][1]["content"][0] =
        serde_json::json!({"type": "redacted_thinking", "data": "opaque"});
    let resp = post(&gw, "/v1/messages", &body.to_string()).await;
    let status = resp.status();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap());
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    assert_eq!(sent["messages"][2]["reasoning_content"], "", "{sent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_reading_an_image_on_deepseek_gets_a_note_in_its_place() {
    // DeepSeek's chat models read text only ("unknown variant `image_url`", 422).
    let mock = MockUpstream::start(|rec| {
        common::mock::provider_rules::deepseek_chat_refusal(rec).unwrap_or_else(chat_answer)
    })
    .await;
    let gw = one_provider_at(
        &mock,
        "deepseek",
        "api_key: sk-deepseek-test-0123456789",
        "/v1",
    );
    let mut body: Value =
        serde_json::from_str(&claude_code_tool_loop("deepseek:deepseek-chat")).unwrap();
    body["messages"][2]["content"][0]["content"] = serde_json::json!([{"type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]);
    let resp = post(&gw, "/v1/messages", &body.to_string()).await;
    let status = resp.status();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap());
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    let tool = &sent["messages"][3];
    assert_eq!(tool["role"], "tool", "{sent}");
    assert!(
        tool["content"]
            .as_str()
            .unwrap()
            .contains("image was left out"),
        "{sent}"
    );
    assert_eq!(sent["messages"].as_array().unwrap().len(), 4, "{sent}");
}

/// A Claude Code turn whose Read tool returned a PDF, on `model`.
fn claude_code_reading_a_pdf(model: &str) -> String {
    let mut body: Value = serde_json::from_str(&claude_code_tool_loop(model)).unwrap();
    body["messages"][2]["content"][0]["content"] = serde_json::json!([
        {"type": "text", "text": "PDF file read: /tmp/a.pdf"},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"}}]);
    body.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pdf_claude_code_read_reaches_openai_as_a_file_and_vllm_as_a_note() {
    // vLLM refuses a `file` part (400 "Unsupported chat content part type"), and the
    // PDF stays in every later turn of the session; OpenAI reads it.
    let mock = MockUpstream::start(|rec| {
        let refusal = match rec.path() {
            "/vllm/chat/completions" => common::mock::provider_rules::vllm_chat_refusal(rec),
            _ => common::mock::provider_rules::openai_chat_refusal(rec),
        };
        refusal.unwrap_or_else(chat_answer)
    })
    .await;
    let yaml = format!(
        "providers:\n  vllm: {{base_url: '{}'}}\n  openai: {{api_key: {OAI_KEY}, base_url: '{}'}}\n",
        mock.url("/vllm"),
        mock.url("/v1")
    );
    let gw = Gateway::start(&yaml, &[("AURORA_MASTER_KEY", MASTER)]);
    let resp = post(
        &gw,
        "/v1/messages",
        &claude_code_reading_a_pdf("vllm/qwen3-coder"),
    )
    .await;
    let status = resp.status();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap());
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    let tool = &sent["messages"][3];
    assert_eq!(tool["role"], "tool", "{sent}");
    let content = tool["content"].as_str().unwrap();
    assert!(content.starts_with("PDF file read: /tmp/a.pdf\n"), "{sent}");
    assert!(content.contains("PDF file was left out"), "{sent}");
    assert_eq!(sent["messages"].as_array().unwrap().len(), 4, "{sent}");

    let resp = post(
        &gw,
        "/v1/messages",
        &claude_code_reading_a_pdf("openai/gpt-4o"),
    )
    .await;
    let status = resp.status();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap());
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    assert_eq!(sent["messages"][4]["content"][1]["type"], "file", "{sent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_o_series_model_is_not_sent_parallel_tool_calls_it_refuses() {
    let openai = MockUpstream::start(|rec| {
        common::mock::provider_rules::openai_chat_refusal(rec).unwrap_or_else(chat_answer)
    })
    .await;
    let gw = one_provider_at(&openai, "openai", &format!("api_key: {OAI_KEY}"), "/v1");
    let body = |model: &str| {
        serde_json::json!({"model": model, "max_tokens": 64,
            "tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
            "messages": [{"role": "user", "content": "hi"}]})
        .to_string()
    };
    for model in ["o3-mini", "o4-mini-2025-04-16", "o1"] {
        let resp = post(&gw, "/v1/messages", &body(&format!("openai:{model}"))).await;
        let status = resp.status();
        assert_eq!(status, 200, "{model}: {}", resp.text().await.unwrap());
        let sent: Value = serde_json::from_slice(&openai.last().body).unwrap();
        assert!(sent.get("parallel_tool_calls").is_none(), "{sent}");
    }
    // GPT-5 takes it.
    let resp = post(&gw, "/v1/messages", &body("openai:gpt-5")).await;
    assert_eq!(resp.status(), 200);
    let sent: Value = serde_json::from_slice(&openai.last().body).unwrap();
    assert_eq!(sent["parallel_tool_calls"], false, "{sent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_assistant_turns_reach_openai_as_one_message_before_the_results() {
    // Anthropic combines consecutive turns of one role; OpenAI refuses an assistant
    // message with tool calls that tool messages do not follow (400).
    let openai = MockUpstream::start(|rec| {
        common::mock::provider_rules::openai_chat_refusal(rec).unwrap_or_else(chat_answer)
    })
    .await;
    let gw = one_provider_at(&openai, "openai", &format!("api_key: {OAI_KEY}"), "/v1");
    let call = |id: &str| serde_json::json!({"type": "tool_use", "id": id, "name": "Read", "input": {"file_path": id}});
    let result =
        |id: &str| serde_json::json!({"type": "tool_result", "tool_use_id": id, "content": id});
    let reminder =
        serde_json::json!({"type": "text", "text": "<system-reminder>r</system-reminder>"});
    let histories = [
        serde_json::json!([
            {"role": "user", "content": "read a and b"},
            {"role": "assistant", "content": [call("a")]},
            {"role": "assistant", "content": [call("b")]},
            {"role": "user", "content": [result("a"), result("b")]}]),
        // Its results split too, text between them.
        serde_json::json!([
            {"role": "user", "content": "read a and b"},
            {"role": "assistant", "content": [call("a")]},
            {"role": "assistant", "content": [call("b")]},
            {"role": "user", "content": [result("a"), reminder]},
            {"role": "user", "content": [result("b")]}]),
    ];
    for messages in histories {
        let body = serde_json::json!({"model": "openai:gpt-4o", "max_tokens": 64,
            "tools": [{"name": "Read", "input_schema": {"type": "object"}}],
            "messages": messages});
        let resp = post(&gw, "/v1/messages", &body.to_string()).await;
        let status = resp.status();
        assert_eq!(status, 200, "{}", resp.text().await.unwrap());
        let sent: Value = serde_json::from_slice(&openai.last().body).unwrap();
        let calls = &sent["messages"][1]["tool_calls"];
        assert_eq!(calls.as_array().unwrap().len(), 2, "{sent}");
        assert_eq!(sent["messages"][2]["tool_call_id"], "a", "{sent}");
        assert_eq!(sent["messages"][3]["tool_call_id"], "b", "{sent}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_four_stop_sequences_reach_openai_as_the_first_four() {
    // Chat Completions takes four at most (400 above); Anthropic takes more.
    let openai = MockUpstream::start(|rec| {
        common::mock::provider_rules::openai_chat_refusal(rec).unwrap_or_else(chat_answer)
    })
    .await;
    let gw = one_provider_at(&openai, "openai", &format!("api_key: {OAI_KEY}"), "/v1");
    let body = r#"{"model":"openai:gpt-4o","max_tokens":64,"stop_sequences":["1","2","3","4","5","6"],"messages":[{"role":"user","content":"count"}]}"#;
    let resp = post(&gw, "/v1/messages", body).await;
    let status = resp.status();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap());
    let sent: Value = serde_json::from_slice(&openai.last().body).unwrap();
    assert_eq!(sent["stop"], serde_json::json!(["1", "2", "3", "4"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_reasoning_model_is_not_sent_a_temperature_it_refuses() {
    let openai = MockUpstream::start(|rec| {
        common::mock::provider_rules::openai_chat_refusal(rec).unwrap_or_else(chat_answer)
    })
    .await;
    let gw = one_provider_at(&openai, "openai", &format!("api_key: {OAI_KEY}"), "/v1");
    let body = |model: &str| {
        format!(
            r#"{{"model":"{model}","max_tokens":64,"temperature":0.2,"top_p":0.9,"messages":[{{"role":"user","content":"hi"}}]}}"#
        )
    };
    let resp = post(&gw, "/v1/messages", &body("openai:gpt-5")).await;
    let status = resp.status();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap());
    let sent: Value = serde_json::from_slice(&openai.last().body).unwrap();
    assert!(
        sent.get("temperature").is_none() && sent.get("top_p").is_none(),
        "{sent}"
    );
    // A model that takes them gets them.
    let resp = post(&gw, "/v1/messages", &body("openai:gpt-4o")).await;
    assert_eq!(resp.status(), 200);
    let sent: Value = serde_json::from_slice(&openai.last().body).unwrap();
    assert_eq!(sent["temperature"], 0.2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anthropic_clients_output_config_format_reaches_a_chat_server_as_response_format() {
    // The mock refuses a `json_schema` without the `name` Chat requires, and
    // `output_config`, a member OpenAI does not know.
    let openai = MockUpstream::start(|rec| {
        common::mock::provider_rules::openai_chat_refusal(rec).unwrap_or_else(chat_answer)
    })
    .await;
    let gw = one_provider_at(&openai, "openai", &format!("api_key: {OAI_KEY}"), "/v1");
    let schema = serde_json::json!({"type": "object",
        "properties": {"name": {"type": "string"}, "email": {"type": "string"}},
        "required": ["name"], "additionalProperties": false});
    // What the Anthropic SDKs send for `messages.parse(output_format=Contact)`.
    let body = serde_json::json!({"model": "openai:gpt-4o-mini", "max_tokens": 256,
        "messages": [{"role": "user", "content": "Extract: Jane, jane@example.com"}],
        "output_config": {"format": {"type": "json_schema", "schema": schema}}});
    let resp = post(&gw, "/v1/messages", &body.to_string()).await;
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["content"][0]["type"], "text");
    let sent: Value = serde_json::from_slice(&openai.last().body).unwrap();
    // No `strict`: OpenAI's strict mode would refuse the optional `email`.
    assert_eq!(
        sent["response_format"],
        serde_json::json!({"type": "json_schema",
            "json_schema": {"name": "response", "schema": schema}}),
        "{sent}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_reasoning_model_is_not_sent_stop_sequences_it_refuses() {
    let openai = MockUpstream::start(|rec| {
        common::mock::provider_rules::openai_chat_refusal(rec).unwrap_or_else(chat_answer)
    })
    .await;
    let gw = one_provider_at(&openai, "openai", &format!("api_key: {OAI_KEY}"), "/v1");
    let body = |model: &str| {
        format!(
            r#"{{"model":"{model}","max_tokens":64,"stop_sequences":["END"],"messages":[{{"role":"user","content":"hi"}}]}}"#
        )
    };
    let resp = post(&gw, "/v1/messages", &body("openai:o4-mini")).await;
    let status = resp.status();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap());
    let sent: Value = serde_json::from_slice(&openai.last().body).unwrap();
    assert!(sent.get("stop").is_none(), "{sent}");
    // A model that takes them gets them.
    let resp = post(&gw, "/v1/messages", &body("openai:gpt-4o")).await;
    assert_eq!(resp.status(), 200);
    let sent: Value = serde_json::from_slice(&openai.last().body).unwrap();
    assert_eq!(sent["stop"], serde_json::json!(["END"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gemini_3_tool_loop_gives_a_thought_signature_back() {
    let mock = MockUpstream::start(|rec| {
        common::mock::provider_rules::gemini_chat_refusal(rec).unwrap_or_else(chat_answer)
    })
    .await;
    let entry = "api_key: gemini-test-key-0123456789";
    let gw = one_provider_at(&mock, "gemini", entry, "/v1beta/openai");
    let sent = sent_for_tool_loop(&gw, &mock, "gemini:gemini-3-pro-preview").await;
    assert_eq!(
        sent["messages"][2]["tool_calls"][0]["extra_content"]["google"]["thought_signature"],
        "skip_thought_signature_validator"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_begun_on_claude_goes_on_to_gemini_3_without_claudes_signature() {
    let mock = MockUpstream::start(|rec| {
        common::mock::provider_rules::gemini_chat_refusal(rec).unwrap_or_else(chat_answer)
    })
    .await;
    let entry = "api_key: gemini-test-key-0123456789";
    let gw = one_provider_at(&mock, "gemini", entry, "/v1beta/openai");
    let mut body: Value =
        serde_json::from_str(&claude_code_tool_loop("gemini:gemini-3-pro-preview")).unwrap();
    // The turn as Claude signed its thinking.
    body["messages"][1]["content"][0]["signature"] =
        "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds".into();
    let resp = post(&gw, "/v1/messages", &body.to_string()).await;
    let status = resp.status();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap());
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    assert_eq!(
        sent["messages"][2]["tool_calls"][0]["extra_content"]["google"]["thought_signature"],
        "skip_thought_signature_validator"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_gone_on_from_gemini_and_deepseek_to_claude_sends_it_no_thinking_it_cannot_verify(
) {
    let mock = MockUpstream::start(|rec| {
        common::mock::provider_rules::anthropic_messages_refusal(rec)
            .unwrap_or_else(|| Reply::json(200, fixture("anthropic/messages.json")))
    })
    .await;
    // Anthropic's own API checks signatures; the mock stands in for it on loopback.
    let entry =
        "type: anthropic, api_key: sk-ant-test-0123456789, checks_thinking_signatures: true";
    let gw = one_provider_at(&mock, "anthropic", entry, "/v1");
    let claudes = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds";
    // Claude Code after `/model`: turns answered by Gemini (its signature tagged) and
    // by DeepSeek (reasoning without a signature), then by Claude, thinking on.
    let body = serde_json::json!({"model": "anthropic:claude-sonnet-4-5", "max_tokens": 20000,
        "thinking": {"type": "enabled", "budget_tokens": 10000},
        "tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": "list the files"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "ls it is", "signature": "gemini:sig-gemini-1"},
                {"type": "text", "text": "Listing."}]},
            {"role": "user", "content": "now the big ones"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Claude thought", "signature": claudes},
                {"type": "text", "text": "Sorted."}]},
            {"role": "user", "content": "and count them"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "wc then", "signature": ""},
                {"type": "tool_use", "id": "call_1", "name": "Bash", "input": {"command": "ls | wc -l"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "3"}]}]});
    let resp = post(&gw, "/v1/messages", &body.to_string()).await;
    let status = resp.status();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap());
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    assert_eq!(
        sent["messages"][1]["content"],
        serde_json::json!([{"type": "text", "text": "Listing."}])
    );
    assert_eq!(
        sent["messages"][3], body["messages"][3],
        "Claude's own thinking goes"
    );
    assert_eq!(sent["messages"][5]["content"][0]["type"], "tool_use");
    // The answered turn lost the thinking it led with: thinking is off for the call.
    assert_eq!(sent["thinking"], serde_json::json!({"type": "disabled"}));
    // An Anthropic-compatible server that takes unsigned thinking gets DeepSeek's back.
    let lenient = one_provider_at(
        &mock,
        "anthropic",
        "type: anthropic, api_key: sk-ant-test-0123456789",
        "/v1",
    );
    let mut deepseeks = body.clone();
    deepseeks["messages"][1]["content"][0]["signature"] = claudes.into();
    let _ = post(&lenient, "/v1/messages", &deepseeks.to_string()).await;
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    assert_eq!(sent["messages"][5], body["messages"][5]);
    assert_eq!(sent["thinking"], body["thinking"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn geminis_own_thought_signature_makes_the_round_trip() {
    let mock = MockUpstream::start(|rec| {
        if let Some(refusal) = common::mock::provider_rules::gemini_chat_refusal(rec) {
            return refusal;
        }
        Reply::json(
            200,
            serde_json::json!({"id": "g1", "object": "chat.completion", "model": "gemini-3-pro-preview",
                "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant",
                    "content": null, "tool_calls": [{"id": "call_g", "type": "function",
                        "function": {"name": "Bash", "arguments": "{\"command\":\"ls\"}"},
                        "extra_content": {"google": {"thought_signature": "sig-gemini-1"}}}]}}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}})
            .to_string(),
        )
    })
    .await;
    let entry = "api_key: gemini-test-key-0123456789";
    let gw = one_provider_at(&mock, "gemini", entry, "/v1beta/openai");
    let first = serde_json::json!({"model": "gemini:gemini-3-pro-preview", "max_tokens": 256,
        "tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": "list the files"}]});
    let resp = post(&gw, "/v1/messages", &first.to_string()).await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    // Tagged as Gemini's, to be told from another model's.
    assert_eq!(
        answer["content"][0]["signature"], "gemini:sig-gemini-1",
        "{answer}"
    );
    // The client sends the turn back as it got it, with the call's result.
    let mut next = first.clone();
    next["messages"] = serde_json::json!([
        {"role": "user", "content": "list the files"},
        {"role": "assistant", "content": answer["content"]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_g", "content": "a.txt"}]}
    ]);
    let resp = post(&gw, "/v1/messages", &next.to_string()).await;
    assert_eq!(resp.status(), 200);
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    assert_eq!(
        sent["messages"][1]["tool_calls"][0]["extra_content"]["google"]["thought_signature"],
        "sig-gemini-1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ollamas_parallel_calls_at_one_index_reach_a_messages_client_as_two_tool_uses() {
    // Each call whole in one chunk, all at `index: 0` (ollama/ollama#15457).
    let mock = MockUpstream::start(|_| {
        Reply::sse(
            [
                r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","model":"qwen3-coder","choices":[{"index":0,"delta":{"role":"assistant","content":"","tool_calls":[{"id":"call_a","index":0,"type":"function","function":{"name":"file_write","arguments":"{\"filePath\":\"hello.py\"}"}}]},"finish_reason":null}]}"#,
                r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","model":"qwen3-coder","choices":[{"index":0,"delta":{"role":"assistant","content":"","tool_calls":[{"id":"call_b","index":0,"type":"function","function":{"name":"file_write","arguments":"{\"filePath\":\"world.py\"}"}}]},"finish_reason":null}]}"#,
                r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","model":"qwen3-coder","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"tool_calls"}]}"#,
                "data: [DONE]",
            ]
            .map(|e| Bytes::from(format!("{e}\n\n"))),
        )
    })
    .await;
    let yaml = format!(
        "providers:\n  ollama: {{base_url: '{}'}}\n",
        mock.url("/v1")
    );
    let gw = Gateway::start(&yaml, &[("AURORA_MASTER_KEY", MASTER)]);
    let resp = post(
        &gw,
        "/v1/messages",
        r#"{"model":"ollama/qwen3-coder","max_tokens":256,"stream":true,"messages":[{"role":"user","content":"write both files"}],
            "tools":[{"name":"file_write","input_schema":{"type":"object"}}]}"#,
    )
    .await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let events: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let calls: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "content_block_start")
        .map(|e| &e["content_block"]["id"])
        .collect();
    assert_eq!(calls, ["call_a", "call_b"], "{text}");
    let input = |i: u64| -> String {
        events
            .iter()
            .filter(|e| e["type"] == "content_block_delta" && e["index"] == i)
            .filter_map(|e| e["delta"]["partial_json"].as_str())
            .collect()
    };
    assert_eq!(input(0), r#"{"filePath":"hello.py"}"#);
    assert_eq!(input(1), r#"{"filePath":"world.py"}"#);
    assert!(text.contains(r#""stop_reason":"tool_use""#), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_keep_alive_comments_reach_a_messages_client_as_pings() {
    // DeepSeek writes `: keep-alive` for as long as a request queues.
    let mock = MockUpstream::start(|_| {
        Reply::sse(
            [
                ": keep-alive",
                r#"data: {"id":"d1","object":"chat.completion.chunk","model":"deepseek-chat","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#,
                r#"data: {"id":"d1","object":"chat.completion.chunk","model":"deepseek-chat","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
                "data: [DONE]",
            ]
            .map(|e| Bytes::from(format!("{e}\n\n"))),
        )
    })
    .await;
    let yaml = format!(
        "providers:\n  deepseek: {{api_key: sk-deepseek-test-0123456789, base_url: '{}'}}\n",
        mock.url("/v1")
    );
    let gw = Gateway::start(&yaml, &[("AURORA_MASTER_KEY", MASTER)]);
    let resp = post(
        &gw,
        "/v1/messages",
        r#"{"model":"deepseek/deepseek-chat","max_tokens":32,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(
        text.starts_with("event: ping\ndata: {\"type\":\"ping\"}\n\nevent: message_start"),
        "{text}"
    );
    assert!(text.contains("event: message_stop"), "{text}");
}
