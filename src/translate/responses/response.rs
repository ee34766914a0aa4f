//! A complete Anthropic Messages answer → a Responses API `response` object.
//!
//! Output items follow the Messages content in order:
//!
//! - consecutive `text` blocks become ONE `message` item with ONE `output_text`
//!   part holding their joined text (Anthropic splits text into blocks around
//!   citations, which a Responses client has no use for as separate parts);
//!   empty text blocks add nothing, and blocks the Responses API cannot show
//!   (server tool calls and results) are skipped without ending the message;
//! - `tool_use` → a `function_call` item whose `arguments` are the input as
//!   compact JSON text; a flattened namespace tool is named as the client
//!   offered it (`namespace` and `name`);
//! - `thinking` → a `reasoning` item whose summary is the thinking text (an
//!   empty summary when there is none);
//! - `redacted_thinking` → a `reasoning` item with an empty summary, kept even
//!   without `encrypted_content` so that item positions do not depend on the
//!   `include` option and the client still sees that reasoning took place.
//!
//! With `include_encrypted_reasoning`, reasoning items carry the thinking's
//! signature (or the redacted data) as `encrypted_content` (see
//! [`ReasoningState`]).
//!
//! `stop_reason: "max_tokens"` (and `model_context_window_exceeded`) make the
//! response `incomplete` with `incomplete_details.reason: "max_output_tokens"`;
//! `refusal` (Claude's safety classifier stopped it, or a chat model's
//! `content_filter`) makes it `incomplete` with `"content_filter"`, as the
//! Responses API reports a filtered answer: its text was cut, not finished.
//! Every other stop reason is `completed`. Items themselves are always
//! `completed`.
//!
//! Item ids are derived from the response id and the item's output index, so
//! the stream translator ([`super::stream`]) names the same items the same way.
//! Both translators write items and the response object with the functions
//! here, which keeps their answers identical.

use super::failure::write_error;
use super::{ReasoningState, ResponsesOptions, ToolNames};
use crate::translate::anthropic_to_openai_response::AnthropicUsageIn;
use crate::translate::error::TranslateError;
use crate::translate::json_writer::{
    write_compact_as_str, write_key, write_str, write_u64, JsonString, JsonText,
};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;

/// Members a `response` object always has, written after the request's echo
/// when it does not contain them: they are the values the Responses API reports
/// for a request that did not set them.
const ECHO_DEFAULTS: [(&str, &str); 3] = [
    ("parallel_tool_calls", "true"),
    ("tool_choice", "\"auto\""),
    ("tools", "[]"),
];

/// What a `response` object says about how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    /// Still streaming.
    InProgress,
    /// Ended normally.
    Completed,
    /// Stopped before its end.
    Incomplete(IncompleteReason),
    /// Ended by an error: the stream broke off, or the provider reported one.
    Failed,
}

impl Status {
    /// The status of a finished answer with this Anthropic `stop_reason`.
    pub(super) fn for_stop_reason(stop_reason: Option<&str>) -> Self {
        match stop_reason {
            Some("max_tokens" | "model_context_window_exceeded") => {
                Self::Incomplete(IncompleteReason::MaxOutputTokens)
            }
            Some("refusal") => Self::Incomplete(IncompleteReason::ContentFilter),
            _ => Self::Completed,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Incomplete(_) => "incomplete",
            Self::Failed => "failed",
        }
    }

    /// The streaming event that ends a response with this status.
    pub(super) fn terminal_event(self) -> &'static str {
        match self {
            Self::Incomplete(_) => "response.incomplete",
            Self::Failed => "response.failed",
            Self::InProgress | Self::Completed => "response.completed",
        }
    }
}

/// Why a response stopped before its end (`incomplete_details.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IncompleteReason {
    /// At the output token limit (or the context window's end).
    MaxOutputTokens,
    /// Cut by a safety filter.
    ContentFilter,
}

impl IncompleteReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::MaxOutputTokens => "max_output_tokens",
            Self::ContentFilter => "content_filter",
        }
    }
}

/// Token counts in Responses terms.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Usage {
    /// Uncached input tokens.
    pub input: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read: u64,
    /// Input tokens written to the prompt cache.
    pub cache_creation: u64,
    /// Output tokens.
    pub output: u64,
}

