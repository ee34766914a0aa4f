//! A `/v1` request whose provider depends on the `model` in its body: route the
//! model, then shape the body for the chosen provider (rewrite `model`, or
//! translate the whole request) and say how its response must be treated.

use std::sync::Arc;

use bytes::Bytes;

use super::chat_body_fit::ChatFit;
use super::messages_body_fit::MessagesFit;
pub use super::model_field::ModelField;
use super::model_route::route_model;
use super::upstream::AnswerShape;
use super::{GatewayError, UpstreamTarget};
use crate::config::Config;
use crate::metrics::usage::ModelWork;
use crate::providers::{o_series, Provider, ProviderKind, WireFormat};
use crate::translate::codec::{decode_request, encode_request, ClientFormat, DecodeOptions};
use crate::translate::{
    CheckedBody, OpenAiRequestOptions, ResponseCodecs, StreamUsage, TranslateError,
};

/// The `/v1` endpoints that carry a model in their body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelEndpoint {
    /// `POST /v1/chat/completions`.
    ChatCompletions,
    /// `POST /v1/embeddings`.
    Embeddings,
    /// `POST /v1/completions` (the legacy text completions).
    Completions,
    /// `POST /v1/moderations`.
    Moderations,
    /// `POST /v1/messages` (Anthropic Messages API).
    Messages,
    /// `POST /v1/messages/count_tokens`.
    CountTokens,
    /// `POST /v1/responses` (OpenAI Responses API).
    Responses,
    /// `POST /v1/responses/input_tokens`: a Responses request's input counted.
    ResponsesInputTokens,
    /// `POST /v1/responses/compact`: a Responses conversation compacted.
    ResponsesCompact,
}

impl ModelEndpoint {
    /// Label for access logs.
    pub fn label(self) -> &'static str {
        match self {
            ModelEndpoint::ChatCompletions => "chat_completions",
            ModelEndpoint::Embeddings => "embeddings",
            ModelEndpoint::Completions => "completions",
            ModelEndpoint::Moderations => "moderations",
            ModelEndpoint::Messages => "messages",
            ModelEndpoint::CountTokens => "count_tokens",
            // Counting a request's tokens, as `count_tokens` does for Messages.
            ModelEndpoint::ResponsesInputTokens => "count_tokens",
            ModelEndpoint::Responses | ModelEndpoint::ResponsesCompact => "responses",
        }
    }

    /// What a call has a model do for it, which the provider bills (counting tokens
    /// does not, nor does OpenAI's moderation).
    pub fn model_work(self) -> Option<ModelWork> {
        match self {
            ModelEndpoint::CountTokens
            | ModelEndpoint::ResponsesInputTokens
            | ModelEndpoint::Moderations => None,
            ModelEndpoint::Embeddings => Some(ModelWork::Embeds),
            ModelEndpoint::ChatCompletions
            | ModelEndpoint::Completions
            | ModelEndpoint::Messages
            | ModelEndpoint::Responses
            | ModelEndpoint::ResponsesCompact => Some(ModelWork::Generates),
        }
    }

    /// The format the endpoint speaks, and its path under a provider's base URL. The
    /// format also fixes the envelope of the errors the gateway raises on it.
    pub fn native(self) -> (WireFormat, &'static str) {
        match self {
            ModelEndpoint::ChatCompletions => (WireFormat::OpenAi, "/chat/completions"),
            ModelEndpoint::Embeddings => (WireFormat::OpenAi, "/embeddings"),
            ModelEndpoint::Completions => (WireFormat::OpenAi, "/completions"),
            ModelEndpoint::Moderations => (WireFormat::OpenAi, "/moderations"),
            ModelEndpoint::Messages => (WireFormat::Anthropic, "/messages"),
            ModelEndpoint::CountTokens => (WireFormat::Anthropic, "/messages/count_tokens"),
            ModelEndpoint::Responses => (WireFormat::OpenAi, "/responses"),
            ModelEndpoint::ResponsesInputTokens => (WireFormat::OpenAi, "/responses/input_tokens"),
            ModelEndpoint::ResponsesCompact => (WireFormat::OpenAi, "/responses/compact"),
        }
    }

    /// The model a body that names none asks for: OpenAI's moderation defaults to
    /// its latest model, which the gateway must name to route the call.
    pub fn default_model(self) -> Option<&'static str> {
        (self == ModelEndpoint::Moderations).then_some("omni-moderation-latest")
    }

    /// Whether the endpoint is the Responses API's, which only a provider that serves
    /// it itself answers as sent.
    pub fn is_responses_api(self) -> bool {
        matches!(
            self,
            ModelEndpoint::Responses
                | ModelEndpoint::ResponsesInputTokens
                | ModelEndpoint::ResponsesCompact
        )
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
    /// The model the provider is asked for.
    pub model: String,
    /// How the provider's response becomes the client's, when it must change.
    pub translation: Option<ResponseCodecs>,
    /// For a translated Responses API request: what the gateway keeps and reports.
    pub responses: Option<ResponsesPlan>,
}

