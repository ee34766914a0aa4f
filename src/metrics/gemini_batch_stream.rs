//! A Gemini batch's operation too large to hold (its inlined responses past what a
//! JSON answer may keep), read as it passes: a small JSON scanner that follows where
//! it is in the document and keeps only the members a batch is charged by: `name`,
//! `done`, `metadata.state`, `metadata.model`, `metadata.output.responsesFile`, and of
//! each inlined response (`metadata.output.inlinedResponses.inlinedResponses[]`, else
//! the operation's `response`, which repeats them) its `response.usageMetadata` and
//! `response.modelVersion`, found where they sit, not by their names alone: a
//! request's `metadata` (the client's, echoed after its response) or a tool call's
//! arguments may name them too.

use memchr::memchr2;

use super::batch_results::BatchResults;
use super::gemini_batch::GeminiBatch;

/// The deepest nesting followed; a deeper document is not read further.
const MAX_DEPTH: usize = 1024;

/// The longest member value kept (a name, a state, a file, a model).
const MAX_KEPT: usize = 512;

/// The longest usage object kept: a few counts and their breakdown by modality (its
/// white space left out).
const MAX_USAGE: usize = 16 * 1024;

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
    UsageMetadata,
    ModelVersion,
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
            b"usageMetadata" => Key::UsageMetadata,
            b"modelVersion" => Key::ModelVersion,
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
    /// The file the operation's result names (its output's, repeated).
    ResultFile,
    /// The model of the inlined response under way.
    ResponseModel,
}

const KEPT: [(&[Step], Kept); 6] = [
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
    (
        &[Step::In(Key::Response), Step::In(Key::ResponsesFile)],
        Kept::ResultFile,
    ),
];

/// Where the inlined responses sit: in the batch's output, or in the operation's
/// result, which repeats it.
const OUTPUT_LIST: [Step; 5] = [
    Step::In(Key::Metadata),
    Step::In(Key::Output),
    Step::In(Key::InlinedResponses),
    Step::In(Key::InlinedResponses),
    Step::Element,
];
const RESULT_LIST: [Step; 4] = [
    Step::In(Key::Response),
    Step::In(Key::InlinedResponses),
    Step::In(Key::InlinedResponses),
    Step::Element,
];

/// Where, within an inlined response, its usage and model sit.
const USAGE_IN_RESPONSE: [Step; 2] = [Step::In(Key::Response), Step::In(Key::UsageMetadata)];
const MODEL_IN_RESPONSE: [Step; 2] = [Step::In(Key::Response), Step::In(Key::ModelVersion)];

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

/// The inlined response under way.
#[derive(Debug, Default)]
struct Response {
    /// The depth of the array it is an element of.
    depth: usize,
    /// It is one of the operation's result, not of the batch's output.
    of_result: bool,
    /// Its `response.usageMetadata`, as JSON text, once read whole.
    usage: Vec<u8>,
    /// The depth its usage object opened at, while it is being read.
    usage_depth: Option<usize>,
    /// Its usage was too long to be one: not counted.
    usage_spoilt: bool,
    /// Its `response.modelVersion`, as JSON text.
    model: Vec<u8>,
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
    /// The inlined response under way.
    response: Option<Response>,
    /// The usage of the output's inlined responses, and of the result's.
    output: Option<BatchResults>,
    result: Option<BatchResults>,
    name: Vec<u8>,
    done: Vec<u8>,
    state: Vec<u8>,
    model: Vec<u8>,
    file: Vec<u8>,
    result_file: Vec<u8>,
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
            response: None,
            output: None,
            result: None,
            name: Vec::new(),
            done: Vec::new(),
            state: Vec::new(),
            model: Vec::new(),
            file: Vec::new(),
            result_file: Vec::new(),
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

    /// The batch's id, once its name was read.
    pub fn id(&self) -> Option<&[u8]> {
        super::gemini_batch::batch_id(&self.name)
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
        // The output's file; the result's only when the output named none.
        let file = match self.file.is_empty() {
            true => &self.result_file,
            false => &self.file,
        };
        batch.file =
            super::deferred_answer::unquoted(file).map(|f| f.strip_prefix(b"files/").unwrap_or(f));
        // The output's responses; the result's only when the output had none.
        batch.responses = self.output.take().or(self.result.take());
        Some(batch)
    }

    /// Whether the open containers, outermost first, are `path` then `below`.
    fn at(&self, path: &[Step], below: &[Step]) -> bool {
        self.stack.len() == path.len() + below.len()
            && self
                .stack
                .iter()
                .zip(path.iter().chain(below))
                .all(|(frame, step)| match frame {
                    Frame::Object(key) => key.map(Step::In) == Some(*step),
                    Frame::Array => *step == Step::Element,
                })
    }

