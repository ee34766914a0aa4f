//! Caller keys, the provider keys a caller brings itself (`api_key: "!PASSTHRU"`),
//! and static keys used in turn (`api_keys`), end to end: which key reaches the
//! provider on `/p/…` and `/v1/chat/completions`, with gateway auth on and off, and
//! what the log shows.

mod common;

use std::time::Duration;

use common::{client, fixture, Gateway, MockUpstream, Recorded, Reply};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const MASTER: &str = "gw-master-caller-key-test-012345678";
const CLIENT_KEY: &str = "sk-client-own-key-test";

/// Answers like each provider would, whatever key it was sent.
fn provider_like(rec: &Recorded) -> Reply {
    match rec.uri.as_str() {
        "/v1/messages" => Reply::json(200, fixture("anthropic/messages.json")),
        "/v1/chat/completions" => Reply::json(200, fixture("openai/chat_completion.json")),
        _ => Reply::json(200, r#"{"object":"list","data":[]}"#),
    }
}

/// Anthropic and OpenAI, both `!PASSTHRU`, both served by `mock` under `/v1`.
fn caller_key_gateway(mock: &MockUpstream, auth_on: bool) -> Gateway {
    let yaml = format!(
        "providers:\n  anthropic:\n    api_key: \"!PASSTHRU\"\n    base_url: {base}\n  openai:\n    api_key: !PASSTHRU\n    base_url: {base}\n",
        base = mock.url("/v1")
    );
    let env: &[(&str, &str)] = if auth_on {
        &[("AURORA_MASTER_KEY", MASTER)]
    } else {
        &[]
    };
    Gateway::start(&yaml, env)
}

fn chat(model: &str) -> String {
    json!({"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
        .to_string()
}

async fn post(
    gw: &Gateway,
    path: &str,
    body: String,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut rb = client()
        .post(gw.url(path))
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().await.unwrap()
}

/// Request headers as name/value pairs.
type Headers<'a> = Vec<(&'a str, &'a str)>;

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Every header value the provider received, joined.
fn all_header_values(rec: &Recorded) -> String {
    rec.headers
        .values()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn short_hash(key: &str) -> String {
    format!(
        "caller_key:{}",
        &hex::encode(Sha256::digest(key.as_bytes()))[..8]
    )
}

/// The gateway's log once `count` access lines (other than readiness probes) are in it.
async fn log_with_access_lines(gw: &Gateway, count: usize) -> String {
    for _ in 0..100 {
        let log = gw.log();
        let lines = log
            .lines()
            .filter(|l| l.contains("aurora::access") && !l.contains("route=health"))
            .count();
        if lines >= count {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.log()
}

/// Sends a request to every route kind and returns what reached the provider for each:
/// `/p/anthropic/v1/messages`, `/p/openai/chat/completions`, and `/v1/chat/completions`
/// to an OpenAI-format and an Anthropic-format provider.
async fn every_route(
    gw: &Gateway,
    mock: &MockUpstream,
    headers: &[(&str, &str)],
) -> Vec<(String, Recorded)> {
    let calls = [
        ("/p/anthropic/v1/messages", "claude-sonnet-4-5"),
        ("/p/openai/chat/completions", "gpt-4o-mini"),
        ("/v1/chat/completions", "openai/gpt-4o-mini"),
        ("/v1/chat/completions", "anthropic/claude-sonnet-4-5"),
    ];
    let mut seen = Vec::new();
    for (path, model) in calls {
        let resp = post(gw, path, chat(model), headers).await;
        let label = format!("{path} {model}");
        assert_eq!(resp.status(), 200, "{label}");
        resp.bytes().await.unwrap();
        seen.push((label, mock.last()));
    }
    seen
}

/// The key `rec` carried in the style of the provider it was meant for.
fn upstream_key(rec: &Recorded) -> Option<String> {
    if rec.uri == "/v1/messages" {
        assert!(
            rec.header("authorization").is_none(),
            "Anthropic got Bearer"
        );
        rec.header("x-api-key").map(str::to_string)
    } else {
        assert!(rec.header("x-api-key").is_none(), "OpenAI got X-Api-Key");
        rec.header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_off_client_key_in_x_api_key_reaches_every_route_in_the_providers_style() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = caller_key_gateway(&mock, false);
    for (label, rec) in every_route(&gw, &mock, &[("x-api-key", CLIENT_KEY)]).await {
        assert_eq!(upstream_key(&rec).as_deref(), Some(CLIENT_KEY), "{label}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_off_client_key_as_bearer_reaches_every_route() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = caller_key_gateway(&mock, false);
    let auth = bearer(CLIENT_KEY);
    for (label, rec) in every_route(&gw, &mock, &[("authorization", &auth)]).await {
        assert_eq!(upstream_key(&rec).as_deref(), Some(CLIENT_KEY), "{label}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_on_provider_key_in_x_provider_api_key_reaches_every_route_and_gateway_key_does_not() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = caller_key_gateway(&mock, true);
    let auth = bearer(MASTER);
    let headers = [
        ("authorization", auth.as_str()),
        ("x-provider-api-key", CLIENT_KEY),
    ];
    for (label, rec) in every_route(&gw, &mock, &headers).await {
        assert_eq!(upstream_key(&rec).as_deref(), Some(CLIENT_KEY), "{label}");
        assert!(rec.header("x-provider-api-key").is_none(), "{label}");
        assert!(!all_header_values(&rec).contains(MASTER), "{label}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_on_provider_key_in_x_api_key_beside_bearer_gateway_key_reaches_every_route() {
    let mock = MockUpstream::start(provider_like).await;
    let gw = caller_key_gateway(&mock, true);
    let auth = bearer(MASTER);
    let headers = [("authorization", auth.as_str()), ("x-api-key", CLIENT_KEY)];
    for (label, rec) in every_route(&gw, &mock, &headers).await {
        assert_eq!(upstream_key(&rec).as_deref(), Some(CLIENT_KEY), "{label}");
        assert!(!all_header_values(&rec).contains(MASTER), "{label}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_client_key_is_401_naming_provider_and_header_and_nothing_goes_upstream() {
    let mock = MockUpstream::start(provider_like).await;
    let open = caller_key_gateway(&mock, false);
    let secured = caller_key_gateway(&mock, true);
    let auth = bearer(MASTER);
    let cases: [(&Gateway, Headers, &str); 3] = [
        (&open, vec![], "X-Api-Key"),
        // Gateway auth on: the gateway key is never the provider key, wherever it is sent.
        (
            &secured,
            vec![("authorization", auth.as_str())],
            "X-Provider-Api-Key",
        ),
        (
            &secured,
            vec![("authorization", auth.as_str()), ("x-api-key", MASTER)],
            "X-Provider-Api-Key",
        ),
    ];
    for (gw, headers, header_hint) in cases {
        for (path, model, provider) in [
            ("/p/anthropic/v1/messages", "claude-sonnet-4-5", "anthropic"),
            ("/p/openai/chat/completions", "gpt-4o-mini", "openai"),
            ("/v1/chat/completions", "openai/gpt-4o-mini", "openai"),
            (
                "/v1/chat/completions",
                "anthropic/claude-sonnet-4-5",
                "anthropic",
            ),
        ] {
            let resp = post(gw, path, chat(model), &headers).await;
            assert_eq!(resp.status(), 401, "{path} {model} {headers:?}");
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"]["type"], "authentication_error");
            let msg = body["error"]["message"].as_str().unwrap();
            assert!(msg.contains(&format!("`{provider}`")), "{msg}");
            assert!(msg.contains(header_hint), "{msg}");
            assert!(!msg.contains(MASTER), "{msg}");
        }
    }
    assert!(mock.requests().is_empty(), "{:?}", mock.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_key_only_in_x_api_key_is_refused_for_caller_key_but_still_works_for_static() {
    let mock = MockUpstream::start(provider_like).await;
    let yaml = format!(
        "providers:\n  anthropic:\n    api_key: sk-ant-static-test\n    base_url: {base}\n  openai:\n    api_key: \"!PASSTHRU\"\n    base_url: {base}\n",
        base = mock.url("/v1")
    );
    let gw = Gateway::start(&yaml, &[("AURORA_MASTER_KEY", MASTER)]);
    // An Anthropic SDK pointed at the gateway sends the gateway key as X-Api-Key.
    let sdk_style = [("x-api-key", MASTER)];
    let resp = post(
        &gw,
        "/p/anthropic/v1/messages",
        chat("claude-sonnet-4-5"),
        &sdk_style,
    )
    .await;
    assert_eq!(resp.status(), 200);
    let rec = mock.last();
    assert_eq!(rec.header("x-api-key"), Some("sk-ant-static-test"));
    let resp = post(
        &gw,
        "/p/openai/chat/completions",
        chat("gpt-4o-mini"),
        &sdk_style,
    )
    .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_caller_key_marker_registers_a_caller_key_provider() {
    let mock = MockUpstream::start(provider_like).await;
    let base = mock.url("/v1");
    let gw = Gateway::start(
        "",
        &[
            ("OPENAI_API_KEY", "!PASSTHRU"),
            ("OPENAI_BASE_URL", base.as_str()),
        ],
    );
    let resp = post(
        &gw,
        "/v1/chat/completions",
        chat("gpt-4o-mini"),
        &[("x-api-key", CLIENT_KEY)],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        mock.last().header("authorization"),
        Some(bearer(CLIENT_KEY).as_str())
    );
    let resp = post(&gw, "/v1/chat/completions", chat("gpt-4o-mini"), &[]).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_sent_round_robin_on_every_route() {
    let mock = MockUpstream::start(provider_like).await;
    let yaml = format!(
        "providers:\n  openai:\n    api_keys: [sk-ring-a-test, sk-ring-b-test, sk-ring-c-test]\n    base_url: {}\n",
        mock.url("/v1")
    );
    let gw = Gateway::start(&yaml, &[("AURORA_MASTER_KEY", MASTER)]);
    let auth = bearer(MASTER);
    // A client key is ignored by a static provider.
    let headers = [("authorization", auth.as_str()), ("x-api-key", CLIENT_KEY)];
    let mut sent = Vec::new();
    for i in 0..6 {
        let path = if i % 2 == 0 {
            "/p/openai/chat/completions"
        } else {
            "/v1/chat/completions"
        };
        let resp = post(&gw, path, chat("gpt-4o-mini"), &headers).await;
        assert_eq!(resp.status(), 200, "{path}");
        sent.push(upstream_key(&mock.last()).unwrap());
    }
    assert_eq!(
        sent,
        [
            "sk-ring-a-test",
            "sk-ring-b-test",
            "sk-ring-c-test",
            "sk-ring-a-test",
            "sk-ring-b-test",
            "sk-ring-c-test"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_names_a_caller_key_by_its_hash_and_never_holds_a_key() {
    let mock = MockUpstream::start(provider_like).await;
    let open = caller_key_gateway(&mock, false);
    every_route(&open, &mock, &[("x-api-key", CLIENT_KEY)]).await;
    let secured = caller_key_gateway(&mock, true);
    let auth = bearer(MASTER);
    let headers = [("authorization", auth.as_str()), ("x-api-key", CLIENT_KEY)];
    every_route(&secured, &mock, &headers).await;
    post(
        &secured,
        "/p/openai/chat/completions",
        chat("gpt-4o-mini"),
        &[("authorization", auth.as_str())],
    )
    .await;

    let label = short_hash(CLIENT_KEY);
    let log = log_with_access_lines(&open, 4).await;
    assert_eq!(log.matches(&format!("caller={label} ")).count(), 4, "{log}");
    let secured_log = log_with_access_lines(&secured, 5).await;
    assert_eq!(
        secured_log
            .matches(&format!("caller=master+{label} "))
            .count(),
        4,
        "{secured_log}"
    );
    assert!(
        secured_log.contains("caller=master status=401"),
        "{secured_log}"
    );
    for log in [log, secured_log] {
        assert!(!log.contains(CLIENT_KEY), "client key logged: {log}");
        assert!(!log.contains(MASTER), "gateway key logged: {log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_gateway_key_is_ever_sent_as_a_provider_key_whoever_presents_it() {
    const MANAGED: &str = "sk-aurora-managed-caller-key-test";
    const OTHER: &str = "sk-aurora-other-caller-key-test";
    let mock = MockUpstream::start(provider_like).await;
    let hash = |k: &str| hex::encode(Sha256::digest(k.as_bytes()));
    let yaml = format!(
        "auth:\n  keys:\n    - {{name: ci, sha256: \"{}\"}}\n    - {{name: off, sha256: \"{}\", enabled: false}}\nproviders:\n  anthropic:\n    api_key: \"!PASSTHRU\"\n    base_url: {base}\n  openai:\n    api_key: \"!PASSTHRU\"\n    base_url: {base}\n",
        hash(MANAGED),
        hash(OTHER),
        base = mock.url("/v1")
    );
    let gw = Gateway::start(&yaml, &[("AURORA_MASTER_KEY", MASTER)]);
    let managed = bearer(MANAGED);
    let master = bearer(MASTER);
    let cases: [Headers; 4] = [
        // A managed key presented, the master key offered as the provider key.
        vec![("authorization", managed.as_str()), ("x-api-key", MASTER)],
        vec![
            ("authorization", managed.as_str()),
            ("x-provider-api-key", MASTER),
        ],
        // The master key presented, a managed key (enabled or not) offered.
        vec![("authorization", master.as_str()), ("x-api-key", MANAGED)],
        vec![
            ("authorization", master.as_str()),
            ("x-provider-api-key", OTHER),
        ],
    ];
    for headers in cases {
        for (path, model) in [
            ("/p/openai/chat/completions", "gpt-4o-mini"),
            ("/p/anthropic/v1/messages", "claude-sonnet-4-5"),
            ("/v1/chat/completions", "openai/gpt-4o-mini"),
            ("/v1/chat/completions", "anthropic/claude-sonnet-4-5"),
        ] {
            let resp = post(&gw, path, chat(model), &headers).await;
            assert_eq!(resp.status(), 401, "{path} {model} {headers:?}");
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"]["code"], "missing_provider_key", "{body}");
        }
    }
    assert!(mock.requests().is_empty(), "{:?}", mock.requests());
    // The managed key's holder still reaches the provider with a provider key of its own.
    let headers = [
        ("authorization", managed.as_str()),
        ("x-provider-api-key", CLIENT_KEY),
    ];
    for (label, rec) in every_route(&gw, &mock, &headers).await {
        assert_eq!(upstream_key(&rec).as_deref(), Some(CLIENT_KEY), "{label}");
        let sent = all_header_values(&rec);
        assert!(!sent.contains(MANAGED) && !sent.contains(MASTER), "{label}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_key_never_falls_back_to_a_provider_at_another_host() {
    // The caller's OpenAI key, OpenAI failing: the fallback to Anthropic (another
    // host) must not be handed the OpenAI key. At the same host it may go on.
    let failing =
        MockUpstream::start(|_| Reply::json(500, r#"{"error":{"message":"down"}}"#)).await;
    let elsewhere = MockUpstream::start(provider_like).await;
    let config = |anthropic: &MockUpstream| {
        format!(
            "retry:\n  attempts: 1\n  backoff: 1ms\nmodels:\n  fallbacks:\n    gpt-4o-mini: [anthropic/claude-sonnet-4-5]\nproviders:\n  anthropic:\n    api_key: \"!PASSTHRU\"\n    base_url: {}\n  openai:\n    api_key: \"!PASSTHRU\"\n    base_url: {}\n",
            anthropic.url("/v1"),
            failing.url("/v1")
        )
    };
    let headers = [
        ("authorization", &*format!("Bearer {MASTER}")),
        ("x-provider-api-key", CLIENT_KEY),
    ];
    let gw = Gateway::start(&config(&elsewhere), &[("AURORA_MASTER_KEY", MASTER)]);
    let resp = post(&gw, "/v1/chat/completions", chat("gpt-4o-mini"), &headers).await;
    assert!(resp.status().is_server_error(), "{}", resp.status());
    assert!(
        elsewhere.requests().is_empty(),
        "the caller's OpenAI key went to another host: {:?}",
        elsewhere.requests().first().map(|r| r.uri.clone())
    );

    // Both at one host (one server holding both APIs): the fallback is made.
    let together = MockUpstream::start(|rec: &Recorded| match rec.uri.as_str() {
        "/v1/chat/completions" => Reply::json(500, r#"{"error":{"message":"down"}}"#),
        _ => provider_like(rec),
    })
    .await;
    let gw = Gateway::start(
        &config(&together).replace(&failing.url("/v1"), &together.url("/v1")),
        &[("AURORA_MASTER_KEY", MASTER)],
    );
    let resp = post(&gw, "/v1/chat/completions", chat("gpt-4o-mini"), &headers).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(together.last().uri, "/v1/messages");

    // One host routing by path to each provider (as some AI gateways do): two.
    let routed = MockUpstream::start(|_| Reply::json(500, r#"{"error":{"message":"down"}}"#)).await;
    let yaml = config(&routed)
        .replace(&routed.url("/v1"), &routed.url("/anthropic/v1"))
        .replace(&failing.url("/v1"), &routed.url("/openai/v1"));
    let gw = Gateway::start(&yaml, &[("AURORA_MASTER_KEY", MASTER)]);
    let resp = post(&gw, "/v1/chat/completions", chat("gpt-4o-mini"), &headers).await;
    assert!(resp.status().is_server_error(), "{}", resp.status());
    assert!(
        routed
            .requests()
            .iter()
            .all(|r| !r.uri.starts_with("/anthropic/")),
        "the caller's OpenAI key went to the path of another provider"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_served_with_the_gateways_key_never_falls_back_with_the_callers() {
    // OpenAI with the gateway's own key fails; its fallback takes callers' keys. What
    // the caller sent was never given for Anthropic: with gateway auth off, an OpenAI
    // SDK's own `Authorization` (the developer's OpenAI key) is all there is.
    let failing =
        MockUpstream::start(|_| Reply::json(500, r#"{"error":{"message":"down"}}"#)).await;
    let elsewhere = MockUpstream::start(provider_like).await;
    let yaml = format!(
        "retry:\n  attempts: 1\n  backoff: 1ms\nmodels:\n  fallbacks:\n    gpt-4o-mini: [anthropic/claude-sonnet-4-5]\nproviders:\n  anthropic:\n    api_key: \"!PASSTHRU\"\n    base_url: {}\n  openai:\n    api_key: sk-gateway-openai-key\n    base_url: {}\n",
        elsewhere.url("/v1"),
        failing.url("/v1")
    );
    let own = bearer(CLIENT_KEY);
    let master = bearer(MASTER);
    let auth_off = (
        Gateway::start(&yaml, &[]),
        vec![("authorization", own.as_str())],
    );
    let auth_on = (
        Gateway::start(&yaml, &[("AURORA_MASTER_KEY", MASTER)]),
        vec![
            ("authorization", master.as_str()),
            ("x-provider-api-key", CLIENT_KEY),
        ],
    );
    for (gw, headers) in [auth_off, auth_on] {
        let resp = post(&gw, "/v1/chat/completions", chat("gpt-4o-mini"), &headers).await;
        assert!(resp.status().is_server_error(), "{}", resp.status());
        assert!(
            !failing.requests().is_empty(),
            "the model asked for was tried"
        );
    }
    assert!(
        elsewhere.requests().is_empty(),
        "the caller's key went to a fallback it was not given for: {:?}",
        elsewhere.requests().first().map(|r| r.uri.clone())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_read_with_the_callers_key_goes_nowhere_the_id_may_not_belong() {
    // OpenAI takes callers' keys, xAI serves the Responses API too: a response id the
    // gateway did not make could be either's, and the caller's key (an xAI key, for a
    // response of grok's) must not be handed to OpenAI on a guess.
    let openai = MockUpstream::start(provider_like).await;
    let xai = MockUpstream::start(provider_like).await;
    let yaml = |with_xai: bool| {
        let mut yaml = format!(
            "providers:\n  openai:\n    api_key: \"!PASSTHRU\"\n    base_url: {}\n",
            openai.url("/v1")
        );
        if with_xai {
            yaml.push_str(&format!(
                "  xai:\n    api_key: sk-gateway-xai-key\n    base_url: {}\n",
                xai.url("/v1")
            ));
        }
        yaml
    };
    let read = |gw: &Gateway| {
        client()
            .get(gw.url("/v1/responses/resp_0123456789abcdef"))
            .bearer_auth(MASTER)
            .header("x-provider-api-key", CLIENT_KEY)
            .send()
    };
    let gw = Gateway::start(&yaml(true), &[("AURORA_MASTER_KEY", MASTER)]);
    let resp = read(&gw).await.unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "ambiguous_provider", "{body}");
    assert!(openai.requests().is_empty() && xai.requests().is_empty());
    // The only provider that could hold it: asked, with the caller's key.
    let gw = Gateway::start(&yaml(false), &[("AURORA_MASTER_KEY", MASTER)]);
    read(&gw).await.unwrap();
    let asked = openai.last();
    assert_eq!(asked.uri, "/v1/responses/resp_0123456789abcdef");
    assert_eq!(
        asked.header("authorization"),
        Some(bearer(CLIENT_KEY).as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_anthropic_oauth_token_reaches_anthropic_as_bearer() {
    // Claude Code on a Claude subscription sends its OAuth token as a Bearer token,
    // which Anthropic takes only so.
    let mock = MockUpstream::start(provider_like).await;
    let token = "sk-ant-oat01-caller-subscription-test";
    let auth = bearer(token);
    let master = bearer(MASTER);
    for auth_on in [false, true] {
        let gw = caller_key_gateway(&mock, auth_on);
        // With gateway auth on, the gateway key is the Bearer and the token rides
        // in `X-Provider-Api-Key`.
        let mut headers: Headers = if auth_on {
            vec![
                ("authorization", master.as_str()),
                ("x-provider-api-key", token),
            ]
        } else {
            vec![("authorization", auth.as_str())]
        };
        headers.push(("anthropic-beta", "oauth-2025-04-20"));
        let resp = post(
            &gw,
            "/v1/messages",
            chat("anthropic:claude-sonnet-4-5"),
            &headers,
        )
        .await;
        assert_eq!(resp.status(), 200, "auth {auth_on}");
        let rec = mock.last();
        assert_eq!(
            rec.header("authorization"),
            Some(auth.as_str()),
            "auth {auth_on}"
        );
        assert!(rec.header("x-api-key").is_none(), "auth {auth_on}");
        assert_eq!(rec.header("anthropic-beta"), Some("oauth-2025-04-20"));
    }
    // An API key still goes as x-api-key.
    let gw = caller_key_gateway(&mock, false);
    let resp = post(
        &gw,
        "/v1/messages",
        chat("anthropic:claude-sonnet-4-5"),
        &[("x-api-key", "sk-ant-api03-caller-test")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        mock.last().header("x-api-key"),
        Some("sk-ant-api03-caller-test")
    );
    assert!(mock.last().header("authorization").is_none());
}
