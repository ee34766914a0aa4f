//! What the real APIs refuse, with their own 400 texts, so a mock provider that
//! validates like them catches a translation that only a real provider would catch.
//! Each rule was taken from the provider's documented or observed answer.

use serde_json::{json, Value};

use super::{Recorded, Reply};

const OPENAI_ROLES: [&str; 6] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// Members a Chat Completions request may not carry (OpenAI answers "Unrecognized
/// request argument"): the Messages API's own.
const ANTHROPIC_ONLY: [&str; 6] = [
    "system",
    "stop_sequences",
    "top_k",
    "thinking",
    "context_management",
    "output_config",
];

/// OpenAI's output ceilings for the models the tests use.
fn openai_output_ceiling(model: &str) -> Option<u64> {
    match model {
        "gpt-4o-mini" | "gpt-4o" => Some(16_384),
        _ => None,
    }
}

fn openai_reasons(model: &str) -> bool {
    openai_o_series(model) || model.starts_with("gpt-5")
}

/// OpenAI's o-series (`o1`, `o3-mini`, `o4-mini-2025-04-16`), which refuse
/// `parallel_tool_calls` where GPT-5 takes it.
fn openai_o_series(model: &str) -> bool {
    model
        .strip_prefix('o')
        .and_then(|r| r.chars().next())
        .is_some_and(|c| c.is_ascii_digit())
}

/// The most stop sequences Chat Completions takes.
const OPENAI_MAX_STOPS: usize = 4;

fn openai_400(message: String, param: Option<String>, code: &str) -> Reply {
    let body = json!({"error": {"message": message, "type": "invalid_request_error",
        "param": param, "code": code}});
    Reply::json(400, body.to_string())
}

/// OpenAI's 400 for a Chat Completions request it would refuse, or `None`.
pub fn openai_chat_refusal(rec: &Recorded) -> Option<Reply> {
    let Ok(body) = serde_json::from_slice::<Value>(&rec.body) else {
        return Some(openai_400(
            "We could not parse the JSON body of your request.".into(),
            None,
            "invalid_json",
        ));
    };
    for field in ANTHROPIC_ONLY {
        if body.get(field).is_some() {
            return Some(openai_400(
                format!("Unrecognized request argument supplied: {field}"),
                None,
                "unknown_parameter",
            ));
        }
    }
    let streams = body["stream"] == json!(true);
    if !streams && !body["stream_options"].is_null() {
        return Some(openai_400(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.".into(),
            Some("stream_options".into()),
            "invalid_value",
        ));
    }
    let model = body["model"].as_str().unwrap_or_default();
    if openai_reasons(model) && body.get("max_tokens").is_some() {
        return Some(openai_400(
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.".into(),
            Some("max_tokens".into()),
            "unsupported_parameter",
        ));
    }
    if openai_reasons(model) && body.get("stop").is_some() {
        return Some(openai_400(
            "Unsupported parameter: 'stop' is not supported with this model.".into(),
            Some("stop".into()),
            "unsupported_parameter",
        ));
    }
    if openai_o_series(model) && body.get("parallel_tool_calls").is_some() {
        return Some(openai_400(
            "Unsupported parameter: 'parallel_tool_calls' is not supported with this model.".into(),
            Some("parallel_tool_calls".into()),
            "unsupported_parameter",
        ));
    }
    if let Some(stops) = body["stop"]
        .as_array()
        .filter(|s| s.len() > OPENAI_MAX_STOPS)
    {
        return Some(openai_400(
            format!("Invalid 'stop': array too long. Expected an array with maximum length {OPENAI_MAX_STOPS}, but got an array with length {} instead.", stops.len()),
            Some("stop".into()),
            "array_above_max_length",
        ));
    }
    for field in ["temperature", "top_p"] {
        let value = body.get(field).and_then(Value::as_f64);
        if openai_reasons(model) && value.is_some_and(|v| v != 1.0) {
            return Some(openai_400(
                format!("Unsupported value: '{field}' does not support {} with this model. Only the default (1) value is supported.", value.unwrap_or_default()),
                Some(field.into()),
                "unsupported_value",
            ));
        }
    }
    for field in ["max_tokens", "max_completion_tokens"] {
        let asked = body.get(field).and_then(Value::as_u64);
        if let (Some(asked), Some(ceiling)) = (asked, openai_output_ceiling(model)) {
            if asked > ceiling {
                return Some(openai_400(
                    format!("max_tokens is too large: {asked}. This model supports at most {ceiling} completion tokens, whereas you provided {asked}."),
                    Some(field.into()),
                    "invalid_value",
                ));
            }
        }
    }
    // A schema must be named (`^[a-zA-Z0-9_-]{1,64}$`).
    let format = &body["response_format"];
    if format["type"] == "json_schema" {
        for (path, value) in [
            ("response_format.json_schema", &format["json_schema"]),
            (
                "response_format.json_schema.name",
                &format["json_schema"]["name"],
            ),
        ] {
            if value.is_null() {
                return Some(openai_400(
                    format!("Missing required parameter: '{path}'."),
                    Some(path.into()),
                    "missing_required_parameter",
                ));
            }
        }
    }
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    for (i, message) in messages.iter().enumerate() {
        let role = message["role"].as_str().unwrap_or_default();
        if !OPENAI_ROLES.contains(&role) {
            return Some(openai_400(
                format!("Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'."),
                Some(format!("messages[{i}].role")),
                "invalid_value",
            ));
        }
        let parts = message["content"].as_array().cloned().unwrap_or_default();
        let has_image = parts.iter().any(|p| p["type"] == "image_url");
        if has_image && role != "user" {
            return Some(openai_400(
                format!("Invalid 'messages[{i}]'. Image URLs are only allowed for messages with role 'user', but this message with role '{role}' contains an image URL."),
                Some(format!("messages[{i}]")),
                "invalid_value",
            ));
        }
    }
    openai_tool_message_refusal(&messages)
}

