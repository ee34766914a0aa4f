//! Passive health of provider instances and of their keys: after `health.failures`
//! consecutive retryable failures one is skipped for `health.cooldown`, then a single
//! request tries it again (half-open). Success closes it. State lives in this process
//! and survives reloads (it is keyed by instance name and by the key itself, so a key
//! rotated out takes its cooldown with it, and no key inherits another's by its place).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::config::HealthPolicy;
use crate::providers::KeyId;

/// What health is kept for: an instance, or one of its static keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HealthKey {
    /// The provider instance's name.
    pub provider: Arc<str>,
    /// Which of the instance's `api_keys`; `None` for the instance.
    pub key: Option<KeyId>,
}

impl HealthKey {
    /// The instance `provider`.
    pub fn instance(provider: &str) -> Self {
        Self {
            provider: provider.into(),
            key: None,
        }
    }

    /// The key `key` of `provider`.
    pub fn key(provider: &str, key: KeyId) -> Self {
        Self {
            provider: provider.into(),
            key: Some(key),
        }
    }
}

/// A change of availability, for the `aurora_upstream_available` gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing changed.
    None,
    /// It just went into cooldown.
    CooledDown,
    /// It answered again after a cooldown.
    Recovered,
}

#[derive(Debug, Default)]
struct Health {
    consecutive_failures: AtomicU32,
    /// Milliseconds since the book's epoch until which it is skipped; 0 when closed.
    cooling_until: AtomicU64,
    /// When it last failed (milliseconds since the epoch + 1; 0 for never).
    last_failure: AtomicU64,
    /// Its cooldown ended and one request is trying it.
    probing: AtomicBool,
}

/// The health of every instance and key this process has sent requests to.
#[derive(Debug)]
pub struct HealthBook {
    epoch: Instant,
    entries: RwLock<HashMap<HealthKey, Arc<Health>>>,
}

impl Default for HealthBook {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            entries: RwLock::default(),
        }
    }
}

impl HealthBook {
    fn millis(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn get(&self, key: &HealthKey) -> Option<Arc<Health>> {
        self.entries.read().ok()?.get(key).cloned()
    }

    fn get_or_insert(&self, key: &HealthKey) -> Option<Arc<Health>> {
        if let Some(h) = self.get(key) {
            return Some(h);
        }
        let mut entries = self.entries.write().ok()?;
        Some(Arc::clone(entries.entry(key.clone()).or_default()))
    }

    /// How `key` may be tried at `now`: not cooling down, or its cooldown is over and no
    /// other request is already probing it (this call then becomes the probe, and must
    /// give it back ([`Self::not_tried`]) if its attempt ends without a verdict on the
    /// key's health).
    pub fn admit(&self, key: &HealthKey, now: Instant) -> Admission {
        let Some(h) = self.get(key) else {
            return Admission::Open;
        };
        let until = h.cooling_until.load(Ordering::Acquire);
        if until == 0 {
            return Admission::Open;
        }
        if self.millis(now) < until {
            return Admission::Closed;
        }
        // Half-open: one request at a time finds out whether it is back.
        match h
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Admission::Probe,
            Err(_) => Admission::Closed,
        }
    }

    /// A request that may have taken `key`'s probe ([`Self::admit`]) sends it
    /// nothing after all (its provider's quota refused the call first): another
    /// request may probe it.
    pub fn not_tried(&self, key: &HealthKey) {
        if let Some(h) = self.get(key) {
            h.probing.store(false, Ordering::Release);
        }
    }

    /// Whether `key` is cooling down at `now` (a probe in flight counts as cooling).
    pub fn is_cooling(&self, key: &HealthKey, now: Instant) -> bool {
        self.get(key).is_some_and(|h| {
            let until = h.cooling_until.load(Ordering::Acquire);
            until != 0 && (self.millis(now) < until || h.probing.load(Ordering::Acquire))
        })
    }

    /// When `key` last failed; `None` when it never did.
    pub fn last_failure(&self, key: &HealthKey) -> Option<Duration> {
        let h = self.get(key)?;
        match h.last_failure.load(Ordering::Acquire) {
            0 => None,
            ms => Some(Duration::from_millis(ms - 1)),
        }
    }

    /// `key` failed in a way worth retrying elsewhere.
    pub fn failed(&self, key: &HealthKey, policy: &HealthPolicy, now: Instant) -> Transition {
        self.failed_for(key, policy.failures, policy.cooldown, now)
    }