impl Usage {
    /// Takes every counter `u` reports, keeping the others.
    pub(super) fn record(&mut self, u: &AnthropicUsageIn) {
        if let Some(n) = u.input_tokens {
            self.input = n;
        }
        if let Some(n) = u.cache_read_input_tokens {
            self.cache_read = n;
        }
        if let Some(n) = u.cache_creation_input_tokens {
            self.cache_creation = n;
        }
        if let Some(n) = u.output_tokens {
            self.output = n;
        }
    }

    /// Appends the `usage` object. The Responses API counts cache reads and
    /// writes as input tokens, as OpenAI does; Anthropic does not report
    /// reasoning tokens apart from other output.
    fn write(&self, out: &mut Vec<u8>) {
        let input = self
            .input
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_creation);
        out.extend_from_slice(b"{\"input_tokens\":");
        write_u64(out, input);
        out.extend_from_slice(b",\"input_tokens_details\":{\"cached_tokens\":");
        write_u64(out, self.cache_read);
        out.extend_from_slice(b"},\"output_tokens\":");
        write_u64(out, self.output);
        out.extend_from_slice(
            b",\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":",
        );
        write_u64(out, input.saturating_add(self.output));
        out.push(b'}');
    }
}

/// The parts of a `response` object fixed for the whole answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ResponseHead {
    /// `{"id":…,"object":"response","created_at":…,"status":"`.
    start: Vec<u8>,
    /// `,"model":…,` up to the output list.
    model: Vec<u8>,
    /// The echoed request members and defaults, each preceded by a comma.
    tail: Vec<u8>,
    /// The response id without its `resp_` prefix, for item ids.
    bare_id: String,
}

impl ResponseHead {
    /// Prepares the fixed parts from the answer's options.
    pub(super) fn new(opts: &ResponsesOptions) -> Self {
        let mut start = Vec::with_capacity(opts.id.len() + 64);
        start.extend_from_slice(b"{\"id\":");
        write_str(&mut start, &opts.id);
        start.extend_from_slice(b",\"object\":\"response\",\"created_at\":");
        write_u64(&mut start, opts.created_at);
        start.extend_from_slice(b",\"status\":\"");
        let mut model = Vec::with_capacity(opts.model.len() + 12);
        model.extend_from_slice(b",\"model\":");
        write_str(&mut model, &opts.model);
        Self {
            start,
            model,
            tail: echo_tail(&opts.echo),
            bare_id: opts
                .id
                .strip_prefix("resp_")
                .unwrap_or(&opts.id)
                .to_string(),
        }
    }

    /// The id of the item at `output_index`; `kind` is `msg`, `fc` or `rs`.
    pub(super) fn item_id(&self, kind: &str, output_index: usize) -> String {
        format!("{kind}_{}_{output_index}", self.bare_id)
    }

    /// Appends the `response` object. `output` is the items' JSON, separated
    /// by commas; `usage` is `null` while the answer is in progress.
    pub(super) fn write(
        &self,
        out: &mut Vec<u8>,
        status: Status,
        output: &[u8],
        usage: Option<&Usage>,
    ) {
        self.write_with_error(out, status, None, output, usage);
    }

    /// Appends the `response` object of an answer that failed with `error` (its
    /// `code` and `message`), holding the items finished before it.
    pub(super) fn write_failed(
        &self,
        out: &mut Vec<u8>,
        (code, message): (&str, &str),
        output: &[u8],
        usage: Option<&Usage>,
    ) {
        self.write_with_error(out, Status::Failed, Some((code, message)), output, usage);
    }