/// OpenAI's 400 for tool calls and tool messages out of step: an assistant message's
/// calls must each be answered by the tool messages right after it, and a tool
/// message must answer a call of the assistant message before its run.
fn openai_tool_message_refusal(messages: &[Value]) -> Option<Reply> {
    let mut i = 0;
    while i < messages.len() {
        let message = &messages[i];
        if message["role"] == "tool" {
            return Some(openai_400(
                "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.".into(),
                Some(format!("messages.[{i}].role")),
                "invalid_value",
            ));
        }
        let calls: Vec<&str> = message["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["id"].as_str())
            .collect();
        i += 1;
        if message["role"] != "assistant" || calls.is_empty() {
            continue;
        }
        let mut answered = Vec::new();
        while let Some(tool) = messages.get(i).filter(|m| m["role"] == "tool") {
            let id = tool["tool_call_id"].as_str().unwrap_or_default();
            if !calls.contains(&id) {
                return Some(openai_400(
                    "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.".into(),
                    Some(format!("messages.[{i}].role")),
                    "invalid_value",
                ));
            }
            answered.push(id);
            i += 1;
        }
        let unanswered: Vec<&str> = calls
            .iter()
            .copied()
            .filter(|c| !answered.contains(c))
            .collect();
        if !unanswered.is_empty() {
            return Some(openai_400(
                format!("An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}", unanswered.join(", ")),
                Some(format!("messages.[{}].role", i)),
                "invalid_value",
            ));
        }
    }
    None
}

/// The content part types vLLM's Chat Completions take (its own list, as its 400
/// gives it): no `file`.
const VLLM_PART_TYPES: [&str; 15] = [
    "audio_embeds",
    "audio_url",
    "image_embeds",
    "image_pil",
    "image_url",
    "input_audio",
    "input_image",
    "input_text",
    "output_text",
    "prompt_embeds",
    "refusal",
    "text",
    "thinking",
    "tool_reference",
    "video_url",
];

/// vLLM's 400 for a Chat request holding a content part type it does not take (a
/// `file`, which OpenAI alone reads), or `None`.
pub fn vllm_chat_refusal(rec: &Recorded) -> Option<Reply> {
    let body = serde_json::from_slice::<Value>(&rec.body).ok()?;
    let kind = body["messages"].as_array()?.iter().find_map(|m| {
        let parts = m["content"].as_array()?;
        parts
            .iter()
            .filter_map(|p| p["type"].as_str())
            .find(|kind| !VLLM_PART_TYPES.contains(kind))
    })?;
    let body = json!({"error": {
        "message": format!("Unsupported chat content part type: '{kind}'. Supported types: {}", VLLM_PART_TYPES.join(", ")),
        "type": "BadRequestError", "param": null, "code": 400}});
    Some(Reply::json(400, body.to_string()))
}

/// OpenAI's embedding models.
const OPENAI_EMBEDDING_MODELS: [&str; 3] = [
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
];

/// OpenAI's answer to an embeddings request for a model it does not have, or an
/// input that is missing; `None` when it would embed it.
pub fn openai_embeddings_refusal(rec: &Recorded) -> Option<Reply> {
    let Ok(body) = serde_json::from_slice::<Value>(&rec.body) else {
        return Some(openai_400(
            "We could not parse the JSON body of your request.".into(),
            None,
            "invalid_json",
        ));
    };
    if body.get("input").is_none() {
        return Some(openai_400(
            "Missing required parameter: 'input'.".into(),
            Some("input".into()),
            "missing_required_parameter",
        ));
    }
    let model = body["model"].as_str().unwrap_or_default();
    if !OPENAI_EMBEDDING_MODELS.contains(&model) {
        let body = json!({"error": {"message": format!("The model `{model}` does not exist or you do not have access to it."),
            "type": "invalid_request_error", "param": null, "code": "model_not_found"}});
        return Some(Reply::json(404, body.to_string()));
    }
    None
}

/// OpenAI's legacy Completions models.
const OPENAI_COMPLETION_MODELS: [&str; 3] =
    ["gpt-3.5-turbo-instruct", "davinci-002", "babbage-002"];

/// OpenAI's legacy Completions endpoint: its refusals (a chat model, a `messages`
/// member, no `prompt`, `stream_options` without a stream), else a completion of 10
/// input and 12 output tokens, whole or streamed. A stream reports its usage only
/// when `stream_options.include_usage` asks, in a last chunk whose `choices` is empty.
pub fn openai_completions(rec: &Recorded) -> Reply {
    let Ok(body) = serde_json::from_slice::<Value>(&rec.body) else {
        return openai_400(
            "We could not parse the JSON body of your request.".into(),
            None,
            "invalid_json",
        );
    };
    if body.get("messages").is_some() {
        return openai_400(
            "Unrecognized request argument supplied: messages".into(),
            None,
            "unknown_parameter",
        );
    }
    if body.get("prompt").is_none() {
        return openai_400(
            "Missing required parameter: 'prompt'.".into(),
            Some("prompt".into()),
            "missing_required_parameter",
        );
    }
    let streams = body["stream"] == json!(true);
    if !streams && !body["stream_options"].is_null() {
        return openai_400(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.".into(),
            Some("stream_options".into()),
            "invalid_value",
        );
    }
    let model = body["model"].as_str().unwrap_or_default();
    if !OPENAI_COMPLETION_MODELS.contains(&model) {
        let body = json!({"error": {"message": "This is a chat model and not supported in the v1/completions endpoint. Did you mean to use v1/chat/completions?",
            "type": "invalid_request_error", "param": "model", "code": null}});
        return Reply::json(404, body.to_string());
    }
    let usage = json!({"prompt_tokens": 10, "completion_tokens": 12, "total_tokens": 22});
    let choice = |text: &str, finish: Value| json!({"text": text, "index": 0, "logprobs": null, "finish_reason": finish});
    let chunk = |choices: Value| {
        json!({"id": "cmpl-1", "object": "text_completion", "created": 1700000000,
            "model": model, "choices": choices})
    };
    if !streams {
        let mut whole = chunk(json!([choice("Hi there", json!("stop"))]));
        whole["usage"] = usage;
        return Reply::json(200, whole.to_string());
    }
    let asked = body["stream_options"]["include_usage"] == json!(true);
    let mut chunks = vec![
        chunk(json!([choice("Hi", Value::Null)])),
        chunk(json!([choice(" there", json!("stop"))])),
    ];
    if asked {
        for c in &mut chunks {
            c["usage"] = Value::Null;
        }
        let mut last = chunk(json!([]));
        last["usage"] = usage;
        chunks.push(last);
    }
    let mut events: Vec<String> = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    events.push("data: [DONE]\n\n".to_string());
    Reply::sse(events.into_iter().map(bytes::Bytes::from))
}

/// OpenAI's moderation models (`model` may be left out: `omni-moderation-latest`).
const OPENAI_MODERATION_MODELS: [&str; 4] = [
    "omni-moderation-latest",
    "omni-moderation-2024-09-26",
    "text-moderation-latest",
    "text-moderation-stable",
];

/// OpenAI's Moderations endpoint: its refusals (no `input`, a model it does not
/// have), else a result that flags nothing and, as OpenAI's, reports no usage.
pub fn openai_moderations(rec: &Recorded) -> Reply {
    let Ok(body) = serde_json::from_slice::<Value>(&rec.body) else {
        return openai_400(
            "We could not parse the JSON body of your request.".into(),
            None,
            "invalid_json",
        );
    };
    if body.get("input").is_none() {
        return openai_400(
            "Missing required parameter: 'input'.".into(),
            Some("input".into()),
            "missing_required_parameter",
        );
    }
    let model = body["model"].as_str().unwrap_or("omni-moderation-latest");
    if !OPENAI_MODERATION_MODELS.contains(&model) {
        return openai_400(
            format!("Invalid value for 'model' = {model}."),
            Some("model".into()),
            "invalid_value",
        );
    }
    let answer = json!({"id": "modr-1", "model": "omni-moderation-2024-09-26",
        "results": [{"flagged": false, "categories": {"violence": false},
            "category_scores": {"violence": 0.0001}}]});
    Reply::json(200, answer.to_string())
}

fn anthropic_400(message: String) -> Reply {
    let body =
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}});
    Reply::json(400, body.to_string())
}

