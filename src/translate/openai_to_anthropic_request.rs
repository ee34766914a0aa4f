//! OpenAI Chat Completions request → Anthropic Messages request.
//!
//! Choices made where the formats do not line up:
//! - `system` and `developer` messages, wherever they appear, are hoisted into
//!   the top-level `system`, joined with a blank line; it becomes an array of
//!   text blocks only when some part carries `cache_control`.
//! - Messages are always sent with block arrays; adjacent messages of the same
//!   role (including tool results, which become user messages) are merged so
//!   roles alternate. Empty text parts are dropped because Anthropic rejects
//!   empty text blocks.
//! - Rejected (the client expects something Anthropic cannot give): `n` > 1,
//!   `logprobs: true`, non-zero `top_logprobs`, `audio`, `modalities` with
//!   `audio`, `input_audio` parts, `response_format` of type `json_object` /
//!   `json_schema`, the deprecated `functions` / `function_call`, and forced
//!   tool use together with `reasoning_effort`.
//! - Ignored (no effect on the shape of the answer, or only meaningful to
//!   OpenAI): `n: 1`, `stream_options` (except `include_usage`, reported back),
//!   `store`, `metadata` (OpenAI's stored-completion tags; Anthropic only has
//!   `metadata.user_id`, filled from `user`), `service_tier`, `seed`,
//!   `frequency_penalty`, `presence_penalty`, `logit_bias`, `prediction`,
//!   `response_format: {type: text}`, a message's `name`, and assistant
//!   `reasoning_content` (Anthropic needs signed thinking blocks, which an
//!   OpenAI client cannot send back).
//! - `temperature` above 1 is clamped to 1, Anthropic's maximum (OpenAI
//!   allows up to 2). `top_k`, not an OpenAI field, is passed through.
//! - `tool_choice: "none"` drops the tools, unless the conversation already
//!   contains tool calls or results (Anthropic then requires the tool
//!   definitions), in which case `{"type":"none"}` is sent with the tools. A
//!   `tool_choice` or `parallel_tool_calls` without tools is dropped.
//! - `reasoning_effort` `minimal`/`low`, `medium`, `high` give thinking budgets
//!   of 1024, 4096 and 16384 tokens; `none` disables thinking.
//! - A `file` part holding a base64 PDF becomes a `document` block.

use super::error::TranslateError;
use super::request_fields::{field, stream_flag};
use serde_json::{json, Map, Value};

/// Settings for [`openai_to_anthropic_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestOptions {
    /// The upstream model name, routing prefix already removed.
    pub model: String,
    /// `max_tokens` to send when the client gives none (Anthropic requires it).
    pub default_max_tokens: u32,
}

/// A translated request, ready to send to Anthropic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnthropicRequest {
    /// The serialized Anthropic Messages request.
    pub body: Vec<u8>,
    /// The client asked for a streamed response.
    pub stream: bool,
    /// The client asked for a final usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
}

/// Anthropic's default schema when an OpenAI function has no `parameters`.
fn empty_schema() -> Value {
    json!({"type": "object", "properties": {}})
}

/// Thinking budgets for OpenAI's `reasoning_effort` levels.
const BUDGET_LOW: u64 = 1024;
const BUDGET_MEDIUM: u64 = 4096;
const BUDGET_HIGH: u64 = 16384;

/// Translates an OpenAI Chat Completions request body into an Anthropic
/// Messages request body.
pub fn openai_to_anthropic_request(
    body: &[u8],
    opts: &RequestOptions,
) -> Result<AnthropicRequest, TranslateError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| TranslateError::InvalidJson(e.to_string()))?;
    let Value::Object(req) = value else {
        return Err(TranslateError::InvalidJson(format!(
            "expected an object, got {}",
            kind_of(&value)
        )));
    };
    reject_unsupported(&req)?;

    let mut out = Map::new();
    out.insert("model".into(), Value::String(opts.model.clone()));

    let conv = convert_messages(field(&req, "messages"))?;

    let thinking_budget = reasoning_budget(&req)?;
    let mut max_tokens = max_tokens(&req, opts.default_max_tokens)?;
    if let Some(budget) = thinking_budget {
        // Anthropic counts thinking inside max_tokens and requires room for
        // the answer as well.
        if max_tokens <= budget {
            max_tokens = budget + u64::from(opts.default_max_tokens);
        }
    }
    out.insert("max_tokens".into(), max_tokens.into());

    if !conv.system.is_empty() {
        out.insert("system".into(), system_value(conv.system));
    }
    out.insert(
        "messages".into(),
        Value::Array(
            conv.messages
                .into_iter()
                .map(|(role, content)| json!({"role": role, "content": content}))
                .collect(),
        ),
    );

    convert_tooling(
        &req,
        &mut out,
        conv.has_tool_blocks,
        thinking_budget.is_some(),
    )?;

    if let Some(budget) = thinking_budget {
        out.insert(
            "thinking".into(),
            json!({"type": "enabled", "budget_tokens": budget}),
        );
    } else {
        // Anthropic rejects sampling changes with thinking enabled (it
        // requires temperature 1), so these are only sent without it.
        if let Some(t) = number(&req, "temperature")? {
            out.insert("temperature".into(), json!(t.min(1.0)));
        }
        if let Some(p) = number(&req, "top_p")? {
            out.insert("top_p".into(), json!(p));
        }
        if let Some(k) = field(&req, "top_k") {
            let k = k.as_u64().ok_or_else(|| {
                TranslateError::invalid_field("top_k", "must be a non-negative integer")
            })?;
            out.insert("top_k".into(), k.into());
        }
    }

    if let Some(stops) = stop_sequences(&req)? {
        out.insert("stop_sequences".into(), stops);
    }

    let user = match field(&req, "user").or_else(|| field(&req, "safety_identifier")) {
        Some(Value::String(u)) => Some(u.clone()),
        Some(_) => return Err(TranslateError::invalid_field("user", "must be a string")),
        None => None,
    };
    if let Some(user) = user {
        out.insert("metadata".into(), json!({"user_id": user}));
    }

    let stream = stream_flag(&req)?;
    if stream {
        out.insert("stream".into(), Value::Bool(true));
    }
    let include_usage = field(&req, "stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);

    Ok(AnthropicRequest {
        body: Value::Object(out).to_string().into_bytes(),
        stream,
        include_usage,
    })
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn number(req: &Map<String, Value>, key: &str) -> Result<Option<f64>, TranslateError> {
    match field(req, key) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| TranslateError::invalid_field(key, "must be a number")),
    }
}

