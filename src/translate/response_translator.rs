//! Turns one provider response (header, then body chunks) into the client's
//! format. Success streams are translated event by event as bytes arrive;
//! JSON bodies and error bodies are collected and translated once complete.
//! Plain state, no I/O: [`ResponseTranslator`] is itself the Pingora HTTP module
//! that Pingora feeds, idle until a proxy hook hands it the codecs of a request
//! through `session.downstream_modules_ctx` (the way `pingora-core`'s gRPC-web
//! bridge is switched on per request).
//!
//! Every translation goes through the hub format, Anthropic Messages: the
//! provider's answer is read into it ([`ProviderDecoder`]) and written out in the
//! client's format ([`ClientEncoder`]). A pair that is one step from the hub
//! (Chat ↔ Messages, Responses ← Messages) takes that one step; a Responses client
//! of a Chat provider takes two.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::modules::http::{HttpModule, HttpModuleBuilder, Module};
use pingora_http::ResponseHeader;

use crate::providers::WireFormat;
use crate::proxy::headers::{ANTHROPIC_REQUEST_ID, REQUEST_ID_NAME};
use crate::proxy::retry_advice;

use super::anthropic_to_openai_error::OpenAiErrorBody;
use super::anthropic_to_openai_response::anthropic_to_openai_response_and_usage;
use super::openai_to_anthropic_error::AnthropicErrorBody;
use super::responses::response::anthropic_to_responses_response_and_usage;
use super::responses::{AnthropicToResponsesStream, ResponsesOptions};
use super::results_url::ResultsUrlRewrite;
use super::unasked_usage::UnaskedUsageFilter;
use super::{
    anthropic_error_to_openai, openai_error_to_anthropic, openai_to_anthropic_response,
    AnthropicToOpenAiStream, MessageOptions, OpenAiToAnthropicStream, ResponseOptions,
    StreamOptions, TranslateError,
};
use crate::metrics::usage::Usage;

/// A provider's whole answer in the client's format.
#[derive(Debug)]
pub struct TranslatedAnswer {
    /// The body the client gets.
    pub body: Vec<u8>,
    /// The provider's token usage, if the translation read it on the way.
    pub usage: UsageRead,
}

/// What a translation learned of the provider's token usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageRead {
    /// Read on the way: what the answer reported, if it reported any.
    Read(Option<Usage>),
    /// Not read: the provider's answer is still to be read for it.
    Unread,
}

impl TranslatedAnswer {
    fn unread(body: Vec<u8>) -> Self {
        Self {
            body,
            usage: UsageRead::Unread,
        }
    }
}

/// How the provider's answer reaches the hub format (Anthropic Messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderDecoder {
    /// The provider speaks Messages: nothing to do.
    Messages,
    /// OpenAI Chat Completions, read through the Chat → Messages translators.
    Chat,
}

/// How a hub-format answer is written for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEncoder {
    /// Anthropic Messages (`/v1/messages`).
    Messages {
        /// The model name the client sent, echoed back as `model`.
        model: String,
    },
    /// OpenAI Chat Completions (`/v1/chat/completions`).
    Chat {
        /// The model name the client sent, echoed back as `model`.
        model: String,
        /// Unix time stamped on every chunk as `created`.
        created: u64,
        /// `stream_options.include_usage`.
        include_usage: bool,
    },
    /// The OpenAI Responses API (`/v1/responses`).
    Responses {
        /// What the answer says about itself.
        options: ResponsesOptions,
        /// Called with the final `response` object when the answer completes.
        on_completed: Option<OnCompleted>,
        /// Hosted tools offered but not sent to the provider, comma-separated, for
        /// the answer's `X-Aurora-Omitted-Tools`.
        omitted_tools: Option<String>,
    },
}

/// Names the hosted tools a translated Responses request offered and the provider
/// never saw.
pub const OMITTED_TOOLS_HEADER: http::HeaderName =
    http::HeaderName::from_static("x-aurora-omitted-tools");

/// A hook given the final `response` object of a completed Responses answer (the
/// gateway stores it for `previous_response_id`).
#[derive(Clone)]
pub struct OnCompleted(pub Arc<CompletionHook>);

/// What [`OnCompleted`] calls.
pub type CompletionHook = dyn Fn(&[u8]) + Send + Sync;

impl fmt::Debug for OnCompleted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OnCompleted")
    }
}

impl PartialEq for OnCompleted {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for OnCompleted {}

/// The codecs one provider answer goes through to become the client's: the
/// provider's decoder into the hub, then the client's encoder. A pair of the same
/// format is never translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseCodecs {
    /// The provider's side.
    pub provider: ProviderDecoder,
    /// The client's side.
    pub client: ClientEncoder,
    /// Whether the client asked for a stream (used when the provider does not say by
    /// `Content-Type`).
    pub stream: bool,
}

/// The most a translated answer taken whole may hold, before or after translation:
/// a chat answer is bounded by its token limit, so anything near this is not one.
pub const MAX_WHOLE_ANSWER_BYTES: usize = 64 * 1024 * 1024;

impl ResponseCodecs {
    /// Anthropic Messages → OpenAI Chat Completions.
    pub fn anthropic_to_openai(
        model: String,
        created: u64,
        stream: bool,
        include_usage: bool,
    ) -> Self {
        Self {
            provider: ProviderDecoder::Messages,
            client: ClientEncoder::Chat {
                model,
                created,
                include_usage,
            },
            stream,
        }
    }

