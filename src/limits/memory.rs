//! The in-process store: exact counters per subject, kept behind a lock of its own
//! each, with nothing but memory on the request path.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;

use super::charged_once::ChargedResponses;
use super::period::{budget_period, minute_window, MINUTE};
use super::{
    usd_nanos, Admission, LimitStore, RateState, Refusal, SlotId, StoreError, UsageRecord,
    USAGE_DAYS_KEPT,
};
use crate::config::{BudgetPeriod, KeyLimits};
use crate::lookup::LookupMap;
use crate::metrics::deferred_answer::AnswerKey;

#[derive(Debug, Default)]
struct Counters {
    window: Mutex<Window>,
    in_flight: AtomicU32,
    budget: Mutex<Spent>,
}

#[derive(Debug, Default)]
struct Window {
    minute: u64,
    requests: u64,
    tokens: u64,
}

impl Window {
    /// Turns to the minute `now` falls in when it is later than the one counted,
    /// starting its counts from zero; returns the seconds left of the window counted.
    /// An earlier minute counts in the current window: an instant taken just before a
    /// minute ended, by a thread that ran after requests of the next one, must not
    /// wipe their counts (each such reset would give the minute its limit again).
    fn roll(&mut self, now: u64) -> u64 {
        let (minute, left) = minute_window(now);
        if minute > self.minute {
            *self = Window {
                minute,
                ..Window::default()
            };
        }
        if minute < self.minute {
            // The window counted began after `now`: at most a minute of it is left.
            return MINUTE;
        }
        left
    }
}

/// What a subject spent of its budget in the current period of each kind, so that a
/// budget whose kind a reload changes, then changes back, finds what it spent (as
/// Redis does, where each period is a key of its own).
#[derive(Debug, Default)]
struct Spent {
    /// By kind: day, week, month.
    kinds: [PeriodSpent; 3],
}

impl Spent {
    /// The spend of `kind`'s period that `now` falls in, and the seconds left of it.
    fn roll(&mut self, now: u64, kind: BudgetPeriod) -> (&mut PeriodSpent, u64) {
        let slot = match kind {
            BudgetPeriod::Day => 0,
            BudgetPeriod::Week => 1,
            BudgetPeriod::Month => 2,
        };
        let spent = &mut self.kinds[slot];
        let left = spent.roll(now, kind);
        (spent, left)
    }
}

#[derive(Debug, Default)]
struct PeriodSpent {
    /// Which period of its kind.
    period: u64,
    /// When it ends (Unix seconds): until then the calendar need not be read again.
    ends: u64,
    usd_nanos: u64,
    tokens: u64,
}

impl PeriodSpent {
    /// Turns to the period of `kind` that `now` falls in when the one counted has
    /// ended, starting its counts from zero; returns the seconds left of it.
    fn roll(&mut self, now: u64, kind: BudgetPeriod) -> u64 {
        if now >= self.ends {
            let (period, left) = budget_period(now, kind);
            if self.period != period {
                *self = PeriodSpent {
                    period,
                    ..PeriodSpent::default()
                };
            }
            self.ends = now + left;
        }
        self.ends.saturating_sub(now)
    }
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> StoreError {
    StoreError("a limit counter lock was poisoned".into())
}

/// One key's usage: day → model → what it used.
type UsageByDay = BTreeMap<u64, LookupMap<String, UsageRecord>>;

/// Adds `usage` of `model` on `day` to one key's `days`.
fn add_usage(days: &mut UsageByDay, day: u64, model: &str, usage: &UsageRecord) {
    if !days.contains_key(&day) {
        // A new day: what is past keeping goes.
        days.retain(|d, _| d + USAGE_DAYS_KEPT > day);
    }
    UsageRecord::add_to_model(days.entry(day).or_default(), model, usage);
}

/// Counters in this process's memory: exact for one replica.
#[derive(Debug, Default)]
pub struct MemoryStore {
    subjects: RwLock<LookupMap<String, Arc<Counters>>>,
    /// Key → day → model → usage.
    usage: Mutex<LookupMap<String, UsageByDay>>,
    charged: ChargedResponses,
}

impl MemoryStore {
    fn counters(&self, subject: &str) -> Result<Arc<Counters>, StoreError> {
        if let Some(c) = self.subjects.read().map_err(poisoned)?.get(subject) {
            return Ok(Arc::clone(c));
        }
        let mut all = self.subjects.write().map_err(poisoned)?;
        Ok(Arc::clone(all.entry(subject.to_string()).or_default()))
    }

