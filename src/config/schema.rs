//! The YAML file as written by an operator. Every key is optional; values that may
//! reference the environment (`${VAR}`) stay raw strings here and are expanded and
//! checked in [`super::build`].

use std::collections::BTreeMap;

use serde::Deserialize;

/// Top level of `aurora.yaml`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// Listener and gateway-wide switches.
    pub server: FileServer,
    /// Gateway credentials.
    pub auth: FileAuth,
    /// Provider instances keyed by instance name.
    pub providers: BTreeMap<String, FileProvider>,
    /// Model names and request defaults.
    pub models: FileModels,
    /// The Responses API's stored answers.
    pub responses: FileResponses,
    /// Traces (OpenTelemetry).
    pub telemetry: FileTelemetry,
    /// How failed attempts at a provider are retried.
    pub retry: FileRetry,
    /// When a provider instance or key is skipped for a while.
    pub health: FileHealth,
    /// Request, token, concurrency and budget limits, and where their counters live.
    pub limits: FileLimits,
}

/// `limits:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileLimits {
    /// `memory`, or a `redis://` / `rediss://` URL.
    pub store: Option<String>,
    /// For a `rediss://` store: the CA its certificate is checked against and the
    /// client certificate presented to it.
    pub store_tls: Option<FileStoreTls>,
    /// `allow` or `deny`, when the store cannot be reached.
    pub on_store_error: Option<String>,
    /// For managed keys without limits of their own.
    pub default: Option<FileKeyLimits>,
    /// For the master key, which `default` leaves out.
    pub master: Option<FileKeyLimits>,
    /// When work a call started apart from itself is first polled, a duration.
    pub poll_background: Option<String>,
    /// How long a call slot in Redis outlives a replica that stopped renewing it, a
    /// duration.
    pub slot_lease: Option<String>,
}

/// `limits.store_tls:` PEM files.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileStoreTls {
    /// The CA the store's certificate is checked against, instead of the system roots.
    pub ca_file: Option<String>,
    /// The certificate chain presented when Redis asks clients for one.
    pub cert_file: Option<String>,
    /// Its private key.
    pub key_file: Option<String>,
}

/// What one gateway key (or provider) is held to.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileKeyLimits {
    pub requests_per_minute: Option<u64>,
    /// Input plus output tokens per minute.
    pub tokens_per_minute: Option<u64>,
    /// Calls in flight at once.
    pub concurrent: Option<u32>,
    /// Spending per period.
    pub budget: Option<FileBudget>,
}

/// A key's budget: US dollars or tokens per day, week or month.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileBudget {
    #[serde(default)]
    pub usd: Option<f64>,
    #[serde(default)]
    pub tokens: Option<u64>,
    pub period: String,
}

/// `retry:` section, and `providers.<name>.retry` over it.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileRetry {
    /// Extra attempts after the first; 0 disables retries.
    pub attempts: Option<u32>,
    /// The first wait (`200ms`), doubled each attempt, with full jitter.
    pub backoff: Option<String>,
    /// The longest wait between two attempts.
    pub max_backoff: Option<String>,
    /// A provider's `Retry-After` is honoured up to this; longer, the answer goes out.
    pub max_retry_after: Option<String>,
    /// Failures retried: `connect`, `timeout` and status codes.
    pub on: Option<Vec<serde_yaml::Value>>,
}

/// `health:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileHealth {
    /// Consecutive retryable failures that put an instance or key in cooldown.
    pub failures: Option<u32>,
    /// How long it is skipped.
    pub cooldown: Option<String>,
}

/// `telemetry:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileTelemetry {
    /// OTLP/HTTP base URL (`http://collector:4318`); unset or empty: no traces.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the spans.
    pub service_name: Option<String>,
}

