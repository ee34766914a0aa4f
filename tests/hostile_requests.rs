//! Requests an edge proxy meets from broken clients and attackers: bodies that break
//! mid-read, framing that two ends could read differently, a `model` given twice,
//! `Expect: 100-continue` followed by a failure, and provider 1xx answers. Raw
//! sockets, so the bytes are exactly the ones under test.

mod common;

use std::time::Duration;

use common::{fixture, Gateway, MockUpstream, Recorded, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MASTER: &str = "gw-master-hostile-test-012345678";
const OAI_KEY: &str = "sk-oai-provider-hostile-test";
const ANT_KEY: &str = "sk-ant-provider-hostile-test";

/// OpenAI and Anthropic both served by `base`.
fn gateway_at(base: &str) -> Gateway {
    Gateway::start(
        "",
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("OPENAI_API_KEY", OAI_KEY),
            ("OPENAI_BASE_URL", base),
            ("ANTHROPIC_API_KEY", ANT_KEY),
            ("ANTHROPIC_BASE_URL", base),
        ],
    )
}

/// OpenAI alone at `base`, with `yaml` as the config file.
fn openai_gateway(yaml: &str, base: &str) -> Gateway {
    Gateway::start(
        yaml,
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("OPENAI_API_KEY", OAI_KEY),
            ("OPENAI_BASE_URL", base),
        ],
    )
}