    /// The admission, decided in place: the counters are this process's own.
    fn decide(&self, subject: &str, limits: &KeyLimits, now: u64) -> Result<Admission, StoreError> {
        let counters = self.counters(subject)?;
        let mut refused = None;
        if let Some(budget) = limits.budget {
            let mut kinds = counters.budget.lock().map_err(poisoned)?;
            let (spent, period_left) = kinds.roll(now, budget.period);
            let over_usd = budget
                .usd
                .is_some_and(|usd| spent.usd_nanos >= usd_nanos(usd));
            let over_tokens = budget.tokens.is_some_and(|t| spent.tokens >= t);
            if over_usd || over_tokens {
                refused = Some((Refusal::Budget, period_left));
            }
        }
        let mut window = counters.window.lock().map_err(poisoned)?;
        let window_left = window.roll(now);
        if refused.is_none() {
            if limits.tokens_per_minute.is_some_and(|l| window.tokens >= l) {
                refused = Some((Refusal::Tokens, window_left));
            } else if limits
                .requests_per_minute
                .is_some_and(|l| window.requests >= l)
            {
                refused = Some((Refusal::Requests, window_left));
            }
        }
        let mut slot = None;
        if let (None, Some(max)) = (refused, limits.concurrent) {
            // Taken only below the limit: a refused call never holds the count up for
            // another to be refused by.
            let taken = counters
                .in_flight
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < max).then_some(n + 1)
                });
            if taken.is_ok() {
                slot = Some(0);
            } else {
                refused = Some((Refusal::Concurrency, 1));
            }
        }
        if refused.is_none() && limits.requests_per_minute.is_some() {
            window.requests += 1;
        }
        let state = RateState::of(limits, window.requests, window.tokens, window_left);
        Ok(Admission {
            state,
            refused,
            slot,
        })
    }

    /// The windows of `subject` at `now`, exactly, nothing counted.
    fn windows(&self, subject: &str, limits: &KeyLimits, now: u64) -> Option<RateState> {
        let counters = self.counters(subject).ok()?;
        let mut window = counters.window.lock().ok()?;
        let window_left = window.roll(now);
        Some(RateState::of(
            limits,
            window.requests,
            window.tokens,
            window_left,
        ))
    }
}

#[async_trait]
impl LimitStore for MemoryStore {
    fn admit_now(
        &self,
        subject: &str,
        limits: &KeyLimits,
        now: u64,
    ) -> Option<Result<Admission, StoreError>> {
        Some(self.decide(subject, limits, now))
    }

    async fn admit(
        &self,
        subject: &str,
        limits: &KeyLimits,
        now: u64,
    ) -> Result<Admission, StoreError> {
        self.decide(subject, limits, now)
    }

    async fn peek(&self, subject: &str, limits: &KeyLimits, now: u64) -> Option<RateState> {
        self.windows(subject, limits, now)
    }

    fn charge(
        &self,
        subject: &str,
        limits: &KeyLimits,
        tokens: u64,
        usd: f64,
        now: u64,
    ) -> Result<(), StoreError> {
        let counters = self.counters(subject)?;
        if limits.tokens_per_minute.is_some() {
            let mut window = counters.window.lock().map_err(poisoned)?;
            window.roll(now);
            window.tokens = window.tokens.saturating_add(tokens);
        }
        if let Some(budget) = limits.budget {
            let mut kinds = counters.budget.lock().map_err(poisoned)?;
            // Charged as the key is limited now (the proxy charges by the live
            // config): a call admitted before a reload changed the period's kind counts
            // in the new kind's period, which the next admission keeps.
            let (spent, _) = kinds.roll(now, budget.period);
            spent.tokens = spent.tokens.saturating_add(tokens);
            spent.usd_nanos = spent.usd_nanos.saturating_add(usd_nanos(usd));
        }
        Ok(())
    }

