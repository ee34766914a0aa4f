//! A replica's leases: a batch of a subject's current minute, granted by Redis at
//! once, served here without asking again. A lease also carries what Redis knew of
//! the subject's tokens and budget when it was granted, to which this replica adds its
//! own charges as they come; and a refusal Redis gave, which holds until its window
//! or period ends (counters only grow within one).

use std::sync::{Arc, Mutex, RwLock};

use super::period::{budget_period, minute_window};
use super::{usd_micros, Admission, RateState, Refusal};
use crate::config::KeyLimits;
use crate::lookup::LookupMap;

/// The most calls one lease covers.
pub const LEASE_MAX: u64 = 64;
/// A lease takes at most this share (1/16) of a minute's requests still left, so
/// leases shrink as the window runs low and a key under 32 requests a minute is
/// counted one request at a time.
pub const LEASE_SHARE: u64 = 16;

/// What Redis answered to a lease request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    /// Why the subject is refused, and the seconds after which it may try again.
    pub refused: Option<(Refusal, u64)>,
    /// The minute's requests counted in Redis, this lease included.
    pub requests: u64,
    /// The minute's tokens, the budget's USD (millionths) and tokens spent, in Redis.
    pub tokens: u64,
    pub usd_micros: u64,
    pub budget_tokens: u64,
    /// Calls the lease covers (0 when refused), the one asking included.
    pub calls: u64,
}

#[derive(Debug, Default)]
struct Lease {
    limits: KeyLimits,
    minute: u64,
    period: u64,
    /// Calls this replica may still admit from the lease.
    left: u64,
    requests: u64,
    tokens: u64,
    usd_micros: u64,
    budget_tokens: u64,
    /// A refusal Redis gave, and the Unix second it ends.
    refused: Option<(Refusal, u64)>,
}

impl Lease {
    /// Whether this lease speaks of `limits` at `now` (same limits, minute, period).
    fn current(&self, limits: &KeyLimits, now: u64) -> bool {
        self.limits == *limits
            && self.minute == minute_window(now).0
            && limits
                .budget
                .is_none_or(|b| self.period == budget_period(now, b.period).0)
    }

    fn state(&self, now: u64) -> RateState {
        let used = self.requests.saturating_sub(self.left);
        RateState::of(&self.limits, used, self.tokens, minute_window(now).1)
    }

    /// Whether what is known here (Redis at the lease, plus this replica's charges
    /// since) already spends the tokens or the budget: then Redis is asked again.
    fn spent_here(&self) -> bool {
        let l = &self.limits;
        l.tokens_per_minute.is_some_and(|t| self.tokens >= t)
            || l.budget.is_some_and(|b| {
                b.usd.is_some_and(|usd| self.usd_micros >= usd_micros(usd))
                    || b.tokens.is_some_and(|t| self.budget_tokens >= t)
            })
    }
}

/// A subject's lease, and the turn its replica's requests take to ask for a new one.
#[derive(Debug, Default)]
struct Entry {
    lease: Mutex<Lease>,
    asking: Arc<tokio::sync::Mutex<()>>,
}

/// The leases of one replica, per subject.
#[derive(Debug, Default)]
pub struct LeaseBook {
    subjects: RwLock<LookupMap<String, Arc<Entry>>>,
}

impl LeaseBook {
    fn entry(&self, subject: &str) -> Option<Arc<Entry>> {
        if let Some(e) = self.subjects.read().ok()?.get(subject) {
            return Some(Arc::clone(e));
        }
        let mut all = self.subjects.write().ok()?;
        Some(Arc::clone(all.entry(subject.to_string()).or_default()))
    }

    /// Waits for `subject`'s turn to ask Redis for a lease: one request of a replica
    /// at a time, so requests arriving together share one lease rather than each
    /// taking one and leaving the others' units unused. The turn ends when the guard
    /// is dropped; `None` when the book cannot be read.
    pub async fn turn_to_ask(&self, subject: &str) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        let entry = self.entry(subject)?;
        Some(Arc::clone(&entry.asking).lock_owned().await)
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

    /// Keeps what Redis `granted` to `subject` at `now` (the asking call takes the
    /// first unit) and answers that call.
    pub fn install(
        &self,
        subject: &str,
        limits: &KeyLimits,
        now: u64,
        granted: Granted,
    ) -> Admission {
        let (minute, _) = minute_window(now);
        let period = limits.budget.map_or(0, |b| budget_period(now, b.period).0);
        let fresh = Lease {
            limits: *limits,
            minute,
            period,
            left: granted.calls.saturating_sub(1),
            requests: granted.requests,
            tokens: granted.tokens,
            usd_micros: granted.usd_micros,
            budget_tokens: granted.budget_tokens,
            refused: granted
                .refused
                .map(|(r, after)| (r, now.saturating_add(after))),
        };
        let admission = Admission {
            state: fresh.state(now),
            refused: granted.refused,
            slot: None,
        };
        if let Some(entry) = self.entry(subject) {
            if let Ok(mut lease) = entry.lease.lock() {
                *lease = fresh;
            }
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
        if lease.current(limits, now) {
            lease.tokens = lease.tokens.saturating_add(tokens);
            lease.usd_micros = lease.usd_micros.saturating_add(usd);
            lease.budget_tokens = lease.budget_tokens.saturating_add(tokens);
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
            usd_micros: 0,
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
