//! Anthropic Messages stream → OpenAI `chat.completion.chunk` stream.
//!
//! Each Anthropic event is translated as soon as it is complete; only an
//! unfinished event is held between pushes. A stream ends either with
//! `data: [DONE]` (after `message_stop`, or an upstream end after the
//! `message_delta` that gives the stop reason) or with an OpenAI error chunk (after
//! an upstream `error` event, a malformed event, or an upstream end before the
//! stop reason), never both. Each `ping` (or comment) of the provider becomes a
//! `: keep-alive` comment, so that a hop with an idle timeout sees the stream alive.

use super::anthropic_text_delta::{plain_text_delta, PlainTextDelta};
use super::anthropic_to_openai_error::{openai_error_type_for_anthropic_type, OpenAiErrorBody};
use super::anthropic_to_openai_response::{
    openai_completion_id, openai_finish_reason, AnthropicUsageIn, ContentBlock, OpenAiUsageOut,
};
use super::json_writer::{write_str, write_u64};
use super::sse::{write_json_event, PingFilter, SseError, SseEventRef, KEEP_ALIVE_COMMENT};
use super::sse_driver::{unreadable_message, EventHandler, Phase, SseDriver};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Settings for [`AnthropicToOpenAiStream`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamOptions {
    /// The model name the client asked for, returned as `model`.
    pub model: String,
    /// Unix time for `created`, passed in so translation stays pure.
    pub created: u64,
    /// Emit a final usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
}

/// Incremental translator from Anthropic SSE bytes to OpenAI SSE bytes.
#[derive(Debug)]
pub struct AnthropicToOpenAiStream {
    inner: SseDriver<State>,
}

#[derive(Debug)]
struct State {
    opts: StreamOptions,
    id: String,
    /// `data: ` and the serialized chunk up to the delta, identical for
    /// every chunk of the stream; built once the id is known.
    prefix: Vec<u8>,
    role_sent: bool,
    finish_sent: bool,
    /// Anthropic block index → the 0-based position among tool calls of the
    /// `tool_use` block started at it, for routing `input_json_delta`s. Hashed, not
    /// an index-addressed table (a bogus huge index cannot make it allocate) nor a
    /// list (a stream of many blocks would be read once per delta).
    tool_blocks: crate::lookup::LookupMap<u64, u32>,
    /// Tool blocks that have streamed no input yet: a tool without parameters gets
    /// only an empty `partial_json`, and its call then says `{}` at its end, as
    /// OpenAI's do (clients parse the arguments and drop a call they cannot).
    tools_without_input: crate::lookup::LookupSet<u64>,
    tool_count: u32,
    input_tokens: u64,
    cache_read: u64,
    cache_creation: u64,
    output_tokens: u64,
    phase: Phase,
    /// Which of the stream's pings reach the client.
    pings: PingFilter,
}

const TRUNCATED: &str =
    "the provider's stream ended before the response was complete; retry the request";
const MALFORMED: &str = "the provider sent a malformed stream event; retry the request";

const KNOWN_EVENTS: [&str; 8] = [
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "ping",
    "error",
];

impl AnthropicToOpenAiStream {
    /// Creates a translator for one response stream.
    pub fn new(opts: StreamOptions) -> Self {
        Self {
            inner: SseDriver::new(State {
                opts,
                id: String::new(),
                prefix: Vec::new(),
                role_sent: false,
                finish_sent: false,
                tool_blocks: crate::lookup::LookupMap::default(),
                tools_without_input: Default::default(),
                tool_count: 0,
                input_tokens: 0,
                cache_read: 0,
                cache_creation: 0,
                output_tokens: 0,
                phase: Phase::Streaming,
                pings: PingFilter::default(),
            }),
        }
    }

    /// The same, for a stream Anthropic sends itself: its first ping is left out
    /// ([`PingFilter::anthropics`]).
    pub fn anthropic_upstream(mut self) -> Self {
        self.inner.state.pings = PingFilter::anthropics();
        self
    }

    /// Translates a chunk of upstream bytes, appending OpenAI SSE bytes to
    /// `out`. Input after the end of the stream or an error is ignored.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        self.inner.push(chunk, out);
    }

    /// Signals the end of upstream input. Emits an error chunk when the
    /// stream was cut short before its stop reason, the end of the stream
    /// (usage chunk if asked for, `[DONE]`) when only `message_stop` is missing;
    /// emits nothing after `[DONE]` or an error.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.inner.finish(out);
    }

    /// True once an error chunk has been emitted; the stream must then be
    /// closed without `[DONE]`.
    pub fn is_failed(&self) -> bool {
        self.inner.phase() == Phase::Failed
    }

    /// True once `[DONE]` has been emitted.
    pub fn is_done(&self) -> bool {
        self.inner.phase() == Phase::Done
    }
}

