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
//! no input gets `{}`.
//!
//! An upstream `error` event, a malformed event, or input ending before
//! `message_stop` ends the stream with one `error` event; nothing follows it,
//! in particular never a terminal response event.
//!
//! [`anthropic_to_responses_response`]: super::anthropic_to_responses_response

use super::response::{
    item_separator, write_function_call_item, write_message_item, write_output_text_part,
    write_reasoning_item, write_summary_part, Arguments, ResponseHead, Status, Usage,
};
use super::{ReasoningState, ResponsesOptions};
use crate::translate::anthropic_to_openai_error::openai_error_type_for_anthropic_type;
use crate::translate::anthropic_to_openai_response::AnthropicUsageIn;
use crate::translate::json_writer::{write_compact, write_str, write_u64};
use crate::translate::sse::{SseError, SseEventRef};
use crate::translate::sse_translator::{
    unreadable_message, EventTranslation, Phase, SseTranslator,
};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Incremental translator from Anthropic SSE bytes to Responses API SSE bytes.
#[derive(Debug)]
pub struct AnthropicToResponsesStream {
    inner: SseTranslator<State>,
}

impl AnthropicToResponsesStream {
    /// Creates a translator for one response stream, described by `opts`.
    pub fn new(opts: ResponsesOptions) -> Self {
        Self {
            inner: SseTranslator::new(State {
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
                final_response: None,
                phase: Phase::Streaming,
            }),
        }
    }

    /// Translates a chunk of upstream bytes, appending Responses SSE bytes to
    /// `out`. Input after the end of the stream or an error is ignored.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        self.inner.push(chunk, out);
    }

    /// Signals the end of upstream input. Emits an `error` event when the
    /// stream was cut short; nothing after the terminal event or an error.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.inner.finish(out);
    }

    /// True once an `error` event has been emitted; the stream must then be
    /// closed as it is.
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
        text: String,
    },
    Function {
        head: ItemHead,
        call_id: String,
        /// The provider's tool name (flattened for namespace tools).
        name: String,
        arguments: String,
    },
    Reasoning {
        head: ItemHead,
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
    final_response: Option<Vec<u8>>,
    phase: Phase,
}

const TRUNCATED: &str =
    "the provider's stream ended before the response was complete; retry the request";
const MALFORMED: &str = "the provider sent a malformed stream event; retry the request";
const UPSTREAM_ERROR: &str = "the provider reported an error mid-stream; retry the request";
/// The `error` event's code for failures on the provider's side.
const SERVER_ERROR: &str = "server_error";

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

/// The `error` event's `code` for an Anthropic error type: the OpenAI error
/// type the gateway uses for it elsewhere, except that provider failures and
/// rate limits get the codes Responses clients know (`server_error`,
/// `rate_limit_exceeded`).
fn error_code(anthropic_type: Option<&str>) -> &'static str {
    match anthropic_type.and_then(openai_error_type_for_anthropic_type) {
        Some("rate_limit_error") => "rate_limit_exceeded",
        Some("provider_error") | None => SERVER_ERROR,
        Some(other) => other,
    }
}

impl EventTranslation for State {
    fn phase(&self) -> Phase {
        self.phase
    }

    fn handle(&mut self, ev: SseEventRef<'_>, out: &mut Vec<u8>) {
        State::handle(self, ev, out);
    }

