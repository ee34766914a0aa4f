//! Turns YAML text plus the environment into a validated [`Config`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use http::{HeaderName, HeaderValue};

use super::caller_key_tag::{may_hold_caller_key_tag, restore_caller_key_tags};
use super::credential::provider_credential;
use super::exposure;
use super::overlay;
use super::resilience::RetryPolicy;
use super::schema::{FileConfig, FileModelTraits, FileProvider, FileServer};
use super::{
    env_prefix, Config, ConfigError, EnvSnapshot, ListenerCert, ModelSettings, ServerCert,
    ServerSettings, ServerStartup, DEFAULT_TLS_LISTEN,
};
use crate::auth::{GatewayAuth, ManagedKey};
use crate::lookup::LookupMap;
use crate::metrics::usage::Price;
use crate::providers::{
    load_roots_with_ca_file, BaseUrl, ModelRef, ModelTraits, Provider, ProviderCatalogue,
    ProviderKind, Secret, WireFormat,
};
use crate::proxy::response_store::StoreLimits;
use crate::translate::StreamUsage;

/// Headers that frame a request or its connection: the gateway and Pingora set them,
/// so a provider's configured `headers` may not name them.
fn frames_the_request(name: &HeaderName) -> bool {
    name == http::header::CONTENT_LENGTH
        || name == http::header::TRANSFER_ENCODING
        || crate::proxy::headers::HOP_BY_HOP.contains(&name.as_str())
}

/// Parses `yaml` (absent: environment only), overlays `env`, and validates everything.
pub fn build_config(
    yaml: Option<&str>,
    path: Option<&Path>,
    env: &EnvSnapshot,
) -> Result<Config, ConfigError> {
    let path_label = path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "<config>".into());
    let file: FileConfig = match yaml {
        Some(text) if !text.trim().is_empty() => {
            let mut file: FileConfig =
                serde_yaml::from_str(text).map_err(|e| ConfigError::yaml(&path_label, &e))?;
            // The typed read keeps the last of two equal keys in a map (two `openai:`
            // providers, two aliases) without a word; the tree refuses them.
            let tree: serde_yaml::Value =
                serde_yaml::from_str(text).map_err(|e| ConfigError::yaml(&path_label, &e))?;
            if may_hold_caller_key_tag(text) {
                restore_caller_key_tags(&tree, &mut file);
            }
            file
        }
        _ => FileConfig::default(),
    };
    let server = server_settings(&file, env)?;
    let master = master_key(&file, env)?;
    if let Some(master) = &master {
        exposure::check_master_key(master)?;
    }
    let auth = GatewayAuth::new(master.as_ref(), managed_keys(&file)?);
    let retry = super::resilience::retry_policy(&file.retry)?;
    let health = super::resilience::health_policy(&file.health)?;
    let providers = providers(&file, env, &retry)?;
    exposure::check_open_gateway(
        &auth,
        &providers,
        &server.startup.listeners(),
        server.allow_unauthenticated,
    )?;
    for entry in &server.enabled_passthrough_providers {
        if !providers.knows(entry) {
            return Err(ConfigError::Invalid(format!(
                "server.enabled_passthrough_providers names `{entry}`, which is neither a configured provider nor a built-in type"
            )));
        }
    }
    let models = model_settings(&file, env, &providers)?;
    let responses = response_store_limits(&file, env)?;
    let telemetry = super::telemetry::telemetry_settings(&file.telemetry, env)?;
    let limits = super::limits::limit_settings(&file, env)?;
    let responses_store = super::responses_store::responses_store(&file, env, &limits.store)?;
    let native_owners = super::native_owners::native_owner_settings(&file, env)?;
    Ok(Config {
        server,
        auth,
        providers,
        models,
        responses,
        responses_store,
        native_owners,
        telemetry,
        retry,
        health,
        limits,
    })
}

fn response_store_limits(file: &FileConfig, env: &EnvSnapshot) -> Result<StoreLimits, ConfigError> {
    let defaults = StoreLimits::default();
    let r = &file.responses;
    let max_entries = overlay::number(
        env,
        "AURORA_RESPONSES_STORE_MAX_ENTRIES",
        r.store_max_entries,
    )?
    .unwrap_or(defaults.max_entries);
    let max_bytes = overlay::size(
        env,
        "AURORA_RESPONSES_STORE_MAX_BYTES",
        "responses.store_max_bytes",
        r.store_max_bytes.as_ref(),
    )?
    .unwrap_or(defaults.max_bytes as u64);
    let ttl = overlay::duration(
        env,
        "AURORA_RESPONSES_STORE_TTL",
        "responses.store_ttl",
        r.store_ttl.as_deref(),
    )?
    .unwrap_or(defaults.ttl);
    Ok(StoreLimits {
        max_entries,
        max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
        ttl,
    })
}

fn model_settings(
    file: &FileConfig,
    env: &EnvSnapshot,
    providers: &ProviderCatalogue,
) -> Result<ModelSettings, ConfigError> {
    let defaults = ModelSettings::default();
    let default_max_tokens = overlay::overlay(
        env.get("AURORA_DEFAULT_MAX_TOKENS"),
        file.models.default_max_tokens,
        |v| {
            v.trim().parse().map_err(|_| {
                invalid(format!(
                    "AURORA_DEFAULT_MAX_TOKENS must be a positive number, got `{v}`"
                ))
            })
        },
        Ok,
    )?
    .or(defaults.default_max_tokens);
    if default_max_tokens == Some(0) {
        return Err(invalid("models.default_max_tokens must be at least 1"));
    }
    let mut aliases = BTreeMap::new();
    for (alias, target) in &file.models.aliases {
        let target = target.trim();
        check_alias(alias, target, providers)?;
        aliases.insert(alias.clone(), target.to_string());
    }
    let mut limits = BTreeMap::new();
    for (model, traits) in &file.models.limits {
        let model = model.trim();
        if model.is_empty() {
            return Err(invalid("models.limits: a model name must not be empty"));
        }
        let traits = model_traits_of(&format!("models.limits.{model}"), traits)?;
        limits.insert(model.to_string(), traits);
    }
    let mut prices = BTreeMap::new();
    for (model, p) in &file.models.prices {
        let fields = [
            Some(p.input),
            Some(p.output),
            p.cache_read,
            p.cache_write,
            p.web_search,
        ];
        if fields
            .into_iter()
            .flatten()
            .any(|v| !v.is_finite() || v < 0.0)
        {
            return Err(invalid(format!(
                "models.prices.{model}: prices must be non-negative numbers (US dollars per million tokens, per 1,000 web searches)"
            )));
        }
        prices.insert(
            model.trim().to_string(),
            Price {
                input: p.input,
                output: p.output,
                cache_read: p.cache_read,
                cache_write: p.cache_write,
                web_search: p.web_search,
            },
        );
    }
    let fallbacks = super::resilience::fallbacks(&file.models, providers)?;
    let timeouts = super::timeouts::model_timeouts(&file.models.timeouts)?;
    Ok(ModelSettings {
        fallbacks,
        timeouts,
        aliases,
        default_max_tokens,
        limits,
        prices,
    })
}

/// Checked model traits: an output ceiling of 0 would refuse every request.
fn model_traits_of(at: &str, traits: &FileModelTraits) -> Result<ModelTraits, ConfigError> {
    if traits.max_output_tokens == Some(0) {
        return Err(invalid(format!(
            "{at}: max_output_tokens must be at least 1"
        )));
    }
    Ok(ModelTraits {
        max_output_tokens: traits.max_output_tokens,
        reasoning: traits.reasoning,
    })
}

/// An alias must point at `provider/model` with a configured provider, so a typo shows
/// at load time rather than as a 400 on the first request that uses it.
fn check_alias(
    alias: &str,
    target: &str,
    providers: &ProviderCatalogue,
) -> Result<(), ConfigError> {
    let configured = || {
        let names: Vec<&str> = providers.configured().map(|p| p.name.as_str()).collect();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    };
    if alias.trim().is_empty() {
        return Err(invalid("models.aliases: an alias name must not be empty"));
    }
    // A name with a configured provider prefix is always routed to that provider, and
    // one with an empty prefix is always refused, so such an alias could never be used.
    if let Some(prefix) = ModelRef::parse(alias).prefix() {
        if prefix.is_empty() {
            return Err(invalid(format!(
                "models.aliases: alias `{alias}` can never be used because it starts with `/` or `:`"
            )));
        }
        if let Some(p) = providers.configured_named(prefix) {
            return Err(invalid(format!(
                "models.aliases: alias `{alias}` can never be used because `{prefix}` names the configured provider `{}`; pick a name without that prefix",
                p.name
            )));
        }
    }
    let target_ref = ModelRef::parse(target);
    let Some(prefix) = target_ref.prefix() else {
        return Err(invalid(format!(
            "models.aliases: alias `{alias}` points to `{target}`, which must be `provider/model` or `provider:model` (configured providers: {})",
            configured()
        )));
    };
    if providers.configured_named(prefix).is_none() {
        return Err(invalid(format!(
            "models.aliases: alias `{alias}` points to `{target}`, but `{prefix}` is not a configured provider (configured providers: {})",
            configured()
        )));
    }
    if let Some(Err(_)) = target_ref.model_after_prefix() {
        return Err(invalid(format!(
            "models.aliases: alias `{alias}` points to `{target}`, which has no model after `{prefix}`"
        )));
    }
    Ok(())
}

