//! Tokens estimated from text, for a stream whose usage never came: the client left
//! before the last chunk (the one that reports it), the stream broke off, or the
//! provider does not report a stream's usage. Without an estimate a key held to tokens
//! or a budget could read a stream to its last token, leave before its usage, and be
//! charged nothing.
//!
//! The estimate is the common rule of thumb, four characters a token, and never fewer
//! tokens than the events that carried text: providers send a token or more an event.
//! An image, audio clip or file in a request counts [`PAYLOAD_TOKENS`] whatever its
//! size (its tokens depend on what it shows, not on its bytes); opaque signatures and
//! encrypted reasoning count nothing. Reasoning a provider does not stream (OpenAI's
//! reasoning models) is not seen, so not counted.

use memchr::{memchr, memmem};
use once_cell::sync::Lazy;

use crate::translate::json_members::{member_value, skip_ws, string_end, value_end};

/// Characters a token, by the rule of thumb for English text.
const CHARS_PER_TOKEN: u64 = 4;

/// Tokens an image, audio clip or file in a request counts: what OpenAI charges for a
/// low-detail image, about the least any provider charges for one.
pub const PAYLOAD_TOKENS: u64 = 85;

/// Where a stream event's output text lies: in the members of its `delta` (a Chat
/// chunk's `content`, `reasoning_content`, a tool call's `arguments`, its audio's
/// `transcript`, an Anthropic `text`, `thinking` or `partial_json`), or the `delta`
/// itself (the Responses API's).
const OUTPUT_KEYS: [&[u8]; 10] = [
    b"delta",
    b"content",
    b"text",
    b"thinking",
    b"partial_json",
    b"arguments",
    b"reasoning_content",
    b"reasoning",
    b"refusal",
    // The text of a Chat answer's audio, whose `data` (base64) is not.
    b"transcript",
];

/// Members of a stream's `delta` that repeat text counted already: OpenRouter's
/// `reasoning_details` hold the `reasoning` text again.
const REPEATED_KEYS: [&[u8]; 1] = [b"reasoning_details"];

/// The key every event carrying output text has (a Chat chunk, an Anthropic
/// `content_block_delta`, a Responses `*.delta` event), searched for once built.
static DELTA_KEY: Lazy<memmem::Finder<'static>> = Lazy::new(|| memmem::Finder::new(b"\"delta\""));

/// The type of the Responses API's audio deltas, whose `delta` is audio, not text.
static AUDIO_DELTA_TYPE: Lazy<memmem::Finder<'static>> =
    Lazy::new(|| memmem::Finder::new(b"audio.delta\""));

/// Where a legacy Completions chunk holds its text (`choices[].text`): it has no
/// `delta`.
static CHOICES_KEY: Lazy<memmem::Finder<'static>> =
    Lazy::new(|| memmem::Finder::new(b"\"choices\""));

/// The key of a Gemini chunk's candidates, which hold its text under `content.parts`
/// (it has no `delta`): the chunk's first member.
const CANDIDATES_KEY: &[u8] = b"\"candidates\"";

/// The key of a Gemini tool call's arguments and of an Ollama one's: objects, not
/// strings.
static ARGS_KEY: Lazy<memmem::Finder<'static>> = Lazy::new(|| memmem::Finder::new(b"\"args\""));
static ARGUMENTS_KEY: Lazy<memmem::Finder<'static>> =
    Lazy::new(|| memmem::Finder::new(b"\"arguments\""));

/// The members of an Ollama stream's line that hold its output text.
const LINE_TEXT_KEYS: [&[u8]; 3] = [b"content", b"thinking", b"response"];

/// The `type` of a request's content parts that are an image, audio clip or file,
/// in every format: each counts [`PAYLOAD_TOKENS`].
const PAYLOAD_TYPES: [&[u8]; 7] = [
    b"image_url",
    b"input_image",
    b"image",
    b"input_audio",
    b"file",
    b"input_file",
    b"document",
];

/// Members of a request whose strings are a payload's bytes (or its address), not
/// text: counted by the part's type.
const PAYLOAD_KEYS: [&[u8]; 3] = [b"data", b"file_data", b"image_url"];

