//! Writing gateway-made responses (health, errors) to the client.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use pingora_core::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use super::header_maps;
use super::headers::AURORA_REQUEST_ID;
use super::request_id::RequestId;
use super::retry_advice;
use super::GatewayError;
use crate::limits::{insert_rate_headers, RateState};
use crate::providers::WireFormat;
use crate::translate::responses::response_failed_event;

/// Sends a complete JSON response, keeping the connection reusable.
pub async fn send_json(
    session: &mut Session,
    status: u16,
    body: Vec<u8>,
    request_id: &RequestId,
) -> Result<()> {
    send(session, status, "application/json", body, request_id).await
}

/// [`send_json`] to a caller held to `rate`: with its `x-ratelimit-*` headers, as
/// every answer to a key with limits carries them.
pub async fn send_json_within(
    session: &mut Session,
    status: u16,
    body: Vec<u8>,
    request_id: &RequestId,
    rate: Option<&RateState>,
) -> Result<()> {
    send_with(
        session,
        status,
        "application/json",
        body,
        request_id,
        ErrorHead::default(),
        rate,
    )
    .await
}

/// Sends a complete response of `content_type`, keeping the connection reusable.
pub async fn send(
    session: &mut Session,
    status: u16,
    content_type: &str,
    body: Vec<u8>,
    request_id: &RequestId,
) -> Result<()> {
    send_with(
        session,
        status,
        content_type,
        body,
        request_id,
        ErrorHead::default(),
        None,
    )
    .await
}

/// A gateway-made answer being written. Boxed: these answers (errors, health, model
/// lists) are off the proxied path, and inline their writes would make the future of
/// every hook that may send one, allocated and moved per request, a kilobyte larger.
type Sending<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

/// Whether `err` tells the client not to retry at all (`x-should-retry: false`): the
/// provider did the work it ends, or it says to wait longer than a retry is worth (a
/// spent budget, until its period ends).
fn not_worth_retrying(err: &GatewayError) -> bool {
    err.after_provider_work
        || err
            .retry_after
            .is_some_and(|seconds| retry_advice::too_long_to_wait(seconds.into()))
}

/// What an error answer says besides its body.
#[derive(Default)]
struct ErrorHead {
    /// Seconds to wait before retrying (`Retry-After`).
    retry_after: Option<u32>,
    /// Not to retry at all (`x-should-retry: false`).
    no_retry: bool,
    /// Where the client's SDK reads the request's id, besides `X-Aurora-Request-Id`:
    /// a user quoting the id of a failed call then quotes the one the access log has.
    id_header: Option<http::HeaderName>,
}

impl ErrorHead {
    /// What `err` says besides its body, to a client of `format`.
    fn of(err: &GatewayError, format: WireFormat) -> Self {
        Self {
            retry_after: err.retry_after,
            no_retry: not_worth_retrying(err),
            id_header: Some(super::headers::request_id_header_of(format)),
        }
    }

    fn header_count(&self) -> usize {
        usize::from(self.retry_after.is_some())
            + usize::from(self.no_retry)
            + usize::from(self.id_header.is_some())
    }
}

/// [`send`], with what an error answer says besides its body (`error`).
fn send_with<'a>(
    session: &'a mut Session,
    status: u16,
    content_type: &'a str,
    body: Vec<u8>,
    request_id: &'a RequestId,
    error: ErrorHead,
    rate: Option<&'a RateState>,
) -> Sending<'a> {
    Box::pin(async move {
        let room = 3 + error.header_count() + rate.map_or(0, RateState::header_count);
        let mut head = header_maps::blank_answer(status, room)?;
        let map = &mut head.headers;
        if let Some(seconds) = error.retry_after {
            header_maps::put(map, header::RETRY_AFTER, HeaderValue::from(seconds))?;
        }
        if error.no_retry {
            header_maps::put(
                map,
                retry_advice::SHOULD_RETRY,
                retry_advice::do_not_retry(),
            )?;
        }
        if let Some(name) = error.id_header {
            header_maps::put(map, name, request_id.header_value())?;
        }
        if let Some(rate) = rate {
            // A refusal is rare: its numbers are formatted.
            insert_rate_headers(map, rate, None).map_err(header_maps::too_many_headers)?;
        }
        header_maps::put(map, header::CONTENT_TYPE, header_maps::text(content_type)?)?;
        header_maps::put(map, header::CONTENT_LENGTH, HeaderValue::from(body.len()))?;
        header_maps::put(map, AURORA_REQUEST_ID, request_id.header_value())?;
        let resp = ResponseHeader::from(head);
        let head_only = session.req_header().method == http::Method::HEAD;
        session
            .write_response_header(Box::new(resp), head_only)
            .await?;
        if !head_only {
            session
                .write_response_body(Some(Bytes::from(body)), true)
                .await?;
        }
        // A subrequest session ignores the end flag above; this marks the end for it too.
        session.downstream_session.finish_body().await
    })
}

