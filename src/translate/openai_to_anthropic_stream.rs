//! OpenAI `chat.completion.chunk` stream → Anthropic Messages stream.
//!
//! Output always starts with `message_start`. Reasoning, text and each tool
//! call become content blocks: a block is opened (`content_block_start`)
//! right before its first delta and closed (`content_block_stop`) exactly
//! once, when another kind of content starts or the choice finishes. The
//! stream ends with `message_delta` (stop reason and usage) and
//! `message_stop` at `[DONE]`, or at the upstream end once a `finish_reason`
//! was seen; `[DONE]` without a `finish_reason` is taken as a normal end.
//! An upstream error, a malformed chunk or an end without a finish produces
//! one `event: error` and nothing after it. Each of the provider's keep-alive
//! comments becomes a `ping` event.
//!
//! Usage is only known at the end, so `message_start` reports zeros and
//! `message_delta` carries the real input and output counts.

use super::json_writer::{write_str, write_u64};
use super::openai_content_chunk::content_chunk;
use super::openai_text_members::{Content, LenientStr};
use super::openai_to_anthropic_error::OpenAiErrorOrString;
use super::openai_to_anthropic_response::{
    anthropic_message_id, anthropic_stop_reason, generated_tool_use_id, AnthropicUsageOut,
    MessageOptions, OpenAiUsageIn,
};
use super::sse::{write_json_event, SseError, SseEventRef, PING_EVENT};
use super::sse_driver::{unreadable_message, EventHandler, Phase, SseDriver};
use super::thought_signature;
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// Incremental translator from OpenAI SSE bytes to Anthropic SSE bytes.
#[derive(Debug)]
pub struct OpenAiToAnthropicStream {
    inner: SseDriver<State>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Text,
    Thinking,
    /// A tool call, by its OpenAI `tool_calls[].index`.
    Tool(u32),
}

#[derive(Debug, Clone, Copy)]
struct OpenBlock {
    index: u32,
    kind: BlockKind,
}

#[derive(Debug)]
struct State {
    model: String,
    started: bool,
    next_index: u32,
    open: Option<OpenBlock>,
    /// OpenAI index → provider id (empty without one) of the last call started at
    /// that index, to spot a provider returning to an earlier (closed) call (hashed:
    /// a stream of many calls is not read once per call).
    tools_seen: crate::lookup::LookupMap<u32, String>,
    /// The highest index in `tools_seen`: the next call without an index comes after it.
    last_tool_seen: Option<u32>,
    /// Provider id of the most recently started tool call.
    last_tool_id: String,
    stop_reason: Option<&'static str>,
    /// What the answer's text was: a refusal alone ends as Anthropic's `refusal`, as a
    /// whole answer does.
    said: Said,
    usage: OpenAiUsageIn,
    phase: Phase,
}

/// The kinds of answer text a stream has carried so far.
#[derive(Debug, Default, Clone, Copy)]
struct Said {
    content: bool,
    refusal: bool,
}

const TRUNCATED: &str =
    "the provider's stream ended before the response was complete; retry the request";
const MALFORMED: &str = "the provider sent a malformed stream event; retry the request";
const INTERLEAVED: &str = "the provider interleaved the arguments of several tool calls, which cannot be streamed as Anthropic content blocks; retry, or disable parallel tool use";

impl OpenAiToAnthropicStream {
    /// Creates a translator for one response stream.
    pub fn new(opts: MessageOptions) -> Self {
        Self {
            inner: SseDriver::new(State {
                model: opts.model,
                started: false,
                next_index: 0,
                open: None,
                tools_seen: Default::default(),
                last_tool_seen: None,
                last_tool_id: String::new(),
                stop_reason: None,
                said: Said::default(),
                usage: OpenAiUsageIn::default(),
                phase: Phase::Streaming,
            }),
        }
    }

    /// Translates a chunk of upstream bytes, appending Anthropic SSE bytes
    /// to `out`. Input after the end of the stream or an error is ignored.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        self.inner.push(chunk, out);
    }

    /// Signals the end of upstream input: completes the message if the
    /// provider had finished, otherwise emits an error event.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.inner.finish(out);
    }

    /// True once an error event has been emitted; no `message_stop` follows.
    pub fn is_failed(&self) -> bool {
        self.inner.phase() == Phase::Failed
    }

    /// True once `message_stop` has been emitted.
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
        // Anthropic's SDKs skip a ping wherever it comes, before `message_start` too.
        if self.phase == Phase::Streaming {
            out.extend_from_slice(PING_EVENT);
        }
    }

    fn end_of_input(&mut self, out: &mut Vec<u8>) {
        // A provider that said why it stopped but dropped its [DONE] still finished.
        if self.stop_reason.is_some() {
            self.complete(out);
        } else {
            self.fail(out, "api_error", TRUNCATED);
        }
    }

    fn unreadable(&mut self, out: &mut Vec<u8>, error: SseError) {
        self.fail(out, "api_error", &unreadable_message(error));
    }
}

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    choices: Option<FirstChoice<'a>>,
    #[serde(default)]
    usage: Option<OpenAiUsageIn>,
    #[serde(borrow, default)]
    error: Option<OpenAiErrorOrString<'a>>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default)]
    index: Option<u32>,
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
    #[serde(borrow, default, deserialize_with = "finish_reason")]
    finish_reason: Option<Cow<'a, str>>,
}

/// A choice's `finish_reason`, where the `""` and `"null"` that SGLang, older Ollama
/// and KoboldCpp write on every chunk still streaming read as none: taken for a
/// finish, they would close a block per token.
fn finish_reason<'de: 'a, 'a, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    let reason = crate::translate::borrowed_text::optional(d)?;
    Ok(reason.filter(|r| !r.is_empty() && r != "null"))
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow, default)]
    content: Option<Content<'a>>,
    #[serde(borrow, default)]
    reasoning_content: Option<LenientStr<'a>>,
    #[serde(borrow, default)]
    reasoning: Option<LenientStr<'a>>,
    #[serde(borrow, default)]
    refusal: Option<LenientStr<'a>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<ToolCallDelta<'a>>>,
}

#[derive(Deserialize)]
struct ToolCallDelta<'a> {
    #[serde(default)]
    index: Option<u32>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    function: Option<FunctionDelta<'a>>,
    #[serde(borrow, default)]
    extra_content: Option<crate::translate::thought_signature::ExtraContent<'a>>,
}

