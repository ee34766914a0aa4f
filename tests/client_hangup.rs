//! A client that hangs up while the provider is still silent: the gateway closes its
//! upstream connection at once, so the provider stops generating (and billing), on
//! every path a `/v1` request can take — a small body proxied by the client's own
//! session, a large one re-issued as a subrequest, a whole answer translated before it
//! is sent, a stream.

mod common;

use std::time::{Duration, Instant};

use common::Gateway;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const MASTER: &str = "gw-master-hangup-test-0123456789";

/// A provider that reads each request whole, says so, and never answers; it reports
/// when the gateway closes the connection.
struct SilentProvider {
    base: String,
    received: mpsc::UnboundedReceiver<()>,
    closed: mpsc::UnboundedReceiver<Instant>,
}

async fn silent_provider() -> SilentProvider {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let (got_tx, received) = mpsc::unbounded_channel();
    let (closed_tx, closed) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (got_tx, closed_tx) = (got_tx.clone(), closed_tx.clone());
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = vec![0u8; 64 * 1024];
                let mut announced = false;
                loop {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => {
                            let _ = closed_tx.send(Instant::now());
                            return;
                        }
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                    if !announced && request_complete(&got) {
                        announced = true;
                        let _ = got_tx.send(());
                    }
                }
            });
        }
    });
    SilentProvider {
        base,
        received,
        closed,
    }
}

/// A gateway whose OpenAI and Anthropic providers are `provider`, configured by `yaml`.
fn gateway_for(provider: &SilentProvider, yaml: &str) -> Gateway {
    gateway_with(provider, yaml, &[])
}

/// [`gateway_for`] with `env` added.
fn gateway_with(provider: &SilentProvider, yaml: &str, env: &[(&str, &str)]) -> Gateway {
    let mut all = vec![
        ("AURORA_MASTER_KEY", MASTER),
        ("OPENAI_API_KEY", "sk-oai-hangup-test"),
        ("OPENAI_BASE_URL", provider.base.as_str()),
        ("ANTHROPIC_API_KEY", "sk-ant-hangup-test"),
        ("ANTHROPIC_BASE_URL", provider.base.as_str()),
    ];
    all.extend_from_slice(env);
    Gateway::start(yaml, &all)
}

fn request_complete(got: &[u8]) -> bool {
    let text = String::from_utf8_lossy(got).to_ascii_lowercase();
    let Some(end) = text.find("\r\n\r\n") else {
        return false;
    };
    let len = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    got.len() >= end + 4 + len
}

