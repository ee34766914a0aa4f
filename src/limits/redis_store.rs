//! Counters in Redis, shared by every replica.
//!
//! A subject with calls at once is admitted by one Lua script per request (sent by
//! its SHA, `EVALSHA`), exact: budgets and windows checked, the request counted and a
//! call slot taken in one step; the slot is renewed while its call runs
//! (`redis_slots.rs`). Any other subject is admitted from a lease (see
//! `lease.rs`): a batch of its minute granted by one script and served here, so a busy
//! key asks Redis about once every [`LEASE_MAX`](super::lease::LEASE_MAX) calls.
//! Charges and usage are not awaited by the request: the writer (`redis_writer.rs`)
//! gathers them and sends them together a moment later. Windows and budget periods
//! are keys that expire with them; a call slot lapses unless renewed, so slots a
//! stopped replica held come back.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use redis::Script;

use super::lease::{Granted, LeaseBook, Spend, Turn, LEASE_MAX, LEASE_SHARE};
use super::once_write::{once_key, OnceWrite, IDS_KEPT_SECS};
use super::pending::Counters;
use super::period::{budget_period, minute_window};
use super::redis_link::{key, limit_arg, usage_key, usd_arg, Called, Link, CALL_TIMEOUT};
use super::redis_scripts::{ADMIT, LEASE};
use super::redis_slots::{slot_name, slots_key, HeldSlots};
use super::redis_watches::SharedWatches;
use super::redis_writer::Writer;
use super::{
    usd_nanos, Admission, LimitStore, RateState, Refusal, SlotId, StoreError, UsageRecord,
    CHARGED_ONCE_KEPT_SECS, USAGE_DAYS_KEPT,
};
use crate::config::{KeyLimits, RedisAddress};
use crate::metrics::deferred_answer::AnswerKey;

/// A budget key is kept a day past its period, for the usage it records.
const BUDGET_KEPT_SECS: u64 = 86_400;

/// A minute's keys are kept a minute past it (by the clock of the replica writing):
/// a replica whose clock lags by less still finds the minute's count, whoever wrote it
/// first, rather than counting that minute again from zero.
const WINDOW_KEPT_SECS: u64 = 60;

/// How long the keys of the minute with `window_left` seconds left live once written.
fn window_life(window_left: u64) -> u64 {
    window_left + WINDOW_KEPT_SECS
}

/// The key of a budget's US dollars spent, in billionths.
const USD: &str = "usdn";
/// The key in which replicas before counted them, in millionths: read (never written)
/// so that a budget's spend outlives the upgrade, while both kinds run and after.
const USD_BEFORE: &str = "usd";

/// A limit store in Redis.
pub struct RedisStore {
    link: Arc<Link>,
    writer: Arc<Writer>,
    leases: LeaseBook,
    slots: Arc<HeldSlots>,
    admit: Script,
    lease: Script,
    watches: SharedWatches,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never printed.
        f.write_str("RedisStore")
    }
}