#[derive(Deserialize)]
struct FunctionDelta<'a> {
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    name: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    arguments: Option<Cow<'a, str>>,
}

/// The first choice of a chunk's `choices` with index 0 (or none). Every
/// choice is still read, so a malformed one fails the chunk, but only this
/// one is kept: no list is built for each chunk.
struct FirstChoice<'a>(Option<Choice<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for FirstChoice<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = FirstChoice<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of choices")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut first = None;
                while let Some(choice) = seq.next_element::<Choice<'a>>()? {
                    if first.is_none() && choice.index.unwrap_or(0) == 0 {
                        first = Some(choice);
                    }
                }
                Ok(FirstChoice(first))
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event<'a> {
    MessageStart {
        message: StartMessage<'a>,
    },
    ContentBlockStart {
        index: u32,
        content_block: StartBlock<'a>,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: MessageDeltaBody,
        usage: AnthropicUsageOut,
    },
    MessageStop,
    Error {
        error: ErrorBody<'a>,
    },
}

impl Event<'_> {
    fn name(&self) -> &'static str {
        match self {
            Self::MessageStart { .. } => "message_start",
            Self::ContentBlockStart { .. } => "content_block_start",
            Self::ContentBlockStop { .. } => "content_block_stop",
            Self::MessageDelta { .. } => "message_delta",
            Self::MessageStop => "message_stop",
            Self::Error { .. } => "error",
        }
    }
}

#[derive(Serialize)]
struct StartMessage<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: [(); 0],
    stop_reason: Option<()>,
    stop_sequence: Option<()>,
    usage: AnthropicUsageOut,
}

/// Serializes as `{}`.
#[derive(Serialize)]
struct EmptyObject {}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlock<'a> {
    Text {
        text: &'static str,
    },
    Thinking {
        thinking: &'static str,
        signature: &'static str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: EmptyObject,
    },
}

