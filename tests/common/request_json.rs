//! Proptest strategies for request bodies in both formats: mostly plausible
//! Chat Completions and Messages requests (so translation reaches its deep
//! paths), with any member now and then replaced by an arbitrary JSON value.
//! Included with `#[path]` by the tests that use it.

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{json, Map, Value};

/// Short strings that mean something to the translators.
const WORDS: &[&str] = &[
    "",
    " ",
    "user",
    "assistant",
    "system",
    "developer",
    "tool",
    "function",
    "text",
    "image",
    "image_url",
    "file",
    "document",
    "input_audio",
    "refusal",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
    "auto",
    "any",
    "required",
    "none",
    "custom",
    "base64",
    "url",
    "enabled",
    "low",
    "medium",
    "high",
    "minimal",
    "application/pdf",
    "image/png",
    "audio",
    "json_object",
    "json_schema",
    "ephemeral",
    "é\"\\\n\u{1}😊",
];

/// Member names either format uses.
const KEYS: &[&str] = &[
    "role",
    "content",
    "type",
    "text",
    "name",
    "id",
    "input",
    "arguments",
    "function",
    "tool_calls",
    "tool_call_id",
    "tool_use_id",
    "image_url",
    "url",
    "source",
    "data",
    "media_type",
    "file",
    "file_data",
    "cache_control",
    "is_error",
    "title",
    "parameters",
    "input_schema",
    "description",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "stream",
    "max_tokens",
    "thinking",
    "budget_tokens",
    "metadata",
    "user_id",
    "include_usage",
];

const URLS: &[&str] = &[
    "https://example.com/a.png",
    "HTTP://EXAMPLE.COM/B",
    "data:image/png;base64,iVBORw0KGgo=",
    "data:application/pdf;base64,JVBERi0=",
    "data:application/pdf;x=1;BASE64,JVBE",
    "data:;base64,AAAA",
    "data:image/png,raw",
    "data:image/png;base64",
    "ftp://x/y.png",
    "héllo wörld",
];

/// Any string: a meaningful word or arbitrary text.
pub fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(WORDS).prop_map(String::from),
        1 => any::<String>(),
    ]
}

/// A positive count most of the time, sometimes any number.
fn count() -> impl Strategy<Value = Value> {
    prop_oneof![8 => (1u64..40000).prop_map(Value::from), 1 => number()]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0u64..6).prop_map(Value::from),
        Just(json!(-1)),
        Just(json!(u64::MAX)),
        Just(json!(1.0)),
        (0.0f64..3.0).prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
    ]
}

/// Any JSON value, small and not too deep.
pub fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![4 => select(KEYS).prop_map(String::from), 1 => string()],
                    inner
                ),
                0..4
            )
            .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// `plausible` most of the time, sometimes any value.
fn or_any(plausible: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Value> {
    prop_oneof![60 => plausible, 1 => any_json()].boxed()
}

/// A member that is usually absent, else plausible, sometimes anything.
fn member(
    name: &'static str,
    plausible: impl Strategy<Value = Value> + 'static,
) -> BoxedStrategy<Option<(String, Value)>> {
    prop_oneof![
        3 => Just(None),
        2 => or_any(plausible).prop_map(move |v| Some((name.to_owned(), v))),
    ]
    .boxed()
}

/// A member seldom present, as it usually makes translation fail.
fn rare(
    name: &'static str,
    plausible: impl Strategy<Value = Value> + 'static,
) -> BoxedStrategy<Option<(String, Value)>> {
    prop_oneof![
        40 => Just(None),
        1 => or_any(plausible).prop_map(move |v| Some((name.to_owned(), v))),
    ]
    .boxed()
}

/// A member present most of the time.
fn usual(
    name: &'static str,
    plausible: impl Strategy<Value = Value> + 'static,
) -> BoxedStrategy<Option<(String, Value)>> {
    prop_oneof![
        1 => Just(None),
        60 => or_any(plausible).prop_map(move |v| Some((name.to_owned(), v))),
    ]
    .boxed()
}

fn object(members: Vec<BoxedStrategy<Option<(String, Value)>>>) -> impl Strategy<Value = Value> {
    members.prop_map(|ms| Value::Object(ms.into_iter().flatten().collect::<Map<_, _>>()))
}

/// One of `good`, now and then one of `bad` or any string.
fn pick(
    good: &'static [&'static str],
    bad: &'static [&'static str],
) -> impl Strategy<Value = Value> {
    prop_oneof![
        40 => select(good).prop_map(Value::from),
        1 => select(bad).prop_map(Value::from),
        1 => string().prop_map(Value::String),
    ]
}

