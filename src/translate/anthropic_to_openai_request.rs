//! Anthropic Messages request → OpenAI Chat Completions request, for serving
//! `/v1/messages` from OpenAI-compatible providers.
//!
//! Choices made where the formats do not line up:
//! - The system prompt (string or text blocks, joined with a blank line)
//!   becomes a leading `system` message; `cache_control` is dropped
//!   everywhere, as OpenAI-compatible providers cache on their own.
//! - A `system` message inside `messages` (Claude Code sends them mid-conversation)
//!   becomes an OpenAI `system` message at the same position, its text blocks
//!   joined with a blank line.
//! - A user message's `tool_result` blocks become `tool` messages placed
//!   first, directly after the assistant message that made the calls; the
//!   message's other blocks follow as one user message. Tool messages carry
//!   text only in OpenAI: text blocks are joined with a newline and
//!   `is_error: true` is kept by prefixing `Error: `. Images and PDFs in a tool
//!   result go into that user message instead, right after the run of tool
//!   messages, each group behind a text part naming the tool call it came from
//!   (the tool message says so too), so the model still sees them. A provider
//!   that orders messages strictly (Mistral) gets them in an order it takes (see
//!   `chat_messages`).
//! - User content made only of text is sent as one string (text blocks joined
//!   with a blank line), since some OpenAI-compatible servers accept only
//!   string content; otherwise it is an array of parts. Assistant text blocks
//!   are concatenated, as they are pieces of one answer.
//! - Thinking blocks in the history are dropped: their signatures mean
//!   nothing to other providers. A `tool_use` input that is not an object is
//!   refused, as OpenAI arguments must encode one.
//! - A base64 PDF `document` becomes a `file` part for a provider that takes one
//!   (OpenAI, OpenRouter), else a note that it was left out (chat servers refuse
//!   the part type, and the PDF would stay in every later turn); a plain-text
//!   document becomes a text part; other documents are rejected.
//! - Consecutive turns of one role, which Anthropic reads as one turn, become one:
//!   an assistant message with all their text and tool calls (Chat wants the tool
//!   messages answering every call right after it), and one run of tool messages
//!   then one user message.
//! - Fields Chat Completions has no counterpart for are not sent: `top_k`,
//!   `cache_control`, `context_management`, and `metadata` but for `user_id`,
//!   which becomes `user` (cut to OpenAI's 64 characters).
//! - Reasoning, for models that reason (see [`OpenAiRequestOptions::reasoning`]),
//!   becomes `reasoning_effort`; for other models it is dropped:
//!
//!   | Messages request | `reasoning_effort` |
//!   |---|---|
//!   | `output_config.effort` `low` / `medium` / `high` (`max`) | the same (`high`) |
//!   | `thinking: {type: enabled}`, `budget_tokens` < 2048 | `low` |
//!   | `budget_tokens` 2048–8191 | `medium` |
//!   | `budget_tokens` ≥ 8192 | `high` |
//!   | `thinking: {type: adaptive}` | `medium` (OpenAI's default) |
//!   | `thinking: {type: disabled}` or none | not sent |
//! - `stop_sequences` become `stop`, the first four: Chat Completions takes no
//!   more (OpenAI: 400). `tool_choice.disable_parallel_tool_use` becomes
//!   `parallel_tool_calls: false`, but for a model refusing the member (OpenAI's
//!   o-series).
//! - `max_tokens` is sent as `max_completion_tokens` to OpenAI itself (its
//!   reasoning models refuse `max_tokens`) and as `max_tokens` to other
//!   OpenAI-compatible servers, lowered to the model's configured ceiling.
//! - `output_config.format` (structured outputs; the beta's top-level
//!   `output_format` alike) becomes `response_format` `json_schema`: the schema, its
//!   `name` ("response" when the request has none, as a Messages client's never
//!   does: Chat requires one), and `description` and `strict` when the request has
//!   them (a Responses client's, through the hub; OpenAI's strict mode refuses
//!   schemas Anthropic takes, so it is not made up). The hub's `json_object`, a
//!   Responses client's, becomes `response_format` `json_object`.
//! - Server tools (typed tools such as `web_search_…`) and `mcp_servers`
//!   cannot run elsewhere and are rejected.

//!
//! The body is read one level at a time and the OpenAI request is written
//! straight into one buffer (see `request_fields`), so a long conversation
//! costs little more memory than its own size.

use std::borrow::Cow;
use std::ops::Range;

use super::chat_messages::{ChatRole, MessagesWriter};
use super::error::TranslateError;
use super::json_writer::{
    release_spare, write_compact, write_compact_as_str, write_number, write_str, write_str_array,
    write_str_fragment, write_u64,
};
use super::request_fields::{field, json_object, stream_flag, CheckedBody, Json, Text};
use super::thought_signature;
use super::tool_call_id::provider_tool_call_id;

/// Google's documented value for a thought signature the client did not keep.
const THOUGHT_SIGNATURE_STAND_IN: &str = "skip_thought_signature_validator";

/// Settings for [`anthropic_to_openai_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiRequestOptions {
    /// The upstream model name, routing prefix already removed.
    pub model: String,
    /// The model reasons and takes `reasoning_effort`.
    pub reasoning: bool,
    /// The member that carries the output-token limit.
    pub token_limit: TokenLimitField,
    /// The model's output-token ceiling: a larger `max_tokens` is lowered to it.
    pub max_output_tokens: Option<u64>,
    /// How the provider reports a stream's usage: asked for when it must be.
    pub stream_usage: StreamUsage,
    /// An assistant turn's thinking goes back as its `reasoning_content`, empty on a
    /// tool-call turn whose thinking the client did not keep: DeepSeek's thinking mode
    /// refuses a tool loop whose earlier turns lack it (400), where other servers
    /// refuse the member (Mistral) or ignore it.
    pub reasoning_content_back: bool,
    /// The provider takes OpenAI's `user` (from `metadata.user_id`); Mistral refuses
    /// the member (422).
    pub user_field: bool,
    /// The model takes only the default `temperature` and `top_p` (1), and no `stop`:
    /// OpenAI's reasoning models refuse any other value and the member (400), so they
    /// are not sent.
    pub default_sampling_only: bool,
    /// Roles follow each other only in the orders Mistral takes (see `chat_messages`):
    /// text after tool results joins the last tool message, images after them follow a
    /// short assistant message, a `system` message after an assistant or tool one is a
    /// user's.
    pub strict_message_order: bool,
    /// Tool-call ids are nine letters and digits, the only ones Mistral takes (400,
    /// code 3280): any other becomes nine of its hash, in its call and its result alike
    /// (see `tool_call_id`).
    pub short_tool_call_ids: bool,
    /// The model reads text parts only (DeepSeek's refuse any other, 422): an image
    /// or a file becomes a short note saying it was left out.
    pub text_only: bool,
    /// The provider takes OpenAI's `file` part (OpenAI, OpenRouter): any other refuses
    /// the part type (vLLM: 400 "Unsupported chat content part type: 'file'"), which
    /// would stick a conversation holding a PDF, so a PDF becomes a note saying it was
    /// left out.
    pub file_parts: bool,
    /// The model takes `parallel_tool_calls`; OpenAI's o-series refuse the member (400
    /// "Unsupported parameter"), so `tool_choice.disable_parallel_tool_use` is not sent
    /// to them.
    pub parallel_tool_calls_field: bool,
    /// Each assistant turn's first tool call carries its thought signature: Gemini's
    /// own where a thinking block of the turn carries it (see `thought_signature`),
    /// else Google's documented stand-in (`skip_thought_signature_validator`). Gemini 3
    /// refuses a tool loop whose calls come back without one (400), and another
    /// model's (Claude's, in a conversation begun there) as corrupted (400).
    pub thought_signature_stand_in: bool,
}

/// How an OpenAI-format provider reports a stream's token usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamUsage {
    /// In a last, usage-only chunk, when `stream_options.include_usage` asks for it:
    /// OpenAI and most compatible servers.
    OnRequest,
    /// In its last chunk, unasked; `stream_options` is refused (Mistral answers 422).
    Unasked,
}

/// How an OpenAI-format provider names the output-token limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenLimitField {
    /// `max_completion_tokens`: OpenAI itself (its reasoning models refuse `max_tokens`).
    MaxCompletionTokens,
    /// `max_tokens`: OpenAI-compatible servers, many of which know nothing newer.
    MaxTokens,
}

/// OpenAI's longest `user`.
const MAX_USER_CHARS: usize = 64;

/// The most stop sequences Chat Completions takes (OpenAI refuses more, 400), where
/// Anthropic takes more: the first ones go.
const MAX_CHAT_STOPS: usize = 4;

