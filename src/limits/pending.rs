//! Writes to Redis that no request waits for: charges (per subject, per counter key)
//! and usage (per gateway key, day and model), summed while they wait so a flush sends
//! one increment per key however many requests made it.

use std::time::{Duration, Instant};

use super::once_write::InDoubt;
use super::{SlotId, UsageRecord};
use crate::lookup::LookupMap;

/// At most this many call slots of one subject wait to be given back: any more (only
/// while Redis stays away) lapse by themselves a slot lease after their calls end.
const RELEASES_AT_MOST: usize = 4096;

/// Adds `more` to the slots waiting to be given back, up to [`RELEASES_AT_MOST`].
fn give_back(waiting: &mut Vec<SlotId>, more: impl IntoIterator<Item = SlotId>) {
    let room = RELEASES_AT_MOST.saturating_sub(waiting.len());
    waiting.extend(more.into_iter().take(room));
}

/// One counter's increment and how long its key lives once written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Increment {
    pub by: i64,
    pub ttl_secs: u64,
    /// Past this instant the key has expired anyway: the increment is dropped.
    pub stale_at: Instant,
}

impl Increment {
    fn merge(&mut self, other: Increment) {
        self.by = self.by.saturating_add(other.by);
        self.ttl_secs = self.ttl_secs.max(other.ttl_secs);
        self.stale_at = self.stale_at.max(other.stale_at);
    }
}

/// Counter key → increment.
pub type Counters = LookupMap<String, Increment>;

/// What one key used on one day, per model, and how long its hash lives once written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayUsage {
    pub models: LookupMap<String, UsageRecord>,
    pub ttl_secs: u64,
}

/// Gateway key → day → its usage. Kept as records, not as the hash's `model|kind`
/// fields, so a request adds to them without formatting a name; the flush names them.
pub type UsageByKey = LookupMap<String, LookupMap<u64, DayUsage>>;

/// Everything waiting to be written.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pending {
    /// Subject → its counters (token windows, budgets).
    pub charges: LookupMap<String, Counters>,
    /// What each gateway key used, per day and model.
    pub usage: UsageByKey,
    /// Subject → call slots to give back that Redis did not take back at once.
    pub releases: LookupMap<String, Vec<SlotId>>,
    /// Subject → ids of its writes whose answers came back, for Redis to forget with
    /// the subject's next write.
    pub forget: LookupMap<String, Vec<u64>>,
    /// Writes whose answers were lost, sent again as they were.
    pub in_doubt: InDoubt,
    /// Counter key → what the flush on its way to Redis adds to it: a lease asked for
    /// meanwhile may reach Redis first ([`Pending::take_for_lease`]).
    pub sending: LookupMap<String, i64>,
}

impl Pending {
    /// Nothing waits.
    pub fn is_empty(&self) -> bool {
        self.charges.is_empty()
            && self.usage.is_empty()
            && self.releases.is_empty()
            && self.in_doubt.is_empty()
    }

    /// The call slot `slot` of `subject` to give back with the next flush.
    pub fn release(&mut self, subject: &str, slot: SlotId) {
        match self.releases.get_mut(subject) {
            Some(slots) => give_back(slots, [slot]),
            None => {
                self.releases.insert(subject.to_string(), vec![slot]);
            }
        }
    }

    /// Adds `by` to `key`, a counter of `subject` that lives `ttl_secs` once written.
    pub fn charge(&mut self, subject: &str, key: String, by: i64, ttl_secs: u64, now: Instant) {
        if by <= 0 {
            return;
        }
        let add = Increment {
            by,
            ttl_secs,
            stale_at: now + Duration::from_secs(ttl_secs),
        };
        // Nothing is allocated once a subject and its key wait already: the usual case.
        if let Some(counters) = self.charges.get_mut(subject) {
            match counters.get_mut(&key) {
                Some(waiting) => waiting.merge(add),
                None => {
                    counters.insert(key, add);
                }
            }
            return;
        }
        self.charges
            .insert(subject.to_string(), LookupMap::from_iter([(key, add)]));
    }

