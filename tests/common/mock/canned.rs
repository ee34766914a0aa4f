//! A fixed provider API, the one the load bench serves (from its own process, with
//! `--mock`) and any test can too: every answer known in advance, cheap to produce.
//!
//! | path | answer |
//! |---|---|
//! | `/v1/small`, `/v1/embeddings` | a 1 KiB JSON document reporting its usage |
//! | `/v1/consume`, `/v1/files` | reads the whole body, answers `{"received":<bytes>}` |
//! | `/v1/echo` | the request body, streamed back |
//! | `/v1/chat/completions` | an OpenAI completion, or with `"stream":true` N chunks + `[DONE]` |
//! | `/v1/messages` | an Anthropic message, or with `"stream":true` N text deltas |
//! | `/v1/idle` | an SSE stream that sends one event, then nothing until the client leaves |
//! | `/v1/models` | a model list of two models |
//! | `/v1/status/{code}` | that status with an OpenAI-style error (429 also with `retry-after`) |
//!
//! A chat or messages request whose body names the model `mock-status-{code}` gets that
//! status with the error shape of its API.
//!
//! [`CannedProvider::new`] sets N and a latency that delays every answer.
//! A stream request carrying `x-mock-pace-ms` and `x-mock-events` gets that many
//! events instead, one every that many milliseconds, as a model sends its tokens.

use std::time::Duration;

use bytes::Bytes;

use super::{BodyRead, Handler, Recorded, Reply};

/// Request header: milliseconds between two events of a paced stream.
pub const PACE_HEADER: &str = "x-mock-pace-ms";
/// Request header: how many events a paced stream carries.
pub const EVENTS_HEADER: &str = "x-mock-events";

/// Size of the `/v1/small` answer.
pub const SMALL_BYTES: usize = 1024;

/// The canned provider: its answers built once, each request served from them.
pub struct CannedProvider {
    latency: Duration,
    small: Bytes,
    openai_json: Bytes,
    anthropic_json: Bytes,
    openai_stream: Vec<Bytes>,
    anthropic_stream: Vec<Bytes>,
}

impl CannedProvider {
    /// Streams of `events` events; every answer waits `latency` first.
    pub fn new(events: usize, latency: Duration) -> Self {
        Self {
            latency,
            small: Bytes::from(small_json()),
            openai_json: fixture("openai/chat_completion.json"),
            anthropic_json: fixture("anthropic/messages.json"),
            openai_stream: openai_stream(events),
            anthropic_stream: anthropic_stream(events),
        }
    }

    /// The answer to a chat or messages request, in that API's shape.
    fn model_answer(&self, rec: &Recorded, anthropic: bool) -> Reply {
        let (json, events, canned) = if anthropic {
            (
                &self.anthropic_json,
                anthropic_stream as fn(usize) -> Vec<Bytes>,
                &self.anthropic_stream,
            )
        } else {
            (
                &self.openai_json,
                openai_stream as fn(usize) -> Vec<Bytes>,
                &self.openai_stream,
            )
        };
        if let Some(status) = requested_status(&rec.body) {
            return error_answer(status, anthropic);
        }
        if !wants_stream(&rec.body) {
            return Reply::json(200, json.clone());
        }
        match pacing(rec) {
            Some((pace, n)) => Reply::paced_sse(events(n), pace),
            None => Reply::sse(canned.iter().cloned()),
        }
    }

    fn route(&self, rec: &Recorded) -> Reply {
        match rec.path() {
            "/v1/echo" => Reply::Echo,
            // At a model endpoint too: a caller held to tokens or a budget writes only to
            // endpoints whose cost the gateway meters.
            "/v1/small" | "/v1/embeddings" => Reply::json(200, self.small.clone()),
            // At an upload endpoint too, which a budgeted key may write to.
            "/v1/consume" | "/v1/files" => {
                Reply::json(200, format!("{{\"received\":{}}}", rec.body_len))
            }
            "/v1/chat/completions" => self.model_answer(rec, false),
            "/v1/messages" => self.model_answer(rec, true),
            "/v1/models" => Reply::json(200, MODEL_LIST),
            p if p.starts_with("/v1/status/") => {
                let status = p["/v1/status/".len()..]
                    .parse()
                    .ok()
                    .filter(|s| (200..600).contains(s))
                    .unwrap_or(500);
                error_answer(status, false)
            }
            "/v1/idle" => Reply::held_sse(vec![Bytes::from_static(
                b"event: ping\ndata: {\"type\":\"ping\"}\n\n",
            )]),
            _ => Reply::json(404, r#"{"error":"no such path"}"#),
        }
    }
}

impl Handler for CannedProvider {
    fn body_read(&self, head: &http::request::Parts) -> BodyRead {
        match head.uri.path() {
            // The model, and whether a stream is asked for, are in the body.
            "/v1/chat/completions" | "/v1/messages" => BodyRead::Whole,
            "/v1/echo" => BodyRead::Unread,
            _ => BodyRead::Count,
        }
    }