/// A translated request, ready to send to an OpenAI-compatible provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiRequest {
    /// The serialized Chat Completions request.
    pub body: Vec<u8>,
    /// The client asked for a streamed response.
    pub stream: bool,
}

/// OpenAI's schema when an Anthropic tool has no `input_schema`.
const EMPTY_SCHEMA: &[u8] = br#"{"properties":{},"type":"object"}"#;

json_object!(
    /// The members of a Messages request that translation reads.
    struct MessagesRequest {
        mcp_servers,
        system,
        messages,
        max_tokens,
        temperature,
        top_p,
        stop_sequences,
        metadata,
        thinking,
        output_config,
        output_format,
        tools,
        tool_choice,
        stream,
    }
);

json_object!(
    struct Message {
        role,
        content,
    }
);

json_object!(
    /// The members of any content block that translation reads.
    struct ContentBlock {
        kind = "type",
        text,
        source,
        title,
        id,
        name,
        input,
        tool_use_id,
        content,
        is_error,
        tool_name,
        thinking,
        signature,
    }
);

json_object!(
    struct Source {
        kind = "type",
        media_type,
        data,
        url,
    }
);

json_object!(
    struct Tool {
        kind = "type",
        name,
        description,
        input_schema,
    }
);

/// Translates an Anthropic Messages request body into an OpenAI Chat
/// Completions request body.
pub fn anthropic_to_openai_request(
    body: CheckedBody<'_>,
    opts: &OpenAiRequestOptions,
) -> Result<OpenAiRequest, TranslateError> {
    let value = body.value();
    if !value.is_object() {
        return Err(TranslateError::InvalidJson("expected an object".into()));
    }
    let req = MessagesRequest::read(value);
    if field(req.mcp_servers).is_some_and(|v| v.elements().is_none_or(|a| !a.is_empty())) {
        return Err(TranslateError::unsupported(
            "mcp_servers",
            "MCP servers are run by Anthropic and cannot be used with this model; remove `mcp_servers`",
        ));
    }

    // `max_tokens` is written first (keys are sorted as before), but its
    // errors are reported after those of the messages.
    let max_tokens = field(req.max_tokens)
        .map(|v| {
            v.as_u64().ok_or_else(|| {
                TranslateError::invalid_field("max_tokens", "must be a positive integer")
            })
        })
        .transpose();
    let system = field(req.system)
        .map(|s| system_text(s, || "system".into()))
        .transpose()?;
    let Some(input) = field(req.messages).and_then(Json::elements) else {
        return Err(TranslateError::invalid_field(
            "messages",
            "is required and must be an array of messages",
        ));
    };

    // A translated conversation is at most about twice as long as the
    // client's (block wrappers around one-word messages, escaped tool
    // arguments), so one allocation holds it; a large leftover is released
    // at the end.
    let mut out = Vec::with_capacity(2 * body.text().len() + 256);
    out.push(b'{');
    if let Ok(Some(n)) = max_tokens {
        let n = opts.max_output_tokens.map_or(n, |ceiling| n.min(ceiling));
        out.extend_from_slice(match opts.token_limit {
            TokenLimitField::MaxCompletionTokens => br#""max_completion_tokens":"#.as_slice(),
            TokenLimitField::MaxTokens => br#""max_tokens":"#.as_slice(),
        });
        write_u64(&mut out, n);
        out.push(b',');
    }
    out.extend_from_slice(br#""messages":["#);
    let mut messages = MessagesWriter::new(opts);
    if let Some(system) = system {
        messages.system(&mut out, &system);
    }
    let mut turns = input.into_iter().map(Message::read).enumerate().peekable();
    while let Some((i, msg)) = turns.next() {
        let role = TurnRole::of(&msg).ok_or_else(|| {
            TranslateError::invalid_field(
                format!("messages[{i}].role"),
                "must be user, assistant or system",
            )
        })?;
        if role == TurnRole::System {
            convert_system_message(msg, i, &mut messages, &mut out)?;
            continue;
        }
        // Anthropic reads consecutive turns of one role as one turn; Chat needs them
        // as one message (an assistant message's tool calls must be followed by their
        // results, OpenAI's 400 says).
        let mut run = vec![(i, msg)];
        while let Some(next) = turns.next_if(|(_, m)| TurnRole::of(m) == Some(role)) {
            run.push(next);
        }
        let blocks = run_blocks(&run)?;
        if role == TurnRole::User {
            convert_user_blocks(blocks, &mut messages, &mut out)?;
        } else {
            convert_assistant_blocks(blocks, &mut messages, &mut out)?;
        }
    }
    out.push(b']');
    max_tokens?;

    let mut sampling = [None, None];
    for (slot, (key, value)) in sampling
        .iter_mut()
        .zip([("temperature", req.temperature), ("top_p", req.top_p)])
    {
        if let Some(v) = field(value) {
            *slot = Some(
                v.as_number()
                    .ok_or_else(|| TranslateError::invalid_field(key, "must be a number"))?,
            );
        }
    }
    // A value the model would refuse is not sent; the default it runs with instead
    // is the only one it takes.
    let [temperature, top_p] = sampling
        .map(|value| value.filter(|v| !opts.default_sampling_only || v.as_f64() == Some(1.0)));
    let mut stops = stop_sequences(req.stop_sequences)?;
    if opts.default_sampling_only {
        // Its reasoning models answer "'stop' is not supported with this model".
        stops.clear();
    }
    stops.truncate(MAX_CHAT_STOPS);
    let user = field(req.metadata)
        .and_then(|m| m.get("user_id"))
        .and_then(Json::as_str)
        .filter(|_| opts.user_field);
    let effort = if opts.reasoning {
        reasoning_effort(field(req.thinking), field(req.output_config))
    } else {
        None
    };
    let tooling = convert_tooling(&req)?;
    let response_format = response_format(field(req.output_config), field(req.output_format))?;
    let stream = stream_flag(req.stream)?;

    out.extend_from_slice(br#","model":"#);
    write_str(&mut out, &opts.model);
    if opts.parallel_tool_calls_field && tooling.as_ref().is_some_and(|t| t.no_parallel) {
        out.extend_from_slice(br#","parallel_tool_calls":false"#);
    }
    if let Some(effort) = effort {
        out.extend_from_slice(br#","reasoning_effort":"#);
        write_str(&mut out, effort);
    }
    if let Some(format) = response_format {
        out.extend_from_slice(br#","response_format":"#);
        out.extend_from_slice(&format);
    }
    if !stops.is_empty() {
        out.extend_from_slice(br#","stop":"#);
        write_str_array(&mut out, &stops);
    }
    if stream {
        out.extend_from_slice(br#","stream":true"#);
        // Anthropic streams always report usage; OpenAI only on request.
        if opts.stream_usage == StreamUsage::OnRequest {
            out.extend_from_slice(br#","stream_options":{"include_usage":true}"#);
        }
    }
    if let Some(t) = temperature {
        out.extend_from_slice(br#","temperature":"#);
        write_number(&mut out, &t);
    }
    if let Some(tooling) = tooling {
        if let Some(choice) = tooling.choice {
            out.extend_from_slice(br#","tool_choice":"#);
            out.extend_from_slice(&choice);
        }
        out.extend_from_slice(br#","tools":"#);
        out.extend_from_slice(&tooling.tools);
    }
    if let Some(p) = top_p {
        out.extend_from_slice(br#","top_p":"#);
        write_number(&mut out, &p);
    }
    if let Some(user) = user {
        out.extend_from_slice(br#","user":"#);
        write_str(&mut out, first_chars(&user, MAX_USER_CHARS));
    }
    out.push(b'}');
    release_spare(&mut out);

    Ok(OpenAiRequest { body: out, stream })
}

/// The `reasoning_effort` a Messages request asks for (the table in the module doc).
fn reasoning_effort(
    thinking: Option<Json<'_>>,
    output_config: Option<Json<'_>>,
) -> Option<&'static str> {
    let effort = output_config
        .and_then(|c| c.get("effort"))
        .and_then(Json::as_str);
    match effort.as_deref() {
        Some("low") => return Some("low"),
        Some("medium") => return Some("medium"),
        Some("high" | "max") => return Some("high"),
        _ => {}
    }
    let [kind, budget] = thinking?.members(["type", "budget_tokens"]);
    match kind.and_then(Json::as_str).as_deref() {
        Some("enabled") => Some(match budget.and_then(Json::as_u64).unwrap_or(0) {
            0..2048 => "low",
            2048..8192 => "medium",
            _ => "high",
        }),
        Some("adaptive") => Some("medium"),
        _ => None,
    }
}

/// The name a schema gets when the request gives none: Chat requires
/// `json_schema.name`, and a Messages client's `output_config.format` has no member for
/// it (only a Responses client's, through the hub, brings one).
const SCHEMA_NAME_STAND_IN: &str = "response";

/// The Chat `response_format` for the request's `output_config.format`, or for the
/// top-level `output_format` that Anthropic's structured-outputs beta took (older SDKs
/// still send it), written; `None` when it asks for no format.
fn response_format(
    output_config: Option<Json<'_>>,
    output_format: Option<Json<'_>>,
) -> Result<Option<Vec<u8>>, TranslateError> {
    let found = output_config
        .and_then(|c| c.get("format"))
        .and_then(Json::non_null)
        .map(|f| (f, "output_config.format"))
        .or_else(|| output_format.map(|f| (f, "output_format")));
    let Some((format, path)) = found else {
        return Ok(None);
    };
    let [kind, name, description, schema, strict] =
        format.members(["type", "name", "description", "schema", "strict"]);
    match kind.and_then(Json::as_str).as_deref() {
        Some("json_schema") => {
            let schema = field(schema).filter(|s| s.is_object()).ok_or_else(|| {
                TranslateError::invalid_field(
                    format!("{path}.schema"),
                    "is required and must be a JSON schema object",
                )
            })?;
            let mut out = Vec::with_capacity(schema.text().len() + 128);
            out.extend_from_slice(br#"{"json_schema":{"#);
            if let Some(d) = field(description).filter(|d| d.is_string()) {
                out.extend_from_slice(br#""description":"#);
                write_compact(&mut out, d.text());
                out.push(b',');
            }
            out.extend_from_slice(br#""name":"#);
            match field(name).filter(|n| n.is_string()) {
                Some(n) => write_compact(&mut out, n.text()),
                None => write_str(&mut out, SCHEMA_NAME_STAND_IN),
            }
            out.extend_from_slice(br#","schema":"#);
            write_compact(&mut out, schema.text());
            // Only a Chat or Responses client's own choice: OpenAI's strict mode refuses
            // schemas Anthropic takes (an optional property), so none is made up.
            match field(strict).and_then(Json::as_bool) {
                Some(true) => out.extend_from_slice(br#","strict":true"#),
                Some(false) => out.extend_from_slice(br#","strict":false"#),
                None => {}
            }
            out.extend_from_slice(br#"},"type":"json_schema"}"#);
            Ok(Some(out))
        }
        // Only a Responses client's, through the hub: Anthropic has no such mode.
        Some("json_object") => Ok(Some(br#"{"type":"json_object"}"#.to_vec())),
        _ => Err(TranslateError::invalid_field(
            format!("{path}.type"),
            "must be json_schema",
        )),
    }
}

/// At most `n` characters of `text`, cut at a character boundary.
fn first_chars(text: &str, n: usize) -> &str {
    text.char_indices()
        .nth(n)
        .map_or(text, |(end, _)| &text[..end])
}

fn stop_sequences(stops: Option<Json<'_>>) -> Result<Vec<Cow<'_, str>>, TranslateError> {
    let Some(v) = field(stops) else {
        return Ok(Vec::new());
    };
    let invalid = || TranslateError::invalid_field("stop_sequences", "must be an array of strings");
    v.elements()
        .ok_or_else(invalid)?
        .into_iter()
        .map(|s| s.as_str().ok_or_else(invalid))
        .collect()
}

/// The texts of a system prompt (the top-level `system`, or a `system` message's
/// content at `path`), to be joined with a blank line.
fn system_text(
    system: Json<'_>,
    path: impl Fn() -> String,
) -> Result<Vec<Text<'_>>, TranslateError> {
    if let Some(s) = system.as_text() {
        return Ok(vec![s]);
    }
    let Some(blocks) = system.elements() else {
        return Err(TranslateError::invalid_field(
            path(),
            "must be a string or an array of text blocks",
        ));
    };
    let mut texts = Vec::with_capacity(blocks.len());
    for (j, b) in blocks.into_iter().enumerate() {
        let [kind, text] = b.members(["type", "text"]);
        match (kind.and_then(Json::as_str), text.and_then(Json::as_text)) {
            (Some(kind), Some(t)) if kind == "text" => texts.push(t),
            _ => {
                return Err(TranslateError::invalid_field(
                    format!("{}[{j}]", path()),
                    "system blocks must be text blocks",
                ))
            }
        }
    }
    Ok(texts)
}

/// Writes `texts` joined by `separator` (already escaped) inside a string.
pub(super) fn write_joined<'t, 'a: 't>(
    out: &mut Vec<u8>,
    texts: impl IntoIterator<Item = &'t Text<'a>>,
    separator: &str,
) {
    for (k, t) in texts.into_iter().enumerate() {
        if k > 0 {
            out.extend_from_slice(separator.as_bytes());
        }
        t.write_fragment(out);
    }
}

/// The role of a turn in a Messages request's `messages`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TurnRole {
    User,
    Assistant,
    /// A `system` message (Claude Code sends them mid-conversation).
    System,
}

impl TurnRole {
    /// The turn's role; `None` for a role the Messages API does not have.
    fn of(msg: &Message<'_>) -> Option<Self> {
        match msg.role.and_then(Json::as_str).as_deref() {
            Some("user") => Some(Self::User),
            Some("assistant") => Some(Self::Assistant),
            Some("system") => Some(Self::System),
            _ => None,
        }
    }
}

/// Writes a `system` message of `messages` as a Chat `system` message (see
/// [`MessagesWriter::system`]).
fn convert_system_message(
    msg: Message<'_>,
    i: usize,
    messages: &mut MessagesWriter,
    out: &mut Vec<u8>,
) -> Result<(), TranslateError> {
    let content = msg.content.ok_or_else(|| {
        TranslateError::invalid_field(format!("messages[{i}].content"), "is required")
    })?;
    let texts = system_text(content, || format!("messages[{i}].content"))?;
    messages.system(out, &texts);
    Ok(())
}

/// A content block of a turn, read, with its place in the request.
struct PlacedBlock<'a> {
    /// The index of its message in `messages`.
    message: usize,
    /// Its index in the message's `content`.
    index: usize,
    /// Its `type`.
    kind: Cow<'a, str>,
    block: ContentBlock<'a>,
}

/// The content blocks of a run of turns of one role, `(index, message)`, in order:
/// what Anthropic reads as one turn. Content given as a string reads as a text block.
fn run_blocks<'a>(run: &[(usize, Message<'a>)]) -> Result<Vec<PlacedBlock<'a>>, TranslateError> {
    let mut placed = Vec::new();
    for &(i, msg) in run {
        let content = msg.content.filter(|c| c.is_string());
        if let Some(text) = content {
            placed.push(PlacedBlock {
                message: i,
                index: 0,
                kind: Cow::Borrowed("text"),
                block: ContentBlock {
                    text: Some(text),
                    ..ContentBlock::default()
                },
            });
            continue;
        }
        let Some(blocks) = msg.content.and_then(Json::elements) else {
            return Err(TranslateError::invalid_field(
                format!("messages[{i}].content"),
                "must be a string or an array of content blocks",
            ));
        };
        placed.reserve(blocks.len());
        for (j, block) in blocks.into_iter().enumerate() {
            let block = ContentBlock::read(block);
            placed.push(PlacedBlock {
                message: i,
                index: j,
                kind: block.kind.and_then(Json::as_str).unwrap_or_default(),
                block,
            });
        }
    }
    Ok(placed)
}

fn block_path(i: usize, j: usize) -> String {
    format!("messages[{i}].content[{j}]")
}

/// An image or document URL: a base64 source becomes a data URL.
enum SourceUrl<'a> {
    Base64 {
        media_type: Cow<'a, str>,
        data: Cow<'a, str>,
    },
    Url(Cow<'a, str>),
}

impl SourceUrl<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        out.push(b'"');
        match self {
            SourceUrl::Base64 { media_type, data } => {
                out.extend_from_slice(b"data:");
                write_str_fragment(out, media_type);
                out.extend_from_slice(b";base64,");
                write_str_fragment(out, data);
            }
            SourceUrl::Url(url) => write_str_fragment(out, url),
        }
        out.push(b'"');
    }
}

/// An OpenAI content part of a user message.
enum UserPart<'a> {
    Text(Text<'a>),
    Image(SourceUrl<'a>),
    File {
        filename: Cow<'a, str>,
        url: SourceUrl<'a>,
    },
}

impl UserPart<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            UserPart::Text(text) => {
                out.extend_from_slice(br#"{"text":"#);
                text.write(out);
                out.extend_from_slice(br#","type":"text"}"#);
            }
            UserPart::Image(url) => {
                out.extend_from_slice(br#"{"image_url":{"url":"#);
                url.write(out);
                out.extend_from_slice(br#"},"type":"image_url"}"#);
            }
            UserPart::File { filename, url } => {
                out.extend_from_slice(br#"{"file":{"file_data":"#);
                url.write(out);
                out.extend_from_slice(br#","filename":"#);
                write_str(out, filename);
                out.extend_from_slice(br#"},"type":"file"}"#);
            }
        }
    }
}

fn convert_user_blocks(
    blocks: Vec<PlacedBlock<'_>>,
    messages: &mut MessagesWriter,
    out: &mut Vec<u8>,
) -> Result<(), TranslateError> {
    // What tool results attach (images, PDFs) comes first: it belongs right after
    // the tool messages.
    let mut attached = Vec::new();
    let mut parts = Vec::new();
    for PlacedBlock {
        message: i,
        index: j,
        kind,
        block,
    } in blocks
    {
        match &*kind {
            "tool_result" => {
                let out = messages.next(out, ChatRole::Tool);
                let fit = PartFit::of(messages);
                let content = write_tool_message(&block, i, j, out, &mut attached, fit)?;
                messages.tool_content_at(content);
            }
            kind => parts
                .push(PartFit::of(messages).part(user_part(kind, &block, || block_path(i, j))?)),
        }
    }
    if !attached.is_empty() {
        attached.append(&mut parts);
        parts = attached;
    }
    if parts.is_empty() {
        return Ok(());
    }
    let texts: Option<Vec<&Text<'_>>> = parts
        .iter()
        .map(|p| match p {
            UserPart::Text(t) => Some(t),
            _ => None,
        })
        .collect();
    // Some OpenAI-compatible servers accept only string content.
    if let Some(texts) = texts {
        messages.user_text(out, texts);
        return Ok(());
    }
    let out = messages.next(out, ChatRole::User);
    out.extend_from_slice(br#"{"content":["#);
    for (k, p) in parts.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        p.write(out);
    }
    out.extend_from_slice(br#"],"role":"user"}"#);
    Ok(())
}

fn text_of<'a>(
    block: &ContentBlock<'a>,
    path: impl FnOnce() -> String,
) -> Result<Text<'a>, TranslateError> {
    block.text.and_then(Json::as_text).ok_or_else(|| {
        TranslateError::invalid_field(format!("{}.text", path()), "must be a string")
    })
}

fn user_part<'a>(
    kind: &str,
    block: &ContentBlock<'a>,
    path: impl Fn() -> String + Copy,
) -> Result<UserPart<'a>, TranslateError> {
    match kind {
        "text" => Ok(UserPart::Text(text_of(block, path)?)),
        "image" => Ok(UserPart::Image(source_url(block, path)?)),
        "document" => {
            let source = block.source.map(Source::read).unwrap_or_default();
            match source.kind.and_then(Json::as_str).as_deref() {
                Some("text") => Ok(UserPart::Text(
                    source.data.and_then(Json::as_text).unwrap_or("".into()),
                )),
                Some("base64")
                    if source.media_type.and_then(Json::as_str).as_deref()
                        == Some("application/pdf") =>
                {
                    let url = source_url(block, path)?;
                    let filename = block
                        .title
                        .and_then(Json::as_str)
                        .unwrap_or(Cow::Borrowed("document.pdf"));
                    Ok(UserPart::File { filename, url })
                }
                _ => Err(TranslateError::unsupported(
                    path(),
                    "only base64 PDF and plain-text documents can be sent to this model",
                )),
            }
        }
        other => Err(TranslateError::unsupported(
            path(),
            format!("content block type `{other}` cannot be sent to this model; use text or image blocks"),
        )),
    }
}

/// An image or document `source` as a URL: base64 becomes a data URL.
fn source_url<'a>(
    block: &ContentBlock<'a>,
    path: impl FnOnce() -> String,
) -> Result<SourceUrl<'a>, TranslateError> {
    let source = block.source.map(Source::read).unwrap_or_default();
    match source.kind.and_then(Json::as_str).as_deref() {
        Some("base64") => match (
            source.media_type.and_then(Json::as_str),
            source.data.and_then(Json::as_str),
        ) {
            (Some(media_type), Some(data)) => Ok(SourceUrl::Base64 { media_type, data }),
            _ => Err(TranslateError::invalid_field(
                format!("{}.source", path()),
                "base64 sources need `media_type` and `data`",
            )),
        },
        Some("url") => source
            .url
            .and_then(Json::as_str)
            .map(SourceUrl::Url)
            .ok_or_else(|| {
                TranslateError::invalid_field(format!("{}.source.url", path()), "must be a string")
            }),
        _ => Err(TranslateError::unsupported(
            format!("{}.source", path()),
            "only base64 and url sources can be sent to this model",
        )),
    }
}

/// What a text-only model reads in place of an image.
const IMAGE_LEFT_OUT: &str = "(an image was left out here: this model reads text only)";

/// What a text-only model reads in place of a file.
const FILE_LEFT_OUT: &str = "(a file was left out here: this model reads text only)";

/// What a model whose provider takes no `file` part reads in place of a PDF.
const FILE_NOT_TAKEN: &str = "(a PDF file was left out here: this model's API takes no files)";

/// How the parts of user and tool messages are fitted to the provider.
#[derive(Clone, Copy)]
struct PartFit {
    /// [`OpenAiRequestOptions::short_tool_call_ids`].
    short_ids: bool,
    /// [`OpenAiRequestOptions::text_only`].
    text_only: bool,
    /// [`OpenAiRequestOptions::file_parts`].
    file_parts: bool,
}

impl PartFit {
    fn of(messages: &MessagesWriter) -> Self {
        Self {
            short_ids: messages.short_tool_call_ids,
            text_only: messages.text_only,
            file_parts: messages.file_parts,
        }
    }

    /// `part`, or a note in place of an image or a file the provider would refuse, so
    /// that the model knows something was there.
    fn part(self, part: UserPart<'_>) -> UserPart<'_> {
        match part {
            UserPart::Image(_) if self.text_only => UserPart::Text(IMAGE_LEFT_OUT.into()),
            UserPart::File { .. } if self.text_only => UserPart::Text(FILE_LEFT_OUT.into()),
            UserPart::File { .. } if !self.file_parts => UserPart::Text(FILE_NOT_TAKEN.into()),
            part => part,
        }
    }
}

/// What a tool message says when its images or PDFs follow in a user message.
const ATTACHED_NOTE: &str = "(attached in the next message)";

/// Writes a `tool_result` block as a tool message; its images and PDFs are pushed to
/// `attached`, behind a text part naming the tool call. Where its content lies in
/// `out`, between its quotes.
fn write_tool_message<'a>(
    block: &ContentBlock<'a>,
    i: usize,
    j: usize,
    out: &mut Vec<u8>,
    attached: &mut Vec<UserPart<'a>>,
    fit: PartFit,
) -> Result<Range<usize>, TranslateError> {
    let path = || block_path(i, j);
    let id = block.tool_use_id.and_then(Json::as_str).ok_or_else(|| {
        TranslateError::invalid_field(format!("{}.tool_use_id", path()), "must be a string")
    })?;
    let id = provider_tool_call_id(&id, fit.short_ids);
    out.extend_from_slice(br#"{"content":""#);
    let start = out.len();
    if block.is_error.and_then(Json::as_bool) == Some(true) {
        out.extend_from_slice(b"Error: ");
    }
    match field(block.content) {
        None => {}
        Some(content) => {
            if let Some(s) = content.as_text() {
                s.write_fragment(out);
            } else if let Some(items) = content.elements() {
                let attached_before = attached.len();
                let mut texts = 0;
                for (k, item) in items.into_iter().enumerate() {
                    let item_path = || format!("{}.content[{k}]", path());
                    let item = ContentBlock::read(item);
                    let text = match item.kind.and_then(Json::as_str).as_deref().unwrap_or("") {
                        "text" => text_of(&item, item_path)?,
                        // Tool search names the tools it loaded; they are all offered here.
                        "tool_reference" => match item.tool_name.and_then(Json::as_str) {
                            Some(name) => format!("Tool available: {name}").into(),
                            None => "".into(),
                        },
                        kind @ ("image" | "document") => {
                            match fit.part(user_part(kind, &item, item_path)?) {
                                UserPart::Text(text) => text,
                                part => {
                                    if attached.len() == attached_before {
                                        attached.push(UserPart::Text(
                                            format!("Attached by tool call {id}:").into(),
                                        ));
                                    }
                                    attached.push(part);
                                    continue;
                                }
                            }
                        }
                        other => {
                            return Err(TranslateError::unsupported(
                                item_path(),
                                format!("tool result block type `{other}` cannot be sent to this model; use text, image or document blocks"),
                            ))
                        }
                    };
                    if texts > 0 {
                        out.extend_from_slice(b"\\n");
                    }
                    texts += 1;
                    text.write_fragment(out);
                }
                if attached.len() > attached_before {
                    if texts > 0 {
                        out.extend_from_slice(b"\\n");
                    }
                    write_str_fragment(out, ATTACHED_NOTE);
                }
            } else {
                return Err(TranslateError::invalid_field(
                    format!("{}.content", path()),
                    "must be a string or an array of text blocks",
                ));
            }
        }
    }
    let content = start..out.len();
    out.extend_from_slice(br#"","role":"tool","tool_call_id":"#);
    write_str(out, &id);
    out.push(b'}');
    Ok(content)
}

/// Writes the blocks of an assistant turn (a run of them, merged) as one assistant
/// message: its text, its tool calls, and its thinking where the provider takes it back.
fn convert_assistant_blocks(
    blocks: Vec<PlacedBlock<'_>>,
    messages: &mut MessagesWriter,
    out: &mut Vec<u8>,
) -> Result<(), TranslateError> {
    // Text blocks are pieces of one answer, thinking blocks of one reasoning.
    let mut text = Vec::new();
    let mut thinking = Vec::new();
    // Gemini's own signature, which a thinking block carries: given back with the
    // first call.
    let mut signature: Option<Cow<'_, str>> = None;
    let mut calls = std::mem::take(&mut messages.tool_calls);
    calls.clear();
    let mut call_count = 0;
    for PlacedBlock {
        message: i,
        index: j,
        kind,
        block,
    } in blocks
    {
        let path = || block_path(i, j);
        match &*kind {
            "text" => text.push(text_of(&block, path)?),
            "tool_use" => {
                if call_count > 0 {
                    calls.push(b',');
                }
                // Gemini 3 wants a signature on each turn's first call.
                let first_signature = (call_count == 0 && messages.thought_signature_stand_in)
                    .then(|| signature.as_deref().unwrap_or(THOUGHT_SIGNATURE_STAND_IN));
                write_tool_call(&mut calls, &block, path, first_signature, messages)?;
                call_count += 1;
            }
            "thinking" => {
                if messages.reasoning_content_back {
                    thinking.extend(block.thinking.and_then(Json::as_text));
                }
                if messages.thought_signature_stand_in && signature.is_none() {
                    signature = block.signature.and_then(Json::as_str).and_then(geminis_own);
                }
            }
            "redacted_thinking" => {}
            other => {
                return Err(TranslateError::unsupported(
                    path(),
                    format!("assistant block type `{other}` cannot be sent to this model"),
                ))
            }
        }
    }
    let out = messages.next(out, ChatRole::Assistant);
    out.extend_from_slice(br#"{"content":"#);
    if call_count > 0 && text.iter().all(|t| t.is_empty()) {
        out.extend_from_slice(b"null");
    } else {
        out.push(b'"');
        write_joined(out, &text, "");
        out.push(b'"');
    }
    // DeepSeek's thinking mode refuses a tool-call turn without the member, whether or
    // not the client kept the turn's thinking (redacted, begun on another model, a
    // Responses reasoning item without summary): then it goes back empty.
    if !thinking.is_empty() || (messages.reasoning_content_back && call_count > 0) {
        out.extend_from_slice(br#","reasoning_content":""#);
        write_joined(out, &thinking, "");
        out.push(b'"');
    }
    out.extend_from_slice(br#","role":"assistant""#);
    if call_count > 0 {
        out.extend_from_slice(br#","tool_calls":["#);
        out.extend_from_slice(&calls);
        out.push(b']');
    }
    out.push(b'}');
    messages.tool_calls = calls;
    Ok(())
}

/// Writes a `tool_use` block as a Chat tool call into `calls`, carrying
/// `thought_signature` (Gemini's) when given.
fn write_tool_call(
    calls: &mut Vec<u8>,
    block: &ContentBlock<'_>,
    path: impl Fn() -> String,
    thought_signature: Option<&str>,
    messages: &MessagesWriter,
) -> Result<(), TranslateError> {
    let id = block.id.and_then(Json::as_str).ok_or_else(|| {
        TranslateError::invalid_field(format!("{}.id", path()), "must be a string")
    })?;
    let name = block.name.and_then(Json::as_str).ok_or_else(|| {
        TranslateError::invalid_field(format!("{}.name", path()), "must be a string")
    })?;
    calls.push(b'{');
    if let Some(signature) = thought_signature {
        calls.extend_from_slice(br#""extra_content":{"google":{"thought_signature":"#);
        write_str(calls, signature);
        calls.extend_from_slice(b"}},");
    }
    calls.extend_from_slice(br#""function":{"arguments":"#);
    match field(block.input) {
        None => calls.extend_from_slice(br#""{}""#),
        Some(input) if input.is_object() => write_compact_as_str(calls, input.text()),
        // OpenAI arguments are the text of an object.
        Some(_) => {
            return Err(TranslateError::invalid_field(
                format!("{}.input", path()),
                "must be an object, as tool inputs are",
            ))
        }
    }
    calls.extend_from_slice(br#","name":"#);
    write_str(calls, &name);
    calls.extend_from_slice(br#"},"id":"#);
    write_str(
        calls,
        &provider_tool_call_id(&id, messages.short_tool_call_ids),
    );
    calls.extend_from_slice(br#","type":"function"}"#);
    Ok(())
}

/// The signature Gemini made, out of a thinking block's; none for another model's,
/// which Gemini refuses as corrupted.
fn geminis_own(thinking_signature: Cow<'_, str>) -> Option<Cow<'_, str>> {
    match thinking_signature {
        Cow::Borrowed(s) => thought_signature::geminis_own(s).map(Cow::Borrowed),
        Cow::Owned(s) => thought_signature::geminis_own(&s).map(|s| Cow::Owned(s.to_owned())),
    }
}

/// The translated `tools` array, `tool_choice` and whether parallel calls
/// are off.
struct Tooling {
    tools: Vec<u8>,
    choice: Option<Vec<u8>>,
    no_parallel: bool,
}

fn convert_tooling(req: &MessagesRequest<'_>) -> Result<Option<Tooling>, TranslateError> {
    let Some(tools) = field(req.tools) else {
        return Ok(None);
    };
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
        if let Some(kind) = tool.kind.and_then(Json::as_str).filter(|k| k != "custom") {
            return Err(TranslateError::unsupported(
                format!("tools[{i}]"),
                format!("`{kind}` is a tool run by Anthropic and cannot be used with this model; define it as a custom tool"),
            ));
        }
        let name = tool.name.and_then(Json::as_str).ok_or_else(|| {
            TranslateError::invalid_field(format!("tools[{i}].name"), "must be a string")
        })?;
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"function":{"#);
        if let Some(d) = field(tool.description) {
            out.extend_from_slice(br#""description":"#);
            write_compact(&mut out, d.text());
            out.push(b',');
        }
        out.extend_from_slice(br#""name":"#);
        write_str(&mut out, &name);
        out.extend_from_slice(br#","parameters":"#);
        match field(tool.input_schema) {
            Some(schema) => write_compact(&mut out, schema.text()),
            None => out.extend_from_slice(EMPTY_SCHEMA),
        }
        out.extend_from_slice(br#"},"type":"function"}"#);
    }
    out.push(b']');

    let mut tooling = Tooling {
        tools: out,
        choice: None,
        no_parallel: false,
    };
    if let Some(choice) = field(req.tool_choice) {
        let [kind, name, no_parallel] =
            choice.members(["type", "name", "disable_parallel_tool_use"]);
        let mapped: Vec<u8> = match kind.and_then(Json::as_str).as_deref() {
            Some("auto") => br#""auto""#.to_vec(),
            Some("any") => br#""required""#.to_vec(),
            Some("none") => br#""none""#.to_vec(),
            Some("tool") => {
                let name = name.and_then(Json::as_str).ok_or_else(|| {
                    TranslateError::invalid_field("tool_choice.name", "must be a string")
                })?;
                let mut mapped = br#"{"function":{"name":"#.to_vec();
                write_str(&mut mapped, &name);
                mapped.extend_from_slice(br#"},"type":"function"}"#);
                mapped
            }
            _ => {
                return Err(TranslateError::invalid_field(
                    "tool_choice.type",
                    "must be one of auto, any, tool, none",
                ))
            }
        };
        tooling.choice = Some(mapped);
        tooling.no_parallel = no_parallel.and_then(Json::as_bool) == Some(true);
    }
    Ok(Some(tooling))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::request_fields::checked;
    use serde_json::{json, Value};

    fn opts(reasoning: bool) -> OpenAiRequestOptions {
        OpenAiRequestOptions {
            model: "gpt-4o-mini".into(),
            reasoning,
            token_limit: TokenLimitField::MaxTokens,
            max_output_tokens: None,
            stream_usage: StreamUsage::OnRequest,
            reasoning_content_back: false,
            user_field: true,
            default_sampling_only: false,
            strict_message_order: false,
            short_tool_call_ids: false,
            text_only: false,
            file_parts: true,
            parallel_tool_calls_field: true,
            thought_signature_stand_in: false,
        }
    }

    fn translate_with(req: Value, reasoning: bool) -> Value {
        let r = anthropic_to_openai_request(checked(&req), &opts(reasoning)).unwrap();
        serde_json::from_slice(&r.body).unwrap()
    }

    fn translate(req: Value) -> Value {
        translate_with(req, false)
    }

    #[test]
    fn texts_are_copied_with_their_escapes_as_written() {
        // Written by hand: serde would write `é` and `/` plainly.
        let text = r#"line \"one\"\n\u00e9\/ \\ end"#;
        let body = format!(
            r#"{{"model":"m","max_tokens":9,"system":"s: {text}","messages":[
            {{"role":"user","content":[{{"type":"text","text":"u: {text}"}}]}},
            {{"role":"assistant","content":[{{"type":"text","text":"a: {text}"}},
                {{"type":"tool_use","id":"t1","name":"read","input":{{}}}}]}},
            {{"role":"user","content":[{{"type":"tool_result","tool_use_id":"t1",
                "content":[{{"type":"text","text":"r: {text}"}}]}}]}},
            {{"role":"user","content":[{{"type":"tool_result","tool_use_id":"t1","content":"c: {text}"}}]}}]}}"#
        );
        let out = CheckedBody::check(body.as_bytes())
            .and_then(|b| anthropic_to_openai_request(b, &opts(false)))
            .unwrap()
            .body;
        let out = String::from_utf8(out).unwrap();
        for prefix in ["s", "u", "a", "r", "c"] {
            assert!(
                out.contains(&format!("{prefix}: {text}")),
                "{prefix}: {out}"
            );
        }
        let plain = "line \"one\"\né/ \\ end";
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["messages"][0]["content"], format!("s: {plain}"));
        assert_eq!(v["messages"][1]["content"], format!("u: {plain}"));
        assert_eq!(v["messages"][2]["content"], format!("a: {plain}"));
        assert_eq!(v["messages"][3]["content"], format!("r: {plain}"));
        assert_eq!(v["messages"][4]["content"], format!("c: {plain}"));
    }

    fn translate_err(req: Value) -> TranslateError {
        CheckedBody::check(req.to_string().as_bytes())
            .and_then(|body| anthropic_to_openai_request(body, &opts(false)))
            .unwrap_err()
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
            CheckedBody::check(b"nope").unwrap_err(),
            TranslateError::InvalidJson(_)
        ));
        assert_eq!(
            translate_err(json!({"max_tokens": 1})).param(),
            Some("messages")
        );
        let e = translate_err(json!({"messages": [{"role": "developer", "content": "x"}]}));
        assert_eq!(e.param(), Some("messages[0].role"));
        let e = translate_err(
            json!({"messages": [{"role": "system", "content": [{"type": "image"}]}]}),
        );
        assert_eq!(e.param(), Some("messages[0].content[0]"));
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
    fn system_messages_inside_messages_stay_in_place() {
        let got = translate(json!({"system": "top", "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "system", "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B", "cache_control": {"type": "ephemeral"}}]},
            {"role": "user", "content": "Go on"},
            {"role": "system", "content": "plain"}
        ]}));
        assert_eq!(
            got["messages"],
            json!([
                {"role": "system", "content": "top"},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
                {"role": "system", "content": "A\n\nB"},
                {"role": "user", "content": "Go on"},
                {"role": "system", "content": "plain"}
            ])
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
    fn tool_use_input_that_is_not_an_object_is_invalid() {
        for input in [json!([1]), json!("x"), json!(5), json!(true)] {
            let e = translate_err(json!({"messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "ok"},
                    {"type": "tool_use", "id": "t", "name": "f", "input": input}
                ]}
            ]}));
            assert_eq!(e.param(), Some("messages[1].content[1].input"), "{input}");
        }
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
    fn tool_result_images_follow_the_tool_messages_in_a_user_message() {
        let png = "iVBORw0KGgoAAAANSUhEUg==";
        let got = translate(json!({"messages": [
            {"role": "user", "content": "Look at both"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "t1", "name": "Read", "input": {"file_path": "/a.png"}},
                {"type": "tool_use", "id": "t2", "name": "Read", "input": {"file_path": "/b.txt"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}}
                ]},
                {"type": "tool_result", "tool_use_id": "t2", "content": [{"type": "text", "text": "hello"}]},
                {"type": "text", "text": "What do you see?"}
            ]},
            {"role": "assistant", "content": "A cat."}
        ]}));
        assert_eq!(
            got["messages"],
            json!([
                {"role": "user", "content": "Look at both"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "t1", "type": "function", "function": {"name": "Read", "arguments": "{\"file_path\":\"/a.png\"}"}},
                    {"id": "t2", "type": "function", "function": {"name": "Read", "arguments": "{\"file_path\":\"/b.txt\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "t1", "content": "(attached in the next message)"},
                {"role": "tool", "tool_call_id": "t2", "content": "hello"},
                {"role": "user", "content": [
                    {"type": "text", "text": "Attached by tool call t1:"},
                    {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{png}")}},
                    {"type": "text", "text": "What do you see?"}
                ]},
                {"role": "assistant", "content": "A cat."}
            ])
        );
    }

    #[test]
    fn a_text_only_model_reads_a_note_where_an_image_or_a_file_was() {
        let body = json!({"messages": [
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Read", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}]},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}},
                {"type": "text", "text": "What is it?"}]}
        ]});
        let deepseek = OpenAiRequestOptions {
            text_only: true,
            ..opts(false)
        };
        let r = anthropic_to_openai_request(checked(&body), &deepseek).unwrap();
        let got: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            got["messages"][1],
            json!({"role": "tool", "tool_call_id": "t1", "content": IMAGE_LEFT_OUT})
        );
        assert_eq!(
            got["messages"][2],
            json!({"role": "user", "content": format!("{FILE_LEFT_OUT}\n\nWhat is it?")})
        );
    }

    fn translate_opts(body: &Value, opts: &OpenAiRequestOptions) -> Value {
        let r = anthropic_to_openai_request(checked(body), opts).unwrap();
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn a_provider_taking_no_file_parts_reads_a_note_where_a_pdf_was() {
        // Claude Code's Read tool sends a PDF in its result; vLLM and most chat servers
        // refuse a `file` part (400), and the PDF stays in every later turn.
        let pdf = json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}});
        let body = json!({"messages": [
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Read", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": [pdf]},
                pdf,
                {"type": "text", "text": "Summarize both."}]}
        ]});
        let vllm = OpenAiRequestOptions {
            file_parts: false,
            ..opts(false)
        };
        let got = translate_opts(&body, &vllm);
        assert_eq!(
            got["messages"],
            json!([
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "t1", "type": "function", "function": {"name": "Read", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": FILE_NOT_TAKEN},
                {"role": "user", "content": format!("{FILE_NOT_TAKEN}\n\nSummarize both.")}
            ])
        );
        // Images still go: only the file part is refused.
        let image = json!({"messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}]}]});
        assert_eq!(
            translate_opts(&image, &vllm)["messages"][0]["content"][0]["type"],
            "image_url"
        );
    }

    #[test]
    fn tool_result_text_pdf_and_tool_references_are_kept() {
        let got = translate(json!({"messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "is_error": true, "content": [
                {"type": "text", "text": "partial"},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}},
                {"type": "tool_reference", "tool_name": "WebFetch"}
            ]}
        ]}]}));
        assert_eq!(
            got["messages"],
            json!([
                {"role": "tool", "tool_call_id": "t1",
                 "content": "Error: partial\nnotes\nTool available: WebFetch\n(attached in the next message)"},
                {"role": "user", "content": [
                    {"type": "text", "text": "Attached by tool call t1:"},
                    {"type": "file", "file": {"filename": "document.pdf", "file_data": "data:application/pdf;base64,JVBE"}}
                ]}
            ])
        );
        let e = translate_err(json!({"messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "search_result"}]}
        ]}]}));
        assert_eq!(e.param(), Some("messages[0].content[0].content[0]"));
        let e = translate_err(json!({"messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}
        ]}]}));
        assert_eq!(e.param(), Some("messages[0].content[0].content[0].source"));
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
    fn parallel_tool_calls_is_not_sent_to_a_model_refusing_the_member() {
        // OpenAI's o-series: "Unsupported parameter: 'parallel_tool_calls'".
        let body = json!({"messages": [{"role": "user", "content": "x"}],
            "tools": [{"name": "now"}],
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": true}});
        let o_series = OpenAiRequestOptions {
            parallel_tool_calls_field: false,
            ..opts(true)
        };
        let got = translate_opts(&body, &o_series);
        assert!(got.get("parallel_tool_calls").is_none(), "{got}");
        assert_eq!(got["tool_choice"], "auto");
        assert_eq!(translate_with(body, true)["parallel_tool_calls"], false);
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
            "temperature": 0.5, "top_p": 0.9, "stop_sequences": ["3", "END"],
            "metadata": {"user_id": "u-1"}}),
        );
        assert_eq!(got["temperature"], 0.5);
        assert_eq!(got["top_p"], 0.9);
        assert_eq!(got["stop"], json!(["3", "END"]));
        assert_eq!(got["user"], "u-1");
    }

    #[test]
    fn at_most_four_stop_sequences_are_sent() {
        // Chat Completions takes up to four (OpenAI: 400 above); Anthropic more.
        let got = translate(json!({"messages": [{"role": "user", "content": "x"}],
            "stop_sequences": ["a", "b", "c", "d", "e", "f"]}));
        assert_eq!(got["stop"], json!(["a", "b", "c", "d"]));
    }

    #[test]
    fn consecutive_assistant_turns_are_one_assistant_message() {
        // Anthropic combines them; Chat wants an assistant message's calls followed by
        // their results (OpenAI: 400 otherwise).
        let got = translate(json!({"messages": [
            {"role": "user", "content": "read a and b"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "a first", "signature": "s"},
                {"type": "text", "text": "Reading a."},
                {"type": "tool_use", "id": "a", "name": "Read", "input": {"p": "a"}}]},
            {"role": "assistant", "content": "Then b."},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "b", "name": "Read", "input": {"p": "b"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "a", "content": "A"},
                {"type": "tool_result", "tool_use_id": "b", "content": "B"}]}
        ]}));
        assert_eq!(
            got["messages"],
            json!([
                {"role": "user", "content": "read a and b"},
                {"role": "assistant", "content": "Reading a.Then b.", "tool_calls": [
                    {"id": "a", "type": "function", "function": {"name": "Read", "arguments": "{\"p\":\"a\"}"}},
                    {"id": "b", "type": "function", "function": {"name": "Read", "arguments": "{\"p\":\"b\"}"}}]},
                {"role": "tool", "tool_call_id": "a", "content": "A"},
                {"role": "tool", "tool_call_id": "b", "content": "B"}
            ])
        );
    }

    #[test]
    fn merged_assistant_turns_give_deepseek_and_gemini_one_turns_thinking() {
        let body = json!({"messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "one, ", "signature": "gemini:sig-g"},
                {"type": "tool_use", "id": "a", "name": "f", "input": {}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "two", "signature": ""},
                {"type": "tool_use", "id": "b", "name": "f", "input": {}}]}
        ]});
        let deepseek = OpenAiRequestOptions {
            reasoning_content_back: true,
            ..opts(false)
        };
        let got = translate_opts(&body, &deepseek);
        assert_eq!(got["messages"][1]["reasoning_content"], "one, two");
        assert_eq!(got["messages"].as_array().unwrap().len(), 2, "{got}");
        let gemini = OpenAiRequestOptions {
            thought_signature_stand_in: true,
            ..opts(false)
        };
        let calls = &translate_opts(&body, &gemini)["messages"][1]["tool_calls"];
        assert_eq!(
            calls[0]["extra_content"]["google"]["thought_signature"],
            "sig-g"
        );
        assert!(calls[1].get("extra_content").is_none(), "{calls}");
    }

    #[test]
    fn tool_results_split_across_user_turns_follow_the_calls_as_tool_messages() {
        // The text and the image of the first turn go after every result, where a
        // user message between the tool messages would be refused.
        let png = "iVBORw0KGgo=";
        let got = translate(json!({"messages": [
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "a", "name": "Read", "input": {}},
                {"type": "tool_use", "id": "b", "name": "Read", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "a", "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}}]},
                {"type": "text", "text": "<system-reminder>r</system-reminder>"}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "b", "content": "B"}]},
            {"role": "user", "content": "go on"}
        ]}));
        let roles: Vec<&str> = got["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["assistant", "tool", "tool", "user"], "{got}");
        assert_eq!(got["messages"][2]["tool_call_id"], "b");
        assert_eq!(
            got["messages"][3]["content"],
            json!([
                {"type": "text", "text": "Attached by tool call a:"},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{png}")}},
                {"type": "text", "text": "<system-reminder>r</system-reminder>"},
                {"type": "text", "text": "go on"}
            ])
        );
    }

    #[test]
    fn an_error_in_a_merged_turn_names_its_own_message() {
        let e = translate_err(json!({"messages": [
            {"role": "user", "content": "x"},
            {"role": "user", "content": [{"type": "text"}]}
        ]}));
        assert_eq!(e.param(), Some("messages[1].content[0].text"));
        let e = translate_err(json!({"messages": [
            {"role": "assistant", "content": "x"},
            {"role": "assistant", "content": 5}
        ]}));
        assert_eq!(e.param(), Some("messages[1].content"));
    }

    #[test]
    fn gemini_tool_calls_carry_the_thought_signature_stand_in_on_each_turns_first_call() {
        let body = json!({"max_tokens": 5, "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "a", "name": "f", "input": {}},
                {"type": "tool_use", "id": "b", "name": "f", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "a", "content": "1"},
                {"type": "tool_result", "tool_use_id": "b", "content": "2"}]}
        ]});
        let gemini = OpenAiRequestOptions {
            thought_signature_stand_in: true,
            ..opts(false)
        };
        let r = anthropic_to_openai_request(checked(&body), &gemini).unwrap();
        let got: Value = serde_json::from_slice(&r.body).unwrap();
        let calls = &got["messages"][1]["tool_calls"];
        assert_eq!(
            calls[0]["extra_content"],
            json!({"google": {"thought_signature": "skip_thought_signature_validator"}})
        );
        assert!(calls[1].get("extra_content").is_none());
        assert_eq!(calls[1]["id"], "b");
        let r = anthropic_to_openai_request(checked(&body), &opts(false)).unwrap();
        let got: Value = serde_json::from_slice(&r.body).unwrap();
        assert!(got["messages"][1]["tool_calls"][0]
            .get("extra_content")
            .is_none());
    }

    /// The thought signature Gemini gets for the first call of an assistant turn whose
    /// thinking blocks carry `signatures`.
    fn thought_signature_sent_for(signatures: &[&str]) -> Value {
        let mut content: Vec<Value> = signatures
            .iter()
            .map(|s| json!({"type": "thinking", "thinking": "", "signature": s}))
            .collect();
        content.push(json!({"type": "tool_use", "id": "a", "name": "f", "input": {}}));
        let body = json!({"max_tokens": 5, "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "content": "1"}]}
        ]});
        let gemini = OpenAiRequestOptions {
            thought_signature_stand_in: true,
            ..opts(false)
        };
        let r = anthropic_to_openai_request(checked(&body), &gemini).unwrap();
        let got: Value = serde_json::from_slice(&r.body).unwrap();
        got["messages"][1]["tool_calls"][0]["extra_content"]["google"]["thought_signature"].clone()
    }

    #[test]
    fn a_gemini_signature_the_gateway_carried_goes_back_to_gemini_as_it_was() {
        let carried = crate::translate::thought_signature::tagged("CiQBsig");
        assert_eq!(thought_signature_sent_for(&[&carried]), "CiQBsig");
        // After a thinking block Gemini streamed unsigned, as its reasoning.
        assert_eq!(thought_signature_sent_for(&["", &carried]), "CiQBsig");
    }

    #[test]
    fn a_claude_signature_is_not_sent_to_gemini() {
        // A turn Claude took with thinking, in a conversation gone on to Gemini.
        let claudes = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds";
        assert_eq!(
            thought_signature_sent_for(&[claudes]),
            THOUGHT_SIGNATURE_STAND_IN
        );
        // Nor one with no tag, which may be anyone's.
        assert_eq!(
            thought_signature_sent_for(&["CiQBsig"]),
            THOUGHT_SIGNATURE_STAND_IN
        );
    }

    #[test]
    fn a_tool_call_turn_without_thinking_gives_deepseek_an_empty_reasoning_content() {
        let body = json!({"max_tokens": 5, "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": [
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "tool_use", "id": "a", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "content": "1"}]},
            {"role": "assistant", "content": "done"}
        ]});
        let deepseek = OpenAiRequestOptions {
            reasoning_content_back: true,
            ..opts(false)
        };
        let r = anthropic_to_openai_request(checked(&body), &deepseek).unwrap();
        let got: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(got["messages"][1]["reasoning_content"], "");
        // A turn without calls needs none.
        assert!(got["messages"][3].get("reasoning_content").is_none());
        let r = anthropic_to_openai_request(checked(&body), &opts(false)).unwrap();
        let got: Value = serde_json::from_slice(&r.body).unwrap();
        assert!(got["messages"][1].get("reasoning_content").is_none());
    }

    #[test]
    fn reasoning_models_drop_non_default_sampling() {
        let body = json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 5,
            "temperature": 0.2, "top_p": 0.9});
        let fixed = OpenAiRequestOptions {
            default_sampling_only: true,
            ..opts(true)
        };
        let r = anthropic_to_openai_request(checked(&body), &fixed).unwrap();
        let got: Value = serde_json::from_slice(&r.body).unwrap();
        assert!(
            got.get("temperature").is_none() && got.get("top_p").is_none(),
            "{got}"
        );
        let body = json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 5,
            "temperature": 1, "top_p": 1.0});
        let r = anthropic_to_openai_request(checked(&body), &fixed).unwrap();
        let got: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            (got["temperature"].as_f64(), got["top_p"].as_f64()),
            (Some(1.0), Some(1.0))
        );
    }

    #[test]
    fn reasoning_models_get_no_stop_sequences() {
        let body = json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 5,
            "stop_sequences": ["END"]});
        let fixed = OpenAiRequestOptions {
            default_sampling_only: true,
            ..opts(true)
        };
        let r = anthropic_to_openai_request(checked(&body), &fixed).unwrap();
        let got: Value = serde_json::from_slice(&r.body).unwrap();
        assert!(got.get("stop").is_none(), "{got}");
        assert_eq!(translate_with(body, true)["stop"], json!(["END"]));
    }

    #[test]
    fn fields_without_a_chat_counterpart_are_not_sent() {
        let long_user = format!("{}é{}", "u".repeat(62), "tail");
        let got = translate(json!({"messages": [{"role": "user", "content": "x"}],
            "top_k": 40, "context_management": {"edits": [{"type": "clear_thinking_20251015"}]},
            "metadata": {"user_id": long_user, "trace": "t"},
            "thinking": {"type": "enabled", "budget_tokens": 1024}, "output_config": {"effort": "low"}}));
        let keys: Vec<&str> = got
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["messages", "model", "user"]);
        assert_eq!(got["user"], format!("{}ét", "u".repeat(62)));
        assert_eq!(got["user"].as_str().unwrap().chars().count(), 64);
    }

    #[test]
    fn max_tokens_takes_the_providers_name_and_the_models_ceiling() {
        let req = json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 32000});
        let mut o = opts(false);
        o.token_limit = TokenLimitField::MaxCompletionTokens;
        o.max_output_tokens = Some(16384);
        let r = anthropic_to_openai_request(checked(&req), &o).unwrap();
        let got: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(got["max_completion_tokens"], 16384);
        assert!(got.get("max_tokens").is_none());
        o.token_limit = TokenLimitField::MaxTokens;
        o.max_output_tokens = Some(64000);
        let r = anthropic_to_openai_request(checked(&req), &o).unwrap();
        let got: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(got["max_tokens"], 32000);
        assert!(got.get("max_completion_tokens").is_none());
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
        let req = json!({"messages": [{"role": "user", "content": "x"}], "thinking": {"type": "adaptive"}});
        assert_eq!(
            translate_with(req.clone(), true)["reasoning_effort"],
            "medium"
        );
        assert!(translate_with(req, false).get("reasoning_effort").is_none());
    }

    #[test]
    fn output_config_effort_wins_over_the_thinking_budget() {
        for (effort, expected) in [
            ("low", "low"),
            ("medium", "medium"),
            ("high", "high"),
            ("max", "high"),
        ] {
            let req = json!({"messages": [{"role": "user", "content": "x"}],
                "thinking": {"type": "enabled", "budget_tokens": 31999}, "output_config": {"effort": effort}});
            assert_eq!(
                translate_with(req.clone(), true)["reasoning_effort"],
                expected,
                "{effort}"
            );
            assert!(translate_with(req, false).get("reasoning_effort").is_none());
        }
        let req = json!({"messages": [{"role": "user", "content": "x"}],
            "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"}});
        assert_eq!(translate_with(req, true)["reasoning_effort"], "high");
    }

    #[test]
    fn output_config_format_becomes_a_json_schema_response_format() {
        let schema = json!({"type": "object", "properties": {"name": {"type": "string"}},
            "required": ["name"], "additionalProperties": false});
        // What the Anthropic SDKs send: Chat's required name is made up, strictness is not.
        let req = json!({"messages": [{"role": "user", "content": "x"}],
            "output_config": {"effort": "low", "format": {"type": "json_schema", "schema": schema}}});
        let got = translate_with(req, true);
        assert_eq!(
            got["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "response", "schema": schema}})
        );
        assert_eq!(got["reasoning_effort"], "low");
        // The beta's top-level member alike.
        let req = json!({"messages": [{"role": "user", "content": "x"}],
            "output_format": {"type": "json_schema", "schema": schema}});
        assert_eq!(
            translate(req)["response_format"]["json_schema"]["schema"],
            schema
        );
        // A Responses client's, through the hub, with its name and strictness.
        let req = json!({"messages": [{"role": "user", "content": "x"}],
            "output_config": {"format": {"type": "json_schema", "name": "verdict",
                "description": "d", "strict": true, "schema": schema}}});
        assert_eq!(
            translate(req)["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "verdict", "description": "d",
                "strict": true, "schema": schema}})
        );
        let req = json!({"messages": [{"role": "user", "content": "x"}],
            "output_config": {"format": {"type": "json_object"}}});
        assert_eq!(
            translate(req)["response_format"],
            json!({"type": "json_object"})
        );
        let req = json!({"messages": [{"role": "user", "content": "x"}],
            "output_config": {"effort": "high"}});
        assert!(translate(req).get("response_format").is_none());
    }

    #[test]
    fn an_output_format_without_a_schema_is_refused_by_name() {
        for (req, param) in [
            (
                json!({"output_config": {"format": {"type": "json_schema"}}}),
                "output_config.format.schema",
            ),
            (
                json!({"output_config": {"format": {"type": "yaml", "schema": {}}}}),
                "output_config.format.type",
            ),
            (
                json!({"output_format": {"type": "json_schema", "schema": []}}),
                "output_format.schema",
            ),
        ] {
            let mut req = req;
            req["messages"] = json!([{"role": "user", "content": "x"}]);
            assert_eq!(translate_err(req.clone()).param(), Some(param), "{req}");
        }
    }

    #[test]
    fn stream_requests_usage() {
        let body = json!({"messages": [{"role": "user", "content": "x"}], "stream": true});
        let r = anthropic_to_openai_request(checked(&body), &opts(false)).unwrap();
        assert!(r.stream);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["stream"], true);
        assert_eq!(v["stream_options"], json!({"include_usage": true}));
    }

    #[test]
    fn a_provider_reporting_usage_unasked_gets_no_stream_options() {
        let body = json!({"messages": [{"role": "user", "content": "x"}], "stream": true});
        let unasked = OpenAiRequestOptions {
            stream_usage: StreamUsage::Unasked,
            ..opts(false)
        };
        let r = anthropic_to_openai_request(checked(&body), &unasked).unwrap();
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["stream"], true);
        assert!(v.get("stream_options").is_none(), "{v}");
    }

    #[test]
    fn mcp_servers_are_unsupported() {
        let e = translate_err(json!({"messages": [{"role": "user", "content": "x"}],
            "mcp_servers": [{"type": "url", "url": "https://x", "name": "x"}]}));
        assert_eq!(e.param(), Some("mcp_servers"));
    }
}