    /// OpenAI Chat Completions → Anthropic Messages.
    pub fn openai_to_anthropic(model: String, stream: bool) -> Self {
        Self {
            provider: ProviderDecoder::Chat,
            client: ClientEncoder::Messages { model },
            stream,
        }
    }

    /// Whether the client asked for a stream.
    pub fn stream_requested(&self) -> bool {
        self.stream
    }

    /// Whether the provider's answer with this header is translated as it arrives
    /// (a successful event stream) rather than collected whole (JSON, any error).
    fn streams(&self, resp: &ResponseHeader) -> bool {
        let is_event_stream = resp
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map_or(self.stream_requested(), |ct| {
                ct.trim_start().starts_with(EVENT_STREAM)
            });
        resp.status.is_success() && is_event_stream
    }

    fn stream_codecs(&self) -> StreamCodecs {
        let from_anthropic = matches!(self.provider, ProviderDecoder::Messages);
        let decode = match self.provider {
            ProviderDecoder::Messages => None,
            ProviderDecoder::Chat => Some(Box::new(OpenAiToAnthropicStream::new(MessageOptions {
                model: self.client.model().to_string(),
            }))),
        };
        let encode = match &self.client {
            ClientEncoder::Messages { .. } => ClientStream::Messages,
            ClientEncoder::Chat {
                model,
                created,
                include_usage,
            } => {
                let stream = AnthropicToOpenAiStream::new(StreamOptions {
                    model: model.clone(),
                    created: *created,
                    include_usage: *include_usage,
                });
                ClientStream::Chat(Box::new(if from_anthropic {
                    stream.anthropic_upstream()
                } else {
                    stream
                }))
            }
            ClientEncoder::Responses {
                options,
                on_completed,
                ..
            } => {
                let stream = AnthropicToResponsesStream::new(options.clone());
                ClientStream::Responses(
                    Box::new(if from_anthropic {
                        stream.anthropic_upstream()
                    } else {
                        stream
                    }),
                    on_completed.clone(),
                )
            }
        };
        StreamCodecs {
            decode,
            encode,
            hub: Vec::new(),
        }
    }

    /// A complete provider answer, success or error, in the client's format. An error
    /// always translates (into the client's envelope, status kept); a success body
    /// that is not what the provider's format promises is an `Err`, for the caller to
    /// answer before any status goes out.
    pub fn answer_whole(
        &self,
        status: u16,
        body: &[u8],
    ) -> Result<TranslatedAnswer, TranslateError> {
        let model = self.client.model();
        if !(200..300).contains(&status) {
            let hub = match self.provider {
                ProviderDecoder::Messages => Cow::Borrowed(body),
                ProviderDecoder::Chat => Cow::Owned(openai_error_to_anthropic(status, body)),
            };
            return Ok(TranslatedAnswer::unread(match self.client {
                ClientEncoder::Messages { .. } => hub.into_owned(),
                ClientEncoder::Chat { .. } | ClientEncoder::Responses { .. } => {
                    anthropic_error_to_openai(status, &hub)
                }
            }));
        }
        let hub = match self.provider {
            ProviderDecoder::Messages => Cow::Borrowed(body),
            ProviderDecoder::Chat => Cow::Owned(openai_to_anthropic_response(
                body,
                &MessageOptions {
                    model: model.to_string(),
                },
            )?),
        };
        // The hub's usage is the provider's own only when the provider speaks it (an
        // OpenAI answer's reasoning tokens do not survive the way through it).
        let usage_of = |usage: Option<_>| match self.provider {
            ProviderDecoder::Messages => UsageRead::Read(usage.map(Usage::from)),
            ProviderDecoder::Chat => UsageRead::Unread,
        };
        match &self.client {
            ClientEncoder::Messages { .. } => Ok(TranslatedAnswer::unread(hub.into_owned())),
            ClientEncoder::Chat { model, created, .. } => {
                let options = ResponseOptions {
                    model: model.clone(),
                    created: *created,
                };
                let (body, usage) = anthropic_to_openai_response_and_usage(&hub, &options)?;
                Ok(TranslatedAnswer {
                    body,
                    usage: usage_of(usage),
                })
            }
            ClientEncoder::Responses {
                options,
                on_completed,
                ..
            } => {
                let (answer, usage) = anthropic_to_responses_response_and_usage(&hub, options)?;
                if let Some(hook) = on_completed {
                    (hook.0)(&answer);
                }
                Ok(TranslatedAnswer {
                    body: answer,
                    usage: usage_of(usage),
                })
            }
        }
    }

    /// The complete body in the client's format, once its status is already out: an
    /// untranslatable success becomes an error body, which is all that is left to say.
    fn translate_whole(&self, status: u16, body: &[u8]) -> Vec<u8> {
        self.answer_whole(status, body)
            .map(|answer| answer.body)
            .unwrap_or_else(|e| {
                log::warn!("untranslatable provider response: {e}");
                self.error_body(&e.to_string())
            })
    }

