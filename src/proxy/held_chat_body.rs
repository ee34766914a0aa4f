//! A `/p/` Chat Completions body on its way to a provider that reports a stream's
//! usage only when asked (OpenAI and most OpenAI-format servers). Sent as it came, such
//! a stream reports nothing, and a key held to tokens or a budget could stream through
//! `/p/` uncounted. So the body is held whole, as a `/v1` body is, and sent on asking
//! for the usage when it is a stream that did not ask (every other byte as the client
//! wrote it); the usage-only chunk that then ends the answer is kept from the client.

use bytes::{Bytes, BytesMut};
use http::Method;

use crate::providers::{Provider, WireFormat};
use crate::translate::StreamUsage;

use super::body_budget::BodyPermit;
use super::model_field::usage_asking_body;
use super::GatewayError;

/// The last segment of the endpoints whose streams are asked for their usage: Chat
/// Completions (`chat/completions`, below any prefix) and the legacy `completions`.
const COMPLETIONS: &str = "completions";

/// The client's body of a `/p/` Chat Completions call, held until its end.
#[derive(Debug)]
pub struct HeldChatBody {
    bytes: BytesMut,
    /// The gateway-wide share these bytes take (`server.max_buffered_bytes`).
    permit: BodyPermit,
}

/// What goes upstream after a chunk of the client's body.
#[derive(Debug, PartialEq, Eq)]
pub enum HeldChunk {
    /// Nothing yet: the body is not over.
    Holding,
    /// The whole body, as the client sent it.
    AsSent,
    /// The whole body, asking for the stream's usage.
    AskingUsage,
}

impl HeldChatBody {
    /// Whether the body of a `method` call to `endpoint` at `provider` is held: a
    /// `POST` to a completions endpoint of an OpenAI-format provider that is asked for
    /// a stream's usage (`providers.<name>.ask_stream_usage`). Empty segments are
    /// skipped (`chat//completions/`) and case ignored, as some servers do.
    pub fn applies(provider: &Provider, endpoint: &str, method: &Method) -> bool {
        *method == Method::POST
            && provider.format == WireFormat::OpenAi
            && provider.stream_usage == StreamUsage::OnRequest
            && endpoint
                .rsplit('/')
                .find(|s| !s.is_empty())
                .is_some_and(|last| last.eq_ignore_ascii_case(COMPLETIONS))
    }

    /// An empty hold, its bytes counted against `permit`.
    pub fn new(permit: BodyPermit) -> Self {
        Self {
            bytes: BytesMut::new(),
            permit,
        }
    }

    /// Takes the client's next chunk (`None` at the end, from some clients) in place
    /// of what goes upstream: nothing until the body's end, then the whole body. An
    /// empty chunk tells Pingora's proxy loop that nothing goes yet (`None` would end
    /// the body upstream). A body the gateway cannot hold is refused with 503, and one
    /// it cannot read with 400, as on `/v1` ([`usage_asking_body`] says what it
    /// refuses): sent on unread, a stream in it could go uncounted.
    pub fn take(
        &mut self,
        chunk: &mut Option<Bytes>,
        end_of_stream: bool,
    ) -> Result<HeldChunk, GatewayError> {
        if let Some(data) = chunk.take() {
            self.permit.cover((self.bytes.len() + data.len()) as u64)?;
            self.bytes.extend_from_slice(&data);
        }
        if !end_of_stream {
            *chunk = Some(Bytes::new());
            return Ok(HeldChunk::Holding);
        }
        if self.bytes.is_empty() {
            // No body: nothing to read, nothing to ask (the provider refuses it).
            return Ok(HeldChunk::AsSent);
        }
        let body = std::mem::take(&mut self.bytes).freeze();
        let asking = usage_asking_body(&body)?;
        Ok(match asking {
            Some(asking) => {
                *chunk = Some(Bytes::from(asking));
                HeldChunk::AskingUsage
            }
            None => {
                *chunk = Some(body);
                HeldChunk::AsSent
            }
        })
    }

    /// Starts over: another attempt sends the body again from its start.
    pub fn restart(&mut self) {
        self.bytes.clear();
    }

