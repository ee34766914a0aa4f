//! Span names and attributes, after the OpenTelemetry semantic conventions for
//! generative AI (`gen_ai.*`) and HTTP. Plain functions of what the request carried.

use opentelemetry::{KeyValue, Value};

use crate::logging::clipped;
use crate::providers::{Provider, ProviderKind};

/// `gen_ai.operation.name`.
pub const OPERATION: &str = "gen_ai.operation.name";
/// `gen_ai.provider.name`.
pub const PROVIDER: &str = "gen_ai.provider.name";
/// `gen_ai.system`: the older name of `gen_ai.provider.name`, still read by many backends.
pub const SYSTEM: &str = "gen_ai.system";
/// `gen_ai.request.model`.
pub const REQUEST_MODEL: &str = "gen_ai.request.model";
/// `gen_ai.response.model`.
pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
/// `gen_ai.usage.input_tokens`.
pub const INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
/// `gen_ai.usage.output_tokens`.
pub const OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
/// The request's token counts were estimated (as the access line's `tokens_estimated`).
pub const USAGE_ESTIMATED: &str = "aurora.usage.estimated";
/// Estimated input tokens (cached input included), in place of [`INPUT_TOKENS`].
pub const ESTIMATED_INPUT_TOKENS: &str = "aurora.usage.estimated_input_tokens";
/// Estimated output tokens, in place of [`OUTPUT_TOKENS`].
pub const ESTIMATED_OUTPUT_TOKENS: &str = "aurora.usage.estimated_output_tokens";
/// `server.address`: the provider's host.
pub const SERVER_ADDRESS: &str = "server.address";
/// `server.port`: the provider's port.
pub const SERVER_PORT: &str = "server.port";
/// `http.response.status_code`.
pub const STATUS_CODE: &str = "http.response.status_code";
/// `http.request.method`.
pub const METHOD: &str = "http.request.method";
/// `error.type`.
pub const ERROR_TYPE: &str = "error.type";
/// The gateway's route label, as in the metrics.
pub const ROUTE: &str = "aurora.route";
/// The gateway's request id, as in the access log and `X-Aurora-Request-Id`.
pub const REQUEST_ID: &str = "aurora.request_id";
/// The configured provider instance (`openai-east`), as in the metrics.
pub const INSTANCE: &str = "aurora.provider";

/// Whether requests on `route` get a span: health probes, `/` and scrapes do not.
pub fn traced_route(route: &str) -> bool {
    !matches!(route, "health" | "root" | "metrics")
}

/// The `gen_ai.operation.name` of a `method` request on `route` that was routed to a
/// model (`routed_model`); for passthrough, read from the provider path
/// (`…/chat/completions`) of a `POST`, as the same path read (`GET` lists stored
/// completions) calls no model. `None`: not a generative AI call.
pub fn operation(
    route: &str,
    method: &str,
    routed_model: bool,
    upstream_path: Option<&str>,
) -> Option<&'static str> {
    if route == "passthrough" {
        return upstream_path
            .filter(|_| method == "POST")
            .and_then(operation_of_path);
    }
    if !routed_model {
        // `GET /v1/responses/{id}` reads a stored answer; nothing was generated.
        return None;
    }
    match route {
        "chat_completions" | "messages" => Some("chat"),
        "embeddings" => Some("embeddings"),
        "responses" => Some("responses"),
        "completions" => Some("text_completion"),
        _ => None,
    }
}

/// The operation a provider path names.
fn operation_of_path(path_and_query: &str) -> Option<&'static str> {
    let path = path_and_query.split('?').next().unwrap_or_default();
    let path = path.trim_end_matches('/');
    if path.ends_with("/chat/completions") || path.ends_with("/messages") {
        Some("chat")
    } else if path.ends_with("/embeddings") {
        Some("embeddings")
    } else if path.ends_with("/responses") {
        Some("responses")
    } else if path.ends_with("/completions") {
        Some("text_completion")
    } else {
        None
    }
}

/// The `gen_ai.provider.name` of a provider type: the convention's well-known value
/// where it has one, else the type's own name.
pub fn provider_name(kind: ProviderKind) -> &'static str {
    kind.facts().telemetry_name
}