    fn write_with_error(
        &self,
        out: &mut Vec<u8>,
        status: Status,
        error: Option<(&str, &str)>,
        output: &[u8],
        usage: Option<&Usage>,
    ) {
        out.extend_from_slice(&self.start);
        out.extend_from_slice(status.as_str().as_bytes());
        out.extend_from_slice(b"\",\"error\":");
        match error {
            Some((code, message)) => write_error(out, code, message),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"incomplete_details\":");
        match status {
            Status::Incomplete(reason) => {
                out.extend_from_slice(b"{\"reason\":\"");
                out.extend_from_slice(reason.as_str().as_bytes());
                out.extend_from_slice(b"\"}");
            }
            _ => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(&self.model);
        out.extend_from_slice(b",\"output\":[");
        out.extend_from_slice(output);
        out.extend_from_slice(b"],\"usage\":");
        match usage {
            Some(u) => u.write(out),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(&self.tail);
        out.push(b'}');
    }
}

/// The request's echoed members, then a default for each member in
/// [`ECHO_DEFAULTS`] the echo lacks; every member starts with a comma.
fn echo_tail(echo: &str) -> Vec<u8> {
    let echo = echo.trim();
    let mut tail = Vec::with_capacity(echo.len() + 64);
    let present: HashMap<Cow<'_, str>, IgnoredAny> = if echo.is_empty() {
        HashMap::new()
    } else {
        tail.push(b',');
        tail.extend_from_slice(echo.as_bytes());
        // Only the echo's own top-level keys count, not keys nested in it
        // (a tool's schema may well have a `tools` property).
        serde_json::from_str(&format!("{{{echo}}}")).unwrap_or_default()
    };
    for (key, value) in ECHO_DEFAULTS {
        if !present.contains_key(key) {
            tail.push(b',');
            write_key(&mut tail, key);
            tail.extend_from_slice(value.as_bytes());
        }
    }
    tail
}

/// Appends `,` unless `list` is empty: items are collected comma-separated.
pub(super) fn item_separator(list: &mut Vec<u8>) {
    if !list.is_empty() {
        list.push(b',');
    }
}

/// Appends an `output_text` content part.
pub(super) fn write_output_text_part<T: JsonString + ?Sized>(out: &mut Vec<u8>, text: &T) {
    out.extend_from_slice(b"{\"type\":\"output_text\",\"text\":");
    text.write_json(out);
    out.extend_from_slice(b",\"annotations\":[],\"logprobs\":[]}");
}

/// Appends a `message` item: in progress with no content yet when `text` is
/// `None`, completed with one `output_text` part otherwise.
pub(super) fn write_message_item(out: &mut Vec<u8>, id: &str, text: Option<&JsonText>) {
    out.extend_from_slice(b"{\"id\":");
    write_str(out, id);
    out.extend_from_slice(b",\"type\":\"message\",\"status\":");
    match text {
        Some(text) => {
            out.extend_from_slice(b"\"completed\",\"role\":\"assistant\",\"content\":[");
            write_output_text_part(out, text);
            out.extend_from_slice(b"]}");
        }
        None => out.extend_from_slice(b"\"in_progress\",\"role\":\"assistant\",\"content\":[]}"),
    }
}

/// How a `function_call` item's `arguments` are given.
pub(super) enum Arguments<'a> {
    /// Already JSON text (streamed input): written as a string as it is.
    Text(&'a str),
    /// Streamed input collected as a [`JsonText`].
    Collected(&'a JsonText),
    /// A JSON value from a whole message, compacted into a string.
    Json(&'a str),
}

/// Appends a `function_call` item for the provider's tool call `call_id` to
/// tool `name`, split back into namespace and name when it was flattened.
/// `done` says whether the call is complete.
pub(super) fn write_function_call_item(
    out: &mut Vec<u8>,
    id: &str,
    done: bool,
    call_id: &str,
    name: &str,
    tool_names: &ToolNames,
    arguments: Arguments<'_>,
) {
    out.extend_from_slice(b"{\"id\":");
    write_str(out, id);
    out.extend_from_slice(b",\"type\":\"function_call\",\"status\":");
    out.extend_from_slice(if done {
        b"\"completed\""
    } else {
        b"\"in_progress\""
    });
    out.extend_from_slice(b",\"arguments\":");
    match arguments {
        Arguments::Text(text) => write_str(out, text),
        Arguments::Collected(text) => text.write_json(out),
        Arguments::Json(json) => write_compact_as_str(out, json),
    }
    out.extend_from_slice(b",\"call_id\":");
    write_str(out, call_id);
    let (namespace, name) = tool_names.split(name);
    out.extend_from_slice(b",\"name\":");
    write_str(out, name);
    if let Some(namespace) = namespace {
        out.extend_from_slice(b",\"namespace\":");
        write_str(out, namespace);
    }
    out.push(b'}');
}

/// Appends a `reasoning` item whose summary is `summary` (an empty list when
/// it is empty), with `encrypted_content` when given.
pub(super) fn write_reasoning_item<T: JsonString + ?Sized>(
    out: &mut Vec<u8>,
    id: &str,
    summary: &T,
    encrypted_content: Option<&str>,
) {
    out.extend_from_slice(b"{\"id\":");
    write_str(out, id);
    out.extend_from_slice(b",\"type\":\"reasoning\",\"summary\":[");
    if !summary.is_empty_text() {
        write_summary_part(out, summary);
    }
    out.push(b']');
    if let Some(content) = encrypted_content {
        out.extend_from_slice(b",\"encrypted_content\":");
        write_str(out, content);
    }
    out.push(b'}');
}

/// Appends a `summary_text` part.
pub(super) fn write_summary_part<T: JsonString + ?Sized>(out: &mut Vec<u8>, text: &T) {
    out.extend_from_slice(b"{\"type\":\"summary_text\",\"text\":");
    text.write_json(out);
    out.push(b'}');
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(
        rename = "type",
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Option<Vec<Block<'a>>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<AnthropicUsageIn>,
    #[serde(borrow, default)]
    error: Option<ErrorDetail<'a>>,
}

#[derive(Deserialize)]
struct ErrorDetail<'a> {
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    message: Option<Cow<'a, str>>,
}

/// An Anthropic content block, in a whole message or at a stream's
/// `content_block_start`; only the members the Responses items need.
#[derive(Deserialize)]
pub(super) struct Block<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: Cow<'a, str>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    pub(super) text: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    pub(super) thinking: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    pub(super) signature: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    pub(super) data: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    pub(super) id: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    pub(super) name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) input: Option<&'a RawValue>,
}

/// Builds the output list of a whole message.
struct OutputBuilder<'o> {
    head: &'o ResponseHead,
    opts: &'o ResponsesOptions,
    items: Vec<u8>,
    count: usize,
    /// The joined text of the message item being collected.
    text: Option<JsonText>,
}

impl OutputBuilder<'_> {
    /// Starts the next item; returns its id.
    fn next_item(&mut self, kind: &str) -> String {
        item_separator(&mut self.items);
        let id = self.head.item_id(kind, self.count);
        self.count += 1;
        id
    }

