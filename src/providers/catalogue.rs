//! The configured provider instances, looked up by instance name or type.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::{AuthStyle, BaseUrl, ProviderCredential, ProviderKind, TlsRoots, WireFormat};

/// Upstream timeouts of one provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect (and, doubled, connect plus TLS handshake).
    pub connect: Duration,
    /// Longest wait for the next bytes from the upstream; LLMs can think for minutes.
    pub read: Duration,
    /// Longest wait to write to the upstream.
    pub write: Duration,
    /// How long an unused pooled connection is kept.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            read: Duration::from_secs(600),
            write: Duration::from_secs(60),
            idle: Duration::from_secs(90),
        }
    }
}

/// One provider instance, ready for the request path.
#[derive(Debug)]
pub struct Provider {
    /// Instance name (`anthropic`, `openai-east`).
    pub name: String,
    /// Built-in type.
    pub kind: ProviderKind,
    /// Where requests go.
    pub base: BaseUrl,
    /// How requests authenticate upstream: no key, the gateway's keys, or the caller's.
    pub credential: ProviderCredential,
    /// The environment variable that sets the key, for error messages.
    pub key_env: String,
    /// Extra headers sent upstream on every request.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Upstream timeouts.
    pub timeouts: Timeouts,
    /// System roots plus `ca_file`, when a CA file is configured.
    pub tls_roots: Option<TlsRoots>,
    /// False for a built-in type nobody configured (known, so errors can say how to set it up).
    pub configured: bool,
    /// Model ids this instance serves, as configured; empty when not listed.
    pub models: Vec<String>,
    /// The request format the instance speaks (the type's own unless overridden).
    pub format: WireFormat,
}

impl Provider {
    /// A provider of `kind` with built-in defaults and no credential.
    pub fn unconfigured(kind: ProviderKind) -> Self {
        let base =
            BaseUrl::parse(kind.default_base_url()).unwrap_or_else(|_| unreachable_base_url(kind));
        Self {
            name: kind.name().to_string(),
            kind,
            base,
            credential: ProviderCredential::None,
            key_env: format!("{}_API_KEY", super::env_prefix(kind.name())),
            headers: Vec::new(),
            timeouts: Timeouts::default(),
            tls_roots: None,
            configured: false,
            models: Vec::new(),
            format: kind.wire_format(),
        }
    }

    /// How the credential is sent: Anthropic-format endpoints (of any vendor) take
    /// `x-api-key`, the rest follow their type.
    pub fn auth_style(&self) -> AuthStyle {
        match self.format {
            WireFormat::Anthropic => AuthStyle::XApiKey,
            WireFormat::OpenAi => self.kind.auth_style(),
        }
    }

    /// Whether requests need a key this provider does not have. A `!PASSTHRU`
    /// provider is never missing one: each caller brings its own.
    pub fn missing_key(&self) -> bool {
        self.kind.requires_key() && matches!(self.credential, ProviderCredential::None)
    }
}

// The built-in URLs are constants checked by a unit test; this keeps the constructor
// total without a panic path.
fn unreachable_base_url(kind: ProviderKind) -> BaseUrl {
    BaseUrl {
        tls: true,
        host: format!("{}.invalid", kind.name()),
        port: 443,
        path: String::new(),
    }
}

/// All providers a config knows.
#[derive(Debug, Default)]
pub struct ProviderCatalogue {
    configured: BTreeMap<String, Arc<Provider>>,
    builtin: BTreeMap<&'static str, Arc<Provider>>,
}

impl ProviderCatalogue {
    /// Builds the catalogue from configured instances; every built-in type not
    /// configured under its own name stays known as an unconfigured provider.
    pub fn new(providers: Vec<Provider>) -> Self {
        let configured: BTreeMap<String, Arc<Provider>> = providers
            .into_iter()
            .map(|p| (p.name.clone(), Arc::new(p)))
            .collect();
        let builtin = ProviderKind::ALL
            .into_iter()
            .map(|k| (k.name(), Arc::new(Provider::unconfigured(k))))
            .collect();
        Self {
            configured,
            builtin,
        }
    }

    /// Finds a provider by instance name, else by type (the first configured instance of
    /// that type by name), else the unconfigured built-in type.
    pub fn find(&self, name: &str) -> Option<&Arc<Provider>> {
        if let Some(p) = self.configured.get(name) {
            return Some(p);
        }
        let kind = ProviderKind::from_name(name)?;
        self.configured
            .values()
            .find(|p| p.kind == kind)
            .or_else(|| self.builtin.get(kind.name()))
    }