fn chat(model: &str, stream: bool, padding: usize) -> String {
    format!(
        r#"{{"model":"{model}","stream":{stream},"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "p".repeat(padding)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_closes_soon_after_the_client_hangs_up_on_every_v1_path() {
    let mut provider = silent_provider().await;
    let gw = gateway_for(&provider, "");
    let cases = [
        (
            "small body, same format",
            chat("openai/gpt-4o-mini", false, 100),
        ),
        (
            "large body, same format",
            chat("openai/gpt-4o-mini", false, 200_000),
        ),
        (
            "small body, translated whole",
            chat("anthropic/claude-x", false, 100),
        ),
        (
            "large body, translated whole",
            chat("anthropic/claude-x", false, 200_000),
        ),
        (
            "small body, translated stream",
            chat("anthropic/claude-x", true, 100),
        ),
        (
            "large body, translated stream",
            chat("anthropic/claude-x", true, 200_000),
        ),
    ];
    for (case, body) in cases {
        let mut sock = TcpStream::connect(gw.addr()).await.unwrap();
        let request = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {MASTER}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        sock.write_all(request.as_bytes()).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), provider.received.recv())
            .await
            .unwrap_or_else(|_| panic!("{case}: the provider never got the request"));
        let hung_up = Instant::now();
        drop(sock);
        let closed = tokio::time::timeout(Duration::from_secs(10), provider.closed.recv())
            .await
            .unwrap_or_else(|_| panic!("{case}: upstream still open 10 s after the client left"))
            .unwrap();
        let after = closed.saturating_duration_since(hung_up);
        // The gateway looks every 100 ms; the margin is for a loaded test machine.
        assert!(
            after < Duration::from_secs(2),
            "{case}: closed after {after:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_during_its_body_is_logged_as_gone_and_sent_nothing() {
    let mut provider = silent_provider().await;
    let gw = gateway_for(&provider, "");
    for (case, path) in [
        ("a /v1 body", "/v1/chat/completions"),
        (
            "a /p/ Chat body held for its usage",
            "/p/openai/chat/completions",
        ),
    ] {
        let mut sock = TcpStream::connect(gw.addr()).await.unwrap();
        let body = chat("openai/gpt-4o-mini", false, 100);
        let request = format!(
            "POST {path} HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {MASTER}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
            body.len() + 1000,
            body
        );
        sock.write_all(request.as_bytes()).await.unwrap();
        // The rest of the body never comes: the client closes its side.
        sock.shutdown().await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut answer)).await;
        assert!(
            answer.is_empty(),
            "{case}: {}",
            String::from_utf8_lossy(&answer)
        );
        let log = gw.wait_for_log(&format!("path={path} "), 1).await;
        let line = log
            .lines()
            .find(|l| l.contains(&format!("path={path} ")))
            .unwrap();
        // Nothing was sent (status 0), and the line says the client left, as when
        // it leaves while the provider works; not a 400 for a body it cut short.
        assert!(line.contains(" status=0 "), "{case}: {line}");
        assert!(
            line.contains(r#"error="client closed the connection""#),
            "{case}: {line}"
        );
    }
    assert!(
        provider.received.try_recv().is_err(),
        "nothing reached the provider"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_cancels_its_stream_closes_the_upstream_connection() {
    // Over HTTP/2 a client cancels one stream (`RST_STREAM`) and keeps its connection
    // for others: the gateway waiting on the provider for that stream's whole answer
    // (a translated call, a `/v1` model call) must notice it all the same.
    let mut provider = silent_provider().await;
    let pki = common::tls::TestPki::new();
    let dir = common::scratch_dir();
    let (cert, key) = pki.issue_leaf().write(&dir);
    let yaml = format!(
        "server:\n  tls:\n    cert_file: {}\n    key_file: {}\n",
        cert.display(),
        key.display()
    );
    let gw = gateway_with(
        &provider,
        &yaml,
        &[("AURORA_TLS_LISTEN", common::PICKED_PORT)],
    );
    let tls_port = gw.tls_port();
    let client = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap())
        .resolve("localhost", ([127, 0, 0, 1], tls_port).into())
        .build()
        .unwrap();
    let health = client
        .get(format!("https://localhost:{tls_port}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        health.version(),
        reqwest::Version::HTTP_2,
        "the calls below share it"
    );
    let url = format!("https://localhost:{tls_port}/v1/chat/completions");
    // The gateway's own exchange (a translated call, answered whole or streamed), and
    // Pingora's proxy loop (same format), which watches the stream itself.
    for (case, model, stream) in [
        ("translated whole", "anthropic/claude-x", false),
        ("translated stream", "anthropic/claude-x", true),
        ("same format", "openai/gpt-4o-mini", false),
    ] {
        let call = client
            .post(&url)
            .bearer_auth(MASTER)
            .header("content-type", "application/json")
            .body(chat(model, stream, 100))
            .send();
        let mut call = Box::pin(call);
        tokio::select! {
            resp = &mut call => panic!("{case}: answered {resp:?}"),
            got = provider.received.recv() => assert!(got.is_some(), "{case}"),
        }
        // The client gives up on this call (its stream is reset), not on its connection.
        let cancelled = Instant::now();
        drop(call);
        let closed = tokio::time::timeout(Duration::from_secs(5), provider.closed.recv())
            .await
            .unwrap_or_else(|_| panic!("{case}: the upstream connection stayed open"))
            .unwrap();
        assert!(
            closed.duration_since(cancelled) < Duration::from_secs(5),
            "{case}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_for_a_client_that_hung_up_is_not_ended_as_if_whole() {
    // A client that closes its side (a half-close) is taken as gone, on Pingora's loop
    // and on the gateway's own streamed exchange alike: the stream stops there. What the
    // client may still read must not end as a whole chunked body would (`0\r\n\r\n`):
    // that would make a cut stream look finished.
    let event = |i: usize| {
        bytes::Bytes::from(format!(
            "data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"w{i}\"}},\"finish_reason\":null}}]}}\n\n"
        ))
    };
    // Events closer together than the gateway looks at a waiting client's socket,
    // and further apart.
    for gap in [Duration::from_millis(40), Duration::from_millis(250)] {
        let mock = common::MockUpstream::start(move |_| common::Reply::Stream {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            chunks: (0..40)
                .map(|i| (gap, event(i)))
                .chain([(Duration::ZERO, bytes::Bytes::from("data: [DONE]\n\n"))])
                .collect(),
        })
        .await;
        let base = mock.url("/v1");
        let env = [
            ("AURORA_MASTER_KEY", MASTER),
            ("OPENAI_API_KEY", "sk-oai-hangup-test"),
            ("OPENAI_BASE_URL", base.as_str()),
        ];
        let proxied = Gateway::start("", &env);
        // A stream that may fall back on a prompt too long is the gateway's own exchange.
        let own_exchange = Gateway::start(
        "models:\n  fallbacks:\n    gpt-4o-mini: [openai/gpt-4o]\n  fallbacks_on_context_overflow: [gpt-4o-mini]\n",
        &env,
    );
        for (path, gw) in [("proxied", &proxied), ("own exchange", &own_exchange)] {
            let case = format!("{path}, events {gap:?} apart");
            let body = chat("gpt-4o-mini", true, 10);
            let mut s = TcpStream::connect(gw.addr()).await.unwrap();
            let request = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MASTER}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
            s.write_all(request.as_bytes()).await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 16 * 1024];
            // The stream has begun before the client closes its side.
            while !String::from_utf8_lossy(&got).contains("w0") {
                let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
                    .await
                    .unwrap_or_else(|_| panic!("{case}: no first event"))
                    .unwrap();
                assert!(n > 0, "{case}: closed before the first event");
                got.extend_from_slice(&buf[..n]);
            }
            s.shutdown().await.unwrap();
            loop {
                let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
                    .await
                    .unwrap_or_else(|_| panic!("{case}: the connection stayed open"));
                match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&got);
            assert!(text.starts_with("HTTP/1.1 200"), "{case}: {text}");
            assert!(
                !text.contains("[DONE]"),
                "{case}: the stream ran whole for a client taken as gone: {text}"
            );
            assert!(
                !text.ends_with("0\r\n\r\n"),
                "{case}: a cut stream ended as a whole one: {text}"
            );
        }
    }
}