    fn answer(&self, request: &Recorded) -> Reply {
        let reply = self.route(request);
        if self.latency.is_zero() {
            reply
        } else {
            Reply::Delayed(self.latency, Box::new(reply))
        }
    }
}

/// The 1 KiB answer of `/v1/small` and `/v1/embeddings`; it ends with `"bench":"small"}`.
pub fn small_json() -> String {
    let head = r#"{"id":"bench-small","object":"bench.small","pad":""#;
    // Usage as a provider reports it, so a limited key is charged from each answer.
    let tail = r#"","usage":{"prompt_tokens":20,"completion_tokens":5,"total_tokens":25},"bench":"small"}"#;
    let pad = SMALL_BYTES - head.len() - tail.len();
    format!("{head}{}{tail}", "x".repeat(pad))
}

fn openai_stream(events: usize) -> Vec<Bytes> {
    let chunk = |delta: &str, finish: &str| {
        Bytes::from(format!(
            "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1769092764,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}]}}\n\n"
        ))
    };
    let mut out = vec![chunk(r#"{"role":"assistant","content":""}"#, "null")];
    out.extend((0..events).map(|_| chunk(r#"{"content":" the quick brown"}"#, "null")));
    out.push(chunk("{}", r#""stop""#));
    out.push(Bytes::from(format!(
        "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1769092764,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{{\"prompt_tokens\":12,\"completion_tokens\":{events},\"total_tokens\":{}}}}}\n\n",
        events + 12
    )));
    out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    out
}

fn anthropic_stream(events: usize) -> Vec<Bytes> {
    let mut out = vec![
        Bytes::from_static(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_bench\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n"),
        Bytes::from_static(b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"),
    ];
    let delta = Bytes::from_static(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" the quick brown\"}}\n\n");
    out.extend(std::iter::repeat_n(delta, events));
    out.push(Bytes::from_static(
        b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    ));
    out.push(Bytes::from(format!(
        "event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":{events}}}}}\n\n"
    )));
    out.push(Bytes::from_static(
        b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    ));
    out
}

fn fixture(path: &str) -> Bytes {
    let full = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}")))
}

/// The pace and length a request asks for, when it asks for a paced stream.
fn pacing(rec: &Recorded) -> Option<(Duration, usize)> {
    let number = |name: &str| rec.header(name).and_then(|v| v.parse::<u64>().ok());
    Some((
        Duration::from_millis(number(PACE_HEADER)?),
        number(EVENTS_HEADER)? as usize,
    ))
}

/// Whether a request body asks for a stream.
fn wants_stream(body: &[u8]) -> bool {
    [&b"\"stream\":true"[..], &b"\"stream\": true"[..]]
        .iter()
        .any(|needle| body.windows(needle.len()).any(|w| w == *needle))
}

/// The answer of `/v1/models`.
pub const MODEL_LIST: &str = r#"{"object":"list","data":[{"id":"gpt-4o-mini","object":"model","owned_by":"mock"},{"id":"claude-sonnet-4-5","object":"model","owned_by":"mock"}]}"#;

/// The model name that makes the chat and messages paths answer `status`.
pub fn failing_model(status: u16) -> String {
    format!("mock-status-{status}")
}

/// The status a `mock-status-{code}` model in `body` asks for.
pub fn requested_status(body: &[u8]) -> Option<u16> {
    let needle = b"mock-status-";
    let at = body.windows(needle.len()).position(|w| w == needle)? + needle.len();
    std::str::from_utf8(body.get(at..at + 3)?)
        .ok()?
        .parse()
        .ok()
        .filter(|s| (200..600).contains(s))
}

/// An error answer in the shape of the OpenAI API, or of Anthropic's.
fn error_answer(status: u16, anthropic: bool) -> Reply {
    let message = format!("mock answered {status}");
    let body = if anthropic {
        let kind = match status {
            429 => "rate_limit_error",
            529 => "overloaded_error",
            _ => "api_error",
        };
        format!(r#"{{"type":"error","error":{{"type":"{kind}","message":"{message}"}}}}"#)
    } else {
        let kind = if status == 429 {
            "rate_limit_exceeded"
        } else {
            "server_error"
        };
        format!(r#"{{"error":{{"message":"{message}","type":"{kind}","param":null,"code":null}}}}"#)
    };
    let mut headers = vec![("content-type".into(), "application/json".into())];
    if status == 429 {
        headers.push(("retry-after".into(), "1".into()));
    }
    Reply::Full {
        status,
        headers,
        body: Bytes::from(body),
    }
}
