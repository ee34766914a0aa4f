//! OpenAI `chat.completion` → Anthropic Messages response.
//!
//! Content blocks come out in the order Anthropic uses: thinking (from
//! `reasoning_content`, or `reasoning` as some servers name it, with an empty
//! signature), then text, then `tool_use`. Tool-call arguments that are not a
//! JSON object (invalid JSON, or e.g. an array) become `{}`: Anthropic inputs
//! must be objects, and failing the whole response would lose the text too.
//! A tool call without an id gets a generated `toolu_` id.
//!
//! Usage follows Anthropic's meaning: `input_tokens` excludes cached tokens,
//! which are reported as `cache_read_input_tokens`, so input plus cache reads
//! equals OpenAI's `prompt_tokens`.

use super::error::TranslateError;
use super::openai_text_members::Content;
use super::thought_signature;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Settings for the OpenAI → Anthropic response and stream translators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageOptions {
    /// The model name the client asked for, returned as `model`.
    pub model: String,
}

/// Maps an OpenAI `finish_reason` to an Anthropic `stop_reason`. Tool calls
/// finishing with `stop` (as several OpenAI-compatible servers report) are
/// still `tool_use`, since Anthropic clients run tools only on that reason; a
/// `tool_calls` finish without any is `end_turn`.
pub fn anthropic_stop_reason(finish_reason: Option<&str>, has_tool_calls: bool) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        // Anthropic clients loop while the reason is `tool_use`: a server that says
        // it called tools and called none ended its turn.
        Some("tool_calls" | "function_call") if has_tool_calls => "tool_use",
        Some("content_filter") => "refusal",
        _ if has_tool_calls => "tool_use",
        _ => "end_turn",
    }
}

/// `msg_` followed by the OpenAI id without its `chatcmpl-` prefix, or a
/// generated id when the provider sent none.
pub fn anthropic_message_id(openai_id: Option<&str>) -> String {
    match openai_id.filter(|id| !id.is_empty()) {
        Some(id) => format!("msg_{}", id.strip_prefix("chatcmpl-").unwrap_or(id)),
        None => super::generated_id("msg_"),
    }
}

/// A generated Anthropic tool-use id.
pub fn generated_tool_use_id() -> String {
    super::generated_id("toolu_")
}

/// Anthropic usage from OpenAI counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub(crate) struct AnthropicUsageOut {
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
}

/// OpenAI usage counters as sent by providers (extra fields ignored).
#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub(crate) struct OpenAiUsageIn {
    #[serde(default)]
    pub prompt_tokens: Option<u64>,
    #[serde(default)]
    pub completion_tokens: Option<u64>,
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptDetails>,
    /// DeepSeek's count of the prompt read from its cache.
    #[serde(default)]
    pub prompt_cache_hit_tokens: Option<u64>,
    #[serde(default)]
    pub total_tokens: Option<u64>,
}

/// OpenAI `usage.prompt_tokens_details`.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub(crate) struct PromptDetails {
    #[serde(default)]
    pub cached_tokens: Option<u64>,
}

impl OpenAiUsageIn {
    /// The counts as Anthropic says them, read as the gateway meters them
    /// (`metrics::usage`), so the client is told what it is charged.
    pub(crate) fn to_anthropic(self) -> AnthropicUsageOut {
        let prompt = self.prompt_tokens.unwrap_or(0);
        let cached = self
            .prompt_tokens_details
            .and_then(|d| d.cached_tokens)
            .or(self.prompt_cache_hit_tokens);
        // xAI leaves the reasoning out of `completion_tokens` (and bills it as
        // output); its total holds it.
        let beyond_prompt = self.total_tokens.map_or(0, |t| t.saturating_sub(prompt));
        AnthropicUsageOut {
            input_tokens: prompt.saturating_sub(cached.unwrap_or(0)),
            output_tokens: self.completion_tokens.unwrap_or(0).max(beyond_prompt),
            cache_read_input_tokens: cached,
        }
    }
}

/// Parses tool-call arguments, falling back to `{}` for anything that is not
/// a JSON object.
pub(crate) fn parse_arguments(arguments: &str) -> serde_json::Value {
    match serde_json::from_str::<serde_json::Value>(arguments) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        _ => serde_json::Value::Object(Default::default()),
    }
}

#[derive(Deserialize)]
struct Completion<'a> {
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    choices: Option<Vec<Choice<'a>>>,
    #[serde(default)]
    usage: Option<OpenAiUsageIn>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow)]
    message: InMessage<'a>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct InMessage<'a> {
    #[serde(borrow, default)]
    content: Option<Content<'a>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(default)]
    reasoning: Option<serde_json::Value>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    refusal: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<InToolCall<'a>>>,
}