    /// Adds `usage` of `model` to what `key` used on `day`, whose hash lives
    /// `ttl_secs`.
    pub fn usage(&mut self, key: &str, day: u64, model: &str, usage: &UsageRecord, ttl_secs: u64) {
        let add = |days: &mut LookupMap<u64, DayUsage>| {
            let on_day = days.entry(day).or_default();
            on_day.ttl_secs = on_day.ttl_secs.max(ttl_secs);
            UsageRecord::add_to_model(&mut on_day.models, model, usage);
        };
        // The key is hashed once when it waits already.
        match self.usage.get_mut(key) {
            Some(days) => add(days),
            None => add(self.usage.entry(key.to_string()).or_default()),
        }
    }

    /// Takes what waits for `subject`'s counter `key`.
    pub fn take_one(&mut self, subject: &str, key: &str) -> Option<Increment> {
        let counters = self.charges.get_mut(subject)?;
        let taken = counters.remove(key);
        if counters.is_empty() {
            self.charges.remove(subject);
        }
        taken
    }

    /// Takes what waits for `subject`'s counters `keys`, to send with a lease, and
    /// tells how much of each stays behind: what a flush on its way adds (it may reach
    /// Redis after the lease); and while a write of the subject is in doubt nothing is
    /// taken (it waits for that write), and what stays counts that write's increments
    /// too (Redis may not have made them).
    pub fn take_for_lease<const N: usize>(
        &mut self,
        subject: &str,
        keys: [&str; N],
    ) -> (Counters, [u64; N]) {
        let mut taken = Counters::default();
        let mut behind = [0; N];
        for (key, behind) in keys.into_iter().zip(&mut behind) {
            let by = self.sending.get(key).copied().unwrap_or(0);
            *behind = u64::try_from(by).unwrap_or(0);
        }
        if self.in_doubt.holds(subject) {
            let waiting = self.charges.get(subject);
            for (key, behind) in keys.into_iter().zip(&mut behind) {
                let by = waiting.and_then(|c| c.get(key)).map_or(0, |a| a.by);
                let by = by.saturating_add(self.in_doubt.adds_to(subject, key));
                *behind = behind.saturating_add(u64::try_from(by).unwrap_or(0));
            }
            return (taken, behind);
        }
        for key in keys {
            if let Some(add) = self.take_one(subject, key) {
                taken.insert(key.to_string(), add);
            }
        }
        (taken, behind)
    }

    /// A flush adding `sending` (counter key → increment) is on its way to Redis.
    pub fn on_its_way(&mut self, sending: &LookupMap<String, i64>) {
        for (key, by) in sending {
            let total = self.sending.entry(key.clone()).or_default();
            *total = total.saturating_add(*by);
        }
    }

    /// The flush that was adding `sending` is no longer on its way.
    pub fn arrived(&mut self, sending: &LookupMap<String, i64>) {
        for (key, by) in sending {
            if let Some(total) = self.sending.get_mut(key) {
                *total = total.saturating_sub(*by);
                if *total <= 0 {
                    self.sending.remove(key);
                }
            }
        }
    }

    /// Takes every counter waiting for `subject`.
    pub fn take_subject(&mut self, subject: &str) -> Counters {
        self.charges.remove(subject).unwrap_or_default()
    }

    /// Keeps the ids of `lists` (subject → ids of writes answered) for Redis to forget
    /// with each subject's next write.
    pub fn forget_later(&mut self, lists: LookupMap<String, Vec<u64>>) {
        for (subject, ids) in lists {
            for id in ids {
                super::once_write::forget_later(&mut self.forget, &subject, id);
            }
        }
    }

    /// Takes everything but the writes in doubt.
    pub fn take_all(&mut self) -> Pending {
        Pending {
            charges: std::mem::take(&mut self.charges),
            usage: std::mem::take(&mut self.usage),
            releases: std::mem::take(&mut self.releases),
            forget: std::mem::take(&mut self.forget),
            in_doubt: InDoubt::default(),
            sending: LookupMap::default(),
        }
    }