    /// The list an inlined response starting here would be an element of, if any:
    /// `Some(true)` for the result's.
    fn response_list(&self) -> Option<bool> {
        if self.at(&OUTPUT_LIST, &[]) {
            Some(false)
        } else if self.at(&RESULT_LIST, &[]) {
            Some(true)
        } else {
            None
        }
    }

    /// Whether a value starting here sits at `below` within the inlined response
    /// under way.
    fn in_response(&self, below: &[Step]) -> bool {
        let Some(response) = &self.response else {
            return false;
        };
        let list: &[Step] = if response.of_result {
            &RESULT_LIST
        } else {
            &OUTPUT_LIST
        };
        self.at(list, below)
    }

    /// A string or literal value starts: kept when it is one of [`KEPT`], or the
    /// model of the inlined response under way.
    fn value_starts(&mut self) {
        let kept = KEPT.iter().find(|(path, _)| self.at(path, &[]));
        self.keeping = match kept {
            Some(&(_, kept)) => Some((kept, Vec::new())),
            None if self.in_response(&MODEL_IN_RESPONSE) => Some((Kept::ResponseModel, Vec::new())),
            None => None,
        };
    }

    fn between(&mut self, bytes: &[u8], at: usize) -> usize {
        let b = bytes[at];
        match b {
            // White space is not kept: a pretty-printed usage would be mostly that.
            b' ' | b'\t' | b'\n' | b'\r' => {}
            b':' => self.usage_push(b),
            b'{' | b'[' => {
                // No container is kept but an inlined response's usage.
                self.keeping = None;
                if b == b'{' {
                    self.object_starts();
                }
                if self.stack.len() == MAX_DEPTH {
                    self.broken = true;
                    return at;
                }
                self.usage_push(b);
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
                self.usage_push(b);
                self.container_ends();
            }
            b',' => {
                self.usage_push(b);
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
                self.usage_push(b);
                self.lex = Lex::Text {
                    key,
                    escaped: false,
                };
            }
            _ => {
                self.value_starts();
                self.lex = Lex::Literal;
                return at;
            }
        }
        at + 1
    }

    /// An object starts here: an inlined response, or the usage of the one under way.
    fn object_starts(&mut self) {
        if self.response.is_none() {
            if let Some(of_result) = self.response_list() {
                self.response = Some(Response {
                    depth: self.stack.len(),
                    of_result,
                    ..Response::default()
                });
            }
            return;
        }
        if self.in_response(&USAGE_IN_RESPONSE) {
            let depth = self.stack.len();
            if let Some(response) = self.response.as_mut() {
                if response.usage_depth.is_none() && response.usage.is_empty() {
                    response.usage_depth = Some(depth);
                }
            }
        }
    }

    /// A container closed: the usage object, or the inlined response, under way may
    /// have ended with it.
    fn container_ends(&mut self) {
        let depth = self.stack.len();
        let Some(response) = self.response.as_mut() else {
            return;
        };
        if response.usage_depth == Some(depth) {
            response.usage_depth = None;
        }
        if response.depth == depth {
            if let Some(response) = self.response.take() {
                self.count(response);
            }
        }
    }

    /// An inlined response read whole: its usage counted, as a line of results.
    fn count(&mut self, response: Response) {
        if response.usage.is_empty() || response.usage_spoilt {
            return;
        }
        let mut line = Vec::with_capacity(response.usage.len() + response.model.len() + 48);
        line.extend_from_slice(br#"{"response":{"usageMetadata":"#);
        line.extend_from_slice(&response.usage);
        if !response.model.is_empty() {
            line.extend_from_slice(br#","modelVersion":"#);
            line.extend_from_slice(&response.model);
        }
        line.extend_from_slice(b"}}\n");
        let results = match response.of_result {
            true => &mut self.result,
            false => &mut self.output,
        };
        results
            .get_or_insert_with(BatchResults::default)
            .feed(&line);
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
        self.usage_extend(piece);
    }

    fn literal(&mut self, bytes: &[u8], at: usize) -> usize {
        let end = bytes[at..]
            .iter()
            .position(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b',' | b'}' | b']'))
            .map_or(bytes.len(), |p| at + p);
        self.keep(&bytes[at..end]);
        self.usage_extend(&bytes[at..end]);
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
            Kept::ResultFile => &mut self.result_file,
            Kept::ResponseModel => match self.response.as_mut() {
                Some(response) => &mut response.model,
                None => return,
            },
        };
        if slot.is_empty() {
            *slot = text;
        }
    }

    /// A byte of the usage object under way, if one is.
    fn usage_push(&mut self, b: u8) {
        self.usage_extend(&[b]);
    }

