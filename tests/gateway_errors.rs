//! Errors the gateway raises itself (auth, size limit, unreachable or slow upstreams,
//! TLS), upstream TLS verification and pooling, and the access log.

mod common;

use std::time::Duration;

use common::{client, scratch_dir, Gateway, MockUpstream, Reply};

const MASTER: &str = "gw-master-test-key-0123456789abc";
const PROVIDER_KEY: &str = "sk-oai-provider-secret";

async fn ok_mock() -> MockUpstream {
    MockUpstream::start(|_| Reply::json(200, r#"{"ok":true}"#)).await
}

fn openai_at(base: &str, extra: &[(&str, &str)]) -> Gateway {
    let mut env = vec![
        ("AURORA_MASTER_KEY", MASTER),
        ("OPENAI_API_KEY", PROVIDER_KEY),
        ("OPENAI_BASE_URL", base),
    ];
    env.extend_from_slice(extra);
    Gateway::start("", &env)
}

/// The gateway with OpenAI and Anthropic both at `base` (a translated `/v1` call to
/// `anthropic/…` reaches it too).
fn openai_and_anthropic_at(base: &str) -> Gateway {
    openai_at(
        base,
        &[
            ("ANTHROPIC_API_KEY", "sk-ant-provider-secret"),
            ("ANTHROPIC_BASE_URL", base),
        ],
    )
}

/// `GET /p/openai/models` with the master key.
async fn get_models(gw: &Gateway) -> reqwest::Response {
    client()
        .get(gw.url("/p/openai/models"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap()
}

async fn assert_envelope(resp: reqwest::Response, status: u16, kind: &str) -> String {
    assert_eq!(resp.status().as_u16(), status);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], kind, "{v}");
    assert!(v["error"].get("param").is_some() && v["error"].get("code").is_some());
    let msg = v["error"]["message"].as_str().unwrap().to_string();
    assert!(
        !msg.contains(PROVIDER_KEY) && !msg.contains(MASTER),
        "{msg}"
    );
    msg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_needs_no_auth() {
    let gw = openai_at("http://127.0.0.1:9/v1", &[]);
    let resp = client().get(gw.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), r#"{"status":"ok"}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requires_gateway_key_as_bearer_or_x_api_key() {
    let mock = ok_mock().await;
    let gw = openai_at(&mock.url("/v1"), &[]);
    let c = client();
    let resp = c.get(gw.url("/p/openai/models")).send().await.unwrap();
    assert_envelope(resp, 401, "authentication_error").await;
    let resp = c
        .get(gw.url("/p/openai/models"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_envelope(resp, 401, "authentication_error").await;
    let resp = c.get(gw.url("/nowhere")).send().await.unwrap();
    assert_eq!(resp.status(), 401, "auth comes before routing");
    assert!(mock.requests().is_empty());
    let ok = c
        .get(gw.url("/p/openai/models"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let ok = c
        .get(gw.url("/p/openai/models"))
        .header("x-api-key", MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_keys_match_by_hash_and_honour_enabled_and_expiry() {
    let mock = ok_mock().await;
    let hash = |k: &str| hex::encode(aurora::auth::sha256(k.as_bytes()));
    let yaml = format!(
        "auth:\n  keys:\n    - {{name: live, sha256: \"{}\", expires_at: \"2999-01-01T00:00:00Z\"}}\n    - {{name: off, sha256: \"{}\", enabled: false}}\n    - {{name: old, sha256: \"{}\", expires_at: \"2001-01-01T00:00:00Z\"}}\n",
        hash("sk-aurora-live"),
        hash("sk-aurora-off"),
        hash("sk-aurora-old")
    );
    let base = mock.url("/v1");
    let gw = Gateway::start(
        &yaml,
        &[("OPENAI_API_KEY", PROVIDER_KEY), ("OPENAI_BASE_URL", &base)],
    );
    let c = client();
    let call = |key: &'static str| c.get(gw.url("/p/openai/models")).bearer_auth(key).send();
    assert_eq!(call("sk-aurora-live").await.unwrap().status(), 200);
    let msg = assert_envelope(
        call("sk-aurora-off").await.unwrap(),
        401,
        "authentication_error",
    )
    .await;
    assert!(msg.contains("disabled"), "{msg}");
    let msg = assert_envelope(
        call("sk-aurora-old").await.unwrap(),
        401,
        "authentication_error",
    )
    .await;
    assert!(msg.contains("expired"), "{msg}");
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_kept_off_passthrough_is_refused_there_and_calls_models_on_v1() {
    // `/p/` acts on the provider account as a whole (its files, batches, stored
    // completions): an operator keeps a tenant's key to its own model calls.
    let mock = ok_mock().await;
    let hash = |k: &str| hex::encode(aurora::auth::sha256(k.as_bytes()));
    let yaml = format!(
        "auth:\n  keys:\n    - {{name: tenant, sha256: \"{}\", passthrough: false}}\n    - {{name: ops, sha256: \"{}\"}}\n",
        hash("sk-aurora-tenant-0123456789abcdef"),
        hash("sk-aurora-ops-0123456789abcdefgh"),
    );
    let base = mock.url("/v1");
    let gw = Gateway::start(
        &yaml,
        &[("OPENAI_API_KEY", PROVIDER_KEY), ("OPENAI_BASE_URL", &base)],
    );
    let c = client();
    for path in ["/p/openai/files", "/p/openai/v1/batches"] {
        let resp = c
            .get(gw.url(path))
            .bearer_auth("sk-aurora-tenant-0123456789abcdef")
            .send()
            .await
            .unwrap();
        let msg = assert_envelope(resp, 403, "invalid_request_error").await;
        assert!(msg.contains("passthrough: false"), "{msg}");
    }
    assert!(mock.requests().is_empty(), "the provider was asked");
    let resp = c
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("sk-aurora-tenant-0123456789abcdef")
        .header("content-type", "application/json")
        .body(r#"{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = c
        .get(gw.url("/p/openai/files"))
        .bearer_auth("sk-aurora-ops-0123456789abcdefgh")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_gateway_says_so_loudly_at_startup() {
    let gw = Gateway::start("", &[]);
    assert!(gw.log().contains("GATEWAY AUTH IS OFF"), "{}", gw.log());
    let secured = openai_at("http://127.0.0.1:9/v1", &[]);
    assert!(!secured.log().contains("GATEWAY AUTH IS OFF"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_the_limit_is_413_declared_or_chunked() {
    let mock = ok_mock().await;
    let gw = openai_at(&mock.url("/v1"), &[("BODY_SIZE_LIMIT", "1KiB")]);
    let c = client();
    let resp = c
        .post(gw.url("/p/openai/chat/completions"))
        .bearer_auth(MASTER)
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    let msg = assert_envelope(resp, 413, "invalid_request_error").await;
    assert!(msg.contains("1024"), "{msg}");
    // Chunked: no length up front, so the limit bites while streaming.
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = (0..8)
        .map(|_| Ok(bytes::Bytes::from(vec![b'y'; 512])))
        .collect();
    let resp = c
        .post(gw.url("/p/openai/chat/completions"))
        .bearer_auth(MASTER)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_envelope(resp, 413, "invalid_request_error").await;
    // Under the limit: a Chat body, which the gateway reads (it holds it whole to ask a
    // stream for its usage), is JSON.
    let small = c
        .post(gw.url("/p/openai/chat/completions"))
        .bearer_auth(MASTER)
        .body(format!(r#"{{"model":"m","user":"{}"}}"#, "z".repeat(978)))
        .send()
        .await
        .unwrap();
    assert_eq!(small.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_is_502() {
    let port = common::closed_port();
    let gw = openai_at(&format!("http://127.0.0.1:{port}/v1"), &[]);
    let resp = get_models(&gw).await;
    let msg = assert_envelope(resp, 502, "provider_error").await;
    assert!(msg.contains("openai"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresolvable_upstream_host_is_502() {
    let gw = openai_at("http://no-such-provider.invalid/v1", &[]);
    let resp = get_models(&gw).await;
    let msg = assert_envelope(resp, 502, "provider_error").await;
    assert!(msg.contains("resolve"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_is_504() {
    let mock = MockUpstream::start(|_| {
        Reply::Delayed(Duration::from_secs(3), Box::new(Reply::json(200, "{}")))
    })
    .await;
    let yaml = format!(
        "providers:\n  openai:\n    api_key: {PROVIDER_KEY}\n    base_url: {}\n    timeouts: {{read: 300ms}}\n",
        mock.url("/v1")
    );
    let gw = Gateway::start(&yaml, &[("AURORA_MASTER_KEY", MASTER)]);
    let resp = get_models(&gw).await;
    assert_envelope(resp, 504, "provider_error").await;
}

fn tls_yaml(port: u16, ca_file: Option<&str>) -> String {
    let ca = ca_file.map_or(String::new(), |f| format!("    ca_file: {f}\n"));
    format!(
        "providers:\n  openai:\n    api_key: {PROVIDER_KEY}\n    base_url: https://localhost:{port}/v1\n{ca}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_is_verified_against_ca_file() {
    let pki = common::tls::TestPki::new();
    let mock = MockUpstream::start_tls(
        |_| Reply::json(200, r#"{"tls":true}"#),
        pki.acceptor.clone(),
    )
    .await;
    let dir = scratch_dir();
    let ca_path = dir.join("ca.pem");
    pki.write_ca(&ca_path);
    let trusted = Gateway::start(
        &tls_yaml(mock.addr.port(), ca_path.to_str()),
        &[("AURORA_MASTER_KEY", MASTER)],
    );
    let resp = get_models(&trusted).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), r#"{"tls":true}"#);
    assert_eq!(
        mock.last().header("authorization"),
        Some(format!("Bearer {PROVIDER_KEY}").as_str())
    );

    let untrusted = Gateway::start(
        &tls_yaml(mock.addr.port(), None),
        &[("AURORA_MASTER_KEY", MASTER)],
    );
    let before = mock.requests().len();
    let resp = get_models(&untrusted).await;
    let msg = assert_envelope(resp, 502, "provider_error").await;
    assert!(msg.contains("TLS"), "{msg}");
    assert_eq!(
        mock.requests().len(),
        before,
        "no request may cross an untrusted TLS link"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_pooled_and_reused() {
    let mock = ok_mock().await;
    let gw = openai_at(&mock.url("/v1"), &[("AURORA_THREADS", "1")]);
    let c = client();
    for _ in 0..10 {
        let resp = c
            .post(gw.url("/p/openai/chat/completions"))
            .bearer_auth(MASTER)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(mock.requests().len(), 10);
    assert_eq!(
        mock.connections(),
        1,
        "ten sequential requests should share one upstream connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_has_one_line_per_request_and_no_credentials() {
    let mock = ok_mock().await;
    let gw = openai_at(&mock.url("/v1"), &[]);
    let c = client();
    for _ in 0..3 {
        c.get(gw.url("/p/openai/models?key=query-secret"))
            .bearer_auth(MASTER)
            .header("x-request-id", "log-test-id")
            .send()
            .await
            .unwrap();
    }
    c.get(gw.url("/p/openai/models"))
        .bearer_auth("wrong-key-secret")
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = gw.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("request_id=log-test-id"))
        .collect();
    assert_eq!(lines.len(), 3, "{log}");
    for field in [
        "method=GET",
        "route=passthrough",
        "provider=openai",
        "status=200",
        "upstream_status=200",
        "duration_ms=",
        "bytes_in=",
        "bytes_out=",
    ] {
        assert!(lines[0].contains(field), "{field} missing in {}", lines[0]);
    }
    assert!(log.contains("status=401"));
    for secret in [MASTER, PROVIDER_KEY, "wrong-key-secret", "query-secret"] {
        assert!(!log.contains(secret), "{secret} leaked into the log");
    }
}

/// A provider that says it gzips but sends bytes that break part way: a JSON answer
/// broken at once, and a stream whose first events decode and whose rest does not.
fn broken_gzip(rec: &common::Recorded) -> Reply {
    use std::io::Write;
    let gzip = |content_type: &str| {
        vec![
            ("content-type".to_string(), content_type.to_string()),
            ("content-encoding".to_string(), "gzip".to_string()),
        ]
    };
    if rec.path() == "/v1/models" {
        // Nothing at all, labelled gzip, chunked: an empty answer, not a broken one.
        return Reply::Stream {
            status: 200,
            headers: gzip("application/json"),
            chunks: vec![],
        };
    }
    if !rec.body.windows(13).any(|w| w == br#""stream":true"#) {
        return Reply::Full {
            status: 200,
            headers: gzip("application/json"),
            body: vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff].into(),
        };
    }
    // Each event flushed whole, as a provider streams them.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut chunks = Vec::new();
    for event in [FIRST_EVENT, SECOND_EVENT] {
        gz.write_all(event.as_bytes()).unwrap();
        gz.flush().unwrap();
        let piece = std::mem::take(gz.get_mut());
        chunks.push((Duration::from_millis(100), bytes::Bytes::from(piece)));
    }
    chunks.push((
        Duration::from_millis(100),
        bytes::Bytes::from_static(&[0xff; 64]),
    ));
    Reply::Stream {
        status: 200,
        headers: gzip("text/event-stream"),
        chunks,
    }
}

const FIRST_EVENT: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"first\"}}]}\n\n";
const SECOND_EVENT: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"second\"}}]}\n\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_answer_that_cannot_be_decoded_never_reaches_the_client_labelled_plain() {
    // Passed on, the rest would reach the client still compressed under a header that
    // no longer says so, and the meter would read nothing.
    let mock = MockUpstream::start(broken_gzip).await;
    let base = mock.url("/v1");
    let gw = openai_and_anthropic_at(&base);
    // Proxied, and read whole by the gateway to be translated.
    let whole = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let translated =
        r#"{"model":"anthropic/claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}"#;
    for (path, body) in [
        ("/p/openai/chat/completions", whole),
        ("/v1/chat/completions", translated),
    ] {
        let resp = gw.post_json(MASTER, path, body).await;
        let v: serde_json::Value = {
            assert_eq!(resp.status(), 502, "{path}");
            resp.json().await.unwrap()
        };
        assert_eq!(v["error"]["type"], "provider_error", "{path}: {v}");
    }
    let empty = get_models(&gw).await;
    assert_eq!(empty.status(), 200);
    assert!(empty.headers().get("content-encoding").is_none());
    assert!(empty.bytes().await.unwrap().is_empty());
    // A stream is cut where its decoding failed: what came before arrives decoded, each
    // event as soon as it came (not held back until the next piece).
    let stream =
        r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let mut resp = gw
        .post_json(MASTER, "/p/openai/chat/completions", stream)
        .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("content-encoding").is_none());
    let mut received = Vec::new();
    let ended = loop {
        match resp.chunk().await {
            Ok(Some(piece)) => received.extend_from_slice(&piece),
            Ok(None) => break "cleanly",
            Err(_) => break "cut",
        }
    };
    let received = String::from_utf8(received).unwrap();
    assert_eq!(received, format!("{FIRST_EVENT}{SECOND_EVENT}"));
    assert_eq!(ended, "cut");
    gw.wait_for_log("status=200", 1).await;
    assert!(gw.log().contains("could not be decoded"), "{}", gw.log());
}

/// 128 MiB of zeros compressed as `encoding` (gzip: about 128 KiB; Brotli: a few
/// bytes), made once per encoding.
fn bomb(encoding: &str) -> bytes::Bytes {
    use std::io::Write;
    static GZIP: std::sync::OnceLock<bytes::Bytes> = std::sync::OnceLock::new();
    static BROTLI: std::sync::OnceLock<bytes::Bytes> = std::sync::OnceLock::new();
    let zeros = |mut w: Box<dyn Write + '_>| {
        let mib = vec![0u8; 1024 * 1024];
        for _ in 0..128 {
            w.write_all(&mib).unwrap();
        }
    };
    if encoding == "gzip" {
        GZIP.get_or_init(|| {
            let mut out = Vec::new();
            zeros(Box::new(flate2::write::GzEncoder::new(
                &mut out,
                flate2::Compression::best(),
            )));
            out.into()
        })
        .clone()
    } else {
        BROTLI
            .get_or_init(|| {
                let mut out = Vec::new();
                zeros(Box::new(brotli::CompressorWriter::new(
                    &mut out, 4096, 1, 22,
                )));
                out.into()
            })
            .clone()
    }
}

/// Peak resident memory of process `pid`, in bytes.
fn peak_resident_bytes(pid: u32) -> u64 {
    common::process_memory(pid, "VmHWM")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_answer_that_decodes_to_gigabytes_is_refused_with_bounded_memory() {
    // A few KiB of a provider's answer must not become gigabytes in the gateway: the
    // meter and the translators read every answer decoded.
    for encoding in ["gzip", "br"] {
        let body = bomb(encoding);
        let mock = MockUpstream::start(move |rec| {
            if rec.path().ends_with("/models") {
                return Reply::json(200, r#"{"object":"list","data":[]}"#);
            }
            let stream = rec.body.windows(13).any(|w| w == br#""stream":true"#);
            let content_type = if stream {
                "text/event-stream"
            } else {
                "application/json"
            };
            Reply::Full {
                status: 200,
                headers: vec![
                    ("content-type".to_string(), content_type.to_string()),
                    ("content-encoding".to_string(), encoding.to_string()),
                ],
                body: body.clone(),
            }
        })
        .await;
        let base = mock.url("/v1");
        let gw = openai_and_anthropic_at(&base);
        assert_eq!(get_models(&gw).await.status(), 200);
        let before = peak_resident_bytes(gw.pid());
        let whole = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
        let stream =
            r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let translated = r#"{"model":"anthropic/claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}"#;
        for (path, body) in [
            ("/p/openai/chat/completions", whole),
            ("/p/openai/chat/completions", stream),
            ("/v1/chat/completions", translated),
        ] {
            let mut resp = gw.post_json(MASTER, path, body).await;
            if resp.status() == 502 {
                let v: serde_json::Value = resp.json().await.unwrap();
                assert_eq!(v["error"]["type"], "provider_error", "{path}: {v}");
                continue;
            }
            // The header went out before the first piece was refused: the body is cut,
            // short of what the bomb decodes to.
            assert_eq!(resp.status(), 200, "{encoding} {path}");
            assert!(resp.headers().get("content-encoding").is_none());
            let mut received = 0;
            let ended = loop {
                match resp.chunk().await {
                    Ok(Some(piece)) => received += piece.len(),
                    Ok(None) => break "cleanly",
                    Err(_) => break "cut",
                }
            };
            assert_eq!(ended, "cut", "{encoding} {path}");
            assert!(received < 16 << 20, "{encoding} {path}: {received} bytes");
        }
        let grown = peak_resident_bytes(gw.pid()).saturating_sub(before);
        // Each piece may decode to 8 MiB; one of these pieces decodes to 64 MiB.
        assert!(
            grown < 48 << 20,
            "{encoding}: peak memory grew {grown} bytes"
        );
        gw.wait_for_log("decodes to more than it may", 3).await;
        // The gateway carries on.
        assert_eq!(get_models(&gw).await.status(), 200);
    }
}
