//! The load generator: HTTP/1.1 keep-alive connections (hyper's connection-level
//! client, one request at a time per connection), a closed loop at fixed concurrency,
//! an open loop at a fixed rate timed from each request's intended send time, and a
//! holder of idle streams. Latencies go into HDR histograms in microseconds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How many failure messages a run keeps for the report.
const KEEP_ERRORS: usize = 5;

/// One request, sent the same way every time.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Bytes the end of a complete answer holds (checked in its last `TAIL` bytes).
    pub marker: &'static str,
}

const TAIL: usize = 512;

/// What one loop measured.
#[derive(Debug)]
pub struct RunStats {
    pub requests: u64,
    pub errors: u64,
    /// Connections re-opened because the server closed an idle one (not failures).
    pub reconnects: u64,
    pub elapsed: Duration,
    pub latency_us: Histogram<u64>,
    /// Open loop: how late each request left after its intended send time.
    pub send_lag_us: Option<Histogram<u64>>,
    pub error_samples: Vec<String>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

impl RunStats {
    fn empty(open: bool) -> Self {
        Self {
            requests: 0,
            errors: 0,
            reconnects: 0,
            elapsed: Duration::ZERO,
            latency_us: histogram(),
            send_lag_us: open.then(histogram),
            error_samples: Vec::new(),
        }
    }

    fn merge(&mut self, other: RunStats) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.reconnects += other.reconnects;
        self.latency_us.add(&other.latency_us).expect("same bounds");
        if let (Some(a), Some(b)) = (&mut self.send_lag_us, &other.send_lag_us) {
            a.add(b).expect("same bounds");
        }
        for e in other.error_samples {
            if self.error_samples.len() < KEEP_ERRORS && !self.error_samples.contains(&e) {
                self.error_samples.push(e);
            }
        }
    }

    fn fail(&mut self, why: String) {
        self.errors += 1;
        if self.error_samples.len() < KEEP_ERRORS && !self.error_samples.contains(&why) {
            self.error_samples.push(why);
        }
    }

    /// Completed requests per second.
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A latency quantile in microseconds (0 without samples).
    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.latency_us.is_empty() {
            0
        } else {
            self.latency_us.value_at_quantile(q)
        }
    }
}

/// One HTTP/1.1 connection's request side.
pub type Sender = SendRequest<Full<Bytes>>;

/// Opens one keep-alive connection.
pub async fn connect(addr: SocketAddr) -> Result<Sender, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    handshake(tcp).await
}

/// Opens one connection whose socket receives into a buffer of about `bytes` (the
/// kernel doubles it): a client that reads slowly then pushes back on the server soon.
pub async fn connect_with_receive_buffer(addr: SocketAddr, bytes: u32) -> Result<Sender, String> {
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    socket
        .set_recv_buffer_size(bytes)
        .map_err(|e| format!("receive buffer: {e}"))?;
    let tcp = socket
        .connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    handshake(tcp).await
}

async fn handshake(tcp: TcpStream) -> Result<Sender, String> {
    let _ = tcp.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

pub fn build(spec: &RequestSpec) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(spec.body.clone()));
    *req.method_mut() = spec.method.clone();
    *req.uri_mut() = spec.path.parse().expect("request path");
    *req.headers_mut() = spec.headers.clone();
    req
}

/// The last `TAIL` bytes of a body.
#[derive(Default)]
struct Tail(Vec<u8>);

impl Tail {
    fn push(&mut self, data: &[u8]) {
        if data.len() >= TAIL {
            self.0.clear();
            self.0.extend_from_slice(&data[data.len() - TAIL..]);
        } else {
            self.0.extend_from_slice(data);
            if self.0.len() > 2 * TAIL {
                self.0.drain(..self.0.len() - TAIL);
            }
        }
    }

    fn holds(&self, marker: &str) -> bool {
        let m = marker.as_bytes();
        self.0.windows(m.len()).any(|w| w == m)
    }
}

/// Why an exchange did not produce a complete answer.
pub enum Failure {
    /// The connection was closed before the request went out: reconnect and retry.
    Closed,
    /// The request failed.
    Request(String),
}

/// A whole answer as the client saw it: its status, its size and how it ended.
pub struct Answer {
    pub status: http::StatusCode,
    pub bytes: usize,
    tail: Tail,
}

impl Answer {
    /// Whether the end of the body holds `marker`.
    pub fn ends_with_marker(&self, marker: &str) -> bool {
        self.tail.holds(marker)
    }