    /// Bytes of the usage object under way, if one is.
    fn usage_extend(&mut self, piece: &[u8]) {
        let Some(response) = self.response.as_mut() else {
            return;
        };
        if response.usage_depth.is_none() || response.usage_spoilt {
            return;
        }
        if response.usage.len() + piece.len() > MAX_USAGE {
            response.usage_spoilt = true;
            response.usage = Vec::new();
            return;
        }
        // Line breaks between its tokens would end the line it is counted as.
        let start = response.usage.len();
        response.usage.extend_from_slice(piece);
        for b in &mut response.usage[start..] {
            if matches!(*b, b'\n' | b'\r') {
                *b = b' ';
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::usage::Usage;

    fn response(input: u64, text: &str) -> String {
        format!(
            "{{\n  \"response\": {{\n    \"candidates\": [{{\"content\": {{\"parts\": [{{\"text\": \"{text}\"}}, {{\"functionCall\": {{\"name\": \"f\", \"args\": {{\"state\": \"BATCH_STATE_FAILED\", \"usageMetadata\": {{\"promptTokenCount\": 0}}}}}}}}]}}}}],\n    \"usageMetadata\": {{\n      \"promptTokenCount\": {input},\n      \"candidatesTokenCount\": 2\n    }},\n    \"modelVersion\": \"gemini-2.5-flash\"\n  }},\n  \"metadata\": {{\"usageMetadata\": {{\"promptTokenCount\": 0}}, \"modelVersion\": \"free\", \"pad\": [[], [], {{}}]}}\n}}"
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
    fn a_response_is_counted_by_its_own_usage_whatever_follows_it() {
        // The client's metadata, echoed after the response, padded and naming a usage
        // of its own: the response's is counted, and its model.
        let pad = "p".repeat(9 << 20);
        let element = format!(
            r#"{{"response":{{"usageMetadata":{{"promptTokenCount":70,"candidatesTokenCount":5}},"modelVersion":"gemini-2.5-pro"}},"metadata":{{"pad":"{pad}","usageMetadata":{{"promptTokenCount":0}},"modelVersion":"free"}}}}"#
        );
        let doc = operation(&[element]);
        let mut stream = GeminiBatchStream::default();
        for piece in doc.as_bytes().chunks(1 << 16) {
            stream.feed(piece);
        }
        let mut responses = stream.finish().unwrap().responses.unwrap();
        let usage = responses.usage().unwrap();
        assert_eq!((usage.input, usage.output), (70, 5));
        assert_eq!(responses.take_model().as_deref(), Some("gemini-2.5-pro"));
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
        // Before the output, the result's are not added to it.
        let both = format!(
            r#"{{"name":"batches/b-5","response":{{"inlinedResponses":{{"inlinedResponses":[{}]}}}},"metadata":{{"output":{{"inlinedResponses":{{"inlinedResponses":[{}]}}}},"state":"BATCH_STATE_SUCCEEDED"}}}}"#,
            response(7, "x"),
            response(7, "x")
        );
        let (_, _, _, usage) = read(&both, 5);
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
        // The operation's result names it when the output does not; `done` ends it.
        let result = r#"{"name":"batches/b1","done":true,"response":{"@type":"x","responsesFile":"files/f1"}}"#;
        let mut stream = GeminiBatchStream::default();
        stream.feed(result.as_bytes());
        let batch = stream.finish().unwrap();
        assert_eq!((batch.ended, batch.file), (Some(true), Some(&b"f1"[..])));
    }

    #[test]
    fn thinking_counts_as_output_and_an_error_element_counts_nothing() {
        let thinking = r#"{"response":{"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":5,"thoughtsTokenCount":2}}}"#;
        let doc = operation(&[
            thinking.into(),
            r#"{"error":{"code":3}}"#.into(),
            response(7, "x"),
        ]);
        let (_, _, _, usage) = read(&doc, 11);
        let expected = Usage {
            input: 17,
            output: 9,
            reasoning: 2,
            ..Usage::default()
        };
        assert_eq!(usage, Some(expected));
    }

    #[test]
    fn what_is_not_a_whole_operation_is_not_read() {
        for doc in [
            r#"{"name":"batches/b-1","metadata":{"state":"BATCH_STATE_SUCCEEDED""#,
            r#"{"name":"models/x"}"#,
            r#"{"name":"batches/a/b"}"#,
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
        assert!(stream.finish().is_none());
    }

    #[test]
    fn what_is_held_stays_small_whatever_a_response_holds() {
        // Structure alone, pretty-printed: nothing of it is held.
        let structure = "[[], {}, [[]]],\n    ".repeat(1 << 16);
        let element = format!(
            r#"{{"response":{{"candidates":[{structure}[]],"usageMetadata":{{"promptTokenCount":3}}}}}}"#
        );
        let doc = operation(&[element]);
        let mut stream = GeminiBatchStream::default();
        for piece in doc.as_bytes().chunks(4096) {
            stream.feed(piece);
            let held =
                stream.key.capacity() + stream.response.as_ref().map_or(0, |r| r.usage.capacity());
            assert!(held <= MAX_USAGE + 128, "{held}");
        }
        let usage = stream.finish().unwrap().responses.unwrap().usage().unwrap();
        assert_eq!(usage.input, 3);
    }
}
