//! Turns one provider response (header, then body chunks) into the client's
//! format. Success streams are translated event by event as bytes arrive;
//! JSON bodies and error bodies are collected and translated once complete.
//! Plain state, no I/O: the HTTP module feeds it.

use bytes::Bytes;
use pingora_http::ResponseHeader;

use super::{
    anthropic_error_to_openai, anthropic_to_openai_response, AnthropicToOpenAiStream,
    ResponseOptions, StreamOptions,
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
}

enum Body {
    /// No header seen yet.
    Pending,
    /// A success stream, translated as it arrives.
    Stream(Box<AnthropicToOpenAiStream>),
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

    /// Rewrites the response header: the body changes length, so it is sent
    /// chunked, and its type follows the translated body.
    pub fn on_header(&mut self, resp: &mut ResponseHeader) -> pingora_core::Result<()> {
        let status = resp.status.as_u16();
        let ResponseTranslation::AnthropicToOpenAi {
            model,
            created,
            stream,
            include_usage,
        } = &self.translation;
        let is_event_stream = resp
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map_or(*stream, |ct| ct.trim_start().starts_with(EVENT_STREAM));
        let success = (200..300).contains(&status);
        self.body = if success && is_event_stream {
            Body::Stream(Box::new(AnthropicToOpenAiStream::new(StreamOptions {
                model: model.clone(),
                created: *created,
                include_usage: *include_usage,
            })))
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
            Body::Whole { buf, .. } => {
                if let Some(chunk) = chunk {
                    buf.extend_from_slice(chunk);
                }
                if end_of_stream {
                    out = self.translate_whole();
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

    fn translate_whole(&self) -> Vec<u8> {
        let Body::Whole { status, buf } = &self.body else {
            return Vec::new();
        };
        let ResponseTranslation::AnthropicToOpenAi { model, created, .. } = &self.translation;
        if !(200..300).contains(status) {
            return anthropic_error_to_openai(*status, buf);
        }
        let opts = ResponseOptions {
            model: model.clone(),
            created: *created,
        };
        anthropic_to_openai_response(buf, &opts).unwrap_or_else(|e| {
            // The status line already went out as a success; the body says what broke.
            log::warn!("untranslatable provider response: {e}");
            super::anthropic_to_openai_error::OpenAiErrorBody::new(&e.to_string(), "provider_error")
                .to_vec()
        })
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
}
