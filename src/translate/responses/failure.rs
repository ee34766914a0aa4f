//! How a Responses stream that fails says so: the `response.failed` event, whose
//! `response` has `"status":"failed"` and an `error` with a `code` and a `message`, as
//! OpenAI's Responses API ends a failed stream.
//!
//! Responses clients read the failure from that event alone. Codex skips an `error`
//! event (typed or OpenAI's untyped `data: {"error":…}`), reports the stream as cut
//! before `response.completed`, and sends the request again, the model run again each
//! time; on `response.failed` it shows the message, and on the codes it knows it acts:
//! it stops at `context_length_exceeded`, `insufficient_quota` and
//! `server_is_overloaded` (saying so in its own words), waits out
//! `rate_limit_exceeded`. The gateway sends its `error` event first (the OpenAI SDKs
//! raise it), then `response.failed`.

use crate::translate::json_writer::write_str;

/// The code of a prompt longer than the model's context.
pub const CONTEXT_LENGTH_EXCEEDED: &str = "context_length_exceeded";
/// The code of a spent budget.
pub const INSUFFICIENT_QUOTA: &str = "insufficient_quota";
/// The code of a provider too busy to answer: Codex does not run the model again
/// against it.
pub const SERVER_IS_OVERLOADED: &str = "server_is_overloaded";
/// The code of a rate limit.
pub const RATE_LIMIT_EXCEEDED: &str = "rate_limit_exceeded";
/// The code of a failure on the provider's side (or the gateway's).
pub const SERVER_ERROR: &str = "server_error";

/// The codes Responses clients act on: passed on as they are.
const ACTED_ON: [&str; 4] = [
    CONTEXT_LENGTH_EXCEEDED,
    INSUFFICIENT_QUOTA,
    SERVER_IS_OVERLOADED,
    RATE_LIMIT_EXCEEDED,
];

/// The `code` of a failed response's `error`, for an error of the OpenAI `type` `kind`
/// (`None`: unknown) whose own code is `code`: a code Responses clients act on as it
/// is, `rate_limit_exceeded` for any rate limit, `server_error` for the provider's
/// failures, else the type.
pub fn failure_code(kind: Option<&'static str>, code: Option<&str>) -> &'static str {
    if let Some(known) = ACTED_ON.iter().find(|known| Some(**known) == code) {
        return known;
    }
    match kind {
        Some("rate_limit_error") => RATE_LIMIT_EXCEEDED,
        Some("provider_error") | None => SERVER_ERROR,
        Some(other) => other,
    }
}

/// Appends a failed response's `error` object.
pub(super) fn write_error(out: &mut Vec<u8>, code: &str, message: &str) {
    out.extend_from_slice(b"{\"code\":");
    write_str(out, code);
    out.extend_from_slice(b",\"message\":");
    write_str(out, message);
    out.push(b'}');
}

/// The `response.failed` event that ends a Responses stream the provider answered
/// itself and the gateway cut: the response (named by its `id` when the stream named
/// it) failed with `code` and `message`. The provider's own members and sequence
/// numbers are not known here; clients read `response.error`.
pub fn response_failed_event(id: Option<&str>, code: &str, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + message.len() + id.map_or(0, str::len));
    out.extend_from_slice(
        b"event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{",
    );
    if let Some(id) = id {
        out.extend_from_slice(b"\"id\":");
        write_str(&mut out, id);
        out.push(b',');
    }
    out.extend_from_slice(b"\"object\":\"response\",\"status\":\"failed\",\"error\":");
    write_error(&mut out, code, message);
    out.extend_from_slice(b"}}\n\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn codes_clients_act_on_come_first_then_the_type() {
        for (kind, code, expected) in [
            (
                Some("invalid_request_error"),
                Some(CONTEXT_LENGTH_EXCEEDED),
                CONTEXT_LENGTH_EXCEEDED,
            ),
            (
                Some("rate_limit_error"),
                Some(INSUFFICIENT_QUOTA),
                INSUFFICIENT_QUOTA,
            ),
            (
                Some("rate_limit_error"),
                Some("rate_limit_exceeded"),
                "rate_limit_exceeded",
            ),
            (Some("rate_limit_error"), None, "rate_limit_exceeded"),
            (
                Some("provider_error"),
                Some(SERVER_IS_OVERLOADED),
                SERVER_IS_OVERLOADED,
            ),
            (
                Some("provider_error"),
                Some("upstream_timeout"),
                SERVER_ERROR,
            ),
            (None, None, SERVER_ERROR),
            (Some("invalid_request_error"), None, "invalid_request_error"),
            (Some("authentication_error"), None, "authentication_error"),
        ] {
            assert_eq!(failure_code(kind, code), expected, "{kind:?} {code:?}");
        }
    }

    fn data(event: &[u8]) -> Value {
        let text = std::str::from_utf8(event).unwrap();
        let (head, data) = text.split_once("\ndata: ").unwrap();
        assert_eq!(head, "event: response.failed");
        assert!(data.ends_with("}\n\n"), "one event: {data:?}");
        serde_json::from_str(data.trim_end()).unwrap()
    }

    #[test]
    fn the_failed_event_names_the_response_when_it_is_known() {
        let named = data(&response_failed_event(
            Some("resp_1"),
            SERVER_ERROR,
            "the \"provider\" went quiet",
        ));
        assert_eq!(
            named,
            json!({"type": "response.failed", "response": {
                "id": "resp_1", "object": "response", "status": "failed",
                "error": {"code": "server_error", "message": "the \"provider\" went quiet"}}})
        );
        let unnamed = data(&response_failed_event(None, "rate_limit_exceeded", "m"));
        assert!(unnamed["response"].get("id").is_none());
        assert_eq!(unnamed["response"]["error"]["code"], "rate_limit_exceeded");
    }
}
