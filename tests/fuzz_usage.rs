//! Property tests of reading an answer's token usage: for any usage object of the
//! Chat Completions or the Anthropic format, written compactly or pretty, beside
//! members of any kind (keys and texts heavy in quotes, backslashes and brackets),
//! the counts read from a whole answer and from a stream event are the ones the
//! object holds; a count that is not a non-negative integer is read as no usage;
//! and no bytes at all make the meter panic.

#[path = "common/json_strategies.rs"]
mod json_strategies;
#[path = "common/proptest_config.rs"]
mod proptest_config;

use aurora::metrics::usage::{usage_of_json, Usage, UsageMeter};
use aurora::metrics::usage_estimate::{input_tokens, StreamedText};
use json_strategies::{any_value, tricky_string};
use proptest::prelude::*;
use proptest_config::config;
use serde_json::{json, Map, Value};

/// Members no reader looks for: their keys are never one of the usage's.
fn extra_members() -> impl Strategy<Value = Vec<(String, Value)>> {
    prop::collection::vec(
        (tricky_string().prop_map(|k| format!("x{k}")), any_value()),
        0..3,
    )
}

/// A count as an answer may write it: a number, or `null` (none).
fn count() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        1 => Just(None),
        4 => (0u64..1_000_000).prop_map(Some),
        1 => any::<u64>().prop_map(Some),
    ]
}

fn with_extras(mut object: Map<String, Value>, extras: Vec<(String, Value)>) -> Value {
    for (k, v) in extras {
        object.entry(k).or_insert(v);
    }
    Value::Object(object)
}

/// A Chat Completions usage object and the usage it reports.
fn chat_usage() -> impl Strategy<Value = (Value, Usage)> {
    (
        count(),
        count(),
        count(),
        count(),
        extra_members(),
        extra_members(),
    )
        .prop_map(
            |(prompt, completion, cached, reasoning, extras, detail_extras)| {
                let mut usage = Map::new();
                usage.insert("prompt_tokens".into(), json!(prompt));
                usage.insert("completion_tokens".into(), json!(completion));
                usage.insert("total_tokens".into(), json!(12));
                let details = with_extras(
                    Map::from_iter([("cached_tokens".to_string(), json!(cached))]),
                    detail_extras,
                );
                usage.insert("prompt_tokens_details".into(), details);
                usage.insert(
                    "completion_tokens_details".into(),
                    json!({"reasoning_tokens": reasoning, "audio_tokens": 0}),
                );
                let reported = if prompt.is_some() || completion.is_some() {
                    let cached = cached.unwrap_or(0);
                    Usage {
                        input: prompt.unwrap_or(0).saturating_sub(cached),
                        output: completion.unwrap_or(0),
                        cache_read: cached,
                        cache_write: 0,
                        reasoning: reasoning.unwrap_or(0),
                        web_searches: 0,
                        cost_nanos: 0,
                    }
                } else {
                    // A total alone (vLLM's rerank) is what was read.
                    Usage {
                        input: 12,
                        ..Usage::default()
                    }
                };
                (with_extras(usage, extras), reported)
            },
        )
}

/// An Anthropic usage object and the usage it reports.
fn anthropic_usage() -> impl Strategy<Value = (Value, Usage)> {
    (count(), count(), count(), count(), count(), extra_members()).prop_map(
        |(input, output, read, written, searches, extras)| {
            let usage = Map::from_iter([
                ("input_tokens".to_string(), json!(input)),
                ("output_tokens".to_string(), json!(output)),
                ("cache_read_input_tokens".to_string(), json!(read)),
                ("cache_creation_input_tokens".to_string(), json!(written)),
                ("service_tier".to_string(), json!("standard")),
                (
                    "server_tool_use".to_string(),
                    json!({"web_search_requests": searches, "web_fetch_requests": 1}),
                ),
            ]);
            let reported = Usage {
                input: input.unwrap_or(0),
                output: output.unwrap_or(0),
                cache_read: read.unwrap_or(0),
                cache_write: written.unwrap_or(0),
                reasoning: 0,
                web_searches: searches.unwrap_or(0),
                cost_nanos: 0,
            };
            (with_extras(usage, extras), reported)
        },
    )
}

/// An answer holding `usage` among members of any kind, compactly and pretty.
fn answers(usage: &Value, content: &Value, tail: &Value) -> [Vec<u8>; 2] {
    let answer = json!({
        "id": "msg_1",
        "model": "m",
        "content": content,
        "usage": usage,
        "z_tail": tail,
    });
    [
        serde_json::to_vec(&answer).unwrap(),
        serde_json::to_vec_pretty(&answer).unwrap(),
    ]
}

fn streamed(event: &[u8]) -> Option<Usage> {
    let mut meter = UsageMeter::for_answer(Some("text/event-stream"), None)?;
    let compact: Value = serde_json::from_slice(event).ok()?;
    meter.feed(format!("event: message_delta\ndata: {compact}\n\n").as_bytes());
    meter.finish().map(|charge| charge.usage)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn the_counts_read_are_the_ones_the_usage_object_holds(
        (usage, reported) in prop_oneof![chat_usage(), anthropic_usage()],
        content in any_value(),
        tail in any_value(),
    ) {
        // Counts past any model's are capped (`MAX_TOKENS_AN_ANSWER`).
        let reported = reported.capped();
        for answer in answers(&usage, &content, &tail) {
            prop_assert_eq!(usage_of_json(&answer), Some(reported));
            prop_assert_eq!(streamed(&answer), Some(reported));
        }
    }

    #[test]
    fn a_count_that_is_not_a_non_negative_integer_is_no_usage(
        (usage, _) in anthropic_usage(),
        bad in prop_oneof![
            (i64::MIN..0).prop_map(Value::from),
            prop::sample::select(vec![1.5, 0.0, 1e3]).prop_map(Value::from),
            tricky_string().prop_map(Value::String),
            any::<bool>().prop_map(Value::Bool),
            Just(json!([1])),
        ],
        key in prop::sample::select(vec!["input_tokens", "output_tokens", "cache_read_input_tokens"]),
    ) {
        let mut usage = usage;
        usage[key] = bad;
        for answer in answers(&usage, &Value::Null, &Value::Null) {
            prop_assert_eq!(usage_of_json(&answer), None);
        }
    }

    #[test]
    fn no_bytes_make_the_meter_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = usage_of_json(&bytes);
        let mut meter = UsageMeter::for_answer(Some("text/event-stream"), None).unwrap();
        meter.feed(b"data: ");
        meter.feed(&bytes);
        let _ = meter.finish();
    }

    #[test]
    fn no_bytes_make_the_estimate_panic(
        bytes in prop::collection::vec(prop::sample::select(b"{}[]\":,\\ adeltx0u".to_vec()), 0..256),
    ) {
        // Mostly JSON's own bytes and the keys the estimate looks for.
        let mut with_keys = b"{\"delta\":".to_vec();
        with_keys.extend_from_slice(&bytes);
        for doc in [&bytes[..], &with_keys[..]] {
            let _ = input_tokens(doc);
            StreamedText::default().event(doc);
        }
    }
}