/// A `content_block_delta` event's delta, written by [`State::write_delta`].
enum BlockDelta<'a> {
    Text { text: &'a str },
    Thinking { thinking: &'a str },
    Signature { signature: &'a str },
    InputJson { partial_json: &'a str },
}

#[derive(Serialize)]
struct MessageDeltaBody {
    stop_reason: &'static str,
    stop_sequence: Option<()>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

impl State {
    fn handle(&mut self, ev: SseEventRef<'_>, out: &mut Vec<u8>) {
        let data = ev.data.trim();
        if data == "[DONE]" {
            return self.complete(out);
        }
        if data.is_empty() {
            return;
        }
        // Most chunks carry only text: read those without serde, to the
        // same values serde would give.
        if let Some(chunk) = content_chunk(data) {
            self.ensure_started(out, chunk.id);
            let thinking = chunk.reasoning_content.filter(|t| !t.is_empty());
            return self.texts(
                out,
                thinking.or(chunk.reasoning),
                chunk.content,
                chunk.refusal,
            );
        }
        let chunk: Chunk = match serde_json::from_str(data) {
            Ok(c) => c,
            Err(_) => return self.fail(out, "api_error", MALFORMED),
        };
        if let Some(err) = &chunk.error {
            let message = err
                .message()
                .unwrap_or("the provider reported an error mid-stream; retry the request");
            return self.fail(out, err.anthropic_stream_type(), message);
        }
        self.ensure_started(out, chunk.id.as_deref());
        if let Some(u) = chunk.usage {
            self.usage = u;
        }
        let Some(choice) = chunk.choices.as_ref().and_then(|c| c.0.as_ref()) else {
            return;
        };
        if let Some(delta) = &choice.delta {
            let thinking = LenientStr::non_empty(&delta.reasoning_content)
                .or_else(|| LenientStr::non_empty(&delta.reasoning));
            let refusal = LenientStr::non_empty(&delta.refusal);
            match &delta.content {
                Some(chunks @ Content::Chunks(_)) => {
                    self.texts(out, thinking, None, None);
                    chunks.each_chunk_text(&mut |thinking, text| {
                        self.chunk_text(out, thinking, text)
                    });
                    self.texts(out, None, None, refusal);
                }
                content => {
                    let text = content.as_ref().and_then(Content::text);
                    self.texts(out, thinking, text.filter(|t| !t.is_empty()), refusal);
                }
            }
            for call in delta.tool_calls.iter().flatten() {
                self.tool_call(out, call);
                if self.phase != Phase::Streaming {
                    return;
                }
            }
        }
        if let Some(finish) = choice.finish_reason.as_deref() {
            self.close_open(out);
            let refused = self.said.refusal && !self.said.content && self.tools_seen.is_empty();
            self.stop_reason = Some(if refused {
                "refusal"
            } else {
                anthropic_stop_reason(Some(finish), !self.tools_seen.is_empty())
            });
        }
    }

    /// The text members of a delta, in the order they become blocks; empty
    /// ones are skipped.
    fn texts(
        &mut self,
        out: &mut Vec<u8>,
        thinking: Option<&str>,
        content: Option<&str>,
        refusal: Option<&str>,
    ) {
        let said = |text: Option<&str>| text.is_some_and(|t| !t.is_empty());
        self.said.content |= said(content);
        self.said.refusal |= said(refusal);
        let texts = [
            (BlockKind::Thinking, thinking),
            (BlockKind::Text, content),
            (BlockKind::Text, refusal),
        ];
        for (kind, text) in texts {
            if let Some(text) = text.filter(|t| !t.is_empty()) {
                self.text_like(out, kind, text);
            }
        }
    }

    /// One text of a `content` list of chunks (Mistral's), thinking or answer.
    fn chunk_text(&mut self, out: &mut Vec<u8>, thinking: bool, text: &str) {
        if text.is_empty() {
            return;
        }
        let kind = if thinking {
            BlockKind::Thinking
        } else {
            self.said.content = true;
            BlockKind::Text
        };
        self.text_like(out, kind, text);
    }

    fn ensure_started(&mut self, out: &mut Vec<u8>, id: Option<&str>) {
        if self.started {
            return;
        }
        self.started = true;
        let id = anthropic_message_id(id);
        let ev = Event::MessageStart {
            message: StartMessage {
                id: &id,
                kind: "message",
                role: "assistant",
                model: &self.model,
                content: [],
                stop_reason: None,
                stop_sequence: None,
                usage: AnthropicUsageOut::default(),
            },
        };
        Self::write(&mut self.phase, out, &ev);
    }

    /// Text or thinking content: continues the open block of that kind or
    /// opens a new one.
    fn text_like(&mut self, out: &mut Vec<u8>, kind: BlockKind, text: &str) {
        let index = match self.open {
            Some(b) if b.kind == kind => b.index,
            _ => {
                let block = match kind {
                    BlockKind::Thinking => StartBlock::Thinking {
                        thinking: "",
                        signature: "",
                    },
                    _ => StartBlock::Text { text: "" },
                };
                self.open_block(out, kind, block)
            }
        };
        let delta = match kind {
            BlockKind::Thinking => BlockDelta::Thinking { thinking: text },
            _ => BlockDelta::Text { text },
        };
        Self::write_delta(self.phase, out, index, &delta);
    }

    fn tool_call(&mut self, out: &mut Vec<u8>, call: &ToolCallDelta<'_>) {
        let open_tool = match self.open {
            Some(OpenBlock {
                kind: BlockKind::Tool(k),
                index,
            }) => Some((k, index)),
            _ => None,
        };
        let id = call.id.as_deref().filter(|id| !id.is_empty());
        let name = call
            .function
            .as_ref()
            .and_then(|f| f.name.as_deref())
            .unwrap_or("");
        // A new id with a name starts a new call even at an index in use: Ollama
        // numbers parallel calls all 0 (ollama/ollama#15457). The name is required as
        // some servers repeat a placeholder id on every fragment of one call.
        let starts_call = |earlier: &str| !name.is_empty() && id.is_some_and(|id| id != earlier);
        // Without an index, a new id means a new call; no id or the open
        // call's id (some servers repeat it) continues the open one.
        let k = match (call.index, open_tool) {
            (Some(k), _) => k,
            (None, Some((k, _))) if id.is_none_or(|id| id == self.last_tool_id) => k,
            (None, _) => self.last_tool_seen.map_or(0, |m| m.saturating_add(1)),
        };
        let block_index = match open_tool {
            Some((open_k, index)) if open_k == k && !starts_call(&self.last_tool_id) => index,
            _ => {
                let returns = self
                    .tools_seen
                    .get(&k)
                    .is_some_and(|earlier| !starts_call(earlier));
                if returns {
                    return self.fail(out, "api_error", INTERLEAVED);
                }
                self.tools_seen.insert(k, id.unwrap_or("").to_owned());
                self.last_tool_seen = self.last_tool_seen.max(Some(k));
                self.last_tool_id.clear();
                if let Some(signature) = call
                    .extra_content
                    .as_ref()
                    .and_then(|e| e.thought_signature())
                {
                    self.signed_thinking(out, signature);
                }
                let generated;
                let id = match id {
                    Some(id) => {
                        self.last_tool_id.push_str(id);
                        id
                    }
                    None => {
                        generated = generated_tool_use_id();
                        &generated
                    }
                };
                let block = StartBlock::ToolUse {
                    id,
                    name,
                    input: EmptyObject {},
                };
                self.open_block(out, BlockKind::Tool(k), block)
            }
        };
        let args = call
            .function
            .as_ref()
            .and_then(|f| f.arguments.as_deref())
            .unwrap_or("");
        if !args.is_empty() {
            let delta = BlockDelta::InputJson { partial_json: args };
            Self::write_delta(self.phase, out, block_index, &delta);
        }
    }

    /// Gemini's thought signature on a tool call, as a thinking block of its own
    /// before the call: where an Anthropic-format client keeps it for the next turn,
    /// tagged as Gemini's (see `thought_signature`).
    fn signed_thinking(&mut self, out: &mut Vec<u8>, geminis_signature: &str) {
        let block = StartBlock::Thinking {
            thinking: "",
            signature: "",
        };
        let index = self.open_block(out, BlockKind::Thinking, block);
        let signature = &thought_signature::tagged(geminis_signature);
        Self::write_delta(self.phase, out, index, &BlockDelta::Signature { signature });
        self.close_open(out);
    }

    fn open_block(&mut self, out: &mut Vec<u8>, kind: BlockKind, block: StartBlock<'_>) -> u32 {
        self.close_open(out);
        let index = self.next_index;
        self.next_index = self.next_index.saturating_add(1);
        self.open = Some(OpenBlock { index, kind });
        Self::write(
            &mut self.phase,
            out,
            &Event::ContentBlockStart {
                index,
                content_block: block,
            },
        );
        index
    }

    fn close_open(&mut self, out: &mut Vec<u8>) {
        if let Some(b) = self.open.take() {
            Self::write(
                &mut self.phase,
                out,
                &Event::ContentBlockStop { index: b.index },
            );
        }
    }

    /// Ends the message normally: closes the open block, then emits
    /// `message_delta` and `message_stop`.
    fn complete(&mut self, out: &mut Vec<u8>) {
        if self.phase != Phase::Streaming {
            return;
        }
        self.ensure_started(out, None);
        self.close_open(out);
        let stop_reason = self
            .stop_reason
            .unwrap_or_else(|| anthropic_stop_reason(None, !self.tools_seen.is_empty()));
        let ev = Event::MessageDelta {
            delta: MessageDeltaBody {
                stop_reason,
                stop_sequence: None,
            },
            usage: self.usage.to_anthropic(),
        };
        Self::write(&mut self.phase, out, &ev);
        Self::write(&mut self.phase, out, &Event::MessageStop);
        if self.phase == Phase::Streaming {
            self.phase = Phase::Done;
        }
    }

    /// Emits an Anthropic error event and stops the stream for good.
    fn fail(&mut self, out: &mut Vec<u8>, kind: &str, message: &str) {
        if self.phase != Phase::Streaming {
            return;
        }
        let ev = Event::Error {
            error: ErrorBody { kind, message },
        };
        Self::write(&mut self.phase, out, &ev);
        if self.phase == Phase::Streaming {
            self.phase = Phase::Failed;
        }
    }

    /// Writes a `content_block_delta` event unless the stream has ended.
    /// Written by hand rather than through serde like the other events:
    /// one is written per chunk.
    fn write_delta(phase: Phase, out: &mut Vec<u8>, index: u32, delta: &BlockDelta<'_>) {
        if phase != Phase::Streaming {
            return;
        }
        let (kind, key, value) = match delta {
            BlockDelta::Text { text } => ("text_delta", "text", text),
            BlockDelta::Thinking { thinking } => ("thinking_delta", "thinking", thinking),
            BlockDelta::Signature { signature } => ("signature_delta", "signature", signature),
            BlockDelta::InputJson { partial_json } => {
                ("input_json_delta", "partial_json", partial_json)
            }
        };
        out.extend_from_slice(
            b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":",
        );
        write_u64(out, u64::from(index));
        out.extend_from_slice(b",\"delta\":{\"type\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\",\"");
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        write_str(out, value);
        out.extend_from_slice(b"}}\n\n");
    }

    /// Writes one event unless the stream has ended. Takes the phase alone
    /// so events may borrow other fields of the state.
    fn write(phase: &mut Phase, out: &mut Vec<u8>, ev: &Event<'_>) {
        if *phase != Phase::Streaming {
            return;
        }
        if write_json_event(out, Some(ev.name()), ev).is_err() {
            // Serializing these plain structs cannot fail; if it ever did,
            // end the stream with a fixed error rather than emit a gap.
            *phase = Phase::Failed;
            out.extend_from_slice(
                b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"internal translation error\"}}\n\n",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::SseParser;
    use serde_json::{json, Value};

    /// OpenAI's tool-call streaming shape: id and name first, then argument
    /// fragments, `finish_reason: tool_calls`, then a usage-only chunk.
    const TOOL_STREAM: &str = r#"data: {"id":"chatcmpl-T1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_A","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-T1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"loc"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-T1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ation\": \"Zürich\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-T1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_B","type":"function","function":{"name":"get_time","arguments":""}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-T1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"tz\":\"CET\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-T1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"usage":null}

data: {"id":"chatcmpl-T1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":82,"completion_tokens":17,"total_tokens":99,"prompt_tokens_details":{"cached_tokens":64}}}

data: [DONE]

"#;

    /// Reasoning, then text, then a tool call, with CRLF line endings and a
    /// keep-alive comment.
    const MIXED_STREAM: &str = ": keep-alive\r\n\r\n\
data: {\"id\":\"chatcmpl-M\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"reasoning_content\":\"Think \"}}]}\r\n\r\n\
data: {\"id\":\"chatcmpl-M\",\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"hard — ü\"}}]}\r\n\r\n\
data: {\"id\":\"chatcmpl-M\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Answer\"}}]}\r\n\r\n\
data: {\"id\":\"chatcmpl-M\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\": 42\"}}]}\r\n\r\n\
data: {\"id\":\"chatcmpl-M\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}}]}\r\n\r\n\
data: {\"id\":\"chatcmpl-M\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":9}}\r\n\r\n\
data: [DONE]\r\n\r\n";

    const ERROR_STREAM: &str = r#"data: {"id":"chatcmpl-E","choices":[{"index":0,"delta":{"role":"assistant","content":"Par"}}]}

data: {"error":{"message":"The server is overloaded","type":"server_error","code":"server_overloaded"}}

data: {"id":"chatcmpl-E","choices":[{"index":0,"delta":{"content":"tial"}}]}

data: [DONE]

"#;

    /// A stream that ends after a finish_reason but without `[DONE]`.
    const NO_DONE_STREAM: &str = r#"data: {"id":"chatcmpl-N","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}

data: {"id":"chatcmpl-N","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}
"#;

    /// A stream cut off mid-answer.
    const TRUNCATED_STREAM: &str = r#"data: {"id":"chatcmpl-X","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}

data: {"id":"chatcmpl-X","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":"{\"a\""}}]}}]}

