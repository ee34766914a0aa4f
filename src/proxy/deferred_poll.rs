//! Work a call starts apart from itself (a Responses API response run in the
//! background, an OpenAI batch) is answered "queued" without its usage; the usage
//! comes with whichever read finds the work ended, and is charged then. A client that
//! never reads it back (its output went elsewhere, through a remote tool, or it does
//! not care) would spend past its limits and budget without end. So the gateway polls
//! each such piece of work a counted caller started, with the provider key that
//! started it, until it ends, and charges its usage then, once: a client's read before
//! the poll makes the poll charge nothing, and one after is charged nothing.
//!
//! The watch list lives in this process: work started before a restart or an upgrade
//! is charged only when read. In Redis, every replica sees a charge made once.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use pingora_core::connectors::http::Connector;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::context::UpstreamTarget;
use super::limit_check::{charge_polled, StartedBy};
use super::provider_fetch::{fetch_whole, provider_get};
use super::upstream::UpstreamResolver;
use crate::config::Config;
use crate::limits::LimitStore;
use crate::metrics::deferred_answer::StartedApart;
use crate::metrics::usage::{Charge, UsageMeter};
use crate::providers::{Provider, Secret};

/// The longest wait between two polls of one piece of work.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(300);

/// How long work is polled before the gateway gives up on it: longer than a batch's
/// 24-hour window.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(48 * 3600);

/// The most pieces of work watched at once; past it, new work is charged only when
/// read (said once).
pub const MAX_WATCHED: usize = 100_000;

/// Polls made at once.
const POLLS_AT_ONCE: usize = 16;

/// How long one poll may take.
const POLL_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest answer a poll reads (a response carries its whole output).
const MAX_POLLED_BYTES: usize = 64 * 1024 * 1024;

/// What a poll learnt of the work.
#[derive(Debug, PartialEq)]
pub enum Polled {
    /// Still at work (or the provider could not say now): polled again.
    UnderWay,
    /// Ended: its usage, when it reported any, and the model that answered.
    Ended {
        charge: Option<Charge>,
        model: Option<String>,
    },
    /// The provider does not have it for this key (deleted, or the key was revoked).
    Gone,
}

/// What the provider's answer (`status`, `body`) to a poll says of the work.
pub fn read_poll(status: u16, body: &[u8]) -> Polled {
    match status {
        200..=299 => {}
        // Worth asking again: a timeout, a conflict, a rate limit, a server error.
        408 | 409 | 429 | 500.. => return Polled::UnderWay,
        _ => return Polled::Gone,
    }
    let Some(mut meter) = UsageMeter::for_answer(Some("application/json"), None) else {
        return Polled::UnderWay;
    };
    let charge = meter.finish_with(body);
    let whole = charge.filter(|c| c.deferred.is_some_and(|d| d.read_whole()));
    match meter.work_ended() {
        Some(false) => Polled::UnderWay,
        // Ended by its status, or by its usage where it says no status.
        Some(true) => Polled::Ended {
            charge: whole,
            model: meter.take_model(),
        },
        None if whole.is_some() => Polled::Ended {
            charge: whole,
            model: meter.take_model(),
        },
        None => Polled::UnderWay,
    }
}

/// Where the work a call to `call_path` (its path and query) started is read: the
/// collection it was made in (`…/responses`, `…/batches`), then its id. `None` when the
/// call was not made in the collection of its kind (a cancel, say).
pub fn poll_path(call_path: &str, started: &StartedApart) -> Option<String> {
    let path = call_path.split(['?', '#']).next()?.trim_end_matches('/');
    let collection = if started.batch {
        "batches"
    } else {
        "responses"
    };
    let (_, last) = path.rsplit_once('/')?;
    (last == collection).then(|| format!("{path}/{}", started.id))
}

/// One piece of work watched.
struct Watched {
    started: StartedApart,
    provider: Arc<Provider>,
    path: String,
    key: Option<Secret>,
    by: StartedBy,
    until: Instant,
    /// The wait before the next poll, doubled after each.
    wait: Duration,
}

