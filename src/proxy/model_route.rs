//! Which provider instance serves a requested model, and under which upstream name.
//!
//! Pure: the answer depends on the model string and the configuration only, so the
//! same request always lands on the same provider.

use std::sync::Arc;

use super::GatewayError;
use crate::config::Config;
use crate::providers::{ModelAfterPrefixError, ModelRef, Provider, ProviderKind};

/// Where a request for a model goes.
#[derive(Debug, Clone)]
pub struct ModelRoute {
    /// The configured provider instance.
    pub provider: Arc<Provider>,
    /// The model name sent upstream (without any provider prefix).
    pub model: String,
}

/// Routes `requested` to a configured provider. In order: an explicit
/// `provider/model` or `provider:model` whose prefix is a configured instance name; an
/// alias from `models.aliases`; a provider whose `models:` list holds the name; the
/// provider of the model's family (`claude-*` → anthropic, …). A prefix naming a
/// built-in type nobody configured is a 404 that says how to configure it; anything
/// else is a 400 on `model` that says how to make the name routable.
pub fn route_model(requested: &str, config: &Config) -> Result<ModelRoute, GatewayError> {
    if requested.trim().is_empty() {
        return Err(model_error(
            "model must not be empty: name one as `provider/model` or use an alias from `models.aliases`",
        ));
    }
    if let Some(route) = explicit(requested, config)? {
        return Ok(route);
    }
    if let Some(target) = config.models.aliases.get(requested) {
        // Targets are checked at load time; a miss here means the config was built by hand.
        return explicit(target, config)?.ok_or_else(|| {
            model_error(format!(
                "alias `{requested}` points to `{target}`, which names no configured provider; fix `models.aliases`",
                requested = shown_model(requested)
            ))
        });
    }
    if let Some(provider) = config
        .providers
        .configured()
        .find(|p| p.models.iter().any(|m| m == requested))
    {
        return Ok(ModelRoute {
            provider: Arc::clone(provider),
            model: requested.to_string(),
        });
    }
    if let Some(prefix) = ModelRef::parse(requested).prefix() {
        if config.providers.unconfigured_type(prefix).is_some() {
            return Err(
                GatewayError::provider_not_found(prefix, &config.providers).with_param("model")
            );
        }
    }
    let family = ProviderKind::of_model_family(requested);
    if let Some(provider) = family.and_then(|k| config.providers.preferred_of_kind(k)) {
        return Ok(ModelRoute {
            provider: Arc::clone(provider),
            model: requested.to_string(),
        });
    }
    Err(unsupported(requested, family, config))
}

/// Every instance that may serve `requested`, the one [`route_model`] picks first: a
/// bare model name that several instances list (`models:`) is served by all of them,
/// which share its traffic by weight; any other name has one route.
pub fn route_pool(requested: &str, config: &Config) -> Result<Vec<ModelRoute>, GatewayError> {
    let first = route_model(requested, config)?;
    let listed = explicit(requested, config)?.is_none()
        && !config.models.aliases.contains_key(requested)
        && first.provider.models.iter().any(|m| m == requested);
    if !listed {
        return Ok(vec![first]);
    }
    Ok(config
        .providers
        .configured()
        .filter(|p| p.models.iter().any(|m| m == requested))
        .map(|p| ModelRoute {
            provider: Arc::clone(p),
            model: requested.to_string(),
        })
        .collect())
}

/// Step 1: `provider/model` with a configured prefix. `Ok(None)` when the name has no
/// prefix or its prefix is no configured instance: such a name may still be a bare id
/// (`meta-llama/Llama-3`) that a later step knows.
fn explicit(requested: &str, config: &Config) -> Result<Option<ModelRoute>, GatewayError> {
    let name = ModelRef::parse(requested);
    let Some(prefix) = name.prefix() else {
        return Ok(None);
    };
    if prefix.is_empty() {
        return Err(model_error(format!(
            "model `{requested}` has an empty provider prefix: write `provider/model` with one of the configured providers ({})",
            configured_names(config),
            requested = shown_model(requested)
        )));
    }
    let Some(provider) = config.providers.configured_named(prefix) else {
        return Ok(None);
    };
    match name.model_after_prefix() {
        Some(Ok(model)) => Ok(Some(ModelRoute {
            provider: Arc::clone(provider),
            model: model.to_string(),
        })),
        Some(Err(ModelAfterPrefixError::DoubledSeparator)) => Err(model_error(format!(
            "model `{requested}` has a doubled separator after provider `{}`: write `{}/<model>`",
            provider.name,
            provider.name,
            requested = shown_model(requested)
        ))),
        // A prefixed name always has a part after the prefix; `None` cannot happen.
        Some(Err(ModelAfterPrefixError::Missing)) | None => Err(model_error(format!(
            "model `{requested}` names provider `{}` but no model after it: write `{}/<model>`",
            provider.name,
            provider.name,
            requested = shown_model(requested)
        ))),
    }
}

