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

use redis::aio::ConnectionManager;
use tokio::sync::Notify;

use super::once_write::{forget_later, increments, writes_of, OnceWrite, WriteIds};
use super::pending::{Counters, Pending};
use super::redis_link::{Called, Link, QUIET_AFTER_LOSS};
use super::redis_scripts::APPLY_ONCE;
use super::{SlotId, StoreError, UsageRecord};

/// How long a charge or usage waits for others before they are sent together: the
/// most a replica's writes lag behind its calls while Redis answers.
pub const FLUSH_AFTER: Duration = Duration::from_millis(20);
/// After Redis failed to take a flush, the next try comes this much later.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// [`Writer::loaded_on`] when no pipeline is known to have loaded [`APPLY_ONCE`].
const NOT_LOADED: u64 = u64::MAX;

/// Gathers writes and sends them.
pub struct Writer {
    link: Arc<Link>,
    pending: Mutex<Pending>,
    wake: Arc<Notify>,
    started: AtomicBool,
    ids: WriteIds,
    /// The SHA of [`APPLY_ONCE`].
    apply_once: String,
    /// The connection ([`Link::connections_made`]) on which Redis last answered a
    /// pipeline, so had [`APPLY_ONCE`]; [`NOT_LOADED`] after a pipeline failed. A hint
    /// only: Redis may lose its scripts on the same connection (restarted under the
    /// connection manager, `SCRIPT FLUSH`), which [`Self::send`] mends.
    loaded_on: AtomicU64,
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
            loaded_on: AtomicU64::new(NOT_LOADED),
        })
    }

    /// The replica's write ids.
    pub fn ids(&self) -> &WriteIds {
        &self.ids
    }

    /// `write`, just sent, lost its answer: it is sent again as it is.
    pub fn in_doubt(self: &Arc<Self>, write: OnceWrite) {
        if let Ok(mut p) = self.pending.lock() {
            p.in_doubt.add([write], Instant::now());
        }
        self.loaded_on.store(NOT_LOADED, Ordering::Relaxed);
        self.wake();
    }

    /// The write `id` of `subject`, sent once, was answered: Redis may forget its id.
    pub fn answered(&self, subject: &str, id: u64) {
        if let Ok(mut p) = self.pending.lock() {
            forget_later(&mut p.forget, subject, id);
        }
    }

    /// A pipeline that makes `writes`, loading [`APPLY_ONCE`] first when `load`.
    fn pipeline(&self, writes: &[&OnceWrite], load: bool) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        if load {
            pipe.cmd("SCRIPT").arg("LOAD").arg(APPLY_ONCE).ignore();
        }
        for write in writes {
            let command = write.command(&self.apply_once, self.ids.replica());
            pipe.add_command(command).ignore();
        }
        pipe
    }

    /// Sends `writes` on `conn` (naming `what` in errors), loading [`APPLY_ONCE`] first
    /// unless Redis answered a pipeline on this connection. One Redis answers
    /// `NOSCRIPT` (it restarted, failed over or flushed its scripts: the connection
    /// manager may have reconnected by itself) goes again at once with the script
    /// loaded, rather than waiting in doubt for a retry: each write is made once, by
    /// its id, so those Redis made the first time are not made again.
    async fn send(
        &self,
        conn: &mut ConnectionManager,
        writes: &[&OnceWrite],
        what: &str,
    ) -> Called<()> {
        let on = self.link.connections_made();
        let mut load = self.loaded_on.load(Ordering::Relaxed) != on;
        loop {
            let pipe = self.pipeline(writes, load);
            let call = async {
                match pipe.query_async::<()>(&mut *conn).await {
                    // Answered: the script was missing, nothing else is known amiss.
                    Err(e) if e.kind() == redis::ErrorKind::NoScriptError => Ok(false),
                    sent => sent.map(|()| true),
                }
            };
            let sent = self.link.called(call, what, 1).await;
            let failed = match sent {
                Called::Done(true) => {
                    self.loaded_on.store(on, Ordering::Relaxed);
                    return Called::Done(());
                }
                Called::Done(false) if !load => {
                    load = true;
                    continue;
                }
                // Flushed again between the load and the writes: sent again later.
                Called::Done(false) => Called::Refused(StoreError(format!(
                    "Redis refused {what}: its script was flushed as it was loaded"
                ))),
                Called::Refused(e) => Called::Refused(e),
                Called::Unsent(e) => Called::Unsent(e),
                Called::NotMade(e) => Called::NotMade(e),
                Called::InDoubt(e) => Called::InDoubt(e),
            };
            // Redis may be another, or restarted, when it answers again.
            self.loaded_on.store(NOT_LOADED, Ordering::Relaxed);
            return failed;
        }
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

    /// Takes what waits for `subject`'s counters `keys`, to send with a lease, and
    /// tells how much of each stays behind ([`Pending::take_for_lease`]).
    pub fn take_for_lease<const N: usize>(
        &self,
        subject: &str,
        keys: [&str; N],
    ) -> (Counters, [u64; N]) {
        match self.pending.lock() {
            Ok(mut p) => p.take_for_lease(subject, keys),
            Err(_) => (Counters::default(), [0; N]),
        }
    }

    /// Puts back counters of `subject` taken to be sent with a lease that was not
    /// sent.
    pub fn put_back(self: &Arc<Self>, subject: &str, counters: Counters) {
        if counters.is_empty() {
            return;
        }
        if let Ok(mut p) = self.pending.lock() {
            p.put_back_counters(subject, counters, Instant::now());
        }
        self.wake();
    }

    /// Sends everything waiting now, in one pipeline: the writes in doubt again, as
    /// they were, then one new write per subject (but those with a write in doubt,
    /// whose charges wait for it).
    pub async fn flush(&self) -> Result<(), StoreError> {
        let now = Instant::now();
        let (batch, mut forget, resent, writes, sending) = {
            let Ok(mut p) = self.pending.lock() else {
                return Ok(());
            };
            if p.is_empty() {
                return Ok(());
            }
            let mut batch = p.take_all();
            let resent = p.in_doubt.take(now);
            let held = batch.hold(|subject| p.in_doubt.holds(subject));
            p.put_back(held, now);
            let mut forget = std::mem::take(&mut batch.forget);
            let writes = writes_of(&batch, &mut forget, &self.ids, now);
            let sending = increments(resent.iter().chain(&writes));
            p.on_its_way(&sending);
            (batch, forget, resent, writes, sending)
        };
        let all: Vec<&OnceWrite> = resent.iter().chain(&writes).collect();
        let sent = match self.link.connection().await {
            Ok(mut conn) => self.send(&mut conn, &all, "charges and usage").await,
            Err(e) => {
                self.loaded_on.store(NOT_LOADED, Ordering::Relaxed);
                Called::Unsent(e)
            }
        };
        let Ok(mut p) = self.pending.lock() else {
            return Err(StoreError("the writer's lock was poisoned".into()));
        };
        // Answered or not, it is no longer on its way: made, waiting again, or in doubt.
        p.arrived(&sending);
        let now = Instant::now();
        let outcome = match sent {
            Called::Done(()) => {
                p.in_doubt.answered(&resent);
                for write in &writes {
                    forget_later(&mut p.forget, &write.subject, write.id);
                }
                Ok(())
            }
            // Nothing sent: the new writes join what came since, under new ids later.
            Called::Unsent(e) => {
                p.in_doubt.put_back(resent);
                for write in writes {
                    forget.insert(write.subject, write.forget);
                }
                p.put_back(batch, now);
                Err(StoreError(format!(
                    "{e}; charges and usage are kept and sent again when Redis takes them"
                )))
            }
            // Answered with an error, or not at all: any of it may have been made.
            // Sent again as it was, Redis makes each write once.
            Called::Refused(e) | Called::NotMade(e) | Called::InDoubt(e) => {
                p.in_doubt.put_back(resent);
                p.in_doubt.add(writes, now);
                Err(StoreError(format!(
                    "{e}; charges and usage are sent again, and made once, when Redis answers"
                )))
            }
        };
        // The ids of subjects without a write this time wait for their next one.
        p.forget_later(forget);
        let more = !p.is_empty();
        drop(p);
        if outcome.is_ok() && more {
            // What waited for a write in doubt goes now.
            self.wake.notify_one();
        }
        outcome
    }

    /// Sends everything waiting, again and again (what waits behind a write in doubt
    /// goes once that is answered; Redis away is asked again a moment later) until
    /// nothing waits. Bound it with a timeout: while Redis takes nothing, it never
    /// ends.
    pub async fn write_out(&self) {
        while !self.pending.lock().map_or(true, |p| p.is_empty()) {
            if self.flush().await.is_err() {
                tokio::time::sleep(QUIET_AFTER_LOSS).await;
            }
        }
    }

    /// Gives back the call slot `slot` of `subject`, its charges first, without
    /// waiting.
    pub fn release(self: &Arc<Self>, subject: &str, slot: SlotId) {
        let Some(mut conn) = self.link.made() else {
            // The connection was dropped (a call left unanswered): on one made anew.
            self.give_back_later(subject, slot);
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.give_back_later(subject, slot);
            return;
        };
        let mut batch = Pending::default();
        {
            let Ok(mut p) = self.pending.lock() else {
                return;
            };
            if p.in_doubt.holds(subject) {
                // After the write in doubt, as its charges wait.
                p.release(subject, slot);
                drop(p);
                self.wake();
                return;
            }
            let counters = p.take_subject(subject);
            if !counters.is_empty() {
                batch.charges.insert(subject.to_string(), counters);
            }
            if let Some(ids) = p.forget.remove(subject) {
                batch.forget.insert(subject.to_string(), ids);
            }
        }
        batch.release(subject, slot);
        let mut forget = std::mem::take(&mut batch.forget);
        let writes = writes_of(&batch, &mut forget, &self.ids, Instant::now());
        let mut sending = Sending {
            writer: Arc::clone(self),
            writes,
        };
        runtime.spawn(async move {
            let writer = Arc::clone(&sending.writer);
            let all: Vec<&OnceWrite> = sending.writes.iter().collect();
            let sent = writer.send(&mut conn, &all, "a call slot").await;
            let writes = std::mem::take(&mut sending.writes);
            match sent {
                Called::Done(()) => {
                    for write in &writes {
                        writer.answered(&write.subject, write.id);
                    }
                }
                Called::Unsent(_) => {
                    if let Ok(mut p) = writer.pending.lock() {
                        for write in writes {
                            forget.insert(write.subject, write.forget);
                        }
                        p.forget_later(forget);
                        p.put_back(batch, Instant::now());
                    }
                    writer.wake();
                }
                // Sent again as it was: Redis gives the slot back once.
                Called::Refused(_) | Called::NotMade(_) | Called::InDoubt(_) => {
                    for write in writes {
                        writer.in_doubt(write);
                    }
                }
            }
        });
    }

    /// Gives back the call slot `slot` of `subject` in the next pipeline Redis takes,
    /// after its charges.
    fn give_back_later(self: &Arc<Self>, subject: &str, slot: SlotId) {
        if let Ok(mut p) = self.pending.lock() {
            p.release(subject, slot);
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

/// A call slot's give-back, with its subject's charges, sent on a task of its own.
/// Dropped before its answer came (the task never ran, or was cut mid-call: its
/// runtime shut down as the server stopped), its writes are kept as in doubt: sent
/// again as they are with what waits, Redis makes each once.
struct Sending {
    writer: Arc<Writer>,
    writes: Vec<OnceWrite>,
}

impl Drop for Sending {
    fn drop(&mut self) {
        for write in std::mem::take(&mut self.writes) {
            self.writer.in_doubt(write);
        }
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
    static SAID: super::OnceAMinute = super::OnceAMinute::new();
    if SAID.due() {
        log::warn!("{e}");
    }
}
