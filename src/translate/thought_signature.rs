//! Gemini's thought signature on a tool call (its OpenAI-compatible API puts it in
//! `extra_content.google.thought_signature`), which Gemini 3 must get back with the
//! call on the next turn. An Anthropic-format client keeps it as the `signature` of a
//! thinking block before the call, the one place Anthropic's format has for opaque
//! reasoning state, and the gateway hands it back from there.
//!
//! Such a block may as well hold another model's signature: a conversation begun on
//! Claude that goes on to Gemini has Claude's in its thinking blocks, which Gemini
//! refuses as corrupted (400). So the gateway tags Gemini's as it carries them, and
//! gives Gemini back only a tagged one.

use std::borrow::Cow;

use serde::Deserialize;

/// A tool call's `extra_content`, as far as the signature.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ExtraContent<'a> {
    #[serde(borrow, default)]
    google: Option<GoogleExtra<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct GoogleExtra<'a> {
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::translate::borrowed_text::optional"
    )]
    thought_signature: Option<Cow<'a, str>>,
}

impl ExtraContent<'_> {
    /// The thought signature, if one is given.
    pub(crate) fn thought_signature(&self) -> Option<&str> {
        self.google
            .as_ref()?
            .thought_signature
            .as_deref()
            .filter(|s| !s.is_empty())
    }
}

/// What goes before Gemini's signature in a thinking block. Signatures are base64,
/// which has no `:`, so no other model's starts with it.
pub(crate) const GEMINIS_TAG: &str = "gemini:";

/// Gemini's thought signature as a thinking block's `signature` carries it.
pub(crate) fn tagged(geminis_signature: &str) -> String {
    format!("{GEMINIS_TAG}{geminis_signature}")
}

/// The thought signature Gemini made, out of a thinking block's `signature`, or
/// `None` for another model's. One carried before the tag was is `None` too: it
/// cannot be told from Claude's, and Gemini takes the stand-in in its place.
pub(crate) fn geminis_own(thinking_signature: &str) -> Option<&str> {
    thinking_signature
        .strip_prefix(GEMINIS_TAG)
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_read_from_googles_member() {
        let extra: ExtraContent<'_> =
            serde_json::from_str(r#"{"google":{"thought_signature":"CiQB"}}"#).unwrap();
        assert_eq!(extra.thought_signature(), Some("CiQB"));
        let other: ExtraContent<'_> = serde_json::from_str(r#"{"other":1}"#).unwrap();
        assert_eq!(other.thought_signature(), None);
    }

    #[test]
    fn only_a_signature_the_gateway_tagged_reads_as_geminis_own() {
        assert_eq!(geminis_own(&tagged("CiQBsig")), Some("CiQBsig"));
        assert_eq!(geminis_own("EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgx"), None);
        assert_eq!(geminis_own("CiQBsig"), None);
        assert_eq!(geminis_own(GEMINIS_TAG), None);
    }
}
