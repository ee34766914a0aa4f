//! The configured provider instances, looked up by instance name or type.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::{
    AuthStyle, BaseUrl, ModelTraits, ProviderCredential, ProviderKind, TlsRoots, WireFormat,
};

/// Upstream timeouts of one provider (or of one model, see
/// [`crate::config::ModelTimeouts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timeouts {
    /// TCP connect (and, doubled, connect plus TLS handshake).
    pub connect: Duration,
    /// From the request sent to the first byte of the answer; LLMs can think for
    /// minutes before a whole (not streamed) answer starts.
    pub first_byte: Duration,
    /// Longest silence between two pieces of an answer once it has started.
    pub idle: Duration,
    /// A whole (not streamed) answer, from the request sent to its last byte.
    pub total: Duration,
    /// Longest wait to write to the upstream.
    pub write: Duration,
    /// How long an unused pooled connection is kept.
    pub keepalive: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(600),
            idle: Duration::from_secs(600),
            total: Duration::from_secs(600),
            write: Duration::from_secs(60),
            keepalive: Duration::from_secs(90),
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
    /// The connection-pool group of those roots (0: the system roots).
    pub tls_roots_group: u64,
    /// False for a built-in type nobody configured (known, so errors can say how to set it up).
    pub configured: bool,
    /// Model ids this instance serves, as configured; empty when not listed.
    pub models: Vec<String>,
    /// What this instance's configuration says about some of its models.
    pub model_traits: BTreeMap<String, ModelTraits>,
    /// The request format the instance speaks (the type's own unless overridden).
    pub format: WireFormat,
    /// How its Chat streams report their usage (the type's own unless overridden).
    pub stream_usage: crate::translate::StreamUsage,
    /// Its own retry policy, when `providers.<name>.retry` sets one.
    pub retry: Option<crate::config::RetryPolicy>,
    /// Its share of a model's traffic among the instances serving that model.
    pub weight: u32,
    /// It refuses a thinking block it did not sign (Anthropic's own API does; other
    /// Anthropic-compatible ones take unsigned thinking back).
    pub checks_thinking_signatures: bool,
}

/// Whether a provider of `kind` at `base` checks thinking signatures when its
/// configuration does not say: only Anthropic's own API is known to.
pub fn checks_thinking_signatures(kind: ProviderKind, base: &BaseUrl) -> bool {
    let host = base.host.trim_end_matches('.');
    kind == ProviderKind::Anthropic && (host == "anthropic.com" || host.ends_with(".anthropic.com"))
}

impl Provider {
    /// A provider of `kind` with built-in defaults and no credential.
    pub fn unconfigured(kind: ProviderKind) -> Self {
        let base = BaseUrl::parse(kind.facts().default_base_url)
            .unwrap_or_else(|_| unreachable_base_url(kind));
        let checks_thinking_signatures = checks_thinking_signatures(kind, &base);
        Self {
            name: kind.name().to_string(),
            kind,
            base,
            credential: ProviderCredential::None,
            key_env: format!("{}_API_KEY", super::env_prefix(kind.name())),
            headers: Vec::new(),
            timeouts: Timeouts::default(),
            tls_roots: None,
            tls_roots_group: 0,
            configured: false,
            models: Vec::new(),
            model_traits: BTreeMap::new(),
            format: kind.facts().wire_format,
            stream_usage: kind.facts().stream_usage,
            retry: None,
            weight: 1,
            checks_thinking_signatures,
        }
    }

    /// The path the gateway's own calls to it start with (`/v1` model calls, the model
    /// list): its base path, or for a base URL that names a host alone, where its
    /// type serves the API the gateway speaks there (Gemini's OpenAI-compatible one at
    /// `/v1beta/openai`, so one instance at Google's root serves `/p/` and `/v1`).
    pub fn api_path(&self) -> &str {
        if self.base.path.is_empty() {
            self.kind.facts().api_path_at_root
        } else {
            &self.base.path
        }
    }

    /// How the credential is sent: as its format demands (Anthropic-format endpoints of
    /// any vendor take `x-api-key`), else in its type's style.
    pub fn auth_style(&self) -> AuthStyle {
        self.format
            .facts()
            .auth_style
            .unwrap_or(self.kind.facts().auth_style)
    }

