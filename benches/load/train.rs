//! The workload a profile-guided build learns from (`make release-pgo`): every face of
//! the gateway, JSON and streams, each translation direction, plain and limited keys
//! (limits counted in memory and, when `redis-server` is installed, in Redis), the
//! production shape (access log, metrics scraped, a host-name upstream), and bare
//! Pingora's passthrough, so that the engine alone is built from a profile too and the
//! two stay comparable. Only answers that succeed are sent: what a gateway does on its
//! error paths is rare by design and is laid out as such.
//!
//! `cargo bench --bench load -- --train`, run against instrumented builds
//! (`AURORA_BIN`, `AURORA_PINGORA_BIN`), which write their profiles when stopped, then
//! against the builds made from those profiles: every answer is checked, and a failed
//! one fails the run. Knob: `AURORA_BENCH_TRAIN_SECS` (each request's loop, default
//! 1 s).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;

use super::client::{self, RequestSpec};
use super::limited::{self, LIMITED_KEY};
use super::scenarios::{request_spec, upload_body};
use super::servers::{self, Server, GATEWAY_KEY};

/// Loops run at once per request, so that the worker threads share the load.
const CONCURRENCY: usize = 8;

/// One request of the workload: method, path, body and the end of a complete answer.
#[derive(Debug, Clone)]
pub struct TrainingRequest {
    pub method: Method,
    pub path: &'static str,
    pub body: Bytes,
    pub marker: &'static str,
}

const CHAT: &str = r#"{"model":"MODEL","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the benchmark."}],"max_tokens":256STREAM}"#;
const MESSAGES: &str = r#"{"model":"MODEL","max_tokens":256,"system":"You are terse.","messages":[{"role":"user","content":"Say hello to the benchmark."}]STREAM}"#;
const RESPONSES: &str = r#"{"model":"MODEL","instructions":"You are terse.","input":"Say hello to the benchmark.","max_output_tokens":256STREAM}"#;