/// What the gateway does around a translated Responses API answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponsesPlan {
    /// The id the answer carries.
    pub id: String,
    /// Keep the answer for `previous_response_id` and `GET /v1/responses/{id}`.
    pub store: bool,
    /// The request's own input items (a JSON array), kept with the answer.
    pub input_items: Bytes,
    /// The response this one continues.
    pub previous: Option<String>,
    /// Hosted tools offered but left out (`X-Aurora-Omitted-Tools`).
    pub omitted_tools: Vec<String>,
}

/// The `previous_response_id` of a Responses API request whose model is served by
/// translation (its history then comes from the gateway's store); `None` when there is
/// none, or when the provider keeps its own state.
pub fn stored_history_needed<'f>(field: &'f ModelField, config: &Config) -> Option<&'f str> {
    let previous = field.previous_response_id.as_deref()?;
    let route = route_model(&field.name, config).ok()?;
    (!serves_natively(ModelEndpoint::Responses, &route.provider)).then_some(previous)
}

/// The `previous_response_id` of a Responses API call when the gateway made it (a
/// translated answer it stored): a provider serving the API itself never holds it.
fn gateway_made_previous(endpoint: ModelEndpoint, field: &ModelField) -> Option<&str> {
    let previous = field.previous_response_id.as_deref()?;
    (endpoint.is_responses_api() && crate::translate::generated_id::is_generated(previous, "resp_"))
        .then_some(previous)
}

/// Whether `provider` answers `endpoint` in its own format, the body going as sent.
fn serves_natively(endpoint: ModelEndpoint, provider: &Provider) -> bool {
    let (native, _) = endpoint.native();
    provider.format == native
        && (!endpoint.is_responses_api() || provider.kind.facts().serves_responses_api)
}

/// A client's `/v1` call as the gateway read it, ready to be prepared for any model.
#[derive(Debug, Clone, Copy)]
pub struct ModelCall<'a> {
    /// The endpoint called.
    pub endpoint: ModelEndpoint,
    /// The client's body.
    pub body: &'a [u8],
    /// Where `model` sits in it.
    pub field: &'a ModelField,
    /// The client's query string as it goes upstream (credential parameters taken out).
    pub query: Option<&'a str>,
    /// The stored conversation a translated Responses request continues.
    pub history: Option<&'a [u8]>,
    /// The Unix time a translated response reports.
    pub created: u64,
    /// Its `previous_response_id` names a response a provider keeps that the caller
    /// may not continue with the gateway's credential: another caller's, or one the
    /// gateway has no record of ([`super::native_responses::previous_refused`]).
    pub previous_refused: bool,
}

