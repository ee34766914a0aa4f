//! Errors the gateway itself raises, and the one place they become a client envelope.

use serde_json::json;

use crate::providers::{how_to_configure, Provider, ProviderCatalogue, WireFormat};
use crate::translate::anthropic_error_type_for_status;
use crate::translate::responses::failure_code;

/// The error family, which fixes the envelope `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request cannot be served as sent (400, 404 route, 408, 413, 431).
    InvalidRequest,
    /// Missing or wrong gateway credential (401).
    Authentication,
    /// No such provider or route (404).
    NotFound,
    /// Too many requests (429).
    RateLimit,
    /// The upstream could not be reached or did not answer in time (502, 504).
    Provider,
}

impl ErrorKind {
    /// The OpenAI envelope `type`.
    pub fn openai_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::RateLimit => "rate_limit_error",
            ErrorKind::Provider => "provider_error",
        }
    }
}

/// An error raised by the gateway (never an upstream's own error, which passes through).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct GatewayError {
    /// HTTP status sent to the client.
    pub status: u16,
    /// Envelope family.
    pub kind: ErrorKind,
    /// What went wrong and what to do; never contains a credential.
    pub message: String,
    /// The request field or path part at fault.
    pub param: Option<String>,
    /// A stable machine-readable code.
    pub code: Option<&'static str>,
    /// Seconds to send as `Retry-After`.
    pub retry_after: Option<u32>,
    /// The caller's rate windows, sent as `x-ratelimit-*` headers.
    pub rate: Option<Box<crate::limits::RateState>>,
    /// The provider did the work this error ends (it answered with success, then its
    /// answer could not be delivered): the client is told not to retry, which would
    /// have the work done, and billed, again.
    pub after_provider_work: bool,
}

