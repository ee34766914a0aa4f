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
    use super::*;

    #[test]
    fn an_operation_too_large_to_hold_is_a_batch_known_by_its_name() {
        let head =
            br#"{"name":"batches/b-9","metadata":{"@type":"x","output":{"inlinedResponses":{"inl"#;
        let batch = GeminiBatch::of_head(head).unwrap();
        assert_eq!((batch.id, batch.ended), (&b"b-9"[..], None));
        assert!(GeminiBatch::of_head(br#"{"id":"chatcmpl-1","choices":[{"#).is_none());
        assert!(GeminiBatch::of_head(br#"{"name":"batches/b-"#).is_none());
        for other in [
            &br#"{"id":"chatcmpl-1","name":"batches/b1"}"#[..],
            br#"{"name":"models/gemini-2.5-flash"}"#,
            br#"{"name":"batches/"}"#,
            br#"{"name":"batches/a/b"}"#,
            br#"[{"name":"batches/b1"}]"#,
        ] {
            assert!(GeminiBatch::of_head(other).is_none(), "{other:?}");
        }
    }
}
