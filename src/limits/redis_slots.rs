//! The call slots a replica's calls hold in Redis, renewed while they run.
//!
//! A subject's slots are a sorted set of the calls holding one (`REPLICA.N`), each
//! scored by when it lapses. A slot lasts a slot lease (`limits.slot_lease`) unless
//! renewed: this replica renews every slot its calls still hold each quarter of a
//! lease, in one pipeline (sooner again after one that failed), and gives each back
//! when its call ends. So the slots of a replica that stopped (killed, its runtime
//! shut down mid-call, cut off from Redis) lapse a lease later, however busy their
//! subject stays, and so does a slot whose admission's answer was lost (also given
//! back, in case it was taken).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::redis_link::{key, Called, Link, QUIET_AFTER_LOSS};
use super::redis_scripts::RENEW_SLOTS;
use super::SlotId;
use crate::lookup::LookupMap;

/// The sorted set of `subject`'s call slots, `aurora:{SUBJECT}:slots:0`.
pub fn slots_key(subject: &str) -> String {
    key(subject, "slots", 0)
}

/// The name of `slot`, taken by `replica`, in its subject's slots.
pub fn slot_name(replica: &str, slot: SlotId) -> String {
    format!("{replica}.{slot}")
}

/// The names of `slots`, taken by `replica`, joined by commas.
pub fn slot_names(replica: &str, slots: &[SlotId]) -> String {
    let mut names = String::with_capacity(slots.len() * (replica.len() + 8));
    for (i, slot) in slots.iter().enumerate() {
        if i > 0 {
            names.push(',');
        }
        names.push_str(replica);
        names.push('.');
        names.push_str(itoa::Buffer::new().format(*slot));
    }
    names
}

/// The slots this replica's calls hold, by subject.
pub struct HeldSlots {
    held: Mutex<LookupMap<String, Vec<SlotId>>>,
    lease: Duration,
    /// Where they are renewed, and this replica's name there (the slots carry it).
    link: Arc<Link>,
    replica: String,
    renewing: AtomicBool,
    /// The SHA of [`RENEW_SLOTS`], hashed once.
    renew_sha: String,
}

impl HeldSlots {
    /// None held yet by `replica`; each lasts `lease` unrenewed, renewed on `link`.
    pub fn new(lease: Duration, link: Arc<Link>, replica: &str) -> Arc<Self> {
        Arc::new(Self {
            held: Mutex::default(),
            lease,
            link,
            replica: replica.to_string(),
            renewing: AtomicBool::new(false),
            renew_sha: redis::Script::new(RENEW_SLOTS).get_hash().to_string(),
        })
    }

    /// How long a slot lasts unrenewed, in whole seconds (at least 1).
    pub fn lease_secs(&self) -> u64 {
        self.lease.as_secs().max(1)
    }

    /// `slot` of `subject` is held: renewed from now on (by a task started with the
    /// first) until [`Self::give_back`].
    pub fn hold(self: &Arc<Self>, subject: &str, slot: SlotId) {
        if let Ok(mut held) = self.held.lock() {
            match held.get_mut(subject) {
                Some(slots) => slots.push(slot),
                None => {
                    held.insert(subject.to_string(), vec![slot]);
                }
            }
        }
        if !self.renewing.swap(true, Ordering::AcqRel) {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(renewing(Arc::downgrade(self)));
                }
                Err(_) => self.renewing.store(false, Ordering::Release),
            }
        }
    }

    /// `slot` of `subject` is no longer held (its call ended): no longer renewed.
    pub fn give_back(&self, subject: &str, slot: SlotId) {
        let Ok(mut held) = self.held.lock() else {
            return;
        };
        if let Some(slots) = held.get_mut(subject) {
            if let Some(at) = slots.iter().position(|s| *s == slot) {
                slots.swap_remove(at);
            }
            if slots.is_empty() {
                held.remove(subject);
            }
        }
    }

    /// The slots held now, by subject.
    fn now_held(&self) -> Vec<(String, Vec<SlotId>)> {
        self.held.lock().map_or_else(
            |_| Vec::new(),
            |held| held.iter().map(|(s, v)| (s.clone(), v.clone())).collect(),
        )
    }

    /// The pipeline that renews `held`, loading [`RENEW_SLOTS`] first (Redis may have
    /// restarted and lost its scripts; renewals are few).
    fn renewal(&self, held: &[(String, Vec<SlotId>)]) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        pipe.cmd("SCRIPT").arg("LOAD").arg(RENEW_SLOTS).ignore();
        for (subject, slots) in held {
            let renew = pipe
                .cmd("EVALSHA")
                .arg(&self.renew_sha)
                .arg(1)
                .arg(slots_key(subject));
            renew.arg(self.lease_secs());
            for slot in slots {
                renew.arg(slot_name(&self.replica, *slot));
            }
            renew.ignore();
        }
        pipe
    }
}

/// How often held slots are renewed: a quarter of a lease, so three renewals in a row
/// may fail before one lapses.
fn renew_every(lease: Duration) -> Duration {
    (lease / 4).max(Duration::from_millis(250))
}