fn reject_unsupported(req: &Map<String, Value>) -> Result<(), TranslateError> {
    if let Some(n) = field(req, "n") {
        if n.as_u64() != Some(1) {
            return Err(TranslateError::unsupported(
                "n",
                "Anthropic models return exactly one choice; omit `n` or set it to 1, and send separate requests for more choices",
            ));
        }
    }
    if field(req, "logprobs").and_then(Value::as_bool) == Some(true) {
        return Err(TranslateError::unsupported(
            "logprobs",
            "Anthropic models do not return log probabilities; remove `logprobs`",
        ));
    }
    if let Some(t) = field(req, "top_logprobs") {
        if t.as_u64() != Some(0) {
            return Err(TranslateError::unsupported(
                "top_logprobs",
                "Anthropic models do not return log probabilities; remove `top_logprobs`",
            ));
        }
    }
    if field(req, "audio").is_some() {
        return Err(TranslateError::unsupported(
            "audio",
            "Anthropic models cannot produce audio; remove `audio` and request text",
        ));
    }
    if let Some(Value::Array(m)) = field(req, "modalities") {
        if m.iter().any(|v| v.as_str() == Some("audio")) {
            return Err(TranslateError::unsupported(
                "modalities",
                "Anthropic models cannot produce audio; request only `[\"text\"]`",
            ));
        }
    }
    if let Some(rf) = field(req, "response_format") {
        match rf.get("type").and_then(Value::as_str) {
            Some("text") => {}
            Some("json_object" | "json_schema") => {
                return Err(TranslateError::unsupported(
                    "response_format",
                    "Anthropic models have no JSON mode; remove `response_format` and describe the JSON in the prompt, or define a tool whose input schema is the JSON you want",
                ))
            }
            _ => {
                return Err(TranslateError::invalid_field(
                    "response_format",
                    "`type` must be one of text, json_object, json_schema",
                ))
            }
        }
    }
    for key in ["functions", "function_call"] {
        if field(req, key).is_some() {
            return Err(TranslateError::unsupported(
                key,
                "the deprecated functions API is not translated; send `tools` and `tool_choice` instead",
            ));
        }
    }
    Ok(())
}

fn max_tokens(req: &Map<String, Value>, default: u32) -> Result<u64, TranslateError> {
    for key in ["max_completion_tokens", "max_tokens"] {
        if let Some(v) = field(req, key) {
            return v
                .as_u64()
                .filter(|n| *n > 0)
                .ok_or_else(|| TranslateError::invalid_field(key, "must be a positive integer"));
        }
    }
    Ok(u64::from(default))
}

fn reasoning_budget(req: &Map<String, Value>) -> Result<Option<u64>, TranslateError> {
    let Some(v) = field(req, "reasoning_effort") else {
        return Ok(None);
    };
    match v.as_str() {
        Some("none") => Ok(None),
        Some("minimal" | "low") => Ok(Some(BUDGET_LOW)),
        Some("medium") => Ok(Some(BUDGET_MEDIUM)),
        Some("high") => Ok(Some(BUDGET_HIGH)),
        _ => Err(TranslateError::invalid_field(
            "reasoning_effort",
            "must be one of none, minimal, low, medium, high",
        )),
    }
}