    fn record_usage(
        &self,
        key: &str,
        model: &str,
        day: u64,
        usage: &UsageRecord,
    ) -> Result<(), StoreError> {
        let mut all = self.usage.lock().map_err(poisoned)?;
        // Nothing is allocated, and the key hashed once, when it has its day and model:
        // the usual case.
        match all.get_mut(key) {
            Some(days) => add_usage(days, day, model, usage),
            None => add_usage(all.entry(key.to_string()).or_default(), day, model, usage),
        }
        Ok(())
    }

    async fn usage(
        &self,
        key: &str,
        first: u64,
        last: u64,
    ) -> Result<BTreeMap<String, UsageRecord>, StoreError> {
        let all = self.usage.lock().map_err(poisoned)?;
        let mut out: BTreeMap<String, UsageRecord> = BTreeMap::new();
        let Some(days) = all.get(key) else {
            return Ok(out);
        };
        for (_, models) in days.range(first..=last) {
            for (model, usage) in models {
                out.entry(model.clone()).or_default().add(usage);
            }
        }
        Ok(out)
    }

    fn release(&self, subject: &str, _slot: SlotId) {
        if let Ok(all) = self.subjects.read() {
            if let Some(c) = all.get(subject) {
                // Never below zero, whatever the caller does.
                let _ = c
                    .in_flight
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
            }
        }
    }

    async fn was_charged(&self, answer: &AnswerKey, now: u64) -> Result<bool, StoreError> {
        self.charged
            .was_charged(answer, now)
            .ok_or_else(|| StoreError("the record of charged answers is unusable".into()))
    }

