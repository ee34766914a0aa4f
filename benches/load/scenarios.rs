//! The scenarios and the exact request each target gets in each of them. "direct" gets
//! what the gateway would send the provider, so its numbers are the floor the proxies
//! are compared with.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::client::RequestSpec;
use super::limited::LIMITED_KEY;
use super::servers::{Target, GATEWAY_KEY, PROVIDER_KEY};

/// Size of the upload scenario's request body.
pub const UPLOAD_BYTES: usize = 1 << 20;

/// One scenario of the load bench.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub name: &'static str,
    pub title: &'static str,
    /// Whether nginx, a plain proxy, can serve it (no translation).
    pub nginx: bool,
    /// The open-loop rate as a share of `AURORA_BENCH_RATE`: heavier requests get less.
    pub rate_share: f64,
    /// Held idle streams rather than request/response load.
    pub idle: bool,
    /// Many long streams at once, their events paced like a model's tokens (see
    /// `paced.rs`), rather than request/response load.
    pub paced: bool,
}

pub const SCENARIOS: [Scenario; 10] = [
    Scenario {
        name: "passthrough_small_json",
        title: "passthrough, small JSON (1 KiB answer)",
        nginx: true,
        rate_share: 1.0,
        idle: false,
        paced: false,
    },
    Scenario {
        name: "passthrough_upload_1mb",
        title: "passthrough, 1 MiB request body",
        nginx: true,
        rate_share: 0.05,
        idle: false,
        paced: false,
    },
    Scenario {
        name: "passthrough_sse",
        title: "passthrough, SSE (N events)",
        nginx: true,
        rate_share: 0.25,
        idle: false,
        paced: false,
    },
    Scenario {
        name: "chat_to_anthropic_json",
        title: "/v1/chat/completions → Anthropic, JSON",
        nginx: false,
        rate_share: 0.5,
        idle: false,
        paced: false,
    },
    Scenario {
        name: "chat_to_anthropic_stream",
        title: "/v1/chat/completions → Anthropic, stream",
        nginx: false,
        rate_share: 0.25,
        idle: false,
        paced: false,
    },
    Scenario {
        name: "messages_to_openai_stream",
        title: "/v1/messages → OpenAI, stream",
        nginx: false,
        rate_share: 0.25,
        idle: false,
        paced: false,
    },
    Scenario {
        name: "idle_sse_streams",
        title: "idle SSE streams held open",
        nginx: true,
        rate_share: 0.0,
        idle: true,
        paced: false,
    },
    Scenario {
        name: "paced_streams_passthrough",
        title: "passthrough, many streams at once, events paced like tokens",
        nginx: true,
        rate_share: 0.0,
        idle: false,
        paced: true,
    },
    Scenario {
        name: "paced_streams_chat_to_anthropic",
        title: "/v1/chat/completions → Anthropic, many streams at once, events paced",
        nginx: false,
        rate_share: 0.0,
        idle: false,
        paced: true,
    },
    Scenario {
        name: "paced_streams_messages_to_openai",
        title: "/v1/messages → OpenAI, many streams at once, events paced",
        nginx: false,
        rate_share: 0.0,
        idle: false,
        paced: true,
    },
];