/// Prepares `call` for `route`, the model named `requested` (the client's model, or
/// one of its fallbacks): the body as the route's provider speaks it.
pub fn prepare_for(
    call: &ModelCall<'_>,
    requested: &str,
    route: super::model_route::ModelRoute,
    config: &Config,
) -> Result<PreparedRequest, GatewayError> {
    let ModelCall {
        endpoint,
        body,
        field,
        query,
        history,
        created,
        previous_refused,
    } = *call;
    let provider = route.provider;
    if provider.missing_key() {
        return Err(GatewayError::missing_provider_key(&provider));
    }
    let (native, path) = endpoint.native();
    let timeouts = config.models.timeouts(&provider, requested, &route.model);
    let shape = if field.stream {
        AnswerShape::Stream
    } else {
        AnswerShape::Whole
    };
    if serves_natively(endpoint, &provider) {
        if let Some(previous) = gateway_made_previous(endpoint, field) {
            return Err(GatewayError::invalid_request(format!(
                "previous response `{previous}` was made by this gateway for a model it \
                 translates, and `{requested}` is served by its provider, which does not hold \
                 it: send the conversation's items in `input` instead"
            ))
            .with_param("previous_response_id")
            .with_code("previous_response_not_found"));
        }
        // With the gateway's credential the provider holds every caller's responses:
        // one the caller may not continue is, to it, unknown, as at its provider.
        if previous_refused && !provider.credential.is_caller_key() {
            if let Some(previous) = field.previous_response_id.as_deref() {
                return Err(super::native_responses::previous_not_found(previous));
            }
        }
        // Same API on both sides: the body goes as sent, only `model` changes, and a
        // Chat (or legacy Completions) stream is asked for the usage the gateway counts
        // (which the client then does not see unless it asked too); a Chat body loses
        // what its provider refuses and OpenAI takes (see `chat_body_fit`).
        let ask_usage = matches!(
            endpoint,
            ModelEndpoint::ChatCompletions | ModelEndpoint::Completions
        ) && provider.stream_usage == StreamUsage::OnRequest;
        let (body, usage_asked) = field.upstream_body(body, &route.model, ask_usage);
        let body = match endpoint {
            ModelEndpoint::ChatCompletions => ChatFit::for_provider(&provider)
                .apply(&body)
                .unwrap_or(body),
            ModelEndpoint::Messages | ModelEndpoint::CountTokens => {
                MessagesFit::for_provider(&provider)
                    .apply(&body)
                    .unwrap_or(body)
            }
            _ => body,
        };
        return Ok(PreparedRequest {
            target: target(&provider, path, query)
                .timed(timeouts, shape)
                .asking_usage(usage_asked),
            body: body.into(),
            model: route.model,
            translation: None,
            responses: None,
        });
    }
    let client = match endpoint {
        ModelEndpoint::ChatCompletions => ClientFormat::Chat,
        ModelEndpoint::Messages => ClientFormat::Messages,
        ModelEndpoint::Responses => ClientFormat::Responses,
        ModelEndpoint::Embeddings
        | ModelEndpoint::Completions
        | ModelEndpoint::Moderations
        | ModelEndpoint::CountTokens => {
            return Err(GatewayError::invalid_request(format!(
                "{} is served only by {}-format providers; `{}` speaks the {} format",
                endpoint.label(),
                native.facts().api_name,
                provider.name,
                provider.format.facts().api_name
            ))
            .with_param("model"))
        }
        // Counted and compacted by the provider's own Responses API alone: the
        // gateway's translation cannot stand in for either.
        ModelEndpoint::ResponsesInputTokens | ModelEndpoint::ResponsesCompact => {
            return Err(GatewayError::invalid_request(format!(
                "{path} needs a provider's native Responses API, and `{}` does not serve one: \
                 name a model of a provider that does (type openai or xai)",
                provider.name
            ))
            .with_param("model")
            .with_code("native_responses_api_required"))
        }
    };
    // Only a Responses client is given an id for the answer.
    let response_id = match client {
        ClientFormat::Responses => crate::translate::generated_id("resp_"),
        ClientFormat::Chat | ClientFormat::Messages => String::new(),
    };
    // `ModelField::find` held the body to the translators' rules as it read the model.
    let checked = CheckedBody::already_checked(body).map_err(GatewayError::from)?;
    let hub = decode_request(
        client,
        checked,
        &DecodeOptions {
            client_model: requested,
            upstream_model: &route.model,
            default_max_tokens: config.models.unasked_output_limit(
                &provider,
                requested,
                &route.model,
            ),
            summaries_as_thinking: provider.format == WireFormat::OpenAi
                && provider.kind.facts().takes_reasoning_content_back,
            provider_format: provider.format,
            created,
            history,
            response_id: &response_id,
            stream: field.stream,
        },
    )
    .map_err(GatewayError::from)?;
    let model = route.model.clone();
    let (upstream_body, decoder) = encode_request(provider.format, hub.body, || {
        chat_options(config, &provider, requested, route.model)
    })
    .map_err(GatewayError::from)?;
    let path = match provider.format {
        WireFormat::Anthropic => ModelEndpoint::Messages.native().1,
        WireFormat::OpenAi => ModelEndpoint::ChatCompletions.native().1,
    };
    let responses = hub.responses.map(|extras| ResponsesPlan {
        id: response_id,
        store: extras.store,
        input_items: extras.input_items.into(),
        previous: field.previous_response_id.clone(),
        omitted_tools: extras.omitted_tools,
    });
    Ok(PreparedRequest {
        target: target(&provider, path, None).timed(timeouts, shape),
        body: upstream_body.into(),
        model,
        translation: Some(ResponseCodecs {
            provider: decoder,
            client: hub.encoder,
            stream: hub.stream,
        }),
        responses,
    })
}

