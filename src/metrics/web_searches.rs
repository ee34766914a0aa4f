//! The web searches a model ran for an answer, which providers bill per search apart
//! from its tokens ($10 per 1,000 at Anthropic and OpenAI, per query at Gemini):
//! read where each format says them, so that a USD budget counts them
//! (`models.prices.*.web_search`).
//!
//! - Anthropic reports them in its usage (`server_tool_use.web_search_requests`,
//!   read with the usage object); a stream names each as it starts, in a
//!   `content_block_start` of a `server_tool_use` block named `web_search`.
//! - The Responses API (OpenAI's, xAI's) gives one `web_search_call` output item per
//!   search; a stream announces each in a `response.output_item.added` event.
//! - Gemini lists a grounded answer's queries in each candidate's
//!   `groundingMetadata.webSearchQueries`.
//!
//! Every reader here first looks for its key with `memchr`, so an answer without a
//! search costs one scan and no parse.

use memchr::memmem;
use once_cell::sync::Lazy;

use crate::translate::json_members::{skip_ws, ArrayElements, ObjectMembers};

static WEB_SEARCH_CALL: Lazy<memmem::Finder<'static>> =
    Lazy::new(|| memmem::Finder::new(b"\"web_search_call\""));
static WEB_SEARCH_QUERIES: Lazy<memmem::Finder<'static>> =
    Lazy::new(|| memmem::Finder::new(b"\"webSearchQueries\""));
/// The start of both `"web_search"` (Anthropic's tool) and `"web_search_call"`.
static WEB_SEARCH: Lazy<memmem::Finder<'static>> =
    Lazy::new(|| memmem::Finder::new(b"\"web_search"));

/// The member of `object` (a JSON object's text) named `key`, from the front.
fn member<'a>(object: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let mut members = ObjectMembers::of(object)?;
    std::iter::from_fn(|| members.next_front())
        .find(|m| &*m.key() == key)
        .map(|m| m.value)
}

/// Whether `object` has a `key` member whose value is the JSON string `text` (with
/// its quotes).
fn says(object: &[u8], key: &[u8], text: &[u8]) -> bool {
    member(object, key).is_some_and(|v| v == text)
}

