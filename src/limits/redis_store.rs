//! Counters in Redis, shared by every replica. Each admission is one Lua script run
//! atomically (sent by its SHA, `EVALSHA`): budgets and windows are checked, the
//! request counted and a call slot taken in one step, so replicas never race each
//! other past a limit. Charges go in one pipeline. Windows and budget periods are
//! keys that expire with them; a call slot counter expires too, so slots a crashed
//! replica held come back.
//!
//! The connection is made on first use and kept by redis-rs's connection manager,
//! which reconnects by itself: when Redis goes away, calls fail (and
//! `limits.on_store_error` decides) until it is back.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{Client, Script};
use tokio::sync::OnceCell;

use super::period::{budget_period, minute_window};
use std::collections::{BTreeMap, HashMap};

use super::{
    usd_micros, Admission, LimitStore, RateState, Refusal, StoreError, UsageRecord, USAGE_DAYS_KEPT,
};
use crate::config::KeyLimits;

/// The longest a request waits on Redis before the store counts as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// A call slot counter outlives the longest call by far, then resets itself.
const SLOT_TTL_SECS: u64 = 3600;

/// Checks budgets, then the token and request windows, then takes a call slot and
/// counts the request. KEYS: requests window, tokens window, slots, budget USD
/// (millionths), budget tokens. ARGV: requests per minute, tokens per minute, calls at
/// once, budget USD (millionths), budget tokens (-1: no limit), seconds left in the
/// window, seconds left in the period, slot TTL. Returns {refusal, retry after,
/// requests, tokens, slot}: refusal 0 (none), 1 requests, 2 tokens, 3 calls, 4 budget.
const ADMIT: &str = r"
local rpm, tpm, calls = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local usd, btok = tonumber(ARGV[4]), tonumber(ARGV[5])
local wleft, pleft, slot_ttl = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local reqs = tonumber(redis.call('GET', KEYS[1]) or '0')
local toks = tonumber(redis.call('GET', KEYS[2]) or '0')
if usd >= 0 and tonumber(redis.call('GET', KEYS[4]) or '0') >= usd then return {4, pleft, reqs, toks, 0} end
if btok >= 0 and tonumber(redis.call('GET', KEYS[5]) or '0') >= btok then return {4, pleft, reqs, toks, 0} end
if tpm >= 0 and toks >= tpm then return {2, wleft, reqs, toks, 0} end
if rpm >= 0 and reqs >= rpm then return {1, wleft, reqs, toks, 0} end
local slot = 0
if calls >= 0 then
  local n = redis.call('INCR', KEYS[3])
  redis.call('EXPIRE', KEYS[3], slot_ttl)
  if n > calls then
    redis.call('DECR', KEYS[3])
    return {3, 1, reqs, toks, 0}
  end
  slot = 1
end
if rpm >= 0 then
  reqs = redis.call('INCR', KEYS[1])
  redis.call('EXPIRE', KEYS[1], wleft + 1)
end
return {0, 0, reqs, toks, slot}
";

/// Gives a call slot back, never below zero.
const RELEASE: &str = r"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then return redis.call('DECR', KEYS[1]) end
return 0
";

/// A limit store in Redis.
pub struct RedisStore {
    client: Client,
    connection: OnceCell<ConnectionManager>,
    admit: Script,
    release: std::sync::Arc<Script>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never printed.
        f.write_str("RedisStore")
    }
}

impl RedisStore {
    /// A store at `url` (`redis://` or `rediss://`); it connects on first use.
    pub fn new(url: &str) -> Result<Self, StoreError> {
        let client = Client::open(url)
            .map_err(|e| StoreError(format!("the Redis URL cannot be used: {}", e.kind_text())))?;
        Ok(Self {
            client,
            connection: OnceCell::new(),
            admit: Script::new(ADMIT),
            release: std::sync::Arc::new(Script::new(RELEASE)),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let made = self
            .connection
            .get_or_try_init(|| async {
                let connect = ConnectionManager::new(self.client.clone());
                match tokio::time::timeout(CALL_TIMEOUT, connect).await {
                    Ok(Ok(manager)) => Ok(manager),
                    Ok(Err(e)) => Err(StoreError(format!("cannot reach Redis: {}", e.kind_text()))),
                    Err(_) => Err(StoreError("Redis did not answer in time".into())),
                }
            })
            .await?;
        Ok(made.clone())
    }
}

/// A key of `subject`'s counters; the braces keep a subject's keys in one cluster slot.
fn key(subject: &str, what: &str, period: u64) -> String {
    format!("aurora:{{{subject}}}:{what}:{period}")
}

/// The hash of what `key` (a gateway key's name) used on `day`, field `model|kind`.
fn usage_key(key: &str, day: u64) -> String {
    format!("aurora:{{key:{key}}}:usage:{day}")
}

fn limit_arg(limit: Option<u64>) -> i64 {
    limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX))
}

/// [`usd_micros`] as a Redis integer argument.
fn micros(usd: f64) -> i64 {
    i64::try_from(usd_micros(usd)).unwrap_or(i64::MAX)
}

trait KindText {
    fn kind_text(&self) -> String;
}

impl KindText for redis::RedisError {
    /// The error without its details, which may quote the URL.
    fn kind_text(&self) -> String {
        format!("{:?}", self.kind())
    }
}