    /// The configured instance called `name`: an exact match first, else one whose name
    /// differs only in ASCII case. Types and unconfigured built-ins are not considered.
    pub fn configured_named(&self, name: &str) -> Option<&Arc<Provider>> {
        self.configured.get(name).or_else(|| {
            self.configured
                .values()
                .find(|p| p.name.eq_ignore_ascii_case(name))
        })
    }

    /// The configured instance that serves `kind` by default: the one named like the type
    /// when it has that type, else the first instance of the type by name.
    pub fn preferred_of_kind(&self, kind: ProviderKind) -> Option<&Arc<Provider>> {
        self.configured
            .get(kind.name())
            .filter(|p| p.kind == kind)
            .or_else(|| self.configured.values().find(|p| p.kind == kind))
    }

    /// Configured instances in name order.
    pub fn configured(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.configured.values()
    }

    /// Number of configured instances.
    pub fn len(&self) -> usize {
        self.configured.len()
    }

    /// Whether no provider is configured.
    pub fn is_empty(&self) -> bool {
        self.configured.is_empty()
    }
}

/// Splits `provider/model` or `provider:model` at the first `/` or `:`, whichever comes
/// first. `None` when the name has neither. Either side may be empty; callers decide
/// whether that is an error, because a bare model id may itself contain a `/`.
pub fn split_model_prefix(name: &str) -> Option<(&str, &str)> {
    let at = name.find(['/', ':'])?;
    Some((&name[..at], &name[at + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Secret;

    fn provider(name: &str, kind: ProviderKind) -> Provider {
        Provider {
            name: name.to_string(),
            credential: ProviderCredential::single(Secret::new("k")),
            configured: true,
            ..Provider::unconfigured(kind)
        }
    }

    #[test]
    fn builtin_base_urls_parse() {
        for kind in ProviderKind::ALL {
            assert!(BaseUrl::parse(kind.default_base_url()).is_ok(), "{kind}");
        }
    }

    #[test]
    fn finds_by_instance_name_then_type() {
        let c = ProviderCatalogue::new(vec![provider("openai-east", ProviderKind::OpenAi)]);
        assert_eq!(c.find("openai-east").unwrap().name, "openai-east");
        assert_eq!(c.find("openai").unwrap().name, "openai-east");
        assert!(c.find("openai").unwrap().configured);
    }

    #[test]
    fn configured_named_ignores_case_but_prefers_exact() {
        let c = ProviderCatalogue::new(vec![
            provider("Groq", ProviderKind::Groq),
            provider("groq", ProviderKind::OpenAi),
        ]);
        assert_eq!(
            c.configured_named("groq").unwrap().kind,
            ProviderKind::OpenAi
        );
        assert_eq!(c.configured_named("GROQ").unwrap().name, "Groq");
        assert!(c.configured_named("openai").is_none());
    }

    #[test]
    fn preferred_of_kind_wants_the_type_name_with_the_type() {
        let c = ProviderCatalogue::new(vec![
            provider("anthropic", ProviderKind::Vllm),
            provider("b-claude", ProviderKind::Anthropic),
            provider("a-claude", ProviderKind::Anthropic),
        ]);
        let p = c.preferred_of_kind(ProviderKind::Anthropic).unwrap();
        assert_eq!(p.name, "a-claude");
        let c = ProviderCatalogue::new(vec![
            provider("a-claude", ProviderKind::Anthropic),
            provider("anthropic", ProviderKind::Anthropic),
        ]);
        let p = c.preferred_of_kind(ProviderKind::Anthropic).unwrap();
        assert_eq!(p.name, "anthropic");
        assert!(c.preferred_of_kind(ProviderKind::Gemini).is_none());
    }

    #[test]
    fn model_prefix_splits_at_the_first_separator() {
        assert_eq!(
            split_model_prefix("openrouter/google/gemini-2.5"),
            Some(("openrouter", "google/gemini-2.5"))
        );
        assert_eq!(
            split_model_prefix("groq:llama:8b"),
            Some(("groq", "llama:8b"))
        );
        assert_eq!(split_model_prefix("a:b/c"), Some(("a", "b/c")));
        assert_eq!(split_model_prefix("::x"), Some(("", ":x")));
        assert_eq!(split_model_prefix("gpt-4o"), None);
    }

    #[test]
    fn unconfigured_builtin_is_known_without_key() {
        let c = ProviderCatalogue::new(vec![]);
        let p = c.find("anthropic").unwrap();
        assert!(!p.configured);
        assert!(p.missing_key());
        assert_eq!(p.key_env, "ANTHROPIC_API_KEY");
        assert!(c.find("unknown").is_none());
    }

    #[test]
    fn passthru_provider_is_not_missing_a_key() {
        let p = Provider {
            credential: ProviderCredential::Passthru,
            ..Provider::unconfigured(ProviderKind::OpenAi)
        };
        assert!(!p.missing_key());
    }
}