    /// Takes what waits for the subjects `held` picks (a gateway key's usage by its
    /// key's subject).
    pub fn hold(&mut self, held: impl Fn(&str) -> bool) -> Pending {
        let mut out = Pending::default();
        let subjects: Vec<String> = (self.charges.keys())
            .chain(self.releases.keys())
            .filter(|s| held(s))
            .cloned()
            .collect();
        for subject in subjects {
            if let Some(counters) = self.charges.remove(&subject) {
                out.charges.insert(subject.clone(), counters);
            }
            if let Some(n) = self.releases.remove(&subject) {
                out.releases.insert(subject, n);
            }
        }
        let names: Vec<String> = (self.usage.keys())
            .filter(|name| held(&super::key_subject(name)))
            .cloned()
            .collect();
        for name in names {
            if let Some(days) = self.usage.remove(&name) {
                out.usage.insert(name, days);
            }
        }
        out
    }

    /// Puts back what could not be written, dropping increments to keys that have
    /// expired meanwhile (a past minute's tokens), so an outage cannot pile them up.
    pub fn put_back(&mut self, failed: Pending, now: Instant) {
        self.forget_later(failed.forget);
        for (subject, counters) in failed.charges {
            self.put_back_counters(&subject, counters, now);
        }
        for (key, days) in failed.usage {
            for (day, on_day) in days {
                for (model, usage) in on_day.models {
                    self.usage(&key, day, &model, &usage, on_day.ttl_secs);
                }
            }
        }
        for (subject, slots) in failed.releases {
            give_back(self.releases.entry(subject).or_default(), slots);
        }
    }