    /// The last bytes of the body, for a failure message.
    pub fn ending(&self) -> String {
        let t = &self.tail.0;
        String::from_utf8_lossy(&t[t.len().saturating_sub(160)..]).into_owned()
    }
}

/// Sends `spec` and reads the whole answer, whatever its status.
pub async fn exchange_answer(sender: &mut Sender, spec: &RequestSpec) -> Result<Answer, Failure> {
    if sender.ready().await.is_err() {
        return Err(Failure::Closed);
    }
    let resp = sender
        .send_request(build(spec))
        .await
        .map_err(|e| Failure::Request(format!("send: {e}")))?;
    let status = resp.status();
    let mut body = resp.into_body();
    let mut tail = Tail::default();
    let mut bytes = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failure::Request(format!("body: {e}")))?;
        if let Some(data) = frame.data_ref() {
            bytes += data.len();
            tail.push(data);
        }
    }
    Ok(Answer {
        status,
        bytes,
        tail,
    })
}

/// Sends `spec` and reads the whole answer, checking status and completeness.
pub async fn exchange(sender: &mut Sender, spec: &RequestSpec) -> Result<(), Failure> {
    let answer = exchange_answer(sender, spec).await?;
    if !answer.status.is_success() {
        return Err(Failure::Request(format!(
            "status {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.tail.0)
        )));
    }
    if !answer.ends_with_marker(spec.marker) {
        return Err(Failure::Request(format!(
            "incomplete answer (no `{}` at its end): …{}",
            spec.marker,
            answer.ending()
        )));
    }
    Ok(())
}

/// One request on a fresh connection: checks that a target answers `spec` correctly.
pub async fn check(addr: SocketAddr, spec: &RequestSpec) -> Result<(), String> {
    let mut sender = connect(addr).await?;
    match exchange(&mut sender, spec).await {
        Ok(()) => Ok(()),
        Err(Failure::Closed) => Err("connection closed before the request".into()),
        Err(Failure::Request(why)) => Err(why),
    }
}

/// Sends on one connection, re-opening it when the server closed it; records latency
/// from `from` (the intended send time in the open loop, the actual one otherwise).
async fn timed(
    addr: SocketAddr,
    sender: &mut Option<Sender>,
    spec: &RequestSpec,
    stats: &mut RunStats,
    from: Option<Instant>,
) {
    for _ in 0..3 {
        if sender.as_ref().is_none_or(|s| s.is_closed()) {
            match connect(addr).await {
                Ok(s) => *sender = Some(s),
                Err(e) => {
                    stats.fail(e);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    return;
                }
            }
        }
        let s = sender.as_mut().expect("connected");
        let start = from.unwrap_or_else(Instant::now);
        match exchange(s, spec).await {
            Ok(()) => {
                stats.requests += 1;
                let us = start.elapsed().as_micros().max(1) as u64;
                stats.latency_us.saturating_record(us);
                return;
            }
            Err(Failure::Closed) => {
                stats.reconnects += 1;
                *sender = None;
            }
            Err(Failure::Request(why)) => {
                stats.fail(why);
                *sender = None;
                return;
            }
        }
    }
    stats.fail("connection kept closing".into());
}

/// `concurrency` connections, each sending its next request as soon as the previous
/// answer is complete, for `duration`.
pub async fn closed_loop(
    addr: SocketAddr,
    spec: Arc<RequestSpec>,
    concurrency: usize,
    duration: Duration,
) -> RunStats {
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let spec = spec.clone();
            tokio::spawn(async move {
                let mut stats = RunStats::empty(false);
                let mut sender = None;
                while Instant::now() < deadline {
                    timed(addr, &mut sender, &spec, &mut stats, None).await;
                }
                stats
            })
        })
        .collect();
    let mut total = RunStats::empty(false);
    for t in tasks {
        total.merge(t.await.expect("load task"));
    }
    total.elapsed = start.elapsed();
    total
}