/// How long after a renewal began the next one begins: [`renew_every`] (`every`) after
/// one that went through; after `failed` in a row, [`QUIET_AFTER_LOSS`] (by then the
/// link asks Redis again: a renewal is often refused only because another call was
/// just lost), then twice as long each time, never longer than `every`. So a slot
/// whose renewals fail for a moment is renewed a moment later, not a quarter lease,
/// and one Redis does not answer is asked a few times more before it lapses, not once
/// a second.
fn next_renewal_in(every: Duration, failed: u32) -> Duration {
    if failed == 0 {
        return every;
    }
    let doublings = (failed - 1).min(16);
    QUIET_AFTER_LOSS.saturating_mul(1 << doublings).min(every)
}

/// The renewing task: every [`renew_every`] (sooner after one that failed:
/// [`next_renewal_in`]), the slots held then are renewed; it ends with the store.
async fn renewing(held: Weak<HeldSlots>) {
    let Some((lease, link)) = held.upgrade().map(|h| (h.lease, Arc::clone(&h.link))) else {
        return;
    };
    let every = renew_every(lease);
    // A slot just taken lasts a whole lease: the first renewal comes a quarter later.
    let mut next = tokio::time::Instant::now() + every;
    let mut failed: u32 = 0;
    loop {
        tokio::time::sleep_until(next).await;
        let began = tokio::time::Instant::now();
        let Some(slots) = held.upgrade() else {
            return;
        };
        let now_held = slots.now_held();
        if now_held.is_empty() {
            failed = 0;
            next = began + every;
            continue;
        }
        let pipe = slots.renewal(&now_held);
        drop(slots);
        let sent = match link.connection().await {
            Ok(mut conn) => {
                link.called(pipe.query_async::<()>(&mut conn), "call slots' renewal", 1)
                    .await
            }
            Err(e) => Called::Unsent(e),
        };
        match sent {
            Called::Done(()) => failed = 0,
            Called::Unsent(e) | Called::Refused(e) | Called::NotMade(e) | Called::InDoubt(e) => {
                failed = failed.saturating_add(1);
                said_once_a_minute(&e);
            }
        }
        // Never sooner than now: a renewal that took long does not make the next one
        // come at once.
        next = (began + next_renewal_in(every, failed)).max(tokio::time::Instant::now());
    }
}

/// Every failed renewal would say it otherwise.
fn said_once_a_minute(e: &super::StoreError) {
    static SAID: super::OnceAMinute = super::OnceAMinute::new();
    if SAID.due() {
        log::warn!("{e}; call slots held here lapse unless renewed in time");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_named_by_their_replica_and_number() {
        assert_eq!(slots_key("key:a"), "aurora:{key:a}:slots:0");
        assert_eq!(slot_name("0f1e", 7), "0f1e.7");
        assert_eq!(slot_names("0f1e", &[7, 12]), "0f1e.7,0f1e.12");
        assert_eq!(slot_names("0f1e", &[]), "");
    }

    #[test]
    fn a_slot_given_back_is_no_longer_renewed() {
        let link = Arc::new(
            Link::new(&crate::config::RedisAddress::plain("redis://127.0.0.1:1/0")).unwrap(),
        );
        let held = HeldSlots::new(Duration::from_secs(60), link, "r");
        held.hold("key:a", 1);
        held.hold("key:a", 2);
        held.hold("key:b", 3);
        held.give_back("key:a", 1);
        held.give_back("key:b", 3);
        held.give_back("key:b", 3);
        assert_eq!(held.now_held(), [("key:a".to_string(), vec![2])]);
        let pipe = held.renewal(&held.now_held());
        let sent: Vec<String> = pipe
            .cmd_iter()
            .flat_map(|c| c.args_iter())
            .map(|a| match a {
                redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                redis::Arg::Cursor => "cursor".into(),
            })
            .collect();
        assert_eq!(sent[..3], ["SCRIPT", "LOAD", RENEW_SLOTS]);
        assert_eq!(sent[3], "EVALSHA");
        assert_eq!(sent[5..], ["1", "aurora:{key:a}:slots:0", "60", "r.2"]);
    }

    #[test]
    fn a_failed_renewal_is_tried_again_after_a_second_then_less_often_up_to_the_usual() {
        let every = renew_every(Duration::from_secs(60));
        let waits: Vec<u64> = (0..8)
            .map(|failed| next_renewal_in(every, failed).as_secs())
            .collect();
        assert_eq!(waits, [15, 1, 2, 4, 8, 15, 15, 15]);
        // A slot renewed at 0 s lapses at 60 s: the renewal due at 15 s, failing on,
        // is tried six times before then, not three.
        let mut at = every;
        let mut tries = vec![at.as_secs()];
        for failed in 1.. {
            at += next_renewal_in(every, failed);
            if at >= Duration::from_secs(60) {
                break;
            }
            tries.push(at.as_secs());
        }
        assert_eq!(tries, [15, 16, 18, 22, 30, 45]);
        assert_eq!(next_renewal_in(every, u32::MAX), every);
        // A short lease keeps its cadence.
        let short = renew_every(Duration::from_secs(2));
        assert_eq!(next_renewal_in(short, 1), short);
    }

    #[test]
    fn renewals_come_four_times_a_lease() {
        assert_eq!(
            renew_every(Duration::from_secs(60)),
            Duration::from_secs(15)
        );
        assert_eq!(
            renew_every(Duration::from_secs(2)),
            Duration::from_millis(500)
        );
    }
}