    /// [`Pending::put_back`] for one subject's counters.
    pub fn put_back_counters(&mut self, subject: &str, counters: Counters, now: Instant) {
        for (key, add) in counters {
            if add.stale_at <= now {
                continue;
            }
            let entry = self.charges.entry(subject.to_string()).or_default();
            match entry.get_mut(&key) {
                Some(waiting) => waiting.merge(add),
                None => {
                    entry.insert(key, add);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increments_to_one_key_are_summed_while_they_wait() {
        let now = Instant::now();
        let mut p = Pending::default();
        let three_in = UsageRecord {
            input: 3,
            ..UsageRecord::default()
        };
        for _ in 0..100 {
            p.charge("key:a", "tok:1".into(), 10, 61, now);
            p.usage("a", 1, "gpt", &three_in, 400);
        }
        p.charge("key:a", "tok:1".into(), 0, 61, now);
        assert_eq!(p.charges["key:a"]["tok:1"].by, 1000);
        assert_eq!(p.usage["a"][&1].models["gpt"].input, 300);
        assert_eq!(p.usage["a"][&1].ttl_secs, 400);
        let one = p.take_one("key:a", "tok:1").unwrap();
        assert_eq!(one.by, 1000);
        assert!(p.charges.is_empty(), "a subject with nothing left goes");
        assert!(!p.is_empty(), "usage still waits");
        let all = p.take_all();
        assert!(p.is_empty());
        assert_eq!(all.usage.len(), 1);
    }

    #[test]
    fn usage_sums_stop_at_the_largest_count() {
        let mut p = Pending::default();
        let huge = UsageRecord {
            input: u64::MAX - 1,
            requests: 1,
            ..UsageRecord::default()
        };
        p.usage("a", 1, "gpt", &huge, 400);
        p.usage("a", 1, "gpt", &huge, 400);
        let summed = p.usage["a"][&1].models["gpt"];
        assert_eq!(summed.input, u64::MAX);
        assert_eq!(summed.requests, 2);
    }

    #[test]
    fn a_lease_takes_a_subjects_charges_unless_a_write_of_it_is_in_doubt() {
        let now = Instant::now();
        let mut p = Pending::default();
        p.charge("key:a", "tok:1".into(), 5, 61, now);
        p.charge("key:a", "usd:7".into(), 9, 86_400, now);
        let (taken, behind) = p.take_for_lease("key:a", ["tok:1", "usd:7", "btok:7"]);
        assert_eq!((taken.len(), behind), (2, [0, 0, 0]));
        assert!(p.charges.is_empty());

        // A write of 5 tokens in doubt: the 3 charged since wait for it, and neither
        // goes with the lease.
        let mut doubtful = Pending::default();
        doubtful.charge("key:a", "tok:1".into(), 5, 61, now);
        let ids = super::super::once_write::WriteIds::default();
        let writes =
            super::super::once_write::writes_of(&doubtful, &mut LookupMap::default(), &ids, now);
        p.in_doubt.add(writes, now);
        p.charge("key:a", "tok:1".into(), 3, 61, now);
        let (taken, behind) = p.take_for_lease("key:a", ["tok:1", "usd:7"]);
        assert!(taken.is_empty());
        assert_eq!(behind, [8, 0]);
        assert_eq!(p.charges["key:a"]["tok:1"].by, 3, "still waiting");
    }

    #[test]
    fn charges_on_their_way_in_a_flush_stay_behind_a_lease_asked_for_meanwhile() {
        // Sent on the same connection, the flush may still reach Redis after the lease.
        let now = Instant::now();
        let mut p = Pending::default();
        let one = LookupMap::from_iter([("tok:1".to_string(), 40)]);
        let other = LookupMap::from_iter([("tok:1".to_string(), 5)]);
        p.on_its_way(&one);
        p.on_its_way(&other);
        p.charge("key:a", "tok:1".into(), 2, 61, now);
        let (taken, behind) = p.take_for_lease("key:a", ["tok:1", "usd:7"]);
        assert_eq!(taken["tok:1"].by, 2, "goes with the lease");
        assert_eq!(behind, [45, 0]);
        p.arrived(&one);
        assert_eq!(p.take_for_lease("key:a", ["tok:1"]).1, [5]);
        p.arrived(&other);
        assert!(p.sending.is_empty());
    }

    #[test]
    fn what_failed_is_put_back_without_what_expired_meanwhile() {
        let now = Instant::now();
        let mut p = Pending::default();
        p.charge("key:a", "tok:1".into(), 5, 1, now);
        p.charge("key:a", "usd:7".into(), 9, 86_400, now);
        let failed = p.take_all();
        p.charge("key:a", "usd:7".into(), 1, 86_400, now);
        p.put_back(failed, now + Duration::from_secs(2));
        assert_eq!(p.charges["key:a"].len(), 1, "the minute's tokens expired");
        assert_eq!(p.charges["key:a"]["usd:7"].by, 10);
    }

    #[test]
    fn a_subject_in_doubt_is_held_whole_and_its_ids_to_forget_come_back() {
        let now = Instant::now();
        let mut p = Pending::default();
        let used = UsageRecord {
            requests: 1,
            ..UsageRecord::default()
        };
        for key in ["a", "b"] {
            let subject = format!("key:{key}");
            p.charge(&subject, format!("aurora:{{{subject}}}:tok:1"), 5, 61, now);
            p.usage(key, 1, "gpt", &used, 400);
            p.release(&subject, 1);
            p.release(&subject, 2);
        }
        let held = p.hold(|s| s == "key:a");
        assert_eq!(held.charges.len(), 1);
        assert_eq!(held.releases["key:a"], [1, 2]);
        assert!(held.usage.contains_key("a") && !held.usage.contains_key("b"));
        assert!(p.charges.contains_key("key:b") && !p.charges.contains_key("key:a"));
        super::super::once_write::forget_later(&mut p.forget, "key:b", 9);
        let taken = p.take_all();
        assert!(p.is_empty());
        p.put_back(taken, now);
        assert_eq!(p.forget["key:b"], [9]);
        assert_eq!(p.releases["key:b"], [1, 2]);
    }
}
