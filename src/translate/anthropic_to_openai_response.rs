//! Anthropic Messages response → OpenAI `chat.completion`.
//!
//! Text blocks are concatenated into `content` (null when there are none),
//! thinking blocks into `reasoning_content` (omitted when there are none;
//! signatures and redacted thinking are dropped), and `tool_use` blocks become
//! `tool_calls` with the input re-encoded as a JSON string. Usage counts
//! cache reads and writes as prompt tokens, as OpenAI does.

use super::error::TranslateError;
use super::json_writer::{write_str, write_str_fragment, write_u64};
use crate::metrics::usage::Usage;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Settings for [`anthropic_to_openai_response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseOptions {
    /// The model name the client asked for, returned as `model`.
    pub model: String,
    /// Unix time for `created`, passed in so translation stays pure.
    pub created: u64,
}

/// Maps an Anthropic `stop_reason` to an OpenAI `finish_reason`.
pub fn openai_finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        // end_turn, stop_sequence, pause_turn and anything new.
        _ => "stop",
    }
}

/// An Anthropic message id without its `msg_` prefix.
fn bare_message_id(anthropic_id: &str) -> &str {
    anthropic_id.strip_prefix("msg_").unwrap_or(anthropic_id)
}

/// `chatcmpl-` followed by the Anthropic id without its `msg_` prefix.
pub fn openai_completion_id(anthropic_id: &str) -> String {
    let bare = bare_message_id(anthropic_id);
    let mut id = String::with_capacity("chatcmpl-".len() + bare.len());
    id.push_str("chatcmpl-");
    id.push_str(bare);
    id
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(
        rename = "type",
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    kind: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Option<Vec<ContentBlock<'a>>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<AnthropicUsageIn>,
    #[serde(borrow, default)]
    error: Option<ErrorDetail<'a>>,
}

#[derive(Deserialize)]
struct ErrorDetail<'a> {
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    message: Option<Cow<'a, str>>,
}

/// An Anthropic content block, in a message or at a stream's `content_block_start`.
#[derive(Deserialize)]
pub(crate) struct ContentBlock<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    pub text: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    pub thinking: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    pub id: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    pub name: Option<Cow<'a, str>>,
    #[serde(default)]
    pub input: Option<serde_json::Value>,
}

/// Anthropic usage counters; input excludes cache reads and writes.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub(crate) struct AnthropicUsageIn {
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
    /// The server tools it ran: its web searches are billed apart.
    #[serde(default)]
    pub server_tool_use: Option<ServerToolUseIn>,
}

/// Anthropic's count of the server tools an answer ran.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub(crate) struct ServerToolUseIn {
    #[serde(default)]
    pub web_search_requests: Option<u64>,
}

/// OpenAI usage object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct OpenAiUsageOut {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub prompt_tokens_details: PromptTokensDetails,
}

/// OpenAI `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct PromptTokensDetails {
    pub cached_tokens: u64,
}

impl OpenAiUsageOut {
    /// Appends this usage as the JSON object `Serialize` writes.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"prompt_tokens\":");
        write_u64(out, self.prompt_tokens);
        out.extend_from_slice(b",\"completion_tokens\":");
        write_u64(out, self.completion_tokens);
        out.extend_from_slice(b",\"total_tokens\":");
        write_u64(out, self.total_tokens);
        out.extend_from_slice(b",\"prompt_tokens_details\":{\"cached_tokens\":");
        write_u64(out, self.prompt_tokens_details.cached_tokens);
        out.extend_from_slice(b"}}");
    }

    /// Builds OpenAI usage from Anthropic counters: OpenAI's prompt tokens
    /// include the cached ones.
    pub(crate) fn from_parts(
        input: u64,
        cache_read: u64,
        cache_creation: u64,
        output: u64,
    ) -> Self {
        let prompt = input
            .saturating_add(cache_read)
            .saturating_add(cache_creation);
        Self {
            prompt_tokens: prompt,
            completion_tokens: output,
            total_tokens: prompt.saturating_add(output),
            prompt_tokens_details: PromptTokensDetails {
                cached_tokens: cache_read,
            },
        }
    }
}