fn stop_sequences(req: &Map<String, Value>) -> Result<Option<Value>, TranslateError> {
    let invalid =
        || TranslateError::invalid_field("stop", "must be a string or an array of strings");
    let stops: Vec<Value> = match field(req, "stop") {
        None => return Ok(None),
        Some(Value::String(s)) => vec![Value::String(s.clone())],
        Some(Value::Array(items)) => items
            .iter()
            .map(|s| {
                s.as_str()
                    .map(|s| Value::String(s.to_owned()))
                    .ok_or_else(invalid)
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid()),
    };
    let stops: Vec<Value> = stops
        .into_iter()
        .filter(|s| s.as_str().is_some_and(|s| !s.is_empty()))
        .collect();
    Ok((!stops.is_empty()).then_some(Value::Array(stops)))
}

/// Messages split into Anthropic's top-level system prompt and the
/// alternating conversation.
struct Converted {
    system: Vec<Value>,
    messages: Vec<(&'static str, Vec<Value>)>,
    has_tool_blocks: bool,
}

impl Converted {
    /// Appends blocks, merging into the previous message when the role is
    /// the same so roles alternate.
    fn push(&mut self, role: &'static str, blocks: Vec<Value>) {
        if blocks.is_empty() {
            return;
        }
        match self.messages.last_mut() {
            Some((last, content)) if *last == role => content.extend(blocks),
            _ => self.messages.push((role, blocks)),
        }
    }
}

fn system_value(blocks: Vec<Value>) -> Value {
    if blocks.iter().any(|b| b.get("cache_control").is_some()) {
        return Value::Array(blocks);
    }
    let texts: Vec<&str> = blocks
        .iter()
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    Value::String(texts.join("\n\n"))
}

fn convert_messages(messages: Option<&Value>) -> Result<Converted, TranslateError> {
    let Some(Value::Array(messages)) = messages else {
        return Err(TranslateError::invalid_field(
            "messages",
            "is required and must be an array of messages",
        ));
    };
    let mut conv = Converted {
        system: Vec::new(),
        messages: Vec::new(),
        has_tool_blocks: false,
    };
    for (i, msg) in messages.iter().enumerate() {
        let Value::Object(msg) = msg else {
            return Err(TranslateError::invalid_field(
                format!("messages[{i}]"),
                "must be an object with `role` and `content`",
            ));
        };
        let role = msg.get("role").and_then(Value::as_str).unwrap_or("");
        let content_path = format!("messages[{i}].content");
        match role {
            "system" | "developer" => {
                let blocks =
                    content_blocks(field(msg, "content"), &content_path, PartRole::System)?;
                conv.system.extend(blocks);
            }
            "user" => {
                let blocks = content_blocks(field(msg, "content"), &content_path, PartRole::User)?;
                conv.push("user", blocks);
            }
            "assistant" => {
                if field(msg, "function_call").is_some() {
                    return Err(TranslateError::unsupported(
                        format!("messages[{i}].function_call"),
                        "the deprecated functions API is not translated; send `tool_calls` instead",
                    ));
                }
                let mut blocks =
                    content_blocks(field(msg, "content"), &content_path, PartRole::Assistant)?;
                if let Some(calls) = field(msg, "tool_calls") {
                    let uses = tool_use_blocks(calls, i)?;
                    conv.has_tool_blocks |= !uses.is_empty();
                    blocks.extend(uses);
                }
                conv.push("assistant", blocks);
            }
            "tool" => {
                let block = tool_result_block(msg, i)?;
                conv.has_tool_blocks = true;
                conv.push("user", vec![block]);
            }
            "function" => return Err(TranslateError::unsupported(
                format!("messages[{i}].role"),
                "the deprecated `function` role is not translated; send `tool` messages instead",
            )),
            _ => {
                return Err(TranslateError::invalid_field(
                    format!("messages[{i}].role"),
                    "must be one of system, developer, user, assistant, tool",
                ))
            }
        }
    }
    if conv.messages.is_empty() {
        return Err(TranslateError::invalid_field(
            "messages",
            "must contain at least one non-empty user or assistant message",
        ));
    }
    Ok(conv)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PartRole {
    System,
    User,
    Assistant,
    Tool,
}

/// Converts a message's `content` (string or parts) into Anthropic blocks.
fn content_blocks(
    content: Option<&Value>,
    path: &str,
    role: PartRole,
) -> Result<Vec<Value>, TranslateError> {
    match content {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(text_block(s, None).into_iter().collect()),
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                if let Some(block) = part_block(part, &format!("{path}[{j}]"), role)? {
                    blocks.push(block);
                }
            }
            Ok(blocks)
        }
        Some(_) => Err(TranslateError::invalid_field(
            path,
            "must be a string or an array of content parts",
        )),
    }
}

fn text_block(text: &str, cache_control: Option<&Value>) -> Option<Value> {
    if text.is_empty() {
        return None;
    }
    let mut block = Map::new();
    block.insert("type".into(), "text".into());
    block.insert("text".into(), text.into());
    if let Some(cc) = cache_control {
        block.insert("cache_control".into(), cc.clone());
    }
    Some(Value::Object(block))
}

fn with_cache_control(mut block: Value, part: &Map<String, Value>) -> Value {
    if let (Some(cc), Value::Object(b)) = (field(part, "cache_control"), &mut block) {
        b.insert("cache_control".into(), cc.clone());
    }
    block
}

fn part_block(part: &Value, path: &str, role: PartRole) -> Result<Option<Value>, TranslateError> {
    let Value::Object(part) = part else {
        return Err(TranslateError::invalid_field(
            path,
            "content parts must be objects with a `type`",
        ));
    };
    let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
    let text_only = |what: &str| {
        TranslateError::invalid_field(path, format!("{what} messages may only contain text parts"))
    };
    match kind {
        "text" => {
            let text = part.get("text").and_then(Value::as_str).ok_or_else(|| {
                TranslateError::invalid_field(format!("{path}.text"), "must be a string")
            })?;
            Ok(text_block(text, field(part, "cache_control")))
        }
        "refusal" if role == PartRole::Assistant => {
            let text = part.get("refusal").and_then(Value::as_str).unwrap_or("");
            Ok(text_block(text, None))
        }
        "image_url" => {
            match role {
                PartRole::System => return Err(text_only("system")),
                PartRole::Assistant => return Err(text_only("assistant")),
                PartRole::User | PartRole::Tool => {}
            }
            let url = match part.get("image_url") {
                Some(Value::String(u)) => Some(u.as_str()),
                Some(Value::Object(o)) => o.get("url").and_then(Value::as_str),
                _ => None,
            }
            .ok_or_else(|| {
                TranslateError::invalid_field(format!("{path}.image_url.url"), "must be a string")
            })?;
            let source = image_source(url, &format!("{path}.image_url.url"))?;
            Ok(Some(with_cache_control(
                json!({"type": "image", "source": source}),
                part,
            )))
        }
        "file" if role == PartRole::User => {
            let data = part
                .get("file")
                .and_then(|f| f.get("file_data"))
                .and_then(Value::as_str);
            let source = match data {
                Some(d) => data_url(d, &format!("{path}.file.file_data"))?,
                None => {
                    return Err(TranslateError::unsupported(
                        path,
                        "only inline files (`file.file_data` as a base64 data URL) can be sent to Anthropic models; uploaded `file_id`s cannot",
                    ))
                }
            };
            if source.get("media_type").and_then(Value::as_str) != Some("application/pdf") {
                return Err(TranslateError::unsupported(
                    path,
                    "Anthropic models accept PDF files only; send other documents as text",
                ));
            }
            Ok(Some(with_cache_control(
                json!({"type": "document", "source": source}),
                part,
            )))
        }
        "input_audio" => Err(TranslateError::unsupported(
            path,
            "Anthropic models do not accept audio input; transcribe the audio and send text",
        )),
        _ => match role {
            PartRole::System => Err(text_only("system")),
            PartRole::Assistant => Err(text_only("assistant")),
            PartRole::User | PartRole::Tool => Err(TranslateError::unsupported(
                path,
                format!("content part type `{kind}` cannot be sent to Anthropic models; use text, image_url or a PDF file"),
            )),
        },
    }
}

/// `data:<mime>;base64,<data>` → Anthropic base64 source.
fn data_url(url: &str, path: &str) -> Result<Value, TranslateError> {
    let bad = || {
        TranslateError::invalid_field(path, "data URLs must look like data:<mime>;base64,<data>")
    };
    let rest = url.strip_prefix("data:").ok_or_else(bad)?;
    let (meta, data) = rest.split_once(',').ok_or_else(bad)?;
    let mut params = meta.split(';');
    let mime = params.next().unwrap_or("");
    if mime.is_empty() || !params.any(|p| p.eq_ignore_ascii_case("base64")) {
        return Err(bad());
    }
    Ok(json!({"type": "base64", "media_type": mime, "data": data}))
}

fn image_source(url: &str, path: &str) -> Result<Value, TranslateError> {
    if url.starts_with("data:") {
        return data_url(url, path);
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        return Ok(json!({"type": "url", "url": url}));
    }
    Err(TranslateError::invalid_field(
        path,
        "must be an http(s) URL or a data:<mime>;base64,<data> URL",
    ))
}

fn tool_use_blocks(calls: &Value, i: usize) -> Result<Vec<Value>, TranslateError> {
    let Value::Array(calls) = calls else {
        return Err(TranslateError::invalid_field(
            format!("messages[{i}].tool_calls"),
            "must be an array",
        ));
    };
    let mut blocks = Vec::with_capacity(calls.len());
    for (j, call) in calls.iter().enumerate() {
        let path = format!("messages[{i}].tool_calls[{j}]");
        let kind = call
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("function");
        if kind != "function" {
            return Err(TranslateError::unsupported(
                format!("{path}.type"),
                "only function tool calls can be sent to Anthropic models",
            ));
        }
        let id = call.get("id").and_then(Value::as_str).ok_or_else(|| {
            TranslateError::invalid_field(format!("{path}.id"), "must be a string")
        })?;
        let function = call.get("function");
        let name = function
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                TranslateError::invalid_field(format!("{path}.function.name"), "must be a string")
            })?;
        let args_path = format!("{path}.function.arguments");
        let input = match function.and_then(|f| f.get("arguments")) {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(Value::String(s)) if s.trim().is_empty() => Value::Object(Map::new()),
            Some(Value::String(s)) => serde_json::from_str(s).map_err(|e| {
                TranslateError::invalid_field(
                    args_path.as_str(),
                    format!("must be a JSON object encoded as a string ({e})"),
                )
            })?,
            // Some clients send the object itself rather than its encoding.
            Some(v) => v.clone(),
        };
        if !input.is_object() {
            return Err(TranslateError::invalid_field(
                args_path,
                "must encode a JSON object, as Anthropic tool inputs are objects",
            ));
        }
        blocks.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
    }
    Ok(blocks)
}

