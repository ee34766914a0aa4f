//! The built-in provider types, the wire formats and the auth styles, by name; what
//! each type and format is lives in `kind_facts.rs` and `format_facts.rs`.

use std::fmt;

/// How a provider expects its credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStyle {
    /// `x-api-key: <key>` (Anthropic).
    XApiKey,
    /// `Authorization: Bearer <key>` (OpenAI and most OpenAI-compatible APIs).
    Bearer,
    /// `x-goog-api-key: <key>` (Gemini).
    GoogApiKey,
}

/// The request/response format a provider speaks natively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// OpenAI Chat Completions.
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
}

impl WireFormat {
    /// Every format, in the order error messages list them.
    pub const ALL: [WireFormat; 2] = [WireFormat::OpenAi, WireFormat::Anthropic];

    /// The format's name as written in config.
    pub fn name(self) -> &'static str {
        match self {
            WireFormat::OpenAi => "openai",
            WireFormat::Anthropic => "anthropic",
        }
    }

    /// Parses a format name (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for WireFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A built-in provider type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    Anthropic,
    OpenAi,
    OpenRouter,
    Zai,
    Vllm,
    DeepSeek,
    Groq,
    Xai,
    Gemini,
    Mistral,
    Ollama,
}

impl ProviderKind {
    /// Every built-in type, in the order the environment is scanned.
    pub const ALL: [ProviderKind; 11] = [
        ProviderKind::Anthropic,
        ProviderKind::OpenAi,
        ProviderKind::OpenRouter,
        ProviderKind::Zai,
        ProviderKind::Vllm,
        ProviderKind::DeepSeek,
        ProviderKind::Groq,
        ProviderKind::Xai,
        ProviderKind::Gemini,
        ProviderKind::Mistral,
        ProviderKind::Ollama,
    ];

    /// The type's name as written in config and URLs.
    pub fn name(self) -> &'static str {
        self.facts().name
    }

    /// Parses a type name (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in ProviderKind::ALL {
            assert_eq!(ProviderKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(
            ProviderKind::from_name("OpenAI"),
            Some(ProviderKind::OpenAi)
        );
        assert_eq!(ProviderKind::from_name("nope"), None);
    }

    #[test]
    fn auth_styles_follow_the_provider() {
        assert_eq!(
            ProviderKind::Anthropic.facts().auth_style,
            AuthStyle::XApiKey
        );
        assert_eq!(
            ProviderKind::Gemini.facts().auth_style,
            AuthStyle::GoogApiKey
        );
        assert_eq!(ProviderKind::Groq.facts().auth_style, AuthStyle::Bearer);
    }

    #[test]
    fn wire_format_names_round_trip() {
        for format in WireFormat::ALL {
            assert_eq!(WireFormat::from_name(format.name()), Some(format));
        }
        assert_eq!(
            WireFormat::from_name("Anthropic"),
            Some(WireFormat::Anthropic)
        );
        assert_eq!(WireFormat::from_name("gemini"), None);
    }

    #[test]
    fn self_hosted_types_need_no_key() {
        assert!(!ProviderKind::Vllm.facts().requires_key);
        assert!(!ProviderKind::Ollama.facts().requires_key);
        assert!(ProviderKind::OpenAi.facts().requires_key);
    }
}
