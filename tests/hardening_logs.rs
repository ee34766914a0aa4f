//! What the gateway writes to its log and which providers it reaches: no credential at
//! any log level, one access line per request whatever a client names, only configured
//! providers, and both request ids (the gateway's and the provider's).

mod common;

use std::time::Duration;

use common::{client, closed_port, fixture, raw_request, Gateway, MockUpstream, Recorded, Reply};
use serde_json::{json, Value};

const MASTER: &str = "gw-master-SECRET-logs-test-012345678";
const MANAGED: &str = "sk-aurora-managed-SECRET-logs-test";
const WRONG: &str = "gw-wrong-SECRET-logs-test";
const HELD_ANTHROPIC: &str = "sk-ant-held-SECRET-logs-test";
const HELD_GROQ: &str = "gsk-held-SECRET-logs-test";
/// A credential in a configured provider header of no credential name (as Azure's
/// `api-key`).
const CONFIGURED_HEADER: &str = "azure-SECRET-in-a-configured-header";
const CALLER: &str = "sk-caller-own-SECRET-logs-test";
const QUERY_KEY: &str = "AIza-query-SECRET-logs-test";

const PROVIDER_REQUEST_ID: &str = "req_provider_0123";

/// Answers like each provider would, with the provider's own `X-Request-Id`; any path
/// ending in `/fail` is a provider error.
fn provider_like(rec: &Recorded) -> Reply {
    let (status, body) = if rec.uri.ends_with("/fail") {
        (500, r#"{"error":{"message":"boom"}}"#.to_string())
    } else if rec.uri == "/v1/messages" {
        (200, fixture("anthropic/messages.json"))
    } else if rec.uri == "/v1/chat/completions" {
        (200, fixture("openai/chat_completion.json"))
    } else {
        (200, r#"{"object":"list","data":[]}"#.to_string())
    };
    Reply::Full {
        status,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-request-id".into(), PROVIDER_REQUEST_ID.into()),
        ],
        body: body.into(),
    }
}

fn sha256_hex(key: &str) -> String {
    hex::encode(aurora::auth::sha256(key.as_bytes()))
}

/// Anthropic with a held key and OpenAI as `!PASSTHRU`, both at `mock`; Groq with a held
/// key at a port nobody listens on; a master key and a managed key.
fn gateway(mock: &MockUpstream, rust_log: &str) -> Gateway {
    let yaml = format!(
        "server:
  enabled_passthrough_providers: [openai, anthropic, groq]
auth:
  keys:
    - {{name: ci, sha256: \"{managed}\"}}
providers:
  anthropic:
    api_key: {HELD_ANTHROPIC}
    base_url: {base}
    headers: {{api-key: {CONFIGURED_HEADER}}}
  openai:
    api_key: \"!PASSTHRU\"
    base_url: {base}
  groq:
    api_key: {HELD_GROQ}
    base_url: http://127.0.0.1:{dead}/v1
",
        managed = sha256_hex(MANAGED),
        base = mock.url("/v1"),
        dead = closed_port(),
    );
    Gateway::start(
        &yaml,
        &[("AURORA_MASTER_KEY", MASTER), ("RUST_LOG", rust_log)],
    )
}

fn chat(model: &str) -> String {
    json!({"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
        .to_string()
}

async fn send(
    gw: &Gateway,
    method: &str,
    path: &str,
    body: Option<String>,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut rb = client().request(method.parse().unwrap(), gw.url(path));
    if let Some(body) = body {
        rb = rb.header("content-type", "application/json").body(body);
    }
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().await.unwrap()
}

/// The access lines of requests other than readiness probes.
fn access_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("aurora::access") && !l.contains("route=health"))
        .collect()
}

/// The log once it holds `count` access lines (other than readiness probes).
async fn log_with_access_lines(gw: &Gateway, count: usize) -> String {
    for _ in 0..250 {
        let log = gw.log();
        if access_lines(&log).len() >= count {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.log()
}

/// One request of a test and the status it must get.
struct Call {
    method: &'static str,
    path: String,
    body: Option<String>,
    headers: Vec<(&'static str, String)>,
    status: u16,
}

impl Call {
    fn get(path: &str, status: u16) -> Self {
        Call {
            method: "GET",
            path: path.to_string(),
            body: None,
            headers: Vec::new(),
            status,
        }
    }

    fn post(path: &str, body: String, status: u16) -> Self {
        Call {
            method: "POST",
            body: Some(body),
            ..Call::get(path, status)
        }
    }

    fn with(mut self, headers: &[(&'static str, &str)]) -> Self {
        self.headers = headers.iter().map(|(k, v)| (*k, v.to_string())).collect();
        self
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_reaches_the_log_at_trace() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway(&mock, "trace");
    let master = format!("Bearer {MASTER}");
    let managed = format!("Bearer {MANAGED}");
    let wrong = format!("Bearer {WRONG}");
    let cookie = format!("session={MASTER}");
    let path_with_key = format!("/p/anthropic/v1/models?key={QUERY_KEY}");
    let unreachable = format!("/p/groq/models?key={QUERY_KEY}");
    let cases = [
        // A `!PASSTHRU` caller with a managed gateway key.
        Call::post("/p/openai/chat/completions", chat("gpt-4o-mini"), 200)
            .with(&[("authorization", &managed), ("x-provider-api-key", CALLER)]),
        // Translated to the Anthropic-format mock with the gateway's held key.
        Call::post(
            "/v1/chat/completions",
            chat("anthropic/claude-sonnet-4-5"),
            200,
        )
        .with(&[("authorization", &master), ("cookie", &cookie)]),
        // A held key on `/p/`, with a key in the query string too.
        Call::get(&path_with_key, 200).with(&[("x-api-key", MASTER)]),
        // A wrong gateway key.
        Call::get("/p/anthropic/v1/models", 401).with(&[("authorization", &wrong)]),
        // The provider answers with an error.
        Call::post("/p/openai/fail", "{}".into(), 500)
            .with(&[("authorization", &master), ("x-api-key", CALLER)]),
        // The provider cannot be reached: Pingora's own error line names the request.
        Call::get(&unreachable, 502).with(&[("authorization", &master)]),
    ];
    let count = cases.len();
    for call in cases {
        let headers: Vec<(&str, &str)> =
            call.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let resp = send(&gw, call.method, &call.path, call.body, &headers).await;
        assert_eq!(resp.status().as_u16(), call.status, "{}", call.path);
        resp.bytes().await.unwrap();
    }
    // A request Pingora cannot parse, carrying a key: its parser error quotes the bytes.
    let garbled = raw_request(
        &gw.addr(),
        &format!("GET /health HTTP/1.1\r\nAuthorization: Bearer {MASTER}\r\nno colon here\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(garbled.status, 400);
    assert_eq!(mock.requests().len(), 4, "{:?}", mock.requests());

    let log = log_with_access_lines(&gw, count).await;
    assert_eq!(access_lines(&log).len(), count, "{log}");
    assert!(log.contains(" TRACE "), "no trace line: {log}");
    for secret in [
        MASTER,
        MANAGED,
        WRONG,
        HELD_ANTHROPIC,
        HELD_GROQ,
        CALLER,
        QUERY_KEY,
        CONFIGURED_HEADER,
    ] {
        assert!(!log.contains(secret), "`{secret}` is in the log:\n{log}");
    }
    assert!(
        log.contains("authorization: <redacted>") || log.contains("x-api-key: <redacted>"),
        "the header trace line is missing: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_request_id_cannot_erase_the_rest_of_its_access_line() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway(&mock, "info");
    let auth = format!("Bearer {MASTER}");
    // Request ids the gateway keeps (printable ASCII), each looking like a credential
    // header, whose redaction would run to the end of the line.
    let ids = ["x-api-key:z", "authorization:z", "Cookie:a"];
    for id in ids {
        let headers = [("authorization", auth.as_str()), ("x-request-id", id)];
        let body = Some(chat("anthropic/claude-sonnet-4-5"));
        let resp = send(&gw, "POST", "/v1/messages", body, &headers).await;
        assert_eq!(resp.status(), 200, "{id}");
        resp.bytes().await.unwrap();
    }
    let log = log_with_access_lines(&gw, ids.len()).await;
    let lines = access_lines(&log);
    assert_eq!(lines.len(), ids.len(), "{log}");
    for line in lines {
        for field in ["key_name=master", "status=200", "provider=anthropic"] {
            assert!(line.contains(field), "{field} erased: {line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_names_with_line_breaks_cannot_forge_access_lines() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway(&mock, "info");
    let auth = format!("Bearer {MASTER}");
    let forged =
        "\n[2026-01-01T00:00:00Z INFO  aurora::access] FORGED request_id=forged status=200";
    let headers = [("authorization", auth.as_str())];
    let requests: Vec<(&str, String, Option<String>)> = vec![
        // A `/p/` provider name holding an encoded line break.
        (
            "GET",
            "/p/evil%0A%5B2026%5D%20FORGED%20request_id=forged/models".to_string(),
            None,
        ),
        ("POST", "/v1/chat/completions".into(), Some(chat(forged))),
        (
            "POST",
            "/v1/messages".into(),
            Some(chat(&format!("x\r{forged}"))),
        ),
        (
            "POST",
            "/v1/chat/completions".into(),
            Some(chat("\u{1b}[2J\u{7}\"quoted\"\\")),
        ),
    ];
    let count = requests.len();
    for (method, path, body) in requests {
        let resp = send(&gw, method, &path, body, &headers).await;
        assert!(resp.status().is_client_error(), "{path}: {}", resp.status());
        resp.bytes().await.unwrap();
    }
    let log = log_with_access_lines(&gw, count).await;
    let lines = access_lines(&log);
    assert_eq!(lines.len(), count, "{log}");
    for line in log.lines() {
        assert!(
            !line.contains("FORGED") || line.contains("] request_id="),
            "{line}"
        );
        assert!(!line.starts_with("[2026-01-01"), "forged line: {line}");
    }
    assert!(
        log.contains(r"\n[2026-01-01T00:00:00Z INFO  aurora::access] FORGED"),
        "{log}"
    );
    assert!(log.contains(r"x\r\n[2026"), "{log}");
    assert!(log.contains(r#"\u{1b}[2J\u{7}\"quoted\"\\"#), "{log}");
    assert!(!log.contains('\u{1b}'), "raw escape in the log");
    assert!(!log.contains('\r'), "raw carriage return in the log");
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfigured_builtin_type_is_404_on_every_route_while_one_configured_by_env_works() {
    let mock = MockUpstream::start(provider_like).await;
    let base = mock.url("/v1");
    let gw = Gateway::start(
        "",
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("OPENAI_API_KEY", "sk-openai-held-test"),
            ("OPENAI_BASE_URL", base.as_str()),
        ],
    );
    let auth = format!("Bearer {MASTER}");
    let headers = [("authorization", auth.as_str())];
    let refused: [(&str, &str, Option<String>, &str); 5] = [
        ("GET", "/p/vllm/models", None, "VLLM_BASE_URL"),
        ("GET", "/p/anthropic/v1/models", None, "ANTHROPIC_API_KEY"),
        (
            "POST",
            "/v1/chat/completions",
            Some(chat("vllm/llama-3")),
            "VLLM_BASE_URL",
        ),
        (
            "POST",
            "/v1/chat/completions",
            Some(chat("anthropic:claude-sonnet-4-5")),
            "ANTHROPIC_API_KEY",
        ),
        ("GET", "/v1/models/vllm/llama-3", None, ""),
    ];
    for (method, path, body, variable) in refused {
        let resp = send(&gw, method, path, body, &headers).await;
        assert_eq!(resp.status(), 404, "{method} {path}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["type"], "not_found_error", "{path}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(variable), "{path}: {msg}");
    }
    // Only the model directory's listing of the configured provider went out.
    let chats = || {
        mock.requests()
            .iter()
            .filter(|r| r.uri != "/v1/models")
            .count()
    };
    assert_eq!(chats(), 0, "{:?}", mock.requests());

    let resp = send(
        &gw,
        "POST",
        "/p/openai/chat/completions",
        Some(chat("gpt-4o-mini")),
        &headers,
    )
    .await;
    assert_eq!(resp.status(), 200);
    let resp = send(
        &gw,
        "POST",
        "/v1/chat/completions",
        Some(chat("openai/gpt-4o-mini")),
        &headers,
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(chats(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_request_id_is_kept_and_gateway_id_comes_as_x_aurora_request_id() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway(&mock, "info");
    let auth = format!("Bearer {MASTER}");
    let with_id = |id: &'static str| {
        vec![
            ("authorization", auth.clone()),
            ("x-request-id", id.to_string()),
        ]
    };

    // Passthrough and translated: the provider's id as sent, the gateway's beside it.
    for (method, path, body, id) in [
        (
            "GET",
            "/p/anthropic/v1/models",
            None,
            "client-id-passthrough",
        ),
        (
            "POST",
            "/v1/chat/completions",
            Some(chat("anthropic/claude-sonnet-4-5")),
            "client-id-translated",
        ),
    ] {
        let headers = with_id(id);
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let resp = send(&gw, method, path, body, &pairs).await;
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(
            resp.headers()["x-request-id"],
            PROVIDER_REQUEST_ID,
            "{path}"
        );
        assert_eq!(resp.headers()["x-aurora-request-id"], id, "{path}");
        assert_eq!(mock.last().header("x-request-id"), Some(id), "{path}");
        resp.bytes().await.unwrap();
    }

    // A gateway-made error is named by the gateway's id, fresh when the client sent
    // none, also where the OpenAI SDKs read a failed call's id: no provider answered.
    let resp = send(&gw, "GET", "/p/anthropic/v1/models", None, &[]).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["x-request-id"],
        resp.headers()["x-aurora-request-id"]
    );
    let fresh = resp.headers()["x-aurora-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(fresh.len(), 36, "{fresh}");
    let resp = send(&gw, "GET", "/health", None, &[]).await;
    assert!(resp.headers().get("x-request-id").is_none());
    assert!(resp.headers().contains_key("x-aurora-request-id"));
    let headers = with_id("client-id-error");
    let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let resp = send(&gw, "GET", "/p/groq/models", None, &pairs).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["x-request-id"], "client-id-error");
    assert_eq!(resp.headers()["x-aurora-request-id"], "client-id-error");

    let log = log_with_access_lines(&gw, 4).await;
    for (ours, theirs) in [
        ("client-id-passthrough", PROVIDER_REQUEST_ID),
        ("client-id-translated", PROVIDER_REQUEST_ID),
        (fresh.as_str(), "-"),
        ("client-id-error", "-"),
    ] {
        let expected = format!("request_id={ours} upstream_request_id={theirs} ");
        assert!(log.contains(&expected), "`{expected}` missing:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_address_headers_never_reach_the_provider() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway(&mock, "info");
    let auth = format!("Bearer {MASTER}");
    let headers = [
        ("authorization", auth.as_str()),
        ("x-real-ip", "203.0.113.7"),
        ("true-client-ip", "203.0.113.7"),
        ("forwarded", "for=203.0.113.7"),
        ("x-forwarded-for", "203.0.113.7"),
        ("x-custom", "kept"),
    ];
    let resp = send(&gw, "GET", "/p/anthropic/v1/models", None, &headers).await;
    assert_eq!(resp.status(), 200);
    let rec = mock.last();
    for gone in [
        "x-real-ip",
        "true-client-ip",
        "forwarded",
        "x-forwarded-for",
    ] {
        assert!(rec.header(gone).is_none(), "{gone} reached the provider");
    }
    assert_eq!(rec.header("x-custom"), Some("kept"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_model_method_or_path_of_key_names_is_clipped_and_stalls_no_access_line() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = gateway(&mock, "info");
    // No key needed for the first: a path of credential names the redaction would once
    // read once per name; with a key, a model of megabytes that a 400 repeats.
    let path = format!("/{}", "key=".repeat(14 * 1024));
    let resp = send(&gw, "GET", &path, None, &[]).await;
    assert_eq!(resp.status(), 401);
    // A method is the client's text too, of any length.
    let method = "A".repeat(60 * 1024);
    let resp = send(&gw, &method, "/v1/chat/completions", None, &[]).await;
    assert_eq!(resp.status(), 401);
    let auth = format!("Bearer {MASTER}");
    let model = format!("made-up-{}", "x".repeat(2 << 20));
    let body = Some(chat(&model));
    let resp = send(
        &gw,
        "POST",
        "/v1/chat/completions",
        body,
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(resp.status(), 400);
    resp.bytes().await.unwrap();
    // Both lines are written at once, and short.
    let log = log_with_access_lines(&gw, 3).await;
    let lines = access_lines(&log);
    assert_eq!(lines.len(), 3, "{}", &log[..log.len().min(2000)]);
    for line in &lines {
        assert!(line.len() < 16 * 1024, "{} bytes", line.len());
    }
    assert!(lines.iter().any(|l| l.contains("method=AAAA")), "{lines:?}");
    let model_line = lines.iter().find(|l| l.contains("status=400")).unwrap();
    assert!(
        model_line.contains("unsupported model `made-up-xxx"),
        "{model_line}"
    );
    assert!(model_line.contains('…'), "{model_line}");
}
