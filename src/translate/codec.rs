//! The translation core: every wire format meets the others in one hub format,
//! the Anthropic Messages API, which is the intermediate representation of
//! requests, answers and stream events (message blocks, tool calls, thinking with
//! its signature, usage, errors). Each format has
//!
//! - a **client codec**: its request decoded into the hub ([`decode_request`]) and
//!   a hub answer, whole or streamed, encoded for the client
//!   ([`ClientEncoder`]), errors in its envelope;
//! - a **provider codec**: a hub request encoded for the provider
//!   ([`encode_request`]) and its answer decoded into the hub
//!   ([`ProviderDecoder`]).
//!
//! | format | client codec | provider codec |
//! |---|---|---|
//! | Messages | the hub itself | the hub itself |
//! | Chat Completions | `openai_to_anthropic_request`, `anthropic_to_openai_response`, `AnthropicToOpenAiStream`, `anthropic_error_to_openai` | `anthropic_to_openai_request`, `openai_to_anthropic_response`, `OpenAiToAnthropicStream`, `openai_error_to_anthropic` |
//! | Responses | `responses_to_anthropic_request`, `anthropic_to_responses_response`, `AnthropicToResponsesStream`, OpenAI's envelope | — (OpenAI and xAI answer it natively) |
//!
//! A pair of the same format is never translated (the gateway splices `model` into
//! the body as sent); any other pair is the client's decoder then the provider's
//! encoder, and the provider's decoder then the client's encoder. A new format is
//! one codec and its tests, nothing pairwise. The hub costs nothing for pairs that
//! include Messages; a Responses client of a Chat provider takes two steps each way.

use std::borrow::Cow;
use std::sync::Arc;

use super::request_fields::CheckedBody;
use super::responses::{responses_to_anthropic_request, ResponsesOptions, ResponsesRequestOptions};
use super::{
    anthropic_to_openai_request, openai_to_anthropic_request, ClientEncoder, OpenAiRequestOptions,
    ProviderDecoder, RequestOptions, TranslateError,
};
use crate::config::DEFAULT_MAX_TOKENS;
use crate::providers::WireFormat;

/// An API a client speaks to the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFormat {
    /// OpenAI Chat Completions (`/v1/chat/completions`).
    Chat,
    /// Anthropic Messages (`/v1/messages`).
    Messages,
    /// OpenAI Responses (`/v1/responses`).
    Responses,
}

/// What a client decoder needs beyond the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeOptions<'a> {
    /// The model as the client named it, echoed in the answer.
    pub client_model: &'a str,
    /// The model the provider gets.
    pub upstream_model: &'a str,
    /// `max_tokens` when the client names none; none leaves a Responses request for
    /// a chat server without a limit (the provider's own applies). A Chat request goes
    /// through the hub only to an Anthropic-format provider, which requires one.
    pub default_max_tokens: Option<u32>,
    /// Responses: [`ResponsesRequestOptions::summaries_as_thinking`].
    pub summaries_as_thinking: bool,
    /// The format the provider speaks, which the hub request is encoded for.
    pub provider_format: WireFormat,
    /// Unix time a translated answer reports.
    pub created: u64,
    /// Responses: the stored conversation the request continues.
    pub history: Option<&'a [u8]>,
    /// Responses: the id the answer carries.
    pub response_id: &'a str,
    /// Messages: the client asked for a stream (top-level `"stream": true`), as the
    /// caller read the body. A Messages body becomes the hub as it is, so it is not
    /// read again for this; the other formats' translators read their own flag.
    pub stream: bool,
}

/// A client request in the hub format, with how its answer goes back.
#[derive(Debug)]
pub struct HubRequest<'a> {
    /// The Messages request.
    pub body: Cow<'a, [u8]>,
    /// The client asked for a stream.
    pub stream: bool,
    /// How a hub answer is written for this client.
    pub encoder: ClientEncoder,
    /// Responses: what the gateway keeps and reports around the answer.
    pub responses: Option<ResponsesExtras>,
}

/// What a translated Responses request leaves for the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponsesExtras {
    /// Keep the answer (`store`).
    pub store: bool,
    /// The request's own input items, a JSON array.
    pub input_items: Vec<u8>,
    /// Hosted tools offered but left out.
    pub omitted_tools: Vec<String>,
}

/// Decodes a client request into the hub format.
pub fn decode_request<'a>(
    format: ClientFormat,
    body: CheckedBody<'a>,
    opts: &DecodeOptions<'_>,
) -> Result<HubRequest<'a>, TranslateError> {
    match format {
        ClientFormat::Messages => {
            // The hub already: the provider encoder sets the model.
            Ok(HubRequest {
                body: Cow::Borrowed(body.text().as_bytes()),
                stream: opts.stream,
                encoder: ClientEncoder::Messages {
                    model: opts.client_model.to_string(),
                },
                responses: None,
            })
        }
        ClientFormat::Chat => {
            let hub = openai_to_anthropic_request(
                body,
                &RequestOptions {
                    model: opts.upstream_model.to_string(),
                    default_max_tokens: opts.default_max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
                },
            )?;
            Ok(HubRequest {
                body: Cow::Owned(hub.body),
                stream: hub.stream,
                encoder: ClientEncoder::Chat {
                    model: opts.client_model.to_string(),
                    created: opts.created,
                    include_usage: hub.include_usage,
                },
                responses: None,
            })
        }
        ClientFormat::Responses => {
            let hub = responses_to_anthropic_request(
                body,
                opts.history,
                &ResponsesRequestOptions {
                    model: opts.upstream_model.to_string(),
                    default_max_tokens: opts.default_max_tokens,
                    summaries_as_thinking: opts.summaries_as_thinking,
                    anthropic_target: opts.provider_format == WireFormat::Anthropic,
                },
            )?;
            let omitted = (!hub.omitted_tools.is_empty()).then(|| hub.omitted_tools.join(","));
            Ok(HubRequest {
                body: Cow::Owned(hub.body),
                stream: hub.stream,
                encoder: ClientEncoder::Responses {
                    options: ResponsesOptions {
                        id: opts.response_id.to_string(),
                        model: opts.client_model.to_string(),
                        created_at: opts.created,
                        tool_names: Arc::new(hub.tool_names),
                        include_encrypted_reasoning: hub.include_encrypted_reasoning,
                        echo: hub.echo,
                    },
                    on_completed: None,
                    omitted_tools: omitted,
                },
                responses: Some(ResponsesExtras {
                    store: hub.store,
                    input_items: hub.input_items,
                    omitted_tools: hub.omitted_tools,
                }),
            })
        }
    }
}

