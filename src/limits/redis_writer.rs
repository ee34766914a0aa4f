//! The Redis store's writes that no request waits for: charges and usage are gathered
//! here and sent [`FLUSH_AFTER`] after the first of them, in one pipeline for every
//! key of the replica. A call slot is given back at once, with its subject's charges
//! in the same pipeline, so whoever takes the slot next sees what the call used.
//! What Redis does not take is kept and sent again when it is back; what it may have
//! taken (the answer was lost) is sent again as it was, and made once
//! (`once_write.rs`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::once_write::{writes_of, OnceWrite, WriteIds};
use super::pending::{Counters, Increment, Pending};
use super::redis_link::{Called, Link};
use super::redis_scripts::APPLY_ONCE;
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
    ids: WriteIds,
    /// The SHA of [`APPLY_ONCE`], which every pipeline loads first.
    apply_once: String,
}

impl Writer {
    /// A writer to `link`; its flushing task starts with the first write.
    pub fn new(link: Arc<Link>) -> Arc<Self> {
        Arc::new(Self {
            link,
            pending: Mutex::new(Pending::default()),
            wake: Arc::new(Notify::new()),
            started: AtomicBool::new(false),
            ids: WriteIds::default(),
            apply_once: redis::Script::new(APPLY_ONCE).get_hash().to_string(),
        })
    }

    /// The replica's write ids.
    pub fn ids(&self) -> &WriteIds {
        &self.ids
    }

    /// Keeps `write`, sent and in doubt, to send again as it is.
    pub fn seal(self: &Arc<Self>, write: OnceWrite) {
        if let Ok(mut p) = self.pending.lock() {
            p.seal([write], Instant::now());
        }
        self.wake();
    }

    /// A pipeline that loads [`APPLY_ONCE`], then makes `writes`.
    fn pipeline<'a>(&self, writes: impl IntoIterator<Item = &'a OnceWrite>) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        // Loaded with each pipeline: Redis may have restarted, and lost its scripts.
        pipe.cmd("SCRIPT").arg("LOAD").arg(APPLY_ONCE).ignore();
        for write in writes {
            pipe.add_command(write.command(&self.apply_once, self.ids.replica()))
                .ignore();
        }
        pipe
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
        let mut batch = match self.pending.lock() {
            Ok(mut p) if !p.is_empty() => p.take_all(),
            _ => return Ok(()),
        };
        let now = Instant::now();
        let sealed = std::mem::take(&mut batch.sealed);
        let writes = writes_of(&batch, &self.ids, now);
        // Those sent before go first, as they were.
        let pipe = self.pipeline(sealed.iter().chain(&writes));
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
            // Refused by one write, the others were made: dropped.
            Called::Refused(e) => Err(StoreError(format!(
                "{e}; these charges and usage are dropped"
            ))),
            // Nothing made: what was new joins what came since.
            Called::NotMade(e) => {
                if let Ok(mut p) = self.pending.lock() {
                    batch.sealed = sealed;
                    p.put_back(batch, Instant::now());
                }
                Err(StoreError(format!(
                    "{e}; charges and usage are kept and sent again when Redis takes them"
                )))
            }
            // Perhaps made: sent again as they were, so Redis makes each once.
            Called::InDoubt(e) => {
                if let Ok(mut p) = self.pending.lock() {
                    p.seal(sealed.into_iter().chain(writes), Instant::now());
                }
                Err(StoreError(format!(
                    "{e}; charges and usage are sent again, and made once, when Redis answers"
                )))
            }
        }
    }

    /// Gives back a call slot of `subject`, its charges first, without waiting.
    pub fn release(self: &Arc<Self>, subject: &str) {
        let Some(mut conn) = self.link.made() else {
            // The connection was dropped (a call left unanswered): on one made anew.
            self.give_back_later(subject);
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut batch = Pending::default();
        if let Ok(mut p) = self.pending.lock() {
            let counters = p.take_subject(subject);
            if !counters.is_empty() {
                batch.charges.insert(subject.to_string(), counters);
            }
        }
        batch.release(subject);
        let writer = Arc::clone(self);
        runtime.spawn(async move {
            let writes = writes_of(&batch, &writer.ids, Instant::now());
            let pipe = writer.pipeline(&writes);
            let sent = writer
                .link
                .called(pipe.query_async::<()>(&mut conn), "a call slot", 1)
                .await;
            match sent {
                Called::Done(()) => {}
                Called::Refused(e) => log::warn!(
                    "{e}: a call slot was not given back; it expires in {SLOT_TTL_SECS} s at most"
                ),
                Called::NotMade(_) => {
                    if let Ok(mut p) = writer.pending.lock() {
                        p.put_back(batch, Instant::now());
                    }
                    writer.wake();
                }
                // Sent again as it was: Redis gives the slot back once.
                Called::InDoubt(_) => {
                    if let Ok(mut p) = writer.pending.lock() {
                        p.seal(writes, Instant::now());
                    }
                    writer.wake();
                }
            }
        });
    }

    /// Gives back a call slot of `subject` in the next pipeline Redis takes, after
    /// its charges.
    fn give_back_later(self: &Arc<Self>, subject: &str) {
        if let Ok(mut p) = self.pending.lock() {
            p.release(subject);
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