impl EventHandler for State {
    fn phase(&self) -> Phase {
        self.phase
    }

    fn handle(&mut self, ev: SseEventRef<'_>, out: &mut Vec<u8>) {
        State::handle(self, ev, out);
    }

    fn keep_alive(&mut self, out: &mut Vec<u8>) {
        if self.phase == Phase::Streaming {
            out.extend_from_slice(KEEP_ALIVE_COMMENT);
        }
    }

    fn end_of_input(&mut self, out: &mut Vec<u8>) {
        // A provider that said why it stopped but dropped its message_stop still
        // finished: the answer is whole, and an OpenAI SDK raises on a stream that
        // ends in an error chunk.
        if self.finish_sent {
            self.on_message_stop(out);
        } else {
            self.fail(out, "provider_error", TRUNCATED);
        }
    }

    fn unreadable(&mut self, out: &mut Vec<u8>, error: SseError) {
        self.fail(out, "provider_error", &unreadable_message(error));
    }
}

#[derive(Deserialize)]
struct TypeOnly<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

#[derive(Deserialize)]
struct MessageStart<'a> {
    #[serde(borrow)]
    message: StartMessage<'a>,
}

#[derive(Deserialize)]
struct StartMessage<'a> {
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<AnthropicUsageIn>,
}

#[derive(Deserialize)]
struct BlockStart<'a> {
    index: u64,
    #[serde(borrow)]
    content_block: ContentBlock<'a>,
}

#[derive(Deserialize)]
struct BlockDelta<'a> {
    index: u64,
    #[serde(borrow)]
    delta: Delta<'a>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    text: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    thinking: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    partial_json: Option<Cow<'a, str>>,
}

impl<'a> BlockDelta<'a> {
    /// The delta of a text or thinking event read without serde.
    fn plain(d: PlainTextDelta<'a>) -> Self {
        let text = Some(Cow::Borrowed(d.text));
        let (kind, text, thinking) = if d.thinking {
            ("thinking_delta", None, text)
        } else {
            ("text_delta", text, None)
        };
        Self {
            index: d.index,
            delta: Delta {
                kind: Cow::Borrowed(kind),
                text,
                thinking,
                partial_json: None,
            },
        }
    }
}

#[derive(Deserialize)]
struct MessageDelta<'a> {
    #[serde(borrow)]
    delta: MessageDeltaBody<'a>,
    #[serde(default)]
    usage: Option<AnthropicUsageIn>,
}

#[derive(Deserialize)]
struct MessageDeltaBody<'a> {
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    stop_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ErrorEvent<'a> {
    #[serde(borrow)]
    error: ErrorDetail<'a>,
}

#[derive(Deserialize)]
struct ErrorDetail<'a> {
    #[serde(
        rename = "type",
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    kind: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    message: Option<Cow<'a, str>>,
}

/// The final usage chunk, which has no choices.
#[derive(Serialize)]
struct UsageChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [(); 0],
    usage: OpenAiUsageOut,
}

/// A chunk's `delta`; absent members are left out. Written by hand, as
/// every chunk of a stream has one.
#[derive(Default)]
struct DeltaOut<'a> {
    role: Option<&'static str>,
    content: Option<&'a str>,
    reasoning_content: Option<&'a str>,
    tool_calls: Option<[ToolCallDelta<'a>; 1]>,
}

struct ToolCallDelta<'a> {
    index: u32,
    id: Option<&'a str>,
    kind: Option<&'static str>,
    function: FunctionDelta<'a>,
}

struct FunctionDelta<'a> {
    name: Option<&'a str>,
    arguments: &'a str,
}

impl DeltaOut<'_> {
    /// Appends the delta as a JSON object, members in declaration order.
    fn write(&self, out: &mut Vec<u8>) {
        let mut members = Members::open(out);
        if let Some(role) = self.role {
            write_str(members.next("role"), role);
        }
        if let Some(content) = self.content {
            write_str(members.next("content"), content);
        }
        if let Some(reasoning) = self.reasoning_content {
            write_str(members.next("reasoning_content"), reasoning);
        }
        if let Some([call]) = &self.tool_calls {
            let out = members.next("tool_calls");
            out.push(b'[');
            call.write(out);
            out.push(b']');
        }
        members.close();
    }
}

