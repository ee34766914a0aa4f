//! `retry:`, `providers.<name>.retry`, `health:` and `models.fallbacks`: how the
//! gateway gets an answer when a provider fails.

use std::collections::BTreeMap;
use std::time::Duration;

use super::error::ConfigError;
use super::schema::{FileHealth, FileModels, FileRetry};
use crate::providers::{ModelAfterPrefixError, ModelRef, ProviderCatalogue};

/// Extra attempts after the first, unless configured.
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 0;
/// The first wait between attempts, unless configured.
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(200);
/// The longest wait between attempts, unless configured.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The longest `Retry-After` waited for, unless configured.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(10);
/// Statuses retried unless `retry.on` says otherwise.
pub const DEFAULT_RETRY_STATUSES: [u16; 6] = [429, 500, 502, 503, 504, 529];
/// Consecutive failures that put an instance or key in cooldown, unless configured.
pub const DEFAULT_HEALTH_FAILURES: u32 = 3;
/// How long a failing instance or key is skipped, unless configured.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(30);

/// Which failures are worth another attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryOn {
    /// The connection to the provider could not be made (nothing was sent).
    pub connect: bool,
    /// The provider did not answer in time, or dropped the connection before answering.
    pub timeout: bool,
    /// Provider statuses.
    pub statuses: Vec<u16>,
}

impl Default for RetryOn {
    fn default() -> Self {
        Self {
            connect: true,
            timeout: true,
            statuses: DEFAULT_RETRY_STATUSES.to_vec(),
        }
    }
}

/// How failed attempts at one provider instance are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Extra attempts after the first; 0 disables retries.
    pub attempts: u32,
    /// The first wait, doubled each attempt (full jitter).
    pub backoff: Duration,
    /// The longest wait.
    pub max_backoff: Duration,
    /// The longest `Retry-After` honoured; a longer one ends the retries.
    pub max_retry_after: Duration,
    /// The failures retried.
    pub on: RetryOn,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: DEFAULT_RETRY_ATTEMPTS,
            backoff: DEFAULT_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            on: RetryOn::default(),
        }
    }
}

/// Passive health: when an instance or key is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Consecutive retryable failures before a cooldown.
    pub failures: u32,
    /// How long the cooldown lasts; then one request tries it again.
    pub cooldown: Duration,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            failures: DEFAULT_HEALTH_FAILURES,
            cooldown: DEFAULT_COOLDOWN,
        }
    }
}

/// `models.fallbacks` and the models whose fallbacks also cover a context overflow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fallbacks {
    /// Model as the client names it → the models tried next, in order.
    pub chains: BTreeMap<String, Vec<String>>,
    /// Models whose chain also applies when the prompt is too long for them.
    pub on_context_overflow: Vec<String>,
}

impl Fallbacks {
    /// The models tried after `model`, in order (empty when none are configured).
    pub fn after(&self, model: &str) -> &[String] {
        self.chains.get(model).map_or(&[], Vec::as_slice)
    }

    /// Whether `model`'s fallbacks apply to a context-length refusal.
    pub fn covers_context_overflow(&self, model: &str) -> bool {
        self.on_context_overflow.iter().any(|m| m == model)
    }
}

/// `retry:` over the built-in defaults.
pub fn retry_policy(file: &FileRetry) -> Result<RetryPolicy, ConfigError> {
    merge_retry(&RetryPolicy::default(), file, "retry")
}

/// `providers.<name>.retry`: its keys over the top-level policy.
pub fn provider_retry_policy(
    name: &str,
    base: &RetryPolicy,
    file: &FileRetry,
) -> Result<RetryPolicy, ConfigError> {
    merge_retry(base, file, &format!("providers.{name}.retry"))
}

fn merge_retry(base: &RetryPolicy, file: &FileRetry, at: &str) -> Result<RetryPolicy, ConfigError> {
    let duration = |field: &str, value: &Option<String>, default: Duration| {
        value.as_deref().map_or(Ok(default), |text| {
            humantime::parse_duration(text.trim()).map_err(|e| {
                ConfigError::Invalid(format!(
                    "{at}.{field} `{text}` is not a duration like `200ms`: {e}"
                ))
            })
        })
    };
    let policy = RetryPolicy {
        attempts: file.attempts.unwrap_or(base.attempts),
        backoff: duration("backoff", &file.backoff, base.backoff)?,
        max_backoff: duration("max_backoff", &file.max_backoff, base.max_backoff)?,
        max_retry_after: duration(
            "max_retry_after",
            &file.max_retry_after,
            base.max_retry_after,
        )?,
        on: match &file.on {
            Some(list) => retry_on(list, at)?,
            None => base.on.clone(),
        },
    };
    if policy.attempts > 10 {
        return Err(ConfigError::Invalid(format!(
            "{at}.attempts is {}: at most 10 extra attempts",
            policy.attempts
        )));
    }
    Ok(policy)
}