/// Translates an Anthropic Messages response body into an OpenAI
/// `chat.completion` body.
pub fn anthropic_to_openai_response(
    body: &[u8],
    opts: &ResponseOptions,
) -> Result<Vec<u8>, TranslateError> {
    anthropic_to_openai_response_and_usage(body, opts).map(|(body, _)| body)
}

/// [`anthropic_to_openai_response`], with the usage counters the message carried (read
/// on the way, so that nobody parses the message again for them).
pub(crate) fn anthropic_to_openai_response_and_usage(
    body: &[u8],
    opts: &ResponseOptions,
) -> Result<(Vec<u8>, Option<AnthropicUsageIn>), TranslateError> {
    let msg: Message = serde_json::from_slice(body)
        .map_err(|e| TranslateError::UpstreamResponse(format!("invalid Anthropic message: {e}")))?;
    if msg.kind.as_deref() == Some("error") || msg.error.is_some() {
        let detail = msg
            .error
            .and_then(|e| e.message)
            .unwrap_or(Cow::Borrowed("no message"));
        return Err(TranslateError::UpstreamResponse(format!(
            "Anthropic returned an error: {detail}"
        )));
    }
    let blocks = msg.content.ok_or_else(|| {
        TranslateError::UpstreamResponse("Anthropic message has no `content`".into())
    })?;
    let reported = msg.usage;
    let u = reported.unwrap_or_default();
    let usage = OpenAiUsageOut::from_parts(
        u.input_tokens.unwrap_or(0),
        u.cache_read_input_tokens.unwrap_or(0),
        u.cache_creation_input_tokens.unwrap_or(0),
        u.output_tokens.unwrap_or(0),
    );
    // About as long as the message it comes from: written without growing.
    let mut out = Vec::with_capacity(body.len() + 128);
    // The id as `openai_completion_id` makes it, written in place.
    out.extend_from_slice(b"{\"id\":\"chatcmpl-");
    write_str_fragment(&mut out, bare_message_id(msg.id.as_deref().unwrap_or("")));
    out.extend_from_slice(b"\",\"object\":\"chat.completion\",\"created\":");
    write_u64(&mut out, opts.created);
    out.extend_from_slice(b",\"model\":");
    write_str(&mut out, &opts.model);
    out.extend_from_slice(
        b",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":",
    );
    // Text blocks joined (null when there are none), thinking blocks joined (left
    // out when there are none; signatures and redacted thinking dropped), tool calls.
    if !write_joined(&mut out, &blocks, "text", |b| b.text.as_deref()) {
        out.extend_from_slice(b"null");
    }
    let before_reasoning = out.len();
    out.extend_from_slice(b",\"reasoning_content\":");
    if !write_joined(&mut out, &blocks, "thinking", |b| b.thinking.as_deref()) {
        out.truncate(before_reasoning);
    }
    write_tool_calls(&mut out, &blocks);
    out.extend_from_slice(b",\"refusal\":null},\"logprobs\":null,\"finish_reason\":");
    write_str(&mut out, openai_finish_reason(msg.stop_reason.as_deref()));
    out.extend_from_slice(b"}],\"usage\":");
    usage.write_json(&mut out);
    out.push(b'}');
    Ok((out, reported))
}

/// Writes the `part`s of the `kind` blocks that have one as one JSON string; `false`
/// (and nothing written) when none has.
fn write_joined<'b>(
    out: &mut Vec<u8>,
    blocks: &'b [ContentBlock<'_>],
    kind: &str,
    part: impl Fn(&'b ContentBlock<'_>) -> Option<&'b str>,
) -> bool {
    let mut parts = blocks.iter().filter(|b| b.kind == kind).filter_map(part);
    let Some(first) = parts.next() else {
        return false;
    };
    out.push(b'"');
    write_str_fragment(out, first);
    for more in parts {
        write_str_fragment(out, more);
    }
    out.push(b'"');
    true
}

