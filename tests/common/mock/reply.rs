//! What the mock answers, and how an answer becomes a hyper response.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::Response;

/// The body of every mock response; an echo passes the request's own through.
pub type MockBody = BoxBody<Bytes, hyper::Error>;

/// What the mock answers.
pub enum Reply {
    /// A complete response.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Bytes,
    },
    /// A chunked response written piece by piece, each after its pause.
    Stream {
        status: u16,
        headers: Vec<(String, String)>,
        chunks: Vec<(Duration, Bytes)>,
    },
    /// Waits, then answers.
    Delayed(Duration, Box<Reply>),
    /// A chunked response whose chunks the test pushes through a channel, each as
    /// soon as it is sent; it ends when the sender is dropped.
    Channel {
        status: u16,
        headers: Vec<(String, String)>,
        chunks: tokio::sync::mpsc::UnboundedReceiver<Bytes>,
    },
    /// A chunked response that writes `chunks` at once, then stays open without a
    /// byte more until the client leaves, like a stream whose model went quiet.
    Held {
        status: u16,
        headers: Vec<(String, String)>,
        chunks: Vec<Bytes>,
    },
    /// The request body back, as `application/octet-stream`: streamed as it arrives
    /// when the handler left it unread ([`super::BodyRead::Unread`]), else as kept.
    Echo,
}

impl Reply {
    /// A complete JSON response.
    pub fn json(status: u16, body: impl Into<Bytes>) -> Self {
        Reply::Full {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
        }
    }

    /// A 200 server-sent-event stream of `events`, all written at once.
    pub fn sse(events: impl IntoIterator<Item = Bytes>) -> Self {
        Self::paced_sse(events, Duration::ZERO)
    }

    /// A 200 server-sent-event stream of `events`, one every `pace`, as a model sends
    /// its tokens.
    pub fn paced_sse(events: impl IntoIterator<Item = Bytes>, pace: Duration) -> Self {
        Reply::Stream {
            status: 200,
            headers: sse_headers(),
            chunks: events.into_iter().map(|e| (pace, e)).collect(),
        }
    }

    /// A 200 server-sent-event stream that writes `events`, then holds the line open.
    pub fn held_sse(events: Vec<Bytes>) -> Self {
        Reply::Held {
            status: 200,
            headers: sse_headers(),
            chunks: events,
        }
    }
}

fn sse_headers() -> Vec<(String, String)> {
    vec![
        ("content-type".into(), "text/event-stream".into()),
        ("cache-control".into(), "no-cache".into()),
    ]
}

/// Where the mock notes when each streamed chunk went to the socket, if it does.
pub(super) type SentAt = Option<Arc<Mutex<Vec<Instant>>>>;

/// The response for `reply`. `unread` is the request body when the handler left it
/// unread, `kept` what was read of it.
pub(super) async fn respond(
    mut reply: Reply,
    unread: Option<Incoming>,
    kept: Bytes,
    sent: SentAt,
) -> Response<MockBody> {
    while let Reply::Delayed(pause, inner) = reply {
        tokio::time::sleep(pause).await;
        reply = *inner;
    }
    match reply {
        Reply::Full {
            status,
            headers,
            body,
        } => build(status, headers, whole(body)),
        Reply::Stream {
            status,
            headers,
            chunks,
        } => {
            let stream = futures_util::stream::unfold(
                (chunks.into_iter(), sent),
                |(mut it, sent)| async move {
                    let (pause, chunk) = it.next()?;
                    // A zero pause is no pause: an unpaced stream goes out in one go.
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                    if let Some(sent) = &sent {
                        sent.lock().unwrap().push(Instant::now());
                    }
                    Some((Ok::<_, hyper::Error>(Frame::data(chunk)), (it, sent)))
                },
            );
            build(status, headers, StreamBody::new(stream).boxed())
        }
        Reply::Channel {
            status,
            headers,
            chunks,
        } => {
            let stream = futures_util::stream::unfold(chunks, |mut rx| async move {
                let chunk = rx.recv().await?;
                Some((Ok::<_, hyper::Error>(Frame::data(chunk)), rx))
            });
            build(status, headers, StreamBody::new(stream).boxed())
        }
        Reply::Held {
            status,
            headers,
            chunks,
        } => {
            use futures_util::StreamExt;
            let frames = futures_util::stream::iter(
                chunks
                    .into_iter()
                    .map(|c| Ok::<_, hyper::Error>(Frame::data(c))),
            )
            .chain(futures_util::stream::pending());
            build(status, headers, BodyExt::boxed(StreamBody::new(frames)))
        }
        Reply::Echo => {
            let body = match unread {
                Some(body) => body.boxed(),
                None => whole(kept),
            };
            let octets = vec![("content-type".into(), "application/octet-stream".into())];
            build(200, octets, body)
        }
        Reply::Delayed(..) => unreachable!("delays are waited out above"),
    }
}

fn whole(body: Bytes) -> MockBody {
    Full::new(body).map_err(|never| match never {}).boxed()
}

fn build(status: u16, headers: Vec<(String, String)>, body: MockBody) -> Response<MockBody> {
    let mut resp = Response::builder().status(status);
    for (k, v) in headers {
        resp = resp.header(k, v);
    }
    resp.body(body)
        .unwrap_or_else(|e| panic!("the mock's reply is not a valid response: {e}"))
}
