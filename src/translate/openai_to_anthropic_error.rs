//! OpenAI-format error responses rewritten as Anthropic error bodies.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// The Anthropic error `type` for an HTTP status.
pub fn anthropic_error_type_for_status(status: u16) -> &'static str {
    match status {
        400 | 422 => "invalid_request_error",
        413 => "request_too_large",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// Anthropic's error envelope: `{"type":"error","error":{"type","message"}}`.
#[derive(Debug, Serialize)]
pub(crate) struct AnthropicErrorBody<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub error: AnthropicErrorDetail<'a>,
}

/// The inner object of [`AnthropicErrorBody`].
#[derive(Debug, Serialize)]
pub(crate) struct AnthropicErrorDetail<'a> {
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub message: &'a str,
}

impl<'a> AnthropicErrorBody<'a> {
    pub(crate) fn new(kind: &'a str, message: &'a str) -> Self {
        Self {
            kind: "error",
            error: AnthropicErrorDetail { kind, message },
        }
    }

    /// Serializes the body; the fallback is never needed for these plain
    /// string fields but keeps the function infallible.
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|_| {
            br#"{"type":"error","error":{"type":"api_error","message":"upstream error"}}"#.to_vec()
        })
    }
}

/// The `error` object OpenAI-compatible providers send, in a response body or
/// as a stream event. Every member is optional because providers differ
/// (some send `code` as a number, some put the status in `code`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct OpenAiErrorDetail<'a> {
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    pub message: Option<Cow<'a, str>>,
    #[serde(rename = "type", default)]
    pub kind: Option<serde_json::Value>,
    #[serde(default)]
    pub code: Option<serde_json::Value>,
}

impl OpenAiErrorDetail<'_> {
    /// True when the provider says it is overloaded or temporarily
    /// unavailable, which Anthropic clients retry as `overloaded_error`.
    pub(crate) fn is_overloaded(&self) -> bool {
        let says = |v: &Option<serde_json::Value>| match v {
            Some(serde_json::Value::String(s)) => {
                let s = s.to_ascii_lowercase();
                s.contains("overload") || s.contains("unavailable") || s == "503" || s == "529"
            }
            Some(serde_json::Value::Number(n)) => matches!(n.as_u64(), Some(503 | 529)),
            _ => false,
        };
        says(&self.kind) || says(&self.code)
    }

    /// True when the provider says the request was rate limited (OpenAI's
    /// `rate_limit_error` type, `rate_limit_exceeded` code, or a 429).
    pub(crate) fn is_rate_limited(&self) -> bool {
        let says = |v: &Option<serde_json::Value>| match v {
            Some(serde_json::Value::String(s)) => {
                s.to_ascii_lowercase().contains("rate_limit") || s == "429"
            }
            Some(serde_json::Value::Number(n)) => n.as_u64() == Some(429),
            _ => false,
        };
        says(&self.kind) || says(&self.code)
    }

    /// True when the provider says the prompt is longer than the model's context
    /// (OpenAI's `context_length_exceeded` code).
    pub(crate) fn is_context_overflow(&self) -> bool {
        matches!(&self.code, Some(serde_json::Value::String(s)) if s == "context_length_exceeded")
    }
}

impl OpenAiErrorOrString<'_> {
    /// The provider's message, if it gave a non-empty one.
    pub(crate) fn message(&self) -> Option<&str> {
        match self {
            Self::Detail(d) => d.message.as_deref(),
            Self::Text(t) => Some(t.as_ref()),
        }
        .filter(|m| !m.is_empty())
    }

    /// The Anthropic error type for an error received mid-stream: what the provider
    /// said of it kept where Anthropic has a type for it (a rate limit is not then
    /// taken for a prompt too long, nor the reverse).
    pub(crate) fn anthropic_stream_type(&self) -> &'static str {
        match self {
            Self::Detail(d) if d.is_overloaded() => "overloaded_error",
            Self::Detail(d) if d.is_rate_limited() => "rate_limit_error",
            Self::Detail(d) if d.is_context_overflow() => "invalid_request_error",
            _ => "api_error",
        }
    }
}

#[derive(Deserialize)]
struct OpenAiErrorEnvelope<'a> {
    #[serde(borrow)]
    error: OpenAiErrorOrString<'a>,
}