/// The most of a body written at once: each write waits `server.send_timeout` at
/// most, which is to bound a client that stops reading, not one reading a large answer
/// steadily for longer than that.
const WRITE_PIECE: usize = 256 * 1024;

/// Sends a complete response already built, keeping the connection reusable.
pub async fn send_header_and_body(
    session: &mut Session,
    header: ResponseHeader,
    body: Bytes,
) -> Result<()> {
    session
        .write_response_header(Box::new(header), false)
        .await?;
    let mut rest = body;
    loop {
        let piece = rest.split_to(rest.len().min(WRITE_PIECE));
        let end = rest.is_empty();
        session.write_response_body(Some(piece), end).await?;
        if end {
            break;
        }
    }
    session.downstream_session.finish_body().await
}

/// What follows the error event of a stream the gateway cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterTheError<'a> {
    /// Nothing: the error event is the stream's last word (Chat Completions,
    /// Anthropic Messages).
    Nothing,
    /// `response.failed`, which Responses clients read the failure from (Codex
    /// skips an error event, and sends the request again), of the response `id` when
    /// the stream named it.
    ResponseFailed(Option<&'a str>),
}

/// Ends a stream already under way with `err` as the client's API writes an error
/// event: `event: error` and Anthropic's envelope, or OpenAI's `data: {"error": …}`
/// (which the OpenAI SDKs raise for Chat Completions and Responses streams alike),
/// then what `after` says. A blank line first closes whatever event the provider
/// left half-written.
pub async fn end_stream_with_error(
    session: &mut Session,
    err: &GatewayError,
    format: WireFormat,
    after: AfterTheError<'_>,
) -> Result<()> {
    let event = stream_end(err, format, after);
    session
        .write_response_body(Some(Bytes::from(event)), true)
        .await?;
    session.downstream_session.finish_body().await
}

/// The bytes [`end_stream_with_error`] writes.
fn stream_end(err: &GatewayError, format: WireFormat, after: AfterTheError<'_>) -> Vec<u8> {
    let mut event = Vec::with_capacity(256);
    event.extend_from_slice(match format {
        WireFormat::Anthropic => b"\n\nevent: error\ndata: ".as_slice(),
        WireFormat::OpenAi => b"\n\ndata: ".as_slice(),
    });
    event.extend_from_slice(&err.envelope(format));
    event.extend_from_slice(b"\n\n");
    if let AfterTheError::ResponseFailed(id) = after {
        event.extend_from_slice(&response_failed_event(
            id,
            err.responses_code(),
            &err.message,
        ));
    }
    event
}

