//! The usage of a batch's results, read as they pass: a JSON object per line, each a
//! request's outcome, whose answer (when it succeeded) carries its usage and model:
//! under `result.message` in an Anthropic message batch's results, under
//! `response.body` in an OpenAI batch's output file, and as `response` itself in a
//! Gemini batch's responses (its file's lines, or the elements of its operation's
//! inlined responses). The batch is charged the sum of its lines.

use memchr::memmem;

use super::usage::Usage;
use super::usage_object::{read_model, read_nested, read_usage, Nested};
use crate::translate::json_members::{member_value, skip_ws, value_end, ObjectMembers};

/// The most of a line held whole; of a longer one (an embeddings batch's many
/// vectors) only its last [`KEPT_TAIL`] bytes are kept, where its usage is.
const MAX_HELD_LINE: usize = 1024 * 1024;

/// How much of the back of a line too long to hold is kept.
const KEPT_TAIL: usize = 256 * 1024;

/// The longest model name kept apart; a longer one counts as unnamed.
const MAX_MODEL_NAME: usize = 256;

/// The most models a batch's usage is kept apart for; the lines of any more count
/// as unnamed.
const MAX_MODELS: usize = 32;

/// The results read so far.
#[derive(Debug, Default)]
pub struct BatchResults {
    /// The line under way, while it fits [`MAX_HELD_LINE`].
    line: Vec<u8>,
    /// The line under way is past [`MAX_HELD_LINE`]: its first bytes (held before),
    /// and its last ones.
    long: Option<LongLine>,
    /// Whether the answer starts as JSON lines do (`None` until its first byte that
    /// is not white space): a file of another kind is not read.
    json: Option<bool>,
    /// The sum of the usage of the lines read.
    usage: Option<Usage>,
    /// The model the first line that names one names.
    model: Option<String>,
    /// The usage of the lines read, by the model each names (`""`: none): a batch may
    /// mix models, each at its own price.
    by_model: Vec<(String, Usage)>,
}

