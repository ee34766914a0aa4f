//! The HTTPS listener beside the plain one: HTTP/2 negotiated through ALPN, the same
//! routes as plain HTTP, and certificate files re-read on SIGHUP.

mod common;

use std::path::Path;

use common::tls::{Leaf, TestPki};
use common::{client, scratch_dir, sse, Gateway, MockUpstream, Reply, PICKED_PORT};

const MASTER: &str = "gw-master-test-key-0123456789abc";
const PROVIDER_KEY: &str = "sk-fake-provider-key";

/// The TLS listener's port is picked by the harness ([`PICKED_PORT`]).
fn yaml(cert: &Path, key: &Path, mock: &MockUpstream) -> String {
    format!(
        "server:\n  tls:\n    cert_file: {}\n    key_file: {}\nproviders:\n  openai:\n    api_key: {PROVIDER_KEY}\n    base_url: {}\n",
        cert.display(),
        key.display(),
        mock.url("/v1")
    )
}

/// A client trusting only the test CA, reporting the certificate it was shown. Each
/// client has its own connections and session cache, so each makes a full handshake.
fn https_client(pki: &TestPki) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap())
        .resolve("localhost", ([127, 0, 0, 1], 0).into())
        .tls_info(true)
        .build()
        .unwrap()
}