fn server_settings(file: &FileConfig, env: &EnvSnapshot) -> Result<ServerSettings, ConfigError> {
    let defaults = ServerSettings::default();
    let startup_defaults = defaults.startup;
    let s = &file.server;
    let mut listen =
        overlay::text(env, "AURORA_LISTEN", s.listen.as_deref()).unwrap_or(startup_defaults.listen);
    if let Some(port) = env.get("PORT") {
        let port: u16 = port
            .parse()
            .map_err(|_| invalid(format!("PORT must be a port number, got `{port}`")))?;
        let host = listen
            .rsplit_once(':')
            .map(|(h, _)| h.to_string())
            .unwrap_or_else(|| "0.0.0.0".into());
        listen = format!("{host}:{port}");
    }
    listen
        .parse::<std::net::SocketAddr>()
        .map_err(|_| invalid(format!("server.listen must be `ip:port`, got `{listen}`")))?;
    let threads =
        overlay::number(env, "AURORA_THREADS", s.threads)?.unwrap_or(startup_defaults.threads);
    if threads == 0 {
        return Err(invalid("server.threads must be at least 1"));
    }
    let body_size_limit = overlay::size(
        env,
        "BODY_SIZE_LIMIT",
        "server.body_size_limit",
        s.body_size_limit.as_ref(),
    )?
    .unwrap_or(defaults.body_size_limit);
    let passthrough_body_size_limit = overlay::size(
        env,
        "AURORA_PASSTHROUGH_BODY_SIZE_LIMIT",
        "server.passthrough_body_size_limit",
        s.passthrough_body_size_limit.as_ref(),
    )?
    .unwrap_or(defaults.passthrough_body_size_limit);
    let max_header_bytes = overlay::size(
        env,
        "AURORA_MAX_HEADER_BYTES",
        "server.max_header_bytes",
        s.max_header_bytes.as_ref(),
    )?
    .unwrap_or(defaults.max_header_bytes);
    let max_buffered_bytes = overlay::size(
        env,
        "AURORA_MAX_BUFFERED_BYTES",
        "server.max_buffered_bytes",
        s.max_buffered_bytes.as_ref(),
    )?
    .unwrap_or(defaults.max_buffered_bytes);
    let header_timeout = overlay::duration(
        env,
        "AURORA_HEADER_TIMEOUT",
        "server.header_timeout",
        s.header_timeout.as_deref(),
    )?
    .unwrap_or(defaults.header_timeout);
    let body_timeout = overlay::duration(
        env,
        "AURORA_BODY_TIMEOUT",
        "server.body_timeout",
        s.body_timeout.as_deref(),
    )?
    .unwrap_or(defaults.body_timeout);
    let keepalive_timeout = overlay::duration(
        env,
        "AURORA_KEEPALIVE_TIMEOUT",
        "server.keepalive_timeout",
        s.keepalive_timeout.as_deref(),
    )?
    .unwrap_or(defaults.keepalive_timeout);
    let send_timeout = overlay::duration(
        env,
        "AURORA_SEND_TIMEOUT",
        "server.send_timeout",
        s.send_timeout.as_deref(),
    )?
    .unwrap_or(defaults.send_timeout);
    if keepalive_timeout < Duration::from_secs(1) || send_timeout < Duration::from_secs(1) {
        return Err(invalid(
            "server.keepalive_timeout and server.send_timeout must be at least 1s",
        ));
    }
    if max_header_bytes < 1024 {
        return Err(invalid("server.max_header_bytes must be at least 1KiB"));
    }
    if header_timeout.is_zero() || body_timeout.is_zero() {
        return Err(invalid(
            "server.header_timeout and server.body_timeout must be longer than zero",
        ));
    }
    let enabled_passthrough_providers = overlay::list(
        env,
        "ENABLED_PASSTHROUGH_PROVIDERS",
        s.enabled_passthrough_providers.as_deref(),
    )
    .unwrap_or(defaults.enabled_passthrough_providers);
    let cors_allow_origins = overlay::list(
        env,
        "AURORA_CORS_ALLOW_ORIGINS",
        s.cors_allow_origins.as_deref(),
    )
    .unwrap_or(defaults.cors_allow_origins);
    for origin in &cors_allow_origins {
        let (scheme, host) = origin.split_once("://").unwrap_or(("", ""));
        let an_origin = matches!(scheme, "http" | "https")
            && !host.is_empty()
            && !host.contains(['/', '?', '#']);
        if origin != crate::proxy::cors::ANY_ORIGIN && !an_origin {
            return Err(invalid(format!(
                "server.cors_allow_origins holds `{origin}`: an origin is `https://host[:port]` (no path), or `*` for any"
            )));
        }
    }
    let log_level = overlay::non_blank_text(env, "RUST_LOG", s.log_level.as_deref())
        .unwrap_or(defaults.log_level);
    crate::logging::parse_filter(&log_level)
        .map_err(|e| invalid(format!("server.log_level (or RUST_LOG) {e}")))?;
    let (tls_listen, tls_cert) = downstream_tls(s, env, &listen)?.unzip();
    let startup = ServerStartup {
        metrics_listen: super::observability::metrics_listen(s.metrics_listen.as_deref(), env)?,
        pid_file: overlay::non_blank_text(env, "AURORA_PID_FILE", s.pid_file.as_deref())
            .unwrap_or(startup_defaults.pid_file),
        upgrade_sock: overlay::non_blank_text(
            env,
            "AURORA_UPGRADE_SOCK",
            s.upgrade_sock.as_deref(),
        )
        .unwrap_or(startup_defaults.upgrade_sock),
        tls_listen,
        listen,
        threads,
        grace_period_seconds: overlay::number(
            env,
            "AURORA_GRACE_PERIOD_SECONDS",
            s.grace_period_seconds,
        )?
        .unwrap_or(startup_defaults.grace_period_seconds),
    };
    Ok(ServerSettings {
        startup,
        access_log: super::observability::access_log(s.access_log.as_deref(), env)?,
        log_level,
        tls_cert,
        body_size_limit,
        passthrough_body_size_limit,
        header_timeout,
        max_header_bytes,
        body_timeout,
        max_buffered_bytes,
        keepalive_timeout,
        send_timeout,
        enable_passthrough_routes: overlay::flag(
            env,
            "ENABLE_PASSTHROUGH_ROUTES",
            s.enable_passthrough_routes,
        )?
        .unwrap_or(defaults.enable_passthrough_routes),
        allow_passthrough_v1_alias: overlay::flag(
            env,
            "ALLOW_PASSTHROUGH_V1_ALIAS",
            s.allow_passthrough_v1_alias,
        )?
        .unwrap_or(defaults.allow_passthrough_v1_alias),
        allow_unauthenticated: overlay::flag(
            env,
            "AURORA_ALLOW_UNAUTHENTICATED",
            s.allow_unauthenticated,
        )?
        .unwrap_or(defaults.allow_unauthenticated),
        enabled_passthrough_providers,
        cors_allow_origins,
    })
}

