//! Anthropic Messages request → OpenAI Chat Completions request, for serving
//! `/v1/messages` from OpenAI-compatible providers.
//!
//! Choices made where the formats do not line up:
//! - The system prompt (string or text blocks, joined with a blank line)
//!   becomes a leading `system` message; `cache_control` is dropped
//!   everywhere, as OpenAI-compatible providers cache on their own.
//! - A user message's `tool_result` blocks become `tool` messages placed
//!   first, directly after the assistant message that made the calls; the
//!   message's other blocks follow as one user message. Tool results are text
//!   only in OpenAI: text blocks are joined with a newline, images are
//!   rejected, and `is_error: true` is kept by prefixing `Error: `.
//! - User content made only of text is sent as one string (text blocks joined
//!   with a blank line), since some OpenAI-compatible servers accept only
//!   string content; otherwise it is an array of parts. Assistant text blocks
//!   are concatenated, as they are pieces of one answer.
//! - Thinking blocks in the history are dropped: their signatures mean
//!   nothing to other providers.
//! - A base64 PDF `document` becomes a `file` part and a plain-text document
//!   a text part; other documents are rejected.
//! - `top_k` is passed through (vLLM and other OpenAI-compatible servers
//!   accept it; OpenAI itself rejects it, which is clearer than dropping it).
//! - `thinking` becomes `reasoning_effort` only for providers that support it
//!   (budget < 2048 low, < 8192 medium, else high); otherwise it is dropped.
//! - Server tools (typed tools such as `web_search_…`) and `mcp_servers`
//!   cannot run elsewhere and are rejected.

use super::error::TranslateError;
use super::request_fields::{field, stream_flag};
use serde_json::{json, Map, Value};

/// Settings for [`anthropic_to_openai_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiRequestOptions {
    /// The upstream model name, routing prefix already removed.
    pub model: String,
    /// The provider understands `reasoning_effort`.
    pub supports_reasoning_effort: bool,
}

/// A translated request, ready to send to an OpenAI-compatible provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiRequest {
    /// The serialized Chat Completions request.
    pub body: Vec<u8>,
    /// The client asked for a streamed response.
    pub stream: bool,
}