    /// A provider-error body in the client's envelope.
    fn error_body(&self, message: &str) -> Vec<u8> {
        match self.client {
            ClientEncoder::Chat { .. } | ClientEncoder::Responses { .. } => {
                OpenAiErrorBody::new(message, "provider_error").to_vec()
            }
            ClientEncoder::Messages { .. } => {
                AnthropicErrorBody::new("api_error", message).to_vec()
            }
        }
    }
}

impl ClientEncoder {
    /// `X-Aurora-Omitted-Tools` for the answer, when there is one.
    pub fn omitted_tools(&self) -> Option<&str> {
        match self {
            ClientEncoder::Responses { omitted_tools, .. } => omitted_tools.as_deref(),
            _ => None,
        }
    }

    /// The API the client speaks.
    fn format(&self) -> WireFormat {
        match self {
            ClientEncoder::Messages { .. } => WireFormat::Anthropic,
            ClientEncoder::Chat { .. } | ClientEncoder::Responses { .. } => WireFormat::OpenAi,
        }
    }

    /// The provider's id of a call, from its answer's `headers`, under the header the
    /// client's SDK reads it from (`APIError.request_id`), when the provider named it
    /// only under its own API's: Anthropic's `request-id`, OpenAI's `x-request-id`.
    pub fn provider_request_id(
        &self,
        headers: &http::HeaderMap,
    ) -> Option<(http::HeaderName, http::HeaderValue)> {
        let (wanted, named) = match self.format() {
            WireFormat::Anthropic => (ANTHROPIC_REQUEST_ID, REQUEST_ID_NAME),
            WireFormat::OpenAi => (REQUEST_ID_NAME, ANTHROPIC_REQUEST_ID),
        };
        if headers.contains_key(&wanted) {
            return None;
        }
        let id = headers.get(&named)?.clone();
        Some((wanted, id))
    }

    /// What a provider's error answer with `headers`, translated for this client, adds
    /// to them: `x-should-retry: false` past a wait too long to retry after (see
    /// [`retry_advice`]), and the provider's id where the client's SDK reads it.
    pub fn error_headers(
        &self,
        headers: &http::HeaderMap,
        now: std::time::SystemTime,
    ) -> [Option<(http::HeaderName, http::HeaderValue)>; 2] {
        let no_retry = retry_advice::translated_error_not_worth_retrying(headers, now)
            .then(|| (retry_advice::SHOULD_RETRY, retry_advice::do_not_retry()));
        [no_retry, self.provider_request_id(headers)]
    }

    /// The model name the client sent.
    fn model(&self) -> &str {
        match self {
            ClientEncoder::Messages { model } | ClientEncoder::Chat { model, .. } => model,
            ClientEncoder::Responses { options, .. } => &options.model,
        }
    }
}

/// The client's side of a stream.
enum ClientStream {
    /// The hub's own events go out as they are.
    Messages,
    Chat(Box<AnthropicToOpenAiStream>),
    Responses(Box<AnthropicToResponsesStream>, Option<OnCompleted>),
}

/// The stream codecs of one answer, running: the provider's events decoded into the
/// hub's (when they are not already), then encoded into the client's.
struct StreamCodecs {
    decode: Option<Box<OpenAiToAnthropicStream>>,
    encode: ClientStream,
    /// Hub bytes between the two steps, reused from chunk to chunk.
    hub: Vec<u8>,
}

impl StreamCodecs {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        match self.decode.as_mut() {
            None => self.encode.push(chunk, out),
            Some(decode) => {
                self.hub.clear();
                decode.push(chunk, &mut self.hub);
                self.encode.push(&self.hub, out);
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if let Some(decode) = self.decode.as_mut() {
            self.hub.clear();
            decode.finish(&mut self.hub);
            self.encode.push(&self.hub, out);
        }
        self.encode.finish(out);
    }
}

impl ClientStream {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        match self {
            Self::Messages => out.extend_from_slice(chunk),
            Self::Chat(s) => s.push(chunk, out),
            Self::Responses(s, _) => s.push(chunk, out),
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        match self {
            Self::Messages => {}
            Self::Chat(s) => s.finish(out),
            Self::Responses(s, on_completed) => {
                s.finish(out);
                if let (Some(hook), Some(response)) = (on_completed.take(), s.final_response()) {
                    (hook.0)(response);
                }
            }
        }
    }
}

#[derive(Default)]
enum Body {
    /// No header seen yet.
    #[default]
    Pending,
    /// A success stream, translated as it arrives.
    Stream(StreamCodecs),
    /// A JSON body (success or error) collected until its end.
    Whole { status: u16, buf: Vec<u8> },
    /// Everything has been written.
    Finished,
}

/// The translation of one response, and the Pingora HTTP module that runs it: every
/// request gets one, idle (the response untouched) until [`translate`] hands it the
/// codecs.
///
/// [`translate`]: ResponseTranslator::translate
#[derive(Default)]
pub struct ResponseTranslator {
    /// `None`: idle.
    codecs: Option<ResponseCodecs>,
    body: Body,
    /// The answer is in the client's format, but the gateway asked for the stream's
    /// usage where the client did not: the usage-only chunk is kept from it.
    hides_asked_usage: bool,
    /// This answer's usage chunk is being looked for (a successful event stream).
    usage_filter: Option<UnaskedUsageFilter>,
    /// The answer is an Anthropic message batch object (or a page of them) in the
    /// client's format, whose `results_url` is to point at the gateway.
    results_urls: Option<ResultsUrlRewrite>,
    /// `results_urls` applies to this answer (a successful JSON one).
    rewriting: bool,
    /// Time spent translating this response (the gateway's own overhead).
    busy: Duration,
    /// The client speaks HTTP/1.0, which has no chunked framing: its answer goes
    /// without `Transfer-Encoding`, its end the connection's close.
    client_http10: bool,
    /// The web page's origin every answer is told it may be read by (CORS).
    cors_origin: Option<http::HeaderValue>,
}

const EVENT_STREAM: &str = "text/event-stream";
const JSON: &str = "application/json";

impl ResponseTranslator {
    /// A translator for one response, through these codecs.
    pub fn new(codecs: ResponseCodecs) -> Self {
        Self {
            codecs: Some(codecs),
            ..Self::default()
        }
    }