    fn end_of_input(&mut self, out: &mut Vec<u8>) {
        self.fail(out, SERVER_ERROR, TRUNCATED);
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
    content_block: StartBlock<'a>,
}

#[derive(Deserialize)]
struct StartBlock<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    thinking: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    signature: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
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
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    thinking: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    signature: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    partial_json: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct BlockStop {
    index: u64,
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
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ErrorEvent<'a> {
    #[serde(borrow)]
    error: ErrorDetail<'a>,
}

#[derive(Deserialize)]
struct ErrorDetail<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
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
            // ping and future event types carry nothing a client needs.
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
                let head = self.open_item(out, "rs", |out, id| {
                    write_reasoning_item(out, id, "", None);
                });
                self.open = OpenItem::Reasoning {
                    head,
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
                let head = self.open_item(out, "rs", |out, id| {
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
                    arguments: String::new(),
                };
                // Streams carry the input in deltas after an empty `{}`;
                // a start that already has the input counts as a delta.
                if let Some(input) = block.input {
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
        let ev: BlockDelta = serde_json::from_str(data)?;
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
        let code = error_code(detail.and_then(|d| d.kind.as_deref()));
        let message = detail
            .and_then(|d| d.message.as_deref())
            .filter(|m| !m.is_empty())
            .unwrap_or(UPSTREAM_ERROR);
        self.fail(out, code, message);
    }

    /// Starts the next output item, sending `response.output_item.added`
    /// with the item as `write` writes it for its id.
    fn open_item(
        &mut self,
        out: &mut Vec<u8>,
        kind: &str,
        write: impl FnOnce(&mut Vec<u8>, &str),
    ) -> ItemHead {
        let head = self.next_head(kind);
        Self::added(out, &mut self.seq, &head, write);
        head
    }

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
            let head = self.open_item(out, "msg", |out, id| write_message_item(out, id, None));
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
                text: String::new(),
            };
        }
        if let OpenItem::Message { head, text } = &mut self.open {
            text.push_str(t);
            item_event(
                out,
                &mut self.seq,
                "response.output_text.delta",
                head,
                |out| {
                    out.extend_from_slice(b"\"content_index\":0,\"delta\":");
                    write_str(out, t);
                    out.extend_from_slice(b",\"logprobs\":[],");
                },
            );
        }
    }

    /// Streams thinking into the open reasoning item's summary.
    fn thinking_delta(&mut self, out: &mut Vec<u8>, t: &str) {
        let OpenItem::Reasoning {
            head,
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
        thinking.push_str(t);
        item_event(
            out,
            &mut self.seq,
            "response.reasoning_summary_text.delta",
            head,
            |out| {
                out.extend_from_slice(b"\"summary_index\":0,\"delta\":");
                write_str(out, t);
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
            arguments.push_str(json);
            item_event(
                out,
                &mut self.seq,
                "response.function_call_arguments.delta",
                head,
                |out| {
                    out.extend_from_slice(b"\"delta\":");
                    write_str(out, json);
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
                item_event(
                    out,
                    &mut self.seq,
                    "response.output_text.done",
                    &head,
                    |out| {
                        out.extend_from_slice(b"\"content_index\":0,\"text\":");
                        write_str(out, &text);
                        out.extend_from_slice(b",\"logprobs\":[],");
                    },
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
                if arguments.is_empty() {
                    // A call without input: its deltas add up to `{}`, as the
                    // whole answer's arguments do.
                    arguments.push_str("{}");
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
                item_event(
                    out,
                    &mut self.seq,
                    "response.function_call_arguments.done",
                    &head,
                    |out| {
                        out.extend_from_slice(b"\"name\":");
                        write_str(out, client_name);
                        out.extend_from_slice(b",\"arguments\":");
                        write_str(out, &arguments);
                        out.push(b',');
                    },
                );
                item_done(&mut self.output, &mut self.seq, out, &head, |out| {
                    write_function_call_item(
                        out,
                        &head.id,
                        true,
                        &call_id,
                        &name,
                        tool_names,
                        Arguments::Text(&arguments),
                    );
                });
            }
            OpenItem::Reasoning {
                head,
                thinking,
                signature,
                part_open,
            } => {
                if part_open {
                    item_event(
                        out,
                        &mut self.seq,
                        "response.reasoning_summary_text.done",
                        &head,
                        |out| {
                            out.extend_from_slice(b"\"summary_index\":0,\"text\":");
                            write_str(out, &thinking);
                            out.push(b',');
                        },
                    );
                    item_event(
                        out,
                        &mut self.seq,
                        "response.reasoning_summary_part.done",
                        &head,
                        |out| {
                            out.extend_from_slice(b"\"summary_index\":0,\"part\":");
                            write_summary_part(out, &thinking);
                            out.push(b',');
                        },
                    );
                }
                let encrypted = self.opts.include_encrypted_reasoning.then(|| {
                    ReasoningState::Thinking {
                        thinking: thinking.clone(),
                        signature,
                    }
                    .encode()
                });
                item_done(&mut self.output, &mut self.seq, out, &head, |out| {
                    write_reasoning_item(out, &head.id, &thinking, encrypted.as_deref());
                });
            }
        }
    }

    /// Sends the `error` event and stops the stream for good.
    fn fail(&mut self, out: &mut Vec<u8>, code: &str, message: &str) {
        if self.phase != Phase::Streaming {
            return;
        }
        self.phase = Phase::Failed;
        self.open = OpenItem::None;
        self.output = Vec::new();
        begin_event(out, "error");
        out.extend_from_slice(b"\"code\":");
        write_str(out, code);
        out.extend_from_slice(b",\"message\":");
        write_str(out, message);
        out.extend_from_slice(b",\"param\":null,");
        end_event(out, &mut self.seq);
    }
}