/// A hub request encoded for a provider of `format`: its body and how its answer
/// comes back into the hub. `chat` says how the Chat encoder treats the model.
pub fn encode_request(
    format: WireFormat,
    hub: Cow<'_, [u8]>,
    chat: impl FnOnce() -> OpenAiRequestOptions,
) -> Result<(Vec<u8>, ProviderDecoder), TranslateError> {
    match format {
        WireFormat::Anthropic => Ok((hub.into_owned(), ProviderDecoder::Messages)),
        WireFormat::OpenAi => {
            // A hub body is the client's checked body or a translator's own output.
            let request =
                anthropic_to_openai_request(CheckedBody::already_checked(&hub)?, &chat())?;
            Ok((request.body, ProviderDecoder::Chat))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::TokenLimitField;
    use serde_json::{json, Value};

    fn opts() -> DecodeOptions<'static> {
        DecodeOptions {
            client_model: "client-model",
            upstream_model: "upstream-model",
            default_max_tokens: Some(1000),
            summaries_as_thinking: false,
            provider_format: WireFormat::Anthropic,
            created: 7,
            history: None,
            response_id: "resp_1",
            stream: false,
        }
    }

    fn chat_opts() -> OpenAiRequestOptions {
        OpenAiRequestOptions {
            model: "upstream-model".into(),
            reasoning: false,
            token_limit: TokenLimitField::MaxTokens,
            max_output_tokens: None,
            stream_usage: crate::translate::StreamUsage::OnRequest,
            reasoning_content_back: false,
            user_field: true,
            default_sampling_only: false,
            strict_message_order: false,
            short_tool_call_ids: false,
            text_only: false,
            file_parts: true,
            parallel_tool_calls_field: true,
            thought_signature_stand_in: false,
        }
    }

    fn through(
        client: ClientFormat,
        provider: WireFormat,
        body: Value,
    ) -> (Value, ProviderDecoder, HubRequest<'static>) {
        let body: &'static [u8] = Box::leak(body.to_string().into_bytes().into_boxed_slice());
        let opts = DecodeOptions {
            provider_format: provider,
            ..opts()
        };
        let hub = decode_request(client, CheckedBody::check(body).unwrap(), &opts).unwrap();
        let (out, decoder) = encode_request(provider, hub.body.clone(), chat_opts).unwrap();
        (serde_json::from_slice(&out).unwrap(), decoder, hub)
    }

    #[test]
    fn every_client_format_reaches_every_provider_format_through_the_hub() {
        let chat =
            json!({"model": "m", "messages": [{"role": "user", "content": "Hi"}], "stream": true});
        let messages =
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}]});
        let responses = json!({"model": "m", "input": "Hi", "store": false});

        let (out, decoder, hub) = through(ClientFormat::Chat, WireFormat::Anthropic, chat);
        assert_eq!(decoder, ProviderDecoder::Messages);
        assert!(hub.stream);
        assert_eq!(out["model"], "upstream-model");
        assert_eq!(out["max_tokens"], 1000);
        assert!(matches!(
            hub.encoder,
            ClientEncoder::Chat { created: 7, .. }
        ));

        let (out, decoder, hub) = through(ClientFormat::Messages, WireFormat::OpenAi, messages);
        assert_eq!(decoder, ProviderDecoder::Chat);
        assert!(!hub.stream);
        assert_eq!(out["messages"], json!([{"role": "user", "content": "Hi"}]));
        assert_eq!(out["model"], "upstream-model");

        for provider in [WireFormat::Anthropic, WireFormat::OpenAi] {
            let (out, _, hub) = through(ClientFormat::Responses, provider, responses.clone());
            assert_eq!(out["model"], "upstream-model");
            let extras = hub.responses.unwrap();
            assert!(!extras.store);
            match hub.encoder {
                ClientEncoder::Responses { options, .. } => {
                    assert_eq!(options.id, "resp_1");
                    assert_eq!(options.model, "client-model");
                }
                other => panic!("{other:?}"),
            }
        }
        // Two steps: Responses → Messages → Chat.
        let (out, _, _) = through(ClientFormat::Responses, WireFormat::OpenAi, responses);
        assert_eq!(out["messages"], json!([{"role": "user", "content": "Hi"}]));
        assert_eq!(out["max_tokens"], 1000);
    }

    #[test]
    fn a_messages_client_stream_flag_is_the_one_its_caller_read() {
        // The body is not read for it: the caller found it as it checked the body.
        let body = CheckedBody::check(br#"{"model":"m","max_tokens":5,"messages":[]}"#).unwrap();
        for stream in [true, false] {
            let opts = DecodeOptions { stream, ..opts() };
            let hub = decode_request(ClientFormat::Messages, body, &opts).unwrap();
            assert_eq!(hub.stream, stream);
        }
    }
}
