//! What a write through `/p/` (any method but `GET`, `HEAD`, `OPTIONS` and `DELETE`)
//! has the provider bill, as far as the gateway can tell from its endpoint: model work
//! whose usage the gateway reads (or watches for, a batch's), nothing billed by the
//! token, or work it cannot meter (images, audio, video, fine-tuning, evaluation and
//! Assistants runs, code containers, Gemini's context caches, Imagen and Veo, an
//! answer collected apart from its call). A caller held to tokens or a budget is let
//! make the first two only: the third would spend the provider's money past every
//! limit it is held to. What the gateway does not know is taken for the third, so a
//! provider's new endpoint is not free until it is read.

use http::Method;

use super::passthrough::{gemini_method, model_work_of, named_as};
use crate::metrics::usage::ModelWork;
use crate::translate::json_members::{ArrayElements, ObjectMembers};

/// What a write to an endpoint costs, by what the gateway reads of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteCost {
    /// A model's work whose usage the answer reports (or a batch's, read when it ends),
    /// with what the model does when [`model_work_of`] tells.
    Metered(Option<ModelWork>),
    /// No model work billed by the token: counting tokens, files, stores, cancels.
    Free,
    /// Work billed by a measure the gateway does not read, or not known to it.
    Unmetered,
}

/// The first segments of endpoints whose writes start no model work billed by the
/// token, at every provider: uploads and files (OpenAI's, Anthropic's, Gemini's),
/// vector stores (billed for storage), Assistants and their threads and messages (not
/// their runs).
const FREE_COLLECTIONS: [&str; 5] = ["files", "uploads", "vector_stores", "assistants", "threads"];

/// The same at OpenAI's own API alone: its Responses conversations and its moderation
/// are free, where Mistral's `conversations` run a model and its moderation is billed
/// (an OpenAI-format provider may be either).
const FREE_AT_OPENAI: [&str; 2] = ["conversations", "moderations"];

/// The last segments (or Gemini methods) of endpoints that bill nothing: counting a
/// request's tokens, stopping work, vLLM's and Z.ai's tokenizers, and the details
/// of an Ollama model (`api/show`, which its clients ask before a chat).
const FREE_ENDS: [&str; 10] = [
    "count_tokens",
    "input_tokens",
    "countTokens",
    "countTextTokens",
    "countMessageTokens",
    "cancel",
    "tokenize",
    "detokenize",
    "tokenizer",
    "show",
];

/// The last segments (or Gemini methods) of endpoints whose answers report their
/// usage besides the model calls [`model_work_of`] knows: batches, read once they have
/// ended (OpenAI's and Anthropic's `batches`, Gemini's `batchGenerateContent`), and
/// vLLM's scoring and pooling.
const METERED_ENDS: [&str; 6] = [
    "batches",
    "batchGenerateContent",
    "rerank",
    "score",
    "pooling",
    "classify",
];

/// Segments that make any endpoint unmetered wherever they stand: an Assistants run
/// (`threads/{id}/runs`, `threads/runs`) has a model work unseen, and Z.ai's `async`
/// chat answers only with an id, its completion collected by a read.
const UNMETERED_ANYWHERE: [&str; 2] = ["runs", "async"];

/// The most segments an endpoint is read for; one with more is not known.
const MOST_SEGMENTS: usize = 12;

