//! A Gemini batch (`models/{model}:batchGenerateContent`) as the long-running operation
//! that creates and describes it says it is:
//!
//! ```json
//! {"name": "batches/{id}",
//!  "metadata": {"@type": "….GenerateContentBatch", "model": "models/{model}",
//!               "state": "BATCH_STATE_SUCCEEDED",
//!               "output": {"inlinedResponses": {"inlinedResponses": [{"response": {…}}]}}},
//!  "done": true, "response": {"@type": "….GenerateContentBatchOutput", …}}
//! ```
//!
//! Its responses (each a `generateContent` answer with its `usageMetadata`) are inlined
//! in its output, or its output names the file that holds them (`"responsesFile":
//! "files/{id}"`, a JSON line per request).

use super::batch_results::BatchResults;
use super::deferred_answer::unquoted;
use crate::translate::json_members::{skip_ws, ArrayElements, ObjectMembers};

/// A Gemini batch's operation, read.
#[derive(Debug)]
pub(super) struct GeminiBatch<'a> {
    /// Its id: the `{id}` of `batches/{id}`.
    pub id: &'a [u8],
    /// Whether its `state` (else the operation's `done`) says it has ended; `None`
    /// when neither was read.
    pub ended: Option<bool>,
    /// The model it runs, without `models/`.
    pub model: Option<String>,
    /// The file its responses are in, without `files/`.
    pub file: Option<&'a [u8]>,
    /// Its inlined responses, when it has them.
    pub responses: Option<BatchResults>,
}

/// The states a batch ends in.
const ENDED: [&[u8]; 4] = [
    br#""BATCH_STATE_SUCCEEDED""#,
    br#""BATCH_STATE_FAILED""#,
    br#""BATCH_STATE_CANCELLED""#,
    br#""BATCH_STATE_EXPIRED""#,
];

impl<'a> GeminiBatch<'a> {
    /// `doc` read as a Gemini batch's operation; `None` when it is not one: an object
    /// whose first member is `name`, naming `batches/{id}`. Every other JSON answer is
    /// told apart by its first bytes, unparsed.
    pub fn of(doc: &'a [u8]) -> Option<Self> {
        if !starts_with_name(doc) {
            return None;
        }
        let mut members = ObjectMembers::of(doc)?;
        let id = batch_id(members.next_front()?.value)?;
        let mut batch = Self {
            id,
            ended: None,
            model: None,
            file: None,
            responses: None,
        };
        let mut done = false;
        while let Some(member) = members.next_front() {
            match &*member.key() {
                b"metadata" => batch.read_metadata(member.value),
                b"done" => done = member.value.trim_ascii() == b"true",
                // The operation's result repeats the batch's output.
                b"response" if batch.responses.is_none() && batch.file.is_none() => {
                    batch.read_output(member.value)
                }
                _ => {}
            }
        }
        if done && batch.ended.is_none() {
            batch.ended = Some(true);
        }
        Some(batch)
    }

    /// The first bytes (`head`) of an operation too large to hold, read as a Gemini
    /// batch's: known by its name alone, whether it has ended unread (its state may
    /// come after what was held).
    pub fn of_head(head: &'a [u8]) -> Option<Self> {
        if !starts_with_name(head) {
            return None;
        }
        let name = ObjectMembers::of_head(head)?.next_front()?;
        let id = batch_id(name.value)?;
        Some(Self {
            id,
            ended: None,
            model: None,
            file: None,
            responses: None,
        })
    }

    /// A batch of the JSON texts of its operation's `name`, `done` and
    /// `metadata.state` (any empty when absent); `None` when the name is not a batch's.
    pub fn named(name: &'a [u8], done: &[u8], state: &[u8]) -> Option<Self> {
        let ended = match (state.is_empty(), done == b"true") {
            (false, _) => Some(ENDED.contains(&state)),
            (true, true) => Some(true),
            (true, false) => None,
        };
        Some(Self {
            id: batch_id(name)?,
            ended,
            model: None,
            file: None,
            responses: None,
        })
    }

    fn read_metadata(&mut self, value: &'a [u8]) {
        let Some(mut members) = ObjectMembers::of(value) else {
            return;
        };
        while let Some(member) = members.next_front() {
            match &*member.key() {
                b"state" => {
                    let state = member.value.trim_ascii();
                    self.ended = Some(ENDED.contains(&state));
                }
                b"model" => {
                    let model = unquoted(member.value.trim_ascii());
                    let model = model.map(|m| m.strip_prefix(b"models/").unwrap_or(m));
                    self.model = model.map(|m| String::from_utf8_lossy(m).into_owned());
                }
                b"output" => self.read_output(member.value),
                _ => {}
            }
        }
    }

    /// A `GenerateContentBatchOutput`: its inlined responses, or its responses file.
    fn read_output(&mut self, value: &'a [u8]) {
        let Some(mut members) = ObjectMembers::of(value) else {
            return;
        };
        while let Some(member) = members.next_front() {
            match &*member.key() {
                b"responsesFile" => {
                    let file = unquoted(member.value.trim_ascii());
                    self.file = file.map(|f| f.strip_prefix(b"files/").unwrap_or(f));
                }
                b"inlinedResponses" => {
                    let Some(mut inner) = ObjectMembers::of(member.value) else {
                        continue;
                    };
                    let list = std::iter::from_fn(|| inner.next_front())
                        .find(|m| &*m.key() == b"inlinedResponses");
                    let Some(elements) = list.and_then(|m| ArrayElements::of(m.value)) else {
                        continue;
                    };
                    let mut responses = BatchResults::default();
                    for element in elements {
                        responses.read_line(element);
                    }
                    self.responses = Some(responses);
                }
                _ => {}
            }
        }
    }
}