/// `,"tool_calls":[…]` for the `tool_use` blocks, each input as a JSON string; nothing
/// when there are none.
fn write_tool_calls(out: &mut Vec<u8>, blocks: &[ContentBlock<'_>]) {
    let mut calls = blocks.iter().filter(|b| b.kind == "tool_use").peekable();
    if calls.peek().is_none() {
        return;
    }
    out.extend_from_slice(b",\"tool_calls\":[");
    for (k, block) in calls.enumerate() {
        if k > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"id\":");
        write_str(out, block.id.as_deref().unwrap_or(""));
        out.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
        write_str(out, block.name.as_deref().unwrap_or(""));
        out.extend_from_slice(b",\"arguments\":");
        // The input as serde_json writes a value (keys sorted), `{}` when absent.
        match &block.input {
            Some(input) => write_str(out, &input.to_string()),
            None => out.extend_from_slice(b"\"{}\""),
        }
        out.extend_from_slice(b"}}");
    }
    out.push(b']');
}

impl From<AnthropicUsageIn> for Usage {
    fn from(u: AnthropicUsageIn) -> Self {
        Usage {
            input: u.input_tokens.unwrap_or(0),
            output: u.output_tokens.unwrap_or(0),
            cache_read: u.cache_read_input_tokens.unwrap_or(0),
            cache_write: u.cache_creation_input_tokens.unwrap_or(0),
            reasoning: 0,
            web_searches: u
                .server_tool_use
                .and_then(|s| s.web_search_requests)
                .unwrap_or(0),
            cost_nanos: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn anthropics_web_searches_are_kept_with_its_usage() {
        let usage: AnthropicUsageIn = serde_json::from_str(
            r#"{"input_tokens":3,"output_tokens":2,"server_tool_use":{"web_search_requests":4}}"#,
        )
        .unwrap();
        assert_eq!(Usage::from(usage).web_searches, 4);
    }

    fn opts() -> ResponseOptions {
        ResponseOptions {
            model: "claude-sonnet-4".into(),
            created: 1_700_000_000,
        }
    }

    fn translate(body: &str) -> Value {
        serde_json::from_slice(&anthropic_to_openai_response(body.as_bytes(), &opts()).unwrap())
            .unwrap()
    }

    #[test]
    fn fixture_text_message_becomes_chat_completion() {
        let got = translate(fixture!("anthropic/messages.json"));
        assert_eq!(
            got,
            json!({
                "id": "chatcmpl-013LBDy1nvGiRgxiRAWseYRS",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": "claude-sonnet-4",
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello World", "refusal": null},
                    "logprobs": null,
                    "finish_reason": "stop"
                }],
                "usage": {"prompt_tokens": 14, "completion_tokens": 5, "total_tokens": 19,
                          "prompt_tokens_details": {"cached_tokens": 0}}
            })
        );
    }

    #[test]
    fn fixture_tool_use_becomes_tool_calls() {
        let got = translate(fixture!("anthropic/messages_with_tools.json"));
        let msg = &got["choices"][0]["message"];
        assert_eq!(
            msg["content"],
            "I'll check the current weather in Paris for you."
        );
        assert_eq!(
            msg["tool_calls"],
            json!([{"id": "toolu_01Dq95J3WcnLmvSvBpAuaXwi", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}}])
        );
        assert_eq!(got["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(got["usage"]["prompt_tokens"], 380);
    }

    #[test]
    fn fixture_thinking_becomes_reasoning_content() {
        let got = translate(fixture!("anthropic/messages_extended_thinking.json"));
        let msg = &got["choices"][0]["message"];
        assert!(msg["reasoning_content"]
            .as_str()
            .unwrap()
            .starts_with("I need to solve for x"));
        assert!(msg["content"]
            .as_str()
            .unwrap()
            .ends_with("Therefore, x = 7."));
        assert!(!msg.to_string().contains("signature"));
        assert_eq!(got["usage"]["completion_tokens"], 211);
    }

    #[test]
    fn fixture_stop_sequence_maps_to_stop() {
        let got = translate(fixture!("anthropic/messages_with_params.json"));
        assert_eq!(got["choices"][0]["finish_reason"], "stop");
        assert_eq!(got["choices"][0]["message"]["content"], "1, 2, ");
    }

    #[test]
    fn fixtures_multi_turn_and_multimodal_translate() {
        let got = translate(fixture!("anthropic/messages_multi_turn.json"));
        assert_eq!(got["choices"][0]["message"]["content"], "16");
        let got = translate(fixture!("anthropic/messages_multimodal.json"));
        assert_eq!(got["usage"]["total_tokens"], 259);
    }

    #[test]
    fn stop_reasons_map_to_finish_reasons() {
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
            ("pause_turn", "stop"),
        ] {
            let body =
                json!({"id": "msg_1", "type": "message", "content": [], "stop_reason": stop});
            let got = translate(&body.to_string());
            assert_eq!(got["choices"][0]["finish_reason"], finish, "{stop}");
        }
    }