/// `template` for `model`, streamed or not.
fn body(template: &str, model: &str, stream: bool) -> Bytes {
    let stream = if stream { r#","stream":true"# } else { "" };
    Bytes::from(template.replace("MODEL", model).replace("STREAM", stream))
}

/// What bare Pingora serves: the provider passthrough, JSON, SSE and a large upload.
pub fn passthrough_requests() -> Vec<TrainingRequest> {
    let post = |path, body, marker| TrainingRequest {
        method: Method::POST,
        path,
        body,
        marker,
    };
    vec![
        post(
            "/p/openai/v1/embeddings",
            body(CHAT, "gpt-4o-mini", false),
            r#""bench":"small"}"#,
        ),
        post(
            "/p/openai/v1/chat/completions",
            body(CHAT, "gpt-4o-mini", true),
            "data: [DONE]",
        ),
        // An upload endpoint: the training runs a key with limits too, which may write
        // only where the gateway meters, or nothing is billed.
        post("/p/openai/v1/files", upload_body(), r#""received":"#),
    ]
}

/// What the gateway serves: the passthrough, then each `/v1` face on each provider
/// format, whole and streamed, and the model list.
pub fn gateway_requests() -> Vec<TrainingRequest> {
    let mut requests = passthrough_requests();
    let faces: [(&'static str, &str, [&'static str; 2]); 3] = [
        (
            "/v1/chat/completions",
            CHAT,
            ["total_tokens", "data: [DONE]"],
        ),
        ("/v1/messages", MESSAGES, ["output_tokens", "message_stop"]),
        // The stream's last event holds the whole response, whose end is its settings.
        (
            "/v1/responses",
            RESPONSES,
            ["output_tokens", r#""truncation":"disabled""#],
        ),
    ];
    for (path, template, [whole, streamed]) in faces {
        // An OpenAI and an Anthropic model, named as each face's clients name them. An
        // OpenAI model's Responses call goes to OpenAI's own Responses API, which the
        // mock provider does not serve.
        let models: &[&str] = match path {
            "/v1/messages" => &["openai:gpt-4o-mini", "anthropic:claude-sonnet-4-5"],
            "/v1/responses" => &["anthropic/claude-sonnet-4-5"],
            _ => &["gpt-4o-mini", "anthropic/claude-sonnet-4-5"],
        };
        for &model in models {
            for (stream, marker) in [(false, whole), (true, streamed)] {
                requests.push(TrainingRequest {
                    method: Method::POST,
                    path,
                    body: body(template, model, stream),
                    marker,
                });
            }
        }
    }
    requests.push(TrainingRequest {
        method: Method::GET,
        path: "/v1/models",
        body: Bytes::new(),
        marker: "]",
    });
    requests
}

/// Runs the workload against each server in turn; the exit code of the bench process.
pub fn run() -> i32 {
    let dir = servers::target_dir().join("bench/train");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("train: create {}: {e}", dir.display());
        return 1;
    }
    let secs = super::env_or("AURORA_BENCH_TRAIN_SECS", 1.0f64).max(0.2);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("bench runtime");
    let mock = servers::start_mock(10, 0, None, &dir);
    let redis = limited::redis_binary().map(|bin| limited::start_redis(&bin, None, &dir));
    let aurora = servers::aurora_binary();
    let gateway = gateway_requests();
    let mut failed = false;
    let mut train = |name: &str, server: Server, key: &str, requests: &[TrainingRequest]| {
        failed |= !send_all(&rt, name, &server, key, requests, secs);
        // Dropped: stopped by its signal, which is when it writes its profile.
        drop(server);
    };
    // The gateway with a key whose limits are counted in `store` (`None`: memory).
    let start_limited = |store: Option<String>| {
        let config = format!(
            "# Written by the load bench's training run.\n{}",
            limited::limited_config(store.as_deref())
        );
        servers::start_aurora_with_config(&aurora, mock.port, 2, "warn", None, &dir, &config, None)
    };
    train(
        "aurora",
        servers::start_aurora(&aurora, mock.port, 2, "warn", None, &dir),
        GATEWAY_KEY,
        &gateway,
    );
    train(
        "aurora, limits in memory",
        start_limited(None),
        LIMITED_KEY,
        &gateway,
    );
    if let Some(redis) = &redis {
        let url = format!("redis://127.0.0.1:{}/0", redis.port);
        train(
            "aurora, limits in Redis",
            start_limited(Some(url)),
            LIMITED_KEY,
            &gateway,
        );
    }
    train(
        "aurora, production shape",
        servers::start_aurora_production(&aurora, mock.port, 2, None, &dir),
        LIMITED_KEY,
        &gateway,
    );
    match servers::pingora_binary() {
        Some(bin) => train(
            "bare pingora",
            servers::start_pingora(&bin, mock.port, 2, None, &dir),
            GATEWAY_KEY,
            &passthrough_requests(),
        ),
        None => eprintln!("train: bare Pingora not built; its profile is left out"),
    }
    i32::from(failed)
}

/// Sends each of `requests` in closed loops for `secs`; whether every answer was whole.
fn send_all(
    rt: &tokio::runtime::Runtime,
    name: &str,
    server: &Server,
    key: &str,
    requests: &[TrainingRequest],
    secs: f64,
) -> bool {
    let mut whole = true;
    for r in requests {
        let spec: RequestSpec = request_spec(
            r.method.clone(),
            r.path.to_string(),
            r.body.clone(),
            r.marker,
            server.port,
            key,
        );
        let stats = rt.block_on(client::closed_loop(
            server.addr(),
            Arc::new(spec),
            CONCURRENCY,
            Duration::from_secs_f64(secs),
        ));
        eprintln!(
            "  {name:<26} {:<4} {:<30} {:>7} answers, {} failed {}",
            r.method.as_str(),
            r.path,
            stats.requests,
            stats.errors,
            stats.error_samples.join("; ")
        );
        whole &= stats.errors == 0 && stats.requests > 0;
    }
    whole
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(r: &TrainingRequest) -> serde_json::Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn the_gateway_workload_covers_every_face_its_formats_and_streams() {
        let requests = gateway_requests();
        let faces = [
            ("/v1/chat/completions", &[false, true][..]),
            ("/v1/messages", &[false, true][..]),
            // Translated to Anthropic; OpenAI's own Responses API is not mocked.
            ("/v1/responses", &[true][..]),
        ];
        for (path, formats) in faces {
            for &anthropic in formats {
                for stream in [false, true] {
                    let sent = requests.iter().any(|r| {
                        let body = body_of(r);
                        r.path == path
                            && body["model"].as_str().unwrap().contains("claude") == anthropic
                            && (body["stream"] == true) == stream
                    });
                    assert!(sent, "{path}: anthropic {anthropic}, stream {stream}");
                }
            }
        }
        for path in [
            "/p/openai/v1/embeddings",
            "/p/openai/v1/chat/completions",
            "/v1/models",
        ] {
            assert!(requests.iter().any(|r| r.path == path), "{path}");
        }
    }

    #[test]
    fn every_training_body_is_json() {
        for r in gateway_requests().iter().filter(|r| !r.body.is_empty()) {
            body_of(r);
        }
    }

    #[test]
    fn bare_pingora_is_sent_only_the_passthrough() {
        assert!(passthrough_requests()
            .iter()
            .all(|r| r.path.starts_with("/p/openai/")));
    }
}
