//! A `/v1` request whose provider depends on the `model` in its body: route the
//! model, then shape the body for the chosen provider (rewrite `model`, or
//! translate the whole request) and say how its response must be treated.

use std::sync::Arc;

use bytes::Bytes;

use super::model_field::ModelField;
use super::model_route::route_model;
use super::{GatewayError, UpstreamTarget};
use crate::config::Config;
use crate::providers::ProviderKind;
use crate::providers::{Provider, WireFormat};
use crate::translate::{
    anthropic_to_openai_request, openai_to_anthropic_request, OpenAiRequestOptions, RequestOptions,
    ResponseTranslation, TokenLimitField, TranslateError,
};

/// The `/v1` endpoints that carry a model in their body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelEndpoint {
    /// `POST /v1/chat/completions`.
    ChatCompletions,
    /// `POST /v1/embeddings`.
    Embeddings,
    /// `POST /v1/messages` (Anthropic Messages API).
    Messages,
    /// `POST /v1/messages/count_tokens`.
    CountTokens,
}

impl ModelEndpoint {
    /// Label for access logs.
    pub fn label(self) -> &'static str {
        match self {
            ModelEndpoint::ChatCompletions => "chat_completions",
            ModelEndpoint::Embeddings => "embeddings",
            ModelEndpoint::Messages => "messages",
            ModelEndpoint::CountTokens => "count_tokens",
        }
    }

    /// The format the endpoint speaks, and its path under a provider's base URL. The
    /// format also fixes the envelope of the errors the gateway raises on it.
    pub fn native(self) -> (WireFormat, &'static str) {
        match self {
            ModelEndpoint::ChatCompletions => (WireFormat::OpenAi, "/chat/completions"),
            ModelEndpoint::Embeddings => (WireFormat::OpenAi, "/embeddings"),
            ModelEndpoint::Messages => (WireFormat::Anthropic, "/messages"),
            ModelEndpoint::CountTokens => (WireFormat::Anthropic, "/messages/count_tokens"),
        }
    }

    /// The envelope the client expects for errors the gateway raises.
    pub fn error_format(self) -> WireFormat {
        self.native().0
    }
}

/// A request ready to go upstream.
#[derive(Debug)]
pub struct PreparedRequest {
    /// Provider and upstream path.
    pub target: UpstreamTarget,
    /// The body the provider receives.
    pub body: Bytes,
    /// How the provider's response becomes the client's, when it must change.
    pub translation: Option<ResponseTranslation>,
}

/// Routes `body`'s model and prepares the upstream request for `endpoint`.
/// `query` is the client's query string, kept when the provider speaks the
/// endpoint's own format (`/v1/messages?beta=true`). `created` is the Unix time a
/// translated response reports.
pub fn prepare(
    endpoint: ModelEndpoint,
    body: &[u8],
    query: Option<&str>,
    config: &Config,
    created: u64,
) -> Result<PreparedRequest, GatewayError> {
    let field = ModelField::find(body)?;
    let route = route_model(&field.name, config)?;
    let provider = route.provider;
    if provider.missing_key() {
        return Err(GatewayError::missing_provider_key(&provider));
    }
    let (native, path) = endpoint.native();
    if provider.format == native {
        // Same API on both sides: the body goes as sent, only `model` changes.
        return Ok(PreparedRequest {
            target: target(&provider, path, query),
            body: field.replace(body, &route.model).into(),
            translation: None,
        });
    }
    match endpoint {
        ModelEndpoint::ChatCompletions => {
            let opts = RequestOptions {
                model: route.model,
                default_max_tokens: config.models.default_max_tokens,
            };
            let translated =
                openai_to_anthropic_request(body, &opts).map_err(GatewayError::from)?;
            Ok(PreparedRequest {
                target: target(&provider, ModelEndpoint::Messages.native().1, None),
                body: translated.body.into(),
                translation: Some(ResponseTranslation::AnthropicToOpenAi {
                    model: field.name,
                    created,
                    stream: translated.stream,
                    include_usage: translated.include_usage,
                }),
            })
        }
        ModelEndpoint::Messages => {
            let traits = config.models.traits(&provider, &field.name, &route.model);
            let opts = OpenAiRequestOptions {
                reasoning: traits.reasons(&route.model),
                token_limit: if provider.kind == ProviderKind::OpenAi {
                    TokenLimitField::MaxCompletionTokens
                } else {
                    TokenLimitField::MaxTokens
                },
                max_output_tokens: traits.max_output_tokens.map(u64::from),
                model: route.model,
            };
            let translated =
                anthropic_to_openai_request(body, &opts).map_err(GatewayError::from)?;
            Ok(PreparedRequest {
                target: target(&provider, ModelEndpoint::ChatCompletions.native().1, None),
                body: translated.body.into(),
                translation: Some(ResponseTranslation::OpenAiToAnthropic {
                    model: field.name,
                    stream: translated.stream,
                }),
            })
        }
        ModelEndpoint::Embeddings | ModelEndpoint::CountTokens => {
            Err(GatewayError::invalid_request(format!(
                "{} is served only by {}-format providers; `{}` speaks the {} format",
                endpoint.label(),
                api_name(native),
                provider.name,
                api_name(provider.format)
            ))
            .with_param("model"))
        }
    }
}

fn api_name(format: WireFormat) -> &'static str {
    match format {
        WireFormat::OpenAi => "OpenAI",
        WireFormat::Anthropic => "Anthropic",
    }
}

fn target(provider: &Arc<Provider>, endpoint: &str, query: Option<&str>) -> UpstreamTarget {
    let path_and_query = match query {
        Some(query) => format!("{}{endpoint}?{query}", provider.base.path),
        None => format!("{}{endpoint}", provider.base.path),
    };
    UpstreamTarget {
        path_and_query,
        provider: Arc::clone(provider),
        // Needs the client's headers: set by the caller (provider_key::upstream_credential).
        credential: Default::default(),
    }
}

impl From<TranslateError> for GatewayError {
    fn from(e: TranslateError) -> Self {
        let param = e.param().map(str::to_string);
        let mut err = if e.is_client_error() {
            GatewayError::invalid_request(e.to_string())
        } else {
            GatewayError::bad_gateway(e.to_string())
        };
        err.param = param;
        err
    }
}