/// Members of a request each of whose strings stands for one payload, where parts
/// have no `type`: an Ollama message's `images` (each one's bytes), a Gemini part's
/// `inlineData` (by its required `mimeType`) and `fileData` (by its `fileUri`), as
/// Gemini's JSON names them or in snake case. A `fileData` that gives its
/// `mimeType` too counts twice.
const PAYLOAD_MARKS: [&[u8]; 5] = [
    b"images",
    b"mimeType",
    b"mime_type",
    b"fileUri",
    b"file_uri",
];

/// Members of a request whose strings the model does not read as tokens: opaque
/// signatures, encrypted reasoning.
const OPAQUE_KEYS: [&[u8]; 2] = [b"signature", b"encrypted_content"];

/// The text of one event's deltas. Reasoning is counted once under either of its
/// names: some servers send it under both (`reasoning` and the older
/// `reasoning_content`).
#[derive(Default)]
struct DeltaText {
    chars: u64,
    reasoning: u64,
    reasoning_content: u64,
}

impl DeltaText {
    fn add(&mut self, key: &[u8], raw: &[u8]) {
        match key {
            b"reasoning" => self.reasoning += text_chars(raw),
            b"reasoning_content" => self.reasoning_content += text_chars(raw),
            _ if OUTPUT_KEYS.contains(&key) => self.chars += text_chars(raw),
            _ => {}
        }
    }

    fn chars(&self) -> u64 {
        self.chars + self.reasoning.max(self.reasoning_content)
    }
}

/// The output text of a stream, read from the `delta` of each event as it passes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StreamedText {
    /// Characters of output text.
    chars: u64,
    /// Events that carried some.
    events: u64,
}

impl StreamedText {
    /// Reads one event's data (a JSON object).
    pub fn event(&mut self, data: &[u8]) {
        let chars = match gemini_candidates(data) {
            Some(after) => gemini_chars(data, after),
            None => delta_chars(data),
        };
        self.count(chars);
    }

    /// Reads one line of a JSON-lines stream (Ollama's own API): its text is a chat
    /// line's `message.content` and `message.thinking`, a generate line's `response`
    /// and `thinking`, and its tool calls' `arguments` (objects, counted as written).
    pub fn line(&mut self, line: &[u8]) {
        let mut chars = object_chars(line, &ARGUMENTS_KEY);
        visit_strings(line, skip_ws(line, 0), b"", &[b"arguments"], |key, raw| {
            if LINE_TEXT_KEYS.contains(&key) {
                chars += text_chars(raw);
            }
        });
        self.count(chars);
    }

    fn count(&mut self, chars: u64) {
        if chars > 0 {
            self.chars += chars;
            self.events += 1;
        }
    }

    /// Whether no event carried output text.
    pub fn is_empty(&self) -> bool {
        self.chars == 0
    }

    /// The estimated output tokens.
    pub fn tokens(&self) -> u64 {
        if self.chars == 0 {
            return 0;
        }
        self.events.max(self.chars.div_ceil(CHARS_PER_TOKEN))
    }
}

/// The estimated output tokens of the part of a whole (JSON) answer that passed: the
/// characters of its text (a Chat answer's `content`, tool-call `arguments`, a
/// Messages or Responses answer's `text`, reasoning) at four a token. An answer cut
/// anywhere is read as far as it goes.
pub fn answer_text_tokens(doc: &[u8]) -> u64 {
    let mut text = DeltaText::default();
    visit_strings(doc, skip_ws(doc, 0), b"", &REPEATED_KEYS, |key, raw| {
        text.add(key, raw);
    });
    text.chars().div_ceil(CHARS_PER_TOKEN)
}

/// The estimated output tokens of the tool calls in Gemini's chunks answered as one
/// JSON array (`functionCall.args`, objects, which [`answer_text_tokens`] does not
/// read); none for any other answer.
pub fn array_call_tokens(doc: &[u8]) -> u64 {
    if doc.get(skip_ws(doc, 0)) != Some(&b'[') {
        return 0;
    }
    object_chars(doc, &ARGS_KEY).div_ceil(CHARS_PER_TOKEN)
}