/// Translates an Anthropic Messages request body into an OpenAI Chat
/// Completions request body.
pub fn anthropic_to_openai_request(
    body: &[u8],
    opts: &OpenAiRequestOptions,
) -> Result<OpenAiRequest, TranslateError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| TranslateError::InvalidJson(e.to_string()))?;
    let Value::Object(req) = value else {
        return Err(TranslateError::InvalidJson("expected an object".into()));
    };
    if field(&req, "mcp_servers").is_some_and(|v| v.as_array().is_none_or(|a| !a.is_empty())) {
        return Err(TranslateError::unsupported(
            "mcp_servers",
            "MCP servers are run by Anthropic and cannot be used with this model; remove `mcp_servers`",
        ));
    }

    let mut out = Map::new();
    out.insert("model".into(), Value::String(opts.model.clone()));

    let mut messages = Vec::new();
    if let Some(system) = field(&req, "system") {
        let text = system_text(system)?;
        if !text.is_empty() {
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    let Some(Value::Array(input)) = field(&req, "messages") else {
        return Err(TranslateError::invalid_field(
            "messages",
            "is required and must be an array of messages",
        ));
    };
    for (i, msg) in input.iter().enumerate() {
        convert_message(msg, i, &mut messages)?;
    }
    out.insert("messages".into(), Value::Array(messages));

    if let Some(v) = field(&req, "max_tokens") {
        let n = v.as_u64().ok_or_else(|| {
            TranslateError::invalid_field("max_tokens", "must be a positive integer")
        })?;
        out.insert("max_tokens".into(), n.into());
    }
    for key in ["temperature", "top_p"] {
        if let Some(v) = field(&req, key) {
            if !v.is_number() {
                return Err(TranslateError::invalid_field(key, "must be a number"));
            }
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(v) = field(&req, "top_k") {
        let k = v.as_u64().ok_or_else(|| {
            TranslateError::invalid_field("top_k", "must be a non-negative integer")
        })?;
        out.insert("top_k".into(), k.into());
    }
    if let Some(v) = field(&req, "stop_sequences") {
        let Value::Array(stops) = v else {
            return Err(TranslateError::invalid_field(
                "stop_sequences",
                "must be an array of strings",
            ));
        };
        if stops.iter().any(|s| !s.is_string()) {
            return Err(TranslateError::invalid_field(
                "stop_sequences",
                "must be an array of strings",
            ));
        }
        if !stops.is_empty() {
            out.insert("stop".into(), v.clone());
        }
    }
    if let Some(user) = field(&req, "metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
    {
        out.insert("user".into(), user.into());
    }
    if opts.supports_reasoning_effort {
        if let Some(effort) = reasoning_effort(field(&req, "thinking")) {
            out.insert("reasoning_effort".into(), effort.into());
        }
    }

    convert_tooling(&req, &mut out)?;

    let stream = stream_flag(&req)?;
    if stream {
        out.insert("stream".into(), Value::Bool(true));
        // Anthropic streams always report usage; OpenAI only on request.
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }

    Ok(OpenAiRequest {
        body: Value::Object(out).to_string().into_bytes(),
        stream,
    })
}

fn reasoning_effort(thinking: Option<&Value>) -> Option<&'static str> {
    let thinking = thinking?;
    if thinking.get("type").and_then(Value::as_str) != Some("enabled") {
        return None;
    }
    let budget = thinking
        .get("budget_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Some(match budget {
        0..2048 => "low",
        2048..8192 => "medium",
        _ => "high",
    })
}

fn system_text(system: &Value) -> Result<String, TranslateError> {
    match system {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (j, b) in blocks.iter().enumerate() {
                match (
                    b.get("type").and_then(Value::as_str),
                    b.get("text").and_then(Value::as_str),
                ) {
                    (Some("text"), Some(t)) => texts.push(t),
                    _ => {
                        return Err(TranslateError::invalid_field(
                            format!("system[{j}]"),
                            "system blocks must be text blocks",
                        ))
                    }
                }
            }
            Ok(texts.join("\n\n"))
        }
        _ => Err(TranslateError::invalid_field(
            "system",
            "must be a string or an array of text blocks",
        )),
    }
}

fn convert_message(msg: &Value, i: usize, out: &mut Vec<Value>) -> Result<(), TranslateError> {
    let role = msg.get("role").and_then(Value::as_str);
    let content = msg.get("content");
    match (role, content) {
        (Some(role @ ("user" | "assistant")), Some(Value::String(s))) => {
            out.push(json!({"role": role, "content": s}));
            Ok(())
        }
        (Some("user"), Some(Value::Array(blocks))) => convert_user_blocks(blocks, i, out),
        (Some("assistant"), Some(Value::Array(blocks))) => convert_assistant_blocks(blocks, i, out),
        (Some("user" | "assistant"), _) => Err(TranslateError::invalid_field(
            format!("messages[{i}].content"),
            "must be a string or an array of content blocks",
        )),
        _ => Err(TranslateError::invalid_field(
            format!("messages[{i}].role"),
            "must be user or assistant",
        )),
    }
}

fn block_type(block: &Value) -> &str {
    block.get("type").and_then(Value::as_str).unwrap_or("")
}

fn convert_user_blocks(
    blocks: &[Value],
    i: usize,
    out: &mut Vec<Value>,
) -> Result<(), TranslateError> {
    let mut parts = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let path = format!("messages[{i}].content[{j}]");
        match block_type(block) {
            "tool_result" => out.push(tool_message(block, &path)?),
            _ => parts.push(user_part(block, &path)?),
        }
    }
    if parts.is_empty() {
        return Ok(());
    }
    let all_text = parts.iter().all(|p| p["type"] == "text");
    let content = if all_text {
        let texts: Vec<&str> = parts.iter().filter_map(|p| p["text"].as_str()).collect();
        Value::String(texts.join("\n\n"))
    } else {
        Value::Array(parts)
    };
    out.push(json!({"role": "user", "content": content}));
    Ok(())
}

