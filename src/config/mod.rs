//! Configuration: the YAML schema, the environment overlay (env wins), validation into
//! the runtime [`Config`], and the live handle the proxy reads on every request.

mod build;
mod caller_key_tag;
mod credential;
mod defaults;
mod env;
mod error;
mod exposure;
mod limits;
mod live;
mod native_owners;
mod observability;
mod overlay;
mod redis_address;
mod reload;
mod resilience;
mod responses_store;
pub mod schema;
mod server;
mod shown_url;
mod telemetry;
mod timeouts;
mod tls_listener;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use build::build_config;
pub use defaults::default_config_yaml;
pub use env::{env_prefix, EnvSnapshot};
pub use error::ConfigError;
pub use exposure::MIN_MASTER_KEY_LEN;
pub use limits::{
    Budget, BudgetPeriod, KeyLimits, LimitSettings, LimitStoreKind, Limited, OnStoreError,
    DEFAULT_SLOT_LEASE, SLOT_LEASES,
};
pub use live::LiveConfig;
pub use observability::{AccessLogFormat, DEFAULT_METRICS_LISTEN};
pub use redis_address::{ClientIdentity, RedisAddress, StoreTls};
pub use reload::{ConfigReloader, ReloadOutcome};
pub use resilience::{Fallbacks, HealthPolicy, RetryOn, RetryPolicy};
pub use responses_store::ResponsesStoreKind;
pub use server::{
    ServerSettings, ServerStartup, DEFAULT_BODY_SIZE_LIMIT, DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT, DEFAULT_LISTEN, DEFAULT_MAX_BUFFERED_BYTES, DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_PASSTHROUGH_PROVIDERS, DEFAULT_PID_FILE, DEFAULT_UPGRADE_SOCK,
};
pub use telemetry::{TelemetrySettings, DEFAULT_SERVICE_NAME};
pub use timeouts::ModelTimeouts;
pub use tls_listener::{ListenerCert, ServerCert, DEFAULT_TLS_LISTEN};

use crate::auth::GatewayAuth;
use crate::metrics::usage::Price;
use crate::providers::{
    claude_output_ceiling, ModelTraits, Provider, ProviderCatalogue, Secret, WireFormat,
};
use crate::proxy::response_store::StoreLimits;

/// Default config file, relative to the working directory.
pub const DEFAULT_CONFIG_PATH: &str = "conf/aurora.yaml";

/// `max_tokens` sent to an Anthropic-format provider when a translated OpenAI request
/// names none and neither configuration nor the model's family says its ceiling
/// (Anthropic requires the field, OpenAI does not).
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Model names and request defaults.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelSettings {
    /// Alias name → `provider/model` (or `provider:model`); every target names a
    /// configured provider.
    pub aliases: BTreeMap<String, String>,
    /// `max_tokens` for translated requests that name none, when configured; else
    /// the model's ceiling (see [`ModelSettings::unasked_output_limit`]).
    pub default_max_tokens: Option<u32>,
    /// `models.limits`: model name → what configuration says about it.
    pub limits: BTreeMap<String, ModelTraits>,
    /// `models.prices`: model name → its price per million tokens.
    pub prices: BTreeMap<String, Price>,
    /// `models.fallbacks`: what is tried when a model fails.
    pub fallbacks: Fallbacks,
    /// `models.timeouts`: model name → what it changes of its provider's timeouts.
    pub timeouts: BTreeMap<String, ModelTimeouts>,
}

/// `model` without a snapshot date at its end (`-2024-07-18`, `-20250514`), if it
/// has one.
fn undated(model: &str) -> Option<&str> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (rest, last) = model.rsplit_once('-')?;
    if last.len() == 8 && digits(last) {
        return Some(rest);
    }
    let (rest, day) = (rest, last);
    let (rest, month) = rest.rsplit_once('-')?;
    let (rest, year) = rest.rsplit_once('-')?;
    let dated = year.len() == 4 && month.len() == 2 && day.len() == 2;
    (dated && digits(year) && digits(month) && digits(day) && !rest.is_empty()).then_some(rest)
}