    /// Translates this request's response through these codecs.
    pub fn translate(&mut self, codecs: ResponseCodecs) {
        self.disable();
        self.codecs = Some(codecs);
    }

    /// Leaves the response untouched: the gateway writes an answer already in
    /// the client's format (its own error envelope).
    pub fn disable(&mut self) {
        self.codecs = None;
        self.body = Body::Pending;
        self.hides_asked_usage = false;
        self.usage_filter = None;
        self.results_urls = None;
        self.rewriting = false;
    }

    /// The client speaks HTTP/1.0: every answer of this request (translated, decoded,
    /// or the provider's own chunked one) goes to it without chunked framing, ended by
    /// the connection's close (RFC 9112 forbids `Transfer-Encoding` to such a client).
    pub fn answers_http10_client(&mut self) {
        self.client_http10 = true;
    }

    /// Every answer, the gateway's own and the provider's, says `origin` may read it.
    pub fn answers_origin(&mut self, origin: http::HeaderValue) {
        self.cors_origin = Some(origin);
    }

    /// Leaves the response in the client's format (another attempt's answer passing as
    /// is), hiding the usage chunk the gateway asked for when `hide_asked_usage`, and
    /// keeping any `results_url` rewrite the request set.
    pub fn pass_as_is(&mut self, hide_asked_usage: bool) {
        let results_urls = self.results_urls.take();
        if hide_asked_usage {
            self.hide_asked_usage();
        } else {
            self.disable();
        }
        self.results_urls = results_urls;
    }

    /// Leaves the response in the client's format, but for the `results_url` of the
    /// Anthropic message batches it describes, rewritten by `rewrite`.
    pub fn rewrite_results_urls(&mut self, rewrite: ResultsUrlRewrite) {
        self.disable();
        self.results_urls = Some(rewrite);
    }

    /// Holds this answer to rewrite its `results_url`s when it is successful JSON.
    fn watch_for_results_urls(&mut self, resp: &mut ResponseHeader) -> pingora_core::Result<()> {
        if self.results_urls.is_none() || resp.status.is_informational() {
            return Ok(());
        }
        let is_json = resp
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|ct| ct.trim_start().get(..JSON.len()))
            .is_some_and(|ct| ct.eq_ignore_ascii_case(JSON));
        // A body to rewrite: not a 204's, nor a range of one.
        self.rewriting =
            resp.status.is_success() && !matches!(resp.status.as_u16(), 204 | 206) && is_json;
        if self.rewriting && resp.remove_header(&http::header::CONTENT_LENGTH).is_some() {
            // The body changes length: it goes chunked (not close-delimited).
            resp.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
        }
        Ok(())
    }

    /// Leaves the response in the client's format, but for the usage-only chunk that
    /// ends a Chat stream whose usage the gateway asked for and the client did not.
    pub fn hide_asked_usage(&mut self) {
        self.disable();
        self.hides_asked_usage = true;
    }

