//! Anthropic Messages stream → the Responses API event stream.
//!
//! Each Anthropic event is translated as soon as it is complete; only an
//! unfinished event is held between pushes. Every written event is
//! `event: <type>` plus one `data:` line with a JSON object carrying `type`
//! and a `sequence_number` counting from 0.
//!
//! `message_start` opens the response (`response.created`,
//! `response.in_progress`); content blocks become output items exactly as
//! [`super::response`] describes for a whole answer, streamed with the
//! Responses item events; `message_stop` ends it with `response.completed` (or
//! `response.incomplete` after `max_tokens`) carrying the whole `response`
//! object, the same one [`anthropic_to_responses_response`] makes from the
//! equivalent whole answer.
//!
//! Since consecutive text blocks share one message item and one
//! `output_text` part, a message item is opened by the first non-empty text
//! and closed (`response.output_text.done`, `response.content_part.done`,
//! `response.output_item.done`) only when a block of another kind starts or
//! the message ends. Likewise a reasoning item's summary part is added with
//! its first non-empty thinking, so empty thinking has an empty summary.
//! Function call arguments are streamed as Anthropic sends them; a call with
//! no input gets `{}`, and so does one whose arguments add up to no JSON object (a
//! chat server's model can stream any text): its `.done` event and item say `{}`, as
//! the whole answer's do, so that the client sends back a call the next request
//! takes.
//!
//! An upstream `error` event, a malformed event, or input ending before
//! `message_stop` ends the stream with an `error` event, then `response.failed`:
//! the response failed with the same `code` and `message`, holding the items
//! finished before the failure (see [`super::failure`]); nothing follows. Each `ping`
//! (or comment) of the provider becomes a `: keep-alive` comment, so that a hop with an
//! idle timeout sees the stream alive.
//!
//! [`anthropic_to_responses_response`]: super::anthropic_to_responses_response

use super::failure::{failure_code, CONTEXT_LENGTH_EXCEEDED, SERVER_ERROR, SERVER_IS_OVERLOADED};
use super::response::{
    item_separator, write_function_call_item, write_message_item, write_output_text_part,
    write_reasoning_item, write_summary_part, Arguments, Block, ResponseHead, Status, Usage,
};
use super::{ReasoningState, ResponsesOptions};
use crate::translate::anthropic_text_delta::{plain_text_delta, PlainTextDelta};
use crate::translate::anthropic_to_openai_error::openai_error_type_for_anthropic_type;
use crate::translate::anthropic_to_openai_response::AnthropicUsageIn;
use crate::translate::context_overflow::says_context_overflow;
use crate::translate::json_writer::{write_compact, write_str, write_u64, JsonString, JsonText};
use crate::translate::request_fields::parse_text;
use crate::translate::response_translator::MAX_WHOLE_ANSWER_BYTES;
use crate::translate::sse::{PingFilter, SseError, SseEventRef, KEEP_ALIVE_COMMENT};
use crate::translate::sse_driver::{unreadable_message, EventHandler, Phase, SseDriver};
use serde::Deserialize;
use std::borrow::Cow;

/// Incremental translator from Anthropic SSE bytes to Responses API SSE bytes.
#[derive(Debug)]
pub struct AnthropicToResponsesStream {
    inner: SseDriver<State>,
}

