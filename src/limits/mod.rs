//! Limits per gateway key and per provider: requests and tokens per minute, calls in
//! flight, and budgets per day, week or month. Checked before a request goes
//! upstream, charged after from the usage its answer reported. The counters live in a
//! [`LimitStore`]: this process's memory by default.

mod charged_once;
mod lease;
mod memory;
mod once_a_minute;
mod once_write;
mod pending;
mod period;
mod rate_headers;
mod redis_link;
mod redis_scripts;
mod redis_slots;
mod redis_store;
mod redis_watches;
mod redis_writer;
mod report;

use std::sync::Arc;

use async_trait::async_trait;

pub use lease::{LEASE_MAX, LEASE_SHARE};
pub use memory::MemoryStore;
pub use once_a_minute::OnceAMinute;
pub use period::{budget_period, date_text, minute_window, period_start_day, reset_text};
pub use rate_headers::{insert_rate_headers, remove_provider_quota_headers, LimitTexts};
pub use redis_link::{Called as RedisCalled, Link as RedisLink, QUIET_AFTER_LOSS};
pub use redis_store::RedisStore;
pub use redis_watches::{SharedWatches, REDIS_NOW_MS};
pub use redis_writer::FLUSH_AFTER;
pub use report::{parse_period, reports_no_key, usage_report};

use crate::config::KeyLimits;
use crate::metrics::deferred_answer::AnswerKey;

/// One rate window as the client is told about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowState {
    /// The limit per window.
    pub limit: u64,
    /// What is left of it.
    pub remaining: u64,
    /// Seconds until the window starts again.
    pub reset_secs: u64,
}

/// The request and token windows of a subject after an admission.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateState {
    pub requests: Option<WindowState>,
    pub tokens: Option<WindowState>,
}

impl RateState {
    /// The windows of `limits` after `requests` requests and `tokens` tokens counted in
    /// the current minute, which ends in `reset_secs`.
    pub fn of(limits: &KeyLimits, requests: u64, tokens: u64, reset_secs: u64) -> Self {
        let window = |limit: Option<u64>, used: u64| {
            limit.map(|limit| WindowState {
                limit,
                remaining: limit.saturating_sub(used),
                reset_secs,
            })
        };
        Self {
            requests: window(limits.requests_per_minute, requests),
            tokens: window(limits.tokens_per_minute, tokens),
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Requests per minute spent.
    Requests,
    /// Tokens per minute spent.
    Tokens,
    /// As many calls in flight as allowed.
    Concurrency,
    /// The period's budget is spent.
    Budget,
}

/// The answer of a store to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// The windows, for the `x-ratelimit-*` headers.
    pub state: RateState,
    /// Why the request is refused, and the seconds after which it may be tried again.
    pub refused: Option<(Refusal, u64)>,
    /// The call-in-flight slot taken, if any (release it when the request ends).
    pub slot: Option<SlotId>,
}

/// A call slot as its store tells it from the others of its subject (the memory store
/// counts them, and calls each 0).
pub type SlotId = u64;

/// The store could not be reached or answered nonsense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("limit store: {0}")]
pub struct StoreError(pub String);

/// What one key used of one model on one day (or summed over days).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct UsageRecord {
    pub requests: u64,
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub reasoning: u64,
    /// Web searches the models ran, billed per search.
    pub web_searches: u64,
    /// US dollars, in billionths.
    #[serde(skip)]
    pub cost_nanos: u64,
    /// Requests charged an estimate of their tokens (in part or whole) rather than
    /// what the provider reported.
    pub estimated: u64,
}