/// A piece of work and when it is polled next, the earliest first.
struct Due {
    at: Instant,
    seq: u64,
    watched: Box<Watched>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        // Reversed: the heap's top is the earliest.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The work started apart from its calls that the gateway polls for its usage.
#[derive(Clone)]
pub struct DeferredPoll {
    inner: Arc<Inner>,
}

struct Inner {
    due: Mutex<BinaryHeap<Due>>,
    seq: AtomicU64,
    wake: Notify,
    // Built with the poll, at startup: building it reads the system trust store.
    connector: Connector,
}

impl DeferredPoll {
    /// An empty watch list.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                due: Mutex::default(),
                seq: AtomicU64::new(0),
                wake: Notify::new(),
                connector: Connector::new(None),
            }),
        }
    }

    /// How many pieces of work are watched.
    pub fn len(&self) -> usize {
        self.inner.due.lock().map_or(0, |d| d.len())
    }

    /// Whether nothing is watched.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Watches the work `started` by a call to `target`, first polled after `first`.
    /// Whether it is watched: not when it cannot be read back where it was made, or
    /// when the list is full.
    pub fn watch(
        &self,
        started: StartedApart,
        target: &UpstreamTarget,
        by: StartedBy,
        first: Duration,
    ) -> bool {
        let Some(path) = poll_path(&target.path_and_query, &started) else {
            return false;
        };
        let now = Instant::now();
        let watched = Watched {
            started,
            provider: Arc::clone(&target.provider),
            path,
            key: target.credential.key.clone(),
            by,
            until: now + GIVE_UP_AFTER,
            wait: first,
        };
        let Ok(mut due) = self.inner.due.lock() else {
            return false;
        };
        if due.len() >= MAX_WATCHED {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                log::warn!(
                    "{MAX_WATCHED} background responses and batches are polled already: \
                     more are charged only when read"
                )
            });
            return false;
        }
        self.push(&mut due, now + first, watched);
        drop(due);
        self.inner.wake.notify_one();
        true
    }

    /// Watches the work a call started apart from itself and its charge left
    /// uncharged (see [`super::observe::started_uncharged`]), when the call counts
    /// for limits or a usage report and the config polls such work.
    pub fn watch_call(&self, ctx: &mut super::RequestContext, read: bool) {
        let Some(started) = super::observe::started_uncharged(ctx, read) else {
            return;
        };
        let (Some(config), Some(target), Some(caller)) = (
            ctx.config.as_deref(),
            ctx.upstream.as_ref(),
            ctx.caller.as_ref(),
        ) else {
            return;
        };
        let Some(first) = config.limits.poll_background else {
            return;
        };
        let by = StartedBy {
            caller: caller.clone(),
            provider: Arc::from(target.provider.name.as_str()),
        };
        if by.is_counted(config) {
            self.watch(started, target, by, first);
        }
    }

    fn push(&self, due: &mut BinaryHeap<Due>, at: Instant, watched: Watched) {
        let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        due.push(Due {
            at,
            seq,
            watched: Box::new(watched),
        });
    }

    /// When the next poll is due.
    fn next_at(&self) -> Option<Instant> {
        self.inner.due.lock().ok()?.peek().map(|d| d.at)
    }

    /// The work due at `now`, at most `most` of it, out of the list.
    fn take_due(&self, now: Instant, most: usize) -> Vec<Watched> {
        let Ok(mut due) = self.inner.due.lock() else {
            return Vec::new();
        };
        let mut taken = Vec::new();
        while taken.len() < most && due.peek().is_some_and(|d| d.at <= now) {
            if let Some(d) = due.pop() {
                taken.push(*d.watched);
            }
        }
        taken
    }

    /// Polls what is due, as it comes due, with `live`'s config, until `stop` ends.
    pub async fn run(
        &self,
        config: impl Fn() -> Arc<Config>,
        resolver: &UpstreamResolver,
        store: &Arc<dyn LimitStore>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        loop {
            let next = self.next_at();
            let wait = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = wait => {}
                _ = self.inner.wake.notified() => continue,
                _ = &mut stop => return,
            }
            let due = self.take_due(Instant::now(), POLLS_AT_ONCE);
            let config = config();
            let polls = due
                .into_iter()
                .map(|watched| self.poll(watched, &config, resolver, store));
            join_all(polls).await;
        }
    }

    /// Polls one piece of work: charged once ended, else watched again.
    async fn poll(
        &self,
        mut watched: Watched,
        config: &Arc<Config>,
        resolver: &UpstreamResolver,
        store: &Arc<dyn LimitStore>,
    ) {
        let polled = match resolver.resolve_base(&watched.provider.base, 0).await {
            Ok(addr) => self.ask(&watched, addr).await,
            Err(e) => Err(e.message.to_string()),
        };
        let settled = match polled {
            Ok(Polled::UnderWay) => false,
            Ok(Polled::Gone) => {
                log::info!(
                    "{} `{}` at `{}` is gone before it was charged",
                    kind(&watched.started),
                    watched.started.id,
                    watched.provider.name
                );
                true
            }
            Ok(Polled::Ended { charge, model }) => match charge {
                None => true,
                Some(charge) => {
                    let Some(answer) = charge.deferred else {
                        return;
                    };
                    match store.first_charge(answer.key(), unix_now()).await {
                        Ok(first) => {
                            if first {
                                let batch = answer.is_batch();
                                let (usage, model) = (&charge.usage, model.as_deref());
                                charge_polled(store, config, &watched.by, usage, model, batch);
                            }
                            true
                        }
                        Err(e) => {
                            log::warn!("{e}; a background response or batch is charged later");
                            false
                        }
                    }
                }
            },
            Err(why) => {
                log::debug!(
                    "polling {} `{}` at `{}`: {why}",
                    kind(&watched.started),
                    watched.started.id,
                    watched.provider.name
                );
                false
            }
        };
        if settled {
            return;
        }
        let now = Instant::now();
        watched.wait = (watched.wait * 2).min(MAX_POLL_INTERVAL);
        if now + watched.wait > watched.until {
            log::warn!(
                "{} `{}` at `{}` did not end within {}h: its usage is charged only if read",
                kind(&watched.started),
                watched.started.id,
                watched.provider.name,
                GIVE_UP_AFTER.as_secs() / 3600
            );
            return;
        }
        if let Ok(mut due) = self.inner.due.lock() {
            let at = now + watched.wait;
            self.push(&mut due, at, watched);
        }
    }

    /// Asks the provider for the work.
    async fn ask(&self, watched: &Watched, addr: SocketAddr) -> Result<Polled, String> {
        let provider = &*watched.provider;
        let request = provider_get(provider, &watched.path, watched.key.as_ref())
            .map_err(|e| format!("cannot build request: {e}"))?;
        let fetch = fetch_whole(
            &self.inner.connector,
            provider,
            addr,
            request,
            MAX_POLLED_BYTES,
        );
        match tokio::time::timeout(POLL_TIMEOUT, fetch).await {
            Ok(Ok((status, body))) => Ok(read_poll(status, &body)),
            Ok(Err(why)) => Err(why),
            Err(_) => Err(format!("no answer within {POLL_TIMEOUT:?}")),
        }
    }
}

