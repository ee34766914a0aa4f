//! What coding agents send to `/v1/messages`, shaped as Claude Code sends it (betas,
//! `?beta=true`, thinking, context management, a mid-conversation `system` message,
//! an image in a tool result), served by mock providers that refuse what the real
//! APIs refuse.

mod common;

use common::mock::provider_rules::{
    anthropic_messages_refusal, openai_chat_refusal, vllm_chat_refusal,
};
use common::{client, fixture, Gateway, MockUpstream, Recorded, Reply};
use serde_json::{json, Value};

const MASTER: &str = "gw-master-coding-agents-test-012345678";
const ANT_KEY: &str = "sk-ant-provider-coding-agents-test";
const OAI_KEY: &str = "sk-oai-provider-coding-agents-test";
const BETAS: &str =
    "claude-code-20250219,interleaved-thinking-2025-05-14,mid-conversation-system-2026-04-07";
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

/// Answers like the real APIs, refusals included.
fn validating_provider(rec: &Recorded) -> Reply {
    let path = rec.uri.split('?').next().unwrap_or_default();
    match path {
        "/v1/messages" => anthropic_messages_refusal(rec)
            .unwrap_or_else(|| Reply::json(200, fixture("anthropic/messages.json"))),
        "/v1/chat/completions" => openai_chat_refusal(rec)
            .unwrap_or_else(|| Reply::json(200, fixture("openai/chat_completion.json"))),
        "/vllm/chat/completions" => vllm_chat_refusal(rec)
            .unwrap_or_else(|| Reply::json(200, fixture("openai/chat_completion.json"))),
        _ => Reply::json(404, "{}"),
    }
}

fn gateway_for(mock: &MockUpstream) -> Gateway {
    let yaml = format!(
        "providers:\n  vllm:\n    base_url: '{}'\n    models:\n      - {{id: qwen3-coder, max_output_tokens: 8192, reasoning: true}}\n      - llama-3.1-8b\nmodels:\n  limits:\n    gpt-4o-mini: {{max_output_tokens: 16384}}\n",
        mock.url("/vllm")
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
        ],
    )
}

/// A request of Claude Code's shape: its fields, a mid-conversation system message, and
/// a Read tool loop whose result is a PNG.
fn claude_code_request(model: &str) -> Value {
    json!({
        "model": model,
        "max_tokens": 32000,
        "stream": false,
        "thinking": {"type": "enabled", "budget_tokens": 31999, "display": "omitted"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "metadata": {"user_id": "{\"device_id\":\"1a66e36cc4f2139776185a124eca42a20d8aa7c24c3f6a6017e4efa2b6d668f3\",\"session_id\":\"e63f980f\"}"},
        "system": [
            {"type": "text", "text": "x-billing-header: cc_version=2.1"},
            {"type": "text", "text": "You are a coding agent.", "cache_control": {"type": "ephemeral"}}
        ],
        "tools": [
            {"name": "Read", "description": "Reads a file",
             "input_schema": {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
                "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]}},
            {"name": "DeferredToolPlaceholder", "description": "later", "defer_loading": true,
             "input_schema": {"type": "object", "properties": {}}}
        ],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>context</system-reminder>"},
                {"type": "text", "text": "What is in /tmp/dot.png?", "cache_control": {"type": "ephemeral"}}
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "", "signature": "sig"},
                {"type": "tool_use", "id": "toolu_01", "name": "Read", "input": {"file_path": "/tmp/dot.png"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
                ]}
            ]},
            {"role": "system", "content": [{"type": "text", "text": "The user changed the plan mode."}]},
            {"role": "user", "content": "Describe it."}
        ]
    })
}

async fn post_messages(gw: &Gateway, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(gw.url(path))
        .header("x-api-key", MASTER)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", BETAS)
        .header("anthropic-dangerous-direct-browser-access", "true")
        .header("x-app", "cli")
        .json(body)
        .send()
        .await
        .unwrap()
}