/// The estimated output tokens of a model's whole answer of `size` bytes, `doc` or
/// its head, that reported no usage: the text of its known members when it is a JSON
/// object, or an array of them (Gemini's chunks; of one past 8 MiB, in its first
/// 64 KiB, as for an answer cut short); of any other answer (JSPB's arrays
/// of arrays, protobuf, plain text), its size, four bytes a token: an answer in a
/// format the gateway does not read is not free.
pub fn unreported_answer_tokens(doc: &[u8], size: u64) -> u64 {
    let start = skip_ws(doc, 0);
    let objects = match doc.get(start) {
        Some(b'{') => true,
        Some(b'[') => doc.get(skip_ws(doc, start + 1)) == Some(&b'{'),
        _ => false,
    };
    if objects {
        answer_text_tokens(doc) + array_call_tokens(doc)
    } else {
        input_tokens_of_size(size)
    }
}

/// The estimated input tokens of a request the gateway did not read, from its size:
/// four bytes a token.
pub fn input_tokens_of_size(bytes: u64) -> u64 {
    bytes.div_ceil(CHARS_PER_TOKEN)
}

/// The estimated input tokens of a request body (JSON): the characters of its string
/// values, whatever the format, of its member names and of its numbers and literals
/// (`structure_chars`), and each image, audio clip or file part it carries (told by
/// its `type`, whether its bytes are inline or given by address).
pub fn input_tokens(body: &[u8]) -> u64 {
    let mut chars = structure_chars(body);
    let mut payloads = 0;
    visit_strings(body, skip_ws(body, 0), b"", &[], |key, raw| {
        if (key == b"type" && PAYLOAD_TYPES.contains(&raw)) || PAYLOAD_MARKS.contains(&key) {
            payloads += 1;
        } else if !is_bytes(key, raw) {
            chars += text_chars(raw);
        }
    });
    chars.div_ceil(CHARS_PER_TOKEN) + payloads * PAYLOAD_TOKENS
}

/// Whether the string `raw` of the member `key` is a part's bytes (or address) or
/// opaque to the model, not text it reads.
fn is_bytes(key: &[u8], raw: &[u8]) -> bool {
    PAYLOAD_KEYS.contains(&key)
        || OPAQUE_KEYS.contains(&key)
        || (is_url_key(key) && is_data_url(raw))
}

/// Whether `key` names a part's address, whose `data:` URL is its bytes: `url` (Chat's
/// `image_url.url`, vLLM's `audio_url.url` and `video_url.url`) or any `…_url`
/// (Mistral's `document_url`). Anywhere else, a string that starts like a `data:` URL
/// is text the model reads (in a message's content, however it starts).
fn is_url_key(key: &[u8]) -> bool {
    key == b"url" || key.ends_with(b"_url")
}

/// The characters the model reads in `body` besides its string values: its member
/// names (a tool's parameters, a schema's properties), and its numbers and literals
/// (token ids given as numbers, settings). Punctuation and white space count nothing.
/// A key that starts a cut string is not counted.
fn structure_chars(body: &[u8]) -> u64 {
    let mut chars = 0;
    let mut at = 0;
    while let Some(&byte) = body.get(at) {
        if byte == b'"' {
            let Some(end) = string_end(body, at) else {
                break;
            };
            if member_value(body, end).is_some() {
                chars += text_chars(&body[at + 1..end - 1]);
            }
            at = end;
            continue;
        }
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'+' | b'.') {
            chars += 1;
        }
        at += 1;
    }
    chars
}

/// Whether `raw` is a `data:` URL of base64 bytes (`data:image/png;base64,…`), not
/// text that starts with `data:`.
fn is_data_url(raw: &[u8]) -> bool {
    let Some(rest) = raw.strip_prefix(b"data:") else {
        return false;
    };
    let head = &rest[..rest.len().min(128)];
    memmem::find(head, b";base64,").is_some_and(|at| {
        head[..at]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"/+-.=;_".contains(&b))
    })
}