/// A refusal as the scripts number it.
fn refusal(code: i64) -> Option<Refusal> {
    match code {
        1 => Some(Refusal::Requests),
        2 => Some(Refusal::Tokens),
        3 => Some(Refusal::Concurrency),
        4 => Some(Refusal::Budget),
        _ => None,
    }
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl RedisStore {
    /// A store at `url` (`redis://` or `rediss://`); it connects on first use. Its
    /// call slots last the default slot lease unrenewed.
    pub fn new(url: &str) -> Result<Self, StoreError> {
        Self::with_slot_lease(url, crate::config::DEFAULT_SLOT_LEASE)
    }

    /// [`Self::new`], its call slots lasting `slot_lease` unrenewed.
    pub fn with_slot_lease(url: &str, slot_lease: std::time::Duration) -> Result<Self, StoreError> {
        Self::at(&RedisAddress::plain(url), slot_lease)
    }

    /// A store in the Redis at `address` (its TLS certificates with it), its call
    /// slots lasting `slot_lease` unrenewed.
    pub fn at(address: &RedisAddress, slot_lease: std::time::Duration) -> Result<Self, StoreError> {
        let link = Arc::new(Link::new(address)?);
        let writer = Writer::new(Arc::clone(&link));
        let slots = HeldSlots::new(slot_lease, Arc::clone(&link), writer.ids().replica());
        Ok(Self {
            writer,
            watches: SharedWatches::new(address)?,
            link,
            leases: LeaseBook::default(),
            slots,
            admit: Script::new(ADMIT),
            lease: Script::new(LEASE),
        })
    }

    /// This replica's name in Redis: its write ids and call slots carry it.
    pub fn replica(&self) -> &str {
        self.writer.ids().replica()
    }

    /// Sends the charges and usage this replica has gathered now, rather than a moment
    /// later.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.writer.flush().await
    }

    /// One exact admission (a subject with calls at once).
    async fn admit_exactly(
        &self,
        subject: &str,
        limits: &KeyLimits,
        now: u64,
    ) -> Result<Admission, StoreError> {
        let mut conn = self.link.connection().await?;
        let (minute, window_left) = minute_window(now);
        let (period, period_left) = limits
            .budget
            .map_or((0, 0), |b| budget_period(now, b.period));
        let budget = limits.budget;
        let slot = self.writer.ids().next();
        let mut call = self.admit.prepare_invoke();
        call.key(key(subject, "req", minute))
            .key(key(subject, "tok", minute))
            .key(slots_key(subject))
            .key(key(subject, USD, period))
            .key(key(subject, "btok", period))
            .key(key(subject, USD_BEFORE, period))
            .arg(limit_arg(limits.requests_per_minute))
            .arg(limit_arg(limits.tokens_per_minute))
            .arg(limit_arg(limits.concurrent.map(u64::from)))
            .arg(budget.and_then(|b| b.usd).map_or(-1, usd_arg))
            .arg(limit_arg(budget.and_then(|b| b.tokens)))
            .arg(window_left)
            .arg(period_left)
            .arg(self.slots.lease_secs())
            .arg(slot_name(self.replica(), slot))
            .arg(window_life(window_left));
        // The slot may be taken without its taker knowing (or be taken yet, by bytes
        // that arrive late): given back, which does nothing if it was not, unless the
        // answer said whether it was.
        let unknown = SlotInDoubt {
            writer: &self.writer,
            subject,
            slot: Some(slot),
        };
        let answer: Vec<i64> = match self
            .link
            .called(call.invoke_async(&mut conn), "a limit check", 1)
            .await
        {
            Called::Done(answer) => answer,
            Called::Unsent(e) => {
                unknown.known();
                return Err(e);
            }
            Called::Refused(e) | Called::NotMade(e) | Called::InDoubt(e) => return Err(e),
        };
        let [code, retry_after, requests, tokens, taken] = answer[..] else {
            return Err(StoreError(
                "Redis answered a limit check with nonsense".into(),
            ));
        };
        unknown.known();
        let slot = (taken == 1).then(|| {
            self.slots.hold(subject, slot);
            slot
        });
        Ok(Admission {
            state: RateState::of(limits, count(requests), count(tokens), window_left),
            refused: refusal(code).map(|r| (r, count(retry_after))),
            slot,
        })
    }

    /// The lease script's call for `subject` at `now`, its keys `keys`
    /// ([`lease_keys`]).
    fn lease_call(
        &self,
        subject: &str,
        limits: &KeyLimits,
        now: u64,
        keys: &[String; 4],
        asked: Asked,
    ) -> redis::ScriptInvocation<'_> {
        let Asked {
            most,
            wanted,
            adds,
            write_id,
        } = asked;
        let (_, window_left) = minute_window(now);
        let (period, period_left) = limits
            .budget
            .map_or((0, 0), |b| budget_period(now, b.period));
        let budget = limits.budget;
        let mut call = self.lease.prepare_invoke();
        for k in keys {
            call.key(k);
        }
        call.key(once_key(subject, self.writer.ids().replica()))
            .key(key(subject, USD_BEFORE, period));
        call.arg(limit_arg(limits.requests_per_minute))
            .arg(limit_arg(limits.tokens_per_minute))
            .arg(budget.and_then(|b| b.usd).map_or(-1, usd_arg))
            .arg(limit_arg(budget.and_then(|b| b.tokens)))
            .arg(window_left)
            .arg(period_left)
            .arg(most)
            .arg(LEASE_SHARE)
            .arg(adds[0])
            .arg(adds[1])
            .arg(adds[2])
            .arg(period_left + BUDGET_KEPT_SECS)
            .arg(write_id)
            .arg(IDS_KEPT_SECS)
            .arg(wanted)
            .arg(window_life(window_left));
        call
    }

    /// A new lease for `subject`, at least `wanted` calls (the one asking and those
    /// waiting behind it), this replica's waiting charges for the current minute and
    /// period sent with it.
    async fn take_lease(
        &self,
        subject: &str,
        limits: &KeyLimits,
        now: u64,
        wanted: u64,
    ) -> Result<Admission, StoreError> {
        let mut conn = self.link.connection().await?;
        let keys = lease_keys(subject, limits, now);
        // Marked before the waiting charges are taken: each charge made here is then
        // in what goes with the request or in what the new lease adds to its answer.
        self.leases.asking(subject, limits, now);
        let (taken, behind) = self
            .writer
            .take_for_lease(subject, [&keys[1], &keys[2], &keys[3]]);
        if behind != [0; 3] {
            let [tokens, usd_nanos, budget_tokens] = behind;
            let spend = Spend {
                tokens,
                usd_nanos,
                budget_tokens,
            };
            self.leases.not_sent(subject, spend);
        }
        let adding = |k: &String| taken.get(k).map_or(0, |a| a.by);
        let adds = [adding(&keys[1]), adding(&keys[2]), adding(&keys[3])];
        // The charges go under an id of their own: sent again after a lost answer,
        // Redis adds them once.
        let write_id = if taken.is_empty() {
            0
        } else {
            self.writer.ids().next()
        };
        let carried = Carried {
            writer: &self.writer,
            subject,
            write_id,
            taken: Some(taken),
        };
        let asked = Asked {
            most: LEASE_MAX,
            wanted: wanted.min(LEASE_MAX),
            adds,
            write_id,
        };
        let call = self.lease_call(subject, limits, now, &keys, asked);
        let answer: Vec<i64> = match self
            .link
            .called(call.invoke_async(&mut conn), "a limit check", 1)
            .await
        {
            Called::Done(answer) => {
                carried.added();
                answer
            }
            Called::Unsent(e) => {
                carried.unsent();
                return Err(e);
            }
            // Perhaps added: sent again under their id (as `carried` goes), so Redis
            // adds them once.
            Called::Refused(e) | Called::NotMade(e) | Called::InDoubt(e) => {
                drop(carried);
                return Err(e);
            }
        };
        let granted = granted(&answer)?;
        Ok(self.leases.install(subject, limits, now, granted))
    }

    /// One call for `subject` alone, asked of Redis out of turn (this request waited
    /// too long for its turn): no charges go with it, and the book's lease is left as
    /// it is.
    async fn ask_alone(
        &self,
        subject: &str,
        limits: &KeyLimits,
        now: u64,
    ) -> Result<Admission, StoreError> {
        let mut conn = self.link.connection().await?;
        let keys = lease_keys(subject, limits, now);
        let one = Asked {
            most: 1,
            wanted: 1,
            adds: [0; 3],
            write_id: 0,
        };
        let call = self.lease_call(subject, limits, now, &keys, one);
        let answer: Vec<i64> = self
            .link
            .within(call.invoke_async(&mut conn), "a limit check", 1)
            .await?;
        let granted = granted(&answer)?;
        let (_, window_left) = minute_window(now);
        Ok(Admission {
            state: RateState::of(limits, granted.requests, granted.tokens, window_left),
            refused: granted.refused,
            slot: None,
        })
    }
}

