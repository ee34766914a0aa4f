//! The usage of a batch's results, read as they pass: a JSON object per line, each a
//! request's outcome, whose answer (when it succeeded) carries its usage and model:
//! under `result.message` in an Anthropic message batch's results, under
//! `response.body` in an OpenAI batch's output file. The batch is charged the sum of
//! its lines.

use super::usage::Usage;
use super::usage_object::{read_nested, Nested};
use crate::translate::json_members::ObjectMembers;

/// The longest line read; the rest of a longer one is skipped (its usage with it). A
/// line is one answer, which its `max_tokens` keeps far smaller (a file of another
/// kind read at the same address holds no more than this of it at once).
const MAX_LINE: usize = 4 * 1024 * 1024;

/// The results read so far.
#[derive(Debug, Default)]
pub struct BatchResults {
    /// The line under way.
    line: Vec<u8>,
    /// The line under way is past [`MAX_LINE`]: skipped to its end.
    skipping: bool,
    /// The sum of the usage of the lines read.
    usage: Option<Usage>,
    /// The model the first line that names one names.
    model: Option<String>,
    /// The usage of the lines read, by the model each names: a batch may mix models,
    /// each at its own price.
    by_model: Vec<(String, Usage)>,
}

/// The most models a batch's usage is kept apart for; the lines of any more count
/// as the last one's.
const MAX_MODELS: usize = 32;

impl BatchResults {
    /// Reads the next bytes of the results.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while let Some(end) = memchr::memchr(b'\n', bytes) {
            if self.line.is_empty() && !self.skipping {
                // A whole line in this piece: read where it lies.
                self.read_line(&bytes[..end]);
            } else {
                self.hold(&bytes[..end]);
                let line = std::mem::take(&mut self.line);
                if !std::mem::take(&mut self.skipping) {
                    self.read_line(&line);
                }
                self.line = line;
                self.line.clear();
            }
            bytes = &bytes[end + 1..];
        }
        self.hold(bytes);
    }

    /// The results ended: a last line without its line feed counts too.
    pub fn finish(&mut self) {
        if !self.line.is_empty() && !self.skipping {
            let line = std::mem::take(&mut self.line);
            self.read_line(&line);
        }
    }

    /// The sum of the usage of the lines read, when any reported one.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The model the results name, taken.
    pub fn take_model(&mut self) -> Option<String> {
        self.model.take()
    }

    /// The usage of the lines read by the model each named, taken.
    pub fn take_usage_by_model(&mut self) -> Vec<(String, Usage)> {
        std::mem::take(&mut self.by_model)
    }

    fn hold(&mut self, bytes: &[u8]) {
        if self.skipping {
            return;
        }
        if self.line.len() + bytes.len() > MAX_LINE {
            self.skipping = true;
            self.line.clear();
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    fn read_line(&mut self, line: &[u8]) {
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
        let Some(message) =
            std::iter::from_fn(|| inside.next_front()).find(|m| &*m.key() == answer_key)
        else {
            return;
        };
        let mut found = Nested::default();
        if read_nested(message.value, &mut found).is_none() {
            return;
        }
        if let Some(usage) = found.usage {
            let usage = usage.normalize();
            self.usage.get_or_insert_with(Usage::default).add(&usage);
            let model = found.model.as_deref().unwrap_or_default();
            match self.by_model.iter_mut().position(|(m, _)| m == model) {
                Some(i) => self.by_model[i].1.add(&usage),
                None if self.by_model.len() < MAX_MODELS => {
                    self.by_model.push((model.to_string(), usage));
                }
                None => {
                    if let Some((_, last)) = self.by_model.last_mut() {
                        last.add(&usage);
                    }
                }
            }
        }
        if self.model.is_none() {
            self.model = found.model;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, input: u64, output: u64) -> String {
        format!(
            r#"{{"custom_id":"{id}","result":{{"type":"succeeded","message":{{"id":"msg_{id}","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{{"type":"text","text":"a line\nwith \"usage\":{{\"input_tokens\":999}}"}}],"stop_reason":"end_turn","usage":{{"input_tokens":{input},"cache_creation_input_tokens":0,"cache_read_input_tokens":2,"output_tokens":{output}}}}}}}}}"#
        )
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
            let mut read = BatchResults::default();
            for piece in results.as_bytes().chunks(split) {
                read.feed(piece);
            }
            read.finish();
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
    fn results_without_a_usage_charge_nothing_and_a_line_too_long_is_skipped() {
        let mut read = BatchResults::default();
        read.feed(b"{\"custom_id\":\"x\",\"result\":{\"type\":\"canceled\"}}\nnot json\n");
        read.finish();
        assert_eq!(read.usage(), None);

        let mut read = BatchResults::default();
        read.feed(b"{\"custom_id\":\"long\",\"result\":{\"message\":{\"content\":\"");
        read.feed(&vec![b'a'; MAX_LINE]);
        read.feed(b"\",\"usage\":{\"input_tokens\":5,\"output_tokens\":5}}}}\n");
        read.feed(line("b", 7, 4).as_bytes());
        read.finish();
        assert_eq!(read.usage().map(|u| u.input), Some(7));
    }
}
