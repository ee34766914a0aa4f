//! A replica's leases: a batch of a subject's current minute, granted by Redis at
//! once, served here without asking again. A lease also carries what Redis knew of
//! the subject's tokens and budget when it was granted, to which this replica adds its
//! own charges as they come; and a refusal Redis gave, which holds until its window
//! or period ends (counters only grow within one). The charges this replica makes
//! while it asks for a lease are carried into the lease that comes: Redis's answer
//! cannot hold them (they are sent after it).
//!
//! One request of a replica at a time asks Redis for a subject's lease, and asks for
//! a unit for each request waiting behind it, so requests arriving together wait about
//! one call behind the others however small the leases are; one that waits longer
//! than a call's time for its turn asks Redis alone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use super::period::{budget_period, minute_window};
use super::{usd_nanos, Admission, RateState, Refusal};
use crate::config::KeyLimits;
use crate::lookup::LookupMap;

/// The most calls one lease covers.
pub const LEASE_MAX: u64 = 64;
/// A lease takes at most this share (1/16) of a minute's requests still left, so
/// leases shrink as the window runs low and a key under 32 requests a minute is
/// counted one request at a time (one for each of the replica's requests waiting
/// together for the lease).
pub const LEASE_SHARE: u64 = 16;

/// What Redis answered to a lease request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    /// Why the subject is refused, and the seconds after which it may try again.
    pub refused: Option<(Refusal, u64)>,
    /// The minute's requests counted in Redis, this lease included.
    pub requests: u64,
    /// The minute's tokens, the budget's USD (billionths) and tokens spent, in Redis.
    pub tokens: u64,
    pub usd_nanos: u64,
    pub budget_tokens: u64,
    /// Calls the lease covers (0 when refused), the one asking included.
    pub calls: u64,
}

/// What this replica charged of a minute's tokens and a budget.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Spend {
    /// Of the minute's tokens.
    pub tokens: u64,
    /// Of the budget: US dollars (billionths) and tokens.
    pub usd_nanos: u64,
    pub budget_tokens: u64,
}

impl Spend {
    fn add(&mut self, more: Spend) {
        self.tokens = self.tokens.saturating_add(more.tokens);
        self.usd_nanos = self.usd_nanos.saturating_add(more.usd_nanos);
        self.budget_tokens = self.budget_tokens.saturating_add(more.budget_tokens);
    }
}

/// The limits, minute and budget period a lease (or a request for one) speaks of.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Scope {
    limits: KeyLimits,
    minute: u64,
    period: u64,
}

impl Scope {
    fn of(limits: &KeyLimits, now: u64) -> Self {
        Self {
            limits: *limits,
            minute: minute_window(now).0,
            period: limits.budget.map_or(0, |b| budget_period(now, b.period).0),
        }
    }

    /// Whether this speaks of `limits` at `now` (same limits, minute, period).
    fn current(&self, limits: &KeyLimits, now: u64) -> bool {
        self.limits == *limits
            && self.minute == minute_window(now).0
            && limits
                .budget
                .is_none_or(|b| self.period == budget_period(now, b.period).0)
    }
}

/// A lease request on its way to Redis, and what this replica charged that its answer
/// will not hold: the charges made since it was sent, and those that did not go with
/// it.
#[derive(Debug)]
struct Asking {
    scope: Scope,
    unsent: Spend,
}

#[derive(Debug, Default)]
struct Lease {
    scope: Scope,
    /// Calls this replica may still admit from the lease.
    left: u64,
    requests: u64,
    tokens: u64,
    usd_nanos: u64,
    budget_tokens: u64,
    /// A refusal Redis gave, and the Unix second it ends.
    refused: Option<(Refusal, u64)>,
    /// The request for the next lease, while it is on its way.
    asking: Option<Asking>,
}

impl Lease {
    /// Whether this lease speaks of `limits` at `now` (same limits, minute, period).
    fn current(&self, limits: &KeyLimits, now: u64) -> bool {
        self.scope.current(limits, now)
    }