/// `{operation} {model}` for a generative AI call (as the convention names spans),
/// else `{method} {route}`.
pub fn span_name(
    operation: Option<&str>,
    model: Option<&str>,
    method: &str,
    route: &str,
) -> String {
    match (operation, model) {
        (Some(op), Some(model)) => format!("{op} {}", clipped(model, MAX_ATTRIBUTE_TEXT)),
        (Some(op), None) => op.to_string(),
        (None, _) => format!("{} {route}", method_name(method)),
    }
}

/// `method` as the convention's `http.request.method` holds it: a standard method's
/// name, `_OTHER` for any other. A client picks the method's text, of any length: it
/// would otherwise name spans, and ride in them, as the client wrote it.
pub fn method_name(method: &str) -> &str {
    match method {
        "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "CONNECT" | "OPTIONS" | "TRACE" | "PATCH" => {
            method
        }
        _ => "_OTHER",
    }
}

/// What the request span knows when the request has been routed.
pub fn request_start(method: &str, route: &'static str, request_id: &str) -> Vec<KeyValue> {
    vec![
        KeyValue::new(METHOD, method_name(method).to_string()),
        KeyValue::new(ROUTE, route),
        KeyValue::new(REQUEST_ID, request_id.to_string()),
    ]
}

/// The generative AI attributes of a call to `provider` for `model`.
pub fn gen_ai(
    operation: Option<&'static str>,
    provider: Option<&Provider>,
    model: Option<&str>,
) -> Vec<KeyValue> {
    // Room for an attempt's method too.
    let mut out = Vec::with_capacity(8);
    if let Some(op) = operation {
        out.push(KeyValue::new(OPERATION, op));
    }
    if let Some(p) = provider {
        let name = provider_name(p.kind);
        out.push(KeyValue::new(PROVIDER, name));
        out.push(KeyValue::new(SYSTEM, name));
        out.push(KeyValue::new(INSTANCE, p.name.clone()));
        out.push(KeyValue::new(SERVER_ADDRESS, p.base.host.clone()));
        out.push(KeyValue::new(SERVER_PORT, i64::from(p.base.port)));
    }
    if let Some(model) = model {
        out.push(KeyValue::new(
            REQUEST_MODEL,
            clipped(model, MAX_ATTRIBUTE_TEXT).into_owned(),
        ));
    }
    out
}

/// The most of a client's text an attribute holds: a model name of megabytes would
/// otherwise ride in every span of its request, and a batch of such spans past a
/// collector's body limit is refused whole, everyone's spans with it.
pub const MAX_ATTRIBUTE_TEXT: usize = 256;

/// The token counts the provider reported; a count it did not report is left out.
pub fn usage(input: Option<u64>, output: Option<u64>) -> Vec<KeyValue> {
    [(INPUT_TOKENS, input), (OUTPUT_TOKENS, output)]
        .into_iter()
        .filter_map(|(key, n)| n.map(|n| KeyValue::new(key, count(n))))
        .collect()
}

/// Token counts the gateway estimated (the provider reported none, or not all): kept
/// apart from the convention's, which say what the provider reported.
pub fn estimated_usage(input: u64, output: u64) -> Vec<KeyValue> {
    vec![
        KeyValue::new(USAGE_ESTIMATED, true),
        KeyValue::new(ESTIMATED_INPUT_TOKENS, count(input)),
        KeyValue::new(ESTIMATED_OUTPUT_TOKENS, count(output)),
    ]
}

/// The top-level `model` of a JSON answer (OpenAI's and Anthropic's both have one).
pub fn model_of_json(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        model: Option<String>,
    }
    serde_json::from_slice::<Answer>(body).ok()?.model
}

/// A status code attribute.
pub fn status_code(status: u16) -> KeyValue {
    KeyValue::new(STATUS_CODE, i64::from(status))
}

