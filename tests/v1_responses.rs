//! `/v1/responses`, the OpenAI Responses API, on every provider: OpenAI's own
//! answers it natively, Anthropic-format providers and chat-only OpenAI-compatible
//! servers are translated, with the gateway keeping stored responses for
//! `previous_response_id`. The mock providers refuse what the real APIs refuse.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::mock::provider_rules::{anthropic_messages_refusal, openai_chat_refusal};
use common::{client, fixture, sha256_hex, Gateway, MockUpstream, Recorded, Reply};
use serde_json::{json, Value};

const MASTER: &str = "gw-master-responses-test-012345678";
const ANT_KEY: &str = "sk-ant-provider-responses-test";
const OAI_KEY: &str = "sk-oai-provider-responses-test";

/// What the Anthropic mock answers: a text answer (JSON when `output_config.format` asks
/// for it), unless the last user turn asks for a tool call or thinking by name.
fn anthropic_answer(rec: &Recorded) -> Value {
    let body: Value = serde_json::from_slice(&rec.body).unwrap();
    let last = body["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .to_string();
    let mut message: Value = serde_json::from_str(&fixture("anthropic/messages.json")).unwrap();
    message["model"] = body["model"].clone();
    if body["output_config"]["format"].is_object() {
        // Structured outputs: the JSON, as the message's text.
        message["content"] = json!([{"type": "text", "text": r#"{"verdict":"ok"}"#}]);
    } else if last.contains("spawn") {
        message["content"] = json!([{"type": "tool_use", "id": "toolu_spawn_1",
            "name": "multi_agent_v1__spawn_agent", "input": {"task": "lint"}}]);
        message["stop_reason"] = json!("tool_use");
    } else if last.contains("think") {
        message["content"] = json!([
            {"type": "thinking", "thinking": "Let me run ls.", "signature": "sig-abc"},
            {"type": "tool_use", "id": "toolu_ls_1", "name": "exec_command", "input": {"cmd": "ls"}}
        ]);
        message["stop_reason"] = json!("tool_use");
    }
    message
}

fn anthropic_stream_of(message: &Value) -> Vec<(Duration, Bytes)> {
    let mut events = Vec::new();
    let mut start = message.clone();
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    events.push((
        "message_start",
        json!({"type": "message_start", "message": start}),
    ));
    for (i, block) in message["content"].as_array().unwrap().iter().enumerate() {
        let (opening, delta) = match block["type"].as_str().unwrap() {
            "text" => (
                json!({"type": "text", "text": ""}),
                json!({"type": "text_delta", "text": block["text"]}),
            ),
            "tool_use" => (
                json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}),
                json!({"type": "input_json_delta", "partial_json": block["input"].to_string()}),
            ),
            _ => (
                json!({"type": "thinking", "thinking": ""}),
                json!({"type": "thinking_delta", "thinking": block["thinking"]}),
            ),
        };
        events.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": i, "content_block": opening}),
        ));
        events.push((
            "content_block_delta",
            json!({"type": "content_block_delta", "index": i, "delta": delta}),
        ));
        if block["type"] == "thinking" {
            events.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": i,
                    "delta": {"type": "signature_delta", "signature": block["signature"]}}),
            ));
        }
        events.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": i}),
        ));
    }
    events.push((
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": message["stop_reason"]},
            "usage": {"output_tokens": message["usage"]["output_tokens"]}}),
    ));
    events.push(("message_stop", json!({"type": "message_stop"})));
    events
        .into_iter()
        .map(|(name, data)| {
            (
                Duration::ZERO,
                Bytes::from(format!("event: {name}\ndata: {data}\n\n")),
            )
        })
        .collect()
}

fn sse(chunks: Vec<(Duration, Bytes)>) -> Reply {
    Reply::Stream {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        chunks,
    }
}

fn provider(rec: &Recorded) -> Reply {
    let path = rec.uri.split('?').next().unwrap_or_default();
    let body: Value = serde_json::from_slice(&rec.body).unwrap_or(Value::Null);
    let stream = body["stream"] == true;
    match path {
        "/v1/messages" => {
            if let Some(refusal) = anthropic_messages_refusal(rec) {
                return refusal;
            }
            let message = anthropic_answer(rec);
            if stream {
                sse(anthropic_stream_of(&message))
            } else {
                Reply::json(200, message.to_string())
            }
        }
        "/v1/responses" => Reply::json(200, fixture("openai/responses.json")),
        "/vllm/chat/completions" => {
            if let Some(refusal) = openai_chat_refusal(rec) {
                return refusal;
            }
            if stream {
                let stream = fixture("openai/chat_completion_stream.txt");
                sse(vec![(Duration::ZERO, Bytes::from(stream))])
            } else {
                Reply::json(200, fixture("openai/chat_completion.json"))
            }
        }
        _ => Reply::json(404, "{}"),
    }
}

fn gateway_for(mock: &MockUpstream) -> Gateway {
    let yaml = format!(
        "providers:\n  vllm:\n    base_url: '{}'\n",
        mock.url("/vllm")
    );
    gateway_with(mock, &yaml)
}

