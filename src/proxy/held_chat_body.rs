//! A `/p/` Chat Completions body on its way to a provider that reports a stream's
//! usage only when asked (OpenAI and most OpenAI-format servers). Sent as it came, such
//! a stream reports nothing, and a key held to tokens or a budget could stream through
//! `/p/` uncounted. So the body is read whole before it goes upstream, as a `/v1` body
//! is, and sent on asking for the usage when it is a stream that did not ask (every
//! other byte as the client wrote it); the usage-only chunk that then ends the answer
//! is kept from the client.

use bytes::Bytes;
use http::Method;

use crate::providers::{Provider, WireFormat};
use crate::translate::StreamUsage;

use super::model_field::usage_asking_body;
use super::GatewayError;

/// The last segment of the endpoints whose streams are asked for their usage: Chat
/// Completions (`chat/completions`, below any prefix) and the legacy `completions`.
const COMPLETIONS: &str = "completions";

/// Why a `/p/` body is read whole before it goes upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldBody {
    /// A Chat Completions stream is asked for its usage ([`applies`]).
    AskingUsage,
    /// A model call of a caller held to tokens or a budget: the input of a stream it
    /// leaves before its usage came is estimated from the body, not taken as none.
    ForInputEstimate,
}

/// Whether the body of a `method` call to `endpoint` at `provider` is held: a `POST`
/// to a completions endpoint of an OpenAI-format provider that is asked for a
/// stream's usage (`providers.<name>.ask_stream_usage`). Empty segments are skipped
/// (`chat//completions/`) and case ignored, as some servers do.
pub fn applies(provider: &Provider, endpoint: &str, method: &Method) -> bool {
    *method == Method::POST
        && provider.format == WireFormat::OpenAi
        && provider.stream_usage == StreamUsage::OnRequest
        && endpoint
            .rsplit('/')
            .find(|s| !s.is_empty())
            .is_some_and(|last| last.eq_ignore_ascii_case(COMPLETIONS))
}

/// What goes upstream for the whole `body`, and whether the gateway asked for the
/// stream's usage in it: the body asking for it when it is a stream that did not,
/// else the body as sent. A body the gateway cannot read is refused with 400, as on
/// `/v1` ([`usage_asking_body`] says what it refuses): sent on unread, a stream in
/// it could go uncounted. No body at all goes as it is, for the provider to refuse.
pub fn asking_usage(body: Bytes) -> Result<(Bytes, bool), GatewayError> {
    if body.is_empty() {
        return Ok((body, false));
    }
    Ok(match usage_asking_body(&body)? {
        Some(asking) => (Bytes::from(asking), true),
        None => (body, false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_that_did_not_ask_asks_for_its_usage() {
        let body = r#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#;
        let (sent, asked) = asking_usage(Bytes::from_static(body.as_bytes())).unwrap();
        assert!(asked);
        assert_eq!(
            sent,
            &br#"{"model":"gpt-4o-mini","stream":true,"messages":[],"stream_options":{"include_usage":true}}"#[..]
        );
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
            "",
        ] {
            let (sent, asked) = asking_usage(Bytes::from_static(body.as_bytes())).unwrap();
            assert!(!asked, "{body}");
            assert_eq!(sent, body.as_bytes());
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
            let err = asking_usage(Bytes::copy_from_slice(body.as_bytes())).unwrap_err();
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
            assert!(applies(&openai, endpoint, &post), "{endpoint}");
        }
        for endpoint in ["embeddings", "chat/completions/x", "responses"] {
            assert!(!applies(&openai, endpoint, &post), "{endpoint}");
        }
        assert!(!applies(&openai, "chat/completions", &Method::GET));
        openai.stream_usage = StreamUsage::Unasked;
        assert!(!applies(&openai, "chat/completions", &post));
        let anthropic = Provider::unconfigured(crate::providers::ProviderKind::Anthropic);
        assert!(!applies(&anthropic, "completions", &post));
    }
}
