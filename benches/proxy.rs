//! Per-request proxy work outside the translators: classifying a path, parsing a
//! passthrough route, routing a model name, the upstream header rewrite on a
//! request header shaped like an SDK's, and what a key with limits adds (admission
//! and charge in the memory store, the `x-ratelimit-*` answer headers), and the
//! gateway key's check (its SHA-256, as the CPU runs it: callgrind's counts run it in
//! software, since valgrind hides the CPU's SHA extensions), and reading the usage of
//! an answer.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use pingora_http::{RequestHeader, ResponseHeader};

use aurora::auth::GatewayAuth;
use aurora::config::{
    build_config, Budget, BudgetPeriod, Config, EnvSnapshot, KeyLimits, ServerSettings,
};
use aurora::limits::{insert_rate_headers, LimitStore, LimitTexts, MemoryStore};
use aurora::metrics::usage::{Usage, UsageMeter};
use aurora::metrics::{MetricHandles, Metrics, RequestOutcome};
use aurora::providers::Secret;
use aurora::proxy::header_maps;
use aurora::proxy::headers::{add_provider_headers, strip_client_headers, KeyScope};
use aurora::proxy::model_route::route_model;
use aurora::proxy::passthrough::PassthroughRoute;
use aurora::proxy::request_id::RequestId;
use aurora::proxy::route::classify;

/// Providers as a small deployment would configure them; the keys are placeholders.
/// On loopback: an open gateway is refused anywhere else.
const YAML: &str = "
server: {listen: 127.0.0.1:8080}
providers:
  anthropic: {api_key: sk-ant-bench-placeholder}
  openai: {api_key: sk-bench-placeholder}
  openrouter: {api_key: sk-or-bench-placeholder}
  groq: {api_key: gsk-bench-placeholder, models: [llama-3.1-8b-instant]}
models:
  aliases:
    fast: groq/llama-3.1-8b-instant
    smart: anthropic/claude-sonnet-4-5
";

fn config() -> Config {
    build_config(Some(YAML), None, &EnvSnapshot::default()).expect("bench config")
}

fn routing(c: &mut Criterion) {
    let settings = ServerSettings::default();
    let mut g = c.benchmark_group("route");
    for path in [
        "/p/anthropic/v1/messages",
        "/p/openai/v1/chat/completions",
        "/v1/chat/completions",
        "/v1/models/openrouter/google%2Fgemini-2.5-pro",
    ] {
        g.bench_function(format!("classify {path}"), |b| {
            b.iter(|| classify(black_box(path), &settings))
        });
    }
    for rest in [
        "anthropic/v1/messages",
        "gemini/models/gemini-2.5-pro:streamGenerateContent",
        "openai/files%2Ffile-abc123/content",
    ] {
        g.bench_function(format!("passthrough_parse {rest}"), |b| {
            b.iter(|| PassthroughRoute::parse(black_box(rest), true))
        });
    }
    let config = config();
    for model in [
        "anthropic/claude-sonnet-4-5",
        "openrouter/google/gemini-2.5-pro",
        "smart",
        "llama-3.1-8b-instant",
        "gpt-4o-mini",
    ] {
        g.bench_function(format!("route_model {model}"), |b| {
            b.iter(|| route_model(black_box(model), &config))
        });
    }
    g.finish();
}