fn text_of(block: &Value, path: &str) -> Result<String, TranslateError> {
    block
        .get("text")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| TranslateError::invalid_field(format!("{path}.text"), "must be a string"))
}

fn user_part(block: &Value, path: &str) -> Result<Value, TranslateError> {
    match block_type(block) {
        "text" => Ok(json!({"type": "text", "text": text_of(block, path)?})),
        "image" => {
            let url = source_url(block, path)?;
            Ok(json!({"type": "image_url", "image_url": {"url": url}}))
        }
        "document" => {
            let source = block.get("source");
            match source.and_then(|s| s.get("type")).and_then(Value::as_str) {
                Some("text") => {
                    let data = source.and_then(|s| s.get("data")).and_then(Value::as_str).unwrap_or("");
                    Ok(json!({"type": "text", "text": data}))
                }
                Some("base64")
                    if source.and_then(|s| s.get("media_type")).and_then(Value::as_str)
                        == Some("application/pdf") =>
                {
                    let url = source_url(block, path)?;
                    let filename = block.get("title").and_then(Value::as_str).unwrap_or("document.pdf");
                    Ok(json!({"type": "file", "file": {"filename": filename, "file_data": url}}))
                }
                _ => Err(TranslateError::unsupported(
                    path,
                    "only base64 PDF and plain-text documents can be sent to this model",
                )),
            }
        }
        other => Err(TranslateError::unsupported(
            path,
            format!("content block type `{other}` cannot be sent to this model; use text or image blocks"),
        )),
    }
}

/// An image or document `source` as a URL: base64 becomes a data URL.
fn source_url(block: &Value, path: &str) -> Result<String, TranslateError> {
    let source = block.get("source");
    let get = |k: &str| source.and_then(|s| s.get(k)).and_then(Value::as_str);
    match get("type") {
        Some("base64") => match (get("media_type"), get("data")) {
            (Some(mime), Some(data)) => Ok(format!("data:{mime};base64,{data}")),
            _ => Err(TranslateError::invalid_field(
                format!("{path}.source"),
                "base64 sources need `media_type` and `data`",
            )),
        },
        Some("url") => get("url").map(str::to_owned).ok_or_else(|| {
            TranslateError::invalid_field(format!("{path}.source.url"), "must be a string")
        }),
        _ => Err(TranslateError::unsupported(
            format!("{path}.source"),
            "only base64 and url sources can be sent to this model",
        )),
    }
}

fn tool_message(block: &Value, path: &str) -> Result<Value, TranslateError> {
    let id = block
        .get("tool_use_id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            TranslateError::invalid_field(format!("{path}.tool_use_id"), "must be a string")
        })?;
    let mut text = match block.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => {
            let mut texts = Vec::with_capacity(items.len());
            for (k, item) in items.iter().enumerate() {
                let item_path = format!("{path}.content[{k}]");
                match block_type(item) {
                    "text" => texts.push(text_of(item, &item_path)?),
                    _ => return Err(TranslateError::unsupported(
                        item_path,
                        "tool results can only carry text for this model; describe images in text",
                    )),
                }
            }
            texts.join("\n")
        }
        Some(_) => {
            return Err(TranslateError::invalid_field(
                format!("{path}.content"),
                "must be a string or an array of text blocks",
            ))
        }
    };
    if block.get("is_error").and_then(Value::as_bool) == Some(true) {
        text.insert_str(0, "Error: ");
    }
    Ok(json!({"role": "tool", "tool_call_id": id, "content": text}))
}