impl UsageRecord {
    /// Adds `other` to this one, stopping at the largest count rather than wrapping
    /// (a batch held through a long Redis outage keeps summing).
    pub fn add(&mut self, other: &UsageRecord) {
        for (total, more) in [
            (&mut self.requests, other.requests),
            (&mut self.input, other.input),
            (&mut self.output, other.output),
            (&mut self.cache_read, other.cache_read),
            (&mut self.cache_write, other.cache_write),
            (&mut self.reasoning, other.reasoning),
            (&mut self.web_searches, other.web_searches),
            (&mut self.cost_nanos, other.cost_nanos),
            (&mut self.estimated, other.estimated),
        ] {
            *total = total.saturating_add(more);
        }
    }

    /// Adds `usage` to `model`'s record in `models`; the model's name is copied only
    /// for its first record.
    pub fn add_to_model(
        models: &mut crate::lookup::LookupMap<String, UsageRecord>,
        model: &str,
        usage: &Self,
    ) {
        match models.get_mut(model) {
            Some(total) => total.add(usage),
            None => {
                models.insert(model.to_string(), *usage);
            }
        }
    }

    /// The fields with their names, as the stores keep them.
    pub fn fields(&self) -> [(&'static str, u64); 9] {
        [
            ("requests", self.requests),
            ("input", self.input),
            ("output", self.output),
            ("cache_read", self.cache_read),
            ("cache_write", self.cache_write),
            ("reasoning", self.reasoning),
            ("web_searches", self.web_searches),
            ("cost_nanos", self.cost_nanos),
            ("estimated", self.estimated),
        ]
    }

    /// Sets the field named `name` (see [`UsageRecord::fields`]); unknown names are
    /// left alone.
    pub fn set(&mut self, name: &str, value: u64) {
        match name {
            "requests" => self.requests = value,
            "input" => self.input = value,
            "output" => self.output = value,
            "cache_read" => self.cache_read = value,
            "cache_write" => self.cache_write = value,
            "reasoning" => self.reasoning = value,
            "web_searches" => self.web_searches = value,
            "cost_nanos" => self.cost_nanos = value,
            // Millionths, as replicas before wrote them: read in billionths.
            "cost_micros" => self.cost_nanos = value.saturating_mul(1_000),
            "estimated" => self.estimated = value,
            _ => {}
        }
    }
}

/// US dollars in billionths, the integer unit every store counts money in: fine
/// enough that a call of a few tokens of a cheap model (a millionth of a dollar or
/// less) counts, so that many of them add up.
pub fn usd_nanos(usd: f64) -> u64 {
    (usd.max(0.0) * 1_000_000_000.0).round() as u64
}

/// Days a key's usage is kept for the report.
pub const USAGE_DAYS_KEPT: u64 = 400;

/// Where limit counters live.
#[async_trait]
pub trait LimitStore: Send + Sync + std::fmt::Debug {
    /// Adds a finished request's `usage` to what `key` used of `model` on `day`
    /// (days since 1970-01-01), for the usage report. Never waits: a store that
    /// keeps it elsewhere queues it.
    fn record_usage(
        &self,
        key: &str,
        model: &str,
        day: u64,
        usage: &UsageRecord,
    ) -> Result<(), StoreError>;

    /// What `key` used, per model, from day `first` to day `last` (both included).
    async fn usage(
        &self,
        key: &str,
        first: u64,
        last: u64,
    ) -> Result<std::collections::BTreeMap<String, UsageRecord>, StoreError>;

    /// [`LimitStore::admit`] for a store that can decide without waiting (the memory
    /// store always can): `Some` with its decision, taken exactly as `admit` takes it,
    /// so the request spends no boxed future on it; `None` (the default) when the
    /// decision may have to wait, and `admit` must be awaited instead.
    fn admit_now(
        &self,
        _subject: &str,
        _limits: &KeyLimits,
        _now: u64,
    ) -> Option<Result<Admission, StoreError>> {
        None
    }

    /// Checks `subject` (`key:NAME`, `provider:NAME`) against `limits` at `now` (Unix
    /// seconds): when it is within them, counts the request and takes a call slot.
    async fn admit(
        &self,
        subject: &str,
        limits: &KeyLimits,
        now: u64,
    ) -> Result<Admission, StoreError>;