    async fn first_charge(&self, answer: &AnswerKey, now: u64) -> Result<bool, StoreError> {
        self.charged
            .first_charge(answer, now)
            .ok_or_else(|| StoreError("the record of charged answers is unusable".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Budget, BudgetPeriod};

    const NOW: u64 = 1_796_351_415;

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn requests_per_minute_are_counted_exactly_and_start_again_each_minute() {
        let store = MemoryStore::default();
        let limits = KeyLimits {
            requests_per_minute: Some(3),
            ..KeyLimits::default()
        };
        run(async {
            for left in [2, 1, 0] {
                let a = store.admit("key:a", &limits, NOW).await.unwrap();
                assert_eq!(a.refused, None);
                assert_eq!(a.state.requests.unwrap().remaining, left);
            }
            let a = store.admit("key:a", &limits, NOW).await.unwrap();
            assert_eq!(a.refused, Some((Refusal::Requests, 45)));
            let other = store.admit("key:b", &limits, NOW).await.unwrap();
            assert_eq!(other.refused, None, "each key counts alone");
            let next_minute = store.admit("key:a", &limits, NOW + 45).await.unwrap();
            assert_eq!(next_minute.refused, None);
        });
    }

    #[test]
    fn an_instant_of_the_minute_before_counts_in_the_current_window_not_wiping_it() {
        // NOW + 60 falls in the next minute. A thread whose instant was taken in the
        // minute before runs after that minute's requests.
        let store = MemoryStore::default();
        let limits = KeyLimits {
            requests_per_minute: Some(3),
            ..KeyLimits::default()
        };
        let next_minute = NOW + 60;
        let refused = |now| store.decide("key:a", &limits, now).unwrap().refused;
        for _ in 0..3 {
            assert_eq!(refused(next_minute), None);
        }
        let late = store.decide("key:a", &limits, NOW).unwrap();
        assert_eq!(
            late.refused,
            Some((Refusal::Requests, 60)),
            "counted in the current minute, which is spent"
        );
        assert_eq!(late.state.requests.unwrap().remaining, 0);
        assert_eq!(
            refused(next_minute).map(|r| r.0),
            Some(Refusal::Requests),
            "the minute's three were not wiped"
        );
        // Nor by a look at the windows (the model list) from the minute before.
        let seen = store.windows("key:a", &limits, NOW).unwrap();
        assert_eq!(seen.requests.unwrap().remaining, 0);
        assert_eq!(refused(next_minute).map(|r| r.0), Some(Refusal::Requests));
    }

    #[test]
    fn a_call_admitted_before_a_reload_changed_its_budgets_period_charges_the_new_one() {
        let store = MemoryStore::default();
        let budget = |period| KeyLimits {
            budget: Some(Budget {
                usd: None,
                tokens: Some(100),
                period,
            }),
            ..KeyLimits::default()
        };
        let (monthly, daily) = (budget(BudgetPeriod::Month), budget(BudgetPeriod::Day));
        let refused = |a: Admission| a.refused.map(|r| r.0);
        run(async {
            assert_eq!(
                refused(store.admit("key:a", &monthly, NOW).await.unwrap()),
                None
            );
            // The reload makes the budget daily; the call admitted before it ends after
            // it, before any other is admitted, and is charged as the key is limited now.
            store.charge("key:a", &daily, 60, 0.0, NOW + 1).unwrap();
            let a = store.admit("key:a", &daily, NOW + 2).await.unwrap();
            assert_eq!(refused(a), None, "60 of 100 spent");
            store.charge("key:a", &daily, 50, 0.0, NOW + 3).unwrap();
            let a = store.admit("key:a", &daily, NOW + 4).await.unwrap();
            assert_eq!(refused(a), Some(Refusal::Budget), "110 of 100 spent");
        });
    }

    #[test]
    fn tokens_and_budgets_are_charged_after_and_refuse_the_next_call() {
        let store = MemoryStore::default();
        let limits = KeyLimits {
            tokens_per_minute: Some(100),
            budget: Some(Budget {
                usd: Some(1.0),
                tokens: None,
                period: BudgetPeriod::Day,
            }),
            ..KeyLimits::default()
        };
        run(async {
            assert_eq!(
                store.admit("key:a", &limits, NOW).await.unwrap().refused,
                None
            );
            store.charge("key:a", &limits, 150, 0.2, NOW).unwrap();
            let a = store.admit("key:a", &limits, NOW + 1).await.unwrap();
            assert_eq!(a.refused.map(|r| r.0), Some(Refusal::Tokens));
            assert_eq!(a.state.tokens.unwrap().remaining, 0);
            // A new minute: the tokens are back, the budget goes on.
            store.charge("key:a", &limits, 10, 0.9, NOW + 60).unwrap();
            let a = store.admit("key:a", &limits, NOW + 61).await.unwrap();
            assert_eq!(a.refused.map(|r| r.0), Some(Refusal::Budget));
            let tomorrow = NOW + 86_400;
            assert_eq!(
                store
                    .admit("key:a", &limits, tomorrow)
                    .await
                    .unwrap()
                    .refused,
                None
            );
        });
    }

    #[test]
    fn a_budget_counts_anew_when_its_period_ends_or_its_kind_changes() {
        let store = MemoryStore::default();
        let monthly = |period| KeyLimits {
            budget: Some(Budget {
                usd: None,
                tokens: Some(100),
                period,
            }),
            ..KeyLimits::default()
        };
        let month = monthly(BudgetPeriod::Month);
        let new_year = 1_798_761_600; // 2027-01-01T00:00:00Z
        let refused = |limits: &KeyLimits, now| store.decide("key:a", limits, now).unwrap().refused;
        store.charge("key:a", &month, 100, 0.0, NOW).unwrap();
        // Spent, and told to come back when December ends, however often it asks.
        for now in [NOW, NOW + 1, new_year - 1] {
            let left = new_year - now;
            assert_eq!(refused(&month, now), Some((Refusal::Budget, left)));
        }
        assert_eq!(refused(&month, new_year), None);
        store.charge("key:a", &month, 100, 0.0, new_year).unwrap();
        assert!(refused(&month, new_year + 1).is_some());
        // The same key's budget made daily (a config read again): counted from zero.
        assert_eq!(refused(&monthly(BudgetPeriod::Day), new_year + 2), None);
    }

    #[test]
    fn a_budget_made_daily_then_monthly_again_finds_the_months_spend() {
        let store = MemoryStore::default();
        let budget = |period| KeyLimits {
            budget: Some(Budget {
                usd: Some(1.0),
                tokens: None,
                period,
            }),
            ..KeyLimits::default()
        };
        let (monthly, daily) = (budget(BudgetPeriod::Month), budget(BudgetPeriod::Day));
        let refused = |limits: &KeyLimits, now| {
            let a = store.decide("key:a", limits, now).unwrap();
            a.refused.map(|r| r.0)
        };
        store.charge("key:a", &monthly, 0, 1.0, NOW).unwrap();
        assert_eq!(refused(&monthly, NOW + 1), Some(Refusal::Budget));
        // Two reloads: the budget made daily (today's spend starts at nothing), then
        // monthly again.
        assert_eq!(refused(&daily, NOW + 2), None);
        store.charge("key:a", &daily, 0, 0.25, NOW + 3).unwrap();
        assert_eq!(
            refused(&monthly, NOW + 4),
            Some(Refusal::Budget),
            "the month's dollar was spent"
        );
        assert_eq!(refused(&daily, NOW + 5), None, "a quarter of today's");
    }

    #[test]
    fn calls_too_cheap_for_a_millionth_of_a_dollar_each_add_up_to_the_budget() {
        let store = MemoryStore::default();
        let limits = KeyLimits {
            budget: Some(Budget {
                usd: Some(0.001),
                tokens: None,
                period: BudgetPeriod::Day,
            }),
            ..KeyLimits::default()
        };
        // 20 tokens of a cheap embedding model each: $0.0000004 a call.
        for _ in 0..2_600 {
            store
                .charge("key:a", &limits, 20, 0.000_000_4, NOW)
                .unwrap();
        }
        let a = store.decide("key:a", &limits, NOW).unwrap();
        assert_eq!(a.refused.map(|r| r.0), Some(Refusal::Budget), "$0.00104");
    }

    #[test]
    fn usage_and_charges_are_taken_without_a_runtime() {
        // The gateway takes them as each request ends, without waiting on anything.
        let store = MemoryStore::default();
        let one = UsageRecord {
            requests: 1,
            input: 7,
            ..UsageRecord::default()
        };
        store.record_usage("team-a", "gpt-4o", 3, &one).unwrap();
        store.record_usage("team-a", "gpt-4o", 3, &one).unwrap();
        let limits = KeyLimits {
            tokens_per_minute: Some(100),
            ..KeyLimits::default()
        };
        store.charge("key:a", &limits, 100, 0.0, NOW).unwrap();
        let report = run(store.usage("team-a", 3, 3)).unwrap();
        assert_eq!((report["gpt-4o"].requests, report["gpt-4o"].input), (2, 14));
        let a = run(store.admit("key:a", &limits, NOW)).unwrap();
        assert_eq!(a.refused.map(|r| r.0), Some(Refusal::Tokens));
    }

    #[test]
    fn admissions_are_decided_without_waiting_and_count_as_awaited_ones_do() {
        // The gateway asks first for a decision it need not await; the memory store
        // always has one, counted in the same window as an awaited admission.
        let store = MemoryStore::default();
        let limits = KeyLimits {
            requests_per_minute: Some(2),
            ..KeyLimits::default()
        };
        let first = store.admit_now("key:a", &limits, NOW).unwrap().unwrap();
        assert!(first.refused.is_none());
        assert!(run(store.admit("key:a", &limits, NOW))
            .unwrap()
            .refused
            .is_none());
        let third = store.admit_now("key:a", &limits, NOW).unwrap().unwrap();
        assert_eq!(third.refused.map(|r| r.0), Some(Refusal::Requests));
    }

    #[test]
    fn calls_in_flight_hold_slots_until_released() {
        let store = MemoryStore::default();
        let limits = KeyLimits {
            concurrent: Some(2),
            ..KeyLimits::default()
        };
        run(async {
            let takes_a_slot = || async { store.admit("key:a", &limits, NOW).await.unwrap().slot };
            assert!(takes_a_slot().await.is_some());
            assert!(takes_a_slot().await.is_some());
            let third = store.admit("key:a", &limits, NOW).await.unwrap();
            assert_eq!(third.refused, Some((Refusal::Concurrency, 1)));
            assert!(third.slot.is_none());
            store.release("key:a", 0);
            assert!(takes_a_slot().await.is_some());
        });
    }
}
