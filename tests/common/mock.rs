//! A scriptable mock provider on an ephemeral loopback port: records what it receives
//! and answers with whatever the test's handler says (JSON, SSE with pauses, large
//! bodies, slow answers), over plain HTTP or TLS.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// One request as the mock saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query exactly as received.
    pub uri: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

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
}

impl Reply {
    pub fn json(status: u16, body: impl Into<Bytes>) -> Self {
        Reply::Full {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
        }
    }
}

type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

/// A running mock provider.
pub struct MockUpstream {
    pub addr: SocketAddr,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    connections: Arc<AtomicUsize>,
    /// When each streamed chunk was handed to the socket.
    pub chunk_sent_at: Arc<Mutex<Vec<Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl MockUpstream {
    /// Plain HTTP mock.
    pub async fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_inner(Arc::new(handler), None).await
    }

    /// HTTPS mock with the given certificate chain and key.
    pub async fn start_tls(
        handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
        acceptor: TlsAcceptor,
    ) -> Self {
        Self::start_inner(Arc::new(handler), Some(acceptor)).await
    }

    async fn start_inner(handler: Handler, tls: Option<TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let chunk_sent_at = Arc::new(Mutex::new(Vec::new()));
        let (rec, conns, sent) = (recorded.clone(), connections.clone(), chunk_sent_at.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                conns.fetch_add(1, Ordering::SeqCst);
                let (handler, rec, sent, tls) =
                    (handler.clone(), rec.clone(), sent.clone(), tls.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        serve(req, handler.clone(), rec.clone(), sent.clone())
                    });
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
            recorded,
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
        self.recorded.lock().unwrap().clone()
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

type MockBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn serve(
    req: Request<Incoming>,
    handler: Handler,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    sent: Arc<Mutex<Vec<Instant>>>,
) -> Result<Response<MockBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let rec = Recorded {
        method: parts.method.to_string(),
        uri: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        headers: parts.headers,
        body,
    };
    recorded.lock().unwrap().push(rec.clone());
    let mut reply = handler(&rec);
    while let Reply::Delayed(d, inner) = reply {
        tokio::time::sleep(d).await;
        reply = *inner;
    }
    Ok(match reply {
        Reply::Full {
            status,
            headers,
            body,
        } => build(status, headers, Full::new(body).boxed()),
        Reply::Stream {
            status,
            headers,
            chunks,
        } => {
            let stream = futures_util::stream::unfold(
                (chunks.into_iter(), sent),
                |(mut it, sent)| async move {
                    let (pause, chunk) = it.next()?;
                    tokio::time::sleep(pause).await;
                    sent.lock().unwrap().push(Instant::now());
                    Some((Ok::<_, Infallible>(Frame::data(chunk)), (it, sent)))
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
                Some((Ok::<_, Infallible>(Frame::data(chunk)), rx))
            });
            build(status, headers, StreamBody::new(stream).boxed())
        }
        Reply::Delayed(..) => unreachable!(),
    })
}

fn build(status: u16, headers: Vec<(String, String)>, body: MockBody) -> Response<MockBody> {
    let mut resp = Response::builder().status(status);
    for (k, v) in headers {
        resp = resp.header(k, v);
    }
    resp.body(body).unwrap()
}
