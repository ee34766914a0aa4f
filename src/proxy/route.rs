//! Which face of the gateway a request path addresses.

use super::model_request::ModelEndpoint;
use super::passthrough::{PassthroughRoute, PASSTHROUGH_PREFIX};
use super::GatewayError;
use crate::config::ServerSettings;

/// The route a request takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /health`, answered by the gateway without auth.
    Health,
    /// `GET /` or `HEAD /`: an empty 200 without auth, for clients that probe their
    /// base URL (Claude Code does before every run).
    Root,
    /// `/p/{provider}/{endpoint}`.
    Passthrough(PassthroughRoute),
    /// `POST /v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, … : routed by
    /// the body's model.
    ModelCall(ModelEndpoint),
    /// `GET /v1/models`.
    Models,
    /// `GET /metrics` (Prometheus).
    Metrics,
    /// `GET /v1/models/{id}`; the id may hold slashes (`openrouter/google/gemini-2.5`).
    Model(String),
    /// `GET` or `DELETE /v1/responses/{id}`: a stored Responses API answer.
    StoredResponse(String),
    /// `GET /v1/responses/{id}/input_items` or `POST /v1/responses/{id}/cancel`.
    ResponsePart(String, ResponsePart),
}

/// What below a response `/v1/responses/{id}/…` addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponsePart {
    /// `GET …/input_items`.
    InputItems,
    /// `POST …/cancel`.
    Cancel,
}

impl ResponsePart {
    /// What follows the id in the provider's path.
    pub fn upstream_suffix(self) -> &'static str {
        match self {
            ResponsePart::InputItems => "/input_items",
            ResponsePart::Cancel => "/cancel",
        }
    }

    fn method(self) -> http::Method {
        match self {
            ResponsePart::InputItems => http::Method::GET,
            ResponsePart::Cancel => http::Method::POST,
        }
    }
}

impl Route {
    /// Short label for access logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Route::Health => "health",
            Route::Root => "root",
            Route::Passthrough(_) => "passthrough",
            Route::ModelCall(endpoint) => endpoint.label(),
            Route::Models | Route::Model(_) => "models",
            Route::Metrics => "metrics",
            Route::StoredResponse(_) | Route::ResponsePart(..) => "responses",
        }
    }

    /// The one method the route answers.
    pub fn method(&self) -> Option<http::Method> {
        match self {
            Route::Health | Route::Passthrough(_) => None,
            Route::Root => Some(http::Method::GET),
            Route::ModelCall(_) => Some(http::Method::POST),
            Route::Models | Route::Model(_) | Route::Metrics => Some(http::Method::GET),
            // GET or DELETE, checked by its handler.
            Route::StoredResponse(_) => None,
            Route::ResponsePart(_, part) => Some(part.method()),
        }
    }
}

/// Classifies `path` (raw, still percent-encoded) under the current settings.
pub fn classify(path: &str, settings: &ServerSettings) -> Result<Route, GatewayError> {
    if path == "/health" {
        return Ok(Route::Health);
    }
    if path == "/" {
        return Ok(Route::Root);
    }
    if let Some(rest) = path.strip_prefix(PASSTHROUGH_PREFIX) {
        if !settings.enable_passthrough_routes {
            return Err(GatewayError::not_found(
                "passthrough routes (/p/) are disabled on this gateway",
            ));
        }
        return PassthroughRoute::parse(rest, settings.allow_passthrough_v1_alias)
            .map(Route::Passthrough);
    }
    match path {
        "/metrics" => return Ok(Route::Metrics),
        "/v1/chat/completions" => return Ok(Route::ModelCall(ModelEndpoint::ChatCompletions)),
        "/v1/embeddings" => return Ok(Route::ModelCall(ModelEndpoint::Embeddings)),
        "/v1/completions" => return Ok(Route::ModelCall(ModelEndpoint::Completions)),
        "/v1/moderations" => return Ok(Route::ModelCall(ModelEndpoint::Moderations)),
        "/v1/messages" => return Ok(Route::ModelCall(ModelEndpoint::Messages)),
        "/v1/messages/count_tokens" => return Ok(Route::ModelCall(ModelEndpoint::CountTokens)),
        "/v1/responses" => return Ok(Route::ModelCall(ModelEndpoint::Responses)),
        "/v1/responses/input_tokens" => {
            return Ok(Route::ModelCall(ModelEndpoint::ResponsesInputTokens))
        }
        "/v1/responses/compact" => return Ok(Route::ModelCall(ModelEndpoint::ResponsesCompact)),
        "/v1/models" => return Ok(Route::Models),
        _ => {}
    }
    if let Some(id) = path.strip_prefix("/v1/models/").filter(|id| !id.is_empty()) {
        let id = percent_encoding::percent_decode_str(id)
            .decode_utf8()
            .map_err(|_| GatewayError::invalid_request("model id is not valid UTF-8"))?;
        return Ok(Route::Model(id.into_owned()));
    }
    if let Some((id, part)) = path
        .strip_prefix("/v1/responses/")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(id, _)| !id.is_empty() && !id.contains('/'))
    {
        let part = match part {
            "input_items" => ResponsePart::InputItems,
            "cancel" => ResponsePart::Cancel,
            _ => return Err(no_route(path)),
        };
        let id = percent_encoding::percent_decode_str(id)
            .decode_utf8()
            .map_err(|_| GatewayError::invalid_request("response id is not valid UTF-8"))?;
        return Ok(Route::ResponsePart(id.into_owned(), part));
    }
    if let Some(id) = path
        .strip_prefix("/v1/responses/")
        .filter(|id| !id.is_empty() && !id.contains('/'))
    {
        let id = percent_encoding::percent_decode_str(id)
            .decode_utf8()
            .map_err(|_| GatewayError::invalid_request("response id is not valid UTF-8"))?;
        return Ok(Route::StoredResponse(id.into_owned()));
    }
    if path == "/p" {
        return Err(GatewayError::invalid_request(
            "missing provider: use /p/{provider}/{endpoint}",
        ));
    }
    Err(no_route(path))
}