    /// `key` failed and must be skipped for `cooldown` at once (a key refused with a
    /// `Retry-After`, or refused outright).
    pub fn cool_down(&self, key: &HealthKey, cooldown: Duration, now: Instant) -> Transition {
        self.failed_for(key, 1, cooldown, now)
    }

    fn failed_for(
        &self,
        key: &HealthKey,
        threshold: u32,
        cooldown: Duration,
        now: Instant,
    ) -> Transition {
        let Some(h) = self.get_or_insert(key) else {
            return Transition::None;
        };
        let at = self.millis(now);
        h.last_failure
            .store(at.saturating_add(1), Ordering::Release);
        let failures = h.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        let was_probing = h.probing.swap(false, Ordering::AcqRel);
        if failures < threshold && !was_probing {
            return Transition::None;
        }
        let cooldown_ms = u64::try_from(cooldown.as_millis()).unwrap_or(u64::MAX);
        let previous = h
            .cooling_until
            .swap(at.saturating_add(cooldown_ms).max(1), Ordering::AcqRel);
        if previous == 0 {
            Transition::CooledDown
        } else {
            Transition::None
        }
    }

    /// `key` answered: it is healthy again.
    pub fn succeeded(&self, key: &HealthKey) -> Transition {
        let Some(h) = self.get(key) else {
            return Transition::None;
        };
        h.consecutive_failures.store(0, Ordering::Release);
        h.probing.store(false, Ordering::Release);
        if h.cooling_until.swap(0, Ordering::AcqRel) != 0 {
            Transition::Recovered
        } else {
            Transition::None
        }
    }
}

/// How a key may be tried now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// It is healthy.
    Open,
    /// Its cooldown is over and this request is the one probe that finds out whether
    /// it is back.
    Probe,
    /// It is cooling down, or another request is probing it.
    Closed,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `key` may be tried at `now` (openly or as its probe).
    fn may_try(book: &HealthBook, key: &HealthKey, now: Instant) -> bool {
        book.admit(key, now) != Admission::Closed
    }

    fn policy() -> HealthPolicy {
        HealthPolicy {
            failures: 3,
            cooldown: Duration::from_secs(30),
        }
    }

    #[test]
    fn three_failures_cool_an_instance_down_then_one_probe_may_try_it() {
        let book = HealthBook::default();
        let east = HealthKey::instance("east");
        let t0 = book.epoch + Duration::from_secs(1);
        assert!(may_try(&book, &east, t0));
        assert_eq!(book.failed(&east, &policy(), t0), Transition::None);
        assert_eq!(book.failed(&east, &policy(), t0), Transition::None);
        assert_eq!(book.failed(&east, &policy(), t0), Transition::CooledDown);
        assert!(!may_try(&book, &east, t0 + Duration::from_secs(29)));
        assert!(book.is_cooling(&east, t0 + Duration::from_secs(29)));

        let after = t0 + Duration::from_secs(31);
        assert!(may_try(&book, &east, after), "one probe");
        assert!(!may_try(&book, &east, after), "only one");
        // The probe fails: a whole cooldown again, at once.
        book.failed(&east, &policy(), after);
        assert!(!may_try(&book, &east, after + Duration::from_secs(29)));
        let later = after + Duration::from_secs(31);
        assert!(may_try(&book, &east, later));
        assert_eq!(book.succeeded(&east), Transition::Recovered);
        assert!(may_try(&book, &east, later));
        assert!(!book.is_cooling(&east, later));
    }

    #[test]
    fn a_success_between_failures_starts_the_count_again() {
        let book = HealthBook::default();
        let west = HealthKey::instance("west");
        let t = book.epoch;
        book.failed(&west, &policy(), t);
        book.failed(&west, &policy(), t);
        book.succeeded(&west);
        book.failed(&west, &policy(), t);
        assert!(may_try(&book, &west, t));
        assert!(book.last_failure(&west).is_some());
        assert_eq!(book.last_failure(&HealthKey::instance("never")), None);
    }

    #[test]
    fn a_key_cools_down_at_once_for_the_time_given() {
        let book = HealthBook::default();
        let id = |k: &str| KeyId::of(&crate::providers::Secret::new(k));
        let key = HealthKey::key("openai", id("sk-b"));
        let t = book.epoch;
        assert_eq!(
            book.cool_down(&key, Duration::from_secs(5), t),
            Transition::CooledDown
        );
        assert!(!may_try(&book, &key, t + Duration::from_secs(4)));
        assert!(may_try(&book, &key, t + Duration::from_secs(6)));
        assert!(
            may_try(&book, &HealthKey::key("openai", id("sk-a")), t),
            "other keys are not affected"
        );
    }
}