impl Default for DeferredPoll {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for DeferredPoll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeferredPoll")
            .field("watched", &self.len())
            .finish()
    }
}

fn kind(started: &StartedApart) -> &'static str {
    if started.batch {
        "batch"
    } else {
        "background response"
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(id: &str, batch: bool) -> StartedApart {
        StartedApart {
            id: id.into(),
            batch,
        }
    }

    #[test]
    fn work_is_read_back_in_the_collection_it_was_made_in() {
        let response = started("resp_1", false);
        let batch = started("batch_1", true);
        assert_eq!(
            poll_path("/v1/responses", &response).as_deref(),
            Some("/v1/responses/resp_1")
        );
        assert_eq!(
            poll_path("/openai/v1/responses/?x=1", &response).as_deref(),
            Some("/openai/v1/responses/resp_1")
        );
        assert_eq!(
            poll_path("/v1/batches", &batch).as_deref(),
            Some("/v1/batches/batch_1")
        );
        // A cancel answers the response too; it was not made there.
        assert_eq!(poll_path("/v1/responses/resp_1/cancel", &response), None);
        assert_eq!(poll_path("/v1/responses", &batch), None);
        assert_eq!(poll_path("responses", &response), None);
    }

    /// A background response as OpenAI answers it, in `status`, with 17 input and 5
    /// output tokens once it has ended.
    fn response(status: &str) -> String {
        let usage = if status == "queued" || status == "in_progress" {
            "null".to_string()
        } else {
            r#"{"input_tokens":17,"output_tokens":5,"total_tokens":22}"#.to_string()
        };
        format!(
            r#"{{"id":"resp_1","object":"response","status":"{status}","background":true,"model":"gpt-4o-mini-2024-07-18","output":[],"usage":{usage}}}"#
        )
    }

    #[test]
    fn a_poll_tells_work_under_way_from_work_ended_and_gone() {
        for status in ["queued", "in_progress"] {
            assert_eq!(
                read_poll(200, response(status).as_bytes()),
                Polled::UnderWay
            );
        }
        let Polled::Ended { charge, model } = read_poll(200, response("completed").as_bytes())
        else {
            panic!("ended");
        };
        let charge = charge.unwrap();
        assert_eq!((charge.usage.input, charge.usage.output), (17, 5));
        assert!(charge.deferred.unwrap().read_whole());
        assert_eq!(model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
        // Cancelled before it used anything: ended, nothing to charge.
        let cancelled = response("cancelled").replace(
            r#"{"input_tokens":17,"output_tokens":5,"total_tokens":22}"#,
            "null",
        );
        assert!(matches!(
            read_poll(200, cancelled.as_bytes()),
            Polled::Ended { charge: None, .. }
        ));
        for status in [404, 401, 403, 410] {
            assert_eq!(read_poll(status, b"{}"), Polled::Gone, "{status}");
        }
        for status in [429, 500, 503, 408] {
            assert_eq!(read_poll(status, b"{}"), Polled::UnderWay, "{status}");
        }
        assert_eq!(read_poll(200, b"not json"), Polled::UnderWay);
    }

    #[test]
    fn a_batch_is_ended_by_its_status() {
        let batch = |status: &str| {
            format!(
                r#"{{"id":"batch_1","object":"batch","model":"gpt-4o-mini","status":"{status}","output_file_id":"file-out","usage":{{"input_tokens":1000,"output_tokens":200,"total_tokens":1200}}}}"#
            )
        };
        assert_eq!(
            read_poll(200, batch("in_progress").as_bytes()),
            Polled::UnderWay
        );
        let Polled::Ended { charge, .. } = read_poll(200, batch("completed").as_bytes()) else {
            panic!("ended");
        };
        let charge = charge.unwrap();
        assert_eq!(charge.usage.output, 200);
        assert!(charge.deferred.unwrap().is_batch());
    }

    #[tokio::test]
    async fn work_comes_due_earliest_first_and_the_list_is_bounded_in_what_it_takes() {
        let poll = DeferredPoll::new();
        let provider = Arc::new(Provider::unconfigured(
            crate::providers::ProviderKind::OpenAi,
        ));
        let target = UpstreamTarget::new(provider, "/v1/responses".into(), Default::default());
        let by = StartedBy {
            caller: crate::auth::Caller::Master,
            provider: "openai".into(),
        };
        let later = Duration::from_secs(60);
        assert!(poll.watch(started("resp_late", false), &target, by.clone(), later));
        assert!(poll.watch(
            started("resp_now", false),
            &target,
            by.clone(),
            Duration::ZERO
        ));
        assert!(!poll.watch(started("batch_1", true), &target, by, Duration::ZERO));
        assert_eq!(poll.len(), 2);
        let due = poll.take_due(Instant::now(), 8);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].path, "/v1/responses/resp_now");
        assert!(poll.next_at().is_some_and(|at| at > Instant::now()));
    }
}
