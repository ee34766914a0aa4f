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
//!   `audio`, `input_audio` parts, `response_format` of type `json_object`
//!   (Anthropic's structured outputs need a schema), the deprecated `functions` /
//!   `function_call`, and forced tool use together with `reasoning_effort`.
//! - `response_format` `json_schema` becomes `output_config.format` (`type:
//!   json_schema` and the schema): Anthropic answers with the JSON as text, which
//!   is the message's `content` as OpenAI's would be. Its `name`, `description` and
//!   `strict` are not sent (Anthropic always holds the answer to the schema); a
//!   model without structured outputs is left for Anthropic to refuse.
//! - Ignored (no effect on the shape of the answer, or only meaningful to
//!   OpenAI): `n: 1`, `stream_options` (except `include_usage`, reported back),
//!   `store`, `metadata` (OpenAI's stored-completion tags; Anthropic only has
//!   `metadata.user_id`, filled from `user`), `service_tier`, `seed`,
//!   `frequency_penalty`, `presence_penalty`, `logit_bias`, `prediction`,
//!   `response_format: {type: text}`, a message's `name`, and assistant
//!   `reasoning_content` (Anthropic needs signed thinking blocks, which an
//!   OpenAI client cannot send back).
//! - `temperature` above 1 is clamped to 1, Anthropic's maximum (OpenAI
//!   allows up to 2); `top_p` is sent only without a temperature (Claude 4.5 and
//!   later refuse both). `top_k`, not an OpenAI field, is passed through.
//! - `tool_choice: "none"` drops the tools, unless the conversation already
//!   contains tool calls or results (Anthropic then requires the tool
//!   definitions), in which case `{"type":"none"}` is sent with the tools. A
//!   conversation with tool calls but no `tools` (a summary of an agent's work
//!   replays them without) gets, for the same reason, a bare definition of each
//!   tool it called (`input_schema` `{"type":"object"}`) and `{"type":"none"}`.
//!   Otherwise a `tool_choice` or `parallel_tool_calls` without tools is dropped.
//! - A tool call's `arguments` that do not encode a JSON object (a call the
//!   length limit cut short) become the input `{}`, as in a translated answer.
//! - `reasoning_effort` `minimal`/`low`, `medium`, `high` give thinking budgets
//!   of 1024, 4096 and 16384 tokens; `none` disables thinking. A request answering
//!   tool calls goes without it (Anthropic would want the calls' signed thinking).
//!   `max_tokens` is raised past the budget only when thinking is sent.
//! - A base64 image is sent with the media type its first bytes show (a JPEG
//!   labelled `image/png` would be refused as a mismatch), else the one its data
//!   URL names, `image/jpg` made `image/jpeg`.
//! - A `file` part holding a base64 PDF becomes a `document` block.

//!
//! The body is read one level at a time and the Anthropic request is written
//! straight into one buffer (see `request_fields`), so a long conversation
//! costs little more memory than its own size.

use std::borrow::Cow;

use super::error::TranslateError;
use super::image_media_type::anthropic_image_media_type;
use super::json_writer::{
    release_spare, write_compact, write_f64, write_key, write_str, write_str_array, write_u64,
};
use super::request_fields::{field, json_object, parse_text, stream_flag, CheckedBody, Json, Text};
use super::tool_call_id::anthropic_tool_use_id;

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
const EMPTY_SCHEMA: &[u8] = br#"{"properties":{},"type":"object"}"#;

/// Thinking budgets for OpenAI's `reasoning_effort` levels.
pub(crate) const BUDGET_LOW: u64 = 1024;
pub(crate) const BUDGET_MEDIUM: u64 = 4096;
pub(crate) const BUDGET_HIGH: u64 = 16384;

/// Room for the answer past a thinking budget when the client's own limit leaves
/// none (Anthropic counts thinking inside `max_tokens`): a fixed size, since the
/// budget and this stay within the ceiling of every model that thinks (32,000 and up).
pub(crate) const ANSWER_ROOM_PAST_THINKING: u64 = 4096;

json_object!(
    /// The members of a Chat Completions request that translation reads.
    struct ChatRequest {
        messages,
        n,
        logprobs,
        top_logprobs,
        audio,
        modalities,
        response_format,
        functions,
        function_call,
        max_completion_tokens,
        max_tokens,
        reasoning_effort,
        temperature,
        top_p,
        top_k,
        stop,
        user,
        safety_identifier,
        stream,
        stream_options,
        tools,
        tool_choice,
        parallel_tool_calls,
    }
);

json_object!(
    struct Message {
        role,
        content,
        tool_calls,
        tool_call_id,
        function_call,
    }
);

json_object!(
    struct Part {
        kind = "type",
        text,
        refusal,
        image_url,
        file,
        cache_control,
    }
);

json_object!(
    struct ToolCall {
        kind = "type",
        id,
        function,
    }
);

json_object!(
    struct Function {
        name,
        description,
        parameters,
        arguments,
    }
);

json_object!(
    struct Tool {
        kind = "type",
        function,
        cache_control,
    }
);

