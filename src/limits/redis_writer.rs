//! The Redis store's writes that no request waits for: charges and usage are gathered
//! here and sent [`FLUSH_AFTER`] after the first of them, in one pipeline for every
//! key of the replica. A call slot is given back at once, with its subject's charges
//! in the same pipeline, so whoever takes the slot next sees what the call used.
//! What Redis does not take is kept and sent again when it is back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::pending::{Counters, Increment, Pending};
use super::redis_link::{usage_key, Called, Link};
use super::redis_scripts::RELEASE;
use super::{StoreError, UsageRecord};

/// How long a charge or usage waits for others before they are sent together: the
/// most a replica's writes lag behind its calls while Redis answers.
pub const FLUSH_AFTER: Duration = Duration::from_millis(20);
/// After Redis failed to take a flush, the next try comes this much later.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// A call slot counter outlives the longest call by far, then resets itself.
pub const SLOT_TTL_SECS: u64 = 3600;

/// Gathers writes and sends them.
pub struct Writer {
    link: Arc<Link>,
    pending: Mutex<Pending>,
    wake: Arc<Notify>,
    started: AtomicBool,
}

impl Writer {
    /// A writer to `link`; its flushing task starts with the first write.
    pub fn new(link: Arc<Link>) -> Arc<Self> {
        Arc::new(Self {
            link,
            pending: Mutex::new(Pending::default()),
            wake: Arc::new(Notify::new()),
            started: AtomicBool::new(false),
        })
    }

    /// Adds `by` to `subject`'s counter `key` (which lives `ttl_secs`), soon.
    pub fn charge(self: &Arc<Self>, subject: &str, key: String, by: i64, ttl_secs: u64) {
        if let Ok(mut p) = self.pending.lock() {
            p.charge(subject, key, by, ttl_secs, Instant::now());
        }
        self.wake();
    }

    /// Adds `usage` of `model` to the hash of what `key` used on `day`, soon.
    pub fn usage(
        self: &Arc<Self>,
        key: &str,
        day: u64,
        model: &str,
        usage: &UsageRecord,
        ttl_secs: u64,
    ) {
        if let Ok(mut p) = self.pending.lock() {
            p.usage(key, day, model, usage, ttl_secs);
        }
        self.wake();
    }

    /// Takes what waits for `subject`'s counter `key`, to send it with a lease.
    pub fn take(&self, subject: &str, key: &str) -> Option<Increment> {
        self.pending.lock().ok()?.take_one(subject, key)
    }

    /// Puts back counters of `subject` taken to be sent with a lease that failed.
    pub fn put_back(self: &Arc<Self>, subject: &str, counters: Counters) {
        if counters.is_empty() {
            return;
        }
        if let Ok(mut p) = self.pending.lock() {
            p.put_back_counters(subject, counters, Instant::now());
        }
        self.wake();
    }