"#;

    /// `finish_reason: ""` and `"null"` on chunks still streaming, as SGLang, older
    /// Ollama and KoboldCpp write them: text, then a tool call in two fragments.
    const EMPTY_FINISH_STREAM: &str = concat!(
        "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":\"\"}]}\n\n",
        "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"null\"}]}\n\n",
        "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":\"}}]},\"finish_reason\":\"\"}]}\n\n",
        "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"1}\"}}]},\"finish_reason\":\"null\"}]}\n\n",
        "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: [DONE]\n\n"
    );

    /// Parallel calls all at `index: 0` (Ollama, ollama/ollama#15457): each whole
    /// in one chunk, or in fragments, and one after a newline of text.
    const SAME_INDEX_STREAM: &str = concat!(
        "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"id\":\"call_a\",\"index\":0,\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1}\"}}]}}]}\n\n",
        "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"id\":\"call_b\",\"index\":0,\"type\":\"function\",\"function\":{\"name\":\"g\",\"arguments\":\"{\\\"b\\\":\"}}]}}]}\n\n",
        "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"2}\"}}]}}]}\n\n",
        "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\\n\"}}]}\n\n",
        "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"id\":\"call_c\",\"index\":0,\"type\":\"function\",\"function\":{\"name\":\"h\",\"arguments\":\"{}\"}}]}}]}\n\n",
        "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: [DONE]\n\n"
    );

    /// Mistral's reasoning models (docs.mistral.ai/capabilities/reasoning; `ThinkChunk`
    /// in mistralai/client-python): thinking as a `content` list of typed chunks, then
    /// the answer as plain strings or text chunks.
    const MISTRAL_THINKING_STREAM: &str = concat!(
        "data: {\"id\":\"m\",\"model\":\"magistral-medium-latest\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":[{\"type\":\"thinking\",\"thinking\":[{\"type\":\"text\",\"text\":\"Two and \"}]}]},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"m\",\"model\":\"magistral-medium-latest\",\"choices\":[{\"index\":0,\"delta\":{\"content\":[{\"type\":\"thinking\",\"thinking\":[{\"type\":\"reference\",\"reference_ids\":[1]},{\"type\":\"text\",\"text\":\"two.\"}]}]},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"m\",\"model\":\"magistral-medium-latest\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"It is\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"m\",\"model\":\"magistral-medium-latest\",\"choices\":[{\"index\":0,\"delta\":{\"content\":[{\"type\":\"text\",\"text\":\" 4\"},{\"type\":\"text\",\"text\":\".\"}]},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"m\",\"model\":\"magistral-medium-latest\",\"choices\":[{\"index\":0,\"delta\":{\"content\":[{\"type\":\"thinking\",\"thinking\":[{\"type\":\"text\",\"text\":\"Sure?\"}]},{\"type\":\"text\",\"text\":\" Yes.\"}]},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"m\",\"model\":\"magistral-medium-latest\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":7}}\n\n",
        "data: [DONE]\n\n"
    );

    /// DeepSeek writes `: keep-alive` for as long as a request queues, OpenRouter
    /// `: OPENROUTER PROCESSING`: a hop with an idle timeout must see them, once each.
    const COMMENTED_STREAM: &str = concat!(
        ": keep-alive\n\n",
        ": OPENROUTER PROCESSING\n\n",
        "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        ": keep-alive\n\n",
        "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: [DONE]\n\n"
    );

    fn opts() -> MessageOptions {
        MessageOptions {
            model: "claude-sonnet-4".into(),
        }
    }

    fn run_pieces(pieces: &[&[u8]]) -> Vec<u8> {
        let mut t = OpenAiToAnthropicStream::new(opts());
        let mut out = Vec::new();
        for p in pieces {
            t.push(p, &mut out);
        }
        t.finish(&mut out);
        out
    }

    fn run(input: &str) -> Vec<u8> {
        run_pieces(&[input.as_bytes()])
    }

    /// Output as (event name, data) pairs; asserts event name and type agree.
    fn events(out: &[u8]) -> Vec<(String, Value)> {
        let mut p = SseParser::new();
        p.feed(out);
        p.finish();
        let mut v = Vec::new();
        while let Some(e) = p.next_event() {
            let name = e.event.unwrap();
            let data: Value = serde_json::from_str(&e.data).unwrap();
            assert_eq!(data["type"], name.as_str());
            v.push((name, data));
        }
        v
    }

    fn names(evs: &[(String, Value)]) -> Vec<&str> {
        evs.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn block_text(evs: &[(String, Value)], field: &str) -> String {
        evs.iter()
            .filter_map(|(_, d)| d["delta"][field].as_str().map(str::to_owned))
            .collect()
    }

    /// Checks the Anthropic stream grammar.
    fn assert_invariants(out: &[u8]) {
        let evs = events(out);
        assert!(!evs.is_empty());
        let mut open: Vec<u64> = Vec::new();
        let mut closed: Vec<u64> = Vec::new();
        let mut started = false;
        let mut saw_message_delta = false;
        let mut ended = false;
        // Pings (the provider's keep-alives) may come anywhere before the end.
        let others = evs.iter().filter(|(name, _)| name != "ping");
        for (i, (name, d)) in others.enumerate() {
            assert!(!ended, "event after stream end: {name}");
            match name.as_str() {
                "message_start" => {
                    assert_eq!(i, 0, "message_start must come first");
                    started = true;
                }
                "content_block_start" => {
                    assert!(started);
                    let idx = d["index"].as_u64().unwrap();
                    assert!(open.is_empty(), "a block is still open");
                    assert!(!closed.contains(&idx), "index reused");
                    assert_eq!(idx, closed.len() as u64, "indices are sequential");
                    open.push(idx);
                }
                "content_block_delta" => {
                    let idx = d["index"].as_u64().unwrap();
                    assert_eq!(open, [idx], "delta for a block that is not open");
                }
                "content_block_stop" => {
                    let idx = d["index"].as_u64().unwrap();
                    assert_eq!(open, [idx], "stop for a block that is not open");
                    open.clear();
                    closed.push(idx);
                }
                "message_delta" => {
                    assert!(open.is_empty(), "message_delta with an open block");
                    saw_message_delta = true;
                }
                "message_stop" => {
                    assert!(saw_message_delta, "message_stop before message_delta");
                    ended = true;
                }
                "error" => ended = true,
                other => panic!("unexpected event {other}"),
            }
        }
        assert!(ended, "stream must end with message_stop or error");
    }

    fn all_inputs() -> Vec<&'static str> {
        vec![
            fixture!("openai/chat_completion_stream.txt"),
            fixture!("groq/chat_completion_stream.txt"),
            fixture!("xai/chat_completion_stream.txt"),
            fixture!("gemini/chat_completion_stream.txt"),
            TOOL_STREAM,
            MIXED_STREAM,
            ERROR_STREAM,
            NO_DONE_STREAM,
            TRUNCATED_STREAM,
            EMPTY_FINISH_STREAM,
            SAME_INDEX_STREAM,
            MISTRAL_THINKING_STREAM,
            COMMENTED_STREAM,
        ]
    }

    #[test]
    fn a_stream_that_finishes_for_tool_calls_it_never_made_ends_the_turn() {
        let input = "data: {\"id\":\"chatcmpl-n\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"done\"}}]}\n\n\
data: {\"id\":\"chatcmpl-n\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":100,\"completion_tokens\":5,\"total_tokens\":105,\"prompt_cache_hit_tokens\":80}}\n\n\
data: [DONE]\n\n";
        let out = run(input);
        assert_invariants(&out);
        let evs = events(&out);
        let delta = evs
            .iter()
            .find(|(n, _)| n == "message_delta")
            .map(|(_, d)| d)
            .unwrap();
        assert_eq!(delta["delta"]["stop_reason"], "end_turn");
        // DeepSeek's cache hits, as the gateway meters them.
        assert_eq!(delta["usage"]["input_tokens"], 20);
        assert_eq!(delta["usage"]["cache_read_input_tokens"], 80);
    }

    #[test]
    fn fixture_openai_text_stream_translates() {
        let evs = events(&run(fixture!("openai/chat_completion_stream.txt")));
        assert_eq!(
            names(&evs),
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(
            evs[0].1,
            json!({"type": "message_start", "message": {"id": "msg_D0q8CZXN1uEzngZGkU7FuV92lnXWq",
                "type": "message", "role": "assistant", "model": "claude-sonnet-4", "content": [],
                "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 0, "output_tokens": 0}}})
        );
        assert_eq!(
            evs[1].1,
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        );
        assert_eq!(
            evs[2].1,
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}})
        );
        assert_eq!(block_text(&evs, "text"), "Hello, World!");
        assert_eq!(
            evs[7].1,
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                   "usage": {"input_tokens": 0, "output_tokens": 0}})
        );
    }

    #[test]
    fn fixture_groq_usage_in_finish_chunk_is_reported() {
        let evs = events(&run(fixture!("groq/chat_completion_stream.txt")));
        assert_eq!(block_text(&evs, "text"), "Hello World!");
        let (_, delta) = evs.iter().find(|(n, _)| n == "message_delta").unwrap();
        assert_eq!(
            delta["usage"],
            json!({"input_tokens": 38, "output_tokens": 4})
        );
    }

    #[test]
    fn fixture_xai_reasoning_becomes_thinking_block_before_text() {
        let evs = events(&run(fixture!("xai/chat_completion_stream.txt")));
        assert_eq!(
            evs[1].1["content_block"],
            json!({"type": "thinking", "thinking": "", "signature": ""})
        );
        let thinking = block_text(&evs, "thinking");
        assert!(thinking.starts_with("First, the user said: \"Say Hello World\"."));
        let text = block_text(&evs, "text");
        assert!(text.ends_with("I'm here to help!"));
        let starts: Vec<&str> = evs
            .iter()
            .filter(|(n, _)| n == "content_block_start")
            .map(|(_, d)| d["content_block"]["type"].as_str().unwrap())
            .collect();
        assert_eq!(starts, ["thinking", "text"]);
    }

    #[test]
    fn fixture_gemini_single_chunk_with_finish_translates() {
        let evs = events(&run(fixture!("gemini/chat_completion_stream.txt")));
        assert_eq!(block_text(&evs, "text"), "Hello World");
        assert_eq!(evs.last().unwrap().0, "message_stop");
    }

    #[test]
    fn tool_call_stream_becomes_tool_use_blocks() {
        let evs = events(&run(TOOL_STREAM));
        assert_eq!(
            evs[1].1,
            json!({"type": "content_block_start", "index": 0,
                   "content_block": {"type": "tool_use", "id": "call_A", "name": "get_weather", "input": {}}})
        );
        assert_eq!(
            evs[2].1,
            json!({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "input_json_delta", "partial_json": "{\"loc"}})
        );
        let partial: String = evs
            .iter()
            .filter(|(_, d)| d["index"] == 0)
            .filter_map(|(_, d)| d["delta"]["partial_json"].as_str())
            .collect();
        assert_eq!(partial, "{\"location\": \"Zürich\"}");
        let second = evs
            .iter()
            .find(|(n, d)| n == "content_block_start" && d["index"] == 1)
            .unwrap();
        assert_eq!(second.1["content_block"]["id"], "call_B");
        let (_, delta) = evs.iter().find(|(n, _)| n == "message_delta").unwrap();
        assert_eq!(
            delta,
            &json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                    "usage": {"input_tokens": 18, "output_tokens": 17, "cache_read_input_tokens": 64}})
        );
    }

    #[test]
    fn block_kinds_switch_with_stop_and_start() {
        let evs = events(&run(MIXED_STREAM));
        assert_eq!(
            names(&evs),
            [
                "ping",
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(block_text(&evs, "thinking"), "Think hard — ü");
        assert_eq!(block_text(&evs, "text"), "Answer: 42");
        assert_eq!(
            evs[13].1["usage"],
            json!({"input_tokens": 5, "output_tokens": 9})
        );
    }

    #[test]
    fn upstream_error_emits_error_event_and_nothing_after() {
        let mut t = OpenAiToAnthropicStream::new(opts());
        let mut out = Vec::new();
        t.push(ERROR_STREAM.as_bytes(), &mut out);
        assert!(t.is_failed());
        let evs = events(&out);
        assert_eq!(
            evs.last().unwrap().1,
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "The server is overloaded"}})
        );
        assert_eq!(block_text(&evs, "text"), "Par");
        let len = out.len();
        t.push(TOOL_STREAM.as_bytes(), &mut out);
        t.finish(&mut out);
        assert_eq!(out.len(), len);
        assert!(!names(&evs).contains(&"message_stop"));
    }

    #[test]
    fn other_upstream_errors_are_api_errors() {
        let evs = events(&run(
            "data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n",
        ));
        assert_eq!(names(&evs), ["error"]);
        assert_eq!(
            evs[0].1["error"],
            json!({"type": "api_error", "message": "boom"})
        );
        let evs = events(&run("data: {\"error\":\"plain text\"}\n\n"));
        assert_eq!(evs[0].1["error"]["message"], "plain text");
    }

    #[test]
    fn end_after_finish_without_done_completes_normally() {
        let evs = events(&run(NO_DONE_STREAM));
        assert_eq!(evs.last().unwrap().0, "message_stop");
        let (_, delta) = evs.iter().find(|(n, _)| n == "message_delta").unwrap();
        assert_eq!(delta["delta"]["stop_reason"], "max_tokens");
    }

    #[test]
    fn an_event_that_never_ends_fails_the_stream_with_an_error_event() {
        let mut t = OpenAiToAnthropicStream::new(opts());
        let mut out = Vec::new();
        t.push(TRUNCATED_STREAM.as_bytes(), &mut out);
        let start = out.len();
        t.push(
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"",
            &mut out,
        );
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..=(crate::translate::sse::MAX_PENDING_BYTES >> 20) {
            t.push(&chunk, &mut out);
        }
        assert!(t.is_failed());
        let evs = events(&out[start..]);
        assert_eq!(names(&evs), ["error"]);
        assert_eq!(evs[0].1["error"]["type"], "api_error");
        assert!(evs[0].1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("could not be read"));
        let len = out.len();
        t.push(b"\n\ndata: [DONE]\n\n", &mut out);
        t.finish(&mut out);
        assert_eq!(out.len(), len);
    }

    #[test]
    fn end_without_finish_is_an_error() {
        let mut t = OpenAiToAnthropicStream::new(opts());
        let mut out = Vec::new();
        t.push(TRUNCATED_STREAM.as_bytes(), &mut out);
        t.finish(&mut out);
        assert!(t.is_failed());
        let evs = events(&out);
        assert_eq!(evs.last().unwrap().0, "error");
        // The open tool block is left as is: nothing follows the error.
        assert!(!evs
            .iter()
            .any(|(n, d)| n == "content_block_stop" && d["index"] == 1));
        assert!(!names(&evs).contains(&"message_stop"));
    }

    #[test]
    fn geminis_thought_signature_streams_as_a_signed_thinking_block_before_the_call() {
        let input = "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"},\"extra_content\":{\"google\":{\"thought_signature\":\"CiQBsig\"}}}]}}]}\n\n\
            data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n";
        let evs = events(&run(input));
        assert_eq!(
            evs[1].1,
            json!({"type": "content_block_start", "index": 0,
                   "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
        );
        assert_eq!(
            evs[2].1,
            json!({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "signature_delta", "signature": "gemini:CiQBsig"}})
        );
        assert_eq!(evs[3].0, "content_block_stop");
        assert_eq!(evs[4].1["content_block"]["type"], "tool_use");
        assert_eq!(evs[4].1["index"], 1);
    }

    #[test]
    fn streamed_refusal_ends_with_refusal_stop_reason() {
        let input = "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"refusal\":\"I can't\"}}]}\n\n\
            data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"refusal\":\" help.\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
        let evs = events(&run(input));
        assert_eq!(evs[evs.len() - 2].1["delta"]["stop_reason"], "refusal");
        // Text beside it is an answer, not a refusal.
        let input = "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Sure\",\"refusal\":\"no\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
        let evs = events(&run(input));
        assert_eq!(evs[evs.len() - 2].1["delta"]["stop_reason"], "end_turn");
    }

    #[test]
    fn done_without_finish_reason_ends_normally() {
        let input = "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\ndata: [DONE]\n\n";
        let evs = events(&run(input));
        assert_eq!(evs.last().unwrap().0, "message_stop");
        assert_eq!(evs[evs.len() - 2].1["delta"]["stop_reason"], "end_turn");
    }

    #[test]
    fn malformed_chunk_is_an_error() {
        let evs = events(&run("data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\ndata: {oops\n\n"));
        let (name, data) = evs.last().unwrap();
        assert_eq!(name, "error");
        assert!(data["error"]["message"]
            .as_str()
            .unwrap()
            .contains("malformed"));
    }

    #[test]
    fn non_string_reasoning_is_ignored() {
        let input = "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"reasoning\":{\"effort\":\"low\"},\"content\":\"a\"}}]}\n\ndata: [DONE]\n\n";
        let evs = events(&run(input));
        assert_eq!(block_text(&evs, "text"), "a");
        assert_eq!(block_text(&evs, "thinking"), "");
    }

    #[test]
    fn mistral_thinking_chunks_stream_as_thinking_and_text_chunks_as_text() {
        let out = run(MISTRAL_THINKING_STREAM);
        assert_invariants(&out);
        let evs = events(&out);
        let starts: Vec<&str> = evs
            .iter()
            .filter(|(n, _)| n == "content_block_start")
            .map(|(_, d)| d["content_block"]["type"].as_str().unwrap())
            .collect();
        // In the order they came, a chunk's parts too.
        assert_eq!(starts, ["thinking", "text", "thinking", "text"]);
        assert_eq!(block_text(&evs, "thinking"), "Two and two.Sure?");
        assert_eq!(block_text(&evs, "text"), "It is 4. Yes.");
        assert_eq!(evs[evs.len() - 2].1["delta"]["stop_reason"], "end_turn");
    }

    #[test]
    fn reasoning_field_is_accepted_as_thinking() {
        let input = "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"reasoning\":\"hmm\"}}]}\n\ndata: [DONE]\n\n";
        assert_eq!(block_text(&events(&run(input)), "thinking"), "hmm");
    }

    #[test]
    fn tool_calls_without_index_or_id_still_form_blocks() {
        let input = concat!(
            "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":\"}}]}}]}\n\n",
            "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\"1}\"}}]}}]}\n\n",
            "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"id\":\"c1\",\"function\":{\"name\":\"h\",\"arguments\":\"{\\\"b\\\":\"}}]}}]}\n\n",
            "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"id\":\"c1\",\"function\":{\"arguments\":\"2}\"}}]}}]}\n\n",
            "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"id\":\"c2\",\"function\":{\"name\":\"g\",\"arguments\":\"{}\"}}]},\"finish_reason\":\"stop\"}]}\n\n",
            "data: [DONE]\n\n"
        );
        let out = run(input);
        assert_invariants(&out);
        let evs = events(&out);
        let starts: Vec<&Value> = evs
            .iter()
            .filter(|(n, _)| n == "content_block_start")
            .map(|(_, d)| &d["content_block"])
            .collect();
        assert_eq!(starts.len(), 3);
        assert!(starts[0]["id"].as_str().unwrap().starts_with("toolu_"));
        assert_eq!(starts[1]["id"], "c1");
        assert_eq!(starts[2]["id"], "c2");
        let args: Vec<String> = (0..3)
            .map(|i| {
                evs.iter()
                    .filter(|(n, d)| n == "content_block_delta" && d["index"] == i)
                    .filter_map(|(_, d)| d["delta"]["partial_json"].as_str())
                    .collect()
            })
            .collect();
        assert_eq!(args, ["{\"a\":1}", "{\"b\":2}", "{}"]);
        assert_eq!(evs[evs.len() - 2].1["delta"]["stop_reason"], "tool_use");
    }

    #[test]
    fn parallel_calls_all_at_index_0_become_one_tool_use_block_each() {
        let out = run(SAME_INDEX_STREAM);
        assert_invariants(&out);
        let evs = events(&out);
        let starts: Vec<(&str, &str, &str)> = evs
            .iter()
            .filter(|(n, _)| n == "content_block_start")
            .map(|(_, d)| &d["content_block"])
            .map(|b| {
                let s = |k: &str| b[k].as_str().unwrap_or("");
                (s("type"), s("id"), s("name"))
            })
            .collect();
        assert_eq!(
            starts,
            [
                ("tool_use", "call_a", "f"),
                ("tool_use", "call_b", "g"),
                ("text", "", ""),
                ("tool_use", "call_c", "h")
            ]
        );
        let args: Vec<String> = [0, 1, 3]
            .iter()
            .map(|i| {
                evs.iter()
                    .filter(|(_, d)| d["index"] == *i)
                    .filter_map(|(_, d)| d["delta"]["partial_json"].as_str())
                    .collect()
            })
            .collect();
        assert_eq!(args, ["{\"a\":1}", "{\"b\":2}", "{}"]);
        assert_eq!(evs[evs.len() - 2].1["delta"]["stop_reason"], "tool_use");
    }

    #[test]
    fn a_new_id_without_a_name_continues_the_call_at_its_index() {
        // Some servers repeat a placeholder id, or a fresh one, on every fragment.
        let input = concat!(
            "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_0\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":\"}}]}}]}\n\n",
            "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"function\":{\"arguments\":\"1}\"}}]}}]}\n\n",
            "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_0\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: [DONE]\n\n"
        );
        let out = run(input);
        assert_invariants(&out);
        let evs = events(&out);
        let starts = evs
            .iter()
            .filter(|(n, _)| n == "content_block_start")
            .count();
        assert_eq!(starts, 1);
        assert_eq!(block_text(&evs, "partial_json"), "{\"a\":1}");
    }

    #[test]
    fn interleaved_tool_arguments_are_an_error() {
        let input = concat!(
            "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"a\",\"function\":{\"name\":\"f\",\"arguments\":\"{\"}}]}}]}\n\n",
            "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"b\",\"function\":{\"name\":\"g\",\"arguments\":\"{\"}}]}}]}\n\n",
            "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"}\"}}]}}]}\n\n",
            "data: [DONE]\n\n"
        );
        let out = run(input);
        assert_invariants(&out);
        assert_eq!(events(&out).last().unwrap().0, "error");
        // Naming the first call again is going back to it, not a new call.
        let input = input.replace(
            "[{\"index\":0,\"function\":{\"arguments\":\"}\"}}]",
            "[{\"index\":0,\"id\":\"a\",\"function\":{\"name\":\"f\",\"arguments\":\"}\"}}]",
        );
        assert!(input.contains("\"id\":\"a\",\"function\":{\"name\":\"f\",\"arguments\":\"}\""));
        let out = run(&input);
        assert_invariants(&out);
        assert_eq!(events(&out).last().unwrap().0, "error");
    }

    #[test]
    fn an_empty_or_null_string_finish_reason_does_not_end_the_answer() {
        let out = run(EMPTY_FINISH_STREAM);
        assert_invariants(&out);
        let evs = events(&out);
        assert_eq!(
            names(&evs),
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(block_text(&evs, "text"), "Hello");
        assert_eq!(block_text(&evs, "partial_json"), "{\"a\":1}");
        assert_eq!(evs[9].1["delta"]["stop_reason"], "tool_use");
    }

    #[test]
    fn upstream_comments_reach_the_client_as_ping_events() {
        let out = run(COMMENTED_STREAM);
        assert!(out.starts_with(b"event: ping\ndata: {\"type\":\"ping\"}\n\n"));
        assert_eq!(
            names(&events(&out)),
            [
                "ping",
                "ping",
                "message_start",
                "content_block_start",
                "content_block_delta",
                "ping",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
    }

    #[test]
    fn comments_and_empty_role_chunks_emit_no_blocks() {
        let input = ": ping\n\ndata: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\ndata: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
        let evs = events(&run(input));
        assert_eq!(
            names(&evs),
            ["ping", "message_start", "message_delta", "message_stop"]
        );
    }

    #[test]
    fn all_outputs_satisfy_stream_invariants() {
        for input in all_inputs() {
            assert_invariants(&run(input));
        }
    }

    /// The xAI fixture (66 KB) cut to its first events, the switch from
    /// reasoning to text, and its end: splitting at every offset is
    /// quadratic, and the full fixture is covered one byte at a time.
    fn xai_condensed() -> String {
        let events: Vec<&str> = fixture!("xai/chat_completion_stream.txt")
            .split_inclusive("\n\n")
            .collect();
        let switch = events
            .iter()
            .position(|e| e.contains("\"delta\":{\"content\""))
            .unwrap();
        let n = events.len();
        [
            &events[..4],
            &events[switch - 2..switch + 2],
            &events[n - 3..],
        ]
        .concat()
        .concat()
    }

    /// A text member as the translator reads it, before dropping empty ones.
    fn text<'a>(field: &'a Option<LenientStr<'_>>) -> Option<&'a str> {
        field.as_ref().and_then(|s| s.0.as_deref())
    }

    #[test]
    fn chunks_read_without_serde_give_the_values_serde_reads() {
        let mut datas: Vec<&str> = [
            TOOL_STREAM,
            MIXED_STREAM,
            ERROR_STREAM,
            fixture!("openai/chat_completion_stream.txt"),
            fixture!("groq/chat_completion_stream.txt"),
            fixture!("xai/chat_completion_stream.txt"),
            fixture!("gemini/chat_completion_stream.txt"),
        ]
        .iter()
        .flat_map(|s| s.lines())
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
        datas.extend([
            "{}",
            r#"{"choices":[]}"#,
            r#"{"choices":[{}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null,"reasoning":null,"tool_calls":null}}],"usage":null}"#,
            r#"{"choices":[{"delta":{"reasoning":"r","reasoning_content":"","refusal":"no"}}],"created":0,"ok":true,"x":false}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":""}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"null"}]}"#,
        ]);
        let mut fast = 0;
        for data in datas {
            let Some(chunk) = content_chunk(data) else {
                continue;
            };
            fast += 1;
            let parsed: Chunk = serde_json::from_str(data).unwrap();
            assert!(parsed.error.is_none() && parsed.usage.is_none(), "{data}");
            assert_eq!(chunk.id, parsed.id.as_deref(), "{data}");
            let choice = parsed.choices.as_ref().and_then(|c| c.0.as_ref());
            let delta = choice.and_then(|c| c.delta.as_ref());
            assert!(choice.is_none_or(|c| c.finish_reason.is_none()), "{data}");
            assert!(delta.is_none_or(|d| d.tool_calls.is_none()), "{data}");
            let read = (
                delta
                    .and_then(|d| d.content.as_ref())
                    .and_then(Content::text),
                delta.and_then(|d| text(&d.reasoning_content)),
                delta.and_then(|d| text(&d.reasoning)),
                delta.and_then(|d| text(&d.refusal)),
            );
            let fast_read = (
                chunk.content,
                chunk.reasoning_content,
                chunk.reasoning,
                chunk.refusal,
            );
            assert_eq!(fast_read, read, "{data}");
        }
        assert!(fast >= 10, "only {fast} chunks took the fast path");
    }

    #[test]
    fn split_at_every_offset_gives_identical_output() {
        let xai = xai_condensed();
        assert!(xai.len() < 4000 && xai.contains("reasoning_content") && xai.ends_with("[DONE]\n"));
        let inputs = all_inputs()
            .into_iter()
            .filter(|i| i.len() < 10_000)
            .chain([xai.as_str()]);
        for input in inputs {
            let bytes = input.as_bytes();
            let whole = run(input);
            for i in 0..=bytes.len() {
                let split = run_pieces(&[&bytes[..i], &bytes[i..]]);
                assert_eq!(split, whole, "split at {i}");
                if i % 97 == 0 {
                    assert_invariants(&split);
                }
            }
        }
    }

    #[test]
    fn one_byte_at_a_time_gives_identical_output() {
        for input in all_inputs() {
            let pieces: Vec<&[u8]> = input.as_bytes().chunks(1).collect();
            let out = run_pieces(&pieces);
            assert_eq!(out, run(input));
            assert_invariants(&out);
        }
    }
}