    /// Whether requests need a key this provider does not have. A `!PASSTHRU`
    /// provider is never missing one: each caller brings its own.
    pub fn missing_key(&self) -> bool {
        self.kind.facts().requires_key && matches!(self.credential, ProviderCredential::None)
    }
}

// The built-in URLs are constants checked by a unit test; this keeps the constructor
// total without a panic path.
fn unreachable_base_url(kind: ProviderKind) -> BaseUrl {
    BaseUrl::new(true, format!("{}.invalid", kind.name()), 443, String::new())
}

/// The configured providers. Only these are ever reachable: a built-in type nobody
/// configured is known by name (so errors can say how to configure it) and nothing more.
#[derive(Debug, Default)]
pub struct ProviderCatalogue {
    configured: BTreeMap<String, Arc<Provider>>,
}

impl ProviderCatalogue {
    /// Builds the catalogue from configured instances.
    pub fn new(providers: Vec<Provider>) -> Self {
        let configured = providers
            .into_iter()
            .map(|p| (p.name.clone(), Arc::new(p)))
            .collect();
        Self { configured }
    }

    /// Finds a configured provider by instance name, else by type (the first configured
    /// instance of that type by name). A built-in type nobody configured is `None`.
    pub fn find(&self, name: &str) -> Option<&Arc<Provider>> {
        if let Some(p) = self.configured.get(name) {
            return Some(p);
        }
        let kind = ProviderKind::from_name(name)?;
        self.configured.values().find(|p| p.kind == kind)
    }

    /// The built-in type `name` names when no configured provider answers to it: the
    /// case where an error should say how to configure it rather than call it unknown.
    pub fn unconfigured_type(&self, name: &str) -> Option<ProviderKind> {
        ProviderKind::from_name(name).filter(|_| self.find(name).is_none())
    }

    /// Whether `name` is a configured instance or a built-in type, configured or not
    /// (what a list of provider names in the config may hold).
    pub fn knows(&self, name: &str) -> bool {
        self.find(name).is_some() || ProviderKind::from_name(name).is_some()
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

/// How to make built-in type `kind` reachable: its environment variable (the key for a
/// type that needs one, else the base URL) or a `providers:` entry.
pub fn how_to_configure(kind: ProviderKind) -> String {
    let prefix = super::env_prefix(kind.name());
    let variable = if kind.facts().requires_key {
        format!("{prefix}_API_KEY")
    } else {
        format!("{prefix}_BASE_URL")
    };
    format!("set {variable} on the gateway or add `{kind}` under `providers:` in the config")
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
            assert!(
                BaseUrl::parse(kind.facts().default_base_url).is_ok(),
                "{kind}"
            );
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
    fn unconfigured_builtin_is_never_found_only_known() {
        let c = ProviderCatalogue::new(vec![provider("openai-east", ProviderKind::OpenAi)]);
        for name in ["vllm", "anthropic", "Ollama"] {
            assert!(c.find(name).is_none(), "{name}");
            assert!(c.knows(name), "{name}");
        }
        assert_eq!(c.unconfigured_type("vllm"), Some(ProviderKind::Vllm));
        assert_eq!(
            c.unconfigured_type("ANTHROPIC"),
            Some(ProviderKind::Anthropic)
        );
        // A type served by an instance of another name is configured.
        assert_eq!(c.unconfigured_type("openai"), None);
        assert!(c.knows("openai-east"));
        assert!(c.find("unknown").is_none());
        assert!(!c.knows("unknown"));
        assert_eq!(c.unconfigured_type("unknown"), None);
    }

    #[test]
    fn how_to_configure_names_the_key_or_the_base_url_variable() {
        let anthropic = how_to_configure(ProviderKind::Anthropic);
        assert!(anthropic.contains("ANTHROPIC_API_KEY"), "{anthropic}");
        assert!(anthropic.contains("`providers:`"), "{anthropic}");
        let vllm = how_to_configure(ProviderKind::Vllm);
        assert!(vllm.contains("VLLM_BASE_URL"), "{vllm}");
    }

    #[test]
    fn caller_key_provider_is_not_missing_a_key() {
        let p = Provider {
            credential: ProviderCredential::CallerKey,
            ..Provider::unconfigured(ProviderKind::OpenAi)
        };
        assert!(!p.missing_key());
    }
}