/// What the OpenAI Python SDK sends through a proxy, plus the gateway credential and
/// forwarding headers the gateway must drop.
fn sdk_request() -> RequestHeader {
    let mut r = RequestHeader::build("POST", b"/p/anthropic/v1/messages", None).unwrap();
    for (k, v) in [
        ("host", "gateway.internal:8080"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, deflate"),
        ("connection", "keep-alive"),
        ("content-type", "application/json"),
        ("content-length", "1432"),
        ("user-agent", "Anthropic/Python 0.40.0"),
        ("x-stainless-lang", "python"),
        ("x-stainless-package-version", "0.40.0"),
        ("x-stainless-os", "Linux"),
        ("x-stainless-arch", "x64"),
        ("x-stainless-runtime", "CPython"),
        ("x-stainless-runtime-version", "3.12.3"),
        ("x-stainless-retry-count", "0"),
        ("x-stainless-timeout", "600"),
        ("anthropic-version", "2023-06-01"),
        ("anthropic-beta", "prompt-caching-2024-07-31"),
        ("authorization", "Bearer gateway-placeholder-token"),
        ("x-forwarded-for", "10.0.0.7"),
        ("x-forwarded-proto", "https"),
        ("x-request-id", "4f1c2d8e-58a4-4f55-9c1e-0d1c8e4b9a77"),
    ] {
        r.append_header(k, v).unwrap();
    }
    r
}

fn header_rewrite(c: &mut Criterion) {
    let config = config();
    let key = Secret::new("sk-ant-bench-placeholder");
    // As the proxy holds it: the client's spelling forgotten before Pingora copies it.
    let mut template = sdk_request();
    header_maps::forget_request_spelling(&mut template);
    let request_id = RequestId::fresh();
    let mut g = c.benchmark_group("headers");
    for name in ["anthropic", "openai", "openrouter"] {
        let provider = config.providers.find(name).expect("configured").clone();
        g.bench_function(format!("strip_and_add {name}"), |b| {
            b.iter_batched(
                || template.clone(),
                |mut req| {
                    let uri = black_box("/v1/messages").parse().unwrap();
                    header_maps::open_request(&mut req, uri, |parts| {
                        strip_client_headers(&mut parts.headers, KeyScope::Gateways);
                        add_provider_headers(parts, &provider, Some(&key), &request_id).unwrap();
                    });
                    req
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.bench_function("clone_only", |b| b.iter(|| black_box(&template).clone()));
    g.finish();
}

/// A provider's answer header as the gateway reads it (names kept as sent).
fn provider_answer() -> ResponseHeader {
    let mut resp = ResponseHeader::build(200, None).expect("status");
    for (name, value) in [
        ("Content-Type", "application/json"),
        ("Content-Length", "312"),
        ("Date", "Fri, 04 Dec 2026 02:30:15 GMT"),
        ("Connection", "keep-alive"),
        ("x-request-id", "req_0123456789abcdef"),
    ] {
        resp.append_header(name, value).expect("header");
    }
    resp
}

/// The limits of the load bench's limited key: every kind, none near refusing.
fn bench_limits() -> KeyLimits {
    KeyLimits {
        requests_per_minute: Some(1_000_000_000),
        tokens_per_minute: Some(1_000_000_000_000),
        budget: Some(Budget {
            usd: None,
            tokens: Some(1_000_000_000_000_000),
            period: BudgetPeriod::Month,
        }),
        ..KeyLimits::default()
    }
}

fn limits(c: &mut Criterion) {
    let store = MemoryStore::default();
    let limits = bench_limits();
    let now = 1_796_351_415;
    let mut g = c.benchmark_group("limits");
    g.bench_function("memory admit_and_charge", |b| {
        b.iter(|| {
            futures_executor::block_on(async {
                let a = store.admit("key:bench", &limits, now).await.unwrap();
                store.charge("key:bench", &limits, 42, 0.0, now).unwrap();
                a
            })
        })
    });
    let rate = futures_executor::block_on(store.admit("key:bench", &limits, now))
        .unwrap()
        .state;
    let template = provider_answer();
    // As the gateway has them: made when the config was read.
    let limit_texts = LimitTexts::of(&limits);
    g.bench_function("rate_headers", |b| {
        b.iter_batched(
            || template.clone(),
            |mut resp| {
                // As an answer takes them: the map opened, room made, the six put in.
                header_maps::open_answer(&mut resp, |map| {
                    header_maps::make_room(map, rate.header_count()).unwrap();
                    insert_rate_headers(map, black_box(&rate), Some(&limit_texts)).unwrap();
                });
                resp
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("answer_clone_only", |b| {
        b.iter(|| black_box(&template).clone())
    });
    g.finish();
}

fn gateway_key(c: &mut Criterion) {
    // As long as the load bench's placeholder keys: one SHA-256 block.
    let master = Secret::new("bench-master-placeholder-key-0123456789ab");
    let auth = GatewayAuth::new(Some(&master), Default::default());
    let token = master.expose().to_string();
    let mut g = c.benchmark_group("auth");
    g.bench_function("check_token master", |b| {
        b.iter(|| auth.check_token(black_box(&token), std::time::SystemTime::now))
    });
    // The whole check as a request makes it: the token read from its header first.
    let mut headers = sdk_request().headers.clone();
    let bearer = format!("Bearer {token}");
    headers.insert(
        http::header::AUTHORIZATION,
        http::HeaderValue::from_str(&bearer).expect("header value"),
    );
    g.bench_function("authenticate bearer", |b| {
        b.iter(|| auth.authenticate(black_box(&headers), None, std::time::SystemTime::now))
    });
    g.finish();
}

/// What every finished request adds to the metrics whose labels name its caller's key
/// and model: `aurora_requests_total` and the answer's tokens and cost.
fn request_metrics(c: &mut Criterion) {
    let metrics = Metrics::new().expect("metrics");
    let handles = MetricHandles::new(&metrics, std::sync::Arc::new(config()));
    let usage = Usage {
        input: 120,
        output: 48,
        ..Default::default()
    };
    let mut g = c.benchmark_group("metrics");
    g.bench_function("request counted with its tokens", |b| {
        b.iter(|| {
            handles.request_finished(black_box(&RequestOutcome {
                route: "passthrough",
                provider: "openai",
                model: "-",
                status: "200",
                key: "team-a",
            }));
            handles.tokens_used("openai", "-", "team-a", black_box(&usage), None);
        })
    });
    g.finish();
}

/// A recorded provider answer (see tests/fixtures/NOTICE.md).
fn fixture(path: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).expect("fixture")
}

/// Reading the usage (and the model) of whole answers, as every successful JSON answer
/// on every route is read; and of a stream, event by event.
fn usage_meter(c: &mut Criterion) {
    let mut g = c.benchmark_group("usage");
    for (name, answer) in [
        ("openai chat answer", fixture("openai/chat_completion.json")),
        ("openai responses answer", fixture("openai/responses.json")),
        (
            "anthropic messages answer",
            fixture("anthropic/messages.json"),
        ),
    ] {
        // As the gateway reads an answer that came in one piece: where it lies.
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut meter = UsageMeter::for_answer(Some("application/json"), None)?;
                meter.finish_with(black_box(&answer))
            })
        });
    }
    // The recorded Chat stream as a client asking for usage gets it: `"usage": null`
    // in every chunk, the usage in a last one.
    let chat = String::from_utf8(fixture("openai/chat_completion_stream.txt")).expect("text");
    let chat_with_usage = chat
        .replace(r#""obfuscation""#, r#""usage":null,"obfuscation""#)
        .replace(
            "data: [DONE]",
            concat!(
                r#"data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o-mini","#,
                r#""choices":[],"usage":{"prompt_tokens":11,"completion_tokens":4}}"#,
                "\n\ndata: [DONE]"
            ),
        );
    for (name, stream) in [
        (
            "anthropic messages stream",
            fixture("anthropic/messages_stream.txt"),
        ),
        (
            "openai chat stream reporting usage",
            chat_with_usage.into_bytes(),
        ),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut meter = UsageMeter::for_answer(Some("text/event-stream"), None)?;
                meter.feed(black_box(&stream));
                meter.finish()
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    routing,
    header_rewrite,
    limits,
    gateway_key,
    request_metrics,
    usage_meter
);
criterion_main!(benches);