/// The `web_search_call` items of a Responses API answer's `output` (an array's
/// text): each is a search billed.
pub fn output_searches(output: &[u8]) -> u64 {
    if WEB_SEARCH_CALL.find(output).is_none() {
        return 0;
    }
    let Some(items) = ArrayElements::of(output) else {
        return 0;
    };
    let searches = items
        .filter(|item| says(item, b"type", br#""web_search_call""#))
        .count();
    searches as u64
}

/// The web search queries of a Gemini answer or chunk (`doc`, a JSON object): those
/// of each candidate's `groundingMetadata.webSearchQueries`, summed; `None` when no
/// candidate lists any.
pub fn gemini_queries(doc: &[u8]) -> Option<u64> {
    WEB_SEARCH_QUERIES.find(doc)?;
    let candidates = ArrayElements::of(member(doc, b"candidates")?)?;
    let mut listed = None;
    for candidate in candidates {
        let queries = member(candidate, b"groundingMetadata")
            .and_then(|grounding| member(grounding, b"webSearchQueries"))
            .and_then(ArrayElements::of);
        if let Some(queries) = queries {
            *listed.get_or_insert(0u64) += queries.count() as u64;
        }
    }
    listed
}

/// The names Gemini's request gives its Google Search tool under, in either case.
const GEMINI_SEARCH_TOOLS: [&[u8]; 4] = [
    b"google_search",
    b"googleSearch",
    b"google_search_retrieval",
    b"googleSearchRetrieval",
];

static GOOGLE_SEARCH: Lazy<memmem::Finder<'static>> =
    Lazy::new(|| memmem::Finder::new(b"oogle_search"));
static GOOGLE_SEARCH_CAMEL: Lazy<memmem::Finder<'static>> =
    Lazy::new(|| memmem::Finder::new(b"oogleSearch"));

/// Whether a Gemini `request` (its body) gives the model Google Search: a `tools`
/// element with one of [`GEMINI_SEARCH_TOOLS`].
pub fn asks_gemini_search(request: &[u8]) -> bool {
    if GOOGLE_SEARCH.find(request).is_none() && GOOGLE_SEARCH_CAMEL.find(request).is_none() {
        return false;
    }
    let Some(tools) = member(request, b"tools").and_then(ArrayElements::of) else {
        return false;
    };
    tools.into_iter().any(|tool| {
        ObjectMembers::of(tool).is_some_and(|mut members| {
            std::iter::from_fn(|| members.next_front())
                .any(|m| GEMINI_SEARCH_TOOLS.contains(&&*m.key()))
        })
    })
}

static WEB_SEARCH_OPTIONS: Lazy<memmem::Finder<'static>> =
    Lazy::new(|| memmem::Finder::new(b"\"web_search_options\""));

/// Whether a Chat Completions `request` (its body) gives `web_search_options` (not
/// `null`): the call searches the web, billed per call.
pub fn gives_web_search_options(request: &[u8]) -> bool {
    WEB_SEARCH_OPTIONS.find(request).is_some()
        && member(request, b"web_search_options").is_some_and(|v| v.trim_ascii() != b"null")
}

static SEARCH_MODEL: Lazy<memmem::Finder<'static>> = Lazy::new(|| memmem::Finder::new(b"-search-"));

/// Whether `model` searches the web on every call: OpenAI's Chat Completions search
/// models (`gpt-4o-search-preview`, `gpt-5-search-api`, their snapshots, under a
/// router's prefix too). Asked of every call's model: one search with a searcher
/// built once.
pub fn searches_every_call(model: &str) -> bool {
    let model = model.as_bytes();
    SEARCH_MODEL.find_iter(model).any(|at| {
        let rest = &model[at + b"-search-".len()..];
        rest.starts_with(b"preview") || rest.starts_with(b"api")
    })
}

/// What follows `{"type":"` at the start of `data` (white space allowed between
/// its tokens, as some servers write it): the type of an event that says it first.
fn typed_as(data: &[u8]) -> Option<&[u8]> {
    fn trimmed(bytes: &[u8]) -> &[u8] {
        &bytes[skip_ws(bytes, 0)..]
    }
    let rest = trimmed(data).strip_prefix(b"{")?;
    let rest = trimmed(rest).strip_prefix(b"\"type\"")?;
    let rest = trimmed(rest).strip_prefix(b":")?;
    trimmed(rest).strip_prefix(b"\"")
}

/// The SSE event names that may start a search: Anthropic's block and the Responses
/// API's item, each as it starts.
const STARTS: [&[u8]; 2] = [b"content_block_start", b"response.output_item.added"];

/// Whether the stream event `name`d so, of `data`, starts a web search: an Anthropic
/// `server_tool_use` block named `web_search`, or a Responses `web_search_call` item.
/// Every event of a stream passes here, so most are told by their name alone; one
/// without a name (a server that sends none) is looked at only when its data starts
/// with one of those types, as both providers write them.
pub fn starts_a_search(name: Option<&[u8]>, data: &[u8]) -> bool {
    let maybe = match name {
        Some(name) => STARTS.contains(&name),
        None => typed_as(data).is_some_and(|t| STARTS.iter().any(|s| t.starts_with(s))),
    };
    if !maybe || WEB_SEARCH.find(data).is_none() {
        return false;
    }
    match member(data, b"type") {
        Some(br#""content_block_start""#) => member(data, b"content_block").is_some_and(|block| {
            says(block, b"type", br#""server_tool_use""#)
                && says(block, b"name", br#""web_search""#)
        }),
        Some(br#""response.output_item.added""#) => {
            member(data, b"item").is_some_and(|item| says(item, b"type", br#""web_search_call""#))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::metrics::usage::{Charge, UsageMeter};

    /// The charge of `body`, an answer of `content_type`, fed `split` bytes at a
    /// time, ended whole or cut short (the client left).
    fn charged(content_type: &str, body: &str, split: usize, whole: bool) -> Charge {
        let mut meter = UsageMeter::for_answer(Some(content_type), None).unwrap();
        for piece in body.as_bytes().chunks(split) {
            meter.feed(piece);
        }
        let charge = if whole {
            meter.finish()
        } else {
            meter.cut_short()
        };
        charge.unwrap()
    }

    const SSE: &str = "text/event-stream";
    const JSON: &str = "application/json";

    /// An Anthropic stream that ran two searches, reporting `reported` of them.
    fn anthropic_stream(reported: u64) -> (String, usize) {
        let search = |i: u64| {
            format!(
                "event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":{i},\"content_block\":{{\"type\":\"server_tool_use\",\"id\":\"srvtoolu_{i}\",\"name\":\"web_search\",\"input\":{{}}}}}}\n\n"
            )
        };
        let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"usage\":{\"input_tokens\":40,\"output_tokens\":1,\"server_tool_use\":{\"web_search_requests\":0}}}}\n\n";
        let text = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"text_delta\",\"text\":\"The answer, from the web.\"}}\n\n";
        let before_end = format!("{start}{}{}{text}", search(0), search(1));
        let end = format!(
            "event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\"}},\"usage\":{{\"input_tokens\":900,\"output_tokens\":30,\"server_tool_use\":{{\"web_search_requests\":{reported}}}}}}}\n\nevent: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
        );
        let cut = before_end.len();
        (before_end + &end, cut)
    }

    #[test]
    fn anthropics_searches_are_charged_as_its_usage_counts_them() {
        let answer = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5",
            "content":[{"type":"text","text":"x"}],"stop_reason":"end_turn",
            "usage":{"input_tokens":900,"output_tokens":30,"server_tool_use":{"web_search_requests":2}}}"#;
        for split in [1, 7, answer.len()] {
            assert_eq!(charged(JSON, answer, split, true).usage.web_searches, 2);
        }
        let (stream, _) = anthropic_stream(2);
        for split in [1, 13, stream.len()] {
            let charge = charged(SSE, &stream, split, true);
            assert_eq!(charge.usage.web_searches, 2, "not once per start and again");
            assert!(!charge.estimated);
        }
        // A search that failed is not billed: the final count says so.
        let (stream, _) = anthropic_stream(1);
        assert_eq!(charged(SSE, &stream, 64, true).usage.web_searches, 1);
    }

    #[test]
    fn a_stream_left_before_its_usage_is_charged_the_searches_it_started() {
        let (stream, cut) = anthropic_stream(2);
        for split in [1, 13, cut] {
            let charge = charged(SSE, &stream[..cut], split, false);
            assert_eq!(charge.usage.web_searches, 2, "split {split}");
            assert!(charge.estimated);
        }
        // Left while searching, before any text: the searches still count.
        let searching = &stream[..stream.find("event: content_block_delta").unwrap()];
        let charge = charged(SSE, searching, 17, false);
        assert_eq!(charge.usage.web_searches, 2);

        let added = "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"output_index\":0,\"item\":{\"id\":\"ws_1\",\"type\":\"web_search_call\",\"status\":\"in_progress\"}}\n\n";
        let created = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"model\":\"gpt-5\",\"output\":[],\"usage\":null}}\n\n";
        let text = "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"item_id\":\"msg_1\",\"output_index\":1,\"delta\":\"From the web.\"}\n\n";
        let left = format!("{created}{added}{text}");
        assert_eq!(charged(SSE, &left, 9, false).usage.web_searches, 1);
    }

    #[test]
    fn a_count_at_a_streams_start_or_a_last_word_that_lists_fewer_is_not_the_count() {
        // Anthropic's `message_start` says 0; a last `message_delta` that says
        // nothing of the searches leaves the two started standing.
        let (stream, _) = anthropic_stream(2);
        let silent = stream.replace(r#","server_tool_use":{"web_search_requests":2}"#, "");
        assert!(!silent.contains(r#""web_search_requests":2"#));
        let charge = charged(SSE, &silent, 31, true);
        assert_eq!(charge.usage.web_searches, 2);
        assert!(charge.estimated, "more than the answer reported");
        // A response whose last word trims its output: the items it started ran.
        let added = |i: u32| {
            format!("event: response.output_item.added\ndata: {{\"type\":\"response.output_item.added\",\"output_index\":{i},\"item\":{{\"id\":\"ws_{i}\",\"type\":\"web_search_call\",\"status\":\"in_progress\"}}}}\n\n")
        };
        let completed = "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"completed\",\"model\":\"gpt-5\",\"output\":[],\"usage\":{\"input_tokens\":9,\"output_tokens\":3}}}\n\n";
        let stream = format!("{}{}{completed}", added(0), added(1));
        assert_eq!(charged(SSE, &stream, 7, true).usage.web_searches, 2);
        // A server that names no events and spaces its JSON.
        let spaced = "data: { \"type\": \"response.output_item.added\", \"item\": {\"type\": \"web_search_call\"}}\n\n";
        let stream = format!("{spaced}{completed}");
        assert_eq!(charged(SSE, &stream, 5, true).usage.web_searches, 1);
    }

    #[test]
    fn a_gemini_call_left_before_its_queries_that_gave_google_search_counts_one() {
        for tools in [
            r#"[{"google_search":{}}]"#,
            r#"[{"functionDeclarations":[]},{"googleSearch":{}}]"#,
            r#"[{"googleSearchRetrieval":{"dynamicRetrievalConfig":{}}}]"#,
        ] {
            let request = format!(r#"{{"contents":[],"tools":{tools}}}"#);
            assert!(asks_gemini_search(request.as_bytes()), "{tools}");
        }
        let said = br#"{"contents":[{"parts":[{"text":"use google_search"}]}],"tools":[{"codeExecution":{}}]}"#;
        assert!(!asks_gemini_search(said), "named in the text, not given");
        let chunk = r#"data: {"candidates":[{"content":{"parts":[{"text":"grounded text"}],"role":"model"}}],"usageMetadata":{"promptTokenCount":20,"totalTokenCount":20},"modelVersion":"gemini-3-pro"}

"#;
        let left = charged(SSE, chunk, 9, false);
        assert!(left.estimated);
        let request = br#"{"contents":[],"tools":[{"google_search":{}}]}"#;
        assert_eq!(
            left.with_searches_asked(Some(request), None)
                .usage
                .web_searches,
            1
        );
        assert_eq!(
            left.with_searches_asked(Some(said), None)
                .usage
                .web_searches,
            0
        );
        // A whole answer counts what it listed, none here.
        let finished = chunk
            .replace(
                r#""role":"model"}"#,
                r#""role":"model"},"finishReason":"STOP""#,
            )
            .replace(
                r#""totalTokenCount""#,
                r#""candidatesTokenCount":3,"totalTokenCount""#,
            );
        let whole = charged(SSE, &finished, 9, true);
        assert!(!whole.estimated);
        assert_eq!(
            whole
                .with_searches_asked(Some(request), None)
                .usage
                .web_searches,
            0
        );
    }

    #[test]
    fn a_chat_call_that_searches_counts_one_search_its_answer_does_not() {
        let answer = r#"{"id":"c1","object":"chat.completion","model":"gpt-4o-search-preview-2025-03-11","choices":[{"index":0,"message":{"role":"assistant","content":"x","annotations":[{"type":"url_citation"}]},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":3}}"#;
        let charge = charged(JSON, answer, 64, true);
        assert_eq!(charge.usage.web_searches, 0, "no answer counts them");
        let model = Some("gpt-4o-search-preview-2025-03-11");
        assert_eq!(
            charge.with_searches_asked(None, model).usage.web_searches,
            1
        );
        assert_eq!(
            charge
                .with_searches_asked(None, Some("openai/gpt-5-search-api"))
                .usage
                .web_searches,
            1
        );
        let options = br#"{"model":"gpt-5","web_search_options":{"search_context_size":"low"},"messages":[]}"#;
        assert_eq!(
            charge
                .with_searches_asked(Some(options), Some("gpt-5"))
                .usage
                .web_searches,
            1
        );
        let plain = br#"{"model":"gpt-5","web_search_options":null,"messages":[{"role":"user","content":""web_search_options": {}"}]}"#;
        assert_eq!(
            charge
                .with_searches_asked(Some(plain), Some("gpt-5"))
                .usage
                .web_searches,
            0
        );
        assert!(!searches_every_call("gpt-4o-mini"));
        assert!(!searches_every_call("jina-search-v2"));
        assert!(searches_every_call("my-search-x-search-preview"));
    }

    #[test]
    fn a_responses_searches_are_its_web_search_call_items() {
        let output = r#"[{"type":"web_search_call","id":"ws_1","status":"completed","action":{"type":"search","query":"a"}},
            {"type":"web_search_call","id":"ws_2","status":"completed","action":{"type":"search","query":"b"}},
            {"type":"message","id":"msg_1","role":"assistant","content":[{"type":"output_text","text":"x"}]}]"#;
        let answer = format!(
            r#"{{"id":"resp_1","object":"response","created_at":1,"status":"completed","model":"gpt-5","output":{output},"tools":[{{"type":"web_search"}}],"usage":{{"input_tokens":900,"output_tokens":30,"output_tokens_details":{{"reasoning_tokens":0}}}}}}"#
        );
        for split in [1, 11, answer.len()] {
            let charge = charged(JSON, &answer, split, true);
            assert_eq!(charge.usage.web_searches, 2);
            assert_eq!(charge.usage.input, 900);
        }
        // Its members in another order.
        let output_first = format!(
            r#"{{"output":{output},"id":"resp_1","object":"response","model":"gpt-5","usage":{{"input_tokens":9,"output_tokens":3}}}}"#
        );
        assert_eq!(charged(JSON, &output_first, 64, true).usage.web_searches, 2);
        let completed = format!(
            "event: response.completed\ndata: {{\"type\":\"response.completed\",\"response\":{{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"completed\",\"model\":\"gpt-5\",\"output\":{},\"usage\":{{\"input_tokens\":900,\"output_tokens\":30}}}}}}\n\n",
            output.replace('\n', "")
        );
        let added = |i: u32| {
            format!("event: response.output_item.added\ndata: {{\"type\":\"response.output_item.added\",\"output_index\":{i},\"item\":{{\"id\":\"ws_{i}\",\"type\":\"web_search_call\",\"status\":\"in_progress\"}}}}\n\n")
        };
        let stream = format!("{}{}{completed}", added(0), added(1));
        let charge = charged(SSE, &stream, 19, true);
        assert_eq!(charge.usage.web_searches, 2);
        assert!(!charge.estimated);
    }

    #[test]
    fn geminis_search_queries_are_charged_from_its_grounded_answer() {
        let answer = r#"{"candidates":[{"content":{"parts":[{"text":"x"}],"role":"model"},"finishReason":"STOP",
            "groundingMetadata":{"webSearchQueries":["rust pingora","pingora proxy"],"groundingChunks":[]}}],
            "usageMetadata":{"promptTokenCount":20,"candidatesTokenCount":10,"totalTokenCount":30},"modelVersion":"gemini-3-pro"}"#;
        assert_eq!(charged(JSON, answer, 5, true).usage.web_searches, 2);
        // A stream's chunks: the grounded one counts once, whatever follows it.
        let chunk = |body: &str| format!("data: {}\n\n", body.replace('\n', ""));
        let first = r#"{"candidates":[{"content":{"parts":[{"text":"x"}],"role":"model"}}],"usageMetadata":{"promptTokenCount":20,"totalTokenCount":20},"modelVersion":"gemini-3-pro"}"#;
        let stream = format!("{}{}", chunk(first), chunk(answer));
        assert_eq!(charged(SSE, &stream, 23, true).usage.web_searches, 2);
    }

    #[test]
    fn each_web_search_call_item_of_a_responses_output_is_a_search() {
        let output = br#"[
            {"type":"web_search_call","id":"ws_1","status":"completed","action":{"type":"search","query":"rust"}},
            {"id":"ws_2","status":"completed","type":"web_search_call"},
            {"type":"message","id":"msg_1","content":[{"type":"output_text","text":"\"web_search_call\" is an item"}]}
        ]"#;
        assert_eq!(output_searches(output), 2);
        let text_only =
            br#"[{"type":"message","content":[{"type":"output_text","text":"web_search_call"}]}]"#;
        assert_eq!(output_searches(text_only), 0);
        let said_in_text = br#"[{"type":"message","content":[{"type":"output_text","text":"\"web_search_call\""}]}]"#;
        assert_eq!(output_searches(said_in_text), 0, "text is not an item");
        assert_eq!(output_searches(b"[]"), 0);
        assert_eq!(output_searches(b"null"), 0);
    }

    #[test]
    fn geminis_queries_are_summed_over_its_candidates() {
        let doc = br#"{"candidates":[
            {"content":{"parts":[{"text":"x"}]},"groundingMetadata":{"webSearchQueries":["a","b"],"groundingChunks":[]}},
            {"content":{"parts":[{"text":"y"}]},"groundingMetadata":{"webSearchQueries":["c"]}}
          ],"usageMetadata":{"promptTokenCount":3}}"#;
        assert_eq!(gemini_queries(doc), Some(3));
        let ungrounded = br#"{"candidates":[{"content":{"parts":[{"text":"webSearchQueries"}]}}]}"#;
        assert_eq!(gemini_queries(ungrounded), None);
        let none_run = br#"{"candidates":[{"groundingMetadata":{"webSearchQueries":[]}}]}"#;
        assert_eq!(gemini_queries(none_run), Some(0));
    }

    #[test]
    fn a_stream_event_starting_a_search_is_told_from_others() {
        let anthropic = br#"{"type":"content_block_start","index":1,"content_block":{"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{}}}"#;
        assert!(starts_a_search(Some(b"content_block_start"), anthropic));
        assert!(starts_a_search(None, anthropic), "read by its type");
        let fetch = br#"{"type":"content_block_start","index":1,"content_block":{"type":"server_tool_use","id":"srvtoolu_1","name":"web_fetch","input":{}}}"#;
        assert!(!starts_a_search(Some(b"content_block_start"), fetch));
        let client_tool = br#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"web_search","input":{}}}"#;
        assert!(
            !starts_a_search(Some(b"content_block_start"), client_tool),
            "the client's own tool runs no search the provider bills"
        );
        let responses = br#"{"type":"response.output_item.added","output_index":0,"item":{"id":"ws_1","type":"web_search_call","status":"in_progress"}}"#;
        assert!(starts_a_search(
            Some(b"response.output_item.added"),
            responses
        ));
        let message = br#"{"type":"response.output_item.added","output_index":1,"item":{"id":"msg_1","type":"message","content":[]}}"#;
        assert!(!starts_a_search(
            Some(b"response.output_item.added"),
            message
        ));
        let delta = br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"\"web_search\""}}"#;
        assert!(!starts_a_search(Some(b"content_block_delta"), delta));
        assert!(!starts_a_search(None, delta));
        let done = br#"{"type":"response.output_item.done","item":{"id":"ws_1","type":"web_search_call","status":"completed"}}"#;
        assert!(
            !starts_a_search(Some(b"response.output_item.done"), done),
            "each search is counted once, as it starts"
        );
    }
}
