//! Sharing the work a replica polls with the others through the limit store
//! (`limits::SharedWatches`, in Redis): what is written as work comes and goes, in
//! order, by one writer; what is taken over from replicas that stopped; what a
//! delete finds that another replica watches.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::shared_record::{shared_name, NotPolled, WatchRecord};
use super::watch_list::Watched;
use super::{unix_now, DeferredPoll};
use crate::config::{Config, OnStoreError};
use crate::limits::{LimitStore, SharedWatches};
use crate::metrics::deferred_answer::ApartKind;

/// How often a replica says in a shared store that it still polls its work, and takes
/// over the work of replicas that stopped.
pub(super) const SHARE_EVERY: Duration = Duration::from_secs(5);

/// How long a replica's word that it polls its work holds: past it, its work goes to
/// the others.
const SHARE_LEASE: Duration = Duration::from_secs(20);

/// The most changes of the work shared that wait to be written.
const SHARED_WAITING: usize = 10_000;

/// How long work nobody wrote is left before any replica takes it over: its replica
/// lost it (a write that never came back), though it polls the rest. Longer than the
/// longest wait between polls.
const SHARED_STALE: Duration = Duration::from_secs(30 * 60);

/// How long a write of the work shared waits before it is tried again.
const SHARED_RETRY: Duration = Duration::from_secs(1);

/// How long a stopping replica waits for what it told to be written.
const SHARED_FLUSH: Duration = Duration::from_secs(3);

/// How long work taken over and given back waits before a replica takes it again.
const GIVEN_BACK_FOR: Duration = Duration::from_secs(5 * 60);

/// The most pieces of work taken over from stopped replicas at each turn.
const TAKEN_OVER_AT_ONCE: usize = 200;

impl DeferredPoll {
    /// Starts the one writer of the work shared, when `store` shares any.
    pub(super) fn start_sharing(&self, store: &Arc<dyn LimitStore>) {
        if store.shared_watches().is_none() || self.inner.shared.set(Arc::clone(store)).is_err() {
            return;
        }
        let (changes, mut told) = mpsc::channel(SHARED_WAITING);
        let _ = self.inner.changes.set(changes);
        let poll = self.clone();
        tokio::spawn(async move {
            // While Redis takes nothing, changes are tried once each: retries would
            // only hold up the queue behind them.
            let mut failing = false;
            while let Some(change) = told.recv().await {
                failing = !poll.write_shared(change, if failing { 0 } else { 2 }).await;
            }
        });
    }

    /// The replica stops: what was told is written first; then the other replicas
    /// take over this one's work as it comes due.
    pub(super) async fn stop_sharing(&self) {
        self.flush_shared().await;
        let Some(watches) = self.watches() else {
            return;
        };
        if let Err(e) = watches.alive(&self.inner.me, None).await {
            log::debug!("sharing background work: {e}");
        }
    }

    /// The work shared in the store, once the poll runs with a store that shares it.
    fn watches(&self) -> Option<&SharedWatches> {
        self.inner.shared.get().and_then(|s| s.shared_watches())
    }

    /// What the other replicas are told of `watched`, next polled after `wait`: its
    /// name and record, and the wait; `None` when nothing is shared.
    pub(super) fn shared_record(
        &self,
        watched: &Watched,
        now: Instant,
        wait: Duration,
    ) -> Option<Shared> {
        self.inner.shared.get()?;
        let record = WatchRecord::of(watched, now, unix_now())?;
        let record = serde_json::to_string(&record).ok()?;
        let started = &watched.start.started;
        Some(Shared::Kept {
            name: shared_name(started.kind, &started.id),
            record,
            wait_ms: millis(wait),
        })
    }