    /// Looks for the usage chunk in this answer when it is a successful event stream.
    fn watch_for_asked_usage(&mut self, resp: &mut ResponseHeader) -> pingora_core::Result<()> {
        if !self.hides_asked_usage || resp.status.is_informational() {
            return Ok(());
        }
        let is_event_stream = resp
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|ct| ct.trim_start().get(..EVENT_STREAM.len()))
            .is_some_and(|ct| ct.eq_ignore_ascii_case(EVENT_STREAM));
        if !(resp.status.is_success() && is_event_stream) {
            self.usage_filter = None;
            return Ok(());
        }
        self.usage_filter = Some(UnaskedUsageFilter::default());
        if resp.remove_header(&http::header::CONTENT_LENGTH).is_some() {
            // The body loses a chunk: without a length, it goes chunked (not
            // close-delimited).
            resp.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
        }
        Ok(())
    }

    /// The bytes of `chunk` the client gets while the usage chunk is looked for.
    fn without_asked_usage(
        filter: &mut UnaskedUsageFilter,
        chunk: Option<Bytes>,
        end_of_stream: bool,
    ) -> Bytes {
        let passed = chunk.map(|chunk| filter.pass(chunk)).unwrap_or_default();
        if !end_of_stream {
            return passed;
        }
        let mut out = Vec::from(passed);
        filter.finish(&mut out);
        Bytes::from(out)
    }

    /// The time spent translating this response so far.
    pub fn busy(&self) -> Duration {
        self.busy
    }

    /// Whether the provider's answer with this header is translated as it arrives
    /// (a successful event stream) rather than collected whole (JSON, any error).
    /// An idle translator does neither.
    pub fn streams(&self, resp: &ResponseHeader) -> bool {
        self.codecs.as_ref().is_some_and(|c| c.streams(resp))
    }

    /// Whether the answer with this provider header will be translated whole, once
    /// the provider's body has ended (not as a stream).
    pub fn answers_whole(&self, resp: &ResponseHeader) -> bool {
        self.codecs.as_ref().is_some_and(|c| !c.streams(resp))
    }

    /// Whether a translated response has started but not yet ended: after an
    /// upstream failure, ending its body lets a stream close with an error event.
    pub fn is_mid_response(&self) -> bool {
        self.codecs.is_some() && self.has_started() && !self.is_finished()
    }

    /// Rewrites the response header: the body changes length, so it is sent
    /// chunked, and its type follows the translated body. An idle translator
    /// leaves it as it is.
    pub fn on_header(&mut self, resp: &mut ResponseHeader) -> pingora_core::Result<()> {
        let Some(codecs) = &self.codecs else {
            return Ok(());
        };
        if resp.status.is_informational() {
            // `100 Continue` or `103 Early Hints`: the answer to translate comes after it.
            return Ok(());
        }
        let status = resp.status.as_u16();
        if let Some(tools) = codecs.client.omitted_tools() {
            resp.insert_header(OMITTED_TOOLS_HEADER, tools)?;
        }
        if status >= 400 {
            let added = codecs
                .client
                .error_headers(&resp.headers, std::time::SystemTime::now());
            for (name, value) in added.into_iter().flatten() {
                resp.insert_header(name, value)?;
            }
        }
        self.body = if codecs.streams(resp) {
            Body::Stream(codecs.stream_codecs())
        } else {
            Body::Whole {
                status,
                buf: Vec::new(),
            }
        };
        let content_type = if matches!(self.body, Body::Stream(_)) {
            EVENT_STREAM
        } else {
            JSON
        };
        resp.remove_header(&http::header::CONTENT_LENGTH);
        // The provider's compression (if any) was undone before this point.
        resp.remove_header(&http::header::CONTENT_ENCODING);
        resp.insert_header(http::header::CONTENT_TYPE, content_type)?;
        // Without it Pingora falls back to close-delimited framing.
        resp.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
        Ok(())
    }

    /// Translates one body chunk; the returned bytes replace it. An idle
    /// translator returns it as it is.
    pub fn on_body(&mut self, chunk: Option<&[u8]>, end_of_stream: bool) -> Bytes {
        let Some(codecs) = &self.codecs else {
            return chunk.map(Bytes::copy_from_slice).unwrap_or_default();
        };
        let mut out = Vec::new();
        match &mut self.body {
            Body::Stream(stream) => {
                if let Some(chunk) = chunk {
                    stream.push(chunk, &mut out);
                }
                if end_of_stream {
                    stream.finish(&mut out);
                }
            }
            Body::Whole { status, buf } => {
                if let Some(chunk) = chunk {
                    if buf.len() + chunk.len() > MAX_WHOLE_ANSWER_BYTES {
                        // Nothing this large is an answer to translate: stop holding it.
                        log::warn!(
                            "provider answer over {MAX_WHOLE_ANSWER_BYTES} bytes; not translated"
                        );
                        out = codecs.error_body("the provider's answer is too large to translate");
                        self.body = Body::Finished;
                        return Bytes::from(out);
                    }
                    buf.extend_from_slice(chunk);
                }
                if end_of_stream {
                    out = codecs.translate_whole(*status, buf);
                }
            }
            Body::Pending | Body::Finished => {}
        }
        if end_of_stream {
            self.body = Body::Finished;
        }
        Bytes::from(out)
    }

    /// The response ended without a final body chunk.
    pub fn on_done(&mut self) -> Option<Bytes> {
        if self.codecs.is_none() || matches!(self.body, Body::Pending | Body::Finished) {
            return None;
        }
        Some(self.on_body(None, true)).filter(|b| !b.is_empty())
    }

    /// Whether the response header has been seen.
    pub fn has_started(&self) -> bool {
        !matches!(self.body, Body::Pending)
    }

    /// Whether the last body chunk has been translated.
    pub fn is_finished(&self) -> bool {
        matches!(self.body, Body::Finished)
    }
}

#[async_trait]
impl HttpModule for ResponseTranslator {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    async fn response_header_filter(
        &mut self,
        resp: &mut ResponseHeader,
        _end_of_stream: bool,
    ) -> pingora_core::Result<()> {
        let filtered = if self.codecs.is_none() {
            self.watch_for_results_urls(resp)
                .and_then(|()| self.watch_for_asked_usage(resp))
        } else {
            let began = Instant::now();
            let translated = self.on_header(resp);
            self.busy += began.elapsed();
            translated
        };
        // The last header filter before the client: whoever made the answer chunked.
        if self.client_http10 {
            resp.remove_header(&http::header::TRANSFER_ENCODING);
        }
        if let Some(origin) = &self.cors_origin {
            crate::proxy::cors::add_to_answer(resp, origin)?;
        }
        filtered
    }

