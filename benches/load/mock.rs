//! The mock provider: a single-threaded hyper server in its own process (this bench
//! binary started with `--mock`), so its CPU and memory are measured apart from the
//! load generator's. It prints its port on stdout, then serves until killed.
//!
//! | path | answer |
//! |---|---|
//! | `/v1/small` | a 1 KiB JSON document |
//! | `/v1/consume` | reads the whole body, answers `{"received":<bytes>}` |
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
//! `AURORA_BENCH_MOCK_LATENCY_MS` delays every answer; `AURORA_BENCH_SSE_EVENTS` sets N.
//! A stream request carrying `x-mock-pace-ms` and `x-mock-events` gets that many
//! events instead, one every that many milliseconds, as a model sends its tokens.

use std::convert::Infallible;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Request header: milliseconds between two events of a paced stream.
pub const PACE_HEADER: &str = "x-mock-pace-ms";
/// Request header: how many events a paced stream carries.
pub const EVENTS_HEADER: &str = "x-mock-events";

/// Size of the `/v1/small` answer.
pub const SMALL_BYTES: usize = 1024;

type MockBody = BoxBody<Bytes, hyper::Error>;

struct Answers {
    latency: Duration,
    small: Bytes,
    openai_json: Bytes,
    anthropic_json: Bytes,
    openai_stream: Vec<Bytes>,
    anthropic_stream: Vec<Bytes>,
}