    /// Tells the store the work is shared in what became of a piece of work, after
    /// what it was told before (a record written late would bring back work settled
    /// since). Past [`SHARED_WAITING`] changes waiting (Redis slow or away), the
    /// store is not told: a record it keeps may outlive its work, and be polled once
    /// more by the replica that takes it over.
    pub(super) fn tell(&self, change: Shared) {
        let Some(changes) = self.inner.changes.get() else {
            return;
        };
        match changes.try_send(change) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| {
                    log::warn!("background work is not shared in the store as fast as it changes")
                });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| log::error!("background work is no longer shared in the store"));
            }
        }
    }

    /// Waits until every change told before is written (or [`SHARED_FLUSH`] has
    /// passed).
    async fn flush_shared(&self) {
        let Some(changes) = self.inner.changes.get() else {
            return;
        };
        let (done, written) = tokio::sync::oneshot::channel();
        let flushed = async {
            if changes.send(Shared::Flushed(done)).await.is_ok() {
                let _ = written.await;
            }
        };
        let _ = tokio::time::timeout(SHARED_FLUSH, flushed).await;
    }

    /// Writes one change to the store the work is shared in: tried again `retries`
    /// times, [`SHARED_RETRY`] apart, when Redis did not take it (a moment when the
    /// link is not asked, after a call lost). Whether it was written.
    async fn write_shared(&self, change: Shared, retries: u32) -> bool {
        let Some(watches) = self.watches() else {
            return true;
        };
        let mut written = false;
        for attempt in 0..=retries {
            if attempt > 0 {
                tokio::time::sleep(SHARED_RETRY).await;
            }
            let told = match &change {
                Shared::Kept {
                    name,
                    record,
                    wait_ms,
                } => watches.keep(&self.inner.me, name, record, *wait_ms).await,
                Shared::Forgotten(name) => watches.forget(name).await,
                Shared::GivenBack(name) => watches.give_back(name, millis(GIVEN_BACK_FOR)).await,
                Shared::Flushed(_) => Ok(()),
            };
            match told {
                Ok(()) => {
                    written = true;
                    break;
                }
                Err(e) => log::debug!("sharing background work: {e}"),
            }
        }
        if let Shared::Flushed(done) = change {
            let _ = done.send(());
        }
        written
    }

    /// Says this replica still polls its work, and takes over the work of replicas
    /// that stopped: each polled soon, with `config`.
    pub(super) async fn take_over(&self, config: &Config) {
        let Some(watches) = self.watches() else {
            return;
        };
        let me = &self.inner.me;
        // Stopped since this turn began: its lease given up stays given up.
        if self.inner.stopped.load(Ordering::Relaxed) {
            return;
        }
        if let Err(e) = watches.alive(me, Some(millis(SHARE_LEASE))).await {
            log::debug!("sharing background work: {e}");
            return;
        }
        if self.inner.stopped.load(Ordering::Relaxed) {
            // Stopped while saying it polls: said otherwise again, and nothing taken.
            let _ = watches.alive(me, None).await;
            return;
        }
        let claimed = watches
            .claim(
                me,
                millis(SHARE_LEASE),
                millis(SHARED_STALE),
                TAKEN_OVER_AT_ONCE,
            )
            .await;
        let claimed = match claimed {
            Ok(claimed) => claimed,
            Err(e) => {
                log::debug!("taking over background work: {e}");
                return;
            }
        };
        let (now, now_unix) = (Instant::now(), unix_now());
        let mut taken = 0;
        for (name, record) in claimed {
            let watched = serde_json::from_str::<WatchRecord>(&record)
                .map_err(|_| NotPolled::GivenUp)
                .and_then(|r| r.watched(config, now, now_unix));
            match watched {
                // This replica's own, lost in Redis a while (a write that never came
                // back): polled here already.
                Ok(watched)
                    if self
                        .list()
                        .has(watched.start.started.kind, &watched.start.started.id) => {}
                Ok(watched) => {
                    if self.list().add(watched, now) {
                        taken += 1;
                    } else {
                        // This replica's list, or the caller's share of it, is full.
                        self.tell(Shared::GivenBack(name));
                    }
                }
                Err(NotPolled::GivenUp) => self.tell(Shared::Forgotten(name)),
                // Another replica's config may know its provider and caller.
                Err(NotPolled::NotHere) => self.tell(Shared::GivenBack(name)),
            }
        }
        if taken > 0 {
            if let Some(metrics) = crate::metrics::metrics() {
                metrics.background_taken_over(taken);
            }
            log::info!(
                "took over {taken} background responses and batches of a replica that stopped"
            );
            self.inner.wake.notify_one();
        }
    }

    /// The work `kind` `id` as another replica watches it, when work is shared: polled
    /// here before its delete. When the store cannot say, the delete goes on or is
    /// refused (`Err`) as `limits.on_store_error` says.
    pub(super) async fn watched_elsewhere(
        &self,
        kind: ApartKind,
        id: &str,
        config: &Config,
    ) -> Result<Option<Watched>, ()> {
        let Some(watches) = self.watches() else {
            return Ok(None);
        };
        if config.limits.poll_background.is_none() {
            // Nothing is polled, here or (under the same config) elsewhere.
            return Ok(None);
        }
        let record = match watches.find(&shared_name(kind, id)).await {
            Ok(record) => record,
            Err(e) if config.limits.on_store_error == OnStoreError::Allow => {
                log::debug!("{e}; a delete of background work goes on unpolled");
                None
            }
            Err(e) => {
                log::warn!("{e}; a delete of background work is refused, to be sent again");
                return Err(());
            }
        };
        Ok(record
            .and_then(|r| serde_json::from_str::<WatchRecord>(&r).ok())
            .and_then(|r| r.watched(config, Instant::now(), unix_now()).ok()))
    }
}

/// What the store work is shared in is told of a piece of work.
pub(super) enum Shared {
    /// Watched, by its name: its record, and how long until its next poll.
    Kept {
        name: String,
        record: String,
        wait_ms: u64,
    },
    /// Settled or given up, by its name.
    Forgotten(String),
    /// Taken over, and not polled here after all: for another replica to take.
    GivenBack(String),
    /// Everything told before is written: said back.
    Flushed(tokio::sync::oneshot::Sender<()>),
}

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