    fn response_body_filter(
        &mut self,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
    ) -> pingora_core::Result<()> {
        if self.codecs.is_some() {
            let began = Instant::now();
            *body = Some(self.on_body(body.as_deref(), end_of_stream));
            self.busy += began.elapsed();
        } else if let Some(rewrite) = self.results_urls.as_mut().filter(|_| self.rewriting) {
            *body = Some(rewrite.pass(body.take(), end_of_stream));
            if end_of_stream {
                self.results_urls = None;
            }
        } else if let Some(filter) = self.usage_filter.as_mut() {
            // Not timed: looking for the usage chunk is not translating, and costs
            // less than reading the clock twice a chunk.
            *body = Some(Self::without_asked_usage(
                filter,
                body.take(),
                end_of_stream,
            ));
            if end_of_stream {
                self.usage_filter = None;
            }
        }
        Ok(())
    }

    fn response_done_filter(&mut self) -> pingora_core::Result<Option<Bytes>> {
        if self.codecs.is_none() {
            if let Some(mut rewrite) = self.results_urls.take().filter(|_| self.rewriting) {
                let last = rewrite.pass(None, true);
                return Ok(Some(last).filter(|b| !b.is_empty()));
            }
            let last = self
                .usage_filter
                .take()
                .map(|mut filter| Self::without_asked_usage(&mut filter, None, true));
            return Ok(last.filter(|b| !b.is_empty()));
        }
        let began = Instant::now();
        let last = self.on_done();
        self.busy += began.elapsed();
        Ok(last)
    }
}

/// Gives every request its (idle) [`ResponseTranslator`], registered in
/// `init_downstream_modules`.
pub struct ResponseTranslatorBuilder;

impl HttpModuleBuilder for ResponseTranslatorBuilder {
    fn init(&self) -> Module {
        Box::new(ResponseTranslator::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translator(stream: bool) -> ResponseTranslator {
        ResponseTranslator::new(ResponseCodecs::anthropic_to_openai(
            "anthropic/claude-x".into(),
            7,
            stream,
            false,
        ))
    }

    fn header(status: u16, content_type: &str) -> ResponseHeader {
        let mut h = ResponseHeader::build(status, None).unwrap();
        h.insert_header("content-type", content_type).unwrap();
        h.insert_header("content-length", "10").unwrap();
        h.insert_header("retry-after", "7").unwrap();
        h
    }

    #[test]
    fn a_batchs_results_url_is_rewritten_in_a_whole_json_answer_only() {
        let doc = br#"{"id":"b","results_url":"https://api.anthropic.com/v1/messages/batches/b/results"}"#;
        let rewrite = || {
            ResultsUrlRewrite::new(
                "https://api.anthropic.com/v1/".into(),
                "http://gw/p/anthropic/".into(),
            )
            .unwrap()
        };
        for (status, rewritten) in [(200, true), (206, false), (204, false), (404, false)] {
            let mut t = ResponseTranslator::default();
            t.rewrite_results_urls(rewrite());
            // Another attempt's answer passing as is keeps the rewrite.
            t.pass_as_is(false);
            let mut h = header(status, "application/json");
            block_on(t.response_header_filter(&mut h, false)).unwrap();
            assert_eq!(
                h.headers.get("content-length").is_none(),
                rewritten,
                "{status}"
            );
            let mut out = Vec::new();
            for (piece, end) in [(&doc[..20], false), (&doc[20..], true)] {
                let mut body = Some(Bytes::copy_from_slice(piece));
                t.response_body_filter(&mut body, end).unwrap();
                out.extend_from_slice(body.as_deref().unwrap_or_default());
            }
            let text = String::from_utf8(out).unwrap();
            assert_eq!(
                text.contains("http://gw/p/anthropic/messages/batches/b/results"),
                rewritten,
                "{status}"
            );
            assert_eq!(text.len() == doc.len(), !rewritten, "{status}: {text}");
        }
        // The gateway's own error envelope is left alone.
        let mut t = ResponseTranslator::default();
        t.rewrite_results_urls(rewrite());
        t.disable();
        let mut h = header(200, "application/json");
        block_on(t.response_header_filter(&mut h, false)).unwrap();
        assert_eq!(h.headers["content-length"], "10");
    }

    #[test]
    fn an_asked_usage_chunk_is_kept_from_a_successful_stream_only() {
        let usage = b"data: {\"choices\":[],\"usage\":{\"total_tokens\":3}}\n\n";
        let chunk = b"data: {\"choices\":[{\"index\":0}],\"usage\":null}\n\n";
        let stream = [&chunk[..], &usage[..], b"data: [DONE]\n\n"].concat();
        let mut t = ResponseTranslator::default();
        t.hide_asked_usage();
        // An error answer passes as it came.
        let mut refused = header(429, "application/json");
        t.watch_for_asked_usage(&mut refused).unwrap();
        assert_eq!(refused.headers["content-length"], "10");
        let mut body = Some(Bytes::from_static(usage));
        t.response_body_filter(&mut body, true).unwrap();
        assert_eq!(body.as_deref(), Some(&usage[..]));
        // A stream loses the chunk, and the length it no longer has.
        let mut ok = header(200, "Text/Event-Stream; charset=utf-8");
        t.watch_for_asked_usage(&mut ok).unwrap();
        assert!(ok.headers.get("content-length").is_none());
        assert_eq!(ok.headers["transfer-encoding"], "chunked");
        let (a, b) = stream.split_at(chunk.len() + 10);
        let mut out = Vec::new();
        for (piece, end) in [(a, false), (b, true)] {
            let mut body = Some(Bytes::copy_from_slice(piece));
            t.response_body_filter(&mut body, end).unwrap();
            out.extend_from_slice(&body.unwrap());
        }
        assert_eq!(out, [&chunk[..], b"data: [DONE]\n\n"].concat());
        // Translating again (a fallback to another format) stops looking for it.
        t.translate(ResponseCodecs::openai_to_anthropic("m".into(), true));
        assert!(!t.hides_asked_usage);
    }

    #[test]
    fn only_successful_event_streams_stream() {
        let t = translator(false);
        assert!(t.streams(&header(200, "text/event-stream; charset=utf-8")));
        assert!(!t.streams(&header(200, "application/json")));
        assert!(!t.streams(&header(429, "text/event-stream")));
        // Without a content type, the client's `stream` decides.
        let bare = ResponseHeader::build(200, None).unwrap();
        assert!(!t.streams(&bare));
        assert!(translator(true).streams(&bare));
    }

    #[test]
    fn informational_header_passes_untouched_and_waits_for_the_answer() {
        let mut t = translator(false);
        let mut hints = ResponseHeader::build(103, None).unwrap();
        hints
            .insert_header("link", "</style.css>; rel=preload")
            .unwrap();
        t.on_header(&mut hints).unwrap();
        assert_eq!(hints.status.as_u16(), 103);
        assert!(hints.headers.get("transfer-encoding").is_none());
        assert!(hints.headers.get("content-type").is_none());
        assert!(!t.has_started());
        let mut h = header(200, "application/json");
        t.on_header(&mut h).unwrap();
        assert!(t.has_started());
        let out = t.on_body(Some(fixture!("anthropic/messages.json").as_bytes()), true);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["object"], "chat.completion");
    }

    #[test]
    fn json_success_is_translated_at_the_end_and_sent_chunked() {
        let mut t = translator(false);
        let mut h = header(200, "application/json");
        t.on_header(&mut h).unwrap();
        assert!(h.headers.get("content-length").is_none());
        assert_eq!(h.headers["transfer-encoding"], "chunked");
        let body = fixture!("anthropic/messages.json").as_bytes();
        let (a, b) = body.split_at(body.len() / 2);
        assert!(t.on_body(Some(a), false).is_empty());
        let out = t.on_body(Some(b), true);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["model"], "anthropic/claude-x");
        assert!(t.is_finished());
        assert_eq!(t.on_done(), None);
    }