fn count(n: u64) -> Value {
    Value::I64(i64::try_from(n).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_made_up_method_is_other_and_a_long_model_is_clipped_in_a_span_name() {
        assert_eq!(method_name("PATCH"), "PATCH");
        let method = "A".repeat(60 * 1024);
        assert_eq!(method_name(&method), "_OTHER");
        assert_eq!(span_name(None, None, &method, "chat"), "_OTHER chat");
        let model = "m".repeat(64 * 1024);
        let name = span_name(Some("chat"), Some(&model), "POST", "chat");
        assert!(name.len() <= "chat ".len() + MAX_ATTRIBUTE_TEXT + '…'.len_utf8());
    }

    #[test]
    fn model_routes_name_their_generative_ai_operation() {
        let op = |route, routed| operation(route, "POST", routed, None);
        assert_eq!(op("chat_completions", true), Some("chat"));
        assert_eq!(op("messages", true), Some("chat"));
        assert_eq!(op("embeddings", true), Some("embeddings"));
        assert_eq!(op("responses", true), Some("responses"));
        assert_eq!(op("completions", true), Some("text_completion"));
        assert_eq!(op("count_tokens", true), None);
        assert_eq!(op("responses", false), None);
        assert_eq!(operation("models", "GET", false, None), None);
    }

    #[test]
    fn a_passthrough_read_of_a_model_path_is_no_operation() {
        for method in ["GET", "DELETE", "HEAD"] {
            let path = Some("/v1/chat/completions");
            assert_eq!(operation("passthrough", method, false, path), None);
        }
    }

    #[test]
    fn a_passthrough_operation_is_read_from_the_provider_path() {
        let op = |path| operation("passthrough", "POST", false, Some(path));
        assert_eq!(op("/v1/chat/completions?x=1"), Some("chat"));
        assert_eq!(op("/v1/messages"), Some("chat"));
        assert_eq!(op("/api/paas/v4/embeddings"), Some("embeddings"));
        assert_eq!(op("/v1/responses"), Some("responses"));
        assert_eq!(op("/v1/completions"), Some("text_completion"));
        assert_eq!(op("/v1/messages/count_tokens"), None);
        assert_eq!(op("/v1/files"), None);
    }

    #[test]
    fn provider_names_follow_the_conventions_well_known_values() {
        assert_eq!(provider_name(ProviderKind::OpenAi), "openai");
        assert_eq!(provider_name(ProviderKind::Anthropic), "anthropic");
        assert_eq!(provider_name(ProviderKind::Gemini), "gcp.gemini");
        assert_eq!(provider_name(ProviderKind::Xai), "x_ai");
        assert_eq!(provider_name(ProviderKind::Vllm), "vllm");
    }

    #[test]
    fn spans_are_named_by_operation_and_model_else_by_method_and_route() {
        assert_eq!(
            span_name(Some("chat"), Some("gpt-4o"), "POST", "chat_completions"),
            "chat gpt-4o"
        );
        assert_eq!(span_name(Some("chat"), None, "POST", "passthrough"), "chat");
        assert_eq!(span_name(None, None, "GET", "models"), "GET models");
    }

    #[test]
    fn unreported_token_counts_are_left_out() {
        assert!(usage(None, None).is_empty());
        let both = usage(Some(12), Some(3));
        assert_eq!(both[0], KeyValue::new(INPUT_TOKENS, 12_i64));
        assert_eq!(both[1], KeyValue::new(OUTPUT_TOKENS, 3_i64));
        assert_eq!(
            usage(None, Some(5)),
            vec![KeyValue::new(OUTPUT_TOKENS, 5_i64)]
        );
    }

    #[test]
    fn estimated_token_counts_are_marked_and_apart_from_reported_ones() {
        let estimated = estimated_usage(12, 3);
        assert_eq!(estimated[0], KeyValue::new(USAGE_ESTIMATED, true));
        assert_eq!(estimated[1], KeyValue::new(ESTIMATED_INPUT_TOKENS, 12_i64));
        assert_eq!(estimated[2], KeyValue::new(ESTIMATED_OUTPUT_TOKENS, 3_i64));
        assert!(!estimated
            .iter()
            .any(|kv| [INPUT_TOKENS, OUTPUT_TOKENS].contains(&kv.key.as_str())));
    }

    #[test]
    fn the_response_model_is_the_answers_top_level_model() {
        let body = br#"{"id":"x","model":"gpt-4o-2024-08-06","usage":{"model":"no"}}"#;
        assert_eq!(model_of_json(body).as_deref(), Some("gpt-4o-2024-08-06"));
        assert_eq!(model_of_json(b"{}"), None);
        assert_eq!(model_of_json(b"not json"), None);
    }

    #[test]
    fn probes_and_scrapes_are_not_traced() {
        assert!(!traced_route("health"));
        assert!(!traced_route("metrics"));
        assert!(traced_route("passthrough"));
        assert!(traced_route("-"));
    }
}