#[derive(Debug)]
struct LongLine {
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl BatchResults {
    /// Reads the next bytes of the results.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        if self.json.is_none() {
            let first = skip_ws(bytes, 0);
            if first == bytes.len() {
                return;
            }
            self.json = Some(bytes[first] == b'{');
        }
        if self.json == Some(false) {
            return;
        }
        while let Some(end) = memchr::memchr(b'\n', bytes) {
            if self.line.is_empty() && self.long.is_none() && end <= MAX_HELD_LINE {
                // A whole line in this piece: read where it lies (a longer one is read
                // from its ends, however it came).
                self.read_line(&bytes[..end]);
            } else {
                self.hold(&bytes[..end]);
                self.line_ended();
            }
            bytes = &bytes[end + 1..];
        }
        self.hold(bytes);
    }

    /// The results ended: a last line without its line feed counts too.
    pub fn finish(&mut self) {
        if !self.line.is_empty() || self.long.is_some() {
            self.line_ended();
        }
    }

    /// The sum of the usage of the lines read, when any reported one, capped as one
    /// answer's is ([`Usage::capped`]).
    pub fn usage(&self) -> Option<Usage> {
        self.usage.map(Usage::capped)
    }

    /// The model the results name, taken.
    pub fn take_model(&mut self) -> Option<String> {
        self.model.take()
    }

    /// The usage of the lines read by the model each named (`""`: none), taken, each
    /// capped as one answer's is.
    pub fn take_usage_by_model(&mut self) -> Vec<(String, Usage)> {
        let mut by_model = std::mem::take(&mut self.by_model);
        for (_, usage) in &mut by_model {
            *usage = usage.capped();
        }
        by_model
    }

    fn hold(&mut self, bytes: &[u8]) {
        if let Some(long) = &mut self.long {
            if bytes.len() >= KEPT_TAIL {
                long.tail.clear();
                long.tail
                    .extend_from_slice(&bytes[bytes.len() - KEPT_TAIL..]);
                return;
            }
            if long.tail.len() + bytes.len() > 2 * KEPT_TAIL {
                // What stays and `bytes` make [`KEPT_TAIL`].
                long.tail.drain(..long.tail.len() + bytes.len() - KEPT_TAIL);
            }
            long.tail.extend_from_slice(bytes);
            return;
        }
        if self.line.len() + bytes.len() > MAX_HELD_LINE {
            // The head is the line's first [`MAX_HELD_LINE`] bytes, however they came.
            let mut head = std::mem::take(&mut self.line);
            head.extend_from_slice(&bytes[..MAX_HELD_LINE - head.len()]);
            self.long = Some(LongLine {
                head,
                tail: Vec::new(),
            });
            self.hold(bytes);
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    fn line_ended(&mut self) {
        match self.long.take() {
            Some(long) => self.read_long_line(&long),
            None => {
                let line = std::mem::take(&mut self.line);
                self.read_line(&line);
                self.line = line;
                self.line.clear();
            }
        }
    }

    /// Reads one request's outcome: a line, or an element of a Gemini operation's
    /// inlined responses (shaped alike).
    pub(super) fn read_line(&mut self, line: &[u8]) {
        let Some(mut members) = ObjectMembers::of(line) else {
            return;
        };
        let outcome = std::iter::from_fn(|| members.next_front()).find_map(|m| match &*m.key() {
            b"result" => Some((m.value, &b"message"[..])),
            b"response" => Some((m.value, &b"body"[..])),
            _ => None,
        });
        let Some((outcome, answer_key)) = outcome else {
            return;
        };
        let Some(mut inside) = ObjectMembers::of(outcome) else {
            return;
        };
        let answer = std::iter::from_fn(|| inside.next_front())
            .find(|m| &*m.key() == answer_key)
            .map(|m| m.value);
        // Gemini's `response` is the answer itself, with no `body` around it.
        let answer = match answer {
            Some(answer) => answer,
            None if answer_key == b"body" => outcome,
            None => return,
        };
        let mut found = Nested::default();
        if read_nested(answer, &mut found).is_none() {
            return;
        }
        if let Some(mut usage) = found.usage {
            // A response line's web search items, counted beside its usage.
            usage.search_items = usage.search_items.or(found.searches);
            self.count(usage.normalize(), found.model);
        }
    }

    /// A line too long to hold: its usage from the last `usage` (Gemini's
    /// `usageMetadata`) member in its tail that is a usage object, its model from the
    /// last `model` (`modelVersion`) there (an embeddings answer names it after its
    /// vectors), else from the first in its head (a message names it before its
    /// content).
    fn read_long_line(&mut self, long: &LongLine) {
        // Whichever comes last, and is one: a tool call's arguments before it may name
        // the other, and a client's `metadata` after it name one that is a string.
        let usage_keys: [&[u8]; 2] = [b"\"usage\"", b"\"usageMetadata\""];
        let Some((at, key, usage)) = last_usage(&long.tail, &usage_keys) else {
            return;
        };
        // Gemini's `modelVersion` comes right after its usage. Another answer's model
        // comes before its content (in the head) or, for embeddings, right before its
        // usage after its vectors; any other `model` (a client's `metadata`, a tool's
        // schema, a prompt's variables) is not taken for it, and a line without one
        // is priced as its batch's model.
        let model = match key == usage_keys[1] {
            true => first_member(&long.tail[at..], b"\"modelVersion\"")
                .and_then(|v| read_model(v).flatten()),
            false => first_model(&long.head).or_else(|| model_right_before(&long.tail[..at])),
        };
        self.count(usage.normalize(), model);
    }

    /// Adds a line's `usage`, answered by `model`.
    fn count(&mut self, usage: Usage, model: Option<String>) {
        self.usage.get_or_insert_with(Usage::default).add(&usage);
        let named = model
            .as_deref()
            .filter(|m| m.len() <= MAX_MODEL_NAME)
            .unwrap_or_default();
        let unnamed = self.by_model.len() >= MAX_MODELS;
        let bucket = if unnamed { "" } else { named };
        match self.by_model.iter_mut().find(|(m, _)| m == bucket) {
            Some((_, total)) => total.add(&usage),
            None => self.by_model.push((bucket.to_string(), usage)),
        }
        if self.model.is_none() {
            self.model = model.filter(|m| m.len() <= MAX_MODEL_NAME);
        }
    }
}

/// The usage of the member keyed by one of `keys` that comes last in `doc` and is an
/// object or `null` (the answer's own: a client's `metadata` after it holds strings),
/// where its key starts, and which key it is; `None` when that one is `null` (the
/// request failed) or no usage object.
fn last_usage<'k>(
    doc: &[u8],
    keys: &[&'k [u8]],
) -> Option<(usize, &'k [u8], super::usage_object::RawUsage)> {
    let mut found: Vec<(usize, &[u8])> = keys
        .iter()
        .flat_map(|key| memmem::rfind_iter(doc, key).map(move |at| (at, *key)))
        .collect();
    found.sort_unstable_by_key(|(at, _)| std::cmp::Reverse(*at));
    let (at, key, value) = found.into_iter().find_map(|(at, key)| {
        let value = member_at(doc, at, key)?;
        matches!(value.first(), Some(b'{' | b'n')).then_some((at, key, value))
    })?;
    let mut usage = None;
    read_usage(value, &mut usage)?;
    Some((at, key, usage?))
}

/// The name of a `"model":"…",` member that `doc` ends with (white space aside).
fn model_right_before(doc: &[u8]) -> Option<String> {
    let doc = doc.trim_ascii_end().strip_suffix(b",")?.trim_ascii_end();
    let key = b"\"model\"";
    let at = memmem::rfind(doc, key)?;
    let value = member_at(doc, at, key)?;
    let ends_there = value.as_ptr() as usize + value.len() == doc.as_ptr() as usize + doc.len();
    ends_there.then(|| read_model(value).flatten()).flatten()
}

/// The first member keyed `model` in `doc` whose value is a name (a string).
fn first_model(doc: &[u8]) -> Option<String> {
    let key = b"\"model\"";
    memmem::find_iter(doc, key)
        .filter_map(|at| member_at(doc, at, key))
        .find_map(|value| read_model(value).flatten())
}

/// The value of the first member keyed `key` (a quoted name) in `doc`, a cut piece of
/// JSON: a quote that no backslash escapes, followed by a colon, is a key's.
fn first_member<'a>(doc: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    memmem::find_iter(doc, key).find_map(|at| member_at(doc, at, key))
}

