//! Turns one provider response (header, then body chunks) into the client's
//! format. Success streams are translated event by event as bytes arrive;
//! JSON bodies and error bodies are collected and translated once complete.
//! Plain state, no I/O: the HTTP module feeds it.

use bytes::Bytes;
use pingora_http::ResponseHeader;

use super::anthropic_to_openai_error::OpenAiErrorBody;
use super::openai_to_anthropic_error::AnthropicErrorBody;
use super::{
    anthropic_error_to_openai, anthropic_to_openai_response, openai_error_to_anthropic,
    openai_to_anthropic_response, AnthropicToOpenAiStream, MessageOptions, OpenAiToAnthropicStream,
    ResponseOptions, StreamOptions, TranslateError,
};

/// Which way a response is translated, with what the client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseTranslation {
    /// Anthropic Messages → OpenAI Chat Completions.
    AnthropicToOpenAi {
        /// The model name the client sent, echoed back as `model`.
        model: String,
        /// Unix time stamped on every chunk as `created`.
        created: u64,
        /// Whether the client asked for a stream (used when the provider
        /// does not say by `Content-Type`).
        stream: bool,
        /// `stream_options.include_usage`.
        include_usage: bool,
    },
    /// OpenAI Chat Completions → Anthropic Messages.
    OpenAiToAnthropic {
        /// The model name the client sent, echoed back as `model`.
        model: String,
        /// Whether the client asked for a stream.
        stream: bool,
    },
}

/// The most a translated answer taken whole may hold, before or after translation:
/// a chat answer is bounded by its token limit, so anything near this is not one.
pub const MAX_WHOLE_ANSWER_BYTES: usize = 64 * 1024 * 1024;

impl ResponseTranslation {
    /// Whether the client asked for a stream.
    pub fn stream_requested(&self) -> bool {
        match self {
            Self::AnthropicToOpenAi { stream, .. } | Self::OpenAiToAnthropic { stream, .. } => {
                *stream
            }
        }
    }

    fn stream_translator(&self) -> StreamTranslator {
        match self {
            Self::AnthropicToOpenAi {
                model,
                created,
                include_usage,
                ..
            } => StreamTranslator::AnthropicToOpenAi(Box::new(AnthropicToOpenAiStream::new(
                StreamOptions {
                    model: model.clone(),
                    created: *created,
                    include_usage: *include_usage,
                },
            ))),
            Self::OpenAiToAnthropic { model, .. } => StreamTranslator::OpenAiToAnthropic(Box::new(
                OpenAiToAnthropicStream::new(MessageOptions {
                    model: model.clone(),
                }),
            )),
        }
    }

    /// A complete provider answer, success or error, in the client's format. An error
    /// always translates (into the client's envelope, status kept); a success body
    /// that is not what the provider's format promises is an `Err`, for the caller to
    /// answer before any status goes out.
    pub fn answer_whole(&self, status: u16, body: &[u8]) -> Result<Vec<u8>, TranslateError> {
        let success = (200..300).contains(&status);
        match self {
            Self::AnthropicToOpenAi { .. } if !success => {
                Ok(anthropic_error_to_openai(status, body))
            }
            Self::OpenAiToAnthropic { .. } if !success => {
                Ok(openai_error_to_anthropic(status, body))
            }
            Self::AnthropicToOpenAi { model, created, .. } => {
                let opts = ResponseOptions {
                    model: model.clone(),
                    created: *created,
                };
                anthropic_to_openai_response(body, &opts)
            }
            Self::OpenAiToAnthropic { model, .. } => {
                let opts = MessageOptions {
                    model: model.clone(),
                };
                openai_to_anthropic_response(body, &opts)
            }
        }
    }

    /// The complete body in the client's format, once its status is already out: an
    /// untranslatable success becomes an error body, which is all that is left to say.
    fn translate_whole(&self, status: u16, body: &[u8]) -> Vec<u8> {
        self.answer_whole(status, body).unwrap_or_else(|e| {
            log::warn!("untranslatable provider response: {e}");
            self.error_body(&e.to_string())
        })
    }

    /// A provider-error body in the client's envelope.
    fn error_body(&self, message: &str) -> Vec<u8> {
        match self {
            Self::AnthropicToOpenAi { .. } => {
                OpenAiErrorBody::new(message, "provider_error").to_vec()
            }
            Self::OpenAiToAnthropic { .. } => {
                AnthropicErrorBody::new("api_error", message).to_vec()
            }
        }
    }
}