impl AnthropicToResponsesStream {
    /// Creates a translator for one response stream, described by `opts`.
    pub fn new(opts: ResponsesOptions) -> Self {
        Self {
            inner: SseDriver::new(State {
                head: ResponseHead::new(&opts),
                opts,
                seq: 0,
                started: false,
                output: Vec::new(),
                item_count: 0,
                open: OpenItem::None,
                block: None,
                usage: Usage::default(),
                status: Status::Completed,
                stop_said: false,
                final_response: None,
                phase: Phase::Streaming,
                read: 0,
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

    /// Translates a chunk of upstream bytes, appending Responses SSE bytes to
    /// `out`. Input after the end of the stream or an error is ignored.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        self.inner.push(chunk, out);
    }

    /// Signals the end of upstream input. Emits an `error` event and
    /// `response.failed` when the stream was cut short; nothing after the terminal
    /// event.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.inner.finish(out);
    }

    /// True once the stream failed (`error`, then `response.failed`); it must then
    /// be closed as it is.
    pub fn is_failed(&self) -> bool {
        self.inner.phase() == Phase::Failed
    }

    /// True once the terminal `response.completed` or `response.incomplete`
    /// event has been emitted.
    pub fn is_done(&self) -> bool {
        self.inner.phase() == Phase::Done
    }

    /// The complete `response` object (JSON) sent in the terminal event, for
    /// storing the response; `None` until then, and for a failed stream.
    pub fn final_response(&self) -> Option<&[u8]> {
        self.inner.state.final_response.as_deref()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Text,
    Thinking,
    Tool,
    /// Blocks without a Responses item (server tools, redacted thinking,
    /// whose item is complete at its start).
    Other,
}

/// What every output item being streamed has.
#[derive(Debug)]
struct ItemHead {
    id: String,
    output_index: usize,
    /// `"item_id":…,"output_index":…,`, the start of every event about the
    /// item's content.
    members: Vec<u8>,
}

#[derive(Debug)]
enum OpenItem {
    None,
    Message {
        head: ItemHead,
        text: JsonText,
    },
    Function {
        head: ItemHead,
        call_id: String,
        /// The provider's tool name (flattened for namespace tools).
        name: String,
        arguments: JsonText,
    },
    Reasoning {
        head: ItemHead,
        /// The thinking, for the summary.
        summary: JsonText,
        /// The thinking as it is, kept only for `encrypted_content`.
        thinking: String,
        signature: String,
        /// Whether `response.reasoning_summary_part.added` was sent.
        part_open: bool,
    },
}

#[derive(Debug)]
struct State {
    opts: ResponsesOptions,
    head: ResponseHead,
    /// The next event's `sequence_number`.
    seq: u64,
    /// Whether `response.created` was sent.
    started: bool,
    /// The finished items' JSON, comma-separated, for the final response.
    output: Vec<u8>,
    item_count: usize,
    open: OpenItem,
    /// The Anthropic content block being streamed: its index and kind.
    /// Anthropic streams one block at a time, so one suffices.
    block: Option<(u64, BlockKind)>,
    usage: Usage,
    status: Status,
    /// The provider said why it stopped (`message_delta`'s `stop_reason`).
    stop_said: bool,
    final_response: Option<Vec<u8>>,
    phase: Phase,
    /// The bytes of event data read so far: what the answer gathered for its final
    /// `response` can hold at most, as good as.
    read: usize,
    /// Which of the stream's pings reach the client.
    pings: PingFilter,
}

const TRUNCATED: &str =
    "the provider's stream ended before the response was complete; retry the request";
const MALFORMED: &str = "the provider sent a malformed stream event; retry the request";
const UPSTREAM_ERROR: &str = "the provider reported an error mid-stream; retry the request";
const TOO_LARGE: &str =
    "the provider's answer grew past 64 MiB without ending; it is cut here, and not stored";

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

/// The failure's `code` for an upstream error event of the Anthropic error type
/// `anthropic_type` whose data is `data`: the OpenAI error type the gateway uses for
/// it elsewhere, as [`failure_code`] has Responses clients told it; an overloaded
/// provider is `server_is_overloaded`. A prompt too long for the model is
/// `context_length_exceeded` whatever its type (a Chat provider's error crosses the
/// hub as `api_error`), but a rate limit's "too many tokens" is not.
fn error_code(anthropic_type: Option<&str>, data: &str) -> &'static str {
    let kind = anthropic_type.and_then(openai_error_type_for_anthropic_type);
    let code = if anthropic_type == Some("overloaded_error") {
        Some(SERVER_IS_OVERLOADED)
    } else {
        let overflow = kind != Some("rate_limit_error") && says_context_overflow(data.as_bytes());
        overflow.then_some(CONTEXT_LENGTH_EXCEEDED)
    };
    failure_code(kind, code)
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
        // finished: the response is whole, as the Chat translation ends it.
        if self.stop_said {
            self.on_message_stop(out);
        } else {
            self.fail(out, SERVER_ERROR, TRUNCATED);
        }
    }

    fn unreadable(&mut self, out: &mut Vec<u8>, error: SseError) {
        self.fail(out, SERVER_ERROR, &unreadable_message(error));
    }
}

#[derive(Deserialize)]
struct TypeOnly<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

#[derive(Deserialize)]
struct MessageStart {
    message: StartMessage,
}

#[derive(Deserialize)]
struct StartMessage {
    #[serde(default)]
    usage: Option<AnthropicUsageIn>,
}

#[derive(Deserialize)]
struct BlockStart<'a> {
    index: u64,
    #[serde(borrow)]
    content_block: Block<'a>,
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
    signature: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    partial_json: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct BlockStop {
    index: u64,
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
                signature: None,
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

/// Appends an event's header and opens its data object up to the members
/// after `type`; [`end_event`] closes it.
fn begin_event(out: &mut Vec<u8>, kind: &str) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\ndata: {\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",");
}

/// Closes an event begun by [`begin_event`], whose members so far each end
/// with a comma, with the next sequence number.
fn end_event(out: &mut Vec<u8>, seq: &mut u64) {
    out.extend_from_slice(b"\"sequence_number\":");
    write_u64(out, *seq);
    out.extend_from_slice(b"}\n\n");
    *seq += 1;
}

/// Appends an event about an item's content: `members` (the item's id and
/// index), then `body`, which ends with a comma.
fn item_event(
    out: &mut Vec<u8>,
    seq: &mut u64,
    kind: &str,
    head: &ItemHead,
    body: impl FnOnce(&mut Vec<u8>),
) {
    begin_event(out, kind);
    out.extend_from_slice(&head.members);
    body(out);
    end_event(out, seq);
}

/// Sends the `.done` event of an item's streamed text: the members `lead`,
/// the whole text, then `trail`, which ends with a comma.
fn text_done(
    out: &mut Vec<u8>,
    seq: &mut u64,
    kind: &str,
    head: &ItemHead,
    lead: &[u8],
    text: &JsonText,
    trail: &[u8],
) {
    item_event(out, seq, kind, head, |out| {
        out.extend_from_slice(lead);
        text.write_json(out);
        out.extend_from_slice(trail);
    });
}

/// Adds a finished item, as `write` writes it, to `output` (the final
/// response's items) and sends `response.output_item.done` with it.
fn item_done(
    output: &mut Vec<u8>,
    seq: &mut u64,
    out: &mut Vec<u8>,
    head: &ItemHead,
    write: impl FnOnce(&mut Vec<u8>),
) {
    item_separator(output);
    let start = output.len();
    write(output);
    begin_event(out, "response.output_item.done");
    out.extend_from_slice(b"\"output_index\":");
    write_u64(out, head.output_index as u64);
    out.extend_from_slice(b",\"item\":");
    out.extend_from_slice(&output[start..]);
    out.push(b',');
    end_event(out, seq);
}

impl State {
    fn handle(&mut self, ev: SseEventRef<'_>, out: &mut Vec<u8>) {
        let data = ev.data;
        // The whole answer is gathered for `response.completed`: a provider that
        // never ends its message is cut where a whole answer would be.
        self.read = self.read.saturating_add(data.len());
        if self.read > MAX_WHOLE_ANSWER_BYTES {
            return self.fail(out, SERVER_ERROR, TOO_LARGE);
        }
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
                Err(_) => return self.fail(out, SERVER_ERROR, MALFORMED),
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
            // Future event types carry nothing a client needs.
            _ => Ok(()),
        };
        if result.is_err() {
            self.fail(out, SERVER_ERROR, MALFORMED);
        }
    }

