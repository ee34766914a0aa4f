//! What each wire format asks of an upstream request, whichever vendor serves it: an
//! Anthropic-format endpoint takes `x-api-key` and `anthropic-version` even when a
//! vLLM server stands behind it. Asked through [`WireFormat::facts`].

use super::kind::{AuthStyle, WireFormat};

/// The `anthropic-version` the gateway speaks when the client names none.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The fixed facts of one wire format.
#[derive(Debug, PartialEq, Eq)]
pub struct FormatFacts {
    /// The API's name in messages to people.
    pub api_name: &'static str,
    /// The prefix of the request headers that belong to this API family
    /// (`anthropic-beta`, `openai-organization`).
    pub header_prefix: &'static str,
    /// How every endpoint of this format takes its credential, whatever its vendor's
    /// own style; `None`: the vendor's.
    pub auth_style: Option<AuthStyle>,
    /// Headers sent upstream unless the client sent its own.
    pub default_headers: &'static [(&'static str, &'static str)],
}

const OPENAI: FormatFacts = FormatFacts {
    api_name: "OpenAI",
    header_prefix: "openai-",
    auth_style: None,
    default_headers: &[],
};

const ANTHROPIC: FormatFacts = FormatFacts {
    api_name: "Anthropic",
    header_prefix: "anthropic-",
    auth_style: Some(AuthStyle::XApiKey),
    // The Messages API refuses a request without it.
    default_headers: &[("anthropic-version", ANTHROPIC_VERSION)],
};

impl WireFormat {
    /// The format's entry in the table: a static, so asking costs nothing.
    pub fn facts(self) -> &'static FormatFacts {
        match self {
            WireFormat::OpenAi => &OPENAI,
            WireFormat::Anthropic => &ANTHROPIC,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_endpoints_take_x_api_key_and_a_version_whoever_serves_them() {
        let f = WireFormat::Anthropic.facts();
        assert_eq!(f.auth_style, Some(AuthStyle::XApiKey));
        assert_eq!(f.default_headers, &[("anthropic-version", "2023-06-01")]);
        assert_eq!(f.api_name, "Anthropic");
        assert_eq!(f.header_prefix, "anthropic-");
    }

    #[test]
    fn openai_endpoints_follow_their_vendor() {
        let f = WireFormat::OpenAi.facts();
        assert_eq!(f.auth_style, None);
        assert!(f.default_headers.is_empty());
        assert_eq!(f.api_name, "OpenAI");
        assert_eq!(f.header_prefix, "openai-");
    }

    #[test]
    fn each_format_owns_its_header_prefix_and_its_name() {
        for format in WireFormat::ALL {
            let prefix = format.facts().header_prefix;
            assert_eq!(prefix, format!("{}-", format.name()));
        }
    }
}
