//! Gemini's thought signature on a tool call (its OpenAI-compatible API puts it in
//! `extra_content.google.thought_signature`), which Gemini 3 must get back with the
//! call on the next turn. An Anthropic-format client keeps it as the `signature` of a
//! thinking block before the call, the one place Anthropic's format has for opaque
//! reasoning state, and the gateway hands it back from there.

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
}