/// An incremental stream translator of either direction.
enum StreamTranslator {
    AnthropicToOpenAi(Box<AnthropicToOpenAiStream>),
    OpenAiToAnthropic(Box<OpenAiToAnthropicStream>),
}

impl StreamTranslator {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        match self {
            Self::AnthropicToOpenAi(s) => s.push(chunk, out),
            Self::OpenAiToAnthropic(s) => s.push(chunk, out),
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        match self {
            Self::AnthropicToOpenAi(s) => s.finish(out),
            Self::OpenAiToAnthropic(s) => s.finish(out),
        }
    }
}

enum Body {
    /// No header seen yet.
    Pending,
    /// A success stream, translated as it arrives.
    Stream(StreamTranslator),
    /// A JSON body (success or error) collected until its end.
    Whole { status: u16, buf: Vec<u8> },
    /// Everything has been written.
    Finished,
}

/// The translation state of one response.
pub struct ResponseTranslator {
    translation: ResponseTranslation,
    body: Body,
}

const EVENT_STREAM: &str = "text/event-stream";
const JSON: &str = "application/json";

impl ResponseTranslator {
    /// A translator for one response.
    pub fn new(translation: ResponseTranslation) -> Self {
        Self {
            translation,
            body: Body::Pending,
        }
    }

    /// Whether the provider's answer with this header is translated as it arrives
    /// (a successful event stream) rather than collected whole (JSON, any error).
    pub fn streams(&self, resp: &ResponseHeader) -> bool {
        let is_event_stream = resp
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map_or(self.translation.stream_requested(), |ct| {
                ct.trim_start().starts_with(EVENT_STREAM)
            });
        resp.status.is_success() && is_event_stream
    }

    /// Rewrites the response header: the body changes length, so it is sent
    /// chunked, and its type follows the translated body.
    pub fn on_header(&mut self, resp: &mut ResponseHeader) -> pingora_core::Result<()> {
        if resp.status.is_informational() {
            // `100 Continue` or `103 Early Hints`: the answer to translate comes after it.
            return Ok(());
        }
        let status = resp.status.as_u16();
        self.body = if self.streams(resp) {
            Body::Stream(self.translation.stream_translator())
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

    /// Translates one body chunk; the returned bytes replace it.
    pub fn on_body(&mut self, chunk: Option<&[u8]>, end_of_stream: bool) -> Bytes {
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
                        out = self
                            .translation
                            .error_body("the provider's answer is too large to translate");
                        self.body = Body::Finished;
                        return Bytes::from(out);
                    }
                    buf.extend_from_slice(chunk);
                }
                if end_of_stream {
                    out = self.translation.translate_whole(*status, buf);
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
        if matches!(self.body, Body::Pending | Body::Finished) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn translator(stream: bool) -> ResponseTranslator {
        ResponseTranslator::new(ResponseTranslation::AnthropicToOpenAi {
            model: "anthropic/claude-x".into(),
            created: 7,
            stream,
            include_usage: false,
        })
    }

    fn header(status: u16, content_type: &str) -> ResponseHeader {
        let mut h = ResponseHeader::build(status, None).unwrap();
        h.insert_header("content-type", content_type).unwrap();
        h.insert_header("content-length", "10").unwrap();
        h.insert_header("retry-after", "7").unwrap();
        h
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
    fn untranslatable_success_is_an_error_for_the_whole_path() {
        let t = ResponseTranslation::AnthropicToOpenAi {
            model: "anthropic/claude-x".into(),
            created: 7,
            stream: false,
            include_usage: false,
        };
        assert!(t.answer_whole(200, br#"{"unexpected":true}"#).is_err());
        assert!(t.answer_whole(200, b"{\"type\":\"mess").is_err());
        let ok = t
            .answer_whole(200, fixture!("anthropic/messages.json").as_bytes())
            .unwrap();
        assert!(String::from_utf8(ok).unwrap().contains("chat.completion"));
        // Errors always translate, keeping their meaning.
        let err = t.answer_whole(429, b"not json at all").unwrap();
        assert!(String::from_utf8(err).unwrap().contains("error"));
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
        ResponseTranslator::new(ResponseTranslation::OpenAiToAnthropic {
            model: "openai:gpt-4o".into(),
            stream: true,
        })
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
}