/// `responses:` section: the store behind `previous_response_id` for providers the
/// gateway translates for.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileResponses {
    /// Where the answers are kept: `memory` (default) or `redis` (the Redis of
    /// `limits.store`, shared by every replica).
    pub store: Option<String>,
    /// Responses kept at most.
    pub store_max_entries: Option<usize>,
    /// Bytes kept at most, a size such as `256MiB`.
    pub store_max_bytes: Option<SizeValue>,
    /// How long a response is kept, a duration such as `24h`.
    pub store_ttl: Option<String>,
    /// How long the gateway remembers whose a natively served response is, a duration
    /// such as `720h`.
    pub native_owner_ttl: Option<String>,
    /// Such records kept at most in memory.
    pub native_owner_max_entries: Option<usize>,
    /// What a managed key may do with a natively served response the gateway has no
    /// record of: `owned` (nothing) or `open` (reach it at its provider).
    pub native_access: Option<String>,
}

/// `models:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileModels {
    /// Alias name → `provider/model` or `provider:model`.
    pub aliases: BTreeMap<String, String>,
    /// `max_tokens` for translated requests that name none.
    pub default_max_tokens: Option<u32>,
    /// Model name (as the client writes it, or as the provider knows it) → its traits.
    pub limits: BTreeMap<String, FileModelTraits>,
    /// Model name → US dollars per million tokens.
    pub prices: BTreeMap<String, FilePrice>,
    /// Model name → the models tried in order when it fails.
    pub fallbacks: BTreeMap<String, Vec<String>>,
    /// Models whose fallbacks also apply to a context-length refusal.
    pub fallbacks_on_context_overflow: Vec<String>,
    /// Model name → its own upstream timeouts, over its provider's.
    pub timeouts: BTreeMap<String, FileModelTimeouts>,
}

/// A model's price per million tokens, and per 1,000 web searches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePrice {
    pub input: f64,
    pub output: f64,
    #[serde(default)]
    pub cache_read: Option<f64>,
    #[serde(default)]
    pub cache_write: Option<f64>,
    #[serde(default)]
    pub web_search: Option<f64>,
}

/// What configuration may say about one model.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileModelTraits {
    /// The most output tokens the model takes.
    pub max_output_tokens: Option<u32>,
    /// The model takes a reasoning effort.
    pub reasoning: Option<bool>,
}

/// One entry of a provider's `models:` list: a model id, or an id with its traits.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum FileProviderModel {
    /// `gpt-4o`.
    Id(String),
    /// `{id: gpt-4o-mini, max_output_tokens: 16384, reasoning: false}`.
    Described(FileDescribedModel),
}

/// A provider's model with its traits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDescribedModel {
    pub id: String,
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    #[serde(default)]
    pub reasoning: Option<bool>,
}

impl FileProviderModel {
    /// The model id.
    pub fn id(&self) -> &str {
        match self {
            FileProviderModel::Id(id) => id,
            FileProviderModel::Described(m) => &m.id,
        }
    }

    /// The traits the entry gives (none for a bare id).
    pub fn traits(&self) -> FileModelTraits {
        match self {
            FileProviderModel::Id(_) => FileModelTraits::default(),
            FileProviderModel::Described(m) => FileModelTraits {
                max_output_tokens: m.max_output_tokens,
                reasoning: m.reasoning,
            },
        }
    }
}