/// The 1 KiB answer of `/v1/small`; it ends with `"bench":"small"}`.
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

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Runs the mock provider until the process is killed.
pub fn run_from_env() {
    let events = env_number("AURORA_BENCH_SSE_EVENTS", 100) as usize;
    let answers = Arc::new(Answers {
        latency: Duration::from_millis(env_number("AURORA_BENCH_MOCK_LATENCY_MS", 0)),
        small: Bytes::from(small_json()),
        openai_json: fixture("openai/chat_completion.json"),
        anthropic_json: fixture("anthropic/messages.json"),
        openai_stream: openai_stream(events),
        anthropic_stream: anthropic_stream(events),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("mock runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("mock bind");
        let port = listener.local_addr().expect("mock addr").port();
        let mut stdout = std::io::stdout();
        let _ = writeln!(stdout, "{port}");
        let _ = stdout.flush();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let answers = answers.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| answer(req, answers.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

fn full(status: u16, body: Bytes, content_type: &str) -> Response<MockBody> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body).map_err(|never| match never {}).boxed())
        .expect("mock response")
}

/// The pace and length a request asks for, when it asks for a paced stream.
fn pacing(req: &Request<Incoming>) -> Option<(Duration, usize)> {
    let number = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((
        Duration::from_millis(number(PACE_HEADER)?),
        number(EVENTS_HEADER)? as usize,
    ))
}

/// `events`, one every `pace`.
fn paced_sse(events: Vec<Bytes>, pace: Duration) -> Response<MockBody> {
    use futures_util::StreamExt;
    let frames = futures_util::stream::iter(events).then(move |b| async move {
        tokio::time::sleep(pace).await;
        Ok::<_, hyper::Error>(Frame::data(b))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(BodyExt::boxed(StreamBody::new(frames)))
        .expect("mock response")
}

fn sse(events: Vec<Bytes>) -> Response<MockBody> {
    let frames = futures_util::stream::iter(events.into_iter().map(|b| Ok(Frame::data(b))));
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(BodyExt::boxed(StreamBody::new(frames)))
        .expect("mock response")
}

/// One event, then silence until the client hangs up.
fn idle_sse() -> Response<MockBody> {
    use futures_util::StreamExt;
    let first = futures_util::stream::once(async {
        Ok::<_, hyper::Error>(Frame::data(Bytes::from_static(
            b"event: ping\ndata: {\"type\":\"ping\"}\n\n",
        )))
    });
    let frames = first.chain(futures_util::stream::pending());
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(BodyExt::boxed(StreamBody::new(frames)))
        .expect("mock response")
}

/// The answer of `/v1/models`.
pub const MODEL_LIST: &str = r#"{"object":"list","data":[{"id":"gpt-4o-mini","object":"model","owned_by":"mock"},{"id":"claude-sonnet-4-5","object":"model","owned_by":"mock"}]}"#;

/// The model name that makes the chat and messages paths answer `status`.
pub fn failing_model(status: u16) -> String {
    format!("mock-status-{status}")
}

/// The status a `mock-status-{code}` model in `body` asks for.
fn requested_status(body: &[u8]) -> Option<u16> {
    let needle = b"mock-status-";
    let at = body.windows(needle.len()).position(|w| w == needle)? + needle.len();
    std::str::from_utf8(body.get(at..at + 3)?)
        .ok()?
        .parse()
        .ok()
        .filter(|s| (200..600).contains(s))
}

/// An error answer in the shape of the OpenAI API, or of Anthropic's.
fn error_answer(status: u16, anthropic: bool) -> Response<MockBody> {
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
    let mut resp = full(status, Bytes::from(body), "application/json");
    if status == 429 {
        resp.headers_mut()
            .insert("retry-after", hyper::header::HeaderValue::from_static("1"));
    }
    resp
}

/// Reads the body: its length, and whether it asks for a stream.
async fn read_body(body: Incoming, keep: bool) -> (usize, bool, Vec<u8>) {
    let mut len = 0;
    let mut kept = Vec::new();
    let mut body = body;
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = frame.data_ref() {
            len += data.len();
            if keep {
                kept.extend_from_slice(data);
            }
        }
    }
    let wants_stream = [&b"\"stream\":true"[..], &b"\"stream\": true"[..]]
        .iter()
        .any(|needle| kept.windows(needle.len()).any(|w| w == *needle));
    (len, wants_stream, kept)
}

async fn answer(
    req: Request<Incoming>,
    answers: Arc<Answers>,
) -> Result<Response<MockBody>, Infallible> {
    if !answers.latency.is_zero() {
        tokio::time::sleep(answers.latency).await;
    }
    let path = req.uri().path().to_string();
    let json = "application/json";
    Ok(match path.as_str() {
        "/v1/echo" => Response::builder()
            .header("content-type", "application/octet-stream")
            .body(req.into_body().boxed())
            .expect("mock response"),
        "/v1/small" => {
            read_body(req.into_body(), false).await;
            full(200, answers.small.clone(), json)
        }
        "/v1/consume" => {
            let (len, ..) = read_body(req.into_body(), false).await;
            full(200, Bytes::from(format!("{{\"received\":{len}}}")), json)
        }
        "/v1/chat/completions" => {
            let paced = pacing(&req);
            let (_, stream, kept) = read_body(req.into_body(), true).await;
            match (requested_status(&kept), stream) {
                (Some(status), _) => error_answer(status, false),
                (None, true) => match paced {
                    Some((pace, n)) => paced_sse(openai_stream(n), pace),
                    None => sse(answers.openai_stream.clone()),
                },
                (None, false) => full(200, answers.openai_json.clone(), json),
            }
        }
        "/v1/messages" => {
            let paced = pacing(&req);
            let (_, stream, kept) = read_body(req.into_body(), true).await;
            match (requested_status(&kept), stream) {
                (Some(status), _) => error_answer(status, true),
                (None, true) => match paced {
                    Some((pace, n)) => paced_sse(anthropic_stream(n), pace),
                    None => sse(answers.anthropic_stream.clone()),
                },
                (None, false) => full(200, answers.anthropic_json.clone(), json),
            }
        }
        "/v1/models" => full(200, Bytes::from_static(MODEL_LIST.as_bytes()), json),
        p if p.starts_with("/v1/status/") => {
            read_body(req.into_body(), false).await;
            let status = p["/v1/status/".len()..]
                .parse()
                .ok()
                .filter(|s| (200..600).contains(s))
                .unwrap_or(500);
            error_answer(status, false)
        }
        "/v1/idle" => {
            read_body(req.into_body(), false).await;
            idle_sse()
        }
        _ => full(
            404,
            Bytes::from_static(br#"{"error":"no such path"}"#),
            json,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_model_in_the_body_names_the_status() {
        let body = format!(r#"{{"model":"{}","messages":[]}}"#, failing_model(429));
        assert_eq!(requested_status(body.as_bytes()), Some(429));
        assert_eq!(requested_status(br#"{"model":"gpt-4o-mini"}"#), None);
        assert_eq!(requested_status(b"mock-status-9x"), None);
        assert_eq!(requested_status(b"mock-status-999"), None);
    }
}