/// An `error` member: some OpenAI-compatible servers send `{"error": "text"}`
/// instead of an object.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OpenAiErrorOrString<'a> {
    Detail(#[serde(borrow)] OpenAiErrorDetail<'a>),
    Text(#[serde(borrow)] Cow<'a, str>),
}

/// Rewrites an OpenAI-format error response as an Anthropic error body.
///
/// The status decides the Anthropic `type`, except that a provider saying it
/// is overloaded yields `overloaded_error`. The message is the provider's
/// `error.message`, or a generic one naming the status when the body is not
/// OpenAI error JSON.
pub fn openai_error_to_anthropic(status: u16, body: &[u8]) -> Vec<u8> {
    let parsed = error_envelope(body);
    let top_level;
    let (message, overloaded) = match &parsed {
        Some(OpenAiErrorEnvelope {
            error: OpenAiErrorOrString::Detail(d),
        }) => (d.message.as_deref(), d.is_overloaded()),
        Some(OpenAiErrorEnvelope {
            error: OpenAiErrorOrString::Text(t),
        }) => (Some(t.as_ref()), false),
        None => {
            top_level = top_level_message(body);
            (top_level.as_deref(), false)
        }
    };
    let kind = if (overloaded && status >= 500) || status == 503 || status == 529 {
        "overloaded_error"
    } else {
        anthropic_error_type_for_status(status)
    };
    let generic;
    let message = match message {
        Some(m) if !m.is_empty() => m,
        _ => {
            generic = format!(
                "the upstream provider returned HTTP {status} without a readable error; retry later or check the provider's status"
            );
            &generic
        }
    };
    // Said in Anthropic's words, which Anthropic clients act on (Claude Code compacts
    // the conversation), the provider's own after them.
    let overflow;
    let message = if super::is_context_overflow(status, body)
        && !crate::metrics::usage::starts_with_ignoring_case(message, PROMPT_TOO_LONG)
    {
        overflow = format!("{PROMPT_TOO_LONG}: {message}");
        &overflow
    } else {
        message
    };
    AnthropicErrorBody::new(kind, message).to_vec()
}

/// The error envelope of `body`: `{"error": …}`, or the first of an array of them, as
/// Gemini's OpenAI-compatible API answers (`[{"error": {"code": 400, …}}]`).
fn error_envelope(body: &[u8]) -> Option<OpenAiErrorEnvelope<'_>> {
    if body.trim_ascii_start().starts_with(b"[") {
        let mut envelopes = serde_json::from_slice::<Vec<OpenAiErrorEnvelope>>(body).ok()?;
        return (!envelopes.is_empty()).then(|| envelopes.swap_remove(0));
    }
    serde_json::from_slice(body).ok()
}

/// How Anthropic says a prompt is longer than the model's context.
const PROMPT_TOO_LONG: &str = "prompt is too long";