    fn state(&self, now: u64) -> RateState {
        let used = self.requests.saturating_sub(self.left);
        RateState::of(&self.scope.limits, used, self.tokens, minute_window(now).1)
    }

    fn add(&mut self, spend: Spend) {
        self.tokens = self.tokens.saturating_add(spend.tokens);
        self.usd_nanos = self.usd_nanos.saturating_add(spend.usd_nanos);
        self.budget_tokens = self.budget_tokens.saturating_add(spend.budget_tokens);
    }

    /// Whether what is known here (Redis at the lease, plus this replica's charges
    /// since) already spends the tokens or the budget: then Redis is asked again.
    fn spent_here(&self) -> bool {
        let l = &self.scope.limits;
        l.tokens_per_minute.is_some_and(|t| self.tokens >= t)
            || l.budget.is_some_and(|b| {
                b.usd.is_some_and(|usd| self.usd_nanos >= usd_nanos(usd))
                    || b.tokens.is_some_and(|t| self.budget_tokens >= t)
            })
    }
}

/// A subject's lease, and the turn its replica's requests take to ask for a new one.
#[derive(Debug, Default)]
struct Entry {
    lease: Mutex<Lease>,
    asking: Arc<tokio::sync::Mutex<()>>,
    /// Requests waiting for the turn.
    waiting: AtomicU64,
}

/// One request counted among those waiting for a turn while it waits (until it has
/// the turn, gives up, or is dropped).
struct Waiting<'a>(&'a AtomicU64);

