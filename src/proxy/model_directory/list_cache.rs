//! What the model directory knows of each provider's list: the last outcome of asking
//! (a list, or a failure) and when it came, and the fetch under way, if any. A listing
//! asks it, per provider, whether to answer from memory, wait for a fetch already under
//! way, or start one; fetches settle their outcome here.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::providers::KeyId;

/// Instance name, base URL and keys: a reload that moves a provider must not reuse its
/// list, nor one that changes its keys keep a refusal of the keys it replaced.
pub(super) type CacheKey = (String, String, Vec<KeyId>);

/// How a provider answered the last time it was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Its model ids.
    Listed(Vec<String>),
    /// An error, a timeout or an answer that was not a model list.
    Failed,
}

struct Settled {
    outcome: Outcome,
    at: Instant,
}

struct InFlight {
    started: Instant,
    /// Closed when the fetch's [`Ticket`] is dropped: settled, or abandoned.
    done: watch::Receiver<()>,
}

impl InFlight {
    fn is_running(&self) -> bool {
        self.done.has_changed().is_ok()
    }
}

#[derive(Default)]
struct Slot {
    settled: Option<Settled>,
    in_flight: Option<InFlight>,
}

impl Slot {
    /// The last list, however old: better than nothing while a new one is on its way.
    fn last_list(&self) -> Vec<String> {
        match &self.settled {
            Some(Settled {
                outcome: Outcome::Listed(ids),
                ..
            }) => ids.clone(),
            _ => Vec::new(),
        }
    }
}

/// What a listing does about one provider.
pub(super) enum Plan {
    /// A fresh outcome: these ids (none after a failure).
    Known(Vec<String>),
    /// A fetch is under way: wait for it, then read the cache again.
    Wait(Waiter),
    /// Nobody is asking the provider: start a fetch holding the ticket, then wait.
    Fetch(Ticket, Waiter),
}

/// Waits for a fetch until its answer budget runs out.
pub(super) struct Waiter {
    until: Instant,
    done: watch::Receiver<()>,
}

impl Waiter {
    /// When the waiting ends at the latest.
    pub(super) fn until(&self) -> Instant {
        self.until
    }

    /// Returns once the fetch is over or the budget is spent, whichever comes first.
    pub(super) async fn wait(mut self) {
        // `changed` fails once the ticket is dropped, which is the signal.
        let _ = tokio::time::timeout_at(self.until.into(), self.done.changed()).await;
    }
}

/// Held by the one fetch of a provider; dropping it wakes the waiters.
pub(super) struct Ticket {
    _done: watch::Sender<()>,
}

/// The per-provider outcomes and fetches, shared by all listings.
pub(super) struct ListCache {
    slots: Mutex<HashMap<CacheKey, Slot>>,
    list_ttl: Duration,
    failure_ttl: Duration,
    answer_within: Duration,
}