    /// Sends everything waiting now, in one pipeline.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let batch = match self.pending.lock() {
            Ok(mut p) if !p.is_empty() => p.take_all(),
            _ => return Ok(()),
        };
        let mut pipe = redis::pipe();
        for counters in batch.charges.values() {
            add_counters(&mut pipe, counters);
        }
        for (key, days) in &batch.usage {
            for (day, on_day) in days {
                let hash = usage_key(key, *day);
                for (model, usage) in &on_day.models {
                    for (name, value) in usage.fields().into_iter().filter(|(_, v)| *v > 0) {
                        let by = i64::try_from(value).unwrap_or(i64::MAX);
                        pipe.hincr(&hash, format!("{model}|{name}"), by).ignore();
                    }
                }
                pipe.expire(&hash, secs(on_day.ttl_secs)).ignore();
            }
        }
        // After the charges, as a slot given back at once is.
        for (slots, n) in &batch.releases {
            for _ in 0..*n {
                pipe.cmd("EVAL").arg(RELEASE).arg(1).arg(slots).ignore();
            }
        }
        let sent = match self.link.connection().await {
            Ok(mut conn) => {
                self.link
                    .called(pipe.query_async::<()>(&mut conn), "charges and usage", 1)
                    .await
            }
            Err(e) => Called::NotMade(e),
        };
        match sent {
            Called::Done(()) => Ok(()),
            // The other writes were made: sent again, they would count twice.
            Called::Refused(e) => Err(StoreError(format!(
                "{e}; these charges and usage are dropped"
            ))),
            // Sent again: in doubt, it counts twice if Redis had made it.
            Called::NotMade(e) | Called::InDoubt(e) => {
                if let Ok(mut p) = self.pending.lock() {
                    p.put_back(batch, Instant::now());
                }
                Err(StoreError(format!(
                    "{e}; charges and usage are kept and sent again when Redis takes them"
                )))
            }
        }
    }

    /// Gives back a call slot of `subject` (its counter `slots`), its charges first,
    /// without waiting.
    pub fn release(self: &Arc<Self>, subject: &str, slots: String) {
        let Some(mut conn) = self.link.made() else {
            // The connection was dropped (a call left unanswered): on one made anew.
            self.give_back_later(subject, Counters::default(), slots);
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let counters = self
            .pending
            .lock()
            .map(|mut p| p.take_subject(subject))
            .unwrap_or_default();
        let writer = Arc::clone(self);
        let subject = subject.to_string();
        runtime.spawn(async move {
            let mut pipe = redis::pipe();
            add_counters(&mut pipe, &counters);
            pipe.cmd("EVAL").arg(RELEASE).arg(1).arg(&slots).ignore();
            let sent = writer
                .link
                .called(pipe.query_async::<()>(&mut conn), "a call slot", 1)
                .await;
            match sent {
                Called::Done(()) => {}
                Called::Refused(e) => log::warn!(
                    "{e}: a call slot was not given back; it expires in {SLOT_TTL_SECS} s at most"
                ),
                // Sent, it may be made yet (Redis reads what waited once it answers
                // again): given back twice, it would free another call's slot.
                Called::InDoubt(e) => {
                    log::warn!(
                        "{e}: a call slot may not have been given back; it expires in {SLOT_TTL_SECS} s at most"
                    );
                    // Charges are sent again, as a flush's are.
                    writer.put_back(&subject, counters);
                }
                Called::NotMade(_) => writer.give_back_later(&subject, counters, slots),
            }
        });
    }

    /// Gives back a call slot of `subject` (its counter `slots`), with `counters`, in
    /// the next pipeline Redis takes, its charges first.
    fn give_back_later(self: &Arc<Self>, subject: &str, counters: Counters, slots: String) {
        if let Ok(mut p) = self.pending.lock() {
            p.put_back_counters(subject, counters, Instant::now());
            p.release(slots);
        }
        self.wake();
    }

    /// Has the flushing task send what waits after [`FLUSH_AFTER`], starting it first.
    fn wake(self: &Arc<Self>) {
        if !self.started.swap(true, Ordering::AcqRel) {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(flushing(Arc::downgrade(self), Arc::clone(&self.wake)));
                }
                Err(_) => self.started.store(false, Ordering::Release),
            }
        }
        self.wake.notify_one();
    }
}

/// INCRBY and EXPIRE for each of `counters`.
fn add_counters(pipe: &mut redis::Pipeline, counters: &Counters) {
    for (key, add) in counters {
        pipe.incr(key, add.by)
            .ignore()
            .expire(key, secs(add.ttl_secs))
            .ignore();
    }
}

fn secs(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX)
}

/// The writer's task: woken by a write, it lets others gather, then sends them all;
/// it ends with the store.
async fn flushing(writer: Weak<Writer>, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        tokio::time::sleep(FLUSH_AFTER).await;
        let Some(writer) = writer.upgrade() else {
            return;
        };
        if let Err(e) = writer.flush().await {
            said_once_a_minute(&e);
            drop(writer);
            tokio::time::sleep(RETRY_AFTER).await;
            wake.notify_one();
        }
    }
}

/// Every failed flush would say it otherwise.
fn said_once_a_minute(e: &StoreError) {
    static LAST_SAID: AtomicU64 = AtomicU64::new(0);
    let minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60 + 1);
    if LAST_SAID.swap(minute, Ordering::Relaxed) != minute {
        log::warn!("{e}");
    }
}