impl GatewayError {
    fn new(status: u16, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            param: None,
            code: None,
            retry_after: None,
            rate: None,
            after_provider_work: false,
        }
    }

    /// 400 `invalid_request_error`.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(400, ErrorKind::InvalidRequest, message)
    }

    /// 401 `authentication_error`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, ErrorKind::Authentication, message)
    }

    /// 403: the caller may not do this through the gateway.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, ErrorKind::InvalidRequest, message).with_code("not_allowed")
    }

    /// 404 `not_found_error`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, ErrorKind::NotFound, message)
    }

    /// 405: the route exists but answers another method.
    pub fn method_not_allowed(path: &str, allowed: &http::Method) -> Self {
        Self::new(
            405,
            ErrorKind::InvalidRequest,
            format!("`{path}` accepts only {allowed}"),
        )
        .with_code("method_not_allowed")
    }

    /// 405 for a method never forwarded to a provider: `TRACE`, which a server that
    /// echoes it would answer with the credential the gateway added.
    pub fn method_not_forwarded(method: &http::Method) -> Self {
        Self::new(
            405,
            ErrorKind::InvalidRequest,
            format!("{method} is not forwarded to providers"),
        )
        .with_code("method_not_allowed")
    }

    /// 404 for a provider name no configured provider answers to: for a built-in type
    /// nobody configured, how to configure it.
    pub fn provider_not_found(name: &str, providers: &ProviderCatalogue) -> Self {
        match providers.unconfigured_type(name) {
            Some(kind) => Self::not_found(format!(
                "provider `{kind}` is not configured: {}",
                how_to_configure(kind)
            )),
            None => Self::not_found(format!(
                "unknown provider `{name}`: configure it under `providers:` in the config"
            )),
        }
    }

    /// 400: the provider needs a key the gateway was not given.
    pub fn missing_provider_key(provider: &Provider) -> Self {
        Self::invalid_request(format!(
            "provider `{}` has no API key: set {} on the gateway",
            provider.name, provider.key_env
        ))
    }

    /// 429 for a caller (or provider) over one of its limits: `rate_limit_exceeded`,
    /// or `insufficient_quota` for a spent budget; try again after `retry_after`.
    pub fn rate_limited(
        message: impl Into<String>,
        budget: bool,
        retry_after: u64,
        rate: crate::limits::RateState,
    ) -> Self {
        let mut err = Self::new(429, ErrorKind::RateLimit, message).with_code(if budget {
            "insufficient_quota"
        } else {
            "rate_limit_exceeded"
        });
        err.retry_after = Some(u32::try_from(retry_after.max(1)).unwrap_or(u32::MAX));
        err.rate = Some(Box::new(rate));
        err
    }

    /// 413 for a body over `body_size_limit`.
    pub fn payload_too_large(limit: u64) -> Self {
        Self::body_over(limit, "server.body_size_limit")
    }

    /// 413 for a `/p/` body streamed unread over `passthrough_body_size_limit`.
    pub fn passthrough_too_large(limit: u64) -> Self {
        Self::body_over(limit, "server.passthrough_body_size_limit")
    }

    fn body_over(limit: u64, setting: &str) -> Self {
        Self::new(
            413,
            ErrorKind::InvalidRequest,
            format!(
                "request body exceeds the gateway limit of {limit} bytes; send a smaller body or raise {setting}"
            ),
        )
        .with_code("request_too_large")
    }

    /// 413 for a stored conversation that would make the request to the provider larger
    /// than `body_size_limit`, the largest body a client may send.
    pub fn conversation_too_large(message: impl Into<String>) -> Self {
        Self::new(413, ErrorKind::InvalidRequest, message)
            .with_code("request_too_large")
            .with_param("previous_response_id")
    }

    /// 501: the request uses an HTTP feature the gateway does not implement.
    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(501, ErrorKind::InvalidRequest, message).with_code("not_implemented")
    }

    /// 503: the gateway holds as many request bodies as it may; the client should retry
    /// after `retry_after` seconds.
    pub fn overloaded(message: impl Into<String>, retry_after: u32) -> Self {
        let mut err = Self::new(503, ErrorKind::Provider, message).with_code("gateway_overloaded");
        err.retry_after = Some(retry_after);
        err
    }

    /// 409 `invalid_request_error` (`code: work_still_running`): a delete of work that
    /// must end (be cancelled) before it is deleted.
    pub fn still_running(message: impl Into<String>) -> Self {
        Self::new(409, ErrorKind::InvalidRequest, message).with_code("work_still_running")
    }

    /// 502 `provider_error`: the provider answered, but not with what its format
    /// promises (an untranslatable success body, or one cut short).
    pub fn bad_provider_answer(message: impl Into<String>) -> Self {
        Self::new(502, ErrorKind::Provider, message).with_code("bad_provider_response")
    }

    /// 408: the client did not send its request in time; the connection is closed
    /// after it.
    pub fn request_timeout(message: impl Into<String>) -> Self {
        Self::new(408, ErrorKind::InvalidRequest, message).with_code("request_timeout")
    }

    /// 431 for a request header over `max_header_bytes`; the connection is closed after it.
    pub fn header_too_large(limit: u64) -> Self {
        Self::new(
            431,
            ErrorKind::InvalidRequest,
            format!(
                "request header exceeds the gateway limit of {limit} bytes; send fewer or shorter header fields or raise server.max_header_bytes"
            ),
        )
        .with_code("request_header_fields_too_large")
    }

    /// 502: the upstream could not be reached (refused, DNS, TLS) or broke the exchange.
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(502, ErrorKind::Provider, message).with_code("upstream_unreachable")
    }

    /// 504: the upstream did not answer in time.
    pub fn gateway_timeout(message: impl Into<String>) -> Self {
        Self::new(504, ErrorKind::Provider, message).with_code("upstream_timeout")
    }

    /// The client closed its connection before the answer: nothing is sent, the
    /// access log says why.
    pub fn client_gone() -> Self {
        Self::new(
            499,
            ErrorKind::InvalidRequest,
            "client closed the connection",
        )
        .with_code("client_closed")
    }

    /// Sets the offending parameter.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Marks an error that ends an exchange whose provider answered `status`: after a
    /// success, the provider did the work (see [`GatewayError::after_provider_work`]);
    /// a redirect did none.
    pub fn after_answer(mut self, status: u16) -> Self {
        self.after_provider_work |= (200..300).contains(&status);
        self
    }

    /// Sets the machine-readable code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// The `code` of the `response.failed` event that ends a Responses stream with
    /// this error: the code Responses clients act on for a spent budget or a rate
    /// limit, `server_error` for a provider's failure (see [`failure_code`]).
    pub fn responses_code(&self) -> &'static str {
        failure_code(Some(self.kind.openai_type()), self.code)
    }

    /// The envelope a client of `format` expects.
    pub fn envelope(&self, format: WireFormat) -> Vec<u8> {
        match format {
            WireFormat::OpenAi => self.openai_envelope(),
            WireFormat::Anthropic => self.anthropic_envelope(),
        }
    }

    /// [`GatewayError::envelope`] of the answer to request `request_id`: Anthropic's
    /// names it in its body too, where the Anthropic SDKs read it (`request_id`).
    pub fn envelope_answering(&self, format: WireFormat, request_id: &str) -> Vec<u8> {
        match format {
            WireFormat::OpenAi => self.openai_envelope(),
            WireFormat::Anthropic => self.anthropic_envelope_with(Some(request_id)),
        }
    }

    /// The Anthropic error envelope `{"type":"error","error":{"type","message"}}`, so
    /// Anthropic SDKs raise their own typed errors.
    pub fn anthropic_envelope(&self) -> Vec<u8> {
        self.anthropic_envelope_with(None)
    }

    fn anthropic_envelope_with(&self, request_id: Option<&str>) -> Vec<u8> {
        let mut body = json!({
            "type": "error",
            "error": {
                "type": anthropic_error_type_for_status(self.status),
                "message": self.message,
            }
        });
        if let Some(id) = request_id {
            body["request_id"] = json!(id);
        }
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// The OpenAI error envelope `{"error":{"type","message","param","code"}}`.
    pub fn openai_envelope(&self) -> Vec<u8> {
        let body = json!({
            "error": {
                "type": self.kind.openai_type(),
                "message": self.message,
                "param": self.param,
                "code": self.code,
            }
        });
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_envelope_has_type_message_param_code() {
        let e = GatewayError::invalid_request("bad").with_param("model");
        let v: serde_json::Value = serde_json::from_slice(&e.openai_envelope()).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["message"], "bad");
        assert_eq!(v["error"]["param"], "model");
        assert!(v["error"]["code"].is_null());
    }

    #[test]
    fn anthropic_envelope_types_follow_the_status() {
        let cases = [
            (GatewayError::invalid_request("x"), "invalid_request_error"),
            (GatewayError::unauthorized("x"), "authentication_error"),
            (GatewayError::not_found("x"), "not_found_error"),
            (GatewayError::payload_too_large(1), "request_too_large"),
            (GatewayError::bad_gateway("x"), "api_error"),
            (GatewayError::gateway_timeout("x"), "api_error"),
        ];
        for (err, kind) in cases {
            let v: serde_json::Value =
                serde_json::from_slice(&err.envelope(WireFormat::Anthropic)).unwrap();
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"]["type"], kind, "{}", err.status);
            assert_eq!(v["error"]["message"], "x".replace('x', &err.message));
        }
    }

    #[test]
    fn slow_or_oversized_requests_say_which_setting_to_raise() {
        let slow = GatewayError::request_timeout("too slow");
        assert_eq!((slow.status, slow.code), (408, Some("request_timeout")));
        assert_eq!(slow.kind.openai_type(), "invalid_request_error");
        let big = GatewayError::header_too_large(65536);
        assert_eq!(
            (big.status, big.code),
            (431, Some("request_header_fields_too_large"))
        );
        assert!(big.message.contains("65536 bytes"), "{}", big.message);
        assert_eq!(big.kind.openai_type(), "invalid_request_error");
    }

    #[test]
    fn upstream_failures_are_provider_errors() {
        assert_eq!(GatewayError::bad_gateway("x").status, 502);
        assert_eq!(GatewayError::gateway_timeout("x").status, 504);
        assert_eq!(
            GatewayError::gateway_timeout("x").kind.openai_type(),
            "provider_error"
        );
        assert_eq!(GatewayError::payload_too_large(1).status, 413);
    }
}