#[async_trait]
impl LimitStore for RedisStore {
    async fn admit(
        &self,
        subject: &str,
        limits: &KeyLimits,
        now: u64,
    ) -> Result<Admission, StoreError> {
        let mut conn = self.connection().await?;
        let (minute, window_left) = minute_window(now);
        let (period, period_left) = limits
            .budget
            .map_or((0, 0), |b| budget_period(now, b.period));
        let budget = limits.budget;
        let mut call = self.admit.prepare_invoke();
        call.key(key(subject, "req", minute))
            .key(key(subject, "tok", minute))
            .key(key(subject, "calls", 0))
            .key(key(subject, "usd", period))
            .key(key(subject, "btok", period))
            .arg(limit_arg(limits.requests_per_minute))
            .arg(limit_arg(limits.tokens_per_minute))
            .arg(limit_arg(limits.concurrent.map(u64::from)))
            .arg(budget.and_then(|b| b.usd).map_or(-1, micros))
            .arg(limit_arg(budget.and_then(|b| b.tokens)))
            .arg(window_left)
            .arg(period_left)
            .arg(SLOT_TTL_SECS);
        let answer: Vec<i64> =
            match tokio::time::timeout(CALL_TIMEOUT, call.invoke_async(&mut conn)).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => {
                    return Err(StoreError(format!(
                        "Redis refused a limit check: {}",
                        e.kind_text()
                    )))
                }
                Err(_) => {
                    return Err(StoreError(
                        "Redis did not answer a limit check in time".into(),
                    ))
                }
            };
        let [refusal, retry_after, requests, tokens, slot] = answer[..] else {
            return Err(StoreError(
                "Redis answered a limit check with nonsense".into(),
            ));
        };
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        let refused = match refusal {
            1 => Some(Refusal::Requests),
            2 => Some(Refusal::Tokens),
            3 => Some(Refusal::Concurrency),
            4 => Some(Refusal::Budget),
            _ => None,
        }
        .map(|r| (r, count(retry_after)));
        let state = RateState::of(limits, count(requests), count(tokens), window_left);
        Ok(Admission {
            state,
            refused,
            slot_taken: slot == 1,
        })
    }

    async fn charge(
        &self,
        subject: &str,
        limits: &KeyLimits,
        tokens: u64,
        usd: f64,
        now: u64,
    ) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        let tokens = i64::try_from(tokens).unwrap_or(i64::MAX);
        let mut pipe = redis::pipe();
        if limits.tokens_per_minute.is_some() {
            let (minute, left) = minute_window(now);
            let k = key(subject, "tok", minute);
            pipe.incr(&k, tokens)
                .ignore()
                .expire(&k, (left + 1) as i64)
                .ignore();
        }
        if let Some(budget) = limits.budget {
            let (period, left) = budget_period(now, budget.period);
            // Kept a day past the period, for the usage it records.
            let ttl = (left + 86_400) as i64;
            let usd_key = key(subject, "usd", period);
            let tok_key = key(subject, "btok", period);
            pipe.incr(&usd_key, micros(usd))
                .ignore()
                .expire(&usd_key, ttl)
                .ignore();
            pipe.incr(&tok_key, tokens)
                .ignore()
                .expire(&tok_key, ttl)
                .ignore();
        }
        match tokio::time::timeout(CALL_TIMEOUT, pipe.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError(format!(
                "Redis refused a charge: {}",
                e.kind_text()
            ))),
            Err(_) => Err(StoreError("Redis did not take a charge in time".into())),
        }
    }

    async fn record_usage(
        &self,
        key: &str,
        model: &str,
        day: u64,
        usage: &UsageRecord,
    ) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        let hash = usage_key(key, day);
        let mut pipe = redis::pipe();
        for (name, value) in usage.fields() {
            if value > 0 {
                let value = i64::try_from(value).unwrap_or(i64::MAX);
                pipe.hincr(&hash, format!("{model}|{name}"), value).ignore();
            }
        }
        let ttl = i64::try_from(USAGE_DAYS_KEPT * 86_400).unwrap_or(i64::MAX);
        pipe.expire(&hash, ttl).ignore();
        match tokio::time::timeout(CALL_TIMEOUT, pipe.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError(format!(
                "Redis refused usage: {}",
                e.kind_text()
            ))),
            Err(_) => Err(StoreError("Redis did not take usage in time".into())),
        }
    }

    async fn usage(
        &self,
        key: &str,
        first: u64,
        last: u64,
    ) -> Result<BTreeMap<String, UsageRecord>, StoreError> {
        let mut conn = self.connection().await?;
        let mut pipe = redis::pipe();
        for day in first..=last {
            pipe.hgetall(usage_key(key, day));
        }
        let days: Vec<HashMap<String, u64>> =
            match tokio::time::timeout(CALL_TIMEOUT * 4, pipe.query_async(&mut conn)).await {
                Ok(Ok(days)) => days,
                Ok(Err(e)) => {
                    return Err(StoreError(format!(
                        "Redis refused a usage read: {}",
                        e.kind_text()
                    )))
                }
                Err(_) => {
                    return Err(StoreError(
                        "Redis did not answer a usage read in time".into(),
                    ))
                }
            };
        let mut out: BTreeMap<String, UsageRecord> = BTreeMap::new();
        for fields in days {
            for (field, value) in fields {
                let Some((model, name)) = field.rsplit_once('|') else {
                    continue;
                };
                let mut one = UsageRecord::default();
                one.set(name, value);
                out.entry(model.to_string()).or_default().add(&one);
            }
        }
        Ok(out)
    }

    fn release(&self, subject: &str) {
        let Some(conn) = self.connection.get().cloned() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let script = std::sync::Arc::clone(&self.release);
        let slots = key(subject, "calls", 0);
        let mut conn = conn;
        runtime.spawn(async move {
            let mut call = script.prepare_invoke();
            call.key(slots);
            let released =
                tokio::time::timeout(CALL_TIMEOUT, call.invoke_async::<i64>(&mut conn)).await;
            if !matches!(released, Ok(Ok(_))) {
                log::warn!(
                    "a call slot could not be given back to Redis; it expires in {SLOT_TTL_SECS} s"
                );
            }
        });
    }
}