fn peer_certificate(resp: &reqwest::Response) -> Vec<u8> {
    resp.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

async fn health(c: &reqwest::Client, tls_port: u16) -> reqwest::Response {
    let resp = c
        .get(format!("https://localhost:{tls_port}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_listener_speaks_http2_negotiated_by_alpn() {
    let pki = TestPki::new();
    let leaf = pki.issue_leaf();
    let dir = scratch_dir();
    let (cert, key) = leaf.write(&dir);
    let (mut feed, source) = sse::channel();
    let mock = MockUpstream::start(move |r| {
        if r.uri.ends_with("/chat/completions") {
            source.reply()
        } else {
            Reply::json(200, r#"{"data":[]}"#)
        }
    })
    .await;
    let gw = Gateway::start(
        &yaml(&cert, &key, &mock),
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("AURORA_TLS_LISTEN", PICKED_PORT),
        ],
    );
    let tls_port = gw.tls_port();
    let c = https_client(&pki);

    let resp = health(&c, tls_port).await;
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(peer_certificate(&resp), leaf.der);

    let resp = c
        .get(format!("https://localhost:{tls_port}/p/openai/models"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), r#"{"data":[]}"#);
    assert_eq!(
        mock.last().header("authorization"),
        Some(format!("Bearer {PROVIDER_KEY}").as_str())
    );

    // SSE over an HTTP/2 stream arrives event by event and ends cleanly.
    feed.send(0);
    let resp = c
        .post(format!(
            "https://localhost:{tls_port}/p/openai/chat/completions"
        ))
        .bearer_auth(MASTER)
        .body(r#"{"stream":true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let stream = sse::SseClient::start(resp);
    stream.wait_events(1).await;
    for n in 1..4 {
        feed.send(n);
        stream.wait_events(n + 1).await;
    }
    feed.close();
    let (text, end) = stream.finish().await;
    assert_eq!(end, Ok(()));
    assert_eq!(text, sse::events(4));

    // The plain listener is unchanged.
    let plain = client().get(gw.url("/health")).send().await.unwrap();
    assert_eq!(plain.version(), reqwest::Version::HTTP_11);
    assert_eq!(plain.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rereads_the_certificate_files() {
    let pki = TestPki::new();
    let first = pki.issue_leaf();
    let dir = scratch_dir();
    let (cert, key) = first.write(&dir);
    let mock = MockUpstream::start(|_| Reply::json(200, "{}")).await;
    let gw = Gateway::start(
        &yaml(&cert, &key, &mock),
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("AURORA_TLS_LISTEN", PICKED_PORT),
        ],
    );
    let tls_port = gw.tls_port();
    let before = https_client(&pki);
    assert_eq!(
        peer_certificate(&health(&before, tls_port).await),
        first.der
    );

    let second = pki.issue_leaf();
    second.write(&dir);
    gw.signal("HUP");
    gw.wait_for_log("config reloaded:", 1).await;
    let resp = health(&https_client(&pki), tls_port).await;
    assert_eq!(
        peer_certificate(&resp),
        second.der,
        "new handshakes use the new pair"
    );
    // A connection made before the reload keeps working.
    assert_eq!(health(&before, tls_port).await.status(), 200);

    // A certificate and a key that do not belong together are refused; the served
    // pair stays.
    let mismatched = Leaf {
        cert_pem: first.cert_pem.clone(),
        key_pem: second.key_pem.clone(),
        der: Vec::new(),
    };
    mismatched.write(&dir);
    gw.signal("HUP");
    let log = gw.wait_for_log("config reload failed", 1).await;
    assert!(log.contains("does not fit"), "{log}");
    let resp = health(&https_client(&pki), tls_port).await;
    assert_eq!(peer_certificate(&resp), second.der);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_calls_over_http2_are_routed_translated_and_streamed() {
    let pki = TestPki::new();
    let leaf = pki.issue_leaf();
    let dir = scratch_dir();
    let (cert, key) = leaf.write(&dir);
    let mock = MockUpstream::start(|r| {
        let streaming = r.body.windows(13).any(|w| w == b"\"stream\":true");
        match (r.uri.as_str(), streaming) {
            ("/v1/messages", false) => Reply::json(200, common::fixture("anthropic/messages.json")),
            ("/v1/messages", true) => Reply::Stream {
                status: 200,
                headers: vec![("content-type".into(), "text/event-stream".into())],
                chunks: vec![(
                    std::time::Duration::ZERO,
                    common::fixture("anthropic/messages_stream.txt").into(),
                )],
            },
            _ => Reply::json(404, "{}"),
        }
    })
    .await;
    let yaml = format!(
        "server:\n  tls:\n    cert_file: {}\n    key_file: {}\nproviders:\n  anthropic:\n    api_key: sk-ant-fake-h2\n    base_url: {}\n",
        cert.display(),
        key.display(),
        mock.url("/v1")
    );
    let gw = Gateway::start(
        &yaml,
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("AURORA_TLS_LISTEN", PICKED_PORT),
        ],
    );
    let tls_port = gw.tls_port();
    let c = https_client(&pki);
    let url = format!("https://localhost:{tls_port}/v1/chat/completions");
    let resp = c
        .post(&url)
        .bearer_auth(MASTER)
        .body(r#"{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let completion: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        completion["choices"][0]["message"]["content"],
        "Hello World"
    );
    let sent = mock.last();
    assert_eq!(
        sent.header("content-length"),
        Some(sent.body.len().to_string().as_str())
    );

    let resp = c
        .post(&url)
        .bearer_auth(MASTER)
        // A body of unknown length: HTTP/2 frames it without a Content-Length.
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            vec![
                Ok::<_, std::io::Error>(bytes::Bytes::from_static(
                    br#"{"model":"claude-sonnet-4-5","#,
                )),
                Ok(bytes::Bytes::from_static(
                    br#""stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
                )),
            ],
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("Hello World"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let sent = mock.last();
    assert_eq!(
        sent.header("content-length"),
        Some(sent.body.len().to_string().as_str())
    );
    drop(gw);
}

/// Reads until the gateway closes the connection; `false` when it is still open after
/// `within`.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    within: std::time::Duration,
) -> bool {
    use tokio::io::AsyncReadExt;
    let mut scratch = [0u8; 4096];
    let read_to_end = async {
        loop {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read_to_end).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_silent_or_idle_is_closed_at_the_keepalive_timeout() {
    use tokio::io::AsyncWriteExt;
    let pki = TestPki::new();
    let leaf = pki.issue_leaf();
    let dir = scratch_dir();
    let (cert, key) = leaf.write(&dir);
    let mock = MockUpstream::start(|_| Reply::json(200, "{}")).await;
    let gw = Gateway::start(
        &yaml(&cert, &key, &mock).replace("server:\n", "server:\n  keepalive_timeout: 1s\n"),
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("AURORA_TLS_LISTEN", PICKED_PORT),
        ],
    );
    let bound = std::time::Duration::from_secs(10);
    // Connected, and never a byte of the HTTP/2 preface.
    let mut silent = pki.connect(gw.tls_port(), b"h2").await;
    assert_eq!(silent.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    assert!(
        closed_within(&mut silent, bound).await,
        "a connection that never sent its preface was kept"
    );
    // The preface and its settings, then no stream ever.
    let mut idle = pki.connect(gw.tls_port(), b"h2").await;
    idle.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    idle.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    idle.flush().await.unwrap();
    assert!(
        closed_within(&mut idle, bound).await,
        "an HTTP/2 connection with no stream was kept past the keep-alive timeout"
    );
}