fn member_at<'a>(doc: &'a [u8], at: usize, key: &[u8]) -> Option<&'a [u8]> {
    let backslashes = doc[..at].iter().rev().take_while(|&&b| b == b'\\').count();
    if backslashes % 2 == 1 {
        return None;
    }
    let start = member_value(doc, at + key.len())?;
    let end = value_end(doc, start)?;
    Some(&doc[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, input: u64, output: u64) -> String {
        format!(
            r#"{{"custom_id":"{id}","result":{{"type":"succeeded","message":{{"id":"msg_{id}","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{{"type":"text","text":"a line\nwith \"usage\":{{\"input_tokens\":999}}"}}],"stop_reason":"end_turn","usage":{{"input_tokens":{input},"cache_creation_input_tokens":0,"cache_read_input_tokens":2,"output_tokens":{output}}}}}}}}}"#
        )
    }

    /// `results` read in pieces of `split` bytes, to their end.
    fn read_in_pieces(results: &str, split: usize) -> BatchResults {
        let mut read = BatchResults::default();
        for piece in results.as_bytes().chunks(split) {
            read.feed(piece);
        }
        read.finish();
        read
    }

    #[test]
    fn results_of_huge_counts_are_capped_as_one_answer_is() {
        let huge = crate::metrics::usage::MAX_TOKENS_AN_ANSWER;
        let results = format!("{}\n{}", line("a", huge, 1), line("b", huge, 1));
        let mut read = read_in_pieces(&results, 100_000);
        assert_eq!(read.usage().unwrap().input, huge);
        assert_eq!(read.take_usage_by_model()[0].1.input, huge);
    }

    #[test]
    fn the_results_are_charged_the_sum_of_their_lines_however_split() {
        let errored = r#"{"custom_id":"e","result":{"type":"errored","error":{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}}}"#;
        let results = format!(
            "{}\n{errored}\n{}\n{}",
            line("a", 10, 3),
            line("b", 7, 4),
            line("c", 1, 1)
        );
        for split in [1, 5, 64, 100_000] {
            let mut read = read_in_pieces(&results, split);
            let usage = read.usage().unwrap();
            assert_eq!(
                (usage.input, usage.output, usage.cache_read),
                (18, 8, 6),
                "{split}"
            );
            assert_eq!(read.take_model().as_deref(), Some("claude-sonnet-4-5"));
            let by_model = read.take_usage_by_model();
            assert_eq!(by_model.len(), 1);
            assert_eq!(by_model[0].1.input, 18);
        }
    }

    #[test]
    fn an_openai_batch_output_file_is_charged_the_sum_of_its_lines() {
        let line = |id: &str, prompt: u64| {
            format!(
                r#"{{"id":"batch_req_{id}","custom_id":"{id}","response":{{"status_code":200,"request_id":"req_{id}","body":{{"id":"chatcmpl-{id}","object":"chat.completion","model":"gpt-4o-mini","choices":[{{"index":0,"message":{{"role":"assistant","content":"Hi"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":{prompt},"completion_tokens":2,"total_tokens":{}}}}}}},"error":null}}"#,
                prompt + 2
            )
        };
        let failed = r#"{"id":"batch_req_x","custom_id":"x","response":null,"error":{"code":"invalid","message":"bad"}}"#;
        let file = format!("{}\n{failed}\n{}\n", line("a", 10), line("b", 20));
        let mut read = BatchResults::default();
        read.feed(file.as_bytes());
        read.finish();
        let usage = read.usage().unwrap();
        assert_eq!((usage.input, usage.output), (30, 4));
        assert_eq!(read.take_model().as_deref(), Some("gpt-4o-mini"));
        // The batch's input file: requests, no usage.
        let mut read = BatchResults::default();
        read.feed(br#"{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[]}}"#);
        read.finish();
        assert_eq!(read.usage(), None);
    }

    #[test]
    fn a_responses_batch_line_is_charged_its_web_searches() {
        let line = r#"{"id":"batch_req_a","custom_id":"a","response":{"status_code":200,"body":{"id":"resp_a","object":"response","model":"gpt-5","output":[{"type":"web_search_call","id":"ws_1","status":"completed"},{"type":"message","content":[]}],"usage":{"input_tokens":10,"output_tokens":2}}},"error":null}"#;
        let mut read = BatchResults::default();
        read.feed(line.as_bytes());
        read.finish();
        let usage = read.usage().unwrap();
        assert_eq!((usage.input, usage.web_searches), (10, 1));
    }

    #[test]
    fn results_without_a_usage_charge_nothing() {
        let mut read = BatchResults::default();
        read.feed(b"{\"custom_id\":\"x\",\"result\":{\"type\":\"canceled\"}}\nnot json\n");
        read.finish();
        assert_eq!(read.usage(), None);
        // A file of another kind at the same address is not read at all.
        let mut read = BatchResults::default();
        read.feed(b"  %PDF-1.7\n{\"result\":{\"message\":{\"usage\":{\"input_tokens\":5}}}}\n");
        read.finish();
        assert_eq!(read.usage(), None);
    }

    #[test]
    fn a_long_gemini_line_is_charged_its_own_usage_not_what_its_tool_arguments_name() {
        // A tool call's arguments are JSON written by the model, unescaped: near the
        // line's end, they may name `usage` and `model` before the real ones.
        let text = "x".repeat(2 << 20);
        let line = format!(
            r#"{{"key":"k","response":{{"candidates":[{{"content":{{"parts":[{{"text":"{text}"}},{{"functionCall":{{"name":"f","args":{{"usage":{{"prompt_tokens":0}},"model":"free"}}}}}}]}}}}],"usageMetadata":{{"promptTokenCount":40,"candidatesTokenCount":9}},"modelVersion":"gemini-2.5-pro"}}}}"#
        );
        let mut read = read_in_pieces(&format!("{line}\n"), 1 << 16);
        let usage = read.usage().unwrap();
        assert_eq!((usage.input, usage.output), (40, 9));
        assert_eq!(read.take_model().as_deref(), Some("gemini-2.5-pro"));
    }

    #[test]
    fn a_long_lines_usage_is_the_last_that_is_one_not_what_a_clients_metadata_names() {
        // A Responses API answer in an OpenAI batch's output: made long by its
        // instructions, and ending with the client's `metadata` after its usage.
        let instructions = "i".repeat(2 << 20);
        let line = format!(
            r#"{{"id":"batch_req_r","custom_id":"r","response":{{"status_code":200,"body":{{"id":"resp_1","object":"response","instructions":"{instructions}","model":"gpt-4o-mini","prompt":{{"variables":{{"model":"free"}}}},"text":{{"format":{{"schema":{{"model":{{"type":"string"}}}}}}}},"usage":{{"input_tokens":500,"output_tokens":20}},"user":null,"metadata":{{"usage":"none","model":"free"}}}}}},"error":null}}"#
        );
        let mut read = read_in_pieces(&format!("{line}\n"), 1 << 16);
        let usage = read.usage().unwrap();
        assert_eq!((usage.input, usage.output), (500, 20));
        // Its model is past its first 1 MiB and not right before its usage: no name a
        // client chose (its prompt's variables, a schema) is taken for it.
        assert_eq!(read.take_model(), None);
        // A failed request's `null` usage is no usage, whatever an earlier object names.
        let failed = format!(
            r#"{{"custom_id":"f","response":{{"status_code":500,"body":{{"instructions":"{instructions}","text":{{"format":{{"schema":{{"usage":{{"input_tokens":7}}}}}}}},"usage":null,"metadata":{{}}}}}}}}"#
        );
        let read = read_in_pieces(&format!("{failed}\n"), 1 << 16);
        assert_eq!(read.usage(), None);
    }

    #[test]
    fn a_long_lines_head_is_its_first_bytes_however_they_came() {
        // Its first piece alone past what is held: the model it names early is read
        // there, not a tool's input that names one later.
        let text = "t".repeat(2 << 20);
        let line = format!(
            r#"{{"custom_id":"a","result":{{"type":"succeeded","message":{{"model":"claude-sonnet-4-5","content":[{{"type":"text","text":"{text}"}},{{"type":"tool_use","input":{{"model":"free"}}}}],"usage":{{"input_tokens":9,"output_tokens":1}}}}}}}}"#
        );
        let mut read = BatchResults::default();
        let (first, rest) = line.as_bytes().split_at(line.len() - 100);
        read.feed(first);
        read.feed(rest);
        read.feed(b"\n");
        assert_eq!(read.usage().map(|u| u.input), Some(9));
        assert_eq!(read.take_model().as_deref(), Some("claude-sonnet-4-5"));
    }

    #[test]
    fn a_line_too_long_to_hold_is_charged_from_its_ends() {
        // An embeddings batch's answer: megabytes of vectors, its model and usage last.
        let vectors = "0.0123,".repeat(400_000);
        let embeddings = format!(
            r#"{{"id":"batch_req_e","custom_id":"e","response":{{"status_code":200,"body":{{"object":"list","data":[{{"object":"embedding","index":0,"embedding":[{vectors}0.5]}}],"model":"text-embedding-3-small","usage":{{"prompt_tokens":900,"total_tokens":900}}}}}},"error":null}}"#
        );
        // A long message: its model first, its text escaping what looks like usage.
        let text = "a \\\"usage\\\":{\\\"input_tokens\\\":999} ".repeat(100_000);
        let message = format!(
            r#"{{"custom_id":"m","result":{{"type":"succeeded","message":{{"id":"msg_m","model":"claude-sonnet-4-5","content":[{{"type":"text","text":"{text}"}}],"usage":{{"input_tokens":7,"output_tokens":3}}}}}}}}"#
        );
        let long_model = format!(
            r#"{{"custom_id":"x","result":{{"message":{{"model":"{}","usage":{{"input_tokens":1,"output_tokens":1}}}}}}}}"#,
            "m".repeat(MAX_MODEL_NAME + 1)
        );
        let results = format!(
            "{embeddings}\n{message}\n{}\n{long_model}\n",
            line("b", 7, 4)
        );
        for split in [4096, 1 << 20, results.len()] {
            let mut read = read_in_pieces(&results, split);
            let usage = read.usage().unwrap();
            assert_eq!(
                (usage.input, usage.output),
                (900 + 7 + 7 + 1, 3 + 4 + 1),
                "{split}"
            );
            let mut by_model = read.take_usage_by_model();
            by_model.sort_by(|a, b| a.0.cmp(&b.0));
            let names: Vec<_> = by_model
                .iter()
                .map(|(m, u)| (m.as_str(), u.input))
                .collect();
            assert_eq!(
                names,
                [
                    ("", 1),
                    ("claude-sonnet-4-5", 14),
                    ("text-embedding-3-small", 900)
                ],
                "{split}"
            );
        }
    }
}