    #[test]
    fn no_text_blocks_gives_null_content_and_no_reasoning() {
        let body = json!({"id": "msg_1", "type": "message", "stop_reason": "tool_use", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
        ]});
        let got = translate(&body.to_string());
        let msg = &got["choices"][0]["message"];
        assert_eq!(msg["content"], Value::Null);
        assert!(msg.get("reasoning_content").is_none());
        assert_eq!(msg["tool_calls"][0]["function"]["arguments"], "{}");
    }

    #[test]
    fn multiple_text_blocks_are_concatenated() {
        let body = json!({"id": "msg_1", "type": "message", "stop_reason": "end_turn", "content": [
            {"type": "text", "text": "Hello "}, {"type": "redacted_thinking", "data": "x"}, {"type": "text", "text": "there"}
        ]});
        assert_eq!(
            translate(&body.to_string())["choices"][0]["message"]["content"],
            "Hello there"
        );
    }

    #[test]
    fn cache_tokens_count_as_prompt_tokens() {
        let body = json!({"id": "msg_1", "type": "message", "content": [], "stop_reason": "end_turn",
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 50, "output_tokens": 7}});
        assert_eq!(
            translate(&body.to_string())["usage"],
            json!({"prompt_tokens": 160, "completion_tokens": 7, "total_tokens": 167,
                   "prompt_tokens_details": {"cached_tokens": 100}})
        );
    }

    #[test]
    fn the_answer_is_written_compact_in_the_field_order_openai_uses() {
        let body = json!({"id": "msg_1", "type": "message", "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hm\n", "signature": "s"},
                {"type": "text", "text": "a \"b\"\t"},
                {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"z": 1, "a": "é"}},
                {"type": "text", "text": "c\u{1}"}
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 3, "output_tokens": 4, "cache_read_input_tokens": 5}});
        let out = anthropic_to_openai_response(body.to_string().as_bytes(), &opts()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            concat!(
                r#"{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"#,
                r#""model":"claude-sonnet-4","choices":[{"index":0,"message":{"role":"assistant","#,
                r#""content":"a \"b\"\tc\u0001","reasoning_content":"hm\n","#,
                r#""tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"f","#,
                r#""arguments":"{\"a\":\"é\",\"z\":1}"}}],"refusal":null},"#,
                r#""logprobs":null,"finish_reason":"tool_calls"}],"#,
                r#""usage":{"prompt_tokens":8,"completion_tokens":4,"total_tokens":12,"#,
                r#""prompt_tokens_details":{"cached_tokens":5}}}"#
            )
        );
    }

    #[test]
    fn usage_is_written_as_serde_writes_it() {
        // The stream's usage chunk serializes the same struct: both must agree.
        let usage = OpenAiUsageOut::from_parts(3, 5, 7, 4);
        let mut written = Vec::new();
        usage.write_json(&mut written);
        assert_eq!(written, serde_json::to_vec(&usage).unwrap());
    }

    #[test]
    fn invalid_or_error_bodies_are_upstream_errors() {
        for body in [
            "not json",
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            r#"{"id":"msg_1","type":"message"}"#,
        ] {
            let e = anthropic_to_openai_response(body.as_bytes(), &opts()).unwrap_err();
            assert!(matches!(e, TranslateError::UpstreamResponse(_)), "{body}");
        }
    }
}