fn downstream_tls(
    s: &FileServer,
    env: &EnvSnapshot,
    plain_listen: &str,
) -> Result<Option<(String, ListenerCert)>, ConfigError> {
    let file = s.tls.as_ref();
    let pick = |var: &str, value: Option<&String>| {
        overlay::non_blank_text(env, var, value.map(String::as_str))
    };
    let cert_file = pick(
        "AURORA_TLS_CERT_FILE",
        file.and_then(|t| t.cert_file.as_ref()),
    );
    let key_file = pick(
        "AURORA_TLS_KEY_FILE",
        file.and_then(|t| t.key_file.as_ref()),
    );
    let (cert_file, key_file) = match (cert_file, key_file) {
        (Some(c), Some(k)) => (PathBuf::from(c), PathBuf::from(k)),
        (None, None) if file.is_none() => return Ok(None),
        _ => {
            return Err(invalid(
                "server.tls needs both cert_file and key_file (AURORA_TLS_CERT_FILE, AURORA_TLS_KEY_FILE)",
            ))
        }
    };
    let listen = pick("AURORA_TLS_LISTEN", file.and_then(|t| t.listen.as_ref()))
        .unwrap_or_else(|| DEFAULT_TLS_LISTEN.to_string());
    listen.parse::<std::net::SocketAddr>().map_err(|_| {
        invalid(format!(
            "server.tls.listen must be `ip:port`, got `{listen}`"
        ))
    })?;
    if listen == plain_listen {
        return Err(invalid(format!(
            "server.tls.listen `{listen}` is also server.listen: give HTTPS its own port"
        )));
    }
    let cert =
        ServerCert::load(&cert_file, &key_file).map_err(|e| invalid(format!("server.tls: {e}")))?;
    Ok(Some((
        listen,
        ListenerCert {
            cert_file,
            key_file,
            cert,
        },
    )))
}

/// The master key `yaml` (absent: environment only) and `env` give, found as the
/// gateway finds it ([`master_key`]): for a command that asks the running gateway.
pub(super) fn master_key_of(
    yaml: Option<&str>,
    env: &EnvSnapshot,
) -> Result<Option<Secret>, ConfigError> {
    let file: FileConfig = match yaml {
        Some(text) if !text.trim().is_empty() => {
            serde_yaml::from_str(text).map_err(|e| ConfigError::yaml("<config>", &e))?
        }
        _ => FileConfig::default(),
    };
    master_key(&file, env)
}

/// The master key: `AURORA_MASTER_KEY`, else the file `AURORA_MASTER_KEY_FILE` names,
/// else `server.master_key`, else the file `server.master_key_file` names.
fn master_key(file: &FileConfig, env: &EnvSnapshot) -> Result<Option<Secret>, ConfigError> {
    let s = &file.server;
    if s.master_key.as_deref().is_some_and(|m| !m.is_empty()) && s.master_key_file.is_some() {
        return Err(invalid(
            "server: set `master_key` or `master_key_file`, not both",
        ));
    }
    let key = match env.get("AURORA_MASTER_KEY") {
        Some(key) => Some(key.to_string()),
        None => match env.get("AURORA_MASTER_KEY_FILE") {
            Some(path) => Some(read_secret_file("AURORA_MASTER_KEY_FILE", path)?),
            None => match (&s.master_key, &s.master_key_file) {
                (Some(m), _) if !m.is_empty() => Some(env.expand(m)),
                (_, Some(path)) => Some(read_secret_file(
                    "server.master_key_file",
                    &env.expand(path),
                )?),
                _ => None,
            },
        },
    };
    Ok(key.filter(|k| !k.is_empty()).map(Secret::new))
}

/// A secret kept in a file: its content less the trailing newline. An error names
/// the setting and the path, never the content.
pub(super) fn read_secret_file(setting: &str, path: &str) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path.trim())
        .map_err(|e| invalid(format!("{setting}: cannot read `{}`: {e}", path.trim())))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

/// The names metrics and the usage report give callers that are not managed keys (the
/// master key, an open gateway's callers, callers with their own provider key, no
/// caller): a managed key of one of them would be counted with them.
const RESERVED_KEY_NAMES: [&str; 4] =
    ["master", "open", "caller_key", crate::metrics::labels::NONE];

fn managed_keys(file: &FileConfig) -> Result<LookupMap<[u8; 32], ManagedKey>, ConfigError> {
    let mut keys = LookupMap::default();
    for (i, k) in file.auth.keys.iter().enumerate() {
        let mut digest = [0u8; 32];
        hex::decode_to_slice(k.sha256.trim(), &mut digest).map_err(|_| {
            invalid(format!(
                "auth.keys[{i}] (`{}`): sha256 must be 64 hex characters (see `aurora keys new`)",
                k.name
            ))
        })?;
        let expires_at = match &k.expires_at {
            Some(t) => Some(parse_instant(t).map_err(|e| {
                invalid(format!(
                    "auth.keys[{i}] (`{}`): expires_at `{t}` is not an RFC 3339 time: {e}",
                    k.name
                ))
            })?),
            None => None,
        };
        exposure::check_managed_key(&k.name, &digest)?;
        if RESERVED_KEY_NAMES.contains(&k.name.as_str()) || k.name.trim().is_empty() {
            return Err(invalid(format!(
                "auth.keys[{i}]: the name `{}` is taken: the master key, callers without a \
                 gateway key and requests without a caller are counted and reported by it",
                k.name
            )));
        }
        let key = ManagedKey {
            name: k.name.as_str().into(),
            enabled: k.enabled,
            expires_at,
            passthrough: k.passthrough,
        };
        if keys.insert(digest, key).is_some() {
            return Err(invalid(format!(
                "auth.keys[{i}] (`{}`) repeats the hash of an earlier key",
                k.name
            )));
        }
    }
    Ok(keys)
}

fn parse_instant(text: &str) -> Result<SystemTime, humantime::TimestampError> {
    humantime::parse_rfc3339_weak(text.trim().trim_end_matches('Z'))
}

fn providers(
    file: &FileConfig,
    env: &EnvSnapshot,
    retry: &RetryPolicy,
) -> Result<ProviderCatalogue, ConfigError> {
    let mut out = Vec::new();
    for (name, p) in &file.providers {
        let mut provider = provider(name, p, env)?;
        if let Some(own) = &p.retry {
            provider.retry = Some(super::resilience::provider_retry_policy(name, retry, own)?);
        }
        if let Some(weight) = p.weight {
            provider.weight = weight;
        }
        out.push(provider);
    }
    // A built-in type also comes to life from its environment variables alone.
    for kind in ProviderKind::ALL {
        if file.providers.contains_key(kind.name()) {
            continue;
        }
        let prefix = env_prefix(kind.name());
        if env.get(&format!("{prefix}_API_KEY")).is_some()
            || env.get(&format!("{prefix}_API_KEY_FILE")).is_some()
            || env.get(&format!("{prefix}_BASE_URL")).is_some()
        {
            out.push(provider(kind.name(), &FileProvider::default(), env)?);
        }
    }
    Ok(ProviderCatalogue::new(out))
}