impl ToolCallDelta<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        let mut members = Members::open(out);
        write_u64(members.next("index"), u64::from(self.index));
        if let Some(id) = self.id {
            write_str(members.next("id"), id);
        }
        if let Some(kind) = self.kind {
            write_str(members.next("type"), kind);
        }
        let out = members.next("function");
        let mut function = Members::open(out);
        if let Some(name) = self.function.name {
            write_str(function.next("name"), name);
        }
        write_str(function.next("arguments"), self.function.arguments);
        function.close();
        members.close();
    }
}

/// A JSON object being written member by member, commas between them.
struct Members<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> Members<'o> {
    fn open(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    /// Writes the next member's key; the caller writes its value.
    fn next(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        write_str(self.out, key);
        self.out.push(b':');
        self.out
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

impl State {
    fn handle(&mut self, ev: SseEventRef<'_>, out: &mut Vec<u8>) {
        let data = ev.data;
        let owned_kind;
        // The event name saves a parse; without a known one (some proxies
        // drop or rename it) the `type` member decides.
        let kind = match ev.event {
            Some(name) if KNOWN_EVENTS.contains(&name) => name,
            name => match serde_json::from_str::<TypeOnly>(data) {
                Ok(t) => {
                    owned_kind = t.kind;
                    owned_kind.as_ref()
                }
                // An unknown named event may carry anything; skip it.
                Err(_) if name.is_some() => return,
                Err(_) => return self.fail(out, "provider_error", MALFORMED),
            },
        };
        let result = match kind {
            "message_start" => self.on_message_start(data, out),
            "content_block_start" => self.on_block_start(data, out),
            "content_block_delta" => self.on_block_delta(data, out),
            "content_block_stop" => self.on_block_stop(data, out),
            "message_delta" => self.on_message_delta(data, out),
            "message_stop" => {
                self.on_message_stop(out);
                Ok(())
            }
            "error" => {
                self.on_error(data, out);
                Ok(())
            }
            "ping" => {
                if self.pings.passes() {
                    self.keep_alive(out);
                }
                Ok(())
            }
            // Future event types carry nothing an OpenAI client needs.
            _ => Ok(()),
        };
        if result.is_err() {
            self.fail(out, "provider_error", MALFORMED);
        }
    }

    fn ensure_id(&mut self) {
        if self.id.is_empty() {
            self.set_id(super::generated_id("chatcmpl-"));
        }
    }

    fn set_id(&mut self, id: String) {
        self.id = id;
        self.prefix.clear();
    }

    /// Builds the per-stream chunk prefix: the members every chunk starts
    /// with, then the choice up to its delta.
    fn ensure_prefix(&mut self) {
        if !self.prefix.is_empty() {
            return;
        }
        self.ensure_id();
        let prefix = &mut self.prefix;
        prefix.extend_from_slice(b"data: {\"id\":");
        write_str(prefix, &self.id);
        prefix.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
        write_u64(prefix, self.opts.created);
        prefix.extend_from_slice(b",\"model\":");
        write_str(prefix, &self.opts.model);
        prefix.extend_from_slice(b",\"choices\":[{\"index\":0,\"delta\":");
    }

    fn on_message_start(&mut self, data: &str, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let ev: MessageStart = serde_json::from_str(data)?;
        if let Some(id) = ev.message.id.as_deref().filter(|id| !id.is_empty()) {
            self.set_id(openai_completion_id(id));
        }
        if let Some(u) = ev.message.usage {
            self.record_usage(&u);
        }
        self.emit(
            out,
            DeltaOut {
                content: Some(""),
                ..DeltaOut::default()
            },
            None,
        );
        Ok(())
    }

    fn on_block_start(&mut self, data: &str, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let ev: BlockStart = serde_json::from_str(data)?;
        let block = ev.content_block;
        match block.kind.as_ref() {
            "text" => {
                self.tool_blocks.remove(&ev.index);
                if let Some(t) = block.text.as_deref().filter(|t| !t.is_empty()) {
                    self.emit_content(out, t);
                }
            }
            "thinking" => {
                self.tool_blocks.remove(&ev.index);
                if let Some(t) = block.thinking.as_deref().filter(|t| !t.is_empty()) {
                    self.emit_reasoning(out, t);
                }
            }
            "tool_use" => {
                let k = self.tool_count;
                self.tool_count = self.tool_count.saturating_add(1);
                self.tool_blocks.insert(ev.index, k);
                self.tools_without_input.insert(ev.index);
                let delta = DeltaOut {
                    tool_calls: Some([ToolCallDelta {
                        index: k,
                        id: Some(block.id.as_deref().unwrap_or("")),
                        kind: Some("function"),
                        function: FunctionDelta {
                            name: Some(block.name.as_deref().unwrap_or("")),
                            arguments: "",
                        },
                    }]),
                    ..DeltaOut::default()
                };
                self.emit(out, delta, None);
            }
            // Server tools and redacted thinking have no OpenAI equivalent.
            _ => {
                self.tool_blocks.remove(&ev.index);
            }
        }
        Ok(())
    }

    /// A tool block ending without input: its call's arguments are `{}`.
    fn on_block_stop(&mut self, data: &str, out: &mut Vec<u8>) -> serde_json::Result<()> {
        #[derive(Deserialize)]
        struct BlockStop {
            index: u64,
        }
        let ev: BlockStop = serde_json::from_str(data)?;
        if !self.tools_without_input.remove(&ev.index) {
            return Ok(());
        }
        if let Some(&k) = self.tool_blocks.get(&ev.index) {
            self.emit_arguments(out, k, "{}");
        }
        Ok(())
    }

    /// A piece of tool call `k`'s arguments.
    fn emit_arguments(&mut self, out: &mut Vec<u8>, k: u32, arguments: &str) {
        let delta = DeltaOut {
            tool_calls: Some([ToolCallDelta {
                index: k,
                id: None,
                kind: None,
                function: FunctionDelta {
                    name: None,
                    arguments,
                },
            }]),
            ..DeltaOut::default()
        };
        self.emit(out, delta, None);
    }

    fn on_block_delta(&mut self, data: &str, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let ev = match plain_text_delta(data) {
            Some(d) => BlockDelta::plain(d),
            None => serde_json::from_str(data)?,
        };
        let d = ev.delta;
        match d.kind.as_ref() {
            "text_delta" => {
                if let Some(t) = d.text.as_deref().filter(|t| !t.is_empty()) {
                    self.emit_content(out, t);
                }
            }
            "thinking_delta" => {
                if let Some(t) = d.thinking.as_deref().filter(|t| !t.is_empty()) {
                    self.emit_reasoning(out, t);
                }
            }
            "input_json_delta" => {
                let tool = self.tool_blocks.get(&ev.index).copied();
                let json = d.partial_json.as_deref().unwrap_or("");
                if let (Some(k), false) = (tool, json.is_empty()) {
                    self.tools_without_input.remove(&ev.index);
                    self.emit_arguments(out, k, json);
                }
            }
            // signature_delta (Anthropic-only proof of thinking) and
            // citations_delta have no OpenAI field.
            _ => {}
        }
        Ok(())
    }

    fn on_message_delta(&mut self, data: &str, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let ev: MessageDelta = serde_json::from_str(data)?;
        if let Some(u) = ev.usage {
            self.record_usage(&u);
        }
        let finish = openai_finish_reason(ev.delta.stop_reason.as_deref());
        self.emit(out, DeltaOut::default(), Some(finish));
        self.finish_sent = true;
        Ok(())
    }

    fn on_message_stop(&mut self, out: &mut Vec<u8>) {
        if !self.finish_sent {
            self.emit(out, DeltaOut::default(), Some("stop"));
        }
        if self.opts.include_usage && self.phase == Phase::Streaming {
            let usage = OpenAiUsageOut::from_parts(
                self.input_tokens,
                self.cache_read,
                self.cache_creation,
                self.output_tokens,
            );
            self.ensure_id();
            let chunk = UsageChunk {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.opts.created,
                model: &self.opts.model,
                choices: [],
                usage,
            };
            if write_json_event(out, None, &chunk).is_err() {
                return self.fail(out, "provider_error", MALFORMED);
            }
        }
        if self.phase == Phase::Streaming {
            out.extend_from_slice(b"data: [DONE]\n\n");
            self.phase = Phase::Done;
        }
    }

    fn on_error(&mut self, data: &str, out: &mut Vec<u8>) {
        let parsed = serde_json::from_str::<ErrorEvent>(data).ok();
        let detail = parsed.as_ref().map(|e| &e.error);
        let kind = detail
            .and_then(|d| d.kind.as_deref())
            .and_then(openai_error_type_for_anthropic_type)
            .unwrap_or("provider_error");
        let message = detail
            .and_then(|d| d.message.as_deref())
            .filter(|m| !m.is_empty())
            .unwrap_or("the provider reported an error mid-stream; retry the request");
        self.fail(out, kind, message);
    }

    fn record_usage(&mut self, u: &AnthropicUsageIn) {
        if let Some(n) = u.input_tokens {
            self.input_tokens = n;
        }
        if let Some(n) = u.cache_read_input_tokens {
            self.cache_read = n;
        }
        if let Some(n) = u.cache_creation_input_tokens {
            self.cache_creation = n;
        }
        if let Some(n) = u.output_tokens {
            self.output_tokens = n;
        }
    }

    fn emit_content(&mut self, out: &mut Vec<u8>, text: &str) {
        let delta = DeltaOut {
            content: Some(text),
            ..DeltaOut::default()
        };
        self.emit(out, delta, None);
    }

    fn emit_reasoning(&mut self, out: &mut Vec<u8>, text: &str) {
        let delta = DeltaOut {
            reasoning_content: Some(text),
            ..DeltaOut::default()
        };
        self.emit(out, delta, None);
    }

    /// Writes one chunk with a single choice. The first chunk of the stream
    /// carries the assistant role.
    fn emit(&mut self, out: &mut Vec<u8>, mut delta: DeltaOut<'_>, finish: Option<&'static str>) {
        if self.phase != Phase::Streaming {
            return;
        }
        if !self.role_sent {
            delta.role = Some("assistant");
            self.role_sent = true;
        }
        self.ensure_prefix();
        out.extend_from_slice(&self.prefix);
        delta.write(out);
        out.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
        match finish {
            Some(reason) => {
                out.push(b'"');
                out.extend_from_slice(reason.as_bytes());
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b"}]}\n\n");
    }

    /// Emits an OpenAI error chunk and stops the stream for good.
    fn fail(&mut self, out: &mut Vec<u8>, kind: &str, message: &str) {
        if self.phase != Phase::Streaming {
            return;
        }
        self.phase = Phase::Failed;
        let body = OpenAiErrorBody::new(message, kind).to_vec();
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&body);
        out.extend_from_slice(b"\n\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::SseParser;
    use serde_json::{json, Value};

    const TOOL_STREAM: &str = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-opus-4-1-20250805","stop_sequence":null,"usage":{"input_tokens":472,"cache_read_input_tokens":100,"output_tokens":2},"content":[],"stop_reason":null}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay, checking Zürich 😊:"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"location\":"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \"Zürich\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_02","name":"get_time","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"tz\": \"CET\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

"#;

    use crate::translate::hub_streams::{truncated_stream, ERROR_STREAM, THINKING_STREAM};
    fn opts(include_usage: bool) -> StreamOptions {
        StreamOptions {
            model: "claude-sonnet-4".into(),
            created: 1_700_000_000,
            include_usage,
        }
    }

    fn run_pieces(pieces: &[&[u8]], include_usage: bool) -> Vec<u8> {
        let mut t = AnthropicToOpenAiStream::new(opts(include_usage));
        let mut out = Vec::new();
        for p in pieces {
            t.push(p, &mut out);
        }
        t.finish(&mut out);
        out
    }

    fn run(input: &str, include_usage: bool) -> Vec<u8> {
        run_pieces(&[input.as_bytes()], include_usage)
    }

    /// Output events: JSON values, with `[DONE]` as the string "[DONE]".
    fn events(out: &[u8]) -> Vec<Value> {
        let mut p = SseParser::new();
        p.feed(out);
        p.finish();
        let mut v = Vec::new();
        while let Some(e) = p.next_event() {
            assert_eq!(e.event, None);
            if e.data == "[DONE]" {
                v.push(Value::String(e.data));
            } else {
                v.push(serde_json::from_str(&e.data).unwrap());
            }
        }
        v
    }

    fn deltas(evs: &[Value]) -> Vec<Value> {
        evs.iter()
            .filter(|e| {
                e.get("choices")
                    .is_some_and(|c| c.as_array().is_some_and(|c| !c.is_empty()))
            })
            .map(|e| e["choices"][0]["delta"].clone())
            .collect()
    }

    fn concat(evs: &[Value], field: &str) -> String {
        deltas(evs)
            .iter()
            .filter_map(|d| d[field].as_str().map(str::to_owned))
            .collect()
    }

    #[test]
    fn parameterless_tool_call_streams_empty_object_arguments() {
        // The second tool of the recorded-shape stream, called without input: only
        // an empty `partial_json` comes (as Anthropic streams a parameterless call).
        let input = TOOL_STREAM.replace(
            r#"{"type":"input_json_delta","partial_json":"{\"tz\": \"CET\"}"}"#,
            r#"{"type":"input_json_delta","partial_json":""}"#,
        );
        assert_ne!(input, TOOL_STREAM);
        let evs = events(&run(&input, false));
        let arguments = |k: u64| -> String {
            deltas(&evs)
                .iter()
                .flat_map(|d| d["tool_calls"].as_array().cloned().unwrap_or_default())
                .filter(|c| c["index"] == k)
                .filter_map(|c| c["function"]["arguments"].as_str().map(str::to_owned))
                .collect()
        };
        assert_eq!(arguments(0), "{\"location\": \"Zürich\"}");
        assert_eq!(arguments(1), "{}");
    }

    #[test]
    fn fixture_text_stream_translates() {
        let evs = events(&run(fixture!("anthropic/messages_stream.txt"), false));
        assert_eq!(evs.len(), 4);
        assert_eq!(
            evs[0],
            json!({"id": "chatcmpl-01SJmPi7XXP8qscFQiHPR9oy", "object": "chat.completion.chunk",
                   "created": 1_700_000_000, "model": "claude-sonnet-4",
                   "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                "logprobs": null, "finish_reason": null}]})
        );
        assert_eq!(
            evs[1]["choices"][0]["delta"],
            json!({"content": "Hello World"})
        );
        assert_eq!(evs[2]["choices"][0]["delta"], json!({}));
        assert_eq!(evs[2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(evs[3], "[DONE]");
    }

    #[test]
    fn every_chunk_has_the_chunk_envelope() {
        for input in [
            fixture!("anthropic/messages_stream.txt"),
            TOOL_STREAM,
            THINKING_STREAM,
        ] {
            for e in events(&run(input, true)) {
                if e == "[DONE]" {
                    continue;
                }
                assert!(e["id"].as_str().unwrap().starts_with("chatcmpl-"));
                assert_eq!(e["object"], "chat.completion.chunk");
                assert_eq!(e["created"], 1_700_000_000);
                assert_eq!(e["model"], "claude-sonnet-4");
                for c in e["choices"].as_array().unwrap() {
                    assert_eq!(c["index"], 0);
                    assert_eq!(c["logprobs"], Value::Null);
                    assert!(c.get("finish_reason").is_some());
                }
            }
        }
    }

    #[test]
    fn include_usage_adds_usage_chunk_before_done() {
        let evs = events(&run(fixture!("anthropic/messages_stream.txt"), true));
        let n = evs.len();
        assert_eq!(evs[n - 1], "[DONE]");
        assert_eq!(evs[n - 2]["choices"], json!([]));
        assert_eq!(
            evs[n - 2]["usage"],
            json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                   "prompt_tokens_details": {"cached_tokens": 0}})
        );
        let without = events(&run(fixture!("anthropic/messages_stream.txt"), false));
        assert!(without.iter().all(|e| e.get("usage").is_none()));
    }

    #[test]
    fn tool_use_stream_becomes_indexed_tool_call_deltas() {
        let evs = events(&run(TOOL_STREAM, true));
        let d = deltas(&evs);
        assert_eq!(d[0], json!({"role": "assistant", "content": ""}));
        assert_eq!(d[1], json!({"content": "Okay, checking Zürich 😊:"}));
        assert_eq!(
            d[2],
            json!({"tool_calls": [{"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
                                   "function": {"name": "get_weather", "arguments": ""}}]})
        );
        assert_eq!(
            d[3],
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"location\":"}}]})
        );
        assert_eq!(
            d[4],
            json!({"tool_calls": [{"index": 0, "function": {"arguments": " \"Zürich\"}"}}]})
        );
        assert_eq!(d[5]["tool_calls"][0]["index"], 1);
        assert_eq!(d[5]["tool_calls"][0]["id"], "toolu_02");
        assert_eq!(
            d[6],
            json!({"tool_calls": [{"index": 1, "function": {"arguments": "{\"tz\": \"CET\"}"}}]})
        );
        let last_choice = evs
            .iter()
            .rev()
            .find(|e| e["choices"].as_array().is_some_and(|c| !c.is_empty()))
            .unwrap();
        assert_eq!(last_choice["choices"][0]["finish_reason"], "tool_calls");
        let usage = &evs[evs.len() - 2]["usage"];
        assert_eq!(usage["prompt_tokens"], 572);
        assert_eq!(usage["completion_tokens"], 89);
        assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 100);
    }

    #[test]
    fn thinking_stream_becomes_reasoning_content_and_drops_signature() {
        let out = run(THINKING_STREAM, false);
        let evs = events(&out);
        assert_eq!(
            concat(&evs, "reasoning_content"),
            "Let me solve this step by step:\n\n1. First break down 27 * 453\n2. 453 = 400 + 50 + 3"
        );
        assert_eq!(concat(&evs, "content"), "27 * 453 = 12,231");
        assert!(!String::from_utf8_lossy(&out).contains("signature"));
        assert_eq!(evs.last().unwrap(), "[DONE]");
    }

    #[test]
    fn pings_and_comments_reach_the_client_as_keep_alive_comments() {
        // Anthropic pings while it works, and a proxy before it may write comments: a
        // hop with an idle timeout must see them, once each.
        let input =
            format!(": queued\n\nevent: ping\ndata: {{\"type\": \"ping\"}}\n\n{THINKING_STREAM}");
        let expected = [
            &b": keep-alive\n\n: keep-alive\n\n"[..],
            &run(THINKING_STREAM, false),
        ]
        .concat();
        assert_eq!(
            String::from_utf8_lossy(&run(&input, false)),
            String::from_utf8_lossy(&expected)
        );
    }

    #[test]
    fn anthropics_first_ping_marks_no_wait_and_is_not_passed_on() {
        // Anthropic pings once as every stream begins; later pings are waits.
        let recorded = fixture!("anthropic/messages_stream.txt");
        assert!(recorded.contains("event: ping"));
        let mut t = AnthropicToOpenAiStream::new(opts(false)).anthropic_upstream();
        let mut out = Vec::new();
        t.push(recorded.as_bytes(), &mut out);
        assert!(!String::from_utf8_lossy(&out).contains(": keep-alive"));
        let waited = recorded.replacen(
            "event: content_block_stop",
            "event: ping\ndata: {\"type\": \"ping\"}\n\nevent: content_block_stop",
            1,
        );
        let mut t = AnthropicToOpenAiStream::new(opts(false)).anthropic_upstream();
        let mut out = Vec::new();
        t.push(waited.as_bytes(), &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out)
                .matches(": keep-alive")
                .count(),
            1
        );
    }

    #[test]
    fn error_event_emits_error_chunk_and_never_done() {
        let mut t = AnthropicToOpenAiStream::new(opts(true));
        let mut out = Vec::new();
        t.push(ERROR_STREAM.as_bytes(), &mut out);
        assert!(t.is_failed());
        let evs = events(&out);
        assert_eq!(
            evs.last().unwrap(),
            &json!({"error": {"message": "Overloaded", "type": "provider_error", "param": null, "code": null}})
        );
        assert_eq!(concat(&evs, "content"), "Hel");
        let before = out.len();
        t.push(
            b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
            &mut out,
        );
        t.finish(&mut out);
        assert_eq!(out.len(), before);
        assert!(!String::from_utf8_lossy(&out).contains("[DONE]"));
    }

    #[test]
    fn error_types_are_mapped() {
        for (anthropic, openai) in [
            ("overloaded_error", "provider_error"),
            ("rate_limit_error", "rate_limit_error"),
            ("invalid_request_error", "invalid_request_error"),
            ("authentication_error", "authentication_error"),
            ("permission_error", "authentication_error"),
            ("not_found_error", "not_found_error"),
            ("api_error", "provider_error"),
            ("something_new", "provider_error"),
        ] {
            let input = format!(
                "event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"{anthropic}\",\"message\":\"m\"}}}}\n\n"
            );
            let evs = events(&run(&input, false));
            assert_eq!(evs.len(), 1);
            assert_eq!(evs[0]["error"]["type"], openai, "{anthropic}");
        }
    }

    #[test]
    fn truncated_stream_ends_with_error_not_done() {
        let mut t = AnthropicToOpenAiStream::new(opts(true));
        let mut out = Vec::new();
        t.push(truncated_stream().as_bytes(), &mut out);
        assert!(!t.is_failed());
        t.finish(&mut out);
        assert!(t.is_failed());
        let evs = events(&out);
        assert_eq!(evs.last().unwrap()["error"]["type"], "provider_error");
        assert!(!evs.iter().any(|e| e == "[DONE]"));
    }

    #[test]
    fn a_stream_that_loses_only_its_message_stop_ends_as_a_whole_one() {
        let whole = fixture!("anthropic/messages_stream.txt");
        let cut = whole.find("event: message_stop").unwrap();
        for include_usage in [true, false] {
            let mut t = AnthropicToOpenAiStream::new(opts(include_usage));
            let mut out = Vec::new();
            t.push(&whole.as_bytes()[..cut], &mut out);
            t.finish(&mut out);
            assert!(t.is_done() && !t.is_failed());
            assert_eq!(events(&out), events(&run(whole, include_usage)));
        }
    }

    #[test]
    fn a_stream_cut_before_its_finish_reason_still_ends_with_an_error() {
        let whole = fixture!("anthropic/messages_stream.txt");
        let cut = whole.find("event: message_delta").unwrap();
        let evs = events(&run(&whole[..cut], true));
        assert_eq!(evs.last().unwrap()["error"]["type"], "provider_error");
        assert!(!evs.iter().any(|e| e == "[DONE]"));
    }

    #[test]
    fn an_event_that_never_ends_fails_the_stream_without_done() {
        let mut t = AnthropicToOpenAiStream::new(opts(true));
        let mut out = Vec::new();
        t.push(truncated_stream().as_bytes(), &mut out);
        let start = out.len();
        t.push(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"", &mut out);
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..=(crate::translate::sse::MAX_PENDING_BYTES >> 20) {
            t.push(&chunk, &mut out);
        }
        assert!(t.is_failed());
        let evs = events(&out[start..]);
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0]["error"]["type"], "provider_error");
        assert!(evs[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("could not be read"));
        let len = out.len();
        t.push(b"\n\n", &mut out);
        t.finish(&mut out);
        assert_eq!(out.len(), len);
    }

    #[test]
    fn malformed_event_fails_the_stream() {
        let evs = events(&run(
            "event: content_block_delta\ndata: {not json\n\n",
            false,
        ));
        assert_eq!(evs.len(), 1);
        assert!(evs[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("malformed"));
    }

    #[test]
    fn events_without_event_field_are_dispatched_by_type() {
        let input: String = fixture!("anthropic/messages_stream.txt")
            .lines()
            .filter(|l| !l.starts_with("event:"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            run(&input, true),
            run(fixture!("anthropic/messages_stream.txt"), true)
        );
    }

    #[test]
    fn renamed_events_are_dispatched_by_type_and_unknown_ones_skipped() {
        let input = fixture!("anthropic/messages_stream.txt")
            .replace("event: content_block_delta", "event: message")
            .replace(
                "event: ping",
                "event: keepalive\ndata: not json\n\nevent: ping",
            );
        assert_eq!(
            run(&input, true),
            run(fixture!("anthropic/messages_stream.txt"), true)
        );
    }

    #[test]
    fn final_event_without_blank_line_is_processed() {
        let input = fixture!("anthropic/messages_stream.txt").trim_end();
        assert!(events(&run(input, false)).last().unwrap() == "[DONE]");
    }

    #[test]
    fn input_after_done_is_ignored() {
        let mut t = AnthropicToOpenAiStream::new(opts(false));
        let mut out = Vec::new();
        t.push(
            fixture!("anthropic/messages_stream.txt").as_bytes(),
            &mut out,
        );
        t.push(b"\n", &mut out);
        assert!(t.is_done());
        let len = out.len();
        t.push(TOOL_STREAM.as_bytes(), &mut out);
        t.finish(&mut out);
        assert_eq!(out.len(), len);
    }

    fn all_inputs() -> Vec<&'static str> {
        vec![
            fixture!("anthropic/messages_stream.txt"),
            TOOL_STREAM,
            THINKING_STREAM,
            ERROR_STREAM,
            truncated_stream(),
        ]
    }

    #[test]
    fn split_at_every_offset_gives_identical_output() {
        for input in all_inputs() {
            let bytes = input.as_bytes();
            let whole = run(input, true);
            for i in 0..=bytes.len() {
                let split = run_pieces(&[&bytes[..i], &bytes[i..]], true);
                assert_eq!(split, whole, "split at {i}");
            }
        }
    }

    #[test]
    fn one_byte_at_a_time_gives_identical_output() {
        for input in all_inputs() {
            let pieces: Vec<&[u8]> = input.as_bytes().chunks(1).collect();
            assert_eq!(run_pieces(&pieces, true), run(input, true));
        }
    }
}