/// Calls `visit(key, raw)` for every string value within the JSON value at `start`:
/// `raw` the text between its quotes as written, `key` the name of the member it is
/// (or, in an array, the last member named before it; `first_key` for the value
/// itself). The values of members named in `skipped` are passed over. Returns where
/// the value ends. Not a validator: text that is not JSON is read as far as it goes.
fn visit_strings<'a>(
    doc: &'a [u8],
    mut at: usize,
    first_key: &'a [u8],
    skipped: &[&[u8]],
    mut visit: impl FnMut(&[u8], &[u8]),
) -> usize {
    let mut depth = 0usize;
    let mut key = first_key;
    while at < doc.len() {
        match doc[at] {
            b'"' => {
                let Some(end) = string_end(doc, at) else {
                    return doc.len();
                };
                let raw = &doc[at + 1..end - 1];
                if let Some(value) = member_value(doc, end) {
                    key = raw;
                    at = value;
                    if skipped.contains(&key) {
                        let Some(end) = value_end(doc, at) else {
                            return doc.len();
                        };
                        at = end;
                    }
                    continue;
                }
                visit(key, raw);
                at = end;
                if depth == 0 {
                    return at;
                }
            }
            b'{' | b'[' => {
                depth += 1;
                at += 1;
            }
            b'}' | b']' => {
                if depth <= 1 {
                    // The value's own end, or (for a scalar) its container's.
                    return at + usize::from(depth == 1);
                }
                depth -= 1;
                at += 1;
            }
            b',' if depth == 0 => return at,
            _ => at += 1,
        }
    }
    at
}

/// The output text of an event of a format with a `delta` (Chat chunks, Anthropic's
/// and the Responses API's events), or of a legacy Completions chunk
/// (`choices[].text`).
fn delta_chars(data: &[u8]) -> u64 {
    let mut text = DeltaText::default();
    // Looked for once an event, and only for a `delta` that is a string.
    let mut audio = None;
    let mut deltas = 0;
    let mut from = 0;
    while let Some(found) = DELTA_KEY.find(&data[from..]) {
        let after = from + found + DELTA_KEY.needle().len();
        from = after;
        let Some(value) = member_value(data, after) else {
            // A string `"delta"`, not a key.
            continue;
        };
        deltas += 1;
        if data.get(value) == Some(&b'"')
            && *audio.get_or_insert_with(|| AUDIO_DELTA_TYPE.find(data).is_some())
        {
            // The Responses API's `response.audio.delta`: audio, not text.
            continue;
        }
        let end = visit_strings(data, value, b"delta", &REPEATED_KEYS, |key, raw| {
            text.add(key, raw);
        });
        from = end.max(after);
    }
    if deltas == 0 {
        let choices = CHOICES_KEY
            .find(data)
            .and_then(|found| member_value(data, found + CHOICES_KEY.needle().len()));
        if let Some(value) = choices {
            visit_strings(data, value, b"", &[], |key, raw| {
                if key == b"text" {
                    text.add(key, raw);
                }
            });
        }
    }
    text.chars()
}

/// The output text of a Gemini chunk whose `candidates` key ends at `after`: each
/// part's `text` (its thinking too), and its tool calls' arguments, objects counted as
/// written (`functionCall.args`, whose own strings are not read again as text).
fn gemini_chars(data: &[u8], after: usize) -> u64 {
    let Some(value) = member_value(data, after) else {
        return 0;
    };
    let mut chars = 0;
    let end = visit_strings(data, value, b"", &[b"args"], |key, raw| {
        if key == b"text" {
            chars += text_chars(raw);
        }
    });
    chars + object_chars(&data[value..end.min(data.len())], &ARGS_KEY)
}

/// Where the key of a Gemini chunk's `candidates` ends, when the chunk starts with it
/// (Gemini writes it first): looked at, not searched for, so that the events of other
/// formats pay nothing for it.
fn gemini_candidates(data: &[u8]) -> Option<usize> {
    let open = skip_ws(data, 0);
    if data.get(open) != Some(&b'{') {
        return None;
    }
    let key = skip_ws(data, open + 1);
    data.get(key..)?
        .starts_with(CANDIDATES_KEY)
        .then_some(key + CANDIDATES_KEY.len())
}

/// The characters of the objects that are the values of `key` in `doc` (tool calls'
/// arguments), as written: their strings' are not visited as text.
fn object_chars(doc: &[u8], key: &memmem::Finder<'_>) -> u64 {
    let mut chars = 0;
    let mut from = 0;
    while let Some(found) = key.find(&doc[from..]) {
        let after = from + found + key.needle().len();
        from = after;
        let Some(value) = member_value(doc, after).filter(|&v| doc.get(v) == Some(&b'{')) else {
            continue;
        };
        let end = value_end(doc, value).unwrap_or(doc.len());
        chars += text_chars(&doc[value..end]);
        from = end.max(after);
    }
    chars
}

