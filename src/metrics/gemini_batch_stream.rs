//! A Gemini batch's operation too large to hold (its inlined responses past what a
//! JSON answer may keep), read as it passes: a small JSON scanner that follows where
//! it is in the document, keeps the few members a batch is charged by (`name`, `done`,
//! `metadata.state`, `metadata.model`, `metadata.output.responsesFile`) and hands each
//! of `metadata.output.inlinedResponses.inlinedResponses` to [`BatchResults`] as it
//! ends, one line each. Nothing but those is held; the operation's `response`, which
//! repeats the output, is passed over.

use memchr::memchr2;

use super::batch_results::BatchResults;
use super::gemini_batch::GeminiBatch;
use super::usage::MAX_METERED_JSON;

/// The deepest nesting followed; a deeper document is not read further.
const MAX_DEPTH: usize = 128;

/// The longest member value kept (a name, a state, a file).
const MAX_KEPT: usize = 512;

/// The keys the scanner tells apart; any other is [`Key::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Name,
    Done,
    Metadata,
    State,
    Model,
    Output,
    ResponsesFile,
    InlinedResponses,
    Response,
    Other,
}

impl Key {
    fn of(raw: &[u8]) -> Self {
        match raw {
            b"name" => Key::Name,
            b"done" => Key::Done,
            b"metadata" => Key::Metadata,
            b"state" => Key::State,
            b"model" => Key::Model,
            b"output" => Key::Output,
            b"responsesFile" => Key::ResponsesFile,
            b"inlinedResponses" => Key::InlinedResponses,
            b"response" => Key::Response,
            _ => Key::Other,
        }
    }
}

/// One open container.
#[derive(Debug, Clone, Copy)]
enum Frame {
    /// An object: the key of the member under way (`None` while a key is due).
    Object(Option<Key>),
    Array,
}

/// A step of where a value sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    In(Key),
    Element,
}

/// The members kept, by where they sit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kept {
    Name,
    Done,
    State,
    Model,
    File,
}

const KEPT: [(&[Step], Kept); 5] = [
    (&[Step::In(Key::Name)], Kept::Name),
    (&[Step::In(Key::Done)], Kept::Done),
    (
        &[Step::In(Key::Metadata), Step::In(Key::State)],
        Kept::State,
    ),
    (
        &[Step::In(Key::Metadata), Step::In(Key::Model)],
        Kept::Model,
    ),
    (
        &[
            Step::In(Key::Metadata),
            Step::In(Key::Output),
            Step::In(Key::ResponsesFile),
        ],
        Kept::File,
    ),
];

/// Where each inlined response sits: in the batch's output, or (when that holds none)
/// in the operation's result, which repeats it.
const RESPONSE: [Step; 5] = [
    Step::In(Key::Metadata),
    Step::In(Key::Output),
    Step::In(Key::InlinedResponses),
    Step::In(Key::InlinedResponses),
    Step::Element,
];
const RESULT_RESPONSE: [Step; 4] = [
    Step::In(Key::Response),
    Step::In(Key::InlinedResponses),
    Step::In(Key::InlinedResponses),
    Step::Element,
];

/// What the scanner is in the middle of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// Between tokens.
    Between,
    /// In a string: a key's, or a value's; `escaped` after a backslash.
    Text { key: bool, escaped: bool },
    /// In a number, `true`, `false` or `null`.
    Literal,
}

/// A Gemini batch's operation, read as it passes.
#[derive(Debug)]
pub(super) struct GeminiBatchStream {
    stack: Vec<Frame>,
    lex: Lex,
    /// The key being read, while short enough to be one the scanner knows.
    key: Vec<u8>,
    /// The member being kept, and its JSON text so far.
    keeping: Option<(Kept, Vec<u8>)>,
    /// The depth an inlined response being read opened at.
    response_depth: Option<usize>,
    /// The line an inlined response makes, its raw line breaks made spaces.
    line: Vec<u8>,
    responses: BatchResults,
    any_response: bool,
    /// The output's inlined responses were read: the result's repeat them.
    from_output: bool,
    name: Vec<u8>,
    done: Vec<u8>,
    state: Vec<u8>,
    model: Vec<u8>,
    file: Vec<u8>,
    /// Not JSON as the scanner reads it, or too deep: nothing more is read.
    broken: bool,
}

