//! `limits:`, `auth.keys[].limits` and `providers.<name>.limits`: what each gateway key
//! and each provider is held to, and where the counters live.

use std::sync::Arc;

use super::error::ConfigError;
use super::overlay::given_text;
use super::redis_address::{no_store_tls, redis_address, RedisAddress};
use super::schema::{FileBudget, FileConfig, FileKeyLimits};
use super::EnvSnapshot;
use crate::auth::Caller;
use crate::lookup::LookupMap;

/// Where limit counters live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitStoreKind {
    /// In this process: exact, nothing else needed.
    Memory,
    /// In Redis (`redis://` or `rediss://`), shared by every replica.
    Redis(RedisAddress),
}

/// What happens when the store cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreError {
    /// Serve, unlimited, and count the errors.
    Allow,
    /// Answer 503.
    Deny,
}

/// The period a budget covers (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetPeriod {
    Day,
    Week,
    Month,
}

/// A spending cap per period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// US dollars, from `models.prices`.
    pub usd: Option<f64>,
    /// Input plus output tokens.
    pub tokens: Option<u64>,
    pub period: BudgetPeriod,
}

/// What one gateway key (or provider) is held to; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KeyLimits {
    pub requests_per_minute: Option<u64>,
    /// Input plus output tokens per minute.
    pub tokens_per_minute: Option<u64>,
    /// Calls in flight at once.
    pub concurrent: Option<u32>,
    pub budget: Option<Budget>,
}

impl KeyLimits {
    /// Whether anything is limited.
    pub fn is_empty(&self) -> bool {
        *self == KeyLimits::default()
    }
}

/// Every limit of the config.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitSettings {
    pub store: LimitStoreKind,
    pub on_store_error: OnStoreError,
    /// Managed key name → its limits (its own, else `limits.default`).
    pub keys: LookupMap<String, Limited>,
    /// The master key's limits (`limits.master`; `limits.default` leaves it out).
    pub master: Option<Limited>,
    /// Provider instance name → its limits.
    pub providers: LookupMap<String, Limited>,
    /// Background responses and OpenAI batches a call started are polled for their
    /// usage this long after the call, then at doubling intervals; `None`: never.
    pub poll_background: Option<std::time::Duration>,
    /// How long a call slot in Redis lasts unless the replica whose call holds it
    /// renews it (it does, every quarter of this, while the call runs): how soon the
    /// slots of a replica that stopped come back. Read at start (restart only).
    pub slot_lease: std::time::Duration,
}

/// When a background response or batch is first polled, unless configured.
pub const DEFAULT_POLL_BACKGROUND: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a call slot in Redis lasts unrenewed, unless configured.
pub const DEFAULT_SLOT_LEASE: std::time::Duration = std::time::Duration::from_secs(60);

/// The range `limits.slot_lease` may take: renewed every quarter of it, a lease
/// shorter than 2 s would renew often, and one past an hour keeps a stopped replica's
/// slots too long.
pub const SLOT_LEASES: std::ops::RangeInclusive<std::time::Duration> =
    std::time::Duration::from_secs(2)..=std::time::Duration::from_secs(3600);

/// The soonest `limits.poll_background` may poll.
const MIN_POLL_BACKGROUND: std::time::Duration = std::time::Duration::from_millis(100);

/// The latest `limits.poll_background` may first poll.
const MAX_POLL_BACKGROUND: std::time::Duration = std::time::Duration::from_secs(3600);

/// The limits of one key or provider, with the name its counters have in the store
/// (made once here, not for each request).
#[derive(Debug, Clone, PartialEq)]
pub struct Limited {
    /// `key:NAME` or `provider:NAME`.
    pub subject: Arc<str>,
    /// What it is held to.
    pub limits: KeyLimits,
    /// Its limits as the `x-ratelimit-limit-*` values of its answers.
    pub limit_texts: crate::limits::LimitTexts,
}

impl Limited {
    /// The limits `limits` of `subject`.
    pub fn new(subject: Arc<str>, limits: KeyLimits) -> Self {
        Self {
            subject,
            limit_texts: crate::limits::LimitTexts::of(&limits),
            limits,
        }
    }
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            store: LimitStoreKind::Memory,
            on_store_error: OnStoreError::Allow,
            keys: LookupMap::default(),
            master: None,
            providers: LookupMap::default(),
            poll_background: Some(DEFAULT_POLL_BACKGROUND),
            slot_lease: DEFAULT_SLOT_LEASE,
        }
    }
}

impl LimitSettings {
    /// The limits of the managed key `name`, when it has any.
    pub fn for_key(&self, name: &str) -> Option<&Limited> {
        self.keys.get(name)
    }

    /// The limits of `caller`'s key, when it has any: a managed key's, or the master
    /// key's when `limits.master` lists them.
    pub fn for_caller(&self, caller: &Caller) -> Option<&Limited> {
        match caller {
            Caller::Managed(name) => self.keys.get(&**name),
            Caller::Master => self.master.as_ref(),
            Caller::Open => None,
        }
    }

    /// The limits of provider instance `name`, when it has any.
    pub fn for_provider(&self, name: &str) -> Option<&Limited> {
        self.providers.get(name)
    }
}