/// The message of an error body with no `error` wrapper, as Mistral sends:
/// `{"object":"error","message":"…","type":…}`, its `message` an object (a validation
/// error's details) for a 422, written out as JSON then.
fn top_level_message(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct TopLevel {
        message: serde_json::Value,
    }
    match serde_json::from_slice::<TopLevel>(body).ok()?.message {
        serde_json::Value::String(text) => Some(text),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn translate(status: u16, body: &str) -> Value {
        serde_json::from_slice(&openai_error_to_anthropic(status, body.as_bytes())).unwrap()
    }

    fn openai(message: &str, kind: &str) -> String {
        json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
            .to_string()
    }

    #[test]
    fn geminis_error_array_keeps_its_message() {
        // Gemini's OpenAI-compatible API wraps its error in an array.
        let body = r#"[{"error": {"code": 400, "message": "Invalid JSON payload received. Unknown name \"foo\": Cannot find field.", "status": "INVALID_ARGUMENT"}}]"#;
        let out = translate(400, body);
        assert_eq!(out["error"]["type"], "invalid_request_error");
        assert_eq!(
            out["error"]["message"],
            "Invalid JSON payload received. Unknown name \"foo\": Cannot find field."
        );
        let empty = translate(400, "[]");
        assert!(empty["error"]["message"]
            .as_str()
            .unwrap()
            .contains("without a readable error"));
    }

    #[test]
    fn status_maps_to_anthropic_error_type() {
        assert_eq!(
            anthropic_error_type_for_status(400),
            "invalid_request_error"
        );
        assert_eq!(anthropic_error_type_for_status(401), "authentication_error");
        assert_eq!(anthropic_error_type_for_status(403), "permission_error");
        assert_eq!(anthropic_error_type_for_status(404), "not_found_error");
        assert_eq!(anthropic_error_type_for_status(413), "request_too_large");
        assert_eq!(anthropic_error_type_for_status(429), "rate_limit_error");
        assert_eq!(anthropic_error_type_for_status(503), "overloaded_error");
        assert_eq!(anthropic_error_type_for_status(529), "overloaded_error");
        assert_eq!(anthropic_error_type_for_status(500), "api_error");
        assert_eq!(anthropic_error_type_for_status(502), "api_error");
    }

    #[test]
    fn context_length_exceeded_becomes_prompt_is_too_long() {
        let body = r#"{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
        let got = translate(400, body);
        assert_eq!(got["error"]["type"], "invalid_request_error");
        assert_eq!(
            got["error"]["message"],
            "prompt is too long: This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens."
        );
        let other = translate(400, &openai("Invalid 'tools'", "invalid_request_error"));
        assert_eq!(other["error"]["message"], "Invalid 'tools'");
    }

    #[test]
    fn mistral_top_level_error_message_is_kept() {
        let body = r#"{"object":"error","message":"Prompt contains 160907 tokens, too large for model with 131072 maximum context length","type":"invalid_request_invalid_args","param":null,"code":"3051"}"#;
        let got = translate(400, body);
        assert_eq!(got["error"]["type"], "invalid_request_error");
        // A prompt too long, said in Anthropic's words first.
        assert_eq!(
            got["error"]["message"],
            "prompt is too long: Prompt contains 160907 tokens, too large for model with 131072 maximum context length"
        );
        let body = r#"{"object":"error","message":{"detail":[{"type":"extra_forbidden","loc":["body","user"],"msg":"Extra inputs are not permitted","input":"u"}]},"type":"invalid_request_error","param":null,"code":null}"#;
        let got = translate(422, body);
        let message = got["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("extra_forbidden") && message.contains("\"user\""),
            "{message}"
        );
    }

    #[test]
    fn openai_error_keeps_message() {
        let got = translate(400, &openai("Invalid 'messages'", "invalid_request_error"));
        assert_eq!(
            got,
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": "Invalid 'messages'"}})
        );
        let got = translate(429, &openai("Rate limit reached", "requests"));
        assert_eq!(got["error"]["type"], "rate_limit_error");
        assert_eq!(got["error"]["message"], "Rate limit reached");
    }

    #[test]
    fn overloaded_provider_maps_to_overloaded_error() {
        let got = translate(
            500,
            &openai("The server is overloaded", "server_overloaded"),
        );
        assert_eq!(got["error"]["type"], "overloaded_error");
        let got = translate(503, "{}");
        assert_eq!(got["error"]["type"], "overloaded_error");
    }

    #[test]
    fn a_mid_stream_error_keeps_what_the_provider_said_of_it() {
        let stream_type = |error: &str| {
            let parsed: OpenAiErrorOrString = serde_json::from_str(error).unwrap();
            parsed.anthropic_stream_type()
        };
        let throttled = r#"{"message":"Too many tokens","type":"rate_limit_error","code":"rate_limit_exceeded"}"#;
        assert_eq!(stream_type(throttled), "rate_limit_error");
        assert_eq!(
            stream_type(r#"{"message":"slow","code":429}"#),
            "rate_limit_error"
        );
        let overflow = r#"{"message":"too long","type":"invalid_request_error","code":"context_length_exceeded"}"#;
        assert_eq!(stream_type(overflow), "invalid_request_error");
        let busy = r#"{"message":"busy","type":"server_error","code":"server_overloaded"}"#;
        assert_eq!(stream_type(busy), "overloaded_error");
        assert_eq!(
            stream_type(r#"{"message":"boom","type":"server_error"}"#),
            "api_error"
        );
        assert_eq!(stream_type(r#""text only""#), "api_error");
    }

    #[test]
    fn string_error_and_non_json_bodies_are_handled() {
        let got = translate(400, r#"{"error":"bad model"}"#);
        assert_eq!(got["error"]["message"], "bad model");
        let got = translate(502, "upstream connect error");
        assert_eq!(got["error"]["type"], "api_error");
        assert!(got["error"]["message"]
            .as_str()
            .unwrap()
            .contains("HTTP 502"));
    }
}