    #[test]
    fn a_whole_anthropic_answer_hands_back_the_usage_it_read() {
        let t = ResponseCodecs::anthropic_to_openai("anthropic/claude-x".into(), 7, false, false);
        let provider_body = fixture!("anthropic/messages.json");
        let answer = t.answer_whole(200, provider_body.as_bytes()).unwrap();
        let read = crate::metrics::usage::usage_of_json(provider_body.as_bytes());
        assert!(
            read.is_some_and(|u| u.input > 0 && u.output > 0),
            "{read:?}"
        );
        assert_eq!(answer.usage, UsageRead::Read(read));
        // An answer without usage says so: nothing is left to read.
        let bare = br#"{"type":"message","content":[{"type":"text","text":"hi"}]}"#;
        assert_eq!(
            t.answer_whole(200, bare).unwrap().usage,
            UsageRead::Read(None)
        );
    }

    #[test]
    fn a_whole_openai_answer_leaves_its_usage_to_be_read() {
        // Its reasoning tokens do not survive the hub: the caller reads the original.
        let t = ResponseCodecs::openai_to_anthropic("gpt-x".into(), false);
        let answer = t
            .answer_whole(200, fixture!("openai/chat_completion.json").as_bytes())
            .unwrap();
        assert!(String::from_utf8(answer.body)
            .unwrap()
            .contains("\"message\""));
        assert_eq!(answer.usage, UsageRead::Unread);
    }