/// The characters a JSON string holds, from its text as written: UTF-8 sequences
/// count one, and so does an escape (two bytes, six for `\uXXXX`).
fn text_chars(raw: &[u8]) -> u64 {
    let encoded = raw.iter().filter(|&&b| b & 0xC0 != 0x80).count();
    let mut written_longer = 0;
    let mut at = 0;
    while let Some(found) = raw.get(at..).and_then(|rest| memchr(b'\\', rest)) {
        let escape = at + found;
        written_longer += if raw.get(escape + 1) == Some(&b'u') {
            5
        } else {
            1
        };
        at = escape + 2;
    }
    encoded.saturating_sub(written_longer) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streamed(events: &[&str]) -> StreamedText {
        let mut text = StreamedText::default();
        for event in events {
            text.event(event.as_bytes());
        }
        text
    }

    #[test]
    fn an_unreported_answer_counts_its_text_or_else_its_size() {
        let chat = br#"{"choices":[{"message":{"content":"Hello there, general Kenobi"}}]}"#;
        assert_eq!(unreported_answer_tokens(chat, 1 << 20), 7, "its text");
        let chunks = br#" [{"candidates":[{"content":{"parts":[{"text":"Hello there"}]}}]}]"#;
        assert_eq!(
            unreported_answer_tokens(chunks, 1 << 20),
            3,
            "Gemini's chunks"
        );
        let jspb = br#"[[[[["Hello there, general Kenobi"]]]]]"#;
        assert_eq!(unreported_answer_tokens(jspb, 400), 100, "JSPB: its size");
        assert_eq!(
            unreported_answer_tokens(b"\x0a\x02hi", 401),
            101,
            "protobuf"
        );
        assert_eq!(unreported_answer_tokens(b"", 0), 0);
    }

    #[test]
    fn chat_chunks_count_their_content_reasoning_and_tool_arguments() {
        let text = streamed(&[
            r#"{"id":"c","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
            r#"{"id":"c","model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hello there"},"finish_reason":null}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{"reasoning_content":"hmm"}}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":"}}]}}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}"#,
        ]);
        // "Hello there" 11, "hmm" 3, `{"city":` 8.
        assert_eq!(
            text,
            StreamedText {
                chars: 22,
                events: 3
            }
        );
        assert_eq!(text.tokens(), 6);
    }

    #[test]
    fn anthropic_and_responses_deltas_count_their_text_and_nothing_else() {
        let text = streamed(&[
            r#"{"type":"message_start","message":{"id":"m","content":[],"usage":{"input_tokens":25,"output_tokens":1}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Bonjour"}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM"}}"#,
            r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"a\": 1}"}}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":9}}"#,
            r#"{"type":"response.output_text.delta","item_id":"msg_1","output_index":0,"content_index":0,"delta":"Salut","sequence_number":4}"#,
            r#"{"type":"response.output_text.done","item_id":"msg_1","text":"Salut"}"#,
        ]);
        // "Bonjour" 7, `{"a": 1}` 8, "Salut" 5.
        assert_eq!(
            text,
            StreamedText {
                chars: 20,
                events: 3
            }
        );
    }

    #[test]
    fn gemini_chunks_count_the_text_of_their_parts_thinking_included() {
        let text = streamed(&[
            r#"{"candidates":[{"content":{"parts":[{"text":"Let me see","thought":true},{"text":"Hi"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":10},"modelVersion":"gemini-2.5-flash"}"#,
            r#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"get_weather","args":{"city":"Paris"}}}],"role":"model"},"finishReason":"STOP","index":0}]}"#,
        ]);
        // "Let me see" 10, "Hi" 2, and the call's arguments as written, 16.
        assert_eq!(
            text,
            StreamedText {
                chars: 28,
                events: 2
            }
        );
        // A chunk of another format that names `candidates` is not read for them.
        let mut other = StreamedText::default();
        other.event(br#"{"type":"ping","candidates":[{"content":{"parts":[{"text":"x"}]}}]}"#);
        assert!(other.is_empty());
    }

    #[test]
    fn a_gemini_chunk_is_read_as_one_whatever_its_tool_calls_arguments_name() {
        // Arguments named `text`, `delta` and `choices`: counted once, as arguments.
        let text = streamed(&[
            r#"{"candidates":[{"content":{"parts":[{"text":"Hi"},{"functionCall":{"name":"f","args":{"text":"abc","delta":"d","choices":[1]}}}],"role":"model"},"index":0}]}"#,
        ]);
        // "Hi" 2, and the arguments as written, 40.
        assert_eq!(
            text,
            StreamedText {
                chars: 42,
                events: 1
            }
        );
        // An Ollama call's argument named `content`: counted once too.
        let mut line = StreamedText::default();
        line.line(br#"{"message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":{"content":"abc"}}}]},"done":false}"#);
        assert_eq!(
            line,
            StreamedText {
                chars: 17,
                events: 1
            }
        );
        // Gemini's chunks answered as one array: their arguments, which strings do
        // not hold.
        let array = br#"[{"candidates":[{"content":{"parts":[{"functionCall":{"name":"f","args":{"city":"Paris"}}}]}}]}"#;
        assert_eq!(array_call_tokens(array), 4);
        assert_eq!(array_call_tokens(br#"{"args":{"city":"Paris"}}"#), 0);
    }

    #[test]
    fn ollama_lines_count_their_content_thinking_and_response() {
        let mut text = StreamedText::default();
        for line in [
            r#"{"model":"llama3.2","created_at":"t","message":{"role":"assistant","content":"","thinking":"hmm"},"done":false}"#,
            r#"{"model":"llama3.2","created_at":"t","message":{"role":"assistant","content":"Hello"},"done":false}"#,
            r#"{"model":"llama3.2","created_at":"t","response":"Bye","done":false}"#,
            r#"{"model":"llama3.2","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_weather","arguments":{"city":"Paris"}}}]},"done":false}"#,
            r#"{"model":"llama3.2","created_at":"t","response":"","done":true,"context":[1,2,3],"eval_count":3}"#,
        ] {
            text.line(line.as_bytes());
        }
        // "hmm" 3, "Hello" 5, "Bye" 3, and the call's arguments as written, 16.
        assert_eq!(
            text,
            StreamedText {
                chars: 27,
                events: 4
            }
        );
    }

    #[test]
    fn text_that_names_a_delta_is_text() {
        let text = streamed(&[
            r#"{"choices":[{"delta":{"content":"the \"delta\": key"}}]}"#,
            r#"{"choices":[{"delta" : { "content" : "spaced" } }]}"#,
            r#"{"type":"delta","note":"\"delta\""}"#,
        ]);
        assert_eq!(
            text,
            StreamedText {
                chars: 22,
                events: 2
            }
        );
    }

    #[test]
    fn a_token_an_event_at_least() {
        // One CJK character a token, an event each.
        let text = streamed(&[
            r#"{"choices":[{"delta":{"content":"你"}}]}"#,
            r#"{"choices":[{"delta":{"content":"好"}}]}"#,
            r#"{"choices":[{"delta":{"content":"\u4e16"}}]}"#,
        ]);
        assert_eq!(
            text,
            StreamedText {
                chars: 3,
                events: 3
            }
        );
        assert_eq!(text.tokens(), 3);
        assert_eq!(StreamedText::default().tokens(), 0);
    }

    #[test]
    fn an_event_cut_short_or_not_json_counts_what_it_holds() {
        let text = streamed(&[
            r#"{"choices":[{"delta":{"content":"abcd"#,
            r#"{"choices":[{"delta":{"content":"abcd"}"#,
            r#"{"delta":"#,
            r#""delta""#,
            "",
        ]);
        assert_eq!(
            text,
            StreamedText {
                chars: 4,
                events: 1
            }
        );
    }

    #[test]
    fn gemini_and_ollama_requests_count_their_media_as_payloads() {
        let gemini = br#"{"contents":[{"role":"user","parts":[{"text":"What is this?"},
            {"inlineData":{"mimeType":"image/png","data":"iVBORw0KGgoAAAANSUhEUgAA"}},
            {"fileData":{"fileUri":"https://generativelanguage.googleapis.com/v1beta/files/abc"}}]}],
            "generationConfig":{"responseMimeType":"application/json"}}"#;
        // user 4, What is this? 13, application/json 16; its member names 90 (contents,
        // role, parts, text, inlineData, mimeType, data, fileData, fileUri,
        // generationConfig, responseMimeType); and two payloads.
        assert_eq!(
            input_tokens(gemini),
            (33_u64 + 90).div_ceil(4) + 2 * PAYLOAD_TOKENS
        );
        // As Google's REST examples write it, in snake case.
        let snake = br#"{"contents":[{"parts":[{"text":"What is this?"},
            {"inline_data":{"mime_type":"image/png","data":"iVBORw0KGgoAAAANSUhEUgAA"}},
            {"file_data":{"file_uri":"https://generativelanguage.googleapis.com/v1beta/files/abc"}}]}]}"#;
        // What is this? 13, and the names 58.
        assert_eq!(
            input_tokens(snake),
            (13_u64 + 58).div_ceil(4) + 2 * PAYLOAD_TOKENS
        );
        let ollama = br#"{"model":"llava","messages":[{"role":"user","content":"What is this?",
            "images":["iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk","R0lGODlhAQABAIAAAP"]}]}"#;
        // llava 5, user 4, What is this? 13, the names 30 (model, messages, role,
        // content, images); and two images.
        assert_eq!(
            input_tokens(ollama),
            (22_u64 + 30).div_ceil(4) + 2 * PAYLOAD_TOKENS
        );
    }

    #[test]
    fn a_request_counts_its_text_and_not_its_images_or_signatures() {
        let body = br#"{"model":"gpt-4o","stream":true,"messages":[
            {"role":"system","content":"Be brief."},
            {"role":"user","content":[{"type":"text","text":"What is this?"},
              {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAA"}}]},
            {"role":"assistant","content":[{"type":"thinking","thinking":"ok","signature":"EqQBCgIYAhIMxyz"}]},
            {"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo"}}]}
        ],"stop":["\n\n"]}"#;
        // gpt-4o 6, system 6, Be brief. 9, user 4, text 4, What is this? 13,
        // assistant 9, thinking 8, ok 2, user 4, base64 6, image/png 9, and the two
        // escaped line breaks 2; the member names 140 and `true` 4; and two images.
        assert_eq!(
            input_tokens(body),
            (82_u64 + 144).div_ceil(4) + 2 * PAYLOAD_TOKENS
        );
    }

    #[test]
    fn what_a_model_reads_besides_text_is_counted_and_text_cannot_pass_for_bytes() {
        // A tool's parameter names, token ids given as numbers, and prose after a
        // `data:…;base64,` head in a message: the provider bills each.
        let tools = br#"{"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"customer_identifier":{},"purchase_order_number":{}}}}}]}"#;
        // f 1, function 8, object 6; the names 85 (tools, type, function, name,
        // parameters, type, properties, customer_identifier, purchase_order_number).
        assert_eq!(input_tokens(tools), (15_u64 + 85).div_ceil(4));
        let ids = br#"{"model":"m","input":[[1234,5678,91011]]}"#;
        // m 1; model, input 10; the ids 13.
        assert_eq!(input_tokens(ids), 24_u64.div_ceil(4));
        let prose = "a long question to the model ".repeat(100);
        let disguised =
            format!(r#"{{"messages":[{{"role":"user","content":"data:a;base64,{prose}"}}]}}"#);
        assert!(input_tokens(disguised.as_bytes()) > prose.len() as u64 / 4);
        // A part's address is its bytes, under any `…_url`.
        let document = br#"{"type":"document_url","document_url":"data:application/pdf;base64,JVBERi0xLjQKJcfs"}"#;
        // document_url 12; the names type and document_url 16.
        assert_eq!(input_tokens(document), (12_u64 + 16).div_ceil(4));
    }

    #[test]
    fn text_that_starts_with_data_is_text() {
        let body = br#"{"messages":[{"content":"data: 12 cells, 3 rows"},
            {"content":"data:text/plain;base64,aGk="},
            {"type":"file","file":{"file_data":"JVBERi0x","filename":"a.pdf"}},
            {"type":"input_audio","input_audio":{"data":"UklGRg","format":"wav"}},
            {"type":"input_image","image_url":"https://example.com/cat.png"}]}"#;
        // "data: 12 cells, 3 rows" 22, a message's content that looks like a data URL
        // 27 (only a part's `url` is its bytes), "a.pdf" 5 and "wav" 3, the member
        // names 85; a file, a clip and an image (by its address).
        assert_eq!(
            input_tokens(body),
            (57_u64 + 85).div_ceil(4) + 3 * PAYLOAD_TOKENS
        );
        assert!(is_data_url(b"data:image/jpeg;base64,/9j/4AAQ"));
        assert!(!is_data_url(b"data: image/jpeg;base64,/9j/"));
        assert!(!is_data_url(b"data:image/jpeg,plain"));
    }

    #[test]
    fn legacy_completions_chunks_count_their_text() {
        let text = streamed(&[
            r#"{"id":"cmpl-1","object":"text_completion","choices":[{"text":"Once upon","index":0,"logprobs":null,"finish_reason":null}],"model":"gpt-3.5-turbo-instruct"}"#,
            r#"{"id":"cmpl-1","object":"text_completion","choices":[{"text":"","index":0,"finish_reason":"stop"}],"model":"gpt-3.5-turbo-instruct"}"#,
            r#"{"id":"cmpl-1","object":"text_completion","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#,
        ]);
        assert_eq!(
            text,
            StreamedText {
                chars: 9,
                events: 1
            }
        );
    }

    #[test]
    fn audio_data_and_repeated_reasoning_are_not_counted_as_text_but_a_transcript_is() {
        let text = streamed(&[
            r#"{"type":"response.audio.delta","item_id":"a","delta":"UklGRiQAAABXQVZFZm10IBAAAAAB"}"#,
            r#"{"type":"response.audio.transcript.delta","item_id":"a","delta":"Hi"}"#,
            r#"{"choices":[{"delta":{"reasoning":"think","reasoning_details":[{"type":"reasoning.text","text":"think"}]}}]}"#,
            r#"{"choices":[{"delta":{"reasoning_content":"ponder","reasoning":"ponder"}}]}"#,
            r#"{"choices":[{"delta":{"audio":{"id":"audio_1","data":"UklGRiQAAABXQVZF","transcript":"Hey"}}}]}"#,
        ]);
        assert_eq!(
            text,
            StreamedText {
                chars: 16,
                events: 4
            }
        );
    }

    #[test]
    fn the_text_of_an_answer_cut_anywhere_is_counted_as_far_as_it_goes() {
        let chat = br#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]}}],"usage":{"prompt_tokens":3}}"#;
        // "Hello there" 11 and `{"a":1}` 7.
        assert_eq!(answer_text_tokens(chat), 18_u64.div_ceil(4));
        let cut = &chat[..chat.windows(5).position(|w| w == b"there").unwrap()];
        // "Hello " is not counted: its string is cut.
        assert_eq!(answer_text_tokens(cut), 0);
        let embeddings = br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,-0.2]}],"model":"m"}"#;
        assert_eq!(answer_text_tokens(embeddings), 0);
        for at in 0..chat.len() {
            answer_text_tokens(&chat[..at]);
        }
    }

    #[test]
    fn a_request_that_is_not_json_counts_what_it_can() {
        assert_eq!(input_tokens(b""), 0);
        // Its letters, and the names before a string cut short.
        assert_eq!(input_tokens(b"not json"), 2);
        assert_eq!(input_tokens(br#"{"messages":[{"content":"abcdefgh"#), 4);
        assert_eq!(input_tokens(br#""abcdefgh""#), 2);
    }

    #[test]
    fn escapes_count_one_character() {
        assert_eq!(text_chars(br#"a\nb"#), 3);
        assert_eq!(text_chars(br#"\u00e9t\u00e9"#), 3);
        assert_eq!(text_chars(br#"\\u"#), 2);
        assert_eq!(text_chars("été".as_bytes()), 3);
        assert_eq!(text_chars(br#"\"#), 0);
    }
}