/// What a lease request asks of Redis, besides the subject's limits.
struct Asked {
    /// At most this many calls, and at least `wanted` (the requests waiting for it).
    most: u64,
    wanted: u64,
    /// The charges it adds (tokens, USD in billionths, budget tokens), under the
    /// write id `write_id` (0: none).
    adds: [i64; 3],
    write_id: u64,
}

/// The keys a lease of `subject` at `now` reads and writes: requests and tokens of
/// the minute, USD and tokens of the budget's period.
fn lease_keys(subject: &str, limits: &KeyLimits, now: u64) -> [String; 4] {
    let (minute, _) = minute_window(now);
    let (period, _) = limits
        .budget
        .map_or((0, 0), |b| budget_period(now, b.period));
    [
        key(subject, "req", minute),
        key(subject, "tok", minute),
        key(subject, USD, period),
        key(subject, "btok", period),
    ]
}

/// What Redis granted, from the lease script's answer.
fn granted(answer: &[i64]) -> Result<Granted, StoreError> {
    let [code, retry_after, requests, tokens, usd, btok, calls] = answer[..] else {
        return Err(StoreError(
            "Redis answered a limit check with nonsense".into(),
        ));
    };
    Ok(Granted {
        refused: refusal(code).map(|r| (r, count(retry_after))),
        requests: count(requests),
        tokens: count(tokens),
        usd_nanos: count(usd),
        budget_tokens: count(btok),
        calls: count(calls),
    })
}