impl<'a> Waiting<'a> {
    fn on(count: &'a AtomicU64) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How a request's wait for its turn to ask Redis for a lease ended; each says the
/// Unix second it ended at (`now`).
#[derive(Debug)]
pub enum Turn {
    /// Its turn, held until this is dropped.
    Mine {
        now: u64,
        /// Requests waiting for the lease it asks for: Redis is asked for a unit for
        /// each, besides its own.
        behind: u64,
        _turn: tokio::sync::OwnedMutexGuard<()>,
    },
    /// It waited as long as it may: it asks Redis alone, out of turn.
    TooLong { now: u64 },
    /// The book cannot be read: it asks Redis without a turn.
    NoBook { now: u64 },
}

impl Turn {
    /// The Unix second the wait ended at.
    pub fn now(&self) -> u64 {
        match self {
            Turn::Mine { now, .. } | Turn::TooLong { now } | Turn::NoBook { now } => *now,
        }
    }
}

/// Seconds since the Unix epoch by the system's clock.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The leases of one replica, per subject.
#[derive(Debug)]
pub struct LeaseBook {
    subjects: RwLock<LookupMap<String, Arc<Entry>>>,
    /// The clock a wait for a turn is measured on (the system's; a test's own).
    clock: fn() -> u64,
}

impl Default for LeaseBook {
    fn default() -> Self {
        Self {
            subjects: RwLock::default(),
            clock: unix_now,
        }
    }
}

impl LeaseBook {
    fn entry(&self, subject: &str) -> Option<Arc<Entry>> {
        if let Some(e) = self.subjects.read().ok()?.get(subject) {
            return Some(Arc::clone(e));
        }
        let mut all = self.subjects.write().ok()?;
        Some(Arc::clone(all.entry(subject.to_string()).or_default()))
    }

    /// Waits for `subject`'s turn to ask Redis for a lease, at most `bound`: one
    /// request of a replica at a time, so requests arriving together share one lease
    /// rather than each taking one and leaving the others' units unused. `now` (the
    /// Unix second the request came at) is moved on by what the clock moved while it
    /// waited: one that waited across the end of a minute counts in the new one.
    pub async fn turn_to_ask(&self, subject: &str, now: u64, bound: Duration) -> Turn {
        let started = (self.clock)();
        let later = || now.saturating_add((self.clock)().saturating_sub(started));
        let Some(entry) = self.entry(subject) else {
            return Turn::NoBook { now };
        };
        let waiting = Waiting::on(&entry.waiting);
        let turn = tokio::time::timeout(bound, Arc::clone(&entry.asking).lock_owned()).await;
        drop(waiting);
        match turn {
            Ok(turn) => Turn::Mine {
                now: later(),
                behind: entry.waiting.load(Ordering::Acquire),
                _turn: turn,
            },
            Err(_) => Turn::TooLong { now: later() },
        }
    }

    /// The answer to `subject`'s request at `now` from its lease, or `None` when Redis
    /// must be asked (no lease for this minute, none left, or the tokens or budget
    /// look spent from here).
    pub fn admit(&self, subject: &str, limits: &KeyLimits, now: u64) -> Option<Admission> {
        let entry = self.entry(subject)?;
        let mut lease = entry.lease.lock().ok()?;
        if !lease.current(limits, now) {
            return None;
        }
        if let Some((refusal, until)) = lease.refused {
            if now < until {
                return Some(Admission {
                    state: lease.state(now),
                    refused: Some((refusal, until - now)),
                    slot: None,
                });
            }
            lease.refused = None;
        }
        if lease.left == 0 || lease.spent_here() {
            return None;
        }
        lease.left -= 1;
        Some(Admission {
            state: lease.state(now),
            refused: None,
            slot: None,
        })
    }

    /// `subject`'s windows at `now` as its lease for this minute tells them; `None`
    /// without one.
    pub fn state(&self, subject: &str, limits: &KeyLimits, now: u64) -> Option<RateState> {
        let entry = self.entry(subject)?;
        let lease = entry.lease.lock().ok()?;
        lease.current(limits, now).then(|| lease.state(now))
    }

    /// Marks that this replica asks Redis for a lease of `subject` under `limits` at
    /// `now`: from here until the lease is installed, its charges of that minute and
    /// period are kept for the new lease too. Marked before the waiting charges are
    /// taken to go with the request, so that none falls between.
    pub fn asking(&self, subject: &str, limits: &KeyLimits, now: u64) {
        let Some(entry) = self.entry(subject) else {
            return;
        };
        let Ok(mut lease) = entry.lease.lock() else {
            return;
        };
        lease.asking = Some(Asking {
            scope: Scope::of(limits, now),
            unsent: Spend::default(),
        });
    }

    /// `spend`, charged here before `subject`'s lease request was sent, does not go
    /// with it (it waits behind a write in doubt): the new lease counts it all the same.
    pub fn not_sent(&self, subject: &str, spend: Spend) {
        let Some(entry) = self.entry(subject) else {
            return;
        };
        let Ok(mut lease) = entry.lease.lock() else {
            return;
        };
        if let Some(asking) = lease.asking.as_mut() {
            asking.unsent.add(spend);
        }
    }

    /// Keeps what Redis `granted` to `subject` at `now` (the asking call takes the
    /// first unit), with what this replica charged that the answer cannot hold, and
    /// answers that call.
    pub fn install(
        &self,
        subject: &str,
        limits: &KeyLimits,
        now: u64,
        granted: Granted,
    ) -> Admission {
        let scope = Scope::of(limits, now);
        let mut fresh = Lease {
            scope,
            left: granted.calls.saturating_sub(1),
            requests: granted.requests,
            tokens: granted.tokens,
            usd_nanos: granted.usd_nanos,
            budget_tokens: granted.budget_tokens,
            refused: granted
                .refused
                .map(|(r, after)| (r, now.saturating_add(after))),
            asking: None,
        };
        let entry = self.entry(subject);
        let mut lease = entry.as_ref().and_then(|e| e.lease.lock().ok());
        if let Some(asked) = lease.as_mut().and_then(|l| l.asking.take()) {
            if asked.scope == scope {
                fresh.add(asked.unsent);
            }
        }
        let admission = Admission {
            state: fresh.state(now),
            refused: granted.refused,
            slot: None,
        };
        if let Some(lease) = lease.as_mut() {
            **lease = fresh;
        }
        admission
    }

    /// Adds this replica's charge to `subject`'s lease, so its own calls count here
    /// at once.
    pub fn charged(&self, subject: &str, limits: &KeyLimits, tokens: u64, usd: u64, now: u64) {
        let Ok(all) = self.subjects.read() else {
            return;
        };
        let Some(entry) = all.get(subject) else {
            return;
        };
        let Ok(mut lease) = entry.lease.lock() else {
            return;
        };
        let spend = Spend {
            tokens,
            usd_nanos: usd,
            budget_tokens: tokens,
        };
        if lease.current(limits, now) {
            lease.add(spend);
        }
        // Sent after the lease request on its way, so not in its answer.
        if let Some(asking) = lease.asking.as_mut() {
            if asking.scope.current(limits, now) {
                asking.unsent.add(spend);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Budget, BudgetPeriod};

    /// 2026-12-04T02:30:15Z: 45 s left in the minute.
    const NOW: u64 = 1_796_351_415;

    fn granted(calls: u64, requests: u64) -> Granted {
        Granted {
            refused: None,
            requests,
            tokens: 0,
            usd_nanos: 0,
            budget_tokens: 0,
            calls,
        }
    }

    #[test]
    fn a_lease_is_served_here_until_spent_and_dies_with_its_minute() {
        let book = LeaseBook::default();
        let limits = KeyLimits {
            requests_per_minute: Some(3000),
            ..KeyLimits::default()
        };
        assert!(book.admit("key:a", &limits, NOW).is_none(), "no lease yet");
        let first = book.install("key:a", &limits, NOW, granted(3, 103));
        assert_eq!(first.state.requests.unwrap().remaining, 3000 - 101);
        for remaining in [3000 - 102, 3000 - 103] {
            let a = book.admit("key:a", &limits, NOW).unwrap();
            assert_eq!(a.refused, None);
            assert_eq!(a.state.requests.unwrap().remaining, remaining);
        }
        assert!(book.admit("key:a", &limits, NOW).is_none(), "spent");
        book.install("key:a", &limits, NOW, granted(5, 108));
        assert!(
            book.admit("key:a", &limits, NOW + 45).is_none(),
            "a new minute"
        );
        let raised = KeyLimits {
            requests_per_minute: Some(4000),
            ..limits
        };
        book.install("key:a", &limits, NOW, granted(5, 113));
        assert!(book.admit("key:a", &raised, NOW).is_none(), "a reload");
    }

    #[test]
    fn a_refusal_from_redis_holds_until_its_window_ends() {
        let book = LeaseBook::default();
        let limits = KeyLimits {
            requests_per_minute: Some(10),
            ..KeyLimits::default()
        };
        let refused = Granted {
            refused: Some((Refusal::Requests, 45)),
            ..granted(0, 10)
        };
        let a = book.install("key:a", &limits, NOW, refused);
        assert_eq!(a.refused, Some((Refusal::Requests, 45)));
        let again = book.admit("key:a", &limits, NOW + 5).unwrap();
        assert_eq!(again.refused, Some((Refusal::Requests, 40)));
        assert_eq!(again.state.requests.unwrap().remaining, 0);
        assert!(book.admit("key:a", &limits, NOW + 45).is_none());
    }

    #[test]
    fn charges_made_while_a_lease_is_asked_for_count_in_the_lease_that_comes() {
        let book = LeaseBook::default();
        let limits = KeyLimits {
            tokens_per_minute: Some(1000),
            ..KeyLimits::default()
        };
        book.install("key:a", &limits, NOW, granted(1, 0));
        book.asking("key:a", &limits, NOW);
        // While Redis works on the request: charges it was sent before, and one of the
        // next minute, which this lease does not count.
        book.charged("key:a", &limits, 500, 0, NOW);
        book.charged("key:a", &limits, 300, 0, NOW + 45);
        let waiting = Spend {
            tokens: 200,
            ..Spend::default()
        };
        book.not_sent("key:a", waiting);
        let first = book.install("key:a", &limits, NOW, granted(64, 0));
        assert_eq!(first.state.tokens.unwrap().remaining, 1000 - 500 - 200);
        assert!(book.admit("key:a", &limits, NOW).is_some());
        book.charged("key:a", &limits, 300, 0, NOW);
        assert!(
            book.admit("key:a", &limits, NOW).is_none(),
            "spent as far as this replica knows: Redis decides"
        );
    }

    #[tokio::test]
    async fn a_request_waits_for_its_turn_to_ask_no_longer_than_its_bound() {
        // A clock that stands still: the wait crosses no second.
        let book = LeaseBook {
            clock: || 0,
            ..LeaseBook::default()
        };
        let holder = book.turn_to_ask("key:a", NOW, Duration::from_secs(1)).await;
        assert!(matches!(holder, Turn::Mine { behind: 0, .. }));
        // The turn is held for good (a call to a slow Redis, and another, and another):
        // the next request stops waiting after its bound, not after them.
        let waited = tokio::time::timeout(
            Duration::from_secs(10),
            book.turn_to_ask("key:a", NOW, Duration::from_millis(50)),
        )
        .await
        .expect("gave up waiting at its bound");
        assert!(matches!(waited, Turn::TooLong { now: NOW }), "{waited:?}");
        let entry = book.entry("key:a").unwrap();
        assert_eq!(
            entry.waiting.load(Ordering::Acquire),
            0,
            "no longer waiting"
        );
        drop(holder);
    }

    /// A clock of the test's own, for [`LeaseBook::clock`].
    static CLOCK: AtomicU64 = AtomicU64::new(0);

    fn test_clock() -> u64 {
        CLOCK.load(Ordering::Acquire)
    }

    #[tokio::test]
    async fn the_request_whose_turn_comes_asks_for_those_behind_it_in_the_minute_it_came() {
        // The last second of a minute.
        let last = NOW + 44;
        CLOCK.store(last, Ordering::Release);
        let book = Arc::new(LeaseBook {
            clock: test_clock,
            ..LeaseBook::default()
        });
        let holder = book
            .turn_to_ask("key:a", last, Duration::from_secs(60))
            .await;
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let book = Arc::clone(&book);
                tokio::spawn(async move {
                    let turn = book
                        .turn_to_ask("key:a", last, Duration::from_secs(60))
                        .await;
                    let seen = match &turn {
                        Turn::Mine { now, behind, .. } => (*now, *behind),
                        other => panic!("{other:?}"),
                    };
                    // Held a moment, as a call to Redis holds it.
                    tokio::task::yield_now().await;
                    seen
                })
            })
            .collect();
        let entry = book.entry("key:a").unwrap();
        while entry.waiting.load(Ordering::Acquire) < 3 {
            tokio::task::yield_now().await;
        }
        // The holder's call takes a while; the minute ends meanwhile.
        CLOCK.store(last + 1, Ordering::Release);
        drop(holder);
        let mut seen = Vec::new();
        for waiter in waiters {
            seen.push(waiter.await.unwrap());
        }
        seen.sort_unstable();
        assert_eq!(
            seen,
            [(last + 1, 0), (last + 1, 1), (last + 1, 2)],
            "each asks for those still waiting, in the new minute"
        );
    }

    #[test]
    fn own_charges_count_at_once_and_send_the_next_call_to_redis() {
        let book = LeaseBook::default();
        let limits = KeyLimits {
            budget: Some(Budget {
                usd: None,
                tokens: Some(1000),
                period: BudgetPeriod::Day,
            }),
            ..KeyLimits::default()
        };
        book.install("key:a", &limits, NOW, granted(10, 0));
        assert!(book.admit("key:a", &limits, NOW).is_some());
        book.charged("key:a", &limits, 1000, 0, NOW);
        assert!(
            book.admit("key:a", &limits, NOW).is_none(),
            "spent as far as this replica knows: Redis decides"
        );
    }
}
