//! Anthropic error responses rewritten as OpenAI error bodies.

use serde::{Deserialize, Serialize};

/// The OpenAI error `type` for an HTTP status.
pub fn openai_error_type_for_status(status: u16) -> &'static str {
    match status {
        400 | 413 | 422 => "invalid_request_error",
        401 | 403 => "authentication_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        529 => "provider_error",
        500..=599 => "provider_error",
        _ => "invalid_request_error",
    }
}

/// The OpenAI error `type` for an Anthropic error `type`, if it is one
/// Anthropic documents.
pub fn openai_error_type_for_anthropic_type(anthropic_type: &str) -> Option<&'static str> {
    Some(match anthropic_type {
        "invalid_request_error" | "request_too_large" => "invalid_request_error",
        "authentication_error" | "permission_error" => "authentication_error",
        "not_found_error" => "not_found_error",
        "rate_limit_error" => "rate_limit_error",
        "overloaded_error" | "api_error" | "timeout_error" => "provider_error",
        _ => return None,
    })
}

/// OpenAI's error envelope: `{"error":{"message","type","param","code"}}`.
#[derive(Debug, Serialize)]
pub(crate) struct OpenAiErrorBody<'a> {
    pub error: OpenAiErrorDetail<'a>,
}

/// The inner object of [`OpenAiErrorBody`].
#[derive(Debug, Serialize)]
pub(crate) struct OpenAiErrorDetail<'a> {
    pub message: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub param: Option<&'a str>,
    pub code: Option<&'a str>,
}

impl<'a> OpenAiErrorBody<'a> {
    pub(crate) fn new(message: &'a str, kind: &'a str) -> Self {
        Self {
            error: OpenAiErrorDetail {
                message,
                kind,
                param: None,
                code: None,
            },
        }
    }

    /// Serializes the body; the fallback is never needed for these plain
    /// string fields but keeps the function infallible.
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|_| {
            br#"{"error":{"message":"upstream error","type":"provider_error","param":null,"code":null}}"#
                .to_vec()
        })
    }
}

#[derive(Deserialize)]
struct AnthropicErrorEnvelope<'a> {
    #[serde(borrow)]
    error: AnthropicErrorDetail<'a>,
}

#[derive(Deserialize)]
struct AnthropicErrorDetail<'a> {
    #[serde(
        rename = "type",
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    message: Option<std::borrow::Cow<'a, str>>,
}

/// Rewrites an Anthropic error response (`{"type":"error","error":{"type",
/// "message"}}`) as an OpenAI error body.
///
/// The status decides the OpenAI `type`, except that `overloaded_error` is
/// always `provider_error` and statuses without a fixed mapping fall back to
/// Anthropic's own error type. A body that is not Anthropic JSON gets a
/// generic message naming the status.
pub fn anthropic_error_to_openai(status: u16, body: &[u8]) -> Vec<u8> {
    let parsed = serde_json::from_slice::<AnthropicErrorEnvelope>(body).ok();
    let anthropic_type = parsed.as_ref().and_then(|p| p.error.kind.as_deref());
    let kind = match (status, anthropic_type) {
        (_, Some("overloaded_error")) => "provider_error",
        (400 | 401 | 403 | 404 | 429 | 500..=599, _) => openai_error_type_for_status(status),
        (_, Some(t)) => openai_error_type_for_anthropic_type(t)
            .unwrap_or_else(|| openai_error_type_for_status(status)),
        (_, None) => openai_error_type_for_status(status),
    };
    let generic;
    let message = match parsed.as_ref().and_then(|p| p.error.message.as_deref()) {
        Some(m) if !m.is_empty() => m,
        _ => {
            generic = format!(
                "the upstream provider returned HTTP {status} without a readable error; retry later or check the provider's status"
            );
            &generic
        }
    };
    let mut error = OpenAiErrorBody::new(message, kind);
    // OpenAI's code for a prompt past the model's context, which clients act on
    // (trimming or compacting the conversation).
    if super::is_context_overflow(status, body) {
        error.error.code = Some("context_length_exceeded");
    }
    error.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn translate(status: u16, body: &str) -> Value {
        serde_json::from_slice(&anthropic_error_to_openai(status, body.as_bytes())).unwrap()
    }

    fn anthropic(kind: &str, message: &str) -> String {
        json!({"type": "error", "error": {"type": kind, "message": message}}).to_string()
    }

    #[test]
    fn prompt_too_long_gets_context_length_exceeded_code() {
        let body = br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 215000 tokens > 200000 maximum"}}"#;
        let got: Value = serde_json::from_slice(&anthropic_error_to_openai(400, body)).unwrap();
        assert_eq!(got["error"]["code"], "context_length_exceeded");
        assert_eq!(got["error"]["type"], "invalid_request_error");
        let other =
            br#"{"type":"error","error":{"type":"invalid_request_error","message":"bad tool"}}"#;
        let got: Value = serde_json::from_slice(&anthropic_error_to_openai(400, other)).unwrap();
        assert!(got["error"]["code"].is_null());
    }

    #[test]
    fn status_maps_to_openai_error_type() {
        assert_eq!(openai_error_type_for_status(400), "invalid_request_error");
        assert_eq!(openai_error_type_for_status(401), "authentication_error");
        assert_eq!(openai_error_type_for_status(403), "authentication_error");
        assert_eq!(openai_error_type_for_status(404), "not_found_error");
        assert_eq!(openai_error_type_for_status(429), "rate_limit_error");
        assert_eq!(openai_error_type_for_status(500), "provider_error");
        assert_eq!(openai_error_type_for_status(503), "provider_error");
        assert_eq!(openai_error_type_for_status(529), "provider_error");
    }

    #[test]
    fn anthropic_error_keeps_message_and_maps_type() {
        let got = translate(
            400,
            &anthropic("invalid_request_error", "max_tokens: too big"),
        );
        assert_eq!(
            got,
            json!({"error": {"message": "max_tokens: too big", "type": "invalid_request_error", "param": null, "code": null}})
        );
        let got = translate(401, &anthropic("authentication_error", "invalid x-api-key"));
        assert_eq!(got["error"]["type"], "authentication_error");
        let got = translate(403, &anthropic("permission_error", "no"));
        assert_eq!(got["error"]["type"], "authentication_error");
        let got = translate(404, &anthropic("not_found_error", "model: x"));
        assert_eq!(got["error"]["type"], "not_found_error");
        let got = translate(429, &anthropic("rate_limit_error", "slow down"));
        assert_eq!(got["error"]["type"], "rate_limit_error");
        assert_eq!(got["error"]["message"], "slow down");
    }

    #[test]
    fn overloaded_is_provider_error() {
        let got = translate(529, &anthropic("overloaded_error", "Overloaded"));
        assert_eq!(got["error"]["type"], "provider_error");
        assert_eq!(got["error"]["message"], "Overloaded");
        let got = translate(500, &anthropic("api_error", "Internal server error"));
        assert_eq!(got["error"]["type"], "provider_error");
    }

    #[test]
    fn unmapped_status_uses_anthropic_type() {
        let got = translate(413, &anthropic("request_too_large", "too large"));
        assert_eq!(got["error"]["type"], "invalid_request_error");
    }

    #[test]
    fn non_json_body_gets_generic_message() {
        let got = translate(502, "<html>Bad gateway</html>");
        assert_eq!(got["error"]["type"], "provider_error");
        assert!(got["error"]["message"]
            .as_str()
            .unwrap()
            .contains("HTTP 502"));
        assert_eq!(got["error"]["param"], Value::Null);
        assert_eq!(got["error"]["code"], Value::Null);
    }
}