impl ModelSettings {
    /// The price of `model` as `provider` serves it: `provider/model` first, then the
    /// model's own name; for a dated snapshot not priced itself
    /// (`gpt-4o-mini-2024-07-18`, `claude-sonnet-4-20250514`: the name an answer
    /// gives for the model asked for), the model it dates.
    pub fn price(&self, provider: &str, model: &str) -> Option<&Price> {
        if self.prices.is_empty() {
            return None;
        }
        let priced = |model: &str| {
            self.prices
                .get(&format!("{provider}/{model}"))
                .or_else(|| self.prices.get(model))
        };
        priced(model).or_else(|| undated(model).and_then(priced))
    }

    /// The timeouts of `client_name`, routed to `provider` as `upstream`.
    pub fn timeouts(
        &self,
        provider: &Provider,
        client_name: &str,
        upstream: &str,
    ) -> crate::providers::Timeouts {
        timeouts::timeouts_for(&self.timeouts, provider, client_name, upstream)
    }

    /// What is known of `model` (routed to `provider` as `upstream`): the provider's own
    /// entry first, then `models.limits` under the client's name, then under the
    /// provider's.
    /// The output limit a translated request that names none is sent with: the
    /// configured `models.default_max_tokens`, within the model's ceiling; without
    /// one, an Anthropic-format provider (which requires a limit) gets the model's
    /// ceiling (configured, else its Claude family's, else [`DEFAULT_MAX_TOKENS`]) and
    /// a chat server none, so that it answers up to the model's own maximum, as an
    /// OpenAI client leaving the limit out expects.
    pub fn unasked_output_limit(
        &self,
        provider: &Provider,
        client_name: &str,
        upstream: &str,
    ) -> Option<u32> {
        let configured = self
            .traits(provider, client_name, upstream)
            .max_output_tokens;
        match provider.format {
            WireFormat::Anthropic => {
                let ceiling = configured.or_else(|| claude_output_ceiling(upstream));
                Some(match (self.default_max_tokens, ceiling) {
                    (Some(default), Some(ceiling)) => default.min(ceiling),
                    (Some(default), None) => default,
                    (None, Some(ceiling)) => ceiling,
                    (None, None) => DEFAULT_MAX_TOKENS,
                })
            }
            WireFormat::OpenAi => self
                .default_max_tokens
                .map(|default| configured.map_or(default, |ceiling| default.min(ceiling))),
        }
    }

    pub fn traits(&self, provider: &Provider, client_name: &str, upstream: &str) -> ModelTraits {
        let limit = |name: &str| self.limits.get(name).copied().unwrap_or_default();
        provider
            .model_traits
            .get(upstream)
            .copied()
            .unwrap_or_default()
            .or(limit(client_name))
            .or(limit(upstream))
    }
}

/// The validated configuration one request sees from start to end.
#[derive(Debug, Default)]
pub struct Config {
    /// Gateway-wide settings.
    pub server: ServerSettings,
    /// Gateway credentials.
    pub auth: GatewayAuth,
    /// Provider instances.
    pub providers: ProviderCatalogue,
    /// Model aliases and request defaults.
    pub models: ModelSettings,
    /// How much of the Responses API's answers the gateway keeps.
    pub responses: StoreLimits,
    /// Where it keeps them; read once at start (restart only).
    pub responses_store: ResponsesStoreKind,
    /// How the gateway keeps whose each natively served response is.
    pub native_owners: crate::proxy::native_owner::NativeOwnerSettings,
    /// Where traces go; read once at start (restart only).
    pub telemetry: TelemetrySettings,
    /// How failed attempts are retried (a provider's own `retry:` wins for it).
    pub retry: RetryPolicy,
    /// When an instance or key is skipped for a while.
    pub health: HealthPolicy,
    /// Request, token, concurrency and budget limits.
    pub limits: LimitSettings,
}