    /// Sends `response.created` and `response.in_progress` once, before any
    /// other event of a response.
    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        for kind in ["response.created", "response.in_progress"] {
            begin_event(out, kind);
            out.extend_from_slice(b"\"response\":");
            self.head.write(out, Status::InProgress, b"", None);
            out.push(b',');
            end_event(out, &mut self.seq);
        }
    }

    fn on_message_start(&mut self, data: &str, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let ev: MessageStart = serde_json::from_str(data)?;
        if let Some(u) = &ev.message.usage {
            self.usage.record(u);
        }
        self.ensure_started(out);
        Ok(())
    }

    fn on_block_start(&mut self, data: &str, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let ev: BlockStart = serde_json::from_str(data)?;
        self.ensure_started(out);
        let block = ev.content_block;
        let kind = match block.kind.as_ref() {
            "text" => {
                // Text continues an open message item.
                if !matches!(self.open, OpenItem::Message { .. }) {
                    self.close_open(out);
                }
                self.block = Some((ev.index, BlockKind::Text));
                if let Some(t) = block.text.as_deref().filter(|t| !t.is_empty()) {
                    self.text_delta(out, t);
                }
                return Ok(());
            }
            "thinking" => {
                self.close_open(out);
                let head = self.next_head("rs");
                Self::added(out, &mut self.seq, &head, |out, id| {
                    write_reasoning_item(out, id, "", None);
                });
                self.open = OpenItem::Reasoning {
                    head,
                    summary: JsonText::default(),
                    thinking: String::new(),
                    signature: block.signature.unwrap_or_default().into_owned(),
                    part_open: false,
                };
                self.block = Some((ev.index, BlockKind::Thinking));
                if let Some(t) = block.thinking.as_deref().filter(|t| !t.is_empty()) {
                    self.thinking_delta(out, t);
                }
                return Ok(());
            }
            "redacted_thinking" => {
                self.close_open(out);
                let head = self.next_head("rs");
                Self::added(out, &mut self.seq, &head, |out, id| {
                    write_reasoning_item(out, id, "", None);
                });
                let encrypted = self.opts.include_encrypted_reasoning.then(|| {
                    ReasoningState::Redacted {
                        redacted: block.data.unwrap_or_default().into_owned(),
                    }
                    .encode()
                });
                item_done(&mut self.output, &mut self.seq, out, &head, |out| {
                    write_reasoning_item(out, &head.id, "", encrypted.as_deref());
                });
                BlockKind::Other
            }
            "tool_use" => {
                self.close_open(out);
                let call_id = block.id.unwrap_or_default().into_owned();
                let name = block.name.unwrap_or_default().into_owned();
                let head = self.next_head("fc");
                Self::added(out, &mut self.seq, &head, |out, id| {
                    write_function_call_item(
                        out,
                        id,
                        false,
                        &call_id,
                        &name,
                        &self.opts.tool_names,
                        Arguments::Text(""),
                    );
                });
                self.open = OpenItem::Function {
                    head,
                    call_id,
                    name,
                    arguments: JsonText::default(),
                };
                // Streams carry the input in deltas after an empty `{}`;
                // a start that already has the input counts as a delta.
                if let Some(input) = block.input.filter(|i| i.get() != "{}") {
                    let mut compact = Vec::new();
                    write_compact(&mut compact, input.get());
                    if compact != b"{}" {
                        let compact = String::from_utf8_lossy(&compact);
                        self.arguments_delta(out, &compact);
                    }
                }
                BlockKind::Tool
            }
            // Server tool calls and their results run at the provider; a
            // Responses client gets only what Claude wrote about them.
            _ => BlockKind::Other,
        };
        self.block = Some((ev.index, kind));
        Ok(())
    }

    fn on_block_delta(&mut self, data: &str, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let ev = match plain_text_delta(data) {
            Some(d) => BlockDelta::plain(d),
            None => serde_json::from_str(data)?,
        };
        let Some((index, kind)) = self.block else {
            return Ok(());
        };
        if index != ev.index {
            return Ok(());
        }
        let d = ev.delta;
        match (kind, d.kind.as_ref()) {
            (BlockKind::Text, "text_delta") => {
                if let Some(t) = d.text.as_deref().filter(|t| !t.is_empty()) {
                    self.text_delta(out, t);
                }
            }
            (BlockKind::Thinking, "thinking_delta") => {
                if let Some(t) = d.thinking.as_deref().filter(|t| !t.is_empty()) {
                    self.thinking_delta(out, t);
                }
            }
            (BlockKind::Thinking, "signature_delta") => {
                if let (OpenItem::Reasoning { signature, .. }, Some(s)) =
                    (&mut self.open, d.signature.as_deref())
                {
                    signature.push_str(s);
                }
            }
            (BlockKind::Tool, "input_json_delta") => {
                if let Some(json) = d.partial_json.as_deref().filter(|j| !j.is_empty()) {
                    self.arguments_delta(out, json);
                }
            }
            // citations_delta and deltas of skipped blocks have no
            // Responses event.
            _ => {}
        }
        Ok(())
    }

    fn on_block_stop(&mut self, data: &str, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let ev: BlockStop = serde_json::from_str(data)?;
        if let Some((index, kind)) = self.block {
            if index == ev.index {
                self.block = None;
                // A message item stays open for the text blocks that may
                // follow.
                if matches!(kind, BlockKind::Thinking | BlockKind::Tool) {
                    self.close_open(out);
                }
            }
        }
        Ok(())
    }

    fn on_message_delta(&mut self, data: &str, _out: &mut Vec<u8>) -> serde_json::Result<()> {
        let ev: MessageDelta = serde_json::from_str(data)?;
        if let Some(u) = &ev.usage {
            self.usage.record(u);
        }
        self.status = Status::for_stop_reason(ev.delta.stop_reason.as_deref());
        self.stop_said |= ev.delta.stop_reason.is_some();
        Ok(())
    }

    fn on_message_stop(&mut self, out: &mut Vec<u8>) {
        self.ensure_started(out);
        self.close_open(out);
        let mut response = Vec::with_capacity(self.output.len() + 512);
        self.head
            .write(&mut response, self.status, &self.output, Some(&self.usage));
        // The items now live in the final response only.
        self.output = Vec::new();
        begin_event(out, self.status.terminal_event());
        out.extend_from_slice(b"\"response\":");
        out.extend_from_slice(&response);
        out.push(b',');
        end_event(out, &mut self.seq);
        self.final_response = Some(response);
        self.phase = Phase::Done;
    }

    fn on_error(&mut self, data: &str, out: &mut Vec<u8>) {
        let parsed = serde_json::from_str::<ErrorEvent>(data).ok();
        let detail = parsed.as_ref().map(|e| &e.error);
        let code = error_code(detail.and_then(|d| d.kind.as_deref()), data);
        let message = detail
            .and_then(|d| d.message.as_deref())
            .filter(|m| !m.is_empty())
            .unwrap_or(UPSTREAM_ERROR);
        self.fail(out, code, message);
    }

    /// Numbers and names the next output item.
    fn next_head(&mut self, kind: &str) -> ItemHead {
        let output_index = self.item_count;
        self.item_count += 1;
        let id = self.head.item_id(kind, output_index);
        let mut members = Vec::with_capacity(id.len() + 32);
        members.extend_from_slice(b"\"item_id\":");
        write_str(&mut members, &id);
        members.extend_from_slice(b",\"output_index\":");
        write_u64(&mut members, output_index as u64);
        members.push(b',');
        ItemHead {
            id,
            output_index,
            members,
        }
    }

    /// Sends `response.output_item.added` with the item as `write` writes it
    /// for its id.
    fn added(
        out: &mut Vec<u8>,
        seq: &mut u64,
        head: &ItemHead,
        write: impl FnOnce(&mut Vec<u8>, &str),
    ) {
        begin_event(out, "response.output_item.added");
        out.extend_from_slice(b"\"output_index\":");
        write_u64(out, head.output_index as u64);
        out.extend_from_slice(b",\"item\":");
        write(out, &head.id);
        out.push(b',');
        end_event(out, seq);
    }

    /// Streams text, opening the message item for the first text after
    /// another kind of item.
    fn text_delta(&mut self, out: &mut Vec<u8>, t: &str) {
        if !matches!(self.open, OpenItem::Message { .. }) {
            self.close_open(out);
            let head = self.next_head("msg");
            Self::added(out, &mut self.seq, &head, |out, id| {
                write_message_item(out, id, None);
            });
            item_event(
                out,
                &mut self.seq,
                "response.content_part.added",
                &head,
                |out| {
                    out.extend_from_slice(b"\"content_index\":0,\"part\":");
                    write_output_text_part(out, "");
                    out.push(b',');
                },
            );
            self.open = OpenItem::Message {
                head,
                text: JsonText::default(),
            };
        }
        if let OpenItem::Message { head, text } = &mut self.open {
            item_event(
                out,
                &mut self.seq,
                "response.output_text.delta",
                head,
                |out| {
                    out.extend_from_slice(b"\"content_index\":0,\"delta\":");
                    text.push_and_write(t, out);
                    out.extend_from_slice(b",\"logprobs\":[],");
                },
            );
        }
    }

    /// Streams thinking into the open reasoning item's summary.
    fn thinking_delta(&mut self, out: &mut Vec<u8>, t: &str) {
        let keep_thinking = self.opts.include_encrypted_reasoning;
        let OpenItem::Reasoning {
            head,
            summary,
            thinking,
            part_open,
            ..
        } = &mut self.open
        else {
            return;
        };
        if !*part_open {
            *part_open = true;
            item_event(
                out,
                &mut self.seq,
                "response.reasoning_summary_part.added",
                head,
                |out| {
                    out.extend_from_slice(b"\"summary_index\":0,\"part\":");
                    write_summary_part(out, "");
                    out.push(b',');
                },
            );
        }
        if keep_thinking {
            thinking.push_str(t);
        }
        item_event(
            out,
            &mut self.seq,
            "response.reasoning_summary_text.delta",
            head,
            |out| {
                out.extend_from_slice(b"\"summary_index\":0,\"delta\":");
                summary.push_and_write(t, out);
                out.push(b',');
            },
        );
    }

    /// Streams a piece of the open function call's arguments.
    fn arguments_delta(&mut self, out: &mut Vec<u8>, json: &str) {
        if let OpenItem::Function {
            head, arguments, ..
        } = &mut self.open
        {
            item_event(
                out,
                &mut self.seq,
                "response.function_call_arguments.delta",
                head,
                |out| {
                    out.extend_from_slice(b"\"delta\":");
                    arguments.push_and_write(json, out);
                    out.push(b',');
                },
            );
        }
    }

    /// Finishes the open item, if any, with its closing events.
    fn close_open(&mut self, out: &mut Vec<u8>) {
        match std::mem::replace(&mut self.open, OpenItem::None) {
            OpenItem::None => {}
            OpenItem::Message { head, text } => {
                text_done(
                    out,
                    &mut self.seq,
                    "response.output_text.done",
                    &head,
                    b"\"content_index\":0,\"text\":",
                    &text,
                    b",\"logprobs\":[],",
                );
                item_event(
                    out,
                    &mut self.seq,
                    "response.content_part.done",
                    &head,
                    |out| {
                        out.extend_from_slice(b"\"content_index\":0,\"part\":");
                        write_output_text_part(out, &text);
                        out.push(b',');
                    },
                );
                item_done(&mut self.output, &mut self.seq, out, &head, |out| {
                    write_message_item(out, &head.id, Some(&text));
                });
            }
            OpenItem::Function {
                head,
                call_id,
                name,
                mut arguments,
            } => {
                if !arguments.is_empty() && !holds_json_object(&arguments) {
                    arguments.replace("{}");
                } else if arguments.is_empty() {
                    // A call without input: its deltas add up to `{}`, as the
                    // whole answer's arguments do.
                    arguments.push("{}");
                    item_event(
                        out,
                        &mut self.seq,
                        "response.function_call_arguments.delta",
                        &head,
                        |out| out.extend_from_slice(b"\"delta\":\"{}\","),
                    );
                }
                let tool_names = &self.opts.tool_names;
                let (_, client_name) = tool_names.split(&name);
                let mut lead = Vec::with_capacity(client_name.len() + 24);
                lead.extend_from_slice(b"\"name\":");
                write_str(&mut lead, client_name);
                lead.extend_from_slice(b",\"arguments\":");
                text_done(
                    out,
                    &mut self.seq,
                    "response.function_call_arguments.done",
                    &head,
                    &lead,
                    &arguments,
                    b",",
                );
                item_done(&mut self.output, &mut self.seq, out, &head, |out| {
                    write_function_call_item(
                        out,
                        &head.id,
                        true,
                        &call_id,
                        &name,
                        tool_names,
                        Arguments::Collected(&arguments),
                    );
                });
            }
            OpenItem::Reasoning {
                head,
                summary,
                thinking,
                signature,
                part_open,
            } => {
                if part_open {
                    text_done(
                        out,
                        &mut self.seq,
                        "response.reasoning_summary_text.done",
                        &head,
                        b"\"summary_index\":0,\"text\":",
                        &summary,
                        b",",
                    );
                    item_event(
                        out,
                        &mut self.seq,
                        "response.reasoning_summary_part.done",
                        &head,
                        |out| {
                            out.extend_from_slice(b"\"summary_index\":0,\"part\":");
                            write_summary_part(out, &summary);
                            out.push(b',');
                        },
                    );
                }
                let encrypted = self.opts.include_encrypted_reasoning.then(|| {
                    ReasoningState::Thinking {
                        thinking,
                        signature,
                    }
                    .encode()
                });
                item_done(&mut self.output, &mut self.seq, out, &head, |out| {
                    write_reasoning_item(out, &head.id, &summary, encrypted.as_deref());
                });
            }
        }
    }

    /// Sends the `error` event, then `response.failed`, and stops the stream for
    /// good. The OpenAI SDKs raise the first; Responses clients such as Codex read
    /// only the second, and without it send the request again.
    fn fail(&mut self, out: &mut Vec<u8>, code: &str, message: &str) {
        if self.phase != Phase::Streaming {
            return;
        }
        self.phase = Phase::Failed;
        // An item under way is left out: it never finished.
        self.open = OpenItem::None;
        let output = std::mem::take(&mut self.output);
        begin_event(out, "error");
        out.extend_from_slice(b"\"code\":");
        write_str(out, code);
        out.extend_from_slice(b",\"message\":");
        write_str(out, message);
        out.extend_from_slice(b",\"param\":null,");
        end_event(out, &mut self.seq);
        // An answer cut at the cap is not sent a second time.
        let output = if self.read > MAX_WHOLE_ANSWER_BYTES {
            &[][..]
        } else {
            &output[..]
        };
        // Usage is known once the provider's answer began.
        let usage = self.started.then_some(&self.usage);
        begin_event(out, Status::Failed.terminal_event());
        out.extend_from_slice(b"\"response\":");
        self.head.write_failed(out, (code, message), output, usage);
        out.push(b',');
        end_event(out, &mut self.seq);
    }
}