fn tool_result_block(msg: &Map<String, Value>, i: usize) -> Result<Value, TranslateError> {
    let id = msg
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            TranslateError::invalid_field(
                format!("messages[{i}].tool_call_id"),
                "is required on tool messages and must match a preceding assistant tool call id",
            )
        })?;
    let mut block = Map::new();
    block.insert("type".into(), "tool_result".into());
    block.insert("tool_use_id".into(), id.into());
    match field(msg, "content") {
        None => {}
        Some(Value::String(s)) => {
            if !s.is_empty() {
                block.insert("content".into(), s.as_str().into());
            }
        }
        content @ Some(Value::Array(_)) => {
            let blocks =
                content_blocks(content, &format!("messages[{i}].content"), PartRole::Tool)?;
            if !blocks.is_empty() {
                block.insert("content".into(), Value::Array(blocks));
            }
        }
        Some(_) => {
            return Err(TranslateError::invalid_field(
                format!("messages[{i}].content"),
                "must be a string or an array of content parts",
            ))
        }
    }
    Ok(Value::Object(block))
}

enum ToolChoice {
    Auto,
    Any,
    None,
    Tool(String),
}

fn parse_tool_choice(v: &Value) -> Result<ToolChoice, TranslateError> {
    match v {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "required" => Ok(ToolChoice::Any),
            "none" => Ok(ToolChoice::None),
            _ => Err(TranslateError::invalid_field(
                "tool_choice",
                "must be auto, required, none or {\"type\":\"function\",\"function\":{\"name\":...}}",
            )),
        },
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    TranslateError::invalid_field("tool_choice.function.name", "must be a string")
                })?;
            Ok(ToolChoice::Tool(name.to_owned()))
        }
        Value::Object(_) => Err(TranslateError::unsupported(
            "tool_choice",
            "only auto, required, none and a named function can be sent to Anthropic models",
        )),
        _ => Err(TranslateError::invalid_field(
            "tool_choice",
            "must be a string or an object",
        )),
    }
}