impl Scenario {
    /// The targets this scenario runs against, baseline first.
    pub fn targets(&self) -> Vec<Target> {
        if self.paced {
            // The engine alone serves the passthrough only; translated streams are
            // compared with its passthrough.
            let mut t = vec![Target::Aurora];
            if self.nginx {
                t.extend([Target::Pingora, Target::Nginx]);
            }
            return t;
        }
        let mut t = vec![Target::Direct, Target::Aurora];
        // The cost of the access log and of being scraped, on the lightest request.
        if self.name == "passthrough_small_json" {
            t.push(Target::AuroraObserved);
            // And of limits, in memory and in Redis (when redis-server is there).
            t.push(Target::AuroraLimited);
            t.push(Target::AuroraLimitedRedis);
            // All of those at once, and the provider by host name: what users run.
            t.push(Target::AuroraProduction);
        }
        if self.nginx {
            t.push(Target::Nginx);
            // What the engine alone does with the same request, at the same threads.
            t.push(Target::Pingora);
        }
        // Does each gain from a second thread (on this machine's two CPUs, shared
        // with the load generator)?
        if matches!(
            self.name,
            "passthrough_small_json"
                | "passthrough_sse"
                | "chat_to_anthropic_json"
                | "chat_to_anthropic_stream"
        ) {
            t.push(Target::AuroraTwoThreads);
            if self.nginx {
                t.push(Target::PingoraTwoThreads);
            }
        }
        // Another build, when one is named: the change between the two.
        if matches!(
            self.name,
            "passthrough_small_json" | "chat_to_anthropic_json"
        ) {
            t.push(Target::AuroraBaseline);
        }
        t
    }

    /// The scenario named `name`.
    pub fn named(name: &str) -> Option<Scenario> {
        SCENARIOS.iter().copied().find(|s| s.name == name)
    }

    /// The request `target` gets, on a server listening on `port`.
    pub fn request_named(name: &str, target: Target, port: u16) -> Option<RequestSpec> {
        Some(Self::named(name)?.request(target, port))
    }