/// Whether `doc` opens an object whose first key is `name`.
fn starts_with_name(doc: &[u8]) -> bool {
    let open = skip_ws(doc, 0);
    if doc.get(open) != Some(&b'{') {
        return false;
    }
    let key = skip_ws(doc, open + 1);
    doc.get(key..)
        .is_some_and(|rest| rest.starts_with(br#""name""#))
}

/// The `{id}` of a `name` member's value `"batches/{id}"`.
fn batch_id(value: &[u8]) -> Option<&[u8]> {
    let id = unquoted(value.trim_ascii())?.strip_prefix(b"batches/")?;
    (!id.is_empty() && !id.contains(&b'/')).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::usage::Usage;

    fn response(input: u64, output: u64, thoughts: u64) -> String {
        format!(
            r#"{{"response":{{"candidates":[{{"content":{{"parts":[{{"text":"a \"usageMetadata\": {{}}"}}],"role":"model"}},"finishReason":"STOP"}}],"usageMetadata":{{"promptTokenCount":{input},"candidatesTokenCount":{output},"thoughtsTokenCount":{thoughts},"totalTokenCount":1}},"modelVersion":"gemini-2.5-flash"}},"metadata":{{"key":"r"}}}}"#
        )
    }

    fn operation(state: &str, output: &str) -> String {
        format!(
            r#"{{"name":"batches/b-123","metadata":{{"@type":"type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch","model":"models/gemini-2.5-flash","displayName":"d","state":"{state}","name":"batches/b-123"{output}}}}}"#
        )
    }

    #[test]
    fn a_batch_under_way_is_known_by_its_name_and_state() {
        let doc = operation("BATCH_STATE_PENDING", "");
        let batch = GeminiBatch::of(doc.as_bytes()).unwrap();
        assert_eq!(batch.id, b"b-123");
        assert_eq!(batch.ended, Some(false));
        assert_eq!(batch.model.as_deref(), Some("gemini-2.5-flash"));
        assert!(batch.file.is_none() && batch.responses.is_none());
    }

    #[test]
    fn an_ended_batchs_inlined_responses_are_summed() {
        let inlined = format!(
            r#","output":{{"inlinedResponses":{{"inlinedResponses":[{},{{"error":{{"code":3}}}},{}]}}}}"#,
            response(10, 5, 2),
            response(7, 3, 0)
        );
        let doc = operation("BATCH_STATE_SUCCEEDED", &inlined);
        let batch = GeminiBatch::of(doc.as_bytes()).unwrap();
        assert_eq!(batch.ended, Some(true));
        let usage = batch.responses.unwrap().usage().unwrap();
        let expected = Usage {
            input: 17,
            output: 10,
            reasoning: 2,
            ..Usage::default()
        };
        assert_eq!(usage, expected);
    }

    #[test]
    fn an_ended_batchs_responses_file_is_named() {
        let doc = operation(
            "BATCH_STATE_SUCCEEDED",
            r#","output":{"responsesFile":"files/batch-out"}"#,
        );
        let batch = GeminiBatch::of(doc.as_bytes()).unwrap();
        assert_eq!(batch.file, Some(&b"batch-out"[..]));
        // The operation's `done` ends it when no state was read; its `response`
        // names the output when the metadata does not.
        let doc = r#"{"name":"batches/b1","done":true,"response":{"@type":"x","responsesFile":"files/f1"}}"#;
        let batch = GeminiBatch::of(doc.as_bytes()).unwrap();
        assert_eq!((batch.ended, batch.file), (Some(true), Some(&b"f1"[..])));
    }

    #[test]
    fn an_operation_too_large_to_hold_is_a_batch_known_by_its_name() {
        let head =
            br#"{"name":"batches/b-9","metadata":{"@type":"x","output":{"inlinedResponses":{"inl"#;
        let batch = GeminiBatch::of_head(head).unwrap();
        assert_eq!((batch.id, batch.ended), (&b"b-9"[..], None));
        assert!(GeminiBatch::of_head(br#"{"id":"chatcmpl-1","choices":[{"#).is_none());
        assert!(GeminiBatch::of_head(br#"{"name":"batches/b-"#).is_none());
    }

    #[test]
    fn other_answers_are_not_batches() {
        for doc in [
            r#"{"id":"chatcmpl-1","name":"batches/b1"}"#,
            r#"{"name":"models/gemini-2.5-flash"}"#,
            r#"{"name":"batches/"}"#,
            r#"{"name":"batches/a/b"}"#,
            r#"[{"name":"batches/b1"}]"#,
            r#"{"name":"batches/b1""#,
        ] {
            assert!(GeminiBatch::of(doc.as_bytes()).is_none(), "{doc}");
        }
    }
}
