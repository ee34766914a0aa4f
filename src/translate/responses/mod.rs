//! The OpenAI Responses API (`/v1/responses`) as a client format. Like every
//! client format, it is translated to and from the gateway's hub format, the
//! Anthropic Messages API (see the `translate` module doc):
//!
//! - [`request`]: a Responses request → a Messages request (plus what the
//!   answer needs to know: flattened tool names, omitted hosted tools);
//! - [`response`]: a Messages answer → a Responses `response` object;
//! - [`stream`]: a Messages SSE stream → the Responses event stream.
//!
//! Errors use OpenAI's envelope, as the Responses API does; a stream that fails
//! ends with `response.failed` ([`failure`]).

pub mod failure;
pub mod reasoning_state;
pub mod request;
pub mod response;
pub mod stream;
pub mod tool_names;

pub use failure::{failure_code, response_failed_event};
pub use reasoning_state::ReasoningState;
pub use request::{responses_to_anthropic_request, ResponsesRequest, ResponsesRequestOptions};
pub use response::anthropic_to_responses_response;
pub use stream::AnthropicToResponsesStream;
pub use tool_names::ToolNames;

use std::sync::Arc;

/// What a translated Responses answer says about itself, fixed when the request
/// is translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponsesOptions {
    /// The response's id (`resp_…`), made by the gateway so a stored response can be
    /// found by it.
    pub id: String,
    /// The model name the client sent, echoed back as `model`.
    pub model: String,
    /// Unix time for `created_at`, passed in so translation stays pure.
    pub created_at: u64,
    /// Namespace tools flattened for the provider, to name their calls as the client
    /// offered them.
    pub tool_names: Arc<ToolNames>,
    /// `include: ["reasoning.encrypted_content"]`: reasoning items carry the state a
    /// later request needs to continue from them (Anthropic's thinking signature).
    pub include_encrypted_reasoning: bool,
    /// The request parameters a `response` object echoes (`instructions`, `tools`,
    /// `tool_choice`, `parallel_tool_calls`, `temperature`, `top_p`,
    /// `max_output_tokens`, `previous_response_id`, `reasoning`, `store`, `text`,
    /// `metadata`, `user`…), as JSON object members without the braces, written after
    /// the members the answer itself fills in; empty when there are none.
    pub echo: String,
}