    /// The request `target` gets, on a server listening on `port`.
    pub fn request(&self, target: Target, port: u16) -> RequestSpec {
        let direct = target == Target::Direct;
        let openai_chat = r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the benchmark."}],"max_tokens":256"#;
        let anthropic_messages = r#"{"model":"claude-sonnet-4-5","max_tokens":256,"system":"You are terse.","messages":[{"role":"user","content":"Say hello to the benchmark."}]"#;
        // A paced scenario sends what its unpaced stream scenario sends.
        let name = match self.name {
            "paced_streams_passthrough" => "passthrough_sse",
            "paced_streams_chat_to_anthropic" => "chat_to_anthropic_stream",
            "paced_streams_messages_to_openai" => "messages_to_openai_stream",
            other => other,
        };
        let (method, path, body, marker): (Method, &str, Bytes, &'static str) = match name {
            "passthrough_small_json" => (
                Method::POST,
                "/v1/embeddings",
                Bytes::from(format!("{openai_chat}}}")),
                r#""bench":"small"}"#,
            ),
            "passthrough_upload_1mb" => (
                Method::POST,
                "/v1/consume",
                upload_body(),
                r#""received":1048576}"#,
            ),
            "passthrough_sse" => (
                Method::POST,
                "/v1/chat/completions",
                Bytes::from(format!(r#"{openai_chat},"stream":true}}"#)),
                "data: [DONE]",
            ),
            "chat_to_anthropic_json" if direct => (
                Method::POST,
                "/v1/messages",
                Bytes::from(format!("{anthropic_messages}}}")),
                r#""output_tokens""#,
            ),
            "chat_to_anthropic_json" => (
                Method::POST,
                "/v1/chat/completions",
                Bytes::from(
                    format!("{openai_chat}}}")
                        .replace("gpt-4o-mini", "anthropic/claude-sonnet-4-5"),
                ),
                r#""total_tokens""#,
            ),
            "chat_to_anthropic_stream" if direct => (
                Method::POST,
                "/v1/messages",
                Bytes::from(format!(r#"{anthropic_messages},"stream":true}}"#)),
                "message_stop",
            ),
            "chat_to_anthropic_stream" => (
                Method::POST,
                "/v1/chat/completions",
                Bytes::from(
                    format!(r#"{openai_chat},"stream":true}}"#)
                        .replace("gpt-4o-mini", "anthropic/claude-sonnet-4-5"),
                ),
                "data: [DONE]",
            ),
            "messages_to_openai_stream" if direct => (
                Method::POST,
                "/v1/chat/completions",
                Bytes::from(format!(r#"{openai_chat},"stream":true}}"#)),
                "data: [DONE]",
            ),
            "messages_to_openai_stream" => (
                Method::POST,
                "/v1/messages",
                Bytes::from(
                    format!(r#"{anthropic_messages},"stream":true}}"#)
                        .replace("claude-sonnet-4-5", "openai:gpt-4o-mini"),
                ),
                "message_stop",
            ),
            "idle_sse_streams" => (Method::GET, "/v1/idle", Bytes::new(), "ping"),
            other => unreachable!("scenario {other}"),
        };
        // Passthrough paths go under /p/openai/ on the proxies; /v1 faces stay as they are.
        let path = match (target, name) {
            (Target::Direct, _) => path.to_string(),
            (_, n) if n.starts_with("passthrough") || n.starts_with("idle") => {
                format!("/p/openai{path}")
            }
            _ => path.to_string(),
        };
        // `AURORA_BENCH_KEY`: another gateway key (a managed key that
        // `AURORA_BENCH_CONFIG` gives limits), to measure what limits cost.
        let gateway_key = std::env::var("AURORA_BENCH_KEY").unwrap_or_else(|_| GATEWAY_KEY.into());
        let key = match target {
            Target::Direct => PROVIDER_KEY,
            Target::AuroraLimited | Target::AuroraLimitedRedis | Target::AuroraProduction => {
                LIMITED_KEY
            }
            _ => gateway_key.as_str(),
        };
        let mut spec = request_spec(method, path, body, marker, port, key);
        if self.paced {
            // Read by the mock provider (and passed on by every proxy).
            let p = super::paced::Pacing::from_env();
            let mut put = |k: &'static str, v: String| {
                spec.headers.insert(
                    HeaderName::from_static(k),
                    HeaderValue::from_str(&v).expect("header value"),
                );
            };
            put(super::mock::canned::PACE_HEADER, p.pace_ms.to_string());
            put(super::mock::canned::EVENTS_HEADER, p.events.to_string());
        }
        spec
    }
}

/// A request to `path` on a server at `port`, sent with the gateway (or provider) `key`,
/// its answer complete when it ends with `marker`; the headers a client SDK sends.
pub fn request_spec(
    method: Method,
    path: String,
    body: Bytes,
    marker: &'static str,
    port: u16,
    key: &str,
) -> RequestSpec {
    let mut headers = HeaderMap::new();
    let mut put = |k: &'static str, v: &str| {
        headers.insert(
            HeaderName::from_static(k),
            HeaderValue::from_str(v).expect("header value"),
        );
    };
    put("host", &format!("127.0.0.1:{port}"));
    put("user-agent", "aurora-load-bench/1");
    put("accept", "application/json, text/event-stream");
    if !body.is_empty() {
        put("content-type", "application/json");
    }
    put("authorization", &format!("Bearer {key}"));
    if path.ends_with("/messages") {
        put("anthropic-version", "2023-06-01");
    }
    RequestSpec {
        method,
        path,
        headers,
        body,
        marker,
    }
}

/// A JSON document of exactly `UPLOAD_BYTES` bytes.
pub fn upload_body() -> Bytes {
    let head = r#"{"model":"gpt-4o-mini","input":""#;
    let tail = r#""}"#;
    let mut s = String::with_capacity(UPLOAD_BYTES);
    s.push_str(head);
    s.extend(std::iter::repeat_n(
        'a',
        UPLOAD_BYTES - head.len() - tail.len(),
    ));
    s.push_str(tail);
    Bytes::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(scenario: &str, target: Target) -> RequestSpec {
        Scenario::request_named(scenario, target, 8080).unwrap()
    }

    fn bearer(spec: &RequestSpec) -> &str {
        spec.headers["authorization"].to_str().unwrap()
    }

    #[test]
    fn proxies_get_the_passthrough_path_and_the_gateway_key() {
        for s in SCENARIOS
            .iter()
            .filter(|s| s.name.starts_with("passthrough"))
        {
            let direct = s.request(Target::Direct, 1);
            for proxy in [Target::Aurora, Target::Nginx] {
                let spec = s.request(proxy, 1);
                assert_eq!(spec.path, format!("/p/openai{}", direct.path), "{}", s.name);
                assert_eq!(bearer(&spec), format!("Bearer {GATEWAY_KEY}"));
                assert_eq!(spec.body, direct.body);
            }
            assert_eq!(bearer(&direct), format!("Bearer {PROVIDER_KEY}"));
        }
    }

    #[test]
    fn limited_targets_send_the_limited_key_on_small_json_only() {
        let small = SCENARIOS[0];
        assert_eq!(small.name, "passthrough_small_json");
        for limited in [Target::AuroraLimited, Target::AuroraLimitedRedis] {
            assert!(small.targets().contains(&limited));
            let spec = small.request(limited, 1);
            assert_eq!(bearer(&spec), format!("Bearer {LIMITED_KEY}"));
            assert_eq!(spec.path, small.request(Target::Aurora, 1).path);
            assert!(SCENARIOS[1..]
                .iter()
                .all(|s| !s.targets().contains(&limited)));
        }
    }

    #[test]
    fn translated_scenarios_send_direct_what_the_gateway_would_send_the_provider() {
        let chat = request("chat_to_anthropic_json", Target::Aurora);
        assert_eq!(chat.path, "/v1/chat/completions");
        assert!(String::from_utf8_lossy(&chat.body).contains("anthropic/claude"));
        let direct = request("chat_to_anthropic_json", Target::Direct);
        assert_eq!(direct.path, "/v1/messages");
        assert!(direct.headers.contains_key("anthropic-version"));
        let messages = request("messages_to_openai_stream", Target::Aurora);
        assert_eq!(messages.path, "/v1/messages");
        assert!(String::from_utf8_lossy(&messages.body).contains("openai:gpt-4o-mini"));
        assert_eq!(messages.marker, "message_stop");
        let direct = request("messages_to_openai_stream", Target::Direct);
        assert_eq!(direct.path, "/v1/chat/completions");
        assert_eq!(direct.marker, "data: [DONE]");
    }

    #[test]
    fn only_plain_proxy_scenarios_run_against_nginx() {
        for s in SCENARIOS {
            let targets = s.targets();
            if !s.paced {
                assert_eq!(targets[0], Target::Direct, "{}: baseline first", s.name);
            }
            assert_eq!(targets.contains(&Target::Nginx), s.nginx, "{}", s.name);
            assert_eq!(targets.contains(&Target::Pingora), s.nginx, "{}", s.name);
            assert!(targets.contains(&Target::Aurora));
        }
    }

    #[test]
    fn paced_streams_ask_the_mock_for_their_pace_and_send_what_their_stream_sends() {
        for (paced, plain) in [
            ("paced_streams_passthrough", "passthrough_sse"),
            (
                "paced_streams_chat_to_anthropic",
                "chat_to_anthropic_stream",
            ),
            (
                "paced_streams_messages_to_openai",
                "messages_to_openai_stream",
            ),
        ] {
            let spec = request(paced, Target::Aurora);
            let same = request(plain, Target::Aurora);
            assert_eq!(
                (spec.path.as_str(), &spec.body),
                (same.path.as_str(), &same.body)
            );
            assert!(spec
                .headers
                .contains_key(super::super::mock::canned::PACE_HEADER));
            assert!(spec
                .headers
                .contains_key(super::super::mock::canned::EVENTS_HEADER));
            assert!(!same
                .headers
                .contains_key(super::super::mock::canned::PACE_HEADER));
        }
    }

    #[test]
    fn upload_body_is_exactly_one_mebibyte_of_json() {
        let body = upload_body();
        assert_eq!(body.len(), UPLOAD_BYTES);
        serde_json::from_slice::<serde_json::Value>(&body).unwrap();
    }
}