/// `server:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileServer {
    pub listen: Option<String>,
    pub threads: Option<usize>,
    pub master_key: Option<String>,
    /// A file holding the master key (systemd credentials, Docker and Kubernetes
    /// secrets); its trailing newline is trimmed.
    pub master_key_file: Option<String>,
    /// Serve without any gateway key even on a non-loopback listener while holding
    /// provider credentials.
    pub allow_unauthenticated: Option<bool>,
    /// A size such as `10MiB`, or a plain number of bytes.
    pub body_size_limit: Option<SizeValue>,
    pub passthrough_body_size_limit: Option<SizeValue>,
    /// Whole-header deadline, a duration such as `10s`.
    pub header_timeout: Option<String>,
    /// Request header cap, a size such as `64KiB`.
    pub max_header_bytes: Option<SizeValue>,
    /// Whole-body deadline, a duration such as `60s`.
    pub body_timeout: Option<String>,
    /// Request bodies held in memory at once, a size such as `256MiB`.
    pub max_buffered_bytes: Option<SizeValue>,
    /// Idle wait of a kept-alive connection for its next request, a duration such as
    /// `60s`.
    pub keepalive_timeout: Option<String>,
    /// Wait of one write of an answer for a client that does not read, a duration
    /// such as `60s`.
    pub send_timeout: Option<String>,
    pub enable_passthrough_routes: Option<bool>,
    pub allow_passthrough_v1_alias: Option<bool>,
    pub enabled_passthrough_providers: Option<Vec<String>>,
    pub cors_allow_origins: Option<Vec<String>>,
    /// Seconds a SIGTERM waits for in-flight requests before exiting.
    pub grace_period_seconds: Option<u64>,
    /// Log filter in `RUST_LOG` syntax (`info`, `warn,aurora::access=info`).
    pub log_level: Option<String>,
    /// Where a daemon (`-d`) writes its pid.
    pub pid_file: Option<String>,
    /// Socket a new process started with `-u` takes the listeners over from.
    pub upgrade_sock: Option<String>,
    /// An HTTPS listener beside the plain one.
    pub tls: Option<FileTls>,
    /// The metrics listener (`ip:port`; empty or `off` for none).
    pub metrics_listen: Option<String>,
    /// `text`, `json` or `off`.
    pub access_log: Option<String>,
}

/// `server.tls:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileTls {
    pub listen: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

/// A size written either as a number of bytes or with a unit (`10MiB`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    Bytes(u64),
    Text(String),
}

/// `auth:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileAuth {
    pub keys: Vec<FileManagedKey>,
}

/// One managed gateway key: only its SHA-256 is stored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileManagedKey {
    pub name: String,
    pub sha256: String,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// What the key is held to; `limits.default` when absent.
    #[serde(default)]
    pub limits: Option<FileKeyLimits>,
    /// Whether the key may use `/p/` routes, which act on the provider account as a
    /// whole (its files, batches, stored completions), not on the key's own calls.
    #[serde(default = "enabled_by_default")]
    pub passthrough: bool,
}

fn enabled_by_default() -> bool {
    true
}

/// One provider instance under `providers:`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileProvider {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// One key, or `!PASSTHRU` for the caller's own key.
    pub api_key: Option<String>,
    /// A file holding the key; its trailing newline is trimmed.
    pub api_key_file: Option<String>,
    /// Several static keys, used round-robin; not together with `api_key`.
    pub api_keys: Option<Vec<String>>,
    pub base_url: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub timeouts: FileTimeouts,
    pub ca_file: Option<String>,
    /// Model ids this instance serves, each optionally with its traits.
    pub models: Vec<FileProviderModel>,
    /// `openai` or `anthropic`; the type's own format when absent.
    pub format: Option<String>,
    /// Whether a Chat stream is asked for its usage (`stream_options.include_usage`);
    /// the type's own habit when absent (all but Mistral are asked).
    pub ask_stream_usage: Option<bool>,
    /// Overrides of the top-level `retry:` for this instance.
    pub retry: Option<FileRetry>,
    /// Its share of a model's traffic among instances serving the same model.
    pub weight: Option<u32>,
    /// Protects the provider's own quota: requests and tokens per minute.
    pub limits: Option<FileKeyLimits>,
    /// Whether it refuses thinking blocks it did not sign; Anthropic's own API alone
    /// when absent.
    pub checks_thinking_signatures: Option<bool>,
}

/// Upstream timeouts, as humane durations (`10s`, `2m`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileTimeouts {
    pub connect: Option<String>,
    /// The older name for `first_byte` and `idle` together.
    pub read: Option<String>,
    pub first_byte: Option<String>,
    pub idle: Option<String>,
    pub total: Option<String>,
    pub write: Option<String>,
    pub keepalive: Option<String>,
}

/// `models.timeouts.<model>`: what a model changes of its provider's timeouts.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileModelTimeouts {
    pub connect: Option<String>,
    pub first_byte: Option<String>,
    pub idle: Option<String>,
    pub total: Option<String>,
}