fn word(words: &'static [&'static str]) -> impl Strategy<Value = Value> {
    pick(words, words)
}

fn text() -> impl Strategy<Value = Value> {
    string().prop_map(Value::String)
}

fn cache_control() -> impl Strategy<Value = Value> {
    Just(json!({"type": "ephemeral"}))
}

fn url() -> impl Strategy<Value = Value> {
    word(URLS)
}

/// JSON text of an object, or something that is not one.
fn arguments() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => any_json().prop_map(|v| Value::String(json!({"a": v}).to_string())),
        1 => select(&["", "  ", "{bad", "[1,2]", "{\"a\": 1e400}", " {\"k\" : [ 1 ] } ", "null"][..])
            .prop_map(Value::from),
        1 => any_json().prop_map(|v| json!({"k": v})),
    ]
}

fn openai_part(kinds: &'static [&'static str]) -> impl Strategy<Value = Value> {
    object(vec![
        usual(
            "type",
            pick(kinds, &["input_audio", "video", "image_url", "refusal"]),
        ),
        usual("text", text()),
        member("refusal", text()),
        member(
            "image_url",
            prop_oneof![
                url().prop_map(|u| json!({"url": u, "detail": "low"})),
                url()
            ],
        ),
        member(
            "file",
            url().prop_map(|u| json!({"file_data": u, "filename": "a.pdf"})),
        ),
        member("cache_control", cache_control()),
    ])
}

fn openai_tool_call() -> impl Strategy<Value = Value> {
    object(vec![
        usual("id", text()),
        member("type", pick(&["function"], &["custom"])),
        usual(
            "function",
            object(vec![usual("name", text()), usual("arguments", arguments())]),
        ),
    ])
}

fn openai_message() -> impl Strategy<Value = Value> {
    let message = |roles: &'static [&'static str], parts: &'static [&'static str]| {
        object(vec![
            usual("role", pick(roles, &["function", "robot"])),
            usual(
                "content",
                prop_oneof![
                    text(),
                    prop::collection::vec(openai_part(parts), 0..4).prop_map(Value::Array),
                ],
            ),
            member(
                "tool_calls",
                prop::collection::vec(openai_tool_call(), 0..3).prop_map(Value::Array),
            ),
            usual("tool_call_id", text()),
            member("name", text()),
        ])
    };
    prop_oneof![
        message(&["system", "developer"], &["text"]),
        message(&["user"], &["text", "image_url", "file"]),
        message(&["assistant"], &["text", "refusal"]),
        message(&["tool"], &["text", "image_url"]),
    ]
}

fn openai_tool() -> impl Strategy<Value = Value> {
    object(vec![
        member("type", pick(&["function"], &["custom"])),
        usual(
            "function",
            object(vec![
                usual("name", text()),
                member("description", text()),
                member("parameters", any_json()),
            ]),
        ),
        member("cache_control", cache_control()),
    ])
}

/// A Chat Completions request body, mostly plausible.
pub fn openai_request() -> impl Strategy<Value = Value> {
    object(vec![
        member("model", text()),
        usual(
            "messages",
            prop::collection::vec(openai_message(), 1..6).prop_map(Value::Array),
        ),
        rare("n", prop_oneof![3 => Just(json!(1)), 1 => number()]),
        rare("logprobs", any::<bool>().prop_map(Value::Bool)),
        rare(
            "top_logprobs",
            prop_oneof![3 => Just(json!(0)), 1 => number()],
        ),
        rare("audio", any_json()),
        rare(
            "modalities",
            prop::collection::vec(pick(&["text"], &["audio"]), 0..3).prop_map(Value::Array),
        ),
        rare(
            "response_format",
            pick(&["text"], &["json_object", "json_schema"]).prop_map(|t| json!({"type": t})),
        ),
        rare("functions", any_json()),
        rare("function_call", any_json()),
        member("max_completion_tokens", count()),
        member("max_tokens", count()),
        member(
            "reasoning_effort",
            pick(&["none", "minimal", "low", "medium", "high"], &["max"]),
        ),
        member("temperature", number()),
        member("top_p", number()),
        member("top_k", count()),
        member(
            "stop",
            prop_oneof![
                text(),
                prop::collection::vec(text(), 0..3).prop_map(Value::Array)
            ],
        ),
        member("user", text()),
        member("safety_identifier", text()),
        member("stream", any::<bool>().prop_map(Value::Bool)),
        member(
            "stream_options",
            any::<bool>().prop_map(|b| json!({"include_usage": b})),
        ),
        member(
            "tools",
            prop::collection::vec(openai_tool(), 0..3).prop_map(Value::Array),
        ),
        member(
            "tool_choice",
            prop_oneof![
                pick(&["auto", "required", "none"], &["any"]),
                text().prop_map(|n| json!({"type": "function", "function": {"name": n}})),
            ],
        ),
        member("parallel_tool_calls", any::<bool>().prop_map(Value::Bool)),
        member("metadata", any_json()),
    ])
}

