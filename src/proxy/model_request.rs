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
    ResponseTranslation, TranslateError,
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

    /// The envelope the client expects for errors the gateway raises.
    pub fn error_format(self) -> WireFormat {
        match self {
            ModelEndpoint::ChatCompletions | ModelEndpoint::Embeddings => WireFormat::OpenAi,
            ModelEndpoint::Messages | ModelEndpoint::CountTokens => WireFormat::Anthropic,
        }
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
/// `created` is the Unix time a translated response reports.
pub fn prepare(
    endpoint: ModelEndpoint,
    body: &[u8],
    config: &Config,
    created: u64,
) -> Result<PreparedRequest, GatewayError> {
    let field = ModelField::find(body)?;
    let route = route_model(&field.name, config)?;
    let provider = route.provider;
    if provider.missing_key() {
        return Err(GatewayError::invalid_request(format!(
            "provider `{}` has no API key: set {} on the gateway",
            provider.name, provider.key_env
        )));
    }
    match (endpoint, provider.format) {
        (ModelEndpoint::ChatCompletions, WireFormat::OpenAi) => Ok(PreparedRequest {
            target: target(&provider, "/chat/completions"),
            body: field.replace(body, &route.model).into(),
            translation: None,
        }),
        (ModelEndpoint::ChatCompletions, WireFormat::Anthropic) => {
            let opts = RequestOptions {
                model: route.model,
                default_max_tokens: config.models.default_max_tokens,
            };
            let translated =
                openai_to_anthropic_request(body, &opts).map_err(GatewayError::from)?;
            Ok(PreparedRequest {
                target: target(&provider, "/messages"),
                body: translated.body.into(),
                translation: Some(ResponseTranslation::AnthropicToOpenAi {
                    model: field.name,
                    created,
                    stream: translated.stream,
                    include_usage: translated.include_usage,
                }),
            })
        }
        (ModelEndpoint::Embeddings, WireFormat::OpenAi) => Ok(PreparedRequest {
            target: target(&provider, "/embeddings"),
            body: field.replace(body, &route.model).into(),
            translation: None,
        }),
        (ModelEndpoint::Embeddings, WireFormat::Anthropic) => Err(GatewayError::invalid_request(
            format!(
                "embeddings are served only by OpenAI-format providers; `{}` speaks the Anthropic format and has no embeddings API",
                provider.name
            ),
        )
        .with_param("model")),
        (ModelEndpoint::Messages, WireFormat::Anthropic) => Ok(PreparedRequest {
            target: target(&provider, "/messages"),
            body: field.replace(body, &route.model).into(),
            translation: None,
        }),
        (ModelEndpoint::Messages, WireFormat::OpenAi) => {
            let opts = OpenAiRequestOptions {
                model: route.model,
                supports_reasoning_effort: matches!(
                    provider.kind,
                    ProviderKind::OpenAi | ProviderKind::OpenRouter | ProviderKind::Xai
                ),
            };
            let translated =
                anthropic_to_openai_request(body, &opts).map_err(GatewayError::from)?;
            Ok(PreparedRequest {
                target: target(&provider, "/chat/completions"),
                body: translated.body.into(),
                translation: Some(ResponseTranslation::OpenAiToAnthropic {
                    model: field.name,
                    stream: translated.stream,
                }),
            })
        }
        (ModelEndpoint::CountTokens, WireFormat::Anthropic) => Ok(PreparedRequest {
            target: target(&provider, "/messages/count_tokens"),
            body: field.replace(body, &route.model).into(),
            translation: None,
        }),
        (ModelEndpoint::CountTokens, WireFormat::OpenAi) => Err(GatewayError::invalid_request(
            format!(
                "count_tokens is served only by Anthropic-format providers; `{}` speaks the OpenAI format and has no token counting API",
                provider.name
            ),
        )
        .with_param("model")),
    }
}

fn target(provider: &Arc<Provider>, endpoint: &str) -> UpstreamTarget {
    UpstreamTarget {
        path_and_query: format!("{}{endpoint}", provider.base.path),
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
