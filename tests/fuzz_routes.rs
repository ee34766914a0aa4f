//! Property tests of the path and model routers: any path or model name is
//! routed or refused without a panic, a passthrough path never reaches above
//! the provider's base path, and a routed model names a configured provider.

#[path = "common/proptest_config.rs"]
mod proptest_config;

use aurora::config::{build_config, Config, EnvSnapshot, ServerSettings};
use aurora::proxy::model_route::route_model;
use aurora::proxy::passthrough::PassthroughRoute;
use aurora::proxy::route::{classify, Route};
use percent_encoding::percent_decode_str;
use proptest::prelude::*;
use proptest::sample::select;
use proptest_config::config;

/// Path pieces that matter to the router: separators, dot segments in every
/// spelling, encoded bytes, the `v1` alias, query and fragment characters.
const PATH_PIECES: &[&str] = &[
    "/",
    "//",
    ".",
    "..",
    "%2e",
    "%2E%2e",
    "%2f",
    "%2F",
    "%5c",
    "\\",
    "%00",
    "%0a",
    "%ff",
    "%c3%a9",
    "%",
    "%2",
    "v1",
    "v1/",
    "openai",
    "anthropic",
    "models",
    "chat",
    "?",
    "#",
    "%3f",
    "%23",
    "%25",
    "%252e%252e",
    "://",
    "http:",
    "é",
    " ",
    "a",
];

fn path_tail() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![6 => select(PATH_PIECES).prop_map(String::from), 1 => any::<String>()],
        0..10,
    )
    .prop_map(|pieces| pieces.concat())
}

/// Any path, mostly under `/p/` or `/v1/`.
fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => path_tail().prop_map(|t| format!("/p/{t}")),
        1 => path_tail().prop_map(|t| format!("/v1/{t}")),
        1 => path_tail(),
        1 => any::<String>(),
    ]
}

fn settings(passthrough: bool, alias: bool) -> ServerSettings {
    ServerSettings {
        enable_passthrough_routes: passthrough,
        allow_passthrough_v1_alias: alias,
        ..ServerSettings::default()
    }
}

/// `upstream` (as returned by `upstream_path`) addresses a path below `base`
/// once the provider decodes it, and carries no query or fragment of its own.
fn check_below_base(upstream: &str, base: &str) -> Result<(), TestCaseError> {
    let below = upstream
        .strip_prefix(base)
        .and_then(|r| r.strip_prefix('/'));
    let Some(below) = below else {
        return Err(TestCaseError::fail(format!(
            "{upstream} is not below {base}"
        )));
    };
    prop_assert!(!below.contains(['?', '#']), "{}", upstream);
    let decoded = percent_decode_str(below).decode_utf8_lossy();
    prop_assert!(
        !decoded.is_empty() && !decoded.starts_with('/'),
        "{}",
        upstream
    );
    prop_assert!(
        decoded.split('/').all(|s| s != "." && s != ".."),
        "{} decodes to {}",
        upstream,
        decoded
    );
    Ok(())
}

fn model_config() -> Config {
    let yaml = "
providers:
  anthropic: {api_key: k}
  openai: {api_key: k}
  groq: {api_key: k, models: [llama-3.1-8b, meta-llama/Llama-3]}
  local: {type: vllm, base_url: 'http://127.0.0.1:8000/v1', models: [qwen]}
models:
  aliases:
    fast: groq/llama-3.1-8b
    smart: anthropic/claude-sonnet-4-5
";
    // A loopback listener: these providers hold keys and the gateway has none.
    let env = EnvSnapshot::from_pairs([("AURORA_LISTEN", "127.0.0.1:8080")]);
    build_config(Some(yaml), None, &env).unwrap()
}

const MODEL_PIECES: &[&str] = &[
    "anthropic",
    "openai",
    "groq",
    "local",
    "gemini",
    "/",
    ":",
    "//",
    "::",
    "claude-",
    "gpt-",
    "o1",
    "o3",
    "gemini-",
    "grok-",
    "deepseek-",
    "fast",
    "smart",
    "llama-3.1-8b",
    "meta-llama/Llama-3",
    "qwen",
    " ",
    "",
    "CLAUDE-",
    "é",
];

fn model_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::vec(select(MODEL_PIECES), 0..5).prop_map(|p| p.concat()),
        1 => any::<String>(),
    ]
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn any_path_is_classified_and_passthrough_stays_below_the_base(
        path in path(),
        passthrough in any::<bool>(),
        alias in any::<bool>(),
    ) {
        match classify(&path, &settings(passthrough, alias)) {
            Ok(Route::Passthrough(route)) => {
                prop_assert!(passthrough);
                for base in ["", "/v1", "/api/openai/v1"] {
                    check_below_base(&route.upstream_path(base, None), base)?;
                }
            }
            Ok(_) => {}
            Err(e) => prop_assert!(matches!(e.status, 400 | 404), "{} for {}", e.status, path),
        }
    }

    #[test]
    fn any_passthrough_tail_is_parsed_or_refused(tail in path_tail(), alias in any::<bool>()) {
        if let Ok(route) = PassthroughRoute::parse(&tail, alias) {
            prop_assert!(!route.provider.is_empty());
            check_below_base(&route.upstream_path("/v1", Some("a=b")).replace("?a=b", ""), "/v1")?;
        }
    }

    #[test]
    fn any_model_name_routes_to_a_configured_provider_or_is_refused(requested in model_name()) {
        let config = model_config();
        match route_model(&requested, &config) {
            Ok(route) => {
                prop_assert!(config.providers.configured().any(|p| p.name == route.provider.name));
                prop_assert!(!route.model.trim().is_empty(), "{:?} -> {:?}", requested, route.model);
                // Routing is a function of the name.
                let again = route_model(&requested, &config).map_err(|e| TestCaseError::fail(e.message))?;
                prop_assert_eq!((&again.provider.name, &again.model), (&route.provider.name, &route.model));
            }
            Err(e) => {
                // 404: a built-in provider type nobody configured; 400: anything else.
                prop_assert!(matches!(e.status, 400 | 404), "{} for {:?}", e.status, requested);
                prop_assert_eq!(e.param.as_deref(), Some("model"));
            }
        }
    }
}

/// Found by the model-name property: a provider prefix followed by blanks
/// routes a model named " " upstream, where an empty name is refused.
#[test]
fn a_blank_model_after_a_provider_prefix_is_refused() {
    for requested in ["anthropic/ ", "openai:\t", "groq/  "] {
        let e = route_model(requested, &model_config()).map(|r| r.model);
        assert_eq!(
            e.map_err(|e| (e.status, e.param)),
            Err((400, Some("model".to_string()))),
            "{requested:?}"
        );
    }
}