fn source() -> impl Strategy<Value = Value> {
    object(vec![
        usual("type", pick(&["base64", "url", "text"], &["file"])),
        member(
            "media_type",
            word(&["image/png", "application/pdf", "text/plain"]),
        ),
        member("data", text()),
        member("url", url()),
    ])
}

fn anthropic_block(kinds: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let tool_result_content = prop_oneof![
        text(),
        prop::collection::vec(
            object(vec![
                usual("type", pick(&["text"], &["image"])),
                usual("text", text())
            ]),
            0..3
        )
        .prop_map(Value::Array),
    ];
    object(vec![
        usual(
            "type",
            pick(
                kinds,
                &["server_tool_use", "search_result", "tool_use", "image"],
            ),
        ),
        usual("text", text()),
        member("source", source()),
        member("title", text()),
        member("id", text()),
        member("name", text()),
        member("input", any_json()),
        member("tool_use_id", text()),
        member("content", tool_result_content),
        member("is_error", any::<bool>().prop_map(Value::Bool)),
        member("cache_control", cache_control()),
    ])
}

fn anthropic_message() -> impl Strategy<Value = Value> {
    let message = |role: &'static [&'static str], kinds: &'static [&'static str]| {
        object(vec![
            usual("role", pick(role, &["system"])),
            usual(
                "content",
                prop_oneof![
                    text(),
                    prop::collection::vec(anthropic_block(kinds), 0..4).prop_map(Value::Array),
                ],
            ),
        ])
    };
    prop_oneof![
        message(&["user"], &["text", "image", "document", "tool_result"]),
        message(
            &["assistant"],
            &["text", "tool_use", "thinking", "redacted_thinking"]
        ),
    ]
}

fn anthropic_tool() -> impl Strategy<Value = Value> {
    object(vec![
        member("type", pick(&["custom"], &["web_search_20250305"])),
        usual("name", text()),
        member("description", text()),
        member("input_schema", any_json()),
        member("cache_control", cache_control()),
    ])
}

/// A Messages request body, mostly plausible.
pub fn anthropic_request() -> impl Strategy<Value = Value> {
    object(vec![
        member("model", text()),
        rare(
            "mcp_servers",
            prop::collection::vec(any_json(), 0..2).prop_map(Value::Array),
        ),
        member(
            "system",
            prop_oneof![
                text(),
                prop::collection::vec(
                    object(vec![
                        usual("type", pick(&["text"], &["image"])),
                        usual("text", text()),
                        member("cache_control", cache_control())
                    ]),
                    0..3
                )
                .prop_map(Value::Array),
            ],
        ),
        usual(
            "messages",
            prop::collection::vec(anthropic_message(), 1..6).prop_map(Value::Array),
        ),
        member("max_tokens", count()),
        member("temperature", number()),
        member("top_p", number()),
        member("top_k", count()),
        member(
            "stop_sequences",
            prop::collection::vec(text(), 0..3).prop_map(Value::Array),
        ),
        member("metadata", text().prop_map(|u| json!({"user_id": u}))),
        member(
            "thinking",
            (word(&["enabled", "disabled"]), count())
                .prop_map(|(t, b)| json!({"type": t, "budget_tokens": b})),
        ),
        member(
            "tools",
            prop::collection::vec(anthropic_tool(), 0..3).prop_map(Value::Array),
        ),
        member(
            "tool_choice",
            (
                pick(&["auto", "any", "tool", "none"], &["other"]),
                text(),
                any::<bool>(),
            )
                .prop_map(
                    |(t, n, p)| json!({"type": t, "name": n, "disable_parallel_tool_use": p}),
                ),
        ),
        member("stream", any::<bool>().prop_map(Value::Bool)),
    ])
}

/// `body` with some bytes changed and possibly cut short: mostly broken JSON.
pub fn mangled(body: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = body.len().max(1);
    (
        prop::collection::vec((0..len, any::<u8>()), 0..4),
        prop_oneof![3 => Just(None), 1 => (0..=len).prop_map(Some)],
    )
        .prop_map(move |(edits, cut)| {
            let mut b = body.clone();
            for (at, byte) in edits {
                if at < b.len() {
                    b[at] = byte;
                }
            }
            if let Some(cut) = cut {
                b.truncate(cut);
            }
            b
        })
}