    /// The provider answered: it has the body, which Pingora has let go of.
    pub fn answered(&mut self) {
        self.permit.release();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::proxy::body_budget::BodyBudget;

    fn hold(limit: u64) -> HeldChatBody {
        HeldChatBody::new(Arc::new(BodyBudget::default()).permit(limit))
    }

    /// What goes upstream for `chunks`, the last one ending the body.
    fn sent(held: &mut HeldChatBody, chunks: &[&str]) -> (Vec<Option<Bytes>>, HeldChunk) {
        let mut out = Vec::new();
        let mut last = HeldChunk::Holding;
        for (i, c) in chunks.iter().enumerate() {
            let mut chunk = Some(Bytes::copy_from_slice(c.as_bytes()));
            last = held.take(&mut chunk, i + 1 == chunks.len()).unwrap();
            out.push(chunk);
        }
        (out, last)
    }

    #[test]
    fn a_stream_split_anywhere_goes_whole_at_its_end_asking_for_its_usage() {
        let body = r#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#;
        for cut in 1..body.len() {
            let mut held = hold(1 << 20);
            let (out, last) = sent(&mut held, &[&body[..cut], &body[cut..]]);
            assert_eq!(out[0].as_deref(), Some(&b""[..]), "nothing before the end");
            assert_eq!(last, HeldChunk::AskingUsage);
            assert_eq!(
                out[1].as_deref(),
                Some(
                    &br#"{"model":"gpt-4o-mini","stream":true,"messages":[],"stream_options":{"include_usage":true}}"#[..]
                )
            );
        }
    }

    #[test]
    fn a_body_that_is_not_an_unasked_stream_goes_as_sent() {
        for body in [
            r#"{"model":"gpt-4o-mini","messages":[]}"#,
            r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true}}"#,
            r#"{"model":"gpt-4o-mini","stream":true,"stream_options":"yes"}"#,
            // The provider judges what is not the gateway's to judge.
            "{}",
            r#"{"model":7,"messages":[]}"#,
        ] {
            let mut held = hold(1 << 20);
            let (out, last) = sent(&mut held, &[body]);
            assert_eq!(last, HeldChunk::AsSent, "{body}");
            assert_eq!(out[0].as_deref(), Some(body.as_bytes()));
        }
    }

    #[test]
    fn a_body_the_gateway_cannot_read_is_refused_with_400() {
        let deep = format!(
            r#"{{"model":"m","stream":true,"x":{}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        for body in [
            r#"{"model":"gpt-4o-mini","stream":true"#,
            "not json",
            r#"{"model":"a","model":"b"}"#,
            r#"{"model":"m","stream":true,"stream_options":null,"stream_options":null}"#,
            &deep,
        ] {
            let mut held = hold(1 << 20);
            let mut chunk = Some(Bytes::copy_from_slice(body.as_bytes()));
            let err = held.take(&mut chunk, true).unwrap_err();
            assert_eq!(err.status, 400, "{body}");
        }
    }

    #[test]
    fn completions_endpoints_of_providers_asked_for_their_usage_are_held() {
        let mut openai = Provider::unconfigured(crate::providers::ProviderKind::OpenAi);
        let post = Method::POST;
        for endpoint in [
            "chat/completions",
            "completions",
            "chat/completions/",
            "chat//completions",
            "openai/chat/completions",
            "chat/Completions",
        ] {
            assert!(
                HeldChatBody::applies(&openai, endpoint, &post),
                "{endpoint}"
            );
        }
        for endpoint in ["embeddings", "chat/completions/x", "responses"] {
            assert!(
                !HeldChatBody::applies(&openai, endpoint, &post),
                "{endpoint}"
            );
        }
        assert!(!HeldChatBody::applies(
            &openai,
            "chat/completions",
            &Method::GET
        ));
        openai.stream_usage = StreamUsage::Unasked;
        assert!(!HeldChatBody::applies(&openai, "chat/completions", &post));
        let anthropic = Provider::unconfigured(crate::providers::ProviderKind::Anthropic);
        assert!(!HeldChatBody::applies(&anthropic, "completions", &post));
    }

    #[test]
    fn the_end_may_come_without_a_chunk() {
        let mut held = hold(1 << 20);
        let mut chunk = Some(Bytes::from_static(br#"{"model":"m","stream":true}"#));
        assert_eq!(held.take(&mut chunk, false).unwrap(), HeldChunk::Holding);
        let mut end = None;
        assert_eq!(held.take(&mut end, true).unwrap(), HeldChunk::AskingUsage);
        assert!(end.is_some_and(|b| b.ends_with(br#""include_usage":true}}"#)));
    }

    #[test]
    fn a_body_past_what_the_gateway_may_hold_is_refused_with_503() {
        let mut held = hold(10);
        let mut chunk = Some(Bytes::from_static(b"0123456789"));
        assert!(held.take(&mut chunk, false).is_ok());
        let mut more = Some(Bytes::from_static(b"x"));
        assert_eq!(held.take(&mut more, false).unwrap_err().status, 503);
    }

    #[test]
    fn no_body_is_no_body_upstream_either() {
        let mut held = hold(1 << 20);
        for mut end in [None, Some(Bytes::new())] {
            assert_eq!(held.take(&mut end, true).unwrap(), HeldChunk::AsSent);
            assert!(end.is_none_or(|b| b.is_empty()));
        }
    }

    #[test]
    fn a_restart_forgets_what_an_earlier_attempt_held() {
        let mut held = hold(1 << 20);
        let mut start = Some(Bytes::from_static(br#"{"model":"#));
        assert_eq!(held.take(&mut start, false).unwrap(), HeldChunk::Holding);
        held.restart();
        let body = r#"{"model":"m"}"#;
        let mut chunk = Some(Bytes::from_static(body.as_bytes()));
        assert_eq!(held.take(&mut chunk, true).unwrap(), HeldChunk::AsSent);
        assert_eq!(chunk.as_deref(), Some(body.as_bytes()));
    }
}