/// Sends `err` in the envelope of the client's API, with the `x-ratelimit-*` headers
/// of the windows it names, else of the caller's (`caller_rate`): every answer to a
/// key with limits carries them.
pub async fn send_error(
    session: &mut Session,
    err: &GatewayError,
    format: WireFormat,
    request_id: &RequestId,
    caller_rate: Option<&RateState>,
) -> Result<()> {
    send_with(
        session,
        err.status,
        "application/json",
        err.envelope_answering(format, request_id.as_str()),
        request_id,
        ErrorHead::of(err, format),
        err.rate.as_deref().or(caller_rate),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(seconds: Option<u32>) -> GatewayError {
        let mut err = GatewayError::bad_gateway("x");
        err.retry_after = seconds;
        err
    }

    /// The `data` of each event of `bytes`, with its event name.
    fn events(bytes: &[u8]) -> Vec<(Option<String>, serde_json::Value)> {
        let text = std::str::from_utf8(bytes).unwrap();
        text.split("\n\n")
            .filter(|e| !e.trim().is_empty())
            .map(|e| {
                let name = e.lines().find_map(|l| l.strip_prefix("event: "));
                let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
                (name.map(str::to_owned), serde_json::from_str(data).unwrap())
            })
            .collect()
    }

    #[test]
    fn a_responses_stream_cut_ends_with_the_error_then_response_failed() {
        let err = GatewayError::gateway_timeout("provider `openai` went quiet");
        let end = stream_end(
            &err,
            WireFormat::OpenAi,
            AfterTheError::ResponseFailed(Some("resp_1")),
        );
        assert!(
            end.starts_with(b"\n\n"),
            "a half-written event is closed first"
        );
        let evs = events(&end);
        assert_eq!(evs.len(), 2);
        // OpenAI's envelope first, untyped, as the OpenAI SDKs raise it.
        assert_eq!(evs[0].0, None);
        assert_eq!(evs[0].1["error"]["code"], "upstream_timeout");
        assert_eq!(evs[1].0.as_deref(), Some("response.failed"));
        assert_eq!(
            evs[1].1,
            serde_json::json!({"type": "response.failed", "response": {
                "id": "resp_1", "object": "response", "status": "failed",
                "error": {"code": "server_error", "message": "provider `openai` went quiet"}}})
        );
        let unnamed = stream_end(
            &err,
            WireFormat::OpenAi,
            AfterTheError::ResponseFailed(None),
        );
        assert!(events(&unnamed)[1].1["response"].get("id").is_none());
    }

    #[test]
    fn other_streams_cut_end_at_the_error() {
        let err = GatewayError::bad_gateway("broke off");
        for format in [WireFormat::OpenAi, WireFormat::Anthropic] {
            let evs = events(&stream_end(&err, format, AfterTheError::Nothing));
            assert_eq!(evs.len(), 1, "{format:?}");
        }
        let evs = events(&stream_end(
            &err,
            WireFormat::Anthropic,
            AfterTheError::Nothing,
        ));
        assert_eq!(evs[0].0.as_deref(), Some("error"));
    }

    #[test]
    fn a_rate_limit_fails_a_response_with_the_code_responses_clients_know() {
        let rate = crate::limits::RateState::default();
        let limited = GatewayError::rate_limited("slow down", false, 1, rate);
        assert_eq!(limited.responses_code(), "rate_limit_exceeded");
        let spent = GatewayError::rate_limited("spent", true, 1, rate);
        assert_eq!(spent.responses_code(), "insufficient_quota");
        assert_eq!(
            GatewayError::bad_gateway("x").responses_code(),
            "server_error"
        );
    }

    #[test]
    fn only_a_wait_past_a_minute_tells_the_client_not_to_retry() {
        assert!(!not_worth_retrying(&waiting(None)));
        assert!(!not_worth_retrying(&waiting(Some(1))));
        assert!(!not_worth_retrying(&waiting(Some(60))));
        assert!(not_worth_retrying(&waiting(Some(61))));
        assert!(not_worth_retrying(&waiting(Some(u32::MAX))));
    }

    #[test]
    fn an_error_after_the_provider_answered_with_success_is_not_to_be_retried() {
        for (status, done) in [
            (200, true),
            (201, true),
            (302, false),
            (429, false),
            (502, false),
        ] {
            let err = GatewayError::bad_gateway("x").after_answer(status);
            assert_eq!(not_worth_retrying(&err), done, "{status}");
        }
        // No answer at all: the provider may never have had the request.
        assert!(!not_worth_retrying(
            &GatewayError::bad_gateway("x").after_answer(0)
        ));
    }
}