    /// Writes the collected text as a message item.
    fn flush_text(&mut self) {
        if let Some(text) = self.text.take() {
            let id = self.next_item("msg");
            write_message_item(&mut self.items, &id, Some(&text));
        }
    }

    fn push(&mut self, block: Block<'_>) {
        match block.kind.as_ref() {
            "text" => {
                if let Some(t) = block.text.as_deref().filter(|t| !t.is_empty()) {
                    self.text.get_or_insert_with(JsonText::default).push(t);
                }
            }
            "tool_use" => {
                self.flush_text();
                let id = self.next_item("fc");
                write_function_call_item(
                    &mut self.items,
                    &id,
                    true,
                    block.id.as_deref().unwrap_or(""),
                    block.name.as_deref().unwrap_or(""),
                    &self.opts.tool_names,
                    Arguments::Json(block.input.map_or("{}", RawValue::get)),
                );
            }
            "thinking" => {
                self.flush_text();
                let thinking = block.thinking.unwrap_or_default();
                let encrypted = self.opts.include_encrypted_reasoning.then(|| {
                    ReasoningState::Thinking {
                        thinking: thinking.to_string(),
                        signature: block.signature.unwrap_or_default().into_owned(),
                    }
                    .encode()
                });
                let id = self.next_item("rs");
                write_reasoning_item(&mut self.items, &id, &*thinking, encrypted.as_deref());
            }
            "redacted_thinking" => {
                self.flush_text();
                let encrypted = self.opts.include_encrypted_reasoning.then(|| {
                    ReasoningState::Redacted {
                        redacted: block.data.unwrap_or_default().into_owned(),
                    }
                    .encode()
                });
                let id = self.next_item("rs");
                write_reasoning_item(&mut self.items, &id, "", encrypted.as_deref());
            }
            // Server tool calls and their results run at the provider; a
            // Responses client gets only what Claude wrote about them.
            _ => {}
        }
    }
}