/// How a Messages request becomes a Chat request for `provider`'s `model`.
fn chat_options(
    config: &Config,
    provider: &Provider,
    client_model: &str,
    model: String,
) -> OpenAiRequestOptions {
    let traits = config.models.traits(provider, client_model, &model);
    OpenAiRequestOptions {
        reasoning: traits.reasons(&model),
        token_limit: provider.kind.facts().chat_token_limit,
        stream_usage: provider.stream_usage,
        max_output_tokens: traits.max_output_tokens.map(u64::from),
        reasoning_content_back: provider.kind.facts().takes_reasoning_content_back,
        user_field: provider.kind.facts().takes_user_field,
        default_sampling_only: provider.kind == ProviderKind::OpenAi && traits.reasons(&model),
        strict_message_order: provider.kind.facts().orders_messages_strictly,
        short_tool_call_ids: provider.kind.facts().short_tool_call_ids,
        text_only: !provider.kind.facts().takes_images,
        file_parts: provider.kind.facts().takes_file_parts,
        parallel_tool_calls_field: !(provider.kind == ProviderKind::OpenAi && o_series(&model)),
        thought_signature_stand_in: provider.kind == ProviderKind::Gemini
            && signs_its_thoughts(&model),
        model,
    }
}

/// Whether `model` is a Gemini that requires its thought signatures back (Gemini 3
/// and later, `gemini-3-pro-preview`).
fn signs_its_thoughts(model: &str) -> bool {
    model
        .strip_prefix("gemini-")
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|major| major.parse::<u32>().ok())
        .is_some_and(|major| major >= 3)
}

/// The provider's base path, then `endpoint`, then `?query`: written in one allocation
/// of the right size, without the formatting machinery (every model call builds one).
fn upstream_path(base: &str, endpoint: &str, query: Option<&str>) -> String {
    let query_len = query.map_or(0, |q| 1 + q.len());
    let mut path = String::with_capacity(base.len() + endpoint.len() + query_len);
    path.push_str(base);
    path.push_str(endpoint);
    if let Some(query) = query {
        path.push('?');
        path.push_str(query);
    }
    path
}

fn target(provider: &Arc<Provider>, endpoint: &str, query: Option<&str>) -> UpstreamTarget {
    let path_and_query = upstream_path(provider.api_path(), endpoint, query);
    // The credential needs the client's headers: set by the caller
    // (provider_key::upstream_credential).
    UpstreamTarget::new(Arc::clone(provider), path_and_query, Default::default())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemini_3_and_later_sign_their_thoughts() {
        for (model, signs) in [
            ("gemini-3-pro-preview", true),
            ("gemini-3.1-flash", true),
            ("gemini-10-ultra", true),
            ("gemini-2.5-pro", false),
            ("gemini-exp-1206", false),
            ("gpt-4o", false),
        ] {
            assert_eq!(signs_its_thoughts(model), signs, "{model}");
        }
    }

    #[test]
    fn a_model_call_to_gemini_at_googles_root_goes_to_its_openai_compatible_api() {
        let mut gemini = Provider::unconfigured(crate::providers::ProviderKind::Gemini);
        gemini.base =
            crate::providers::BaseUrl::parse("https://generativelanguage.googleapis.com").unwrap();
        let t = target(&Arc::new(gemini), "/chat/completions", Some("x=1"));
        assert_eq!(t.path_and_query, "/v1beta/openai/chat/completions?x=1");
        let mut vllm = Provider::unconfigured(crate::providers::ProviderKind::Vllm);
        vllm.base = crate::providers::BaseUrl::parse("http://10.0.0.5:8000").unwrap();
        let t = target(&Arc::new(vllm), "/chat/completions", None);
        assert_eq!(
            t.path_and_query, "/chat/completions",
            "other types as configured"
        );
    }

    #[test]
    fn the_upstream_path_is_the_base_path_the_endpoint_and_the_query() {
        assert_eq!(upstream_path("", "/v1/messages", None), "/v1/messages");
        assert_eq!(
            upstream_path("/api/anthropic", "/v1/messages", Some("beta=true")),
            "/api/anthropic/v1/messages?beta=true"
        );
        assert_eq!(
            upstream_path("/x", "/v1/chat/completions", Some("")),
            "/x/v1/chat/completions?"
        );
    }
}
