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
//! "files/{id}"`, a JSON line per request). An operation is read by
//! [`super::gemini_batch_stream::GeminiBatchStream`], whole or as it passes.

use super::batch_results::BatchResults;
use super::deferred_answer::unquoted;
use crate::translate::json_members::{skip_ws, ObjectMembers};

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
pub(super) fn batch_id(value: &[u8]) -> Option<&[u8]> {
    let id = unquoted(value.trim_ascii())?.strip_prefix(b"batches/")?;
    (!id.is_empty() && !id.contains(&b'/')).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::super::gemini_batch_stream::GeminiBatchStream;
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

    /// `doc` read as an operation is: the id, whether it ended, its model, its file,
    /// and its responses' usage; `None` when it is not a batch's.
    type Read = (
        Vec<u8>,
        Option<bool>,
        Option<String>,
        Option<Vec<u8>>,
        Option<Usage>,
    );

    fn read(doc: &str) -> Option<Read> {
        if !GeminiBatchStream::starts(doc.as_bytes()) {
            return None;
        }
        let mut stream = GeminiBatchStream::default();
        stream.feed(doc.as_bytes());
        let batch = stream.finish()?;
        let usage = batch.responses.as_ref().and_then(BatchResults::usage);
        Some((
            batch.id.to_vec(),
            batch.ended,
            batch.model,
            batch.file.map(<[u8]>::to_vec),
            usage,
        ))
    }

    #[test]
    fn a_batch_under_way_is_known_by_its_name_and_state() {
        let (id, ended, model, file, usage) = read(&operation("BATCH_STATE_PENDING", "")).unwrap();
        assert_eq!(id, b"b-123");
        assert_eq!(ended, Some(false));
        assert_eq!(model.as_deref(), Some("gemini-2.5-flash"));
        assert_eq!((file, usage), (None, None));
    }

    #[test]
    fn an_ended_batchs_inlined_responses_are_summed() {
        let inlined = format!(
            r#","output":{{"inlinedResponses":{{"inlinedResponses":[{},{{"error":{{"code":3}}}},{}]}}}}"#,
            response(10, 5, 2),
            response(7, 3, 0)
        );
        let (_, ended, _, _, usage) = read(&operation("BATCH_STATE_SUCCEEDED", &inlined)).unwrap();
        assert_eq!(ended, Some(true));
        let expected = Usage {
            input: 17,
            output: 10,
            reasoning: 2,
            ..Usage::default()
        };
        assert_eq!(usage, Some(expected));
    }

    #[test]
    fn an_ended_batchs_responses_file_is_named() {
        let filed = r#","output":{"responsesFile":"files/batch-out"}"#;
        let (_, _, _, file, _) = read(&operation("BATCH_STATE_SUCCEEDED", filed)).unwrap();
        assert_eq!(file.as_deref(), Some(&b"batch-out"[..]));
        // The operation's `done` ends it when no state was read; its `response`
        // names the output when the metadata does not.
        let doc = r#"{"name":"batches/b1","done":true,"response":{"@type":"x","inlinedResponses":{"inlinedResponses":[{"response":{"usageMetadata":{"promptTokenCount":4}}}]}}}"#;
        let (_, ended, _, _, usage) = read(doc).unwrap();
        assert_eq!((ended, usage.map(|u| u.input)), (Some(true), Some(4)));
        let doc = r#"{"name":"batches/b1","done":true,"response":{"@type":"x","responsesFile":"files/f1"}}"#;
        let (_, ended, _, file, _) = read(doc).unwrap();
        assert_eq!((ended, file.as_deref()), (Some(true), Some(&b"f1"[..])));
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
            assert!(read(doc).is_none(), "{doc}");
        }
    }
}