fn no_route(path: &str) -> GatewayError {
    GatewayError::not_found(format!(
        "no route for `{path}`: the gateway serves /v1/chat/completions, /v1/completions, /v1/responses, /v1/embeddings, /v1/moderations, /v1/models, /v1/messages and provider APIs under /p/{{provider}}/{{endpoint}}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_and_passthrough_are_routed() {
        let s = ServerSettings::default();
        assert_eq!(classify("/health", &s), Ok(Route::Health));
        assert_eq!(classify("/", &s), Ok(Route::Root));
        assert!(matches!(
            classify("/p/openai/models", &s),
            Ok(Route::Passthrough(_))
        ));
        assert_eq!(classify("/nope", &s).unwrap_err().status, 404);
    }

    #[test]
    fn v1_routes_are_classified() {
        let s = ServerSettings::default();
        assert_eq!(
            classify("/v1/chat/completions", &s),
            Ok(Route::ModelCall(ModelEndpoint::ChatCompletions))
        );
        assert_eq!(
            classify("/v1/embeddings", &s),
            Ok(Route::ModelCall(ModelEndpoint::Embeddings))
        );
        assert_eq!(
            classify("/v1/completions", &s),
            Ok(Route::ModelCall(ModelEndpoint::Completions))
        );
        assert_eq!(
            classify("/v1/moderations", &s),
            Ok(Route::ModelCall(ModelEndpoint::Moderations))
        );
        assert_eq!(classify("/v1/models", &s), Ok(Route::Models));
        assert_eq!(classify("/metrics", &s), Ok(Route::Metrics));
        assert_eq!(
            classify("/v1/messages", &s),
            Ok(Route::ModelCall(ModelEndpoint::Messages))
        );
        assert_eq!(
            classify("/v1/messages/count_tokens", &s),
            Ok(Route::ModelCall(ModelEndpoint::CountTokens))
        );
        assert_eq!(
            classify("/v1/models/openrouter/google%2Fgemini-2.5", &s),
            Ok(Route::Model("openrouter/google/gemini-2.5".into()))
        );
        assert_eq!(classify("/v1/models/", &s).unwrap_err().status, 404);
        assert_eq!(
            classify("/v1/responses", &s),
            Ok(Route::ModelCall(ModelEndpoint::Responses))
        );
        assert_eq!(
            classify("/v1/responses/resp_1", &s),
            Ok(Route::StoredResponse("resp_1".into()))
        );
        assert_eq!(
            classify("/v1/responses/input_tokens", &s),
            Ok(Route::ModelCall(ModelEndpoint::ResponsesInputTokens))
        );
        assert_eq!(
            classify("/v1/responses/compact", &s),
            Ok(Route::ModelCall(ModelEndpoint::ResponsesCompact))
        );
        assert_eq!(
            classify("/v1/responses/resp_1/input_items", &s),
            Ok(Route::ResponsePart(
                "resp_1".into(),
                ResponsePart::InputItems
            ))
        );
        assert_eq!(
            classify("/v1/responses/resp_1/cancel", &s),
            Ok(Route::ResponsePart("resp_1".into(), ResponsePart::Cancel))
        );
        for unknown in [
            "/v1/responses/resp_1/other",
            "/v1/responses/resp_1/cancel/x",
        ] {
            assert_eq!(classify(unknown, &s).unwrap_err().status, 404, "{unknown}");
        }
    }

    #[test]
    fn disabled_passthrough_is_not_found() {
        let s = ServerSettings {
            enable_passthrough_routes: false,
            ..ServerSettings::default()
        };
        assert_eq!(classify("/p/openai/models", &s).unwrap_err().status, 404);
    }
}