/// What a `method` call to `endpoint` (the path below the provider's base URL, as
/// decoded) costs, at OpenAI's own API when `at_openai`: reads and deletes nothing; a
/// write other than `POST` is metered nowhere. Case is ignored and empty segments
/// skipped, as in [`model_work_of`]. A segment a lenient server may read as another
/// name (`runs;x`, `runs.`: what precedes a `;`, without trailing dots or white space)
/// makes the endpoint unmetered: the gateway's meter reads the path as written.
/// Leading version segments (`v1beta/…`, and Gemini's `upload/v1beta/files`) are
/// skipped.
pub fn write_cost(method: &Method, endpoint: &str, at_openai: bool) -> WriteCost {
    if matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE
    ) {
        return WriteCost::Free;
    }
    if let Some(work) = common_model_call(endpoint) {
        return match *method {
            Method::POST => WriteCost::Metered(Some(work)),
            _ => WriteCost::Unmetered,
        };
    }
    let mut named = [""; MOST_SEGMENTS];
    let mut count = 0;
    for segment in endpoint.split('/').filter(|s| !s.is_empty()) {
        if read_as_another(segment) {
            return WriteCost::Unmetered;
        }
        let Some(slot) = named.get_mut(count) else {
            return WriteCost::Unmetered;
        };
        *slot = segment;
        count += 1;
    }
    let segments = &named[..count];
    let is = named_as;
    let any_of = |s: &str, names: &[&str]| names.iter().any(|n| is(s, n));
    if segments.iter().any(|s| any_of(s, &UNMETERED_ANYWHERE)) {
        return WriteCost::Unmetered;
    }
    let Some((&last, before)) = segments.split_last() else {
        return WriteCost::Unmetered;
    };
    let third_last = before.len().checked_sub(2).map(|i| before[i]);
    let work = model_work_of(last, third_last);
    // Gemini's `models/{model}:{method}`: the method says.
    let end = gemini_method(last).unwrap_or(last);
    if work.is_some() || any_of(end, &METERED_ENDS) {
        return match *method {
            Method::POST => WriteCost::Metered(work),
            _ => WriteCost::Unmetered,
        };
    }
    if any_of(end, &FREE_ENDS) {
        return WriteCost::Free;
    }
    // A collection, or a method of it (Gemini's `files:register`).
    let first = segments
        .iter()
        .find(|s| !is(s, "upload") && !is_version(s))
        .map(|s| s.split(':').next().unwrap_or(s));
    let free = first
        .is_some_and(|f| any_of(f, &FREE_COLLECTIONS) || (at_openai && any_of(f, &FREE_AT_OPENAI)));
    if free {
        WriteCost::Free
    } else {
        WriteCost::Unmetered
    }
}

/// The model work of the endpoints nearly every model call goes to, written as their
/// SDKs write them (the client's `v1/` dropped or kept): told by one comparison, before
/// the endpoint is read segment by segment, which tells the same of them.
fn common_model_call(endpoint: &str) -> Option<ModelWork> {
    match endpoint {
        "chat/completions"
        | "v1/chat/completions"
        | "messages"
        | "v1/messages"
        | "responses"
        | "v1/responses"
        | "completions"
        | "v1/completions" => Some(ModelWork::Generates),
        "embeddings" | "v1/embeddings" => Some(ModelWork::Embeds),
        _ => None,
    }
}

/// Whether a lenient server may read `segment` as another name: what precedes a `;`
/// (matrix parameters), or the segment without trailing dots or white space.
fn read_as_another(segment: &str) -> bool {
    // Bytes, not chars: every byte looked for is ASCII, and a path segment is short.
    let bytes = segment.as_bytes();
    bytes.contains(&b';')
        || bytes
            .last()
            .is_some_and(|&b| b == b'.' || b.is_ascii_whitespace())
}

/// What in a model call's `body` has the provider bill past the usage its answer
/// reports, if anything, said for the refusal:
/// - asking for the answer to be kept and collected later by a read (xAI's
///   `"deferred": true`): the call itself answers with an id alone, and the read that
///   collects the completion bills nothing more at the gateway. Any top-level
///   `deferred` (case ignored, escapes read) but `false` or `null` asks, so that a
///   second member or a spelling a provider reads cannot;
/// - a hosted tool billed apart from the answer's usage ([`BILLED_APART`]): the
///   Responses API's `image_generation` (its images, as `images/generations` are),
///   `code_interpreter` (its containers) and `file_search` (its calls), Anthropic's
///   `code_execution` (its container time).
pub fn unmetered_ask(body: &[u8]) -> Option<&'static str> {
    let mut members = ObjectMembers::of(body)?;
    std::iter::from_fn(|| members.next_front()).find_map(|member| {
        let key = member.key();
        if key.eq_ignore_ascii_case(b"deferred") && !matches!(member.value, b"false" | b"null") {
            return Some(
                "`deferred` has the answer collected later by a read the gateway cannot charge",
            );
        }
        if !key.eq_ignore_ascii_case(b"tools") {
            return None;
        }
        let mut tools = ArrayElements::of(member.value)?;
        tools.find_map(billed_apart)
    })
}