fn convert_tools(tools: &Value) -> Result<Vec<Value>, TranslateError> {
    let Value::Array(tools) = tools else {
        return Err(TranslateError::invalid_field("tools", "must be an array"));
    };
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let kind = tool
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("function");
        if kind != "function" {
            return Err(TranslateError::unsupported(
                format!("tools[{i}].type"),
                "only `function` tools can be sent to Anthropic models",
            ));
        }
        let function = tool
            .get("function")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                TranslateError::invalid_field(format!("tools[{i}].function"), "must be an object")
            })?;
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                TranslateError::invalid_field(
                    format!("tools[{i}].function.name"),
                    "must be a string",
                )
            })?;
        let mut t = Map::new();
        t.insert("name".into(), name.into());
        if let Some(d) = field(function, "description") {
            t.insert("description".into(), d.clone());
        }
        let schema = field(function, "parameters")
            .cloned()
            .unwrap_or_else(empty_schema);
        t.insert("input_schema".into(), schema);
        if let Some(cc) = tool.get("cache_control").filter(|v| !v.is_null()) {
            t.insert("cache_control".into(), cc.clone());
        }
        out.push(Value::Object(t));
    }
    Ok(out)
}

fn convert_tooling(
    req: &Map<String, Value>,
    out: &mut Map<String, Value>,
    has_tool_blocks: bool,
    thinking: bool,
) -> Result<(), TranslateError> {
    let tools = match field(req, "tools") {
        Some(t) => convert_tools(t)?,
        None => Vec::new(),
    };
    let choice = field(req, "tool_choice")
        .map(parse_tool_choice)
        .transpose()?;
    if tools.is_empty() {
        return Ok(());
    }
    let no_parallel = field(req, "parallel_tool_calls").and_then(Value::as_bool) == Some(false);
    let mut tc = match choice {
        Some(ToolChoice::None) => {
            if has_tool_blocks {
                out.insert("tools".into(), Value::Array(tools));
                out.insert("tool_choice".into(), json!({"type": "none"}));
            }
            return Ok(());
        }
        Some(ToolChoice::Auto) => Some(json!({"type": "auto"})),
        Some(ToolChoice::Any) => Some(json!({"type": "any"})),
        Some(ToolChoice::Tool(name)) => Some(json!({"type": "tool", "name": name})),
        None => None,
    };
    if thinking && tc.as_ref().is_some_and(|c| c["type"] != "auto") {
        return Err(TranslateError::unsupported(
            "reasoning_effort",
            "Anthropic models cannot think while forced to call a tool; remove `reasoning_effort` or set `tool_choice` to auto",
        ));
    }
    if no_parallel {
        let c = tc.get_or_insert_with(|| json!({"type": "auto"}));
        if let Value::Object(c) = c {
            c.insert("disable_parallel_tool_use".into(), Value::Bool(true));
        }
    }
    out.insert("tools".into(), Value::Array(tools));
    if let Some(tc) = tc {
        out.insert("tool_choice".into(), tc);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> RequestOptions {
        RequestOptions {
            model: "claude-sonnet-4-20250514".into(),
            default_max_tokens: 4096,
        }
    }

    fn translate(req: Value) -> Value {
        let r = openai_to_anthropic_request(req.to_string().as_bytes(), &opts()).unwrap();
        serde_json::from_slice(&r.body).unwrap()
    }

    fn translate_err(req: Value) -> TranslateError {
        openai_to_anthropic_request(req.to_string().as_bytes(), &opts()).unwrap_err()
    }

    fn user(text: &str) -> Value {
        json!({"role": "user", "content": text})
    }

    #[test]
    fn simple_chat_uses_upstream_model_and_default_max_tokens() {
        let got = translate(json!({"model": "anthropic/claude", "messages": [user("Hi")]}));
        assert_eq!(
            got,
            json!({
                "model": "claude-sonnet-4-20250514",
                "max_tokens": 4096,
                "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
            })
        );
    }

    #[test]
    fn invalid_json_and_non_object_bodies_are_rejected() {
        let e = openai_to_anthropic_request(b"{", &opts()).unwrap_err();
        assert!(matches!(e, TranslateError::InvalidJson(_)));
        let e = openai_to_anthropic_request(b"[1]", &opts()).unwrap_err();
        assert!(matches!(e, TranslateError::InvalidJson(_)));
    }

    #[test]
    fn missing_or_empty_messages_are_invalid() {
        assert_eq!(
            translate_err(json!({"model": "m"})).param(),
            Some("messages")
        );
        let e = translate_err(json!({"messages": [{"role": "system", "content": "s"}]}));
        assert_eq!(e.param(), Some("messages"));
    }

    #[test]
    fn system_and_developer_messages_become_top_level_system_string() {
        let got = translate(json!({"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
            user("Hi")
        ]}));
        assert_eq!(got["system"], "Be brief.\n\nUse French.");
        assert_eq!(got["messages"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn system_with_cache_control_becomes_block_array() {
        let got = translate(json!({"messages": [
            {"role": "system", "content": [
                {"type": "text", "text": "Long context", "cache_control": {"type": "ephemeral"}}
            ]},
            {"role": "system", "content": "More"},
            user("Hi")
        ]}));
        assert_eq!(
            got["system"],
            json!([
                {"type": "text", "text": "Long context", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "More"}
            ])
        );
    }

    #[test]
    fn text_parts_keep_cache_control() {
        let got = translate(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "b"}
        ]}]}));
        assert_eq!(
            got["messages"][0]["content"],
            json!([
                {"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "b"}
            ])
        );
    }

    #[test]
    fn empty_text_is_dropped() {
        let got = translate(json!({"messages": [
            {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "x"}]},
            {"role": "assistant", "content": ""},
            user("y")
        ]}));
        assert_eq!(
            got["messages"],
            json!([{"role": "user", "content": [
                {"type": "text", "text": "x"}, {"type": "text", "text": "y"}
            ]}])
        );
    }

    #[test]
    fn data_url_image_becomes_base64_source() {
        let got = translate(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "What colors?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}
        ]}]}));
        assert_eq!(
            got["messages"][0]["content"][1],
            json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}})
        );
    }

    #[test]
    fn http_image_becomes_url_source() {
        let got = translate(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}, "cache_control": {"type": "ephemeral"}}
        ]}]}));
        assert_eq!(
            got["messages"][0]["content"][0],
            json!({"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}, "cache_control": {"type": "ephemeral"}})
        );
    }

    #[test]
    fn bad_image_urls_are_invalid() {
        for url in [
            "ftp://x/y.png",
            "data:image/png,raw",
            "data:;base64,AAAA",
            "data:image/png;base64",
        ] {
            let e = translate_err(json!({"messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": url}}
            ]}]}));
            assert_eq!(
                e.param(),
                Some("messages[0].content[0].image_url.url"),
                "{url}"
            );
        }
    }

    #[test]
    fn pdf_file_part_becomes_document() {
        let got = translate(json!({"messages": [{"role": "user", "content": [
            {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}
        ]}]}));
        assert_eq!(
            got["messages"][0]["content"][0],
            json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}})
        );
        let e = translate_err(json!({"messages": [{"role": "user", "content": [
            {"type": "file", "file": {"file_id": "file-1"}}
        ]}]}));
        assert!(matches!(e, TranslateError::Unsupported { .. }));
    }

    #[test]
    fn input_audio_part_is_unsupported() {
        let e = translate_err(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "hi"},
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
        ]}]}));
        assert!(matches!(e, TranslateError::Unsupported { .. }));
        assert_eq!(e.param(), Some("messages[0].content[1]"));
    }

    #[test]
    fn assistant_tool_calls_become_tool_use_blocks() {
        let got = translate(json!({"messages": [
            user("Weather in Paris?"),
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": ""}}
            ]},
        ]}));
        assert_eq!(
            got["messages"][1],
            json!({"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"location": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "now", "input": {}}
            ]})
        );
    }

    #[test]
    fn invalid_tool_call_arguments_name_the_field() {
        for args in ["{not json", "[1,2]"] {
            let e = translate_err(json!({"messages": [
                user("x"),
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                    {"id": "b", "type": "function", "function": {"name": "f", "arguments": args}}
                ]}
            ]}));
            assert!(matches!(e, TranslateError::InvalidField { .. }));
            assert_eq!(
                e.param(),
                Some("messages[1].tool_calls[1].function.arguments")
            );
        }
    }

    #[test]
    fn consecutive_tool_messages_become_one_user_message() {
        let got = translate(json!({"messages": [
            user("Weather in Paris and Rome?"),
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{\"l\":\"Paris\"}"}},
                {"id": "c2", "type": "function", "function": {"name": "w", "arguments": "{\"l\":\"Rome\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "c1", "content": "18C"},
            {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "21C"}]},
            user("Which is warmer?")
        ]}));
        let msgs = got["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 3);
        assert_eq!(
            msgs[2],
            json!({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "c1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "c2", "content": [{"type": "text", "text": "21C"}]},
                {"type": "text", "text": "Which is warmer?"}
            ]})
        );
    }

    #[test]
    fn tool_message_without_id_is_invalid() {
        let e = translate_err(json!({"messages": [user("x"), {"role": "tool", "content": "y"}]}));
        assert_eq!(e.param(), Some("messages[1].tool_call_id"));
    }

    #[test]
    fn adjacent_same_role_messages_are_merged() {
        let got = translate(json!({"messages": [
            user("a"), user("b"),
            {"role": "assistant", "content": "c"},
            {"role": "assistant", "content": [{"type": "text", "text": "d"}]},
            user("e")
        ]}));
        let roles: Vec<&str> = got["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["user", "assistant", "user"]);
        assert_eq!(got["messages"][0]["content"][1]["text"], "b");
    }

    #[test]
    fn tools_become_anthropic_tools_with_default_schema() {
        let got = translate(json!({"messages": [user("x")], "tools": [
            {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {
                "type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}},
            {"type": "function", "function": {"name": "now"}}
        ]}));
        assert_eq!(
            got["tools"],
            json!([
                {"name": "get_weather", "description": "Weather", "input_schema": {
                    "type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}},
                {"name": "now", "input_schema": {"type": "object", "properties": {}}}
            ])
        );
        assert!(got.get("tool_choice").is_none());
    }

    #[test]
    fn non_function_tools_are_unsupported() {
        let e = translate_err(
            json!({"messages": [user("x")], "tools": [{"type": "custom", "custom": {"name": "x"}}]}),
        );
        assert_eq!(e.param(), Some("tools[0].type"));
    }

    fn tools() -> Value {
        json!([{"type": "function", "function": {"name": "f"}}])
    }

    #[test]
    fn tool_choice_maps_to_anthropic() {
        let cases = [
            (json!("auto"), json!({"type": "auto"})),
            (json!("required"), json!({"type": "any"})),
            (
                json!({"type": "function", "function": {"name": "f"}}),
                json!({"type": "tool", "name": "f"}),
            ),
        ];
        for (choice, expected) in cases {
            let got = translate(
                json!({"messages": [user("x")], "tools": tools(), "tool_choice": choice}),
            );
            assert_eq!(got["tool_choice"], expected);
        }
    }

    #[test]
    fn tool_choice_none_drops_tools() {
        let got =
            translate(json!({"messages": [user("x")], "tools": tools(), "tool_choice": "none"}));
        assert!(got.get("tools").is_none());
        assert!(got.get("tool_choice").is_none());
    }

    #[test]
    fn tool_choice_none_keeps_tools_when_history_has_tool_calls() {
        let got = translate(json!({"messages": [
            user("x"),
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "ok"}
        ], "tools": tools(), "tool_choice": "none"}));
        assert_eq!(got["tool_choice"], json!({"type": "none"}));
        assert_eq!(got["tools"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn parallel_tool_calls_false_disables_parallel_use() {
        let got = translate(
            json!({"messages": [user("x")], "tools": tools(), "parallel_tool_calls": false}),
        );
        assert_eq!(
            got["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        let got = translate(
            json!({"messages": [user("x")], "tools": tools(), "tool_choice": "required", "parallel_tool_calls": false}),
        );
        assert_eq!(
            got["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
    }

    #[test]
    fn tool_choice_without_tools_is_dropped() {
        let got = translate(
            json!({"messages": [user("x")], "tool_choice": "auto", "parallel_tool_calls": false}),
        );
        assert!(got.get("tool_choice").is_none());
    }

    #[test]
    fn max_completion_tokens_wins_over_max_tokens() {
        let got = translate(
            json!({"messages": [user("x")], "max_tokens": 10, "max_completion_tokens": 20}),
        );
        assert_eq!(got["max_tokens"], 20);
        let got = translate(json!({"messages": [user("x")], "max_tokens": 10}));
        assert_eq!(got["max_tokens"], 10);
        let e = translate_err(json!({"messages": [user("x")], "max_tokens": 0}));
        assert_eq!(e.param(), Some("max_tokens"));
    }

    #[test]
    fn sampling_params_are_copied_and_temperature_clamped() {
        let got = translate(
            json!({"messages": [user("x")], "temperature": 0.2, "top_p": 0.9, "top_k": 5}),
        );
        assert_eq!(got["temperature"], 0.2);
        assert_eq!(got["top_p"], 0.9);
        assert_eq!(got["top_k"], 5);
        let got = translate(json!({"messages": [user("x")], "temperature": 1.7}));
        assert_eq!(got["temperature"], 1.0);
    }

    #[test]
    fn stop_string_or_list_becomes_stop_sequences() {
        let got = translate(json!({"messages": [user("x")], "stop": "3"}));
        assert_eq!(got["stop_sequences"], json!(["3"]));
        let got = translate(json!({"messages": [user("x")], "stop": ["a", "b"]}));
        assert_eq!(got["stop_sequences"], json!(["a", "b"]));
        let got = translate(json!({"messages": [user("x")], "stop": null}));
        assert!(got.get("stop_sequences").is_none());
        assert_eq!(
            translate_err(json!({"messages": [user("x")], "stop": [1]})).param(),
            Some("stop")
        );
    }

    #[test]
    fn user_becomes_metadata_user_id() {
        let got =
            translate(json!({"messages": [user("x")], "user": "u-42", "metadata": {"k": "v"}}));
        assert_eq!(got["metadata"], json!({"user_id": "u-42"}));
    }

    #[test]
    fn reasoning_effort_enables_thinking_and_drops_sampling() {
        for (effort, budget) in [("low", 1024), ("medium", 4096), ("high", 16384)] {
            let got = translate(json!({"messages": [user("x")], "reasoning_effort": effort,
                "temperature": 0.3, "top_p": 0.5, "max_completion_tokens": 100000}));
            assert_eq!(
                got["thinking"],
                json!({"type": "enabled", "budget_tokens": budget})
            );
            assert_eq!(got["max_tokens"], 100000);
            assert!(got.get("temperature").is_none());
            assert!(got.get("top_p").is_none());
        }
    }

    #[test]
    fn thinking_raises_max_tokens_above_budget() {
        let got = translate(
            json!({"messages": [user("x")], "reasoning_effort": "high", "max_tokens": 1000}),
        );
        assert_eq!(got["max_tokens"], 16384 + 4096);
        let got = translate(json!({"messages": [user("x")], "reasoning_effort": "low"}));
        assert_eq!(got["max_tokens"], 4096);
    }

    #[test]
    fn reasoning_effort_none_and_invalid() {
        let got = translate(json!({"messages": [user("x")], "reasoning_effort": "none"}));
        assert!(got.get("thinking").is_none());
        let e = translate_err(json!({"messages": [user("x")], "reasoning_effort": "max"}));
        assert_eq!(e.param(), Some("reasoning_effort"));
    }

    #[test]
    fn thinking_with_forced_tool_is_unsupported() {
        let e = translate_err(json!({"messages": [user("x")], "tools": tools(),
            "tool_choice": "required", "reasoning_effort": "low"}));
        assert!(matches!(e, TranslateError::Unsupported { .. }));
        assert_eq!(e.param(), Some("reasoning_effort"));
    }

    #[test]
    fn stream_and_include_usage_are_reported() {
        let body = json!({"messages": [user("x")], "stream": true, "stream_options": {"include_usage": true}});
        let r = openai_to_anthropic_request(body.to_string().as_bytes(), &opts()).unwrap();
        assert!(r.stream && r.include_usage);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["stream"], true);
        assert!(v.get("stream_options").is_none());
        let r = openai_to_anthropic_request(
            br#"{"messages":[{"role":"user","content":"x"}]}"#,
            &opts(),
        )
        .unwrap();
        assert!(!r.stream && !r.include_usage);
    }

    #[test]
    fn unsupported_fields_are_named() {
        let cases = [
            (json!({"n": 2}), "n"),
            (json!({"logprobs": true}), "logprobs"),
            (json!({"top_logprobs": 3}), "top_logprobs"),
            (
                json!({"audio": {"voice": "alloy", "format": "wav"}}),
                "audio",
            ),
            (json!({"modalities": ["text", "audio"]}), "modalities"),
            (
                json!({"response_format": {"type": "json_object"}}),
                "response_format",
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}),
                "response_format",
            ),
            (json!({"functions": [{"name": "f"}]}), "functions"),
        ];
        for (extra, field) in cases {
            let mut req = json!({"messages": [user("x")]});
            for (k, v) in extra.as_object().unwrap() {
                req[k] = v.clone();
            }
            let e = translate_err(req);
            assert!(matches!(e, TranslateError::Unsupported { .. }), "{field}");
            assert_eq!(e.param(), Some(field));
            assert!(e.to_string().contains(field));
        }
    }

    #[test]
    fn harmless_fields_are_ignored() {
        let got = translate(
            json!({"messages": [user("x")], "n": 1, "logprobs": false, "store": true,
            "stream_options": {"include_usage": false}, "response_format": {"type": "text"},
            "seed": 7, "presence_penalty": 0.1, "frequency_penalty": 0.1, "service_tier": "auto"}),
        );
        let mut keys: Vec<&String> = got.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["max_tokens", "messages", "model"]);
    }

    #[test]
    fn unknown_role_is_invalid() {
        let e = translate_err(json!({"messages": [{"role": "robot", "content": "x"}]}));
        assert_eq!(e.param(), Some("messages[0].role"));
    }
}