/// The charges taken from the writer to go with a lease request, until the request's
/// outcome is known. Dropped before (the admission's future dropped while Redis had
/// the request: cancelled, or its runtime shut down at the end of a graceful stop's
/// grace period), they are a write in doubt: Redis may have added them, so they are
/// sent again under their id, and added once.
struct Carried<'a> {
    writer: &'a Arc<Writer>,
    subject: &'a str,
    write_id: u64,
    taken: Option<Counters>,
}

impl Carried<'_> {
    /// Redis added them and answered: their id may be forgotten.
    fn added(mut self) {
        if self.taken.take().is_some() && self.write_id != 0 {
            self.writer.answered(self.subject, self.write_id);
        }
    }

    /// Not sent: they wait again, with what came since.
    fn unsent(mut self) {
        if let Some(taken) = self.taken.take() {
            self.writer.put_back(self.subject, taken);
        }
    }
}

impl Drop for Carried<'_> {
    fn drop(&mut self) {
        let Some(taken) = self.taken.take() else {
            return;
        };
        if self.write_id != 0 {
            let write = OnceWrite::of_counters(self.subject, self.write_id, &taken, Instant::now());
            self.writer.in_doubt(write);
        }
    }
}

/// A call slot an admission asked Redis for, until the answer says whether it was
/// taken. Dropped before (a call Redis refused or left unanswered, an answer that
/// makes no sense, or the admission's future dropped while Redis had the request:
/// cancelled, or its runtime shut down at the end of a graceful stop's grace
/// period), it is given back: else a slot Redis took would hold one of the key's
/// calls at once until its lease lapsed.
struct SlotInDoubt<'a> {
    writer: &'a Arc<Writer>,
    subject: &'a str,
    slot: Option<SlotId>,
}

impl SlotInDoubt<'_> {
    /// Whether the slot was taken is known (or it was never asked for).
    fn known(mut self) {
        self.slot = None;
    }
}

impl Drop for SlotInDoubt<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.writer.release(self.subject, slot);
        }
    }
}

#[async_trait]
impl LimitStore for RedisStore {
    /// Decided here when a lease covers the request; concurrency is always Redis's.
    fn admit_now(
        &self,
        subject: &str,
        limits: &KeyLimits,
        now: u64,
    ) -> Option<Result<Admission, StoreError>> {
        if limits.concurrent.is_some() {
            return None;
        }
        self.leases.admit(subject, limits, now).map(Ok)
    }

    async fn admit(
        &self,
        subject: &str,
        limits: &KeyLimits,
        now: u64,
    ) -> Result<Admission, StoreError> {
        if let Some(decided) = self.admit_now(subject, limits, now) {
            return decided;
        }
        if limits.concurrent.is_some() {
            return self.admit_exactly(subject, limits, now).await;
        }
        // Waited for no longer than a call may take: past it, asked of Redis alone.
        let turn = self.leases.turn_to_ask(subject, now, CALL_TIMEOUT).await;
        let now = turn.now();
        // Another request may have brought a lease while this one waited its turn.
        if let Some(admission) = self.leases.admit(subject, limits, now) {
            return Ok(admission);
        }
        match &turn {
            Turn::Mine { behind, .. } => {
                self.take_lease(subject, limits, now, behind.saturating_add(1))
                    .await
            }
            Turn::TooLong { .. } => self.ask_alone(subject, limits, now).await,
            Turn::NoBook { .. } => self.take_lease(subject, limits, now, 1).await,
        }
    }

    /// The lease's view when this replica holds one for the minute (what Redis held
    /// then, and this replica's own since), else the minute's counts read from Redis.
    async fn peek(&self, subject: &str, limits: &KeyLimits, now: u64) -> Option<RateState> {
        if let Some(state) = self.leases.state(subject, limits, now) {
            return Some(state);
        }
        let mut conn = self.link.connection().await.ok()?;
        let (minute, window_left) = minute_window(now);
        let mut read = redis::cmd("MGET");
        read.arg(key(subject, "req", minute))
            .arg(key(subject, "tok", minute));
        let counts: Vec<Option<u64>> = match self
            .link
            .called(read.query_async(&mut conn), "a read of a key's windows", 1)
            .await
        {
            Called::Done(counts) => counts,
            _ => return None,
        };
        let count = |i: usize| counts.get(i).copied().flatten().unwrap_or(0);
        Some(RateState::of(limits, count(0), count(1), window_left))
    }