/// Hosted tools a provider bills apart from the usage an answer reports, by the start
/// of their `type` (Anthropic's carry a date: `code_execution_20250825`), and why.
const BILLED_APART: [(&str, &str); 4] = [
    (
        "image_generation",
        "the `image_generation` tool bills images apart from the usage the answer reports",
    ),
    (
        "code_interpreter",
        "the `code_interpreter` tool bills its containers apart from the usage the answer reports",
    ),
    (
        "file_search",
        "the `file_search` tool bills each call apart from the usage the answer reports",
    ),
    (
        "code_execution",
        "the `code_execution` tool bills container time apart from the usage the answer reports",
    ),
];

/// Why the tool `tool` (an element of `tools`) is billed apart, if its type is one of
/// [`BILLED_APART`].
fn billed_apart(tool: &[u8]) -> Option<&'static str> {
    let mut members = ObjectMembers::of(tool)?;
    std::iter::from_fn(|| members.next_front()).find_map(|member| {
        if !member.key().eq_ignore_ascii_case(b"type") {
            return None;
        }
        let kind = serde_json::from_slice::<std::borrow::Cow<'_, str>>(member.value).ok()?;
        BILLED_APART.iter().find_map(|(start, why)| {
            kind.get(..start.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(start))
                .then_some(*why)
        })
    })
}