/// Whether streamed arguments add up to the text of a JSON object.
fn holds_json_object(arguments: &JsonText) -> bool {
    arguments
        .text()
        .is_some_and(|text| parse_text(&text).is_ok_and(|v| v.is_object()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::responses::{anthropic_to_responses_response, ToolNames};
    use crate::translate::SseParser;
    use serde_json::{json, Value};
    use std::sync::Arc;

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
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"weather__get_weather","input":{}}}

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

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

"#;

    use crate::translate::hub_streams::{truncated_stream, ERROR_STREAM, THINKING_STREAM};
    fn opts() -> ResponsesOptions {
        let mut names = ToolNames::default();
        names.flatten("weather", "get_weather");
        ResponsesOptions {
            id: "resp_abc123".into(),
            model: "gpt-5-codex".into(),
            created_at: 1_700_000_000,
            tool_names: Arc::new(names),
            include_encrypted_reasoning: false,
            echo: r#""store":true,"tool_choice":"required""#.into(),
        }
    }

    fn included() -> ResponsesOptions {
        ResponsesOptions {
            include_encrypted_reasoning: true,
            ..opts()
        }
    }

    fn run_pieces_with(opts: ResponsesOptions, pieces: &[&[u8]]) -> (Vec<u8>, Option<Vec<u8>>) {
        let mut t = AnthropicToResponsesStream::new(opts);
        let mut out = Vec::new();
        for p in pieces {
            t.push(p, &mut out);
        }
        t.finish(&mut out);
        assert!(t.is_done() != t.is_failed());
        assert_eq!(t.final_response().is_some(), t.is_done());
        (out, t.final_response().map(<[u8]>::to_vec))
    }

    fn run_with(opts: ResponsesOptions, input: &str) -> Vec<u8> {
        run_pieces_with(opts, &[input.as_bytes()]).0
    }

    fn run(input: &str) -> Vec<u8> {
        run_with(opts(), input)
    }

    /// The output's events as JSON data, checking that each event's name is
    /// its `type` and that sequence numbers count from 0.
    fn events(out: &[u8]) -> Vec<Value> {
        let mut p = SseParser::new();
        p.feed(out);
        p.finish();
        let mut v: Vec<Value> = Vec::new();
        while let Some(e) = p.next_event() {
            let data: Value = serde_json::from_str(&e.data).unwrap();
            assert_eq!(e.event.as_deref(), data["type"].as_str());
            assert_eq!(data["sequence_number"], v.len());
            v.push(data);
        }
        v
    }

    fn types(evs: &[Value]) -> Vec<&str> {
        evs.iter().map(|e| e["type"].as_str().unwrap()).collect()
    }

    #[test]
    fn recorded_text_stream_becomes_the_message_event_sequence() {
        let out = run(fixture!("anthropic/messages_stream.txt"));
        let evs = events(&out);
        assert_eq!(
            types(&evs),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        let in_progress = json!({
            "id": "resp_abc123", "object": "response", "created_at": 1_700_000_000,
            "status": "in_progress", "error": null, "incomplete_details": null,
            "model": "gpt-5-codex", "output": [], "usage": null,
            "store": true, "tool_choice": "required", "parallel_tool_calls": true, "tools": []
        });
        assert_eq!(evs[0]["response"], in_progress);
        assert_eq!(evs[1]["response"], in_progress);
        assert_eq!(
            evs[2],
            json!({"type": "response.output_item.added", "output_index": 0, "sequence_number": 2,
                   "item": {"id": "msg_abc123_0", "type": "message", "status": "in_progress",
                            "role": "assistant", "content": []}})
        );
        assert_eq!(
            evs[3],
            json!({"type": "response.content_part.added", "item_id": "msg_abc123_0",
                   "output_index": 0, "content_index": 0, "sequence_number": 3,
                   "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}})
        );
        assert_eq!(
            evs[4],
            json!({"type": "response.output_text.delta", "item_id": "msg_abc123_0",
                   "output_index": 0, "content_index": 0, "delta": "Hello World",
                   "logprobs": [], "sequence_number": 4})
        );
        assert_eq!(evs[5]["text"], "Hello World");
        assert_eq!(evs[6]["part"]["text"], "Hello World");
        let item = json!({"id": "msg_abc123_0", "type": "message", "status": "completed",
                          "role": "assistant",
                          "content": [{"type": "output_text", "text": "Hello World",
                                       "annotations": [], "logprobs": []}]});
        assert_eq!(evs[7]["item"], item);
        let done = &evs[8]["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"], json!([item]));
        assert_eq!(
            done["usage"],
            json!({"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0},
                   "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0},
                   "total_tokens": 15})
        );
    }

    #[test]
    fn an_endless_stream_is_cut_at_the_answer_cap() {
        let head = TOOL_STREAM
            .split("event: content_block_stop")
            .next()
            .unwrap();
        let mut t = AnthropicToResponsesStream::new(opts());
        let mut out = Vec::new();
        t.push(head.as_bytes(), &mut out);
        let piece = "x".repeat(1 << 20);
        let delta = format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{piece}\"}}}}\n\n"
        );
        let mut pushed = 0;
        while !out.starts_with(b"event: error") && pushed <= MAX_WHOLE_ANSWER_BYTES >> 20 {
            out.clear();
            t.push(delta.as_bytes(), &mut out);
            pushed += 1;
        }
        // 64 pieces of 1 MiB and their events' JSON pass the cap.
        assert_eq!(pushed, MAX_WHOLE_ANSWER_BYTES >> 20, "cut at the cap");
        let mut p = SseParser::new();
        p.feed(&out);
        let mut ends = Vec::new();
        while let Some(e) = p.next_event() {
            ends.push(serde_json::from_str::<Value>(&e.data).unwrap());
        }
        assert_eq!(types(&ends), ["error", "response.failed"]);
        assert!(ends[0]["message"].as_str().unwrap().contains("64 MiB"));
        // The items gathered are not sent again.
        assert_eq!(ends[1]["response"]["output"], json!([]));
        assert_eq!(ends[1]["response"]["error"]["message"], ends[0]["message"]);
        // Nothing more is gathered or sent.
        out.clear();
        t.push(delta.as_bytes(), &mut out);
        t.finish(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn malformed_streamed_arguments_end_as_an_empty_object() {
        // A chat server's model streamed arguments that add up to no JSON object.
        let stream = TOOL_STREAM.replace(
            r#""partial_json":"{\"location\":""#,
            r#""partial_json":"{\"location\": Zurich""#,
        );
        assert_ne!(stream, TOOL_STREAM);
        let evs = events(&run(&stream));
        let done = evs
            .iter()
            .find(|e| e["type"] == "response.function_call_arguments.done")
            .unwrap();
        assert_eq!(done["arguments"], "{}");
        let item = evs
            .iter()
            .find(|e| {
                e["type"] == "response.output_item.done" && e["item"]["type"] == "function_call"
            })
            .unwrap();
        assert_eq!(item["item"]["arguments"], "{}");
        let completed = evs.last().unwrap();
        assert_eq!(completed["response"]["output"][1]["arguments"], "{}");
    }

    #[test]
    fn tool_use_streams_function_call_arguments_and_splits_namespaces() {
        let evs = events(&run(TOOL_STREAM));
        assert_eq!(
            types(&evs)[2..],
            [
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                // The message stays open until a block of another kind starts.
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        assert_eq!(
            evs[8]["item"],
            json!({"id": "fc_abc123_1", "type": "function_call", "status": "in_progress",
                   "arguments": "", "call_id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                   "name": "get_weather", "namespace": "weather"})
        );
        assert_eq!(evs[9]["delta"], "{\"location\":");
        assert_eq!(evs[9]["item_id"], "fc_abc123_1");
        assert_eq!(evs[9]["output_index"], 1);
        assert_eq!(
            evs[11],
            json!({"type": "response.function_call_arguments.done", "item_id": "fc_abc123_1",
                   "output_index": 1, "name": "get_weather",
                   "arguments": "{\"location\": \"Zürich\"}", "sequence_number": 11})
        );
        assert_eq!(evs[12]["item"]["status"], "completed");
        assert_eq!(evs[12]["item"]["arguments"], "{\"location\": \"Zürich\"}");
        // A call whose input never came is called with `{}`.
        assert_eq!(evs[14]["delta"], "{}");
        assert_eq!(evs[15]["arguments"], "{}");
        assert_eq!(evs[16]["item"]["name"], "get_time");
        assert!(evs[16]["item"].get("namespace").is_none());
        let done = &evs[17]["response"];
        assert_eq!(done["output"].as_array().unwrap().len(), 3);
        assert_eq!(done["usage"]["input_tokens"], 572);
        assert_eq!(done["usage"]["input_tokens_details"]["cached_tokens"], 100);
        assert_eq!(done["usage"]["output_tokens"], 89);
    }

    #[test]
    fn thinking_streams_a_reasoning_summary_and_keeps_the_signature_when_included() {
        let evs = events(&run_with(included(), THINKING_STREAM));
        assert_eq!(
            types(&evs)[2..9],
            [
                "response.output_item.added",
                "response.reasoning_summary_part.added",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.done",
                "response.reasoning_summary_part.done",
                "response.output_item.done",
            ]
        );
        assert_eq!(
            evs[2]["item"],
            json!({"id": "rs_abc123_0", "type": "reasoning", "summary": []})
        );
        assert_eq!(
            evs[3],
            json!({"type": "response.reasoning_summary_part.added", "item_id": "rs_abc123_0",
                   "output_index": 0, "summary_index": 0, "sequence_number": 3,
                   "part": {"type": "summary_text", "text": ""}})
        );
        assert_eq!(evs[5]["delta"], "\n2. 453 = 400 + 50 + 3");
        let thinking =
            "Let me solve this step by step:\n\n1. First break down 27 * 453\n2. 453 = 400 + 50 + 3";
        assert_eq!(evs[6]["text"], thinking);
        assert_eq!(evs[7]["part"]["text"], thinking);
        let item = &evs[8]["item"];
        assert_eq!(item["summary"][0]["text"], thinking);
        assert_eq!(
            ReasoningState::decode(item["encrypted_content"].as_str().unwrap()),
            Some(ReasoningState::Thinking {
                thinking: thinking.into(),
                signature: "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds".into(),
            })
        );
        assert_eq!(evs[9]["item"]["id"], "msg_abc123_1");
        assert_eq!(evs.last().unwrap()["type"], "response.completed");

        let without = events(&run(THINKING_STREAM));
        assert!(without[8]["item"].get("encrypted_content").is_none());
    }

    #[test]
    fn redacted_thinking_is_added_and_done_at_once() {
        let input = r#"event: message_start
data: {"type":"message_start","message":{"id":"m","usage":{"input_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"redacted_thinking","data":"EmwKAhgBEgy3va3pzix"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_stop
data: {"type":"message_stop"}

"#;
        let evs = events(&run_with(included(), input));
        assert_eq!(
            types(&evs)[2..],
            [
                "response.output_item.added",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let item = &evs[3]["item"];
        assert_eq!(item["summary"], json!([]));
        assert_eq!(
            ReasoningState::decode(item["encrypted_content"].as_str().unwrap()),
            Some(ReasoningState::Redacted {
                redacted: "EmwKAhgBEgy3va3pzix".into()
            })
        );
    }

    #[test]
    fn tool_input_given_at_block_start_is_streamed_as_a_delta() {
        let input = r#"event: message_start
data: {"type":"message_start","message":{"id":"m","usage":{"input_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"f","input":{ "a" : [1, 2] }}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_stop
data: {"type":"message_stop"}

"#;
        let evs = events(&run(input));
        assert_eq!(evs[3]["type"], "response.function_call_arguments.delta");
        assert_eq!(evs[3]["delta"], "{\"a\":[1,2]}");
        assert_eq!(evs[4]["arguments"], "{\"a\":[1,2]}");
    }

    #[test]
    fn max_tokens_ends_with_response_incomplete() {
        let input = fixture!("anthropic/messages_stream.txt").replace("end_turn", "max_tokens");
        let evs = events(&run(&input));
        let last = evs.last().unwrap();
        assert_eq!(last["type"], "response.incomplete");
        assert_eq!(last["response"]["status"], "incomplete");
        assert_eq!(
            last["response"]["incomplete_details"],
            json!({"reason": "max_output_tokens"})
        );
    }

    #[test]
    fn a_filtered_stream_ends_incomplete_for_its_content_filter() {
        let input = fixture!("anthropic/messages_stream.txt").replace("end_turn", "refusal");
        let evs = events(&run(&input));
        let last = evs.last().unwrap();
        assert_eq!(last["type"], "response.incomplete");
        assert_eq!(
            last["response"]["incomplete_details"],
            json!({"reason": "content_filter"})
        );
    }

    /// The events that end a response: exactly one in a stream, its last.
    fn terminal_events(evs: &[Value]) -> Vec<&Value> {
        evs.iter()
            .filter(|e| {
                matches!(
                    e["type"].as_str(),
                    Some("response.completed" | "response.incomplete" | "response.failed")
                )
            })
            .collect()
    }

    #[test]
    fn upstream_error_event_ends_the_stream_with_an_error_then_response_failed() {
        let mut t = AnthropicToResponsesStream::new(opts());
        let mut out = Vec::new();
        t.push(ERROR_STREAM.as_bytes(), &mut out);
        assert!(t.is_failed());
        assert!(!t.is_done());
        assert_eq!(t.final_response(), None);
        let evs = events(&out);
        let n = evs.len();
        assert_eq!(
            evs[n - 2],
            json!({"type": "error", "code": "server_is_overloaded", "message": "Overloaded",
                   "param": null, "sequence_number": n - 2})
        );
        // The response as the other terminal events write it, failed with the same
        // code and message; the message being written never finished.
        assert_eq!(
            evs[n - 1],
            json!({"type": "response.failed", "sequence_number": n - 1, "response": {
                "id": "resp_abc123", "object": "response", "created_at": 1_700_000_000,
                "status": "failed",
                "error": {"code": "server_is_overloaded", "message": "Overloaded"},
                "incomplete_details": null, "model": "gpt-5-codex", "output": [],
                "usage": {"input_tokens": 5, "input_tokens_details": {"cached_tokens": 0},
                          "output_tokens": 1, "output_tokens_details": {"reasoning_tokens": 0},
                          "total_tokens": 6},
                "store": true, "tool_choice": "required", "parallel_tool_calls": true,
                "tools": []}})
        );
        assert_eq!(evs[n - 3]["type"], "response.output_text.delta");
        assert_eq!(evs.iter().filter(|e| e["type"] == "error").count(), 1);
        assert_eq!(terminal_events(&evs).len(), 1);
        let before = out.len();
        t.push(
            b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
            &mut out,
        );
        t.finish(&mut out);
        assert_eq!(out.len(), before);
    }

    #[test]
    fn error_types_are_mapped_to_codes() {
        for (anthropic, code) in [
            ("overloaded_error", "server_is_overloaded"),
            ("api_error", "server_error"),
            ("rate_limit_error", "rate_limit_exceeded"),
            ("invalid_request_error", "invalid_request_error"),
            ("authentication_error", "authentication_error"),
            ("permission_error", "authentication_error"),
            ("not_found_error", "not_found_error"),
            ("something_new", "server_error"),
        ] {
            let input = format!(
                "event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"{anthropic}\",\"message\":\"m\"}}}}\n\n"
            );
            let evs = events(&run(&input));
            assert_eq!(types(&evs), ["error", "response.failed"]);
            assert_eq!(evs[0]["code"], code, "{anthropic}");
            assert_eq!(evs[1]["response"]["error"]["code"], code, "{anthropic}");
        }
    }

    #[test]
    fn a_prompt_too_long_fails_with_context_length_exceeded() {
        for (kind, message, code) in [
            (
                "invalid_request_error",
                "prompt is too long: 215000 tokens > 200000 maximum",
                "context_length_exceeded",
            ),
            // A Chat provider's error, as the hub carries it.
            (
                "api_error",
                "This model's maximum context length is 128000 tokens.",
                "context_length_exceeded",
            ),
            (
                "rate_limit_error",
                "Too many tokens per minute; slow down",
                "rate_limit_exceeded",
            ),
            ("overloaded_error", "Overloaded", "server_is_overloaded"),
        ] {
            let input = format!(
                "event: error\ndata: {}\n\n",
                json!({"type": "error", "error": {"type": kind, "message": message}})
            );
            let evs = events(&run(&input));
            assert_eq!(evs[0]["code"], code, "{message}");
            let failed = &evs[1]["response"];
            assert_eq!(
                failed["error"],
                json!({"code": code, "message": message}),
                "{message}"
            );
            // Failed before the provider's answer began: nothing known of it.
            assert_eq!(failed["output"], json!([]));
            assert_eq!(failed["usage"], Value::Null);
        }
    }

    #[test]
    fn a_failed_response_holds_the_items_finished_before_the_failure() {
        // The message and the first call are done; the second call is under way.
        let cut = TOOL_STREAM
            .find(r#"{"type":"content_block_stop","index":2}"#)
            .unwrap();
        let head = TOOL_STREAM[..cut].rsplit_once("event: ").unwrap().0;
        let input = format!(
            "{head}event: error\ndata: {}\n\n",
            json!({"type": "error", "error": {"type": "api_error", "message": "boom"}})
        );
        let (out, stored) = run_pieces_with(opts(), &[input.as_bytes()]);
        assert_eq!(stored, None, "a failed response is not stored");
        let evs = events(&out);
        let done: Vec<Value> = evs
            .iter()
            .filter(|e| e["type"] == "response.output_item.done")
            .map(|e| e["item"].clone())
            .collect();
        assert_eq!(done.len(), 2);
        let terminal = terminal_events(&evs);
        assert_eq!(terminal.len(), 1);
        let failed = &terminal[0]["response"];
        assert_eq!(failed["status"], "failed");
        assert_eq!(failed["output"], Value::Array(done));
        assert_eq!(failed["usage"]["input_tokens"], 572);
        assert_eq!(
            types(&evs)[evs.len() - 2..],
            ["error", "response.failed"],
            "the failure ends the stream"
        );
    }

    #[test]
    fn input_ending_before_message_stop_is_an_error_not_a_completion() {
        let mut t = AnthropicToResponsesStream::new(opts());
        let mut out = Vec::new();
        t.push(truncated_stream().as_bytes(), &mut out);
        assert!(!t.is_failed());
        t.finish(&mut out);
        assert!(t.is_failed());
        let evs = events(&out);
        let (error, last) = (&evs[evs.len() - 2], &evs[evs.len() - 1]);
        assert_eq!(error["type"], "error");
        assert_eq!(error["code"], "server_error");
        assert!(error["message"].as_str().unwrap().contains("ended before"));
        assert_eq!(last["type"], "response.failed");
        assert_eq!(last["response"]["error"]["message"], error["message"]);
        assert!(!evs.iter().any(|e| e["type"] == "response.completed"));
        // Nothing follows.
        let len = out.len();
        t.finish(&mut out);
        assert_eq!(out.len(), len);
    }

    #[test]
    fn a_stream_that_loses_only_its_message_stop_ends_as_a_whole_one() {
        let whole = fixture!("anthropic/messages_stream.txt");
        let cut = &whole[..whole.find("event: message_stop").unwrap()];
        let mut t = AnthropicToResponsesStream::new(opts());
        let mut out = Vec::new();
        t.push(cut.as_bytes(), &mut out);
        t.finish(&mut out);
        assert!(!t.is_failed());
        let evs = events(&out);
        assert_eq!(evs.last().unwrap()["type"], "response.completed");
        assert_eq!(types(&evs), types(&events(&run(whole))));
    }

    #[test]
    fn malformed_event_fails_the_stream() {
        let evs = events(&run("event: content_block_delta\ndata: {not json\n\n"));
        assert_eq!(types(&evs), ["error", "response.failed"]);
        assert!(evs[0]["message"].as_str().unwrap().contains("malformed"));
        assert_eq!(evs[1]["response"]["error"]["code"], "server_error");
    }

    #[test]
    fn an_event_that_never_ends_fails_the_stream() {
        let mut t = AnthropicToResponsesStream::new(opts());
        let mut out = Vec::new();
        t.push(truncated_stream().as_bytes(), &mut out);
        let start = out.len();
        t.push(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"", &mut out);
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..=(crate::translate::sse::MAX_PENDING_BYTES >> 20) {
            t.push(&chunk, &mut out);
        }
        assert!(t.is_failed());
        let tail = String::from_utf8_lossy(&out[start..]).into_owned();
        assert!(tail.starts_with("event: error\n"));
        assert!(tail.contains("could not be read"));
    }

    #[test]
    fn events_without_or_with_renamed_event_names_are_dispatched_by_type() {
        let recorded = fixture!("anthropic/messages_stream.txt");
        let unnamed: String = recorded
            .lines()
            .filter(|l| !l.starts_with("event:"))
            .map(|l| format!("{l}\n"))
            .collect();
        let renamed = recorded
            .replace("event: content_block_delta", "event: message")
            .replace(
                "event: ping",
                "event: keepalive\ndata: not json\n\nevent: ping",
            );
        assert_eq!(run(&unnamed), run(recorded));
        assert_eq!(run(&renamed), run(recorded));
    }

    #[test]
    fn pings_and_comments_reach_the_client_as_keep_alive_comments() {
        // Anthropic pings while it works (and the Chat decoder makes a provider's
        // comments pings); a hop with an idle timeout must see them, once each.
        let input =
            format!(": queued\n\nevent: ping\ndata: {{\"type\": \"ping\"}}\n\n{THINKING_STREAM}");
        let expected = [
            &b": keep-alive\n\n: keep-alive\n\n"[..],
            &run(THINKING_STREAM),
        ]
        .concat();
        assert_eq!(
            String::from_utf8_lossy(&run(&input)),
            String::from_utf8_lossy(&expected)
        );
    }

    #[test]
    fn input_after_the_terminal_event_is_ignored() {
        let mut t = AnthropicToResponsesStream::new(opts());
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
            let whole = run_pieces_with(included(), &[bytes]);
            for i in 0..=bytes.len() {
                let split = run_pieces_with(included(), &[&bytes[..i], &bytes[i..]]);
                assert_eq!(split, whole, "split at {i}");
            }
            let pieces: Vec<&[u8]> = bytes.chunks(1).collect();
            assert_eq!(run_pieces_with(included(), &pieces), whole);
        }
    }

    /// The Anthropic stream of a whole message: each block streamed in two
    /// deltas, as Anthropic does.
    fn stream_of(msg: &Value) -> String {
        fn event(out: &mut String, data: Value) {
            let kind = data["type"].as_str().unwrap().to_string();
            out.push_str(&format!("event: {kind}\ndata: {data}\n\n"));
        }
        fn halves(s: &str) -> (&str, &str) {
            let mut mid = s.len() / 2;
            while !s.is_char_boundary(mid) {
                mid += 1;
            }
            s.split_at(mid)
        }
        let mut out = String::new();
        let mut usage = msg["usage"].clone();
        usage["output_tokens"] = json!(1);
        event(
            &mut out,
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
                   "role": "assistant", "content": [], "model": "claude", "usage": usage}}),
        );
        for (index, block) in msg["content"].as_array().unwrap().iter().enumerate() {
            let delta = |out: &mut String, d: Value| {
                event(
                    out,
                    json!({"type": "content_block_delta", "index": index, "delta": d}),
                );
            };
            let start = match block["type"].as_str().unwrap() {
                "text" => json!({"type": "text", "text": ""}),
                "thinking" => json!({"type": "thinking", "thinking": "", "signature": ""}),
                "tool_use" => json!({"type": "tool_use", "id": block["id"],
                                     "name": block["name"], "input": {}}),
                _ => block.clone(),
            };
            event(
                &mut out,
                json!({"type": "content_block_start", "index": index, "content_block": start}),
            );
            match block["type"].as_str().unwrap() {
                "text" => {
                    let (a, b) = halves(block["text"].as_str().unwrap());
                    for t in [a, b] {
                        delta(&mut out, json!({"type": "text_delta", "text": t}));
                    }
                }
                "thinking" => {
                    let (a, b) = halves(block["thinking"].as_str().unwrap());
                    for t in [a, b] {
                        delta(&mut out, json!({"type": "thinking_delta", "thinking": t}));
                    }
                    delta(
                        &mut out,
                        json!({"type": "signature_delta", "signature": block["signature"]}),
                    );
                }
                "tool_use" => {
                    let input = block.get("input").map(Value::to_string).unwrap_or_default();
                    let (a, b) = halves(&input);
                    for j in [a, b] {
                        delta(
                            &mut out,
                            json!({"type": "input_json_delta", "partial_json": j}),
                        );
                    }
                }
                _ => {}
            }
            event(
                &mut out,
                json!({"type": "content_block_stop", "index": index}),
            );
        }
        event(
            &mut out,
            json!({"type": "message_delta", "delta": {"stop_reason": msg["stop_reason"]},
                   "usage": {"output_tokens": msg["usage"]["output_tokens"]}}),
        );
        event(&mut out, json!({"type": "message_stop"}));
        out
    }

    fn messages() -> Vec<Value> {
        vec![
            json!({"type": "message", "id": "msg_1", "role": "assistant",
                   "content": [
                       {"type": "thinking", "thinking": "Plan: call both \"tools\".\n", "signature": "c2ln"},
                       {"type": "text", "text": "Calling "},
                       {"type": "text", "text": "tools 😊"},
                       {"type": "tool_use", "id": "toolu_1", "name": "weather__get_weather",
                        "input": {"location": "Zürich", "days": [1, 2]}},
                       {"type": "tool_use", "id": "toolu_2", "name": "get_time"},
                   ],
                   "stop_reason": "tool_use",
                   "usage": {"input_tokens": 12, "cache_read_input_tokens": 300,
                             "cache_creation_input_tokens": 40, "output_tokens": 77}}),
            json!({"type": "message", "id": "msg_2", "role": "assistant",
                   "content": [
                       {"type": "redacted_thinking", "data": "EmwKAhgB"},
                       {"type": "thinking", "thinking": "", "signature": "s"},
                       {"type": "text", "text": ""},
                       {"type": "text", "text": "Searching."},
                       {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
                        "input": {"query": "x"}},
                       {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
                       {"type": "text", "text": " Found it, but"},
                   ],
                   "stop_reason": "max_tokens",
                   "usage": {"input_tokens": 5, "output_tokens": 9}}),
            json!({"type": "message", "id": "msg_3", "role": "assistant", "content": [],
                   "stop_reason": "end_turn", "usage": {"input_tokens": 5, "output_tokens": 0}}),
        ]
    }

    #[test]
    fn final_response_equals_the_translation_of_the_whole_message() {
        for msg in messages() {
            for opts in [opts(), included()] {
                let input = stream_of(&msg);
                let (out, final_response) = run_pieces_with(opts.clone(), &[input.as_bytes()]);
                let streamed: Value = serde_json::from_slice(&final_response.unwrap()).unwrap();
                let whole: Value = serde_json::from_slice(
                    &anthropic_to_responses_response(msg.to_string().as_bytes(), &opts).unwrap(),
                )
                .unwrap();
                assert_eq!(streamed, whole, "{msg}");

                // The terminal event carries it, and the items done along
                // the way are its output.
                let evs = events(&out);
                let last = evs.last().unwrap();
                assert_eq!(last["response"], whole);
                let done: Vec<Value> = evs
                    .iter()
                    .filter(|e| e["type"] == "response.output_item.done")
                    .map(|e| e["item"].clone())
                    .collect();
                assert_eq!(Value::Array(done), whole["output"]);
            }
        }
    }

    #[test]
    fn generated_streams_split_anywhere_give_identical_output() {
        let input = stream_of(&messages()[0]);
        let bytes = input.as_bytes();
        let whole = run_pieces_with(included(), &[bytes]);
        for i in (0..=bytes.len()).step_by(7) {
            let split = run_pieces_with(included(), &[&bytes[..i], &bytes[i..]]);
            assert_eq!(split, whole, "split at {i}");
        }
    }
}