/// POSTs `body` as JSON to `path` with the gateway key.
async fn post_json(gw: &Gateway, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    common::client()
        .post(gw.url(path))
        .bearer_auth(MASTER)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

fn provider_like(rec: &Recorded) -> Reply {
    match rec.uri.as_str() {
        "/v1/messages" => Reply::json(200, fixture("anthropic/messages.json")),
        _ => Reply::json(200, fixture("openai/chat_completion.json")),
    }
}

/// Reads until the gateway closes the connection or `wait` passes; the second value
/// says whether it closed.
async fn read_until_close(sock: &mut TcpStream, wait: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let closed = tokio::time::timeout(wait, async {
        loop {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

/// A connection to the gateway that has sent `request`.
async fn sent(gw: &Gateway, request: &str) -> TcpStream {
    let mut sock = TcpStream::connect(gw.addr()).await.unwrap();
    sock.write_all(request.as_bytes()).await.unwrap();
    sock
}

/// What the gateway sends next, after at most 10 s.
async fn next_bytes(sock: &mut TcpStream) -> String {
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut buf))
        .await
        .expect("the gateway said nothing for 10 s")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn head(method: &str, path: &str, extra: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {MASTER}\r\n{extra}\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http10_client_gets_its_answer_without_chunked_framing_and_then_the_close() {
    // A provider answering chunked, as streams and many JSON answers come.
    let answer = fixture("openai/chat_completion.json");
    let mock = MockUpstream::start(move |rec: &Recorded| {
        let body = if rec.uri == "/v1/messages" {
            fixture("anthropic/messages.json")
        } else {
            answer.clone()
        };
        Reply::Stream {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            chunks: vec![(Duration::ZERO, body.into())],
        }
    })
    .await;
    let gw = gateway_at(&mock.url("/v1"));
    let chat = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let messages = r#"{"model":"openai/gpt-4o-mini","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    // Passed as the provider sent it, and translated by the gateway.
    for (path, body, answered) in [
        ("/p/openai/chat/completions", chat, "chat.completion"),
        ("/v1/chat/completions", chat, "chat.completion"),
        ("/v1/messages", messages, r#""type":"message""#),
    ] {
        let request = format!(
            "POST {path} HTTP/1.0\r\nhost: gw\r\nauthorization: Bearer {MASTER}\r\n\
             connection: keep-alive\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut sock = sent(&gw, &request).await;
        let (text, closed) = read_until_close(&mut sock, Duration::from_secs(10)).await;
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        // Said as it is: the connection closes after the answer.
        assert!(
            head.to_ascii_lowercase().contains("connection: close"),
            "{path}: {head}"
        );
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "{path}: {head}"
        );
        assert!(
            !head.to_ascii_lowercase().contains("transfer-encoding"),
            "{path}: {head}"
        );
        assert!(closed, "{path}: the answer's end is the connection's close");
        assert!(
            body.trim_start().starts_with('{'),
            "{path}: no chunk sizes: {body}"
        );
        assert!(body.contains(answered), "{path}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_read_error_on_v1_closes_the_connection_so_nothing_is_smuggled() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway_at(&mock.url("/v1"));
    for path in ["/v1/chat/completions", "/v1/messages"] {
        let smuggled = head("GET", "/p/openai/smuggled", "");
        let request = format!(
            "{}zz\r\n{smuggled}",
            head("POST", path, "transfer-encoding: chunked\r\n")
        );
        let mut sock = sent(&gw, &request).await;
        let (answer, closed) = read_until_close(&mut sock, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{path}: {answer}"
        );
        assert!(
            closed,
            "{path}: the connection stayed open after a broken body"
        );
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{path}: {answer}");
    }
    assert!(
        mock.requests().is_empty(),
        "a request reached the provider: {:?}",
        mock.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_the_limit_on_v1_closes_the_connection() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = openai_gateway("server:\n  body_size_limit: 1KiB\n", &mock.url("/v1"));
    // Chunked, so the limit is only found while reading.
    let chunk = "x".repeat(1500);
    let request = format!(
        "{}{:x}\r\n{chunk}\r\n{}",
        head(
            "POST",
            "/v1/chat/completions",
            "transfer-encoding: chunked\r\n"
        ),
        chunk.len(),
        head("GET", "/p/openai/smuggled", "")
    );
    let mut sock = sent(&gw, &request).await;
    let (answer, closed) = read_until_close(&mut sock, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(closed, "the connection stayed open: {answer}");
    assert!(mock.requests().is_empty());
}

/// Sends `body` to `path` with `Expect: 100-continue`, the way curl does, and returns
/// everything after the interim answer.
async fn expect_continue(gw: &Gateway, path: &str, body: &[u8]) -> String {
    let request = head(
        "POST",
        path,
        &format!(
            "content-type: application/json\r\ncontent-length: {}\r\nexpect: 100-continue\r\n",
            body.len()
        ),
    );
    let mut sock = sent(gw, &request).await;
    assert!(next_bytes(&mut sock).await.starts_with("HTTP/1.1 100"));
    sock.write_all(body).await.unwrap();
    read_until_close(&mut sock, Duration::from_secs(10)).await.0
}

/// One whole HTTP answer from `sock` (framed as a request is: by its length or chunks).
async fn read_answer(sock: &mut TcpStream) -> Vec<u8> {
    read_request(sock).await.expect("an answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_asked_for_100_continue_is_kept_for_the_next_request() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway_at(&mock.url("/v1"));
    let body = br#"{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let expecting = head(
        "POST",
        "/v1/chat/completions",
        &format!(
            "content-type: application/json\r\ncontent-length: {}\r\nexpect: 100-continue\r\n",
            body.len()
        ),
    );
    let mut sock = sent(&gw, &expecting).await;
    assert!(next_bytes(&mut sock).await.starts_with("HTTP/1.1 100"));
    sock.write_all(body).await.unwrap();
    let answer = read_answer(&mut sock).await;
    let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(!text.contains("connection: close"), "{text}");
    // The same connection carries the next call (curl's next upload, an SDK's pool).
    let plain = head(
        "POST",
        "/v1/chat/completions",
        &format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        ),
    );
    sock.write_all(plain.as_bytes()).await.unwrap();
    sock.write_all(body).await.unwrap();
    let again = read_answer(&mut sock).await;
    assert!(
        again.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&again)
    );
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_then_unreachable_provider_still_gets_the_error_envelope() {
    // Nothing listens on port 9: the provider cannot be reached.
    let gw = gateway_at("http://127.0.0.1:9/v1");
    let small = br#"{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let padding = "x".repeat(100 * 1024);
    let large = format!(
        r#"{{"model":"openai/gpt-4o-mini","messages":[{{"role":"user","content":"{padding}"}}]}}"#
    );
    let translated =
        br#"{"model":"anthropic/claude-x","messages":[{"role":"user","content":"hi"}]}"#;
    // A small body is proxied by the client's own session, a large one by a subrequest,
    // and a translated whole answer by the gateway's own exchange.
    for (path, body) in [
        ("/v1/chat/completions", small.to_vec()),
        ("/v1/chat/completions", large.into_bytes()),
        ("/v1/chat/completions", translated.to_vec()),
    ] {
        let answer = expect_continue(&gw, path, &body).await;
        assert!(answer.starts_with("HTTP/1.1 502"), "{path}: {answer}");
        assert!(answer.contains(r#""type":"provider_error""#), "{answer}");
    }
    // Access lines are written by the log's own thread, just after each answer.
    let log = gw.wait_for_log("method=POST", 3).await;
    let access: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("aurora::access") && l.contains("method=POST"))
        .collect();
    assert_eq!(access.len(), 3, "{log}");
    assert!(access.iter().all(|l| l.contains(" status=502 ")), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_duplicate_content_lengths_reach_the_provider_as_one() {
    let provider = raw_provider(json_reply("", r#"{"ok":true}"#)).await;
    let gw = gateway_at(&provider.base);
    let body = r#"{"model":"gpt-4o-mini","messages":[]}"#;
    // A body that streams, and a Chat body read whole first (to ask for a stream's
    // usage), alike.
    for path in ["/p/openai/embeddings", "/p/openai/chat/completions"] {
        let request = format!(
            "{}{body}",
            head(
                "POST",
                path,
                &format!(
                    "content-type: application/json\r\ncontent-length: {0}\r\ncontent-length: {0}\r\n",
                    body.len()
                )
            )
        );
        let mut sock = sent(&gw, &request).await;
        let answer = next_bytes(&mut sock).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let sent = provider.received.lock().unwrap().pop().unwrap();
        let lower = sent.to_ascii_lowercase();
        let lengths = lower
            .lines()
            .filter(|l| l.starts_with("content-length:"))
            .count();
        assert_eq!(lengths, 1, "{sent}");
        assert!(!lower.contains("transfer-encoding"), "{sent}");
        assert!(sent.ends_with(body), "{sent}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_coding_other_than_chunked_is_501() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway_at(&mock.url("/v1"));
    for path in ["/p/openai/chat/completions", "/v1/chat/completions"] {
        let request = format!(
            "{}2\r\n{{}}\r\n0\r\n\r\n",
            head("POST", path, "transfer-encoding: gzip, chunked\r\n")
        );
        let mut sock = sent(&gw, &request).await;
        let (answer, _) = read_until_close(&mut sock, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 501"), "{path}: {answer}");
        assert!(answer.contains("not_implemented"), "{answer}");
    }
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_framed_both_by_length_and_by_chunks_goes_by_its_chunks_and_its_connection_closes(
) {
    // Pingora drops the length when chunks frame the body (RFC 9112 §6.3) and keeps no
    // such connection alive (§6.1): the provider never gets a length the chunks gainsay,
    // and nothing after the body is read as another request.
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway_at(&mock.url("/v1"));
    let body = r#"{"model":"gpt-4o-mini","x":1}"#;
    let request = format!(
        "{}{:x}\r\n{body}\r\n0\r\n\r\n",
        head(
            "POST",
            "/p/openai/chat/completions",
            "content-length: 4\r\ntransfer-encoding: chunked\r\n"
        ),
        body.len()
    );
    let mut sock = sent(&gw, &request).await;
    let (answer, closed) = read_until_close(&mut sock, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed, "the connection was kept");
    let got = mock.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, body.as_bytes());
    assert_ne!(got[0].header("content-length"), Some("4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_model_key_is_refused_before_routing() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway_at(&mock.url("/v1"));
    let body = r#"{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"model":"anthropic/claude-opus-4"}"#;
    for path in ["/v1/chat/completions", "/v1/messages"] {
        let resp = post_json(&gw, path, body).await;
        assert_eq!(resp.status(), 400, "{path}");
        let text = resp.text().await.unwrap();
        assert!(text.contains("more than once"), "{text}");
    }
    assert!(mock.requests().is_empty());
}

/// A client body of `len` bytes for `/v1/chat/completions`, padded to the byte.
fn chat_body_of(len: usize) -> String {
    let frame = r#"{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":""}]}"#;
    let padding = "y".repeat(len - frame.len());
    format!(
        r#"{{"model":"openai/gpt-4o-mini","messages":[{{"role":"user","content":"{padding}"}}]}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_body_replaces_the_replayed_one_exactly_around_the_replay_buffer_size() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway_at(&mock.url("/v1"));
    for len in [64 * 1024 - 1, 64 * 1024, 64 * 1024 + 1] {
        let body = chat_body_of(len);
        assert_eq!(body.len(), len);
        // Sent in many small chunks: Pingora's replay must not turn into many copies.
        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = body
            .as_bytes()
            .chunks(997)
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect();
        let resp = post_json(
            &gw,
            "/v1/chat/completions",
            reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)),
        )
        .await;
        assert_eq!(resp.status(), 200, "{len}");
        let sent = mock.last();
        let expected = body.replacen("openai/gpt-4o-mini", "gpt-4o-mini", 1);
        assert_eq!(sent.body.len(), expected.len(), "{len}");
        assert!(sent.body == expected.as_bytes(), "{len}: body differs");
        assert_eq!(
            sent.header("content-length"),
            Some(expected.len().to_string().as_str())
        );
    }
}

/// A provider on a raw socket: it keeps each request's bytes exactly as received (hyper
/// would merge or refuse what this file tests) and answers with `reply`, which may
/// begin with `1xx` answers hyper cannot send.
struct RawProvider {
    base: String,
    received: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _task: tokio::task::JoinHandle<()>,
}

async fn raw_provider(reply: String) -> RawProvider {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = received.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (reply, log) = (reply.clone(), log.clone());
            tokio::spawn(async move {
                let Some(got) = read_request(&mut sock).await else {
                    return;
                };
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&got).into_owned());
                let _ = sock.write_all(reply.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    RawProvider {
        base,
        received,
        _task: task,
    }
}

/// A complete JSON answer, preceded by `interim` (raw `1xx` answers, or nothing).
fn json_reply(interim: &str, body: &str) -> String {
    format!(
        "{interim}HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_early_hints_pass_the_translation_untouched() {
    let provider = raw_provider(json_reply(
        "HTTP/1.1 103 Early Hints\r\nlink: </hint>; rel=preload\r\n\r\n",
        &fixture("anthropic/messages.json"),
    ))
    .await;
    let gw = gateway_at(&provider.base);
    let resp = post_json(
        &gw,
        "/v1/chat/completions",
        r#"{"model":"anthropic/claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion", "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello World");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_early_hints_reach_the_client_without_its_cookies_or_hop_by_hop_headers() {
    let provider = raw_provider(json_reply(
        "HTTP/1.1 103 Early Hints\r\nlink: </hint>; rel=preload\r\nset-cookie: provider_session=s3cret\r\n\
         keep-alive: timeout=5\r\n\r\n",
        &fixture("openai/chat_completion.json"),
    ))
    .await;
    let gw = gateway_at(&provider.base);
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let request = format!(
        "{}{body}",
        head(
            "POST",
            "/p/openai/chat/completions",
            &format!(
                "content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                body.len()
            )
        )
    );
    let mut sock = sent(&gw, &request).await;
    let (text, _) = read_until_close(&mut sock, Duration::from_secs(10)).await;
    let (hints, answer) = text.split_once("\r\n\r\n").unwrap();
    assert!(hints.starts_with("HTTP/1.1 103"), "{text}");
    assert!(hints.contains("link: </hint>"), "{hints}");
    let lower = hints.to_ascii_lowercase();
    assert!(
        !lower.contains("set-cookie") && !lower.contains("keep-alive"),
        "{hints}"
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http10_client_gets_no_interim_answer_and_its_expect_is_not_passed_on() {
    let provider = raw_provider(json_reply(
        "HTTP/1.1 103 Early Hints\r\nlink: </hint>; rel=preload\r\n\r\n",
        &fixture("openai/chat_completion.json"),
    ))
    .await;
    let gw = gateway_at(&provider.base);
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let request = format!(
        "POST /p/openai/chat/completions HTTP/1.0\r\nhost: gw\r\nauthorization: Bearer {MASTER}\r\n\
         expect: 100-continue\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut sock = sent(&gw, &request).await;
    let (text, closed) = read_until_close(&mut sock, Duration::from_secs(10)).await;
    assert!(closed, "{text}");
    // HTTP/1.0 knows no interim answer: the first status line is the answer's.
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text}"
    );
    assert!(!text.contains(" 103 ") && !text.contains(" 100 "), "{text}");
    assert!(text.contains("chat.completion"), "{text}");
    let received = provider.received.lock().unwrap().clone();
    let asked = received
        .first()
        .expect("the provider was asked")
        .to_ascii_lowercase();
    assert!(!asked.contains("expect:"), "{asked}");
}

/// Reads one request (header and `Content-Length` body) from `sock`; `None` when the
/// connection ends first.
async fn read_request(sock: &mut TcpStream) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
        if let Some(end) = text.find("\r\n\r\n") {
            if text[..end].contains("transfer-encoding: chunked") {
                if text.ends_with("\r\n0\r\n\r\n") {
                    return Some(got);
                }
                continue;
            }
            let len = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return Some(got);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_answer_on_a_pooled_connection_the_provider_dropped_is_asked_again() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    // Each connection answers its first request, keeps alive, and drops the next one
    // unanswered: the gateway's pooled connection fails before any answer.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let (connections, answered) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (c, a) = (connections.clone(), answered.clone());
    let reply = json_reply("", &fixture("anthropic/messages.json"));
    let _provider = tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let (reply, a) = (reply.clone(), a.clone());
            tokio::spawn(async move {
                if read_request(&mut sock).await.is_some() {
                    // Counted before the answer leaves: once written, the test may see
                    // it before this task runs again.
                    a.fetch_add(1, Ordering::SeqCst);
                    if sock.write_all(reply.as_bytes()).await.is_ok() {
                        read_request(&mut sock).await;
                    }
                }
            });
        }
    });
    let gw = gateway_at(&base);
    for _ in 0..3 {
        let (status, v) = ask_whole(&gw, "/v1/chat/completions", "anthropic/claude-x").await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["object"], "chat.completion", "{v}");
    }
    // The second and third calls each met a dropped connection, then a new one.
    assert_eq!(answered.load(Ordering::SeqCst), 3);
    assert_eq!(connections.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_answer_call_a_pooled_connection_was_reset_on_is_not_sent_twice() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    // Each connection answers its first request, keeps alive, reads the next one whole
    // and resets the connection (an overloaded provider, a balancer cutting it): the
    // provider may have been at work on it, so the call is not made again.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let (connections, received) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (c, r) = (connections.clone(), received.clone());
    let reply = json_reply("", &fixture("anthropic/messages.json"));
    let _provider = tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let (reply, r) = (reply.clone(), r.clone());
            tokio::spawn(async move {
                if read_request(&mut sock).await.is_none() {
                    return;
                }
                r.fetch_add(1, Ordering::SeqCst);
                if sock.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
                if read_request(&mut sock).await.is_some() {
                    r.fetch_add(1, Ordering::SeqCst);
                    // Closed with unread state discarded: a reset, not an orderly end.
                    let _ = sock.set_zero_linger();
                }
            });
        }
    });
    let gw = gateway_at(&base);
    let (status, v) = ask_whole(&gw, "/v1/chat/completions", "anthropic/claude-x").await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = ask_whole(&gw, "/v1/chat/completions", "anthropic/claude-x").await;
    assert_eq!(status, 502, "{v}");
    assert_eq!(
        received.load(Ordering::SeqCst),
        2,
        "the call was made again"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

/// Asks `path` for a whole (not streamed) answer from `model`.
async fn ask_whole(gw: &Gateway, path: &str, model: &str) -> (u16, serde_json::Value) {
    let body = format!(
        r#"{{"model":"{model}","max_tokens":16,"messages":[{{"role":"user","content":"hi"}}]}}"#
    );
    let resp = post_json(gw, path, body).await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untranslatable_whole_answer_is_502_in_the_route_envelope_not_200() {
    let provider = raw_provider(json_reply("", r#"{"unexpected":true}"#)).await;
    let gw = gateway_at(&provider.base);
    let (status, v) = ask_whole(&gw, "/v1/chat/completions", "anthropic/claude-x").await;
    assert_eq!(status, 502, "{v}");
    assert_eq!(v["error"]["type"], "provider_error", "{v}");
    let (status, v) = ask_whole(&gw, "/v1/messages", "openai/gpt-4o-mini").await;
    assert_eq!(status, 502, "{v}");
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "api_error", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_hanging_up_mid_answer_is_502_not_200() {
    let cut = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"id\":\"msg_1\",\"type\":\"mess";
    let provider = raw_provider(cut.to_string()).await;
    let gw = gateway_at(&provider.base);
    let (status, v) = ask_whole(&gw, "/v1/chat/completions", "anthropic/claude-x").await;
    assert_eq!(status, 502, "{v}");
    assert_eq!(v["error"]["type"], "provider_error", "{v}");
    let (status, v) = ask_whole(&gw, "/v1/messages", "openai/gpt-4o-mini").await;
    assert_eq!(status, 502, "{v}");
    assert_eq!(v["type"], "error", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_errors_on_whole_answers_keep_status_and_retry_after() {
    let reply = "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nretry-after: 7\r\ncontent-length: 74\r\n\r\n{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"slow down\"}}";
    let provider = raw_provider(reply.to_string()).await;
    let gw = gateway_at(&provider.base);
    let resp = post_json(
        &gw,
        "/v1/chat/completions",
        r#"{"model":"anthropic/claude-x","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
    assert_eq!(v["error"]["message"], "slow down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_past_the_buffer_budget_is_refused_before_any_100_continue() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = openai_gateway("server:\n  max_buffered_bytes: 10KiB\n", &mock.url("/v1"));
    let request = head(
        "POST",
        "/v1/chat/completions",
        &format!(
            "content-type: application/json\r\ncontent-length: {}\r\nexpect: 100-continue\r\n",
            20 * 1024
        ),
    );
    // Only the header goes: a client waiting for `100 Continue` sends nothing more.
    let mut sock = sent(&gw, &request).await;
    let answer = read_until_close(&mut sock, Duration::from_secs(10)).await.0;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(!answer.contains("HTTP/1.1 100"), "{answer}");
    assert!(answer.contains("gateway_overloaded"), "{answer}");
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_the_buffer_budget_get_503_with_retry_after() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = openai_gateway("server:\n  max_buffered_bytes: 100KiB\n", &mock.url("/v1"));
    let request_for = |body: &str| {
        format!(
            "{}{body}",
            head(
                "POST",
                "/v1/chat/completions",
                &format!(
                    "content-type: application/json\r\ncontent-length: {}\r\n",
                    body.len()
                )
            )
        )
    };
    // One upload of 90 KiB, held open near its end: the gateway holds the 80 KiB it
    // has.
    let held = chat_body_of(90 * 1024);
    let held_request = request_for(&held);
    let mut slow = TcpStream::connect(gw.addr()).await.unwrap();
    let split = held_request.len() - 10 * 1024;
    slow.write_all(&held_request.as_bytes()[..split])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let second = chat_body_of(50 * 1024);
    let second_request = format!(
        "{}{second}",
        head(
            "POST",
            "/v1/chat/completions",
            &format!("connection: close\r\ncontent-length: {}\r\n", second.len())
        )
    );
    // A loaded machine may take a moment to reach the first upload's header; until
    // then a second upload still fits.
    let mut answer = String::new();
    for _ in 0..20 {
        let mut sock = sent(&gw, &second_request).await;
        answer = read_until_close(&mut sock, Duration::from_secs(5)).await.0;
        if !answer.starts_with("HTTP/1.1 200") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(answer.contains("gateway_overloaded"), "{answer}");

    // Once the first upload is done, its share is given back.
    slow.write_all(&held_request.as_bytes()[split..])
        .await
        .unwrap();
    assert!(next_bytes(&mut slow).await.starts_with("HTTP/1.1 200"));
    drop(slow);
    let resp = post_json(&gw, "/v1/chat/completions", second).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_declared_and_not_sent_keeps_no_one_out() {
    // A client declares a 90 KiB body of the 100 KiB the gateway may hold, and sends
    // none of it: promised bytes hold nothing, so another caller's 50 KiB still fits.
    let mock = MockUpstream::start(provider_like).await;
    let gw = openai_gateway("server:\n  max_buffered_bytes: 100KiB\n", &mock.url("/v1"));
    let promise = head(
        "POST",
        "/v1/chat/completions",
        &format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            90 * 1024
        ),
    );
    let mut promised = Vec::new();
    for _ in 0..3 {
        promised.push(sent(&gw, &promise).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = post_json(&gw, "/v1/chat/completions", chat_body_of(50 * 1024)).await;
    assert_eq!(resp.status(), 200);
    drop(promised);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_translated_answers_reuse_pooled_upstream_connections() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway_at(&mock.url("/v1"));
    for _ in 0..10 {
        let (status, v) = ask_whole(&gw, "/v1/chat/completions", "anthropic/claude-x").await;
        assert_eq!(status, 200, "{v}");
    }
    assert_eq!(mock.requests().len(), 10);
    assert_eq!(
        mock.connections(),
        1,
        "each answer opened its own upstream connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_names_leave_as_http2_names_them_whatever_the_sender_spelled() {
    let body = r#"{"ok":true}"#;
    let provider = raw_provider(format!(
        "HTTP/1.1 200 OK\r\nCONTENT-TYPE: application/json\r\nCF-RAY: 8f00-LHR\r\n\
         X-Request-Id: req_provider\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ))
    .await;
    let gw = gateway_at(&provider.base);
    let request = format!(
        "POST /p/openai/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {MASTER}\r\n\
         X-Stainless-Lang: python\r\nCONTENT-TYPE: application/json\r\nContent-Length: 2\r\n\
         Connection: close\r\n\r\n{{}}"
    );
    let answer = common::raw_request(&gw.addr(), &request).await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(answer.body, body.as_bytes());
    // Standard names in title case, the rest in lower case, as sent or not.
    for line in [
        "\r\nContent-Type: application/json\r\n",
        "\r\ncf-ray: 8f00-LHR\r\n",
        "\r\nx-request-id: req_provider\r\n",
        "\r\nx-aurora-request-id: ",
    ] {
        assert!(answer.head.contains(line), "{line:?} in {}", answer.head);
    }
    let sent = provider.received.lock().unwrap()[0].clone();
    for line in [
        "\r\nContent-Type: application/json\r\n",
        "\r\nx-stainless-lang: python\r\n",
        "\r\nauthorization: Bearer sk-oai-provider-hostile-test\r\n",
    ] {
        assert!(sent.contains(line), "{line:?} in {sent}");
    }
    assert!(!sent.contains(MASTER), "the gateway key went upstream");
}
