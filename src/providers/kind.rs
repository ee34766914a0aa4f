//! The built-in provider types: where they live, how they authenticate, which wire
//! format they speak.

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
        match self {
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::OpenAi => "openai",
            ProviderKind::OpenRouter => "openrouter",
            ProviderKind::Zai => "zai",
            ProviderKind::Vllm => "vllm",
            ProviderKind::DeepSeek => "deepseek",
            ProviderKind::Groq => "groq",
            ProviderKind::Xai => "xai",
            ProviderKind::Gemini => "gemini",
            ProviderKind::Mistral => "mistral",
            ProviderKind::Ollama => "ollama",
        }
    }

    /// Parses a type name (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name))
    }

    /// The public base URL used when config gives none.
    pub fn default_base_url(self) -> &'static str {
        match self {
            ProviderKind::Anthropic => "https://api.anthropic.com/v1",
            ProviderKind::OpenAi => "https://api.openai.com/v1",
            ProviderKind::OpenRouter => "https://openrouter.ai/api/v1",
            ProviderKind::Zai => "https://api.z.ai/api/paas/v4",
            ProviderKind::Vllm => "http://localhost:8000/v1",
            ProviderKind::DeepSeek => "https://api.deepseek.com/v1",
            ProviderKind::Groq => "https://api.groq.com/openai/v1",
            ProviderKind::Xai => "https://api.x.ai/v1",
            ProviderKind::Gemini => "https://generativelanguage.googleapis.com/v1beta/openai",
            ProviderKind::Mistral => "https://api.mistral.ai/v1",
            ProviderKind::Ollama => "http://localhost:11434/v1",
        }
    }

    /// How the credential is sent upstream.
    pub fn auth_style(self) -> AuthStyle {
        match self {
            ProviderKind::Anthropic => AuthStyle::XApiKey,
            ProviderKind::Gemini => AuthStyle::GoogApiKey,
            _ => AuthStyle::Bearer,
        }
    }

    /// Whether requests are pointless without a credential. Self-hosted servers
    /// (vLLM, Ollama) usually run without one.
    pub fn requires_key(self) -> bool {
        !matches!(self, ProviderKind::Vllm | ProviderKind::Ollama)
    }

    /// Whether the type serves the OpenAI Responses API (`/responses`) itself.
    pub fn serves_responses_api(self) -> bool {
        matches!(self, ProviderKind::OpenAi | ProviderKind::Xai)
    }

    /// The native wire format.
    pub fn wire_format(self) -> WireFormat {
        match self {
            ProviderKind::Anthropic => WireFormat::Anthropic,
            _ => WireFormat::OpenAi,
        }
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
        assert_eq!(ProviderKind::Anthropic.auth_style(), AuthStyle::XApiKey);
        assert_eq!(ProviderKind::Gemini.auth_style(), AuthStyle::GoogApiKey);
        assert_eq!(ProviderKind::Groq.auth_style(), AuthStyle::Bearer);
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
        assert!(!ProviderKind::Vllm.requires_key());
        assert!(!ProviderKind::Ollama.requires_key());
        assert!(ProviderKind::OpenAi.requires_key());
    }
}