fn unsupported(requested: &str, family: Option<ProviderKind>, config: &Config) -> GatewayError {
    let why = match family {
        Some(kind) => {
            format!("it looks like a {kind} model, but no provider of type `{kind}` is configured")
        }
        None => {
            "no configured provider lists it and its name matches no known model family".to_string()
        }
    };
    model_error(format!(
        "unsupported model `{requested}`: {why}; prefix it with a configured provider as `provider/{requested}` (configured: {}) or add an alias under `models.aliases`",
        configured_names(config),
        requested = shown_model(requested)
    ))
}

/// A client's model name as an error quotes it: cut short, since a name can be as long
/// as a request may be, and the answer would carry it back twice.
fn shown_model(requested: &str) -> std::borrow::Cow<'_, str> {
    crate::logging::clipped(requested, 256)
}

fn configured_names(config: &Config) -> String {
    let names: Vec<&str> = config
        .providers
        .configured()
        .map(|p| p.name.as_str())
        .collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

fn model_error(message: impl Into<String>) -> GatewayError {
    GatewayError::invalid_request(message).with_param("model")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{build_config, EnvSnapshot};

    const PROVIDERS: &str = "
providers:
  anthropic: {api_key: k}
  openai: {api_key: k}
  openrouter: {api_key: k}
  groq: {api_key: k, models: [llama-3.1-8b, meta-llama/Llama-3]}
  z-gemini: {type: gemini, api_key: k}
  a-gemini: {type: gemini, api_key: k}
  deepseek: {type: vllm}
  b-deepseek: {type: deepseek, api_key: k}
";

    fn config(extra: &str) -> Config {
        let yaml = format!("{PROVIDERS}{extra}");
        build_config(Some(&yaml), None, &EnvSnapshot::loopback()).unwrap()
    }

    fn route(requested: &str) -> Result<(String, String), GatewayError> {
        route_in(&config(""), requested)
    }

    fn route_in(config: &Config, requested: &str) -> Result<(String, String), GatewayError> {
        route_model(requested, config).map(|r| (r.provider.name.clone(), r.model))
    }

    fn pair(provider: &str, model: &str) -> (String, String) {
        (provider.to_string(), model.to_string())
    }

    fn error(requested: &str) -> GatewayError {
        let e = route(requested).unwrap_err();
        assert_eq!(e.status, 400, "{e}");
        assert_eq!(e.kind.openai_type(), "invalid_request_error");
        assert_eq!(e.param.as_deref(), Some("model"));
        e
    }

    #[test]
    fn a_model_several_instances_list_is_served_by_all_of_them() {
        let c = config("  groq-2: {type: groq, api_key: k, models: [llama-3.1-8b]}\n");
        let names = |requested: &str| -> Vec<String> {
            route_pool(requested, &c)
                .unwrap()
                .into_iter()
                .map(|r| r.provider.name.clone())
                .collect()
        };
        assert_eq!(names("llama-3.1-8b"), ["groq", "groq-2"]);
        assert_eq!(
            names("groq-2/llama-3.1-8b"),
            ["groq-2"],
            "named, not pooled"
        );
        assert_eq!(names("meta-llama/Llama-3"), ["groq"]);
        assert_eq!(names("gpt-4o"), ["openai"]);
    }

    #[test]
    fn explicit_slash_prefix_routes_to_that_provider() {
        assert_eq!(
            route("groq/mixtral-8x7b").unwrap(),
            pair("groq", "mixtral-8x7b")
        );
    }

    #[test]
    fn explicit_colon_prefix_routes_to_that_provider() {
        assert_eq!(
            route("groq:mixtral-8x7b").unwrap(),
            pair("groq", "mixtral-8x7b")
        );
    }

    #[test]
    fn explicit_prefix_splits_at_the_first_separator() {
        assert_eq!(
            route("openrouter/google/gemini-2.5").unwrap(),
            pair("openrouter", "google/gemini-2.5")
        );
        assert_eq!(
            route("openrouter:google/gemini-2.5").unwrap(),
            pair("openrouter", "google/gemini-2.5")
        );
        assert_eq!(route("groq/a:b").unwrap(), pair("groq", "a:b"));
    }

    #[test]
    fn explicit_prefix_ignores_case() {
        assert_eq!(route("OpenRouter/x-1").unwrap(), pair("openrouter", "x-1"));
    }

    #[test]
    fn explicit_prefix_wins_over_family() {
        assert_eq!(
            route("openrouter/claude-sonnet-4-5").unwrap(),
            pair("openrouter", "claude-sonnet-4-5")
        );
    }

    #[test]
    fn explicit_prefix_wins_over_alias_of_the_same_name() {
        let c = config("models:\n  aliases:\n    fast: anthropic/claude-haiku-4-5\n");
        assert_eq!(route_in(&c, "groq/fast").unwrap(), pair("groq", "fast"));
    }

    #[test]
    fn alias_resolves_to_its_target() {
        let c = config("models:\n  aliases:\n    fast: groq/llama-3.1-8b\n    smart: \"anthropic:claude-sonnet-4-5\"\n");
        assert_eq!(route_in(&c, "fast").unwrap(), pair("groq", "llama-3.1-8b"));
        assert_eq!(
            route_in(&c, "smart").unwrap(),
            pair("anthropic", "claude-sonnet-4-5")
        );
    }

    #[test]
    fn alias_wins_over_list_and_family() {
        let c = config(
            "models:\n  aliases:\n    llama-3.1-8b: openrouter/meta/llama\n    gpt-4o: openrouter/openai/gpt-4o\n",
        );
        assert_eq!(
            route_in(&c, "llama-3.1-8b").unwrap(),
            pair("openrouter", "meta/llama")
        );
        assert_eq!(
            route_in(&c, "gpt-4o").unwrap(),
            pair("openrouter", "openai/gpt-4o")
        );
    }

    #[test]
    fn alias_never_resolves_to_another_alias() {
        // `second` is not a provider, so `groq/second` is taken literally.
        let c =
            config("models:\n  aliases:\n    first: groq/second\n    second: anthropic/claude-x\n");
        assert_eq!(route_in(&c, "first").unwrap(), pair("groq", "second"));
    }

    #[test]
    fn alias_with_unconfigured_target_is_400_not_a_panic() {
        let mut c = config("");
        c.models
            .aliases
            .insert("fast".into(), "nowhere/model".into());
        let e = route_model("fast", &c).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("alias `fast`"), "{e}");
    }

    #[test]
    fn bare_name_on_a_models_list_routes_to_that_provider() {
        assert_eq!(route("llama-3.1-8b").unwrap(), pair("groq", "llama-3.1-8b"));
    }

    #[test]
    fn unconfigured_prefix_falls_through_to_models_lists() {
        assert_eq!(
            route("meta-llama/Llama-3").unwrap(),
            pair("groq", "meta-llama/Llama-3")
        );
    }

    #[test]
    fn models_list_wins_over_family() {
        let c = build_config(
            Some("providers:\n  anthropic: {api_key: k}\n  proxy: {type: openai, api_key: k, models: [claude-sonnet-4-5]}\n"),
            None,
            &EnvSnapshot::loopback(),
        )
        .unwrap();
        assert_eq!(
            route_in(&c, "claude-sonnet-4-5").unwrap(),
            pair("proxy", "claude-sonnet-4-5")
        );
        assert_eq!(
            route_in(&c, "claude-haiku-4-5").unwrap(),
            pair("anthropic", "claude-haiku-4-5")
        );
    }

    #[test]
    fn family_routes_claude_to_anthropic() {
        assert_eq!(
            route("claude-sonnet-4-5").unwrap(),
            pair("anthropic", "claude-sonnet-4-5")
        );
    }

    #[test]
    fn family_routes_openai_names_to_openai() {
        for m in [
            "gpt-4o",
            "o1",
            "o1-mini",
            "o3-mini",
            "o4-mini",
            "chatgpt-4o-latest",
        ] {
            assert_eq!(route(m).unwrap(), pair("openai", m), "{m}");
        }
    }

    #[test]
    fn family_routes_grok_to_xai() {
        let c = build_config(
            Some("providers:\n  my-xai: {type: xai, api_key: k}\n"),
            None,
            &EnvSnapshot::loopback(),
        )
        .unwrap();
        assert_eq!(route_in(&c, "grok-4").unwrap(), pair("my-xai", "grok-4"));
    }

    #[test]
    fn family_prefers_the_first_instance_by_name_when_none_is_named_like_the_type() {
        assert_eq!(
            route("gemini-2.5-pro").unwrap(),
            pair("a-gemini", "gemini-2.5-pro")
        );
    }

    #[test]
    fn family_prefers_the_instance_named_like_the_type() {
        let c = build_config(
            Some("providers:\n  a-claude: {type: anthropic, api_key: k}\n  anthropic: {api_key: k}\n"),
            None,
            &EnvSnapshot::loopback(),
        )
        .unwrap();
        assert_eq!(
            route_in(&c, "claude-haiku-4-5").unwrap(),
            pair("anthropic", "claude-haiku-4-5")
        );
    }

    #[test]
    fn family_ignores_an_instance_named_like_the_type_with_another_type() {
        // `deepseek` is a vLLM instance here; the deepseek-type instance gets the model.
        assert_eq!(
            route("deepseek-chat").unwrap(),
            pair("b-deepseek", "deepseek-chat")
        );
    }

    #[test]
    fn family_without_a_configured_provider_is_400_unsupported() {
        let c = build_config(
            Some("providers:\n  openai: {api_key: k}\n"),
            None,
            &EnvSnapshot::loopback(),
        )
        .unwrap();
        let e = route_model("claude-sonnet-4-5", &c).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(
            e.message
                .starts_with("unsupported model `claude-sonnet-4-5`"),
            "{e}"
        );
        assert!(e.message.contains("type `anthropic`"), "{e}");
    }

    #[test]
    fn unknown_bare_model_is_400_unsupported() {
        let e = error("llama-70b");
        assert!(
            e.message.starts_with("unsupported model `llama-70b`: "),
            "{e}"
        );
        assert!(e.message.contains("provider/llama-70b"), "{e}");
        assert!(e.message.contains("models.aliases"), "{e}");
        assert!(e.message.contains("configured: a-gemini, anthropic"), "{e}");
    }

    #[test]
    fn unknown_prefix_with_unknown_model_is_400_unsupported() {
        let e = error("acme/acme-large");
        assert!(
            e.message.starts_with("unsupported model `acme/acme-large`"),
            "{e}"
        );
    }

    #[test]
    fn unconfigured_builtin_type_prefix_is_404_saying_how_to_configure_it() {
        for (m, variable) in [
            ("mistral/mistral-large", "MISTRAL_API_KEY"),
            ("zai:glm-4.6", "ZAI_API_KEY"),
            ("Ollama/llama3", "OLLAMA_BASE_URL"),
        ] {
            let e = route(m).unwrap_err();
            assert_eq!(e.status, 404, "{m}: {e}");
            assert_eq!(e.kind.openai_type(), "not_found_error");
            assert_eq!(e.param.as_deref(), Some("model"));
            assert!(e.message.contains("is not configured"), "{m}: {e}");
            assert!(e.message.contains(variable), "{m}: {e}");
        }
    }

    #[test]
    fn a_models_list_entry_wins_over_an_unconfigured_type_prefix() {
        let c = build_config(
            Some("providers:\n  proxy: {type: openai, api_key: k, models: [vllm/llama]}\n"),
            None,
            &EnvSnapshot::loopback(),
        )
        .unwrap();
        assert_eq!(
            route_in(&c, "vllm/llama").unwrap(),
            pair("proxy", "vllm/llama")
        );
        assert_eq!(route_in(&c, "vllm/other").unwrap_err().status, 404);
    }

    #[test]
    fn empty_model_is_400() {
        assert!(error("").message.contains("must not be empty"));
        assert!(error("  ").message.contains("must not be empty"));
    }

    #[test]
    fn empty_provider_prefix_is_400() {
        for m in [":x", "/x", "::x", ":"] {
            let e = error(m);
            assert!(e.message.contains("empty provider prefix"), "{m}: {e}");
        }
    }

    #[test]
    fn configured_prefix_without_model_is_400() {
        for m in ["groq:", "groq/"] {
            let e = error(m);
            assert!(e.message.contains("no model after it"), "{m}: {e}");
            assert!(e.message.contains("groq/<model>"), "{m}: {e}");
        }
    }

    #[test]
    fn configured_prefix_with_doubled_separator_is_400() {
        for m in ["groq::x", "groq//x", "groq:/x"] {
            let e = error(m);
            assert!(e.message.contains("doubled separator"), "{m}: {e}");
        }
    }

    #[test]
    fn unconfigured_prefix_without_model_is_400_unsupported() {
        assert!(error("acme:").message.starts_with("unsupported model"));
    }
}
