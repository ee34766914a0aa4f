//! Provider passthrough `/p/{provider}/{endpoint}` end to end: a real gateway in front
//! of a recording mock provider, asserting on both sides of the wire.

mod common;

use std::time::{Duration, Instant};

use common::{client, raw_request, Gateway, MockUpstream, Recorded, Reply};
use sha2::{Digest, Sha256};

const MASTER: &str = "gw-master-test-key-0123456789abc";
const ANT_KEY: &str = "sk-ant-provider-test";
const OAI_KEY: &str = "sk-oai-provider-test";

async fn ok_mock() -> MockUpstream {
    MockUpstream::start(|_| Reply::json(200, r#"{"ok":true}"#)).await
}

/// A gateway whose anthropic, openai and gemini providers all point at `mock`.
fn gateway_for(mock: &MockUpstream, yaml: &str, extra: &[(&str, &str)]) -> Gateway {
    let base = mock.url("/v1");
    let mut env = vec![
        ("AURORA_MASTER_KEY", MASTER),
        ("ANTHROPIC_API_KEY", ANT_KEY),
        ("ANTHROPIC_BASE_URL", base.as_str()),
        ("OPENAI_API_KEY", OAI_KEY),
        ("OPENAI_BASE_URL", base.as_str()),
        ("GEMINI_API_KEY", "gemini-provider-test"),
        ("GEMINI_BASE_URL", base.as_str()),
        ("OPENROUTER_API_KEY", "or-provider-test"),
        ("OPENROUTER_BASE_URL", base.as_str()),
    ];
    env.extend_from_slice(extra);
    Gateway::start(yaml, &env)
}

fn authed(rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    rb.bearer_auth(MASTER)
}

async fn error_json(resp: reqwest::Response) -> serde_json::Value {
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_every_method_to_base_url_plus_endpoint() {
    let mock = ok_mock().await;
    let gw = gateway_for(&mock, "", &[]);
    let c = client();
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = authed(c.request(m, gw.url("/p/openai/files/abc%2Fcontent/x")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{method}");
        let rec = mock.last();
        assert_eq!(rec.method, method);
        assert_eq!(rec.uri, "/v1/files/abc/content/x");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_is_never_forwarded_where_it_could_echo_the_providers_credential() {
    // A server that echoes TRACE would show the client the key the gateway added.
    let mock = ok_mock().await;
    let gw = gateway_for(&mock, "", &[]);
    let resp = raw_request(
        &gw.addr(),
        &format!("TRACE /p/openai/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MASTER}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(resp.status, 405, "{}", resp.head);
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_is_refused_with_501_before_the_provider() {
    // OpenAI's Realtime API over a WebSocket: not proxied, and said so.
    let mock = ok_mock().await;
    let gw = gateway_for(&mock, "", &[]);
    let resp = raw_request(
        &gw.addr(),
        &format!("GET /p/openai/realtime?model=gpt-realtime HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MASTER}\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"),
    )
    .await;
    assert_eq!(resp.status, 501, "{}", resp.head);
    let body = String::from_utf8_lossy(&resp.body);
    assert!(body.contains("WebSocket"), "{body}");
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_chat_body_passes_as_it_came() {
    use std::io::Write as _;
    let mock = ok_mock().await;
    let gw = gateway_for(&mock, "", &[]);
    let body =
        br#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body).unwrap();
    let gzipped = gz.finish().unwrap();
    let resp = authed(client().post(gw.url("/p/openai/chat/completions")))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzipped.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let sent = mock.last();
    assert_eq!(sent.body, gzipped);
    assert_eq!(sent.header("content-encoding"), Some("gzip"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groqs_and_ollamas_own_sdks_reach_their_apis() {
    let mock = ok_mock().await;
    let yaml = format!(
        "providers:\n  groq: {{api_key: gsk-test-key, base_url: '{}'}}\n  ollama: {{base_url: '{}'}}\nserver:\n  enabled_passthrough_providers: [groq, ollama]\n",
        mock.url("/openai/v1"),
        mock.url("/v1")
    );
    let gw = Gateway::start(&yaml, &[("AURORA_MASTER_KEY", MASTER)]);
    for (path, upstream) in [
        // groq-python posts below its base URL's own path.
        (
            "/p/groq/openai/v1/chat/completions",
            "/openai/v1/chat/completions",
        ),
        ("/p/groq/chat/completions", "/openai/v1/chat/completions"),
        // The ollama client calls its native API at the root.
        ("/p/ollama/api/chat", "/api/chat"),
        ("/p/ollama/chat/completions", "/v1/chat/completions"),
    ] {
        let resp = authed(client().post(gw.url(path)))
            .header("content-type", "application/json")
            .body(r#"{"model":"m","messages":[]}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(mock.last().uri, upstream, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_upload_past_the_buffered_limit_passes_under_the_passthrough_limit() {
    let mock = ok_mock().await;
    let gw = gateway_for(
        &mock,
        "",
        &[
            ("BODY_SIZE_LIMIT", "1KiB"),
            ("AURORA_PASSTHROUGH_BODY_SIZE_LIMIT", "16KiB"),
        ],
    );
    let upload = |len: usize| {
        authed(client().post(gw.url("/p/openai/audio/transcriptions")))
            .header("content-type", "multipart/form-data; boundary=x")
            .body(vec![b'a'; len])
            .send()
    };
    // An audio file past the limit of bodies the gateway reads: streamed on whole.
    let resp = upload(8 * 1024).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(mock.last().body.len(), 8 * 1024);
    // Past the passthrough limit: refused, naming the setting.
    let resp = upload(32 * 1024).await.unwrap();
    assert_eq!(resp.status(), 413);
    let err = error_json(resp).await;
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("server.passthrough_body_size_limit"),
        "{message}"
    );
    assert_eq!(mock.requests().len(), 1);
    // A Chat body, which the gateway reads, is held to the smaller limit.
    let resp = authed(client().post(gw.url("/p/openai/chat/completions")))
        .header("content-type", "application/json")
        .body(format!(r#"{{"model":"m","user":"{}"}}"#, "u".repeat(4096)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_page_of_an_allowed_origin_calls_through_cors() {
    // The provider says any origin may read it; the gateway says which may.
    let mock = MockUpstream::start(|_| Reply::Full {
        status: 200,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("access-control-allow-origin".into(), "*".into()),
        ],
        body: bytes::Bytes::from_static(br#"{"ok":true}"#),
    })
    .await;
    let gw = gateway_for(
        &mock,
        "",
        &[("AURORA_CORS_ALLOW_ORIGINS", "https://app.example")],
    );
    let page = "https://app.example";
    let preflight = |origin: &'static str| {
        client()
            .request(reqwest::Method::OPTIONS, gw.url("/p/anthropic/v1/messages"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "x-api-key,anthropic-version,anthropic-dangerous-direct-browser-access",
            )
            .send()
    };
    // The preflight carries no key: answered by the gateway, nothing goes upstream.
    let resp = preflight("https://app.example").await.unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(resp.headers()["access-control-allow-origin"], page);
    assert!(resp.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("x-api-key"));
    assert!(mock.requests().is_empty());
    // The call itself, and an error the page must be able to read.
    let resp = client()
        .post(gw.url("/p/anthropic/v1/messages"))
        .header("origin", page)
        .header("x-api-key", MASTER)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let allowed: Vec<_> = resp
        .headers()
        .get_all("access-control-allow-origin")
        .iter()
        .collect();
    assert_eq!(allowed, [page]);
    assert_eq!(resp.headers()["vary"], "Origin");
    let resp = client()
        .post(gw.url("/p/anthropic/v1/messages"))
        .header("origin", page)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["access-control-allow-origin"], page);
    // Another origin is told nothing, and its preflight needs the key like any call.
    let resp = preflight("https://evil.example").await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    // Without configured origins, no CORS at all: the provider's header passes.
    let plain = gateway_for(&mock, "", &[]);
    let resp = client()
        .post(plain.url("/p/anthropic/v1/messages"))
        .header("origin", page)
        .header("x-api-key", MASTER)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_may_be_named_by_instance_or_type() {
    let mock = ok_mock().await;
    let yaml = format!(
        "providers:\n  openai-east:\n    type: openai\n    api_key: east-key\n    base_url: {}\nserver:\n  enabled_passthrough_providers: [openai-east]\n",
        mock.url("/east")
    );
    let gw = Gateway::start(&yaml, &[("AURORA_MASTER_KEY", MASTER)]);
    let c = client();
    for path in ["/p/openai-east/models", "/p/openai/models"] {
        let resp = authed(c.get(gw.url(path))).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(mock.last().uri, "/east/models");
        assert_eq!(mock.last().header("authorization"), Some("Bearer east-key"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_string_is_forwarded_byte_for_byte() {
    let mock = ok_mock().await;
    let gw = gateway_for(&mock, "", &[]);
    let resp = raw_request(
        &gw.addr(),
        &format!("GET /p/openai/models?b=2&a=%20x&a=1&empty=&flag HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MASTER}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(mock.last().uri, "/v1/models?b=2&a=%20x&a=1&empty=&flag");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_alias_is_dropped_when_allowed() {
    let mock = ok_mock().await;
    let gw = gateway_for(&mock, "", &[]);
    let c = client();
    for path in ["/p/anthropic/v1/messages", "/p/anthropic/messages"] {
        let resp = authed(c.post(gw.url(path)))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(mock.last().uri, "/v1/messages");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_alias_refused_when_disabled_and_empty_endpoint_refused() {
    let mock = ok_mock().await;
    let gw = gateway_for(&mock, "", &[("ALLOW_PASSTHROUGH_V1_ALIAS", "false")]);
    let c = client();
    let resp = authed(c.post(gw.url("/p/anthropic/v1/messages")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body = error_json(resp).await;
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("v1"));
    for path in ["/p/anthropic/", "/p/anthropic"] {
        let resp = authed(c.get(gw.url(path))).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{path}");
    }
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_that_escape_the_base_path_are_refused() {
    let mock = ok_mock().await;
    let gw = gateway_for(&mock, "", &[]);
    for path in [
        "/p/openai/../../etc/passwd",
        "/p/openai/a/%2e%2e/b",
        "/p/openai/./models",
        "/p/openai/%2Fmodels",
        "/p/openai//models",
        "/p/openai/http:%2F%2Fevil.example%2Fx",
        "/p/openai/a%5Cb",
        "/p/openai/a%00b",
        "/p/openai/a%0d%0aX-Injected:%201",
        "/p/openai/..;/..;/admin",
        "/p/openai/a/..;x/b",
    ] {
        let resp = raw_request(
            &gw.addr(),
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MASTER}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(resp.status, 400, "{path}: {}", resp.head);
    }
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_host_header_is_always_the_providers() {
    let mock = ok_mock().await;
    let gw = gateway_for(&mock, "", &[]);
    let resp = authed(client().get(gw.url("/p/openai/models")))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        mock.last().header("host").unwrap(),
        mock.addr.to_string().as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strips_client_credentials_hop_by_hop_and_forwarding_headers() {
    let mock = ok_mock().await;
    let gw = gateway_for(&mock, "", &[]);
    let resp = raw_request(
        &gw.addr(),
        &format!(
            "POST /p/openai/chat/completions HTTP/1.1\r\nHost: x\r\n\
             X-Api-Key: {MASTER}\r\nCookie: session=1\r\nProxy-Authorization: Basic abc\r\n\
             Connection: close, X-Secret-Hop\r\nX-Secret-Hop: 1\r\nKeep-Alive: timeout=5\r\n\
             TE: trailers\r\nTrailer: X-T\r\nProxy-Connection: keep-alive\r\n\
             Forwarded: for=203.0.113.9\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Host: c\r\n\
             X-Custom: kept\r\nUser-Agent: test-agent/1\r\nOpenAI-Beta: assistants=v2\r\n\
             Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
        ),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.head);
    let rec = mock.last();
    for gone in [
        "x-api-key",
        "cookie",
        "proxy-authorization",
        "x-secret-hop",
        "keep-alive",
        "te",
        "trailer",
        "proxy-connection",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
    ] {
        assert!(
            rec.headers.get(gone).is_none(),
            "{gone} reached the provider"
        );
    }
    assert_eq!(
        rec.header("authorization"),
        Some(format!("Bearer {OAI_KEY}").as_str())
    );
    assert_eq!(rec.header("x-custom"), Some("kept"));
    assert_eq!(rec.header("user-agent"), Some("test-agent/1"));
    assert_eq!(rec.header("openai-beta"), Some("assistants=v2"));
    assert_eq!(rec.body.as_ref(), b"{}");
    let all: String = rec
        .headers
        .values()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_string())
        .collect();
    assert!(!all.contains(MASTER), "gateway key reached the provider");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_gets_x_api_key_version_and_client_beta() {
    let mock = ok_mock().await;
    let gw = gateway_for(&mock, "", &[]);
    let c = client();
    authed(c.post(gw.url("/p/anthropic/v1/messages")))
        .header("anthropic-beta", "prompt-caching-2024-07-31")
        .send()
        .await
        .unwrap();
    let rec = mock.last();
    assert_eq!(rec.header("x-api-key"), Some(ANT_KEY));
    assert_eq!(rec.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        rec.header("anthropic-beta"),
        Some("prompt-caching-2024-07-31")
    );
    assert!(rec.headers.get("authorization").is_none());
    authed(c.post(gw.url("/p/anthropic/v1/messages")))
        .header("anthropic-version", "2099-01-01")
        .send()
        .await
        .unwrap();
    assert_eq!(mock.last().header("anthropic-version"), Some("2099-01-01"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_gets_goog_api_key_and_openrouter_gets_attribution_defaults() {
    let mock = ok_mock().await;
    let gw = gateway_for(
        &mock,
        "",
        &[("ENABLED_PASSTHROUGH_PROVIDERS", "gemini,openrouter")],
    );
    let c = client();
    authed(c.get(gw.url("/p/gemini/models")))
        .send()
        .await
        .unwrap();
    let rec = mock.last();
    assert_eq!(rec.header("x-goog-api-key"), Some("gemini-provider-test"));
    assert!(rec.headers.get("authorization").is_none());
    authed(c.get(gw.url("/p/openrouter/models")))
        .header("x-title", "my-app")
        .send()
        .await
        .unwrap();
    let rec = mock.last();
    assert_eq!(rec.header("authorization"), Some("Bearer or-provider-test"));
    assert_eq!(rec.header("x-title"), Some("my-app"));
    assert!(rec.header("http-referer").is_some());
}

/// Whether a recorded request holds `secret` in its URI or any header value.
fn holds(rec: &Recorded, secret: &str) -> bool {
    rec.uri.contains(secret)
        || rec
            .headers
            .values()
            .any(|v| String::from_utf8_lossy(v.as_bytes()).contains(secret))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gemini_clients_gateway_key_is_taken_from_x_goog_api_key_or_the_query_and_never_forwarded(
) {
    let mock = ok_mock().await;
    let gw = gateway_for(
        &mock,
        "",
        &[("ENABLED_PASSTHROUGH_PROVIDERS", "gemini,openai")],
    );
    let c = client();
    // Google's SDKs send the key they are given as `x-goog-api-key`.
    let resp = c
        .post(gw.url("/p/gemini/models/gemini-2.5-flash:generateContent"))
        .header("x-goog-api-key", MASTER)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let rec = mock.last();
    assert_eq!(rec.uri, "/v1/models/gemini-2.5-flash:generateContent");
    assert_eq!(rec.header("x-goog-api-key"), Some("gemini-provider-test"));
    assert!(!holds(&rec, MASTER), "the gateway key reached the provider");
    // Gemini's REST examples put it in the query; the rest of the query goes on as sent.
    let resp = raw_request(
        &gw.addr(),
        &format!("GET /p/gemini/models?alt=sse&key={MASTER}&pageSize=5&a=%20x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.head);
    let rec = mock.last();
    assert_eq!(rec.uri, "/v1/models?alt=sse&pageSize=5&a=%20x");
    assert!(!holds(&rec, MASTER), "the gateway key reached the provider");
    // A client's own keys in those places reach no provider either: the gateway adds its own.
    let resp = authed(c.get(gw.url("/p/openai/models?key=AIza-client-own&api_key=x&limit=2")))
        .header("x-goog-api-key", "AIza-client-own")
        .header("api-key", "azure-client-own")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let rec = mock.last();
    assert_eq!(rec.uri, "/v1/models?limit=2");
    assert!(
        !holds(&rec, "client-own"),
        "a client's key reached the provider"
    );
    assert_eq!(
        rec.header("authorization"),
        Some(format!("Bearer {OAI_KEY}").as_str())
    );
    // And on `/v1`, where the model picks the provider.
    let _ = c
        .post(gw.url(&format!("/v1/chat/completions?key={MASTER}&x=1")))
        .header("content-type", "application/json")
        .body(r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hi"}]}"#)
        .send()
        .await
        .unwrap();
    let rec = mock.last();
    assert_eq!(rec.uri, "/v1/chat/completions?x=1");
    assert!(!holds(&rec, MASTER), "the gateway key reached the provider");
    // A wrong key there is refused like any other, and nothing goes upstream.
    let before = mock.requests().len();
    let resp = c
        .get(gw.url("/p/gemini/models"))
        .header("x-goog-api-key", "not-the-gateway-key")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(mock.requests().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_redirect_below_its_base_url_comes_back_through_the_gateway() {
    // A server that redirects `…/completions/` to `…/completions` names its own
    // (maybe internal) address: the client is sent back through the gateway, which
    // holds the provider's key, instead.
    let mock = MockUpstream::start(|rec| {
        let location = match rec.uri.as_str() {
            "/v1/chat/completions/" => format!(
                "http://{}/v1/chat/completions",
                rec.header("host").unwrap_or_default()
            ),
            "/v1/files" => "/v1/files/file-1?purpose=batch".to_string(),
            "/v1/elsewhere" => "https://storage.example/signed?sig=1".to_string(),
            _ => return Reply::json(200, "{}"),
        };
        let status = if rec.uri == "/v1/files" { 201 } else { 307 };
        Reply::Full {
            status,
            headers: vec![("location".into(), location)],
            body: Vec::new().into(),
        }
    })
    .await;
    let gw = gateway_for(&mock, "", &[]);
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (method, path, status, location) in [
        (
            "POST",
            "/p/openai/chat/completions/",
            307,
            "/p/openai/chat/completions",
        ),
        (
            "POST",
            "/p/openai/v1/files",
            201,
            "/p/openai/files/file-1?purpose=batch",
        ),
        (
            "GET",
            "/p/openai/elsewhere",
            307,
            "https://storage.example/signed?sig=1",
        ),
    ] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = authed(c.request(m, gw.url(path))).send().await.unwrap();
        assert_eq!(resp.status(), status, "{path}");
        assert_eq!(resp.headers()["location"], location, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_provider_headers_are_added() {
    let mock = ok_mock().await;
    let yaml = "providers:\n  openai:\n    headers: {OpenAI-Organization: org-42}\n";
    let gw = gateway_for(&mock, yaml, &[]);
    authed(client().get(gw.url("/p/openai/models")))
        .send()
        .await
        .unwrap();
    assert_eq!(mock.last().header("openai-organization"), Some("org-42"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_picks_no_organization_or_project_of_the_gateways_key() {
    // Which of the operator's OpenAI organizations and projects a call is made (and
    // billed) in is the operator's to say; a caller's own key goes with its own.
    let mock = ok_mock().await;
    let yaml = format!(
        "providers:
  byok:
    type: openai
    api_key: \"!PASSTHRU\"\n    base_url: '{}'\nserver:\n  enabled_passthrough_providers: [openai, byok]\n",
        mock.url("/v1")
    );
    let gw = gateway_for(&mock, &yaml, &[]);
    for (path, own_key) in [
        ("/p/openai/models", None),
        ("/p/byok/models", Some("sk-caller-own-0123456789")),
    ] {
        let mut rb = authed(client().get(gw.url(path)))
            .header("OpenAI-Organization", "org-other")
            .header("OpenAI-Project", "proj-other");
        if let Some(key) = own_key {
            rb = rb.header("x-provider-api-key", key);
        }
        assert_eq!(rb.send().await.unwrap().status(), 200, "{path}");
        let sent = mock.last();
        let expected = own_key.map(|_| ("org-other", "proj-other"));
        assert_eq!(
            sent.header("openai-organization")
                .zip(sent.header("openai-project")),
            expected,
            "{path}"
        );
    }
    // The operator's own, configured, still goes.
    let gw = gateway_for(
        &mock,
        "providers:\n  openai:\n    headers: {OpenAI-Project: proj-ops}\n",
        &[],
    );
    let resp = authed(client().get(gw.url("/p/openai/models")))
        .header("OpenAI-Project", "proj-other")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(mock.last().header("openai-project"), Some("proj-ops"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_goes_upstream_and_comes_back_as_x_aurora_request_id() {
    let mock = ok_mock().await;
    let gw = gateway_for(&mock, "", &[]);
    let c = client();
    let resp = authed(c.get(gw.url("/p/openai/models")))
        .header("x-request-id", "req-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-aurora-request-id"], "req-abc-123");
    // The mock sends no id of its own, and the gateway does not make one up for it.
    assert!(resp.headers().get("x-request-id").is_none());
    assert_eq!(mock.last().header("x-request-id"), Some("req-abc-123"));
    let resp = authed(c.get(gw.url("/p/openai/models")))
        .send()
        .await
        .unwrap();
    let fresh = resp.headers()["x-aurora-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(fresh.len(), 36);
    assert_eq!(mock.last().header("x-request-id"), Some(fresh.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enabled_set_unknown_provider_and_missing_key_errors() {
    let mock = ok_mock().await;
    let gw = Gateway::start(
        "",
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("GROQ_API_KEY", "groq-test"),
            ("GROQ_BASE_URL", &mock.url("/v1")),
            // Configured by its base URL alone: known, but without a key.
            ("ANTHROPIC_BASE_URL", &mock.url("/v1")),
        ],
    );
    let c = client();
    let resp = authed(c.get(gw.url("/p/groq/models")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let msg = error_json(resp).await["error"]["message"].to_string();
    assert!(
        msg.contains("openai, anthropic, openrouter, zai, vllm"),
        "{msg}"
    );

    let resp = authed(c.get(gw.url("/p/nosuch/models")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(error_json(resp).await["error"]["type"], "not_found_error");

    let resp = authed(c.get(gw.url("/p/anthropic/models")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let msg = error_json(resp).await["error"]["message"].to_string();
    assert!(msg.contains("ANTHROPIC_API_KEY"), "{msg}");

    // A built-in type nobody configured is not reachable at all.
    let resp = authed(c.get(gw.url("/p/openai/models")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body = error_json(resp).await;
    assert_eq!(body["error"]["type"], "not_found_error");
    let msg = body["error"]["message"].to_string();
    assert!(msg.contains("OPENAI_API_KEY"), "{msg}");
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_routes_can_be_switched_off() {
    let mock = ok_mock().await;
    let gw = gateway_for(&mock, "server:\n  enable_passthrough_routes: false\n", &[]);
    let resp = authed(client().get(gw.url("/p/openai/models")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_statuses_headers_and_bodies_come_back_unchanged() {
    let mock = MockUpstream::start(|r| {
        let code: u16 = r.uri.rsplit('/').next().unwrap().parse().unwrap();
        Reply::Full {
            status: code,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-provider-thing".into(), "v".into()),
                ("set-cookie".into(), "tracking=1".into()),
                ("location".into(), "https://elsewhere.example/".into()),
            ],
            body: if code == 204 || code == 304 {
                bytes::Bytes::new()
            } else {
                format!("{{\"status\":{code}}}").into()
            },
        }
    })
    .await;
    let gw = gateway_for(&mock, "", &[]);
    let c = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for code in [200u16, 201, 202, 204, 301, 302, 400, 404, 422, 500, 503] {
        let resp = authed(c.post(gw.url(&format!("/p/openai/status/{code}"))))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), code);
        assert_eq!(resp.headers()["x-provider-thing"], "v");
        assert!(resp.headers().get("set-cookie").is_none());
        let body = resp.bytes().await.unwrap();
        if code == 204 {
            assert!(body.is_empty());
        } else {
            assert_eq!(body, format!("{{\"status\":{code}}}").as_bytes());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_and_204_carry_no_body() {
    let mock = MockUpstream::start(|r| {
        if r.method == "HEAD" {
            Reply::Full {
                status: 200,
                headers: vec![("content-length".into(), "42".into())],
                body: bytes::Bytes::new(),
            }
        } else {
            Reply::Full {
                status: 204,
                headers: vec![],
                body: bytes::Bytes::new(),
            }
        }
    })
    .await;
    let gw = gateway_for(&mock, "", &[]);
    let head = raw_request(
        &gw.addr(),
        &format!("HEAD /p/openai/files/f HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MASTER}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let del = raw_request(
        &gw.addr(),
        &format!("DELETE /p/openai/files/f HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MASTER}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(del.status, 204);
    assert!(del.body.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_events_reach_the_client_as_they_are_produced() {
    const EVENTS: usize = 5;
    let mock = MockUpstream::start(|_| Reply::Stream {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        chunks: (0..EVENTS)
            .map(|i| {
                (
                    Duration::from_millis(if i == 0 { 0 } else { 200 }),
                    bytes::Bytes::from(format!("event: tick\ndata: {{\"n\":{i}}}\n\n")),
                )
            })
            .collect(),
    })
    .await;
    let gw = gateway_for(&mock, "", &[]);
    let mut resp = authed(client().post(gw.url("/p/anthropic/v1/messages")))
        .body(r#"{"stream":true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    let mut arrived = Vec::new();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        while arrived.len() < text.matches("\n\n").count() {
            arrived.push(Instant::now());
        }
    }
    assert_eq!(arrived.len(), EVENTS, "{text}");
    let sent = mock.chunk_sent_at.lock().unwrap().clone();
    for i in 0..EVENTS - 1 {
        assert!(
            arrived[i] < sent[i + 1],
            "event {i} was held back until event {} was sent",
            i + 1
        );
    }
    assert_eq!(
        text,
        (0..EVENTS)
            .map(|i| format!("event: tick\ndata: {{\"n\":{i}}}\n\n"))
            .collect::<String>()
    );
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[0] ^ seed)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_bodies_arrive_hash_identical_both_ways() {
    const SIZE: usize = 20 * 1024 * 1024 + 7;
    let download = bytes::Bytes::from(pattern(SIZE, 0x5a));
    let download_hash = Sha256::digest(&download);
    let served = download.clone();
    let mock = MockUpstream::start(move |_| Reply::Full {
        status: 200,
        headers: vec![("content-type".into(), "application/octet-stream".into())],
        body: served.clone(),
    })
    .await;
    let gw = gateway_for(&mock, "", &[("BODY_SIZE_LIMIT", "64MiB")]);
    let upload = pattern(SIZE, 0xa5);
    let upload_hash = Sha256::digest(&upload);
    let resp = authed(client().post(gw.url("/p/openai/files")))
        .header("content-type", "application/octet-stream")
        .body(upload)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = resp.bytes().await.unwrap();
    assert_eq!(got.len(), SIZE);
    assert_eq!(Sha256::digest(&got), download_hash);
    let rec = mock.last();
    assert_eq!(rec.body.len(), SIZE);
    assert_eq!(Sha256::digest(&rec.body), upload_hash);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_429_reaches_the_client_untouched() {
    let body = r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#;
    let mock = MockUpstream::start(move |_| Reply::Full {
        status: 429,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("retry-after".into(), "17".into()),
            ("anthropic-ratelimit-requests-remaining".into(), "0".into()),
            ("x-ratelimit-reset-requests".into(), "1s".into()),
        ],
        body: body.into(),
    })
    .await;
    let gw = gateway_for(&mock, "", &[]);
    let resp = authed(client().post(gw.url("/p/anthropic/v1/messages")))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "17");
    assert_eq!(
        resp.headers()["anthropic-ratelimit-requests-remaining"],
        "0"
    );
    assert_eq!(resp.headers()["x-ratelimit-reset-requests"], "1s");
    assert_eq!(resp.text().await.unwrap(), body);
}

/// A Messages call as an Anthropic SDK sends it, with gateway key `key` and, when
/// `version` is given, the `anthropic-version` every Anthropic SDK call carries.
async fn anthropic_style_call(
    gw: &Gateway,
    path: &str,
    key: &str,
    version: Option<&str>,
) -> reqwest::Response {
    let mut request = client()
        .post(gw.url(path))
        .header("x-api-key", key)
        .header("content-type", "application/json")
        .body(r#"{"model":"claude-sonnet-4-5","max_tokens":8,"messages":[]}"#);
    if let Some(version) = version {
        request = request.header("anthropic-version", version);
    }
    request.send().await.unwrap()
}

/// Asserts that `body` is Anthropic's error envelope of `error_type`, and nothing of
/// OpenAI's.
fn assert_anthropic_envelope(body: &serde_json::Value, error_type: &str) {
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], error_type, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    let error = body["error"].as_object().unwrap();
    assert!(
        !error.contains_key("code") && !error.contains_key("param"),
        "{body}"
    );
}

/// Asserts that `body` is OpenAI's error envelope of `error_type`.
fn assert_openai_envelope(body: &serde_json::Value, error_type: &str) {
    assert!(body.get("type").is_none(), "{body}");
    assert_eq!(body["error"]["type"], error_type, "{body}");
    let error = body["error"].as_object().unwrap();
    assert!(
        error.contains_key("code") && error.contains_key("param"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_gateway_key_from_an_anthropic_client_is_refused_in_anthropics_envelope() {
    // Claude Code or an Anthropic SDK with its base URL at /p/anthropic reads this
    // envelope to raise its own AuthenticationError.
    let mock = ok_mock().await;
    let gw = gateway_for(&mock, "", &[]);
    let resp = anthropic_style_call(
        &gw,
        "/p/anthropic/v1/messages",
        "not-the-gateway-key",
        Some("2023-06-01"),
    )
    .await;
    assert_eq!(resp.status(), 401);
    // Named where the Anthropic SDKs read a failed call's id, as the access log has it.
    let id = resp.headers()["x-aurora-request-id"].clone();
    assert_eq!(resp.headers()["request-id"], id);
    assert!(!resp.headers().contains_key("x-request-id"));
    let err = error_json(resp).await;
    assert_anthropic_envelope(&err, "authentication_error");
    assert_eq!(err["request_id"], id.to_str().unwrap());
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_client_at_anthropics_compatible_endpoint_keeps_openais_envelope() {
    // The OpenAI SDK at Anthropic's OpenAI-compatible endpoint sends no
    // `anthropic-version`: it reads OpenAI's envelope.
    let mock = ok_mock().await;
    let gw = gateway_for(&mock, "", &[]);
    let resp = client()
        .post(gw.url("/p/anthropic/v1/chat/completions"))
        .bearer_auth("not-the-gateway-key")
        .header("content-type", "application/json")
        .body(r#"{"model":"claude-sonnet-4-5","messages":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // Named where the OpenAI SDKs read a failed call's id.
    assert_eq!(
        resp.headers()["x-request-id"],
        resp.headers()["x-aurora-request-id"]
    );
    assert!(!resp.headers().contains_key("request-id"));
    assert_openai_envelope(&error_json(resp).await, "authentication_error");
    let resp =
        anthropic_style_call(&gw, "/p/anthropic/v1/messages", "not-the-gateway-key", None).await;
    assert_eq!(resp.status(), 401);
    assert_openai_envelope(&error_json(resp).await, "authentication_error");
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_format_providers_own_endpoints_refuse_in_openais_envelope_whatever_the_client_sends(
) {
    let mock = ok_mock().await;
    let gw = gateway_for(&mock, "", &[]);
    for path in [
        "/p/openai/v1/chat/completions",
        "/p/openai/v1/threads/thread_1/messages",
    ] {
        let resp = anthropic_style_call(&gw, path, "not-the-gateway-key", Some("2023-06-01")).await;
        assert_eq!(resp.status(), 401, "{path}");
        assert_openai_envelope(&error_json(resp).await, "authentication_error");
    }
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anthropic_client_at_an_openai_format_servers_messages_endpoint_is_refused_in_anthropics_envelope(
) {
    // vLLM's and Ollama's `v1/messages`, DeepSeek's `anthropic/v1/messages`: Claude
    // Code pointed at them through the gateway reads Anthropic's envelope.
    let mock = ok_mock().await;
    let gw = gateway_for(&mock, "", &[]);
    for path in [
        "/p/openai/v1/messages",
        "/p/openai/anthropic/v1/messages/count_tokens",
    ] {
        let resp = anthropic_style_call(&gw, path, "not-the-gateway-key", Some("2023-06-01")).await;
        assert_eq!(resp.status(), 401, "{path}");
        let body = error_json(resp).await;
        assert_eq!(body["type"], "error", "{path}: {body}");
        assert_eq!(
            body["error"]["type"], "authentication_error",
            "{path}: {body}"
        );
    }
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_at_an_anthropic_format_provider_is_in_anthropics_envelope() {
    // A caller-key Anthropic, and another vendor's Anthropic-format endpoint that
    // cannot be reached: each error the gateway raises reads as Anthropic's own.
    let mock = ok_mock().await;
    let dead = format!("http://127.0.0.1:{}/v1", common::closed_port());
    let yaml = format!(
        "providers:\n  anthropic:\n    api_key: \"!PASSTHRU\"\n    base_url: '{}'\n  glm:\n    type: openai\n    format: anthropic\n    api_key: glm-provider-test\n    base_url: '{dead}'\nserver:\n  enabled_passthrough_providers: [anthropic, glm]\n",
        mock.url("/v1"),
    );
    let gw = Gateway::start(&yaml, &[("AURORA_MASTER_KEY", MASTER)]);
    let refusals = [
        // The gateway key alone: the caller's own Anthropic key is missing.
        ("/p/anthropic/v1/messages", 401, "authentication_error"),
        ("/p/anthropic/v1/a%5Cb", 400, "invalid_request_error"),
        ("/p/glm/v1/messages", 502, "api_error"),
    ];
    for (path, status, error_type) in refusals {
        let resp = anthropic_style_call(&gw, path, MASTER, Some("2023-06-01")).await;
        assert_eq!(resp.status(), status, "{path}");
        assert_anthropic_envelope(&error_json(resp).await, error_type);
    }
    assert!(mock.requests().is_empty());
}

/// The `data:` payloads of an event stream, in order.
fn event_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|e| e.trim().strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

/// A mock that answers Chat calls as OpenAI does, streams with their usage only when
/// asked, and anything else with `{"ok":true}`.
async fn openai_chat_mock() -> MockUpstream {
    MockUpstream::start(|rec| {
        if rec.uri != "/v1/chat/completions" {
            return Reply::json(200, r#"{"ok":true}"#);
        }
        if let Some(refusal) = common::mock::provider_rules::openai_chat_refusal(rec) {
            return refusal;
        }
        if rec.body.windows(13).any(|w| w == br#""stream":true"#) {
            let stream = common::mock::provider_rules::openai_chat_stream(rec);
            // `x-pace-ms`: the stream's events that far apart.
            return match (rec.header("x-pace-ms"), stream) {
                (Some(ms), Reply::Stream { chunks, .. }) => Reply::paced_sse(
                    chunks.into_iter().map(|(_, c)| c),
                    Duration::from_millis(ms.parse().unwrap()),
                ),
                (_, stream) => stream,
            };
        }
        Reply::json(200, r#"{"object":"chat.completion"}"#)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_stream_is_asked_for_its_usage_which_only_a_client_that_asked_sees() {
    let mock = openai_chat_mock().await;
    let gw = gateway_for(&mock, "", &[]);
    let post = |body: String| {
        authed(client().post(gw.url("/p/openai/chat/completions")))
            .header("content-type", "application/json")
            .header("accept-encoding", "gzip, br")
            .body(body)
            .send()
    };
    let request = |options: &str| {
        format!(
            r#"{{"model":"gpt-4o-mini", "stream":true{options},"messages":[{{"role":"user","content":"hi"}}]}}"#
        )
    };
    let recorded = event_data(&common::fixture("openai/chat_completion_stream.txt"));

    // Not asked by the client: asked by the gateway, every other byte as sent, and the
    // usage-only chunk kept from the client.
    let resp = post(request("")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let sent = mock.last();
    assert_eq!(
        String::from_utf8(sent.body.to_vec()).unwrap(),
        r#"{"model":"gpt-4o-mini", "stream":true,"messages":[{"role":"user","content":"hi"}],"stream_options":{"include_usage":true}}"#,
    );
    // Read whole before it went: sent with its exact length.
    assert_eq!(
        sent.header("content-length"),
        Some(sent.body.len().to_string().as_str())
    );
    assert_eq!(sent.header("transfer-encoding"), None);
    assert_eq!(sent.header("accept-encoding"), Some("identity"));
    let data = event_data(&text);
    assert_eq!(data.len(), recorded.len(), "{text}");
    assert!(!text.contains(r#""choices":[]"#), "{text}");

    // Asked by the client: its body byte for byte, and the usage chunk reaches it.
    let asked = request(r#","stream_options":{"include_usage":true}"#);
    let text = post(asked.clone()).await.unwrap().text().await.unwrap();
    assert_eq!(mock.last().body, asked.as_bytes());
    let data = event_data(&text);
    assert_eq!(data.len(), recorded.len() + 1, "{text}");
    let usage: serde_json::Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["total_tokens"], 21);

    // Not a stream: byte for byte, and answered as the provider answered.
    let whole = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let resp = post(whole.to_string()).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.text().await.unwrap(),
        r#"{"object":"chat.completion"}"#
    );
    assert_eq!(mock.last().body, whole.as_bytes());

    // Past Pingora's 64 KiB replay buffer (through a subrequest), and sent by the
    // client in chunks: asked, with an exact length all the same.
    let large = request(&format!(r#","user":"{}""#, "u".repeat(100 * 1024)));
    let chunks: Vec<Result<String, std::io::Error>> = large
        .as_bytes()
        .chunks(16 * 1024)
        .map(|c| Ok(String::from_utf8(c.to_vec()).unwrap()))
        .collect();
    let resp = authed(client().post(gw.url("/p/openai/chat/completions")))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(!text.contains(r#""choices":[]"#), "{text}");
    assert_eq!(event_data(&text).len(), recorded.len(), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let sent = mock.last();
    assert!(sent
        .body
        .ends_with(br#""stream_options":{"include_usage":true}}"#));
    assert_eq!(
        sent.body.len(),
        large.len() + r#","stream_options":{"include_usage":true}"#.len()
    );
    assert_eq!(
        sent.header("content-length"),
        Some(sent.body.len().to_string().as_str())
    );

    // The legacy completions endpoint, and paths with empty segments, are asked too.
    let prompt = r#"{"model":"gpt-3.5-turbo-instruct","prompt":"hi","stream":true}"#;
    for path in [
        "/p/openai/completions",
        "/p/openai/v1/chat/completions/",
        "/p/openai/chat//completions",
    ] {
        let resp = authed(client().post(gw.url(path)))
            .body(prompt)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let sent: serde_json::Value = serde_json::from_slice(&mock.last().body).unwrap();
        assert_eq!(sent["stream_options"]["include_usage"], true, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_body_the_gateway_cannot_read_is_refused_as_on_v1() {
    // Sent on unread, a stream in it would go uncounted.
    let mock = openai_chat_mock().await;
    let gw = gateway_for(&mock, "", &[]);
    let deep = format!(
        r#"{{"model":"gpt-4o-mini","stream":true,"tools":{}{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    for (body, param) in [
        (r#"{"model":"gpt-4o-mini","stream":true"#.to_string(), None),
        (deep, None),
        (
            r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"stream_options":null}"#.to_string(),
            Some("stream_options"),
        ),
        // A server reading `1` as true, or `Stream` as `stream` (Go's JSON), would
        // stream it, unasked.
        (
            r#"{"model":"gpt-4o-mini","stream":1}"#.to_string(),
            Some("stream"),
        ),
        (
            r#"{"model":"gpt-4o-mini","Stream":true}"#.to_string(),
            Some("stream"),
        ),
    ] {
        let resp = authed(client().post(gw.url("/p/openai/chat/completions")))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let err = error_json(resp).await;
        assert_eq!(err["error"]["type"], "invalid_request_error", "{err}");
        assert_eq!(err["error"]["param"].as_str(), param, "{err}");
    }
    // Refused before anything reached the provider.
    assert!(mock.requests().is_empty());
    // No body at all goes as it came, framed as it came: the provider judges it.
    let resp = authed(client().post(gw.url("/p/openai/chat/completions")))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "the provider's refusal");
    let sent = mock.last();
    assert!(sent.body.is_empty());
    assert_eq!(sent.header("content-length"), Some("0"));
    assert_eq!(sent.header("transfer-encoding"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_chat_calls_to_providers_that_report_usage_when_asked_are_held() {
    let mock = openai_chat_mock().await;
    let yaml = format!(
        "providers:\n  quiet:\n    type: openai\n    api_key: quiet-key\n    base_url: {}\n    ask_stream_usage: false\nserver:\n  enabled_passthrough_providers: [openai, quiet]\n",
        mock.url("/v1")
    );
    let gw = gateway_for(&mock, &yaml, &[]);
    let stream =
        r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    for path in ["/p/quiet/chat/completions", "/p/openai/embeddings"] {
        let resp = authed(client().post(gw.url(path)))
            .header("accept-encoding", "gzip")
            .body(stream)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let sent = mock.last();
        assert_eq!(sent.body, stream.as_bytes(), "{path}");
        assert_eq!(sent.header("content-length"), Some("81"), "{path}");
        // Every answer is asked for plain, to be metered (see `limits`).
        assert_eq!(sent.header("accept-encoding"), Some("identity"), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_chat_body_counts_against_what_the_gateway_may_hold() {
    let mock = openai_chat_mock().await;
    let gw = gateway_for(&mock, "server:\n  max_buffered_bytes: 10KiB\n", &[]);
    let content = "x".repeat(20 * 1024);
    let big = format!(
        r#"{{"model":"gpt-4o-mini","stream":true,"messages":[{{"role":"user","content":"{content}"}}]}}"#
    );
    let resp = authed(client().post(gw.url("/p/openai/chat/completions")))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert!(mock.requests().is_empty(), "refused before anything went");
    // A held body is held until its request ends, as a `/v1` body is (Pingora keeps
    // its copy as long): while a first stream goes on, a second that does not fit
    // beside it is refused; once the first has ended, it goes.
    let fits = format!(
        r#"{{"model":"gpt-4o-mini","stream":true,"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(6 * 1024)
    );
    let first = authed(client().post(gw.url("/p/openai/chat/completions")))
        .header("x-pace-ms", "400")
        .body(fits.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let second = || {
        authed(client().post(gw.url("/p/openai/chat/completions")))
            .body(fits.clone())
            .send()
    };
    let refused = second().await.unwrap();
    assert_eq!(refused.status(), 503, "while the first stream goes on");
    assert!(first.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    gw.wait_for_log("status=200", 1).await;
    assert_eq!(second().await.unwrap().status(), 200, "once it has ended");
    // A body that streams on is not held: an upload of any size goes.
    let resp = authed(client().post(gw.url("/p/openai/files")))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(mock.last().body.len(), big.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_batchs_results_url_points_at_the_gateway() {
    // The SDKs fetch a batch's `results_url` as given: at the provider, they would
    // send the gateway's key there and be refused. Through `/p/` it names the same
    // endpoint below the gateway, where the provider's key is put in.
    let mock = MockUpstream::start(|rec| {
        // Its own address, as the gateway reached it.
        let results = format!(
            "http://{}/v1/messages/batches/msgbatch_1/results",
            rec.header("host").unwrap_or_default()
        );
        match rec.uri.as_str() {
            _ if rec.header("x-api-key") != Some(ANT_KEY) => Reply::json(401, "{}"),
            "/v1/messages/batches/msgbatch_1" => Reply::json(
                200,
                format!(
                    r#"{{"id":"msgbatch_1","type":"message_batch","processing_status":"ended","request_counts":{{"processing":0,"succeeded":1,"errored":0,"canceled":0,"expired":0}},"results_url":"{results}"}}"#
                ),
            ),
            "/v1/messages/batches?limit=2" => Reply::json(
                200,
                format!(
                    r#"{{"data":[{{"id":"msgbatch_1","type":"message_batch","results_url":"{results}"}},{{"id":"msgbatch_2","type":"message_batch","results_url":null}}],"has_more":false}}"#
                ),
            ),
            "/v1/messages/batches/msgbatch_1/results" => Reply::Full {
                status: 200,
                headers: vec![("content-type".into(), "application/binary".into())],
                body: "{\"custom_id\":\"a\",\"result\":{\"type\":\"canceled\"}}\n".into(),
            },
            _ => Reply::json(404, "{}"),
        }
    })
    .await;
    let gw = gateway_for(&mock, "", &[]);
    let c = client();
    let expected = gw.url("/p/anthropic/v1/messages/batches/msgbatch_1/results");
    let batch = authed(c.get(gw.url("/p/anthropic/v1/messages/batches/msgbatch_1")))
        .send()
        .await
        .unwrap();
    assert_eq!(batch.status(), 200);
    assert!(batch.headers().get("content-length").is_none());
    let batch: serde_json::Value = batch.json().await.unwrap();
    assert_eq!(batch["results_url"], expected.as_str());
    assert_eq!(batch["request_counts"]["succeeded"], 1);
    let page = common::get_json(&gw.url("/p/anthropic/v1/messages/batches?limit=2"), MASTER).await;
    assert_eq!(page["data"][0]["results_url"], expected.as_str());
    assert!(page["data"][1]["results_url"].is_null());
    // The rewritten address serves the results, with the provider's key.
    let results = authed(c.get(&expected)).send().await.unwrap();
    assert_eq!(results.status(), 200);
    assert!(results
        .text()
        .await
        .unwrap()
        .contains("\"custom_id\":\"a\""));
}