/// `rate` requests per second in all, handed round-robin to `connections`
/// connections, for `duration`. A pacing thread (high-resolution sleeps rather than
/// the runtime's millisecond timer) releases each request at its intended send time;
/// a request whose connection is still busy waits its turn, and its latency still
/// counts from when it should have left: queueing behind a slow answer is measured,
/// not hidden.
pub async fn open_loop(
    addr: SocketAddr,
    spec: Arc<RequestSpec>,
    connections: usize,
    rate: f64,
    duration: Duration,
) -> RunStats {
    let mut total = RunStats::empty(true);
    let mut queues = Vec::with_capacity(connections);
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let mut sender = match connect(addr).await {
            Ok(s) => Some(s),
            Err(e) => {
                total.fail(e);
                None
            }
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        queues.push(tx);
        let spec = spec.clone();
        tasks.push(tokio::spawn(async move {
            let mut stats = RunStats::empty(true);
            while let Some(intended) = rx.recv().await {
                let lag = intended.elapsed().as_micros().max(1) as u64;
                if let Some(h) = &mut stats.send_lag_us {
                    h.saturating_record(lag);
                }
                timed(addr, &mut sender, &spec, &mut stats, Some(intended)).await;
            }
            stats
        }));
    }
    let start = Instant::now() + Duration::from_millis(20);
    let pacer = std::thread::spawn(move || {
        // SAFETY: prctl on the calling thread; asks for 1 µs timer slack instead of 50.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1) };
        let end = start + duration;
        for k in 0u64.. {
            let intended = start + Duration::from_secs_f64(k as f64 / rate);
            if intended >= end {
                break;
            }
            let now = Instant::now();
            if intended > now {
                std::thread::sleep(intended - now);
            }
            let _ = queues[(k % queues.len() as u64) as usize].send(intended);
        }
    });
    for t in tasks {
        total.merge(t.await.expect("load task"));
    }
    pacer.join().expect("pacer thread");
    total.elapsed = start.elapsed();
    total
}

/// Streams held open: each connection, its answer's body and nothing read past the
/// first event.
pub struct HeldStreams {
    held: Vec<(Sender, Incoming)>,
    pub failed: u64,
    pub error_samples: Vec<String>,
}

impl HeldStreams {
    pub fn open(&self) -> usize {
        self.held.len()
    }
}

/// Opens a connection, sends `spec` and hands back a successful answer's body.
async fn send_on_new_connection(
    addr: SocketAddr,
    spec: &RequestSpec,
) -> Result<(Sender, Incoming), String> {
    let mut sender = connect(addr).await?;
    let resp = sender
        .send_request(build(spec))
        .await
        .map_err(|e| format!("send: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    Ok((sender, resp.into_body()))
}

/// Opens a connection, sends `spec` and reads the answer up to its first event.
pub async fn open_stream(
    addr: SocketAddr,
    spec: &RequestSpec,
) -> Result<(Sender, Incoming), String> {
    let (sender, mut body) = send_on_new_connection(addr, spec).await?;
    // The first event proves the stream flows end to end.
    loop {
        match body.frame().await {
            Some(Ok(f)) if f.data_ref().is_some_and(|d| !d.is_empty()) => break,
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("body: {e}")),
            None => return Err("stream ended at once".into()),
        }
    }
    Ok((sender, body))
}

/// What a run of streams read to their ends measured.
#[derive(Debug, Default)]
pub struct StreamRun {
    pub completed: u64,
    pub failed: u64,
    /// Events read (blank-line separated) over every completed stream.
    pub events: u64,
    pub elapsed: Duration,
    pub error_samples: Vec<String>,
}

/// Runs `n` streams at once, each on its own connection and read to its end (its
/// last bytes holding `spec.marker`), each given at most `limit`.
pub async fn run_streams(
    addr: SocketAddr,
    spec: Arc<RequestSpec>,
    n: usize,
    limit: Duration,
) -> StreamRun {
    let start = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let spec = spec.clone();
            tokio::spawn(async move {
                tokio::time::timeout(limit, read_stream(addr, &spec))
                    .await
                    .unwrap_or_else(|_| Err("timed out".into()))
            })
        })
        .collect();
    let mut run = StreamRun::default();
    for t in tasks {
        match t.await.unwrap_or_else(|e| Err(format!("task: {e}"))) {
            Ok(events) => {
                run.completed += 1;
                run.events += events;
            }
            Err(e) => {
                run.failed += 1;
                if run.error_samples.len() < KEEP_ERRORS && !run.error_samples.contains(&e) {
                    run.error_samples.push(e);
                }
            }
        }
    }
    run.elapsed = start.elapsed();
    run
}

/// One stream read to its end: the events it carried.
async fn read_stream(addr: SocketAddr, spec: &RequestSpec) -> Result<u64, String> {
    // The sender keeps the connection open until the body is read.
    let (_sender, mut body) = send_on_new_connection(addr, spec).await?;
    let mut events = 0u64;
    let mut tail = Tail::default();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("body: {e}"))?;
        if let Some(data) = frame.data_ref() {
            events += data.windows(2).filter(|w| w == b"\n\n").count() as u64;
            tail.push(data);
        }
    }
    if !tail.holds(spec.marker) {
        return Err(format!("stream ended without `{}`", spec.marker));
    }
    Ok(events)
}