    #[test]
    fn untranslatable_success_is_an_error_for_the_whole_path() {
        let t = ResponseCodecs::anthropic_to_openai("anthropic/claude-x".into(), 7, false, false);
        assert!(t.answer_whole(200, br#"{"unexpected":true}"#).is_err());
        assert!(t.answer_whole(200, b"{\"type\":\"mess").is_err());
        let ok = t
            .answer_whole(200, fixture!("anthropic/messages.json").as_bytes())
            .unwrap();
        assert!(String::from_utf8(ok.body)
            .unwrap()
            .contains("chat.completion"));
        // Errors always translate, keeping their meaning.
        let err = t.answer_whole(429, b"not json at all").unwrap();
        assert!(String::from_utf8(err.body).unwrap().contains("error"));
        assert_eq!(err.usage, UsageRead::Unread);
    }

    #[test]
    fn whole_answer_over_the_cap_is_not_held() {
        let mut t = translator(false);
        t.on_header(&mut header(200, "application/json")).unwrap();
        let chunk = vec![b' '; 1024 * 1024];
        let mut out = Vec::new();
        for _ in 0..=MAX_WHOLE_ANSWER_BYTES / chunk.len() {
            out.extend_from_slice(&t.on_body(Some(&chunk), false));
            if t.is_finished() {
                break;
            }
        }
        assert!(t.is_finished(), "still holding the answer");
        assert!(String::from_utf8(out).unwrap().contains("too large"));
    }

    #[test]
    fn a_providers_call_id_is_named_as_the_clients_sdk_reads_it_unless_it_already_is() {
        let chat = ClientEncoder::Chat {
            model: "m".into(),
            created: 0,
            include_usage: false,
        };
        let messages = ClientEncoder::Messages { model: "m".into() };
        let mut anthropic = http::HeaderMap::new();
        anthropic.insert("request-id", http::HeaderValue::from_static("req_a"));
        let (name, id) = chat.provider_request_id(&anthropic).unwrap();
        assert_eq!(
            (name.as_str(), id.to_str().unwrap()),
            ("x-request-id", "req_a")
        );
        assert!(messages.provider_request_id(&anthropic).is_none());
        anthropic.insert("x-request-id", http::HeaderValue::from_static("req_b"));
        assert!(
            chat.provider_request_id(&anthropic).is_none(),
            "kept as given"
        );
        assert!(chat.provider_request_id(&http::HeaderMap::new()).is_none());
    }

    #[test]
    fn error_keeps_status_and_retry_after_and_becomes_openai_envelope() {
        let mut t = translator(true);
        let mut h = header(429, "application/json");
        t.on_header(&mut h).unwrap();
        assert_eq!(h.status.as_u16(), 429);
        assert_eq!(h.headers["retry-after"], "7");
        assert_eq!(h.headers["content-type"], "application/json");
        let out = t.on_body(
            Some(br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#),
            true,
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert_eq!(v["error"]["message"], "slow down");
    }

    #[test]
    fn stream_is_translated_chunk_by_chunk() {
        let mut t = translator(true);
        let mut h = header(200, "text/event-stream; charset=utf-8");
        t.on_header(&mut h).unwrap();
        assert_eq!(h.headers["content-type"], "text/event-stream");
        let body = fixture!("anthropic/messages_stream.txt").as_bytes();
        let mut out = Vec::new();
        for chunk in body.chunks(7) {
            out.extend_from_slice(&t.on_body(Some(chunk), false));
        }
        out.extend_from_slice(&t.on_done().unwrap_or_default());
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("chat.completion.chunk"));
        assert!(text.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn cut_stream_ends_with_an_error_event_not_done() {
        let mut t = translator(true);
        t.on_header(&mut header(200, "text/event-stream")).unwrap();
        let body = fixture!("anthropic/messages_stream.txt").as_bytes();
        let mut out = t.on_body(Some(&body[..body.len() / 2]), false).to_vec();
        out.extend_from_slice(&t.on_done().unwrap());
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(r#""error""#));
        assert!(!text.contains("[DONE]"));
    }

    fn openai_translator() -> ResponseTranslator {
        ResponseTranslator::new(ResponseCodecs::openai_to_anthropic(
            "openai:gpt-4o".into(),
            true,
        ))
    }

    #[test]
    fn openai_stream_becomes_anthropic_events() {
        let mut t = openai_translator();
        let mut h = header(200, "text/event-stream");
        t.on_header(&mut h).unwrap();
        let body = fixture!("openai/chat_completion_stream.txt").as_bytes();
        let mut out = Vec::new();
        for chunk in body.chunks(5) {
            out.extend_from_slice(&t.on_body(Some(chunk), false));
        }
        out.extend_from_slice(&t.on_done().unwrap_or_default());
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("event: message_start"));
        assert!(text.contains("event: content_block_delta"));
        assert!(text
            .trim_end()
            .ends_with(r#"data: {"type":"message_stop"}"#));
    }

    #[test]
    fn openai_error_becomes_anthropic_error_envelope() {
        let mut t = openai_translator();
        t.on_header(&mut header(429, "application/json")).unwrap();
        let out = t.on_body(
            Some(br#"{"error":{"message":"slow down","type":"rate_limit_error"}}"#),
            true,
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "rate_limit_error");
    }

    #[test]
    fn openai_json_becomes_an_anthropic_message() {
        let mut t = openai_translator();
        t.on_header(&mut header(200, "application/json")).unwrap();
        let out = t.on_body(
            Some(fixture!("openai/chat_completion.json").as_bytes()),
            true,
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["type"], "message");
        assert_eq!(v["model"], "openai:gpt-4o");
    }

    #[test]
    fn time_spent_translating_is_counted_and_an_idle_module_counts_none() {
        let mut idle = ResponseTranslator::default();
        let mut body = Some(Bytes::from_static(b"untouched"));
        idle.response_body_filter(&mut body, true).unwrap();
        assert_eq!(body.as_deref(), Some(&b"untouched"[..]));
        assert_eq!(idle.busy(), Duration::ZERO);

        let mut module = ResponseTranslator::default();
        module.translate(ResponseCodecs::anthropic_to_openai(
            "claude".into(),
            1,
            true,
            false,
        ));
        let mut header = ResponseHeader::build(200, None).unwrap();
        header
            .insert_header("content-type", "text/event-stream")
            .unwrap();
        let stream = fixture!("anthropic/messages_stream.txt");
        block_on(module.response_header_filter(&mut header, false)).unwrap();
        let mut body = Some(Bytes::from_static(stream.as_bytes()));
        module.response_body_filter(&mut body, true).unwrap();
        assert!(module.busy() > Duration::ZERO);
    }

    /// Runs a future to its end (the header filter does no I/O).
    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }
}