fn convert_assistant_blocks(
    blocks: &[Value],
    i: usize,
    out: &mut Vec<Value>,
) -> Result<(), TranslateError> {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let path = format!("messages[{i}].content[{j}]");
        match block_type(block) {
            "text" => text.push_str(&text_of(block, &path)?),
            "tool_use" => {
                let id = block.get("id").and_then(Value::as_str).ok_or_else(|| {
                    TranslateError::invalid_field(format!("{path}.id"), "must be a string")
                })?;
                let name = block.get("name").and_then(Value::as_str).ok_or_else(|| {
                    TranslateError::invalid_field(format!("{path}.name"), "must be a string")
                })?;
                let arguments = match block.get("input") {
                    None | Some(Value::Null) => "{}".to_owned(),
                    Some(input) => input.to_string(),
                };
                tool_calls.push(json!({"id": id, "type": "function",
                    "function": {"name": name, "arguments": arguments}}));
            }
            "thinking" | "redacted_thinking" => {}
            other => {
                return Err(TranslateError::unsupported(
                    path,
                    format!("assistant block type `{other}` cannot be sent to this model"),
                ))
            }
        }
    }
    let mut msg = Map::new();
    msg.insert("role".into(), "assistant".into());
    let content = if text.is_empty() && !tool_calls.is_empty() {
        Value::Null
    } else {
        Value::String(text)
    };
    msg.insert("content".into(), content);
    if !tool_calls.is_empty() {
        msg.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    out.push(Value::Object(msg));
    Ok(())
}