#[derive(Deserialize)]
struct InToolCall<'a> {
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    function: Option<InFunction<'a>>,
    #[serde(borrow, default)]
    extra_content: Option<crate::translate::thought_signature::ExtraContent<'a>>,
}

#[derive(Deserialize)]
struct InFunction<'a> {
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    name: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    arguments: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
struct Message<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<Block>,
    stop_reason: &'static str,
    stop_sequence: Option<()>,
    usage: AnthropicUsageOut,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Thinking {
        thinking: String,
        signature: String,
    },
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: serde_json::Value,
    },
}

/// Translates an OpenAI `chat.completion` body into an Anthropic Messages
/// response body.
pub fn openai_to_anthropic_response(
    body: &[u8],
    opts: &MessageOptions,
) -> Result<Vec<u8>, TranslateError> {
    let completion: Completion = serde_json::from_slice(body)
        .map_err(|e| TranslateError::UpstreamResponse(format!("invalid chat completion: {e}")))?;
    if let Some(err) = completion.error {
        let message = err
            .get("message")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("no message")
            .to_owned();
        return Err(TranslateError::UpstreamResponse(format!(
            "the provider returned an error: {message}"
        )));
    }
    let choice = completion
        .choices
        .and_then(|c| c.into_iter().next())
        .ok_or_else(|| TranslateError::UpstreamResponse("chat completion has no choices".into()))?;
    let msg = choice.message;

    let mut content = Vec::new();
    let mut reasoning = match (msg.reasoning_content, msg.reasoning) {
        (Some(r), _) => r.into_owned(),
        (None, Some(serde_json::Value::String(r))) => r,
        _ => String::new(),
    };
    // `content` as a string, or a list of chunks: Mistral's thinking ones are thinking.
    let message_content = msg.content.unwrap_or_default();
    let mut text = message_content.text().unwrap_or_default().to_owned();
    message_content.each_chunk_text(&mut |thinking, t| {
        if thinking {
            reasoning.push_str(t);
        } else {
            text.push_str(t);
        }
    });
    if !reasoning.is_empty() {
        content.push(Block::Thinking {
            thinking: reasoning,
            signature: String::new(),
        });
    }
    let refused = text.is_empty() && msg.refusal.as_deref().is_some_and(|r| !r.is_empty());
    if refused {
        content.push(Block::Text {
            text: msg.refusal.map(Cow::into_owned).unwrap_or_default(),
        });
    } else if !text.is_empty() {
        content.push(Block::Text { text });
    }
    let calls = msg.tool_calls.unwrap_or_default();
    let has_tool_calls = !calls.is_empty();
    // Gemini's thought signature goes to the client in a thinking block, first,
    // tagged as Gemini's (see `thought_signature`).
    let signature = calls
        .iter()
        .find_map(|c| c.extra_content.as_ref()?.thought_signature())
        .map(thought_signature::tagged);
    if let Some(signature) = signature {
        match content.first_mut() {
            Some(Block::Thinking { signature: s, .. }) if s.is_empty() => *s = signature,
            _ => content.insert(
                0,
                Block::Thinking {
                    thinking: String::new(),
                    signature,
                },
            ),
        }
    }
    for call in calls {
        let function = call.function.unwrap_or(InFunction {
            name: None,
            arguments: None,
        });
        content.push(Block::ToolUse {
            id: call
                .id
                .filter(|id| !id.is_empty())
                .map(Cow::into_owned)
                .unwrap_or_else(generated_tool_use_id),
            name: function.name.map(Cow::into_owned).unwrap_or_default(),
            input: parse_arguments(function.arguments.as_deref().unwrap_or("")),
        });
    }

    let stop_reason = if refused {
        "refusal"
    } else {
        anthropic_stop_reason(choice.finish_reason.as_deref(), has_tool_calls)
    };
    let message = Message {
        id: anthropic_message_id(completion.id.as_deref()),
        kind: "message",
        role: "assistant",
        model: &opts.model,
        content,
        stop_reason,
        stop_sequence: None,
        usage: completion.usage.unwrap_or_default().to_anthropic(),
    };
    serde_json::to_vec(&message)
        .map_err(|e| TranslateError::UpstreamResponse(format!("could not encode response: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn opts() -> MessageOptions {
        MessageOptions {
            model: "claude-via-openai".into(),
        }
    }

    fn translate(body: &str) -> Value {
        serde_json::from_slice(&openai_to_anthropic_response(body.as_bytes(), &opts()).unwrap())
            .unwrap()
    }

    #[test]
    fn fixture_text_completion_becomes_message() {
        let got = translate(fixture!("openai/chat_completion.json"));
        assert_eq!(
            got,
            json!({
                "id": "msg_D0q7lRI0Z2q8190Q0ue3JnnWtqLrd",
                "type": "message",
                "role": "assistant",
                "model": "claude-via-openai",
                "content": [{"type": "text", "text": "Hello, World!"}],
                "stop_reason": "end_turn",
                "stop_sequence": null,
                "usage": {"input_tokens": 17, "output_tokens": 4, "cache_read_input_tokens": 0}
            })
        );
    }

    #[test]
    fn usage_is_told_as_the_gateway_meters_it_deepseeks_cache_hits_and_xais_reasoning() {
        let completion = |usage: Value| {
            json!({"id": "chatcmpl-u", "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": "ok"}}], "usage": usage})
            .to_string()
        };
        let deepseek = translate(&completion(json!({"prompt_tokens": 100,
            "completion_tokens": 5, "total_tokens": 105, "prompt_cache_hit_tokens": 80,
            "prompt_cache_miss_tokens": 20})));
        assert_eq!(
            deepseek["usage"],
            json!({"input_tokens": 20, "output_tokens": 5, "cache_read_input_tokens": 80})
        );
        // xAI's `completion_tokens` leaves out the reasoning its total holds.
        let xai = translate(&completion(json!({"prompt_tokens": 10,
            "completion_tokens": 5, "total_tokens": 315,
            "completion_tokens_details": {"reasoning_tokens": 300}})));
        assert_eq!(xai["usage"]["output_tokens"], 305);
    }

    #[test]
    fn a_tool_calls_finish_that_called_no_tool_ends_the_turn() {
        let got = translate(
            &json!({"id": "chatcmpl-t", "choices": [{"index": 0, "finish_reason": "tool_calls",
                "message": {"role": "assistant", "content": "nothing to run"}}]})
            .to_string(),
        );
        assert_eq!(got["stop_reason"], "end_turn");
        assert_eq!(anthropic_stop_reason(Some("tool_calls"), true), "tool_use");
        assert_eq!(anthropic_stop_reason(Some("tool_calls"), false), "end_turn");
    }

    #[test]
    fn fixture_tool_calls_become_tool_use_blocks() {
        for (body, id, location) in [
            (
                fixture!("openai/chat_with_tools.json"),
                "call_X8zi23yeE70r4qiZ2lhIuRNK",
                "Paris",
            ),
            (fixture!("groq/chat_with_tools.json"), "2zvvry1t5", "London"),
            (
                fixture!("gemini/chat_with_tools.json"),
                "function-call-21392045118397310",
                "Tokyo",
            ),
        ] {
            let got = translate(body);
            assert_eq!(
                got["content"],
                json!([{"type": "tool_use", "id": id, "name": "get_weather", "input": {"location": location}}])
            );
            assert_eq!(got["stop_reason"], "tool_use");
        }
    }

    #[test]
    fn fixture_reasoning_content_becomes_thinking_block_first() {
        let got = translate(fixture!("xai/chat_completion.json"));
        let content = got["content"].as_array().unwrap();
        assert_eq!(content[0]["type"], "thinking");
        assert_eq!(content[0]["signature"], "");
        assert!(content[0]["thinking"]
            .as_str()
            .unwrap()
            .starts_with("First, the user said"));
        assert_eq!(content[1]["type"], "text");
        // xAI's 35 completion tokens leave out its 375 of reasoning, billed as output.
        assert_eq!(
            got["usage"],
            json!({"input_tokens": 7, "output_tokens": 410, "cache_read_input_tokens": 3})
        );
    }

    #[test]
    fn fixtures_without_reasoning_text_have_no_thinking_block() {
        for body in [
            fixture!("openai/chat_completion_reasoning.json"),
            fixture!("openai/chat_json_mode.json"),
            fixture!("openai/chat_multi_turn.json"),
            fixture!("openai/chat_multimodal.json"),
            fixture!("openai/chat_with_params.json"),
            fixture!("groq/chat_completion.json"),
            fixture!("groq/chat_with_params.json"),
            fixture!("gemini/chat_completion.json"),
            fixture!("gemini/chat_with_params.json"),
        ] {
            let got = translate(body);
            assert_eq!(got["content"].as_array().unwrap().len(), 1);
            assert_eq!(got["content"][0]["type"], "text");
            assert_eq!(got["stop_reason"], "end_turn");
            assert!(got["id"].as_str().unwrap().starts_with("msg_"));
        }
        let got = translate(fixture!("gemini/chat_completion.json"));
        assert_eq!(got["usage"], json!({"input_tokens": 4, "output_tokens": 2}));
    }

    #[test]
    fn fixture_xai_params_keeps_thinking_then_text() {
        let got = translate(fixture!("xai/chat_with_params.json"));
        let kinds: Vec<&str> = got["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["thinking", "text"]);
        // The reasoning xAI leaves out of `completion_tokens` is output too.
        assert_eq!(
            got["usage"],
            json!({"input_tokens": 15, "output_tokens": 179, "cache_read_input_tokens": 4})
        );
    }

    #[test]
    fn mistral_thinking_chunks_become_a_thinking_block_and_text_chunks_the_text() {
        // Mistral's reasoning models answer `content` as typed chunks, a `thinking`
        // one holding text chunks (docs.mistral.ai/capabilities/reasoning; `ThinkChunk`
        // in mistralai/client-python); a `reference` chunk carries no text.
        let body = json!({"id": "m", "choices": [{"finish_reason": "stop", "message": {"role": "assistant",
        "content": [
            {"type": "thinking", "thinking": [{"type": "text", "text": "Two and "},
                {"type": "reference", "reference_ids": [1]}, {"type": "text", "text": "two."}]},
            {"type": "text", "text": "It is "},
            {"type": "text", "text": "4."}
        ]}}]});
        let got = translate(&body.to_string());
        assert_eq!(
            got["content"],
            json!([{"type": "thinking", "thinking": "Two and two.", "signature": ""},
                   {"type": "text", "text": "It is 4."}])
        );
    }

    #[test]
    fn finish_reasons_map_to_stop_reasons() {
        let call = json!([{"id": "call_1", "type": "function",
            "function": {"name": "f", "arguments": "{}"}}]);
        for (finish, calls, stop) in [
            ("stop", None, "end_turn"),
            ("length", None, "max_tokens"),
            ("tool_calls", Some(&call), "tool_use"),
            ("function_call", Some(&call), "tool_use"),
            ("tool_calls", None, "end_turn"),
            ("content_filter", None, "refusal"),
        ] {
            let body = json!({"id": "x", "choices": [{"message": {"content": "hi", "tool_calls": calls},
                "finish_reason": finish}]});
            assert_eq!(
                translate(&body.to_string())["stop_reason"],
                stop,
                "{finish}"
            );
        }
    }

    #[test]
    fn geminis_thought_signature_comes_first_as_a_signed_thinking_block() {
        let body = json!({"id": "x", "choices": [{"finish_reason": "tool_calls", "message": {
            "content": "Checking.",
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"},
                "extra_content": {"google": {"thought_signature": "CiQBsig"}}}]}}]});
        let got = translate(&body.to_string());
        assert_eq!(
            got["content"][0],
            json!({"type": "thinking", "thinking": "", "signature": "gemini:CiQBsig"})
        );
        assert_eq!(got["content"][1]["type"], "text");
        assert_eq!(got["content"][2]["type"], "tool_use");
    }

    #[test]
    fn tool_calls_with_stop_finish_are_tool_use() {
        let body = json!({"id": "x", "choices": [{"finish_reason": "stop", "message": {"content": null,
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}]});
        assert_eq!(translate(&body.to_string())["stop_reason"], "tool_use");
    }

    #[test]
    fn missing_tool_id_is_generated_and_bad_arguments_become_empty_object() {
        let body = json!({"id": "x", "choices": [{"finish_reason": "tool_calls", "message": {"tool_calls": [
            {"type": "function", "function": {"name": "f", "arguments": "{broken"}},
            {"id": "", "type": "function", "function": {"name": "g", "arguments": "[1]"}}
        ]}}]});
        let got = translate(&body.to_string());
        for block in got["content"].as_array().unwrap() {
            assert!(block["id"].as_str().unwrap().starts_with("toolu_"));
            assert_eq!(block["input"], json!({}));
        }
        assert_ne!(got["content"][0]["id"], got["content"][1]["id"]);
    }

    #[test]
    fn refusal_becomes_text_with_refusal_stop_reason() {
        let body = json!({"id": "x", "choices": [{"finish_reason": "stop", "message": {"content": null, "refusal": "I can't help with that."}}]});
        let got = translate(&body.to_string());
        assert_eq!(
            got["content"],
            json!([{"type": "text", "text": "I can't help with that."}])
        );
        assert_eq!(got["stop_reason"], "refusal");
    }

    #[test]
    fn missing_id_gets_generated_message_id() {
        let body = json!({"choices": [{"finish_reason": "stop", "message": {"content": "x"}}]});
        assert!(translate(&body.to_string())["id"]
            .as_str()
            .unwrap()
            .starts_with("msg_"));
    }

    #[test]
    fn invalid_or_error_bodies_are_upstream_errors() {
        for body in [
            "nope",
            r#"{"error":{"message":"bad"}}"#,
            r#"{"id":"x","choices":[]}"#,
        ] {
            let e = openai_to_anthropic_response(body.as_bytes(), &opts()).unwrap_err();
            assert!(matches!(e, TranslateError::UpstreamResponse(_)), "{body}");
        }
    }
}