impl ListCache {
    /// Lists are reused for `list_ttl`, failures remembered for `failure_ttl`, and a
    /// fetch is waited for at most `answer_within` after it started.
    pub(super) fn new(list_ttl: Duration, failure_ttl: Duration, answer_within: Duration) -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
            list_ttl,
            failure_ttl,
            answer_within,
        }
    }

    fn ttl(&self, outcome: &Outcome) -> Duration {
        match outcome {
            Outcome::Listed(_) => self.list_ttl,
            Outcome::Failed => self.failure_ttl,
        }
    }

    /// What to do about `key` at `now`. A fetch is waited for only within the budget
    /// counted from its start, so a provider that does not answer costs one wait, not
    /// one per listing.
    pub(super) fn plan(&self, key: &CacheKey, now: Instant) -> Plan {
        let Ok(mut slots) = self.slots.lock() else {
            return Plan::Known(Vec::new());
        };
        let slot = slots.entry(key.clone()).or_default();
        if let Some(settled) = &slot.settled {
            if now.saturating_duration_since(settled.at) < self.ttl(&settled.outcome) {
                return Plan::Known(match &settled.outcome {
                    Outcome::Listed(ids) => ids.clone(),
                    Outcome::Failed => Vec::new(),
                });
            }
        }
        if let Some(fetch) = slot.in_flight.as_ref().filter(|f| f.is_running()) {
            return Plan::Wait(Waiter {
                until: fetch.started + self.answer_within,
                done: fetch.done.clone(),
            });
        }
        let (sender, done) = watch::channel(());
        slot.in_flight = Some(InFlight {
            started: now,
            done: done.clone(),
        });
        Plan::Fetch(
            Ticket { _done: sender },
            Waiter {
                until: now + self.answer_within,
                done,
            },
        )
    }

    /// The ids `key` contributes once waiting is over: the fresh outcome, or while the
    /// fetch goes on, the last list known.
    pub(super) fn current(&self, key: &CacheKey, now: Instant) -> Vec<String> {
        let Ok(slots) = self.slots.lock() else {
            return Vec::new();
        };
        let Some(slot) = slots.get(key) else {
            return Vec::new();
        };
        match &slot.settled {
            Some(s) if now.saturating_duration_since(s.at) < self.ttl(&s.outcome) => {
                match &s.outcome {
                    Outcome::Listed(ids) => ids.clone(),
                    Outcome::Failed => Vec::new(),
                }
            }
            _ => slot.last_list(),
        }
    }

    /// Records how `key`'s fetch ended, at `now`. Called before its ticket is dropped,
    /// so woken waiters find the outcome.
    pub(super) fn settle(&self, key: &CacheKey, outcome: Outcome, now: Instant) {
        let Ok(mut slots) = self.slots.lock() else {
            return;
        };
        let slot = slots.entry(key.clone()).or_default();
        slot.settled = Some(Settled { outcome, at: now });
        slot.in_flight = None;
        // Providers removed by a reload must not linger; an expired list is kept a while
        // longer as the stand-in during its refresh.
        let keep = self.list_ttl.max(self.failure_ttl).saturating_mul(2);
        slots.retain(|_, slot| {
            slot.in_flight.as_ref().is_some_and(InFlight::is_running)
                || slot
                    .settled
                    .as_ref()
                    .is_some_and(|s| now.saturating_duration_since(s.at) < keep)
        });
    }

    /// Providers the cache holds anything for.
    pub(super) fn len(&self) -> usize {
        self.slots.lock().map(|s| s.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(300);
    const FAILURE_TTL: Duration = Duration::from_secs(60);
    const BUDGET: Duration = Duration::from_secs(2);

    fn cache() -> ListCache {
        ListCache::new(TTL, FAILURE_TTL, BUDGET)
    }

    fn key(name: &str) -> CacheKey {
        (
            name.to_string(),
            format!("http://{name}.test/v1"),
            Vec::new(),
        )
    }

    fn listed(ids: &[&str]) -> Outcome {
        Outcome::Listed(ids.iter().map(|s| s.to_string()).collect())
    }

    fn known(plan: Plan) -> Vec<String> {
        match plan {
            Plan::Known(ids) => ids,
            Plan::Wait(_) => panic!("waits"),
            Plan::Fetch(..) => panic!("fetches"),
        }
    }

    #[test]
    fn an_unknown_provider_is_fetched_with_the_whole_budget() {
        let now = Instant::now();
        match cache().plan(&key("a"), now) {
            Plan::Fetch(_, waiter) => assert_eq!(waiter.until(), now + BUDGET),
            _ => panic!("no fetch"),
        }
    }

    #[test]
    fn a_second_listing_waits_for_the_fetch_under_way_within_its_budget() {
        let cache = cache();
        let start = Instant::now();
        let Plan::Fetch(_ticket, _) = cache.plan(&key("a"), start) else {
            panic!("no fetch");
        };
        match cache.plan(&key("a"), start + Duration::from_millis(500)) {
            // Counted from the fetch's start, not from this listing's.
            Plan::Wait(waiter) => assert_eq!(waiter.until(), start + BUDGET),
            _ => panic!("a second fetch"),
        }
    }

    #[test]
    fn an_abandoned_fetch_is_started_again() {
        let cache = cache();
        let now = Instant::now();
        let Plan::Fetch(ticket, _) = cache.plan(&key("a"), now) else {
            panic!("no fetch");
        };
        drop(ticket);
        assert!(matches!(cache.plan(&key("a"), now), Plan::Fetch(..)));
    }

    #[test]
    fn lists_are_reused_for_their_ttl() {
        let cache = cache();
        let now = Instant::now();
        cache.settle(&key("a"), listed(&["m1"]), now);
        assert_eq!(known(cache.plan(&key("a"), now + TTL / 2)), ["m1"]);
        assert!(matches!(cache.plan(&key("a"), now + TTL), Plan::Fetch(..)));
    }

    #[test]
    fn failures_are_remembered_for_their_own_ttl() {
        let cache = cache();
        let now = Instant::now();
        cache.settle(&key("a"), Outcome::Failed, now);
        assert!(known(cache.plan(&key("a"), now + FAILURE_TTL / 2)).is_empty());
        assert!(matches!(
            cache.plan(&key("a"), now + FAILURE_TTL),
            Plan::Fetch(..)
        ));
    }

    #[test]
    fn an_expired_list_stands_in_while_its_refresh_is_under_way() {
        let cache = cache();
        let then = Instant::now();
        cache.settle(&key("a"), listed(&["old"]), then);
        let later = then + TTL + Duration::from_secs(1);
        let Plan::Fetch(_ticket, _) = cache.plan(&key("a"), later) else {
            panic!("no refresh");
        };
        assert_eq!(cache.current(&key("a"), later + BUDGET), ["old"]);
        cache.settle(&key("a"), listed(&["new"]), later + BUDGET);
        assert_eq!(cache.current(&key("a"), later + BUDGET), ["new"]);
    }

    #[test]
    fn a_failure_replaces_the_list_it_follows() {
        let cache = cache();
        let then = Instant::now();
        cache.settle(&key("a"), listed(&["old"]), then);
        let later = then + TTL + Duration::from_secs(1);
        cache.settle(&key("a"), Outcome::Failed, later);
        assert!(cache.current(&key("a"), later).is_empty());
        // Once the failure has expired too, the provider is asked again, and nothing
        // stands in for it meanwhile.
        let after = later + FAILURE_TTL;
        let Plan::Fetch(_ticket, _) = cache.plan(&key("a"), after) else {
            panic!("no fetch");
        };
        assert!(cache.current(&key("a"), after).is_empty());
    }

    #[test]
    fn long_expired_providers_are_dropped_when_another_settles() {
        let cache = cache();
        let then = Instant::now();
        cache.settle(&key("gone"), listed(&["m"]), then);
        let later = then + TTL * 2;
        let Plan::Fetch(_ticket, _) = cache.plan(&key("slow"), later) else {
            panic!("no fetch");
        };
        cache.settle(&key("live"), listed(&["m"]), later);
        // `slow` stays while its fetch runs; `gone` has not been asked for too long.
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.current(&key("gone"), later), Vec::<String>::new());
    }

    #[tokio::test]
    async fn waiters_wake_when_the_ticket_is_dropped() {
        let cache = cache();
        let now = Instant::now();
        let Plan::Fetch(ticket, waiter) = cache.plan(&key("a"), now) else {
            panic!("no fetch");
        };
        cache.settle(&key("a"), listed(&["m"]), now);
        drop(ticket);
        // Would take the whole 2 s budget if the drop did not wake it.
        tokio::time::timeout(Duration::from_millis(500), waiter.wait())
            .await
            .unwrap();
        assert_eq!(cache.current(&key("a"), now), ["m"]);
    }
}