fn convert_tooling(
    req: &Map<String, Value>,
    out: &mut Map<String, Value>,
) -> Result<(), TranslateError> {
    let Some(tools) = field(req, "tools") else {
        return Ok(());
    };
    let Value::Array(tools) = tools else {
        return Err(TranslateError::invalid_field("tools", "must be an array"));
    };
    if tools.is_empty() {
        return Ok(());
    }
    let mut converted = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        if let Some(kind) = tool
            .get("type")
            .and_then(Value::as_str)
            .filter(|k| *k != "custom")
        {
            return Err(TranslateError::unsupported(
                format!("tools[{i}]"),
                format!("`{kind}` is a tool run by Anthropic and cannot be used with this model; define it as a custom tool"),
            ));
        }
        let name = tool.get("name").and_then(Value::as_str).ok_or_else(|| {
            TranslateError::invalid_field(format!("tools[{i}].name"), "must be a string")
        })?;
        let mut function = Map::new();
        function.insert("name".into(), name.into());
        if let Some(d) = tool.get("description").filter(|d| !d.is_null()) {
            function.insert("description".into(), d.clone());
        }
        let params = tool
            .get("input_schema")
            .filter(|s| !s.is_null())
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
        function.insert("parameters".into(), params);
        converted.push(json!({"type": "function", "function": function}));
    }
    out.insert("tools".into(), Value::Array(converted));

    if let Some(choice) = field(req, "tool_choice") {
        let mapped = match choice.get("type").and_then(Value::as_str) {
            Some("auto") => json!("auto"),
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => {
                let name = choice.get("name").and_then(Value::as_str).ok_or_else(|| {
                    TranslateError::invalid_field("tool_choice.name", "must be a string")
                })?;
                json!({"type": "function", "function": {"name": name}})
            }
            _ => {
                return Err(TranslateError::invalid_field(
                    "tool_choice.type",
                    "must be one of auto, any, tool, none",
                ))
            }
        };
        out.insert("tool_choice".into(), mapped);
        if choice
            .get("disable_parallel_tool_use")
            .and_then(Value::as_bool)
            == Some(true)
        {
            out.insert("parallel_tool_calls".into(), Value::Bool(false));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(reasoning: bool) -> OpenAiRequestOptions {
        OpenAiRequestOptions {
            model: "gpt-4o-mini".into(),
            supports_reasoning_effort: reasoning,
        }
    }

    fn translate_with(req: Value, reasoning: bool) -> Value {
        let r = anthropic_to_openai_request(req.to_string().as_bytes(), &opts(reasoning)).unwrap();
        serde_json::from_slice(&r.body).unwrap()
    }

    fn translate(req: Value) -> Value {
        translate_with(req, false)
    }

    fn translate_err(req: Value) -> TranslateError {
        anthropic_to_openai_request(req.to_string().as_bytes(), &opts(false)).unwrap_err()
    }

    #[test]
    fn simple_request_maps_model_and_max_tokens() {
        let got = translate(json!({"model": "claude-x", "max_tokens": 100,
            "messages": [{"role": "user", "content": "Hi"}]}));
        assert_eq!(
            got,
            json!({"model": "gpt-4o-mini", "max_tokens": 100,
                   "messages": [{"role": "user", "content": "Hi"}]})
        );
    }

    #[test]
    fn invalid_bodies_are_rejected() {
        assert!(matches!(
            anthropic_to_openai_request(b"nope", &opts(false)).unwrap_err(),
            TranslateError::InvalidJson(_)
        ));
        assert_eq!(
            translate_err(json!({"max_tokens": 1})).param(),
            Some("messages")
        );
        let e = translate_err(json!({"messages": [{"role": "system", "content": "x"}]}));
        assert_eq!(e.param(), Some("messages[0].role"));
    }

    #[test]
    fn system_string_or_blocks_become_system_message() {
        let got = translate(
            json!({"system": "Be brief.", "messages": [{"role": "user", "content": "Hi"}]}),
        );
        assert_eq!(
            got["messages"][0],
            json!({"role": "system", "content": "Be brief."})
        );
        let got = translate(json!({"system": [
            {"type": "text", "text": "A", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "B"}
        ], "messages": [{"role": "user", "content": "Hi"}]}));
        assert_eq!(
            got["messages"][0],
            json!({"role": "system", "content": "A\n\nB"})
        );
    }

    #[test]
    fn text_only_user_blocks_become_a_string() {
        let got = translate(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "b"}
        ]}]}));
        assert_eq!(
            got["messages"][0],
            json!({"role": "user", "content": "a\n\nb"})
        );
    }

    #[test]
    fn images_become_image_url_parts() {
        let got = translate(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "Colors?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
        ]}]}));
        assert_eq!(
            got["messages"][0]["content"],
            json!([
                {"type": "text", "text": "Colors?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
            ])
        );
    }

    #[test]
    fn documents_become_file_or_text_parts() {
        let got = translate(json!({"messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}}
        ]}]}));
        assert_eq!(
            got["messages"][0]["content"],
            json!([
                {"type": "file", "file": {"filename": "document.pdf", "file_data": "data:application/pdf;base64,JVBE"}},
                {"type": "text", "text": "notes"}
            ])
        );
    }

    #[test]
    fn tool_use_blocks_become_assistant_tool_calls() {
        let got = translate(json!({"messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}}
            ]}
        ]}));
        assert_eq!(
            got["messages"][1],
            json!({"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}}
            ]})
        );
    }

    #[test]
    fn assistant_with_only_tool_use_has_null_content() {
        let got = translate(json!({"messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}
        ]}));
        assert_eq!(got["messages"][1]["content"], Value::Null);
        assert_eq!(
            got["messages"][1]["tool_calls"][0]["function"]["arguments"],
            "{}"
        );
    }

    #[test]
    fn tool_results_become_tool_messages_before_user_text() {
        let got = translate(json!({"messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "t1", "name": "w", "input": {"l": "Paris"}},
                {"type": "tool_use", "id": "t2", "name": "w", "input": {"l": "Rome"}}
            ]},
            {"role": "user", "content": [
                {"type": "text", "text": "Here you go"},
                {"type": "tool_result", "tool_use_id": "t1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "t2", "content": [{"type": "text", "text": "21"}, {"type": "text", "text": "C"}]}
            ]}
        ]}));
        let msgs = got["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 5);
        assert_eq!(
            msgs[2],
            json!({"role": "tool", "tool_call_id": "t1", "content": "18C"})
        );
        assert_eq!(
            msgs[3],
            json!({"role": "tool", "tool_call_id": "t2", "content": "21\nC"})
        );
        assert_eq!(msgs[4], json!({"role": "user", "content": "Here you go"}));
    }

    #[test]
    fn tool_result_error_is_marked() {
        let got = translate(json!({"messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "not found", "is_error": true}
        ]}]}));
        assert_eq!(
            got["messages"][0],
            json!({"role": "tool", "tool_call_id": "t1", "content": "Error: not found"})
        );
    }

    #[test]
    fn tool_result_with_image_is_unsupported() {
        let e = translate_err(json!({"messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "x"}}
            ]}
        ]}]}));
        assert_eq!(e.param(), Some("messages[0].content[0].content[0]"));
    }

    #[test]
    fn tools_and_tool_choice_map_to_openai() {
        let tools = json!([
            {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"l": {"type": "string"}}}, "cache_control": {"type": "ephemeral"}},
            {"name": "now"}
        ]);
        let got =
            translate(json!({"messages": [{"role": "user", "content": "x"}], "tools": tools}));
        assert_eq!(
            got["tools"],
            json!([
                {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                    "parameters": {"type": "object", "properties": {"l": {"type": "string"}}}}},
                {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}
            ])
        );
        for (choice, expected) in [
            (json!({"type": "auto"}), json!("auto")),
            (json!({"type": "any"}), json!("required")),
            (json!({"type": "none"}), json!("none")),
            (
                json!({"type": "tool", "name": "now"}),
                json!({"type": "function", "function": {"name": "now"}}),
            ),
        ] {
            let got = translate(
                json!({"messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": choice}),
            );
            assert_eq!(got["tool_choice"], expected);
            assert!(got.get("parallel_tool_calls").is_none());
        }
        let got = translate(
            json!({"messages": [{"role": "user", "content": "x"}], "tools": tools,
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": true}}),
        );
        assert_eq!(got["parallel_tool_calls"], false);
    }

    #[test]
    fn server_tools_are_unsupported() {
        let e = translate_err(json!({"messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "web_search_20250305", "name": "web_search"}]}));
        assert_eq!(e.param(), Some("tools[0]"));
    }

    #[test]
    fn sampling_stop_and_user_are_mapped() {
        let got = translate(
            json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 5,
            "temperature": 0.5, "top_p": 0.9, "top_k": 40, "stop_sequences": ["3", "END"],
            "metadata": {"user_id": "u-1"}}),
        );
        assert_eq!(got["temperature"], 0.5);
        assert_eq!(got["top_p"], 0.9);
        assert_eq!(got["top_k"], 40);
        assert_eq!(got["stop"], json!(["3", "END"]));
        assert_eq!(got["user"], "u-1");
    }

    #[test]
    fn thinking_becomes_reasoning_effort_only_when_supported() {
        for (budget, effort) in [
            (1024, "low"),
            (2047, "low"),
            (2048, "medium"),
            (8191, "medium"),
            (8192, "high"),
            (32000, "high"),
        ] {
            let req = json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 40000,
                "thinking": {"type": "enabled", "budget_tokens": budget}});
            assert_eq!(
                translate_with(req.clone(), true)["reasoning_effort"],
                effort,
                "{budget}"
            );
            assert!(translate_with(req, false).get("reasoning_effort").is_none());
        }
        let req = json!({"messages": [{"role": "user", "content": "x"}], "thinking": {"type": "disabled"}});
        assert!(translate_with(req, true).get("reasoning_effort").is_none());
    }

    #[test]
    fn stream_requests_usage() {
        let body = json!({"messages": [{"role": "user", "content": "x"}], "stream": true});
        let r = anthropic_to_openai_request(body.to_string().as_bytes(), &opts(false)).unwrap();
        assert!(r.stream);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["stream"], true);
        assert_eq!(v["stream_options"], json!({"include_usage": true}));
    }

    #[test]
    fn mcp_servers_are_unsupported() {
        let e = translate_err(json!({"messages": [{"role": "user", "content": "x"}],
            "mcp_servers": [{"type": "url", "url": "https://x", "name": "x"}]}));
        assert_eq!(e.param(), Some("mcp_servers"));
    }
}