fn retry_on(list: &[serde_yaml::Value], at: &str) -> Result<RetryOn, ConfigError> {
    let mut on = RetryOn {
        connect: false,
        timeout: false,
        statuses: Vec::new(),
    };
    for item in list {
        let status = match item {
            serde_yaml::Value::Number(n) => n.as_u64(),
            serde_yaml::Value::String(s) => match s.trim() {
                "connect" => {
                    on.connect = true;
                    continue;
                }
                "timeout" => {
                    on.timeout = true;
                    continue;
                }
                other => other.parse().ok(),
            },
            _ => None,
        };
        match status {
            Some(code @ 400..=599) => on.statuses.push(code as u16),
            _ => {
                return Err(ConfigError::Invalid(format!(
                    "{at}.on: `{}` is neither `connect`, `timeout` nor a 4xx/5xx status",
                    serde_yaml::to_string(item).unwrap_or_default().trim()
                )))
            }
        }
    }
    Ok(on)
}

/// `health:` over the defaults.
pub fn health_policy(file: &FileHealth) -> Result<HealthPolicy, ConfigError> {
    let defaults = HealthPolicy::default();
    let failures = file.failures.unwrap_or(defaults.failures);
    if failures == 0 {
        return Err(ConfigError::Invalid(
            "health.failures must be at least 1".into(),
        ));
    }
    let cooldown = match &file.cooldown {
        None => defaults.cooldown,
        Some(text) => humantime::parse_duration(text.trim()).map_err(|e| {
            ConfigError::Invalid(format!(
                "health.cooldown `{text}` is not a duration like `30s`: {e}"
            ))
        })?,
    };
    Ok(HealthPolicy { failures, cooldown })
}

/// `models.fallbacks`: every entry must name a configured provider (`provider/model`)
/// or an alias, so a failing request never discovers a broken chain.
pub fn fallbacks(
    file: &FileModels,
    providers: &ProviderCatalogue,
) -> Result<Fallbacks, ConfigError> {
    let mut chains = BTreeMap::new();
    for (model, chain) in &file.fallbacks {
        let model = model.trim();
        if model.is_empty() {
            return Err(ConfigError::Invalid(
                "models.fallbacks: a model name must not be empty".into(),
            ));
        }
        let mut targets = Vec::with_capacity(chain.len());
        for target in chain {
            let target = target.trim();
            let routable = file.aliases.contains_key(target)
                || routable_by_prefix(&ModelRef::parse(target), providers);
            if !routable {
                return Err(ConfigError::Invalid(format!(
                    "models.fallbacks.{model}: `{target}` names no configured provider; write `provider/model` with a configured provider, or an alias"
                )));
            }
            if target == model {
                return Err(ConfigError::Invalid(format!(
                    "models.fallbacks.{model}: a model cannot fall back to itself"
                )));
            }
            targets.push(target.to_string());
        }
        chains.insert(model.to_string(), targets);
    }
    let on_context_overflow = file
        .fallbacks_on_context_overflow
        .iter()
        .map(|m| m.trim().to_string())
        .collect();
    Ok(Fallbacks {
        chains,
        on_context_overflow,
    })
}

/// A fallback `provider/model` needs a configured provider and a model after it; a
/// doubled separator is left for routing to refuse, as for any client-written name.
fn routable_by_prefix(target: &ModelRef<'_>, providers: &ProviderCatalogue) -> bool {
    let has_model = !matches!(
        target.model_after_prefix(),
        None | Some(Err(ModelAfterPrefixError::Missing))
    );
    has_model
        && target
            .prefix()
            .is_some_and(|prefix| providers.configured_named(prefix).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_retry(yaml: &str) -> FileRetry {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn retry_keys_override_the_defaults_and_providers_override_the_top_level() {
        let top = retry_policy(&file_retry(
            "attempts: 2\nbackoff: 50ms\non: [connect, 429, '503']",
        ))
        .unwrap();
        assert_eq!(top.attempts, 2);
        assert_eq!(top.backoff, Duration::from_millis(50));
        assert_eq!(top.max_backoff, DEFAULT_MAX_BACKOFF);
        assert_eq!(
            top.on,
            RetryOn {
                connect: true,
                timeout: false,
                statuses: vec![429, 503]
            }
        );
        let east = provider_retry_policy("east", &top, &file_retry("attempts: 0")).unwrap();
        assert_eq!(east.attempts, 0);
        assert_eq!(east.backoff, Duration::from_millis(50), "inherited");
        assert_eq!(RetryPolicy::default().attempts, 0, "off unless configured");
    }

    #[test]
    fn retry_mistakes_are_refused_naming_the_key() {
        let e = retry_policy(&file_retry("on: [connect, 200]")).unwrap_err();
        assert!(e.to_string().contains("retry.on"), "{e}");
        let e = retry_policy(&file_retry("backoff: soon")).unwrap_err();
        assert!(e.to_string().contains("retry.backoff"), "{e}");
        let e = retry_policy(&file_retry("attempts: 50")).unwrap_err();
        assert!(e.to_string().contains("at most 10"), "{e}");
    }

    #[test]
    fn health_needs_at_least_one_failure_and_a_duration() {
        let h = health_policy(&FileHealth {
            failures: Some(2),
            cooldown: Some("5s".into()),
        })
        .unwrap();
        assert_eq!(h.failures, 2);
        assert_eq!(h.cooldown, Duration::from_secs(5));
        assert!(health_policy(&FileHealth {
            failures: Some(0),
            cooldown: None
        })
        .is_err());
    }
}