/// Reads the limits of `file`; the store URL may come from `AURORA_REDIS_URL`.
pub fn limit_settings(file: &FileConfig, env: &EnvSnapshot) -> Result<LimitSettings, ConfigError> {
    let store_text = given_text(
        env,
        "AURORA_REDIS_URL",
        file.limits.store.as_deref(),
        "limits.store",
    )?;
    let store = match store_text.as_deref().map(str::trim) {
        None | Some("") | Some("memory") => {
            no_store_tls(file.limits.store_tls.as_ref(), env, "`memory`")?;
            LimitStoreKind::Memory
        }
        Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
            LimitStoreKind::Redis(redis_address(url, file.limits.store_tls.as_ref(), env)?)
        }
        Some(other) => {
            return Err(ConfigError::Invalid(format!(
                "limits.store must be `memory` or a redis:// URL, got `{}`",
                super::shown_url::shown_url(other)
            )))
        }
    };
    let on_store_error = match file.limits.on_store_error.as_deref().map(str::trim) {
        None | Some("allow") => OnStoreError::Allow,
        Some("deny") => OnStoreError::Deny,
        Some(other) => {
            return Err(ConfigError::Invalid(format!(
                "limits.on_store_error must be `allow` or `deny`, got `{other}`"
            )))
        }
    };
    let default = file
        .limits
        .default
        .as_ref()
        .map(|l| key_limits("limits.default", l))
        .transpose()?;
    let mut keys = LookupMap::default();
    // Keys of one name share its counters and usage report (two secrets of one caller,
    // while one is rotated out): they must be held to the same limits, or which would
    // hold both depends on their order.
    let mut named: LookupMap<&str, KeyLimits> = LookupMap::default();
    for k in &file.auth.keys {
        let own = k
            .limits
            .as_ref()
            .map(|l| key_limits(&format!("auth.keys `{}`.limits", k.name), l))
            .transpose()?;
        let limits = own.or(default).unwrap_or_default();
        if let Some(earlier) = named.insert(k.name.as_str(), limits) {
            if earlier != limits {
                return Err(ConfigError::Invalid(format!(
                    "auth.keys `{}` is named twice with different limits: keys of one name \
                     share its counters, so give them the same limits, or different names",
                    k.name
                )));
            }
        }
        if !limits.is_empty() {
            let subject = crate::limits::key_subject(&k.name).into();
            keys.insert(k.name.clone(), Limited::new(subject, limits));
        }
    }
    // Named `master` in the store and the usage report, a name no managed key may take.
    let master = file
        .limits
        .master
        .as_ref()
        .map(|l| key_limits("limits.master", l))
        .transpose()?
        .filter(|limits| !limits.is_empty())
        .map(|limits| Limited::new(crate::limits::key_subject("master").into(), limits));
    let mut providers = LookupMap::default();
    for (name, p) in &file.providers {
        let Some(limits) = &p.limits else { continue };
        let at = format!("providers.{name}.limits");
        let limits = key_limits(&at, limits)?;
        if limits.concurrent.is_some() || limits.budget.is_some() {
            return Err(ConfigError::Invalid(format!(
                "{at}: a provider takes requests_per_minute and tokens_per_minute only"
            )));
        }
        let subject = crate::limits::provider_subject(name).into();
        providers.insert(name.clone(), Limited::new(subject, limits));
    }
    let poll_background = match file.limits.poll_background.as_deref().map(str::trim) {
        None => Some(DEFAULT_POLL_BACKGROUND),
        Some(text) => {
            let every = humantime::parse_duration(text).map_err(|e| {
                ConfigError::Invalid(format!(
                    "limits.poll_background `{text}` is not a duration like `10s`: {e}"
                ))
            })?;
            if !every.is_zero() && !(MIN_POLL_BACKGROUND..=MAX_POLL_BACKGROUND).contains(&every) {
                return Err(ConfigError::Invalid(format!(
                    "limits.poll_background `{text}` must be `0s` (never) or from 100ms to 1h"
                )));
            }
            (!every.is_zero()).then_some(every)
        }
    };
    let slot_lease = match file.limits.slot_lease.as_deref().map(str::trim) {
        None => DEFAULT_SLOT_LEASE,
        Some(text) => humantime::parse_duration(text)
            .ok()
            .filter(|lease| SLOT_LEASES.contains(lease))
            .ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "limits.slot_lease `{text}` must be a duration from 2s to 1h"
                ))
            })?,
    };
    Ok(LimitSettings {
        store,
        on_store_error,
        keys,
        master,
        providers,
        poll_background,
        slot_lease,
    })
}

fn key_limits(at: &str, file: &FileKeyLimits) -> Result<KeyLimits, ConfigError> {
    let positive = |field: &str, v: Option<u64>| match v {
        Some(0) => Err(ConfigError::Invalid(format!(
            "{at}.{field} must be at least 1"
        ))),
        v => Ok(v),
    };
    Ok(KeyLimits {
        requests_per_minute: positive("requests_per_minute", file.requests_per_minute)?,
        tokens_per_minute: positive("tokens_per_minute", file.tokens_per_minute)?,
        concurrent: positive("concurrent", file.concurrent.map(u64::from))?
            .map(|v| u32::try_from(v).unwrap_or(u32::MAX)),
        budget: file.budget.as_ref().map(|b| budget(at, b)).transpose()?,
    })
}

fn budget(at: &str, file: &FileBudget) -> Result<Budget, ConfigError> {
    let period = match file.period.trim() {
        "day" => BudgetPeriod::Day,
        "week" => BudgetPeriod::Week,
        "month" => BudgetPeriod::Month,
        other => {
            return Err(ConfigError::Invalid(format!(
                "{at}.budget.period must be day, week or month, got `{other}`"
            )))
        }
    };
    if file.usd.is_none() && file.tokens.is_none() {
        return Err(ConfigError::Invalid(format!(
            "{at}.budget needs usd or tokens"
        )));
    }
    if file.usd.is_some_and(|u| !u.is_finite() || u < 0.0) {
        return Err(ConfigError::Invalid(format!(
            "{at}.budget.usd must be a non-negative number"
        )));
    }
    Ok(Budget {
        usd: file.usd,
        tokens: file.tokens,
        period,
    })
}
