//! Slow and oversized requests against the real gateway, on raw sockets: a request
//! header must arrive whole within `header_timeout` of its first byte and within
//! `max_header_bytes`, a body within `body_timeout` of its header; otherwise the client
//! gets 408 or 431 and the connection is closed. Kept-alive idle time is free up to
//! `keepalive_timeout`; a client that stops reading its answer is cut at `send_timeout`.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::tls::TestPki;
use common::{client, scratch_dir, Gateway, MockUpstream, Reply};
use serde_json::{json, Value};

const MASTER: &str = "gw-master-slow-clients-test-012345678";
const OAI_KEY: &str = "sk-oai-provider-slow-clients-test";

/// Short deadlines and a small header cap, so the tests stay fast.
const LIMITS: &str =
    "server:\n  header_timeout: 1s\n  body_timeout: 2s\n  max_header_bytes: 8KiB\n";
const HEADER_CAP: usize = 8 * 1024;

/// Pause between the bytes of a dripped request.
const DRIP: Duration = Duration::from_millis(300);

async fn ok_mock() -> MockUpstream {
    MockUpstream::start(|_| {
        Reply::json(
            200,
            r#"{"id":"c1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[]}"#,
        )
    })
    .await
}

/// A gateway with `yaml`, whose OpenAI provider is `mock`.
fn gateway(mock: &MockUpstream, yaml: &str) -> Gateway {
    gateway_with(mock, yaml, &[])
}

/// [`gateway`] with `env` added.
fn gateway_with(mock: &MockUpstream, yaml: &str, env: &[(&str, &str)]) -> Gateway {
    let base = mock.url("/v1");
    let mut all = vec![
        ("AURORA_MASTER_KEY", MASTER),
        ("OPENAI_API_KEY", OAI_KEY),
        ("OPENAI_BASE_URL", base.as_str()),
    ];
    all.extend_from_slice(env);
    Gateway::start(yaml, &all)
}

/// What the gateway sent on a connection, read until it closed it (or a bound passed).
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
    /// The gateway closed the connection (EOF or reset) after its answer.
    closed: bool,
}