impl Default for GeminiBatchStream {
    fn default() -> Self {
        Self {
            stack: Vec::new(),
            lex: Lex::Between,
            key: Vec::new(),
            keeping: None,
            response_depth: None,
            line: Vec::new(),
            responses: BatchResults::default(),
            any_response: false,
            from_output: false,
            name: Vec::new(),
            done: Vec::new(),
            state: Vec::new(),
            model: Vec::new(),
            file: Vec::new(),
            broken: false,
        }
    }
}

impl GeminiBatchStream {
    /// Whether an answer whose first bytes are `head` is a Gemini batch's operation,
    /// to be read by this scanner once too large to hold.
    pub fn starts(head: &[u8]) -> bool {
        GeminiBatch::of_head(head).is_some()
    }

    /// Reads the next bytes of the operation.
    pub fn feed(&mut self, bytes: &[u8]) {
        let mut at = 0;
        while at < bytes.len() && !self.broken {
            at = match self.lex {
                Lex::Text { key, escaped } => self.text(bytes, at, key, escaped),
                Lex::Literal => self.literal(bytes, at),
                Lex::Between => self.between(bytes, at),
            };
        }
    }

    /// The operation read whole, as a [`GeminiBatch`]: `None` when it was not one (no
    /// `batches/{id}` name), or broke off.
    pub fn finish(&mut self) -> Option<GeminiBatch<'_>> {
        if self.broken || !self.stack.is_empty() {
            return None;
        }
        let mut batch = GeminiBatch::named(&self.name, &self.done, &self.state)?;
        batch.model = super::deferred_answer::unquoted(&self.model)
            .map(|m| m.strip_prefix(b"models/").unwrap_or(m))
            .map(|m| String::from_utf8_lossy(m).into_owned());
        batch.file = super::deferred_answer::unquoted(&self.file)
            .map(|f| f.strip_prefix(b"files/").unwrap_or(f));
        if self.any_response {
            self.responses.finish();
            batch.responses = Some(std::mem::take(&mut self.responses));
        }
        Some(batch)
    }

    /// Where a value starting now sits.
    fn at(&self, path: &[Step]) -> bool {
        self.stack.len() == path.len()
            && self
                .stack
                .iter()
                .zip(path)
                .all(|(frame, step)| match frame {
                    Frame::Object(key) => key.map(Step::In) == Some(*step),
                    Frame::Array => *step == Step::Element,
                })
    }

    /// Whether an object starting now is an inlined response to read: one of the
    /// output's, or of the result's while the output gave none.
    fn response_starts(&mut self) -> bool {
        if self.at(&RESPONSE) {
            self.from_output = true;
        } else if self.from_output || !self.at(&RESULT_RESPONSE) {
            return false;
        }
        self.any_response = true;
        true
    }

    /// A string or literal value starts: kept when it is one of [`KEPT`].
    fn value_starts(&mut self) {
        let kept = KEPT.iter().find(|(path, _)| self.at(path));
        self.keeping = kept.map(|&(_, kept)| (kept, Vec::new()));
    }

    fn between(&mut self, bytes: &[u8], at: usize) -> usize {
        let b = bytes[at];
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => {}
            b'{' | b'[' => {
                // No container is kept whole.
                self.keeping = None;
                if b == b'{' && self.response_depth.is_none() && self.response_starts() {
                    self.response_depth = Some(self.stack.len());
                }
                if self.stack.len() == MAX_DEPTH {
                    self.broken = true;
                    return at;
                }
                self.stack.push(match b {
                    b'{' => Frame::Object(None),
                    _ => Frame::Array,
                });
            }
            b'}' | b']' => {
                if self.stack.pop().is_none() {
                    self.broken = true;
                    return at;
                }
                if self.response_depth == Some(self.stack.len()) {
                    self.take_line(b);
                    return at + 1;
                }
            }
            b':' => {}
            b',' => {
                if let Some(Frame::Object(key)) = self.stack.last_mut() {
                    *key = None;
                }
            }
            b'"' => {
                let key = matches!(self.stack.last(), Some(Frame::Object(None)));
                if key {
                    self.key.clear();
                } else {
                    self.value_starts();
                    self.keep(b"\"");
                }
                self.line_push(b);
                self.lex = Lex::Text {
                    key,
                    escaped: false,
                };
                return at + 1;
            }
            _ => {
                self.value_starts();
                self.lex = Lex::Literal;
                return at;
            }
        }
        self.line_push(b);
        at + 1
    }

    fn text(&mut self, bytes: &[u8], at: usize, key: bool, mut escaped: bool) -> usize {
        let mut from = at;
        loop {
            if escaped {
                // The byte after a backslash is the string's, whatever it is.
                if from == bytes.len() {
                    break;
                }
                from += 1;
                escaped = false;
                continue;
            }
            let Some(stop) = memchr2(b'"', b'\\', &bytes[from..]) else {
                from = bytes.len();
                break;
            };
            from += stop;
            if bytes[from] == b'\\' {
                escaped = true;
                from += 1;
                continue;
            }
            // The closing quote.
            self.text_piece(&bytes[at..=from], key);
            self.lex = Lex::Between;
            if key {
                let known = Key::of(&self.key);
                if let Some(Frame::Object(slot)) = self.stack.last_mut() {
                    *slot = Some(known);
                }
            } else {
                self.keeping_done();
            }
            return from + 1;
        }
        self.text_piece(&bytes[at..from], key);
        self.lex = Lex::Text { key, escaped };
        from
    }

    /// A piece of a string under way (its closing quote included when it ends).
    fn text_piece(&mut self, piece: &[u8], key: bool) {
        if key {
            if self.key.len() + piece.len() <= 64 {
                self.key.extend_from_slice(piece);
            } else {
                self.key.clear();
                self.key.extend_from_slice(b"\0");
            }
            if self.key.last() == Some(&b'"') {
                self.key.pop();
            }
        } else {
            self.keep(piece);
        }
        // Strings hold no raw line breaks.
        self.line_extend(piece);
    }

    fn literal(&mut self, bytes: &[u8], at: usize) -> usize {
        let end = bytes[at..]
            .iter()
            .position(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b',' | b'}' | b']'))
            .map_or(bytes.len(), |p| at + p);
        self.keep(&bytes[at..end]);
        self.line_extend(&bytes[at..end]);
        if end < bytes.len() {
            self.lex = Lex::Between;
            self.keeping_done();
        }
        end
    }

    fn keep(&mut self, piece: &[u8]) {
        if let Some((_, text)) = &mut self.keeping {
            if text.len() + piece.len() <= MAX_KEPT {
                text.extend_from_slice(piece);
            } else {
                self.keeping = None;
            }
        }
    }

    fn keeping_done(&mut self) {
        let Some((kept, text)) = self.keeping.take() else {
            return;
        };
        let slot = match kept {
            Kept::Name => &mut self.name,
            Kept::Done => &mut self.done,
            Kept::State => &mut self.state,
            Kept::Model => &mut self.model,
            Kept::File => &mut self.file,
        };
        if slot.is_empty() {
            *slot = text;
        }
    }

    fn line_push(&mut self, b: u8) {
        if self.response_depth.is_some() {
            // Line breaks between tokens would end the line early.
            let b = if matches!(b, b'\n' | b'\r') { b' ' } else { b };
            self.line.push(b);
        }
    }

    fn line_extend(&mut self, piece: &[u8]) {
        if self.response_depth.is_some() {
            self.line.extend_from_slice(piece);
            if self.line.len() >= MAX_METERED_JSON {
                // Handed on in pieces: the results keep the ends of a long line.
                self.responses.feed(&self.line);
                self.line.clear();
            }
        }
    }

    /// An inlined response ended with `close`: handed on as one line.
    fn take_line(&mut self, close: u8) {
        self.line.push(close);
        self.line.push(b'\n');
        self.responses.feed(&self.line);
        self.line.clear();
        self.response_depth = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::usage::Usage;

    fn response(input: u64, text: &str) -> String {
        format!(
            "{{\n  \"response\": {{\n    \"candidates\": [{{\"content\": {{\"parts\": [{{\"text\": \"{text}\"}}, {{\"functionCall\": {{\"name\": \"f\", \"args\": {{\"state\": \"BATCH_STATE_FAILED\", \"usageMetadata\": {{\"promptTokenCount\": 0}}}}}}}}]}}}}],\n    \"usageMetadata\": {{\"promptTokenCount\": {input}, \"candidatesTokenCount\": 2}},\n    \"modelVersion\": \"gemini-2.5-flash\"\n  }}\n}}"
        )
    }

    fn operation(responses: &[String]) -> String {
        let list = responses.join(",\n");
        format!(
            "{{\n  \"name\": \"batches/b-1\",\n  \"metadata\": {{\n    \"@type\": \"type.googleapis.com/x.GenerateContentBatch\",\n    \"model\": \"models/gemini-2.5-flash\",\n    \"name\": \"batches/other\",\n    \"output\": {{\"inlinedResponses\": {{\"inlinedResponses\": [\n{list}\n]}}}},\n    \"state\": \"BATCH_STATE_SUCCEEDED\"\n  }},\n  \"done\": true,\n  \"response\": {{\"@type\": \"x\", \"inlinedResponses\": {{\"inlinedResponses\": [\n{list}\n]}}}}\n}}"
        )
    }

    fn read(doc: &str, split: usize) -> (Vec<u8>, Option<bool>, Option<String>, Option<Usage>) {
        let mut stream = GeminiBatchStream::default();
        for piece in doc.as_bytes().chunks(split) {
            stream.feed(piece);
        }
        let batch = stream.finish().unwrap();
        let usage = batch.responses.and_then(|r| r.usage());
        (batch.id.to_vec(), batch.ended, batch.model, usage)
    }

    #[test]
    fn an_operations_inlined_responses_are_summed_however_it_is_split() {
        let escaped = r#"a \"usageMetadata\": {\"promptTokenCount\": 9} \\"#;
        let doc = operation(&[response(10, "hi"), response(20, escaped)]);
        let expected = Usage {
            input: 30,
            output: 4,
            ..Usage::default()
        };
        for split in [1, 2, 3, 7, 64, doc.len()] {
            let (id, ended, model, usage) = read(&doc, split);
            assert_eq!(id, b"b-1", "{split}");
            assert_eq!(ended, Some(true), "{split}");
            assert_eq!(model.as_deref(), Some("gemini-2.5-flash"), "{split}");
            assert_eq!(usage, Some(expected), "{split}");
        }
    }

    #[test]
    fn the_results_responses_are_read_when_the_output_gave_none() {
        let doc = format!(
            r#"{{"name":"batches/b-4","metadata":{{"state":"BATCH_STATE_SUCCEEDED"}},"done":true,"response":{{"inlinedResponses":{{"inlinedResponses":[{}]}}}}}}"#,
            response(7, "x")
        );
        let (_, ended, _, usage) = read(&doc, 3);
        assert_eq!(ended, Some(true));
        assert_eq!(usage.map(|u| u.input), Some(7));
    }

    #[test]
    fn a_running_batch_or_a_file_is_read_without_responses() {
        let running = r#"{"name":"batches/b-2","metadata":{"state":"BATCH_STATE_RUNNING"}}"#;
        let (_, ended, _, usage) = read(running, 5);
        assert_eq!((ended, usage), (Some(false), None));
        let filed = r#"{"name":"batches/b-3","metadata":{"state":"BATCH_STATE_SUCCEEDED","output":{"responsesFile":"files/out-3"}},"done":true}"#;
        let mut stream = GeminiBatchStream::default();
        stream.feed(filed.as_bytes());
        let batch = stream.finish().unwrap();
        assert_eq!(batch.file, Some(&b"out-3"[..]));
    }

    #[test]
    fn what_is_not_a_whole_operation_is_not_read() {
        for doc in [
            r#"{"name":"batches/b-1","metadata":{"state":"BATCH_STATE_SUCCEEDED""#,
            r#"{"name":"models/x"}"#,
            r#"}{"#,
        ] {
            let mut stream = GeminiBatchStream::default();
            stream.feed(doc.as_bytes());
            assert!(stream.finish().is_none(), "{doc}");
        }
        let deep = "[".repeat(MAX_DEPTH + 1);
        let mut stream = GeminiBatchStream::default();
        stream.feed(deep.as_bytes());
        assert!(stream.broken);
    }
}