/// Anthropic's 400 for a Messages request it would refuse, or `None`. A `system` role
/// inside `messages` needs the beta that allows it.
pub fn anthropic_messages_refusal(rec: &Recorded) -> Option<Reply> {
    let Ok(body) = serde_json::from_slice::<Value>(&rec.body) else {
        return Some(anthropic_400(
            "There was an issue with the JSON body of your request.".into(),
        ));
    };
    if let Some(refusal) = anthropic_output_config_refusal(&body) {
        return Some(refusal);
    }
    let system_beta = rec
        .header("anthropic-beta")
        .is_some_and(|b| b.contains("mid-conversation-system"));
    let model = body["model"].as_str().unwrap_or_default();
    let from_4_5 = ["4-5", "4-6", "4-7", "opus-5", "sonnet-5"]
        .iter()
        .any(|v| model.contains(v));
    if from_4_5 && body.get("temperature").is_some() && body.get("top_p").is_some() {
        return Some(anthropic_400(
            "`temperature` and `top_p` cannot both be specified for this model. Please use only one.".into(),
        ));
    }
    let stops = body["stop_sequences"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if stops
        .iter()
        .any(|s| s.as_str().is_some_and(|s| s.trim().is_empty()))
    {
        return Some(anthropic_400(
            "stop_sequences: each stop sequence must contain non-whitespace".into(),
        ));
    }
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    for message in &messages {
        let blank = message["content"].as_array().is_some_and(|blocks| {
            blocks.iter().any(|b| {
                b["type"] == "text" && b["text"].as_str().is_some_and(|t| t.trim().is_empty())
            })
        }) || message["content"]
            .as_str()
            .is_some_and(|t| t.trim().is_empty());
        if blank {
            return Some(anthropic_400(
                "messages: text content blocks must contain non-whitespace text".into(),
            ));
        }
    }
    if let Some(last) = messages.last().filter(|m| m["role"] == "assistant") {
        let text = match &last["content"] {
            Value::String(t) => t.clone(),
            Value::Array(blocks) => blocks
                .last()
                .and_then(|b| b["text"].as_str())
                .unwrap_or("x")
                .to_string(),
            _ => String::new(),
        };
        if text.ends_with(char::is_whitespace) {
            return Some(anthropic_400(
                "messages: final assistant content cannot end with trailing whitespace".into(),
            ));
        }
    }
    let mut calls_before: Vec<String> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let role = message["role"].as_str().unwrap_or_default();
        if !(role == "user" || role == "assistant" || (role == "system" && system_beta)) {
            return Some(anthropic_400(format!(
                "messages.{i}.role: Input should be 'user' or 'assistant'"
            )));
        }
        let blocks = message["content"].as_array().cloned().unwrap_or_default();
        for (j, block) in blocks.iter().enumerate() {
            if block["type"] == "tool_result" {
                let id = block["tool_use_id"].as_str().unwrap_or_default();
                if !calls_before.iter().any(|c| c == id) {
                    return Some(anthropic_400(format!(
                        "messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                    )));
                }
            }
        }
        calls_before = blocks
            .iter()
            .filter(|b| b["type"] == "tool_use")
            .filter_map(|b| b["id"].as_str().map(str::to_string))
            .collect();
        // Anthropic checks every thinking block's signature: one it did not make (none,
        // or Gemini's as the gateway tags it) is refused.
        if let Some(j) = blocks.iter().position(|b| {
            let signature = b["signature"].as_str().unwrap_or("");
            b["type"] == "thinking" && (signature.is_empty() || signature.starts_with("gemini:"))
        }) {
            return Some(anthropic_400(format!(
                "messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
            )));
        }
    }
    // With thinking on, the turn that made the tool calls being answered must start
    // with its thinking.
    let thinking = body["thinking"]["type"] == "enabled";
    let last_is_results = messages.last().is_some_and(|m| {
        m["role"] == "user"
            && m["content"]
                .as_array()
                .is_some_and(|c| c.iter().any(|b| b["type"] == "tool_result"))
    });
    if thinking && last_is_results && messages.len() >= 2 {
        let i = messages.len() - 2;
        let first = &messages[i]["content"][0]["type"];
        if first != "thinking" && first != "redacted_thinking" {
            return Some(anthropic_400(format!(
                "messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{}`. When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from previous turns. To avoid this requirement, disable `thinking`.",
                first.as_str().unwrap_or("text")
            )));
        }
    }
    None
}

/// Anthropic's 400 for an `output_config` it does not take, or `None`: its members are
/// `effort` and `format`, and a `format` (structured outputs) is `{"type":
/// "json_schema", "schema": {…}}` and nothing more (its SDKs' `JSONOutputFormatParam`;
/// a schema's `name` or `strict`, OpenAI's, is refused as an extra input).
fn anthropic_output_config_refusal(body: &Value) -> Option<Reply> {
    let config = body.get("output_config")?;
    let refuse = |at: &str, what: &str| Some(anthropic_400(format!("output_config{at}: {what}")));
    let Some(config) = config.as_object() else {
        return refuse("", "Input should be a valid dictionary");
    };
    if let Some(key) = config
        .keys()
        .find(|k| !["effort", "format"].contains(&k.as_str()))
    {
        return refuse(&format!(".{key}"), "Extra inputs are not permitted");
    }
    let format = config.get("format").filter(|f| !f.is_null())?;
    let Some(format) = format.as_object() else {
        return refuse(".format", "Input should be a valid dictionary");
    };
    if let Some(key) = format
        .keys()
        .find(|k| !["type", "schema"].contains(&k.as_str()))
    {
        return refuse(&format!(".format.{key}"), "Extra inputs are not permitted");
    }
    if format.get("type") != Some(&json!("json_schema")) {
        return refuse(".format.type", "Input should be 'json_schema'");
    }
    match format.get("schema") {
        Some(Value::Object(_)) => None,
        None => refuse(".format.schema", "Field required"),
        Some(_) => refuse(".format.schema", "Input should be a valid dictionary"),
    }
}

/// OpenAI's answer to a streamed Chat request, from the recorded stream: with
/// `stream_options.include_usage`, every chunk carries `"usage": null` and a last,
/// usage-only chunk (`"choices": []`, the recorded completion's usage) comes before
/// `[DONE]`; without it, no usage at all.
pub fn openai_chat_stream(rec: &Recorded) -> Reply {
    let asked = serde_json::from_slice::<Value>(&rec.body)
        .is_ok_and(|b| b["stream_options"]["include_usage"] == json!(true));
    let stream = recorded("openai/chat_completion_stream.txt");
    let usage = serde_json::from_str::<Value>(&recorded("openai/chat_completion.json"))
        .expect("recorded completion")["usage"]
        .clone();
    let mut events = Vec::new();
    let mut last = Value::Null;
    for data in stream
        .split("\n\n")
        .filter_map(|e| e.trim().strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
    {
        let mut chunk: Value = serde_json::from_str(data).expect("recorded chunk");
        if asked {
            chunk["usage"] = Value::Null;
        }
        events.push(format!("data: {chunk}\n\n"));
        last = chunk;
    }
    if asked {
        last["choices"] = json!([]);
        last["usage"] = usage;
        events.push(format!("data: {last}\n\n"));
    }
    events.push("data: [DONE]\n\n".to_string());
    Reply::sse(events.into_iter().map(bytes::Bytes::from))
}

/// The members Mistral's Chat Completions request takes; it refuses any other with a
/// 422 `extra_forbidden` (`stream_options`, `user`, `metadata`, `max_completion_tokens`
/// have all been seen refused).
const MISTRAL_REQUEST_MEMBERS: [&str; 18] = [
    "model",
    "messages",
    "temperature",
    "top_p",
    "max_tokens",
    "stream",
    "stop",
    "random_seed",
    "response_format",
    "tools",
    "tool_choice",
    "presence_penalty",
    "frequency_penalty",
    "n",
    "prediction",
    "parallel_tool_calls",
    "prompt_mode",
    "safe_prompt",
];

/// The members Mistral's messages take (`reasoning_content` is refused).
const MISTRAL_MESSAGE_MEMBERS: [&str; 6] = [
    "role",
    "content",
    "tool_calls",
    "tool_call_id",
    "name",
    "prefix",
];

/// Mistral's refusal of a Chat request, or `None`: a 422 for a member its API forbids
/// (it reports a stream's usage in the last chunk unasked, so `stream_options` is one),
/// a 400 for roles in an order it does not take or a tool-call id not its own form.
pub fn mistral_chat_refusal(rec: &Recorded) -> Option<Reply> {
    let body = serde_json::from_slice::<Value>(&rec.body).ok()?;
    mistral_extra_member(&body)
        .or_else(|| mistral_order_refusal(&body))
        .or_else(|| mistral_tool_call_id_refusal(&body))
}

/// Mistral's 400 for a tool-call id (of a call, or a tool message's) other than nine
/// letters and digits.
fn mistral_tool_call_id_refusal(body: &Value) -> Option<Reply> {
    let short = |id: &str| id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric());
    let id = body["messages"].as_array()?.iter().find_map(|m| {
        let calls = m["tool_calls"].as_array().into_iter().flatten();
        let ids = calls.map(|c| &c["id"]).chain([&m["tool_call_id"]]);
        ids.filter_map(Value::as_str).find(|id| !short(id))
    })?;
    let body = json!({"object": "error",
        "message": format!("Tool call id was {id} but must be a-z, A-Z, 0-9, with a length of 9."),
        "type": "invalid_function_call", "param": null, "code": "3280"});
    Some(Reply::json(400, body.to_string()))
}

/// Mistral's 400 for roles out of the order its validator takes (mistral-common's
/// `_validate_message_order`): after `tool` only `assistant` or `tool`; after
/// `assistant` only `assistant`, `user` or `tool`.
fn mistral_order_refusal(body: &Value) -> Option<Reply> {
    let roles: Vec<&str> = body["messages"]
        .as_array()?
        .iter()
        .filter_map(|m| m["role"].as_str())
        .collect();
    let (before, after) = roles
        .windows(2)
        .map(|w| (w[0], w[1]))
        .find(|(before, after)| match *before {
            "tool" => !matches!(*after, "assistant" | "tool"),
            "assistant" => !matches!(*after, "assistant" | "user" | "tool"),
            _ => false,
        })?;
    let body = json!({"object": "error",
        "message": format!("Unexpected role '{after}' after role '{before}'"),
        "type": "invalid_request_message_order", "param": null, "code": "3230"});
    Some(Reply::json(400, body.to_string()))
}

/// Mistral's 422 for a member its API forbids, or `None`.
fn mistral_extra_member(body: &Value) -> Option<Reply> {
    let top = body.as_object()?;
    let extra = top
        .iter()
        .find(|(k, _)| !MISTRAL_REQUEST_MEMBERS.contains(&k.as_str()))
        .map(|(k, v)| (json!(["body", k]), v.clone()))
        .or_else(|| {
            let messages = top.get("messages")?.as_array()?;
            messages.iter().enumerate().find_map(|(i, m)| {
                let m = m.as_object()?;
                let role = m.get("role")?.as_str()?;
                m.iter()
                    .find(|(k, _)| !MISTRAL_MESSAGE_MEMBERS.contains(&k.as_str()))
                    .map(|(k, v)| (json!(["body", "messages", i, role, k]), v.clone()))
            })
        })?;
    let detail = json!({"detail": [{"type": "extra_forbidden",
        "loc": extra.0, "msg": "Extra inputs are not permitted", "input": extra.1}]});
    let body = json!({"object": "error", "message": detail,
        "type": "invalid_request_error", "param": null, "code": null});
    Some(Reply::json(422, body.to_string()))
}

/// The thought signatures the mock's Gemini answers carry start with this; Gemini
/// takes back only its own and Google's stand-in.
const GEMINI_SIGNATURE_PREFIX: &str = "sig-gemini-";

/// Gemini's 400 (its OpenAI-compatible API) for a Gemini 3 request whose assistant turn
/// with tool calls does not give its first call's thought signature back, or gives
/// one Gemini did not make (another model's), or `None`.
pub fn gemini_chat_refusal(rec: &Recorded) -> Option<Reply> {
    let body = serde_json::from_slice::<Value>(&rec.body).ok()?;
    if !body["model"].as_str()?.starts_with("gemini-3") {
        return None;
    }
    let messages = body["messages"].as_array()?;
    let foreign = messages.iter().any(|m| {
        m["tool_calls"][0]["extra_content"]["google"]["thought_signature"]
            .as_str()
            .is_some_and(|s| {
                s != "skip_thought_signature_validator" && !s.starts_with(GEMINI_SIGNATURE_PREFIX)
            })
    });
    if foreign {
        return Some(openai_400(
            "Corrupted thought signature.".into(),
            None,
            "invalid_argument",
        ));
    }
    let missing = messages.iter().position(|m| {
        m["tool_calls"][0].is_object()
            && !m["tool_calls"][0]["extra_content"]["google"]["thought_signature"].is_string()
    })?;
    Some(openai_400(
        format!("Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call `default_api:Bash` , position {missing}. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details."),
        None,
        "invalid_argument",
    ))
}

/// DeepSeek's refusal of a Chat request, or `None`: a 422 for a role it does not know
/// (`developer`) or a part other than text (its chat models read text only), a 400 for a thinking-mode request (its default) whose assistant turn
/// with tool calls lacks its `reasoning_content` (a tool loop must pass its reasoning
/// back).
pub fn deepseek_chat_refusal(rec: &Recorded) -> Option<Reply> {
    let body = serde_json::from_slice::<Value>(&rec.body).ok()?;
    let messages = body["messages"].as_array()?;
    let unknown = messages.iter().enumerate().find(|(_, m)| {
        !matches!(
            m["role"].as_str(),
            Some("system" | "user" | "assistant" | "tool")
        )
    });
    if let Some((i, m)) = unknown {
        return Some(deepseek_422(format!(
            "messages[{i}].role: unknown variant `{}`, expected one of `system`, `user`, `assistant`, `tool`",
            m["role"].as_str().unwrap_or_default()
        )));
    }
    // Its chat models read text parts only.
    let media = messages.iter().enumerate().find_map(|(i, m)| {
        let parts = m["content"].as_array()?;
        let part = parts.iter().find(|p| p["type"] != "text")?;
        Some((i, part["type"].as_str().unwrap_or_default().to_string()))
    });
    if let Some((i, kind)) = media {
        return Some(deepseek_422(format!(
            "messages[{i}]: unknown variant `{kind}`, expected `text`"
        )));
    }
    if body["thinking"]["type"] == "disabled" {
        return None;
    }
    let missing = messages.iter().position(|m| {
        m["role"] == "assistant"
            && m["tool_calls"].as_array().is_some_and(|c| !c.is_empty())
            && !m["reasoning_content"].is_string()
    })?;
    Some(openai_400(
        format!("Missing `reasoning_content` field in the assistant message at message index {missing}. The reasoning_content in the thinking mode must be passed back to the API."),
        None,
        "invalid_request_error",
    ))
}

/// DeepSeek's 422 for a body it cannot read, `what` saying where.
fn deepseek_422(what: String) -> Reply {
    let body = json!({"error": {
        "message": format!("Failed to deserialize the JSON body into the target type: {what}"),
        "type": "invalid_request_error", "param": null, "code": "invalid_request_error"}});
    Reply::json(422, body.to_string())
}

/// A recorded provider answer, from `tests/fixtures`.
fn recorded(path: &str) -> String {
    let full = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}