impl Answer {
    fn parse(bytes: &[u8], closed: bool) -> Self {
        let split = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(bytes.len(), |p| p + 4);
        let head = String::from_utf8_lossy(&bytes[..split]).to_string();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Answer {
            status,
            head,
            body: bytes[split..].to_vec(),
            closed,
        }
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// A gateway-made 408 or 431 in the OpenAI envelope, `Connection: close`, and the
    /// connection closed after it.
    /// A refusal with `status` and `code` whose message names the `setting` to raise.
    fn assert_refusal(&self, status: u16, code: &str, setting: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert!(
            self.head
                .to_ascii_lowercase()
                .contains("\r\nconnection: close\r\n"),
            "{}",
            self.head
        );
        let v = self.json();
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(v["error"]["param"].is_null(), "{v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(setting), "{v}");
        assert!(self.closed, "the connection stayed open after {status}");
    }
}

/// Reads what is left on `s` until EOF, a reset, or `within` has passed.
fn read_rest(s: &mut TcpStream, mut out: Vec<u8>, within: Duration) -> Answer {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Answer::parse(&out, false);
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Answer::parse(&out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Answer::parse(&out, true),
        }
    }
}

/// Writes `bytes` one at a time, `DRIP` apart, until the gateway answers or closes;
/// then reads the answer until the connection closes.
fn drip(s: &mut TcpStream, bytes: &[u8]) -> Answer {
    s.set_read_timeout(Some(DRIP)).unwrap();
    let mut buf = [0u8; 16 * 1024];
    for b in bytes {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) => return Answer::parse(&[], true),
            Ok(n) => return read_rest(s, buf[..n].to_vec(), Duration::from_secs(10)),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    read_rest(s, Vec::new(), Duration::from_secs(10))
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Runs blocking socket code off the async test's runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// A request header with an `X-Pad` field of `pad` bytes.
fn padded_header(pad: usize) -> String {
    format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(pad)
    )
}

/// Reads one keep-alive response (`Content-Length` framed) off `s`.
fn read_one_response(s: &mut TcpStream) -> Answer {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before a whole response: {out:?}");
        out.extend_from_slice(&buf[..n]);
        let answer = Answer::parse(&out, false);
        let length = answer
            .head
            .to_ascii_lowercase()
            .lines()
            .find_map(|l| l.strip_prefix("content-length: ").map(str::to_string))
            .and_then(|v| v.trim().parse::<usize>().ok());
        if let Some(length) = length {
            if answer.body.len() >= length {
                return answer;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dripped_header_gets_408_and_the_connection_closes() {
    let mock = ok_mock().await;
    let gw = gateway(&mock, LIMITS);
    let addr = gw.addr();
    let (answer, took) = blocking(move || {
        let started = Instant::now();
        let mut s = connect(&addr);
        // 50 bytes at 300 ms each would take 15 s to finish.
        let answer = drip(&mut s, padded_header(2).as_bytes());
        (answer, started.elapsed())
    })
    .await;
    answer.assert_refusal(408, "request_timeout", "server.header_timeout");
    // The deadline is 1 s from the first byte; the bound only guards against "never".
    assert!(took < Duration::from_secs(8), "cut after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_sent_in_pieces_within_the_deadline_is_served() {
    let mock = ok_mock().await;
    let gw = gateway(&mock, LIMITS);
    let addr = gw.addr();
    let answer = blocking(move || {
        let mut s = connect(&addr);
        let header = padded_header(100);
        for piece in header.as_bytes().chunks(header.len() / 3 + 1) {
            s.write_all(piece).unwrap();
            std::thread::sleep(Duration::from_millis(150));
        }
        read_rest(&mut s, Vec::new(), Duration::from_secs(10))
    })
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_over_max_header_bytes_gets_431_and_the_connection_closes() {
    let mock = ok_mock().await;
    let gw = gateway(&mock, LIMITS);
    let addr = gw.addr();
    let header = padded_header(2 * HEADER_CAP);
    let (in_one_write, in_pieces) = blocking(move || {
        let mut s = connect(&addr);
        s.write_all(header.as_bytes()).unwrap();
        let in_one_write = read_rest(&mut s, Vec::new(), Duration::from_secs(10));

        let mut s = connect(&addr);
        for piece in header.as_bytes().chunks(1024) {
            if s.write_all(piece).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let in_pieces = read_rest(&mut s, Vec::new(), Duration::from_secs(10));
        (in_one_write, in_pieces)
    })
    .await;
    in_one_write.assert_refusal(
        431,
        "request_header_fields_too_large",
        "server.max_header_bytes",
    );
    in_pieces.assert_refusal(
        431,
        "request_header_fields_too_large",
        "server.max_header_bytes",
    );
    assert!(in_one_write
        .head
        .starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_just_under_max_header_bytes_is_served() {
    let mock = ok_mock().await;
    let gw = gateway(&mock, LIMITS);
    let addr = gw.addr();
    let header = padded_header(HEADER_CAP - 200);
    assert!(header.len() <= HEADER_CAP);
    let answer = blocking(move || {
        let mut s = connect(&addr);
        s.write_all(header.as_bytes()).unwrap();
        read_rest(&mut s, Vec::new(), Duration::from_secs(10))
    })
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_time_between_kept_alive_requests_is_not_counted() {
    let mock = ok_mock().await;
    let gw = gateway(&mock, LIMITS);
    let addr = gw.addr();
    let (first, second) = blocking(move || {
        let mut s = connect(&addr);
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let first = read_one_response(&mut s);
        // Longer than header_timeout (1 s), well under the keep-alive timeout.
        std::thread::sleep(Duration::from_millis(2500));
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let second = read_rest(&mut s, Vec::new(), Duration::from_secs(10));
        (first, second)
    })
    .await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(second.status, 200, "{second:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_idle_past_the_keepalive_timeout_is_closed() {
    let mock = ok_mock().await;
    let gw = gateway(&mock, "server:\n  keepalive_timeout: 1s\n");
    let addr = gw.addr();
    let (first, idle, took) = blocking(move || {
        let mut s = connect(&addr);
        // An HTTP/1.1 request with no `Connection` header: kept alive.
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let first = read_one_response(&mut s);
        let started = Instant::now();
        let idle = read_rest(&mut s, Vec::new(), Duration::from_secs(10));
        (first, idle, started.elapsed())
    })
    .await;
    assert_eq!(first.status, 200, "{first:?}");
    assert!(idle.closed, "an idle connection was kept for 10 s");
    assert!(idle.head.is_empty(), "{idle:?}");
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
}

/// A provider answering every call with `size` bytes: a JSON document, or for a
/// stream, events in pieces of a mebibyte (an answer of unknown length, chunked).
async fn large_answer_mock(size: usize) -> MockUpstream {
    let body = format!(r#"{{"pad":"{}"}}"#, "x".repeat(size));
    let event = bytes::Bytes::from(format!("data: {{\"pad\":\"{}\"}}\n\n", "x".repeat(1 << 20)));
    MockUpstream::start(move |rec: &common::Recorded| {
        if String::from_utf8_lossy(&rec.body).contains(r#""stream":true"#) {
            Reply::Stream {
                status: 200,
                headers: vec![("content-type".into(), "text/event-stream".into())],
                chunks: (0..size >> 20)
                    .map(|_| (Duration::ZERO, event.clone()))
                    .collect(),
            }
        } else {
            Reply::json(200, body.clone())
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_its_answer_is_cut_at_the_send_timeout() {
    const SIZE: usize = 48 * 1024 * 1024;
    let mock = large_answer_mock(SIZE).await;
    let gw = gateway(&mock, "server:\n  send_timeout: 1s\n");
    // A stream that may fall back on a prompt too long is the gateway's own exchange.
    let own_exchange = gateway(
        &mock,
        "server:\n  send_timeout: 1s\nmodels:\n  fallbacks:\n    gpt-4o-mini: [openai/gpt-4o]\n  fallbacks_on_context_overflow: [gpt-4o-mini]\n",
    );
    let stream =
        r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    // Proxied by Pingora's loop, and streamed by the gateway's own exchange.
    for (gw, method, path, body) in [
        (&gw, "GET", "/p/openai/models", ""),
        (&own_exchange, "POST", "/v1/chat/completions", stream),
    ] {
        let addr = gw.addr();
        let answer = blocking(move || {
            let mut s = connect(&addr);
            let request = format!(
                "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MASTER}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(request.as_bytes()).unwrap();
            // Reads nothing while the gateway's writes wait, longer than send_timeout.
            std::thread::sleep(Duration::from_secs(4));
            read_rest(&mut s, Vec::new(), Duration::from_secs(30))
        })
        .await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.head);
        assert!(answer.closed, "{path}: the connection stayed open");
        assert!(
            answer.body.len() < SIZE,
            "{path}: the whole answer waited for a client that did not read ({} bytes)",
            answer.body.len()
        );
        // The client left; the provider was not slow.
        let log = gw.log();
        assert!(!log.contains("did not answer in time"), "{path}: {log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_a_streamed_answer_gives_its_call_slot_back() {
    const SIZE: usize = 48 * 1024 * 1024;
    const KEY: &str = "aur_slow_clients_one_call_0123456789abcdef";
    let mock = large_answer_mock(SIZE).await;
    // One call at once; a stream that may fall back on a prompt too long is the
    // gateway's own exchange, its answer chunked.
    let yaml = format!(
        "server:\n  send_timeout: 1s\nmodels:\n  fallbacks:\n    gpt-4o-mini: [openai/gpt-4o]\n  fallbacks_on_context_overflow: [gpt-4o-mini]\nauth:\n  keys:\n    - name: one-call\n      sha256: \"{}\"\n      limits: {{concurrent: 1}}\n",
        common::sha256_hex(KEY)
    );
    let gw = gateway(&mock, &yaml);
    let addr = gw.addr();
    let stream =
        r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    // Sent, and never read: the socket stays open, its buffers full.
    let mut silent = connect(&addr);
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{stream}",
        stream.len()
    );
    silent.write_all(request.as_bytes()).unwrap();
    // Its slot comes back once its writes have waited send_timeout.
    let deadline = Instant::now() + Duration::from_secs(20);
    let chat = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
    loop {
        let resp = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(chat)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        resp.bytes().await.unwrap();
        if status == 200 {
            break;
        }
        assert_eq!(status, 429, "only the call at once is refused");
        assert!(Instant::now() < deadline, "the silent client kept its slot");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_slow_reader_gets_a_large_whole_answer_past_the_send_timeout() {
    // A 32 MiB Chat answer, translated for a Messages client and written whole by the
    // gateway: read steadily, it takes seconds, far past send_timeout.
    let content = "x".repeat(32 * 1024 * 1024);
    let answer = serde_json::json!({
        "id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    })
    .to_string();
    let mock = MockUpstream::start(move |_| Reply::json(200, answer.clone())).await;
    let gw = gateway(&mock, "server:\n  send_timeout: 1s\n");
    let addr = gw.addr();
    let body = r#"{"model":"openai/gpt-4o-mini","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    let (answer, took) = blocking(move || {
        let mut s = connect(&addr);
        let request = format!(
            "POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MASTER}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(request.as_bytes()).unwrap();
        let started = Instant::now();
        // 64 KiB every 10 ms: about 6 MiB a second, never pausing long.
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        (Answer::parse(&out, true), started.elapsed())
    })
    .await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert!(
        took > Duration::from_secs(2),
        "read in {took:?}: not slow enough to tell"
    );
    let message: Value = serde_json::from_slice(&answer.body).expect("the whole answer");
    assert_eq!(
        message["content"][0]["text"].as_str().map(str::len),
        Some(32 * 1024 * 1024)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_passthrough_upload_gets_408() {
    let mock = ok_mock().await;
    let gw = gateway(&mock, LIMITS);
    let addr = gw.addr();
    let (answer, took) = blocking(move || {
        let mut s = connect(&addr);
        // 40 body bytes at 300 ms each would take 12 s; the deadline is 2 s.
        let header = format!(
            "POST /p/openai/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MASTER}\r\nContent-Type: application/octet-stream\r\nContent-Length: 40\r\n\r\n"
        );
        s.write_all(header.as_bytes()).unwrap();
        let started = Instant::now();
        let answer = drip(&mut s, &[b'x'; 40]);
        (answer, started.elapsed())
    })
    .await;
    answer.assert_refusal(408, "request_timeout", "server.body_timeout");
    assert!(took < Duration::from_secs(9), "cut after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passthrough_upload_that_goes_silent_gets_408_at_the_deadline() {
    let mock = ok_mock().await;
    let gw = gateway(&mock, LIMITS);
    let addr = gw.addr();
    let (answer, took) = blocking(move || {
        let mut s = connect(&addr);
        let request = format!(
            "POST /p/openai/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MASTER}\r\nContent-Length: 40\r\n\r\nonly-part-of-it"
        );
        let started = Instant::now();
        s.write_all(request.as_bytes()).unwrap();
        // Pingora's own read timeout (60 s) is far past this bound.
        let answer = read_rest(&mut s, Vec::new(), Duration::from_secs(15));
        (answer, started.elapsed())
    })
    .await;
    answer.assert_refusal(408, "request_timeout", "server.body_timeout");
    assert!(took < Duration::from_secs(12), "cut after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_chat_completions_body_gets_408() {
    let mock = ok_mock().await;
    let gw = gateway(&mock, LIMITS);
    let addr = gw.addr();
    let body =
        json!({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
            .to_string();
    let (answer, took) = blocking(move || {
        let mut s = connect(&addr);
        let header = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MASTER}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(header.as_bytes()).unwrap();
        let started = Instant::now();
        let answer = drip(&mut s, body.as_bytes());
        (answer, started.elapsed())
    })
    .await;
    answer.assert_refusal(408, "request_timeout", "server.body_timeout");
    assert!(took < Duration::from_secs(9), "cut after {took:?}");
    assert!(mock.requests().is_empty(), "nothing may reach the provider");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_of_a_few_mebibytes_pass_within_the_deadlines() {
    let mock = ok_mock().await;
    let gw = gateway(&mock, LIMITS);
    let c = client();
    let upload = vec![b'u'; 4 * 1024 * 1024];
    let resp = c
        .post(gw.url("/p/openai/files"))
        .bearer_auth(MASTER)
        .body(upload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(mock.last().body.len(), upload.len());

    let content = "c".repeat(3 * 1024 * 1024);
    let chat =
        json!({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": content}]});
    let resp = c
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    assert_eq!(
        sent["messages"][0]["content"].as_str().map(str::len),
        Some(content.len())
    );
}

/// Resident memory of process `pid`, in bytes.
fn resident_bytes(pid: u32) -> u64 {
    common::process_memory(pid, "VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_unfinished_headers_near_the_cap_hold_about_the_cap_each_and_are_cut_at_the_deadline()
{
    const CONNECTIONS: usize = 200;
    const CAP: usize = 64 * 1024;
    let mock = ok_mock().await;
    let gw = gateway(
        &mock,
        "server:\n  header_timeout: 4s\n  max_header_bytes: 64KiB\n",
    );
    let addr = gw.addr();
    let pid = gw.pid();
    let (grown, answers, took) = blocking(move || {
        // Warm the gateway up (worker threads, allocator arenas) before the baseline.
        for _ in 0..20 {
            let mut s = connect(&addr);
            s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            read_rest(&mut s, Vec::new(), Duration::from_secs(10));
        }
        let before = resident_bytes(pid);
        let unfinished = format!(
            "GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: {}",
            "a".repeat(CAP - 1024)
        );
        let started = Instant::now();
        let mut held: Vec<TcpStream> = (0..CONNECTIONS)
            .map(|_| {
                let mut s = connect(&addr);
                s.write_all(unfinished.as_bytes()).unwrap();
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        let grown = resident_bytes(pid).saturating_sub(before);
        let answers: Vec<Answer> = held
            .iter_mut()
            .map(|s| {
                let left = Duration::from_secs(20).saturating_sub(started.elapsed());
                read_rest(s, Vec::new(), left.max(Duration::from_millis(1)))
            })
            .collect();
        (grown, answers, started.elapsed())
    })
    .await;
    for answer in &answers {
        answer.assert_refusal(408, "request_timeout", "server.header_timeout");
    }
    assert!(took < Duration::from_secs(20), "cut after {took:?}");
    // About the cap per connection (Pingora's header buffer), with room for noise.
    let bound = (2 * CAP * CONNECTIONS) as u64;
    assert!(
        grown < bound,
        "{CONNECTIONS} unfinished headers grew the gateway by {} KiB (bound {} KiB)",
        grown / 1024,
        bound / 1024
    );
    eprintln!(
        "{CONNECTIONS} unfinished headers of {} KiB: gateway RSS grew {} KiB",
        (CAP - 1024) / 1024,
        grown / 1024
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_the_header_limits_for_new_requests() {
    let mock = ok_mock().await;
    let gw = gateway(&mock, LIMITS);
    let addr = gw.addr();
    let send = move |pad: usize| {
        let addr = addr.clone();
        blocking(move || {
            let mut s = connect(&addr);
            s.write_all(padded_header(pad).as_bytes()).unwrap();
            read_rest(&mut s, Vec::new(), Duration::from_secs(10))
        })
    };
    let before = send(12 * 1024).await;
    before.assert_refusal(
        431,
        "request_header_fields_too_large",
        "server.max_header_bytes",
    );
    gw.write_config(
        "server:\n  header_timeout: 1s\n  body_timeout: 2s\n  max_header_bytes: 32KiB\n",
    );
    gw.signal("HUP");
    gw.wait_for_log("config reloaded:", 1).await;
    let after = send(12 * 1024).await;
    assert_eq!(after.status, 200, "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dripped_header_over_https_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let pki = TestPki::new();
    let leaf = pki.issue_leaf();
    let dir = scratch_dir();
    let (cert, key) = leaf.write(&dir);
    let yaml = format!(
        "{LIMITS}  tls:\n    cert_file: {}\n    key_file: {}\n",
        cert.display(),
        key.display()
    );
    let mock = ok_mock().await;
    let gw = gateway_with(&mock, &yaml, &[("AURORA_TLS_LISTEN", common::PICKED_PORT)]);
    let tls_port = gw.tls_port();

    let mut tls = pki.connect(tls_port, b"http/1.1").await;
    let started = Instant::now();
    let mut out = Vec::new();
    for b in padded_header(2).bytes() {
        if tls.write_all(&[b]).await.is_err() || tls.flush().await.is_err() {
            break;
        }
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(DRIP, tls.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                out.extend_from_slice(&buf[..n]);
                break;
            }
            Ok(_) => break,
            Err(_) => {}
        }
    }
    let closed = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out))
        .await
        .is_ok();
    let answer = Answer::parse(&out, closed);
    answer.assert_refusal(408, "request_timeout", "server.header_timeout");
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_listener_cuts_a_dripped_or_oversized_header_as_the_proxy_does() {
    let mock = ok_mock().await;
    let gw = gateway_with(
        &mock,
        LIMITS,
        &[("AURORA_METRICS_LISTEN", common::PICKED_PORT)],
    );
    let addr = gw.metrics_listen();
    let dripped = {
        let addr = addr.clone();
        blocking(move || {
            let started = Instant::now();
            let mut s = connect(&addr);
            let answer = drip(&mut s, padded_header(2).as_bytes());
            (answer, started.elapsed())
        })
        .await
    };
    let (answer, took) = dripped;
    assert_eq!(answer.status, 408, "{}", answer.head);
    assert!(answer.closed, "the connection stayed open");
    assert!(took < Duration::from_secs(8), "cut after {took:?}");
    let oversized = blocking(move || {
        let mut s = connect(&addr);
        let _ = s.write_all(padded_header(HEADER_CAP + 1024).as_bytes());
        read_rest(&mut s, Vec::new(), Duration::from_secs(10))
    })
    .await;
    assert_eq!(oversized.status, 431, "{}", oversized.head);
    assert!(oversized.closed, "the connection stayed open");
}