/// Anthropic and OpenAI at `mock`, and `yaml`.
fn gateway_with(mock: &MockUpstream, yaml: &str) -> Gateway {
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

async fn post(gw: &Gateway, body: &Value) -> reqwest::Response {
    client()
        .post(gw.url("/v1/responses"))
        .bearer_auth(MASTER)
        .header("openai-beta", "responses=v1")
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn ok_json(resp: reqwest::Response) -> Value {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn sent(rec: &Recorded) -> Value {
    serde_json::from_slice(&rec.body).unwrap()
}

/// The `data` of every event of an SSE body, in order.
fn events(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anthropic_model_answers_in_responses_shape() {
    let mock = MockUpstream::start(provider).await;
    let gw = gateway_for(&mock);
    let resp = post(
        &gw,
        &json!({"model": "anthropic:claude-sonnet-4-5", "input": "Hi", "instructions": "Be brief.",
            "max_output_tokens": 100}),
    )
    .await;
    let answer = ok_json(resp).await;
    assert_eq!(answer["object"], "response");
    assert!(answer["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(answer["status"], "completed");
    assert_eq!(answer["model"], "anthropic:claude-sonnet-4-5");
    let message = &answer["output"][0];
    assert_eq!(message["type"], "message");
    assert_eq!(message["content"][0]["type"], "output_text");
    assert!(answer["usage"]["input_tokens"].as_u64().unwrap() > 0);

    let rec = mock.last();
    assert_eq!(rec.uri, "/v1/messages");
    assert_eq!(rec.header("x-api-key"), Some(ANT_KEY));
    assert!(rec.header("openai-beta").is_none());
    let body = sent(&rec);
    assert_eq!(body["model"], "claude-sonnet-4-5");
    assert_eq!(body["system"], "Be brief.");
    assert_eq!(body["max_tokens"], 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anthropic_stream_becomes_the_responses_event_sequence() {
    let mock = MockUpstream::start(provider).await;
    let gw = gateway_for(&mock);
    let resp = post(
        &gw,
        &json!({"model": "anthropic:claude-sonnet-4-5", "input": "Hi", "stream": true}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = resp.text().await.unwrap();
    let events = events(&text);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"response.created"));
    assert_eq!(kinds.last(), Some(&"response.completed"));
    for kind in [
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_item.done",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing: {kinds:?}");
    }
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["sequence_number"], i, "{event}");
    }
}

/// A chat server's throttle, in words that also name tokens.
const THROTTLED: &str = r#"data: {"error":{"message":"Too many tokens, please wait before trying again.","type":"rate_limit_error","param":null,"code":"rate_limit_exceeded"}}"#;

/// A stream that breaks off mid-way: the message's first events, then `error`, of
/// Anthropic (`overloaded_error`) or of a chat server (a prompt too long, or for the
/// model `throttled` a rate limit, in OpenAI's envelope), as the path asks.
fn failing_mid_stream(rec: &Recorded) -> Reply {
    if rec.path() == "/vllm/chat/completions" {
        let throttled = String::from_utf8_lossy(&rec.body).contains(r#""model":"throttled""#);
        return Reply::sse(
            [
                r#"data: {"id":"c1","object":"chat.completion.chunk","model":"qwen3","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]}"#,
                if throttled {
                    THROTTLED
                } else {
                    r#"data: {"error":{"message":"This model's maximum context length is 32768 tokens.","type":"invalid_request_error","param":null,"code":"context_length_exceeded"}}"#
                },
            ]
            .map(|e| Bytes::from(format!("{e}\n\n"))),
        );
    }
    let mut events = anthropic_stream_of(&anthropic_answer(rec));
    let stop = events
        .iter()
        .position(|(_, e)| e.starts_with(b"event: content_block_stop"))
        .unwrap();
    events.truncate(stop);
    let error =
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
    events.push((
        Duration::ZERO,
        Bytes::from(format!("event: error\ndata: {error}\n\n")),
    ));
    sse(events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_fails_mid_way_ends_with_an_error_then_response_failed() {
    // Codex reads a failure from `response.failed` alone: after an error event only, it
    // reports the stream cut and sends the request again, five times.
    let mock = MockUpstream::start(failing_mid_stream).await;
    let gw = gateway_for(&mock);
    for (model, code, message) in [
        (
            "anthropic:claude-sonnet-4-5",
            "server_is_overloaded",
            "Overloaded",
        ),
        (
            "vllm/qwen3",
            "context_length_exceeded",
            "This model's maximum context length is 32768 tokens.",
        ),
        // A throttle that speaks of tokens is no prompt too long: Codex waits it out
        // rather than stop.
        (
            "vllm/throttled",
            "rate_limit_exceeded",
            "Too many tokens, please wait before trying again.",
        ),
    ] {
        let resp = post(&gw, &json!({"model": model, "input": "Hi", "stream": true})).await;
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        let events = events(&text);
        let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert!(kinds.contains(&"response.output_text.delta"), "{text}");
        assert_eq!(
            kinds[kinds.len() - 2..],
            ["error", "response.failed"],
            "{text}"
        );
        for (i, event) in events.iter().enumerate() {
            assert_eq!(event["sequence_number"], i, "{event}");
        }
        let terminal = [
            "response.completed",
            "response.incomplete",
            "response.failed",
        ];
        let ends = kinds.iter().filter(|k| terminal.contains(k)).count();
        assert_eq!(ends, 1, "{text}");
        let error = &events[events.len() - 2];
        assert_eq!(
            (&error["code"], &error["message"]),
            (&json!(code), &json!(message))
        );
        // The response the stream began, failed with the same code and message.
        let failed = &events[events.len() - 1]["response"];
        assert_eq!(failed["id"], events[0]["response"]["id"], "{model}");
        assert_eq!(failed["model"], model);
        assert_eq!(failed["status"], "failed");
        assert_eq!(failed["error"], json!({"code": code, "message": message}));
        assert_eq!(failed["output"], json!([]), "the message never finished");
    }
    // Nothing was asked again.
    assert_eq!(mock.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_answers_the_responses_api_itself() {
    let mock = MockUpstream::start(provider).await;
    let gw = gateway_for(&mock);
    let request = json!({"model": "openai:gpt-4o", "input": "Hi", "store": true, "tools": [{"type": "web_search"}]});
    let resp = post(&gw, &request).await;
    assert!(resp.headers().get("x-aurora-omitted-tools").is_none());
    let answer = ok_json(resp).await;
    let recorded: Value = serde_json::from_str(&fixture("openai/responses.json")).unwrap();
    assert_eq!(answer, recorded);
    let rec = mock.last();
    assert_eq!(rec.uri, "/v1/responses");
    let mut expected = request.clone();
    expected["model"] = json!("gpt-4o");
    assert_eq!(sent(&rec), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_only_server_is_reached_through_chat_completions() {
    let mock = MockUpstream::start(provider).await;
    let gw = gateway_for(&mock);
    let answer = ok_json(
        post(
            &gw,
            &json!({"model": "vllm/qwen3", "input": [{"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]}],
                "max_output_tokens": 64}),
        )
        .await,
    )
    .await;
    assert_eq!(answer["object"], "response");
    assert_eq!(answer["output"][0]["type"], "message");
    let rec = mock.last();
    assert_eq!(rec.uri, "/vllm/chat/completions");
    let body = sent(&rec);
    assert_eq!(body["model"], "qwen3");
    assert_eq!(body["max_tokens"], 64);
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );

    let resp = post(
        &gw,
        &json!({"model": "vllm/qwen3", "input": "Hi", "stream": true}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let events = events(&resp.text().await.unwrap());
    assert_eq!(events.first().unwrap()["type"], "response.created");
    assert_eq!(events.last().unwrap()["type"], "response.completed");
}

/// What Codex sends for `codex exec --output-schema schema.json`.
fn codex_output_schema(model: &str) -> (Value, Value) {
    let schema = json!({"type": "object", "properties": {"verdict": {"type": "string"}},
        "required": ["verdict"], "additionalProperties": false});
    let body = json!({"model": model, "input": "Review the change.", "stream": true,
        "store": false, "text": {"verbosity": "medium", "format": {"type": "json_schema",
            "name": "codex_output_schema", "strict": true, "schema": schema}}});
    (body, schema)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_output_schema_reaches_claude_as_output_config_format() {
    let mock = MockUpstream::start(provider).await;
    let gw = gateway_for(&mock);
    let (body, schema) = codex_output_schema("anthropic:claude-sonnet-4-5");
    let resp = post(&gw, &body).await;
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    // The mock refuses any other shape (a `name` or `strict` beside the schema).
    let sent = sent(&mock.last());
    assert_eq!(
        sent["output_config"],
        json!({"format": {"type": "json_schema", "schema": schema}})
    );
    // The JSON comes back as the output text Codex reads.
    let events = events(&text);
    let done = events.last().unwrap();
    assert_eq!(done["type"], "response.completed");
    assert_eq!(
        done["response"]["output"][0]["content"][0]["text"],
        r#"{"verdict":"ok"}"#
    );
    assert_eq!(
        done["response"]["text"]["format"]["name"],
        "codex_output_schema"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_output_schema_reaches_a_chat_server_as_response_format() {
    let mock = MockUpstream::start(provider).await;
    let gw = gateway_for(&mock);
    let (mut body, schema) = codex_output_schema("vllm/qwen3");
    body["stream"] = json!(false);
    // The mock refuses a `json_schema` without the `name` Chat requires.
    ok_json(post(&gw, &body).await).await;
    let got = sent(&mock.last());
    assert_eq!(
        got["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "codex_output_schema",
            "strict": true, "schema": schema}}),
        "{got}"
    );
    assert!(got.get("output_config").is_none(), "{got}");
    // JSON object mode, which a chat server has.
    let body = json!({"model": "vllm/qwen3", "input": "JSON please",
        "text": {"format": {"type": "json_object"}}});
    ok_json(post(&gw, &body).await).await;
    assert_eq!(
        sent(&mock.last())["response_format"],
        json!({"type": "json_object"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_responses_continue_a_conversation_and_can_be_read_and_deleted() {
    let mock = MockUpstream::start(provider).await;
    let gw = gateway_for(&mock);
    let first = ok_json(
        post(
            &gw,
            &json!({"model": "anthropic:claude-sonnet-4-5", "input": "first question"}),
        )
        .await,
    )
    .await;
    let id = first["id"].as_str().unwrap().to_string();
    let first_text = first["output"][0]["content"][0]["text"].clone();

    // Streamed, continuing the first.
    let resp = post(
        &gw,
        &json!({"model": "anthropic:claude-sonnet-4-5", "input": "second question",
            "previous_response_id": id, "stream": true}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let events = events(&resp.text().await.unwrap());
    let second = events.last().unwrap()["response"].clone();
    assert_eq!(second["previous_response_id"], id.as_str());
    let body = sent(&mock.last());
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "first question"}]},
            {"role": "assistant", "content": [{"type": "text", "text": first_text}]},
            {"role": "user", "content": [{"type": "text", "text": "second question"}]}
        ])
    );

    // The third continues the streamed second: its history holds all of it.
    let second_id = second["id"].as_str().unwrap();
    ok_json(
        post(
            &gw,
            &json!({"model": "anthropic:claude-sonnet-4-5", "input": "third", "previous_response_id": second_id}),
        )
        .await,
    )
    .await;
    assert_eq!(sent(&mock.last())["messages"].as_array().unwrap().len(), 5);

    let read = client()
        .get(gw.url(&format!("/v1/responses/{id}")))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(ok_json(read).await, first);
    let deleted = client()
        .delete(gw.url(&format!("/v1/responses/{id}")))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(
        ok_json(deleted).await,
        json!({"id": id, "object": "response", "deleted": true})
    );
    let gone = client()
        .get(gw.url(&format!("/v1/responses/{id}")))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    // An id made here is never OpenAI's: it is not asked.
    assert_ne!(mock.last().method, "GET");
    // One of OpenAI's own is asked of OpenAI, which keeps its own.
    let native = "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b";
    client()
        .get(gw.url(&format!("/v1/responses/{native}")))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    let asked = mock.last();
    assert_eq!(asked.method, "GET");
    assert_eq!(asked.uri, format!("/v1/responses/{native}"));
    assert_eq!(
        asked.header("authorization"),
        Some(format!("Bearer {OAI_KEY}").as_str())
    );

    // A conversation whose start is gone cannot go on.
    let requests = mock.requests().len();
    let resp = post(
        &gw,
        &json!({"model": "anthropic:claude-sonnet-4-5", "input": "more", "previous_response_id": second_id}),
    )
    .await;
    assert_eq!(resp.status(), 404);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["param"], "previous_response_id");
    assert_eq!(mock.requests().len(), requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_false_keeps_nothing() {
    let mock = MockUpstream::start(provider).await;
    let gw = gateway_for(&mock);
    let answer = ok_json(
        post(
            &gw,
            &json!({"model": "anthropic:claude-sonnet-4-5", "input": "x", "store": false}),
        )
        .await,
    )
    .await;
    let read = client()
        .get(gw.url(&format!("/v1/responses/{}", answer["id"].as_str().unwrap())))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 404);
}

fn codex_tools() -> Value {
    json!([
        {"type": "function", "name": "exec_command", "strict": false,
         "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}},
        {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents", "tools": [
            {"type": "function", "name": "spawn_agent", "parameters": {"type": "object", "properties": {"task": {"type": "string"}}}}
        ]},
        {"type": "web_search", "external_web_access": false}
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_tools_reach_anthropic_flattened_and_calls_come_back_namespaced() {
    let mock = MockUpstream::start(provider).await;
    let gw = gateway_for(&mock);
    for stream in [false, true] {
        let resp = post(
            &gw,
            &json!({"model": "anthropic:claude-sonnet-4-5", "stream": stream, "store": false,
                "tools": codex_tools(), "tool_choice": "auto", "parallel_tool_calls": true,
                "prompt_cache_key": "k", "client_metadata": {"a": "b"},
                "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "spawn a linter"}]}]}),
        )
        .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-aurora-omitted-tools"], "web_search");
        let text = resp.text().await.unwrap();
        let answer = if stream {
            events(&text).last().unwrap()["response"].clone()
        } else {
            serde_json::from_str(&text).unwrap()
        };
        let call = &answer["output"][0];
        assert_eq!(call["type"], "function_call", "{answer}");
        assert_eq!(call["name"], "spawn_agent");
        assert_eq!(call["namespace"], "multi_agent_v1");
        assert_eq!(call["call_id"], "toolu_spawn_1");
        assert_eq!(
            serde_json::from_str::<Value>(call["arguments"].as_str().unwrap()).unwrap(),
            json!({"task": "lint"})
        );
        let body = sent(&mock.last());
        let names: Vec<&str> = body["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["exec_command", "multi_agent_v1__spawn_agent"]);
        for hint in [
            "prompt_cache_key",
            "client_metadata",
            "store",
            "parallel_tool_calls",
        ] {
            assert!(body.get(hint).is_none(), "{hint} sent");
        }
    }
    // The access line is written once the answer has gone: waited for, not read at once.
    gw.wait_for_log("omitted_tools=web_search", 1).await;

    let resp = post(
        &gw,
        &json!({"model": "anthropic:claude-sonnet-4-5", "input": "x", "tools": codex_tools(),
            "tool_choice": {"type": "web_search"}}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["param"], "tool_choice");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("web_search"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thinking_round_trips_through_encrypted_content_without_a_store() {
    let mock = MockUpstream::start(provider).await;
    let gw = gateway_for(&mock);
    let first_input = json!([{"role": "user", "content": "think, then list files"}]);
    let first = ok_json(
        post(
            &gw,
            &json!({"model": "anthropic:claude-sonnet-4-5", "store": false, "tools": codex_tools(),
                "include": ["reasoning.encrypted_content"], "reasoning": {"effort": "low", "summary": "auto"},
                "input": first_input}),
        )
        .await,
    )
    .await;
    let reasoning = first["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "reasoning")
        .unwrap()
        .clone();
    assert!(reasoning["encrypted_content"].is_string(), "{first}");
    let call = first["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "function_call")
        .unwrap()
        .clone();
    assert_eq!(call["name"], "exec_command");

    // Codex sends the whole turn back, with the call's output.
    let mut input = first_input.as_array().unwrap().clone();
    input.push(reasoning);
    input.push(call.clone());
    input.push(
        json!({"type": "function_call_output", "call_id": call["call_id"], "output": "a.txt"}),
    );
    ok_json(
        post(
            &gw,
            &json!({"model": "anthropic:claude-sonnet-4-5", "store": false, "tools": codex_tools(),
                "include": ["reasoning.encrypted_content"], "reasoning": {"effort": "low"}, "input": input}),
        )
        .await,
    )
    .await;
    let body = sent(&mock.last());
    assert_eq!(
        body["messages"][1]["content"],
        json!([
            {"type": "thinking", "thinking": "Let me run ls.", "signature": "sig-abc"},
            {"type": "tool_use", "id": "toolu_ls_1", "name": "exec_command", "input": {"cmd": "ls"}}
        ])
    );
    assert_eq!(
        body["messages"][2]["content"][0],
        json!({"type": "tool_result", "tool_use_id": "toolu_ls_1", "content": "a.txt"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_errors_use_openais_envelope() {
    let mock = MockUpstream::start(provider).await;
    let gw = gateway_for(&mock);
    let no_key = client()
        .post(gw.url("/v1/responses"))
        .json(&json!({"model": "anthropic:claude-sonnet-4-5", "input": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), 401);
    let err: Value = no_key.json().await.unwrap();
    assert_eq!(err["error"]["type"], "authentication_error");
    let resp = post(
        &gw,
        &json!({"model": "anthropic:claude-sonnet-4-5", "input": "x", "background": true}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["param"], "background");
    let resp = post(
        &gw,
        &json!({"model": "anthropic:claude-sonnet-4-5", "input": "x", "previous_response_id": "resp_unknown"}),
    )
    .await;
    assert_eq!(resp.status(), 404);
    let resp = client()
        .put(gw.url("/v1/responses/resp_x"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_response_is_read_continued_and_deleted_by_its_caller_alone() {
    // Two teams on one gateway: as at a provider, where a project's responses are its
    // own, one team cannot read, continue or delete the other's, whatever ids it holds.
    const TEAM_A: &str = "aur_responses_team_a_key_0123456789abcdef";
    const TEAM_B: &str = "aur_responses_team_b_key_0123456789abcdef";
    let mock = MockUpstream::start(provider).await;
    let yaml = format!(
        "auth:\n  keys:\n    - name: team-a\n      sha256: \"{}\"\n    - name: team-b\n      sha256: \"{}\"\n",
        sha256_hex(TEAM_A),
        sha256_hex(TEAM_B)
    );
    let gw = gateway_with(&mock, &yaml);
    let call = |key: &'static str, body: Value| {
        client()
            .post(gw.url("/v1/responses"))
            .bearer_auth(key)
            .json(&body)
            .send()
    };
    let on = |method: reqwest::Method, key: &'static str, id: &str| {
        client()
            .request(method, gw.url(&format!("/v1/responses/{id}")))
            .bearer_auth(key)
            .send()
    };
    let first = ok_json(
        call(
            TEAM_A,
            json!({"model": "anthropic:claude-sonnet-4-5", "input": "team a's question"}),
        )
        .await
        .unwrap(),
    )
    .await;
    let id = first["id"].as_str().unwrap().to_string();

    for key in [TEAM_B, MASTER] {
        let read = on(reqwest::Method::GET, key, &id).await.unwrap();
        assert_eq!(read.status(), 404, "read by another");
        assert!(!read.text().await.unwrap().contains("team a"));
        let continued = call(
            key,
            json!({"model": "anthropic:claude-sonnet-4-5", "input": "go on", "previous_response_id": id}),
        )
        .await
        .unwrap();
        assert_eq!(continued.status(), 404, "continued by another");
        let deleted = on(reqwest::Method::DELETE, key, &id).await.unwrap();
        assert_ne!(deleted.status(), 200, "deleted by another");
    }
    // Nor was it looked for at OpenAI, with whatever key the other caller brought.
    assert!(mock.requests().iter().all(|r| r.method != "GET"));
    // Still team A's, whole.
    let read = on(reqwest::Method::GET, TEAM_A, &id).await.unwrap();
    assert_eq!(ok_json(read).await, first);
    let continued = call(
        TEAM_A,
        json!({"model": "anthropic:claude-sonnet-4-5", "input": "go on", "previous_response_id": id}),
    )
    .await
    .unwrap();
    assert_eq!(continued.status(), 200);
    let deleted = on(reqwest::Method::DELETE, TEAM_A, &id).await.unwrap();
    assert_eq!(deleted.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_larger_than_a_request_may_be_is_refused_not_rebuilt() {
    // Each turn fits the body limit; the conversation they make goes upstream whole
    // with the next, and past the limit the gateway does not build it.
    let mock = MockUpstream::start(provider).await;
    let gw = gateway_with(&mock, "server:\n  body_size_limit: 4KiB\n");
    let turn = |previous: Option<&str>| {
        let mut body = json!({"model": "anthropic:claude-sonnet-4-5", "input": "w".repeat(1500)});
        if let Some(id) = previous {
            body["previous_response_id"] = json!(id);
        }
        body
    };
    let first = ok_json(post(&gw, &turn(None)).await).await;
    let second = ok_json(post(&gw, &turn(first["id"].as_str())).await).await;
    let asked = mock.requests().len();
    let third = post(&gw, &turn(second["id"].as_str())).await;
    assert_eq!(third.status(), 413);
    let err: Value = third.json().await.unwrap();
    assert_eq!(err["error"]["code"], "request_too_large", "{err}");
    assert_eq!(err["error"]["param"], "previous_response_id", "{err}");
    assert_eq!(mock.requests().len(), asked, "nothing went upstream");

    // Within the body limit, the conversation is held against the gateway's budget
    // for bodies held at once, as the body is.
    let gw = gateway_with(&mock, "server:\n  max_buffered_bytes: 4600\n");
    let first = ok_json(post(&gw, &turn(None)).await).await;
    let second = ok_json(post(&gw, &turn(first["id"].as_str())).await).await;
    let third = post(&gw, &turn(second["id"].as_str())).await;
    assert_eq!(third.status(), 503, "past the budget for bodies held");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_request_without_max_output_tokens_is_not_cut_at_the_default() {
    let mock = MockUpstream::start(provider).await;
    let gw = gateway_for(&mock);
    // Codex names no limit: OpenAI reads that as the model's own maximum.
    let codex =
        |model: &str| json!({"model": model, "input": "write the whole file", "stream": true});
    let resp = post(&gw, &codex("anthropic/claude-sonnet-4-5")).await;
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap();
    assert_eq!(sent(&mock.last())["max_tokens"], 64_000);
    let resp = post(&gw, &codex("anthropic/claude-3-5-haiku-latest")).await;
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap();
    assert_eq!(sent(&mock.last())["max_tokens"], 8_192);
    // A chat server is sent no limit at all.
    let resp = post(&gw, &codex("vllm/qwen3")).await;
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap();
    let body = sent(&mock.last());
    assert_eq!(mock.last().uri, "/vllm/chat/completions");
    assert!(
        body.get("max_tokens").is_none() && body.get("max_completion_tokens").is_none(),
        "{body}"
    );
    // An operator's default still applies, within the model's ceiling.
    let limited = gateway_with(
        &mock,
        &format!(
            "providers:\n  vllm:\n    base_url: '{}'\nmodels:\n  default_max_tokens: 2000\n",
            mock.url("/vllm")
        ),
    );
    let resp = post(&limited, &codex("vllm/qwen3")).await;
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap();
    assert_eq!(sent(&mock.last())["max_tokens"], 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_reasoning_effort_reaches_a_chat_server_on_every_turn() {
    let mock = MockUpstream::start(provider).await;
    let yaml = format!(
        "providers:\n  vllm:\n    base_url: '{}'\n    models:\n      - {{id: qwen3, reasoning: true}}\n",
        mock.url("/vllm")
    );
    let gw = gateway_with(&mock, &yaml);
    // A turn answering a tool call, which Anthropic would take only without thinking.
    let body = json!({"model": "vllm/qwen3", "reasoning": {"effort": "high"},
        "temperature": 1.5, "max_output_tokens": 500, "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]},
        {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": "{\"cmd\":\"ls\"}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"}
    ], "tools": [{"type": "function", "name": "shell", "parameters": {"type": "object"}}]});
    ok_json(post(&gw, &body).await).await;
    let sent = sent(&mock.last());
    assert_eq!(sent["reasoning_effort"], "high", "{sent}");
    assert_eq!(sent["temperature"], 1.5, "{sent}");
    assert_eq!(sent["max_tokens"], 500, "{sent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deepseek_reasoning_returns_as_reasoning_content_in_a_tool_loop() {
    let mock = MockUpstream::start(|rec| {
        common::mock::provider_rules::deepseek_chat_refusal(rec)
            .unwrap_or_else(|| Reply::json(200, fixture("openai/chat_completion.json")))
    })
    .await;
    let yaml = format!(
        "providers:\n  deepseek: {{api_key: sk-deepseek-test-0123456789, base_url: '{}'}}\n",
        mock.url("/v1")
    );
    let gw = gateway_with(&mock, &yaml);
    // Codex sends back the reasoning item the gateway made from DeepSeek's
    // `reasoning_content` (its summary), the call and its output.
    let body = json!({"model": "deepseek/deepseek-reasoner", "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Run ls."}],
            "encrypted_content": null},
        {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": "{\"cmd\":\"ls\"}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"}
    ], "tools": [{"type": "function", "name": "shell", "parameters": {"type": "object"}}]});
    let answer = ok_json(post(&gw, &body).await).await;
    assert_eq!(answer["object"], "response");
    let sent = sent(&mock.last());
    let assistant = &sent["messages"][1];
    assert_eq!(assistant["role"], "assistant", "{sent}");
    assert_eq!(assistant["reasoning_content"], "Run ls.");
    assert_eq!(assistant["tool_calls"][0]["id"], "call_1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_codex_tool_loop_without_reasoning_summaries_continues_on_deepseek() {
    // DeepSeek's thinking mode refuses a tool-call turn without `reasoning_content`:
    // a reasoning item without summary, or a conversation begun elsewhere, has none.
    let mock = MockUpstream::start(|rec| {
        common::mock::provider_rules::deepseek_chat_refusal(rec)
            .unwrap_or_else(|| Reply::json(200, fixture("openai/chat_completion.json")))
    })
    .await;
    let yaml = format!(
        "providers:\n  deepseek: {{api_key: sk-deepseek-test-0123456789, base_url: '{}'}}\n",
        mock.url("/v1")
    );
    let gw = gateway_with(&mock, &yaml);
    let body = json!({"model": "deepseek/deepseek-reasoner", "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": null},
        {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": "{\"cmd\":\"ls\"}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"}
    ], "tools": [{"type": "function", "name": "shell", "parameters": {"type": "object"}}]});
    ok_json(post(&gw, &body).await).await;
    let sent = sent(&mock.last());
    assert_eq!(sent["messages"][1]["reasoning_content"], "", "{sent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_for_deepseek_becomes_a_note_that_it_was_left_out() {
    // DeepSeek's chat models read text only ("unknown variant `image_url`", 422).
    let mock = MockUpstream::start(|rec| {
        common::mock::provider_rules::deepseek_chat_refusal(rec)
            .unwrap_or_else(|| Reply::json(200, fixture("openai/chat_completion.json")))
    })
    .await;
    let yaml = format!(
        "providers:\n  deepseek: {{api_key: sk-deepseek-test-0123456789, base_url: '{}'}}\n",
        mock.url("/v1")
    );
    let gw = gateway_with(&mock, &yaml);
    let body = json!({"model": "deepseek/deepseek-chat", "input": [
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "what is this?"},
            {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}]}
    ]});
    ok_json(post(&gw, &body).await).await;
    let sent = sent(&mock.last());
    let content = sent["messages"][0]["content"].as_str().unwrap();
    assert!(content.starts_with("what is this?"), "{sent}");
    assert!(content.contains("image was left out"), "{sent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pdf_input_file_for_vllm_becomes_a_note_that_it_was_left_out() {
    // vLLM refuses a `file` part (400 "Unsupported chat content part type: 'file'").
    let mock = MockUpstream::start(|rec| {
        common::mock::provider_rules::vllm_chat_refusal(rec)
            .unwrap_or_else(|| Reply::json(200, fixture("openai/chat_completion.json")))
    })
    .await;
    let yaml = format!(
        "providers:\n  vllm: {{base_url: '{}'}}\n",
        mock.url("/vllm")
    );
    let gw = gateway_with(&mock, &yaml);
    let body = json!({"model": "vllm/qwen3-coder", "input": [
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "summarize"},
            {"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0xLjQK"}]}
    ]});
    ok_json(post(&gw, &body).await).await;
    let sent = sent(&mock.last());
    let content = sent["messages"][0]["content"].as_str().unwrap();
    assert!(content.starts_with("summarize"), "{sent}");
    assert!(content.contains("PDF file was left out"), "{sent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_message_after_a_function_call_output_reaches_mistral_in_its_order() {
    // Mistral refuses a user message right after a tool message (400, code 3230).
    let mock = MockUpstream::start(|rec| {
        common::mock::provider_rules::mistral_chat_refusal(rec)
            .unwrap_or_else(|| Reply::json(200, fixture("openai/chat_completion.json")))
    })
    .await;
    let yaml = format!(
        "providers:\n  mistral: {{type: mistral, api_key: sk-mistral-test-0123456789, base_url: '{}'}}\n",
        mock.url("/v1")
    );
    let gw = gateway_with(&mock, &yaml);
    let body = json!({"model": "mistral/devstral-medium", "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]},
        {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": "{\"cmd\":\"ls\"}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "now test"}]}
    ], "tools": [{"type": "function", "name": "shell", "parameters": {"type": "object"}}]});
    ok_json(post(&gw, &body).await).await;
    let sent = sent(&mock.last());
    let roles: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool"], "{sent}");
    assert_eq!(sent["messages"][2]["content"], "a.txt\n\nnow test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_history_from_an_openai_model_continues_on_claude() {
    let mock = MockUpstream::start(provider).await;
    let gw = gateway_for(&mock);
    // Begun on gpt-5-codex (freeform apply_patch, a hosted web search), then `/model`.
    let body = json!({"model": "anthropic/claude-sonnet-4-5", "stream": true, "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "fix it"}]},
        {"type": "web_search_call", "id": "ws_1", "status": "completed",
            "action": {"type": "search", "query": "rust error E0308"}},
        {"type": "custom_tool_call", "call_id": "call_p", "name": "apply_patch",
            "input": "*** Begin Patch\n*** End Patch\n"},
        {"type": "custom_tool_call_output", "call_id": "call_p", "output": "Success."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "now test"}]}
    ], "tools": codex_tools()});
    let resp = post(&gw, &body).await;
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("response.completed"), "{text}");
    let sent = sent(&mock.last());
    assert_eq!(sent["messages"][1]["content"][0]["name"], "apply_patch");
    assert_eq!(sent["messages"][2]["content"][0]["tool_use_id"], "call_p");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_thinking_tool_loop_continues_by_previous_response_id() {
    let mock = MockUpstream::start(provider).await;
    let gw = gateway_for(&mock);
    // The SDK's defaults: stored, no `include`.
    let first = ok_json(
        post(
            &gw,
            &json!({"model": "anthropic:claude-sonnet-4-5", "tools": codex_tools(),
                "reasoning": {"effort": "low"}, "input": "think, then list files"}),
        )
        .await,
    )
    .await;
    let call = first["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "function_call")
        .unwrap()
        .clone();
    let second = post(
        &gw,
        &json!({"model": "anthropic:claude-sonnet-4-5", "tools": codex_tools(),
            "reasoning": {"effort": "low"}, "previous_response_id": first["id"],
            "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "a.txt"}]}),
    )
    .await;
    let status = second.status();
    let text = second.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    let body = sent(&mock.last());
    assert_eq!(
        body["messages"][1]["content"][0],
        json!({"type": "thinking", "thinking": "Let me run ls.", "signature": "sig-abc"})
    );
}

/// Ollama's parallel calls, each whole in one chunk and all at `index: 0`
/// (ollama/ollama#15457), the second after a newline of text.
fn ollama_parallel_calls(_: &Recorded) -> Reply {
    Reply::sse(
        [
            r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","model":"qwen3-coder","choices":[{"index":0,"delta":{"role":"assistant","content":"","tool_calls":[{"id":"call_a","index":0,"type":"function","function":{"name":"file_write","arguments":"{\"filePath\":\"hello.py\"}"}}]},"finish_reason":null}]}"#,
            r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","model":"qwen3-coder","choices":[{"index":0,"delta":{"role":"assistant","content":"\n"},"finish_reason":null}]}"#,
            r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","model":"qwen3-coder","choices":[{"index":0,"delta":{"role":"assistant","content":"","tool_calls":[{"id":"call_b","index":0,"type":"function","function":{"name":"file_write","arguments":"{\"filePath\":\"world.py\"}"}}]},"finish_reason":null}]}"#,
            r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","model":"qwen3-coder","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"tool_calls"}]}"#,
            "data: [DONE]",
        ]
        .map(|e| Bytes::from(format!("{e}\n\n"))),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ollamas_parallel_calls_at_one_index_reach_a_responses_client_as_two_calls() {
    let mock = MockUpstream::start(ollama_parallel_calls).await;
    let yaml = format!(
        "providers:\n  ollama: {{base_url: '{}'}}\n",
        mock.url("/v1")
    );
    let gw = gateway_with(&mock, &yaml);
    let resp = post(
        &gw,
        &json!({"model": "ollama/qwen3-coder", "input": "write both files", "stream": true,
            "tools": [{"type": "function", "name": "file_write", "parameters": {"type": "object"}}]}),
    )
    .await;
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    let calls: Vec<(String, String)> = events(&text)
        .iter()
        .filter(|e| {
            e["type"] == "response.output_item.done" && e["item"]["type"] == "function_call"
        })
        .map(|e| {
            let field = |k: &str| e["item"][k].as_str().unwrap_or_default().to_owned();
            (field("call_id"), field("arguments"))
        })
        .collect();
    assert_eq!(
        calls,
        [
            ("call_a".into(), r#"{"filePath":"hello.py"}"#.into()),
            ("call_b".into(), r#"{"filePath":"world.py"}"#.into())
        ],
        "{text}"
    );
    assert!(text.contains("response.completed"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_keep_alive_comments_reach_a_responses_client() {
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
    let gw = gateway_with(&mock, &yaml);
    let resp = post(
        &gw,
        &json!({"model": "deepseek/deepseek-chat", "input": "Hi", "stream": true}),
    )
    .await;
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.starts_with(": keep-alive\n\n"), "{text}");
    assert_eq!(text.matches(": keep-alive").count(), 1, "{text}");
    assert_eq!(events(&text).last().unwrap()["type"], "response.completed");
}

/// OpenAI's Responses sub-endpoints as its API answers them, refusing what it refuses
/// (`compact` without a model; ids it does not have), else [`provider`].
fn openai_responses_parts(rec: &Recorded) -> Reply {
    const NATIVE: &str = "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b";
    let body: Value = serde_json::from_slice(&rec.body).unwrap_or(Value::Null);
    match (rec.method.as_str(), rec.path()) {
        ("POST", "/v1/responses/input_tokens") => Reply::json(
            200,
            r#"{"object":"response.input_tokens","input_tokens":11}"#,
        ),
        ("POST", "/v1/responses/compact") if body["model"].is_string() => Reply::json(
            200,
            json!({"id": "resp_compact_1", "object": "response.compaction", "created_at": 1700000000,
                "output": [{"id": "cmp_1", "type": "compaction", "encrypted_content": "opaque"}],
                "usage": {"input_tokens": 10, "output_tokens": 12, "total_tokens": 22,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens_details": {"reasoning_tokens": 0}}})
            .to_string(),
        ),
        ("POST", "/v1/responses/compact") => Reply::json(
            400,
            r#"{"error":{"message":"Missing required parameter: 'model'.","type":"invalid_request_error","param":"model","code":"missing_required_parameter"}}"#,
        ),
        ("GET", path) if path == format!("/v1/responses/{NATIVE}/input_items") => Reply::json(
            200,
            r#"{"object":"list","data":[],"first_id":null,"last_id":null,"has_more":false}"#,
        ),
        ("POST", path) if path == format!("/v1/responses/{NATIVE}/cancel") => Reply::json(
            200,
            json!({"id": NATIVE, "object": "response", "status": "cancelled"}).to_string(),
        ),
        (_, path) if path.starts_with("/v1/responses/resp_") => Reply::json(
            404,
            r#"{"error":{"message":"No response found.","type":"invalid_request_error","param":null,"code":null}}"#,
        ),
        _ => provider(rec),
    }
}

async fn post_to(gw: &Gateway, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(gw.url(path))
        .bearer_auth(MASTER)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_tokens_and_compact_reach_a_provider_serving_the_responses_api_itself() {
    let mock = MockUpstream::start(openai_responses_parts).await;
    let gw = gateway_for(&mock);
    let body = json!({"model": "openai/gpt-4o", "input": "count me"});
    let counted = ok_json(post_to(&gw, "/v1/responses/input_tokens", &body).await).await;
    assert_eq!(counted["input_tokens"], 11);
    let rec = mock.last();
    assert_eq!(rec.uri, "/v1/responses/input_tokens");
    assert_eq!(sent(&rec)["model"], "gpt-4o");
    let compacted = ok_json(post_to(&gw, "/v1/responses/compact", &body).await).await;
    assert_eq!(compacted["object"], "response.compaction");
    assert_eq!(mock.last().uri, "/v1/responses/compact");

    // Neither can be translated: a provider without the API is named, nothing sent.
    let asked = mock.requests().len();
    for model in ["anthropic/claude-sonnet-4-5", "vllm/llama-3"] {
        for path in ["/v1/responses/input_tokens", "/v1/responses/compact"] {
            let body = json!({"model": model, "input": "count me"});
            let resp = post_to(&gw, path, &body).await;
            assert_eq!(resp.status(), 400, "{path} {model}");
            let err: Value = resp.json().await.unwrap();
            assert_eq!(err["error"]["code"], "native_responses_api_required");
            assert!(err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("native Responses API"));
        }
    }
    assert_eq!(mock.requests().len(), asked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_responses_input_items_and_cancel_are_answered_here_and_others_forwarded() {
    let mock = MockUpstream::start(openai_responses_parts).await;
    let gw = gateway_for(&mock);
    let first = ok_json(
        post(
            &gw,
            &json!({"model": "anthropic:claude-sonnet-4-5", "input": "first question"}),
        )
        .await,
    )
    .await;
    let id = first["id"].as_str().unwrap().to_string();
    let asked = mock.requests().len();
    let get = |path: String| client().get(gw.url(&path)).bearer_auth(MASTER).send();
    let items = ok_json(
        get(format!("/v1/responses/{id}/input_items"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(items["object"], "list");
    assert_eq!(items["has_more"], false);
    assert_eq!(items["data"][0]["type"], "message");
    assert_eq!(items["data"][0]["content"][0]["text"], "first question");
    assert_eq!(items["first_id"], items["data"][0]["id"]);
    // Answered before it was stored, it was never a background response.
    let resp = post_to(&gw, &format!("/v1/responses/{id}/cancel"), &json!({})).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert_eq!(mock.requests().len(), asked, "the store answered");

    // An id made here but not stored is not OpenAI's either.
    let gone = "resp_0123456789abcdef0123456789abcdef";
    let resp = get(format!("/v1/responses/{gone}/input_items"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(mock.requests().len(), asked, "not asked of OpenAI");
    // One of OpenAI's own is asked of OpenAI, with its key.
    let native = "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b";
    let items = ok_json(
        get(format!("/v1/responses/{native}/input_items?limit=5"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(items["object"], "list");
    let rec = mock.last();
    assert_eq!(rec.method, "GET");
    assert_eq!(
        rec.uri,
        format!("/v1/responses/{native}/input_items?limit=5")
    );
    assert_eq!(
        rec.header("authorization"),
        Some(format!("Bearer {OAI_KEY}").as_str())
    );
    let cancelled =
        ok_json(post_to(&gw, &format!("/v1/responses/{native}/cancel"), &json!({})).await).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(mock.last().uri, format!("/v1/responses/{native}/cancel"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_translated_response_continued_on_openai_is_refused_not_sent_to_it() {
    // OpenAI never held a response this gateway made for Claude: sending it the id
    // would get "previous response not found" from OpenAI, with the gateway's key.
    let mock = MockUpstream::start(provider).await;
    let gw = gateway_for(&mock);
    let first = ok_json(
        post(
            &gw,
            &json!({"model": "anthropic:claude-sonnet-4-5", "input": "first question"}),
        )
        .await,
    )
    .await;
    let id = first["id"].as_str().unwrap();
    let asked = mock.requests().len();
    let resp = post(
        &gw,
        &json!({"model": "openai:gpt-4o", "input": "second", "previous_response_id": id}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["param"], "previous_response_id", "{err}");
    assert_eq!(err["error"]["code"], "previous_response_not_found", "{err}");
    assert_eq!(mock.requests().len(), asked, "OpenAI was asked");
    // A response OpenAI made itself is still continued there.
    let resp = post(
        &gw,
        &json!({"model": "openai:gpt-4o", "input": "second",
            "previous_response_id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
}