fn provider(name: &str, p: &FileProvider, env: &EnvSnapshot) -> Result<Provider, ConfigError> {
    let type_name = p.kind.as_deref().unwrap_or(name);
    let kind = ProviderKind::from_name(type_name).ok_or_else(|| {
        let known: Vec<&str> = ProviderKind::ALL.iter().map(|k| k.name()).collect();
        invalid(format!(
            "provider `{name}` has unknown type `{type_name}`: set `type:` to one of {}",
            known.join(", ")
        ))
    })?;
    let prefix = env_prefix(name);
    let key_env = format!("{prefix}_API_KEY");
    let credential = provider_credential(name, &key_env, p, env)?;
    let base_text = overlay::given_text(
        env,
        &format!("{prefix}_BASE_URL"),
        p.base_url.as_deref(),
        &format!("providers.{name}.base_url"),
    )?
    .unwrap_or_else(|| kind.facts().default_base_url.to_string());
    let base = BaseUrl::parse(&base_text).map_err(|e| {
        let shown = super::shown_url::shown_url(&base_text);
        invalid(format!("provider `{name}`: base_url `{shown}` {e}"))
    })?;
    let mut headers = Vec::new();
    for (k, v) in &p.headers {
        let hn = HeaderName::try_from(k.as_str())
            .map_err(|_| invalid(format!("provider `{name}`: `{k}` is not a header name")))?;
        if frames_the_request(&hn) {
            // Put after the gateway frames the request: a second framing (a length and
            // `chunked` at once) is how requests are smuggled past a server's front.
            return Err(invalid(format!(
                "provider `{name}`: header `{k}` frames the request or the connection, which the gateway does itself: not configurable"
            )));
        }
        let mut hv = HeaderValue::try_from(env.expand(v)).map_err(|_| {
            invalid(format!(
                "provider `{name}`: header `{k}` has an invalid value"
            ))
        })?;
        // Configured headers may hold credentials under any name (Azure's `api-key`,
        // a value from `${ENV}`): never written to a log.
        hv.set_sensitive(true);
        headers.push((hn, hv));
    }
    let timeouts = super::timeouts::provider_timeouts(name, &p.timeouts)?;
    let (tls_roots, tls_roots_group) = match p.ca_file.as_deref().map(|f| env.expand(f)) {
        Some(f) if !f.is_empty() => {
            let (roots, group) = load_roots_with_ca_file(&f)
                .map_err(|e| invalid(format!("provider `{name}`: ca_file: {e}")))?;
            (Some(roots), group)
        }
        _ => (None, 0),
    };
    let format = match p.format.as_deref().map(str::trim) {
        None => kind.facts().wire_format,
        Some(f) => WireFormat::from_name(f).ok_or_else(|| {
            let known: Vec<&str> = WireFormat::ALL.iter().map(|f| f.name()).collect();
            invalid(format!(
                "provider `{name}`: format `{f}` is not one of {}",
                known.join(", ")
            ))
        })?,
    };
    let stream_usage = match p.ask_stream_usage {
        Some(true) => StreamUsage::OnRequest,
        Some(false) => StreamUsage::Unasked,
        None => kind.facts().stream_usage,
    };
    let mut models = Vec::with_capacity(p.models.len());
    let mut model_traits = BTreeMap::new();
    for (i, entry) in p.models.iter().enumerate() {
        let m = entry.id().trim();
        if m.is_empty() {
            return Err(invalid(format!("provider `{name}`: models[{i}] is empty")));
        }
        if !models.iter().any(|known: &String| known == m) {
            models.push(m.to_string());
        }
        let traits = model_traits_of(&format!("provider `{name}`: models[{i}]"), &entry.traits())?;
        if traits != ModelTraits::default() {
            model_traits.insert(m.to_string(), traits);
        }
    }
    let checks_thinking_signatures = p
        .checks_thinking_signatures
        .unwrap_or_else(|| crate::providers::checks_thinking_signatures(kind, &base));
    Ok(Provider {
        name: name.to_string(),
        kind,
        base,
        credential,
        key_env,
        headers,
        timeouts,
        tls_roots,
        tls_roots_group,
        configured: true,
        models,
        model_traits,
        format,
        stream_usage,
        retry: None,
        weight: 1,
        checks_thinking_signatures,
    })
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

#[cfg(test)]
pub(super) mod tests {

    use super::*;

    /// The config of `yaml` and `env`, on a loopback listener unless they name one.
    pub(in crate::config) fn build(
        yaml: &str,
        env: &[(&str, &str)],
    ) -> Result<Config, ConfigError> {
        // These tests are about other settings: a loopback listener keeps the refusal of
        // an open gateway out of them, unless a test names its own listener.
        let mut env = env.to_vec();
        let names_listener = yaml.contains("listen:")
            || env
                .iter()
                .any(|(k, _)| *k == "AURORA_LISTEN" || *k == "PORT");
        if !names_listener {
            env.push(("AURORA_LISTEN", "127.0.0.1:8080"));
        }
        build_config(Some(yaml), None, &EnvSnapshot::from_pairs(env))
    }

    #[test]
    fn empty_config_uses_defaults() {
        let c = build_config(Some(""), None, &EnvSnapshot::default()).unwrap();
        assert_eq!(c.server, ServerSettings::default());
        assert!(c.auth.is_open());
        assert!(c.providers.is_empty());
    }

    #[test]
    fn a_refused_url_is_named_without_the_credentials_it_holds() {
        for yaml in [
            "providers:\n  vllm:\n    base_url: https://svc:s3cret@vllm.internal/v1\n",
            "providers:\n  gemini:\n    base_url: https://gen.example/v1?key=s3cret\n",
            "telemetry:\n  otlp_endpoint: http://collector:4318/?token=s3cret\n",
            "limits:\n  store: redis+unix:///run/redis.sock?pass=s3cret\n",
        ] {
            let err = build(yaml, &[]).unwrap_err().to_string();
            assert!(!err.contains("s3cret"), "{err}");
            assert!(err.contains('…'), "{err}");
        }
    }

    #[test]
    fn connection_timeouts_come_from_file_then_env_and_are_at_least_a_second() {
        let c = build(
            "server:\n  keepalive_timeout: 5s\n  send_timeout: 2m\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.server.keepalive_timeout, Duration::from_secs(5));
        assert_eq!(c.server.send_timeout, Duration::from_secs(120));
        let env = [
            ("AURORA_KEEPALIVE_TIMEOUT", "7s"),
            ("AURORA_SEND_TIMEOUT", "9s"),
        ];
        let c = build("server:\n  keepalive_timeout: 5s\n", &env).unwrap();
        assert_eq!(c.server.keepalive_timeout, Duration::from_secs(7));
        assert_eq!(c.server.send_timeout, Duration::from_secs(9));
        let err = build("server:\n  send_timeout: 500ms\n", &[]).unwrap_err();
        assert!(err.to_string().contains("server.send_timeout"), "{err}");
    }

    #[test]
    fn request_deadlines_and_caps_come_from_file_then_env() {
        let yaml = "server:\n  header_timeout: 3s\n  max_header_bytes: 16KiB\n  body_timeout: 2m\n  max_buffered_bytes: 1MiB\n";
        let c = build(yaml, &[]).unwrap();
        assert_eq!(c.server.header_timeout, Duration::from_secs(3));
        assert_eq!(c.server.max_header_bytes, 16 * 1024);
        assert_eq!(c.server.body_timeout, Duration::from_secs(120));
        assert_eq!(c.server.max_buffered_bytes, 1024 * 1024);
        let c = build(
            yaml,
            &[
                ("AURORA_HEADER_TIMEOUT", "1s"),
                ("AURORA_MAX_BUFFERED_BYTES", "2MiB"),
            ],
        )
        .unwrap();
        assert_eq!(c.server.header_timeout, Duration::from_secs(1));
        assert_eq!(c.server.max_buffered_bytes, 2 * 1024 * 1024);
        let err = build("server:\n  header_timeout: soon\n", &[]).unwrap_err();
        assert!(err.to_string().contains("server.header_timeout"), "{err}");
        assert!(build("server:\n  max_header_bytes: 10\n", &[]).is_err());
    }

    #[test]
    fn env_alone_registers_builtin_providers() {
        let c = build(
            "",
            &[
                ("ANTHROPIC_API_KEY", "sk-ant-test"),
                ("VLLM_BASE_URL", "http://127.0.0.1:9000/v1"),
            ],
        )
        .unwrap();
        let a = c.providers.find("anthropic").unwrap();
        assert!(a.configured);
        assert_eq!(
            a.credential.next_static_key().unwrap().expose(),
            "sk-ant-test"
        );
        assert_eq!(a.base.host, "api.anthropic.com");
        let v = c.providers.find("vllm").unwrap();
        assert_eq!(v.base.port, 9000);
        assert_eq!(c.providers.len(), 2);
    }

    #[test]
    fn env_wins_over_yaml() {
        let yaml = r#"
server:
  listen: "127.0.0.1:9999"
  body_size_limit: 1MiB
  enable_passthrough_routes: true
providers:
  openai-east:
    type: openai
    api_key: yaml-key
    base_url: http://127.0.0.1:1/v1
"#;
        let c = build(
            yaml,
            &[
                ("PORT", "7000"),
                ("BODY_SIZE_LIMIT", "2MiB"),
                ("ENABLE_PASSTHROUGH_ROUTES", "false"),
                ("OPENAI_EAST_API_KEY", "env-key"),
                ("ENABLED_PASSTHROUGH_PROVIDERS", "openai-east, anthropic"),
            ],
        )
        .unwrap();
        assert_eq!(c.server.startup.listen, "127.0.0.1:7000");
        assert_eq!(c.server.body_size_limit, 2 * 1024 * 1024);
        assert!(!c.server.enable_passthrough_routes);
        assert_eq!(
            c.server.enabled_passthrough_providers,
            vec!["openai-east", "anthropic"]
        );
        let p = c.providers.find("openai-east").unwrap();
        assert_eq!(p.credential.next_static_key().unwrap().expose(), "env-key");
        assert_eq!(p.key_env, "OPENAI_EAST_API_KEY");
    }

    #[test]
    fn expands_variables_in_yaml_values() {
        let yaml = "providers:\n  anthropic:\n    api_key: ${MY_KEY}\n    headers: {x-team: \"${TEAM:-core}\"}\n";
        let c = build(yaml, &[("MY_KEY", "sk-expanded")]).unwrap();
        let p = c.providers.find("anthropic").unwrap();
        assert_eq!(
            p.credential.next_static_key().unwrap().expose(),
            "sk-expanded"
        );
        assert_eq!(p.headers[0].1, "core");
        assert!(p.headers[0].1.is_sensitive(), "never written to a log");
    }

    #[test]
    fn a_base_url_or_store_whose_variable_is_unset_is_refused() {
        let azure = "providers:\n  azure-gpt:\n    type: openai\n    base_url: ${AZURE_URL}\n    api_key: sk-fake\n";
        let err = build(azure, &[]).unwrap_err().to_string();
        assert!(err.contains("providers.azure-gpt.base_url"), "{err}");
        let c = build(azure, &[("AZURE_URL", "https://x.example/openai/v1")]).unwrap();
        let p = c.providers.find("azure-gpt").unwrap();
        assert_eq!(p.base.host, "x.example");
        let store = "limits:\n  store: ${REDIS_URL}\n";
        let err = build(store, &[]).unwrap_err().to_string();
        assert!(err.contains("limits.store"), "{err}");
    }

    #[test]
    fn a_key_in_a_configured_header_makes_an_open_public_gateway_refused() {
        let azure = |header: &str| {
            format!(
                "server:\n  listen: 0.0.0.0:8080\nproviders:\n  azure:\n    type: vllm\n    base_url: https://x.example/openai/v1\n    headers: {{{header}: sk-fake-azure}}\n"
            )
        };
        for header in ["api-key", "Authorization"] {
            let err = build(&azure(header), &[]).unwrap_err().to_string();
            assert!(err.contains("refusing an open gateway"), "{header}: {err}");
        }
        // A header that is no credential leaves a keyless provider keyless.
        assert!(build(&azure("x-team"), &[]).is_ok());
    }

    #[test]
    fn a_configured_header_that_frames_the_request_is_refused() {
        let framing = [
            "Content-Length",
            "transfer-encoding",
            "Connection",
            "keep-alive",
            "TE",
            "trailer",
            "Upgrade",
            "proxy-connection",
        ];
        for header in framing {
            let yaml = format!("providers:\n  openai:\n    headers: {{{header}: x}}\n");
            let err = build(&yaml, &[]).unwrap_err().to_string();
            assert!(err.contains("frames the request"), "{header}: {err}");
        }
        assert!(build("providers:\n  openai:\n    headers: {x-team: a}\n", &[]).is_ok());
    }

    #[test]
    fn a_key_written_twice_in_a_map_is_refused() {
        let twice = [
            "providers:\n  openai:\n    api_key: sk-a\n  openai:\n    api_key: sk-b\n",
            "models:\n  aliases:\n    fast: openai/gpt-4o-mini\n    fast: openai/gpt-4o\n",
            "providers:\n  openai:\n    headers: {x-team: a, x-team: b}\n",
        ];
        for yaml in twice {
            let err = build(yaml, &[]).unwrap_err().to_string();
            assert!(err.contains("duplicate"), "{yaml}: {err}");
        }
    }

    #[test]
    fn yaml_errors_carry_line_and_column() {
        let err = build("server:\n  threads: many\n", &[]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(":2:"), "{text}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = build("server:\n  lisen: x\n", &[]).unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
    }

    #[test]
    fn rejects_unknown_types_bad_urls_and_bad_timeouts() {
        let e = build("providers:\n  foo: {}\n", &[]).unwrap_err();
        assert!(e.to_string().contains("unknown type `foo`"), "{e}");
        let e = build(
            "providers:\n  openai: {base_url: \"api.openai.com\"}\n",
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("http://"), "{e}");
        let e = build("providers:\n  openai: {timeouts: {read: soon}}\n", &[]).unwrap_err();
        assert!(e.to_string().contains("timeouts.read"), "{e}");
    }

    #[test]
    fn managed_keys_need_hex_hashes_and_rfc3339_expiry() {
        let good = format!(
            "auth:\n  keys:\n    - {{name: ci, sha256: \"{}\", expires_at: \"2027-01-01T00:00:00Z\"}}\n",
            "ab".repeat(32)
        );
        let c = build(&good, &[]).unwrap();
        assert_eq!(c.auth.managed_len(), 1);
        let e = build("auth:\n  keys:\n    - {name: ci, sha256: nothex}\n", &[]).unwrap_err();
        assert!(e.to_string().contains("64 hex"), "{e}");
        let bad_time = good.replace("2027-01-01T00:00:00Z", "tomorrow");
        assert!(build(&bad_time, &[]).is_err());
    }

    #[test]
    fn enabled_passthrough_entries_must_be_known() {
        let e = build("", &[("ENABLED_PASSTHROUGH_PROVIDERS", "openai,typo")]).unwrap_err();
        assert!(e.to_string().contains("`typo`"), "{e}");
    }

    #[test]
    fn cors_origins_are_origins_or_any() {
        let c = build(
            "server:\n  cors_allow_origins: [\"https://app.example\", \"http://localhost:3000\"]\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.server.cors_allow_origins.len(), 2);
        assert!(build("server:\n  cors_allow_origins: [\"*\"]\n", &[]).is_ok());
        for bad in [
            "app.example",
            "https://app.example/path",
            "ftp://x",
            "https://",
        ] {
            let e = build(
                &format!("server:\n  cors_allow_origins: [\"{bad}\"]\n"),
                &[],
            )
            .unwrap_err();
            assert!(e.to_string().contains("cors_allow_origins"), "{bad}: {e}");
        }
    }

    #[test]
    fn models_section_defaults_to_no_aliases_and_no_default_limit() {
        let c = build("", &[]).unwrap();
        assert!(c.models.aliases.is_empty());
        assert_eq!(c.models.default_max_tokens, None);
    }

    #[test]
    fn a_request_without_a_limit_gets_the_models_ceiling_unless_a_default_is_configured() {
        let yaml = "providers:\n  anthropic: {api_key: k}\n  groq: {api_key: k}\n  zai: {api_key: k, format: anthropic}\nmodels:\n  limits:\n    glm-4.6: {max_output_tokens: 96000}\n    llama-3.1-8b: {max_output_tokens: 8000}\n";
        let limit = |c: &Config, provider: &str, model: &str| {
            let p = c.providers.find(provider).unwrap();
            c.models.unasked_output_limit(p, model, model)
        };
        let c = build(yaml, &[]).unwrap();
        // Anthropic requires a limit: the family's ceiling, the configured one, else 4096.
        assert_eq!(limit(&c, "anthropic", "claude-sonnet-4-5"), Some(64_000));
        assert_eq!(
            limit(&c, "anthropic", "claude-3-5-haiku-latest"),
            Some(8_192)
        );
        assert_eq!(limit(&c, "zai", "glm-4.6"), Some(96_000));
        assert_eq!(limit(&c, "zai", "glm-4.5"), Some(4_096));
        // A chat server is sent none: it answers up to the model's maximum.
        assert_eq!(limit(&c, "groq", "llama-3.1-8b"), None);
        let c = build(&format!("{yaml}  default_max_tokens: 16000\n"), &[]).unwrap();
        assert_eq!(limit(&c, "anthropic", "claude-sonnet-4-5"), Some(16_000));
        assert_eq!(
            limit(&c, "anthropic", "claude-3-5-haiku-latest"),
            Some(8_192)
        );
        assert_eq!(limit(&c, "groq", "llama-3.1-8b"), Some(8_000));
        assert_eq!(limit(&c, "groq", "other"), Some(16_000));
    }

    #[test]
    fn aliases_and_default_max_tokens_are_parsed() {
        let yaml = "models:\n  aliases:\n    fast: groq/llama-3.1-8b\n    smart: \"anthropic:claude-sonnet-4-5\"\n  default_max_tokens: 1024\nproviders:\n  groq: {api_key: k}\n  anthropic: {api_key: k}\n";
        let c = build(yaml, &[]).unwrap();
        assert_eq!(c.models.aliases["fast"], "groq/llama-3.1-8b");
        assert_eq!(c.models.aliases["smart"], "anthropic:claude-sonnet-4-5");
        assert_eq!(c.models.default_max_tokens, Some(1024));
    }

    #[test]
    fn alias_target_may_name_an_env_registered_provider() {
        let yaml = "models:\n  aliases:\n    fast: groq/llama-3.1-8b\n";
        let c = build(yaml, &[("GROQ_API_KEY", "k")]).unwrap();
        assert_eq!(c.models.aliases.len(), 1);
    }

    #[test]
    fn alias_to_unconfigured_provider_is_refused_naming_the_alias() {
        let yaml = "models:\n  aliases:\n    fast: groq/llama-3.1-8b\nproviders:\n  openai: {api_key: k}\n";
        let e = build(yaml, &[]).unwrap_err().to_string();
        assert!(e.contains("alias `fast`"), "{e}");
        assert!(e.contains("`groq` is not a configured provider"), "{e}");
        assert!(e.contains("configured providers: openai"), "{e}");
    }

    #[test]
    fn retry_health_weights_and_fallbacks_are_read_and_checked() {
        let yaml = "retry:\n  attempts: 2\nhealth:\n  failures: 2\n  cooldown: 1s\nmodels:\n  aliases:\n    smart: anthropic/claude-sonnet-4-5\n  fallbacks:\n    gpt-4o: [anthropic/claude-sonnet-4-5, smart]\n  fallbacks_on_context_overflow: [gpt-4o]\nproviders:\n  openai: {api_key: k, weight: 3, retry: {attempts: 1}}\n  anthropic: {api_key: k}\n";
        let c = build(yaml, &[]).unwrap();
        assert_eq!(c.retry.attempts, 2);
        assert_eq!(c.health.failures, 2);
        let openai = c.providers.configured_named("openai").unwrap();
        assert_eq!(openai.weight, 3);
        assert_eq!(c.retry_for(openai).attempts, 1);
        let anthropic = c.providers.configured_named("anthropic").unwrap();
        assert_eq!(c.retry_for(anthropic).attempts, 2);
        assert_eq!(
            c.models.fallbacks.after("gpt-4o"),
            ["anthropic/claude-sonnet-4-5", "smart"]
        );
        assert!(c.models.fallbacks.covers_context_overflow("gpt-4o"));

        let broken =
            "models:\n  fallbacks:\n    gpt-4o: [groq/llama]\nproviders:\n  openai: {api_key: k}\n";
        let e = build(broken, &[]).unwrap_err().to_string();
        assert!(e.contains("models.fallbacks.gpt-4o"), "{e}");
    }

    #[test]
    fn alias_without_provider_prefix_or_model_is_refused() {
        let e = build(
            "models:\n  aliases:\n    fast: llama\n",
            &[("GROQ_API_KEY", "k")],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("alias `fast`") && e.contains("provider/model"),
            "{e}"
        );
        let e = build(
            "models:\n  aliases:\n    fast: \"groq:\"\n",
            &[("GROQ_API_KEY", "k")],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("alias `fast`") && e.contains("no model"), "{e}");
    }

    #[test]
    fn alias_shadowed_by_a_provider_prefix_is_refused() {
        let yaml = "models:\n  aliases:\n    groq/fast: groq/llama-3.1-8b\n";
        let e = build(yaml, &[("GROQ_API_KEY", "k")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("alias `groq/fast` can never be used"), "{e}");
        let yaml = "models:\n  aliases:\n    \":fast\": groq/llama-3.1-8b\n";
        let e = build(yaml, &[("GROQ_API_KEY", "k")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("alias `:fast` can never be used"), "{e}");
    }

    #[test]
    fn default_max_tokens_must_be_positive() {
        let e = build("models: {default_max_tokens: 0}\n", &[]).unwrap_err();
        assert!(e.to_string().contains("at least 1"), "{e}");
        assert!(build("models: {default_max_tokens: -5}\n", &[]).is_err());
    }

    #[test]
    fn default_max_tokens_env_overlay_wins() {
        let c = build(
            "models: {default_max_tokens: 100}\n",
            &[("AURORA_DEFAULT_MAX_TOKENS", "8192")],
        )
        .unwrap();
        assert_eq!(c.models.default_max_tokens, Some(8192));
        let e = build("", &[("AURORA_DEFAULT_MAX_TOKENS", "lots")]).unwrap_err();
        assert!(e.to_string().contains("AURORA_DEFAULT_MAX_TOKENS"), "{e}");
        let e = build("", &[("AURORA_DEFAULT_MAX_TOKENS", "0")]).unwrap_err();
        assert!(e.to_string().contains("at least 1"), "{e}");
    }

    #[test]
    fn asking_a_stream_for_its_usage_follows_the_type_unless_overridden() {
        let yaml = "providers:\n  openai: {}\n  mistral: {}\n  strict: {type: vllm, ask_stream_usage: false}\n  mistral-proxy: {type: mistral, ask_stream_usage: true}\n";
        let c = build(yaml, &[]).unwrap();
        let usage = |name: &str| c.providers.find(name).unwrap().stream_usage;
        assert_eq!(usage("openai"), StreamUsage::OnRequest);
        assert_eq!(usage("mistral"), StreamUsage::Unasked);
        assert_eq!(usage("strict"), StreamUsage::Unasked);
        assert_eq!(usage("mistral-proxy"), StreamUsage::OnRequest);
    }

    #[test]
    fn only_anthropics_own_api_checks_thinking_signatures_unless_configured() {
        let yaml = "providers:\n  anthropic: {}\n  kimi: {type: anthropic, base_url: 'https://api.moonshot.ai/anthropic'}\n  claude-eu: {type: anthropic, base_url: 'https://eu.api.anthropic.com/v1'}\n  relay: {type: anthropic, base_url: 'http://127.0.0.1:9/v1', checks_thinking_signatures: true}\n  lax: {type: anthropic, checks_thinking_signatures: false}\n  openai: {}\n";
        let c = build(yaml, &[]).unwrap();
        let checks = |name: &str| c.providers.find(name).unwrap().checks_thinking_signatures;
        assert!(checks("anthropic"));
        assert!(!checks("kimi"));
        assert!(checks("claude-eu"));
        assert!(checks("relay"));
        assert!(!checks("lax"));
        assert!(!checks("openai"));
    }

    #[test]
    fn provider_format_defaults_to_the_type_and_may_be_overridden() {
        let yaml = "providers:\n  anthropic: {}\n  claude-compat: {type: vllm, format: anthropic}\n  openai: {format: OpenAI}\n";
        let c = build(yaml, &[]).unwrap();
        assert_eq!(
            c.providers.find("anthropic").unwrap().format,
            WireFormat::Anthropic
        );
        assert_eq!(
            c.providers.find("claude-compat").unwrap().format,
            WireFormat::Anthropic
        );
        assert_eq!(
            c.providers.find("openai").unwrap().format,
            WireFormat::OpenAi
        );
        let e = build("providers:\n  openai: {format: gemini}\n", &[]).unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("provider `openai`") && e.contains("openai, anthropic"),
            "{e}"
        );
    }

    #[test]
    fn provider_models_are_trimmed_deduplicated_and_non_empty() {
        let yaml = "providers:\n  anthropic:\n    models: [claude-sonnet-4-5, \" claude-haiku-4-5 \", claude-sonnet-4-5]\n";
        let c = build(yaml, &[]).unwrap();
        assert_eq!(
            c.providers.find("anthropic").unwrap().models,
            vec!["claude-sonnet-4-5", "claude-haiku-4-5"]
        );
        let e = build("providers:\n  anthropic: {models: [\"\"]}\n", &[]).unwrap_err();
        assert!(e.to_string().contains("models[0] is empty"), "{e}");
        let e = build("models: {alias: {}}\n", &[]).unwrap_err();
        assert!(e.to_string().contains("alias"), "{e}");
    }

    #[test]
    fn model_traits_come_from_provider_entries_then_models_limits() {
        let yaml = "providers:\n  vllm:\n    base_url: http://127.0.0.1:9/v1\n    models:\n      - plain\n      - {id: qwen3, max_output_tokens: 8192, reasoning: true}\nmodels:\n  limits:\n    qwen3: {max_output_tokens: 100, reasoning: false}\n    vllm/llama: {max_output_tokens: 2048}\n    llama: {reasoning: true}\n";
        let c = build(yaml, &[]).unwrap();
        let vllm = c.providers.find("vllm").unwrap();
        assert_eq!(vllm.models, vec!["plain", "qwen3"]);
        // The provider's own entry wins over models.limits.
        let qwen = c.models.traits(vllm, "vllm/qwen3", "qwen3");
        assert_eq!(
            (qwen.max_output_tokens, qwen.reasoning),
            (Some(8192), Some(true))
        );
        // The client's name first, then the provider's, trait by trait.
        let llama = c.models.traits(vllm, "vllm/llama", "llama");
        assert_eq!(
            (llama.max_output_tokens, llama.reasoning),
            (Some(2048), Some(true))
        );
        assert_eq!(c.models.traits(vllm, "x", "plain"), ModelTraits::default());
        let e = build("models:\n  limits:\n    m: {max_output_tokens: 0}\n", &[]).unwrap_err();
        assert!(e.to_string().contains("models.limits.m"), "{e}");
        let e = build("models:\n  limits:\n    m: {max_tokens: 5}\n", &[]).unwrap_err();
        assert!(e.to_string().contains("max_tokens"), "{e}");
    }

    #[test]
    fn prices_are_looked_up_by_provider_and_model_then_model() {
        let yaml = "models:\n  prices:\n    gpt-4o: {input: 2.5, output: 10}\n    openrouter/gpt-4o: {input: 3, output: 12, cache_read: 1}\n";
        let c = build(yaml, &[]).unwrap();
        assert_eq!(c.models.price("openai", "gpt-4o").unwrap().input, 2.5);
        let routed = c.models.price("openrouter", "gpt-4o").unwrap();
        assert_eq!((routed.input, routed.cache_read), (3.0, Some(1.0)));
        assert!(c.models.price("openai", "gpt-4o-mini").is_none());
        let e = build("models:\n  prices:\n    m: {input: -1, output: 1}\n", &[]).unwrap_err();
        assert!(e.to_string().contains("models.prices.m"), "{e}");
        assert!(build("models:\n  prices:\n    m: {input: 1}\n", &[]).is_err());
    }

    #[test]
    fn a_dated_snapshot_without_its_own_price_is_priced_as_the_model_it_dates() {
        let yaml = "models:\n  prices:\n    gpt-4o-mini: {input: 0.15, output: 0.6}\n    gpt-4o-mini-2024-07-18: {input: 9, output: 9}\n    claude-sonnet-4: {input: 3, output: 15}\n    anthropic/claude-opus-4: {input: 15, output: 75}\n";
        let c = build(yaml, &[]).unwrap();
        let input = |provider, model| c.models.price(provider, model).map(|p| p.input);
        assert_eq!(input("openai", "gpt-4o-mini-2024-11-20"), Some(0.15));
        assert_eq!(
            input("openai", "gpt-4o-mini-2024-07-18"),
            Some(9.0),
            "its own first"
        );
        assert_eq!(input("anthropic", "claude-sonnet-4-20250514"), Some(3.0));
        assert_eq!(input("anthropic", "claude-opus-4-20250514"), Some(15.0));
        assert_eq!(input("openrouter", "claude-opus-4-20250514"), None);
        for not_a_date in [
            "gpt-4o-mini-2024",
            "o1-12345678x",
            "gpt-4o-mini-24-07-18",
            "-2024-07-18",
        ] {
            assert_eq!(input("openai", not_a_date), None, "{not_a_date}");
        }
    }

    #[test]
    fn response_store_limits_come_from_file_then_env() {
        let c = build("", &[]).unwrap();
        assert_eq!(c.responses, StoreLimits::default());
        let yaml =
            "responses:\n  store_max_entries: 5\n  store_max_bytes: 1MiB\n  store_ttl: 10m\n";
        let c = build(yaml, &[]).unwrap();
        assert_eq!(c.responses.max_entries, 5);
        assert_eq!(c.responses.max_bytes, 1024 * 1024);
        assert_eq!(c.responses.ttl, Duration::from_secs(600));
        let c = build(
            yaml,
            &[
                ("AURORA_RESPONSES_STORE_MAX_ENTRIES", "7"),
                ("AURORA_RESPONSES_STORE_TTL", "1h"),
            ],
        )
        .unwrap();
        assert_eq!(c.responses.max_entries, 7);
        assert_eq!(c.responses.ttl, Duration::from_secs(3600));
        assert!(build("responses: {store_ttl: soon}\n", &[]).is_err());
    }

    #[test]
    fn caller_key_from_yaml_quoted_or_not_and_from_env_alone() {
        let yaml = "providers:\n  openai: {api_key: \"!PASSTHRU\"}\n  anthropic:\n    api_key: !PASSTHRU\n";
        let c = build(yaml, &[("GROQ_API_KEY", "!PASSTHRU")]).unwrap();
        for name in ["openai", "anthropic", "groq"] {
            let p = c.providers.find(name).unwrap();
            assert!(p.configured && p.credential.is_caller_key(), "{name}");
            assert!(!p.missing_key(), "{name}");
        }
    }

    #[test]
    fn api_keys_list_is_rotated_round_robin() {
        let yaml = "providers:\n  openai: {api_keys: [sk-a, \"${B}\"]}\n";
        let c = build(yaml, &[("B", "sk-b")]).unwrap();
        let p = c.providers.find("openai").unwrap();
        let turns: Vec<&str> = (0..3)
            .map(|_| p.credential.next_static_key().unwrap().expose())
            .collect();
        assert_eq!(turns, ["sk-a", "sk-b", "sk-a"]);
    }

    #[test]
    fn caller_key_mixed_with_static_keys_fails_the_whole_config() {
        for yaml in [
            "providers:\n  openai-east: {type: openai, api_keys: [\"!PASSTHRU\", sk-a]}\n",
            "providers:\n  openai-east:\n    type: openai\n    api_keys:\n      - sk-a\n      - !PASSTHRU\n",
            "providers:\n  openai-east:\n    type: openai\n    api_key: !PASSTHRU\n    api_keys: [sk-a]\n",
        ] {
            let e = build(yaml, &[]).unwrap_err().to_string();
            assert!(e.contains("provider `openai-east`"), "{e}");
            assert!(e.contains("!PASSTHRU"), "{e}");
        }
    }

    const LONG_KEY: &str = "a-master-key-of-at-least-32-characters";

    #[test]
    fn an_open_gateway_holding_credentials_on_a_public_listener_is_refused() {
        let public = [
            ("AURORA_LISTEN", "0.0.0.0:8080"),
            ("OPENAI_API_KEY", "sk-x"),
        ];
        let e = build("", &public).unwrap_err().to_string();
        for way_out in ["AURORA_MASTER_KEY", "127.0.0.1", "allow_unauthenticated"] {
            assert!(e.contains(way_out), "{e}");
        }
        assert!(e.contains("0.0.0.0:8080"), "{e}");
        // A key, a loopback listener, or saying so on purpose: each is a way out.
        let mut keyed = public.to_vec();
        keyed.push(("AURORA_MASTER_KEY", LONG_KEY));
        assert!(build("", &keyed).is_ok());
        assert!(build(
            "",
            &[
                ("AURORA_LISTEN", "127.0.0.1:8080"),
                ("OPENAI_API_KEY", "sk-x")
            ]
        )
        .is_ok());
        let mut allowed = public.to_vec();
        allowed.push(("AURORA_ALLOW_UNAUTHENTICATED", "1"));
        assert!(build("", &allowed).is_ok());
        assert!(build("server: {allow_unauthenticated: true}\n", &public).is_ok());
        // Nothing to spend: no credential at all, or only callers' own keys.
        assert!(build("", &[("AURORA_LISTEN", "0.0.0.0:8080")]).is_ok());
        assert!(build(
            "",
            &[
                ("AURORA_LISTEN", "0.0.0.0:8080"),
                ("OPENAI_API_KEY", "!PASSTHRU")
            ]
        )
        .is_ok());
        assert!(build(
            "",
            &[
                ("AURORA_LISTEN", "0.0.0.0:8080"),
                ("VLLM_BASE_URL", "http://127.0.0.1:8000/v1")
            ]
        )
        .is_ok());
    }

    #[test]
    fn weak_gateway_keys_are_refused() {
        for weak in ["m", "sk-1234", "changeme"] {
            let e = build("", &[("AURORA_MASTER_KEY", weak)])
                .unwrap_err()
                .to_string();
            assert!(e.contains("aurora keys new"), "{e}");
        }
        let yaml = "server:\n  master_key: password\n";
        assert!(build(yaml, &[]).is_err());
        let sample_hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"sk-1234"));
        let yaml = format!("auth:\n  keys:\n    - {{name: ci, sha256: \"{sample_hash}\"}}\n");
        let e = build(&yaml, &[]).unwrap_err().to_string();
        assert!(e.contains("auth.keys `ci`"), "{e}");
    }

    #[test]
    fn limited_keys_and_providers_carry_the_name_of_their_counters() {
        let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            b"aur_limited_subject_test_key_0123456789",
        ));
        let yaml = format!(
            "auth:\n  keys:\n    - {{name: team-a, sha256: \"{hash}\", limits: {{requests_per_minute: 5}}}}\nproviders:\n  openai:\n    limits: {{requests_per_minute: 9}}\n"
        );
        let c = build(&yaml, &[]).unwrap();
        let key = c.limits.for_key("team-a").unwrap();
        assert_eq!(
            (&*key.subject, key.limits.requests_per_minute),
            ("key:team-a", Some(5))
        );
        let provider = c.limits.for_provider("openai").unwrap();
        assert_eq!(&*provider.subject, "provider:openai");
        // Made once with the config: each request shares it.
        let again = c.limits.for_key("team-a").unwrap();
        assert!(std::sync::Arc::ptr_eq(&key.subject, &again.subject));
    }

    #[test]
    fn the_master_key_has_the_limits_listed_for_it_and_not_the_default() {
        use crate::auth::Caller;
        let yaml = "limits:\n  default: {requests_per_minute: 600}\n";
        assert!(build(yaml, &[])
            .unwrap()
            .limits
            .for_caller(&Caller::Master)
            .is_none());
        let yaml = "limits:\n  default: {requests_per_minute: 600}\n  master: {concurrent: 8}\n";
        let c = build(yaml, &[]).unwrap();
        let master = c.limits.for_caller(&Caller::Master).unwrap();
        assert_eq!(&*master.subject, "key:master");
        assert_eq!(master.limits.concurrent, Some(8));
        assert_eq!(master.limits.requests_per_minute, None);
        assert!(c.limits.for_caller(&Caller::Open).is_none());
        let e = build("limits:\n  master: {requests_per_minute: 0}\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("limits.master.requests_per_minute"), "{e}");
    }

    #[test]
    fn keys_of_one_name_must_share_their_limits() {
        let hash = |seed: &str| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(seed));
        let (old, new) = (
            hash("aur_rotated_out_key_0123456789abcdef"),
            hash("aur_rotated_in_key_0123456789abcdef"),
        );
        let keys = |a: &str, b: &str| {
            format!(
                "limits:\n  default: {{requests_per_minute: 600}}\nauth:\n  keys:\n    - {{name: team-a, sha256: \"{old}\"{a}}}\n    - {{name: team-a, sha256: \"{new}\"{b}}}\n"
            )
        };
        // A key rotated: both secrets, one caller, one budget.
        let same = ", limits: {budget: {usd: 50, period: month}}";
        let c = build(&keys(same, same), &[]).unwrap();
        assert!(c.limits.for_key("team-a").unwrap().limits.budget.is_some());
        let rpm = |c: &Config| {
            c.limits
                .for_key("team-a")
                .unwrap()
                .limits
                .requests_per_minute
        };
        assert_eq!(rpm(&build(&keys("", ""), &[]).unwrap()), Some(600));
        // Else the later key's limits would hold both, or neither would keep its own.
        for (a, b) in [
            (same, ""),
            ("", same),
            (same, ", limits: {requests_per_minute: 600}"),
        ] {
            let e = build(&keys(a, b), &[]).unwrap_err().to_string();
            assert!(
                e.contains("auth.keys `team-a` is named twice with different limits"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_managed_key_cannot_take_a_name_other_callers_are_counted_by() {
        let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            b"aur_reserved_name_test_key_0123456789",
        ));
        for name in ["master", "open", "caller_key", "-", "\"\""] {
            let yaml = format!("auth:\n  keys:\n    - {{name: {name}, sha256: \"{hash}\"}}\n");
            let e = build(&yaml, &[]).unwrap_err().to_string();
            assert!(e.contains("is taken"), "{name}: {e}");
        }
        let yaml = format!("auth:\n  keys:\n    - {{name: masters, sha256: \"{hash}\"}}\n");
        assert!(build(&yaml, &[]).is_ok());
    }

    #[test]
    fn a_call_slot_lasts_a_minute_unrenewed_unless_told_otherwise() {
        use std::time::Duration;
        let lease = |yaml: &str| build(yaml, &[]).map(|c| c.limits.slot_lease);
        assert_eq!(lease("").unwrap(), Duration::from_secs(60));
        assert_eq!(
            lease("limits:\n  slot_lease: 5s\n").unwrap(),
            Duration::from_secs(5)
        );
        for wrong in ["1s", "2h", "soon"] {
            let e = lease(&format!("limits:\n  slot_lease: {wrong}\n")).unwrap_err();
            assert!(e.to_string().contains("limits.slot_lease"), "{e}");
        }
    }

    #[test]
    fn background_work_is_polled_from_ten_seconds_unless_told_otherwise() {
        use std::time::Duration;
        let polled = |yaml: &str| build(yaml, &[]).map(|c| c.limits.poll_background);
        assert_eq!(polled("").unwrap(), Some(Duration::from_secs(10)));
        assert_eq!(
            polled("limits:\n  poll_background: 250ms\n").unwrap(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(polled("limits:\n  poll_background: 0s\n").unwrap(), None);
        // Too soon polls a provider many times a second; too late (or past what a
        // clock adds) is a mistake.
        for wrong in ["1ns", "2h", "300000000000y", "soon"] {
            let e = polled(&format!("limits:\n  poll_background: {wrong}\n")).unwrap_err();
            assert!(
                e.to_string().contains("limits.poll_background"),
                "{wrong}: {e}"
            );
        }
    }

    #[test]
    fn secrets_come_from_files_with_the_trailing_newline_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let master = dir.path().join("master");
        std::fs::write(&master, format!("{LONG_KEY}\n")).unwrap();
        let provider = dir.path().join("openai");
        std::fs::write(&provider, "sk-from-file\r\n").unwrap();
        let master_path = master.display().to_string();
        let provider_path = provider.display().to_string();
        let c = build(
            "",
            &[
                ("AURORA_MASTER_KEY_FILE", master_path.as_str()),
                ("OPENAI_API_KEY_FILE", provider_path.as_str()),
            ],
        )
        .unwrap();
        assert!(c.auth.has_master());
        let openai = c.providers.find("openai").unwrap();
        assert_eq!(
            openai.credential.next_static_key().map(|k| k.expose()),
            Some("sk-from-file")
        );
        let yaml = format!(
            "server:\n  master_key_file: {master_path}\nproviders:\n  anthropic:\n    api_key_file: {provider_path}\n"
        );
        let c = build(&yaml, &[]).unwrap();
        assert!(c.auth.has_master());
        assert!(c.providers.find("anthropic").is_some());
        // An unreadable file is an error naming the path, never a content.
        let missing = dir.path().join("nope").display().to_string();
        let e = build("", &[("AURORA_MASTER_KEY_FILE", missing.as_str())])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("AURORA_MASTER_KEY_FILE") && e.contains(&missing),
            "{e}"
        );
        let yaml =
            format!("providers:\n  openai:\n    api_key: k\n    api_key_file: {provider_path}\n");
        assert!(build(&yaml, &[]).is_err());
    }

    #[test]
    fn master_key_comes_from_env() {
        let c = build("", &[("AURORA_MASTER_KEY", LONG_KEY)]).unwrap();
        assert!(c.auth.has_master());
        assert!(
            c.summary().contains("1 keys, gateway auth on"),
            "{}",
            c.summary()
        );
    }

    #[test]
    fn log_level_comes_from_rust_log_then_the_file_and_must_parse() {
        assert_eq!(build("", &[]).unwrap().server.log_level, "info");
        let yaml = "server:\n  log_level: warn,aurora::access=info\n";
        assert_eq!(
            build(yaml, &[]).unwrap().server.log_level,
            "warn,aurora::access=info"
        );
        assert_eq!(
            build(yaml, &[("RUST_LOG", "debug")])
                .unwrap()
                .server
                .log_level,
            "debug"
        );
        let e = build("server:\n  log_level: aurora=loud\n", &[]).unwrap_err();
        assert!(e.to_string().contains("server.log_level"), "{e}");
    }

    #[test]
    fn pid_file_and_upgrade_socket_are_configurable() {
        let c = build("", &[]).unwrap();
        assert_eq!(c.server.startup.pid_file, "/tmp/aurora.pid");
        assert_eq!(c.server.startup.upgrade_sock, "/tmp/aurora_upgrade.sock");
        let yaml = "server:\n  pid_file: /run/a.pid\n  upgrade_sock: /run/a.sock\n";
        let c = build(yaml, &[("AURORA_UPGRADE_SOCK", "/tmp/t.sock")]).unwrap();
        assert_eq!(c.server.startup.pid_file, "/run/a.pid");
        assert_eq!(c.server.startup.upgrade_sock, "/tmp/t.sock");
        let c = build("", &[("AURORA_PID_FILE", "/tmp/t.pid")]).unwrap();
        assert_eq!(c.server.startup.pid_file, "/tmp/t.pid");
    }

    #[test]
    fn tls_listener_needs_both_files_its_own_port_and_a_loadable_pair() {
        let e = build("server:\n  tls: {cert_file: a.pem}\n", &[]).unwrap_err();
        assert!(e.to_string().contains("both cert_file and key_file"), "{e}");
        let e = build(
            "server:\n  listen: 127.0.0.1:9000\n  tls: {listen: 127.0.0.1:9000, cert_file: a, key_file: b}\n",
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("its own port"), "{e}");
        let e = build(
            "server:\n  tls: {cert_file: /nonexistent/c.pem, key_file: /nonexistent/k.pem}\n",
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/c.pem"), "{e}");
        assert!(build("", &[]).unwrap().server.tls_cert.is_none());
    }
}