/// Translates a complete Anthropic Messages answer into a Responses API
/// `response` object (JSON bytes), described by `opts`.
///
/// The members the answer fills in come first, then `opts.echo`, then
/// `"parallel_tool_calls": true`, `"tool_choice": "auto"` and `"tools": []`
/// for those of them the echo does not contain.
///
/// Fails with [`TranslateError::UpstreamResponse`] when `body` is not a
/// Messages answer (not JSON, an error body, or no `content`).
pub fn anthropic_to_responses_response(
    body: &[u8],
    opts: &ResponsesOptions,
) -> Result<Vec<u8>, TranslateError> {
    anthropic_to_responses_response_and_usage(body, opts).map(|(body, _)| body)
}

/// [`anthropic_to_responses_response`], with the usage counters the message carried
/// (read on the way, so that nobody parses the message again for them).
pub(crate) fn anthropic_to_responses_response_and_usage(
    body: &[u8],
    opts: &ResponsesOptions,
) -> Result<(Vec<u8>, Option<AnthropicUsageIn>), TranslateError> {
    let msg: Message = serde_json::from_slice(body)
        .map_err(|e| TranslateError::UpstreamResponse(format!("invalid Anthropic message: {e}")))?;
    if msg.kind.as_deref() == Some("error") || msg.error.is_some() {
        let detail = msg
            .error
            .and_then(|e| e.message)
            .unwrap_or(Cow::Borrowed("no message"));
        return Err(TranslateError::UpstreamResponse(format!(
            "Anthropic returned an error: {detail}"
        )));
    }
    if let Some(kind) = msg.kind.as_deref().filter(|k| *k != "message") {
        return Err(TranslateError::UpstreamResponse(format!(
            "expected an Anthropic message, got type `{kind}`"
        )));
    }
    let blocks = msg.content.ok_or_else(|| {
        TranslateError::UpstreamResponse("Anthropic message has no `content`".into())
    })?;

    let head = ResponseHead::new(opts);
    let mut output = OutputBuilder {
        head: &head,
        opts,
        items: Vec::with_capacity(body.len()),
        count: 0,
        text: None,
    };
    for block in blocks {
        output.push(block);
    }
    output.flush_text();

    let mut usage = Usage::default();
    if let Some(u) = &msg.usage {
        usage.record(u);
    }
    let status = Status::for_stop_reason(msg.stop_reason.as_deref());
    let mut out = Vec::with_capacity(output.items.len() + 512 + opts.echo.len());
    head.write(&mut out, status, &output.items, Some(&usage));
    Ok((out, msg.usage))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::sync::Arc;

    fn opts() -> ResponsesOptions {
        ResponsesOptions {
            id: "resp_abc123".into(),
            model: "gpt-5-codex".into(),
            created_at: 1_700_000_000,
            tool_names: Arc::new(ToolNames::default()),
            include_encrypted_reasoning: false,
            echo: String::new(),
        }
    }

    fn translate(body: &str, opts: &ResponsesOptions) -> Value {
        let out = anthropic_to_responses_response(body.as_bytes(), opts).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn text_answer_becomes_a_completed_message_with_the_envelope() {
        let r = translate(fixture!("anthropic/messages.json"), &opts());
        assert_eq!(
            r,
            json!({
                "id": "resp_abc123", "object": "response", "created_at": 1_700_000_000,
                "status": "completed", "error": null, "incomplete_details": null,
                "model": "gpt-5-codex",
                "output": [{
                    "id": "msg_abc123_0", "type": "message", "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "Hello World",
                                 "annotations": [], "logprobs": []}]
                }],
                "usage": {"input_tokens": 14, "input_tokens_details": {"cached_tokens": 0},
                          "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0},
                          "total_tokens": 19},
                "parallel_tool_calls": true, "tool_choice": "auto", "tools": []
            })
        );
    }

    #[test]
    fn echo_members_follow_and_replace_only_the_defaults_they_contain() {
        let mut o = opts();
        o.echo = r#""instructions":"be brief","tools":[{"type":"function","name":"f","parameters":{"properties":{"tool_choice":{}}}}],"store":false"#.into();
        let out =
            anthropic_to_responses_response(fixture!("anthropic/messages.json").as_bytes(), &o)
                .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with(&format!(
            ",{},\"parallel_tool_calls\":true,\"tool_choice\":\"auto\"}}",
            o.echo
        )));
        let r: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(r["instructions"], "be brief");
        assert_eq!(r["tools"][0]["name"], "f");
        assert_eq!(r["store"], false);
    }

    #[test]
    fn tool_use_becomes_a_function_call_after_the_text_message() {
        let r = translate(fixture!("anthropic/messages_with_tools.json"), &opts());
        assert_eq!(r["status"], "completed");
        assert_eq!(r["output"][0]["type"], "message");
        assert_eq!(
            r["output"][0]["content"][0]["text"],
            "I'll check the current weather in Paris for you."
        );
        assert_eq!(
            r["output"][1],
            json!({"id": "fc_abc123_1", "type": "function_call", "status": "completed",
                   "arguments": "{\"location\":\"Paris\"}",
                   "call_id": "toolu_01Dq95J3WcnLmvSvBpAuaXwi", "name": "get_weather"})
        );
        assert_eq!(r["usage"]["total_tokens"], 445);
    }

    #[test]
    fn flattened_namespace_tool_call_is_named_with_its_namespace() {
        let mut names = ToolNames::default();
        names.flatten("multi_agent_v1", "spawn_agent");
        let mut o = opts();
        o.tool_names = Arc::new(names);
        let body = r#"{"type":"message","content":[
            {"type":"tool_use","id":"toolu_1","name":"multi_agent_v1__spawn_agent","input":{ "task" : "x y" }},
            {"type":"tool_use","id":"toolu_2","name":"exec_command"}],
            "stop_reason":"tool_use","usage":{"input_tokens":1,"output_tokens":2}}"#;
        let r = translate(body, &o);
        assert_eq!(r["output"][0]["name"], "spawn_agent");
        assert_eq!(r["output"][0]["namespace"], "multi_agent_v1");
        assert_eq!(r["output"][0]["arguments"], "{\"task\":\"x y\"}");
        assert_eq!(r["output"][1]["name"], "exec_command");
        assert!(r["output"][1].get("namespace").is_none());
        assert_eq!(r["output"][1]["arguments"], "{}");
    }

    #[test]
    fn thinking_becomes_a_reasoning_summary_without_state_unless_included() {
        let body = fixture!("anthropic/messages_extended_thinking.json");
        let r = translate(body, &opts());
        let reasoning = &r["output"][0];
        assert_eq!(reasoning["id"], "rs_abc123_0");
        assert_eq!(reasoning["type"], "reasoning");
        let thinking = reasoning["summary"][0]["text"].as_str().unwrap();
        assert!(thinking.starts_with("I need to solve for x"));
        assert_eq!(reasoning["summary"][0]["type"], "summary_text");
        assert!(reasoning.get("encrypted_content").is_none());
        assert_eq!(r["output"][1]["id"], "msg_abc123_1");

        let mut o = opts();
        o.include_encrypted_reasoning = true;
        let r = translate(body, &o);
        let content = r["output"][0]["encrypted_content"].as_str().unwrap();
        match ReasoningState::decode(content) {
            Some(ReasoningState::Thinking {
                thinking: t,
                signature,
            }) => {
                assert_eq!(t, thinking);
                assert!(signature.starts_with("EoQDCkYICxgCKkD"));
            }
            other => panic!("unexpected state {other:?}"),
        }
    }

    #[test]
    fn redacted_thinking_is_a_reasoning_item_with_empty_summary() {
        let body = r#"{"type":"message","content":[
            {"type":"redacted_thinking","data":"EmwKAhgBEgy3va3pzix"},
            {"type":"thinking","thinking":"","signature":"sig"},
            {"type":"text","text":"ok"}],"stop_reason":"end_turn","usage":{}}"#;
        let r = translate(body, &opts());
        assert_eq!(
            r["output"][0],
            json!({"id": "rs_abc123_0", "type": "reasoning", "summary": []})
        );
        assert_eq!(r["output"][1]["summary"], json!([]));
        let mut o = opts();
        o.include_encrypted_reasoning = true;
        let r = translate(body, &o);
        let content = r["output"][0]["encrypted_content"].as_str().unwrap();
        assert_eq!(
            ReasoningState::decode(content),
            Some(ReasoningState::Redacted {
                redacted: "EmwKAhgBEgy3va3pzix".into()
            })
        );
    }

    #[test]
    fn consecutive_text_blocks_join_into_one_message_and_server_blocks_are_skipped() {
        let body = r#"{"type":"message","content":[
            {"type":"text","text":"a"},
            {"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{}},
            {"type":"text","text":""},
            {"type":"text","text":"b","citations":[]},
            {"type":"tool_use","id":"t","name":"f","input":{}},
            {"type":"text","text":"c"}],"stop_reason":"end_turn"}"#;
        let r = translate(body, &opts());
        let output = r["output"].as_array().unwrap();
        assert_eq!(output.len(), 3);
        assert_eq!(output[0]["content"][0]["text"], "ab");
        assert_eq!(output[1]["id"], "fc_abc123_1");
        assert_eq!(output[2]["id"], "msg_abc123_2");
        assert_eq!(output[2]["content"][0]["text"], "c");
    }

    #[test]
    fn max_tokens_makes_the_response_incomplete() {
        let body = r#"{"type":"message","content":[{"type":"text","text":"1, 2,"}],
            "stop_reason":"max_tokens","usage":{"input_tokens":3,"output_tokens":4}}"#;
        let r = translate(body, &opts());
        assert_eq!(r["status"], "incomplete");
        assert_eq!(
            r["incomplete_details"],
            json!({"reason": "max_output_tokens"})
        );
        for reason in ["end_turn", "tool_use", "stop_sequence", "pause_turn"] {
            let body = body.replace("max_tokens", reason);
            let r = translate(&body, &opts());
            assert_eq!(r["status"], "completed", "{reason}");
            assert_eq!(r["incomplete_details"], Value::Null);
        }
    }

    #[test]
    fn a_filtered_answer_is_incomplete_for_its_content_filter() {
        // Claude's safety classifier stops it with `refusal`; a chat model's
        // `content_filter` reaches this translator as the same stop reason.
        let body = r#"{"type":"message","content":[{"type":"text","text":"Here is"}],
            "stop_reason":"refusal","usage":{"input_tokens":3,"output_tokens":2}}"#;
        let r = translate(body, &opts());
        assert_eq!(r["status"], "incomplete");
        assert_eq!(r["incomplete_details"], json!({"reason": "content_filter"}));
        assert_eq!(r["output"][0]["content"][0]["text"], "Here is");
    }

    #[test]
    fn usage_counts_cache_reads_and_writes_as_input() {
        let body = r#"{"type":"message","content":[],"stop_reason":"end_turn",
            "usage":{"input_tokens":10,"cache_read_input_tokens":100,
                     "cache_creation_input_tokens":20,"output_tokens":7}}"#;
        let r = translate(body, &opts());
        assert_eq!(r["output"], json!([]));
        assert_eq!(
            r["usage"],
            json!({"input_tokens": 130, "input_tokens_details": {"cached_tokens": 100},
                   "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 0},
                   "total_tokens": 137})
        );
    }

    #[test]
    fn bodies_that_are_not_messages_are_upstream_errors() {
        for body in [
            "not json",
            "[]",
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            r#"{"type":"message","role":"assistant"}"#,
            r#"{"type":"completion","content":[]}"#,
        ] {
            let err = anthropic_to_responses_response(body.as_bytes(), &opts()).unwrap_err();
            assert!(
                matches!(err, TranslateError::UpstreamResponse(_)),
                "{body}: {err:?}"
            );
        }
    }

    #[test]
    fn every_recorded_answer_translates_to_valid_json() {
        for body in [
            fixture!("anthropic/messages.json"),
            fixture!("anthropic/messages_extended_thinking.json"),
            fixture!("anthropic/messages_multi_turn.json"),
            fixture!("anthropic/messages_multimodal.json"),
            fixture!("anthropic/messages_with_params.json"),
            fixture!("anthropic/messages_with_tools.json"),
        ] {
            let r = translate(body, &opts());
            assert_eq!(r["object"], "response");
            assert!(!r["output"].as_array().unwrap().is_empty());
        }
    }
}