    fn charge(
        &self,
        subject: &str,
        limits: &KeyLimits,
        tokens: u64,
        usd: f64,
        now: u64,
    ) -> Result<(), StoreError> {
        let nanos = usd_nanos(usd);
        let by = i64::try_from(tokens).unwrap_or(i64::MAX);
        if limits.tokens_per_minute.is_some() {
            let (minute, left) = minute_window(now);
            self.writer
                .charge(subject, key(subject, "tok", minute), by, window_life(left));
        }
        if let Some(budget) = limits.budget {
            let (period, left) = budget_period(now, budget.period);
            let ttl = left + BUDGET_KEPT_SECS;
            let usd_by = i64::try_from(nanos).unwrap_or(i64::MAX);
            self.writer
                .charge(subject, key(subject, USD, period), usd_by, ttl);
            self.writer
                .charge(subject, key(subject, "btok", period), by, ttl);
        }
        // After the writer has it: a lease request taking the waiting charges between
        // the two then sends it, or finds it here (see `take_lease`).
        self.leases.charged(subject, limits, tokens, nanos, now);
        Ok(())
    }

    fn record_usage(
        &self,
        key: &str,
        model: &str,
        day: u64,
        usage: &UsageRecord,
    ) -> Result<(), StoreError> {
        self.writer
            .usage(key, day, model, usage, USAGE_DAYS_KEPT * 86_400);
        Ok(())
    }

    async fn usage(
        &self,
        key: &str,
        first: u64,
        last: u64,
    ) -> Result<BTreeMap<String, UsageRecord>, StoreError> {
        // What this replica gathered goes first, so the report has it; when Redis does
        // not take it, the read below fails the same way.
        let _ = self.writer.flush().await;
        let mut conn = self.link.connection().await?;
        let mut pipe = redis::pipe();
        for day in first..=last {
            pipe.hgetall(usage_key(key, day));
        }
        let days: Vec<HashMap<String, u64>> = self
            .link
            .within(pipe.query_async(&mut conn), "a usage read", 4)
            .await?;
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

    fn release(&self, subject: &str, slot: SlotId) {
        self.slots.give_back(subject, slot);
        self.writer.release(subject, slot);
    }

    /// One `EXISTS`: whether any replica set it.
    async fn was_charged(&self, answer: &AnswerKey, _now: u64) -> Result<bool, StoreError> {
        let mut conn = self.link.connection().await?;
        let mut exists = redis::cmd("EXISTS");
        exists.arg(charged_key(answer));
        let found: i64 = self
            .link
            .within(exists.query_async(&mut conn), "a charged-answer check", 1)
            .await?;
        Ok(found > 0)
    }

    fn shared_watches(&self) -> Option<&SharedWatches> {
        Some(&self.watches)
    }

    fn outlives_process(&self) -> bool {
        true
    }

    /// On a runtime of its own, and a connection made anew: those of the server went
    /// with its runtimes.
    fn write_out_at_exit(&self, bound: std::time::Duration) {
        if self
            .link
            .run_at_exit(bound, self.writer.write_out())
            .is_none()
        {
            log::warn!(
                "charges and usage not all written to Redis at exit within {bound:?}: they are lost"
            );
        }
    }

    /// One `SET NX` every replica asks: the first sets it.
    async fn first_charge(&self, answer: &AnswerKey, _now: u64) -> Result<bool, StoreError> {
        let mut conn = self.link.connection().await?;
        let mut set = redis::cmd("SET");
        set.arg(charged_key(answer))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(CHARGED_ONCE_KEPT_SECS);
        let set: Option<String> = self
            .link
            .within(set.query_async(&mut conn), "a charged-answer check", 1)
            .await?;
        Ok(set.is_some())
    }
}

/// The key that says an answer generated apart from its request was charged,
/// `aurora:charged:DIGEST`.
fn charged_key(answer: &AnswerKey) -> String {
    format!("aurora:charged:{}", answer.hex())
}