/// Translates an OpenAI Chat Completions request body into an Anthropic
/// Messages request body.
pub fn openai_to_anthropic_request(
    body: CheckedBody<'_>,
    opts: &RequestOptions,
) -> Result<AnthropicRequest, TranslateError> {
    let value = body.value();
    if !value.is_object() {
        return Err(TranslateError::InvalidJson(format!(
            "expected an object, got {}",
            value.kind_name()
        )));
    }
    let req = ChatRequest::read(value);
    reject_unsupported(&req)?;
    let schema = output_schema(&req)?;

    let messages = field(req.messages).and_then(Json::elements);
    // With thinking on, Anthropic wants the turn whose tool calls are being answered
    // to start with its signed thinking, which an OpenAI client cannot send back: such
    // a request goes without thinking, as Anthropic's error advises. Read ahead of the
    // messages (only when thinking is asked for): `max_tokens`, written before them,
    // makes room only for thinking sent.
    let answers_tool_calls = || {
        messages
            .as_deref()
            .is_some_and(last_turn_answers_tool_calls)
    };

    // `max_tokens` is written first (keys are sorted as before), but its
    // errors are reported after those of the messages.
    let limits = reasoning_budget(&req).and_then(|budget| {
        let budget = budget.filter(|_| !answers_tool_calls());
        let mut max = max_tokens(&req, opts.default_max_tokens)?;
        if let Some(budget) = budget {
            // Anthropic counts thinking inside max_tokens and requires room
            // for the answer as well.
            if max <= budget {
                max = budget + ANSWER_ROOM_PAST_THINKING;
            }
        }
        Ok((budget, max))
    });

    // A translated conversation is at most about twice as long as the
    // client's (block wrappers around one-word messages, escaped tool
    // arguments), so one allocation holds it; a large leftover is released
    // at the end.
    let mut out = Vec::with_capacity(2 * body.text().len() + 256);
    out.push(b'{');
    if let Ok((_, max)) = &limits {
        write_key(&mut out, "max_tokens");
        write_u64(&mut out, *max);
        out.push(b',');
    }
    let conv = convert_messages(messages, &mut out)?;
    let (thinking_budget, _) = limits?;

    let tooling = tooling(
        &req,
        conv.has_tool_blocks,
        &conv.called_tool_names,
        thinking_budget.is_some(),
    )?;
    let sampling = match thinking_budget {
        // Anthropic rejects sampling changes with thinking enabled (it
        // requires temperature 1), so these are only sent without it.
        Some(_) => Sampling::default(),
        None => sampling(&req)?,
    };
    let stops = stop_sequences(&req)?;
    let user = match field(req.user).or_else(|| field(req.safety_identifier)) {
        Some(u) => Some(
            u.as_str()
                .ok_or_else(|| TranslateError::invalid_field("user", "must be a string"))?,
        ),
        None => None,
    };
    let stream = stream_flag(req.stream)?;
    let include_usage = field(req.stream_options)
        .and_then(|o| o.get("include_usage"))
        .and_then(Json::as_bool)
        .unwrap_or(false);

    if let Some(user) = user {
        out.extend_from_slice(br#","metadata":{"user_id":"#);
        write_str(&mut out, &user);
        out.push(b'}');
    }
    out.extend_from_slice(br#","model":"#);
    write_str(&mut out, &opts.model);
    if let Some(schema) = schema {
        out.extend_from_slice(br#","output_config":{"format":{"schema":"#);
        write_compact(&mut out, schema.text());
        out.extend_from_slice(br#","type":"json_schema"}}"#);
    }
    if !stops.is_empty() {
        out.extend_from_slice(br#","stop_sequences":"#);
        write_str_array(&mut out, &stops);
    }
    if stream {
        out.extend_from_slice(br#","stream":true"#);
    }
    if !conv.system.is_empty() {
        out.extend_from_slice(br#","system":"#);
        write_system(&mut out, &conv.system);
    }
    if let Some(t) = sampling.temperature {
        out.extend_from_slice(br#","temperature":"#);
        write_f64(&mut out, t.min(1.0));
    }
    if let Some(budget) = thinking_budget {
        out.extend_from_slice(br#","thinking":{"budget_tokens":"#);
        write_u64(&mut out, budget);
        out.extend_from_slice(br#","type":"enabled"}"#);
    }
    if let Some(tooling) = tooling {
        if let Some(choice) = tooling.choice {
            out.extend_from_slice(br#","tool_choice":"#);
            choice.write(&mut out);
        }
        out.extend_from_slice(br#","tools":"#);
        out.extend_from_slice(&tooling.tools);
    }
    if let Some(k) = sampling.top_k {
        out.extend_from_slice(br#","top_k":"#);
        write_u64(&mut out, k);
    }
    if let Some(p) = sampling.top_p {
        out.extend_from_slice(br#","top_p":"#);
        write_f64(&mut out, p);
    }
    out.push(b'}');
    release_spare(&mut out);

    Ok(AnthropicRequest {
        body: out,
        stream,
        include_usage,
    })
}

fn reject_unsupported(req: &ChatRequest<'_>) -> Result<(), TranslateError> {
    if let Some(n) = field(req.n) {
        if n.as_u64() != Some(1) {
            return Err(TranslateError::unsupported(
                "n",
                "Anthropic models return exactly one choice; omit `n` or set it to 1, and send separate requests for more choices",
            ));
        }
    }
    if field(req.logprobs).and_then(Json::as_bool) == Some(true) {
        return Err(TranslateError::unsupported(
            "logprobs",
            "Anthropic models do not return log probabilities; remove `logprobs`",
        ));
    }
    if let Some(t) = field(req.top_logprobs) {
        if t.as_u64() != Some(0) {
            return Err(TranslateError::unsupported(
                "top_logprobs",
                "Anthropic models do not return log probabilities; remove `top_logprobs`",
            ));
        }
    }
    if field(req.audio).is_some() {
        return Err(TranslateError::unsupported(
            "audio",
            "Anthropic models cannot produce audio; remove `audio` and request text",
        ));
    }
    if let Some(m) = field(req.modalities).and_then(Json::elements) {
        if m.iter().any(|v| v.as_str().as_deref() == Some("audio")) {
            return Err(TranslateError::unsupported(
                "modalities",
                "Anthropic models cannot produce audio; request only `[\"text\"]`",
            ));
        }
    }
    for (key, value) in [
        ("functions", req.functions),
        ("function_call", req.function_call),
    ] {
        if field(value).is_some() {
            return Err(TranslateError::unsupported(
                key,
                "the deprecated functions API is not translated; send `tools` and `tool_choice` instead",
            ));
        }
    }
    Ok(())
}

fn max_tokens(req: &ChatRequest<'_>, default: u32) -> Result<u64, TranslateError> {
    for (key, value) in [
        ("max_completion_tokens", req.max_completion_tokens),
        ("max_tokens", req.max_tokens),
    ] {
        if let Some(v) = field(value) {
            return v
                .as_u64()
                .filter(|n| *n > 0)
                .ok_or_else(|| TranslateError::invalid_field(key, "must be a positive integer"));
        }
    }
    Ok(u64::from(default))
}

fn reasoning_budget(req: &ChatRequest<'_>) -> Result<Option<u64>, TranslateError> {
    let Some(v) = field(req.reasoning_effort) else {
        return Ok(None);
    };
    match v.as_str().as_deref() {
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

/// Sampling settings copied when thinking is off.
#[derive(Default)]
struct Sampling {
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<u64>,
}

fn sampling(req: &ChatRequest<'_>) -> Result<Sampling, TranslateError> {
    let number = |key: &str, value: Option<Json<'_>>| match field(value) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| TranslateError::invalid_field(key, "must be a number")),
    };
    let temperature = number("temperature", req.temperature)?;
    // Claude 4.5 and later refuse both at once: the temperature is the one kept.
    let top_p = number("top_p", req.top_p)?.filter(|_| temperature.is_none());
    let top_k = match field(req.top_k) {
        Some(k) => Some(k.as_u64().ok_or_else(|| {
            TranslateError::invalid_field("top_k", "must be a non-negative integer")
        })?),
        None => None,
    };
    Ok(Sampling {
        temperature,
        top_p,
        top_k,
    })
}

/// The JSON schema `response_format` holds the answer to, for Anthropic's
/// `output_config.format`; `None` for plain text.
fn output_schema<'a>(req: &ChatRequest<'a>) -> Result<Option<Json<'a>>, TranslateError> {
    let Some(rf) = field(req.response_format) else {
        return Ok(None);
    };
    match rf.get("type").and_then(Json::as_str).as_deref() {
        Some("text") => Ok(None),
        // Anthropic's `output_config.format` takes a schema and nothing else: there is
        // no "any JSON object" to ask for.
        Some("json_object") => Err(TranslateError::unsupported(
            "response_format",
            "Anthropic models have no JSON object mode; send `response_format` of type `json_schema` with the schema the answer should follow, or describe the JSON in the prompt",
        )),
        // `name`, `description` and `strict` have no counterpart: Anthropic always
        // holds the answer to the schema, and needs no name for it.
        Some("json_schema") => rf
            .get("json_schema")
            .and_then(|s| s.get("schema"))
            .filter(|s| s.is_object())
            .map(Some)
            .ok_or_else(|| {
                TranslateError::invalid_field(
                    "response_format.json_schema.schema",
                    "is required and must be a JSON schema object: Anthropic models hold the answer to it",
                )
            }),
        _ => Err(TranslateError::invalid_field(
            "response_format",
            "`type` must be one of text, json_object, json_schema",
        )),
    }
}

/// `stop` as Anthropic stop sequences, empty ones dropped.
fn stop_sequences<'a>(req: &ChatRequest<'a>) -> Result<Vec<Cow<'a, str>>, TranslateError> {
    let invalid =
        || TranslateError::invalid_field("stop", "must be a string or an array of strings");
    let stops: Vec<Cow<'a, str>> = match field(req.stop) {
        None => return Ok(Vec::new()),
        Some(v) if v.is_string() => v.as_str().into_iter().collect(),
        Some(v) => v
            .elements()
            .ok_or_else(invalid)?
            .into_iter()
            .map(|s| s.as_str().ok_or_else(invalid))
            .collect::<Result<_, _>>()?,
    };
    // Anthropic refuses a stop sequence of whitespace alone ("each stop sequence must
    // contain non-whitespace"); it could not be honoured, so it is not sent.
    Ok(stops.into_iter().filter(|s| !s.trim().is_empty()).collect())
}

/// A text block of the system prompt.
struct SystemText<'a> {
    text: Text<'a>,
    cache_control: Option<Json<'a>>,
}

/// The system prompt: a string, or an array of text blocks when some part
/// carries `cache_control`.
fn write_system(out: &mut Vec<u8>, blocks: &[SystemText<'_>]) {
    if blocks.iter().any(|b| b.cache_control.is_some()) {
        out.push(b'[');
        for (k, b) in blocks.iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            write_text_block(out, &b.text, b.cache_control);
        }
        out.push(b']');
        return;
    }
    out.push(b'"');
    for (k, b) in blocks.iter().enumerate() {
        if k > 0 {
            out.extend_from_slice(b"\\n\\n");
        }
        b.text.write_fragment(out);
    }
    out.push(b'"');
}

/// What converting the messages yields besides the written `messages` array.
struct Converted<'a> {
    system: Vec<SystemText<'a>>,
    has_tool_blocks: bool,
    /// The names of the tools called, each once, in the order first called.
    called_tool_names: Vec<Cow<'a, str>>,
}

/// Content blocks written one after the other, comma-separated.
struct BlockList {
    json: Vec<u8>,
    len: usize,
}

/// Room a message's blocks start with: a short message's fit without growing the
/// buffer a few bytes at a time; a longer one grows it, and the room stays for the
/// messages after it.
const BLOCKS_ROOM: usize = 1024;

impl BlockList {
    fn new() -> Self {
        Self {
            json: Vec::with_capacity(BLOCKS_ROOM),
            len: 0,
        }
    }

    /// The buffer to write the next block into, separator written.
    fn next(&mut self) -> &mut Vec<u8> {
        if self.len > 0 {
            self.json.push(b',');
        }
        self.len += 1;
        &mut self.json
    }

    fn clear(&mut self) {
        self.json.clear();
        self.len = 0;
    }
}

/// The `messages` array being written: adjacent messages of the same role are
/// merged so roles alternate, and messages without blocks are left out.
struct MessagesWriter {
    open_role: Option<&'static str>,
}

impl MessagesWriter {
    fn push(&mut self, out: &mut Vec<u8>, role: &'static str, blocks: &BlockList) {
        if blocks.len == 0 {
            return;
        }
        match self.open_role {
            Some(open) if open == role => out.push(b','),
            Some(open) => {
                close_message(out, open);
                out.extend_from_slice(br#",{"content":["#);
            }
            None => out.extend_from_slice(br#"{"content":["#),
        }
        out.extend_from_slice(&blocks.json);
        self.open_role = Some(role);
    }

    fn finish(self, out: &mut Vec<u8>) -> Result<(), TranslateError> {
        let Some(open) = self.open_role else {
            return Err(TranslateError::invalid_field(
                "messages",
                "must contain at least one non-empty user or assistant message",
            ));
        };
        close_message(out, open);
        out.push(b']');
        Ok(())
    }
}

fn close_message(out: &mut Vec<u8>, role: &str) {
    out.extend_from_slice(br#"],"role":"#);
    write_str(out, role);
    out.push(b'}');
}

/// Tool results follow the last assistant message: the request answers its tool calls.
fn last_turn_answers_tool_calls(messages: &[Json<'_>]) -> bool {
    messages
        .iter()
        .rev()
        .find_map(|m| match m.get("role").and_then(Json::as_str).as_deref() {
            Some("assistant") => Some(false),
            Some("tool") => Some(true),
            _ => None,
        })
        .unwrap_or(false)
}

/// Writes `"messages":[...]` and collects the system prompt.
fn convert_messages<'a>(
    messages: Option<Vec<Json<'a>>>,
    out: &mut Vec<u8>,
) -> Result<Converted<'a>, TranslateError> {
    let Some(messages) = messages else {
        return Err(TranslateError::invalid_field(
            "messages",
            "is required and must be an array of messages",
        ));
    };
    let mut conv = Converted {
        system: Vec::new(),
        has_tool_blocks: false,
        called_tool_names: Vec::new(),
    };
    out.extend_from_slice(br#""messages":["#);
    let mut writer = MessagesWriter { open_role: None };
    // One buffer for every message's blocks, reused.
    let mut blocks = BlockList::new();
    let last = messages.len().saturating_sub(1);
    for (i, msg) in messages.into_iter().enumerate() {
        if !msg.is_object() {
            return Err(TranslateError::invalid_field(
                format!("messages[{i}]"),
                "must be an object with `role` and `content`",
            ));
        }
        let msg = Message::read(msg);
        let role = msg.role.and_then(Json::as_str);
        blocks.clear();
        match role.as_deref().unwrap_or("") {
            "system" | "developer" => {
                content_blocks(field(msg.content), i, PartRole::System, |block| {
                    if let Block::Text {
                        text,
                        cache_control,
                    } = block
                    {
                        conv.system.push(SystemText {
                            text,
                            cache_control,
                        });
                    }
                })?;
            }
            "user" => {
                content_blocks(field(msg.content), i, PartRole::User, |block| {
                    block.write(blocks.next())
                })?;
                writer.push(out, "user", &blocks);
            }
            "assistant" => {
                if field(msg.function_call).is_some() {
                    return Err(TranslateError::unsupported(
                        format!("messages[{i}].function_call"),
                        "the deprecated functions API is not translated; send `tool_calls` instead",
                    ));
                }
                if i == last && field(msg.tool_calls).is_none() {
                    // A final assistant message is a prefill, which Anthropic refuses
                    // to see end in whitespace.
                    let mut prefill = Vec::new();
                    content_blocks(field(msg.content), i, PartRole::Assistant, |block| {
                        prefill.push(block)
                    })?;
                    trim_prefill_end(&mut prefill);
                    for block in &prefill {
                        block.write(blocks.next());
                    }
                } else {
                    content_blocks(field(msg.content), i, PartRole::Assistant, |block| {
                        block.write(blocks.next())
                    })?;
                }
                if let Some(calls) = field(msg.tool_calls) {
                    let before = blocks.len;
                    write_tool_use_blocks(calls, i, &mut blocks, &mut conv.called_tool_names)?;
                    conv.has_tool_blocks |= blocks.len > before;
                }
                writer.push(out, "assistant", &blocks);
            }
            "tool" => {
                write_tool_result_block(&msg, i, blocks.next())?;
                conv.has_tool_blocks = true;
                writer.push(out, "user", &blocks);
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
    writer.finish(out)?;
    Ok(conv)
}

/// Trims the whitespace at the end of a prefill's last text block (dropping the block
/// if nothing is left).
fn trim_prefill_end(blocks: &mut Vec<Block<'_>>) {
    let Some(Block::Text { text, .. }) = blocks.last_mut() else {
        return;
    };
    let trimmed = std::mem::replace(text, Text::from("")).trimmed_end();
    if trimmed.is_empty() {
        blocks.pop();
        trim_prefill_end(blocks);
    } else {
        *text = trimmed;
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PartRole {
    System,
    User,
    Assistant,
    Tool,
}

/// An Anthropic content block made from one OpenAI content part.
enum Block<'a> {
    Text {
        text: Text<'a>,
        cache_control: Option<Json<'a>>,
    },
    /// An image from a checked http(s) or base64 data URL.
    Image {
        url: Cow<'a, str>,
        cache_control: Option<Json<'a>>,
    },
    /// A PDF from a checked base64 data URL.
    Document {
        url: Cow<'a, str>,
        cache_control: Option<Json<'a>>,
    },
}

impl Block<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        let (kind, url, cache_control) = match self {
            Block::Text {
                text,
                cache_control,
            } => return write_text_block(out, text, *cache_control),
            Block::Image { url, cache_control } => ("image", url, cache_control),
            Block::Document { url, cache_control } => ("document", url, cache_control),
        };
        out.push(b'{');
        write_cache_control(out, *cache_control);
        out.extend_from_slice(br#""source":"#);
        match split_data_url(url) {
            Some((media_type, data)) => {
                let media_type = match self {
                    Block::Image { .. } => anthropic_image_media_type(media_type, data),
                    _ => media_type,
                };
                out.extend_from_slice(br#"{"data":"#);
                write_str(out, data);
                out.extend_from_slice(br#","media_type":"#);
                write_str(out, media_type);
                out.extend_from_slice(br#","type":"base64"}"#);
            }
            None => {
                out.extend_from_slice(br#"{"type":"url","url":"#);
                write_str(out, url);
                out.push(b'}');
            }
        }
        out.extend_from_slice(br#","type":"#);
        write_str(out, kind);
        out.push(b'}');
    }
}

fn write_text_block(out: &mut Vec<u8>, text: &Text<'_>, cache_control: Option<Json<'_>>) {
    out.push(b'{');
    write_cache_control(out, cache_control);
    out.extend_from_slice(br#""text":"#);
    text.write(out);
    out.extend_from_slice(br#","type":"text"}"#);
}

/// `"cache_control":…,` when present; it sorts first among a block's keys.
fn write_cache_control(out: &mut Vec<u8>, cache_control: Option<Json<'_>>) {
    if let Some(cc) = cache_control {
        out.extend_from_slice(br#""cache_control":"#);
        write_compact(out, cc.text());
        out.push(b',');
    }
}

fn content_path(i: usize) -> String {
    format!("messages[{i}].content")
}

fn part_path(i: usize, j: usize) -> String {
    format!("messages[{i}].content[{j}]")
}

/// Converts a message's `content` (string or parts) into Anthropic blocks,
/// handing each to `emit`.
fn content_blocks<'a>(
    content: Option<Json<'a>>,
    i: usize,
    role: PartRole,
    mut emit: impl FnMut(Block<'a>),
) -> Result<(), TranslateError> {
    let Some(content) = content else {
        return Ok(());
    };
    if let Some(s) = content.as_text() {
        if let Some(block) = text_block(s, None) {
            emit(block);
        }
        return Ok(());
    }
    let Some(parts) = content.elements() else {
        return Err(TranslateError::invalid_field(
            content_path(i),
            "must be a string or an array of content parts",
        ));
    };
    for (j, part) in parts.into_iter().enumerate() {
        if let Some(block) = part_block(part, i, j, role)? {
            emit(block);
        }
    }
    Ok(())
}

/// Anthropic rejects empty text blocks, and blocks of whitespace alone ("text content
/// blocks must contain non-whitespace text"), so such text is dropped.
fn text_block<'a>(text: Text<'a>, cache_control: Option<Json<'a>>) -> Option<Block<'a>> {
    (!text.is_blank()).then_some(Block::Text {
        text,
        cache_control,
    })
}

fn part_block<'a>(
    part: Json<'a>,
    i: usize,
    j: usize,
    role: PartRole,
) -> Result<Option<Block<'a>>, TranslateError> {
    if !part.is_object() {
        return Err(TranslateError::invalid_field(
            part_path(i, j),
            "content parts must be objects with a `type`",
        ));
    }
    let p = Part::read(part);
    let kind = p.kind.and_then(Json::as_str).unwrap_or(Cow::Borrowed(""));
    let text_only = |what: &str| {
        TranslateError::invalid_field(
            part_path(i, j),
            format!("{what} messages may only contain text parts"),
        )
    };
    match kind.as_ref() {
        "text" => {
            let text = p.text.and_then(Json::as_text).ok_or_else(|| {
                TranslateError::invalid_field(
                    format!("{}.text", part_path(i, j)),
                    "must be a string",
                )
            })?;
            Ok(text_block(text, field(p.cache_control)))
        }
        "refusal" if role == PartRole::Assistant => {
            let text = p.refusal.and_then(Json::as_text).unwrap_or("".into());
            Ok(text_block(text, None))
        }
        "image_url" => {
            match role {
                PartRole::System => return Err(text_only("system")),
                PartRole::Assistant => return Err(text_only("assistant")),
                PartRole::User | PartRole::Tool => {}
            }
            let url_path = || format!("{}.image_url.url", part_path(i, j));
            let url = p
                .image_url
                .and_then(|u| {
                    if u.is_object() {
                        u.get("url").and_then(Json::as_str)
                    } else {
                        u.as_str()
                    }
                })
                .ok_or_else(|| TranslateError::invalid_field(url_path(), "must be a string"))?;
            check_image_url(&url, url_path)?;
            Ok(Some(Block::Image {
                url,
                cache_control: field(p.cache_control),
            }))
        }
        "file" if role == PartRole::User => {
            let data = p
                .file
                .and_then(|f| f.get("file_data"))
                .and_then(Json::as_str);
            let Some(url) = data else {
                return Err(TranslateError::unsupported(
                    part_path(i, j),
                    "only inline files (`file.file_data` as a base64 data URL) can be sent to Anthropic models; uploaded `file_id`s cannot",
                ));
            };
            let (media_type, _) = data_url(&url, || {
                format!("{}.file.file_data", part_path(i, j))
            })?;
            if media_type != "application/pdf" {
                return Err(TranslateError::unsupported(
                    part_path(i, j),
                    "Anthropic models accept PDF files only; send other documents as text",
                ));
            }
            Ok(Some(Block::Document {
                url,
                cache_control: field(p.cache_control),
            }))
        }
        "input_audio" => Err(TranslateError::unsupported(
            part_path(i, j),
            "Anthropic models do not accept audio input; transcribe the audio and send text",
        )),
        _ => match role {
            PartRole::System => Err(text_only("system")),
            PartRole::Assistant => Err(text_only("assistant")),
            PartRole::User | PartRole::Tool => Err(TranslateError::unsupported(
                part_path(i, j),
                format!("content part type `{kind}` cannot be sent to Anthropic models; use text, image_url or a PDF file"),
            )),
        },
    }
}

/// `data:<mime>;base64,<data>` → (mime, data).
fn split_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let mut params = meta.split(';');
    let mime = params.next().unwrap_or("");
    if mime.is_empty() || !params.any(|p| p.eq_ignore_ascii_case("base64")) {
        return None;
    }
    Some((mime, data))
}

/// A base64 data URL's parts, or an error naming the field at `path`.
fn data_url(url: &str, path: impl FnOnce() -> String) -> Result<(&str, &str), TranslateError> {
    split_data_url(url).ok_or_else(|| {
        TranslateError::invalid_field(path(), "data URLs must look like data:<mime>;base64,<data>")
    })
}

fn check_image_url(url: &str, path: impl FnOnce() -> String) -> Result<(), TranslateError> {
    if url.starts_with("data:") {
        return data_url(url, path).map(|_| ());
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        return Ok(());
    }
    Err(TranslateError::invalid_field(
        path(),
        "must be an http(s) URL or a data:<mime>;base64,<data> URL",
    ))
}

/// Writes the tool calls as `tool_use` blocks, adding their names to
/// `called_tool_names` (each once).
fn write_tool_use_blocks<'a>(
    calls: Json<'a>,
    i: usize,
    blocks: &mut BlockList,
    called_tool_names: &mut Vec<Cow<'a, str>>,
) -> Result<(), TranslateError> {
    let Some(calls) = calls.elements() else {
        return Err(TranslateError::invalid_field(
            format!("messages[{i}].tool_calls"),
            "must be an array",
        ));
    };
    for (j, call) in calls.into_iter().enumerate() {
        let path = || format!("messages[{i}].tool_calls[{j}]");
        let call = ToolCall::read(call);
        let kind = call.kind.and_then(Json::as_str);
        if kind.as_deref().unwrap_or("function") != "function" {
            return Err(TranslateError::unsupported(
                format!("{}.type", path()),
                "only function tool calls can be sent to Anthropic models",
            ));
        }
        let id = call.id.and_then(Json::as_str).ok_or_else(|| {
            TranslateError::invalid_field(format!("{}.id", path()), "must be a string")
        })?;
        let function = call.function.map(Function::read).unwrap_or_default();
        let name = function.name.and_then(Json::as_str).ok_or_else(|| {
            TranslateError::invalid_field(format!("{}.function.name", path()), "must be a string")
        })?;
        let input: Cow<'_, str> = match field(function.arguments) {
            None => Cow::Borrowed("{}"),
            Some(args) => match args.as_str() {
                // Arguments a model left unfinished (cut by the length limit) or wrote
                // as some other JSON: OpenAI takes such a history back, and Anthropic
                // inputs are objects, so the call goes with an empty one (as in an answer).
                Some(s) => match parse_text(&s) {
                    Ok(parsed) if parsed.is_object() => s,
                    _ => Cow::Borrowed("{}"),
                },
                // Some clients send the object itself rather than its encoding.
                None if args.is_object() => Cow::Borrowed(args.text()),
                None => {
                    return Err(TranslateError::invalid_field(
                        format!("{}.function.arguments", path()),
                        "must be a JSON object encoded as a string",
                    ))
                }
            },
        };
        let out = blocks.next();
        out.extend_from_slice(br#"{"id":"#);
        write_str(out, &anthropic_tool_use_id(&id));
        out.extend_from_slice(br#","input":"#);
        write_compact(out, &input);
        out.extend_from_slice(br#","name":"#);
        write_str(out, &name);
        out.extend_from_slice(br#","type":"tool_use"}"#);
        if !called_tool_names.contains(&name) {
            called_tool_names.push(name);
        }
    }
    Ok(())
}

fn write_tool_result_block(
    msg: &Message<'_>,
    i: usize,
    out: &mut Vec<u8>,
) -> Result<(), TranslateError> {
    let id = msg.tool_call_id.and_then(Json::as_str).ok_or_else(|| {
        TranslateError::invalid_field(
            format!("messages[{i}].tool_call_id"),
            "is required on tool messages and must match a preceding assistant tool call id",
        )
    })?;
    out.push(b'{');
    if let Some(content) = field(msg.content) {
        if let Some(s) = content.as_text() {
            // Anthropic refuses text of whitespace alone, as in a text block.
            if !s.is_blank() {
                out.extend_from_slice(br#""content":"#);
                s.write(out);
                out.push(b',');
            }
        } else if content.elements().is_some() {
            let mark = out.len();
            out.extend_from_slice(br#""content":["#);
            let mut written = 0;
            content_blocks(Some(content), i, PartRole::Tool, |block| {
                if written > 0 {
                    out.push(b',');
                }
                written += 1;
                block.write(out);
            })?;
            if written == 0 {
                out.truncate(mark);
            } else {
                out.extend_from_slice(b"],");
            }
        } else {
            return Err(TranslateError::invalid_field(
                content_path(i),
                "must be a string or an array of content parts",
            ));
        }
    }
    out.extend_from_slice(br#""tool_use_id":"#);
    write_str(out, &anthropic_tool_use_id(&id));
    out.extend_from_slice(br#","type":"tool_result"}"#);
    Ok(())
}

enum ToolChoice<'a> {
    Auto,
    Any,
    None,
    Tool(Cow<'a, str>),
}

fn parse_tool_choice(v: Json<'_>) -> Result<ToolChoice<'_>, TranslateError> {
    if let Some(s) = v.as_str() {
        return match s.as_ref() {
            "auto" => Ok(ToolChoice::Auto),
            "required" => Ok(ToolChoice::Any),
            "none" => Ok(ToolChoice::None),
            _ => Err(TranslateError::invalid_field(
                "tool_choice",
                "must be auto, required, none or {\"type\":\"function\",\"function\":{\"name\":...}}",
            )),
        };
    }
    if !v.is_object() {
        return Err(TranslateError::invalid_field(
            "tool_choice",
            "must be a string or an object",
        ));
    }
    let [kind, function] = v.members(["type", "function"]);
    if kind.and_then(Json::as_str).as_deref() != Some("function") {
        return Err(TranslateError::unsupported(
            "tool_choice",
            "only auto, required, none and a named function can be sent to Anthropic models",
        ));
    }
    let name = function
        .and_then(|f| f.get("name"))
        .and_then(Json::as_str)
        .ok_or_else(|| {
            TranslateError::invalid_field("tool_choice.function.name", "must be a string")
        })?;
    Ok(ToolChoice::Tool(name))
}

/// Anthropic's `tool_choice`.
struct ChoiceOut<'a> {
    kind: &'static str,
    name: Option<Cow<'a, str>>,
    disable_parallel_tool_use: bool,
}

impl ChoiceOut<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        if self.disable_parallel_tool_use {
            out.extend_from_slice(br#""disable_parallel_tool_use":true,"#);
        }
        if let Some(name) = &self.name {
            out.extend_from_slice(br#""name":"#);
            write_str(out, name);
            out.push(b',');
        }
        out.extend_from_slice(br#""type":"#);
        write_str(out, self.kind);
        out.push(b'}');
    }
}

/// The translated `tools` array and `tool_choice`.
struct Tooling<'a> {
    tools: Vec<u8>,
    choice: Option<ChoiceOut<'a>>,
}

/// The `tools` array, or `None` when there are no tools.
fn convert_tools(tools: Json<'_>) -> Result<Option<Vec<u8>>, TranslateError> {
    let Some(tools) = tools.elements() else {
        return Err(TranslateError::invalid_field("tools", "must be an array"));
    };
    if tools.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(tools.iter().map(|t| t.text().len()).sum::<usize>() + 2);
    out.push(b'[');
    for (i, tool) in tools.into_iter().enumerate() {
        let tool = Tool::read(tool);
        let kind = tool.kind.and_then(Json::as_str);
        if kind.as_deref().unwrap_or("function") != "function" {
            return Err(TranslateError::unsupported(
                format!("tools[{i}].type"),
                "only `function` tools can be sent to Anthropic models",
            ));
        }
        let function = tool.function.filter(|f| f.is_object()).ok_or_else(|| {
            TranslateError::invalid_field(format!("tools[{i}].function"), "must be an object")
        })?;
        let function = Function::read(function);
        let name = function.name.and_then(Json::as_str).ok_or_else(|| {
            TranslateError::invalid_field(format!("tools[{i}].function.name"), "must be a string")
        })?;
        if i > 0 {
            out.push(b',');
        }
        out.push(b'{');
        write_cache_control(&mut out, field(tool.cache_control));
        if let Some(d) = field(function.description) {
            out.extend_from_slice(br#""description":"#);
            write_compact(&mut out, d.text());
            out.push(b',');
        }
        out.extend_from_slice(br#""input_schema":"#);
        match field(function.parameters) {
            Some(schema) => write_compact(&mut out, schema.text()),
            None => out.extend_from_slice(EMPTY_SCHEMA),
        }
        out.extend_from_slice(br#","name":"#);
        write_str(&mut out, &name);
        out.push(b'}');
    }
    out.push(b']');
    Ok(Some(out))
}

/// Bare definitions of the tools a conversation called, for Anthropic to take its
/// tool calls when the client sent no tools: a name and an object schema.
fn bare_tool_definitions(called_tool_names: &[Cow<'_, str>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(called_tool_names.len() * 64 + 2);
    out.push(b'[');
    for (k, name) in called_tool_names.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"input_schema":{"type":"object"},"name":"#);
        write_str(&mut out, name);
        out.push(b'}');
    }
    out.push(b']');
    out
}

fn tooling<'a>(
    req: &ChatRequest<'a>,
    has_tool_blocks: bool,
    called_tool_names: &[Cow<'_, str>],
    thinking: bool,
) -> Result<Option<Tooling<'a>>, TranslateError> {
    let tools = match field(req.tools) {
        Some(t) => convert_tools(t)?,
        None => None,
    };
    let choice = field(req.tool_choice).map(parse_tool_choice).transpose()?;
    let choice_out = |kind, name| ChoiceOut {
        kind,
        name,
        disable_parallel_tool_use: false,
    };
    let Some(tools) = tools else {
        // Anthropic refuses tool calls in a conversation without tools: the tools
        // called are defined, and `none` keeps the model from calling them.
        if called_tool_names.is_empty() {
            return Ok(None);
        }
        return Ok(Some(Tooling {
            tools: bare_tool_definitions(called_tool_names),
            choice: Some(choice_out("none", None)),
        }));
    };
    let no_parallel = field(req.parallel_tool_calls).and_then(Json::as_bool) == Some(false);
    let mut choice = match choice {
        Some(ToolChoice::None) => {
            return Ok(has_tool_blocks.then(|| Tooling {
                tools,
                choice: Some(choice_out("none", None)),
            }));
        }
        Some(ToolChoice::Auto) => Some(choice_out("auto", None)),
        Some(ToolChoice::Any) => Some(choice_out("any", None)),
        Some(ToolChoice::Tool(name)) => Some(choice_out("tool", Some(name))),
        None => None,
    };
    if thinking && choice.as_ref().is_some_and(|c| c.kind != "auto") {
        return Err(TranslateError::unsupported(
            "reasoning_effort",
            "Anthropic models cannot think while forced to call a tool; remove `reasoning_effort` or set `tool_choice` to auto",
        ));
    }
    if no_parallel {
        choice
            .get_or_insert_with(|| choice_out("auto", None))
            .disable_parallel_tool_use = true;
    }
    Ok(Some(Tooling { tools, choice }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::request_fields::checked;
    use serde_json::{json, Value};

    fn opts() -> RequestOptions {
        RequestOptions {
            model: "claude-sonnet-4-20250514".into(),
            default_max_tokens: 4096,
        }
    }

    fn translate(req: Value) -> Value {
        let r = openai_to_anthropic_request(checked(&req), &opts()).unwrap();
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn texts_are_copied_with_their_escapes_as_written() {
        // Written by hand: serde would write `é` and `/` plainly.
        let text = r#"line \"one\"\n\u00e9\/ \\ end"#;
        let body = format!(
            r#"{{"model":"m","messages":[
            {{"role":"system","content":"s: {text}"}},
            {{"role":"user","content":[{{"type":"text","text":"u: {text}","cache_control":{{"type":"ephemeral"}}}}]}},
            {{"role":"assistant","content":"a: {text}","tool_calls":[
                {{"id":"c1","type":"function","function":{{"name":"read","arguments":"{{}}"}}}}]}},
            {{"role":"tool","tool_call_id":"c1","content":"t: {text}"}}]}}"#
        );
        let out = CheckedBody::check(body.as_bytes())
            .and_then(|b| openai_to_anthropic_request(b, &opts()))
            .unwrap()
            .body;
        let out = String::from_utf8(out).unwrap();
        for prefix in ["s", "u", "a", "t"] {
            assert!(
                out.contains(&format!("{prefix}: {text}")),
                "{prefix}: {out}"
            );
        }
        let plain = "line \"one\"\né/ \\ end";
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["system"], format!("s: {plain}"));
        assert_eq!(
            v["messages"][0]["content"][0]["text"],
            format!("u: {plain}")
        );
        assert_eq!(
            v["messages"][1]["content"][0]["text"],
            format!("a: {plain}")
        );
        assert_eq!(
            v["messages"][2]["content"][0]["content"],
            format!("t: {plain}")
        );
    }

    fn translate_err(req: Value) -> TranslateError {
        CheckedBody::check(req.to_string().as_bytes())
            .and_then(|body| openai_to_anthropic_request(body, &opts()))
            .unwrap_err()
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
        let e = CheckedBody::check(b"{").unwrap_err();
        assert!(matches!(e, TranslateError::InvalidJson(_)));
        let e =
            openai_to_anthropic_request(CheckedBody::check(b"[1]").unwrap(), &opts()).unwrap_err();
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
    fn an_image_is_sent_with_the_media_type_anthropic_takes_for_its_bytes() {
        let jpeg = "/9j/4AAQSkZJRgABAQA=";
        for (url, media_type) in [
            // A browser's label for JPEG, which Anthropic refuses by name.
            (format!("data:image/jpg;base64,{jpeg}"), "image/jpeg"),
            // A JPEG said to be a PNG, which Anthropic refuses as a mismatch.
            (format!("data:image/png;base64,{jpeg}"), "image/jpeg"),
            // Bytes no type can be read from: the alias is still made the name.
            ("data:image/pjpeg;base64,AAAA".into(), "image/jpeg"),
        ] {
            let got = translate(json!({"messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "shot", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c", "content": [{"type": "image_url", "image_url": {"url": url}}]}
            ], "tools": [{"type": "function", "function": {"name": "shot"}}]}));
            let user_image = &got["messages"][0]["content"][0]["source"];
            let tool_image = &got["messages"][2]["content"][0]["content"][0]["source"];
            for source in [user_image, tool_image] {
                assert_eq!(source["media_type"], media_type, "{url}: {got}");
                assert_eq!(source["data"], url.split_once(',').unwrap().1);
            }
        }
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
    fn tool_call_arguments_encoding_no_object_are_sent_as_an_empty_input() {
        // A call cut short by the length limit, or a model's stray text: OpenAI takes
        // such a history back.
        for args in [r#"{"path": "/tm"#, r#""raw""#, "[1,2]", "{not json", "null"] {
            let got = translate(json!({"messages": [
                user("x"),
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{\"k\":1}"}},
                    {"id": "b", "type": "function", "function": {"name": "f", "arguments": args}}
                ]},
                {"role": "tool", "tool_call_id": "a", "content": "ok"},
                {"role": "tool", "tool_call_id": "b", "content": "cut"}
            ], "tools": [{"type": "function", "function": {"name": "f"}}]}));
            let calls = &got["messages"][1]["content"];
            assert_eq!(calls[0]["input"], json!({"k": 1}), "{args}");
            assert_eq!(calls[1]["input"], json!({}), "{args}");
        }
    }

    #[test]
    fn tool_call_arguments_neither_a_string_nor_an_object_name_the_field() {
        for args in [json!(5), json!([1, 2])] {
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
    fn another_providers_tool_call_ids_become_ones_anthropic_takes() {
        let got = translate(json!({"messages": [
            user("x"),
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "functions.get_weather:0", "type": "function",
                 "function": {"name": "w", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "functions.get_weather:0", "content": "18C"},
        ]}));
        let id = got["messages"][1]["content"][0]["id"].as_str().unwrap();
        assert!(id.starts_with("functions_get_weather_0_"), "{id}");
        assert_eq!(got["messages"][2]["content"][0]["tool_use_id"], id);
    }

    #[test]
    fn a_tool_result_of_whitespace_alone_is_sent_without_content() {
        let got = translate(json!({"messages": [
            user("x"),
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "c1", "content": "\n"},
        ]}));
        assert_eq!(
            got["messages"][2]["content"],
            json!([{"type": "tool_result", "tool_use_id": "c1"}])
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
    fn tool_history_without_tools_gets_a_bare_definition_of_each_tool_used_and_tool_choice_none() {
        let call = |id: &str, name: &str| json!({"id": id, "type": "function", "function": {"name": name, "arguments": "{}"}});
        // A summary of an agent's work replays its tool calls without the tools.
        let history = json!([
            user("Fix the bug"),
            {"role": "assistant", "content": null, "tool_calls": [call("c1", "read"), call("c2", "grep")]},
            {"role": "tool", "tool_call_id": "c1", "content": "a"},
            {"role": "tool", "tool_call_id": "c2", "content": "b"},
            {"role": "assistant", "content": null, "tool_calls": [call("c3", "read")]},
            {"role": "tool", "tool_call_id": "c3", "content": "c"},
            user("Summarise the conversation so far.")
        ]);
        for tools in [None, Some(json!([]))] {
            let mut req = json!({"messages": history, "tool_choice": "auto"});
            if let Some(tools) = tools {
                req["tools"] = tools;
            }
            let got = translate(req);
            assert_eq!(
                got["tools"],
                json!([
                    {"name": "read", "input_schema": {"type": "object"}},
                    {"name": "grep", "input_schema": {"type": "object"}}
                ]),
                "{got}"
            );
            assert_eq!(got["tool_choice"], json!({"type": "none"}));
        }
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
    fn whitespace_only_stops_and_text_parts_are_dropped() {
        let got = translate(json!({"stop": ["\n", " \t", "END"], "messages": [
            {"role": "user", "content": [{"type": "text", "text": "\n"}, {"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": " "},
            user("more")
        ]}));
        assert_eq!(got["stop_sequences"], json!(["END"]));
        assert_eq!(
            got["messages"],
            json!([{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "more"}]}])
        );
        let got = translate(json!({"stop": "\n\n", "messages": [user("x")]}));
        assert!(got.get("stop_sequences").is_none(), "{got}");
    }

    #[test]
    fn final_assistant_prefill_trailing_whitespace_is_trimmed() {
        let got = translate(json!({"messages": [user("x"),
            {"role": "assistant", "content": [{"type": "text", "text": "Answer: "},
                {"type": "text", "text": "\n  "}]}]}));
        assert_eq!(
            got["messages"][1]["content"],
            json!([{"type": "text", "text": "Answer:"}])
        );
        // An earlier assistant message keeps its text as it was.
        let got = translate(json!({"messages": [user("x"),
            {"role": "assistant", "content": "Sure. "}, user("y")]}));
        assert_eq!(got["messages"][1]["content"][0]["text"], "Sure. ");
    }

    #[test]
    fn a_reasoning_tool_loop_answering_its_calls_goes_without_thinking() {
        let call =
            json!({"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}});
        let got = translate(json!({"reasoning_effort": "medium", "temperature": 0.5,
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "messages": [user("x"), {"role": "assistant", "content": null, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"}]}));
        assert!(got.get("thinking").is_none(), "{got}");
        assert_eq!(got["temperature"], 0.5);
        // The next question, after the loop ended, thinks again.
        let got = translate(json!({"reasoning_effort": "medium",
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "messages": [user("x"), {"role": "assistant", "content": null, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"},
                {"role": "assistant", "content": "It is 42."}, user("and now?")]}));
        assert_eq!(got["thinking"]["type"], "enabled");
    }

    #[test]
    fn sampling_params_are_copied_and_temperature_clamped() {
        let got = translate(json!({"messages": [user("x")], "top_p": 0.9, "top_k": 5}));
        assert_eq!(got["top_p"], 0.9);
        assert_eq!(got["top_k"], 5);
        // Claude 4.5 and later refuse both: the temperature is kept.
        let got = translate(
            json!({"messages": [user("x")], "temperature": 0.2, "top_p": 0.9, "top_k": 5}),
        );
        assert_eq!(got["temperature"], 0.2);
        assert!(got.get("top_p").is_none(), "{got}");
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
    fn max_tokens_is_raised_for_thinking_only_when_thinking_is_sent() {
        let call =
            json!({"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}});
        // An agent's tool step answers its calls, so it goes without thinking.
        let tool_step = json!({"reasoning_effort": "high",
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "messages": [user("x"), {"role": "assistant", "content": null, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"}]});
        let mut with_limit = tool_step.clone();
        with_limit["max_completion_tokens"] = json!(1000);
        for (req, max_tokens) in [(with_limit, 1000), (tool_step, 4096)] {
            let got = translate(req);
            assert!(got.get("thinking").is_none(), "{got}");
            assert_eq!(got["max_tokens"], max_tokens, "{got}");
        }
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
        let r = openai_to_anthropic_request(checked(&body), &opts()).unwrap();
        assert!(r.stream && r.include_usage);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["stream"], true);
        assert!(v.get("stream_options").is_none());
        let r = openai_to_anthropic_request(
            CheckedBody::check(br#"{"messages":[{"role":"user","content":"x"}]}"#).unwrap(),
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
    fn a_json_schema_response_format_becomes_anthropics_output_config_format() {
        // What the openai SDK's `beta.chat.completions.parse` sends.
        let schema = json!({"type": "object", "properties": {"city": {"type": "string"}},
            "required": ["city"], "additionalProperties": false});
        let got = translate(json!({"messages": [user("x")], "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "Place", "description": "a place", "strict": true,
                "schema": schema}}}));
        assert_eq!(
            got["output_config"],
            json!({"format": {"type": "json_schema", "schema": schema}})
        );
        // Plain text asks for nothing.
        let got = translate(json!({"messages": [user("x")], "response_format": {"type": "text"}}));
        assert!(got.get("output_config").is_none(), "{got}");
    }

    #[test]
    fn a_response_format_anthropic_cannot_hold_the_answer_to_is_refused() {
        // No schema to hold the answer to: Anthropic has no "any JSON object".
        let e = translate_err(
            json!({"messages": [user("x")], "response_format": {"type": "json_object"}}),
        );
        assert!(matches!(e, TranslateError::Unsupported { .. }), "{e}");
        assert_eq!(e.param(), Some("response_format"));
        assert!(e.to_string().contains("json_schema"), "{e}");
        for json_schema in [
            json!({"name": "x"}),
            json!({"name": "x", "schema": "object"}),
        ] {
            let e = translate_err(json!({"messages": [user("x")],
                "response_format": {"type": "json_schema", "json_schema": json_schema}}));
            assert_eq!(e.param(), Some("response_format.json_schema.schema"));
        }
        let e = translate_err(json!({"messages": [user("x")], "response_format": {"type": "xml"}}));
        assert_eq!(e.param(), Some("response_format"));
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
