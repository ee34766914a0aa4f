//! The mock provider's server on an ephemeral loopback port: records what it
//! receives and answers with whatever its handler says (JSON, SSE with pauses, large
//! bodies, slow answers), over plain HTTP or TLS.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::reply::{respond, MockBody, Reply};

/// One request as the mock saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query exactly as received.
    pub uri: String,
    pub headers: http::HeaderMap,
    /// The body, when the handler asked for it whole ([`BodyRead::Whole`]).
    pub body: Bytes,
    /// How many body bytes were read, kept or not.
    pub body_len: usize,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or_default()
    }
}

/// How much of a request body the mock reads before its handler answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRead {
    /// All of it, into [`Recorded::body`].
    Whole,
    /// All of it, only counted ([`Recorded::body_len`]): a large upload is never held.
    Count,
    /// None of it: the reply gets it ([`Reply::Echo`] streams it back; any other reply
    /// drops it).
    Unread,
}

/// What answers the mock's requests. Any `Fn(&Recorded) -> Reply` is one, reading
/// every body whole.
pub trait Handler: Send + Sync + 'static {
    /// How much of the body of the request with this head to read before answering.
    fn body_read(&self, _head: &http::request::Parts) -> BodyRead {
        BodyRead::Whole
    }

    /// The answer to `request`.
    fn answer(&self, request: &Recorded) -> Reply;
}

impl<F> Handler for F
where
    F: Fn(&Recorded) -> Reply + Send + Sync + 'static,
{
    fn answer(&self, request: &Recorded) -> Reply {
        self(request)
    }
}

/// What every connection of one mock shares.
struct Shared {
    handler: Box<dyn Handler>,
    /// Whether requests and chunk times are kept for the test to read back.
    record: bool,
    recorded: Mutex<Vec<Recorded>>,
    chunk_sent_at: Arc<Mutex<Vec<Instant>>>,
}

/// A running mock provider.
pub struct MockUpstream {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    connections: Arc<AtomicUsize>,
    /// When each streamed chunk was handed to the socket.
    pub chunk_sent_at: Arc<Mutex<Vec<Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl MockUpstream {
    /// Plain HTTP mock answering with `handler`.
    pub async fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_handler(handler).await
    }

    /// HTTPS mock with the given certificate chain and key.
    pub async fn start_tls(
        handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
        acceptor: TlsAcceptor,
    ) -> Self {
        Self::start_inner(Box::new(handler), Some(acceptor), true).await
    }

    /// Plain HTTP mock answering with any [`Handler`], such as the canned provider.
    pub async fn start_handler(handler: impl Handler) -> Self {
        Self::start_inner(Box::new(handler), None, true).await
    }

    /// Plain HTTP mock that keeps no record of requests or chunk times: under a long
    /// load they would only pile up.
    pub async fn start_unrecorded(handler: impl Handler) -> Self {
        Self::start_inner(Box::new(handler), None, false).await
    }

    async fn start_inner(
        handler: Box<dyn Handler>,
        tls: Option<TlsAcceptor>,
        record: bool,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("mock bind");
        let addr = listener.local_addr().expect("mock address");
        let chunk_sent_at = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new(Shared {
            handler,
            record,
            recorded: Mutex::new(Vec::new()),
            chunk_sent_at: chunk_sent_at.clone(),
        });
        let connections = Arc::new(AtomicUsize::new(0));
        let (state, conns) = (shared.clone(), connections.clone());
        let task = tokio::spawn(async move {
            loop {
                // Out of descriptors under load is passing: the next accept may succeed.
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                conns.fetch_add(1, Ordering::SeqCst);
                let (state, tls) = (state.clone(), tls.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| serve(req, state.clone()));
                    let builder = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(stream).await {
                                let _ = builder.serve_connection(TokioIo::new(s), service).await;
                            }
                        }
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            shared,
            connections,
            chunk_sent_at,
            task,
        }
    }

    /// `http://127.0.0.1:port` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.recorded.lock().unwrap().clone()
    }

    pub fn last(&self) -> Recorded {
        self.requests().pop().expect("the mock received no request")
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<MockBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let (kept, body_len, unread) = match shared.handler.body_read(&parts) {
        BodyRead::Whole => {
            let kept = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let len = kept.len();
            (kept, len, None)
        }
        BodyRead::Count => (Bytes::new(), count(body).await, None),
        BodyRead::Unread => (Bytes::new(), 0, Some(body)),
    };
    let rec = Recorded {
        method: parts.method.to_string(),
        uri: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        headers: parts.headers,
        body: kept,
        body_len,
    };
    if shared.record {
        shared.recorded.lock().unwrap().push(rec.clone());
    }
    let reply = shared.handler.answer(&rec);
    let sent = shared.record.then(|| shared.chunk_sent_at.clone());
    Ok(respond(reply, unread, rec.body, sent).await)
}

/// Reads a body to its end, keeping only its length.
async fn count(mut body: Incoming) -> usize {
    let mut len = 0;
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = frame.data_ref() {
            len += data.len();
        }
    }
    len
}