    /// What `subject`'s windows under `limits` stand at, at `now`, counting nothing:
    /// for an answer the gateway gives without a provider (the model list), which
    /// still tells a key with limits where it stands. `None` when the store cannot say.
    async fn peek(&self, _subject: &str, _limits: &KeyLimits, _now: u64) -> Option<RateState> {
        None
    }

    /// Charges what a finished request used: `tokens` (input plus output) and
    /// `usd` (its cost). Never waits: a store that keeps it elsewhere queues it.
    fn charge(
        &self,
        subject: &str,
        limits: &KeyLimits,
        tokens: u64,
        usd: f64,
        now: u64,
    ) -> Result<(), StoreError>;

    /// Gives back the call slot `slot` taken by [`LimitStore::admit`].
    fn release(&self, subject: &str, slot: SlotId);

    /// Whether this is the first charge of the usage of `answer`, one generated apart
    /// from the request that read it, by any request (remembered for
    /// [`CHARGED_ONCE_KEPT_SECS`]).
    async fn first_charge(&self, answer: &AnswerKey, now: u64) -> Result<bool, StoreError>;

    /// Whether some request charged the usage of `answer` already (and it is still
    /// remembered); nothing is marked.
    async fn was_charged(&self, answer: &AnswerKey, now: u64) -> Result<bool, StoreError>;

    /// Whether the counters outlive this process (Redis): only then is what a request
    /// used worth charging while the process stops.
    fn outlives_process(&self) -> bool {
        false
    }

    /// Writes what waits to be written (charges and usage gathered a moment) as the
    /// process ends, its server's runtimes gone, within `bound`. The memory store keeps
    /// nothing elsewhere: nothing to do.
    fn write_out_at_exit(&self, _bound: std::time::Duration) {}

    /// Where the background work each replica polls is kept for the others (Redis);
    /// `None` (the default, the memory store) when a replica's own list is all there
    /// is.
    fn shared_watches(&self) -> Option<&SharedWatches> {
        None
    }
}

/// How long an answer generated apart from its request is remembered as charged: as
/// long as a provider keeps it to be read (OpenAI, 30 days; Anthropic's batch
/// results, 29 days).
pub const CHARGED_ONCE_KEPT_SECS: u64 = 30 * 86_400;

/// A call slot, given back when the request ends (dropped).
#[derive(Debug)]
pub struct CallSlot {
    store: Arc<dyn LimitStore>,
    subject: Arc<str>,
    slot: SlotId,
}

impl CallSlot {
    /// The slot `slot` `subject` took in `store`.
    pub fn new(store: Arc<dyn LimitStore>, subject: Arc<str>, slot: SlotId) -> Self {
        Self {
            store,
            subject,
            slot,
        }
    }
}

impl Drop for CallSlot {
    fn drop(&mut self) {
        self.store.release(&self.subject, self.slot);
    }
}

/// The store `kind` names: memory, or Redis at its URL.
pub fn store_for(
    settings: &crate::config::LimitSettings,
) -> Result<Arc<dyn LimitStore>, StoreError> {
    Ok(match &settings.store {
        crate::config::LimitStoreKind::Memory => Arc::new(MemoryStore::default()),
        crate::config::LimitStoreKind::Redis(address) => {
            Arc::new(RedisStore::at(address, settings.slot_lease)?)
        }
    })
}

/// The subject of a managed key's counters.
pub fn key_subject(name: &str) -> String {
    format!("key:{name}")
}

/// The subject of a provider instance's counters.
pub fn provider_subject(name: &str) -> String {
    format!("{PROVIDER_SUBJECT}{name}")
}

/// The provider instance whose counters `subject` names, if it names one.
pub fn provider_of_subject(subject: &str) -> Option<&str> {
    subject.strip_prefix(PROVIDER_SUBJECT)
}

/// How a provider instance's subject starts.
const PROVIDER_SUBJECT: &str = "provider:";