/// Opens `n` streams, `parallel` at a time, and keeps them open until dropped.
pub async fn hold_streams(
    addr: SocketAddr,
    spec: Arc<RequestSpec>,
    n: usize,
    parallel: usize,
) -> HeldStreams {
    let results: Vec<_> = futures_util::stream::iter(0..n)
        .map(|_| {
            let spec = spec.clone();
            async move {
                tokio::time::timeout(Duration::from_secs(10), open_stream(addr, &spec))
                    .await
                    .unwrap_or_else(|_| Err("timed out".into()))
            }
        })
        .buffer_unordered(parallel)
        .collect()
        .await;
    let mut held = Vec::with_capacity(n);
    let mut failed = 0;
    let mut error_samples = Vec::new();
    for r in results {
        match r {
            Ok(s) => held.push(s),
            Err(e) => {
                failed += 1;
                if error_samples.len() < KEEP_ERRORS && !error_samples.contains(&e) {
                    error_samples.push(e);
                }
            }
        }
    }
    HeldStreams {
        held,
        failed,
        error_samples,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// How long the server holds its first answer back.
    const STALL: Duration = Duration::from_millis(300);

    /// A keep-alive HTTP/1.1 server on loopback answering `ok` to every request, but
    /// only after `STALL` for the very first one.
    async fn server_stalling_once() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stalled = Arc::new(AtomicBool::new(false));
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let stalled = stalled.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 1024];
                    loop {
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            if !stalled.swap(true, Ordering::SeqCst) {
                                tokio::time::sleep(STALL).await;
                            }
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if sock.write_all(answer).await.is_err() {
                                return;
                            }
                        }
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                });
            }
        });
        addr
    }

    fn get(marker: &'static str) -> Arc<RequestSpec> {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::HOST, "127.0.0.1".parse().unwrap());
        Arc::new(RequestSpec {
            method: Method::GET,
            path: "/".into(),
            headers,
            body: Bytes::new(),
            marker,
        })
    }

    /// Requests whose recorded latency is at least 100 ms.
    fn slow(stats: &RunStats) -> u64 {
        stats.latency_us.count_between(100_000, u64::MAX)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_loop_charges_requests_queued_behind_a_slow_answer() {
        let addr = server_stalling_once().await;
        // 50 requests/s on one connection: about 15 are due while the first is stalled.
        let stats = open_loop(addr, get("ok"), 1, 50.0, Duration::from_secs(1)).await;
        assert_eq!(stats.errors, 0, "{:?}", stats.error_samples);
        assert!(stats.requests >= 45, "{} requests", stats.requests);
        // Each queued request counts from when it should have left, not from when the
        // connection was free again: the stall shows in many samples, not one.
        assert!(
            slow(&stats) >= 8,
            "{} slow of {}",
            slow(&stats),
            stats.requests
        );
        assert!(stats.latency_us.max() >= STALL.as_micros() as u64);
        let lag = stats.send_lag_us.as_ref().unwrap();
        assert!(lag.max() >= 100_000, "send lag max {} µs", lag.max());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_loop_sees_the_stall_once() {
        let addr = server_stalling_once().await;
        let stats = closed_loop(addr, get("ok"), 1, Duration::from_millis(600)).await;
        assert_eq!(stats.errors, 0, "{:?}", stats.error_samples);
        assert!(stats.requests > 1);
        assert_eq!(slow(&stats), 1);
        assert!(stats.send_lag_us.is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answer_without_its_marker_counts_as_failed() {
        let addr = server_stalling_once().await;
        let stats = closed_loop(addr, get("[DONE]"), 1, Duration::from_millis(400)).await;
        assert_eq!(stats.requests, 0);
        assert!(stats.errors >= 1);
        assert!(stats.error_samples[0].contains("incomplete answer"));
    }

    #[test]
    fn tail_finds_a_marker_split_across_chunks_and_keeps_only_the_end() {
        let mut tail = Tail::default();
        tail.push(b"data: {}\n\ndata: [DO");
        tail.push(b"NE]\n\n");
        assert!(tail.holds("data: [DONE]"));
        tail.push(&vec![b'x'; 3 * TAIL]);
        assert!(!tail.holds("[DONE]"));
        assert_eq!(tail.0.len(), TAIL);
        for _ in 0..100 {
            tail.push(b"0123456789");
        }
        assert!(tail.0.len() <= 2 * TAIL);
        assert!(tail.holds("789"));
    }
}