impl Config {
    /// The retry policy of `provider`: its own, else the top-level one.
    pub fn retry_for<'a>(&'a self, provider: &'a Provider) -> &'a RetryPolicy {
        provider.retry.as_ref().unwrap_or(&self.retry)
    }

    /// One line for logs and `--check-config`: counts and names, never secrets.
    pub fn summary(&self) -> String {
        let names: Vec<&str> = self
            .providers
            .configured()
            .map(|p| p.name.as_str())
            .collect();
        let keys = self.auth.managed_len() + usize::from(self.auth.has_master());
        format!(
            "{} providers ({}), {} keys, gateway auth {}",
            names.len(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            },
            keys,
            if self.auth.is_open() { "OFF" } else { "on" }
        )
    }

    /// Provider and key counts for the reload log line: `3 providers, 2 keys`.
    pub fn counts(&self) -> String {
        let keys = self.auth.managed_len() + usize::from(self.auth.has_master());
        format!(
            "{} providers, {keys} keys",
            self.providers.configured().count()
        )
    }

    /// Whether a key's usage report can be read: this gateway's metrics listener
    /// serves it, or the store is shared, where another replica's listener can. The
    /// listener is fixed at start (a reload keeps it).
    pub fn usage_reported(&self) -> bool {
        self.server.startup.metrics_listen.is_some() || self.limits.store != LimitStoreKind::Memory
    }

    /// Whether `provider` (instance name or type) is reachable through `/p/`.
    pub fn passthrough_enabled(&self, name: &str, kind: &str) -> bool {
        self.server
            .enabled_passthrough_providers
            .iter()
            .any(|e| e.eq_ignore_ascii_case(name) || e.eq_ignore_ascii_case(kind))
    }
}

/// Where the YAML comes from.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// File path.
    pub path: PathBuf,
    /// False for the default path: a missing default file means "environment only".
    pub required: bool,
}

impl ConfigSource {
    /// Reads the file (if any) and the environment and validates the result.
    pub fn load(&self, env: &EnvSnapshot) -> Result<Config, ConfigError> {
        let text = read_optional(&self.path, self.required)?;
        build_config(text.as_deref(), Some(&self.path), env)
    }

    /// The master key this source and `env` give the gateway (`AURORA_MASTER_KEY`,
    /// `AURORA_MASTER_KEY_FILE`, `server.master_key`, `server.master_key_file`), for a
    /// command that asks the running gateway with it.
    pub fn master_key(&self, env: &EnvSnapshot) -> Result<Option<Secret>, ConfigError> {
        let text = read_optional(&self.path, self.required)?;
        build::master_key_of(text.as_deref(), env)
    }

    /// Whether the file is there and says something: a config that came from it is
    /// reloaded only from it ([`ConfigSource::load_whole`]).
    pub fn has_content(&self) -> bool {
        std::fs::read_to_string(&self.path).is_ok_and(|t| !says_nothing(&t))
    }

    /// Like [`ConfigSource::load`], but the file must be there and not blank: a file
    /// cut short by a write under way, or moved away, would otherwise reload as the
    /// environment alone and drop every provider, key and limit it held.
    pub fn load_whole(&self, env: &EnvSnapshot) -> Result<Config, ConfigError> {
        let text = read_optional(&self.path, true)?.unwrap_or_default();
        if says_nothing(&text) {
            return Err(ConfigError::Invalid(format!(
                "{} is empty, where the running config came from it",
                self.path.display()
            )));
        }
        build_config(Some(&text), Some(&self.path), env)
    }
}

/// Whether YAML `text` is blank or comments alone.
fn says_nothing(text: &str) -> bool {
    matches!(
        serde_yaml::from_str::<serde_yaml::Value>(text),
        Ok(serde_yaml::Value::Null)
    )
}

fn read_optional(path: &Path, required: bool) -> Result<Option<String>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(None),
        Err(source) => Err(ConfigError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}