/// Whether `segment` is an API version (`v1`, `v1beta`, `v2alpha`, `v4`).
fn is_version(segment: &str) -> bool {
    let mut bytes = segment.bytes();
    matches!(bytes.next(), Some(b'v' | b'V')) && bytes.next().is_some_and(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost_of(endpoints: &[&str]) -> Vec<(String, WriteCost)> {
        endpoints
            .iter()
            .map(|e| (e.to_string(), write_cost(&Method::POST, e, true)))
            .collect()
    }

    fn all(endpoints: &[&str], cost: WriteCost) -> Vec<(String, WriteCost)> {
        endpoints.iter().map(|e| (e.to_string(), cost)).collect()
    }

    #[test]
    fn the_common_model_calls_cost_what_reading_them_segment_by_segment_tells() {
        let common = [
            "chat/completions",
            "v1/chat/completions",
            "messages",
            "v1/messages",
            "responses",
            "v1/responses",
            "completions",
            "v1/completions",
            "embeddings",
            "v1/embeddings",
        ];
        for endpoint in common {
            let work = common_model_call(endpoint);
            assert!(work.is_some(), "{endpoint}");
            // The same endpoint with a segment the fast path does not know: read in full.
            let read = format!("{endpoint}/");
            assert_eq!(common_model_call(&read), None);
            for method in [Method::POST, Method::PUT, Method::PATCH, Method::GET] {
                for at_openai in [true, false] {
                    assert_eq!(
                        write_cost(&method, endpoint, at_openai),
                        write_cost(&method, &read, at_openai),
                        "{method} {endpoint}"
                    );
                }
            }
            assert_eq!(
                write_cost(&Method::POST, endpoint, false),
                WriteCost::Metered(work)
            );
        }
    }

    #[test]
    fn model_calls_and_batches_are_metered() {
        let metered = [
            "chat/completions",
            "completions",
            "responses",
            "messages",
            "embeddings",
            "api/chat",
            "api/generate",
            "api/embed",
            "models/gemini-2.5-flash:generateContent",
            "v1beta/models/gemini-2.5-flash:streamGenerateContent",
            "models/text-embedding-004:embedContent",
            "tunedModels/my-model:generateContent",
            "batches",
            "messages/batches",
            "models/gemini-2.5-flash:batchGenerateContent",
            "Chat//Completions/",
            "rerank",
            "responses/compact",
        ];
        let costs = cost_of(&metered);
        assert!(
            costs
                .iter()
                .all(|(_, c)| matches!(c, WriteCost::Metered(_))),
            "{costs:?}"
        );
        let generates = |e: &str| write_cost(&Method::POST, e, true);
        assert_eq!(
            generates("responses"),
            WriteCost::Metered(Some(ModelWork::Generates))
        );
        assert_eq!(
            generates("embeddings"),
            WriteCost::Metered(Some(ModelWork::Embeds))
        );
        assert_eq!(generates("messages/batches"), WriteCost::Metered(None));
    }

    #[test]
    fn counting_files_stores_and_cancels_are_free() {
        let free = [
            "messages/count_tokens",
            "responses/input_tokens",
            "models/gemini-2.5-flash:countTokens",
            "files",
            "files/file-abc",
            "upload/v1beta/files",
            "v1beta/files",
            "uploads",
            "uploads/upload_abc/parts",
            "uploads/upload_abc/complete",
            "vector_stores",
            "vector_stores/vs_1/file_batches",
            "conversations",
            "conversations/conv_1/items",
            "assistants",
            "threads",
            "threads/thread_1/messages",
            "moderations",
            "batches/batch_1/cancel",
            "messages/batches/msgbatch_1/cancel",
            "responses/resp_1/cancel",
            "batches/abc:cancel",
            "operations/op_1:cancel",
            "tokenize",
            "api/show",
            "files:register",
            "v1beta/files:register",
        ];
        assert_eq!(cost_of(&free), all(&free, WriteCost::Free));
    }

    #[test]
    fn work_billed_by_other_measures_or_collected_apart_is_unmetered() {
        let unmetered = [
            "images/generations",
            "images/edits",
            "images/variations",
            "audio/speech",
            "audio/transcriptions",
            "audio/translations",
            "videos",
            "videos/video_1/remix",
            "videos/generations",
            "fine_tuning/jobs",
            "evals/eval_1/runs",
            "threads/runs",
            "threads/thread_1/runs",
            "threads/thread_1/runs/run_1/submit_tool_outputs",
            "containers",
            "containers/cntr_1/files",
            "async/chat/completions",
            "web_search",
            "cachedContents",
            "v1beta/cachedContents/abc",
            "models/imagen-4.0-generate-001:predict",
            "models/veo-3.0-generate-001:predictLongRunning",
            "models/gemini-embedding-001:asyncBatchEmbedContent",
            "tunedModels",
            "realtime/client_secrets",
            "organization/projects",
            "chat/completions/chatcmpl_1",
            "api/pull",
            "",
            "/",
            // Names a lenient server reads as `runs`, `async` or a model call, which
            // the meter, reading the path as written, would not know.
            "threads/thread_1/runs;x",
            "threads/thread_1/runs.",
            "threads/thread_1/runs ",
            "async;v=1/chat/completions",
            "responses;x",
            "responses.",
            "chat/completions.",
            "files/.",
        ];
        assert_eq!(cost_of(&unmetered), all(&unmetered, WriteCost::Unmetered));
    }

    #[test]
    fn reads_and_deletes_are_free_and_other_writes_are_metered_nowhere() {
        let cost = |method: Method, endpoint: &str| write_cost(&method, endpoint, true);
        for method in [Method::GET, Method::HEAD, Method::OPTIONS, Method::DELETE] {
            assert_eq!(cost(method, "images/generations"), WriteCost::Free);
        }
        let lower = Method::from_bytes(b"post").unwrap();
        for method in [Method::PUT, Method::PATCH, lower] {
            assert_eq!(
                cost(method.clone(), "chat/completions"),
                WriteCost::Unmetered,
                "{method}"
            );
            assert_eq!(
                cost(method.clone(), "images/generations"),
                WriteCost::Unmetered
            );
            assert_eq!(cost(method, "files/file_1"), WriteCost::Free);
        }
    }

    #[test]
    fn conversations_and_moderation_are_free_at_openais_own_api_alone() {
        for endpoint in ["conversations", "conversations/conv_1/items", "moderations"] {
            assert_eq!(write_cost(&Method::POST, endpoint, true), WriteCost::Free);
            // Mistral's start a model's work, and bill its moderation.
            assert_eq!(
                write_cost(&Method::POST, endpoint, false),
                WriteCost::Unmetered,
                "{endpoint}"
            );
        }
    }

    #[test]
    fn a_body_asking_for_its_answer_later_is_told_however_written() {
        for body in [
            r#"{"model":"grok-4","deferred":true,"messages":[]}"#,
            r#"{"model":"grok-4","deferred" : true}"#,
            r#"{"deferred":false,"model":"grok-4","deferred":true}"#,
            r#"{"model":"grok-4","Deferred":true}"#,
            r#"{"model":"grok-4","deferr\u0065d":true}"#,
            r#"{"model":"grok-4","deferred":"yes"}"#,
        ] {
            let said = unmetered_ask(body.as_bytes());
            assert!(said.is_some_and(|s| s.contains("deferred")), "{body}");
        }
        for body in [
            r#"{"model":"grok-4","messages":[]}"#,
            r#"{"model":"grok-4","deferred":false}"#,
            r#"{"model":"grok-4","deferred":null}"#,
            r#"{"model":"grok-4","metadata":{"deferred":true}}"#,
            r#"{"model":"grok-4","messages":[{"role":"user","content":"\"deferred\":true"}]}"#,
            "not json",
        ] {
            assert_eq!(unmetered_ask(body.as_bytes()), None, "{body}");
        }
    }

    #[test]
    fn per_call_hosted_tools_are_told_apart_from_tokens() {
        for (body, tool) in [
            (
                r#"{"model":"gpt-5","tools":[{"type":"code_interpreter","container":{"type":"auto"}}]}"#,
                "code_interpreter",
            ),
            (
                r#"{"model":"gpt-5","tools":[{"type":"file_search","vector_store_ids":["vs_1"]}]}"#,
                "file_search",
            ),
            (
                r#"{"model":"claude-sonnet-4-5","tools":[{"type":"code_execution_20250825","name":"code_execution"}]}"#,
                "code_execution",
            ),
        ] {
            let said = unmetered_ask(body.as_bytes());
            assert!(said.is_some_and(|s| s.contains(tool)), "{body}: {said:?}");
        }
        // A function of that name is the client's own.
        let own = r#"{"model":"gpt-5","tools":[{"type":"function","name":"code_interpreter"}]}"#;
        assert_eq!(unmetered_ask(own.as_bytes()), None);
    }

    #[test]
    fn a_tool_that_bills_images_apart_is_told_however_written() {
        for body in [
            r#"{"model":"gpt-5","tools":[{"type":"image_generation"}],"input":"a cat"}"#,
            r#"{"model":"gpt-5","tools":[{"type":"function","name":"f"},{"type":"Image_Generation","quality":"high"}]}"#,
            r#"{"model":"gpt-5","tools":[{"type":"image\u005fgeneration"}]}"#,
        ] {
            let said = unmetered_ask(body.as_bytes());
            assert!(
                said.is_some_and(|s| s.contains("image_generation")),
                "{body}"
            );
        }
        for body in [
            r#"{"model":"gpt-5","tools":[{"type":"function","name":"image_generation"}]}"#,
            r#"{"model":"gpt-5","tools":[{"type":"web_search"}],"input":"image_generation"}"#,
            r#"{"model":"gpt-5","tool_choice":{"type":"image_generation"}}"#,
        ] {
            assert_eq!(unmetered_ask(body.as_bytes()), None, "{body}");
        }
    }

    #[test]
    fn names_are_matched_whatever_their_case() {
        let cost = |endpoint: &str| write_cost(&Method::POST, endpoint, true);
        assert_eq!(cost("IMAGES/Generations"), WriteCost::Unmetered);
        assert_eq!(cost("Threads/t/RUNS"), WriteCost::Unmetered);
        assert_eq!(cost("FILES"), WriteCost::Free);
        assert_eq!(cost("models/m:COUNTTOKENS"), WriteCost::Free);
        assert_eq!(
            cost("V1/Chat/Completions"),
            WriteCost::Metered(Some(ModelWork::Generates))
        );
    }
}