fn sent(rec: &Recorded) -> Value {
    serde_json::from_slice(&rec.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_codes_request_reaches_an_openai_model_as_openai_accepts_it() {
    let mock = MockUpstream::start(validating_provider).await;
    let gw = gateway_for(&mock);
    let resp = post_messages(
        &gw,
        "/v1/messages?beta=true",
        &claude_code_request("openai:gpt-4o-mini"),
    )
    .await;
    let status = resp.status();
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["type"], "message");

    let rec = mock.last();
    // The beta query and Anthropic's headers mean nothing to OpenAI.
    assert_eq!(rec.uri, "/v1/chat/completions");
    for name in [
        "anthropic-version",
        "anthropic-beta",
        "anthropic-dangerous-direct-browser-access",
    ] {
        assert!(rec.header(name).is_none(), "{name} reached OpenAI");
    }
    assert_eq!(rec.header("x-app"), Some("cli"));
    let body = sent(&rec);
    // OpenAI's own name for the limit, lowered to the configured ceiling.
    assert_eq!(body["max_completion_tokens"], 16384);
    assert!(body.get("max_tokens").is_none());
    // gpt-4o-mini does not reason.
    assert!(body.get("reasoning_effort").is_none());
    assert!(body["user"].as_str().unwrap().chars().count() <= 64);
    let roles: Vec<&str> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        [
            "system",
            "user",
            "assistant",
            "tool",
            "user",
            "system",
            "user"
        ]
    );
    let messages = &body["messages"];
    assert_eq!(
        messages[0]["content"],
        "x-billing-header: cc_version=2.1\n\nYou are a coding agent."
    );
    assert_eq!(messages[3]["tool_call_id"], "toolu_01");
    assert_eq!(
        messages[4]["content"],
        json!([
            {"type": "text", "text": "Attached by tool call toolu_01:"},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}}
        ])
    );
    assert_eq!(messages[5]["content"], "The user changed the plan mode.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reasoning_models_get_reasoning_effort_and_max_completion_tokens() {
    let mock = MockUpstream::start(validating_provider).await;
    let gw = gateway_for(&mock);
    let mut req = claude_code_request("openai:o3-mini");
    let resp = post_messages(&gw, "/v1/messages", &req).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let body = sent(&mock.last());
    assert_eq!(body["reasoning_effort"], "high");
    assert_eq!(body["max_completion_tokens"], 32000);

    // An explicit effort wins over the budget.
    req["output_config"] = json!({"effort": "low"});
    let resp = post_messages(&gw, "/v1/messages", &req).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(sent(&mock.last())["reasoning_effort"], "low");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_compatible_servers_keep_max_tokens_and_configured_model_traits() {
    let mock = MockUpstream::start(validating_provider).await;
    let gw = gateway_for(&mock);
    let resp = post_messages(
        &gw,
        "/v1/messages",
        &claude_code_request("vllm/qwen3-coder"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let rec = mock.last();
    assert_eq!(rec.uri, "/vllm/chat/completions");
    let body = sent(&rec);
    assert_eq!(body["max_tokens"], 8192);
    assert!(body.get("max_completion_tokens").is_none());
    assert_eq!(body["reasoning_effort"], "high");

    // A model with no traits configured, whose name says nothing: no effort, no ceiling.
    let resp = post_messages(
        &gw,
        "/v1/messages",
        &claude_code_request("vllm/llama-3.1-8b"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body = sent(&mock.last());
    assert_eq!(body["max_tokens"], 32000);
    assert!(body.get("reasoning_effort").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_format_providers_get_the_beta_query_and_headers_as_sent() {
    let mock = MockUpstream::start(validating_provider).await;
    let gw = gateway_for(&mock);
    let req = claude_code_request("anthropic:claude-sonnet-4-5");
    let resp = post_messages(&gw, "/v1/messages?beta=true", &req).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let rec = mock.last();
    assert_eq!(rec.uri, "/v1/messages?beta=true");
    assert_eq!(rec.header("anthropic-beta"), Some(BETAS));
    let mut expected = req.clone();
    expected["model"] = json!("claude-sonnet-4-5");
    assert_eq!(sent(&rec), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_validating_mocks_refuse_what_the_real_apis_refuse() {
    let mock = MockUpstream::start(validating_provider).await;
    let openai = |body: Value| {
        let body = bytes::Bytes::from(body.to_string());
        openai_chat_refusal(&Recorded {
            method: "POST".into(),
            uri: "/v1/chat/completions".into(),
            headers: http::HeaderMap::new(),
            body_len: body.len(),
            body,
        })
    };
    let user = json!([{"role": "user", "content": "x"}]);
    let call = |id: &str| json!({"id": id, "type": "function", "function": {"name": "f", "arguments": "{}"}});
    let calls = json!({"role": "assistant", "content": null, "tool_calls": [call("a"), call("b")]});
    let result = |id: &str| json!({"role": "tool", "tool_call_id": id, "content": "r"});
    let pdf = json!([{"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"}}]);
    for taken in [
        json!({"model": "gpt-4o-mini", "max_tokens": 16384, "messages": user}),
        json!({"model": "gpt-5", "parallel_tool_calls": false, "messages": user}),
        json!({"model": "m", "stop": ["1", "2", "3", "4"], "messages": user}),
        json!({"model": "m", "messages": [user[0], calls, result("b"), result("a"), user[0]]}),
        json!({"model": "m", "messages": [{"role": "user", "content": pdf}]}),
    ] {
        assert!(openai(taken.clone()).is_none(), "{taken}");
    }
    for refused in [
        json!({"model": "gpt-4o-mini", "max_tokens": 32000, "messages": user}),
        json!({"model": "o3-mini", "max_tokens": 5, "messages": user}),
        json!({"model": "m", "top_k": 5, "messages": user}),
        json!({"model": "m", "messages": [{"role": "robot", "content": "x"}]}),
        json!({"model": "m", "messages": [{"role": "tool", "tool_call_id": "t",
            "content": [{"type": "image_url", "image_url": {"url": "data:"}}]}]}),
        json!({"model": "o3-mini", "parallel_tool_calls": false, "messages": user}),
        json!({"model": "m", "stop": ["1", "2", "3", "4", "5"], "messages": user}),
        json!({"model": "m", "messages": [user[0], calls, result("a"), user[0], result("b")]}),
        json!({"model": "m", "messages": [user[0], calls, result("a")]}),
        json!({"model": "m", "messages": [user[0], result("a")]}),
    ] {
        assert!(openai(refused.clone()).is_some(), "{refused}");
    }
    let vllm = |body: Value| {
        let body = bytes::Bytes::from(body.to_string());
        vllm_chat_refusal(&Recorded {
            method: "POST".into(),
            uri: "/vllm/chat/completions".into(),
            headers: http::HeaderMap::new(),
            body_len: body.len(),
            body,
        })
    };
    assert!(vllm(json!({"model": "m", "messages": [{"role": "user", "content": pdf}]})).is_some());
    assert!(vllm(json!({"model": "m", "messages": user})).is_none());
    // Anthropic: a system role needs its beta, and a tool result needs its call.
    let gw = gateway_for(&mock);
    let mut req = claude_code_request("anthropic:claude-sonnet-4-5");
    let resp = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", MASTER)
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    req["messages"][1]["content"][1]["id"] = json!("toolu_other");
    let resp = post_messages(&gw, "/v1/messages", &req).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("tool_use_id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_base_url_answers_head_and_get_without_a_key() {
    let mock = MockUpstream::start(validating_provider).await;
    let gw = gateway_for(&mock);
    for method in [reqwest::Method::HEAD, reqwest::Method::GET] {
        let resp = client()
            .request(method.clone(), gw.url("/"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{method}");
        assert_eq!(resp.bytes().await.unwrap().len(), 0);
    }
    let resp = client().post(gw.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert!(mock.requests().is_empty());
}
