//! Pure translation between wire formats: request bodies, response bodies,
//! error bodies and SSE streams. Nothing here performs I/O; callers pass in
//! bytes (and values such as the current time) and get bytes back.
//!
//! Every format meets the others in one hub, the Anthropic Messages format; see
//! [`codec`] for the core (client and provider codecs, how a pair is chosen)
//! and the table of which translator serves which side.
//!
//! - The Chat Completions codec, as a client of the hub:
//!   [`openai_to_anthropic_request`](fn@openai_to_anthropic_request),
//!   [`anthropic_to_openai_response`](fn@anthropic_to_openai_response),
//!   [`AnthropicToOpenAiStream`], [`anthropic_error_to_openai`];
//!   as a provider behind it:
//!   [`anthropic_to_openai_request`](fn@anthropic_to_openai_request),
//!   [`openai_to_anthropic_response`](fn@openai_to_anthropic_response),
//!   [`OpenAiToAnthropicStream`], [`openai_error_to_anthropic`].
//! - The Responses codec, as a client: [`responses`].
//! - [`sse`]: the incremental SSE parser and writer every stream uses.
//! - [`ResponseTranslator`] drives the response side for one request through its
//!   [`ResponseCodecs`] (the provider's decoder, then the client's encoder), as the
//!   Pingora HTTP module [`ResponseTranslatorBuilder`] registers.
//!
//! Request translation fails with [`TranslateError`] when the request cannot
//! be expressed faithfully; fields that do not change the shape of the
//! answer are dropped instead. Each module documents its choices.

/// A recorded provider response under `tests/fixtures/`, compiled into the test.
#[cfg(test)]
macro_rules! fixture {
    ($path:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/",
            $path
        ))
    };
}

mod anthropic_text_delta;
pub mod anthropic_to_openai_error;
pub mod anthropic_to_openai_request;
pub mod anthropic_to_openai_response;
pub mod anthropic_to_openai_stream;
pub(crate) mod borrowed_text;
mod chat_messages;
pub mod codec;
mod context_overflow;
pub mod error;
pub mod generated_id;
#[cfg(test)]
mod hub_streams;
mod image_media_type;
pub mod json_members;
mod json_writer;
mod openai_content_chunk;
mod openai_text_members;
pub mod openai_to_anthropic_error;
pub mod openai_to_anthropic_request;
pub mod openai_to_anthropic_response;
pub mod openai_to_anthropic_stream;
mod request_fields;
pub mod response_translator;
pub mod responses;
pub mod results_url;
pub mod sse;
mod sse_driver;
mod thought_signature;
pub(crate) use thought_signature::GEMINIS_TAG;
mod tool_call_id;
pub mod unasked_usage;

pub use anthropic_to_openai_error::{
    anthropic_error_to_openai, openai_error_type_for_anthropic_type, openai_error_type_for_status,
};
pub use anthropic_to_openai_request::{
    anthropic_to_openai_request, OpenAiRequest, OpenAiRequestOptions, StreamUsage, TokenLimitField,
};
pub use anthropic_to_openai_response::{anthropic_to_openai_response, ResponseOptions};
pub use anthropic_to_openai_stream::{AnthropicToOpenAiStream, StreamOptions};
pub use context_overflow::is_context_overflow;
pub use error::TranslateError;
pub use generated_id::generated_id;
pub use openai_to_anthropic_error::{anthropic_error_type_for_status, openai_error_to_anthropic};
pub use openai_to_anthropic_request::{
    openai_to_anthropic_request, AnthropicRequest, RequestOptions,
};
pub use openai_to_anthropic_response::{openai_to_anthropic_response, MessageOptions};
pub use openai_to_anthropic_stream::OpenAiToAnthropicStream;
pub use request_fields::{CheckedBody, StrictValue};
pub use response_translator::{
    ClientEncoder, OnCompleted, ProviderDecoder, ResponseCodecs, ResponseTranslator,
    ResponseTranslatorBuilder, TranslatedAnswer, UsageRead, OMITTED_TOOLS_HEADER,
};
pub use sse::{SseByteParser, SseEvent, SseEventBytes, SseEventRef, SseItem, SseParser};
